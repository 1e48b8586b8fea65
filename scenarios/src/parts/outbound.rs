//! Outbound delivery to many destinations: a breaker per destination with failover down a route, failed tries backed off (kept durably) then dead-lettered and replayed on recovery, and a channel paced to a rate limit.
//!
//! The pieces a webhook sender, a notification router or an outbox relay share:
//! - [`Destinations`]: a [`Breaker`] per destination (an endpoint, a provider) and how many
//!   are not closed. `pick(route)` takes the first destination of the route whose breaker lets
//!   a call through — failover, as notification platforms route around a provider's outage;
//!   `record` says when a destination recovered (its breaker closed), the moment to replay
//!   its dead letters.
//! - [`Redelivery`]: the broker's rule for a failed try ([`OnFailure`]) for jobs that are not
//!   in a broker: backed off (kept in a durable set until their timer fires; a restart finds
//!   them and retries them at once), then dead-lettered or dropped. With the policy's backoff
//!   `t_n = min(cap, base × 2^(n−1))` and full jitter, a job that always fails waits
//!   `Σ t_n / 2` on average before it is dead-lettered (tests): the retry schedule's span.
//! - [`Paced`]: a channel's queue whose jobs go out no faster than a token bucket allows (at
//!   most `b + r·T` over any T): a job that finds no token is handed back, and the channel
//!   sleeps until the next one. The token is taken once the job's destination is known, so a
//!   try that fails fast (every breaker open) spends none.
//! - [`Outbox`]: the sender's side put together: a fair queue of flows (one per customer, or
//!   one for all), a paced channel, the breakers and the redelivery; `route` says where a
//!   popped job goes (a destination, failed fast, or back to its channel for want of a token).
//!   Its bookkeeping of [`Job`]s: a try ended (`ended`: a breaker closing replays the
//!   destination's dead letters, tries reset), `delivered` (counted, observed, judged by its
//!   promise unless replayed), `failed` (backed off, dead-lettered, or dropped and kept for the
//!   `lost` check; given up on, judged late).
//! - [`Receiver`]: the other end: an endpoint (silent while down) or a provider (503 while
//!   down, 429 past its limit), remembering the key each event first came with, so a second
//!   copy is a duplicate it can recognise (same key) or not (a retry under a new request id).
//! - [`Promise`]: a latency bound judged as deliveries end ([`Judge`]), with the latest late
//!   delivery's story for the check to name.

use crate::parts::breaker::{Admit, Breaker, Judged, Phase, Tuning};
use crate::parts::broker::{OnFailure, Verdict};
use crate::parts::bucket::TokenBucket;
use crate::parts::degraded::Health;
use crate::parts::fair::Fair;
use crate::parts::judge::Judge;
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, NodeKind, NodeView, Rng, Time, Tone, MICROS_PER_MS};
use std::collections::{BTreeMap, VecDeque};

/// A breaker per destination, and the count of those open or half-open.
#[derive(Clone, Debug)]
pub struct Destinations {
    breakers: Vec<Breaker>,
    open: usize,
}

impl Destinations {
    pub fn new(n: usize, tuning: Tuning) -> Destinations {
        Destinations { breakers: vec![Breaker::new(tuning); n], open: 0 }
    }

    /// New settings for every breaker (each from its next call).
    pub fn set_tuning(&mut self, tuning: Tuning) {
        self.breakers.iter_mut().for_each(|b| b.set_tuning(tuning));
    }

    /// Destinations whose breaker is open or half-open.
    pub fn open(&self) -> usize {
        self.open
    }

    pub fn phase(&self, d: usize) -> Phase {
        self.breakers[d].phase()
    }

    /// The first destination of `route` whose breaker admits a call, and whether that call is a
    /// probe; `None` when every one refuses (fail fast: no call is made).
    pub fn pick(&mut self, route: &[usize]) -> Option<(usize, bool)> {
        route.iter().find_map(|&d| match self.breakers[d].admit() {
            Admit::Refuse => None,
            admit => Some((d, admit == Admit::Probe)),
        })
    }

    /// A probe picked but never sent.
    pub fn unprobe(&mut self, d: usize) {
        self.breakers[d].unprobe();
    }

    /// A call to `d` ended; `true` when that closed its breaker: the destination recovered.
    pub fn record<N: Node>(&mut self, d: usize, ok: bool, probe: bool, ctx: &mut Ctx<N>, timer: N::Timer) -> bool {
        let was = self.breakers[d].phase();
        match self.breakers[d].record(ok, probe, ctx, timer) {
            Some(Judged::Opened) if was == Phase::Closed => self.open += 1,
            Some(Judged::Closed) => {
                self.open = self.open.saturating_sub(1);
                return true;
            }
            _ => {}
        }
        false
    }

    /// `d`'s open period is over (its timer fired).
    pub fn half_open<N: Node>(&mut self, d: usize, ctx: &mut Ctx<N>) {
        self.breakers[d].half_open(ctx);
    }

    /// Every breaker closed and empty: a restart forgot them.
    pub fn reset<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.breakers.iter_mut().for_each(|b| b.reset(ctx));
        self.open = 0;
    }
}

/// What became of a failed try's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate<J> {
    /// Kept until `due(key)`: set a timer for this wait.
    BackOff(Micros),
    DeadLettered,
    /// Out of retries with no dead-letter queue: handed back, lost.
    Dropped(J),
}

/// Jobs backing off, by key, and the dead-letter queue (both durable).
#[derive(Clone, Debug)]
pub struct Redelivery<J> {
    waiting: BTreeMap<u64, J>,
    dead: Vec<J>,
}

impl<J> Default for Redelivery<J> {
    fn default() -> Self {
        Redelivery { waiting: BTreeMap::new(), dead: Vec::new() }
    }
}

impl<J> Redelivery<J> {
    /// Job `key` failed its `tries`-th try (1 for the first): `rule` says back off, dead-letter or drop.
    pub fn failed(&mut self, key: u64, job: J, tries: u32, rule: OnFailure, rng: &mut Rng) -> Fate<J> {
        match rule.verdict(tries, rng) {
            Verdict::Retry(wait) => {
                self.waiting.insert(key, job);
                Fate::BackOff(wait)
            }
            Verdict::DeadLetter => {
                self.dead.push(job);
                Fate::DeadLettered
            }
            Verdict::Delete => Fate::Dropped(job),
        }
    }

    /// Job `key`'s backoff is over (`None` if a restart already handed it back).
    pub fn due(&mut self, key: u64) -> Option<J> {
        self.waiting.remove(&key)
    }

    /// The dead letters `pick` chooses, oldest first, out of the dead-letter queue.
    pub fn replay(&mut self, pick: impl Fn(&J) -> bool) -> Vec<J> {
        let (back, keep) = std::mem::take(&mut self.dead).into_iter().partition(|j| pick(j));
        self.dead = keep;
        back
    }

    /// A restart: the backoff timers died, so every job backing off is handed back at once.
    pub fn restart(&mut self) -> Vec<J> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }

    pub fn backing_off(&self) -> usize {
        self.waiting.len()
    }

    pub fn dead(&self) -> usize {
        self.dead.len()
    }
}

/// A channel's queue, let out no faster than its token bucket allows.
#[derive(Clone, Debug)]
pub struct Paced<J> {
    queue: VecDeque<J>,
    bucket: TokenBucket,
    /// Tokens a second, for the wait until the next one.
    rate: u64,
    asleep: bool,
}

impl<J> Paced<J> {
    /// At most `rate` jobs a second, `burst` at once.
    pub fn new(rate: u64, burst: u64) -> Paced<J> {
        let rate = rate.max(1);
        Paced { queue: VecDeque::new(), bucket: TokenBucket::new(rate, 1_000_000, burst), rate, asleep: false }
    }

    /// A new limit, starting full (the queue stays); the same one changes nothing.
    pub fn set_rate(&mut self, rate: u64, burst: u64) {
        if (rate.max(1), burst) == (self.rate, self.bucket.burst()) {
            return;
        }
        let queue = std::mem::take(&mut self.queue);
        *self = Paced { queue, asleep: self.asleep, ..Paced::new(rate, burst) };
    }

    pub fn push(&mut self, job: J) {
        self.queue.push_back(job);
    }

    /// The oldest job, unless the channel sleeps until its next token.
    pub fn pop(&mut self) -> Option<J> {
        if self.asleep {
            return None;
        }
        self.queue.pop_front()
    }

    /// Takes a token for a job about to go out at `now`; `false`: hand the job back.
    pub fn allow(&mut self, now: Time) -> bool {
        self.bucket.allow(now)
    }

    /// A popped job that found no token goes back to the front, and the channel sleeps; the
    /// first time, how long until the next token (set a timer for it, then call `woke`).
    pub fn hand_back(&mut self, job: J) -> Option<Micros> {
        self.queue.push_front(job);
        let first = !self.asleep;
        self.asleep = true;
        first.then(|| 1_000_000_u64.div_ceil(self.rate))
    }

    pub fn woke(&mut self) {
        self.asleep = false;
    }

    /// Every queued job, oldest first (a switch away from pacing).
    pub fn drain(&mut self) -> Vec<J> {
        self.queue.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A sender's queues, breakers and redelivery, and its bookkeeping: the promises its deliveries are judged against
/// (`judged` says which judges a job, if any; `story` names a late one), and the latest job it lost (when, and its
/// story).
#[derive(Clone, Debug)]
pub struct Outbox<J> {
    pub flows: Fair<J>,
    pub paced: Paced<J>,
    pub dests: Destinations,
    pub redelivery: Redelivery<J>,
    pub promises: Vec<Promise>,
    judged: fn(&J) -> Option<usize>,
    story: fn(&J) -> String,
    lost: Option<(Time, String)>,
}

/// An outbound job: its key (the idempotency key, and the one it backs off under), when it was made, the tries it
/// failed, whether it came back from the dead-letter queue, and what it carries.
#[derive(Clone, Debug)]
pub struct Job<T> {
    pub key: u64,
    pub created: Time,
    pub tries: u32,
    pub replayed: bool,
    pub what: T,
}

impl<T> Job<T> {
    pub fn new(key: u64, created: Time, what: T) -> Job<T> {
        Job { key, created, tries: 0, replayed: false, what }
    }
}

/// An event that broke a promise when it happened: the check fails at that instant only (it never latches).
pub fn broken_at(event: &Option<(Time, String)>, now: Time) -> Result<(), String> {
    event.as_ref().filter(|e| e.0 == now).map_or(Ok(()), |e| Err(e.1.clone()))
}

/// Where a popped job goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<J> {
    /// To destination `d`, as a probe or not.
    Go { d: usize, probe: bool, job: J },
    /// Every breaker of its route refused: it failed at once, no call made.
    Refused(J),
    /// No token: back to the front of its channel, which sleeps until the `wake` timer (then call `paced.woke()`).
    Paced,
}

impl<J> Outbox<J> {
    /// `flows` equal flows, a breaker for each of `dests` destinations, a channel paced to `rate`/s (`burst` at once).
    pub fn new(flows: usize, dests: usize, tuning: Tuning, rate: u64, burst: u64) -> Outbox<J> {
        let (flows, paced) = (Fair::new(&vec![1; flows], 1), Paced::new(rate, burst));
        let (dests, redelivery) = (Destinations::new(dests, tuning), Redelivery::default());
        Outbox {
            flows,
            paced,
            dests,
            redelivery,
            promises: Vec::new(),
            judged: |_| None,
            story: |_| String::new(),
            lost: None,
        }
    }

    /// `n` promises, each judged over the last `window_us`: `judged` says which one judges a job (if any), `story`
    /// names a late job.
    pub fn promises(
        mut self,
        n: usize,
        window_us: Micros,
        judged: fn(&J) -> Option<usize>,
        story: fn(&J) -> String,
    ) -> Outbox<J> {
        self.promises = (0..n).map(|_| Promise::new(window_us)).collect();
        (self.judged, self.story) = (judged, story);
        self
    }

    /// New settings: the breakers' (each from its next call) and the pace's.
    pub fn retune(&mut self, tuning: Tuning, rate: u64, burst: u64) {
        self.dests.set_tuning(tuning);
        self.paced.set_rate(rate, burst);
    }

    /// Into flow `f` (unbounded), or with `None` into the paced channel.
    pub fn push(&mut self, flow: Option<usize>, job: J) {
        match flow {
            Some(f) => self.flows.push(f, job, 1).unwrap_or_else(|_| unreachable!("unbounded")),
            None => self.paced.push(job),
        }
    }

    /// The paced channel's next job unless it sleeps, else the next flow's in turn.
    pub fn pop(&mut self) -> Option<J> {
        self.paced.pop().or_else(|| self.flows.pop().map(|j| j.1))
    }

    /// Every queued job (a change of strategy puts them back).
    pub fn drain(&mut self) -> Vec<J> {
        self.flows.drain().into_iter().map(|j| j.1).chain(self.paced.drain()).collect()
    }

    pub fn queued(&self) -> usize {
        self.flows.len() + self.paced.len()
    }

    /// `job` goes to the first destination of `route` whose breaker admits it (`guarded: false`: to the first), and
    /// if `paced` only with a token, taken once the destination is known.
    pub fn route<N: Node>(
        &mut self,
        job: J,
        route: &[usize],
        guarded: bool,
        paced: bool,
        ctx: &mut Ctx<N>,
        wake: N::Timer,
    ) -> Route<J> {
        let Some((d, probe)) = (if guarded { self.dests.pick(route) } else { Some((route[0], false)) }) else {
            return Route::Refused(job);
        };
        if paced && !self.paced.allow(ctx.now()) {
            if probe {
                self.dests.unprobe(d);
            }
            if let Some(wait) = self.paced.hand_back(job) {
                ctx.set_timer(wait, wake);
            }
            return Route::Paced;
        }
        Route::Go { d, probe, job }
    }

    /// Broken at the instant a job was dropped: names it.
    pub fn lost(&self, now: Time) -> Result<(), String> {
        broken_at(&self.lost, now)
    }

    /// A restart: the breakers and the pace's timer are forgotten; the jobs backing off come back at once.
    pub fn restart<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<J> {
        self.dests.reset(ctx);
        self.paced.woke();
        self.redelivery.restart()
    }

    /// `view` with the outbox's state: the breakers open, and gauges for the jobs queued, backing off and dead.
    pub fn view(&self, view: NodeView) -> NodeView {
        let [q, w, d] = [self.queued(), self.redelivery.backing_off(), self.redelivery.dead()].map(|n| n as i64);
        let open = self.dests.open();
        view.badge_if(open > 0, format!("{open} breakers open"), Tone::Warn)
            .gauge("queued", q, q.max(100))
            .gauge("backing off", w, w.max(100))
            .gauge("dead-letter queue", d, d.max(100))
    }

    /// The `queued` and `dlq` gauges.
    pub fn gauges<N: Node>(&self, ctx: &mut Ctx<N>) {
        ctx.gauge("queued", self.queued() as i64);
        ctx.gauge("dlq", self.redelivery.dead() as i64);
    }
}

/// The bookkeeping of jobs: breakers hearing of tries, replays, deliveries judged, failed tries backed off, dead or lost.
impl<T: Clone> Outbox<Job<T>> {
    /// A call to `d` ended; if that closed its breaker, the dead letters `pick` chooses come back to be replayed
    /// (counted as `replayed`), their tries starting again.
    pub fn ended<N: Node>(
        &mut self,
        d: usize,
        ok: bool,
        probe: bool,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
        pick: impl Fn(&Job<T>) -> bool,
    ) -> Vec<Job<T>> {
        let back = if self.dests.record(d, ok, probe, ctx, timer) { self.redelivery.replay(pick) } else { Vec::new() };
        ctx.count("replayed", back.len() as i64);
        back.into_iter().map(|j| Job { tries: 0, replayed: true, ..j }).collect()
    }

    /// `job` delivered: counted (`delivered`), its latency observed as `metric`, and judged against `bound_us` by its
    /// promise, if any — unless replayed: it was judged when it was given up on.
    pub fn delivered<N: Node>(&mut self, job: &Job<T>, metric: &'static str, bound_us: Micros, ctx: &mut Ctx<N>) {
        let took = ctx.now().since(job.created);
        ctx.count("delivered", 1);
        ctx.observe(metric, took);
        if let Some(p) = (self.judged)(job).filter(|_| !job.replayed) {
            let story = self.story;
            self.promises[p].record(ctx.truth(), took, bound_us, || story(job));
        }
    }

    /// A try of `job` failed (counted in its tries): `rule` backs it off (a `retry(key)` timer set), dead-letters it or drops
    /// it — counted as `lost`, noted and kept for [`Outbox::lost`]. Given up on, its age is observed as `gave_up_us`
    /// and its promise, if any, hears it never arrived within `bound_us`.
    pub fn failed<N: Node>(
        &mut self,
        mut job: Job<T>,
        rule: OnFailure,
        bound_us: Micros,
        ctx: &mut Ctx<N>,
        retry: fn(u64) -> N::Timer,
    ) {
        job.tries += 1;
        let (key, tries, age, copy) =
            (job.key, job.tries, ctx.now().since(job.created), (self.judged)(&job).map(|p| (p, job.clone())));
        match self.redelivery.failed(key, job, tries, rule, ctx.rng()) {
            Fate::BackOff(wait) => {
                ctx.set_timer(wait, retry(key));
                return;
            }
            Fate::DeadLettered => {}
            Fate::Dropped(_) => {
                let why = format!("event #{key} dropped after {tries} tries");
                ctx.count("lost", 1);
                ctx.note(why.clone());
                self.lost = Some((ctx.truth(), why));
            }
        }
        ctx.observe("gave_up_us", age);
        if let Some((p, job)) = copy {
            let story = self.story;
            self.promises[p].record(ctx.truth(), u64::MAX, bound_us, || story(&job));
        }
    }
}

/// A receiving end: its health, a provider's rate limit, the key each event first came with, and the latest
/// duplicate under a new key (when, and its story).
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: &'static str,
    pub health: Health,
    /// `Some` for a provider: it answers 503 while down and 429 past the limit.
    pub limit: Option<TokenBucket>,
    seen: KeyTable<u64>,
    /// Copies received under a key other than the event's first.
    pub new_key_dups: u64,
    pub last_dup: Option<(Time, String)>,
}

impl Receiver {
    pub fn new(name: &'static str, limit: Option<TokenBucket>) -> Receiver {
        let seen = KeyTable::default();
        Receiver { name, health: Health::Up, limit, seen, new_key_dups: 0, last_dup: None }
    }

    /// Now `health`, noted.
    pub fn set_health<N: Node>(&mut self, health: Health, ctx: &mut Ctx<N>) {
        self.health = health;
        ctx.note(format!("{} now {}", self.name, self.health));
    }

    /// Broken at the instant a copy came under a new key: names it.
    pub fn duplicate(&self, now: Time) -> Result<(), String> {
        broken_at(&self.last_dup, now)
    }

    /// An endpoint (a client of the sender's) or a provider (a service) in `tier`: its health, and the duplicates it
    /// got under new keys.
    pub fn view(&self, tier: u8) -> NodeView {
        let (provider, health, dups) = (self.limit.is_some(), self.health, self.new_key_dups);
        NodeView::new([NodeKind::Client, NodeKind::Service][provider as usize], tier, self.name)
            .badge(health.to_string(), [Tone::Bad, Tone::Good][health.is_up() as usize])
            .badge_if(dups > 0, format!("{dups} duplicates under new keys"), Tone::Bad)
    }

    /// A try of `event` under `key` that takes `base_us` when healthy: `None` (an endpoint down says nothing), else
    /// after how long it answers and the code. A copy accepted before is counted as `dup_same_key`, or — under a new
    /// key, which `to` cannot recognise — as `dup_new_key` and kept as the latest.
    pub fn receive<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        base_us: Micros,
        event: u64,
        key: u64,
        to: impl FnOnce() -> String,
    ) -> Option<(Micros, u16)> {
        let (after, code) = match self.health.latency(base_us) {
            None if self.limit.is_none() => return None,
            None => (base_us, 503),
            Some(_) if self.limit.as_mut().is_some_and(|l| !l.allow(ctx.now())) => (base_us, 429),
            Some(after) => (after, 200),
        };
        ctx.count("throttled", (code == 429) as i64);
        match if code == 200 { self.seen.insert(event, key) } else { None } {
            Some(old) if old != key => {
                ctx.count("dup_new_key", 1);
                self.new_key_dups += 1;
                let why = format!("{} got event #{event} again under key {key} (was {old})", to());
                self.last_dup = Some((ctx.truth(), why));
            }
            Some(_) => ctx.count("dup_same_key", 1),
            None => {}
        }
        Some((after, code))
    }
}

/// A latency bound judged over a window as deliveries end, and the latest late one's story.
#[derive(Clone, Debug)]
pub struct Promise {
    judge: Judge,
    window_us: Micros,
    late: String,
}

impl Promise {
    /// Judged over the last `window_us` (at least 100 deliveries, else the last 100).
    pub fn new(window_us: Micros) -> Promise {
        Promise { judge: Judge::new(window_us, 100, 100), window_us, late: String::new() }
    }

    /// A delivery `what` names took `took` (`u64::MAX`: given up on) against `bound_us`.
    pub fn record(&mut self, at: Time, took: Micros, bound_us: Micros, what: impl FnOnce() -> String) {
        let late = took > bound_us;
        if late {
            let took =
                if took == u64::MAX { "was given up on".into() } else { format!("took {} ms", took / MICROS_PER_MS) };
            self.late = format!("{} {took}", what());
        }
        self.judge.record(at, late, took);
    }

    /// Broken when more than 1% of the window's deliveries were late: names the latest.
    pub fn check(&self, now: Time, bound_ms: i64) -> Result<(), String> {
        let v = self.judge.verdict(now, Time::ZERO);
        let why = || format!("{}: {} over {bound_ms} ms", self.late, v.describe(self.window_us));
        v.fails(1).then(why).map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::retry::{Jitter, RetryPolicy};
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, MICROS_PER_MS, MICROS_PER_S};

    fn backoff(max_retries: u32, dlq: bool) -> OnFailure {
        let policy = RetryPolicy { max_retries, base_us: 200_000, cap_us: 3_200_000, jitter: Jitter::Full };
        OnFailure::Backoff { policy, dlq }
    }

    #[test]
    fn a_job_that_always_fails_waits_the_schedules_span_then_is_dead_lettered() {
        // Five retries, base 200 ms doubling to a 3.2 s cap, full jitter: the waits are U(0, t_n)
        // with t = 0.2, 0.4, 0.8, 1.6, 3.2 s, so the span is Σ t_n / 2 = 3.1 s on average, with
        // variance Σ t_n² / 12 = 1.137 s². Over 4,000 jobs the mean's s.d. is 17 ms: ±2% (62 ms)
        // is 3.7 s.d.
        let (mut r, mut rng, mut total) = (Redelivery::default(), Rng::new(7), 0u64);
        let jobs = 4000u64;
        for key in 0..jobs {
            let mut tries = 1;
            while let Fate::BackOff(wait) = r.failed(key, key, tries, backoff(5, true), &mut rng) {
                total += wait;
                assert_eq!(r.due(key), Some(key));
                tries += 1;
            }
            assert_eq!(tries, 6, "dead-lettered after the first try and five retries");
        }
        let mean = total as f64 / jobs as f64;
        assert!((mean - 3_100_000.0).abs() < 0.02 * 3_100_000.0, "mean span {mean:.0} us");
        assert_eq!((r.dead(), r.backing_off()), (jobs as usize, 0));
    }

    #[test]
    fn without_a_dlq_a_job_out_of_retries_is_dropped_and_replay_picks_its_dead_letters() {
        let (mut r, mut rng) = (Redelivery::default(), Rng::new(1));
        assert_eq!(r.failed(1, 'a', 3, backoff(2, false), &mut rng), Fate::Dropped('a'));
        for (key, job) in [(2, 'b'), (3, 'c'), (4, 'd')] {
            assert_eq!(r.failed(key, job, 3, backoff(2, true), &mut rng), Fate::DeadLettered);
        }
        assert_eq!(r.replay(|&j| j != 'c'), vec!['b', 'd']);
        assert_eq!((r.dead(), r.replay(|_| true)), (1, vec!['c']));
        // Backing off at a restart: handed back at once, and its timer finds nothing.
        assert!(matches!(r.failed(5, 'e', 1, backoff(2, true), &mut rng), Fate::BackOff(_)));
        assert_eq!((r.restart(), r.due(5)), (vec!['e'], None));
    }

    #[test]
    fn a_paced_channel_lets_out_at_most_burst_plus_rate_times_t_and_sleeps_once() {
        // 100 a second, burst 5, 1,000 jobs offered at once and polled every ms for 2 s: 5 + 200
        // go out; every poll ends with a job that found no token going back to the front, and the
        // channel sleeping 10 ms.
        let mut p = Paced::new(100, 5);
        (0..1000).for_each(|j| p.push(j));
        let (mut out, mut wakes) = (Vec::new(), 0);
        for ms in 0..=2000 {
            p.woke();
            while let Some(job) = p.pop() {
                if !p.allow(Time(ms * MICROS_PER_MS)) {
                    assert_eq!(p.hand_back(job), Some(10_000));
                    wakes += 1;
                    break;
                }
                out.push(job);
            }
        }
        assert_eq!(out, (0..205).collect::<Vec<_>>());
        assert_eq!((p.len(), wakes), (795, 2001));
        assert_eq!((p.hand_back(7), p.pop()), (None, None), "asleep: one wake-up, nothing out");
    }

    #[derive(Clone, Debug)]
    enum Msg {}

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Call,
        HalfOpen(usize),
        Retry(u64),
    }

    /// Calls down the route [0, 1] every 10 ms; destination 0 fails them from 1 s to 3 s.
    #[derive(Clone, Debug)]
    struct Router {
        d: Destinations,
        /// Calls to each destination, failed fast, recoveries seen, most open at once.
        sent: [u64; 2],
        refused: u64,
        recovered: Vec<(usize, u64)>,
        most_open: usize,
    }

    impl Node for Router {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(10 * MICROS_PER_MS, Timer::Call);
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            match timer {
                Timer::HalfOpen(d) => self.d.half_open(d, ctx),
                Timer::Retry(key) => unreachable!("the router retries nothing ({key})"),
                Timer::Call => {
                    ctx.set_timer(10 * MICROS_PER_MS, Timer::Call);
                    let Some((d, probe)) = self.d.pick(&[0, 1]) else { return self.refused += 1 };
                    self.sent[d] += 1;
                    let sick = d == 0 && (MICROS_PER_S..3 * MICROS_PER_S).contains(&ctx.now().micros());
                    if self.d.record(d, !sick, probe, ctx, Timer::HalfOpen(d)) {
                        self.recovered.push((d, ctx.now().as_ms()));
                    }
                    self.most_open = self.most_open.max(self.d.open());
                }
            }
        }
        fn view(&self) -> faultline_core::NodeView {
            faultline_core::NodeView::new(faultline_core::NodeKind::Service, 0, "router")
        }
    }

    #[test]
    fn the_route_fails_over_while_the_first_breaker_is_open_and_comes_back_when_it_closes() {
        // Window 1 s, 4 calls, 50%, open 500 ms, one probe: the first breaker opens once half of
        // the last second's 100 calls failed, near 1.5 s (then calls go to 1); a probe every 500 ms
        // fails until 3 s, and the first after 3 s (within 500 ms) closes it: calls go back to 0.
        // Nothing is ever refused outright.
        let tuning =
            Tuning { threshold_pct: 50, window_us: MICROS_PER_S, min_requests: 4, open_us: 500_000, probes: 1 };
        let r = Router { d: Destinations::new(2, tuning), sent: [0, 0], refused: 0, recovered: vec![], most_open: 0 };
        let r = run_alone(r, 1, Time(5 * MICROS_PER_S));
        assert_eq!((r.refused, r.most_open, r.d.open()), (0, 1, 0));
        assert!(matches!(r.recovered[..], [(0, at)] if (3000..3600).contains(&at)), "{:?}", r.recovered);
        // About 2 s open at 100 calls/s: about 195 went to the second destination.
        assert!((180..=200).contains(&r.sent[1]), "{:?}", r.sent);
    }

    /// Runs the receiver test's calls at its start.
    #[derive(Clone, Debug)]
    struct Receiving(fn(&mut Ctx<Receiving>));

    impl Node for Receiving {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            (self.0)(ctx);
        }
        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, _: Timer, _: &mut Ctx<Self>) {}
        fn view(&self) -> faultline_core::NodeView {
            faultline_core::NodeView::new(faultline_core::NodeKind::Service, 0, "receiver")
        }
    }

    #[test]
    fn a_receiver_tells_duplicates_by_key_and_a_provider_says_503_or_429() {
        run_alone(Receiving(receiving), 1, Time(1));
    }

    fn receiving(ctx: &mut Ctx<Receiving>) {
        let to = || "customer 1".to_string();
        let mut endpoint = Receiver::new("endpoint", None);
        assert_eq!(endpoint.receive(ctx, 5, 1, 1, to), Some((5, 200)));
        assert_eq!(endpoint.receive(ctx, 5, 1, 1, to), Some((5, 200)));
        assert!(endpoint.last_dup.is_none(), "same key: recognised");
        assert_eq!(endpoint.receive(ctx, 5, 1, 9, to), Some((5, 200)));
        assert_eq!(endpoint.new_key_dups, 1);
        assert_eq!(
            endpoint.last_dup.as_ref().map(|d| d.1.as_str()),
            Some("customer 1 got event #1 again under key 9 (was 1)")
        );
        endpoint.health = Health::plus_us(10);
        assert_eq!(endpoint.receive(ctx, 5, 2, 2, to), Some((15, 200)));
        endpoint.health = Health::Down;
        assert_eq!(endpoint.receive(ctx, 5, 3, 3, to), None, "a dead endpoint says nothing");
        let mut provider = Receiver::new("provider", Some(TokenBucket::new(1, MICROS_PER_S, 2)));
        let codes: Vec<u16> = (0..3).map(|e| provider.receive(ctx, 5, e, e, to).expect("answers").1).collect();
        assert_eq!(codes, [200, 200, 429], "a burst of 2, then over the limit");
        provider.set_health(Health::Down, ctx);
        assert_eq!(provider.receive(ctx, 5, 9, 9, to), Some((5, 503)));
        assert!(endpoint.duplicate(ctx.truth()).is_err(), "broken as the copy came");
        assert!(endpoint.duplicate(Time(1)).is_ok(), "and only then");
    }

    #[test]
    fn a_promise_breaks_past_one_percent_late_and_names_the_latest() {
        let mut p = Promise::new(MICROS_PER_S);
        let at = Time::from_ms;
        (0..200).for_each(|i| p.record(at(i), 1_000, 5_000, || unreachable!("on time")));
        assert!(p.check(at(200), 5).is_ok());
        p.record(at(200), 6_000, 5_000, || "event #1".into());
        assert!(p.check(at(200), 5).is_ok(), "1 of 201 is under 1%");
        (0..3).for_each(|_| p.record(at(201), u64::MAX, 5_000, || "event #2".into()));
        let why = p.check(at(201), 5).expect_err("4 of 204 late");
        assert!(why.starts_with("event #2 was given up on: "), "{why}");
    }

    #[test]
    fn an_outbox_serves_its_paced_channel_first_fails_fast_and_hands_back_for_want_of_a_token() {
        run_alone(Receiving(outboxing), 1, Time(1));
    }

    fn outboxing(ctx: &mut Ctx<Receiving>) {
        let tuning =
            Tuning { threshold_pct: 50, window_us: MICROS_PER_S, min_requests: 3, open_us: MICROS_PER_S, probes: 1 };
        let mut out: Outbox<u32> = Outbox::new(2, 2, tuning, 1, 1);
        [(Some(0), 1), (Some(0), 2), (Some(1), 3), (None, 4)].into_iter().for_each(|(f, j)| out.push(f, j));
        assert_eq!((out.queued(), out.pop()), (4, Some(4)), "the paced channel first");
        assert_eq!((out.pop(), out.pop(), out.pop()), (Some(1), Some(3), Some(2)), "then the flows in turn");
        assert_eq!(out.route(5, &[1, 0], true, true, ctx, Timer::Call), Route::Go { d: 1, probe: false, job: 5 });
        assert_eq!(out.route(6, &[1], true, true, ctx, Timer::Call), Route::Paced, "the burst is spent");
        assert_eq!(out.route(7, &[1], true, true, ctx, Timer::Call), Route::Paced, "asleep already");
        assert_eq!(out.drain(), [7, 6]);
        assert_eq!(out.route(8, &[0], false, false, ctx, Timer::Call), Route::Go { d: 0, probe: false, job: 8 });
    }

    #[test]
    fn an_outbox_judges_deliveries_and_given_up_jobs_names_its_losses_and_replays_on_recovery() {
        run_alone(Receiving(bookkeeping), 1, Time(1));
    }

    /// Jobs judged by promise 0 carry `true`; every job here is made at 0 and ends at 0.
    fn bookkeeping(ctx: &mut Ctx<Receiving>) {
        let tuning =
            Tuning { threshold_pct: 50, window_us: MICROS_PER_S, min_requests: 1, open_us: MICROS_PER_S, probes: 1 };
        let mut out: Outbox<Job<bool>> = Outbox::new(1, 1, tuning, 1, 1).promises(
            1,
            MICROS_PER_S,
            |j| j.what.then_some(0),
            |j| format!("#{}", j.key),
        );
        let (at, bound) = (ctx.truth(), 5_000);
        (0..100).for_each(|k| out.delivered(&Job::new(k, at, true), "took_us", bound, ctx));
        assert!(out.promises[0].check(at, 5).is_ok() && out.lost(at).is_ok());
        // Out of retries: #7 dropped (lost, and judged late), #8 dead-lettered (judged late), #9 dropped (not judged).
        out.failed(Job::new(7, at, true), backoff(0, false), bound, ctx, Timer::Retry);
        assert_eq!(out.lost(at), Err("event #7 dropped after 1 tries".into()));
        assert!(out.promises[0].check(at, 5).is_ok(), "1 late of 101 is under 1%");
        out.failed(Job::new(8, at, true), backoff(0, true), bound, ctx, Timer::Retry);
        out.failed(Job::new(9, at, false), backoff(0, false), bound, ctx, Timer::Retry);
        let why = out.promises[0].check(at, 5).expect_err("2 late of 102");
        assert!(why.starts_with("#8 was given up on: "), "{why}");
        assert_eq!((out.lost(at), out.lost(Time(1))), (Err("event #9 dropped after 1 tries".into()), Ok(())));
        // With retries left a job backs off, its tries counted.
        out.failed(Job::new(10, at, true), backoff(2, true), bound, ctx, Timer::Retry);
        assert_eq!(out.redelivery.due(10).map(|j| j.tries), Some(1));
        // The destination fails (its breaker opens), then a probe succeeds: #8 comes back, its tries reset, and its
        // delivery is not judged again.
        assert!(out.ended(0, false, false, ctx, Timer::HalfOpen(0), |_| true).is_empty());
        out.dests.half_open(0, ctx);
        assert_eq!(out.dests.pick(&[0]), Some((0, true)));
        let back = out.ended(0, true, true, ctx, Timer::HalfOpen(0), |_| true);
        assert!(matches!(back[..], [Job { key: 8, tries: 0, replayed: true, .. }]), "{back:?}");
        (0..200).for_each(|k| out.delivered(&Job::new(k, at, true), "took_us", bound, ctx));
        out.delivered(&back[0], "took_us", bound, ctx);
        assert!(out.promises[0].check(at, 5).is_ok(), "2 late of 302 only");
    }
}
