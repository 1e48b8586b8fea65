//! A producer handing jobs to a server that accepts, holds (blocks) or refuses them: open-loop arrivals, each try a call with a timeout, nothing made while held, refusals retried after Retry-After plus a jittered backoff.
//!
//! The server answers a try with one of three [`Answer`]s. *Accepted*: it owes the job now.
//! *Held*: its queue is full and it keeps the try until there is room (bounded + blocking,
//! as a full Go channel or a `BlockingQueue.put` does): the producer is blocked, makes
//! nothing meanwhile, and starts again once that try is admitted, refused or times out.
//! *Refused*, with a Retry-After (HTTP 429): the job is tried again after Retry-After plus
//! the policy's backoff for its try, until the retries run out. A try neither admitted nor
//! refused within the timeout is an error its caller sees, and is not retried.
//!
//! How a scenario uses it, inside its own `Node` impl (`Timer::Arrive`, `Timer::Retry(Job)`
//! and `Timer::Timeout(CallId)` are the scenario's):
//! - in `on_start`: `p.arrivals.start(ctx, Timer::Arrive)`;
//! - on `Timer::Arrive`: `p.arrive(ctx, Timer::Arrive)` gives a new job unless blocked; on
//!   `Timer::Retry(job)` the job is the timer's. `p.submit(ctx, job, Timer::Timeout)` starts
//!   its next try: send the call, with the job, to the server;
//! - on the server's answer: `p.answered(ctx, call, answer, Timer::Arrive, Timer::Retry)`;
//! - on `Timer::Timeout(call)`: `p.timed_out(ctx, call, Timer::Arrive)`;
//! - in `on_crash`: `p.crash(ctx)`.
//!
//! It counts `submitted` (new jobs), `retries`, `gave_up` and `timed_out`, and observes
//! `blocked_us`, how long each hold lasted; the tries' latency (to admission or refusal) goes
//! to the histogram its [`Calls`] name.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::retry::RetryPolicy;
use faultline_core::{Ctx, Micros, Node, Time};

/// A job as its producer knows it: when it was made, and how many tries it has had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub created: Time,
    pub tries: u32,
}

/// The server's answer to a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It owes the job now.
    Accepted,
    /// Its queue is full: it keeps the try, and answers again when there is room.
    Held,
    /// Refused (429), with its Retry-After in µs: try again no sooner than that.
    Refused(Micros),
}

/// A producer's source of jobs and its tries in flight.
#[derive(Clone, Debug)]
pub struct Producer {
    pub arrivals: OpenLoop,
    /// A refused job is retried after Retry-After plus this policy's backoff, while it allows.
    pub retry: RetryPolicy,
    /// How long a try may wait to be admitted or refused.
    pub timeout_us: Micros,
    /// Tries awaiting admission or refusal.
    calls: Calls<Job>,
    /// The try the server holds us on, and since when: we make nothing meanwhile.
    blocked: Option<(CallId, Time)>,
}

impl Producer {
    pub fn new(arrivals: OpenLoop, calls: Calls<Job>, retry: RetryPolicy, timeout_us: Micros) -> Producer {
        Producer { arrivals, retry, timeout_us, calls, blocked: None }
    }

    /// Whether the server holds one of our tries.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Tries awaiting admission or refusal.
    pub fn awaiting(&self) -> usize {
        self.calls.len()
    }

    /// The arrivals' timer fired: a new job to submit — unless we are blocked, when nothing
    /// is made and the arrivals stop until the hold ends.
    pub fn arrive<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) -> Option<Job> {
        if self.blocked.is_some() {
            return None;
        }
        self.arrivals.on_timer(ctx, timer);
        ctx.count("submitted", 1);
        Some(Job { created: ctx.now(), tries: 0 })
    }

    /// Starts the next try of `job`: send the returned call, with the job, to the server.
    pub fn submit<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        job: Job,
        timeout: impl FnOnce(CallId) -> N::Timer,
    ) -> (CallId, Job) {
        let job = Job { tries: job.tries + 1, ..job };
        (self.calls.start(ctx, job, self.timeout_us, timeout), job)
    }

    /// The server answered try `call`. An answer to a try that timed out already is counted
    /// late by the calls (a late admission still gets its job done, by the server).
    pub fn answered<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        call: CallId,
        answer: Answer,
        arrive: N::Timer,
        retry: impl FnOnce(Job) -> N::Timer,
    ) {
        match answer {
            Answer::Held => {
                if self.calls.get(call).is_some() {
                    self.blocked.get_or_insert((call, ctx.now()));
                }
            }
            Answer::Accepted => {
                self.calls.reply(call, ctx);
                self.release(call, ctx, arrive);
            }
            Answer::Refused(retry_after_us) => {
                let Some(job) = self.calls.reply(call, ctx) else { return };
                self.release(call, ctx, arrive);
                match self.retry.delay_us(job.tries, 0, ctx.rng()) {
                    Some(backoff) => {
                        ctx.count("retries", 1);
                        ctx.set_timer(retry_after_us + backoff, retry(job));
                    }
                    None => ctx.count("gave_up", 1),
                }
            }
        }
    }

    /// Try `call`'s timer fired: if it is still awaiting an answer, the caller sees an error.
    pub fn timed_out<N: Node>(&mut self, ctx: &mut Ctx<N>, call: CallId, arrive: N::Timer) {
        if self.calls.timeout(call).is_some() {
            ctx.count("timed_out", 1);
            self.release(call, ctx, arrive);
        }
    }

    /// A crash (call from `on_crash`): the tries in flight are forgotten, and so is a hold.
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.calls.clear(ctx);
        self.blocked = None;
    }

    /// A try that held us is over: we are free to make jobs again.
    fn release<N: Node>(&mut self, call: CallId, ctx: &mut Ctx<N>, arrive: N::Timer) {
        if let Some((_, since)) = self.blocked.filter(|&(held, _)| held == call) {
            self.blocked = None;
            ctx.observe("blocked_us", ctx.now().since(since));
            self.arrivals.start(ctx, arrive);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::retry::Jitter;
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, NodeKind, NodeView, MICROS_PER_MS, MICROS_PER_S};

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
        Retry(Job),
        Timeout(CallId),
        /// The test's server answers each try this long after it is made.
        Answer(CallId, Time),
    }

    /// A producer and, inside it, a server that answers every try the same way after 1 ms.
    #[derive(Clone, Debug)]
    struct Alone {
        p: Producer,
        answer: Answer,
        /// Jobs made (the arrivals park after `max_jobs`), tries made (first tries and retries),
        /// and how long after its refusal each retry was sent.
        max_jobs: u32,
        jobs: u32,
        tries: u32,
        refused_at: std::collections::BTreeMap<Time, Time>,
        retry_waits_us: Vec<Micros>,
    }

    impl Node for Alone {
        type Msg = Msg;
        type Timer = Timer;

        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.p.arrivals.start(ctx, Timer::Arrive);
        }

        fn on_message(&mut self, _: u32, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }

        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let job = match timer {
                Timer::Arrive => {
                    let job = self.p.arrive(ctx, Timer::Arrive);
                    self.jobs += job.is_some() as u32;
                    if self.jobs == self.max_jobs {
                        self.p.arrivals.set_rate_per_s(0.0, ctx, Timer::Arrive);
                    }
                    job
                }
                Timer::Retry(job) => {
                    self.retry_waits_us.extend(self.refused_at.get(&job.created).map(|&t| ctx.now().since(t)));
                    Some(job)
                }
                Timer::Timeout(call) => return self.p.timed_out(ctx, call, Timer::Arrive),
                Timer::Answer(call, created) => {
                    self.refused_at.insert(created, ctx.now());
                    return self.p.answered(ctx, call, self.answer, Timer::Arrive, Timer::Retry);
                }
            };
            if let Some(job) = job {
                self.tries += 1;
                let (call, job) = self.p.submit(ctx, job, Timer::Timeout);
                ctx.set_timer(MICROS_PER_MS, Timer::Answer(call, job.created));
            }
        }

        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "producer")
        }
    }

    fn alone(answer: Answer, rate_per_s: f64, max_jobs: u32, max_retries: u32) -> Alone {
        let retry = RetryPolicy::new(max_retries, 100 * MICROS_PER_MS, 10 * MICROS_PER_S, Jitter::Full);
        let p = Producer::new(OpenLoop::constant(rate_per_s), Calls::new("admit_us"), retry, 50 * MICROS_PER_MS);
        Alone { p, answer, max_jobs, jobs: 0, tries: 0, refused_at: Default::default(), retry_waits_us: vec![] }
    }

    #[test]
    fn a_refused_job_is_tried_once_more_per_retry_after_retry_after_and_its_backoff() {
        // Ten jobs, one a second, each refused with Retry-After 2 s and 3 retries allowed:
        // 4 tries a job, and no retry sooner than 2 s after its refusal nor later than 2 s plus
        // the third retry's backoff cap (400 ms, full jitter).
        let retry_after_us = 2 * MICROS_PER_S;
        let a = run_alone(alone(Answer::Refused(retry_after_us), 1.0, 10, 3), 1, Time::from_secs(40));
        assert_eq!((a.jobs, a.tries), (10, 10 * 4), "{a:?}");
        assert_eq!(a.retry_waits_us.len(), 10 * 3);
        let (lo, hi) = (retry_after_us, retry_after_us + 400 * MICROS_PER_MS);
        assert!(a.retry_waits_us.iter().all(|w| (lo..=hi).contains(w)), "{:?}", a.retry_waits_us);
        assert_eq!(a.p.awaiting(), 0);
    }

    #[test]
    fn a_held_producer_makes_nothing_until_its_try_times_out() {
        // A hundred jobs a second, but every try is held and never answered again: the producer
        // makes nothing until the try's 50 ms timeout frees it, then makes the next at its next
        // arrival (at most 10 ms on). One try per 50–60 ms: 16 to 20 in a second, not 100.
        let a = run_alone(alone(Answer::Held, 100.0, u32::MAX, 0), 1, Time::from_secs(1));
        assert!((16..=20).contains(&a.tries) && a.jobs == a.tries, "{} tries", a.tries);
        // Accepted at once, the same producer makes its hundred (the last one may fall at 1 s).
        let free = run_alone(alone(Answer::Accepted, 100.0, u32::MAX, 0), 1, Time::from_secs(1));
        assert!((99..=100).contains(&free.tries), "{} tries", free.tries);
        assert!(!free.p.is_blocked() && free.p.awaiting() == 0);
    }
}
