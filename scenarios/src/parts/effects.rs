//! Side effects done downstream per request (a card charged, an email sent), at most once per key when the request carries the key, beside the truth about them: when each was done, how many keys were done more than once, and the latest repeat for a check to name.
//!
//! What a payment provider does with Stripe's or Adyen's idempotency keys: a request that
//! carries its key gets the key's first effect back instead of a new one; a request without
//! it is done again, and that is a repeat — the double charge the idempotency lesson is
//! about. Effects are numbered from 1 in the order done, and their true times (`ctx.truth()`)
//! are kept in that order, so a reconciliation check can count the effects done before a
//! cutoff with one binary search. Keys are [`KeyTable`] keys (`row << 32 | n`).

use crate::parts::table::{KeyTable, Log};
use faultline_core::Time;

/// What a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// A new effect, numbered `id`; `times`: how often its key has been done, this one
    /// included (2 or more: a repeat).
    New { id: u64, times: u32 },
    /// The request carried its key, done before as effect `id`: handed back, nothing done.
    Deduped(u64),
}

#[derive(Clone, Debug, Default)]
pub struct Effects {
    count: u64,
    /// Per key: times done, and the effect done with the key carried (0: none).
    by_key: KeyTable<(u32, u64)>,
    /// Each effect's true time, by id.
    times: Log<Time>,
    /// Keys done more than once, and the latest repeat: key, times done, when.
    repeated_keys: u64,
    latest_repeat: Option<(u64, u32, Time)>,
}

impl Effects {
    /// A request for `key`, carrying the key (`keyed`) or not, at true time `now`.
    pub fn perform(&mut self, key: u64, keyed: bool, now: Time) -> Done {
        let (times, first) = self.by_key.get_or_insert(key, (0, 0));
        if keyed && *first != 0 {
            return Done::Deduped(*first);
        }
        self.count += 1;
        self.times.push(now);
        *times += 1;
        if keyed {
            *first = self.count;
        }
        if *times > 1 {
            self.repeated_keys += (*times == 2) as u64;
            self.latest_repeat = Some((key, *times, now));
        }
        Done::New { id: self.count, times: *times }
    }

    /// Effects done.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Effects done before true time `cutoff`: those numbered 1 to this.
    pub fn done_before(&self, cutoff: Time) -> u64 {
        self.times.partition_point(|&t| t < cutoff) as u64
    }

    /// Keys done more than once.
    pub fn repeated_keys(&self) -> u64 {
        self.repeated_keys
    }

    /// The key repeated at true time `now`, and how often it has been done, if one was.
    pub fn repeat_at(&self, now: Time) -> Option<(u64, u32)> {
        self.latest_repeat.filter(|r| r.2 == now).map(|(key, times, _)| (key, times))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_request_gets_its_first_effect_back_and_an_unkeyed_one_repeats() {
        let mut e = Effects::default();
        let (a, b) = (1 << 32 | 1, 2 << 32 | 1);
        assert_eq!(e.perform(a, true, Time(10)), Done::New { id: 1, times: 1 });
        assert_eq!(e.perform(a, true, Time(20)), Done::Deduped(1), "the key's first effect");
        assert_eq!(e.perform(b, false, Time(30)), Done::New { id: 2, times: 1 });
        assert_eq!((e.repeated_keys(), e.repeat_at(Time(30))), (0, None));
        assert_eq!(e.perform(b, false, Time(40)), Done::New { id: 3, times: 2 }, "no key: done again");
        assert_eq!((e.repeated_keys(), e.repeat_at(Time(40)), e.repeat_at(Time(41))), (1, Some((b, 2)), None));
        assert_eq!(e.perform(b, false, Time(50)), Done::New { id: 4, times: 3 });
        assert_eq!(e.repeated_keys(), 1, "a key counts once however often it repeats");
        // A key done without its key first and with it later: the keyed one is new once more,
        // and from then on handed back.
        assert_eq!(e.perform(b, true, Time(60)), Done::New { id: 5, times: 4 });
        assert_eq!(e.perform(b, true, Time(70)), Done::Deduped(5));
        assert_eq!(e.count(), 5);
    }

    #[test]
    fn effects_before_a_cutoff_are_counted_by_their_true_times() {
        let mut e = Effects::default();
        for n in 0..3000u64 {
            e.perform(n, n % 2 == 0, Time(10 * n));
        }
        assert_eq!(e.done_before(Time(0)), 0);
        assert_eq!(e.done_before(Time(10)), 1);
        assert_eq!(e.done_before(Time(10 * 1500 + 5)), 1501, "across the log's blocks");
        assert_eq!(e.done_before(Time(u64::MAX)), 3000);
    }
}
