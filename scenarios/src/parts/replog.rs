//! A primary's replication log shipped to replicas: positions (LSNs) with commit times, each replica's stream applied in order (no earlier than an apply delay), acknowledged positions and lag, writes held until k replicas applied them (sync, semi-sync), and reads held until a replica reaches a position (version tokens).
//!
//! [`Primary`] numbers commits 1, 2, 3… (a WAL's log sequence numbers), keeps each commit's
//! time until every replica has applied it, and each replica's acknowledged position (as
//! Postgres' `pg_stat_replication.replay_lsn`, fed back by the standby). A replica's lag is how
//! long the oldest commit it has not applied has been waiting (0 when caught up): the time a
//! read there may be behind, not the time since its last replay (which grows while idle). A
//! write held with [`Primary::hold`] is released once `need` replicas have applied its
//! position: all of them is synchronous replication (`synchronous_commit = remote_apply` with
//! every standby named), one of them semi-synchronous (MySQL), none asynchronous.
//!
//! [`Replica`] receives entries in any order (each shipped with its own delay) and applies
//! them by position, each once its predecessors have been and no earlier than its commit time
//! plus the apply delay (Postgres' `recovery_min_apply_delay`: a replica that lags on purpose,
//! or by a fault). Reads that must see a position (a session's version token, MongoDB's
//! `afterClusterTime`) wait there until it is applied or they give up.
//!
//! With independent delays the write held for every one of n replicas waits for the slowest:
//! for exponential delays of mean m, m·H_n on average (H_n the n-th harmonic number, the mean
//! of the largest of n exponentials, by Rényi's representation), [`expected_slowest_us`].

use crate::parts::resequencer::{Release, Resequencer};
use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// The primary's log: positions, commit times not yet applied everywhere, replicas' positions
/// and the writes held for them.
#[derive(Clone, Debug)]
pub struct Primary<K, W> {
    lsn: u64,
    versions: BTreeMap<K, u64>,
    commits: BTreeMap<u64, (Time, K)>,
    acked: Vec<u64>,
    held: BTreeMap<u64, Vec<W>>,
}

impl<K: Ord + Clone, W> Primary<K, W> {
    pub fn new(replicas: usize) -> Self {
        let (versions, commits, held) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        Primary { lsn: 0, versions, commits, acked: vec![0; replicas], held }
    }

    /// `key`'s version: the position of its last write (0: never written).
    pub fn version(&self, key: &K) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }

    /// The last position committed (0: none yet).
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Commits a write of `key` at `at` (for lag) as the next entry; returns its position.
    pub fn commit(&mut self, key: K, at: Time) -> u64 {
        self.lsn += 1;
        self.commits.insert(self.lsn, (at, key.clone()));
        self.versions.insert(key, self.lsn);
        self.lsn
    }

    /// Replica `r` (0-based) says it has applied everything up to `lsn` (an older report is ignored).
    pub fn ack(&mut self, r: usize, lsn: u64) {
        self.acked[r] = self.acked[r].max(lsn);
        let all = self.acked.iter().copied().min().unwrap_or(self.lsn);
        self.commits = self.commits.split_off(&(all + 1));
    }

    /// Replica `r`'s acknowledged position.
    pub fn acked(&self, r: usize) -> u64 {
        self.acked[r]
    }

    /// How many replicas have applied `lsn`.
    pub fn applied_by(&self, lsn: u64) -> usize {
        self.acked.iter().filter(|&&a| a >= lsn).count()
    }

    /// Holds `w` until [`Primary::release`] finds enough replicas have applied `lsn` (call it
    /// after: with `need` 0, asynchronous replication, it hands `w` back at once).
    pub fn hold(&mut self, lsn: u64, w: W) {
        self.held.entry(lsn).or_default().push(w);
    }

    /// The held writes `need` replicas have applied by now (`need` 0: all of them), oldest first.
    pub fn release(&mut self, need: usize) -> Vec<(u64, W)> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if self.acked.iter().filter(|&&a| a >= *entry.key()).count() < need {
                break;
            }
            let lsn = *entry.key();
            out.extend(entry.remove().into_iter().map(|w| (lsn, w)));
        }
        out
    }

    /// Writes held for replicas now.
    pub fn held(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    /// Replica `r`'s lag at `now`: how long ago the oldest commit it has not applied was made.
    pub fn lag_us(&self, r: usize, now: Time) -> Micros {
        self.commits.get(&(self.acked[r] + 1)).map_or(0, |&(t, _)| now.since(t))
    }

    /// The lag of the replica furthest behind.
    pub fn max_lag_us(&self, now: Time) -> Micros {
        (0..self.acked.len()).map(|r| self.lag_us(r, now)).max().unwrap_or(0)
    }

    /// The entries after `lsn` that some replica has not applied yet (to ship again to a
    /// replica that resumes from `lsn`): position, commit time and key, in order.
    pub fn after(&self, lsn: u64) -> impl Iterator<Item = (u64, Time, &K)> + '_ {
        self.commits.range(lsn + 1..).map(|(&n, (t, k))| (n, *t, k))
    }

    /// How many commits replica `r` has not applied.
    pub fn behind(&self, r: usize) -> u64 {
        self.lsn - self.acked[r].min(self.lsn)
    }
}

/// A replica's side: entries received, applied in order after the apply delay, and the reads
/// waiting for a position.
#[derive(Clone, Debug)]
pub struct Replica<K, R> {
    applied: u64,
    versions: BTreeMap<K, u64>,
    incoming: Resequencer<(Time, K)>,
    delay_us: Micros,
    paused: bool,
    wake: Option<Time>,
    readers: BTreeMap<(u64, u64), R>,
    arrivals: u64,
    gap_since: Option<Time>,
}

impl<K, R> Default for Replica<K, R> {
    fn default() -> Self {
        let (incoming, versions, readers) = (Resequencer::default(), BTreeMap::new(), BTreeMap::new());
        Replica {
            applied: 0,
            versions,
            incoming,
            delay_us: 0,
            paused: false,
            wake: None,
            readers,
            arrivals: 0,
            gap_since: None,
        }
    }
}

impl<K: Ord, R> Replica<K, R> {
    /// `key`'s version as replayed here (0: not here yet).
    pub fn version(&self, key: &K) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }

    /// The last position applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Entry `lsn`, a write of `key` committed at `commit`, arrived (a copy is dropped).
    pub fn receive(&mut self, lsn: u64, commit: Time, key: K) {
        self.incoming.offer(lsn, self.applied + 1, commit, (commit, key));
    }

    /// Applies every entry due at `now`, in order: how many, and when to look again if that
    /// is earlier than the wake-up asked for before (`afresh`: that one fired or may be wrong).
    pub fn apply(&mut self, now: Time, afresh: bool) -> (u64, Option<Time>) {
        let (from, mut due) = (self.applied, None);
        self.wake = self.wake.filter(|_| !afresh);
        while !self.paused {
            let Some((n, &(commit, _))) = self.incoming.first() else { break };
            if n != self.applied + 1 {
                break;
            }
            if commit.plus(self.delay_us) > now {
                due = Some(commit.plus(self.delay_us)).filter(|&d| self.wake.is_none_or(|w| d < w));
                self.wake = due.or(self.wake);
                break;
            }
            let (n, (_, key)) = self.incoming.release(Release::Sequence { next: n }).expect("first");
            self.applied = n;
            self.versions.insert(key, n);
        }
        (self.applied - from, due)
    }

    /// A lost entry: when the next position has been missing for `patience_us` while later ones
    /// arrived (a gap, not a pause), the position to ask the primary to ship again after (as a
    /// standby reconnects and restarts streaming from its last replayed LSN), and when to look
    /// again if the gap stays. A gap first seen only starts the wait.
    pub fn resume(&mut self, now: Time, patience_us: Micros) -> (Option<u64>, Option<Time>) {
        let gap = !self.paused && self.incoming.first().is_some_and(|(n, _)| n > self.applied + 1);
        match (gap, self.gap_since) {
            (false, _) => {
                self.gap_since = None;
                (None, None)
            }
            (true, Some(t)) if now.since(t) < patience_us => (None, None),
            (true, seen) => {
                self.gap_since = Some(now);
                (seen.map(|_| self.applied), Some(now.plus(patience_us)))
            }
        }
    }

    /// Replays each entry no earlier than its commit time plus `delay_us` (call `apply` after).
    pub fn set_delay_us(&mut self, delay_us: Micros) {
        self.delay_us = delay_us;
    }

    pub fn delay_us(&self) -> Micros {
        self.delay_us
    }

    /// Stops (or resumes) replay: entries received meanwhile wait (call `apply` after resuming).
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Entries received and not applied yet.
    pub fn pending(&self) -> usize {
        self.incoming.len()
    }

    /// A read that must see position `token`: handed back now if applied, else held; the
    /// number to give up on it by (with the token) if held.
    pub fn wait(&mut self, token: u64, r: R) -> Result<R, u64> {
        if token <= self.applied {
            return Ok(r);
        }
        self.arrivals += 1;
        self.readers.insert((token, self.arrivals), r);
        Err(self.arrivals)
    }

    /// The held reads whose position is applied now, lowest token first.
    pub fn ready(&mut self) -> Vec<R> {
        let later = self.readers.split_off(&(self.applied + 1, 0));
        std::mem::replace(&mut self.readers, later).into_values().collect()
    }

    /// Gives up on held read `id` (its deadline): it, if still held.
    pub fn give_up(&mut self, token: u64, id: u64) -> Option<R> {
        self.readers.remove(&(token, id))
    }

    /// Forgets the held reads (the replica went down): them.
    pub fn drop_readers(&mut self) -> Vec<R> {
        std::mem::take(&mut self.readers).into_values().collect()
    }

    /// Reads held now.
    pub fn waiting(&self) -> usize {
        self.readers.len()
    }
}

/// The mean of the largest of `n` independent exponential delays of mean `mean_us`: mean·H_n.
pub fn expected_slowest_us(n: u32, mean_us: f64) -> f64 {
    mean_us * (1..=n).map(|k| 1.0 / k as f64).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn a_replica_applies_in_order_after_its_delay_and_reads_wait_for_their_token() {
        let mut r: Replica<char, &str> = Replica::default();
        r.receive(2, Time(20), 'b');
        assert_eq!(r.apply(Time(100), false), (0, None), "1 is missing: 2 waits");
        assert_eq!((r.wait(2, "reader"), r.version(&'b')), (Err(1), 0));
        r.receive(1, Time(10), 'a');
        r.receive(1, Time(10), 'a');
        r.set_delay_us(50);
        assert_eq!(r.apply(Time(65), false), (1, Some(Time(70))), "2 is due at 20 + 50");
        assert_eq!(r.apply(Time(66), false), (0, None), "a wake-up is asked for already");
        assert!(r.ready().is_empty());
        assert_eq!(r.apply(Time(70), true), (1, None));
        assert_eq!((r.ready(), r.waiting(), r.version(&'a'), r.version(&'b')), (vec!["reader"], 0, 1, 2));
        assert_eq!(r.wait(1, "fresh"), Ok("fresh"));
        r.set_paused(true);
        r.receive(3, Time(80), 'a');
        assert_eq!(r.apply(Time(1000), false).0, 0);
        r.set_paused(false);
        assert_eq!((r.apply(Time(1000), false).0, r.version(&'a')), (1, 3));
    }

    #[test]
    fn the_primary_holds_writes_for_k_replicas_and_measures_lag_from_the_oldest_unapplied_commit() {
        let mut p: Primary<char, &str> = Primary::new(3);
        let (a, b) = (p.commit('x', Time(100)), p.commit('x', Time(200)));
        assert_eq!((p.version(&'x'), p.version(&'y')), (2, 0));
        p.hold(a, "a");
        p.hold(b, "b");
        p.ack(0, 2);
        assert_eq!(p.release(3), vec![], "one replica of three has them");
        p.ack(1, 1);
        p.ack(2, 1);
        assert_eq!(p.release(3), vec![(1, "a")], "in order: b waits for two more");
        assert_eq!((p.lag_us(0, Time(500)), p.lag_us(1, Time(500)), p.behind(2)), (0, 300, 1));
        assert_eq!(p.max_lag_us(Time(500)), 300);
        p.ack(1, 2);
        assert_eq!(p.release(2), vec![(2, "b")], "semi-synchronous: two of three");
        p.ack(2, 2);
        assert_eq!((p.lag_us(2, Time(900)), p.held(), p.applied_by(2)), (0, 0, 3));
        let c = p.commit('y', Time(950));
        p.hold(c, "async");
        assert_eq!(p.release(0), vec![(3, "async")], "need 0: at once (asynchronous)");
    }

    #[test]
    fn a_replica_behind_a_lost_entry_asks_to_resume_after_its_patience() {
        let (mut p, mut r): (Primary<char, ()>, Replica<char, ()>) = (Primary::new(1), Replica::default());
        let lsns: Vec<u64> = ['a', 'b', 'c'].into_iter().map(|k| p.commit(k, Time(10))).collect();
        r.receive(1, Time(10), 'a');
        r.receive(3, Time(10), 'c'); // 2 was lost on the way
        assert_eq!(r.apply(Time(20), false).0, 1);
        p.ack(0, r.applied());
        assert_eq!(r.resume(Time(20), 100), (None, Some(Time(120))), "a gap first seen starts the wait");
        assert_eq!(r.resume(Time(119), 100), (None, None));
        assert_eq!(r.resume(Time(120), 100), (Some(1), Some(Time(220))), "then: ship again after 1");
        let again: Vec<(u64, char)> = p.after(1).map(|(n, _, &k)| (n, k)).collect();
        assert_eq!((lsns, again), (vec![1, 2, 3], vec![(2, 'b'), (3, 'c')]));
        r.receive(2, Time(10), 'b');
        r.receive(3, Time(10), 'c');
        assert_eq!((r.apply(Time(230), false).0, r.version(&'c')), (2, 3));
        assert_eq!(r.resume(Time(400), 100), (None, None), "caught up: nothing to ask");
        r.set_paused(true);
        r.receive(5, Time(300), 'a');
        assert_eq!(r.resume(Time(500), 100), (None, None), "paused: waiting is not a gap");
    }

    #[test]
    fn the_slowest_of_n_exponential_delays_averages_mean_times_h_n() {
        // Rényi: the largest of n Exp(1) is a sum of independent Exp(1)/k, k = 1..n, so its
        // mean is H_n (3 replicas: 1.833). 200,000 draws: s.e. ≈ 1.17/√200,000 ≈ 0.3%; ±1%.
        let mut rng = Rng::new(7);
        for n in [1u32, 3, 5] {
            let draws = 200_000;
            let sum: f64 = (0..draws).map(|_| (0..n).map(|_| rng.exponential(20.0)).fold(0.0, f64::max)).sum();
            let (got, want) = (sum / draws as f64, expected_slowest_us(n, 20.0));
            assert!((got - want).abs() < 0.01 * want, "n = {n}: {got:.2} vs {want:.2}");
        }
    }
}
