//! A circuit breaker: closed while calls mostly succeed, open (failing fast) once too many fail, half-open to probe.
//!
//! The state machine of Hystrix and resilience4j (after Nygard, *Release It!*, 2007):
//!
//! ```text
//! closed ──── the window holds ≥ min_requests calls and ≥ threshold% of them failed ───> open
//! open ────── open_us later (a timer) ──────────────────────────────────────────────────> half-open
//! half-open:  the first `probes` calls go through, the rest are refused; once every probe
//!             is back: under threshold% failed ──> closed (window empty), else ──> open again
//! ```
//!
//! The closed breaker's window counts failures and successes in two sliding-window counters
//! ([`SlidingCounter`]: this fixed window's count plus the last one's, weighted by how much of
//! it the sliding window still covers), so it judges about the last `window_us` of calls. A
//! call that timed out is a failure. Half-open judges its probes only: an answer to a call made
//! before the breaker opened changes nothing once it has.
//!
//! How a node uses it (`Timer::HalfOpen` is the node's own):
//! - before a call, `admit()`: `Pass` or `Probe` (make the call; give `probe` back with its
//!   result) or `Refuse` (fail fast). A probe that cannot be sent after all: `unprobe()`.
//! - when the call ends (answer or timeout): `record(ok, probe, ctx, Timer::HalfOpen)`, which
//!   says whether the breaker opened or closed.
//! - on `Timer::HalfOpen`: `half_open(ctx)`. To switch it off, or after a crash: `reset(ctx)`.

use crate::parts::window::SlidingCounter;
use faultline_core::{Ctx, Micros, Node, Time, TimerId, Tone, MICROS_PER_MS, MICROS_PER_S};

/// How a breaker judges. Live: `set_tuning` applies it from the next call on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The share of failed calls (%) that opens it, and that keeps it open after the probes.
    pub threshold_pct: u64,
    /// How far back the closed breaker looks.
    pub window_us: Micros,
    /// The fewest calls in the window it judges at all.
    pub min_requests: u64,
    /// How long it stays open before half-open.
    pub open_us: Micros,
    /// Trial calls let through in half-open.
    pub probes: u64,
}

impl Tuning {
    /// The settings from a scenario's parameters of these ids: `threshold_pct`, `window_ms`,
    /// `min_requests`, `open_ms` and `probes` (read again whenever one is set, they are live).
    pub fn from_params(param: impl Fn(&str) -> i64) -> Tuning {
        let ms = |id| param(id) as Micros * MICROS_PER_MS;
        Tuning {
            threshold_pct: param("threshold_pct") as u64,
            window_us: ms("window_ms"),
            min_requests: param("min_requests") as u64,
            open_us: ms("open_ms"),
            probes: param("probes") as u64,
        }
    }

    /// The most calls a second an open breaker lets through to a dependency that stays sick:
    /// one round of probes per open period. A round starts `open_us` after the last one ended
    /// (its probes took some time to fail), so rounds are more than `open_us` apart and a
    /// second holds at most ⌈1 s / open_us⌉ of them.
    pub fn probes_per_s(&self) -> u64 {
        self.probes * MICROS_PER_S.div_ceil(self.open_us.max(1))
    }
}

/// The breaker's state, as a chart shows it (`as i64`: 0 closed, 1 half-open, 2 open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Closed,
    HalfOpen,
    Open,
}

impl Phase {
    /// For a badge: "closed", "half-open" or "open".
    pub fn name(self) -> &'static str {
        ["closed", "half-open", "open"][self as usize]
    }

    /// For a badge: closed good, half-open a warning, open bad.
    pub fn tone(self) -> Tone {
        [Tone::Good, Tone::Warn, Tone::Bad][self as usize]
    }
}

/// What the breaker says to a call about to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// Half-open: this call is one of the trial calls.
    Probe,
    /// Open, or half-open with every probe out: fail fast.
    Refuse,
}

/// A change `record` made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    Opened,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    /// Until its half-open timer fires.
    Open(TimerId),
    /// Probes sent, and back: [failed, good].
    HalfOpen {
        sent: u64,
        back: [u64; 2],
    },
}

#[derive(Clone, Debug)]
pub struct Breaker {
    tuning: Tuning,
    state: State,
    /// Closed: failed and good calls, by `ok as usize`.
    window: [SlidingCounter; 2],
    /// How long the latest open period lasts (or lasted): the tuning may have changed since.
    open_for_us: Micros,
}

fn window(len_us: Micros) -> [SlidingCounter; 2] {
    [SlidingCounter::new(len_us), SlidingCounter::new(len_us)]
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub fn new(tuning: Tuning) -> Breaker {
        Breaker { window: window(tuning.window_us), tuning, state: State::Closed, open_for_us: 0 }
    }

    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Closed => Phase::Closed,
            State::HalfOpen { .. } => Phase::HalfOpen,
            State::Open(_) => Phase::Open,
        }
    }

    /// A bound on how long the breaker stays open or half-open once its dependency is healthy
    /// again: the open period under way (or a probe sent while it was sick, failing only at
    /// `call_timeout_us`), then, should the probes fail, one more open period — and the time
    /// the next probes take to come back.
    pub fn closes_within_us(&self, call_timeout_us: Micros) -> Micros {
        self.open_for_us.max(call_timeout_us) + self.tuning.open_us
    }

    /// The promise to a sick dependency, for a check: in each whole second (true time) after the
    /// window, and a second, had time to notice it — counted from `sick_since`, when it fell sick
    /// or the caller's settings last changed — it gets at most the probes an open breaker lets
    /// through and `in_flight` calls made before (a pool's worth). `calls`: its calls in `second`.
    pub fn spares(&self, sick_since: Time, in_flight: u64, second: u64, calls: i64) -> Result<(), String> {
        let noticed = sick_since.plus(self.tuning.window_us + MICROS_PER_S);
        let allowance = self.tuning.probes_per_s() + in_flight;
        if second > noticed.micros() / MICROS_PER_S && calls as u64 > allowance {
            return Err(format!(
                "the downstream got {calls} calls in second {second} while sick (allowance {allowance})"
            ));
        }
        Ok(())
    }

    /// The promise once the dependency is healthy again since `healed` (true time, or when the
    /// caller's settings last changed): closed within its own bound and a second for the probes
    /// to come back.
    pub fn recloses(&self, healed: Time, now: Time, call_timeout_us: Micros) -> Result<(), String> {
        let bound = self.closes_within_us(call_timeout_us) + MICROS_PER_S;
        if self.phase() != Phase::Closed && now.since(healed) > bound {
            return Err(format!("still not closed {:.1} s after the downstream healed", bound as f64 / 1e6));
        }
        Ok(())
    }

    /// New settings; a new window length starts the window empty. An open period under way
    /// keeps the length it began with.
    pub fn set_tuning(&mut self, tuning: Tuning) {
        if tuning.window_us != self.tuning.window_us {
            self.window = window(tuning.window_us);
        }
        self.tuning = tuning;
    }

    /// Whether a call may be made now (a half-open breaker counts it as a probe).
    pub fn admit(&mut self) -> Admit {
        match &mut self.state {
            State::Closed => Admit::Pass,
            State::HalfOpen { sent, .. } if *sent < self.tuning.probes => {
                *sent += 1;
                Admit::Probe
            }
            _ => Admit::Refuse,
        }
    }

    /// A probe admitted but never sent (its caller had no room for it): another call may be one.
    pub fn unprobe(&mut self) {
        if let State::HalfOpen { sent, .. } = &mut self.state {
            *sent = sent.saturating_sub(1);
        }
    }

    /// A call ended: `ok`, or failed (an error or its timeout). Closed, the breaker opens once
    /// the window holds enough calls and the threshold's share of them failed; half-open, once
    /// every probe is back, it closes unless that share failed, and opens again if it did.
    pub fn record<N: Node>(&mut self, ok: bool, probe: bool, ctx: &mut Ctx<N>, timer: N::Timer) -> Option<Judged> {
        let (now, t) = (ctx.now(), self.tuning);
        let failing = |bad: u64, all: u64| bad * 100 >= t.threshold_pct * all;
        let close = match &mut self.state {
            State::Closed => {
                self.window[ok as usize].hit(now, 1);
                let [bad, good] = [0, 1].map(|i| self.window[i].count(now));
                (good + bad >= t.min_requests && failing(bad, good + bad)).then_some(false)
            }
            State::HalfOpen { back, .. } if probe => {
                back[ok as usize] += 1;
                let [bad, good] = *back;
                (good + bad >= t.probes).then_some(!failing(bad, good + bad))
            }
            // Open, or a call from before it opened: half-open judges only its probes.
            _ => None,
        };
        if close? {
            ctx.note("probes succeeded: breaker closed");
            self.reset(ctx);
            return Some(Judged::Closed);
        }
        self.open_for_us = t.open_us;
        self.state = State::Open(ctx.set_timer(t.open_us, timer));
        ctx.note("breaker opened");
        Some(Judged::Opened)
    }

    /// The open period is over (its timer fired): let probes through.
    pub fn half_open<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        if let State::Open(_) = self.state {
            self.state = State::HalfOpen { sent: 0, back: [0, 0] };
            ctx.note("breaker half-open: letting probes through");
        }
    }

    /// Closed, with an empty window: the breaker was switched off, or a crash forgot it.
    pub fn reset<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        if let State::Open(half_open) = self.state {
            ctx.cancel_timer(half_open);
        }
        (self.state, self.window) = (State::Closed, window(self.tuning.window_us));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, NodeKind, NodeView, Time, MICROS_PER_MS};

    const MS: Micros = MICROS_PER_MS;

    /// Window 1 s, at least 4 calls, opens at 50% failed, open 100 ms, 2 probes.
    const TUNING: Tuning =
        Tuning { threshold_pct: 50, window_us: MICROS_PER_S, min_requests: 4, open_us: 100 * MS, probes: 2 };

    #[derive(Clone, Debug)]
    enum Msg {}

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Step(usize),
        /// A call ends: its result, whether it was a probe.
        Ended(bool, bool),
        HalfOpen,
        Tick,
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A call that ends `ok` (or not) after `ms`, if the breaker admits it.
        Call {
            ok: bool,
            ms: u64,
        },
        /// As `Call`, but the caller then finds it cannot send it.
        Unsent,
        Reset,
        Tune(Tuning),
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Log {
        Verdict(Admit),
        Change(Judged),
        Entered(Phase),
    }

    /// A node that makes calls by a script, or (`Tick`) one a millisecond against a dependency
    /// that fails every call while sick, except probes, which fail with `p_probe_fail`.
    #[derive(Clone, Debug)]
    struct Caller {
        b: Breaker,
        script: Vec<(u64, Step)>,
        log: Vec<(u64, Log)>,
        /// Ticking: calls end after `answer_ms`; the dependency is sick over `sick`; what was seen.
        answer_ms: u64,
        p_probe_fail: f64,
        sick: std::ops::Range<Time>,
        /// Half-open rounds that closed and that opened again; calls admitted each second.
        rounds: [u64; 2],
        per_s: Vec<u64>,
        closed_at: Option<Time>,
    }

    impl Caller {
        fn scripted(tuning: Tuning, script: Vec<(u64, Step)>) -> Caller {
            let b = Breaker::new(tuning);
            let (rounds, per_s, closed_at) = ([0, 0], Vec::new(), None);
            let sick = Time::ZERO..Time::ZERO;
            Caller { b, script, log: Vec::new(), answer_ms: 1, p_probe_fail: 0.0, sick, rounds, per_s, closed_at }
        }

        fn call(&mut self, ok: bool, ms: u64, ctx: &mut Ctx<Caller>) {
            let verdict = self.b.admit();
            self.log.push((ctx.now().as_ms(), Log::Verdict(verdict)));
            if verdict != Admit::Refuse {
                ctx.set_timer(ms * MS, Timer::Ended(ok, verdict == Admit::Probe));
            }
        }
    }

    impl Node for Caller {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (i, (at_ms, _)) in self.script.iter().enumerate() {
                ctx.set_timer(at_ms * MS, Timer::Step(i));
            }
            if self.script.is_empty() {
                ctx.set_timer(MS, Timer::Tick);
            }
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let now = ctx.now();
            match timer {
                Timer::Step(i) => match self.script[i].1 {
                    Step::Call { ok, ms } => self.call(ok, ms, ctx),
                    Step::Unsent => {
                        let verdict = self.b.admit();
                        self.log.push((now.as_ms(), Log::Verdict(verdict)));
                        self.b.unprobe();
                    }
                    Step::Reset => self.b.reset(ctx),
                    Step::Tune(t) => self.b.set_tuning(t),
                },
                Timer::Ended(ok, probe) => {
                    let was = self.b.phase();
                    if let Some(judged) = self.b.record(ok, probe, ctx, Timer::HalfOpen) {
                        self.log.push((now.as_ms(), Log::Change(judged)));
                        if was == Phase::HalfOpen {
                            self.rounds[(judged == Judged::Opened) as usize] += 1;
                        }
                        if judged == Judged::Closed {
                            self.closed_at.get_or_insert(now);
                        }
                    }
                }
                Timer::HalfOpen => {
                    self.b.half_open(ctx);
                    self.log.push((now.as_ms(), Log::Entered(self.b.phase())));
                }
                Timer::Tick => {
                    let verdict = self.b.admit();
                    if verdict != Admit::Refuse {
                        let second = (now.micros() / MICROS_PER_S) as usize;
                        self.per_s.resize(self.per_s.len().max(second + 1), 0);
                        self.per_s[second] += 1;
                        let probe = verdict == Admit::Probe;
                        let ok = !self.sick.contains(&now) || (probe && ctx.rng().unit_open() >= self.p_probe_fail);
                        ctx.set_timer(self.answer_ms * MS, Timer::Ended(ok, probe));
                    }
                    ctx.set_timer(MS, Timer::Tick);
                }
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "caller")
        }
    }

    /// The log of `script`, without the admissions unless `admissions`.
    fn script(tuning: Tuning, script: Vec<(u64, Step)>, admissions: bool) -> Vec<(u64, Log)> {
        let log = run_alone(Caller::scripted(tuning, script), 1, Time::from_secs(10)).log;
        log.into_iter().filter(|(_, l)| admissions || !matches!(l, Log::Verdict(_))).collect()
    }

    /// Calls at `at_ms`, `at_ms + 1`, … ending after 1 ms, ok or not by `oks`.
    fn calls(at_ms: u64, oks: &[bool]) -> Vec<(u64, Step)> {
        oks.iter().enumerate().map(|(i, &ok)| (at_ms + i as u64, Step::Call { ok, ms: 1 })).collect()
    }

    const F: bool = false;
    const T: bool = true;

    #[test]
    fn settings_from_parameters_and_a_badge_per_phase() {
        let params = [("threshold_pct", 50), ("window_ms", 1000), ("min_requests", 4), ("open_ms", 100), ("probes", 2)];
        let param = |id: &str| params.iter().find(|p| p.0 == id).expect("a breaker parameter").1;
        assert_eq!(Tuning::from_params(param), TUNING);
        let badges = [Phase::Closed, Phase::HalfOpen, Phase::Open].map(|p| (p.name(), p.tone()));
        assert_eq!(badges, [("closed", Tone::Good), ("half-open", Tone::Warn), ("open", Tone::Bad)]);
    }

    #[test]
    fn the_checks_promises_to_a_sick_and_a_healed_dependency() {
        let mut b = Breaker::new(TUNING);
        // Window 1 s, 2 probes every 100 ms: 20 probes a second, and 5 calls in flight.
        let (sick, allowance) = (Time::from_ms(2_500), TUNING.probes_per_s() + 5);
        assert_eq!(allowance, 25);
        assert!(b.spares(sick, 5, 4, 1000).is_ok(), "second 4 began before 3.5 s: not yet noticed");
        assert!(b.spares(sick, 5, 5, 25).is_ok());
        assert_eq!(
            b.spares(sick, 5, 5, 26),
            Err("the downstream got 26 calls in second 5 while sick (allowance 25)".into())
        );
        // Closed: no complaint; open (since 0, for 100 ms), within the bound 1 s + 100 ms + 1 s.
        let healed = Time::from_secs(10);
        assert!(b.recloses(healed, Time::from_secs(60), MICROS_PER_S).is_ok());
        b = run_alone(Caller::scripted(TUNING, calls(0, &[F, F, F, F])), 1, Time::from_ms(50)).b;
        assert_eq!((b.phase(), b.closes_within_us(MICROS_PER_S)), (Phase::Open, 1_100 * MS));
        assert!(b.recloses(healed, healed.plus(2_100 * MS), MICROS_PER_S).is_ok());
        let late = b.recloses(healed, healed.plus(2_100 * MS + 1), MICROS_PER_S);
        assert_eq!(late, Err("still not closed 2.1 s after the downstream healed".into()));
    }

    #[test]
    fn opens_once_the_window_holds_its_minimum_and_the_threshold_share_failed() {
        use Log::*;
        // Three failures are fewer than the 4 calls it judges at all; the fourth call (a
        // success) makes 3 of 4 failed: open. Refused while open, half-open 100 ms later.
        let mut steps = calls(10, &[F, F, F, T]);
        steps.push((50, Step::Call { ok: T, ms: 1 }));
        let log = script(TUNING, steps, true);
        #[rustfmt::skip]
        let want = [
            (10, Verdict(Admit::Pass)), (11, Verdict(Admit::Pass)), (12, Verdict(Admit::Pass)),
            (13, Verdict(Admit::Pass)), (14, Change(Judged::Opened)), (50, Verdict(Admit::Refuse)),
            (114, Entered(Phase::HalfOpen)),
        ];
        assert_eq!(log, want);
        // Exactly the threshold's share opens it; just under it does not, however many calls.
        let opened = [(14, Change(Judged::Opened)), (114, Entered(Phase::HalfOpen))];
        assert_eq!(script(TUNING, calls(10, &[T, T, F, F]), false), opened);
        assert_eq!(script(TUNING, calls(10, &[T, T, T, F, T, T, T, F, T, F, T, F]), false), []);
        // A window that forgets: failures more than two window lengths back no longer count.
        let mut steps = calls(10, &[F, F, F]);
        steps.extend(calls(2_500, &[F]));
        assert_eq!(script(TUNING, steps, false), []);
        // A new window length starts the window empty: the three failures before it are gone.
        let mut steps = calls(10, &[F, F, F]);
        steps.push((20, Step::Tune(Tuning { window_us: 2 * MICROS_PER_S, ..TUNING })));
        steps.extend(calls(30, &[F, F, F]));
        assert_eq!(script(TUNING, steps, false), []);
    }

    #[test]
    fn half_open_lets_exactly_the_probes_through_and_judges_only_them() {
        use Log::*;
        // Opened at 14 ms, with a slow call from before still out (it ends at 200 ms, failed);
        // half-open at 114: two probes, the third refused. The slow call's failure is no probe's
        // and changes nothing; one probe failed of two is the threshold's share: open again.
        let mut steps = vec![(9, Step::Call { ok: F, ms: 191 })];
        steps.extend(calls(10, &[F, F, F, F]));
        steps.extend([(150, Step::Call { ok: T, ms: 100 }), (151, Step::Call { ok: F, ms: 100 })]);
        steps.push((152, Step::Call { ok: T, ms: 1 }));
        // Half-open again at 351: a probe that is never sent gives its place to the next call;
        // both probes succeed, and it closes when the second is back.
        steps.extend([(360, Step::Unsent), (361, Step::Call { ok: T, ms: 5 }), (362, Step::Call { ok: T, ms: 5 })]);
        steps.push((363, Step::Call { ok: T, ms: 1 }));
        // Closed with an empty window: two failures after it are under the minimum.
        steps.extend(calls(400, &[F, F]));
        let log = script(TUNING, steps, true);
        #[rustfmt::skip]
        let want = [
            (9, Verdict(Admit::Pass)), (10, Verdict(Admit::Pass)), (11, Verdict(Admit::Pass)),
            (12, Verdict(Admit::Pass)), (13, Verdict(Admit::Pass)), (14, Change(Judged::Opened)),
            (114, Entered(Phase::HalfOpen)),
            (150, Verdict(Admit::Probe)), (151, Verdict(Admit::Probe)), (152, Verdict(Admit::Refuse)),
            (251, Change(Judged::Opened)), (351, Entered(Phase::HalfOpen)),
            (360, Verdict(Admit::Probe)), (361, Verdict(Admit::Probe)), (362, Verdict(Admit::Probe)),
            (363, Verdict(Admit::Refuse)), (367, Change(Judged::Closed)),
            (400, Verdict(Admit::Pass)), (401, Verdict(Admit::Pass)),
        ];
        assert_eq!(log, want);
    }

    #[test]
    fn a_reset_closes_it_and_its_half_open_timer_never_fires() {
        use Log::*;
        let mut steps = calls(10, &[F, F, F, F]);
        steps.extend([(50, Step::Reset), (60, Step::Call { ok: T, ms: 1 })]);
        let log = script(TUNING, steps, true);
        assert_eq!(log[4..], [(14, Change(Judged::Opened)), (60, Verdict(Admit::Pass))]);
    }

    /// The share of half-open rounds that close, `probes` probes each failing with probability
    /// `p`: P(failures · 100 < threshold · probes), failures Binomial(probes, p).
    fn binomial_close(probes: u64, threshold_pct: u64, p: f64) -> f64 {
        let (n, mut choose, mut sum) = (probes as i32, 1.0, 0.0);
        for k in 0..=n {
            if (k as u64) * 100 < threshold_pct * probes {
                sum += choose * libm::pow(p, k as f64) * libm::pow(1.0 - p, (n - k) as f64);
            }
            choose = choose * (n - k) as f64 / (k + 1) as f64;
        }
        sum
    }

    #[test]
    fn half_open_rounds_close_with_the_binomial_probability() {
        // A dependency that fails every ordinary call (so the breaker reopens at once after
        // closing) and each probe with probability p, independently: a round of n probes
        // closes the breaker iff fewer than the threshold's share failed. For n = 4 at 50%,
        // at most one failure: (1−p)⁴ + 4p(1−p)³ = 0.652 at p = 0.3 — a breaker that needed
        // more than the share to reopen (at most two failures) would close 0.916 of rounds.
        // Over ~10,000 rounds the standard error is 0.005: ±0.025 is 5σ.
        for (probes, threshold_pct, p, seed) in [(4, 50, 0.3, 1), (3, 50, 0.5, 2), (10, 20, 0.1, 3)] {
            let tuning = Tuning { threshold_pct, window_us: 100 * MS, min_requests: 5, open_us: 10 * MS, probes };
            let mut c = Caller::scripted(tuning, Vec::new());
            (c.p_probe_fail, c.sick) = (p, Time::ZERO..Time(u64::MAX));
            let c = run_alone(c, seed, Time::from_secs(200));
            let [closed, reopened] = c.rounds;
            let share = closed as f64 / (closed + reopened) as f64;
            let want = binomial_close(probes, threshold_pct, p);
            assert!(closed + reopened > 5_000, "{closed} + {reopened} rounds");
            assert!((share - want).abs() < 0.025, "n={probes}, {threshold_pct}%, p={p}: {share:.4} vs {want:.4}");
        }
    }

    #[test]
    fn a_sick_dependency_gets_at_most_the_probes_and_a_healed_one_is_closed_soon() {
        // A call a millisecond; the dependency fails everything (probes too) from 1 s until it
        // heals, between 5 and 6 s; calls take `answer_ms` to end (a slow failure stands for a
        // timeout). Once the window has noticed (1 s after the outage began, plus a window),
        // every second sees at most `probes_per_s` calls; once healed, the breaker closes within
        // `closes_within_us` plus the probes' own time to go out (a millisecond each) and back.
        // Some heals come as probes sent while sick are out: they fail, and it opens once more.
        for (open_ms, probes, answer_ms) in [(100, 2, 1), (300, 3, 50), (1_500, 3, 1), (500, 1, 200), (250, 10, 5)] {
            let tuning = Tuning { open_us: open_ms * MS, probes, ..TUNING };
            for heal_ms in (5_000..6_000).step_by(7) {
                let mut c = Caller::scripted(tuning, Vec::new());
                (c.answer_ms, c.p_probe_fail) = (answer_ms, 1.0);
                c.sick = Time::from_secs(1)..Time::from_ms(heal_ms);
                let c = run_alone(c, 1, Time::from_secs(10));
                for (second, &n) in c.per_s.iter().enumerate().take(5).skip(3) {
                    assert!(n <= tuning.probes_per_s(), "open {open_ms} ms: {n} calls in second {second}");
                }
                let closed = c.closed_at.expect("closed after healing").since(Time::from_ms(heal_ms));
                let bound = c.b.closes_within_us(answer_ms * MS) + (probes + 2 * answer_ms) * MS;
                assert!(closed <= bound, "open {open_ms} ms, healed at {heal_ms} ms: closed {closed} µs later");
            }
        }
    }
}
