//! Global ID generator: nodes hand out IDs keying one table's rows — from a central ticket
//! server, at random (UUID v4), or Snowflake-style from their own clocks. A clock stepped back
//! makes Snowflake issue IDs again, unless it waits for its clock to pass its last timestamp.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::snowflake::{Snowflake, Wait};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::unique::{expected_duplicates, Inserted, UniqueIndex};
use faultline_core::*;
use std::collections::VecDeque;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "id-generator",
        title: "Global ID generator: tickets, UUIDs and Snowflake",
        category: "Coordination",
        seeds: &["S1#10"],
        summary: "Four nodes hand out IDs keying one table's rows, 250 a second each. Node 0's clock runs 1.5 s ahead \
                  until NTP steps it back at 10 s, when Snowflake issues its last 1.5 s of IDs again and the guard \
                  waits instead; the ticket server never repeats but stops every node while down (20–23 s); random \
                  UUIDs do not repeat but come in no order.",
        note: Note {
            what_can_go_wrong: "A Snowflake ID is (milliseconds, worker id, sequence within the ms): unique only while \
                no worker's clock goes back and no two workers share an id. An NTP step, a VM resumed from a snapshot or \
                a hand-set clock puts a node on milliseconds it has used already; its sequence starts at 0 again, so it \
                issues the same IDs a second time — smaller than its last, so out of order too. A copied config giving \
                two nodes one worker id duplicates with no clock fault at all, and a guard that keeps its last timestamp \
                in memory forgets it in a restart. Random IDs collide by the birthday bound, 1 − exp(−n²/2^(b+1)) for n \
                IDs of b random bits: never at 122 bits, hundreds at 20. The model: Poisson requests at each node, \
                served in order; IDs are inserted into a table whose unique index refuses a repeat; links take 0.2–2 \
                ms, but each node's one connection to the ticket server a fixed 0.5 ms each way (answers keep their \
                order, as on TCP); the ticket server commits an ID in a fixed 200 µs, one at a time, and keeps its \
                counter on disk through a crash.",
            what_you_sacrifice: "The guard trades availability for uniqueness: while its clock is behind its last \
                timestamp a node issues nothing, so a 1.5 s step back is a 1.5 s stall (Twitter's Snowflake refused \
                requests instead). The ticket server needs no clock and gives dense, ordered IDs, but each costs a round \
                trip, its commit rate is the fleet's ceiling, and its crash stops every node — Flickr ran two, one \
                issuing odd numbers and one even, giving up the order. Random UUIDs need neither clocks nor coordination \
                but take 16 bytes instead of 8 and come in no order: nearly every insert lands inside the index, on a \
                cold page that splits. A clock running ahead costs locality too: while node 0 runs 1.5 s ahead, the \
                other nodes' IDs land behind its own.",
            at_10x: "Ten times the requests (2,500 a second per node, 10,000 in all) pass the ticket server's ceiling \
                of 5,000 commits a second: its queue grows without bound and IDs time out. Snowflake allows 4,096 IDs \
                per millisecond per worker — lower `sequence_bits` to watch it run out and wait for the next \
                millisecond — and 1,024 workers, so handing out worker ids becomes a coordination problem of its own \
                (Twitter used ZooKeeper). Random IDs stay unique, but the index they scatter over outgrows memory.",
            resembles: "Twitter's Snowflake (2010) and its descendants (Sonyflake, Discord and Instagram IDs, Baidu's \
                UidGenerator), Flickr's ticket servers (REPLACE INTO on an auto-increment table, two servers odd and \
                even), UUID v4 versus the time-ordered UUID v7 and ULID, MongoDB ObjectIds, database sequences.",
            try_this: &[
                "Play `snowflake`: at 10 s node 0's clock steps back 1.5 s and it issues those 1.5 s of IDs again — \
                 `no-duplicate-id` names an ID node 0 issued twice, `per-node-monotonic` names node 0; dozens in all.",
                "Switch to `snowflake-guard`: node 0 waits about 1.5 s for its clock to pass its last timestamp (guard \
                 stall), its requests wait as long (ID latency), and both checks hold.",
                "Switch to `ticket-server`: one counter, so IDs are unique and ordered with no clock involved, but every \
                 ID is a round trip (ID latency about 1.2 ms instead of 0) and from 20 s to 23 s, while the server is \
                 down, no node gets one: some 3,000 requests fail.",
                "Try `uuid`: out of order from its second ID, and nearly every insert lands inside the index. Set \
                 `random_bits` to 20: some 430 duplicates in 30 s, as the birthday bound expects.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("nodes", "Nodes", "", 1..=10, 4, "Nodes handing out IDs."),
        ParamSpec::live("rate_per_s", "Requests per node", "/s", 0..=2500, 250, "Poisson requests for an ID, at each node."),
        ParamSpec::setup("rollback_ms", "Clock step back", "ms", 0..=10_000, 1500, "Node 0's clock runs this far ahead until NTP steps it back at 10 s (0: none).").step(100),
        ParamSpec::setup("sequence_bits", "Sequence bits", "", 1..=12, 12, "Snowflake's per-millisecond counter: 2^bits IDs per ms per node."),
        ParamSpec::live("random_bits", "Random bits", "", 16..=122, 122, "Random bits of a uuid (v4 has 122)."),
        ParamSpec::live("ticket_us", "Ticket commit", "us", 10..=10_000, 200, "The ticket server's time per ID, one at a time."),
        ParamSpec::live("timeout_ms", "Ticket timeout", "ms", 10..=10_000, 250, "A node gives up on the ticket server after this; the request fails."),
    ],
    strategies: &[
        StrategySpec::naive("snowflake", "Snowflake", "Timestamp (own clock, ms) · worker id · sequence; the sequence restarts whenever the ms differs from the last."),
        StrategySpec::fixed("snowflake-guard", "Snowflake + rollback guard", "As Snowflake, but while its clock reads less than its last timestamp the node waits."),
        StrategySpec::fixed("ticket-server", "Ticket server", "Every ID is the next value of one central counter (Flickr), a round trip away, and small: below IDs of any other scheme."),
        StrategySpec::naive("uuid", "Random UUID", "Every ID is random bits (UUID v4): no clock, no coordination, no order."),
    ],
    faults: &[
        FaultSpec::node("clock-back", "Step the clock back", "This node's clock jumps back this far (an NTP step, a VM resumed).").value("ms", 1..=60_000, 1500),
        FaultSpec::node("same-worker-id", "Set the worker id", "This node uses this worker id from now on, as a copied config would.").value("worker id", 0..=1023, 0),
    ],
    checks: &[
        CheckSpec::new("no-duplicate-id", "No duplicate ID", "The table never receives an ID it already holds. Names the ID and both issuers."),
        CheckSpec::new("per-node-monotonic", "Per-node monotonic", "Each node hands out IDs in increasing order. Names the node and both IDs."),
    ],
    metrics: &[
        MetricSpec::new("ids", "IDs issued", "/s", Measure::Rate("ids")),
        MetricSpec::new("duplicates", "Duplicate IDs", "", Measure::Count("duplicates")),
        MetricSpec::new("birthday", "Duplicates the birthday bound expects (uuid)", "", Measure::GaugePer("birthday_milli", 1000.0)),
        MetricSpec::new("latency", "ID latency p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("failed", "Requests without an ID", "", Measure::Count("failed")),
        MetricSpec::new("stall", "Guard stall (total)", "us", Measure::Count("stall_us")),
        MetricSpec::new("seq_waits", "Sequence ran out (wait for the next ms)", "", Measure::Count("seq_waits")),
        MetricSpec::new("backwards", "IDs below the node's previous one", "", Measure::Count("backwards")),
        MetricSpec::new("offset", "Clock offset (sum over nodes)", "ms", Measure::Count("offset_ms")),
        MetricSpec::new("inside", "Inserts inside the index (not at its end)", "%", Measure::Percent { num: "inside", rest: "edge" }),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Snowflake, Guard, Ticket, Uuid });

const TABLE: NodeId = 0;
const TICKETS: NodeId = 1;
const FIRST: NodeId = 2;
/// Keys on a leaf page of the table's index (8-byte keys and their rows on 16 KB pages).
const PAGE: usize = 100;
/// Each node's one connection to the ticket server: a fixed latency keeps it in order, as TCP.
const TICKET_LINK_US: Micros = 500;

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Next(CallId),
    Ticket { call: CallId, id: u64 },
    Insert(u128),
}

/// `Resume`: the guard's wait, or a spent sequence's, is over.
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Resume,
    CallTimeout(CallId),
    Done(Slot),
}

#[derive(Clone, Debug, Holds)]
pub enum Ig {
    Table(Table),
    Tickets(Tickets),
    Generator(Generator),
}

/// The table the IDs key, its primary key's index; the latest repeat refused (the ID, its
/// first issuer, the second, when) for the check; the IDs it got under `uuid`, for the bound.
#[derive(Clone, Debug)]
pub struct Table {
    index: UniqueIndex<u128, NodeId>,
    dup: Option<(u128, u32, u32, Time)>,
    random: u64,
}

/// Flickr's ticket server: one counter, bumped by one commit at a time, kept on disk.
#[derive(Clone, Debug)]
pub struct Tickets {
    counter: u64,
    station: Station<(NodeId, CallId)>,
}

/// In memory (a restart forgets them): Snowflake's state (its worker id is the node's index
/// unless misconfigured), the requests waiting for an ID (arrival, true time) and the timer
/// that serves them again. For the check and the metrics only: the last ID handed out, the
/// latest not above its predecessor (that, it, when), the clock offset last reported.
#[derive(Clone, Debug)]
pub struct Generator {
    index: u32,
    strategy: Strategy,
    snow: Snowflake,
    src: OpenLoop,
    calls: Calls<Time>,
    waiting: VecDeque<Time>,
    resume: Option<TimerId>,
    last_id: Option<u128>,
    backwards: Option<(u128, u128, Time)>,
    offset_ms: i64,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ig> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 2_000 }));
    let table = Table { index: UniqueIndex::new(PAGE), dup: None, random: 0 };
    assert_eq!(sim.add_node(Ig::Table(table)), TABLE);
    let station = Station::new(1, Service::Constant(setup.param("ticket_us") as Micros));
    assert_eq!(sim.add_node(Ig::Tickets(Tickets { counter: 0, station })), TICKETS);
    for index in 0..setup.param("nodes") as u32 {
        let id = sim.add_node(Ig::Generator(Generator {
            index,
            strategy: Strategy::from_id(setup.strategy()),
            snow: Snowflake::new(index as u64, setup.param("sequence_bits") as u32),
            src: OpenLoop::poisson(setup.param("rate_per_s") as f64),
            calls: Calls::new("ticket_rtt_us"),
            waiting: VecDeque::new(),
            resume: None,
            last_id: None,
            backwards: None,
            offset_ms: 0,
        }));
        sim.net().set_link(id, TICKETS, Link::constant(TICKET_LINK_US));
    }
    // The plan: node 0's clock runs ahead until NTP steps it back at 10 s; the tickets are down 20–23 s.
    let (ahead, skew) = (setup.param("rollback_ms") * 1000, |offset| Fault::ClockSkew { node: FIRST, offset });
    FaultWindow::secs(0, if ahead > 0 { 10 } else { 0 }).schedule(&mut sim, skew(ahead), skew(0));
    FaultWindow::secs(20, 3).crash(&mut sim, TICKETS);
    sim.check("no-duplicate-id", |w| match w.node::<Table>(TABLE).dup {
        Some((id, a, b, at)) if at == w.now => Err(format!("ID {id} issued by node {a} and again by node {b}")),
        _ => Ok(()),
    });
    sim.check("per-node-monotonic", |w| {
        let touched = w.touched.filter(|&n| n >= FIRST).map(|n| w.node::<Generator>(n));
        match touched.and_then(|g| Some((g.index, g.backwards?))) {
            Some((node, (last, id, at))) if at == w.now => Err(format!("node {node} handed out ID {id} after {last}")),
            _ => Ok(()),
        }
    });
    Box::new(sim)
}

impl Node for Ig {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Ig::Generator(g) = self {
            g.src.start(ctx, Timer::Arrive);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ig::Table(t), Msg::Insert(id)) => t.insert(id, from, ctx),
            (Ig::Tickets(t), Msg::Next(call)) => _ = t.station.offer((from, call), ctx, Timer::Done),
            // An answer after its request gave up is a ticket burnt: a gap, never a duplicate.
            (Ig::Generator(g), Msg::Ticket { call, id }) => {
                if let Some(arrived) = g.calls.reply(call, ctx) {
                    g.hand_out(id as u128, arrived, ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ig::Generator(g), Timer::Arrive) => {
                g.src.on_timer(ctx, Timer::Arrive);
                g.waiting.push_back(ctx.truth());
                if g.resume.is_none() {
                    g.serve(ctx);
                }
            }
            (Ig::Generator(g), Timer::Resume) => g.serve(ctx),
            (Ig::Generator(g), Timer::CallTimeout(call)) => ctx.count("failed", g.calls.timeout(call).is_some() as i64),
            (Ig::Tickets(t), Timer::Done(slot)) => {
                if let Some((node, call)) = t.station.done(slot, ctx, Timer::Done).map(|f| f.job) {
                    t.counter += 1;
                    ctx.send(node, Msg::Ticket { call, id: t.counter });
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    /// The ticket server's counter is a row on disk (its queue is lost), the table is durable;
    /// a node's requests and Snowflake state were in memory.
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ig::Tickets(t) => _ = t.station.crash(ctx),
            Ig::Generator(g) => {
                let lost = g.waiting.len() + g.calls.clear(ctx).len();
                ctx.count("failed", lost as i64);
                (g.waiting, g.resume) = (VecDeque::new(), None);
                g.snow.forget();
            }
            Ig::Table(_) => {}
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (_, Control::Custom { id: "clock-back", value }) => {
                let (node, offset) = (ctx.me(), ctx.now().micros() as i64 - ctx.truth().micros() as i64);
                ctx.inflict(Fault::ClockSkew { node, offset: offset - value * 1000 });
            }
            (Ig::Generator(g), Control::Custom { id: "same-worker-id", value }) => g.snow.worker = value as u64,
            (Ig::Generator(g), Control::Strategy(id)) => {
                g.strategy = Strategy::from_id(id);
                g.serve(ctx);
            }
            (Ig::Generator(g), Control::Param { id: "rate_per_s", value: v }) => {
                g.src.set_rate_per_s(v as f64, ctx, Timer::Arrive)
            }
            (Ig::Tickets(t), Control::Param { id: "ticket_us", value: v }) => {
                t.station.set_service(Service::Constant(v as u64))
            }
            // The other parameters are read when used; each node acts on the changes it cares for.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ig::Table(t) => NodeView::new(NodeKind::Database, 1, "table")
                .badge(format!("{} rows", t.index.len()), Tone::Neutral)
                .badge_if(t.index.duplicates() > 0, format!("{} duplicate IDs", t.index.duplicates()), Tone::Bad),
            Ig::Tickets(t) => NodeView::new(NodeKind::Database, 1, "ticket server")
                .badge(format!("counter {}", t.counter), Tone::Neutral)
                .gauge("queue", t.station.held() as i64, 100),
            Ig::Generator(g) => {
                let what = match g.strategy {
                    Strategy::Snowflake | Strategy::Guard => {
                        let (ts, seq) = g.snow.last();
                        format!("worker {} · last {ts} ms · seq {seq}", g.snow.worker)
                    }
                    Strategy::Ticket => format!("{} tickets asked", g.calls.len()),
                    Strategy::Uuid => "random".into(),
                };
                NodeView::new(NodeKind::Service, 0, numbered("node", g.index as u64))
                    .badge(what, Tone::Neutral)
                    .badge_if(g.resume.is_some(), "waiting for its clock", Tone::Warn)
                    .gauge("waiting", g.waiting.len() as i64, 100)
            }
        }
    }
}

impl Table {
    fn insert(&mut self, id: u128, from: NodeId, ctx: &mut Ctx<Ig>) {
        if ctx.strategy() == "uuid" {
            self.random += 1;
            let expected = expected_duplicates(self.random, ctx.param("random_bits") as u32);
            ctx.gauge("birthday_milli", (expected * 1000.0) as i64);
        }
        match self.index.insert(id, from) {
            Inserted::Duplicate(first) => {
                let (a, b) = (first - FIRST, from - FIRST);
                ctx.count("duplicates", 1);
                ctx.note(format!("duplicate key {id}: from node {b}, first from node {a}"));
                self.dup = Some((id, a, b, ctx.truth()));
            }
            landed => ctx.count(if landed == Inserted::Inside { "inside" } else { "edge" }, 1),
        }
    }
}

impl Generator {
    /// Gives the waiting requests IDs, in order, until the clock makes one wait.
    fn serve(&mut self, ctx: &mut Ctx<Ig>) {
        if let Some(t) = self.resume.take() {
            ctx.cancel_timer(t);
        }
        while let Some(&arrived) = self.waiting.front() {
            let id = match self.strategy {
                Strategy::Snowflake | Strategy::Guard => {
                    match self.snow.next(ctx.now().micros(), self.strategy == Strategy::Guard) {
                        Ok(id) => Some(id as u128),
                        Err(wait) => return self.wait(wait, ctx),
                    }
                }
                Strategy::Ticket => {
                    let timeout = ctx.param("timeout_ms") as Micros * MICROS_PER_MS;
                    let call = self.calls.start(ctx, arrived, timeout, Timer::CallTimeout);
                    ctx.send(TICKETS, Msg::Next(call));
                    None
                }
                Strategy::Uuid => {
                    let r = (ctx.rng().next_u64() as u128) << 64 | ctx.rng().next_u64() as u128;
                    Some(r & ((1 << ctx.param("random_bits")) - 1))
                }
            };
            self.waiting.pop_front();
            if let Some(id) = id {
                self.hand_out(id, arrived, ctx);
            }
        }
    }

    /// No ID until the clock allows (the guard's stall counted as it starts): served again then.
    fn wait(&mut self, wait: Wait, ctx: &mut Ctx<Ig>) {
        match wait {
            Wait::Sequence(_) => ctx.count("seq_waits", 1),
            Wait::Clock(us) => {
                ctx.count("stall_us", us as i64);
                ctx.note(format!("clock {} ms behind its last timestamp: waiting", us / MICROS_PER_MS));
            }
        }
        self.resume = Some(ctx.set_timer(wait.us(), Timer::Resume));
    }

    fn hand_out(&mut self, id: u128, arrived: Time, ctx: &mut Ctx<Ig>) {
        let now = ctx.truth();
        ctx.observe("latency_us", now.since(arrived));
        ctx.count("ids", 1);
        if let Some(last) = self.last_id.filter(|&last| id <= last) {
            self.backwards = Some((last, id, now));
            ctx.count("backwards", 1);
        }
        self.last_id = Some(id);
        ctx.send(TABLE, Msg::Insert(id));
        let offset = (ctx.now().micros() as i64 - now.micros() as i64) / 1000;
        ctx.count("offset_ms", offset - std::mem::replace(&mut self.offset_ms, offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::partition::md1_mean_lag;
    use crate::parts::testing::{failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("id-generator", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    fn latency(r: &dyn Run) -> &Histogram {
        r.metrics().histogram("latency_us").expect("IDs were handed out")
    }

    fn holds(r: &dyn Run) -> bool {
        failed_at(r, "no-duplicate-id").is_none() && failed_at(r, "per-node-monotonic").is_none()
    }

    /// The IDs the table received.
    fn inserts(r: &dyn Run) -> i64 {
        counter(r, "edge") + counter(r, "inside") + counter(r, "duplicates")
    }

    fn at(at: Time, fault: Fault) -> (Time, ActionKind) {
        (at, ActionKind::Fault(fault))
    }

    #[test]
    fn try_snowflake_issues_the_same_ids_again_after_the_step_back() {
        // Step 1. Node 0 issued the 1.5 s of timestamps before the step once already, each
        // millisecond's IDs numbered from 0: a millisecond with A IDs then and B now repeats
        // min(A, B) of them, E[min(A, B)] = Σ_j P(A ≥ j)² for A, B Poisson(0.25) — about 75 in
        // 1,500 ms. Averaged over 10 seeds, within 10% (a seed's count varies by ~±9, 12%).
        let poisson_tail = |j: u32| {
            1.0 - (0..j)
                .map(|k| libm::exp(-0.25) * libm::pow(0.25, k as f64) / libm::tgamma(k as f64 + 1.0))
                .sum::<f64>()
        };
        let expected = 1500.0 * (1..8).map(|j| poisson_tail(j) * poisson_tail(j)).sum::<f64>();
        let mut total = 0;
        for seed in 1..=10 {
            let (r, at) = run_sampled(&SPEC, &recipe("snowflake", seed), 30, &["duplicates", "offset_ms"]);
            let (t, why) = failed_at(r.as_ref(), "no-duplicate-id").expect("a duplicate");
            assert!(
                (10.0..10.1).contains(&t) && why.ends_with("by node 0 and again by node 0"),
                "seed {seed}: {t} {why}"
            );
            let (t, why) = failed_at(r.as_ref(), "per-node-monotonic").expect("an ID out of order");
            assert!((10.0..10.05).contains(&t) && why.starts_with("node 0 "), "seed {seed}: {t} {why}");
            // All of them in the 1.5 s after the step; the clock offset reads +1.5 s, then 0.
            let dups = counter(r.as_ref(), "duplicates");
            assert!(dups >= 24 && at[10][0] == 0 && at[12][0] == dups, "seed {seed}: {dups} {at:?}");
            assert_eq!((at[5][1], at[15][1]), (1500, 0), "seed {seed}");
            total += dups;
        }
        let mean = total as f64 / 10.0;
        assert!((mean - expected).abs() <= 0.1 * expected, "{mean} duplicates a run, expected {expected:.1}");
    }

    #[test]
    fn try_the_guard_waits_out_the_step_back_and_nothing_repeats() {
        // Step 2: the first request after the step waits until the clock is back at the last
        // timestamp, ~1.5 s less the gap before it came (4 ms on average); the latency's worst
        // is that wait.
        for seed in 1..=10 {
            let r = run(&recipe("snowflake-guard", seed), 30);
            assert!(holds(r.as_ref()), "seed {seed}");
            let stall = counter(r.as_ref(), "stall_us");
            assert!((1_450_000..=1_500_000).contains(&stall), "seed {seed}: stalled {stall} µs");
            assert!(latency(r.as_ref()).max().abs_diff(stall as u64) <= 1_000, "seed {seed}");
        }
    }

    #[test]
    fn try_the_ticket_server_is_ordered_and_unique_but_costs_a_round_trip_and_its_crash_stops_all() {
        // Step 3: 0.5 ms each way and 0.2 ms of commit; the 3 s crash fails ~3,000 requests
        // (1,000 a second, ±55), and Snowflake, which never asks it, fails none.
        for seed in 1..=10 {
            let (r, at) = run_sampled(&SPEC, &recipe("ticket-server", seed), 30, &["failed"]);
            assert!(holds(r.as_ref()), "seed {seed}");
            let l = latency(r.as_ref());
            assert!(l.min() >= 1_200 && (1_200..=1_700).contains(&l.quantile(0.99)), "seed {seed}: {l:?}");
            let failed = counter(r.as_ref(), "failed");
            assert!(at[20][0] == 0 && at[24][0] == failed && (2_700..=3_300).contains(&failed), "seed {seed}: {at:?}");
            let snowflake = run(&recipe("snowflake", seed), 30);
            assert_eq!((counter(snowflake.as_ref(), "failed"), latency(snowflake.as_ref()).max()), (0, 0));
        }
    }

    #[test]
    fn try_uuid_is_unordered_scatters_the_index_and_collides_by_the_birthday_bound_at_20_bits() {
        // Step 4. The birthday bound for ~30,000 IDs of 20 bits: ~430 duplicates (±21 a run).
        for seed in 1..=5 {
            let r = run(&recipe("uuid", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "per-node-monotonic").expect("out of order");
            assert!(t < 0.1 && why.starts_with("node "), "seed {seed}: {t} {why}");
            assert_eq!(counter(r.as_ref(), "duplicates"), 0, "seed {seed}: 122 bits");
            // Only ~560 of 30,000 land at the edge (page·(1 + ln(n/page)), tested in `parts::unique`).
            let inside = counter(r.as_ref(), "inside") as f64 / inserts(r.as_ref()) as f64;
            assert!(inside > 0.95, "seed {seed}: {inside}");
            let r = run(&recipe("uuid", seed).with_param("random_bits", 20), 30);
            assert!((350..=520).contains(&counter(r.as_ref(), "duplicates")), "seed {seed}");
        }
    }

    #[test]
    fn random_ids_collide_as_the_occupancy_formula_expects() {
        // n IDs of b random bits repeat n − m(1 − (1 − 1/m)ⁿ) of them on average, m = 2^b;
        // a run's count varies by about its square root (~5% at 20 bits), so 10 seeds' total is
        // held to 4%. The metric shows the same formula for the run's own n.
        let (mut got, mut want) = (0.0, 0.0);
        for seed in 1..=10 {
            let r = run(&recipe("uuid", seed).with_param("random_bits", 20), 30);
            let n = inserts(r.as_ref()) as u64;
            got += counter(r.as_ref(), "duplicates") as f64;
            want += expected_duplicates(n, 20);
            assert_eq!(r.metrics().gauge("birthday_milli"), (expected_duplicates(n, 20) * 1000.0) as i64);
        }
        assert!((got - want).abs() <= 0.04 * want, "{got} duplicates, expected {want:.0}");
        // Small n/m: the birthday approximation n(n − 1)/2m, with no rounding to 0.
        assert!(
            (expected_duplicates(30_000, 122) / (30_000.0 * 29_999.0 / 2.0 / libm::exp2(122.0)) - 1.0).abs() < 1e-9
        );
    }

    #[test]
    fn ticket_latency_is_two_hops_and_an_md1_sojourn() {
        // Poisson requests from four nodes (one Poisson stream) into one server with a fixed
        // commit time: M/D/1, sojourn W = L/λ (Pollaczek–Khinchine), plus 0.5 ms each way. At
        // ρ = 0.6 that is 1 + 1.05 ms; five seeds' mean within 5% (before the crash at 20 s).
        let want = 2.0 * TICKET_LINK_US as f64 + md1_mean_lag(1000.0, 600e-6).expect("stable") / 1000.0 * 1e6;
        let mean = (1..=5)
            .map(|seed| latency(run(&recipe("ticket-server", seed).with_param("ticket_us", 600), 19).as_ref()).mean())
            .sum::<f64>()
            / 5.0;
        assert!((mean - want).abs() <= 0.05 * want, "mean {mean:.0} µs, M/D/1 {want:.0} µs");
    }

    #[test]
    fn at_ten_times_the_load_the_ticket_server_falls_behind_and_ids_time_out() {
        // 10,000 requests a second against 5,000 commits: the queue grows 5,000 a second, and
        // after its first quarter second every answer comes after its request gave up.
        let r = run(&recipe("ticket-server", 1).with_param("rate_per_s", 2500), 19);
        let (failed, ids) = (counter(r.as_ref(), "failed"), counter(r.as_ref(), "ids"));
        assert!(failed > 150_000 && ids < 5_000, "{failed} failed, {ids} IDs");
    }

    #[test]
    fn a_spent_sequence_waits_for_the_next_millisecond() {
        // One sequence bit: two IDs a millisecond; at 1,000 requests a second a node often
        // gets a third in one and waits — under a millisecond — with nothing repeated.
        for seed in 1..=3 {
            let r = recipe("snowflake-guard", seed).with_param("sequence_bits", 1).with_param("rate_per_s", 1000);
            let r = run(&r.with_param("rollback_ms", 0), 30);
            assert!(holds(r.as_ref()) && counter(r.as_ref(), "seq_waits") > 1_000, "seed {seed}");
            assert!(latency(r.as_ref()).quantile(0.99) <= 2_000, "seed {seed}");
        }
    }

    #[test]
    fn the_guard_cannot_help_a_shared_worker_id_or_a_restart_that_forgets() {
        for seed in 1..=5 {
            let calm = recipe("snowflake-guard", seed).with_param("rollback_ms", 0);
            // Node 1 is given node 0's worker id at 5 s: their IDs coincide whenever both
            // issue in one millisecond (~5% of them).
            let (t, f) = at(Time::from_secs(5), Fault::custom_on("same-worker-id", FIRST + 1, 0));
            let r = run(&calm.clone().with_action(t, f), 30);
            let (t, why) = failed_at(r.as_ref(), "no-duplicate-id").expect("duplicates");
            assert!(t >= 5.0 && why.contains("node 0") && why.contains("node 1"), "seed {seed}: {why}");
            // The clock steps back 2 s at 10 s: the guard stalls 2 s. Crashed and restarted
            // during that stall, node 0 has forgotten its last timestamp and repeats IDs.
            let (t, f) = at(Time::from_secs(10), Fault::custom_on("clock-back", FIRST, 2000));
            let stepped = calm.with_action(t, f);
            let r = run(&stepped, 30);
            assert!(holds(r.as_ref()) && (1_950_000..=2_000_000).contains(&counter(r.as_ref(), "stall_us")));
            let (t1, crash) = at(Time::from_ms(10_500), Fault::Crash { node: FIRST });
            let (t2, restart) = at(Time::from_ms(10_600), Fault::Restart { node: FIRST });
            let r = run(&stepped.with_action(t1, crash).with_action(t2, restart), 30);
            assert!(failed_at(r.as_ref(), "no-duplicate-id").is_some(), "seed {seed}");
        }
    }

    #[test]
    fn a_clock_ahead_puts_the_others_ids_behind_its_own_in_the_index() {
        // Node 0, 1.5 s ahead for 10 s, stays ahead of the other three's IDs: theirs land far
        // from the index's end, ~3/4 of the inserts in those 10 s. Without it, none do.
        let inside = |r: &dyn Run| counter(r, "inside") as f64 / inserts(r) as f64;
        for seed in 1..=3 {
            assert!(inside(run(&recipe("snowflake", seed), 10).as_ref()) > 0.6, "seed {seed}");
            assert!(inside(run(&recipe("snowflake", seed).with_param("rollback_ms", 0), 30).as_ref()) < 0.01);
        }
    }
}
