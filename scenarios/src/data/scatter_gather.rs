//! Scatter-gather: an aggregator fans each request out to N shards (two replicas each) and
//! merges the answers. Waiting for all N makes every request as slow as its slowest shard, so
//! rare stragglers become the common case as N grows (P(all fast) = (1 − p)^N); a deadline
//! with partial results bounds the latency, and hedging the slow shards keeps the answers whole.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::CallId;
use crate::parts::degraded::{FaultWindow, Health};
use crate::parts::hedge::{quantile, slowest_of, straggler_cdf, Fanouts, Gathered};
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::BTreeMap;

// A table, an entry a line: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "scatter-gather",
        title: "Scatter-gather and the tail at scale",
        category: "Data & scale",
        seeds: &["S0#8", "S1#8", "S2#21"],
        summary: "Every request fans out to 10 shards; one call in a hundred straggles 100 ms, and from 10 s one replica is \
                  twenty times slower. Waiting for all, one request in ten waits for a straggler, and half of all requests \
                  for the slow replica; a 50 ms deadline answers on time with what it has, and hedging a shard's call to \
                  its other replica after 17 ms answers on time with nearly every shard.",
        note: Note {
            what_can_go_wrong: "A fanned-out request is as slow as its slowest shard. If one call in a hundred straggles (a \
                GC pause, a disk read, a noisy neighbour), a request to 10 shards meets one with probability 1 − 0.99^10 = \
                9.6%, to 100 shards 63%: its latency is distributed as the call's raised to the N-th power, F(t)^N, so its \
                p99 is the call's 99.9th percentile at N = 10. A slow replica serving half a shard's calls slows half of \
                all requests. The model: Poisson requests; a shard call goes to one of the shard's two replicas at random \
                and takes an exponential time (mean 5 ms) plus, for the straggler share, a fixed extra, independently of \
                other calls and of load (no queues); links take 0.5 ms each way; a slow replica multiplies its time.",
            what_you_sacrifice: "A deadline trades completeness for latency: answers leave at 50 ms without the \
                stragglers' shards (a search missing part of its index, an ad auction missing bidders), and callers must \
                accept partial results. Hedging costs load — about 5% when sent after the 95th-percentile latency, more \
                while a replica is slow (most calls to it are hedged) — and needs idempotent reads, a second replica of \
                every shard, and cancellation so that losers stop working.",
            at_10x: "Ten times the fan-out turns a 1% straggler rate from one request in ten into nearly two in three: \
                waiting for all stops being viable. With queues, hedges feed themselves (they slow the replicas, which \
                triggers more): cap them, use tied requests that cancel when one copy starts, and cut smaller shards.",
            resembles: "Search and ad serving (Dean & Barroso, 'The Tail at Scale', CACM 2013: hedges after 10 ms cut the \
                99.9th percentile of reading 1,000 keys from 100 BigTable servers from 1,800 ms to 74 ms for 2% more \
                requests), Elasticsearch's partial shard results, Cassandra's speculative retry, gRPC's hedging policy.",
            try_this: &[
                "Play `wait-for-all`: before the fault the p99 is about 112 ms (the theory line, F(t)^N) though a shard call's \
                 median is 4.5 ms; `answered-by-deadline` fails in the first second, as soon as a request still waiting \
                 on a straggler is past its deadline; while shard 0a is slow, half of all requests wait for it, p90 about 166 ms.",
                "Switch to `timeout-partial`: every request is answered by 50 ms and both checks hold, but completeness is \
                 99% (stragglers are left out), and about 96% while the replica is slow.",
                "Switch to `hedged`: completeness stays above 99.9% (99.8% while the replica is slow), p99 near 31 ms before \
                 the fault, for 5% extra load — 9% while the replica is slow, as most calls to it are hedged.",
                "Set the shards to 100 with `wait-for-all`: 63% of requests meet a straggler, so even the median is over \
                 100 ms; at 1 shard the median is 4.5 ms.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("shards", "Shards (fan-out N)", "", 1..=100, 10, "Shards each request fans out to; each has two replicas."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=2000, 100, "Poisson requests to the aggregator."),
        ParamSpec::live("latency_ms", "Shard work", "ms", 1..=1000, 5, "Mean (exponential) time a healthy shard call takes."),
        ParamSpec::live("straggler_pct", "Stragglers", "%", 0..=50, 1, "Share of shard calls that straggle (a GC pause, a disk read)."),
        ParamSpec::live("straggler_ms", "Straggler delay", "ms", 0..=5000, 100, "What a straggling call adds to its time."),
        ParamSpec::live("deadline_ms", "Deadline", "ms", 1..=10_000, 50, "The latency promised; timeout-partial and hedged answer by it with what they have."),
        ParamSpec::live("hedge_ms", "Hedge after", "ms", 1..=10_000, 17, "Hedged: a shard unanswered this long gets a copy on its other replica (17 ms: a healthy call's p95)."),
        ParamSpec::setup("slow_at", "Slow replica from", "s", 0..=3600, 10, "Scheduled fault: shard 0's first replica turns slow."),
        ParamSpec::setup("slow_len", "Slow replica for", "s", 0..=3600, 10, "How long it stays slow (0: never)."),
        ParamSpec::setup("slow_factor", "Slowdown", "×", 1..=1000, 20, "The slow replica's time, as a multiple."),
    ],
    strategies: &[
        StrategySpec::naive("wait-for-all", "Wait for all", "The aggregator answers when every shard has answered (or its call hit the 10 s backstop timeout)."),
        StrategySpec::fixed("timeout-partial", "Deadline + partial results", "At the deadline the aggregator answers with the shards it has and cancels the rest."),
        StrategySpec::fixed("hedged", "Hedged requests", "As with the deadline, and a shard unanswered after the hedge delay gets a copy on its other replica; the first answer wins, the loser is cancelled."),
    ],
    faults: &[
        FaultSpec::node("slow", "Slow replica", "Its calls take this many times as long (1 heals it).").value("×", 1..=1000, 20),
    ],
    checks: &[
        CheckSpec::new("answered-by-deadline", "Every request answered by its deadline",
            "No request waits longer than its deadline (as set when it arrived) + 1 ms, timed at the aggregator: not the oldest still open, nor one answered, nor one lost in a crash of the aggregator."),
        CheckSpec::new("completeness-floor", "Answers keep 90% of the shards",
            "Every 50 answers in a row (half a second at 100 req/s, 50 s at 1 req/s) carry at least 90% of the shards asked."),
    ],
    metrics: &[
        MetricSpec::new("p99", "Request latency p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("p50", "Request latency p50", "us", Measure::Quantile("latency_us", 0.5)),
        MetricSpec::new("theory_p99", "Wait-for-all p99, theory (F(t)^N, no fault)", "us", Measure::Gauge("theory_p99_us")),
        MetricSpec::new("completeness", "Completeness (shards answered / asked)", "%", Measure::Percent { num: "shards_answered", rest: "shards_missing" }),
        // hedges / (hedges + calls not hedged) = hedges / shard calls: the extra load.
        MetricSpec::new("extra_load", "Extra load from hedges", "%", Measure::Percent { num: "hedges", rest: "calls_unhedged" }),
        MetricSpec::new("shard_p99", "Shard call p99 (tries answered)", "us", Measure::Quantile("try_us", 0.99)),
        MetricSpec::new("lost", "Requests lost in aggregator crashes", "req", Measure::Count("lost")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Gathering { WaitForAll, TimeoutPartial, Hedged });
/// Node ids: the aggregator, then shard `k`'s replicas a and b at `FIRST_BACKEND + 2k` and `+ 1`.
const AGGREGATOR: NodeId = 0;
const FIRST_BACKEND: NodeId = 1;
/// One way, aggregator ↔ backend (one datacenter): a shard call's round trip adds 1 ms.
const LINK_US: Micros = 500;
/// A try's backstop timeout: even waiting for all, a dead replica's shard is given up after it.
const TRY_TIMEOUT_US: Micros = 10 * MICROS_PER_S;
/// The checks' slack, floor and answers per block judged; a block's missing shards are keyed block × 1000 + shard.
const SLACK_US: Micros = MICROS_PER_MS;
const FLOOR_PCT: i64 = 90;
const BLOCK: u64 = 50;
const SHARD_KEYS: u64 = 1000;
fn backend(shard: u32, replica: u8) -> NodeId {
    FIRST_BACKEND + 2 * shard as NodeId + replica as NodeId
}
/// A replica's name: its shard and letter, `shard 3b`.
fn replica_name(node: NodeId) -> String {
    format!("shard {}{}", (node - FIRST_BACKEND) / 2, ['a', 'b'][((node - FIRST_BACKEND) % 2) as usize])
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Call(CallId),
    Reply(CallId),
    Cancel(CallId),
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Try(CallId),
    Hedge(CallId),
    Deadline(u64),
    Done(CallId),
}
#[derive(Clone, Debug, Holds)]
pub enum Sg {
    Aggregator(Aggregator),
    Backend(Backend),
}

/// A request: its arrival (true time, for the check) and deadline; a part: its shard and first replica.
type Request = (Time, Micros);
type Part = (u32, u8);
/// The aggregator; its open-loop arrivals are the users' requests.
#[derive(Clone, Debug)]
pub struct Aggregator {
    gathering: Gathering,
    arrivals: OpenLoop,
    shards: u32,
    fan: Fanouts<Request, Part>,
    /// The latest request answered after its deadline (or lost), described, and when (for the check).
    late: Option<(String, Time)>,
    /// Requests answered so far: the completeness floor judges them in blocks.
    answered: u64,
}
#[derive(Clone, Debug)]
pub struct Backend {
    node: NodeId,
    health: Health,
    /// Calls being worked on: the timer that answers each, and whether it straggles.
    work: BTreeMap<CallId, (TimerId, bool)>,
}
fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Sg> = Sim::new(setup, Link::constant(LINK_US));
    let shards = setup.param("shards") as u32;
    let aggregator = Aggregator {
        gathering: Gathering::from_id(setup.strategy()),
        arrivals: OpenLoop::poisson(setup.param("rps") as f64),
        shards,
        fan: Fanouts::new("try_us", TRY_TIMEOUT_US),
        late: None,
        answered: 0,
    };
    assert_eq!(sim.add_node(Sg::Aggregator(aggregator)), AGGREGATOR);
    for node in backend(0, 0)..backend(shards, 0) {
        assert_eq!(sim.add_node(Sg::Backend(Backend { node, health: Health::Up, work: BTreeMap::new() })), node);
    }
    let slow = FaultWindow::secs(setup.param("slow_at"), setup.param("slow_len"));
    slow.custom(&mut sim, "slow", Some(backend(0, 0)), setup.param("slow_factor"), 1);
    sim.check("answered-by-deadline", |w| {
        // The oldest request still open (they arrive in order) is overdue, or this event answered one late or lost some.
        let (a, age) = (w.node::<Aggregator>(AGGREGATOR), |r: &Request| w.now.since(r.0));
        let open = a.fan.iter().next().filter(|(_, r)| age(r) > r.1 + SLACK_US);
        let open = open.map(|(id, r)| format!("request {id} open for {} ms > {} ms", age(r) / 1000, r.1 / 1000));
        open.or(a.late.clone().filter(|(_, at)| *at == w.now).map(|l| l.0)).map_or(Ok(()), Err)
    });
    sim.check("completeness-floor", move |w| {
        // A block is judged at the first answer of the next one.
        for &(_, block, _) in w.tallied.iter().filter(|t| t.0 == "answers" && t.2 == 1 && t.1 >= 1) {
            let (b, missing) = (block - 1, |k: u64| w.tally("missing", (block - 1) * SHARD_KEYS + k));
            let (asked, got) = (w.tally("asked", b), w.tally("got", b));
            if got * 100 < FLOOR_PCT * asked {
                let worst = (0..shards as u64).rev().max_by_key(|&k| missing(k)).expect("a shard");
                let (pct, m) = (100.0 * got as f64 / asked as f64, missing(worst));
                return Err(format!("block {b}: {got}/{asked} shards ({pct:.1}%); shard {worst} missed {m} times"));
            }
        }
        Ok(())
    });
    Box::new(sim)
}

impl Node for Sg {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Sg::Aggregator(a) = self {
            a.arrivals.start(ctx, Timer::Arrive);
            a.publish(ctx);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Sg::Aggregator(a), Msg::Reply(id)) => a.reply(id, ctx),
            (Sg::Backend(b), Msg::Call(id)) if from == AGGREGATOR => b.call(id, ctx),
            // The loser stops: no work is done for nobody (a late cancel finds nothing).
            (Sg::Backend(b), Msg::Cancel(id)) => b.work.remove(&id).into_iter().for_each(|w| ctx.cancel_timer(w.0)),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Sg::Aggregator(a), timer) => a.on_timer(timer, ctx),
            (Sg::Backend(b), Timer::Done(id)) => {
                b.work.remove(&id).into_iter().for_each(|_| ctx.send(AGGREGATOR, Msg::Reply(id)))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Sg::Aggregator(a) => {
                // Its requests are lost: none will be answered, a broken promise if any was open.
                let (lost, oldest) = (a.fan.len(), a.fan.iter().next().map(|r| r.0));
                a.late = oldest.map(|id| (format!("{lost} requests lost in a crash, the oldest {id}"), ctx.truth()));
                ctx.count("lost", lost as i64);
                a.fan.clear(ctx)
            }
            // Its health is the machine's (a noisy neighbour), not its memory's: kept.
            Sg::Backend(b) => b.work.clear(),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Sg::Aggregator(a), Control::Param { id: "rps", value }) => {
                a.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Sg::Aggregator(a), Control::Strategy(id)) => a.switch(Gathering::from_id(id), ctx),
            (Sg::Aggregator(a), Control::Param { .. }) => a.publish(ctx),
            (Sg::Backend(b), Control::Custom { id: "slow", value }) => {
                let health = if value > 1 { Health::times_pct(value as u32 * 100) } else { Health::Up };
                if health != b.health {
                    b.health = health;
                    ctx.note(format!("{} is {health}", replica_name(b.node)));
                }
            }
            // The other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Sg::Aggregator(a) => a.view(),
            Sg::Backend(b) => b.view(),
        }
    }
}

impl Aggregator {
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Sg>) {
        let done = match timer {
            Timer::Arrive => return self.query(ctx),
            Timer::Hedge(call) => return self.hedge(call, ctx),
            Timer::Try(id) => self.fan.timeout(id, ctx),
            Timer::Deadline(request) => self.fan.deadline(request, ctx),
            other => return ctx.unhandled(&other),
        };
        self.answer(done, ctx);
    }

    /// A request: a call to a random replica of every shard (hedged if `hedged`), and a deadline unless waiting for all.
    fn query(&mut self, ctx: &mut Ctx<Sg>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let (deadline_us, arrived) = (ctx.param_ms("deadline_ms"), ctx.truth());
        let hedge_after = (self.gathering == Gathering::Hedged).then(|| ctx.param_ms("hedge_ms"));
        let request = self.fan.open(ctx, (arrived, deadline_us));
        for shard in 0..self.shards {
            let replica = ctx.rng().below(2) as u8;
            let to = backend(shard, replica);
            let id = self.fan.call(ctx, request, (shard, replica), to, hedge_after, Timer::Try, Timer::Hedge);
            ctx.send(to, Msg::Call(id));
        }
        ctx.count("calls_unhedged", self.shards as i64);
        if self.gathering != Gathering::WaitForAll {
            self.fan.arm(ctx, request, deadline_us, Timer::Deadline);
        }
    }

    fn hedge(&mut self, call: CallId, ctx: &mut Ctx<Sg>) {
        let Some(&(_, (shard, replica))) = self.fan.hedges.get(call) else { return };
        let to = backend(shard, 1 - replica);
        if let Some(id) = self.fan.hedges.hedge(ctx, call, to, Timer::Try) {
            ctx.send(to, Msg::Call(id));
            ctx.count("hedges", 1);
            ctx.count("calls_unhedged", -1);
        }
    }

    fn reply(&mut self, id: CallId, ctx: &mut Ctx<Sg>) {
        let Some((losers, done)) = self.fan.reply(id, ctx) else { return };
        losers.into_iter().for_each(|(loser, to)| ctx.send(to, Msg::Cancel(loser)));
        self.answer(done, ctx);
    }

    /// Answers a request gathered (all in, or its deadline): the calls still out are stopped.
    fn answer(&mut self, done: Option<Gathered<Request, Part>>, ctx: &mut Ctx<Sg>) {
        let Some(g) = done else { return };
        g.stop.into_iter().for_each(|(id, to)| ctx.send(to, Msg::Cancel(id)));
        let ((arrived, deadline_us), block) = (g.req, self.answered / BLOCK);
        self.answered += 1;
        for (shard, _) in g.missing {
            ctx.tally("missing", block * SHARD_KEYS + shard as u64, 1);
        }
        ctx.observe("latency_us", g.latency_us);
        ctx.count("shards_answered", g.got as i64);
        ctx.count("shards_missing", (g.of - g.got) as i64);
        for (name, n) in [("answers", 1), ("asked", g.of), ("got", g.got)] {
            ctx.tally(name, block, n as i64);
        }
        let took_us = ctx.truth().since(arrived);
        if took_us > deadline_us + SLACK_US {
            let (took, limit, last) = (took_us / 1000, deadline_us / 1000, g.last.map_or("none".into(), replica_name));
            self.late = Some((format!("request {} took {took} ms > {limit} ms; last: {last}", g.id), ctx.truth()));
        }
    }

    /// Requests under way keep their hedges (or none); on a switch to a deadline, all get theirs.
    fn switch(&mut self, gathering: Gathering, ctx: &mut Ctx<Sg>) {
        self.gathering = gathering;
        if gathering != Gathering::WaitForAll {
            let open: Vec<_> = self.fan.iter().map(|(id, &(_, deadline_us))| (id, deadline_us)).collect();
            open.into_iter().for_each(|(id, deadline_us)| self.fan.arm(ctx, id, deadline_us, Timer::Deadline));
        }
    }

    /// The theory line for the parameters in force: wait-for-all's p99 with no fault, F(t)^N = 0.99, F a
    /// healthy shard call's (1 ms of links, an exponential time, the straggler delay for the straggler share).
    fn publish(&self, ctx: &mut Ctx<Sg>) {
        let (m, d) = (ctx.param_ms("latency_ms") as f64, ctx.param_ms("straggler_ms") as f64);
        let call = straggler_cdf(m, ctx.param("straggler_pct") as f64 / 100.0, d, 2.0 * LINK_US as f64);
        let cdf = slowest_of(call, self.shards);
        ctx.gauge("theory_p99_us", quantile(cdf, 0.99, d + 60.0 * m + 1e4) as i64);
    }

    fn view(&self) -> NodeView {
        let (label, tone) = match self.gathering {
            Gathering::WaitForAll => ("waits for all", Tone::Warn),
            Gathering::TimeoutPartial => ("deadline + partial", Tone::Good),
            Gathering::Hedged => ("hedged", Tone::Good),
        };
        let hedging = self.fan.hedges.tries_out().saturating_sub(self.fan.hedges.len());
        NodeView::new(NodeKind::LoadBalancer, 0, "aggregator")
            .badge(label, tone)
            .badge_if(hedging > 0, format!("hedges out {hedging}"), Tone::Warn)
            .gauge("requests gathering", self.fan.len() as i64, 50)
            .gauge("shard calls out", self.fan.hedges.len() as i64, 50 * self.shards as i64)
    }
}

impl Backend {
    /// A call takes an exponential time, plus the straggler delay for the straggler share of
    /// calls, all multiplied while the replica is slow; no queue (calls do not wait for each other).
    fn call(&mut self, id: CallId, ctx: &mut Ctx<Sg>) {
        let p = Ppm::from_percent(ctx.param("straggler_pct") as u32);
        let straggles = ctx.rng().chance(p);
        let (mean_us, straggle_us) = (ctx.param_ms("latency_ms") as f64, ctx.param_ms("straggler_ms"));
        let base = ctx.rng().exponential(mean_us) as Micros + if straggles { straggle_us } else { 0 };
        let Some(after) = self.health.latency(base) else { return };
        self.work.insert(id, (ctx.set_timer(after, Timer::Done(id)), straggles));
    }

    fn view(&self) -> NodeView {
        // The a replicas in one column, the b replicas in the next.
        let (straggling, tier) = (self.work.values().filter(|w| w.1).count(), 1 + ((self.node - 1) % 2) as u8);
        NodeView::new(NodeKind::Database, tier, replica_name(self.node))
            .badge(self.health.to_string(), if self.health.is_up() { Tone::Good } else { Tone::Bad })
            .badge_if(straggling > 0, format!("straggling {straggling}"), Tone::Warn)
            .gauge("calls in progress", self.work.len() as i64, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::hedge::hedged;
    use crate::parts::testing::{failed_at, run_sampled};

    /// A healthy shard call's latency: 1 ms of links + an exponential (mean `m_us`) + `d_us` for a share `p`.
    fn call_cdf(m_us: f64, p: f64, d_us: f64) -> impl Fn(f64) -> f64 + Copy {
        straggler_cdf(m_us, p, d_us, 2.0 * LINK_US as f64)
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("scatter-gather", strategy, seed)
    }

    /// With no slow replica: stragglers only.
    fn quiet(strategy: &str, seed: u64) -> Recipe {
        recipe(strategy, seed).with_param("slow_len", 0)
    }

    fn run(recipe: Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, &recipe, secs, &[]).0
    }

    fn latency(r: &dyn Run) -> Histogram {
        r.metrics().histogram("latency_us").expect("requests answered").clone()
    }

    fn counter(r: &dyn Run, name: &str) -> f64 {
        r.metrics().counter(name) as f64
    }

    /// The share of samples above `t_us` (by bucket midpoints, as `quantile` reports them).
    fn share_over(h: &Histogram, t_us: u64) -> f64 {
        let n = h.count();
        let at = |rank: u64| h.quantile((rank as f64 - 0.5) / n as f64);
        let (mut lo, mut hi) = (1, n + 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid) > t_us {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        (n + 1 - lo) as f64 / n as f64
    }

    /// Whether `q` is within `sds` binomial standard deviations (over `n` samples) of
    /// `cdf` at the reported quantile `t_us`, widened to its histogram bucket (±1/64: the
    /// reported value is the bucket's midpoint, so the sample itself may lie anywhere in it).
    fn agrees(cdf: impl Fn(f64) -> f64, q: f64, t_us: u64, n: u64, sds: f64) -> bool {
        let sd = sds * libm::sqrt(q * (1.0 - q) / n as f64);
        let (lo, hi) = (cdf(t_us as f64 * (1.0 - 1.0 / 64.0)), cdf(t_us as f64 * (1.0 + 1.0 / 64.0)));
        lo - sd <= q && q <= hi + sd
    }

    #[test]
    fn waiting_for_all_is_the_slowest_of_n_calls_f_to_the_n() {
        // The theory: a request that waits for all N shards takes the slowest of N independent
        // calls, so P(latency ≤ t) = F(t)^N with F one call's (`call_cdf`: 1 ms of links, an
        // exponential 5 ms, +100 ms for 1% of calls). In particular it meets a straggler — over
        // 100 ms, which no fast call reaches (P = e^(−19.8) per call) — with probability
        // 1 − (1 − p)^N: 1% at N = 1, 9.56% at 10, 39.5% at 50. About 20,000 requests each; the
        // share is checked to 4 binomial s.d.s (0.28%, 0.83%, 1.4% absolute), and at the p50,
        // p90 and p99 F(t)^N at the histogram's quantile is checked against q to 4 s.d.s, widened
        // by the histogram's bucket (±1/64 of the value). A theory that forgot the links (1 ms)
        // misses the p50 at N = 1 by 20 s.d.s; one with the p99 of a single call (N = 1) instead
        // of the maximum misses N = 10's p50 by a factor of three.
        let (model, p) = (call_cdf(5000.0, 0.01, 100_000.0), 0.01);
        // The theory line's p99 (bisection up to 410 ms, as the aggregator does).
        let p99 = |n| quantile(slowest_of(model, n), 0.99, 410_000.0);
        for n in [1u32, 10, 50] {
            let r = run(quiet("wait-for-all", 1).with_param("shards", n as i64).with_param("rps", 1000), 20);
            let h = latency(r.as_ref());
            let (count, met) = (h.count(), share_over(&h, 100_000));
            let want = 1.0 - libm::pow(1.0 - p, n as f64);
            let sd = libm::sqrt(want * (1.0 - want) / count as f64);
            assert!((met - want).abs() <= 4.0 * sd, "N = {n}: {met:.4} met a straggler, (1 − p)^N says {want:.4}");
            for q in [0.5, 0.9, 0.99] {
                let t = h.quantile(q);
                let cdf = slowest_of(model, n);
                assert!(
                    agrees(cdf, q, t, count, 4.0),
                    "N = {n}: p{q} is {t} µs, F^N gives {:.0}",
                    quantile(slowest_of(model, n), q, 1e6)
                );
            }
            // The theory line the chart shows is the same model's p99.
            assert_eq!(r.metrics().gauge("theory_p99_us"), p99(n) as i64);
        }
        // And the p99 grows with N: 101 ms, 112 ms, 121 ms (all in the stragglers' tail).
        let p99 = [1, 10, 50].map(|n| p99(n) / 1000.0);
        assert!(
            (100.9..101.1).contains(&p99[0]) && (112.0..113.0).contains(&p99[1]) && (120.0..121.0).contains(&p99[2])
        );
    }

    #[test]
    fn hedging_at_the_p95_costs_five_percent_and_follows_the_min_of_two_tries() {
        // Dean & Barroso: hedge after the 95th-percentile latency, for about 5% more calls. Here
        // P(L > 17 ms) = 0.99·e^(−16/5) + 0.01 = 5.03%: each call still out at 17 ms gets one
        // hedge, so hedges / calls should be that. Over 40,000 calls the binomial s.d. is 0.11%:
        // ±0.45% is 4 of them, while hedging at 15 or 20 ms would send 7.0% or 3.2% (0.99·e^(−14/5) + 0.01,
        // 0.99·e^(−19/5) + 0.01). A shard's
        // latency is then W = min(L₁, 17 ms + L₂), P(W ≤ t) = 1 − (1 − F(t))(1 − F(t − 17 ms)),
        // and the request's is W's maximum over the 10 shards, capped by the 50 ms deadline:
        // its p50 and p99 are checked as in the test above.
        let model = call_cdf(5000.0, 0.01, 100_000.0);
        let r = run(quiet("hedged", 2).with_param("rps", 200), 20);
        let hedges = counter(r.as_ref(), "hedges");
        let calls = hedges + counter(r.as_ref(), "calls_unhedged");
        let want = 1.0 - model(17_000.0);
        assert!((want - 0.0503).abs() < 0.0005 && (hedges / calls - want).abs() < 0.0045, "{hedges} of {calls}");
        let h = latency(r.as_ref());
        let request = slowest_of(hedged(model, 17_000.0), 10);
        for q in [0.5, 0.99] {
            let t = h.quantile(q);
            assert!(t < 50_000 && agrees(&request, q, t, h.count(), 4.0), "p{q}: {t} µs");
        }
        // Against waiting for all on the same stragglers: the p99 falls from 112 ms to about 31 ms.
        let all = latency(run(quiet("wait-for-all", 2).with_param("rps", 200), 20).as_ref());
        assert!(all.quantile(0.99) > 100_000 && h.quantile(0.99) < 35_000);
    }

    /// How long the request a failure names was open, in ms. Checks are judged after events,
    /// which come in bursts (a request's calls, for some 10 ms after it arrives): the first
    /// past 51 ms comes by the next arrival at the latest (Poisson, 100/s; none in 49 ms:
    /// e^(−4.9) = 0.7%), so before 100 ms — far from the straggler's answer at 100 ms or 5 s.
    fn open_for_ms(why: &str) -> u64 {
        let after = why.split("open for ").nth(1).expect("an open request");
        after.split(' ').next().and_then(|n| n.parse().ok()).expect("its age")
    }

    /// Counters at each whole second, for windows: shard answers, missing, calls not hedged, hedges.
    const WINDOWED: [&str; 4] = ["shards_answered", "shards_missing", "calls_unhedged", "hedges"];

    /// Completeness and extra load from `from` s to `to` s.
    fn window(at: &[Vec<i64>], from: usize, to: usize) -> (f64, f64) {
        let d = |i: usize| (at[to][i] - at[from][i]) as f64;
        (d(0) / (d(0) + d(1)), d(3) / (d(2) + d(3)))
    }

    #[test]
    fn try_wait_for_all_the_stragglers_set_the_tail() {
        // Step 1: before the fault (0–10 s), the p99 is the theory line's 112 ms: each seed's
        // 1,000 requests agree with F(t)^N to 4 s.d.s of the quantile (0.99 ± 0.013, so from
        // 108 ms up: loose), and the five seeds' 5,000 together to 4 s.d.s (0.99 ± 0.0056: 110
        // to 117 ms). A shard call's median is 4.5 ms (1 + 5·ln(0.99/0.49) = 4.52 ms; 1,000 s
        // of calls, the histogram's ±1/64 bucket: 4.3–4.8). The check fails in the first second,
        // once the first request to meet a straggler, still open, is past its deadline. While
        // the replica is slow, half of all requests use it: P(latency ≤ t) is
        // F(t)^9 · (F(t) + F_slow(t)) / 2 with F_slow a call twenty times as long, and its p90 is
        // 166 ms (2,000 requests: checked as in the theory test, to 4 s.d.s).
        let (model, slow_model) = (call_cdf(5000.0, 0.01, 100_000.0), call_cdf(100_000.0, 0.01, 2_000_000.0));
        // The slow replica multiplies its work, not the links: F_slow(t) = P(1 ms + 20 S ≤ t).
        let while_slow = |t: f64| libm::pow(model(t), 9.0) * (model(t) + slow_model(t)) / 2.0;
        assert!((165.5..166.5).contains(&(quantile(while_slow, 0.9, 1e8) / 1000.0)));
        let all = slowest_of(model, 10);
        let mut pooled: Option<Histogram> = None;
        for seed in 1..=5 {
            let before = run(recipe("wait-for-all", seed), 10);
            let (h, shard) = (latency(before.as_ref()), before.metrics().histogram("try_us").unwrap().quantile(0.5));
            assert!(agrees(&all, 0.99, h.quantile(0.99), h.count(), 4.0) && (4_300..4_800).contains(&shard), "{seed}");
            pooled.get_or_insert_with(Histogram::new).merge(&h);
            let (at, why) = failed_at(before.as_ref(), "answered-by-deadline").expect("late");
            assert!(at < 1.0 && why.starts_with("request ") && (51..100).contains(&open_for_ms(&why)), "{at}: {why}");
            let slow = latency(
                run(recipe("wait-for-all", seed).with_param("slow_at", 0).with_param("slow_len", 20), 20).as_ref(),
            );
            let t = slow.quantile(0.9);
            assert!(
                agrees(while_slow, 0.9, t, slow.count(), 4.0) && (150_000..185_000).contains(&t),
                "seed {seed}: p90 {t}"
            );
        }
        let pooled = pooled.unwrap();
        let p99 = pooled.quantile(0.99);
        assert!(agrees(&all, 0.99, p99, pooled.count(), 4.0) && (110_000..117_000).contains(&p99), "{p99}");
    }

    #[test]
    fn try_partial_results_keep_the_deadline_and_lose_shards() {
        // Step 2: every answer by 50 ms; completeness 99% (stragglers miss the deadline) and,
        // while the replica is slow, 96%: 5% of calls go to it and 61% of those (e^(−49/100))
        // miss the deadline, 3.1% more.
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("timeout-partial", seed), 30, &WINDOWED);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(latency(r.as_ref()).max() <= 50_000 + 1_000);
            let (quiet, slow) = (window(&at, 1, 10).0, window(&at, 11, 20).0);
            assert!(
                (0.985..0.995).contains(&quiet) && (0.95..0.97).contains(&slow),
                "seed {seed}: {quiet:.4}, {slow:.4}"
            );
        }
    }

    #[test]
    fn try_hedged_keeps_the_shards_for_a_few_percent_more_calls() {
        // Step 3: completeness above 99.9% (quiet) and 99.8% (slow); extra load 5% and, while
        // the replica is slow, 9%: 95% of calls hedged 5% of the time, and the 5% that go to the
        // slow replica 85% of the time (e^(−16/100)). Before the fault (0–10 s) the p99 is the
        // theory's 31 ms (the slowest of 10 hedged calls), each seed's 1,000 requests agreeing
        // with it to 4 s.d.s of the quantile as in step 1.
        let theory = slowest_of(hedged(call_cdf(5000.0, 0.01, 100_000.0), 17_000.0), 10);
        assert!((30_500.0..31_500.0).contains(&quantile(&theory, 0.99, 1e6)), "{}", quantile(&theory, 0.99, 1e6));
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("hedged", seed), 30, &WINDOWED);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let ((c_quiet, l_quiet), (c_slow, l_slow)) = (window(&at, 1, 10), window(&at, 11, 20));
            assert!(c_quiet > 0.999 && c_slow > 0.998, "seed {seed}: {c_quiet:.5} {c_slow:.5}");
            assert!(
                (0.04..0.06).contains(&l_quiet) && (0.08..0.10).contains(&l_slow),
                "seed {seed}: {l_quiet} {l_slow}"
            );
            let before = latency(run(recipe("hedged", seed), 10).as_ref());
            let p99 = before.quantile(0.99);
            assert!(agrees(&theory, 0.99, p99, before.count(), 4.0) && p99 < 40_000, "seed {seed}: {p99}");
        }
    }

    #[test]
    fn try_the_fan_out_makes_stragglers_the_common_case() {
        // Step 4: at 100 shards 1 − 0.99^100 = 63.4% of requests meet a straggler (3,000
        // requests: s.d. 0.9%), so the median is over 100 ms; at one shard it is 4.5 ms.
        let wide = latency(run(quiet("wait-for-all", 3).with_param("shards", 100), 30).as_ref());
        let met = share_over(&wide, 100_000);
        assert!((met - 0.634).abs() < 0.035 && wide.quantile(0.5) > 100_000, "{met}");
        let one = latency(run(quiet("wait-for-all", 3).with_param("shards", 1), 30).as_ref());
        assert!((4_300..4_800).contains(&one.quantile(0.5)), "{}", one.quantile(0.5));
    }

    #[test]
    fn the_floor_names_the_shard_that_is_missing() {
        // Both replicas of shards 3 and 4 slowed 50×: those shards miss nearly every deadline,
        // 20% of the shards, and the floor fails naming one of them.
        let slow = |node| ActionKind::Fault(Fault::custom_on("slow", node, 50));
        let mut r = recipe("timeout-partial", 1).with_param("slow_len", 0);
        for node in [backend(3, 0), backend(3, 1), backend(4, 0), backend(4, 1)] {
            r = r.with_action(Time::from_secs(2), slow(node));
        }
        let (at, why) = failed_at(run(r, 5).as_ref(), "completeness-floor").expect("below the floor");
        // Judged in blocks of 50 answers (half a second here): the first block at least half
        // after 2 s is judged at the first answer of the next, by about 3.05 s.
        assert!(
            (2.25..3.1).contains(&at) && (why.contains("shard 3 missed") || why.contains("shard 4 missed")),
            "{at}: {why}"
        );
    }

    #[test]
    fn the_floor_judges_blocks_of_answers_whatever_the_rate() {
        // At 5 requests a second a whole second never had 20 answers; blocks of 50 answers do
        // come, every 10 s: shards 3 and 4 slowed from 1 s, block 0 (answers 0–49, about 0–10 s)
        // carries about 82% of the shards, and fails at the first answer of block 1.
        let slow = |node| ActionKind::Fault(Fault::custom_on("slow", node, 50));
        let mut r = recipe("timeout-partial", 1).with_param("slow_len", 0).with_param("rps", 5);
        for node in [backend(3, 0), backend(3, 1), backend(4, 0), backend(4, 1)] {
            r = r.with_action(Time::from_secs(1), slow(node));
        }
        let (at, why) = failed_at(run(r, 30).as_ref(), "completeness-floor").expect("below the floor");
        assert!((7.0..14.0).contains(&at) && why.starts_with("block 0:"), "{at}: {why}");
    }

    #[test]
    fn a_request_waiting_is_late_at_its_deadline_and_a_crash_loses_the_open_ones() {
        // Stragglers of 5 s, waiting for all: the first request to meet one fails the check
        // once it has waited past its deadline (+ 1 ms), not when answered 5 s later.
        let r = run(quiet("wait-for-all", 1).with_param("straggler_ms", 5000), 2);
        let (at, why) = failed_at(r.as_ref(), "answered-by-deadline").expect("late");
        assert!(at < 1.0 && (51..100).contains(&open_for_ms(&why)) && why.ends_with("> 50 ms"), "{at}: {why}");
        // A crash of the aggregator, with requests under way (1,000/s, ~7 open): they are lost
        // and counted, and the check fails at the crash, though the deadline strategy held.
        let crash = ActionKind::Fault(Fault::Crash { node: AGGREGATOR });
        let r = run(quiet("timeout-partial", 1).with_param("rps", 1000).with_action(Time::from_secs(2), crash), 3);
        let (at, why) = failed_at(r.as_ref(), "answered-by-deadline").expect("lost at the crash");
        assert!(at == 2.0 && why.contains("requests lost in a crash"), "{at}: {why}");
        assert!((1..30).contains(&r.metrics().counter("lost")), "{}", r.metrics().counter("lost"));
    }

    #[test]
    fn switching_to_a_deadline_bounds_the_requests_under_way() {
        // Stragglers of 5 s: waiting for all, some 50 requests wait at any time; switched to the
        // deadline at 5 s, those under way are answered by their own deadline, so 60 ms later
        // only the few from the last 50 ms (about 5) are left.
        let gathering = |r: &dyn Run| {
            let v = r.frame(0).nodes.into_iter().next().unwrap().view;
            v.gauges.iter().find(|g| g.label == "requests gathering").unwrap().value
        };
        let switch = ActionKind::SetStrategy { id: "timeout-partial".into() };
        let r0 = quiet("wait-for-all", 4).with_param("straggler_ms", 5000);
        let (mut r, _) = open(&SPEC, &r0.with_action(Time::from_secs(5), switch));
        r.run_until(Time(5 * MICROS_PER_S - 1), u64::MAX);
        let before = gathering(r.as_ref());
        r.run_until(Time::from_ms(5_060), u64::MAX);
        let after = gathering(r.as_ref());
        assert!(before > 25 && after < 15, "{before} → {after}");
    }

    #[test]
    fn the_view_shows_the_slow_replica_stragglers_and_hedges() {
        let views = |st: &str| {
            let frame = run(recipe(st, 1), 15).frame(0);
            frame.nodes.into_iter().map(|n| n.view).collect::<Vec<_>>()
        };
        let v = views("hedged");
        assert_eq!(v.len(), 1 + 2 * 10);
        let slow = &v[backend(0, 0) as usize];
        assert_eq!((slow.label.as_str(), slow.badges[0].text.as_str(), slow.tier), ("shard 0a", "slow ×20", 1));
        assert_eq!((v[backend(0, 1) as usize].badges[0].text.as_str(), v[backend(0, 1) as usize].tier), ("up", 2));
        assert_eq!(v[0].badges[0].text, "hedged");
        assert_eq!(views("wait-for-all")[0].badges[0].text, "waits for all");
        // Over a run, some frame shows a straggling backend and hedges out.
        let (mut r, _) = open(&SPEC, &recipe("hedged", 2));
        let (mut straggling, mut hedging) = (false, false);
        for ms in (100..5_000).step_by(7) {
            r.run_until(Time::from_ms(ms), u64::MAX);
            let f = r.frame(0);
            straggling |= f.nodes.iter().any(|n| n.view.badges.iter().any(|b| b.text.starts_with("straggling")));
            hedging |= f.nodes[0].view.badges.iter().any(|b| b.text.starts_with("hedges out"));
        }
        assert!(straggling && hedging);
    }
}
