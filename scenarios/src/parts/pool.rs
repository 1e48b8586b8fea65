//! A pool of c workers (threads, connections) each held by one piece of work until its holder releases it: acquire → granted, queued (FIFO, optional bound and wait timeout) or refused.
//!
//! Unlike a [`Station`](crate::parts::station::Station), no timer ends the work: the holder
//! decides when it is done (its downstream call answered, its transaction committed), so a
//! worker may sit held doing nothing. The pool says which held workers compute (`busy`) and
//! which wait on someone else (`blocked`): a full pool of blocked workers is the "503 with idle
//! CPU" of a Tomcat whose threads all wait on a dead dependency.
//!
//! ```text
//! acquire(job) ──> a worker free? Granted(seat)
//!                  queue has room? Queued(seat) ── wait timeout ──> expire(seat) -> job
//!                  else Refused(job)                (the scenario's timer, if any)
//! release(seat) ──> the job back, and the oldest waiter granted the worker (Released::next)
//! ```
//!
//! How a scenario uses it, inside its own `Node` impl (`Timer::AcquireTimeout(Seat)` is its own):
//! - `pool.acquire(job, ctx, Timer::AcquireTimeout)`: `Granted(seat)` (start the work),
//!   `Queued(seat)` (wait; the timer is set only if the pool has a wait timeout) or
//!   `Refused(job)` (answer "busy": 503, or "pool exhausted").
//! - when the work is done: `pool.release(seat, ctx)`: the job back, and `next`, a waiter now
//!   granted a worker (start its work). `set_size` may grant several.
//! - on the wait timer: `pool.expire(seat)`: `Some(job)` if it was still waiting (it failed).
//! - `set_busy(seat, false)` while the holder waits on something else, `true` when it computes.
//! - in `on_crash`: `pool.clear(ctx)` returns everything held, then everything waiting.
//!
//! As a queue it is M/G/c/K with K = c + bound (its holding times are whatever the holders
//! make them): a loss system (Erlang B) with bound 0, M/M/c (Erlang C) with no bound.

use faultline_core::{Ctx, Micros, Node, Time, TimerId};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// An acquisition's token, the same while it waits and once it holds a worker. Never reused
/// (not even after a crash), so a stale one is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seat(u64);

impl fmt::Display for Seat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seat {}", self.0)
    }
}

/// What became of an acquisition.
#[must_use = "a Refused job is handed back: answer it"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire<J> {
    /// A worker was free: it is held from now on.
    Granted(Seat),
    /// Every worker is held: the job waits, FIFO, for a release.
    Queued(Seat),
    /// Every worker is held and the queue is full (or there is none).
    Refused(J),
}

/// A released worker's job, and the waiter it went to (if any was waiting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released<J> {
    pub job: J,
    pub next: Option<Seat>,
}

#[derive(Clone, Debug)]
struct Held<J> {
    job: J,
    busy: bool,
    waited_us: Micros,
}

#[derive(Clone, Debug)]
struct Waiter<J> {
    seat: Seat,
    job: J,
    arrived: Time,
    timer: Option<TimerId>,
}

/// `c` workers and a FIFO queue of acquisitions. `J` is the scenario's job (who to answer).
/// Times are the node's own clock.
#[derive(Clone, Debug)]
pub struct Pool<J> {
    size: u32,
    /// Most acquisitions waiting; `None`: unbounded, `Some(0)`: none wait (a loss system).
    bound: Option<usize>,
    wait_timeout_us: Option<Micros>,
    held: BTreeMap<Seat, Held<J>>,
    queue: VecDeque<Waiter<J>>,
    next_seat: u64,
}

impl<J> Pool<J> {
    /// `size` workers, an unbounded queue and no wait timeout.
    pub fn new(size: u32) -> Pool<J> {
        Pool { size, bound: None, wait_timeout_us: None, held: BTreeMap::new(), queue: VecDeque::new(), next_seat: 0 }
    }
    /// At most `bound` acquisitions wait (0: a request that finds no free worker is refused).
    pub fn bounded(mut self, bound: usize) -> Pool<J> {
        self.bound = Some(bound);
        self
    }
    /// A waiter gives up after `timeout_us` (an acquire timeout): its timer is set on queueing.
    pub fn wait_timeout(mut self, timeout_us: Micros) -> Pool<J> {
        self.wait_timeout_us = Some(timeout_us);
        self
    }

    pub fn size(&self) -> u32 {
        self.size
    }
    pub fn bound(&self) -> Option<usize> {
        self.bound
    }
    /// Workers held (may exceed `size()` for a while after it was lowered).
    pub fn held(&self) -> u32 {
        self.held.len() as u32
    }
    /// Held workers that compute.
    pub fn busy(&self) -> u32 {
        self.held.values().filter(|h| h.busy).count() as u32
    }
    /// Held workers that wait on something else (a downstream call, a lock, a reply).
    pub fn blocked(&self) -> u32 {
        self.held() - self.busy()
    }
    /// Acquisitions waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Every worker is held.
    pub fn is_full(&self) -> bool {
        self.held() >= self.size
    }
    /// Whether an acquisition now would be granted or queued rather than refused.
    pub fn has_room(&self) -> bool {
        !self.is_full() || self.bound.is_none_or(|b| self.queue.len() < b)
    }
    pub fn get(&self, seat: Seat) -> Option<&J> {
        self.held.get(&seat).map(|h| &h.job).or_else(|| self.queue.iter().find(|w| w.seat == seat).map(|w| &w.job))
    }
    pub fn get_mut(&mut self, seat: Seat) -> Option<&mut J> {
        match self.held.get_mut(&seat) {
            Some(h) => Some(&mut h.job),
            None => self.queue.iter_mut().find(|w| w.seat == seat).map(|w| &mut w.job),
        }
    }
    /// How long a held seat waited for its worker.
    pub fn waited_us(&self, seat: Seat) -> Option<Micros> {
        self.held.get(&seat).map(|h| h.waited_us)
    }
    /// The held jobs, in the order their seats were taken, with whether each computes.
    pub fn holders(&self) -> impl Iterator<Item = (Seat, &J, bool)> {
        self.held.iter().map(|(s, h)| (*s, &h.job, h.busy))
    }
    /// The waiting jobs, oldest first.
    pub fn waiters(&self) -> impl Iterator<Item = (Seat, &J)> {
        self.queue.iter().map(|w| (w.seat, &w.job))
    }

    /// Marks a held worker as computing (`true`, as it is when granted) or waiting (`false`).
    pub fn set_busy(&mut self, seat: Seat, busy: bool) {
        if let Some(h) = self.held.get_mut(&seat) {
            h.busy = busy;
        }
    }
    /// A new queue bound, live: lowering it evicts no waiter; it refuses until below the bound.
    pub fn set_bound(&mut self, bound: Option<usize>) {
        self.bound = bound;
    }
    /// A new wait timeout for acquisitions queued from now on.
    pub fn set_wait_timeout(&mut self, timeout_us: Option<Micros>) {
        self.wait_timeout_us = timeout_us;
    }
    /// A new size, live. Raising it grants waiters at once (returned, oldest first); lowering
    /// it takes no worker away: holders keep theirs, and no one is granted until below it.
    pub fn set_size<N: Node>(&mut self, size: u32, ctx: &mut Ctx<N>) -> Vec<Seat> {
        self.size = size;
        std::iter::from_fn(|| self.grant_next(ctx)).collect()
    }

    /// Asks for a worker. `timer` makes the scenario's wait-timeout timer from the seat; it is
    /// set only when the job queues and the pool has a wait timeout.
    pub fn acquire<N: Node>(&mut self, job: J, ctx: &mut Ctx<N>, timer: impl FnOnce(Seat) -> N::Timer) -> Acquire<J> {
        if !self.has_room() {
            return Acquire::Refused(job);
        }
        // A free worker goes to the oldest waiter first; with one free and none waiting, to this job.
        let job = match self.try_acquire(job) {
            Ok(seat) => return Acquire::Granted(seat),
            Err(job) => job,
        };
        let seat = Seat(self.next_seat);
        self.next_seat += 1;
        let timer = self.wait_timeout_us.map(|t| ctx.set_timer(t, timer(seat)));
        self.queue.push_back(Waiter { seat, job, arrived: ctx.now(), timer });
        Acquire::Queued(seat)
    }

    /// Takes a worker now if one is free and no one waits, else hands the job back: never
    /// queues (a semaphore's `tryAcquire`, a bulkhead with no wait).
    pub fn try_acquire(&mut self, job: J) -> Result<Seat, J> {
        if self.is_full() || !self.queue.is_empty() {
            return Err(job);
        }
        let seat = Seat(self.next_seat);
        self.next_seat += 1;
        self.held.insert(seat, Held { job, busy: true, waited_us: 0 });
        Ok(seat)
    }

    /// The holder is done: its worker goes to the oldest waiter, if any (and the pool is not
    /// over its size). `None` for a seat that holds no worker (stale, or cleared by a crash).
    pub fn release<N: Node>(&mut self, seat: Seat, ctx: &mut Ctx<N>) -> Option<Released<J>> {
        let h = self.held.remove(&seat)?;
        Some(Released { job: h.job, next: self.grant_next(ctx) })
    }

    /// A waiter's timeout fired: `Some(job)` if it was still waiting (it gave up), `None` if it
    /// was granted (or cleared) meanwhile.
    pub fn expire(&mut self, seat: Seat) -> Option<J> {
        let i = self.queue.iter().position(|w| w.seat == seat)?;
        self.queue.remove(i).map(|w| w.job)
    }

    /// A waiter goes away before it is granted (its caller gave up): its timer is cancelled.
    pub fn withdraw<N: Node>(&mut self, seat: Seat, ctx: &mut Ctx<N>) -> Option<J> {
        let i = self.queue.iter().position(|w| w.seat == seat)?;
        let w = self.queue.remove(i)?;
        if let Some(t) = w.timer {
            ctx.cancel_timer(t);
        }
        Some(w.job)
    }

    /// Forgets everything (a crash): the held jobs, in seat order, then the waiters, oldest first.
    pub fn clear<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<J> {
        let mut lost: Vec<J> = std::mem::take(&mut self.held).into_values().map(|h| h.job).collect();
        for w in self.queue.drain(..) {
            if let Some(t) = w.timer {
                ctx.cancel_timer(t);
            }
            lost.push(w.job);
        }
        lost
    }

    fn grant_next<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Option<Seat> {
        if self.is_full() {
            return None;
        }
        let w = self.queue.pop_front()?;
        if let Some(t) = w.timer {
            ctx.cancel_timer(t);
        }
        self.held.insert(w.seat, Held { job: w.job, busy: true, waited_us: ctx.now().since(w.arrived) });
        Some(w.seat)
    }
}

/// What a database's connections cost its CPU (Postgres: a process per connection): each runnable
/// backend (on a core or queued for one) past the cores adds `per_backend_pct`% to every query's CPU
/// time (context switches, lock and snapshot contention), and each open connection, idle or not,
/// `per_connection_permille`‰ (its memory; snapshots scan every backend). With n backends all
/// computing on c cores, throughput is min(n, c) / (CPU × stretch): it peaks at n = c and falls
/// beyond (with 1% and 1‰, to under half at n = c + 100); backends that also wait (I/O, a client)
/// are runnable part of the time, so the peak lies at a few connections per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contention {
    pub per_backend_pct: u32,
    pub per_connection_permille: u32,
}

impl Contention {
    /// Every query's CPU time in % of its own (100: no contention).
    pub fn stretch_pct(&self, active: u32, cores: u32, open: u32) -> u32 {
        100 + self.per_backend_pct * active.saturating_sub(cores) + self.per_connection_permille * open / 10
    }

    /// Queries per second of CPU time with `n` backends, each holding a connection and computing.
    pub fn throughput(&self, n: u32, cores: u32) -> f64 {
        n.min(cores) as f64 * 100.0 / self.stretch_pct(n, cores, n) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::queueing;
    use crate::parts::testing::run_alone as run;
    use faultline_core::{Label, NodeKind, NodeView, MICROS_PER_MS};

    #[derive(Clone, Debug)]
    enum Msg {}

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Arrive,
        Done(Seat),
        Give(Seat),
    }

    /// Poisson arrivals at `lambda`/s, each holding a worker for an exponential time of mean
    /// `hold_us` once granted; counts what became of them after `warmup`.
    #[derive(Clone, Debug)]
    struct Open {
        pool: Pool<Time>,
        lambda: f64,
        hold_us: f64,
        warmup: Time,
        /// Arrivals, queued, refused, gave up, granted, total wait (µs) of the granted.
        n: [u64; 6],
    }

    impl Open {
        fn hold(&mut self, seat: Seat, ctx: &mut Ctx<Open>) {
            let us = ctx.rng().exponential(self.hold_us).max(1.0) as Micros;
            ctx.set_timer(us, Timer::Done(seat));
            let (arrived, waited) = (*self.pool.get(seat).expect("held"), self.pool.waited_us(seat).expect("held"));
            if arrived >= self.warmup {
                self.n[4] += 1;
                self.n[5] += waited;
            }
        }
    }

    impl Node for Open {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(1, Timer::Arrive);
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let now = ctx.now();
            match timer {
                Timer::Arrive => {
                    let gap = ctx.rng().exponential(1e6 / self.lambda).max(1.0) as Micros;
                    ctx.set_timer(gap, Timer::Arrive);
                    let counted = (now >= self.warmup) as u64;
                    self.n[0] += counted;
                    match self.pool.acquire(now, ctx, Timer::Give) {
                        Acquire::Granted(seat) => self.hold(seat, ctx),
                        Acquire::Queued(_) => self.n[1] += counted,
                        Acquire::Refused(_) => self.n[2] += counted,
                    }
                }
                Timer::Done(seat) => {
                    let next = self.pool.release(seat, ctx).expect("held").next;
                    if let Some(seat) = next {
                        self.hold(seat, ctx);
                    }
                }
                Timer::Give(seat) => {
                    let arrived = self.pool.expire(seat).expect("a timer is cancelled when its waiter is granted");
                    self.n[3] += (arrived >= self.warmup) as u64;
                }
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Queue, 0, "pool")
        }
    }

    /// A run of `secs` after a 20 s warm-up, holds of 10 ms on average (μ = 100/s).
    fn open(pool: Pool<Time>, lambda: f64, secs: u64, seed: u64) -> [u64; 6] {
        let o = Open { pool, lambda, hold_us: 10_000.0, warmup: Time::from_secs(20), n: [0; 6] };
        run(o, seed, Time::from_secs(20 + secs)).n
    }

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    #[test]
    fn a_pool_without_a_queue_refuses_what_erlang_b_says() {
        // M/M/c/c, c = 5 workers, a = λ/μ = 4 erlangs: Erlang B = (a^c/c!) / Σ_{k≤c} a^k/k!
        // = 19.9% (mmck with K = c). 1,000 s is 400k arrivals; over seeds 1–5 the refused share
        // fell within ±0.6% (relative) of B, so ±3% is five times that, while a worker more or
        // less moves B by 40% or more.
        let b = queueing::mmck(400.0, 100.0, 5, 5).block;
        assert!((b - 0.1991).abs() < 1e-3, "{b}");
        for seed in 1..=2 {
            let n = open(Pool::new(5).bounded(0), 400.0, 1000, seed);
            let refused = n[2] as f64 / n[0] as f64;
            assert!(close(refused, b, 0.03), "seed {seed}: refused {refused:.4}, Erlang B {b:.4}");
            assert_eq!(n[1], 0, "nothing queues");
        }
    }

    #[test]
    fn an_unbounded_queue_waits_as_erlang_c_says() {
        // M/M/c, c = 5, a = 4 (ρ = 0.8): P(wait) = C(5, 4) = 55.4%, mean wait Wq = C/(cμ − λ)
        // = 5.54 ms. Over 2,000 s (800k arrivals), seeds 1–5 fell within ±0.3% (P(wait)) and
        // ±1.6% (Wq, noisier: waits are correlated) of theory: the tolerances, 2.5% and 6%,
        // are four to eight times that, and a worker more moves Wq by 70%.
        let (c, wq) = (queueing::erlang_c(400.0, 100.0, 5).unwrap(), queueing::mmc_mean_wait(400.0, 100.0, 5).unwrap());
        let n = open(Pool::new(5), 400.0, 2000, 3);
        let (p_wait, mean_wait_us) = (n[1] as f64 / n[0] as f64, n[5] as f64 / n[4] as f64);
        assert!(close(p_wait, c, 0.025), "P(wait) {p_wait:.4}, Erlang C {c:.4}");
        assert!(close(mean_wait_us, wq * 1e6, 0.06), "Wq {mean_wait_us:.0} µs, Erlang C {:.0} µs", wq * 1e6);
        assert_eq!((n[2], n[3]), (0, 0), "nothing refused, no one gives up");
    }

    #[test]
    fn a_bounded_queue_refuses_as_mmck_says() {
        // An accept queue of 5 behind 5 workers at a = 4.5 (ρ = 0.9): M/M/5/10 refuses 7.6% and
        // makes the admitted wait 3.2 ms on average. Seeds 1–5 fell within ±1.8% (refused) and
        // ±1.1% (wait) of these over 2,000 s; ±4% and ±6% leave room, while an unbounded queue
        // would refuse none and a queue of 4 would refuse 9.1%.
        let m = queueing::mmck(450.0, 100.0, 5, 10);
        let n = open(Pool::new(5).bounded(5), 450.0, 2000, 4);
        let (refused, mean_wait_us) = (n[2] as f64 / n[0] as f64, n[5] as f64 / n[4] as f64);
        assert!(close(refused, m.block, 0.04), "refused {refused:.4}, M/M/c/K {:.4}", m.block);
        assert!(close(mean_wait_us, m.mean_wait * 1e6, 0.06), "Wq {mean_wait_us:.0} µs, {:.0}", m.mean_wait * 1e6);
    }

    #[test]
    fn waiters_that_time_out_leave_the_queue_and_are_never_granted() {
        // M/M/1 at ρ = 0.9 with an acquire timeout of 5 ms: some waiters give up, and every
        // one that gives up is out of the queue (the `expect` in `Give`); the rest are granted
        // (counted when granted) having waited less than the timeout, or still wait.
        let pool = Pool::new(1).wait_timeout(5 * MICROS_PER_MS);
        let o = Open { pool, lambda: 90.0, hold_us: 10_000.0, warmup: Time::ZERO, n: [0; 6] };
        let o = run(o, 5, Time::from_secs(200));
        let [arrived, queued, refused, gave_up, granted, waited] = o.n;
        assert!(refused == 0 && gave_up > 1000 && gave_up < queued, "{:?}", o.n);
        assert!(granted + gave_up + o.pool.queued() as u64 == arrived, "{:?}", o.n);
        assert!(waited < granted * 5 * MICROS_PER_MS, "{:?}", o.n);
    }

    /// A script of pool operations, one a millisecond, logging what each returned.
    #[derive(Clone, Debug)]
    struct Script {
        pool: Pool<u32>,
        log: Vec<String>,
    }

    impl Node for Script {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            let mut seats = Vec::new();
            for job in 0..4 {
                let a = self.pool.acquire(job, ctx, Timer::Give);
                self.log.push(format!("{a:?}"));
                seats.push(match a {
                    Acquire::Granted(s) | Acquire::Queued(s) => Some(s),
                    Acquire::Refused(_) => None,
                });
            }
            self.pool.set_busy(seats[0].unwrap(), false);
            self.log.push(format!(
                "held {} busy {} blocked {}",
                self.pool.held(),
                self.pool.busy(),
                self.pool.blocked()
            ));
            let r = self.pool.release(seats[1].unwrap(), ctx).unwrap();
            self.log.push(format!("{r:?} waited {:?}", self.pool.waited_us(r.next.unwrap())));
            self.log.push(format!("{:?}", self.pool.release(seats[1].unwrap(), ctx)));
            self.log.push(format!("{:?}", self.pool.set_size(3, ctx)));
            self.log.push(format!("{:?}", self.pool.clear(ctx)));
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            ctx.unhandled(&timer);
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Queue, 0, "pool")
        }
    }

    #[test]
    fn release_hands_the_worker_to_the_oldest_waiter() {
        // Two workers, one place in the queue: jobs 0 and 1 are granted, 2 waits, 3 is refused;
        // releasing 1 grants 2 (FIFO); a second release of the same seat is stale; raising the
        // size to 3 grants no one (no one waits); a crash returns held then waiting.
        let s = Script { pool: Pool::new(2).bounded(1).wait_timeout(MICROS_PER_MS), log: Vec::new() };
        let s = run(s, 1, Time::from_secs(1));
        let want = [
            "Granted(Seat(0))",
            "Granted(Seat(1))",
            "Queued(Seat(2))",
            "Refused(3)",
            "held 2 busy 1 blocked 1",
            "Released { job: 1, next: Some(Seat(2)) } waited Some(0)",
            "None",
            "[]",
            "[0, 2]",
        ];
        assert_eq!(s.log, want);
    }

    #[test]
    fn contention_peaks_at_the_cores_and_falls_under_half_a_hundred_past_them() {
        // The theory stated on `Contention`: throughput min(n, c) / stretch grows to n = c, then
        // falls (each backend past c costs every query 1%, each connection 0.1%); exact arithmetic.
        let db = Contention { per_backend_pct: 1, per_connection_permille: 1 };
        let best = (1..=400).max_by(|&a, &b| db.throughput(a, 8).total_cmp(&db.throughput(b, 8)));
        assert_eq!(best, Some(8));
        assert_eq!(db.stretch_pct(108, 8, 500), 250);
        let (peak, crowded) = (db.throughput(8, 8), db.throughput(108, 8));
        assert!((crowded / peak - 100.0 / 210.0).abs() < 1e-9, "{peak} {crowded}");
        assert!((1..400).all(|n| db.throughput(n + 8, 8) > db.throughput(n + 9, 8)));
    }
}
