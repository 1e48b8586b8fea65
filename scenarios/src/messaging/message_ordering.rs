//! Message ordering: customers → two order-API instances (their own clocks) → P ordered partitions, one consumer each → the orders table. Random partitioning reorders a customer's orders; key partitioning keeps them in order until one customer places 1,000 a second and its partition falls behind; sub-keys spread the hot key, and the orders table puts them back in order — by sender timestamps (wrong under clock skew) or by the customer's sequence numbers.

use crate::parts::arrivals::OpenLoop;
use crate::parts::partition::{Offset, Partition};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;
use std::collections::{BTreeMap, BTreeSet};

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
            what_can_go_wrong: "Partitions are processed in parallel, so two orders of one customer on different \
                partitions are applied in whichever order their queues let them: random partitioning reorders. Keying \
                by customer keeps a customer on one partition, in order — until one customer places more orders than \
                one consumer can process (1,000/s at 2 ms each is ρ = 2): its partition's lag grows without end and \
                every customer hashed beside it waits too. Spreading the hot key over sub-keys needs a resequencer \
                where the orders are applied; ordering by the senders' timestamps trusts clocks, and a clock a few ms \
                off — more than the gap between two orders — applies them in the wrong order. The model: Poisson \
                customers; orders reach an API instance in turn (hot customer: alternating) which stamps its own \
                clock time; constant link latency (a link keeps its order); a partition's consumer takes a fixed time \
                per order, committing each after it hands it to the orders table; only customer 0's key is salted.",
            what_you_sacrifice: "Sub-keys give up the one-partition guarantee: order has to be rebuilt downstream, \
                and a resequencer holds orders back — for its whole hold window with timestamps, or behind the \
                slowest sub-partition with sequence numbers (one lost order stalls the customer until it is resent). \
                Sequence numbers need one numbering authority per key (the customer's session, a per-key counter).",
            at_10x: "At 10,000 orders/s from one customer, the in-order step itself (applying to the customer's \
                row) becomes the serial bottleneck: resequencing only parallelises the work around it. Then the \
                promise must shrink to what the business needs (per account, per order's lifecycle) as true sub-keys.",
            resembles: "Kafka's key partitioning (murmur2 of the key), salted keys for hot partitions, the Resequencer \
                of Enterprise Integration Patterns, Kafka's idempotent producer sequence numbers, Pulsar Key_Shared, \
                SQS FIFO message groups, and chat systems ordering messages by server-assigned sequence, not client clocks.",
            try_this: &[
                "Play `random`: no partition falls behind, but from 5 s the hot customer's orders are applied out of \
                 order, hundreds a second; `in-order` fails at about 5 s naming customer 0.",
                "Play `key`: every customer's orders stay in order, but partition 0 (the hot customer's) gets about \
                 1,200 orders/s against the 500 its consumer can do: its lag grows about 700 a second and \
                 `lag-bounded` fails at about 13 s.",
                "Play `sub-keys-timestamp`: API instance 1's clock is 2 ms behind, more than the 1 ms between the hot \
                 customer's orders, so (λ/2)(1 − e^(−λδ)) ≈ 430 orders a second are applied out of order. Set \
                 `skew_us` to 0: none are, but every hot order still waits out the 100 ms hold (`hold_ms`).",
                "Play `sub-keys-sequence`: ordered by the customer's own numbers, no clock involved: nothing out of \
                 order, no partition lag beyond a few orders (M/D/1 at ρ = 0.65), p99 latency a few ms.",
            ],
        },
    },
    params: &[
        ParamSpec::live("orders_per_s", "Other customers' orders", "orders/s", 0..=100_000, 1600, "All the other customers together (Poisson)."),
        ParamSpec::live("customers", "Other customers", "", 1..=100_000, 1000, "Each order is from one of them at random."),
        ParamSpec::live("process_us", "Work per order", "µs", 10..=1_000_000, 2000, "Fixed time a consumer takes per order.").step(10),
        ParamSpec::live("sub_keys", "Sub-keys", "", 1..=64, 8, "The hot key's sub-keys: order n goes to home + (n mod this)."),
        ParamSpec::live("hold_ms", "Resequencer hold", "ms", 0..=10_000, 100, "Timestamps: an order waits this long past its stamp."),
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
    faults: &[FaultSpec::global("hot-customer", "Hot customer", "Customer 0 places this many orders a second \
        from now on (0: stops).").value("orders/s", 0..=100_000, 1000)],
    checks: &[
        CheckSpec::new("in-order", "Per-customer order preserved", "Each order applied to the orders table comes \
            after every order of its customer applied before it. Names the customer and both orders."),
        CheckSpec::new("lag-bounded", "Every order applied in time", "No order waits longer than the lag bound: \
            neither the oldest not yet processed in a partition nor one held by the resequencer. Names which."),
    ],
    metrics: &[
        MetricSpec::new("out_of_order", "Out-of-order applies", "orders", Measure::Count("out_of_order")),
        MetricSpec::new("hot_lag", "Hot partition lag", "orders", Measure::Gauge("hot_lag")),
        MetricSpec::new("hot_lag_s", "Hot partition lag (time)", "us", Measure::Gauge("hot_lag_us")),
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
/// The hot customer's id; the consumer group (one).
const HOT: u64 = 0;
const GROUP: usize = 0;
/// Every link's latency: constant, so a link delivers in the order sent (as a TCP connection).
const LINK_US: Micros = 500;

/// An order: its customer, the customer's own number for it (from 1), when it was placed
/// (true time: for latency only) and the API instance's clock reading when it stamped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    customer: u64,
    seq: u64,
    placed: Time,
    stamp: Time,
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Place(Order),
    Append(Order),
    Apply(Order),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Processed(Offset),
    Release,
}

#[derive(Clone, Debug, Holds)]
pub enum Mo {
    Ledger(Ledger),
    Customers(Customers),
    Api(Api),
    Part(Part),
}

/// The orders table: each customer's highest order number applied; the resequencer's held
/// orders of the hot customer (by number, and by stamp); the last out-of-order apply.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    high: KeyTable<u64>,
    held: BTreeMap<u64, Order>,
    by_stamp: BTreeSet<(Time, u64)>,
    release_at: Option<Time>,
    bad: Option<(Order, u64, Time)>,
    out_of_order: u64,
}

/// Customers placing orders: the others (a random one each time) or the hot one; each numbers
/// its own orders, and sends them to the API instances in turn.
#[derive(Clone, Debug)]
pub struct Customers {
    source: OpenLoop,
    hot: bool,
    seqs: KeyTable<u64>,
    turn: u64,
}

/// An order-API instance: stamps each order with its clock and picks its partition.
#[derive(Clone, Debug, Default)]
pub struct Api {
    index: u64,
    offset_us: i64,
}

/// A partition and the consumer that owns it (log durable, the order in hand volatile).
#[derive(Clone, Debug)]
pub struct Part {
    index: u64,
    log: Partition<Order>,
    busy: bool,
    hot_home: bool,
}

/// A customer's home partition: Fibonacci hashing of its id (customer 0's is partition 0).
pub fn home(customer: u64, partitions: u64) -> u64 {
    (customer.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % partitions.max(1)
}

fn sim(setup: &Setup) -> Sim<Mo> {
    let mut sim: Sim<Mo> = Sim::new(setup, Link::constant(LINK_US));
    sim.add_node(Mo::Ledger(Ledger::default()));
    let others = OpenLoop::poisson(setup.param("orders_per_s") as f64);
    for (source, hot) in [(others, false), (OpenLoop::poisson(0.0), true)] {
        sim.add_node(Mo::Customers(Customers { source, hot, seqs: KeyTable::default(), turn: 0 }));
    }
    for index in 0..INSTANCES {
        sim.add_node(Mo::Api(Api { index, offset_us: 0 }));
    }
    let partitions = setup.param("partitions") as u64;
    for index in 0..partitions {
        let hot_home = index == home(HOT, partitions);
        sim.add_node(Mo::Part(Part { index, log: Partition::new(1), busy: false, hot_home }));
    }
    let skew = setup.param("skew_us");
    if skew > 0 {
        sim.schedule(Time::ZERO, Fault::ClockSkew { node: API + 1, offset: -skew });
    }
    let (hot_at, hot_per_s) = (setup.param("hot_at_s"), setup.param("hot_per_s"));
    sim.schedule(Time::from_secs(hot_at.max(0) as u64), Fault::custom("hot-customer", hot_per_s));
    sim.check("in-order", |w| {
        let b = w.node::<Ledger>(LEDGER).bad.filter(|b| b.2 == w.now);
        b.map_or(Ok(()), |(o, high, _)| {
            let who = if o.customer == HOT { " (hot)" } else { "" };
            Err(format!("customer {}{who}: order #{} applied after #{high}", o.customer, o.seq))
        })
    });
    sim.check("lag-bounded", |w| {
        let bound = w.param("lag_max_s").max(0) as u64 * MICROS_PER_S;
        for (_, p) in w.all::<Part>() {
            let lag_us = p.log.lag_us(GROUP, w.now);
            if lag_us > bound {
                let (n, s) = (p.log.lag(GROUP), lag_us as f64 / 1e6);
                let hot = if p.hot_home { ", the hot customer's home" } else { "" };
                return Err(format!("partition {}{hot}: {n} orders behind, the oldest {s:.1} s old", p.index));
            }
        }
        let l = w.node::<Ledger>(LEDGER);
        match l.held.values().next().map(|o| (o.seq, w.now.since(o.placed))) {
            Some((seq, age)) if age > bound => Err(format!(
                "the resequencer has held customer 0's order #{seq} for {:.1} s ({} held; #{} applied last)",
                age as f64 / 1e6,
                l.held.len(),
                l.high.get(HOT).copied().unwrap_or(0)
            )),
            _ => Ok(()),
        }
    });
    sim
}

impl Node for Mo {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Mo::Ledger(l) => l.drain(ctx),
            Mo::Customers(c) => c.source.start(ctx, Timer::Arrive),
            Mo::Api(_) => {}
            Mo::Part(p) => p.next(ctx),
        }
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Mo::Api(a), Msg::Place(order)) => a.route(order, ctx),
            (Mo::Part(p), Msg::Append(order)) => {
                p.log.append(order, ctx.truth());
                p.gauges(ctx);
                p.next(ctx);
            }
            (Mo::Ledger(l), Msg::Apply(order)) => l.receive(order, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Mo::Customers(c), Timer::Arrive) => c.place(ctx),
            (Mo::Part(p), Timer::Processed(offset)) => p.processed(offset, ctx),
            (Mo::Ledger(l), Timer::Release) => {
                l.release_at = None;
                l.drain(ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        match self {
            // The held orders are a durable table; the timer that releases them is not.
            Mo::Ledger(l) => l.release_at = None,
            Mo::Part(p) => p.busy = false,
            Mo::Customers(_) | Mo::Api(_) => {}
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
                l.release_at = None;
                l.drain(ctx);
            }
            // Other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Mo::Ledger(l) => l.view(),
            Mo::Customers(c) => {
                let (label, tone) = if c.hot { ("customer 0 (hot)", Tone::Warn) } else { ("other customers", Tone::Neutral) };
                let rate = c.source.rate_per_s();
                NodeView::new(NodeKind::Client, 0, label).badge(format!("{rate:.0} orders/s"), if rate > 0.0 { tone } else { Tone::Neutral })
            }
            Mo::Api(a) => {
                let off = a.offset_us as f64 / 1e3;
                NodeView::new(NodeKind::Service, 1, format!("order API {}", a.index))
                    .badge(format!("clock {off:+.1} ms"), if a.offset_us == 0 { Tone::Good } else { Tone::Warn })
            }
            Mo::Part(p) => {
                let lag = p.log.lag(GROUP) as i64;
                NodeView::new(NodeKind::Queue, 2, format!("partition {}", p.index))
                    .gauge("lag", lag, lag.max(100))
                    .badge_if(p.hot_home, "hot customer's home", Tone::Warn)
                    .badge(format!("end {} · committed {}", p.log.end(), p.log.committed(GROUP)), Tone::Neutral)
            }
        }
    }
}

impl Customers {
    /// An order is placed now: the customer numbers it and hands it to the next instance.
    fn place(&mut self, ctx: &mut Ctx<Mo>) {
        self.source.on_timer(ctx, Timer::Arrive);
        let others = ctx.param("customers").max(1) as u64;
        let customer = if self.hot { HOT } else { 1 + ctx.rng().below(others) };
        let seq = self.seqs.get(customer).copied().unwrap_or(0) + 1;
        self.seqs.insert(customer, seq);
        let to = API + (self.turn % INSTANCES) as NodeId;
        self.turn += 1;
        ctx.send(to, Msg::Place(Order { customer, seq, placed: ctx.truth(), stamp: Time::ZERO }));
    }
}

impl Api {
    /// Stamps the order with this instance's clock and sends it to the partition the strategy picks.
    fn route(&mut self, mut order: Order, ctx: &mut Ctx<Mo>) {
        order.stamp = ctx.now();
        // For the view only: how far this clock is off.
        self.offset_us = ctx.now().micros() as i64 - ctx.truth().micros() as i64;
        let n = ctx.param("partitions").max(1) as u64;
        let key = home(order.customer, n);
        let p = match Strategy::from_id(ctx.strategy()) {
            Strategy::Random => ctx.rng().below(n),
            Strategy::Key => key,
            Strategy::SubKeysTimestamp | Strategy::SubKeysSequence if order.customer == HOT => {
                (key + order.seq % ctx.param("sub_keys").max(1) as u64) % n
            }
            Strategy::SubKeysTimestamp | Strategy::SubKeysSequence => key,
        };
        ctx.send(FIRST_PARTITION + p as NodeId, Msg::Append(order));
    }
}

impl Part {
    /// Starts on the oldest order not committed, if the consumer is free and there is one.
    fn next(&mut self, ctx: &mut Ctx<Mo>) {
        let at = self.log.committed(GROUP);
        if !self.busy && at < self.log.end() {
            self.busy = true;
            ctx.set_timer(ctx.param("process_us").max(0) as Micros, Timer::Processed(at));
        }
    }

    /// The order at `offset` is processed: handed to the orders table, then committed.
    fn processed(&mut self, offset: Offset, ctx: &mut Ctx<Mo>) {
        let order = self.log.get(offset).expect("appended").value;
        ctx.send(LEDGER, Msg::Apply(order));
        self.log.commit(GROUP, offset + 1, ctx.truth());
        self.busy = false;
        self.gauges(ctx);
        self.next(ctx);
    }

    fn gauges(&self, ctx: &mut Ctx<Mo>) {
        if self.hot_home {
            ctx.gauge("hot_lag", self.log.lag(GROUP) as i64);
            ctx.gauge("hot_lag_us", self.log.lag_us(GROUP, ctx.truth()) as i64);
        }
    }
}

impl Ledger {
    /// An order reaches the table: the hot customer's, under sub-keys, waits in the
    /// resequencer; every other is applied as it comes.
    fn receive(&mut self, order: Order, ctx: &mut Ctx<Mo>) {
        match Strategy::from_id(ctx.strategy()) {
            Strategy::SubKeysTimestamp | Strategy::SubKeysSequence if order.customer == HOT => {
                self.held.insert(order.seq, order);
                self.by_stamp.insert((order.stamp, order.seq));
                self.drain(ctx);
            }
            _ => self.apply(order, ctx),
        }
    }

    /// Applies what the resequencer may release now: by number, every order up to the next
    /// one due; by stamp, every order whose stamp is the hold old on this clock; without one
    /// (after a switch), everything, in number order.
    fn drain(&mut self, ctx: &mut Ctx<Mo>) {
        let hold = ctx.param("hold_ms").max(0) as Micros * MICROS_PER_MS;
        loop {
            let next = match Strategy::from_id(ctx.strategy()) {
                Strategy::SubKeysSequence => {
                    let due = self.high.get(HOT).copied().unwrap_or(0) + 1;
                    self.held.keys().next().copied().filter(|&seq| seq <= due)
                }
                Strategy::SubKeysTimestamp => match self.by_stamp.first() {
                    Some(&(stamp, seq)) if stamp.plus(hold) <= ctx.now() => Some(seq),
                    Some(&(stamp, _)) => {
                        let due = stamp.plus(hold);
                        if self.release_at.is_none_or(|at| due < at) {
                            self.release_at = Some(due);
                            ctx.set_timer(due.since(ctx.now()), Timer::Release);
                        }
                        None
                    }
                    None => None,
                },
                Strategy::Random | Strategy::Key => self.held.keys().next().copied(),
            };
            let Some(seq) = next else { break };
            let order = self.held.remove(&seq).expect("held");
            self.by_stamp.remove(&(order.stamp, seq));
            self.apply(order, ctx);
        }
        ctx.gauge("held", self.held.len() as i64);
    }

    /// Writes the order to its customer's row: out of order if a later one is there already.
    fn apply(&mut self, order: Order, ctx: &mut Ctx<Mo>) {
        let high = self.high.get(order.customer).copied().unwrap_or(0);
        if order.seq < high {
            self.out_of_order += 1;
            self.bad = Some((order, high, ctx.truth()));
            ctx.count("out_of_order", 1);
        } else {
            self.high.insert(order.customer, order.seq);
        }
        ctx.count("applied", 1);
        ctx.observe("latency_us", ctx.truth().since(order.placed));
    }

    fn view(&self) -> NodeView {
        let hot = self.high.get(HOT).copied().unwrap_or(0);
        let held = self.held.len() as i64;
        NodeView::new(NodeKind::Database, 3, "orders table")
            .gauge("held", held, held.max(100))
            .badge(format!("customer 0 at #{hot}"), Tone::Neutral)
            .badge_if(self.out_of_order > 0, format!("{} out of order", self.out_of_order), Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::partition::md1_mean_lag;
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
    fn explore() {
        for st in ["random", "key", "sub-keys-timestamp", "sub-keys-sequence"] {
            let sim = run(recipe(st, 1), 30);
            let lags: Vec<u64> = (0..8).map(|p| part(&sim, p).log.lag(GROUP)).collect();
            eprintln!(
                "{st}: ooo {} applied {} p99 {:.1} ms lags {lags:?} in-order {:?} lag {:?}",
                out_of_order(&sim),
                sim.metrics().counter("applied"),
                p99_ms(&sim),
                failed_at(&sim, "in-order"),
                failed_at(&sim, "lag-bounded")
            );
        }
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
            assert!(at < 5.3 && why.contains("applied after"), "seed {seed}: {at}: {why}");
            assert!(failed_at(&sim, "lag-bounded").is_none(), "seed {seed}");
            let latest = sim.node::<Ledger>(LEDGER).bad.expect("reordered").0;
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
            let lag10 = part(&sim, 0).log.lag(GROUP) as f64;
            sim.run_until(Time::from_secs(20), u64::MAX);
            let grown = (part(&sim, 0).log.lag(GROUP) as f64 - lag10) / 10.0;
            assert!((grown - grow).abs() <= 0.04 * grow, "seed {seed}: {grown:.0}/s, fluid {grow:.0}/s");
            assert!((1..8).all(|p| part(&sim, p).log.lag(GROUP) < 50), "seed {seed}: the others keep up");
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
        let want = 20.0 * 500.0 * (1.0 - libm::exp(-2.0));
        for seed in 1..=3 {
            let mut sim = start(recipe("sub-keys-timestamp", seed));
            sim.run_until(Time::from_secs(10), u64::MAX);
            let before = out_of_order(&sim);
            sim.run_until(Time::from_secs(30), u64::MAX);
            let got = (out_of_order(&sim) - before) as f64;
            assert!((got - want).abs() <= 0.04 * want, "seed {seed}: {got} out of order, theory {want:.0}");
            let (at, why) = failed_at(&sim, "in-order").expect("reordered");
            assert!((5.0..5.1).contains(&at) && why.starts_with("customer 0 (hot)"), "seed {seed}: {at}: {why}");
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
        let want = md1_mean_lag(325.0, 0.002).expect("stable");
        for seed in 1..=2 {
            let mut sim = start(recipe("random", seed));
            sim.run_until(Time::from_secs(10), u64::MAX);
            let (mut sum, mut n) = (0.0, 0.0);
            for ms in 10_001..=30_000 {
                sim.run_until(Time::from_ms(ms), u64::MAX);
                sum += (0..8).map(|p| part(&sim, p).log.lag(GROUP) as f64).sum::<f64>();
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
            assert!((0..8).all(|p| part(&sim, p).log.lag(GROUP) < 30), "seed {seed}");
            assert!(sim.node::<Ledger>(LEDGER).held.len() < 50, "seed {seed}");
        }
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
        assert!(ledger.badges.iter().any(|b| b.text.ends_with("out of order") && b.tone == Tone::Bad));
    }
}
