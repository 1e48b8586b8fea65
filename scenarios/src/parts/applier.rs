//! Applying keyed, numbered items to a table: each written once (a copy refused by its key and number, as a primary key refuses it), out of order when a higher number of its key was written before it; the latest such write kept for a check to name; `Ordered`: such a table fed by at-least-once streams numbered by offset, one key's items put back in order on the way (by number or by stamp).
//!
//! The judge of a per-key ordering promise (Kafka's per-partition order, SQS FIFO's message
//! groups): item n of a key is in order if no item of that key numbered above n was written
//! before it. A gap is not a reordering (the missing one may be lost, or come later and be
//! the one out of order). At-least-once delivery brings copies; the table writes each
//! (key, number) once, so a copy neither counts as out of order nor moves the key's high mark.

use crate::parts::partition::Offset;
use crate::parts::resend::InOrder;
use crate::parts::resequencer::{Release, Resequencer};
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, Time};

/// What became of an item written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written after every number of its key written before it (gaps allowed).
    InOrder,
    /// Written after `after`, a higher number of its key.
    OutOfOrder { after: u64 },
    /// Refused: this key and number were written already.
    Copy,
}

/// Each key's highest number written, every (key, number) written, and the latest item
/// written out of order with the number it came after and when.
#[derive(Clone, Debug)]
pub struct Applier<T> {
    high: KeyTable<u64>,
    /// By `key << 32 | n` (numbers below 2³²): the table's primary key.
    written: KeyTable<()>,
    late: Option<(T, u64, Time)>,
}

impl<T> Default for Applier<T> {
    fn default() -> Self {
        Applier { high: KeyTable::default(), written: KeyTable::default(), late: None }
    }
}

impl<T> Applier<T> {
    /// Writes `key`'s item number `n` (from 1) at `at`, unless it is a copy.
    pub fn apply(&mut self, key: u64, n: u64, item: T, at: Time) -> Applied {
        if self.written.insert(key << 32 | n, ()).is_some() {
            return Applied::Copy;
        }
        let high = self.high(key);
        if n < high {
            self.late = Some((item, high, at));
            return Applied::OutOfOrder { after: high };
        }
        self.high.insert(key, n);
        Applied::InOrder
    }

    /// The highest number of `key` written (0: none).
    pub fn high(&self, key: u64) -> u64 {
        self.high.get(key).copied().unwrap_or(0)
    }

    /// The latest item written out of order, the number it came after, and when.
    pub fn late(&self) -> Option<&(T, u64, Time)> {
        self.late.as_ref()
    }
}

/// How [`Ordered`] puts its held key's items back in order before the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reorder {
    /// Not at all: every item is written as it comes (what is held goes out at once).
    None,
    /// By the key's numbers: item n once the table has n − 1 ([`Release::Sequence`]).
    Sequence,
    /// By the senders' stamps, each held `hold` past its stamp ([`Release::Stamp`]).
    Stamp { hold: Micros },
}

/// A table fed by several at-least-once streams numbered by offset (a partition's consumer
/// each), one key's items put back in order by a resequencer on the way (a hot key spread
/// over sub-keys): each stream's copies dropped by offset, the held key's by number, any
/// other by the table's primary key. Counts `applied`, `out_of_order` and `duplicates`,
/// observes `latency_us` (from each item's origin, true time) and gauges `held`.
#[derive(Clone, Debug)]
pub struct Ordered<T> {
    pub table: Applier<T>,
    pub held: Resequencer<T>,
    streams: Vec<InOrder<T>>,
    key: u64,
    /// An item's key, number (from 1), sender's stamp and origin.
    id: fn(&T) -> (u64, u64, Time, Time),
}

impl<T: Clone> Ordered<T> {
    /// `streams` streams into an empty table; `key`'s items go through the resequencer.
    pub fn new(streams: usize, key: u64, id: fn(&T) -> (u64, u64, Time, Time)) -> Ordered<T> {
        let (table, held) = (Applier::default(), Resequencer::default());
        Ordered { table, held, streams: vec![InOrder::default(); streams], key, id }
    }

    /// Item `offset` of `stream` arrives: what it lets through, in order, is written — the
    /// held key's via the resequencer (a copy dropped by its number under `Sequence`).
    /// `timer` is set for the next stamp due.
    pub fn receive<N: Node>(
        &mut self,
        stream: usize,
        offset: Offset,
        item: T,
        by: Reorder,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
    ) {
        for item in self.streams[stream].receive(offset, item) {
            let (key, n, stamp, _) = (self.id)(&item);
            match by {
                Reorder::Sequence if key == self.key => _ = self.held.offer(n, self.table.high(key) + 1, stamp, item),
                Reorder::Stamp { .. } if key == self.key => self.held.hold(n, stamp, item),
                _ => {
                    self.apply(item, ctx);
                    continue;
                }
            }
            self.drain(by, false, ctx, timer.clone());
        }
    }

    /// Writes what the resequencer lets out now (by number, by stamp on this node's clock;
    /// all, in number order, under `None`), then sets `timer` for the next stamp due
    /// (`afresh`: the one set before is gone, after a restart, or may be wrong, after a new
    /// rule or hold).
    pub fn drain<N: Node>(&mut self, by: Reorder, afresh: bool, ctx: &mut Ctx<N>, timer: N::Timer) {
        let rule = match by {
            Reorder::Sequence => Release::Sequence { next: self.table.high(self.key) + 1 },
            Reorder::Stamp { hold } => Release::Stamp { hold, now: ctx.now() },
            Reorder::None => Release::All,
        };
        let (out, wake) = self.held.drain_due(rule, afresh);
        out.into_iter().for_each(|(_, item)| self.apply(item, ctx));
        if let Some(at) = wake {
            ctx.set_timer(at.since(ctx.now()), timer);
        }
        ctx.gauge("held", self.held.len() as i64);
    }

    /// Writes the item: counted out of order if a later one of its key is there already;
    /// refused if it is there (a copy).
    fn apply<N: Node>(&mut self, item: T, ctx: &mut Ctx<N>) {
        let (key, n, _, origin) = (self.id)(&item);
        match self.table.apply(key, n, item, ctx.truth()) {
            Applied::Copy => return ctx.count("duplicates", 1),
            Applied::OutOfOrder { .. } => ctx.count("out_of_order", 1),
            Applied::InOrder => {}
        }
        ctx.count("applied", 1);
        ctx.observe("latency_us", ctx.truth().since(origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{run_alone, NoMsg};
    use faultline_core::{Label, NodeId, NodeView};

    #[test]
    fn each_item_written_once_and_one_after_a_higher_number_of_its_key_told() {
        let mut a = Applier::default();
        assert_eq!(a.apply(1, 1, 'a', Time(1)), Applied::InOrder);
        assert_eq!(a.apply(1, 3, 'c', Time(2)), Applied::InOrder, "a gap is not a reordering");
        assert_eq!(a.apply(2, 1, 'x', Time(3)), Applied::InOrder, "keys are apart");
        assert_eq!(a.apply(1, 2, 'b', Time(4)), Applied::OutOfOrder { after: 3 });
        assert_eq!(a.late(), Some(&('b', 3, Time(4))));
        assert_eq!(a.apply(1, 3, 'C', Time(5)), Applied::Copy, "a copy of the highest");
        assert_eq!(a.apply(1, 2, 'B', Time(6)), Applied::Copy, "a copy of the late one: not late again");
        assert_eq!((a.high(1), a.high(2), a.high(3)), (3, 1, 0));
        assert_eq!(a.late(), Some(&('b', 3, Time(4))), "the latest out of order is kept");
        assert_eq!(a.apply(1, 4, 'd', Time(7)), Applied::InOrder);
    }

    /// Items (key, number, stamp in ms); key 0's go through the resequencer.
    type It = (u64, u64, u64);

    #[derive(Clone, Debug)]
    struct Table {
        t: Ordered<It>,
        by: Reorder,
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Release,
    }

    impl Node for Table {
        type Msg = NoMsg;
        type Timer = Timer;

        // Stream 0 brings key 0's #2 (stamped 1 ms) and a copy of it; stream 1 key 0's #1
        // (2 ms), key 5's #1 behind a gap at offset 1, then the gap: key 0's #3 (3 ms).
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (stream, offset, it) in
                [(0, 0, (0, 2, 1)), (1, 0, (0, 1, 2)), (1, 2, (5, 1, 0)), (0, 0, (0, 2, 1)), (1, 1, (0, 3, 3))]
            {
                self.t.receive(stream, offset, it, self.by, ctx, Timer::Release);
            }
        }

        fn on_message(&mut self, _: NodeId, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }

        fn on_timer(&mut self, _: Timer, ctx: &mut Ctx<Self>) {
            self.t.drain(self.by, true, ctx, Timer::Release);
        }

        fn view(&self) -> NodeView {
            unreachable!()
        }
    }

    fn run(by: Reorder, until_ms: u64) -> Ordered<It> {
        let t = Ordered::new(2, 0, |i: &It| (i.0, i.1, Time::from_ms(i.2), Time::ZERO));
        run_alone(Table { t, by }, 1, Time::from_ms(until_ms)).t
    }

    #[test]
    fn streams_in_offset_order_once_and_the_held_key_by_number_or_by_stamp_after_the_hold() {
        // Not reordered: key 0's #1 comes after #2 (stream 1 lags stream 0), out of order.
        let t = run(Reorder::None, 50);
        assert_eq!((t.table.high(0), t.table.high(5), t.held.len()), (3, 1, 0));
        assert_eq!(t.table.late(), Some(&((0, 1, 2), 2, Time::ZERO)));
        // By number: #2 waits for #1, #3 for the gap in stream 1; nothing out of order.
        let t = run(Reorder::Sequence, 50);
        assert_eq!((t.table.high(0), t.table.high(5), t.held.len(), t.table.late()), (3, 1, 0, None));
        // By stamp with a 10 ms hold: all three held until 11 ms (#2's stamp), then out in
        // stamp order, so #1 (stamped later by its sender) after #2, at 12 ms.
        let t = run(Reorder::Stamp { hold: 10_000 }, 10);
        assert_eq!((t.table.high(0), t.table.high(5), t.held.len()), (0, 1, 3));
        let t = run(Reorder::Stamp { hold: 10_000 }, 50);
        assert_eq!((t.table.high(0), t.held.len()), (3, 0));
        assert_eq!(t.table.late(), Some(&((0, 1, 2), 2, Time::from_ms(12))));
    }
}
