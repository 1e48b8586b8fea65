//! Dual writes: operations that each write to two systems in turn — the second once the first is acknowledged, after a gap — held in memory, so that a crash finds some between their writes (the first landed, the second not) and Little's law says how many.
//!
//! An operation starts with its first write. When that is acknowledged, an operation of two
//! writes is *between* them until its second is acknowledged; then, or at its only write's
//! acknowledgement, it is done. Operations are volatile: a crash forgets them all and says
//! which were between — the caller cannot tell whether a second write it had sent landed.
//! (Writing a row and then publishing its event loses the event; publishing first invents an
//! event for a row that never commits; writing the old database and then the new one leaves
//! them apart.)
//!
//! How many a crash catches is Little's law: with operations arriving at λ and each spending
//! W between its writes (the gap, plus the second write's round trip), λ·W are between at any
//! instant, and a crash at a Poisson instant sees that time average (PASTA: Wolff, "Poisson
//! arrivals see time averages", Operations Research 30(2), 1982). Counted from a restart, when
//! none are, a crash after an exponential up time of mean m finds λ·m·(1 − e^(−W/m)) on
//! average ([`between_at_crash`]), λ·W when W ≪ m: the tests check both.

use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// One operation in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op<T> {
    pub began: Time,
    /// It writes twice.
    pub two: bool,
    /// Its first write is acknowledged, its second not yet.
    pub between: bool,
    pub data: T,
}

/// What an acknowledgement did to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acked {
    /// Its first of two writes landed: it is between them (send the second, after the gap).
    Between,
    /// Its last write landed, this long after it began.
    Done(Micros),
}

/// A caller's operations in flight, by id.
#[derive(Clone, Debug)]
pub struct DualWrites<T> {
    ops: BTreeMap<u64, Op<T>>,
    next: u64,
}

// By hand: a derived `Default` would ask the same of `T`.
impl<T> Default for DualWrites<T> {
    fn default() -> DualWrites<T> {
        DualWrites { ops: BTreeMap::new(), next: 0 }
    }
}

impl<T: Clone> DualWrites<T> {
    /// Starts an operation of one or `two` writes at `now`, on its first write: its id (0, 1,
    /// 2… never reused, even after a crash, so a late answer never matches a newer operation).
    pub fn start(&mut self, now: Time, two: bool, data: T) -> u64 {
        let id = self.next;
        self.next += 1;
        self.ops.insert(id, Op { began: now, two, between: false, data });
        id
    }

    pub fn get(&self, id: u64) -> Option<&Op<T>> {
        self.ops.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Op<T>> {
        self.ops.get_mut(&id)
    }

    /// The write under way of operation `id` was acknowledged at `now`. `None` if no such
    /// operation is in flight (done already, or forgotten in a crash).
    pub fn acked(&mut self, id: u64, now: Time) -> Option<Acked> {
        let op = self.ops.get_mut(&id)?;
        if op.two && !op.between {
            op.between = true;
            return Some(Acked::Between);
        }
        self.ops.remove(&id).map(|op| Acked::Done(now.since(op.began)))
    }

    /// A crash: every operation is forgotten; those between their writes are returned, oldest first.
    pub fn crash(&mut self) -> Vec<(u64, Op<T>)> {
        std::mem::take(&mut self.ops).into_iter().filter(|(_, op)| op.between).collect()
    }

    /// Operations in flight.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Operations between their writes now.
    pub fn between(&self) -> usize {
        self.ops.values().filter(|op| op.between).count()
    }
}

/// The mean number of operations a crash finds between their writes: `lambda` a second, each
/// `window_s` between them, the crash an exponential up time of mean `up_mean_s` after a
/// restart that found none (Little's law, cut at the restart).
pub fn between_at_crash(lambda: f64, window_s: f64, up_mean_s: f64) -> f64 {
    lambda * up_mean_s * (1.0 - libm::exp(-window_s / up_mean_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;
    use std::collections::VecDeque;

    #[test]
    fn an_operation_is_between_its_writes_from_the_first_ack_to_the_second() {
        let mut ops = DualWrites::default();
        let (a, b, one) =
            (ops.start(Time(0), true, 'a'), ops.start(Time(5), true, 'b'), ops.start(Time(6), false, 'c'));
        assert_eq!((a, b, one), (0, 1, 2));
        assert_eq!(ops.acked(a, Time(10)), Some(Acked::Between));
        assert_eq!(ops.acked(one, Time(16)), Some(Acked::Done(10)), "one write: done at its ack");
        assert_eq!((ops.len(), ops.between()), (2, 1));
        assert_eq!(ops.acked(a, Time(30)), Some(Acked::Done(30)));
        assert_eq!(ops.acked(a, Time(31)), None, "done already");
        assert_eq!(ops.acked(b, Time(40)), Some(Acked::Between));
        let c = ops.start(Time(41), true, 'd');
        // A crash forgets them all and names the one between its writes; ids are not reused.
        assert_eq!(ops.crash().iter().map(|(id, op)| (*id, op.data)).collect::<Vec<_>>(), [(b, 'b')]);
        assert!(ops.is_empty() && ops.acked(c, Time(50)).is_none());
        assert_eq!(ops.start(Time(60), true, 'e'), 4);
    }

    /// The mean number between their writes at `crashes` Poisson crashes (mean up time `up_us`,
    /// restarting at once): Poisson operations at `lambda` a second, first write acknowledged at
    /// once, second `window_us` later.
    fn mean_between_at_crashes(lambda: f64, window_us: u64, up_us: f64, crashes: usize, seed: u64) -> f64 {
        let mut rng = Rng::new(seed);
        let (mut ops, mut seconds) = (DualWrites::default(), VecDeque::new());
        let mut arrival = rng.exponential(1e6 / lambda) as u64;
        let (mut crash, mut total) = (rng.exponential(up_us) as u64, 0);
        for _ in 0..crashes {
            loop {
                let second = seconds.front().map_or(u64::MAX, |&(at, _)| at);
                if crash <= arrival.min(second) {
                    break;
                }
                if second <= arrival {
                    let (at, id) = seconds.pop_front().expect("due");
                    assert!(matches!(ops.acked(id, Time(at)), Some(Acked::Done(_))));
                } else {
                    let id = ops.start(Time(arrival), true, ());
                    assert_eq!(ops.acked(id, Time(arrival)), Some(Acked::Between));
                    seconds.push_back((arrival + window_us, id));
                    arrival += rng.exponential(1e6 / lambda) as u64;
                }
            }
            total += ops.crash().len();
            seconds.clear();
            (arrival, crash) = (arrival.max(crash), crash + rng.exponential(up_us) as u64);
        }
        total as f64 / crashes as f64
    }

    #[test]
    fn a_crash_finds_littles_law_between_the_writes_cut_at_the_restart() {
        // 20,000 crashes. With W ≪ m the count is Poisson(λW): mean 2.12, standard error
        // √(2.12 / 20000) = 0.01 (0.5%), so ±3% is six of them. With W = m / 2 the restart
        // matters: λ·m·(1 − e^(−1/2)) = 78.7 where λW alone says 100; the count's variance is
        // about its mean plus λ²·var(min(T, W)) ≈ 79 + 700, standard error 0.2 (0.25%): ±2%.
        for seed in 1..=2 {
            let got = mean_between_at_crashes(100.0, 21_200, 2e6, 20_000, seed);
            let want = between_at_crash(100.0, 0.0212, 2.0);
            assert!((want - 2.109).abs() < 0.001 && (got - want).abs() <= 0.03 * want, "seed {seed}: {got:.3}");
            let got = mean_between_at_crashes(100.0, 1_000_000, 2e6, 20_000, seed);
            let want = between_at_crash(100.0, 1.0, 2.0);
            assert!((got - want).abs() <= 0.02 * want, "seed {seed}: {got:.2} vs {want:.2}");
        }
    }
}
