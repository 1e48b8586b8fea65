//! Cache invalidation: readers fill a cache from a database that writers change. TTL alone serves values
//! up to a TTL old; deleting on write races a slow reader's set; an event bus delays and loses
//! invalidations; versions and a single owner of writes keep an older value from landing last.

use crate::parts::arrivals::OpenLoop;
use crate::parts::broker::Delivery;
use crate::parts::bus::{Bus, Wiring};
use crate::parts::calls::CallId;
use crate::parts::degraded::FaultWindow;
use crate::parts::owner::{Owner, Step};
use crate::parts::staleness::{Commits, SetOutcome, VersionCache};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "cache-invalidation",
        title: "Cache invalidation",
        category: "Caching",
        seeds: &["S1#19", "S1#20", "S3#1", "S3#19", "S3#28"],
        summary: "Writers change rows that readers cache. TTL alone serves stale values for up to a TTL; deleting \
                  on write loses to a slow reader who sets the old row after the delete; a bus delays and loses \
                  invalidations. Versions, or one owner of every write, keep an older value from landing last.",
        note: Note {
            what_can_go_wrong: "A reader misses, reads the row, and sets it in the cache; a writer updates the row \
                and deletes the key. If the writer's delete lands between the reader's read and its set, the old \
                value goes back in and stays until its TTL (the stale-set race). A lost or late invalidation does \
                the same. The model: keys are read and written uniformly, reads and writes are Poisson; the \
                database is M/M/c (64 connections, exponential times) and a read's snapshot is taken when it \
                arrives; every link takes 0.3–1 ms; cache and database share one node so staleness is judged \
                exactly (a read is stale by the time since the first version newer than the one it got was \
                committed); the bus is a queue the cache's node polls, an event due a fixed delay after the \
                writer publishes it, lost at the bus with the given chance; cache operations are not retried.",
            what_you_sacrifice: "Shorter TTLs mean more misses and database load. Versioned sets need the cache to \
                compare versions in one step (a script or memcached's cas) and writers to send the new value. An \
                event bus adds its delay to every invalidation and needs at-least-once delivery to be safe. A \
                single owner serializes every write and fill through one process: its queue is everyone's latency.",
            at_10x: "Ten times the writes on the same keys make every race window ten times likelier to hold a \
                commit; ten times the readers make more of them miss together after each delete; a bus consumer \
                that falls behind delays every invalidation; one owner becomes a bottleneck and must be sharded \
                by key (one owner per shard, as Kafka partitions do).",
            resembles: "Facebook's memcache leases and McSqueal (invalidation from the MySQL commit log), Redis \
                cache-aside with DEL on write, Debezium-to-Kafka invalidation, memcached cas, Rails' versioned \
                cache keys, CDN purges (S3#28: a purge lost or a stale copy set after it serves the wrong content).",
            try_this: &[
                "Play `ttl-only`: nothing invalidates, so with writes at 0.4/s per key and a 5 s TTL about 57% of \
                 cache hits are stale — 1 − (1 − e^(−2))/2 — some of them by nearly the whole TTL; \
                 `staleness-within-promise` fails at once.",
                "Switch to `delete-on-write`: stale reads fall tenfold, but readers that read the old row set it \
                 after the writer's delete, most while the database is slow (10–20 s): `no-older-overwrite` fails.",
                "Try `event-bus`: each invalidation lands `bus_delay_ms` after its commit; set `bus_loss_pct` to 10 \
                 and lost events leave keys stale for seconds, up to the TTL.",
                "Switch to `versioned` or `single-owner`: both checks hold. Versioned refuses the late sets; the \
                 owner never races, but while the database is slow its queue of writes and fills grows.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("keys", "Keys", "", 1..=1000, 50, "Distinct rows, read and written uniformly."),
        ParamSpec::live("read_rps", "Reads", "req/s", 0..=20_000, 1000, "Poisson reads, over 4 readers."),
        ParamSpec::live("write_rps", "Writes", "req/s", 0..=2000, 20, "Poisson writes, spread over the writers."),
        ParamSpec::setup("writers", "Writers", "", 1..=8, 2, "Services writing the rows (S3#1: several update it)."),
        ParamSpec::live("ttl_ms", "TTL", "ms", 100..=600_000, 5000, "How long a cached value lives.").step(100),
        ParamSpec::live("db_ms", "Database time", "ms", 1..=5000, 10, "Mean (exponential) time of a query."),
        ParamSpec::live("bus_delay_ms", "Bus delay", "ms", 0..=10_000, 50, "event-bus: commit to delivery.").step(10),
        ParamSpec::live("bus_loss_pct", "Bus loss", "%", 0..=100, 2, "event-bus: chance an event is lost."),
        ParamSpec::live("promise_ms", "Staleness promise", "ms", 10..=60_000, 200,
            "How stale a read from the cache may be before `staleness-within-promise` fails.").step(10),
    ],
    strategies: &[
        StrategySpec::naive("ttl-only", "TTL only", "Values expire after the TTL; writes touch only the database."),
        StrategySpec::naive("delete-on-write", "Delete on write",
            "The writer deletes the key after its commit; a reader that read the old row may set it after the delete."),
        StrategySpec::naive("event-bus", "Event-driven (bus)",
            "The writer publishes an invalidation on a bus (delay, loss) after its commit; the cache's consumer deletes the key."),
        StrategySpec::fixed("versioned", "Versioned sets",
            "Writers set the new value with its version; the cache takes a set only if its version is newer."),
        StrategySpec::fixed("single-owner", "Single owner of writes",
            "One owner makes every write and fill, one at a time: database, then cache. Readers never set."),
    ],
    faults: &[FaultSpec::global("db-slow", "Database slowdown", "Multiplies query times (1 heals).")
        .value("latency ×", 1..=100, 10)],
    checks: &[
        CheckSpec::new("staleness-within-promise", "Reads within the staleness promise",
            "The latest read served from the cache was at most `promise_ms` behind the database."),
        CheckSpec::new("no-older-overwrite", "No older value set over a newer one",
            "The latest cache set did not bring back a version older than one the cache held or was told to drop \
             within the TTL."),
    ],
    metrics: &[
        MetricSpec::new("stale_rate", "Stale reads", "%", Measure::Percent { num: "stale_reads", rest: "fresh_reads" }),
        MetricSpec::new("max_staleness", "Max staleness", "us", Measure::Gauge("max_staleness_us")),
        MetricSpec::new("staleness_p99", "Staleness p99 (stale reads)", "us", Measure::Quantile("staleness_us", 0.99)),
        MetricSpec::new("stale_sets", "Sets older than the database", "", Measure::Count("stale_sets")),
        MetricSpec::new("hit_ratio", "Cache hits", "%", Measure::Percent { num: "hits", rest: "misses" }),
        MetricSpec::new("events_lost", "Invalidations lost on the bus", "", Measure::Count("events_lost")),
        MetricSpec::new("owner_queue", "Owner's queue", "jobs", Measure::Gauge("owner_queue")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

const DATA: NodeId = 0;
const BUS: NodeId = 1;
const OWNER: NodeId = 2;
const READERS: u32 = 4;
const DB_CONNS: u32 = 64;
/// The owner's wait for an answer before it re-reads the row and sets it again; also how long
/// the bus hides a delivered event before handing it out again, and how often the cache polls.
const PATIENCE: Micros = MICROS_PER_S;

strategies!(SPEC, Strategy { TtlOnly, DeleteOnWrite, EventBus, Versioned, SingleOwner });
use Strategy::*;

/// `call`: the owner's call the message belongs to (`None`: a reader's or writer's own). A
/// `Write` goes to the database (from the owner, with its call) or to the owner (from a writer);
/// `Ask`: the cache's invalidator asks for the next event, acknowledging the last (id, receipt).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Get { key: u32 },
    Hit { key: u32, version: u64 },
    Miss { key: u32 },
    Load { key: u32, call: Option<CallId> },
    Row { key: u32, version: u64, call: Option<CallId> },
    Write { key: u32, call: Option<CallId> },
    Committed { key: u32, version: u64, call: Option<CallId> },
    Set { key: u32, version: u64, cas: bool, call: Option<CallId> },
    Stored { call: CallId },
    Delete { key: u32, version: u64 },
    Publish { key: u32, version: u64 },
    Ask { done: Option<(u64, u64)> },
    Event(Delivery<(u32, u64)>),
    Fill { key: u32 },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Tick,
    DbDone(Slot),
    BusWake,
    Repoll,
    Owner(CallId),
}

#[derive(Clone, Debug, Holds)]
pub enum Ci {
    Data(Box<Data>),
    Bus(Box<Bus<(u32, u64)>>),
    Owner(Box<Owner<u32>>),
    App(App),
}

/// A reader or a writer service: an open loop of operations on uniformly drawn keys.
#[derive(Clone, Debug)]
pub struct App {
    writer: bool,
    index: u32,
    src: OpenLoop,
    strategy: Strategy,
}

/// A database job: who asked, the key, the owner's call, and a read's snapshot (`None`: a write).
type Job = (NodeId, u32, Option<CallId>, Option<u64>);

/// The cache and the database on one node, so that every read is judged against the truth.
#[derive(Clone, Debug)]
pub struct Data {
    keys: u32,
    conns: Station<Job>,
    /// The rows, with each version's true commit time: the judge's record.
    db: Commits<u32>,
    cache: VersionCache<u32>,
    /// The latest read from the cache, if it was staler than the promise: key, version, staleness.
    over: Option<(u32, u64, Micros)>,
    /// The latest set, if it brought back an older version: key, its version, the newer one.
    went_back: Option<(u32, u64, u64)>,
    at: Time,
}

/// How the bus node hands an invalidation to the cache.
fn wiring() -> Wiring<Ci, (u32, u64)> {
    Wiring { timer: Timer::BusWake, wrap: Msg::Event }
}

fn sim(setup: &Setup) -> Sim<Ci> {
    let p = |id| setup.param(id);
    let strategy = Strategy::from_id(setup.strategy());
    let mut sim: Sim<Ci> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 300, hi: 1_000 }));
    let (conns, keys) = (Station::new(DB_CONNS, Service::exponential_ms(p("db_ms") as u64)), p("keys") as u32);
    let (db, cache, over, went_back) = (Commits::new(64), VersionCache::default(), None, None);
    let data = Data { keys, conns, db, cache, over, went_back, at: Time::ZERO };
    assert_eq!(sim.add_node(Ci::Data(Box::new(data))), DATA);
    assert_eq!(sim.add_node(Ci::Bus(Box::new(Bus::new(PATIENCE)))), BUS);
    assert_eq!(sim.add_node(Ci::Owner(Box::new(Owner::new(PATIENCE, "owner_step_us")))), OWNER);
    let writers = p("writers") as u32;
    let apps = (0..READERS).map(|i| (false, i, READERS, "read_rps"));
    for (writer, index, n, rate) in apps.chain((0..writers).map(|i| (true, i, writers, "write_rps"))) {
        let src = OpenLoop::poisson(p(rate) as f64 / n as f64);
        sim.add_node(Ci::App(App { writer, index, src, strategy }));
    }
    FaultWindow::secs(10, 10).custom(&mut sim, "db-slow", None, 10, 1);
    sim.check("staleness-within-promise", |w| match w.node::<Box<Data>>(DATA).over {
        Some((key, v, s)) => Err(format!("key {key}: a read got v{v}, {} ms after a newer one's commit", s / 1000)),
        None => Ok(()),
    });
    sim.check("no-older-overwrite", |w| match w.node::<Box<Data>>(DATA).went_back {
        Some((key, older, newer)) => Err(format!("key {key}: v{older} was set after the cache had seen v{newer}")),
        None => Ok(()),
    });
    sim
}

impl Node for Ci {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ci::App(a) => a.src.start(ctx, Timer::Tick),
            Ci::Data(_) => self.on_timer(Timer::Repoll, ctx),
            Ci::Bus(b) => b.restarted([DATA], ctx, wiring()),
            Ci::Owner(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        let now = ctx.now();
        match (self, msg) {
            (Ci::Data(d), msg) => d.on_message(from, msg, now, ctx),
            (Ci::App(_), Msg::Hit { .. }) => {}
            (Ci::App(_), Msg::Miss { key }) => ctx.send(DATA, Msg::Load { key, call: None }),
            (Ci::App(a), Msg::Row { key, version, call: None }) => match a.strategy {
                SingleOwner => ctx.send(OWNER, Msg::Fill { key }),
                s => ctx.send(DATA, Msg::Set { key, version, cas: s == Versioned, call: None }),
            },
            (Ci::App(a), Msg::Committed { key, version, call: None }) => match a.strategy {
                DeleteOnWrite => ctx.send(DATA, Msg::Delete { key, version }),
                Versioned => ctx.send(DATA, Msg::Set { key, version, cas: true, call: None }),
                EventBus => ctx.send(BUS, Msg::Publish { key, version }),
                TtlOnly | SingleOwner => {} // nothing, or the owner does it
            },
            (Ci::Bus(b), Msg::Publish { key, version }) => {
                let loss = Ppm::from_percent(ctx.param("bus_loss_pct").clamp(0, 100) as u32);
                let kept = b.publish((key, version), ctx.param_ms("bus_delay_ms"), loss, ctx, wiring());
                ctx.count("events_lost", !kept as i64);
            }
            (Ci::Bus(b), Msg::Ask { done }) => b.ask(from, done, ctx, wiring()),
            (Ci::Owner(o), Msg::Write { key, call: None }) => step(o.write(key, ctx, Timer::Owner), o, ctx),
            (Ci::Owner(o), Msg::Fill { key }) => step(o.fill(key, ctx, Timer::Owner), o, ctx),
            (Ci::Owner(o), Msg::Row { version, call: Some(c), .. } | Msg::Committed { version, call: Some(c), .. }) => {
                step(o.row(c, version, ctx, Timer::Owner), o, ctx)
            }
            (Ci::Owner(o), Msg::Stored { call }) => step(o.stored(call, ctx, Timer::Owner), o, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ci::App(a), Timer::Tick) => {
                a.src.on_timer(ctx, Timer::Tick);
                let keys = ctx.param("keys").max(1) as u64;
                let key = ctx.rng().below(keys) as u32;
                let msg = if a.writer { Msg::Write { key, call: None } } else { Msg::Get { key } };
                ctx.send(if a.writer && a.strategy == SingleOwner { OWNER } else { DATA }, msg);
            }
            (Ci::Data(d), Timer::DbDone(slot)) => d.done(slot, ctx),
            (Ci::Data(_), Timer::Repoll) => {
                // Asking again is harmless (the bus keeps one place per consumer) and repairs a lost poll.
                ctx.send(BUS, Msg::Ask { done: None });
                ctx.set_timer(PATIENCE, Timer::Repoll);
            }
            (Ci::Bus(b), Timer::BusWake) => b.dispatch(ctx, wiring()),
            (Ci::Owner(o), Timer::Owner(c)) => step(o.timed_out(c, ctx, Timer::Owner), o, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ci::Data(d) => {
                // The cache comes back empty and the queries in flight are lost; the rows are durable.
                d.cache.restart();
                d.conns.crash(ctx);
            }
            Ci::Bus(b) => b.crashed(),
            Ci::Owner(o) => o.crashed(ctx),
            Ci::App(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ci::App(a), Control::Strategy(s)) => a.strategy = Strategy::from_id(s),
            (Ci::App(a), Control::Param { id, value }) if id == if a.writer { "write_rps" } else { "read_rps" } => {
                let n = if a.writer { ctx.param("writers") } else { READERS as i64 };
                a.src.set_rate_per_s(value as f64 / n as f64, ctx, Timer::Tick)
            }
            (Ci::Data(d), Control::Param { id: "db_ms", value }) => {
                d.conns.set_service(Service::exponential_ms(value.max(1) as u64))
            }
            (Ci::Data(d), Control::Custom { id: "db-slow", value }) => {
                d.conns.set_slowdown_pct(value.clamp(1, 100) as u32 * 100)
            }
            _ => {} // the other parameters are read where they are used (`ctx.param`)
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ci::App(a) => {
                let role = if a.writer { "writer" } else { "reader" };
                NodeView::new(NodeKind::Service, 0, numbered(role, a.index as u64))
            }
            Ci::Owner(o) => NodeView::new(NodeKind::Service, 1, "owner").gauge("queued", o.queued() as i64, 100),
            Ci::Bus(b) => b.gauges(NodeView::new(NodeKind::Queue, 1, "bus")),
            Ci::Data(d) => {
                let stale = (0..d.keys).filter(|k| d.cache.get(k, d.at).is_some_and(|v| v < d.db.version(k))).count();
                NodeView::new(NodeKind::Database, 2, "cache + database")
                    .gauge("cached keys", d.cache.stored() as i64, d.keys as i64)
                    .gauge("stale keys", stale as i64, d.keys as i64)
                    .gauge("queries", d.conns.held() as i64, DB_CONNS as i64)
                    .badge_if(stale > 0, format!("{stale} stale"), Tone::Bad)
            }
        }
    }
}

impl Data {
    fn on_message(&mut self, from: NodeId, msg: Msg, now: Time, ctx: &mut Ctx<Ci>) {
        self.at = now;
        let ttl = ctx.param_ms("ttl_ms");
        match msg {
            Msg::Get { key } => {
                // A miss is answered from the database: fresh.
                let version = self.cache.get(&key, now);
                ctx.count(if version.is_some() { "hits" } else { "misses" }, 1);
                ctx.count("fresh_reads", version.is_none() as i64);
                let staleness = version.and_then(|v| self.db.judge(&key, v, ctx));
                let over = staleness.filter(|&s| s > ctx.param_ms("promise_ms"));
                self.over = over.zip(version).map(|(s, v)| (key, v, s));
                ctx.send(from, version.map_or(Msg::Miss { key }, |version| Msg::Hit { key, version }));
            }
            // A read's snapshot is the row as it arrives (the model's MVCC read).
            Msg::Load { key, call } => {
                _ = self.conns.offer((from, key, call, Some(self.db.version(&key))), ctx, Timer::DbDone)
            }
            Msg::Write { key, call } => _ = self.conns.offer((from, key, call, None), ctx, Timer::DbDone),
            Msg::Set { key, version, cas, call } => {
                ctx.count("stale_sets", (self.db.version(&key) > version) as i64);
                let outcome = self.cache.set(key, version, cas, now, ttl);
                ctx.count("sets_refused", (outcome == SetOutcome::Refused) as i64);
                self.went_back = match outcome {
                    SetOutcome::Stored { went_back: Some(newer) } => Some((key, version, newer)),
                    _ => None,
                };
                if let Some(call) = call {
                    ctx.send(from, Msg::Stored { call });
                }
            }
            Msg::Delete { key, version } => _ = self.cache.invalidate(key, version, now, ttl),
            Msg::Event(d) => {
                self.cache.invalidate(d.job.0, d.job.1, now, ttl);
                ctx.send(BUS, Msg::Ask { done: Some((d.id, d.receipt)) });
            }
            other => ctx.unhandled(&other),
        }
    }

    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Ci>) {
        // `None`: a query lost in a crash of the node.
        match self.conns.done(slot, ctx, Timer::DbDone).map(|f| f.job) {
            Some((to, key, call, Some(version))) => ctx.send(to, Msg::Row { key, version, call }),
            Some((to, key, call, None)) => {
                let version = self.db.write(key, ctx.truth());
                ctx.send(to, Msg::Committed { key, version, call });
            }
            None => {}
        }
    }
}

/// Sends the owner's next step, if any (from the owner node), and charts its queue.
fn step(step: Option<Step<u32>>, o: &Owner<u32>, ctx: &mut Ctx<Ci>) {
    ctx.gauge("owner_queue", o.queued() as i64);
    match step {
        Some(Step::Write(key, call)) => ctx.send(DATA, Msg::Write { key, call: Some(call) }),
        Some(Step::Read(key, call)) => ctx.send(DATA, Msg::Load { key, call: Some(call) }),
        Some(Step::Set(key, version, call)) => ctx.send(DATA, Msg::Set { key, version, cas: false, call: Some(call) }),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_of(strategy: &str, seed: u64, params: &[(&str, i64)]) -> Sim<Ci> {
        let recipe = params.iter().fold(Recipe::new(SPEC.id(), strategy, seed), |r, &(k, v)| r.with_param(k, v));
        let mut s = sim(&Setup { spec: &SPEC, recipe });
        s.keep_trace(false);
        s
    }

    fn to(s: &mut Sim<Ci>, secs: u64) -> &mut Sim<Ci> {
        s.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(s.unhandled(), 0);
        s
    }

    fn run(strategy: &str, seed: u64, params: &[(&str, i64)], secs: u64) -> Sim<Ci> {
        let mut s = sim_of(strategy, seed, params);
        to(&mut s, secs);
        s
    }

    fn counter(s: &Sim<Ci>, name: &str) -> f64 {
        s.metrics().counter(name) as f64
    }

    fn violated(s: &Sim<Ci>, check: &str) -> Option<(f64, String)> {
        let c = s.checks().iter().find(|c| c.id == check).unwrap();
        c.violation.as_ref().map(|v| (v.at.as_secs_f64(), v.why.clone()))
    }

    /// The largest sample of a charted metric (per 100 ms) in `[from, to)` seconds.
    fn peak(s: &Sim<Ci>, id: &str, from: f64, to: f64) -> f64 {
        let i = SPEC.metrics.iter().position(|m| m.id == id).unwrap();
        let samples = s.sampler().times.iter().zip(&s.sampler().series[i]);
        samples.filter(|(t, _)| (from..to).contains(&t.as_secs_f64())).fold(0.0, |m, (_, &v)| m.max(v))
    }

    /// Counters `names` gained between `from` and `until` seconds (the default fault plan is
    /// over by 20 s: measuring from 30 s sees the steady state).
    fn gained(s: &mut Sim<Ci>, names: &[&str], from: u64, until: u64) -> Vec<f64> {
        let before: Vec<f64> = names.iter().map(|n| counter(to(s, from), n)).collect();
        names.iter().zip(before).map(|(n, b)| counter(to(s, until), n) - b).collect()
    }

    /// E[e^(−w·h)] for a link's latency h, uniform on 0.3–1 ms (w per second).
    fn link_laplace(w: f64) -> f64 {
        let (a, b) = (300e-6, 1000e-6);
        (libm::exp(-w * a) - libm::exp(-w * b)) / (w * (b - a))
    }

    #[test]
    fn ttl_only_serves_the_renewal_share_of_stale_hits_and_at_most_a_ttl_stale() {
        // A value is loaded at a miss (snapshot s) and set W later; its TTL runs from then, and
        // the reads of its life come at uniform ages a in [0, T] (Poisson reads). One is stale if
        // a write committed in (s, s + W + a]: writes per key are Poisson at w, so the stale share
        // of hits is 1 − e^(−wW)·(1 − e^(−wT))/(wT). w = 20/s over 50 keys = 0.4/s, T = 5 s,
        // W ≈ 10 ms (query) + 2 × 0.65 ms: 57.0%. Over 200 s, about 2,000 values' lives: the
        // share varies by about 0.7% (lives share their first write), so ±3% is 4 of that.
        let (w, t) = (0.4, 5.0);
        let want = 1.0 - libm::exp(-w * 0.0113) * (1.0 - libm::exp(-w * t)) / (w * t);
        for seed in 1..=2 {
            let mut s = sim_of("ttl-only", seed, &[]);
            let [stale, hits] = gained(&mut s, &["stale_reads", "hits"], 30, 230)[..] else { panic!() };
            assert!(
                (stale / hits - want).abs() < 0.03,
                "seed {seed}: {:.3} of hits stale, theory {want:.3}",
                stale / hits
            );
            // Stale by less than T plus the load (a write just after the snapshot): near T, never past it
            // by more than the slowest load (the database slowdown's tail included).
            let max = s.metrics().gauge("max_staleness_us") as f64 / 1e6;
            assert!((0.9 * t..t + 1.0).contains(&max), "seed {seed}: max staleness {max} s");
        }
    }

    #[test]
    fn a_stale_set_lands_with_the_chance_of_a_commit_in_the_load_window() {
        // A reader's set carries the snapshot taken as its query arrived, and lands W = S + h₁ + h₂
        // later (query, then two links). It is older than the row if a write committed in that
        // window: commits of a key are Poisson at w (M/M/∞ output), so P = 1 − E[e^(−wS)]·E[e^(−wh)]²
        // with E[e^(−wS)] = 1/(1 + w·m) for an exponential query of mean m. w = 200/50 = 4/s and
        // m = 50 ms: 17.1% of loads. Over 200 s, ~4,000 loads (misses): ±12% is over 3 standard errors.
        let (w, m) = (4.0, 0.05);
        let want = 1.0 - link_laplace(w) * link_laplace(w) / (1.0 + w * m);
        let mut s = sim_of("ttl-only", 3, &[("write_rps", 200), ("db_ms", 50)]);
        let [stale_sets, loads] = gained(&mut s, &["stale_sets", "misses"], 30, 230)[..] else { panic!() };
        let got = stale_sets / loads;
        assert!((got / want - 1.0).abs() < 0.12, "{got:.4} of {loads} loads set stale, theory {want:.4}");
    }

    #[test]
    fn an_event_bus_leaves_hits_stale_for_its_delay_after_each_commit() {
        // Without loss, a key is stale from each commit until its invalidation lands D later: the
        // writer's answer, its publish and the delivery each cross a link (3 × 0.65 ms) around
        // the bus's 50 ms. Commits are Poisson at w = 0.4/s per key, so a hit is stale with the
        // chance of a commit in the last D: 1 − e^(−wD) = 2.1%. With 1 ms queries no reader's set
        // outlives D (no race). Stale reads come ~1 per write: 4,000 writes give ±2.2%; ±10%.
        let (w, d) = (0.4, 0.05195);
        let want = 1.0 - libm::exp(-w * d);
        let mut s = sim_of("event-bus", 1, &[("bus_loss_pct", 0), ("db_ms", 1)]);
        let [stale, hits] = gained(&mut s, &["stale_reads", "hits"], 30, 230)[..] else { panic!() };
        assert!((stale / hits / want - 1.0).abs() < 0.10, "{:.4} of hits stale, theory {want:.4}", stale / hits);
        assert!(s.metrics().gauge("max_staleness_us") < 1_000_000);
        assert!(violated(&s, "no-older-overwrite").is_none() && counter(&s, "events_lost") == 0.0);
    }

    #[test]
    fn try_ttl_only_breaks_the_promise_at_once() {
        for seed in 1..=3 {
            let s = run("ttl-only", seed, &[], 5);
            let at = violated(&s, "staleness-within-promise");
            assert!(at.as_ref().is_some_and(|(t, _)| *t < 2.0), "seed {seed}: {at:?}");
            assert!(counter(&s, "stale_reads") > 0.4 * counter(&s, "hits"), "seed {seed}");
        }
    }

    #[test]
    fn try_delete_on_write_cuts_stale_reads_tenfold_but_races_and_names_the_key() {
        for seed in 1..=4 {
            let ttl = run("ttl-only", seed, &[], 30);
            let mut s = sim_of("delete-on-write", seed, &[]);
            let quiet = gained(&mut s, &["stale_sets"], 0, 10)[0];
            let slow = gained(&mut s, &["stale_sets"], 10, 20)[0];
            to(&mut s, 30);
            let (a, b) = (counter(&ttl, "stale_reads"), counter(&s, "stale_reads"));
            assert!(a >= 10.0 * b, "seed {seed}: stale reads {a} with TTL only, {b} deleting on write");
            assert!(slow > quiet, "seed {seed}: {quiet} stale sets before the slowdown, {slow} during");
            let why = violated(&s, "no-older-overwrite").map(|(_, why)| why);
            assert!(why.as_ref().is_some_and(|w| w.starts_with("key ")), "seed {seed}: {why:?}");
        }
    }

    #[test]
    fn try_event_bus_with_loss_leaves_keys_stale_for_seconds() {
        // Each event is lost with p = 10%: Binomial over ~600 events (sd 7), ±30 is over 4 sd.
        for seed in 1..=3 {
            let s = run("event-bus", seed, &[("bus_loss_pct", 10)], 30);
            let bus = s.node::<Box<Bus<(u32, u64)>>>(BUS);
            let events = (bus.queue().sent() + bus.lost()) as f64;
            assert!((counter(&s, "events_lost") - 0.1 * events).abs() < 30.0, "seed {seed}: of {events}");
            let max = s.metrics().gauge("max_staleness_us");
            assert!(max > 1_000_000, "seed {seed}: max staleness {max} µs");
            assert!(violated(&s, "staleness-within-promise").is_some());
        }
    }

    #[test]
    fn try_versioned_or_single_owner_keep_both_promises_and_the_owner_queues() {
        for seed in 1..=3 {
            for st in ["versioned", "single-owner"] {
                let s = run(st, seed, &[], 30);
                assert!(s.checks().iter().all(|c| c.violation.is_none()), "seed {seed} {st}: {:?}", s.checks());
                if st == "versioned" {
                    assert!(counter(&s, "sets_refused") > 0.0, "seed {seed}: late sets refused");
                } else {
                    let (before, during) = (peak(&s, "owner_queue", 3.0, 10.0), peak(&s, "owner_queue", 10.0, 20.5));
                    // Past the cold start (every key filled once), the queue stays short until the slowdown.
                    assert!(before < 10.0 && during > 50.0, "seed {seed}: owner queue {before} then {during}");
                }
            }
        }
    }
}
