//! A write-back buffer: acknowledged writes held dirty per key (repeats coalesced) and flushed, a durable log beside them, group commit, and what a crash loses.
//!
//! [`WriteBack`] keeps each key's newest acknowledged version until a flush sends it to the
//! database, where one write stands for every write the key took since the last flush
//! (coalescing: K uniform keys written n times per interval are written K(1 − (1 − 1/K)^n)
//! times, [`expected_distinct`]). A flush stays unconfirmed until the database says so, and is
//! sent again after a patience. A logged write is durable: a crash loses only what memory alone
//! held (the data at risk), and a restart replays the log as dirty keys. [`GroupCommit`] makes
//! the writes that arrive during an fsync wait for the next one, which covers them all.

use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// Dirty keys, flushes in flight and the durable log, by key; versions grow with each write.
#[derive(Clone, Debug)]
pub struct WriteBack<K> {
    /// The newest version not yet sent to the database, and how many writes it covers.
    dirty: BTreeMap<K, (u64, i64)>,
    /// Sent and not confirmed: the version and when it was sent.
    flushing: BTreeMap<K, (u64, Time)>,
    /// Durable: the newest logged version of each key not yet confirmed in the database.
    log: BTreeMap<K, u64>,
}

impl<K> Default for WriteBack<K> {
    fn default() -> Self {
        WriteBack { dirty: BTreeMap::new(), flushing: BTreeMap::new(), log: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> WriteBack<K> {
    /// An acknowledged write of `version`, held in memory until the next flush.
    pub fn hold(&mut self, key: K, version: u64) {
        let d = self.dirty.entry(key).or_insert((0, 0));
        *d = (d.0.max(version), d.1 + 1);
    }

    /// A write made durable in the log (before it is held and acknowledged).
    pub fn log(&mut self, key: K, version: u64) {
        let l = self.log.entry(key).or_insert(0);
        *l = (*l).max(version);
    }

    /// What to write now: each dirty key's newest version (dirty no more), then every flush
    /// unconfirmed for `patience` whose key is not dirty again; and the writes coalesced away.
    pub fn flush(&mut self, now: Time, patience: Micros) -> (Vec<(K, u64)>, i64) {
        let late =
            self.flushing.iter().filter(|&(k, &(_, at))| now.since(at) >= patience && !self.dirty.contains_key(k));
        let late: Vec<(K, u64)> = late.map(|(k, &(v, _))| (k.clone(), v)).collect();
        let saved = self.dirty.values().map(|&(_, n)| n - 1).sum();
        let mut out: Vec<(K, u64)> = std::mem::take(&mut self.dirty).into_iter().map(|(k, (v, _))| (k, v)).collect();
        out.extend(late);
        for (k, v) in &out {
            self.flushing.insert(k.clone(), (*v, now));
        }
        (out, saved)
    }

    /// The database holds `version` of `key` (or a newer one): neither memory nor the log need keep it.
    pub fn confirmed(&mut self, key: &K, version: u64) {
        if self.flushing.get(key).is_some_and(|&(v, _)| v <= version) {
            self.flushing.remove(key);
        }
        if self.log.get(key).is_some_and(|&v| v <= version) {
            self.log.remove(key);
        }
    }

    /// Keys whose newest acknowledged version only memory holds (dirty or in flight, not logged).
    pub fn at_risk(&self) -> impl Iterator<Item = (&K, u64)> + '_ {
        let flying = self.flushing.iter().filter(|(k, _)| !self.dirty.contains_key(k)).map(|(k, &(v, _))| (k, v));
        let all = self.dirty.iter().map(|(k, &(v, _))| (k, v)).chain(flying);
        all.filter(|(k, v)| self.log.get(k).is_none_or(|l| l < v))
    }

    /// Memory is gone: returns what only memory held, and how many of those were dirty (lost
    /// for sure; a flush in flight may still land).
    pub fn crash(&mut self) -> (Vec<(K, u64)>, usize) {
        let risk: Vec<(K, u64)> = self.at_risk().map(|(k, v)| (k.clone(), v)).collect();
        let dirty = risk.iter().filter(|(k, _)| self.dirty.contains_key(k)).count();
        (self.dirty, self.flushing) = (BTreeMap::new(), BTreeMap::new());
        (risk, dirty)
    }

    /// A restart: the log becomes the dirty set again (each entry one write); its entries.
    pub fn replay(&mut self) -> Vec<(K, u64)> {
        let entries: Vec<(K, u64)> = self.log.iter().map(|(k, &v)| (k.clone(), v)).collect();
        entries.iter().for_each(|(k, v)| _ = self.dirty.insert(k.clone(), (*v, 1)));
        entries
    }

    /// Keys dirty or in flight.
    pub fn unflushed(&self) -> usize {
        self.dirty.len() + self.flushing.keys().filter(|k| !self.dirty.contains_key(k)).count()
    }
    pub fn logged(&self) -> usize {
        self.log.len()
    }
}

/// Group commit: appends wait for the fsync in progress to end, then share the next one.
#[derive(Clone, Debug)]
pub struct GroupCommit<T> {
    pending: Vec<T>,
    syncing: Vec<T>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit { pending: Vec::new(), syncing: Vec::new() }
    }
}

impl<T> GroupCommit<T> {
    /// Appends `item`; true if an fsync starts now (the caller times it).
    pub fn append(&mut self, item: T) -> bool {
        self.pending.push(item);
        self.start()
    }

    /// The fsync ended: the items it made durable, and whether another starts now.
    pub fn synced(&mut self) -> (Vec<T>, bool) {
        let done = std::mem::take(&mut self.syncing);
        (done, self.start())
    }

    fn start(&mut self) -> bool {
        let idle = self.syncing.is_empty() && !self.pending.is_empty();
        if idle {
            self.syncing = std::mem::take(&mut self.pending);
        }
        idle
    }

    /// A crash: nothing appended and not yet synced was durable.
    pub fn crash(&mut self) {
        (self.pending, self.syncing) = (Vec::new(), Vec::new());
    }
}

/// The expected number of distinct keys among `n` uniform picks of `k` keys: k(1 − (1 − 1/k)^n)
/// (occupancy); with a Poisson number of picks of mean n, k(1 − e^(−n/k)).
pub fn expected_distinct(k: f64, n: f64, poisson: bool) -> f64 {
    k * (1.0 - if poisson { libm::exp(-n / k) } else { libm::pow(1.0 - 1.0 / k, n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn a_flush_writes_each_key_once_and_matches_the_occupancy_formula() {
        // 200 writes per flush over 100 keys, 500 flushes: the mean distinct count (sd ~2.4 per
        // flush, ~0.11 over 500) within 0.5 of 100(1 − 0.99^200) = 86.6.
        let (mut wb, mut rng, mut written, mut saved, mut version) = (WriteBack::default(), Rng::new(7), 0, 0, 0);
        for i in 0..500u64 {
            for _ in 0..200 {
                version += 1;
                wb.hold(rng.below(100), version);
            }
            let (out, s) = wb.flush(Time::from_secs(i), 10 * 1_000_000);
            out.iter().for_each(|(k, v)| wb.confirmed(k, *v));
            (written, saved) = (written + out.len() as i64, saved + s);
        }
        assert_eq!(written + saved, 100_000);
        let want = expected_distinct(100.0, 200.0, false);
        assert!((written as f64 / 500.0 - want).abs() < 0.5, "{written} writes, {want} per flush");
    }

    #[test]
    fn a_crash_loses_only_what_memory_alone_held_and_the_log_replays() {
        let mut wb = WriteBack::default();
        wb.hold(1, 1);
        wb.log(2, 2);
        wb.hold(2, 2);
        wb.hold(3, 3);
        let (out, _) = wb.flush(Time::ZERO, 1000);
        assert_eq!(out, vec![(1, 1), (2, 2), (3, 3)]);
        wb.confirmed(&3, 3);
        wb.hold(1, 4);
        // Key 1: v4 dirty (lost for sure); key 2 is logged; key 3 is in the database.
        assert_eq!(wb.crash(), (vec![(1, 4)], 1));
        assert_eq!(wb.replay(), vec![(2, 2)]);
        assert_eq!(wb.at_risk().count(), 0);
        // Unconfirmed flushes go again after the patience, unless the key is dirty again.
        let (out, saved) = wb.flush(Time::from_secs(1), 1000);
        assert_eq!((out, saved), (vec![(2, 2)], 0));
        assert_eq!(wb.flush(Time::from_secs(2), 1000).0, vec![(2, 2)]);
        wb.confirmed(&2, 2);
        assert_eq!((wb.unflushed(), wb.logged()), (0, 0));
    }

    #[test]
    fn group_commit_batches_what_arrives_during_an_fsync() {
        let mut g = GroupCommit::default();
        assert!(g.append(1));
        assert!(!g.append(2) && !g.append(3));
        assert_eq!(g.synced(), (vec![1], true));
        assert_eq!(g.synced(), (vec![2, 3], false));
        g.append(4);
        g.crash();
        assert_eq!(g.synced(), (vec![], false));
    }
}
