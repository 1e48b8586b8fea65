//! Message ordering: customers → two order-API instances (their own clocks) → P ordered partitions, one consumer each → the orders table. Random partitioning reorders a customer's orders; key partitioning keeps them in order until one customer places 1,000 a second and its partition falls behind; sub-keys spread the hot key, and the orders table puts them back in order — by sender timestamps (wrong under clock skew) or by the customer's sequence numbers.

use crate::parts::applier::{Ordered, Reorder};
use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::CallId;
use crate::parts::consumer::Consumer;
use crate::parts::partition::Offset;
use crate::parts::resend::PerKey;
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "message-ordering",
        title: "Per-customer order with a hot customer",
        category: "Messaging",
        seeds: &["S3#67", "S1#38"],
        summary: "1,000 customers place 1,600 orders/s over 8 partitions (2 ms each); at 5 s customer 0 starts placing \
                  1,000 a second. Each customer's orders must be applied in the order placed, customers in parallel.",
        note: Note {
            what_can_go_wrong: "Partitions run in parallel, so a customer's orders on two partitions are applied in \
                whichever order their queues allow: random partitioning reorders. Keying by customer keeps each on one \
                partition, in order, until one customer places more than a consumer can process (1,000/s at 2 ms is \
                ρ = 2): its partition's lag grows without end, its neighbours' too. Sub-keys spread the hot key and \
                need a resequencer; by sender timestamps it trusts clocks, and one off by more than the gap between \
                two orders swaps them. The model: Poisson customers; API instances in turn, each stamping its own \
                clock; links keep order (constant latency) but lose under faults; a fixed time per order at each \
                partition's consumer; only customer 0's key is salted. At least once, end to end: a customer \
                places an order again until its partition acks it (an ordinary one waits for that before its \
                next), the log and its committed offset are durable, a consumer commits only what the orders \
                table acked and resends the rest after a timeout (doubling to 1 s), and after a crash reads \
                again from its commit. Copies are dropped by order id (partition), by offset (each partition's \
                stream at the table) and by number (the resequencer).",
            what_you_sacrifice: "Sub-keys give up the one-partition guarantee: order is rebuilt downstream, and the \
                resequencer holds orders back — the whole hold with timestamps, behind the slowest sub-partition with \
                numbers (a lost order holds its customer back until resent). Numbers need one authority per key.",
            at_10x: "At 10,000 orders/s from one customer, applying to its row is itself the serial bottleneck; the \
                promise must shrink to what the business needs (per account, per order's lifecycle): true sub-keys.",
            resembles: "Kafka key partitioning and salted hot keys, EIP's Resequencer, Kafka idempotent-producer \
                sequence numbers, Pulsar Key_Shared, SQS FIFO message groups, chat ordering by server sequence.",
            try_this: &[
                "Play `random`: no partition lags, but `in-order` fails within seconds, naming an ordinary customer \
                 whose two orders came ms apart; from 5 s the hot customer's are reordered hundreds a second.",
                "Play `key`: every customer's orders stay in order, but partition 0 (the hot customer's home) gets \
                 ~1,200 orders/s against 500: its lag grows ~700 a second and `lag-bounded` fails at about 13.5 s.",
                "Play `sub-keys-timestamp`: API 1's clock is 2 ms behind, over the 1 ms between hot orders: about \
                 (λ/2)(1 − e^(−λδ)) = 430/s are applied out of order. With `skew_us` at 0 none are; the hold stays.",
                "Play `sub-keys-sequence`: the customer's own numbers, no clock: nothing out of order, partition lag \
                 a few orders (M/D/1 at ρ = 0.65), p99 latency a few ms.",
            ],
        },
    },
    params: &[
        ParamSpec::live("orders_per_s", "Other customers' orders", "orders/s", 0..=100_000, 1600, "All the other customers together (Poisson)."),
        ParamSpec::live("customers", "Other customers", "", 1..=100_000, 1000, "Each order is from one of them at random."),
        ParamSpec::live("process_us", "Work per order", "µs", 10..=1_000_000, 2000, "Fixed time a consumer takes per order.").step(10),
        ParamSpec::live("sub_keys", "Sub-keys", "", 1..=64, 8, "The hot key's sub-keys: order n goes to home + (n mod this)."),
        ParamSpec::live("hold_ms", "Resequencer hold", "ms", 0..=10_000, 100, "Timestamps: an order waits this long past its stamp."),
        ParamSpec::live("ack_timeout_ms", "Ack timeout", "ms", 10..=60_000, 100, "Unacknowledged by then: sent again (each try waits twice the last, up to 1 s).").step(10),
        ParamSpec::live("lag_max_s", "Lag bound", "s", 1..=600, 5, "An order may wait this long to be applied."),
        ParamSpec::setup("partitions", "Partitions", "", 1..=64, 8, "Partitions, one consumer each."),
        ParamSpec::setup("hot_per_s", "Hot customer's rate", "orders/s", 0..=100_000, 1000, "Customer 0's orders from the hot time on."),
        ParamSpec::setup("hot_at_s", "Hot customer from", "s", 0..=3600, 5, "When customer 0 turns hot (scheduled fault)."),
        ParamSpec::setup("skew_us", "API 1 clock behind", "µs", 0..=10_000_000, 2000, "Instance 1's clock offset from 0 s (NTP-grade).").step(100),
    ],
    strategies: &[
        StrategySpec::naive("random", "Random partition", "Each order to a partition at random: no order across them."),
        StrategySpec::naive("key", "Key partition", "Each customer's orders to one partition (hash of the key)."),
        StrategySpec::naive("sub-keys-timestamp", "Sub-keys + timestamps", "The hot key spread over sub-keys; put back in order by sender timestamps after a hold."),
        StrategySpec::fixed("sub-keys-sequence", "Sub-keys + sequence", "The hot key spread over sub-keys; put back in order by the customer's sequence numbers."),
    ],
    faults: &[FaultSpec::global("hot-customer", "Hot customer", "Customer 0 places this many orders a second from now on (0: stops).").value("orders/s", 0..=100_000, 1000)],
    checks: &[
        CheckSpec::new("in-order", "Per-customer order preserved", "Each order applied to the orders table comes after every order of its customer applied before it. Names the customer and both orders."),
        CheckSpec::new("lag-bounded", "Every order applied in time", "No order waits longer than the lag bound: neither the oldest not yet processed in a partition nor one held by the resequencer. Names which."),
    ],
    metrics: &[
        MetricSpec::new("out_of_order", "Out-of-order applies", "orders", Measure::Count("out_of_order")),
        MetricSpec::new("hot_lag", "Hot partition lag", "orders", Measure::Gauge("hot_lag")),
        MetricSpec::new("throughput", "Throughput", "orders/s", Measure::Rate("applied")),
        MetricSpec::new("p99", "Latency p99 (placed → applied)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("held", "Held by the resequencer", "orders", Measure::Gauge("held")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { Random, Key, SubKeysTimestamp, SubKeysSequence });

// Nodes: the orders table, the other customers, the hot one, the API instances, the partitions.
const LEDGER: NodeId = 0;
const API: NodeId = 3;
const INSTANCES: u64 = 2;
const FIRST_PARTITION: NodeId = 5;
/// The hot customer's id.
const HOT: u64 = 0;
/// Every link's latency: constant, so a link delivers in the order sent (as a TCP connection).
const LINK_US: Micros = 500;

/// An order: customer, its number (from 1), when placed (true time), the API clock's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    customer: u64,
    seq: u64,
    placed: Time,
    stamp: Time,
}

/// How the check and the view tell an order applied after `high`, a later one of its customer.
fn late(o: &Order, high: u64) -> String {
    format!("customer {}{}: #{} applied after #{high}", o.customer, ["", " (hot)"][(o.customer == HOT) as usize], o.seq)
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Place(Order, CallId),
    Append(Order, CallId),
    Appended(CallId),
    Apply(Order, Offset, CallId),
    Applied(CallId),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Processed(Offset),
    Release,
    Unacked(CallId),
}

#[derive(Clone, Debug, Holds)]
pub enum Mo {
    Ledger(Ledger),
    Customers(Customers),
    Api(Api),
    Part(Part),
}

/// The orders table (each customer's orders by number, the last out-of-order apply), each
/// partition's stream put back in offset order, and the resequencer for the hot customer's.
pub type Ledger = Ordered<Order>;

/// The other customers (a random one each time) or the hot one; each numbers its own orders
/// and places each again until the partition has it (orders not yet acknowledged: durable).
/// A person waits for "order received" before the next; the hot customer (a program) does not.
#[derive(Clone, Debug)]
pub struct Customers {
    source: OpenLoop,
    hot: bool,
    sent: PerKey<Order>,
}

/// An order-API instance: stamps each order with its clock and picks its partition.
#[derive(Clone, Debug, Default)]
pub struct Api {
    index: u64,
    offset_us: i64,
}

/// A partition and the consumer that owns it, at least once to the orders table.
#[derive(Clone, Debug)]
pub struct Part {
    index: u64,
    hot_home: bool,
    c: Consumer<Order>,
}

/// A customer's home partition: Fibonacci hashing of its id (customer 0's is partition 0).
pub fn home(customer: u64, partitions: u64) -> u64 {
    (customer.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % partitions.max(1)
}

fn sim(setup: &Setup) -> Sim<Mo> {
    let mut sim: Sim<Mo> = Sim::new(setup, Link::constant(LINK_US));
    let id = |o: &Order| (o.customer, o.seq, o.stamp, o.placed);
    sim.add_node(Mo::Ledger(Ordered::new(setup.param("partitions") as usize, HOT, id)));
    let others = OpenLoop::poisson(setup.param("orders_per_s") as f64);
    for (source, hot) in [(others, false), (OpenLoop::poisson(0.0), true)] {
        sim.add_node(Mo::Customers(Customers { source, hot, sent: PerKey::new("place_us") }));
    }
    for index in 0..INSTANCES {
        sim.add_node(Mo::Api(Api { index, offset_us: 0 }));
    }
    let partitions = setup.param("partitions") as u64;
    for index in 0..partitions {
        let hot_home = index == home(HOT, partitions);
        sim.add_node(Mo::Part(Part { index, hot_home, c: Consumer::new("ack_us") }));
    }
    let (skew, hot_at, hot_per_s) = (setup.param("skew_us"), setup.param("hot_at_s"), setup.param("hot_per_s"));
    sim.schedule(Time::from_secs(hot_at.max(0) as u64), Fault::custom("hot-customer", hot_per_s));
    if skew > 0 {
        sim.schedule(Time::ZERO, Fault::ClockSkew { node: API + 1, offset: -skew });
    }
    // The event that just applied an order after a later one of its customer.
    sim.check("in-order", |w| match w.node::<Ledger>(LEDGER).table.late().filter(|b| b.2 == w.now) {
        Some((o, high, _)) => Err(late(o, *high)),
        None => Ok(()),
    });
    sim.check("lag-bounded", |w| {
        let bound = w.param("lag_max_s").max(0) as u64 * MICROS_PER_S;
        if let Some((_, p)) = w.all::<Part>().find(|(_, p)| p.c.log().lag_us(0, w.now) > bound) {
            let (n, s) = (p.c.lag(), p.c.log().lag_us(0, w.now) as f64 / 1e6);
            let hot = if p.hot_home { ", the hot customer's home" } else { "" };
            return Err(format!("partition {}{hot}: {n} orders behind, the oldest {s:.1} s old", p.index));
        }
        let l = w.node::<Ledger>(LEDGER);
        let Some((seq, o)) = l.held.first().filter(|(_, o)| w.now.since(o.placed) > bound) else { return Ok(()) };
        let (age, n) = (w.now.since(o.placed) as f64 / 1e6, l.held.len());
        Err(format!("the resequencer has held customer 0's order #{seq} for {age:.1} s ({n} held)"))
    });
    sim
}

impl Node for Mo {
    type Msg = Msg;
    type Timer = Timer;

    // Also on a restart: logs, commits, held orders and unacknowledged placements are durable;
    // timers, the order in hand and the consumer's position are not (it reads from its commit).
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Mo::Ledger(l) => l.drain(reorder(ctx), true, ctx, Timer::Release),
            Mo::Customers(c) => {
                c.source.start(ctx, Timer::Arrive);
                place(c.sent.restart(ctx, ack_timeout(ctx), Timer::Unacked), ctx);
            }
            Mo::Api(_) => {}
            Mo::Part(p) => p.next(None, ctx),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Mo::Customers(c) => c.sent.crash(ctx),
            Mo::Part(p) => p.c.crash(ctx),
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Mo::Api(a), Msg::Place(order, id)) => a.route(order, id, ctx),
            (Mo::Customers(c), Msg::Appended(id)) => {
                place(c.sent.acked(id, ctx, ack_timeout(ctx), Timer::Unacked), ctx)
            }
            // An idempotent producer (Kafka's producer id and sequence): a copy, by the
            // order's id (`customer << 32 | seq`, unique in the run), is acked only.
            (Mo::Part(p), Msg::Append(order, id)) => {
                p.c.append(order.customer << 32 | order.seq, order, ctx);
                ctx.send(id.node(), Msg::Appended(id));
                p.next(None, ctx);
            }
            (Mo::Part(p), Msg::Applied(id)) => {
                p.c.acked(id, ctx);
                p.next(None, ctx);
            }
            (Mo::Ledger(l), Msg::Apply(o, offset, id)) => {
                // Acknowledged once held or applied (both durable); a copy is acknowledged too.
                ctx.send(from, Msg::Applied(id));
                l.receive(from.saturating_sub(FIRST_PARTITION) as usize, offset, o, reorder(ctx), ctx, Timer::Release);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Mo::Customers(c), Timer::Arrive) => c.arrive(ctx),
            (Mo::Part(p), Timer::Processed(offset)) => {
                let apply = p.c.processed(offset, ctx, ack_timeout(ctx), Timer::Unacked);
                p.next(Some(apply), ctx);
            }
            (Mo::Ledger(l), Timer::Release) => l.drain(reorder(ctx), true, ctx, Timer::Release),
            (Mo::Customers(c), Timer::Unacked(id)) => {
                place(c.sent.timed_out(id, ctx, ack_timeout(ctx), MICROS_PER_S, Timer::Unacked), ctx)
            }
            (Mo::Part(p), Timer::Unacked(id)) => {
                let again = p.c.timed_out(id, ctx, ack_timeout(ctx), MICROS_PER_S, Timer::Unacked);
                p.next(again, ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Mo::Customers(c), Control::Param { id: "orders_per_s", value }) if !c.hot => {
                c.source.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Mo::Customers(c), Control::Custom { id: "hot-customer", value }) if c.hot => {
                c.source.set_rate_per_s(value.max(0) as f64, ctx, Timer::Arrive);
                ctx.note(format!("customer 0 places {value} orders/s"));
            }
            // A new rule or hold applies to what is held now.
            (Mo::Ledger(l), Control::Strategy(_) | Control::Param { id: "hold_ms", .. }) => {
                l.drain(reorder(ctx), true, ctx, Timer::Release)
            }
            // Other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Mo::Ledger(l) => ledger_view(l),
            Mo::Customers(c) => {
                NodeView::new(NodeKind::Client, 0, ["other customers", "customer 0 (hot)"][c.hot as usize])
                    .badge(format!("{:.0} orders/s", c.source.rate_per_s()), Tone::Neutral)
            }
            Mo::Api(a) => NodeView::new(NodeKind::Service, 1, format!("order API {}", a.index)).badge(
                format!("clock {:+.1} ms", a.offset_us as f64 / 1e3),
                [Tone::Good, Tone::Warn][(a.offset_us != 0) as usize],
            ),
            Mo::Part(p) => {
                let v = NodeView::new(NodeKind::Queue, 2, format!("partition {}", p.index));
                p.c.gauges(v.badge_if(p.hot_home, "hot customer's home", Tone::Warn))
            }
        }
    }
}

impl Customers {
    /// An order is placed now: the customer numbers it and hands it to the next instance.
    fn arrive(&mut self, ctx: &mut Ctx<Mo>) {
        self.source.on_timer(ctx, Timer::Arrive);
        let others = ctx.param("customers").max(1) as u64;
        let customer = if self.hot { HOT } else { 1 + ctx.rng().below(others) };
        let order = Order { customer, seq: self.sent.number(customer), placed: ctx.truth(), stamp: Time::ZERO };
        place(self.sent.send(ctx, customer, order, self.hot, ack_timeout(ctx), Timer::Unacked), ctx);
    }
}

/// Places each order as its call, which the partition acknowledges, through the instances
/// in turn: by the call's number (every placement, first or again, is a fresh call).
fn place(calls: impl IntoIterator<Item = (CallId, Order)>, ctx: &mut Ctx<Mo>) {
    for (id, order) in calls {
        ctx.send(API + (id.seq() % INSTANCES) as NodeId, Msg::Place(order, id));
    }
}

/// How long a sender waits for an acknowledgement before sending again (the first try).
fn ack_timeout(ctx: &Ctx<Mo>) -> Micros {
    ctx.param("ack_timeout_ms").max(1) as Micros * MICROS_PER_MS
}

impl Api {
    /// Stamps the order with this instance's clock and sends it to the partition the strategy picks.
    fn route(&mut self, mut order: Order, id: CallId, ctx: &mut Ctx<Mo>) {
        order.stamp = ctx.now();
        // For the view only: how far this clock is off.
        self.offset_us = ctx.now().micros() as i64 - ctx.truth().micros() as i64;
        let n = ctx.param("partitions").max(1) as u64;
        let key = home(order.customer, n);
        let p = match Strategy::from_id(ctx.strategy()) {
            Strategy::Random => ctx.rng().below(n),
            Strategy::Key => key,
            _ if order.customer == HOT => (key + order.seq % ctx.param("sub_keys").max(1) as u64) % n,
            _ => key,
        };
        ctx.send(FIRST_PARTITION + p as NodeId, Msg::Append(order, id));
    }
}

impl Part {
    /// Hands `apply` (an order at its offset, as a call) to the orders table, then starts on
    /// the next order if the consumer is free and there is one.
    fn next(&mut self, apply: Option<(CallId, Offset, Order)>, ctx: &mut Ctx<Mo>) {
        if let Some((id, offset, order)) = apply {
            ctx.send(LEDGER, Msg::Apply(order, offset, id));
        }
        if self.hot_home {
            ctx.gauge("hot_lag", self.c.lag() as i64);
        }
        self.c.next(ctx, ctx.param("process_us").max(0) as Micros, Timer::Processed);
    }
}

/// How the orders table puts the hot customer's orders back in order: under sub-keys by
/// its numbers, or by the API's stamps after the hold (on the table's clock).
fn reorder(ctx: &Ctx<Mo>) -> Reorder {
    match Strategy::from_id(ctx.strategy()) {
        Strategy::SubKeysSequence => Reorder::Sequence,
        Strategy::SubKeysTimestamp => Reorder::Stamp { hold: ctx.param("hold_ms").max(0) as Micros * MICROS_PER_MS },
        Strategy::Random | Strategy::Key => Reorder::None,
    }
}

fn ledger_view(l: &Ledger) -> NodeView {
    let (hot, held) = (l.table.high(HOT), l.held.len() as i64);
    let bad = l.table.late().map(|(o, high, _)| late(o, *high));
    NodeView::new(NodeKind::Database, 3, "orders table")
        .gauge("held", held, held.max(100))
        .badge(format!("customer 0 at #{hot}"), Tone::Neutral)
        .badge_if(bad.is_some(), bad.unwrap_or_default(), Tone::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::partition::md1_mean_lag;
    use crate::parts::resequencer::stamp_reorder_per_s;
    use crate::parts::testing::failed_at;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("message-ordering", strategy, seed)
    }

    fn start(recipe: Recipe) -> Sim<Mo> {
        let mut sim = sim(&Setup { spec: &SPEC, recipe });
        sim.keep_trace(false);
        sim
    }

    fn run(recipe: Recipe, secs: u64) -> Sim<Mo> {
        crate::parts::testing::run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn part(sim: &Sim<Mo>, p: u64) -> &Part {
        sim.node::<Part>(FIRST_PARTITION + p as NodeId)
    }

    fn out_of_order(sim: &Sim<Mo>) -> i64 {
        sim.metrics().counter("out_of_order")
    }

    fn p99_ms(sim: &Sim<Mo>) -> f64 {
        sim.metrics().histogram("latency_us").expect("applied").quantile(0.99) as f64 / 1e3
    }

    #[test]
    fn try_random_partitioning_reorders_and_the_hot_customer_most() {
        // Step 1. Two orders of one customer on two partitions are applied in whichever order
        // their queues let them. An ordinary customer places 1.6 orders/s, so two of its
        // orders seldom come within a queue's wait of each other, but some do within seconds;
        // the hot customer's come 1 ms apart, and hundreds a second are reordered.
        for seed in 1..=3 {
            let mut sim = start(recipe("random", seed));
            sim.run_until(Time::from_secs(5), u64::MAX);
            let before = out_of_order(&sim);
            sim.run_until(Time::from_secs(30), u64::MAX);
            let rate = (out_of_order(&sim) - before) as f64 / 25.0;
            assert!(before < 100 && rate > 200.0, "seed {seed}: {before} before 5 s, {rate:.0}/s after");
            let (at, why) = failed_at(&sim, "in-order").expect("reordered");
            assert!(at < 5.0 && !why.contains("(hot)"), "seed {seed}: an ordinary customer first: {at}: {why}");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
            let latest = sim.node::<Ledger>(LEDGER).table.late().expect("reordered").0;
            assert_eq!(latest.customer, HOT, "seed {seed}: the hot customer's, mostly");
        }
    }

    /// The other customers whose home is partition 0 with the hot one's (of 1..=1000).
    fn neighbours() -> f64 {
        (1..=1000).filter(|&c| home(c, 8) == 0).count() as f64
    }

    #[test]
    fn try_key_partitioning_keeps_order_but_the_hot_partition_falls_behind_at_lambda_minus_mu() {
        // Step 2. Partition 0 gets the hot customer's 1,000/s and its neighbours' share of the
        // other 1,600/s: λ₀ ≈ 1,200 against μ = 1/2 ms = 500. Fluid: the lag grows λ₀ − μ a
        // second (over 10 s, Poisson s.d. √12,000 ≈ 110 orders: ±4%). The order arriving x s
        // after 5 s is served at 5 + x·λ₀/μ, so its wait reaches the 5 s bound at
        // T = 5 + 5/(1 − μ/λ₀) (±0.4 s: the Poisson rate's own spread over those seconds).
        let lambda0 = 1000.0 + 1600.0 * neighbours() / 1000.0;
        let grow = lambda0 - 500.0;
        let want_t = 5.0 + 5.0 / (1.0 - 500.0 / lambda0);
        for seed in 1..=3 {
            let mut sim = start(recipe("key", seed));
            sim.run_until(Time::from_secs(10), u64::MAX);
            let lag10 = part(&sim, 0).c.lag() as f64;
            sim.run_until(Time::from_secs(20), u64::MAX);
            let grown = (part(&sim, 0).c.lag() as f64 - lag10) / 10.0;
            assert!((grown - grow).abs() <= 0.04 * grow, "seed {seed}: {grown:.0}/s, fluid {grow:.0}/s");
            assert!((1..8).all(|p| part(&sim, p).c.lag() < 50), "seed {seed}: the others keep up");
            sim.run_until(Time::from_secs(30), u64::MAX);
            assert_eq!(out_of_order(&sim), 0, "seed {seed}");
            assert!(failed_at(&sim, "in-order").is_none(), "seed {seed}");
            let (at, why) = failed_at(&sim, "lag-bounded").expect("falls behind");
            assert!((at - want_t).abs() <= 0.4, "seed {seed}: at {at:.2} s, fluid {want_t:.2} s");
            assert!(why.starts_with("partition 0, the hot customer's home"), "{why}");
        }
    }

    #[test]
    fn try_timestamps_under_skew_reorder_at_half_lambda_times_one_minus_e_to_the_minus_lambda_delta() {
        // Step 3. The hot customer's orders alternate between the instances; instance 1's
        // clock is δ behind. An order from instance 0 is overtaken exactly when the next one
        // (instance 1's) comes less than δ after it: P = 1 − e^(−λδ) for Poisson gaps, and
        // no instance-1 order is ever overtaken. So (λ/2)(1 − e^(−λδ)) a second: λ = 1,000,
        // δ = 2 ms: 432/s, 8,647 over 10–30 s (binomial and Poisson spread ≈ 70: ±4%). The
        // 100 ms hold is far above the queues' waits, so the release order is the stamps'.
        let want = 20.0 * stamp_reorder_per_s(1000.0, 2000.0);
        for seed in 1..=3 {
            let mut sim = start(recipe("sub-keys-timestamp", seed));
            sim.run_until(Time::from_secs(10), u64::MAX);
            let before = out_of_order(&sim);
            sim.run_until(Time::from_secs(30), u64::MAX);
            let got = (out_of_order(&sim) - before) as f64;
            assert!((got - want).abs() <= 0.04 * want, "seed {seed}: {got} out of order, theory {want:.0}");
            let (at, why) = failed_at(&sim, "in-order").expect("reordered");
            // The first reordered pair is released a hold (0.1 s) after the hot customer starts.
            assert!((5.1..5.2).contains(&at) && why.starts_with("customer 0 (hot)"), "seed {seed}: {at}: {why}");
            // Without the skew, stamp order is placing order: none, but the hold is paid.
            let sim = run(recipe("sub-keys-timestamp", seed).with_param("skew_us", 0), 30);
            assert_eq!((out_of_order(&sim), failed_at(&sim, "in-order")), (0, None), "seed {seed}");
            assert!(p99_ms(&sim) >= 100.0, "seed {seed}: p99 {} ms", p99_ms(&sim));
        }
    }

    #[test]
    fn random_partitions_lag_as_md1_queues() {
        // Each order picks a partition at random: Poisson thinning, so each of the 8 gets
        // Poisson arrivals at 2,600/8 = 325/s, served in a fixed 2 ms: M/D/1 at ρ = 0.65,
        // mean lag (number in the system) ρ + ρ²/(2(1 − ρ)) = 1.254. Sampled every ms over
        // 10–30 s on 8 partitions; busy periods are a few ms, so the estimate's standard
        // error is about 1.5%: ±6%. (M/M/1 would be ρ/(1 − ρ) = 1.86, 48% off.)
        // A record is committed once the orders table has acked it: Little's law adds
        // λ × the round trip (1 ms) to the lag, 0.325: 1.579.
        let want = md1_mean_lag(325.0, 0.002).expect("stable") + 325.0 * 2.0 * LINK_US as f64 / 1e6;
        for seed in 1..=2 {
            let mut sim = start(recipe("random", seed));
            sim.run_until(Time::from_secs(10), u64::MAX);
            let (mut sum, mut n) = (0.0, 0.0);
            for ms in 10_001..=30_000 {
                sim.run_until(Time::from_ms(ms), u64::MAX);
                sum += (0..8).map(|p| part(&sim, p).c.lag() as f64).sum::<f64>();
                n += 8.0;
            }
            let lag = sum / n;
            assert!((lag - want).abs() <= 0.06 * want, "seed {seed}: mean lag {lag:.3}, M/D/1 {want:.3}");
        }
    }

    #[test]
    fn try_sequence_numbers_keep_every_order_without_a_clock_or_a_hold() {
        // Step 4. Spread over 8 partitions the hot key adds 125/s to each: every partition is
        // at ρ = 0.65 and the resequencer waits only for the slowest of the in-flight orders.
        for seed in 1..=5 {
            let sim = run(recipe("sub-keys-sequence", seed), 30);
            assert_eq!((failed_at(&sim, "in-order"), failed_at(&sim, "lag-bounded")), (None, None), "seed {seed}");
            assert_eq!(out_of_order(&sim), 0, "seed {seed}");
            assert!(p99_ms(&sim) < 20.0, "seed {seed}: p99 {} ms", p99_ms(&sim));
            assert!((0..8).all(|p| part(&sim, p).c.lag() < 30), "seed {seed}");
            assert!(sim.node::<Ledger>(LEDGER).held.len() < 50, "seed {seed}");
        }
    }

    #[test]
    fn a_paused_sub_partition_holds_the_hot_customer_back_but_never_out_of_order() {
        // Partition 3's consumer stops for 1 s (a GC pause) at 10 s: the hot customer's
        // orders on it wait, and every later one waits behind them in the resequencer (about
        // 1,000 held), then all go out in order once it catches up (its 325 a second of
        // backlog drained at 500 − 325 = 175/s: about 2 s).
        for seed in 1..=3 {
            let pause = ActionKind::Fault(Fault::Pause { node: FIRST_PARTITION + 3, dur: MICROS_PER_S });
            let mut sim = start(recipe("sub-keys-sequence", seed).with_action(Time::from_secs(10), pause));
            sim.run_until(Time::from_ms(10_990), u64::MAX);
            let held = sim.node::<Ledger>(LEDGER).held.len();
            assert!((800..1200).contains(&held), "seed {seed}: {held} held at the pause's end");
            sim.run_until(Time::from_secs(16), u64::MAX);
            assert!(sim.node::<Ledger>(LEDGER).held.len() < 50, "seed {seed}: released");
            assert_eq!((out_of_order(&sim), failed_at(&sim, "in-order")), (0, None), "seed {seed}");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
        }
    }

    /// After a fault is over: nothing applied out of order, and the hot customer's orders all
    /// applied but the last few ms' (nothing stalled): none held, no partition behind.
    fn recovered(sim: &Sim<Mo>, seed: u64) {
        assert_eq!((out_of_order(sim), failed_at(sim, "in-order")), (0, None), "seed {seed}");
        let placed = sim.node::<Customers>(2).sent.numbered(HOT);
        let applied = sim.node::<Ledger>(LEDGER).table.high(HOT);
        assert!(placed - applied < 30, "seed {seed}: #{applied} of #{placed} applied");
        assert!(sim.node::<Ledger>(LEDGER).held.len() < 30, "seed {seed}");
        assert!((0..8).all(|p| part(sim, p).c.lag() < 30 && part(sim, p).c.in_flight() < 30), "seed {seed}");
    }

    /// Runs `sub-keys-sequence` with `faults` to `at` s (for a look during the fault), then to 30 s.
    fn with_faults(seed: u64, faults: &[(u64, Fault)], at: u64) -> (Sim<Mo>, Sim<Mo>) {
        let mut r = recipe("sub-keys-sequence", seed);
        for (ms, f) in faults {
            r = r.with_action(Time::from_ms(*ms), ActionKind::Fault(f.clone()));
        }
        let mut sim = start(r);
        sim.run_until(Time::from_secs(at), u64::MAX);
        let during = sim.clone();
        sim.run_until(Time::from_secs(30), u64::MAX);
        (during, sim)
    }

    #[test]
    fn a_crashed_consumer_restarts_from_its_commit_and_nothing_is_lost_or_reordered() {
        // Partition 3's node is down 10–12 s: placements to it are resent by the customers
        // until it is back, and the orders its consumer had sent the table but not seen
        // acked are read again from its committed offset: copies, dropped by the table. The
        // hot customer waits (its orders behind partition 3's in the resequencer), 2 s plus a
        // backoff of at most 1 s, under the 5 s bound: both checks hold throughout.
        let node = FIRST_PARTITION + 3;
        for seed in 1..=3 {
            let faults = [(10_000, Fault::Crash { node }), (12_000, Fault::Restart { node })];
            let (during, sim) = with_faults(seed, &faults, 12);
            assert!(during.node::<Ledger>(LEDGER).held.len() > 1000, "seed {seed}: held behind partition 3");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
            recovered(&sim, seed);
        }
    }

    #[test]
    fn a_loss_burst_is_resent_and_its_copies_dropped() {
        // 30% of every message lost for 2 s from 10 s: placements, applies and acks alike. A
        // lost one is sent again after 100, 200, 400, 800 ms…, so within about 1 s of the
        // burst's end; a lost ack makes a copy, dropped by the partition (by its id) or the
        // table (by its offset in the partition's stream). Both checks hold throughout.
        for seed in 1..=3 {
            let faults = [(10_000, Fault::LossBurst { loss: Ppm(300_000), dur: 2 * MICROS_PER_S })];
            let (during, sim) = with_faults(seed, &faults, 12);
            assert!((0..8).any(|p| part(&during, p).c.resent() > 100), "seed {seed}: resent");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
            recovered(&sim, seed);
        }
    }

    #[test]
    fn a_table_cut_off_for_3_s_delays_every_order_but_loses_none() {
        // The orders table is cut off 10–13 s: no apply reaches it, no commit moves, every
        // partition's lag grows at its rate (325/s); each consumer keeps sending what it
        // reads and resends the unacked, backing off to 1 s. After the heal all arrive within
        // that second and go out in order; the oldest waited about 3.5 s, under the 5 s bound.
        for seed in 1..=3 {
            let faults =
                [(10_000, Fault::Partition { a: vec![LEDGER], b: None, one_way: false }), (13_000, Fault::Heal)];
            let (during, sim) = with_faults(seed, &faults, 13);
            assert!((0..8).all(|p| part(&during, p).c.lag() > 500), "seed {seed}: no commit moved");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
            recovered(&sim, seed);
        }
    }

    #[test]
    fn switching_a_backlogged_key_to_sub_keys_keeps_order_behind_its_backlog() {
        // Under `key` until 10 s, partition 0 is ~3,500 behind. Switched to sequence numbers,
        // new orders go to all 8 partitions, but the resequencer holds them until the old
        // ones in partition 0 are through: order is kept, and the lag check still fails
        // until the backlog is gone (re-keying does not undo a backlog).
        let switch = ActionKind::SetStrategy { id: "sub-keys-sequence".into() };
        // The backlog holds the hot customer's orders placed up to 10 s, and they come out
        // of partition 0 at its pace (500/s, most of them hot): at 15 s the resequencer still
        // holds most of what was placed since 10 s, waiting for them.
        let mut sim = start(recipe("key", 1).with_action(Time::from_secs(10), switch));
        sim.run_until(Time::from_secs(15), u64::MAX);
        let held = sim.node::<Ledger>(LEDGER).held.len();
        assert!(held > 3000, "{held} held");
        sim.run_until(Time::from_secs(30), u64::MAX);
        assert_eq!((out_of_order(&sim), failed_at(&sim, "in-order")), (0, None));
        assert!(sim.checks().iter().any(|c| c.id == "lag-bounded" && c.violation.is_some()));
    }

    #[test]
    fn the_view_shows_the_hot_home_the_lag_and_the_reordering() {
        let sim = run(recipe("key", 1), 12);
        let frame = sim.frame(0);
        let home = &frame.nodes[FIRST_PARTITION as usize].view;
        assert!(home.gauges[0].value > 1000 && home.badges.iter().any(|b| b.text == "hot customer's home"));
        let sim = run(recipe("sub-keys-timestamp", 1), 8);
        let frame = sim.frame(0);
        let api1 = &frame.nodes[API as usize + 1].view;
        assert_eq!(api1.badges[0].text, "clock -2.0 ms");
        let ledger = &frame.nodes[LEDGER as usize].view;
        assert!(ledger.badges.iter().any(|b| b.text.starts_with("customer 0 (hot): #") && b.tone == Tone::Bad));
    }
}
