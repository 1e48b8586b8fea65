//! Stale reads judged against the truth (each key's commit times), and a cache of versions that can refuse an older set.
//!
//! [`Commits`] records when each version of each key was committed (true time). A read that
//! got version v of a key is stale if a newer version had been committed by then, and its
//! staleness is the time since the *first* newer one was: how long the reader has been behind
//! (Bailis et al., "Probabilistically Bounded Staleness", VLDB 2012, measure t-visibility the
//! same way). Only the last `keep` versions of a key are kept, so a read of an older one is
//! judged by the oldest kept: an underestimate, and only past `keep` writes of one key.
//!
//! [`VersionCache`] holds one version per key, fresh for a TTL (a [`TtlCache`]). A set is
//! plain, or a compare-and-set on the version — taken only if newer than the version held, in
//! one step, as a Redis script or memcached's `cas` does it — and an invalidation deletes the
//! key. Beside the values it remembers, for a TTL, the newest version it held or was told to
//! drop, so that a set bringing back an older one is told (`went_back`): the stale-set race,
//! where a reader sets the row it read after a writer's delete. A restart forgets both.

use crate::parts::cache::{Lookup, TtlCache};
use crate::parts::store::Store;
use faultline_core::{Ctx, Micros, Node, Time};
use std::collections::BTreeMap;

/// A table's rows as versions (one counter for the table, as etcd's revisions), with when each
/// kept version was committed (true time).
#[derive(Clone, Debug)]
pub struct Commits<K> {
    rows: Store<K, ()>,
    history: BTreeMap<(K, u64), Time>,
    keep: usize,
    max_staleness: Micros,
}

impl<K: Ord + Clone> Commits<K> {
    /// Keeps the last `keep` (at least 1) versions of each key.
    pub fn new(keep: usize) -> Commits<K> {
        Commits { rows: Store::new(), history: BTreeMap::new(), keep: keep.max(1), max_staleness: 0 }
    }

    /// Commits a new version of `key` at `at` (true time); returns it.
    pub fn write(&mut self, key: K, at: Time) -> u64 {
        let version = self.rows.put(key.clone(), ());
        let oldest = self.history.range((key.clone(), 0)..(key.clone(), version)).nth_back(self.keep - 1);
        if let Some(old) = oldest.map(|(k, _)| k.clone()) {
            self.history.remove(&old);
        }
        self.history.insert((key, version), at);
        version
    }

    /// The row's version now (0: never written).
    pub fn version(&self, key: &K) -> u64 {
        self.rows.version(key, Time::ZERO)
    }

    /// When a version of `key` newer than `version` was first committed: `None` if none was
    /// (a read of `version` is fresh).
    pub fn superseded_at(&self, key: &K, version: u64) -> Option<Time> {
        self.history.range((key.clone(), version.saturating_add(1))..=(key.clone(), u64::MAX)).next().map(|(_, &t)| t)
    }

    /// How stale a read of `version` of `key` at `now` is (0: fresh).
    pub fn staleness_us(&self, key: &K, version: u64, now: Time) -> Micros {
        self.superseded_at(key, version).map_or(0, |t| now.since(t))
    }

    /// Judges a read of `version` of `key` made now: counts it under `fresh_reads` or
    /// `stale_reads`, observes a stale one's staleness in `staleness_us` and keeps the largest
    /// in the gauge `max_staleness_us`. Returns the staleness of a stale read.
    pub fn judge<N: Node>(&mut self, key: &K, version: u64, ctx: &mut Ctx<N>) -> Option<Micros> {
        let Some(since) = self.superseded_at(key, version) else {
            ctx.count("fresh_reads", 1);
            return None;
        };
        let staleness = ctx.truth().since(since);
        ctx.count("stale_reads", 1);
        ctx.observe("staleness_us", staleness);
        self.max_staleness = self.max_staleness.max(staleness);
        ctx.gauge("max_staleness_us", self.max_staleness as i64);
        Some(staleness)
    }
}

/// What a set did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// A compare-and-set found the same or a newer version held: nothing changed.
    Refused,
    /// Stored; `went_back`: the newer version the cache had held or been told to drop within
    /// the TTL, if this one is older (an older value landed last).
    Stored { went_back: Option<u64> },
}

/// A version per key for a TTL, set plainly or only if newer, deleted by invalidations.
#[derive(Clone, Debug)]
pub struct VersionCache<K> {
    values: TtlCache<K, u64, ()>,
    /// The newest version held or invalidated, for a TTL from then.
    seen: Store<K, u64>,
}

impl<K> Default for VersionCache<K> {
    fn default() -> Self {
        VersionCache { values: TtlCache::default(), seen: Store::default() }
    }
}

impl<K: Ord + Clone> VersionCache<K> {
    /// The version held at `now`, if any.
    pub fn get(&self, key: &K, now: Time) -> Option<u64> {
        match self.values.get(key, now) {
            Lookup::Fresh { value, .. } | Lookup::Stale(value) => Some(*value),
            Lookup::Miss => None,
        }
    }

    /// Stores `version` for `ttl_us`; with `cas`, only if no version as new or newer is held.
    pub fn set(&mut self, key: K, version: u64, cas: bool, now: Time, ttl_us: Micros) -> SetOutcome {
        if cas && self.get(&key, now).is_some_and(|held| held >= version) {
            return SetOutcome::Refused;
        }
        let went_back = self.seen.get(&key, now).map(|(&v, _)| v).filter(|&v| v > version);
        self.values.set(key.clone(), version, now, ttl_us, 0, 0);
        self.saw(key, version, now, ttl_us);
        SetOutcome::Stored { went_back }
    }

    /// Drops the key: a write made `version`. Whether a value was there.
    pub fn invalidate(&mut self, key: K, version: u64, now: Time, ttl_us: Micros) -> bool {
        self.saw(key.clone(), version, now, ttl_us);
        self.values.delete(&key, now)
    }

    /// A restart: values and memory gone.
    pub fn restart(&mut self) {
        self.values.restart();
        self.seen.clear();
    }

    /// Values stored, expired ones not yet written over included.
    pub fn stored(&self) -> usize {
        self.values.values_stored()
    }

    fn saw(&mut self, key: K, version: u64, now: Time, ttl_us: Micros) {
        if self.seen.get(&key, now).is_none_or(|(&v, _)| v <= version) {
            self.seen.put_ttl(key, version, now, ttl_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Rng, MICROS_PER_MS};

    const MS: Micros = MICROS_PER_MS;

    #[test]
    fn a_read_is_stale_by_the_time_since_the_first_newer_commit() {
        let mut c: Commits<u32> = Commits::new(64);
        let t = Time::from_ms;
        let (v1, v2, w1) = (c.write(1, t(100)), c.write(2, t(200)), c.write(1, t(250)));
        assert!(v1 < v2 && v2 < w1, "one counter for the table");
        assert_eq!((c.version(&1), c.version(&2), c.version(&3)), (w1, v2, 0));
        assert_eq!(c.staleness_us(&1, w1, t(900)), 0, "the newest: fresh");
        assert_eq!(c.staleness_us(&1, v1, t(900)), 650 * MS, "behind since the write at 250 ms");
        assert_eq!(c.staleness_us(&1, 0, t(900)), 800 * MS, "behind since the first newer one, at 100 ms");
        assert_eq!((c.superseded_at(&2, v2), c.superseded_at(&3, 0)), (None, None));
    }

    #[test]
    fn only_the_last_versions_of_a_key_are_kept() {
        let mut c: Commits<u32> = Commits::new(2);
        for v in 1..=5 {
            assert_eq!(c.write(9, Time::from_ms(v * 10)), v);
        }
        c.write(8, Time::from_ms(1));
        // v4 and v5 kept: a read of v1 is judged from v4's commit (an underestimate).
        assert_eq!(c.superseded_at(&9, 1), Some(Time::from_ms(40)));
        assert_eq!(c.superseded_at(&9, 4), Some(Time::from_ms(50)));
        assert_eq!(c.superseded_at(&8, 0), Some(Time::from_ms(1)), "another key's history is its own");
    }

    #[test]
    fn staleness_under_poisson_writes_matches_the_exponential_age() {
        // A value read at a random instant after its own version's commit, with Poisson writes
        // at rate w, is fresh with probability e^(−w·a) at age a. Ages 0..1 s, w = 2/s: fresh
        // with probability (1 − e^(−2))/2 = 0.432 on average. 20,000 trials: standard error
        // 0.0035, so ±0.015 is over 4 of them.
        let (mut rng, w, n) = (Rng::new(11), 2.0, 20_000);
        let mut fresh = 0;
        for k in 0..n {
            let mut c: Commits<u32> = Commits::new(8);
            let (mut t, read) = (0.0, c.write(k, Time::ZERO));
            let age = rng.unit_open() * 1e6;
            loop {
                t += rng.exponential(1e6 / w);
                if t > age {
                    break;
                }
                c.write(k, Time(t as u64));
            }
            fresh += c.superseded_at(&k, read).is_none() as u32;
        }
        let (got, want) = (fresh as f64 / n as f64, (1.0 - libm::exp(-2.0)) / 2.0);
        assert!((got - want).abs() < 0.015, "fresh {got:.4}, theory {want:.4}");
    }

    #[test]
    fn a_versioned_set_refuses_an_older_version_and_a_plain_one_is_told() {
        let mut c: VersionCache<u32> = VersionCache::default();
        let t = Time::from_ms;
        assert_eq!(c.set(1, 5, true, t(0), 100 * MS), SetOutcome::Stored { went_back: None });
        assert_eq!(c.set(1, 4, true, t(1), 100 * MS), SetOutcome::Refused);
        assert_eq!(c.set(1, 5, true, t(1), 100 * MS), SetOutcome::Refused, "the same version: nothing to do");
        assert_eq!(c.get(&1, t(2)), Some(5));
        // A plain set of an older version lands, and is told.
        assert_eq!(c.set(1, 4, false, t(3), 100 * MS), SetOutcome::Stored { went_back: Some(5) });
        assert_eq!(c.get(&1, t(3)), Some(4));
    }

    #[test]
    fn a_set_after_a_newer_invalidation_is_the_stale_set_race() {
        let mut c: VersionCache<u32> = VersionCache::default();
        let t = Time::from_ms;
        c.set(1, 3, false, t(0), 100 * MS);
        // A writer committed v6 and deleted the key; a reader that read v3 before sets it now.
        assert!(c.invalidate(1, 6, t(10), 100 * MS));
        assert_eq!(c.get(&1, t(10)), None);
        assert_eq!(c.set(1, 3, false, t(11), 100 * MS), SetOutcome::Stored { went_back: Some(6) });
        // A compare-and-set finds no value to compare with: the race needs the new value set
        // (or a tombstone) to be refused. Past the TTL the memory is gone too.
        c.invalidate(1, 6, t(20), 100 * MS);
        assert_eq!(c.set(1, 3, true, t(21), 100 * MS), SetOutcome::Stored { went_back: Some(6) });
        assert_eq!(c.set(1, 2, false, t(200), 100 * MS), SetOutcome::Stored { went_back: None });
        c.restart();
        assert_eq!((c.get(&1, t(201)), c.stored()), (None, 0));
        assert_eq!(c.set(1, 1, false, t(202), 100 * MS), SetOutcome::Stored { went_back: None });
    }
}
