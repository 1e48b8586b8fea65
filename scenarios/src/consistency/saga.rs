//! Saga: an order reserves inventory, charges payment and notifies shipping, and any step may decline or time out. Without compensations the earlier steps stay in force; compensations tried once stick on a refusal or a timed-out step; retried without an idempotency key they refund twice. Retried idempotent compensations, or choreography over an at-least-once broker, settle every order.

use crate::parts::arrivals::OpenLoop;
use crate::parts::broker::{Delivery, MsgId};
use crate::parts::bus::{Bus, Wiring};
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::retried::{Ended, Retried};
use crate::parts::retry::{Jitter, RetryBudget, RetryPolicy};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "saga",
        title: "Saga: compensations across services",
        category: "Transactions & consistency",
        seeds: &["S0#5", "S1#15", "S3#27", "S3#100"],
        summary: "20 orders/s each reserve stock, charge a card and notify shipping; every step declines 10% of \
                  orders, a compensation is refused 20% of the time and its answer lost 10%, payment is slow from \
                  8 s to 11 s and the orchestrator crashes at 18 s. Every order must end all done or all undone.",
        note: Note {
            what_can_go_wrong: "No transaction spans three services: when a later step declines, the earlier ones \
                are already done and must be undone by compensations (release the stock, refund the card) that can \
                fail themselves. A step that times out may have happened (S3#27: the charge went through, its answer \
                did not): compensating only what is known done leaves that charge in force. A compensation retried \
                after its answer was lost is done twice unless it is idempotent: a refund without its charge. The \
                model: each step declines with a chance, a service answers after an exponential time, an undo is \
                refused (503, nothing done) or done with its answer lost; the orchestrator keeps its saga log \
                durably and resumes it after a crash; services remember per order what they did, so a step repeated \
                is not done twice and an undo that arrives first leaves a tombstone that refuses the late step.",
            what_you_sacrifice: "Isolation: between the steps other requests see stock reserved and money taken for \
                an order that will be undone (a saga is ACD without the I). Every step needs a compensation, every \
                service per-order state to make steps and undos idempotent, and the orchestrator a durable log. \
                Choreography drops the orchestrator but spreads the workflow over event handlers: nobody holds an \
                order's state, and a lost event strands the order silently.",
            at_10x: "At 200 orders/s a 3 s slowdown puts 600 orders in limbo at once, each holding stock other \
                buyers cannot reserve; retries of compensations multiply load on the service that is already slow \
                (back off and cap them). Choreography's redeliveries grow with handling time over the visibility \
                timeout; an audit that finds orders not settled after a grace becomes necessary, not optional.",
            resembles: "Garcia-Molina and Salem's Sagas (1987); microservices.io Saga (orchestration, choreography); \
                AWS Step Functions and Temporal workflows with compensations; Uber Cadence; Axon and Eventuate \
                sagas; Stripe refunds with idempotency keys.",
            try_this: &[
                "Play `no-compensation`: the first order a later step declines keeps its earlier steps; 10 s (the \
                 grace) later `settles` names it — stock reserved forever, or a card charged for an order that will \
                 never ship.",
                "Switch to `compensate`: compensations undo declined orders, but one refused once leaves its order \
                 stuck; set `undo_fail_pct` and `undo_lost_pct` to 0 and orders still stick while payment is slow: \
                 the charge timed out, was done, and is never refunded (charged, not shipped).",
                "Try `retry-no-key`: retrying compensations gets them through, but a refund whose answer was lost \
                 or late is done again and `undone-once` fails: refunded twice.",
                "Play `compensate-retry` or `choreography`: every order settles. Raise `event_loss_pct` to 1: the \
                 broker loses an event now and then and choreography strands its order.",
            ],
        },
    },
    params: &[
        ParamSpec::live("orders_per_s", "Orders", "orders/s", 0..=2000, 20, "Checkouts per second (Poisson)."),
        ParamSpec::live("decline_pct", "Step declines", "%", 0..=100, 10, "Each step refuses an order with this chance (out of stock, card declined, no courier)."),
        ParamSpec::live("undo_fail_pct", "Compensation refused", "%", 0..=100, 20, "A compensation answers 503 with this chance, nothing done."),
        ParamSpec::live("undo_lost_pct", "Compensation answer lost", "%", 0..=100, 10, "A compensation is done but its answer never comes back."),
        ParamSpec::live("undo_retries", "Compensation retries", "", 0..=30, 10, "Retries of a compensation (retrying strategies), backoff 100 ms doubling to 1 s, full jitter."),
        ParamSpec::live("timeout_ms", "Step timeout", "ms", 50..=60_000, 1000, "The orchestrator's wait for a step's or compensation's answer.").step(50),
        ParamSpec::live("step_ms", "Step time", "ms", 1..=5000, 30, "A service's mean time to answer (exponential)."),
        ParamSpec::live("event_loss_pct", "Events lost by the broker", "%", 0..=100, 0, "Choreography: each event published is lost with this chance."),
        ParamSpec::live("grace_ms", "Audit grace", "ms", 1000..=120_000, 10_000, "An order older than this must be settled.").step(500),
        ParamSpec::setup("slow_ms", "Payment slowdown at 8–11 s", "ms", 0..=60_000, 2000, "Scheduled: payment answers this much later (0: none).").step(100),
        ParamSpec::setup("crash_at", "Orchestrator crash at", "s", 0..=3600, 18, "Scheduled: the order service crashes, back 1 s later (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("no-compensation", "No compensation", "A failed step ends the order; what earlier steps did stays done."),
        StrategySpec::naive("compensate", "Orchestrated compensations, tried once", "Undoes the steps known done, in reverse, each compensation tried once."),
        StrategySpec::naive("retry-no-key", "Retried compensations without a key", "Also undoes a step that timed out and retries compensations, but without an idempotency key: a retry is done again."),
        StrategySpec::fixed("compensate-retry", "Retried idempotent compensations", "Undoes every step done or timed out, retrying each compensation with backoff under the order's key (done at most once)."),
        StrategySpec::fixed("choreography", "Choreography by events", "No orchestrator: each service reacts to the previous one's event on an at-least-once broker, idempotently by order."),
    ],
    faults: &[
        FaultSpec::node("slow-service", "Slow service", "This service answers this much later.").value("extra ms", 0..=60_000, 2000),
    ],
    checks: &[
        CheckSpec::new("settles", "Every order settles", "An order older than the grace is all done (reserved, charged, shipped) or all undone; names the order and what is in force."),
        CheckSpec::new("undone-once", "No step undone twice", "A compensation is applied at most once: never a refund without its charge, nor stock released twice."),
    ],
    metrics: &[
        MetricSpec::new("completed", "Orders completed", "orders/s", Measure::Rate("completed")),
        MetricSpec::new("compensated", "Orders compensated", "", Measure::Count("compensated")),
        MetricSpec::new("stuck", "Orders given up (orchestrator)", "", Measure::Count("stuck")),
        MetricSpec::new("limbo", "Time in limbo p99", "us", Measure::Quantile("limbo_us", 0.99)),
        MetricSpec::new("charged_open", "Charged, not shipped (now)", "orders", Measure::Count("charged_open")),
        MetricSpec::new("reserved_open", "Reserved, not shipped (now)", "orders", Measure::Count("reserved_open")),
        MetricSpec::new("undo_retries", "Compensation retries", "", Measure::Count("undo_retries")),
        MetricSpec::new("double_undos", "Compensations done twice", "", Measure::Count("double_undos")),
        MetricSpec::new("redeliveries", "Events redelivered", "", Measure::Count("redeliveries")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { NoComp, Once, NoKey, Retry, Chor });

impl Strategy {
    /// Compensations retried (and a timed-out step taken as done): all but the first two.
    fn retries(self) -> bool {
        !matches!(self, Strategy::NoComp | Strategy::Once)
    }
}

const ORDERS: NodeId = 0;
/// Inventory, payment, shipping: step `s` is node `FIRST + s`.
const FIRST: NodeId = 1;
const BROKER: NodeId = 4;
const STEPS: i8 = 3;
/// Per step: the god's-eye tally of its effect in force per order, and the words for it in force,
/// not, and undone twice.
const EFFECTS: [&str; 3] = ["reserved", "charged", "shipped"];
const WORDS: [[&str; 3]; 3] = [
    ["reserved", "not reserved", "released twice"],
    ["charged", "not charged", "refunded twice"],
    ["shipped", "not shipped", "shipment cancelled twice"],
];
const NAMES: [&str; 3] = ["inventory", "payment", "shipping"];
/// Compensations back off 100 ms, 200 ms… up to 1 s, full jitter; retries are `undo_retries`.
const UNDO: RetryPolicy = RetryPolicy::new(10, 100 * MICROS_PER_MS, MICROS_PER_S, Jitter::Full);
/// Choreography's broker: an event handled but not acknowledged within this comes back.
const VISIBILITY_US: Micros = MICROS_PER_S;
const AUDIT_US: Micros = 100 * MICROS_PER_MS;

/// What a service says happened to an order at its step: `Did(s)` / `Declined(s)` / `Undone(s)`
/// by step `s`; `Placed` by the order service. Events are routed to the service that reacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Placed,
    Did(i8),
    Declined(i8),
    Undone(i8),
}

type Job = (u64, Event);

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Do { order: u64, call: CallId },
    Undo { order: u64, keyed: bool, call: CallId },
    /// A step's answer: done (or undone), or declined (refused, for an undo).
    Answer { call: CallId, ok: bool },
    Publish(Job),
    /// A subscriber asks for the next event, acknowledging one it handled.
    Ask(Option<(MsgId, u64)>),
    Deliver(Delivery<Job>),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Timeout(CallId),
    Retry(u32, u32),
    Audit,
    Wake(usize),
}

#[derive(Clone, Debug, Holds)]
pub enum Sg {
    Orders(Orders),
    Service(Service),
    Broker(Broker),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Completed,
    Compensated,
    Stuck,
}

/// An order's saga as the durable log keeps it: the step awaited (`at`, going back while
/// compensating), how it ended, and whether it runs by choreography.
#[derive(Clone, Copy, Debug)]
pub struct Saga {
    born: Time,
    started: Time,
    at: i8,
    back: bool,
    end: Option<End>,
    chor: bool,
}

#[derive(Clone, Debug)]
pub struct Orders {
    strategy: Strategy,
    arrivals: OpenLoop,
    /// The saga log (durable), orders numbered from 1 in the order placed.
    sagas: KeyTable<Saga>,
    placed: u64,
    open: u32,
    stuck: u64,
    /// Each action (a step, a compensation) is an operation of its order; its tries are volatile.
    calls: Retried<u64>,
    /// The audit's cursor: orders past the grace, judged by the checks (instrumentation).
    audited: u64,
}

/// What the service did per order: the truth its checks read is tallied too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Did {
    Done,
    Declined,
    Undone,
}

#[derive(Clone, Debug)]
pub struct Service {
    step: i8,
    orders: KeyTable<Did>,
    health: Health,
    in_force: i64,
    twice: u64,
}

/// The broker, one queue per subscriber (the order service, then each step's service).
#[derive(Clone, Debug)]
pub struct Broker {
    buses: Vec<Bus<Job>>,
}

fn wiring(to: NodeId) -> Wiring<Sg, Job> {
    Wiring { timer: Timer::Wake(to as usize), wrap: Msg::Deliver }
}

/// Who reacts to an event: the next step's service going forward, the previous one going back,
/// the order service at either end.
fn subscriber(event: Event) -> NodeId {
    match event {
        Event::Placed => FIRST,
        Event::Did(s) if s + 1 < STEPS => FIRST + (s + 1) as NodeId,
        Event::Declined(s) | Event::Undone(s) if s > 0 => FIRST + (s - 1) as NodeId,
        Event::Did(_) | Event::Declined(_) | Event::Undone(_) => ORDERS,
    }
}

fn chance(ctx: &mut Ctx<Sg>, pct: &str) -> bool {
    ctx.rng().below(100) < ctx.param(pct).clamp(0, 100) as u64
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Sg> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 5_000 }));
    let strategy = Strategy::from_id(setup.strategy());
    let arrivals = OpenLoop::poisson(setup.param("orders_per_s") as f64);
    let calls = Retried::new(Calls::new("call_us").counting_late("late_answers"), RetryBudget::new(0, 0));
    let (sagas, placed, open, stuck, audited) = (KeyTable::default(), 0, 0, 0, 0);
    sim.add_node(Sg::Orders(Orders { strategy, arrivals, sagas, placed, open, stuck, calls, audited }));
    for step in 0..STEPS {
        let (orders, health) = (KeyTable::default(), Health::Up);
        sim.add_node(Sg::Service(Service { step, orders, health, in_force: 0, twice: 0 }));
    }
    let buses = (0..BROKER).map(|_| Bus::new(VISIBILITY_US)).collect();
    assert_eq!(sim.add_node(Sg::Broker(Broker { buses })), BROKER);
    // The plan: payment slow past the step timeout (its charges time out, done), then the
    // orchestrator's crash mid-sagas.
    let slow = setup.param("slow_ms");
    FaultWindow::secs(8, 3 * slow.min(1)).custom(&mut sim, "slow-service", Some(FIRST + 1), slow, 0);
    let crash_at = setup.param("crash_at");
    FaultWindow::secs(crash_at, crash_at.min(1)).crash(&mut sim, ORDERS);
    sim.check("settles", |w| {
        let due = |t: &&(&str, u64, i64)| t.0 == "due" || (EFFECTS.contains(&t.0) && w.tally("due", t.1) > 0);
        match w.tallied.iter().filter(due).map(|t| t.1).find(|&o| !settled(w, o)) {
            Some(order) => Err(format!("order {order} after the {} ms grace: {}", w.param("grace_ms"), state(w, order))),
            None => Ok(()),
        }
    });
    sim.check("undone-once", |w| match w.tallied.iter().position(|t| EFFECTS.contains(&t.0) && t.2 < 0) {
        Some(i) => Err(format!("order {}: {}", w.tallied[i].1, state(w, w.tallied[i].1))),
        None => Ok(()),
    });
    Box::new(sim)
}

/// All three effects in force, or none.
fn settled(w: &World<Sg>, order: u64) -> bool {
    let [r, c, s] = EFFECTS.map(|e| w.tally(e, order));
    r == c && c == s && (r == 0 || r == 1)
}

fn state(w: &World<Sg>, order: u64) -> String {
    let word = |s: usize| WORDS[s][match w.tally(EFFECTS[s], order) { 1 => 0, 0 => 1, _ => 2 }];
    format!("{}, {}, {}", word(0), word(1), word(2))
}

impl Node for Sg {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Sg::Orders(o) => {
                o.arrivals.start(ctx, Timer::Arrive);
                ctx.set_timer(AUDIT_US, Timer::Audit);
                // Resume every open saga from the log: its action in flight was lost.
                let open: Vec<u64> = o.sagas.iter().filter(|(_, s)| s.end.is_none() && !s.chor).map(|(k, _)| k).collect();
                open.into_iter().for_each(|order| o.act(order, ctx));
                ctx.send(BROKER, Msg::Ask(None));
            }
            Sg::Service(_) => ctx.send(BROKER, Msg::Ask(None)),
            Sg::Broker(b) => (0..BROKER).for_each(|to| b.buses[to as usize].restarted([to], ctx, wiring(to))),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Sg::Orders(o), Msg::Answer { call, ok }) => o.ended(call, Some(ok), ctx),
            (Sg::Orders(o), Msg::Deliver(d)) => o.delivered(d, ctx),
            (Sg::Service(s), Msg::Do { order, call }) => {
                let ok = s.apply(order, ctx);
                s.answer(from, Msg::Answer { call, ok }, ctx)
            }
            (Sg::Service(s), Msg::Undo { order, keyed, call }) => match s.undo(order, keyed, ctx) {
                false => s.answer(from, Msg::Answer { call, ok: false }, ctx),
                true if chance(ctx, "undo_lost_pct") => ctx.count("answers_lost", 1),
                true => s.answer(from, Msg::Answer { call, ok: true }, ctx),
            },
            (Sg::Service(s), Msg::Deliver(d)) => s.delivered(d, ctx),
            (Sg::Broker(b), Msg::Publish(job)) => {
                let (to, loss) = (subscriber(job.1), Ppm::from_percent(ctx.param("event_loss_pct").clamp(0, 100) as u32));
                b.buses[to as usize].publish(job, 0, loss, ctx, wiring(to));
            }
            (Sg::Broker(b), Msg::Ask(done)) if from < BROKER => b.buses[from as usize].ask(from, done, ctx, wiring(from)),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Sg::Orders(o), Timer::Arrive) => o.place(ctx),
            (Sg::Orders(o), Timer::Timeout(call)) => o.ended(call, None, ctx),
            (Sg::Orders(o), Timer::Retry(op, try_no)) => {
                let timeout = ctx.param_ms("timeout_ms");
                if let Some(call) = o.calls.again(ctx, op, try_no, timeout, Timer::Timeout) {
                    let order = *o.calls.data_mut(op).expect("an open operation");
                    o.send(order, call, ctx);
                }
            }
            (Sg::Orders(o), Timer::Audit) => o.audit(ctx),
            (Sg::Broker(b), Timer::Wake(to)) => b.buses[to].dispatch(ctx, wiring(to as NodeId)),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // The saga log is durable; the calls in flight are not.
            Sg::Orders(o) => o.calls.clear(ctx),
            Sg::Broker(b) => b.buses.iter_mut().for_each(|bus| bus.crashed()),
            // A service's per-order records are its database's.
            Sg::Service(_) => {}
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Sg::Orders(o), Control::Strategy(id)) => o.strategy = Strategy::from_id(id),
            (Sg::Orders(o), Control::Param { id: "orders_per_s", value }) => {
                o.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Sg::Service(s), Control::Custom { id: "slow-service", value }) => {
                s.health = if value > 0 { Health::plus_us(value as Micros * MICROS_PER_MS) } else { Health::Up }
            }
            // The other parameters are read where they are used; the slow fault aimed at the
            // order service or the broker slows nothing (only the three services answer steps).
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Sg::Orders(o) => NodeView::new(NodeKind::Service, 0, "orders")
                .gauge("sagas open", o.open as i64, 50)
                .badge_if(o.stuck > 0, format!("{} given up", o.stuck), Tone::Bad),
            Sg::Service(s) => NodeView::new(NodeKind::Service, 2, NAMES[s.step as usize])
                .gauge("orders in force", s.in_force, 500)
                .badge_if(!s.health.is_up(), s.health.to_string(), Tone::Warn)
                .badge_if(s.twice > 0, format!("{} undone twice", s.twice), Tone::Bad),
            Sg::Broker(b) => {
                let sum = |f: fn(&Bus<Job>) -> usize| b.buses.iter().map(f).sum::<usize>() as i64;
                let lost = b.buses.iter().map(|bus| bus.lost()).sum::<u64>();
                NodeView::new(NodeKind::Queue, 1, "broker")
                    .gauge("events ready", sum(|bus| bus.queue().ready()), 100)
                    .gauge("events in flight", sum(|bus| bus.queue().in_flight()), 100)
                    .badge_if(lost > 0, format!("{lost} events lost"), Tone::Bad)
            }
        }
    }
}

impl Orders {
    fn place(&mut self, ctx: &mut Ctx<Sg>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        self.placed += 1;
        let (order, chor) = (self.placed, self.strategy == Strategy::Chor);
        let saga = Saga { born: ctx.truth(), started: ctx.now(), at: 0, back: false, end: None, chor };
        self.sagas.insert(order, saga);
        self.open += 1;
        match chor {
            true => ctx.send(BROKER, Msg::Publish((order, Event::Placed))),
            false => self.act(order, ctx),
        }
    }

    /// Starts the saga's current action (its step, or its compensation) as an operation.
    fn act(&mut self, order: u64, ctx: &mut Ctx<Sg>) {
        let call = self.calls.start(ctx, order, ctx.param_ms("timeout_ms"), Timer::Timeout);
        self.send(order, call, ctx);
    }

    fn send(&mut self, order: u64, call: CallId, ctx: &mut Ctx<Sg>) {
        let saga = *self.sagas.get(order).expect("a logged saga");
        let keyed = self.strategy != Strategy::NoKey;
        let msg = if saga.back { Msg::Undo { order, keyed, call } } else { Msg::Do { order, call } };
        ctx.send(FIRST + saga.at as NodeId, msg);
    }

    /// A try ended: answered (`Some(ok)`) or timed out. A step is tried once; a compensation
    /// is retried by the retrying strategies.
    fn ended(&mut self, call: CallId, answer: Option<bool>, ctx: &mut Ctx<Sg>) {
        let order = self.calls.try_of(call).and_then(|(op, _)| self.calls.data_mut(op).copied());
        let back = order.and_then(|o| self.sagas.get(o)).is_some_and(|s| s.back);
        let policy = match back && self.strategy.retries() {
            true => RetryPolicy { max_retries: ctx.param("undo_retries") as u32, ..UNDO },
            false => RetryPolicy::NEVER,
        };
        match self.calls.ended(ctx, call, answer, &policy, false, Timer::Retry) {
            Ended::Succeeded { data, .. } => self.advance(data, ctx),
            Ended::GaveUp(order) => self.failed(order, answer.is_none(), ctx),
            Ended::Retrying { .. } => ctx.count("undo_retries", 1),
            Ended::Stale => {}
        }
    }

    fn advance(&mut self, order: u64, ctx: &mut Ctx<Sg>) {
        let saga = self.sagas.get_mut(order).expect("a logged saga");
        saga.at += if saga.back { -1 } else { 1 };
        let (at, back) = (saga.at, saga.back);
        match (at, back) {
            (STEPS, false) => self.end(order, End::Completed, ctx),
            (-1, true) => self.end(order, End::Compensated, ctx),
            _ => self.act(order, ctx),
        }
    }

    /// A step declined or timed out, or a compensation could not be done.
    fn failed(&mut self, order: u64, timed_out: bool, ctx: &mut Ctx<Sg>) {
        let strategy = self.strategy;
        let saga = self.sagas.get_mut(order).expect("a logged saga");
        if saga.back {
            ctx.note(format!("order {order}: giving up its compensation at {}", NAMES[saga.at as usize]));
            return self.end(order, End::Stuck, ctx);
        }
        if strategy == Strategy::NoComp {
            let end = if saga.at == 0 && !timed_out { End::Compensated } else { End::Stuck };
            return self.end(order, end, ctx);
        }
        // A step that timed out may have been done: the retrying strategies undo it too (an
        // undo of what was never done leaves a tombstone), the naive one only what it knows.
        saga.back = true;
        saga.at -= !(timed_out && strategy.retries()) as i8;
        let at = saga.at;
        match at {
            -1 => self.end(order, End::Compensated, ctx),
            _ => self.act(order, ctx),
        }
    }

    fn end(&mut self, order: u64, end: End, ctx: &mut Ctx<Sg>) {
        let saga = self.sagas.get_mut(order).expect("a logged saga");
        if saga.end.is_some() {
            return ctx.count("duplicates", 1);
        }
        saga.end = Some(end);
        self.open -= 1;
        ctx.observe("limbo_us", ctx.now().since(saga.started));
        match end {
            End::Completed => ctx.count("completed", 1),
            End::Compensated => ctx.count("compensated", 1),
            End::Stuck => {
                self.stuck += 1;
                ctx.count("stuck", 1)
            }
        }
    }

    /// Choreography's last events reach the order service: shipped, or undone back to the start.
    fn delivered(&mut self, d: Delivery<Job>, ctx: &mut Ctx<Sg>) {
        match d.job {
            (order, Event::Did(_)) => self.end(order, End::Completed, ctx),
            (order, Event::Declined(_) | Event::Undone(_)) => self.end(order, End::Compensated, ctx),
            (_, Event::Placed) => ctx.unhandled(&Msg::Deliver(d.clone())),
        }
        ctx.send(BROKER, Msg::Ask(Some((d.id, d.receipt))));
    }

    /// The audit (instrumentation, in true time): each order whose grace has run out is tallied
    /// due, once, and the checks judge it then and at every later change of its effects.
    fn audit(&mut self, ctx: &mut Ctx<Sg>) {
        let (grace, now) = (ctx.param_ms("grace_ms"), ctx.truth());
        while self.sagas.get(self.audited + 1).is_some_and(|s| s.born.plus(grace) <= now) {
            self.audited += 1;
            ctx.tally("due", self.audited, 1);
        }
        ctx.set_timer(AUDIT_US, Timer::Audit);
    }
}

impl Service {
    /// The step for `order`: done once (a repeat gets the first outcome), refused after an undo.
    fn apply(&mut self, order: u64, ctx: &mut Ctx<Sg>) -> bool {
        match self.orders.get(order) {
            Some(&did) => did == Did::Done,
            None if chance(ctx, "decline_pct") => {
                self.orders.insert(order, Did::Declined);
                false
            }
            None => {
                self.orders.insert(order, Did::Done);
                self.effect(order, 1, ctx);
                true
            }
        }
    }

    /// The compensation for `order`: refused (503, `false`), or done — under the order's key at
    /// most once, without a key again each time it comes. Before the step, a tombstone.
    fn undo(&mut self, order: u64, keyed: bool, ctx: &mut Ctx<Sg>) -> bool {
        if chance(ctx, "undo_fail_pct") {
            ctx.count("undo_refused", 1);
            return false;
        }
        match self.orders.insert(order, Did::Undone) {
            Some(Did::Done) => self.effect(order, -1, ctx),
            Some(Did::Undone) if !keyed => {
                self.twice += 1;
                ctx.count("double_undos", 1);
                ctx.note(format!("order {order}: {} again, without a key", WORDS[self.step as usize][2]));
                self.effect(order, -1, ctx)
            }
            // Declined, undone already, or never done (now a tombstone): nothing to undo.
            Some(Did::Declined | Did::Undone) | None => {}
        }
        true
    }

    fn effect(&mut self, order: u64, delta: i64, ctx: &mut Ctx<Sg>) {
        self.in_force += delta;
        ctx.tally(EFFECTS[self.step as usize], order, delta);
        match self.step {
            0 => ctx.count("reserved_open", delta),
            1 => ctx.count("charged_open", delta),
            _ => {
                ctx.count("reserved_open", -delta);
                ctx.count("charged_open", -delta)
            }
        }
    }

    fn delay(&self, ctx: &mut Ctx<Sg>) -> Micros {
        let mean = ctx.param_ms("step_ms") as f64;
        let base = ctx.rng().exponential(mean) as Micros;
        self.health.latency(base).unwrap_or(base)
    }

    fn answer(&self, to: NodeId, msg: Msg, ctx: &mut Ctx<Sg>) {
        let delay = self.delay(ctx);
        ctx.send_after(delay, to, msg);
    }

    /// Choreography: react to the event at once (taking the next one meanwhile), publish the
    /// outcome and acknowledge after the service time. A refused undo is not acknowledged: the
    /// broker hands it back after the visibility timeout.
    fn delivered(&mut self, d: Delivery<Job>, ctx: &mut Ctx<Sg>) {
        ctx.send(BROKER, Msg::Ask(None));
        if d.receives > 1 {
            ctx.count("redeliveries", 1);
        }
        let ((order, event), me) = (d.job, self.step);
        let outcome = match event {
            Event::Placed | Event::Did(_) => Some(if self.apply(order, ctx) { Event::Did(me) } else { Event::Declined(me) }),
            Event::Declined(_) | Event::Undone(_) => self.undo(order, true, ctx).then_some(Event::Undone(me)),
        };
        let Some(outcome) = outcome else { return };
        let delay = self.delay(ctx);
        ctx.send_after(delay, BROKER, Msg::Publish((order, outcome)));
        match matches!(outcome, Event::Undone(_)) && chance(ctx, "undo_lost_pct") {
            true => ctx.count("answers_lost", 1),
            false => ctx.send_after(delay, BROKER, Msg::Ask(Some((d.id, d.receipt)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(recipe: Recipe, until_s: u64) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, &recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.run_until(Time::from_secs(until_s), u64::MAX);
        assert_eq!(run.unhandled(), 0, "{}", recipe.to_query(&SPEC));
        run
    }

    fn violation(run: &dyn Run, check: &str) -> Option<Violation> {
        run.checks().iter().find(|c| c.id == check).unwrap().violation.clone()
    }

    #[test]
    fn explore() {
        for st in SPEC.strategies {
            for seed in 1..=3 {
                let r = run(Recipe::new("saga", st.id, seed), 30);
                let m = r.metrics();
                let c: Vec<_> = ["completed", "compensated", "stuck", "charged_open", "reserved_open", "undo_retries", "double_undos", "redeliveries"].iter().map(|k| m.counter(k)).collect();
                println!("{} {seed} {c:?} {:?} {:?}", st.id, violation(r.as_ref(), "settles").map(|v| (v.at, v.why)), violation(r.as_ref(), "undone-once").map(|v| (v.at, v.why)));
            }
        }
    }
}
