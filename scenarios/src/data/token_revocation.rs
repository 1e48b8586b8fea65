//! Token revocation: a logout must take effect on 100+ API instances that verify tokens on
//! their own. A 24-hour JWT keeps working after it; a store lookup per request, short-lived
//! tokens, or a revocation filter pushed to every instance bound how long; refresh tokens
//! rotated with reuse detection tell a stolen one the moment two parties use it.

use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::logins::{Answer, Ask, AuthBook, Due, Pace, Population, Wiring};
use crate::parts::strategies::strategies;
use crate::parts::tokens::{Access, FilterCopy, News};
use faultline_core::*;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "token-revocation",
        title: "Token revocation at scale",
        category: "Data & scale",
        seeds: &["S3#32", "S3#51", "S3#64", "S3#84", "S2#17"],
        summary: "Users log out while copies of their old access tokens are still tried on 100 API instances, and \
                  at 5 s an attacker copies a refresh token. Long-lived JWTs let revoked tokens in for hours; a lookup \
                  per request, short TTLs or a pushed filter refuse them within the bound; rotation catches the thief.",
        note: Note {
            what_can_go_wrong:
                "A JWT is verified by its signature alone, so no instance knows it was revoked: a 24-hour \
                token works up to 24 hours after a logout or a password change. A reusable refresh token gives whoever \
                copied it access for as long as the session lives, and nothing looks wrong. The model: TTLs scaled to \
                seconds (a 10 s token stands for 5–15 minutes), refreshes at 80% of a token's life, links of 1–4 ms, \
                the auth service's families and revocations and the store's set durable, the store's own load not \
                modelled (lookups a second show its cost).",
            what_you_sacrifice:
                "A lookup per request puts a store round trip (the seed's 5 ms) on every request and the \
                store on the critical path: down, failing closed refuses everyone and failing open lets revoked tokens \
                in. Short TTLs cost refreshes, users/(0.8·TTL) a second, and revoke only within a TTL. A pushed filter \
                costs a push per revocation per instance and a lookup per false positive; an instance that misses \
                pushes must notice (versions, heartbeats) and refuse until caught up. Rotation logs the owner out too.",
            at_10x: "At 1M users and 200 instances, lookups are hundreds of thousands a second on one store; 5-minute \
                TTLs are 3,300 refreshes a second; pushes are 200 messages a revocation, and the filter must hold a \
                TTL's worth of revocations (an entry can go when its token would have expired anyway).",
            resembles: "Auth0's and Okta's refresh-token rotation with reuse detection (OAuth 2.0 Security BCP), \
                Redis-backed JWT denylists, revocation lists pushed to API gateways, Kafka-fed revocation caches.",
            try_this: &[
                "Play `long-lived-jwt`: copies of logged-out tokens keep being accepted; 15 s after the first \
                 logout `revoked-refused-within` fails, naming the token and the instance.",
                "Switch to `blacklist-per-request`: nothing revoked gets in, but each request waits for a store lookup \
                 (verify p99 in ms) and the store's outage (20–24 s) refuses everyone; with `fail_open` 1 it lets \
                 revoked tokens in instead.",
                "Play `short-ttl-refresh`: revocation takes at most a TTL, but the refresh token stolen at 5 s keeps \
                 working (`stolen-refresh-detected` fails); `refresh-rotation` revokes its family.",
                "Play `pushed-filter`: lookups drop to the filter's false positives; api 0, cut off at 10 s, refuses \
                 requests once its filter is stale, then catches up by version.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("instances", "API instances", "", 2..=200, 100, "Instances verifying requests."),
        ParamSpec::setup("users", "Users", "", 10..=100_000, 2000, "Users logged in, each refreshing its token."),
        ParamSpec::live("rps", "Requests", "req/s", 0..=20_000, 500, "Legitimate requests, all users together."),
        ParamSpec::live("revocations_per_s", "Logouts", "/s", 0..=100, 2, "Users logging out (then in again)."),
        ParamSpec::live("access_ttl_s", "Access token TTL", "s", 1..=300, 10, "Short-TTL strategies (else 24 h)."),
        ParamSpec::live("bound_s", "Revocation bound", "s", 1..=120, 15, "The promise: refused everywhere by then."),
        ParamSpec::live("copy_every_ms", "Revoked copy every", "ms", 50..=5000, 500, "A revoked token's copy's pace.")
            .step(50),
        ParamSpec::live("sync_ms", "Filter heartbeat", "ms", 100..=10_000, 1000, "Pushed filter: version heartbeat.")
            .step(100),
        ParamSpec::live("store_timeout_ms", "Store timeout", "ms", 5..=2000, 50, "A lookup not answered fails."),
        ParamSpec::live("fail_open", "Fail open", "", 0..=1, 0, "1: accept when the store does not answer."),
        ParamSpec::setup("filter_bits", "Filter size", "bits", 256..=65_536, 2048, "Bloom bits, 3 hashes.").step(256),
    ],
    strategies: &[
        StrategySpec::naive("long-lived-jwt", "Long-lived JWT", "24 h tokens verified by signature only."),
        StrategySpec::naive("short-ttl-refresh", "Short TTL + refresh", "Short tokens; a reusable refresh token."),
        StrategySpec::fixed("blacklist-per-request", "Lookup per request", "Every request asks the revocation store."),
        StrategySpec::fixed("refresh-rotation", "TTL + rotation", "Short tokens; a reused refresh token revokes."),
        StrategySpec::fixed("pushed-filter", "Pushed filter", "Revocations pushed to a versioned filter per instance."),
    ],
    faults: &[FaultSpec::global("steal-refresh", "Steal a refresh token", "An attacker copies a user's.")],
    checks: &[
        CheckSpec::new(
            "revoked-refused-within",
            "Revoked tokens refused within the bound",
            "No instance accepts a token more than the bound after it was revoked.",
        ),
        CheckSpec::new(
            "stolen-refresh-detected",
            "A stolen refresh token is detected on reuse",
            "Once owner and thief both used a family's refresh token, the thief gets no new token.",
        ),
    ],
    metrics: &[
        MetricSpec::new("delay", "Revocation delay (p99)", "us", Measure::Quantile("revocation_delay_us", 0.99)),
        MetricSpec::new("late", "Accepted after revocation", "", Measure::Count("accepted_revoked")),
        MetricSpec::new("verify", "Verify overhead (p99)", "us", Measure::Quantile("verify_us", 0.99)),
        MetricSpec::new("lookups", "Store lookups", "/s", Measure::Rate("store_lookups")),
        MetricSpec::new("auth", "Auth-service load", "ops/s", Measure::Rate("auth_ops")),
        MetricSpec::new("refused", "Valid requests refused", "", Measure::Count("refused_valid")),
    ],
    layout: Layout::Tiers,
    default_until: 40 * MICROS_PER_S,
    sample_every: 500 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { LongLived, ShortTtl, Lookup, Rotation, Pushed });

const CLIENTS: NodeId = 0;
const AUTH: NodeId = 1;
const STORE: NodeId = 2;
const FIRST: NodeId = 3;
const JWT_TTL_US: Micros = 24 * 3600 * MICROS_PER_S;
/// A filter not confirmed by a push or heartbeat for this many heartbeats is stale.
const STALE_BEATS: u64 = 3;

const WIRING: Wiring<Tr> = Wiring { auth: AUTH, first_instance: FIRST, ask: Msg::Ask, due: Timer::Due, request };

fn request(token: Access, revoked: Option<Time>) -> Msg {
    Msg::Request { token, revoked }
}

/// `revoked`, `at`: when the token was revoked (true time) — for the audit and metrics; no instance decides by it.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Ask(Ask),
    Answer(Answer),
    Request { token: Access, revoked: Option<Time> },
    Lookup { call: CallId, token: u64 },
    Found { call: CallId, revoked: bool },
    Filter(News),
    Sync { have: u64 },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Due(Due),
    Beat,
    LookupTimeout(CallId),
}

#[derive(Clone, Debug, Holds)]
pub enum Tr {
    Clients(Population),
    Auth(AuthBook),
    Store(FilterCopy),
    Instance(Instance),
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u64,
    strategy: Strategy,
    copy: FilterCopy,
    calls: Calls<(Access, Option<Time>)>,
    accepted_revoked: u64,
    breach: Breach,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Tr> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 4_000 }));
    let strategy = Strategy::from_id(setup.strategy());
    let pop = Population::new(setup.param("users") as usize, setup.param("instances") as u64);
    assert_eq!(sim.add_node(Tr::Clients(pop)), CLIENTS);
    assert_eq!(sim.add_node(Tr::Auth(AuthBook::default())), AUTH);
    assert_eq!(sim.add_node(Tr::Store(FilterCopy::exact())), STORE);
    for index in 0..setup.param("instances") as u64 {
        let copy = FilterCopy::new(setup.param("filter_bits") as u64, 3);
        let (calls, breach) = (Calls::new("verify_us"), Breach::default());
        sim.add_node(Tr::Instance(Instance { index, strategy, copy, calls, accepted_revoked: 0, breach }));
    }
    // The plan: a refresh token stolen; api 0 cut from the auth service; the store down.
    sim.schedule(Time::from_secs(5), Fault::custom("steal-refresh", 0));
    FaultWindow::secs(10, 6).partition(&mut sim, vec![FIRST], Some(vec![AUTH]));
    FaultWindow::secs(20, 4).crash(&mut sim, STORE);
    sim.check("revoked-refused-within", |w| match w.touched {
        Some(n) if n >= FIRST => w.node::<Instance>(n).breach.now(w.now),
        _ => Ok(()),
    });
    sim.check("stolen-refresh-detected", |w| match w.touched {
        Some(AUTH) => w.node::<AuthBook>(AUTH).breach.now(w.now),
        _ => Ok(()),
    });
    Box::new(sim)
}

/// The old token's copy is tried for twice the bound: long enough to see it refused, or not.
fn pace(ctx: &Ctx<Tr>) -> Pace {
    Pace {
        copy_every_us: ctx.param_ms("copy_every_ms"),
        copy_for_us: 2 * ctx.param("bound_s") as Micros * MICROS_PER_S,
    }
}

fn rates(ctx: &Ctx<Tr>) -> (f64, f64) {
    (ctx.param("rps") as f64, ctx.param("revocations_per_s") as f64)
}

impl Node for Tr {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Tr::Clients(c) => c.start(&WIRING, rates(ctx), pace(ctx), ctx),
            Tr::Auth(_) => _ = ctx.set_timer(ctx.param_ms("sync_ms"), Timer::Beat),
            // The store, and a pushed filter, catch up on what they missed while down.
            Tr::Store(s) => ctx.send(AUTH, Msg::Sync { have: s.version() }),
            Tr::Instance(i) if i.strategy == Strategy::Pushed => ctx.send(AUTH, Msg::Sync { have: i.copy.version() }),
            Tr::Instance(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Tr::Clients(c), Msg::Answer(a)) => c.on_answer(&WIRING, a, ctx),
            (Tr::Auth(a), Msg::Ask(ask)) => answer(a, from, ask, ctx),
            (Tr::Auth(a), Msg::Sync { have }) => {
                ctx.send(from, Msg::Filter(News::Entries { from: have, entries: a.log.since(have) }))
            }
            (Tr::Store(s), Msg::Filter(news)) => hear(s, news, ctx.strategy() == "blacklist-per-request", ctx),
            (Tr::Store(s), Msg::Lookup { call, token }) => {
                ctx.count("store_lookups", 1);
                ctx.send(from, Msg::Found { call, revoked: s.maybe_revoked(token) })
            }
            (Tr::Instance(i), msg) => i.on_message(msg, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Tr::Clients(c), Timer::Due(due)) => c.on_due(&WIRING, due, pace(ctx), ctx),
            (Tr::Auth(a), Timer::Beat) => {
                to_copies(News::Beat { version: a.log.version() }, ctx);
                ctx.set_timer(ctx.param_ms("sync_ms"), Timer::Beat);
            }
            (Tr::Instance(i), Timer::LookupTimeout(call)) => {
                if let Some((token, revoked)) = i.calls.timeout(call) {
                    ctx.observe("verify_us", ctx.param_ms("store_timeout_ms"));
                    let open = ctx.param("fail_open") == 1;
                    i.decide(token, revoked, open, "refused_unavailable", ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Tr::Instance(i) => {
                i.calls.clear(ctx);
                i.copy.forget();
            }
            Tr::Store(s) => s.doubt(),
            Tr::Clients(_) | Tr::Auth(_) => {}
        }
        // Users log in afresh at a restart (`start`); the auth's families and log, and the store, are durable.
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Tr::Clients(c), Control::Custom { id: "steal-refresh", .. }) => {
                if let Some((user, family)) = c.steal(&WIRING, ctx) {
                    ctx.note(format!("an attacker copied user {user}'s refresh token (family {family})"));
                }
            }
            (Tr::Clients(c), Control::Param { id: "rps" | "revocations_per_s", .. }) => {
                c.set_rates(&WIRING, rates(ctx), ctx)
            }
            (Tr::Instance(i), Control::Strategy(id)) => {
                i.strategy = Strategy::from_id(id);
                i.copy.doubt();
                ctx.send(AUTH, Msg::Sync { have: i.copy.version() });
            }
            // Other parameters are read when used.
            (_, Control::Custom { .. } | Control::Param { .. } | Control::Strategy(_)) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Tr::Clients(c) => NodeView::new(NodeKind::Client, 0, "users")
                .badge(format!("{} logged in", c.logged_in()), Tone::Neutral)
                .badge(format!("{} revoked copies tried", c.copies.len()), Tone::Warn)
                .badge_if(c.thief.as_ref().is_some_and(|t| t.refresh.is_some()), "thief refreshing", Tone::Bad),
            Tr::Auth(a) => NodeView::new(NodeKind::Service, 2, "auth service")
                .badge(format!("{} revoked", a.log.version()), Tone::Neutral)
                .badge_if(a.reuses > 0, format!("reuse detected ×{}", a.reuses), Tone::Good)
                .badge_if(a.breach.latest().is_some(), "stolen refresh granted", Tone::Bad),
            Tr::Store(s) => NodeView::new(NodeKind::Store, 2, "revocation store")
                .badge(format!("{} revoked", s.version()), Tone::Neutral),
            Tr::Instance(i) => {
                let (pushed, current) = (i.strategy == Strategy::Pushed, i.copy.is_current());
                NodeView::new(NodeKind::Service, 1, numbered("api", i.index))
                    .badge_if(pushed && !current, "filter stale: refusing", Tone::Warn)
                    .badge_if(pushed && current, format!("filter v{}", i.copy.version()), Tone::Good)
                    .badge_if(i.accepted_revoked > 0, format!("{} revoked accepted", i.accepted_revoked), Tone::Bad)
            }
        }
    }
}

/// The auth service answers an ask; the access tokens it revoked are revoked by the strategy's means.
fn answer(book: &mut AuthBook, from: NodeId, ask: Ask, ctx: &mut Ctx<Tr>) {
    let strategy = Strategy::from_id(ctx.strategy());
    let ttl = match strategy {
        Strategy::ShortTtl | Strategy::Rotation => ctx.param("access_ttl_s") as Micros * MICROS_PER_S,
        Strategy::LongLived | Strategy::Lookup | Strategy::Pushed => JWT_TTL_US,
    };
    ctx.count("auth_ops", matches!(ask, Ask::Login { .. } | Ask::Refresh { .. }) as i64);
    let rotate = !matches!(strategy, Strategy::LongLived | Strategy::ShortTtl);
    let (answer, revoked) = book.answer(ask, rotate, (ctx.now(), ctx.truth()), ttl);
    if let Answer::Refused { reuse: true, user, .. } = answer {
        ctx.count("reuse_detected", 1);
        ctx.note(format!("a retired refresh token of user {user} came back: its family is revoked"));
    }
    let newest = revoked.iter().map(|r| r.0.exp).max();
    for (token, at, version) in revoked {
        ctx.count("revocations", 1);
        // Nothing an instance reads: the family's tokens work on until the newest expires.
        let waits = matches!(strategy, Strategy::LongLived | Strategy::ShortTtl | Strategy::Rotation);
        if waits && newest == Some(token.exp) {
            ctx.observe("revocation_delay_us", token.exp.since(ctx.now()));
        }
        to_copies(News::Push { version, entry: (token.id, at) }, ctx);
    }
    ctx.send(from, Msg::Answer(answer));
}

/// The store hears of every revocation; under the pushed filter, every instance too.
fn to_copies(news: News, ctx: &mut Ctx<Tr>) {
    let pushed = ctx.strategy() == "pushed-filter";
    let last = if pushed { FIRST + ctx.param("instances") as NodeId } else { FIRST };
    (STORE..last).for_each(|n| ctx.send(n, Msg::Filter(news.clone())));
}

/// A copy hears news: the revocation delays of what it applied observed (if `observe`), a gap asked for.
fn hear(copy: &mut FilterCopy, news: News, observe: bool, ctx: &mut Ctx<Tr>) {
    let heard = copy.hear(news, ctx.now());
    heard.applied.iter().filter(|_| observe).for_each(|&at| ctx.observe("revocation_delay_us", ctx.truth().since(at)));
    if let Some(have) = heard.ask {
        ctx.send(AUTH, Msg::Sync { have });
    }
}

impl Instance {
    fn on_message(&mut self, msg: Msg, ctx: &mut Ctx<Tr>) {
        match msg {
            Msg::Request { token, revoked } => self.verify(token, revoked, ctx),
            Msg::Found { call, revoked: found } => {
                if let Some((token, revoked)) = self.calls.reply(call, ctx) {
                    self.decide(token, revoked, !found, "refused_revoked", ctx);
                }
            }
            Msg::Filter(news) => hear(&mut self.copy, news, true, ctx),
            other => ctx.unhandled(&other),
        }
    }

    fn verify(&mut self, token: Access, revoked: Option<Time>, ctx: &mut Ctx<Tr>) {
        ctx.count("requests", 1);
        // Expiry on this instance's own clock: a clock behind accepts a token for longer.
        if ctx.now() >= token.exp {
            return self.decide(token, revoked, false, "refused_expired", ctx);
        }
        let stale_us = ctx.param_ms("sync_ms") * STALE_BEATS;
        let lookup = match self.strategy {
            Strategy::LongLived | Strategy::ShortTtl | Strategy::Rotation => false,
            Strategy::Lookup => true,
            // A filter that may have missed revocations refuses everything until it has caught up.
            Strategy::Pushed if !self.copy.fresh(ctx.now(), stale_us) => {
                return self.decide(token, revoked, false, "refused_stale", ctx);
            }
            // Maybe revoked (or a false positive): the store says which.
            Strategy::Pushed => self.copy.maybe_revoked(token.id),
        };
        if lookup {
            let call = self.calls.start(ctx, (token, revoked), ctx.param_ms("store_timeout_ms"), Timer::LookupTimeout);
            return ctx.send(STORE, Msg::Lookup { call, token: token.id });
        }
        ctx.observe("verify_us", 0);
        self.decide(token, revoked, true, "", ctx);
    }

    /// Accepts, or refuses counting it under `why`; accepting a token revoked longer ago than
    /// the bound breaks the promise.
    fn decide(&mut self, token: Access, revoked: Option<Time>, accept: bool, why: &'static str, ctx: &mut Ctx<Tr>) {
        ctx.count(if accept { "accepted" } else { why }, 1);
        ctx.count("refused_valid", (!accept && revoked.is_none() && why != "refused_expired") as i64);
        let Some(late) = revoked.filter(|_| accept).map(|at| ctx.truth().since(at)) else { return };
        self.accepted_revoked += 1;
        ctx.count("accepted_revoked", 1);
        if late > ctx.param("bound_s") as Micros * MICROS_PER_S {
            let (id, user, i, s) = (token.id, token.user, self.index, late as f64 / 1e6);
            self.breach.record(
                format!("api {i} accepted token {id} (user {user}) {s:.1} s after its revocation"),
                ctx.truth(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::bloom::false_positive_rate;
    use crate::parts::logins::REFRESH_AT;
    use crate::parts::testing::run_sampled;
    use crate::parts::tokens::{refresh_rate_per_s, ttl_revocation_delay_mean_us};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("token-revocation", strategy, seed)
    }

    fn run(r: &Recipe) -> Box<dyn Run> {
        run_sampled(&SPEC, r, SPEC.default_until / MICROS_PER_S, &[]).0
    }

    fn broken(run: &dyn Run, check: &str) -> Option<Violation> {
        run.checks().iter().find(|c| c.id == check).and_then(|c| c.violation.clone())
    }

    fn count(run: &dyn Run, name: &str) -> i64 {
        run.metrics().counter(name)
    }

    #[test]
    fn try_long_lived_jwts_accept_revoked_tokens_past_the_bound() {
        for seed in 1..=5 {
            let r = run(&recipe("long-lived-jwt", seed));
            let v = broken(r.as_ref(), "revoked-refused-within").unwrap_or_else(|| panic!("seed {seed}: held"));
            assert!(v.at >= Time::from_secs(15) && v.why.contains("accepted token"), "seed {seed}: {v:?}");
            assert!(count(r.as_ref(), "accepted_revoked") > 100, "seed {seed}");
        }
    }

    #[test]
    fn try_a_lookup_per_request_refuses_revoked_tokens_at_a_round_trip_each_and_fails_closed() {
        for seed in 1..=3 {
            let r = run(&recipe("blacklist-per-request", seed));
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            // Every request not expired asks the store; each waits a round trip of two 1–4 ms links.
            let asked = count(r.as_ref(), "requests") - count(r.as_ref(), "refused_expired");
            // (A lookup sent to the store while it is down is lost and counted as unavailable.)
            let answered = count(r.as_ref(), "store_lookups") + count(r.as_ref(), "refused_unavailable");
            assert!((answered - asked).abs() <= 5, "seed {seed}: {answered} lookups, {asked} requests");
            assert!(r.metrics().histogram("verify_us").expect("observed").quantile(0.5) >= 2_000, "seed {seed}");
            assert!(count(r.as_ref(), "refused_unavailable") > 100, "seed {seed}: the outage refuses everyone");
            let open = run(&recipe("blacklist-per-request", seed).with_param("fail_open", 1));
            assert!(broken(open.as_ref(), "revoked-refused-within").is_some(), "seed {seed}: fail open held");
            assert_eq!(count(open.as_ref(), "refused_unavailable"), 0, "seed {seed}");
        }
    }

    #[test]
    fn try_short_ttls_bound_revocation_but_miss_a_stolen_refresh_token_that_rotation_catches() {
        for seed in 1..=5 {
            let plain = run(&recipe("short-ttl-refresh", seed));
            assert!(broken(plain.as_ref(), "revoked-refused-within").is_none(), "seed {seed}");
            let v = broken(plain.as_ref(), "stolen-refresh-detected").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(v.why.contains("the thief got a new token"), "{v:?}");
            let rotated = run(&recipe("refresh-rotation", seed));
            assert!(rotated.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(count(rotated.as_ref(), "reuse_detected") >= 1, "seed {seed}");
        }
    }

    #[test]
    fn try_a_pushed_filter_looks_up_only_its_positives_and_a_cut_off_instance_refuses_until_caught_up() {
        for seed in 1..=3 {
            let r = run(&recipe("pushed-filter", seed));
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            // Revoked tokens' copies are looked up (and refused); valid tokens only on a false positive.
            let c = |name| count(r.as_ref(), name) as f64;
            let share = (c("store_lookups") - c("refused_revoked")) / (c("accepted") - c("accepted_revoked"));
            assert!(share < 0.01 && c("refused_revoked") > 1000.0, "seed {seed}: {share:.4} of valid ones looked up");
            assert!(count(r.as_ref(), "refused_stale") > 10, "seed {seed}: api 0 never knew itself stale");
        }
    }

    /// Reads (count, sum) of a histogram.
    fn sums(run: &dyn Run, name: &str) -> (f64, f64) {
        run.metrics().histogram(name).map_or((0.0, 0.0), |h| (h.count() as f64, h.mean() * h.count() as f64))
    }

    #[test]
    fn a_short_ttls_revocation_delay_and_refresh_load_follow_the_theory() {
        // After the first TTL the tokens' ages are spread evenly (first refreshes are spread), so a
        // logout finds the newest token with (1 − f/2)·τ = 6 s left on average; U(2 s, 10 s) has
        // σ = 2.3 s, so over ~1500 logouts the mean's standard error is 0.06 s: within 0.3 s is 5σ.
        // The auth service serves users/(f·τ) = 250 refreshes a second and a few logins: 3%.
        let (mut n, mut sum, mut ops) = (0.0, 0.0, 0.0);
        for seed in 1..=5 {
            let r = recipe("short-ttl-refresh", seed).with_param("revocations_per_s", 10);
            let (mut run, problems) = open(&SPEC, &r);
            assert!(problems.is_empty());
            run.keep_trace(false);
            run.run_until(Time::from_secs(10), u64::MAX);
            let ((n0, s0), o0) = (sums(run.as_ref(), "revocation_delay_us"), count(run.as_ref(), "auth_ops"));
            run.run_until(Time::from_secs(40), u64::MAX);
            let (n1, s1) = sums(run.as_ref(), "revocation_delay_us");
            (n, sum, ops) = (n + n1 - n0, sum + s1 - s0, ops + (count(run.as_ref(), "auth_ops") - o0) as f64);
        }
        let ttl = 10 * MICROS_PER_S;
        let mean = sum / n;
        assert!((mean - ttl_revocation_delay_mean_us(ttl, REFRESH_AT)).abs() < 300_000.0, "mean {mean} µs over {n}");
        let per_s = ops / (5.0 * 30.0);
        let theory = refresh_rate_per_s(2000, ttl, REFRESH_AT) + 10.0;
        assert!((per_s / theory - 1.0).abs() < 0.03, "auth ops {per_s:.1}/s, theory {theory:.1}/s");
    }

    #[test]
    fn the_filters_lookups_for_valid_tokens_follow_the_bloom_rate() {
        // Logouts for 20 s, then none: the filter holds n revoked tokens from 20 s on. Every valid
        // request that consults it passes as "maybe revoked" with (1 − e^(−3n/m))^3, and a
        // lookup finds it not revoked. Requests repeat ~4000 tokens, so the share's standard
        // error is about √(p(1 − p)/4000) ≈ 0.6%: within 3% is 5σ.
        for seed in 1..=3 {
            let r = recipe("pushed-filter", seed)
                .with_param("filter_bits", 512)
                .with_param("revocations_per_s", 5)
                .with_action(Time::from_secs(20), ActionKind::SetParam { id: "revocations_per_s".into(), value: 0 });
            let names = ["store_lookups", "refused_revoked", "accepted", "accepted_revoked", "revocations"];
            let (_, at) = run_sampled(&SPEC, &r, 40, &names);
            let d = |i: usize| (at[40][i] - at[25][i]) as f64;
            let n = at[20][4] as u64;
            assert_eq!(at[40][4] as u64, n, "no revocation after 20 s");
            let seen = (d(0) - d(1)) / (d(2) - d(3));
            let theory = false_positive_rate(512, 3, n);
            assert!((seen - theory).abs() < 0.03, "seed {seed}: n {n}, seen {seen:.3}, theory {theory:.3}");
        }
    }
}
