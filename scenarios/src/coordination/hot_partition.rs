//! Hot partition: a table split into partitions, each with its own capacity; a celebrity's key goes viral and its one partition throttles everyone on it, whatever the table's total — unless the key is salted over shards (reads scattered to all of them) or its reads are cached in the app.

use crate::parts::{arrivals::OpenLoop, arrivals::Zipf, bucket::Gcra, calls::CallId, degraded::FaultWindow};
use crate::parts::{hedge::Fanouts, hedge::Gathered, judge::verdict_of, judge::Judge, ring::mix, store::Store};
use crate::parts::{strategies::strategies, window::SlidingCounter};
use faultline_core::*;
use std::collections::BTreeSet;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "hot-partition",
        title: "Hot partition and the celebrity key",
        category: "Coordination",
        seeds: &["S3#39", "S3#54"],
        summary: "A table of 16 partitions, each serving 500 units/s; 1,600 requests/s from 10,000 users. At 5 s a \
                  celebrity goes viral: its reads (32 units each) and writes land on one partition at twice its capacity, \
                  which throttles everyone it holds. Salting the key spreads the load over 8 shards (every read asks all \
                  8); a hot-key cache in the app absorbs the reads but not the writes.",
        note: Note {
            what_can_go_wrong: "A partitioned table caps each partition, not only the table: a key's traffic is served by \
                the one partition its hash lands on. A celebrity read by millions offers that partition more than it \
                serves, and it throttles every request it holds, other users' too, while the rest idle. More \
                provisioned capacity adds partitions and leaves the key on one. The model: Poisson traffic from 4 \
                apps; other users' keys by Zipf popularity (10,000 keys, s = 0.8), 20% writes, 1 unit each; the \
                celebrity's reads are queries of its items costing `read_units`, its writes 1 unit; a key's \
                partition is its hash mod N; a partition admits a request while its bucket (its capacity a second, \
                a second of burst) holds a unit, then charges the full cost (a big query can put it in debt); \
                throttled requests are not retried (SDK retries would add load); links take 1–4 ms.",
            what_you_sacrifice: "Salting: each celebrity read becomes k requests, as slow as the slowest, merged in the \
                app, and every writer must know the key is salted; the shards hash like any key, so two can share a \
                partition (balls into bins). The cache: reads up to a TTL stale, memory in every app, a detector to \
                tell hot keys (here the app is told), and nothing for writes: a write-heavy celebrity still melts \
                its partition.",
            at_10x: "Ten times the celebrity's traffic needs ten times the shards (and the read cost), or a cache whose \
                misses, one per app per TTL, fit a partition. Split-for-heat and adaptive capacity move a hot key's \
                neighbours away, but one key never spans partitions: past 3,000 RCU or 1,000 WCU the key must change.",
            resembles: "DynamoDB's per-partition limits (3,000 RCU, 1,000 WCU a second) and write sharding with random \
                or calculated suffixes, DAX in front of a table, Cosmos DB's hot logical partitions, Redis Cluster \
                hot slots, Cassandra wide rows, celebrity fan-out at Twitter and Instagram.",
            try_this: &[
                "Play `plain-key`: from 5 s the celebrity's partition is offered twice its capacity; \
                 `throttles-bounded` fails naming it, and other users on that partition are throttled too.",
                "Set `partitions` to 32: the table has twice the capacity, yet the celebrity's partition is offered \
                 the same load and throttles its requests as much: capacity per partition is what counts.",
                "Switch to `salted-key`: the hottest partition stays under capacity and nothing is throttled, but \
                 each celebrity read asks 8 partitions; with `shards` at 2 each shard is past a partition's capacity, \
                 and the check fails once its burst is spent.",
                "Switch to `hot-key-cache`: most celebrity reads hit and nothing is throttled; raise `celeb_writes` \
                 to 60 a second (600 while viral): the cache does nothing for writes, and the partition throttles.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("partitions", "Partitions", "", 1..=64, 16, "The table's partitions (hash mod N); rebuilds the run."),
        ParamSpec::live("capacity", "Partition capacity", "units/s", 10..=5_000, 500, "Units a partition serves a second (one second of burst)."),
        ParamSpec::live("background_rps", "Other users", "requests/s", 0..=5_000, 1_600, "Requests of other users (Zipf over 10,000 keys), 1 unit each."),
        ParamSpec::live("celeb_reads", "Celebrity reads", "per s", 0..=500, 3, "Before going viral."),
        ParamSpec::live("celeb_writes", "Celebrity writes", "per s", 0..=500, 9, "Before going viral (likes, comments: 1 unit each)."),
        ParamSpec::live("read_units", "Celebrity read size", "units", 1..=100, 32, "Units a read of the celebrity's items costs (4 KB each)."),
        ParamSpec::setup("viral_x", "Viral surge", "×", 1..=50, 10, "Scheduled fault: the celebrity's traffic from 5 s to 25 s."),
        ParamSpec::live("shards", "Salt shards", "", 1..=64, 8, "salted-key: the celebrity's key split into this many."),
        ParamSpec::live("ttl_ms", "Hot-key cache TTL", "ms", 0..=60_000, 1_000, "hot-key-cache: how long an app keeps the celebrity's read.").step(100),
    ],
    strategies: &[
        StrategySpec::naive("plain-key", "Plain key", "Every read and write of the celebrity goes to its key's one partition."),
        StrategySpec::fixed("salted-key", "Salted key, scatter reads", "Writes go to one of k salted keys at random; a read asks all k and merges."),
        StrategySpec::fixed("hot-key-cache", "Hot-key cache", "Each app keeps the celebrity's read for a TTL; writes still go to its partition."),
    ],
    faults: &[
        FaultSpec::global("viral", "Celebrity goes viral", "Its reads and writes are multiplied (1 ends it).").value("×", 1..=50, 10),
    ],
    checks: &[
        CheckSpec::new("throttles-bounded", "Throttled requests bounded",
            "No more than 1% of requests (a scattered read counts once) were throttled or unanswered in the last \
             second (or the last 100 requests, at low rates)."),
    ],
    metrics: &[
        MetricSpec::new("max_load", "Hottest partition's load", "%", Measure::Quantile("load_pct", 1.0)),
        MetricSpec::new("throttles", "Throttled", "requests/s", Measure::Rate("throttled")),
        MetricSpec::new("throttled_others", "Throttled: other users", "requests/s", Measure::Rate("throttled_others")),
        MetricSpec::new("throttled_pct", "Throttled", "%", Measure::Percent { num: "throttled", rest: "served" }),
        MetricSpec::new("read_cost", "Partitions per celebrity read", "", Measure::Mean("celeb_read_parts")),
        MetricSpec::new("hits", "Celebrity reads from cache", "%", Measure::Percent { num: "cache_hits", rest: "cache_misses" }),
        MetricSpec::new("p99", "Request p99", "us", Measure::Quantile("latency_us", 0.99)),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Plain, Salted, Cached });

const APPS: u32 = 4;
/// The celebrity's key (a user id); its salted keys are `SALTED + s`, other users' keys 1..=KEYS.
const CELEB: u64 = 50_000_000;
const SALTED: u64 = 1 << 40;
const KEYS: usize = 10_000;
const ZIPF_S: f64 = 0.8;
const BG_WRITE_PCT: u64 = 20;
/// The check's window (and a partition's load's, and a call's timeout).
const WINDOW_US: Micros = MICROS_PER_S;

/// The partition a key's hash lands on.
pub fn partition_of(key: u64, partitions: u32) -> u32 {
    (mix(key) % partitions.max(1) as u64) as u32
}

/// What a request is: the celebrity's or not, a write or a read.
type Req = (bool, bool);

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Op { call: CallId, key: u64, units: u64 },
    Ok { call: CallId },
    Throttled { call: CallId },
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Background,
    Celebrity,
    Try(CallId),
}
#[derive(Clone, Debug, Holds)]
pub enum Hp {
    Partition(Partition),
    App(App),
}
/// A partition: its bucket (GCRA, cost per request) and what it was offered in the last second.
#[derive(Clone, Debug)]
pub struct Partition {
    index: u32,
    bucket: Gcra,
    offered: SlidingCounter,
    celeb: SlidingCounter,
    throttled: SlidingCounter,
    capacity: u64,
    /// Units offered and admitted in the whole run (for tests: a throttled partition admits its rate).
    units: [u64; 2],
    /// The last instant counted (true time): the view has no clock.
    at: Time,
}
/// An app server: its share of the traffic, its requests out, and its hot-key cache.
#[derive(Clone, Debug)]
pub struct App {
    index: u32,
    strategy: Strategy,
    background: OpenLoop,
    /// The celebrity's reads and writes, one source at their sum (each a read by its share).
    celeb: OpenLoop,
    zipf: Zipf,
    fan: Fanouts<Req, u32>,
    /// Requests with a part throttled, until gathered.
    throttled: BTreeSet<u64>,
    cache: Store<u64, ()>,
    judge: Judge,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    Box::new(sim(setup))
}

fn sim(setup: &Setup) -> Sim<Hp> {
    let mut sim: Sim<Hp> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 4_000 }));
    for index in 0..setup.param("partitions") as u32 {
        let [offered, celeb, throttled] = [(); 3].map(|_| SlidingCounter::new(WINDOW_US));
        let (capacity, units, at) = (setup.param("capacity").max(1) as u64, [0; 2], Time::ZERO);
        let bucket = Gcra::new(capacity, MICROS_PER_S, capacity);
        sim.add_node(Hp::Partition(Partition { index, bucket, offered, celeb, throttled, capacity, units, at }));
    }
    let (strategy, zipf) = (Strategy::from_id(setup.strategy()), Zipf::new(KEYS, ZIPF_S));
    let per_app = |rate: i64| OpenLoop::poisson(rate as f64 / APPS as f64);
    for index in 0..APPS {
        let background = per_app(setup.param("background_rps"));
        let celeb = per_app(setup.param("celeb_reads") + setup.param("celeb_writes"));
        let (fan, judge) = (Fanouts::new("try_us", WINDOW_US), Judge::new(WINDOW_US, 100, 100));
        let (zipf, throttled, cache) = (zipf.clone(), BTreeSet::new(), Store::new());
        sim.add_node(Hp::App(App { index, strategy, background, celeb, zipf, fan, throttled, cache, judge }));
    }
    FaultWindow::secs(5, 20).custom(&mut sim, "viral", None, setup.param("viral_x"), 1);
    sim.check("throttles-bounded", |w| {
        let judges: Vec<&Judge> = w.all::<App>().map(|(_, a)| &a.judge).collect();
        let v = verdict_of(judges.iter().copied(), w.now, Time::ZERO);
        if !v.fails(1) {
            return Ok(());
        }
        let p = w.all::<Partition>().map(|(_, p)| p).max_by_key(|p| p.offered.count(w.now)).expect("a partition");
        let (why, i, capacity) = (v.describe(WINDOW_US), p.index, w.param("capacity"));
        let (units, pct) = (p.offered.count(w.now), p.celeb.count(w.now) * 100 / p.offered.count(w.now).max(1));
        Err(format!(
            "{why} throttled or unanswered; hottest: partition {i}, offered {units} units in the last second \
            of its {capacity}, {pct}% of them the celebrity's"
        ))
    });
    sim
}

impl Node for Hp {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Hp::App(a) = self {
            a.background.start(ctx, Timer::Background);
            a.celeb.start(ctx, Timer::Celebrity);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Hp::Partition(p), Msg::Op { call, key, units }) => p.serve(from, call, key, units, ctx),
            (Hp::App(a), Msg::Ok { call }) => a.answered(call, false, ctx),
            (Hp::App(a), Msg::Throttled { call }) => a.answered(call, true, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Hp::App(a), Timer::Background) => {
                a.background.on_timer(ctx, Timer::Background);
                let key = 1 + a.zipf.pick(ctx.rng()) as u64;
                let write = ctx.rng().below(100) < BG_WRITE_PCT;
                a.send((false, write), vec![(key, 1)], ctx);
            }
            (Hp::App(a), Timer::Celebrity) => {
                a.celeb.on_timer(ctx, Timer::Celebrity);
                let (reads, writes) = (ctx.param("celeb_reads").max(0) as u64, ctx.param("celeb_writes").max(0) as u64);
                if ctx.rng().below((reads + writes).max(1)) < reads {
                    return a.celeb_read(ctx);
                }
                let k = ctx.param("shards").max(1) as u64;
                let key = match a.strategy {
                    Strategy::Salted => SALTED + ctx.rng().below(k),
                    Strategy::Plain | Strategy::Cached => CELEB,
                };
                a.send((true, true), vec![(key, 1)], ctx);
            }
            (Hp::App(a), Timer::Try(call)) => {
                let g = a.fan.timeout(call, ctx);
                a.finish(g, ctx);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    /// An app's requests in flight and its cache die with it (their answers come back late); a
    /// partition's bucket and counts are the service's, kept by its replicas.
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Hp::App(a) = self {
            a.fan.clear(ctx);
            a.throttled.clear();
            a.cache.clear();
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Hp::App(a), Control::Strategy(id)) => (a.strategy, a.cache) = (Strategy::from_id(id), Store::new()),
            // The others are read where they are used.
            (Hp::App(a), Control::Param { id: "background_rps", value }) => {
                a.background.set_rate_per_s(value as f64 / APPS as f64, ctx, Timer::Background)
            }
            (Hp::App(a), Control::Param { id: "celeb_reads" | "celeb_writes", .. }) => {
                let rate = (ctx.param("celeb_reads") + ctx.param("celeb_writes")) as f64 / APPS as f64;
                a.celeb.set_rate_per_s(rate, ctx, Timer::Celebrity);
            }
            (Hp::App(a), Control::Custom { id: "viral", value }) => {
                a.celeb.set_load_pct(value.max(1) as u32 * 100, ctx, Timer::Celebrity);
                if a.index == 0 {
                    ctx.note(format!("the celebrity's traffic ×{}", value.max(1)));
                }
            }
            // A new capacity starts a fresh bucket (full: a second of burst).
            (Hp::Partition(p), Control::Param { id: "capacity", value }) => {
                p.capacity = value.max(1) as u64;
                p.bucket = Gcra::new(p.capacity, MICROS_PER_S, p.capacity);
            }
            // Faults the kernel applies itself need nothing more; the strategy is the apps'.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Hp::Partition(p) => p.view(),
            Hp::App(a) => a.view(),
        }
    }
}

impl Partition {
    /// Counted in true time (instrumentation); admitted on its own clock while its bucket holds a
    /// unit. Its load is observed at each request: a chart's maximum over a sample is the hottest's.
    fn serve(&mut self, from: NodeId, call: CallId, key: u64, units: u64, ctx: &mut Ctx<Hp>) {
        let now = ctx.truth();
        self.at = now;
        self.offered.hit(now, units);
        self.celeb.hit(now, if key == CELEB || key >= SALTED { units } else { 0 });
        ctx.observe("load_pct", self.offered.count(now) * 100 / self.capacity);
        self.units[0] += units;
        if self.bucket.allow_cost(ctx.now(), units) {
            self.units[1] += units;
            return ctx.send(from, Msg::Ok { call });
        }
        self.throttled.hit(now, 1);
        ctx.send(from, Msg::Throttled { call });
    }

    fn view(&self) -> NodeView {
        let [units, celeb, throttled] = [&self.offered, &self.celeb, &self.throttled].map(|c| c.count(self.at));
        NodeView::new(NodeKind::Database, 1, numbered("partition", self.index as u64))
            .gauge("units/s offered", units as i64, self.capacity as i64)
            .badge_if(units > self.capacity, "hot", Tone::Bad)
            .badge_if(throttled > 0, format!("throttling {throttled}/s"), Tone::Bad)
            .badge_if(celeb > 0, format!("celebrity {celeb} units/s"), Tone::Warn)
    }
}

impl App {
    fn celeb_read(&mut self, ctx: &mut Ctx<Hp>) {
        let (units, read) = (ctx.param("read_units").max(1) as u64, (true, false));
        match self.strategy {
            Strategy::Plain => self.send(read, vec![(CELEB, units)], ctx),
            // Each shard holds about a k-th of the items: a k-th of the units, at least one.
            Strategy::Salted => {
                let k = ctx.param("shards").max(1) as u64;
                self.send(read, (0..k).map(|s| (SALTED + s, units.div_ceil(k))).collect(), ctx)
            }
            Strategy::Cached if self.cache.get(&CELEB, ctx.now()).is_some() => {
                ctx.count("cache_hits", 1);
                ctx.observe("celeb_read_parts", 0);
                self.served(0, ctx);
            }
            Strategy::Cached => {
                ctx.count("cache_misses", 1);
                self.send(read, vec![(CELEB, units)], ctx)
            }
        }
    }

    /// One request: a call per (key, units) to the key's partition, gathered as one.
    fn send(&mut self, req: Req, parts: Vec<(u64, u64)>, ctx: &mut Ctx<Hp>) {
        if req == (true, false) {
            ctx.observe("celeb_read_parts", parts.len() as u64);
        }
        let n = ctx.param("partitions") as u32;
        let id = self.fan.open(ctx, req);
        for (key, units) in parts {
            let p = partition_of(key, n);
            let call = self.fan.call(ctx, id, p, p as NodeId, None, Timer::Try, Timer::Try);
            ctx.send(p as NodeId, Msg::Op { call, key, units });
        }
    }

    fn answered(&mut self, call: CallId, throttled: bool, ctx: &mut Ctx<Hp>) {
        if let Some(&(id, _)) = self.fan.hedges.get(call).filter(|_| throttled) {
            self.throttled.insert(id);
        }
        let g = self.fan.reply(call, ctx).and_then(|(_, g)| g);
        self.finish(g, ctx);
    }

    /// A request gathered (if its last part is in): throttled if any part was, failed if any went
    /// unanswered; a celebrity read fills the cache.
    fn finish(&mut self, g: Option<Gathered<Req, u32>>, ctx: &mut Ctx<Hp>) {
        let Some(g) = g else { return };
        let throttled = self.throttled.remove(&g.id);
        if throttled || !g.missing.is_empty() {
            self.judge.record(ctx.truth(), true, u64::MAX);
            ctx.count("throttled_others", (throttled && !g.req.0) as i64);
            return ctx.count(if throttled { "throttled" } else { "unanswered" }, 1);
        }
        self.served(g.latency_us, ctx);
        if g.req == (true, false) && self.strategy == Strategy::Cached {
            let ttl = ctx.param("ttl_ms").max(0) as Micros * MICROS_PER_MS;
            self.cache.put_ttl(CELEB, (), ctx.now(), ttl);
        }
    }

    fn served(&mut self, latency_us: Micros, ctx: &mut Ctx<Hp>) {
        self.judge.record(ctx.truth(), false, latency_us);
        ctx.count("served", 1);
        ctx.observe("latency_us", latency_us);
    }

    fn view(&self) -> NodeView {
        let tone = if self.strategy == Strategy::Plain { Tone::Warn } else { Tone::Good };
        NodeView::new(NodeKind::Service, 0, numbered("app", self.index as u64))
            .badge(SPEC.strategies[self.strategy as usize].label, tone)
            .badge_if(self.celeb.load_pct() > 100, format!("viral ×{}", self.celeb.load_pct() / 100), Tone::Bad)
            .gauge("requests out", self.fan.len() as i64, 50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sim};

    const CHECK: &str = "throttles-bounded";
    /// The defaults while viral: reads and writes a second, and a read's units.
    const READS: f64 = 30.0;
    const WRITES: f64 = 90.0;
    const UNITS: u64 = 32;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("hot-partition", strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Sim<Hp> {
        run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn counter(sim: &Sim<Hp>, name: &str) -> i64 {
        sim.metrics().counter(name)
    }

    /// Runs `recipe` from `from` s to `to` s: `read` of the run at both ends.
    fn between<T>(recipe: Recipe, from: u64, to: u64, read: impl Fn(&Sim<Hp>) -> T) -> [T; 2] {
        let mut sim = run(recipe, from);
        let a = read(&sim);
        sim.run_until(Time::from_secs(to), u64::MAX);
        [a, read(&sim)]
    }

    /// Units offered and admitted by each partition from 10 s to 24 s (all viral), as rates.
    fn rates(recipe: Recipe) -> Vec<[f64; 2]> {
        let units = |sim: &Sim<Hp>| {
            let n = sim.nodes().len() as u32 - APPS;
            (0..n).map(|p| sim.node::<Partition>(p as NodeId).units).collect::<Vec<_>>()
        };
        let [a, b] = between(recipe, 10, 24, units);
        a.iter().zip(&b).map(|(a, b)| [0, 1].map(|i| (b[i] - a[i]) as f64 / 14.0)).collect()
    }

    /// Each partition's expected offered units a second while viral, and the variance of its
    /// mean over 14 s (Poisson streams: a stream of r requests of size s adds r·s² a second).
    fn expected(partitions: u32, shards: Option<u64>) -> Vec<(f64, f64)> {
        let mut want = vec![(0.0, 0.0); partitions as usize];
        let mut add = |key: u64, rate: f64, size: u64| {
            let w = &mut want[partition_of(key, partitions) as usize];
            (w.0, w.1) = (w.0 + rate * size as f64, w.1 + rate * (size * size) as f64 / 14.0);
        };
        let zipf = Zipf::new(KEYS, ZIPF_S);
        (0..KEYS).for_each(|k| add(k as u64 + 1, 1600.0 * zipf.pmf(k), 1));
        if let Some(k) = shards {
            for s in 0..k {
                add(SALTED + s, READS, UNITS.div_ceil(k));
                add(SALTED + s, WRITES / k as f64, 1);
            }
        } else {
            add(CELEB, READS, UNITS);
            add(CELEB, WRITES, 1);
        }
        want
    }

    #[test]
    fn try_plain_key_the_viral_celebrity_throttles_its_partition_and_its_neighbours() {
        // Step 1: the celebrity's partition (1 of 16) is offered 30 × 32 + 90 units/s besides its
        // share of the others' 1,600/s, about 1,130 of its 500: the check fails within the second
        // the surge starts (a second of burst), naming partition 1, and other users are throttled.
        for seed in 1..=5 {
            let sim = run(recipe("plain-key", seed), 12);
            let (t, why) = failed_at(&sim, CHECK).unwrap_or_else(|| panic!("seed {seed}: the check held"));
            assert!((5.0..7.0).contains(&t) && why.contains("partition 1,"), "seed {seed}: at {t} s: {why}");
            assert!(counter(&sim, "throttled_others") > 50, "seed {seed}");
        }
    }

    #[test]
    fn try_more_partitions_leave_the_celebrity_on_one() {
        // Step 2: at 32 partitions the celebrity's key lands on one of them all the same (partition
        // 1 again), offered about 1,080 units/s of its 500 instead of 1,130: its own requests are
        // throttled about as much (fewer neighbours share that partition now).
        for seed in 1..=3 {
            let [small, big] = [16, 32].map(|n| run(recipe("plain-key", seed).with_param("partitions", n), 25));
            let (t, why) = failed_at(&big, CHECK).unwrap_or_else(|| panic!("seed {seed}: held at 32"));
            assert!((5.0..7.0).contains(&t) && why.contains("partition 1,"), "seed {seed}: {why}");
            let celeb = |sim: &Sim<Hp>| (counter(sim, "throttled") - counter(sim, "throttled_others")) as f64;
            let (a, b) = (celeb(&small), celeb(&big));
            assert!(b > 0.85 * a, "seed {seed}: {b} celebrity requests throttled at 32 partitions, {a} at 16");
        }
    }

    #[test]
    fn try_salted_key_holds_but_every_read_asks_every_shard() {
        // Step 3: 8 shards, two of them on partition 6: it is offered 2 × (30 × 4 + 90/8) units/s
        // plus 74 of the others', about 340 of 500. Each celebrity read asks all 8. With 2 shards
        // each is offered 30 × 16 + 45 = 525 units/s plus the others' (~90): past capacity by
        // ~110 units/s, so its second of burst (500) is gone some 4–5 s into the surge.
        for seed in 1..=5 {
            let sim = run(recipe("salted-key", seed), 30);
            assert!(failed_at(&sim, CHECK).is_none(), "seed {seed}: {:?}", failed_at(&sim, CHECK));
            assert_eq!(counter(&sim, "throttled"), 0, "seed {seed}");
            assert_eq!(sim.metrics().histogram("celeb_read_parts").expect("reads").mean(), 8.0);
            let two = run(recipe("salted-key", seed).with_param("shards", 2), 15);
            let (t, _) = failed_at(&two, CHECK).unwrap_or_else(|| panic!("seed {seed}: 2 shards held"));
            assert!((7.0..12.0).contains(&t), "seed {seed}: at {t} s");
        }
    }

    #[test]
    fn try_hot_key_cache_absorbs_reads_but_not_writes() {
        // Step 4: the cache leaves the celebrity's partition its 90 writes/s and the misses; at
        // 60 writes/s (600 while viral) the writes alone are past its 500 units/s.
        for seed in 1..=5 {
            let sim = run(recipe("hot-key-cache", seed), 30);
            assert!(failed_at(&sim, CHECK).is_none(), "seed {seed}: {:?}", failed_at(&sim, CHECK));
            let (hits, misses) = (counter(&sim, "cache_hits") as f64, counter(&sim, "cache_misses") as f64);
            assert!(hits > 4.0 * misses, "seed {seed}: {hits} hits, {misses} misses");
            let writes = run(recipe("hot-key-cache", seed).with_param("celeb_writes", 60), 12);
            let (t, why) = failed_at(&writes, CHECK).unwrap_or_else(|| panic!("seed {seed}: writes held"));
            assert!((5.0..8.0).contains(&t) && why.contains("partition 1,"), "seed {seed}: {why}");
        }
    }

    #[test]
    fn each_partition_is_offered_its_keys_rates_and_salting_divides_the_hot_keys_by_k() {
        // Salted into k shards, a shard is offered R·⌈u/k⌉ + W/k units/s, and a partition the
        // sum of its keys' rates (its Zipf share of the others' plus its shards). Salted, no
        // partition throttles, so what it admits over 14 s is what it was offered: each within
        // 4 standard deviations of its mean (the Poisson counts' variance, computed per partition).
        for seed in 1..=2 {
            let got = rates(recipe("salted-key", seed));
            for (p, (g, (mean, var))) in got.iter().zip(expected(16, Some(8))).enumerate() {
                assert_eq!(g[0], g[1], "seed {seed}: partition {p} throttled");
                assert!((g[0] - mean).abs() <= 4.0 * var.sqrt(), "seed {seed}: partition {p}: {g:?} vs {mean:.0}");
            }
        }
    }

    #[test]
    fn a_partition_offered_more_than_its_rate_admits_its_rate_and_throttles_the_rest() {
        // Plain key: the celebrity's partition is offered λ ≈ 1,130 units/s of r = 500, drained
        // since 5 s. From 10 s to 24 s its bucket admits r·T give or take one request's cost
        // (debt at either end: 32 units, 2.3 units/s over 14 s), so λ − r is throttled; λ itself
        // within 4 standard deviations of the keys' rates.
        let want = expected(16, None);
        for seed in 1..=3 {
            let got = rates(recipe("plain-key", seed));
            let [offered, admitted] = got[1];
            assert!((admitted - 500.0).abs() <= UNITS as f64 / 14.0 + 0.1, "seed {seed}: admitted {admitted}");
            let (mean, var) = want[1];
            assert!((offered - mean).abs() <= 4.0 * var.sqrt(), "seed {seed}: offered {offered} vs {mean:.0}");
            for (p, g) in got.iter().enumerate().filter(|(p, _)| *p != 1) {
                assert_eq!(g[0], g[1], "seed {seed}: partition {p}, not the celebrity's, throttled");
            }
        }
    }

    #[test]
    fn cache_misses_are_one_per_app_per_ttl_plus_the_wait_for_the_next_read() {
        // Renewal: once an app's entry expires, the next read (an exponential wait, mean 1/λₐ with
        // λₐ = 30/4 = 7.5 reads/s) misses and refills it when answered (a round trip, ~5 ms, in
        // which λₐ·5 ms more miss too). Misses a second: A·(1 + λₐ·rtt)/(TTL + 1/λₐ + rtt) ≈ 3.65.
        // Over 14 s and 3 seeds, about 150 misses: ±12% is over 3 standard deviations.
        let (la, rtt) = (READS / APPS as f64, 0.005);
        let want = APPS as f64 * (1.0 + la * rtt) / (1.0 + 1.0 / la + rtt) * 14.0 * 3.0;
        let misses: i64 = (1..=3)
            .map(|seed| {
                let [a, b] = between(recipe("hot-key-cache", seed), 10, 24, |sim| counter(sim, "cache_misses"));
                b - a
            })
            .sum();
        assert!((misses as f64 / want - 1.0).abs() < 0.12, "{misses} misses, want {want:.0}");
    }

    #[test]
    fn salted_keys_share_partitions_as_balls_in_bins() {
        // k keys hashed into n partitions touch n·(1 − (1 − 1/n)^k) of them on average: 6.45 for
        // k = 8, n = 16. Over 4,000 sets of salted keys (s.d. of one ≈ 0.9) the mean is within 0.06.
        let (n, k) = (16u32, 8u64);
        let sets = 4000u64;
        let distinct: u64 = (1..=sets)
            .map(|b| {
                let mut hit = vec![false; n as usize];
                (0..k).for_each(|s| hit[partition_of((b << 20) + s, n) as usize] = true);
                hit.iter().filter(|&&h| h).count() as u64
            })
            .sum();
        let want = n as f64 * (1.0 - libm::pow(1.0 - 1.0 / n as f64, k as f64));
        assert!((distinct as f64 / sets as f64 - want).abs() < 0.06, "{distinct} over {sets} sets, want {want:.2}");
    }
}
