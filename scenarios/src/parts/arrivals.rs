//! Workload sources: open-loop arrivals (Poisson, constant, on/off) with a load multiplier, closed-loop think time, and Zipf key popularity.
//!
//! **Open loop** ([`OpenLoop`]): requests arrive at a rate that does not care how the system
//! is doing — the model of many independent users, and the one that melts a system when it
//! slows down. A node keeps one `OpenLoop` and one timer value for it:
//!
//! ```ignore
//! fn on_start(&mut self, ctx: &mut Ctx<Self>) { self.src.start(ctx, Timer::Arrive) }
//! // in on_timer:   Timer::Arrive => { self.src.on_timer(ctx, Timer::Arrive); /* send a request */ }
//! // in on_control:
//! //   Control::Param { id: "load_pct", value } => self.src.set_load_pct(value as u32, ctx, Timer::Arrive),
//! ```
//!
//! A rate (or load) of 0 *parks* the source: no timer is pending at all, and a later change
//! to a positive rate starts it again. A rate change redraws the pending gap, which is exact
//! for Poisson arrivals (memoryless: the wait from now to the next arrival at the new rate is
//! again exponential), so a source slowed to a trickle answers a load spike at once.
//!
//! **Closed loop** ([`Think`]): N clients each send, wait for the reply, then think for `Z`
//! before sending again. Their throughput is set by the system's response time `R`, by the
//! interactive response time law `X = N / (R + Z)` ([`interactive_throughput_per_s`]): a
//! slow system is offered less load, so closed-loop clients hide the collapse an open loop shows.
//!
//! **What they ask for** ([`Zipf`]): which of `n` keys a request reads, by Zipf popularity —
//! a few hot keys take most of the reads and a long tail the rest, as in web and cache traces.

use faultline_core::{Ctx, Micros, Node, Rng, TimerId, MICROS_PER_S};
use std::rc::Rc;

/// How the gaps between an open-loop source's arrivals are spaced. All three keep the same
/// mean rate; they differ in burstiness (the coefficient of variation of the gap, CV).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spacing {
    /// Exponential gaps — a Poisson process, the sum of many independent users (CV = 1).
    #[default]
    Poisson,
    /// Every gap exactly `1 / rate` — a load generator's metronome (CV = 0). The first gap
    /// is a random phase in `(0, 1 / rate]`, so many such sources do not fire in lockstep.
    Constant,
    /// Bursts: an interrupted Poisson process. Exponential on periods (mean `on_us`) with
    /// Poisson arrivals alternate with exponential silences (mean `off_us`); the rate while on
    /// is raised by `(on + off) / on`, so the *average* rate stays the configured one (CV > 1).
    /// `off_us == 0` is plain Poisson.
    OnOff { on_us: Micros, off_us: Micros },
}

/// An open-loop arrival source: a base rate, a load multiplier in percent and a spacing,
/// plus the one timer it keeps pending (see the module doc for the three calls that drive it).
#[derive(Clone, Debug)]
pub struct OpenLoop {
    rate_per_s: f64,
    load_pct: u32,
    spacing: Spacing,
    pending: Option<TimerId>,
}

impl OpenLoop {
    /// Poisson arrivals at `rate_per_s` (load 100%).
    pub fn poisson(rate_per_s: f64) -> OpenLoop {
        OpenLoop { rate_per_s: clean(rate_per_s), load_pct: 100, spacing: Spacing::Poisson, pending: None }
    }
    /// Evenly spaced arrivals at `rate_per_s`.
    pub fn constant(rate_per_s: f64) -> OpenLoop {
        OpenLoop { spacing: Spacing::Constant, ..OpenLoop::poisson(rate_per_s) }
    }
    /// Bursty arrivals averaging `rate_per_s`: on for ~`on_us`, silent for ~`off_us` ([`Spacing::OnOff`]).
    pub fn on_off(rate_per_s: f64, on_us: Micros, off_us: Micros) -> OpenLoop {
        OpenLoop { spacing: Spacing::OnOff { on_us: on_us.max(1), off_us }, ..OpenLoop::poisson(rate_per_s) }
    }
    /// The same source at `pct`% of its base rate (100 = the base rate, 300 = three times it).
    pub fn with_load_pct(mut self, pct: u32) -> OpenLoop {
        self.load_pct = pct;
        self
    }
    /// The same source with another spacing.
    pub fn with_spacing(mut self, spacing: Spacing) -> OpenLoop {
        self.spacing = spacing;
        self
    }

    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }
    pub fn load_pct(&self) -> u32 {
        self.load_pct
    }
    pub fn spacing(&self) -> Spacing {
        self.spacing
    }
    /// Arrivals per second on average: base rate × load / 100.
    pub fn effective_rate_per_s(&self) -> f64 {
        self.rate_per_s * self.load_pct as f64 / 100.0
    }
    /// True when the rate or the load is 0: the source sets no timer.
    pub fn is_parked(&self) -> bool {
        self.effective_rate_per_s() <= 0.0
    }
    /// The mean gap between arrivals, `1e6 / effective rate` µs; `None` when parked.
    pub fn mean_gap_us(&self) -> Option<f64> {
        let rate = self.effective_rate_per_s();
        (rate > 0.0).then(|| MICROS_PER_S as f64 / rate)
    }

    /// Draws the gap to the next arrival, rounded to whole µs and never below 1 µs (so no
    /// rate, however huge, can make a source fire forever at one instant: one source tops out
    /// at 1,000,000 arrivals a second). `None` when parked.
    pub fn next_gap_us(&self, rng: &mut Rng) -> Option<Micros> {
        let mean = self.mean_gap_us()?;
        let gap = match self.spacing {
            Spacing::Poisson | Spacing::OnOff { off_us: 0, .. } => rng.exponential(mean),
            Spacing::Constant => mean,
            Spacing::OnOff { on_us, off_us } => on_off_gap(mean, on_us as f64, off_us as f64, rng),
        };
        Some(whole_us(gap))
    }

    /// Like [`OpenLoop::next_gap_us`], for the first arrival after a (re)start: a constant
    /// source starts at a random phase, so a crowd of them does not arrive in lockstep.
    pub fn first_gap_us(&self, rng: &mut Rng) -> Option<Micros> {
        match self.spacing {
            Spacing::Constant => self.mean_gap_us().map(|mean| whole_us(mean * rng.unit_open())),
            _ => self.next_gap_us(rng),
        }
    }

    /// Schedules the first arrival as `timer` (call from `on_start`, which also runs after a
    /// restart). A parked source sets no timer.
    pub fn start<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) {
        self.cancel(ctx);
        if let Some(gap) = self.first_gap_us(ctx.rng()) {
            self.pending = Some(ctx.set_timer(gap, timer));
        }
    }

    /// Starts like [`OpenLoop::start`] at `rate_per_s`, the base rate in force now (after a
    /// restart: a change made while the node was down), with one first gap drawn.
    pub fn start_at<N: Node>(&mut self, rate_per_s: f64, ctx: &mut Ctx<N>, timer: N::Timer) {
        self.rate_per_s = clean(rate_per_s);
        self.start(ctx, timer);
    }

    /// Call when the arrival timer fires (an arrival is due now): schedules the next one.
    /// Any other pending arrival is cancelled, so a source never has two.
    pub fn on_timer<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) {
        self.cancel(ctx);
        self.pending = self.next_gap_us(ctx.rng()).map(|gap| ctx.set_timer(gap, timer));
    }

    /// Changes the base rate from now on: the pending arrival is drawn afresh at the new
    /// rate, a parked source starts, a source set to 0 parks. No change, no redraw.
    pub fn set_rate_per_s<N: Node>(&mut self, rate_per_s: f64, ctx: &mut Ctx<N>, timer: N::Timer) {
        let rate_per_s = clean(rate_per_s);
        if rate_per_s != self.rate_per_s {
            self.rate_per_s = rate_per_s;
            self.restart(ctx, timer);
        }
    }

    /// Changes the load multiplier from now on, like [`OpenLoop::set_rate_per_s`].
    pub fn set_load_pct<N: Node>(&mut self, pct: u32, ctx: &mut Ctx<N>, timer: N::Timer) {
        if pct != self.load_pct {
            self.load_pct = pct;
            self.restart(ctx, timer);
        }
    }

    /// Changes the spacing from now on, like [`OpenLoop::set_rate_per_s`].
    pub fn set_spacing<N: Node>(&mut self, spacing: Spacing, ctx: &mut Ctx<N>, timer: N::Timer) {
        if spacing != self.spacing {
            self.spacing = spacing;
            self.restart(ctx, timer);
        }
    }

    /// Whether changing to this rate and load would start a source that is parked now
    /// (for callers that draw gaps with `next_gap_us` and keep their own timer).
    pub fn unparks(&self, rate_per_s: f64, load_pct: u32) -> bool {
        self.is_parked() && clean(rate_per_s) * load_pct as f64 > 0.0
    }

    /// Redraws the pending gap from now (a full gap, not the random phase of a start).
    fn restart<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) {
        self.on_timer(ctx, timer);
    }

    fn cancel<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        if let Some(t) = self.pending.take() {
            ctx.cancel_timer(t);
        }
    }
}

/// The rate of events `mean_gap_s` apart on average (a crash every so many seconds: the mean
/// time between failures), for [`OpenLoop::poisson`] and `set_rate_per_s`; 0 (none) for a
/// mean of 0 or less.
pub fn per_s_every(mean_gap_s: f64) -> f64 {
    if mean_gap_s > 0.0 {
        1.0 / mean_gap_s
    } else {
        0.0
    }
}

/// A negative or NaN rate means "no arrivals".
fn clean(rate_per_s: f64) -> f64 {
    rate_per_s.max(0.0)
}

/// Rounds a gap to whole microseconds (to nearest, so the mean is kept), at least 1.
fn whole_us(gap: f64) -> Micros {
    ((gap + 0.5) as Micros).max(1)
}

/// A gap of an interrupted Poisson process, which starts in an on period right after each
/// arrival, so its gaps are independent and hyperexponential (Kuczura, "The interrupted
/// Poisson process as an overflow process", Bell System Technical Journal 52, 1973): with
/// λ the rate while on, ω = 1/on and γ = 1/off, the gap is exponential with rate r1 with
/// probability p and with rate r2 otherwise, where r1,2 = (s ± √(s² − 4λγ)) / 2,
/// s = λ + ω + γ, and p = (λ − r2) / (r1 − r2). One draw, whatever the on/off periods.
fn on_off_gap(mean_gap: f64, on: f64, off: f64, rng: &mut Rng) -> f64 {
    let lambda = (on + off) / on / mean_gap;
    let (omega, gamma) = (1.0 / on, 1.0 / off);
    let s = lambda + omega + gamma;
    let d = libm::sqrt(s * s - 4.0 * lambda * gamma);
    let r1 = (s + d) / 2.0;
    // r1·r2 = λγ: avoids the cancellation of (s − d) / 2 when λγ is small.
    let r2 = lambda * gamma / r1;
    let p = (lambda - r2) / (r1 - r2);
    let rate = if rng.unit_open() < p { r1 } else { r2 };
    rng.exponential(1.0 / rate)
}

/// How long a closed-loop client thinks between getting a reply and sending its next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Think {
    /// Exponential with this mean: users who each act at random.
    Exponential { mean_us: Micros },
    /// Always this long: a scripted client.
    Constant { us: Micros },
}

impl Default for Think {
    /// One second on average.
    fn default() -> Think {
        Think::Exponential { mean_us: MICROS_PER_S }
    }
}

impl Think {
    pub fn exponential(mean_us: Micros) -> Think {
        Think::Exponential { mean_us }
    }
    pub fn constant(us: Micros) -> Think {
        Think::Constant { us }
    }
    /// The mean think time `Z`.
    pub fn mean_us(&self) -> Micros {
        match *self {
            Think::Exponential { mean_us } => mean_us,
            Think::Constant { us } => us,
        }
    }
    /// One think time, in whole µs and at least 1 µs (a client answered at once by a
    /// zero-latency server must still not send forever at one instant).
    pub fn draw_us(&self, rng: &mut Rng) -> Micros {
        match *self {
            Think::Exponential { mean_us } => whole_us(rng.exponential(mean_us as f64)),
            Think::Constant { us } => us.max(1),
        }
    }
}

/// The interactive response time law (Denning & Buzen, "The operational analysis of queueing
/// network models", Computing Surveys 10(3), 1978; Lazowska et al., *Quantitative System
/// Performance*, 1984, ch. 3): `clients` closed-loop clients, each waiting `response_us` (R)
/// for a reply and thinking `think_us` (Z) before the next, complete `X = N / (R + Z)`
/// requests per second, whatever the distributions. 0 when R + Z is 0.
pub fn interactive_throughput_per_s(clients: u32, response_us: f64, think_us: f64) -> f64 {
    let cycle_s = (response_us + think_us) / MICROS_PER_S as f64;
    if cycle_s > 0.0 {
        clients as f64 / cycle_s
    } else {
        0.0
    }
}

/// The same law solved for the response time: `R = N / X − Z`, in µs (the response time a
/// measured throughput implies). Infinite when X is 0.
pub fn interactive_response_us(clients: u32, throughput_per_s: f64, think_us: f64) -> f64 {
    clients as f64 / throughput_per_s * MICROS_PER_S as f64 - think_us
}

/// Keys `0..n` drawn by Zipf popularity with exponent `s`: key k is drawn with probability
/// `(k + 1)^(−s) / H(n, s)`, `H(n, s) = Σ_{i=1..n} i^(−s)` (Breslau et al., "Web caching and
/// Zipf-like distributions", INFOCOM 1999, measured s ≈ 0.6–0.8 for web proxies; s > 1 is a
/// hotter head). Drawn by inverting the cumulative table (one uniform draw, a binary search);
/// the table is shared between copies, so a thousand clients holding one cost a pointer each.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// `cdf[k]`: the probability of drawing a key ≤ k; the last is 1 up to rounding.
    cdf: Rc<[f64]>,
}

impl Zipf {
    /// `n` keys (at least 1) with exponent `s` (0: uniform).
    pub fn new(n: usize, s: f64) -> Zipf {
        let weights: Vec<f64> = (1..=n.max(1)).map(|k| 1.0 / libm::pow(k as f64, s)).collect();
        let total: f64 = weights.iter().sum();
        let cdf = weights.iter().scan(0.0, |acc, w| Some(*acc + w / total).inspect(|&a| *acc = a)).collect();
        Zipf { cdf }
    }

    pub fn keys(&self) -> usize {
        self.cdf.len()
    }

    /// The probability of drawing key `k` (0 beyond the last key).
    pub fn pmf(&self, k: usize) -> f64 {
        match k {
            0 => self.cdf[0],
            k if k < self.cdf.len() => self.cdf[k] - self.cdf[k - 1],
            _ => 0.0,
        }
    }

    /// One key: the first whose cumulative probability reaches a uniform draw from (0, 1)
    /// (the last key if rounding left the table's end a hair below the draw).
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let u = rng.unit_open();
        self.cdf.partition_point(|&p| p < u).min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Label, Link, NodeId, NodeKind, NodeView, Run, ScenarioSpec, Setup, Sim, Time};

    /// Sample mean and (population) variance of `n` gaps.
    fn moments(n: usize, mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let xs: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        (mean, var)
    }

    fn near(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want.abs()
    }

    #[test]
    fn poisson_gap_has_mean_one_over_lambda_and_variance_one_over_lambda_squared() {
        // A Poisson process's gaps are exponential(λ): mean 1/λ, variance 1/λ², CV 1
        // (Kleinrock, Queueing Systems vol. 1, ch. 2). λ = 1000/s → mean 1000 µs. n = 200k: the standard error
        // of the mean is 1/(λ√n) = 0.22% and of the variance √(8/n) = 0.63% (μ4 = 9σ⁴), so
        // ±1.5% (mean) and ±4% (variance) are > 6σ yet catch a rate off by a factor
        // (truncating instead of rounding would bias the mean by only 0.05%: see the exact
        // rounding test below for that).
        let src = OpenLoop::poisson(1000.0);
        let mut rng = Rng::new(11);
        let (mean, var) = moments(200_000, || src.next_gap_us(&mut rng).unwrap() as f64);
        assert!(near(mean, 1000.0, 0.015), "mean gap {mean} µs, 1/λ = 1000 µs");
        assert!(near(var, 1e6, 0.04), "variance {var} µs², 1/λ² = 1e6 µs²");
        let cv = libm::sqrt(var) / mean;
        assert!(near(cv, 1.0, 0.03), "CV {cv}, exponential has 1");
    }

    #[test]
    fn the_load_multiplier_scales_the_mean_gap_exactly() {
        let base = OpenLoop::poisson(500.0);
        let triple = OpenLoop::poisson(500.0).with_load_pct(300);
        assert_eq!(base.mean_gap_us(), Some(2000.0));
        assert_eq!(triple.mean_gap_us(), Some(2000.0 / 3.0), "300% is a third of the gap");
        assert_eq!(triple.effective_rate_per_s(), 1500.0);
        // Same seed, same uniform draws: each gap is the base gap over 3, up to rounding to
        // whole µs on both sides (at most 0.5 µs each, so 3 × 0.5 + 0.5 = 2 after scaling).
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..10_000 {
            let g1 = base.next_gap_us(&mut a).unwrap() as i64;
            let g3 = triple.next_gap_us(&mut b).unwrap() as i64;
            assert!((g3 * 3 - g1).abs() <= 2, "{g1} vs 3 × {g3}");
        }
        // Constant spacing is exact: 1e6 / 1500 = 666.67 → 667 µs every time.
        let metronome = OpenLoop::constant(500.0).with_load_pct(300);
        assert!((0..100).all(|_| metronome.next_gap_us(&mut a) == Some(667)));
        assert_eq!(OpenLoop::constant(250.0).next_gap_us(&mut a), Some(4000));
    }

    #[test]
    fn rate_or_load_zero_parks_the_source() {
        let mut rng = Rng::new(1);
        for src in [
            OpenLoop::poisson(0.0),
            OpenLoop::poisson(100.0).with_load_pct(0),
            OpenLoop::constant(0.0),
            OpenLoop::on_off(0.0, 1000, 1000),
            OpenLoop::poisson(-5.0),
            OpenLoop::poisson(f64::NAN),
        ] {
            assert!(src.is_parked(), "{src:?}");
            assert_eq!(src.next_gap_us(&mut rng), None, "{src:?}");
            assert_eq!(src.first_gap_us(&mut rng), None, "{src:?}");
            assert_eq!(src.mean_gap_us(), None, "{src:?}");
        }
        let parked = OpenLoop::poisson(100.0).with_load_pct(0);
        assert!(parked.unparks(100.0, 50));
        assert!(!parked.unparks(0.0, 50) && !parked.unparks(100.0, 0));
        assert!(!OpenLoop::poisson(100.0).unparks(200.0, 100), "a running source is not un-parked");
    }

    #[test]
    fn events_every_so_many_seconds_are_a_poisson_source_with_that_mean_gap() {
        // A crash every 5 s on average: rate 1/5 per s, exponential gaps of mean 5 s (the
        // same exactness as any Poisson source); a mean of 0 (or less) is no events at all.
        assert_eq!(OpenLoop::poisson(per_s_every(5.0)).mean_gap_us(), Some(5e6));
        assert_eq!(OpenLoop::poisson(per_s_every(0.25)).mean_gap_us(), Some(250_000.0));
        assert!([0.0, -1.0].iter().all(|&s| OpenLoop::poisson(per_s_every(s)).is_parked()));
    }

    #[test]
    fn gaps_are_whole_microseconds_never_zero() {
        let mut rng = Rng::new(5);
        // A rate no source can reach: every gap is the 1 µs floor.
        for src in [OpenLoop::poisson(1e12), OpenLoop::constant(1e9), OpenLoop::on_off(1e12, 10, 10)] {
            assert!((0..10_000).all(|_| src.next_gap_us(&mut rng) == Some(1)), "{src:?}");
        }
        assert_eq!(OpenLoop::poisson(f64::INFINITY).next_gap_us(&mut rng), Some(1));
        // Mean 10 µs: P(gap < 0.5 µs) = 1 − e^(−0.05) ≈ 4.9%, which would round to 0 without
        // the floor; rounding to nearest keeps the mean (truncating would lose 0.5 µs).
        let src = OpenLoop::poisson(100_000.0);
        let gaps: Vec<Micros> = (0..100_000).map(|_| src.next_gap_us(&mut rng).unwrap()).collect();
        assert_eq!(gaps.iter().min(), Some(&1));
        // P(max(1, round X) = 1) = P(X < 1.5) = 1 − e^(−0.15) = 13.9%; its standard error
        // at n = 100k is 0.11 points, so ±10% (1.4 points) is > 10σ.
        let ones = gaps.iter().filter(|&&g| g == 1).count() as f64 / 1e5;
        let p1 = 1.0 - libm::exp(-0.15);
        assert!(near(ones, p1, 0.1), "share of 1 µs gaps {ones}, theory {p1}");
        // E[round X] = Σ_{k≥1} P(X ≥ k − ½) = e^(−0.05) / (1 − e^(−0.1)) = 9.996, plus the floor's
        // P(X < ½) = 1 − e^(−0.05): 10.045. Standard error 10/√n = 0.032, so ±0.15 is 4.7σ and
        // rejects truncation, whose mean is 9.60.
        let mean = gaps.iter().sum::<u64>() as f64 / 1e5;
        let want = libm::exp(-0.05) / (1.0 - libm::exp(-0.1)) + 1.0 - libm::exp(-0.05);
        assert!((mean - want).abs() < 0.15, "mean {mean}, theory {want}");
        // Constant spacing at 1e6/3 per second: 3 µs; its random first phase is in (0, 3] → 1..=3.
        let c = OpenLoop::constant(333_333.34);
        assert!((0..1000).all(|_| (1..=3).contains(&c.first_gap_us(&mut rng).unwrap())));
    }

    #[test]
    fn on_off_keeps_the_mean_rate_and_is_burstier() {
        // Interrupted Poisson process (Fischer & Meier-Hellstern, "The Markov-modulated Poisson
        // process (MMPP) cookbook", Performance Evaluation 18, 1993): gaps have mean
        // (1 + off/on) / λ_on — here the configured 1/λ, by construction — and squared CV
        // c² = 1 + 2λω / (ω + γ)². λ = 200/s average, on 20 ms, off 30 ms → λ_on = 500/s,
        // ω = 50/s, γ = 33.3/s → c² = 1 + 2 × 500 × 50 / 83.3² = 8.2. From the hyperexponential's
        // first four moments, at n = 400k the standard error of the mean is 0.45% and of the
        // variance 1.2% (so about 1.5% on c²): ±3% on the mean and ±8% on c² are > 5σ, and a
        // Poisson source (c² = 1) or a peak rate not raised by (on + off)/on (mean ×2.5) fail.
        let src = OpenLoop::on_off(200.0, 20_000, 30_000);
        let mut rng = Rng::new(21);
        let (mean, var) = moments(400_000, || src.next_gap_us(&mut rng).unwrap() as f64);
        assert!(near(mean, 5000.0, 0.03), "mean gap {mean} µs, configured 5000 µs");
        let (l, w, g) = (500.0, 50.0, 1000.0 / 30.0);
        let c2_theory = 1.0 + 2.0 * l * w / ((w + g) * (w + g));
        assert!(near(c2_theory, 8.2, 1e-9));
        let c2 = var / (mean * mean);
        assert!(near(c2, c2_theory, 0.08), "c² {c2}, IPP theory {c2_theory}");
        // Off = 0 is plain Poisson, draw for draw.
        let (mut a, mut b) = (Rng::new(4), Rng::new(4));
        let plain = OpenLoop::poisson(200.0);
        let always_on = OpenLoop::on_off(200.0, 5000, 0);
        assert!((0..1000).all(|_| plain.next_gap_us(&mut a) == always_on.next_gap_us(&mut b)));
    }

    #[test]
    fn think_draws() {
        let mut rng = Rng::new(8);
        assert_eq!(Think::constant(250).draw_us(&mut rng), 250);
        assert_eq!(Think::constant(0).draw_us(&mut rng), 1, "1 µs floor");
        // Exponential mean 2000 µs: standard error 2000/√100k = 0.3%, so ±2% is > 6σ.
        let z = Think::exponential(2000);
        let (mean, _) = moments(100_000, || z.draw_us(&mut rng) as f64);
        assert!(near(mean, 2000.0, 0.02), "mean think {mean}");
        assert_eq!(interactive_throughput_per_s(10, 50_000.0, 200_000.0), 40.0);
        assert_eq!(interactive_response_us(10, 40.0, 200_000.0), 50_000.0);
        assert_eq!(interactive_throughput_per_s(10, 0.0, 0.0), 0.0);
    }

    // --- A tiny kernel simulation: sources and clients driven by real timers. ---

    fn build(setup: &Setup) -> Box<dyn Run> {
        Box::new(Sim::<T>::new(setup, Link::local()))
    }

    static SPEC: ScenarioSpec = ScenarioSpec::bare("parts-arrivals", build);

    #[derive(Clone, Debug)]
    enum Msg {
        Request,
        Reply,
    }
    #[derive(Clone, Debug)]
    enum Timer {
        Arrive,
        Load(u32),
        Send,
    }
    impl Label for Msg {
        fn label(&self) -> &'static str {
            match self {
                Msg::Request => "request",
                Msg::Reply => "reply",
            }
        }
    }
    impl Label for Timer {
        fn label(&self) -> &'static str {
            match self {
                Timer::Arrive => "arrive",
                Timer::Load(_) => "load",
                Timer::Send => "send",
            }
        }
    }

    #[derive(Clone, Debug)]
    enum T {
        /// An open-loop source whose load a script changes at set times.
        Source { src: OpenLoop, script: Vec<(Micros, u32)> },
        /// Replies to each request after exactly `r_us`.
        Server { r_us: Micros },
        /// A closed-loop client: sends, waits for the reply, thinks, sends again.
        Client { think: Think, sent: Time },
    }

    const SERVER: NodeId = 0;

    impl Node for T {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<T>) {
            match self {
                T::Source { src, script } => {
                    src.start(ctx, Timer::Arrive);
                    for &(at, pct) in script.iter() {
                        ctx.set_timer(at, Timer::Load(pct));
                    }
                }
                T::Client { think, .. } => {
                    let z = think.draw_us(ctx.rng());
                    ctx.count("think_total_us", z as i64);
                    ctx.set_timer(z, Timer::Send);
                }
                T::Server { .. } => {}
            }
        }
        fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<T>) {
            match (self, msg) {
                (T::Server { r_us }, Msg::Request) => ctx.send_after(*r_us, from, Msg::Reply),
                (T::Client { think, sent }, Msg::Reply) => {
                    ctx.count("completed", 1);
                    ctx.count("response_total_us", ctx.now().since(*sent) as i64);
                    let z = think.draw_us(ctx.rng());
                    ctx.count("think_total_us", z as i64);
                    ctx.set_timer(z, Timer::Send);
                }
                (node, msg) => panic!("{node:?} got {msg:?}"),
            }
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<T>) {
            match (self, timer) {
                (T::Source { src, .. }, Timer::Arrive) => {
                    src.on_timer(ctx, Timer::Arrive);
                    // Arrivals per phase of the script (0–10 s, 10–20 s, 20–40 s), and any
                    // strictly inside the parked stretch.
                    let t = ctx.now().micros();
                    ctx.count(["phase_a", "phase_b", "phase_c"][(t / MICROS_PER_S / 10).min(2) as usize], 1);
                    if t > 10 * MICROS_PER_S && t < 20 * MICROS_PER_S {
                        ctx.count("while_parked", 1);
                    }
                }
                (T::Source { src, .. }, Timer::Load(pct)) => src.set_load_pct(pct, ctx, Timer::Arrive),
                (T::Client { sent, .. }, Timer::Send) => {
                    *sent = ctx.now();
                    ctx.send(SERVER, Msg::Request);
                }
                (node, timer) => panic!("{node:?} got {timer:?}"),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "node")
        }
    }

    fn sim(seed: u64, nodes: Vec<T>) -> Sim<T> {
        let setup = Setup { spec: &SPEC, recipe: SPEC.default_recipe(seed) };
        let mut sim = Sim::new(&setup, Link::local());
        for n in nodes {
            sim.add_node(n);
        }
        sim.keep_trace(false);
        sim
    }

    #[test]
    fn a_parked_source_sets_no_timer_and_restarts_when_the_load_returns() {
        // 200/s for 10 s, parked (load 0%) for 10 s, then 300% (600/s) for 20 s. Poisson
        // counts have standard deviation √mean: 2000 ± 45 (±8% is 3.5σ) and 12000 ± 110
        // (±4% is 4.4σ); while parked the count is exactly 0.
        let script = vec![(10 * MICROS_PER_S, 0), (20 * MICROS_PER_S, 300)];
        let mut s = sim(9, vec![T::Source { src: OpenLoop::poisson(200.0), script }]);
        s.run_until(Time::from_secs(40), u64::MAX);
        let m = s.metrics();
        assert_eq!(m.counter("while_parked"), 0);
        let (a, c) = (m.counter("phase_a") as f64, m.counter("phase_c") as f64);
        assert!(near(a, 2000.0, 0.08), "{a} arrivals in 0–10 s at 200/s");
        assert!(near(c, 12_000.0, 0.04), "{c} arrivals in 20–40 s at 600/s");
        let T::Source { src, .. } = &s.nodes()[0] else { unreachable!() };
        assert_eq!(src.load_pct(), 300);
    }

    #[test]
    fn closed_loop_throughput_follows_the_interactive_response_time_law() {
        // N = 10 clients, R = 50 ms exactly (the server's fixed delay, zero network
        // latency), Z = 200 ms exponential: X = N / (R + Z) = 10 / 0.25 s = 40/s
        // (Denning & Buzen 1978). Over 2000 s each client completes ~8000 cycles; a renewal
        // count's variance is T·σ²/μ³ = 2000 × 0.04 / 0.25³ = 5120 per client, so the total
        // is 80,000 ± 226 (0.28%): ±2% is 7σ. With the measured R̄ and Z̄ the law holds up
        // to the cycles still open at the end (at most N of 80,000): ±0.5%.
        let n = 10u32;
        let mut nodes = vec![T::Server { r_us: 50 * 1000 }];
        nodes.extend((0..n).map(|_| T::Client { think: Think::exponential(200 * 1000), sent: Time::ZERO }));
        let mut s = sim(17, nodes);
        let secs = 2000;
        s.run_until(Time::from_secs(secs), u64::MAX);
        let m = s.metrics();
        let done = m.counter("completed") as f64;
        let x = done / secs as f64;
        let law = interactive_throughput_per_s(n, 50_000.0, 200_000.0);
        assert_eq!(law, 40.0);
        assert!(near(x, law, 0.02), "throughput {x}/s, N/(R+Z) = {law}/s");
        let r_bar = m.counter("response_total_us") as f64 / done;
        assert_eq!(r_bar, 50_000.0, "every response takes exactly R");
        let z_bar = m.counter("think_total_us") as f64 / (done + n as f64);
        let measured = interactive_throughput_per_s(n, r_bar, z_bar);
        assert!(near(x, measured, 0.005), "throughput {x}/s, N/(R̄+Z̄) = {measured}/s");
        let implied_r = interactive_response_us(n, x, z_bar);
        assert!((implied_r - 50_000.0).abs() < 0.01 * 250_000.0, "R implied by the law {implied_r} µs");
    }

    #[test]
    fn zipf_draws_follow_the_zipf_pmf() {
        // The pmf against the formula, then 400,000 draws over 50 keys (s = 1.1) against the
        // pmf: each key's frequency within 5 standard errors √(p(1−p)/n), and Pearson's χ²
        // over all keys (49 degrees of freedom: mean 49, sd 9.9) below 49 + 6 sd = 108.
        let (n, s) = (50, 1.1);
        let zipf = Zipf::new(n, s);
        let h: f64 = (1..=n).map(|i| libm::pow(i as f64, -s)).sum();
        for k in 0..n {
            let want = libm::pow((k + 1) as f64, -s) / h;
            assert!((zipf.pmf(k) - want).abs() < 1e-12, "pmf({k}) {} vs {want}", zipf.pmf(k));
        }
        assert_eq!((zipf.keys(), zipf.pmf(n)), (n, 0.0));
        let draws = 400_000;
        let mut counts = vec![0u32; n];
        let mut rng = Rng::new(21);
        for _ in 0..draws {
            counts[zipf.pick(&mut rng)] += 1;
        }
        let mut chi2 = 0.0;
        for (k, &c) in counts.iter().enumerate() {
            let (p, got) = (zipf.pmf(k), c as f64 / draws as f64);
            assert!((got - p).abs() < 5.0 * libm::sqrt(p * (1.0 - p) / draws as f64), "key {k}: {got:.5} vs {p:.5}");
            let expected = p * draws as f64;
            chi2 += (c as f64 - expected) * (c as f64 - expected) / expected;
        }
        assert!(chi2 < 108.0, "χ² = {chi2:.1} over {n} keys");
        // s = 0 is uniform; one key is always key 0.
        assert!((0..8).all(|k| (Zipf::new(8, 0.0).pmf(k) - 0.125).abs() < 1e-12));
        assert_eq!(Zipf::new(1, 2.0).pick(&mut rng), 0);
    }
}
