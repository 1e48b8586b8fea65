//! Delivery semantics: a producer → a broker → consumers that credit an account in a database. Acking before the credit loses the message a crash falls between; acking after credits it twice when the crash falls after the credit, or when the broker holds it twice; a dedupe row written in the credit's own transaction makes every message count once.

use crate::parts::arrivals::OpenLoop;
use crate::parts::broker::{Broker, Consumers, Delivery, MsgId, State};
use crate::parts::claims::Claims;
use crate::parts::degraded::FaultWindow;
use crate::parts::station::Service;
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "delivery-semantics",
        title: "Delivery semantics: at most once, at least once, effectively once",
        category: "Messaging",
        seeds: &["S1#25", "S1#12", "S0#4", "S3#13"],
        summary: "100 messages/s, each crediting an account, for 8 consumers; 1% of deliveries crash their consumer; \
                  scheduled: a crash before a credit (4 s), one right after (8 s), lost producer acks (12 s).",
        note: Note {
            what_can_go_wrong: "Exactly-once delivery does not exist between a broker and a consumer that can crash: \
                the ack and the effect are writes to two systems, and a crash falls between them. A producer resending \
                when the broker's ack is lost puts a second copy in the queue, which no ack order catches. The model: \
                Poisson producer (a lost ack: the copy sent again 200 ms later); an SQS-like durable broker; exponential \
                work, the credit committing a fixed share into it; a crash at a uniform point of it, with a fixed chance.",
            what_you_sacrifice: "A dedupe row per message, in every credit's transaction and kept as long as a copy may \
                come; the effect must live in a transactional store beside it. A crash costs a visibility timeout.",
            at_10x: "The dedupe table grows 10× as fast; batched acks (Kafka's offset commits) widen the gap between \
                effect and ack to a whole batch: one crash replays it all.",
            resembles: "Amazon SQS (visibility timeout; FIFO deduplication ids), Kafka consumers (offsets committed \
                before or after processing), RabbitMQ manual acks, Redis streams with XACK, the inbox pattern.",
            try_this: &[
                "Play `ack-first`: within seconds `exactly-once` names a message acked whose consumer crashed before the \
                 credit (0 credits): half the crashes (1% of deliveries), 0.5% of messages; at 4 s, consumer 0's (scheduled).",
                "Switch to `ack-after`: nothing is lost, but about 0.5% of messages are credited twice, among them \
                 consumer 1's at 8 s, back after the 2 s visibility timeout, and the producer's copies of 12 s.",
                "Try `dedupe-tx`: the crash at 8 s and the copies at 12 s find the key's dedupe row, their commits \
                 roll back (conflicts), and every message is credited once.",
                "Set the visibility timeout to 100 ms and the work to 50 ms: one delivery in seven (e^−2) outlasts it \
                 and runs again: `ack-after` credits about 14% of messages twice; `dedupe-tx` rolls the copies back.",
            ],
        },
    },
    params: &[
        ParamSpec::live("msgs_per_s", "Message rate", "msgs/s", 0..=2000, 100, "New messages per second (Poisson)."),
        ParamSpec::setup("consumers", "Consumers", "", 1..=64, 8, "Consumers, each processing one message at a time."),
        ParamSpec::live("work_ms", "Work per message", "ms", 1..=5000, 20, "Mean (exponential) processing time."),
        ParamSpec::live("effect_at_pct", "Credit at", "%", 0..=100, 50, "How far into the work the credit commits."),
        ParamSpec::live("crash_pct", "Crash chance", "%", 0..=100, 1, "Chance a delivery crashes its consumer, at a uniformly random point of the work."),
        ParamSpec::live("restart_ms", "Restart after", "ms", 10..=60_000, 500, "A crashed consumer is back after this."),
        ParamSpec::live("visibility_ms", "Visibility timeout", "ms", 100..=600_000, 2000, "Unacked by then: delivered again.").step(100),
        ParamSpec::setup("crash_before_at", "Crash before credit at", "s", 0..=3600, 4, "Scheduled: consumer 0's next message crashes it before the credit (0: none)."),
        ParamSpec::setup("crash_after_at", "Crash after credit at", "s", 0..=3600, 8, "Scheduled: consumer 1's next message crashes it as the credit commits (0: none)."),
        ParamSpec::setup("dup_at", "Lost send acks at", "s", 0..=3600, 12, "Scheduled: the broker's next 3 acks to the producer are lost (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("ack-first", "Ack, then process (at most once)", "The consumer acks on receipt, then credits: a crash in between loses the message."),
        StrategySpec::naive("ack-after", "Process, then ack (at least once)", "Credits first and acks after: a crash in between, or a second copy, credits twice."),
        StrategySpec::fixed("dedupe-tx", "Dedupe in the credit's transaction", "Credits and inserts the key's dedupe row in one transaction: a copy's commit hits the unique key and is rolled back."),
    ],
    faults: &[
        FaultSpec::node("crash-before", "Crash before the credit", "The consumer's next messages crash it halfway to the credit (after the ack, under ack-first).").value("messages", 1..=100, 1),
        FaultSpec::node("crash-after", "Crash after the credit", "The consumer's next messages crash it as the credit commits, before the ack and any dedupe write.").value("messages", 1..=100, 1),
        FaultSpec::global("lose-acks", "Lost send acks", "The broker's next acks to the producer are lost: it sends those messages again.").value("acks", 1..=1000, 3),
    ],
    checks: &[
        CheckSpec::new("exactly-once", "Credited once", "An audit of the broker's log against the database: fails when a message \
            is credited a second time, or when every copy of it is acked at the broker, no consumer holds it and it has no credit. Names it."),
    ],
    metrics: &[
        MetricSpec::new("lost", "Messages lost", "msgs", Measure::Count("lost")),
        MetricSpec::new("duplicated", "Messages credited twice", "msgs", Measure::Count("duplicated")),
        MetricSpec::new("once", "Effectively once", "%", Measure::Percent { num: "once", rest: "anomalies" }),
        MetricSpec::new("credits", "Throughput (credits)", "/s", Measure::Rate("credits")),
        MetricSpec::new("p99", "End-to-end latency p99 (send → credit)", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("conflicts", "Commits rolled back (dedupe)", "msgs", Measure::Count("conflicts")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { AckFirst, AckAfter, DedupeTx });

const BROKER: NodeId = 0;
const DB: NodeId = 1;
const FIRST_CONSUMER: NodeId = 2;
/// A consumer gives up on its credit's commit after this (the database is down).
const DB_TIMEOUT: Micros = MICROS_PER_S;
/// A producer whose send the broker has not acked by then sends it again.
const SEND_TIMEOUT: Micros = 200 * MICROS_PER_MS;

/// A consumer's steps on a message: the work up to the credit, the credit's commit, the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Work,
    Credit,
    Rest,
}

/// A message is the producer's key (the same in every copy); a credit and its answer name the delivery's receipt.
#[derive(Clone, Debug, Label)]
enum Msg {
    Poll,
    Deliver(Delivery<u64>),
    Ack(MsgId, u64),
    Credit { receipt: u64, key: u64, sent: Time, st: Strategy },
    Committed(u64),
}

/// A consumer's timers name the delivery (its receipt) and the step they end: a crashed one's are stale.
#[derive(Clone, Debug, Label)]
enum Timer {
    Arrive,
    Wake,
    Step(u64, Step),
    Crash(u64),
}

#[derive(Clone, Debug, Holds)]
enum Ds {
    Broker(BrokerNode),
    Db(Database),
    Consumer(Consumer),
}

/// The producer (folded in: a send is an enqueue), the durable queue, waiting consumers, acks to lose.
#[derive(Clone, Debug)]
struct BrokerNode {
    arrivals: OpenLoop,
    next_key: u64,
    q: Broker<u64>,
    consumers: Consumers,
    lose_acks: i64,
}

/// Credits per key and the dedupe table.
#[derive(Clone, Debug)]
struct Database {
    credits: KeyTable<u32>,
    dedupe: Claims<()>,
    duplicated: u64,
}

/// The message held (with the strategy when it came, and its step), its work, where a crash falls in it
/// (this far into a step), and the scheduled crashes (before / at the credit) due on the next messages.
#[derive(Clone, Debug, Default)]
struct Consumer {
    index: u32,
    held: Option<(Delivery<u64>, Strategy, Step)>,
    work_us: Micros,
    before_us: Micros,
    crash: Option<(Step, Micros)>,
    scheduled: [i64; 2],
}

fn sim(setup: &Setup) -> Sim<Ds> {
    let mut sim: Sim<Ds> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let arrivals = OpenLoop::poisson(setup.param("msgs_per_s") as f64);
    let (q, consumers) = (Broker::new(0), Consumers::default());
    sim.add_node(Ds::Broker(BrokerNode { arrivals, next_key: 0, q, consumers, lose_acks: 0 }));
    sim.add_node(Ds::Db(Database { credits: KeyTable::default(), dedupe: Claims::default(), duplicated: 0 }));
    let consumers = setup.param("consumers") as NodeId;
    (0..consumers as u32).for_each(|index| _ = sim.add_node(Ds::Consumer(Consumer { index, ..Consumer::default() })));
    let (before, after, dup) = (setup.param("crash_before_at"), setup.param("crash_after_at"), setup.param("dup_at"));
    FaultWindow::secs(before, before.min(1)).custom(&mut sim, "crash-before", Some(FIRST_CONSUMER), 1, 0);
    let second = FIRST_CONSUMER + 1.min(consumers - 1);
    FaultWindow::secs(after, after.min(1)).custom(&mut sim, "crash-after", Some(second), 1, 0);
    FaultWindow::secs(dup, dup.min(1)).custom(&mut sim, "lose-acks", None, 3, 0);
    sim.check("exactly-once", |w| match w.tallied.iter().find(|t| t.0 != "credits" || t.2 > 1) {
        Some(&("credits", key, n)) => Err(format!("message #{key} credited {n} times in the database")),
        Some(&(what, id, n)) => audit(w, id, if what == "acked" { n as NodeId } else { w.touched.unwrap_or(0) }),
        None => Ok(()),
    });
    sim
}

/// The audit of message `id` acked or dropped by consumer node `by`, against the broker's log and the
/// database: lost if no copy is left to deliver (all acked), no consumer holds one, and no credit.
fn audit(w: &World<Ds>, id: MsgId, by: NodeId) -> Result<(), String> {
    let (b, db) = (w.node::<BrokerNode>(BROKER), w.node::<Database>(DB));
    let key = b.q.get(id).map_or(u64::MAX, |m| m.job);
    // A resent copy is sent right after its original (`arrive`): a key's messages are neighbours.
    let mut copies = (id.saturating_sub(1)..=id + 1).filter_map(|i| b.q.get(i)).filter(|m| m.job == key);
    let held = w.all::<Consumer>().any(|(_, c)| c.held.as_ref().is_some_and(|h| h.0.job == key));
    let lost = !held && !db.credits.contains_key(key) && copies.all(|m| m.state == State::Done);
    let who = by.saturating_sub(FIRST_CONSUMER);
    lost.then(|| format!("message #{key}: acked at the broker, consumer {who} crashed holding it: 0 credits"))
        .map_or(Ok(()), Err)
}

impl Node for Ds {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ds::Broker(b) => {
                b.consumers.restarted(FIRST_CONSUMER..FIRST_CONSUMER + ctx.param("consumers") as NodeId);
                b.q.set_visibility_us(ctx.param("visibility_ms") as Micros * MICROS_PER_MS);
                b.arrivals.start(ctx, Timer::Arrive);
                b.dispatch(ctx);
            }
            Ds::Db(_) => {}
            Ds::Consumer(_) => ctx.send(BROKER, Msg::Poll),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (&mut *self, msg) {
            // The deleting ack happens once a message: its tally holds the consumer that sent it.
            (Ds::Broker(b), Msg::Ack(id, receipt)) => {
                _ = b.q.ack(id, receipt).deleted.then(|| ctx.tally("acked", id, from as i64))
            }
            (Ds::Broker(b), Msg::Poll) => b.consumers.ask(from),
            (Ds::Db(db), Msg::Credit { receipt, key, sent, st }) => db.credit((from, receipt), key, sent, st, ctx),
            // Sent after a broker restart to a busy consumer: left to come back after its visibility timeout.
            (Ds::Consumer(c), Msg::Deliver(d)) if c.held.is_some() => ctx.note(format!("busy: message #{} left", d.id)),
            (Ds::Consumer(c), Msg::Deliver(d)) => c.start(d, ctx),
            (Ds::Consumer(c), Msg::Committed(r)) if c.at(r) == Some(Step::Credit) => c.enter(Step::Rest, ctx),
            (Ds::Consumer(_), Msg::Committed(_)) => ctx.note("a late commit answer: ignored"),
            (_, other) => return ctx.unhandled(&other),
        }
        if let Ds::Broker(b) = self {
            b.dispatch(ctx);
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ds::Broker(b), Timer::Arrive) => b.arrive(ctx),
            (Ds::Broker(b), Timer::Wake) => b.dispatch(ctx),
            (Ds::Consumer(c), Timer::Crash(r)) if c.at(r).is_some() => {
                ctx.crash(Some(ctx.param("restart_ms") as Micros * MICROS_PER_MS))
            }
            (Ds::Consumer(c), Timer::Step(r, step)) if c.at(r) == Some(step) => match step {
                Step::Work => c.enter(Step::Credit, ctx),
                // The commit got no answer (the database is down): the consumer restarts, dropping the message.
                Step::Credit => ctx.crash(Some(0)),
                Step::Rest => c.finish(ctx),
            },
            (Ds::Consumer(_), Timer::Crash(_) | Timer::Step(..)) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    /// The broker's queue and the database are durable; a consumer's message is not: dropped (the
    /// audit judges what that cost). Counted lost as the consumer knows it: acked, no credit sent.
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        let Ds::Consumer(Consumer { held, .. }) = self else { return };
        let Some((d, st, step)) = held.take() else { return };
        if st == Strategy::AckFirst && step == Step::Work {
            [("lost", 1), ("anomalies", 1)].into_iter().for_each(|(c, d)| ctx.count(c, d));
        }
        ctx.tally("dropped", d.id, 1);
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ds::Broker(b), Control::Param { id: "visibility_ms", value }) => {
                b.q.set_visibility_us(value as u64 * 1000)
            }
            (Ds::Broker(b), Control::Param { id: "msgs_per_s", value }) => {
                b.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Ds::Broker(b), Control::Custom { id: "lose-acks", value }) => b.lose_acks = value,
            (Ds::Consumer(c), Control::Custom { id: "crash-before", value }) => c.scheduled[0] = value,
            (Ds::Consumer(c), Control::Custom { id: "crash-after", value }) => c.scheduled[1] = value,
            // Strategies apply from each consumer's next message; other parameters are read where used.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ds::Broker(b) => {
                b.q.gauges(NodeView::new(NodeKind::Queue, 0, "producer → broker"))
                    .badge(format!("{:.0} msgs/s in", b.arrivals.rate_per_s()), Tone::Neutral)
                    .badge(format!("visibility {} ms", b.q.visibility_us() / MICROS_PER_MS), Tone::Neutral)
                    .badge_if(b.q.redelivered() > 0, format!("{} redelivered", b.q.redelivered()), Tone::Warn)
            }
            Ds::Db(db) => NodeView::new(NodeKind::Database, 3, "accounts DB")
                .gauge("dedupe rows", db.dedupe.len() as i64, (db.dedupe.len() as i64).max(100))
                .badge(format!("{} credited", db.credits.len()), Tone::Neutral)
                .badge_if(db.duplicated > 0, format!("{} credited twice", db.duplicated), Tone::Bad),
            Ds::Consumer(c) => {
                let v = NodeView::new(NodeKind::Worker, 1 + (c.index % 2) as u8, numbered("consumer", c.index as u64));
                let Some((d, st, step)) = &c.held else { return v.badge("idle", Tone::Neutral) };
                // What a crash now would cost: the message (acked, not credited) or a second credit.
                let text = if *st == Strategy::AckFirst { "acked, not credited" } else { "credited, not acked" };
                let exposed = (*st == Strategy::AckFirst) != (*step == Step::Rest);
                v.badge(format!("msg #{}", d.job), Tone::Neutral).badge_if(exposed, text, Tone::Warn)
            }
        }
    }
}

impl BrokerNode {
    /// The producer sends a message; if its ack is lost, it sends it again after its timeout: a second copy.
    fn arrive(&mut self, ctx: &mut Ctx<Ds>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let (key, now) = (self.next_key, ctx.now());
        self.next_key += 1;
        self.q.send(key, now, 0);
        if self.lose_acks > 0 {
            self.lose_acks -= 1;
            self.q.send(key, now, SEND_TIMEOUT);
            ctx.count("resent", 1);
        }
        self.dispatch(ctx);
    }

    fn dispatch(&mut self, ctx: &mut Ctx<Ds>) {
        self.consumers.dispatch(&mut self.q, ctx, Timer::Wake, |ctx, c, d| ctx.send(c, Msg::Deliver(d)));
    }
}

impl Database {
    /// The credit's transaction, answered to (consumer, receipt); under dedupe-tx it inserts the
    /// key's dedupe row too, and a row already there (the unique constraint) rolls it back.
    fn credit(&mut self, (to, receipt): (NodeId, u64), key: u64, sent: Time, st: Strategy, ctx: &mut Ctx<Ds>) {
        ctx.send(to, Msg::Committed(receipt));
        if st == Strategy::DedupeTx && self.dedupe.finish(key, (), ctx.now()).is_err() {
            return ctx.count("conflicts", 1);
        }
        let n = self.credits.get(key).copied().unwrap_or(0) + 1;
        self.credits.insert(key, n);
        ctx.count("credits", 1);
        ctx.tally("credits", key, 1);
        if n == 1 {
            ctx.count("once", 1);
            ctx.observe("latency_us", ctx.now().since(sent));
        } else if n == 2 {
            self.duplicated += 1;
            [("once", -1), ("duplicated", 1), ("anomalies", 1)].into_iter().for_each(|(c, d)| ctx.count(c, d));
        }
    }
}

impl Consumer {
    /// The step of the delivery with this receipt, if it is the one held.
    fn at(&self, receipt: u64) -> Option<Step> {
        self.held.as_ref().filter(|h| h.0.receipt == receipt).map(|h| h.2)
    }

    fn start(&mut self, d: Delivery<u64>, ctx: &mut Ctx<Ds>) {
        let st = Strategy::from_id(ctx.strategy());
        self.work_us = Service::exponential_ms(ctx.param("work_ms") as u64).sample_us(ctx.rng());
        let before_us = self.work_us * ctx.param("effect_at_pct") as u64 / 100;
        self.before_us = before_us;
        // A scheduled crash before or at the credit; else, by chance, one at a uniform point of the work.
        self.crash = if let Some(i) = self.scheduled.iter().position(|&n| n > 0) {
            self.scheduled[i] -= 1;
            Some(if i == 0 { (Step::Work, before_us / 2) } else { (Step::Rest, 0) })
        } else if ctx.rng().below(100) < ctx.param("crash_pct") as u64 {
            let at = (ctx.rng().unit_open() * self.work_us as f64) as Micros;
            Some(if at < before_us { (Step::Work, at) } else { (Step::Rest, at - before_us) })
        } else {
            None
        };
        if st == Strategy::AckFirst {
            ctx.send(BROKER, Msg::Ack(d.id, d.receipt));
        }
        self.held = Some((d, st, Step::Work));
        self.enter(Step::Work, ctx);
    }

    /// Enters `step`: the credit's commit (given up after `DB_TIMEOUT`), or a stretch of work
    /// (the share before the credit, or the rest) cut short by a crash planned in it.
    fn enter(&mut self, step: Step, ctx: &mut Ctx<Ds>) {
        let (d, st, at) = self.held.as_mut().expect("a message");
        *at = step;
        let r = d.receipt;
        let len = match step {
            Step::Credit => {
                ctx.send(DB, Msg::Credit { receipt: r, key: d.job, sent: d.due, st: *st });
                ctx.set_timer(DB_TIMEOUT, Timer::Step(r, step));
                return;
            }
            Step::Work => self.before_us,
            Step::Rest => self.work_us - self.before_us,
        };
        match self.crash {
            Some((s, at)) if s == step && at <= len => ctx.set_timer(at, Timer::Crash(r)),
            _ => ctx.set_timer(len, Timer::Step(r, step)),
        };
    }

    /// Done: acked (unless it was on receipt), and ready for the next message.
    fn finish(&mut self, ctx: &mut Ctx<Ds>) {
        let (d, st, _) = self.held.take().expect("a message");
        if st != Strategy::AckFirst {
            ctx.send(BROKER, Msg::Ack(d.id, d.receipt));
        }
        ctx.send(BROKER, Msg::Poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::broker::testing::failures;
    use crate::parts::testing::failed_at;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("delivery-semantics", strategy, seed)
    }

    /// No scheduled faults and no random crashes.
    fn calm(strategy: &str, seed: u64) -> Recipe {
        let r = recipe(strategy, seed).with_param("crash_before_at", 0).with_param("crash_after_at", 0);
        r.with_param("dup_at", 0).with_param("crash_pct", 0)
    }

    fn sim_run(recipe: Recipe, secs: u64) -> Sim<Ds> {
        crate::parts::testing::run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    /// Messages the broker took (copies included), and the shares of them lost and credited twice.
    fn shares(sim: &Sim<Ds>) -> (u64, f64, f64) {
        let sent = sim.node::<BrokerNode>(BROKER).q.sent();
        let share = |name| counter(sim, name) as f64 / sent as f64;
        (sent, share("lost"), share("duplicated"))
    }

    /// The audit over the whole run: keys whose every message the broker has acked, that no
    /// consumer holds, with no credit in the database.
    fn uncredited(sim: &Sim<Ds>) -> Vec<u64> {
        let (b, db) = (sim.node::<BrokerNode>(BROKER), sim.node::<Database>(DB));
        let held = |key| {
            sim.nodes().iter().any(|n| matches!(n, Ds::Consumer(c) if c.held.as_ref().is_some_and(|h| h.0.job == key)))
        };
        let mut keys: Vec<u64> = b.q.messages().map(|(_, m)| m.job).collect();
        keys.dedup();
        let all_done = |key| b.q.messages().filter(|(_, m)| m.job == key).all(|(_, m)| m.state == State::Done);
        keys.into_iter().filter(|&k| !db.credits.contains_key(k) && !held(k) && all_done(k)).collect()
    }

    #[test]
    fn try_ack_first_loses_the_message_a_crash_falls_on() {
        // Step 1, under the default plan. Random crashes (1% of deliveries, each before the
        // credit with probability 1/2) lose 0.5% of messages, about 15 of 3,000 (s.d. 4):
        // 0.25–0.9% takes in the scheduled one. They come at 0.5/s, so the first falls before
        // 4 s in 1 − e^−2 = 86% of runs — "within seconds", not "at 4 s" — and the scheduled
        // crash at 4 s makes 4.2 s the latest (consumer 0's next message, within its work,
        // 20 ms on average): each of its failures names consumer 0 among the others. Alone
        // (calm otherwise), the scheduled one is the only loss.
        for seed in 1..=5 {
            let mut sim = sim(&Setup { spec: &SPEC, recipe: recipe("ack-first", seed) });
            let failed = failures(&mut sim, "exactly-once", 30);
            assert!(failed[0].0 < 4.2 && failed[0].1.ends_with("0 credits"), "seed {seed}: {failed:?}");
            // The copies of 12 s are credited twice too (ack-first does not dedupe): a failure each.
            let failed: Vec<_> = failed.into_iter().filter(|f| f.1.ends_with("0 credits")).collect();
            assert!(failed.iter().any(|f| (4.0..4.2).contains(&f.0) && f.1.contains("consumer 0 ")), "{failed:?}");
            let (_, lost, _) = shares(&sim);
            assert!((0.0025..0.009).contains(&lost), "seed {seed}: lost {lost:.4}");
            // What the audit finds lost, live and at the end, is what the consumers counted.
            assert_eq!(
                (uncredited(&sim).len() as i64, failed.len() as i64),
                (counter(&sim, "lost"), counter(&sim, "lost"))
            );
            let sim = sim_run(calm("ack-first", seed).with_param("crash_before_at", 4), 30);
            let (at, why) = failed_at(&sim, "exactly-once").expect("a message lost");
            assert!(
                (4.0..4.2).contains(&at) && why.contains("consumer 0 ") && why.ends_with("0 credits"),
                "{at}: {why}"
            );
            assert_eq!((counter(&sim, "lost"), uncredited(&sim).len()), (1, 1), "seed {seed}");
        }
    }

    #[test]
    fn lost_is_an_audit_of_the_brokers_log_against_the_database() {
        // Consumer 0 acks its message on receipt (ack-first) and the scheduled crash drops it
        // before the credit, but its link to the broker is cut (one way, 4.0–4.45 s, healed
        // before its restart at ≥ 4.5 s): the ack never arrives, the broker redelivers the
        // message after the 2 s visibility timeout, and another consumer credits it, once.
        // The consumer's own account (acked, dropped, no credit) would call it lost; the audit
        // of the broker's log against the database finds nothing lost.
        for seed in 1..=3 {
            let cut = ActionKind::Fault(Fault::Isolate { node: FIRST_CONSUMER, one_way: true });
            let r = calm("ack-first", seed).with_param("crash_before_at", 4).with_action(Time::from_secs(4), cut);
            let sim = sim_run(r.with_action(Time::from_ms(4450), ActionKind::Fault(Fault::Heal)), 10);
            let q = &sim.node::<BrokerNode>(BROKER).q;
            let again: Vec<_> = q.messages().filter(|(_, m)| m.receives == 2).collect();
            assert_eq!(again.len(), 1, "seed {seed}: the message whose ack was lost comes back");
            let key = again[0].1.job;
            assert_eq!(sim.node::<Database>(DB).credits.get(key), Some(&1), "seed {seed}");
            assert_eq!(failed_at(&sim, "exactly-once"), None, "seed {seed}");
            assert!(uncredited(&sim).is_empty(), "seed {seed}");
        }
        // A copy still queued keeps its key alive. Every delivery from 12 s to 12.1 s crashes
        // before its credit (ack-first, the credit at the end of the work): those messages are
        // lost, but the three the producer sent twice at 12 s (its acks lost) come back as
        // copies 200 ms later and are credited once: the audit names none of them.
        let crash = |pct| ActionKind::SetParam { id: "crash_pct".into(), value: pct };
        let r = calm("ack-first", 1).with_param("dup_at", 12).with_param("effect_at_pct", 100);
        let r = r.with_action(Time::from_secs(12), crash(100)).with_action(Time::from_ms(12_100), crash(0));
        let mut sim = sim(&Setup { spec: &SPEC, recipe: r });
        let failed = failures(&mut sim, "exactly-once", 20);
        let q = &sim.node::<BrokerNode>(BROKER).q;
        let copied: Vec<u64> = q.messages().filter(|(_, m)| m.due > m.sent).map(|(_, m)| m.job).collect();
        assert_eq!(copied.len(), 3);
        // One credit each: the copy's (the originals, in the window, were dropped; else two).
        for key in copied {
            assert_eq!(sim.node::<Database>(DB).credits.get(key), Some(&1), "#{key}");
            assert!(!failed.iter().any(|f| f.1.starts_with(&format!("message #{key}:"))), "#{key}: {failed:?}");
        }
        assert!(!failed.is_empty() && failed.iter().all(|f| f.1.ends_with("0 credits")), "{failed:?}");
    }

    #[test]
    fn try_ack_after_loses_nothing_but_credits_twice() {
        // Step 2: a crash before the credit is redelivered, one after it credits again: about
        // 0.5% of messages (the theory test has the exact share) plus the scheduled ones.
        // Alone, the crash at 8 s comes back 2 s later (the visibility timeout) and the three
        // lost acks at 12 s are resent 200 ms later: three copies, three double credits.
        for seed in 1..=5 {
            let sim = sim_run(recipe("ack-after", seed), 30);
            let (_, lost, dup) = shares(&sim);
            assert!(lost == 0.0 && (0.002..0.01).contains(&dup), "seed {seed}: lost {lost}, twice {dup:.4}");
            let sim = sim_run(calm("ack-after", seed).with_param("crash_after_at", 8), 30);
            let (at, why) = failed_at(&sim, "exactly-once").expect("credited twice");
            assert!((10.0..10.2).contains(&at) && why.contains("credited 2 times"), "seed {seed}: {at}: {why}");
            let sim = sim_run(calm("ack-after", seed).with_param("dup_at", 12), 30);
            let (at, _) = failed_at(&sim, "exactly-once").expect("credited twice");
            assert!((12.2..12.4).contains(&at), "seed {seed}: {at}");
            assert_eq!((counter(&sim, "resent"), counter(&sim, "duplicated")), (3, 3), "seed {seed}");
        }
    }

    #[test]
    fn try_dedupe_tx_credits_every_message_once() {
        // Step 3: the default plan's crash at 8 s and three copies at 12 s (at least four
        // rolled-back commits), and the random crashes, change nothing: each key credited once.
        for seed in 1..=5 {
            let fixed = sim_run(recipe("dedupe-tx", seed), 30);
            assert!(failed_at(&fixed, "exactly-once").is_none(), "seed {seed}");
            assert_eq!((counter(&fixed, "duplicated"), counter(&fixed, "lost")), (0, 0), "seed {seed}");
            assert!(counter(&fixed, "conflicts") >= 4, "seed {seed}");
            assert_eq!(counter(&fixed, "once") as u64, fixed.node::<Database>(DB).credits.len() as u64);
        }
    }

    #[test]
    fn try_a_short_visibility_timeout_runs_copies_at_once() {
        // Step 4: work 50 ms, visibility 100 ms: P(work > 100 ms) = e^−2 = 13.5% of deliveries
        // are delivered again while still worked on, and credited again under ack-after (a
        // little more, 13.7%, as the timeout runs from the receive, ~0.6 ms before the work
        // starts); the crashes after the credit (0.5% of 1.16 deliveries a message) and the 3
        // copies of 12 s add 0.7 points: 14.4%, "about 14%". Over ~3,000 messages a run's
        // share has an s.d. of 0.63 points: ±2 points is three of them, and the mean of three
        // runs ±1 point (2.7 of its s.e.); a timeout of 75 or 150 ms (e^−1.5 = 22%, e^−3 = 5%)
        // is far outside either.
        let short = |st, seed| recipe(st, seed).with_param("visibility_ms", 100).with_param("work_ms", 50);
        let mut sum = 0.0;
        for seed in 1..=3 {
            let (_, _, after) = shares(&sim_run(short("ack-after", seed), 30));
            assert!((after - 0.144).abs() <= 0.02, "seed {seed}: ack-after twice {after:.3}");
            sum += after;
            let fixed = sim_run(short("dedupe-tx", seed), 30);
            assert!(failed_at(&fixed, "exactly-once").is_none(), "seed {seed}");
            assert!(counter(&fixed, "conflicts") > 100, "seed {seed}");
        }
        assert!((sum / 3.0 - 0.144).abs() <= 0.01, "mean {:.4}", sum / 3.0);
    }

    #[test]
    fn the_lost_and_duplicated_shares_follow_where_the_crash_falls() {
        // A delivery crashes with probability q at a uniform point of its work; the credit
        // commits a share f into it. Ack-first loses the message when the crash comes before
        // the credit: q·f. Ack-after redelivers every crashed message; it is credited twice
        // unless the first delivery to reach the credit finishes cleanly, which it does with
        // probability (1 − q)/(1 − q·f): twice with q(1 − f)/(1 − q·f). q = 10%, f = 50% and
        // 20%: lost 5% and 2%, twice 5.26% and 8.16%. 100 s at 100/s is 10,000 messages: the
        // s.d. of a 5% share is 0.22 points (4.4%), of 2% 0.14 (7%); ±20% is 3–4.5 of them,
        // while f ± 10 points moves the lost share by 20–50%. Restarts take 10 ms (crashes
        // barely dent the 8 consumers), and the producer stops at 100 s so that every crashed
        // message has come back by 105 s.
        let (q, until) = (0.10, Time::from_secs(100));
        let stop = ActionKind::SetParam { id: "msgs_per_s".into(), value: 0 };
        for (f, seed) in [(0.5, 7), (0.2, 8)] {
            let run = |st| {
                let r = calm(st, seed).with_param("crash_pct", 10).with_param("restart_ms", 10);
                let r = r.with_param("effect_at_pct", (f * 100.0) as i64).with_action(until, stop.clone());
                shares(&sim_run(r, 105))
            };
            let (lost, twice) = (q * f, q * (1.0 - f) / (1.0 - q * f));
            let (_, got, _) = run("ack-first");
            assert!((got - lost).abs() <= 0.2 * lost, "f = {f}: lost {got:.4}, q·f = {lost:.4}");
            let (_, none, got) = run("ack-after");
            assert!(none == 0.0 && (got - twice).abs() <= 0.2 * twice, "f = {f}: twice {got:.4}, {twice:.4}");
        }
    }

    #[test]
    fn switching_to_dedupe_tx_mid_run_stops_the_losses() {
        // Under ack-first with 10% of deliveries crashing, some 40 messages are lost by 10 s.
        // Messages held at the switch finish as they began (within a work time, 20 ms on
        // average); every one received after it is credited once, whatever crashes.
        let r = recipe("ack-first", 3).with_param("crash_pct", 10);
        let switched = r.clone().with_action(Time::from_secs(10), ActionKind::SetStrategy { id: "dedupe-tx".into() });
        let before = counter(&sim_run(r, 10), "lost");
        let sim = sim_run(switched, 30);
        assert!(before > 10, "{before}");
        assert!(counter(&sim, "lost") - before <= 2, "{} lost after the switch", counter(&sim, "lost") - before);
        // The scheduled crash at 8 s came before the switch, the lost acks at 12 s after it.
        assert!(counter(&sim, "duplicated") <= 1);
    }

    #[test]
    fn consumers_take_two_columns_so_their_labels_and_badges_fit() {
        // The canvas (web/src/canvas.rs) is 520 px high; a column of n labelled nodes spaces
        // them (520 − 70)/n apart with a radius of a 3.2th of that (at most 26 px); a node's
        // label and two badges end r + 14 + 26 + 3 px below its centre, and the next node's
        // shape (a worker: 0.8 r high) begins a gap − 0.8 r below it. So a column fits at most
        // 5 (gap 90 px, r 26: 69 + 21 < 90), never the 8 consumers of the default in one (gap
        // 56 px, r 17.6: the first badge already reaches the next node). Two columns of 4 fit.
        let sim = sim_run(recipe("ack-after", 1), 1);
        let frame = sim.frame(0);
        for tier in 0..=3u8 {
            let n = frame.nodes.iter().filter(|n| n.view.tier == tier).count();
            assert!((1..=5).contains(&n), "tier {tier}: {n} nodes");
        }
        let tiers: Vec<u8> = frame.nodes.iter().map(|n| n.view.tier).collect();
        assert_eq!(tiers, [0, 3, 1, 2, 1, 2, 1, 2, 1, 2], "broker, DB, consumers 0–7 alternating");
    }

    #[test]
    fn the_view_shows_the_queue_the_consumers_and_the_double_credits() {
        let sim = sim_run(recipe("ack-after", 1), 13);
        let frame = sim.frame(0);
        let broker = &frame.nodes[BROKER as usize].view;
        let labels: Vec<_> = broker.gauges.iter().map(|g| g.label).collect();
        assert_eq!(labels, ["ready", "in flight"]);
        let db = &frame.nodes[DB as usize].view;
        assert!(db.badges.iter().any(|b| b.text.ends_with("credited twice") && b.tone == Tone::Bad));
        let consumers = &frame.nodes[FIRST_CONSUMER as usize..];
        assert_eq!(consumers.len(), 8);
        assert!(consumers.iter().all(|n| n.view.kind == NodeKind::Worker && !n.view.badges.is_empty()));
    }
}
