//! Snowflake IDs — a millisecond timestamp, a worker id and a sequence within the millisecond — with the wait for the next millisecond when the sequence is spent and, optionally, a guard that waits out a clock gone back.
//!
//! Twitter's layout (2010): 41 bits of milliseconds since an epoch, 10 bits of worker id and
//! 12 of sequence — 4,096 IDs a millisecond from each of 1,024 workers. A worker's IDs grow
//! as its clock does, and two workers' IDs never meet, with no coordination at all — as long
//! as no clock goes back and no two workers share an id. A clock stepped back puts the
//! generator on milliseconds it has used: its sequence starts at 0 again and it issues the
//! same IDs a second time. The guard remembers the last timestamp used and issues nothing
//! until the clock is back at it (Twitter's code refused with an error instead). Its memory
//! is the generator's: a restart forgets it.

use faultline_core::{Micros, MICROS_PER_MS};

/// Why no ID can be issued now, and how long (on the generator's clock) until one can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The millisecond's sequence is spent: until the next millisecond.
    Sequence(Micros),
    /// Under the guard, the clock reads before the last timestamp used: until it is back.
    Clock(Micros),
}

impl Wait {
    pub fn us(self) -> Micros {
        match self {
            Wait::Sequence(us) | Wait::Clock(us) => us,
        }
    }
}

/// One worker's generator: its worker id, sequence width and last (timestamp, sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snowflake {
    pub worker: u64,
    sequence_bits: u32,
    last: (u64, u64),
}

impl Snowflake {
    /// Bits of worker id: 1,024 workers.
    pub const WORKER_BITS: u32 = 10;

    /// A generator for `worker` (below 1,024) with `sequence_bits` of sequence (1 to 12).
    pub fn new(worker: u64, sequence_bits: u32) -> Snowflake {
        Snowflake { worker, sequence_bits: sequence_bits.clamp(1, 12), last: (0, 0) }
    }

    /// The last (timestamp in ms, sequence) used.
    pub fn last(&self) -> (u64, u64) {
        self.last
    }

    /// A restart: the last timestamp and sequence were in memory.
    pub fn forget(&mut self) {
        self.last = (0, 0);
    }

    /// The ID for the generator's clock reading `now_us` (µs since the epoch), or how long to
    /// wait for one. Without the guard a millisecond before the last one used starts its
    /// sequence at 0 again, as a new one would.
    pub fn next(&mut self, now_us: Micros, guard: bool) -> Result<u64, Wait> {
        let (ts, (last, seq)) = (now_us / MICROS_PER_MS, self.last);
        if guard && ts < last {
            return Err(Wait::Clock(last * MICROS_PER_MS - now_us));
        }
        self.last = match ts == last {
            true if seq + 1 >= 1 << self.sequence_bits => {
                return Err(Wait::Sequence((ts + 1) * MICROS_PER_MS - now_us))
            }
            true => (ts, seq + 1),
            false => (ts, 0),
        };
        Ok(ts << (Self::WORKER_BITS + self.sequence_bits) | self.worker << self.sequence_bits | self.last.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_timestamp_worker_sequence() {
        let mut g = Snowflake::new(5, 12);
        assert_eq!(g.next(7_000, false), Ok(7 << 22 | 5 << 12));
        assert_eq!(g.next(7_999, false), Ok(7 << 22 | 5 << 12 | 1));
        assert_eq!(g.last(), (7, 1));
    }

    #[test]
    fn a_spent_sequence_waits_for_the_next_millisecond_and_ids_keep_growing() {
        // Two bits: four IDs in a millisecond, then a wait for the next one.
        let mut g = Snowflake::new(0, 2);
        let ids: Vec<u64> = (0..4).map(|i| g.next(3_000 + i, false).expect("room")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.next(3_400, false), Err(Wait::Sequence(600)));
        assert!(g.next(4_000, false).expect("a new millisecond") > ids[3]);
    }

    #[test]
    fn a_clock_gone_back_repeats_ids_unless_guarded() {
        let (mut naive, mut guarded) = (Snowflake::new(1, 12), Snowflake::new(1, 12));
        let first = naive.next(10_000, false).expect("an ID");
        _ = guarded.next(10_000, true);
        naive.next(12_000, false).expect("later");
        guarded.next(12_000, true).expect("later");
        // Back 2 ms: the naive generator issues its first ID again; the guard waits 2 ms.
        assert_eq!(naive.next(10_000, false), Ok(first));
        assert_eq!(guarded.next(10_000, true), Err(Wait::Clock(2_000)));
        assert!(guarded.next(12_000, true).expect("back at the last timestamp") > first);
        // Two workers never meet, and a restart forgets the guard's memory.
        assert_ne!(Snowflake::new(2, 12).next(10_000, false), Ok(first));
        guarded.forget();
        assert_eq!(guarded.next(10_000, true), Ok(first));
    }
}
