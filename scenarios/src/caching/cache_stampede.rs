//! Cache stampede: a thousand clients over several app instances read through a shared
//! cache in front of an origin database with few connections. When a hot key expires —
//! or many keys expire together, or the cache restarts cold — every reader goes to the
//! origin at once, unless the instances coalesce, lock, spread or refresh ahead.

use crate::parts::table::KeyTable;
use faultline_core::*;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "cache-stampede",
        title: "Cache stampede",
        category: "Caching",
        seeds: &["S0#2", "S1#4", "S1-P#3", "S3#86"],
        summary: "A hot key expires and hundreds of readers miss at once. Plain cache-aside sends them all to the \
                  origin; single-flight, a short lock, early refresh or stale-while-revalidate send one.",
        note: Note {
            what_can_go_wrong: "Every reader that misses loads the value itself, so a hot key's expiry turns into a \
                burst of identical origin queries; keys loaded together expire together; a cold cache after a restart \
                misses everything at once. The origin's few connections queue and every reader waits.",
            what_you_sacrifice: "Single-flight makes readers wait for someone else's load (and a global lock adds a \
                round trip and a lock TTL to tune). Early refresh spends origin capacity before it is needed. \
                Stale-while-revalidate serves data past its TTL. Jitter only spreads many keys; one hot key still \
                stampedes.",
            at_10x: "Ten times the instances multiply per-instance single-flight by ten; a global lock whose TTL is \
                shorter than a slow load lets a second loader in; a cold restart of a sharded cache stampedes every \
                shard at once — warm caches before putting them in rotation.",
            resembles: "Facebook's memcache leases, Go's singleflight, Redis SET NX PX locks, the XFetch algorithm \
                (Vattani et al., VLDB 2015), HTTP Cache-Control stale-while-revalidate, CDN request collapsing.",
            try_this: &[
                "Play `cache-aside`: every five seconds the hot key expires and dozens of loads of it hit the origin \
                 at once; `key-loads-within-promise` fails.",
                "Try `jittered-ttl`: the synchronized expiry of the long tail is gone, but the hot key still \
                 stampedes.",
                "Switch to `singleflight-global` or `stale-while-revalidate`: one load per key, and with SWR reader \
                 p99 stays flat even while the origin is slow.",
                "With `singleflight-global`, set the lock TTL to 500 ms: during the origin slowdown queued loads \
                 outlast the lock and a second loader slips in.",
            ],
        },
    },
    params: &[
        ParamSpec { id: "clients", label: "Clients", unit: "", min: 1, max: 5000, step: 1, default: 1000, live: false,
            help: "Clients, each reading at the per-client rate." },
        ParamSpec { id: "client_rps", label: "Reads per client", unit: "req/s", min: 1, max: 100, step: 1, default: 2, live: true,
            help: "Poisson read rate of one client." },
        ParamSpec { id: "instances", label: "App instances", unit: "", min: 1, max: 12, step: 1, default: 4, live: true,
            help: "Instances the clients are spread over (up to 12 are built; the rest stay idle)." },
        ParamSpec { id: "keys", label: "Keys", unit: "", min: 1, max: 10_000, step: 1, default: 200, live: false,
            help: "Distinct keys, read with Zipf(1.1) popularity: key 0 gets about a fifth of all reads." },
        ParamSpec { id: "ttl_ms", label: "TTL", unit: "ms", min: 100, max: 600_000, step: 100, default: 5000, live: true,
            help: "How long a cached value is fresh." },
        ParamSpec { id: "jitter_pct", label: "TTL jitter", unit: "%", min: 0, max: 100, step: 1, default: 20, live: true,
            help: "jittered-ttl: each TTL is drawn uniformly within ± this share." },
        ParamSpec { id: "origin_ms", label: "Origin latency", unit: "ms", min: 1, max: 10_000, step: 1, default: 40, live: true,
            help: "Mean (exponential) time the origin takes for one load." },
        ParamSpec { id: "origin_conns", label: "Origin connections", unit: "", min: 1, max: 1000, step: 1, default: 16, live: true,
            help: "Loads the origin serves at once; the rest queue." },
        ParamSpec { id: "lock_ms", label: "Lock TTL", unit: "ms", min: 10, max: 60_000, step: 10, default: 5000, live: true,
            help: "singleflight-global: how long the load lock lives in the cache." },
        ParamSpec { id: "beta_pct", label: "Early-refresh β", unit: "%", min: 10, max: 1000, step: 10, default: 100, live: true,
            help: "XFetch's β × 100: larger refreshes earlier." },
        ParamSpec { id: "stale_ms", label: "Stale window", unit: "ms", min: 0, max: 600_000, step: 100, default: 30_000, live: true,
            help: "stale-while-revalidate: how long past its TTL a value may still be served." },
    ],
    strategies: &[
        StrategySpec { id: "cache-aside", label: "Plain cache-aside", naive: true,
            help: "Miss → load from the origin → set. Every concurrent reader of a missing key loads it." },
        StrategySpec { id: "jittered-ttl", label: "Jittered TTL (alone)", naive: true,
            help: "Cache-aside with randomised TTLs: keys loaded together stop expiring together; a hot key still stampedes." },
        StrategySpec { id: "singleflight-local", label: "Single-flight per instance", naive: false,
            help: "Concurrent misses of a key in one instance share one load: at most one load per instance." },
        StrategySpec { id: "singleflight-global", label: "Single-flight + cache lock", naive: false,
            help: "Per-instance coalescing plus a short SET-NX lock in the cache: one loader across instances; others poll." },
        StrategySpec { id: "early-refresh", label: "Probabilistic early refresh", naive: false,
            help: "XFetch: a reader refreshes before expiry with a probability that grows as expiry nears (one per instance)." },
        StrategySpec { id: "stale-while-revalidate", label: "Stale-while-revalidate", naive: false,
            help: "Past its TTL a value is served stale while one background refresh per instance runs." },
    ],
    faults: &[
        FaultSpec { id: "origin-slow", label: "Origin slowdown", target: Target::Global, value_label: "latency ×",
            value_min: 1, value_max: 100, value_default: 5, help: "Multiplies the origin's latency (1 heals)." },
        FaultSpec { id: "cache-restart", label: "Cache restart (cold)", target: Target::Global, value_label: "",
            value_min: 0, value_max: 0, value_default: 0, help: "The cache loses every value and lock." },
    ],
    checks: &[
        CheckSpec { id: "key-loads-within-promise", label: "Origin loads per key within the promise",
            help: "Concurrent origin loads of one key never exceed what the strategy promises: 1 for cache-aside and \
                   jittered TTL (what a cache is assumed to give), 1 per lock epoch for the global lock (a cache \
                   restart forgets locks), one per instance for the per-instance strategies." },
        CheckSpec { id: "readers-never-wait", label: "Readers never wait behind a stale value",
            help: "stale-while-revalidate's promise: a reader that finds any value (fresh or stale) is answered \
                   without waiting on the origin." },
    ],
    metrics: &[
        MetricSpec { id: "origin_inflight", label: "Origin loads in flight", unit: "", measure: Measure::Gauge("origin_inflight") },
        MetricSpec { id: "origin_peak", label: "Origin peak", unit: "loads", measure: Measure::Gauge("origin_peak") },
        MetricSpec { id: "origin_rate", label: "Origin loads", unit: "loads/s", measure: Measure::Rate("origin_loads") },
        MetricSpec { id: "hit_ratio", label: "Hit ratio", unit: "%", measure: Measure::Percent { num: "hits", rest: "misses" } },
        MetricSpec { id: "latency_p99", label: "Reader latency p99", unit: "us", measure: Measure::Quantile("latency_us", 0.99) },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

const CACHE: NodeId = 0;
const ORIGIN: NodeId = 1;
const FIRST_INSTANCE: NodeId = 2;
const MAX_INSTANCES: u32 = 12;
const POLL: Micros = 20 * MICROS_PER_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    CacheAside,
    Jittered,
    LocalFlight,
    GlobalFlight,
    EarlyRefresh,
    Swr,
}

impl Strategy {
    fn from_id(id: &str) -> Strategy {
        match id {
            "jittered-ttl" => Strategy::Jittered,
            "singleflight-local" => Strategy::LocalFlight,
            "singleflight-global" => Strategy::GlobalFlight,
            "early-refresh" => Strategy::EarlyRefresh,
            "stale-while-revalidate" => Strategy::Swr,
            _ => Strategy::CacheAside,
        }
    }
    /// The most concurrent origin loads of one key this strategy promises.
    fn promise(self, instances: i64) -> i64 {
        match self {
            Strategy::CacheAside | Strategy::Jittered | Strategy::GlobalFlight => 1,
            _ => instances,
        }
    }
    fn coalesces(self) -> bool {
        !matches!(self, Strategy::CacheAside | Strategy::Jittered)
    }
}

/// What the cache knows of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Fresh, with this much TTL left and the time its load took (XFetch's delta).
    Fresh {
        ttl_left: Micros,
        cost: Micros,
    },
    Stale,
    Miss,
}

#[derive(Clone, Debug)]
pub enum Msg {
    Read {
        key: u32,
        sent: Time,
    },
    Value {
        sent: Time,
    },
    Get {
        key: u32,
    },
    Got {
        key: u32,
        lookup: Lookup,
    },
    Set {
        key: u32,
        ttl: Micros,
        stale: Micros,
        cost: Micros,
    },
    Lock {
        key: u32,
        ttl: Micros,
    },
    /// `epoch` counts cache restarts: a restart forgets every lock, so a lock only
    /// promises one loader per key within its epoch.
    Locked {
        key: u32,
        granted: bool,
        epoch: u64,
    },
    Unlock {
        key: u32,
    },
    Load {
        key: u32,
        epoch: u64,
    },
    Loaded {
        key: u32,
        cost: Micros,
    },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Read { .. } => "read",
            Msg::Value { .. } => "value",
            Msg::Get { .. } => "get",
            Msg::Got { lookup: Lookup::Fresh { .. }, .. } => "hit",
            Msg::Got { lookup: Lookup::Stale, .. } => "stale",
            Msg::Got { lookup: Lookup::Miss, .. } => "miss",
            Msg::Set { .. } => "set",
            Msg::Lock { .. } => "lock",
            Msg::Locked { granted: true, .. } => "locked",
            Msg::Locked { granted: false, .. } => "lock-busy",
            Msg::Unlock { .. } => "unlock",
            Msg::Load { .. } => "load",
            Msg::Loaded { .. } => "loaded",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    Read,
    Poll { key: u32 },
    LoadDone { to: NodeId, key: u32, epoch: u64, started: Time },
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Read => "read",
            Timer::Poll { .. } => "poll",
            Timer::LoadDone { .. } => "load-done",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Cs {
    Client { index: u32, rps: f64, cdf: Rc<[f64]> },
    Instance(Box<Instance>),
    Cache(Box<Cache>),
    Origin(Box<Origin>),
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u32,
    /// Clients are spread over the first `instances`; the others idle.
    active: bool,
    strategy: Strategy,
    ttl: Micros,
    jitter_pct: u64,
    lock_ttl: Micros,
    beta: f64,
    stale: Micros,
    /// Readers waiting for a key, oldest first: (client, when they asked).
    waiting: KeyTable<VecDeque<(NodeId, Time)>>,
    /// Keys this instance is loading (true) or, with the lock, waiting on another loader (false).
    loading: KeyTable<bool>,
    /// Readers that waited on the origin although the cache had a value (SWR must keep this 0).
    waited_behind_stale: u64,
}

#[derive(Clone, Debug)]
pub struct Entry {
    fresh_until: Time,
    stale_until: Time,
    cost: Micros,
}

#[derive(Clone, Debug, Default)]
pub struct Cache {
    entries: KeyTable<Entry>,
    locks: KeyTable<Time>,
    epoch: u64,
}

#[derive(Clone, Debug)]
pub struct Origin {
    conns: usize,
    mean: f64,
    slow: u64,
    busy: usize,
    queue: VecDeque<(NodeId, u32, u64, Time)>,
    /// Loads of each key (per lock epoch) in flight, queued or running, and the count just reached.
    per_key: BTreeMap<(u32, u64), i64>,
    last: (u32, i64),
    peak: i64,
}

fn zipf_cdf(keys: usize) -> Rc<[f64]> {
    let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / libm::pow(k as f64, 1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Cs> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    assert_eq!(sim.add_node(Cs::Cache(Box::default())), CACHE);
    let origin = Origin {
        conns: setup.param("origin_conns") as usize,
        mean: setup.param("origin_ms") as f64 * 1000.0,
        slow: 1,
        busy: 0,
        queue: VecDeque::new(),
        per_key: BTreeMap::new(),
        last: (0, 0),
        peak: 0,
    };
    assert_eq!(sim.add_node(Cs::Origin(Box::new(origin))), ORIGIN);
    for index in 0..MAX_INSTANCES {
        let id = sim.add_node(Cs::Instance(Box::new(Instance {
            index,
            active: index < setup.param("instances") as u32,
            strategy: Strategy::from_id(setup.strategy()),
            ttl: setup.param("ttl_ms") as u64 * MICROS_PER_MS,
            jitter_pct: setup.param("jitter_pct") as u64,
            lock_ttl: setup.param("lock_ms") as u64 * MICROS_PER_MS,
            beta: setup.param("beta_pct") as f64 / 100.0,
            stale: setup.param("stale_ms") as u64 * MICROS_PER_MS,
            waiting: KeyTable::default(),
            loading: KeyTable::default(),
            waited_behind_stale: 0,
        })));
        let near = Link::with_latency(Latency::Uniform { lo: 300, hi: 1_000 });
        sim.net().set_link(id, CACHE, near.clone());
        sim.net().set_link(id, ORIGIN, near);
    }
    let cdf = zipf_cdf(setup.param("keys") as usize);
    for index in 0..setup.param("clients") as u32 {
        sim.add_node(Cs::Client { index, rps: setup.param("client_rps") as f64, cdf: cdf.clone() });
    }
    let custom = |id: &str, value| Fault::Custom { id: id.into(), node: None, value };
    sim.schedule(Time::from_secs(14), custom("origin-slow", 5));
    sim.schedule(Time::from_secs(19), custom("origin-slow", 1));
    sim.schedule(Time::from_ms(22_500), custom("cache-restart", 0));
    sim.check("key-loads-within-promise", |w| {
        let (Cs::Origin(o), Cs::Instance(i)) = (&w.nodes[ORIGIN as usize], &w.nodes[FIRST_INSTANCE as usize]) else {
            unreachable!()
        };
        let promise = i.strategy.promise(w.param("instances"));
        let (key, n) = o.last;
        if n > promise {
            Err(format!("{n} concurrent origin loads of key {key} (promise: {promise})"))
        } else {
            Ok(())
        }
    });
    sim.check("readers-never-wait", |w| {
        let Some(n) = w.touched.filter(|n| (FIRST_INSTANCE..FIRST_INSTANCE + MAX_INSTANCES).contains(n)) else {
            return Ok(());
        };
        let Cs::Instance(i) = &w.nodes[n as usize] else { unreachable!() };
        if i.strategy == Strategy::Swr && i.waited_behind_stale > 0 {
            Err(format!(
                "instance {} made {} readers wait although a stale value was there",
                i.index, i.waited_behind_stale
            ))
        } else {
            Ok(())
        }
    });
    Box::new(sim)
}

impl Node for Cs {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Cs::Client { rps, .. } => {
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Read);
            }
            Cs::Origin(o) => o.publish(ctx),
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Cs::Client { .. }, Msg::Value { sent }) => ctx.observe("latency_us", ctx.now().since(sent)),
            (Cs::Instance(i), msg) => i.on_message(from, msg, ctx),
            (Cs::Cache(c), msg) => c.on_message(from, msg, ctx),
            (Cs::Origin(o), Msg::Load { key, epoch }) => o.load(from, key, epoch, ctx),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Cs::Client { index, rps, cdf }, Timer::Read) => {
                let u = ctx.rng().unit_open();
                let key = cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u32;
                let instances = ctx.param("instances") as u32;
                let now = ctx.now();
                ctx.send(FIRST_INSTANCE + *index % instances, Msg::Read { key, sent: now });
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Read);
            }
            (Cs::Instance(_), Timer::Poll { key }) => ctx.send(CACHE, Msg::Get { key }),
            (Cs::Origin(o), Timer::LoadDone { to, key, epoch, started }) => o.done(to, key, epoch, started, ctx),
            _ => {}
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        match self {
            Cs::Cache(c) => **c = Cache { epoch: c.epoch + 1, ..Cache::default() },
            Cs::Instance(i) => {
                i.waiting.clear();
                i.loading.clear();
            }
            _ => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Cs::Instance(i), Control::Strategy(id)) => i.strategy = Strategy::from_id(id),
            (Cs::Instance(i), Control::Param { id, value }) => {
                let v = value as u64;
                match id {
                    "ttl_ms" => i.ttl = v * MICROS_PER_MS,
                    "jitter_pct" => i.jitter_pct = v,
                    "lock_ms" => i.lock_ttl = v * MICROS_PER_MS,
                    "beta_pct" => i.beta = v as f64 / 100.0,
                    "stale_ms" => i.stale = v * MICROS_PER_MS,
                    "instances" => i.active = (i.index as u64) < v,
                    _ => {}
                }
            }
            (Cs::Client { rps, .. }, Control::Param { id: "client_rps", value }) => *rps = value as f64,
            (Cs::Origin(o), Control::Custom { id: "origin-slow", value }) => o.slow = value.max(1) as u64,
            (Cs::Origin(o), Control::Param { id, value }) => match id {
                "origin_conns" => o.conns = value as usize,
                "origin_ms" => o.mean = value as f64 * 1000.0,
                _ => {}
            },
            (Cs::Cache(c), Control::Custom { id: "cache-restart", .. }) => {
                ctx.note(format!("cache restarted: {} values and {} locks lost", c.entries.len(), c.locks.len()));
                **c = Cache { epoch: c.epoch + 1, ..Cache::default() };
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Cs::Client { index, .. } => NodeView::new(NodeKind::Client, 0, numbered("client", *index as u64)),
            Cs::Instance(i) => {
                let waiting: usize = i.waiting.values().map(VecDeque::len).sum();
                let v = NodeView::new(NodeKind::Service, 1, numbered("instance", i.index as u64))
                    .gauge("readers waiting", waiting as i64, 100)
                    .gauge("loads", i.loading.len() as i64, 10);
                if i.active {
                    v
                } else {
                    v.badge("idle", Tone::Neutral)
                }
            }
            Cs::Cache(c) => NodeView::new(NodeKind::Cache, 2, "cache")
                .gauge("values", c.entries.len() as i64, 200)
                .gauge("locks", c.locks.len() as i64, 10),
            Cs::Origin(o) => {
                let v = NodeView::new(NodeKind::Database, 3, "origin")
                    .gauge("connections busy", o.busy as i64, o.conns as i64)
                    .gauge("queued", o.queue.len() as i64, 100);
                if o.slow > 1 {
                    v.badge(format!("slow ×{}", o.slow), Tone::Bad)
                } else {
                    v
                }
            }
        }
    }
}

impl Instance {
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Cs>) {
        match msg {
            Msg::Read { key, sent } => {
                let first = !self.waiting.contains_key(key);
                self.waiting.get_or_insert(key, VecDeque::new()).push_back((from, sent));
                // Coalescing strategies ask the cache once for all readers of a key.
                if first || !self.strategy.coalesces() {
                    ctx.send(CACHE, Msg::Get { key });
                }
            }
            Msg::Got { key, lookup } => self.looked_up(key, lookup, ctx),
            Msg::Locked { key, granted, epoch } => {
                if granted {
                    self.loading.insert(key, true);
                    ctx.send(ORIGIN, Msg::Load { key, epoch });
                } else {
                    ctx.set_timer(POLL, Timer::Poll { key });
                }
            }
            Msg::Loaded { key, cost } => {
                if self.strategy.coalesces() {
                    self.loading.remove(key);
                }
                let ttl = match self.strategy {
                    Strategy::Jittered => {
                        let spread = self.ttl * self.jitter_pct / 100;
                        self.ttl - spread + ctx.rng().range(0, 2 * spread)
                    }
                    _ => self.ttl,
                };
                let stale = if self.strategy == Strategy::Swr { self.stale } else { 0 };
                ctx.send(CACHE, Msg::Set { key, ttl, stale, cost });
                if self.strategy == Strategy::GlobalFlight {
                    ctx.send(CACHE, Msg::Unlock { key });
                }
                if self.strategy.coalesces() {
                    self.answer_all(key, ctx);
                } else {
                    self.answer_one(key, ctx);
                }
            }
            _ => {}
        }
    }

    fn answer_all(&mut self, key: u32, ctx: &mut Ctx<Cs>) {
        for (client, sent) in self.waiting.remove(key).unwrap_or_default() {
            ctx.send(client, Msg::Value { sent });
        }
    }

    /// Answers one waiting reader (non-coalescing strategies handle readers one by one).
    fn answer_one(&mut self, key: u32, ctx: &mut Ctx<Cs>) {
        if let Some(w) = self.waiting.get_mut(key) {
            if let Some((client, sent)) = w.pop_front() {
                ctx.send(client, Msg::Value { sent });
            }
            if w.is_empty() {
                self.waiting.remove(key);
            }
        }
    }

    fn looked_up(&mut self, key: u32, lookup: Lookup, ctx: &mut Ctx<Cs>) {
        let hit = |ctx: &mut Ctx<Cs>, n: usize| ctx.count("hits", n as i64);
        let readers = if self.strategy.coalesces() { self.waiting.get(key).map_or(0, VecDeque::len) } else { 1 };
        match (self.strategy, lookup) {
            (Strategy::CacheAside | Strategy::Jittered, Lookup::Fresh { .. }) => {
                hit(ctx, 1);
                self.answer_one(key, ctx);
            }
            (Strategy::CacheAside | Strategy::Jittered, _) => {
                // Every missing reader loads the key itself: the stampede.
                ctx.count("misses", 1);
                ctx.send(ORIGIN, Msg::Load { key, epoch: 0 });
            }
            (Strategy::EarlyRefresh, Lookup::Fresh { ttl_left, cost }) => {
                hit(ctx, readers);
                // XFetch: refresh early when delta · β · (−ln u) reaches the time left.
                let u = ctx.rng().unit_open();
                let early = cost as f64 * self.beta * -libm::log(u) >= ttl_left as f64;
                if early && !self.loading.contains_key(key) {
                    ctx.count("early_refreshes", 1);
                    self.loading.insert(key, true);
                    ctx.send(ORIGIN, Msg::Load { key, epoch: 0 });
                }
                self.serve_waiting(key, ctx);
            }
            (Strategy::Swr, Lookup::Stale) => {
                hit(ctx, readers);
                if !self.loading.contains_key(key) {
                    self.loading.insert(key, true);
                    ctx.send(ORIGIN, Msg::Load { key, epoch: 0 });
                }
                self.serve_waiting(key, ctx);
            }
            (_, Lookup::Fresh { .. }) => {
                hit(ctx, readers);
                self.serve_waiting(key, ctx);
            }
            (_, _) => {
                if matches!(lookup, Lookup::Stale) {
                    self.waited_behind_stale += readers as u64;
                }
                match (self.strategy, self.loading.get(key)) {
                    // Still no value and the lock was busy: try the lock again (its holder may be gone).
                    (Strategy::GlobalFlight, Some(false)) => ctx.send(CACHE, Msg::Lock { key, ttl: self.lock_ttl }),
                    (_, Some(_)) => {} // this instance is already loading it
                    (Strategy::GlobalFlight, None) => {
                        ctx.count("misses", readers as i64);
                        self.loading.insert(key, false);
                        ctx.send(CACHE, Msg::Lock { key, ttl: self.lock_ttl });
                    }
                    (_, None) => {
                        ctx.count("misses", readers as i64);
                        self.loading.insert(key, true);
                        ctx.send(ORIGIN, Msg::Load { key, epoch: 0 });
                    }
                }
            }
        }
    }

    /// Serves every reader of `key` from the cached value. A lock waiter that finds the
    /// value stops waiting; a background refresh (SWR, early refresh) carries on.
    fn serve_waiting(&mut self, key: u32, ctx: &mut Ctx<Cs>) {
        if self.loading.get(key) == Some(&false) {
            self.loading.remove(key);
        }
        self.answer_all(key, ctx);
    }
}

impl Cache {
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Cs>) {
        let now = ctx.now();
        match msg {
            Msg::Get { key } => {
                let lookup = match self.entries.get(key) {
                    Some(e) if now < e.fresh_until => {
                        Lookup::Fresh { ttl_left: e.fresh_until.since(now), cost: e.cost }
                    }
                    Some(e) if now < e.stale_until => Lookup::Stale,
                    _ => Lookup::Miss,
                };
                ctx.send(from, Msg::Got { key, lookup });
            }
            Msg::Set { key, ttl, stale, cost } => {
                let fresh_until = now.plus(ttl);
                self.entries.insert(key, Entry { fresh_until, stale_until: fresh_until.plus(stale), cost });
            }
            Msg::Lock { key, ttl } => {
                let granted = self.locks.get(key).is_none_or(|&until| now >= until);
                if granted {
                    self.locks.insert(key, now.plus(ttl));
                }
                ctx.send(from, Msg::Locked { key, granted, epoch: self.epoch });
            }
            Msg::Unlock { key } => {
                self.locks.remove(key);
            }
            _ => {}
        }
    }
}

impl Origin {
    fn publish(&self, ctx: &mut Ctx<Cs>) {
        ctx.gauge("origin_inflight", (self.busy + self.queue.len()) as i64);
        ctx.gauge("origin_peak", self.peak);
    }

    fn load(&mut self, from: NodeId, key: u32, epoch: u64, ctx: &mut Ctx<Cs>) {
        ctx.count("origin_loads", 1);
        let n = self.per_key.entry((key, epoch)).or_insert(0);
        *n += 1;
        self.last = (key, *n);
        self.queue.push_back((from, key, epoch, ctx.now()));
        self.peak = self.peak.max((self.busy + self.queue.len()) as i64);
        self.start(ctx);
        self.publish(ctx);
    }

    fn start(&mut self, ctx: &mut Ctx<Cs>) {
        while self.busy < self.conns {
            let Some((to, key, epoch, started)) = self.queue.pop_front() else { break };
            self.busy += 1;
            let dur = ctx.rng().exponential(self.mean * self.slow as f64) as Micros;
            ctx.set_timer(dur.max(1), Timer::LoadDone { to, key, epoch, started });
        }
    }

    fn done(&mut self, to: NodeId, key: u32, epoch: u64, started: Time, ctx: &mut Ctx<Cs>) {
        self.busy -= 1;
        if let Some(n) = self.per_key.get_mut(&(key, epoch)) {
            *n -= 1;
            self.last = (key, *n);
            if *n == 0 {
                self.per_key.remove(&(key, epoch));
            }
        }
        ctx.send(to, Msg::Loaded { key, cost: ctx.now().since(started) });
        self.start(ctx);
        self.publish(ctx);
    }
}
