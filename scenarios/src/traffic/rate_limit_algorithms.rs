//! Rate-limit algorithms: users (some abusive, with steady, bursty or boundary-aligned traffic)
//! → one limiter with a limit per user, kept by a fixed window, a sliding log, a sliding-window
//! counter, a token bucket or GCRA. Each is judged, over every window of the limit's length,
//! by what it promises — and the two cheap window counters promise less than they seem to.

use crate::parts::{
    arrivals::{OpenLoop, Spacing},
    bucket::{Gcra, TokenBucket},
    degraded::FaultWindow,
    strategies::strategies,
    tally::WindowTally,
    window::{SlidingLog, Window},
};
use faultline_core::*;

// A table, an entry a line: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "rate-limit-algorithms",
        title: "Rate-limit algorithms",
        category: "Traffic control",
        seeds: &["S0#7", "S3#74", "S3#91"],
        summary: "\"100 requests per second per user\", five ways. Three abusive users send three times that — \
                  steadily, in bursts, and in bursts timed on the window's boundaries. A fixed window lets twice the \
                  limit through across a boundary, a sliding-window counter up to nearly twice after a silence; a \
                  sliding log is exact but keeps every request; a token bucket and GCRA promise r·T + b in 8–16 \
                  bytes.",
        note: Note {
            what_can_go_wrong: "A limit of L per T is read as \"at most L in any T\", but only the sliding log keeps \
                that. A fixed window counts per aligned window, so L just before a boundary and L just after make 2L \
                within milliseconds: the boundary-aligned user gets 200 in 10 ms. The sliding-window counter \
                (Cloudflare's) weights the previous window's count as if its requests had been spread evenly; after \
                a silence, a burst that starts a fraction g into a window gets L at once, and the next window still \
                grants L·f by fraction f while those L are inside the sliding window: up to L(1 + g), nearly 2L — \
                the bursty user shows it. The model: one limiter node, a limit per user, requests 1–3 ms from each \
                user; every admission is audited against the user's admissions in the last T of true time; a \
                refusal is false when fewer than L were admitted in that T (an exact limiter would have taken it).",
            what_you_sacrifice: "Exactness costs memory: the sliding log keeps a time stamp per admitted request, \
                16 bytes × L per user (1.6 KB at L = 100; a Redis sorted set spends several times that), where the \
                others keep 8–24 bytes. A token bucket or GCRA admits L + b over a window, by design, and smooths: \
                a burst after a silence gets b at once and then r per second, so it refuses requests an exact \
                limiter of L per T would admit (the false rejections), the more the smaller b.",
            at_10x: "Ten times the users: the sliding log's memory grows with users × limit (a million users at \
                L = 1000 is 16 GB), the counters and buckets with users only; an hourly limit of 10,000 makes the \
                log hopeless and a fixed window's boundary burst ten thousand requests. Across many limiter \
                instances the state must be shared (see distributed-rate-limiter), and the one-time-stamp GCRA is \
                the cheapest to keep in a store with one atomic compare-and-set.",
            resembles: "Redis INCR + EXPIRE (fixed window) or ZADD/ZREMRANGEBYSCORE (sliding log), Cloudflare's \
                sliding-window counter, NGINX limit_req (a leaky bucket with burst), Envoy's and AWS API Gateway's \
                token buckets, Stripe's and redis-cell's GCRA, the `governor` crate.",
            try_this: &[
                "Play `fixed-window`: user 2 sends 150 requests 10 ms before each boundary and 150 10 ms after; 100 \
                 of each are admitted, 200 within 20 ms, and `within-promise` fails at the first boundary.",
                "Switch to `sliding-window-counter` and replay: user 2 is held to the limit, but bursty user 1, \
                 starting a burst late in a window after a silence, gets over 130 in a second and the check fails.",
                "Switch to `sliding-log`, `token-bucket` and `gcra`: the check holds; the log keeps up to 1.6 KB for \
                 a user, the bucket 16 bytes and GCRA 8, and the bucket and GCRA make exactly the same decisions.",
                "With `token-bucket`, set the burst to 1: GCRA-like pacing at one request per 10 ms; no window holds \
                 more than 101, and the false rejections rise above 15% of requests.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("users", "Users", "", 1..=200, 8, "Users of the limiter; the first ones are abusive."),
        ParamSpec::setup("abusive", "Abusive users", "", 0..=200, 3, "How many of the users send far over the limit."),
        ParamSpec::live("normal_rps", "Normal user rate", "req/s", 1..=1000, 20, "A normal user's Poisson rate."),
        ParamSpec::live("abusive_rps", "Abusive user rate", "req/s", 1..=5000, 300, "An abusive user's mean rate."),
        ParamSpec::live("shape", "Abusive traffic shape", "", 0..=3, 0, "0 mixed (users take 1, 2, 3 in turn), \
            1 steady (Poisson), 2 bursty (on for a window, off for three), 3 boundary-aligned (a window's worth \
            10 ms before every other boundary, and as much 10 ms after it)."),
        ParamSpec::setup("limit", "Limit", "req", 1..=10_000, 100, "Requests one user may make per window."),
        ParamSpec::setup("window_ms", "Window", "ms", 100..=60_000, 1000, "The limit's window, T.").step(100),
        ParamSpec::setup("burst", "Burst", "req", 1..=10_000, 20, "Token bucket depth b (GCRA: τ = (b − 1)·T/L)."),
    ],
    strategies: &[
        StrategySpec::naive("fixed-window", "Fixed window", "Counts per aligned window, reset at each boundary."),
        StrategySpec::fixed("sliding-log", "Sliding log", "Keeps every admission's time and counts the last T."),
        StrategySpec::naive("sliding-window-counter", "Sliding-window counter",
            "Adds the previous window's count, weighted by how much of it the sliding window still covers."),
        StrategySpec::fixed("token-bucket", "Token bucket", "Up to b tokens, refilled at L per T; one per request."),
        StrategySpec::fixed("gcra", "Leaky bucket / GCRA",
            "Keeps one theoretical arrival time, pushed T/L later by each request it admits."),
    ],
    faults: &[FaultSpec::global("flood", "Flood", "Abusive users send this many times their rate (1 ends it).")
        .value("×", 1..=100, 4)],
    checks: &[CheckSpec::new("within-promise", "Each user within the algorithm's promise", "In any window of the \
        limit's length (true time, since the strategy took over), no user has more admitted than the algorithm \
        promises: the limit for the three window counters, r·T + b = limit + burst for the token bucket and GCRA.")],
    metrics: &[
        MetricSpec::new("max_window", "Most admitted in a window (% of the limit)", "%",
            Measure::Quantile("window_pct", 1.0)),
        MetricSpec::new("false_rejections", "False rejections (% of what an exact limiter admits)", "%",
            Measure::Percent { num: "false_rejections", rest: "within_limit" }),
        MetricSpec::new("memory_mean", "Memory per user (mean)", "bytes", Measure::Gauge("bytes_per_user")),
        MetricSpec::new("memory_max", "Memory: largest user", "bytes", Measure::Gauge("bytes_max")),
        MetricSpec::new("admitted", "Admitted", "req/s", Measure::Rate("admitted")),
        MetricSpec::new("throttled_users", "Users throttled now", "users", Measure::Gauge("throttled_users")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Fixed, Log, Counter, Bucket, Gcra });

const LIMITER: NodeId = 0;
const FIRST_USER: NodeId = 1;
/// Boundary-aligned bursts come this long (at most a quarter window) before and after a boundary.
const ALIGN_US: Micros = 10 * MICROS_PER_MS;
/// Bytes a sliding log keeps per admission in the window: its time and a count.
const LOG_ENTRY_BYTES: u64 = 16;
/// The limiter shows its state for this many users (gauge labels are static).
const SHOWN: [&str; 8] = ["user 0", "user 1", "user 2", "user 3", "user 4", "user 5", "user 6", "user 7"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Normal,
    Steady,
    Bursty,
    Aligned,
}

impl Shape {
    /// User `index`'s shape under the `shape` parameter (0: the abusive ones take 1, 2, 3 in turn).
    fn of(index: u32, abusive: i64, shape: i64) -> Shape {
        let all = [Shape::Steady, Shape::Bursty, Shape::Aligned];
        match (index as i64) < abusive {
            false => Shape::Normal,
            true if shape == 0 => all[index as usize % 3],
            true => all[(shape as usize - 1).min(2)],
        }
    }

    fn name(self) -> &'static str {
        ["normal", "steady", "bursty", "boundary-aligned"][self as usize]
    }
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request,
    #[label = "200"]
    Admitted,
    #[label = "429"]
    Throttled,
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    /// A boundary-aligned burst; the number tells stale ones (after a change of shape) apart.
    Burst(u64),
}

#[derive(Clone, Debug, Holds)]
pub enum Rl {
    Limiter(Box<Limiter>),
    User(User),
}

#[derive(Clone, Debug)]
pub struct User {
    index: u32,
    shape: Shape,
    src: OpenLoop,
    len: Micros,
    limit: u64,
    flood: i64,
    bursts: u64,
    /// What it was admitted in the last window (its own clock), and whether its last answer was 429.
    got: SlidingLog,
    throttled: bool,
    /// Its clock at its last answer: a view has no clock of its own.
    seen: Time,
}

/// One user's state in the limiter, as the strategy keeps it.
#[derive(Clone, Debug)]
enum Keep {
    Window(Window),
    Bucket(TokenBucket),
    Gcra(Gcra),
}

#[derive(Clone, Debug)]
pub struct Limiter {
    strategy: Strategy,
    limit: u64,
    len: Micros,
    burst: u64,
    keep: Vec<Keep>,
    /// God's-eye audit: each user's admissions by true time since the strategy took over.
    audit: Vec<SlidingLog>,
    /// Each user's asked and admitted by aligned window (true time), for the false rejections.
    tallies: Vec<WindowTally>,
    /// The last admission: (user, admitted in the T up to it, when), for the check.
    last: Option<(u32, u64, Time)>,
    throttled: Vec<bool>,
    bytes: Vec<u64>,
    seen: Time,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Rl> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let (users, limit) = (setup.param("users") as u32, setup.param("limit") as u64);
    let len = setup.param("window_ms") as Micros * MICROS_PER_MS;
    let strategy = Strategy::from_id(setup.strategy());
    let limiter = Limiter::new(strategy, limit, len, setup.param("burst") as u64, users as usize);
    assert_eq!(sim.add_node(Rl::Limiter(Box::new(limiter))), LIMITER);
    for index in 0..users {
        let (src, got) = (OpenLoop::poisson(0.0), SlidingLog::new(len));
        let user = User {
            index,
            shape: Shape::Normal,
            src,
            len,
            limit,
            flood: 1,
            bursts: 0,
            got,
            throttled: false,
            seen: Time::ZERO,
        };
        sim.add_node(Rl::User(user));
    }
    // The fault plan: a flood from the abusive users, four times their rate for 6 s.
    FaultWindow::secs(12, 6).custom(&mut sim, "flood", None, 4, 1);
    sim.check("within-promise", |w| {
        let Some((user, count, at)) = w.node::<Box<Limiter>>(LIMITER).last.filter(|_| w.touched == Some(LIMITER))
        else {
            return Ok(());
        };
        let l = w.node::<Box<Limiter>>(LIMITER);
        if count <= l.promise() {
            return Ok(());
        }
        let shape = Shape::of(user, w.param("abusive"), w.param("shape")).name();
        Err(format!(
            "user {user} ({shape}) got {count} requests admitted in the {} ms to {at}; {} promises at most {}",
            l.len / MICROS_PER_MS,
            SPEC.strategies[l.strategy as usize].label,
            l.promise()
        ))
    });
    Box::new(sim)
}

impl Node for Rl {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Rl::User(u) => {
                u.configure(ctx);
                u.src.start(ctx, Timer::Send);
            }
            Rl::Limiter(l) => {
                l.bytes = (0..l.keep.len()).map(|u| l.bytes_of(u, ctx.now())).collect();
                l.publish(ctx);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Rl::Limiter(l), Msg::Request) => l.request(from, ctx),
            (Rl::User(u), Msg::Admitted) => {
                u.got.hit(ctx.now(), 1);
                (u.throttled, u.seen) = (false, ctx.now());
            }
            (Rl::User(u), Msg::Throttled) => (u.throttled, u.seen) = (true, ctx.now()),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Rl::User(u), Timer::Send) => {
                u.src.on_timer(ctx, Timer::Send);
                ctx.send(LIMITER, Msg::Request);
            }
            // A burst timer set before the shape last changed is stale: it sends nothing.
            (Rl::User(u), Timer::Burst(n)) if n == u.bursts => u.burst(ctx),
            (Rl::User(_), Timer::Burst(_)) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        // A limiter keeps its state in memory: a restart starts every user afresh (the audit,
        // god's-eye, remembers what was admitted before).
        if let Rl::Limiter(l) = self {
            l.keep = (0..l.keep.len()).map(|_| l.fresh()).collect();
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Rl::Limiter(l), Control::Strategy(id)) => l.switch(Strategy::from_id(id), ctx),
            (Rl::User(u), Control::Param { id: "normal_rps" | "abusive_rps" | "shape", .. }) => u.configure(ctx),
            (Rl::User(u), Control::Custom { id: "flood", value }) => {
                u.flood = value.max(1);
                u.configure(ctx);
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Rl::Limiter(l) => l.view(),
            Rl::User(u) => {
                let abusive = u.shape != Shape::Normal;
                let shape = if abusive { format!("abusive · {}", u.shape.name()) } else { "normal".to_string() };
                NodeView::new(NodeKind::Client, 0, numbered("user", u.index as u64))
                    .gauge("admitted in the last window", u.got.count(u.seen) as i64, u.limit as i64)
                    .badge(shape, if abusive { Tone::Warn } else { Tone::Neutral })
                    .badge_if(u.throttled, "throttled (429)", Tone::Bad)
            }
        }
    }
}

impl User {
    /// Sets the source for the shape and rates in force: Poisson, on/off (on for a window, off
    /// for three, the same mean rate), or parked while aligned bursts are timed by hand.
    fn configure(&mut self, ctx: &mut Ctx<Rl>) {
        self.shape = Shape::of(self.index, ctx.param("abusive"), ctx.param("shape"));
        self.bursts += 1;
        let abusive = self.shape != Shape::Normal;
        let rate = ctx.param(if abusive { "abusive_rps" } else { "normal_rps" }) as f64;
        let spacing = match self.shape {
            Shape::Bursty => Spacing::OnOff { on_us: self.len, off_us: 3 * self.len },
            _ => Spacing::Poisson,
        };
        let load = if abusive { 100 * self.flood as u32 } else { 100 };
        self.src.set_spacing(spacing, ctx, Timer::Send);
        self.src.set_load_pct(load, ctx, Timer::Send);
        self.src.set_rate_per_s(if self.shape == Shape::Aligned { 0.0 } else { rate }, ctx, Timer::Send);
        if self.shape == Shape::Aligned {
            self.next_burst(ctx);
        }
    }

    /// The next instant `ALIGN_US` before or after every other window boundary (its own clock).
    fn next_burst(&mut self, ctx: &mut Ctx<Rl>) {
        let (now, off, period) = (ctx.now().micros(), ALIGN_US.min(self.len / 4), 2 * self.len);
        let phase = now % period;
        let at = match phase {
            _ if phase < off => off,
            _ if phase < period - off => period - off,
            _ => period + off,
        };
        ctx.set_timer(at - phase, Timer::Burst(self.bursts));
    }

    /// A window's worth of its mean rate (times the flood), sent at once: two bursts every
    /// two windows keep the mean rate.
    fn burst(&mut self, ctx: &mut Ctx<Rl>) {
        let per_window = ctx.param("abusive_rps") as u64 * self.flood as u64 * self.len / MICROS_PER_S;
        for _ in 0..per_window.max(1) {
            ctx.send(LIMITER, Msg::Request);
        }
        self.next_burst(ctx);
    }
}

impl Limiter {
    fn new(strategy: Strategy, limit: u64, len: Micros, burst: u64, users: usize) -> Limiter {
        let mut l = Limiter {
            strategy,
            limit,
            len,
            burst,
            keep: Vec::new(),
            audit: Vec::new(),
            last: None,
            tallies: vec![WindowTally::new(); users],
            throttled: vec![false; users],
            bytes: vec![0; users],
            seen: Time::ZERO,
        };
        l.keep = (0..users).map(|_| l.fresh()).collect();
        l.audit = vec![SlidingLog::new(len); users];
        l
    }

    /// A user's state as the strategy starts it: empty windows, a full bucket.
    fn fresh(&self) -> Keep {
        let (limit, len, burst) = (self.limit, self.len, self.burst);
        match self.strategy {
            Strategy::Fixed => Keep::Window(Window::fixed(len)),
            Strategy::Log => Keep::Window(Window::log(len)),
            Strategy::Counter => Keep::Window(Window::sliding(len)),
            Strategy::Bucket => Keep::Bucket(TokenBucket::new(limit, len, burst)),
            Strategy::Gcra => Keep::Gcra(Gcra::new(limit, len, burst)),
        }
    }

    /// What the strategy promises for any window of length T: the limit, or r·T + b.
    fn promise(&self) -> u64 {
        match self.strategy {
            Strategy::Fixed | Strategy::Log | Strategy::Counter => self.limit,
            Strategy::Bucket | Strategy::Gcra => self.limit + self.burst,
        }
    }

    /// A new strategy starts every user afresh, and the audit with it: each algorithm is
    /// judged on what it admitted itself.
    fn switch(&mut self, strategy: Strategy, ctx: &mut Ctx<Rl>) {
        self.strategy = strategy;
        self.keep = (0..self.keep.len()).map(|_| self.fresh()).collect();
        self.audit = vec![SlidingLog::new(self.len); self.keep.len()];
        self.last = None;
        self.bytes = (0..self.keep.len()).map(|u| self.bytes_of(u, ctx.now())).collect();
        self.publish(ctx);
    }

    fn request(&mut self, from: NodeId, ctx: &mut Ctx<Rl>) {
        let (user, now, truth) = ((from - FIRST_USER) as usize, ctx.now(), ctx.truth());
        self.seen = now;
        let ok = match &mut self.keep[user] {
            Keep::Window(w) => w.allow(now, self.limit),
            Keep::Bucket(b) => b.allow(now),
            Keep::Gcra(g) => g.allow(now),
        };
        let audit = &mut self.audit[user];
        if ok {
            audit.hit(truth, 1);
            let count = audit.count(truth);
            self.last = Some((user as u32, count, truth));
            ctx.count("admitted", 1);
            ctx.observe("window_pct", count * 100 / self.limit);
            let shape = Shape::of(user as u32, ctx.param("abusive"), ctx.param("shape"));
            ctx.observe(
                ["normal_pct", "steady_pct", "bursty_pct", "aligned_pct"][shape as usize],
                count * 100 / self.limit,
            );
        }
        // Against an exact limiter of the limit per aligned window, judged once a window is over.
        let (window, limit) = (truth.micros() / self.len, self.limit);
        for judged in self.tallies[user].judge(window) {
            ctx.count("false_rejections", judged.false_rejections(limit) as i64);
            ctx.count("within_limit", judged.within_limit(limit) as i64);
        }
        self.tallies[user].answered(window, ok);
        self.throttled[user] = !ok;
        self.bytes[user] = self.bytes_of(user, now);
        self.publish(ctx);
        ctx.send(from, if ok { Msg::Admitted } else { Msg::Throttled });
    }

    /// What a user costs the limiter: the sliding log 16 bytes per admission in the window,
    /// the others a fixed few counters or times.
    fn bytes_of(&self, user: usize, now: Time) -> u64 {
        match &self.keep[user] {
            Keep::Window(Window::Log(log)) => LOG_ENTRY_BYTES * log.count(now),
            Keep::Window(Window::Fixed(_)) => 16,
            Keep::Window(Window::Sliding(_)) => 24,
            Keep::Bucket(_) => TokenBucket::BYTES,
            Keep::Gcra(_) => Gcra::BYTES,
        }
    }

    /// Memory is measured for a user as it is served: a log is pruned only then, so between
    /// requests it keeps what it had.
    fn publish(&mut self, ctx: &mut Ctx<Rl>) {
        let total: u64 = self.bytes.iter().sum();
        ctx.gauge("bytes_per_user", (total / self.bytes.len().max(1) as u64) as i64);
        ctx.gauge("bytes_max", self.bytes.iter().copied().max().unwrap_or(0) as i64);
        ctx.gauge("throttled_users", self.throttled.iter().filter(|&&t| t).count() as i64);
    }

    /// A user's state now: admitted in its window (of the limit), or tokens left (of the burst).
    fn level(&self, user: usize) -> (i64, i64) {
        let now = self.seen;
        match &self.keep[user] {
            Keep::Window(w) => (w.count(now) as i64, self.limit as i64),
            Keep::Bucket(b) => (b.tokens(now) as i64, b.burst() as i64),
            Keep::Gcra(g) => (g.tokens(now) as i64, g.burst() as i64),
        }
    }

    fn view(&self) -> NodeView {
        let label = SPEC.strategies[self.strategy as usize].label.to_lowercase();
        let mut v = NodeView::new(NodeKind::Service, 1, format!("limiter · {label}"));
        for (user, name) in SHOWN.iter().enumerate().take(self.keep.len()) {
            let (value, max) = self.level(user);
            v = v.gauge(name, value, max);
        }
        let throttled: Vec<String> =
            (0..self.throttled.len()).filter(|&u| self.throttled[u]).map(|u| numbered("user", u as u64)).collect();
        let most = self.bytes.iter().copied().max().unwrap_or(0);
        v.badge(format!("{most} B for the largest user"), Tone::Neutral).badge_if(
            !throttled.is_empty(),
            format!("throttled: {}", throttled.join(", ")),
            Tone::Bad,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::failed_at;

    fn run(strategy: &str, seed: u64, params: &[(&str, i64)], secs: u64) -> Box<dyn Run> {
        let recipe = params.iter().fold(Recipe::new(SPEC.id(), strategy, seed), |r, &(k, v)| r.with_param(k, v));
        let (mut run, problems) = open(&SPEC, &recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(run.unhandled(), 0);
        run
    }

    fn c(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    #[test]
    fn explore() {
        let shape: i64 = std::env::var("SHAPE").map_or(0, |s| s.parse().unwrap());
        let burst: i64 = std::env::var("BURST").map_or(20, |s| s.parse().unwrap());
        for st in SPEC.strategies {
            for seed in 1..=5 {
                let r = run(st.id, seed, &[("shape", shape), ("burst", burst)], 30);
                let h = r.metrics().histogram("window_pct").unwrap();
                let fr = c(r.as_ref(), "false_rejections") as f64
                    / (c(r.as_ref(), "false_rejections") + c(r.as_ref(), "within_limit")) as f64;
                println!(
                    "{} seed {seed}: max {}% fr {:.2}% bytes max {} admitted {} fail {:?}",
                    st.id,
                    h.max(),
                    fr * 100.0,
                    r.metrics().gauge("bytes_max"),
                    c(r.as_ref(), "admitted"),
                    failed_at(r.as_ref(), "within-promise")
                );
                if seed == 1 && std::env::var("SERIES").is_ok() {
                    let s = r.sampler();
                    let pts: Vec<String> = s
                        .times
                        .iter()
                        .zip(&s.series[0])
                        .filter(|(_, &v)| v > 101.0)
                        .map(|(t, v)| format!("{}:{v}", t.as_secs_f64()))
                        .collect();
                    println!("  {}", pts.join(" "));
                }
            }
        }
    }
}
