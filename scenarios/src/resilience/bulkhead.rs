//! Bulkhead: clients → one service → two dependencies, inventory and reviews. Every call
//! holds one of the service's workers until it is answered or times out, so when reviews
//! turns slow its calls take every worker of a shared pool and inventory's requests are
//! refused; with a pool per dependency (a bulkhead) only reviews' own workers fill.
//!
//! The pool has no queue: it is a loss system (M/G/c/c), whose refusals Erlang B predicts.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::judge::{verdict_of, Judge};
use crate::parts::pool::{Pool, Seat};
use crate::parts::station::Service as ServiceTime;
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "bulkhead",
        title: "Bulkhead isolation",
        category: "Resilience",
        seeds: &["S0#3", "S1#27"],
        summary: "A service calls inventory and reviews with the same 20 workers; at 10 s reviews turns twenty times \
                  slower. Through one shared pool its waiting calls take every worker and inventory's requests are \
                  refused although inventory is fine; with a pool per dependency, reviews fills only its own.",
        note: Note {
            what_can_go_wrong: "A worker that calls a dependency is held until the answer or the timeout. When one \
                slows, its calls pile up by Little's law (100 calls/s × 0.37 s ≈ 37 workers) and a shared pool has 20: \
                every worker ends up waiting on the slow dependency, and requests that never needed it are refused: \
                one sick downstream becomes an outage of everything. The model: Poisson clients, each request for one \
                dependency (a coin weighted by the reviews share); a pool with no queue (a request that finds no free \
                worker gets 503 at once, like Hystrix's default thread pool or a semaphore bulkhead with no wait); a \
                worker held from sending its call until the answer or the call timeout (then 504); dependencies with \
                no capacity limit, whose latency (exponential, plus 0.5–1.5 ms links) follows the fault plan, not \
                their load.",
            what_you_sacrifice: "Pooling. Split pools cannot lend idle workers, so with no fault they refuse more than \
                one pool of the same size (Erlang B at 4.4 erlangs: 6 shared workers refuse 15%, 3 + 3 refuse 24%); \
                each pool must be sized for its own peak (rate × latency, plus headroom); and while reviews is slow \
                it gets fewer answers than a shared pool, lending it inventory's idle workers, would give it.",
            at_10x: "Ten times the traffic needs ten times the workers at the same latency, so pools sized for today \
                refuse on a spike with nothing slow; with dozens of dependencies a pool each strands most workers \
                idle, which is why semaphores (no thread per pool) and adaptive per-dependency limits replace fixed \
                thread pools. A bulkhead only contains the damage: pair it with timeouts and a circuit breaker.",
            resembles: "Hystrix thread-pool bulkheads (a pool per dependency group, 10 threads and no queue by \
                default), Resilience4j's Bulkhead (a semaphore) and ThreadPoolBulkhead, Envoy's per-cluster circuit \
                breaking (max connections, pending requests and requests per upstream cluster), a connection pool \
                per tenant; Nygard's 'Release It!' named it after a ship's watertight compartments.",
            try_this: &[
                "Play `shared-pool`: at 10 s reviews turns 20× slower; within a second its calls hold nearly all 20 \
                 workers (the pool gauges), inventory's requests get 503s although inventory is fine, and \
                 `healthy-keeps-success` fails.",
                "Switch to `per-dependency` and replay: reviews' calls fill only its 10 workers, inventory's success \
                 stays above 99.9% and the check holds, while reviews succeeds less often than with the shared pool.",
                "Give reviews 90% of the workers: inventory keeps 2, too few for its own 2.2 erlangs (Erlang B \
                 refuses 43%), and the check fails even with bulkheads: size a pool by its load, not by fairness.",
                "Set the slowdown length to 0 and the workers to 6: with nothing slow, split pools refuse about 24% \
                 of requests and the shared pool about 15% — what pooling buys (Erlang B).",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=100, 4, "Client nodes; the request rate is split between them."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=10_000, 200, "Total Poisson request rate of the clients."),
        ParamSpec::live("reviews_pct", "Requests for reviews", "%", 0..=100, 50, "The rest are for inventory."),
        ParamSpec::live("workers", "Workers", "", 1..=1000, 20, "Calls the service makes at once: a worker is held \
            from its call's start to its answer or timeout, and a request that finds none it may use gets 503."),
        ParamSpec::live("reviews_share_pct", "Reviews' pool (per-dependency)", "%", 0..=100, 50, "Under \
            per-dependency, the share of the workers (rounded) only reviews' calls may hold; inventory has the rest."),
        ParamSpec::live("latency_ms", "Dependency latency", "ms", 1..=2000, 20,
            "Mean (exponential) time either dependency takes while healthy."),
        ParamSpec::live("call_timeout_ms", "Call timeout", "ms", 10..=30_000, 1000,
            "How long a worker waits for a dependency before it gives up and answers 504.").step(10),
        ParamSpec::live("client_timeout_ms", "Client timeout", "ms", 10..=60_000, 5000,
            "How long a client waits for the service's answer before counting a failure.").step(10),
        ParamSpec::setup("slow_at", "Slowdown starts", "s", 0..=3600, 10, "Scheduled fault: reviews turns slow."),
        ParamSpec::setup("slow_len", "Slowdown length", "s", 0..=3600, 10, "How long reviews stays slow (0: never)."),
        ParamSpec::setup("slow_factor", "Slowdown", "×", 1..=1000, 20, "Reviews' latency while slow, as a multiple."),
    ],
    strategies: &[
        StrategySpec::naive("shared-pool", "Shared pool", "Calls to either dependency take any free worker."),
        StrategySpec::fixed("per-dependency", "Pool per dependency",
            "Each dependency's calls may hold only its own share of the workers, however many others are idle."),
    ],
    faults: &[
        FaultSpec::node("slow", "Slow dependency", "It takes this many times its usual latency (1 heals it).")
            .value("×", 1..=1000, 20),
    ],
    checks: &[
        CheckSpec::new("healthy-keeps-success", "Healthy dependency keeps its success rate",
            "While one dependency is slow or down and the other healthy, at least 95% of the healthy one's \
             requests answered in the last second succeed (of its last 20 answers since, if fewer)."),
    ],
    metrics: &[
        MetricSpec::new("success_inventory", "Success: inventory", "%", Measure::Percent { num: "ok_inventory",
            rest: "failed_inventory" }),
        MetricSpec::new("success_reviews", "Success: reviews", "%", Measure::Percent { num: "ok_reviews",
            rest: "failed_reviews" }),
        MetricSpec::new("pool_inventory", "Workers held: inventory", "workers", Measure::Gauge("busy_inventory")),
        MetricSpec::new("pool_reviews", "Workers held: reviews", "workers", Measure::Gauge("busy_reviews")),
        MetricSpec::new("p99_inventory", "p99: inventory", "us", Measure::Quantile("latency_inventory_us", 0.99)),
        MetricSpec::new("p99_reviews", "p99: reviews", "us", Measure::Quantile("latency_reviews_us", 0.99)),
        MetricSpec::new("refused", "Refused: no free worker (503)", "req/s", Measure::Rate("refused")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Pools { Shared, PerDependency });

const SERVICE: NodeId = 0;
/// The dependencies are nodes 1 and 2, in the order of `NAME`; the clients follow.
const FIRST_DEP: NodeId = 1;
const INVENTORY: usize = 0;
const REVIEWS: usize = 1;
const SHARED: usize = 2;
/// The check's floor; below this many answers in the last second it judges the last this many.
const FLOOR_PCT: u64 = 95;
const MIN_ANSWERS: usize = 20;

/// Each dependency's name and the metrics named after it (metric names are static strings).
const NAME: [&str; 2] = ["inventory", "reviews"];
const OK: [&str; 2] = ["ok_inventory", "ok_reviews"];
const FAILED: [&str; 2] = ["failed_inventory", "failed_reviews"];
const BUSY: [&str; 2] = ["busy_inventory", "busy_reviews"];
const LATENCY: [&str; 2] = ["latency_inventory_us", "latency_reviews_us"];

/// A client's request names its dependency (0 inventory, 1 reviews) and the client's call id,
/// which the service's answer echoes; the service's call to a dependency has its own id.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(usize, CallId),
    Call(CallId),
    Reply(CallId),
    #[label = "200"]
    Served(usize, CallId),
    #[label = "503"]
    Refused(usize, CallId),
    #[label = "504"]
    TimedOut(usize, CallId),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    ClientTimeout(usize, CallId),
    CallTimeout(usize, CallId),
}

#[derive(Clone, Debug, Holds)]
pub enum Bh {
    Client(Client),
    Service(Service),
    Dependency(Dependency),
}

#[derive(Clone, Debug)]
pub struct Client {
    index: u32,
    arrivals: OpenLoop,
    /// Requests awaiting the service's answer, a table per dependency (each its latency histogram).
    calls: [Calls<()>; 2],
    /// Each dependency's recent answers, for the check.
    judges: [Judge; 2],
}

#[derive(Clone, Debug)]
pub struct Service {
    pools: Pools,
    /// Each dependency's pool (its share), then the shared one (all the workers). None queues: a
    /// call takes a worker of the pool the strategy names or is refused, and gives it back there.
    workers: Vec<Pool<()>>,
    /// Calls under way to each dependency, each with the client and request it is for, and the pool
    /// and seat of the worker it holds until answered or timed out.
    calls: [Calls<(NodeId, CallId, usize, Seat)>; 2],
}

#[derive(Clone, Debug)]
pub struct Dependency {
    dep: usize,
    health: Health,
    /// For the check: when it last changed health, crashed or restarted (true time).
    changed: Time,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Bh> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let calls = ["call_inventory_us", "call_reviews_us"].map(|h| Calls::new(h).counting_late("late_replies"));
    let workers = vec![Pool::new(0).bounded(0); 3];
    let service = Service { pools: Pools::from_id(setup.strategy()), workers, calls };
    assert_eq!(sim.add_node(Bh::Service(service)), SERVICE);
    for dep in [INVENTORY, REVIEWS] {
        let id = sim.add_node(Bh::Dependency(Dependency { dep, health: Health::Up, changed: Time::ZERO }));
        // One datacenter: the service reaches its dependencies faster than clients reach it.
        sim.net().set_link(SERVICE, id, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    }
    let clients = setup.param("clients");
    for index in 0..clients as u32 {
        let arrivals = OpenLoop::poisson(setup.param("rps") as f64 / clients as f64);
        let calls = LATENCY.map(|name| Calls::new(name).counting_late("late_answers"));
        let judges = [(); 2].map(|_| Judge::new(MICROS_PER_S, MIN_ANSWERS, MIN_ANSWERS));
        sim.add_node(Bh::Client(Client { index, arrivals, calls, judges }));
    }
    let slow = FaultWindow::secs(setup.param("slow_at"), setup.param("slow_len"));
    slow.custom(&mut sim, "slow", Some(FIRST_DEP + REVIEWS as NodeId), setup.param("slow_factor"), 1);
    sim.check("healthy-keeps-success", |w| {
        // Whether a dependency is sick (slow or down) now, and since when it has been as it is.
        let state = |d: usize| {
            let (id, dep) = (FIRST_DEP + d as NodeId, w.node::<Dependency>(FIRST_DEP + d as NodeId));
            (!w.is_up(id) || !dep.health.is_up(), dep.changed)
        };
        // The healthy one's answers since both became as they are: the last second's, or its last 20.
        for dep in [INVENTORY, REVIEWS] {
            let ((me_sick, me_since), (other_sick, other_since)) = (state(dep), state(1 - dep));
            if me_sick || !other_sick {
                continue;
            }
            let judges: Vec<&Judge> = w.all::<Client>().map(|(_, c)| &c.judges[dep]).collect();
            let v = verdict_of(judges, w.now, me_since.max(other_since));
            if v.fails(100 - FLOOR_PCT) {
                let (name, sick, failed) = (NAME[dep], NAME[1 - dep], v.describe(MICROS_PER_S));
                return Err(format!("{name} failed {failed} while {sick} was sick"));
            }
        }
        Ok(())
    });
    Box::new(sim)
}

impl Node for Bh {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Bh::Client(c) => c.arrivals.start(ctx, Timer::Send),
            Bh::Service(s) => s.configure(ctx),
            Bh::Dependency(d) => d.changed = ctx.truth(),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Bh::Service(s), Msg::Request(dep, request)) => s.request(from, request, dep, ctx),
            (Bh::Service(s), Msg::Reply(call)) => s.ended((from - FIRST_DEP) as usize, call, true, ctx),
            // A dependency has no limit on calls at once: it answers after its (perhaps slowed) latency.
            (Bh::Dependency(d), Msg::Call(call)) => {
                let base = ServiceTime::exponential_ms(ctx.param("latency_ms") as u64).sample_us(ctx.rng());
                if let Some(after) = d.health.latency(base) {
                    ctx.send_after(after, from, Msg::Reply(call));
                }
            }
            (Bh::Client(c), Msg::Served(dep, id)) => c.ended(dep, id, Some(true), ctx),
            (Bh::Client(c), Msg::Refused(dep, id) | Msg::TimedOut(dep, id)) => c.ended(dep, id, Some(false), ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Bh::Client(c), Timer::Send) => c.send(ctx),
            (Bh::Client(c), Timer::ClientTimeout(dep, id)) => c.ended(dep, id, None, ctx),
            (Bh::Service(s), Timer::CallTimeout(dep, call)) => s.ended(dep, call, false, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // Requests in flight are forgotten with the client; their answers come back late.
            Bh::Client(c) => c.calls.iter_mut().for_each(|calls| drop(calls.clear(ctx))),
            Bh::Service(s) => {
                let lost: usize = s.calls.iter_mut().map(|calls| calls.clear(ctx).len()).sum();
                s.workers.iter_mut().for_each(|pool| drop(pool.clear(ctx)));
                ctx.note(format!("{lost} calls under way lost; their clients time out"));
                s.publish(ctx);
            }
            // Its health is the world's (a slow disk, a slow database), not its memory's: kept.
            Bh::Dependency(d) => d.changed = ctx.truth(),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Bh::Client(c), Control::Param { id: "rps", value }) => {
                c.arrivals.set_rate_per_s(value as f64 / ctx.param("clients") as f64, ctx, Timer::Send)
            }
            // Calls under way keep their workers (the old pool drains); new calls take the new pools'.
            (Bh::Service(s), Control::Strategy(id)) => s.pools = Pools::from_id(id),
            (Bh::Service(s), Control::Param { .. }) => s.configure(ctx),
            (Bh::Dependency(d), Control::Custom { id: "slow", value }) => {
                let health = if value > 1 { Health::times_pct(value as u32 * 100) } else { Health::Up };
                if health != d.health {
                    (d.health, d.changed) = (health, ctx.truth());
                    ctx.note(format!("{} is {health}", NAME[d.dep]));
                }
            }
            // Other parameters are read where they are used; only a dependency slows down.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Bh::Client(c) => NodeView::new(NodeKind::Client, 0, numbered("client", c.index as u64)),
            Bh::Service(s) => s.view(),
            Bh::Dependency(d) => {
                let tone = if d.health.is_up() { Tone::Good } else { Tone::Warn };
                NodeView::new(NodeKind::Service, 2, NAME[d.dep]).badge(d.health.to_string(), tone)
            }
        }
    }
}

impl Client {
    fn send(&mut self, ctx: &mut Ctx<Bh>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        let dep = if ctx.rng().below(100) < ctx.param("reviews_pct") as u64 { REVIEWS } else { INVENTORY };
        let timeout = ctx.param("client_timeout_ms") as Micros * MICROS_PER_MS;
        let id = self.calls[dep].start(ctx, (), timeout, |id| Timer::ClientTimeout(dep, id));
        ctx.send(SERVICE, Msg::Request(dep, id));
    }

    /// Answered (`Some(ok)`) or given up on (`None`, counted as a failure; a later answer is late):
    /// what the user saw, and for the check the same by true time.
    fn ended(&mut self, dep: usize, id: CallId, ok: Option<bool>, ctx: &mut Ctx<Bh>) {
        let call = if ok.is_some() { self.calls[dep].reply(id, ctx) } else { self.calls[dep].timeout(id) };
        let (Some(()), ok) = (call, ok == Some(true)) else { return };
        ctx.count(if ok { OK[dep] } else { FAILED[dep] }, 1);
        self.judges[dep].record(ctx.truth(), !ok, 0);
    }
}

impl Service {
    /// Reads the pool's size and split again: a smaller pool evicts no call, it admits fewer.
    fn configure(&mut self, ctx: &mut Ctx<Bh>) {
        let all = ctx.param("workers") as u32;
        let reviews = ((all as u64 * ctx.param("reviews_share_pct") as u64 + 50) / 100) as u32;
        // No pool queues, so a bigger one has no waiter to grant.
        self.workers.iter_mut().zip([all - reviews, reviews, all]).for_each(|(p, n)| drop(p.set_size(n, ctx)));
    }

    fn busy(&self, dep: usize) -> u64 {
        self.calls[dep].len() as u64
    }

    /// The strategy names the pool a call to `dep` takes its worker from.
    fn request(&mut self, client: NodeId, request: CallId, dep: usize, ctx: &mut Ctx<Bh>) {
        let pool = if self.pools == Pools::Shared { SHARED } else { dep };
        let Ok(seat) = self.workers[pool].try_acquire(()) else {
            ctx.count("refused", 1);
            return ctx.send(client, Msg::Refused(dep, request));
        };
        let timeout = ctx.param("call_timeout_ms") as Micros * MICROS_PER_MS;
        let call = self.calls[dep].start(ctx, (client, request, pool, seat), timeout, |id| Timer::CallTimeout(dep, id));
        ctx.send(FIRST_DEP + dep as NodeId, Msg::Call(call));
        self.publish(ctx);
    }

    /// A call ended: answered, or timed out. An answer to a call no longer pending is late: dropped.
    fn ended(&mut self, dep: usize, call: CallId, answered: bool, ctx: &mut Ctx<Bh>) {
        let job = if answered { self.calls[dep].reply(call, ctx) } else { self.calls[dep].timeout(call) };
        let Some((client, request, pool, seat)) = job else { return };
        self.workers[pool].release(seat, ctx);
        ctx.send(client, if answered { Msg::Served(dep, request) } else { Msg::TimedOut(dep, request) });
        self.publish(ctx);
    }

    fn publish(&self, ctx: &mut Ctx<Bh>) {
        for dep in [INVENTORY, REVIEWS] {
            ctx.gauge(BUSY[dep], self.busy(dep) as i64);
        }
    }

    /// The pools as gauges: a shared pool's workers by the dependency that holds them, or each bulkhead.
    fn view(&self) -> NodeView {
        let (busy, v) =
            ([INVENTORY, REVIEWS].map(|d| self.busy(d) as i64), NodeView::new(NodeKind::Service, 1, "service"));
        match self.pools {
            Pools::Shared => {
                let (used, all) = (busy[0] + busy[1], self.workers[SHARED].size() as i64);
                v.gauge("workers on inventory", busy[0], all)
                    .gauge("workers on reviews", busy[1], all)
                    .badge(format!("shared pool {used}/{all}"), if used >= all { Tone::Bad } else { Tone::Neutral })
            }
            Pools::PerDependency => {
                let size = |d: usize| self.workers[d].size() as i64;
                v.gauge("inventory pool", busy[0], size(INVENTORY))
                    .gauge("reviews pool", busy[1], size(REVIEWS))
                    .badge("bulkheads", Tone::Good)
                    .badge_if(busy[0] >= size(INVENTORY), "inventory pool full", Tone::Warn)
                    .badge_if(busy[1] >= size(REVIEWS), "reviews pool full", Tone::Warn)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::queueing;
    use crate::parts::testing::samples;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("bulkhead", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        crate::parts::testing::run_sampled(&SPEC, &recipe, secs, &[]).0
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    /// A dependency's success share over the whole run.
    fn success(r: &dyn Run, dep: usize) -> f64 {
        let (ok, failed) = (counter(r, OK[dep]), counter(r, FAILED[dep]));
        ok as f64 / (ok + failed) as f64
    }

    /// When the check first failed, and why.
    fn violation(r: &dyn Run) -> Option<(f64, String)> {
        r.checks()[0].violation.as_ref().map(|v| (v.at.as_secs_f64(), v.why.clone()))
    }

    #[test]
    fn split_pools_refuse_what_erlang_b_predicts_and_more_than_a_shared_one() {
        // Try this, step 4, and the theory. With nothing slow, a worker is held for a link each
        // way (uniform 0.5–1.5 ms, mean 1 ms) and the dependency's exponential 20 ms: 22 ms on
        // average. The pool has no queue, so it is M/G/c/c, whose refusal share is Erlang's B
        // formula for the offered load a = λ × 22 ms, whatever the hold time's distribution
        // (insensitivity; Gross & Harris §2.6) — the M/M/c/c value of mmck. Poisson clients
        // behind independent link delays make Poisson arrivals at the service, and the coin that
        // picks a dependency splits them into independent Poisson streams, which see the time
        // averages (PASTA). Shared: 200/s on 6 workers, a = 4.4, B = 14.7%. Split: 100/s on 3
        // workers each, a = 2.2, B = 24.0%. Over 8 seeds of 2,000 s (400k requests) the refused
        // share fell within ±1.4% of B (s.d. 0.6% shared, 0.5% split): ±3% is 5 of them, while
        // a worker more or less moves B by over 40%, and forgetting the links (20 ms) by 20%.
        let mu = 1.0 / 0.022;
        let cases =
            [("shared-pool", queueing::mmck(200.0, mu, 6, 6)), ("per-dependency", queueing::mmck(100.0, mu, 3, 3))];
        let mut shares = Vec::new();
        for (st, theory) in cases {
            let r = run(recipe(st, 3).with_param("slow_len", 0).with_param("workers", 6), 2000);
            let asked: i64 = OK.iter().chain(&FAILED).map(|c| counter(r.as_ref(), c)).sum();
            let share = counter(r.as_ref(), "refused") as f64 / asked as f64;
            assert!(
                (share - theory.block).abs() <= 0.03 * theory.block,
                "{st}: refused {share:.4}, Erlang B {:.4}",
                theory.block
            );
            shares.push(share);
        }
        // What the step says: about 15% shared, about 24% split.
        assert!((0.14..0.16).contains(&shares[0]) && (0.23..0.25).contains(&shares[1]), "{shares:?}");
    }

    #[test]
    fn the_check_judges_at_a_low_rate_too() {
        // At 20 req/s inventory answers 10 a second, under the 20 a second needs: a "second with
        // 20 answers" rule never judged. The judge takes inventory's last 20 answers since reviews
        // turned slow. With 4 shared workers, reviews' 10 calls/s × 400 ms = 4 erlangs hold them
        // nearly all (Erlang B: 31% of reviews' calls refused even alone), so inventory's are refused
        // too: the check fails within the slowdown, judging the last answers, not a second.
        for seed in 1..=3 {
            let r = run(recipe("shared-pool", seed).with_param("rps", 20).with_param("workers", 4), 20);
            let (at, why) = violation(r.as_ref()).unwrap_or_else(|| panic!("seed {seed}: the check held"));
            assert!((10.0..20.0).contains(&at) && why.contains("of the last"), "seed {seed}: at {at} s: {why}");
        }
    }

    #[test]
    fn try_shared_pool_the_slow_dependency_takes_every_worker() {
        // Step 1: from 10 s reviews takes 400 ms on average; 100 calls/s of it would hold some
        // 37 workers, and the shared pool has 20 — so reviews' calls hold nearly all of them and
        // inventory's requests are refused within the first second of the slowdown.
        for seed in 1..=5 {
            let r = run(recipe("shared-pool", seed), 30);
            let (at, why) = violation(r.as_ref()).unwrap_or_else(|| panic!("seed {seed}: the check held"));
            assert!((10.0..11.1).contains(&at) && why.starts_with("inventory"), "seed {seed}: at {at} s: {why}");
            let held = samples(r.as_ref(), "pool_reviews", 11.0, 20.0);
            let mean = held.iter().sum::<f64>() / held.len() as f64;
            assert!(mean >= 17.0, "seed {seed}: reviews held {mean:.1} of 20 workers on average");
            assert!(success(r.as_ref(), INVENTORY) < 0.9, "seed {seed}");
        }
    }

    #[test]
    fn try_per_dependency_inventory_keeps_its_success_and_reviews_gets_less() {
        // Step 2: reviews' calls are held to its 10 workers; inventory's 10 carry its 2.2 erlangs
        // (Erlang B refuses 0.008%), and reviews, lent no idle workers, succeeds less often.
        for seed in 1..=5 {
            let (split, shared) = (run(recipe("per-dependency", seed), 30), run(recipe("shared-pool", seed), 30));
            assert!(violation(split.as_ref()).is_none(), "seed {seed}");
            assert!(success(split.as_ref(), INVENTORY) > 0.999, "seed {seed}");
            let most = samples(split.as_ref(), "pool_reviews", 0.0, 30.0).into_iter().fold(0.0, f64::max);
            assert!(most <= 10.0, "seed {seed}: reviews held {most} workers");
            let (a, b) = (success(split.as_ref(), REVIEWS), success(shared.as_ref(), REVIEWS));
            assert!(a + 0.03 < b, "seed {seed}: reviews succeeded {a:.3} split, {b:.3} shared");
        }
    }

    #[test]
    fn try_a_bulkhead_too_small_for_its_load_fails_on_its_own() {
        // Step 3: 90% for reviews leaves inventory 2 workers for 2.2 erlangs: B(2.2, 2) = 43%.
        let b = queueing::mmck(100.0, 1.0 / 0.022, 2, 2).block;
        assert!((b - 0.43).abs() < 0.005, "{b}");
        for seed in 1..=5 {
            let r = run(recipe("per-dependency", seed).with_param("reviews_share_pct", 90), 30);
            let (_, why) = violation(r.as_ref()).unwrap_or_else(|| panic!("seed {seed}: the check held"));
            assert!(why.starts_with("inventory"), "{why}");
            let refused = 1.0 - success(r.as_ref(), INVENTORY);
            assert!((refused - b).abs() < 0.06, "seed {seed}: inventory refused {refused:.3}, B = {b:.3}");
        }
    }

    #[test]
    fn the_check_judges_whichever_dependency_stays_healthy_and_a_crash_counts_as_sick() {
        // Slowing inventory instead (a user's fault on node 1), or crashing reviews (its calls
        // then time out after 1 s): the shared pool fails the other one, the bulkheads hold.
        let slow_inventory = ActionKind::Fault(Fault::custom_on("slow", FIRST_DEP, 20));
        let crash_reviews = ActionKind::Fault(Fault::Crash { node: FIRST_DEP + REVIEWS as NodeId });
        for (action, healthy) in [(slow_inventory, "reviews"), (crash_reviews, "inventory")] {
            for seed in 1..=3 {
                let plan =
                    |st| recipe(st, seed).with_param("slow_len", 0).with_action(Time::from_secs(5), action.clone());
                let (_, why) = violation(run(plan("shared-pool"), 15).as_ref()).expect("the shared pool fails");
                assert!(why.starts_with(healthy), "{action}: {why}");
                assert!(violation(run(plan("per-dependency"), 15).as_ref()).is_none(), "{action}, seed {seed}");
            }
        }
    }

    #[test]
    fn the_view_shows_who_holds_the_workers_and_which_dependency_is_slow() {
        let at_15s = |st: &str| {
            let frame = run(recipe(st, 1), 15).frame(0);
            frame.nodes.into_iter().map(|n| n.view).collect::<Vec<_>>()
        };
        let gauge = |v: &NodeView, label: &str| {
            let g = v.gauges.iter().find(|g| g.label == label).unwrap_or_else(|| panic!("no gauge {label}"));
            (g.value, g.max)
        };
        let shared = at_15s("shared-pool");
        let reviews = &shared[FIRST_DEP as usize + REVIEWS];
        assert_eq!((reviews.label.as_str(), reviews.badges[0].text.as_str()), ("reviews", "slow ×20"));
        assert_eq!(shared[FIRST_DEP as usize].badges[0].text, "up");
        let ((inv, all), (rev, _)) =
            (gauge(&shared[0], "workers on inventory"), gauge(&shared[0], "workers on reviews"));
        assert!(all == 20 && rev >= 14 && inv + rev <= 20, "{inv} + {rev} of {all}");
        assert!(shared[0].badges[0].text.starts_with("shared pool"));
        let split = at_15s("per-dependency");
        let ((_, inv_max), (rev, rev_max)) = (gauge(&split[0], "inventory pool"), gauge(&split[0], "reviews pool"));
        assert!(inv_max == 10 && rev_max == 10 && rev > 5, "reviews holds {rev} of its {rev_max}");
    }

    #[test]
    fn a_slow_dependency_holds_the_workers_littles_law_says() {
        // The note's "100 calls/s × 0.37 s ≈ 37 workers": with a pool too big to refuse anyone
        // (1,000 workers), reviews' calls are an M/G/∞ system and the mean number held is λ·E[S]
        // (Little's law). A call holds its worker for the two links (2 ms on average) and the
        // slowed latency, exponential with mean 400 ms, cut at the 1 s timeout:
        // E[S] ≈ 2 ms + 400 ms × (1 − e^(−998/400)) = 369 ms, so 36.9 workers. The gauge is sampled
        // every 250 ms over 600 s of slowdown; over 8 seeds the samples' mean fell within ±1.3% of
        // λ·E[S] (s.d. 0.75%: the number held is Poisson, s.d. 6.1, and forgets in about 0.4 s), so
        // ±3% is 4 of them, while a hold the timeout did not cut (402 ms) would be 9% more.
        let want = 100.0 * (0.002 + 0.4 * (1.0 - libm::exp(-0.998 / 0.4)));
        let r = run(recipe("shared-pool", 4).with_param("workers", 1000).with_param("slow_len", 600), 610);
        let held = samples(r.as_ref(), "pool_reviews", 11.0, 610.0);
        let mean = held.iter().sum::<f64>() / held.len() as f64;
        assert!((mean - want).abs() <= 0.03 * want, "reviews held {mean:.2} workers on average, Little says {want:.2}");
        assert_eq!(counter(r.as_ref(), "refused"), 0);
    }

    #[test]
    fn switching_to_bulkheads_mid_slowdown_spares_inventory_at_once() {
        // Calls under way keep their workers when the strategy changes; new calls go by the new
        // pools. Reviews holds some 19 workers at 14 s, but inventory's own pool is nearly empty,
        // so from the switch on inventory's requests are served (a 503 sent before it may still be
        // on the wire for 3 ms): only as rarely refused as Erlang B says (0.008%, 1 in 12,000).
        let switch = ActionKind::SetStrategy { id: "per-dependency".into() };
        for seed in 1..=5 {
            let (mut r, problems) =
                open(&SPEC, &recipe("shared-pool", seed).with_action(Time::from_secs(14), switch.clone()));
            assert!(problems.is_empty());
            r.run_until(Time::from_ms(14_003), u64::MAX);
            let before = counter(r.as_ref(), FAILED[INVENTORY]);
            r.run_until(Time::from_secs(20), u64::MAX);
            let after = counter(r.as_ref(), FAILED[INVENTORY]) - before;
            assert!(before > 50 && after <= 1, "seed {seed}: inventory failed {before} times before, {after} after");
        }
    }
}
