//! Backpressure: Poisson producers → one server's queue → c workers with exponential
//! service (an M/M/c queue), and what the server does when work arrives faster than it
//! can finish it: buffer without bound, block the producers, shed with 429 + Retry-After,
//! or adapt its concurrency limit to the latency it sees. The kit does the mechanics (producers
//! whose tries are held, refused or timed out, retry backoff, a station that can hold producers,
//! an AIMD limit); this file keeps the lesson. It is the scenario to copy when you write a new one.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::limit::Aimd;
use crate::parts::producer::{Answer, Job, Producer};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::station::{Full, Offer, Service, Slot, Station};
use faultline_core::*;

// A table, an entry a line: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "backpressure",
        title: "Backpressure on a work queue",
        category: "Traffic control",
        seeds: &["S0#7", "S1-P#4", "S1#2"],
        summary: "Producers outpace the workers for ten seconds. Buffer everything and the server runs out of memory \
                  and silently loses every job it held; block, shed or adapt and nothing is lost. The model: Poisson \
                  producers, exponential service times (M/M/c), 1–3 ms links, jobs kept in memory only.",
        note: Note {
            what_can_go_wrong: "An unbounded buffer turns a short overload into a long latency tail and then into an \
                out-of-memory crash that takes every accepted job with it. Nobody is told: producers were promised \
                the work would be done.",
            what_you_sacrifice: "Blocking moves the wait upstream (producers slow down to the workers' pace). Shedding \
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
                "Set workers to 7 (140 jobs/s at 50 ms each, more than the burst's 128): the burst fits and even \
                 `unbounded` holds every check — then raise the burst factor to 300% and it crashes again.",
                "Set the burst factor to 100% and run long: the mean queue wait approaches the theory line (Erlang C \
                 for M/M/c: Poisson arrivals, no retries).",
            ],
        },
    },
    params: &[
        ParamSpec::setup("producers", "Producers", "", 1..=50, 4, "Independent Poisson sources; the arrival rate is split between them."),
        ParamSpec::live("arrival_rate", "Arrival rate", "jobs/s", 1..=5000, 64, "Total new jobs per second, before any burst."),
        ParamSpec::live("workers", "Workers", "", 1..=256, 4, "Jobs served at once (c in M/M/c)."),
        ParamSpec::live("service_ms", "Mean service time", "ms", 1..=2000, 50, "Exponential; a worker finishes 1000/service_ms jobs a second."),
        ParamSpec::live("queue_capacity", "Queue capacity", "jobs", 1..=100_000, 100,
            "The bound block, shed and adaptive keep, and the check holds all to. Lowered, it evicts no one: the queue drains to it."),
        ParamSpec::live("memory_limit", "Memory limit", "jobs", 10..=1_000_000, 400,
            "Buffering more jobs than this kills the server (out of memory); it restarts empty after 2 s.").step(10),
        ParamSpec::setup("burst_factor", "Burst factor", "%", 0..=1000, 200, "Arrival rate during the scheduled burst, as a % of normal.").step(10),
        ParamSpec::setup("burst_at", "Burst starts", "s", 0..=3600, 10, "When the scheduled burst begins."),
        ParamSpec::setup("burst_len", "Burst length", "s", 0..=3600, 10, "How long the scheduled burst lasts (0: no burst)."),
        ParamSpec::live("max_retries", "Retries after 429", "", 0..=20, 3,
            "Each waits Retry-After plus exponential backoff with full jitter; after the last, the client gives up."),
        ParamSpec::live("target_latency_ms", "Adaptive latency target", "ms", 10..=10_000, 300,
            "The adaptive limit grows while jobs finish within this, and shrinks when they do not.").step(10),
        ParamSpec::live("client_timeout_ms", "Client timeout", "ms", 100..=120_000, 5000,
            "How long a producer waits for the server to admit or refuse a job.").step(100),
    ],
    strategies: &[
        StrategySpec::naive("unbounded", "Unbounded buffer", "Accept everything; queue in memory."),
        StrategySpec::fixed("block", "Bounded + block", "When the queue is full, hold the producer (no reply) until there is room."),
        StrategySpec::fixed("shed", "Bounded + shed (429)", "When the queue is full, answer 429 with Retry-After; clients back off with jitter."),
        StrategySpec::fixed("adaptive", "Adaptive concurrency",
            "AIMD on the in-flight limit: +1/limit per fast job, ×0.9 (once per target) on a slow one; refuse beyond it."),
    ],
    faults: &[
        FaultSpec::global("burst", "Traffic burst", "Sets every producer's rate to this % of normal (100 ends a burst).")
            .value("load %", 0..=1000, 300),
        FaultSpec::global("slow-workers", "Slow workers", "Multiplies the service time of jobs started from now on (100 restores it).")
            .value("service time %", 10..=1000, 300),
    ],
    checks: &[
        CheckSpec::new("no-silent-drop", "Nothing dropped silently",
            "Every job the server accepted is completed; refusals are explicit (429 or block)."),
        CheckSpec::new("bounded-memory", "Queue within capacity", "No job joins a queue already holding the capacity then in force."),
    ],
    metrics: &[
        MetricSpec::new("throughput", "Throughput", "jobs/s", Measure::Rate("completed")),
        MetricSpec::new("queue", "Queue depth", "jobs", Measure::Gauge("queue_depth")),
        MetricSpec::new("latency_p99", "Latency p99 (end to end)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("wait_mean", "Queue wait (mean)", "us", Measure::Mean("wait_us")),
        MetricSpec::new("wait_theory", "Queue wait, theory (-1: unstable)", "us", Measure::Gauge("theory_wait_us")),
        MetricSpec::new("rejected", "Tries refused (429)", "%", Measure::Percent { num: "rejected", rest: "accepted" }),
        MetricSpec::new("lost", "Lost silently", "jobs", Measure::Count("lost")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

/// The server is node 0; producers follow.
const SERVER: NodeId = 0;
/// A server that ran out of memory is restarted, empty, this much later.
const RESTART_AFTER: Micros = 2 * MICROS_PER_S;
/// The backoff added to Retry-After: full jitter over 100 ms, 200 ms, 400 ms… capped at 10 s.
const BACKOFF: RetryPolicy = RetryPolicy::new(0, 100 * MICROS_PER_MS, 10 * MICROS_PER_S, Jitter::Full);

/// Each strategy is a rule for a full queue: what the station does then (`None`: it is never
/// full), and whether an adaptive concurrency limit refuses work before the queue fills.
fn rule(strategy: &str) -> (Option<Full>, bool) {
    match strategy {
        "block" => (Some(Full::Hold), false),
        "shed" => (Some(Full::Reject), false),
        "adaptive" => (Some(Full::Reject), true),
        _ => (None, false),
    }
}

/// Each try of a job is a call: `Submit(call, created)`. The server answers `Accepted` (it owes
/// the job now: `Done(created)` follows), `Blocked` (the queue is full: `Accepted` follows when
/// there is room) or `Rejected` (429, with Retry-After). `created` is on the producer's clock.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Submit(CallId, Time),
    Accepted(CallId),
    Blocked(CallId),
    #[label = "429"]
    Rejected(CallId, Micros),
    Done(Time),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Retry(Job),
    Timeout(CallId),
    Finish(Slot),
}

/// A job as the server knows it: whom to answer, about which try.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    from: NodeId,
    call: CallId,
    created: Time,
}

#[derive(Clone, Debug, Holds)]
pub enum Role {
    Server(Server),
    Producer(Source),
}

#[derive(Clone, Debug)]
pub struct Server {
    full: Option<Full>,
    adaptive: bool,
    /// The queue and the workers; under `block` it also holds the producers it has no room for.
    station: Station<Ticket>,
    capacity: usize,
    /// The capacity in force when the newest queued job joined. The queue only shrinks between
    /// admissions (a lowered capacity evicts no one), so it stays within this bound as long as
    /// every admission kept to the capacity of its moment: the check holds it to that.
    admitted_under: usize,
    /// The adaptive strategy's bound on jobs inside (queued or in service), c to c + capacity.
    limit: Aimd,
}

#[derive(Clone, Debug)]
pub struct Source {
    index: u32,
    /// Its jobs, their tries (the calls' latency is how long admission or refusal took), and
    /// the try a full queue holds it on (block): it makes nothing meanwhile.
    jobs: Producer,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Role> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    // Nodes read their parameters as they start and when one moves; the first frame needs them.
    let (full, adaptive) = rule(setup.strategy());
    let (workers, capacity) = (setup.param("workers") as u32, setup.param("queue_capacity") as usize);
    let station = Station::new(workers, Service::Constant(1));
    let limit = Aimd::new(workers, workers + capacity as u32, 0);
    let server = Server { full, adaptive, station, capacity, admitted_under: 0, limit };
    assert_eq!(sim.add_node(Role::Server(server)), SERVER);
    for index in 0..setup.param("producers") as u32 {
        let calls = Calls::new("admit_us").counting_late("late_answers");
        let jobs = Producer::new(OpenLoop::poisson(0.0), calls, BACKOFF, 0);
        sim.add_node(Role::Producer(Source { index, jobs }));
    }
    let burst = FaultWindow::secs(setup.param("burst_at"), setup.param("burst_len"));
    burst.custom(&mut sim, "burst", None, setup.param("burst_factor"), 100);
    // Fails at each crash that loses accepted jobs (tallied by the crash's true time).
    sim.check("no-silent-drop", |w| match w.tallied.iter().find(|t| t.0 == "lost_in_crash" && t.2 > 0) {
        Some(&(_, _, n)) => Err(format!("{n} accepted jobs vanished when the server died")),
        None => Ok(()),
    });
    sim.check("bounded-memory", |w| match w.node::<Server>(SERVER) {
        s if s.station.queue_len() <= s.admitted_under => Ok(()),
        s => Err(format!("{} jobs queued; capacity {} when the last joined", s.station.queue_len(), s.admitted_under)),
    });
    Box::new(sim)
}

impl Node for Role {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Role::Server(s) => s.configure(ctx),
            Role::Producer(p) => {
                p.configure(ctx);
                p.jobs.arrivals.start(ctx, Timer::Arrive);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Role::Server(s), Msg::Submit(call, created)) => s.submit(Ticket { from, call, created }, ctx),
            (Role::Producer(_), Msg::Done(created)) => ctx.observe("latency_us", ctx.now().since(created)),
            (Role::Producer(p), Msg::Accepted(call)) => p.answered(call, Answer::Accepted, ctx),
            (Role::Producer(p), Msg::Blocked(call)) => p.answered(call, Answer::Held, ctx),
            (Role::Producer(p), Msg::Rejected(call, after_us)) => p.answered(call, Answer::Refused(after_us), ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Role::Server(s), Timer::Finish(slot)) => s.finish(slot, ctx),
            (Role::Producer(p), Timer::Arrive) => {
                let job = p.jobs.arrive(ctx, Timer::Arrive);
                p.submit(job, ctx);
            }
            (Role::Producer(p), Timer::Retry(job)) => p.submit(Some(job), ctx),
            // Neither admitted nor refused in time: the caller sees an error.
            (Role::Producer(p), Timer::Timeout(call)) => p.jobs.timed_out(ctx, call, Timer::Arrive),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Role::Server(s) => {
                // Held producers were never told "accepted": their tries time out, an error they see.
                let lost = s.station.crash(ctx).len();
                ctx.count("lost", lost as i64);
                ctx.tally("lost_in_crash", ctx.truth().micros(), lost as i64);
                ctx.note(format!("crashed holding {lost} accepted jobs: they are gone"));
                s.limit.reset();
                ctx.gauge("queue_depth", 0);
            }
            Role::Producer(p) => p.jobs.crash(ctx),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (&mut *self, c) {
            (Role::Server(s), Control::Strategy(id)) => (s.full, s.adaptive) = rule(id),
            (Role::Server(s), Control::Custom { id: "slow-workers", value }) => {
                s.station.set_slowdown_pct(value as u32)
            }
            (Role::Producer(p), Control::Custom { id: "burst", value }) => {
                p.jobs.arrivals.set_load_pct(value as u32, ctx, Timer::Arrive)
            }
            // Parameters are read below; producers follow no strategy; each fault is for the other kind.
            _ => {}
        }
        // After any change every parameter is read afresh, so each acts at once.
        match self {
            Role::Server(s) => s.configure(ctx),
            Role::Producer(p) => p.configure(ctx),
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Role::Server(s) => {
                let (queued, held) = (s.station.queue_len(), s.station.on_hold());
                let over = queued.saturating_sub(s.capacity);
                NodeView::new(NodeKind::Queue, 1, "server")
                    .gauge("queue", queued as i64, s.capacity as i64)
                    .gauge("workers busy", s.station.busy() as i64, s.station.servers() as i64)
                    .badge_if(over > 0, format!("{over} over capacity"), Tone::Bad)
                    .badge_if(held > 0, format!("{held} producers held"), Tone::Warn)
                    .badge_if(s.adaptive, format!("limit {}", s.limit.limit()), Tone::Neutral)
            }
            Role::Producer(p) => {
                let load = p.jobs.arrivals.load_pct();
                NodeView::new(NodeKind::Client, 0, numbered("producer", p.index as u64))
                    .badge_if(p.jobs.is_blocked(), "blocked", Tone::Warn)
                    .badge_if(load != 100, format!("load {load}%"), Tone::Warn)
                    .gauge("awaiting reply", p.jobs.awaiting() as i64, 10)
            }
        }
    }
}

impl Server {
    /// At a (re)start and after any change: what was moved acts at once, theory's line follows.
    fn configure(&mut self, ctx: &mut Ctx<Role>) {
        self.capacity = ctx.param("queue_capacity") as usize;
        self.station.set_service(Service::exponential_ms(ctx.param("service_ms") as u64));
        self.station.set_queue_capacity(self.full.map(|_| self.capacity));
        self.station.set_full_policy(self.full.unwrap_or_default());
        self.station.set_servers(ctx.param("workers") as u32, ctx, Timer::Finish);
        let c = self.station.servers();
        self.limit.set_bounds(c, c + self.capacity as u32);
        self.limit.set_target_us(ctx.param("target_latency_ms") as Micros * MICROS_PER_MS);
        // Held producers come in as room allows — or, once we no longer hold, are answered now.
        if self.full != Some(Full::Hold) {
            self.station.release_held().into_iter().for_each(|t| self.submit(t, ctx));
        }
        self.station.admit_held(ctx, Timer::Finish).into_iter().for_each(|t| self.accept(t, ctx));
        ctx.gauge("queue_depth", self.station.queue_len() as i64);
        // Theory's mean wait at the base rate (the burst is a transient): Erlang C unbounded (-1 when
        // λ ≥ cμ), M/M/c/K bounded — exact for `shed` without retries, a reference for the rest.
        let wait = self.station.theory_mean_wait(ctx.param("arrival_rate") as f64);
        ctx.gauge("theory_wait_us", wait.map_or(-1, |w| (w * 1e6) as i64));
    }

    fn submit(&mut self, t: Ticket, ctx: &mut Ctx<Role>) {
        // The adaptive limit refuses as a full queue does.
        let offer = match self.adaptive && !self.limit.admit(self.station.held()) {
            true => Offer::Rejected(t),
            false => self.station.offer(t, ctx, Timer::Finish),
        };
        match offer {
            Offer::Started | Offer::Queued => self.accept(t, ctx),
            Offer::OnHold => ctx.send(t.from, Msg::Blocked(t.call)),
            // (`Blocked` is `Full::Block`'s, the caller-held kind of blocking, which we do not use.)
            Offer::Rejected(t) | Offer::Blocked(t) => {
                ctx.count("rejected", 1);
                // Retry-After: how long the queue ahead takes to drain at the present pace.
                let retry_after = self.station.expected_wait_us().clamp(100 * MICROS_PER_MS, 5 * MICROS_PER_S);
                ctx.send(t.from, Msg::Rejected(t.call, retry_after));
            }
        }
    }

    /// The server owes the job now, and holds it in memory — which is finite.
    fn accept(&mut self, t: Ticket, ctx: &mut Ctx<Role>) {
        ctx.count("accepted", 1);
        ctx.send(t.from, Msg::Accepted(t.call));
        self.admitted_under = self.capacity;
        let depth = self.station.queue_len();
        ctx.gauge("queue_depth", depth as i64);
        if depth as i64 > ctx.param("memory_limit") {
            ctx.note(format!("out of memory with {depth} jobs queued"));
            ctx.count("oom_crashes", 1);
            ctx.crash(Some(RESTART_AFTER));
        }
    }

    fn finish(&mut self, slot: Slot, ctx: &mut Ctx<Role>) {
        // A worker is free. (`None`: the job was lost in a crash, and counted then.)
        let Some(done) = self.station.done(slot, ctx, Timer::Finish) else { return };
        ctx.count("completed", 1);
        ctx.observe("wait_us", done.waited_us);
        ctx.send(done.job.from, Msg::Done(done.job.created));
        if self.adaptive {
            // AIMD on the time the job spent inside: waiting and service (see `parts::limit`).
            self.limit.on_done(done.sojourn_us(), ctx.now());
            ctx.gauge("limit", self.limit.limit() as i64);
        }
        // Room may have freed: the station lets held producers' jobs in, oldest first.
        self.station.admit_held(ctx, Timer::Finish).into_iter().for_each(|t| self.accept(t, ctx));
        ctx.gauge("queue_depth", self.station.queue_len() as i64);
    }
}

impl Source {
    /// At a (re)start and after any change: a new rate, retry count or timeout acts at once.
    fn configure(&mut self, ctx: &mut Ctx<Role>) {
        let share = ctx.param("arrival_rate") as f64 / ctx.param("producers") as f64;
        self.jobs.arrivals.set_rate_per_s(share, ctx, Timer::Arrive);
        self.jobs.retry.max_retries = ctx.param("max_retries") as u32;
        self.jobs.timeout_us = ctx.param("client_timeout_ms") as Micros * MICROS_PER_MS;
    }

    /// Sends the next try of a job (none: a held producer makes nothing).
    fn submit(&mut self, job: Option<Job>, ctx: &mut Ctx<Role>) {
        if let Some(job) = job {
            let (call, job) = self.jobs.submit(ctx, job, Timer::Timeout);
            ctx.send(SERVER, Msg::Submit(call, job.created));
        }
    }

    /// The server's answer to a try. One to a try that already timed out is counted late (and
    /// a late admission still gets its job done).
    fn answered(&mut self, call: CallId, answer: Answer, ctx: &mut Ctx<Role>) {
        self.jobs.answered(ctx, call, answer, Timer::Arrive, Timer::Retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::queueing;

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, &recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time::from_secs(secs), u64::MAX);
        run
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("backpressure", strategy, seed)
    }

    /// A headline metric over the whole run, as the player and `faultline run` show it.
    fn headline(r: &dyn Run, id: &str) -> f64 {
        let m = SPEC.metrics.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("no metric {id}"));
        m.measure.total(r.metrics(), r.now().micros())
    }

    /// When a check first failed, in seconds.
    fn failed_at(r: &dyn Run, check: &str) -> Option<f64> {
        let c = r.checks().iter().find(|c| c.id == check).unwrap();
        c.violation.as_ref().map(|v| v.at.as_secs_f64())
    }

    fn within(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    /// Jobs inside the server now (queued or in service), read from its gauges as drawn.
    fn inside(r: &dyn Run) -> i64 {
        let frame = r.frame(0);
        let gauges = &frame.nodes[SERVER as usize].view.gauges;
        gauges.iter().filter(|g| g.label == "queue" || g.label == "workers busy").map(|g| g.value).sum()
    }

    #[test]
    fn the_wait_chart_meets_erlang_c_without_the_burst() {
        // Try this, step 4. Burst factor 100%: no burst, ρ = 64 / (4 × 20) = 0.8. Poisson
        // producers behind links with independent delays still make a Poisson stream at the
        // server, and nothing is refused or retried, so the server is a textbook M/M/4 queue and
        // the "theory" line is Erlang C (Kleinrock vol. 1 §3.5). 8,000 s is 512k jobs; over eight
        // seeds the measured mean wait fell within ±3.3% of the line (standard deviation 2%:
        // waits are correlated in time), so ±8% is 4 of them — and one worker more or fewer moves
        // the line by more than 50% (or makes it unstable).
        let r = run(recipe("unbounded", 5).with_param("burst_factor", 100), 8_000);
        let (wait, theory) = (headline(r.as_ref(), "wait_mean"), headline(r.as_ref(), "wait_theory"));
        // The line is Erlang C itself, to the microsecond.
        assert!((theory - queueing::mmc_mean_wait(64.0, 20.0, 4).unwrap() * 1e6).abs() < 1.0, "{theory}");
        assert!(within(wait, theory, 0.08), "mean wait {wait:.0} µs, Erlang C says {theory:.0} µs");
        // Throughput is the arrival rate: a Poisson count's error over 512k jobs is 0.14%.
        let served = headline(r.as_ref(), "throughput");
        assert!(within(served, 64.0, 0.01), "throughput {served:.2} jobs/s");
        assert_eq!(headline(r.as_ref(), "rejected"), 0.0);
    }

    #[test]
    fn shedding_refuses_what_mmck_predicts() {
        // Without retries a refused try is gone, so arrivals stay Poisson: an M/M/4/14 loss
        // system at ρ = 76/80 (Gross & Harris §2.5), where a queue of 10 refuses 5.4% of tries
        // (p_K, as Poisson arrivals see time averages). Over eight seeds of 8,000 s (608k tries)
        // the refused share fell within ±2.2% of p_K (s.d. 1.2%) and the mean wait within
        // ±1.3% of the line (s.d. 0.5%): ±5% and ±2% are 4 of them. A queue one place longer
        // or shorter moves p_K by about 10%.
        let shed = recipe("shed", 6).with_param("burst_len", 0).with_param("max_retries", 0);
        let r = run(shed.with_param("arrival_rate", 76).with_param("queue_capacity", 10), 8_000);
        let theory = queueing::mmck(76.0, 20.0, 4, 14);
        let refused = headline(r.as_ref(), "rejected");
        assert!(
            within(refused, 100.0 * theory.block, 0.05),
            "refused {refused:.3}%, p_K = {:.3}%",
            100.0 * theory.block
        );
        let (wait, line) = (headline(r.as_ref(), "wait_mean"), headline(r.as_ref(), "wait_theory"));
        assert!((line - theory.mean_wait * 1e6).abs() < 1.0, "the line is M/M/c/K's wait: {line}");
        assert!(within(wait, line, 0.02), "mean wait {wait:.0} µs, M/M/c/K says {line:.0} µs");
    }

    #[test]
    fn the_burst_crashes_an_unbounded_buffer() {
        // Try this, step 1: 128 jobs/s for 10 s against 80 jobs/s of workers; the queue passes
        // its capacity (100), then the memory limit (400), and the crash loses what was held.
        let r = run(recipe("unbounded", 1), 30);
        let m = r.metrics();
        assert!(m.counter("oom_crashes") >= 1 && m.counter("lost") > 0);
        let capacity = failed_at(r.as_ref(), "bounded-memory").expect("the queue outgrows its capacity");
        let lost = failed_at(r.as_ref(), "no-silent-drop").expect("the crash loses accepted jobs");
        assert!(10.0 < capacity && capacity < lost && lost < 20.0, "capacity at {capacity} s, loss at {lost} s");
        assert_eq!(headline(r.as_ref(), "lost"), m.counter("lost") as f64);
    }

    #[test]
    fn bounded_strategies_lose_nothing_and_keep_the_queue_bounded() {
        for st in ["block", "shed", "adaptive"] {
            for seed in 1..=3 {
                let r = run(recipe(st, seed), 30);
                let m = r.metrics();
                assert!(r.checks().iter().all(|c| c.violation.is_none()), "{st} seed {seed}");
                assert_eq!(m.counter("lost") + m.counter("oom_crashes"), 0, "{st}");
                // Conservation: every accepted job is completed or still inside the server.
                assert_eq!(m.counter("accepted"), m.counter("completed") + inside(r.as_ref()), "{st}");
            }
        }
    }

    #[test]
    fn shedding_refuses_during_the_burst_and_the_queue_stops_at_capacity() {
        // Try this, step 2: the refused share is low before the burst and high during it.
        let r = run(recipe("shed", 2), 30);
        let s = r.sampler();
        let series = |id: &str| &s.series[SPEC.metrics.iter().position(|m| m.id == id).unwrap()];
        let mean = |id: &str, from: f64, to: f64| {
            let xs: Vec<f64> = s
                .times
                .iter()
                .zip(series(id))
                .filter(|(t, _)| (from..to).contains(&t.as_secs_f64()))
                .map(|(_, x)| *x)
                .collect();
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        let (before, during) = (mean("rejected", 2.0, 10.0), mean("rejected", 12.0, 20.0));
        assert!(before < 5.0 && during > 25.0, "refused {before:.1}% before the burst, {during:.1}% during it");
        let peak = series("queue").iter().cloned().fold(0.0, f64::max);
        assert!((90.0..=100.0).contains(&peak), "the queue peaks at {peak}, its capacity is 100");
        assert!(r.checks().iter().all(|c| c.violation.is_none()));
    }

    #[test]
    fn seven_workers_absorb_the_burst_until_it_triples() {
        // Try this, step 3: 7 workers serve 140 jobs/s, more than the burst's 128.
        for seed in 1..=5 {
            let r = run(recipe("unbounded", seed).with_param("workers", 7), 30);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let tripled = run(recipe("unbounded", seed).with_param("workers", 7).with_param("burst_factor", 300), 30);
            assert!(tripled.metrics().counter("lost") > 0, "seed {seed}: 192 jobs/s outrun 140");
        }
    }

    #[test]
    fn leaving_block_answers_every_held_producer() {
        // Mid-burst, `block` holds producers (the station keeps their tries, oldest first).
        // Switched to `shed` at 15 s, each held try is answered at once — admitted or refused
        // with a 429 — so no producer is left blocked, and nothing is lost.
        let blocked = |r: &dyn Run| {
            let frame = r.frame(0);
            let held = frame.nodes[SERVER as usize].view.badges.iter().any(|b| b.text.ends_with("producers held"));
            held || frame.nodes.iter().any(|n| n.view.badges.iter().any(|b| b.text == "blocked"))
        };
        assert!(blocked(run(recipe("block", 1), 15).as_ref()), "the burst fills the queue by 15 s");
        let shed =
            || recipe("block", 1).with_action(Time::from_secs(15), ActionKind::SetStrategy { id: "shed".into() });
        // (A second later: the answers take a link's 1–3 ms to reach the producers.)
        assert!(!blocked(run(shed(), 16).as_ref()), "every held producer was answered when block ended");
        let r = run(shed(), 30);
        assert!(r.checks().iter().all(|c| c.violation.is_none()));
        assert!(r.metrics().counter("rejected") > 0 && r.metrics().counter("lost") == 0);
    }

    #[test]
    fn queue_capacity_is_live_and_a_lower_one_evicts_no_one() {
        // Lowered to 10 at 14 s, mid-burst, with some 100 jobs queued: none is evicted or lost,
        // nothing joins until the queue is below 10, and the check (which holds each admission
        // to the capacity of its moment) keeps holding.
        for st in ["block", "shed", "adaptive"] {
            let set = ActionKind::SetParam { id: "queue_capacity".into(), value: 10 };
            let r = run(recipe(st, 1).with_action(Time::from_secs(14), set), 30);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "{st}: {:?}", r.checks());
            assert_eq!(r.metrics().counter("lost"), 0);
            assert!(r.metrics().gauge("queue_depth") <= 10, "{st}");
        }
        // Raised, the bound moves up at once: shed refuses far less during the burst.
        let raise = ActionKind::SetParam { id: "queue_capacity".into(), value: 1_000 };
        let base = run(recipe("shed", 1), 30);
        let raised = run(recipe("shed", 1).with_action(Time::from_secs(5), raise), 30);
        assert!(raised.metrics().counter("rejected") * 2 < base.metrics().counter("rejected"));
    }
}
