//! A small document for sync lessons — a like counter, a tag set and a text, each a CRDT field — with a user's random edits on it and which heard-of edits a state no longer shows.
//!
//! An edit is kept as its replica made it ([`Edit`]), so that a god's-eye judge can tell,
//! for any state of the three fields, which edits it has lost ([`unshown`]): a counter must
//! hold each replica's ±1s, a tag added must still be there under that add's dot unless a
//! later remove saw that dot, a removed tag's dots must be gone, a character inserted must be
//! visible unless deleted, a deleted one must not be. Under last-writer-wins an overwritten
//! version takes its edits with it and the judge names them; a CRDT's join never does.

use crate::parts::crdt::{Dot, ElemId, Join, OrSet, PnCounter, ReplicaId, Rga};
use faultline_core::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The document's keys, in order.
pub const KEYS: [&str; 3] = ["likes", "tags", "text"];
/// The tags a user picks from.
pub const TAGS: [&str; 6] = ["urgent", "draft", "idea", "bug", "todo", "done"];

/// One key's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Likes(PnCounter),
    Tags(OrSet<u8>),
    Text(Rga),
}

/// An edit as its replica made it.
#[derive(Clone, Debug)]
pub enum Edit {
    Like(i64),
    Tag { tag: u8, dot: Dot },
    Untag { tag: u8, removed: Vec<Dot> },
    Insert(ElemId),
    Delete(ElemId),
}

impl Edit {
    pub fn describe(&self) -> String {
        match self {
            Edit::Like(d) => format!("{d:+}"),
            Edit::Tag { tag, .. } => format!("+{}", TAGS[*tag as usize]),
            Edit::Untag { tag, .. } => format!("−{}", TAGS[*tag as usize]),
            Edit::Insert(_) => "insert a character".into(),
            Edit::Delete(_) => "delete a character".into(),
        }
    }
}

impl Join for Field {
    fn join(&mut self, other: &Field) {
        match (self, other) {
            (Field::Likes(a), Field::Likes(b)) => a.merge(b),
            (Field::Tags(a), Field::Tags(b)) => a.merge(b),
            (Field::Text(a), Field::Text(b)) => a.merge(b),
            _ => unreachable!("a key's versions are all of its kind"),
        }
    }
}

impl Field {
    /// The three fields, empty, in [`KEYS`]' order.
    pub fn document() -> [Field; 3] {
        [Field::Likes(PnCounter::default()), Field::Tags(OrSet::default()), Field::Text(Rga::default())]
    }

    /// A user's edit, made as `dot`: likes +1 (three times in four) or −1; a tag picked at
    /// random added, or removed if present; a character inserted at a random place (with id
    /// `id`, whose time must be above every one seen), or one in three times one deleted.
    pub fn edit(&mut self, rng: &mut Rng, dot: Dot, id: ElemId) -> Edit {
        match self {
            Field::Likes(c) => {
                let delta = if rng.below(4) == 0 { -1 } else { 1 };
                c.add(dot.replica, delta);
                Edit::Like(delta)
            }
            Field::Tags(s) => match rng.below(TAGS.len() as u64) as u8 {
                tag if s.contains(&tag) => Edit::Untag { tag, removed: s.remove(&tag) },
                tag => {
                    s.add(tag, dot);
                    Edit::Tag { tag, dot }
                }
            },
            Field::Text(t) if !t.is_empty() && rng.below(3) == 0 => {
                let gone = t.visible_id(rng.below(t.len() as u64) as usize).expect("a visible character");
                t.delete(gone);
                Edit::Delete(gone)
            }
            Field::Text(t) => {
                let pos = rng.below(t.len() as u64 + 1) as usize;
                t.insert_at(pos, id, (b'a' + (dot.seq % 26) as u8) as char);
                Edit::Insert(id)
            }
        }
    }

    /// Bytes as a CRDT ships it, and the bytes of the value alone (8 a number, 1 a tag, 4 a character).
    pub fn bytes(&self) -> (usize, usize) {
        match self {
            Field::Likes(c) => (c.bytes(), 8),
            Field::Tags(s) => (s.bytes(1), s.elements().len()),
            Field::Text(t) => (t.bytes(), 4 * t.len()),
        }
    }

    /// The value in a few words, for a badge (a text's last 14 characters).
    pub fn show(&self) -> String {
        match self {
            Field::Likes(c) => format!("♥ {}", c.value()),
            Field::Tags(s) => {
                let tags: Vec<&str> = s.elements().iter().map(|&t| TAGS[t as usize]).collect();
                format!("tags: {}", if tags.is_empty() { "none".into() } else { tags.join(", ") })
            }
            Field::Text(t) => {
                let text: Vec<char> = t.text().chars().collect();
                let cut: String = text[text.len().saturating_sub(14)..].iter().collect();
                format!("“{}{cut}”", if text.len() > 14 { "…" } else { "" })
            }
        }
    }
}

/// The edits in `heard` (per replica, the first of its edits numbered from 1, and the number
/// after which they are judged: older ones only undo) that `values` (the three fields in
/// order) no longer show: (replica, number, key index). A counter holds how many of each
/// replica's ±1s it shows, not which: a shortfall is laid on the oldest.
pub fn unshown(values: &[Field; 3], heard: &[(ReplicaId, &[Edit], u64)]) -> Vec<(ReplicaId, u64, usize)> {
    // What later edits undid: tags' adds a remove saw, characters deleted.
    let (mut untagged, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    for e in heard.iter().flat_map(|(_, edits, _)| edits.iter()) {
        match e {
            Edit::Untag { removed, .. } => untagged.extend(removed.iter().copied()),
            Edit::Delete(id) => {
                deleted.insert(*id);
            }
            _ => {}
        }
    }
    let (Field::Likes(likes), Field::Tags(tags), Field::Text(text)) = (&values[0], &values[1], &values[2]) else {
        unreachable!("the fields in KEYS' order")
    };
    let text: BTreeMap<ElemId, bool> = text.states().collect();
    let mut lost = Vec::new();
    for &(o, edits, after) in heard {
        let (mut ups, mut downs) = likes.counts(o);
        for (i, e) in edits.iter().enumerate().rev() {
            let seq = i as u64 + 1;
            let (k, shows) = match e {
                Edit::Like(d) => {
                    let left = if *d > 0 { &mut ups } else { &mut downs };
                    let shows = *left >= d.unsigned_abs();
                    *left = left.saturating_sub(d.unsigned_abs());
                    (0, shows)
                }
                Edit::Tag { tag, dot } => (1, untagged.contains(dot) || tags.holds(tag, *dot)),
                Edit::Untag { removed, .. } => (1, removed.iter().all(|d| !tags.holds_dot(*d))),
                Edit::Insert(id) => (2, deleted.contains(id) || text.get(id) == Some(&true)),
                Edit::Delete(id) => (2, text.get(id) != Some(&true)),
            };
            if !shows && seq > after {
                lost.push((o, seq, k));
            }
        }
    }
    lost.sort();
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas edit a copy of one document each; `n` edits each, on every field in turn.
    fn edited(n: u64, seed: u64) -> ([Field; 3], [Field; 3], Vec<Edit>, Vec<Edit>) {
        let mut rng = Rng::new(seed);
        let (mut a, mut b) = (Field::document(), Field::document());
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for seq in 1..=n {
            for (doc, edits, replica) in [(&mut a, &mut ea, 0), (&mut b, &mut eb, 1)] {
                let dot = Dot { replica, seq };
                let f = &mut doc[(seq % 3) as usize];
                edits.push(f.edit(&mut rng, dot, ElemId { time: seq, replica }));
            }
        }
        (a, b, ea, eb)
    }

    #[test]
    fn a_join_shows_every_edit_and_an_overwrite_loses_the_others() {
        for seed in 1..=20 {
            let (a, b, ea, eb) = edited(12, seed);
            let heard: [(ReplicaId, &[Edit], u64); 2] = [(0, &ea, 0), (1, &eb, 0)];
            assert!(unshown(&a, &heard[..1]).is_empty(), "a replica's own state shows its own edits");
            let mut j = a.clone();
            j.iter_mut().zip(&b).for_each(|(x, y)| x.join(y));
            assert_eq!(unshown(&j, &heard), vec![], "seed {seed}: the join lost nothing");
            // Last-writer-wins on every key: b's versions win, and a's likes, adds and inserts
            // go with them (its removes and deletes still hold: what they undid is gone too).
            let lost = unshown(&b, &heard);
            let likes = ea.iter().filter(|e| matches!(e, Edit::Like(_))).count();
            assert!(lost.len() >= likes && likes > 0, "seed {seed}: {} lost", lost.len());
            assert!(lost.iter().all(|&(o, _, _)| o == 0));
        }
    }

    #[test]
    fn a_remove_that_saw_an_add_undoes_it_and_an_old_copy_losing_it_is_told() {
        let (mut now, dot) = (Field::document(), Dot { replica: 0, seq: 1 });
        let Field::Tags(s) = &mut now[1] else { unreachable!() };
        s.add(2, dot);
        let before = now.clone();
        let Field::Tags(s) = &mut now[1] else { unreachable!() };
        let removed = s.remove(&2);
        let edits = [Edit::Tag { tag: 2, dot }, Edit::Untag { tag: 2, removed }];
        assert!(unshown(&now, &[(0, &edits, 0)]).is_empty());
        assert_eq!(unshown(&before, &[(0, &edits, 0)]), vec![(0, 2, 1)], "the remove is lost in the old copy");
        assert_eq!(edits[1].describe(), "−idea");
    }
}
