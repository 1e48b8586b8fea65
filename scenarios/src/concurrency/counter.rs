//! A thread-safe counter: threads increment one shared counter, and every access to it is a
//! step the seeded scheduler interleaves (`parts::threads`). The main thread starts a round,
//! joins the threads and checks the count; a plain read-then-write loses updates, while a mutex,
//! a CAS loop or a sharded counter keep every one at different costs.

use crate::parts::degraded::FaultWindow;
use crate::parts::interleaving::{lock_ceiling_per_s, sharded_cas_rates};
use crate::parts::rounds::{self, MainThread, Msg, Rounds, Worker, WorkerThread, MAIN};
use crate::parts::threads::{self, Access, Memory, Reply, ThreadId};
use faultline_core::*;

#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "counter",
        title: "Thread-safe counter",
        category: "Concurrency",
        seeds: &["S1#1"],
        summary: "Threads each add 1 to a shared counter 3,000 times, then the main thread checks the total. As a read \
                  then a write, increments vanish whenever two threads interleave; a mutex, a CAS loop and a sharded \
                  counter keep every one — and differ in throughput, in retries and in how a descheduled thread \
                  stalls the rest.",
        note: Note {
            what_can_go_wrong: "`counter = counter + 1` is two steps, a read and a write. A thread that reads, then \
                lets another run before it writes, writes back a value that erases every increment made meanwhile: \
                a lost update. Nothing fails — the total is just short. The model: each access to shared memory is \
                one atomic step, exponential in time (so the next to land is any thread's, with equal chance), and \
                before any step a thread may be descheduled for a time slice. Time runs slowed down: a step costs \
                microseconds, not nanoseconds, so that the player can show each one; compare strategies by ratio.",
            what_you_sacrifice: "A mutex serialises every increment: throughput stops at 1 / (wake-up + the locked \
                steps) whatever the thread count, and a holder descheduled inside its critical section stalls \
                everyone. A CAS loop never blocks, but contention turns into retries that burn steps. A sharded \
                counter (a cell per thread or group, as Java's LongAdder) removes contention, at the cost of a read \
                that sums every shard and is not atomic while writers run.",
            at_10x: "Ten times the threads on one counter: the mutex's line stays flat while its queue grows, CAS \
                retries grow with the threads, and only sharding scales — until the shards share a cache line \
                (false sharing), which real counters pad against.",
            resembles: "`i++` on a shared int in Java or C; `synchronized`/`std::sync::Mutex`; `AtomicLong`'s CAS \
                loop; `LongAdder`, Linux's per-CPU counters; the sloppy counter of OSTEP ch. 29.",
            try_this: &[
                "Play `read-modify-write`: the first round (about 4 s) already ends thousands short, \
                 `final-equals-expected` fails, and the lost-updates chart climbs with every round.",
                "Switch to `mutex`: no update is lost, but ops/s falls to a third, just under its theory line (the \
                 mutex ceiling, 1 / (wake-up + 3 steps)) — and from 10 s it is zero for two seconds while the \
                 lock's holder is descheduled.",
                "Switch to `cas`: nothing lost, three times the mutex's ops/s, and no stall at 10 s: the others go on \
                 while thread 0 is out. In the preemption storm at 20–25 s the mutex loses a larger share of its \
                 throughput than CAS: a preempted holder stalls everyone.",
                "Switch to `sharded` (a shard per thread): no CAS retries at all and the highest ops/s; set shards to \
                 2 and two threads share each shard, and retries come back.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("threads", "Threads", "", 1..=12, 4, "Threads incrementing the counter (restarts the run)."),
        ParamSpec::setup("increments", "Increments per thread", "", 1..=100_000, 3000, "Each thread's share of a round; the main thread expects threads × this."),
        ParamSpec::setup("shards", "Shards", "", 1..=16, 4, "Cells of the sharded counter; thread i adds to shard i mod shards."),
        ParamSpec::live("work_us", "Local work", "us", 0..=100_000, 1000, "Mean time between a thread's increments (exponential; 0: none).").step(10),
        threads::STEP_US, threads::WAKE_US, threads::PREEMPT_PM, threads::SLICE_MS,
    ],
    strategies: &[
        StrategySpec::naive("read-modify-write", "Read-modify-write", "Reads the counter, then writes it + 1: nothing keeps another write out in between."),
        StrategySpec::fixed("mutex", "Mutex", "Locks, reads, writes + 1, unlocks: one thread at a time, the rest parked."),
        StrategySpec::fixed("cas", "CAS loop", "Reads, then compare-and-sets + 1; a failed CAS retries with the value it saw."),
        StrategySpec::fixed("sharded", "Sharded counter", "A CAS loop on the thread's own shard; the total is the sum of the shards."),
    ],
    faults: &[threads::DESCHEDULE, threads::STORM],
    checks: &[CheckSpec::new("final-equals-expected", "Final count == expected",
        "When the main thread joins a round's threads, the counter holds threads × increments: no increment lost.")],
    metrics: &[
        MetricSpec::new("lost", "Lost updates", "increments", Measure::Count("lost")),
        MetricSpec::new("ops", "Increments", "ops/s", Measure::Rate("increments")),
        MetricSpec::new("ops_theory", "Increments, theory without preemption", "ops/s", Measure::Gauge("theory_ops")),
        MetricSpec::new("retries", "CAS retries", "retries/s", Measure::Rate("cas_retries")),
        MetricSpec::new("retries_theory", "CAS retries, theory without preemption", "retries/s", Measure::Gauge("theory_retries")),
        MetricSpec::new("lock_wait", "Mutex wait p99", "us", Measure::Quantile("lock_wait_us", 0.99)),
        MetricSpec::new("bad_rounds", "Rounds that lost updates", "rounds", Measure::Count("bad_rounds")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

/// The one lock of `mutex`, guarding cell 0 (the counter, and shard 0).
const LOCK: u32 = 0;

#[derive(Clone, Debug, Label)]
pub enum Timer {
    /// A thread's local work before its next increment is done.
    Worked { round: u64 },
}

#[derive(Clone, Debug, Holds)]
pub enum Ct {
    Main(Main),
    Thread(Thread),
}

#[derive(Clone, Debug)]
pub struct Main {
    r: Rounds,
}

/// How the increment under way is done: its strategy when it began (a switch applies from the
/// next increment), and for CAS loops, the cell.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Plan {
    #[default]
    Rmw,
    Mutex,
    Cas(u32),
}

#[derive(Clone, Debug, Default)]
pub struct Thread {
    w: Worker,
    plan: Plan,
    asked_lock: Time,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ct> = Sim::new(setup, Link::local());
    let (threads, shards) = (setup.param("threads") as u32, setup.param("shards") as usize);
    let r = Rounds::new(Memory::new(shards, 1), threads, setup.param("increments") as u64);
    assert_eq!(sim.add_node(Ct::Main(Main { r })), MAIN);
    for index in 0..threads {
        sim.add_node(Ct::Thread(Thread { w: Worker::new(index), ..Thread::default() }));
    }
    // The plan: thread 0 descheduled inside its critical section at 10 s; a storm at 20–25 s.
    sim.schedule(Time::from_secs(10), Fault::custom_on("deschedule", MAIN + 1, 2000));
    FaultWindow::secs(20, 5).custom(&mut sim, "storm", None, 30, 0);
    sim.check("final-equals-expected", |w| w.node::<Main>(MAIN).r.breach.now(w.now));
    Box::new(sim)
}

impl Node for Ct {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ct::Main(m) => {
                m.theory(ctx);
                m.start_round(ctx)
            }
            Ct::Thread(t) => rounds::worker_started(t, ctx),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match self {
            Ct::Main(m) => rounds::to_main(m, from, msg, ctx),
            Ct::Thread(t) => rounds::to_worker(t, msg, ctx),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ct::Thread(t), Timer::Worked { round }) if round == t.w.round => t.begin(ctx),
            (Ct::Thread(_), Timer::Worked { .. }) => {}
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        match self {
            // The process's memory is gone; its round restarts when it does.
            Ct::Main(m) => m.r.mem.reset(),
            Ct::Thread(t) => t.w = t.w.crashed(),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ct::Thread(t), c) => _ = t.w.cpu.control(c),
            (Ct::Main(m), Control::Strategy(_) | Control::Param { .. }) => m.theory(ctx),
            // Threads read the strategy and the parameters at each increment and step.
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ct::Main(m) => m.view(),
            Ct::Thread(t) => t.w.view(),
        }
    }
}

impl MainThread<Ct> for Main {
    fn rounds(&mut self) -> &mut Rounds {
        &mut self.r
    }

    /// An access served. Every write is a read's value + 1: what it erases is how far the cell
    /// moved since that read (negative if it moved back, which puts erased ones back).
    fn access(&mut self, t: ThreadId, access: Access, ctx: &mut Ctx<Ct>) {
        if let Some(e) = self.r.serve(t, access, 0, ctx) {
            let lost = e.over - e.read;
            ctx.count("lost", lost);
            if lost > 0 {
                self.r.tell_first(&e, "cell", &format!("{lost} increments erased"), ctx);
            }
        }
        ctx.gauge("counter", self.r.mem.cells().iter().sum());
    }

    /// Every thread joined: the main thread checks the count and starts another round.
    fn all_joined(&mut self, ctx: &mut Ctx<Ct>) {
        let total: i64 = self.r.mem.cells().iter().sum();
        let expected = self.r.jobs.iter().sum::<u64>() as i64;
        if total != expected {
            ctx.count("bad_rounds", 1);
        }
        let wrong = format!("counter {total}, expected {expected}: {} lost", expected - total);
        self.r.audit((total != expected).then_some(wrong), ctx);
        self.start_round(ctx);
    }
}

impl Main {
    /// Spawns a round: memory zeroed, every thread told to add its share.
    fn start_round(&mut self, ctx: &mut Ctx<Ct>) {
        self.r.start(ctx);
        ctx.gauge("counter", 0);
    }

    /// The theory lines for the strategy in force, without preemption: a plain read-modify-write
    /// never waits (work + 2 steps per increment); a mutex at best its ceiling; CAS loops the
    /// Markov chain, one per shard group (sharded: thread i on shard i mod shards).
    fn theory(&self, ctx: &mut Ctx<Ct>) {
        let (n, step, work) = (self.r.threads, ctx.param("step_us") as f64, ctx.param("work_us") as f64);
        let shards = if ctx.strategy() == "sharded" { self.r.mem.cells().len() as u32 } else { 1 };
        let (ops, retries) = match ctx.strategy() {
            "read-modify-write" => (n as f64 * 1e6 / (work + 2.0 * step), 0.0),
            "mutex" => (lock_ceiling_per_s(3, step, ctx.param("wake_us") as f64), 0.0),
            _ => sharded_cas_rates(n, shards, work, step).into(),
        };
        ctx.gauge("theory_ops", ops.round() as i64);
        ctx.gauge("theory_retries", retries.round() as i64);
    }

    fn view(&self) -> NodeView {
        let total: i64 = self.r.mem.cells().iter().sum();
        let expected = self.r.jobs.iter().sum::<u64>() as i64;
        let mut v = NodeView::new(NodeKind::Store, 1, "shared memory")
            .gauge("counter", total, expected)
            .badge(format!("round {}: counter {total}", self.r.round), Tone::Neutral);
        if self.r.mem.cells().len() > 1 {
            let shards: Vec<String> = self.r.mem.cells().iter().map(|c| c.to_string()).collect();
            v = v.badge(format!("shards {}", shards.join(" · ")), Tone::Neutral);
        }
        v = self.r.mem.marks(v, LOCK, rounds::name);
        match self.r.breach.latest() {
            Some(why) => v.badge(why, Tone::Bad),
            None => v,
        }
    }
}

impl WorkerThread<Ct> for Thread {
    fn worker(&mut self) -> &mut Worker {
        &mut self.w
    }

    /// Local work, then the next increment (or, with none left, join).
    fn work(&mut self, ctx: &mut Ctx<Ct>) {
        let round = self.w.round;
        self.w.work(ctx.param("work_us") as f64, Timer::Worked { round }, ctx);
    }

    fn reply(&mut self, reply: Reply, ctx: &mut Ctx<Ct>) {
        let cell = match self.plan {
            Plan::Cas(c) => c,
            _ => 0,
        };
        match (self.plan, reply) {
            (Plan::Rmw | Plan::Mutex, Reply::Value(v)) => self.issue(Access::Write(0, v + 1), ctx),
            (Plan::Rmw, Reply::Stored) | (Plan::Mutex, Reply::Unlocked) | (Plan::Cas(_), Reply::Swapped(true, _)) => {
                self.done(ctx)
            }
            (Plan::Mutex, Reply::Locked | Reply::Woken) => {
                ctx.observe("lock_wait_us", ctx.now().since(self.asked_lock));
                self.issue(Access::Read(0), ctx)
            }
            (Plan::Mutex, Reply::Stored) => self.issue(Access::Unlock(LOCK), ctx),
            (Plan::Cas(_), Reply::Value(v)) => self.issue(Access::Cas { cell, expect: v, new: v + 1 }, ctx),
            (Plan::Cas(_), Reply::Swapped(false, seen)) => {
                ctx.count("cas_retries", 1);
                self.issue(Access::Cas { cell, expect: seen, new: seen + 1 }, ctx)
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
}

impl Thread {
    /// An increment begins, as the strategy in force says.
    fn begin(&mut self, ctx: &mut Ctx<Ct>) {
        let shards = ctx.param("shards") as u32;
        self.plan = match ctx.strategy() {
            "mutex" => Plan::Mutex,
            "cas" => Plan::Cas(0),
            "sharded" => Plan::Cas(self.w.index % shards),
            _ => Plan::Rmw,
        };
        match self.plan {
            Plan::Mutex => {
                self.asked_lock = ctx.now();
                self.issue(Access::Lock(LOCK), ctx)
            }
            Plan::Rmw => self.issue(Access::Read(0), ctx),
            Plan::Cas(cell) => self.issue(Access::Read(cell), ctx),
        }
    }

    fn done(&mut self, ctx: &mut Ctx<Ct>) {
        self.w.left -= 1;
        ctx.count("increments", 1);
        self.work(ctx);
    }

    /// The next access, after its step; a read's value in hand is a critical section too.
    fn issue(&mut self, access: Access, ctx: &mut Ctx<Ct>) {
        self.w.issue(access, matches!(access, Access::Write(..) | Access::Cas { .. }), ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::interleaving::no_lost_update_chance;
    use crate::parts::testing::{between, failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("counter", strategy, seed)
    }

    const NAMES: &[&str] = &["increments", "cas_retries", "lost"];
    const OPS: usize = 0;
    const RETRIES: usize = 1;

    /// Increments a second from `from` s to `to` s.
    fn ops(at: &[Vec<i64>], from: usize, to: usize) -> f64 {
        between(at, OPS, from, to) / (to - from) as f64
    }

    #[test]
    fn try_rmw_loses_updates_in_the_first_round() {
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("read-modify-write", seed), 30, NAMES);
            let (when, why) = failed_at(r.as_ref(), "final-equals-expected").expect("a round ends short");
            assert!(when < 6.0 && why.contains("lost (first: thread"), "seed {seed}: {when} s, {why}");
            assert!(at[5][2] >= 1000 && r.metrics().counter("bad_rounds") >= 5, "seed {seed}: thousands lost");
        }
    }

    #[test]
    fn try_mutex_keeps_every_update_at_its_ceiling_and_stalls_with_its_holder() {
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("mutex", seed), 30, NAMES);
            assert!(failed_at(r.as_ref(), "final-equals-expected").is_none(), "seed {seed}");
            assert_eq!(at[30][2], 0, "seed {seed}: nothing lost");
            // The holder is descheduled within a few ms of 10 s, for 2 s: nobody increments.
            assert_eq!(between(&at, OPS, 11, 12), 0.0, "seed {seed}: the others go on without the lock");
            // Saturated, the lock passes 1 / (500 + 3 × 200 µs) = 909 a second; one step in a
            // thousand is preempted for 10 ms, which idles the lock about 3% of the time.
            let (got, line) = (ops(&at, 1, 9), r.metrics().gauge("theory_ops") as f64);
            assert!((0.9 * line..=1.01 * line).contains(&got), "seed {seed}: {got} ops/s, ceiling {line}");
        }
    }

    #[test]
    fn try_cas_outpaces_the_mutex_without_a_stall_and_keeps_more_in_the_storm() {
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("cas", seed), 30, NAMES);
            let (_, mutex) = run_sampled(&SPEC, &recipe("mutex", seed), 10, NAMES);
            assert!(failed_at(r.as_ref(), "final-equals-expected").is_none(), "seed {seed}");
            assert!(ops(&at, 1, 9) > 2.5 * ops(&mutex, 1, 9), "seed {seed}");
            assert!(between(&at, OPS, 11, 12) > 1000.0, "seed {seed}: the others go on while thread 0 is out");
            // The storm slows everyone's steps; the mutex also idles whenever its holder is out.
            let kept = |at: &[Vec<i64>]| ops(at, 21, 25) / ops(at, 2, 9);
            let (_, mutex) = run_sampled(&SPEC, &recipe("mutex", seed), 26, NAMES);
            assert!(kept(&at) > kept(&mutex) + 0.08, "seed {seed}: cas keeps {}, mutex {}", kept(&at), kept(&mutex));
        }
    }

    #[test]
    fn try_sharded_with_a_shard_each_never_retries_and_is_fastest() {
        for seed in 1..=5 {
            let (r, at) = run_sampled(&SPEC, &recipe("sharded", seed), 30, NAMES);
            let (_, cas) = run_sampled(&SPEC, &recipe("cas", seed), 10, NAMES);
            assert!(failed_at(r.as_ref(), "final-equals-expected").is_none(), "seed {seed}");
            assert_eq!(at[30][RETRIES], 0, "seed {seed}");
            assert!(ops(&at, 1, 9) > ops(&cas, 1, 9), "seed {seed}");
        }
        // Two threads to a shard contend again.
        let (_, at) = run_sampled(&SPEC, &recipe("sharded", 1).with_param("shards", 2), 10, NAMES);
        assert!(at[10][RETRIES] > 0);
    }

    #[test]
    fn a_race_between_single_increments_loses_one_with_chance_one_minus_one_over_n_factorial() {
        // Each thread does one read and one write; with exponential steps and no work, only the
        // serial orders lose nothing (parts::threads): 1/2 of rounds lose one with 2 threads, 5/6
        // with 3. Thousands of rounds: the binomial σ is under 0.8 points; ±3 points is 4σ.
        for (n, secs) in [(2, 60), (3, 60)] {
            let race = recipe("read-modify-write", n).with_param("threads", n as i64).with_param("increments", 1);
            let race = race.with_param("work_us", 0).with_param("preempt_pm", 0).with_param("step_us", 1000);
            let (r, _) = run_sampled(&SPEC, &race, secs, &[]);
            let (bad, rounds) = (r.metrics().counter("bad_rounds") as f64, r.metrics().counter("rounds") as f64);
            let want = 1.0 - no_lost_update_chance(n as u32);
            assert!(rounds > 4000.0 && (bad / rounds - want).abs() < 0.03, "{n} threads: {bad}/{rounds}, want {want}");
        }
    }

    #[test]
    fn the_mutex_meets_its_ceiling_and_cas_its_markov_chain() {
        // No preemption, measured after the fault plan (30 s on). A mutex never idle (no local
        // work): every holder is handed the lock parked, so each increment takes the wake-up and
        // three steps — a renewal process; over 70 s (64k increments) its rate's sampling error is
        // about 0.3%, ±2% is wide of it. The CAS loop with the default work: the chain of
        // parts::threads, its error about 0.5% over 60 s (160k increments, 75k retries); ±3%.
        let calm = |st: &str| recipe(st, 9).with_param("preempt_pm", 0);
        let (r, at) = run_sampled(&SPEC, &calm("mutex").with_param("work_us", 0), 100, NAMES);
        let (got, line) = (ops(&at, 30, 100), r.metrics().gauge("theory_ops") as f64);
        assert!((got - line).abs() < 0.02 * line, "mutex: {got} ops/s, ceiling {line}");
        let (r, at) = run_sampled(&SPEC, &calm("cas"), 90, NAMES);
        let (ops_line, retry_line) =
            (r.metrics().gauge("theory_ops") as f64, r.metrics().gauge("theory_retries") as f64);
        let (got, retries) = (ops(&at, 30, 90), between(&at, RETRIES, 30, 90) / 60.0);
        assert!((got - ops_line).abs() < 0.03 * ops_line, "cas: {got} ops/s, chain {ops_line}");
        assert!((retries - retry_line).abs() < 0.03 * retry_line, "cas: {retries} retries/s, chain {retry_line}");
    }
}
