//! Backpressure: Poisson producers → one server's queue → c workers with exponential
//! service (an M/M/c queue), and what the server does when work arrives faster than it
//! can finish it: buffer without bound, block the producers, shed with 429 + Retry-After,
//! or adapt its concurrency limit to the latency it sees.

use crate::parts::queueing;
use faultline_core::*;
use std::collections::{BTreeMap, VecDeque};

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "backpressure",
        title: "Backpressure on a work queue",
        category: "Traffic control",
        seeds: &["S0#7", "S1-P#4", "S1#2"],
        summary: "Producers outpace the workers for ten seconds. Buffer everything and the server runs out of memory \
                  and silently loses every job it held; block, shed or adapt and nothing is lost.",
        note: Note {
            what_can_go_wrong: "An unbounded buffer turns a short overload into a long latency tail and then into an \
                out-of-memory crash that takes every accepted job with it. Nobody is told: producers were promised \
                the work would be done.",
            what_you_sacrifice:
                "Blocking moves the wait upstream (producers slow down to the workers' pace). Shedding \
                fails some requests fast and relies on clients to back off. An adaptive limit sheds earlier than \
                strictly needed to keep latency near its target.",
            at_10x: "At ten times the load retries become load themselves: without jittered backoff and a retry \
                budget, rejected clients come back in waves. Memory is still lost on a crash unless the queue is \
                durable — which is why Kafka-style logs exist.",
            resembles: "Bounded channels in Go and Tokio, TCP flow control, HTTP 429 with Retry-After, Netflix's \
                concurrency-limits, Envoy's adaptive concurrency filter.",
            try_this: &[
                "Play `unbounded`: during the burst the queue gauge climbs past the memory limit, the server crashes \
                 and `no-silent-drop` fails.",
                "Switch to `shed` and replay: the queue stops at its capacity, the 429 rate rises during the burst, \
                 and every check holds.",
                "Set workers to 5 (capacity 100 jobs/s at 50 ms each): the burst fits and even `unbounded` survives — \
                 then raise the burst factor to 300%.",
                "Set the burst factor to 100% and run long: the mean queue wait approaches the M/M/c theory line.",
            ],
        },
    },
    params: &[
        ParamSpec {
            id: "producers",
            label: "Producers",
            unit: "",
            min: 1,
            max: 50,
            step: 1,
            default: 4,
            live: false,
            help: "Independent Poisson sources; the arrival rate is split between them.",
        },
        ParamSpec {
            id: "arrival_rate",
            label: "Arrival rate",
            unit: "jobs/s",
            min: 1,
            max: 5000,
            step: 1,
            default: 64,
            live: true,
            help: "Total new jobs per second, before any burst.",
        },
        ParamSpec {
            id: "workers",
            label: "Workers",
            unit: "",
            min: 1,
            max: 256,
            step: 1,
            default: 4,
            live: true,
            help: "Jobs served at once (c in M/M/c).",
        },
        ParamSpec {
            id: "service_ms",
            label: "Mean service time",
            unit: "ms",
            min: 1,
            max: 2000,
            step: 1,
            default: 50,
            live: true,
            help: "Exponentially distributed; one worker finishes 1000/service_ms jobs per second.",
        },
        ParamSpec {
            id: "queue_capacity",
            label: "Queue capacity",
            unit: "jobs",
            min: 1,
            max: 100_000,
            step: 1,
            default: 100,
            live: false,
            help: "The bound the block, shed and adaptive strategies keep; the memory check uses it too.",
        },
        ParamSpec {
            id: "memory_limit",
            label: "Memory limit",
            unit: "jobs",
            min: 10,
            max: 1_000_000,
            step: 10,
            default: 400,
            live: true,
            help: "Buffering more jobs than this kills the server (out of memory); it restarts empty after 2 s.",
        },
        ParamSpec {
            id: "burst_factor",
            label: "Burst factor",
            unit: "%",
            min: 0,
            max: 1000,
            step: 10,
            default: 200,
            live: false,
            help: "Arrival rate during the scheduled burst, as a percentage of normal.",
        },
        ParamSpec {
            id: "burst_at",
            label: "Burst starts",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 10,
            live: false,
            help: "When the scheduled burst begins.",
        },
        ParamSpec {
            id: "burst_len",
            label: "Burst length",
            unit: "s",
            min: 0,
            max: 3600,
            step: 1,
            default: 10,
            live: false,
            help: "How long the scheduled burst lasts (0: no burst).",
        },
        ParamSpec {
            id: "max_retries",
            label: "Retries after 429",
            unit: "",
            min: 0,
            max: 20,
            step: 1,
            default: 3,
            live: true,
            help: "Each retry waits Retry-After plus exponential jitter; after the last, the client gives up.",
        },
        ParamSpec {
            id: "target_latency_ms",
            label: "Adaptive latency target",
            unit: "ms",
            min: 10,
            max: 10_000,
            step: 10,
            default: 300,
            live: true,
            help: "The adaptive limit grows while jobs finish within this, and shrinks when they do not.",
        },
        ParamSpec {
            id: "client_timeout_ms",
            label: "Client timeout",
            unit: "ms",
            min: 100,
            max: 120_000,
            step: 100,
            default: 5000,
            live: true,
            help: "How long a producer waits for the server to admit or refuse a job.",
        },
    ],
    strategies: &[
        StrategySpec {
            id: "unbounded",
            label: "Unbounded buffer",
            naive: true,
            help: "Accept everything; queue in memory.",
        },
        StrategySpec {
            id: "block",
            label: "Bounded + block",
            naive: false,
            help: "When the queue is full, hold the producer (no reply) until there is room.",
        },
        StrategySpec {
            id: "shed",
            label: "Bounded + shed (429)",
            naive: false,
            help: "When the queue is full, answer 429 with Retry-After; clients back off with jitter.",
        },
        StrategySpec {
            id: "adaptive",
            label: "Adaptive concurrency",
            naive: false,
            help: "AIMD on the in-flight limit: +1/limit per fast job, ×0.9 per slow one; refuse beyond it.",
        },
    ],
    faults: &[
        FaultSpec {
            id: "burst",
            label: "Traffic burst",
            target: Target::Global,
            value_label: "load %",
            value_min: 0,
            value_max: 1000,
            value_default: 300,
            help: "Sets every producer's rate to this percentage of normal (100 ends a burst).",
        },
        FaultSpec {
            id: "slow-workers",
            label: "Slow workers",
            target: Target::Global,
            value_label: "service time %",
            value_min: 10,
            value_max: 1000,
            value_default: 300,
            help: "Multiplies the mean service time (100 restores it).",
        },
    ],
    checks: &[
        CheckSpec {
            id: "no-silent-drop",
            label: "Nothing dropped silently",
            help: "Every job the server accepted is completed; refusals are explicit (429 or block).",
        },
        CheckSpec {
            id: "bounded-memory",
            label: "Queue within capacity",
            help: "The jobs buffered in memory never exceed the queue capacity.",
        },
    ],
    metrics: &[
        MetricSpec { id: "throughput", label: "Throughput", unit: "jobs/s", measure: Measure::Rate("completed") },
        MetricSpec { id: "queue", label: "Queue depth", unit: "jobs", measure: Measure::Gauge("queue_depth") },
        MetricSpec {
            id: "latency_p99",
            label: "Latency p99",
            unit: "us",
            measure: Measure::Quantile("latency_us", 0.99),
        },
        MetricSpec { id: "wait_mean", label: "Queue wait (mean)", unit: "us", measure: Measure::Mean("wait_us") },
        MetricSpec {
            id: "wait_theory",
            label: "Queue wait, theory",
            unit: "us",
            measure: Measure::Gauge("theory_wait_us"),
        },
        MetricSpec {
            id: "rejected",
            label: "Refused (429)",
            unit: "%",
            measure: Measure::Percent { num: "rejected", rest: "accepted" },
        },
        MetricSpec { id: "lost", label: "Lost silently", unit: "jobs", measure: Measure::Count("lost") },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

/// The server is always node 0; producers follow.
const SERVER: NodeId = 0;
const RESTART_AFTER: Micros = 2 * MICROS_PER_S;
const RETRY_BASE: Micros = 100 * MICROS_PER_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Unbounded,
    Block,
    Shed,
    Adaptive,
}

impl Strategy {
    fn from_id(id: &str) -> Strategy {
        match id {
            "block" => Strategy::Block,
            "shed" => Strategy::Shed,
            "adaptive" => Strategy::Adaptive,
            _ => Strategy::Unbounded,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Msg {
    Submit {
        job: u64,
        created: Time,
    },
    Accepted {
        job: u64,
    },
    /// The queue is full; the producer is held until `Accepted` (block strategy).
    Blocked {
        job: u64,
    },
    Rejected {
        job: u64,
        retry_after_ms: u64,
    },
    Done {
        job: u64,
        created: Time,
    },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Submit { .. } => "submit",
            Msg::Accepted { .. } => "accepted",
            Msg::Blocked { .. } => "blocked",
            Msg::Rejected { .. } => "429",
            Msg::Done { .. } => "done",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Job {
    id: u64,
    from: NodeId,
    /// On the producer's clock, echoed back for its latency measurement.
    created: Time,
    arrived: Time,
}

#[derive(Clone, Debug)]
pub enum Timer {
    Arrive,
    Retry { job: u64, created: Time, attempt: u32 },
    Timeout { job: u64 },
    Finish { job: Job },
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Arrive => "arrive",
            Timer::Retry { .. } => "retry",
            Timer::Timeout { .. } => "timeout",
            Timer::Finish { .. } => "finish",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Bp {
    Server(Box<Server>),
    Producer(Box<Producer>),
}

#[derive(Clone, Debug)]
pub struct Server {
    strategy: Strategy,
    workers: u32,
    service_us: f64,
    slow_pct: i64,
    capacity: usize,
    memory_limit: usize,
    target_us: u64,
    queue: VecDeque<Job>,
    parked: VecDeque<Job>,
    busy: u32,
    /// Adaptive in-flight limit, in thousandths of a job.
    limit_milli: u64,
    /// Like TCP, the limit shrinks at most once per latency target, not once per slow job.
    last_decrease: Time,
}

#[derive(Clone, Debug)]
pub struct Producer {
    index: u32,
    rate_per_s: f64,
    load_pct: i64,
    max_retries: u32,
    timeout: Micros,
    next_seq: u64,
    blocked_since: Option<Time>,
    /// Jobs sent and not yet admitted or refused: (created, attempt, timeout timer).
    waiting: BTreeMap<u64, (Time, u32, TimerId)>,
    arrival: Option<TimerId>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Bp> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let producers = setup.param("producers") as u32;
    let server = Server {
        strategy: Strategy::from_id(setup.strategy()),
        workers: setup.param("workers") as u32,
        service_us: setup.param("service_ms") as f64 * 1000.0,
        slow_pct: 100,
        capacity: setup.param("queue_capacity") as usize,
        memory_limit: setup.param("memory_limit") as usize,
        target_us: setup.param("target_latency_ms") as u64 * 1000,
        queue: VecDeque::new(),
        parked: VecDeque::new(),
        busy: 0,
        limit_milli: 0,
        last_decrease: Time::ZERO,
    };
    assert_eq!(sim.add_node(Bp::Server(Box::new(server))), SERVER);
    for index in 0..producers {
        sim.add_node(Bp::Producer(Box::new(Producer {
            index,
            rate_per_s: setup.param("arrival_rate") as f64 / producers as f64,
            load_pct: 100,
            max_retries: setup.param("max_retries") as u32,
            timeout: setup.param("client_timeout_ms") as u64 * 1000,
            next_seq: 0,
            blocked_since: None,
            waiting: BTreeMap::new(),
            arrival: None,
        })));
    }
    let (at, len) = (setup.param("burst_at") as u64, setup.param("burst_len") as u64);
    if len > 0 {
        let burst = |value| Fault::Custom { id: "burst".into(), node: None, value };
        sim.schedule(Time::from_secs(at), burst(setup.param("burst_factor")));
        sim.schedule(Time::from_secs(at + len), burst(100));
    }
    sim.check("no-silent-drop", |w| match w.metrics.counter("lost") {
        0 => Ok(()),
        n => Err(format!("{n} accepted jobs vanished when the server died")),
    });
    sim.check("bounded-memory", |w| {
        let Bp::Server(s) = &w.nodes[SERVER as usize] else { unreachable!() };
        let cap = w.param("queue_capacity") as usize;
        if s.queue.len() > cap {
            Err(format!("{} jobs buffered, capacity {cap}", s.queue.len()))
        } else {
            Ok(())
        }
    });
    Box::new(sim)
}

impl Node for Bp {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Bp::Server(s) => s.start(ctx),
            Bp::Producer(p) => p.schedule_arrival(ctx),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match self {
            Bp::Server(s) => {
                if let Msg::Submit { job, created } = msg {
                    s.admit(Job { id: job, from, created, arrived: ctx.now() }, ctx);
                }
            }
            Bp::Producer(p) => p.on_reply(msg, ctx),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Bp::Server(s), Timer::Finish { job }) => s.finish(job, ctx),
            (Bp::Producer(p), Timer::Arrive) => {
                p.arrival = None;
                if p.blocked_since.is_none() {
                    p.new_job(ctx);
                    p.schedule_arrival(ctx);
                }
            }
            (Bp::Producer(p), Timer::Retry { job, created, attempt }) => p.submit(job, created, attempt, ctx),
            (Bp::Producer(p), Timer::Timeout { job }) => p.timed_out(job, ctx),
            _ => {}
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Bp::Server(s) => {
                let lost = s.queue.len() + s.busy as usize;
                if lost > 0 {
                    ctx.count("lost", lost as i64);
                    ctx.note(format!("crashed holding {lost} accepted jobs: they are gone"));
                }
                s.queue.clear();
                s.parked.clear();
                s.busy = 0;
                ctx.gauge("queue_depth", 0);
            }
            Bp::Producer(p) => {
                p.waiting.clear();
                p.blocked_since = None;
                p.arrival = None;
            }
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Bp::Server(s), Control::Strategy(id)) => {
                s.strategy = Strategy::from_id(id);
                for job in std::mem::take(&mut s.parked) {
                    s.admit(job, ctx);
                }
                s.theory(ctx);
            }
            (Bp::Server(s), Control::Param { id, value }) => {
                match id {
                    "workers" => s.workers = value as u32,
                    "service_ms" => s.service_us = value as f64 * 1000.0,
                    "queue_capacity" => s.capacity = value as usize,
                    "memory_limit" => s.memory_limit = value as usize,
                    "target_latency_ms" => s.target_us = value as u64 * 1000,
                    _ => {}
                }
                s.pull(ctx);
                s.theory(ctx);
            }
            (Bp::Server(s), Control::Custom { id: "slow-workers", value }) => s.slow_pct = value,
            (Bp::Producer(p), Control::Custom { id: "burst", value }) => p.load_pct = value,
            (Bp::Producer(p), Control::Param { id, value }) => match id {
                "arrival_rate" => p.rate_per_s = value as f64 / ctx.param("producers") as f64,
                "max_retries" => p.max_retries = value as u32,
                "client_timeout_ms" => p.timeout = value as u64 * 1000,
                _ => {}
            },
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Bp::Server(s) => {
                let mut v = NodeView::new(NodeKind::Queue, 1, "server")
                    .gauge("queue", s.queue.len() as i64, s.capacity as i64)
                    .gauge("workers busy", s.busy as i64, s.workers as i64);
                if s.queue.len() > s.capacity {
                    v = v.badge(format!("{} over capacity", s.queue.len() - s.capacity), Tone::Bad);
                }
                if !s.parked.is_empty() {
                    v = v.badge(format!("{} producers held", s.parked.len()), Tone::Warn);
                }
                if s.strategy == Strategy::Adaptive {
                    v = v.badge(format!("limit {}", s.limit_milli / 1000), Tone::Neutral);
                }
                v
            }
            Bp::Producer(p) => {
                let mut v = NodeView::new(NodeKind::Client, 0, numbered("producer", p.index as u64));
                if p.blocked_since.is_some() {
                    v = v.badge("blocked", Tone::Warn);
                }
                if p.load_pct != 100 {
                    v = v.badge(format!("load {}%", p.load_pct), Tone::Warn);
                }
                v.gauge("awaiting reply", p.waiting.len() as i64, 10)
            }
        }
    }
}

impl Server {
    fn start(&mut self, ctx: &mut Ctx<Bp>) {
        self.limit_milli = self.workers as u64 * 1000;
        ctx.gauge("queue_depth", 0);
        self.theory(ctx);
    }

    fn in_system(&self) -> usize {
        self.queue.len() + self.busy as usize
    }

    fn admit(&mut self, job: Job, ctx: &mut Ctx<Bp>) {
        let full = self.queue.len() >= self.capacity;
        match self.strategy {
            Strategy::Unbounded => self.accept(job, ctx),
            Strategy::Block if full => {
                ctx.send(job.from, Msg::Blocked { job: job.id });
                self.parked.push_back(job);
            }
            Strategy::Shed if full => self.reject(job, ctx),
            Strategy::Adaptive if self.in_system() as u64 * 1000 >= self.limit_milli.max(1000) || full => {
                self.reject(job, ctx)
            }
            _ => self.accept(job, ctx),
        }
    }

    fn accept(&mut self, job: Job, ctx: &mut Ctx<Bp>) {
        ctx.count("accepted", 1);
        ctx.send(job.from, Msg::Accepted { job: job.id });
        if self.busy < self.workers {
            self.serve(job, ctx);
        } else {
            self.queue.push_back(job);
            ctx.gauge("queue_depth", self.queue.len() as i64);
            if self.queue.len() > self.memory_limit {
                ctx.note(format!("out of memory with {} jobs buffered", self.queue.len()));
                ctx.count("oom_crashes", 1);
                ctx.crash(Some(RESTART_AFTER));
            }
        }
    }

    fn reject(&mut self, job: Job, ctx: &mut Ctx<Bp>) {
        ctx.count("rejected", 1);
        // Retry-After: roughly how long the backlog takes to drain.
        let drain_ms = (self.queue.len() as f64 + 1.0) * self.service_us / 1000.0 / self.workers as f64;
        let retry_after_ms = (drain_ms as u64).clamp(100, 5_000);
        ctx.send(job.from, Msg::Rejected { job: job.id, retry_after_ms });
    }

    fn serve(&mut self, job: Job, ctx: &mut Ctx<Bp>) {
        self.busy += 1;
        ctx.observe("wait_us", ctx.now().since(job.arrived));
        let mean = self.service_us * self.slow_pct as f64 / 100.0;
        let dur = ctx.rng().exponential(mean) as Micros;
        ctx.set_timer(dur, Timer::Finish { job });
    }

    fn finish(&mut self, job: Job, ctx: &mut Ctx<Bp>) {
        self.busy -= 1;
        ctx.count("completed", 1);
        let sojourn = ctx.now().since(job.arrived);
        ctx.observe("sojourn_us", sojourn);
        ctx.send(job.from, Msg::Done { job: job.id, created: job.created });
        if self.strategy == Strategy::Adaptive {
            let lo = self.workers as u64 * 1000;
            let hi = (self.capacity as u64 + self.workers as u64) * 1000;
            if sojourn <= self.target_us {
                self.limit_milli += 1_000_000 / self.limit_milli.max(1);
            } else if ctx.now().since(self.last_decrease) >= self.target_us {
                self.limit_milli = self.limit_milli * 9 / 10;
                self.last_decrease = ctx.now();
            }
            self.limit_milli = self.limit_milli.clamp(lo, hi);
            ctx.gauge("limit", (self.limit_milli / 1000) as i64);
        }
        self.pull(ctx);
    }

    /// Starts queued jobs on idle workers, then admits held producers while there is room.
    fn pull(&mut self, ctx: &mut Ctx<Bp>) {
        while self.busy < self.workers {
            let Some(next) = self.queue.pop_front() else { break };
            self.serve(next, ctx);
        }
        while self.queue.len() < self.capacity {
            let Some(job) = self.parked.pop_front() else { break };
            self.accept(job, ctx);
        }
        ctx.gauge("queue_depth", self.queue.len() as i64);
    }

    /// The steady-state mean queue wait theory predicts for these parameters (no burst):
    /// M/M/c for the unbounded buffer, M/M/c/K for the others (exact for `shed` without retries).
    fn theory(&self, ctx: &mut Ctx<Bp>) {
        let lambda = ctx.param("arrival_rate") as f64;
        let mu = 1e6 / self.service_us;
        let wait = match self.strategy {
            Strategy::Unbounded => queueing::mmc_mean_wait(lambda, mu, self.workers),
            _ => Some(queueing::mmck(lambda, mu, self.workers, self.workers + self.capacity as u32).mean_wait),
        };
        ctx.gauge("theory_wait_us", wait.map_or(-1, |w| (w * 1e6) as i64));
    }
}

impl Producer {
    fn schedule_arrival(&mut self, ctx: &mut Ctx<Bp>) {
        let rate = self.rate_per_s * self.load_pct as f64 / 100.0;
        if rate <= 0.0 || self.arrival.is_some() {
            // A paused source is woken by the next rate change, via the 1 s re-check.
            if self.arrival.is_none() {
                self.arrival = Some(ctx.set_timer(MICROS_PER_S, Timer::Arrive));
            }
            return;
        }
        let gap = ctx.rng().exponential(1e6 / rate) as Micros;
        self.arrival = Some(ctx.set_timer(gap.max(1), Timer::Arrive));
    }

    fn new_job(&mut self, ctx: &mut Ctx<Bp>) {
        if self.rate_per_s * self.load_pct as f64 <= 0.0 {
            return;
        }
        let job = ((ctx.me() as u64) << 40) | self.next_seq;
        self.next_seq += 1;
        ctx.count("submitted", 1);
        let now = ctx.now();
        self.submit(job, now, 0, ctx);
    }

    fn submit(&mut self, job: u64, created: Time, attempt: u32, ctx: &mut Ctx<Bp>) {
        ctx.send(SERVER, Msg::Submit { job, created });
        let timeout = ctx.set_timer(self.timeout, Timer::Timeout { job });
        self.waiting.insert(job, (created, attempt, timeout));
    }

    fn on_reply(&mut self, msg: Msg, ctx: &mut Ctx<Bp>) {
        match msg {
            Msg::Accepted { job } => {
                if let Some((_, _, t)) = self.waiting.remove(&job) {
                    ctx.cancel_timer(t);
                }
                self.unblock(ctx);
            }
            Msg::Blocked { .. } => {
                if self.blocked_since.is_none() {
                    self.blocked_since = Some(ctx.now());
                }
            }
            Msg::Rejected { job, retry_after_ms } => {
                let Some((created, attempt, t)) = self.waiting.remove(&job) else { return };
                ctx.cancel_timer(t);
                if attempt < self.max_retries {
                    ctx.count("retries", 1);
                    let jitter = ctx.rng().range(0, RETRY_BASE << attempt.min(10));
                    let after = retry_after_ms * 1000 + jitter;
                    ctx.set_timer(after, Timer::Retry { job, created, attempt: attempt + 1 });
                } else {
                    ctx.count("gave_up", 1);
                }
            }
            Msg::Done { created, .. } => ctx.observe("latency_us", ctx.now().since(created)),
            Msg::Submit { .. } => {}
        }
    }

    /// The server neither admitted nor refused the job in time: the caller sees an error.
    fn timed_out(&mut self, job: u64, ctx: &mut Ctx<Bp>) {
        if self.waiting.remove(&job).is_some() {
            ctx.count("timed_out", 1);
            self.unblock(ctx);
        }
    }

    fn unblock(&mut self, ctx: &mut Ctx<Bp>) {
        if let Some(since) = self.blocked_since.take() {
            ctx.observe("blocked_us", ctx.now().since(since));
            self.schedule_arrival(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, &recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time::from_secs(secs), u64::MAX);
        run
    }

    fn within(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    #[test]
    fn unbounded_queue_matches_erlang_c() {
        // No burst, ρ = 64 / (4 × 20) = 0.8: a textbook M/M/4 queue.
        let r = run(Recipe::new("backpressure", "unbounded", 5).with_param("burst_len", 0), 4000);
        let wait = r.metrics().histogram("wait_us").unwrap().mean() / 1e6;
        let theory = queueing::mmc_mean_wait(64.0, 20.0, 4).unwrap();
        assert!(within(wait, theory, 0.06), "mean wait {wait:.4}s, Erlang C says {theory:.4}s");
        let served = r.metrics().counter("completed") as f64 / 4000.0;
        assert!(within(served, 64.0, 0.02), "throughput {served}");
    }

    #[test]
    fn shedding_matches_mmck_blocking() {
        // No retries, so arrivals stay Poisson: an M/M/4/14 loss system.
        let recipe = Recipe::new("backpressure", "shed", 6)
            .with_param("burst_len", 0)
            .with_param("max_retries", 0)
            .with_param("arrival_rate", 76)
            .with_param("queue_capacity", 10);
        let r = run(recipe, 4000);
        let m = r.metrics();
        let refused = m.counter("rejected") as f64 / (m.counter("rejected") + m.counter("accepted")) as f64;
        let theory = queueing::mmck(76.0, 20.0, 4, 14);
        assert!(within(refused, theory.block, 0.08), "refused {refused:.4}, M/M/c/K says {:.4}", theory.block);
        let wait = m.histogram("wait_us").unwrap().mean() / 1e6;
        assert!(within(wait, theory.mean_wait, 0.06), "wait {wait:.4}s vs {:.4}s", theory.mean_wait);
    }

    #[test]
    fn the_burst_overflows_an_unbounded_buffer_but_not_a_bounded_one() {
        let naive = run(Recipe::new("backpressure", "unbounded", 1), 30);
        assert!(naive.metrics().counter("oom_crashes") >= 1);
        assert!(naive.metrics().counter("lost") > 0);
        for st in ["block", "shed", "adaptive"] {
            let r = run(Recipe::new("backpressure", st, 1), 30);
            let m = r.metrics();
            assert_eq!(m.counter("lost"), 0, "{st}");
            // Conservation: every accepted job is completed or still inside the server.
            let frame = r.frame(0);
            let inside: i64 = frame.nodes[SERVER as usize].view.gauges.iter().map(|g| g.value).sum();
            assert_eq!(m.counter("accepted"), m.counter("completed") + inside, "{st}");
        }
    }

    #[test]
    fn shedding_refuses_explicitly_during_the_burst() {
        let r = run(Recipe::new("backpressure", "shed", 2), 30);
        let m = r.metrics();
        assert!(m.counter("rejected") > 100, "the burst must be refused, not buffered");
        assert!(m.gauge("queue_depth") <= 100);
    }
}
