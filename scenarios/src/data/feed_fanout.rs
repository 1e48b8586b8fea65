//! Feed fan-out: users follow others with heavy tails and a celebrity posts. Fan-out on write
//! copies every post into each follower's inbox (a celebrity's post is a backlog of writes);
//! fan-out on read merges every followee's timeline per read (slow for users following many);
//! the hybrid pushes normal users' posts and pulls celebrities' at read.

use crate::parts::arrivals::{OpenLoop, Zipf};
use crate::parts::degraded::FaultWindow;
use crate::parts::follows::{Follows, Pareto};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::BTreeMap;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "feed-fanout",
        title: "Feed fan-out: on write, on read, or hybrid for celebrities",
        category: "Data & scale",
        seeds: &["S1#36", "S3#83", "S3#81", "S2#20"],
        summary: "10,000 users stand for 500M (1 : 50,000). Each follows a Pareto-tailed number of others, picked by \
                  Zipf popularity, so user 0 — the celebrity — is followed by about 1,000 (10%, the seed's 50M of \
                  500M). 40 posts and 1,000 feed reads a second; from 10 s the celebrity posts twice a second. Fan-out \
                  on write buries the workers under her followers' inboxes, fan-out on read makes heavy followers' \
                  reads merge hundreds of timelines; the hybrid pulls only celebrities' posts at read.",
        note: Note {
            what_can_go_wrong: "Fan-out on write makes a post cost one inbox write per follower: write amplification is \
                the mean follower count of who posts (~35 here), but a celebrity's post is 1,000 writes at once (50M at \
                full scale). Ten of them in five seconds put 10,000 writes before every later post: the backlog drains \
                at (worker capacity − normal load), ~600 writes/s, so everyone's feed goes stale for half a minute. \
                Fan-out on read writes nothing extra but a read merges every followee's timeline: the follow count is \
                Pareto-tailed (P(k > x) = (10/x)^1.3, capped at 2,000), so one reader in 160 follows 500+ and waits \
                50 ms+ for one page, on read servers twice as busy as they need be. The model: Poisson posts by \
                uniformly random users and the celebrity's storm; fan-out jobs of up to 100 inboxes at c workers \
                (each write a fixed cost), FIFO; reads by random users at read servers, each timeline a fixed cost; \
                links of 0.2–1 ms. Staleness is counted per batch of inboxes written (0 for a pulled post).",
            what_you_sacrifice: "The hybrid keeps two read paths and a threshold to tune: a read merges its inbox with \
                every celebrity followed (a few here, dozens at Twitter's scale), and the celebrities' timelines are \
                hot keys every read touches — they need their own cache and replicas (S3's throttled celebrity \
                partition). A user who crosses the threshold changes path, and their old posts sit in inboxes.",
            at_10x: "Ten times the users with the same shape: the celebrity's 10,000 writes a post at the same \
                workers take ten times as long to drain, and a reader of 10K accounts (S3#83) merges 10K timelines. \
                Only the hybrid's costs grow with normal follower counts, not with the head of the distribution.",
            resembles: "Twitter's home timeline (Redis inboxes written by a fan-out service, celebrities merged at \
                read: Raffi Krikorian, QCon 2012), Facebook's pull-based feed (Multifeed), Instagram's hybrid; \
                Xu, System Design Interview ch. 11.",
            try_this: &[
                "Play `fanout-on-write`: at 10 s the celebrity's storm puts 10,000 inbox writes in the queue; \
                 `backlog-bounded` names her post, and staleness p99 climbs to seconds for everyone's posts.",
                "Switch to `fanout-on-read`: no backlog and no staleness, but `read-latency` names a reader \
                 following hundreds of accounts whose feed merged hundreds of timelines past the 50 ms bound.",
                "Switch to `hybrid`: both checks hold; write amplification falls below the mean follower count, \
                 and each read merges its inbox with at most a handful of celebrities' timelines.",
                "Under `hybrid` raise `threshold` to 5,000: the celebrity is pushed again and her storm builds \
                 the backlog as under fan-out on write.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("users", "Users", "", 1000..=50_000, 10_000, "Users simulated; each stands for 500M/users real ones."),
        ParamSpec::setup("follows_min", "Fewest follows", "", 1..=100, 10, "The Pareto's minimum: every user follows at least this many."),
        ParamSpec::setup("follows_alpha", "Follow tail α", "×100", 105..=300, 130, "Pareto exponent ×100: P(follows > x) = (min/x)^α, capped at 2,000."),
        ParamSpec::setup("skew", "Popularity skew", "s×100", 0..=150, 45, "Zipf exponent ×100 of whom users follow: rank r picked ∝ 1/r^s (user 0 the most)."),
        ParamSpec::live("post_rps", "Posts", "/s", 0..=1000, 40, "Poisson posts, each by a user drawn uniformly."),
        ParamSpec::live("read_rps", "Feed reads", "/s", 0..=20_000, 1000, "Poisson feed reads, each by a user drawn uniformly."),
        ParamSpec::live("threshold", "Celebrity threshold", "followers", 1..=50_000, 500, "hybrid: posts by users with more followers are pulled at read, not pushed."),
        ParamSpec::live("workers", "Fan-out workers", "", 1..=64, 2, "Workers writing posts into followers' inboxes at once."),
        ParamSpec::live("write_us", "Inbox write", "µs", 10..=10_000, 1000, "A worker's time per inbox written (the workers write 2,000 a second)."),
        ParamSpec::live("read_servers", "Read servers", "", 1..=64, 8, "Feed reads served at once."),
        ParamSpec::live("timeline_us", "Timeline read", "µs", 10..=10_000, 100, "A read server's time per timeline (inbox or followee) merged into a feed."),
        ParamSpec::live("read_bound_ms", "Read bound", "ms", 1..=1000, 50, "read-latency: a feed must come back within this."),
        ParamSpec::live("backlog_max", "Backlog bound", "writes", 100..=1_000_000, 5000, "backlog-bounded: inbox writes waiting at most this many."),
        ParamSpec::setup("slow_pct", "Slow fan-out", "%", 100..=1000, 200, "Scheduled fault, 20–25 s: the fan-out workers' writes take this % of their time (100: none)."),
        ParamSpec::setup("storm_pps", "Celebrity storm", "posts/s", 0..=50, 2, "Scheduled fault, 10–15 s: the celebrity posts this many a second."),
    ],
    strategies: &[
        StrategySpec::naive("fanout-on-write", "Fan-out on write", "Every post is written into each follower's inbox; a read fetches one inbox."),
        StrategySpec::naive("fanout-on-read", "Fan-out on read", "A post is written once, to its author's timeline; a read merges every followee's timeline."),
        StrategySpec::fixed("hybrid", "Hybrid (celebrities pulled)", "Posts are pushed to inboxes unless their author has more than `threshold` followers; a read merges its inbox with the celebrities it follows."),
    ],
    faults: &[
        FaultSpec::global("celebrity-storm", "Celebrity post storm", "The most-followed user posts this many times a second (0 stops).").value("posts/s", 0..=50, 2),
        FaultSpec::global("slow-fanout", "Slow fan-out workers", "The fan-out workers' writes take this % of their time (100: normal).").value("%", 100..=1000, 200),
    ],
    checks: &[
        CheckSpec::new("read-latency", "Feed reads within the bound", "Every feed read comes back within `read_bound_ms`. Names the reader, their follows and the timelines merged."),
        CheckSpec::new("backlog-bounded", "Fan-out backlog bounded", "Inbox writes waiting for the fan-out workers stay within `backlog_max`. Names the largest post still being fanned out."),
    ],
    metrics: &[
        MetricSpec::new("amplification", "Write amplification (inbox writes per post)", "", Measure::GaugePer("amplification_milli", 1000.0)),
        MetricSpec::new("read_p99", "Feed read p99", "us", Measure::Quantile("read_us", 0.99)),
        MetricSpec::new("backlog", "Fan-out backlog", "writes", Measure::Gauge("backlog")),
        MetricSpec::new("stale_p99", "Feed staleness p99 (post to inbox)", "us", Measure::Quantile("staleness_us", 0.99)),
        MetricSpec::new("timelines", "Timelines merged per read", "", Measure::Mean("timelines")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Push, Pull, Hybrid });

const USERS: NodeId = 0;
const FANOUT: NodeId = 1;
const FEEDS: NodeId = 2;
/// The celebrity: Zipf's rank 1, the most followed.
const CELEBRITY: u32 = 0;
/// Inboxes one fan-out job writes (fan-out services batch their writes to the timeline cache).
const BATCH: usize = 100;
/// The follow limit (Twitter's is 5,000; a fifth of the users keeps the picks distinct cheaply).
const FOLLOW_CAP: f64 = 2000.0;
/// Real users (the seed's 500M) each simulated one stands for, times `users`.
const REAL_USERS: u64 = 500_000_000;

#[rustfmt::skip] // A variant a line.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Post { post: u64, author: u32, at: Time },
    Read { reader: u32, sent: Time },
    Feed { reader: u32, timelines: u32, sent: Time },
}

#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Timer { Post, Storm, Read, Fanned(Slot), Served(Slot) }

#[rustfmt::skip]
#[derive(Clone, Debug, Holds)]
pub enum Us { Users(Users), Fanout(Fanout), Feeds(Feeds) }

/// Posters, the celebrity's storm and readers as one crowd; the read check's breach.
#[derive(Clone, Debug)]
pub struct Users {
    graph: Follows,
    posts: OpenLoop,
    storm: OpenLoop,
    reads: OpenLoop,
    next_post: u64,
    slow: Breach,
}

/// One job: `n` of a post's author's followers' inboxes, the next in the author's list.
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Job { post: u64, at: Time, n: u32 }

/// The fan-out service: its workers and queue, and its book of what they owe.
#[derive(Clone, Debug)]
pub struct Fanout {
    graph: Follows,
    strategy: Strategy,
    station: Station<Job>,
    book: Book,
}

/// The writes waiting (the backlog), each post's still to write, posts and writes so far, and
/// the backlog check's breach.
#[derive(Clone, Debug, Default)]
pub struct Book {
    backlog: u64,
    pending: BTreeMap<u64, (u32, u64)>,
    posts: u64,
    writes: u64,
    behind: Breach,
}

/// The read servers: a read merges its timelines there.
#[derive(Clone, Debug)]
pub struct Feeds {
    graph: Follows,
    strategy: Strategy,
    station: Station<(u32, u32, Time)>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Us> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let graph = graph(["users", "follows_min", "follows_alpha", "skew"].map(|p| setup.param(p)), setup.seed());
    let [posts, reads] = ["post_rps", "read_rps"].map(|p| OpenLoop::poisson(setup.param(p) as f64));
    let (storm, slow) = (OpenLoop::poisson(0.0), Breach::default());
    let users = Users { graph: graph.clone(), posts, storm, reads, next_post: 0, slow };
    assert_eq!(sim.add_node(Us::Users(users)), USERS);
    let strategy = Strategy::from_id(setup.strategy());
    // A worker's job costs its writes (`offer_sized`); the drawn part is the 1 µs floor.
    let station = Station::new(setup.param("workers") as u32, Service::Constant(1));
    let fanout = Fanout { graph: graph.clone(), strategy, station, book: Book::default() };
    assert_eq!(sim.add_node(Us::Fanout(fanout)), FANOUT);
    let station = Station::new(setup.param("read_servers") as u32, Service::Constant(1));
    assert_eq!(sim.add_node(Us::Feeds(Feeds { graph, strategy, station })), FEEDS);
    // The plan: the celebrity's storm 10–15 s; the fan-out workers slowed (twice as slow) 20–25 s.
    FaultWindow::secs(10, 5).custom(&mut sim, "celebrity-storm", None, setup.param("storm_pps"), 0);
    FaultWindow::secs(20, 5).custom(&mut sim, "slow-fanout", None, setup.param("slow_pct"), 100);
    sim.check("read-latency", |w| w.node::<Users>(USERS).slow.now(w.now));
    sim.check("backlog-bounded", |w| w.node::<Fanout>(FANOUT).book.behind.now(w.now));
    Box::new(sim)
}

/// The follow graph a setup describes (its own stream of the seed, so the graph is the same
/// whatever the strategy).
pub fn graph([users, min, alpha_x100, skew_x100]: [i64; 4], seed: u64) -> Follows {
    let (counts, n) = (Pareto { min: min as f64, alpha: alpha_x100 as f64 / 100.0, cap: FOLLOW_CAP }, users as usize);
    Follows::build(n, counts, &Zipf::new(n, skew_x100 as f64 / 100.0), &mut Rng::new(seed ^ 0xf0110))
}

impl Node for Us {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Us::Users(u) = self {
            u.posts.start(ctx, Timer::Post);
            u.reads.start(ctx, Timer::Read);
        }
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Us::Fanout(f), Msg::Post { post, author, at }) => f.post(post, author, at, ctx),
            (Us::Feeds(f), Msg::Read { reader, sent }) => {
                // Its inbox, every followee's timeline, or its inbox and its celebrities'.
                let r = reader as usize;
                let timelines = match f.strategy {
                    Strategy::Push => 1,
                    Strategy::Pull => f.graph.followees(r).len() as u32,
                    Strategy::Hybrid => 1 + f.graph.celebrities_followed(r, ctx.param("threshold") as u64) as u32,
                };
                let cost = timelines as Micros * ctx.param("timeline_us") as Micros;
                _ = f.station.offer_sized((reader, timelines, sent), cost, ctx, Timer::Served);
            }
            (Us::Users(u), Msg::Feed { reader, timelines, sent }) => {
                let took = ctx.now().since(sent);
                ctx.observe("read_us", took);
                ctx.observe("timelines", timelines as u64);
                if took > ctx.param_ms("read_bound_ms") {
                    let follows = u.graph.followees(reader as usize).len();
                    let ms = took / MICROS_PER_MS;
                    let why =
                        format!("user {reader} (follows {follows}) waited {ms} ms for {timelines} timelines merged");
                    u.slow.record(why, ctx.truth());
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Us::Users(u), t @ (Timer::Post | Timer::Storm)) => {
                let (source, author) = match t {
                    Timer::Storm => (&mut u.storm, CELEBRITY),
                    _ => (&mut u.posts, ctx.rng().below(u.graph.users() as u64) as u32),
                };
                source.on_timer(ctx, t);
                u.next_post += 1;
                ctx.send(FANOUT, Msg::Post { post: u.next_post, author, at: ctx.now() });
            }
            (Us::Users(u), Timer::Read) => {
                u.reads.on_timer(ctx, Timer::Read);
                let reader = ctx.rng().below(u.graph.users() as u64) as u32;
                ctx.send(FEEDS, Msg::Read { reader, sent: ctx.now() });
            }
            (Us::Fanout(f), Timer::Fanned(slot)) => f.fanned(slot, ctx),
            (Us::Feeds(f), Timer::Served(slot)) => {
                let Some(done) = f.station.done(slot, ctx, Timer::Served) else { return };
                let (reader, timelines, sent) = done.job;
                ctx.send(USERS, Msg::Feed { reader, timelines, sent });
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    /// A crash loses the workers' queue (those inboxes are never written) and the reads in
    /// hand; the posts themselves are on their authors' timelines, durable.
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Us::Fanout(f) => {
                let lost: u64 = f.station.crash(ctx).iter().map(|j| j.n as u64).sum();
                ctx.count("writes_lost", lost as i64);
                (f.book.backlog, f.book.pending) = (0, BTreeMap::new());
                ctx.gauge("backlog", 0);
            }
            Us::Feeds(f) => _ = f.station.crash(ctx),
            Us::Users(_) => {}
        }
    }

    /// Rates, worker counts and the threshold act at once; costs and bounds are read when used.
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Us::Users(u), Control::Custom { id: "celebrity-storm", value }) => {
                u.storm.set_rate_per_s(value as f64, ctx, Timer::Storm);
                ctx.note(format!("the celebrity posts {value} times a second"));
            }
            (Us::Users(u), Control::Param { .. }) => {
                u.posts.set_rate_per_s(ctx.param("post_rps") as f64, ctx, Timer::Post);
                u.reads.set_rate_per_s(ctx.param("read_rps") as f64, ctx, Timer::Read);
            }
            (Us::Fanout(f), Control::Custom { id: "slow-fanout", value }) => {
                f.station.set_slowdown_pct(value as u32);
                ctx.note(format!("fan-out writes take {value}% of their time"));
            }
            (Us::Fanout(f), Control::Strategy(id)) => f.strategy = Strategy::from_id(id),
            (Us::Fanout(f), Control::Param { id: "workers", value }) => {
                f.station.set_servers(value as u32, ctx, Timer::Fanned)
            }
            (Us::Feeds(f), Control::Strategy(id)) => f.strategy = Strategy::from_id(id),
            (Us::Feeds(f), Control::Param { id: "read_servers", value }) => {
                f.station.set_servers(value as u32, ctx, Timer::Served)
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Us::Users(u) => NodeView::new(NodeKind::Client, 0, "users")
                .badge(scale(&u.graph), Tone::Neutral)
                .badge_if(!u.storm.is_parked(), format!("celebrity storm: {:.0}/s", u.storm.rate_per_s()), Tone::Warn)
                .badge_if(u.slow.latest().is_some(), u.slow.latest().unwrap_or_default(), Tone::Bad),
            Us::Fanout(f) => NodeView::new(NodeKind::Worker, 1, "fan-out workers")
                .badge(format!("{} posts fanning out", f.book.pending.len()), Tone::Neutral)
                .badge_if(f.book.behind.latest().is_some(), f.book.behind.latest().unwrap_or_default(), Tone::Bad)
                .gauge("workers busy", f.station.busy() as i64, f.station.servers() as i64)
                .gauge("backlog (writes)", f.book.backlog as i64, 20_000),
            Us::Feeds(f) => NodeView::new(NodeKind::Store, 2, "feed read servers")
                .gauge("servers busy", f.station.busy() as i64, f.station.servers() as i64)
                .gauge("queue", f.station.queue_len() as i64, 1000),
        }
    }
}

/// The scale in words: the celebrity's followers simulated and what they stand for.
pub fn scale(g: &Follows) -> String {
    let per = REAL_USERS / g.users() as u64;
    let f = g.followers(CELEBRITY as usize);
    format!("1 user : {per} real; celebrity {f} followers ≈ {}M", f * per / 1_000_000)
}

impl Fanout {
    /// A post arrives: pushed to each follower's inbox in jobs of `BATCH`, or left on its
    /// author's timeline to be pulled at read (appearing at once: no staleness).
    fn post(&mut self, post: u64, author: u32, at: Time, ctx: &mut Ctx<Us>) {
        let followers = self.graph.followers(author as usize);
        let pushed = match self.strategy {
            Strategy::Push => true,
            Strategy::Pull => false,
            Strategy::Hybrid => followers <= ctx.param("threshold") as u64,
        };
        self.book.posts += 1;
        if pushed && followers > 0 {
            self.book.writes += followers;
            self.book.backlog += followers;
            self.book.pending.insert(post, (author, followers));
            let cost = ctx.param("write_us") as Micros;
            for from in (0..followers as usize).step_by(BATCH) {
                let n = BATCH.min(followers as usize - from) as u32;
                let job = Job { post, at, n };
                _ = self.station.offer_sized(job, n as Micros * cost, ctx, Timer::Fanned);
            }
        } else {
            ctx.observe("staleness_us", 0);
        }
        ctx.count("posts", 1);
        ctx.count("inbox_writes", if pushed { followers as i64 } else { 0 });
        ctx.gauge("amplification_milli", (self.book.writes * 1000 / self.book.posts) as i64);
        self.judge(ctx);
    }

    /// A job's inboxes written: its post now shows in those feeds.
    fn fanned(&mut self, slot: Slot, ctx: &mut Ctx<Us>) {
        let Some(done) = self.station.done(slot, ctx, Timer::Fanned) else { return };
        let job = done.job;
        ctx.observe("staleness_us", ctx.now().since(job.at));
        self.book.backlog -= job.n as u64;
        if let Some((_, left)) = self.book.pending.get_mut(&job.post) {
            *left -= job.n as u64;
            if *left == 0 {
                self.book.pending.remove(&job.post);
            }
        }
        self.judge(ctx);
    }

    /// The backlog against its bound, naming the post with the most inboxes still to write.
    fn judge(&mut self, ctx: &mut Ctx<Us>) {
        ctx.gauge("backlog", self.book.backlog as i64);
        if self.book.backlog <= ctx.param("backlog_max") as u64 {
            return;
        }
        let Some((post, (author, left))) = self.book.pending.iter().max_by_key(|(_, (_, left))| *left) else { return };
        let followers = self.graph.followers(*author as usize);
        let why = format!(
            "{} inbox writes waiting; post #{post} by user {author} ({followers} followers) has {left} to go",
            self.book.backlog
        );
        self.book.behind.record(why, ctx.truth());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sampled, samples};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("feed-fanout", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn default_graph(seed: u64) -> Follows {
        graph([10_000, 10, 130, 45], seed)
    }

    #[test]
    fn the_celebrity_is_the_seeds_share_of_users() {
        // S3: 50M followers of 500M users, 10%. Zipf s = 0.45 over 10,000 users with ~35
        // follows each gives user 0 about that share, and the scale badge says what it stands for.
        for seed in 1..=5 {
            let g = default_graph(seed);
            let share = g.followers(0) as f64 / g.users() as f64;
            assert!((0.08..0.12).contains(&share), "seed {seed}: {share}");
            assert!(scale(&g).starts_with("1 user : 50000 real; celebrity "), "{}", scale(&g));
        }
    }

    #[test]
    fn try_fanout_on_write_buries_the_workers_under_the_celebritys_storm() {
        // Step 1: ten posts of ~1,000 inboxes in 10–15 s, at workers with 2,000 writes/s of
        // which normal posts take ~1,400: the bound (5,000) falls soon after 10 s.
        for seed in 1..=5 {
            let r = run(&recipe("fanout-on-write", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "backlog-bounded").expect("a backlog");
            assert!((10.0..16.0).contains(&t) && why.contains("by user 0 ("), "seed {seed}: {t} {why}");
            assert!(failed_at(r.as_ref(), "read-latency").is_none(), "seed {seed}");
            let stale = samples(r.as_ref(), "stale_p99", 15.0, 25.0).into_iter().fold(0.0, f64::max);
            assert!(stale > 2_000_000.0, "seed {seed}: staleness p99 {stale} µs");
        }
    }

    #[test]
    fn try_fanout_on_read_keeps_heavy_followers_waiting() {
        // Step 2: one reader in 160 follows 500+ accounts (P = (10/500)^1.3), and 500
        // timelines at 100 µs are 50 ms before any queueing: 6 such reads a second.
        for seed in 1..=5 {
            let r = run(&recipe("fanout-on-read", seed), 10);
            let (t, why) = failed_at(r.as_ref(), "read-latency").expect("a slow read");
            let follows: usize =
                why.split("(follows ").nth(1).and_then(|s| s.split(')').next()).unwrap().parse().unwrap();
            assert!(t < 5.0 && follows >= 250, "seed {seed}: {t} {why}");
            assert!(failed_at(r.as_ref(), "backlog-bounded").is_none());
            assert_eq!(r.metrics().gauge("backlog"), 0);
        }
    }

    #[test]
    fn try_the_hybrid_holds_and_writes_less_than_the_mean_follower_count() {
        // Step 3: celebrities' posts are not pushed, so a post costs the mean followers of
        // non-celebrities; a read merges its inbox and at most the few users above 500 followers.
        for seed in 1..=8 {
            let r = run(&recipe("hybrid", seed), 30);
            assert!(failed_at(r.as_ref(), "read-latency").is_none(), "seed {seed}");
            assert!(failed_at(r.as_ref(), "backlog-bounded").is_none(), "seed {seed}");
            let g = default_graph(seed);
            let celebrities = (0..g.users()).filter(|&u| g.followers(u) > 500).count();
            let amplification = r.metrics().gauge("amplification_milli") as f64 / 1000.0;
            assert!(amplification < g.mean_followers(), "seed {seed}: {amplification}");
            let most = r.metrics().histogram("timelines").expect("reads").max();
            assert!(most <= 1 + celebrities as u64 && celebrities <= 20, "seed {seed}: {most} of {celebrities}");
        }
    }

    #[test]
    fn try_a_threshold_above_the_celebrity_pushes_her_storm_again() {
        // Step 4: at 5,000 followers no one is a celebrity; the hybrid is fan-out on write.
        let r = run(&recipe("hybrid", 1).with_param("threshold", 5000), 30);
        let (t, why) = failed_at(r.as_ref(), "backlog-bounded").expect("a backlog");
        assert!((10.0..16.0).contains(&t) && why.contains("by user 0 ("), "{t} {why}");
    }

    #[test]
    fn write_amplification_is_the_mean_follower_count() {
        // Posts by uniform users, no storm: each costs its author's followers, whose mean over
        // users is the graph's mean in-degree. Followers' spread is heavy (σ ≈ 50 from the
        // head), so a run's ~1,200 posts give ±1.4; 10 runs pooled ±0.5 of ~35, within 5%.
        let (mut writes, mut posts, mut want) = (0, 0, 0.0);
        for seed in 1..=10 {
            let r = run(&recipe("fanout-on-write", seed).with_param("storm_pps", 0), 30);
            let n = r.metrics().counter("posts");
            (writes, posts) = (writes + r.metrics().counter("inbox_writes"), posts + n);
            want += n as f64 * default_graph(seed).mean_followers();
        }
        let (got, want) = (writes as f64 / posts as f64, want / posts as f64);
        assert!((got - want).abs() < 0.05 * want, "{got} writes a post, mean followers {want}");
    }

    #[test]
    fn the_backlog_drains_at_the_workers_rate() {
        // Drain time = backlog / (workers / write time): with no other posts and 2 workers at
        // 2.5 ms a write (800/s) the storm's backlog at 15 s empties B/800 s later. Jobs of 100
        // writes (125 ms apart per worker pair) and 250 ms samples: within 0.4 s.
        for seed in 1..=3 {
            let rec = recipe("fanout-on-write", seed)
                .with_param("post_rps", 0)
                .with_param("write_us", 2500)
                .with_param("slow_pct", 100);
            let r = run(&rec, 40);
            let at15 = samples(r.as_ref(), "backlog", 15.0, 15.1)[0];
            let series = samples(r.as_ref(), "backlog", 15.0, 40.0);
            let empty = 15.0 + series.iter().position(|&b| b == 0.0).expect("drained") as f64 * 0.25;
            let want = 15.0 + at15 / 800.0;
            assert!(
                at15 > 500.0 && (empty - want).abs() <= 0.4,
                "seed {seed}: {at15} left, empty at {empty}, want {want}"
            );
        }
    }
}
