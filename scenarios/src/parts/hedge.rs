//! Hedged calls: a call tried once and, if no answer came within a delay, tried again on another target; the first answer wins and the other tries are cancelled.
//!
//! Dean & Barroso, "The Tail at Scale" (CACM 56(2), 2013): send a second copy of a request
//! once the first has been outstanding longer than the 95th-percentile expected latency;
//! that adds about 5% load and cuts the tail sharply, because the hedge is a fresh draw and
//! the slowest of two independent draws is rare. A hedge is sent only for a call still
//! unanswered at the delay, so the share of calls hedged is `P(latency > delay)`, and a call's
//! latency is `min(L₁, delay + L₂)`: `P(W > t) = P(L₁ > t) · P(L₂ > t − delay)` past the delay.
//!
//! How a scenario uses it (the timers are the scenario's, made from a `CallId`):
//! - `let call = hedges.start(ctx, payload, to, Some(delay_us), Timer::Try, Timer::Hedge)`,
//!   then send the request to `to` carrying `call` (the first try's id is the call's id).
//! - on `Timer::Hedge(call)`: `hedges.hedge(ctx, call, other, Timer::Try)` —
//!   `Some(id)`: send the copy to `other` carrying `id`; `None`: the call already ended.
//! - on an answer carrying `id`: `hedges.reply(id, ctx)` — `Some(won)` the first time: tell
//!   each of `won.losers` (try id and target) to stop; `None`: a loser's late answer, ignore it.
//! - on `Timer::Try(id)`: `hedges.timeout(id, ctx)` — `Some(payload)` when no other try of
//!   the call is out: the call failed (a hedge not yet sent is called off).
//! - to give up (a deadline): `hedges.cancel(call, ctx)` returns the payload and the tries to stop.
//!
//! [`Fanouts`] gathers requests fanned out as one hedged call per part (scatter-gather): a
//! request is answered when every part has answered or failed, or at its deadline if armed.
//!
//! For theory lines and tests, [`slowest_of`], [`hedged`] and [`quantile`] turn one try's
//! latency distribution into a fan-out's and a hedged call's; [`straggler_cdf`] is a common
//! one (an exponential time, plus a fixed delay for a share of stragglers).

use crate::parts::calls::{CallId, Calls};
use faultline_core::{Ctx, Micros, Node, NodeId, Time, TimerId};
use std::collections::BTreeMap;

/// One try of a call: which call, and where it went.
#[derive(Clone, Copy, Debug)]
struct Try {
    call: CallId,
    to: NodeId,
}

#[derive(Clone, Debug)]
struct Open<T> {
    payload: T,
    /// On the caller's clock.
    started: Time,
    /// Tries sent and not yet answered or timed out, oldest first, with their targets.
    out: Vec<(CallId, NodeId)>,
    hedge_timer: Option<TimerId>,
}

/// The first answer to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Won<T> {
    pub payload: T,
    /// The call's id (its first try's).
    pub call: CallId,
    /// From the call's start to this answer (the caller's clock).
    pub latency_us: Micros,
    /// Who answered, and whether it was a hedge (not the first try).
    pub by: NodeId,
    pub hedged: bool,
    /// The tries still out, now cancelled here: tell their targets to stop working on them.
    pub losers: Stops,
}

/// The hedged calls a node has under way.
#[derive(Clone, Debug)]
pub struct Hedges<T> {
    /// Every try, as a call with its own timeout; its latency histogram gets each answered try.
    tries: Calls<Try>,
    /// Each try's timeout.
    timeout_us: Micros,
    open: BTreeMap<CallId, Open<T>>,
}

impl<T> Hedges<T> {
    /// Hedged calls whose tries each time out after `timeout_us`; answered tries' latencies
    /// (µs) go to the histogram `try_latency`.
    pub fn new(try_latency: &'static str, timeout_us: Micros) -> Hedges<T> {
        Hedges { tries: Calls::new(try_latency), timeout_us, open: BTreeMap::new() }
    }

    /// Starts a call with its first try to `to` (send it yourself, carrying the returned id);
    /// `hedge_after_us` arms `hedge_timer` (`None`: never hedged). A try's timeout fires `try_timer`.
    pub fn start<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        payload: T,
        to: NodeId,
        hedge_after_us: Option<Micros>,
        try_timer: impl FnOnce(CallId) -> N::Timer,
        hedge_timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        let id = self.tries.start(ctx, Try { call: CallId(0), to }, self.timeout_us, try_timer);
        self.tries.get_mut(id).expect("just started").call = id;
        let hedge_timer = hedge_after_us.map(|after| ctx.set_timer(after, hedge_timer(id)));
        self.open.insert(id, Open { payload, started: ctx.now(), out: vec![(id, to)], hedge_timer });
        id
    }

    /// The hedge delay passed: a new try of `call` to `to` (send it, carrying the id), or
    /// `None` if the call has ended.
    pub fn hedge<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        call: CallId,
        to: NodeId,
        try_timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<CallId> {
        let open = self.open.get_mut(&call)?;
        open.hedge_timer = None;
        let id = self.tries.start(ctx, Try { call, to }, self.timeout_us, try_timer);
        open.out.push((id, to));
        Some(id)
    }

    /// An answer to try `id`: the call's first answer wins (`Some`), and its other tries are
    /// cancelled here (returned as losers) with its hedge timer. `None` for a loser's answer,
    /// a try that timed out, or an unknown id.
    pub fn reply<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<Won<T>> {
        let Try { call, to } = self.tries.reply(id, ctx)?;
        let open = self.open.remove(&call).expect("an answered try's call is open");
        let losers: Vec<_> = open.out.into_iter().filter(|&(t, _)| t != id).collect();
        for &(t, _) in &losers {
            self.tries.cancel(t, ctx);
        }
        if let Some(timer) = open.hedge_timer {
            ctx.cancel_timer(timer);
        }
        let latency_us = ctx.now().since(open.started);
        Some(Won { payload: open.payload, call, latency_us, by: to, hedged: id != call, losers })
    }

    /// Try `id` timed out. The call fails (`Some(payload)`) when no other try is out; a hedge
    /// not yet sent is then called off. Otherwise the other tries may yet answer.
    pub fn timeout<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<T> {
        let Try { call, .. } = self.tries.timeout(id)?;
        let open = self.open.get_mut(&call).expect("a try's call is open");
        open.out.retain(|&(t, _)| t != id);
        if !open.out.is_empty() {
            return None;
        }
        let open = self.open.remove(&call).expect("open");
        if let Some(timer) = open.hedge_timer {
            ctx.cancel_timer(timer);
        }
        Some(open.payload)
    }

    /// Gives the call up (a deadline passed): its payload and the tries still out, all
    /// cancelled here (tell their targets). `None` if it had ended.
    pub fn cancel<N: Node>(&mut self, call: CallId, ctx: &mut Ctx<N>) -> Option<(T, Vec<(CallId, NodeId)>)> {
        let open = self.open.remove(&call)?;
        for &(t, _) in &open.out {
            self.tries.cancel(t, ctx);
        }
        if let Some(timer) = open.hedge_timer {
            ctx.cancel_timer(timer);
        }
        Some((open.payload, open.out))
    }

    /// Forgets every call (a crash): their payloads, oldest first. Ids are never reused.
    pub fn clear<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<T> {
        self.tries.clear(ctx);
        std::mem::take(&mut self.open).into_values().map(|o| o.payload).collect()
    }

    pub fn get(&self, call: CallId) -> Option<&T> {
        self.open.get(&call).map(|o| &o.payload)
    }
    /// Calls under way.
    pub fn len(&self) -> usize {
        self.open.len()
    }
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
    /// Tries out (sent, not answered, timed out or cancelled).
    pub fn tries_out(&self) -> usize {
        self.tries.len()
    }
}

/// A request fanned out and being gathered.
#[derive(Clone, Debug)]
struct Fanout<R, P> {
    req: R,
    started: Time,
    calls: Vec<CallId>,
    /// Parts still out, answered, and failed (their payloads).
    left: u32,
    got: u32,
    failed: Vec<P>,
    last: Option<NodeId>,
    deadline: Option<TimerId>,
}

/// Tries to tell their targets to stop: each try's id and target.
pub type Stops = Vec<(CallId, NodeId)>;

/// A request answered: with `got` of its `of` parts, the last answered by `last`; the parts
/// missing (their payloads), and the tries still out, cancelled here (tell their targets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gathered<R, P> {
    pub id: u64,
    pub req: R,
    pub latency_us: Micros,
    pub got: u32,
    pub of: u32,
    pub last: Option<NodeId>,
    pub missing: Vec<P>,
    pub stop: Stops,
}

/// Requests fanned out as one hedged call per part (payload `P`), each with the caller's `R`.
#[derive(Clone, Debug)]
pub struct Fanouts<R, P> {
    /// The parts' calls, each with its request's id (hedge them through this).
    pub hedges: Hedges<(u64, P)>,
    open: BTreeMap<u64, Fanout<R, P>>,
    next: u64,
}

impl<R, P> Fanouts<R, P> {
    /// As [`Hedges::new`], for the parts' calls.
    pub fn new(try_latency: &'static str, timeout_us: Micros) -> Fanouts<R, P> {
        Fanouts { hedges: Hedges::new(try_latency, timeout_us), open: BTreeMap::new(), next: 0 }
    }

    /// Opens a request, with no parts yet: add them with `call`.
    pub fn open<N: Node>(&mut self, ctx: &mut Ctx<N>, req: R) -> u64 {
        let id = self.next;
        self.next += 1;
        let started = ctx.now();
        let f =
            Fanout { req, started, calls: Vec::new(), left: 0, got: 0, failed: Vec::new(), last: None, deadline: None };
        self.open.insert(id, f);
        id
    }

    /// A part of request `id`: a hedged call to `to` (send it, carrying the returned id).
    #[allow(clippy::too_many_arguments)]
    pub fn call<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        id: u64,
        part: P,
        to: NodeId,
        hedge_after_us: Option<Micros>,
        try_timer: impl FnOnce(CallId) -> N::Timer,
        hedge_timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        let call = self.hedges.start(ctx, (id, part), to, hedge_after_us, try_timer, hedge_timer);
        let f = self.open.get_mut(&id).expect("an open request");
        f.calls.push(call);
        f.left += 1;
        call
    }

    /// Arms request `id`'s deadline, `deadline_us` after it was opened (at once if that has
    /// passed), unless it has one: `timer` fires, and `deadline` answers it.
    pub fn arm<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        id: u64,
        deadline_us: Micros,
        timer: impl FnOnce(u64) -> N::Timer,
    ) {
        let Some(f) = self.open.get_mut(&id).filter(|f| f.deadline.is_none()) else { return };
        let left_us = deadline_us.saturating_sub(ctx.now().since(f.started));
        f.deadline = Some(ctx.set_timer(left_us, timer(id)));
    }

    /// An answer to try `id`: the losers to stop, and the request if that was its last part.
    pub fn reply<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<(Stops, Option<Gathered<R, P>>)> {
        let won = self.hedges.reply(id, ctx)?;
        let request = won.payload.0;
        let f = self.open.get_mut(&request).expect("an open call's request is open");
        (f.left, f.got, f.last) = (f.left - 1, f.got + 1, Some(won.by));
        Some((won.losers, self.settle(request, ctx)))
    }

    /// Try `id` timed out: the request, if its part failed and that was its last.
    pub fn timeout<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<Gathered<R, P>> {
        let (request, part) = self.hedges.timeout(id, ctx)?;
        let f = self.open.get_mut(&request).expect("an open call's request is open");
        f.left -= 1;
        f.failed.push(part);
        self.settle(request, ctx)
    }

    /// Request `id`'s deadline: answered with what it has.
    pub fn deadline<N: Node>(&mut self, id: u64, ctx: &mut Ctx<N>) -> Option<Gathered<R, P>> {
        self.open.get_mut(&id)?.deadline = None;
        Some(self.gather(id, ctx))
    }

    /// Answers the request if none of its parts is still out.
    fn settle<N: Node>(&mut self, id: u64, ctx: &mut Ctx<N>) -> Option<Gathered<R, P>> {
        (self.open.get(&id)?.left == 0).then(|| self.gather(id, ctx))
    }

    fn gather<N: Node>(&mut self, id: u64, ctx: &mut Ctx<N>) -> Gathered<R, P> {
        let f = self.open.remove(&id).expect("an open request");
        if let Some(timer) = f.deadline {
            ctx.cancel_timer(timer);
        }
        let (mut missing, mut stop) = (f.failed, Vec::new());
        for &call in &f.calls {
            if let Some(((_, part), tries)) = self.hedges.cancel(call, ctx) {
                missing.push(part);
                stop.extend(tries);
            }
        }
        let (of, latency_us) = (f.calls.len() as u32, ctx.now().since(f.started));
        Gathered { id, req: f.req, latency_us, got: f.got, of, last: f.last, missing, stop }
    }

    /// The requests being gathered, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &R)> {
        self.open.iter().map(|(&id, f)| (id, &f.req))
    }
    pub fn len(&self) -> usize {
        self.open.len()
    }
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
    /// Forgets every request (a crash) and their calls.
    pub fn clear<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.hedges.clear(ctx);
        self.open.clear();
    }
}

/// The distribution of the slowest of `n` independent draws from `cdf`: `cdf(t)^n`.
pub fn slowest_of(cdf: impl Fn(f64) -> f64, n: u32) -> impl Fn(f64) -> f64 {
    move |t| libm::pow(cdf(t), n as f64)
}

/// The distribution of a call hedged after `delay` with independent tries from `cdf`:
/// `1 − (1 − F(t))·(1 − F(t − delay))` (the second try's clock starts at the delay).
pub fn hedged(cdf: impl Fn(f64) -> f64, delay: f64) -> impl Fn(f64) -> f64 {
    move |t| 1.0 - (1.0 - cdf(t)) * (1.0 - if t > delay { cdf(t - delay) } else { 0.0 })
}

/// A call taking `fixed_us` + X + D·B, X exponential (mean `m_us`), B a coin with probability `p` (a
/// straggler, D = `d_us` more): F(t) = (1 − p)·G(t − fixed) + p·G(t − fixed − D), G(x) = 1 − e^(−x/m).
pub fn straggler_cdf(m_us: f64, p: f64, d_us: f64, fixed_us: f64) -> impl Fn(f64) -> f64 + Copy {
    let g = move |x: f64| if x <= 0.0 { 0.0 } else { 1.0 - libm::exp(-x / m_us) };
    move |t| (1.0 - p) * g(t - fixed_us) + p * g(t - fixed_us - d_us)
}

/// Where a distribution function reaches `q`: the least `t` in `[0, hi]` with `cdf(t) ≥ q`,
/// to 1e-30 of `hi` (bisection; `hi` if it never does).
pub fn quantile(cdf: impl Fn(f64) -> f64, q: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, hi);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, NodeKind, NodeView, MICROS_PER_MS};

    /// A caller that is also its own two servers (targets 0 and 1 are both itself, told
    /// apart by the message): every `GAP` it makes a call; a try's answer comes after an
    /// exponential time, or never when the target is `DEAD`.
    #[derive(Clone, Debug)]
    struct Caller {
        hedges: Hedges<u32>,
        mean_us: f64,
        delay_us: Option<Micros>,
        made: u32,
        won: Vec<Won<u32>>,
        failed: Vec<u32>,
        hedges_sent: u32,
        /// Answers arriving for tries no longer out (losers not stopped in time, late ones).
        ignored: u32,
        dead: Option<u8>,
    }

    const GAP: Micros = MICROS_PER_MS;
    const TIMEOUT: Micros = 1_000 * MICROS_PER_MS;

    #[derive(Clone, Debug, Label)]
    enum Msg {
        Try(CallId, u8),
        Answer(CallId),
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Next,
        Try(CallId),
        Hedge(CallId),
    }

    impl Node for Caller {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(GAP, Timer::Next);
        }
        fn on_message(&mut self, _: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
            match msg {
                Msg::Try(id, target) if Some(target) != self.dead => {
                    let after = ctx.rng().exponential(self.mean_us) as Micros;
                    ctx.send_after(after, ctx.me(), Msg::Answer(id));
                }
                Msg::Try(..) => {}
                Msg::Answer(id) => match self.hedges.reply(id, ctx) {
                    Some(won) => self.won.push(won),
                    None => self.ignored += 1,
                },
            }
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            match timer {
                Timer::Next => {
                    let me = ctx.me();
                    let id = self.hedges.start(ctx, self.made, me, self.delay_us, Timer::Try, Timer::Hedge);
                    ctx.send(me, Msg::Try(id, 0));
                    self.made += 1;
                    ctx.set_timer(GAP, Timer::Next);
                }
                Timer::Hedge(call) => {
                    let me = ctx.me();
                    let id = self.hedges.hedge(ctx, call, me, Timer::Try).expect("the timer is cancelled");
                    ctx.send(me, Msg::Try(id, 1));
                    self.hedges_sent += 1;
                }
                Timer::Try(id) => self.failed.extend(self.hedges.timeout(id, ctx)),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "caller")
        }
    }

    fn caller(mean_ms: f64, delay_ms: Option<u64>, dead: Option<u8>) -> Caller {
        Caller {
            hedges: Hedges::new("try_us", TIMEOUT),
            mean_us: mean_ms * 1000.0,
            delay_us: delay_ms.map(|d| d * MICROS_PER_MS),
            made: 0,
            won: Vec::new(),
            failed: Vec::new(),
            hedges_sent: 0,
            ignored: 0,
            dead,
        }
    }

    #[test]
    fn hedging_at_the_p95_adds_five_percent_and_follows_the_min_of_two_draws() {
        // Latency exponential, mean 10 ms (the link is local: 0 µs); the p95 is 10·ln 20 =
        // 29.96 ms, so hedging after 30 ms sends a copy for e^(−3) = 4.98% of calls (Dean &
        // Barroso's "about 5% extra load"). Past the delay a call's latency W = min(L₁, 30 + L₂)
        // has P(W > t) = e^(−t/10) · e^(−(t−30)/10): at t = 40 ms, e^(−4)·e^(−1) = 0.67%,
        // against e^(−4) = 1.83% unhedged, and the p99 falls from 46 ms to 37.3 ms. 20,000 calls:
        // the hedged share's s.d. is 0.15% (binomial), P(W > 40) has s.d. 0.058%; the bounds
        // are 3 s.d.s, while hedging at the p90 (23 ms) would send 10% and at the p99 (46 ms) 1%.
        let c = run_alone(caller(10.0, Some(30), None), 7, Time::from_ms(20_000));
        let n = c.won.len() as f64;
        assert!(c.failed.is_empty() && n > 19_900.0);
        let share = c.hedges_sent as f64 / c.made as f64;
        assert!((share - libm::exp(-3.0)).abs() < 0.0045, "hedged {share:.4}");
        let over = |t_ms: u64| c.won.iter().filter(|w| w.latency_us > t_ms * MICROS_PER_MS).count() as f64 / n;
        let want = 1.0 - hedged(|t| 1.0 - libm::exp(-t / 10.0), 30.0)(40.0);
        assert!((want - libm::exp(-5.0)).abs() < 1e-12);
        assert!((over(40) - want).abs() < 0.0018, "P(W > 40 ms) = {:.4}, theory {want:.4}", over(40));
        let (hedged_wins, all) = (c.won.iter().filter(|w| w.hedged).count(), c.won.len());
        // A hedge wins when L₂ + 30 < L₁ given L₁ > 30: P = 1/2 by memorylessness.
        let wins = hedged_wins as f64 / c.hedges_sent as f64;
        assert!((wins - 0.5).abs() < 0.05, "hedges won {wins:.3} of the races ({hedged_wins} of {all})");
        // A call won after its hedge went out has one loser, cancelled at the win, whose answer
        // is then ignored (all but those still due when the run stops, or whose call is open).
        let losers: usize = c.won.iter().map(|w| w.losers.len()).sum();
        assert!(c.won.iter().all(|w| w.losers.len() <= 1) && losers <= c.hedges_sent as usize);
        assert!(c.hedges_sent as usize - losers <= c.hedges.len(), "{losers} losers, {} hedges", c.hedges_sent);
        assert!(c.ignored as usize <= losers && losers - c.ignored as usize <= 20, "{} ignored", c.ignored);
    }

    #[test]
    fn the_theory_helpers_agree_with_closed_forms() {
        // Exponential, mean 1: the slowest of n has median ln(1 / (1 − 0.5^(1/n))); n = 1: ln 2.
        let exp = |t: f64| 1.0 - libm::exp(-t);
        assert!((quantile(exp, 0.5, 100.0) - libm::log(2.0)).abs() < 1e-9);
        let n10 = quantile(slowest_of(exp, 10), 0.5, 100.0);
        assert!((n10 - libm::log(1.0 / (1.0 - libm::pow(0.5, 0.1)))).abs() < 1e-9, "{n10}");
        // Hedged after 1: below the delay it is the first try alone.
        assert_eq!(hedged(exp, 1.0)(0.5), exp(0.5));
        assert_eq!(quantile(|_| 0.0, 0.5, 7.0), 7.0);
        // 1 + X (mean 5) + 100 for 1%: the median solves 0.99·(1 − e^(−x/5)) = 0.5, x = 5·ln(0.99/0.49)
        // (no straggler gets there), so 4.52; P(over 101) = 0.01 + 0.99·e^(−20).
        let call = straggler_cdf(5.0, 0.01, 100.0, 1.0);
        assert!((quantile(call, 0.5, 1e3) - (1.0 + 5.0 * libm::log(0.99 / 0.49))).abs() < 1e-9);
        assert!((1.0 - call(101.0) - (0.01 + 0.99 * libm::exp(-20.0))).abs() < 1e-12 && call(0.5) == 0.0);
    }

    #[test]
    fn without_a_delay_nothing_is_hedged_and_a_dead_target_fails_the_call_at_its_timeout() {
        let c = run_alone(caller(10.0, None, Some(0)), 3, Time::from_ms(3_000));
        assert_eq!((c.hedges_sent, c.won.len()), (0, 0));
        // Calls made every ms from 1 ms; each fails 1 s after it started: 2,000 by 3 s.
        assert_eq!(c.failed.len(), 2000);
        assert_eq!(c.failed[..3], [0, 1, 2]);
        assert_eq!(c.hedges.len(), c.made as usize - 2000);
    }

    #[test]
    fn a_hedge_to_a_live_target_rescues_calls_whose_first_target_is_dead() {
        // The first target never answers; the hedge after 5 ms always does, so no call fails
        // (the dead try times out later, and that alone does not fail the call), every win is
        // a hedge, and the latency is 5 ms + an exponential draw.
        let c = run_alone(caller(10.0, Some(5), Some(0)), 5, Time::from_ms(3_000));
        assert!(c.failed.is_empty() && c.won.len() > 2500);
        assert!(c.won.iter().all(|w| w.hedged && w.latency_us >= 5 * MICROS_PER_MS && w.losers.len() == 1));
        let mean = c.won.iter().map(|w| w.latency_us as f64).sum::<f64>() / c.won.len() as f64;
        assert!((mean / 1000.0 - 15.0).abs() < 0.6, "mean {mean} µs");
        assert!(c.hedges.tries_out() <= 2 * c.hedges.len());
    }
    /// A node that fans a request out to 3 parts every `GAP` and serves them itself: part
    /// `dead` never answers; the others answer after an exponential time (mean 10 ms).
    #[derive(Clone, Debug)]
    struct Gatherer {
        fan: Fanouts<u32, u8>,
        dead: Option<u8>,
        deadline_us: Option<Micros>,
        made: u32,
        done: Vec<Gathered<u32, u8>>,
    }

    #[derive(Clone, Debug, Label)]
    enum FanTimer {
        Next,
        Try(CallId),
        Hedge(CallId),
        Deadline(u64),
    }

    impl Node for Gatherer {
        type Msg = Msg;
        type Timer = FanTimer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(GAP, FanTimer::Next);
        }
        fn on_message(&mut self, _: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
            match msg {
                Msg::Try(id, part) if Some(part) != self.dead => {
                    let after = ctx.rng().exponential(10_000.0) as Micros;
                    ctx.send_after(after, ctx.me(), Msg::Answer(id));
                }
                Msg::Try(..) => {}
                Msg::Answer(id) => {
                    if let Some((losers, done)) = self.fan.reply(id, ctx) {
                        assert!(losers.is_empty(), "nothing is hedged");
                        self.done.extend(done);
                    }
                }
            }
        }
        fn on_timer(&mut self, timer: FanTimer, ctx: &mut Ctx<Self>) {
            let me = ctx.me();
            match timer {
                FanTimer::Next => {
                    let id = self.fan.open(ctx, self.made);
                    for part in 0..3 {
                        let call = self.fan.call(ctx, id, part, me, None, FanTimer::Try, FanTimer::Hedge);
                        ctx.send(me, Msg::Try(call, part));
                    }
                    if let Some(d) = self.deadline_us {
                        self.fan.arm(ctx, id, d, FanTimer::Deadline);
                    }
                    self.made += 1;
                    ctx.set_timer(GAP, FanTimer::Next);
                }
                FanTimer::Try(id) => self.done.extend(self.fan.timeout(id, ctx)),
                FanTimer::Deadline(id) => self.done.extend(self.fan.deadline(id, ctx)),
                FanTimer::Hedge(call) => panic!("nothing is hedged, yet {call} was"),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "gatherer")
        }
    }

    fn gatherer(dead: Option<u8>, deadline_ms: Option<u64>) -> Gatherer {
        let (fan, deadline_us) = (Fanouts::new("try_us", TIMEOUT), deadline_ms.map(|d| d * MICROS_PER_MS));
        Gatherer { fan, dead, deadline_us, made: 0, done: Vec::new() }
    }

    #[test]
    fn a_fanout_waits_for_its_slowest_part() {
        // Three exponential parts (mean 10 ms): the request takes their maximum, whose mean is
        // 10 × (1 + 1/2 + 1/3) = 18.33 ms (s.d. 11.7 ms; 5,000 requests: s.e. 0.17 ms, ±0.6 ms
        // is 3.5 of them), against 10 ms for one part.
        let g = run_alone(gatherer(None, None), 9, Time::from_ms(5_000));
        assert!(g.done.len() > 4_900 && g.done.iter().all(|d| d.got == 3 && d.of == 3 && d.missing.is_empty()));
        assert!(g.done.iter().all(|d| d.stop.is_empty() && d.last.is_some()));
        let mean = g.done.iter().map(|d| d.latency_us as f64).sum::<f64>() / g.done.len() as f64 / 1000.0;
        assert!((mean - 18.33).abs() < 0.6, "mean {mean:.2} ms");
        let max_of_3 = quantile(slowest_of(|t: f64| 1.0 - libm::exp(-t / 10.0), 3), 0.5, 1e3);
        let mut lat: Vec<_> = g.done.iter().map(|d| d.latency_us).collect();
        lat.sort_unstable();
        let median = lat[lat.len() / 2] as f64 / 1000.0;
        assert!((median - max_of_3).abs() < 1.0, "median {median:.2} ms, theory {max_of_3:.2}");
    }

    #[test]
    fn a_deadline_answers_with_the_parts_in_and_stops_the_rest() {
        // Part 2 never answers: with a 30 ms deadline every request is answered at 30 ms with
        // parts 0 and 1 (unless one of them is slower than 30 ms: e^(−3) = 5% each), part 2
        // missing and its try to be stopped. Without the deadline, it fails at the 1 s timeout.
        let g = run_alone(gatherer(Some(2), Some(30)), 4, Time::from_ms(3_000));
        assert!(g.done.len() > 2_900);
        for d in &g.done {
            assert_eq!(d.latency_us, 30 * MICROS_PER_MS);
            assert!(d.missing.contains(&2) && d.got as usize + d.missing.len() == 3 && d.stop.len() == d.missing.len());
        }
        let whole = g.done.iter().filter(|d| d.got == 2).count() as f64 / g.done.len() as f64;
        assert!((whole - libm::pow(1.0 - libm::exp(-3.0), 2.0)).abs() < 0.03, "{whole}");
        let g = run_alone(gatherer(Some(2), None), 4, Time::from_ms(3_000));
        assert!(g.done.iter().all(|d| d.latency_us == TIMEOUT && d.missing == [2] && d.stop.is_empty()));
        assert_eq!(g.done.len(), 2_000, "requests from 1 ms to 2 s, each failing 1 s later");
        assert_eq!(g.fan.len(), g.made as usize - 2_000);
    }
}
