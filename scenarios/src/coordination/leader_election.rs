//! Leader election with leases: nodes contend for a lease in a lock store, and whoever
//! holds it writes to a storage service. A pause, a partition or a drifting clock lets an
//! old leader write after a new one — unless every write carries a fencing token that
//! storage checks.

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
                older one's writes land last.",
            what_you_sacrifice: "Fencing needs the storage to take part: every write carries the token and storage \
                must remember the highest it has seen and refuse older ones. Leases also cost availability: after \
                a leader dies nobody may lead until its lease runs out.",
            at_10x: "Ten times the nodes contend harder at every expiry; shorter leases for faster failover mean \
                more renewals and more false failovers on a slow network; storage spread over many shards must \
                check tokens on every shard.",
            resembles: "ZooKeeper/etcd/Consul sessions and leases, Chubby sequencers, Kafka controller epochs, \
                HDFS NameNode fencing, Martin Kleppmann's 'How to do distributed locking'.",
            try_this: &[
                "Play `lease`: at 6 s the leader pauses past its lease; at 12–20 s its clock runs slow while it is cut \
                 off from the lock store — storage accepts writes from the old leadership and `no-stale-write` fails.",
                "Switch to `lease-fencing`: the same writes arrive, storage refuses them (stale writes rejected) and \
                 the check holds.",
                "Shorten the lease to 1 s: failover gets faster, but watch the time with two believers.",
            ],
        },
    },
    params: &[
        ParamSpec { id: "nodes", label: "Contenders", unit: "", min: 2, max: 9, step: 1, default: 3, live: false,
            help: "Nodes competing for leadership." },
        ParamSpec { id: "lease_ms", label: "Lease", unit: "ms", min: 100, max: 60_000, step: 100, default: 3000, live: true,
            help: "How long a granted lease lasts without renewal." },
        ParamSpec { id: "renew_ms", label: "Renew every", unit: "ms", min: 50, max: 30_000, step: 50, default: 1000, live: true,
            help: "How often the leader renews its lease." },
        ParamSpec { id: "retry_ms", label: "Retry every", unit: "ms", min: 50, max: 30_000, step: 50, default: 500, live: true,
            help: "How often a follower tries to take the lease (plus jitter)." },
        ParamSpec { id: "write_ms", label: "Write every", unit: "ms", min: 10, max: 10_000, step: 10, default: 200, live: true,
            help: "How often the leader writes to storage." },
        ParamSpec { id: "work_ms", label: "Work per write", unit: "ms", min: 1, max: 5000, step: 1, default: 80, live: true,
            help: "Time between checking the lease and sending the write (where a pause hurts)." },
        ParamSpec { id: "pause_ms", label: "Leader pause", unit: "ms", min: 0, max: 60_000, step: 100, default: 4000, live: false,
            help: "Scheduled fault at 6 s: the leader stops the world this long (0: none)." },
        ParamSpec { id: "drift_ppm", label: "Leader clock drift", unit: "ppm", min: -500_000, max: 500_000, step: 1000,
            default: -300_000, live: false, help: "Scheduled fault at 12 s: the leader's clock rate error (negative runs slow)." },
    ],
    strategies: &[
        StrategySpec { id: "lease", label: "Lease, no fencing", naive: true,
            help: "Storage accepts any write from a node that believes it leads." },
        StrategySpec { id: "lease-fencing", label: "Lease + fencing token", naive: false,
            help: "Each lease carries a token that grows; storage refuses a write whose token is older than one it has accepted." },
    ],
    faults: &[
        FaultSpec { id: "pause-leader", label: "Pause the leader", target: Target::Global, value_label: "ms",
            value_min: 100, value_max: 60_000, value_default: 4000,
            help: "Whoever leads stops the world this long, right after its next lease check (mid-write)." },
        FaultSpec { id: "isolate-leader", label: "Cut the leader from the lock store", target: Target::Global,
            value_label: "", value_min: 0, value_max: 0, value_default: 0,
            help: "Whoever leads now can no longer reach the lock store (heal to undo)." },
        FaultSpec { id: "drift-leader", label: "Drift the leader's clock", target: Target::Global, value_label: "ppm",
            value_min: -500_000, value_max: 500_000, value_default: -300_000,
            help: "Whoever leads now gets this clock rate error (negative runs slow: its leases last longer)." },
        FaultSpec { id: "crash-leader", label: "Crash the leader", target: Target::Global, value_label: "restart after ms",
            value_min: 0, value_max: 60_000, value_default: 2000, help: "Whoever leads now crashes; it restarts after this long." },
    ],
    checks: &[CheckSpec { id: "no-stale-write", label: "No write from an older leadership",
        help: "Storage never accepts a write carrying an older lease token than one it already accepted." }],
    metrics: &[
        MetricSpec { id: "believers", label: "Nodes that believe they lead", unit: "", measure: Measure::Count("believers") },
        MetricSpec { id: "stale_accepted", label: "Stale writes accepted", unit: "", measure: Measure::Count("stale_accepted") },
        MetricSpec { id: "stale_rejected", label: "Stale writes refused", unit: "", measure: Measure::Count("stale_rejected") },
        MetricSpec { id: "leaderless", label: "Time without a lease holder", unit: "us", measure: Measure::Count("leaderless_us") },
        MetricSpec { id: "failover", label: "Failover time (max)", unit: "us", measure: Measure::Quantile("failover_us", 1.0) },
        MetricSpec { id: "writes", label: "Writes accepted", unit: "writes/s", measure: Measure::Rate("writes") },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

const LOCKS: NodeId = 0;
const STORAGE: NodeId = 1;
const FIRST: NodeId = 2;

#[derive(Clone, Debug)]
pub enum Msg {
    Acquire,
    Renew { token: u64 },
    Granted { token: u64, lease: Micros },
    Denied,
    Write { token: u64, seq: u64 },
    Ack { ok: bool },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Acquire => "acquire",
            Msg::Renew { .. } => "renew",
            Msg::Granted { .. } => "granted",
            Msg::Denied => "denied",
            Msg::Write { .. } => "write",
            Msg::Ack { ok: true } => "ack",
            Msg::Ack { ok: false } => "refused",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    Try,
    Renew,
    Expire,
    WriteTick,
    Send { token: u64 },
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Try => "try",
            Timer::Renew => "renew",
            Timer::Expire => "lease-expiry",
            Timer::WriteTick => "write-tick",
            Timer::Send { .. } => "send-write",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Le {
    Locks(Locks),
    Storage(Storage),
    Node(Box<Contender>),
}

#[derive(Clone, Debug)]
pub struct Locks {
    lease: Micros,
    holder: Option<NodeId>,
    expires: Time,
    token: u64,
}

#[derive(Clone, Debug)]
pub struct Storage {
    fencing: bool,
    highest: u64,
    last_writer: Option<NodeId>,
}

#[derive(Clone, Debug)]
pub struct Contender {
    index: u32,
    renew: Micros,
    retry: Micros,
    write_every: Micros,
    work: Micros,
    /// Durable: survives a crash (the write sequence).
    seq: u64,
    /// The lease this node believes it holds: token and local expiry.
    holds: Option<(u64, Time)>,
    asked_at: Time,
    expiry_timer: Option<TimerId>,
    /// A stop-the-world pause that will hit between the next lease check and its write.
    pause_next_write: Option<Micros>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Le> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 10_000 }));
    let lease = setup.param("lease_ms") as u64 * MICROS_PER_MS;
    assert_eq!(sim.add_node(Le::Locks(Locks { lease, holder: None, expires: Time::ZERO, token: 0 })), LOCKS);
    let fencing = setup.strategy() == "lease-fencing";
    assert_eq!(sim.add_node(Le::Storage(Storage { fencing, highest: 0, last_writer: None })), STORAGE);
    for index in 0..setup.param("nodes") as u32 {
        sim.add_node(Le::Node(Box::new(Contender {
            index,
            renew: setup.param("renew_ms") as u64 * MICROS_PER_MS,
            retry: setup.param("retry_ms") as u64 * MICROS_PER_MS,
            write_every: setup.param("write_ms") as u64 * MICROS_PER_MS,
            work: setup.param("work_ms") as u64 * MICROS_PER_MS,
            seq: 0,
            holds: None,
            asked_at: Time::ZERO,
            expiry_timer: None,
            pause_next_write: None,
        })));
    }
    let leader = |id: &str, value| Fault::Custom { id: id.into(), node: None, value };
    if setup.param("pause_ms") > 0 {
        sim.schedule(Time::from_secs(6), leader("pause-leader", setup.param("pause_ms")));
    }
    sim.schedule(Time::from_secs(12), leader("drift-leader", setup.param("drift_ppm")));
    sim.schedule(Time::from_secs(14), leader("isolate-leader", 0));
    sim.schedule(Time::from_secs(20), Fault::Heal);
    sim.schedule(Time::from_secs(24), leader("crash-leader", 2000));
    sim.check("no-stale-write", |w| match w.metrics.counter("stale_accepted") {
        0 => Ok(()),
        n => Err(format!("storage accepted {n} write(s) carrying an older lease token than one it had accepted")),
    });
    Box::new(sim)
}

impl Node for Le {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Le::Node(c) = self {
            let jitter = ctx.rng().range(0, 50 * MICROS_PER_MS);
            ctx.set_timer(jitter, Timer::Try);
            ctx.set_timer(c.write_every, Timer::WriteTick);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Le::Locks(l), Msg::Acquire) => l.acquire(from, ctx),
            (Le::Locks(l), Msg::Renew { token }) => l.renew(from, token, ctx),
            (Le::Storage(s), Msg::Write { token, .. }) => s.write(from, token, ctx),
            (Le::Node(c), Msg::Granted { token, lease }) => c.granted(token, lease, ctx),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let Le::Node(c) = self else { return };
        match timer {
            Timer::Try => {
                if c.holds.is_none() {
                    c.asked_at = ctx.now();
                    ctx.send(LOCKS, Msg::Acquire);
                }
                let jitter = ctx.rng().range(0, c.retry / 2);
                ctx.set_timer(c.retry + jitter, Timer::Try);
            }
            Timer::Renew => {
                if let Some((token, _)) = c.holds {
                    c.asked_at = ctx.now();
                    ctx.send(LOCKS, Msg::Renew { token });
                    ctx.set_timer(c.renew, Timer::Renew);
                }
            }
            Timer::Expire => c.step_down(ctx),
            Timer::WriteTick => {
                // Check the lease, then do the work, then write: a pause in between is the danger.
                if let Some((token, until)) = c.holds {
                    if ctx.now() < until {
                        ctx.set_timer(c.work, Timer::Send { token });
                        if let Some(dur) = c.pause_next_write.take() {
                            ctx.inflict(Fault::Pause { node: ctx.me(), dur });
                        }
                    }
                }
                ctx.set_timer(c.write_every, Timer::WriteTick);
            }
            Timer::Send { token } => {
                c.seq += 1;
                ctx.send(STORAGE, Msg::Write { token, seq: c.seq });
            }
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Le::Node(c) = self {
            if c.holds.take().is_some() {
                ctx.count("believers", -1);
            }
            c.expiry_timer = None;
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Le::Node(c), Control::Custom { id, value }) if c.holds.is_some() => match id {
                "pause-leader" => c.pause_next_write = Some(value as u64 * MICROS_PER_MS),
                "drift-leader" => ctx.inflict(Fault::ClockDrift { node: ctx.me(), ppm: value as i32 }),
                "isolate-leader" => {
                    ctx.inflict(Fault::Partition { a: vec![ctx.me()], b: Some(vec![LOCKS]), one_way: false })
                }
                "crash-leader" => ctx.crash(Some(value.max(1) as u64 * MICROS_PER_MS)),
                _ => {}
            },
            (Le::Node(c), Control::Param { id, value }) => {
                let v = value as u64 * MICROS_PER_MS;
                match id {
                    "renew_ms" => c.renew = v,
                    "retry_ms" => c.retry = v,
                    "write_ms" => c.write_every = v,
                    "work_ms" => c.work = v,
                    _ => {}
                }
            }
            (Le::Locks(l), Control::Param { id: "lease_ms", value }) => l.lease = value as u64 * MICROS_PER_MS,
            (Le::Storage(s), Control::Strategy(id)) => s.fencing = id == "lease-fencing",
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Le::Locks(l) => {
                let v =
                    NodeView::new(NodeKind::Lock, 1, "lock store").gauge("token", l.token as i64, (l.token + 1) as i64);
                match l.holder {
                    Some(h) => v.badge(format!("lease: node {} (token {})", h - FIRST, l.token), Tone::Neutral),
                    None => v.badge("lease free", Tone::Warn),
                }
            }
            Le::Storage(s) => {
                let v = NodeView::new(NodeKind::Database, 2, "storage")
                    .badge(format!("highest token {}", s.highest), Tone::Neutral);
                if s.fencing {
                    v.badge("fencing", Tone::Good)
                } else {
                    v
                }
            }
            Le::Node(c) => {
                let v = NodeView::new(NodeKind::Service, 0, numbered("node", c.index as u64));
                match c.holds {
                    Some((token, _)) => v.badge(format!("leader (token {token})"), Tone::Good),
                    None => v,
                }
            }
        }
    }
}

impl Locks {
    fn acquire(&mut self, from: NodeId, ctx: &mut Ctx<Le>) {
        let now = ctx.now();
        if self.holder.is_some() && now < self.expires && self.holder != Some(from) {
            return ctx.send(from, Msg::Denied);
        }
        if self.holder != Some(from) || now >= self.expires {
            if self.token > 0 {
                // How long nobody held the lease before this grant.
                let gap = now.since(self.expires);
                ctx.count("leaderless_us", gap as i64);
                ctx.observe("failover_us", gap);
            } else {
                ctx.count("leaderless_us", now.micros() as i64);
            }
            self.token += 1;
            self.holder = Some(from);
            ctx.note(format!("lease granted to node {} with token {}", from - FIRST, self.token));
        }
        self.expires = now.plus(self.lease);
        ctx.send(from, Msg::Granted { token: self.token, lease: self.lease });
    }

    fn renew(&mut self, from: NodeId, token: u64, ctx: &mut Ctx<Le>) {
        let now = ctx.now();
        if self.holder == Some(from) && self.token == token && now < self.expires {
            self.expires = now.plus(self.lease);
            ctx.send(from, Msg::Granted { token, lease: self.lease });
        } else {
            ctx.send(from, Msg::Denied);
        }
    }
}

impl Storage {
    fn write(&mut self, from: NodeId, token: u64, ctx: &mut Ctx<Le>) {
        if token < self.highest {
            if self.fencing {
                ctx.count("stale_rejected", 1);
                ctx.note(format!("refused a write with token {token} (highest {})", self.highest));
                return ctx.send(from, Msg::Ack { ok: false });
            }
            ctx.count("stale_accepted", 1);
            ctx.note(format!("accepted a stale write with token {token} after token {}", self.highest));
        }
        self.highest = self.highest.max(token);
        self.last_writer = Some(from);
        ctx.count("writes", 1);
        ctx.send(from, Msg::Ack { ok: true });
    }
}

impl Contender {
    fn granted(&mut self, token: u64, lease: Micros, ctx: &mut Ctx<Le>) {
        // Counted from when we asked, on our own clock: if that clock runs slow, we believe
        // too long — which is exactly what fencing protects against.
        let until = self.asked_at.plus(lease.saturating_sub(lease / 10));
        let now = ctx.now();
        if until <= now {
            return;
        }
        if self.holds.is_none() {
            ctx.count("believers", 1);
            ctx.set_timer(self.renew, Timer::Renew);
        }
        self.holds = Some((token, until));
        if let Some(t) = self.expiry_timer.take() {
            ctx.cancel_timer(t);
        }
        self.expiry_timer = Some(ctx.set_timer(until.since(now), Timer::Expire));
    }

    fn step_down(&mut self, ctx: &mut Ctx<Le>) {
        if self.holds.take().is_some() {
            ctx.count("believers", -1);
            ctx.note("lease expired: stepping down");
        }
        self.expiry_timer = None;
    }
}
