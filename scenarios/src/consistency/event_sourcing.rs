//! Event sourcing and CQRS: commands append events to accounts' streams, and each command first rebuilds its account by replaying them — from event zero (time grows with history) or from a snapshot; a v2 schema deploy breaks replay of old events without an upcaster; reads go to a projection fed from the log, whose position must move with its state.

use crate::parts::arrivals::OpenLoop;
use crate::parts::changelog::{Handled, Pull};
use crate::parts::eventstore::{EventStore, Projection, Replay, Stored};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "event-sourcing",
        title: "Event sourcing and CQRS",
        category: "Transactions & consistency",
        seeds: &["S0#14", "S4#01", "S3#24"],
        summary: "40 commands/s on 10 accounts, each rebuilt by replaying its events first; 200 old (v1) events an account \
                  to start. At 10 s a v2 schema is deployed; at 20 s the projector crashes between writing a batch and \
                  confirming it. Replay from zero outgrows its budget, snapshots without an upcaster choke on v1 events, \
                  and a projection that keeps its position apart from its rows applies a batch twice.",
        note: Note {
            what_can_go_wrong: "An aggregate is its events folded in order, so loading one for a command reads its whole \
                stream: rebuild time grows with history (the seed's 2 billion events, minutes per entity). A snapshot \
                bounds the replay to the events since it — unless the code reading that tail no longer understands old \
                events: after a v2 deploy (the amount renamed and rescaled), a reader without an upcaster fails on the \
                first v1 event and the account takes no more commands. A projection (the read model) consumes the log \
                asynchronously; if its position is kept apart from its rows (a consumer offset, confirmed after the rows \
                are written), a crash in between applies that batch again: balances counted twice, for good. Model: \
                Poisson commands and reads on uniformly chosen accounts; one handler (FIFO) paying 200 µs to open a \
                stream plus a fixed cost per event replayed, fixed when the job is queued (it misses events appended by \
                jobs ahead of it); store and read model survive crashes; the old history is counted, not stored; a \
                snapshot is written, for free, when the tail reaches the interval.",
            what_you_sacrifice: "Snapshots: storage, and a second format to version (only the events' shape changes \
                here; a state change would need snapshots rebuilt). Upcasters: every old version's mapping kept for ever, \
                run on every replay. The projection: reads stale by its lag (it falls behind in an outage and catches up \
                at μ − λ), and its position written in the same transaction as its rows.",
            at_10x: "Ten times the history makes replay from zero ten times slower per command: the handler saturates \
                and its queue never drains; with snapshots nothing changes. Ten times the events a second shortens the \
                snapshot cycle and needs a projector ten times faster (or partitioned), or its lag grows without bound.",
            resembles: "EventStoreDB and Marten (snapshots, projections, upcasting), Axon Framework (snapshot triggers, \
                upcaster chains, tracking tokens stored with the projection), Kafka Streams state stores, Greg Young's \
                'Versioning in an Event Sourced System'.",
            try_this: &[
                "Play `replay-from-zero`: every command replays its account's whole stream; streams grow 4 events \
                 a second, and from about 12 s rebuilds pass the 5 ms budget — `rebuild-within-budget` names the \
                 account and its events. Set `history` to 1000000: each rebuild takes 20 s.",
                "Switch to `snapshots`: rebuilds read under 50 events, but the v2 deploy at 10 s makes the v1 events \
                 after each snapshot unreadable — `old-events-replay` names account and event. `snapshots-upcast` \
                 reads them through the upcaster and holds.",
                "Play `projection`: reads come from the read model, but at 20 s the projector crashes after writing \
                 a batch and before confirming it; back 3 s later, it reads the batch again and applies it twice — \
                 `projection-matches-replay` fails and stays failed. `projection-atomic` skips what it has and holds; \
                 its lag spikes and drains.",
                "Play `projection-atomic` with `outage_ms` at 10000: the projector falls about 400 events behind and \
                 drains them at μ − λ = 100 − 40 events a second, in about 7 s (the fluid catch-up time); with \
                 `apply_us` at 12500 (μ = 80) it takes 10 s.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("accounts", "Accounts", "", 1..=10_000, 10, "Aggregates, each an event stream."),
        ParamSpec::setup("history", "Old events per account", "events", 0..=10_000_000, 200, "v1 events stored before the run.").step(100),
        ParamSpec::live("cmd_per_s", "Commands", "per s", 1..=20_000, 40, "Deposits and withdrawals, Poisson."),
        ParamSpec::live("read_per_s", "Reads", "per s", 0..=20_000, 20, "Balance queries, Poisson."),
        ParamSpec::live("replay_us", "Replay cost", "µs/event", 1..=1000, 20, "Reading and applying one event."),
        ParamSpec::live("snapshot_every", "Snapshot every", "events", 1..=100_000, 50, "Snapshot strategies: the interval."),
        ParamSpec::live("budget_ms", "Rebuild budget", "ms", 1..=60_000, 5, "The longest a rebuild may take."),
        ParamSpec::live("apply_us", "Projection cost", "µs/event", 10..=100_000, 10_000, "The read model's write per event.").step(10),
        ParamSpec::live("batch", "Projection batch", "events", 1..=10_000, 100, "Most events a pull brings (and 1 s of work)."),
        ParamSpec::live("outage_ms", "Projector outage", "ms", 100..=60_000, 3000, "How long its crash (at 20 s) lasts.").step(100),
    ],
    strategies: &[
        StrategySpec::naive("replay-from-zero", "Replay from zero", "Every command and read replays the account's whole stream (with an upcaster)."),
        StrategySpec::naive("snapshots", "Snapshots, no upcaster", "Replays from the latest snapshot; the v2 code cannot read v1 events."),
        StrategySpec::fixed("snapshots-upcast", "Snapshots + upcasting", "Replays from the latest snapshot, v1 events upcast to v2 as read."),
        StrategySpec::naive("projection", "CQRS projection (offset apart)", "Reads from a projection whose position, kept at the store, is confirmed after its rows are written."),
        StrategySpec::fixed("projection-atomic", "CQRS projection (atomic)", "Reads from a projection that writes its position with its rows, skipping events before it."),
    ],
    faults: &[
        FaultSpec::global("schema-change", "Deploy schema v2", "New events are v2 (amount renamed, in cents); old ones stay v1."),
        FaultSpec::global("crash-projector", "Crash the projector", "After writing its next batch, before confirming it (for outage_ms)."),
    ],
    checks: &[
        CheckSpec::new("rebuild-within-budget", "Rebuild within budget", "The latest rebuild of an aggregate took at most the budget."),
        CheckSpec::new("old-events-replay", "An old event never breaks replay", "Every account's latest replay read all its events."),
        CheckSpec::new("projection-matches-replay", "Projection == replay", "Between batches, the read model equals the events replayed up to its position."),
    ],
    metrics: &[
        MetricSpec::new("rebuild_p99", "Rebuild time p99", "us", Measure::Quantile("rebuild_us", 0.99)),
        MetricSpec::new("replayed", "Events replayed per rebuild (mean)", "", Measure::Mean("rebuild_events")),
        MetricSpec::new("history", "Longest stream", "events", Measure::Gauge("longest_stream")),
        MetricSpec::new("events", "Events stored", "", Measure::Gauge("events")),
        MetricSpec::new("command_p99", "Command latency p99", "us", Measure::Quantile("command_us", 0.99)),
        MetricSpec::new("read_p99", "Read latency p99", "us", Measure::Quantile("read_us", 0.99)),
        MetricSpec::new("lag", "Projection lag", "events", Measure::Gauge("proj_lag")),
        MetricSpec::new("lag_ms", "Projection lag (age)", "ms", Measure::Gauge("proj_lag_ms")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { FromZero, Snapshots, Upcast, Projection, Atomic });
const CLIENTS: NodeId = 0;
const HANDLER: NodeId = 1;
const PROJECTOR: NodeId = 2;
/// A job's fixed costs: opening a stream (or its snapshot) before the first event, one index
/// lookup; deciding once the account is rebuilt.
const LOAD_US: Micros = 200;
const DECIDE_US: Micros = 100;
/// Every account's balance (cents) with the old history folded in: where the run starts.
const START_BALANCE: i64 = 100_000;
/// The projector's slot in the log; a pull or a batch's work unanswered for 2 s is pulled
/// again (a batch is at most 1 s of work), a long poll renewed after 5 s.
const SLOT: usize = 0;
const TIMEOUT_US: Micros = 2 * MICROS_PER_S;

impl Strategy {
    fn snapshots(self) -> bool {
        self != Strategy::FromZero
    }
    fn upcasts(self) -> bool {
        self != Strategy::Snapshots
    }
    fn projection(self) -> bool {
        matches!(self, Strategy::Projection | Strategy::Atomic)
    }
}
/// An event's body: the amount (cents), and whether it was written as v2.
#[derive(Clone, Copy, Debug)]
pub struct Event(i64, bool);
/// A job: an account, and a command's amount (none: a read, which rebuilds it too to answer).
#[derive(Clone, Copy, Debug)]
pub struct Job(u32, Option<i64>);
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Job(Job),
    Log(Pull<Stored<Event>>),
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Done(Slot),
    Pull,
    Applied(u64),
}
#[derive(Clone, Debug, Holds)]
pub enum Es {
    Clients(Clients),
    Handler(Handler),
    Projector(Projection<Event, i64>),
}
#[derive(Clone, Debug)]
pub struct Clients {
    arrivals: OpenLoop,
    accounts: u64,
}
/// The command side: the handler (one job at a time, FIFO) and the event store (durable), whose
/// digest is the total of all balances.
#[derive(Clone, Debug)]
pub struct Handler {
    strategy: Strategy,
    station: Box<Station<(Job, u64, Micros)>>, // boxed: the node enum's variants stay of a size
    store: EventStore<Event, i64>,
    /// The latest rebuild finished: account, events read, time taken.
    last_rebuild: Option<(u32, u64, Micros)>,
    /// Accounts whose latest replay failed, with the event it failed on.
    broken: KeyTable<u64>,
}
fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Es> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let strategy = Strategy::from_id(setup.strategy());
    // One Poisson stream, each arrival a read with chance λr/(λc + λr): two independent Poisson streams.
    let (accounts, rate) = (setup.param("accounts") as usize, setup.param("cmd_per_s") + setup.param("read_per_s"));
    let clients = Clients { arrivals: OpenLoop::poisson(rate as f64), accounts: accounts as u64 };
    assert_eq!(sim.add_node(Es::Clients(clients)), CLIENTS);
    let (history, every, total) =
        (setup.param("history") as u64, setup.param("snapshot_every") as u64, START_BALANCE * accounts as i64);
    let store = EventStore::new(accounts, history, START_BALANCE, total, every, 1);
    let station = Box::new(Station::new(1, Service::Constant(DECIDE_US)));
    let handler = Handler { strategy, station, store, last_rebuild: None, broken: KeyTable::default() };
    assert_eq!(sim.add_node(Es::Handler(handler)), HANDLER);
    let model =
        Projection::new(accounts, START_BALANCE, total, strategy == Strategy::Atomic, TIMEOUT_US, 5 * MICROS_PER_S);
    assert_eq!(sim.add_node(Es::Projector(model)), PROJECTOR);
    // The plan: v2 deployed at 10 s; the projector crashes after its first batch from 20 s on.
    sim.schedule(Time::from_secs(10), Fault::custom("schema-change", 0));
    sim.schedule(Time::from_secs(20), Fault::custom("crash-projector", 0));
    sim.check("rebuild-within-budget", |w| match w.node::<Handler>(HANDLER).last_rebuild {
        Some((a, events, us)) if us > w.param("budget_ms") as u64 * MICROS_PER_MS => {
            Err(format!("account {a}: rebuilding it read {events} events in {:.1} ms", us as f64 / 1e3))
        }
        _ => Ok(()),
    });
    sim.check("old-events-replay", |w| match w.node::<Handler>(HANDLER).broken.iter().next() {
        Some((a, n)) => Err(format!("account {a}: replay failed on its event {n}, a v1 event the v2 code cannot read")),
        None => Ok(()),
    });
    // Streams are accounts, rows balances: "stream 3: the projection holds 1200 after event 97; replayed, 1100".
    sim.check("projection-matches-replay", |w| {
        w.node::<Handler>(HANDLER).store.judge(w.node::<Projection<Event, i64>>(PROJECTOR))
    });
    // The gauges: the store's size and longest stream, the projection's lag while reads use it.
    sim.probe("events", |w| w.node::<Handler>(HANDLER).store.stored() as i64);
    sim.probe("longest_stream", |w| w.node::<Handler>(HANDLER).store.longest() as i64);
    sim.probe("proj_lag", |w| w.node::<Handler>(HANDLER).lag(w.now).0);
    sim.probe("proj_lag_ms", |w| w.node::<Handler>(HANDLER).lag(w.now).1);
    Box::new(sim)
}

impl Node for Es {
    type Msg = Msg;
    type Timer = Timer;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Es::Clients(c) => c.arrivals.start(ctx, Timer::Arrive),
            Es::Handler(_) => {}
            Es::Projector(p) => pull(p, true, ctx),
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Es::Handler(h), Msg::Job(job)) => h.offer(job, ctx),
            // A pull confirms what the projector finished, and is answered now or at the next append.
            (Es::Handler(h), Msg::Log(ask @ Pull::Ask { .. })) => {
                if let Some(answer) = h.store.log.serve(SLOT, ask, batch(ctx), ctx.now()) {
                    ctx.send(from, Msg::Log(answer));
                }
            }
            // Answered from the read model at once (its own time left out): fast, stale by the lag.
            (Es::Projector(_), Msg::Job(Job(_, None))) => ctx.observe("read_us", 0),
            (Es::Projector(p), Msg::Log(answer @ Pull::Batch { .. })) => {
                if let Some((no, n)) = p.answered(answer, ctx, Timer::Pull) {
                    ctx.set_timer(n as u64 * ctx.param("apply_us") as u64, Timer::Applied(no));
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Es::Clients(c), Timer::Arrive) => {
                c.arrivals.on_timer(ctx, Timer::Arrive);
                // Deposits and withdrawals of 0.01 to 100.00, as likely: balances walk at random.
                let (account, cents) = (ctx.rng().below(c.accounts) as u32, ctx.rng().range(1, 10_000) as i64);
                let (reads, all) = (ctx.param("read_per_s") as u64, c.arrivals.rate_per_s() as u64);
                if ctx.rng().below(all.max(1)) >= reads {
                    let amount = Some(if ctx.rng().below(2) == 0 { cents } else { -cents });
                    ctx.send(HANDLER, Msg::Job(Job(account, amount)));
                } else {
                    let to = if Strategy::from_id(ctx.strategy()).projection() { PROJECTOR } else { HANDLER };
                    ctx.send(to, Msg::Job(Job(account, None)));
                }
            }
            (Es::Handler(h), Timer::Done(slot)) => h.done(slot, ctx),
            (Es::Projector(p), Timer::Pull) => pull(p, false, ctx),
            (Es::Projector(p), Timer::Applied(no)) => applied(p, no, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // Queued jobs and parked pulls were in memory; the store is on disk.
            Es::Handler(h) => (_, _) = (h.station.crash(ctx), h.store.log.unpark_all()),
            Es::Projector(p) => p.crash(),
            Es::Clients(_) => {}
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Es::Handler(h), Control::Strategy(id)) => h.strategy = Strategy::from_id(id),
            (Es::Projector(p), Control::Strategy(id)) => {
                p.atomic = Strategy::from_id(id) == Strategy::Atomic;
                pull(p, true, ctx);
            }
            (Es::Clients(c), Control::Param { id: "cmd_per_s" | "read_per_s", .. }) => {
                let rate = ctx.param("cmd_per_s") + ctx.param("read_per_s");
                c.arrivals.set_rate_per_s(rate as f64, ctx, Timer::Arrive)
            }
            (Es::Handler(h), Control::Custom { id: "schema-change", .. }) if !h.store.deployed() => {
                h.store.deploy();
                ctx.note("schema v2 deployed: new events carry amount_cents; the stored ones stay v1");
            }
            (Es::Projector(p), Control::Custom { id: "crash-projector", .. }) => p.crash_after_next(),
            _ => {} // the other parameters are read where they are used; each fault hits its own node
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Es::Clients(c) => NodeView::new(NodeKind::Client, 0, "clients")
                .badge(format!("{:.0} commands and reads/s", c.arrivals.rate_per_s()), Tone::Neutral),
            Es::Handler(h) => h.view(),
            Es::Projector(m) => {
                let (mode, tone) = if m.atomic { ("with its rows", Tone::Good) } else { ("at the store", Tone::Warn) };
                NodeView::new(NodeKind::Store, 2, "projection (read model)")
                    .badge(format!("applied up to event {}", m.position), Tone::Neutral)
                    .badge_if(!m.is_idle(), format!("position: {mode}"), tone)
                    .badge_if(m.is_idle(), "not used: reads replay", Tone::Neutral)
                    .badge_if(m.is_applying(), "writing a batch", Tone::Neutral)
            }
        }
    }
}

/// The most events a pull brings: the parameter, and no more than 1 s of the projector's work.
fn batch(ctx: &Ctx<Es>) -> usize {
    (ctx.param("batch") as usize).min(MICROS_PER_S as usize / ctx.param("apply_us").max(1) as usize).max(1)
}

impl Handler {
    /// Rebuilds the job's account (from zero or its snapshot) and queues the job with that
    /// cost; without an upcaster, a v1 event after the deploy fails the replay at once.
    fn offer(&mut self, job: Job, ctx: &mut Ctx<Es>) {
        let (st, a) = (self.strategy, job.0);
        match self.store.replay(a as usize, st.snapshots(), st.upcasts()) {
            Replay::Fails { at } => {
                ctx.count("replay_failed", 1);
                if self.broken.insert(a, at).is_none() {
                    ctx.note(format!("account {a}: replay failed on v1 event {at}"));
                }
            }
            Replay::Read { events, .. } => {
                self.broken.remove(a);
                let cost = LOAD_US + events * ctx.param("replay_us") as u64;
                let _ = self.station.offer_sized((job, events, cost), cost, ctx, Timer::Done);
            }
        }
    }
    /// A job done: its rebuild measured; a command decided on the rebuilt balance (never
    /// below zero), appended (v1 or v2 by the deploy), and a snapshot taken when due.
    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Es>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Done) else { return };
        let (Job(account, amount), events, cost) = f.job;
        ctx.observe("rebuild_us", cost);
        ctx.observe("rebuild_events", events);
        self.last_rebuild = Some((account, events, cost));
        let Some(amount) = amount else { return ctx.observe("read_us", f.sojourn_us()) };
        ctx.observe("command_us", f.sojourn_us());
        let (a, event) = (account as usize, Event(amount, self.store.deployed()));
        let Replay::Read { state: balance, .. } = self.store.replay(a, false, true) else { return };
        if balance + amount < 0 {
            return ctx.count("rejected", 1);
        }
        for (slot, no) in self.store.append(a, event, balance + amount, amount, ctx.now()) {
            ctx.send(PROJECTOR, Msg::Log(self.store.log.batch(slot, no, batch(ctx))));
        }
        if self.strategy.snapshots() {
            self.store.snapshot_if(a, ctx.param("snapshot_every") as u64);
        }
    }
    /// The projection's lag (events, and ms: the oldest one's age) while reads use it.
    fn lag(&self, now: Time) -> (i64, i64) {
        let (log, on) = (&self.store.log, self.strategy.projection() as i64);
        let age_us = log.get(log.position(SLOT)).map_or(0, |r| now.since(r.at));
        (on * log.lag(SLOT) as i64, on * (age_us / MICROS_PER_MS) as i64)
    }
    fn view(&self) -> NodeView {
        let st = self.strategy;
        let schema = if st.upcasts() { ("v2, upcasting v1", Tone::Good) } else { ("v2, no upcaster", Tone::Warn) };
        let rebuild_ms = self.last_rebuild.map_or(0.0, |r| r.2 as f64 / 1e3);
        NodeView::new(NodeKind::Database, 1, "command handler + event store")
            .gauge("queued", self.station.queue_len() as i64, 100)
            .badge(if st.snapshots() { "rebuild from snapshot" } else { "rebuild from zero" }, Tone::Neutral)
            .badge(format!("last rebuild {rebuild_ms:.1} ms"), Tone::Neutral)
            .badge_if(self.store.deployed(), schema.0, schema.1)
            .badge_if(!self.broken.is_empty(), format!("{} accounts stuck", self.broken.len()), Tone::Bad)
    }
}

/// A long poll (again) by the projector, confirming the batch it finished, while reads use the
/// projection; to `resume`, only if it was idle (a start, a restart, a strategy switched).
fn pull(p: &mut Projection<Event, i64>, resume: bool, ctx: &mut Ctx<Es>) {
    let on = Strategy::from_id(ctx.strategy()).projection();
    if let Some(ask) = if resume { p.resume(on, ctx, Timer::Pull) } else { p.pull(on, ctx, Timer::Pull) } {
        ctx.send(HANDLER, Msg::Log(ask));
    }
}

/// The batch written to the balances (v1 events upcast as read); then the next pull, or the
/// crash the fault scheduled between writing and confirming (back after `outage_ms`).
fn applied(p: &mut Projection<Event, i64>, no: u64, ctx: &mut Ctx<Es>) {
    let mut upcast = 0;
    let fold = |balance: &mut i64, e: &Event| {
        (*balance, upcast) = (*balance + e.0, upcast + !e.1 as i64);
        e.0
    };
    match p.applied(no, fold) {
        Handled::Next => pull(p, false, ctx),
        Handled::Crash => {
            ctx.note(format!("crashed after writing batch {no}, before confirming it"));
            ctx.crash(Some(ctx.param_ms("outage_ms")));
        }
        Handled::Stale => {}
    }
    ctx.count("upcast", upcast);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::eventstore::mean_tail;
    use crate::parts::partition::catch_up_s;
    use crate::parts::testing::{failed_at, run_sampled, Sampled};

    const COUNTERS: [&str; 2] = ["rejected", "upcast"];

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &COUNTERS)
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new(SPEC.id(), strategy, seed)
    }

    fn check<'a>(r: &'a dyn Run, id: &str) -> &'a CheckStatus {
        r.checks().iter().find(|c| c.id == id).expect("a check")
    }

    /// Whether the check still fails when the run stops (its last band is open).
    fn failing_at_end(r: &dyn Run, id: &str) -> bool {
        check(r, id).bands.last().is_some_and(|b| b.to.is_none())
    }

    fn held_all(r: &dyn Run) -> bool {
        r.checks().iter().all(|c| c.violation.is_none())
    }

    #[test]
    fn try_replay_from_zero_outgrows_its_budget_as_history_grows() {
        // 200 events an account at first, 4 more a second each (40/s over 10): a rebuild costs
        // 200 µs + 20 µs × n, over 5 ms past n = 240, about 10 s in (Poisson: a few seconds either way).
        for seed in 1..=3 {
            let (r, _) = run(recipe("replay-from-zero", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "rebuild-within-budget").unwrap_or_else(|| panic!("seed {seed}"));
            assert!((6.0..=16.0).contains(&t) && why.starts_with("account "), "seed {seed}: {t} s, {why}");
            assert!(failing_at_end(r.as_ref(), "rebuild-within-budget"), "seed {seed}");
        }
        // A million events an account: every rebuild replays them all, 20 s each.
        let (r, _) = run(recipe("replay-from-zero", 1).with_param("history", 1_000_000), 25);
        let h = r.metrics().histogram("rebuild_us").expect("one rebuild done");
        assert_eq!((h.count(), h.min()), (1, LOAD_US + 20 * 1_000_000));
    }

    #[test]
    fn snapshots_bound_the_replay_to_every_minus_one_over_two_events_on_average() {
        // Loads fall evenly over the snapshot cycle (each command loads then appends; reads load
        // at random times), so the mean tail is (N − 1)/2: 24.5 events at N = 50. A cost fixed
        // at queueing time and rejected withdrawals (no append) barely move it: within 10%.
        for (seed, every) in [(1, 50), (2, 20)] {
            let (r, _) = run(recipe("snapshots-upcast", seed).with_param("snapshot_every", every), 30);
            let mean = r.metrics().histogram("rebuild_events").expect("rebuilds").mean();
            let want = mean_tail(every as u64);
            assert!((mean - want).abs() <= 0.1 * want, "seed {seed}, every {every}: {mean:.2}, theory {want}");
            assert!(held_all(r.as_ref()), "seed {seed}");
        }
    }

    #[test]
    fn try_snapshots_without_an_upcaster_choke_on_v1_events_after_the_deploy() {
        for seed in 1..=3 {
            let (r, _) = run(recipe("snapshots", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "old-events-replay").unwrap_or_else(|| panic!("seed {seed}"));
            assert!((10.0..=11.0).contains(&t) && why.contains("v1 event"), "seed {seed}: {t} s, {why}");
            assert!(failed_at(r.as_ref(), "rebuild-within-budget").is_none(), "seed {seed}");
            let (fixed, at) = run(recipe("snapshots-upcast", seed), 30);
            assert!(held_all(fixed.as_ref()), "seed {seed}");
            assert_eq!(at[30][1], 0, "no projection here, nothing upcast by it");
        }
    }

    #[test]
    fn try_a_projection_with_its_position_apart_applies_a_batch_twice() {
        for seed in 1..=3 {
            let (r, _) = run(recipe("projection", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "projection-matches-replay").unwrap_or_else(|| panic!("seed {seed}"));
            assert!((22.0..=25.0).contains(&t) && why.starts_with("stream "), "seed {seed}: {t} s, {why}");
            assert!(failing_at_end(r.as_ref(), "projection-matches-replay"), "seed {seed}: it stays wrong");
            // The atomic one skips what its rows hold, and its lag spikes in the outage, then drains.
            let (r, _) = open(&SPEC, &recipe("projection-atomic", seed));
            let mut r = r;
            r.keep_trace(false);
            r.run_until(Time(22_900 * MICROS_PER_MS), u64::MAX);
            let spike = r.metrics().gauge("proj_lag");
            r.run_until(Time::from_secs(30), u64::MAX);
            assert!(
                spike >= 80 && r.metrics().gauge("proj_lag") <= 20,
                "seed {seed}: {spike}, then {}",
                r.metrics().gauge("proj_lag")
            );
            assert!(held_all(r.as_ref()), "seed {seed}");
        }
    }

    #[test]
    fn try_a_projector_catches_up_in_the_fluid_time() {
        // It crashes at its first batch after 20 s (caught up then: batches of an event or two)
        // and is down D = 10 s: the lag grows to L = λD ≈ 400 events, then drains at μ − λ
        // (μ = 1/apply_us) in L/(μ − λ) ≈ 7 s, the fluid approximation — caught up D + L/(μ − λ)
        // after 20 s. Batches of 100 make the drain a staircase and the lag is read every
        // 250 ms; the arrivals in the drain add s.d. √(λ·7 s) ≈ 17 events (0.3 s): within 10%.
        for (seed, apply_us) in [(1, 10_000), (2, 10_000), (3, 12_500)] {
            let r = recipe("projection-atomic", seed).with_param("outage_ms", 10_000).with_param("apply_us", apply_us);
            let (mut r, _) = open(&SPEC, &r);
            r.keep_trace(false);
            let caught = (30_000..90_000u64).step_by(250).find(|&ms| {
                r.run_until(Time::from_ms(ms), u64::MAX);
                r.metrics().gauge("proj_lag") <= 5
            });
            let lambda = (r.metrics().gauge("events") - 10 * 200) as f64 / r.now().as_secs_f64();
            let want = 10.0 + catch_up_s(10.0 * lambda, 1e6 / apply_us as f64, lambda).expect("faster");
            let took = caught.expect("caught up") as f64 / 1e3 - 20.0;
            assert!(
                (took - want).abs() <= 0.1 * want,
                "seed {seed}: caught up {took:.2} s after 20 s, fluid {want:.2} s"
            );
        }
    }

    #[test]
    fn the_view_shows_the_schema_the_stuck_accounts_and_the_projections_position() {
        let (r, _) = run(recipe("snapshots", 1), 15);
        let handler = r.frame(0).nodes.into_iter().nth(HANDLER as usize).expect("the handler").view;
        assert!(handler.badges.iter().any(|b| b.text == "v2, no upcaster" && b.tone == Tone::Warn));
        assert!(handler.badges.iter().any(|b| b.text.ends_with("accounts stuck") && b.tone == Tone::Bad));
        let (r, _) = run(recipe("projection-atomic", 1), 10);
        let p = r.frame(0).nodes.into_iter().nth(PROJECTOR as usize).expect("the projector").view;
        assert!(p.badges.iter().any(|b| b.text == "position: with its rows" && b.tone == Tone::Good));
    }
}
