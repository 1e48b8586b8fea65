//! Retry storm: clients → A → B → C, and every caller may retry. While the deepest service is
//! down, retries at each layer multiply its load by up to (r+1)^depth; once it is back, retries
//! of timed-out calls keep the queues full of work nobody waits for — a metastable failure —
//! unless retries are budgeted, or made at the edge only.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::retried::{Ended, Retried};
use crate::parts::retry::{Jitter, RetryBudget, RetryPolicy};
use crate::parts::station::{Full, Offer, Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, an entry a line: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "retry-storm",
        title: "Retry storm",
        category: "Resilience",
        seeds: &["S1#28"],
        summary: "Clients → A → B → C, every caller retrying. After C's five-second outage the layers above stay buried \
                  in retries of timed-out calls; a retry budget, or retries at the edge only, recover at once.",
        note: Note {
            what_can_go_wrong: "Each layer that retries multiplies the load below it: r retries at each of d hops \
                cost the deepest service up to (r+1)^d calls per failing request (4³ = 64 here). And the storm \
                outlives its cause: callers time out on calls stuck in full queues and retry them, keeping the \
                queues full of work whose callers gave up — a metastable failure. The model: Poisson clients (an \
                open system); services with c workers, exponential work and a bounded FIFO queue (503 when full) \
                that call the next one after their work, holding no worker; one per-try timeout at every hop; no \
                cancellation; C, while down, answers a quick 503 and loses the work it held.",
            what_you_sacrifice: "A budget gives up on requests plain retries would save once failures are widespread; \
                retrying at the edge redoes the whole chain for a failure deep down. Backoff and jitter add latency \
                and alone save nothing here: with requests arriving regardless, they move retries, not remove them.",
            at_10x: "Ten times the clients bring ten buckets of saved tokens to an outage's start: servers must also \
                shed load and say 'do not retry'. Deeper graphs compound per-layer budgets ((1 + budget)^depth).",
            resembles: "Marc Brooker's 'Timeouts, retries, and backoff with jitter' (Amazon Builders' Library) and \
                'What is backoff for?'; Bronson et al., 'Metastable Failures in Distributed Systems' (HotOS 2021); \
                Google SRE's 10% per-client retry budget; gRPC retry throttling; Finagle's RetryBudget.",
            try_this: &[
                "Play `every-layer`: C is down from 8 s under several times the client load; back at 13 s, yet A's and \
                 B's queues stay full, goodput near zero, the recovery time climbs and `recovers` fails at 18 s.",
                "Switch to `backoff-jitter`: retries come later, spread out, yet C still gets several times the \
                 client load and the system does not recover.",
                "Switch to `budget`: C's load stays under 2× the clients'; goodput is back in a second (recovery: 1 s).",
                "Set depth to 5 and compare `budget` with `edge-only` while C is down: budgets at every layer \
                 compound (1.1⁵ ≈ 1.6×); retries at the edge alone keep C's load near 1.1×.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("depth", "Depth", "services", 1..=5, 3, "Services in the chain (A…E); the last is the one that goes down."),
        ParamSpec::live("rps", "Client rate", "req/s", 1..=2000, 100, "New client requests per second (Poisson, over four clients)."),
        ParamSpec::live("retries", "Retries per call", "", 0..=5, 3, "r: how many times a caller tries a call again after the first try."),
        ParamSpec::live("timeout_ms", "Timeout per try", "ms", 10..=10_000, 500, "How long every caller waits for each try.").step(10),
        ParamSpec::live("backoff_ms", "First backoff", "ms", 1..=5000, 100, "Retry n waits this × 2^(n−1), at most 5 s (backoff strategies)."),
        ParamSpec::live("budget_pct", "Retry budget", "%", 0..=100, 10, "Retries each caller may make, as a share of its requests (plus 10 saved)."),
        ParamSpec::live("workers", "Workers per service", "", 1..=64, 4, "c: requests a service works on at once."),
        ParamSpec::live("service_ms", "Work per request", "ms", 1..=500, 20, "Mean (exponential) work a service does on a request."),
        ParamSpec::live("queue", "Queue per service", "calls", 1..=5000, 200, "Requests waiting for a worker; beyond it, a quick 503."),
        ParamSpec::setup("outage_s", "Outage length", "s", 0..=3600, 5, "Scheduled fault: the deepest service is down from 8 s for this long."),
    ],
    strategies: &[
        StrategySpec::naive("every-layer", "Retry at every layer", "Every caller retries a failed or timed-out try at once, up to r times."),
        StrategySpec::naive("backoff", "Exponential backoff", "As every-layer, but retry n waits backoff × 2^(n−1): the same retries, later."),
        StrategySpec::naive("backoff-jitter", "Backoff + jitter", "As backoff, each wait drawn uniformly below it (full jitter): no waves."),
        StrategySpec::fixed("budget", "Retry budget", "As backoff + jitter, and each caller retries only while within its retry budget."),
        StrategySpec::fixed("edge-only", "Retry at the edge only", "Only clients retry (budgeted, backoff + jitter); services pass failures up."),
    ],
    faults: &[FaultSpec::global("outage", "Deepest service down", "A quick 503 to every call; the work it held is lost.")
        .value("down (1) / up (0)", 0..=1, 1)],
    checks: &[
        CheckSpec::new("amplification", "Deepest service's load within 2× the clients'",
            "In any two whole seconds with 20 client requests or more, the deepest service gets at most twice as many \
             calls. Retries at every layer promise (r+1)^depth, with backoff or jitter the same later; a budget \
             (1 + budget)^depth; the edge alone 1 + budget. Names the biggest multiplier."),
        CheckSpec::new("recovers", "Recovers within 5 s",
            "From 5 s after the last disruption (a service back up, a new strategy), 80% of the client requests of any \
             two whole seconds are served. Names the service with the longest queue."),
    ],
    metrics: &[
        MetricSpec::new("amplification", "Deepest's load ÷ client rate (last whole second)", "×", Measure::GaugePer("amp_milli", 1000.0)),
        MetricSpec::new("goodput", "Goodput (client requests served)", "req/s", Measure::Rate("ok")),
        MetricSpec::new("recovery", "Recovery time (to a second with 80% served)", "s",
            Measure::GaugePer("recovery_ms", 1000.0)),
        MetricSpec::new("queue_a", "Queue at A (the edge)", "calls", Measure::Gauge("queue_A")),
        MetricSpec::new("queue_middle", "Longest queue between A and the deepest", "calls", Measure::Gauge("queue_middle")),
        MetricSpec::new("queue_deepest", "Queue at the deepest", "calls", Measure::Gauge("queue_deepest")),
        MetricSpec::new("wasted", "Answers nobody waited for", "/s", Measure::Rate("late_answers")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { EveryLayer, Backoff, BackoffJitter, Budget, EdgeOnly });

/// The services, outermost first (the last of the chain is the deepest).
const NAMES: [&str; 5] = ["A", "B", "C", "D", "E"];
/// First tries and retries per level (0: the clients' calls to A; h: the h-th service's).
const REQUESTS: [&str; 5] = ["requests_0", "requests_1", "requests_2", "requests_3", "requests_4"];
const RETRIES: [&str; 5] = ["retries_0", "retries_1", "retries_2", "retries_3", "retries_4"];
const CLIENTS: u32 = 4;
const BACKOFF_CAP: Micros = 5 * MICROS_PER_S;
/// Each strategy, in the spec's order: (backoff?, jitter, budgeted?, services retry?).
#[rustfmt::skip]
const RULES: [(bool, Jitter, bool, bool); 5] = [(false, Jitter::None, false, true), (true, Jitter::None, false, true),
    (true, Jitter::Full, false, true), (true, Jitter::Full, true, true), (true, Jitter::Full, true, false)];
/// A budget saves up to 10 retries and starts full, as gRPC's retry throttle does.
const SAVED: u32 = 10;
/// The checks: the deepest is provisioned for twice the client load; 80% served within 5 s of a disruption.
const AMP_BOUND: i64 = 2;
const RECOVERY: Micros = 5 * MICROS_PER_S;
const FLOOR_PCT: i64 = 80;
const MIN_ASKED: i64 = 20;

/// A try of a call; the callee answers it `Ok` or `Error` (503).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Call(CallId),
    Ok(CallId),
    #[label = "503"]
    Error(CallId),
}

/// `Retry(op, try_no)`: the next try of an operation is due.
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Timeout(CallId),
    Retry(u32, u32),
    Done(Slot),
}

/// Whom a service answers when its work on a try is over: the caller, and its try.
type Up = (NodeId, CallId);

/// A node of the chain: a client (level 0: requests arrive, parked elsewhere) or the service of
/// level h ≥ 1 (its workers and queue, idle at a client). Each but the deepest calls the next.
#[derive(Clone, Debug)]
pub struct Tier {
    level: usize,
    index: u32,
    deepest: bool,
    arrivals: OpenLoop,
    station: Station<Up>,
    /// Its calls: a client's requests, or a service's calls for the try it serves (whom to answer).
    tries: Retried<Option<Up>>,
    strategy: Strategy,
    timeout_us: Micros,
    /// The outage (the deepest): `Some(true)` while down (a quick 503 to every call), then `Some(false)`.
    down: Option<bool>,
    /// The deepest: when it last came back up (true time), for the recovery time.
    back_at: Option<Time>,
    /// For the checks (true time): up, and under the present strategy (judged afresh), since then.
    calm_since: Time,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Tier> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
    let (depth, strategy) = (setup.param("depth") as usize, Strategy::from_id(setup.strategy()));
    let tries = Retried::new(Calls::new("try_us").counting_late("late_answers"), RetryBudget::new(0, SAVED));
    // Services first (the one of level h is node h − 1), then the clients.
    for (level, index) in (1..=depth).map(|h| (h, h as u32 - 1)).chain((0..CLIENTS).map(|i| (0, i))) {
        sim.add_node(Tier {
            level,
            index,
            deepest: level == depth,
            arrivals: OpenLoop::poisson(0.0),
            station: Station::new(1, Service::Constant(1)).bounded(1, Full::Reject),
            tries: tries.clone(),
            strategy,
            timeout_us: 0,
            down: None,
            back_at: None,
            calm_since: Time::ZERO,
        });
    }
    FaultWindow::secs(8, setup.param("outage_s")).custom(&mut sim, "outage", None, 1, 0);
    sim.check("amplification", move |w| amplification(w, depth));
    sim.check("recovers", move |w| recovers(w, &w.nodes[..depth]));
    // The queues, charted by place in the chain whatever its depth: the edge, the longest in between, the deepest.
    let queue = |l: &Tier| l.station.queue_len() as i64;
    sim.probe("queue_A", move |w| queue(&w.nodes[0]));
    sim.probe("queue_middle", move |w| w.nodes[1..depth.max(2) - 1].iter().map(queue).max().unwrap_or(0));
    sim.probe("queue_deepest", move |w| queue(&w.nodes[depth - 1]));
    sim.probe("recovery_ms", move |w| recovery_us(w, &w.nodes[depth - 1]) / 1000);
    let last_second = |w: &World<Tier>| w.tally("reached", w.now.whole_secs().saturating_sub(1));
    sim.probe("amp_milli", move |w| last_second(w) * 1000 / w.param("rps").max(1));
    Box::new(sim)
}

/// From the deepest's return to the end of the first whole second after it with 80% served (rising till then; else 0).
fn recovery_us(w: &World<Tier>, deepest: &Tier) -> i64 {
    let Some(back) = deepest.back_at else { return 0 };
    let served = |&s: &u64| w.tally("ok", s) * 100 >= FLOOR_PCT * w.tally(REQUESTS[0], s).max(1);
    let first = (back.micros().div_ceil(MICROS_PER_S)..w.now.whole_secs()).find(served);
    first.map_or(w.now, |s| Time::from_secs(s + 1)).since(back) as i64
}

/// If the tally `name` just counted in second `s` ≥ 2: `s`, and sums over the two seconds before (judged now).
fn judged<'a>(w: &'a World<'a, Tier>, name: &str) -> Option<(u64, impl Fn(&'static str) -> i64 + 'a)> {
    let s = w.tallied.iter().find(|t| t.0 == name).map(|t| t.1).filter(|&s| s >= 2)?;
    Some((s, move |name| w.tally(name, s - 2) + w.tally(name, s - 1)))
}

fn amplification(w: &World<Tier>, depth: usize) -> Result<(), String> {
    let Some((s, two)) = judged(w, "reached") else { return Ok(()) };
    let (reached, asked, from) = (two("reached"), two(REQUESTS[0]), s - 2);
    if asked < MIN_ASKED || reached <= AMP_BOUND * asked {
        return Ok(());
    }
    let tries = |h: usize| (two(REQUESTS[h]) + two(RETRIES[h])) as f64 / two(REQUESTS[h]).max(1) as f64;
    let worst = (0..depth).max_by(|&a, &b| tries(a).total_cmp(&tries(b))).unwrap_or(0);
    // The offender: the level whose callers made the most tries per call.
    let (who, most, amp) = (["the clients", "A", "B", "C", "D"][worst], tries(worst), reached as f64 / asked as f64);
    Err(format!(
        "{} got {reached} calls for {asked} client requests in {from}–{s} s ({amp:.1}×, bound {AMP_BOUND}×); {who} \
         multiplied most, {most:.1} tries per call",
        NAMES[depth - 1]
    ))
}

fn recovers(w: &World<Tier>, services: &[Tier]) -> Result<(), String> {
    let Some((s, two)) = judged(w, REQUESTS[0]) else { return Ok(()) };
    let calm = services.iter().map(|l| l.calm_since).max().unwrap_or(Time::ZERO);
    let (asked, ok) = (two(REQUESTS[0]), two("ok"));
    let down = services.iter().any(|l| l.down == Some(true) || !w.is_up(l.index));
    if down || Time::from_secs(s) < calm.plus(RECOVERY) || asked < MIN_ASKED || ok * 100 >= FLOOR_PCT * asked {
        return Ok(());
    }
    let l = services.iter().max_by_key(|l| l.station.queue_len()).expect("a service");
    let (name, queued, wait_ms) = (NAMES[l.index as usize], l.station.queue_len(), l.station.expected_wait_us() / 1000);
    let (since_ms, from, timeout_ms) = (w.now.since(calm) / 1000, s - 2, l.timeout_us / 1000);
    Err(format!(
        "{since_ms} ms after the last disruption, {ok} of {asked} client requests of {from}–{s} s were served (floor \
         {FLOOR_PCT}%); {name} has {queued} calls queued, {wait_ms} ms of work for a {timeout_ms} ms timeout"
    ))
}

impl Node for Tier {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        self.calm_since = ctx.truth();
        self.configure(ctx);
        self.arrivals.start(ctx, Timer::Arrive);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match msg {
            Msg::Call(call) if self.level > 0 => self.call((from, call), ctx),
            Msg::Ok(call) if !self.deepest => self.answered(call, Some(true), ctx),
            Msg::Error(call) if !self.deepest => self.answered(call, Some(false), ctx),
            Msg::Call(_) | Msg::Ok(_) | Msg::Error(_) => ctx.unhandled(&msg),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match timer {
            Timer::Done(slot) => self.done(slot, ctx),
            Timer::Timeout(call) => self.answered(call, None, ctx),
            Timer::Arrive => {
                self.arrivals.on_timer(ctx, Timer::Arrive);
                self.begin(None, ctx);
            }
            Timer::Retry(op, try_no) => {
                if let Some(call) = self.tries.again(ctx, op, try_no, self.timeout_us, Timer::Timeout) {
                    ctx.send(self.level as NodeId, Msg::Call(call));
                }
            }
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // All in memory: the work held, the calls under way, the budget's tokens.
        let lost = self.station.crash(ctx).len();
        ctx.note(format!("crashed: {lost} requests and {} calls under way lost", self.tries.in_flight()));
        self.tries.clear(ctx);
    }

    fn on_control(&mut self, control: Control, ctx: &mut Ctx<Self>) {
        match control {
            Control::Custom { id: "outage", value } => self.outage(value == 1, ctx),
            Control::Strategy(id) => (self.strategy, self.calm_since) = (Strategy::from_id(id), ctx.truth()),
            Control::Param { .. } | Control::Custom { .. } => {}
        }
        self.configure(ctx);
    }

    fn view(&self) -> NodeView {
        let retries = match (self.strategy, self.level) {
            (Strategy::EdgeOnly, 1..) => "no retries".into(),
            (Strategy::Budget | Strategy::EdgeOnly, _) => format!("budget: {} tokens", self.tries.budget().tokens()),
            (st, _) => SPEC.strategies[st as usize].label.to_lowercase(),
        };
        let in_flight = self.tries.in_flight() as i64;
        if self.level == 0 {
            let v = NodeView::new(NodeKind::Client, 0, numbered("client", self.index as u64));
            return v.gauge("tries in flight", in_flight, 100).badge(retries, Tone::Neutral);
        }
        let (s, kind) = (&self.station, if self.deepest { NodeKind::Database } else { NodeKind::Service });
        let (queued, cap, wait) = (s.queue_len() as i64, s.queue_capacity().unwrap_or(0) as i64, s.expected_wait_us());
        let v = NodeView::new(kind, self.level as u8, NAMES[self.index as usize])
            .gauge("queue", queued, cap)
            .gauge("workers busy", s.busy() as i64, s.servers() as i64)
            .badge_if(wait > self.timeout_us, format!("stale: {} ms of queue", wait / MICROS_PER_MS), Tone::Bad)
            .badge_if(self.down == Some(true), "down (503)", Tone::Bad)
            .badge_if(self.down == Some(false), "recovered", Tone::Good);
        match self.deepest {
            true => v,
            false => v.gauge("calls out", in_flight, cap).badge(retries, Tone::Neutral),
        }
    }
}

impl Tier {
    /// At a (re)start and after any change: every parameter acts at once.
    fn configure(&mut self, ctx: &mut Ctx<Tier>) {
        self.timeout_us = ctx.param("timeout_ms") as Micros * MICROS_PER_MS;
        self.tries.budget_mut().set_ratio_pct(ctx.param("budget_pct") as u32);
        // Clients make requests (services' arrivals stay parked); services work (clients' stations stay idle).
        let rate = if self.level == 0 { ctx.param("rps") as f64 / CLIENTS as f64 } else { 0.0 };
        self.arrivals.set_rate_per_s(rate, ctx, Timer::Arrive);
        self.station.set_service(Service::exponential_ms(ctx.param("service_ms") as u64));
        self.station.set_queue_capacity(Some(ctx.param("queue") as usize));
        self.station.set_servers(ctx.param("workers") as u32, ctx, Timer::Done);
    }

    /// The strategy's rule for this caller: when to retry, and whether its budget must allow it.
    fn rule(&self, ctx: &Ctx<Tier>) -> (RetryPolicy, bool) {
        let (backoff, jitter, budgeted, services) = RULES[self.strategy as usize];
        let retries = if self.level == 0 || services { ctx.param("retries") as u32 } else { 0 };
        let base = if backoff { ctx.param("backoff_ms") as Micros * MICROS_PER_MS } else { 0 };
        (RetryPolicy::new(retries, base, BACKOFF_CAP, jitter), budgeted)
    }

    /// A new operation (a client's request, or a service's call for the try it serves: `up`) to node `level`.
    fn begin(&mut self, up: Option<Up>, ctx: &mut Ctx<Tier>) {
        self.count(REQUESTS[self.level], ctx);
        let call = self.tries.start(ctx, up, self.timeout_us, Timer::Timeout);
        ctx.send(self.level as NodeId, Msg::Call(call));
    }

    /// A try ended (`None`: timed out). Once its operation is over, a service tells its caller; a client counts it.
    fn answered(&mut self, call: CallId, ok: Option<bool>, ctx: &mut Ctx<Tier>) {
        let (policy, budgeted) = self.rule(ctx);
        let (up, ok) = match self.tries.ended(ctx, call, ok, &policy, budgeted, Timer::Retry) {
            Ended::Succeeded { data, .. } => (data, true),
            Ended::GaveUp(data) => (data, false),
            Ended::Retrying { .. } => return self.count(RETRIES[self.level], ctx),
            Ended::Stale => return,
        };
        match up {
            Some((from, call)) => ctx.send(from, if ok { Msg::Ok(call) } else { Msg::Error(call) }),
            None => self.count(if ok { "ok" } else { "failed" }, ctx),
        }
    }

    /// One more for a counter, and for the god's-eye tally by true-time second the checks read.
    fn count(&self, name: &'static str, ctx: &mut Ctx<Tier>) {
        ctx.count(name, 1);
        ctx.tally(name, ctx.truth().whole_secs(), 1);
    }

    fn outage(&mut self, down: bool, ctx: &mut Ctx<Tier>) {
        if self.deepest && down != (self.down == Some(true)) {
            (self.down, self.back_at) = (Some(down), (!down).then(|| ctx.truth()));
            self.station.crash(ctx); // the work it held is lost (none as it comes back)
            ctx.note(if down { "down: every call gets a quick 503" } else { "back up" });
            self.calm_since = ctx.truth();
        }
    }

    fn call(&mut self, (from, call): Up, ctx: &mut Ctx<Tier>) {
        if self.deepest {
            self.count("reached", ctx);
        }
        if self.down == Some(true) {
            return ctx.send(from, Msg::Error(call));
        }
        if let Offer::Rejected(_) | Offer::Blocked(_) = self.station.offer((from, call), ctx, Timer::Done) {
            ctx.send(from, Msg::Error(call));
        }
    }

    /// A worker is done with a request: the deepest answers it, the others call the next service.
    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Tier>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Done) else { return };
        match self.deepest {
            true => ctx.send(f.job.0, Msg::Ok(f.job.1)),
            false => self.begin(Some(f.job), ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{between, failed_at, run_sampled, Sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("retry-storm", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64, names: &[&str]) -> Sampled {
        run_sampled(&SPEC, recipe, secs, names)
    }

    /// The outage from 8 s to the end, and services fast and wide enough never to queue: what
    /// reaches the deepest is the retries alone.
    fn everything_fails(strategy: &str, depth: i64, retries: i64) -> Recipe {
        let r = recipe(strategy, 3).with_param("depth", depth).with_param("retries", retries);
        let r = r.with_param("outage_s", 3600).with_param("workers", 64).with_param("service_ms", 1);
        r.with_param("queue", 5000).with_param("timeout_ms", 10_000).with_param("rps", 5)
    }

    #[test]
    fn every_failing_request_costs_the_deepest_r_plus_1_to_the_depth() {
        // With every call to the deepest failing, each layer's operation makes exactly r + 1
        // tries, each of which makes the next layer's operation: (r+1)^d calls reach the
        // deepest per client request (Brooker, "Timeouts, retries, and backoff with jitter";
        // the SRE book's 4³ = 64). The timeouts (10 s) never fire, so the count is exact for every
        // request that has given up; requests still open at the end have made fewer calls, so
        // over all requests failed since the outage the ratio lies between (r+1)^d × the given-up
        // share and (r+1)^d: within 3% here, as fewer than 3% are still open after 300 s (measured:
        // 63.99 of 64 retrying at once, 63.4 with backoff and jitter, whose requests last longer).
        // Backoff and jitter change when the calls come, not how many.
        for (strategy, depth, r) in [
            ("every-layer", 3, 3),
            ("every-layer", 1, 5),
            ("every-layer", 4, 2),
            ("backoff-jitter", 3, 3),
            ("every-layer", 5, 1),
        ] {
            let (run, at) = run(&everything_fails(strategy, depth, r), 300, &["ok"]);
            let m = run.metrics();
            let (ok, failed, asked) = (m.counter("ok"), m.counter("failed"), m.counter(REQUESTS[0]));
            assert_eq!(at[9][0], ok, "nothing succeeds once the deepest is down (each success made one call)");
            let product = libm::pow(r as f64 + 1.0, depth as f64);
            let per_request = (m.counter("reached") - ok) as f64 / (asked - ok) as f64;
            let given_up = failed as f64 / (asked - ok) as f64;
            assert!(given_up > 0.97 && per_request <= product, "{strategy} d={depth} r={r}: {per_request}");
            assert!(
                per_request >= product * given_up,
                "{strategy} d={depth} r={r}: {per_request} < {product} × {given_up}"
            );
            assert_eq!((m.counter("late_answers"), m.counter("rejected")), (0, 0));
        }
    }

    #[test]
    fn a_budget_caps_retries_at_its_share_at_every_layer() {
        // With a budget b (10%) and every call failing, a caller's retries are at most b × its
        // requests plus the 10 tokens it saved (RetryBudget's bound, exact); and as tokens go
        // as soon as they come, they are that many for the requests made since the outage began,
        // less under a token per caller left over and the deposits of requests still open: within
        // 1% of the requests here. So each layer adds b to the load, and the deepest sees
        // (1 + b)³ = 1.331 calls per client request once the saved tokens are spent: within 1.5%.
        let names = ["reached", REQUESTS[0], REQUESTS[1], REQUESTS[2]];
        let (run, at) = run(&everything_fails("budget", 3, 3).with_param("rps", 100), 60, &names);
        let m = run.metrics();
        for level in 0..3 {
            let callers = if level == 0 { CLIENTS as f64 } else { 1.0 };
            let (requests, retries) = (m.counter(REQUESTS[level]) as f64, m.counter(RETRIES[level]) as f64);
            assert!(retries <= 0.1 * requests + SAVED as f64 * callers, "level {level}: {retries} for {requests}");
            let since = between(&at, level + 1, 8, 60);
            let want = 0.1 * since + SAVED as f64 * callers;
            assert!(retries >= want - callers - 0.01 * since, "level {level}: {retries} retries, {want} expected");
        }
        let per_request = between(&at, 0, 20, 60) / between(&at, 1, 20, 60);
        assert!((per_request / 1.331 - 1.0).abs() < 0.015, "{per_request} calls per client request, (1.1)³ = 1.331");
    }

    #[test]
    fn try_every_layer_the_storm_outlives_the_outage() {
        // Step 1: C is down 8–13 s; long after it is back, A's and B's queues are full of work whose
        // callers gave up, and almost nothing is served.
        for seed in 1..=5 {
            let (r, at) = run(&recipe("every-layer", seed), 30, &["reached", REQUESTS[0], "ok"]);
            let (amp_at, why) = failed_at(r.as_ref(), "amplification").expect("the storm reaches C");
            assert!((8.0..=12.0).contains(&amp_at) && why.contains("multiplied most"), "seed {seed}: {amp_at} {why}");
            assert!(between(&at, 0, 9, 13) > 4.0 * between(&at, 1, 9, 13), "seed {seed}: C gets > 4× the client load");
            let (recovers_at, why) = failed_at(r.as_ref(), "recovers").expect("no recovery");
            assert!((18.0..19.0).contains(&recovers_at) && why.contains("calls queued"), "seed {seed}: {why}");
            assert!(between(&at, 2, 18, 30) < 0.05 * between(&at, 1, 18, 30), "seed {seed}: goodput recovered");
            let queues = ["queue_A", "queue_middle"].map(|q| r.metrics().gauge(q));
            assert!(queues.iter().all(|&q| q >= 180), "seed {seed}: A's and B's queues hold {queues:?} of 200");
            // Never recovered: the recovery time is all the time since C came back at 13 s.
            // (Read at the last sample, just before 30 s.)
            let recovery_ms = r.metrics().gauge("recovery_ms");
            assert!((16_990..=17_000).contains(&recovery_ms), "seed {seed}: {recovery_ms} ms");
        }
    }

    #[test]
    fn try_backoff_and_jitter_move_the_retries_but_keep_them() {
        // Step 2: the same storm, later and smoother — as many calls reach C per client request
        // while it is down, and the system does not recover.
        for seed in 1..=5 {
            let (r, at) = run(&recipe("backoff-jitter", seed), 30, &["reached", REQUESTS[0], "ok"]);
            assert!(between(&at, 0, 9, 13) > 4.0 * between(&at, 1, 9, 13), "seed {seed}: C gets > 4× the client load");
            assert!(failed_at(r.as_ref(), "recovers").is_some(), "seed {seed}");
            assert!(between(&at, 2, 18, 30) < 0.05 * between(&at, 1, 18, 30), "seed {seed}: goodput recovered");
        }
    }

    #[test]
    fn try_a_budget_recovers_within_a_second() {
        // Step 3: C never gets twice the client load, and in the second after it is back, 80% of
        // the requests made are served.
        for seed in 1..=10 {
            let (r, at) = run(&recipe("budget", seed), 30, &["reached", REQUESTS[0], "ok"]);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}: {:?}", r.checks());
            let peak = (2..=30).map(|s| between(&at, 0, s - 2, s) / between(&at, 1, s - 2, s)).fold(0.0, f64::max);
            assert!(peak < 2.0, "seed {seed}: C got {peak:.2}× the client load");
            assert!(between(&at, 2, 13, 14) >= 0.8 * between(&at, 1, 13, 14), "seed {seed}: not back within a second");
            assert_eq!(r.metrics().gauge("recovery_ms"), 1_000, "seed {seed}: the first whole second after 13 s");
        }
    }

    #[test]
    fn try_at_depth_five_budgets_compound_and_the_edge_does_not() {
        // Step 4: while C is down, budgets at five layers let (1.1)⁵ ≈ 1.6 calls per client request
        // reach it; retrying only at the edge, 1.1.
        for seed in 1..=5 {
            let load = |st| {
                let (_, at) = run(&recipe(st, seed).with_param("depth", 5), 13, &["reached", REQUESTS[0]]);
                between(&at, 0, 9, 13) / between(&at, 1, 9, 13)
            };
            let (budget, edge) = (load("budget"), load("edge-only"));
            assert!(budget > 1.4 && edge < 1.25, "seed {seed}: budget {budget:.2}×, edge-only {edge:.2}×");
        }
    }

    #[test]
    fn switching_to_a_budget_mid_storm_ends_it() {
        // The strategy is live: set to `budget` at 20 s, deep in the storm, the retries stop
        // feeding the queues, they drain, and goodput is back before 25 s; `recovers` judges the
        // new strategy from the switch.
        let switch = ActionKind::SetStrategy { id: "budget".into() };
        let r = recipe("every-layer", 1).with_action(Time::from_secs(20), switch);
        let (r, at) = run(&r, 30, &[REQUESTS[0], "ok"]);
        assert!(between(&at, 1, 25, 30) >= 0.9 * between(&at, 0, 25, 30));
        assert!(failed_at(r.as_ref(), "recovers").is_some_and(|(t, _)| t < 20.0), "the earlier failure stays");
        // The recovery time stops rising: a second from the switch to 26 s had 80% served, so it
        // is 8 to 13 s after C came back at 13 s (not the 17 s of a run that never recovers).
        let recovery_ms = r.metrics().gauge("recovery_ms");
        assert!((8_000..=13_000).contains(&recovery_ms), "{recovery_ms} ms");
    }

    #[test]
    fn the_view_shows_the_outage_the_stale_queues_and_the_retry_state() {
        let badges = |strategy: &str, secs: u64, node: usize| {
            let (r, _) = run(&recipe(strategy, 1), secs, &[]);
            r.frame(0).nodes[node].view.badges.iter().map(|b| b.text.clone()).collect::<Vec<_>>()
        };
        // C (node 2) is down during the outage and says it has recovered after; A (node 0) is
        // buried in work its callers gave up on; a client (node 3) shows its retry state.
        assert!(badges("every-layer", 10, 2).contains(&"down (503)".to_string()));
        assert!(badges("every-layer", 20, 2).contains(&"recovered".to_string()));
        assert!(badges("every-layer", 20, 0).iter().any(|b| b.starts_with("stale:")));
        assert!(badges("budget", 20, 0).iter().all(|b| !b.starts_with("stale:")));
        assert_eq!(badges("edge-only", 20, 0), ["no retries"]);
        assert!(badges("budget", 20, 3).iter().any(|b| b.starts_with("budget: ")));
        assert_eq!(badges("every-layer", 5, 3), ["retry at every layer"]);
    }
}
