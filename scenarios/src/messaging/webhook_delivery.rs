//! Webhook delivery: one shared queue lets slow and dead endpoints block every customer; per-customer queues, backoff,
//! breakers and a replayed dead-letter queue isolate them, and notifications fail over between rate-limited providers.

use crate::parts::arrivals::OpenLoop;
use crate::parts::breaker::Tuning;
use crate::parts::broker::OnFailure;
use crate::parts::bucket::TokenBucket;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::outbound::{self, Outbox, Receiver, Route};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::station::Service;
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "webhook-delivery",
        title: "Webhook delivery: one bad customer must not stop the others",
        category: "Messaging",
        seeds: &["S3#49", "S3#95", "S4#09", "S2#18", "S3#73", "S1#39", "S3#98"],
        summary: "400 events/s for 100 customers' endpoints and 50 notifications/s leave one service with 100 connections. \
                  A tenth of the endpoints turn slow at 3 s and die from 8 to 20 s, the primary provider from 12 to 20 s. \
                  One shared queue stalls everyone and drops; per-customer queues, backoff, breakers and a replayed DLQ \
                  isolate them; failover keeps notifications flowing.",
        note: Note {
            what_can_go_wrong: "A try to a hanging endpoint holds a connection for the whole timeout, and so do its \
                retries: a tenth of the customers timing out at 1 s with five retries want 240 connections of 100, so in \
                one queue every good customer waits behind them. A naive sender drops what runs out of retries, and a \
                timed-out try may have arrived: retried under a new request id, it is a duplicate the customer cannot \
                recognise. A provider outage does the same to notifications. Model: Poisson events for uniform customers \
                (the first `bad_pct`% degraded by the plan); endpoints answer in exponential time (mean `endpoint_ms`), \
                slow ones later, dead ones never; providers in 20 ms, 503 down, 429 past their limit; links 1–3 ms; \
                queues and DLQ durable, calls, breakers and backoff timers not (a restart retries at once). Time is \
                scaled: hours are 12 s, minutes of backoff 200 ms.",
            what_you_sacrifice: "A queue and a breaker per endpoint and a scheduler on the hot path; a dead customer's \
                events wait in the DLQ until it recovers (unbounded latency, on purpose); at-least-once means duplicates, \
                so every try, replay and failover carries the event's idempotency key and customers must dedupe; \
                failover needs a second provider, whose rate limit caps it.",
            at_10x: "At 10K endpoints each sees a few events a minute: a breaker needs a long window to judge it, and the \
                scheduler must stay O(1) per event (deficit round robin is). Replaying a large DLQ at once is a thundering \
                herd for the customer just recovered and the provider's limit: replays go through the same queues, \
                breakers and paces as fresh events.",
            resembles: "Stripe, GitHub and Shopify webhooks (retries for days, failing endpoints disabled, event ids for \
                dedupe), Svix, Hookdeck, EventBridge API destinations with a DLQ; Twilio/SNS/SendGrid route failover.",
            try_this: &[
                "Play `shared-queue`: from 3 s the bad endpoints answer past the timeout, the one queue grows and \
                 `good-latency` fails naming a good customer; retries land under new request ids and \
                 `no-duplicate-without-key` fails; from about 13 s events out of retries are dropped: `nothing-lost`.",
                "Switch to `per-customer`: the bad endpoints' breakers open, their events back off into the DLQ and are \
                 replayed when the endpoints recover at 20 s; good customers stay fast, nothing is lost. But the primary \
                 provider's outage at 12 s dead-letters notifications too: `notify-latency` fails within seconds.",
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
        ParamSpec::live("backoff_ms", "Backoff base", "ms", 10..=60_000, 200, "First retry's backoff, doubling, full jitter.").step(10),
        ParamSpec::live("backoff_cap_ms", "Backoff cap", "ms", 100..=600_000, 3200, "No backoff longer than this.").step(100),
        ParamSpec::live("window_ms", "Breaker window", "ms", 100..=600_000, 1000, "An endpoint's breaker opens when half of at least 3 calls in this window failed.").step(100),
        ParamSpec::live("open_ms", "Breaker open", "ms", 100..=600_000, 2000, "How long an endpoint's breaker stays open before a probe.").step(100),
        ParamSpec::live("provider_rps", "Provider rate limit", "msgs/s", 1..=100_000, 100, "Each provider's limit (429 past it); the channel's pace under the fixed strategies."),
        ParamSpec::live("bound_ms", "Latency bound", "ms", 10..=60_000, 500, "The p99 promised to good customers and to notifications.").step(10),
        ParamSpec::setup("slow_ms", "Bad endpoints' delay", "ms", 0..=60_000, 2000, "From 3 s until their outage bad endpoints answer this much later (0: never).").step(100),
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
        MetricSpec::new("dup_new", "Duplicates, new key", "", Measure::Count("dup_new_key")),
        MetricSpec::new("throttled", "429s from providers", "", Measure::Count("throttled")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { SharedQueue, PerCustomer, Failover });

/// The delivery service, then the receivers: good customers' endpoints, bad ones', the two providers.
const DISPATCHER: NodeId = 0;
const RECEIVERS: [&str; 4] =
    ["good customers' endpoints", "bad customers' endpoints", "primary provider", "second provider"];
const GOOD: NodeId = 1;
const BAD: NodeId = 2;
const PROVIDER: NodeId = 3;
const WINDOW_US: Micros = 2 * MICROS_PER_S;

/// Whom an event is for: a customer (a bad one, whose endpoint the plan degrades, or not), or a user (a notification).
#[derive(Clone, Copy, Debug)]
pub struct To {
    customer: usize,
    notify: bool,
    bad: bool,
}

/// One delivery, keyed by its event's id (the idempotency key).
type Job = outbound::Job<To>;

fn story(job: &Job) -> String {
    let who = if job.what.notify { "a notification".into() } else { numbered("customer", job.what.customer as u64) };
    format!("{who}'s event #{}", job.key)
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Deliver { call: CallId, event: u64, key: u64, customer: usize },
    Answer { call: CallId, code: u16 },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    /// An event (0) or a notification (1).
    Arrive(usize),
    Timeout(CallId),
    Retry(u64),
    HalfOpen(usize),
    Wake,
}

#[derive(Clone, Debug, Holds)]
pub enum Wd {
    Dispatcher(Box<Dispatcher>),
    Receiver(Receiver),
}

/// The outbox: a flow per customer (shared queue: all in flow 0), notifications paced, a breaker per destination (a
/// customer, or `customers + p` for provider p), promises to good customers (0) and to notifications (1); calls in
/// flight (the job, its destination, whether a probe); the next event id and naive request id (above every event id).
#[derive(Clone, Debug)]
pub struct Dispatcher {
    strategy: Strategy,
    customers: usize,
    bad: usize,
    arrivals: [OpenLoop; 2],
    out: Outbox<Job>,
    calls: Calls<(Job, usize, bool)>,
    next: [u64; 2],
}

/// A breaker per destination: opens when half of at least 3 calls in the window failed; one probe after `open_ms`.
fn tuning(p: impl Fn(&str) -> i64) -> Tuning {
    Tuning { threshold_pct: 50, window_us: ms(p("window_ms")), min_requests: 3, open_us: ms(p("open_ms")), probes: 1 }
}

/// A provider's limit, a tenth of a second's worth at once (our pace allows a twentieth, to stay under it).
fn limit(rps: i64) -> Option<TokenBucket> {
    Some(TokenBucket::new(rps.max(1) as u64, MICROS_PER_S, (rps / 10).max(2) as u64))
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Wd> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let p = |id: &str| setup.param(id);
    let (customers, rps) = (p("customers") as usize, p("provider_rps"));
    let d =
        Dispatcher {
            strategy: Strategy::from_id(setup.strategy()),
            customers,
            bad: customers * p("bad_pct") as usize / 100,
            arrivals: ["events_per_s", "notify_per_s"].map(|id| OpenLoop::poisson(p(id) as f64)),
            out: Outbox::new(customers, customers + 2, tuning(p), rps.max(1) as u64, (rps / 20).max(2) as u64)
                .promises(2, WINDOW_US, |j| (!j.what.bad).then_some(j.what.notify as usize), story),
            calls: Calls::new("call_us"),
            next: [0, 1 << 40],
        };
    assert_eq!(sim.add_node(Wd::Dispatcher(Box::new(d))), DISPATCHER);
    for (i, name) in RECEIVERS.into_iter().enumerate() {
        sim.add_node(Wd::Receiver(Receiver::new(name, if i >= 2 { limit(rps) } else { None })));
    }
    // The plan: bad endpoints slow from 3 s, then down; the primary provider down.
    let (outage, slow) = (p("outage_at"), p("slow_ms"));
    let slow_window = FaultWindow::ms(3000, (outage * 1000 - 3000) * (slow > 0) as i64);
    slow_window.custom(&mut sim, "endpoints-slow", Some(BAD), slow, 0);
    FaultWindow::secs(outage, p("outage_len")).custom(&mut sim, "endpoints-down", Some(BAD), 1, 0);
    FaultWindow::secs(p("provider_at"), p("provider_len")).custom(&mut sim, "provider-outage", Some(PROVIDER), 1, 0);
    for (i, id) in ["good-latency", "notify-latency"].into_iter().enumerate() {
        sim.check(id, move |w| w.node::<Box<Dispatcher>>(DISPATCHER).out.promises[i].check(w.now, w.param("bound_ms")));
    }
    // Both promises are broken by an event, judged as it happens.
    sim.check("nothing-lost", move |w| w.node::<Box<Dispatcher>>(DISPATCHER).out.lost(w.now));
    sim.check("no-duplicate-without-key", move |w| {
        w.touched.and_then(|n| Holds::<Receiver>::held(&w.nodes[n as usize])).map_or(Ok(()), |r| r.duplicate(w.now))
    });
    Box::new(sim)
}

impl Node for Wd {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Wd::Dispatcher(d) = self {
            (0..2).for_each(|i| d.arrivals[i].start(ctx, Timer::Arrive(i)));
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            // Endpoints answer in exponential time, providers in 20 ms.
            (Wd::Receiver(r), Msg::Deliver { call, event, key, customer }) => {
                let (provider, mean) = (r.limit.is_some(), ctx.param("endpoint_ms") as u64);
                let base =
                    if provider { 20 * MICROS_PER_MS } else { Service::exponential_ms(mean).sample_us(ctx.rng()) };
                let to = || if provider { "a user".into() } else { numbered("customer", customer as u64) };
                if let Some((after, code)) = r.receive(ctx, base, event, key, to) {
                    ctx.send_after(after, from, Msg::Answer { call, code });
                }
            }
            (Wd::Dispatcher(d), Msg::Answer { call, code }) => {
                if let Some(p) = d.calls.reply(call, ctx) {
                    d.ended(p, code == 200, ctx)
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let Wd::Dispatcher(d) = self else { return ctx.unhandled(&timer) };
        match timer {
            Timer::Arrive(i) => {
                let notify = i == 1;
                d.arrivals[i].on_timer(ctx, timer);
                let customer = if notify { 0 } else { ctx.rng().below(d.customers as u64) as usize };
                d.next[0] += 1;
                d.enqueue(Job::new(d.next[0], ctx.now(), To { customer, notify, bad: !notify && customer < d.bad }));
            }
            Timer::Timeout(call) => d.calls.timeout(call).into_iter().for_each(|p| d.ended(p, false, ctx)),
            Timer::Retry(event) => d.out.redelivery.due(event).into_iter().for_each(|j| d.enqueue(j)),
            Timer::HalfOpen(i) => d.out.dests.half_open(i, ctx),
            Timer::Wake => d.out.paced.woke(),
        }
        d.pump(ctx);
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // Calls, breakers, the pace's timer and backoff timers were in memory; the queues and the DLQ are durable.
        if let Wd::Dispatcher(d) = self {
            let calls: Vec<Job> = d.calls.clear(ctx).into_iter().map(|p| p.0).collect();
            calls.into_iter().chain(d.out.restart(ctx)).for_each(|j| d.enqueue(j));
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Wd::Dispatcher(d), Control::Strategy(id)) => {
                d.strategy = Strategy::from_id(id);
                d.out.drain().into_iter().for_each(|j| d.enqueue(j));
                d.pump(ctx);
            }
            (Wd::Dispatcher(d), Control::Param { .. }) => {
                for (i, id) in ["events_per_s", "notify_per_s"].into_iter().enumerate() {
                    d.arrivals[i].set_rate_per_s(ctx.param(id) as f64, ctx, Timer::Arrive(i));
                }
                let rps = ctx.param("provider_rps");
                d.out.retune(tuning(|id| ctx.param(id)), rps.max(1) as u64, (rps / 20).max(2) as u64);
                d.pump(ctx);
            }
            (Wd::Receiver(r), Control::Param { id: "provider_rps", value }) if r.limit.is_some() => {
                r.limit = limit(value)
            }
            (Wd::Receiver(r), Control::Custom { id, value }) => {
                let health = match (id, value, r.limit.is_some()) {
                    ("endpoints-slow", v, false) if v > 0 => Health::plus_us(ms(v)),
                    ("endpoints-down", 1, false) | ("provider-outage", 1, true) => Health::Down,
                    _ => Health::Up,
                };
                r.set_health(health, ctx);
            }
            // Faults the kernel applies itself need nothing more; receivers read the other parameters as they use them.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Wd::Dispatcher(d) => d.view(),
            Wd::Receiver(r) => r.view(1),
        }
    }
}

impl Dispatcher {
    fn enqueue(&mut self, job: Job) {
        let to = job.what;
        let flow = if self.strategy == Strategy::SharedQueue { Some(0) } else { (!to.notify).then_some(to.customer) };
        self.out.push(flow, job);
    }

    /// Starts tries while connections are free: a notification unless its channel waits for a token, else the next
    /// customer's event in turn (or the shared queue's oldest).
    fn pump(&mut self, ctx: &mut Ctx<Wd>) {
        while self.calls.len() < ctx.param("workers") as usize {
            let Some(job) = self.out.pop() else { break };
            self.attempt(job, ctx);
        }
        self.out.gauges(ctx);
        ctx.gauge("busy_bad", self.busy_bad() as i64);
    }

    /// One try, to the first destination of its route whose breaker lets it through (none: failed at once, no
    /// connection used): the customer's endpoint, or the primary provider — under failover, then the second one, and
    /// a retry the other way round. A notification also needs its channel's token (none: it waits for the next).
    fn attempt(&mut self, job: Job, ctx: &mut Ctx<Wd>) {
        let (naive, c, to) = (self.strategy == Strategy::SharedQueue, self.customers, job.what);
        let failover = to.notify && self.strategy == Strategy::Failover;
        let alt = failover as usize * (job.tries % 2) as usize;
        let pair = if to.notify { [c + alt, c + 1 - alt] } else { [to.customer; 2] };
        let route = &pair[..1 + failover as usize];
        let (d, probe, job) = match self.out.route(job, route, !naive, !naive && to.notify, ctx, Timer::Wake) {
            Route::Go { d, probe, job } => (d, probe, job),
            Route::Refused(job) => return self.failed(job, ctx),
            Route::Paced => return,
        };
        let node = if d >= c { PROVIDER + (d - c) as NodeId } else { [GOOD, BAD][to.bad as usize] };
        ctx.count("bad_tries", (node == BAD) as i64);
        self.next[1] += naive as u64;
        let (event, customer, key) = (job.key, to.customer, if naive { self.next[1] } else { job.key });
        let call = self.calls.start(ctx, (job, d, probe), ms(ctx.param("timeout_ms")), Timer::Timeout);
        ctx.send(node, Msg::Deliver { call, event, key, customer });
    }

    /// A try ended: its breaker hears of it (one closing replays its dead letters, their retries restored); the job
    /// is delivered or failed.
    fn ended(&mut self, (job, d, probe): (Job, usize, bool), ok: bool, ctx: &mut Ctx<Wd>) {
        if self.strategy != Strategy::SharedQueue {
            let notify = d >= self.customers;
            let pick = |j: &Job| j.what.notify == notify && (notify || j.what.customer == d);
            self.out.ended(d, ok, probe, ctx, Timer::HalfOpen(d), pick).into_iter().for_each(|j| self.enqueue(j));
        }
        if !ok {
            return self.failed(job, ctx);
        }
        let (to, bound_us) = (job.what, ms(ctx.param("bound_ms")));
        let name = ["good_latency_us", "bad_latency_us", "notify_latency_us"][to.bad as usize + 2 * to.notify as usize];
        self.out.delivered(&job, name, bound_us, ctx);
    }

    /// A failed try: backed off, then dead-lettered — or, in the shared queue, dropped (given up on: judged late).
    fn failed(&mut self, job: Job, ctx: &mut Ctx<Wd>) {
        let (base_us, cap_us) = (ms(ctx.param("backoff_ms")), ms(ctx.param("backoff_cap_ms")));
        let policy = RetryPolicy::new(ctx.param("max_retries") as u32, base_us, cap_us, Jitter::Full);
        let rule = OnFailure::Backoff { policy, dlq: self.strategy != Strategy::SharedQueue };
        self.out.failed(job, rule, ms(ctx.param("bound_ms")), ctx, Timer::Retry);
    }

    fn busy_bad(&self) -> usize {
        self.calls.iter().filter(|(_, p)| p.0.what.bad).count()
    }

    fn view(&self) -> NodeView {
        let (label, tone) =
            [("one shared queue", Tone::Warn), ("queue per customer", Tone::Neutral), ("+ failover", Tone::Good)]
                [self.strategy as usize];
        let (busy, calls) = (self.busy_bad() as i64, (self.calls.len() as i64).max(1));
        let view = NodeView::new(NodeKind::Queue, 0, "delivery service").badge(label, tone);
        self.out.view(view).gauge("connections held by bad endpoints", busy, calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{between, failed_at, run_sampled, Sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("webhook-delivery", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &["bad_tries", "replayed"])
    }

    /// One bad customer of ten, down for the whole run, 50 events/s, no notifications and no slow phase.
    fn one_dead_endpoint(strategy: &str, seed: u64) -> Recipe {
        let r = recipe(strategy, seed).with_param("customers", 10).with_param("events_per_s", 50);
        r.with_param("notify_per_s", 0)
            .with_param("outage_at", 0)
            .with_param("outage_len", 3600)
            .with_param("provider_len", 0)
    }

    #[test]
    fn try_shared_queue_stalls_good_customers_duplicates_under_new_keys_and_drops() {
        // Step 1: from 3 s the bad tenth's tries hold a connection for the full 1 s timeout, five
        // retries each: 40 events/s × 6 s of connection = 240 wanted of 100, so the one queue grows.
        for seed in 1..=3 {
            let (r, _) = run(recipe("shared-queue", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "good-latency").expect("good-latency failed");
            assert!((3.0..9.0).contains(&t) && why.starts_with("customer"), "seed {seed}: {t} s: {why}");
            let (t, why) = failed_at(r.as_ref(), "no-duplicate-without-key").expect("a duplicate under a new key");
            assert!((3.0..6.0).contains(&t) && why.contains("again under key"), "seed {seed}: {t} s: {why}");
            let (t, why) = failed_at(r.as_ref(), "nothing-lost").expect("an event dropped");
            assert!((8.0..20.0).contains(&t) && why.contains("dropped after 6 tries"), "seed {seed}: {t} s: {why}");
        }
    }

    #[test]
    fn try_per_customer_isolates_the_bad_endpoints_but_not_the_provider_outage() {
        // Step 2: nothing lost, good customers fast, the dead letters replayed when the bad
        // endpoints recover at 20 s (the queue is empty again by 30 s); notifications fail the
        // check a few seconds into the provider's outage, when they start being dead-lettered.
        for seed in 1..=3 {
            let (r, at) = run(recipe("per-customer", seed), 30);
            for check in ["good-latency", "nothing-lost", "no-duplicate-without-key"] {
                assert!(failed_at(r.as_ref(), check).is_none(), "seed {seed}: {check}");
            }
            let (t, why) = failed_at(r.as_ref(), "notify-latency").expect("notify-latency failed");
            assert!((12.0..20.0).contains(&t) && why.starts_with("a notification"), "seed {seed}: {t} s: {why}");
            assert!(between(&at, 1, 0, 20) == 0.0 && between(&at, 1, 20, 30) > 100.0, "seed {seed}: replays");
            assert_eq!((r.metrics().gauge("dlq"), r.metrics().counter("lost")), (0, 0), "seed {seed}");
            assert!(r.metrics().counter("dup_same_key") > 0, "seed {seed}: duplicates, each under its key");
        }
    }

    #[test]
    fn try_failover_holds_every_check() {
        // Step 3 (and many seeds in tests/break_fix).
        for seed in 1..=3 {
            let (r, _) = run(recipe("failover", seed), 30);
            for c in r.checks() {
                assert!(c.violation.is_none(), "seed {seed}: {} {:?}", c.id, c.violation);
            }
            assert_eq!(r.metrics().counter("throttled"), 0, "seed {seed}: paced under the provider's limit");
        }
    }

    #[test]
    fn an_event_to_a_dead_endpoint_is_given_up_on_after_the_retry_schedules_span() {
        // Shared queue, one endpoint down, connections to spare: each of the 6 tries waits out the
        // 1 s timeout, and the 5 backoffs (full jitter) average Σ min(3.2, 0.2 × 2^(n−1)) / 2 =
        // 3.1 s (retry.rs's closed form): 9.1 s from the event to the drop. The span's s.d. is
        // 1.07 s (Σ t² / 12); some 500 events over 110 s put the mean's s.d. near 0.05 s: ±3%
        // (0.27 s) is over 5 s.d.
        let p = RetryPolicy { max_retries: 5, base_us: 200_000, cap_us: 3_200_000, jitter: Jitter::Full };
        let theory = 6e6 + (1..=5).map(|n| p.expected_delay_us(n).expect("full jitter")).sum::<f64>();
        for seed in 1..=3 {
            let (r, _) = run(one_dead_endpoint("shared-queue", seed), 120);
            let h = r.metrics().histogram("gave_up_us").expect("drops");
            assert!(h.count() > 400, "seed {seed}: {}", h.count());
            assert!((h.mean() - theory).abs() < 0.03 * theory, "seed {seed}: {:.0} us, theory {theory:.0}", h.mean());
        }
    }

    #[test]
    fn a_breaker_holds_a_dead_endpoint_to_one_probe_per_open_period_and_timeout() {
        // Per-customer, one endpoint down: once its breaker is open it lets one probe through per
        // open period (2 s), which holds a connection for the 1 s timeout before failing — at most
        // 1 / (2 s + 1 s) = 0.33 tries/s (a little less: the probe waits for the customer's next
        // event, some 0.2 s at 5 events/s), so a third of a connection, where the shared queue
        // gives it 5 events/s × 6 tries × 1 s = 30.
        for seed in 1..=3 {
            let (_, at) = run(one_dead_endpoint("per-customer", seed), 100);
            let rate = between(&at, 0, 20, 100) / 80.0;
            assert!((0.28..=1.0 / 3.0 + 0.01).contains(&rate), "seed {seed}: {rate:.3} tries/s");
            let (_, at) = run(one_dead_endpoint("shared-queue", seed), 100);
            let rate = between(&at, 0, 20, 100) / 80.0;
            assert!((rate - 30.0).abs() < 3.0, "seed {seed}: shared queue {rate:.1} tries/s");
        }
    }

    #[test]
    fn the_view_shows_head_of_line_blocking_and_the_open_breakers() {
        let views = |st: &str, secs| {
            let frame = run(recipe(st, 1), secs).0.frame(0);
            frame.nodes.into_iter().map(|n| n.view).collect::<Vec<_>>()
        };
        let gauge = |v: &NodeView, label: &str| v.gauges.iter().find(|g| g.label == label).expect("a gauge").value;
        let shared = views("shared-queue", 6);
        assert!(gauge(&shared[0], "connections held by bad endpoints") > 80, "{:?}", shared[0].gauges);
        assert!(shared[BAD as usize].badges[0].text.starts_with("slow"), "{:?}", shared[BAD as usize].badges);
        let isolated = views("per-customer", 10);
        assert!(isolated[0].badges.iter().any(|b| b.text == "10 breakers open"), "{:?}", isolated[0].badges);
        assert!(gauge(&isolated[0], "connections held by bad endpoints") < 20);
        assert_eq!(isolated[BAD as usize].badges[0].text, "down");
    }
}
