//! Load balancing: clients → a balancer → N instances (stations: workers and a queue), the balancer choosing
//! by round robin, at random, by least connections, by the less loaded of two random ones, or (gRPC over
//! HTTP/2 behind a connection balancer) pinning each client's one long-lived connection to one instance.

use crate::parts::arrivals::OpenLoop;
use crate::parts::balance::{Chooser, Loads, Rule};
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::judge::{verdict_of, Judge};
use crate::parts::station::{Full, Offer, Service as ServiceTime, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "load-balancing",
        title: "Load balancing",
        category: "Traffic control",
        seeds: &["S3#41"],
        summary: "3 clients send 1,200 req/s through a balancer to 10 instances; at 10 s one turns 10× slow for 10 s, \
                  at 20 s five more join. Round robin and random keep feeding the slow one; least connections and two \
                  random choices route around it; gRPC's pinned connections put everything on 3 instances.",
        note: Note {
            what_can_go_wrong: "A balancer blind to load gives a slow instance its full share: round robin and random \
                send it a tenth of the traffic while it serves a sixtieth (4 workers / 200 ms = 20 of 1,200 req/s), so \
                its queue fills and its requests wait or fail. gRPC multiplexes every call over one HTTP/2 connection \
                per client, and a connection (L4) balancer balances connections, not calls: with 3 clients, 3 \
                instances carry everything (the seed's 2 of 20) and instances added later get nothing. Model: Poisson \
                clients; the balancer counts each instance's requests in flight; instances with c workers, exponential service, a queue of 100 (503 when full); \
                0.2–0.8 ms links. Pinned connections are opened round robin.",
            what_you_sacrifice: "Least connections needs every instance's count, fresh: many balancers each see only \
                their own traffic and herd onto the instance that looks idle; two choices reads two counts and \
                tolerates stale ones, for a slightly longer tail. Balancing gRPC per request needs an L7 proxy (Envoy, \
                Linkerd) or client-side balancing (a connection to every instance).",
            at_10x: "Thousands of instances: least connections' scan and shared counts stop scaling; two choices \
                keeps its O(1) pick and its ln ln n / ln 2 fullest bin. With many clients pinning averages out, until a \
                few big ones (a batch job, a gateway) dominate; max connection age only moves the hot spot around.",
            resembles: "NGINX (round robin, least_conn, random two least_conn), HAProxy (roundrobin, leastconn), \
                Envoy (ROUND_ROBIN, LEAST_REQUEST with two choices, RANDOM), Kubernetes Services (kube-proxy \
                balances connections, so gRPC pins), gRPC's MAX_CONNECTION_AGE and client-side round_robin policy.",
            try_this: &[
                "Play `round-robin`: at 10 s instance 0 turns 10× slow; its queue fills within a second (its gauge), a \
                 tenth of the requests wait or get 503, and both checks fail naming instance 0.",
                "Then switch to `least-connections` or `two-choices`: instance 0 gets nothing new until its queue \
                 drains (5 s at most), then only what it can serve; from then its queue stays short and both checks hold.",
                "Play `pinned`: three instances carry all the traffic (a third each) and overload from the start; the \
                 five that join at 20 s get nothing. With 2 clients and 20 instances: the seed's 2 of 20.",
                "With `pinned`, set the connection lifetime to 2 s: connections move round robin as they are reopened \
                 and the newcomers get some, but three instances at a time still carry everything.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=100, 3, "Client nodes (each one connection when pinned)."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=20_000, 1200, "Total Poisson rate, split over clients."),
        ParamSpec::setup("instances", "Instances", "", 1..=50, 10, "Instances in rotation at the start."),
        ParamSpec::setup("workers", "Workers per instance", "", 1..=64, 4, "Requests an instance serves at once."),
        ParamSpec::setup("service_ms", "Service time", "ms", 1..=1000, 20, "Mean (exponential) when healthy."),
        ParamSpec::live("timeout_ms", "Client timeout", "ms", 10..=60_000, 1000, "Then the client gives up.").step(10),
        ParamSpec::setup("conn_life_s", "Connection lifetime", "s", 0..=25, 0,
            "Pinned: a connection older than this is reopened (gRPC MAX_CONNECTION_AGE); 0: never."),
        ParamSpec::setup("p99_ms", "p99 bound", "ms", 10..=10_000, 500, "The latency check's bound.").step(10),
        ParamSpec::setup("slow_at", "Slowdown starts", "s", 0..=3600, 10, "Scheduled fault: instance 0 turns slow."),
        ParamSpec::setup("slow_len", "Slowdown length", "s", 0..=3600, 10, "How long it stays slow (0: never)."),
        ParamSpec::setup("slow_factor", "Slowdown", "×", 1..=100, 10, "Its service time while slow, as a multiple."),
        ParamSpec::setup("added", "Instances added", "", 0..=40, 5, "Spare instances that join at the time below."),
        ParamSpec::setup("add_at", "Instances join at", "s", 0..=3600, 20, "Scheduled: the spares join the rotation."),
    ],
    strategies: &[
        StrategySpec::naive("round-robin", "Round robin", "Each request to the next instance in turn, whatever its load."),
        StrategySpec::naive("random", "Random", "Each request to an instance drawn at random."),
        StrategySpec::fixed("least-connections", "Least connections",
            "Each request to the instance with the fewest requests in flight."),
        StrategySpec::fixed("two-choices", "Power of two choices",
            "Draws two instances at random and sends to the one with fewer in flight."),
        StrategySpec::naive("pinned", "Pinned connections (gRPC)",
            "Each client's one connection goes to an instance when opened; every request follows its connection."),
    ],
    faults: &[
        FaultSpec::node("slow", "Slow instance", "Its service takes this many times as long (1 heals it).")
            .value("×", 1..=100, 10),
        FaultSpec::global("add", "Add instances", "This many spares join (at most those left).").value("", 1..=40, 5),
    ],
    checks: &[
        CheckSpec::new("load-spread", "Load spread within a bound",
            "No instance has more requests in flight than 2 × the mean over those in rotation + twice its workers, \
             nor got over twice its fair share of the last second's requests (of the last 20 per instance, if fewer)."),
        CheckSpec::new("p99-bounded", "p99 within the bound",
            "Of the last second's answers (the last 100 if it had fewer), at most 1% are slower than the bound or failed."),
    ],
    metrics: &[
        MetricSpec::new("p99", "p99 latency", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("max_load", "Most in flight on one instance", "requests", Measure::Gauge("max_inflight")),
        MetricSpec::new("mean_load", "Mean in flight per instance", "requests", Measure::GaugePer("mean_inflight_x100",
            100.0)),
        MetricSpec::new("busiest_share", "Share on the busiest instance", "%", Measure::Gauge("busiest_share_pct")),
        MetricSpec::new("queue_0", "Queue: instance 0", "requests", Measure::Gauge("queue_0")),
        MetricSpec::new("failed", "Failed (503 or timeout)", "req/s", Measure::Rate("failed")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { RoundRobin, Random, LeastConnections, TwoChoices, Pinned });

const BALANCER: NodeId = 0;
const QUEUE: usize = 100;
/// Checks: spread factor; 1% late at most of the last second's (or `ANSWERS`) answers; share over `SHARE_MIN`/instance.
const SPREAD: f64 = 2.0;
const ANSWERS: usize = 100;
const SHARE_MIN: u64 = 20;
/// Each strategy's rule (pinned connections are opened round robin).
const RULES: [Rule; 5] = [Rule::RoundRobin, Rule::Random, Rule::LeastLoaded, Rule::TwoChoices, Rule::RoundRobin];

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(CallId),
    Reply(CallId, bool),
    /// To a client: its answer, ok or not; `Up`: an instance (re)started empty.
    Answer(CallId, bool),
    Up,
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    Timeout(CallId),
    Done(Slot),
    Tick,
}

#[derive(Clone, Debug, Holds)]
pub enum Lb {
    Balancer(Balancer),
    Instance(Instance),
    Client(Client),
}

/// Instances 0..`active` are in rotation; `pins` holds each client's connection (instance, opened).
#[derive(Clone, Debug)]
pub struct Balancer {
    strategy: Strategy,
    chooser: Chooser,
    active: usize,
    total: usize,
    loads: Loads,
    pins: Vec<Option<(usize, Time)>>,
    busiest: (usize, u64),
}

/// `received` this second; `share_pct` of the traffic in the last one.
#[derive(Clone, Debug)]
pub struct Instance {
    index: usize,
    station: Station<CallId>,
    received: u64,
    share_pct: u64,
}

#[derive(Clone, Debug)]
pub struct Client {
    index: usize,
    arrivals: OpenLoop,
    calls: Calls<()>,
    judge: Judge,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Lb> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 800 }));
    let (active, clients) = (setup.param("instances") as usize, setup.param("clients") as usize);
    let (total, strategy) = (active + setup.param("added") as usize, Strategy::from_id(setup.strategy()));
    let (chooser, loads, pins) = (Chooser::new(RULES[strategy as usize]), Loads::new(total), vec![None; clients]);
    sim.add_node(Lb::Balancer(Balancer { strategy, chooser, active, total, loads, pins, busiest: (0, 0) }));
    for index in 0..total {
        let service = ServiceTime::exponential_ms(setup.param("service_ms") as u64);
        let station = Station::new(setup.param("workers") as u32, service).bounded(QUEUE, Full::Reject);
        sim.add_node(Lb::Instance(Instance { index, station, received: 0, share_pct: 0 }));
    }
    for index in 0..clients {
        let arrivals = OpenLoop::poisson(setup.param("rps") as f64 / clients as f64);
        let (calls, judge) = (Calls::new("latency_us"), Judge::new(MICROS_PER_S, ANSWERS, ANSWERS));
        sim.add_node(Lb::Client(Client { index, arrivals, calls, judge }));
    }
    let slow = FaultWindow::secs(setup.param("slow_at"), setup.param("slow_len"));
    slow.custom(&mut sim, "slow", Some(1), setup.param("slow_factor"), 1);
    let add = Fault::Custom { id: "add".into(), node: None, value: (total - active) as i64 };
    if total > active {
        sim.schedule(Time::from_secs(setup.param("add_at") as u64), add);
    }
    sim.check("load-spread", |w| w.node::<Balancer>(BALANCER).spread(w.param("workers")));
    sim.check("p99-bounded", |w| {
        let (judges, b): (Vec<&Judge>, _) = (w.all::<Client>().map(|(_, c)| &c.judge).collect(), w.node::<Balancer>(0));
        let (v, bound, (i, n, _)) =
            (verdict_of(judges, w.now, Time::ZERO), w.param("p99_ms"), b.loads.max_mean(b.active));
        let why = || format!("{} over {bound} ms or failed; instance {i} has {n} in flight", v.describe(MICROS_PER_S));
        (!v.fails(1)).then_some(()).ok_or_else(why)
    });
    Box::new(sim)
}

impl Node for Lb {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Lb::Client(c) => return c.arrivals.start(ctx, Timer::Send),
            Lb::Instance(_) => ctx.send(BALANCER, Msg::Up),
            Lb::Balancer(_) => {}
        }
        ctx.set_timer(MICROS_PER_S, Timer::Tick);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Lb::Balancer(b), Msg::Request(id)) => b.forward(from, id, ctx),
            (Lb::Balancer(b), Msg::Reply(id, ok)) => b.answered(from as usize - 1, Some((id, ok)), ctx),
            (Lb::Balancer(b), Msg::Up) => b.answered(from as usize - 1, None, ctx),
            (Lb::Instance(i), Msg::Request(id)) => i.request(id, ctx),
            (Lb::Client(c), Msg::Answer(id, ok)) => c.answered(id, Some(ok), ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Lb::Balancer(b), Timer::Tick) => b.tick(ctx),
            (Lb::Instance(i), Timer::Tick) => i.tick(ctx),
            (Lb::Instance(i), Timer::Done(slot)) => {
                let done = i.station.done(slot, ctx, Timer::Done);
                (i.index == 0).then(|| ctx.count("served_0", done.is_some() as i64));
                done.into_iter().for_each(|f| ctx.send(BALANCER, Msg::Reply(f.job, true)));
                (i.index == 0).then(|| ctx.gauge("queue_0", i.station.queue_len() as i64));
            }
            (Lb::Client(c), Timer::Send) => c.send(ctx),
            (Lb::Client(c), Timer::Timeout(id)) => c.answered(id, None, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Lb::Balancer(b) => (0..b.total).for_each(|i| b.answered(i, None, ctx)),
            Lb::Instance(i) => drop(i.station.crash(ctx)),
            Lb::Client(c) => drop(c.calls.clear(ctx)),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Lb::Balancer(b), Control::Strategy(id)) => b.switch(Strategy::from_id(id)),
            (Lb::Balancer(b), Control::Custom { id: "add", value: n }) => b.active = b.total.min(b.active + n as usize),
            (Lb::Instance(i), Control::Custom { id: "slow", value }) => i.station.set_slowdown_pct(value as u32 * 100),
            (Lb::Client(c), Control::Param { id: "rps", value }) => {
                c.arrivals.set_rate_per_s(value as f64 / ctx.param("clients") as f64, ctx, Timer::Send)
            }
            // Other parameters are read where used; nodes ignore the strategies and faults not theirs.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Lb::Balancer(b) => b.view(),
            Lb::Instance(i) => i.view(),
            Lb::Client(c) => NodeView::new(NodeKind::Client, 0, numbered("client", c.index as u64)),
        }
    }
}

impl Balancer {
    fn forward(&mut self, from: NodeId, id: CallId, ctx: &mut Ctx<Lb>) {
        let (rotation, loads) = ((0..self.active).collect::<Vec<_>>(), &self.loads);
        let target = match self.strategy {
            Strategy::Pinned => self.pinned(from as usize - 1 - self.total, &rotation, ctx),
            _ => self.chooser.pick(&rotation, |i| loads.inflight(i), ctx.rng()),
        };
        let Some(i) = target else { return ctx.send(from, Msg::Answer(id, false)) };
        self.loads.sent(i);
        ctx.send(1 + i as NodeId, Msg::Request(id));
        self.publish(ctx);
    }

    /// The instance a client's connection is on; a missing or too old one is (re)opened, round robin.
    fn pinned(&mut self, client: usize, rotation: &[usize], ctx: &mut Ctx<Lb>) -> Option<usize> {
        let life = ctx.param("conn_life_s") as u64 * MICROS_PER_S;
        if let Some((i, _)) = self.pins[client].filter(|p| life == 0 || ctx.truth() < p.1.plus(life)) {
            return Some(i);
        }
        let i = self.chooser.pick(rotation, |_| 0, ctx.rng())?;
        self.pins[client] = Some((i, ctx.truth()));
        Some(i)
    }

    /// An answer from instance `i` (`Some(ok)`), or `i` restarted empty, its connections lost (`None`).
    fn answered(&mut self, i: usize, answer: Option<(CallId, bool)>, ctx: &mut Ctx<Lb>) {
        match answer {
            Some((id, ok)) => (self.loads.ended(i), ctx.send(id.node(), Msg::Answer(id, ok))).1,
            None => self.loads.reset(i),
        }
        self.pins.iter_mut().filter(|p| answer.is_none() && p.is_some_and(|(at, _)| at == i)).for_each(|p| *p = None);
        self.publish(ctx);
    }

    /// Leaving pinning closes every connection; taking it up opens them as requests come.
    fn switch(&mut self, strategy: Strategy) {
        self.pins.iter_mut().for_each(|p| *p = None);
        (self.strategy, _) = (strategy, self.chooser.set_rule(RULES[strategy as usize]));
    }

    /// The busiest share of the last second, or of the seconds since the last roll if it had too few.
    fn tick(&mut self, ctx: &mut Ctx<Lb>) {
        ctx.set_timer(MICROS_PER_S, Timer::Tick);
        (self.loads.unrolled() >= SHARE_MIN * self.active as u64).then(|| self.busiest = self.loads.roll());
        ctx.gauge("busiest_share_pct", self.busiest.1 as i64);
    }

    /// In flight against the mean (a queue piling up); the busiest share against the fair one (pinning).
    fn spread(&self, workers: i64) -> Result<(), String> {
        let (i, n, mean) = self.loads.max_mean(self.active);
        let bound = SPREAD * mean + 2.0 * workers as f64;
        let piled =
            || format!("instance {i} has {n} in flight, over 2 × the mean + 2 × {workers} workers = {bound:.1}");
        (n as f64 <= bound).then_some(()).ok_or_else(piled)?;
        let ((i, pct), fair) = (self.busiest, 100.0 / self.active as f64);
        let why = || format!("instance {i} got {pct}% of the requests, over twice its fair share {fair:.1}%");
        (pct as f64 <= SPREAD * fair).then_some(()).ok_or_else(why)
    }

    fn publish(&self, ctx: &mut Ctx<Lb>) {
        let (_, max, mean) = self.loads.max_mean(self.active);
        ctx.gauge("max_inflight", max as i64);
        ctx.gauge("mean_inflight_x100", (mean * 100.0) as i64);
    }

    /// The rule; under pinning, how many instances the connections are on.
    fn view(&self) -> NodeView {
        let on: std::collections::BTreeSet<usize> = self.pins.iter().flatten().map(|p| p.0).collect();
        let conns = self.pins.iter().flatten().count();
        let tone = if on.len() * 2 < self.active { Tone::Bad } else { Tone::Neutral };
        NodeView::new(NodeKind::LoadBalancer, 1, "balancer")
            .badge(SPEC.strategies[self.strategy as usize].label, Tone::Neutral)
            .gauge("busiest instance's share", self.busiest.1 as i64, 100)
            .badge(format!("{} instances in rotation", self.active), Tone::Neutral)
            .badge_if(conns > 0, format!("{conns} connections on {} instances", on.len()), tone)
    }
}

impl Instance {
    fn request(&mut self, id: CallId, ctx: &mut Ctx<Lb>) {
        self.received += 1;
        if let Offer::Rejected(id) | Offer::Blocked(id) = self.station.offer(id, ctx, Timer::Done) {
            ctx.send(BALANCER, Msg::Reply(id, false));
        }
        (self.index == 0).then(|| ctx.gauge("queue_0", self.station.queue_len() as i64));
    }

    fn tick(&mut self, ctx: &mut Ctx<Lb>) {
        ctx.set_timer(MICROS_PER_S, Timer::Tick);
        self.share_pct = std::mem::take(&mut self.received) * 100 / ctx.param("rps").max(1) as u64;
    }

    /// Queue and workers as gauges; its share of the traffic (spares show 0% until they join).
    fn view(&self) -> NodeView {
        let (v, slow) =
            (NodeView::new(NodeKind::Service, 2, numbered("instance", self.index as u64)), self.station.slowdown_pct());
        let tone = if self.share_pct == 0 { Tone::Neutral } else { Tone::Good };
        v.gauge("queue", self.station.queue_len() as i64, QUEUE as i64)
            .gauge("in service", self.station.busy() as i64, self.station.servers() as i64)
            .badge(format!("{}% of traffic", self.share_pct), tone)
            .badge_if(slow > 100, format!("slow ×{}", slow / 100), Tone::Bad)
    }
}

impl Client {
    fn send(&mut self, ctx: &mut Ctx<Lb>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        let id = self.calls.start(ctx, (), ctx.param("timeout_ms") as Micros * MICROS_PER_MS, Timer::Timeout);
        ctx.send(BALANCER, Msg::Request(id));
    }

    /// An answer, ok or not, or a timeout (`None`), judged for the check.
    fn answered(&mut self, id: CallId, answer: Option<bool>, ctx: &mut Ctx<Lb>) {
        let took = self.calls.sent_at(id).map(|t| ctx.now().since(t));
        let ended = match answer {
            Some(true) => self.calls.reply(id, ctx),
            Some(false) => self.calls.cancel(id, ctx),
            None => self.calls.timeout(id),
        };
        let (Some(()), Some(took)) = (ended, took) else { return };
        let ok = answer == Some(true) && took <= ctx.param("p99_ms") as Micros * MICROS_PER_MS;
        ctx.count(if answer == Some(true) { "ok" } else { "failed" }, 1);
        self.judge.record(ctx.truth(), !ok, if answer == Some(true) { took } else { u64::MAX });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, samples};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("load-balancing", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        crate::parts::testing::run_sampled(&SPEC, &recipe, secs, &[]).0
    }

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    fn views(r: &dyn Run) -> Vec<NodeView> {
        r.frame(0).nodes.into_iter().map(|n| n.view).collect()
    }

    fn badge(v: &NodeView, starts: &str) -> Option<String> {
        v.badges.iter().map(|b| b.text.clone()).find(|t| t.starts_with(starts))
    }

    /// An instance's share of the traffic in the last whole second, from its badge (%).
    fn share(v: &NodeView) -> u64 {
        badge(v, "").and_then(|t| t.split('%').next()?.parse().ok()).unwrap_or(0)
    }

    #[test]
    fn adding_more_instances_than_the_spares_is_capped_not_a_crash() {
        // After the five spares joined at 20 s, another "add" (or one with no spares at all)
        // has nothing to add: the rotation stays at the instances that exist.
        let add = |at: u64| (Time::from_secs(at), ActionKind::Fault(Fault::custom("add", 40)));
        for (added, at) in [(5, 25), (0, 5)] {
            let (at, action) = add(at);
            let recipe = Recipe::new(SPEC.id(), "two-choices", 1).with_param("added", added).with_action(at, action);
            let (mut run, problems) = open(&SPEC, &recipe);
            assert!(problems.is_empty(), "{problems:?}");
            run.run_until(Time::from_secs(30), u64::MAX);
            let frame = run.frame(0);
            let view = &frame.nodes.iter().find(|n| n.view.label.starts_with("balancer")).expect("a balancer").view;
            let want = format!("{} instances in rotation", 10 + added);
            assert!(view.badges.iter().any(|b| b.text == want), "added {added}: {:?}", view.badges);
        }
    }

    #[test]
    fn try_round_robin_keeps_feeding_the_slow_instance() {
        // Step 1: from 10 s instance 0 serves 4 / 200 ms = 20 req/s and round robin sends it a
        // tenth of 1,200: its queue of 100 fills within a second and the excess gets 503.
        for (st, seed) in [("round-robin", 1), ("round-robin", 2), ("random", 1), ("random", 2)] {
            let r = run(recipe(st, seed), 15);
            let (at, why) = failed_at(r.as_ref(), "p99-bounded").expect("p99 fails");
            assert!((10.5..12.1).contains(&at) && why.contains("instance 0 has"), "{st} {seed}: {at} {why}");
            assert!(failed_at(r.as_ref(), "load-spread").is_some(), "{st} {seed}");
            let queue = samples(r.as_ref(), "queue_0", 11.5, 15.0);
            assert!(queue.iter().all(|&q| q >= 80.0), "{st} {seed}: {queue:?}");
            assert!(r.metrics().counter("failed") > 300, "{st} {seed}");
        }
    }

    /// When check `id` last failed (s), if ever; whether it still fails at the end.
    fn last_failed(r: &dyn Run, id: &str) -> (Option<f64>, bool) {
        let c = r.checks().iter().find(|c| c.id == id).expect("a check");
        let last = c.bands.last().map(|b| b.to.unwrap_or(Time::MAX).min(Time::from_secs(3600)).as_secs_f64());
        (last, c.bands.last().is_some_and(|b| b.to.is_none()))
    }

    #[test]
    fn the_slow_instance_serves_a_sixtieth_of_the_traffic() {
        // The note: 4 workers / (10 × 20 ms) = 20 req/s of 1,200, a sixtieth, while round robin
        // sends it a tenth. Counted from 11 s to 19 s (its queue full, its workers never idle):
        // 160 expected; a busy M/M/4 server's departures are Poisson, s.d. 12.6: ±20%.
        for seed in 1..=3 {
            let at = crate::parts::testing::run_sampled(&SPEC, &recipe("round-robin", seed), 19, &["served_0"]).1;
            let rate = crate::parts::testing::between(&at, 0, 11, 19) / 8.0;
            assert!((rate - 1200.0 / 60.0).abs() <= 4.0, "seed {seed}: {rate} req/s served, a sixtieth is 20");
        }
    }

    #[test]
    fn try_switching_mid_run_routes_around_the_slow_instance() {
        // Step 2 as a user does it: round robin fails at 11 s; switched at 12 s, instance 0 gets
        // nothing new while its full queue drains (100 × 200 ms / 4 workers = 5 s at most), then
        // only what it can serve. From 17.5 s its queue stays short and both checks hold: their
        // last violation band closed by 18 s (the last second's late answers age out of the
        // judge's window within a second of the drain).
        for st in ["least-connections", "two-choices"] {
            for seed in 1..=3 {
                let switch = ActionKind::SetStrategy { id: st.into() };
                let r = run(recipe("round-robin", seed).with_action(Time::from_secs(12), switch), 30);
                assert!(failed_at(r.as_ref(), "p99-bounded").is_some_and(|(at, _)| at < 12.0), "{st} {seed}");
                let queue = samples(r.as_ref(), "queue_0", 17.5, 30.0);
                assert!(queue.iter().all(|&q| q <= 10.0), "{st} {seed}: {queue:?}");
                for check in ["load-spread", "p99-bounded"] {
                    let (last, open) = last_failed(r.as_ref(), check);
                    assert!(!open && last.is_none_or(|t| t <= 18.0), "{st} {seed} {check}: last band to {last:?}");
                }
            }
        }
    }

    #[test]
    fn p99_is_judged_at_a_low_rate_too() {
        // At 50 req/s no second has 100 answers: a "judge a second once it has 100" rule never
        // spoke. The judge falls back to the last 100 answers. With instance 0 30× slow (600 ms
        // mean), round robin gives it a tenth, of which P(exp > 500 ms) = 43% or more is late: over
        // 4% of all, four times the 1%: it fails, naming instance 0. With nothing slow, every
        // answer takes about 20 ms (P(exp(20 ms) > 500 ms) = e⁻²⁵): no strategy fails.
        let low = |st: &str, seed| recipe(st, seed).with_param("rps", 50).with_param("slow_factor", 30);
        for seed in 1..=3 {
            let r = run(low("round-robin", seed), 30);
            let (at, why) = failed_at(r.as_ref(), "p99-bounded").expect("p99 fails at 50 req/s");
            assert!((10.0..16.0).contains(&at) && why.contains("of the last 100 answers"), "seed {seed}: {at} {why}");
            for st in ["round-robin", "random", "least-connections", "two-choices"] {
                let r = run(low(st, seed).with_param("slow_len", 0).with_param("added", 0), 30);
                assert_eq!(failed_at(r.as_ref(), "p99-bounded"), None, "{st} {seed}");
            }
        }
    }

    #[test]
    fn load_spread_catches_pinning_even_with_headroom() {
        // At 150 req/s each pinned instance gets 50 of the 200 it can serve: nothing piles up (about
        // 1 in flight, under 2 × the mean + 8), but each of the three has a third of the requests,
        // over twice the fair 10%: the check fails within the first seconds, naming one of the three.
        // Round robin and two choices at the same rate hold (their busiest has 10–13%).
        for seed in 1..=3 {
            let calm = |st: &str| recipe(st, seed).with_param("rps", 150).with_param("slow_len", 0);
            let r = run(calm("pinned"), 10);
            let (at, why) = failed_at(r.as_ref(), "load-spread").expect("pinning is caught");
            assert!(at <= 2.0 && why.contains("% of the requests, over twice its fair share 10.0%"), "{at} {why}");
            assert!(["instance 0 ", "instance 1 ", "instance 2 "].iter().any(|i| why.starts_with(i)), "{why}");
            for st in ["round-robin", "two-choices"] {
                assert_eq!(failed_at(run(calm(st), 30).as_ref(), "load-spread"), None, "{st} {seed}");
            }
        }
    }

    #[test]
    fn with_one_worker_an_instance_is_a_supermarket_queue() {
        // The scenario with one worker per instance is Mitzenmacher's supermarket model: n FIFO
        // servers, exponential service, Poisson arrivals at λn, each joining the shorter of two
        // random queues. As n → ∞ the share of servers with ≥ i requests is λ^(2^i − 1) (two
        // choices) against λ^i (random: M/M/1). Here λ = 0.9 (2,250 req/s on 50 instances at
        // 20 ms), sampled every 100 ms from 5 s to 65 s; the queue counted is the instance's own
        // (queue + in service). Measured (seeds 1, 2): random within 0.03 of λ^i at every level;
        // two choices within 0.02 up to ≥ 3, then above the limit by 0.02–0.045 at ≥ 4 and 0.02–0.035
        // at ≥ 5 (0.06–0.07 against 0.038): n = 50 is far from n → ∞ (the finite-n correction
        // raises the tail), and the balancer compares in-flight counts that include 0.4–1.6 ms of
        // links, so it reads the queues a little late. Tolerance ±0.06 for both (random's M/M/1
        // queues relax over ~8 s, so 60 s hold few independent looks); and the doubly exponential
        // fall shows: at ≥ 5 two choices leave under a fifth of random's share (the model: 1/15).
        let lambda: f64 = 0.9;
        let mut tail = [0.0; 2];
        for (st, d) in [("two-choices", 2), ("random", 1)] {
            let r = recipe(st, 1)
                .with_param("instances", 50)
                .with_param("added", 0)
                .with_param("workers", 1)
                .with_param("slow_len", 0)
                .with_param("timeout_ms", 60_000)
                .with_param("rps", 2250);
            let (mut r, problems) = open(&SPEC, &r);
            assert!(problems.is_empty());
            r.keep_trace(false);
            let mut ge = [0.0; 6];
            for k in 50..650u64 {
                r.run_until(Time::from_ms(100 * k), u64::MAX);
                for v in views(r.as_ref()).iter().skip(1).take(50) {
                    let queue = v.gauges.iter().filter(|g| g.label == "queue" || g.label == "in service");
                    let n: i64 = queue.map(|g| g.value).sum();
                    (0..6).filter(|&i| n >= i as i64).for_each(|i| ge[i] += 1.0 / (600.0 * 50.0));
                }
            }
            for (i, &share) in ge.iter().enumerate().skip(1) {
                let want = libm::pow(lambda, if d == 2 { (1u64 << i) as f64 - 1.0 } else { i as f64 });
                assert!((share - want).abs() <= 0.06, "{st}, ≥ {i}: {share:.3} vs the model's {want:.3} ({ge:?})");
            }
            tail[d - 1] = ge[5];
        }
        assert!(tail[1] < tail[0] / 5.0, "≥ 5: two choices {:.3}, random {:.3}", tail[1], tail[0]);
    }

    #[test]
    fn try_least_connections_and_two_choices_route_around_it() {
        // Step 2: the slow instance's count stays high, so it is picked only when it has room.
        for st in ["least-connections", "two-choices"] {
            for seed in 1..=3 {
                let r = run(recipe(st, seed), 30);
                assert_eq!((failed_at(r.as_ref(), "load-spread"), failed_at(r.as_ref(), "p99-bounded")), (None, None));
                let queue = samples(r.as_ref(), "queue_0", 10.0, 20.0);
                assert!(queue.iter().all(|&q| q <= 10.0), "{st} {seed}: {queue:?}");
                let p99 = r.metrics().histogram("latency_us").unwrap().quantile(0.99);
                assert!(p99 < 500_000, "{st} {seed}: p99 {p99} us");
            }
        }
    }

    #[test]
    fn try_pinned_connections_put_everything_on_a_few_and_newcomers_get_nothing() {
        // Step 3: three connections, opened round robin on instances 0, 1, 2, carry it all:
        // 400 req/s each on instances that serve 200. The five that join at 20 s get nothing.
        for seed in 1..=3 {
            let r = run(recipe("pinned", seed), 25);
            let (at, _) = failed_at(r.as_ref(), "load-spread").expect("spread fails");
            assert!(at < 1.0, "seed {seed}: {at}");
            let busiest = samples(r.as_ref(), "busiest_share", 2.0, 25.0);
            assert!(busiest.iter().all(|&s| (30.0..=37.0).contains(&s)), "seed {seed}: {busiest:?}");
            let v = views(r.as_ref());
            let shares: Vec<u64> = (0..15).map(|i| share(&v[1 + i])).collect();
            assert!(shares[..3].iter().all(|&s| s >= 20) && shares[3..].iter().all(|&s| s == 0), "{shares:?}");
            assert_eq!(badge(&v[0], "3 connections").as_deref(), Some("3 connections on 3 instances"));
        }
        // The seed's 2 of 20: half the traffic on each of two instances.
        let r =
            run(recipe("pinned", 1).with_param("clients", 2).with_param("instances", 20).with_param("added", 0), 10);
        let busiest = samples(r.as_ref(), "busiest_share", 2.0, 10.0);
        assert!(busiest.iter().all(|&s| (47.0..=53.0).contains(&s)), "{busiest:?}");
        let v = views(r.as_ref());
        assert_eq!((0..20).filter(|&i| share(&v[1 + i]) > 0).count(), 2);
    }

    #[test]
    fn try_a_connection_lifetime_moves_the_hot_spot_without_spreading_it() {
        // Step 4: connections reopened every 2 s move round robin, newcomers included, but at
        // any moment three connections carry everything: the busiest still has about a third.
        let (mut r, problems) = open(&SPEC, &recipe("pinned", 1).with_param("conn_life_s", 2));
        assert!(problems.is_empty());
        let mut newcomers = 0;
        for s in 21..=30 {
            r.run_until(Time::from_secs(s), u64::MAX);
            let v = views(r.as_ref());
            newcomers += (10..15).filter(|&i| share(&v[1 + i]) > 0).count();
        }
        assert!(newcomers >= 3, "{newcomers}");
        let busiest = samples(r.as_ref(), "busiest_share", 2.0, 30.0);
        assert!(mean(&busiest) >= 25.0, "{busiest:?}");
        assert!(failed_at(r.as_ref(), "load-spread").is_some());
    }

    #[test]
    fn with_no_fault_two_choices_keep_the_fullest_instance_far_below_random() {
        // The queueing view of balls into bins (Mitzenmacher's supermarket model; the part's
        // tests check its numbers). Here the instances have 4 workers and the loads are requests
        // in flight, so there is no closed form to hold the scenario to; what the theory says
        // about the ordering must show: random's most loaded instance carries more than two
        // choices', which carries no less than least connections' (which sees every count).
        // Over 60 s (seeds 1–3) the time-averaged most in flight: random 6.9–7.2, two choices 3.9–4.0,
        // least connections 3.2; the bounds leave about a request of room.
        let base = |st: &str, seed| recipe(st, seed).with_param("slow_len", 0).with_param("added", 0);
        for seed in 1..=3 {
            let m: Vec<f64> = ["random", "two-choices", "least-connections"]
                .map(|st| mean(&samples(run(base(st, seed), 60).as_ref(), "max_load", 1.0, 60.0)))
                .to_vec();
            assert!(m[0] > m[1] + 2.0 && m[1] + 0.2 >= m[2], "seed {seed}: random, two, least {m:?}");
        }
    }

    #[test]
    fn switching_to_least_connections_drains_the_slow_instance() {
        // Switched at 12 s, with instance 0's queue full: least connections sends it nothing
        // until its 100 queued drain (100 × 200 ms / 4 workers = 5 s at most), then its share.
        let switch = ActionKind::SetStrategy { id: "least-connections".into() };
        let r = run(recipe("round-robin", 1).with_action(Time::from_secs(12), switch), 30);
        let queue = samples(r.as_ref(), "queue_0", 18.0, 30.0);
        assert!(queue.iter().all(|&q| q <= 10.0), "{queue:?}");
        assert!(samples(r.as_ref(), "failed", 18.0, 30.0).iter().all(|&f| f <= 10.0));
    }
}
