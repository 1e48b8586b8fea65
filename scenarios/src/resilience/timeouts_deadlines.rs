//! Timeouts and deadlines: client → gateway → A → B → C. With per-hop timeouts and no cancellation, a slow hop keeps working on requests whose client gave up long ago; passing the remaining budget down and cancelling stops it.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::{BTreeMap, BTreeSet};

// A table, an entry a line: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "timeouts-deadlines",
        title: "Timeouts and deadlines",
        category: "Resilience",
        seeds: &["S1#29", "S3#29", "S3#36", "S3#44"],
        summary: "Client → gateway → A → B → C, each hop with its own timeout. While C is slow it keeps working for \
                  seconds on requests the client gave up on; a deadline passed down, with cancellation, stops it.",
        note: Note {
            what_can_go_wrong: "A timeout bounds how long a caller waits, not how long the callee works: with no \
                cancellation, every hop below finishes what it started, and with inner timeouts longer than outer \
                ones it even waits for answers nobody will read. Even shrinking ones leave work behind: with r \
                retries a hop, C works on (r+1)^(d−1) tries of each request ('gateway 30 s, backend 25 s, yet \
                requests hit the backend for 2+ minutes': the backend's tries outlive the gateway's wait). While \
                C is slow, its work after the client gave up — wasted server-seconds — grows with the rate × the \
                slowness. The model: Poisson requests from one client; every hop a serverless-like function (no \
                queue, a worker per request) that works (exponential, plus a cold start for one call in ten), then \
                calls the next hop, retrying at once a failed or timed-out try, and answers when done or out of tries. \
                Cold starts add up down a chain: three hops of 200 ms with 3.5 s cold starts (`cold_ms`) have a p99 \
                near 8 s, since 2.8% of requests meet two of them.",
            what_you_sacrifice: "Deadlines need every hop to carry and honour them (a header, a context), and a \
                cancelled request is lost work too: a deep hop that gets little budget fails fast instead of \
                finishing late. Cancelling needs a message down the chain, or a deadline timer at every hop.",
            at_10x: "Ten times the rate is ten times the wasted work while a hop is slow: with no queue it costs \
                server-seconds and money (serverless bills them); with bounded workers it becomes a queue of dead \
                requests in front of live ones. Deadlines keep the waste at the slack × the rate at any scale.",
            resembles: "gRPC deadlines (grpc-timeout header, remaining budget per hop); Go's context.WithDeadline and \
                cancellation; Envoy's route timeout and x-envoy-expected-rq-timeout-ms; AWS Lambda chains, where \
                each function's timeout must shrink inward; Finagle's deadline propagation.",
            try_this: &[
                "Play `inner-longer`: C is slow from 8 s; the wasted-work chart climbs to about 100 server-s/s and \
                 `gave-up` names C at once.",
                "Switch to `shrinking`: timeouts shrink inward, the client hears sooner, yet C works on just as much \
                 for nobody: timeouts without cancellation do not stop work.",
                "Switch to `deadline`: the wasted work falls to under a server-second a second and no check fails.",
                "With `deadline`, set the client timeout to 100 ms and the work to 30 ms: deep hops get little \
                 budget and fail fast; success falls, but nothing is wasted.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("depth", "Chain depth", "hops", 1..=5, 4, "Hops behind the client: gateway, A, B, C, D; the last is the one that turns slow."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=1000, 50, "Client requests per second (Poisson)."),
        ParamSpec::live("client_timeout_ms", "Client timeout", "ms", 10..=60_000, 1000, "How long the client waits: its deadline.").step(10),
        ParamSpec::live("hop_timeout_ms", "Hop timeout", "ms", 10..=60_000, 2000, "How long each hop waits for the next (naive: longer than the client's).").step(10),
        ParamSpec::live("retries", "Retries per hop", "", 0..=3, 0, "How many times a hop calls the next again after a failed or timed-out try (deadline: while budget is left)."),
        ParamSpec::live("work_ms", "Work per hop", "ms", 1..=1000, 20, "Mean (exponential) work a hop does on a request."),
        ParamSpec::live("cold_ms", "Cold start", "ms", 0..=10_000, 0, "Extra work for one call in ten at every hop: a new instance starting."),
        ParamSpec::live("slow_ms", "Slow hop's extra work", "ms", 0..=60_000, 3000, "What the deepest hop adds to each request while slow."),
        ParamSpec::setup("slow_s", "Slow for", "s", 0..=3600, 10, "Scheduled fault: the deepest hop is slow from 8 s for this long."),
    ],
    strategies: &[
        StrategySpec::naive("inner-longer", "Inner timeouts longer", "Every hop waits the hop timeout (longer than the client's) for the next; nothing is cancelled."),
        StrategySpec::naive("shrinking", "Shrinking timeouts", "Hop h of d waits client timeout × (d − h)/(d + 1): inner shorter than outer, but nothing is cancelled."),
        StrategySpec::fixed("deadline", "Deadline + cancellation", "Each call carries the budget left for its try; a hop stops at its deadline and cancels the call below."),
    ],
    faults: &[FaultSpec::global("slow", "Deepest hop slow", "Each request's work takes the slow hop's extra work longer.")
        .value("slow (1) / normal (0)", 0..=1, 1)],
    checks: &[
        CheckSpec::new("gave-up", "No work for a client that gave up",
            "No hop is working on a request more than 50 ms after a caller above it gave up (its timeout for that try \
             passed: the client's, or a hop's). Per-hop timeouts without cancellation break it as soon as a hop is slower than the client's timeout; a \
             deadline passed down, with cancellation, keeps it. Names the hop and how late it still works."),
    ],
    metrics: &[
        MetricSpec::new("wasted", "Work after the client gave up", "server-ms/s", Measure::Rate("wasted_ms")),
        MetricSpec::new("p99", "Client latency p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("success", "Success rate", "%", Measure::Percent { num: "ok", rest: "failed" }),
        MetricSpec::new("working", "Requests the slow hop works on", "req", Measure::Gauge("working_deepest")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { InnerLonger, Shrinking, Deadline });

const NAMES: [&str; 6] = ["client", "gateway", "A", "B", "C", "D"];
/// How long after its client gave up a hop may still work: the links (≤ 3 ms a hop) and a cancel's trip.
const SLACK: Micros = 50 * MICROS_PER_MS;
/// One call in ten starts a new instance and pays the cold start.
const COLD_PCT: u64 = 10;

/// `Call(id, budget, gave_up)`: the budget left (deadline strategy), and when callers give up.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Call(CallId, Option<Micros>, GiveUp),
    Ok(CallId),
    #[label = "error"]
    Error(CallId),
    Cancel(CallId),
}

/// True times, bookkeeping for the metric and the check only (a hop's logic never reads them): the
/// client gives up (wasted work counts from then), and the first caller up the chain gives up on
/// this try (its own try timeout, or one above it): from then on no answer can reach the client.
#[derive(Clone, Copy, Debug)]
pub struct GiveUp {
    client: Time,
    caller: Time,
}

/// A request a hop holds, by (caller, caller's call).
type Key = (NodeId, CallId);

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Timeout(CallId),
    Worked(Key),
    Expire(Key),
}

/// A request at a hop: working on it (`work`), then waiting for the next hop (`below`).
#[derive(Clone, Debug)]
struct Job {
    /// True times: work began, and the client gives up.
    began: Time,
    gave_up: GiveUp,
    work: Option<TimerId>,
    expire: Option<TimerId>,
    /// The deadline (this node's clock) and the budget it came with.
    deadline: Option<Time>,
    budget: Option<Micros>,
    /// Calls made below for it so far.
    tries: u32,
    below: Option<CallId>,
}

/// The client (level 0) or hop `level` ≥ 1; each hop but the deepest calls the next.
#[derive(Clone, Debug)]
pub struct Hop {
    level: usize,
    depth: usize,
    arrivals: OpenLoop,
    /// Calls made: the client's (no one above) or a hop's, for the request it holds.
    calls: Calls<Option<Key>>,
    jobs: BTreeMap<Key, Job>,
    /// Jobs worked on, by their caller's give-up (true time): the check reads the first, scanning none.
    working: BTreeSet<(Time, Key)>,
    strategy: Strategy,
    slow: bool,
    /// How long this hop waits for the next, by the strategy (the deadline strategy also bounds it by the budget).
    timeout_us: Micros,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Hop> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let (depth, strategy) = (setup.param("depth") as usize, Strategy::from_id(setup.strategy()));
    for level in 0..=depth {
        let calls = Calls::new(if level == 0 { "latency_us" } else { "hop_us" }).counting_late("late_answers");
        let arrivals = OpenLoop::poisson(0.0);
        sim.add_node(Hop {
            level,
            depth,
            arrivals,
            calls,
            jobs: BTreeMap::new(),
            working: BTreeSet::new(),
            strategy,
            slow: false,
            timeout_us: 0,
        });
    }
    FaultWindow::secs(8, setup.param("slow_s")).custom(&mut sim, "slow", None, 1, 0);
    sim.check("gave-up", move |w| gave_up(w, &w.nodes[1..]));
    Box::new(sim)
}

fn gave_up<'a>(w: &World<Hop>, hops: &'a [Hop]) -> Result<(), String> {
    let late = |&&(caller, _): &&(Time, Key)| w.now > caller.plus(SLACK);
    let first_late = |h: &'a Hop| h.working.first().filter(late).map(|&(caller, _)| (h, caller));
    let Some((hop, caller)) = hops.iter().find_map(first_late) else { return Ok(()) };
    let n = hop.working.iter().take_while(late).count();
    Err(format!(
        "{} is working on {n} requests whose caller gave up; one for {} ms after (slack {} ms)",
        NAMES[hop.level],
        w.now.since(caller) / MICROS_PER_MS,
        SLACK / MICROS_PER_MS
    ))
}

impl Node for Hop {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        self.configure(ctx);
        self.arrivals.start(ctx, Timer::Arrive);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match msg {
            Msg::Call(call, budget, gave_up) if self.level > 0 => self.call((from, call), budget, gave_up, ctx),
            Msg::Ok(call) if self.level < self.depth => self.answered(call, Some(true), ctx),
            Msg::Error(call) if self.level < self.depth => self.answered(call, Some(false), ctx),
            Msg::Cancel(call) if self.level > 0 => self.drop_job((from, call), ctx),
            Msg::Call(..) | Msg::Ok(_) | Msg::Error(_) | Msg::Cancel(_) => ctx.unhandled(&msg),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match timer {
            Timer::Arrive => {
                self.arrivals.on_timer(ctx, Timer::Arrive);
                ctx.count("requests", 1);
                let timeout_us = ctx.param("client_timeout_ms") as Micros * MICROS_PER_MS;
                let at = ctx.truth().plus(timeout_us);
                let budget = (self.strategy == Strategy::Deadline).then_some(timeout_us);
                let call = self.calls.start(ctx, None, timeout_us, Timer::Timeout);
                ctx.send(1, Msg::Call(call, budget, GiveUp { client: at, caller: at }));
            }
            Timer::Timeout(call) => self.answered(call, None, ctx),
            Timer::Worked(key) => self.worked(key, ctx),
            Timer::Expire(key) => self.drop_job(key, ctx),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // All in memory: the requests held and the calls under way are lost.
        ctx.note(format!("crashed: {} requests lost", self.jobs.len()));
        self.calls.clear(ctx);
        for key in self.jobs.keys().copied().collect::<Vec<_>>() {
            self.end_work(key, ctx);
        }
        self.jobs.clear();
        self.publish(ctx);
    }

    fn on_control(&mut self, control: Control, ctx: &mut Ctx<Self>) {
        match control {
            Control::Custom { id: "slow", value } => self.slow = value == 1 && self.level == self.depth,
            Control::Strategy(id) => self.strategy = Strategy::from_id(id),
            Control::Param { .. } | Control::Custom { .. } => {}
        }
        self.configure(ctx);
    }

    fn view(&self) -> NodeView {
        let working = self.working.len() as i64;
        let waiting = self.jobs.len() as i64 - working;
        let cap = (self.jobs.len() as i64).max(10);
        if self.level == 0 {
            let v = NodeView::new(NodeKind::Client, 0, "client");
            return v.gauge("requests in flight", self.calls.len() as i64, cap);
        }
        let kind = if self.level == self.depth { NodeKind::Database } else { NodeKind::Service };
        let budget = self.jobs.values().filter_map(|j| j.budget).max();
        let v = NodeView::new(kind, self.level as u8, NAMES[self.level])
            .gauge("working", working, cap)
            .gauge("waiting for next", waiting, cap)
            .badge_if(self.slow, "slow", Tone::Bad);
        match budget {
            Some(us) => v.badge(format!("budget ≤ {} ms", us / MICROS_PER_MS), Tone::Good),
            None if self.level == self.depth => v,
            None => v.badge(format!("timeout {} ms", self.timeout_us / MICROS_PER_MS), Tone::Neutral),
        }
    }
}

impl Hop {
    /// At a (re)start and after any change: every parameter acts at once.
    fn configure(&mut self, ctx: &mut Ctx<Hop>) {
        let rate = if self.level == 0 { ctx.param("rps") as f64 } else { 0.0 };
        self.arrivals.set_rate_per_s(rate, ctx, Timer::Arrive);
        let (hop, client) = (ctx.param("hop_timeout_ms") as Micros, ctx.param("client_timeout_ms") as Micros);
        let ms = match self.strategy {
            Strategy::Shrinking => client * (self.depth - self.level) as Micros / (self.depth + 1) as Micros,
            Strategy::InnerLonger | Strategy::Deadline => hop,
        };
        self.timeout_us = ms.max(1) * MICROS_PER_MS;
        self.publish(ctx);
    }

    fn call(&mut self, key: Key, budget: Option<Micros>, gave_up: GiveUp, ctx: &mut Ctx<Hop>) {
        if budget == Some(0) || self.jobs.contains_key(&key) {
            return ctx.send(key.0, Msg::Error(key.1));
        }
        let mean_us = ctx.param("work_ms") as f64 * MICROS_PER_MS as f64;
        let mut work_us = ctx.rng().exponential(mean_us) as Micros;
        if ctx.rng().below(100) < COLD_PCT {
            work_us += ctx.param("cold_ms") as Micros * MICROS_PER_MS;
        }
        if self.slow {
            work_us += ctx.param("slow_ms") as Micros * MICROS_PER_MS;
        }
        let work = Some(ctx.set_timer(work_us, Timer::Worked(key)));
        let expire = budget.map(|b| ctx.set_timer(b, Timer::Expire(key)));
        let deadline = budget.map(|b| ctx.now().plus(b));
        self.working.insert((gave_up.caller, key));
        self.jobs
            .insert(key, Job { began: ctx.truth(), gave_up, work, expire, deadline, budget, tries: 0, below: None });
        self.publish(ctx);
    }

    /// The work on `key` is done: the deepest answers; the others call the next hop.
    fn worked(&mut self, key: Key, ctx: &mut Ctx<Hop>) {
        self.end_work(key, ctx);
        if self.level == self.depth {
            return self.finish(key, true, ctx);
        }
        self.call_below(key, ctx);
    }

    /// Calls the next hop for `key` (again, for a retry) while its budget, if it has one, lasts.
    fn call_below(&mut self, key: Key, ctx: &mut Ctx<Hop>) {
        let Some(job) = self.jobs.get(&key) else { return };
        let (gave_up, deadline) = (job.gave_up, job.deadline);
        let left = deadline.map(|d| d.micros().saturating_sub(ctx.now().micros()));
        let timeout_us = left.map_or(self.timeout_us, |l| l.min(self.timeout_us));
        if left == Some(0) {
            return self.finish(key, false, ctx);
        }
        let call = self.calls.start(ctx, Some(key), timeout_us, Timer::Timeout);
        let caller = gave_up.caller.min(ctx.truth().plus(timeout_us));
        // The budget passed down is this try's: the callee has no use for time after its caller stops waiting.
        let budget = left.map(|_| timeout_us);
        ctx.send(self.level as NodeId + 1, Msg::Call(call, budget, GiveUp { caller, ..gave_up }));
        let job = self.jobs.get_mut(&key).expect("held");
        (job.below, job.tries) = (Some(call), job.tries + 1);
        self.publish(ctx);
    }

    /// A call ended (`None`: timed out): the client counts it; a hop answers its caller.
    fn answered(&mut self, call: CallId, ok: Option<bool>, ctx: &mut Ctx<Hop>) {
        let above = if ok.is_some() { self.calls.reply(call, ctx) } else { self.calls.timeout(call) };
        let (Some(above), retries) = (above, ctx.param("retries") as u32) else { return };
        if ok.is_none() && self.strategy == Strategy::Deadline {
            ctx.send(self.level as NodeId + 1, Msg::Cancel(call));
        }
        match above {
            // A failed or timed-out try is retried at once while retries are left.
            Some(key) if ok != Some(true) && self.jobs.get(&key).is_some_and(|j| j.tries <= retries) => {
                self.call_below(key, ctx)
            }
            Some(key) => self.finish(key, ok == Some(true), ctx),
            None if ok == Some(true) => ctx.count("ok", 1),
            None => {
                ctx.count("failed", 1);
                if ok.is_none() {
                    ctx.observe("latency_us", ctx.param("client_timeout_ms") as u64 * MICROS_PER_MS);
                }
            }
        }
    }

    /// Answers the caller and forgets the request.
    fn finish(&mut self, key: Key, ok: bool, ctx: &mut Ctx<Hop>) {
        let Some(job) = self.jobs.remove(&key) else { return };
        if let Some(t) = job.expire {
            ctx.cancel_timer(t);
        }
        ctx.send(key.0, if ok { Msg::Ok(key.1) } else { Msg::Error(key.1) });
        self.publish(ctx);
    }

    /// Cancelled, or past its deadline: stop working, cancel the call below, and forget it.
    fn drop_job(&mut self, key: Key, ctx: &mut Ctx<Hop>) {
        self.end_work(key, ctx);
        let Some(job) = self.jobs.remove(&key) else { return };
        if let Some(t) = job.expire {
            ctx.cancel_timer(t);
        }
        if let Some(call) = job.below.filter(|&c| self.calls.cancel(c, ctx).is_some()) {
            ctx.send(self.level as NodeId + 1, Msg::Cancel(call));
        }
        ctx.count("cancelled", 1);
        self.publish(ctx);
    }

    /// The work on `key` stops (done or cancelled): what of it came after the client gave up was wasted.
    fn end_work(&mut self, key: Key, ctx: &mut Ctx<Hop>) {
        let Some(job) = self.jobs.get_mut(&key) else { return };
        let Some(t) = job.work.take() else { return };
        self.working.remove(&(job.gave_up.caller, key));
        ctx.cancel_timer(t);
        let wasted_us = ctx.truth().micros().saturating_sub(job.gave_up.client.max(job.began).micros());
        ctx.count("wasted_ms", (wasted_us / MICROS_PER_MS) as i64);
        ctx.count("wasted_us", wasted_us as i64);
    }

    fn publish(&self, ctx: &mut Ctx<Hop>) {
        if self.level == self.depth {
            ctx.gauge("working_deepest", self.working.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{between, failed_at, run_sampled, Sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("timeouts-deadlines", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64, names: &[&str]) -> Sampled {
        run_sampled(&SPEC, recipe, secs, names)
    }

    fn gave_up_at(r: &dyn Run) -> Option<(f64, String)> {
        failed_at(r, "gave-up")
    }

    /// The deepest slow from 8 s to the end, the other work negligible (1 ms, no cold starts).
    fn slow_forever(strategy: &str, seed: u64) -> Recipe {
        let r = recipe(strategy, seed).with_param("slow_s", 3600).with_param("work_ms", 1);
        r.with_param("rps", 50).with_param("client_timeout_ms", 1000).with_param("slow_ms", 3000)
    }

    #[test]
    fn cold_starts_down_a_chain_of_three_put_the_p99_near_eight_seconds() {
        // Seed S3#44: three functions of 200 ms each, an end-to-end p99 of 8 s. One call in ten
        // at each hop pays a cold start C, so K ~ Binomial(3, 0.1) of them fall on a request, on
        // top of S, the sum of three exponential works (Erlang-3, mean 600 ms), and six links
        // (~12 ms). P(K ≥ 2) = 2.8% > 1% > P(K = 3) = 0.1%: the p99 is two cold starts and a
        // tail of S, where 0.001 + 0.027·P(S > t − 2C) + 0.243·P(S > t − C) = 1%; with C = 3.5 s
        // (a 1 GB Java function's start), t ≈ 7.7 s. Tolerance 3%: histogram buckets are 1/64 of
        // an octave (1.6%), and 30,000 requests put the p99's s.d. near 30 ms (0.4%).
        let c = 3.5e6;
        let erlang3_tail = |x: f64| {
            let l = x.max(0.0) / 200e3;
            libm::exp(-l) * (1.0 + l + l * l / 2.0)
        };
        let tail = |t: f64| 0.001 + 0.027 * erlang3_tail(t - 12e3 - 2.0 * c) + 0.243 * erlang3_tail(t - 12e3 - c);
        let (mut lo, mut hi) = (2.0 * c, 3.0 * c);
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            (lo, hi) = if tail(mid) > 0.01 { (mid, hi) } else { (lo, mid) };
        }
        assert!((7.6e6..7.8e6).contains(&lo), "theory: {lo} µs");
        for seed in 1..=2 {
            let recipe = recipe("inner-longer", seed).with_param("depth", 3).with_param("slow_s", 0);
            let recipe = recipe.with_param("work_ms", 200).with_param("cold_ms", 3500).with_param("rps", 50);
            let recipe = recipe.with_param("client_timeout_ms", 30_000).with_param("hop_timeout_ms", 60_000);
            let (r, _) = run(&recipe, 600, &[]);
            let p99 = r.metrics().histogram("latency_us").expect("latencies").quantile(0.99) as f64;
            assert!((p99 / lo - 1.0).abs() < 0.03, "seed {seed}: p99 {p99} µs, theory {lo} µs");
        }
    }

    #[test]
    fn without_cancellation_each_request_wastes_the_slow_work_less_the_client_timeout() {
        // The deepest works slow_ms (+ ~1 ms) on every request; the client gave up client
        // timeout − (what the request spent above: four links of 1–3 ms and three 1 ms works,
        // ~11 ms) after the deepest began. No one cancels, so each request wastes
        // slow_ms − client timeout + ~12 ms = 2.012 s at the deepest, and nothing elsewhere
        // (every hop above finishes its own work long before the client gives up). So the
        // wasted server-seconds per request are (slow − timeout): within 1.5% (measured: within 0.7%).
        for (strategy, seed) in [("inner-longer", 1), ("inner-longer", 2), ("shrinking", 3)] {
            let (_, at) = run(&slow_forever(strategy, seed), 60, &["wasted_us", "requests"]);
            let per_request = between(&at, 0, 15, 55) / between(&at, 1, 12, 52) / 1e6;
            assert!((per_request / 2.0 - 1.0).abs() < 0.015, "{strategy} seed {seed}: {per_request} s a request");
        }
    }

    #[test]
    fn with_deadlines_the_waste_is_bounded_by_the_links_per_request() {
        // Each hop's deadline is its arrival + the budget its caller had left when it sent: later
        // than the client's by the links crossed (≤ 3 ms each, five at depth 4). So a request
        // wastes at most 15 ms, and none reaches the slack of the check.
        // Retries change nothing: a hop retries only while its budget lasts.
        for (seed, retries) in [(1, 0), (2, 0), (3, 3)] {
            let recipe = slow_forever("deadline", seed).with_param("retries", retries);
            let (r, at) = run(&recipe, 60, &["wasted_us", "requests"]);
            let per_request = between(&at, 0, 15, 55) / between(&at, 1, 15, 55);
            assert!(per_request <= 15_000.0, "seed {seed}: {per_request} µs a request");
            assert!(gave_up_at(r.as_ref()).is_none(), "seed {seed}");
        }
    }

    #[test]
    fn naive_retries_multiply_the_waste_by_r_plus_1_to_the_callers() {
        // "Gateway 30 s, backend 25 s, yet requests hit the backend for 2+ minutes": with r
        // retries at each hop and every try below timing out (2 s < C's 3 s), each of the d − 1
        // callers above C makes r + 1 tries, so C works on (r+1)^(d−1) tries a request — 8 at
        // depth 4 with one retry — all but the first wholly after the client gave up (the
        // first retry comes at 2 s): (r+1)^(d−1) × slow − client timeout = 23 s a request.
        // Within 2% (measured: 22.99–23.23 s; the windows' edges and the hops' 1 ms works).
        for seed in 1..=3 {
            let recipe = slow_forever("inner-longer", seed).with_param("retries", 1);
            let (_, at) = run(&recipe, 60, &["wasted_us", "requests"]);
            let per_request = between(&at, 0, 20, 55) / between(&at, 1, 20, 55) / 1e6;
            assert!((per_request / 23.0 - 1.0).abs() < 0.02, "seed {seed}: {per_request} s a request");
        }
    }

    #[test]
    fn try_inner_longer_wastes_about_a_hundred_server_seconds_a_second() {
        // Step 1: 50 req/s × (3 s − 1 s) = 100 server-s/s while C is slow, and C is named at once.
        for seed in 1..=5 {
            let (r, at) = run(&recipe("inner-longer", seed), 20, &["wasted_ms"]);
            let rate = between(&at, 0, 12, 18) / 6.0 / 1000.0;
            assert!((80.0..120.0).contains(&rate), "seed {seed}: {rate} server-s/s");
            let (t, why) = gave_up_at(r.as_ref()).expect("C works for nobody");
            assert!((8.9..9.5).contains(&t) && why.starts_with("C "), "seed {seed}: {t} {why}");
        }
    }

    #[test]
    fn try_shrinking_timeouts_answer_sooner_but_waste_as_much() {
        // Step 2: the client hears within B's 200 ms share instead of waiting its full second,
        // yet C works as long for nobody.
        for seed in 1..=5 {
            let (naive, n) = run(&recipe("inner-longer", seed), 20, &["wasted_ms", "requests"]);
            let (shrunk, s) = run(&recipe("shrinking", seed), 20, &["wasted_ms", "requests"]);
            // Per request (C ends its work 3 s after the client asked): 2 s wasted, as without shrinking.
            let per_request = |at: &[Vec<i64>]| between(at, 0, 12, 18) / between(at, 1, 9, 15) / 1000.0;
            let (wn, ws) = (per_request(&n), per_request(&s));
            assert!((ws / wn - 1.0).abs() < 0.05 && (ws - 2.0).abs() < 0.1, "seed {seed}: {ws} vs {wn} s a request");
            let p99 = |r: &dyn Run| r.metrics().histogram("latency_us").map_or(0, |h| h.quantile(0.99));
            assert!(p99(shrunk.as_ref()) < 400_000 && p99(naive.as_ref()) >= 1_000_000, "seed {seed}");
            assert!(gave_up_at(shrunk.as_ref()).is_some(), "seed {seed}");
        }
    }

    #[test]
    fn the_check_judges_each_callers_own_give_up() {
        // `shrinking` at depth 4: B waits 1 s × 1/5 = 200 ms for C, so C works for a caller
        // that gave up 200 ms after it began (at ~8.0 s), long before the client's second is up.
        for seed in 1..=3 {
            let (r, _) = run(&recipe("shrinking", seed), 12, &[]);
            let (t, why) = gave_up_at(r.as_ref()).expect("C works for nobody");
            assert!((8.2..8.4).contains(&t) && why.starts_with("C "), "seed {seed}: {t} {why}");
        }
        // With deadlines, a hop timeout shorter than the budget ends a try early: the caller
        // cancels it and retries, so the one below stops as its caller gives up, not the client.
        for seed in 1..=3 {
            let recipe = slow_forever("deadline", seed).with_param("hop_timeout_ms", 300).with_param("retries", 1);
            let (r, _) = run(&recipe, 20, &[]);
            let (cancelled, failed) = (r.metrics().counter("cancelled"), gave_up_at(r.as_ref()));
            assert!(cancelled > 0 && failed.is_none(), "seed {seed}: {cancelled} cancelled, {failed:?}");
        }
    }

    #[test]
    fn try_deadlines_stop_the_waste() {
        // Step 3: under a server-second a second wasted, and the check holds.
        for seed in 1..=5 {
            let (r, at) = run(&recipe("deadline", seed), 20, &["wasted_ms"]);
            assert!(between(&at, 0, 12, 18) / 6.0 < 1000.0, "seed {seed}");
            assert!(gave_up_at(r.as_ref()).is_none(), "seed {seed}");
        }
    }

    #[test]
    fn try_a_tight_deadline_fails_fast_and_wastes_nothing() {
        // Step 4: four hops of 30 ms mean work rarely fit in 100 ms: most requests fail, each
        // hop stopping at its deadline, and the check still holds.
        for seed in 1..=5 {
            let r = recipe("deadline", seed).with_param("client_timeout_ms", 100).with_param("work_ms", 30);
            let (r, _) = run(&r, 20, &[]);
            let m = r.metrics();
            let (ok, failed) = (m.counter("ok") as f64, m.counter("failed") as f64);
            assert!(ok / (ok + failed) < 0.6 && m.counter("cancelled") > 0, "seed {seed}: {ok} of {}", ok + failed);
            assert!(gave_up_at(r.as_ref()).is_none(), "seed {seed}");
        }
    }

    #[test]
    fn the_view_shows_the_slow_hop_and_the_budget() {
        let badges = |strategy: &str, secs: u64, node: usize| {
            let (r, _) = run(&recipe(strategy, 1), secs, &[]);
            r.frame(0).nodes[node].view.badges.iter().map(|b| b.text.clone()).collect::<Vec<_>>()
        };
        assert!(badges("inner-longer", 10, 4).contains(&"slow".to_string()));
        assert!(badges("inner-longer", 20, 4).is_empty());
        assert_eq!(badges("inner-longer", 5, 1), ["timeout 2000 ms"]);
        assert_eq!(badges("shrinking", 5, 3), ["timeout 200 ms"]);
        assert!(badges("deadline", 10, 4).iter().any(|b| b.starts_with("budget ≤ ")));
    }
}
