//! A map from small dense integer keys to values, stored by index.

/// Values by a key `row << 32 | n` (given as any integer type that widens to `u64`), where
/// rows are few and each row's `n` counts up from a small number: a payment key is
/// `client << 32 | n` with each client counting its payments (a row per client), a charge
/// id or a cache key is a plain count (one row). It gives the
/// same answers, in the same order, as a `BTreeMap<u64, V>`, found by indexing instead of
/// searching: the payment database and provider hold an entry for every payment ever made
/// (at the seeds' scale, 50,000 a second, searching them was a sixth of the run, and copying
/// them for the player's checkpoints a tree walk), and a cache instance looks its keys up
/// several times per read. Memory grows with the largest `n` of each row, not the count.
#[derive(Clone, Debug)]
pub struct KeyTable<V> {
    rows: Vec<Vec<Option<V>>>,
    len: usize,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable { rows: Vec::new(), len: 0 }
    }
}

impl<V> KeyTable<V> {
    fn split(key: impl Into<u64>) -> (usize, usize) {
        let key = key.into();
        ((key >> 32) as usize, (key & u32::MAX as u64) as usize)
    }

    pub fn get(&self, key: impl Into<u64>) -> Option<&V> {
        let (r, n) = Self::split(key);
        self.rows.get(r)?.get(n)?.as_ref()
    }

    pub fn get_mut(&mut self, key: impl Into<u64>) -> Option<&mut V> {
        let (r, n) = Self::split(key);
        self.rows.get_mut(r)?.get_mut(n)?.as_mut()
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
        if row.len() <= n {
            row.resize_with(n + 1, || None);
        }
        if row[n].is_none() {
            self.len += 1;
        }
        row[n].get_or_insert(value)
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
        let (r, n) = Self::split(key);
        let old = self.rows.get_mut(r)?.get_mut(n)?.take();
        self.len -= old.is_some() as usize;
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
            row.iter().enumerate().filter_map(move |(n, v)| Some(((r as u64) << 32 | n as u64, v.as_ref()?)))
        })
    }

    /// Every value, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
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
}
