//! State-based CRDTs and version vectors: a PN-counter, an add-wins observed-remove set, an RGA sequence for text, and version vectors that tell concurrent versions apart.
//!
//! Every replica numbers its own edits 1, 2, 3…; an edit is named by its [`Dot`] (replica,
//! number). A [`VersionVector`] keeps, per replica, the highest number seen: when states are
//! shipped whole (anti-entropy), a replica has seen all of another's edits up to that number,
//! so the vector is an exact summary of what it has seen, and comparing two vectors tells
//! whether one version descends from the other or the two are concurrent (Parker et al. 1983).
//!
//! The three CRDTs (Shapiro et al. 2011) merge by a join: commutative, associative and
//! idempotent (the tests check the three laws on random states), so replicas that have seen
//! the same edits hold the same state whatever order, how often and by which path the states
//! arrived — a duplicated or reordered sync message is harmless.
//! - [`PnCounter`]: per replica, the increments and the decrements it made; merge by max.
//! - [`OrSet`]: each element kept with the dots of the adds that put it there, and the dots
//!   seen; a remove drops the dots it observed, so an add concurrent with it survives (add
//!   wins). Merged as Riak's ORSWOT: an entry one side lacks is dropped only if that side has
//!   seen its dot (it was removed there).
//! - [`Rga`]: characters with ids `(Lamport time, replica)`, each inserted after a parent;
//!   siblings after one parent are ordered newest first, so concurrent inserts interleave the
//!   same way everywhere (Roh et al. 2011). A delete leaves a tombstone: the price is metadata.
//!
//! `bytes()` estimates a state's size on the wire (8-byte numbers, 4-byte replica ids and
//! characters): what a sync ships, and how much of it is metadata rather than the value.

use std::collections::{BTreeMap, BTreeSet};

/// A replica's number.
pub type ReplicaId = u32;

/// One edit's name: the replica that made it and its number there (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dot {
    pub replica: ReplicaId,
    pub seq: u64,
}

/// How two versions relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    Equal,
    /// The first has seen less: the second descends from it.
    Before,
    After,
    /// Neither has seen all of the other: a conflict.
    Concurrent,
}

/// Per replica, the highest edit number seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionVector(BTreeMap<ReplicaId, u64>);

impl VersionVector {
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.0.get(&replica).copied().unwrap_or(0)
    }
    pub fn observe(&mut self, dot: Dot) {
        let e = self.0.entry(dot.replica).or_insert(0);
        *e = (*e).max(dot.seq);
    }
    pub fn contains(&self, dot: Dot) -> bool {
        dot.seq <= self.get(dot.replica)
    }
    pub fn merge(&mut self, other: &VersionVector) {
        for (&r, &s) in &other.0 {
            self.observe(Dot { replica: r, seq: s });
        }
    }
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let le = self.0.iter().all(|(&r, &s)| s <= other.get(r));
        let ge = other.0.iter().all(|(&r, &s)| s <= self.get(r));
        match (le, ge) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (false, false) => Causality::Concurrent,
        }
    }
    /// How many edits it summarises.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    pub fn bytes(&self) -> usize {
        12 * self.0.len()
    }
}

/// A counter that goes up and down: each replica's increments and decrements, merged by max.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PnCounter {
    p: BTreeMap<ReplicaId, u64>,
    n: BTreeMap<ReplicaId, u64>,
}

impl PnCounter {
    /// `replica` adds `delta` (an increment or a decrement).
    pub fn add(&mut self, replica: ReplicaId, delta: i64) {
        let side = if delta >= 0 { &mut self.p } else { &mut self.n };
        *side.entry(replica).or_insert(0) += delta.unsigned_abs();
    }
    pub fn value(&self) -> i64 {
        self.p.values().sum::<u64>() as i64 - self.n.values().sum::<u64>() as i64
    }
    /// How much `replica` has added and taken away, as this state counts it.
    pub fn counts(&self, replica: ReplicaId) -> (u64, u64) {
        let get = |m: &BTreeMap<ReplicaId, u64>| m.get(&replica).copied().unwrap_or(0);
        (get(&self.p), get(&self.n))
    }
    pub fn merge(&mut self, other: &PnCounter) {
        for (mine, theirs) in [(&mut self.p, &other.p), (&mut self.n, &other.n)] {
            for (&r, &c) in theirs {
                let e = mine.entry(r).or_insert(0);
                *e = (*e).max(c);
            }
        }
    }
    pub fn bytes(&self) -> usize {
        12 * (self.p.len() + self.n.len())
    }
}

/// An add-wins observed-remove set of small elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrSet<E: Ord> {
    entries: BTreeSet<(E, Dot)>,
    seen: VersionVector,
}

impl<E: Ord + Clone> OrSet<E> {
    pub fn add(&mut self, e: E, dot: Dot) {
        self.entries.insert((e, dot));
        self.seen.observe(dot);
    }
    /// Removes `e` as this replica sees it; returns the dots the remove observed (and drops).
    pub fn remove(&mut self, e: &E) -> Vec<Dot> {
        let dots: Vec<Dot> = self.entries.iter().filter(|(x, _)| x == e).map(|&(_, d)| d).collect();
        self.entries.retain(|(x, _)| x != e);
        dots
    }
    pub fn contains(&self, e: &E) -> bool {
        self.entries.iter().any(|(x, _)| x == e)
    }
    /// Whether the add named `dot` still holds `e` here.
    pub fn holds(&self, e: &E, dot: Dot) -> bool {
        self.entries.contains(&(e.clone(), dot))
    }
    /// Whether any element is still held by the add named `dot`.
    pub fn holds_dot(&self, dot: Dot) -> bool {
        self.entries.iter().any(|&(_, d)| d == dot)
    }
    /// The elements, each once, in order.
    pub fn elements(&self) -> Vec<E> {
        let mut out: Vec<E> = self.entries.iter().map(|(e, _)| e.clone()).collect();
        out.dedup();
        out
    }
    pub fn merge(&mut self, other: &OrSet<E>) {
        let kept = |a: &BTreeSet<(E, Dot)>, b: &OrSet<E>| -> Vec<(E, Dot)> {
            a.iter().filter(|x| b.entries.contains(x) || !b.seen.contains(x.1)).cloned().collect()
        };
        let mut entries: BTreeSet<(E, Dot)> = kept(&self.entries, other).into_iter().collect();
        entries.extend(kept(&other.entries, self));
        self.entries = entries;
        self.seen.merge(&other.seen);
    }
    /// Bytes on the wire with `elem_bytes` per element: each entry's element and dot, the vector.
    pub fn bytes(&self, elem_bytes: usize) -> usize {
        self.entries.len() * (elem_bytes + 12) + self.seen.bytes()
    }
}

/// A character's id in an [`Rga`]: its Lamport time, then its replica (to break ties).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElemId {
    pub time: u64,
    pub replica: ReplicaId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Elem {
    id: ElemId,
    after: Option<ElemId>,
    ch: char,
    deleted: bool,
}

/// A replicated growable array: text as characters in one order, deleted ones kept as tombstones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rga {
    elems: Vec<Elem>,
}

impl Rga {
    fn index(&self, id: ElemId) -> Option<usize> {
        self.elems.iter().position(|e| e.id == id)
    }
    /// The id of the visible character at `pos` (0-based), if there is one.
    pub fn visible_id(&self, pos: usize) -> Option<ElemId> {
        self.elems.iter().filter(|e| !e.deleted).nth(pos).map(|e| e.id)
    }
    /// Inserts `ch` with a new `id` (its time above every one this state holds) after the
    /// visible character at `pos − 1` (`pos` 0: at the start).
    pub fn insert_at(&mut self, pos: usize, id: ElemId, ch: char) {
        let after = pos.checked_sub(1).and_then(|p| self.visible_id(p));
        assert!(self.max_time() < id.time, "an insert's time is above all it has seen");
        self.integrate(Elem { id, after, ch, deleted: false });
    }
    /// Places `e` after its parent, past the siblings newer than it (and their descendants,
    /// which are newer still: Lamport times grow along every chain of inserts).
    fn integrate(&mut self, e: Elem) {
        let mut at = e.after.map_or(0, |a| self.index(a).expect("a parent arrives before its child") + 1);
        while at < self.elems.len() && self.elems[at].id > e.id {
            at += 1;
        }
        self.elems.insert(at, e);
    }
    pub fn delete(&mut self, id: ElemId) {
        if let Some(i) = self.index(id) {
            self.elems[i].deleted = true;
        }
    }
    /// `Some(true)` if `id` is here and visible, `Some(false)` if a tombstone, `None` if absent.
    pub fn visible(&self, id: ElemId) -> Option<bool> {
        self.index(id).map(|i| !self.elems[i].deleted)
    }
    /// Every character's id here, with whether it is visible (not a tombstone).
    pub fn states(&self) -> impl Iterator<Item = (ElemId, bool)> + '_ {
        self.elems.iter().map(|e| (e.id, !e.deleted))
    }
    pub fn text(&self) -> String {
        self.elems.iter().filter(|e| !e.deleted).map(|e| e.ch).collect()
    }
    pub fn len(&self) -> usize {
        self.elems.iter().filter(|e| !e.deleted).count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn tombstones(&self) -> usize {
        self.elems.len() - self.len()
    }
    pub fn max_time(&self) -> u64 {
        self.elems.iter().map(|e| e.id.time).max().unwrap_or(0)
    }
    /// Adds what `other` has that this lacks, parents first (its order puts every parent
    /// before its children), and its tombstones.
    pub fn merge(&mut self, other: &Rga) {
        // Tombstones first through an index, then only the missing characters are placed one
        // by one: a sync mostly brings few new ones to a long text.
        let at: BTreeMap<ElemId, usize> = self.elems.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
        let mut missing = Vec::new();
        for e in &other.elems {
            match at.get(&e.id) {
                Some(&i) => self.elems[i].deleted |= e.deleted,
                None => missing.push(e),
            }
        }
        for e in missing {
            self.integrate(e.clone());
        }
    }
    /// Each character with its id, its parent's and its tombstone flag.
    pub fn bytes(&self) -> usize {
        self.elems.len() * (4 + 12 + 12 + 1)
    }
}

/// A value that merges by a join (a CRDT's state).
pub trait Join: Clone + PartialEq {
    fn join(&mut self, other: &Self);
}

impl Join for PnCounter {
    fn join(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl<E: Ord + Clone> Join for OrSet<E> {
    fn join(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl Join for Rga {
    fn join(&mut self, other: &Self) {
        self.merge(other)
    }
}

/// How a replica reconciles a key's concurrent versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Keep the version with the highest (wall-clock stamp, replica): the others are dropped.
    LastWriterWins,
    /// Keep every version no other descends from (siblings) until a writer merges them.
    Siblings,
    /// Join every version at once (a CRDT).
    Join,
}

/// One version of a key: its writer's wall-clock stamp, the writes it descends from, its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Version<F> {
    pub stamp: (u64, ReplicaId),
    pub vv: VersionVector,
    pub value: F,
}

/// A key as one replica holds it: one version or, as siblings, several concurrent ones. The
/// value is a CRDT under every policy, so that siblings can be merged the way a CRDT would;
/// last-writer-wins and siblings simply never merge it on their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Key<F>(Vec<Version<F>>);

impl<F: Join> Key<F> {
    pub fn new(value: F) -> Key<F> {
        Key(vec![Version { stamp: (0, 0), vv: VersionVector::default(), value }])
    }
    pub fn versions(&self) -> &[Version<F>] {
        &self.0
    }
    /// The key as `policy` reads it: the highest stamp, the versions none descends from, or their join.
    pub fn reading(&self, policy: Policy) -> Vec<Version<F>> {
        match policy {
            Policy::LastWriterWins => vec![self.0.iter().max_by_key(|v| v.stamp).expect("a version").clone()],
            Policy::Siblings => frontier(self.0.clone()),
            Policy::Join => vec![joined(&self.0)],
        }
    }
    /// What a writer edits: the reading's versions joined (under siblings, the user's merge by hand).
    pub fn current(&self, policy: Policy) -> Version<F> {
        joined(&self.reading(policy))
    }
    /// Stores `value`, written as `dot` at wall-clock `stamp` on top of `current(policy)`.
    /// Last-writer-wins drops a write stamped at or below the value it edited (as Cassandra
    /// drops a write older than the cell): returns whether the write was kept.
    pub fn write(&mut self, policy: Policy, value: F, dot: Dot, stamp: (u64, ReplicaId)) -> bool {
        let base = self.current(policy);
        if policy == Policy::LastWriterWins && stamp <= base.stamp {
            return false;
        }
        let mut vv = base.vv;
        vv.observe(dot);
        // A version's stamp is the latest it includes: a slow clock's write under a join
        // would otherwise carry a stamp older than what it merged, and depend on the path.
        self.0 = vec![Version { stamp: stamp.max(base.stamp), vv, value }];
        true
    }
    /// Takes in another replica's versions of this key; returns whether a conflict surfaced
    /// (under siblings: several versions where there was one).
    pub fn merge(&mut self, policy: Policy, theirs: &[Version<F>]) -> bool {
        let before = self.reading(policy).len();
        let mut all = std::mem::take(&mut self.0);
        all.extend(theirs.iter().cloned());
        self.0 = match policy {
            Policy::LastWriterWins => vec![all.into_iter().max_by_key(|v| v.stamp).expect("a version")],
            Policy::Siblings => frontier(all),
            Policy::Join => vec![joined(&all)],
        };
        policy == Policy::Siblings && before <= 1 && self.0.len() > 1
    }
}

/// `versions` joined into one: the highest stamp, the vectors merged, the values joined.
pub fn joined<F: Join>(versions: &[Version<F>]) -> Version<F> {
    let mut out = versions[0].clone();
    for v in &versions[1..] {
        out.stamp = out.stamp.max(v.stamp);
        out.vv.merge(&v.vv);
        out.value.join(&v.value);
    }
    out
}

/// The versions none of the others descends from, each once, in the vectors' order (so that
/// replicas holding the same siblings hold them alike).
fn frontier<F>(mut vs: Vec<Version<F>>) -> Vec<Version<F>> {
    vs.sort_by(|a, b| a.vv.cmp(&b.vv));
    vs.dedup_by(|a, b| a.vv == b.vv);
    let newer = |v: &Version<F>| vs.iter().any(|w| v.vv.compare(&w.vv) == Causality::Before);
    let keep: Vec<bool> = vs.iter().map(|v| !newer(v)).collect();
    vs.into_iter().zip(keep).filter(|(_, k)| *k).map(|(v, _)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    const R: ReplicaId = 3;

    /// Three replicas' states after random local edits and random merges among them.
    fn replicas<T: Clone>(
        seed: u64,
        empty: T,
        edit: impl Fn(&mut T, ReplicaId, u64, &mut Rng),
        merge: impl Fn(&mut T, &T),
    ) -> Vec<T> {
        let mut rng = Rng::new(seed);
        let mut states = vec![empty; R as usize];
        let mut seq = [0u64; R as usize];
        for _ in 0..40 {
            let r = rng.below(R as u64) as usize;
            if rng.below(4) == 0 {
                let from = states[rng.below(R as u64) as usize].clone();
                merge(&mut states[r], &from);
            } else {
                seq[r] += 1;
                edit(&mut states[r], r as ReplicaId, seq[r], &mut rng);
            }
        }
        states
    }

    /// Join laws on random states: commutative, associative, idempotent.
    fn laws<T: Clone + PartialEq + std::fmt::Debug>(states: &[T], merge: impl Fn(&mut T, &T)) {
        let join = |a: &T, b: &T| {
            let mut x = a.clone();
            merge(&mut x, b);
            x
        };
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        assert_eq!(join(a, b), join(b, a), "commutative");
        assert_eq!(join(&join(a, b), c), join(a, &join(b, c)), "associative");
        assert_eq!(join(a, a), *a, "idempotent");
        assert_eq!(join(&join(a, b), b), join(a, b), "a duplicate changes nothing");
    }

    #[test]
    fn pn_counter_merge_laws_and_value() {
        for seed in 1..=50 {
            let edit = |c: &mut PnCounter, r, _, rng: &mut Rng| c.add(r, if rng.below(3) == 0 { -1 } else { 1 });
            let s = replicas(seed, PnCounter::default(), edit, PnCounter::merge);
            laws(&s, PnCounter::merge);
            let mut all = s[0].clone();
            s.iter().for_each(|x| all.merge(x));
            // Each replica's own counts are exact on it, so the join of all is the true total.
            let own: i64 = (0..R).map(|r| s[r as usize].counts(r)).map(|(p, n)| p as i64 - n as i64).sum();
            assert_eq!(all.value(), own);
        }
    }

    fn set_edit(s: &mut OrSet<u8>, r: ReplicaId, seq: u64, rng: &mut Rng) {
        let e = rng.below(4) as u8;
        if rng.below(3) == 0 {
            s.remove(&e);
        } else {
            s.add(e, Dot { replica: r, seq });
        }
    }

    #[test]
    fn or_set_merge_laws() {
        for seed in 1..=50 {
            laws(&replicas(seed, OrSet::default(), set_edit, OrSet::merge), OrSet::merge);
        }
    }

    #[test]
    fn or_set_add_wins_over_a_concurrent_remove_and_a_seen_remove_sticks() {
        let (d1, d2) = (Dot { replica: 0, seq: 1 }, Dot { replica: 1, seq: 1 });
        let mut a = OrSet::default();
        a.add(7u8, d1);
        let mut b = a.clone();
        assert_eq!(b.remove(&7), vec![d1]);
        a.add(7, d2); // concurrent with b's remove: b never saw d2
        let mut m = a.clone();
        m.merge(&b);
        assert!(m.contains(&7) && m.holds(&7, d2) && !m.holds(&7, d1));
        let mut c = b.clone();
        c.merge(&OrSet { entries: [(7, d1)].into(), seen: a.seen.clone() });
        assert!(!c.contains(&7), "the remove saw d1: an old copy of it does not bring it back");
    }

    fn text_edit(t: &mut Rga, r: ReplicaId, _: u64, rng: &mut Rng) {
        if !t.is_empty() && rng.below(3) == 0 {
            let id = t.visible_id(rng.below(t.len() as u64) as usize).expect("in range");
            t.delete(id);
        } else {
            let pos = rng.below(t.len() as u64 + 1) as usize;
            let id = ElemId { time: t.max_time() + 1, replica: r };
            t.insert_at(pos, id, (b'a' + r as u8) as char);
        }
    }

    #[test]
    fn rga_merge_laws() {
        for seed in 1..=50 {
            laws(&replicas(seed, Rga::default(), text_edit, Rga::merge), Rga::merge);
        }
    }

    #[test]
    fn rga_concurrent_inserts_at_one_place_keep_both_in_one_order() {
        let mut a = Rga::default();
        a.insert_at(0, ElemId { time: 1, replica: 0 }, 'x');
        let mut b = a.clone();
        a.insert_at(1, ElemId { time: 2, replica: 0 }, 'a');
        b.insert_at(1, ElemId { time: 2, replica: 1 }, 'b');
        b.delete(ElemId { time: 1, replica: 0 });
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(&b);
        ba.merge(&a);
        assert_eq!((ab.text(), ba.text(), ab.tombstones()), ("ba".into(), "ba".into(), 1));
    }

    #[test]
    fn version_vectors_tell_descendants_from_concurrent_versions() {
        let v = |pairs: &[(ReplicaId, u64)]| {
            let mut x = VersionVector::default();
            pairs.iter().for_each(|&(replica, seq)| x.observe(Dot { replica, seq }));
            x
        };
        assert_eq!(v(&[(0, 1)]).compare(&v(&[(0, 2), (1, 1)])), Causality::Before);
        assert_eq!(v(&[(0, 2), (1, 1)]).compare(&v(&[(0, 1)])), Causality::After);
        assert_eq!(v(&[(0, 2)]).compare(&v(&[(0, 1), (1, 1)])), Causality::Concurrent);
        assert_eq!(v(&[(0, 2)]).compare(&v(&[(0, 2)])), Causality::Equal);
        let mut m = v(&[(0, 2)]);
        m.merge(&v(&[(0, 1), (1, 1)]));
        assert!(m.contains(Dot { replica: 1, seq: 1 }) && m.total() == 3 && m.bytes() == 24);
    }

    fn key(n: i64, stamp: u64, dots: &[(ReplicaId, u64)]) -> Version<PnCounter> {
        let mut value = PnCounter::default();
        value.add(0, n);
        let mut vv = VersionVector::default();
        dots.iter().for_each(|&(replica, seq)| vv.observe(Dot { replica, seq }));
        Version { stamp: (stamp, 0), vv, value }
    }

    #[test]
    fn a_key_under_each_policy_keeps_the_latest_the_siblings_or_their_join() {
        let (a, b) = (key(1, 10, &[(0, 1)]), key(2, 20, &[(1, 1)]));
        let held = |policy| {
            let mut k = Key(vec![a.clone()]);
            let conflict = k.merge(policy, std::slice::from_ref(&b));
            (k.versions().len(), k.current(policy).value.value(), conflict)
        };
        assert_eq!(held(Policy::LastWriterWins), (1, 2, false));
        assert_eq!(held(Policy::Siblings), (2, 2, true), "the user's merge joins the counters: max 1, 2");
        assert_eq!(held(Policy::Join), (1, 2, false));
        let mut k = Key(vec![a.clone()]);
        k.merge(Policy::Siblings, &[key(1, 5, &[(0, 1), (1, 1)])]);
        assert_eq!(k.versions().len(), 1, "a descendant replaces what it descends from");
        let mut lww = Key(vec![b.clone()]);
        assert!(!lww.write(Policy::LastWriterWins, PnCounter::default(), Dot { replica: 0, seq: 2 }, (15, 0)));
        assert!(lww.write(Policy::LastWriterWins, PnCounter::default(), Dot { replica: 0, seq: 2 }, (25, 0)));
    }
}
