//! A message broker's queue: FIFO delivery with a visibility timeout (at-least-once redelivery), delayed messages, acknowledgement by receipt, receive counts and a dead-letter queue.
//!
//! The model is Amazon SQS's (and, with other names, Sidekiq's, RabbitMQ's quorum queues',
//! Celery's with `acks_late`): a receive hides the message for the visibility timeout and
//! hands out a *receipt*; the consumer deletes it with that receipt when done (`ack`). If the
//! consumer crashes, stalls or is slower than the timeout, the message becomes visible again
//! and goes to the back of the queue: it is delivered again, with a new receipt, and the old
//! receipt no longer deletes it. So delivery is at least once — a slow consumer and its
//! successor may both finish the same job, which `ack` reports as a duplicate.
//!
//! A message sent with a delay (or put back by `retry` with a backoff) is invisible until it
//! is due. Each receive counts; with `max_receives` set (SQS's redrive policy), a message
//! about to be received once more than that goes to the dead-letter queue instead, so a job
//! that kills every consumer cannot cycle forever. A consumer may also `dead_letter` a job it
//! gave up on, or `delete` it without finishing (the job is then gone: lost, if unintended).
//!
//! The broker is a data structure, not a node: the scenario's broker node calls it with its
//! clock's `now`, and [`Consumers`] does a broker node's long polling — the consumers waiting
//! for a message, served in turn, and one timer kept at `next_wake()`, when a delayed message
//! falls due or a visibility timeout runs out. Every message stays in the table with its final
//! state, so checks can account for all.

use crate::parts::retry::RetryPolicy;
use crate::parts::table::{KeyTable, Log};
use faultline_core::{Ctx, Micros, Node, NodeId, NodeView, Rng, Time, TimerId};
use std::collections::{BTreeSet, VecDeque};

/// A message's id: the broker numbers them 0, 1, 2… in the order they are sent.
pub type MsgId = u64;

/// Where a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// In the queue, visible: the next receives will find it in FIFO order.
    Ready,
    /// Invisible until the given time (a delayed message, or a retry's backoff).
    Delayed(Time),
    /// Received, invisible until `until`; only `receipt` may ack, retry or dead-letter it.
    InFlight { until: Time, receipt: u64 },
    /// Acknowledged: finished.
    Done,
    /// In the dead-letter queue.
    Dead,
    /// Deleted by a consumer without being finished.
    Deleted,
}

/// One message and its history.
#[derive(Clone, Debug)]
pub struct Message<J> {
    pub job: J,
    pub sent: Time,
    /// When it was (or will be) first visible: `sent` plus its delay.
    pub due: Time,
    /// How many times it has been received.
    pub receives: u32,
    /// How many times a consumer reported it finished (`ack`, current receipt or not).
    pub completions: u32,
    pub state: State,
}

/// What a receive hands a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<J> {
    pub id: MsgId,
    pub receipt: u64,
    pub job: J,
    /// This receive included (1 the first time).
    pub receives: u32,
    pub due: Time,
    /// When the message becomes visible again unless acknowledged first.
    pub visible_again: Time,
}

/// What an acknowledgement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The receipt was current and the message is now done; `false`: a stale receipt (it was
    /// redelivered since), and the newer delivery still holds the message.
    pub deleted: bool,
    /// The job had been reported finished before: it ran (at least) twice.
    pub duplicate: bool,
}

#[derive(Clone, Debug)]
pub struct Broker<J> {
    msgs: KeyTable<Message<J>>,
    ready: VecDeque<MsgId>,
    delayed: BTreeSet<(Time, MsgId)>,
    in_flight: BTreeSet<(Time, MsgId)>,
    dlq: Log<MsgId>,
    next_id: MsgId,
    next_receipt: u64,
    visibility_us: Micros,
    max_receives: Option<u32>,
    redelivered: u64,
}

impl<J: Clone> Broker<J> {
    /// A queue whose receives hide a message for `visibility_us`, with no dead-letter limit.
    pub fn new(visibility_us: Micros) -> Broker<J> {
        Broker {
            msgs: KeyTable::default(),
            ready: VecDeque::new(),
            delayed: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            dlq: Log::default(),
            next_id: 0,
            next_receipt: 0,
            visibility_us,
            max_receives: None,
            redelivered: 0,
        }
    }

    /// From now on, receives hide a message this long (deliveries already made keep theirs).
    pub fn set_visibility_us(&mut self, visibility_us: Micros) {
        self.visibility_us = visibility_us;
    }

    /// A message received this many times goes to the dead-letter queue instead of being
    /// received again (`None`: never).
    pub fn set_max_receives(&mut self, max: Option<u32>) {
        self.max_receives = max;
    }

    /// Enqueues `job`, visible after `delay_us` (0: at once); returns its id and when it is due.
    pub fn send(&mut self, job: J, now: Time, delay_us: Micros) -> (MsgId, Time) {
        let (id, due) = (self.next_id, now.plus(delay_us));
        self.next_id += 1;
        let state = if delay_us == 0 { State::Ready } else { State::Delayed(due) };
        self.msgs.insert(id, Message { job, sent: now, due, receives: 0, completions: 0, state });
        self.park(id, state);
        (id, due)
    }

    /// Puts `id` in the queue or set its state says.
    fn park(&mut self, id: MsgId, state: State) {
        match state {
            State::Ready => self.ready.push_back(id),
            State::Delayed(at) => drop(self.delayed.insert((at, id))),
            State::InFlight { until, .. } => drop(self.in_flight.insert((until, id))),
            State::Done | State::Dead | State::Deleted => {}
        }
    }

    /// Moves `id` to `state`, out of the set it was in.
    fn set_state(&mut self, id: MsgId, state: State) {
        let m = self.msgs.get_mut(id).expect("a message sent here");
        let old = std::mem::replace(&mut m.state, state);
        match old {
            State::Delayed(at) => drop(self.delayed.remove(&(at, id))),
            State::InFlight { until, .. } => drop(self.in_flight.remove(&(until, id))),
            // A ready message leaves the queue only from its front, in `receive`.
            State::Ready | State::Done | State::Dead | State::Deleted => {}
        }
        if state == State::Dead {
            self.dlq.push(id);
        }
        self.park(id, state);
    }

    /// Makes visible what is due by `now`, in the order it fell due: delayed messages, and
    /// received ones whose visibility ran out (redelivered: they go to the back of the queue).
    /// Returns how many were redelivered.
    pub fn wake(&mut self, now: Time) -> u64 {
        let before = self.redelivered;
        loop {
            let d = self.delayed.first().copied().filter(|&(at, _)| at <= now);
            let f = self.in_flight.first().copied().filter(|&(at, _)| at <= now);
            let (id, redelivery) = match (d, f) {
                (Some(d), Some(f)) if f < d => (f.1, true),
                (Some(d), _) => (d.1, false),
                (None, Some(f)) => (f.1, true),
                (None, None) => break,
            };
            self.redelivered += redelivery as u64;
            self.set_state(id, State::Ready);
        }
        self.redelivered - before
    }

    /// When `wake` next has something to do, if ever.
    pub fn next_wake(&self) -> Option<Time> {
        let (d, f) = (self.delayed.first().map(|e| e.0), self.in_flight.first().map(|e| e.0));
        d.into_iter().chain(f).min()
    }

    /// The next visible message, hidden for the visibility timeout from `now`; a message
    /// already received `max_receives` times goes to the dead-letter queue instead.
    pub fn receive(&mut self, now: Time) -> Option<Delivery<J>> {
        self.wake(now);
        while let Some(id) = self.ready.pop_front() {
            let m = self.msgs.get(id).expect("a message sent here");
            debug_assert_eq!(m.state, State::Ready);
            if self.max_receives.is_some_and(|max| m.receives >= max) {
                self.set_state(id, State::Dead);
                continue;
            }
            let (receipt, until) = (self.next_receipt, now.plus(self.visibility_us));
            self.next_receipt += 1;
            self.set_state(id, State::InFlight { until, receipt });
            let m = self.msgs.get_mut(id).expect("a message sent here");
            m.receives += 1;
            let (job, receives, due) = (m.job.clone(), m.receives, m.due);
            return Some(Delivery { id, receipt, job, receives, due, visible_again: until });
        }
        None
    }

    /// Whether `receipt` is the one that holds `id` now.
    fn holds(&self, id: MsgId, receipt: u64) -> bool {
        matches!(self.msgs.get(id).map(|m| m.state), Some(State::InFlight { receipt: r, .. }) if r == receipt)
    }

    /// The consumer finished `id`: deleted if `receipt` is current; either way the
    /// completion is counted, and a second one reported as a duplicate.
    pub fn ack(&mut self, id: MsgId, receipt: u64) -> Ack {
        let deleted = self.holds(id, receipt);
        if deleted {
            self.set_state(id, State::Done);
        }
        let Some(m) = self.msgs.get_mut(id) else { return Ack { deleted, duplicate: false } };
        m.completions += 1;
        Ack { deleted, duplicate: m.completions > 1 }
    }

    /// The consumer failed `id` and wants it again after `delay_us` (0: to the back of the
    /// queue now). Returns when it is due, or `None` for a stale receipt (nothing changes).
    pub fn retry(&mut self, id: MsgId, receipt: u64, now: Time, delay_us: Micros) -> Option<Time> {
        if !self.holds(id, receipt) {
            return None;
        }
        let due = now.plus(delay_us);
        self.set_state(id, if delay_us == 0 { State::Ready } else { State::Delayed(due) });
        Some(due)
    }

    /// The consumer gave up on `id`: into the dead-letter queue. `false` for a stale receipt.
    pub fn dead_letter(&mut self, id: MsgId, receipt: u64) -> bool {
        let current = self.holds(id, receipt);
        if current {
            self.set_state(id, State::Dead);
        }
        current
    }

    /// Applies a consumer's verdict on a failed try of `id`; `false` for a stale receipt.
    pub fn failed(&mut self, id: MsgId, receipt: u64, verdict: Verdict, now: Time) -> bool {
        match verdict {
            Verdict::Retry(delay_us) => self.retry(id, receipt, now, delay_us).is_some(),
            Verdict::DeadLetter => self.dead_letter(id, receipt),
            Verdict::Delete => self.delete(id, receipt),
        }
    }

    /// The consumer deletes `id` unfinished: it is gone. `false` for a stale receipt.
    pub fn delete(&mut self, id: MsgId, receipt: u64) -> bool {
        let current = self.holds(id, receipt);
        if current {
            self.set_state(id, State::Deleted);
        }
        current
    }

    pub fn get(&self, id: MsgId) -> Option<&Message<J>> {
        self.msgs.get(id)
    }

    /// Every message ever sent, by id.
    pub fn messages(&self) -> impl Iterator<Item = (MsgId, &Message<J>)> {
        self.msgs.iter()
    }

    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn delayed(&self) -> usize {
        self.delayed.len()
    }

    /// Messages in the dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = MsgId> + '_ {
        self.dlq.iter().copied()
    }

    pub fn dead(&self) -> usize {
        self.dlq.len()
    }

    pub fn sent(&self) -> u64 {
        self.next_id
    }

    /// Messages made visible again because their visibility ran out.
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }

    pub fn max_receives(&self) -> Option<u32> {
        self.max_receives
    }

    pub fn visibility_us(&self) -> Micros {
        self.visibility_us
    }

    /// `v` with the queue's gauges: messages ready, and in flight (received, not yet acked).
    pub fn gauges(&self, v: NodeView) -> NodeView {
        let (ready, flying) = (self.ready() as i64, self.in_flight() as i64);
        v.gauge("ready", ready, ready.max(100)).gauge("in flight", flying, flying.max(100))
    }
}

/// What becomes of a job whose try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Tried again after this long (0: at once, at the back of the queue).
    Retry(Micros),
    DeadLetter,
    /// Deleted unfinished: lost.
    Delete,
}

/// A consumer's rule for failed tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// No retry: the job is deleted.
    Drop,
    /// Back to the queue at once, however often it has failed.
    RetryNow,
    /// The policy's backoff before each retry; out of retries, the job is dead-lettered
    /// (`dlq`) or deleted.
    Backoff { policy: RetryPolicy, dlq: bool },
}

impl OnFailure {
    /// The verdict on a job that failed its `receives`-th try (crashes count as tries, as
    /// a broker's receive count does).
    pub fn verdict(&self, receives: u32, rng: &mut Rng) -> Verdict {
        match *self {
            OnFailure::Drop => Verdict::Delete,
            OnFailure::RetryNow => Verdict::Retry(0),
            OnFailure::Backoff { policy, dlq } => match policy.delay_us(receives, 0, rng) {
                Some(wait) => Verdict::Retry(wait),
                None if dlq => Verdict::DeadLetter,
                None => Verdict::Delete,
            },
        }
    }
}

/// A broker node's long polling: the consumers waiting for a message, in the order they asked
/// (each once, however often it asks), and the one timer kept for the queue's next wake.
#[derive(Clone, Debug, Default)]
pub struct Consumers {
    waiting: VecDeque<NodeId>,
    alarm: Option<(Time, TimerId)>,
}

impl Consumers {
    /// `who` wants a message (asking again keeps its place).
    pub fn ask(&mut self, who: NodeId) {
        if !self.waiting.contains(&who) {
            self.waiting.push_back(who);
        }
    }

    /// The alarm timer was lost with a restart (`dispatch` notices when it has rung).
    pub fn rang(&mut self) {
        self.alarm = None;
    }

    /// A broker restart: the asks and the timer were volatile (consumers ask again).
    pub fn clear(&mut self) {
        *self = Consumers::default();
    }

    /// A broker (re)start, when every consumer of `all` is taken to be asking: the alarm timer
    /// was lost with the restart (`rang`), and the asks are made afresh in `all`'s order.
    pub fn restarted(&mut self, all: impl IntoIterator<Item = NodeId>) {
        self.rang();
        all.into_iter().for_each(|who| self.ask(who));
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Hands visible messages to waiting consumers in turn (`send(ctx, consumer, delivery)`),
    /// then keeps the alarm (`timer`) at the queue's next wake, moving it earlier if need be.
    /// Call after every change to the queue and when the alarm rings.
    pub fn dispatch<J: Clone, N: Node>(
        &mut self,
        q: &mut Broker<J>,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
        mut send: impl FnMut(&mut Ctx<N>, NodeId, Delivery<J>),
    ) {
        let now = ctx.now();
        if self.alarm.is_some_and(|(at, _)| at <= now) {
            self.alarm = None;
        }
        while let Some(&who) = self.waiting.front() {
            let Some(d) = q.receive(now) else { break };
            self.waiting.pop_front();
            send(ctx, who, d);
        }
        q.wake(now);
        let Some(at) = q.next_wake() else { return };
        if self.alarm.is_none_or(|(t, _)| at < t) {
            if let Some((_, id)) = self.alarm {
                ctx.cancel_timer(id);
            }
            self.alarm = Some((at, ctx.set_timer(at.since(now), timer)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    fn t(ms: u64) -> Time {
        Time::from_ms(ms)
    }

    #[derive(Clone, Debug)]
    struct Alone {
        q: Broker<u8>,
        c: Consumers,
        got: Vec<(Time, u8)>,
    }

    #[derive(Clone, Debug, faultline_core::Label)]
    enum Msg {
        Deliver(Delivery<u8>),
    }

    #[derive(Clone, Debug, faultline_core::Label)]
    enum Timer {
        Alarm,
    }

    impl Node for Alone {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            // One message due in 100 ms, one now; the node itself is the consumer, asking twice.
            self.q.send(1, ctx.now(), 100_000);
            self.q.send(2, ctx.now(), 0);
            self.c.ask(0);
            self.c.ask(0);
            self.c.dispatch(&mut self.q, ctx, Timer::Alarm, |ctx, who, d| ctx.send(who, Msg::Deliver(d)));
        }
        fn on_message(&mut self, _: NodeId, Msg::Deliver(d): Msg, ctx: &mut Ctx<Self>) {
            self.got.push((ctx.now(), d.job));
            // Message 2 is not acknowledged the first time: it comes back after the visibility timeout (1 s).
            if d.job != 2 || d.receives > 1 {
                self.q.ack(d.id, d.receipt);
            }
            self.c.ask(0);
            self.c.dispatch(&mut self.q, ctx, Timer::Alarm, |ctx, who, d| ctx.send(who, Msg::Deliver(d)));
        }
        fn on_timer(&mut self, Timer::Alarm: Timer, ctx: &mut Ctx<Self>) {
            self.c.dispatch(&mut self.q, ctx, Timer::Alarm, |ctx, who, d| ctx.send(who, Msg::Deliver(d)));
        }
        fn view(&self) -> faultline_core::NodeView {
            faultline_core::NodeView::new(faultline_core::NodeKind::Queue, 0, "broker")
        }
    }

    #[test]
    fn waiting_consumers_get_each_message_as_it_becomes_visible() {
        // An asking consumer is served once per ask; the alarm wakes the broker exactly when
        // the delayed message falls due (100 ms) and when the unacknowledged one reappears (1 s).
        let node = Alone { q: Broker::new(1_000_000), c: Consumers::default(), got: Vec::new() };
        let done = crate::parts::testing::run_alone(node, 1, Time::from_secs(3));
        let got: Vec<(u64, u8)> = done.got.iter().map(|&(at, job)| (at.micros(), job)).collect();
        assert_eq!(got, [(0, 2), (100_000, 1), (1_000_000, 2)]);
        assert_eq!((done.q.in_flight(), done.q.redelivered(), done.c.waiting()), (0, 1, 1));
    }

    #[test]
    fn a_restarted_broker_takes_every_consumer_as_asking_once() {
        let mut c = Consumers::default();
        c.ask(3);
        c.restarted([1, 2, 3]);
        assert_eq!((c.waiting(), c.waiting.iter().copied().collect::<Vec<_>>()), (3, vec![3, 1, 2]));
    }

    #[test]
    fn a_failed_try_is_dropped_retried_or_dead_lettered_by_the_rule() {
        use crate::parts::retry::Jitter;
        let mut rng = Rng::new(1);
        let policy = RetryPolicy::new(2, 100, 10_000, Jitter::None);
        assert_eq!(OnFailure::Drop.verdict(1, &mut rng), Verdict::Delete);
        assert_eq!(OnFailure::RetryNow.verdict(1000, &mut rng), Verdict::Retry(0));
        for (dlq, last) in [(true, Verdict::DeadLetter), (false, Verdict::Delete)] {
            let rule = OnFailure::Backoff { policy, dlq };
            let got = [1, 2, 3].map(|n| rule.verdict(n, &mut rng));
            assert_eq!(got, [Verdict::Retry(100), Verdict::Retry(200), last]);
        }
        let mut b = Broker::new(1000);
        b.send((), t(0), 0);
        let d = b.receive(t(0)).unwrap();
        assert!(
            b.failed(d.id, d.receipt, Verdict::Retry(5), t(1)) && !b.failed(d.id, d.receipt, Verdict::Delete, t(1))
        );
        assert_eq!(b.get(d.id).unwrap().state, State::Delayed(Time(1005)));
    }

    #[test]
    fn messages_come_out_in_the_order_they_went_in() {
        let mut b = Broker::new(1_000_000);
        for job in 0..5 {
            b.send(job, t(job), 0);
        }
        let got: Vec<u64> = (0..5).map(|_| b.receive(t(10)).expect("one").job).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert!(b.receive(t(10)).is_none());
        assert_eq!((b.ready(), b.in_flight()), (0, 5));
    }

    #[test]
    fn an_unacknowledged_message_comes_back_after_its_visibility_timeout() {
        // At least once: a consumer that never acks (crashed, stalled) loses the message to the
        // next receive once the timeout runs out, with a new receipt; the old one is stale.
        let mut b = Broker::new(5_000 * 1000);
        b.send("job", t(0), 0);
        let first = b.receive(t(1)).expect("visible");
        assert_eq!((first.receives, first.visible_again), (1, t(5_001)));
        assert_eq!(b.next_wake(), Some(t(5_001)));
        assert!(b.receive(t(5_000)).is_none(), "hidden until the timeout");
        let second = b.receive(t(5_001)).expect("redelivered");
        assert_eq!((second.id, second.receives), (first.id, 2));
        assert_ne!(second.receipt, first.receipt);
        assert_eq!(b.redelivered(), 1);
        // The slow first consumer finishes: its receipt no longer deletes the message…
        assert_eq!(b.ack(first.id, first.receipt), Ack { deleted: false, duplicate: false });
        assert_eq!(b.in_flight(), 1);
        // …and the second consumer's completion is the job's second run.
        assert_eq!(b.ack(second.id, second.receipt), Ack { deleted: true, duplicate: true });
        assert_eq!((b.in_flight(), b.get(0).unwrap().state), (0, State::Done));
        assert!(!b.dead_letter(0, second.receipt) && !b.delete(0, second.receipt));
        assert_eq!(b.retry(0, second.receipt, t(6_000), 0), None);
    }

    #[test]
    fn a_delayed_message_is_invisible_until_due_and_does_not_hold_up_the_rest() {
        let mut b = Broker::new(1_000_000);
        let (late, due) = b.send('d', t(0), 100_000);
        assert_eq!((due, b.delayed(), b.next_wake()), (t(100), 1, Some(t(100))));
        b.send('a', t(1), 0);
        assert_eq!(b.receive(t(2)).map(|d| d.job), Some('a'));
        assert!(b.receive(t(99)).is_none(), "not before it is due");
        let d = b.receive(t(100)).expect("due");
        assert_eq!((d.id, d.job, d.due, d.receives), (late, 'd', t(100), 1));
        assert_eq!(b.redelivered(), 0, "falling due is not a redelivery");
    }

    #[test]
    fn a_retry_waits_its_backoff_and_requeues_at_the_back() {
        let mut b = Broker::new(1_000_000);
        b.send(1, t(0), 0);
        b.send(2, t(0), 0);
        let one = b.receive(t(0)).unwrap();
        assert_eq!(b.retry(one.id, one.receipt, t(10), 50_000), Some(t(60)));
        assert_eq!((b.delayed(), b.in_flight()), (1, 0));
        assert_eq!(b.receive(t(20)).map(|d| d.job), Some(2));
        assert_eq!(b.receive(t(59)), None);
        let again = b.receive(t(60)).unwrap();
        assert_eq!((again.job, again.receives), (1, 2));
        // Retry at once: the back of the queue, behind what was sent meanwhile.
        b.send(3, t(61), 0);
        b.retry(again.id, again.receipt, t(62), 0);
        assert_eq!([0, 1].map(|_| b.receive(t(63)).unwrap().job), [3, 1]);
    }

    #[test]
    fn a_message_received_max_receives_times_goes_to_the_dead_letter_queue() {
        let mut b = Broker::new(1000);
        b.set_max_receives(Some(3));
        b.send("poison", t(0), 0);
        for n in 1..=3 {
            let d = b.receive(t(n)).expect("delivered while under the limit");
            assert_eq!(d.receives, n as u32);
        }
        assert!(b.receive(t(4)).is_none(), "the fourth receive dead-letters it");
        assert_eq!((b.dead(), b.get(0).unwrap().state), (1, State::Dead));
        assert_eq!(b.dead_letters().collect::<Vec<_>>(), [0]);
        // A consumer may dead-letter or delete one itself.
        b.send("bad", t(5), 0);
        b.send("dropped", t(5), 0);
        let (x, y) = (b.receive(t(5)).unwrap(), b.receive(t(5)).unwrap());
        assert!(b.dead_letter(x.id, x.receipt) && b.delete(y.id, y.receipt));
        assert_eq!((b.dead(), b.get(y.id).unwrap().state), (2, State::Deleted));
        assert_eq!(b.messages().count(), 3);
        let v = b.gauges(faultline_core::NodeView::new(faultline_core::NodeKind::Queue, 0, "q"));
        assert_eq!(v.gauges.iter().map(|g| (g.label, g.value)).collect::<Vec<_>>(), [("ready", 0), ("in flight", 0)]);
    }

    #[test]
    fn with_consumers_failing_at_random_the_dead_letter_share_is_q_to_the_max_receives() {
        // Each delivery is lost with probability q (the consumer dies before acking), on its own.
        // A message reaches the DLQ exactly when its first m deliveries are all lost: q^m, and
        // the receives per message are a geometric count cut at m, mean (1 − q^m)/(1 − q).
        // q = 0.3, m = 3: 2.7% and 1.39. Over 100k messages the DLQ share's standard error is
        // 0.05 points (1.9% of it): ±8% is four of them, and q^(m±1) is 70% or 233% of it.
        let (q, m, n) = (0.3, 3, 100_000u64);
        let mut b = Broker::new(10);
        b.set_max_receives(Some(m));
        let mut rng = Rng::new(7);
        for i in 0..n {
            b.send(i, t(i), 0);
        }
        let mut now = t(n);
        let mut receives = 0u64;
        while let Some(d) = b.receive(now) {
            receives += 1;
            if rng.unit_open() >= q {
                b.ack(d.id, d.receipt);
            }
            now = now.plus(1);
        }
        // Whatever is still hidden comes back once more and is then dead-lettered or received.
        now = now.plus(100);
        while let Some(d) = b.receive(now) {
            receives += 1;
            if rng.unit_open() >= q {
                b.ack(d.id, d.receipt);
            }
            now = now.plus(100);
        }
        let share = b.dead() as f64 / n as f64;
        let want = libm::pow(q, m as f64);
        assert!((share - want).abs() <= 0.08 * want, "DLQ share {share:.4}, q^m = {want:.4}");
        let mean = receives as f64 / n as f64;
        let geometric = (1.0 - want) / (1.0 - q);
        assert!((mean - geometric).abs() <= 0.01 * geometric, "receives per message {mean:.3}, {geometric:.3}");
        assert!(b.messages().all(|(_, m)| matches!(m.state, State::Done | State::Dead)));
    }
}

/// For the tests of scenarios built on the broker (and any other): every failure of a check.
#[cfg(test)]
pub mod testing {
    use faultline_core::{Run, Time};

    /// Runs `run` to `secs` event by event and returns every failure of `check` with a new
    /// reason, and when: a check judged at the event that breaks its promise fails once per
    /// broken promise, and failures close together share a violation band, so their reasons
    /// are what tells them apart.
    pub fn failures(run: &mut dyn Run, check: &str, secs: u64) -> Vec<(f64, String)> {
        run.keep_trace(false);
        let i = run.checks().iter().position(|c| c.id == check).expect("a check");
        let mut out = Vec::new();
        while run.next_event_time().is_some_and(|t| t <= Time::from_secs(secs)) {
            let before = run.checks()[i].latest_why.clone();
            run.step();
            let why = &run.checks()[i].latest_why;
            if *why != before {
                out.push((run.now().as_secs_f64(), why.clone().unwrap_or_default()));
            }
        }
        out
    }
}
