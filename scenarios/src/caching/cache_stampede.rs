//! Cache stampede: a thousand clients over several app instances read through a shared cache in front of an origin database with few connections. When a hot key expires — or many keys expire together, or the cache restarts cold — every reader goes to the origin at once, unless the instances coalesce, lock, spread or refresh ahead.

use crate::parts::arrivals::{OpenLoop, Zipf};
use crate::parts::cache::{jittered_ttl_us, xfetch, GetOrLock, Lookup, TtlCache};
use crate::parts::degraded::FaultWindow;
use crate::parts::flight::{Flight, SingleFlight};
use crate::parts::keyed::Keyed;
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::num::NonZeroU32;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "cache-stampede",
        title: "Cache stampede",
        category: "Caching",
        seeds: &["S0#2", "S1#4", "S1-P#3", "S3#86"],
        summary: "A hot key expires and its readers miss together. Plain cache-aside sends every one of them to the \
                  origin; single-flight, a short lock, early refresh or stale-while-revalidate send one.",
        note: Note {
            what_can_go_wrong: "Every reader that misses loads the value itself, so a hot key's expiry becomes a \
                burst of identical origin queries; keys loaded together expire together; a cache restarted cold \
                misses everything at once. The origin's few connections queue and every reader waits. The model: \
                clients are independent Poisson readers of keys with Zipf(1.1) popularity; the origin is M/M/c (c \
                connections, exponential load times, an unbounded FIFO queue); links take 1–3 ms, 0.3–1 ms from an \
                instance to the cache or origin; a load's cost (XFetch's δ) is its time at the origin, queueing \
                included; one get-or-lock script takes the lock, and the value's write releases it.",
            what_you_sacrifice: "Single-flight makes readers wait for someone else's load (a global lock adds a \
                round trip and a lock TTL to tune). Early refresh spends origin capacity before it is needed. \
                Stale-while-revalidate serves data past its TTL. Jitter spreads many keys; a hot key still stampedes.",
            at_10x: "Ten times the instances multiply per-instance single-flight by ten; a global lock whose TTL is \
                shorter than a slow load lets a second loader in; a cold restart of a sharded cache stampedes every \
                shard at once — warm caches before putting them in rotation.",
            resembles: "Facebook's memcache leases, Go's singleflight, Redis SET NX PX locks, the XFetch algorithm \
                (Vattani et al., VLDB 2015), HTTP Cache-Control stale-while-revalidate, CDN request collapsing.",
            try_this: &[
                "Play `cache-aside`: every five seconds the hot key expires and the readers that miss it load it \
                 together; `key-loads-within-promise` fails. When the origin slows at 14 s its queue passes a \
                 thousand loads, and it keeps growing after the origin recovers at 19 s.",
                "Try `jittered-ttl`: keys loaded together at the start stop expiring together (the origin's busiest \
                 seconds shrink), but the hot key still stampedes.",
                "Switch to `singleflight-global` or `stale-while-revalidate`: one load of a key at a time (one per \
                 instance with SWR), and with SWR reader p99 stays flat even while the origin is slow.",
                "With `singleflight-global`, set the lock TTL to 500 ms: during the origin slowdown queued loads \
                 outlast the lock and a second loader slips in.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=5000, 1000, "Clients, each reading at the per-client rate."),
        ParamSpec::live("client_rps", "Reads per client", "req/s", 1..=100, 2, "Poisson read rate of one client."),
        ParamSpec::live("instances", "App instances", "", 1..=12, 4, "Instances the clients are spread over (up to 12 are built; the rest stay idle)."),
        ParamSpec::setup("keys", "Keys", "", 1..=10_000, 200, "Distinct keys, read with Zipf(1.1) popularity: with 200 keys, key 0 gets about a fifth of all reads."),
        ParamSpec::live("ttl_ms", "TTL", "ms", 100..=600_000, 5000, "How long a cached value is fresh.").step(100),
        ParamSpec::live("jitter_pct", "TTL jitter", "%", 0..=100, 20, "jittered-ttl: TTLs uniform in ± this share."),
        ParamSpec::live("origin_ms", "Origin latency", "ms", 1..=10_000, 40, "Mean (exponential) load time."),
        ParamSpec::live("origin_conns", "Origin connections", "", 1..=1000, 16, "Loads served at once; others queue."),
        ParamSpec::live("lock_ms", "Lock TTL", "ms", 10..=60_000, 5000, "singleflight-global's lock TTL.").step(10),
        ParamSpec::live("beta_pct", "Early-refresh β", "%", 10..=1000, 100, "early-refresh: XFetch's β in % (100 is β = 1; larger refreshes earlier).").step(10),
        ParamSpec::live("stale_ms", "Stale window", "ms", 0..=600_000, 30_000, "stale-while-revalidate: how long past its TTL a value may still be served.").step(100),
    ],
    strategies: &[
        StrategySpec::naive("cache-aside", "Plain cache-aside", "Miss → load from the origin → set. Every concurrent reader of a missing key loads it."),
        StrategySpec::naive("jittered-ttl", "Jittered TTL (alone)", "Cache-aside with randomised TTLs: keys loaded together stop expiring together; a hot key still stampedes."),
        StrategySpec::fixed("singleflight-local", "Single-flight per instance", "Concurrent misses of a key in one instance share one load: at most one load per instance."),
        StrategySpec::fixed("singleflight-global", "Single-flight + cache lock", "Per-instance coalescing plus a short SET-NX lock in the cache: one loader across instances; others poll."),
        StrategySpec::fixed("early-refresh", "Probabilistic early refresh", "XFetch: a reader refreshes before expiry with a probability that grows as expiry nears (one per instance)."),
        StrategySpec::fixed("stale-while-revalidate", "Stale-while-revalidate", "Past its TTL a value is served stale while one background refresh per instance runs."),
    ],
    faults: &[
        FaultSpec::global("origin-slow", "Origin slowdown", "Multiplies the origin's latency (1 heals).").value("latency ×", 1..=100, 5),
        FaultSpec::global("cache-restart", "Cache restart (cold)", "The cache loses every value and lock."),
    ],
    checks: &[
        CheckSpec::new("key-loads-within-promise", "Origin loads per key within the promise", "Concurrent origin loads of one key stay within the strategy's promise: 1 for cache-aside and jittered TTL (what a cache is assumed to give), 1 per lock epoch for the global lock (a restart forgets locks), one per instance for the per-instance strategies."),
        CheckSpec::new("readers-never-wait", "Readers never wait behind a stale value", "A reader finding a value, fresh or stale, is answered at once (SWR's promise; others keep stale values only after a switch)."),
    ],
    metrics: &[
        MetricSpec::new("origin_inflight", "Origin loads in flight", "", Measure::Gauge("origin_inflight")),
        MetricSpec::new("origin_peak", "Origin loads in flight, peak", "loads", Measure::Gauge("origin_peak")),
        MetricSpec::new("origin_rate", "Origin loads", "loads/s", Measure::Rate("origin_loads")),
        MetricSpec::new("hit_ratio", "Reads answered without waiting for a load", "%", Measure::Percent { num: "hits", rest: "misses" }),
        MetricSpec::new("latency_p99", "Reader latency p99", "us", Measure::Quantile("latency_us", 0.99)),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

const CACHE: NodeId = 0;
const ORIGIN: NodeId = 1;
const FIRST_INSTANCE: NodeId = 2;
const MAX_INSTANCES: u32 = 12;
/// How often an instance that lost the lock race looks for the winner's value.
const POLL: Micros = 20 * MICROS_PER_MS;

strategies!(SPEC, Strategy { CacheAside, Jittered, LocalFlight, GlobalFlight, EarlyRefresh, Swr });
use Strategy::*;

impl Strategy {
    /// Readers of a key in one instance share one lookup and one load (single flight).
    fn coalesces(self) -> bool {
        !matches!(self, CacheAside | Jittered)
    }
}

/// A client waiting for a value and when it asked (its clock). Clients are never node 0, so
/// `Option<Reader>` is no bigger than a reader: messages stay 32 bytes, which at scale is speed.
#[derive(Clone, Copy, Debug)]
pub struct Reader(NonZeroU32, Time);

/// `reader`: the one reader a lookup or load is for (cache-aside), or `None`: everyone waiting on
/// the key in that instance. Costs (XFetch's δ), times left and TTLs in µs; `lock`: the lock's
/// version (0: none), released by `Set` with the value in one step, as a script would (sent apart,
/// the release could overtake the value and let a poller load it again); `epoch`: the cache's restarts.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Read { key: u32, sent: Time },
    Value { sent: Time },
    Get { key: u32, reader: Option<Reader> },
    Hit { key: u32, ttl_left: u32, cost: u32, reader: Option<Reader> },
    Stale { key: u32, reader: Option<Reader> },
    Miss { key: u32, reader: Option<Reader> },
    Set { key: u32, ttl: u32, stale: u32, cost: u32, lock: u64 },
    Lock { key: u32, ttl: Micros },
    Locked { key: u32, lock: u64, epoch: u32 },
    LockBusy { key: u32 },
    Load { key: u32, epoch: u32, reader: Option<Reader> },
    Loaded { key: u32, cost: u32, reader: Option<Reader> },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Read,
    Poll { key: u32 },
    LoadDone(Slot),
}

#[derive(Clone, Debug, Holds)]
pub enum Cs {
    Client(Client),
    Instance(Box<Instance>),
    Cache(Box<Cache>),
    Origin(Box<Origin>),
}

#[derive(Clone, Debug)]
pub struct Client {
    index: u32,
    src: OpenLoop,
    keys: Zipf,
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u32,
    /// Clients are spread over the first `instances`; the others idle.
    active: bool,
    strategy: Strategy,
    /// Readers waiting on a key (coalescing strategies): the first one's lookup serves all; an
    /// instance's own load of a key (holding the cache lock, with the global lock), or its poll
    /// for the value while another instance holds the lock.
    flights: SingleFlight<Reader>,
    /// Readers that found a stale value and still waited on the origin (only after a switch away
    /// from stale-while-revalidate: no other strategy keeps stale values).
    waited_behind_stale: u64,
}

/// Values with their cost (XFetch's δ), and load locks held by instances.
pub type Cache = TtlCache<u32, u32, NodeId>;

/// A load at the origin: for whom, which key, the lock epoch and the reader it is for.
type Job = (NodeId, u32, u32, Option<Reader>);

/// The origin's connections, each load tallied per key and lock epoch while in flight (queued
/// or served) for the god's-eye check.
pub type Origin = Keyed<Job>;

fn sim(setup: &Setup) -> Sim<Cs> {
    let p = |id| setup.param(id);
    let mut sim: Sim<Cs> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    assert_eq!(sim.add_node(Cs::Cache(Box::default())), CACHE);
    let conns = Station::new(p("origin_conns") as u32, Service::exponential_ms(p("origin_ms") as u64));
    let origin = Keyed::new(conns, "key_loads", |&(_, key, epoch, _)| (epoch as u64) << 32 | key as u64);
    assert_eq!(sim.add_node(Cs::Origin(Box::new(origin))), ORIGIN);
    let strategy = Strategy::from_id(setup.strategy());
    for index in 0..MAX_INSTANCES {
        let (active, flights) = ((index as i64) < p("instances"), SingleFlight::default());
        let i = Instance { index, active, strategy, flights, waited_behind_stale: 0 };
        let id = sim.add_node(Cs::Instance(Box::new(i)));
        let near = Link::with_latency(Latency::Uniform { lo: 300, hi: 1_000 });
        sim.net().set_link(id, CACHE, near.clone());
        sim.net().set_link(id, ORIGIN, near);
    }
    let keys = Zipf::new(p("keys") as usize, 1.1);
    for index in 0..p("clients") as u32 {
        sim.add_node(Cs::Client(Client { index, src: OpenLoop::poisson(p("client_rps") as f64), keys: keys.clone() }));
    }
    FaultWindow::secs(14, 5).custom(&mut sim, "origin-slow", None, 5, 1);
    sim.schedule(Time::from_ms(22_500), Fault::custom("cache-restart", 0));
    sim.check("key-loads-within-promise", |w| {
        let s = w.node::<Box<Instance>>(FIRST_INSTANCE).strategy;
        // One load is within every promise (and by far the commonest: no parameter to look up).
        let promise = || if s.coalesces() && s != GlobalFlight { w.param("instances") } else { 1 };
        match w.tallied.iter().find(|&&(_, _, n)| n > 1 && n > promise()) {
            Some((_, key, n)) => {
                Err(format!("{n} concurrent origin loads of key {} (promise: {})", *key as u32, promise()))
            }
            None => Ok(()),
        }
    });
    sim.check("readers-never-wait", |w| {
        let instance = |n: NodeId| Holds::<Box<Instance>>::held(&w.nodes[n as usize]);
        match w.touched.and_then(instance).map(|i| (i.index, i.waited_behind_stale)) {
            Some((index, n @ 1..)) => Err(format!("instance {index} made {n} readers wait behind a stale value")),
            _ => Ok(()),
        }
    });
    sim
}

impl Node for Cs {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cs::Client(c) => c.src.start(ctx, Timer::Read),
            Cs::Origin(o) => publish(o, ctx),
            Cs::Instance(_) | Cs::Cache(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        let now = ctx.now();
        match (self, msg) {
            (Cs::Client(_), Msg::Value { sent }) => ctx.observe("latency_us", now.since(sent)),
            (Cs::Instance(i), Msg::Read { key, sent }) => i.read(key, Reader(from.try_into().unwrap(), sent), ctx),
            (Cs::Instance(i), Msg::Hit { key, ttl_left, cost, reader }) => {
                let beta = ctx.param("beta_pct") as f64 / 100.0;
                let early = i.strategy == EarlyRefresh && !i.flights.busy(key);
                let early = early && xfetch(cost as Micros, beta, ttl_left as Micros, ctx.rng().unit_open());
                i.found(key, reader, early, ctx);
            }
            (Cs::Instance(i), Msg::Stale { key, reader }) if i.strategy == Swr => i.found(key, reader, true, ctx),
            (Cs::Instance(i), Msg::Stale { key, reader }) => {
                // Left over from SWR (stale values outlive a switch away from it): a miss now.
                i.waited_behind_stale += reader.map_or(i.flights.count(key), |_| 1) as u64;
                i.missed(key, reader, ctx);
            }
            (Cs::Instance(i), Msg::Miss { key, reader }) => i.missed(key, reader, ctx),
            (Cs::Instance(i), Msg::Locked { key, lock, epoch }) => i.load(key, lock, epoch, ctx),
            (Cs::Instance(_), Msg::LockBusy { key }) => _ = ctx.set_timer(POLL, Timer::Poll { key }),
            (Cs::Instance(i), Msg::Loaded { key, cost, reader }) => i.loaded(key, cost, reader, ctx),
            (Cs::Cache(c), Msg::Get { key, reader }) => ctx.send(from, found(c.get(&key, now), key, reader)),
            (Cs::Cache(c), Msg::Set { key, ttl, stale, cost, lock }) => {
                c.set(key, cost, now, ttl as Micros, stale as Micros, lock)
            }
            // Get-or-lock in one step, as a script: a value set since the miss is answered, not loaded again.
            (Cs::Cache(c), Msg::Lock { key, ttl }) => {
                let reply = match c.get_or_lock(key, from, now, ttl) {
                    GetOrLock::Fresh { value, left_us } => found(Lookup::Fresh { value: &value, left_us }, key, None),
                    GetOrLock::Locked { lock, epoch } => Msg::Locked { key, lock, epoch },
                    GetOrLock::Busy => Msg::LockBusy { key },
                };
                ctx.send(from, reply);
            }
            (Cs::Origin(o), Msg::Load { key, epoch, reader }) => {
                ctx.count("origin_loads", 1);
                let _ = o.offer((from, key, epoch, reader), ctx, Timer::LoadDone); // unbounded: starts or waits
                publish(o, ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cs::Client(c), Timer::Read) => {
                c.src.on_timer(ctx, Timer::Read);
                let key = c.keys.pick(ctx.rng()) as u32;
                let instance = FIRST_INSTANCE + c.index % ctx.param("instances") as u32;
                ctx.send(instance, Msg::Read { key, sent: ctx.now() });
            }
            (Cs::Instance(i), Timer::Poll { key }) => match i.flights.flight(key) {
                Some(Flight::Polling) => ctx.send(CACHE, Msg::Get { key, reader: None }),
                Some(Flight::Loading(_)) | None => {} // loading since, or done: nothing to look for
            },
            (Cs::Origin(o), Timer::LoadDone(slot)) => {
                // `None`: a load lost in a crash of the origin (whose timers the kernel drops anyway).
                if let Some(f) = o.done(slot, ctx, Timer::LoadDone) {
                    let (to, key, _, reader) = f.job;
                    ctx.send(to, Msg::Loaded { key, cost: f.sojourn_us().min(u32::MAX as u64) as u32, reader });
                }
                publish(o, ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cs::Cache(c) => c.restart(),
            Cs::Instance(i) => i.flights.clear(),
            Cs::Origin(o) => drop(o.crash(ctx)),
            Cs::Client(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Cs::Instance(i), Control::Strategy(s)) => i.strategy = Strategy::from_id(s),
            (Cs::Instance(i), Control::Param { id: "instances", value }) => i.active = (i.index as i64) < value,
            (Cs::Client(c), Control::Param { id: "client_rps", value: v }) => {
                c.src.set_rate_per_s(v as f64, ctx, Timer::Read)
            }
            (Cs::Origin(o), Control::Param { id: "origin_conns", value: v }) => {
                o.station.set_servers(v as u32, ctx, Timer::LoadDone)
            }
            (Cs::Origin(o), Control::Param { id: "origin_ms", value: v }) => {
                o.station.set_service(Service::exponential_ms(v as u64))
            }
            (Cs::Origin(o), Control::Custom { id: "origin-slow", value }) => {
                o.station.set_slowdown_pct(value.max(1) as u32 * 100)
            }
            (Cs::Cache(c), Control::Custom { id: "cache-restart", .. }) => {
                ctx.note(format!("cache restarted: {} values and {} locks lost", c.values_stored(), c.locks_stored()));
                c.restart();
            }
            _ => {} // the other parameters are read where they are used (`ctx.param`)
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Cs::Client(c) => NodeView::new(NodeKind::Client, 0, numbered("client", c.index as u64)),
            Cs::Instance(i) => NodeView::new(NodeKind::Service, 1, numbered("instance", i.index as u64))
                .gauge("readers waiting", i.flights.waiting() as i64, 100)
                .gauge("loads", i.flights.flights() as i64, 10)
                .badge_if(!i.active, "idle", Tone::Neutral),
            Cs::Cache(c) => NodeView::new(NodeKind::Cache, 2, "cache")
                .gauge("values", c.values_stored() as i64, 200)
                .gauge("locks", c.locks_stored() as i64, 10),
            Cs::Origin(o) => o.view(NodeView::new(NodeKind::Database, 3, "origin"), "connections busy", 100),
        }
    }
}

impl Instance {
    fn read(&mut self, key: u32, reader: Reader, ctx: &mut Ctx<Cs>) {
        if !self.strategy.coalesces() {
            ctx.send(CACHE, Msg::Get { key, reader: Some(reader) });
        } else if self.flights.join(key, reader) {
            ctx.send(CACHE, Msg::Get { key, reader: None });
        }
    }

    /// The cache had a value (fresh, or stale under SWR) for the reader or everyone waiting on the
    /// key; `refresh`: load it again in the background (early refresh, SWR), once per instance.
    fn found(&mut self, key: u32, reader: Option<Reader>, refresh: bool, ctx: &mut Ctx<Cs>) {
        if refresh && !self.flights.busy(key) {
            self.load(key, 0, 0, ctx);
        }
        // A lock waiter that finds the value stops polling; its readers waited for another's load.
        let (waiting, polled) = if reader.is_none() { self.flights.found(key) } else { (Vec::new(), false) };
        answer(reader.into_iter().chain(waiting), !polled, ctx);
    }

    /// No usable value: the reader loads it itself (the stampede), or one load serves the key's waiters.
    fn missed(&mut self, key: u32, reader: Option<Reader>, ctx: &mut Ctx<Cs>) {
        match (reader, self.strategy, self.flights.flight(key)) {
            (Some(_), ..) => ctx.send(ORIGIN, Msg::Load { key, epoch: 0, reader }),
            (None, _, Some(Flight::Loading(_))) => {} // they wait for the load under way
            (None, GlobalFlight, _) => {
                // (Still) no value: ask for the lock, again if polling (its holder may be gone).
                self.flights.poll(key);
                ctx.send(CACHE, Msg::Lock { key, ttl: ctx.param_ms("lock_ms") });
            }
            (None, ..) => self.load(key, 0, 0, ctx),
        }
    }

    fn load(&mut self, key: u32, lock: u64, epoch: u32, ctx: &mut Ctx<Cs>) {
        self.flights.load(key, lock);
        ctx.send(ORIGIN, Msg::Load { key, epoch, reader: None });
    }

    fn loaded(&mut self, key: u32, cost: u32, reader: Option<Reader>, ctx: &mut Ctx<Cs>) {
        let mut ttl = ctx.param_ms("ttl_ms");
        if self.strategy == Jittered {
            ttl = jittered_ttl_us(ttl, ctx.param("jitter_pct") as u64, ctx.rng());
        }
        let stale = if self.strategy == Swr { ctx.param_ms("stale_ms") } else { 0 };
        let (lock, waiting) = if reader.is_none() { self.flights.loaded(key) } else { (0, Vec::new()) };
        ctx.send(CACHE, Msg::Set { key, ttl: ttl as u32, stale: stale as u32, cost, lock });
        answer(reader.into_iter().chain(waiting), false, ctx);
    }
}

/// Answers readers: the one a lookup or load was for, or everyone waiting on its key.
fn answer(readers: impl Iterator<Item = Reader>, from_cache: bool, ctx: &mut Ctx<Cs>) {
    for Reader(client, sent) in readers {
        ctx.count(if from_cache { "hits" } else { "misses" }, 1);
        ctx.send(client.get(), Msg::Value { sent });
    }
}

/// The cache's answer to a lookup of `key`, for the one reader or everyone waiting on the key.
fn found(lookup: Lookup<u32>, key: u32, reader: Option<Reader>) -> Msg {
    match lookup {
        Lookup::Fresh { value: &cost, left_us } => Msg::Hit { key, ttl_left: left_us as u32, cost, reader },
        Lookup::Stale(_) => Msg::Stale { key, reader },
        Lookup::Miss => Msg::Miss { key, reader },
    }
}

/// The origin's gauges: loads in flight (queued or served), and the most at once.
fn publish(o: &Origin, ctx: &mut Ctx<Cs>) {
    ctx.gauge("origin_inflight", o.station.held() as i64);
    ctx.gauge("origin_peak", o.peak() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(strategy: &str, seed: u64, params: &[(&str, i64)]) -> Sim<Cs> {
        let recipe = params.iter().fold(Recipe::new(SPEC.id(), strategy, seed), |r, &(k, v)| r.with_param(k, v));
        let mut s = sim(&Setup { spec: &SPEC, recipe });
        s.keep_trace(false);
        s
    }

    /// Runs to `until` and returns the most concurrent origin loads of `key` reached on the way.
    fn watch(s: &mut Sim<Cs>, until: Time, key: u32) -> usize {
        let mut most = 0;
        while s.next_event_time().is_some_and(|t| t <= until) {
            s.step();
            let conns = &s.node::<Box<Origin>>(ORIGIN).station;
            most = most.max(conns.queued().chain(conns.in_service()).filter(|job| job.1 == key).count());
        }
        most
    }

    /// The largest sample of a charted metric (per 100 ms window) in `[from, to)` seconds.
    fn peak(s: &Sim<Cs>, id: &str, from: f64, to: f64) -> f64 {
        let i = SPEC.metrics.iter().position(|m| m.id == id).unwrap();
        let samples = s.sampler().times.iter().zip(&s.sampler().series[i]);
        samples.filter(|(t, _)| (from..to).contains(&t.as_secs_f64())).fold(0.0, |m, (_, &v)| m.max(v))
    }

    /// Origin loads in each whole second of `[from, to)` (the charted rate, summed over its windows).
    fn loads_per_second(s: &Sim<Cs>, from: u64, to: u64) -> Vec<f64> {
        let i = SPEC.metrics.iter().position(|m| m.id == "origin_rate").unwrap();
        let samples: Vec<(Time, f64)> = s.sampler().times.iter().copied().zip(s.sampler().series[i].clone()).collect();
        let second = |k: u64| samples.iter().filter(move |(t, _)| t.micros().div_ceil(MICROS_PER_S) == k + 1);
        (from..to).map(|k| second(k).map(|(_, rate)| rate / 10.0).sum()).collect()
    }

    fn violated(s: &Sim<Cs>, check: &str) -> Option<f64> {
        let c = s.checks().iter().find(|c| c.id == check).unwrap();
        c.violation.as_ref().map(|v| v.at.as_secs_f64())
    }

    #[test]
    fn messages_stay_32_bytes() {
        // At scale 1.5 million messages a simulated second go through the event queue: at 48
        // bytes (an `Option<(NodeId, Time)>` reader) the run was 15–20% slower.
        assert_eq!(std::mem::size_of::<Msg>(), 32);
    }

    #[test]
    fn key_zero_gets_about_a_fifth_of_the_reads() {
        // Zipf(1.1) over 200 keys: key 0's share is 1 / Σ k^(−1.1) = 0.213, the help's "about a
        // fifth" (the draws follow the pmf: parts::arrivals tests that).
        let share = Zipf::new(200, 1.1).pmf(0);
        assert!((share - 0.213).abs() < 0.001, "{share}");
    }

    #[test]
    fn with_a_global_lock_each_key_is_loaded_once_per_renewal_cycle() {
        // Single-flight with a lock: a key is loaded once per cycle of TTL + D + the wait for
        // the next reader after it expires, Exp(λ_k) (Poisson reads of key k at λ_k = 2000/s ×
        // its Zipf share), where D ≈ 44 ms is the load (40 ms mean) plus six 0.65 ms hops (miss,
        // lock, granted, load, loaded, set). By the renewal theorem the origin serves
        // Σ_k 1 / (TTL + D + 1/λ_k) loads a second. Measured over 200 s after the faults
        // (about 7,700 loads): renewal counts of near-periodic keys vary by under 1%, and D is
        // known to about a millisecond (0.02%): ±2%.
        let mut s = run("singleflight-global", 1, &[]);
        s.run_until(Time::from_secs(30), u64::MAX);
        let before = s.metrics().counter("origin_loads");
        s.run_until(Time::from_secs(230), u64::MAX);
        let rate = (s.metrics().counter("origin_loads") - before) as f64 / 200.0;
        let zipf = Zipf::new(200, 1.1);
        let cycle = |k: usize| 5.0 + 0.0439 + 1.0 / (2000.0 * zipf.pmf(k));
        let want: f64 = (0..200).map(|k| 1.0 / cycle(k)).sum();
        assert!((rate - want).abs() < 0.02 * want, "{rate:.2} loads/s, renewal theory {want:.2}");
        assert!(s.checks().iter().all(|c| c.violation.is_none()));
    }

    #[test]
    fn the_origin_peak_of_cache_aside_dwarfs_single_flight_once_the_origin_slows() {
        // At the cold start every strategy loads all keys at once; in the quiet stretch the
        // long tail's expiries dominate either way; once the origin slows (14 s), every reader
        // of an expired key loads it under cache-aside, and the origin's queue feeds itself.
        for seed in 1..=3 {
            let [aside, global] = ["cache-aside", "singleflight-global"].map(|st| {
                let mut s = run(st, seed, &[]);
                s.run_until(Time::from_secs(30), u64::MAX);
                s
            });
            let (a, g) = (peak(&aside, "origin_rate", 14.0, 22.5), peak(&global, "origin_rate", 14.0, 22.5));
            assert!(a >= 4.0 * g, "seed {seed}: peak origin rate in the slowdown {a}/s vs single-flight {g}/s");
            let (a, g) = (peak(&aside, "origin_rate", 0.0, 30.0), peak(&global, "origin_rate", 0.0, 30.0));
            assert!(a >= 1.8 * g, "seed {seed}: peak origin rate {a}/s vs single-flight {g}/s");
            let gauge = |s: &Sim<Cs>, g: &str| s.metrics().gauge(g);
            assert!(gauge(&aside, "origin_peak") > 10 * gauge(&global, "origin_peak"));
        }
    }

    #[test]
    fn try_cache_aside_the_hot_key_stampedes_and_a_slow_origin_never_recovers() {
        for seed in 1..=4 {
            let mut s = run("cache-aside", seed, &[]);
            let hot = watch(&mut s, Time::from_secs(14), 0);
            assert!(hot >= 5, "seed {seed}: at most {hot} concurrent loads of the hot key before the slowdown");
            assert!(violated(&s, "key-loads-within-promise").is_some_and(|t| t < 14.0));
            s.run_until(Time::from_secs(19), u64::MAX);
            let at_heal = s.metrics().gauge("origin_inflight");
            s.run_until(Time::from_secs(30), u64::MAX);
            let at_end = s.metrics().gauge("origin_inflight");
            assert!(
                at_heal > 1000 && at_end > at_heal,
                "seed {seed}: {at_heal} loads in flight at 19 s, {at_end} at 30 s"
            );
        }
    }

    #[test]
    fn try_jittered_ttl_spreads_the_long_tail_but_the_hot_key_still_stampedes() {
        // Between the cold start's echo and the slowdown (4–14 s), the busiest second of
        // cache-aside carries the keys loaded together at the start; jitter spreads them.
        let busiest = |st: &str| -> f64 {
            (1..=4)
                .map(|seed| {
                    let mut s = run(st, seed, &[]);
                    s.run_until(Time::from_secs(14), u64::MAX);
                    loads_per_second(&s, 4, 14).into_iter().fold(0.0, f64::max)
                })
                .sum()
        };
        let (aside, jittered) = (busiest("cache-aside"), busiest("jittered-ttl"));
        assert!(aside >= 1.3 * jittered, "busiest seconds: cache-aside {aside} loads, jittered {jittered}");
        let mut s = run("jittered-ttl", 1, &[]);
        assert!(watch(&mut s, Time::from_secs(14), 0) >= 5);
        assert!(violated(&s, "key-loads-within-promise").is_some());
    }

    #[test]
    fn try_single_flight_or_swr_one_load_per_key_and_swr_p99_stays_flat() {
        let mut global = run("singleflight-global", 1, &[]);
        assert_eq!(watch(&mut global, Time::from_secs(22), 0), 1, "one load of the hot key at a time");
        let mut swr = run("stale-while-revalidate", 1, &[]);
        assert!(watch(&mut swr, Time::from_secs(22), 0) <= 4, "one per instance");
        for s in [&mut global, &mut swr] {
            s.run_until(Time::from_secs(30), u64::MAX);
            assert!(s.checks().iter().all(|c| c.violation.is_none()));
        }
        // While the origin is slow (14–19 s) SWR answers from stale values; the lock makes readers wait.
        let (flat, waits) = (peak(&swr, "latency_p99", 14.0, 19.5), peak(&global, "latency_p99", 14.0, 19.5));
        assert!(flat < 20_000.0 && waits > 200_000.0, "p99 in the slowdown: SWR {flat} µs, lock {waits} µs");
    }

    #[test]
    fn try_a_lock_ttl_of_500_ms_lets_a_second_loader_in_during_the_slowdown() {
        for seed in 1..=4 {
            let mut s = run("singleflight-global", seed, &[("lock_ms", 500)]);
            s.run_until(Time::from_secs(30), u64::MAX);
            let at = violated(&s, "key-loads-within-promise");
            assert!(at.is_some_and(|t| (14.0..19.5).contains(&t)), "seed {seed}: {at:?}");
        }
    }

    #[test]
    fn switching_away_from_swr_makes_readers_wait_behind_the_stale_values_it_left() {
        // Under SWR the check holds; switched to cache-aside at 12 s (values expire after 5 s
        // and stay 30 s stale), readers find those stale values and now wait on the origin.
        for seed in 1..=3 {
            let mut s = run("stale-while-revalidate", seed, &[]);
            s.run_until(Time::from_secs(12), u64::MAX);
            assert!(violated(&s, "readers-never-wait").is_none(), "seed {seed}: SWR keeps its promise");
            s.inject(ActionKind::SetStrategy { id: "cache-aside".into() }).unwrap();
            s.run_until(Time::from_secs(20), u64::MAX);
            let at = violated(&s, "readers-never-wait");
            assert!(at.is_some_and(|t| (12.0..20.0).contains(&t)), "seed {seed}: {at:?}");
        }
    }
}
