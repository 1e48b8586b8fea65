//! Rolling deploy: 50 instances behind a balancer replaced by a new version — killed in batches (the balancer's health checks notice late: 502s), rolled with draining and readiness gates, or swapped blue-green.

use crate::parts::arrivals::OpenLoop;
use crate::parts::balance::{Chooser, Loads, Rule};
use crate::parts::calls::{CallId, Calls};
use crate::parts::rollout::{Fleet, Knobs, Old, Plan, Process, Rollout, Step};
use crate::parts::station::{Full, Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::targets::Targets;
use faultline_core::*;

#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "rolling-deploy",
        title: "Rolling deploy: zero-downtime releases",
        category: "Deployment & rollout",
        seeds: &["S3#15", "S0#13"],
        summary: "50 instances behind a balancer, 500 req/s; at 5 s a deploy replaces every one. Killing them in batches \
                  fails a tenth of the requests with 502s for its ~100 s (the seed's \"10% for two minutes\": the balancer \
                  routes to the dead until its health checks notice); rolling with draining and readiness gates fails \
                  none; blue-green fails none and is quickest, at twice the fleet for a while.",
        note: Note {
            what_can_go_wrong: "A balancer learns of a dead instance only from its health checks: with a check \
                every 4 s and 3 failures to mark it down, a killed instance keeps its share of traffic for 10 s on \
                average, and every request sent there is a 502. Killing 5 of 50 every 10 s keeps 5 dead ones in \
                rotation, a tenth of the traffic. Model: Poisson requests, round robin over the instances in \
                rotation (a 503 from the balancer if none); each instance has workers (exponential service) and a \
                queue of 64; a stopped one refuses connections (502, in-flight ones reset); a crashed one answers \
                nothing (504 after the timeout). Each target is probed at its own phase; the new version passes its \
                readiness probe once started and warmed up (the start time). The rolling controller counts \
                capacity as the balancer sees it: a crash not yet noticed still counts.",
            what_you_sacrifice: "Rolling: time — each batch waits out draining, start and the readiness probes, \
                so 50 instances in batches of 5 take about three minutes, not two. Blue-green: money — a second \
                full fleet runs until the old one drains, and a bad new fleet is found only at the switch's gate.",
            at_10x: "500 instances and 50 services deploying daily make the kill script's 502s a constant \
                background; draining must also cover long-lived connections (websockets, gRPC streams) that never \
                end by themselves, so a drain timeout cuts them anyway; blue-green's double fleet may not fit the \
                region's capacity.",
            resembles: "Kubernetes Deployments (maxUnavailable, readinessProbe periodSeconds and successThreshold, \
                terminationGracePeriodSeconds), AWS ALB target groups (health-check interval, unhealthy threshold, \
                deregistration delay), blue-green with AWS CodeDeploy or a DNS/balancer switch.",
            try_this: &[
                "Play `kill`: from 5 s about a tenth of the requests fail with 502s until the last batch is noticed, \
                 and `no-failed-request` names the dead instance a request was sent to.",
                "Play `rolling` and inject `bad-version`: the first batch never passes readiness, so the deploy \
                 halts with 45 serving instead of taking the fleet down; `kill` with the same fault serves nothing.",
                "Play `blue-green`: no request fails and the deploy is done in under 20 s, but `running` peaks at \
                 100 instances.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("instances", "Instances", "", 2..=200, 50, "The fleet, replaced one for one."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=20_000, 500, "Poisson requests at the balancer."),
        ParamSpec::setup("workers", "Workers per instance", "", 1..=64, 4, "Requests an instance serves at once."),
        ParamSpec::setup("service_ms", "Service time", "ms", 1..=1000, 20, "Mean (exponential)."),
        ParamSpec::live("timeout_ms", "Request timeout", "ms", 10..=30_000, 1000, "Slower answers are 504s.").step(10),
        ParamSpec::setup("deploy_at", "Deploy starts", "s", 0..=600, 5, "When the deploy begins."),
        ParamSpec::live("batch", "Batch (max unavailable)", "", 1..=100, 5, "Out at once; floor: fleet − batch."),
        ParamSpec::live("start_s", "Start time", "s", 0..=300, 10, "A new instance's start and warm-up until ready; \
            the kill script waits this long between batches."),
        ParamSpec::live("drain_s", "Drain timeout", "s", 0..=300, 30, "In-flight requests' grace before a stop (0: cut)."),
        ParamSpec::live("probe_ms", "Health-check interval", "ms", 100..=60_000, 4000, "Per target.").step(100),
        ParamSpec::live("unhealthy_probes", "Failures to mark down", "", 1..=10, 3, "In a row."),
        ParamSpec::live("healthy_probes", "Passes to mark up", "", 1..=10, 2, "In a row (readiness)."),
    ],
    strategies: &[
        StrategySpec::naive("kill", "Kill and restart", "Kill a batch, start the new ones, wait the start time, \
            repeat; the balancer finds out from its health checks."),
        StrategySpec::fixed("rolling", "Rolling + readiness + draining", "Deregister a batch, drain it, stop it, \
            start the new ones, and take the next batch once they pass readiness and capacity allows."),
        StrategySpec::fixed("blue-green", "Blue-green", "Start a whole new fleet, switch the balancer to it at once \
            when all pass readiness, then drain and stop the old one."),
    ],
    faults: &[
        FaultSpec::global("bad-version", "Bad new version", "New instances never pass readiness.").value("", 0..=1, 1),
    ],
    checks: &[
        CheckSpec::new("no-failed-request", "No request fails by the deploy", "None sent to a stopped instance."),
        CheckSpec::new("capacity-floor", "The deploy keeps the floor", "Never fewer than fleet − batch serving."),
    ],
    metrics: &[
        MetricSpec::new("failed_pct", "Failed requests", "%", Measure::Percent { num: "failed", rest: "ok" }),
        MetricSpec::new("capacity", "Capacity (serving)", "instances", Measure::Gauge("capacity")),
        MetricSpec::new("running", "Running (billed)", "instances", Measure::Gauge("running")),
        MetricSpec::new("deploy_s", "Deploy time", "s", Measure::Gauge("deploy_s")),
        MetricSpec::new("deploy_failed", "Failed by the deploy", "requests", Measure::Count("deploy_failed")),
    ],
    layout: Layout::Tiers,
    default_until: 200 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Kill, Rolling, BlueGreen });

const BALANCER: NodeId = 0;
const QUEUE: usize = 64;
/// The deploy controller looks at the fleet this often (Kubernetes' controllers react within a fraction of a second).
const TICK_US: Micros = 100 * MICROS_PER_MS;

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(CallId),
    Reply(CallId, bool),
    Probe,
    ProbeReply(bool),
    Start,
    Stop,
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Timeout(CallId),
    Probe(usize),
    Tick,
    Done(Slot),
}

#[derive(Clone, Debug, Holds)]
pub enum Rd {
    Balancer(Balancer),
    Instance(Instance),
}

/// The balancer and, beside it, the deploy controller (they share what the balancer knows).
#[derive(Clone, Debug)]
pub struct Balancer {
    strategy: Strategy,
    n: usize,
    arrivals: OpenLoop,
    calls: Calls<usize>,
    chooser: Chooser,
    inflight: Loads,
    /// Slots 0..n the old fleet, n..2n the new (down until their readiness probes pass).
    targets: Box<Targets>,
    rollout: Box<Rollout>,
    failed: Breach,
    floor: Breach,
}

#[derive(Clone, Debug)]
pub struct Instance {
    slot: usize,
    version: u8,
    station: Station<(NodeId, CallId)>,
    process: Process,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Rd> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 800 }));
    let n = setup.param("instances") as usize;
    let b = Balancer {
        strategy: Strategy::from_id(setup.strategy()),
        n,
        arrivals: OpenLoop::poisson(setup.param("rps") as f64),
        calls: Calls::new("latency_us"),
        chooser: Chooser::new(Rule::RoundRobin),
        inflight: Loads::new(2 * n),
        targets: Box::new(Targets::new(2 * n, n)),
        rollout: Box::new(Rollout::new(n, Time::from_secs(setup.param("deploy_at") as u64))),
        failed: Breach::default(),
        floor: Breach::default(),
    };
    assert_eq!(sim.add_node(Rd::Balancer(b)), BALANCER);
    for slot in 0..2 * n {
        let service = Service::exponential_ms(setup.param("service_ms") as u64);
        let station = Station::new(setup.param("workers") as u32, service).bounded(QUEUE, Full::Reject);
        let (up, version) = (slot < n, 1 + (slot >= n) as u8);
        let process = if up { Process::warm() } else { Process::default() };
        sim.add_node(Rd::Instance(Instance { slot, version, station, process }));
    }
    sim.check("no-failed-request", |w| w.node::<Balancer>(BALANCER).failed.now(w.now));
    sim.check("capacity-floor", |w| w.node::<Balancer>(BALANCER).floor.now(w.now));
    Box::new(sim)
}

impl Node for Rd {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Rd::Balancer(b) => {
                b.arrivals.start(ctx, Timer::Arrive);
                ctx.set_timer(TICK_US, Timer::Tick);
                b.targets.arm_all(Balancer::every_us(ctx), ctx, Timer::Probe);
            }
            // At time 0 the old fleet is warm already; after a crash's restart a process warms up again.
            Rd::Instance(i) if i.process.is_up() && ctx.truth() > Time::ZERO => i.warm(ctx),
            Rd::Instance(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Rd::Balancer(b), Msg::Reply(id, ok)) => b.answered(id, Some(ok), ctx),
            (Rd::Balancer(b), Msg::ProbeReply(ok)) => b.probed(from as usize - 1, ok, ctx),
            (Rd::Instance(i), Msg::Request(id)) => i.request(from, id, ctx),
            (Rd::Instance(i), Msg::Probe) => ctx.send(from, Msg::ProbeReply(i.process.ready(ctx.now()))),
            (Rd::Instance(i), Msg::Start) => i.warm(ctx),
            // The process exits: connections reset, so every request it held fails with a 502.
            (Rd::Instance(i), Msg::Stop) => {
                i.halt(true, ctx).into_iter().for_each(|(to, id)| ctx.send(to, Msg::Reply(id, false)))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Rd::Balancer(b), Timer::Arrive) => b.arrive(ctx),
            (Rd::Balancer(b), Timer::Timeout(id)) => b.answered(id, None, ctx),
            (Rd::Balancer(b), Timer::Probe(i)) => b.probe(i, ctx),
            (Rd::Balancer(b), Timer::Tick) => b.tick(ctx),
            (Rd::Instance(i), Timer::Done(slot)) => {
                let done = i.station.done(slot, ctx, Timer::Done);
                done.into_iter().for_each(|f| ctx.send(f.job.0, Msg::Reply(f.job.1, true)))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Rd::Balancer(b) => b.calls.clear(ctx).into_iter().for_each(|i| b.inflight.ended(i)),
            Rd::Instance(i) => drop(i.halt(false, ctx)),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Rd::Balancer(b), Control::Strategy(id)) => b.strategy = Strategy::from_id(id),
            (Rd::Balancer(b), Control::Param { id: "rps", value: v }) => {
                b.arrivals.set_rate_per_s(v as f64, ctx, Timer::Arrive)
            }
            (Rd::Instance(i), Control::Custom { id: "bad-version", value: v }) => {
                i.process.set_bad(v == 1 && i.version > 1)
            }
            // The other live parameters are read where used; setup ones rebuild the run.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Rd::Balancer(b) => b.view(),
            Rd::Instance(i) => {
                let (state, tone) = i.process.badge();
                NodeView::new(NodeKind::Service, i.version, numbered("instance", i.slot as u64))
                    .badge(format!("v{}", i.version), if i.version == 1 { Tone::Neutral } else { Tone::Good })
                    .badge(state, tone)
                    .gauge("load", i.station.held() as i64, (i.station.servers() as usize + QUEUE) as i64)
            }
        }
    }
}

impl Instance {
    fn warm(&mut self, ctx: &mut Ctx<Rd>) {
        self.process.start(ctx.now(), ctx.param("start_s") as Micros * MICROS_PER_S);
    }

    /// Stopped (or crashed, to be restarted): not ready, and the requests it held are gone.
    fn halt(&mut self, stop: bool, ctx: &mut Ctx<Rd>) -> Vec<(NodeId, CallId)> {
        self.process.halt(stop);
        self.station.crash(ctx)
    }

    /// A request to a stopped process is refused (502); one not ready fails; a full queue refuses (503).
    fn request(&mut self, from: NodeId, id: CallId, ctx: &mut Ctx<Rd>) {
        if !self.process.ready(ctx.now()) || !self.station.offer((from, id), ctx, Timer::Done).admitted() {
            ctx.send(from, Msg::Reply(id, false));
        }
    }
}

impl Balancer {
    fn arrive(&mut self, ctx: &mut Ctx<Rd>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        // None in rotation: the balancer answers 503 itself ("no healthy upstream").
        let pick = self.chooser.pick(&self.targets.serving(), |_| 0, ctx.rng());
        let Some(i) = pick else { return self.served(None, false, ctx) };
        let id = self.calls.start(ctx, i, ctx.param("timeout_ms") as Micros * MICROS_PER_MS, Timer::Timeout);
        self.inflight.sent(i);
        ctx.send(1 + i as NodeId, Msg::Request(id));
    }

    /// An answer (`Some(ok)`) or a timeout (`None`, a 504).
    fn answered(&mut self, id: CallId, ok: Option<bool>, ctx: &mut Ctx<Rd>) {
        let Some(i) = (if ok.is_some() { self.calls.reply(id, ctx) } else { self.calls.timeout(id) }) else { return };
        self.inflight.ended(i);
        self.served(Some((i, id)), ok == Some(true), ctx);
    }

    /// Counts an answer; a failure is the deploy's when it stopped the instance (or left none to route to).
    fn served(&mut self, to: Option<(usize, CallId)>, ok: bool, ctx: &mut Ctx<Rd>) {
        ctx.count(if ok { "ok" } else { "failed" }, 1);
        let why = match to {
            _ if ok => return,
            Some((i, id)) if i < self.n && self.rollout.old(i) == Old::Stopped => {
                format!("request {} failed (502): instance {i} was stopped by the deploy, yet in rotation", id.seq())
            }
            None if self.rollout.under_way() => {
                "a request failed (503): the deploy left no instance in rotation".to_string()
            }
            _ => return,
        };
        ctx.count("deploy_failed", 1);
        self.failed.record(why, ctx.truth());
    }

    fn every_us(ctx: &mut Ctx<Rd>) -> Micros {
        ctx.param("probe_ms") as Micros * MICROS_PER_MS
    }

    fn probe(&mut self, i: usize, ctx: &mut Ctx<Rd>) {
        let (unanswered, send) = self.targets.probe_due(i, Self::every_us(ctx), ctx, Timer::Probe(i));
        if unanswered {
            self.probed(i, false, ctx);
        }
        if send {
            ctx.send(1 + i as NodeId, Msg::Probe);
        }
    }

    fn probed(&mut self, i: usize, ok: bool, ctx: &mut Ctx<Rd>) {
        let (down, up) = (ctx.param("unhealthy_probes") as u32, ctx.param("healthy_probes") as u32);
        if let Some(up) = self.targets.verdict(i, ok, down, up) {
            ctx.note(format!("instance {i} marked {}", if up { "up" } else { "down" }));
        }
    }

    /// The deploy controller's loop: its steps carried out, the floor judged as it takes instances out.
    fn tick(&mut self, ctx: &mut Ctx<Rd>) {
        ctx.set_timer(TICK_US, Timer::Tick);
        let plan = [Plan::Kill, Plan::Rolling, Plan::BlueGreen][self.strategy as usize];
        let k = Knobs::secs(ctx.param("batch"), ctx.param("start_s"), ctx.param("drain_s"));
        let (mut rollout, before) = (self.rollout.clone(), self.rollout.below_floor());
        let steps = rollout.tick(plan, ctx.truth(), k, self);
        self.rollout = rollout;
        if let Some((i, left, floor)) = self.rollout.below_floor().filter(|b| Some(*b) != before) {
            self.floor.record(format!("took instance {i} out leaving {left} serving (floor {floor})"), ctx.truth());
        }
        for step in steps {
            match step {
                Step::Deregister { i, .. } => self.targets.deregister(i),
                Step::Stop { i, .. } => ctx.send(1 + i as NodeId, Msg::Stop),
                Step::Start { i, routed } => {
                    self.targets.route(self.n + i, routed);
                    ctx.send(1 + (self.n + i) as NodeId, Msg::Start);
                    self.targets.watch(self.n + i, Self::every_us(ctx), ctx, Timer::Probe(self.n + i));
                }
                Step::Switch => (self.n..2 * self.n).for_each(|j| self.targets.route(j, true)),
                Step::Route { i } => self.targets.route(self.n + i, true),
            }
        }
        if let (Some(began), finished) = self.rollout.times() {
            ctx.gauge("deploy_s", (finished.unwrap_or(ctx.truth()).since(began) / MICROS_PER_S) as i64);
        }
        ctx.gauge("capacity", self.serving() as i64);
        ctx.gauge("running", self.rollout.running() as i64);
    }

    fn view(&self) -> NodeView {
        let replaced = (0..self.n).filter(|&i| self.new_up(i)).count();
        let (text, tone) = match self.rollout.times() {
            (None, _) => ("waiting to deploy".to_string(), Tone::Neutral),
            (Some(_), None) => (format!("deploying: {replaced}/{} new serving", self.n), Tone::Warn),
            (Some(b), Some(f)) => (format!("deployed in {:.0} s", f.since(b) as f64 / 1e6), Tone::Good),
        };
        let v = NodeView::new(NodeKind::LoadBalancer, 0, "balancer").badge(text, tone);
        let v = v.gauge("serving", self.serving() as i64, self.n as i64);
        // The lesson's source: instances the deploy stopped that the balancer still routes to.
        let dead = self.targets.serving().into_iter().filter(|&i| i < self.n && self.rollout.old(i) == Old::Stopped);
        dead.fold(v, |v, i| v.mark(1 + i as NodeId, "dead, in rotation", Tone::Bad))
    }
}

impl Fleet for Balancer {
    fn serves(&self, i: usize) -> bool {
        self.targets.is_routed(i) && self.targets.is_up(i) && self.rollout.old(i) != Old::Stopped
    }

    fn new_up(&self, i: usize) -> bool {
        self.targets.is_up(self.n + i)
    }

    fn inflight(&self, i: usize) -> u64 {
        self.inflight.inflight(i)
    }

    /// Routed, marked up, and not stopped by the deploy (its controller knows).
    fn serving(&self) -> usize {
        self.targets.serving().into_iter().filter(|&i| i >= self.n || self.rollout.old(i) != Old::Stopped).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::targets::{mean_admission_us, mean_detection_us};
    use crate::parts::testing::{between, failed_at, most, run_sampled, samples};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("rolling-deploy", strategy, seed)
    }

    fn bad_version(r: Recipe) -> Recipe {
        r.with_action(Time::ZERO, ActionKind::Fault(Fault::Custom { id: "bad-version".into(), node: None, value: 1 }))
    }

    #[test]
    fn kill_fails_the_requests_the_health_check_lag_predicts() {
        // The theory (Little's law): a killed instance keeps its round-robin share until marked
        // down, (k − ½)·I = 10 s later; its replacement serves (h − ½)·I after its 10 s start,
        // 16 s after the kill, so b/P·(16 − 10) = 3 slots are out of rotation on average and each
        // kill fails λ·10 s/(n − 3) requests: 50 kills, 5,319 (10.6% of the deploy's traffic,
        // the seed's tenth). Each kill's lag has s.d. I/√12 = 1.15 s, 1.6% over 50 of them,
        // and Poisson noise 1.4%: ±8% is about four of both, while the naive (k·I) lag is 20% off.
        let (lambda, n, b, period) = (500.0, 50.0, 5.0, 10.0);
        let detect_s = mean_detection_us(4_000_000, 3) / 1e6;
        let out_s = 10.0 + mean_admission_us(4_000_000, 2) / 1e6 - detect_s;
        let want = n * lambda * detect_s / (n - b / period * out_s);
        for seed in 1..=3 {
            let (r, at) = run_sampled(&SPEC, &recipe("kill", seed), 120, &["failed", "ok"]);
            let got = r.metrics().counter("deploy_failed") as f64;
            assert!((got - want).abs() <= 0.08 * want, "seed {seed}: {got} failed by the deploy, theory {want:.0}");
            assert_eq!(r.metrics().counter("failed") as f64, got, "seed {seed}: every failure is the deploy's");
            let share = between(&at, 0, 5, 105) / (between(&at, 0, 5, 105) + between(&at, 1, 5, 105));
            assert!((0.09..0.12).contains(&share), "seed {seed}: {share:.3} of the deploy's requests failed");
        }
    }

    #[test]
    fn rolling_one_at_a_time_takes_n_rounds_of_drain_start_and_readiness() {
        // The theory: ceil(n/b)·(drain + start + readiness). One at a time over 10 instances, a
        // round is a tick to drain if a request is in flight (an M/M/4 at 1 erlang is busy 63%
        // of the time: 0.063 s), the 10 s start, the readiness lag (h − ½)·I = 6 s and half a
        // tick to notice: 161.1 s. A round's lag has s.d. I/√12 = 1.15 s, so 10 rounds 3.7 s
        // and the mean of 6 seeds 1.5 s (the gauge drops the fraction: −0.5 s): ±5 s is over
        // three of them, while leaving out the probe lag would be 60 s short.
        let round_s = 0.063 + 10.0 + mean_admission_us(4_000_000, 2) / 1e6 + 0.05;
        let want = 10.0 * round_s;
        let took: Vec<f64> = (1..=6)
            .map(|seed| {
                let r = recipe("rolling", seed).with_param("instances", 10).with_param("batch", 1);
                let r = run_sampled(&SPEC, &r, 200, &[]).0;
                assert_eq!(failed_at(r.as_ref(), "no-failed-request"), None, "seed {seed}");
                r.metrics().gauge("deploy_s") as f64 + 0.5
            })
            .collect();
        let mean = took.iter().sum::<f64>() / took.len() as f64;
        assert!((mean - want).abs() <= 5.0, "rolling took {took:?} s, mean {mean:.1}, theory {want:.1}");
    }

    #[test]
    fn try_kill_fails_a_tenth_with_502s_naming_the_dead_instance() {
        // Step 1: from the first kill at 5 s until the last batch is marked down (~107 s).
        for seed in 1..=3 {
            let (r, at) = run_sampled(&SPEC, &recipe("kill", seed), 120, &["failed", "ok"]);
            let (when, why) = failed_at(r.as_ref(), "no-failed-request").expect("a 502");
            assert!(when < 5.1 && why.contains("502") && why.contains("instance"), "seed {seed}: {when} {why}");
            assert!(between(&at, 0, 100, 104) > 0.0 && between(&at, 0, 112, 120) == 0.0, "seed {seed}: {at:?}");
            assert!(failed_at(r.as_ref(), "capacity-floor").is_some(), "seed {seed}: the next batch goes unready");
        }
    }

    #[test]
    fn try_a_bad_version_halts_rolling_at_the_floor_and_takes_kill_down() {
        // Step 2: rolling stops after its first batch, 45 of 50 serving to the end, no failure.
        for seed in 1..=3 {
            let r = run_sampled(&SPEC, &bad_version(recipe("rolling", seed)), 150, &[]).0;
            let capacity = samples(r.as_ref(), "capacity", 10.0, 150.0);
            assert!(capacity.iter().all(|&c| c == 45.0), "seed {seed}: {capacity:?}");
            assert_eq!(failed_at(r.as_ref(), "no-failed-request"), None, "seed {seed}");
            assert_eq!(failed_at(r.as_ref(), "capacity-floor"), None, "seed {seed}");
            assert!(r.metrics().gauge("deploy_s") >= 140, "seed {seed}: never done");
        }
        // The kill script goes on regardless: nothing serves after its tenth batch, and the
        // balancer itself answers every request with a 503.
        let (r, at) = run_sampled(&SPEC, &bad_version(recipe("kill", 1)), 150, &["failed", "ok"]);
        assert_eq!(r.metrics().gauge("capacity"), 0);
        assert!(between(&at, 1, 110, 150) == 0.0 && between(&at, 0, 110, 150) > 15_000.0, "{at:?}");
    }

    #[test]
    fn try_blue_green_fails_nothing_and_is_quick_at_twice_the_fleet() {
        // Step 3: the whole new fleet starts at 5 s, is ready by ~15–21 s, and the switch is atomic.
        for seed in 1..=3 {
            let r = run_sampled(&SPEC, &recipe("blue-green", seed), 60, &[]).0;
            assert_eq!(failed_at(r.as_ref(), "no-failed-request"), None, "seed {seed}");
            assert_eq!(r.metrics().counter("failed"), 0, "seed {seed}");
            let took = r.metrics().gauge("deploy_s");
            assert!((10..20).contains(&took), "seed {seed}: {took} s");
            assert_eq!(most(r.as_ref(), "running", 0.0, 60.0), 100.0, "seed {seed}");
            assert_eq!((r.metrics().gauge("running"), r.metrics().gauge("capacity")), (50, 50), "seed {seed}");
        }
    }

    #[test]
    fn rolling_holds_its_floor_through_a_crash_mid_deploy() {
        // An old instance (40) crashes at 30 s and restarts at 50 s: its requests time out until
        // it is marked down (those are the crash's, not the deploy's), and the controller counts
        // it unavailable, so it waits rather than take another out.
        let crash = |r: Recipe| {
            let r = r.with_action(Time::from_secs(30), ActionKind::Fault(Fault::Crash { node: 41 }));
            r.with_action(Time::from_secs(50), ActionKind::Fault(Fault::Restart { node: 41 }))
        };
        for seed in 1..=3 {
            let r = run_sampled(&SPEC, &crash(recipe("rolling", seed)), 200, &[]).0;
            assert_eq!(failed_at(r.as_ref(), "no-failed-request"), None, "seed {seed}");
            assert_eq!(failed_at(r.as_ref(), "capacity-floor"), None, "seed {seed}");
            let fewest = samples(r.as_ref(), "capacity", 0.0, 200.0).into_iter().fold(50.0, f64::min);
            assert!(fewest >= 44.0, "seed {seed}: {fewest} serving at the worst");
            assert!(r.metrics().counter("failed") > 0, "seed {seed}: the crash's timeouts");
        }
    }

    #[test]
    fn the_view_marks_dead_instances_still_in_rotation_and_badges_versions() {
        let (mut r, _) = open(&SPEC, &recipe("kill", 1));
        r.run_until(Time::from_secs(8), u64::MAX);
        let frame = r.frame(0);
        let marks = &frame.nodes[0].view.marks;
        assert!(!marks.is_empty() && marks.iter().all(|m| m.text == "dead, in rotation" && m.node <= 50), "{marks:?}");
        let badges = |n: usize| frame.nodes[n].view.badges.iter().map(|b| b.text.clone()).collect::<Vec<_>>();
        assert_eq!(badges(marks[0].node as usize), ["v1", "stopped"]);
        assert_eq!(badges(51 + marks[0].node as usize - 1), ["v2", "running"]);
        assert_eq!(badges(50), ["v1", "running"]);
    }
}
