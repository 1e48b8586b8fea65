//! Distributed rate limiter: users (some abusive) → load balancer → N app instances →
//! shared counter store, with five ways to enforce "at most `limit` requests per user per
//! window" across instances — from local counters to atomic increments and quota leases.

use faultline_core::*;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "distributed-rate-limiter",
        title: "Distributed rate limiter",
        category: "Traffic control",
        seeds: &["S1#6", "S1-P#1", "S3#26", "S3#69", "S3#74"],
        summary: "Four instances share one per-user limit. Local counters admit four times too much, a \
                  read-then-write counter races, an atomic increment or quota leases hold the line — at a price in \
                  store calls and latency.",
        note: Note {
            what_can_go_wrong: "Counting per instance multiplies the limit by the instance count. Reading the \
                counter and writing it back is a race: two instances read 29, both write 30, both admit. Instances \
                that cut windows with their own clocks disagree about when a window starts, and a store outage \
                forces a choice between admitting everyone (fail-open) and refusing everyone (fail-closed).",
            what_you_sacrifice: "An atomic increment costs one store round trip on every request and makes the \
                store a hot spot. Leases cut store traffic by the batch size but waste unused tokens (false \
                rejections) and admit nothing while a lease is in flight. Gossip is cheap and local but only \
                approximately right.",
            at_10x: "Ten times the instances: local counters overshoot tenfold, leases fragment the limit into \
                tiny batches, and a single counter key for a heavy user becomes the store's hottest key — shard \
                it or move to a token bucket held per region.",
            resembles: "Redis INCR + EXPIRE (or a Lua script) behind an API gateway, Envoy's global rate limit \
                service, Stripe's and GitHub's per-user limits, Cloudflare's approximate sliding windows, \
                Google's Doorman quota leases.",
            try_this: &[
                "Play `local-only`: the two abusive users get about four times their limit and `limit-held` fails \
                 in the first second.",
                "Switch to `get-then-set`: closer, but concurrent requests race and the limit still breaks.",
                "Switch to `atomic-incr`, then `lease`, then `gossip`: the check holds; compare store operations per \
                 second. Now raise instance 1's clock skew to 250 ms: gossip's windows drift apart and it breaks.",
                "With `atomic-incr`, set fail-open to 1 and replay: during the store cut-off the abusive users \
                 sail through.",
            ],
        },
    },
    params: &[
        ParamSpec {
            id: "users",
            label: "Users",
            unit: "",
            min: 1,
            max: 200,
            step: 1,
            default: 8,
            live: false,
            help: "Users sending requests; the first ones are abusive.",
        },
        ParamSpec {
            id: "abusive",
            label: "Abusive users",
            unit: "",
            min: 0,
            max: 200,
            step: 1,
            default: 2,
            live: false,
            help: "How many of the users hammer the service.",
        },
        ParamSpec {
            id: "normal_rps",
            label: "Normal user rate",
            unit: "req/s",
            min: 1,
            max: 1000,
            step: 1,
            default: 5,
            live: false,
            help: "Poisson request rate of a well-behaved user.",
        },
        ParamSpec {
            id: "abusive_rps",
            label: "Abusive user rate",
            unit: "req/s",
            min: 1,
            max: 5000,
            step: 1,
            default: 80,
            live: false,
            help: "Poisson request rate of an abusive user.",
        },
        ParamSpec {
            id: "limit",
            label: "Limit per window",
            unit: "req",
            min: 1,
            max: 100_000,
            step: 1,
            default: 30,
            live: true,
            help: "Requests one user may make per window.",
        },
        ParamSpec {
            id: "window_ms",
            label: "Window",
            unit: "ms",
            min: 100,
            max: 60_000,
            step: 100,
            default: 1000,
            live: false,
            help: "Fixed windows, aligned to the store's clock.",
        },
        ParamSpec {
            id: "instances",
            label: "Instances",
            unit: "",
            min: 1,
            max: 32,
            step: 1,
            default: 4,
            live: false,
            help: "App instances behind the round-robin balancer.",
        },
        ParamSpec {
            id: "store_ms",
            label: "Store latency",
            unit: "ms",
            min: 0,
            max: 500,
            step: 1,
            default: 1,
            live: false,
            help: "One-way network latency between an instance and the store (plus up to 100% jitter).",
        },
        ParamSpec {
            id: "timeout_ms",
            label: "Store timeout",
            unit: "ms",
            min: 5,
            max: 5000,
            step: 5,
            default: 100,
            live: true,
            help: "How long an instance waits for the store before deciding without it.",
        },
        ParamSpec {
            id: "fail_open",
            label: "Fail open",
            unit: "0/1",
            min: 0,
            max: 1,
            step: 1,
            default: 0,
            live: true,
            help: "Without an answer from the store: 1 admits (availability), 0 refuses (correctness).",
        },
        ParamSpec {
            id: "lease_batch",
            label: "Lease batch",
            unit: "tokens",
            min: 1,
            max: 10_000,
            step: 1,
            default: 5,
            live: true,
            help: "Tokens an instance leases from the store at a time.",
        },
        ParamSpec {
            id: "gossip_ms",
            label: "Gossip interval",
            unit: "ms",
            min: 10,
            max: 10_000,
            step: 10,
            default: 50,
            live: true,
            help: "How often instances share their counts (gossip strategy).",
        },
        ParamSpec {
            id: "tolerance_pct",
            label: "Gossip tolerance",
            unit: "%",
            min: 0,
            max: 100,
            step: 1,
            default: 20,
            live: true,
            help: "How far over the limit the approximate (gossip) strategy is allowed to go.",
        },
        ParamSpec {
            id: "skew_ms",
            label: "Clock skew of instance 1",
            unit: "ms",
            min: -5000,
            max: 5000,
            step: 10,
            default: 50,
            live: false,
            help: "Scheduled fault: instance 1's clock is this far ahead from the start.",
        },
    ],
    strategies: &[
        StrategySpec {
            id: "local-only",
            label: "Local counters only",
            naive: true,
            help: "Each instance counts on its own: the limit is multiplied by the instance count.",
        },
        StrategySpec {
            id: "get-then-set",
            label: "Central GET then SET",
            naive: true,
            help: "Read the shared counter, decide, write count+1: two round trips and a race.",
        },
        StrategySpec {
            id: "atomic-incr",
            label: "Central atomic INCR",
            naive: false,
            help: "One atomic increment-with-expiry at the store decides.",
        },
        StrategySpec {
            id: "gossip",
            label: "Gossiped approximate counts",
            naive: false,
            help: "Local decisions; counts shared every gossip interval; each instance spends 1/N of what is left. \
                   Approximate: the check allows the declared tolerance.",
        },
        StrategySpec {
            id: "lease",
            label: "Quota leasing",
            naive: false,
            help: "Instances lease batches of tokens from the store and spend them locally until the window ends.",
        },
    ],
    faults: &[FaultSpec {
        id: "store-slow",
        label: "Slow store",
        target: Target::Global,
        value_label: "extra ms",
        value_min: 0,
        value_max: 5000,
        value_default: 200,
        help: "The store takes this much longer to answer (0 restores it).",
    }],
    checks: &[CheckSpec {
        id: "limit-held",
        label: "Limit held per user per window",
        help: "No user gets more than `limit` requests admitted in any store window (plus the declared tolerance \
               for the approximate strategy).",
    }],
    metrics: &[
        MetricSpec {
            id: "overshoot",
            label: "Overshoot",
            unit: "%",
            measure: Measure::Percent { num: "excess", rest: "within" },
        },
        MetricSpec {
            id: "false_rejections",
            label: "False rejections",
            unit: "%",
            measure: Measure::Percent { num: "false_rejections", rest: "fair_answers" },
        },
        MetricSpec {
            id: "decision_p99",
            label: "Added latency p99",
            unit: "us",
            measure: Measure::Quantile("decision_us", 0.99),
        },
        MetricSpec { id: "store_ops", label: "Store operations", unit: "ops/s", measure: Measure::Rate("store_ops") },
        MetricSpec { id: "admitted", label: "Admitted", unit: "req/s", measure: Measure::Rate("admitted") },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

const LB: NodeId = 0;
const STORE: NodeId = 1;
const FIRST_INSTANCE: NodeId = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Local,
    GetSet,
    Atomic,
    Gossip,
    Lease,
}

impl Strategy {
    fn from_id(id: &str) -> Strategy {
        match id {
            "get-then-set" => Strategy::GetSet,
            "atomic-incr" => Strategy::Atomic,
            "gossip" => Strategy::Gossip,
            "lease" => Strategy::Lease,
            _ => Strategy::Local,
        }
    }
}

/// A request travelling user → balancer → instance; the instance answers the user directly.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    id: u64,
    user: u32,
    from: NodeId,
    sent: Time,
}

#[derive(Clone, Debug)]
pub enum Msg {
    Request(Req),
    Answer { admitted: bool, sent: Time },
    Get { req: u64, user: u32, window: u64 },
    Value { req: u64, count: u64 },
    Set { user: u32, window: u64, count: u64 },
    Incr { req: u64, user: u32 },
    Counted { req: u64, admitted: bool },
    LeaseAsk { user: u32, want: u64, ask: u64 },
    LeaseGrant { user: u32, tokens: u64, valid_for: Micros, ask: u64 },
    Gossip { window: u64, counts: Rc<[(u32, u64)]> },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::Answer { admitted: true, .. } => "200",
            Msg::Answer { admitted: false, .. } => "429",
            Msg::Get { .. } => "get",
            Msg::Value { .. } => "value",
            Msg::Set { .. } => "set",
            Msg::Incr { .. } => "incr",
            Msg::Counted { .. } => "counted",
            Msg::LeaseAsk { .. } => "lease?",
            Msg::LeaseGrant { .. } => "lease",
            Msg::Gossip { .. } => "gossip",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    Send,
    WindowEnd,
    StoreTimeout { req: u64 },
    LeaseTimeout { user: u32 },
    Gossip,
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Send => "send",
            Timer::WindowEnd => "window-end",
            Timer::StoreTimeout { .. } => "store-timeout",
            Timer::LeaseTimeout { .. } => "lease-timeout",
            Timer::Gossip => "gossip",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Rl {
    User(User),
    Balancer { next: u32, instances: u32 },
    Instance(Box<Instance>),
    Store(Box<Store>),
}

#[derive(Clone, Debug)]
pub struct User {
    user: u32,
    abusive: bool,
    rps: f64,
    limit: u64,
    window: Micros,
    next_id: u64,
    admitted_in_window: u64,
}

/// A request waiting for the store: (request, when the instance got it).
type Pending = (Req, Time);

#[derive(Clone, Debug, Default)]
pub struct Lease {
    tokens: u64,
    expires: Time,
    asking: bool,
    asked_at: Time,
    /// Numbers each ask, so a grant that arrives after its ask timed out is not taken as
    /// the answer to a newer ask (which would stretch the lease past the window).
    ask: u64,
    exhausted_until: Time,
    waiters: VecDeque<Pending>,
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u32,
    strategy: Strategy,
    instances: u32,
    limit: u64,
    window: Micros,
    timeout: Micros,
    fail_open: bool,
    batch: u64,
    gossip_every: Micros,
    /// Requests admitted, by (user, window).
    counts: Windowed,
    pending: BTreeMap<u64, (Pending, TimerId)>,
    leases: BTreeMap<u32, Lease>,
    /// Gossip: what this instance last told its peers, by (user, window), and what each peer
    /// last said, by (user, window) then peer index.
    told: Windowed,
    heard: Windowed<Vec<u64>>,
}

/// Values by (user, window), from which old windows are dropped. Users are numbered from
/// 0, so each window holds its values in a vector indexed by user, and only the windows are
/// searched: at scale (hundreds of users, a million requests a second) a map keyed by
/// (user, window) spent most of each request comparing keys.
#[derive(Clone, Debug)]
struct Windowed<V = u64> {
    /// (window, value by user), in window order. Old windows are dropped, so there are few:
    /// the live ones, plus any a skewed clock reported ahead of time.
    windows: Vec<(u64, Vec<Option<V>>)>,
    /// How many (user, window) values there are.
    len: usize,
}

impl Windowed {
    fn get(&self, key: &(u32, u64)) -> u64 {
        self.peek(key).copied().unwrap_or(0)
    }
}

impl<V: Default> Windowed<V> {
    fn new() -> Self {
        Windowed { windows: Vec::new(), len: 0 }
    }

    fn window(&self, window: u64) -> Option<&[Option<V>]> {
        let i = self.windows.binary_search_by_key(&window, |(w, _)| *w).ok()?;
        Some(&self.windows[i].1)
    }

    /// The value for (user, window), if there is one.
    fn peek(&self, &(user, window): &(u32, u64)) -> Option<&V> {
        self.window(window)?.get(user as usize)?.as_ref()
    }

    /// The value for (user, window), created empty.
    fn slot(&mut self, (user, window): (u32, u64)) -> &mut V {
        let i = match self.windows.binary_search_by_key(&window, |(w, _)| *w) {
            Ok(i) => i,
            Err(i) => {
                self.windows.insert(i, (window, Vec::new()));
                i
            }
        };
        let by_user = &mut self.windows[i].1;
        let u = user as usize;
        if by_user.len() <= u {
            by_user.resize_with(u + 1, || None);
        }
        if by_user[u].is_none() {
            self.len += 1;
        }
        by_user[u].get_or_insert_with(V::default)
    }

    /// The values of one window, by user (ascending).
    fn in_window(&self, window: u64) -> impl Iterator<Item = (u32, &V)> {
        let by_user = self.window(window).unwrap_or(&[]);
        by_user.iter().enumerate().filter_map(|(u, v)| Some((u as u32, v.as_ref()?)))
    }

    /// Drops every entry whose window is before `keep_from`.
    fn drop_before(&mut self, keep_from: u64) {
        let old = self.windows.partition_point(|(w, _)| *w < keep_from);
        if old > 0 {
            for (_, by_user) in self.windows.drain(..old) {
                self.len -= by_user.iter().filter(|v| v.is_some()).count();
            }
        }
    }

    fn clear(&mut self) {
        self.windows.clear();
        self.len = 0;
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    limit: u64,
    window: Micros,
    extra: Micros,
    counts: Windowed,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let store_ms = setup.param("store_ms") as u64 * MICROS_PER_MS;
    let mut sim: Sim<Rl> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 5_000, hi: 20_000 }));
    let instances = setup.param("instances") as u32;
    let (limit, window) = (setup.param("limit") as u64, setup.param("window_ms") as u64 * MICROS_PER_MS);
    assert_eq!(sim.add_node(Rl::Balancer { next: 0, instances }), LB);
    let store = Store { limit, window, extra: 0, counts: Windowed::new() };
    assert_eq!(sim.add_node(Rl::Store(Box::new(store))), STORE);
    for index in 0..instances {
        let id = sim.add_node(Rl::Instance(Box::new(Instance {
            index,
            strategy: Strategy::from_id(setup.strategy()),
            instances,
            limit,
            window,
            timeout: setup.param("timeout_ms") as u64 * MICROS_PER_MS,
            fail_open: setup.param("fail_open") == 1,
            batch: setup.param("lease_batch") as u64,
            gossip_every: setup.param("gossip_ms") as u64 * MICROS_PER_MS,
            counts: Windowed::new(),
            pending: BTreeMap::new(),
            leases: BTreeMap::new(),
            told: Windowed::new(),
            heard: Windowed::new(),
        })));
        let near = Latency::Uniform { lo: store_ms, hi: store_ms * 2 + 100 };
        sim.net().set_link(id, STORE, Link::with_latency(near.clone()));
        sim.net().set_link(id, LB, Link::with_latency(Latency::Uniform { lo: 100, hi: 500 }));
        for peer in FIRST_INSTANCE..id {
            sim.net().set_link(id, peer, Link::with_latency(near.clone()));
        }
    }
    let abusive = setup.param("abusive") as u32;
    for user in 0..setup.param("users") as u32 {
        let bad = user < abusive;
        let rps = setup.param(if bad { "abusive_rps" } else { "normal_rps" }) as f64;
        sim.add_node(Rl::User(User { user, abusive: bad, rps, limit, window, next_id: 0, admitted_in_window: 0 }));
    }
    // The fault plan: a skewed clock from the start, a slow store, then an instance cut off from it.
    if instances > 1 {
        let skew = setup.param("skew_ms") * MICROS_PER_MS as i64;
        sim.schedule(Time::ZERO, Fault::ClockSkew { node: FIRST_INSTANCE + 1, offset: skew });
    }
    let slow = |value| Fault::Custom { id: "store-slow".into(), node: None, value };
    sim.schedule(Time::from_secs(12), slow(300));
    sim.schedule(Time::from_secs(14), slow(0));
    sim.schedule(
        Time::from_secs(20),
        Fault::Partition { a: vec![FIRST_INSTANCE], b: Some(vec![STORE]), one_way: false },
    );
    sim.schedule(Time::from_secs(23), Fault::Heal);
    sim.check("limit-held", |w| {
        let Rl::Instance(i) = &w.nodes[FIRST_INSTANCE as usize] else { unreachable!() };
        let limit = w.param("limit");
        let allowed =
            if i.strategy == Strategy::Gossip { limit + limit * w.param("tolerance_pct") / 100 } else { limit };
        match w.tallied.iter().find(|(name, _, v)| *name == "admitted" && *v > allowed) {
            Some((_, key, v)) => Err(format!(
                "user {} got {v} requests admitted in window {} (limit {limit})",
                key >> 32,
                key & 0xffff_ffff
            )),
            None => Ok(()),
        }
    });
    Box::new(sim)
}

/// The god's-eye record of an admission: per user, per true store window.
fn tally_admit(ctx: &mut Ctx<Rl>, user: u32, window: Micros) {
    ctx.tally("admitted", ((user as u64) << 32) | (ctx.truth().micros() / window), 1);
    ctx.count("admitted", 1);
}

impl Node for Rl {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Rl::User(u) => {
                u.schedule(ctx);
                let w = u.window;
                ctx.set_timer(w - ctx.now().micros() % w, Timer::WindowEnd);
            }
            Rl::Instance(i) if i.strategy == Strategy::Gossip => {
                ctx.set_timer(i.gossip_every, Timer::Gossip);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Rl::Balancer { next, instances }, Msg::Request(req)) => {
                ctx.send(FIRST_INSTANCE + *next % *instances, Msg::Request(req));
                *next = next.wrapping_add(1);
            }
            (Rl::Instance(i), msg) => i.on_message(from, msg, ctx),
            (Rl::Store(s), msg) => s.on_message(from, msg, ctx),
            (Rl::User(u), Msg::Answer { admitted, sent }) => {
                ctx.observe("latency_us", ctx.now().since(sent));
                if admitted {
                    u.admitted_in_window += 1;
                    ctx.count("fair_answers", 1);
                } else if u.admitted_in_window < u.limit {
                    // An exact limiter would have let this one through.
                    ctx.count("false_rejections", 1);
                } else {
                    ctx.count("fair_answers", 1);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Rl::User(u), Timer::Send) => {
                let req =
                    Req { id: ((u.user as u64) << 40) | u.next_id, user: u.user, from: ctx.me(), sent: ctx.now() };
                u.next_id += 1;
                ctx.send(LB, Msg::Request(req));
                u.schedule(ctx);
            }
            (Rl::User(u), Timer::WindowEnd) => {
                let excess = u.admitted_in_window.saturating_sub(u.limit);
                ctx.count("excess", excess as i64);
                ctx.count("within", (u.admitted_in_window - excess) as i64);
                u.admitted_in_window = 0;
                ctx.set_timer(u.window, Timer::WindowEnd);
            }
            (Rl::Instance(i), t) => i.on_timer(t, ctx),
            _ => {}
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        match self {
            Rl::Instance(i) => {
                i.counts.clear();
                i.pending.clear();
                i.leases.clear();
                i.told.clear();
                i.heard.clear();
            }
            Rl::Store(s) => s.counts.clear(),
            _ => {}
        }
    }

    fn on_control(&mut self, c: Control, _ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Rl::Instance(i), Control::Strategy(id)) => i.strategy = Strategy::from_id(id),
            (Rl::Instance(i), Control::Param { id, value }) => match id {
                "limit" => i.limit = value as u64,
                "timeout_ms" => i.timeout = value as u64 * MICROS_PER_MS,
                "fail_open" => i.fail_open = value == 1,
                "lease_batch" => i.batch = value as u64,
                "gossip_ms" => i.gossip_every = value as u64 * MICROS_PER_MS,
                _ => {}
            },
            (Rl::Store(s), Control::Param { id: "limit", value }) => s.limit = value as u64,
            (Rl::Store(s), Control::Custom { id: "store-slow", value }) => s.extra = value as u64 * MICROS_PER_MS,
            (Rl::User(u), Control::Param { id: "limit", value }) => u.limit = value as u64,
            (Rl::User(u), Control::Param { id, value })
                if id == (if u.abusive { "abusive_rps" } else { "normal_rps" }) =>
            {
                u.rps = value as f64
            }
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Rl::User(u) => {
                let v = NodeView::new(NodeKind::Client, 0, numbered("user", u.user as u64)).gauge(
                    "admitted this window",
                    u.admitted_in_window as i64,
                    u.limit as i64,
                );
                if u.abusive {
                    v.badge("abusive", Tone::Warn)
                } else {
                    v
                }
            }
            Rl::Balancer { .. } => NodeView::new(NodeKind::LoadBalancer, 1, "balancer"),
            Rl::Instance(i) => {
                let v = NodeView::new(NodeKind::Service, 2, numbered("instance", i.index as u64)).gauge(
                    "awaiting store",
                    i.pending.len() as i64,
                    20,
                );
                match i.strategy {
                    Strategy::Lease => {
                        let tokens: u64 = i.leases.values().map(|l| l.tokens).sum();
                        v.gauge("leased tokens", tokens as i64, (i.batch * 4) as i64)
                    }
                    _ => v,
                }
            }
            Rl::Store(s) => {
                let v = NodeView::new(NodeKind::Store, 3, "counter store").gauge("keys", s.counts.len as i64, 64);
                if s.extra > 0 {
                    v.badge(format!("slow +{} ms", s.extra / MICROS_PER_MS), Tone::Bad)
                } else {
                    v
                }
            }
        }
    }
}

impl User {
    fn schedule(&mut self, ctx: &mut Ctx<Rl>) {
        let gap = ctx.rng().exponential(1e6 / self.rps.max(0.001)) as Micros;
        ctx.set_timer(gap.max(1), Timer::Send);
    }
}

impl Instance {
    fn window_of(&self, t: Time) -> u64 {
        t.micros() / self.window
    }

    fn answer(&mut self, req: Req, started: Time, admitted: bool, ctx: &mut Ctx<Rl>) {
        if admitted {
            tally_admit(ctx, req.user, self.window);
        }
        ctx.observe("decision_us", ctx.now().since(started));
        ctx.send(req.from, Msg::Answer { admitted, sent: req.sent });
    }

    fn ask_store(&mut self, req: Req, msg: Msg, ctx: &mut Ctx<Rl>) {
        let t = ctx.set_timer(self.timeout, Timer::StoreTimeout { req: req.id });
        self.pending.insert(req.id, ((req, ctx.now()), t));
        ctx.send(STORE, msg);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Rl>) {
        let now = ctx.now();
        match msg {
            Msg::Request(req) => match self.strategy {
                Strategy::Local => {
                    let c = self.counts.slot((req.user, self.window_of(now)));
                    let ok = *c < self.limit;
                    *c += ok as u64;
                    self.answer(req, now, ok, ctx);
                    self.prune(now);
                }
                Strategy::GetSet => {
                    let window = self.window_of(now);
                    self.ask_store(req, Msg::Get { req: req.id, user: req.user, window }, ctx);
                }
                Strategy::Atomic => self.ask_store(req, Msg::Incr { req: req.id, user: req.user }, ctx),
                Strategy::Gossip => {
                    let key = (req.user, self.window_of(now));
                    let own = self.counts.get(&key);
                    let told = self.told.get(&key);
                    let peers: u64 = self.heard.peek(&key).map_or(0, |by_peer| by_peer.iter().sum());
                    // Spend at most this instance's share of what the last reports say is left:
                    // the shares of all instances add up to exactly what is left.
                    let left = self.limit.saturating_sub(told + peers);
                    let n = self.instances as u64;
                    let share = left / n + ((self.index as u64) < left % n) as u64;
                    let ok = own < self.limit && own - told < share;
                    if ok {
                        *self.counts.slot(key) += 1;
                    }
                    self.answer(req, now, ok, ctx);
                }
                Strategy::Lease => self.lease_request(req, now, ctx),
            },
            Msg::Value { req, count } => {
                if let Some(((r, started), t)) = self.pending.remove(&req) {
                    ctx.cancel_timer(t);
                    let ok = count < self.limit;
                    if ok {
                        // The race: another instance may have read the same count meanwhile.
                        let window = self.window_of(started);
                        ctx.send(STORE, Msg::Set { user: r.user, window, count: count + 1 });
                    }
                    self.answer(r, started, ok, ctx);
                }
            }
            Msg::Counted { req, admitted } => {
                if let Some(((r, started), t)) = self.pending.remove(&req) {
                    ctx.cancel_timer(t);
                    // The store already recorded the admission when it counted.
                    ctx.observe("decision_us", now.since(started));
                    if admitted {
                        ctx.count("admitted", 1);
                    }
                    ctx.send(r.from, Msg::Answer { admitted, sent: r.sent });
                }
            }
            Msg::LeaseGrant { user, tokens, valid_for, ask } => {
                self.lease_granted(user, tokens, valid_for, ask, now, ctx)
            }
            Msg::Gossip { window, counts } => {
                let peer = from.saturating_sub(FIRST_INSTANCE) as usize;
                for &(user, c) in counts.iter() {
                    let by_peer = self.heard.slot((user, window));
                    if by_peer.len() <= peer {
                        by_peer.resize(peer + 1, 0);
                    }
                    by_peer[peer] = c;
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Rl>) {
        match timer {
            Timer::StoreTimeout { req } => {
                if let Some(((r, started), _)) = self.pending.remove(&req) {
                    ctx.count("store_timeouts", 1);
                    let open = self.fail_open;
                    self.answer(r, started, open, ctx);
                }
            }
            Timer::LeaseTimeout { user } => {
                let open = self.fail_open;
                let lease = self.leases.entry(user).or_default();
                lease.asking = false;
                for (r, started) in std::mem::take(&mut lease.waiters) {
                    ctx.count("store_timeouts", 1);
                    self.answer(r, started, open, ctx);
                }
            }
            Timer::Gossip => {
                let now = ctx.now();
                let window = self.window_of(now);
                // One report shared by every peer's message, not a copy each.
                let counts: Rc<[(u32, u64)]> = self.counts.in_window(window).map(|(u, c)| (u, *c)).collect();
                for &(u, c) in counts.iter() {
                    *self.told.slot((u, window)) = c;
                }
                for peer in 0..self.instances {
                    if peer != self.index {
                        ctx.send(FIRST_INSTANCE + peer, Msg::Gossip { window, counts: Rc::clone(&counts) });
                    }
                }
                self.prune(now);
                ctx.set_timer(self.gossip_every, Timer::Gossip);
            }
            _ => {}
        }
    }

    fn lease_request(&mut self, req: Req, now: Time, ctx: &mut Ctx<Rl>) {
        let lease = self.leases.entry(req.user).or_default();
        if lease.tokens > 0 && now < lease.expires {
            lease.tokens -= 1;
            self.answer(req, now, true, ctx);
        } else if now < lease.exhausted_until {
            self.answer(req, now, false, ctx);
        } else {
            lease.waiters.push_back((req, now));
            if !lease.asking {
                lease.asking = true;
                lease.asked_at = now;
                lease.ask += 1;
                ctx.send(STORE, Msg::LeaseAsk { user: req.user, want: self.batch, ask: lease.ask });
                ctx.set_timer(self.timeout, Timer::LeaseTimeout { user: req.user });
            }
        }
    }

    fn lease_granted(&mut self, user: u32, tokens: u64, valid_for: Micros, ask: u64, now: Time, ctx: &mut Ctx<Rl>) {
        let lease = self.leases.entry(user).or_default();
        if !lease.asking || ask != lease.ask {
            return; // It came too late; the waiters were already answered.
        }
        lease.asking = false;
        // Counted from when we *asked*, on the local clock: the store measured `valid_for`
        // later than that, so however slow the answer, the lease ends before the store's
        // window does (as leader leases do). A skewed clock cannot stretch a duration; the
        // margin covers drift.
        let margin = 5 * MICROS_PER_MS;
        lease.tokens = tokens;
        lease.expires = lease.asked_at.plus(valid_for.saturating_sub(margin));
        if tokens == 0 {
            lease.exhausted_until = lease.asked_at.plus(valid_for);
        }
        let waiters = std::mem::take(&mut lease.waiters);
        for (r, started) in waiters {
            let lease = self.leases.get_mut(&user).expect("just used");
            let ok = lease.tokens > 0 && now < lease.expires;
            lease.tokens -= ok as u64;
            self.answer(r, started, ok, ctx);
        }
    }

    fn prune(&mut self, now: Time) {
        let keep_from = self.window_of(now).saturating_sub(1);
        self.counts.drop_before(keep_from);
        self.told.drop_before(keep_from);
        self.heard.drop_before(keep_from);
    }
}

impl Store {
    fn reply(&self, to: NodeId, msg: Msg, ctx: &mut Ctx<Rl>) {
        ctx.count("store_ops", 1);
        ctx.send_after(self.extra, to, msg);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Rl>) {
        let window = ctx.now().micros() / self.window;
        self.counts.drop_before(window.saturating_sub(2));
        match msg {
            Msg::Get { req, user, window } => {
                let count = self.counts.get(&(user, window));
                self.reply(from, Msg::Value { req, count }, ctx);
            }
            Msg::Set { user, window, count } => {
                ctx.count("store_ops", 1);
                *self.counts.slot((user, window)) = count;
            }
            Msg::Incr { req, user } => {
                let c = self.counts.slot((user, window));
                *c += 1;
                let admitted = *c <= self.limit;
                if admitted {
                    ctx.tally("admitted", ((user as u64) << 32) | (ctx.truth().micros() / self.window), 1);
                }
                self.reply(from, Msg::Counted { req, admitted }, ctx);
            }
            Msg::LeaseAsk { user, want, ask } => {
                let c = self.counts.slot((user, window));
                let tokens = want.min(self.limit.saturating_sub(*c));
                *c += tokens;
                let valid_for = self.window - ctx.now().micros() % self.window;
                self.reply(from, Msg::LeaseGrant { user, tokens, valid_for, ask }, ctx);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_values_behave_like_a_map_by_user_and_window() {
        // Windows mostly ascending, some behind and some far ahead (skewed clocks), users
        // in any order, old windows dropped now and then: the same answers as a plain map.
        let (mut fast, mut plain) = (Windowed::new(), BTreeMap::new());
        let mut rng = Rng::new(99);
        for i in 0..20_000u64 {
            let user = rng.below(300) as u32;
            let window = match rng.below(10) {
                0 => (i / 1_000).saturating_sub(2),
                1 => i / 1_000 + 50,
                _ => i / 1_000,
            };
            let key = (user, window);
            assert_eq!(fast.get(&key), plain.get(&key).copied().unwrap_or(0));
            // Set, merely create, or add to the value, in both.
            let op = rng.below(4);
            for v in [fast.slot(key), plain.entry(key).or_insert(0)] {
                match op {
                    0 => *v = i,
                    1 => {}
                    _ => *v += 1,
                }
            }
            if i % 777 == 0 {
                let keep_from = (i / 1_000).saturating_sub(1);
                fast.drop_before(keep_from);
                plain.retain(|&(_, w), _| w >= keep_from);
            }
            if i % 1_000 == 999 {
                let w = i / 1_000;
                let want: Vec<_> = plain.iter().filter(|((_, pw), _)| *pw == w).map(|(&(u, _), &v)| (u, v)).collect();
                let got: Vec<_> = fast.in_window(w).map(|(u, v)| (u, *v)).collect();
                assert_eq!(got, want, "window {w}");
            }
            assert_eq!(fast.len, plain.len());
        }
        fast.clear();
        assert_eq!((fast.len, fast.get(&(0, 0))), (0, 0));
    }
}
