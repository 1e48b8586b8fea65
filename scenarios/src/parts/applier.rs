//! Applying keyed, numbered items to a table: each written once (a copy refused by its key and number, as a primary key refuses it), out of order when a higher number of its key was written before it; the latest such write kept for a check to name.
//!
//! The judge of a per-key ordering promise (Kafka's per-partition order, SQS FIFO's message
//! groups): item n of a key is in order if no item of that key numbered above n was written
//! before it. A gap is not a reordering (the missing one may be lost, or come later and be
//! the one out of order). At-least-once delivery brings copies; the table writes each
//! (key, number) once, so a copy neither counts as out of order nor moves the key's high mark.

use crate::parts::table::KeyTable;
use faultline_core::Time;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
