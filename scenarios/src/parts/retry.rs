//! Retries: exponential backoff with jitter (none, full, equal, decorrelated) and a token-bucket retry budget.
//!
//! The jitter kinds are those of Marc Brooker, "Exponential Backoff And Jitter" (AWS
//! Architecture Blog, 2015). With `t = min(cap, base × 2^(n−1))` for the n-th retry:
//! none waits `t`; full waits `U(0, t)`; equal waits `t/2 + U(0, t/2)`; decorrelated waits
//! `min(cap, U(base, 3 × previous wait))`. Without jitter, clients that failed together retry
//! together, in synchronized waves; full and decorrelated jitter spread them out.
//!
//! ```ignore
//! // A try failed; `tries` is how many were made so far (1 after the first).
//! match self.policy.delay_us(tries, self.last_wait_us, ctx.rng()) {
//!     Some(wait) if self.budget.try_retry() => { self.last_wait_us = wait; ctx.set_timer(wait, Timer::Retry { .. }); }
//!     _ => ctx.count("gave_up", 1),
//! }
//! ```

use faultline_core::{Micros, Rng};

/// How a backoff wait is randomised (Brooker 2015).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// `t = min(cap, base × 2^(n−1))` exactly: retries come in synchronized waves.
    None,
    /// `U(0, t)`: the widest spread of the four.
    #[default]
    Full,
    /// `t/2 + U(0, t/2)`: never less than half the backoff.
    Equal,
    /// `min(cap, U(base, 3 × previous wait))`: grows from the last wait, not from `n`.
    Decorrelated,
}

impl Jitter {
    /// Every kind, in declaration order (for mapping a parameter or strategy to one).
    pub const ALL: [Jitter; 4] = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated];

    /// The kind's short name, as Brooker's post calls it.
    pub fn name(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }
}

/// When to retry a failed call, and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try: a call is tried at most `max_retries + 1` times
    /// (0 = never retry).
    pub max_retries: u32,
    /// The first retry's backoff, before jitter.
    pub base_us: Micros,
    /// No wait is longer than this.
    pub cap_us: Micros,
    pub jitter: Jitter,
}

impl RetryPolicy {
    pub const fn new(max_retries: u32, base_us: Micros, cap_us: Micros, jitter: Jitter) -> RetryPolicy {
        RetryPolicy { max_retries, base_us, cap_us, jitter }
    }

    /// A policy that never retries.
    pub const NEVER: RetryPolicy = RetryPolicy::new(0, 0, 0, Jitter::None);

    /// The backoff before jitter for retry `retry_no`: `min(cap, base × 2^(retry_no − 1))`,
    /// saturating (no overflow for any `retry_no`).
    pub fn backoff_us(&self, retry_no: u32) -> Micros {
        let n = retry_no.max(1) - 1;
        let grown = if n >= 64 {
            if self.base_us == 0 {
                0
            } else {
                Micros::MAX
            }
        } else {
            self.base_us.saturating_mul(1 << n)
        };
        grown.min(self.cap_us)
    }

    /// How long to wait before retry `retry_no` (1 for the first retry, i.e. the number of
    /// tries made so far; 0 is read as 1), or `None` once `max_retries` are used up.
    /// `prev_us` is the wait this policy returned for the previous retry (0 before the first);
    /// only decorrelated jitter reads it. Whole µs, never above `cap_us`.
    pub fn delay_us(&self, retry_no: u32, prev_us: Micros, rng: &mut Rng) -> Option<Micros> {
        if retry_no > self.max_retries {
            return None;
        }
        let t = self.backoff_us(retry_no);
        Some(match self.jitter {
            Jitter::None => t,
            Jitter::Full => rng.range(0, t),
            Jitter::Equal => t / 2 + rng.range(0, t - t / 2),
            Jitter::Decorrelated => {
                let prev = prev_us.max(self.base_us);
                rng.range(self.base_us, prev.saturating_mul(3)).min(self.cap_us)
            }
        })
    }

    /// The mean wait before retry `retry_no`, in closed form, for the integers `delay_us`
    /// draws: none `t`, full `t/2`, equal `⌊t/2⌋ + ⌈t/2⌉/2` (= 3t/4 for even t).
    /// Decorrelated has one only while the cap cannot bind (`base × 3^retry_no ≤ cap`), where
    /// the mean grows as `E_n = (base + 3 E_{n−1}) / 2` from `E_0 = base`, so
    /// `E_n = base × (2 × 1.5^n − 1)`; past that, `None`. It assumes each `prev_us` was the
    /// previous draw, as the caller is told to pass.
    pub fn expected_delay_us(&self, retry_no: u32) -> Option<f64> {
        let t = self.backoff_us(retry_no);
        match self.jitter {
            Jitter::None => Some(t as f64),
            Jitter::Full => Some(t as f64 / 2.0),
            Jitter::Equal => Some((t / 2) as f64 + (t - t / 2) as f64 / 2.0),
            Jitter::Decorrelated => {
                let n = retry_no.max(1);
                let reach = (self.base_us as f64) * libm::pow(3.0, n as f64);
                (reach <= self.cap_us as f64).then(|| self.base_us as f64 * (2.0 * libm::pow(1.5, n as f64) - 1.0))
            }
        }
    }
}

/// Milli-tokens per token: the budget counts in thousandths so deposits of a percentage
/// of a token add up exactly.
const MILLI: u64 = 1000;

/// A retry budget, token-bucket style (the idea of Finagle's `RetryBudget` and of gRPC's
/// retry throttling; here the bucket's cap stands in for Finagle's expiry of old deposits,
/// and there is no minimum-retries-per-second floor): each request deposits `ratio_pct`% of
/// a token, each retry withdraws a whole one, and the bucket holds at most `max_tokens`. So over any sequence,
/// `retries ≤ ratio_pct/100 × requests + initial tokens`: when every call fails, retries
/// add at most `ratio_pct`% to the load, instead of multiplying it by `max_retries + 1`.
/// Exact: it counts in thousandths of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    ratio_pct: u32,
    max_milli: u64,
    milli: u64,
}

impl RetryBudget {
    /// A budget allowing retries worth `ratio_pct`% of requests, holding up to `max_tokens`;
    /// it starts full (as gRPC's throttle does), so a service's first failures may retry.
    pub fn new(ratio_pct: u32, max_tokens: u32) -> RetryBudget {
        let max_milli = max_tokens as u64 * MILLI;
        RetryBudget { ratio_pct, max_milli, milli: max_milli }
    }

    /// The same budget starting with `tokens` (at most `max_tokens`), e.g. 0 to start empty.
    pub fn with_tokens(mut self, tokens: u32) -> RetryBudget {
        self.milli = (tokens as u64 * MILLI).min(self.max_milli);
        self
    }

    /// Call for every *first* try of a request (not for retries: they would fund themselves).
    pub fn on_request(&mut self) {
        self.milli = (self.milli + self.ratio_pct as u64 * MILLI / 100).min(self.max_milli);
    }

    /// Takes a token for one retry if there is a whole one; `false` means do not retry.
    pub fn try_retry(&mut self) -> bool {
        if self.milli >= MILLI {
            self.milli -= MILLI;
            true
        } else {
            false
        }
    }

    /// The same budget, full again: a restarted process's.
    pub fn refilled(self) -> RetryBudget {
        RetryBudget { milli: self.max_milli, ..self }
    }

    /// Whole tokens in the bucket (for a gauge).
    pub fn tokens(&self) -> u32 {
        (self.milli / MILLI) as u32
    }
    /// Tokens in thousandths.
    pub fn milli_tokens(&self) -> u64 {
        self.milli
    }
    pub fn ratio_pct(&self) -> u32 {
        self.ratio_pct
    }
    /// Changes the ratio from now on (a live parameter); the tokens already saved stay.
    pub fn set_ratio_pct(&mut self, ratio_pct: u32) {
        self.ratio_pct = ratio_pct;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{MICROS_PER_MS, MICROS_PER_S};

    #[test]
    fn backoff_doubles_then_caps_and_never_overflows() {
        let p = RetryPolicy::new(100, 10 * MICROS_PER_MS, MICROS_PER_S, Jitter::None);
        let mut rng = Rng::new(1);
        let waits: Vec<Micros> = (1..=9).map(|n| p.delay_us(n, 0, &mut rng).unwrap()).collect();
        assert_eq!(waits, [10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_000_000, 1_000_000]);
        assert_eq!(p.delay_us(0, 0, &mut rng), Some(10_000), "retry 0 is read as the first");
        // 2^n saturates: huge n, huge base, no cap to speak of.
        let wide = RetryPolicy::new(u32::MAX, Micros::MAX / 3, Micros::MAX, Jitter::None);
        for n in [1, 2, 3, 63, 64, 65, 1000, u32::MAX] {
            assert!(wide.backoff_us(n) >= Micros::MAX / 3, "{n}");
        }
        assert_eq!(wide.backoff_us(u32::MAX), Micros::MAX);
        assert_eq!(RetryPolicy::new(10, 0, 5, Jitter::None).backoff_us(200), 0, "base 0 stays 0");
        assert_eq!(RetryPolicy::new(70, 1, Micros::MAX, Jitter::None).backoff_us(64), 1 << 63);
        assert_eq!(RetryPolicy::new(70, 1, Micros::MAX, Jitter::None).backoff_us(65), Micros::MAX);
    }

    #[test]
    fn max_retries_is_honoured_exactly() {
        let mut rng = Rng::new(2);
        for jitter in Jitter::ALL {
            for max in [0, 1, 3, 7] {
                let p = RetryPolicy::new(max, 1000, 60 * MICROS_PER_S, jitter);
                // A call that always fails: try, then retry while the policy says so.
                let (mut tries, mut prev) = (1u32, 0);
                while let Some(wait) = p.delay_us(tries, prev, &mut rng) {
                    prev = wait;
                    tries += 1;
                }
                assert_eq!(tries, max + 1, "{jitter:?} with max_retries {max}");
                assert_eq!(p.delay_us(max + 1, 0, &mut rng), None);
                assert_eq!(p.delay_us(u32::MAX, 0, &mut rng), None);
            }
        }
        assert_eq!(RetryPolicy::NEVER.delay_us(1, 0, &mut rng), None);
    }

    #[test]
    fn sample_means_match_the_closed_forms() {
        // Brooker 2015's formulas: the mean of U(a, b) is (a + b)/2, so full jitter averages
        // t/2, equal jitter 3t/4, and uncapped decorrelated jitter base × (2 × 1.5^n − 1)
        // (see `expected_delay_us`). base 10 ms, cap 1 s: the cap binds from the 8th retry.
        // 50k draws per retry: uniform on [0, t] has sd t/√12, so the standard error of full
        // jitter's mean is 0.26% of it and of equal jitter's 0.09%: ±1.5% and ±0.6% are > 5σ
        // yet catch any other formula (equal vs full differ by 50%).
        let n = 50_000;
        let mut rng = Rng::new(3);
        for (jitter, tol) in [(Jitter::None, 0.0), (Jitter::Full, 0.015), (Jitter::Equal, 0.006)] {
            let p = RetryPolicy::new(12, 10 * MICROS_PER_MS, MICROS_PER_S, jitter);
            for k in 1..=12 {
                let mean = (0..n).map(|_| p.delay_us(k, 0, &mut rng).unwrap() as f64).sum::<f64>() / n as f64;
                let want = p.expected_delay_us(k).unwrap();
                assert!((mean - want).abs() <= tol * want, "{jitter:?} retry {k}: mean {mean}, formula {want}");
            }
        }
        assert_eq!(RetryPolicy::new(1, 7, 100, Jitter::Equal).expected_delay_us(1), Some(3.0 + 2.0), "odd t");
        // Decorrelated, base 1 ms, cap 60 s ≥ 1 ms × 3^10: the cap cannot bind in the first
        // 10 retries, so a chain's n-th wait has mean base × (2 × 1.5^n − 1). It is a product
        // of random factors, so its spread grows with n (sd/mean 0.29 at n = 1, 1.43 at n = 6,
        // 2.9 at n = 10, by simulation); over 100k chains of 6 retries the standard error is
        // ≤ 0.45%, so ±3% is > 6σ and still rejects, e.g., U(base, 2 × prev) (whose mean at
        // n = 6 is 0.18 times as large).
        let p = RetryPolicy::new(10, MICROS_PER_MS, 60 * MICROS_PER_S, Jitter::Decorrelated);
        let chains = 100_000;
        let mut sums = [0f64; 6];
        for _ in 0..chains {
            let mut prev = 0;
            for (k, sum) in sums.iter_mut().enumerate() {
                prev = p.delay_us(k as u32 + 1, prev, &mut rng).unwrap();
                *sum += prev as f64;
            }
        }
        for (k, sum) in sums.iter().enumerate() {
            let (mean, want) = (sum / chains as f64, p.expected_delay_us(k as u32 + 1).unwrap());
            assert!((mean - want).abs() <= 0.03 * want, "decorrelated retry {}: mean {mean}, formula {want}", k + 1);
        }
        assert_eq!(p.expected_delay_us(1), Some(2000.0));
        assert!(p.expected_delay_us(10).is_some());
        assert_eq!(p.expected_delay_us(11), None, "3^11 ms > 60 s: the cap could bind");
    }

    #[test]
    fn waits_never_exceed_the_cap_and_decorrelated_stays_within_base_and_cap() {
        let mut rng = Rng::new(4);
        for (base, cap) in [(1, 1), (5, 1000), (1000, 1_000_000), (Micros::MAX / 2, Micros::MAX - 1), (100, 40)] {
            for jitter in Jitter::ALL {
                let p = RetryPolicy::new(200, base, cap, jitter);
                for _ in 0..200 {
                    let mut prev = 0;
                    for k in 1..=200 {
                        let wait = p.delay_us(k, prev, &mut rng).unwrap();
                        assert!(wait <= cap, "{p:?} retry {k}: {wait}");
                        if jitter == Jitter::Decorrelated {
                            assert!(wait >= base.min(cap), "{p:?} retry {k}: {wait}");
                        }
                        if jitter == Jitter::Equal {
                            assert!(wait >= p.backoff_us(k) / 2, "{p:?} retry {k}: {wait}");
                        }
                        prev = wait;
                    }
                }
            }
        }
    }

    #[test]
    fn when_every_call_fails_retries_approach_the_ratio() {
        // Every request fails and wants 3 retries; the budget (20%, 10 tokens, starts full)
        // grants the initial 10 plus 20% of the requests' deposits. The first deposit lands
        // in the full bucket and is thrown away; after that tokens are drained as fast as
        // they come, so the cap throws nothing else away: 10 + 99,999 / 5 = 20,009, within
        // the bound 10 + 100,000 / 5, and retries/requests → 20%.
        let mut b = RetryBudget::new(20, 10);
        let (mut requests, mut retries) = (0u64, 0u64);
        for _ in 0..100_000 {
            b.on_request();
            requests += 1;
            for _ in 0..3 {
                if b.try_retry() {
                    retries += 1;
                } else {
                    break;
                }
            }
        }
        assert_eq!(retries, 10 + (requests - 1) / 5);
        assert_eq!(b.tokens(), 0);
        // The ratio may exceed 100%: 250% lets each request retry 2.5 times on average.
        let mut b = RetryBudget::new(250, 3).with_tokens(0);
        let granted = (0..1000)
            .map(|_| {
                b.on_request();
                (0..5).filter(|_| b.try_retry()).count()
            })
            .sum::<usize>();
        assert_eq!(granted, 2500);
    }

    #[test]
    fn the_budget_bound_holds_for_any_sequence() {
        // retries × 1000 ≤ requests × ratio × 10 + initial × 1000, checked after every step of
        // random sequences (bursts of failures, long quiet stretches); and the cap: saving up
        // never buys more than max_tokens retries in a row.
        let mut rng = Rng::new(5);
        for case in 0..300 {
            let ratio = [0, 1, 10, 20, 33, 100, 250][case % 7];
            let (max, initial) = (rng.range(0, 20) as u32, rng.range(0, 25) as u32);
            let mut b = RetryBudget::new(ratio, max).with_tokens(initial);
            let start = b.milli_tokens();
            assert_eq!(start, initial.min(max) as u64 * 1000);
            let (mut requests, mut retries) = (0u64, 0u64);
            let retry_share = rng.range(0, 100);
            for _ in 0..2000 {
                if rng.range(0, 99) < retry_share {
                    retries += b.try_retry() as u64;
                } else {
                    b.on_request();
                    requests += 1;
                }
                assert!(retries * 1000 <= requests * ratio as u64 * 10 + start, "case {case}");
                assert!(b.tokens() <= max);
            }
        }
        let mut b = RetryBudget::new(20, 7).with_tokens(0);
        (0..1_000_000).for_each(|_| b.on_request());
        assert_eq!(b.tokens(), 7);
        assert_eq!((0..100).filter(|_| b.try_retry()).count(), 7);
    }

    #[test]
    fn a_budget_with_ratio_zero_and_no_tokens_never_retries() {
        let mut b = RetryBudget::new(0, 100).with_tokens(0);
        for _ in 0..100_000 {
            b.on_request();
            assert!(!b.try_retry());
        }
        let mut b = RetryBudget::new(50, 0);
        for _ in 0..1000 {
            b.on_request();
            assert!(!b.try_retry(), "a bucket that holds nothing");
        }
        // 1% is 10 milli-tokens a request: exactly the 100th request completes a token.
        let mut b = RetryBudget::new(1, 5).with_tokens(0);
        for _ in 0..99 {
            b.on_request();
        }
        assert!(!b.try_retry());
        b.on_request();
        assert!(b.try_retry() && !b.try_retry());
    }
}
