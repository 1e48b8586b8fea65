//! Maps from small dense integer keys to values, stored by index, and an append-only list,
//! both in blocks shared between copies; a numbered sequence that knows how far it is whole.
//!
//! The player keeps a copy of the whole run every simulated second or so, to rewind. A
//! table holding every payment ever made (over 100 MB by 16 s at the seeds' scale) took a
//! fifth of a second to copy, and the copies together outgrew the player's budget, so
//! rewinds re-simulated from near the start. Both structures here hold their entries in
//! fixed-size blocks behind reference counts: a copy shares every block, and whichever
//! side writes to a shared block first copies that block alone (copy on write). A run
//! writes near its newest keys, so a copy costs a pointer per block plus the few blocks
//! written since.

use std::rc::Rc;

/// Entries per shared block.
const BLOCK: usize = 64;

/// Values by a key `row << 32 | n` (given as any integer type that widens to `u64`), where
/// rows are few and each row's `n` counts up from a small number: a payment key is
/// `client << 32 | n` with each client counting its payments (a row per client), a charge
/// id or a cache key is a plain count (one row). It gives the
/// same answers, in the same order, as a `BTreeMap<u64, V>`, found by indexing instead of
/// searching: the payment database and provider hold an entry for every payment ever made
/// (at the seeds' scale, 50,000 a second, searching them was a sixth of the run, and copying
/// them for the player's checkpoints a tree walk), and a cache instance looks its keys up
/// several times per read. Memory grows with the largest `n` of each row, not the count,
/// in blocks of 64 entries; a copy shares the blocks (see the module's note).
#[derive(Clone, Debug)]
pub struct KeyTable<V> {
    rows: Vec<Vec<Rc<[Option<V>; BLOCK]>>>,
    len: usize,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable { rows: Vec::new(), len: 0 }
    }
}

impl<V: Clone> KeyTable<V> {
    fn split(key: impl Into<u64>) -> (usize, usize) {
        let key = key.into();
        ((key >> 32) as usize, (key & u32::MAX as u64) as usize)
    }

    pub fn get(&self, key: impl Into<u64>) -> Option<&V> {
        let (r, n) = Self::split(key);
        self.rows.get(r)?.get(n / BLOCK)?[n % BLOCK].as_ref()
    }

    /// The slot of a present value, its block made this table's own (copied if shared):
    /// a miss leaves a shared block shared.
    fn present_mut(&mut self, key: impl Into<u64>) -> Option<&mut Option<V>> {
        let (r, n) = Self::split(key);
        let block = self.rows.get_mut(r)?.get_mut(n / BLOCK)?;
        block[n % BLOCK].as_ref()?;
        Some(&mut Rc::make_mut(block)[n % BLOCK])
    }

    pub fn get_mut(&mut self, key: impl Into<u64>) -> Option<&mut V> {
        self.present_mut(key)?.as_mut()
    }

    pub fn contains_key(&self, key: impl Into<u64>) -> bool {
        self.get(key).is_some()
    }

    /// The value at `key`, first set to `value` if there is none.
    pub fn get_or_insert(&mut self, key: impl Into<u64>, value: V) -> &mut V {
        let (r, n) = Self::split(key);
        if self.rows.len() <= r {
            self.rows.resize_with(r + 1, Vec::new);
        }
        let row = &mut self.rows[r];
        if row.len() <= n / BLOCK {
            row.resize_with(n / BLOCK + 1, || Rc::new(std::array::from_fn(|_| None)));
        }
        let slot = &mut Rc::make_mut(&mut row[n / BLOCK])[n % BLOCK];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert(value)
    }

    pub fn insert(&mut self, key: impl Into<u64>, value: V) -> Option<V> {
        let key = key.into();
        if let Some(old) = self.get_mut(key) {
            return Some(std::mem::replace(old, value));
        }
        self.get_or_insert(key, value);
        None
    }

    pub fn remove(&mut self, key: impl Into<u64>) -> Option<V> {
        let old = self.present_mut(key)?.take();
        self.len -= 1;
        old
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (key, value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.rows.iter().enumerate().flat_map(|(r, row)| {
            row.iter()
                .flat_map(|block| block.iter())
                .enumerate()
                .filter_map(move |(n, v)| Some(((r as u64) << 32 | n as u64, v.as_ref()?)))
        })
    }

    /// Every value, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

/// Entries per shared block of a `Log`.
const LOG_BLOCK: usize = 1024;

/// An append-only list, in blocks shared between copies (see the module's note): every
/// block but the last is full, and only the last is ever written.
#[derive(Clone, Debug)]
pub struct Log<T> {
    blocks: Vec<Rc<Vec<T>>>,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log { blocks: Vec::new() }
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&mut self, value: T) {
        match self.blocks.last_mut() {
            Some(last) if last.len() < LOG_BLOCK => {
                if Rc::get_mut(last).is_none() {
                    // Shared with a copy: this side takes its own, with room for the rest.
                    let mut own = Vec::with_capacity(LOG_BLOCK);
                    own.extend_from_slice(last);
                    *last = Rc::new(own);
                }
                Rc::make_mut(last).push(value)
            }
            _ => {
                let mut block = Vec::with_capacity(LOG_BLOCK);
                block.push(value);
                self.blocks.push(Rc::new(block));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.last().map_or(0, |last| (self.blocks.len() - 1) * LOG_BLOCK + last.len())
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// As `slice::partition_point`: how many entries from the start satisfy `pred`, for a
    /// `pred` true of a prefix of the list and false of the rest.
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        // The blocks wholly in the prefix; all but the last block are full.
        let whole = self.blocks.partition_point(|b| b.last().is_some_and(&mut pred));
        match self.blocks.get(whole) {
            Some(b) => whole * LOG_BLOCK + b.partition_point(pred),
            None => self.len(),
        }
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flat_map(|b| b.iter())
    }

    /// The entry at `index` (from 0), found by indexing (every block but the last is full).
    pub fn get(&self, index: usize) -> Option<&T> {
        self.blocks.get(index / LOG_BLOCK)?.get(index % LOG_BLOCK)
    }
}

/// Entries numbered from 1 that arrive in any order, and how far from 1 all have arrived: a
/// cumulative acknowledgement (TCP's ack says every byte before it is in), or a ledger
/// reconciled against a provider's charge ids (every charge up to `contiguous` is recorded).
/// On a [`KeyTable`], so it shares blocks between copies as that does.
#[derive(Clone, Debug)]
pub struct Sequence<V> {
    entries: KeyTable<V>,
    contiguous: u64,
}

impl<V> Default for Sequence<V> {
    fn default() -> Self {
        Sequence { entries: KeyTable::default(), contiguous: 0 }
    }
}

impl<V: Clone> Sequence<V> {
    /// Entry `n` (from 1) arrived; a second arrival replaces the first.
    pub fn insert(&mut self, n: u64, value: V) {
        self.entries.insert(n, value);
        while self.entries.contains_key(self.contiguous + 1) {
            self.contiguous += 1;
        }
    }

    /// The largest `n` such that entries 1..=n have all arrived (0: not entry 1 yet).
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    pub fn get(&self, n: u64) -> Option<&V> {
        self.entries.get(n)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn answers_like_a_map() {
        // Random inserts, replacements, removals and lookups over a few clients' keys
        // (including keys never used and a client far beyond the others).
        let (mut table, mut map) = (KeyTable::default(), BTreeMap::new());
        let mut rng = faultline_core::Rng::new(7);
        for step in 0..20_000u64 {
            let client = [0, 1, 2, 7, 300][rng.pick(5)];
            let key = client << 32 | rng.below(64);
            match rng.below(5) {
                0 | 1 => assert_eq!(table.insert(key, step), map.insert(key, step), "insert {key:x}"),
                2 => assert_eq!(table.remove(key), map.remove(&key), "remove {key:x}"),
                3 => {
                    if let Some(v) = table.get_mut(key) {
                        *v += 1;
                    }
                    if let Some(v) = map.get_mut(&key) {
                        *v += 1;
                    }
                }
                _ => {
                    let t = *table.get_or_insert(key, step);
                    assert_eq!(t, *map.entry(key).or_insert(step), "get_or_insert {key:x}");
                }
            }
            assert_eq!(table.get(key), map.get(&key));
            assert_eq!(table.contains_key(key), map.contains_key(&key));
            assert_eq!((table.len(), table.is_empty()), (map.len(), map.is_empty()));
            if step % 1000 == 0 {
                let in_order: Vec<(u64, u64)> = table.iter().map(|(k, v)| (k, *v)).collect();
                assert_eq!(in_order, map.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), "order at {step}");
                assert!(table.values().eq(map.values()));
            }
        }
        assert_eq!(table.get(5u64 << 32 | 9), None);
        assert_eq!(table.remove(99u64 << 32), None);
        table.clear();
        assert_eq!((table.len(), table.iter().count(), table.get(7u64 << 32 | 3)), (0, 0, None));
    }

    #[test]
    fn copies_share_blocks_but_never_each_others_writes() {
        // A table and a log, copied at several points while both sides go on writing
        // (new keys, old keys, removals): each copy must keep answering exactly as it
        // did when it was made, and the original as if no copy had been made.
        let (mut table, mut map) = (KeyTable::default(), BTreeMap::new());
        let (mut log, mut list) = (Log::default(), Vec::new());
        let mut copies = Vec::new();
        let mut rng = faultline_core::Rng::new(11);
        for step in 0..30_000u64 {
            let key = rng.below(3) << 32 | rng.below(step / 20 + 1);
            if rng.below(4) == 0 {
                assert_eq!(table.remove(key), map.remove(&key));
            } else {
                assert_eq!(table.insert(key, step), map.insert(key, step));
            }
            log.push(step);
            list.push(step);
            if step % 3_001 == 0 {
                copies.push((table.clone(), map.clone(), log.clone(), list.clone()));
            }
            // A copy written to after it was made must not show in the original either.
            let which = rng.pick(copies.len().max(1));
            if let Some((t, m, l, v)) = copies.get_mut(which) {
                let k = rng.below(3) << 32 | rng.below(64);
                assert_eq!(t.insert(k, (1 << 40) + step), m.insert(k, (1 << 40) + step));
                if let Some(x) = t.get_mut(k ^ 1) {
                    *x += 1;
                    *m.get_mut(&(k ^ 1)).unwrap() += 1;
                }
                l.push((1 << 40) + step);
                v.push((1 << 40) + step);
            }
        }
        copies.push((table, map, log, list));
        for (t, m, l, v) in &copies {
            assert!(t.iter().map(|(k, v)| (k, *v)).eq(m.iter().map(|(k, v)| (*k, *v))));
            assert_eq!(t.len(), m.len());
            assert!(l.iter().eq(v.iter()));
            assert_eq!(l.len(), v.len());
        }
    }

    #[test]
    fn a_log_finds_a_partition_point_like_a_slice() {
        let (mut log, mut list) = (Log::default(), Vec::new());
        assert_eq!((log.len(), log.is_empty(), log.partition_point(|&x: &u64| x < 5)), (0, true, 0));
        for i in 0..5_000u64 {
            let t = i / 3; // repeats, as charges in one microsecond do
            log.push(t);
            list.push(t);
            if i % 97 == 0 || i == 4_999 {
                for probe in [0, t / 2, t, t + 1, 1_000, 1_024, 5_000] {
                    assert_eq!(
                        log.partition_point(|&x| x < probe),
                        list.partition_point(|&x| x < probe),
                        "{i} {probe}"
                    );
                }
                assert_eq!((log.len(), log.is_empty()), (list.len(), false));
                for at in [0, i as usize / 2, i as usize, i as usize + 1, 1_023, 1_024] {
                    assert_eq!(log.get(at), list.get(at), "get {at} of {}", list.len());
                }
            }
        }
    }

    #[test]
    fn a_sequence_knows_how_far_it_is_whole() {
        // Out of order: the contiguous prefix only grows when the gap closes.
        let mut seq = Sequence::default();
        let prefix: Vec<u64> = [2, 3, 1, 6, 4, 5, 9]
            .map(|n| {
                seq.insert(n, n * 10);
                seq.contiguous()
            })
            .to_vec();
        assert_eq!(prefix, [0, 0, 3, 3, 4, 6, 6]);
        assert_eq!((seq.len(), seq.get(9), seq.get(7)), (7, Some(&90), None));
        // Random arrival orders (with repeats) against the definition: the largest n with
        // 1..=n all present.
        let mut rng = faultline_core::Rng::new(4);
        for _ in 0..50 {
            let (mut seq, mut seen) = (Sequence::default(), vec![false; 302]);
            for _ in 0..400 {
                let n = 1 + rng.below(300);
                seq.insert(n, ());
                seen[n as usize] = true;
                let whole = (1..seen.len()).take_while(|&i| seen[i]).count() as u64;
                assert_eq!(seq.contiguous(), whole);
            }
        }
    }
}
