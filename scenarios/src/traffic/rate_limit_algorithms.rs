//! Rate-limit algorithms: users (some abusive: steady, bursty or boundary-aligned) → one limiter with
//! a limit per user, kept by a fixed window, a sliding log, a sliding-window counter, a token bucket or
//! GCRA, each judged by its promise over every window of the limit's length.

use crate::parts::{
    arrivals::{OpenLoop, Spacing},
    bucket::{Bucket, Gcra, TokenBucket},
    degraded::FaultWindow,
    strategies::strategies,
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
        summary: "100 requests a second per user, five ways, against users sending three times that, steady, bursty \
                  or on the boundaries. A fixed window lets 2× through at a boundary, a sliding-window counter ~1.5× \
                  after a silence; a sliding log is exact but keeps every request; a token bucket and GCRA: r·T + b.",
        note: Note {
            what_can_go_wrong: "\"L per T\" reads as \"at most L in any T\"; only the sliding log keeps that. A \
                fixed window counts per aligned window: L just before a boundary and L just after make 2L in 20 ms. \
                The sliding-window counter weights the last window as if its requests were spread evenly: after a \
                silence, a burst starting a fraction g into a window gets L at once, then L·f by a fraction f < g of \
                the next while those L still count: up to L(1 + g). Each is judged by its promise over any T of true \
                time, whatever the load (a 4× flood at 12–18 s): L for the window counters (the two cheap ones \
                break it), r·T + b = L + b for the token bucket and GCRA. The model: one limiter, 1–3 ms links, state \
                kept over a restart (as in Redis); excess refused at once, with no Retry-After (not modelled); bursty \
                users on and off for random (exponential) spells, a window and three on average, so the excess varies \
                by run; a false rejection: a refusal an exact sliding log, run alongside on the same requests, would admit.",
            what_you_sacrifice: "The sliding log pays in memory: a time stamp per request in its window, 16 bytes × \
                L a user (1.6 KB here) where the others keep 8–24 bytes. A token bucket or GCRA admits L + b in a T \
                by design, and smooths bursts (b at once, then r a second), so it refuses the most of what the \
                exact limiter would admit, the more the smaller b.",
            at_10x: "The log grows with users × L (a million users at L = 1,000: 16 GB), the others with users only; \
                an hourly limit makes the fixed window's boundary burst enormous. Instances that share the state \
                (distributed-rate-limiter) find GCRA's one time stamp, set by compare-and-set, the cheapest.",
            resembles: "Redis INCR + EXPIRE (fixed window), ZADD + ZREMRANGEBYSCORE (sliding log), Cloudflare's \
                sliding-window counter, NGINX limit_req with nodelay (a leaky bucket; without it NGINX delays the excess), \
                Envoy's and AWS API Gateway's token buckets, Stripe's, redis-cell's and the governor crate's GCRA.",
            try_this: &[
                "Play `fixed-window`: steady user 0 (or bursty user 1, if on) gets its 100 early in the first second, \
                 then more just after 1 s, so `within-promise` fails at 1 s in most runs; user 2 sends 300 requests 10 ms \
                 before 2 s (and every other boundary) and 300 10 ms after: 200 get in within 20 ms (200%).",
                "Switch to `sliding-window-counter`: user 2 is held within one request of the limit, but bursty user \
                 1, bursting late in a window after a silence, gets over 140% of it in most runs.",
                "Switch to `sliding-log`, `token-bucket`, `gcra`: the check holds; the log keeps 1.6 KB for an abusive \
                 user, the bucket 16 bytes, GCRA 8 — and the bucket and GCRA admit exactly the same requests.",
                "With `token-bucket`, set the burst to 100: it promises 200 a second, what the fixed window lets \
                 through, and users get 199; the check holds and false rejections fall from 48% to about 29%.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("users", "Users", "", 1..=200, 8, "Users of the limiter; the first ones are abusive."),
        ParamSpec::setup("abusive", "Abusive users", "", 0..=200, 3, "How many of the users send far over the limit."),
        ParamSpec::live("normal_rps", "Normal user rate", "req/s", 1..=1000, 20, "A normal user's Poisson rate."),
        ParamSpec::live("abusive_rps", "Abusive user rate", "req/s", 1..=5000, 300, "An abusive user's mean rate."),
        ParamSpec::live("shape", "Abusive traffic", "", 0..=3, 0, "1 steady, 2 bursty (on and off for random spells, a window \
            and three on average), 3 a window's worth (≤ 5,000) 10 ms before and after every other boundary; 0: the \
            abusive take 1, 2, 3."),
        ParamSpec::setup("limit", "Limit", "req", 1..=10_000, 100, "Requests a user may make per window: L."),
        ParamSpec::setup("window_ms", "Window", "ms", 100..=60_000, 1000, "The limit's window: T.").step(100),
        ParamSpec::setup("burst", "Burst", "req", 1..=10_000, 20, "Token bucket depth b (GCRA: τ = (b − 1)·T/L)."),
    ],
    strategies: &[
        StrategySpec::naive("fixed-window", "Fixed window", "Counts per aligned window, reset at each boundary."),
        StrategySpec::fixed("sliding-log", "Sliding log", "Keeps every admission's time and counts the last T."),
        StrategySpec::naive("sliding-window-counter", "Sliding-window counter",
            "Adds the previous window's count, weighted by the share of it the sliding window still covers."),
        StrategySpec::fixed("token-bucket", "Token bucket", "Up to b tokens, refilled at L per T; one per request."),
        StrategySpec::fixed("gcra", "Leaky bucket / GCRA", "One theoretical arrival time, T/L later per admission."),
    ],
    faults: &[FaultSpec::global("flood", "Flood", "Abusive users send this many times their rate (1 ends it).")
        .value("×", 1..=100, 4)],
    checks: &[CheckSpec::new("within-promise", "Each user within the algorithm's promise", "In any T of true \
        time since the strategy took over, no user gets more admitted than L (window counters) or r·T + b (buckets).")],
    metrics: &[
        MetricSpec::new("max_window", "Most admitted in a T (% of L)", "%", Measure::Quantile("window_pct", 1.0)),
        MetricSpec::new("false_rejections", "False rejections (% of what an exact sliding log admits)", "%",
            Measure::Percent { num: "false_rejections", rest: "exact_too" }),
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
/// Boundary-aligned bursts come this long (at most a quarter window) before and after every other boundary.
const ALIGN_US: Micros = 10 * MICROS_PER_MS;
/// Traffic shapes: a name, and a histogram of admitted in the T up to each admission (% of L).
const BURSTY: usize = 1;
const ALIGNED: usize = 2;
const NORMAL: usize = 3;
const SHAPES: [&str; 4] = ["abusive, steady", "abusive, bursty", "abusive, boundary-aligned", "normal"];
const SHAPE_PCT: [&str; 4] = ["steady_pct", "bursty_pct", "aligned_pct", "normal_pct"];
/// The limiter shows the state of this many users (gauge labels are static).
const SHOWN: [&str; 8] = ["user 0", "user 1", "user 2", "user 3", "user 4", "user 5", "user 6", "user 7"];

/// User `index`'s shape under the `shape` parameter (0: the abusive take the three in turn).
fn shape_of(index: u32, abusive: i64, shape: i64) -> usize {
    match (index as i64) < abusive {
        false => NORMAL,
        true if shape == 0 => index as usize % 3,
        true => (shape as usize - 1).min(2),
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
    /// A boundary-aligned burst, numbered to tell stale ones (set before a change of shape) apart.
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
    shape: usize,
    src: OpenLoop,
    len: Micros,
    /// Boundary-aligned bursts timed so far: a timer of an older one is stale.
    bursts: u64,
}

#[derive(Clone, Debug)]
enum Keep {
    Window(Window),
    Bucket(Bucket),
}

/// One user at the limiter: the strategy's state (`keep`), and god's-eye instrumentation.
#[derive(Clone, Debug)]
struct Account {
    keep: Keep,
    /// Its admissions by true time since the strategy took over, for the check.
    audit: SlidingLog,
    /// An exact limiter (a sliding log) run alongside on the same requests: the reference for false rejections.
    exact: SlidingLog,
    throttled: bool,
    bytes: u64,
}

#[derive(Clone, Debug)]
pub struct Limiter {
    strategy: Strategy,
    limit: u64,
    len: Micros,
    burst: u64,
    users: Vec<Account>,
    /// The last request if admitted (user, admitted in the T up to it, when), for the check (a refusal breaks
    /// no promise, so it clears it); its clock at the last request, for the view (which has none).
    last: Option<(usize, u64, Time)>,
    seen: Time,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Rl> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let (users, limit) = (setup.param("users") as u32, setup.param("limit") as u64);
    let (len, burst) = (setup.param("window_ms") as Micros * MICROS_PER_MS, setup.param("burst") as u64);
    let strategy = Strategy::from_id(setup.strategy());
    let mut limiter = Limiter { strategy, limit, len, burst, users: vec![], last: None, seen: Time::ZERO };
    limiter.users = (0..users).map(|_| limiter.account()).collect();
    assert_eq!(sim.add_node(Rl::Limiter(Box::new(limiter))), LIMITER);
    for index in 0..users {
        let (shape, src) = (NORMAL, OpenLoop::poisson(0.0));
        sim.add_node(Rl::User(User { index, shape, src, len, bursts: 0 }));
    }
    // The fault plan: a flood, the abusive users at four times their rate for 6 s.
    FaultWindow::secs(12, 6).custom(&mut sim, "flood", None, 4, 1);
    sim.check("within-promise", |w| match w.touched {
        Some(LIMITER) => w.node::<Box<Limiter>>(LIMITER).kept(w.param("abusive"), w.param("shape")),
        _ => Ok(()),
    });
    Box::new(sim)
}

impl Node for Rl {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Rl::User(u) = self {
            u.configure(ctx);
            u.src.start(ctx, Timer::Send);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Rl::Limiter(l), Msg::Request) => l.request(from, ctx),
            // A user's answers show on the wire; the limiter shows who is throttled.
            (Rl::User(_), Msg::Admitted | Msg::Throttled) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Rl::User(u), Timer::Send) => {
                u.src.on_timer(ctx, Timer::Send);
                ctx.send(LIMITER, Msg::Request);
            }
            (Rl::User(u), Timer::Burst(n)) => u.burst(n, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Rl::Limiter(l), Control::Strategy(id)) => l.switch(Strategy::from_id(id), ctx),
            (Rl::User(u), Control::Param { id: "normal_rps" | "abusive_rps" | "shape", .. }) => u.configure(ctx),
            (Rl::User(u), Control::Custom { id: "flood", value }) if u.shape != NORMAL => {
                u.src.set_load_pct(100 * value.max(1) as u32, ctx, Timer::Send)
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Rl::Limiter(l) => l.view(),
            Rl::User(u) => NodeView::new(NodeKind::Client, 0, numbered("user", u.index as u64))
                .badge(SHAPES[u.shape], if u.shape == NORMAL { Tone::Neutral } else { Tone::Warn }),
        }
    }
}

impl User {
    /// Sets the source for the shape and rates in force: Poisson, on/off (on for a window, off
    /// for three, the same mean rate), or parked while aligned bursts are timed by hand.
    fn configure(&mut self, ctx: &mut Ctx<Rl>) {
        self.shape = shape_of(self.index, ctx.param("abusive"), ctx.param("shape"));
        self.bursts += 1;
        let abusive = self.shape != NORMAL;
        let rate = ctx.param(if abusive { "abusive_rps" } else { "normal_rps" }) as f64;
        let on_off = Spacing::OnOff { on_us: self.len, off_us: 3 * self.len };
        self.src.set_spacing(if self.shape == BURSTY { on_off } else { Spacing::Poisson }, ctx, Timer::Send);
        self.src.set_rate_per_s(if self.shape == ALIGNED { 0.0 } else { rate }, ctx, Timer::Send);
        if self.shape == ALIGNED {
            self.next_burst(ctx);
        }
    }

    /// The next instant `ALIGN_US` before or after every other window boundary (its own clock).
    fn next_burst(&mut self, ctx: &mut Ctx<Rl>) {
        let (now, off, period) = (ctx.now().micros(), ALIGN_US.min(self.len / 4), 2 * self.len);
        let phase = now % period;
        let at = if phase < off {
            off
        } else if phase < period - off {
            period - off
        } else {
            period + off
        };
        ctx.set_timer(at - phase, Timer::Burst(self.bursts));
    }

    /// A window's worth of its mean rate × the flood (at most 5,000, or 200 users at the sliders' ends
    /// would queue 240M), sent at once, twice every two windows. Burst `n` is stale if the shape changed.
    fn burst(&mut self, n: u64, ctx: &mut Ctx<Rl>) {
        if n != self.bursts {
            return;
        }
        let per_window = ctx.param("abusive_rps") as u64 * self.src.load_pct() as u64 / 100 * self.len / MICROS_PER_S;
        for _ in 0..per_window.clamp(1, 5_000) {
            ctx.send(LIMITER, Msg::Request);
        }
        self.next_burst(ctx);
    }
}

impl Limiter {
    /// A user's account as the strategy starts it: empty windows, a full bucket.
    fn account(&self) -> Account {
        let (limit, len, burst) = (self.limit, self.len, self.burst);
        let keep = match self.strategy {
            Strategy::Fixed => Keep::Window(Window::fixed(len)),
            Strategy::Log => Keep::Window(Window::log(len)),
            Strategy::Counter => Keep::Window(Window::sliding(len)),
            Strategy::Bucket => Keep::Bucket(Bucket::Token(TokenBucket::new(limit, len, burst))),
            Strategy::Gcra => Keep::Bucket(Bucket::Gcra(Gcra::new(limit, len, burst))),
        };
        let (audit, exact) = (SlidingLog::new(len), SlidingLog::new(len));
        Account { bytes: bytes_of(&keep, Time::ZERO), keep, audit, exact, throttled: false }
    }

    /// What the strategy promises for any window of length T: the limit, or r·T + b.
    fn promise(&self) -> u64 {
        self.limit + if matches!(self.strategy, Strategy::Bucket | Strategy::Gcra) { self.burst } else { 0 }
    }

    /// The check: the last request, if admitted, kept the promise; or who got how many.
    fn kept(&self, abusive: i64, shape: i64) -> Result<(), String> {
        let Some((user, count, at)) = self.last.filter(|l| l.1 > self.promise()) else { return Ok(()) };
        let (shape, ms) = (SHAPES[shape_of(user as u32, abusive, shape)], self.len / MICROS_PER_MS);
        let (name, promise) = (SPEC.strategies[self.strategy as usize].label, self.promise());
        Err(format!("user {user} ({shape}) got {count} admitted in the {ms} ms to {at}; {name} promises {promise}"))
    }

    /// A new strategy starts every user afresh, the audit too: each is judged on what it admitted.
    fn switch(&mut self, strategy: Strategy, ctx: &mut Ctx<Rl>) {
        (self.strategy, self.last) = (strategy, None);
        self.users = (0..self.users.len()).map(|_| self.account()).collect();
        self.publish(ctx);
    }

    fn request(&mut self, from: NodeId, ctx: &mut Ctx<Rl>) {
        let (user, now, truth, limit) = ((from - FIRST_USER) as usize, ctx.now(), ctx.truth(), self.limit);
        (self.seen, self.last) = (now, None);
        let a = &mut self.users[user];
        let ok = match &mut a.keep {
            Keep::Window(w) => w.allow(now, limit),
            Keep::Bucket(b) => b.allow(now),
        };
        if ok {
            a.audit.hit(truth, 1);
            let (count, shape) =
                (a.audit.count(truth), shape_of(user as u32, ctx.param("abusive"), ctx.param("shape")));
            self.last = Some((user, count, truth));
            ctx.count("admitted", 1);
            ctx.observe("window_pct", count * 100 / limit);
            ctx.observe(SHAPE_PCT[shape], count * 100 / limit);
        }
        // What the exact limiter admits, this one admitted too or refused (a false rejection).
        if a.exact.allow(now, limit) {
            ctx.count(if ok { "exact_too" } else { "false_rejections" }, 1);
        }
        (a.throttled, a.bytes) = (!ok, bytes_of(&a.keep, now));
        self.publish(ctx);
        ctx.send(from, if ok { Msg::Admitted } else { Msg::Throttled });
    }

    /// Memory is measured for a user as it is served: a log is pruned only then, so between
    /// requests it keeps what it had.
    fn publish(&mut self, ctx: &mut Ctx<Rl>) {
        let (total, n) = (self.users.iter().map(|a| a.bytes).sum::<u64>(), self.users.len().max(1) as u64);
        ctx.gauge("bytes_per_user", (total / n) as i64);
        ctx.gauge("bytes_max", self.users.iter().map(|a| a.bytes).max().unwrap_or(0) as i64);
        ctx.gauge("throttled_users", self.users.iter().filter(|a| a.throttled).count() as i64);
    }

    /// Per user shown: admitted in its window (of the limit) or tokens left (of the burst);
    /// the users throttled now, and the memory of the largest.
    fn view(&self) -> NodeView {
        let label = SPEC.strategies[self.strategy as usize].label.to_lowercase();
        let mut v = NodeView::new(NodeKind::Service, 1, format!("limiter · {label}"));
        for (a, name) in self.users.iter().zip(SHOWN) {
            let (value, max) = match &a.keep {
                Keep::Window(w) => (w.count(self.seen), self.limit),
                Keep::Bucket(b) => (b.tokens(self.seen), b.burst()),
            };
            v = v.gauge(name, value as i64, max as i64);
        }
        let throttled: Vec<String> =
            (0..self.users.len()).filter(|&u| self.users[u].throttled).map(|u| numbered("user", u as u64)).collect();
        let most = self.users.iter().map(|a| a.bytes).max().unwrap_or(0);
        let v = v.badge(format!("{most} B for the largest user"), Tone::Neutral);
        v.badge_if(!throttled.is_empty(), format!("throttled: {}", throttled.join(", ")), Tone::Bad)
    }
}

/// What a user costs the limiter: a sliding log 16 bytes per admission in its window (a time
/// and a count), a fixed window two counters, the sliding-window counter three.
fn bytes_of(keep: &Keep, now: Time) -> u64 {
    match keep {
        Keep::Window(Window::Log(log)) => 16 * log.count(now),
        Keep::Window(Window::Fixed(_)) => 16,
        Keep::Window(Window::Sliding(_)) => 24,
        Keep::Bucket(b) => b.bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::failed_at;
    use crate::parts::window::SlidingCounter;

    fn run(strategy: &str, seed: u64, params: &[(&str, i64)]) -> Box<dyn Run> {
        let recipe = params.iter().fold(Recipe::new(SPEC.id(), strategy, seed), |r, &(k, v)| r.with_param(k, v));
        crate::parts::testing::run_sampled(&SPEC, &recipe, 30, &[]).0
    }

    /// The most a user of this shape had admitted in one T, in % of the limit.
    fn most(r: &dyn Run, shape: usize) -> u64 {
        r.metrics().histogram(SHAPE_PCT[shape]).map_or(0, |h| h.max())
    }

    /// False rejections, % of what the exact limiter (a sliding log alongside) admits.
    fn false_pct(r: &dyn Run) -> f64 {
        let (f, w) = (r.metrics().counter("false_rejections"), r.metrics().counter("exact_too"));
        100.0 * f as f64 / (f + w) as f64
    }

    fn broke(r: &dyn Run) -> Option<(f64, String)> {
        failed_at(r, "within-promise")
    }

    #[test]
    fn try_fixed_window_lets_twice_the_limit_through_at_a_boundary() {
        // Step 1. Steady user 0 (300/s, Poisson) has its 100 by about 0.33 s and is refused
        // until 1 s; after 1 s it is admitted again, and once its admissions since 1 s outrun
        // those of window 0 shifted by T, 101 are in a T: a race of two Poisson streams, which it
        // wins within ms in most runs (bursty user 1, when on at 1 s, likewise; user 2's first
        // double is at 2 s, so at 1 s it is always user 0 or 1). Over seeds 1–8: 7 at 1 s,
        // one at 2 s. User 2's 300 just before boundary 2k get 100 (window 2k − 1 is otherwise
        // empty), its 300 just after 100 more: 200 within 20 ms.
        let mut at_one = 0;
        for seed in 1..=8 {
            let r = run("fixed-window", seed, &[]);
            assert_eq!(most(r.as_ref(), ALIGNED), 200, "seed {seed}");
            let (at, why) = broke(r.as_ref()).expect("the fixed window breaks its limit");
            let user = why.starts_with("user 0 (abusive, steady)") || why.starts_with("user 1 (abusive, bursty)");
            assert!(user && ((1.0..1.02).contains(&at) || (2.0..2.02).contains(&at)), "seed {seed}: {at}: {why}");
            at_one += (at < 2.0) as u32;
            // Refusing while the exact log would admit (late in a window it filled early):
            // against an exact limiter, the fixed window too rejects falsely.
            assert!(false_pct(r.as_ref()) > 1.0, "seed {seed}: {}", false_pct(r.as_ref()));
        }
        assert!(at_one >= 6, "{at_one} of 8 runs failed at 1 s");
    }

    #[test]
    fn try_sliding_window_counter_holds_aligned_bursts_but_not_a_burst_after_silence() {
        // Step 2. Aligned bursts: at most one over (the estimate's weight of the previous
        // window, 1% of it 10 ms after the boundary, lets one more through). Bursts after a
        // silence: L(1 + g) by the theory below; over these seeds 112%–159%.
        let mut over_140 = 0;
        for seed in 1..=5 {
            let r = run("sliding-window-counter", seed, &[]);
            assert!(most(r.as_ref(), ALIGNED) <= 101, "seed {seed}: {}", most(r.as_ref(), ALIGNED));
            let bursty = most(r.as_ref(), BURSTY);
            assert!(bursty > 110, "seed {seed}: the bursty user got {bursty}%");
            over_140 += (bursty > 140) as u32;
            assert!(broke(r.as_ref()).is_some(), "seed {seed}");
        }
        assert!(over_140 >= 4, "{over_140} of 5 runs over 140%");
    }

    #[test]
    fn the_sliding_counter_admits_up_to_l_times_1_plus_g_after_a_silence() {
        // The theory of step 2. A greedy source (a request every 100 µs) starts a fraction g
        // into window 1, after nothing in window 0: the estimate sees no previous window, so L
        // are admitted at once; at a fraction f of window 2 the estimate is L(1 − f) + n, so n
        // reaches L·f, while the L of window 1 stay in the sliding window until f = g. The
        // densest T holds L(1 + g), within 2 (the estimate's rounding and the 100 µs grid).
        let (len, limit) = (MICROS_PER_S, 100u64);
        for g in [0.25, 0.5, 0.9] {
            let mut counter = SlidingCounter::new(len);
            let start = len + (g * len as f64) as u64;
            let admitted: Vec<Time> =
                (start..3 * len).step_by(100).map(Time).filter(|&t| counter.allow(t, limit)).collect();
            let densest = (0..admitted.len())
                .map(|i| admitted[i..].partition_point(|x| *x < admitted[i].plus(len)))
                .max()
                .unwrap_or(0);
            let want = limit as f64 * (1.0 + g);
            assert!((densest as f64 - want).abs() <= 2.0, "g = {g}: {densest} in a window, theory {want}");
        }
    }

    #[test]
    fn try_the_fixes_hold_the_log_costs_memory_and_gcra_is_the_token_bucket() {
        // Step 3. The steady abusive user keeps the log full: 100 entries of 16 bytes. The
        // bucket and GCRA make the same decisions on every request (parts/bucket.rs proves it),
        // so their runs admit and refuse the very same requests.
        for seed in 1..=3 {
            let [log, bucket, gcra] = ["sliding-log", "token-bucket", "gcra"].map(|st| run(st, seed, &[]));
            for r in [&log, &bucket, &gcra] {
                assert_eq!(broke(r.as_ref()), None, "{} seed {seed}", r.recipe().strategy);
            }
            let bytes = |r: &dyn Run| r.metrics().gauge("bytes_max");
            assert_eq!((bytes(log.as_ref()), bytes(bucket.as_ref()), bytes(gcra.as_ref())), (1600, 16, 8));
            for name in ["admitted", "false_rejections", "exact_too"] {
                assert_eq!(bucket.metrics().counter(name), gcra.metrics().counter(name), "{name}");
            }
            // The log is the exact limiter: by construction it never rejects falsely.
            assert_eq!(log.metrics().counter("false_rejections"), 0);
            assert_eq!(most(log.as_ref(), BURSTY), 100);
            assert_eq!(most(bucket.as_ref(), BURSTY), 119, "b + r·T − 1: the bucket holds b at the window's start");
        }
    }

    #[test]
    fn try_a_burst_of_100_promises_what_the_fixed_window_lets_through() {
        // Step 4. b = 100: r·T + b = 200, and a full bucket drained at a window's start then
        // refilled for the rest of it gives 199 (the last token is due 1 µs after the window).
        // Smoothing less, it refuses fewer of the requests the exact sliding log admits: 48% of
        // them with b = 20, 27–31% with b = 100 (seeds 1–3; the spread is the seeds' bursts).
        for seed in 1..=3 {
            let (small, big) = (run("token-bucket", seed, &[]), run("token-bucket", seed, &[("burst", 100)]));
            assert_eq!(broke(big.as_ref()), None);
            assert_eq!(most(big.as_ref(), 0), 199, "seed {seed}");
            let (a, b) = (false_pct(small.as_ref()), false_pct(big.as_ref()));
            assert!((47.0..50.0).contains(&a) && (26.0..33.0).contains(&b), "seed {seed}: {a:.1}% then {b:.1}%");
        }
    }

    #[test]
    fn the_check_fails_at_each_admission_over_the_promise_and_holds_at_the_next_refusal() {
        // One boundary-aligned user: its 300 at 2.01 s arrive over 1–3 ms; the 100 admitted
        // first each make 101 to 200 in the T (the 100 of 1.99 s still count), and the first
        // refusal after them breaks no promise: the band ends there, by 2.02 s, not at the
        // next admission (3.99 s). So at every pair of boundaries, a band of a few ms.
        let r = run("fixed-window", 1, &[("users", 1), ("abusive", 1), ("shape", 3)]);
        let c = r.checks().iter().find(|c| c.id == "within-promise").unwrap();
        let (from, to) = (c.bands[0].from.as_secs_f64(), c.bands[0].to.expect("it ends").as_secs_f64());
        assert!((2.01..2.014).contains(&from) && to < 2.02, "{from} to {to}");
        assert_eq!(c.bands.len(), 14, "{:?}", c.bands);
        assert!(c.bands.iter().all(|b| b.to.is_some_and(|to| to.since(b.from) < 10 * MICROS_PER_MS)));
    }

    #[test]
    fn a_switch_judges_the_new_algorithm_from_then_on() {
        // Each algorithm starts every user afresh when it takes over (a full bucket on top of a
        // full log would be 220 in a T), so the audit does too: switching among the fixed ones
        // live never fails the check.
        let switch = |at: u64, id: &str| (Time::from_secs(at), ActionKind::SetStrategy { id: id.into() });
        for seed in 1..=3 {
            let recipe = [switch(5, "token-bucket"), switch(10, "gcra"), switch(20, "sliding-log")]
                .into_iter()
                .fold(Recipe::new(SPEC.id(), "sliding-log", seed), |r, (t, a)| r.with_action(t, a));
            let (mut r, problems) = open(&SPEC, &recipe);
            assert!(problems.is_empty());
            r.run_until(Time::from_secs(30), u64::MAX);
            assert_eq!(broke(r.as_ref()), None, "seed {seed}");
            assert_eq!(r.unhandled(), 0);
        }
    }

    #[test]
    fn the_view_shows_each_users_state_and_who_is_throttled() {
        let r = run("token-bucket", 1, &[]);
        let views: Vec<NodeView> = r.frame(0).nodes.into_iter().map(|n| n.view).collect();
        let limiter = &views[LIMITER as usize];
        assert_eq!(limiter.label, "limiter · token bucket");
        assert_eq!(limiter.gauges.len(), 8);
        assert!(limiter.gauges.iter().all(|g| g.max == 20 && (0..=20).contains(&g.value)));
        assert!(limiter.badges.iter().any(|b| b.text.starts_with("throttled: user")));
        let user = |i: usize| views[FIRST_USER as usize + i].badges[0].text.clone();
        assert_eq!([user(0), user(1), user(2), user(3)], SHAPES.map(String::from));
        let log = run("sliding-log", 1, &[]);
        let gauges = &log.frame(0).nodes[LIMITER as usize].view.gauges;
        assert!(gauges.iter().all(|g| g.max == 100) && gauges[0].value > 90, "{gauges:?}");
    }
}
