//! Outbound delivery put together: a sender's fair queue of flows, paced channel, breakers and redelivery (from [`crate::parts::redelivery`]) with its bookkeeping of jobs and promises, and the receiving end that tells duplicates.
//!
//! - [`Outbox`]: the sender's side: a fair queue of flows (one per customer, or one for all),
//!   a [`Paced`] channel, the [`Destinations`]' breakers and the [`Redelivery`]; `route` says
//!   where a popped job goes (a destination, failed fast, or back to its channel for want of a
//!   token). Its bookkeeping of [`Job`]s: a try ended (`ended`: a breaker closing replays the
//!   destination's dead letters, tries reset), `delivered` (counted, observed, judged by its
//!   promise unless replayed), `failed` (backed off, dead-lettered, or dropped and kept for the
//!   `lost` check; given up on, judged late).
//! - [`Receiver`]: the other end: an endpoint (silent while down) or a provider (503 while
//!   down, 429 past its limit), remembering the key each event first came with, so a second
//!   copy is a duplicate it can recognise (same key) or not (a retry under a new request id).
//! - [`Promise`]: a latency bound judged as deliveries end ([`Judge`]), with the latest late
//!   delivery's story for the check to name.

use crate::parts::breaker::Tuning;
use crate::parts::broker::OnFailure;
use crate::parts::bucket::TokenBucket;
use crate::parts::degraded::Health;
use crate::parts::fair::Fair;
use crate::parts::judge::Judge;
use crate::parts::redelivery::{Destinations, Fate, Paced, Redelivery};
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, NodeKind, NodeView, Time, Tone, MICROS_PER_MS};

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
    use faultline_core::{Label, MICROS_PER_S};

    fn backoff(max_retries: u32, dlq: bool) -> OnFailure {
        let policy = RetryPolicy { max_retries, base_us: 200_000, cap_us: 3_200_000, jitter: Jitter::Full };
        OnFailure::Backoff { policy, dlq }
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
        fn on_timer(&mut self, timer: Timer, _: &mut Ctx<Self>) {
            // The calls' timers are set at 0 and the run ends at 1 µs: none fires.
            match timer {
                Timer::Call => unreachable!("a call timer fired"),
                Timer::HalfOpen(d) => unreachable!("destination {d}'s half-open timer fired"),
                Timer::Retry(key) => unreachable!("job {key}'s retry fired"),
            }
        }
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
