//! Per-window tallies of what a client asked a rate limiter for and what it got, judged against an exact limiter once every answer is in.
//!
//! A limiter of `limit` requests per window is exact when it admits `min(asked, limit)` of
//! each window: everything while under the limit, nothing past it. Against that, a window of a
//! real limiter shows two errors ([`Judged`]): overshoot, `(got − limit) / limit` of a window
//! in which the client asked for more than the limit (a window asking less cannot overshoot,
//! and averaging it in would dilute the figure), and false rejections,
//! `min(asked, limit) − min(got, limit)`: requests the exact limiter would have admitted.
//!
//! Answers come back late and out of order, each naming the window it was counted in. A
//! window is judged once no answer counted in it can still be on its way — the caller knows
//! when that is ([`WindowTally::judge`]); windows are judged oldest first, and an answer for
//! a window judged already is dropped.

use std::collections::VecDeque;

/// One window's verdict: requests answered (`asked`) and admitted (`got`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    pub window: u64,
    pub asked: u64,
    pub got: u64,
}

impl Judged {
    /// What was admitted over `limit`, in percent of it (rounded), for a window that asked
    /// for more than `limit`; `None` for one that did not.
    pub fn overshoot_pct(&self, limit: u64) -> Option<u64> {
        let limit = limit.max(1);
        (self.asked > limit).then(|| (self.got.saturating_sub(limit) * 100 + limit / 2) / limit)
    }

    /// Requests refused that an exact limiter would have admitted.
    pub fn false_rejections(&self, limit: u64) -> u64 {
        self.asked.min(limit) - self.got.min(limit)
    }

    /// Requests admitted within the limit (what an exact limiter admits, less the false
    /// rejections).
    pub fn within_limit(&self, limit: u64) -> u64 {
        self.got.min(limit)
    }
}

/// One client's windows still hearing back, oldest first.
#[derive(Clone, Debug, Default)]
pub struct WindowTally {
    /// (window, answers, admissions).
    open: VecDeque<(u64, u64, u64)>,
    /// Every window below this one is judged.
    judged_below: u64,
}

impl WindowTally {
    pub fn new() -> WindowTally {
        WindowTally::default()
    }

    /// An answer counted in `window`: admitted or refused.
    pub fn answered(&mut self, window: u64, admitted: bool) {
        if window < self.judged_below {
            return;
        }
        // Nearly always the newest window: search from the back.
        let at = match self.open.iter().rposition(|t| t.0 <= window) {
            Some(i) if self.open[i].0 == window => i,
            found => {
                let i = found.map_or(0, |i| i + 1);
                self.open.insert(i, (window, 0, 0));
                i
            }
        };
        let t = &mut self.open[at];
        (t.1, t.2) = (t.1 + 1, t.2 + admitted as u64);
    }

    /// What was admitted in the newest window heard of.
    pub fn newest_admitted(&self) -> u64 {
        self.open.back().map_or(0, |t| t.2)
    }

    /// Judges every window before `settled_before`, oldest first: the caller is sure no
    /// answer counted in them is still on its way.
    pub fn judge(&mut self, settled_before: u64) -> impl Iterator<Item = Judged> + '_ {
        self.judged_below = self.judged_below.max(settled_before);
        let settled = self.open.iter().take_while(|t| t.0 < settled_before).count();
        self.open.drain(..settled).map(|(window, asked, got)| Judged { window, asked, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_limiter_shows_no_error_and_n_times_the_limit_shows_n_minus_one_hundred_percent() {
        // Exact: got = min(asked, limit), so no overshoot and no false rejection, whatever
        // was asked. N instances each admitting the limit: (N − 1) × 100% over it.
        for limit in [1, 3, 30, 1000] {
            for asked in [0, 1, limit - 1, limit, limit + 1, 7 * limit] {
                let exact = Judged { window: 0, asked, got: asked.min(limit) };
                assert_eq!(exact.overshoot_pct(limit).unwrap_or(0), 0);
                assert_eq!((exact.false_rejections(limit), exact.within_limit(limit)), (0, asked.min(limit)));
            }
            for n in 1..=8 {
                let local = Judged { window: 0, asked: 10 * n * limit, got: n * limit };
                assert_eq!(local.overshoot_pct(limit), Some((n - 1) * 100));
            }
        }
        // Only windows that asked for more than the limit count; the percent is rounded.
        assert_eq!(Judged { window: 0, asked: 30, got: 30 }.overshoot_pct(30), None);
        assert_eq!(Judged { window: 0, asked: 40, got: 31 }.overshoot_pct(30), Some(3));
        assert_eq!(Judged { window: 0, asked: 40, got: 32 }.overshoot_pct(40), None);
        assert_eq!(Judged { window: 0, asked: 41, got: 41 }.overshoot_pct(40), Some(3), "2.5% rounds up");
        // A refused request within the limit is a false rejection; past it, a refusal is right.
        let j = Judged { window: 0, asked: 50, got: 25 };
        assert_eq!((j.false_rejections(30), j.within_limit(30)), (5, 25));
    }

    #[test]
    fn windows_are_tallied_out_of_order_and_judged_once_in_order() {
        let mut t = WindowTally::new();
        for (window, admitted) in [(5, true), (6, true), (5, false), (4, true), (6, false), (8, true), (5, true)] {
            t.answered(window, admitted);
        }
        assert_eq!(t.newest_admitted(), 1);
        let judged: Vec<Judged> = t.judge(6).collect();
        let want = [Judged { window: 4, asked: 1, got: 1 }, Judged { window: 5, asked: 3, got: 2 }];
        assert_eq!(judged, want);
        // Late answers for judged windows are dropped, and nothing is judged twice.
        t.answered(5, true);
        t.answered(3, true);
        t.answered(7, true);
        assert_eq!(t.judge(6).count(), 0);
        let judged: Vec<(u64, u64, u64)> = t.judge(100).map(|j| (j.window, j.asked, j.got)).collect();
        assert_eq!(judged, [(6, 2, 1), (7, 1, 1), (8, 1, 1)]);
        assert_eq!(t.newest_admitted(), 0);
        t.answered(99, true);
        assert_eq!(t.judge(1_000).count(), 0, "window 99 was judged with nothing in it");
    }
}
