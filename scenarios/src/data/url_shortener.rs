//! URL shortener: creators turn long URLs into k-character codes, readers follow the codes. A
//! hash truncated to k characters gives two URLs one code (the birthday bound); a counter leased
//! in blocks or a random code inserted only if absent never does. A redirect cache in front of
//! the codes table, and a token bucket per creator against an abuser's flood.

use crate::parts::arrivals::{OpenLoop, Zipf};
use crate::parts::bucket::PerKey;
use crate::parts::cache::Lru;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::shortcode::{space, Answer, CodeTable, Ledger, Minter, Next, Range, Scheme, Write};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::unique::expected_repeats;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "url-shortener",
        title: "URL shortener: short codes, a redirect cache and an abuse limit",
        category: "Data & scale",
        seeds: &["S1#37", "S3#71"],
        summary: "Creators shorten 100 URLs a second into 3-character codes; readers follow 1,000 links a second (the \
                  newest the hottest) through four app servers, each with a redirect cache. A hash cut to 3 characters \
                  gives two URLs one code ~19 times in 30 s (the birthday bound); a counter leased in blocks and random \
                  codes inserted if absent never do. From 10 s one creator floods 2,000 URLs/s, held to 5/s by a limit.",
        note: Note {
            what_can_go_wrong: "k base62 characters make 62^k codes: 238,328 at k = 3, 3.5 trillion at k = 7. The first \
                k characters of a URL's MD5 are its hash modulo 62^k, a random code, so n URLs share codes about \
                n²/2·62^k times: 19 for this run's 3,000 URLs at k = 3; at the seed's 10M a day and k = 7, 14 on the \
                first day and more each day. As an upsert, the second URL silently takes the code: a link printed on a \
                poster opens a stranger's page. The model: Poisson creations by random creators, each sticky to one app \
                server (its token bucket's home); Poisson clicks on links handed out, Zipf by age (rank r, newest \
                first, clicked ∝ 1/r^s), each to a random app server with an LRU of code → URL and a TTL; one database \
                of c connections (exponential service), its table and counter durable; links of 0.2–1 ms.",
            what_you_sacrifice: "The counter never collides and reads nothing before a write, but its codes are \
                sequential (anyone can walk 3fA, 3fB… unless a bijection scrambles them) and one row every server needs \
                — hence blocks: one round trip per 100 codes, and a crash loses the rest of a block, a gap but never a \
                repeat. Random codes reveal nothing, but each insert is a unique-index check and retries grow as \
                n²/2m. Hash codes deduplicate a URL for free, which is exactly what collides. A limit refuses honest bursts too.",
            at_10x: "At the seed's 100M redirects a day (1,157/s on average) redirects are all reads: the cache's hit \
                ratio sets the cost, and a viral link is one hot entry. Creations are writes: unlimited, an abuser's \
                2,000/s fills the database's queue and every cache miss waits behind it. Codes must grow with the \
                table: 18 billion links (10M a day, five years) need k = 6 for a counter, k ≥ 8 for random codes.",
            resembles: "bit.ly, TinyURL, t.co; the system-design classic (Xu, System Design Interview, ch. 8); Flickr's \
                ticket servers, Hibernate's hi/lo blocks; a Redis cache before the redirect table; API-key token buckets.",
            try_this: &[
                "Play `hash-truncate`: ~19 URLs get a code another URL has (the birthday bound's line beside them); \
                 `unique-codes` names the code and both URLs, `redirects-correct` a link opening the other's page.",
                "Switch to `counter-base62`: both checks hold; at 15 s app 1 crashes with part of its block unspent, and \
                 those codes are skipped — a gap, never a repeat.",
                "Switch to `random-retry`: both checks hold, and the retries follow Σ u/(m − u) ≈ n²/2m — the count \
                 the hash turned into collisions. Set `code_len` to 2 (3,844 codes): thousands of retries.",
                "Under `random-retry` set `limit_per_s` to 0: from 10 s the abuser's 2,000 creations a second pass, \
                 the database (1,600 queries/s) falls behind, and the redirect p99 climbs from 22 ms to seconds.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("code_len", "Code length", "chars", 2..=8, 3, "Base62 characters per code: 62^k codes (3: 238,328; 7: 3.5 trillion)."),
        ParamSpec::setup("apps", "App servers", "", 1..=32, 4, "Servers creating codes and answering redirects, each with its own cache."),
        ParamSpec::live("create_rps", "Creations", "/s", 0..=20_000, 100, "Poisson URL creations by honest creators (10M a day is 116/s)."),
        ParamSpec::live("creators", "Creators", "", 1..=100_000, 100, "Honest creators; each creation is by one at random."),
        ParamSpec::live("redirect_rps", "Redirects", "/s", 0..=100_000, 1000, "Poisson clicks on links handed out (100M a day is 1,157/s)."),
        ParamSpec::live("skew", "Hot-link skew", "s×100", 0..=300, 100, "Zipf exponent ×100: rank r (by age, newest first) is clicked ∝ 1/r^s."),
        ParamSpec::live("hot_links", "Links clicked", "", 1..=100_000, 10_000, "Readers click among the newest this many links."),
        ParamSpec::live("cache_keys", "Cache size", "keys", 0..=100_000, 200, "Each app server's LRU redirect cache (0: none)."),
        ParamSpec::live("cache_ttl_s", "Cache TTL", "s", 1..=3600, 60, "A cached code is fetched again after this (for entries cached from now)."),
        ParamSpec::live("range_size", "Counter block", "codes", 1..=100_000, 100, "counter-base62: codes a server leases from the counter at a time."),
        ParamSpec::live("limit_per_s", "Abuse limit", "/s", 0..=1000, 5, "Creations a creator may make a second, by a token bucket (0: no limit)."),
        ParamSpec::live("burst", "Limit burst", "", 1..=1000, 20, "The bucket's size: creations a creator may make at once."),
        ParamSpec::live("connections", "DB connections", "", 1..=256, 8, "Queries the database serves at once."),
        ParamSpec::live("db_ms", "DB query", "ms", 1..=1000, 5, "Mean (exponential) time a query holds a connection."),
        ParamSpec::setup("abuse_rps", "Abuser's rate", "/s", 0..=20_000, 2000, "Scheduled fault: one creator floods creations at this rate."),
    ],
    strategies: &[
        StrategySpec::naive("hash-truncate", "Hash, truncated", "A code is the URL's hash cut to k base62 characters, written as an upsert: a second URL with that code takes it."),
        StrategySpec::fixed("counter-base62", "Counter + base62", "A code is the next number of a block each server leases from one durable counter, in base62."),
        StrategySpec::fixed("random-retry", "Random + retry", "A code is random, inserted only if absent; a taken one is drawn again."),
    ],
    faults: &[
        FaultSpec::global("abuser", "Abusive creator", "One creator floods creations at this rate (0 stops it).").value("/s", 0..=20_000, 2000),
    ],
    checks: &[
        CheckSpec::new("unique-codes", "No two URLs share a code", "A code handed to a creator stands for no other URL already. Names the code and both URLs."),
        CheckSpec::new("redirects-correct", "Redirects go where they were made to", "Every click on a link handed out redirects to the URL it was made for. Names the code and both URLs."),
    ],
    metrics: &[
        MetricSpec::new("collisions", "Collisions (a code given to a second URL)", "", Measure::Count("collisions")),
        MetricSpec::new("birthday", "Birthday bound: collisions of that many random codes", "", Measure::GaugePer("birthday_milli", 1000.0)),
        MetricSpec::new("hit", "Cache hit ratio", "%", Measure::Percent { num: "hits", rest: "misses" }),
        MetricSpec::new("p99", "Redirect p99", "us", Measure::Quantile("redirect_us", 0.99)),
        MetricSpec::new("throttled", "Creations throttled (429)", "/s", Measure::Rate("throttled")),
        MetricSpec::new("retries", "Retries (code taken)", "", Measure::Count("retries")),
        MetricSpec::new("skipped", "Codes skipped (block lost in a crash)", "", Measure::Count("skipped")),
        MetricSpec::new("db_queue", "Database queue", "queries", Measure::Gauge("db_queue")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { HashTruncate, Counter, RandomRetry });

const DB: NodeId = 0;
const USERS: NodeId = 1;
const FIRST_APP: NodeId = 2;
/// The abuser's creator id, apart from the honest ones.
const ABUSER: u32 = u32::MAX;
/// A block lease unanswered this long is asked again (a late answer is a gap).
const LEASE_TIMEOUT_US: Micros = 500 * MICROS_PER_MS;
/// Tries of random codes before a creation fails (only a nearly full space needs more).
const MAX_TRIES: u32 = 20;

/// A click carries its link (the ledger's index), echoed back with the answer.
#[rustfmt::skip] // A variant a line.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Create { url: u64, creator: u32 },
    Created { url: u64, code: u64 },
    Click { code: u64, link: u32, sent: Time },
    Location { link: u32, url: Option<u64>, sent: Time },
    Get { code: u64, link: u32, sent: Time },
    Found { code: u64, url: Option<u64>, link: u32, sent: Time },
    Write(Write),
    Stored { write: Write, ok: bool },
    Lease(CallId),
    Block { call: CallId, range: Range },
}

#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Timer { Create, Abuse, Click, Done(Slot), LeaseTimeout(CallId) }

#[rustfmt::skip]
#[derive(Clone, Debug, Holds)]
pub enum Us { Db(Db), Users(Users), App(App) }

/// The codes table and counter (on disk); the connections and their queue.
#[derive(Clone, Debug)]
pub struct Db {
    table: CodeTable,
    station: Station<(NodeId, Msg)>,
}

/// Creators (and the abuser) and readers as one crowd, with the truth (the ledger of links
/// handed out) and the checks' latest breaches.
#[derive(Clone, Debug)]
pub struct Users {
    creations: OpenLoop,
    abuse: OpenLoop,
    clicks: OpenLoop,
    zipf: Zipf,
    ledger: Ledger,
    shared: Breach,
    wrong: Breach,
}

/// In memory (a crash forgets it): the redirect cache (code → URL, expiry), each creator's bucket,
/// the creations and the block lease. `salt` (the seed) stands for the URLs' text in their hashes.
#[derive(Clone, Debug)]
pub struct App {
    index: u64,
    strategy: Strategy,
    cache: Lru<u64, (u64, Time)>,
    limits: PerKey<u32>,
    minter: Minter,
    lease: Calls<()>,
    salt: u64,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Us> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let station = Station::new(setup.param("connections") as u32, Service::exponential_ms(setup.param("db_ms") as u64));
    assert_eq!(sim.add_node(Us::Db(Db { table: CodeTable::default(), station })), DB);
    let [creations, clicks] = ["create_rps", "redirect_rps"].map(|p| OpenLoop::poisson(setup.param(p) as f64));
    let zipf = Zipf::new(setup.param("hot_links") as usize, setup.param("skew") as f64 / 100.0);
    let (abuse, ledger, shared, wrong) =
        (OpenLoop::poisson(0.0), Ledger::default(), Breach::default(), Breach::default());
    assert_eq!(sim.add_node(Us::Users(Users { creations, abuse, clicks, zipf, ledger, shared, wrong })), USERS);
    let (strategy, cache) = (Strategy::from_id(setup.strategy()), Lru::new(setup.param("cache_keys") as usize));
    for index in 0..setup.param("apps") as u64 {
        let (limits, minter, lease, salt) =
            (PerKey::default(), Minter::default(), Calls::new("lease_us"), setup.seed());
        sim.add_node(Us::App(App { index, strategy, cache: cache.clone(), limits, minter, lease, salt }));
    }
    // The plan: an abuser floods creations from 10 s to 20 s; app 1 crashes at 15 s for 2 s, mid-block.
    FaultWindow::secs(10, 10).custom(&mut sim, "abuser", None, setup.param("abuse_rps"), 0);
    FaultWindow::secs(15, 2).crash(&mut sim, FIRST_APP + 1.min(setup.param("apps") as NodeId - 1));
    sim.check("unique-codes", |w| w.node::<Users>(USERS).shared.now(w.now));
    sim.check("redirects-correct", |w| w.node::<Users>(USERS).wrong.now(w.now));
    Box::new(sim)
}

impl Node for Us {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Us::Users(u) = self {
            u.creations.start(ctx, Timer::Create);
            u.clicks.start(ctx, Timer::Click);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Us::Db(db), msg @ (Msg::Get { .. } | Msg::Write(_) | Msg::Lease(_))) => {
                _ = db.station.offer((from, msg), ctx, Timer::Done);
            }
            (Us::Users(u), Msg::Created { url, code }) => u.created(url, code, ctx),
            (Us::Users(u), Msg::Location { link, url, sent }) => {
                ctx.observe("redirect_us", ctx.now().since(sent));
                let judged = u.ledger.judge(link as usize, url, ctx.param("code_len") as u32);
                judged.unwrap_or_else(|why| u.wrong.record(why, ctx.truth()));
            }
            (Us::App(a), Msg::Create { url, creator }) => {
                let (limit, burst) = (ctx.param("limit_per_s") as u64, ctx.param("burst") as u64);
                if !a.limits.allow(creator, ctx.now(), limit, burst) {
                    return ctx.count("throttled", 1); // answered 429
                }
                a.minter.add(url);
                a.serve(ctx);
            }
            // From the cache while its entry is fresh, else from the database (and cached).
            (Us::App(a), Msg::Click { code, link, sent }) => {
                let url = a.cache.get_fresh(&code, ctx.now());
                ctx.count(if url.is_some() { "hits" } else { "misses" }, 1);
                match url {
                    Some(url) => ctx.send(USERS, Msg::Location { link, url: Some(url), sent }),
                    None => ctx.send(DB, Msg::Get { code, link, sent }),
                }
            }
            (Us::App(a), Msg::Found { code, url, link, sent }) => {
                let until = ctx.now().plus(ctx.param("cache_ttl_s") as Micros * MICROS_PER_S);
                url.inspect(|&url| a.cache.put(code, (url, until)));
                ctx.send(USERS, Msg::Location { link, url, sent });
            }
            (Us::App(a), Msg::Stored { write, ok }) => match a.minter.answered(write, ok, MAX_TRIES) {
                Answer::Hand(code) => ctx.send(USERS, Msg::Created { url: write.url, code }),
                Answer::Retry => {
                    ctx.count("retries", 1);
                    a.serve(ctx);
                }
                Answer::GiveUp => ctx.count("failed", 1),
                Answer::Unknown => {}
            },
            (Us::App(a), Msg::Block { call, range }) => {
                if a.lease.reply(call, ctx).is_some() {
                    a.minter.range = range;
                    a.serve(ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Us::Users(u), t @ (Timer::Create | Timer::Abuse)) => u.create(t, ctx),
            (Us::Users(u), Timer::Click) => {
                u.clicks.on_timer(ctx, Timer::Click);
                let Some((link, code)) = u.ledger.pick(&u.zipf, ctx.rng()) else { return };
                let apps = ctx.param("apps") as u64;
                let app = FIRST_APP + ctx.rng().below(apps) as NodeId;
                ctx.send(app, Msg::Click { code, link: link as u32, sent: ctx.now() });
            }
            (Us::Db(db), Timer::Done(slot)) => db.done(slot, ctx),
            (Us::App(a), Timer::LeaseTimeout(call)) => {
                if a.lease.timeout(call).is_some() {
                    a.serve(ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    /// The database keeps its table and counter; an app server forgets its cache, buckets,
    /// creations and what was left of its block (those codes are skipped: a gap).
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Us::Db(db) => _ = db.station.crash(ctx),
            Us::App(a) => {
                ctx.count("skipped", a.minter.crash() as i64);
                a.lease.clear(ctx);
                a.limits.clear();
                a.cache.clear();
            }
            Us::Users(_) => {}
        }
    }

    /// Most parameters are read when used (creators, TTL, block size, the limit); these act at once.
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Us::Users(u), Control::Custom { id: "abuser", value }) => {
                u.abuse.set_rate_per_s(value as f64, ctx, Timer::Abuse);
                ctx.note(format!("an abuser creates {value} URLs a second"));
            }
            // A rate change redraws the pending gap (exact for Poisson arrivals).
            (Us::Users(u), Control::Param { .. }) => {
                u.creations.set_rate_per_s(ctx.param("create_rps") as f64, ctx, Timer::Create);
                u.clicks.set_rate_per_s(ctx.param("redirect_rps") as f64, ctx, Timer::Click);
                u.zipf = Zipf::new(ctx.param("hot_links") as usize, ctx.param("skew") as f64 / 100.0);
            }
            (Us::App(a), Control::Strategy(id)) => a.strategy = Strategy::from_id(id),
            (Us::App(a), Control::Param { id: "cache_keys", value }) => a.cache.set_capacity(value as usize),
            (Us::Db(db), Control::Param { id: "connections" | "db_ms", .. }) => {
                db.station.set_service(Service::exponential_ms(ctx.param("db_ms") as u64));
                db.station.set_servers(ctx.param("connections") as u32, ctx, Timer::Done);
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Us::Db(db) => NodeView::new(NodeKind::Database, 2, "codes table")
                .badge(format!("{} codes", db.table.len()), Tone::Neutral)
                .badge(format!("counter at {}", db.table.counter.issued()), Tone::Neutral)
                .gauge("connections busy", db.station.busy() as i64, db.station.servers() as i64)
                .gauge("queue", db.station.queue_len() as i64, 1000),
            Us::Users(u) => NodeView::new(NodeKind::Client, 0, "creators & readers")
                .badge(format!("{} links", u.ledger.len()), Tone::Neutral)
                .badge_if(!u.abuse.is_parked(), format!("abuser: {:.0}/s", u.abuse.rate_per_s()), Tone::Warn)
                .badge_if(u.shared.latest().is_some(), u.shared.latest().unwrap_or_default(), Tone::Bad),
            Us::App(a) => NodeView::new(NodeKind::Service, 1, numbered("app", a.index))
                .badge_if(
                    a.strategy == Strategy::Counter,
                    format!("block: {} left", a.minter.range.left()),
                    Tone::Neutral,
                )
                .badge_if(a.minter.retries > 0, format!("{} retries", a.minter.retries), Tone::Neutral)
                .gauge("cache", a.cache.len() as i64, a.cache.capacity().max(1) as i64),
        }
    }
}

impl Db {
    /// A query done: reads and writes apply as its connection finishes it.
    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Us>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Done) else { return };
        ctx.gauge("db_queue", self.station.queue_len() as i64);
        let answer = match f.job.1 {
            Msg::Get { code, link, sent } => Msg::Found { code, url: self.table.get(code), link, sent },
            Msg::Write(write) => Msg::Stored { write, ok: self.table.write(write) },
            Msg::Lease(call) => Msg::Block { call, range: self.table.counter.lease(ctx.param("range_size") as u64) },
            other => return ctx.unhandled(&other),
        };
        ctx.send(f.job.0, answer);
    }
}

impl Users {
    /// A new URL, by an honest creator or the abuser, to the app server its creator is sticky to.
    fn create(&mut self, t: Timer, ctx: &mut Ctx<Us>) {
        let honest = ctx.param("creators") as u64;
        let (source, creator) = match t {
            Timer::Abuse => (&mut self.abuse, ABUSER),
            _ => (&mut self.creations, ctx.rng().below(honest) as u32),
        };
        source.on_timer(ctx, t);
        let app = FIRST_APP + (creator as u64 % ctx.param("apps") as u64) as NodeId;
        ctx.send(app, Msg::Create { url: self.ledger.made(), creator });
    }

    /// A code handed out: its link is what the creator shares (a repeated answer is dropped).
    fn created(&mut self, url: u64, code: u64, ctx: &mut Ctx<Us>) {
        let len = ctx.param("code_len") as u32;
        let fresh = self.ledger.hand(code, url, len).inspect_err(|why| self.shared.record(why.clone(), ctx.truth()));
        ctx.count("collisions", fresh.is_err() as i64);
        if fresh == Ok(false) {
            return;
        }
        ctx.count("created", 1);
        ctx.gauge("birthday_milli", (expected_repeats(self.ledger.len() as u64, space(len) as f64) * 1000.0) as i64);
    }
}

impl App {
    /// Sends the waiting creations' writes; under the counter, until its block is spent.
    fn serve(&mut self, ctx: &mut Ctx<Us>) {
        let scheme = [Scheme::HashTruncate, Scheme::Counter, Scheme::Random][self.strategy as usize];
        let (len, salt) = (ctx.param("code_len") as u32, self.salt);
        loop {
            match self.minter.next(scheme, len, salt, ctx.rng()) {
                Next::Write(w) => ctx.send(DB, Msg::Write(w)),
                // One lease out at a time; the waiting creations wait for its block.
                Next::NeedBlock if self.lease.is_empty() => {
                    let call = self.lease.start(ctx, (), LEASE_TIMEOUT_US, Timer::LeaseTimeout);
                    return ctx.send(DB, Msg::Lease(call));
                }
                Next::NeedBlock | Next::Idle => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::shortcode::expected_retries;
    use crate::parts::testing::{failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("url-shortener", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    fn holds(r: &dyn Run) -> bool {
        failed_at(r, "unique-codes").is_none() && failed_at(r, "redirects-correct").is_none()
    }

    #[test]
    fn try_hash_truncation_collides_as_the_birthday_bound_says() {
        // Step 1. n URLs into 62³ codes: n − m(1 − (1 − 1/m)ⁿ) ≈ 19 already taken (n²/2m). A
        // run's count is about Poisson (±4.4), so 20 runs' total (±20, 5%) within 12%.
        let (mut got, mut want) = (0, 0.0);
        for seed in 1..=20 {
            let r = run(&recipe("hash-truncate", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "unique-codes").expect("a collision");
            assert!(t < 30.0 && why.starts_with("code ") && why.contains("but it stands for URL #"), "{why}");
            // The newer URL took the code in the table, the older one may linger in a cache:
            // either link can open the other's page.
            let (_, why) = failed_at(r.as_ref(), "redirects-correct").expect("a wrong redirect");
            assert!(why.contains(", made for URL #") && why.contains("redirected to URL #"), "{why}");
            let n = counter(r.as_ref(), "created") as u64;
            got += counter(r.as_ref(), "collisions");
            want += expected_repeats(n, space(3) as f64);
            assert_eq!(r.metrics().gauge("birthday_milli"), (expected_repeats(n, space(3) as f64) * 1000.0) as i64);
        }
        assert!((got as f64 - want).abs() <= 0.12 * want, "{got} collisions in 20 runs, expected {want:.1}");
    }

    #[test]
    fn try_the_counter_never_collides_and_a_crash_mid_block_leaves_a_gap() {
        // Step 2: app 1 crashes at 15 s holding what is left of its block of 100 (it spends
        // ~25 a second): skipped, never handed out again.
        for seed in 1..=10 {
            let (r, at) = run_sampled(&SPEC, &recipe("counter-base62", seed), 30, &["skipped", "created"]);
            assert!(holds(r.as_ref()), "seed {seed}");
            let skipped = counter(r.as_ref(), "skipped");
            assert!(at[14][0] == 0 && at[16][0] == skipped && (1..100).contains(&skipped), "seed {seed}: {at:?}");
            assert_eq!(counter(r.as_ref(), "collisions") + counter(r.as_ref(), "retries"), 0, "seed {seed}");
        }
    }

    #[test]
    fn try_random_codes_retry_as_often_as_the_hash_collides() {
        // Step 3. Each insert with u codes taken retries u/(m − u) times on average: Σ ≈ 19.8
        // over the run's ~3,070 codes, about Poisson; 20 runs' total within 12%. At k = 2 (3,844
        // codes) the space is 80% full by the end: thousands of retries, still no collision.
        let (mut got, mut want) = (0, 0.0);
        for seed in 1..=20 {
            let r = run(&recipe("random-retry", seed), 30);
            assert!(holds(r.as_ref()), "seed {seed}");
            got += counter(r.as_ref(), "retries");
            want += expected_retries(counter(r.as_ref(), "created") as u64, space(3) as f64);
        }
        assert!((got as f64 - want).abs() <= 0.12 * want, "{got} retries in 20 runs, expected {want:.1}");
        let r = run(&recipe("random-retry", 1).with_param("code_len", 2), 30);
        assert!(holds(r.as_ref()) && counter(r.as_ref(), "retries") > 1_000, "{}", counter(r.as_ref(), "retries"));
    }

    #[test]
    fn try_without_the_abuse_limit_the_flood_puts_redirects_behind_it() {
        // Step 4. With the limit the abuser gets 20 + 5·10 creations through, and a miss's p99 is
        // an exponential 5 ms query's, 5·ln 100 ≈ 23 ms. Without it 2,000 a second join the rest
        // at a database serving 8/5 ms = 1,600 queries a second: its queue grows by some 1,000 a
        // second, and a miss waits behind it. (Under the counter the flood throttles itself a
        // little: its server's block leases wait in that queue too.)
        for seed in 1..=3 {
            let limited = run(&recipe("random-retry", seed), 20);
            let free = run(&recipe("random-retry", seed).with_param("limit_per_s", 0), 20);
            let p99 = |r: &dyn Run| r.metrics().histogram("redirect_us").expect("redirects").quantile(0.99);
            let throttled = counter(limited.as_ref(), "throttled");
            // 10 s of Poisson(2,000/s) less the 70 let through: 19,930 ± 141.
            assert!(throttled.abs_diff(19_930) <= 600, "seed {seed}: {throttled}");
            let (a, b) = (p99(limited.as_ref()), p99(free.as_ref()));
            assert!(a < 30_000 && b > 2_000_000, "seed {seed}: p99 {a} µs limited, {b} µs free");
            assert_eq!(counter(free.as_ref(), "throttled"), 0);
        }
    }

    #[test]
    fn hotter_links_are_hit_more_often() {
        // Zipf by age over the links handed out: the more skew, the more clicks fall on the
        // few newest links each cache holds.
        let hit = |skew| {
            let r = run(&recipe("counter-base62", 1).with_param("skew", skew), 30);
            let (h, m) = (counter(r.as_ref(), "hits"), counter(r.as_ref(), "misses"));
            h as f64 / (h + m) as f64
        };
        let (low, mid, high) = (hit(50), hit(100), hit(150));
        assert!(low + 0.1 < mid && mid + 0.1 < high, "{low:.3} {mid:.3} {high:.3}");
    }
}
