//! A degraded dependency (up, slow, down) and fault windows: a fault and its end scheduled in one call.
//!
//! [`Health`] is what a dependency's node keeps about itself: `latency(base)` says how long
//! an answer that normally takes `base` takes now, or `None` when it is down (the scenario
//! decides whether down means a quick error or silence). A scenario flips it from a custom
//! fault's `on_control`.
//!
//! [`FaultWindow`] schedules a fault at `at` and its end at `at + len` in one call: a custom
//! fault's on/off values, a crash then a restart, a partition then a heal. Faults that carry
//! their own duration (latency spike, loss burst, slow disk, pause) are one event lasting `len`.
//! A window of length 0 schedules nothing, so "length 0: none" parameters need no `if`.
//!
//! [`Dependency`] is a dependency hit by two faults at once — an outage (down) and a slowdown
//! (so much later) — with the true time it last fell sick or healed, from which a check
//! counts how long the callers have had to notice.

use faultline_core::{Fault, Micros, Node, NodeId, Ppm, Sim, Time, Tone, MICROS_PER_MS, MICROS_PER_S};
use std::fmt;

/// How a dependency is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Up,
    /// Answers take `base × factor_pct / 100 + extra_us`.
    Slow { factor_pct: u32, extra_us: Micros },
    /// No answer.
    Down,
}

impl Health {
    /// Answers take `factor_pct`% of their usual time (300: three times as long).
    pub const fn times_pct(factor_pct: u32) -> Health {
        Health::Slow { factor_pct, extra_us: 0 }
    }

    /// Answers take `extra_us` longer than usual.
    pub const fn plus_us(extra_us: Micros) -> Health {
        Health::Slow { factor_pct: 100, extra_us }
    }

    /// How long an answer that normally takes `base_us` takes now; `None` when down. Never 0
    /// for a nonzero base (a slow-down below 1 µs must not make the answer instant).
    pub fn latency(self, base_us: Micros) -> Option<Micros> {
        match self {
            Health::Up => Some(base_us),
            Health::Slow { factor_pct, extra_us } => {
                let scaled = (base_us as u128 * factor_pct as u128 / 100).min(u64::MAX as u128) as u64;
                let scaled = if base_us > 0 { scaled.max(1) } else { 0 };
                Some(scaled.saturating_add(extra_us))
            }
            Health::Down => None,
        }
    }

    pub fn is_up(self) -> bool {
        self == Health::Up
    }

    /// For a badge: up good, slow a warning, down bad.
    pub fn tone(self) -> Tone {
        match self {
            Health::Up => Tone::Good,
            Health::Slow { .. } => Tone::Warn,
            Health::Down => Tone::Bad,
        }
    }
}

/// A dependency under an outage and a slowdown, each switched on and off by a fault of its
/// own: down while the outage lasts, whatever the slowdown; slow while only the slowdown does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dependency {
    down: bool,
    slow: Health,
    changed: Time,
}

impl Dependency {
    pub fn health(&self) -> Health {
        if self.down {
            Health::Down
        } else {
            self.slow
        }
    }

    /// When (true time) it last turned from up to sick or back; a change between slow and
    /// down is not one.
    pub fn changed(&self) -> Time {
        self.changed
    }

    /// The outage begins (`true`) or ends, at true time `now`.
    pub fn set_down(&mut self, down: bool, now: Time) {
        self.set(down, self.slow, now);
    }

    /// Answers take `extra_us` longer from true time `now` on (0: the slowdown is over).
    pub fn set_extra_us(&mut self, extra_us: Micros, now: Time) {
        self.set(self.down, if extra_us > 0 { Health::plus_us(extra_us) } else { Health::Up }, now);
    }

    fn set(&mut self, down: bool, slow: Health, now: Time) {
        let was_up = self.health().is_up();
        (self.down, self.slow) = (down, slow);
        if self.health().is_up() != was_up {
            self.changed = now;
        }
    }

    /// How a call that normally takes `base_us` ends: `(false, fail_fast_us)` when down (a quick
    /// error), else after its (slowed) time, `ok` unless it `fails` anyway.
    pub fn answer(&self, base_us: Micros, fails: bool, fail_fast_us: Micros) -> (bool, Micros) {
        match self.health().latency(base_us) {
            None => (false, fail_fast_us),
            Some(after) => (!fails, after),
        }
    }
}

impl fmt::Display for Health {
    /// For a badge: "up", "slow ×3", "slow +3000 ms", "slow ×1.5 +20 ms", "down".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Health::Up => write!(f, "up"),
            Health::Down => write!(f, "down"),
            Health::Slow { factor_pct, extra_us } => {
                write!(f, "slow")?;
                if factor_pct != 100 {
                    match factor_pct % 100 {
                        0 => write!(f, " ×{}", factor_pct / 100)?,
                        r if r % 10 == 0 => write!(f, " ×{}.{}", factor_pct / 100, r / 10)?,
                        r => write!(f, " ×{}.{r:02}", factor_pct / 100)?,
                    }
                }
                if extra_us > 0 {
                    write!(f, " +{} ms", extra_us / MICROS_PER_MS)?;
                }
                Ok(())
            }
        }
    }
}

/// A stretch of simulated time, `[at, at + len)`, during which something is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    pub at: Time,
    pub len_us: Micros,
}

impl FaultWindow {
    pub const fn new(at: Time, len_us: Micros) -> FaultWindow {
        FaultWindow { at, len_us }
    }

    /// From parameters in seconds ("outage starts", "outage length"); negatives count as 0.
    pub fn secs(at_s: i64, len_s: i64) -> FaultWindow {
        FaultWindow::new(Time::from_secs(at_s.max(0) as u64), (len_s.max(0) as u64).saturating_mul(MICROS_PER_S))
    }

    /// From parameters in milliseconds; negatives count as 0.
    pub fn ms(at_ms: i64, len_ms: i64) -> FaultWindow {
        FaultWindow::new(Time::from_ms(at_ms.max(0) as u64), (len_ms.max(0) as u64).saturating_mul(MICROS_PER_MS))
    }

    /// When it ends (the "off" event's time).
    pub fn end(&self) -> Time {
        self.at.plus(self.len_us)
    }

    /// Whether `t` is inside: from `at`, up to but not including `end`.
    pub fn contains(&self, t: Time) -> bool {
        self.at <= t && t < self.end()
    }

    pub fn is_empty(&self) -> bool {
        self.len_us == 0
    }

    /// `on` at `at`, `off` at the end; nothing if the window is empty.
    pub fn schedule<N: Node>(&self, sim: &mut Sim<N>, on: Fault, off: Fault) {
        if !self.is_empty() {
            sim.schedule(self.at, on);
            sim.schedule(self.end(), off);
        }
    }

    /// The scenario's own fault `id` with value `on`, then with `off` (`node` for faults
    /// that target a node; `None` for global ones).
    pub fn custom<N: Node>(&self, sim: &mut Sim<N>, id: &str, node: Option<NodeId>, on: i64, off: i64) {
        let fault = |value| Fault::Custom { id: id.into(), node, value };
        self.schedule(sim, fault(on), fault(off));
    }

    /// `node` crashes (losing its volatile state), then restarts.
    pub fn crash<N: Node>(&self, sim: &mut Sim<N>, node: NodeId) {
        self.schedule(sim, Fault::Crash { node }, Fault::Restart { node });
    }

    /// Cuts `a` from `b` (`None`: from everyone else), then heals. The heal removes every
    /// partition in force, not only this one.
    pub fn partition<N: Node>(&self, sim: &mut Sim<N>, a: Vec<NodeId>, b: Option<Vec<NodeId>>) {
        self.schedule(sim, Fault::Partition { a, b, one_way: false }, Fault::Heal);
    }

    /// Cuts `node` off from every other node, then heals (every partition, as above).
    pub fn isolate<N: Node>(&self, sim: &mut Sim<N>, node: NodeId) {
        self.schedule(sim, Fault::Isolate { node, one_way: false }, Fault::Heal);
    }

    /// `node`'s clock runs `ppm` fast (negative: slow), then at the true rate again (keeping
    /// the offset it gained).
    pub fn clock_drift<N: Node>(&self, sim: &mut Sim<N>, node: NodeId, ppm: i32) {
        self.schedule(sim, Fault::ClockDrift { node, ppm }, Fault::ClockDrift { node, ppm: 0 });
    }

    /// Every message sent in the window takes `extra_us` longer.
    pub fn latency_spike<N: Node>(&self, sim: &mut Sim<N>, extra_us: Micros) {
        self.once(sim, Fault::LatencySpike { extra: extra_us, dur: self.len_us });
    }

    /// This share of the messages sent in the window is lost.
    pub fn loss_burst<N: Node>(&self, sim: &mut Sim<N>, loss: Ppm) {
        self.once(sim, Fault::LossBurst { loss, dur: self.len_us });
    }

    /// `node`'s disk operations take `factor` times longer in the window.
    pub fn slow_disk<N: Node>(&self, sim: &mut Sim<N>, node: NodeId, factor: u32) {
        self.once(sim, Fault::SlowDisk { node, factor, dur: self.len_us });
    }

    /// `node` stops the world for the window (a long GC pause); its events wait.
    pub fn pause<N: Node>(&self, sim: &mut Sim<N>, node: NodeId) {
        self.once(sim, Fault::Pause { node, dur: self.len_us });
    }

    fn once<N: Node>(&self, sim: &mut Sim<N>, fault: Fault) {
        if !self.is_empty() {
            sim.schedule(self.at, fault);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Control, Ctx, FaultSpec, Label, Link, NodeKind, NodeView, Recipe, Run, ScenarioSpec, Setup};

    #[test]
    fn health_maps_a_base_latency() {
        let base = 10 * MICROS_PER_MS;
        assert_eq!(Health::Up.latency(base), Some(base));
        assert_eq!(Health::times_pct(300).latency(base), Some(30 * MICROS_PER_MS));
        assert_eq!(Health::times_pct(150).latency(3), Some(4), "rounded down");
        assert_eq!(Health::plus_us(3 * MICROS_PER_S).latency(base), Some(3_010 * MICROS_PER_MS));
        assert_eq!(Health::Slow { factor_pct: 200, extra_us: 5 }.latency(base), Some(20_005));
        assert_eq!(Health::Down.latency(base), None);
        assert_eq!(Health::times_pct(1).latency(10), Some(1), "never instant");
        assert_eq!(Health::times_pct(1).latency(0), Some(0));
        assert_eq!(Health::times_pct(300).latency(u64::MAX), Some(u64::MAX), "saturates");
        assert!(Health::default().is_up() && !Health::plus_us(0).is_up());
        let shown = [
            Health::Up,
            Health::times_pct(300),
            Health::times_pct(150),
            Health::times_pct(125),
            Health::plus_us(3_000_000),
            Health::Slow { factor_pct: 200, extra_us: 20_000 },
            Health::Down,
        ]
        .map(|h| h.to_string());
        assert_eq!(shown, ["up", "slow ×3", "slow ×1.5", "slow ×1.25", "slow +3000 ms", "slow ×2 +20 ms", "down"]);
    }

    #[test]
    fn a_dependency_is_down_over_slow_and_notes_when_it_fell_sick_or_healed() {
        let (mut d, t) = (Dependency::default(), Time::from_secs);
        assert_eq!((d.health(), d.health().tone(), d.changed()), (Health::Up, Tone::Good, Time::ZERO));
        d.set_extra_us(3 * MICROS_PER_S, t(2));
        assert_eq!((d.health(), d.health().tone(), d.changed()), (Health::plus_us(3 * MICROS_PER_S), Tone::Warn, t(2)));
        d.set_down(true, t(3));
        assert_eq!((d.health(), d.health().tone(), d.changed()), (Health::Down, Tone::Bad, t(2)), "sick already");
        assert_eq!(d.answer(20_000, false, 5_000), (false, 5_000), "down: a quick error");
        d.set_down(false, t(4));
        assert_eq!((d.answer(20_000, false, 5_000), d.changed()), ((true, 3_020_000), t(2)), "still slow");
        assert_eq!(d.answer(20_000, true, 5_000), (false, 3_020_000), "a background error, slowed too");
        d.set_extra_us(0, t(5));
        assert_eq!((d.health(), d.changed(), d.answer(20_000, false, 5_000)), (Health::Up, t(5), (true, 20_000)));
    }

    #[test]
    fn windows_from_parameters() {
        let w = FaultWindow::secs(20, 10);
        assert_eq!((w.at, w.end()), (Time::from_secs(20), Time::from_secs(30)));
        assert!(w.contains(Time::from_secs(20)) && w.contains(Time(30 * MICROS_PER_S - 1)) && !w.contains(w.end()));
        assert!(!w.contains(Time(20 * MICROS_PER_S - 1)));
        assert_eq!(FaultWindow::ms(-5, 1500), FaultWindow::new(Time::ZERO, 1_500_000));
        assert!(FaultWindow::secs(3, -1).is_empty() && !FaultWindow::secs(3, -1).contains(Time::from_secs(3)));
    }

    // A tiny simulation: node 0 pings node 1 every millisecond over a 1 ms link, and both
    // write down what happens to them, in true time.
    static SPEC: ScenarioSpec = ScenarioSpec {
        faults: &[FaultSpec::global("sick", "", "").value("", 0..=1, 1)],
        ..ScenarioSpec::bare("degraded-test", |setup| Box::new(sim(setup)))
    };

    fn sim(setup: &Setup) -> Sim<Probe> {
        let mut sim = Sim::new(setup, Link::constant(MICROS_PER_MS));
        sim.add_node(Probe::default());
        sim.add_node(Probe::default());
        sim
    }

    #[derive(Clone, Debug, Default)]
    struct Probe {
        heard: Vec<(Time, i64)>,
        starts: Vec<Time>,
        crashes: Vec<Time>,
        got: Vec<Time>,
    }

    #[derive(Clone, Debug)]
    struct Ping;
    impl Label for Ping {
        fn label(&self) -> &'static str {
            "ping"
        }
    }

    impl Node for Probe {
        type Msg = Ping;
        type Timer = Ping;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.starts.push(ctx.truth());
            if ctx.me() == 0 {
                ctx.set_timer(MICROS_PER_MS, Ping);
            }
        }
        fn on_message(&mut self, _from: NodeId, _msg: Ping, ctx: &mut Ctx<Self>) {
            self.got.push(ctx.truth());
        }
        fn on_timer(&mut self, _timer: Ping, ctx: &mut Ctx<Self>) {
            ctx.send(1, Ping);
            ctx.set_timer(MICROS_PER_MS, Ping);
        }
        fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
            self.crashes.push(ctx.truth());
        }
        fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
            if let Control::Custom { value, .. } = c {
                self.heard.push((ctx.truth(), value));
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "probe")
        }
    }

    /// Runs 30 ms with `faults` applied to the fresh simulation; returns its nodes.
    fn run(faults: impl FnOnce(&mut Sim<Probe>)) -> Vec<Probe> {
        let mut s = sim(&Setup { spec: &SPEC, recipe: Recipe::new("degraded-test", "only", 1) });
        faults(&mut s);
        s.run_until(Time::from_ms(30), u64::MAX);
        s.nodes().to_vec()
    }

    /// The deliveries node 1 should get: one a millisecond from 2 ms on (sent from 1 ms, 1 ms
    /// on the wire), minus those falling in `lost` (faults act first at their instant).
    fn pings_outside(lost: FaultWindow) -> Vec<Time> {
        (2..=30).map(Time::from_ms).filter(|&t| !lost.contains(t)).collect()
    }

    #[test]
    fn a_custom_window_is_on_at_its_start_and_off_at_its_end() {
        let w = FaultWindow::ms(5, 3);
        let nodes = run(|s| w.custom(s, "sick", None, 1, 0));
        for n in &nodes {
            assert_eq!(n.heard, [(Time::from_ms(5), 1), (Time::from_ms(8), 0)]);
        }
        assert!(run(|s| FaultWindow::ms(5, 0).custom(s, "sick", None, 1, 0)).iter().all(|n| n.heard.is_empty()));
    }

    #[test]
    fn a_crash_window_crashes_then_restarts() {
        let w = FaultWindow::ms(10, 5);
        let nodes = run(|s| w.crash(s, 1));
        assert_eq!(nodes[1].crashes, [Time::from_ms(10)]);
        assert_eq!(nodes[1].starts, [Time::ZERO, Time::from_ms(15)]);
        assert_eq!(nodes[1].got, pings_outside(w), "nothing delivered while down");
        assert_eq!((nodes[0].crashes.len(), nodes[0].starts.len()), (0, 1));
    }

    #[test]
    fn a_partition_window_cuts_then_heals() {
        let w = FaultWindow::ms(10, 5);
        let nodes = run(|s| w.partition(s, vec![0], Some(vec![1])));
        assert_eq!(nodes[1].got, pings_outside(w));
        assert_eq!(nodes[1].starts, [Time::ZERO], "no restart");
        let nodes = run(|s| FaultWindow::ms(20, 3).isolate(s, 0));
        assert_eq!(nodes[1].got, pings_outside(FaultWindow::ms(20, 3)));
    }

    #[test]
    fn a_pause_window_holds_events_until_its_end() {
        // Node 1 paused for [10, 15): what reached it meanwhile is handled at 15.
        let w = FaultWindow::ms(10, 5);
        let nodes = run(|s| w.pause(s, 1));
        let want: Vec<Time> = (2..=30).map(Time::from_ms).map(|t| if w.contains(t) { w.end() } else { t }).collect();
        assert_eq!(nodes[1].got, want);
    }
}
