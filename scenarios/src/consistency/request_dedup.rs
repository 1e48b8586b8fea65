//! Request deduplication: clients' retries and redeliveries send a request again, and the copy lands on another instance; a per-instance set misses it, a shared store catches it with memory that grows forever, a Bloom filter in fixed memory drops some new requests as seen, and a time-bounded window forgets ids older than the window.

use crate::parts::arrivals::OpenLoop;
use crate::parts::balance::{Chooser, Rule};
use crate::parts::bloom::Bloom;
use crate::parts::degraded::FaultWindow;
use crate::parts::effects::{Done, Effects};
use crate::parts::store::Store;
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "request-dedup",
        title: "Request deduplication",
        category: "Transactions & consistency",
        seeds: &["S1-P#9", "S3#10"],
        summary: "200 requests/s reach 4 instances through a random balancer; 20% are sent again up to 5 s later \
                  (a retry storm at 10 s: 60%). Per-instance sets miss copies on other instances; a shared store, a \
                  Bloom filter and a time window catch them at different costs in memory and in requests lost.",
        note: Note {
            what_can_go_wrong: "A copy lands on another instance ((N−1)/N of them behind a random balancer) whose \
                own set never saw the id: processed twice. A Bloom filter never lets a copy through, but as it fills \
                a new id finds all its k bits set by others and is dropped as a duplicate: (1 − e^(−kn/m))^k of new \
                requests after n. A window forgets an id after window_ms: a copy later than that is processed \
                again. Model: Poisson requests, each copied once with a chance, the copy sent uniformly 0 to \
                spread_ms later; the test-and-set is one atomic step at the store (SET NX, BF.ADD), taken before \
                the work, so a crash between them loses a request rather than doubling it; the store survives \
                crashes, an instance's set does not. Memory: 16 B per stored id (its UUID; Redis adds \
                ~50 B of overhead per key), m/8 B for the filter.",
            what_you_sacrifice: "The shared store: a round trip per request and an id kept forever (memory grows \
                with every request ever seen). The Bloom filter: a fixed size, paid for by new requests dropped, more \
                as it fills; it cannot forget or be resized. The window: memory bounded at rate × window, and no \
                promise past it.",
            at_10x: "At 10× the rate the unbounded store grows 10× faster, the window holds 10× the ids, and a filter \
                sized for the old rate saturates 10× sooner: its false drops soar. Real systems size the filter for \
                the window's n and rotate filters (a new one per window, both asked).",
            resembles: "Redis SET NX PX as an idempotency or dedup key, RedisBloom BF.ADD, SQS FIFO's 5-minute \
                deduplication interval, Kafka's idempotent producer, Medium's and Instagram's 'seen' Bloom filters.",
            try_this: &[
                "Play `per-instance-set`: about 3/4 of the copies (4 instances) are processed twice, about 30 a second \
                 and three times that in the retry storm from 10 s; `no-duplicate-processed` names the request and both apps.",
                "Switch to `shared-store`: no copy processed twice, but memory grows by 16 B for every request \
                 ever seen: about 100 KB at 30 s, where the `time-window` holds about a third of that.",
                "Play `bloom-filter`: 4 KiB whatever the traffic and no copy processed twice, but false drops climb as \
                 it fills: about 5% of new requests from 25 s to 30 s. Raise `bloom_kib` to 32 and they all but vanish.",
                "Play `time-window` and set `spread_ms` to 20000, past the 10 s `window_ms`: copies later than the \
                 window are processed twice, while memory stays near rate × window.",
            ],
        },
    },
    params: &[
        ParamSpec::live("rps", "Requests", "per s", 1..=20_000, 200, "Logical requests, a Poisson stream."),
        ParamSpec::setup("instances", "Instances", "", 1..=32, 4, "Behind a balancer that picks at random."),
        ParamSpec::live("dup_pct", "Duplicated", "%", 0..=100, 20, "Requests sent again (a retry, a redelivery)."),
        ParamSpec::live("spread_ms", "Copy delay up to", "ms", 0..=60_000, 5000, "Uniform from 0.").step(100),
        ParamSpec::live("window_ms", "Dedup window", "ms", 100..=60_000, 10_000, "time-window: ids kept this long.").step(100),
        ParamSpec::setup("bloom_kib", "Bloom filter size", "KiB", 1..=256, 4, "m = 8,192 bits a KiB; it cannot be resized."),
        ParamSpec::setup("bloom_hashes", "Bloom hashes", "", 1..=16, 4, "k bits set and tested per id."),
    ],
    strategies: &[
        StrategySpec::naive("per-instance-set", "Per-instance set", "Each instance remembers the ids it saw itself."),
        StrategySpec::fixed("shared-store", "Shared store", "SET id NX in one store all instances ask; kept forever."),
        StrategySpec::fixed("bloom-filter", "Bloom filter", "BF.ADD in one shared filter of fixed size: maybe seen = drop."),
        StrategySpec::fixed("time-window", "Time-bounded window", "SET id NX PX window: an id is forgotten after the window."),
    ],
    faults: &[
        FaultSpec::global("retry-storm", "Retry storm", "This share of requests is sent again.").value("%", 0..=100, 60),
    ],
    checks: &[
        CheckSpec::new("no-duplicate-processed", "No duplicate processed", "No request id is processed twice."),
    ],
    metrics: &[
        MetricSpec::new("dups", "Duplicates processed", "/s", Measure::Rate("dup_processed")),
        MetricSpec::new("dups_total", "Duplicates processed (total)", "", Measure::Count("dup_processed")),
        MetricSpec::new("false_drops", "False drops", "/s", Measure::Rate("false_drops")),
        MetricSpec::new("false_drop_pct", "New requests dropped", "%", Measure::Percent { num: "false_drops", rest: "passed_new" }),
        MetricSpec::new("memory", "Dedup memory", "B", Measure::Count("memory_bytes")),
        MetricSpec::new("decide_p99", "Dedup decision p99", "us", Measure::Quantile("decide_us", 0.99)),
        MetricSpec::new("processed", "Processed", "/s", Measure::Rate("processed")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { PerInstance, Shared, BloomFilter, Window });
const CLIENTS: NodeId = 0;
const STORE: NodeId = 1;
const DOWNSTREAM: NodeId = 2;
const FIRST_APP: NodeId = 3;
/// Memory per stored id: a 16-byte UUID, the overhead of the set or store left out.
const ENTRY_B: i64 = 16;

/// A request as sent: its id, whether it is the copy, and when the instance got it (its clock).
#[derive(Clone, Copy, Debug)]
pub struct Req {
    id: u64,
    copy: bool,
    at: Time,
}
/// How the store is asked to keep an id: forever, for a time (SET NX / SET NX PX), or in the filter.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    Forever,
    For(Micros),
    Bloom,
}
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(Req),
    Ask(Req, Keep),
    Verdict(Req, bool),
    Process(Req),
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Copy(u64),
    Sweep,
}
#[derive(Clone, Debug, Holds)]
pub enum Dd {
    Clients(Clients),
    Store(DedupStore),
    Downstream(Downstream),
    App(App),
}
/// The clients and the balancer in front of the instances: a request, and now and then its copy.
#[derive(Clone, Debug)]
pub struct Clients {
    arrivals: OpenLoop,
    sent: u64,
    balancer: Chooser,
    apps: usize,
    storm_pct: Option<i64>,
}
/// An instance: its own set of ids seen (volatile), or a question to the shared store.
#[derive(Clone, Debug)]
pub struct App {
    index: u32,
    strategy: Strategy,
    seen: KeyTable<()>,
}
/// The shared store (durable): ids kept forever or for the window, the Bloom filter once asked,
/// and the truth about which ids it was ever asked (for false drops; not counted as memory).
#[derive(Clone, Debug)]
pub struct DedupStore {
    ids: Store<u64, ()>,
    bloom: Option<Bloom>,
    size: (u64, u32),
    asked: KeyTable<()>,
    reported_b: i64,
}
/// The work a request does (an email, a write), and who did it first: a second time is a duplicate.
#[derive(Clone, Debug, Default)]
pub struct Downstream {
    effects: Effects,
    first_by: KeyTable<NodeId>,
    repeat: Breach,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Dd> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let apps = setup.param("instances") as usize;
    let (arrivals, balancer) = (OpenLoop::poisson(setup.param("rps") as f64), Chooser::new(Rule::Random));
    assert_eq!(sim.add_node(Dd::Clients(Clients { arrivals, sent: 0, balancer, apps, storm_pct: None })), CLIENTS);
    let size = (setup.param("bloom_kib") as u64 * 8192, setup.param("bloom_hashes") as u32);
    let store = DedupStore { ids: Store::new(), bloom: None, size, asked: KeyTable::default(), reported_b: 0 };
    assert_eq!(sim.add_node(Dd::Store(store)), STORE);
    assert_eq!(sim.add_node(Dd::Downstream(Downstream::default())), DOWNSTREAM);
    let strategy = Strategy::from_id(setup.strategy());
    for index in 0..apps as u32 {
        sim.add_node(Dd::App(App { index, strategy, seen: KeyTable::default() }));
    }
    // The plan: a retry storm from 10 s to 15 s (a slow dependency made clients time out and retry).
    FaultWindow::secs(10, 5).custom(&mut sim, "retry-storm", None, 60, 0);
    sim.check("no-duplicate-processed", move |w| w.node::<Downstream>(DOWNSTREAM).repeat.now(w.now));
    Box::new(sim)
}

impl Node for Dd {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Dd::Clients(c) => c.arrivals.start(ctx, Timer::Arrive),
            Dd::Store(_) => drop(ctx.set_timer(MICROS_PER_S, Timer::Sweep)),
            Dd::Downstream(_) | Dd::App(_) => {}
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Dd::App(a), Msg::Request(req)) => a.request(req, ctx),
            (Dd::App(_), Msg::Verdict(req, new)) => decided(req, new, ctx),
            (Dd::Store(s), Msg::Ask(req, keep)) => s.ask(from, req, keep, ctx),
            (Dd::Downstream(d), Msg::Process(req)) => d.process(from, req, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Dd::Clients(c), Timer::Arrive) => c.arrive(ctx),
            (Dd::Clients(c), Timer::Copy(id)) => c.send(Req { id, copy: true, at: Time(0) }, ctx),
            (Dd::Store(s), Timer::Sweep) => {
                // Active expiry, as Redis does it: expired ids leave memory within a second.
                s.ids.sweep(ctx.now());
                s.report(ctx);
                ctx.set_timer(MICROS_PER_S, Timer::Sweep);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Dd::App(a) = self {
            ctx.count("memory_bytes", -(a.seen.len() as i64) * ENTRY_B);
            a.seen.clear();
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Dd::App(a), Control::Strategy(id)) => a.strategy = Strategy::from_id(id),
            (Dd::Clients(c), Control::Custom { id: "retry-storm", value }) => {
                c.storm_pct = Some(value).filter(|&v| v > 0)
            }
            (Dd::Clients(c), Control::Param { id: "rps", value }) => {
                c.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            _ => {} // the other parameters are read where they are used
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Dd::Clients(c) => NodeView::new(NodeKind::Client, 0, "clients → balancer")
                .gauge("requests sent", c.sent as i64, 10_000)
                .badge_if(
                    c.storm_pct.is_some(),
                    format!("retry storm: {}% sent again", c.storm_pct.unwrap_or(0)),
                    Tone::Warn,
                ),
            Dd::App(a) => NodeView::new(NodeKind::Service, 1, numbered("app", a.index as u64 + 1)).badge_if(
                !a.seen.is_empty(),
                format!("own set: {} ids", a.seen.len()),
                Tone::Neutral,
            ),
            Dd::Store(s) => s.view(),
            Dd::Downstream(d) => NodeView::new(NodeKind::Database, 3, "downstream (does the work)")
                .gauge("requests done", d.effects.count() as i64, 10_000)
                .badge_if(
                    d.effects.repeated_keys() > 0,
                    format!("{} done twice", d.effects.repeated_keys()),
                    Tone::Bad,
                ),
        }
    }
}

impl Clients {
    /// A new request to an instance the balancer picks; with the chance in force, its copy later.
    fn arrive(&mut self, ctx: &mut Ctx<Dd>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        self.sent += 1;
        self.send(Req { id: self.sent, copy: false, at: Time(0) }, ctx);
        let pct = self.storm_pct.unwrap_or_else(|| ctx.param("dup_pct"));
        if (ctx.rng().below(100) as i64) < pct {
            let spread_us = ms(ctx.param("spread_ms"));
            let spread = ctx.rng().below(spread_us + 1);
            ctx.set_timer(spread, Timer::Copy(self.sent));
        }
    }
    fn send(&mut self, req: Req, ctx: &mut Ctx<Dd>) {
        let apps: Vec<usize> = (0..self.apps).collect();
        let app = self.balancer.pick(&apps, |_| 0, ctx.rng()).expect("an instance");
        ctx.count("copies", req.copy as i64);
        ctx.send(FIRST_APP + app as NodeId, Msg::Request(req));
    }
}

impl App {
    fn request(&mut self, mut req: Req, ctx: &mut Ctx<Dd>) {
        req.at = ctx.now();
        let keep = match self.strategy {
            Strategy::PerInstance => {
                let new = self.seen.insert(req.id, ()).is_none();
                ctx.count("memory_bytes", new as i64 * ENTRY_B);
                return decided(req, new, ctx);
            }
            Strategy::Shared => Keep::Forever,
            Strategy::BloomFilter => Keep::Bloom,
            Strategy::Window => Keep::For(ms(ctx.param("window_ms"))),
        };
        ctx.send(STORE, Msg::Ask(req, keep));
    }
}

/// An instance's verdict: a new id is processed (downstream), a seen one dropped.
fn decided(req: Req, new: bool, ctx: &mut Ctx<Dd>) {
    ctx.observe("decide_us", ctx.now().since(req.at));
    if new {
        ctx.send(DOWNSTREAM, Msg::Process(req));
    } else {
        ctx.count("dropped", 1);
    }
}

impl DedupStore {
    /// SET id NX (forever, or PX the window) or BF.ADD, one step each; the verdict back.
    fn ask(&mut self, from: NodeId, req: Req, keep: Keep, ctx: &mut Ctx<Dd>) {
        let now = ctx.now();
        let new = match keep {
            Keep::Bloom => self.bloom.get_or_insert_with(|| Bloom::new(self.size.0, self.size.1)).insert(req.id),
            Keep::For(ttl) => self.ids.cas_ttl(req.id, 0, (), now, ttl).is_ok(),
            Keep::Forever => self.ids.cas(req.id, 0, (), now).is_ok(),
        };
        // The truth: an id the store was never asked before, dropped, is a new request lost.
        let first = self.asked.insert(req.id, ()).is_none();
        ctx.count("false_drops", (first && !new) as i64);
        ctx.count("passed_new", (first && new) as i64);
        self.report(ctx);
        ctx.send(from, Msg::Verdict(req, new));
    }
    /// The memory counter follows what the store holds: ids (expired ones until swept) and the filter.
    fn report(&mut self, ctx: &mut Ctx<Dd>) {
        let bytes = self.ids.stored() as i64 * ENTRY_B + self.bloom.as_ref().map_or(0, |b| b.bytes() as i64);
        ctx.count("memory_bytes", bytes - self.reported_b);
        self.reported_b = bytes;
    }
    fn view(&self) -> NodeView {
        let v = NodeView::new(NodeKind::Store, 2, "shared dedup store")
            .gauge("memory KB", self.reported_b / 1000, 100)
            .badge_if(self.ids.stored() > 0, format!("{} ids", self.ids.stored()), Tone::Neutral);
        match &self.bloom {
            None => v,
            Some(b) => {
                let fp = libm::pow(b.fill(), b.hashes() as f64);
                let text = format!(
                    "bloom {} KiB, {:.0}% bits set: drops {:.1}% of new",
                    b.bytes() / 1024,
                    b.fill() * 100.0,
                    fp * 100.0
                );
                v.badge(text, if fp > 0.01 { Tone::Bad } else { Tone::Good })
            }
        }
    }
}

impl Downstream {
    /// The work done; a second time for an id is the duplicate the check names, with both instances.
    fn process(&mut self, from: NodeId, req: Req, ctx: &mut Ctx<Dd>) {
        ctx.count("processed", 1);
        if let Done::New { times, .. } = self.effects.perform(req.id, false, ctx.truth()) {
            let first = *self.first_by.get_or_insert(req.id, from);
            if times > 1 {
                ctx.count("dup_processed", 1);
                let (a, b) =
                    (numbered("app", (first - FIRST_APP) as u64 + 1), numbered("app", (from - FIRST_APP) as u64 + 1));
                self.repeat
                    .record(format!("request {} processed {times} times: by {a}, now by {b}", req.id), ctx.truth());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::bloom::false_positive_rate;
    use crate::parts::testing::{between, failed_at, run_sampled, Sampled};

    const COUNTERS: [&str; 5] = ["dup_processed", "false_drops", "passed_new", "memory_bytes", "copies"];
    const DUPS: usize = 0;
    const FALSE: usize = 1;
    const PASSED: usize = 2;
    const MEMORY: usize = 3;
    const COPIES: usize = 4;

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &COUNTERS)
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new(SPEC.id(), strategy, seed)
    }

    fn held(r: &dyn Run) -> bool {
        failed_at(r, "no-duplicate-processed").is_none()
    }

    #[test]
    fn a_per_instance_set_processes_n_minus_1_over_n_of_the_copies() {
        // A copy goes to a uniformly random instance: to the original's own one (whose set
        // knows the id) with chance 1/N, else to one that never saw it. Over ~1,500 copies the
        // share processed is binomial with s.d. under 1.2%: within 4% absolute.
        for (seed, n) in [(1, 4), (2, 8), (3, 2)] {
            let (_, at) = run(recipe("per-instance-set", seed).with_param("instances", n), 30);
            let share = at[30][DUPS] as f64 / at[30][COPIES] as f64;
            let theory = (n - 1) as f64 / n as f64;
            assert!((share - theory).abs() <= 0.04, "seed {seed}, {n} instances: {share:.3}, theory {theory:.3}");
        }
    }

    #[test]
    fn bloom_false_drops_match_one_minus_e_to_the_minus_kn_over_m_to_the_k() {
        // The i-th new id meets a filter holding i − 1 distinct ids (copies and false drops set no
        // new bits): it is dropped with chance (1 − e^(−k(i−1)/m))^k, so the expected false drops
        // among N new ids are the sum of those. 1,000 requests/s for 10 s into 4 KiB, k = 4:
        // ~770 expected, a s.d. of ~25 from the draws and about as much from the filter's fill
        // (occupancy variance, ×k): within 10% (over 2.5 s.d. of the two together).
        for seed in 1..=3 {
            let r = recipe("bloom-filter", seed).with_param("rps", 1000);
            let (_, at) = run(r, 10);
            let n = (at[10][FALSE] + at[10][PASSED]) as u64;
            let theory: f64 = (0..n).map(|i| false_positive_rate(4 * 8192, 4, i)).sum();
            let dropped = at[10][FALSE] as f64;
            assert!((dropped - theory).abs() <= 0.10 * theory, "seed {seed}: {dropped} of {n}, theory {theory:.0}");
        }
    }

    #[test]
    fn a_window_holds_rate_times_window_ids() {
        // Ids live window_ms, then leave at the next whole-second sweep: rate × (W + up to 1 s)
        // ids stored. Poisson counts over 10 s at 200/s vary by ~2%: 0.9 to 1.15 × λW.
        for seed in 1..=3 {
            let (_, at) = run(recipe("time-window", seed), 30);
            for s in [15, 20, 25, 30] {
                let ids = at[s][MEMORY] as f64 / ENTRY_B as f64;
                assert!((1800.0..=2300.0).contains(&ids), "seed {seed} at {s} s: {ids} ids, λW = 2000");
            }
        }
    }

    #[test]
    fn try_per_instance_sets_process_copies_twice_more_in_the_storm() {
        // Step 1: 200/s × 20% × 3/4 = 30 copies a second processed twice, ~90 in the storm (60%).
        for seed in 1..=3 {
            let (r, at) = run(recipe("per-instance-set", seed), 20);
            let (_, why) = failed_at(r.as_ref(), "no-duplicate-processed").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(why.contains("processed 2 times: by app") && why.contains(", now by app"), "seed {seed}: {why}");
            let (before, storm) = (between(&at, DUPS, 0, 10) / 10.0, between(&at, DUPS, 10, 15) / 5.0);
            assert!(before > 3.0 && storm > 2.0 * before, "seed {seed}: {before}/s, then {storm}/s");
        }
    }

    #[test]
    fn try_a_shared_store_holds_but_grows_for_ever() {
        // Step 2: ~6,000 ids × 16 B at 30 s; the window keeps ~2,000 of them.
        for seed in 1..=3 {
            let (r, at) = run(recipe("shared-store", seed), 30);
            let (w, wat) = run(recipe("time-window", seed), 30);
            assert!(held(r.as_ref()) && held(w.as_ref()), "seed {seed}");
            let (shared, window) = (at[30][MEMORY] as f64, wat[30][MEMORY] as f64);
            assert!((85_000.0..=110_000.0).contains(&shared) && at[30][MEMORY] > at[20][MEMORY], "seed {seed}");
            assert!((0.25..=0.4).contains(&(window / shared)), "seed {seed}: {window} vs {shared}");
        }
    }

    #[test]
    fn try_a_bloom_filter_stays_small_but_drops_new_requests_as_it_fills() {
        // Step 3: n ≈ 5,000–6,000 between 25 and 30 s: (1 − e^(−4n/32768))^4 ≈ 4–7%. With
        // 32 KiB, under 0.01% at 6,000 ids: about none.
        for seed in 1..=3 {
            let (r, at) = run(recipe("bloom-filter", seed), 30);
            assert!(held(r.as_ref()) && (1..=30).all(|s| at[s][MEMORY] == 4096), "seed {seed}");
            let share = between(&at, FALSE, 25, 30) / (between(&at, FALSE, 25, 30) + between(&at, PASSED, 25, 30));
            assert!((0.03..=0.08).contains(&share), "seed {seed}: {share:.3} of new requests dropped");
            let (_, big) = run(recipe("bloom-filter", seed).with_param("bloom_kib", 32), 30);
            assert!(big[30][FALSE] <= 2 && big[30][MEMORY] == 32_768, "seed {seed}: {}", big[30][FALSE]);
        }
    }

    #[test]
    fn try_a_window_shorter_than_the_copies_delay_processes_them_twice() {
        // Step 4: copies up to 20 s late, ids kept 10 s: about half the copies come too late.
        // Memory stays near λW (late copies re-enter the window: up to ~1.25 × λW × 16 B).
        for seed in 1..=3 {
            let (r, at) = run(recipe("time-window", seed).with_param("spread_ms", 20_000), 30);
            let (t, why) = failed_at(r.as_ref(), "no-duplicate-processed").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(t >= 10.0 && why.contains("processed 2 times"), "seed {seed}: {t} {why}");
            let late = at[30][DUPS] as f64 / at[30][COPIES] as f64;
            assert!((0.3..=0.6).contains(&late), "seed {seed}: {late:.2} of copies processed twice");
            assert!(at[30][MEMORY] <= 40_000, "seed {seed}: {} B", at[30][MEMORY]);
        }
    }

    #[test]
    fn the_view_shows_the_filter_and_the_repeats() {
        let (r, _) = run(recipe("bloom-filter", 1), 30);
        let store = r.frame(0).nodes.into_iter().nth(STORE as usize).expect("the store").view;
        assert!(store.badges.iter().any(|b| b.text.starts_with("bloom 4 KiB") && b.tone == Tone::Bad));
        let (r, _) = run(recipe("per-instance-set", 1), 10);
        let down = r.frame(0).nodes.into_iter().nth(DOWNSTREAM as usize).expect("downstream").view;
        assert!(down.badges.iter().any(|b| b.text.ends_with("done twice") && b.tone == Tone::Bad));
    }
}
