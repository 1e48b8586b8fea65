//! Connection pools: 20 instances, each with a pool of 10 Postgres connections, against a database that allows 500, exhausted at 150 requests/s once a slow query and a connection leak hold connections; bigger pools drown the database, timeouts bound the waits and take leaked connections back, a shared pooler caps what reaches the database.

use crate::parts::arrivals::OpenLoop;
use crate::parts::degraded::FaultWindow;
use crate::parts::pool::{Acquire, Contention, Pool, Seat};
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
        summary: "20 instances × a pool of 10, a Postgres allowing 500, 150 requests/s. From 1 s an error path leaks \
                  15% of the connections; from 5 s a third of the queries wait 2 s. The pools are exhausted far below \
                  the database's limit; bigger pools pass it and slow every query.",
        note: Note {
            what_can_go_wrong: "A pool of 10 at 7.5 requests/s holds under one connection (Little: λ × 7 ms), so \
                'pool exhausted' means connections held for seconds: a slow query and a leak fill the 10, and with no \
                acquire timeout (node-postgres' default) later requests wait forever. Pools of 50 promise 1,000 \
                connections to a database allowing 500. The model: Poisson requests, one query each; connections \
                opened on demand, kept open; queries FIFO on the cores (exponential, 5 ms CPU), each backend on or \
                queued for a core past the cores adding 1% to every query's CPU (context switches, lock contention: \
                throughput peaks at a few connections per core), every open connection, idle or not, 0.1% (memory; \
                snapshots scan all backends); the slow query waits on I/O (no core); past max_connections: refused.",
            what_you_sacrifice: "Timeouts turn hangs into errors; taking abandoned connections back aborts the \
                leaker's work. A pooler is one more hop, and transaction pooling breaks session state (SET, LISTEN).",
            at_10x: "200 instances × 10 is 2,000 connections, four times the maximum, with no pool bigger than \
                today's: per-instance pools cannot be sized safely; a shared pooler (PgBouncer, RDS Proxy) can.",
            resembles: "node-postgres (max 10, connectionTimeoutMillis 0), HikariCP, Postgres max_connections and \
                Tomcat/DBCP removeAbandoned, PgBouncer transaction pooling, RDS Proxy.",
            try_this: &[
                "Play `plain-pool`: the database never sees over 200 connections, yet within 15 s an instance's 10 \
                 are all held (most leaked) and its requests wait without end: `bounded-wait` names it.",
                "Play `bigger-pools`: Postgres refuses the 501st connection (about 1,000 errors in 30 s; \
                 `within-max-connections` names the instance), and 470 open connections make every query's CPU \
                 47% longer: 7–8 ms on the cores from 10 s, against 6 ms under `timeouts` (200 open).",
                "Switch to `timeouts`: no wait passes the 1 s acquire timeout, leaked connections come back after 5 s (about \
                 95 at a time while the query is slow), the database stays within 200: both checks hold, at a price: errors.",
                "Set instances to 200 under `timeouts`: 2,000 connections promised; the pools keep what their peaks \
                 opened and pass 500. `pooler` holds with the same 200, opening at most its 200.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("instances", "Instances", "", 1..=200, 20, "App instances, each with its own pool."),
        ParamSpec::setup("rps", "Request rate", "req/s", 1..=5000, 150, "Total Poisson rate, split between instances."),
        ParamSpec::live("pool_size", "Pool per instance", "conns", 1..=200, 10, "`bigger-pools`: five times this."),
        ParamSpec::live("pooler_size", "Pooler's connections", "conns", 1..=1000, 200, "default_pool_size."),
        ParamSpec::setup("max_connections", "Database max connections", "conns", 10..=5000, 500, "More are refused."),
        ParamSpec::setup("cores", "Database cores", "", 1..=64, 8, "Queries run on at most this many at once."),
        ParamSpec::live("acquire_timeout_ms", "Acquire timeout", "ms", 10..=5000, 1000, "Longest wait.").step(10),
        ParamSpec::live("abandoned_timeout_s", "Abandoned-connection timeout", "s", 1..=60, 5,
            "The pool takes back a connection its borrower kept this long (Tomcat/DBCP removeAbandoned)."),
        ParamSpec::setup("slow_at", "Slow query from", "s", 0..=3600, 5, "Scheduled fault: 33% of queries wait 2 s."),
        ParamSpec::setup("slow_len", "Slow query for", "s", 0..=3600, 25, "How long it stays slow (0: never)."),
        ParamSpec::setup("leak_at", "Leak from", "s", 0..=3600, 1, "Scheduled fault: 15% never release."),
        ParamSpec::setup("leak_len", "Leak for", "s", 0..=3600, 29, "How long it leaks (0: never)."),
    ],
    strategies: &[
        StrategySpec::naive("plain-pool", "Plain pool", "10 per instance; waits without end, leaks never return."),
        StrategySpec::naive("bigger-pools", "Bigger pools", "Five times the pool: room for more, past the maximum."),
        StrategySpec::fixed("timeouts", "Acquire + abandoned timeouts",
            "Waits give up; the pool takes leaked (abandoned) connections back."),
        StrategySpec::fixed("pooler", "Shared pooler", "A PgBouncer shares its own connections (their number: a parameter); same timeouts."),
    ],
    faults: &[
        FaultSpec::global("slow-query", "Slow query", "33% of queries wait this on I/O (0: heal).")
            .value("ms", 0..=60_000, 2000),
        FaultSpec::global("leak", "Connection leak", "This share never release (0: stop).").value("%", 0..=100, 15),
    ],
    checks: &[
        CheckSpec::new("within-max-connections", "Database connections within its maximum", "No one asks for a \
            connection past the database's max_connections (it is refused: 'too many clients')."),
        CheckSpec::new("bounded-wait", "No request waits without bound", "No request waits over 5 s for a \
            connection, at an instance's pool or the pooler's."),
    ],
    metrics: &[
        MetricSpec::new("pool_wait_p99", "Pool wait p99", "us", Measure::Quantile("pool_wait_us", 0.99)),
        MetricSpec::new("errors", "Errors", "req/s", Measure::Rate("errors")),
        MetricSpec::new("connections", "Database connections open", "conns", Measure::Gauge("db_connections")),
        MetricSpec::new("active", "Backends running a query", "backends", Measure::Gauge("db_active")),
        MetricSpec::new("leaked", "Leaked connections", "conns", Measure::Count("leaked")),
        MetricSpec::new("request_p99", "Request p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("refused", "Connections refused", "conns/s", Measure::Rate("db_refused")),
        MetricSpec::new("query_time", "Query time on the cores (mean)", "us", Measure::Mean("query_us")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};
strategies!(SPEC, Strategy { PlainPool, BiggerPools, Timeouts, Pooler });
const DB: NodeId = 0;
const POOLER: NodeId = 1;
/// The check's bound; the plan's slow query (%, ms), leak (%); how often a pool's oldest waiter's age is
/// observed as a wait; CPU added per backend on or queued for a core past the cores (%), per open connection (‰).
const WAIT_BOUND: Micros = 5 * MICROS_PER_S;
const SLOW: (u64, i64) = (33, 2000);
const LEAK_PCT: i64 = 15;
const CONTENTION: Contention = Contention { per_backend_pct: 1, per_connection_permille: 1 };
const TICK: Micros = 250 * MICROS_PER_MS;
/// A query on a connection (a seat of the sender's pool; to the database: `true` if it opens one, to
/// the pooler: `true` if it leaks; when its request came); its rows, or a refusal (the pooler's wait
/// timed out, or the database is full); `Restarted`: the database is back, every connection to it broken.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Query(Seat, bool, Time),
    Rows(Seat),
    #[label = "refused"]
    Refused(Seat),
    Restarted,
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    Acquire(Seat),
    Reclaim(Seat),
    Io(NodeId, Seat),
    Cpu(Slot),
    Tick,
}
/// A request for a connection: when it came (true time), if it leaks, at the pooler whose it is.
#[derive(Clone, Debug)]
pub struct Job {
    t0: Time,
    leak: bool,
    from: Option<(NodeId, Seat)>,
}
#[derive(Clone, Debug, Holds)]
pub enum Cp {
    Db(Db),
    App(App),
}
/// The database; `io`: backends on the slow query's I/O (no core); `over`: the last refused, for the check.
#[derive(Clone, Debug)]
pub struct Db {
    cpu: Station<(NodeId, Seat)>,
    open: u32,
    max: u32,
    io: u32,
    slow_ms: i64,
    over: Breach,
}
/// An instance, or the pooler (`index` 0), with the database connections it opened (idle ones stay open).
#[derive(Clone, Debug)]
pub struct App {
    index: u32,
    name: String,
    strategy: Strategy,
    arrivals: OpenLoop,
    pool: Pool<Job>,
    opened: u32,
    leaked: Vec<Seat>,
    leak_pct: i64,
}
fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Cp> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let (cpu, max) =
        (Station::new(setup.param("cores") as u32, Service::exponential_ms(5)), setup.param("max_connections"));
    assert_eq!(
        sim.add_node(Cp::Db(Db { cpu, open: 0, max: max as u32, io: 0, slow_ms: 0, over: Breach::default() })),
        DB
    );
    let (strategy, n) = (Strategy::from_id(setup.strategy()), setup.param("instances"));
    for index in 0..=n as u32 {
        let arrivals = OpenLoop::poisson(if index == 0 { 0.0 } else { setup.param("rps") as f64 / n as f64 });
        let name = if index == 0 { "pooler".into() } else { numbered("instance", index as u64) };
        let (pool, leaked) = (Pool::new(0), vec![]);
        sim.add_node(Cp::App(App { index, name, strategy, arrivals, pool, opened: 0, leaked, leak_pct: 0 }));
    }
    FaultWindow::secs(setup.param("slow_at"), setup.param("slow_len")).custom(&mut sim, "slow-query", None, SLOW.1, 0);
    FaultWindow::secs(setup.param("leak_at"), setup.param("leak_len")).custom(&mut sim, "leak", None, LEAK_PCT, 0);
    sim.check("within-max-connections", |w| w.node::<Db>(DB).over.now(w.now));
    sim.check("bounded-wait", |w| {
        let stuck = |a: &&App| a.pool.waiters().next().is_some_and(|(_, j)| j.t0.plus(WAIT_BOUND) < w.now);
        let Some(a) = (POOLER..w.nodes.len() as NodeId).map(|id| w.node::<App>(id)).find(stuck) else { return Ok(()) };
        let (who, held, leaked, waiting) = (&a.name, a.pool.held(), a.leaked.len(), a.pool.queued());
        Err(format!(
            "{who}: a request has waited 5 s for a connection ({held} held, {leaked} leaked, {waiting} waiting)"
        ))
    });
    Box::new(sim)
}
impl Node for Cp {
    type Msg = Msg;
    type Timer = Timer;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cp::App(a) => (a.arrivals.start(ctx, Timer::Send), ctx.set_timer(TICK, Timer::Tick), a.configure(ctx)).2,
            // Back from a crash (not at the start): every connection to it broke; the pools reconnect on demand.
            Cp::Db(_) => {
                let last = if ctx.now() > Time::ZERO { POOLER + ctx.param("instances") as NodeId } else { 0 };
                (POOLER..=last).for_each(|n| ctx.send(n, Msg::Restarted))
            }
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Cp::Db(d), Msg::Query(seat, new, _)) => d.query(from, seat, new, ctx),
            (Cp::App(a), Msg::Query(seat, leak, t0)) => a.acquire(Job { t0, leak, from: Some((from, seat)) }, ctx),
            (Cp::App(a), Msg::Rows(seat)) => a.answered(seat, ctx),
            (Cp::App(a), Msg::Refused(seat)) => (a.opened -= (from == DB) as u32, a.free(seat, true, ctx)).1,
            (Cp::App(a), Msg::Restarted) => a.reconnect(ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cp::Db(d), Timer::Io(from, seat)) => d.run(from, seat, true, ctx),
            (Cp::Db(d), Timer::Cpu(slot)) => {
                let Some(f) = d.cpu.done(slot, ctx, Timer::Cpu) else { return };
                (ctx.observe("query_us", f.sojourn_us()), ctx.send(f.job.0, Msg::Rows(f.job.1)), d.contend(ctx)).2
            }
            (Cp::App(a), Timer::Send) => a.send(ctx),
            (Cp::App(a), Timer::Acquire(seat)) => a.pool.expire(seat).into_iter().for_each(|job| a.gave_up(job, ctx)),
            (Cp::App(a), Timer::Reclaim(seat)) => a.reclaim(seat, ctx),
            (Cp::App(a), Timer::Tick) => {
                let oldest = (ctx.set_timer(TICK, Timer::Tick), a.pool.waiters().next().map(|w| w.1.t0)).1;
                oldest.into_iter().for_each(|t0| ctx.observe("pool_wait_us", ctx.truth().since(t0)))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // A database's queries and connections are lost (it says so when back); an instance's linger there.
        match self {
            Cp::Db(d) => {
                let lost = d.cpu.crash(ctx).len() as u32 + std::mem::take(&mut d.io);
                ctx.note(format!("{lost} queries lost, {} connections closed", std::mem::take(&mut d.open)));
            }
            Cp::App(a) => {
                ctx.count("leaked", -(a.leaked.len() as i64) * (a.index > 0) as i64);
                let lost = a.pool.clear(ctx).len();
                ctx.note(format!("{lost} requests lost with their connections"));
                (a.opened, a.leaked) = (0, vec![]);
            }
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Cp::Db(d), Control::Custom { id: "slow-query", value }) => d.slow_ms = value,
            (Cp::App(a), Control::Custom { id: "leak", value }) => a.leak_pct = value,
            (Cp::App(a), Control::Param { .. }) => a.configure(ctx),
            (Cp::App(a), Control::Strategy(id)) => a.switch(Strategy::from_id(id), ctx),
            _ => {}
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Cp::Db(d) => NodeView::new(NodeKind::Database, 2, "postgres")
                .gauge("connections", d.open as i64, d.max as i64)
                .gauge("backends in a query", d.cpu.held() as i64 + d.io as i64, d.cpu.servers() as i64)
                .badge_if(d.slow_ms > 0, format!("slow query {} ms", d.slow_ms), Tone::Warn)
                .badge_if(d.cpu.slowdown_pct() > 100, format!("CPU time {}%", d.cpu.slowdown_pct()), Tone::Bad),
            Cp::App(a) => {
                let (kind, tier) = if a.index == 0 { (NodeKind::LoadBalancer, 1) } else { (NodeKind::Service, 0) };
                NodeView::new(kind, tier, a.name.clone())
                    .gauge("connections held", a.pool.held() as i64, a.pool.size() as i64)
                    .badge_if(!a.leaked.is_empty(), format!("{} leaked", a.leaked.len()), Tone::Bad)
                    .badge_if(a.pool.queued() > 0, format!("{} waiting", a.pool.queued()), Tone::Warn)
            }
        }
    }
}
/// Answers a request: to its client (the metrics), or for the pooler to the instance.
fn reply(job: &Job, ok: bool, ctx: &mut Ctx<Cp>) {
    match job.from {
        Some((instance, theirs)) => ctx.send(instance, if ok { Msg::Rows(theirs) } else { Msg::Refused(theirs) }),
        None => {
            ctx.observe("latency_us", ctx.truth().since(job.t0));
            ctx.count(if ok { "ok" } else { "errors" }, 1);
        }
    }
}
impl Db {
    /// Every query's CPU stretches with the backends on or queued for a core past the cores, and the connections.
    fn contend(&mut self, ctx: &mut Ctx<Cp>) {
        self.cpu.set_slowdown_pct(CONTENTION.stretch_pct(self.cpu.held() as u32, self.cpu.servers(), self.open));
        ctx.gauge("db_active", self.cpu.held() as i64 + self.io as i64); // in a query: on a core, queued, on I/O
    }
    fn query(&mut self, from: NodeId, seat: Seat, new: bool, ctx: &mut Ctx<Cp>) {
        // Postgres refuses it: 'sorry, too many clients already'.
        if new && self.open >= self.max {
            let who = if from == POOLER { "pooler".into() } else { numbered("instance", (from - POOLER) as u64) };
            let n = self.open + 1;
            self.over.record(format!("{who} was refused connection {n} of at most {}", self.max), ctx.truth());
            ctx.count("db_refused", 1);
            return ctx.send(from, Msg::Refused(seat));
        }
        self.open += new as u32;
        ctx.gauge("db_connections", self.open as i64);
        if self.slow_ms > 0 && ctx.rng().below(100) < SLOW.0 {
            self.io += 1;
            ctx.set_timer(self.slow_ms as Micros * MICROS_PER_MS, Timer::Io(from, seat));
            return self.contend(ctx);
        }
        self.run(from, seat, false, ctx);
    }
    /// A query takes a core, or queues for one (`io`: after the slow query's I/O).
    fn run(&mut self, from: NodeId, seat: Seat, io: bool, ctx: &mut Ctx<Cp>) {
        self.io -= io as u32;
        let _ = self.cpu.offer((from, seat), ctx, Timer::Cpu);
        self.contend(ctx);
    }
}
impl App {
    fn times_out(&self) -> bool {
        matches!(self.strategy, Strategy::Timeouts | Strategy::Pooler)
    }
    /// Reads its pool's size and wait timeout again; a bigger pool grants waiters at once.
    fn configure(&mut self, ctx: &mut Ctx<Cp>) {
        let bigger = if self.strategy == Strategy::BiggerPools { 5 } else { 1 };
        let size = if self.index == 0 { ctx.param("pooler_size") } else { bigger * ctx.param("pool_size") };
        self.pool.set_wait_timeout(self.times_out().then(|| ctx.param("acquire_timeout_ms") as Micros * 1000));
        self.pool.set_size(size as u32, ctx).into_iter().for_each(|seat| self.start(seat, ctx));
    }
    fn send(&mut self, ctx: &mut Ctx<Cp>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        self.acquire(Job { t0: ctx.truth(), leak: ctx.rng().below(100) < self.leak_pct as u64, from: None }, ctx);
    }
    fn acquire(&mut self, job: Job, ctx: &mut Ctx<Cp>) {
        match self.pool.acquire(job, ctx, Timer::Acquire) {
            Acquire::Granted(seat) => self.start(seat, ctx),
            Acquire::Queued(_) => {}
            Acquire::Refused(job) => reply(&job, false, ctx),
        }
    }
    /// A connection granted: the query goes to the database (on a new connection if all are held) or pooler.
    fn start(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let Some(job) = self.pool.get(seat) else { return };
        // Under the pooler a request's wait is observed once, where it ends: at the pooler.
        if self.index > 0 && self.strategy == Strategy::Pooler {
            return ctx.send(POOLER, Msg::Query(seat, job.leak, job.t0));
        }
        ctx.observe("pool_wait_us", ctx.truth().since(job.t0));
        let new = self.pool.held() > self.opened;
        self.opened += new as u32;
        ctx.send(DB, Msg::Query(seat, new, job.t0));
    }
    /// The rows are in: the request is answered, and its connection released unless it leaks.
    fn answered(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let Some(job) = self.pool.get(seat) else { return };
        reply(job, true, ctx);
        let true = job.leak else { return self.free(seat, false, ctx) };
        ctx.count("leaked", job.from.is_none() as i64);
        self.pool.set_busy(seat, false);
        self.leaked.push(seat);
        if self.times_out() {
            ctx.set_timer(ctx.param("abandoned_timeout_s") as Micros * MICROS_PER_S, Timer::Reclaim(seat));
        }
    }
    /// The abandoned-connection timeout takes a leaked connection back (removeAbandoned): the pool reuses it.
    fn reclaim(&mut self, seat: Seat, ctx: &mut Ctx<Cp>) {
        let Some(i) = self.leaked.iter().position(|&s| s == seat).filter(|_| self.times_out()) else { return };
        self.leaked.remove(i);
        ctx.count("leaked", -((self.index > 0) as i64));
        self.free(seat, false, ctx);
    }
    /// A wait given up on: it counts at its age, and the request fails.
    fn gave_up(&self, job: Job, ctx: &mut Ctx<Cp>) {
        (ctx.observe("pool_wait_us", ctx.truth().since(job.t0)), reply(&job, false, ctx)).1
    }
    /// Gives a seat back (its request `failed`, or done) and starts the next waiter.
    fn free(&mut self, seat: Seat, failed: bool, ctx: &mut Ctx<Cp>) {
        let Some(r) = self.pool.release(seat, ctx) else { return };
        failed.then(|| reply(&r.job, false, ctx));
        r.next.into_iter().for_each(|next| self.start(next, ctx));
    }
    /// The database restarted: every connection to it is broken (a query on one fails, a leaked one is gone);
    /// the pool opens new ones as requests need them. Connections to the pooler are not the database's.
    fn reconnect(&mut self, ctx: &mut Ctx<Cp>) {
        let Some(()) = (self.index == 0 || self.strategy != Strategy::Pooler).then_some(()) else { return };
        ctx.count("leaked", -(self.leaked.len() as i64) * (self.index > 0) as i64);
        let (held, leaked) = (self.pool.holders().map(|h| h.0).collect::<Vec<_>>(), std::mem::take(&mut self.leaked));
        self.opened = 0;
        held.into_iter().for_each(|seat| self.free(seat, !leaked.contains(&seat), ctx));
    }
    /// New size and timeouts (waiters queue again under them); connections no longer needed stay open.
    fn switch(&mut self, strategy: Strategy, ctx: &mut Ctx<Cp>) {
        self.strategy = strategy;
        self.configure(ctx);
        if self.times_out() {
            for seat in self.pool.waiters().map(|(s, _)| s).collect::<Vec<_>>() {
                let job = self.pool.withdraw(seat, ctx).expect("waiting");
                self.acquire(job, ctx);
            }
            for &seat in &self.leaked {
                ctx.set_timer(ctx.param("abandoned_timeout_s") as Micros * MICROS_PER_S, Timer::Reclaim(seat));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::samples;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("connection-pool", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        crate::parts::testing::run_sampled(&SPEC, &recipe, secs, &[]).0
    }

    use crate::parts::testing::failed_at as violation;

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    /// A headline metric's largest sample.
    fn most(r: &dyn Run, id: &str) -> f64 {
        let s = r.sampler();
        s.series[SPEC.metrics.iter().position(|m| m.id == id).expect("a metric")].iter().copied().fold(0.0, f64::max)
    }

    #[test]
    fn backends_in_a_query_follow_littles_law() {
        // With no leak, a slow query for the whole run, pools too big to make anyone wait (200
        // each) and 64 cores (150/s × 5 ms = 0.75 cores: no query queues for one), the backends in
        // a query are an M/G/∞ system: their mean is λ·E[time in the database] (Little's law),
        // whatever its distribution. That time is the slow query's 2 s I/O wait for 33% of queries
        // plus 5 ms of CPU, stretched by contention (none from backends: under 64 compute at once;
        // 0.1% per open connection, about 260: 6.3 ms): 150/s × (0.66 + 0.0063) s = 99.9 backends.
        // The count is Poisson (s.d. 10) and forgets in about 2 s, so 300 s of 250 ms samples give a standard error near 0.8: ±3%
        // (3 backends) is almost 4 of them, while a 3-point error in the share would be 9% off.
        let want = 150.0 * (0.33 * 2.0 + 0.0063);
        let r = run(
            recipe("timeouts", 4)
                .with_param("leak_len", 0)
                .with_param("slow_at", 0)
                .with_param("slow_len", 400)
                .with_param("pool_size", 200)
                .with_param("cores", 64),
            320,
        );
        let held = samples(r.as_ref(), "active", 20.0, 320.0);
        let mean = held.iter().sum::<f64>() / held.len() as f64;
        assert!((mean - want).abs() <= 0.03 * want, "{mean:.2} backends in a query on average, Little says {want:.2}");
        assert_eq!(r.metrics().counter("errors"), 0);
    }

    #[test]
    fn try_plain_pool_waits_without_bound_far_below_the_maximum() {
        // Step 1: every instance's 10 fill with leaked and slow connections; the database never
        // sees more than 20 × 10 = 200, and the first request to wait 5 s fails the check.
        for seed in 1..=5 {
            let r = run(recipe("plain-pool", seed), 30);
            let (at, why) = violation(r.as_ref(), "bounded-wait").unwrap_or_else(|| panic!("seed {seed}: held"));
            assert!(at < 15.0 && why.starts_with("instance") && why.contains("10 held"), "seed {seed}: {why}");
            assert!(violation(r.as_ref(), "within-max-connections").is_none(), "seed {seed}");
            assert!(most(r.as_ref(), "connections") <= 200.0, "seed {seed}");
            assert!(most(r.as_ref(), "leaked") >= 180.0, "seed {seed}: the leaks take most of the 200");
        }
    }

    #[test]
    fn try_bigger_pools_open_past_the_maximum_and_slow_every_query() {
        // Step 2: pools of 50 promise 1,000 connections; the 501st is refused, and over a hundred
        // backends are in a query (most on the slow query's I/O). From 10 s the pools keep about 470
        // open (0.1% each: every query's 5 ms of CPU 47% longer, 7.35 ms), `timeouts` 200 (6 ms); some
        // 3,000 queries in 20 s (standard error near 2%) and the open count's drift give 7–8 ms, 5.5–6.5 ms.
        for seed in 1..=5 {
            let r = run(recipe("bigger-pools", seed), 30);
            let (open, query) =
                (samples(r.as_ref(), "connections", 10.0, 30.0), samples(r.as_ref(), "query_time", 10.0, 30.0));
            let (open, query) = (mean(&open), mean(&query));
            assert!(
                (440.0..=500.0).contains(&open) && (7000.0..=8000.0).contains(&query),
                "seed {seed}: {open:.0} open, {query:.0} µs"
            );
            let fixed = mean(&samples(run(recipe("timeouts", seed), 30).as_ref(), "query_time", 10.0, 30.0));
            assert!((5500.0..=6500.0).contains(&fixed), "seed {seed}: {fixed:.0} µs under timeouts");
            assert!((800..=1400).contains(&r.metrics().counter("db_refused")), "seed {seed}: about 1,000 refused");
            let (_, why) = violation(r.as_ref(), "within-max-connections").unwrap_or_else(|| panic!("seed {seed}"));
            // Refused connections are errors the user sees (about 1,000 in 30 s).
            let (refused, errors) = (r.metrics().counter("db_refused"), r.metrics().counter("errors"));
            assert!(refused > 500 && errors >= refused, "seed {seed}: {refused} refused, {errors} errors");
            assert!(why.starts_with("instance") && why.contains("refused connection 501 of at most 500"), "{why}");
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
        let views: Vec<NodeView> =
            run(recipe("plain-pool", 1), 20).frame(0).nodes.into_iter().map(|n| n.view).collect();
        let db = views[DB as usize].gauges.iter().find(|g| g.label == "connections").expect("a gauge");
        assert!(db.max == 500 && db.value == 200, "{} of {}", db.value, db.max);
        let leaky = views[2..].iter().filter(|v| v.badges.iter().any(|b| b.text.ends_with("leaked"))).count();
        assert!(leaky == 20, "{leaky} instances show leaks");
    }

    #[test]
    fn a_wait_that_never_ends_counts_and_each_request_waits_once() {
        // Plain pool: requests stuck behind leaked connections never get one, so no grant ever
        // observes their wait; the oldest waiter's age, observed every 250 ms per pool, makes the
        // chart's p99 grow with them (past 5 s from 20 s on; before, it showed only the waits that ended).
        for seed in 1..=3 {
            let r = run(recipe("plain-pool", seed), 30);
            let p99 = samples(r.as_ref(), "pool_wait_p99", 20.0, 30.0);
            assert!(p99.iter().all(|&w| w > 5e6), "seed {seed}: {p99:?}");
        }
        // Under the pooler, with nothing leaking or slow (so nobody waits at a tick), a request's wait
        // is observed once, at the pooler, not again at its instance: observations = requests answered,
        // plus the few granted and not yet answered when the run stops (under 10 at 150/s × ~10 ms).
        let calm = recipe("pooler", 1).with_param("leak_len", 0).with_param("slow_len", 0);
        let r = run(calm, 20);
        let (m, answered) = (r.metrics(), r.metrics().counter("ok") + r.metrics().counter("errors"));
        let observed = m.histogram("pool_wait_us").expect("waits").count() as i64;
        assert!((0..10).contains(&(observed - answered)), "{observed} waits observed, {answered} answered");
    }

    #[test]
    fn the_database_comes_back_after_a_crash_and_the_pools_reconnect() {
        // Crashed at 8 s, restarted at 10 s, nothing leaking or slow: its queries are lost and its
        // connections close. Back, it tells the pools (their sockets break): each fails the requests
        // on its broken connections and opens new ones on demand. From 11 s the requests succeed at
        // the full rate (150/s, Poisson: 1,350 expected over 9 s, ±10% is over 7 s.d.), even under the
        // plain pool, whose stuck connections had no timeout to free them.
        for st in ["plain-pool", "timeouts"] {
            for seed in 1..=3 {
                let recipe = recipe(st, seed)
                    .with_param("leak_len", 0)
                    .with_param("slow_len", 0)
                    .with_action(Time::from_secs(8), ActionKind::Fault(Fault::Crash { node: DB }))
                    .with_action(Time::from_secs(10), ActionKind::Fault(Fault::Restart { node: DB }));
                let (r, at) = crate::parts::testing::run_sampled(&SPEC, &recipe, 20, &["ok"]);
                let ok = crate::parts::testing::between(&at, 0, 11, 20);
                assert!((ok - 1350.0).abs() <= 135.0, "{st} {seed}: {ok} answered from 11 s to 20 s");
                assert!(most(r.as_ref(), "connections") > 0.0 && r.metrics().gauge("db_connections") > 0, "{st}");
            }
        }
    }

    #[test]
    fn try_timeouts_leak_about_a_hundred_while_the_slow_query_lasts() {
        // Step 3's number, at the moment it describes (from 5 s the slow query, to 30 s): a leaked
        // connection lives 5 s, and 15% of the requests that get a connection leak. If all 150/s got
        // one: 112 at a time; the acquire timeout turns some away, so about 95 (seeds 1–3: the
        // 10–30 s mean 94–99). Bound: 85–105.
        for seed in 1..=3 {
            let r = run(recipe("timeouts", seed), 30);
            let leaked = samples(r.as_ref(), "leaked", 10.0, 30.0);
            let mean = leaked.iter().sum::<f64>() / leaked.len() as f64;
            assert!((85.0..=105.0).contains(&mean), "seed {seed}: {mean:.1} leaked on average");
        }
    }

    #[test]
    fn open_connections_slow_every_query_by_the_models_amount() {
        // A fixed offered load (150/s: 0.75 of the 8 cores' worth of CPU, so queries hardly queue for a
        // core), nothing slow; 15% of the requests leak, and each leaked connection, taken back after the
        // abandoned-connection timeout, stays open (pools of 200, max_connections 5,000): timeouts of 1,
        // 5, 20 and 60 s keep about 130, 255, 640 and 1,500 open. The model: each open connection costs
        // every query 0.1% of its 5 ms CPU, so the mean time on the cores is 5 ms × (1 + open / 1000):
        // 5.7, 6.3, 8.2 and 12.6 ms, while the throughput stays 150/s (the cores have room). Over the
        // last 40 s of 120, some 6,000 exponential queries (standard error near 1.3%) and the short
        // queue for a core (1–2%) give ±5%; 18,000 requests (s.d. 134) ±5% for the throughput.
        let mut last = (0.0, 0.0);
        for t in [1, 5, 20, 60] {
            let calm = recipe("timeouts", 1).with_param("leak_len", 400).with_param("slow_len", 0);
            let calm = calm.with_param("pool_size", 200).with_param("max_connections", 5000);
            let r = run(calm.with_param("abandoned_timeout_s", t), 120);
            let open = mean(&samples(r.as_ref(), "connections", 80.0, 120.0));
            let query = mean(&samples(r.as_ref(), "query_time", 80.0, 120.0));
            let want = 5000.0 * (1.0 + open / 1000.0);
            assert!((query - want).abs() <= 0.05 * want, "{t} s: {open:.0} open, {query:.0} µs, model {want:.0}");
            assert!(open > last.0 + 100.0 && query > last.1, "{t} s: {open:.0} open, {query:.0} µs, {last:?}");
            let ok = r.metrics().counter("ok");
            assert!((17_100..=18_900).contains(&ok), "{t} s: {ok} answered");
            last = (open, query);
        }
        assert!(last.0 > 1000.0 && last.1 > 2.0 * 5000.0, "{last:?}");
    }
}
