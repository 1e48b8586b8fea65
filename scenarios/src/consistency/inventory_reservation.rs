//! Inventory reservation: a flash sale — buyers rush a limited stock through several app instances sharing one database; read-check-write oversells, a row lock serialises, versions conflict and retry, a conditional decrement sells exactly the stock, and reservations with a TTL hand abandoned carts' units back.

use crate::parts::arrivals::OpenLoop;
use crate::parts::degraded::FaultWindow;
use crate::parts::pool::{Acquire, Pool, Seat};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::store::Store;
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::BTreeMap;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "inventory-reservation",
        title: "Inventory reservation (flash sale)",
        category: "Transactions & consistency",
        seeds: &["S1-P#6", "S4#03", "S2#24", "S1#13"],
        summary: "150 buyers a second rush a drop of 100 units every 10 s through 4 app instances and one database. \
                  Reading the stock and writing it back oversells; a row lock is safe but serialises on its hold time; \
                  a conditional decrement sells exactly the stock; only a reservation with a TTL gives abandoned carts' \
                  units back — and then a payment after the TTL must be refused or re-reserved.",
        note: Note {
            what_can_go_wrong: "Two requests read 'stock 1', both write 'stock 0' and both sell: with buyers arriving at \
                λ and W from read to write, every unit is sold about 1 + λW times (150/s × 3 ms: half again the stock; \
                a database slowed by 20 ms: four and a half times). A lock held across a network round trip caps sales \
                at 1 / hold. Units decremented into carts that are abandoned never sell; a TTL returns them, and a \
                payment arriving after it pays for a unit already sold again. The model: Poisson buyers who buy one \
                unit or are told sold out or busy (and do not retry); each statement runs when it reaches the database \
                and its answer comes back the statement time later; one row (and row lock) per drop.",
            what_you_sacrifice: "The lock: throughput ≤ 1 / hold and a queue of waiters that time out. Versions: \
                conflicts and retries that grow with contention, and buyers turned away while stock remains. The \
                conditional decrement: nothing at the database, but no read-modify-write logic in the app. The TTL: a \
                reservation row and timer per cart, and late payers refused (or refunded) when the stock is gone.",
            at_10x: "At 500,000 checkouts the single stock row is the bottleneck of every strategy: a row lock tops out \
                at a few hundred sales a second whatever the fleet size, and even a conditional decrement serialises \
                on the row. Real flash sales split the stock into buckets (several rows, or Redis counters decremented \
                by a Lua script), queue buyers in front of the database, and reserve in memory before writing orders.",
            resembles: "UPDATE items SET stock = stock − 1 WHERE id = ? AND stock > 0 (checking the row count), \
                SELECT … FOR UPDATE, JPA @Version / Rails lock_version optimistic locking, Redis DECR with a Lua \
                check, Ticketmaster and sneaker-drop cart holds that expire after minutes, Shopify's checkout \
                reservations.",
            try_this: &[
                "Play `read-check-write`: the first drop sells about half again its 100 units, the second (database \
                 slowed by 20 ms at 10 s) over four times: `no-oversell` names the drop and by how many.",
                "Switch to `pessimistic-lock`: never oversold, but from 10 s each lock is held over 20 ms: under 45 \
                 sales a second, waiters time out after 1 s and checkout p99 reaches that second.",
                "Play `atomic-decrement`: exactly 100 units per drop at full speed, but the ~30% abandoned carts keep \
                 theirs: fewer than 80 of each drop are paid. `reservation-ttl` sells them again after the TTL.",
                "Play `ttl-no-recheck`: payments slowed past the 5 s TTL at 20 s are accepted for units already sold \
                 again; `reservation-ttl` re-reserves or refuses them and holds.",
            ],
        },
    },
    params: &[
        ParamSpec::live("buyers", "Buyers", "per s", 1..=50_000, 150, "Poisson checkouts, each for one unit."),
        ParamSpec::live("stock", "Stock per drop", "units", 1..=100_000, 100, "A new item drops every 10 s."),
        ParamSpec::setup("instances", "App instances", "", 1..=32, 4, "Each checkout goes to a random one."),
        ParamSpec::live("db_ms", "Statement time", "ms", 0..=1000, 2, "Each answer comes back this long after."),
        ParamSpec::live("abandon_pct", "Abandoned carts", "%", 0..=100, 30, "Reserved, never paid."),
        ParamSpec::live("pay_ms", "Time to pay", "ms", 100..=60_000, 2000, "Mean (exponential).").step(100),
        ParamSpec::live("ttl_ms", "Reservation TTL", "ms", 100..=60_000, 5000, "Unpaid, the unit goes back.").step(100),
        ParamSpec::live("max_retries", "Optimistic retries", "", 0..=20, 3, "After a version conflict."),
        ParamSpec::live("lock_wait_ms", "Lock wait timeout", "ms", 10..=10_000, 1000, "Then 'busy'.").step(10),
    ],
    strategies: &[
        StrategySpec::naive("read-check-write", "Read, check, write",
            "Reads the stock, and if positive writes back one less: two concurrent reads both sell."),
        StrategySpec::fixed("pessimistic-lock", "Pessimistic lock (FOR UPDATE)",
            "Reads with SELECT … FOR UPDATE, so the row stays locked until the write commits."),
        StrategySpec::fixed("optimistic-version", "Optimistic version + retries",
            "Writes only if the row's version is still the one read; a conflict re-reads, a few times."),
        StrategySpec::fixed("atomic-decrement", "Atomic conditional decrement",
            "One statement: UPDATE … SET stock = stock − 1 WHERE stock > 0."),
        StrategySpec::fixed("reservation-ttl", "Reservation with a TTL",
            "The decrement also writes a reservation that expires (the unit goes back); a late payment re-reserves."),
        StrategySpec::naive("ttl-no-recheck", "TTL, payment not rechecked",
            "As reservation-ttl, but a payment is accepted even after its reservation expired."),
    ],
    faults: &[
        FaultSpec::global("db-slow", "Slow database", "Every answer from the database takes this much longer.")
            .value("extra ms", 0..=10_000, 20),
        FaultSpec::global("slow-payments", "Slow payments", "Every payment reaches the shop this much later.")
            .value("extra ms", 0..=60_000, 6000),
    ],
    checks: &[
        CheckSpec::new("no-oversell", "Sold ≤ stock", "No drop ever has more units promised (in carts or paid) than \
            it has."),
        CheckSpec::new("orders-fulfilled", "Every confirmed order is fulfilled", "No payment is confirmed for a \
            drop whose units are all paid for already."),
    ],
    metrics: &[
        MetricSpec::new("sold", "Units taken", "/s", Measure::Rate("taken")),
        MetricSpec::new("checkout_p99", "Checkout p99", "us", Measure::Quantile("checkout_us", 0.99)),
        MetricSpec::new("conflicts", "Version conflicts", "/s", Measure::Rate("conflicts")),
        MetricSpec::new("busy", "Buyers turned away busy", "/s", Measure::Rate("busy")),
        MetricSpec::new("stock", "Stock (current drop)", "units", Measure::Gauge("stock")),
        MetricSpec::new("unpaid", "Units in unpaid carts", "units", Measure::Gauge("unpaid")),
        MetricSpec::new("oversold", "Units oversold", "", Measure::Count("oversold")),
        MetricSpec::new("refused", "Late payments refused", "", Measure::Count("refused")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { ReadCheckWrite, Pessimistic, Optimistic, Atomic, Ttl, TtlNoRecheck });

const DB: NodeId = 0;
const CROWD: NodeId = 1;
const FIRST_INSTANCE: NodeId = 2;
/// A new item drops (with `stock` units) every 10 s.
const DROP_US: Micros = 10 * MICROS_PER_S;
/// Optimistic retries: 1 ms, 2 ms, 4 ms… (at most 50 ms), full jitter; the count is `max_retries`.
const RETRY: RetryPolicy = RetryPolicy::new(3, MICROS_PER_MS, 50 * MICROS_PER_MS, Jitter::Full);

fn ms(v: i64) -> Micros {
    v.max(0) as u64 * MICROS_PER_MS
}

/// One checkout, carried through every message as a request's context is: the order, the
/// drop it buys from, when the buyer clicked (buyer's clock), tries so far, whether it holds a
/// reservation with a TTL, and the instance serving it.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    order: u64,
    item: u32,
    t0: Time,
    tries: u32,
    ttl: bool,
    via: NodeId,
}

/// How a step ended, from the database to the instance and on to the buyer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reserved,
    SoldOut,
    Conflict,
    LockTimeout,
    Confirmed,
    Refused,
}

// Buyer → instance: `Checkout`, `Pay`. Instance → database: a plain `Read`, a `Lock` (FOR
// UPDATE, answered once granted), a `Write` of the value computed (committing the lock's
// transaction if it holds a seat), a `Rollback`, a `Cas` on a version, a conditional
// `Decrement` (with a reservation TTL or not), a `Settle` (the payment; `true`: recheck the
// reservation). Database → instance: the `Stock` read (value, version, lock seat); `Done`.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Checkout(Job),
    Pay(Job),
    Read(Job),
    Lock(Job),
    Write(Job, i64, Option<Seat>),
    Rollback(u32, Seat),
    Cas(Job, u64, i64),
    Decrement(Job, Option<Micros>),
    Settle(Job, bool),
    Stock(Job, i64, u64, Option<Seat>),
    Done(Job, Outcome),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Pay(Job),
    Retry(Job),
    Drop,
    LockWait(u32, Seat),
    Expire(u64),
}

#[derive(Clone, Debug, Holds)]
pub enum Ir {
    Db(Db),
    Crowd(Crowd),
    Instance(Instance),
}

/// A drop's ground truth: its units, those promised (held by a cart or paid), those paid.
#[derive(Clone, Debug, Default)]
pub struct Sale {
    units: i64,
    held: i64,
    paid: i64,
}

/// The database: stock per item (versioned), row locks, reservations (order → item) with
/// TTLs; `sales` is the truth per drop; `over`/`unfulfilled`: the latest broken promise, for the checks.
#[derive(Clone, Debug, Default)]
pub struct Db {
    stock: Store<u32, i64>,
    locks: BTreeMap<u32, Pool<Job>>,
    reservations: Store<u64, u32>,
    sales: Vec<Sale>,
    slow_ms: i64,
    over: Option<(String, Time)>,
    unfulfilled: Option<(String, Time)>,
}

/// Every buyer: checkouts arriving, paid (or abandoned) after a while.
#[derive(Clone, Debug)]
pub struct Crowd {
    arrivals: OpenLoop,
    instances: u32,
    orders: u64,
    in_flight: u64,
    slow_pay_ms: i64,
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u32,
    strategy: Strategy,
    in_flight: u64,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    // Buyers reach the instances over the internet; the instances sit next to the database.
    let mut sim: Sim<Ir> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 5_000, hi: 30_000 }));
    assert_eq!(sim.add_node(Ir::Db(Db::default())), DB);
    let instances = setup.param("instances") as u32;
    let arrivals = OpenLoop::poisson(setup.param("buyers") as f64);
    assert_eq!(sim.add_node(Ir::Crowd(Crowd { arrivals, instances, orders: 0, in_flight: 0, slow_pay_ms: 0 })), CROWD);
    let strategy = Strategy::from_id(setup.strategy());
    for index in 0..instances {
        let id = sim.add_node(Ir::Instance(Instance { index, strategy, in_flight: 0 }));
        sim.net().set_link(id, DB, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    }
    // The plan: the second drop meets a slow database, the third slow payments (past the TTL).
    FaultWindow::secs(10, 4).custom(&mut sim, "db-slow", None, 20, 0);
    FaultWindow::secs(20, 10).custom(&mut sim, "slow-payments", None, 6000, 0);
    let now = |broken: &Option<(String, Time)>, now: Time| match broken {
        Some((why, at)) if *at == now => Err(why.clone()),
        _ => Ok(()),
    };
    sim.check("no-oversell", move |w| now(&w.node::<Db>(DB).over, w.now));
    sim.check("orders-fulfilled", move |w| now(&w.node::<Db>(DB).unfulfilled, w.now));
    Box::new(sim)
}

impl Node for Ir {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ir::Crowd(c) => c.arrivals.start(ctx, Timer::Arrive),
            Ir::Db(d) if d.sales.is_empty() => d.new_drop(ctx),
            // Restarted: the next drop at its time (those missed while down get no stock).
            Ir::Db(_) => drop(ctx.set_timer(DROP_US - ctx.now().micros() % DROP_US, Timer::Drop)),
            Ir::Instance(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ir::Instance(i), Msg::Checkout(job)) => i.checkout(Job { via: ctx.me(), ..job }, ctx),
            (Ir::Instance(i), Msg::Pay(job)) => {
                i.in_flight += 1;
                ctx.send(DB, Msg::Settle(Job { via: ctx.me(), ..job }, i.strategy == Strategy::Ttl));
            }
            (Ir::Instance(i), Msg::Stock(job, value, version, seat)) => i.stock(job, value, version, seat, ctx),
            (Ir::Instance(i), Msg::Done(job, outcome)) => i.done(job, outcome, ctx),
            (Ir::Db(d), Msg::Read(job)) => {
                let (value, version) = d.read(job.item, ctx.now());
                d.answer(from, Msg::Stock(job, value, version, None), ctx);
            }
            (Ir::Db(d), Msg::Lock(job)) => d.lock(job, ctx),
            (Ir::Db(d), Msg::Write(job, value, seat)) => d.write(job, value, seat, ctx),
            (Ir::Db(d), Msg::Rollback(item, seat)) => d.unlock(item, seat, ctx),
            (Ir::Db(d), Msg::Cas(job, version, value)) => {
                let ok = d.stock.cas(job.item, version, value, ctx.now()).is_ok();
                d.took(job, ok, Outcome::Conflict, ctx);
            }
            (Ir::Db(d), Msg::Decrement(job, ttl)) => d.decrement(job, ttl, ctx),
            (Ir::Db(d), Msg::Settle(job, recheck)) => d.settle(job, recheck, ctx),
            (Ir::Crowd(c), Msg::Done(job, outcome)) => c.done(job, outcome, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ir::Crowd(c), Timer::Arrive) => c.arrive(ctx),
            (Ir::Crowd(c), Timer::Pay(job)) => {
                let to = FIRST_INSTANCE + ctx.rng().below(c.instances as u64) as NodeId;
                ctx.send(to, Msg::Pay(job));
            }
            (Ir::Instance(_), Timer::Retry(job)) => ctx.send(DB, Msg::Read(job)),
            (Ir::Db(d), Timer::Drop) => d.new_drop(ctx),
            (Ir::Db(d), Timer::LockWait(item, seat)) => {
                if let Some(job) = d.locks.get_mut(&item).and_then(|l| l.expire(seat)) {
                    d.answer(job.via, Msg::Done(job, Outcome::LockTimeout), ctx);
                }
            }
            (Ir::Db(d), Timer::Expire(order)) => d.reclaim(order, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // A restarted database has no locks (their transactions are lost, their buyers never
        // answered); stock and reservations are durable. Instances and buyers keep nothing.
        match self {
            Ir::Db(d) => {
                let lost: usize = d.locks.values_mut().map(|l| l.clear(ctx).len()).sum();
                ctx.note(format!("{lost} transactions lost with their locks"));
            }
            Ir::Instance(i) => i.in_flight = 0,
            Ir::Crowd(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ir::Instance(i), Control::Strategy(id)) => i.strategy = Strategy::from_id(id),
            (Ir::Db(d), Control::Custom { id: "db-slow", value }) => d.slow_ms = value,
            (Ir::Crowd(c), Control::Custom { id: "slow-payments", value }) => c.slow_pay_ms = value,
            (Ir::Crowd(c), Control::Param { id: "buyers", value }) => {
                c.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            // Every node hears every change; the other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ir::Db(d) => {
                let (sale, item) = (d.sales.last().cloned().unwrap_or_default(), d.sales.len().max(1) as u32 - 1);
                let over: i64 = d.sales.iter().map(|s| (s.held - s.units).max(0)).sum();
                let (held, waiting) = d.locks.get(&item).map_or((0, 0), |l| (l.held(), l.queued()));
                NodeView::new(NodeKind::Database, 2, "database")
                    .gauge("stock", d.read(item, Time(0)).0, sale.units) // stock rows never expire
                    .gauge("units paid", sale.paid, sale.units)
                    .gauge("units in unpaid carts", sale.held - sale.paid, sale.units)
                    .badge(numbered("drop", item as u64 + 1), Tone::Neutral)
                    .badge_if(over > 0, format!("{over} units oversold"), Tone::Bad)
                    .badge_if(held > 0, format!("row locked, {waiting} waiting"), Tone::Warn)
                    .badge_if(d.slow_ms > 0, format!("slow +{} ms", d.slow_ms), Tone::Warn)
            }
            Ir::Crowd(c) => NodeView::new(NodeKind::Client, 0, "buyers")
                .gauge("checkouts in flight", c.in_flight as i64, 100)
                .badge_if(c.slow_pay_ms > 0, format!("payments +{} ms", c.slow_pay_ms), Tone::Warn),
            Ir::Instance(i) => NodeView::new(NodeKind::Service, 1, numbered("app", i.index as u64 + 1)).gauge(
                "requests in flight",
                i.in_flight as i64,
                50,
            ),
        }
    }
}

impl Crowd {
    fn arrive(&mut self, ctx: &mut Ctx<Ir>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        self.orders += 1;
        self.in_flight += 1;
        let item = (ctx.now().micros() / DROP_US) as u32;
        let job = Job { order: self.orders, item, t0: ctx.now(), tries: 0, ttl: false, via: CROWD };
        let to = FIRST_INSTANCE + ctx.rng().below(self.instances as u64) as NodeId;
        ctx.send(to, Msg::Checkout(job));
    }

    fn done(&mut self, job: Job, outcome: Outcome, ctx: &mut Ctx<Ir>) {
        if matches!(outcome, Outcome::Confirmed | Outcome::Refused) {
            return ctx.count(if outcome == Outcome::Confirmed { "confirmed" } else { "refused" }, 1);
        }
        self.in_flight -= 1;
        ctx.observe("checkout_us", ctx.now().since(job.t0));
        match outcome {
            Outcome::Reserved if ctx.rng().below(100) < ctx.param("abandon_pct") as u64 => ctx.count("abandoned", 1),
            Outcome::Reserved => {
                let mean = ms(ctx.param("pay_ms")) as f64;
                let wait = ctx.rng().exponential(mean) as Micros + ms(self.slow_pay_ms);
                ctx.set_timer(wait, Timer::Pay(job));
            }
            Outcome::SoldOut => ctx.count("sold_out", 1),
            _ => ctx.count("busy", 1),
        }
    }
}

impl Instance {
    fn checkout(&mut self, job: Job, ctx: &mut Ctx<Ir>) {
        self.in_flight += 1;
        let ttl = ms(ctx.param("ttl_ms"));
        ctx.send(
            DB,
            match self.strategy {
                Strategy::ReadCheckWrite | Strategy::Optimistic => Msg::Read(job),
                Strategy::Pessimistic => Msg::Lock(job),
                Strategy::Atomic => Msg::Decrement(job, None),
                Strategy::Ttl | Strategy::TtlNoRecheck => Msg::Decrement(job, Some(ttl)),
            },
        );
    }

    /// The stock read: sold out, or write one less — under the lock read with it, on the
    /// version read (optimistic), or blindly (read-check-write, or a read begun under it).
    fn stock(&mut self, job: Job, value: i64, version: u64, seat: Option<Seat>, ctx: &mut Ctx<Ir>) {
        match (value > 0, seat) {
            (false, Some(seat)) => {
                ctx.send(DB, Msg::Rollback(job.item, seat));
                self.done(job, Outcome::SoldOut, ctx);
            }
            (false, None) => self.done(job, Outcome::SoldOut, ctx),
            (true, None) if self.strategy == Strategy::Optimistic => ctx.send(DB, Msg::Cas(job, version, value - 1)),
            (true, seat) => ctx.send(DB, Msg::Write(job, value - 1, seat)),
        }
    }

    /// A step ended: a version conflict is retried after a backoff while retries last; every
    /// other outcome goes to the buyer.
    fn done(&mut self, mut job: Job, outcome: Outcome, ctx: &mut Ctx<Ir>) {
        if outcome == Outcome::Conflict {
            ctx.count("conflicts", 1);
            job.tries += 1;
            let policy = RetryPolicy { max_retries: ctx.param("max_retries") as u32, ..RETRY };
            if let Some(wait) = policy.delay_us(job.tries, 0, ctx.rng()) {
                ctx.count("retries", 1);
                ctx.set_timer(wait, Timer::Retry(job));
                return;
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        ctx.send(CROWD, Msg::Done(job, outcome));
    }
}

impl Db {
    /// Answers arrive the statement time (plus any slowness) after the statement ran.
    fn answer(&self, to: NodeId, msg: Msg, ctx: &mut Ctx<Ir>) {
        ctx.send_after(ms(ctx.param("db_ms")) + ms(self.slow_ms), to, msg);
    }

    fn read(&self, item: u32, now: Time) -> (i64, u64) {
        self.stock.get(&item, now).map_or((0, 0), |(v, version)| (*v, version))
    }

    /// A new item goes on sale with `stock` units (items are numbered by time, as buyers pick them).
    fn new_drop(&mut self, ctx: &mut Ctx<Ir>) {
        let (units, item) = (ctx.param("stock"), (ctx.now().micros() / DROP_US) as u32);
        self.stock.put(item, units);
        self.sales.resize(item as usize, Sale::default());
        self.sales.push(Sale { units, held: 0, paid: 0 });
        self.gauges(ctx);
        ctx.set_timer(DROP_US, Timer::Drop);
    }

    fn gauges(&self, ctx: &mut Ctx<Ir>) {
        let item = self.sales.len() as u32 - 1;
        ctx.gauge("stock", self.read(item, ctx.now()).0);
        ctx.gauge("unpaid", self.sales[item as usize].held - self.sales[item as usize].paid);
    }

    /// SELECT … FOR UPDATE: the row's lock, then the read (now, or when a release grants it).
    fn lock(&mut self, job: Job, ctx: &mut Ctx<Ir>) {
        let lock = self.locks.entry(job.item).or_insert_with(|| Pool::new(1));
        lock.set_wait_timeout(Some(ms(ctx.param("lock_wait_ms"))));
        if let Acquire::Granted(seat) = lock.acquire(job, ctx, |seat| Timer::LockWait(job.item, seat)) {
            self.granted(job, seat, ctx);
        }
    }

    fn granted(&mut self, job: Job, seat: Seat, ctx: &mut Ctx<Ir>) {
        let (value, version) = self.read(job.item, ctx.now());
        self.answer(job.via, Msg::Stock(job, value, version, Some(seat)), ctx);
    }

    /// Commit or rollback: the lock goes to the oldest waiter, who reads the row as it is now.
    fn unlock(&mut self, item: u32, seat: Seat, ctx: &mut Ctx<Ir>) {
        let Some(lock) = self.locks.get_mut(&item) else { return };
        let next = lock.release(seat, ctx).and_then(|r| r.next);
        if let Some((job, seat)) = next.and_then(|s| lock.get(s).map(|&job| (job, s))) {
            self.granted(job, seat, ctx);
        }
    }

    /// An UPDATE of the value the instance computed, then the commit releasing its lock (if it
    /// holds one: a lock lost in a crash aborts the transaction).
    fn write(&mut self, job: Job, value: i64, seat: Option<Seat>, ctx: &mut Ctx<Ir>) {
        let ok = seat.is_none_or(|seat| self.locks.get(&job.item).is_some_and(|l| l.get(seat).is_some()));
        if ok {
            self.stock.put(job.item, value);
        }
        self.took(job, ok, Outcome::LockTimeout, ctx);
        if let Some(seat) = seat.filter(|_| ok) {
            self.unlock(job.item, seat, ctx);
        }
    }

    /// UPDATE … SET stock = stock − 1 WHERE stock > 0, and with a TTL the reservation row.
    fn decrement(&mut self, mut job: Job, ttl: Option<Micros>, ctx: &mut Ctx<Ir>) {
        let ok = self.read(job.item, ctx.now()).0 > 0;
        if ok {
            self.stock.update(job.item, ctx.now(), |v| v.copied().unwrap_or(0) - 1);
            if let Some(ttl) = ttl {
                self.reservations.put_ttl(job.order, job.item, ctx.now(), ttl);
                ctx.set_timer(ttl, Timer::Expire(job.order));
                job.ttl = true;
            }
        }
        self.took(job, ok, Outcome::SoldOut, ctx);
    }

    /// A unit was taken for `job` (`ok`), or not (`fail` answered).
    fn took(&mut self, job: Job, ok: bool, fail: Outcome, ctx: &mut Ctx<Ir>) {
        if ok {
            ctx.count("taken", 1);
            self.promise(job.item, ctx);
        }
        self.answer(job.via, Msg::Done(job, if ok { Outcome::Reserved } else { fail }), ctx);
    }

    /// The truth: one more unit of `item` promised to a buyer; past its units, an oversell.
    fn promise(&mut self, item: u32, ctx: &mut Ctx<Ir>) {
        let sale = &mut self.sales[item as usize];
        sale.held += 1;
        if sale.held > sale.units {
            let (n, units) = (sale.held, sale.units);
            ctx.count("oversold", 1);
            let why =
                format!("{}: {n} units promised of {units} ({} over)", numbered("drop", item as u64 + 1), n - units);
            self.over = Some((why, ctx.truth()));
        }
        self.gauges(ctx);
    }

    /// A reservation's TTL ended: unpaid, its unit goes back on sale.
    fn reclaim(&mut self, order: u64, ctx: &mut Ctx<Ir>) {
        match self.reservations.entry(&order, ctx.now()) {
            // The timer ran on true time, the TTL on this clock (drifting): not yet.
            Some(e) => drop(ctx.set_timer(e.expires.map_or(1, |t| t.since(ctx.now()).max(1)), Timer::Expire(order))),
            None => self.give_back(order, ctx),
        }
    }

    /// An expired reservation's unit goes back on sale (once; a paid one is gone already).
    fn give_back(&mut self, order: u64, ctx: &mut Ctx<Ir>) {
        if let Some(item) = self.reservations.take_expired(&order, ctx.now()) {
            self.stock.update(item, ctx.now(), |v| v.copied().unwrap_or(0) + 1);
            self.sales[item as usize].held -= 1;
            ctx.count("returned", 1);
            self.gauges(ctx);
        }
    }

    /// The payment. A reservation that expired gave its unit back: `recheck` re-reserves one
    /// (or refuses the payment); without it the payment is taken for a unit that may be sold again.
    fn settle(&mut self, job: Job, recheck: bool, ctx: &mut Ctx<Ir>) {
        if job.ttl {
            self.give_back(job.order, ctx);
            if self.reservations.delete(&job.order, ctx.now()).is_none() {
                if recheck && self.read(job.item, ctx.now()).0 <= 0 {
                    return self.answer(job.via, Msg::Done(job, Outcome::Refused), ctx);
                }
                if recheck {
                    self.stock.update(job.item, ctx.now(), |v| v.copied().unwrap_or(0) - 1);
                    ctx.count("re_reserved", 1);
                }
                self.promise(job.item, ctx);
            }
        }
        let sale = &mut self.sales[job.item as usize];
        sale.paid += 1;
        if sale.paid > sale.units {
            let (name, units, n) = (numbered("drop", job.item as u64 + 1), sale.units, sale.paid);
            let why = format!("{name}: order {} confirmed as payment {n} for {units} units", job.order);
            self.unfulfilled = Some((why, ctx.truth()));
        }
        self.gauges(ctx);
        self.answer(job.via, Msg::Done(job, Outcome::Confirmed), ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sampled};

    #[test]
    fn debug_print() {
        for st in ["pessimistic-lock", "read-check-write", "optimistic-version"] {
            let names = ["taken", "busy", "conflicts", "oversold", "confirmed", "abandoned", "sold_out"];
            let (r, at) = run_sampled(&SPEC, &Recipe::new(SPEC.id(), st, 1), 30, &names);
            for (s, row) in at.iter().enumerate() {
                eprintln!("{st} {s}: {row:?}");
            }
            eprintln!("{:?}", failed_at(r.as_ref(), "no-oversell"));
        }
    }
}
