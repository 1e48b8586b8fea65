//! Circuit breaker: clients → service → downstream. When the downstream fails or slows,
//! the service can keep calling it (and exhaust its own pool), trip a breaker that fails
//! fast and probes for recovery, or trip a breaker and answer from a fallback.

use faultline_core::*;
use std::collections::BTreeMap;

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
                Polly in .NET, Netflix's API gateway fallbacks.",
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
        ParamSpec {
            id: "clients",
            label: "Clients",
            unit: "",
            min: 1,
            max: 100,
            step: 1,
            default: 4,
            live: false,
            help: "Client nodes; the request rate is split between them.",
        },
        ParamSpec {
            id: "rps",
            label: "Request rate",
            unit: "req/s",
            min: 1,
            max: 5000,
            step: 1,
            default: 100,
            live: true,
            help: "Total Poisson request rate from the clients.",
        },
        ParamSpec {
            id: "dependent_pct",
            label: "Requests needing the downstream",
            unit: "%",
            min: 0,
            max: 100,
            step: 1,
            default: 50,
            live: true,
            help: "The rest are served by the service alone (5 ms of work) — unless its pool is full.",
        },
        ParamSpec {
            id: "pool",
            label: "Service pool",
            unit: "workers",
            min: 1,
            max: 1000,
            step: 1,
            default: 20,
            live: true,
            help: "Requests the service works on at once (a worker waits for its downstream call); beyond it, 503.",
        },
        ParamSpec {
            id: "call_timeout_ms",
            label: "Call timeout",
            unit: "ms",
            min: 10,
            max: 10_000,
            step: 10,
            default: 1000,
            live: true,
            help: "How long the service waits for the downstream.",
        },
        ParamSpec {
            id: "downstream_ms",
            label: "Downstream latency",
            unit: "ms",
            min: 1,
            max: 2000,
            step: 1,
            default: 20,
            live: true,
            help: "Mean (exponential) time the downstream takes when healthy.",
        },
        ParamSpec {
            id: "error_pct",
            label: "Background errors",
            unit: "%",
            min: 0,
            max: 100,
            step: 1,
            default: 1,
            live: true,
            help: "Share of healthy downstream calls that fail anyway.",
        },
        ParamSpec {
            id: "threshold_pct",
            label: "Error threshold",
            unit: "%",
            min: 1,
            max: 100,
            step: 1,
            default: 50,
            live: true,
            help: "The breaker opens when this share of calls in the window failed.",
        },
        ParamSpec {
            id: "window_ms",
            label: "Rolling window",
            unit: "ms",
            min: 200,
            max: 60_000,
            step: 100,
            default: 1000,
            live: true,
            help: "The breaker judges the calls of this last stretch of time (10 buckets).",
        },
        ParamSpec {
            id: "min_requests",
            label: "Minimum requests",
            unit: "calls",
            min: 1,
            max: 100_000,
            step: 1,
            default: 20,
            live: true,
            help: "The breaker does not judge a window with fewer calls than this.",
        },
        ParamSpec {
            id: "open_ms",
            label: "Open duration",
            unit: "ms",
            min: 100,
            max: 60_000,
            step: 100,
            default: 1500,
            live: true,
            help: "How long the breaker stays open before trying half-open probes.",
        },
        ParamSpec {
            id: "probes",
            label: "Half-open probes",
            unit: "calls",
            min: 1,
            max: 100,
            step: 1,
            default: 3,
            live: true,
            help: "Trial calls let through in half-open; the breaker closes if they mostly succeed.",
        },
        ParamSpec {
            id: "outage_at",
            label: "Outage starts",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 6,
            live: false,
            help: "Scheduled fault: the downstream starts failing every call.",
        },
        ParamSpec {
            id: "outage_len",
            label: "Outage length",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 7,
            live: false,
            help: "How long the outage lasts (0: none).",
        },
        ParamSpec {
            id: "slow_at",
            label: "Slowdown starts",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 17,
            live: false,
            help: "Scheduled fault: the downstream answers 3 s late (past the call timeout).",
        },
        ParamSpec {
            id: "slow_len",
            label: "Slowdown length",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 8,
            live: false,
            help: "How long the slowdown lasts (0: none).",
        },
    ],
    strategies: &[
        StrategySpec { id: "none", label: "No breaker", naive: true, help: "Every request calls the downstream." },
        StrategySpec {
            id: "breaker",
            label: "Breaker",
            naive: false,
            help: "Closed → open on errors (rolling window, minimum requests) → half-open probes → closed.",
        },
        StrategySpec {
            id: "breaker-fallback",
            label: "Breaker + fallback",
            naive: false,
            help: "As `breaker`, and failed or refused calls are answered from the last good (cached) answer.",
        },
    ],
    faults: &[
        FaultSpec {
            id: "outage",
            label: "Downstream outage",
            target: Target::Global,
            value_label: "on (1) / off (0)",
            value_min: 0,
            value_max: 1,
            value_default: 1,
            help: "The downstream fails every call quickly.",
        },
        FaultSpec {
            id: "slowness",
            label: "Downstream slowness",
            target: Target::Global,
            value_label: "extra ms",
            value_min: 0,
            value_max: 60_000,
            value_default: 3000,
            help: "Every downstream answer takes this much longer (0 heals).",
        },
    ],
    checks: &[
        CheckSpec {
            id: "downstream-spared",
            label: "Sick downstream spared",
            help:
                "Once the downstream has been unhealthy for a rolling window plus a second, it receives no more than \
                   the half-open probes (plus calls already under way) per second.",
        },
        CheckSpec {
            id: "recloses",
            label: "Breaker closes after recovery",
            help: "Within two open durations plus a second of the downstream healing, the breaker is closed again.",
        },
    ],
    metrics: &[
        MetricSpec {
            id: "success",
            label: "User success",
            unit: "%",
            measure: Measure::Percent { num: "ok", rest: "failed" },
        },
        MetricSpec { id: "degraded", label: "Answered by fallback", unit: "req/s", measure: Measure::Rate("fallback") },
        MetricSpec {
            id: "downstream_load",
            label: "Downstream load",
            unit: "req/s",
            measure: Measure::Rate("downstream_calls"),
        },
        MetricSpec {
            id: "latency_p99",
            label: "Latency p99",
            unit: "us",
            measure: Measure::Quantile("latency_us", 0.99),
        },
        MetricSpec {
            id: "breaker",
            label: "Breaker state (0 closed, 1 half-open, 2 open)",
            unit: "",
            measure: Measure::Gauge("breaker_state"),
        },
        MetricSpec { id: "pool_busy", label: "Pool in use", unit: "calls", measure: Measure::Gauge("pool_busy") },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

const SERVICE: NodeId = 0;
const DOWNSTREAM: NodeId = 1;
const BUCKETS: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    None,
    Breaker,
    Fallback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Time },
    HalfOpen { sent: u32, ok: u32, failed: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fallback,
    Error,
}

#[derive(Clone, Debug)]
pub enum Msg {
    Request { sent: Time, dependent: bool },
    Response { sent: Time, outcome: Outcome },
    Call { id: u64 },
    Reply { id: u64, ok: bool },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Request { dependent: true, .. } => "request",
            Msg::Request { dependent: false, .. } => "request (local)",
            Msg::Response { outcome: Outcome::Ok, .. } => "200",
            Msg::Response { outcome: Outcome::Fallback, .. } => "200 (fallback)",
            Msg::Response { outcome: Outcome::Error, .. } => "503",
            Msg::Call { .. } => "call",
            Msg::Reply { ok: true, .. } => "ok",
            Msg::Reply { ok: false, .. } => "error",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    Send,
    CallTimeout { id: u64 },
    LocalDone { id: u64 },
    HalfOpen,
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Send => "send",
            Timer::CallTimeout { .. } => "call-timeout",
            Timer::LocalDone { .. } => "local-done",
            Timer::HalfOpen => "half-open",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Cb {
    Client { index: u32, rps: f64, dependent_pct: u64 },
    Service(Box<Service>),
    Downstream(Box<Downstream>),
}

/// A request being worked on: who asked, when, whether it is a half-open probe, and
/// whether it waits on the downstream (otherwise it is local work).
#[derive(Clone, Debug)]
struct Call {
    client: NodeId,
    sent: Time,
    probe: bool,
    dependent: bool,
    timer: TimerId,
}

#[derive(Clone, Debug)]
pub struct Service {
    strategy: Strategy,
    pool: usize,
    timeout: Micros,
    threshold_pct: u64,
    window: Micros,
    min_requests: u64,
    open_for: Micros,
    probes: u32,
    state: State,
    /// Rolling window: (bucket number, successes, failures), BUCKETS of them.
    buckets: Vec<(u64, u64, u64)>,
    calls: BTreeMap<u64, Call>,
    next_call: u64,
    /// The fallback: whether a good answer has been seen (and so can be served from cache).
    cached: bool,
}

#[derive(Clone, Debug)]
pub struct Downstream {
    mean: f64,
    error_pct: u64,
    outage: bool,
    extra: Micros,
    /// Since when it has been unhealthy (true time), and calls received per second since.
    sick_since: Option<Time>,
    healthy_since: Time,
    per_second: BTreeMap<u64, u64>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Cb> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 5_000 }));
    let service = Service {
        strategy: strategy(setup.strategy()),
        pool: setup.param("pool") as usize,
        timeout: setup.param("call_timeout_ms") as u64 * MICROS_PER_MS,
        threshold_pct: setup.param("threshold_pct") as u64,
        window: setup.param("window_ms") as u64 * MICROS_PER_MS,
        min_requests: setup.param("min_requests") as u64,
        open_for: setup.param("open_ms") as u64 * MICROS_PER_MS,
        probes: setup.param("probes") as u32,
        state: State::Closed,
        buckets: vec![(0, 0, 0); BUCKETS as usize],
        calls: BTreeMap::new(),
        next_call: 0,
        cached: false,
    };
    assert_eq!(sim.add_node(Cb::Service(Box::new(service))), SERVICE);
    let downstream = Downstream {
        mean: setup.param("downstream_ms") as f64 * 1000.0,
        error_pct: setup.param("error_pct") as u64,
        outage: false,
        extra: 0,
        sick_since: None,
        healthy_since: Time::ZERO,
        per_second: BTreeMap::new(),
    };
    assert_eq!(sim.add_node(Cb::Downstream(Box::new(downstream))), DOWNSTREAM);
    sim.net().set_link(SERVICE, DOWNSTREAM, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let clients = setup.param("clients");
    for index in 0..clients as u32 {
        let rps = setup.param("rps") as f64 / clients as f64;
        sim.add_node(Cb::Client { index, rps, dependent_pct: setup.param("dependent_pct") as u64 });
    }
    let custom = |id: &str, value| Fault::Custom { id: id.into(), node: None, value };
    for (id, at, len, on) in [("outage", "outage_at", "outage_len", 1), ("slowness", "slow_at", "slow_len", 3000)] {
        let (at, len) = (setup.param(at) as u64, setup.param(len) as u64);
        if len > 0 {
            sim.schedule(Time::from_secs(at), custom(id, on));
            sim.schedule(Time::from_secs(at + len), custom(id, 0));
        }
    }
    sim.check("downstream-spared", |w| {
        let Cb::Downstream(d) = &w.nodes[DOWNSTREAM as usize] else { unreachable!() };
        let Some(since) = d.sick_since else { return Ok(()) };
        let grace = (w.param("window_ms") as u64 + 1000) * MICROS_PER_MS;
        // Probes per second, plus the pool's worth of calls already under way.
        let per_open = w.param("probes") as u64;
        let allowance = per_open * 1000u64.div_ceil(w.param("open_ms") as u64) + w.param("pool") as u64;
        let from = since.plus(grace).micros() / MICROS_PER_S + 1;
        match d.per_second.range(from..).find(|(_, &n)| n > allowance) {
            Some((s, n)) => {
                Err(format!("the downstream got {n} calls in second {s} while sick (allowance {allowance})"))
            }
            None => Ok(()),
        }
    });
    sim.check("recloses", |w| {
        let (Cb::Service(s), Cb::Downstream(d)) = (&w.nodes[SERVICE as usize], &w.nodes[DOWNSTREAM as usize]) else {
            unreachable!()
        };
        let bound = (2 * w.param("open_ms") as u64 + 1000) * MICROS_PER_MS;
        if d.sick_since.is_none() && s.state != State::Closed && w.now.since(d.healthy_since) > bound {
            Err(format!("still {:?} {} s after the downstream healed", s.state, bound / MICROS_PER_S))
        } else {
            Ok(())
        }
    });
    Box::new(sim)
}

fn strategy(id: &str) -> Strategy {
    match id {
        "breaker" => Strategy::Breaker,
        "breaker-fallback" => Strategy::Fallback,
        _ => Strategy::None,
    }
}

impl Node for Cb {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cb::Client { rps, .. } => {
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Send);
            }
            Cb::Service(s) => s.publish(ctx),
            Cb::Downstream(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Cb::Client { .. }, Msg::Response { sent, outcome }) => {
                ctx.observe("latency_us", ctx.now().since(sent));
                match outcome {
                    Outcome::Ok => ctx.count("ok", 1),
                    Outcome::Fallback => {
                        ctx.count("ok", 1);
                        ctx.count("fallback", 1);
                    }
                    Outcome::Error => ctx.count("failed", 1),
                }
            }
            (Cb::Service(s), Msg::Request { sent, dependent }) => s.request(from, sent, dependent, ctx),
            (Cb::Service(s), Msg::Reply { id, ok }) => s.finish(id, ok, ctx),
            (Cb::Downstream(d), Msg::Call { id }) => d.call(from, id, ctx),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cb::Client { rps, dependent_pct, .. }, Timer::Send) => {
                let dependent = ctx.rng().below(100) < *dependent_pct;
                let now = ctx.now();
                ctx.send(SERVICE, Msg::Request { sent: now, dependent });
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Send);
            }
            (Cb::Service(s), Timer::CallTimeout { id }) => s.finish(id, false, ctx),
            (Cb::Service(s), Timer::LocalDone { id }) => s.finish(id, true, ctx),
            (Cb::Service(s), Timer::HalfOpen) => {
                if matches!(s.state, State::Open { .. }) {
                    s.state = State::HalfOpen { sent: 0, ok: 0, failed: 0 };
                    ctx.note("breaker half-open: letting probes through");
                    s.publish(ctx);
                }
            }
            _ => {}
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        if let Cb::Service(s) = self {
            s.calls.clear();
            s.state = State::Closed;
            s.buckets = vec![(0, 0, 0); BUCKETS as usize];
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        let now = ctx.truth();
        match (self, c) {
            (Cb::Service(s), Control::Strategy(id)) => {
                s.strategy = strategy(id);
                if s.strategy == Strategy::None {
                    s.state = State::Closed;
                }
                s.publish(ctx);
            }
            (Cb::Service(s), Control::Param { id, value }) => {
                let v = value as u64;
                match id {
                    "pool" => s.pool = v as usize,
                    "call_timeout_ms" => s.timeout = v * MICROS_PER_MS,
                    "threshold_pct" => s.threshold_pct = v,
                    "window_ms" => s.window = v * MICROS_PER_MS,
                    "min_requests" => s.min_requests = v,
                    "open_ms" => s.open_for = v * MICROS_PER_MS,
                    "probes" => s.probes = v as u32,
                    _ => {}
                }
            }
            (Cb::Client { rps, .. }, Control::Param { id: "rps", value }) => {
                *rps = value as f64 / ctx.param("clients") as f64;
            }
            (Cb::Client { dependent_pct, .. }, Control::Param { id: "dependent_pct", value }) => {
                *dependent_pct = value as u64;
            }
            (Cb::Downstream(d), Control::Custom { id, value }) => {
                match id {
                    "outage" => d.outage = value == 1,
                    "slowness" => d.extra = value as u64 * MICROS_PER_MS,
                    _ => {}
                }
                let sick = d.outage || d.extra > 0;
                match (sick, d.sick_since) {
                    (true, None) => d.sick_since = Some(now),
                    (false, Some(_)) => {
                        d.sick_since = None;
                        d.healthy_since = now;
                        d.per_second.clear();
                    }
                    _ => {}
                }
            }
            (Cb::Downstream(d), Control::Param { id, value }) => match id {
                "downstream_ms" => d.mean = value as f64 * 1000.0,
                "error_pct" => d.error_pct = value as u64,
                _ => {}
            },
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Cb::Client { index, .. } => NodeView::new(NodeKind::Client, 0, numbered("client", *index as u64)),
            Cb::Service(s) => {
                let (text, tone) = match s.state {
                    State::Closed => ("breaker closed", Tone::Good),
                    State::HalfOpen { .. } => ("breaker half-open", Tone::Warn),
                    State::Open { .. } => ("breaker open", Tone::Bad),
                };
                let v =
                    NodeView::new(NodeKind::Service, 1, "service").gauge("pool", s.calls.len() as i64, s.pool as i64);
                if s.strategy == Strategy::None {
                    v
                } else {
                    v.badge(text, tone)
                }
            }
            Cb::Downstream(d) => {
                let v = NodeView::new(NodeKind::Service, 2, "downstream");
                if d.outage {
                    v.badge("outage", Tone::Bad)
                } else if d.extra > 0 {
                    v.badge(format!("slow +{} ms", d.extra / MICROS_PER_MS), Tone::Warn)
                } else {
                    v.badge("healthy", Tone::Good)
                }
            }
        }
    }
}

impl Service {
    fn publish(&self, ctx: &mut Ctx<Cb>) {
        let code = match self.state {
            State::Closed => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        };
        ctx.gauge("breaker_state", code);
        ctx.gauge("pool_busy", self.calls.len() as i64);
    }

    /// Whether the breaker lets this call through, and if so whether it is a probe.
    fn admit(&mut self, now: Time) -> Option<bool> {
        match (self.strategy, &mut self.state) {
            (Strategy::None, _) | (_, State::Closed) => Some(false),
            (_, State::Open { until }) if now < *until => None,
            (_, State::Open { .. }) => None, // the half-open timer moves it on
            (_, State::HalfOpen { sent, .. }) if *sent < self.probes => {
                *sent += 1;
                Some(true)
            }
            (_, State::HalfOpen { .. }) => None,
        }
    }

    fn respond(&self, client: NodeId, sent: Time, failed: bool, ctx: &mut Ctx<Cb>) {
        let outcome = match (failed, self.strategy == Strategy::Fallback && self.cached) {
            (false, _) => Outcome::Ok,
            (true, true) => Outcome::Fallback,
            (true, false) => Outcome::Error,
        };
        ctx.send(client, Msg::Response { sent, outcome });
    }

    fn request(&mut self, client: NodeId, sent: Time, dependent: bool, ctx: &mut Ctx<Cb>) {
        let now = ctx.now();
        let probe = if dependent {
            let Some(probe) = self.admit(now) else {
                ctx.count("short_circuited", 1);
                return self.respond(client, sent, true, ctx);
            };
            probe
        } else {
            false
        };
        if self.calls.len() >= self.pool {
            // Every worker is busy — often waiting on a sick downstream: the cascade.
            ctx.count("pool_full", 1);
            if let (true, State::HalfOpen { sent, .. }) = (probe, &mut self.state) {
                *sent -= 1; // the probe never left: let another request be one
            }
            return ctx.send(client, Msg::Response { sent, outcome: Outcome::Error });
        }
        self.next_call += 1;
        let id = self.next_call;
        let timer = if dependent {
            ctx.send(DOWNSTREAM, Msg::Call { id });
            ctx.set_timer(self.timeout, Timer::CallTimeout { id })
        } else {
            ctx.set_timer(5 * MICROS_PER_MS, Timer::LocalDone { id })
        };
        self.calls.insert(id, Call { client, sent, probe, dependent, timer });
        self.publish(ctx);
    }

    fn finish(&mut self, id: u64, ok: bool, ctx: &mut Ctx<Cb>) {
        let Some(call) = self.calls.remove(&id) else { return }; // late reply after a timeout
        ctx.cancel_timer(call.timer);
        if !call.dependent {
            ctx.send(call.client, Msg::Response { sent: call.sent, outcome: Outcome::Ok });
            return self.publish(ctx);
        }
        if ok {
            self.cached = true;
        }
        self.respond(call.client, call.sent, !ok, ctx);
        if self.strategy != Strategy::None {
            self.record(ok, call.probe, ctx);
        }
        self.publish(ctx);
    }

    fn record(&mut self, ok: bool, probe: bool, ctx: &mut Ctx<Cb>) {
        let now = ctx.now();
        match &mut self.state {
            State::HalfOpen { ok: good, failed, .. } if probe => {
                if ok {
                    *good += 1
                } else {
                    *failed += 1
                }
                if *good + *failed >= self.probes {
                    let fail_pct = *failed as u64 * 100 / (*good + *failed) as u64;
                    if fail_pct < self.threshold_pct {
                        ctx.note("probes succeeded: breaker closed");
                        self.state = State::Closed;
                        self.buckets = vec![(0, 0, 0); BUCKETS as usize];
                    } else {
                        self.trip(now, ctx);
                    }
                }
            }
            State::Closed => {
                let len = (self.window / BUCKETS).max(1);
                let n = now.micros() / len;
                let b = &mut self.buckets[(n % BUCKETS) as usize];
                if b.0 != n {
                    *b = (n, 0, 0);
                }
                if ok {
                    b.1 += 1
                } else {
                    b.2 += 1
                }
                let live = self.buckets.iter().filter(|b| b.0 + BUCKETS > n);
                let (good, bad) = live.fold((0, 0), |(g, f), b| (g + b.1, f + b.2));
                if good + bad >= self.min_requests && bad * 100 >= self.threshold_pct * (good + bad) {
                    self.trip(now, ctx);
                }
            }
            _ => {}
        }
    }

    fn trip(&mut self, now: Time, ctx: &mut Ctx<Cb>) {
        self.state = State::Open { until: now.plus(self.open_for) };
        ctx.note("breaker opened");
        ctx.count("trips", 1);
        ctx.set_timer(self.open_for, Timer::HalfOpen);
    }
}

impl Downstream {
    fn call(&mut self, from: NodeId, id: u64, ctx: &mut Ctx<Cb>) {
        ctx.count("downstream_calls", 1);
        if self.sick_since.is_some() {
            *self.per_second.entry(ctx.truth().micros() / MICROS_PER_S).or_insert(0) += 1;
        }
        let (ok, after) = if self.outage {
            (false, 5 * MICROS_PER_MS)
        } else {
            let fails = ctx.rng().below(100) < self.error_pct;
            (!fails, ctx.rng().exponential(self.mean) as Micros + self.extra)
        };
        ctx.send_after(after, from, Msg::Reply { id, ok });
    }
}
