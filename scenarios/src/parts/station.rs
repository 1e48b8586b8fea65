//! A service station: c servers in front of a FIFO queue, optionally bounded (M/M/c, M/M/c/K).
//!
//! The server count, queue bound and a slow-down factor can change live; a crash loses what
//! the station held and says what.
//!
//! ```text
//! offer(job) ──> [ queue (FIFO, optional capacity) ] ──> [ c servers ] ──> done(slot) -> job
//!                 full: Rejected(job) or Blocked(job)      each start sets one completion timer
//! ```
//!
//! How a scenario uses it, inside its own `Node` impl (`Timer::Done(Slot)` is the scenario's):
//! - `station.offer(job, ctx, Timer::Done)`: the job starts on an idle server (its completion
//!   timer is set), waits in the queue, or comes back `Rejected`/`Blocked` when the queue is full.
//! - on `Timer::Done(slot)`: `station.done(slot, ctx, Timer::Done)` frees the server, starts the
//!   next queued job and returns the finished one (`None` for a timer from before a crash).
//! - in `on_crash` (or for a scenario fault that wipes the workers): `station.crash(ctx)`
//!   returns every job it held, so the scenario can count or answer them.
//!
//! Blocking, two ways. `Full::Block` hands the job back: the caller keeps it (or keeps its
//! producer waiting) and offers it again after a `done`, `set_servers` or `set_queue_capacity`,
//! while `has_room()` says yes. `Full::Hold` keeps it here instead, on hold in FIFO order, and
//! the caller asks `admit_held` after each of those to let in what now fits — it gets the
//! admitted jobs back, to tell their senders. The station never calls anyone back itself.
//!
//! A job may bring work of its own (`offer_sized`: a batch's per-item cost on top of the drawn
//! per-request cost).
//!
//! For the caller's answers and its theory line: `expected_wait_us` (what a Retry-After should
//! say) and `theory_mean_wait` (Erlang C or M/M/c/K, whichever this station is).

use crate::parts::queueing;
use faultline_core::{Ctx, Micros, Node, Rng, Time, TimerId};
use std::collections::{BTreeMap, VecDeque};

/// A service-time distribution, in integer microseconds. Every draw is at least 1 µs, so a
/// station never completes work in zero time (and a loop of services always advances time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Always this long (M/D/c).
    Constant(Micros),
    /// Uniform over `lo_us..=hi_us`.
    Uniform { lo_us: Micros, hi_us: Micros },
    /// Exponential with this mean (M/M/c): memoryless, coefficient of variation 1.
    Exponential { mean_us: Micros },
    /// Heavy-tailed: `median_us · e^(σ·Z)`, Z standard normal, σ given in thousandths
    /// (`sigma_milli: 1000` is σ = 1, a mean 1.65× the median and a long tail).
    LogNormal { median_us: Micros, sigma_milli: u32 },
}

impl Service {
    /// Exponential service with a mean given in milliseconds: `Service::exponential_ms(50)`.
    pub fn exponential_ms(mean_ms: u64) -> Service {
        Service::Exponential { mean_us: mean_ms * 1_000 }
    }

    /// Exponential service with a parameter's mean in microseconds (at least 1).
    pub fn exponential_us(mean_us: i64) -> Service {
        Service::Exponential { mean_us: mean_us.max(1) as Micros }
    }

    /// One service time (≥ 1 µs). Continuous draws are rounded to the nearest microsecond,
    /// so the mean is not biased down by half a microsecond as truncation would do.
    pub fn sample_us(&self, rng: &mut Rng) -> Micros {
        let us = match *self {
            Service::Constant(d) => d,
            Service::Uniform { lo_us, hi_us } => rng.range(lo_us, hi_us),
            Service::Exponential { mean_us } => round_us(rng.exponential(mean_us as f64)),
            Service::LogNormal { median_us, sigma_milli } => {
                round_us(rng.log_normal(median_us as f64, sigma_milli as f64 / 1000.0))
            }
        };
        us.max(1)
    }

    /// The distribution's mean in microseconds (before the 1 µs floor, which only matters for
    /// means of a few microseconds). Log-normal: median · e^(σ²/2).
    pub fn mean_us(&self) -> f64 {
        match *self {
            Service::Constant(d) => d as f64,
            Service::Uniform { lo_us, hi_us } => (lo_us.min(hi_us) as f64 + hi_us.max(lo_us) as f64) / 2.0,
            Service::Exponential { mean_us } => mean_us as f64,
            Service::LogNormal { median_us, sigma_milli } => {
                let sigma = sigma_milli as f64 / 1000.0;
                median_us as f64 * libm::exp(sigma * sigma / 2.0)
            }
        }
    }

    /// One server's service rate in jobs per second (μ in the queueing formulas).
    pub fn rate_per_s(&self) -> f64 {
        1e6 / self.mean_us().max(1.0)
    }
}

fn round_us(x: f64) -> Micros {
    // `as` saturates: a huge draw becomes u64::MAX µs rather than wrapping.
    (x + 0.5) as Micros
}

/// What a full queue does with one more job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Full {
    /// Refuse it: the caller answers "busy" (429, 503) and the job is gone from here.
    #[default]
    Reject,
    /// Hand it back to be held: the caller keeps it (or keeps its producer waiting) and offers
    /// it again when `has_room()` — after a `done`, or after raising servers or capacity.
    Block,
    /// Keep it on hold, behind any already held: `admit_held` lets held jobs in, oldest first,
    /// as room frees. The wait a held job is charged starts when it is admitted.
    Hold,
}

/// What became of an offered job.
#[must_use = "a Rejected or Blocked job is handed back: answer it or hold it"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer<J> {
    /// A server was idle: the job is in service and its completion timer is set.
    Started,
    /// Every server is busy: the job waits in the queue (FIFO).
    Queued,
    /// The queue is full and the policy is `Full::Reject`.
    Rejected(J),
    /// The queue is full and the policy is `Full::Block`: hold the job and offer it again.
    Blocked(J),
    /// The policy is `Full::Hold` and the queue is full (or others are held already): the
    /// station keeps the job until `admit_held` lets it in (or `release_held` hands it back).
    OnHold,
}

impl<J> Offer<J> {
    /// The station took the job (started or queued).
    pub fn admitted(&self) -> bool {
        matches!(self, Offer::Started | Offer::Queued)
    }
}

/// A completion timer's token: put it in your timer (`Timer::Done(Slot)`) and give it back
/// to `done`. Tokens are never reused, so one from before a crash is recognised as stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u64);

/// A job that finished service, with how long it waited and was served (node's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished<J> {
    pub job: J,
    /// From the offer to the start of service (0 if a server was idle).
    pub waited_us: Micros,
    /// The service time drawn for it, slow-down included.
    pub service_us: Micros,
}

impl<J> Finished<J> {
    /// Time in the station: waiting plus service.
    pub fn sojourn_us(&self) -> Micros {
        self.waited_us + self.service_us
    }
}

#[derive(Clone, Debug)]
struct Waiting<J> {
    job: J,
    arrived: Time,
    /// The job's own work on top of the drawn service time (`offer_sized`; 0 for `offer`).
    extra_us: Micros,
}

#[derive(Clone, Debug)]
struct Busy<J> {
    job: J,
    waited_us: Micros,
    service_us: Micros,
    timer: TimerId,
}

/// c servers in front of a FIFO queue. `J` is the scenario's job (who to answer, ids, times).
/// Times are read from the node's own clock, like everything a node does.
#[derive(Clone, Debug)]
pub struct Station<J> {
    servers: u32,
    /// Most jobs waiting (not counting those in service); `None`: unbounded. K = c + capacity.
    capacity: Option<usize>,
    full: Full,
    service: Service,
    slow_pct: u32,
    queue: VecDeque<Waiting<J>>,
    /// Jobs refused a place under `Full::Hold`, oldest first (not admitted: not in `held()`).
    hold: VecDeque<(J, Micros)>,
    /// Jobs in service by slot token; it may hold more than `servers` for a while after the
    /// count is lowered (busy servers finish their job).
    busy: BTreeMap<u64, Busy<J>>,
    /// The next slot token; never reset (not even by a crash), so stale tokens never match.
    next_slot: u64,
    /// Time-weighted sums of queue length and busy servers since `since`, up to `last`.
    queue_area: u64,
    busy_area: u64,
    since: Time,
    last: Time,
}

impl<J> Station<J> {
    /// `servers` servers and an unbounded queue (M/M/c when service is exponential).
    pub fn new(servers: u32, service: Service) -> Station<J> {
        Station {
            servers,
            capacity: None,
            full: Full::Reject,
            service,
            slow_pct: 100,
            queue: VecDeque::new(),
            hold: VecDeque::new(),
            busy: BTreeMap::new(),
            next_slot: 0,
            queue_area: 0,
            busy_area: 0,
            since: Time::ZERO,
            last: Time::ZERO,
        }
    }

    /// Bounds the queue at `capacity` waiting jobs (M/M/c/K with K = c + capacity) and says
    /// what a full queue does.
    pub fn bounded(mut self, capacity: usize, full: Full) -> Station<J> {
        self.capacity = Some(capacity);
        self.full = full;
        self
    }

    pub fn servers(&self) -> u32 {
        self.servers
    }
    /// Jobs in service (may exceed `servers()` briefly after the count was lowered).
    pub fn busy(&self) -> u32 {
        self.busy.len() as u32
    }
    /// Jobs waiting for a server.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
    /// Everything the station holds: waiting and in service (what a crash would lose).
    pub fn held(&self) -> usize {
        self.queue.len() + self.busy.len()
    }
    /// Jobs on hold (`Full::Hold`): refused a place so far, not admitted, not in `held()`.
    pub fn on_hold(&self) -> usize {
        self.hold.len()
    }
    pub fn queue_capacity(&self) -> Option<usize> {
        self.capacity
    }
    pub fn full_policy(&self) -> Full {
        self.full
    }
    pub fn service(&self) -> Service {
        self.service
    }
    pub fn slowdown_pct(&self) -> u32 {
        self.slow_pct
    }
    /// Whether an offer now would be admitted (a server is idle or the queue has room).
    pub fn has_room(&self) -> bool {
        self.busy() < self.servers || self.capacity.is_none_or(|k| self.queue.len() < k)
    }
    /// The waiting jobs, oldest first.
    pub fn queued(&self) -> impl Iterator<Item = &J> {
        self.queue.iter().map(|w| &w.job)
    }
    /// The jobs in service, in the order they started.
    pub fn in_service(&self) -> impl Iterator<Item = &J> {
        self.busy.values().map(|b| &b.job)
    }

    /// The service-time distribution for jobs that start from now on.
    pub fn set_service(&mut self, service: Service) {
        self.service = service;
    }
    /// Service times are multiplied by `pct`/100 (200: twice as slow) for jobs that start
    /// from now on; jobs already in service keep the time they drew.
    pub fn set_slowdown_pct(&mut self, pct: u32) {
        self.slow_pct = pct;
    }
    /// A new queue bound (`None`: unbounded). Lowering it evicts no one: jobs already queued
    /// stay, and offers are refused until the queue is below the bound.
    pub fn set_queue_capacity(&mut self, capacity: Option<usize>) {
        self.capacity = capacity;
    }
    pub fn set_full_policy(&mut self, full: Full) {
        self.full = full;
    }

    /// A new server count, live. Raising it starts queued jobs at once; lowering it lets
    /// busy servers finish their job, and no job starts until fewer than `servers` are busy.
    pub fn set_servers<N: Node>(&mut self, servers: u32, ctx: &mut Ctx<N>, timer: impl Fn(Slot) -> N::Timer) {
        self.servers = servers;
        self.pull(ctx, &timer);
    }

    /// Offers a job: it starts on an idle server, waits in the queue, or is refused when the
    /// queue is full (`Rejected` or `Blocked`, by the policy, with the job handed back; or kept
    /// `OnHold`). Under `Full::Hold` a job offered while others are held joins them, behind.
    /// `timer` makes the scenario's completion timer from a slot: `Timer::Done`.
    pub fn offer<N: Node>(&mut self, job: J, ctx: &mut Ctx<N>, timer: impl Fn(Slot) -> N::Timer) -> Offer<J> {
        self.offer_sized(job, 0, ctx, timer)
    }

    /// As `offer`, for a job that brings work of its own: its service time is the drawn one plus
    /// `extra_us` (a batch's per-item cost on top of a fixed per-request cost), slow-down applied
    /// to both. `offer` is `offer_sized` with 0, and draws exactly as before.
    pub fn offer_sized<N: Node>(
        &mut self,
        job: J,
        extra_us: Micros,
        ctx: &mut Ctx<N>,
        timer: impl Fn(Slot) -> N::Timer,
    ) -> Offer<J> {
        if self.full == Full::Hold && !self.hold.is_empty() {
            self.hold.push_back((job, extra_us));
            return Offer::OnHold;
        }
        self.admit(job, extra_us, ctx, &timer)
    }

    /// Lets held jobs in (`Full::Hold`), oldest first, while there is room, and returns them
    /// (copies: the station keeps the jobs) so the caller can tell their senders. Call it after
    /// each `done` and each change that may make room (servers, capacity, slow-down).
    pub fn admit_held<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: impl Fn(Slot) -> N::Timer) -> Vec<J>
    where
        J: Clone,
    {
        let mut admitted = Vec::new();
        while self.has_room() {
            let Some((job, extra_us)) = self.hold.pop_front() else { break };
            admitted.push(job.clone());
            let offer = self.admit(job, extra_us, ctx, &timer);
            debug_assert!(offer.admitted(), "has_room promised a place");
        }
        admitted
    }

    /// Hands back every held job, oldest first, unadmitted: for a caller that stops holding
    /// (a new policy) and will answer them, or offer them again, itself.
    pub fn release_held(&mut self) -> Vec<J> {
        self.hold.drain(..).map(|(job, _)| job).collect()
    }

    /// The mean service time, slow-down included, in microseconds (1/μ).
    pub fn mean_service_us(&self) -> f64 {
        self.service.mean_us() * self.slow_pct as f64 / 100.0
    }

    /// How long, in expectation, a job offered now would wait for a server: 0 with a server
    /// idle and none queued; else (ahead + 1)/(c·μ), `ahead` being the jobs queued and held
    /// before it, as each departure while all c servers are busy takes 1/(cμ) on average
    /// (exact for exponential service, which is memoryless; for others, an estimate from the
    /// mean). What a Retry-After should say: the time for the queue ahead to drain.
    pub fn expected_wait_us(&self) -> Micros {
        if self.busy() < self.servers && self.queue.is_empty() {
            return 0;
        }
        let ahead = (self.queue.len() + self.hold.len() + 1) as f64;
        round_us(ahead * self.mean_service_us() / self.servers.max(1) as f64)
    }

    /// The steady-state mean wait before service (seconds) that queueing theory gives for
    /// Poisson arrivals at `lambda` jobs/s into this station as it is set now — c servers,
    /// exponential service of the present mean (slow-down included): Erlang C when the queue
    /// is unbounded (`None` when λ ≥ cμ: the queue has no steady state), M/M/c/K with
    /// K = c + capacity when it is bounded (refusals keep it stable). Exact for `Full::Reject`
    /// with nothing retried; with `Block`/`Hold` (refused jobs return) it is a reference only.
    pub fn theory_mean_wait(&self, lambda: f64) -> Option<f64> {
        let (mu, c) = (1e6 / self.mean_service_us().max(1.0), self.servers);
        match self.capacity {
            _ if c == 0 => None,
            None => queueing::mmc_mean_wait(lambda, mu, c),
            Some(k) => Some(queueing::mmck(lambda, mu, c, c.saturating_add(k as u32)).mean_wait),
        }
    }

    fn admit<N: Node>(
        &mut self,
        job: J,
        extra_us: Micros,
        ctx: &mut Ctx<N>,
        timer: &impl Fn(Slot) -> N::Timer,
    ) -> Offer<J> {
        let now = ctx.now();
        self.advance(now);
        if self.busy() < self.servers && self.queue.is_empty() {
            self.start(Waiting { job, arrived: now, extra_us }, ctx, timer);
            return Offer::Started;
        }
        if self.capacity.is_some_and(|k| self.queue.len() >= k) {
            return match self.full {
                Full::Reject => Offer::Rejected(job),
                Full::Block => Offer::Blocked(job),
                Full::Hold => {
                    self.hold.push_back((job, extra_us));
                    Offer::OnHold
                }
            };
        }
        self.queue.push_back(Waiting { job, arrived: now, extra_us });
        Offer::Queued
    }

    /// A completion timer fired: frees its server, starts the next queued job(s), and returns
    /// the finished job. `None` for a slot this station no longer holds (the job was lost in
    /// a crash): a job is never completed twice, nor after a crash.
    pub fn done<N: Node>(
        &mut self,
        slot: Slot,
        ctx: &mut Ctx<N>,
        timer: impl Fn(Slot) -> N::Timer,
    ) -> Option<Finished<J>> {
        self.advance(ctx.now());
        let b = self.busy.remove(&slot.0)?;
        self.pull(ctx, &timer);
        Some(Finished { job: b.job, waited_us: b.waited_us, service_us: b.service_us })
    }

    /// Loses everything held — in service first (in the order they started), then the queue
    /// (oldest first) — and cancels the completion timers. The returned jobs' count is what
    /// was lost. Jobs on hold are forgotten too, but not returned: they were never admitted
    /// (take them first with `release_held` to answer them). Call it from `on_crash` (the kernel already drops that node's timers; the
    /// slots would be recognised as stale anyway) or for a fault that wipes the workers.
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<J> {
        self.advance(ctx.now());
        let mut lost = Vec::with_capacity(self.held());
        for (_, b) in std::mem::take(&mut self.busy) {
            ctx.cancel_timer(b.timer);
            lost.push(b.job);
        }
        lost.extend(self.queue.drain(..).map(|w| w.job));
        self.hold.clear();
        lost
    }

    /// Time-average number of jobs waiting since `reset_averages` (or time 0), up to `now`.
    pub fn mean_queue(&self, now: Time) -> f64 {
        let (area, span) = self.area(self.queue_area, self.queue.len(), now);
        if span == 0 {
            self.queue.len() as f64
        } else {
            area as f64 / span as f64
        }
    }

    /// Time-average number of busy servers (utilisation × c) since `reset_averages`.
    pub fn mean_busy(&self, now: Time) -> f64 {
        let (area, span) = self.area(self.busy_area, self.busy.len(), now);
        if span == 0 {
            self.busy.len() as f64
        } else {
            area as f64 / span as f64
        }
    }

    /// A windowed utilisation gauge: the share of servers busy since the last reading (or
    /// `reset_averages`), in whole percent, then starts afresh from `now`.
    pub fn take_busy_pct(&mut self, now: Time) -> i64 {
        let pct = (self.mean_busy(now) * 100.0 / self.servers().max(1) as f64).round() as i64;
        self.reset_averages(now);
        pct
    }

    /// Starts the time averages afresh from `now` (after a warm-up, or a change of load).
    pub fn reset_averages(&mut self, now: Time) {
        self.queue_area = 0;
        self.busy_area = 0;
        self.since = now;
        self.last = now;
    }

    fn area(&self, area: u64, len: usize, now: Time) -> (u64, Micros) {
        let tail = (len as u64).saturating_mul(now.since(self.last));
        (area.saturating_add(tail), now.max(self.last).since(self.since))
    }

    /// Accumulates the averages up to `now`. A node's clock can be set back (a clock fault):
    /// the integral then waits until the clock passes `last` again rather than count twice.
    fn advance(&mut self, now: Time) {
        let dt = now.since(self.last);
        if dt > 0 {
            self.queue_area = self.queue_area.saturating_add((self.queue.len() as u64).saturating_mul(dt));
            self.busy_area = self.busy_area.saturating_add((self.busy.len() as u64).saturating_mul(dt));
            self.last = now;
        }
    }

    fn pull<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: &impl Fn(Slot) -> N::Timer) {
        self.advance(ctx.now());
        while self.busy() < self.servers {
            let Some(next) = self.queue.pop_front() else { break };
            self.start(next, ctx, timer);
        }
    }

    fn start<N: Node>(&mut self, w: Waiting<J>, ctx: &mut Ctx<N>, timer: &impl Fn(Slot) -> N::Timer) {
        let drawn = self.service.sample_us(ctx.rng()).saturating_add(w.extra_us);
        let service_us = (drawn.saturating_mul(self.slow_pct as u64) / 100).max(1);
        let slot = Slot(self.next_slot);
        self.next_slot += 1;
        let waited_us = ctx.now().since(w.arrived);
        let t = ctx.set_timer(service_us, timer(slot));
        self.busy.insert(slot.0, Busy { job: w.job, waited_us, service_us, timer: t });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::run_alone as run;
    use faultline_core::{Label, NodeKind, NodeView, MICROS_PER_MS, MICROS_PER_S};

    #[derive(Clone, Debug)]
    enum Msg {}

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    #[derive(Clone, Debug)]
    enum Timer {
        Arrive,
        Step(usize),
        Done(Slot),
    }

    impl Label for Timer {
        fn label(&self) -> &'static str {
            match self {
                Timer::Arrive => "arrive",
                Timer::Step(_) => "step",
                Timer::Done(_) => "done",
            }
        }
    }

    // ---- Theory: Poisson arrivals into one station --------------------------------------

    /// Poisson arrivals (rate `1e6 / gap_mean_us` per second) into a station; statistics of
    /// jobs that arrive after `warmup`, kept per batch of `batch_us` for batch-means errors.
    #[derive(Clone, Debug)]
    struct Open {
        st: Station<Time>,
        gap_mean_us: f64,
        warmup: Time,
        batch_us: Micros,
        /// Per batch: arrivals, arrivals that had to queue, refused, finished, total wait.
        batches: Vec<[u64; 5]>,
        service_sum_us: u64,
    }

    impl Open {
        fn new(st: Station<Time>, lambda_per_s: f64, warmup_s: u64, batch_s: u64) -> Open {
            Open {
                st,
                gap_mean_us: 1e6 / lambda_per_s,
                warmup: Time::from_secs(warmup_s),
                batch_us: batch_s * MICROS_PER_S,
                batches: Vec::new(),
                service_sum_us: 0,
            }
        }
        fn batch(&mut self, arrived: Time) -> Option<&mut [u64; 5]> {
            let i = (arrived.micros().checked_sub(self.warmup.micros())? / self.batch_us) as usize;
            if self.batches.len() <= i {
                self.batches.resize(i + 1, [0; 5]);
            }
            Some(&mut self.batches[i])
        }
        fn total(&self, i: usize) -> u64 {
            self.batches.iter().map(|b| b[i]).sum()
        }
        /// A ratio of two batch columns over the whole run, and its batch-means standard
        /// error (the batches are long enough to be nearly independent).
        fn ratio(&self, num: usize, den: usize) -> (f64, f64) {
            let r = self.total(num) as f64 / self.total(den) as f64;
            let k = self.batches.len() as f64;
            let rs: Vec<f64> = self.batches.iter().map(|b| b[num] as f64 / b[den].max(1) as f64).collect();
            let var = rs.iter().map(|x| (x - r) * (x - r)).sum::<f64>() / (k - 1.0);
            (r, libm::sqrt(var / k))
        }
        fn schedule(&mut self, ctx: &mut Ctx<Open>) {
            let gap = round_us(ctx.rng().exponential(self.gap_mean_us)).max(1);
            ctx.set_timer(gap, Timer::Arrive);
        }
    }

    impl Node for Open {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.schedule(ctx);
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let now = ctx.now();
            match timer {
                Timer::Arrive => {
                    if now == self.warmup {
                        self.st.reset_averages(now);
                    }
                    let offer = self.st.offer(now, ctx, Timer::Done);
                    if let Some(b) = self.batch(now) {
                        b[0] += 1;
                        b[1] += matches!(offer, Offer::Queued) as u64;
                        b[2] += !offer.admitted() as u64;
                    }
                    self.schedule(ctx);
                }
                Timer::Done(slot) => {
                    let f = self.st.done(slot, ctx, Timer::Done).expect("no crash here: every slot is live");
                    if let Some(b) = self.batch(f.job) {
                        b[3] += 1;
                        b[4] += f.waited_us;
                        self.service_sum_us += f.service_us;
                    }
                }
                Timer::Step(_) => unreachable!(),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Queue, 0, "station")
        }
    }

    fn mm(c: u32, capacity: Option<usize>, lambda: f64, secs: u64, seed: u64) -> Open {
        let st = Station::new(c, Service::exponential_ms(50));
        let st = match capacity {
            Some(k) => st.bounded(k, Full::Reject),
            None => st,
        };
        // The averages restart at the first arrival after the warm-up: 100 s is thousands of
        // services, far longer than the queue takes to forget it started empty.
        let mut o = Open::new(st, lambda, 100, secs / 50);
        o.warmup = Time::from_secs(100);
        // Jobs are counted by when they arrived; the 100 s after the window let them finish.
        let mut o = run(o, seed, Time::from_secs(100 + secs + 100));
        o.batches.truncate(50);
        o
    }

    /// Whether `got` is within `tol` (relative) of `want`.
    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    #[test]
    fn mmc_wait_matches_erlang_c() {
        // M/M/c with c = 4, μ = 20/s (exponential 50 ms), at ρ = 0.5, 0.7 and 0.85.
        // Erlang C (Kleinrock, Queueing Systems vol. 1, §3.5; Gross & Harris §2.3):
        //   a = λ/μ,  P(wait) = C(c, a) = [a^c/c! · c/(c−a)] / [Σ_{k<c} a^k/k! + a^c/c! · c/(c−a)],
        //   Wq = C(c, a) / (cμ − λ),  Lq = λ·Wq (Little),  mean busy servers = a.
        // 20,000 s after a 100 s warm-up: 0.8–1.4 million arrivals per load, 0.6 s in all.
        // Waits are strongly correlated in time, so the error is measured by batch means
        // (50 batches): 1.1–1.7% for Wq and Lq, 0.3–0.6% for P(wait), < 0.2% for busy servers,
        // over six seeds. Tolerances are ~4 of those standard errors — 6%, 2.5% and 1.5% —
        // and still catch a wrong formula: one server fewer or more moves Wq by 40% or more.
        for (lambda, seed) in [(40.0, 1), (56.0, 2), (68.0, 3)] {
            let secs = 20_000;
            let o = mm(4, None, lambda, secs, seed);
            let end = Time::from_secs(200 + secs);
            let (wait, wait_se) = o.ratio(4, 3);
            let (p_wait, p_se) = o.ratio(1, 0);
            let wq = queueing::mmc_mean_wait(lambda, 20.0, 4).unwrap() * 1e6;
            let c = queueing::erlang_c(lambda, 20.0, 4).unwrap();
            assert!(close(wait, wq, 0.06), "λ={lambda}: mean wait {wait:.0} µs (±{wait_se:.0}), Erlang C {wq:.0} µs");
            assert!(close(p_wait, c, 0.025), "λ={lambda}: P(wait) {p_wait:.4} (±{p_se:.4}), Erlang C {c:.4}");
            let lq = lambda * wq / 1e6;
            let (got_lq, busy) = (o.st.mean_queue(end), o.st.mean_busy(end));
            assert!(close(got_lq, lq, 0.06), "λ={lambda}: time-average queue {got_lq:.4}, λ·Wq = {lq:.4}");
            assert!(close(busy, lambda / 20.0, 0.015), "λ={lambda}: mean busy {busy:.4}, a = {}", lambda / 20.0);
            assert_eq!(o.total(2), 0, "an unbounded queue refuses nothing");
        }
    }

    #[test]
    fn mmck_blocking_matches_the_formula() {
        // M/M/c/K with c = 4, a queue of 6 (K = 10), μ = 20/s, at ρ = 0.7, 1.0 and 1.5.
        // Birth–death steady state (Gross & Harris §2.5; Kleinrock vol. 1 §3.6):
        //   p_n ∝ a^n/n! for n ≤ c,  a^n/(c!·c^(n−c)) for c < n ≤ K;  blocking = p_K
        //   (Poisson arrivals see time averages: PASTA); Lq = Σ (n−c)·p_n; Wq = Lq / (λ(1−p_K)).
        // 10,000 s a load. Batch-means standard errors over six seeds: blocking 2.1–2.6% at
        // ρ = 0.7 (only 1.6% of 560k arrivals are refused), 0.8% at 1.0, 0.2–0.3% at 1.5;
        // waits 0.8–1%, 0.5%, 0.3%. Each tolerance is ~4 standard errors; a queue one place
        // shorter or longer moves the blocking probability by 20–40% at these loads.
        for (lambda, block_tol, wait_tol, seed) in
            [(56.0, 0.10, 0.04, 7), (80.0, 0.04, 0.02, 8), (120.0, 0.015, 0.012, 9)]
        {
            let secs = 10_000;
            let o = mm(4, Some(6), lambda, secs, seed);
            let end = Time::from_secs(200 + secs);
            let t = queueing::mmck(lambda, 20.0, 4, 10);
            let (block, block_se) = o.ratio(2, 0);
            let (wait, wait_se) = o.ratio(4, 3);
            assert!(
                close(block, t.block, block_tol),
                "λ={lambda}: refused {block:.4} (±{block_se:.4}), p_K {:.4}",
                t.block
            );
            let wq = t.mean_wait * 1e6;
            assert!(close(wait, wq, wait_tol), "λ={lambda}: mean wait {wait:.0} µs (±{wait_se:.0}), theory {wq:.0} µs");
            let lq = o.st.mean_queue(end);
            assert!(
                close(lq, t.mean_queue, 2.0 * wait_tol),
                "λ={lambda}: mean queue {lq:.4}, theory {:.4}",
                t.mean_queue
            );
            assert!(o.st.queue_len() <= 6);
        }
    }

    #[test]
    fn slowdown_doubles_the_mean_service_time() {
        // Exponential 10 ms slowed to 200%: the mean of ~100k services should be 20 ms. The
        // standard error of the mean of n exponentials is mean/√n = 0.3%: ±2% is > 6σ, and a
        // factor applied twice (or not at all) is off by 100% or 50%.
        let st = Station::new(1, Service::exponential_ms(10));
        let mut o = Open::new(st, 20.0, 0, 100);
        o.st.set_slowdown_pct(200);
        let o = run(o, 21, Time::from_secs(5_100));
        let served = o.total(3);
        let mean = o.service_sum_us as f64 / served as f64;
        assert!(served > 90_000, "{served}");
        assert!(close(mean, 20_000.0, 0.02), "mean service {mean:.0} µs at 200%");
    }

    // ---- Deterministic behaviour: a node that follows a script ---------------------------

    #[derive(Clone, Debug)]
    enum Step {
        Offer(u64),
        Servers(u32),
        Slow(u32),
        Crash,
        /// Hands `done` a slot token by number, as a stale timer from before a crash would.
        Stale(u64),
        /// Takes the held jobs back (`release_held`).
        Release,
        /// Offers a job with this much work of its own (ms), by `offer_sized`.
        Sized(u64, u64),
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Log {
        Started(u64),
        Queued(u64),
        Rejected(u64),
        Blocked(u64),
        OnHold(u64),
        /// Let in from hold by `admit_held`.
        Admitted(u64),
        Released(Vec<u64>),
        /// Job, waited, service (ms).
        Finished(u64, u64, u64),
        Lost(Vec<u64>),
        Stale,
        /// Busy servers and queue length right after a step.
        Holds(u32, usize),
    }

    /// Runs `script` (times in ms) against `st`; Blocked jobs are held and offered again
    /// after each completion while the station has room, as the module doc says to.
    #[derive(Clone, Debug)]
    struct Scripted {
        st: Station<u64>,
        script: Vec<(u64, Step)>,
        held: VecDeque<u64>,
        log: Vec<(u64, Log)>,
    }

    impl Scripted {
        fn offer(&mut self, job: u64, ctx: &mut Ctx<Scripted>) -> bool {
            let entry = match self.st.offer(job, ctx, Timer::Done) {
                Offer::Started => Log::Started(job),
                Offer::Queued => Log::Queued(job),
                Offer::Rejected(j) => Log::Rejected(j),
                Offer::Blocked(j) => {
                    self.held.push_back(j);
                    Log::Blocked(j)
                }
                Offer::OnHold => Log::OnHold(job),
            };
            let admitted = matches!(entry, Log::Started(_) | Log::Queued(_));
            self.log.push((ctx.now().as_ms(), entry));
            admitted
        }

        /// As the module doc says to, after each completion or change that may make room.
        fn admit_held(&mut self, ctx: &mut Ctx<Scripted>) {
            let now = ctx.now().as_ms();
            for job in self.st.admit_held(ctx, Timer::Done) {
                self.log.push((now, Log::Admitted(job)));
            }
        }
    }

    impl Node for Scripted {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (i, (at_ms, _)) in self.script.iter().enumerate() {
                ctx.set_timer(at_ms * MICROS_PER_MS, Timer::Step(i));
            }
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let now = ctx.now().as_ms();
            match timer {
                Timer::Step(i) => {
                    match self.script[i].1.clone() {
                        Step::Offer(job) => {
                            self.offer(job, ctx);
                        }
                        Step::Sized(job, extra_ms) => {
                            let offer = self.st.offer_sized(job, extra_ms * MICROS_PER_MS, ctx, Timer::Done);
                            assert!(offer.admitted());
                        }
                        Step::Servers(c) => {
                            self.st.set_servers(c, ctx, Timer::Done);
                            self.admit_held(ctx);
                        }
                        Step::Release => {
                            let back = self.st.release_held();
                            self.log.push((now, Log::Released(back)));
                        }
                        Step::Slow(pct) => self.st.set_slowdown_pct(pct),
                        Step::Crash => {
                            let lost = self.st.crash(ctx);
                            self.log.push((now, Log::Lost(lost)));
                        }
                        Step::Stale(n) => {
                            assert!(self.st.done(Slot(n), ctx, Timer::Done).is_none());
                            self.log.push((now, Log::Stale));
                        }
                    }
                    self.log.push((now, Log::Holds(self.st.busy(), self.st.queue_len())));
                }
                Timer::Done(slot) => {
                    let f = self.st.done(slot, ctx, Timer::Done).expect("a live slot");
                    let ms = |us: Micros| us / MICROS_PER_MS;
                    self.log.push((now, Log::Finished(f.job, ms(f.waited_us), ms(f.service_us))));
                    while self.st.has_room() {
                        let Some(job) = self.held.pop_front() else { break };
                        assert!(self.offer(job, ctx), "has_room promised the offer would be admitted");
                    }
                    self.admit_held(ctx);
                }
                Timer::Arrive => unreachable!(),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Queue, 0, "station")
        }
    }

    /// The log of `script` run against `st`, without the `Holds` entries unless `holds`.
    fn script(st: Station<u64>, script: Vec<(u64, Step)>, holds: bool) -> Vec<(u64, Log)> {
        let node = Scripted { st, script, held: VecDeque::new(), log: Vec::new() };
        let log = run(node, 1, Time::from_secs(10)).log;
        log.into_iter().filter(|(_, l)| holds || !matches!(l, Log::Holds(..))).collect()
    }

    fn offers(at_ms: u64, jobs: std::ops::Range<u64>) -> Vec<(u64, Step)> {
        jobs.map(|j| (at_ms, Step::Offer(j))).collect()
    }

    const TEN_MS: Service = Service::Constant(10 * MICROS_PER_MS);

    #[test]
    fn serves_in_fifo_order() {
        use Log::*;
        let log = script(Station::new(1, TEN_MS), offers(0, 0..4), false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Queued(1)), (0, Queued(2)), (0, Queued(3)),
            (10, Finished(0, 0, 10)), (20, Finished(1, 10, 10)), (30, Finished(2, 20, 10)), (40, Finished(3, 30, 10)),
        ];
        assert_eq!(log, want);
    }

    #[test]
    fn a_sized_job_is_served_for_the_drawn_time_plus_its_own_work() {
        // A 10 ms base plus 5 ms, then plus 0; the slow-down (200%, set while both wait) applies
        // to the jobs that start after it, and to both parts: the third takes (10 + 5) × 2.
        use Log::*;
        let steps = vec![(0, Step::Sized(0, 5)), (0, Step::Sized(1, 0)), (0, Step::Slow(200)), (0, Step::Sized(2, 5))];
        let log = script(Station::new(1, TEN_MS), steps, false);
        assert_eq!(log, vec![(15, Finished(0, 0, 15)), (35, Finished(1, 15, 20)), (65, Finished(2, 35, 30))]);
    }

    #[test]
    fn a_full_queue_rejects_or_blocks() {
        use Log::*;
        let log = script(Station::new(1, TEN_MS).bounded(2, Full::Reject), offers(0, 0..5), false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Queued(1)), (0, Queued(2)), (0, Rejected(3)), (0, Rejected(4)),
            (10, Finished(0, 0, 10)), (20, Finished(1, 10, 10)), (30, Finished(2, 20, 10)),
        ];
        assert_eq!(log, want);
        // Blocked jobs come back to the caller, who offers them again as room frees up:
        // each completion starts a queued job and so frees one place. The station counts a
        // job's wait from the offer it admitted (time spent held is the caller's to count).
        let log = script(Station::new(1, TEN_MS).bounded(2, Full::Block), offers(0, 0..5), false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Queued(1)), (0, Queued(2)), (0, Blocked(3)), (0, Blocked(4)),
            (10, Finished(0, 0, 10)), (10, Queued(3)),
            (20, Finished(1, 10, 10)), (20, Queued(4)),
            (30, Finished(2, 20, 10)), (40, Finished(3, 20, 10)), (50, Finished(4, 20, 10)),
        ];
        assert_eq!(log, want);
        // A queue of 0 is a pure loss system (M/M/c/c): busy servers mean refusal.
        let log = script(Station::new(2, TEN_MS).bounded(0, Full::Reject), offers(0, 0..3), false);
        assert_eq!(log[..3], [(0, Started(0)), (0, Started(1)), (0, Rejected(2))]);
    }

    #[test]
    fn a_full_queue_on_hold_admits_in_fifo_order_as_room_frees() {
        use Log::*;
        // The station keeps what does not fit and lets it in, oldest first, one place per
        // completion: the same order and waits as the caller-held `Block` above. Job 5,
        // offered at 5 ms behind 3 and 4, stays behind them.
        let mut steps = offers(0, 0..5);
        steps.push((5, Step::Offer(5)));
        let log = script(Station::new(1, TEN_MS).bounded(2, Full::Hold), steps, false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Queued(1)), (0, Queued(2)), (0, OnHold(3)), (0, OnHold(4)), (5, OnHold(5)),
            (10, Finished(0, 0, 10)), (10, Admitted(3)),
            (20, Finished(1, 10, 10)), (20, Admitted(4)),
            (30, Finished(2, 20, 10)), (30, Admitted(5)),
            (40, Finished(3, 20, 10)), (50, Finished(4, 20, 10)), (60, Finished(5, 20, 10)),
        ];
        assert_eq!(log, want);
        // A second server makes room for two at once; `release_held` hands the rest back
        // unadmitted; a crash loses the admitted and forgets the held without returning them.
        let mut steps = offers(0, 0..6);
        steps.extend([(2, Step::Servers(2)), (3, Step::Release), (4, Step::Offer(6)), (5, Step::Crash)]);
        let log = script(Station::new(1, TEN_MS).bounded(1, Full::Hold), steps, false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Queued(1)), (0, OnHold(2)), (0, OnHold(3)), (0, OnHold(4)), (0, OnHold(5)),
            (2, Admitted(2)), (3, Released(vec![3, 4, 5])), (4, OnHold(6)), (5, Lost(vec![0, 1, 2])),
        ];
        assert_eq!(log, want);
    }

    /// A station with `busy` jobs in service and `queued` waiting, for the estimates below.
    fn loaded(servers: u32, busy: u64, queued: u64, capacity: Option<usize>) -> Station<u64> {
        let st = Station::new(servers, TEN_MS);
        let st = match capacity {
            Some(k) => st.bounded(k, Full::Reject),
            None => st,
        };
        let steps = offers(0, 0..busy + queued);
        let node = Scripted { st, script: steps, held: VecDeque::new(), log: Vec::new() };
        run(node, 1, Time::from_ms(1)).st
    }

    #[test]
    fn expected_wait_is_the_queue_ahead_over_the_service_rate() {
        // Idle server: no wait. Two busy, three queued, 10 ms each: a newcomer is fourth in line
        // and every 5 ms (1/(cμ)) one leaves: 20 ms. At 200% service time, 40 ms.
        assert_eq!(loaded(2, 1, 0, None).expected_wait_us(), 0);
        assert_eq!(loaded(2, 2, 0, None).expected_wait_us(), 5 * MICROS_PER_MS);
        let mut st = loaded(2, 2, 3, None);
        assert_eq!((st.busy(), st.queue_len()), (2, 3));
        assert_eq!(st.expected_wait_us(), 20 * MICROS_PER_MS);
        st.set_slowdown_pct(200);
        assert_eq!((st.mean_service_us(), st.expected_wait_us()), (20_000.0, 40 * MICROS_PER_MS));
    }

    #[test]
    fn theory_mean_wait_is_erlang_c_unbounded_and_mmck_bounded() {
        // c = 4, μ = 100/s (10 ms): Erlang C when unbounded, none at λ ≥ cμ; M/M/4/14 with a
        // queue of 10; μ follows the slow-down (200%: μ = 50/s).
        let st = loaded(4, 0, 0, None);
        assert_eq!(st.theory_mean_wait(300.0), queueing::mmc_mean_wait(300.0, 100.0, 4));
        assert_eq!(st.theory_mean_wait(400.0), None);
        let mut st = loaded(4, 0, 0, Some(10));
        assert_eq!(st.theory_mean_wait(400.0), Some(queueing::mmck(400.0, 100.0, 4, 14).mean_wait));
        st.set_slowdown_pct(200);
        assert_eq!(st.theory_mean_wait(150.0), Some(queueing::mmck(150.0, 50.0, 4, 14).mean_wait));
    }

    #[test]
    fn a_crash_loses_exactly_what_was_held_and_its_timers_never_complete() {
        use Log::*;
        // Two in service, three queued; the crash at 5 ms loses all five. Their completion
        // timers (due at 10 ms) are cancelled, and their slot tokens (0 and 1) are stale ever
        // after: job 5, offered after the crash, is the only one to finish.
        let mut steps = offers(0, 0..5);
        steps.extend([(5, Step::Crash), (6, Step::Offer(5)), (20, Step::Stale(0)), (20, Step::Stale(1))]);
        let log = script(Station::new(2, TEN_MS), steps, true);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Holds(1, 0)), (0, Started(1)), (0, Holds(2, 0)),
            (0, Queued(2)), (0, Holds(2, 1)), (0, Queued(3)), (0, Holds(2, 2)), (0, Queued(4)), (0, Holds(2, 3)),
            (5, Lost(vec![0, 1, 2, 3, 4])), (5, Holds(0, 0)),
            (6, Started(5)), (6, Holds(1, 0)),
            (16, Finished(5, 0, 10)),
            (20, Stale), (20, Holds(0, 0)), (20, Stale), (20, Holds(0, 0)),
        ];
        assert_eq!(log, want);
    }

    #[test]
    fn changing_the_server_count_live() {
        use Log::*;
        // Raising c from 1 to 3 at 10 ms starts both queued jobs at that instant.
        let mut steps = offers(0, 0..3);
        steps.push((10, Step::Servers(3)));
        // Lowering c from 3 to 1 while three are busy: they finish, and job 6 (queued at
        // 220 ms) starts only when fewer than one server is busy — after the last of them.
        steps.extend(offers(200, 3..6));
        steps.extend([(210, Step::Servers(1)), (220, Step::Offer(6))]);
        let log = script(Station::new(1, Service::Constant(100 * MICROS_PER_MS)), steps, true);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (0, Holds(1, 0)), (0, Queued(1)), (0, Holds(1, 1)), (0, Queued(2)), (0, Holds(1, 2)),
            (10, Holds(3, 0)),
            (100, Finished(0, 0, 100)), (110, Finished(1, 10, 100)), (110, Finished(2, 10, 100)),
            (200, Started(3)), (200, Holds(1, 0)), (200, Started(4)), (200, Holds(2, 0)),
            (200, Started(5)), (200, Holds(3, 0)),
            (210, Holds(3, 0)),
            (220, Queued(6)), (220, Holds(3, 1)),
            (300, Finished(3, 0, 100)), (300, Finished(4, 0, 100)), (300, Finished(5, 0, 100)),
            (400, Finished(6, 80, 100)),
        ];
        assert_eq!(log, want);
    }

    #[test]
    fn slowdown_applies_to_jobs_that_start_after_it() {
        use Log::*;
        // Job 0 starts at normal speed; at 5 ms service slows to 200%; job 1 then takes 20 ms.
        let steps = vec![(0, Step::Offer(0)), (5, Step::Slow(200)), (5, Step::Offer(1)), (30, Step::Slow(100))];
        let steps = [steps, vec![(30, Step::Offer(2))]].concat();
        let log = script(Station::new(2, TEN_MS), steps, false);
        #[rustfmt::skip]
        let want = vec![
            (0, Started(0)), (5, Started(1)), (10, Finished(0, 0, 10)), (25, Finished(1, 0, 20)),
            (30, Started(2)), (40, Finished(2, 0, 10)),
        ];
        assert_eq!(log, want);
    }

    // ---- The service-time distributions ---------------------------------------------------

    /// Mean and variance of `n` draws.
    fn moments(s: Service, n: usize, seed: u64) -> (f64, f64, Vec<Micros>) {
        let mut rng = Rng::new(seed);
        let xs: Vec<Micros> = (0..n).map(|_| s.sample_us(&mut rng)).collect();
        let mean = xs.iter().sum::<u64>() as f64 / n as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean) * (x as f64 - mean)).sum::<f64>() / (n as f64 - 1.0);
        (mean, var, xs)
    }

    #[test]
    fn service_distributions_have_their_textbook_moments() {
        let n = 200_000;
        // Constant: exact.
        let (m, v, _) = moments(Service::Constant(7_000), 1_000, 1);
        assert_eq!((m, v), (7_000.0, 0.0));
        // Discrete uniform on lo..=hi: mean (lo+hi)/2, variance ((hi−lo+1)² − 1)/12. Standard
        // errors: 577/√n ≈ 1.3 µs for the mean, so ±0.5% (10 µs) is 7σ; σ²·√(0.8/n) = 0.2%
        // for the variance (fourth central moment 1.8σ⁴): ±2%.
        let u = Service::Uniform { lo_us: 1_000, hi_us: 3_000 };
        let (m, v, xs) = moments(u, n, 2);
        assert_eq!(u.mean_us(), 2_000.0);
        assert!(close(m, 2_000.0, 0.005), "{m}");
        assert!(close(v, (2001.0f64 * 2001.0 - 1.0) / 12.0, 0.02), "{v}");
        assert!(xs.iter().all(|&x| (1_000..=3_000).contains(&x)));
        // Exponential: mean μ, variance μ². Standard errors: μ/√n = 0.22% for the mean and
        // μ²·√(8/n) = 0.63% for the variance (fourth central moment 9μ⁴): ±1% and ±3%.
        let (m, v, _) = moments(Service::exponential_ms(5), n, 3);
        assert!(close(m, 5_000.0, 0.01), "{m}");
        assert!(close(v, 25e6, 0.03), "{v}");
        // Log-normal, median 1 ms and σ = 0.5: mean = median·e^(σ²/2) = 1133.1 µs, variance
        // mean²·(e^(σ²) − 1); the median of the draws is the median. Standard errors: 0.12%
        // for the mean, ~1% for the variance (heavy fourth moment), 0.3% for the median:
        // ±1%, ±6%, ±1.5%.
        let ln = Service::LogNormal { median_us: 1_000, sigma_milli: 500 };
        let (m, v, mut xs) = moments(ln, n, 4);
        let want = 1_000.0 * libm::exp(0.125);
        assert!(close(ln.mean_us(), want, 1e-12));
        assert!(close(m, want, 0.01), "{m} vs {want}");
        assert!(close(v, want * want * (libm::exp(0.25) - 1.0), 0.06), "{v}");
        xs.sort_unstable();
        assert!(close(xs[n / 2] as f64, 1_000.0, 0.015), "median {}", xs[n / 2]);
        // Never 0 µs: a zero-length service could complete in the instant it started, forever.
        let mut rng = Rng::new(5);
        assert_eq!(Service::Constant(0).sample_us(&mut rng), 1);
        assert!((0..10_000).all(|_| Service::Exponential { mean_us: 1 }.sample_us(&mut rng) >= 1));
        assert_eq!(Service::exponential_ms(50).rate_per_s(), 20.0);
    }
}
