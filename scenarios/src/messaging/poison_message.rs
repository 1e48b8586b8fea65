//! Poison message: producers → one ordered partition (a Kafka-style log) → the consumer that owns it in its group, committing offsets. One malformed message crashes the consumer, which restarts from the committed offset and crashes again (lag grows without end); skipping it loses it (and every transient failure); retrying N times then parking it in a dead-letter topic keeps both promises.

use crate::parts::arrivals::OpenLoop;
use crate::parts::degraded::FaultWindow;
use crate::parts::partition::{Offset, Partition};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;
use std::collections::{BTreeSet, VecDeque};

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "poison-message",
        title: "Poison message in an ordered partition",
        category: "Messaging",
        seeds: &["S1#22", "S3#40"],
        summary: "100 messages/s into one partition, 5 ms each; at 5 s a malformed message arrives, and one try in \
                  1,000 fails transiently. Crashing stalls the partition, skipping loses it, retry N + a DLQ keeps both.",
        note: Note {
            what_can_go_wrong: "A partition is read in order from the group's committed offset, so a message that \
                fails every time is met again by every restart: the consumer crashes, restarts, reads it and crashes, \
                and the lag grows at the producers' rate — the seed's consumer that 'keeps crashing and restarting'. \
                Committing past it ends the loop but loses it, and every message that failed once with it. The model: \
                Poisson producers; one durable partition; one consumer owning it (a restart stands for crash, \
                rebalance and rejoin), fetching up to 100 records, fixed work each, committing each offset after it (a \
                dead letter's with its DLQ write); each try fails with a fixed chance, the malformed one always.",
            what_you_sacrifice: "Retrying in place blocks the partition (order is kept, so nothing behind moves): N \
                tries and their backoff are lag added per poison message. The DLQ is a topic someone must watch, fix \
                and replay, out of order. Retry topics (Uber's, Spring Kafka's) unblock sooner and give up order.",
            at_10x: "At a million messages a minute one malformed message stalls its partition within a second and \
                the lag reaches millions in minutes; a rebalance on every crash stalls the group's other partitions.",
            resembles: "Kafka consumer groups (committed offsets, records-lag, max.poll.records), Spring Kafka's \
                DefaultErrorHandler with a DeadLetterPublishingRecoverer, Kafka Connect's errors.tolerance and DLQ \
                topic, Kafka Streams' deserialization exception handlers (log-and-fail vs log-and-continue).",
            try_this: &[
                "Play `crash-loop`: at 5 s the malformed message crashes the consumer; it restarts every second, reads \
                 it again and crashes again. The lag grows 100 messages a second (the producers' rate) and \
                 `lag-bounded` fails at about 15 s, naming the committed offset stuck since 5 s.",
                "Play `skip`: the lag stays near zero, but at 5 s `none-lost` names the malformed message's offset. \
                 Transient failures (one try in 1,000, about 3 a run) are lost and named too, some before 5 s.",
                "Play `retry-dlq`: the malformed message is tried 4 times (3 retries with backoff) and parked in the \
                 dead-letter topic within about a second; transient failures succeed on a retry. Both checks hold.",
                "Play `crash-loop`, switch to `retry-dlq` at 20 s: the backlog (about 1,600 once the malformed message \
                 is parked) drains at μ − λ = 200 − 100 = 100 a second; caught up about 17 s after the switch.",
            ],
        },
    },
    params: &[
        ParamSpec::live("msgs_per_s", "Message rate", "msgs/s", 0..=20_000, 100, "New messages per second (Poisson)."),
        ParamSpec::live("process_us", "Work per message", "µs", 10..=1_000_000, 5000, "Fixed time a try takes.").step(10),
        ParamSpec::live("fail_permille", "Transient failures", "‰", 0..=1000, 1, "Chance each try fails, on its own."),
        ParamSpec::live("restart_ms", "Restart and rejoin", "ms", 100..=60_000, 1000, "A crash's downtime.").step(100),
        ParamSpec::live("max_retries", "Retries", "", 0..=20, 3, "N: retries after the first try, then the DLQ."),
        ParamSpec::live("backoff_ms", "First backoff", "ms", 1..=10_000, 100, "Retry n waits U(0, this × 2^(n−1))."),
        ParamSpec::live("lag_max_s", "Lag bound", "s", 1..=600, 10, "The oldest uncommitted message may be this old."),
        ParamSpec::setup("poison_at", "Malformed message at", "s", 0..=3600, 5, "Scheduled fault (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("crash-loop", "Crash loop", "A failed message kills the consumer; it restarts from the commit."),
        StrategySpec::naive("skip", "Skip", "A failed message is logged and committed past: it is lost."),
        StrategySpec::fixed("retry-dlq", "Retry N, then DLQ", "Retried N times with backoff, then parked in the DLQ."),
    ],
    faults: &[FaultSpec::global("poison", "Malformed message", "The producers send this many messages that fail \
        every try (a payload the consumer cannot deserialize).").value("messages", 1..=100, 1)],
    checks: &[
        CheckSpec::new("none-lost", "No message lost", "An audit of the partition at every commit: each offset the \
            commit moves past was processed (its effect written) or is in the dead-letter topic. Names the offset."),
        CheckSpec::new("lag-bounded", "Partition lag bounded", "The oldest message not yet committed is at most the \
            lag bound old. Names the lag (messages, seconds) and since when the committed offset has not moved."),
    ],
    metrics: &[
        MetricSpec::new("lag", "Partition lag", "msgs", Measure::Gauge("lag")),
        MetricSpec::new("lag_s", "Partition lag (time)", "us", Measure::Gauge("lag_us")),
        MetricSpec::new("processed", "Throughput", "msgs/s", Measure::Rate("processed")),
        MetricSpec::new("p99", "Latency p99 (append → commit)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("lost", "Messages lost", "msgs", Measure::Count("lost")),
        MetricSpec::new("dlq", "Dead-letter topic", "msgs", Measure::Gauge("dlq")),
        MetricSpec::new("restarts", "Consumer restarts", "", Measure::Count("restarts")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { CrashLoop, Skip, RetryDlq });

const BROKER: NodeId = 0;
const CONSUMER: NodeId = 2;
/// The one consumer group; records per fetch (Kafka's max.poll.records); the backoff cap; how
/// long a fetch may go unanswered (a lost reply, a broker restart) before the consumer asks again.
const GROUP: usize = 0;
const FETCH_MAX: usize = 100;
const BACKOFF_CAP: Micros = 10 * MICROS_PER_S;
const FETCH_TIMEOUT: Micros = 2 * MICROS_PER_S;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Good,
    Malformed,
}

/// Fetches are numbered (kept through a crash, as Kafka's member epoch): a late answer to an old one
/// is ignored; `None`: from the committed offset. A dead-letter write is answered as a fetch.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Produce(Body),
    Fetch(u64, Option<Offset>),
    Records(u64, Vec<(Offset, Body)>),
    Commit(Offset),
    DeadLetter(u64, Offset),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Processed(Offset),
    FetchTimeout(u64),
}

#[derive(Clone, Debug, Holds)]
pub enum Pm {
    Broker(BrokerNode),
    Producer(OpenLoop),
    Consumer(Consumer),
}

/// The partition and the dead-letter topic (each record its offset, indexed in `dead`), durable;
/// the consumer's fetch parked until there is a record (volatile); the last commit that moved.
#[derive(Clone, Debug)]
pub struct BrokerNode {
    log: Partition<Body>,
    dlq: Partition<Offset>,
    dead: BTreeSet<Offset>,
    parked: Option<(u64, Offset)>,
    moved: Option<(Offset, Offset, Time)>,
}

/// The consumer's batch (head: in hand), next offset, the head's tries, view state, durable effects by offset.
#[derive(Clone, Debug, Default)]
pub struct Consumer {
    fetch_no: u64,
    awaiting: bool,
    batch: VecDeque<(Offset, Body)>,
    next: Option<Offset>,
    tries: u32,
    crashed_on: Option<(Offset, u64)>,
    skipped: u64,
    processed: KeyTable<()>,
}

fn sim(setup: &Setup) -> Sim<Pm> {
    let mut sim: Sim<Pm> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let (log, dlq, dead) = (Partition::new(1), Partition::new(0), BTreeSet::new());
    sim.add_node(Pm::Broker(BrokerNode { log, dlq, dead, parked: None, moved: None }));
    sim.add_node(Pm::Producer(OpenLoop::poisson(setup.param("msgs_per_s") as f64)));
    sim.add_node(Pm::Consumer(Consumer::default()));
    let poison_at = setup.param("poison_at");
    FaultWindow::secs(poison_at, poison_at.min(1)).custom(&mut sim, "poison", None, 1, 0);
    sim.check("none-lost", |w| audit(w.node(BROKER), &w.node::<Consumer>(CONSUMER).processed, w.now));
    // A state: how old the oldest uncommitted message is now.
    sim.check("lag-bounded", |w| {
        let (log, bound_s) = (&w.node::<BrokerNode>(BROKER).log, w.param("lag_max_s"));
        let behind_s = log.lag_us(GROUP, w.now) as f64 / 1e6;
        let (lag, at, since) = (log.lag(GROUP), log.committed(GROUP), log.committed_at(GROUP).as_secs_f64());
        (behind_s <= bound_s as f64).then_some(()).ok_or_else(|| {
            format!(
                "partition lag {lag} messages, {behind_s:.1} s behind (bound {bound_s} s): committed offset {at}, \
                unmoved since {since:.1} s"
            )
        })
    });
    sim
}

/// The event that loses a message, found by an audit (not the consumer's word): the first offset
/// the commit made at `now`, if one was, moved past with no effect written (`done`) and not in the DLQ.
fn audit(b: &BrokerNode, done: &KeyTable<()>, now: Time) -> Result<(), String> {
    let Some((from, to, _)) = b.moved.filter(|m| m.2 == now) else { return Ok(()) };
    let Some(o) = (from..to).find(|&o| !done.contains_key(o) && !b.dead.contains(&o)) else { return Ok(()) };
    let what = if b.log.get(o).is_some_and(|r| r.value == Body::Malformed) { "the malformed" } else { "a good" };
    Err(format!("offset {o} ({what} message) was committed past, neither processed nor in the DLQ: lost"))
}

impl Node for Pm {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Pm::Broker(_) => {}
            Pm::Producer(p) => p.start(ctx, Timer::Arrive),
            Pm::Consumer(c) => c.ask(Msg::Fetch, ctx),
        }
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Pm::Broker(b), Msg::Produce(body)) => {
                // The record's time is true time: it is what lag in seconds is measured against.
                b.log.append(body, ctx.truth());
                if let Some((no, from)) = b.parked.take() {
                    b.answer(no, from, ctx);
                }
                b.gauges(ctx);
            }
            (Pm::Broker(b), Msg::Fetch(no, from)) => b.answer(no, from.unwrap_or(b.log.committed(GROUP)), ctx),
            (Pm::Broker(b), Msg::Commit(offset)) => b.commit(offset, ctx),
            // Kept once however often it comes; committed past with the write; answered with what follows.
            (Pm::Broker(b), Msg::DeadLetter(no, offset)) => {
                if b.dead.insert(offset) {
                    b.dlq.append(offset, ctx.truth());
                }
                b.commit(offset + 1, ctx);
                b.answer(no, offset + 1, ctx);
            }
            (Pm::Consumer(c), Msg::Records(no, records)) if c.awaiting && no == c.fetch_no => {
                c.awaiting = false;
                c.batch.extend(records);
                c.start_next(ctx);
            }
            // The answer to a fetch given up on (or sent before a crash): a newer fetch is out.
            (Pm::Consumer(_), Msg::Records(..)) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Pm::Producer(p), Timer::Arrive) => {
                p.on_timer(ctx, Timer::Arrive);
                ctx.send(BROKER, Msg::Produce(Body::Good));
            }
            (Pm::Consumer(c), Timer::Processed(offset)) => c.processed(offset, ctx),
            (Pm::Consumer(c), Timer::FetchTimeout(no)) if c.awaiting && no == c.fetch_no => c.ask(Msg::Fetch, ctx),
            (Pm::Consumer(_), Timer::FetchTimeout(_)) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        match self {
            Pm::Broker(b) => b.parked = None,
            // What the consumer held in memory is gone; it starts again from the committed offset.
            Pm::Consumer(c) => (c.awaiting, c.next, c.tries, c.batch) = (false, None, 0, VecDeque::new()),
            Pm::Producer(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Pm::Producer(p), Control::Param { id: "msgs_per_s", value }) => {
                p.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Pm::Producer(_), Control::Custom { id: "poison", value }) if value > 0 => {
                (0..value).for_each(|_| ctx.send(BROKER, Msg::Produce(Body::Malformed)));
                ctx.note(format!("{value} malformed message(s) produced"));
            }
            // Strategies and other parameters are read where they are used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Pm::Broker(b) => b.view(),
            Pm::Producer(p) => NodeView::new(NodeKind::Client, 0, "producers")
                .badge(format!("{:.0} msgs/s", p.rate_per_s()), Tone::Neutral),
            Pm::Consumer(c) => c.view(),
        }
    }
}

impl BrokerNode {
    /// Answers fetch `no` with the records from `from` on, or parks it until one is appended.
    fn answer(&mut self, no: u64, from: Offset, ctx: &mut Ctx<Pm>) {
        if from >= self.log.end() {
            self.parked = Some((no, from));
        } else {
            ctx.send(CONSUMER, Msg::Records(no, self.log.read(from, FETCH_MAX)));
        }
    }

    /// The group commits `offset`: the message before it is finished, its latency from its append to now.
    fn commit(&mut self, offset: Offset, ctx: &mut Ctx<Pm>) {
        let from = self.log.committed(GROUP);
        if self.log.commit(GROUP, offset, ctx.truth()) {
            self.moved = Some((from, self.log.committed(GROUP), ctx.truth()));
            let at = self.log.get(offset - 1).expect("appended").at;
            ctx.observe("latency_us", ctx.truth().since(at));
        }
        self.gauges(ctx);
    }

    fn gauges(&self, ctx: &mut Ctx<Pm>) {
        ctx.gauge("lag", self.log.lag(GROUP) as i64);
        ctx.gauge("lag_us", self.log.lag_us(GROUP, ctx.truth()) as i64);
        ctx.gauge("dlq", self.dlq.len() as i64);
    }

    fn view(&self) -> NodeView {
        let (lag, dead) = (self.log.lag(GROUP) as i64, self.dlq.len() as i64);
        let stuck = self.log.get(self.log.committed(GROUP)).is_some_and(|r| r.value == Body::Malformed);
        NodeView::new(NodeKind::Queue, 1, "partition orders-0")
            .gauge("lag", lag, lag.max(100))
            .gauge("dead letters", dead, dead.max(10))
            .badge(format!("end {} · committed {}", self.log.end(), self.log.committed(GROUP)), Tone::Neutral)
            .badge_if(stuck, format!("malformed at {}", self.log.committed(GROUP)), Tone::Bad)
    }
}

impl Consumer {
    /// Sends a numbered request for records (given `next`); unanswered in `FETCH_TIMEOUT`, fetches from `next`.
    fn ask(&mut self, request: impl FnOnce(u64, Option<Offset>) -> Msg, ctx: &mut Ctx<Pm>) {
        (self.fetch_no, self.awaiting) = (self.fetch_no + 1, true);
        ctx.send(BROKER, request(self.fetch_no, self.next));
        ctx.set_timer(FETCH_TIMEOUT, Timer::FetchTimeout(self.fetch_no));
    }

    /// Starts on the batch's head, or fetches the next batch once it is done.
    fn start_next(&mut self, ctx: &mut Ctx<Pm>) {
        match self.batch.front() {
            Some(&(offset, _)) => {
                self.next = Some(offset);
                ctx.set_timer(ctx.param("process_us") as Micros, Timer::Processed(offset));
            }
            None => self.ask(Msg::Fetch, ctx),
        }
    }

    /// The head's try is over: committed if it worked, else what the strategy says.
    fn processed(&mut self, offset: Offset, ctx: &mut Ctx<Pm>) {
        let body = self.batch.front().map(|&(_, b)| b).expect("the message in hand");
        self.tries += 1;
        if body == Body::Good && ctx.rng().below(1000) >= ctx.param("fail_permille") as u64 {
            ctx.count("processed", 1);
            self.processed.insert(offset, ());
            return self.done(offset, Msg::Commit(offset + 1), ctx);
        }
        let why = if body == Body::Malformed { "cannot deserialize" } else { "failed (transient)" };
        match Strategy::from_id(ctx.strategy()) {
            Strategy::CrashLoop => {
                let n = self.crashed_on.filter(|c| c.0 == offset).map_or(1, |c| c.1 + 1);
                self.crashed_on = Some((offset, n));
                ctx.note(format!("offset {offset} {why}: the exception kills the consumer (crash {n} on it)"));
                ctx.count("restarts", 1);
                ctx.crash(Some(ctx.param("restart_ms") as Micros * MICROS_PER_MS));
            }
            Strategy::Skip => {
                ctx.note(format!("offset {offset} {why}: logged and committed past"));
                self.skipped += 1;
                ctx.count("lost", 1);
                self.done(offset, Msg::Commit(offset + 1), ctx);
            }
            Strategy::RetryDlq => {
                let base = ctx.param("backoff_ms") as Micros * MICROS_PER_MS;
                let policy = RetryPolicy::new(ctx.param("max_retries") as u32, base, BACKOFF_CAP, Jitter::Full);
                // The backoff, then the try again (full jitter needs no previous wait).
                match policy.delay_us(self.tries, 0, ctx.rng()) {
                    Some(wait) => {
                        ctx.count("retries", 1);
                        ctx.set_timer(wait + ctx.param("process_us") as Micros, Timer::Processed(offset));
                    }
                    // Nothing is committed before the broker answers the write; unanswered, it is retried from `next`.
                    None => {
                        ctx.note(format!("offset {offset} {why} {} times: to the dead-letter topic", self.tries));
                        (self.tries, self.batch) = (0, VecDeque::new());
                        self.ask(|no, _| Msg::DeadLetter(no, offset), ctx);
                    }
                }
            }
        }
    }

    /// The head is finished: tell the broker (`msg` commits past it) and go on.
    fn done(&mut self, offset: Offset, msg: Msg, ctx: &mut Ctx<Pm>) {
        self.batch.pop_front();
        (self.tries, self.next) = (0, Some(offset + 1));
        ctx.send(BROKER, msg);
        self.start_next(ctx);
    }

    fn view(&self) -> NodeView {
        let (text, tone) = match (self.batch.front(), self.next) {
            (Some(&(offset, Body::Malformed)), _) => (format!("offset {offset} (malformed)"), Tone::Bad),
            (Some(&(offset, Body::Good)), _) => (format!("offset {offset}"), Tone::Good),
            (None, Some(next)) => (format!("waiting at {next}"), Tone::Neutral),
            (None, None) => ("starting".to_string(), Tone::Neutral),
        };
        let crashed = self.crashed_on.map(|(offset, n)| format!("crashed {n}× on {offset}"));
        NodeView::new(NodeKind::Worker, 2, "consumer (owns partition 0)")
            .badge(text, tone)
            .badge_if(self.tries > 0, numbered("try", self.tries as u64 + 1), Tone::Warn)
            .badge_if(crashed.is_some(), crashed.unwrap_or_default(), Tone::Bad)
            .badge_if(self.skipped > 0, format!("{} skipped", self.skipped), Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::broker::testing::failures;
    use crate::parts::partition::catch_up_s;
    use crate::parts::testing::failed_at;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("poison-message", strategy, seed)
    }

    fn sim_run(recipe: Recipe, secs: u64) -> Sim<Pm> {
        crate::parts::testing::run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn broker(sim: &Sim<Pm>) -> &BrokerNode {
        sim.node::<BrokerNode>(BROKER)
    }

    /// When and why a check first failed, if it did.
    type Failed = Option<(f64, String)>;

    /// Each check's first failure: (none-lost, lag-bounded).
    fn verdicts(sim: &Sim<Pm>) -> (Failed, Failed) {
        (failed_at(sim, "none-lost"), failed_at(sim, "lag-bounded"))
    }

    /// The whole-partition audit at the end of a run: the offsets below the committed one that
    /// were neither processed nor dead-lettered.
    fn unaccounted(sim: &Sim<Pm>) -> Vec<Offset> {
        let (b, c) = (broker(sim), sim.node::<Consumer>(CONSUMER));
        (0..b.log.committed(GROUP)).filter(|&o| !c.processed.contains_key(o) && !b.dead.contains(&o)).collect()
    }

    #[test]
    fn try_crash_loop_stalls_the_partition_and_the_lag_grows_at_the_producers_rate() {
        // Step 1. From the malformed message (5 s) on, the committed offset does not move, so
        // the lag grows by what the producers append: Poisson at λ = 100/s, 600 over 8–14 s
        // (s.d. 24.5); ±15% is 3.7 s.d. The check fails once the message is 10 s old: 15 s,
        // plus the few ms it waited to be read.
        for seed in 1..=3 {
            let mut sim = sim(&Setup { spec: &SPEC, recipe: recipe("crash-loop", seed) });
            sim.keep_trace(false);
            sim.run_until(Time::from_secs(8), u64::MAX);
            let (lag8, at8) = (broker(&sim).log.lag(GROUP), broker(&sim).log.committed(GROUP));
            sim.run_until(Time::from_secs(14), u64::MAX);
            let (lag14, at14) = (broker(&sim).log.lag(GROUP), broker(&sim).log.committed(GROUP));
            assert_eq!(at8, at14, "seed {seed}: stuck");
            let grown = (lag14 - lag8) as f64;
            assert!((grown - 600.0).abs() <= 90.0, "seed {seed}: grew {grown} in 6 s");
            sim.run_until(Time::from_secs(30), u64::MAX);
            let (lost, lag) = verdicts(&sim);
            let (at, why) = lag.expect("the lag check fails");
            assert!(lost.is_none(), "seed {seed}: a crash loses nothing");
            assert!((15.0..15.2).contains(&at) && why.contains("unmoved since 5.0 s"), "seed {seed}: {at}: {why}");
            let restarts = sim.metrics().counter("restarts");
            assert!((22..=27).contains(&restarts), "seed {seed}: about one a second from 5 s: {restarts}");
        }
    }

    #[test]
    fn try_skip_loses_the_malformed_message_and_transient_failures() {
        // Step 2, under the default recipe. The malformed message is committed past as it is
        // tried (5 s, a few ms after it arrives) and the check names its offset then; each of
        // the ~2,970 other tries of a run fails with p = 1‰, so about 3 more a run are lost
        // (15 over five seeds, Poisson, s.d. 3.9), each named as a good message when it is
        // committed past — before 5 s in 1 − e^−0.5 = 39% of runs, so the claim is "at 5 s",
        // not "first". The lag never builds. The audit at the end agrees with every failure.
        let mut transient = 0;
        for seed in 1..=5 {
            let mut sim = sim(&Setup { spec: &SPEC, recipe: recipe("skip", seed) });
            let failed = failures(&mut sim, "none-lost", 30);
            let log = &broker(&sim).log;
            let bad = (0..log.end()).find(|&o| log.get(o).is_some_and(|r| r.value == Body::Malformed)).expect("sent");
            let named = format!("offset {bad} (the malformed message)");
            let at5: Vec<_> = failed.iter().filter(|f| (5.0..5.1).contains(&f.0) && f.1.starts_with(&named)).collect();
            assert_eq!(at5.len(), 1, "seed {seed}: {failed:?}");
            // Every failure names an offset the final audit finds lost, in order, and no other.
            let lost = unaccounted(&sim);
            assert_eq!(lost.len(), failed.len(), "seed {seed}: {failed:?} vs {lost:?}");
            assert!(failed.iter().zip(&lost).all(|(f, o)| f.1.starts_with(&format!("offset {o} ("))), "seed {seed}");
            assert!(verdicts(&sim).1.is_none() && broker(&sim).dlq.is_empty(), "seed {seed}");
            assert_eq!(sim.metrics().counter("lost") as usize, lost.len(), "seed {seed}");
            transient += lost.len() - 1;
        }
        assert!((5..=30).contains(&transient), "{transient} lost to transient failures");
    }

    #[test]
    fn the_audit_names_an_offset_committed_past_unprocessed_whoever_reports_it() {
        // The check reads the broker's commit and the effects written, never the consumer's
        // account of what it skipped: a commit from 3 to 6 with offset 4 neither processed nor
        // dead-lettered is named, whatever the consumer said; one with 4 in the DLQ is not.
        let mut sim = sim(&Setup { spec: &SPEC, recipe: recipe("retry-dlq", 1).with_param("poison_at", 0) });
        sim.run_until(Time::from_ms(200), u64::MAX);
        let (b, c) = (broker(&sim), sim.node::<Consumer>(CONSUMER));
        assert!(b.log.committed(GROUP) >= 6, "{}", b.log.committed(GROUP));
        let mut b = b.clone();
        let mut done = c.processed.clone();
        done.remove(4u64);
        b.moved = Some((3, 6, Time::from_ms(200)));
        let lost = "offset 4 (a good message) was committed past, neither processed nor in the DLQ: lost";
        assert_eq!(audit(&b, &done, Time::from_ms(200)), Err(lost.to_string()));
        assert_eq!(audit(&b, &done, Time::from_ms(201)), Ok(()), "judged at the commit only");
        b.dead.insert(4);
        assert_eq!(audit(&b, &done, Time::from_ms(200)), Ok(()));
    }

    #[test]
    fn a_lost_dead_letter_write_is_sent_again_before_the_commit() {
        // The consumer's link to the broker is cut (one way) for 200 ms around its dead-letter
        // write: the write is lost. The consumer commits nothing past the malformed message
        // until the broker answers the write, so it waits; after its 2 s fetch timeout it reads
        // from the malformed offset again, tries it 4 times and writes it again: it ends in the
        // DLQ, once, and nothing is lost. (Fire-and-forget, the consumer went on and committed
        // past the malformed offset: lost, neither processed nor in the DLQ.)
        for seed in 1..=3 {
            let calm = recipe("retry-dlq", seed).with_param("fail_permille", 0);
            let first = sim_run(calm.clone(), 8);
            let sent = broker(&first).dlq.get(0).expect("parked").at;
            let cut = ActionKind::Fault(Fault::Isolate { node: CONSUMER, one_way: true });
            let r = calm
                .with_action(Time(sent.0 - 100_000), cut)
                .with_action(Time(sent.0 + 100_000), ActionKind::Fault(Fault::Heal));
            let sim = sim_run(r, 15);
            let b = broker(&sim);
            assert_eq!(
                (b.dlq.len(), b.dlq.get(0).map(|r| r.value)),
                (1, first.node::<BrokerNode>(BROKER).dlq.get(0).map(|r| r.value)),
                "seed {seed}"
            );
            let resent = b.dlq.get(0).expect("parked").at;
            assert!(resent.since(sent) >= FETCH_TIMEOUT, "seed {seed}: parked at {resent:?}, first sent {sent:?}");
            assert_eq!(verdicts(&sim).0, None, "seed {seed}");
            // Caught up by 15 s (M/D/1 at ρ = 0.5: a lag of a few messages at most, now and then).
            assert!(unaccounted(&sim).is_empty() && b.log.lag(GROUP) <= 10, "seed {seed}: lag {}", b.log.lag(GROUP));
        }
    }

    #[test]
    fn try_retry_then_dlq_parks_the_malformed_message_and_holds_both_checks() {
        // Step 3. Without transient failures: 3 retries, waits U(0, 100/200/400 ms) (mean
        // 350 ms, at most 700), then the DLQ: within a second of 5 s. With them (the default),
        // both checks hold and only the malformed message is in the DLQ.
        let mut transient = 0;
        for seed in 1..=5 {
            let sim = sim_run(recipe("retry-dlq", seed).with_param("fail_permille", 0), 6);
            let dlq = &broker(&sim).dlq;
            assert_eq!(dlq.len(), 1, "seed {seed}");
            let parked = dlq.get(0).expect("parked");
            assert_eq!(broker(&sim).log.get(parked.value).expect("the original").value, Body::Malformed);
            assert!(parked.at < Time::from_secs(6), "seed {seed}");
            assert_eq!(sim.metrics().counter("retries"), 3, "seed {seed}");
            let sim = sim_run(recipe("retry-dlq", seed), 30);
            assert_eq!(verdicts(&sim), (None, None), "seed {seed}");
            assert_eq!(broker(&sim).dlq.len(), 1, "seed {seed}");
            transient += sim.metrics().counter("retries") - 3;
        }
        // About 3 transient failures a run (see step 2), each retried and then processed.
        assert!(transient >= 5, "{transient} retries of transient failures");
    }

    #[test]
    fn try_switching_to_retry_dlq_drains_the_backlog_at_mu_minus_lambda() {
        // Step 4. Crash loop to 20 s: about 1,500 messages behind. After the switch the
        // consumer restarts (≤ 1 s), parks the message (≤ 0.7 s) and then works off the lag
        // L₀ it finds at μ = 1/5 ms = 200/s against λ = 100/s: the fluid time L₀/(μ − λ).
        // Arrivals over those ~15 s vary by √1,500 ≈ 39 messages (0.4 s); fetch round trips
        // (~1 ms a batch of 100) slow μ by 0.3%: ±10%.
        for seed in 1..=3 {
            let switch = ActionKind::SetStrategy { id: "retry-dlq".into() };
            let mut sim = sim(&Setup {
                spec: &SPEC,
                recipe: recipe("crash-loop", seed).with_action(Time::from_secs(20), switch),
            });
            sim.keep_trace(false);
            let (mut parked, mut caught) = (None, None);
            for ms in (20_000..45_000).step_by(20) {
                sim.run_until(Time::from_ms(ms), u64::MAX);
                let b = broker(&sim);
                if parked.is_none() && b.dlq.len() == 1 {
                    parked = Some((ms, b.log.lag(GROUP) as f64));
                }
                if parked.is_some() && b.log.lag(GROUP) <= 3 {
                    caught = Some(ms);
                    break;
                }
            }
            let ((t0, lag0), t1) = (parked.expect("parked"), caught.expect("caught up"));
            assert!((1300.0..1800.0).contains(&lag0), "seed {seed}: {lag0} behind");
            let (took, want) = ((t1 - t0) as f64 / 1e3, catch_up_s(lag0, 200.0, 100.0).expect("faster"));
            assert!((took - want).abs() <= 0.1 * want, "seed {seed}: {took} s, fluid {want:.2} s");
            // The step's "about 17 s": ≤ 1 s to restart, ≤ 0.7 s of backoff (mean 0.35), then
            // ~1,600/100 s. The arrivals' spread (0.4 s) and the restart's phase (±0.5 s) with
            // the backoff's make ±1.5 s.
            let after = (t1 - 20_000) as f64 / 1e3;
            assert!((after - 17.0).abs() <= 1.5, "seed {seed}: caught up {after} s after the switch");
            assert!(failed_at(&sim, "none-lost").is_none(), "seed {seed}");
        }
    }

    #[test]
    fn a_late_commit_or_a_lost_fetch_loses_nothing() {
        // Links reorder (0.2–1 ms) and a work time of 10 µs is shorter: commits arrive out
        // of order and only move forward. Every message is processed once, none lost.
        let sim = sim_run(recipe("retry-dlq", 7).with_param("process_us", 10).with_param("fail_permille", 0), 10);
        let b = broker(&sim);
        assert_eq!(sim.metrics().counter("processed") as u64 + b.dlq.len() as u64, b.log.committed(GROUP));
        assert!(b.log.lag(GROUP) <= 2, "{}", b.log.lag(GROUP));
        // The broker restarts (its parked fetch gone): the consumer asks again after 2 s.
        let (crash, restart) = (Fault::Crash { node: BROKER }, Fault::Restart { node: BROKER });
        let recipe = recipe("retry-dlq", 7)
            .with_action(Time::from_secs(8), ActionKind::Fault(crash))
            .with_action(Time::from_secs(9), ActionKind::Fault(restart));
        let sim = sim_run(recipe, 20);
        assert!(broker(&sim).log.lag(GROUP) <= 2);
        assert_eq!(verdicts(&sim).0, None);
    }

    #[test]
    fn the_view_shows_lag_dead_letters_and_the_consumers_crashes() {
        let sim = sim_run(recipe("crash-loop", 1), 12);
        let frame = sim.frame(0);
        let b = &frame.nodes[BROKER as usize].view;
        assert_eq!(b.gauges.iter().map(|g| g.label).collect::<Vec<_>>(), ["lag", "dead letters"]);
        assert!(b.gauges[0].value > 500 && b.badges.iter().any(|x| x.text.starts_with("malformed at")));
        let c = &frame.nodes[CONSUMER as usize].view;
        assert!(c.badges.iter().any(|x| x.text.starts_with("crashed") && x.tone == Tone::Bad), "{:?}", c.badges);
        let sim = sim_run(recipe("retry-dlq", 1), 12);
        assert_eq!(sim.frame(0).nodes[BROKER as usize].view.gauges[1].value, 1);
    }
}
