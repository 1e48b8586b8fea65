//! Distributed lock: clients take a lock with a TTL from lock server(s), work, then write to a
//! protected resource. A long job, a GC pause or a lock server's clock jump lets a client write
//! after its lock passed on — with one server or a majority of them — unless the resource checks
//! fencing tokens.

use crate::parts::lease::{Acquired, LeaseTable, Margin, QuorumLease};
use crate::parts::station::Service;
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "distributed-lock",
        title: "Distributed lock: TTLs, renewal, fencing and Redlock",
        category: "Coordination",
        seeds: &["S0#1", "S3#60"],
        summary: "Five clients take turns on a lock with a 2 s TTL, each writing to a protected resource when its \
                  work is done. At 6 s the holder pauses 4 s; at 18 s the clocks of a majority of lock servers jump \
                  3 s ahead. Without fencing — one server or a Redlock majority, renewed or not — the resource \
                  accepts a write from a client whose lock had passed on; with fencing tokens it refuses it.",
        note: Note {
            what_can_go_wrong: "A lock with a TTL says who *should* hold it, not who *thinks* it does. A job that \
                outlasts the TTL (SET NX PX without renewal), a stop-the-world pause longer than the TTL (the renewal \
                thread stops too), a lock server whose clock jumps ahead or that restarts without its keys: each \
                lets the lock pass to a second client while the first still works, and the first's write lands \
                after the second's. Redlock's majority of independent servers survives a server's crash, not a \
                pause, and it assumes clocks that run at about the right rate and never jump (Kleppmann, 'How to do \
                distributed locking', 2016; antirez's reply). The model: links of 1–10 ms; exponential work and \
                think times; a client counts its lock from its ask less 1% + 2 ms (Redlock's drift allowance) and \
                writes when its work is done without looking again; a crashed lock server loses its keys, not its \
                token counter; the check orders locks by when their holders got them (true time).",
            what_you_sacrifice: "Fencing needs the resource to take part: every write carries the lock's token, and \
                the resource keeps the highest it has seen per key and refuses older ones — a plain file or a \
                third-party API cannot. It also needs tokens that grow in one order: one lock service (ideally a \
                consensus one: ZooKeeper's zxid, etcd's revision), not independent servers. Renewal costs a request \
                every interval per holder; a long TTL makes a crashed holder block everyone for that long.",
            at_10x: "At the seed's 100K clients the lock server answers every ask, retry and renewal: with one key \
                they queue behind one holder (the wait is the sum of everyone's work), so locks are taken per \
                resource (10K keys here) and retries need backoff with jitter. Redlock multiplies every request by \
                the number of servers.",
            resembles: "Redis SET key value NX PX and Redlock, Redisson's watchdog renewal, ZooKeeper/Curator locks \
                (zxid as the token), etcd leases and revisions, Chubby sequencers, Google's GFS/Bigtable lock service.",
            try_this: &[
                "Play `setnx-ttl`: at 6 s the holder pauses 4 s; its lock expires at 2 s and another client takes it \
                 and writes; when the first wakes it writes too and `mutual-exclusion` names both clients.",
                "Switch to `fencing`: the same late writes arrive carrying an older token and the resource refuses \
                 them (stale writes refused), so the check holds — the pause and the clock jump included.",
                "Set work to 3000 ms with no pause or jump (0): under `setnx-ttl` jobs outlast the 2 s TTL and stale \
                 writes are accepted; `renewal` keeps the lock through any job length and none are.",
                "Try `redlock` with no pause and crash one of its three lock servers: a majority still holds and \
                 nothing breaks; the default plan's pause breaks it exactly as it breaks one server.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("clients", "Clients", "", 1..=100_000, 5, "Clients contending for locks."),
        ParamSpec::setup("keys", "Resources", "", 1..=10_000, 1, "Locks (one per resource); each job picks one at random."),
        ParamSpec::setup("lock_servers", "Lock servers", "", 1..=9, 3, "For Redlock (the others use the first only)."),
        ParamSpec::live("ttl_ms", "TTL", "ms", 100..=60_000, 2000, "How long a lock lasts without renewal.").step(100),
        ParamSpec::live("work_ms", "Work", "ms", 1..=60_000, 400, "Mean (exponential) work under the lock before the write."),
        ParamSpec::live("think_ms", "Think", "ms", 1..=600_000, 1000, "Mean (exponential) time between a client's jobs."),
        ParamSpec::live("renew_ms", "Renew every", "ms", 50..=30_000, 500, "How often a holder renews (renewal and after).").step(50),
        ParamSpec::live("retry_ms", "Retry after", "ms", 10..=10_000, 200, "A refused client asks again after this (+ up to as much jitter)."),
        ParamSpec::setup("pause_ms", "Holder pause", "ms", 0..=60_000, 4000, "At 6 s the holder stops the world this long (0: none).").step(100),
        ParamSpec::setup("jump_ms", "Lock clock jump", "ms", 0..=60_000, 3000, "At 18 s a majority of lock servers' clocks jump ahead (0: none).").step(100),
    ],
    strategies: &[
        StrategySpec::naive("setnx-ttl", "SET NX + TTL", "One lock server; the lock lasts its TTL, however long the work takes."),
        StrategySpec::naive("renewal", "+ renewal", "The holder renews its lock every interval while it works (a watchdog)."),
        StrategySpec::fixed("fencing", "+ fencing tokens", "Renewal, and the resource refuses writes with an older token than it has seen."),
        StrategySpec::naive("redlock", "Majority (Redlock)", "The lock is asked of every server and held while a majority grants it; renewed; no fencing."),
    ],
    faults: &[
        FaultSpec::global("pause-holder", "Pause the holder", "Whoever holds the lock (of the first resource) stops the world.")
            .value("ms", 100..=60_000, 4000),
        FaultSpec::node("stall", "GC pause at next lock", "This client process pauses as soon as one of its clients holds a lock.")
            .value("ms", 100..=60_000, 4000),
        FaultSpec::global("isolate-holder", "Cut the holder from the lock servers", "It can no longer renew (heal to undo)."),
        FaultSpec::global("jump-lock-clocks", "Jump lock servers' clocks", "A majority of lock servers' clocks are set this far ahead.")
            .value("ms", 0..=60_000, 3000),
    ],
    checks: &[CheckSpec::new("mutual-exclusion", "Mutual exclusion on the resource", "Once the resource has accepted \
        a write under a newer lock, it accepts none from a client whose lock has passed on. Names both clients.")],
    metrics: &[
        MetricSpec::new("acquired", "Lock acquisitions", "/s", Measure::Rate("acquired")),
        MetricSpec::new("wait", "Wait for the lock p99", "us", Measure::Quantile("wait_us", 0.99)),
        MetricSpec::new("holders", "Clients acting as holders", "", Measure::Count("holders")),
        MetricSpec::new("stale_accepted", "Stale writes accepted", "", Measure::Count("stale_accepted")),
        MetricSpec::new("stale_refused", "Stale writes refused", "", Measure::Count("stale_refused")),
        MetricSpec::new("writes", "Writes accepted", "/s", Measure::Rate("writes")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { SetNx, Renewal, Fencing, Redlock });

const RESOURCE: NodeId = 0;
const LOCK0: NodeId = 1;
/// Clients are spread over at most this many processes (nodes), so that 100K clients stay drawable.
const MAX_PROCS: u32 = 8;
/// Redlock's allowance for clock drift: 1% of the TTL plus 2 ms, off the holder's lease.
const MARGIN: Margin = Margin::new(10_000, 2_000);
/// An ask unanswered this long has failed (a server down or cut off): give back and retry.
const ANSWER_WAIT: Micros = 100 * MICROS_PER_MS;

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Acquire {
        key: u32,
        client: u32,
        ask: u64,
    },
    Granted {
        client: u32,
        ask: u64,
        token: u64,
        ttl: Micros,
    },
    Denied {
        client: u32,
        ask: u64,
    },
    Release {
        key: u32,
        client: u32,
        token: u64,
    },
    /// `acquired`: true time its lock was got — for the check only, the resource never reads it.
    Write {
        key: u32,
        client: u32,
        token: u64,
        acquired: Time,
    },
    Ack {
        client: u32,
    },
    Refused {
        client: u32,
    },
}

/// Each names a client slot of its process and the job (or ask) it belongs to.
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Want(u32),
    Retry(u32, u32),
    GiveUp(u32, u64),
    Renew(u32, u32),
    Done(u32, u32),
}

#[derive(Clone, Debug, Holds)]
pub enum Dl {
    Resource(Resource),
    Server(Server),
    Proc(Proc),
}

/// The protected resource: per key, the highest token of a write accepted, and the newest lock
/// (by when it was got) a write was accepted under; the last stale write accepted, for the check.
#[derive(Clone, Debug)]
pub struct Resource {
    fencing: bool,
    highest: Vec<u64>,
    newest: Vec<(Time, u32)>,
    stale: Option<(u32, u32, u32, Time)>,
    accepted_stale: u64,
    refused: u64,
}

/// A lock server (Redis): its keys with TTLs and tokens; a restart loses the keys.
#[derive(Clone, Debug)]
pub struct Server {
    index: u32,
    table: LeaseTable<u32, u32>,
    latest: Option<(u32, u64)>,
    in_use: bool,
    /// `pause-holder` found the lock free: the next grant's holder pauses.
    pause_next: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Asking,
    Holding,
    Writing,
}

#[derive(Clone, Debug)]
struct Task {
    key: u32,
    job: u32,
    ask: u64,
    phase: Phase,
    lock: QuorumLease,
    wanted: Time,
    acquired: Time,
}

/// A client process: its clients (`clients / procs` of them), each a loop of think → lock → work
/// → write → unlock. A pause stops them all, as a GC pause stops every thread.
#[derive(Clone, Debug)]
pub struct Proc {
    index: u32,
    procs: u32,
    tasks: Vec<Task>,
    stall: Option<Micros>,
}

fn procs(clients: i64) -> u32 {
    (clients as u32).min(MAX_PROCS)
}

fn ms(v: i64) -> Micros {
    v as Micros * MICROS_PER_MS
}

fn sim(setup: &Setup) -> Sim<Dl> {
    let mut sim: Sim<Dl> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 1_000, hi: 10_000 }));
    let (keys, n, clients) = (setup.param("keys") as usize, setup.param("lock_servers"), setup.param("clients"));
    let strategy = Strategy::from_id(setup.strategy());
    let fencing = strategy == Strategy::Fencing;
    let (highest, newest) = (vec![0; keys], vec![(Time::ZERO, u32::MAX); keys]);
    let resource = Resource { fencing, highest, newest, stale: None, accepted_stale: 0, refused: 0 };
    assert_eq!(sim.add_node(Dl::Resource(resource)), RESOURCE);
    for index in 0..n as u32 {
        let in_use = index == 0 || strategy == Strategy::Redlock;
        sim.add_node(Dl::Server(Server { index, table: LeaseTable::new(), latest: None, in_use, pause_next: None }));
    }
    let p = procs(clients);
    for index in 0..p {
        let count = (clients as u32 - index).div_ceil(p) as usize;
        let task = Task {
            key: 0,
            job: 0,
            ask: 0,
            phase: Phase::Idle,
            lock: QuorumLease::new(MARGIN, 1),
            wanted: Time::ZERO,
            acquired: Time::ZERO,
        };
        sim.add_node(Dl::Proc(Proc { index, procs: p, tasks: vec![task; count], stall: None }));
    }
    // The plan: the holder pauses past its TTL; later a majority of lock servers' clocks jump ahead.
    for (at_s, id, param) in [(6, "pause-holder", "pause_ms"), (18, "jump-lock-clocks", "jump_ms")] {
        if setup.param(param) > 0 {
            sim.schedule(Time::from_secs(at_s), Fault::custom(id, setup.param(param)));
        }
    }
    sim.check("mutual-exclusion", |w| match w.node::<Resource>(RESOURCE).stale {
        Some((key, old, new, at)) if at == w.now => Err(format!(
            "the resource accepted client {old}'s write on key {key} after client {new}'s, whose lock on it is newer"
        )),
        _ => Ok(()),
    });
    sim
}

impl Node for Dl {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Dl::Proc(p) = self {
            for (slot, task) in p.tasks.iter_mut().enumerate() {
                task.phase = Phase::Idle;
                let think = Service::exponential_ms(ctx.param("think_ms") as u64).sample_us(ctx.rng());
                ctx.set_timer(think, Timer::Want(slot as u32));
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Dl::Server(s), Msg::Acquire { key, client, ask }) => s.acquire(from, key, client, ask, ctx),
            (Dl::Server(s), Msg::Release { key, client, token }) => {
                drop(s.table.release(&key, &client, token, ctx.now()))
            }
            (Dl::Resource(r), Msg::Write { key, client, token, acquired }) => {
                r.write(from, key, client, token, acquired, ctx)
            }
            (Dl::Proc(p), Msg::Granted { client, ask, token, ttl }) => p.granted(from, client, ask, token, ttl, ctx),
            (Dl::Proc(p), Msg::Denied { client, ask }) => p.denied(from, client, ask, ctx),
            (Dl::Proc(p), Msg::Ack { client } | Msg::Refused { client }) => p.written(p.slot(client), ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let Dl::Proc(p) = self else { return ctx.unhandled(&timer) };
        match timer {
            Timer::Want(slot) => p.want(slot as usize, ctx),
            Timer::Retry(slot, job) if p.tasks[slot as usize].job == job => p.ask(slot as usize, ctx),
            Timer::GiveUp(slot, ask) => p.give_up(slot as usize, ask, ctx),
            Timer::Renew(slot, job) => p.renew(slot as usize, job, ctx),
            Timer::Done(slot, job) => p.done(slot as usize, job, ctx),
            // A retry of a job given up since (its process restarted).
            Timer::Retry(..) => {}
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Dl::Server(s) => {
                s.table.forget_grants();
                ctx.note("restarted without its keys: every lock it granted is gone");
            }
            Dl::Proc(p) => {
                // Its clients' locks die with it (the servers' keys expire in their time).
                let holding = p.tasks.iter().filter(|t| t.phase == Phase::Holding).count();
                ctx.count("holders", -(holding as i64));
                p.tasks.iter_mut().for_each(|t| (t.phase, t.job) = (Phase::Idle, t.job + 1));
                p.tasks.iter_mut().for_each(|t| t.lock.release());
                p.stall = None;
            }
            Dl::Resource(_) => {}
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Dl::Resource(r), Control::Strategy(id)) => r.fencing = Strategy::from_id(id) == Strategy::Fencing,
            (Dl::Server(s), Control::Strategy(id)) => {
                s.in_use = s.index == 0 || Strategy::from_id(id) == Strategy::Redlock
            }
            (Dl::Server(s), Control::Custom { id, value }) => s.fault(id, value, ctx),
            (Dl::Proc(p), Control::Custom { id: "stall", value }) => {
                p.stall = Some(ms(value));
                if p.tasks.iter().any(|t| t.phase == Phase::Holding) {
                    p.stall_now(ctx);
                }
            }
            // Live parameters are read where used; the other faults are the servers' to route.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Dl::Resource(r) => NodeView::new(NodeKind::Database, 2, "protected resource")
                .badge(format!("highest token {}", r.highest[0]), Tone::Neutral)
                .badge_if(r.fencing, "fencing", Tone::Good)
                .badge_if(r.accepted_stale > 0, format!("{} stale writes accepted", r.accepted_stale), Tone::Bad)
                .badge_if(r.refused > 0, format!("{} stale writes refused", r.refused), Tone::Good),
            Dl::Server(s) => {
                let v = NodeView::new(NodeKind::Lock, 1, numbered("lock server", s.index as u64));
                match s.latest {
                    _ if !s.in_use => v.badge("unused", Tone::Neutral),
                    Some((c, token)) => v.badge(format!("last grant: client {c}, token {token}"), Tone::Neutral),
                    None => v.badge("no grant yet", Tone::Neutral),
                }
            }
            Dl::Proc(p) => p.view(),
        }
    }
}

impl Resource {
    fn write(&mut self, from: NodeId, key: u32, client: u32, token: u64, acquired: Time, ctx: &mut Ctx<Dl>) {
        let k = key as usize;
        if self.fencing && token < self.highest[k] {
            self.refused += 1;
            ctx.count("stale_refused", 1);
            ctx.note(format!("refused client {client}'s write on key {key}: token {token} < {}", self.highest[k]));
            return ctx.send(from, Msg::Refused { client });
        }
        let (newest, by) = self.newest[k];
        if acquired < newest && client != by {
            self.accepted_stale += 1;
            self.stale = Some((key, client, by, ctx.truth()));
            ctx.count("stale_accepted", 1);
            ctx.note(format!("accepted client {client}'s write on key {key} after client {by}'s newer lock"));
        } else {
            self.newest[k] = (acquired, client);
        }
        self.highest[k] = self.highest[k].max(token);
        ctx.count("writes", 1);
        ctx.send(from, Msg::Ack { client });
    }
}

impl Server {
    fn proc_of(client: u32, ctx: &Ctx<Dl>) -> NodeId {
        LOCK0 + ctx.param("lock_servers") as NodeId + (client % procs(ctx.param("clients"))) as NodeId
    }

    fn acquire(&mut self, from: NodeId, key: u32, client: u32, ask: u64, ctx: &mut Ctx<Dl>) {
        let ttl = ms(ctx.param("ttl_ms"));
        let token = match self.table.acquire(key, client, ctx.now(), ttl) {
            Acquired::Busy { .. } => return ctx.send(from, Msg::Denied { client, ask }),
            Acquired::Extended { token, .. } => token,
            Acquired::New { token, .. } => {
                self.latest = Some((client, token));
                if let Some(v) = self.pause_next.take() {
                    ctx.inflict(Fault::custom_on("stall", from, v));
                }
                token
            }
        };
        ctx.send(from, Msg::Granted { client, ask, token, ttl });
    }

    /// The holder faults go to whoever holds the first resource's lock here (server 0 routes
    /// them); the clock jump hits a majority of the servers.
    fn fault(&mut self, id: &str, value: i64, ctx: &mut Ctx<Dl>) {
        let n = ctx.param("lock_servers") as u32;
        let holder = self.table.holder(&0, ctx.now()).map(|g| g.holder);
        match id {
            "jump-lock-clocks" if self.index < n / 2 + 1 && value > 0 => {
                ctx.inflict(Fault::ClockSkew { node: ctx.me(), offset: value * MICROS_PER_MS as i64 })
            }
            "pause-holder" if self.index == 0 && value > 0 => match holder {
                Some(c) => ctx.inflict(Fault::custom_on("stall", Self::proc_of(c, ctx), value)),
                None => self.pause_next = Some(value),
            },
            "isolate-holder" if self.index == 0 => {
                if let Some(c) = holder.or(self.latest.map(|l| l.0)) {
                    let servers = (LOCK0..LOCK0 + n as NodeId).collect();
                    ctx.inflict(Fault::Partition { a: vec![Self::proc_of(c, ctx)], b: Some(servers), one_way: false });
                }
            }
            _ => {}
        }
    }
}

impl Proc {
    fn slot(&self, client: u32) -> usize {
        (client / self.procs) as usize
    }

    fn client(&self, slot: usize) -> u32 {
        slot as u32 * self.procs + self.index
    }

    /// A new job: pick a resource and ask for its lock, of one server or all of them.
    fn want(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        let servers = match Strategy::from_id(ctx.strategy()) {
            Strategy::Redlock => ctx.param("lock_servers") as usize,
            _ => 1,
        };
        let keys = ctx.param("keys") as u64;
        let key = ctx.rng().below(keys) as u32;
        let t = &mut self.tasks[slot];
        if t.lock.tokens().len() != servers {
            t.lock = QuorumLease::new(MARGIN, servers);
        }
        (t.key, t.job, t.wanted) = (key, t.job + 1, ctx.now());
        self.ask(slot, ctx);
    }

    /// Asks (or, holding, renews: SET NX again, which extends a lock already ours) every server in use.
    fn ask(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        let client = self.client(slot);
        let t = &mut self.tasks[slot];
        if t.phase != Phase::Holding {
            t.phase = Phase::Asking;
        }
        let ask = t.lock.ask(ctx.now());
        t.ask = ask;
        for i in 0..t.lock.tokens().len() {
            ctx.send(LOCK0 + i as NodeId, Msg::Acquire { key: t.key, client, ask });
        }
        ctx.set_timer(ANSWER_WAIT, Timer::GiveUp(slot as u32, ask));
    }

    fn granted(&mut self, from: NodeId, client: u32, ask: u64, token: u64, ttl: Micros, ctx: &mut Ctx<Dl>) {
        let (slot, i) = (self.slot(client), (from - LOCK0) as usize);
        let t = &mut self.tasks[slot];
        let renewed_anew = t.phase == Phase::Holding && i == 0 && t.lock.tokens()[0] != token;
        if !t.lock.granted(ask, i, token, ttl, ctx.now()) {
            return;
        }
        match t.phase {
            Phase::Asking => self.hold(slot, ctx),
            // Its lock had lapsed and nobody took it: the renewal is a new lock, got now.
            Phase::Holding if renewed_anew => t.acquired = ctx.truth(),
            _ => {}
        }
    }

    fn denied(&mut self, from: NodeId, client: u32, ask: u64, ctx: &mut Ctx<Dl>) {
        let slot = self.slot(client);
        let t = &mut self.tasks[slot];
        t.lock.denied(ask, (from - LOCK0) as usize);
        if t.lock.asking() || t.lock.valid(ctx.now()) {
            return;
        }
        match t.phase {
            Phase::Asking => self.back_off(slot, ctx),
            // The watchdog tells nobody: the work goes on and its write will go out.
            Phase::Holding => ctx.note(format!("client {client}'s renewal refused: its lock is gone")),
            _ => {}
        }
    }

    /// No majority answered in time: give back what was granted and retry.
    fn give_up(&mut self, slot: usize, ask: u64, ctx: &mut Ctx<Dl>) {
        let t = &self.tasks[slot];
        if t.phase == Phase::Asking && t.ask == ask && t.lock.asking() {
            self.back_off(slot, ctx);
        }
    }

    fn back_off(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        self.unlock(slot, ctx);
        let retry = ms(ctx.param("retry_ms"));
        let wait = retry + ctx.rng().range(0, retry);
        ctx.set_timer(wait, Timer::Retry(slot as u32, self.tasks[slot].job));
    }

    /// Releases whatever servers granted (DEL if the token is still ours) and forgets it.
    fn unlock(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        let client = self.client(slot);
        let t = &mut self.tasks[slot];
        for (i, &token) in t.lock.tokens().iter().enumerate().filter(|(_, &tok)| tok > 0) {
            ctx.send(LOCK0 + i as NodeId, Msg::Release { key: t.key, client, token });
        }
        t.lock.release();
        t.phase = Phase::Idle;
    }

    fn hold(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        let t = &mut self.tasks[slot];
        (t.phase, t.acquired) = (Phase::Holding, ctx.truth());
        ctx.count("holders", 1);
        ctx.count("acquired", 1);
        ctx.observe("wait_us", ctx.now().since(t.wanted));
        let work = Service::exponential_ms(ctx.param("work_ms") as u64).sample_us(ctx.rng());
        ctx.set_timer(work, Timer::Done(slot as u32, t.job));
        ctx.set_timer(ms(ctx.param("renew_ms")), Timer::Renew(slot as u32, t.job));
        if self.stall.is_some() {
            self.stall_now(ctx);
        }
    }

    fn stall_now(&mut self, ctx: &mut Ctx<Dl>) {
        if let Some(dur) = self.stall.take() {
            ctx.note(format!("stop-the-world pause for {} ms while holding a lock", dur / MICROS_PER_MS));
            ctx.inflict(Fault::Pause { node: ctx.me(), dur });
        }
    }

    fn renew(&mut self, slot: usize, job: u32, ctx: &mut Ctx<Dl>) {
        let t = &self.tasks[slot];
        if t.phase != Phase::Holding || t.job != job {
            return;
        }
        if Strategy::from_id(ctx.strategy()) != Strategy::SetNx {
            self.ask(slot, ctx);
        }
        ctx.set_timer(ms(ctx.param("renew_ms")), Timer::Renew(slot as u32, job));
    }

    /// The work is done: write, without looking at the lock again (a pause could follow any look).
    fn done(&mut self, slot: usize, job: u32, ctx: &mut Ctx<Dl>) {
        let client = self.client(slot);
        let t = &mut self.tasks[slot];
        if t.phase != Phase::Holding || t.job != job {
            return;
        }
        t.phase = Phase::Writing;
        ctx.count("holders", -1);
        if !t.lock.valid(ctx.now()) {
            ctx.count("outlived", 1);
        }
        let (key, token, acquired) = (t.key, t.lock.tokens()[0], t.acquired);
        ctx.send(RESOURCE, Msg::Write { key, client, token, acquired });
    }

    fn written(&mut self, slot: usize, ctx: &mut Ctx<Dl>) {
        if self.tasks[slot].phase != Phase::Writing {
            return;
        }
        self.unlock(slot, ctx);
        let think = Service::exponential_ms(ctx.param("think_ms") as u64).sample_us(ctx.rng());
        ctx.set_timer(think, Timer::Want(slot as u32));
    }

    fn view(&self) -> NodeView {
        let label = match self.tasks.len() {
            1 => numbered("client", self.index as u64),
            n => format!("{n} clients (process {})", self.index),
        };
        let v = NodeView::new(NodeKind::Client, 0, label);
        let holding = self.tasks.iter().filter(|t| t.phase == Phase::Holding);
        match (self.tasks.len(), holding.clone().next()) {
            (1, Some(t)) => v.badge(format!("holds key {} (token {})", t.key, t.lock.tokens()[0]), Tone::Good),
            (1, None) if self.tasks[0].phase == Phase::Asking => v.badge("waiting for the lock", Tone::Neutral),
            (1, None) => v,
            (n, _) => v.gauge("holding", holding.count() as i64, n as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sampled, run_sim};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("distributed-lock", strategy, seed)
    }

    /// No scheduled pause or clock jump.
    fn calm(strategy: &str, seed: u64) -> Recipe {
        recipe(strategy, seed).with_param("pause_ms", 0).with_param("jump_ms", 0)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn counter(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    #[test]
    fn try_setnx_the_paused_holder_writes_after_its_lock_passed_on() {
        // Step 1: the holder pauses 6–10 s; its 2 s lock expires, another client takes it and
        // (work 400 ms on average) writes; the first writes as it wakes, at 10 s or just after.
        for seed in 1..=8 {
            let r = run(&recipe("setnx-ttl", seed), 30);
            let (at, why) = failed_at(r.as_ref(), "mutual-exclusion").expect("a stale write accepted");
            assert!((10.0..10.5).contains(&at), "seed {seed}: at {at} s: {why}");
            assert_eq!(why.matches("client ").count(), 2, "seed {seed}: {why}");
        }
    }

    #[test]
    fn try_fencing_refuses_the_same_late_writes() {
        // Step 2: `fencing` is `renewal` plus the resource's token check, and clients treat a
        // refusal as an acknowledgement, so both runs send the very same writes: each stale
        // one accepted under renewal is refused under fencing, and the check holds.
        for seed in 1..=10 {
            let (naive, fenced) = (run(&recipe("renewal", seed), 30), run(&recipe("fencing", seed), 30));
            let accepted = counter(naive.as_ref(), "stale_accepted");
            assert!(accepted >= 1, "seed {seed}");
            assert_eq!(counter(fenced.as_ref(), "stale_refused"), accepted, "seed {seed}");
            assert_eq!(counter(fenced.as_ref(), "stale_accepted"), 0, "seed {seed}");
            assert!(failed_at(fenced.as_ref(), "mutual-exclusion").is_none(), "seed {seed}");
        }
    }

    #[test]
    fn try_long_work_outlasts_the_ttl_unless_renewed() {
        // Step 3: work of 3 s on average outlasts a 2 s TTL e^(−2/3) ≈ half the time; without
        // renewal the lock passes on mid-work and stale writes are accepted; renewed every
        // 500 ms it never lapses.
        for seed in 1..=5 {
            let long = |st| calm(st, seed).with_param("work_ms", 3000);
            let naive = run(&long("setnx-ttl"), 30);
            assert!(counter(naive.as_ref(), "stale_accepted") >= 1, "seed {seed}");
            let renewed = run(&long("renewal"), 30);
            assert_eq!(counter(renewed.as_ref(), "stale_accepted"), 0, "seed {seed}");
            assert_eq!(counter(renewed.as_ref(), "outlived"), 0, "seed {seed}");
        }
    }

    #[test]
    fn try_redlock_survives_a_server_crash_not_a_pause() {
        // Step 4: lock server 0 crashes at 10 s (losing its keys) and restarts at 12 s; the
        // holder keeps two of three grants, a majority. The default plan's pause breaks it.
        let crash = ActionKind::Fault(Fault::Crash { node: LOCK0 });
        let restart = ActionKind::Fault(Fault::Restart { node: LOCK0 });
        for seed in 1..=8 {
            let r = calm("redlock", seed).with_action(Time::from_secs(10), crash.clone());
            let r = run(&r.with_action(Time::from_secs(12), restart.clone()), 30);
            assert!(failed_at(r.as_ref(), "mutual-exclusion").is_none(), "seed {seed}");
            let paused = run(&recipe("redlock", seed), 12);
            assert!(failed_at(paused.as_ref(), "mutual-exclusion").is_some(), "seed {seed}");
        }
    }

    #[test]
    fn the_share_of_jobs_outliving_the_ttl_is_e_to_the_minus_ttl_over_work() {
        // Exponential work of mean w outlasts the lock's time left on the holder's clock
        // (TTL − 1% − 2 ms, less the ask's round trip, 2–20 ms, 11 ms on average) with
        // probability e^(−(1000 − 12 − 11)/500) = 14.2%. 50 clients over 100 keys (little
        // waiting) for 60 s hold some 2,000 locks: the standard error of 14% is 0.8 points
        // (5.5%), so ±15% is nearly 3 of them, while a TTL of 900 or 1100 ms gives 17% or 12%.
        let want = libm::exp(-(1000.0 - 12.0 - 11.0) / 500.0);
        let r = calm("setnx-ttl", 3)
            .with_param("clients", 50)
            .with_param("keys", 100)
            .with_param("ttl_ms", 1000)
            .with_param("work_ms", 500);
        let r = run(&r, 60);
        let (outlived, held) = (counter(r.as_ref(), "outlived"), counter(r.as_ref(), "acquired"));
        let share = outlived as f64 / held as f64;
        assert!(held > 1500 && (share - want).abs() <= 0.15 * want, "{outlived}/{held} = {share:.4}, want {want:.4}");
    }

    #[test]
    fn a_jump_of_the_lock_clocks_hands_a_held_lock_to_a_second_client() {
        // With no pause the clock jump alone (18 s, 3 s ahead on two of three servers) expires
        // the holder's lock everywhere it counts. Whether its write then lands after the next
        // holder's is a race (its remaining work against the other's retry and work): under
        // every naive strategy some seeds in 20 (a fifth to a third) have a stale write
        // accepted; fencing refuses them all.
        for st in ["setnx-ttl", "renewal", "redlock"] {
            let broke =
                (1..=20).filter(|&s| run(&recipe(st, s).with_param("pause_ms", 0), 30).checks()[0].violation.is_some());
            assert!(broke.count() >= 2, "{st}");
        }
        for seed in 1..=10 {
            let r = run(&recipe("fencing", seed).with_param("pause_ms", 0), 30);
            assert!(r.checks()[0].violation.is_none(), "seed {seed}");
        }
    }

    #[test]
    fn the_view_shows_the_holder_the_grants_and_the_fencing_resource() {
        let run = run_sim(sim(&Setup { spec: &SPEC, recipe: recipe("fencing", 1) }), 12);
        let frame = run.frame(0);
        let resource = &frame.nodes[RESOURCE as usize].view;
        assert!(resource.badges.iter().any(|b| b.text == "fencing"));
        assert!(resource.badges.iter().any(|b| b.text.ends_with("stale writes refused")));
        let servers = &frame.nodes[LOCK0 as usize..LOCK0 as usize + 3];
        assert!(servers[0].view.badges[0].text.starts_with("last grant: client"));
        assert_eq!(servers[1].view.badges[0].text, "unused");
        let clients = &frame.nodes[4..];
        assert!(clients.iter().all(|n| n.view.kind == NodeKind::Client));
        // 100K clients are drawn as eight processes, each a gauge of its clients holding.
        let big = sim(&Setup { spec: &SPEC, recipe: recipe("fencing", 1).with_param("clients", 100_000) });
        let frame = big.frame(0);
        assert_eq!(frame.nodes.len(), 1 + 3 + 8);
        assert_eq!(frame.nodes[4].view.gauges[0].max, 12_500);
    }
}
