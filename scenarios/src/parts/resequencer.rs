//! A resequencer (Enterprise Integration Patterns): one stream's items arriving out of order, held and released in order — by their sequence numbers, or by their senders' timestamps once a hold has passed.
//!
//! By number, item n goes out once every item before it has (TCP's receive buffer, Kafka's
//! idempotent producer): exact whatever the clocks say, but a missing item holds back all
//! that follow until it comes. By timestamp, an item goes out when the receiver's clock
//! reaches its stamp plus the hold (a watermark): nothing waits for a lost item, but every
//! item waits the hold, one arriving later than its stamp plus the hold is let out of turn,
//! and the order is the stamps' — with two senders whose clocks are δ apart taking turns on a
//! Poisson stream of rate λ, the slow clock's item overtakes the one before it whenever their
//! gap is under δ: `(λ/2)(1 − e^(−λδ))` items a second out of order ([`stamp_reorder_per_s`]).

use faultline_core::{Micros, Time};
use std::collections::{BTreeMap, BTreeSet};

/// What decides when a held item goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Item numbers from 1: the lowest held goes out while it is at most `next` (the item
    /// after the last released; a lower one is a straggler let out at once).
    Sequence { next: u64 },
    /// The earliest stamp goes out once `now` is at least the stamp plus `hold`.
    Stamp { hold: Micros, now: Time },
    /// Everything, lowest number first (the stream no longer needs ordering).
    All,
}

/// The held items, by number and by stamp, and the wake-up asked for under `Stamp`.
#[derive(Clone, Debug)]
pub struct Resequencer<T> {
    held: BTreeMap<u64, (Time, T)>,
    by_stamp: BTreeSet<(Time, u64)>,
    wake: Option<Time>,
}

impl<T> Default for Resequencer<T> {
    fn default() -> Self {
        Resequencer { held: BTreeMap::new(), by_stamp: BTreeSet::new(), wake: None }
    }
}

impl<T> Resequencer<T> {
    /// Holds item `n`, stamped `stamp` by its sender (a repeat of a held number replaces it).
    pub fn hold(&mut self, n: u64, stamp: Time, item: T) {
        if let Some((old, _)) = self.held.insert(n, (stamp, item)) {
            self.by_stamp.remove(&(old, n));
        }
        self.by_stamp.insert((stamp, n));
    }

    /// Holds item `n` under `Sequence`, unless it is a copy: released already (below `next`)
    /// or held. At-least-once senders resend, so the same number may come twice; returns
    /// whether it was held (a copy is dropped, by its number alone).
    pub fn offer(&mut self, n: u64, next: u64, stamp: Time, item: T) -> bool {
        let new = n >= next && !self.held.contains_key(&n);
        if new {
            self.hold(n, stamp, item);
        }
        new
    }

    /// The next item the rule lets out now, with its number, if any.
    pub fn release(&mut self, rule: Release) -> Option<(u64, T)> {
        let n = match rule {
            Release::Sequence { next } => self.held.keys().next().copied().filter(|&n| n <= next),
            Release::Stamp { hold, now } => self.by_stamp.first().filter(|s| s.0.plus(hold) <= now).map(|s| s.1),
            Release::All => self.held.keys().next().copied(),
        }?;
        let (stamp, item) = self.held.remove(&n).expect("held");
        self.by_stamp.remove(&(stamp, n));
        Some((n, item))
    }

    /// Everything the rule lets out now, in order; under `Sequence` each item let out moves
    /// `next` past it, so a run of consecutive numbers goes out together.
    pub fn drain(&mut self, mut rule: Release) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        while let Some((n, item)) = self.release(rule) {
            if let Release::Sequence { next } = &mut rule {
                *next = (*next).max(n + 1);
            }
            out.push((n, item));
        }
        out
    }

    /// [`drain`](Self::drain), and under `Stamp` when to look again: the earliest stamp's
    /// due time if it is earlier than the wake-up asked for before (`None`: that one stands,
    /// or nothing is due). `afresh`: the wake-up asked for before is gone (a restart) or may
    /// be wrong (a new rule or hold); the caller's timer for it fires harmlessly.
    pub fn drain_due(&mut self, rule: Release, afresh: bool) -> (Vec<(u64, T)>, Option<Time>) {
        self.wake = self.wake.filter(|_| !afresh);
        let out = self.drain(rule);
        let Release::Stamp { hold, .. } = rule else { return (out, None) };
        let due = self.due(hold).filter(|&d| self.wake.is_none_or(|w| d < w));
        self.wake = due.or(self.wake);
        (out, due)
    }

    /// When the earliest stamp's hold is over: the time to look again under `Stamp`.
    pub fn due(&self, hold: Micros) -> Option<Time> {
        self.by_stamp.first().map(|s| s.0.plus(hold))
    }

    /// The lowest number held (the oldest item, for a stream numbered in sending order).
    pub fn first(&self) -> Option<(u64, &T)> {
        self.held.iter().next().map(|(&n, (_, item))| (n, item))
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// Items a second released out of order by stamp when two senders take turns on a Poisson
/// stream of `per_s` and their clocks are `skew_us` apart (released in exact stamp order).
pub fn stamp_reorder_per_s(per_s: f64, skew_us: f64) -> f64 {
    per_s / 2.0 * (1.0 - libm::exp(-per_s * skew_us.abs() / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn by_number_each_waits_for_its_predecessors_and_by_stamp_for_the_hold() {
        let mut r = Resequencer::default();
        for (n, stamp) in [(3, 30), (1, 10), (4, 5), (6, 60)] {
            r.hold(n, Time(stamp), n * 100);
        }
        assert_eq!((r.len(), r.first()), (4, Some((1, &100))));
        assert_eq!(r.release(Release::Sequence { next: 1 }), Some((1, 100)));
        assert_eq!(r.release(Release::Sequence { next: 2 }), None, "2 is missing: 3, 4 and 6 wait");
        r.hold(2, Time(20), 200);
        let out: Vec<_> = (2..).map_while(|next| r.release(Release::Sequence { next })).map(|x| x.0).collect();
        assert_eq!(out, [2, 3, 4], "then 6 waits for 5");
        // By stamp: 6 (stamped 60) with a hold of 100 goes at 160, not before.
        assert_eq!(r.due(100), Some(Time(160)));
        assert_eq!(r.release(Release::Stamp { hold: 100, now: Time(159) }), None);
        assert_eq!(r.release(Release::Stamp { hold: 100, now: Time(160) }), Some((6, 600)));
        // By stamp, a low stamp goes first whatever its number; `All` by number.
        r.hold(8, Time(50), 800);
        r.hold(9, Time(40), 900);
        r.hold(9, Time(45), 901);
        assert_eq!(r.release(Release::Stamp { hold: 0, now: Time(100) }), Some((9, 901)));
        r.hold(7, Time(70), 700);
        assert_eq!(r.release(Release::All), Some((7, 700)));
        assert_eq!(r.release(Release::All), Some((8, 800)));
        assert!(r.is_empty() && r.due(0).is_none() && r.release(Release::All).is_none());
    }

    #[test]
    fn by_stamp_a_wake_up_is_asked_for_only_when_earlier_than_the_one_asked_for_before() {
        let mut r = Resequencer::default();
        let at = |now| Release::Stamp { hold: 100, now: Time(now) };
        r.hold(1, Time(50), 'a');
        assert_eq!(r.drain_due(at(0), false), (vec![], Some(Time(150))));
        r.hold(2, Time(80), 'b');
        assert_eq!(r.drain_due(at(10), false), (vec![], None), "150 asked for already");
        r.hold(3, Time(20), 'c');
        assert_eq!(r.drain_due(at(20), false), (vec![], Some(Time(120))), "earlier");
        assert_eq!(r.drain_due(at(150), true), (vec![(3, 'c'), (1, 'a')], Some(Time(180))));
        assert_eq!(r.drain_due(at(150), false), (vec![], None), "180 asked for already");
        assert_eq!(r.drain_due(at(150), true), (vec![], Some(Time(180))), "afresh: asked again");
        assert_eq!(r.drain_due(Release::All, false), (vec![(2, 'b')], None), "no wake-up but by stamp");
    }

    #[test]
    fn by_number_a_resent_copy_is_dropped_whether_released_or_held() {
        let mut r = Resequencer::default();
        assert!(r.offer(1, 1, Time(10), 'a') && r.offer(3, 1, Time(30), 'c'));
        assert!(!r.offer(3, 1, Time(31), 'C'), "held already");
        assert_eq!(r.release(Release::Sequence { next: 1 }), Some((1, 'a')));
        assert!(!r.offer(1, 2, Time(11), 'A'), "released already");
        assert!(r.offer(2, 2, Time(20), 'b'));
        let out: Vec<_> = (2..).map_while(|next| r.release(Release::Sequence { next })).collect();
        assert_eq!(out, [(2, 'b'), (3, 'c')], "each once, the first copy");
        assert!(r.is_empty());
    }

    #[test]
    fn two_senders_clocks_apart_reorder_at_half_lambda_times_one_minus_e_to_the_minus_lambda_delta() {
        // A Poisson stream at λ = 1,000/s alternating between two senders, the second's clock
        // δ = 1 ms behind; released by stamp (the hold long enough that all are in). Counted:
        // items let out after a higher number. Theory 500 · (1 − e^(−1)) = 316/s; 200,000
        // items (100,000 trials of p = 0.63, s.d. 150 = 0.2%): ±2%.
        let (lambda, skew, n) = (1000.0, 1000.0, 200_000u64);
        let mut rng = Rng::new(5);
        let (mut r, mut t) = (Resequencer::default(), 0.0);
        for i in 1..=n {
            t += rng.exponential(1e6 / lambda);
            let stamp = if i % 2 == 0 { t - skew } else { t };
            r.hold(i, Time(stamp.max(0.0) as u64), ());
        }
        let (mut high, mut late) = (0, 0);
        while let Some((i, ())) = r.release(Release::Stamp { hold: 0, now: Time::MAX }) {
            if i < high {
                late += 1;
            }
            high = high.max(i);
        }
        let secs = t / 1e6;
        let (got, want) = (late as f64 / secs, stamp_reorder_per_s(lambda, skew));
        assert!((got - want).abs() <= 0.02 * want, "{got:.1}/s out of order, theory {want:.1}/s");
        assert!((stamp_reorder_per_s(1000.0, 0.0)).abs() < 1e-12);
    }
}
