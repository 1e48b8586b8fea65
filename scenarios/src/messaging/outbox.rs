//! Transactional outbox: a service writes a row and publishes its event. Dual writes lose the event (commit, then publish) or invent one (publish, then commit) when the service crashes between them; an outbox row in the same transaction, relayed by polling, or the commit log tailed (change data capture), publish every committed row's event at least once.

use crate::parts::arrivals::{per_s_every, OpenLoop};
use crate::parts::calls::{CallId, Calls};
use crate::parts::changelog::{ChangeLog, Handled, Pull, Reader};
use crate::parts::degraded::FaultWindow;
use crate::parts::dual::{Acked, DualWrites, Op};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "outbox",
        title: "Transactional outbox: a row and its event",
        category: "Messaging",
        seeds: &["S1#19", "S0#14"],
        summary: "100 orders/s, each a row in the database and an `order-created` event on the broker. The service \
                  crashes every 5 s on average, the broker is down from 12 s to 14 s, the relay crashes at 20 s.",
        note: Note {
            what_can_go_wrong: "A row and an event are writes to two systems, and no transaction spans both: a crash \
                between them loses the event (commit first) or publishes one for an order that never existed (publish \
                first), and the service cannot tell which of its writes in flight landed. The model: Poisson writes; \
                a service crashing at exponential intervals, losing its memory; a fixed gap between the two writes; a \
                relay polling the outbox or tailing the commit log; an audit judging rows and events after a grace.",
            what_you_sacrifice: "The outbox costs a second insert per transaction, a table to clean up and a relay to \
                run; events arrive a poll interval late and at least once, so consumers dedupe by event id. Change \
                data capture drops the table and the delay, ties events to the schema, keeps the log until read.",
            at_10x: "At 1,000 writes/s a crash loses ten times as many events under dual writes. A relay that is down \
                lets the outbox (or the retained log) grow without bound: disk pressure on the database.",
            resembles: "Debezium (Postgres logical replication slots, the outbox event router), Kafka Connect JDBC \
                source, Transactional Outbox in microservices.io, AWS DynamoDB Streams, MongoDB change streams.",
            try_this: &[
                "Play `commit-then-publish`: each crash catches about λ × (gap + publish round trip) = 100/s × 21 ms ≈ \
                 2 writes between their commit and their publish's ack; their events are lost, and `row-has-event` \
                 names such a row 5 s (the grace) after it committed.",
                "Switch to `publish-then-commit`: no row lacks its event, but crashes leave events whose order never \
                 committed (`event-has-row` names one), and writes wait out the broker outage: p99 over a second.",
                "Play `outbox`: both checks hold, and between the faults the publish delay p99 is about the poll \
                 interval (100 ms). The relay's crash at 20 s, between a batch's ack and its deletion from the outbox, \
                 publishes it again: duplicates, which consumers drop by event id.",
                "Play `cdc`: the relay tails the commit log instead of polling; between the faults the publish delay \
                 p99 falls under 10 ms, and its crash republishes from the slot's last confirmed position.",
            ],
        },
    },
    params: &[
        ParamSpec::live("writes_per_s", "Write rate", "writes/s", 0..=5000, 100, "New orders per second (Poisson)."),
        ParamSpec::live("gap_ms", "Between the writes", "ms", 0..=1000, 20, "Time from the first write's answer to the second write (serialising, other calls, producer linger)."),
        ParamSpec::live("crash_every_s", "Service crashes every", "s", 0..=600, 5, "Mean time between service crashes (exponential; 0: none)."),
        ParamSpec::live("restart_ms", "Restart after", "ms", 100..=60_000, 500, "A crashed service or relay is back after this.").step(100),
        ParamSpec::live("poll_ms", "Relay poll interval", "ms", 1..=10_000, 100, "The outbox relay's sleep when it finds the outbox empty."),
        ParamSpec::live("grace_ms", "Audit grace", "ms", 100..=60_000, 5000, "How long a row may wait for its event (and an event for its row) before the audit judges it.").step(100),
        ParamSpec::setup("outage_at", "Broker outage at", "s", 0..=3600, 12, "Scheduled: the broker drops publishes from then (0: none)."),
        ParamSpec::setup("outage_s", "Broker outage length", "s", 0..=600, 2, "How long the scheduled outage lasts."),
        ParamSpec::setup("relay_crash_at", "Relay crash at", "s", 0..=3600, 20, "Scheduled: the relay crashes after its next batch is acked, before marking it sent (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("commit-then-publish", "Dual write: commit, then publish", "Commits the row, then publishes the event: a crash in between loses the event."),
        StrategySpec::naive("publish-then-commit", "Dual write: publish, then commit", "Publishes the event, then commits the row: a crash in between leaves an event without its row."),
        StrategySpec::fixed("outbox", "Transactional outbox + relay", "Inserts the event into an outbox table in the row's transaction; a relay polls it and publishes."),
        StrategySpec::fixed("cdc", "Change data capture", "Commits the row only; a relay tails the database's commit log and publishes each change."),
    ],
    faults: &[
        FaultSpec::global("broker-outage", "Broker outage", "The broker drops every publish, unanswered, for this long.").value("seconds", 0..=600, 3),
        FaultSpec::node("relay-crash", "Relay crash after publishing", "The relay crashes after its next batches are acked by the broker, before it marks them sent.").value("batches", 1..=100, 1),
    ],
    checks: &[
        CheckSpec::new("row-has-event", "Every committed row has its event", "The audit: a row committed more than the grace \
            ago has its event on the broker's log. Fails as the audit finds one without; names the row."),
        CheckSpec::new("event-has-row", "No event without its row", "The audit: an event on the broker's log for more than \
            the grace has its row in the database. Fails as the audit finds one without (a phantom); names the row."),
    ],
    metrics: &[
        MetricSpec::new("delay", "Publish delay p99 (commit → broker)", "us", Measure::Quantile("delay_us", 0.99)),
        MetricSpec::new("lost", "Events lost in crashes (service's count)", "events", Measure::Count("lost")),
        MetricSpec::new("phantoms", "Phantom events in crashes (service's count)", "events", Measure::Count("phantoms")),
        MetricSpec::new("duplicates", "Duplicates delivered (deduped by id)", "events", Measure::Count("duplicates")),
        MetricSpec::new("write", "Write latency p99", "us", Measure::Quantile("write_us", 0.99)),
        MetricSpec::new("published", "Events published", "/s", Measure::Rate("published")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { CommitFirst, PublishFirst, Outbox, Cdc });

const DB: NodeId = 1;
const RELAY: NodeId = 2;
const BROKER: NodeId = 3;
/// The commit log's readers: the relay's replication slot, the audit's position.
const SLOT: usize = 0;
const AUDIT: usize = 1;
/// A commit's fsync; how long a write may go unanswered before it is sent again (a publish, a
/// relay's pull or batch); the relay's batch; how often the audit runs.
const COMMIT_US: Micros = MICROS_PER_MS;
const TIMEOUT_US: Micros = MICROS_PER_S;
const BATCH: usize = 100;
const AUDIT_US: Micros = 100 * MICROS_PER_MS;

type RowId = u64;
/// An event: its row and, if the row committed first, when (true time: for the delay metric).
type Event = (RowId, Option<Time>);
/// A change in the commit log: a row and the strategy it was written under (how its event leaves).
/// An outbox row is a row written under `outbox`: the relay deletes it once it is published, oldest
/// first (a polling publisher's `DELETE`), moving its slot past it.
type Change = (RowId, Strategy);
/// A write in flight: its strategy and, once the row is committed, when.
type Write = (Strategy, Option<Time>);

// The message, timer and node types, a line each (rustfmt would give every field a line).
// A publish carries the service's call id or the relay's batch number, echoed in its ack.
#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
enum Msg { Commit(RowId, Strategy), Committed(RowId, Time), Publish(u64, Vec<Event>), Acked(u64), Log(Pull<Change>) }

#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
enum Timer { Arrive, Crash, Second(RowId), Timeout(CallId), Relay, Audit, Up }

#[rustfmt::skip]
#[derive(Clone, Debug, Holds)]
enum Ob { Service(Service), Db(ChangeLog<Change>), Relay(Reader), Broker(BrokerNode) }

/// Writes and publishes in flight are volatile; the crashes' toll (lost, phantoms) is kept.
#[rustfmt::skip]
#[derive(Clone, Debug)]
struct Service {
    arrivals: OpenLoop, crashes: OpenLoop, writes: DualWrites<Write>, publishes: Calls<RowId>, toll: [u64; 2],
}

/// The topic (a log the audit reads by age), the event ids its consumer has seen (it drops copies), an outage.
#[rustfmt::skip]
#[derive(Clone, Debug)]
struct BrokerNode { topic: ChangeLog<Event>, seen: KeyTable<()>, down: bool, dups: u64 }

fn sim(setup: &Setup) -> Sim<Ob> {
    let mut sim: Sim<Ob> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let arrivals = OpenLoop::poisson(setup.param("writes_per_s") as f64);
    let crashes = OpenLoop::poisson(per_s_every(setup.param("crash_every_s") as f64));
    let (writes, publishes) = (DualWrites::default(), Calls::new("publish_us"));
    sim.add_node(Ob::Service(Service { arrivals, crashes, writes, publishes, toll: [0; 2] }));
    sim.add_node(Ob::Db(ChangeLog::new(2)));
    sim.add_node(Ob::Relay(Reader::new(TIMEOUT_US, 2 * TIMEOUT_US)));
    sim.add_node(Ob::Broker(BrokerNode { topic: ChangeLog::new(1), seen: KeyTable::default(), down: false, dups: 0 }));
    // The scheduled faults (at 0: none).
    let (at, len) = (setup.param("outage_at"), setup.param("outage_s"));
    FaultWindow::secs(at, len * at.min(1)).custom(&mut sim, "broker-outage", None, len, 0);
    let relay_at = setup.param("relay_crash_at");
    FaultWindow::secs(relay_at, relay_at.min(1)).custom(&mut sim, "relay-crash", Some(RELAY), 1, 0);
    // The audit's findings are events: a row (an event) whose grace ran out just now, without its event (row).
    sim.check("row-has-event", |w| unmatched(w, "row-due", "events", " committed", "no event on the broker: lost"));
    sim.check("event-has-row", |w| unmatched(w, "event-due", "rows", "'s event sent", "the database has no such row"));
    sim
}

/// The audit's finding just now, if any: a row due (`due`: its grace ran out) with nothing tallied under `other`.
fn unmatched(w: &World<Ob>, due: &str, other: &'static str, what: &str, missing: &str) -> Result<(), String> {
    match w.tallied.iter().find(|t| t.0 == due && w.tally(other, t.1) == 0) {
        Some(t) => Err(format!("row #{}{what} over {} ms ago; {missing}", t.1, w.param("grace_ms"))),
        None => Ok(()),
    }
}

impl Node for Ob {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ob::Service(s) => {
                s.arrivals.start(ctx, Timer::Arrive);
                s.crashes.start(ctx, Timer::Crash);
            }
            Ob::Relay(r) => pull(r, ctx),
            // A restart ends an outage (the timer ending it is gone).
            Ob::Broker(b) => b.down = false,
            Ob::Db(_) => {}
        }
        if matches!(self, Ob::Db(_) | Ob::Broker(_)) {
            ctx.set_timer(AUDIT_US, Timer::Audit);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ob::Service(s), Msg::Committed(row, at)) => s.answered(row, Some(at), ctx),
            (Ob::Service(s), Msg::Acked(id)) => {
                if let Some(row) = s.publishes.reply(CallId(id), ctx) {
                    s.answered(row, None, ctx)
                }
            }
            (Ob::Db(log), Msg::Commit(row, st)) => commit(log, from, row, st, ctx),
            // The relay's pull confirms what it published (deleting its outbox rows).
            (Ob::Db(log), Msg::Log(ask @ Pull::Ask { .. })) => {
                if let Some(answer) = log.serve(SLOT, ask, BATCH, ctx.truth()) {
                    ctx.send(RELAY, Msg::Log(answer))
                }
            }
            (Ob::Relay(r), Msg::Log(answer @ Pull::Batch { .. })) => pulled(r, answer, ctx),
            // The batch is on the broker: the next pull confirms it. A crash scheduled before that
            // (the fault) forgets it: the batch is published again.
            (Ob::Relay(r), Msg::Acked(no)) => match r.handled(no) {
                Handled::Next => pull(r, ctx),
                Handled::Crash => {
                    ctx.note(format!("crashed after batch {no} was acked, before marking it sent"));
                    ctx.crash(Some(ctx.param_ms("restart_ms")));
                }
                Handled::Stale => {}
            },
            (Ob::Broker(b), Msg::Publish(no, events)) => b.publish(from, no, events, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        if matches!(timer, Timer::Audit) {
            ctx.set_timer(AUDIT_US, Timer::Audit);
        }
        match (self, timer) {
            (Ob::Service(s), Timer::Arrive) => s.arrive(ctx),
            (Ob::Service(_), Timer::Crash) => ctx.crash(Some(ctx.param_ms("restart_ms"))),
            (Ob::Service(s), Timer::Second(row)) => s.write(row, ctx),
            (Ob::Service(s), Timer::Timeout(id)) => {
                if let Some(row) = s.publishes.timeout(id) {
                    s.write(row, ctx)
                }
            }
            (Ob::Relay(r), Timer::Relay) => pull(r, ctx),
            (Ob::Db(log), Timer::Audit) => log.audit(AUDIT, ctx.param_ms("grace_ms"), "row-due", |c| c.0, ctx),
            (Ob::Broker(b), Timer::Audit) => b.topic.audit(0, ctx.param_ms("grace_ms"), "event-due", |e| e.0, ctx),
            (Ob::Broker(b), Timer::Up) => b.down = false,
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ob::Service(s) => s.crashed(ctx),
            Ob::Relay(r) => r.crash(),
            Ob::Db(log) => log.unpark_all(),
            Ob::Broker(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ob::Service(s), Control::Param { id: "writes_per_s", value }) => {
                s.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Ob::Service(s), Control::Param { id: "crash_every_s", value }) => {
                s.crashes.set_rate_per_s(per_s_every(value as f64), ctx, Timer::Crash)
            }
            (Ob::Relay(r), Control::Custom { id: "relay-crash", value }) => r.crash_after(value),
            (Ob::Broker(b), Control::Custom { id: "broker-outage", value }) => {
                b.down = value > 0;
                ctx.set_timer(value as Micros * MICROS_PER_S, Timer::Up);
            }
            // Strategies apply from each write's start and the relay's next pull; parameters where read.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ob::Service(s) => {
                let between = s.writes.between();
                NodeView::new(NodeKind::Service, 0, "order service")
                    .gauge("writes in flight", s.writes.len() as i64, (s.writes.len() as i64).max(10))
                    .badge_if(between > 0, format!("{between} between writes"), Tone::Warn)
                    .badge_if(s.toll[0] > 0, format!("{} events lost", s.toll[0]), Tone::Bad)
                    .badge_if(s.toll[1] > 0, format!("{} phantom events", s.toll[1]), Tone::Bad)
            }
            Ob::Db(log) => NodeView::new(NodeKind::Database, 1, "orders DB")
                .gauge("rows to relay", log.lag(SLOT) as i64, (log.lag(SLOT) as i64).max(100))
                .badge(format!("{} rows · log read to {}", log.len(), log.position(SLOT)), Tone::Neutral),
            Ob::Relay(r) => {
                let doing = r.handling().map_or("pulling".into(), |n| format!("publishing {n} events"));
                NodeView::new(NodeKind::Worker, 1, "relay").badge(doing, Tone::Neutral)
            }
            Ob::Broker(b) => NodeView::new(NodeKind::Queue, 2, "broker: orders topic")
                .gauge("events", b.topic.len() as i64, (b.topic.len() as i64).max(100))
                .badge_if(b.down, "down: dropping publishes", Tone::Bad)
                .badge_if(b.dups > 0, format!("{} duplicates (deduped by id)", b.dups), Tone::Warn),
        }
    }
}

impl Service {
    /// A new order: its first write, the commit or (publish first) the event.
    fn arrive(&mut self, ctx: &mut Ctx<Ob>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let st = Strategy::from_id(ctx.strategy());
        let two = matches!(st, Strategy::CommitFirst | Strategy::PublishFirst);
        let row = self.writes.start(ctx.now(), two, (st, None));
        self.write(row, ctx);
    }

    /// The write's next step: commits the row, or publishes its event (publish first: as its first
    /// step; commit first: its second) in a call sent again after each timeout until acknowledged.
    fn write(&mut self, row: RowId, ctx: &mut Ctx<Ob>) {
        let Op { between, data: (st, committed), .. } = *self.writes.get(row).expect("in flight");
        if (st == Strategy::PublishFirst) != between {
            let id = self.publishes.start(ctx, row, TIMEOUT_US, Timer::Timeout);
            ctx.send(BROKER, Msg::Publish(id.0, vec![(row, committed)]));
        } else {
            ctx.send(DB, Msg::Commit(row, st));
        }
    }

    /// The commit (with its time) or the publish is acknowledged: the gap before the second
    /// write (dual writes), or the write is done.
    fn answered(&mut self, row: RowId, committed: Option<Time>, ctx: &mut Ctx<Ob>) {
        if let Some(op) = self.writes.get_mut(row) {
            op.data.1 = op.data.1.or(committed);
        }
        match self.writes.acked(row, ctx.now()) {
            Some(Acked::Between) => _ = ctx.set_timer(ctx.param_ms("gap_ms"), Timer::Second(row)),
            Some(Acked::Done(took_us)) => ctx.observe("write_us", took_us),
            None => {}
        }
    }

    /// The toll, as the service would log it: writes whose first write was acknowledged and
    /// whose second was not lose their event (commit first) or leave a phantom (publish first).
    /// A second write in flight may still land: only the audit knows.
    fn crashed(&mut self, ctx: &mut Ctx<Ob>) {
        ctx.count("crashes", 1);
        self.publishes.clear(ctx);
        for (row, op) in self.writes.crash() {
            let (i, name) = if op.data.0 == Strategy::CommitFirst { (0, "lost") } else { (1, "phantoms") };
            self.toll[i] += 1;
            ctx.count(name, 1);
            ctx.note(format!("crashed between row #{row}'s writes: {}", ["its event lost", "a phantom event"][i]));
        }
    }
}

/// The database commits the row (and under `outbox` its outbox row) in one transaction: appended
/// to the log, answered after the fsync; a long poll parked by the relay is answered at once.
fn commit(log: &mut ChangeLog<Change>, from: NodeId, row: RowId, st: Strategy, ctx: &mut Ctx<Ob>) {
    let at = ctx.truth();
    ctx.tally("rows", row, 1);
    ctx.send_after(ctx.disk(COMMIT_US), from, Msg::Committed(row, at));
    for (slot, no) in log.commit((row, st), at) {
        ctx.send(RELAY, Msg::Log(log.batch(slot, no, BATCH)));
    }
}

/// The relay pulls what to publish, confirming what it published; under `cdc`, a long poll.
fn pull(relay: &mut Reader, ctx: &mut Ctx<Ob>) {
    let ask = relay.pull(ctx, Strategy::from_id(ctx.strategy()) == Strategy::Cdc, Timer::Relay);
    ctx.send(DB, Msg::Log(ask));
}

/// The relay publishes the events of the rows written with an outbox row or captured (CDC); with
/// nothing new in the log, it pulls again after a poll interval (long polling, at once).
fn pulled(relay: &mut Reader, answer: Pull<Change>, ctx: &mut Ctx<Ob>) {
    let idle_us = if Strategy::from_id(ctx.strategy()) == Strategy::Cdc { 0 } else { ctx.param_ms("poll_ms") };
    let relayed = |c: &Change| matches!(c.1, Strategy::Outbox | Strategy::Cdc);
    if let Some((no, changes)) = relay.answered(ctx, answer, relayed, idle_us, Timer::Relay) {
        ctx.send(BROKER, Msg::Publish(no, changes.into_iter().map(|((row, _), at)| (row, Some(at))).collect()));
    }
}

impl BrokerNode {
    /// Appends a batch (drops it, unanswered, in an outage); a copy of an event already there
    /// is delivered too, and dropped by the consumer, which dedupes by event id.
    fn publish(&mut self, from: NodeId, no: u64, events: Vec<Event>, ctx: &mut Ctx<Ob>) {
        if self.down {
            return ctx.count("dropped", 1);
        }
        let now = ctx.truth();
        for (row, committed) in events {
            self.topic.commit((row, committed), now);
            ctx.tally("events", row, 1);
            ctx.count("published", 1);
            if self.seen.insert(row, ()).is_some() {
                self.dups += 1;
                ctx.count("duplicates", 1);
            } else if let Some(at) = committed {
                ctx.observe("delay_us", now.since(at));
            }
        }
        ctx.send(from, Msg::Acked(no));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::failed_at;

    const SERVICE: NodeId = 0;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("outbox", strategy, seed)
    }

    /// No scheduled broker outage or relay crash.
    fn calm(strategy: &str, seed: u64) -> Recipe {
        recipe(strategy, seed).with_param("outage_at", 0).with_param("relay_crash_at", 0)
    }

    fn sim_run(recipe: Recipe, secs: u64) -> Sim<Ob> {
        crate::parts::testing::run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn counter(sim: &Sim<Ob>, name: &str) -> i64 {
        sim.metrics().counter(name)
    }

    fn p99_us(sim: &Sim<Ob>, name: &str) -> u64 {
        sim.metrics().histogram(name).expect("observed").quantile(0.99)
    }

    /// The audit at the end, over everything older than a second: committed rows without an
    /// event, events without a row.
    fn audit_all(sim: &Sim<Ob>) -> (usize, usize) {
        let (db, b) = (sim.node::<ChangeLog<Change>>(DB), sim.node::<BrokerNode>(BROKER));
        let old = |at: Time| at.plus(MICROS_PER_S) <= sim.now();
        let (mut rows, mut events) = (KeyTable::default(), KeyTable::default());
        (0..db.len() as u64).map(|o| db.get(o).expect("a change")).for_each(|r| _ = rows.insert(r.value.0, r.at));
        (0..b.topic.len() as u64)
            .map(|o| b.topic.get(o).expect("an event"))
            .for_each(|r| _ = events.insert(r.value.0, r.at));
        let lost = rows.iter().filter(|&(r, &at)| old(at) && !events.contains_key(r)).count();
        let phantoms = events.iter().filter(|&(r, &at)| old(at) && !rows.contains_key(r)).count();
        (lost, phantoms)
    }

    #[test]
    fn try_commit_then_publish_loses_the_events_a_crash_falls_between() {
        // Step 1: crashes every 5 s on average, each losing about 2 events (the theory test
        // has the number); the audit names a row at least the grace (5 s) after its commit. The
        // service's count and the audit's differ by the writes in flight at the crash (the
        // theory test has both), so each is only required to see some.
        for seed in 1..=3 {
            let sim = sim_run(recipe("commit-then-publish", seed), 30);
            let (at, why) = failed_at(&sim, "row-has-event").expect("an event lost");
            assert!(at >= 5.0 && why.starts_with("row #") && why.ends_with("lost"), "seed {seed}: {at}: {why}");
            assert!(failed_at(&sim, "event-has-row").is_none(), "seed {seed}");
            let (lost, phantoms) = audit_all(&sim);
            assert!(counter(&sim, "lost") > 0 && lost > 0, "seed {seed}: {lost}");
            assert_eq!(phantoms, 0);
        }
    }

    #[test]
    fn a_crash_loses_lambda_times_the_window_by_littles_law() {
        // A write is between its writes, as the service counts it, from its commit's answer to
        // its publish's ack: the gap plus the publish's round trip (two trips of U(0.2, 1) ms,
        // 1.2 ms). Little's law: λ·W such writes at any instant, and a crash at a Poisson instant
        // sees that average (PASTA); counted from the restart (none then), after an up time of
        // mean m = 2 s, λ·m·(1 − e^(−W/m)) (the kit's `between_at_crash`, up to 1.3% below λ·W
        // here). The audit's window runs from the commit to the publish's arrival: the fsync
        // (1 ms) and the answer's trip (0.6 ms) before, the publish's trip (0.6 ms) after, the
        // gap between: W + 1 ms. Four 200-s runs, about 320 crashes: the lost count is a sum of
        // Poisson counts, s.d. √(320·λW) — 3.8% at 100/s × 21.2 ms, 2.5% at 51.2 ms, 5.1% at
        // 1000/s × 1.2 ms — so ±20% is four to eight of them. The third case has no gap: the
        // round trip alone loses 1.2 a crash, where λ × gap says none.
        for (per_s, gap_ms) in [(100, 20), (100, 50), (1000, 0)] {
            let (mut crashes, mut lost, mut audited) = (0.0, 0.0, 0.0);
            for seed in 1..=4 {
                let r = calm("commit-then-publish", seed).with_param("crash_every_s", 2);
                let sim = sim_run(r.with_param("writes_per_s", per_s).with_param("gap_ms", gap_ms), 200);
                crashes += counter(&sim, "crashes") as f64;
                lost += counter(&sim, "lost") as f64;
                audited += audit_all(&sim).0 as f64;
            }
            let w_s = (gap_ms as f64 + 1.2) / 1000.0;
            let want = crate::parts::dual::between_at_crash(per_s as f64, w_s, 2.0);
            let (got, audit) = (lost / crashes, audited / crashes);
            assert!(
                crashes > 250.0 && (got - want).abs() <= 0.2 * want,
                "{per_s}/s, gap {gap_ms}: {got:.3}, {want:.3}"
            );
            let want = crate::parts::dual::between_at_crash(per_s as f64, w_s + 0.001, 2.0);
            assert!((audit - want).abs() <= 0.2 * want, "{per_s}/s, gap {gap_ms}: audit {audit:.3}, {want:.3}");
        }
    }

    #[test]
    fn try_publish_then_commit_invents_events_and_waits_for_the_broker() {
        // Step 2: the same crashes leave phantoms (published, never committed); the outage
        // (12–14 s) holds every write begun in it until the broker is back: 2 s of 30 is
        // 6.7% of writes, waiting up to 2 s, so the write p99 passes a second.
        for seed in 1..=3 {
            let sim = sim_run(recipe("publish-then-commit", seed), 30);
            let (at, why) = failed_at(&sim, "event-has-row").expect("a phantom");
            assert!(at >= 5.0 && why.contains("has no such row"), "seed {seed}: {at}: {why}");
            assert!(failed_at(&sim, "row-has-event").is_none(), "seed {seed}");
            let (lost, phantoms) = audit_all(&sim);
            assert!(lost == 0 && phantoms > 0 && counter(&sim, "phantoms") > 0, "seed {seed}: {phantoms}");
            assert!(p99_us(&sim, "write_us") > MICROS_PER_S, "seed {seed}: {}", p99_us(&sim, "write_us"));
        }
    }

    #[test]
    fn try_outbox_publishes_every_row_a_poll_interval_late_and_at_least_once() {
        // Step 3: the relay sleeps 100 ms when it finds nothing, so a commit waits U(0, cycle)
        // for the next poll, the cycle 100 ms plus a pull's round trip (~1.2 ms); then a
        // publish round trip. p99 ≈ 0.99 × 101 + 1 ≈ 101 ms: 90–115 ms allows for the
        // batches that follow one another without a sleep. The relay's crash at 20 s
        // republishes its batch (~10 rows at 100/s): duplicates, deduped.
        for seed in 1..=3 {
            let sim = sim_run(recipe("outbox", seed), 30);
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert_eq!(audit_all(&sim), (0, 0), "seed {seed}");
            assert!((3..=40).contains(&counter(&sim, "duplicates")), "seed {seed}: {}", counter(&sim, "duplicates"));
            let sim = sim_run(calm("outbox", seed), 30);
            let p99 = p99_us(&sim, "delay_us");
            assert!((90_000..=115_000).contains(&p99), "seed {seed}: p99 {p99} µs");
        }
    }

    #[test]
    fn try_cdc_tails_the_log_within_milliseconds() {
        // Step 4: the relay's pull waits at the database for the next commit: a commit's
        // event leaves at once (a round trip or two, under 10 ms, behind a batch in flight).
        for seed in 1..=3 {
            let sim = sim_run(recipe("cdc", seed), 30);
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert_eq!(audit_all(&sim), (0, 0), "seed {seed}");
            assert!(counter(&sim, "duplicates") >= 1, "seed {seed}: the relay's crash republishes");
            let p99 = p99_us(&sim, "delay_us");
            let sim = sim_run(calm("cdc", seed), 30);
            assert!(p99_us(&sim, "delay_us") < 10_000 && p99 > 10_000, "seed {seed}: {}", p99_us(&sim, "delay_us"));
        }
    }

    #[test]
    fn the_fixed_strategies_lose_nothing_through_every_fault() {
        // Crashes every second, a 4 s outage, two relay crashes, and the database down from 5 s
        // to 6 s (the relay's parked long poll lost with it: renewed within 2 s).
        for st in ["outbox", "cdc"] {
            let r = recipe(st, 9).with_param("crash_every_s", 1).with_param("outage_s", 4);
            let r = r.with_action(Time::from_secs(5), ActionKind::Fault(Fault::Crash { node: DB }));
            let r = r.with_action(Time::from_secs(6), ActionKind::Fault(Fault::Restart { node: DB }));
            let r = r.with_action(Time::from_secs(8), ActionKind::Fault(Fault::custom_on("relay-crash", RELAY, 2)));
            let sim = sim_run(r, 40);
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "{st}");
            assert_eq!(audit_all(&sim), (0, 0), "{st}");
        }
    }

    #[test]
    fn switching_to_the_outbox_mid_run_stops_the_losses() {
        let r = calm("commit-then-publish", 2).with_param("crash_every_s", 1);
        let before = counter(&sim_run(r.clone(), 10), "lost");
        let r = r.with_action(Time::from_secs(10), ActionKind::SetStrategy { id: "outbox".into() });
        let sim = sim_run(r, 30);
        assert!(before > 5, "{before}");
        // Writes between their commit and publish at the switch finish as they began (20 ms).
        assert!(counter(&sim, "lost") - before <= 3, "{} lost after the switch", counter(&sim, "lost") - before);
        let c = sim.checks().iter().find(|c| c.id == "row-has-event").expect("a check");
        assert!(c.bands.last().and_then(|b| b.to).is_some_and(|to| to < Time::from_secs(17)), "{:?}", c.bands.last());
    }

    #[test]
    fn the_view_shows_the_outbox_the_log_and_the_duplicates() {
        // The relay down from 10 s: the outbox fills at 100 rows a second.
        let down = ActionKind::Fault(Fault::Crash { node: RELAY });
        let sim = sim_run(calm("outbox", 1).with_action(Time::from_secs(10), down), 12);
        let db = &sim.frame(0).nodes[DB as usize].view;
        assert_eq!(db.gauges[0].label, "rows to relay");
        assert!((150..250).contains(&db.gauges[0].value), "{:?}", db.gauges);
        let sim = sim_run(recipe("outbox", 1), 30);
        let b = &sim.frame(0).nodes[BROKER as usize].view;
        assert!(b.badges.iter().any(|x| x.text.contains("duplicates") && x.tone == Tone::Warn), "{:?}", b.badges);
        let sim = sim_run(recipe("commit-then-publish", 1), 13);
        let frame = sim.frame(0);
        assert!(frame.nodes[BROKER as usize].view.badges.iter().any(|x| x.tone == Tone::Bad));
        let s = &frame.nodes[SERVICE as usize].view;
        assert!(s.badges.iter().any(|x| x.text.ends_with("between writes")), "{:?}", s.badges);
    }
}
