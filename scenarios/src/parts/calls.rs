//! Outgoing calls with timeouts: request ids, a pending table, timers cancelled on reply, latency observed once.
//!
//! How a scenario uses it, inside its own `Node` impl (`Timer::CallTimeout(CallId)` is the
//! scenario's; the payload `T` is whatever the caller needs back — who to answer, a key):
//! - `let id = calls.start(ctx, payload, timeout_us, Timer::CallTimeout)`, then send a message
//!   carrying `id`; the callee echoes it in its answer.
//! - on the answer: `calls.reply(id, ctx)` — `Some(payload)` the first time (the timer is
//!   cancelled and the latency observed); `None` when the call already timed out, was
//!   answered before (a duplicate) or was never made here: ignore it.
//! - on `Timer::CallTimeout(id)`: `calls.timeout(id)` — `Some(payload)`: the call failed.
//! - in `on_crash`: `calls.clear(ctx)` — the calls in flight are forgotten (their answers
//!   will come back as late), and the id counter is kept so no id is ever reused.

use faultline_core::{Ctx, Micros, Node, NodeId, Time, TimerId};
use std::collections::BTreeMap;
use std::fmt;

/// A request id, unique in the run: the caller's node id in the top 24 bits and the caller's
/// own call counter in the low 40 (10¹² calls a node). With the node folded in, a callee
/// can key its own state (a dedup table, a log line) by the id alone, and two callers'
/// ids never collide. Shown as `n3#17`: node 3's 17th call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl CallId {
    /// Bits of the per-node counter.
    pub const SEQ_BITS: u32 = 40;

    pub fn new(node: NodeId, seq: u64) -> CallId {
        debug_assert!(node < 1 << (64 - Self::SEQ_BITS) && seq < 1 << Self::SEQ_BITS, "call id out of range");
        CallId((node as u64) << Self::SEQ_BITS | seq)
    }
    /// The node that made the call.
    pub fn node(self) -> NodeId {
        (self.0 >> Self::SEQ_BITS) as NodeId
    }
    /// Its number among that node's calls, from 0.
    pub fn seq(self) -> u64 {
        self.0 & ((1 << Self::SEQ_BITS) - 1)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}#{}", self.node(), self.seq())
    }
}

#[derive(Clone, Debug)]
struct Pending<T> {
    payload: T,
    /// On this node's clock.
    sent: Time,
    timer: TimerId,
}

/// The calls a node has made and not yet seen answered or timed out.
#[derive(Clone, Debug)]
pub struct Calls<T> {
    /// Histogram that gets each answered call's latency, once.
    latency: &'static str,
    /// Counter of answers that matched no pending call (late, duplicate or unknown).
    late: Option<&'static str>,
    next_seq: u64,
    pending: BTreeMap<CallId, Pending<T>>,
}

impl<T> Calls<T> {
    /// Calls whose latencies (µs, from start to answer) go to the histogram `latency`.
    pub fn new(latency: &'static str) -> Calls<T> {
        Calls { latency, late: None, next_seq: 0, pending: BTreeMap::new() }
    }

    /// Also counts, under `counter`, every answer that matched no pending call.
    pub fn counting_late(mut self, counter: &'static str) -> Calls<T> {
        self.late = Some(counter);
        self
    }

    /// Starts a call: a fresh id, the payload kept until the call ends, and a timeout timer
    /// (made by `timer` from the id: `Timer::CallTimeout`) `timeout_us` from now. Send the
    /// request yourself, with the id in it.
    pub fn start<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        payload: T,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        let id = CallId::new(ctx.me(), self.next_seq);
        self.next_seq += 1;
        let t = ctx.set_timer(timeout_us, timer(id));
        self.pending.insert(id, Pending { payload, sent: ctx.now(), timer: t });
        id
    }

    /// An answer arrived (success or error alike): ends the call, cancels its timer, observes
    /// its latency and returns the payload. `None` — nothing observed, the late counter
    /// bumped — if the call is not pending: it timed out, was answered already (a
    /// duplicate), was cleared by a crash, or is not this node's.
    pub fn reply<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<T> {
        self.reply_timed(id, ctx).map(|(payload, _)| payload)
    }

    /// Like `reply`, and also returns the latency it observed (for adaptive limits, hedging).
    pub fn reply_timed<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<(T, Micros)> {
        let Some(p) = self.pending.remove(&id) else {
            if let Some(counter) = self.late {
                ctx.count(counter, 1);
            }
            return None;
        };
        ctx.cancel_timer(p.timer);
        // The node's own clock: a node measures with what it has, as a real client's latency
        // histogram does — clock faults included (a clock set back reads as 0, never as a
        // wrap). True time (`ctx.truth()`) is for checks, not for what a node records.
        let latency_us = ctx.now().since(p.sent);
        ctx.observe(self.latency, latency_us);
        Some((p.payload, latency_us))
    }

    /// The call's timeout timer fired: the call fails and its payload comes back. `None` if
    /// the call had already ended (the answer won the race at the same instant).
    pub fn timeout(&mut self, id: CallId) -> Option<T> {
        self.pending.remove(&id).map(|p| p.payload)
    }

    /// Gives up on a call without an answer (a hedged call whose twin answered, a caller that
    /// went away): cancels its timer, observes nothing. A later answer counts as late.
    pub fn cancel<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<T> {
        let p = self.pending.remove(&id)?;
        ctx.cancel_timer(p.timer);
        Some(p.payload)
    }

    /// Forgets every pending call (a crash: in `on_crash`) and returns their payloads, oldest
    /// first; cancels their timers (in `on_crash` the kernel drops them anyway). The id
    /// counter is kept, so answers to these calls never match a call made after the restart:
    /// clear the table, never rebuild it.
    pub fn clear<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<T> {
        std::mem::take(&mut self.pending)
            .into_values()
            .map(|p| {
                ctx.cancel_timer(p.timer);
                p.payload
            })
            .collect()
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
    pub fn get(&self, id: CallId) -> Option<&T> {
        self.pending.get(&id).map(|p| &p.payload)
    }
    pub fn get_mut(&mut self, id: CallId) -> Option<&mut T> {
        self.pending.get_mut(&id).map(|p| &mut p.payload)
    }
    /// When the call started, on this node's clock.
    pub fn sent_at(&self, id: CallId) -> Option<Time> {
        self.pending.get(&id).map(|p| p.sent)
    }
    /// The pending calls, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (CallId, &T)> {
        self.pending.iter().map(|(id, p)| (*id, &p.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{
        Label, Latency, Link, Metrics, NodeKind, NodeView, Recipe, Run, ScenarioSpec, Setup, Sim, MICROS_PER_MS,
    };

    /// Just enough of a scenario for the kernel to run a caller and a callee.
    static SPEC: ScenarioSpec = ScenarioSpec::bare("calls-test", build);

    fn build(_: &Setup) -> Box<dyn Run> {
        panic!("the tests build their runs themselves")
    }

    const SERVER: NodeId = 0;
    /// One way, every message: a call answered after `delay` takes `2·NET + delay`.
    const NET: Micros = MICROS_PER_MS;

    #[derive(Clone, Debug)]
    enum Msg {
        /// Answer after `delay_us`, `copies` times (2: a duplicated answer).
        Call {
            id: CallId,
            delay_us: Micros,
            copies: u32,
        },
        Answer {
            id: CallId,
        },
    }

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match self {
                Msg::Call { .. } => "call",
                Msg::Answer { .. } => "answer",
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Timer {
        Step(usize),
        CallTimeout(CallId),
    }

    impl Label for Timer {
        fn label(&self) -> &'static str {
            match self {
                Timer::Step(_) => "step",
                Timer::CallTimeout(_) => "call-timeout",
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Call with payload `n`: answered after `delay_ms`, `copies` times; timeout `timeout_ms`.
        Call {
            n: u32,
            delay_ms: u64,
            copies: u32,
            timeout_ms: u64,
        },
        Clear,
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Log {
        Answered(u32, Micros),
        Late(CallId),
        /// Every firing of a timeout timer, and what `timeout` returned.
        TimedOut(Option<u32>),
        Cleared(Vec<u32>),
    }

    #[derive(Clone, Debug)]
    enum Node2 {
        Server,
        Client { calls: Calls<u32>, script: Vec<(u64, Step)>, ids: Vec<CallId>, log: Vec<(u64, Log)> },
    }

    impl Node for Node2 {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            if let Node2::Client { script, .. } = self {
                for (i, (at_ms, _)) in script.iter().enumerate() {
                    ctx.set_timer(at_ms * MICROS_PER_MS, Timer::Step(i));
                }
            }
        }
        fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
            let now_us = ctx.now().micros();
            match (self, msg) {
                (Node2::Server, Msg::Call { id, delay_us, copies }) => {
                    for _ in 0..copies {
                        ctx.send_after(delay_us, from, Msg::Answer { id });
                    }
                }
                (Node2::Client { calls, log, .. }, Msg::Answer { id }) => match calls.reply_timed(id, ctx) {
                    Some((n, latency)) => log.push((now_us, Log::Answered(n, latency))),
                    None => log.push((now_us, Log::Late(id))),
                },
                (_, msg) => panic!("unexpected {msg:?}"),
            }
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            let now_us = ctx.now().micros();
            let Node2::Client { calls, script, ids, log } = self else { panic!("the server sets no timers") };
            match timer {
                Timer::Step(i) => match script[i].1 {
                    Step::Call { n, delay_ms, copies, timeout_ms } => {
                        let id = calls.start(ctx, n, timeout_ms * MICROS_PER_MS, Timer::CallTimeout);
                        ids.push(id);
                        ctx.send(SERVER, Msg::Call { id, delay_us: delay_ms * MICROS_PER_MS, copies });
                    }
                    Step::Clear => log.push((now_us, Log::Cleared(calls.clear(ctx)))),
                },
                Timer::CallTimeout(id) => log.push((now_us, Log::TimedOut(calls.timeout(id)))),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "node")
        }
    }

    /// Runs one server (node 0) and a client per script for a second; returns the clients and
    /// the run's metrics.
    fn run(scripts: Vec<Vec<(u64, Step)>>) -> (Vec<Node2>, Metrics) {
        let setup = Setup { spec: &SPEC, recipe: Recipe::new("calls-test", "only", 1) };
        let mut sim: Sim<Node2> = Sim::new(&setup, Link::with_latency(Latency::Constant(NET)));
        sim.keep_trace(false);
        assert_eq!(sim.add_node(Node2::Server), SERVER);
        for script in scripts {
            let calls = Calls::new("latency_us").counting_late("late_answers");
            sim.add_node(Node2::Client { calls, script, ids: Vec::new(), log: Vec::new() });
        }
        sim.run_until(Time::from_secs(1), u64::MAX);
        (sim.nodes()[1..].to_vec(), sim.metrics().clone())
    }

    fn log(node: &Node2) -> &[(u64, Log)] {
        match node {
            Node2::Client { log, .. } => log,
            Node2::Server => unreachable!(),
        }
    }

    fn call(n: u32, delay_ms: u64, copies: u32, timeout_ms: u64) -> Step {
        Step::Call { n, delay_ms, copies, timeout_ms }
    }

    #[test]
    fn an_answer_in_time_cancels_the_timeout() {
        // Sent at 0, answered after 3 ms of work and 1 ms each way: 5 ms, well inside 100 ms.
        // The timeout timer never fires (the log records every firing), even a second later.
        let (clients, m) = run(vec![vec![(0, call(7, 3, 1, 100))]]);
        assert_eq!(log(&clients[0]), [(5_000, Log::Answered(7, 5_000))]);
        let h = m.histogram("latency_us").expect("observed");
        assert_eq!((h.count(), h.min(), h.max()), (1, 5_000, 5_000));
        assert_eq!(m.counter("late_answers"), 0);
        let Node2::Client { calls, .. } = &clients[0] else { unreachable!() };
        assert!(calls.is_empty());
    }

    #[test]
    fn a_late_answer_is_refused_and_not_observed() {
        // The answer takes 52 ms; the call times out at 20 ms. The answer is then late: `None`,
        // counted once, and the latency histogram never sees it.
        let (clients, m) = run(vec![vec![(0, call(1, 50, 1, 20))]]);
        let Node2::Client { ids, .. } = &clients[0] else { unreachable!() };
        assert_eq!(log(&clients[0]), [(20_000, Log::TimedOut(Some(1))), (52_000, Log::Late(ids[0]))]);
        assert!(m.histogram("latency_us").is_none_or(|h| h.count() == 0));
        assert_eq!(m.counter("late_answers"), 1);
    }

    #[test]
    fn latency_is_observed_once_per_completed_call() {
        // Five calls (delays 0–40 ms, 1 ms each way), two of them answered twice (a duplicate
        // is late, not a second observation), one timing out at 15 ms before its 32 ms answer.
        let script = vec![
            (0, call(0, 0, 1, 100)),
            (0, call(1, 10, 2, 100)),
            (3, call(2, 30, 1, 15)),
            (10, call(3, 20, 2, 100)),
            (10, call(4, 40, 1, 100)),
        ];
        let (clients, m) = run(vec![script]);
        let l = log(&clients[0]);
        let Node2::Client { ids, .. } = &clients[0] else { unreachable!() };
        #[rustfmt::skip]
        let want = [
            (2_000, Log::Answered(0, 2_000)),
            (12_000, Log::Answered(1, 12_000)), (12_000, Log::Late(ids[1])),
            (18_000, Log::TimedOut(Some(2))),
            (32_000, Log::Answered(3, 22_000)), (32_000, Log::Late(ids[3])),
            (35_000, Log::Late(ids[2])),
            (52_000, Log::Answered(4, 42_000)),
        ];
        assert_eq!(l, want);
        let h = m.histogram("latency_us").unwrap();
        assert_eq!((h.count(), h.min(), h.max()), (4, 2_000, 42_000));
        assert_eq!(h.mean(), (2_000 + 12_000 + 22_000 + 42_000) as f64 / 4.0, "the sum is exact");
        assert_eq!(m.counter("late_answers"), 3);
    }

    #[test]
    fn clearing_forgets_calls_and_their_timers() {
        // Two calls in flight at 5 ms are cleared (a crash): their timers (due at 30 ms) never
        // fire and their answers (at 12 and 22 ms) are late. A call made after the clear gets
        // a new id and completes normally.
        let script = vec![(0, call(0, 10, 1, 30)), (0, call(1, 20, 1, 30)), (5, Step::Clear), (6, call(2, 0, 1, 30))];
        let (clients, m) = run(vec![script]);
        let Node2::Client { ids, .. } = &clients[0] else { unreachable!() };
        #[rustfmt::skip]
        let want = [
            (5_000, Log::Cleared(vec![0, 1])), (8_000, Log::Answered(2, 2_000)),
            (12_000, Log::Late(ids[0])), (22_000, Log::Late(ids[1])),
        ];
        assert_eq!(log(&clients[0]), want);
        assert_eq!(ids.iter().map(|id| id.seq()).collect::<Vec<_>>(), [0, 1, 2], "the counter survives a clear");
        assert_eq!(m.counter("late_answers"), 2);
    }

    #[test]
    fn ids_are_unique_across_nodes_and_say_whose_they_are() {
        let script = |k: u32| (0..50).map(|i| (i as u64 % 7, call(k * 100 + i, 1, 1, 100))).collect::<Vec<_>>();
        let (clients, _) = run(vec![script(1), script(2), script(3)]);
        let mut all = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let Node2::Client { ids, .. } = c else { unreachable!() };
            let node = i as NodeId + 1;
            assert!(ids.iter().all(|id| id.node() == node), "node {node}: {ids:?}");
            let mut seqs: Vec<u64> = ids.iter().map(|id| id.seq()).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (0..50).collect::<Vec<_>>());
            all.extend(ids.iter().copied());
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 150);
        let id = CallId::new(3, 17);
        assert_eq!((id.node(), id.seq(), id.to_string()), (3, 17, "n3#17".to_string()));
        let big = CallId::new((1 << 24) - 1, (1 << 40) - 1);
        assert_eq!((big.node(), big.seq(), big.0), ((1 << 24) - 1, (1 << 40) - 1, u64::MAX));
    }
}
