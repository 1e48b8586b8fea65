//! Cascading failure: clients → Order → Inventory → Pricing → Tax, each a Tomcat-style service (a pool of threads, an accept queue). When Tax hangs, threads up the chain fill with calls waiting on it and Order answers 503 while every CPU sits idle; timeouts, breakers and a fallback stop the cascade.

use crate::parts::arrivals::OpenLoop;
use crate::parts::breaker::{Admit, Breaker, Phase, Tuning};
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::pool::{Acquire, Pool, Seat};
use crate::parts::station::Service as Cpu;
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::VecDeque;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "cascading-failure",
        title: "Cascading failure",
        category: "Resilience",
        seeds: &["S3#18", "S3#2"],
        summary: "Order → Inventory → Pricing → Tax, each with 20 threads and an accept queue of 20. At 10 s Tax \
                  hangs: with no timeouts every thread up the chain waits on it, and orders get 503 while every CPU \
                  is idle. Timeouts bound the wait, breakers stop it, a fallback keeps the orders.",
        note: Note {
            what_can_go_wrong: "A thread calling the service below is held until the answer. When Tax hangs (accepting \
                connections, answering none), Pricing's threads wait on it till it is back, Inventory's on Pricing, \
                Order's on Inventory, and Order's accept queue fills: 503s with idle CPU, the seed's '503 but CPU and \
                memory look fine'. Timeouts still hold threads by Little's law (150/s × the wait), and no order \
                completes without tax. The model: Poisson orders; each service a thread pool with a bounded FIFO \
                accept queue (503 when full); a thread computes (exponential, 5 ms), then calls the next service and \
                holds on; CPU use is the share of threads computing; links 0.5–1.5 ms between services, 1–3 ms from a \
                client; a hung Tax resets its connections when it recovers; nothing is cancelled upstream.",
            what_you_sacrifice: "Timeouts turn a hang into errors; rate × timeout must fit the pool; they shrink \
                inward (T, 2T, 3T). A breaker saves threads, not orders. A fallback trades correctness for uptime: an \
                estimated tax is reconciled later. Not modelled: taking the order and taxing it later (an outbox), \
                which moves the failure into a queue (see the job queue) and did not fit this model.",
            at_10x: "Ten times the orders hold ten times the threads for the same timeout: one that fits today \
                exhausts the pool at peak. Each synchronous hop of a call graph is one more pool a dead leaf drains.",
            resembles: "Tomcat's maxThreads (200) and acceptCount (100); Hystrix and resilience4j (timeout, breaker \
                and fallback on every dependency call); 'Release It!' (integration points, blocked threads).",
            try_this: &[
                "Play `none`: at 10 s Tax hangs; within a second every thread of Pricing, Inventory and Order is held \
                 waiting (gauges), almost none computing, Order answers 503 to nearly every order: both checks fail.",
                "Switch to `timeouts`: by Little's law (150/s × the wait) 15 of Pricing's threads wait (100 ms), 16 of \
                 Inventory's (107), 17 of Order's (114), plus 0.75 computing each: Order's pool runs out, over half \
                 the orders find all 20 threads taken (Erlang C: 52%), the check names it; every order fails.",
                "Switch to `breaker`: within a second the breakers open and the threads go free, yet every order still \
                 fails, ten times faster. `fallback` answers with a cached tax estimate: both checks hold.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=50, 4, "Client nodes; the order rate is split between them."),
        ParamSpec::live("rps", "Order rate", "orders/s", 1..=2000, 150, "Total Poisson order rate of the clients."),
        ParamSpec::live("threads", "Threads per service", "", 1..=500, 20, "maxThreads: held computing and waiting."),
        ParamSpec::live("accept_queue", "Accept queue", "requests", 0..=1000, 20, "acceptCount: more get 503."),
        ParamSpec::live("cpu_ms", "CPU per request", "ms", 1..=200, 5, "Mean (exponential) compute at each service."),
        ParamSpec::live("timeout_ms", "Timeout (Pricing → Tax)", "ms", 10..=10_000, 100, "Not under `none`; \
            Inventory waits twice it for Pricing, Order three times it.").step(10),
        ParamSpec::live("client_timeout_ms", "Client timeout", "ms", 100..=60_000, 2000, "A client's wait.").step(100),
        ParamSpec::setup("outage_at", "Tax hangs at", "s", 0..=3600, 10, "Scheduled fault: Tax stops answering."),
        ParamSpec::setup("outage_len", "Hang length", "s", 0..=3600, 15, "How long Tax hangs (0: never)."),
    ],
    strategies: &[
        StrategySpec::naive("none", "No timeouts", "Synchronous calls, no timeout: a thread waits while it hangs."),
        StrategySpec::naive("timeouts", "Timeouts", "Each call gives up after its timeout and answers an error."),
        StrategySpec::naive("breaker", "+ circuit breaker", "A breaker on each call fails fast once half failed."),
        StrategySpec::fixed("fallback", "+ fallback", "Pricing answers with a cached tax estimate when Tax fails."),
    ],
    faults: &[FaultSpec::node("hang", "Hang", "It accepts calls and answers none (1); at 0 it recovers and resets \
        the hung connections.").value("hang (1) / recover (0)", 0..=1, 1)],
    checks: &[
        CheckSpec::new("orders-succeed", "Orders keep succeeding", "Of the last 20 orders answered (by all clients, \
            at any rate: at 1 order/s they span 20 s), at least 19 (95%) succeeded."),
        CheckSpec::new("no-pool-exhausted", "No pool exhausted by waits", "No service has every thread held, most \
            waiting, while its oldest call below waited or all its calls failed for 2 s (a breaker learns by then)."),
    ],
    metrics: &[
        MetricSpec::new("success", "Order success", "%", Measure::Percent { num: "ok", rest: "failed" }),
        MetricSpec::new("p99", "Order latency p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("refused", "503s to clients", "req/s", Measure::Rate("refused_order")),
        MetricSpec::new("estimated", "Orders with an estimated tax", "orders/s", Measure::Rate("estimated")),
        MetricSpec::new("held_order", "Order: threads held", "threads", Measure::Gauge("held_order")),
        MetricSpec::new("busy_order", "Order: threads computing (CPU)", "threads", Measure::Gauge("busy_order")),
        MetricSpec::new("held_pricing", "Pricing: threads held", "threads", Measure::Gauge("held_pricing")),
        MetricSpec::new("busy_pricing", "Pricing: threads computing (CPU)", "threads", Measure::Gauge("busy_pricing")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { None, Timeouts, Breaker, Fallback });

/// Nodes 0–3 are the services (Order, …, Tax), each calling the next; the clients follow, calling Order.
const ORDER: NodeId = 0;
const PRICING: usize = 2;
const TAX: usize = 3;
const NAME: [&str; 4] = ["Order", "Inventory", "Pricing", "Tax"];
const HELD: [&str; 4] = ["held_order", "held_inventory", "held_pricing", "held_tax"];
const BUSY: [&str; 4] = ["busy_order", "busy_inventory", "busy_pricing", "busy_tax"];
const WAITING: [&str; 4] = ["waiting on Inventory", "waiting on Pricing", "waiting on Tax", "waiting"];
/// The success floor (%) over the last answers; how long a pool may be exhausted after a service below
/// stopped answering (a breaker learns in a timeout and half its window, then drains); "no timeout".
const FLOOR: (usize, usize) = (95, 20);
const GRACE: Micros = 2 * MICROS_PER_S;
const FOREVER: Micros = 86_400 * MICROS_PER_S;
/// Hystrix-like: opens once half the calls of the last second failed (20 at least), open 2 s, 3 probes.
const TUNING: Tuning =
    Tuning { threshold_pct: 50, window_us: MICROS_PER_S, min_requests: 20, open_us: 2 * MICROS_PER_S, probes: 3 };

/// A call down the chain (client → Order too) and its answers: 200 (`true`: the tax is estimated), 503 (no
/// thread, a full accept queue), or an error (the call below failed or timed out: 500, 502, 504).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Call(CallId),
    #[label = "200"]
    Ok(CallId, bool),
    #[label = "503"]
    Unavailable(CallId),
    #[label = "error"]
    Error(CallId),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    Computed(Seat),
    CallTimeout(CallId),
    HalfOpen,
}

/// Who a request is for: the caller and its call id.
type Job = (NodeId, CallId);

/// A service (`tier` 0–3), or a client (`tier` 4 and up) that sends orders to Order and has no threads.
#[derive(Clone, Debug)]
pub struct Hop {
    tier: usize,
    strategy: Strategy,
    arrivals: OpenLoop,
    /// The threads, each held by a request from its start to its answer, and the accept queue.
    pool: Pool<Job>,
    /// Calls to the service below: for which held thread (a client's orders: none), a probe?, sent (true time).
    calls: Calls<(Option<Seat>, bool, Time)>,
    breaker: Breaker,
    /// While hung: the calls accepted and never answered (reset when it recovers).
    hung: Option<Vec<Job>>,
    /// Since when (true time) every call below has failed (for the check); a client's last 20 answers.
    failing_since: Option<Time>,
    recent: VecDeque<(Time, &'static str)>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Hop> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let (strategy, clients) = (Strategy::from_id(setup.strategy()), setup.param("clients") as usize);
    for tier in 0..=TAX + clients {
        let rate = if tier > TAX { setup.param("rps") as f64 / clients as f64 } else { 0.0 };
        let latency = ["call_inventory_us", "call_pricing_us", "call_tax_us", "unused_us"].get(tier);
        let calls = Calls::new(latency.unwrap_or(&"latency_us")).counting_late("late_answers");
        let (arrivals, pool, breaker) = (OpenLoop::poisson(rate), Pool::new(0), Breaker::new(TUNING));
        let (hung, failing_since, recent) = (None, None, VecDeque::new());
        let id = sim.add_node(Hop { tier, strategy, arrivals, pool, calls, breaker, hung, failing_since, recent });
        if tier > TAX {
            sim.net().set_link(id, ORDER, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 3_000 }));
        }
    }
    let outage = FaultWindow::secs(setup.param("outage_at"), setup.param("outage_len"));
    outage.custom(&mut sim, "hang", Some(TAX as NodeId), 1, 0);
    sim.check("orders-succeed", |w| {
        let mut last: Vec<_> = w.nodes[TAX + 1..].iter().flat_map(|c| c.recent.iter().copied()).collect();
        last.sort_by_key(|a| std::cmp::Reverse(a.0));
        let last = &last[..last.len().min(FLOOR.1)];
        let count = |how: &str| last.iter().filter(|a| a.1 == how).count();
        if last.len() == FLOOR.1 && count("ok") * 100 < FLOOR.0 * FLOOR.1 {
            let [busy, error, late] = ["failed_503", "failed_error", "failed_timeout"].map(count);
            let why = format!("503: {busy}, error: {error}, client timeout: {late}");
            return Err(format!("{} of the last {} orders answered succeeded ({why})", count("ok"), FLOOR.1));
        }
        Ok(())
    });
    sim.check("no-pool-exhausted", |w| {
        for s in w.nodes[..TAX].iter().filter(|s| s.exhausted()) {
            let since = s.calls.iter().next().map(|(_, c)| c.2).into_iter().chain(s.failing_since).min();
            let Some(us) = since.map(|t| w.now.since(t)).filter(|&us| us >= GRACE) else { continue };
            let (name, held, blocked, queued) = (NAME[s.tier], s.pool.held(), s.pool.blocked(), s.pool.queued());
            let (below, secs) = (NAME[s.tier + 1], us as f64 / 1e6);
            return Err(format!(
                "{name}: all {held} threads held, {blocked} waiting on {below}, {queued} queued: {below} has not \
                 answered, or only failed, for {secs:.1} s"
            ));
        }
        Ok(())
    });
    Box::new(sim)
}

impl Node for Hop {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        (self.failing_since, _) = (None, self.arrivals.start(ctx, Timer::Send));
        self.configure(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match msg {
            Msg::Call(id) if self.tier <= TAX => self.request((from, id), ctx),
            Msg::Ok(call, estimated) if self.tier != TAX => self.ended(call, Some(estimated), "ok", ctx),
            Msg::Unavailable(call) if self.tier != TAX => self.ended(call, None, "failed_503", ctx),
            Msg::Error(call) if self.tier != TAX => self.ended(call, None, "failed_error", ctx),
            other => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match timer {
            Timer::Send => self.send(ctx),
            Timer::Computed(seat) => self.computed(seat, ctx),
            Timer::CallTimeout(call) => self.ended(call, None, "failed_timeout", ctx),
            Timer::HalfOpen => self.breaker.half_open(ctx),
        }
    }

    /// Threads, queue, calls and breaker are memory: lost; callers hang until their timeouts (a client's
    /// orders in flight are forgotten, their answers come back late).
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        let lost = self.pool.clear(ctx).len() + self.hung.take().map_or(0, |h| h.len());
        (_, _, self.failing_since) = (self.calls.clear(ctx), self.breaker.reset(ctx), None);
        ctx.note(format!("{lost} requests lost with the threads and the accept queue"));
        self.publish(ctx);
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match c {
            Control::Param { id: "rps", value } if self.tier > TAX => {
                self.arrivals.set_rate_per_s(value as f64 / ctx.param("clients") as f64, ctx, Timer::Send)
            }
            Control::Strategy(id) => (self.strategy, _) = (Strategy::from_id(id), self.breaker.reset(ctx)),
            Control::Custom { id: "hang", value } => self.hang(value == 1, ctx),
            Control::Param { .. } | Control::Custom { .. } => self.configure(ctx),
        }
        self.rearm(ctx);
    }

    fn view(&self) -> NodeView {
        if self.tier > TAX {
            let v = NodeView::new(NodeKind::Client, 0, numbered("client", (self.tier - TAX) as u64));
            return v.gauge("orders in flight", self.calls.len() as i64, 100);
        }
        let (size, held, busy) = (self.pool.size() as i64, self.pool.held() as i64, self.pool.busy() as i64);
        let kind = if self.tier == TAX { NodeKind::Database } else { NodeKind::Service };
        let (cpu, used) = (busy * 100 / size.max(1), held * 100 / size.max(1));
        let v = NodeView::new(kind, self.tier as u8 + 1, NAME[self.tier])
            .gauge("computing (CPU)", busy, size)
            .gauge(WAITING[self.tier], held - busy, size)
            .gauge("accept queue", self.pool.queued() as i64, self.pool.bound().unwrap_or(0) as i64)
            .badge(format!("CPU {cpu}% · pool {used}%"), Tone::Neutral)
            .badge_if(self.exhausted(), "503 with idle CPU", Tone::Bad);
        match (&self.hung, self.strategy, self.breaker.phase()) {
            (Some(hung), ..) => v.badge(format!("hung: {} calls unanswered", hung.len()), Tone::Bad),
            (None, Strategy::Breaker | Strategy::Fallback, phase) if self.tier < TAX => v.badge(
                format!("breaker {}", phase.name()),
                [Tone::Warn, Tone::Good][(phase == Phase::Closed) as usize],
            ),
            _ => v,
        }
    }
}

impl Hop {
    /// A smaller pool takes no thread away; a bigger one starts waiters. (A client has an unused pool.)
    fn configure(&mut self, ctx: &mut Ctx<Hop>) {
        self.pool.set_bound(Some(ctx.param("accept_queue") as usize));
        self.pool.set_size(ctx.param("threads") as u32, ctx).into_iter().for_each(|seat| self.compute(seat, ctx));
        self.publish(ctx);
    }

    /// How long a call from here waits for the one below: T × the hops left, so shorter inward.
    fn timeout_us(&self, ctx: &Ctx<Hop>) -> Micros {
        let hops = match (self.tier, self.strategy) {
            (tier, _) if tier > TAX => return ctx.param("client_timeout_ms") as Micros * MICROS_PER_MS,
            (_, Strategy::None) => FOREVER,
            (tier, _) => (TAX - tier) as Micros,
        };
        hops.saturating_mul(ctx.param("timeout_ms") as Micros * MICROS_PER_MS).min(FOREVER)
    }

    /// A new timeout applies to calls under way too (a client library reads it per request): each gets one
    /// more timer, at its start + the new timeout; the first to fire ends it, the other finds it gone.
    fn rearm(&mut self, ctx: &mut Ctx<Hop>) {
        let (timeout, now) = (self.timeout_us(ctx), ctx.now().micros());
        let sent: Vec<_> = self.calls.iter().filter_map(|(id, _)| Some((id, self.calls.sent_at(id)?))).collect();
        for (id, at) in sent.into_iter().filter(|_| timeout < FOREVER) {
            ctx.set_timer(at.plus(timeout).micros().saturating_sub(now).max(1), Timer::CallTimeout(id));
        }
    }

    /// Every thread held, most waiting on a call below: the "503 with idle CPU".
    fn exhausted(&self) -> bool {
        self.pool.is_full() && self.pool.held() > 0 && self.pool.blocked() * 2 > self.pool.held()
    }

    fn send(&mut self, ctx: &mut Ctx<Hop>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        let id = self.calls.start(ctx, (None, false, ctx.truth()), self.timeout_us(ctx), Timer::CallTimeout);
        ctx.send(ORDER, Msg::Call(id));
    }

    fn request(&mut self, job: Job, ctx: &mut Ctx<Hop>) {
        if let Some(hung) = &mut self.hung {
            return hung.push(job);
        }
        match self.pool.acquire(job, ctx, |_| unreachable!("the accept queue has no wait timeout")) {
            Acquire::Granted(seat) => self.compute(seat, ctx),
            Acquire::Queued(_) => ctx.count(if self.tier == 0 { "queued_order" } else { "queued_below" }, 1),
            Acquire::Refused((from, id)) => {
                ctx.count(if self.tier == 0 { "refused_order" } else { "refused_below" }, 1);
                ctx.send(from, Msg::Unavailable(id));
            }
        }
        self.publish(ctx);
    }

    /// A thread starts on its request: it computes first.
    fn compute(&mut self, seat: Seat, ctx: &mut Ctx<Hop>) {
        self.pool.set_busy(seat, true);
        let us = Cpu::exponential_ms(ctx.param("cpu_ms") as u64).sample_us(ctx.rng());
        ctx.set_timer(us, Timer::Computed(seat));
    }

    /// Computed: Tax answers; the others call the service below and wait, holding the thread.
    fn computed(&mut self, seat: Seat, ctx: &mut Ctx<Hop>) {
        if self.tier == TAX {
            return self.finish(seat, Some(false), ctx);
        }
        let probe = match self.strategy {
            Strategy::None | Strategy::Timeouts => false,
            Strategy::Breaker | Strategy::Fallback => match self.breaker.admit() {
                Admit::Refuse => return self.finish(seat, None, ctx),
                admit => admit == Admit::Probe,
            },
        };
        let call = self.calls.start(ctx, (Some(seat), probe, ctx.truth()), self.timeout_us(ctx), Timer::CallTimeout);
        self.pool.set_busy(seat, false);
        ctx.send(self.tier as NodeId + 1, Msg::Call(call));
        self.publish(ctx);
    }

    /// A call below (an order) ended (`how`): 200 (`Some(estimated)`), error, timeout. A service answers its caller.
    fn ended(&mut self, call: CallId, ok: Option<bool>, how: &'static str, ctx: &mut Ctx<Hop>) {
        let held = if how == "failed_timeout" { self.calls.timeout(call) } else { self.calls.reply(call, ctx) };
        let Some((seat, probe, _)) = held else { return };
        self.failing_since = if ok.is_some() { None } else { self.failing_since.or(Some(ctx.truth())) };
        let Some(seat) = seat else {
            ctx.count(if ok.is_some() { "ok" } else { "failed" }, 1);
            self.recent.truncate(FLOOR.1 - 1);
            return self.recent.push_front((ctx.truth(), how));
        };
        if matches!(self.strategy, Strategy::Breaker | Strategy::Fallback) {
            self.breaker.record(ok.is_some(), probe, ctx, Timer::HalfOpen);
        }
        self.finish(seat, ok, ctx)
    }

    /// Answers the request (`None`: the call below failed, or its breaker is open, and Pricing may fall back on
    /// a cached tax) and frees its thread for the next one in the accept queue.
    fn finish(&mut self, seat: Seat, ok: Option<bool>, ctx: &mut Ctx<Hop>) {
        let fallback = ok.is_none() && self.strategy == Strategy::Fallback && self.tier == PRICING;
        let (ok, _) = (ok.or(fallback.then_some(true)), ctx.count("estimated", fallback as i64));
        let Some(released) = self.pool.release(seat, ctx) else { return };
        let (from, id) = released.job;
        ctx.send(from, ok.map_or(Msg::Error(id), |estimated| Msg::Ok(id, estimated)));
        if let Some(next) = released.next {
            self.compute(next, ctx);
        }
        self.publish(ctx);
    }

    /// Hangs (accepting calls, answering none) or recovers, resetting the hung connections.
    fn hang(&mut self, on: bool, ctx: &mut Ctx<Hop>) {
        if on && self.hung.is_none() && self.tier <= TAX {
            self.hung = Some(Vec::new());
            ctx.note(format!("{} hangs: it accepts calls and answers none", NAME[self.tier]));
        } else if let (false, Some(hung)) = (on, self.hung.take()) {
            ctx.note(format!("{} is back: {} hung connections reset", NAME[self.tier], hung.len()));
            hung.into_iter().for_each(|(from, id)| ctx.send(from, Msg::Error(id)));
        }
    }

    fn publish(&self, ctx: &mut Ctx<Hop>) {
        if self.tier <= TAX {
            ctx.gauge(HELD[self.tier], self.pool.held() as i64);
            ctx.gauge(BUSY[self.tier], self.pool.busy() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{between, failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("cascading-failure", strategy, seed)
    }

    /// Counters read at each whole second, by index in `run`'s samples.
    const COUNTERS: [&str; 5] = ["ok", "failed", "refused_order", "estimated", "queued_order"];
    const OK: usize = 0;
    const FAILED: usize = 1;
    const REFUSED: usize = 2;

    /// Runs `recipe` to `secs`, reading the counters each second and the gauges `gauges` every 250 ms
    /// from `from` s to `to` s (their means are returned in order), as the charts sample them.
    fn run(
        recipe: Recipe,
        secs: u64,
        (from, to): (u64, u64),
        gauges: &[&str],
    ) -> (Box<dyn Run>, Vec<Vec<i64>>, Vec<f64>) {
        let (mut r, at) = run_sampled(&SPEC, &recipe, from, &COUNTERS);
        let (mut at, mut sums, mut n) = (at, vec![0.0; gauges.len()], 0.0);
        for quarter in from * 4 + 1..=secs * 4 {
            r.run_until(Time::from_ms(quarter * 250), u64::MAX);
            if quarter <= to * 4 {
                (0..gauges.len()).for_each(|i| sums[i] += r.metrics().gauge(gauges[i]) as f64);
                n += 1.0;
            }
            if quarter % 4 == 0 {
                at.push(COUNTERS.iter().map(|c| r.metrics().counter(c)).collect());
            }
        }
        assert_eq!(r.unhandled(), 0);
        (r, at, sums.into_iter().map(|x| x / n).collect())
    }

    /// The share of orders answered from `from` s to `to` s that succeeded.
    fn success(at: &[Vec<i64>], from: usize, to: usize) -> f64 {
        let ok = between(at, OK, from, to);
        ok / (ok + between(at, FAILED, from, to))
    }

    #[test]
    fn try_none_threads_fill_with_waits_and_order_answers_503_with_idle_cpu() {
        // Step 1. Tax hangs at 10 s; Pricing's 20 threads wait on it for good, Inventory's on Pricing,
        // Order's on Inventory, Order's queue fills, and from then on Order refuses almost every order
        // while its threads compute nothing. When Tax comes back at 25 s it resets the hung calls: the
        // chain drains and orders succeed again.
        // The success check fails once 2 of the last 20 orders failed: the first 503s, some 0.3 s after the
        // hang (20 threads then 20 queued at 150/s); the pool check 2 s after Order's oldest call went out.
        let gauges = ["held_order", "busy_order", "held_inventory", "busy_inventory", "held_pricing", "busy_pricing"];
        for seed in 1..=3 {
            let (r, at, mean) = run(recipe("none", seed), 30, (11, 24), &gauges);
            let (at_s, why) = failed_at(r.as_ref(), "orders-succeed").expect("orders fail");
            assert!((10.2..10.5).contains(&at_s) && why.contains("18 of the last 20"), "seed {seed}: {at_s} {why}");
            let (at_s, why) = failed_at(r.as_ref(), "no-pool-exhausted").expect("pools exhausted");
            assert!((11.9..12.1).contains(&at_s) && why.starts_with("Order: all 20 threads held"), "{at_s} {why}");
            let (held, busy) = (mean[0] + mean[2] + mean[4], mean[1] + mean[3] + mean[5]);
            assert!(held >= 59.5 && busy < 0.1, "seed {seed}: three pools held {held:.1}, computing {busy:.2}");
            let refused = between(&at, REFUSED, 11, 24) / (between(&at, OK, 11, 24) + between(&at, FAILED, 11, 24));
            assert!(refused > 0.9 && success(&at, 11, 24) < 0.01, "seed {seed}: 503 to {refused:.3} of orders");
            assert!(success(&at, 26, 30) > 0.99, "seed {seed}: after Tax is back, {:.3}", success(&at, 26, 30));
        }
    }

    #[test]
    fn littles_law_predicts_the_threads_waiting_on_a_dead_tax() {
        // The note's "150/s × 0.1 s = 15 of 20". With timeouts and a Tax that never answers, each hop's
        // threads wait a fixed time per call, and by Little's law the mean number waiting is λ × that
        // time (any distribution; with 200 threads no call queues, so every hop sees all 150/s):
        //   Pricing waits T = 100 ms                                   → 15.0
        //   Inventory waits a link (1 ms mean), Pricing's CPU (5 ms), T, a link back: 107 ms → 16.05
        //   Order waits a link, Inventory's CPU, Inventory's 107 ms, a link back: 114 ms   → 17.1
        // and each computes λ × 5 ms = 0.75 threads. Sampled every 250 ms (as the charts are) for 200 s:
        // Pricing's count is Poisson (s.d. 3.9) and forgets within T, so the mean's standard error is near
        // 0.9%; over seeds 1–5 all three means fell within ±1.9% of these. ±4% is about twice that, and
        // still catches a wait that leaves out Pricing's CPU (−4.7% at Inventory) or uses a wrong timeout.
        let plan = |seed| recipe("timeouts", seed).with_param("threads", 200).with_param("outage_at", 0);
        let gauges = ["held_pricing", "busy_pricing", "held_inventory", "busy_inventory", "held_order", "busy_order"];
        for seed in 1..=2 {
            let (_, _, m) = run(plan(seed).with_param("outage_len", 3600), 205, (5, 205), &gauges);
            let waiting = [m[0] - m[1], m[2] - m[3], m[4] - m[5]];
            for (got, want, hop) in
                [(waiting[0], 15.0, "Pricing"), (waiting[1], 16.05, "Inventory"), (waiting[2], 17.1, "Order")]
            {
                assert!((got - want).abs() <= 0.04 * want, "seed {seed}: {hop} waits {got:.2}, Little {want:.2}");
            }
            for busy in [m[1], m[3], m[5]] {
                assert!((busy - 0.75).abs() < 0.1, "seed {seed}: {busy:.3} computing, λ × 5 ms = 0.75");
            }
        }
    }

    #[test]
    fn try_timeouts_threads_still_wait_and_orders_pool_runs_out() {
        // Step 2: each hop holds λ × (its wait + 5 ms CPU): Pricing 15.75, Inventory 16.8, Order 17.85
        // erlangs on 20 threads (the littles_law test checks the waits with 200 threads). Order's is the
        // fullest: Erlang C (M/M/20, 17.85 erlangs) gives 52% of arrivals finding every thread taken. Calls
        // also queue at Inventory's fuller-than-usual pool, so Order holds a little longer: seeds 1–3 held
        // 18.0–18.3 and 54–62% of orders found no thread. ±5% on the threads, 45–70% on the share allow for
        // that and a seed's spread, and still tell Order's 17.85 from Inventory's 16.8. The check names
        // Order, and no order succeeds while Tax hangs.
        let gauges = ["held_order", "held_inventory", "held_pricing"];
        for seed in 1..=3 {
            let (r, at, m) = run(recipe("timeouts", seed), 25, (11, 24), &gauges);
            let taken = (between(&at, 4, 11, 24) + between(&at, REFUSED, 11, 24))
                / (between(&at, OK, 11, 24) + between(&at, FAILED, 11, 24));
            assert!(m[0] > m[1] && m[1] > m[2] && (m[0] - 17.85).abs() < 0.9, "seed {seed}: held {m:?}");
            assert!((0.45..0.70).contains(&taken), "seed {seed}: {taken:.3} of orders found no thread at Order");
            let (_, why) = failed_at(r.as_ref(), "no-pool-exhausted").expect("a pool exhausted");
            assert!(why.starts_with("Order: all 20 threads held"), "seed {seed}: {why}");
            assert!(failed_at(r.as_ref(), "orders-succeed").is_some() && success(&at, 11, 24) < 0.01);
        }
    }

    #[test]
    fn try_breaker_frees_the_threads_but_only_the_fallback_keeps_the_orders() {
        // Step 3: with breakers the threads go free within a second and no pool is exhausted, yet orders
        // fail; with the fallback they succeed (with an estimated tax) and both checks hold.
        let gauges = ["held_order", "held_pricing"];
        for seed in 1..=3 {
            // Within a second of the hang every breaker on the chain is open (or probing).
            let (mut r, _) = open(&SPEC, &recipe("breaker", seed));
            r.run_until(Time::from_secs(11), u64::MAX);
            for n in r.frame(0).nodes.iter().take(TAX) {
                assert_eq!(n.view.badges.last().expect("a badge").text, "breaker open", "seed {seed}");
            }
            let (r, at, held) = run(recipe("breaker", seed), 25, (11, 24), &gauges);
            assert!(held[0] < 2.0 && held[1] < 2.0, "seed {seed}: threads held {held:?}");
            assert!(failed_at(r.as_ref(), "no-pool-exhausted").is_none(), "seed {seed}");
            assert!(failed_at(r.as_ref(), "orders-succeed").is_some() && success(&at, 11, 24) < 0.01);
            let (r, at, held) = run(recipe("fallback", seed), 30, (11, 24), &gauges);
            assert!(held[0] < 5.0 && held[1] < 2.0, "seed {seed}: threads held {held:?}");
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(between(&at, FAILED, 0, 30) == 0.0 && between(&at, 3, 11, 24) > 1500.0, "seed {seed}");
        }
    }

    #[test]
    fn the_breaker_fails_orders_ten_times_faster_than_timeouts() {
        // Step 3's "ten times faster": with Tax dead from the start, under timeouts an order with a thread
        // waits Order's 3T = 300 ms (and over half get a quick 503: a mean of 133–135 ms on seeds 1–2);
        // behind open breakers it is refused at once, but for the probes every 2 s: 11.5–11.7 ms.
        let dead = |st: &str, seed| recipe(st, seed).with_param("outage_at", 0).with_param("outage_len", 3600);
        for seed in 1..=2 {
            let mean = |st| {
                let (r, _, _) = run(dead(st, seed), 20, (0, 0), &[]);
                r.metrics().histogram("latency_us").expect("answers").mean() / 1e3
            };
            let (timeouts, breaker) = (mean("timeouts"), mean("breaker"));
            assert!(timeouts > 10.0 * breaker, "seed {seed}: timeouts {timeouts:.1} ms, breaker {breaker:.1} ms");
        }
    }

    #[test]
    fn slow_rates_are_judged_too() {
        // The success check judges the last 20 answers, whatever the rate: at 5 orders/s (20 answers in
        // 4 s) under `none`, Order's threads fill in 4 s and then orders time out at the client.
        for seed in 1..=3 {
            let (r, _, _) = run(recipe("none", seed).with_param("rps", 5), 30, (0, 0), &[]);
            let (at_s, why) = failed_at(r.as_ref(), "orders-succeed").expect("orders fail at 5/s");
            assert!((12.0..14.0).contains(&at_s) && why.contains("client timeout: 2"), "seed {seed}: {at_s} {why}");
            let (r, _, _) = run(recipe("fallback", seed).with_param("rps", 5), 30, (0, 0), &[]);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
        }
    }

    #[test]
    fn a_paused_or_cut_off_tax_exhausts_the_pools_too() {
        // The pool check reads the calls' ages, not the fault: a Tax paused (a long GC) or cut off from
        // Pricing holds every thread up the chain under `none` just as a hang does.
        let calm = |seed| recipe("none", seed).with_param("outage_len", 0);
        let faults = [
            Fault::Pause { node: TAX as NodeId, dur: 15 * MICROS_PER_S },
            Fault::Partition { a: vec![TAX as NodeId], b: None, one_way: false },
        ];
        for fault in faults {
            let r = run(calm(1).with_action(Time::from_secs(10), ActionKind::Fault(fault.clone())), 20, (0, 0), &[]).0;
            let (at_s, why) = failed_at(r.as_ref(), "no-pool-exhausted").expect("pools exhausted");
            assert!((11.9..12.1).contains(&at_s) && why.starts_with("Order: all 20 threads held"), "{at_s} {why}");
        }
    }

    #[test]
    fn switching_to_fallback_mid_outage_frees_the_threads_stuck_without_a_timeout() {
        // A new timeout applies to calls under way: at the switch every call already older than it times
        // out, so the threads stuck since 10 s come free at once. Those timeouts open the breakers of Order
        // and Inventory (20 failed calls each), so orders fail fast until their probes succeed 2 s later,
        // and from then on they succeed again.
        let switch = ActionKind::SetStrategy { id: "fallback".into() };
        for seed in 1..=3 {
            let (_, at, held) = run(
                recipe("none", seed).with_action(Time::from_secs(15), switch.clone()),
                24,
                (16, 24),
                &["held_pricing"],
            );
            assert!(held[0] < 2.0 && success(&at, 18, 24) > 0.99, "seed {seed}: {:.3} {held:?}", success(&at, 18, 24));
        }
    }

    #[test]
    fn the_view_shows_threads_waiting_with_idle_cpu() {
        let views = |st: &str| {
            let (mut r, _) = open(&SPEC, &recipe(st, 1));
            r.run_until(Time::from_secs(15), u64::MAX);
            r.frame(0).nodes.into_iter().map(|n| n.view).collect::<Vec<_>>()
        };
        let gauge = |v: &NodeView, label: &str| v.gauges.iter().find(|g| g.label == label).map(|g| (g.value, g.max));
        let badges = |v: &NodeView| v.badges.iter().map(|b| b.text.clone()).collect::<Vec<_>>();
        let none = views("none");
        assert_eq!(gauge(&none[0], "computing (CPU)"), Some((0, 20)));
        assert_eq!(gauge(&none[0], "waiting on Inventory"), Some((20, 20)));
        assert_eq!(gauge(&none[0], "accept queue"), Some((20, 20)));
        assert_eq!(badges(&none[0]), ["CPU 0% · pool 100%", "503 with idle CPU"]);
        assert_eq!(badges(&none[TAX]), ["CPU 0% · pool 0%", "hung: 20 calls unanswered"]);
        let fallback = views("fallback");
        assert!(badges(&fallback[PRICING]).iter().any(|b| b == "breaker open" || b == "breaker half-open"));
        assert!(!badges(&fallback[0]).iter().any(|b| b == "503 with idle CPU"));
    }
}
