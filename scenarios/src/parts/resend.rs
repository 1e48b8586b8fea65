//! At-least-once sending: each item kept as a pending call until the receiver acknowledges it, sent again (a fresh call) when its timeout runs out, each timeout twice the last up to a cap (TCP's retransmission backoff, RFC 6298 §5.5).
//!
//! How a scenario uses it: `let id = r.send(ctx, item, Timer::AckTimeout)`, then send the item
//! with `id`; the receiver answers with `id`; on the answer `r.acked(id, ctx)` — `Some(item)`
//! the first time; on `Timer::AckTimeout(id)`, `r.timed_out(id, ctx, Timer::AckTimeout)` —
//! `Some((new_id, item))`: send it again with the new id. Nothing is ever given up, so the
//! receiver sees every item at least once and must drop the copies itself (by an id or a
//! sequence number): a lost ack makes a duplicate. After a crash, [`Resend::crash`] hands
//! back the items in flight, for the sender to send again from its durable state. The
//! receiver of a numbered stream puts it back in order and drops the copies with [`InOrder`].

use crate::parts::calls::{CallId, Calls};
use crate::parts::resequencer::{Release, Resequencer};
use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, Time};
use std::collections::{BTreeMap, VecDeque};

/// The items sent and not yet acknowledged, each with its tries so far.
#[derive(Clone, Debug)]
pub struct Resend<T> {
    calls: Calls<(T, u32)>,
    resent: u64,
}

impl<T: Clone> Resend<T> {
    /// A sender whose acknowledgement latencies go to the histogram `latency`.
    pub fn new(latency: &'static str) -> Resend<T> {
        Resend { calls: Calls::new(latency), resent: 0 }
    }

    /// Sends `item` for the first time: its call id (send the item with it). The first try
    /// waits `timeout_us` for its ack.
    pub fn send<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        item: T,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        self.calls.start(ctx, (item, 1), timeout_us, timer)
    }

    /// The ack of call `id`: the item, the first time; `None` for a late or repeated ack.
    pub fn acked<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> Option<T> {
        self.calls.reply(id, ctx).map(|(item, _)| item)
    }

    /// Call `id` timed out: the item again under a new call, whose timeout is `timeout_us`
    /// doubled for each try made (capped at `cap_us`). `None` if it was acked meanwhile.
    pub fn timed_out<N: Node>(
        &mut self,
        id: CallId,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        cap_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(CallId, T)> {
        let (item, tries) = self.calls.timeout(id)?;
        let wait = RetryPolicy::new(u32::MAX, timeout_us, cap_us.max(timeout_us), Jitter::None).backoff_us(tries + 1);
        self.resent += 1;
        Some((self.calls.start(ctx, (item.clone(), tries + 1), wait, timer), item))
    }

    /// A crash: the items in flight, oldest call first (their acks will come back as late).
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<T> {
        self.calls.clear(ctx).into_iter().map(|(item, _)| item).collect()
    }

    /// The items in flight.
    pub fn pending(&self) -> impl Iterator<Item = &T> {
        self.calls.iter().map(|(_, (item, _))| item)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Items sent again so far.
    pub fn resent(&self) -> u64 {
        self.resent
    }
}

/// Many keys' items sent at least once, each key's numbered 1, 2, … and — unless sent
/// `eager` — one in flight per key, the next waiting for its ack (a person waits for
/// "received" before the next; SQS FIFO's message groups). So a lost item cannot be
/// overtaken by its key's next. What is in flight is durable: after a crash, `restart`
/// sends it again.
#[derive(Clone, Debug)]
pub struct PerKey<T> {
    numbers: KeyTable<u64>,
    sent: Resend<(u64, T)>,
    /// Each key's items waiting for its one in flight, oldest first (a map of queues: one
    /// busy key may have a million waiting, and taking its oldest must not move the rest).
    waiting: BTreeMap<u64, VecDeque<T>>,
    unsent: Vec<(u64, T)>,
}

impl<T: Clone> PerKey<T> {
    /// Nothing sent yet; ack latencies go to the histogram `latency`.
    pub fn new(latency: &'static str) -> PerKey<T> {
        PerKey { numbers: KeyTable::default(), sent: Resend::new(latency), waiting: BTreeMap::new(), unsent: vec![] }
    }

    /// The next number of `key`'s items (1 for its first).
    pub fn number(&mut self, key: u64) -> u64 {
        let n = self.numbers.get(key).copied().unwrap_or(0) + 1;
        self.numbers.insert(key, n);
        n
    }

    /// How many of `key`'s items have been numbered.
    pub fn numbered(&self, key: u64) -> u64 {
        self.numbers.get(key).copied().unwrap_or(0)
    }

    /// Sends `key`'s `item` now — its call id and the item: send it with that id — or,
    /// unless `eager`, keeps it waiting (`None`) while an item of its key is in flight.
    pub fn send<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        key: u64,
        item: T,
        eager: bool,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(CallId, T)> {
        if !eager && self.sent.pending().any(|(k, _)| *k == key) {
            self.waiting.entry(key).or_default().push_back(item);
            return None;
        }
        Some((self.sent.send(ctx, (key, item.clone()), timeout_us, timer), item))
    }

    /// The ack of call `id`: the next item of its key, if one waits, now sent (send it with
    /// the call id given).
    pub fn acked<N: Node>(
        &mut self,
        id: CallId,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(CallId, T)> {
        let (key, _) = self.sent.acked(id, ctx)?;
        let queue = self.waiting.get_mut(&key)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&key);
        }
        Some((self.sent.send(ctx, (key, item.clone()), timeout_us, timer), item))
    }

    /// Call `id` went unacknowledged: [`Resend::timed_out`].
    pub fn timed_out<N: Node>(
        &mut self,
        id: CallId,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        cap_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(CallId, T)> {
        self.sent.timed_out(id, ctx, timeout_us, cap_us, timer).map(|(id, (_, item))| (id, item))
    }

    /// A crash: the items in flight are kept for `restart` (the waiting ones are kept too).
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        let lost = self.sent.crash(ctx);
        self.unsent.extend(lost);
    }

    /// A (re)start: the items in flight at the crash, sent again, oldest first (send each
    /// with its call id).
    pub fn restart<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        timer: impl Fn(CallId) -> N::Timer,
    ) -> Vec<(CallId, T)> {
        let unsent = std::mem::take(&mut self.unsent);
        unsent.into_iter().map(|(k, item)| (self.sent.send(ctx, (k, item.clone()), timeout_us, &timer), item)).collect()
    }
}

/// The receiving side of one at-least-once stream numbered 0, 1, 2… by its sender (a
/// partition's offsets): items let through in their numbers' order, each once — a copy of
/// one let through or held is dropped, a later one held until the gap is filled (TCP's
/// receive buffer over a connection that retransmits).
#[derive(Clone, Debug)]
pub struct InOrder<T> {
    next: u64,
    held: Resequencer<T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder { next: 0, held: Resequencer::default() }
    }
}

impl<T> InOrder<T> {
    /// Item `n` arrives: what it lets through now, in order (nothing for a copy or past a gap).
    pub fn receive(&mut self, n: u64, item: T) -> Vec<T> {
        self.held.offer(n + 1, self.next + 1, Time::ZERO, item);
        let out: Vec<T> =
            self.held.drain(Release::Sequence { next: self.next + 1 }).into_iter().map(|(_, t)| t).collect();
        self.next += out.len() as u64;
        out
    }

    /// Items held behind a gap.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{run_alone, NoMsg};
    use faultline_core::{Label, NodeId, NodeView};

    /// Keys 1 and 2 send one after the other, key 3 eagerly; the receiver acks every try
    /// after 10 ms but key 2's; a crash (and at once a restart) at 30 ms. What was sent, when.
    #[derive(Clone, Debug)]
    struct Sender {
        s: PerKey<char>,
        sent: Vec<(u64, u64, char)>,
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Unacked(CallId),
        Ack(CallId),
        Crash,
    }

    impl Sender {
        fn sent(&mut self, ctx: &mut Ctx<Self>, sends: impl IntoIterator<Item = (CallId, char)>) {
            for (id, c) in sends {
                let key = if c == 'x' { 2 } else { 1 + 2 * (c > 'o') as u64 };
                self.sent.push((ctx.now().micros() / 1_000, key, c));
                if key != 2 {
                    ctx.set_timer(10_000, Timer::Ack(id));
                }
            }
        }
    }

    impl Node for Sender {
        type Msg = NoMsg;
        type Timer = Timer;

        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (key, c) in [(1, 'a'), (1, 'b'), (2, 'x'), (3, 'p'), (3, 'q')] {
                assert_eq!(self.s.number(key), 1 + (c == 'b' || c == 'q') as u64);
                let send = self.s.send(ctx, key, c, key == 3, 50_000, Timer::Unacked);
                self.sent(ctx, send);
            }
            ctx.set_timer(30_000, Timer::Crash);
        }

        fn on_message(&mut self, _: NodeId, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }

        fn on_timer(&mut self, t: Timer, ctx: &mut Ctx<Self>) {
            let sends = match t {
                Timer::Ack(id) => self.s.acked(id, ctx, 50_000, Timer::Unacked).into_iter().collect(),
                Timer::Unacked(id) => self.s.timed_out(id, ctx, 50_000, 200_000, Timer::Unacked).into_iter().collect(),
                Timer::Crash => {
                    self.s.crash(ctx);
                    self.s.restart(ctx, 50_000, Timer::Unacked)
                }
            };
            self.sent(ctx, sends);
        }

        fn view(&self) -> NodeView {
            unreachable!()
        }
    }

    #[test]
    fn per_key_one_in_flight_the_next_on_its_ack_and_what_was_in_flight_sent_again_after_a_crash() {
        let h = run_alone(Sender { s: PerKey::new("ack_us"), sent: vec![] }, 1, Time::from_ms(100));
        // `b` waits for `a`'s ack (10 ms); key 3's go at once. Key 2's `x` is never acked: in
        // flight at the crash, sent again at the restart (30 ms), then after its timeout
        // (50 ms); its first call's timeout, forgotten in the crash, sends nothing.
        let (a, b, x, p, q) = ((0, 1, 'a'), (10, 1, 'b'), (0, 2, 'x'), (0, 3, 'p'), (0, 3, 'q'));
        assert_eq!(h.sent, [a, x, p, q, b, (30, 2, 'x'), (80, 2, 'x')]);
        assert_eq!((h.s.numbered(1), h.s.numbered(2), h.s.numbered(3), h.s.numbered(4)), (2, 1, 2, 0));
    }

    #[test]
    fn a_stream_goes_through_in_order_once_whatever_is_lost_or_resent() {
        let mut r = InOrder::default();
        assert_eq!(r.receive(0, 'a'), ['a']);
        assert!(r.receive(2, 'c').is_empty(), "1 is missing");
        assert!(r.receive(0, 'A').is_empty() && r.receive(2, 'C').is_empty(), "copies");
        assert_eq!(r.held(), 1);
        assert_eq!(r.receive(1, 'b'), ['b', 'c']);
        assert!(r.receive(1, 'B').is_empty());
        assert_eq!((r.receive(3, 'd'), r.held()), (vec!['d'], 0));
    }
}
