//! Feature flags: app servers in several regions evaluate a flag for users who hit any server — by a coin per request or a sticky hash bucket — and hear of its changes by polling or over a stream; a kill switch must reach every region within 500 ms.

use crate::parts::arrivals::OpenLoop;
use crate::parts::flags::{
    send_all, Answer, Answers, Carrier, Eval, Flag, FlagService, Held, Replica, Tick, Turn, Wire,
};
use crate::parts::ring::mix;
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "feature-flags",
        title: "Feature flags: sticky rollouts and kill switches",
        category: "Deployment & rollout",
        seeds: &["S3#46", "S3#92", "S4#02", "S1#40", "S2#12"],
        summary: "4 regions of 8 app servers; 2,000 users each send a request every 2 s to any server of their region. \
            The flag is at 50%; at 20 s the kill switch is turned, at 30 s a region's streams drop (they reconnect), \
            at 45 s the flag is back at 50%. A coin per request flips users between old and new \
            within a second (`random-*` break `no-flip-flop`); polling every 15 s carries the kill switch in up to 15 s \
            (`*-polling` break `propagation-p99`); sticky buckets over a stream hold both.",
        note: Note {
            what_can_go_wrong: "At a 50% rollout a coin per request gives a user with k requests both features with \
                chance 1 − 0.5^k − 0.5^k, three in four by the third (S3#46), and no sticky session hides it when users \
                hit any server. A hash of (the flag's salt, the user) mod 100, on below the percentage, gives every \
                server the same answer, and raising the percentage only adds users. A server polling every I hears of \
                a change after U(0, I) plus the way back: p99 ≈ 0.99·I, so a kill switch leaves the feature on for up \
                to 15 s here; a stream pushes it in one trip. Model: a request goes to a random server of its user's \
                region and is judged by that server's copy of the flag (after a restart, the default — off — until it \
                has one); links take 0.2–1 ms in a region and, from the flag service in us-east, half the AWS round \
                trip ±10% (1–110 ms); polls run at random phases; a stream carries a heartbeat with the version each \
                second, and a server reconnects (full jitter from 100 ms, doubling to 5 s) when its stream is closed, \
                silent for 3 s, or two heartbeats show a version it missed. Servers keep their last flag while the \
                service is unreachable. A flip-flop: two answers in a row to a user, under one version and rule, that \
                differ.",
            what_you_sacrifice: "Bucketing fixes who is in: the same users meet every early version (a new salt picks \
                others), and two flags' groups are independent only if their salts differ. Streaming holds a \
                connection per server for good — every instance of S3#92's 500 services — with heartbeats and \
                reconnect storms when the stream tier restarts. Polling holds none but costs n/I requests a second, \
                and meets 500 ms only below ~0.4 s (~80 polls a second here, for a flag changed a few times a day).",
            at_10x: "Ten times the servers: 320 streams, 320 pushes a change — one service copes; a thousand services \
                need a relay per region holding one upstream stream. Ten times the users change nothing for buckets; \
                ten times the flags each need their own salt, or the same 10% of users get every rollout first.",
            resembles: "LaunchDarkly (streams over server-sent events by default, polling optional; buckets by a SHA-1 \
                of flag key, salt and user; the Relay Proxy as the regional relay), Unleash (polls every 15 s by \
                default; gradual rollout by a MurmurHash of group and user id mod 100), Flagsmith, Split.",
            try_this: &[
                "Play `random-streaming`: within a second `no-flip-flop` names a user given the new feature by one \
                 server and the old by another under the same version; by 10 s ~84% of users have flip-flopped \
                 (1 − 2e^(−2.5) + e^(−5) at 5 requests on average). `sticky-streaming` flips none.",
                "Play `sticky-polling`: the kill switch at 20 s reaches the last server ~15 s later, so \
                 `propagation-p99` fails and the answers with the new feature fade out instead of stopping; \
                 `sticky-streaming` takes it to every region in under 0.1 s.",
                "Set the poll interval to 300 ms under `sticky-polling`: `propagation-p99` holds (0.3 s plus the way \
                 back), but the flag service answers ~107 polls a second; streaming answers none, with 32 streams open.",
            ],
        },
    },
    params: &[
        ParamSpec::live("rollout_pct", "Rollout", "%", 0..=100, 50, "Users with the new feature; moving it publishes a version."),
        ParamSpec::live("poll_ms", "Poll interval", "ms", 100..=300_000, 15_000, "Unleash's default: 15 s.").step(100),
        ParamSpec::live("user_rpm", "Requests per user", "req/min", 1..=600, 30, "Poisson, each to any server of the region."),
        ParamSpec::live("reconnect_ms", "Reconnect backoff", "ms", 10..=10_000, 100, "A lost stream's first wait, doubling to 5 s.")
            .step(10),
        ParamSpec::setup("regions", "Regions", "", 1..=8, 4, "us-east (the flag service's), eu-west, us-west, ap-northeast, …"),
        ParamSpec::setup("servers", "Servers per region", "", 1..=100, 8, "Each with its own copy of the flag."),
        ParamSpec::setup("users", "Users", "", 10..=100_000, 2000, "Spread evenly over the regions.").step(10),
    ],
    strategies: &[
        StrategySpec::naive("random-polling", "Coin per request, polled", "A coin per request with the rollout's chance; \
            servers poll the flag service."),
        StrategySpec::naive("sticky-polling", "Sticky buckets, polled", "On if the user's bucket, a hash of (salt, user) \
            mod 100, is below the percentage; servers poll."),
        StrategySpec::naive("random-streaming", "Coin per request, streamed", "A coin per request; each change pushed \
            over a stream per server."),
        StrategySpec::fixed("sticky-streaming", "Sticky buckets, streamed", "Hash buckets, and each change pushed over \
            a stream per server, reconnected when it drops."),
    ],
    faults: &[
        FaultSpec::global("kill-switch", "Kill switch", "Off for everyone (1), or back at the rollout (0).").value("on", 0..=1, 1),
        FaultSpec::global("stream-drop", "A region's streams drop", "The service closes one region's streams (0 us-east, \
            1 eu-west, 2 us-west, 3 ap-northeast, …; its stream tier restarts); they reconnect.").value("region", 0..=7, 1),
        FaultSpec::global("flag-service-down", "Flag service down", "Polls unanswered, streams refused for this long; \
            servers keep their last flag.").value("s", 1..=120, 10),
    ],
    checks: &[
        CheckSpec::new("no-flip-flop", "No user flip-flops", "A user's answers in a row under one version agree."),
        CheckSpec::new("propagation-p99", "Changes reach the servers in 500 ms (p99)", "Every change, the kill switch \
            too, reaches 99% of the servers of all regions (nearest rank: of the default 32, all) within 500 ms of its \
            publication (S4#02)."),
    ],
    metrics: &[
        MetricSpec::new("flip_users", "Users who flip-flopped", "users", Measure::Count("flip_users")),
        MetricSpec::new("propagation_p99", "Propagation p99, latest change", "ms", Measure::Gauge("propagation_p99_ms")),
        MetricSpec::new("polls", "Flag-service load: polls", "polls/s", Measure::Rate("polls")),
        MetricSpec::new("streams", "Flag-service load: open streams (a heartbeat a second each)", "streams", Measure::Gauge("streams")),
        MetricSpec::new("behind", "Servers behind the latest change", "servers", Measure::Gauge("servers_behind")),
        MetricSpec::new("new_pct", "Answers with the new feature", "%", Measure::Percent { num: "new", rest: "old" }),
        MetricSpec::new("went_back", "Answers older than the user's last", "answers", Measure::Count("went_back")),
    ],
    layout: Layout::Tiers,
    default_until: 60 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { RandomPolling, StickyPolling, RandomStreaming, StickyStreaming });

/// The strategy in force: how servers evaluate the flag, and whether they stream (else poll).
fn strategy(ctx: &Ctx<Ff>) -> (Eval, bool) {
    use Strategy::*;
    let s = Strategy::from_id(ctx.strategy());
    let eval = if matches!(s, StickyPolling | StickyStreaming) { Eval::Sticky } else { Eval::Random };
    (eval, matches!(s, RandomStreaming | StickyStreaming))
}

const FLAGS: NodeId = 0;
/// The promise of S4#02: a change reaches the servers within this (p99).
const BOUND_US: Micros = 500 * MICROS_PER_MS;
/// Each region, and its one-way latency from the flag service's (us-east) in ms: half AWS's round trip.
#[rustfmt::skip]
const REGIONS: [(&str, Micros); 8] = [("us-east", 1), ("eu-west", 36), ("us-west", 34), ("ap-northeast", 73),
    ("sa-east", 58), ("eu-central", 45), ("ap-south", 93), ("ap-southeast", 108)];

#[derive(Clone, Debug)]
pub enum Msg {
    /// A user's n-th request.
    Request(u32, u32),
    Answer(u32, Answer),
    Flags(Wire),
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Request(..) => "request",
            Msg::Answer(..) => "answer",
            Msg::Flags(w) => w.label(),
        }
    }
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Flags(Tick),
}

#[derive(Clone, Debug, Holds)]
pub enum Ff {
    Service(FlagService),
    Users(Users),
    Server(Server),
}

impl Carrier for Ff {
    fn wire(w: Wire) -> Msg {
        Msg::Flags(w)
    }
    fn tick(t: Tick) -> Timer {
        Timer::Flags(t)
    }
}

/// A region's users: each one's requests and latest answer, judged for flip-flops.
#[derive(Clone, Debug)]
pub struct Users {
    region: u32,
    regions: u32,
    first_server: NodeId,
    servers: u32,
    arrivals: OpenLoop,
    answers: Answers,
    flip: Breach,
}

/// An app server with its copy of the flag, and the answers it gave (new of all).
#[derive(Clone, Debug)]
pub struct Server {
    region: u32,
    index: u32,
    salt: u64,
    replica: Replica,
    answered: (u64, u64),
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ff> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1000 }));
    let (regions, per, users) = (setup.param("regions") as u32, setup.param("servers") as u32, setup.param("users"));
    let mut service = FlagService::default();
    let v1 = Held::new(service.publish(setup.param("rollout_pct") as u8, false, Time::ZERO).0, Time::ZERO);
    assert_eq!(sim.add_node(Ff::Service(service)), FLAGS);
    // The flag's salt: random per run, as a flag service draws one per flag.
    let salt = mix(setup.seed() ^ 0xf1a6_5a17);
    for region in 0..regions {
        let local = (users as u32).saturating_sub(region).div_ceil(regions);
        sim.add_node(Ff::Users(Users::new(region, regions, local, per)));
        let l = REGIONS[region as usize].1 * MICROS_PER_MS;
        let link = Link::with_latency(Latency::Uniform { lo: l * 9 / 10, hi: l * 11 / 10 });
        for index in 0..per {
            let replica = Replica::new(v1, FLAGS);
            let id = sim.add_node(Ff::Server(Server { region, index, salt, replica, answered: (0, 0) }));
            sim.net().set_link(FLAGS, id, link.clone());
        }
    }
    // The plan: the kill switch, one region's streams dropped, the flag back.
    sim.schedule(Time::from_secs(20), Fault::custom("kill-switch", 1));
    sim.schedule(Time::from_secs(30), Fault::custom("stream-drop", 1));
    sim.schedule(Time::from_secs(45), Fault::custom("kill-switch", 0));
    sim.check("no-flip-flop", |w| w.all::<Users>().try_for_each(|(_, u)| u.flip.now(w.now)));
    sim.check("propagation-p99", |w| {
        let late = w.node::<FlagService>(FLAGS).history().late(up_servers(w), w.now, BOUND_US);
        late.map_or(Ok(()), |l| Err(l.why(|s| (s.name(), s.replica.held.flag))))
    });
    let latest = |w: &World<Ff>| w.node::<FlagService>(FLAGS).history().latest_p99(up_servers(w).map(|s| s.1), w.now);
    sim.probe("propagation_p99_ms", move |w| latest(w).0.map_or(0, |d| (d / MICROS_PER_MS) as i64));
    sim.probe("servers_behind", move |w| latest(w).1 as i64);
    sim.probe("streams", |w| w.node::<FlagService>(FLAGS).streams() as i64);
    Box::new(sim)
}

/// The servers up (a crashed one serves nobody, so it is not behind), with their copies.
fn up_servers<'a>(w: &'a World<Ff>) -> impl Iterator<Item = (&'a Server, Held)> {
    w.all::<Server>().filter(|(id, _)| w.is_up(*id)).map(|(_, s)| (s, s.replica.held))
}

impl Node for Ff {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ff::Service(s) => {
                s.start(ctx);
                // A rollout moved while it was down is in its database: published now.
                let (latest, pct) = (s.history().latest(), ctx.param("rollout_pct").clamp(0, 100) as u8);
                if latest.pct != pct {
                    publish(Some(s.publish(pct, latest.killed, ctx.truth())), ctx);
                }
            }
            Ff::Users(u) => u.arrivals.start_at(u.rate_per_s(ctx), ctx, Timer::Arrive),
            Ff::Server(s) => s.replica.start(strategy(ctx).1, ctx.param_ms("poll_ms"), ctx),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ff::Service(s), Msg::Flags(w)) => s.hear(from, w, ctx),
            (Ff::Server(s), Msg::Flags(w)) => s.replica.hear(w, ctx.param_ms("reconnect_ms"), ctx),
            (Ff::Users(u), Msg::Answer(user, a)) => u.answered(user, a, ctx),
            (Ff::Server(s), Msg::Request(user, n)) => s.serve(from, user, n, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let (streams, poll_us, base_us) = (strategy(ctx).1, ctx.param_ms("poll_ms"), ctx.param_ms("reconnect_ms"));
        match (self, timer) {
            (Ff::Service(s), Timer::Flags(t)) => s.tick(t, ctx),
            (Ff::Server(s), Timer::Flags(t)) => s.replica.tick(t, streams, poll_us, base_us, ctx),
            (Ff::Users(u), Timer::Arrive) => u.arrive(ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ff::Service(s) => s.crash(),
            // The flag lives in memory: after a restart the server fetches it again.
            Ff::Server(s) => s.replica.crash(ctx.truth()),
            Ff::Users(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        let (per, pct, truth) =
            (ctx.param("servers") as NodeId + 1, ctx.param("rollout_pct").clamp(0, 100), ctx.truth());
        match (self, c) {
            (Ff::Service(s), Control::Param { id: "rollout_pct", .. }) => {
                publish(Some(s.publish(pct as u8, s.history().latest().killed, truth)), ctx)
            }
            (Ff::Service(s), Control::Custom { id: "kill-switch", value }) => {
                publish(s.kill(value == 1, pct as u8, truth), ctx)
            }
            (Ff::Service(s), Control::Custom { id: "stream-drop", value }) => {
                send_all(s.close_where(|id| id > FLAGS && (id - 1) / per == value as NodeId), ctx)
            }
            (Ff::Service(s), Control::Custom { id: "flag-service-down", value }) => {
                ctx.note(format!("the flag service's delivery is down for {value} s"));
                send_all(s.down_until(ctx.now().plus(value.max(0) as Micros * MICROS_PER_S)), ctx);
            }
            (Ff::Users(u), Control::Param { id: "user_rpm", .. }) => {
                u.arrivals.set_rate_per_s(u.rate_per_s(ctx), ctx, Timer::Arrive)
            }
            (Ff::Server(s), Control::Strategy(_)) => s.replica.switch(strategy(ctx).1, ctx),
            (Ff::Server(s), Control::Param { id: "poll_ms", value }) => s.replica.repoll(ms(value), ctx),
            // The other parameters are read where used, setup ones rebuild the run; faults act at the service.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ff::Service(s) => {
                let latest = s.history().latest();
                NodeView::new(NodeKind::Store, 0, "flag service (us-east)")
                    .badge(latest.describe(), latest.tone())
                    .badge(format!("{} streams · {} polls", s.streams(), s.polls()), Tone::Neutral)
            }
            Ff::Users(u) => u.view(),
            Ff::Server(s) => {
                let ((text, tone), flag) = (s.replica.badge(), s.replica.held.flag);
                NodeView::new(NodeKind::Service, 1 + s.region as u8, s.name())
                    .badge(flag.describe(), flag.tone())
                    .badge(text, tone)
                    .gauge("answered new", s.answered.0 as i64, s.answered.1.max(1) as i64)
            }
        }
    }
}

/// A new version, if there is one: noted and pushed to every open stream.
fn publish(published: Option<(Flag, Vec<(NodeId, Wire)>)>, ctx: &mut Ctx<Ff>) {
    let Some((flag, pushes)) = published else { return };
    ctx.note(format!("{} published", flag.describe()));
    send_all(pushes, ctx);
}

impl Users {
    /// Its arrivals start at the rate in force (`on_start`).
    fn new(region: u32, regions: u32, local: u32, servers: u32) -> Users {
        let (first_server, answers, arrivals) =
            (1 + region * (servers + 1) + 1, Answers::new(local as usize), OpenLoop::poisson(0.0));
        Users { region, regions, first_server, servers, arrivals, answers, flip: Breach::default() }
    }

    fn rate_per_s(&self, ctx: &Ctx<Ff>) -> f64 {
        self.answers.users() as f64 * ctx.param("user_rpm") as f64 / 60.0
    }

    /// A request of one of the region's users, chosen at random, to a random server of the region.
    fn arrive(&mut self, ctx: &mut Ctx<Ff>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let local = ctx.rng().below(self.answers.users() as u64) as usize;
        let server = self.first_server + ctx.rng().below(self.servers as u64) as NodeId;
        ctx.send(server, Msg::Request(local as u32 * self.regions + self.region, self.answers.request(local)));
    }

    fn answered(&mut self, user: u32, a: Answer, ctx: &mut Ctx<Ff>) {
        ctx.count(if a.new { "new" } else { "old" }, 1);
        match self.answers.answered((user / self.regions) as usize, a) {
            Turn::Fine => {}
            Turn::Back { .. } => ctx.count("went_back", 1),
            Turn::Flip { before: b, first } => {
                ctx.count("flip_users", first as i64);
                let said = |x: &Answer| {
                    let (what, at) = (["the old feature", "the new feature"][x.new as usize], x.at.as_secs_f64());
                    format!("{what} (request {} at {}, {at:.3} s)", x.request, self.server_name(x.server))
                };
                let why = format!("user {user} got {}, then {} under v{}", said(&b), said(&a), a.version);
                self.flip.record(why, ctx.truth());
            }
        }
    }

    fn server_name(&self, id: NodeId) -> String {
        format!("{} {}", REGIONS[self.region as usize].0, id - self.first_server + 1)
    }

    /// The users' flip-flops, and the two servers of the latest marked with what each answered.
    fn view(&self) -> NodeView {
        let ((on, seen), flipped) = (self.answers.on_of_seen(), self.answers.flipped_users());
        let label = format!("{} users", REGIONS[self.region as usize].0);
        let v = NodeView::new(NodeKind::Client, 1 + self.region as u8, label)
            .badge(format!("{} users", self.answers.users()), Tone::Neutral)
            .badge(format!("{flipped} flip-flopped"), [Tone::Good, Tone::Bad][(flipped > 0) as usize])
            .gauge("last saw new", on as i64, seen.max(1) as i64);
        let Some((local, b, a)) = self.answers.latest() else { return v };
        let user = local as u32 * self.regions + self.region;
        let (new, old) = if a.new { (a.server, b.server) } else { (b.server, a.server) };
        v.mark(new, format!("user {user}: new"), Tone::Good).mark(old, format!("user {user}: old"), Tone::Bad)
    }
}

impl Server {
    fn name(&self) -> String {
        format!("{} {}", REGIONS[self.region as usize].0, self.index + 1)
    }

    fn serve(&mut self, from: NodeId, user: u32, n: u32, ctx: &mut Ctx<Ff>) {
        let (eval, flag) = (strategy(ctx).0, self.replica.held.flag);
        let new = eval.on(&flag, self.salt, user, ctx.rng());
        self.answered = (self.answered.0 + new as u64, self.answered.1 + 1);
        let (server, at) = (ctx.me(), ctx.truth());
        ctx.send(from, Msg::Answer(user, Answer { version: flag.version, eval, new, request: n, server, at }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::flags::{flip_share_poisson, polling_delay_quantile_us};
    use crate::parts::testing::{between, failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("feature-flags", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn holds(r: &dyn Run) -> bool {
        r.checks().iter().all(|c| c.violation.is_none())
    }

    fn delays(r: &dyn Run) -> Histogram {
        r.metrics().histogram("propagation_us").cloned().unwrap_or_default()
    }

    #[test]
    fn try_a_coin_per_request_flips_most_users_and_buckets_none() {
        // By 10 s (no change before 20 s) each user's answers are Poisson with mean λ = 0.5/s · 10 s
        // = 5: the flipped share is 1 − e^(−λ(1−p)) − e^(−λp) + e^(−λ) (84.3% at 50%, 38.9% at 10%),
        // over 2,000 users within 4 binomial standard deviations (≤ 1.1%).
        for (pct, seed) in [(50, 1), (50, 2), (10, 3)] {
            let r = recipe("random-streaming", seed).with_param("rollout_pct", pct);
            let (run, at) = run_sampled(&SPEC, &r, 10, &["flip_users"]);
            let (at_s, why) = failed_at(run.as_ref(), "no-flip-flop").expect("a flip-flop");
            assert!(at_s < 1.0 && why.contains("under v1"), "{at_s} {why}");
            let (share, p) = (at[10][0] as f64 / 2000.0, flip_share_poisson(pct as f64 / 100.0, 5.0));
            assert!((share - p).abs() < 4.0 * (p * (1.0 - p) / 2000.0).sqrt(), "{pct}%: {share} vs {p}");
        }
        for seed in 1..=3 {
            let r = run(&recipe("sticky-streaming", seed), 60);
            assert!(holds(r.as_ref()) && r.metrics().counter("flip_users") == 0, "seed {seed}");
        }
    }

    #[test]
    fn try_polling_carries_the_kill_switch_late_and_streaming_at_once() {
        for seed in 1..=3 {
            let (r, at) = run_sampled(&SPEC, &recipe("sticky-polling", seed), 35, &["new"]);
            let (at_s, why) = failed_at(r.as_ref(), "propagation-p99").expect("late");
            assert!((20.5..20.6).contains(&at_s) && why.contains("v2 (killed)"), "{at_s} {why}");
            assert!(between(&at, 0, 21, 30) > 0.0, "the new feature fades out after the kill");
            let (r, at) = run_sampled(&SPEC, &recipe("sticky-streaming", seed), 60, &["new"]);
            assert!(holds(r.as_ref()) && between(&at, 0, 21, 45) == 0.0, "seed {seed}: stopped at once");
            // One trip to the farthest of the 4 regions: ap-northeast, 73 ms ± 10%.
            assert!(delays(r.as_ref()).max() < 81_000, "seed {seed}: {}", delays(r.as_ref()).max());
        }
    }

    #[test]
    fn try_fast_polling_holds_the_bound_at_a_cost_in_polls() {
        // 32 servers every 0.3 s: 106.7 polls a second; the farthest answer adds ≤ 80 ms.
        for seed in 1..=3 {
            let r = recipe("sticky-polling", seed).with_param("poll_ms", 300);
            let (polled, at) = run_sampled(&SPEC, &r, 60, &["polls"]);
            assert!(holds(polled.as_ref()), "seed {seed}");
            let per_s = between(&at, 0, 1, 29) / 28.0;
            assert!((per_s - 32.0 / 0.3).abs() < 2.0, "seed {seed}: {per_s} polls/s");
            let streamed = run(&recipe("sticky-streaming", seed), 29);
            assert_eq!((streamed.metrics().counter("polls"), streamed.metrics().gauge("streams")), (0, 32));
        }
    }

    #[test]
    fn a_poll_interval_shortened_mid_run_acts_at_once() {
        // 15 s polls until 18 s, then 300 ms: by the kill at 20 s every server polls at the new
        // interval (waiting out the old one, some would still be up to 13 s from their next poll).
        for seed in 1..=3 {
            let faster = ActionKind::SetParam { id: "poll_ms".into(), value: 300 };
            let r = recipe("sticky-polling", seed).with_action(Time::from_secs(18), faster);
            let r = run(&r, 29);
            assert!(holds(r.as_ref()), "seed {seed}: the kill reached every server within 500 ms");
        }
    }

    #[test]
    fn polling_delays_are_uniform_over_the_interval_plus_the_way_back() {
        // 100 servers in us-east (1 ms away), polling every 10 s; the kill switch at 20 s, 5 seeds:
        // 500 independent delays U(0, 10 s) + 1 ms. Mean 5.001 s (σ of a mean of 500: 0.13 s; 3σ),
        // p99 9.901 s (σ of the order statistic: 10 s·√(.99·.01/500) = 0.045 s; 3σ plus the
        // histogram's 0.8%).
        let mut h = Histogram::new();
        for seed in 1..=5 {
            let r = recipe("sticky-polling", seed).with_param("regions", 1).with_param("servers", 100);
            let r = run(&r.with_param("users", 100).with_param("poll_ms", 10_000), 45);
            h.merge(&delays(r.as_ref()));
        }
        assert_eq!(h.count(), 500);
        let [mean, p99] = [0.5, 0.99].map(|q| polling_delay_quantile_us(q, 10_000_000, 1_000));
        assert!((h.mean() - mean).abs() < 390_000.0, "mean {} vs {mean}", h.mean());
        assert!((h.quantile(0.99) as f64 - p99).abs() < 220_000.0, "p99 {} vs {p99}", h.quantile(0.99));
    }

    #[test]
    fn a_stream_takes_each_change_one_trip_to_each_region() {
        // 8 regions of 8: the p99 of 128 delays (two changes) is in ap-southeast's 108 ms ± 10%, the
        // mean is the regions' mean one-way latency (56 ms) within 5%.
        for seed in 1..=3 {
            let r = run(&recipe("sticky-streaming", seed).with_param("regions", 8), 60);
            let h = delays(r.as_ref());
            assert!(holds(r.as_ref()) && h.count() == 128, "seed {seed}: {}", h.count());
            assert!((97_000..=120_000).contains(&h.quantile(0.99)), "seed {seed}: p99 {}", h.quantile(0.99));
            assert!((h.mean() / 56_000.0 - 1.0).abs() < 0.05, "seed {seed}: mean {}", h.mean());
        }
    }

    #[test]
    fn sticky_buckets_expose_the_rollouts_share() {
        // 10,000 users at 30%, ~5 answers each by 10 s: the share of answers with the new feature is
        // the exposed users' (binomial over users), σ = √(.3·.7·(1 + 1/5)/10,000) = 0.5%; 4σ.
        for seed in 1..=3 {
            let r = recipe("sticky-streaming", seed).with_param("users", 10_000).with_param("rollout_pct", 30);
            let r = run(&r, 10);
            let (new, old) = (r.metrics().counter("new") as f64, r.metrics().counter("old") as f64);
            assert!((new / (new + old) - 0.3).abs() < 0.02, "seed {seed}: {}", new / (new + old));
        }
    }

    #[test]
    fn a_dropped_stream_reconnects_in_time_and_an_outage_keeps_the_last_flag() {
        let fault = |id: &str, v| ActionKind::Fault(Fault::custom(id, v));
        for seed in 1..=10 {
            // ap-northeast's streams drop just before a change (the flag back on): closed, reconnected
            // after ≤ 100 ms, the whole state in one more round trip: 3 × 80 + 100 ms at worst.
            let r = recipe("sticky-streaming", seed).with_action(Time::from_secs(25), fault("stream-drop", 3));
            let r = r.with_action(Time(25_000_001), fault("kill-switch", 0));
            assert!(holds(run(&r, 60).as_ref()), "seed {seed}");
        }
        // The flag back on at 25 s; through an outage (31–41 s) every server keeps it, none falls back
        // to the default: the new feature is still served. A kill switch at 35 s reaches nobody until
        // the streams come back after 41 s.
        let r = recipe("sticky-streaming", 1).with_action(Time::from_secs(25), fault("kill-switch", 0));
        let r = r.with_action(Time::from_secs(31), fault("flag-service-down", 10));
        let (r, at) = run_sampled(&SPEC, &r.with_action(Time::from_secs(35), fault("kill-switch", 1)), 41, &["new"]);
        let (at_s, why) = failed_at(r.as_ref(), "propagation-p99").expect("late");
        assert!((35.5..35.6).contains(&at_s) && why.contains("v4 (killed)"), "{at_s} {why}");
        assert!(between(&at, 0, 32, 35) > 1000.0 && between(&at, 0, 36, 40) > 1000.0, "kept, and not killed");
    }
}
