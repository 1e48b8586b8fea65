//! Rate limits that allow a burst: the token bucket, and GCRA (the leaky bucket kept as one time stamp).
//!
//! Both take a rate as `rate` requests per `per_us` and a burst `b`, and do their arithmetic
//! in integers scaled so that no rate rounds: a token is `per_us` units and every µs adds
//! `rate` of them, so 3 requests a second is exactly 3 a second, not one per 333 µs.
//!
//! - [`TokenBucket`]: holds up to `b` tokens, refilled at the rate; a request takes one or is
//!   refused. Over any span of time T it admits at most `b + r·T`: it holds at most `b` at the
//!   span's start and gains `r·T` during it (tests: the bound, and that it is reached).
//! - [`Gcra`]: the generic cell rate algorithm of ATM (ITU-T I.371, "virtual scheduling"),
//!   as Stripe, redis-cell and the `governor` crate use it: one theoretical arrival time
//!   (TAT); a request at `t` conforms unless `t < TAT − τ`, and a conforming one pushes TAT to
//!   `max(TAT, t) + T`, with emission interval `T = 1/r` and tolerance `τ = (b − 1)·T`. It makes
//!   exactly the token bucket's decisions (and the continuous-state leaky bucket's, I.371's
//!   other form of it) in half the state: tests.
//!
//! Times are the caller's clock; a clock that goes back refills nothing until it has caught up.

use faultline_core::{Micros, Time};

/// `b` tokens at most, `rate` more every `per_us`; starts full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    per_us: Micros,
    burst: u64,
    /// Tokens × `per_us`, at `last`.
    level: u128,
    last: Time,
}

impl TokenBucket {
    /// What it keeps per key: the level and the time it was last refilled.
    pub const BYTES: u64 = 16;

    pub fn new(rate: u64, per_us: Micros, burst: u64) -> TokenBucket {
        assert!(per_us > 0 && burst > 0, "a bucket holds at least one token, refilled over some time");
        TokenBucket { rate, per_us, burst, level: burst as u128 * per_us as u128, last: Time::ZERO }
    }

    /// The level at `now` (in units), without taking anything.
    fn level_at(&self, now: Time) -> u128 {
        let gained = now.micros().saturating_sub(self.last.micros()) as u128 * self.rate as u128;
        (self.level + gained).min(self.burst as u128 * self.per_us as u128)
    }

    /// Takes a token if there is one at `now`; says whether it did.
    pub fn allow(&mut self, now: Time) -> bool {
        self.level = self.level_at(now);
        self.last = self.last.max(now);
        let ok = self.level >= self.per_us as u128;
        if ok {
            self.level -= self.per_us as u128;
        }
        ok
    }

    /// Whole tokens left at `now` (for a gauge).
    pub fn tokens(&self, now: Time) -> u64 {
        (self.level_at(now) / self.per_us as u128) as u64
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }
}

/// GCRA, virtual scheduling: a request conforms unless it comes more than the tolerance ahead
/// of its theoretical arrival time.
#[derive(Clone, Debug)]
pub struct Gcra {
    rate: u64,
    per_us: Micros,
    burst: u64,
    /// The theoretical arrival time, in µs × `rate` (so the emission interval is `per_us`).
    tat: u128,
}

impl Gcra {
    /// What it keeps per key: the theoretical arrival time.
    pub const BYTES: u64 = 8;

    /// Emission interval `per_us / rate`, tolerance `(burst − 1)` of them.
    pub fn new(rate: u64, per_us: Micros, burst: u64) -> Gcra {
        assert!(rate > 0 && per_us > 0 && burst > 0, "GCRA needs a rate and a burst of at least one");
        Gcra { rate, per_us, burst, tat: 0 }
    }

    fn scaled(&self, now: Time) -> u128 {
        now.micros() as u128 * self.rate as u128
    }

    fn tolerance(&self) -> u128 {
        (self.burst - 1) as u128 * self.per_us as u128
    }

    /// Whether a request at `now` conforms; if it does, it is counted.
    pub fn allow(&mut self, now: Time) -> bool {
        let t = self.scaled(now);
        let ok = t + self.tolerance() >= self.tat;
        if ok {
            self.tat = self.tat.max(t) + self.per_us as u128;
        }
        ok
    }

    /// A request of `cost` cells at `now`: it conforms as one cell would (the bucket holds a
    /// token) and is then charged all `cost` of them, so the bucket may go into debt — a cost
    /// known only once served (DynamoDB charges a query the read units of what it returned).
    /// Over any span T it admits at most `b + r·T + cost − 1` cells.
    pub fn allow_cost(&mut self, now: Time, cost: u64) -> bool {
        let t = self.scaled(now);
        let ok = t + self.tolerance() >= self.tat;
        if ok {
            self.tat = self.tat.max(t) + cost.max(1) as u128 * self.per_us as u128;
        }
        ok
    }

    /// Requests that would conform at `now`, one after the other (the token bucket's tokens).
    pub fn tokens(&self, now: Time) -> u64 {
        let ahead = self.tat.saturating_sub(self.scaled(now));
        let used = ahead.div_ceil(self.per_us as u128) as u64;
        self.burst.saturating_sub(used)
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }
}

/// Either, for a scenario whose strategy picks one.
#[derive(Clone, Debug)]
pub enum Bucket {
    Token(TokenBucket),
    Gcra(Gcra),
}

impl Bucket {
    pub fn allow(&mut self, now: Time) -> bool {
        match self {
            Bucket::Token(b) => b.allow(now),
            Bucket::Gcra(g) => g.allow(now),
        }
    }

    pub fn tokens(&self, now: Time) -> u64 {
        match self {
            Bucket::Token(b) => b.tokens(now),
            Bucket::Gcra(g) => g.tokens(now),
        }
    }

    pub fn burst(&self) -> u64 {
        match self {
            Bucket::Token(b) => b.burst(),
            Bucket::Gcra(g) => g.burst(),
        }
    }

    /// What it keeps per key.
    pub fn bytes(&self) -> u64 {
        match self {
            Bucket::Token(_) => TokenBucket::BYTES,
            Bucket::Gcra(_) => Gcra::BYTES,
        }
    }
}

/// A token bucket per key (a creator, an API key), each made full on its key's first request,
/// at a limit of `rate` a second with a burst: a limit of 0 lets everything through, and a new
/// limit starts every key again with a full bucket.
#[derive(Clone, Debug, Default)]
pub struct PerKey<K> {
    limit: (u64, u64),
    buckets: std::collections::BTreeMap<K, TokenBucket>,
}

impl<K: Ord> PerKey<K> {
    /// Whether `key`'s request at `now` passes a limit of `rate_per_s` with `burst`.
    pub fn allow(&mut self, key: K, now: Time, rate_per_s: u64, burst: u64) -> bool {
        if self.limit != (rate_per_s, burst) {
            (self.limit, self.buckets) = ((rate_per_s, burst), Default::default());
        }
        let bucket = self.buckets.entry(key).or_insert_with(|| TokenBucket::new(rate_per_s, 1_000_000, burst.max(1)));
        rate_per_s == 0 || bucket.allow(now)
    }

    /// Forgets every key's bucket (a restart).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    /// The largest number of `times` (sorted) within any span of `len` (half-open).
    fn densest(times: &[Time], len: Micros) -> u64 {
        let mut best = 0;
        for (i, t) in times.iter().enumerate() {
            best = best.max(times.partition_point(|x| *x < t.plus(len)) - i);
        }
        best as u64
    }

    /// Requests at random: bursts of up to `most` at once, gaps exponential with mean `gap`.
    fn traffic(seed: u64, n: usize, gap: f64, most: u64) -> Vec<Time> {
        let (mut rng, mut t, mut out) = (Rng::new(seed), 0.0, Vec::new());
        while out.len() < n {
            t += rng.exponential(gap);
            for _ in 0..1 + rng.below(most) {
                out.push(Time(t as u64));
            }
        }
        out
    }

    #[test]
    fn a_token_bucket_admits_at_most_b_plus_r_t_in_any_span_and_a_greedy_source_gets_that() {
        // Theory: at a span's first instant the bucket holds at most b, and over the rest of a
        // half-open span of length T (T − 1 µs after its first instant) it gains r·(T − 1 µs),
        // so it admits at most b + ⌊r·(T − 1 µs)⌋ ≤ b + r·T. A greedy source (asking again and
        // again at every µs) reaches it exactly, starting from a full bucket. Integer
        // arithmetic: no tolerance. Rates chosen so that T_e is no whole number of µs.
        for (rate, per_us, burst) in [(10, 1_000, 5), (3, 1_000, 1), (7, 2_000, 20), (1_000, 1_000_000, 100)] {
            for len in [per_us, per_us / 2, 3 * per_us] {
                let mut greedy = TokenBucket::new(rate, per_us, burst);
                let mut admitted = Vec::new();
                for t in 0..6 * per_us {
                    while greedy.allow(Time(t)) {
                        admitted.push(Time(t));
                    }
                }
                let want = burst + (len - 1) * rate / per_us;
                assert_eq!(densest(&admitted, len), want, "rate {rate}/{per_us} µs, b {burst}, T {len}");
                // In the long run, the rate exactly: b + ⌊r·t⌋ by the end.
                assert_eq!(admitted.len() as u64, burst + (6 * per_us - 1) * rate / per_us);
                for seed in 1..=4 {
                    let mut bucket = TokenBucket::new(rate, per_us, burst);
                    let asked = traffic(seed, 20_000, per_us as f64 / rate as f64 / 3.0, 2 * burst);
                    let got: Vec<Time> = asked.into_iter().filter(|&t| bucket.allow(t)).collect();
                    assert!(densest(&got, len) <= burst + len * rate / per_us, "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn gcra_makes_the_token_buckets_decisions_with_tolerance_b_minus_1_emission_intervals() {
        // A GCRA(T, τ) with τ = (b − 1)·T conforms exactly when a bucket of depth b and rate
        // 1/T holds a token: the bucket's level is b − (TAT − t)/T, capped at b. Same decision
        // on every request, whatever the traffic: compared exactly.
        for (rate, per_us, burst) in [(10, 1_000, 5), (3, 1_000, 1), (100, 1_000_000, 20)] {
            for seed in 1..=4 {
                let (mut gcra, mut bucket) = (Gcra::new(rate, per_us, burst), TokenBucket::new(rate, per_us, burst));
                for t in traffic(seed, 20_000, per_us as f64 / rate as f64 / 2.0, burst + 3) {
                    assert_eq!(gcra.tokens(t), bucket.tokens(t), "at {t}");
                    assert_eq!(gcra.allow(t), bucket.allow(t), "at {t}, seed {seed}");
                }
            }
        }
    }

    /// ITU-T I.371's continuous-state leaky bucket, the reference for GCRA: a bucket that
    /// drains one unit per unit of time, which a conforming cell fills by `increment` (T),
    /// refused if it would find more than `limit` (τ) in it. Scaled like `Gcra`.
    struct LeakyBucket {
        x: u128,
        lct: u128,
        increment: u128,
        limit: u128,
    }

    impl LeakyBucket {
        fn allow(&mut self, t: u128) -> bool {
            let x = self.x.saturating_sub(t - self.lct);
            let ok = x <= self.limit;
            if ok {
                (self.x, self.lct) = (x + self.increment, t);
            }
            ok
        }
    }

    #[test]
    fn gcra_charging_a_cost_admits_at_most_b_plus_r_t_plus_one_overdraft() {
        // A greedy source of requests costing `cost` cells each: the first conforming one may
        // take the bucket `cost − 1` into debt, and nothing conforms again until it is paid
        // back. Cells admitted by t: at most b + ⌊r·t⌋ + cost − 1, and at least b + ⌊r·t⌋ − cost
        // (the debt outstanding at the end). Integer arithmetic: no tolerance. A cost of 1 is
        // `allow` exactly.
        for (rate, per_us, burst, cost) in [(10, 1_000, 5, 7), (3, 1_000, 1, 4), (500, 1_000_000, 500, 32)] {
            let (mut g, mut plain, mut cells) = (Gcra::new(rate, per_us, burst), Gcra::new(rate, per_us, burst), 0);
            for t in 0..20 * per_us {
                while g.allow_cost(Time(t), cost) {
                    cells += cost;
                }
                assert_eq!(plain.clone().allow_cost(Time(t), 1), plain.allow(Time(t)));
            }
            let fluid = burst + (20 * per_us - 1) * rate / per_us;
            assert!(cells < fluid + cost && cells + cost >= fluid, "{cells} cells, b + r·t = {fluid}");
        }
    }

    #[test]
    fn gcra_is_the_continuous_state_leaky_bucket() {
        // I.371 defines GCRA twice, as virtual scheduling and as a leaky bucket, and proves them
        // equivalent (X = TAT − t after a conforming cell). Same decision on every request.
        let (rate, per_us, burst) = (7, 1_000, 4);
        let mut gcra = Gcra::new(rate, per_us, burst);
        let tau = gcra.tolerance();
        let mut leaky = LeakyBucket { x: 0, lct: 0, increment: per_us as u128, limit: tau };
        for t in traffic(9, 50_000, 100.0, 6) {
            assert_eq!(gcra.allow(t), leaky.allow(t.micros() as u128 * rate as u128), "at {t}");
        }
    }

    #[test]
    fn gcra_spaces_requests_by_the_emission_interval_and_lets_b_through_at_once() {
        // From idle, b conform at one instant, then one every T. With τ = 0 (b = 1) each
        // request resets TAT to its own arrival + T, so on a 1 µs clock consecutive ones are
        // exactly ⌈T⌉ apart (334 µs for T = 333.3 µs: never closer than T). With b > 1 the greedy
        // source stays behind TAT, so nothing is lost to the clock's grid: the n-th request
        // conforms at exactly ⌈(n + 1 − b)·T⌉. Integers throughout: no tolerance.
        let (rate, per_us) = (3, 1_000); // T = 333.3 µs
        for burst in [1, 4] {
            let mut gcra = Gcra::new(rate, per_us, burst);
            let mut admitted = Vec::new();
            for t in 0..10_000 {
                while gcra.allow(Time(t)) {
                    admitted.push(t);
                }
            }
            assert_eq!(admitted[..burst as usize], vec![0; burst as usize][..]);
            for (n, &t) in admitted.iter().enumerate().skip(burst as usize) {
                let due = match burst {
                    1 => n as u64 * per_us.div_ceil(rate),
                    _ => ((n as u64 + 1 - burst) * per_us).div_ceil(rate),
                };
                assert_eq!(t, due, "b = {burst}, request {n}");
            }
        }
    }

    #[test]
    fn per_key_buckets_limit_each_key_alone_and_restart_full_on_a_new_limit() {
        let mut keys = PerKey::default();
        let t = Time::ZERO;
        assert_eq!((0..5).filter(|_| keys.allow('a', t, 1, 3)).count(), 3, "the burst, then refused");
        assert!(keys.allow('b', t, 1, 3), "another key has its own bucket");
        assert!(keys.allow('a', Time::from_secs(1), 1, 3), "refilled at the rate");
        assert_eq!((0..5).filter(|_| keys.allow('a', t, 1, 2)).count(), 2, "a new limit: full again");
        assert!((0..100).all(|_| keys.allow('a', t, 0, 2)), "0: no limit");
    }
}
