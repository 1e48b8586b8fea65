//! Health checks: a balancer over N instances, some flaky (error bursts) or gray (slow, yet fine on the
//! health endpoint), ejecting them by active probes or by real traffic's errors; eject too many and the rest
//! overload. Each instance is a station (workers, bounded queue); the balancer goes round-robin over those in rotation.

use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::ejection::Rotation;
use crate::parts::judge::Judge;
use crate::parts::station::{Full, Service as ServiceTime, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::{
    arrivals::OpenLoop,
    balance::{Chooser, Rule},
};
use faultline_core::*;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "health-checks",
        title: "Health checks and outlier ejection",
        category: "Resilience",
        seeds: &["S1#9", "S2#7", "S3#91"],
        summary: "1,000 req/s over 10 instances: one flaky, one gray (50× slow, health endpoint fine), and at 30 s \
                  a blip on six for a second. Active checks miss the gray one; ejecting on errors catches it, then \
                  ejects the six and the rest overload; a cap on ejections and hysteresis keep enough in rotation.",
        note: Note {
            what_can_go_wrong: "A probe asks the wrong question: a gray instance (slow disk, stuck pool) answers \
                /healthz while real requests time out (Huang et al., 'Gray Failure', HotOS 2017). Judging by real \
                traffic catches it, but a correlated blip makes many look sick at once, and ejecting them all \
                overloads the rest. Model: Poisson requests, round-robin over instances in rotation (503 if none), \
                each with workers (exponential) and a queue of 32 (503 if full); a 504 after the timeout. Flaky: 1.5 s \
                bursts (exponential gaps, mean 5 s) failing requests and probes at the burst rate; gray: 50× slower \
                requests, fine probes (they skip the workers); the blip fails requests only. A probe unanswered by \
                the next fails. Capacity is nominal: workers / service time × instances in rotation.",
            what_you_sacrifice: "Speed for stability: past the cap, sick instances serve errors in a wide blip; \
                hysteresis keeps a healed instance out longer, and growing ejection times an unlucky one.",
            at_10x: "Many balancers judge each from its own slice of traffic, so verdicts disagree and probes cost \
                N × M per interval; correlated failures (a bad deploy, a zone) are the norm, so caps matter.",
            resembles: "Envoy's outlier detection (consecutive_5xx, base_ejection_time × ejections, \
                max_ejection_percent) and health checks (unhealthy/healthy_threshold); Kubernetes readiness probes \
                (failureThreshold, successThreshold); AWS ELB health checks (unhealthy/healthy threshold counts).",
            try_this: &[
                "Play `active-checks`: the gray instance passes every probe and stays in rotation, failing about a \
                 tenth of all requests, and `errors-bounded` fails.",
                "Play `outlier-ejection`: the gray instance is ejected within a second, but at 30 s the blip ejects \
                 all six instances it touches and `rest-never-overload` fails, naming them.",
                "Play `guarded-ejection`: the cap keeps at least seven in rotation through the blip, the gray \
                 instance is ejected again each time it is readmitted, and both checks hold.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("instances", "Instances", "", 3..=50, 10, "Instances behind the balancer."),
        ParamSpec::setup("rps", "Request rate", "req/s", 1..=5000, 1000, "Poisson requests at the balancer."),
        ParamSpec::setup("workers", "Workers per instance", "", 1..=64, 4, "Requests an instance serves at once."),
        ParamSpec::setup("service_ms", "Service time", "ms", 1..=1000, 20, "Mean (exponential) when healthy."),
        ParamSpec::setup("timeout_ms", "Request timeout", "ms", 10..=10_000, 200, "Slower answers are 504s.").step(10),
        ParamSpec::setup("flaky", "Flaky instances", "", 0..=10, 1, "The first ones; they have error bursts."),
        ParamSpec::setup("gray", "Gray instances", "", 0..=10, 1, "The next ones: 50× slow, probes fine."),
        ParamSpec::setup("burst_error_pct", "Burst error rate", "%", 0..=100, 80, "Share failed in a burst."),
        ParamSpec::setup("blip_instances", "Blip width", "", 0..=50, 6, "Instances (the last ones) the blip hits."),
        ParamSpec::setup("blip_at", "Blip starts", "s", 0..=3600, 30, "Scheduled fault: a shared dependency errs."),
        ParamSpec::setup("blip_len", "Blip length", "s", 0..=60, 1, "How long the blip lasts (0: none)."),
        ParamSpec::setup("eject_after", "Errors to eject", "", 1..=100, 5, "Consecutive 5xx/504 that eject (outlier)."),
        ParamSpec::setup("eject_s", "Ejection time", "s", 1..=600, 10, "Time out; under guarded × ejections so far."),
        ParamSpec::setup("probe_ms", "Probe interval", "ms", 100..=60_000, 1000, "Active probes.").step(100),
        ParamSpec::setup("unhealthy_probes", "Failed probes to eject", "", 1..=10, 3, "Active checks: in a row."),
        ParamSpec::setup("healthy_probes", "Passed probes to readmit", "", 1..=10, 3, "Guarded: in a row, once out."),
        ParamSpec::setup("max_eject_pct", "Max ejected", "%", 0..=100, 30, "Guarded: most instances out at once."),
    ],
    strategies: &[
        StrategySpec::naive("none", "None", "Every instance stays in rotation, sick or not."),
        StrategySpec::naive("active-checks", "Active checks", "Eject after failed probes in a row, readmit on a pass."),
        StrategySpec::naive("outlier-ejection", "Outlier ejection", "Eject after errors in a row, for a fixed time."),
        StrategySpec::fixed("guarded-ejection", "Ejection + hysteresis + cap", "Growing ejection times, readmit after \
            passed probes, never more than the max share out."),
    ],
    faults: &[
        FaultSpec::node("blip", "Dependency blip", "Its real requests fail (1) or not (0).").value("", 0..=1, 1),
        FaultSpec::node("gray", "Gray slowdown", "Requests take this many times as long.").value("×", 1..=1000, 50),
    ],
    checks: &[
        CheckSpec::new("rest-never-overload", "The rest never overload", "Those in rotation can serve the load."),
        CheckSpec::new("errors-bounded", "Errors served within a bound", "At most 5% of the last minute's answers."),
    ],
    metrics: &[
        MetricSpec::new("errors_pct", "Errors served", "%", Measure::Percent { num: "errors", rest: "ok" }),
        MetricSpec::new("ejected", "Ejected instances", "instances", Measure::Gauge("ejected")),
        MetricSpec::new("false_ejections", "False ejections", "ejections", Measure::Count("false_ejections")),
        MetricSpec::new("flaps", "Flaps", "flaps", Measure::Count("flaps")),
    ],
    layout: Layout::Tiers,
    default_until: 60 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { None, Active, Outlier, Guarded });

const BALANCER: NodeId = 0;
const QUEUE: usize = 32;
const GRAY_FACTOR: u32 = 50;
const BURST_US: Micros = 1_500_000;
const BURST_GAP_MEAN_US: f64 = 5e6;
/// A re-ejection this soon after a readmission is a flap.
const FLAP_US: Micros = 30 * MICROS_PER_S;
/// The errors check: the share of the last minute's answers (a 5xx-rate alert's usual shortest window), from 10 s
/// on (before, a gray instance's first timeouts are a large share of few answers). While the cap is full of the
/// blip's instances, a gray one serves its timeouts (a tenth of the traffic for 10 s: 1.7% of a minute).
const ERROR_BOUND_PCT: u64 = 5;
const ERROR_WINDOW_US: Micros = 60 * MICROS_PER_S;
const JUDGE_FROM_S: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Healthy,
    Flaky,
    Gray,
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(CallId),
    Reply(CallId, bool),
    Probe,
    ProbeReply(bool),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Timeout(CallId),
    Probe,
    Done(Slot),
    Burst,
}

#[derive(Clone, Debug, Holds)]
pub enum Hc {
    Balancer(Balancer),
    Instance(Instance),
}

#[derive(Clone, Debug)]
pub struct Balancer {
    strategy: Strategy,
    arrivals: OpenLoop,
    calls: Calls<usize>,
    rotation: Rotation,
    chooser: Chooser,
    /// The answers served (errors bad), for the errors check: the share now, not since the start.
    served: Judge,
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: usize,
    kind: Kind,
    station: Station<(NodeId, CallId)>,
    in_burst: bool,
    blip: bool,
}

fn kind(i: usize, flaky: i64, gray: i64) -> Kind {
    [Kind::Healthy, Kind::Gray, Kind::Flaky][(i < (flaky + gray) as usize) as usize + (i < flaky as usize) as usize]
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Hc> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 800 }));
    let n = setup.param("instances") as usize;
    let kind_of = |i: usize| kind(i, setup.param("flaky"), setup.param("gray"));
    let (strategy, arrivals) = (Strategy::from_id(setup.strategy()), OpenLoop::poisson(setup.param("rps") as f64));
    let calls = Calls::new("latency_us").counting_late("late_answers");
    let (rotation, chooser, served) =
        (Rotation::new(n), Chooser::new(Rule::RoundRobin), Judge::new(ERROR_WINDOW_US, 100, 100));
    assert_eq!(sim.add_node(Hc::Balancer(Balancer { strategy, arrivals, calls, rotation, chooser, served })), BALANCER);
    for index in 0..n {
        let service = ServiceTime::exponential_ms(setup.param("service_ms") as u64);
        let mut station = Station::new(setup.param("workers") as u32, service).bounded(QUEUE, Full::Reject);
        station.set_slowdown_pct(if kind_of(index) == Kind::Gray { GRAY_FACTOR * 100 } else { 100 });
        sim.add_node(Hc::Instance(Instance { index, kind: kind_of(index), station, in_burst: false, blip: false }));
    }
    let blip = FaultWindow::secs(setup.param("blip_at"), setup.param("blip_len"));
    for i in n.saturating_sub(setup.param("blip_instances") as usize)..n {
        blip.custom(&mut sim, "blip", Some(1 + i as NodeId), 1, 0);
    }
    // Both checks read the balancer, so they are judged after its events only.
    sim.check("rest-never-overload", |w| {
        let (b, rps) = (w.node::<Balancer>(BALANCER), w.param("rps"));
        let left = b.rotation.in_rotation().len() as i64;
        let can = left * w.param("workers") * 1000 / w.param("service_ms");
        let why = || {
            format!("instances {:?} ejected: the {left} left serve at most {can} req/s of {rps}", b.rotation.ejected())
        };
        (w.touched != Some(BALANCER) || can >= rps).then_some(()).ok_or_else(why)
    });
    sim.check("errors-bounded", |w| {
        let v = w.node::<Balancer>(BALANCER).served.verdict(w.now, Time::ZERO);
        if w.touched != Some(BALANCER) || w.now < Time::from_secs(JUDGE_FROM_S) || !v.fails(ERROR_BOUND_PCT) {
            return Ok(());
        }
        let sick: Vec<i64> = (0..(w.param("flaky") + w.param("gray")).min(w.param("instances"))).collect();
        Err(format!("{} were errors (bound {ERROR_BOUND_PCT}%); sick instances: {sick:?}", v.describe(ERROR_WINDOW_US)))
    });
    Box::new(sim)
}

impl Node for Hc {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Hc::Balancer(b) => {
                b.arrivals.start(ctx, Timer::Arrive);
                ctx.set_timer(ctx.param("probe_ms") as Micros * MICROS_PER_MS, Timer::Probe);
            }
            Hc::Instance(i) if i.kind == Kind::Flaky => i.burst(true, ctx),
            Hc::Instance(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Hc::Balancer(b), Msg::Reply(id, ok)) => b.answered(id, true, ok, ctx),
            (Hc::Balancer(b), Msg::ProbeReply(ok)) => b.probed(from as usize - 1, ok, ctx),
            (Hc::Instance(i), Msg::Request(id)) => i.request(from, id, ctx),
            // The shallow health endpoint skips the workers: only a process-wide burst fails it.
            (Hc::Instance(i), Msg::Probe) => {
                let ok = !i.fails(ctx);
                ctx.send(from, Msg::ProbeReply(ok))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Hc::Balancer(b), Timer::Arrive) => b.arrive(ctx),
            (Hc::Balancer(b), Timer::Timeout(id)) => b.answered(id, false, false, ctx),
            (Hc::Balancer(b), Timer::Probe) => b.probe(ctx),
            (Hc::Instance(i), Timer::Done(slot)) => i
                .station
                .done(slot, ctx, Timer::Done)
                .into_iter()
                .for_each(|f| ctx.send(f.job.0, Msg::Reply(f.job.1, true))),
            (Hc::Instance(i), Timer::Burst) => i.burst(false, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Hc::Balancer(b) => drop(b.calls.clear(ctx)),
            Hc::Instance(i) => drop(i.station.crash(ctx)),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Hc::Balancer(b), Control::Strategy(id)) => b.switch(Strategy::from_id(id), ctx),
            (Hc::Instance(i), Control::Custom { id: "blip", value }) => i.blip = value == 1,
            (Hc::Instance(i), Control::Custom { id: "gray", value }) => i.station.set_slowdown_pct(value as u32 * 100),
            // Every parameter is a setup one (read where used); the balancer takes no fault, an instance no strategy.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Hc::Balancer(b) => {
                let v = NodeView::new(NodeKind::LoadBalancer, 0, "balancer");
                let v = v.gauge("ejected", b.rotation.ejected().len() as i64, b.rotation.len() as i64);
                // The instances cannot know they are out of rotation: the balancer says so at each.
                b.rotation.ejected().into_iter().fold(v, |v, i| v.mark(1 + i as NodeId, "ejected", Tone::Bad))
            }
            Hc::Instance(i) => {
                let kinds = [("healthy", Tone::Good), ("flaky", Tone::Warn), ("gray", Tone::Warn)];
                let (text, tone) = if i.in_burst || i.blip { ("erring", Tone::Bad) } else { kinds[i.kind as usize] };
                NodeView::new(NodeKind::Service, 1, numbered("instance", i.index as u64))
                    .gauge("load", i.station.held() as i64, (i.station.servers() as usize + QUEUE) as i64)
                    .badge(text, tone)
            }
        }
    }
}

impl Instance {
    /// A flaky instance alternates an exponential gap and a fixed burst; it starts (and restarts) in a gap.
    fn burst(&mut self, starting: bool, ctx: &mut Ctx<Hc>) {
        let gap = (ctx.rng().exponential(BURST_GAP_MEAN_US) as Micros).max(1);
        self.in_burst = !starting && !self.in_burst;
        ctx.set_timer(if self.in_burst { BURST_US } else { gap }, Timer::Burst);
    }

    fn fails(&self, ctx: &mut Ctx<Hc>) -> bool {
        self.in_burst && ctx.rng().below(100) < ctx.param("burst_error_pct") as u64
    }

    /// A burst or a blip fails a request at once (a 500); a full queue refuses it (503).
    fn request(&mut self, from: NodeId, id: CallId, ctx: &mut Ctx<Hc>) {
        if self.fails(ctx) || self.blip || !self.station.offer((from, id), ctx, Timer::Done).admitted() {
            ctx.send(from, Msg::Reply(id, false));
        }
    }
}

impl Balancer {
    fn arrive(&mut self, ctx: &mut Ctx<Hc>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        // No instance in rotation: the balancer itself answers 503 ("no healthy upstream").
        let pick = self.chooser.pick(&self.rotation.in_rotation(), |_| 0, ctx.rng());
        let Some(i) = pick else { return self.served(false, ctx) };
        let id = self.calls.start(ctx, i, ctx.param("timeout_ms") as Micros * MICROS_PER_MS, Timer::Timeout);
        ctx.send(1 + i as NodeId, Msg::Request(id));
    }

    /// An answer (`replied`), 200 or 5xx, or a timeout: passive strategies judge the instance by it.
    fn answered(&mut self, id: CallId, replied: bool, ok: bool, ctx: &mut Ctx<Hc>) {
        let Some(i) = (if replied { self.calls.reply(id, ctx) } else { self.calls.timeout(id) }) else { return };
        self.served(ok, ctx);
        let errors_in_row = self.rotation.answered(i, ok);
        if !self.rotation.is_ejected(i) && errors_in_row >= ctx.param("eject_after") as u32 && self.may_eject(ctx) {
            self.eject(i, ctx);
        }
    }

    /// An answer served, counted and judged (true time; latencies are not judged here).
    fn served(&mut self, ok: bool, ctx: &mut Ctx<Hc>) {
        ctx.count(if ok { "ok" } else { "errors" }, 1);
        self.served.record(ctx.truth(), !ok, 0);
    }

    /// A live switch; to `none`, the ejected are back in rotation at once (the others readmit by their own rule).
    fn switch(&mut self, to: Strategy, ctx: &mut Ctx<Hc>) {
        self.strategy = to;
        let back = if to == Strategy::None { self.rotation.ejected() } else { vec![] };
        back.into_iter().for_each(|i| self.readmit(i, ctx));
    }

    /// Passive strategies only: outlier ejection without limit, guarded within the cap.
    fn may_eject(&self, ctx: &mut Ctx<Hc>) -> bool {
        let within_cap = self.rotation.may_eject(ctx.param("max_eject_pct") as u64);
        self.strategy == Strategy::Outlier || self.strategy == Strategy::Guarded && within_cap
    }

    fn eject(&mut self, i: usize, ctx: &mut Ctx<Hc>) {
        // Envoy's ejection time is the base times the ejections so far: a repeat offender stays out longer.
        let times = if self.strategy == Strategy::Guarded { self.rotation.ejections(i) as u64 + 1 } else { 1 };
        let flap = self.rotation.eject(i, ctx.truth(), ctx.param("eject_s") as u64 * MICROS_PER_S * times, FLAP_US);
        ctx.count("false_ejections", (kind(i, ctx.param("flaky"), ctx.param("gray")) == Kind::Healthy) as i64);
        ctx.count("flaps", flap as i64);
        self.publish(i, "ejected", ctx);
    }

    fn readmit(&mut self, i: usize, ctx: &mut Ctx<Hc>) {
        self.rotation.readmit(i, ctx.truth());
        self.publish(i, "readmitted", ctx);
    }

    fn publish(&self, i: usize, what: &str, ctx: &mut Ctx<Hc>) {
        ctx.note(format!("instance {i} {what}"));
        ctx.gauge("ejected", self.rotation.ejected().len() as i64);
    }

    /// Each interval: a probe still unanswered counts as failed; then probe every instance
    /// (active and guarded) and readmit the outlier strategy's instances whose time is up.
    fn probe(&mut self, ctx: &mut Ctx<Hc>) {
        ctx.set_timer(ctx.param("probe_ms") as Micros * MICROS_PER_MS, Timer::Probe);
        for i in 0..self.rotation.len() {
            if self.rotation.unanswered(i) {
                self.probed(i, false, ctx);
            }
            if self.strategy == Strategy::Outlier && self.rotation.due(i, ctx.truth()) {
                self.readmit(i, ctx);
            }
            if matches!(self.strategy, Strategy::Active | Strategy::Guarded) {
                self.rotation.probe_sent(i);
                ctx.send(1 + i as NodeId, Msg::Probe);
            }
        }
    }

    /// Active checks: eject after failed probes in a row, readmit on one pass (Kubernetes' defaults);
    /// guarded (hysteresis): readmit only once the ejection time is up and several probes in a row passed.
    fn probed(&mut self, i: usize, ok: bool, ctx: &mut Ctx<Hc>) {
        let ((oks, fails), out) = (self.rotation.probed(i, ok), self.rotation.is_ejected(i));
        match self.strategy {
            Strategy::Active if !out && fails >= ctx.param("unhealthy_probes") as u32 => self.eject(i, ctx),
            Strategy::Active if out && ok => self.readmit(i, ctx),
            Strategy::Guarded if self.rotation.due(i, ctx.truth()) && oks >= ctx.param("healthy_probes") as u32 => {
                self.readmit(i, ctx)
            }
            Strategy::None | Strategy::Active | Strategy::Outlier | Strategy::Guarded => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        crate::parts::testing::run_sampled(&SPEC, &recipe, secs, &[]).0
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("health-checks", strategy, seed)
    }

    /// Each check's first violation: when, and why.
    fn violations(r: &dyn Run) -> Vec<Option<(f64, String)>> {
        r.checks().iter().map(|c| c.violation.as_ref().map(|v| (v.at.as_secs_f64(), v.why.clone()))).collect()
    }

    /// The instances the balancer marks as ejected in the picture, every 50 ms from `from_s` to `to_s`.
    fn ejected_over(r: &mut dyn Run, from_s: u64, to_s: u64) -> Vec<(f64, Vec<usize>)> {
        r.run_until(Time::from_secs(from_s), u64::MAX);
        let mut seen = vec![];
        while r.now() < Time::from_secs(to_s) {
            let marks = r.frame(0).nodes[0].view.marks.clone();
            assert!(marks.iter().all(|m| m.text == "ejected" && m.node >= 1), "{marks:?}");
            seen.push((r.now().as_secs_f64(), marks.iter().map(|m| m.node as usize - 1).collect()));
            r.run_until(r.now().plus(50 * MICROS_PER_MS), u64::MAX);
        }
        seen
    }

    fn error_share(r: &dyn Run) -> f64 {
        let (errors, ok) = (r.metrics().counter("errors"), r.metrics().counter("ok"));
        errors as f64 / (errors + ok) as f64
    }

    #[test]
    fn flaky_instances_fail_the_share_their_bursts_predict() {
        // The theory: with no ejection and every instance flaky (independent bursts, gray and
        // blip off), a burst of 1.5 s follows an exponential gap of mean 5 s, so by the renewal
        // reward theorem an instance is in a burst 1.5 / 6.5 of the time, and a request fails
        // with p = 80% then: 0.8 × 1.5 / 6.5 = 18.5% of requests (round-robin sends each
        // instance a tenth, whatever its state). Over 600 s each instance has ~92 bursts, and
        // the in-burst share's relative s.d. is about 5 s × √92 / 461 s / √10 instances ≈ 3.3%;
        // over 8 seeds the share fell within 17.7–19.0% (at most 4.1% off, s.d. 2.3%): ±10% is
        // four of them, while forgetting the bursts' own length (1.5 / 5) would be 30% off.
        let want = 0.8 * 1.5 / 6.5;
        for seed in 1..=2 {
            let r =
                run(recipe("none", seed).with_param("flaky", 10).with_param("gray", 0).with_param("blip_len", 0), 600);
            let share = error_share(r.as_ref());
            assert!((share - want).abs() <= 0.1 * want, "seed {seed}: {share:.4} failed, renewal theory {want:.4}");
        }
    }

    #[test]
    fn try_active_checks_keep_the_gray_instance_and_serve_its_errors() {
        // Step 1: the gray instance answers every probe, so it serves a tenth of the traffic
        // (its 4 workers, 50× slow, manage 4 req/s of 100: the rest time out or are refused).
        for seed in 1..=3 {
            let r = run(recipe("active-checks", seed), 60);
            let v = violations(r.as_ref());
            assert!(v[0].is_none(), "seed {seed}: {v:?}");
            let (at, why) = v[1].clone().expect("errors-bounded fails");
            assert!(at < 10.5 && why.contains("[0, 1]"), "seed {seed}: {at} {why}");
            let share = error_share(r.as_ref());
            assert!((0.09..0.16).contains(&share), "seed {seed}: {share}");
        }
    }

    #[test]
    fn try_outlier_ejection_ejects_the_blip_and_overloads_the_rest() {
        // Step 2: five errors in a row take ~50 ms at 100 req/s per instance, so the blip at
        // 30 s ejects each of the six it hits within a blink and fewer than five stay in.
        for seed in 1..=3 {
            // The gray instance (1) times out every request: five in a row, within a second.
            let (mut r, gray) = (open(&SPEC, &recipe("outlier-ejection", seed)).0, 1);
            let first = ejected_over(r.as_mut(), 0, 2).into_iter().find(|(_, out)| out.contains(&gray));
            assert!(first.as_ref().is_some_and(|(at, _)| *at < 1.0), "seed {seed}: {first:?}");
            r.run_until(Time::from_secs(60), u64::MAX);
            let (at, why) = violations(r.as_ref())[0].clone().expect("rest-never-overload fails");
            assert!((30.0..30.3).contains(&at) && why.contains("ejected"), "seed {seed}: {at} {why}");
            assert!(r.metrics().counter("false_ejections") >= 4, "seed {seed}");
        }
    }

    #[test]
    fn try_guarded_ejection_holds_both_checks_and_keeps_the_gray_one_out() {
        // Step 3: the cap (30% of 10) leaves seven in rotation; the gray instance is readmitted
        // after its (growing) ejection time and ejected again: a flap, not an outage.
        for seed in 1..=5 {
            let r = run(recipe("guarded-ejection", seed), 60);
            assert_eq!(violations(r.as_ref()), [None, None], "seed {seed}");
            assert!(error_share(r.as_ref()) < 0.03, "seed {seed}");
            assert!(r.metrics().counter("flaps") >= 1, "seed {seed}");
            assert!(r.metrics().gauge("ejected") <= 3, "seed {seed}");
        }
        // At least seven in rotation throughout, and the gray instance (1), each time it is
        // readmitted (a probe round, every second), is ejected again within a second and a half.
        for seed in 1..=2 {
            let seen = ejected_over(open(&SPEC, &recipe("guarded-ejection", seed)).0.as_mut(), 0, 60);
            assert!(seen.iter().all(|(_, out)| out.len() <= 3), "seed {seed}");
            let gray_in: Vec<f64> =
                seen.windows(2).filter(|w| w[0].1.contains(&1) && !w[1].1.contains(&1)).map(|w| w[1].0).collect();
            assert!(!gray_in.is_empty(), "seed {seed}: the gray one is readmitted at least once");
            for t in gray_in.iter().filter(|&&t| t < 58.0) {
                let back = seen.iter().find(|(at, out)| at > t && out.contains(&1)).map(|x| x.0);
                assert!(back.is_some_and(|b| b - t <= 1.5), "seed {seed}: readmitted at {t}, back out at {back:?}");
            }
        }
    }

    #[test]
    fn switching_to_none_puts_every_ejected_instance_back_at_once() {
        let switch = ActionKind::SetStrategy { id: "none".into() };
        let mut r = open(&SPEC, &recipe("outlier-ejection", 1).with_action(Time::from_secs(31), switch)).0;
        let seen = ejected_over(r.as_mut(), 30, 32);
        assert!(seen.iter().any(|(at, out)| *at < 31.0 && out.len() >= 5), "the blip ejected them: {seen:?}");
        assert!(seen.iter().filter(|(at, _)| *at >= 31.0).all(|(_, out)| out.is_empty()), "{seen:?}");
    }

    #[test]
    fn the_view_badges_instances_and_counts_the_ejected() {
        let frame = run(recipe("guarded-ejection", 1), 20).frame(0);
        let views: Vec<NodeView> = frame.nodes.into_iter().map(|n| n.view).collect();
        let badge = |i: usize| views[1 + i].badges[0].text.clone();
        assert!(["flaky", "erring"].contains(&badge(0).as_str()));
        assert_eq!((badge(1), badge(2)), ("gray".to_string(), "healthy".to_string()));
        let g = &views[0].gauges[0];
        assert!(g.label == "ejected" && g.max == 10 && (1..=3).contains(&g.value), "{g:?}");
        // The ejected are marked at the instances themselves, the gray one (instance 1) among them.
        let marked: Vec<NodeId> = views[0].marks.iter().map(|m| m.node).collect();
        assert!(marked.len() as i64 == g.value && marked.contains(&2), "{marked:?}");
    }
}
