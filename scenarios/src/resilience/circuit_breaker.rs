//! Circuit breaker: clients → service → downstream. When the downstream fails or slows, the service can keep calling it (and exhaust its own pool), trip a breaker that fails fast and probes for recovery, or trip a breaker and answer from a fallback.
//!
//! The service's pool has no queue: it is a loss system (M/G/c/c), where a local request holds a worker 5 ms and a
//! request that needs the downstream holds one until its call is answered or times out — so a slow downstream fills
//! the pool with waiting workers and the service refuses even the work that never needed the downstream.

use crate::parts::arrivals::OpenLoop;
use crate::parts::breaker::{Admit, Breaker, Judged, Tuning};
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{Dependency, FaultWindow};
use crate::parts::pool::{Pool, Seat};
use crate::parts::station::Service as ServiceTime;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "circuit-breaker",
        title: "Circuit breaker",
        category: "Resilience",
        seeds: &["S0#3", "S1#26", "S1#30", "S3#47"],
        summary: "The downstream goes down, then turns slow. Without a breaker the service keeps hammering it and its \
                  own pool fills with doomed calls; a breaker fails fast, spares the downstream and probes it back \
                  to health; a fallback keeps users served meanwhile.",
        note: Note {
            what_can_go_wrong: "Calls to a dead or slow dependency hold threads and connections until they time out: \
                the caller's pool fills, healthy work queues behind doomed calls, and the retries and full load keep \
                the sick dependency from recovering.",
            what_you_sacrifice: "While open, the breaker refuses calls that might have succeeded; it needs enough \
                traffic to judge (minimum requests) and takes a window to notice. A fallback answers with stale or \
                default data that users may not notice is stale.",
            at_10x: "With many instances each holding its own breaker, they open at different times and probe \
                independently: the sum of probes can itself be a load spike. Thresholds tuned at one traffic level \
                misfire at another; per-endpoint breakers multiply the state to watch.",
            resembles: "Hystrix and resilience4j (sliding windows, half-open trial calls), Envoy outlier detection, \
                Polly in .NET, Netflix's API gateway fallbacks. The model: Poisson clients; a service pool with no \
                queue (a full pool answers 503 at once); a downstream with no capacity limit whose health follows \
                the fault plan, not its load (a real one can be kept down by it); a breaker whose window is a \
                sliding-window counter of failures and successes (timeouts count as failures) and whose fallback is \
                the last good answer, kept in memory.",
            try_this: &[
                "Play `none`: during the outage the downstream keeps receiving the full load and `downstream-spared` \
                 fails; during the slowdown its pool fills with stuck calls and even local requests get 503s.",
                "Switch to `breaker`: it opens within a second of the outage, the downstream sees only probes, \
                 and it closes soon after the downstream heals.",
                "Switch to `breaker-fallback`: user success stays high through both incidents (answers are marked \
                 degraded).",
                "Raise the minimum requests above the traffic in one window: the breaker never trips.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=100, 4, "Client nodes; the request rate is split between them."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=5000, 100, "Total Poisson request rate from the clients."),
        ParamSpec::live("dependent_pct", "Requests needing the downstream", "%", 0..=100, 50, "The rest are served by the service alone (5 ms of work) — unless its pool is full."),
        ParamSpec::live("pool", "Service pool", "workers", 1..=1000, 20, "Requests the service works on at once (a worker waits for its downstream call); beyond it, 503."),
        ParamSpec::live("call_timeout_ms", "Call timeout", "ms", 10..=10_000, 1000, "How long the service waits for the downstream.").step(10),
        ParamSpec::live("downstream_ms", "Downstream latency", "ms", 1..=2000, 20, "Mean (exponential) time the downstream takes when healthy."),
        ParamSpec::live("error_pct", "Background errors", "%", 0..=100, 1, "Share of healthy downstream calls that fail anyway."),
        ParamSpec::live("threshold_pct", "Error threshold", "%", 1..=100, 50, "The breaker opens when this share of calls in the window failed."),
        ParamSpec::live("window_ms", "Rolling window", "ms", 200..=60_000, 1000, "The breaker judges the calls of about this last stretch of time (a sliding-window counter; a new length starts empty).").step(100),
        ParamSpec::live("min_requests", "Minimum requests", "calls", 1..=100_000, 20, "The breaker does not judge a window with fewer calls than this."),
        ParamSpec::live("open_ms", "Open duration", "ms", 100..=60_000, 1500, "How long the breaker stays open before trying half-open probes.").step(100),
        ParamSpec::live("probes", "Half-open probes", "calls", 1..=100, 3, "Trial calls let through in half-open; the breaker closes unless the threshold's share of them failed."),
        ParamSpec::setup("outage_at", "Outage starts", "s", 0..=3600, 6, "Scheduled fault: the downstream starts failing every call."),
        ParamSpec::setup("outage_len", "Outage length", "s", 0..=3600, 7, "How long the outage lasts (0: none)."),
        ParamSpec::setup("slow_at", "Slowdown starts", "s", 0..=3600, 17, "Scheduled fault: the downstream answers 3 s late (past the call timeout)."),
        ParamSpec::setup("slow_len", "Slowdown length", "s", 0..=3600, 8, "How long the slowdown lasts (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("none", "No breaker", "Every request calls the downstream."),
        StrategySpec::fixed("breaker", "Breaker", "Closed → open on errors (rolling window, minimum requests) → half-open probes → closed."),
        StrategySpec::fixed("breaker-fallback", "Breaker + fallback", "As `breaker`, and failed or refused calls are answered from the last good (cached) answer."),
    ],
    faults: &[
        FaultSpec::global("outage", "Downstream outage", "The downstream fails every call quickly.").value("on (1) / off (0)", 0..=1, 1),
        FaultSpec::global("slowness", "Downstream slowness", "Every downstream answer takes this much longer (0 heals).").value("extra ms", 0..=60_000, 3000),
    ],
    checks: &[
        CheckSpec::new("downstream-spared", "Sick downstream spared", "Once the downstream has been unhealthy for a rolling window plus a second (counted from the last change of strategy or breaker setting, if later), it receives no more than the half-open probes (plus a pool's worth of calls under way) per second."),
        CheckSpec::new("recloses", "Breaker closes after recovery", "Within an open duration (or a call timeout, if longer), another open duration and a second of the downstream healing, the breaker is closed again."),
    ],
    metrics: &[
        MetricSpec::new("success", "User success (fallback answers count)", "%", Measure::Percent { num: "ok", rest: "failed" }),
        MetricSpec::new("degraded", "Answered by fallback", "req/s", Measure::Rate("fallback")),
        MetricSpec::new("downstream_load", "Downstream load", "req/s", Measure::Rate("downstream_calls")),
        MetricSpec::new("latency_p99", "Latency p99 (every answer, 503s too)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("breaker", "Breaker state (0 closed, 1 half-open, 2 open)", "", Measure::Gauge("breaker_state")),
        MetricSpec::new("pool_busy", "Pool in use", "workers", Measure::Gauge("pool_busy")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(model(setup)),
};

const SERVICE: NodeId = 0;
const DOWNSTREAM: NodeId = 1;
/// What a local request costs the service, and how soon a downstream that is down says so.
const LOCAL_WORK: Micros = 5 * MICROS_PER_MS;
const FAIL_FAST: Micros = 5 * MICROS_PER_MS;

/// Client ↔ service messages carry when the client sent the request (its clock: its latency).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    /// A request that needs the downstream, and one the service answers alone.
    Request(Time),
    #[label = "request (local)"]
    Local(Time),
    #[label = "200"]
    Served(Time),
    #[label = "200 (fallback)"]
    FromCache(Time),
    #[label = "503"]
    Unavailable(Time),
    Call(CallId),
    #[label = "ok"]
    Reply(CallId),
    Error(CallId),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    CallTimeout(CallId),
    LocalDone(Seat),
    HalfOpen,
}

#[derive(Clone, Debug, Holds)]
pub enum Cb {
    Client(Client),
    Service(Box<Service>),
    Downstream(Dependency),
}

#[derive(Clone, Debug)]
pub struct Client {
    index: u32,
    arrivals: OpenLoop,
}

#[derive(Clone, Debug)]
pub struct Service {
    /// The strategy: calls go through the breaker or not, and a fallback stands behind it or not.
    breaks: bool,
    fallback: bool,
    breaker: Breaker,
    /// The workers, each held by a request (who sent it, when) until it is answered: no queue.
    pool: Pool<(NodeId, Time)>,
    /// The call timeout in force (the breaker keeps its own settings).
    timeout: Micros,
    /// Requests waiting on the downstream: each holds a worker (its seat) until answered or
    /// timed out, and may be a probe.
    calls: Calls<(Seat, bool)>,
    /// Whether a good answer has been seen, for the fallback to serve (in memory: a crash loses it).
    cached: bool,
    /// For the checks: the true time from which the service runs under its present strategy
    /// and settings with no call left from earlier ones.
    settled: Time,
}

fn model(setup: &Setup) -> Sim<Cb> {
    let mut sim: Sim<Cb> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 5_000 }));
    let service = Service {
        breaks: setup.strategy() != "none",
        fallback: setup.strategy() == "breaker-fallback",
        breaker: Breaker::new(Tuning::from_params(|id| setup.param(id))),
        pool: Pool::new(setup.param("pool") as u32).bounded(0),
        timeout: setup.param("call_timeout_ms") as Micros * MICROS_PER_MS,
        calls: Calls::new("call_latency_us").counting_late("late_answers"),
        cached: false,
        settled: Time::ZERO,
    };
    assert_eq!(sim.add_node(Cb::Service(Box::new(service))), SERVICE);
    // The downstream's health (for the checks: when it last fell sick or healed, true time).
    assert_eq!(sim.add_node(Cb::Downstream(Dependency::default())), DOWNSTREAM);
    sim.net().set_link(SERVICE, DOWNSTREAM, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let clients = setup.param("clients");
    for index in 0..clients as u32 {
        let arrivals = OpenLoop::poisson(setup.param("rps") as f64 / clients as f64);
        sim.add_node(Cb::Client(Client { index, arrivals }));
    }
    let plan = |at, len| FaultWindow::secs(setup.param(at), setup.param(len));
    plan("outage_at", "outage_len").custom(&mut sim, "outage", None, 1, 0);
    plan("slow_at", "slow_len").custom(&mut sim, "slowness", None, 3000, 0);
    // Both checks judge the breaker by the settings it runs under (node state), from when it
    // has run under them: a setting changed mid-run is not held against what came before.
    sim.check("downstream-spared", |w| {
        let (s, d) = (w.node::<Box<Service>>(SERVICE), w.node::<Dependency>(DOWNSTREAM));
        // The downstream counts its calls in each second (true time) while sick; the breaker
        // has spared it by the settings in force from when they and the sickness began.
        match w.tallied.iter().find(|t| t.0 == "sick_calls") {
            Some(&(_, second, n)) if !d.health().is_up() => {
                s.breaker.spares(d.changed().max(s.settled), s.pool.size() as u64, second, n)
            }
            _ => Ok(()),
        }
    });
    sim.check("recloses", |w| {
        let (s, d) = (w.node::<Box<Service>>(SERVICE), w.node::<Dependency>(DOWNSTREAM));
        let healed = d.changed().max(s.settled);
        if d.health().is_up() {
            s.breaker.recloses(healed, w.now, s.timeout)
        } else {
            Ok(())
        }
    });
    sim
}

impl Node for Cb {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cb::Client(c) => c.arrivals.start(ctx, Timer::Send),
            // After a restart, the breaker starts afresh: it is judged from now on.
            Cb::Service(s) => s.settled = s.settled.max(ctx.truth()),
            Cb::Downstream(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Cb::Service(s), Msg::Request(sent)) => s.request(from, sent, true, ctx),
            (Cb::Service(s), Msg::Local(sent)) => s.request(from, sent, false, ctx),
            (Cb::Service(s), Msg::Reply(id)) => s.ended(id, Some(true), ctx),
            (Cb::Service(s), Msg::Error(id)) => s.ended(id, Some(false), ctx),
            (Cb::Downstream(d), Msg::Call(id)) => call(d, from, id, ctx),
            (Cb::Client(_), answer @ (Msg::Served(sent) | Msg::FromCache(sent) | Msg::Unavailable(sent))) => {
                ctx.observe("latency_us", ctx.now().since(sent));
                ctx.count(if matches!(answer, Msg::Unavailable(_)) { "failed" } else { "ok" }, 1);
                ctx.count("fallback", matches!(answer, Msg::FromCache(_)) as i64);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cb::Client(c), Timer::Send) => {
                c.arrivals.on_timer(ctx, Timer::Send);
                let (sent, dependent_pct) = (ctx.now(), ctx.param("dependent_pct") as u64);
                let dependent = ctx.rng().below(100) < dependent_pct;
                ctx.send(SERVICE, if dependent { Msg::Request(sent) } else { Msg::Local(sent) });
            }
            (Cb::Service(s), Timer::CallTimeout(id)) => s.ended(id, None, ctx),
            (Cb::Service(s), Timer::LocalDone(seat)) => {
                let (client, sent) = s.pool.release(seat, ctx).expect("a worker on local work").job;
                ctx.send(client, Msg::Served(sent));
                s.publish(ctx);
            }
            (Cb::Service(s), Timer::HalfOpen) => {
                s.breaker.half_open(ctx);
                s.publish(ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Cb::Service(s) = self {
            // All in memory: the calls and local work under way, the breaker, the cached answer.
            let (lost, _) = (s.pool.clear(ctx).len(), s.calls.clear(ctx));
            ctx.note(format!("{lost} requests in progress lost"));
            s.breaker.reset(ctx);
            s.cached = false;
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        let now = ctx.truth();
        match (self, c) {
            (Cb::Client(c), Control::Param { id: "rps", value }) => {
                let rate = value as f64 / ctx.param("clients") as f64;
                c.arrivals.set_rate_per_s(rate, ctx, Timer::Send);
            }
            (Cb::Service(s), Control::Strategy(id)) => {
                s.settle(ctx);
                (s.breaks, s.fallback) = (id != "none", id == "breaker-fallback");
                if !s.breaks {
                    s.breaker.reset(ctx);
                }
                s.publish(ctx);
            }
            (Cb::Service(s), Control::Param { .. }) => s.configure(ctx),
            (Cb::Downstream(d), Control::Custom { id: "outage", value }) => d.set_down(value == 1, now),
            (Cb::Downstream(d), Control::Custom { id: "slowness", value }) => {
                d.set_extra_us(value as Micros * MICROS_PER_MS, now)
            }
            _ => {} // every node hears every change; each acts on its own
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Cb::Client(c) => NodeView::new(NodeKind::Client, 0, numbered("client", c.index as u64)),
            Cb::Service(s) => {
                let phase = s.breaker.phase();
                NodeView::new(NodeKind::Service, 1, "service")
                    .gauge("pool", s.pool.held() as i64, s.pool.size() as i64)
                    .badge_if(s.breaks, format!("breaker {}", phase.name()), phase.tone())
            }
            Cb::Downstream(d) => {
                NodeView::new(NodeKind::Service, 2, "downstream").badge(d.health().to_string(), d.health().tone())
            }
        }
    }
}

impl Service {
    fn publish(&self, ctx: &mut Ctx<Cb>) {
        ctx.gauge("breaker_state", self.breaker.phase() as i64);
        ctx.gauge("pool_busy", self.pool.held() as i64);
    }

    fn request(&mut self, client: NodeId, sent: Time, dependent: bool, ctx: &mut Ctx<Cb>) {
        ctx.count("requests", 1);
        // The breaker's verdict comes first: refusing takes no worker.
        let verdict = if dependent && self.breaks { self.breaker.admit() } else { Admit::Pass };
        if verdict == Admit::Refuse {
            ctx.count("short_circuited", 1);
            return self.respond(client, sent, false, ctx);
        }
        let Ok(seat) = self.pool.try_acquire((client, sent)) else {
            // Every worker is busy — in a slowdown, mostly waiting on the downstream: the cascade.
            ctx.count(if dependent { "dependent_refused" } else { "local_refused" }, 1);
            if verdict == Admit::Probe {
                self.breaker.unprobe(); // the probe never left: let another request be one
            }
            return ctx.send(client, Msg::Unavailable(sent));
        };
        if dependent {
            let id = self.calls.start(ctx, (seat, verdict == Admit::Probe), self.timeout, Timer::CallTimeout);
            ctx.send(DOWNSTREAM, Msg::Call(id));
        } else {
            ctx.set_timer(LOCAL_WORK, Timer::LocalDone(seat));
        }
        self.publish(ctx);
    }

    /// Answers a dependent request: the downstream's answer, else (under `breaker-fallback`,
    /// once there is one) the last good answer, else 503.
    fn respond(&self, client: NodeId, sent: Time, ok: bool, ctx: &mut Ctx<Cb>) {
        let msg = match (ok, self.fallback && self.cached) {
            (true, _) => Msg::Served(sent),
            (false, true) => Msg::FromCache(sent),
            (false, false) => Msg::Unavailable(sent),
        };
        ctx.send(client, msg);
    }

    /// A call ended: `Some(ok)` with the downstream's answer, `None` at its timeout. An answer
    /// to a call no longer pending (it timed out, or a crash forgot it) is counted late and dropped.
    fn ended(&mut self, id: CallId, answer: Option<bool>, ctx: &mut Ctx<Cb>) {
        let call = if answer.is_some() { self.calls.reply(id, ctx) } else { self.calls.timeout(id) };
        let (Some((seat, probe)), ok) = (call, answer == Some(true)) else { return };
        let (client, sent) = self.pool.release(seat, ctx).expect("a call's worker").job;
        self.cached |= ok;
        self.respond(client, sent, ok, ctx);
        if self.breaks && self.breaker.record(ok, probe, ctx, Timer::HalfOpen) == Some(Judged::Opened) {
            ctx.count("trips", 1);
        }
        self.publish(ctx);
    }

    /// Reads the pool's and the breaker's settings again; a change restarts the checks' clock.
    fn configure(&mut self, ctx: &mut Ctx<Cb>) {
        let (size, timeout) = (ctx.param("pool") as u32, ctx.param_ms("call_timeout_ms"));
        let tuning = Tuning::from_params(|id| ctx.param(id));
        if (size, timeout, tuning) != (self.pool.size(), self.timeout, *self.breaker.tuning()) {
            self.settle(ctx);
            self.timeout = timeout;
            self.pool.set_size(size, ctx); // no queue: a larger pool has no one waiting to grant
            self.breaker.set_tuning(tuning);
        }
    }

    /// The checks judge the breaker again once every call made before a change has ended.
    fn settle(&mut self, ctx: &Ctx<Cb>) {
        self.settled = self.settled.max(ctx.truth().plus(self.timeout));
    }
}

/// The downstream answers a call. Down: a quick error. Up or slow: after its (slowed) time,
/// failing now and then anyway.
fn call(d: &Dependency, from: NodeId, id: CallId, ctx: &mut Ctx<Cb>) {
    ctx.count("downstream_calls", 1);
    if !d.health().is_up() {
        ctx.tally("sick_calls", ctx.truth().micros() / MICROS_PER_S, 1);
    }
    let fails = ctx.rng().below(100) < ctx.param("error_pct") as u64;
    let base = ServiceTime::exponential_ms(ctx.param("downstream_ms") as u64).sample_us(ctx.rng());
    let (ok, after) = d.answer(base, fails, FAIL_FAST);
    ctx.send_after(after, from, if ok { Msg::Reply(id) } else { Msg::Error(id) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::breaker::Phase;
    use crate::parts::queueing;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("circuit-breaker", strategy, seed)
    }

    fn start(recipe: Recipe) -> Sim<Cb> {
        let mut sim = model(&Setup { spec: &SPEC, recipe });
        sim.keep_trace(false);
        sim
    }

    fn run(recipe: Recipe, secs: u64) -> Sim<Cb> {
        let mut sim = start(recipe);
        sim.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(sim.unhandled(), 0);
        sim
    }

    fn counter(sim: &Sim<Cb>, name: &str) -> i64 {
        sim.metrics().counter(name)
    }

    fn verdict(sim: &Sim<Cb>, check: &str) -> Option<Time> {
        let c = sim.checks().iter().find(|c| c.id == check).expect("a declared check");
        c.violation.as_ref().map(|v| v.at)
    }

    #[test]
    fn the_naive_pool_in_a_slowdown_is_an_erlang_loss_system() {
        // `none`, the downstream slower than the call timeout from 10 s on: every dependent
        // request holds a worker exactly the timeout (1 s), every local one 5 ms, and a request
        // that finds all 20 busy is refused. That is M/G/c/c, whose refusal probability is
        // Erlang's B formula for the offered load a = λ·E[S] = 100/s × (½·1 s + ½·5 ms) = 50.25
        // erlangs, whatever the service distribution (insensitivity; Gross & Harris §2.6) — the
        // M/M/c/c value with the same mean. Arrivals at the service are Poisson (Poisson
        // clients, independent link delays), so they see the time averages (PASTA), local
        // requests included. 3000 s of slowdown, ~300k requests; the refused share's batch
        // standard error is ~0.3%: ±2% is > 5σ, and a worker held 10% longer moves B by ~3%.
        let r = recipe("none", 3).with_param("outage_len", 0).with_param("slow_at", 10).with_param("slow_len", 3600);
        let mut sim = run(r, 20);
        let refused = |s: &Sim<Cb>| counter(s, "dependent_refused") + counter(s, "local_refused");
        let (before, asked) = (refused(&sim), counter(&sim, "requests"));
        sim.run_until(Time::from_secs(3020), u64::MAX);
        let share = (refused(&sim) - before) as f64 / (counter(&sim, "requests") - asked) as f64;
        let b = queueing::mmck(100.0, 1.0 / 0.5025, 20, 20).block;
        assert!((share - b).abs() <= 0.02 * b, "refused {share:.4}, Erlang B {b:.4}");
        // Local requests, which never needed the downstream, are refused as often.
        let local = counter(&sim, "local_refused") as f64 / counter(&sim, "dependent_refused") as f64;
        assert!((local - 1.0).abs() < 0.03, "local / dependent refusals {local:.3}");
    }

    #[test]
    fn try_none_hammers_the_sick_downstream_and_starves_local_work() {
        // Step 1: during the outage (6–13 s) the downstream keeps getting the full dependent
        // load (50/s) and `downstream-spared` fails; in the slowdown (17–25 s) local requests get 503s.
        let mut sim = run(recipe("none", 1), 7);
        let calls = counter(&sim, "downstream_calls");
        assert_eq!(counter(&sim, "local_refused"), 0);
        sim.run_until(Time::from_secs(13), u64::MAX);
        let load = (counter(&sim, "downstream_calls") - calls) as f64 / 6.0;
        assert!(load > 40.0, "{load} calls/s during the outage");
        let failed = verdict(&sim, "downstream-spared").expect("the check fails in the outage");
        assert!(failed > Time::from_secs(8) && failed < Time::from_secs(13), "{failed:?}");
        sim.run_until(Time::from_secs(25), u64::MAX);
        assert!(counter(&sim, "local_refused") > 100, "local 503s: {}", counter(&sim, "local_refused"));
    }

    #[test]
    fn try_breaker_opens_fast_spares_the_downstream_and_recloses() {
        // Step 2: open within a second of the outage, only probes reach the downstream, closed
        // soon after it heals.
        for seed in 1..=5 {
            let mut sim = run(recipe("breaker", seed), 6);
            while counter(&sim, "trips") == 0 {
                assert!(sim.now() < Time::from_secs(7), "seed {seed}: not open a second into the outage");
                sim.step();
            }
            sim.run_until(Time::from_secs(7), u64::MAX);
            let calls = counter(&sim, "downstream_calls");
            sim.run_until(Time::from_secs(13), u64::MAX);
            // At most one round of 3 probes per 1.5 s open period.
            let probes = counter(&sim, "downstream_calls") - calls;
            assert!(probes <= 3 * 4, "seed {seed}: {probes} calls in 6 s of outage");
            sim.run_until(Time::from_secs(15), u64::MAX);
            assert_eq!(
                sim.node::<Box<Service>>(SERVICE).breaker.phase(),
                Phase::Closed,
                "seed {seed}: closed 2 s after"
            );
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
        }
    }

    #[test]
    fn try_fallback_keeps_users_served() {
        // Step 3: user success stays high through both incidents, with answers marked degraded.
        for seed in 1..=3 {
            let share = |sim: &Sim<Cb>| {
                let (ok, failed) = (counter(sim, "ok"), counter(sim, "failed"));
                ok as f64 / (ok + failed) as f64
            };
            let with = run(recipe("breaker-fallback", seed), 30);
            let without = run(recipe("breaker", seed), 30);
            assert!(share(&with) > 0.95 && share(&without) < 0.8, "seed {seed}");
            assert!(counter(&with, "fallback") > 500, "seed {seed}: answered by fallback");
        }
    }

    #[test]
    fn try_min_requests_above_the_traffic_never_trips() {
        // Step 4: 50 dependent requests a second never fill a 1 s window to 200 calls.
        let sim = run(recipe("breaker", 1).with_param("min_requests", 200), 30);
        assert_eq!(counter(&sim, "trips"), 0);
        assert!(verdict(&sim, "downstream-spared").is_some());
    }

    #[test]
    fn settings_changed_mid_run_are_not_held_against_the_breaker() {
        // Each change below made the checks, reading the parameters in force, fail a breaker
        // that did what its settings said: a 10 s open period cut to 0.1 s after it began (the
        // breaker still waits out the 10 s it opened with), a 20 s window cut to 1 s late in the
        // outage (seconds before were judged by the new grace), the strategy switched on mid-outage.
        let set = |id: &str, value| ActionKind::SetParam { id: id.into(), value };
        for fixed in ["breaker", "breaker-fallback"] {
            let cases = [
                (recipe(fixed, 1).with_param("open_ms", 10_000), 10, set("open_ms", 100)),
                (recipe(fixed, 1).with_param("window_ms", 20_000), 12, set("window_ms", 1000)),
                (recipe("none", 1), 7, ActionKind::SetStrategy { id: fixed.into() }),
                (recipe(fixed, 1), 7, set("probes", 1)),
                (recipe(fixed, 1), 8, set("pool", 1)),
                (recipe(fixed, 1), 18, set("call_timeout_ms", 5000)),
            ];
            for (r, at, action) in cases {
                for seed in 1..=3 {
                    let sim = run(Recipe { seed, ..r.clone() }.with_action(Time::from_secs(at), action.clone()), 30);
                    let bad: Vec<_> = sim.checks().iter().filter(|c| c.violation.is_some()).collect();
                    assert!(bad.is_empty(), "{fixed}: {action} at {at} s, seed {seed}: {bad:?}");
                }
            }
        }
    }

    #[test]
    fn the_naive_strategy_breaks_at_scale_and_the_breaker_holds() {
        let at_scale =
            |s: &str| recipe(s, 1).with_param("clients", 100).with_param("rps", 5000).with_param("pool", 1000);
        assert!(verdict(&run(at_scale("none"), 10), "downstream-spared").is_some());
        assert!(run(at_scale("breaker"), 10).checks().iter().all(|c| c.violation.is_none()));
    }
}
