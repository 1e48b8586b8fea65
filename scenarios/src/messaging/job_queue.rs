//! Job queue: producers → a broker with a visibility timeout → workers. Jobs fail now and
//! then, a worker crashes mid-job, a job hangs past the timeout, and one job fails every
//! time. Without retries failed jobs are lost; retrying at once keeps the poison job cycling
//! forever; backoff with a cap but no dead-letter queue drops it; backoff + DLQ keeps it.

use crate::parts::arrivals::OpenLoop;
use crate::parts::broker::{Broker, Consumers, Delivery, MsgId, OnFailure, State, Verdict};
use crate::parts::degraded::FaultWindow;
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::station::Service;
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "job-queue",
        title: "Job queue: retries, backoff and a dead-letter queue",
        category: "Messaging",
        seeds: &["S1#21", "S1#22", "S1#23", "S2#3", "S2#6", "S3#72", "S3#87", "S3#93"],
        summary: "100 jobs/s (a fifth delayed 2 s, a cron job every 5 s) for 8 workers; 5% of tries fail, a poison job \
                  (5 s) always fails, a worker crashes (10 s), a job hangs past the visibility timeout (15 s). No retry \
                  loses jobs, immediate retry cycles the poison job forever, backoff drops it, backoff + DLQ keeps it.",
        note: Note {
            what_can_go_wrong: "A failed job not retried is gone, and nobody notices until a customer asks where their \
                email went. Retried at once and forever, a job that can never succeed (a malformed payload, a deleted \
                account) keeps a worker busy in a tight loop; retried a few times then dropped, it is lost quietly. The \
                visibility timeout brings back a crashed worker's job — and a slow one's, so a job can run twice: \
                delivery is at least once. The model: Poisson producers; a durable FIFO broker (SQS-like: a receive \
                hides a job for the visibility timeout and gives a new receipt; a stale receipt cannot delete it); \
                workers pulling one job at a time (exponential work), each try failing on its own with a fixed \
                probability; links of 0.2–1 ms; delayed and cron jobs' latency counted from when they were due.",
            what_you_sacrifice: "Backoff delays a job's success (up to a 30 s cap per retry); a DLQ is a queue someone \
                must watch, replay and drain; a long visibility timeout hides a crashed worker's job that long, a short \
                one runs slow jobs twice — jobs must be idempotent, and a cron job needs its period as a dedupe key.",
            at_10x: "At 100K jobs a minute (the seed's scale) a 1% poison rate adds 1,000 jobs a minute that immediate \
                retry never lets go: 60,000 cycling after an hour, a fleet busy with work that never succeeds. \
                Failures retried without jitter come back as one wave; the DLQ needs an alert.",
            resembles: "Amazon SQS (visibility timeout, receive count, redrive policy to a DLQ, delay queues), Sidekiq \
                (25 retries, the delay growing as count⁴ + 15 s + jitter, then the Dead set; scheduled jobs), Celery \
                (acks_late, countdown/eta, beat), RabbitMQ quorum queues (delivery-limit), Kubernetes CronJobs.",
            try_this: &[
                "Play `no-retry`: within a second a job's first try fails, the worker deletes it, and `none-lost` names \
                 it; some 5% of all jobs vanish so.",
                "Switch to `immediate-retry`: nothing is lost, but the poison job sent at 5 s fails and goes straight \
                 back, fails again within a fraction of a second, and `retries-bounded` fails.",
                "Try `backoff`: transient failures are retried (the chance one job fails 6 tries in a row is 0.05⁶), but \
                 the poison job is dropped after its 6th failure and `none-lost` fails; under `backoff-dlq` it lands in \
                 the DLQ instead and both checks hold.",
                "Set the visibility timeout to 100 ms: jobs take 50 ms on average, so about one in seven outlasts it \
                 (e^−2) and is delivered again while still running: duplicates climb to 10–25% of jobs done.",
            ],
        },
    },
    params: &[
        ParamSpec::live("jobs_per_s", "Job rate", "jobs/s", 0..=5000, 100, "New jobs per second (Poisson)."),
        ParamSpec::live("delayed_pct", "Delayed jobs", "%", 0..=100, 20, "Share of jobs enqueued to run later."),
        ParamSpec::live("delay_ms", "Delay", "ms", 0..=60_000, 2000, "How much later a delayed job runs.").step(100),
        ParamSpec::setup("cron_s", "Cron period", "s", 1..=3600, 5, "The scheduler enqueues its job every this many s."),
        ParamSpec::setup("workers", "Workers", "", 1..=500, 8, "Workers, each running one job at a time."),
        ParamSpec::live("job_ms", "Work per job", "ms", 1..=10_000, 50, "Mean (exponential) time a try takes."),
        ParamSpec::live("fail_pct", "Transient failures", "%", 0..=100, 5, "Chance each try fails, on its own."),
        ParamSpec::live("visibility_ms", "Visibility timeout", "ms", 100..=600_000, 5000, "Unacked by then: redelivered.").step(100),
        ParamSpec::live("max_retries", "Retries", "", 0..=20, 5, "r: tries after the first (backoff), then drop or DLQ."),
        ParamSpec::live("backoff_ms", "First backoff", "ms", 1..=10_000, 100, "Retry n waits U(0, this × 2^(n−1)), ≤ 30 s."),
        ParamSpec::setup("poison_at", "Poison job at", "s", 0..=3600, 5, "Scheduled fault: a job that always fails (0: none)."),
        ParamSpec::setup("crash_at", "Worker crash at", "s", 0..=3600, 10, "Scheduled fault: worker 0 crashes mid-job."),
        ParamSpec::setup("crash_s", "Crash length", "s", 0..=3600, 3, "Until it restarts (0: no crash)."),
        ParamSpec::setup("hang_at", "Job hangs at", "s", 0..=3600, 15, "Scheduled fault: worker 1's next job hangs."),
        ParamSpec::setup("hang_s", "Hang length", "s", 0..=3600, 8, "How long that job takes (0: no hang)."),
    ],
    strategies: &[
        StrategySpec::naive("no-retry", "No retry", "A failed job is deleted: it is lost."),
        StrategySpec::naive("immediate-retry", "Immediate retry", "A failed job goes straight back, however often."),
        StrategySpec::naive("backoff", "Exponential backoff", "Retries wait a jittered, doubling backoff; after r, deleted."),
        StrategySpec::fixed("backoff-dlq", "Backoff + DLQ", "As backoff, but out of retries a job goes to the DLQ."),
    ],
    faults: &[
        FaultSpec::global("poison", "Poison job", "A producer enqueues this many jobs that fail on every try.")
            .value("jobs", 1..=100, 1),
        FaultSpec::node("hang", "Job hangs", "The worker's next job is stuck on a call this long before it \
            finishes (a hung connection, a huge export).").value("s", 1..=3600, 8),
    ],
    checks: &[
        CheckSpec::new("none-lost", "No job lost", "Every job ends done or in the dead-letter queue: none is \
            deleted unfinished. Names the job, its worker and its try."),
        CheckSpec::new("retries-bounded", "No job retried without bound", "No job that failed r + 1 times (r: the \
            retries parameter) is sent back: a job that can never succeed must leave the queue. Names the job."),
    ],
    metrics: &[
        MetricSpec::new("done", "Jobs done", "jobs/s", Measure::Rate("done")),
        MetricSpec::new("ready", "Queue depth (ready)", "jobs", Measure::Gauge("ready")),
        MetricSpec::new("in_flight", "In flight", "jobs", Measure::Gauge("in_flight")),
        MetricSpec::new("p99", "Job latency p99 (due → done)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("duplicates", "Duplicate runs", "jobs", Measure::Count("duplicates")),
        MetricSpec::new("dlq", "Dead-letter queue", "jobs", Measure::Gauge("dlq")),
        MetricSpec::new("retries", "Retries", "/s", Measure::Rate("retries")),
        MetricSpec::new("lost", "Jobs lost", "jobs", Measure::Count("lost")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { NoRetry, Immediate, Backoff, BackoffDlq });

const BROKER: NodeId = 0;
const FIRST_WORKER: NodeId = 3;
const BACKOFF_CAP: Micros = 30 * MICROS_PER_S;

/// An ordinary job, one that fails every try, or the cron job of a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Plain,
    Poison,
    Cron(u64),
}

/// A worker's reports name the job and the receipt it holds it by, and ask for the next job.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Enqueue(Job, Micros),
    Poll,
    Deliver(Delivery<Job>),
    Ack(MsgId, u64),
    Failed(MsgId, u64, Verdict),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Wake,
    Finish(u64),
}

#[derive(Clone, Debug, Holds)]
pub enum Jq {
    Broker(BrokerNode),
    Producer(Producer),
    Worker(Worker),
}

/// The queue (durable: kept through a crash), the workers waiting for a job, the last job
/// lost (and by which worker), and counts for the view.
#[derive(Clone, Debug)]
pub struct BrokerNode {
    q: Broker<Job>,
    consumers: Consumers,
    last_lost: Option<(MsgId, NodeId)>,
    lost: u64,
    duplicates: u64,
}

#[derive(Clone, Debug)]
pub struct Worker {
    index: u32,
    job: Option<Delivery<Job>>,
    /// How long the next job hangs (the `hang` fault), on top of its work.
    hang_us: Micros,
}

/// The producers (Poisson arrivals, merged in one node), or the scheduler (a cron job every `cron_us`).
#[derive(Clone, Debug)]
pub struct Producer {
    arrivals: OpenLoop,
    cron_us: Micros,
    runs: u64,
}

fn sim(setup: &Setup) -> Sim<Jq> {
    let mut sim: Sim<Jq> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let (q, consumers) = (Broker::new(0), Consumers::default());
    sim.add_node(Jq::Broker(BrokerNode { q, consumers, last_lost: None, lost: 0, duplicates: 0 }));
    let cron_us = setup.param("cron_s") as Micros * MICROS_PER_S;
    sim.add_node(Jq::Producer(Producer { arrivals: OpenLoop::poisson(0.0), cron_us, runs: 0 }));
    let arrivals = OpenLoop::poisson(setup.param("jobs_per_s") as f64);
    sim.add_node(Jq::Producer(Producer { arrivals, cron_us: 0, runs: 0 }));
    let workers = setup.param("workers");
    for index in 0..workers as u32 {
        sim.add_node(Jq::Worker(Worker { index, job: None, hang_us: 0 }));
    }
    let poison_at = setup.param("poison_at");
    FaultWindow::secs(poison_at, poison_at.min(1)).custom(&mut sim, "poison", None, 1, 0);
    FaultWindow::secs(setup.param("crash_at"), setup.param("crash_s")).crash(&mut sim, FIRST_WORKER);
    // The hang applies to the worker's next job, if it starts within a second (value 0 clears it).
    let (hung, hang_s) = (Some(FIRST_WORKER + 1.min(workers as NodeId - 1)), setup.param("hang_s"));
    FaultWindow::secs(setup.param("hang_at"), hang_s.min(1)).custom(&mut sim, "hang", hung, hang_s, 0);
    sim.check("none-lost", |w| {
        let (b, lost) = (w.node::<BrokerNode>(BROKER), w.tallied.iter().any(|t| t.0 == "lost"));
        let Some((id, worker)) = b.last_lost.filter(|_| lost) else { return Ok(()) };
        let m = b.q.get(id).expect("a job");
        let (job, due, tries) = (m.job, m.due.as_secs_f64(), m.receives);
        Err(format!("job #{id} ({job:?}, due at {due:.3} s) failed on worker {worker} at try {tries}: deleted, lost"))
    });
    sim.check("retries-bounded", |w| {
        let (bound, q) = (w.param("max_retries") + 1, &w.node::<BrokerNode>(BROKER).q);
        let Some(&(_, id, n)) = w.tallied.iter().find(|t| t.0 == "failures" && t.2 >= bound) else { return Ok(()) };
        let Some(m) = q.get(id).filter(|m| !matches!(m.state, State::Dead | State::Deleted)) else { return Ok(()) };
        Err(format!("job #{id} ({:?}) has failed {n} times, r + 1 = {bound}, and is sent back again", m.job))
    });
    sim
}

impl Node for Jq {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // The alarm timer, if any, was lost with a crash, and asks sent meanwhile: every worker
            // is taken to ask (a busy one leaves the job it is sent, which comes back).
            Jq::Broker(b) => {
                b.consumers.rang();
                (FIRST_WORKER..FIRST_WORKER + ctx.param("workers") as NodeId).for_each(|w| b.consumers.ask(w));
                b.configure(ctx);
            }
            Jq::Producer(p) if p.cron_us > 0 => drop(ctx.set_timer(p.cron_us, Timer::Arrive)),
            Jq::Producer(p) => p.arrivals.start(ctx, Timer::Arrive),
            Jq::Worker(_) => ctx.send(BROKER, Msg::Poll),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Jq::Broker(b), msg) => b.on_message(from, msg, ctx),
            // Sent after a broker restart to a busy worker: left to come back after its visibility timeout.
            (Jq::Worker(w), Msg::Deliver(d)) if w.job.is_some() => ctx.note(format!("busy: job #{} left", d.id)),
            (Jq::Worker(w), Msg::Deliver(d)) => w.start(d, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Jq::Producer(p), Timer::Arrive) => p.arrive(ctx),
            (Jq::Broker(b), Timer::Wake) => b.dispatch(ctx),
            (Jq::Worker(w), Timer::Finish(r)) if w.job.as_ref().is_some_and(|d| d.receipt == r) => w.finish(ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Some(d) = if let Jq::Worker(w) = self { w.job.take() } else { None } {
            ctx.note(format!("crashed mid-job #{}: it comes back when its visibility times out", d.id));
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Jq::Broker(b), Control::Strategy(_) | Control::Param { .. }) => b.configure(ctx),
            (Jq::Worker(w), Control::Custom { id: "hang", value }) => w.hang_us = value as Micros * MICROS_PER_S,
            (Jq::Producer(p), Control::Param { id: "jobs_per_s", value }) if p.cron_us == 0 => {
                p.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Jq::Producer(p), Control::Custom { id: "poison", value }) if p.cron_us == 0 && value > 0 => {
                (0..value).for_each(|_| ctx.send(BROKER, Msg::Enqueue(Job::Poison, 0)));
                ctx.note(format!("{value} poison job(s) enqueued"));
            }
            // Other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Jq::Broker(b) => b.view(),
            Jq::Producer(s) if s.cron_us > 0 => NodeView::new(NodeKind::Client, 0, "scheduler (cron)")
                .badge(format!("every {} s · run {}", s.cron_us / MICROS_PER_S, s.runs), Tone::Neutral),
            Jq::Producer(p) => NodeView::new(NodeKind::Client, 0, "producers")
                .badge(format!("{:.0} jobs/s", p.arrivals.rate_per_s()), Tone::Neutral),
            Jq::Worker(w) => w.view(),
        }
    }
}

impl Producer {
    /// A cron run (its timer set first, from the period's start: a slow enqueue never drifts
    /// the schedule), or a Poisson arrival.
    fn arrive(&mut self, ctx: &mut Ctx<Jq>) {
        if self.cron_us > 0 {
            ctx.set_timer(self.cron_us, Timer::Arrive);
            self.runs += 1;
            return ctx.send(BROKER, Msg::Enqueue(Job::Cron(self.runs), 0));
        }
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let delayed = ctx.rng().below(100) < ctx.param("delayed_pct") as u64;
        let delay = if delayed { ctx.param("delay_ms") as Micros * MICROS_PER_MS } else { 0 };
        ctx.send(BROKER, Msg::Enqueue(Job::Plain, delay));
    }
}

impl BrokerNode {
    /// The visibility timeout, and under backoff-dlq SQS's redrive policy (r + 1 receives,
    /// then the DLQ), which also catches a job whose tries crash their workers.
    fn configure(&mut self, ctx: &mut Ctx<Jq>) {
        self.q.set_visibility_us(ctx.param("visibility_ms") as Micros * MICROS_PER_MS);
        let dlq = Strategy::from_id(ctx.strategy()) == Strategy::BackoffDlq;
        self.q.set_max_receives(dlq.then(|| ctx.param("max_retries") as u32 + 1));
        self.dispatch(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Jq>) {
        let now = ctx.now();
        // Every message from a worker asks for its next job.
        if !matches!(msg, Msg::Enqueue(..)) {
            self.consumers.ask(from);
        }
        match msg {
            Msg::Enqueue(job, delay) => drop(self.q.send(job, now, delay)),
            // (The guard acknowledges the job, once.)
            Msg::Ack(id, receipt) if self.q.ack(id, receipt).duplicate => {
                self.duplicates += 1;
                ctx.count("duplicates", 1);
                ctx.note(format!("job #{id} ran twice: worker {} finished it too", from - FIRST_WORKER));
            }
            Msg::Ack(id, _) => {
                ctx.count("done", 1);
                ctx.observe("latency_us", now.since(self.q.get(id).expect("a job").due));
            }
            // A stale receipt's verdict changes nothing: a newer delivery holds the job.
            Msg::Failed(id, receipt, verdict) if self.q.failed(id, receipt, verdict, now) => {
                ctx.tally("failures", id, 1);
                match verdict {
                    Verdict::Retry(_) => ctx.count("retries", 1),
                    Verdict::DeadLetter => {}
                    Verdict::Delete => {
                        (self.last_lost, self.lost) = (Some((id, from - FIRST_WORKER)), self.lost + 1);
                        ctx.count("lost", 1);
                        ctx.tally("lost", id, 1);
                    }
                }
            }
            Msg::Failed(..) | Msg::Poll => {}
            Msg::Deliver(_) => return ctx.unhandled(&msg),
        }
        self.dispatch(ctx);
    }

    fn dispatch(&mut self, ctx: &mut Ctx<Jq>) {
        let redelivered = self.q.redelivered();
        let q = &mut self.q;
        self.consumers.dispatch(q, ctx, Timer::Wake, |ctx, worker, d| ctx.send(worker, Msg::Deliver(d)));
        ctx.count("redelivered", (q.redelivered() - redelivered) as i64);
        let gauges = [("ready", q.ready()), ("in_flight", q.in_flight()), ("delayed", q.delayed()), ("dlq", q.dead())];
        gauges.into_iter().for_each(|(name, v)| ctx.gauge(name, v as i64));
    }

    fn view(&self) -> NodeView {
        let (q, dlq) = (&self.q, self.q.max_receives().is_some());
        let mut v = NodeView::new(NodeKind::Queue, 1, "broker");
        for (label, n) in [("ready", q.ready()), ("in flight", q.in_flight()), ("delayed", q.delayed())] {
            v = v.gauge(label, n as i64, (n as i64).max(100));
        }
        v.gauge("dead letters", q.dead() as i64, (q.dead() as i64).max(100))
            .badge(format!("visibility {} ms", q.visibility_us() / MICROS_PER_MS), Tone::Neutral)
            .badge(if dlq { "DLQ on" } else { "no DLQ" }, if dlq { Tone::Good } else { Tone::Neutral })
            .badge_if(self.lost > 0, format!("{} lost", self.lost), Tone::Bad)
            .badge_if(self.duplicates > 0, format!("{} ran twice", self.duplicates), Tone::Warn)
    }
}

impl Worker {
    fn start(&mut self, d: Delivery<Job>, ctx: &mut Ctx<Jq>) {
        let work = Service::exponential_ms(ctx.param("job_ms") as u64).sample_us(ctx.rng());
        ctx.set_timer(work + std::mem::take(&mut self.hang_us), Timer::Finish(d.receipt));
        self.job = Some(d);
    }

    /// The try is over: it succeeded, or the strategy's rule says what becomes of the job.
    fn finish(&mut self, ctx: &mut Ctx<Jq>) {
        let d = self.job.take().expect("a job");
        if d.job != Job::Poison && ctx.rng().below(100) >= ctx.param("fail_pct") as u64 {
            return ctx.send(BROKER, Msg::Ack(d.id, d.receipt));
        }
        let base = ctx.param("backoff_ms") as Micros * MICROS_PER_MS;
        let policy = RetryPolicy::new(ctx.param("max_retries") as u32, base, BACKOFF_CAP, Jitter::Full);
        let rule = match Strategy::from_id(ctx.strategy()) {
            Strategy::NoRetry => OnFailure::Drop,
            Strategy::Immediate => OnFailure::RetryNow,
            st => OnFailure::Backoff { policy, dlq: st == Strategy::BackoffDlq },
        };
        let verdict = rule.verdict(d.receives, ctx.rng());
        ctx.send(BROKER, Msg::Failed(d.id, d.receipt, verdict));
    }

    fn view(&self) -> NodeView {
        let v = NodeView::new(NodeKind::Worker, 2, numbered("worker", self.index as u64));
        let Some(d) = &self.job else { return v.badge("idle", Tone::Neutral) };
        let tone = if d.job == Job::Poison { Tone::Bad } else { [Tone::Good, Tone::Warn][(d.receives > 1) as usize] };
        v.badge(format!("job #{}", d.id), tone).badge(numbered("try", d.receives as u64), tone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::queueing;
    use crate::parts::testing::failed_at;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("job-queue", strategy, seed)
    }

    /// No scheduled faults: no poison job, crash or hang.
    fn calm(strategy: &str, seed: u64) -> Recipe {
        recipe(strategy, seed).with_param("poison_at", 0).with_param("crash_s", 0).with_param("hang_s", 0)
    }

    /// The run as its own type, to read the broker's every job.
    fn sim_run(recipe: Recipe, secs: u64) -> Sim<Jq> {
        crate::parts::testing::run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    /// How many of the broker's jobs are in each final state: (done, dead, deleted).
    fn ends(sim: &Sim<Jq>) -> (usize, usize, usize) {
        let q = &sim.node::<BrokerNode>(BROKER).q;
        let count = |s: State| q.messages().filter(|(_, m)| m.state == s).count();
        (count(State::Done), count(State::Dead), count(State::Deleted))
    }

    #[test]
    fn try_no_retry_loses_failed_jobs_at_once() {
        // Step 1: 5% of first tries fail and are deleted, so the lost share is p = 5% (±1.5
        // points: some 3,000 jobs, s.d. 0.4 points), and the first loss comes within a second.
        for seed in 1..=5 {
            let sim = sim_run(recipe("no-retry", seed), 30);
            let (at, why) = failed_at(&sim, "none-lost").expect("a job lost");
            assert!(at < 1.0 && why.contains("try 1") && why.ends_with("deleted, lost"), "seed {seed}: {at} s: {why}");
            let (done, _, deleted) = ends(&sim);
            let share = deleted as f64 / (done + deleted) as f64;
            assert!((0.035..0.065).contains(&share), "seed {seed}: lost {share:.3}");
        }
    }

    #[test]
    fn try_immediate_retry_keeps_the_poison_job_cycling() {
        // Step 2: nothing is deleted, but the poison job (5 s) is back within a job's time
        // (50 ms, plus its wait) after each failure: past 6 failures within a second or so.
        for seed in 1..=5 {
            let sim = sim_run(recipe("immediate-retry", seed), 30);
            let (at, why) = failed_at(&sim, "retries-bounded").expect("the poison job cycles");
            assert!((5.0..7.0).contains(&at) && why.contains("Poison"), "seed {seed}: {at} s: {why}");
            assert!(failed_at(&sim, "none-lost").is_none(), "seed {seed}");
            let poison = sim.node::<BrokerNode>(BROKER).q.messages().find(|(_, m)| m.job == Job::Poison);
            let (_, m) = poison.expect("sent");
            assert!(m.receives > 100 && m.state != State::Dead, "seed {seed}: {} receives", m.receives);
        }
    }

    #[test]
    fn try_backoff_drops_the_poison_job_and_the_dlq_keeps_it() {
        // Step 3: under backoff the poison job is deleted at its 6th try (r = 5); under
        // backoff-dlq it is dead-lettered then, and every other job is done.
        for seed in 1..=5 {
            let sim = sim_run(recipe("backoff", seed), 30);
            let (at, why) = failed_at(&sim, "none-lost").expect("the poison job is dropped");
            assert!(at > 5.0 && why.contains("Poison") && why.contains("try 6"), "seed {seed}: {why}");
            let fixed = sim_run(recipe("backoff-dlq", seed), 30);
            assert!(fixed.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let q = &fixed.node::<BrokerNode>(BROKER).q;
            let dead: Vec<Job> = q.dead_letters().map(|id| q.get(id).expect("a job").job).collect();
            assert_eq!(dead, [Job::Poison], "seed {seed}");
            assert_eq!(ends(&fixed).2, 0, "seed {seed}");
        }
    }

    #[test]
    fn try_a_visibility_timeout_shorter_than_the_work_runs_jobs_twice() {
        // Step 4: a try outlasts 100 ms with probability e^(−100/50) = 13.5%, and each time
        // the job is delivered again while it still runs; the later finisher is a duplicate.
        // Redeliveries nest (the second try may outlast it too) and wait in the queue, so the
        // duplicates per job done come out a little above e^−2/(1 − e^−2) = 15.7%: 10–25%.
        for seed in 1..=3 {
            let sim = sim_run(calm("backoff-dlq", seed).with_param("visibility_ms", 100), 30);
            let share = counter(&sim, "duplicates") as f64 / counter(&sim, "done") as f64;
            assert!((0.10..0.25).contains(&share), "seed {seed}: {share:.3}");
            let base = sim_run(calm("backoff-dlq", seed), 30);
            assert_eq!(counter(&base, "duplicates"), 0, "seed {seed}");
        }
    }

    #[test]
    fn the_lost_share_with_r_retries_is_p_to_the_r_plus_one() {
        // Each try fails with probability p on its own, so a job is lost when all r + 1 tries
        // fail: p^(r+1). p = 30%, r = 2: 2.7%, and p itself with no retry. 200 jobs/s for
        // 100 s (20,000 jobs): the standard error of 2.7% is 0.11 points (4%), so ±15% is
        // 3.7 of them, while p^r or p^(r+2) would be 233% or 30% of it. 32 workers carry the
        // 1.39 tries per job (13.9 erlangs) with room.
        let (p, r) = (0.30, 2);
        for (st, want) in [("backoff", libm::pow(p, r as f64 + 1.0)), ("no-retry", p)] {
            let recipe = calm(st, 4)
                .with_param("fail_pct", 30)
                .with_param("max_retries", r)
                .with_param("jobs_per_s", 200)
                .with_param("workers", 32);
            let sim = sim_run(recipe, 100);
            let (done, _, deleted) = ends(&sim);
            let share = deleted as f64 / (done + deleted) as f64;
            assert!((share - want).abs() <= 0.15 * want, "{st}: lost {share:.4}, p^(r+1) = {want:.4}");
        }
    }

    #[test]
    fn the_wait_for_a_worker_is_what_erlang_c_predicts() {
        // With nothing failing or delayed, jobs arrive as a Poisson stream (two producers
        // merged) and each takes a worker for its exponential work plus the ack's and the next
        // delivery's links (uniform 0.2–1 ms each, 1.2 ms together): an M/M/c queue with
        // 1/μ = 51.2 ms (the links make service not quite exponential: a little less wait).
        // λ = 120/s on 8 workers is ρ = 0.77: Erlang C waits W_q = 10.8 ms on average; a job's
        // latency is W_q, a link each way and its work (W_q + 1/μ = 62.0 ms), so the wait is
        // read as the mean latency less 1/μ. Measured over seeds 1–8 (600 s, 72,000 jobs each),
        // that wait was 10.49 ms with a run-to-run s.d. of 0.61 ms (6%; at ρ = 0.9 the latency
        // itself spreads 3% a run, its wait 7%: too noisy for one run). The mean of seeds 1–4 has
        // a standard error near 0.30 ms (2.8%): ±12% is about 4 of them, with room for the
        // links' small bias (−3% over the 8 seeds), while 7 or 9 workers wait 39.7 or 3.9 ms.
        let mu = 1.0 / 0.0512;
        let want = queueing::mmc_mean_wait(120.0, mu, 8).expect("stable");
        let wait = |seed| {
            let recipe = calm("backoff-dlq", seed)
                .with_param("fail_pct", 0)
                .with_param("delayed_pct", 0)
                .with_param("cron_s", 3600)
                .with_param("jobs_per_s", 120);
            sim_run(recipe, 600).metrics().histogram("latency_us").expect("jobs done").mean() / 1e6 - 1.0 / mu
        };
        let mean = (1..=4).map(wait).sum::<f64>() / 4.0;
        assert!((mean - want).abs() <= 0.12 * want, "mean wait {mean:.5} s, Erlang C {want:.5} s");
    }

    #[test]
    fn lowering_the_retries_live_never_fails_the_bound_under_backoff_dlq() {
        // Lowered from 5 to 1 while the poison job (5 s) is between tries with 2 or more failures
        // behind it: its next failure dead-letters it with more failures than the new r + 1 = 2. It
        // has left the queue, so the promise holds; only a retry past the bound breaks it.
        let lower = ActionKind::SetParam { id: "max_retries".into(), value: 1 };
        for seed in 1..=5 {
            let sim = sim_run(recipe("backoff-dlq", seed).with_action(Time::from_ms(5_400), lower.clone()), 12);
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let q = &sim.node::<BrokerNode>(BROKER).q;
            let (_, poison) = q.messages().find(|(_, m)| m.job == Job::Poison).expect("sent");
            assert!(poison.state == State::Dead && poison.receives > 2, "seed {seed}: {poison:?}");
        }
    }

    #[test]
    fn the_job_a_crashed_worker_held_is_delivered_again_and_done() {
        // Worker 0 crashes at 10 s. The job it held stays in flight, hidden, until its visibility
        // timeout (5 s after it was received) and is then received again and done, once. Worker 0 is
        // idle about a third of the time, so the seeds where it held a job at the crash are checked.
        let mut busy = 0;
        for seed in 1..=8 {
            let mut sim = sim(&Setup { spec: &SPEC, recipe: recipe("backoff-dlq", seed) });
            sim.keep_trace(false);
            sim.run_until(Time(10 * MICROS_PER_S - 1), u64::MAX);
            let Some(held) = sim.node::<Worker>(FIRST_WORKER).job.clone() else { continue };
            sim.run_until(Time::from_secs(30), u64::MAX);
            let m = sim.node::<BrokerNode>(BROKER).q.get(held.id).expect("a job");
            let again = m.receives == held.receives + 1 && m.completions == 1;
            assert!(again && m.state == State::Done, "seed {seed}: held {held:?}, then {m:?}");
            busy += 1;
        }
        assert!(busy >= 3, "worker 0 held a job at the crash in {busy} of 8 seeds");
    }

    #[test]
    fn the_cron_job_fires_on_time_once_a_period() {
        // Calm: the scheduler's timer fires every 5 s from the period's start (no drift), the
        // run reaches the broker a link later, and each is done exactly once: 12 runs in 61 s,
        // the one of 60 s done by 61 s.
        // (A duplicate needs a run to outlast the visibility timeout: see the hang test.)
        let sim = sim_run(calm("backoff-dlq", 6), 61);
        let q = &sim.node::<BrokerNode>(BROKER).q;
        let runs: Vec<_> =
            q.messages().filter_map(|(_, m)| if let Job::Cron(k) = m.job { Some((k, m)) } else { None }).collect();
        assert_eq!(runs.len(), 12);
        for (k, m) in runs {
            let fired = Time::from_secs(5 * k);
            assert!(m.due.since(fired) < 2_000 && m.state == State::Done && m.completions == 1, "run {k}: {m:?}");
        }
    }

    #[test]
    fn a_job_hung_past_the_visibility_timeout_runs_twice() {
        // The default plan: worker 1's next job after 15 s hangs 8 s: at 5 s it goes to another
        // worker (a redelivery), which finishes it; at 8 s the hung worker finishes it too — a
        // duplicate, counted, that no strategy prevents. (The crash: the test below.)
        for seed in 1..=5 {
            let sim = sim_run(recipe("backoff-dlq", seed), 30);
            assert!(counter(&sim, "duplicates") >= 1, "seed {seed}");
            assert!(counter(&sim, "redelivered") >= 1, "seed {seed}");
            let q = &sim.node::<BrokerNode>(BROKER).q;
            let twice = q.messages().find(|(_, m)| m.completions == 2).map(|(_, m)| m.due.as_secs_f64());
            assert!(twice.is_some_and(|t| (14.0..16.0).contains(&t)), "seed {seed}: {twice:?}");
        }
    }

    #[test]
    fn switching_to_backoff_dlq_mid_run_ends_the_poison_loop() {
        // Under immediate retry from 0 to 8 s the poison job has failed dozens of times; at the
        // switch the broker's redrive limit (r + 1 receives) applies, so its next receive
        // dead-letters it at once.
        let switch = ActionKind::SetStrategy { id: "backoff-dlq".into() };
        let sim = sim_run(recipe("immediate-retry", 2).with_action(Time::from_secs(8), switch), 12);
        let q = &sim.node::<BrokerNode>(BROKER).q;
        let (_, poison) = q.messages().find(|(_, m)| m.job == Job::Poison).expect("sent");
        assert_eq!(poison.state, State::Dead);
        assert_eq!(ends(&sim).2, 0);
    }

    #[test]
    fn the_view_shows_the_queue_gauges_and_each_workers_job() {
        let sim = sim_run(recipe("backoff-dlq", 1), 16);
        let frame = sim.frame(0);
        let broker = &frame.nodes[BROKER as usize].view;
        let labels: Vec<_> = broker.gauges.iter().map(|g| g.label).collect();
        assert_eq!(labels, ["ready", "in flight", "delayed", "dead letters"]);
        assert_eq!(broker.gauges[3].value, 1, "the poison job");
        assert!(broker.badges.iter().any(|b| b.text == "DLQ on"));
        let workers = &frame.nodes[FIRST_WORKER as usize..FIRST_WORKER as usize + 8];
        assert!(workers.iter().all(|n| n.view.kind == NodeKind::Worker && !n.view.badges.is_empty()));
        assert!(workers.iter().any(|n| n.view.badges[0].text.starts_with("job #")));
    }
}
