//! Operations tried as calls: each try times out, and a failed or timed-out try is retried after a backoff while the policy — and a retry budget, when one is in force — allows.
//!
//! It joins three parts: [`Attempts`] numbers the operations and their tries and ignores
//! stale failures, [`Calls`] holds each try in flight with its timeout, and a [`RetryBudget`]
//! caps retries at a share of the operations started. A token is spent only on a retry that
//! will happen — the latest try failed and the policy has retries left — so stale failures
//! and last tries cost nothing, and with every try failing, retries come to the budget's
//! share of operations plus the tokens it held (the tests check both).
//!
//! How a caller uses it, inside its own `Node` impl (`Timer::Timeout(CallId)` and
//! `Timer::Retry(u32, u32)` are the caller's):
//! - `let call = tries.start(ctx, data, timeout_us, Timer::Timeout)`, then send the request
//!   carrying `call`; the callee echoes it in its answer;
//! - on an answer: `tries.ended(ctx, call, Some(ok), &policy, budgeted, Timer::Retry)`; when
//!   `Timer::Timeout(call)` fires, the same with `None`. A retry's timer is set for you;
//! - on `Timer::Retry(op, try_no)`: `tries.again(ctx, op, try_no, timeout_us, Timer::Timeout)`
//!   gives the call to send;
//! - in `on_crash`: `tries.clear(ctx)` — operations, tries in flight and saved tokens are lost.

use crate::parts::attempts::{Attempts, Next};
use crate::parts::calls::{CallId, Calls};
use crate::parts::retry::{RetryBudget, RetryPolicy};
use faultline_core::{Ctx, Micros, Node};

/// What became of an operation when one of its tries ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended<T> {
    /// A try succeeded: the operation is over, `took_us` after it started.
    Succeeded { data: T, took_us: Micros },
    /// The try failed and no retry is allowed (the policy's are used up, or the budget's).
    GaveUp(T),
    /// The try failed; the next is due after `wait_us` (its timer is set).
    Retrying { wait_us: Micros },
    /// An answer to a try that timed out or was answered already, or a failure of a try that
    /// is not the operation's latest: nothing changes.
    Stale,
}

/// A caller's operations and their tries in flight, with its retry budget.
#[derive(Clone, Debug)]
pub struct Retried<T> {
    ops: Attempts<T>,
    /// Tries in flight: (operation, try number).
    calls: Calls<(u32, u32)>,
    budget: RetryBudget,
}

impl<T: Clone> Retried<T> {
    /// Tries kept in `calls` (which names the latency histogram), retries judged by `budget`
    /// whenever a caller says the budget is in force.
    pub fn new(calls: Calls<(u32, u32)>, budget: RetryBudget) -> Retried<T> {
        Retried { ops: Attempts::default(), calls, budget }
    }

    /// Starts an operation with its first try (a deposit in the budget): send the returned call.
    pub fn start<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        data: T,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        let op = self.ops.start(ctx.now(), data);
        self.budget.on_request();
        self.calls.start(ctx, (op, 1), timeout_us, timer)
    }

    /// Try `try_no` of `op`, as its retry timer fires: the call to send, or `None` if the
    /// operation is over (it cannot be, unless a crash cleared it).
    pub fn again<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        op: u32,
        try_no: u32,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<CallId> {
        self.ops.is_open(op).then(|| self.calls.start(ctx, (op, try_no), timeout_us, timer))
    }

    /// A try ended: `Some(ok)` with its answer, `None` at its timeout. A failure is retried
    /// under `policy` — and, when `budgeted`, only if the budget has a token for it — by a
    /// timer made by `retry(op, try_no)` after the policy's backoff.
    pub fn ended<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        call: CallId,
        answer: Option<bool>,
        policy: &RetryPolicy,
        budgeted: bool,
        retry: impl FnOnce(u32, u32) -> N::Timer,
    ) -> Ended<T> {
        let ended = if answer.is_some() { self.calls.reply(call, ctx) } else { self.calls.timeout(call) };
        let Some((op, try_no)) = ended else { return Ended::Stale };
        let Some((data, latest)) = self.ops.get(op).map(|o| (o.data.clone(), o.open && o.tries == try_no)) else {
            return Ended::Stale;
        };
        if answer == Some(true) {
            return match self.ops.succeeded(op, ctx.now()) {
                Some(took_us) => Ended::Succeeded { data, took_us },
                None => Ended::Stale,
            };
        }
        let allowed = latest && try_no <= policy.max_retries && (!budgeted || self.budget.try_retry());
        match self.ops.failed(op, try_no, if allowed { policy } else { &RetryPolicy::NEVER }, ctx.rng()) {
            Next::Retry { wait_us, try_no } => {
                ctx.set_timer(wait_us, retry(op, try_no));
                Ended::Retrying { wait_us }
            }
            Next::GaveUp => Ended::GaveUp(data),
            Next::Ignored => Ended::Stale,
        }
    }

    /// A crash (call from `on_crash`): every operation and try in flight is forgotten (later
    /// answers count as late) and the budget starts afresh, full; the kernel drops the timers.
    pub fn clear<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.calls.clear(ctx);
        self.ops = Attempts::default();
        self.budget = self.budget.refilled();
    }

    /// Only the tries in flight are lost (later answers count as late): the operations stay
    /// open, as a caller that keeps its operations durably but not its connections.
    pub fn drop_tries<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.calls.clear(ctx);
    }

    /// The operation and try number of a try in flight.
    pub fn try_of(&self, call: CallId) -> Option<(u32, u32)> {
        self.calls.get(call).copied()
    }

    /// The data kept for operation `op`, open or not.
    pub fn data_mut(&mut self, op: u32) -> Option<&mut T> {
        self.ops.data_mut(op)
    }

    /// Tries in flight.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Operations neither succeeded nor given up.
    pub fn open(&self) -> u32 {
        self.ops.open()
    }

    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    pub fn budget_mut(&mut self) -> &mut RetryBudget {
        &mut self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::retry::Jitter;
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, NodeKind, NodeView, Time, MICROS_PER_MS};

    #[derive(Clone, Debug)]
    enum Msg {
        Call(CallId),
        Answer(CallId, bool),
    }

    #[derive(Clone, Debug)]
    enum Timer {
        Start,
        Timeout(CallId),
        Retry(u32, u32),
    }

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match self {
                Msg::Call(_) => "call",
                Msg::Answer(..) => "answer",
            }
        }
    }

    impl Label for Timer {
        fn label(&self) -> &'static str {
            match self {
                Timer::Start => "start",
                Timer::Timeout(_) => "timeout",
                Timer::Retry(..) => "retry",
            }
        }
    }

    /// A caller that calls itself: an operation every 100 ms, each try answered after
    /// `answer_ms` — failing with probability `fail_pct`% — with a 10 ms timeout.
    #[derive(Clone, Debug)]
    struct Caller {
        tries: Retried<u32>,
        policy: RetryPolicy,
        budgeted: bool,
        ops: u32,
        fail_pct: u64,
        answer_ms: u64,
        /// Tries sent, and the outcomes seen: succeeded, gave up, retrying, stale.
        sent: u32,
        seen: [u32; 4],
        most_in_flight: usize,
    }

    impl Node for Caller {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(0, Timer::Start);
        }
        fn on_message(&mut self, _: u32, msg: Msg, ctx: &mut Ctx<Self>) {
            match msg {
                Msg::Call(call) => {
                    let ok = ctx.rng().below(100) >= self.fail_pct;
                    ctx.send_after(self.answer_ms * MICROS_PER_MS, ctx.me(), Msg::Answer(call, ok));
                }
                Msg::Answer(call, ok) => self.ended(call, Some(ok), ctx),
            }
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let call = match timer {
                Timer::Start if self.ops > 0 => {
                    self.ops -= 1;
                    ctx.set_timer(100 * MICROS_PER_MS, Timer::Start);
                    Some(self.tries.start(ctx, self.ops, 10 * MICROS_PER_MS, Timer::Timeout))
                }
                Timer::Start => None,
                Timer::Timeout(call) => return self.ended(call, None, ctx),
                Timer::Retry(op, try_no) => self.tries.again(ctx, op, try_no, 10 * MICROS_PER_MS, Timer::Timeout),
            };
            if let Some(call) = call {
                self.sent += 1;
                self.most_in_flight = self.most_in_flight.max(self.tries.in_flight());
                ctx.send(ctx.me(), Msg::Call(call));
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "caller")
        }
    }

    impl Caller {
        fn new(ops: u32, fail_pct: u64, policy: RetryPolicy, budget: Option<u32>) -> Caller {
            let budget_pct = budget.unwrap_or(0);
            let tries = Retried::new(Calls::new("try_us").counting_late("late"), RetryBudget::new(budget_pct, 10));
            let (budgeted, seen) = (budget.is_some(), [0; 4]);
            Caller { tries, policy, budgeted, ops, fail_pct, answer_ms: 1, sent: 0, seen, most_in_flight: 0 }
        }

        fn ended(&mut self, call: CallId, answer: Option<bool>, ctx: &mut Ctx<Self>) {
            let ended = self.tries.ended(ctx, call, answer, &self.policy, self.budgeted, Timer::Retry);
            let i = match ended {
                Ended::Succeeded { took_us, .. } => {
                    assert!(took_us >= self.answer_ms * MICROS_PER_MS, "a try takes its answer's time");
                    0
                }
                Ended::GaveUp(_) => 1,
                Ended::Retrying { .. } => 2,
                Ended::Stale => 3,
            };
            self.seen[i] += 1;
        }
    }

    /// A caller whose tries are never answered: what `try_of` and `data_mut` see, and what is
    /// left after `drop_tries`.
    #[derive(Clone, Debug)]
    struct Dropper {
        tries: Retried<u32>,
        before: Vec<Option<(u32, u32)>>,
        after: Vec<Option<(u32, u32)>>,
    }

    impl Node for Dropper {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            let mut calls: Vec<CallId> =
                (0..3).map(|d| self.tries.start(ctx, d, MICROS_PER_MS, Timer::Timeout)).collect();
            calls.extend(self.tries.again(ctx, 2, 2, MICROS_PER_MS, Timer::Timeout));
            *self.tries.data_mut(2).unwrap() += 40;
            self.before = calls.iter().map(|&c| self.tries.try_of(c)).collect();
            self.tries.drop_tries(ctx);
            self.after = calls.iter().map(|&c| self.tries.try_of(c)).collect();
        }
        fn on_message(&mut self, _: u32, _: Msg, _: &mut Ctx<Self>) {}
        fn on_timer(&mut self, timer: Timer, _: &mut Ctx<Self>) {
            panic!("{timer:?}: dropped tries set no timers");
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "dropper")
        }
    }

    #[test]
    fn dropping_the_tries_keeps_the_operations_open_with_their_data() {
        let tries = Retried::new(Calls::new("try_us"), RetryBudget::new(0, 0));
        let d = run_alone(Dropper { tries, before: vec![], after: vec![] }, 1, Time::from_secs(1));
        assert_eq!(d.before, [Some((1, 1)), Some((2, 1)), Some((3, 1)), Some((2, 2))]);
        assert_eq!(d.after, [None; 4], "no try in flight");
        let mut tries = d.tries;
        assert_eq!((tries.open(), tries.in_flight(), tries.data_mut(2).copied()), (3, 0, Some(41)));
    }

    const R3: RetryPolicy = RetryPolicy::new(3, MICROS_PER_MS, 8 * MICROS_PER_MS, Jitter::Full);

    fn run(caller: Caller) -> Caller {
        run_alone(caller, 1, Time::from_secs(1_000))
    }

    #[test]
    fn every_try_failing_costs_r_plus_one_tries() {
        let c = run(Caller::new(200, 100, R3, None));
        assert_eq!((c.sent, c.seen), (800, [0, 200, 600, 0]));
        assert_eq!((c.tries.open(), c.tries.in_flight(), c.most_in_flight), (0, 0, 1));
    }

    #[test]
    fn a_budget_holds_retries_to_its_share_plus_the_tokens_it_held() {
        // 1,000 operations, every try failing, a 10% budget holding 10 tokens and starting full:
        // the first deposit overflows the bucket, so 99.9 tokens come in after the first 10.
        // Retries take whole tokens: 109, and 0.9 of a token is left.
        let c = run(Caller::new(1_000, 100, R3, Some(10)));
        let retries = c.seen[2];
        assert_eq!(retries, 109);
        assert_eq!((c.seen[1], c.sent), (1_000, 1_000 + retries));
        assert_eq!(c.tries.budget().milli_tokens(), 900);
        assert_eq!(c.tries.budget().refilled().tokens(), 10, "a restarted caller's budget is full");
    }

    #[test]
    fn a_token_is_spent_only_on_a_retry_that_happens() {
        // No retries allowed: every operation gives up, and the budget stays full.
        let never = RetryPolicy { max_retries: 0, ..R3 };
        let c = run(Caller::new(100, 100, never, Some(10)));
        assert_eq!((c.seen, c.tries.budget().tokens()), ([0, 100, 0, 0], 10));
    }

    #[test]
    fn late_answers_are_stale_and_the_timed_out_try_is_retried() {
        // Every answer comes after 30 ms, past the 10 ms timeout: each try times out and is
        // retried, and its late answer (a success) changes nothing.
        let mut late = Caller::new(50, 0, R3, None);
        late.answer_ms = 30;
        let c = run(late);
        assert_eq!((c.sent, c.seen), (200, [0, 50, 150, 200]));
    }

    #[test]
    fn a_later_try_succeeds_and_the_operation_closes_once() {
        // Half the tries fail; with ten retries nearly every operation succeeds, none twice.
        let many = RetryPolicy { max_retries: 10, ..R3 };
        let c = run(Caller::new(1_000, 50, many, None));
        let [ok, gave_up, retrying, stale] = c.seen;
        assert_eq!((ok + gave_up, stale, c.sent), (1_000, 0, 1_000 + retrying));
        assert!(gave_up <= 3 && retrying > 800, "{:?}", c.seen);
    }
}
