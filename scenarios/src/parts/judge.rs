//! A recent-window judge of outcomes (ok or bad, with a latency): the bad share of the last W µs, or of the last N answers when the window holds fewer than a minimum, so a check judges now at any rate.
//!
//! A check that judges "the last second, once it holds 100 answers" is blind below 100 answers
//! a second: at a low rate it never says anything. [`Judge`] keeps the answers of the last
//! `window_us` and at least the `last` newest ones; its [`Verdict`] is over the window when the
//! window holds `min` or more, else over the last `last` answers (however old), so it always has
//! something to say once anything was answered. `since` restricts both to answers at or after a
//! time (say, when a dependency turned sick). [`verdict_of`] judges several judges as one (one
//! per client: the window's counts add up; the last N are the N newest of all).
//!
//! Each answer is recorded with the time (true time: it is instrumentation), whether it was bad
//! and its latency (`u64::MAX` for a failure), so a failing check can name a quantile too.
//! A verdict costs O(log n) per judge in the window case (cumulative bad counts, binary search).

use faultline_core::{Micros, Time};
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
struct Entry {
    at: Time,
    bad: bool,
    latency_us: u64,
    /// Bad answers recorded before this one.
    bad_before: u64,
}

/// The recent answers of one source.
#[derive(Clone, Debug)]
pub struct Judge {
    window_us: Micros,
    min: usize,
    last: usize,
    log: VecDeque<Entry>,
    bad_total: u64,
}

/// Bad answers among those judged, and whether they are the window's (else the last N's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub bad: u64,
    pub total: u64,
    pub windowed: bool,
}

impl Verdict {
    /// More than `max_bad_pct`% of the judged answers were bad (never with none judged).
    pub fn fails(&self, max_bad_pct: u64) -> bool {
        self.bad * 100 > max_bad_pct * self.total
    }
    /// "3 of 40 answers in the last 1000 ms" or "3 of the last 100 answers".
    pub fn describe(&self, window_us: Micros) -> String {
        match self.windowed {
            true => format!("{} of {} answers in the last {} ms", self.bad, self.total, window_us / 1000),
            false => format!("{} of the last {} answers", self.bad, self.total),
        }
    }
}

impl Judge {
    /// Judges the last `window_us` when it holds `min` answers or more, else the last `last` answers.
    pub fn new(window_us: Micros, min: usize, last: usize) -> Judge {
        Judge { window_us, min, last: last.max(1), log: VecDeque::new(), bad_total: 0 }
    }

    /// An answer at `at`: bad or not, and its latency (`u64::MAX` if it failed).
    pub fn record(&mut self, at: Time, bad: bool, latency_us: u64) {
        self.log.push_back(Entry { at, bad, latency_us, bad_before: self.bad_total });
        self.bad_total += bad as u64;
        let Some(old) = at.micros().checked_sub(self.window_us).map(|us| Time::ZERO.plus(us)) else { return };
        while self.log.len() > self.last && self.log.front().is_some_and(|e| e.at <= old) {
            self.log.pop_front();
        }
    }

    /// Forgets everything (a restart).
    pub fn clear(&mut self) {
        self.log.clear();
    }

    /// The first index at or after `since` and inside the window ending at `now`.
    fn window_start(&self, now: Time, since: Time) -> usize {
        let old = Time::ZERO.plus(now.micros().saturating_sub(self.window_us));
        let a = self.log.partition_point(|e| e.at < since);
        let b = if now.micros() >= self.window_us { self.log.partition_point(|e| e.at <= old) } else { 0 };
        a.max(b)
    }

    fn bad_from(&self, i: usize) -> u64 {
        self.log.get(i).map_or(0, |e| self.bad_total - e.bad_before)
    }

    /// The verdict at `now` over the answers at or after `since`.
    pub fn verdict(&self, now: Time, since: Time) -> Verdict {
        verdict_of([self], now, since)
    }

    /// The `q` quantile of the latencies this verdict judged (`u64::MAX`: a failure), for messages.
    pub fn quantile<'a>(
        judges: impl IntoIterator<Item = &'a Judge>,
        v: &Verdict,
        now: Time,
        since: Time,
        q: f64,
    ) -> Option<u64> {
        let mut xs: Vec<(Time, u64)> = Vec::new();
        for j in judges {
            let from = if v.windowed { j.window_start(now, since) } else { j.log.partition_point(|e| e.at < since) };
            xs.extend(j.log.iter().skip(from).map(|e| (e.at, e.latency_us)));
        }
        if !v.windowed {
            xs.sort_by_key(|x| std::cmp::Reverse(x.0));
            xs.truncate(v.total as usize);
        }
        let mut l: Vec<u64> = xs.into_iter().map(|x| x.1).collect();
        l.sort_unstable();
        let k = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len().max(1)) - 1;
        l.get(k).copied()
    }
}

/// Several judges (same window, minimum and N) as one: the window's answers of all when they
/// number `min` or more, else the `last` newest answers of all.
pub fn verdict_of<'a, I>(judges: I, now: Time, since: Time) -> Verdict
where
    I: IntoIterator<Item = &'a Judge> + Clone,
{
    let Some(first) = judges.clone().into_iter().next() else { return Verdict { bad: 0, total: 0, windowed: true } };
    let (mut bad, mut total, mut many) = (0, 0, 0);
    for j in judges.clone() {
        many += 1;
        let i = j.window_start(now, since);
        (bad, total) = (bad + j.bad_from(i), total + (j.log.len() - i) as u64);
    }
    if total >= first.min as u64 {
        return Verdict { bad, total, windowed: true };
    }
    // Too few in the window: the newest `last` of all (each judge keeps at least its own `last`).
    let mut tail: Vec<(Time, bool)> = Vec::new();
    for j in judges {
        let from = j.log.partition_point(|e| e.at < since).max(j.log.len().saturating_sub(first.last));
        tail.extend(j.log.iter().skip(from).map(|e| (e.at, e.bad)));
    }
    if many > 1 {
        tail.sort_by_key(|x| std::cmp::Reverse(x.0));
        tail.truncate(first.last);
    }
    let bad = tail.iter().filter(|e| e.1).count() as u64;
    Verdict { bad, total: tail.len() as u64, windowed: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Rng, MICROS_PER_S};

    fn at_ms(ms: u64) -> Time {
        Time::ZERO.plus(ms * 1000)
    }

    #[test]
    fn judges_the_window_when_full_enough_else_the_last_answers() {
        let mut j = Judge::new(MICROS_PER_S, 10, 20);
        // 30 answers 10 ms apart, the 5th and 25th bad.
        for k in 0..30 {
            j.record(at_ms(10 * k), k == 5 || k == 25, 1000);
        }
        // At 0.3 s the last second holds all 30: windowed, 2 bad.
        assert_eq!(j.verdict(at_ms(300), Time::ZERO), Verdict { bad: 2, total: 30, windowed: true });
        // At 1.25 s the window (0.25, 1.25] holds 4 answers (260..290 ms): too few, so the last 20.
        assert_eq!(j.verdict(at_ms(1250), Time::ZERO), Verdict { bad: 1, total: 20, windowed: false });
        // Much later: still the last 20 (kept), never silent.
        assert_eq!(j.verdict(at_ms(100_000), Time::ZERO).total, 20);
        // `since` cuts both: answers from 200 ms on.
        assert_eq!(j.verdict(at_ms(300), at_ms(200)), Verdict { bad: 1, total: 10, windowed: true });
        assert_eq!(j.verdict(at_ms(5000), at_ms(245)), Verdict { bad: 1, total: 5, windowed: false });
        assert!(j.verdict(at_ms(300), Time::ZERO).fails(5) && !j.verdict(at_ms(300), Time::ZERO).fails(7));
        assert_eq!(
            Judge::quantile([&j], &Verdict { bad: 0, total: 30, windowed: true }, at_ms(300), Time::ZERO, 0.99),
            Some(1000)
        );
    }

    #[test]
    fn several_judges_judge_as_one() {
        // Two sources, interleaved: the window adds up; the last N are the N newest of both.
        let (mut a, mut b) = (Judge::new(MICROS_PER_S, 10, 4), Judge::new(MICROS_PER_S, 10, 4));
        for k in 0..8 {
            a.record(at_ms(100 * k), false, 1);
            b.record(at_ms(100 * k + 50), k >= 6, u64::MAX);
        }
        let both = [a, b];
        assert_eq!(verdict_of(&both, at_ms(800), Time::ZERO), Verdict { bad: 2, total: 16, windowed: true });
        // At 1.6 s the window (0.6, 1.6] holds 3: the 4 newest of both are b7, a7, b6, a6.
        assert_eq!(verdict_of(&both, at_ms(1600), Time::ZERO), Verdict { bad: 2, total: 4, windowed: false });
    }

    #[test]
    fn at_any_rate_a_bad_share_over_the_bound_is_seen_and_one_under_it_is_not() {
        // The theory: with answers bad independently with probability p, the judged share is
        // Binomial(n, p)/n with n = the window's count (rate × W) or N; a 1% bound is failed by
        // p = 6% almost always (n = 100: P(Bin(100, 0.06) ≤ 1) = 1.7%), and by p = 0.1% rarely
        // (P(Bin(100, 0.001) ≥ 2) = 0.5%). At 1,000/s the window judges (about 1,000 answers),
        // at 5/s the last 100: both rates see p = 6%, which a "1 s with ≥ 100" rule never
        // judges at 5/s. Checked at 200 moments over 100 s; ±: the share failing stays within
        // the binomial's probability plus a margin (10 of 200 for 1.7%, 5 for 0.5%).
        for rate in [5.0, 1000.0] {
            for (p, want_fail) in [(0.06, true), (0.001, false)] {
                let (mut j, mut rng, mut t) = (Judge::new(MICROS_PER_S, 100, 100), Rng::new(3), 0.0);
                let mut wrong = 0;
                for moment in 1..=200u64 {
                    while t < moment as f64 * 0.5 {
                        t += -libm::log(rng.unit_open()) / rate;
                        j.record(Time::ZERO.plus((t * 1e6) as u64), rng.unit_open() < p, 0);
                    }
                    let v = j.verdict(Time::ZERO.plus(moment * 500_000), Time::ZERO);
                    assert_eq!(v.windowed, rate > 100.0, "{rate}/s");
                    wrong += (v.fails(1) != want_fail && moment > 40) as u32;
                }
                assert!(wrong <= 10, "{rate}/s, p {p}: {wrong} of 160 moments judged wrong");
            }
        }
    }
}
