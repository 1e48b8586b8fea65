//! Waiter lists: who is waiting on a key (single-flight, an idempotency key in progress), answered in arrival order.
//!
//! The first to wait on a key is the one that must do the work (load it, charge it); the
//! others wait for its result, and `take` hands all of them over at once, oldest first. Two
//! forms, with the same answers:
//! - [`Waiters`]: any `Ord` key, one tree entry per waiter, keyed (key, arrival number). For
//!   many keys with a waiter or two each: the player copies the whole run for its
//!   checkpoints, where a list per key costs an allocation per key (see
//!   idempotent_payments.rs: at the seeds' scale, a third of the time copying the nodes took).
//! - [`WaiterLists`]: small dense integer keys (a [`KeyTable`]), a list per key. For hot
//!   keys: a read-through cache at scale holds 10⁵ readers on one key behind an overrun
//!   origin, and a tree entry per waiter took a third of that run (cache_stampede.rs).

use crate::parts::table::KeyTable;
use std::collections::BTreeMap;

/// Callers (`W`: a node id, a request) waiting on keys (`K`), in arrival order per key.
#[derive(Clone, Debug)]
pub struct Waiters<K, W> {
    /// (key, arrival number) → waiter.
    by_key: BTreeMap<(K, u64), W>,
    /// Arrivals ever, for numbering them: never reset, so order holds across `take`s.
    arrivals: u64,
}

impl<K, W> Default for Waiters<K, W> {
    fn default() -> Self {
        Waiters { by_key: BTreeMap::new(), arrivals: 0 }
    }
}

impl<K: Ord + Clone, W> Waiters<K, W> {
    pub fn new() -> Self {
        Self::default()
    }

    /// `who` waits on `key`. Returns true if nobody was waiting on it already: the caller
    /// must start the work whose result everyone waits for (and `take` them when it ends).
    pub fn wait(&mut self, key: K, who: W) -> bool {
        let first = !self.contains(&key);
        self.by_key.insert((key, self.arrivals), who);
        self.arrivals += 1;
        first
    }

    /// Everyone waiting on `key`, oldest first; afterwards nobody is (the next `wait` on it
    /// is a first again).
    pub fn take(&mut self, key: &K) -> Vec<W> {
        let mut out = Vec::new();
        while let Some(w) = self.take_first(key) {
            out.push(w);
        }
        out
    }

    /// The oldest waiter on `key` (answering one at a time).
    pub fn take_first(&mut self, key: &K) -> Option<W> {
        let at = self.range(key).next().map(|(k, _)| k.1)?;
        self.by_key.remove(&(key.clone(), at))
    }

    /// Whether anyone waits on `key` (its work is under way).
    pub fn contains(&self, key: &K) -> bool {
        self.range(key).next().is_some()
    }

    /// How many wait on `key`.
    pub fn count(&self, key: &K) -> usize {
        self.range(key).count()
    }

    /// Everyone waiting on `key`, oldest first, left in place.
    pub fn iter(&self, key: &K) -> impl Iterator<Item = &W> {
        self.range(key).map(|(_, w)| w)
    }

    /// How many wait, on all keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Forgets every waiter (the node crashed: nobody will be answered).
    pub fn clear(&mut self) {
        self.by_key.clear();
    }

    fn range(&self, key: &K) -> std::collections::btree_map::Range<'_, (K, u64), W> {
        self.by_key.range((key.clone(), 0)..=(key.clone(), u64::MAX))
    }
}

/// Callers (`W`) waiting on small dense integer keys, a list per key, each in arrival order
/// (see the module's note for when to prefer it to [`Waiters`]). Keys are as
/// [`KeyTable`]'s: `row << 32 | n` with few rows and small `n`s.
#[derive(Clone, Debug)]
pub struct WaiterLists<W> {
    lists: KeyTable<Vec<W>>,
    /// Waiters on all keys.
    len: usize,
}

impl<W> Default for WaiterLists<W> {
    fn default() -> Self {
        WaiterLists { lists: KeyTable::default(), len: 0 }
    }
}

impl<W: Clone> WaiterLists<W> {
    pub fn new() -> Self {
        Self::default()
    }

    /// `who` waits on `key`. Returns true if nobody was waiting on it already: the caller
    /// must start the work whose result everyone waits for (and `take` them when it ends).
    pub fn wait(&mut self, key: impl Into<u64>, who: W) -> bool {
        let list = self.lists.get_or_insert(key, Vec::new());
        list.push(who);
        self.len += 1;
        list.len() == 1
    }

    /// Everyone waiting on `key`, oldest first; afterwards nobody is (the next `wait` on it
    /// is a first again).
    pub fn take(&mut self, key: impl Into<u64>) -> Vec<W> {
        let list = self.lists.remove(key).unwrap_or_default();
        self.len -= list.len();
        list
    }

    /// Whether anyone waits on `key` (its work is under way).
    pub fn contains(&self, key: impl Into<u64>) -> bool {
        self.lists.contains_key(key)
    }

    /// How many wait on `key`.
    pub fn count(&self, key: impl Into<u64>) -> usize {
        self.lists.get(key).map_or(0, Vec::len)
    }

    /// Everyone waiting on `key`, oldest first, left in place.
    pub fn iter(&self, key: impl Into<u64>) -> impl Iterator<Item = &W> {
        self.lists.get(key).into_iter().flatten()
    }

    /// How many wait, on all keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every waiter (the node crashed: nobody will be answered).
    pub fn clear(&mut self) {
        (self.lists, self.len) = (KeyTable::default(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn the_first_does_the_work_and_everyone_is_answered_in_order_once() {
        let mut w: Waiters<u64, u32> = Waiters::new();
        let firsts: Vec<bool> = [(7, 3), (2, 9), (7, 1), (7, 3), (1 << 32, 4)].map(|(k, c)| w.wait(k, c)).to_vec();
        assert_eq!(firsts, [true, true, false, false, true]);
        assert_eq!((w.count(&7), w.len(), w.iter(&7).copied().collect::<Vec<_>>()), (3, 5, vec![3, 1, 3]));
        assert_eq!(w.take(&7), [3, 1, 3], "arrival order, duplicates kept");
        assert_eq!(w.take(&7), [] as [u32; 0]);
        assert!(!w.contains(&7) && w.wait(7, 8), "after a take, the next waiter is first again");
        assert_eq!(w.take_first(&2), Some(9));
        assert_eq!(w.take_first(&2), None);
        assert_eq!((w.take(&(1 << 32)), w.take(&7)), (vec![4], vec![8]));
        assert!(w.is_empty());
    }

    #[test]
    fn neighbouring_and_composite_keys_never_mix() {
        // Keys next to each other, at the ends of their type, and compound ones.
        let mut w: Waiters<(u32, String), usize> = Waiters::new();
        let keys = [(0, String::new()), (0, "a".into()), (0, "a\0".into()), (u32::MAX, "a".into()), (1, "a".into())];
        for round in 0..3 {
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(w.wait(k.clone(), 10 * i + round), round == 0);
            }
        }
        for (i, k) in keys.iter().enumerate().rev() {
            assert_eq!(w.take(k), [10 * i, 10 * i + 1, 10 * i + 2]);
        }
        assert!(w.is_empty());
        let mut edge: Waiters<u64, u8> = Waiters::new();
        edge.wait(u64::MAX, 1);
        edge.wait(0, 2);
        assert_eq!((edge.take(&u64::MAX), edge.take(&0)), (vec![1], vec![2]));
    }

    #[test]
    fn matches_a_list_per_key() {
        // Random waits and takes against the obvious model: a queue per key.
        let mut rng = Rng::new(5);
        let mut w: Waiters<u8, u32> = Waiters::new();
        let mut model: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
        for step in 0..30_000 {
            let key = rng.below(20) as u8;
            match rng.below(4) {
                0 => assert_eq!(w.take(&key), model.remove(&key).unwrap_or_default()),
                1 => {
                    let q = model.entry(key).or_default();
                    let first = (!q.is_empty()).then(|| q.remove(0));
                    if q.is_empty() {
                        model.remove(&key);
                    }
                    assert_eq!(w.take_first(&key), first);
                }
                _ => {
                    let q = model.entry(key).or_default();
                    assert_eq!(w.wait(key, step), q.is_empty());
                    q.push(step);
                }
            }
            assert_eq!(w.len(), model.values().map(Vec::len).sum::<usize>());
        }
    }

    #[test]
    fn lists_per_key_answer_as_the_tree_does() {
        // Random waits, takes, counts and crashes against `Waiters`, on a hot key, a few
        // cool ones and keys in a second row; copies taken midway must not see later writes.
        let mut rng = Rng::new(9);
        let (mut lists, mut tree) = (WaiterLists::new(), Waiters::new());
        let mut copies = Vec::new();
        for step in 0..40_000u32 {
            let key = [0u64, 0, 0, 1, 2, 63, 64, 1 << 32, 1 << 32 | 5][rng.pick(9)];
            match rng.below(10) {
                0 => assert_eq!(lists.take(key), tree.take(&key), "take {key:x}"),
                1 if step % 500 == 1 => {
                    lists.clear();
                    tree.clear();
                }
                _ => assert_eq!(lists.wait(key, step), tree.wait(key, step), "wait {key:x}"),
            }
            assert_eq!((lists.count(key), lists.contains(key)), (tree.count(&key), tree.contains(&key)));
            assert!(lists.iter(key).eq(tree.iter(&key)));
            assert_eq!((lists.len(), lists.is_empty()), (tree.len(), tree.is_empty()));
            if step % 4_999 == 0 {
                copies.push((lists.clone(), tree.clone()));
            }
        }
        for (mut l, mut t) in copies {
            for key in [0u64, 1, 2, 63, 64, 1 << 32, 1 << 32 | 5] {
                assert_eq!(l.take(key), t.take(&key));
            }
            assert!(l.is_empty() && t.is_empty());
        }
    }
}
