//! An ordered partition (a Kafka-style log): records appended at increasing offsets, read from any offset, each consumer group's committed offset, and its lag in records and in seconds.
//!
//! Unlike a queue (`broker`), nothing is removed when it is read: a record stays at its
//! offset, and each consumer group keeps one number, the offset of the next record it has
//! not yet finished (its *committed* offset). A consumer that restarts reads again from there,
//! so a record that crashes the consumer is read again by its successor: order is kept, and a
//! record cannot be passed over except by committing past it. The group's *lag* is
//! `end − committed` records; its lag in time is the age of the oldest record not committed
//! (Kafka's "records-lag" and "consumer lag in seconds" as Burrow and kminion report them).
//!
//! A consumer stuck on one record lets the lag grow at the producer's rate λ; once it moves on
//! at μ > λ records a second, it catches up in `lag / (μ − λ)` ([`catch_up_s`], the fluid
//! approximation, good once the lag is many records). At steady state a consumer taking a
//! fixed time per record under Poisson appends is an M/D/1 queue and its mean lag is
//! [`md1_mean_lag`]. The records are kept in a [`KeyTable`], so a copy of the partition (the
//! player's checkpoints) shares their blocks.

use crate::parts::table::KeyTable;
use faultline_core::{Micros, Time};

/// A record's position in the partition: 0, 1, 2… in append order.
pub type Offset = u64;

/// One record: what was appended and when.
#[derive(Clone, Debug)]
pub struct Record<T> {
    pub at: Time,
    pub value: T,
}

/// A consumer group's progress: its committed offset and when that last moved.
#[derive(Clone, Copy, Debug, Default)]
struct Group {
    committed: Offset,
    moved_at: Time,
}

/// The log and its consumer groups (numbered 0, 1, … as given to `new`).
#[derive(Clone, Debug)]
pub struct Partition<T> {
    log: KeyTable<Record<T>>,
    end: Offset,
    groups: Vec<Group>,
}

impl<T: Clone> Partition<T> {
    /// An empty partition read by `groups` consumer groups, each committed at offset 0.
    pub fn new(groups: usize) -> Partition<T> {
        Partition { log: KeyTable::default(), end: 0, groups: vec![Group::default(); groups] }
    }

    /// Appends `value` at `at`; returns its offset.
    pub fn append(&mut self, value: T, at: Time) -> Offset {
        let offset = self.end;
        self.log.insert(offset, Record { at, value });
        self.end += 1;
        offset
    }

    /// The log-end offset: the offset the next record will get (= how many there are).
    pub fn end(&self) -> Offset {
        self.end
    }

    pub fn len(&self) -> usize {
        self.end as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    pub fn get(&self, offset: Offset) -> Option<&Record<T>> {
        self.log.get(offset)
    }

    /// Up to `max` records from `from` on, in order, with their offsets (a fetch).
    pub fn read(&self, from: Offset, max: usize) -> Vec<(Offset, T)> {
        (from..self.end.min(from.saturating_add(max as u64)))
            .map(|o| (o, self.log.get(o).expect("appended").value.clone()))
            .collect()
    }

    /// Group `group` commits `offset` (the next record it has not finished) at `at`. Commits
    /// only move forward and never past the end: an older commit arriving late changes
    /// nothing. Returns whether it moved.
    pub fn commit(&mut self, group: usize, offset: Offset, at: Time) -> bool {
        let g = &mut self.groups[group];
        let offset = offset.min(self.end);
        if offset <= g.committed {
            return false;
        }
        (g.committed, g.moved_at) = (offset, at);
        true
    }

    pub fn committed(&self, group: usize) -> Offset {
        self.groups[group].committed
    }

    /// When group `group`'s committed offset last moved (0 if never).
    pub fn committed_at(&self, group: usize) -> Time {
        self.groups[group].moved_at
    }

    /// Records appended and not yet committed by the group.
    pub fn lag(&self, group: usize) -> u64 {
        self.end - self.groups[group].committed
    }

    /// How old, at `now`, the oldest record the group has not committed is (0 when it has
    /// committed them all): how far behind the producers it runs, in time.
    pub fn lag_us(&self, group: usize, now: Time) -> Micros {
        self.get(self.groups[group].committed).map_or(0, |r| now.since(r.at))
    }
}

/// Seconds for a consumer handling `consumer_per_s` records a second to work off `lag`
/// while producers append `producer_per_s` (the fluid approximation); `None` if it never does.
pub fn catch_up_s(lag: f64, consumer_per_s: f64, producer_per_s: f64) -> Option<f64> {
    (consumer_per_s > producer_per_s).then(|| lag / (consumer_per_s - producer_per_s))
}

/// The M/D/1 mean number in the system, `ρ + ρ² / (2(1 − ρ))` (Pollaczek–Khinchine with a
/// fixed service time): the time-average lag of one consumer taking `service_s` a record,
/// committing each as it finishes, under Poisson appends at `producer_per_s`.
pub fn md1_mean_lag(producer_per_s: f64, service_s: f64) -> Option<f64> {
    let rho = producer_per_s * service_s;
    (rho < 1.0).then(|| rho + rho * rho / (2.0 * (1.0 - rho)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn records_stay_at_their_offsets_and_groups_commit_forward() {
        let mut p = Partition::new(2);
        assert!(p.is_empty() && p.lag(0) == 0 && p.lag_us(0, Time(5)) == 0);
        for (i, c) in "abcde".chars().enumerate() {
            assert_eq!(p.append(c, Time(10 * i as u64)), i as Offset);
        }
        assert_eq!((p.end(), p.len()), (5, 5));
        assert_eq!(p.read(1, 2), [(1, 'b'), (2, 'c')]);
        assert_eq!(p.read(3, 100), [(3, 'd'), (4, 'e')]);
        assert!(p.read(5, 10).is_empty() && p.read(9, 10).is_empty());
        // Reading takes nothing away.
        assert_eq!(p.read(0, 1), [(0, 'a')]);
        assert!(p.commit(0, 3, Time(45)));
        assert!(!p.commit(0, 2, Time(46)), "a late, older commit");
        assert!(!p.commit(0, 3, Time(47)));
        assert_eq!((p.committed(0), p.committed_at(0), p.lag(0)), (3, Time(45), 2));
        // Group 1 has read nothing: its oldest unfinished record is offset 0, from time 0.
        assert_eq!((p.lag(1), p.lag_us(1, Time(100)), p.lag_us(0, Time(100))), (5, 100, 70));
        assert!(p.commit(1, 99, Time(50)), "clamped to the end");
        assert_eq!((p.committed(1), p.lag(1), p.lag_us(1, Time(100))), (5, 0, 0));
        // A copy goes its own way.
        let mut copy = p.clone();
        copy.append('f', Time(60));
        assert_eq!((p.end(), copy.end(), p.get(5).is_none()), (5, 6, true));
    }

    /// One consumer over `until_us`: Poisson appends at `lambda` per s, `service_us` a record
    /// (one at a time, committed as it finishes), not starting any record inside `stuck`.
    /// Returns the partition, the time-average lag and the mean time from append to commit.
    fn consume(lambda: f64, service_us: u64, until_us: u64, stuck: (u64, u64), seed: u64) -> (Partition<()>, f64, f64) {
        let mut rng = Rng::new(seed);
        let mut p = Partition::new(1);
        let (mut now, mut area, mut waits, mut n) = (0u64, 0.0, 0.0, 0u64);
        let mut arrival = rng.exponential(1e6 / lambda) as u64;
        let mut done: Option<u64> = None;
        loop {
            let resume = if done.is_none() && p.lag(0) > 0 && now < stuck.1 { stuck.1 } else { u64::MAX };
            let next = arrival.min(done.unwrap_or(u64::MAX)).min(resume);
            if next > until_us {
                break;
            }
            area += p.lag(0) as f64 * (next - now) as f64;
            now = next;
            if done == Some(now) {
                let c = p.committed(0);
                waits += (now - p.get(c).expect("read").at.0) as f64;
                n += 1;
                p.commit(0, c + 1, Time(now));
                done = None;
            } else if arrival == now {
                p.append((), Time(now));
                arrival += rng.exponential(1e6 / lambda) as u64;
            }
            let stopped = (stuck.0..stuck.1).contains(&now);
            if done.is_none() && p.lag(0) > 0 && !stopped {
                done = Some(now + service_us);
            }
        }
        (p, area / now as f64, waits / n as f64)
    }

    #[test]
    fn a_consumers_mean_lag_is_md1s_and_littles_law_holds() {
        // λ = 100/s, D = 5 ms: ρ = 0.5, L = 0.5 + 0.25/1 = 0.75 records, W = L/λ = 7.5 ms.
        // 500 s is 50,000 records; at ρ = 0.5 busy periods are short (a few records), so the
        // estimate's standard error is about 1%: ±5% is 5 of them, while M/M/1 (L = 1)
        // would be 33% off. Little's law (L = λW) ties the two estimates together.
        let want = md1_mean_lag(100.0, 0.005).expect("stable");
        assert!((want - 0.75).abs() < 1e-12);
        for seed in 1..=3 {
            let (p, lag, wait_us) = consume(100.0, 5_000, 500_000_000, (0, 0), seed);
            assert!((lag - want).abs() <= 0.05 * want, "seed {seed}: mean lag {lag:.4}, M/D/1 {want:.4}");
            let little = p.len() as f64 / 500.0 * wait_us / 1e6;
            assert!((little - lag).abs() <= 0.02 * lag, "seed {seed}: λW {little:.4} vs L {lag:.4}");
        }
    }

    #[test]
    fn a_stuck_consumers_lag_grows_at_the_producers_rate_and_drains_at_the_difference() {
        // Stuck from 10 s to 20 s: the lag grows by λ·10 s = 1,000 (Poisson: s.d. 32, so
        // ±10% is 3 of them). Then at μ = 200/s against λ = 100/s it is worked off in
        // 1000 / 100 = 10 s (fluid); the arrivals meanwhile add s.d. √1000 ≈ 32 records,
        // 0.3 s: ±10% again.
        for seed in 1..=3 {
            let (p, ..) = consume(100.0, 5_000, 20_000_000, (10_000_000, 20_000_000), seed);
            let grown = p.lag(0) as f64;
            assert!((grown - 1000.0).abs() <= 100.0, "seed {seed}: lag {grown}");
            let want = catch_up_s(grown, 200.0, 100.0).expect("faster");
            // When the lag first comes back to a handful of records.
            let caught = (20_500..40_000u64)
                .step_by(100)
                .find(|&ms| {
                    let (p, ..) = consume(100.0, 5_000, ms * 1000, (10_000_000, 20_000_000), seed);
                    p.lag(0) <= 2
                })
                .expect("caught up") as f64
                / 1000.0
                - 20.0;
            assert!((caught - want).abs() <= 0.1 * want, "seed {seed}: caught up in {caught} s, fluid {want:.2} s");
        }
        assert_eq!(catch_up_s(10.0, 100.0, 100.0), None);
        assert_eq!(md1_mean_lag(200.0, 0.005), None);
    }
}
