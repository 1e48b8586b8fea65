//! Trace sampling: requests cross a tree of services, some erroring or slow; head sampling at 1% keeps 1% of the incident's traces, tail sampling on collectors that see only part of each trace stores fragments, and tail sampling with spans routed by trace id keeps every error trace whole within a budget.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::sampler::{route, Arrival, Policy, Span, Tail};
use crate::parts::strategies::strategies;
use crate::parts::table::{KeyTable, Log};
use faultline_core::*;
use std::collections::{BTreeMap, VecDeque};

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "trace-sampling",
        title: "Trace sampling",
        category: "Observability",
        seeds: &["S1#32", "S2#5", "S3#37"],
        summary: "200 req/s enter a gateway and fan out through 8 services; each service's span goes to one of 3 \
                  collectors, then to a trace store. 0.5% of requests fail and 1% straggle; from 10 s to 20 s \
                  payments fails 10% of its calls, from 30 s to 40 s auth is 600 ms slow. Head sampling at 1% \
                  keeps about one incident trace in a hundred; tail sampling on collectors that see only their \
                  services' spans stores fragments; routed by trace id, it keeps every error trace whole.",
        note: Note {
            what_can_go_wrong: "Head sampling decides at the root, before the request has done anything: 1% of \
                error traces are kept, as 1% of all — the incident you need to debug was not sampled (S3#37). \
                Tail sampling decides after the trace, but only on what one collector holds: when each \
                service exports to its own collector, each decides on a fragment — the gateway's collector \
                keeps its error spans, the one holding the healthy siblings drops them, and the store holds \
                traces with holes. The model: Poisson requests through a binary tree of services; each \
                service works (exponential, 2 ms; a straggler share adds a fixed delay) while calling its \
                children in parallel (2 s timeout), and fails with its share of the error rate or when a \
                child fails (errors propagate up). A span ends when its work and its calls are done; the \
                process batches spans and exports them every flush interval at its own phase. A collector \
                holds a trace from its first span for the decision wait, then decides in 100 ms rounds — \
                errors, then slow (first start to last end over the threshold), then a baseline share by a \
                coin on the trace id — each kept trace taking a token of the budget; a span after its \
                trace's decision follows it. The checks audit each trace once every span can have arrived \
                (wait + 2 flushes + 5 s after it started), against the spans that ended.",
            what_you_sacrifice: "Tail sampling ships every span to the collectors (100× head sampling's \
                traffic at 1%) and holds them in memory for the decision wait: span rate × wait (Little's \
                law) — here ~1,600 spans/s × ~3 s, ~2.4 MB at 500 B a span, and a collector crash loses \
                them. The wait must exceed the longest trace plus the export delay, or the decision is made \
                on part of the trace (a late error span finds its trace dropped). Routing by trace id needs \
                a load-balancing tier that knows the collectors (a membership change reroutes traces \
                mid-flight). The budget caps storage: past it, errors still go first, slow and baseline \
                traces wait.",
            at_10x: "At 2,000 req/s through 20 services (S2#5), tail sampling receives 40,000 spans a second \
                and holds 120,000 at once: collectors scale out behind the trace-id router, and the budget, \
                not the traffic, sets the store's cost. Head sampling's cost scales with p, and so does its \
                blindness: at 0.1% an incident of a thousand failed requests leaves one trace.",
            resembles: "OpenTelemetry's SDK samplers (ParentBased(TraceIdRatioBased)) for head sampling; the \
                Collector's tail_sampling processor (decision_wait, status_code, latency, probabilistic \
                and rate_limiting policies) behind the load-balancing exporter routing by traceID; Jaeger's \
                adaptive sampling, Honeycomb Refinery, Grafana Tempo, Datadog's ingestion controls.",
            try_this: &[
                "Play `head-1pct`: `errors-kept` fails on the first error trace not sampled (~10 s in, \
                 once it is audited); during the incident ~20 error traces a second reach the gateway and \
                 the store keeps about 1% of them, while it stores only ~16 spans a second.",
                "Switch to `tail-no-affinity`: error traces keep their error path but lose the healthy \
                 branches held by other collectors — `kept-whole` and `errors-kept` fail, and fewer than \
                 half of the kept traces are whole.",
                "Switch to `tail-based`: both checks hold; every error trace is kept whole, slow traces too, \
                 and the collectors hold ~5,000 spans (rate × stay) for ~100 stored a second.",
                "With `tail-based`, set the budget to 10 traces/s: during the incident the error traces \
                 kept fall to ~45% (min(1, 10 / ~21)), the check still holds (each one dropped was over \
                 budget), and slow and baseline traces wait their turn.",
            ],
        },
    },
    params: &[
        ParamSpec::live("rps", "Requests", "req/s", 10..=2000, 200, "Poisson requests at the gateway.").step(10),
        ParamSpec::setup("services", "Services", "", 2..=20, 8, "Services in the call tree (a binary tree under the gateway): spans per trace."),
        ParamSpec::setup("collectors", "Collectors", "", 1..=8, 3, "Tail-sampling collectors; each takes a share of the budget."),
        ParamSpec::live("error_bp", "Errors", "bp of requests", 0..=2000, 50, "Requests failing outside incidents (spread over the services): 50 = 0.5%."),
        ParamSpec::live("straggle_bp", "Stragglers", "bp of requests", 0..=2000, 100, "Requests with one straggling service: 100 = 1%."),
        ParamSpec::live("straggle_ms", "Straggler delay", "ms", 0..=2000, 600, "What a straggling service's work adds."),
        ParamSpec::live("slow_ms", "Slow threshold", "ms", 10..=5000, 500, "A trace this long (first start to last end) is slow: tail sampling keeps it after errors."),
        ParamSpec::live("head_bp", "Head sample rate", "bp", 1..=10_000, 100, "head-1pct: the root's coin keeps this share of traces: 100 = 1%."),
        ParamSpec::live("budget", "Tail budget", "traces/s", 1..=1000, 40, "Traces the tail samplers may keep a second, all collectors together."),
        ParamSpec::live("baseline_bp", "Baseline share", "bp", 0..=10_000, 500, "Tail sampling also keeps this share of the other traces (a coin on the trace id), within the budget."),
        ParamSpec::live("wait_ms", "Decision wait", "ms", 100..=30_000, 3000, "A collector holds a trace this long after its first span before deciding.").step(100),
        ParamSpec::live("flush_ms", "Export interval", "ms", 50..=5000, 500, "Each process sends its finished spans in a batch this often (at its own phase).").step(50),
        ParamSpec::setup("plan", "Default plan", "", 0..=1, 1, "1: payments fails 10% from 10 s to 20 s, auth 600 ms slow from 30 s to 40 s; 0: none."),
    ],
    strategies: &[
        StrategySpec::naive("head-1pct", "Head sampling (1%)", "The gateway flips a coin on the trace id when the request arrives; only sampled traces record spans."),
        StrategySpec::naive("tail-no-affinity", "Tail sampling, no routing", "Every span is recorded and sent to its service's own collector, which decides on the part of the trace it holds."),
        StrategySpec::fixed("tail-based", "Tail sampling by trace id", "Spans are routed to a collector by trace id, so it decides on the whole trace: errors, then slow, then the baseline, within the budget."),
    ],
    faults: &[
        FaultSpec::node("errors", "Error burst", "The service fails this share of its calls (0 heals).").value("%", 0..=100, 10),
        FaultSpec::node("slow", "Slow service", "The service's work takes this much longer (0 heals).").value("ms", 0..=2000, 600),
    ],
    checks: &[
        CheckSpec::new("errors-kept", "Every error trace kept whole, within the budget", "A trace with an error span is \
            stored with every span that ended, unless a collector refused it for want of budget (spent on error traces)."),
        CheckSpec::new("kept-whole", "Kept traces are whole", "A trace with any span stored has every span that ended stored."),
    ],
    metrics: &[
        MetricSpec::new("errors_kept", "Error traces kept whole (last 5 s)", "%", Measure::GaugePer("errors_kept_bp", 100.0)),
        MetricSpec::new("errors_theory", "Expected: head p; tail min(1, budget / error traces a second)", "%", Measure::GaugePer("theory_bp", 100.0)),
        MetricSpec::new("whole", "Kept traces stored whole (last 5 s)", "%", Measure::GaugePer("whole_bp", 100.0)),
        MetricSpec::new("slow_kept", "Slow traces kept whole (last 5 s)", "%", Measure::GaugePer("slow_kept_bp", 100.0)),
        MetricSpec::new("stored", "Spans stored (cost)", "spans/s", Measure::Rate("stored_spans")),
        MetricSpec::new("shipped", "Spans sent to collectors", "spans/s", Measure::Rate("shipped_spans")),
        MetricSpec::new("buffer", "Collectors' buffers (500 B a span)", "KB", Measure::Gauge("buffer_kb")),
        MetricSpec::new("late", "Spans after their trace's decision", "spans", Measure::Count("late_spans")),
    ],
    layout: Layout::Tiers,
    default_until: 60 * MICROS_PER_S,
    sample_every: 500 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Head, NoAffinity, TailBased });

const GATEWAY: NodeId = 0;
const NAMES: [&str; 20] = [
    "gateway", "auth", "catalog", "cart", "pricing", "search", "payments", "inventory", "shipping", "reviews",
    "ads", "users", "tax", "fraud", "email", "images", "ranking", "stock", "geo", "audit",
];
/// A service's own work (exponential mean) and its calls' timeout.
const WORK_US: f64 = 2000.0;
const CALL_TIMEOUT_US: Micros = 2 * MICROS_PER_S;
/// Collectors decide every tick and remember decisions this long (late spans follow them).
const TICK_US: Micros = 100 * MICROS_PER_MS;
const CACHE_US: Micros = 30 * MICROS_PER_S;
/// A span ends at most ~4 s after its trace starts (straggler and slow service at their
/// sliders' top, calls answered or timed out by 2 s): the audit waits this, the decision wait
/// and two export intervals.
const SETTLE_EXTRA_US: Micros = 5 * MICROS_PER_S;
const SPAN_BYTES: usize = 500;
const BASELINE_SALT: u64 = 0x5eed;
/// The traces the metrics judge: those audited in the last 5 s (50 audits).
const WINDOW_AUDITS: usize = 50;

#[derive(Clone, Debug, Label)]
pub enum Msg {
    /// A trace's call to a child, with the head decision (traceparent's sampled flag).
    Call(u64, bool, CallId),
    Reply(CallId, bool),
    Export(Vec<Span>),
    Store(Vec<Span>),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Work(u64),
    CallTimeout(CallId),
    Flush,
    Decide,
    Audit,
}

#[derive(Clone, Debug, Holds)]
pub enum Ts {
    Service(Service),
    Collector(Collector),
    Store(Store),
}

/// A span in progress: its trace, head decision, start, caller, what it waits for, error.
#[derive(Clone, Debug)]
struct Job {
    trace: u64,
    sampled: bool,
    start: Time,
    parent: Option<(NodeId, CallId)>,
    left: usize,
    error: bool,
}

/// A service: works, calls its children, records and exports spans. The gateway also takes
/// the requests and, as an instrument, lists when each trace started for the audit.
#[derive(Clone, Debug)]
pub struct Service {
    index: u16,
    strategy: Strategy,
    children: Vec<NodeId>,
    collectors: Vec<NodeId>,
    health: Health,
    burst_pct: i64,
    calls: Calls<u64>,
    jobs: BTreeMap<u64, Job>,
    next_job: u64,
    batch: Vec<Span>,
    arrivals: OpenLoop,
    answered: [u64; 2],
    audit: Audit,
}

/// The audit's clock (kept through crashes: it is the experimenter's, not the gateway's):
/// each trace's true start, how many are audited, and the count at each of the last audits.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    starts: Log<Time>,
    audited: u64,
    marks: VecDeque<u64>,
}

/// A collector: passes spans through (head sampling) or holds them for a tail decision.
#[derive(Clone, Debug)]
pub struct Collector {
    index: u64,
    strategy: Strategy,
    store: NodeId,
    tail: Tail,
    /// Traces kept and dropped, error traces refused for want of budget.
    kept: u64,
    dropped: u64,
    over_budget: u64,
}

/// The trace store: which services' spans it holds for each trace (copies stored once).
#[derive(Clone, Debug, Default)]
pub struct Store {
    held: KeyTable<u32>,
    traces: u64,
    error_traces: u64,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    Box::new(sim(setup))
}

fn sim(setup: &Setup) -> Sim<Ts> {
    let mut sim: Sim<Ts> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1000 }));
    let (n, c) = (setup.param("services") as NodeId, setup.param("collectors") as NodeId);
    let strategy = Strategy::from_id(setup.strategy());
    let collectors: Vec<NodeId> = (n..n + c).collect();
    for i in 0..n {
        let children = [2 * i + 1, 2 * i + 2].into_iter().filter(|&k| k < n).collect();
        let s = Service {
            index: i as u16,
            strategy,
            children,
            collectors: collectors.clone(),
            health: Health::Up,
            burst_pct: 0,
            calls: Calls::new("call_us"),
            jobs: BTreeMap::new(),
            next_job: 0,
            batch: Vec::new(),
            arrivals: OpenLoop::poisson(setup.param("rps") as f64),
            answered: [0; 2],
            audit: Audit::default(),
        };
        assert_eq!(sim.add_node(Ts::Service(s)), i);
    }
    let (store, budget) = (n + c, setup.param("budget") as u64);
    for k in 0..c {
        let tail = Tail::new(budget, c as u64);
        let col = Collector { index: k as u64, strategy, store, tail, kept: 0, dropped: 0, over_budget: 0 };
        assert_eq!(sim.add_node(Ts::Collector(col)), n + k);
    }
    assert_eq!(sim.add_node(Ts::Store(Store::default())), store);
    if setup.param("plan") == 1 {
        FaultWindow::secs(10, 10).custom(&mut sim, "errors", Some(6.min(n - 1)), 10, 0);
        FaultWindow::secs(30, 10).custom(&mut sim, "slow", Some(1), 600, 0);
    }
    sim.check("errors-kept", |w| {
        audited(w).try_for_each(|t| match verdict(w, t) {
            v if v.error && v.stored < v.spans && w.tally("over_budget", t) == 0 => Err(v.describe(t)),
            _ => Ok(()),
        })
    });
    sim.check("kept-whole", |w| {
        audited(w).try_for_each(|t| match verdict(w, t) {
            v if v.stored > 0 && v.stored < v.spans => Err(v.describe(t)),
            _ => Ok(()),
        })
    });
    let share = |w: &World<Ts>, pick: fn(&Verdict) -> bool| {
        let (mut of, mut whole) = (0, 0);
        for v in window(w).map(|t| verdict(w, t)).filter(pick) {
            (of, whole) = (of + 1, whole + (v.stored >= v.spans) as i64);
        }
        if of == 0 { 10_000 } else { whole * 10_000 / of }
    };
    sim.probe("errors_kept_bp", move |w| share(w, |v| v.error));
    sim.probe("whole_bp", move |w| share(w, |v| v.stored > 0));
    sim.probe("slow_kept_bp", move |w| share(w, |v| v.slow));
    sim.probe("theory_bp", |w| {
        let g = w.node::<Service>(GATEWAY);
        if g.strategy == Strategy::Head {
            return w.param("head_bp");
        }
        let secs = (g.audit.marks.len() as f64 * TICK_US as f64 / 1e6).max(0.1);
        let errors = window(w).filter(|&t| w.tally("error", t) > 0).count() as f64;
        (crate::parts::sampler::kept_share(w.param("budget") as f64, errors / secs) * 10_000.0).round() as i64
    });
    sim.probe("buffer_kb", |w| {
        let spans: usize = w.all::<Collector>().map(|(_, c)| c.tail.buffered_spans()).sum();
        (spans * SPAN_BYTES / 1000) as i64
    });
    sim
}

/// What the audit finds of a trace: spans ended, stored, and whether it erred or was slow.
struct Verdict {
    spans: i64,
    stored: i64,
    error: bool,
    slow: bool,
    late: i64,
}

impl Verdict {
    fn describe(&self, trace: u64) -> String {
        let kind = if self.error { "error trace" } else { "trace" };
        let late = if self.late > 0 { format!("; {} span(s) reached a collector after its decision", self.late) } else { String::new() };
        format!("{kind} {trace}: {} of its {} spans stored{late}", self.stored, self.spans)
    }
}

fn verdict(w: &World<Ts>, t: u64) -> Verdict {
    let (spans, stored, late) = (w.tally("spans", t), w.tally("stored", t), w.tally("late", t));
    Verdict { spans, stored, error: w.tally("error", t) > 0, slow: w.tally("slow", t) > 0, late }
}

/// The traces audited at this instant.
fn audited<'a>(w: &'a World<'a, Ts>) -> impl Iterator<Item = u64> + 'a {
    w.tallied.iter().filter(|t| t.0 == "audit").map(|t| t.1)
}

/// The traces audited in the last 5 s.
fn window<'a>(w: &'a World<'a, Ts>) -> impl Iterator<Item = u64> + 'a {
    let a = &w.node::<Service>(GATEWAY).audit;
    a.marks.front().copied().unwrap_or(a.audited)..a.audited
}

/// The share of each service's work that fails so that `bp` of requests through `n` services do.
fn per_service(bp: i64, n: usize) -> f64 {
    1.0 - libm::pow(1.0 - bp as f64 / 10_000.0, 1.0 / n as f64)
}

impl Node for Ts {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ts::Service(s) => {
                if s.index == 0 {
                    s.arrivals.start_at(ctx.param("rps") as f64, ctx, Timer::Arrive);
                    ctx.set_timer(TICK_US, Timer::Audit);
                }
                let flush_us = ctx.param_ms("flush_ms").max(1);
                let phase = ctx.rng().below(flush_us);
                ctx.set_timer(phase, Timer::Flush);
            }
            Ts::Collector(_) => drop(ctx.set_timer(TICK_US, Timer::Decide)),
            Ts::Store(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ts::Service(s), Msg::Call(trace, sampled, call)) => s.begin(trace, sampled, Some((from, call)), ctx),
            (Ts::Service(s), Msg::Reply(call, ok)) => {
                if let Some(job) = s.calls.reply(call, ctx) {
                    s.done(job, !ok, ctx);
                }
            }
            (Ts::Collector(c), Msg::Export(spans)) => c.receive(spans, ctx),
            (Ts::Store(s), Msg::Store(spans)) => s.store(spans, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ts::Service(s), Timer::Arrive) => {
                s.arrivals.on_timer(ctx, Timer::Arrive);
                let trace = s.audit.starts.len() as u64;
                s.audit.starts.push(ctx.truth());
                let sampled = s.strategy != Strategy::Head || crate::parts::sampler::coin(trace, 1, ctx.param("head_bp"));
                s.begin(trace, sampled, None, ctx);
            }
            (Ts::Service(s), Timer::Work(job)) => {
                let fails = ctx.rng().unit_open() < per_service(ctx.param("error_bp"), ctx.param("services") as usize)
                    || ctx.rng().below(100) < s.burst_pct as u64;
                s.done(job, fails, ctx);
            }
            (Ts::Service(s), Timer::CallTimeout(call)) => {
                if let Some(job) = s.calls.timeout(call) {
                    s.done(job, true, ctx);
                }
            }
            (Ts::Service(s), Timer::Flush) => s.flush(ctx),
            (Ts::Service(s), Timer::Audit) => s.audit(ctx),
            (Ts::Collector(c), Timer::Decide) => c.decide(ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ts::Service(s) => {
                s.calls.clear(ctx);
                (s.jobs, s.batch) = Default::default();
            }
            Ts::Collector(c) => ctx.count("spans_lost", c.tail.clear() as i64),
            Ts::Store(_) => {} // on disk
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ts::Service(s), Control::Strategy(id)) => s.strategy = Strategy::from_id(id),
            (Ts::Collector(c), Control::Strategy(id)) => c.strategy = Strategy::from_id(id),
            (Ts::Service(s), Control::Param { id: "rps", value }) if s.index == 0 => {
                s.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Ts::Collector(c), Control::Param { id: "budget", value }) => {
                c.tail.set_budget(value as u64, ctx.param("collectors") as u64)
            }
            (Ts::Service(s), Control::Custom { id: "errors", value }) => s.burst_pct = value.clamp(0, 100),
            (Ts::Service(s), Control::Custom { id: "slow", value }) => {
                s.health = if value > 0 { Health::plus_us(value as Micros * MICROS_PER_MS) } else { Health::Up }
            }
            // Other parameters are read where used; a service's fault aimed at a collector or
            // the store does nothing there.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ts::Service(s) => s.view(),
            Ts::Collector(c) => c.view(),
            Ts::Store(s) => NodeView::new(NodeKind::Database, 6, "trace store")
                .badge(format!("{} traces", s.traces), Tone::Neutral)
                .badge(format!("{} with an error", s.error_traces), Tone::Neutral),
        }
    }
}

impl Service {
    /// A call (or, at the gateway, a request) arrives: work and call the children at once.
    fn begin(&mut self, trace: u64, sampled: bool, parent: Option<(NodeId, CallId)>, ctx: &mut Ctx<Ts>) {
        let job = self.next_job;
        self.next_job += 1;
        let n = ctx.param("services") as usize;
        let straggles = ctx.rng().unit_open() < per_service(ctx.param("straggle_bp"), n);
        let base = ctx.rng().exponential(WORK_US) as Micros + straggles as Micros * ctx.param_ms("straggle_ms");
        ctx.set_timer(self.health.latency(base).unwrap_or(base), Timer::Work(job));
        for &child in &self.children {
            let call = self.calls.start(ctx, job, CALL_TIMEOUT_US, Timer::CallTimeout);
            ctx.send(child, Msg::Call(trace, sampled, call));
        }
        let left = self.children.len() + 1;
        self.jobs.insert(job, Job { trace, sampled, start: ctx.now(), parent, left, error: false });
    }

    /// The work or one call of `job` is done (`failed`); the span ends with the last.
    fn done(&mut self, job: u64, failed: bool, ctx: &mut Ctx<Ts>) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        (j.left, j.error) = (j.left - 1, j.error || failed);
        if j.left > 0 {
            return;
        }
        let j = self.jobs.remove(&job).expect("a job");
        let span = Span { trace: j.trace, service: self.index, start: j.start, end: ctx.now(), error: j.error };
        ctx.tally("spans", j.trace, 1);
        if j.error {
            ctx.tally("error", j.trace, 1);
        }
        if j.sampled {
            self.batch.push(span);
        }
        match j.parent {
            Some((to, call)) => ctx.send(to, Msg::Reply(call, !j.error)),
            None => {
                self.answered[j.error as usize] += 1;
                ctx.count(["answered", "failed"][j.error as usize], 1);
                let slow = ctx.now().since(j.start) >= ctx.param_ms("slow_ms");
                if slow {
                    ctx.tally("slow", j.trace, 1);
                }
            }
        }
    }

    /// Exports the spans ended since the last flush, each to its collector.
    fn flush(&mut self, ctx: &mut Ctx<Ts>) {
        ctx.set_timer(ctx.param_ms("flush_ms"), Timer::Flush);
        let c = self.collectors.len() as u64;
        let mut out: Vec<Vec<Span>> = vec![Vec::new(); c as usize];
        for span in self.batch.drain(..) {
            let k = match self.strategy {
                Strategy::TailBased => route(span.trace, c),
                Strategy::Head | Strategy::NoAffinity => self.index as u64 % c,
            };
            out[k as usize].push(span);
        }
        for (k, spans) in out.into_iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            ctx.count("shipped_spans", spans.len() as i64);
            ctx.send(self.collectors[k], Msg::Export(spans));
        }
    }

    /// The audit: every trace started long enough ago for all its spans to have arrived.
    fn audit(&mut self, ctx: &mut Ctx<Ts>) {
        ctx.set_timer(TICK_US, Timer::Audit);
        let settle = ctx.param_ms("wait_ms") + 2 * ctx.param_ms("flush_ms") + SETTLE_EXTRA_US + TICK_US;
        let a = &mut self.audit;
        while a.starts.get(a.audited as usize).is_some_and(|&s| ctx.truth().since(s) >= settle) {
            ctx.tally("audit", a.audited, 1);
            a.audited += 1;
        }
        a.marks.push_back(a.audited);
        if a.marks.len() > WINDOW_AUDITS {
            a.marks.pop_front();
        }
    }

    fn view(&self) -> NodeView {
        let depth = (64 - (self.index as u64 + 1).leading_zeros() - 1) as u8;
        let kind = if self.index == 0 { NodeKind::LoadBalancer } else { NodeKind::Service };
        let v = NodeView::new(kind, depth, NAMES[self.index as usize])
            .badge_if(!self.health.is_up(), self.health.to_string(), self.health.tone())
            .badge_if(self.burst_pct > 0, format!("failing {}%", self.burst_pct), Tone::Bad);
        if self.index > 0 {
            return v;
        }
        v.badge(format!("{:.0} req/s", self.arrivals.effective_rate_per_s()), Tone::Neutral)
            .badge(format!("{} failed of {}", self.answered[1], self.answered[0] + self.answered[1]), Tone::Neutral)
    }
}

impl Collector {
    fn receive(&mut self, spans: Vec<Span>, ctx: &mut Ctx<Ts>) {
        if self.strategy == Strategy::Head {
            return ctx.send(self.store, Msg::Store(spans));
        }
        let mut now = Vec::new();
        for span in spans {
            if let Arrival::Late { kept } = self.tail.offer(span, ctx.now(), ctx.param_ms("wait_ms")) {
                ctx.count("late_spans", 1);
                ctx.tally("late", span.trace, 1);
                if kept {
                    now.push(span);
                }
            }
        }
        if !now.is_empty() {
            ctx.send(self.store, Msg::Store(now));
        }
    }

    /// A round: the traces whose wait is over, decided; the kept ones' spans to the store.
    fn decide(&mut self, ctx: &mut Ctx<Ts>) {
        ctx.set_timer(TICK_US, Timer::Decide);
        let policy =
            Policy { slow_us: ctx.param_ms("slow_ms"), baseline_bp: ctx.param("baseline_bp"), salt: BASELINE_SALT };
        let mut kept = Vec::new();
        for d in self.tail.decide(ctx.now(), policy, CACHE_US) {
            if d.over_budget {
                self.over_budget += 1;
                ctx.tally("over_budget", d.trace, 1);
            }
            if d.keep {
                self.kept += 1;
                kept.extend(d.spans);
            } else {
                self.dropped += 1;
            }
        }
        if !kept.is_empty() {
            ctx.send(self.store, Msg::Store(kept));
        }
    }

    fn view(&self) -> NodeView {
        let label = format!("collector {}", self.index);
        let v = NodeView::new(NodeKind::Queue, 5, label);
        if self.strategy == Strategy::Head {
            return v.badge("passes sampled spans on", Tone::Neutral);
        }
        let held = self.tail.buffered_spans() as i64;
        v.badge(format!("holds {} traces, {held} spans", self.tail.pending_traces()), Tone::Neutral)
            .badge(format!("kept {} · dropped {}", self.kept, self.dropped), Tone::Neutral)
            .badge_if(self.over_budget > 0, format!("{} errors over budget", self.over_budget), Tone::Warn)
            .gauge("buffer (spans)", held, held.max(2000))
    }
}

impl Store {
    fn store(&mut self, spans: Vec<Span>, ctx: &mut Ctx<Ts>) {
        for s in spans {
            let held = self.held.get_or_insert(s.trace, 0);
            let bit = 1u32 << s.service;
            if *held & bit != 0 {
                continue;
            }
            if *held == 0 {
                self.traces += 1;
            }
            *held |= bit;
            if s.service == 0 && s.error {
                self.error_traces += 1;
            }
            ctx.count("stored_spans", 1);
            ctx.tally("stored", s.trace, 1);
        }
    }
}
