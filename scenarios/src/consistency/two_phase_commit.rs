//! Two-phase commit: a coordinator and three participants commit each transaction everywhere or nowhere; a coordinator crash after prepare leaves participants in doubt holding locks, a participant timeout frees them by breaking atomicity, and presumed abort's forced commit record lets a recovering coordinator answer.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::commit::{self, Answer, Phase, Prepare, Wake};
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "two-phase-commit",
        title: "Two-phase commit",
        category: "Transactions & consistency",
        seeds: &["S0#6"],
        summary: "20 transactions/s across three services, each locking a row until it hears the outcome. The coordinator \
            crashes after prepare, then mid-commit: 2PC blocks, a participant timeout splits one, presumed abort recovers.",
        note: Note {
            what_can_go_wrong: "A participant that voted yes is in doubt: it promised to commit if told to, so it may not \
                decide alone and keeps its row locked until it hears the outcome. A coordinator that comes back without a \
                log cannot tell it: plain 2PC stays safe but blocks forever (so its failing check is the liveness one). \
                A participant that times out and aborts alone is free, but the coordinator may have committed at another: \
                atomicity is gone. The model: no-wait row locks (a busy row votes no), prepare records forced before a \
                yes, decisions resent until acknowledged, in-doubt participants asking every `ask_ms`, links of 1–5 ms.",
            what_you_sacrifice: "Presumed abort forces an fsync per commit before anyone hears it (aborts cost none). It \
                still blocks: while the coordinator is down or cut off, its participants hold their locks, and whatever \
                touches those rows aborts.",
            at_10x: "Ten times the transactions hold ten times the locks, so a stall blocks ten times the rows; ten times \
                the participants wait for the slowest vote and commit less often ((1 − p)ⁿ needs every yes); group \
                commit shares one fsync among the commits that arrive during it.",
            resembles: "XA / X/Open DTP (heuristic outcomes are the timeout strategy made official), PostgreSQL PREPARE \
                TRANSACTION and its orphans, MySQL XA RECOVER, R*'s presumed abort (Mohan, Lindsay & Obermarck); a \
                replicated coordinator (Gray & Lamport's Paxos Commit) is what removes the blocking.",
            try_this: &[
                "Play `2pc`: the coordinator crashes after prepare at 5 s and is back at 8 s having forgotten; those that \
                    voted yes stay in doubt, rows locked, for good — `locks-released` fails, `atomicity` holds.",
                "Switch to `2pc-timeout`: in-doubt participants abort alone after `doubt_timeout_ms`; at 15 s a commit \
                    reaches participant 1 only before the crash, the others give up, and `atomicity` fails.",
                "Raise `doubt_timeout_ms` to 5000 in `2pc-timeout`: the coordinator is back first, yet it forgot the \
                    decision, so they still abort alone and `atomicity` still fails — waiting is no substitute for a log.",
                "Switch to `presumed-abort`: the restarted coordinator resends its logged commit and answers abort for \
                    what it has no record of; both checks hold, none in doubt much longer than the coordinator was down.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("participants", "Participants", "", 2..=7, 3, "Services each transaction spans."),
        ParamSpec::live("tx_per_s", "Transactions", "/s", 1..=1000, 20, "New transactions a second (Poisson)."),
        ParamSpec::live("rows", "Rows per participant", "", 1..=100_000, 200, "Each transaction locks one, at random."),
        ParamSpec::live("no_vote_pct", "Votes no", "%", 0..=100, 5, "A participant refuses this share of prepares."),
        ParamSpec::live("fsync_ms", "Log fsync", "ms", 0..=200, 2, "A forced log write (prepare, commit record)."),
        ParamSpec::live("vote_timeout_ms", "Vote timeout", "ms", 10..=10_000, 500, "Coordinator aborts if votes are late."),
        ParamSpec::live("resend_ms", "Resend decision", "ms", 10..=10_000, 300, "Until every participant acknowledges."),
        ParamSpec::live("ask_ms", "Ask while in doubt", "ms", 10..=10_000, 250, "In doubt, ask the coordinator this often."),
        ParamSpec::live("doubt_timeout_ms", "Participant timeout", "ms", 10..=60_000, 1000, "`2pc-timeout`: abort alone after this."),
        ParamSpec::setup("down_ms", "Coordinator down", "ms", 0..=20_000, 3000, "Each planned crash lasts this (0: none)."),
        ParamSpec::setup("loss_pct", "Message loss", "%", 0..=30, 1, "Share of messages the network drops."),
    ],
    strategies: &[
        StrategySpec::naive("2pc", "2PC", "Participants wait for the decision; the coordinator keeps it in memory only."),
        StrategySpec::naive("2pc-timeout", "2PC + participant timeout", "An in-doubt participant aborts alone after a timeout."),
        StrategySpec::fixed("presumed-abort", "Presumed abort", "Commit forced to a log first; no record means abort."),
    ],
    faults: &[
        FaultSpec::global("crash-after-prepare", "Crash the coordinator after prepare", "It dies right after sending its next prepares.")
            .value("restart after ms", 0..=60_000, 3000),
        FaultSpec::global("crash-mid-commit", "Crash the coordinator mid-commit", "Its next commit reaches participant 1 only.")
            .value("restart after ms", 0..=60_000, 3000),
    ],
    checks: &[
        CheckSpec::new("atomicity", "All commit or all abort", "No transaction committed at one participant and aborted at another."),
        CheckSpec::new("locks-released", "No participant blocked for good", "None in doubt > 2 s + 2 asks once up (presumed abort: of what it began)."),
    ],
    metrics: &[
        MetricSpec::new("committed", "Committed (throughput)", "tx/s", Measure::Rate("committed")),
        MetricSpec::new("aborted", "Aborted", "tx/s", Measure::Rate("aborted")),
        MetricSpec::new("in_doubt", "Participants in doubt", "", Measure::Count("in_doubt")),
        MetricSpec::new("blocked_p99", "Time in doubt p99", "us", Measure::Quantile("in_doubt_us", 0.99)),
        MetricSpec::new("blocked_total", "Lock-time blocked in doubt (total)", "us", Measure::Count("blocked_us")),
        MetricSpec::new("unilateral", "Aborted alone by a timeout", "", Measure::Count("unilateral")),
        MetricSpec::new("heuristic", "Commits after a lone abort", "", Measure::Count("heuristic")),
        MetricSpec::new("presumed", "Asks answered by presumed abort", "", Measure::Count("presumed")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Plain, Timeout, PresumedAbort });
const COORD: NodeId = 0;
/// Ids first: `Prepare(tx, row)`, `Vote(tx, yes)`, `Decision(tx, commit)`; `Ask`: in doubt, what was decided?
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Prepare(u64, u32),
    Vote(u64, bool),
    Decision(u64, bool),
    Ack(u64),
    Ask(u64),
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Call(CallId), // a round's call timed out: the votes (abort), or the acknowledgements (resend)
    Forced,       // the coordinator's commit records are on disk
    Prepared,     // a participant's prepare records are on disk
    Doubt(u64),   // in doubt: ask again (or, timing out, abort alone)
}
#[derive(Clone, Debug, Holds)]
pub enum Tpc {
    Coordinator(Coordinator),
    Participant(Participant),
}
#[derive(Clone, Debug)]
pub struct Coordinator {
    arrivals: OpenLoop,
    rounds: commit::Coordinator,
    calls: Calls<u64>,
    armed: Option<(&'static str, i64)>, // a crash fault waiting for its moment, and its restart delay
    back_at: Time,                      // true time of its latest (re)start, for the liveness check
}
#[derive(Clone, Debug)]
pub struct Participant {
    index: u32,
    timeout: bool,
    rm: commit::Participant,
    back_at: Time,
}
fn fsync(ctx: &Ctx<Tpc>) -> Micros {
    ctx.disk(ctx.param_ms("fsync_ms"))
}
fn build(setup: &Setup) -> Box<dyn Run> {
    let loss = Ppm::from_percent(setup.param("loss_pct") as u32);
    let mut sim: Sim<Tpc> =
        Sim::new(setup, Link { loss, ..Link::with_latency(Latency::Uniform { lo: 1_000, hi: 5_000 }) });
    let (n, strategy) = (setup.param("participants") as u32, Strategy::from_id(setup.strategy()));
    let pa = strategy == Strategy::PresumedAbort;
    let (arrivals, rounds) = (OpenLoop::poisson(setup.param("tx_per_s") as f64), commit::Coordinator::new(n, pa));
    let c = Coordinator { arrivals, rounds, calls: Calls::new("round_us"), armed: None, back_at: Time::ZERO };
    assert_eq!(sim.add_node(Tpc::Coordinator(c)), COORD);
    for index in 0..n {
        let (rm, timeout) = (Default::default(), strategy == Strategy::Timeout);
        sim.add_node(Tpc::Participant(Participant { index, timeout, rm, back_at: Time::ZERO }));
    }
    // The plan: the coordinator dies right after a prepare, then between its commit messages.
    if let down @ 1.. = setup.param("down_ms") {
        sim.schedule(Time::from_secs(5), Fault::custom("crash-after-prepare", down));
        sim.schedule(Time::from_secs(15), Fault::custom("crash-mid-commit", down));
    }
    sim.check("atomicity", |w| {
        let Some(p) = w.touched.filter(|&p| p != COORD) else { return Ok(()) };
        let Some((tx, commit, _)) = w.node::<Participant>(p).rm.last().filter(|l| l.2 == w.now) else { return Ok(()) };
        let Some((q, _)) = w.all::<Participant>().find(|(_, q)| q.rm.outcome(tx) == Some(!commit)) else {
            return Ok(());
        };
        let (c, a) = if commit { (p, q) } else { (q, p) };
        Err(format!("tx {tx} committed at participant {c} and aborted at participant {a}"))
    });
    sim.check("locks-released", |w| {
        let bound = 2 * MICROS_PER_S + 2 * w.param("ask_ms") as Micros * MICROS_PER_MS;
        // Down, a wait is the crash's; presumed abort answers for what it began (orphans are an operator's).
        let c = w.node::<Coordinator>(COORD);
        let (back, from) = (c.back_at, c.rounds.presumes_from().unwrap_or(0));
        for (p, part) in w.all::<Participant>().filter(|&(p, _)| w.is_up(p) && w.is_up(COORD)) {
            let Some((tx, d)) = part.rm.oldest(from) else { continue };
            if w.now.since(d.since_truth.max(back).max(part.back_at)) > bound {
                let s = w.now.since(d.since_truth) as f64 / MICROS_PER_S as f64;
                return Err(format!("participant {p} has held row {} locked in doubt on tx {tx} for {s:.1} s", d.row));
            }
        }
        Ok(())
    });
    Box::new(sim)
}
impl Node for Tpc {
    type Msg = Msg;
    type Timer = Timer;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Tpc::Coordinator(c) => {
                c.back_at = ctx.truth(); // and the rate in force: a change made while down is read now
                c.arrivals.start_at(ctx.param("tx_per_s") as f64, ctx, Timer::Arrive);
                // Recovery: every commit record not yet ended is sent again, to every participant.
                for tx in c.rounds.recover() {
                    ctx.note(format!("recovery: tx {tx} committed (logged), sending it again"));
                    c.tell(tx, ctx);
                }
            }
            Tpc::Participant(p) => {
                p.back_at = ctx.truth(); // back from a crash: its prepared transactions are in its log; ask
                for (tx, _) in p.rm.in_doubt() {
                    ctx.set_timer(ctx.param_ms("ask_ms"), Timer::Doubt(tx));
                }
            }
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Tpc::Coordinator(c), Msg::Vote(tx, yes)) => {
                if let Some((commit, call)) = c.rounds.vote(tx, from, yes) {
                    c.calls.reply(call, ctx);
                    c.decided(tx, commit, ctx);
                }
            }
            (Tpc::Coordinator(c), Msg::Ack(tx)) => {
                if let Some(call) = c.rounds.ack(tx, from) {
                    c.calls.cancel(call, ctx);
                }
            }
            (Tpc::Coordinator(c), Msg::Ask(tx)) => {
                // Pending: it will ask again. Unknown (forgotten): it may have committed somewhere.
                let answer = c.rounds.answer(tx);
                ctx.count("presumed", (answer == Answer::Presumed) as i64);
                ctx.count("unanswered", (answer == Answer::Unknown) as i64);
                if let Some(commit) = answer.tells() {
                    ctx.send(from, Msg::Decision(tx, commit));
                }
            }
            (Tpc::Participant(p), Msg::Prepare(tx, row)) => p.prepare(tx, row, ctx),
            (Tpc::Participant(p), Msg::Decision(tx, commit)) => {
                match p.rm.outcome(tx) {
                    // Told commit after aborting alone, the row long released: XA's heuristic outcome.
                    Some(mine) => ctx.count("heuristic", (mine != commit) as i64),
                    // In doubt — or an abort of a transaction not prepared here (prepare lost or being forced).
                    None => p.decide(tx, commit, ctx),
                }
                ctx.send(COORD, Msg::Ack(tx));
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Tpc::Coordinator(c), Timer::Arrive) => c.begin(ctx),
            (Tpc::Coordinator(c), Timer::Call(call)) => match c.calls.timeout(call) {
                Some(tx) if matches!(c.rounds.round(tx).map(|r| r.phase), Some(Phase::Voting(_))) => {
                    ctx.count("vote_timeouts", 1);
                    c.decided(tx, false, ctx);
                }
                Some(tx) => c.tell(tx, ctx),
                None => {}
            },
            (Tpc::Coordinator(c), Timer::Forced) => {
                let (done, again) = c.rounds.synced();
                if again {
                    ctx.set_timer(fsync(ctx), Timer::Forced);
                }
                done.into_iter().for_each(|tx| c.tell(tx, ctx));
            }
            (Tpc::Participant(p), Timer::Prepared) => {
                // Durable: vote yes, and from now on wait for the decision (unless aborted meanwhile).
                let (done, again) = p.rm.synced(ctx.now(), ctx.truth());
                if again {
                    ctx.set_timer(fsync(ctx), Timer::Prepared);
                }
                let wake = commit::Participant::next_wake(0, ctx.param_ms("ask_ms"), p.give_up(ctx));
                for tx in done {
                    ctx.count("in_doubt", 1);
                    ctx.send(COORD, Msg::Vote(tx, true));
                    ctx.set_timer(wake, Timer::Doubt(tx));
                }
            }
            (Tpc::Participant(p), Timer::Doubt(tx)) => p.doubt(tx, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // Memory is gone (rounds, calls, an unsynced commit record, the armed fault); the log stays.
            Tpc::Coordinator(c) => {
                c.rounds.crash();
                c.calls.clear(ctx);
                c.armed = None;
            }
            Tpc::Participant(p) => p.rm.crash(),
        }
    }
    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Tpc::Coordinator(c), Control::Strategy(id)) => {
                c.rounds.set_presume(Strategy::from_id(id) == Strategy::PresumedAbort)
            }
            (Tpc::Participant(p), Control::Strategy(id)) => p.timeout = Strategy::from_id(id) == Strategy::Timeout,
            (Tpc::Coordinator(c), Control::Custom { id, value }) => c.armed = Some((id, value)),
            (Tpc::Coordinator(c), Control::Param { id: "tx_per_s", value }) => {
                c.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            // The coordinator faults are not the participants'; other parameters are read when used.
            (_, Control::Custom { .. } | Control::Param { .. }) => {}
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Tpc::Coordinator(c) => NodeView::new(NodeKind::Service, 0, "coordinator")
                .gauge("transactions in flight", c.rounds.in_flight() as i64, 50)
                .badge_if(c.rounds.presumes(), format!("log: {} commit records", c.rounds.logged()), Tone::Good)
                .badge_if(c.armed.is_some(), "about to crash", Tone::Warn),
            Tpc::Participant(p) => {
                let doubt = p.rm.in_doubt().count();
                NodeView::new(NodeKind::Database, 1, numbered("participant", p.index as u64 + 1))
                    .gauge("rows locked", p.rm.locked() as i64, 20)
                    .badge_if(doubt > 0, format!("{doubt} in doubt, rows locked"), Tone::Warn)
                    .badge_if(p.timeout, "aborts alone on timeout", Tone::Neutral)
            }
        }
    }
}
impl Coordinator {
    fn begin(&mut self, ctx: &mut Ctx<Tpc>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let timeout = ctx.param_ms("vote_timeout_ms");
        let call = self.calls.start(ctx, self.rounds.next_tx(), timeout, Timer::Call);
        let (tx, rows) = (self.rounds.begin(call), ctx.param("rows") as u64);
        for p in 1..=self.rounds.participants() {
            let row = ctx.rng().below(rows) as u32;
            ctx.send(p, Msg::Prepare(tx, row));
        }
        if let Some(("crash-after-prepare", down)) = self.armed {
            self.armed = None;
            ctx.note(format!("crash right after sending tx {tx}'s prepares"));
            ctx.crash(Some(down.max(1) as Micros * MICROS_PER_MS));
        }
    }
    fn decided(&mut self, tx: u64, commit: bool, ctx: &mut Ctx<Tpc>) {
        ctx.count(if commit { "committed" } else { "aborted" }, 1);
        self.rounds.decide(tx, commit);
        // Presumed abort forces the commit record before anyone hears "commit".
        match self.rounds.force(tx) {
            Some(true) => drop(ctx.set_timer(fsync(ctx), Timer::Forced)),
            Some(false) => {} // it shares the fsync under way, or the next
            None => self.tell(tx, ctx),
        }
    }
    /// Sends the decision to every participant that has not acknowledged it; resends later.
    fn tell(&mut self, tx: u64, ctx: &mut Ctx<Tpc>) {
        let Some((commit, mut to, resend)) = self.rounds.to_tell(tx) else { return };
        if resend {
            let call = self.calls.start(ctx, tx, ctx.param_ms("resend_ms"), Timer::Call);
            self.rounds.set_call(tx, call);
        }
        // The mid-commit crash hits a commit's first sending (a resend may go to one alone).
        if let Some(("crash-mid-commit", down)) =
            self.armed.filter(|_| commit && to.len() == self.rounds.participants() as usize)
        {
            to.truncate(1);
            self.armed = None;
            ctx.note(format!("crash after sending tx {tx}'s commit to participant 1 only"));
            ctx.crash(Some(down.max(1) as Micros * MICROS_PER_MS));
        }
        for p in to {
            ctx.send(p, Msg::Decision(tx, commit));
        }
    }
}
impl Participant {
    fn prepare(&mut self, tx: u64, row: u32, ctx: &mut Ctx<Tpc>) {
        // A participant may abort alone until it votes yes: it refuses some, and (no-wait) a busy row.
        let p_no = Ppm::from_percent(ctx.param("no_vote_pct") as u32);
        match self.rm.prepare(tx, row, ctx.rng().chance(p_no)) {
            Prepare::Known | Prepare::Locked(false) => {}
            Prepare::Locked(true) => drop(ctx.set_timer(fsync(ctx), Timer::Prepared)),
            Prepare::No => self.vote_no(tx, ctx),
        }
    }
    fn vote_no(&mut self, tx: u64, ctx: &mut Ctx<Tpc>) {
        ctx.count("no_votes", 1);
        self.rm.decide(tx, false, ctx.truth());
        ctx.send(COORD, Msg::Vote(tx, false));
    }
    /// `2pc-timeout`: how long in doubt before aborting alone.
    fn give_up(&self, ctx: &Ctx<Tpc>) -> Option<Micros> {
        self.timeout.then(|| ctx.param_ms("doubt_timeout_ms"))
    }
    fn doubt(&mut self, tx: u64, ctx: &mut Ctx<Tpc>) {
        match self.rm.wake(tx, ctx.now(), ctx.param_ms("ask_ms"), self.give_up(ctx)) {
            Wake::Gone => {}
            Wake::Ask { blocked, next } => {
                ctx.count("blocked_us", blocked as i64);
                ctx.send(COORD, Msg::Ask(tx));
                ctx.set_timer(next, Timer::Doubt(tx));
            }
            Wake::GiveUp { blocked } => {
                ctx.count("blocked_us", blocked as i64);
                ctx.count("unilateral", 1);
                ctx.note(format!("tx {tx}: in doubt too long, aborting alone"));
                self.decide(tx, false, ctx);
            }
        }
    }
    /// Decides here; ending a doubt, observes the time in doubt.
    fn decide(&mut self, tx: u64, commit: bool, ctx: &mut Ctx<Tpc>) {
        let Some(d) = self.rm.decide(tx, commit, ctx.truth()) else { return };
        let now = ctx.now();
        ctx.count("in_doubt", -1);
        ctx.count("blocked_us", now.since(d.counted) as i64);
        ctx.observe("in_doubt_us", now.since(d.since));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("two-phase-commit", strategy, seed)
    }

    /// Runs `recipe` to `until` (default: the scenario's length); no event may go unhandled.
    fn run(recipe: &Recipe, until: Option<Time>) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        let until = until.unwrap_or(Time(SPEC.default_until));
        while run.next_event_time().is_some_and(|n| n <= until) {
            run.step();
        }
        assert_eq!(run.unhandled(), 0);
        run
    }

    /// When check `id` first failed (true time), if it did.
    fn broke(run: &dyn Run, id: &str) -> Option<Time> {
        run.checks().iter().find(|c| c.id == id).and_then(|c| c.violation.as_ref().map(|v| v.at))
    }

    fn count(run: &dyn Run, name: &str) -> i64 {
        run.metrics().counter(name)
    }

    fn doubt_max(run: &dyn Run) -> Micros {
        run.metrics().histogram("in_doubt_us").map_or(0, |h| h.max())
    }

    #[test]
    fn try_2pc_blocks_forever_after_the_crash_but_stays_atomic() {
        for seed in 1..=10 {
            let r = run(&recipe("2pc", seed), None);
            let at = broke(r.as_ref(), "locks-released").unwrap_or_else(|| panic!("seed {seed}: nothing blocked"));
            // Back at 8 s, then the bound (2 s + two asks of 250 ms) must pass first.
            assert!(at > Time::from_secs(10) && at < Time::from_secs(11), "seed {seed}: blocked at {at:?}");
            let band = r.checks().iter().find(|c| c.id == "locks-released").unwrap().bands.last().copied();
            assert!(band.is_some_and(|b| b.to.is_none()), "seed {seed}: the blocked locks were released");
            assert_eq!(broke(r.as_ref(), "atomicity"), None, "seed {seed}");
            assert!(count(r.as_ref(), "in_doubt") >= 2 && count(r.as_ref(), "unanswered") > 0, "seed {seed}");
        }
    }

    /// Whether `atomicity` failed between `from_s` and `to_s` seconds.
    fn split(r: &dyn Run, from_s: u64, to_s: u64) -> bool {
        let bands = &r.checks().iter().find(|c| c.id == "atomicity").unwrap().bands;
        bands.iter().any(|b| b.from >= Time::from_secs(from_s) && b.from <= Time::from_secs(to_s))
    }

    #[test]
    fn try_timeout_unblocks_but_splits_the_mid_commit_transaction() {
        for seed in 1..=10 {
            let r = run(&recipe("2pc-timeout", seed), None);
            // The crash at 15 s, the timeout about 1 s later (a vote just before 15 s counts from then).
            assert!(split(r.as_ref(), 15, 17), "seed {seed}: atomicity held after the mid-commit crash");
            assert_eq!(broke(r.as_ref(), "locks-released"), None, "seed {seed}");
            assert!(count(r.as_ref(), "unilateral") >= 2, "seed {seed}");
        }
    }

    #[test]
    fn try_a_longer_timeout_outlasts_the_crash_and_still_splits() {
        for seed in 1..=10 {
            let r = run(&recipe("2pc-timeout", seed).with_param("doubt_timeout_ms", 5000), None);
            // Back at 18 s, yet the in-doubt participants still give up at 20 s.
            assert!(split(r.as_ref(), 19, 21), "seed {seed}: atomicity held with a 5 s timeout");
            // The coordinator was back at 18 s, asked and silent: the commit came from nowhere.
            assert!(count(r.as_ref(), "unanswered") > 0, "seed {seed}");
        }
    }

    #[test]
    fn try_presumed_abort_holds_and_unblocks_soon_after_the_restart() {
        for seed in 1..=10 {
            let r = run(&recipe("presumed-abort", seed), None);
            assert_eq!(broke(r.as_ref(), "atomicity"), None, "seed {seed}");
            assert_eq!(broke(r.as_ref(), "locks-released"), None, "seed {seed}");
            // In doubt at most the 3 s the coordinator was down, plus an ask or two.
            let max = doubt_max(r.as_ref());
            assert!(max > 2_900_000 && max < 3_800_000, "seed {seed}: longest in doubt {max} µs");
            assert!(count(r.as_ref(), "presumed") > 0, "seed {seed}: nobody was told abort by presumption");
        }
    }

    #[test]
    fn without_a_crash_plain_2pc_is_safe_and_live_even_on_a_lossy_network() {
        for (st, seed) in [("2pc", 1), ("2pc", 2), ("presumed-abort", 1), ("presumed-abort", 2)] {
            let r = run(&recipe(st, seed).with_param("down_ms", 0).with_param("loss_pct", 10), None);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "{st} seed {seed}");
            assert!(count(r.as_ref(), "vote_timeouts") > 0, "{st} seed {seed}: no vote lost");
        }
    }

    #[test]
    fn presumed_abort_survives_heavy_loss_across_its_crashes() {
        for seed in 1..=10 {
            let r = run(&recipe("presumed-abort", seed).with_param("loss_pct", 20), None);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
        }
    }

    #[test]
    fn a_commit_needs_every_yes_vote() {
        // Without conflicts (100,000 rows), loss or crashes, a transaction commits when all n
        // participants vote yes: (1 − p)ⁿ, 0.857 for p = 5%, n = 3. Five 30 s runs give ~3,000
        // transactions, a binomial σ of 0.0064: the tolerance 0.03 is over 4σ.
        let (mut committed, mut all) = (0, 0);
        for seed in 1..=5 {
            let quiet = recipe("presumed-abort", seed).with_param("down_ms", 0).with_param("loss_pct", 0);
            let r = run(&quiet.with_param("rows", 100_000), None);
            committed += count(r.as_ref(), "committed");
            all += count(r.as_ref(), "committed") + count(r.as_ref(), "aborted");
        }
        let share = committed as f64 / all as f64;
        assert!((share - libm::pow(0.95, 3.0)).abs() < 0.03, "committed share {share:.3} of {all}");
    }

    #[test]
    fn a_live_switch_to_presumed_abort_never_presumes_an_older_transaction() {
        // Switched at 16 s, after the mid-commit crash of plain 2PC: the restarted coordinator must
        // not answer abort for the transaction it committed at participant 1 before the switch.
        for seed in 1..=10 {
            let switch = ActionKind::SetStrategy { id: "presumed-abort".to_string() };
            let r = run(&recipe("2pc", seed).with_action(Time::from_secs(16), switch), None);
            assert_eq!(broke(r.as_ref(), "atomicity"), None, "seed {seed}");
            // Plain 2PC's orphans stay in doubt (nothing can safely decide them), but presumed
            // abort's promise covers what it began: the liveness check holds again.
            let band = r.checks().iter().find(|c| c.id == "locks-released").unwrap().bands.last().copied();
            assert!(band.is_some_and(|b| b.to.is_some()) && count(r.as_ref(), "in_doubt") > 0, "seed {seed}");
        }
    }
}
