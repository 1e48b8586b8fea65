//! A partition with its one consumer, at least once end to end: appends deduplicated by the producer's id, one record in hand at a time, each handed downstream until acknowledged, the commit at the oldest record not acknowledged, and after a crash a fresh read from the commit.
//!
//! The log and its committed offset are durable; the read position, the record in hand and
//! the records awaiting their ack are not. So a record is handed downstream at least once:
//! a lost hand-off is resent (backing off, [`Resend`]), and one handed off but not yet acked
//! when the consumer crashes is read, worked on and handed off again after the restart —
//! the receiver drops the copies by offset ([`crate::parts::resend::InOrder`]). A producer
//! that resends gets the same treatment at the front: `append` keeps one record per id, as
//! Kafka's idempotent producer does by producer id and sequence.
//!
//! How a scenario uses it (`Timer::Processed(Offset)` and `Timer::Unacked(CallId)` are its own):
//! `append` then `next` on a producer's record; on `Processed(at)`, `processed` gives the
//! call id, offset and value to send downstream, then `next`; on the ack, `acked` then
//! `next`; on `Unacked(id)`, `timed_out` gives what to send again; `crash` in `on_crash`,
//! `next` in `on_start`.

use crate::parts::calls::CallId;
use crate::parts::partition::{Offset, Partition};
use crate::parts::resend::Resend;
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, NodeView, Tone};

/// The consumer group: the one consumer.
const GROUP: usize = 0;

#[derive(Clone, Debug)]
pub struct Consumer<T> {
    log: Partition<T>,
    /// The producer's id of every record in the log.
    ids: KeyTable<()>,
    busy: bool,
    read: Offset,
    acks: Resend<Offset>,
}

impl<T: Clone> Consumer<T> {
    /// An empty partition; the acks' latencies go to the histogram `latency`.
    pub fn new(latency: &'static str) -> Consumer<T> {
        Consumer { log: Partition::new(1), ids: KeyTable::default(), busy: false, read: 0, acks: Resend::new(latency) }
    }

    /// A producer's record with its id, appended unless the log has it already (a resent
    /// copy); returns whether it was appended. Acknowledge it to the producer either way.
    pub fn append<N: Node>(&mut self, id: u64, value: T, ctx: &Ctx<N>) -> bool {
        let new = self.ids.insert(id, ()).is_none();
        if new {
            self.log.append(value, ctx.truth());
        }
        new
    }

    /// Starts on the next record, if the consumer is free and there is one: its work takes
    /// `work_us`, then the `timer` of its offset fires.
    pub fn next<N: Node>(&mut self, ctx: &mut Ctx<N>, work_us: Micros, timer: impl FnOnce(Offset) -> N::Timer) {
        if !self.busy && self.read < self.log.end() {
            self.busy = true;
            ctx.set_timer(work_us, timer(self.read));
        }
    }

    /// The work on the record at `offset` is done: the call id to hand it downstream with
    /// (the first wait for its ack is `timeout_us`), its offset and value.
    pub fn processed<N: Node>(
        &mut self,
        offset: Offset,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> (CallId, Offset, T) {
        let id = self.acks.send(ctx, offset, timeout_us, timer);
        (self.busy, self.read) = (false, offset + 1);
        (id, offset, self.value(offset))
    }

    /// Downstream acknowledged call `id`: the commit moves up to the oldest record still
    /// unacknowledged. Returns whether this was the call's first ack.
    pub fn acked<N: Node>(&mut self, id: CallId, ctx: &mut Ctx<N>) -> bool {
        if self.acks.acked(id, ctx).is_none() {
            return false;
        }
        let oldest = self.acks.pending().min().copied().unwrap_or(self.read);
        self.log.commit(GROUP, oldest, ctx.truth());
        true
    }

    /// Call `id` went unacknowledged: the offset and value to send again under the new call
    /// id (each wait twice the last from `timeout_us`, up to `cap_us`); `None` if acked.
    pub fn timed_out<N: Node>(
        &mut self,
        id: CallId,
        ctx: &mut Ctx<N>,
        timeout_us: Micros,
        cap_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(CallId, Offset, T)> {
        let (id, offset) = self.acks.timed_out(id, ctx, timeout_us, cap_us, timer)?;
        Some((id, offset, self.value(offset)))
    }

    /// A crash: the record in hand and the hand-offs awaiting acks are forgotten, and the
    /// read position with them: after the restart the consumer reads again from the commit.
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.acks.crash(ctx);
        (self.busy, self.read) = (false, self.log.committed(GROUP));
    }

    fn value(&self, offset: Offset) -> T {
        self.log.get(offset).expect("appended").value.clone()
    }

    /// The partition (its end, commit and lag).
    pub fn log(&self) -> &Partition<T> {
        &self.log
    }

    /// Records not committed.
    pub fn lag(&self) -> u64 {
        self.log.lag(GROUP)
    }

    /// Hand-offs awaiting their ack.
    pub fn in_flight(&self) -> usize {
        self.acks.len()
    }

    /// Hand-offs sent again so far.
    pub fn resent(&self) -> u64 {
        self.acks.resent()
    }

    /// `v` with the consumer's gauge and badges: its lag, the log's end and commit, and the
    /// hand-offs sent again (if any).
    pub fn gauges(&self, v: NodeView) -> NodeView {
        let (lag, resent) = (self.lag() as i64, self.resent());
        v.gauge("lag", lag, lag.max(100))
            .badge(format!("end {} · committed {}", self.log.end(), self.log.committed(GROUP)), Tone::Neutral)
            .badge_if(resent > 0, format!("{resent} resent"), Tone::Warn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{run_alone, NoMsg};
    use faultline_core::{Label, NodeId, Time};

    /// A consumer whose downstream acks every hand-off after 1 ms but the first of offset 1,
    /// and that crashes at `crash_ms` if given; what it handed off, in order.
    #[derive(Clone, Debug)]
    struct Harness {
        c: Consumer<char>,
        handed: Vec<(Offset, char)>,
        lost: bool,
        crash_ms: Option<u64>,
    }

    fn run(crash_ms: Option<u64>) -> Harness {
        let h = Harness { c: Consumer::new("ack_us"), handed: vec![], lost: false, crash_ms };
        run_alone(h, 1, Time::from_ms(500))
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Processed(Offset),
        Unacked(CallId),
        Ack(CallId),
        Crash,
    }

    impl Node for Harness {
        type Msg = NoMsg;
        type Timer = Timer;

        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (id, v) in [(7, 'a'), (8, 'b'), (7, 'a'), (9, 'c')] {
                self.c.append(id, v, ctx);
            }
            self.c.next(ctx, 10_000, Timer::Processed);
            if let Some(ms) = self.crash_ms {
                ctx.set_timer(ms * 1_000, Timer::Crash);
            }
        }

        fn on_message(&mut self, _: NodeId, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }

        fn on_timer(&mut self, t: Timer, ctx: &mut Ctx<Self>) {
            match t {
                Timer::Processed(at) => {
                    let (id, _, v) = self.c.processed(at, ctx, 20_000, Timer::Unacked);
                    self.handed.push((at, v));
                    if at == 1 && !self.lost {
                        self.lost = true;
                    } else {
                        ctx.set_timer(1_000, Timer::Ack(id));
                    }
                }
                Timer::Ack(id) => _ = self.c.acked(id, ctx),
                Timer::Unacked(id) => {
                    if let Some((id, at, v)) = self.c.timed_out(id, ctx, 20_000, 80_000, Timer::Unacked) {
                        self.handed.push((at, v));
                        ctx.set_timer(1_000, Timer::Ack(id));
                    }
                }
                Timer::Crash => self.c.crash(ctx),
            }
            self.c.next(ctx, 10_000, Timer::Processed);
        }

        fn view(&self) -> NodeView {
            unreachable!()
        }
    }

    #[test]
    fn a_lost_hand_off_is_resent_and_the_commit_waits_for_the_oldest() {
        let h = run(None);
        // A copy of `a` (same id) was not appended. `b`'s hand-off (at 20 ms) was lost and
        // resent at 40 ms, after `c` had been handed off and acked.
        assert_eq!(h.c.log().end(), 3);
        assert_eq!(h.handed, [(0, 'a'), (1, 'b'), (2, 'c'), (1, 'b')]);
        assert_eq!((h.c.lag(), h.c.resent()), (0, 1));
    }

    #[test]
    fn after_a_crash_the_consumer_reads_again_from_the_commit() {
        // At 35 ms `c` is acked but `b` is not, so the commit is 1: both are read again.
        let h = run(Some(35));
        assert_eq!(h.handed, [(0, 'a'), (1, 'b'), (2, 'c'), (1, 'b'), (2, 'c')]);
        assert_eq!((h.c.lag(), h.c.resent()), (0, 0));
    }

    #[test]
    fn the_view_shows_the_lag_the_end_the_commit_and_what_was_resent() {
        let h = run(None);
        let v = h.c.gauges(NodeView::new(faultline_core::NodeKind::Queue, 0, "p"));
        assert_eq!((v.gauges[0].value, v.badges[0].text.as_str()), (0, "end 3 · committed 3"));
        assert_eq!(v.badges[1].text, "1 resent");
    }
}
