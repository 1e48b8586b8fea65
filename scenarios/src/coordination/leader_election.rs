//! Leader election with leases: nodes contend for a lease in a lock store, and whoever
//! holds it writes to a storage service. A pause, a partition or a drifting clock lets an
//! old leader write after a new one — unless every write carries a fencing token that
//! storage checks.

use crate::parts::degraded::FaultWindow;
use crate::parts::lease::{Acquired, Lease, LeaseTable, Margin};
use faultline_core::*;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "leader-election",
        title: "Leader election and fencing",
        category: "Coordination",
        seeds: &["S1-P#5", "S0#1"],
        summary: "A leader pauses longer than its lease, then is cut off from the lock store while its clock runs \
                  slow. Without fencing, storage accepts its late writes after the new leader's; with a fencing \
                  token, storage refuses them.",
        note: Note {
            what_can_go_wrong: "A lease says who *should* lead, not who *thinks* it leads. A process that stalls \
                (GC, swap, a slow disk) between checking its lease and writing, or whose clock runs slow, keeps \
                acting as leader after the lock store gave the lease to someone else: two leaders write, and the \
                older one's writes land last. The model: the lock store and storage keep their state through a \
                crash, links take 1–10 ms, and a holder counts its lease from when it asked and gives it up a tenth \
                early — enough for a clock up to 10% slow; the default drift fault makes it 30% slow.",
            what_you_sacrifice: "Fencing needs the storage to take part: every write carries the token and storage \
                must remember the highest it has seen and refuse older ones. Leases also cost availability: after \
                a leader dies nobody may lead until its lease runs out (failover is timed from the old leader's \
                last renewal to the next grant).",
            at_10x: "Ten times the nodes contend harder at every expiry; shorter leases for faster failover mean \
                more renewals and more false failovers on a slow network; storage spread over many shards must \
                check tokens on every shard.",
            resembles: "ZooKeeper/etcd/Consul sessions and leases, Chubby sequencers, Kafka controller epochs, \
                HDFS NameNode fencing, Martin Kleppmann's 'How to do distributed locking'.",
            try_this: &[
                "Play `lease`: at 6 s the leader pauses past its lease; from 12 s its clock runs slow, and at \
                 14–20 s it is cut off from the lock store — storage accepts writes from the old leadership and \
                 `no-stale-write` fails.",
                "Switch to `lease-fencing`: the same writes arrive, storage refuses them (stale writes refused) and \
                 the check holds.",
                "Shorten the lease to 1 s, renewing every 300 ms: failover gets faster, but the paused leader now \
                 overlaps its successor longer — 'Nodes that believe they lead' stays at 2 for longer.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("nodes", "Contenders", "", 2..=9, 3, "Nodes competing for leadership."),
        ParamSpec::live("lease_ms", "Lease", "ms", 100..=60_000, 3000, "How long a grant lasts without renewal.")
            .step(100),
        ParamSpec::live("renew_ms", "Renew every", "ms", 50..=30_000, 1000, "How often the leader renews its lease.")
            .step(50),
        ParamSpec::live("retry_ms", "Retry every", "ms", 50..=30_000, 500, "How often a follower asks (plus jitter).")
            .step(50),
        ParamSpec::live("write_ms", "Write every", "ms", 10..=10_000, 200, "How often the leader writes to storage.")
            .step(10),
        ParamSpec::live("work_ms", "Work per write", "ms", 1..=5000, 80, "Between the lease check and the write."),
        ParamSpec::setup("pause_ms", "Leader pause", "ms", 0..=60_000, 4000, "Stop-the-world at 6 s (0: none).")
            .step(100),
        ParamSpec::setup(
            "drift_ppm",
            "Leader clock drift",
            "ppm",
            -500_000..=500_000,
            -300_000,
            "Its clock's rate error from 12 s (negative runs slow).",
        )
        .step(1000),
    ],
    strategies: &[
        StrategySpec::naive("lease", "Lease, no fencing", "Storage accepts any write from whoever believes it leads."),
        StrategySpec::fixed("lease-fencing", "Lease + fencing token", "Storage refuses writes with an outdated token."),
    ],
    faults: &[
        FaultSpec::global("pause-leader", "Pause the leader", "Whoever leads stalls right after its next lease check.")
            .value("ms", 100..=60_000, 4000),
        FaultSpec::global(
            "isolate-leader",
            "Cut the leader from the lock store",
            "Whoever leads now can no longer reach the lock store (heal to undo).",
        ),
        FaultSpec::global("drift-leader", "Drift the leader's clock", "Whoever leads gets this drift (< 0: slow).")
            .value("ppm", -500_000..=500_000, -300_000),
        FaultSpec::global("crash-leader", "Crash the leader", "Whoever leads crashes; it restarts after this long.")
            .value("restart after ms", 0..=60_000, 2000),
    ],
    checks: &[CheckSpec::new(
        "no-stale-write",
        "No write from an older leadership",
        "Storage never accepts a write carrying an older lease token than one it already accepted.",
    )],
    metrics: &[
        MetricSpec::new("believers", "Nodes that believe they lead", "", Measure::Count("believers")),
        MetricSpec::new("stale_accepted", "Stale writes accepted", "", Measure::Count("stale_accepted")),
        MetricSpec::new("stale_rejected", "Stale writes refused", "", Measure::Count("stale_rejected")),
        MetricSpec::new("leaderless", "Time without a lease holder (total)", "us", Measure::Count("leaderless_us")),
        MetricSpec::new("failover", "Failover time (max)", "us", Measure::Quantile("failover_us", 1.0)),
        MetricSpec::new("writes", "Writes accepted", "writes/s", Measure::Rate("writes")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

const LOCKS: NodeId = 0;
const STORAGE: NodeId = 1;
const FIRST: NodeId = 2;

/// A holder gives its lease up a tenth early: that covers a clock up to 10% slow and no
/// slower — the drift fault's 30% is beyond it, on purpose.
const MARGIN: Margin = Margin::new(100_000, 0);

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Acquire { ask: u64 },
    Renew { token: u64, ask: u64 },
    Granted { ask: u64, token: u64, lease: Micros },
    Denied { ask: u64 },
    Write { token: u64 },
    Ack,
    Refused,
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Ask,
    LeaseExpiry,
    WriteTick,
    SendWrite { token: u64 },
}

#[derive(Clone, Debug, Holds)]
pub enum Le {
    Locks(Locks),
    Storage(Storage),
    Contender(Contender),
}

#[derive(Clone, Debug)]
pub struct Locks {
    table: LeaseTable<(), NodeId>,
    /// The latest grant or renewal: to whom, its token, when. The old leader was last heard
    /// from then, so a failover is timed from it.
    latest: Option<(NodeId, u64, Time)>,
}

#[derive(Clone, Debug)]
pub struct Storage {
    fencing: bool,
    /// The highest lease token of any write accepted.
    highest: u64,
    /// The latest write accepted after one with a newer token: its token, that newer one, and
    /// when (true time). The check fails at each: its bands show when stale writes landed.
    last_stale: Option<(u64, u64, Time)>,
}

#[derive(Clone, Debug)]
pub struct Contender {
    index: u32,
    /// The lease as this node believes it: counted from its ask, on its own clock.
    lease: Lease,
    /// While it believes it leads: its token, and the timer that ends the belief.
    leading: Option<(u64, TimerId)>,
    /// A stop-the-world pause that will hit between the next lease check and its write.
    pause_next_write: Option<Micros>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Le> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 10_000 }));
    assert_eq!(sim.add_node(Le::Locks(Locks { table: LeaseTable::new(), latest: None })), LOCKS);
    let fencing = setup.strategy() == "lease-fencing";
    assert_eq!(sim.add_node(Le::Storage(Storage { fencing, highest: 0, last_stale: None })), STORAGE);
    for index in 0..setup.param("nodes") as u32 {
        let lease = Lease::new(MARGIN);
        sim.add_node(Le::Contender(Contender { index, lease, leading: None, pause_next_write: None }));
    }
    // The plan: a pause past the lease mid-write; a slow clock, then a cut from the lock store
    // while it runs slow; the last leader crashes. Each hits whoever leads at that moment.
    if setup.param("pause_ms") > 0 {
        sim.schedule(Time::from_secs(6), Fault::custom("pause-leader", setup.param("pause_ms")));
    }
    sim.schedule(Time::from_secs(12), Fault::custom("drift-leader", setup.param("drift_ppm")));
    FaultWindow::secs(14, 6).schedule(&mut sim, Fault::custom("isolate-leader", 0), Fault::Heal);
    sim.schedule(Time::from_secs(24), Fault::custom("crash-leader", 2000));
    sim.check("no-stale-write", |w| match w.node::<Storage>(STORAGE).last_stale {
        Some((token, newer, at)) if at == w.now => Err(format!("storage accepted token {token} after {newer}")),
        _ => Ok(()),
    });
    Box::new(sim)
}

impl Node for Le {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Le::Contender(_) = self {
            let jitter = ctx.rng().range(0, 50 * MICROS_PER_MS);
            ctx.set_timer(jitter, Timer::Ask);
            ctx.set_timer(ms(ctx.param("write_ms")), Timer::WriteTick);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Le::Locks(l), Msg::Acquire { ask }) => l.acquire(from, ask, ctx),
            (Le::Locks(l), Msg::Renew { token, ask }) => l.renew(from, token, ask, ctx),
            (Le::Storage(s), Msg::Write { token }) => s.write(from, token, ctx),
            (Le::Contender(c), Msg::Granted { ask, token, lease }) => {
                c.lease.granted(ask, token, lease, ctx.now());
                c.follow_lease(ctx)
            }
            (Le::Contender(c), Msg::Denied { ask }) => {
                c.lease.denied(ask);
                c.follow_lease(ctx)
            }
            // Storage's answer changes nothing: a leader learns it lost the lease from the lock
            // store, and a fenced-off one must not be trusted to notice anyway.
            (Le::Contender(_), Msg::Ack | Msg::Refused) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match self {
            Le::Contender(c) => c.on_timer(timer, ctx),
            _ => ctx.unhandled(&timer),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Le::Contender(c) = self {
            // A restarted node holds nothing: its lease, like its timers and a pending pause, died
            // with it (its ask numbers go on, so no answer to an old ask passes for a new one).
            if c.leading.take().is_some() {
                ctx.count("believers", -1);
            }
            c.lease.release();
            c.pause_next_write = None;
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            // The leader faults hit whoever believes it leads now: one node, or two.
            (Le::Contender(c), Control::Custom { id, value }) if c.leading.is_some() => {
                let me = ctx.me();
                match id {
                    "pause-leader" => c.pause_next_write = Some(ms(value)),
                    "drift-leader" => ctx.inflict(Fault::ClockDrift { node: me, ppm: value as i32 }),
                    "isolate-leader" => {
                        ctx.inflict(Fault::Partition { a: vec![me], b: Some(vec![LOCKS]), one_way: false })
                    }
                    "crash-leader" => ctx.crash(Some(ms(value.max(1)))),
                    other => unreachable!("leader-election declares no fault `{other}`"),
                }
            }
            (Le::Storage(s), Control::Strategy(id)) => s.fencing = id == "lease-fencing",
            // Followers are not the leader faults' target; live parameters are read (`ctx.param`)
            // when used; the strategy is storage's alone.
            (_, Control::Custom { .. } | Control::Param { .. } | Control::Strategy(_)) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Le::Locks(l) => {
                let v = NodeView::new(NodeKind::Lock, 1, "lock store");
                match l.latest {
                    Some((h, token, _)) => v.badge(format!("lease: node {} (token {token})", h - FIRST), Tone::Neutral),
                    None => v.badge("lease free", Tone::Warn),
                }
            }
            Le::Storage(s) => NodeView::new(NodeKind::Database, 2, "storage")
                .badge(format!("highest token {}", s.highest), Tone::Neutral)
                .badge_if(s.fencing, "fencing", Tone::Good),
            Le::Contender(c) => {
                let v = NodeView::new(NodeKind::Service, 0, numbered("node", c.index as u64));
                match c.leading {
                    Some((token, _)) => v.badge(format!("leader (token {token})"), Tone::Good),
                    None => v,
                }
            }
        }
    }
}

impl Locks {
    fn acquire(&mut self, from: NodeId, ask: u64, ctx: &mut Ctx<Le>) {
        let (now, lease) = (ctx.now(), ms(ctx.param("lease_ms")));
        let token = match self.table.acquire((), from, now, lease) {
            Acquired::Busy { .. } => return ctx.send(from, Msg::Denied { ask }),
            Acquired::Extended { token, .. } => token,
            Acquired::New { token, vacant_since, .. } => {
                // Nobody held the lease from the old one's expiry (or the start) until now.
                ctx.count("leaderless_us", now.since(vacant_since.unwrap_or(Time::ZERO)) as i64);
                if let Some((_, _, heard)) = self.latest {
                    ctx.observe("failover_us", now.since(heard));
                }
                ctx.note(format!("lease granted to node {} with token {token}", from - FIRST));
                token
            }
        };
        self.latest = Some((from, token, now));
        ctx.send(from, Msg::Granted { ask, token, lease });
    }

    fn renew(&mut self, from: NodeId, token: u64, ask: u64, ctx: &mut Ctx<Le>) {
        let (now, lease) = (ctx.now(), ms(ctx.param("lease_ms")));
        match self.table.renew(&(), &from, token, now, lease) {
            Some(_) => {
                self.latest = Some((from, token, now));
                ctx.send(from, Msg::Granted { ask, token, lease });
            }
            None => ctx.send(from, Msg::Denied { ask }),
        }
    }
}

impl Storage {
    fn write(&mut self, from: NodeId, token: u64, ctx: &mut Ctx<Le>) {
        if token < self.highest {
            if self.fencing {
                ctx.count("stale_rejected", 1);
                ctx.note(format!("refused a write with token {token} (highest {})", self.highest));
                return ctx.send(from, Msg::Refused);
            }
            ctx.count("stale_accepted", 1);
            ctx.note(format!("accepted a stale write with token {token} after token {}", self.highest));
            self.last_stale = Some((token, self.highest, ctx.truth()));
        }
        self.highest = self.highest.max(token);
        ctx.count("writes", 1);
        ctx.send(from, Msg::Ack);
    }
}

impl Contender {
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Le>) {
        match timer {
            // A leader renews every `renew_ms`; a follower asks for the lease every `retry_ms`
            // plus jitter, so that followers do not all ask at the same instant.
            Timer::Ask => {
                let ask = self.lease.ask(ctx.now());
                let next = match self.leading {
                    Some((token, _)) => {
                        ctx.send(LOCKS, Msg::Renew { token, ask });
                        ms(ctx.param("renew_ms"))
                    }
                    None => {
                        ctx.send(LOCKS, Msg::Acquire { ask });
                        let retry = ms(ctx.param("retry_ms"));
                        retry + ctx.rng().range(0, retry / 2)
                    }
                };
                ctx.set_timer(next, Timer::Ask);
            }
            Timer::LeaseExpiry => self.step_down(ctx),
            Timer::WriteTick => {
                // Check the lease, then do the work, then write: a pause in between is the danger.
                if let Some(token) = self.lease.token(ctx.now()) {
                    ctx.set_timer(ms(ctx.param("work_ms")), Timer::SendWrite { token });
                    if let Some(dur) = self.pause_next_write.take() {
                        ctx.inflict(Fault::Pause { node: ctx.me(), dur });
                    }
                }
                ctx.set_timer(ms(ctx.param("write_ms")), Timer::WriteTick);
            }
            // The write goes out with the token checked before the work, however long ago that was.
            Timer::SendWrite { token } => ctx.send(STORAGE, Msg::Write { token }),
        }
    }

    /// After each answer from the lock store: lead while the lease holds (until its new end),
    /// step down once it does not (denied, or granted too late to count).
    fn follow_lease(&mut self, ctx: &mut Ctx<Le>) {
        let Some(token) = self.lease.token(ctx.now()) else { return self.step_down(ctx) };
        match self.leading.take() {
            Some((_, expiry)) => ctx.cancel_timer(expiry),
            None => ctx.count("believers", 1),
        }
        // Counted from when we asked, on our own clock: if that clock runs slow, we believe
        // too long — which is exactly what fencing protects against.
        let expiry = ctx.set_timer(self.lease.remaining(ctx.now()), Timer::LeaseExpiry);
        self.leading = Some((token, expiry));
    }

    fn step_down(&mut self, ctx: &mut Ctx<Le>) {
        if let Some((_, expiry)) = self.leading.take() {
            ctx.cancel_timer(expiry);
            ctx.count("believers", -1);
            ctx.note("lease over: stepping down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("leader-election", strategy, seed)
    }

    /// Runs `recipe` to `until` event by event; returns the run and how long (true time) two
    /// or more nodes believed they led at once.
    fn run(recipe: &Recipe, until: Time) -> (Box<dyn Run>, Micros) {
        let (mut run, problems) = open(&SPEC, recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        let (mut both, mut t) = (0, Time::ZERO);
        while let Some(next) = run.next_event_time().filter(|&n| n <= until) {
            if run.metrics().counter("believers") >= 2 {
                both += next.since(t);
            }
            t = t.max(next);
            run.step();
        }
        assert_eq!(run.unhandled(), 0);
        (run, both)
    }

    fn stale(run: &dyn Run, which: &str) -> i64 {
        run.metrics().counter(which)
    }

    #[test]
    fn try_lease_the_old_leadership_writes_after_the_pause_and_while_cut_off() {
        for seed in 1..=10 {
            let (r, _) = run(&recipe("lease", seed), Time::from_secs(11));
            let after_pause = stale(r.as_ref(), "stale_accepted");
            assert!(after_pause >= 1, "seed {seed}: the paused leader's write was not accepted late");
            let (r, _) = run(&recipe("lease", seed), Time::from_secs(21));
            let cut_off = stale(r.as_ref(), "stale_accepted") - after_pause;
            assert!(cut_off >= 1, "seed {seed}: the slow, cut-off leader wrote nothing stale");
            assert!(r.checks()[0].violation.is_some(), "seed {seed}: no-stale-write held");
        }
    }

    #[test]
    fn try_fencing_the_same_writes_arrive_and_are_refused() {
        for seed in 1..=10 {
            let (naive, _) = run(&recipe("lease", seed), Time(SPEC.default_until));
            let (fenced, _) = run(&recipe("lease-fencing", seed), Time(SPEC.default_until));
            // Contenders ignore storage's answers, so both runs send the very same writes.
            let accepted = stale(naive.as_ref(), "stale_accepted");
            assert!(accepted > 0 && stale(fenced.as_ref(), "stale_rejected") == accepted, "seed {seed}");
            assert_eq!(stale(fenced.as_ref(), "stale_accepted"), 0);
            assert!(fenced.checks()[0].violation.is_none(), "seed {seed}");
        }
    }

    #[test]
    fn try_a_shorter_lease_fails_over_faster_but_two_believe_longer() {
        // Renewing inside the shorter lease: every 1 s, a 1 s lease would lapse between renewals.
        let failover = |r: &dyn Run| r.metrics().histogram("failover_us").map_or(0, |h| h.max());
        for seed in 1..=10 {
            let end = Time(SPEC.default_until);
            let (long, long_both) = run(&recipe("lease", seed), end);
            let (short, short_both) =
                run(&recipe("lease", seed).with_param("lease_ms", 1000).with_param("renew_ms", 300), end);
            let (l, s) = (failover(long.as_ref()), failover(short.as_ref()));
            assert!(s < l, "seed {seed}: failover {s} µs with a 1 s lease, {l} µs with 3 s");
            assert!(short_both > long_both, "seed {seed}: two believers {short_both} µs vs {long_both} µs");
        }
    }

    #[test]
    fn a_clock_the_margin_covers_never_overstays() {
        // The holder gives up a tenth early: a clock 5% slow still gives up before the lock
        // store's lease ends, so without the pause nothing stale happens even without fencing.
        for seed in 1..=10 {
            let r = recipe("lease", seed).with_param("pause_ms", 0).with_param("drift_ppm", -50_000);
            let (r, both) = run(&r, Time(SPEC.default_until));
            assert_eq!((both, stale(r.as_ref(), "stale_accepted")), (0, 0), "seed {seed}");
        }
    }
}
