//! Webhook delivery: events for many customers' endpoints and notifications through providers leave one delivery
//! service. With one shared queue, slow and dead endpoints hold every connection (head-of-line blocking); per-customer
//! queues with backoff, a breaker per endpoint and a dead-letter queue replayed on recovery isolate them, and
//! notifications fail over to a second provider, each channel under its rate limit.

use crate::parts::arrivals::OpenLoop;
use crate::parts::breaker::Tuning;
use crate::parts::broker::OnFailure;
use crate::parts::bucket::TokenBucket;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::fair::Fair;
use crate::parts::judge::Judge;
use crate::parts::outbound::{Destinations, Fate, Paced, Redelivery};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::station::Service;
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "webhook-delivery",
        title: "Webhook delivery: one bad customer must not stop the others",
        category: "Messaging",
        seeds: &["S3#49", "S3#95", "S4#09", "S2#18", "S3#73", "S1#39", "S3#98"],
        summary: "400 events/s for 100 customers' endpoints and 50 notifications/s leave one delivery service with 64 \
                  connections. From 3 s a tenth of the endpoints answer after the timeout, from 8 to 20 s they are down, \
                  from 12 to 20 s the primary provider is. One shared queue stalls everyone and drops what runs out of \
                  retries; per-customer queues, backoff, breakers and a replayed DLQ isolate them; failover keeps \
                  notifications flowing.",
        note: Note {
            what_can_go_wrong: "A try to an endpoint that hangs holds a connection for the whole timeout, and so do its \
                retries: a tenth of the customers timing out at 1 s with five retries wants 240 connections of 64, so in \
                one queue every good customer's event waits behind them. A naive sender drops what runs out of retries, \
                and a try that timed out may still have reached the customer: retried under a new request id, it is a \
                duplicate the customer cannot recognise. A provider outage does the same to notifications. The model: \
                Poisson events for uniformly drawn customers (the first `bad_pct`% are degraded by the plan); endpoints \
                answer in an exponential time (mean `endpoint_ms`), slow ones later, dead ones never; providers answer \
                in 20 ms, 503 while down, 429 past their limit; links 1–3 ms; queues and the dead-letter queue are \
                durable, calls, breakers and backoff timers are not (a restart retries the backing-off jobs at once). \
                Time is scaled: 'down for hours' is 12 s, backoffs start at 200 ms rather than minutes.",
            what_you_sacrifice: "A queue and a breaker per endpoint (10K of each) and a scheduler on the hot path; a dead \
                customer's events wait in the dead-letter queue until it recovers (its latency is unbounded, on purpose); \
                at-least-once means duplicates, so every try, replay and failover carries the event's idempotency key \
                and customers must dedupe; failover needs a second provider, whose rate limit caps it.",
            at_10x: "At 10K endpoints each sees a few events a minute: a breaker needs a long window to judge it, and the \
                scheduler must stay O(1) per event (deficit round robin is). Replaying a large dead-letter queue at once \
                is a thundering herd for the customer just recovered and for the provider's limit: replays go through \
                the same queues, breakers and paces as fresh events.",
            resembles: "Stripe, GitHub and Shopify webhooks (retries for days, failing endpoints disabled, event ids for \
                dedupe), Svix and Hookdeck, EventBridge API destinations with a DLQ; notification platforms failing over \
                between Twilio, SNS or SendGrid routes.",
            try_this: &[
                "Play `shared-queue`: from 3 s the bad endpoints answer past the timeout, the one queue grows and \
                 `good-latency` fails naming a good customer; retries land under new request ids and \
                 `no-duplicate-without-key` fails; from about 10 s events out of retries are dropped: `nothing-lost`.",
                "Switch to `per-customer`: the bad endpoints' breakers open, their events back off into the dead-letter \
                 queue and are replayed when the endpoints recover at 20 s; good customers stay fast, nothing is lost. \
                 But the primary provider's outage at 12 s dead-letters notifications too: `notify-latency` fails.",
                "Switch to `failover`: while the primary's breaker is open notifications go through the second \
                 provider, paced to its rate limit, and every check holds.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("customers", "Customers", "", 1..=20_000, 100, "Customers, each with its own endpoint."),
        ParamSpec::setup("bad_pct", "Bad customers", "%", 0..=100, 10, "Share of customers whose endpoints the fault plan degrades."),
        ParamSpec::live("events_per_s", "Webhook events", "events/s", 0..=50_000, 400, "Poisson events, each for a uniformly drawn customer."),
        ParamSpec::live("notify_per_s", "Notifications", "msgs/s", 0..=10_000, 50, "Poisson notifications sent through a provider."),
        ParamSpec::live("workers", "Connections", "", 1..=4096, 100, "Deliveries in flight at once."),
        ParamSpec::live("timeout_ms", "Call timeout", "ms", 10..=60_000, 1000, "How long a try waits for an answer.").step(10),
        ParamSpec::live("endpoint_ms", "Endpoint time", "ms", 1..=10_000, 50, "A healthy endpoint's mean (exponential) answer time."),
        ParamSpec::live("max_retries", "Retries", "", 0..=20, 5, "Retries after the first try; then dead-lettered (dropped by the shared queue)."),
        ParamSpec::live("backoff_ms", "Backoff base", "ms", 1..=60_000, 200, "First retry's backoff, doubling, full jitter.").step(10),
        ParamSpec::live("backoff_cap_ms", "Backoff cap", "ms", 1..=600_000, 3200, "No backoff longer than this.").step(100),
        ParamSpec::live("window_ms", "Breaker window", "ms", 100..=600_000, 1000, "An endpoint's breaker opens when half of at least 3 calls in this window failed.").step(100),
        ParamSpec::live("open_ms", "Breaker open", "ms", 100..=600_000, 2000, "How long an endpoint's breaker stays open before a probe.").step(100),
        ParamSpec::live("provider_rps", "Provider rate limit", "msgs/s", 1..=100_000, 100, "Each provider's limit (429 past it); the channel's pace under the fixed strategies."),
        ParamSpec::live("bound_ms", "Latency bound", "ms", 10..=60_000, 500, "The p99 promised to good customers and to notifications.").step(10),
        ParamSpec::setup("slow_ms", "Bad endpoints' delay", "ms", 0..=60_000, 2000, "From 3 s until their outage bad endpoints answer this much later (0: never)."),
        ParamSpec::setup("outage_at", "Endpoints down at", "s", 0..=3600, 8, "Scheduled fault: bad endpoints stop answering."),
        ParamSpec::setup("outage_len", "Endpoint outage", "s", 0..=3600, 12, "How long (0: none)."),
        ParamSpec::setup("provider_at", "Provider down at", "s", 0..=3600, 12, "Scheduled fault: the primary provider answers 503."),
        ParamSpec::setup("provider_len", "Provider outage", "s", 0..=3600, 8, "How long (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("shared-queue", "One shared queue", "Every delivery joins one FIFO; a failed try rejoins it after a backoff under a new request id, and is dropped out of retries."),
        StrategySpec::naive("per-customer", "Per-customer queues", "A queue per customer served in turn, backoff, a breaker per endpoint, a dead-letter queue replayed on recovery, the event id as idempotency key; notifications through one provider."),
        StrategySpec::fixed("failover", "Per-customer + failover", "As per-customer, and notifications go to the second provider while the first one's breaker is open, each channel paced to its rate limit."),
    ],
    faults: &[
        FaultSpec::node("endpoints-slow", "Slow endpoints", "These endpoints answer this much later (0 ends it).").value("ms", 0..=60_000, 2000),
        FaultSpec::node("endpoints-down", "Endpoints down", "These endpoints stop answering (0 ends it).").value("on", 0..=1, 1),
        FaultSpec::node("provider-outage", "Provider outage", "The provider answers 503 (0 ends it).").value("on", 0..=1, 1),
        FaultSpec::global("replay-dlq", "Replay the DLQ", "An operator replays every dead-lettered delivery now."),
    ],
    checks: &[
        CheckSpec::new("good-latency", "Good customers' p99 within the bound", "Over the last 2 s no more than 1% of good customers' events took longer than the bound from event to delivery. Names the customer."),
        CheckSpec::new("notify-latency", "Notifications' p99 within the bound", "Over the last 2 s no more than 1% of notifications took longer than the bound to reach a provider."),
        CheckSpec::new("nothing-lost", "Nothing lost", "Every event is delivered, queued, backing off or in the dead-letter queue: none is dropped."),
        CheckSpec::new("no-duplicate-without-key", "No duplicate without the same key", "A receiver given an event twice got the same idempotency key both times, so it can tell."),
    ],
    metrics: &[
        MetricSpec::new("p99_good", "p99: good customers", "us", Measure::Quantile("good_latency_us", 0.99)),
        MetricSpec::new("p99_notify", "p99: notifications", "us", Measure::Quantile("notify_latency_us", 0.99)),
        MetricSpec::new("p99_bad", "p99: bad customers", "us", Measure::Quantile("bad_latency_us", 0.99)),
        MetricSpec::new("delivered", "Delivered", "msgs/s", Measure::Rate("delivered")),
        MetricSpec::new("lost", "Dropped (lost)", "", Measure::Count("lost")),
        MetricSpec::new("dlq", "Dead-letter queue", "", Measure::Gauge("dlq")),
        MetricSpec::new("queued", "Queued", "", Measure::Gauge("queued")),
        MetricSpec::new("busy_bad", "Connections held by bad endpoints", "", Measure::Gauge("busy_bad")),
        MetricSpec::new("dup_key", "Duplicates, same key", "", Measure::Count("dup_same_key")),
        MetricSpec::new("dup_new", "Duplicates, new key", "", Measure::Count("dup_new_key")),
        MetricSpec::new("throttled", "429s from providers", "", Measure::Count("throttled")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { SharedQueue, PerCustomer, Failover });

const DISPATCHER: NodeId = 0;
const GOOD: NodeId = 1;
const BAD: NodeId = 2;
/// The primary provider, then the second one.
const PROVIDER: [NodeId; 2] = [3, 4];
const PROVIDER_US: Micros = 20 * MICROS_PER_MS;
const SLOW_AT_MS: i64 = 3000;
const WINDOW_US: Micros = 2 * MICROS_PER_S;

/// One delivery: its event (whose id is the idempotency key), a customer's or a notification.
#[derive(Clone, Debug)]
pub struct Job {
    event: u64,
    customer: usize,
    notify: bool,
    created: Time,
    tries: u32,
    /// Replayed from the dead-letter queue: judged late when it went there.
    replayed: bool,
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Deliver { call: CallId, event: u64, key: u64, customer: usize },
    Answer { call: CallId, code: u16 },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Notify,
    Timeout(CallId),
    Retry(u64),
    HalfOpen(usize),
    Wake,
}

#[derive(Clone, Debug, Holds)]
pub enum Wd {
    Dispatcher(Dispatcher),
    Receiver(Receiver),
}

#[derive(Clone, Debug)]
pub struct Dispatcher {
    strategy: Strategy,
    customers: usize,
    bad: usize,
    arrivals: [OpenLoop; 2],
    /// A flow per customer (the shared queue puts everything in flow 0); the notification channel, paced.
    queue: Fair<Job>,
    notify: Paced<Job>,
    /// Calls in flight: the job, its destination (a customer's endpoint, or `customers + p` for provider p), a probe?
    calls: Calls<(Job, usize, bool)>,
    dests: Destinations,
    redelivery: Redelivery<Job>,
    /// The next event id and (naive) request id: those live above every event id.
    next: [u64; 2],
    /// Good customers' events and notifications judged against the bound (true time), each's latest late one.
    judges: [(Judge, String); 2],
    last_lost: Option<(Time, String)>,
}

/// Endpoints (good or bad customers') or a provider: its health and limit, the key each event came with.
#[derive(Clone, Debug)]
pub struct Receiver {
    name: &'static str,
    provider: bool,
    health: Health,
    limit: TokenBucket,
    seen: KeyTable<u64>,
    new_key_dups: u64,
    last_dup: Option<(Time, String)>,
}

fn ms(v: i64) -> Micros {
    v.max(0) as Micros * MICROS_PER_MS
}

/// A breaker per destination: opens when half of at least 3 calls in the window failed; one probe after `open_ms`.
fn tuning(window_ms: i64, open_ms: i64) -> Tuning {
    Tuning { threshold_pct: 50, window_us: ms(window_ms), min_requests: 3, open_us: ms(open_ms), probes: 1 }
}

/// The provider's limit: `rps` a second, a tenth of it at once (our pace allows a twentieth, to stay under).
fn limit(rps: i64, div: i64) -> (u64, u64) {
    (rps.max(1) as u64, (rps / div).max(2) as u64)
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Wd> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let (customers, (rate, burst)) = (setup.param("customers") as usize, limit(setup.param("provider_rps"), 20));
    let d = Dispatcher {
        strategy: Strategy::from_id(setup.strategy()),
        customers,
        bad: customers * setup.param("bad_pct") as usize / 100,
        arrivals: ["events_per_s", "notify_per_s"].map(|p| OpenLoop::poisson(setup.param(p) as f64)),
        queue: Fair::new(&vec![1; customers], 1),
        notify: Paced::new(rate, burst),
        calls: Calls::new("call_us"),
        dests: Destinations::new(customers + 2, tuning(setup.param("window_ms"), setup.param("open_ms"))),
        redelivery: Redelivery::default(),
        next: [0, 1 << 40],
        judges: [0, 1].map(|_| (Judge::new(WINDOW_US, 100, 100), String::new())),
        last_lost: None,
    };
    assert_eq!(sim.add_node(Wd::Dispatcher(d)), DISPATCHER);
    for name in ["good customers' endpoints", "bad customers' endpoints", "primary provider", "second provider"] {
        let (rate, burst) = limit(setup.param("provider_rps"), 10);
        let (limit, provider, seen) =
            (TokenBucket::new(rate, MICROS_PER_S, burst), name.ends_with("r"), KeyTable::default());
        let r = Receiver { name, provider, health: Health::Up, limit, seen, new_key_dups: 0, last_dup: None };
        sim.add_node(Wd::Receiver(r));
    }
    // The plan: bad endpoints slow from 3 s, then down; the primary provider down.
    let (outage, slow) = (setup.param("outage_at"), setup.param("slow_ms"));
    let slow_len = if slow > 0 { outage * 1000 - SLOW_AT_MS } else { 0 };
    FaultWindow::ms(SLOW_AT_MS, slow_len).custom(&mut sim, "endpoints-slow", Some(BAD), slow, 0);
    FaultWindow::secs(outage, setup.param("outage_len")).custom(&mut sim, "endpoints-down", Some(BAD), 1, 0);
    let provider = FaultWindow::secs(setup.param("provider_at"), setup.param("provider_len"));
    provider.custom(&mut sim, "provider-outage", Some(PROVIDER[0]), 1, 0);
    for (i, id) in ["good-latency", "notify-latency"].into_iter().enumerate() {
        sim.check(id, move |w| {
            let (judge, late) = &w.node::<Dispatcher>(DISPATCHER).judges[i];
            let v = judge.verdict(w.now, Time::ZERO);
            let why = || format!("{late}: {} over {} ms", v.describe(WINDOW_US), w.param("bound_ms"));
            v.fails(1).then(why).map_or(Ok(()), Err)
        });
    }
    sim.check("nothing-lost", |w| match &w.node::<Dispatcher>(DISPATCHER).last_lost {
        Some((at, why)) if *at == w.now => Err(why.clone()),
        _ => Ok(()),
    });
    sim.check("no-duplicate-without-key", |w| {
        match w.touched.and_then(|n| Holds::<Receiver>::held(&w.nodes[n as usize])?.last_dup.as_ref()) {
            Some((at, why)) if *at == w.now => Err(why.clone()),
            _ => Ok(()),
        }
    });
    Box::new(sim)
}

impl Node for Wd {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Wd::Dispatcher(d) = self {
            d.arrivals[0].start(ctx, Timer::Arrive);
            d.arrivals[1].start(ctx, Timer::Notify);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Wd::Receiver(r), Msg::Deliver { call, event, key, customer }) => {
                r.deliver(from, call, event, key, customer, ctx)
            }
            (Wd::Dispatcher(d), Msg::Answer { call, code }) => {
                if let Some(p) = d.calls.reply(call, ctx) {
                    d.ended(p, code == 200, ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let Wd::Dispatcher(d) = self else { return ctx.unhandled(&timer) };
        match timer {
            Timer::Arrive | Timer::Notify => {
                let notify = matches!(timer, Timer::Notify);
                d.arrivals[notify as usize].on_timer(ctx, timer);
                let customer = if notify { 0 } else { ctx.rng().below(d.customers as u64) as usize };
                d.next[0] += 1;
                d.enqueue(Job { event: d.next[0], customer, notify, created: ctx.now(), tries: 0, replayed: false });
            }
            Timer::Timeout(call) => {
                if let Some(p) = d.calls.timeout(call) {
                    d.ended(p, false, ctx);
                }
            }
            Timer::Retry(event) => {
                if let Some(job) = d.redelivery.due(event) {
                    d.enqueue(job);
                }
            }
            Timer::HalfOpen(i) => d.dests.half_open(i, ctx),
            Timer::Wake => d.notify.woke(),
        }
        d.pump(ctx);
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // Calls, breakers, the pace's timer and backoff timers were in memory; the queues and the DLQ are durable.
        if let Wd::Dispatcher(d) = self {
            let calls: Vec<Job> = d.calls.clear(ctx).into_iter().map(|p| p.0).collect();
            calls.into_iter().chain(d.redelivery.restart()).for_each(|j| d.enqueue(j));
            d.dests.reset(ctx);
            d.notify.woke();
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Wd::Dispatcher(d), Control::Strategy(id)) => {
                d.strategy = Strategy::from_id(id);
                let jobs: Vec<Job> = d.queue.drain().into_iter().map(|j| j.1).chain(d.notify.drain()).collect();
                jobs.into_iter().for_each(|j| d.enqueue(j));
                d.pump(ctx);
            }
            (Wd::Dispatcher(d), Control::Param { .. }) => d.configure(ctx),
            (Wd::Dispatcher(d), Control::Custom { id: "replay-dlq", .. }) => {
                d.replay(|_| true, ctx);
                d.pump(ctx);
            }
            (Wd::Receiver(r), Control::Param { id: "provider_rps", value }) => {
                let (rate, burst) = limit(value, 10);
                r.limit = TokenBucket::new(rate, MICROS_PER_S, burst);
            }
            (Wd::Receiver(r), Control::Custom { id, value }) => {
                r.health = match (id, value, r.provider) {
                    ("endpoints-slow", v, false) if v > 0 => Health::Slow { factor_pct: 100, extra_us: ms(v) },
                    ("endpoints-down", 1, false) | ("provider-outage", 1, true) => Health::Down,
                    _ => Health::Up,
                };
                ctx.note(format!("{} now {}", r.name, r.health));
            }
            // Faults the kernel applies itself need nothing more; receivers read the other parameters as they use them.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Wd::Dispatcher(d) => d.view(),
            Wd::Receiver(r) => NodeView::new([NodeKind::Client, NodeKind::Service][r.provider as usize], 1, r.name)
                .badge(r.health.to_string(), [Tone::Bad, Tone::Good][r.health.is_up() as usize])
                .badge_if(r.new_key_dups > 0, format!("{} duplicates under new keys", r.new_key_dups), Tone::Bad),
        }
    }
}

impl Dispatcher {
    fn configure(&mut self, ctx: &mut Ctx<Wd>) {
        self.arrivals[0].set_rate_per_s(ctx.param("events_per_s") as f64, ctx, Timer::Arrive);
        self.arrivals[1].set_rate_per_s(ctx.param("notify_per_s") as f64, ctx, Timer::Notify);
        self.dests.set_tuning(tuning(ctx.param("window_ms"), ctx.param("open_ms")));
        let (rate, burst) = limit(ctx.param("provider_rps"), 20);
        self.notify.set_rate(rate, burst);
        self.pump(ctx);
    }

    fn enqueue(&mut self, job: Job) {
        let flow = match (self.strategy, job.notify) {
            (Strategy::SharedQueue, _) => 0,
            (_, true) => return self.notify.push(job),
            (_, false) => job.customer,
        };
        let _ = self.queue.push(flow, job, 1); // unbounded: never refused
    }

    /// Starts tries while connections are free: a notification when its channel's pace allows, else the next
    /// customer's event in turn (or the shared queue's oldest).
    fn pump(&mut self, ctx: &mut Ctx<Wd>) {
        while self.calls.len() < ctx.param("workers") as usize {
            let Some(job) = self.notify.pop().or_else(|| self.queue.pop().map(|j| j.1)) else { break };
            self.attempt(job, ctx);
        }
        ctx.gauge("queued", (self.queue.len() + self.notify.len()) as i64);
        ctx.gauge("dlq", self.redelivery.dead() as i64);
        ctx.gauge("busy_bad", self.busy_bad() as i64);
    }

    /// One try, to the first destination of its route whose breaker lets it through (none: failed at once, no
    /// connection used): the customer's endpoint, or the primary provider then, under failover, the second.
    fn attempt(&mut self, job: Job, ctx: &mut Ctx<Wd>) {
        let (naive, c) = (self.strategy == Strategy::SharedQueue, self.customers);
        // Failover: a notification's retry tries the other provider first.
        let failover = job.notify && self.strategy == Strategy::Failover;
        let alt = failover as usize * (job.tries % 2) as usize;
        let pair = if job.notify { [c + alt, c + 1 - alt] } else { [job.customer; 2] };
        let route = &pair[..1 + failover as usize];
        let Some((d, probe)) = (if naive { Some((route[0], false)) } else { self.dests.pick(route) }) else {
            return self.failed(job, ctx);
        };
        // A notification goes out when its channel's pace allows; else it waits for the next token.
        if job.notify && !naive && !self.notify.allow(ctx.now()) {
            if probe {
                self.dests.unprobe(d);
            }
            if let Some(wait) = self.notify.hand_back(job) {
                ctx.set_timer(wait, Timer::Wake);
            }
            return;
        }
        let to = if d >= c { PROVIDER[d - c] } else { [GOOD, BAD][(d < self.bad) as usize] };
        self.next[1] += naive as u64;
        let (event, customer, key) = (job.event, job.customer, if naive { self.next[1] } else { job.event });
        let call = self.calls.start(ctx, (job, d, probe), ms(ctx.param("timeout_ms")), Timer::Timeout);
        ctx.send(to, Msg::Deliver { call, event, key, customer });
    }

    /// A try ended: its breaker hears of it (one closing replays its dead letters); the job is done or failed.
    fn ended(&mut self, (job, d, probe): (Job, usize, bool), ok: bool, ctx: &mut Ctx<Wd>) {
        if self.strategy != Strategy::SharedQueue && self.dests.record(d, ok, probe, ctx, Timer::HalfOpen(d)) {
            let notify = d >= self.customers;
            self.replay(|j| j.notify == notify && (notify || j.customer == d), ctx);
        }
        if !ok {
            return self.failed(job, ctx);
        }
        let (took, bad) = (ctx.now().since(job.created), !job.notify && job.customer < self.bad);
        ctx.count("delivered", 1);
        ctx.observe(
            ["good_latency_us", "bad_latency_us", "notify_latency_us"][bad as usize + 2 * job.notify as usize],
            took,
        );
        if !bad && !job.replayed {
            self.judge(&job, took, ctx);
        }
    }

    /// A good customer's event or a notification, delivered after `took` (`u64::MAX`: dropped), judged.
    fn judge(&mut self, job: &Job, took: Micros, ctx: &mut Ctx<Wd>) {
        let late = took > ms(ctx.param("bound_ms"));
        let (judge, why) = &mut self.judges[job.notify as usize];
        if late {
            let who = if job.notify { "a notification".into() } else { numbered("customer", job.customer as u64) };
            let took =
                if took == u64::MAX { "was given up on".into() } else { format!("took {} ms", took / MICROS_PER_MS) };
            *why = format!("{who}'s event #{} {took}", job.event);
        }
        judge.record(ctx.truth(), late, took);
    }

    /// A failed try: backed off, then dead-lettered — or, in the shared queue, dropped.
    fn failed(&mut self, mut job: Job, ctx: &mut Ctx<Wd>) {
        job.tries += 1;
        let (base_us, cap_us) = (ms(ctx.param("backoff_ms")), ms(ctx.param("backoff_cap_ms")));
        let policy =
            RetryPolicy { max_retries: ctx.param("max_retries") as u32, base_us, cap_us, jitter: Jitter::Full };
        let rule = OnFailure::Backoff { policy, dlq: self.strategy != Strategy::SharedQueue };
        let (event, tries, age, copy) = (job.event, job.tries, ctx.now().since(job.created), job.clone());
        match self.redelivery.failed(event, job, tries, rule, ctx.rng()) {
            Fate::BackOff(wait) => {
                ctx.set_timer(wait, Timer::Retry(event));
                return;
            }
            Fate::DeadLettered => {}
            Fate::Dropped(_) => {
                let why = format!("event #{event} dropped after {tries} tries");
                ctx.count("lost", 1);
                ctx.note(why.clone());
                self.last_lost = Some((ctx.truth(), why));
            }
        }
        // Given up on: it cannot arrive within the bound (a replay is not judged again).
        ctx.observe("gave_up_us", age);
        if copy.notify || copy.customer >= self.bad {
            self.judge(&copy, u64::MAX, ctx);
        }
    }

    /// Dead letters `pick` chooses go back to their queues, their retries restored.
    fn replay(&mut self, pick: impl Fn(&Job) -> bool, ctx: &mut Ctx<Wd>) {
        let back = self.redelivery.replay(pick);
        if !back.is_empty() {
            ctx.count("replayed", back.len() as i64);
            ctx.note(format!("{} dead letters replayed", back.len()));
        }
        back.into_iter().for_each(|j| self.enqueue(Job { tries: 0, replayed: true, ..j }));
    }

    fn busy_bad(&self) -> usize {
        self.calls.iter().filter(|(_, p)| !p.0.notify && p.0.customer < self.bad).count()
    }

    fn view(&self) -> NodeView {
        let (label, tone) =
            [("one shared queue", Tone::Warn), ("per-customer queues", Tone::Neutral), ("+ failover", Tone::Good)]
                [self.strategy as usize];
        let (open, [q, w, d]) = (
            self.dests.open(),
            [self.queue.len() + self.notify.len(), self.redelivery.backing_off(), self.redelivery.dead()]
                .map(|n| n as i64),
        );
        NodeView::new(NodeKind::Queue, 0, "delivery service")
            .badge(label, tone)
            .badge_if(open > 0, format!("{open} breakers open"), Tone::Warn)
            .gauge("queued", q, q.max(100))
            .gauge("connections held by bad endpoints", self.busy_bad() as i64, (self.calls.len() as i64).max(1))
            .gauge("backing off", w, w.max(100))
            .gauge("dead-letter queue", d, d.max(100))
    }
}

impl Receiver {
    /// A delivery: a provider down or over its limit says so, an endpoint down says nothing; otherwise it is
    /// received (a second copy of an event is a duplicate, harmless under the same key) and answered.
    fn deliver(&mut self, from: NodeId, call: CallId, event: u64, key: u64, customer: usize, ctx: &mut Ctx<Wd>) {
        let mean = ctx.param("endpoint_ms") as u64;
        let base = if self.provider { PROVIDER_US } else { Service::exponential_ms(mean).sample_us(ctx.rng()) };
        let (after, code) = match self.health.latency(base) {
            None if !self.provider => return,
            None => (base, 503),
            Some(_) if self.provider && !self.limit.allow(ctx.now()) => (base, 429),
            Some(after) => (after, 200),
        };
        ctx.count("throttled", (code == 429) as i64);
        match if code == 200 { self.seen.insert(event, key) } else { None } {
            Some(old) if old != key => {
                ctx.count("dup_new_key", 1);
                self.new_key_dups += 1;
                let to = if self.provider { "a user".into() } else { numbered("customer", customer as u64) };
                self.last_dup =
                    Some((ctx.truth(), format!("{to} got event #{event} again under key {key} (was {old})")));
            }
            Some(_) => ctx.count("dup_same_key", 1),
            None => {}
        }
        ctx.send_after(after, from, Msg::Answer { call, code });
    }
}
