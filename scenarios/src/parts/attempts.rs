//! A client's operations, each tried again after a backoff until a try succeeds or the retries run out: numbered, timed from the start, stale failures ignored.
//!
//! An operation (a payment, an upload) starts once and is tried up to `max_retries + 1` times
//! ([`RetryPolicy`]). A failed try — refused, timed out — schedules the next one after the
//! policy's backoff, or gives the operation up. The failure of a try that is not the latest
//! (a double click's twin, a try overtaken by its retry) changes nothing, so an operation
//! never has two retries pending. The first success closes the operation and says how long it
//! took from its start; a later one (a twin's, a retry that raced) changes nothing either.
//!
//! With each try failing independently with probability `p` and `r` retries allowed, an
//! operation is given up with probability `p^(r+1)` after `(1 − p^(r+1)) / (1 − p)` tries on
//! average (a geometric distribution cut at `r + 1`): the tests check both.
//!
//! Operations are numbered from 1 and kept on a [`KeyTable`]: every one ever started stays,
//! and copies of a client share the blocks.

use crate::parts::retry::RetryPolicy;
use crate::parts::table::KeyTable;
use faultline_core::{Micros, Rng, Time};

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op<T> {
    pub started: Time,
    /// Tries so far (a retry is one more; a duplicate of a try is not).
    pub tries: u32,
    /// Neither succeeded nor given up.
    pub open: bool,
    pub data: T,
}

/// What follows a failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send try `try_no` after `wait_us`.
    Retry { wait_us: Micros, try_no: u32 },
    /// The retries are used up: the operation is closed.
    GaveUp,
    /// Not the latest try, or the operation is closed: nothing to do.
    Ignored,
}

/// A client's operations, with the data it keeps for each (`T`).
#[derive(Clone, Debug)]
pub struct Attempts<T> {
    ops: KeyTable<Op<T>>,
    open: u32,
}

// By hand: a derived `Default` would ask the same of `T`, which an empty table never needs.
impl<T> Default for Attempts<T> {
    fn default() -> Attempts<T> {
        Attempts { ops: KeyTable::default(), open: 0 }
    }
}

impl<T: Clone> Attempts<T> {
    /// Starts the next operation at `now`, on its first try; returns its number.
    pub fn start(&mut self, now: Time, data: T) -> u32 {
        let n = self.ops.len() as u32 + 1;
        self.ops.insert(n, Op { started: now, tries: 1, open: true, data });
        self.open += 1;
        n
    }

    pub fn get(&self, n: u32) -> Option<&Op<T>> {
        self.ops.get(n)
    }

    pub fn is_open(&self, n: u32) -> bool {
        self.ops.get(n).is_some_and(|op| op.open)
    }

    /// The data kept for operation `n`, open or not.
    pub fn data_mut(&mut self, n: u32) -> Option<&mut T> {
        self.ops.get_mut(n).map(|op| &mut op.data)
    }

    /// A try of `n` succeeded at `now`: the first success closes it and returns how long it
    /// took from its start.
    pub fn succeeded(&mut self, n: u32, now: Time) -> Option<Micros> {
        let op = self.ops.get_mut(n).filter(|op| op.open)?;
        op.open = false;
        self.open -= 1;
        Some(now.since(op.started))
    }

    /// Try `try_no` of `n` failed: retry after the policy's backoff (drawn from `rng`), or
    /// give up once its retries are used up.
    pub fn failed(&mut self, n: u32, try_no: u32, policy: &RetryPolicy, rng: &mut Rng) -> Next {
        let Some(op) = self.ops.get_mut(n).filter(|op| op.open && op.tries == try_no) else { return Next::Ignored };
        match policy.delay_us(try_no, 0, rng) {
            Some(wait_us) => {
                op.tries += 1;
                Next::Retry { wait_us, try_no: op.tries }
            }
            None => {
                op.open = false;
                self.open -= 1;
                Next::GaveUp
            }
        }
    }

    /// Operations neither succeeded nor given up.
    pub fn open(&self) -> u32 {
        self.open
    }

    /// Operations ever started.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::retry::Jitter;

    #[test]
    fn tries_follow_a_geometric_distribution_cut_at_the_retries() {
        // 200,000 operations whose tries each fail with probability p: given up with
        // probability p^(r+1) (standard error √(q(1−q)/n) ≤ 0.0011, so ±0.006 is > 5σ) after
        // (1 − p^(r+1)) / (1 − p) tries on average (±1%: the mean's standard error is at most
        // 0.13% of it, for p = 0.9).
        let mut rng = Rng::new(8);
        for (p, r) in [(0.5, 3), (0.2, 0), (0.9, 10), (0.3, 1)] {
            let policy = RetryPolicy::new(r, 1_000, 64_000, Jitter::Equal);
            let (mut ops, mut given_up, mut tries) = (Attempts::default(), 0, 0);
            let n = 200_000;
            for _ in 0..n {
                let id = ops.start(Time::ZERO, ());
                let mut try_no = 1;
                loop {
                    tries += 1;
                    if rng.unit_open() >= p {
                        assert!(ops.succeeded(id, Time(5)).is_some());
                        break;
                    }
                    match ops.failed(id, try_no, &policy, &mut rng) {
                        Next::Retry { try_no: next, .. } => try_no = next,
                        Next::GaveUp => {
                            given_up += 1;
                            break;
                        }
                        Next::Ignored => unreachable!("the latest try of an open operation"),
                    }
                }
            }
            let q = libm::pow(p, (r + 1) as f64);
            let (gave_up, mean) = (given_up as f64 / n as f64, tries as f64 / n as f64);
            assert!((gave_up - q).abs() < 0.006, "p {p}, r {r}: gave up {gave_up}, theory {q}");
            let want = (1.0 - q) / (1.0 - p);
            assert!((mean - want).abs() < 0.01 * want, "p {p}, r {r}: {mean} tries, theory {want}");
            assert_eq!((ops.open(), ops.len()), (0, n));
        }
    }

    #[test]
    fn stale_failures_and_late_successes_change_nothing() {
        let policy = RetryPolicy::new(2, 100, 10_000, Jitter::Equal);
        let mut rng = Rng::new(1);
        let mut ops = Attempts::default();
        let n = ops.start(Time(1_000), 'x');
        assert_eq!((ops.open(), ops.is_open(n), ops.get(n).map(|op| op.data)), (1, true, Some('x')));
        // The first retry waits in [50, 100) (equal jitter on 100); the second in [100, 200).
        let Next::Retry { wait_us, try_no: 2 } = ops.failed(n, 1, &policy, &mut rng) else { panic!("a retry") };
        assert!((50..100).contains(&wait_us), "{wait_us}");
        assert_eq!(ops.failed(n, 1, &policy, &mut rng), Next::Ignored, "the twin of try 1 failed too");
        let Next::Retry { wait_us, try_no: 3 } = ops.failed(n, 2, &policy, &mut rng) else { panic!("a retry") };
        assert!((100..200).contains(&wait_us), "{wait_us}");
        assert_eq!(ops.failed(n, 3, &policy, &mut rng), Next::GaveUp);
        assert_eq!((ops.open(), ops.succeeded(n, Time(9_000))), (0, None), "given up: a late success is too late");
        // Success closes once and says how long from the start.
        let m = ops.start(Time(2_000), 'y');
        *ops.data_mut(m).expect("started") = 'z';
        assert_eq!((ops.succeeded(m, Time(2_500)), ops.succeeded(m, Time(2_600))), (Some(500), None));
        assert_eq!(ops.failed(m, 1, &policy, &mut rng), Next::Ignored);
        assert_eq!((ops.get(m).map(|op| op.data), ops.len(), ops.open()), (Some('z'), 2, 0));
    }
}
