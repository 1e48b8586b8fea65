//! Connection pools: 20 instances, each with a pool of 10 Postgres connections, against a database that allows 500, exhausted at 150 requests/s once a slow query and a connection leak hold connections; bigger pools drown the database, timeouts bound the waits and take leaked connections back, a shared pooler caps what reaches the database.

use crate::parts::arrivals::OpenLoop;
use crate::parts::degraded::FaultWindow;
use crate::parts::pool::{Acquire, Pool, Seat};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "connection-pool",
        title: "Connection pool exhaustion",
        category: "Resilience",
        seeds: &["S3#31", "S3#2"],
        summary: "20 instances with a pool of 10 connections each, a Postgres allowing 500, 150 requests/s. From 2 s \
                  an error path leaks 10% of the connections it takes; at 5 s a slow query holds a third of them for \
                  2 s. The pools are exhausted with the database far from its limit; bigger pools drown it.",
        note: Note {
            what_can_go_wrong: "A pool of 10 at 7.5 requests/s holds under one connection on average (Little's law: \
                λ × 5 ms), so 'pool exhausted' means connections are held for seconds: a slow query (a third of the \
                requests hold theirs 2 s: 2.5 per instance) and a leak (an error path that never releases: 0.75 a \
                second per instance) fill the 10 within seconds, and a pool with no acquire timeout makes every \
                later request wait forever (node-postgres' default). Raising each pool to 50 promises the database \
                1,000 connections it does not allow (the 501st gets 'too many clients'), and every backend past its \
                cores slows every query. The model: Poisson requests; one query each, holding a connection from \
                grant to answer; connections opened on demand and kept open; the database runs queries FIFO on its \
                cores (exponential CPU, 5 ms), each backend with a query in it past the core count adds 1% to every \
                query's CPU time (context switches, lock and snapshot contention: throughput falls past the cores); \
                the slow query waits on I/O, holding its connection but no core; links 0.5–1.5 ms.",
            what_you_sacrifice: "An acquire timeout turns a hang into errors: while connections leak, requests fail \
                fast instead of waiting. Killing sessions idle in a transaction (idle_in_transaction_session_timeout) \
                aborts the leaker's work. A pooler is one more hop and process to run, and transaction pooling \
                breaks session state (prepared statements, SET, advisory locks, LISTEN).",
            at_10x: "200 instances × 10 is 2,000 connections, four times what the database allows, with no pool \
                bigger than today's: past a few dozen instances, per-instance pools cannot be sized safely, and a \
                shared pooler (PgBouncer, RDS Proxy) sized near the database's cores is the way to scale out.",
            resembles: "node-postgres (max 10, connectionTimeoutMillis 0: wait forever), HikariCP \
                (connectionTimeout 30 s, leakDetectionThreshold), Postgres max_connections (100 by default) and \
                idle_in_transaction_session_timeout, PgBouncer in transaction mode (default_pool_size, \
                query_wait_timeout, idle_transaction_timeout), Amazon RDS Proxy.",
            try_this: &[
                "Play `plain-pool`: the database never sees more than 200 connections, yet by about 20 s an \
                 instance's 10 are all held (leaked or slow) and its requests wait without end: `bounded-wait` \
                 fails naming the instance.",
                "Play `bigger-pools`: the pools open past 500 connections and the database refuses the 501st \
                 (`within-max-connections` names the instance); meanwhile hundreds of backends slow every query.",
                "Switch to `timeouts`: no wait lasts past the 1 s acquire timeout, leaked connections come back \
                 after 5 s, and the database stays under 200 connections: both checks hold, at the price of errors.",
                "Set instances to 200 under `timeouts` (10×): 2,000 connections promised, each pool keeps what its \
                 peaks opened, and the database refuses the 501st; `pooler` holds with the same 200 instances, \
                 never opening more than its 200 server connections.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("instances", "Instances", "", 1..=200, 20, "App instances, each with its own pool."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=5000, 150, "Total Poisson rate, split between instances."),
        ParamSpec::live("pool_size", "Pool per instance", "conns", 1..=200, 10, "Connections each instance may hold \
            (under `pooler`: connections to the pooler)."),
        ParamSpec::live("big_pool", "Bigger pool", "conns", 1..=500, 50, "Each instance's pool under `bigger-pools`."),
        ParamSpec::live("pooler_size", "Pooler's connections", "conns", 1..=1000, 200, "Connections the pooler \
            keeps to the database (default_pool_size), shared by every instance."),
        ParamSpec::live("max_connections", "Database max connections", "conns", 10..=5000, 500, "More are refused."),
        ParamSpec::live("cores", "Database cores", "", 1..=64, 8, "Queries run on at most this many at once."),
        ParamSpec::live("query_ms", "Query CPU", "ms", 1..=100, 5, "Mean (exponential) CPU time of a query."),
        ParamSpec::live("contention_pct", "Contention per backend", "%", 0..=20, 1, "Extra CPU time every query \
            takes per backend running a query past the core count."),
        ParamSpec::live("acquire_timeout_ms", "Acquire timeout", "ms", 10..=5000, 1000, "How long a request waits \
            for a connection under `timeouts` and `pooler` (at both the instance and the pooler).").step(10),
        ParamSpec::live("idle_timeout_s", "Idle-in-transaction timeout", "s", 1..=60, 5, "Under `timeouts` and \
            `pooler`, a leaked connection (idle in its transaction) is ended and returns to its pool after this."),
        ParamSpec::live("slow_share_pct", "Requests running the slow query", "%", 0..=100, 33, "While it is slow."),
        ParamSpec::setup("slow_ms", "Slow query", "ms", 1..=60_000, 2000, "Scheduled fault: its I/O wait."),
        ParamSpec::setup("slow_at", "Slow query from", "s", 0..=3600, 5, "Scheduled fault: when the query turns slow."),
        ParamSpec::setup("slow_len", "Slow query for", "s", 0..=3600, 25, "How long it stays slow (0: never)."),
        ParamSpec::setup("leak_pct", "Leak", "%", 0..=100, 15, "Scheduled fault: requests that never release."),
        ParamSpec::setup("leak_at", "Leak from", "s", 0..=3600, 1, "Scheduled fault: when the leaking code ships."),
        ParamSpec::setup("leak_len", "Leak for", "s", 0..=3600, 29, "How long it leaks (0: never)."),
    ],
    strategies: &[
        StrategySpec::naive("plain-pool", "Plain pool", "A pool of 10 per instance; a request waits for a \
            connection as long as it takes, and a leaked connection is never given back."),
        StrategySpec::naive("bigger-pools", "Bigger pools", "Each instance's pool is bigger (50): more room for \
            held connections, and more connections than the database allows."),
        StrategySpec::fixed("timeouts", "Acquire + idle timeouts", "A request gives up on a connection after the \
            acquire timeout, and a session idle in its transaction is ended, returning leaked connections."),
        StrategySpec::fixed("pooler", "Shared pooler", "Instances talk to a PgBouncer in transaction mode that \
            shares its 200 database connections, with the same timeouts."),
    ],
    faults: &[
        FaultSpec::global("slow-query", "Slow query", "A share of the requests run a query that waits this long on \
            I/O, holding its connection (0 heals it).").value("ms", 0..=60_000, 2000),
        FaultSpec::global("leak", "Connection leak", "This share of the requests never release their connection \
            (0 stops the leak).").value("%", 0..=100, 10),
    ],
    checks: &[
        CheckSpec::new("within-max-connections", "Database connections within its maximum", "No one opens a \
            connection past the database's max_connections (it would be refused: 'too many clients')."),
        CheckSpec::new("bounded-wait", "No request waits without bound", "No request waits over 5 s for a \
            connection, at an instance's pool or the pooler's."),
    ],
    metrics: &[
        MetricSpec::new("pool_wait_p99", "Pool wait p99", "us", Measure::Quantile("pool_wait_us", 0.99)),
        MetricSpec::new("errors", "Errors", "req/s", Measure::Rate("errors")),
        MetricSpec::new("connections", "Database connections open", "conns", Measure::Gauge("db_connections")),
        MetricSpec::new("active", "Backends running a query", "backends", Measure::Gauge("db_active")),
        MetricSpec::new("in_use", "Connections in use (all instances)", "conns", Measure::Count("in_use")),
        MetricSpec::new("leaked", "Leaked connections", "conns", Measure::Count("leaked")),
        MetricSpec::new("waiting", "Requests waiting for a connection", "req", Measure::Count("waiting")),
        MetricSpec::new("request_p99", "Request p99", "us", Measure::Quantile("latency_us", 0.99)),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { PlainPool, BiggerPools, Timeouts, Pooler });

impl Strategy {
    /// Acquire timeouts and ending sessions idle in a transaction come together.
    fn times_out(self) -> bool {
        matches!(self, Strategy::Timeouts | Strategy::Pooler)
    }
}

const DB: NodeId = 0;
const POOLER: NodeId = 1;
/// The check's bound on a wait for a connection.
const WAIT_BOUND: Micros = 5 * MICROS_PER_S;

/// A query on a connection (a seat of the sender's pool), `true` if it opens a new one; its rows;
/// the database refusing a new connection; connections closed. Instances under `pooler` send
/// `Tx` to the pooler, which answers `Rows` or `Failed`.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Query(Seat, bool),
    Rows(Seat),
    #[label = "too many clients"]
    TooMany(Seat),
    Close(u32),
    Tx(Seat, bool),
    Failed(Seat),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    Acquire(Seat),
    Reclaim(Seat),
    Io(NodeId, Seat),
    Cpu(Slot),
}

/// A request waiting for or holding a connection: when it came (true time, for the check and the
/// latency), whether it leaks, whether it holds a database connection of its own (not the pooler's),
/// and for the pooler the instance and seat it is for.
#[derive(Clone, Debug)]
pub struct Job {
    t0: Time,
    leak: bool,
    direct: bool,
    from: Option<(NodeId, Seat)>,
}

#[derive(Clone, Debug, Holds)]
pub enum Cp {
    Db(Db),
    App(App),
}

#[derive(Clone, Debug)]
pub struct Db {
    cpu: Station<(NodeId, Seat)>,
    open: u32,
    max: u32,
    /// Backends waiting on the slow query's I/O (holding no core).
    io: u32,
    /// The slow query's I/O wait (0: not slow).
    slow_ms: i64,
    /// The last refused connection, for the check: who, and when (true time).
    over: Option<(String, Time)>,
}

/// An instance (`pooler` false; its own arrivals), or the pooler (its requests come from instances).
#[derive(Clone, Debug)]
pub struct App {
    index: u32,
    pooler: bool,
    strategy: Strategy,
    arrivals: OpenLoop,
    pool: Pool<Job>,
    /// Database connections it has open (idle ones stay open).
    opened: u32,
    leaked: Vec<Seat>,
    leak_pct: i64,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Cp> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let cpu = Station::new(0, Service::exponential_ms(5));
    assert_eq!(sim.add_node(Cp::Db(Db { cpu, open: 0, max: 0, io: 0, slow_ms: 0, over: None })), DB);
    let strategy = Strategy::from_id(setup.strategy());
    let n = setup.param("instances");
    for i in 0..=n {
        let rate = if i == 0 { 0.0 } else { setup.param("rps") as f64 / n as f64 };
        let (arrivals, pool) = (OpenLoop::poisson(rate), Pool::new(0));
        let app = App { index: i as u32, pooler: i == 0, strategy, arrivals, pool, opened: 0, leaked: vec![], leak_pct: 0 };
        sim.add_node(Cp::App(app));
    }
    let slow = FaultWindow::secs(setup.param("slow_at"), setup.param("slow_len"));
    slow.custom(&mut sim, "slow-query", None, setup.param("slow_ms"), 0);
    FaultWindow::secs(setup.param("leak_at"), setup.param("leak_len")).custom(&mut sim, "leak", None, setup.param("leak_pct"), 0);
    sim.check("within-max-connections", |w| match &w.node::<Db>(DB).over {
        Some((why, at)) if *at == w.now => Err(why.clone()),
        _ => Ok(()),
    });
    sim.check("bounded-wait", |w| {
        for id in POOLER..w.nodes.len() as NodeId {
            let a = w.node::<App>(id);
            if let Some((_, job)) = a.pool.waiters().next().filter(|(_, j)| j.t0.plus(WAIT_BOUND) < w.now) {
                let (held, size, waiting) = (a.pool.held(), a.pool.size(), a.pool.queued());
                return Err(format!(
                    "{}: a request has waited {:.1} s for a connection ({held} of {size} held, {} leaked, {waiting} \
                     waiting)",
                    a.name(),
                    w.now.since(job.t0) as f64 / 1e6,
                    a.leaked.len()
                ));
            }
        }
        Ok(())
    });
    Box::new(sim)
}

impl Node for Cp {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cp::Db(d) => d.configure(ctx),
            Cp::App(a) => {
                a.arrivals.start(ctx, Timer::Send);
                a.configure(ctx);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Cp::Db(d), Msg::Query(seat, new)) => d.query(from, seat, new, ctx),
            (Cp::Db(d), Msg::Close(n)) => {
                d.open = d.open.saturating_sub(n);
                ctx.gauge("db_connections", d.open as i64);
            }
            (Cp::App(a), Msg::Tx(seat, leak)) => {
                let job = Job { t0: ctx.truth(), leak, direct: true, from: Some((from, seat)) };
                a.acquire(job, ctx);
            }
            (Cp::App(a), Msg::Rows(seat)) => a.answered(seat, ctx),
            (Cp::App(a), Msg::TooMany(seat)) => {
                a.opened -= 1;
                a.failed(seat, ctx);
            }
            (Cp::App(a), Msg::Failed(seat)) => a.failed(seat, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cp::Db(d), Timer::Io(from, seat)) => {
                d.io -= 1;
                d.run(from, seat, ctx);
            }
            (Cp::Db(d), Timer::Cpu(slot)) => {
                if let Some(done) = d.cpu.done(slot, ctx, Timer::Cpu) {
                    ctx.send(done.job.0, Msg::Rows(done.job.1));
                }
                d.contend(ctx);
            }
            (Cp::App(a), Timer::Send) => a.send(ctx),
            (Cp::App(a), Timer::Acquire(seat)) => {
                if let Some(job) = a.pool.expire(seat) {
                    ctx.observe("pool_wait_us", ctx.truth().since(job.t0));
                    ctx.count("waiting", -1);
                    a.fail(job, ctx);
                }
            }
            (Cp::App(a), Timer::Reclaim(seat)) => a.reclaim(seat, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // A restarted database has no sessions: their owners learn it on their next query.
            Cp::Db(d) => {
                let lost = d.cpu.crash(ctx).len() as u32 + d.io;
                (d.open, d.io) = (0, 0);
                ctx.note(format!("{lost} queries lost"));
            }
            Cp::App(a) => {
                let direct = |s: &Seat| a.pool.get(*s).is_some_and(|j| j.direct);
                let held: Vec<Seat> = a.pool.holders().map(|(s, _, _)| s).collect();
                ctx.count("in_use", -(held.iter().filter(|s| direct(s)).count() as i64));
                ctx.count("leaked", -(a.leaked.iter().filter(|s| direct(s)).count() as i64));
                ctx.count("waiting", -(a.pool.queued() as i64));
                let n = a.pool.clear(ctx).len();
                ctx.send(DB, Msg::Close(a.opened));
                (a.opened, a.leaked) = (0, vec![]);
                ctx.note(format!("{n} requests lost with their connections"));
            }
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Cp::Db(d), Control::Custom { id: "slow-query", value }) => d.slow_ms = value,
            (Cp::Db(d), Control::Param { .. }) => d.configure(ctx),
            (Cp::App(a), Control::Custom { id: "leak", value }) => a.leak_pct = value,
            (Cp::App(a), Control::Param { id: "rps", value }) if !a.pooler => {
                a.arrivals.set_rate_per_s(value as f64 / ctx.param("instances") as f64, ctx, Timer::Send)
            }
            (Cp::App(a), Control::Param { .. }) => a.configure(ctx),
            (Cp::App(a), Control::Strategy(id)) => a.switch(Strategy::from_id(id), ctx),
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Cp::Db(d) => {
                NodeView::new(NodeKind::Database, 2, "postgres")
                    .gauge("connections", d.open as i64, d.max as i64)
                    .gauge("backends in a query", d.active() as i64, d.cpu.servers() as i64)
                    .badge_if(d.slow_ms > 0, format!("slow query {} ms", d.slow_ms), Tone::Warn)
                    .badge_if(d.cpu.slowdown_pct() > 100, format!("contention ×{:.2}", d.cpu.slowdown_pct() as f64 / 100.0), Tone::Bad)
            }
            Cp::App(a) => a.view(),
        }
    }
}

impl Db {
    fn configure(&mut self, ctx: &mut Ctx<Cp>) {
        self.max = ctx.param("max_connections") as u32;
        self.cpu.set_service(Service::exponential_ms(ctx.param("query_ms") as u64));
        self.cpu.set_servers(ctx.param("cores") as u32, ctx, Timer::Cpu);
        self.contend(ctx);
    }

    /// Backends with a query in them: on a core, queued for one, or waiting on the slow query's I/O.
    fn active(&self) -> u32 {
        self.cpu.held() as u32 + self.io
    }

    /// Every backend past the cores adds `contention_pct` to the CPU time of queries starting now.
    fn contend(&mut self, ctx: &mut Ctx<Cp>) {
        let extra = self.active().saturating_sub(self.cpu.servers()) as i64;
        self.cpu.set_slowdown_pct((100 + extra * ctx.param("contention_pct")) as u32);
        ctx.gauge("db_active", self.active() as i64);
    }

    fn query(&mut self, from: NodeId, seat: Seat, new: bool, ctx: &mut Ctx<Cp>) {
        if new && self.open >= self.max {
            let who = if from == POOLER { "pooler".to_string() } else { numbered("instance", (from - POOLER) as u64) };
            self.over = Some((format!("{who} opened connection {} of at most {}", self.open + 1, self.max), ctx.truth()));
            ctx.count("refused_connections", 1);
            return ctx.send(from, Msg::TooMany(seat));
        }
        if new {
            self.open += 1;
            ctx.gauge("db_connections", self.open as i64);
        }
        if self.slow_ms > 0 && ctx.rng().below(100) < ctx.param("slow_share_pct") as u64 {
            self.io += 1;
            ctx.set_timer(self.slow_ms as Micros * MICROS_PER_MS, Timer::Io(from, seat));
            return self.contend(ctx);
        }
        self.run(from, seat, ctx);
    }

    fn run(&mut self, from: NodeId, seat: Seat, ctx: &mut Ctx<Cp>) {
        let _ = self.cpu.offer((from, seat), ctx, Timer::Cpu);
        self.contend(ctx);
    }
}

impl App {
    fn name(&self) -> String {
        if self.pooler { "pooler".to_string() } else { numbered("instance", self.index as u64) }
    }

    /// Whether its requests open their own database connections (not the pooler's).
    fn direct(&self) -> bool {
        self.pooler || self.strategy != Strategy::Pooler
    }

    /// Reads its pool's size and wait timeout again; a bigger pool grants waiters at once.
    fn configure(&mut self, ctx: &mut Ctx<Cp>) {
        let size = match (self.pooler, self.strategy) {
            (true, _) => ctx.param("pooler_size"),
            (false, Strategy::BiggerPools) => ctx.param("big_pool"),
            _ => ctx.param("pool_size"),
        };
        let timeout = self.strategy.times_out().then(|| ctx.param("acquire_timeout_ms") as Micros * MICROS_PER_MS);
        self.pool.set_wait_timeout(timeout);
        for seat in self.pool.set_size(size as u32, ctx) {
            ctx.count("waiting", -1);
            self.start(seat, ctx);
        }
    }

    fn send(&mut self, ctx: &mut Ctx<Cp>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        let leak = ctx.rng().below(100) < self.leak_pct as u64;
        self.acquire(Job { t0: ctx.truth(), leak, direct: false, from: None }, ctx);
    }

    fn acquire(&mut self, job: Job, ctx: &mut Ctx<Cp>) {
        match self.pool.acquire(job, ctx, Timer::Acquire) {
            Acquire::Granted(seat) => self.start(seat, ctx),
            Acquire::Queued(_) => ctx.count("waiting", 1),
            Acquire::Refused(job) => self.fail(job, ctx),
        }
    }

    /// A connection granted: the query goes to the database (opening a connection if every open
    /// one is held) or, for an instance under `pooler`, to the pooler.
    fn start(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let direct = self.direct();
        let Some(job) = self.pool.get_mut(seat) else { return };
        ctx.observe("pool_wait_us", ctx.truth().since(job.t0));
        job.direct = direct;
        if !direct {
            return ctx.send(POOLER, Msg::Tx(seat, job.leak));
        }
        ctx.count("in_use", 1);
        let owned = self.pool.holders().filter(|(_, j, _)| j.direct).count() as u32;
        let new = owned > self.opened;
        self.opened += new as u32;
        ctx.send(DB, Msg::Query(seat, new));
    }

    /// The rows are in: the request is answered; its connection is released, unless it leaks.
    fn answered(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let Some(job) = self.pool.get(seat) else { return };
        match job.from {
            Some((instance, theirs)) => ctx.send(instance, Msg::Rows(theirs)),
            None => {
                ctx.observe("latency_us", ctx.truth().since(job.t0));
                ctx.count("ok", 1);
            }
        }
        if !job.leak {
            let close = job.direct && !self.direct();
            return drop(self.free(seat, close, ctx));
        }
        ctx.count("leaked", job.direct as i64);
        self.pool.set_busy(seat, false);
        self.leaked.push(seat);
        if self.strategy.times_out() {
            ctx.set_timer(ctx.param("idle_timeout_s") as Micros * MICROS_PER_S, Timer::Reclaim(seat));
        }
    }

    /// The idle-in-transaction timeout ended a leaked connection's session: its seat is free again.
    fn reclaim(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let Some(i) = self.leaked.iter().position(|&s| s == seat) else { return };
        if !self.strategy.times_out() {
            return;
        }
        self.leaked.remove(i);
        let direct = self.pool.get(seat).is_some_and(|j| j.direct);
        ctx.count("leaked", -(direct as i64));
        self.free(seat, direct, ctx);
    }

    fn failed(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        if let Some(job) = self.free(seat, false, ctx) {
            self.fail(job, ctx);
        }
    }

    fn fail(&mut self, job: Job, ctx: &mut Ctx<Cp>) {
        match job.from {
            Some((instance, theirs)) => ctx.send(instance, Msg::Failed(theirs)),
            None => {
                ctx.observe("latency_us", ctx.truth().since(job.t0));
                ctx.count("errors", 1);
            }
        }
    }

    /// Gives a seat back (its database connection closed if `close`) and starts the next waiter.
    fn free(&mut self, seat: Seat, close: bool, ctx: &mut Ctx<Cp>) -> Option<Job> {
        let r = self.pool.release(seat, ctx)?;
        ctx.count("in_use", -(r.job.direct as i64));
        if close && self.opened > 0 {
            self.opened -= 1;
            ctx.send(DB, Msg::Close(1));
        }
        self.next(r.next, ctx);
        Some(r.job)
    }

    fn next(&mut self, next: Option<Seat>, ctx: &mut Ctx<Cp>) {
        if let Some(seat) = next {
            ctx.count("waiting", -1);
            self.start(seat, ctx);
        }
    }

    /// A new strategy: new sizes and timeouts; waits already past the new timeout fail; leaked
    /// connections get their idle timeout from now; idle connections no longer wanted are closed.
    fn switch(&mut self, strategy: Strategy, ctx: &mut Ctx<Cp>) {
        self.strategy = strategy;
        if !self.direct() {
            let held = self.pool.holders().filter(|(_, j, _)| j.direct).count() as u32;
            ctx.send(DB, Msg::Close(self.opened - held.min(self.opened)));
            self.opened = held.min(self.opened);
        }
        if strategy.times_out() {
            let timeout = ctx.param("acquire_timeout_ms") as Micros * MICROS_PER_MS;
            let seats: Vec<Seat> = self.pool.waiters().map(|(s, _)| s).collect();
            for seat in seats {
                let job = self.pool.withdraw(seat, ctx).expect("waiting");
                ctx.count("waiting", -1);
                if ctx.truth().since(job.t0) >= timeout { self.fail(job, ctx) } else { self.acquire(job, ctx) }
            }
            for &seat in &self.leaked {
                ctx.set_timer(ctx.param("idle_timeout_s") as Micros * MICROS_PER_S, Timer::Reclaim(seat));
            }
        }
        self.configure(ctx);
    }

    fn view(&self) -> NodeView {
        let (held, size) = (self.pool.held() as i64, self.pool.size() as i64);
        let (kind, tier) = if self.pooler { (NodeKind::LoadBalancer, 1) } else { (NodeKind::Service, 0) };
        NodeView::new(kind, tier, self.name())
            .gauge("connections held", held, size)
            .badge_if(!self.leaked.is_empty(), format!("{} leaked", self.leaked.len()), Tone::Bad)
            .badge_if(self.pool.queued() > 0, format!("{} waiting", self.pool.queued()), Tone::Warn)
            .badge_if(self.pooler && self.strategy != Strategy::Pooler, "unused", Tone::Neutral)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("connection-pool", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, &recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(run.unhandled(), 0);
        run
    }

    /// The check `id`'s first violation: when, and why.
    fn violation(r: &dyn Run, id: &str) -> Option<(f64, String)> {
        let c = r.checks().iter().find(|c| c.id == id).expect("a check");
        c.violation.as_ref().map(|v| (v.at.as_secs_f64(), v.why.clone()))
    }

    /// A headline metric's largest sample.
    fn most(r: &dyn Run, id: &str) -> f64 {
        let s = r.sampler();
        s.series[SPEC.metrics.iter().position(|m| m.id == id).expect("a metric")].iter().copied().fold(0.0, f64::max)
    }

    /// A headline metric's samples taken from `from` to `to` seconds.
    fn samples(r: &dyn Run, id: &str, from: f64, to: f64) -> Vec<f64> {
        let s = r.sampler();
        let series = &s.series[SPEC.metrics.iter().position(|m| m.id == id).expect("a headline metric")];
        let times = s.times.iter().map(|t| t.as_secs_f64());
        times.zip(series).filter(|(t, _)| (from..to).contains(t)).map(|(_, &x)| x).collect()
    }

    #[test]
    fn connections_in_use_follow_littles_law() {
        // With no leak, a slow query for the whole run, pools too big to make anyone wait (200
        // each), 64 cores and no contention (150/s × 5 ms = 0.75 cores: no query queues), the
        // connections in use are an M/G/∞ system: their mean is λ·E[hold] (Little's law), whatever
        // the hold's distribution. A hold is the link there (uniform 0.5–1.5 ms, mean 1 ms), the
        // slow query's 2 s I/O wait for 33% of queries, 5 ms CPU (exponential) and the link back:
        // E[hold] = 2 + 5 + 0.33 × 2000 = 667 ms, so 150/s × 0.667 s = 100.05 connections. The
        // count is Poisson (s.d. 10) and forgets in about 2 s, so 300 s of 250 ms samples give a
        // standard error near 0.8: ±3% (3 connections) is almost 4 of them, while forgetting the
        // CPU and links (660 ms) would be 1% less and a 3-point error in the share 9% off.
        let want = 150.0 * (0.002 + 0.005 + 0.33 * 2.0);
        let r = run(
            recipe("timeouts", 4)
                .with_param("leak_len", 0)
                .with_param("slow_at", 0)
                .with_param("slow_len", 400)
                .with_param("pool_size", 200)
                .with_param("cores", 64)
                .with_param("contention_pct", 0),
            320,
        );
        let held = samples(r.as_ref(), "in_use", 20.0, 320.0);
        let mean = held.iter().sum::<f64>() / held.len() as f64;
        assert!((mean - want).abs() <= 0.03 * want, "{mean:.2} connections in use on average, Little says {want:.2}");
        assert_eq!(r.metrics().counter("errors"), 0);
    }

    #[test]
    fn try_plain_pool_waits_without_bound_far_below_the_maximum() {
        // Step 1: every instance's 10 fill with leaked and slow connections; the database never
        // sees more than 20 × 10 = 200, and the first request to wait 5 s fails the check.
        for seed in 1..=5 {
            let r = run(recipe("plain-pool", seed), 30);
            let (at, why) = violation(r.as_ref(), "bounded-wait").unwrap_or_else(|| panic!("seed {seed}: held"));
            assert!(at < 25.0 && why.starts_with("instance") && why.contains("10 of 10 held"), "seed {seed}: {why}");
            assert!(violation(r.as_ref(), "within-max-connections").is_none(), "seed {seed}");
            assert!(most(r.as_ref(), "connections") <= 200.0, "seed {seed}");
            assert!(most(r.as_ref(), "leaked") >= 180.0, "seed {seed}: the leaks take most of the 200");
        }
    }

    #[test]
    fn try_bigger_pools_open_past_the_maximum_and_crowd_the_cores() {
        // Step 2: pools of 50 promise 1,000 connections; the 501st is refused, and over a hundred
        // backends contend for 8 cores (each query's CPU time ×2 and more).
        for seed in 1..=5 {
            let r = run(recipe("bigger-pools", seed), 30);
            let (_, why) = violation(r.as_ref(), "within-max-connections").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(why.starts_with("instance") && why.contains("opened connection 501 of at most 500"), "{why}");
            assert!(most(r.as_ref(), "active") > 100.0, "seed {seed}");
        }
    }

    #[test]
    fn try_timeouts_bound_the_wait_and_take_leaks_back() {
        // Step 3: no sample of the pool wait's p99 is past the 1 s acquire timeout; leaked
        // connections live 5 s (150/s × 15% × 5 s ≈ 112 at a time, not the plain pool's 200) and
        // the database stays at or under 200 connections; both checks hold.
        for seed in 1..=5 {
            let r = run(recipe("timeouts", seed), 30);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(most(r.as_ref(), "pool_wait_p99") <= 1.01e6, "seed {seed}");
            assert!(most(r.as_ref(), "connections") <= 200.0, "seed {seed}");
            let leaked = most(r.as_ref(), "leaked");
            assert!((80.0..=150.0).contains(&leaked), "seed {seed}: {leaked} leaked at most");
            assert!(r.metrics().counter("errors") > 0, "seed {seed}: the price");
        }
    }

    #[test]
    fn try_two_hundred_instances_overrun_the_maximum_unless_behind_the_pooler() {
        // Step 4: 200 × 10 = 2,000 connections promised; each pool opens what its peaks need and
        // keeps them, and together they pass 500. The pooler opens at most its 200.
        for seed in 1..=3 {
            let r = run(recipe("timeouts", seed).with_param("instances", 200), 30);
            let c = most(r.as_ref(), "connections");
            let v = violation(r.as_ref(), "within-max-connections");
            assert!(v.as_ref().is_some_and(|(_, why)| why.starts_with("instance")), "seed {seed}: {c} {v:?}");
            let r = run(recipe("pooler", seed).with_param("instances", 200), 30);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(most(r.as_ref(), "connections") <= 200.0, "seed {seed}");
        }
    }

    #[test]
    fn the_view_shows_connections_leaks_and_waiters() {
        let views: Vec<NodeView> = run(recipe("plain-pool", 1), 20).frame(0).nodes.into_iter().map(|n| n.view).collect();
        let db = views[DB as usize].gauges.iter().find(|g| g.label == "connections").expect("a gauge");
        assert!(db.max == 500 && db.value == 200, "{} of {}", db.value, db.max);
        assert!(views[POOLER as usize].badges.iter().any(|b| b.text == "unused"));
        let leaky = views[2..].iter().filter(|v| v.badges.iter().any(|b| b.text.ends_with("leaked"))).count();
        assert!(leaky == 20, "{leaky} instances show leaks");
    }
}
