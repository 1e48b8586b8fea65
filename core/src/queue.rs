//! The event queue: a radix heap ordered by (time, class, insertion sequence).
//!
//! Equal times run in insertion order, except that control events (faults and user
//! actions) run before ordinary events at the same time. That lets an action injected
//! live at time t replay identically from the recipe, where it was scheduled first.
//!
//! Simulated time never runs backwards: nothing is scheduled before the instant being
//! handled. That makes a radix heap on time exact here (Ahuja, Mehlhorn, Orlin & Tarjan,
//! 1990), built with base-64 digits like a hierarchical timing wheel (Varghese & Lauck,
//! 1987): level `l` has 64 buckets for times that first differ from the current instant in
//! their `l`-th 6-bit digit, one bucket per value of that digit. Events at the current
//! instant wait in a small queue in (class, seq) order. A push is O(1); when the current
//! instant runs dry, the earliest bucket of the lowest occupied level is emptied into the
//! levels below, so an event moves at most once per level it descends — two or three times
//! for typical delays, however many events are pending — where a binary heap's pops walk
//! log2(n) levels of cold memory (17 at 100k pending).

use crate::time::Time;

/// Which lane an event is in at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Faults and user actions: first at their instant.
    Control,
    /// Messages and timers.
    Normal,
}

/// One pending event.
#[derive(Clone, Debug)]
struct Entry<E> {
    time: u64,
    /// class << 63 | seq: orders events at the same instant.
    tie: u64,
    event: E,
}

/// 6-bit digits: 11 levels cover 64-bit time.
const LEVELS: usize = 11;

/// An emptied bucket keeps its allocation up to this many entries.
const KEEP_CAPACITY: usize = 256;

/// A min-queue of timed events.
#[derive(Clone, Debug)]
pub struct EventQueue<E> {
    /// Events at the current instant (the last popped time), in reverse (class, seq) order:
    /// the next one is at the back, so taking it moves nothing else.
    now: Vec<Entry<E>>,
    /// Ordinary events scheduled for the current instant while it is being handled, in
    /// (class, seq) order. Each is newer than everything in `now`, so they run once `now`
    /// is empty (reversed into it then).
    fresh: Vec<Entry<E>>,
    /// `LEVELS` × 64 buckets; bucket `l * 64 + d` holds times that agree with `last` above
    /// digit `l` and have `d` (greater than `last`'s) as digit `l`.
    buckets: Vec<Vec<Entry<E>>>,
    /// The earliest time in each bucket (`u64::MAX` when empty).
    mins: Vec<u64>,
    /// Which buckets of each level are non-empty, one bit per digit.
    full: [u64; LEVELS],
    /// The current instant: the time of the last event popped. Every pending time is at least this.
    last: u64,
    len: usize,
    seq: u64,
    /// The last `pop` moved a bucket into `now`.
    refilled: bool,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            now: Vec::new(),
            fresh: Vec::new(),
            buckets: (0..LEVELS * 64).map(|_| Vec::new()).collect(),
            mins: vec![u64::MAX; LEVELS * 64],
            full: [0; LEVELS],
            last: 0,
            len: 0,
            seq: 0,
            refilled: false,
        }
    }

    /// Files an entry whose time is after `last` into its bucket.
    #[inline(always)]
    fn file(&mut self, entry: Entry<E>) {
        let level = (63 - (entry.time ^ self.last).leading_zeros()) as usize / 6;
        let digit = (entry.time >> (6 * level)) as usize & 63;
        let b = level * 64 + digit;
        if entry.time < self.mins[b] {
            self.mins[b] = entry.time;
        }
        self.full[level] |= 1 << digit;
        self.buckets[b].push(entry);
    }

    /// Adds an entry at the current instant, keeping (class, seq) order. A new ordinary
    /// event is the largest so far and waits in `fresh`; a control event goes before every
    /// ordinary one, so it is inserted in place in `now`, which runs first.
    fn file_now(&mut self, entry: Entry<E>) {
        if entry.tie >> 63 == 1 {
            self.fresh.push(entry);
        } else {
            if self.now.is_empty() {
                self.take_fresh();
            }
            let at = self.now.partition_point(|e| e.tie > entry.tie);
            self.now.insert(at, entry);
        }
    }

    /// Makes the events scheduled for this instant while it ran the next to run.
    fn take_fresh(&mut self) {
        std::mem::swap(&mut self.now, &mut self.fresh);
        self.now.reverse();
    }

    #[inline(always)]
    pub fn push(&mut self, at: Time, class: Class, event: E) {
        let lane: u64 = match class {
            Class::Control => 0,
            Class::Normal => 1,
        };
        let tie = (lane << 63) | (self.seq & ((1 << 63) - 1));
        self.seq += 1;
        self.len += 1;
        // Nothing is scheduled before the instant being handled; if it were, running it at
        // that instant (in order) is the least surprising repair.
        debug_assert!(at.0 >= self.last, "event scheduled before the one being handled");
        let entry = Entry { time: at.0.max(self.last), tie, event };
        if entry.time == self.last {
            self.file_now(entry);
        } else {
            self.file(entry);
        }
    }

    /// The earliest non-empty bucket: the lowest occupied level's lowest digit.
    fn earliest(&self) -> Option<usize> {
        let level = self.full.iter().position(|&w| w != 0)?;
        Some(level * 64 + self.full[level].trailing_zeros() as usize)
    }

    pub fn pop(&mut self) -> Option<(Time, E)> {
        if self.now.is_empty() && !self.fresh.is_empty() {
            self.take_fresh();
        }
        self.refilled = self.now.is_empty();
        if self.refilled {
            // Move the earliest bucket down around its earliest time, the new current instant.
            let b = self.earliest()?;
            self.last = self.mins[b];
            self.mins[b] = u64::MAX;
            self.full[b / 64] &= !(1 << (b % 64));
            let mut moving = std::mem::take(&mut self.buckets[b]);
            if b < 64 {
                // A level-0 bucket holds one exact time (its digit is the lowest): the whole
                // bucket becomes the current instant's lane, and the empty lane's buffer the
                // bucket's.
                std::mem::swap(&mut self.now, &mut moving);
            } else {
                for e in moving.drain(..) {
                    if e.time == self.last {
                        self.now.push(e);
                    } else {
                        self.file(e);
                    }
                }
            }
            // Keep the emptied bucket's allocation for reuse if it is small; a big one is
            // freed, or every bucket the wheel ever filled would hold its peak forever
            // (hundreds of MB at 100k pending).
            if moving.capacity() <= KEEP_CAPACITY {
                self.buckets[b] = moving;
            }
            if self.now.len() > 1 {
                // Nearly always in order already: each bucket receives its share of a higher
                // bucket first, then newer pushes; only a control event (first at its
                // instant) or an event held by a pause lands out of place. Insertion sort
                // costs one pass plus those few moves, and little code per scenario.
                insertion_sort(&mut self.now);
                self.now.reverse();
            }
        }
        let e = self.now.pop()?;
        self.len -= 1;
        Some((Time(e.time), e.event))
    }

    /// The events left at the current instant if the last `pop` has just gathered them
    /// (so a caller can touch what they will need, a batch at a time, before handling them).
    pub fn fresh_instant(&self) -> Option<impl Iterator<Item = &E>> {
        self.refilled.then(|| self.now.iter().map(|e| &e.event))
    }

    pub fn peek_time(&self) -> Option<Time> {
        if !self.now.is_empty() || !self.fresh.is_empty() {
            return Some(Time(self.last));
        }
        self.earliest().map(|b| Time(self.mins[b]))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every pending event, in no particular order (for drawing frames).
    pub fn iter(&self) -> impl Iterator<Item = (Time, &E)> {
        self.now.iter().chain(&self.fresh).chain(self.buckets.iter().flatten()).map(|e| (Time(e.time), &e.event))
    }
}

/// Sorts entries by tie, in one pass when they are (nearly) in order already.
fn insertion_sort<E>(lane: &mut [Entry<E>]) {
    for i in 1..lane.len() {
        let mut j = i;
        while j > 0 && lane[j - 1].tie > lane[j].tie {
            lane.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion() {
        let mut q = EventQueue::new();
        q.push(Time(5), Class::Normal, "b");
        q.push(Time(1), Class::Normal, "a");
        q.push(Time(5), Class::Normal, "c");
        q.push(Time(9), Class::Normal, "d");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn control_events_run_first_at_their_instant() {
        let mut q = EventQueue::new();
        q.push(Time(5), Class::Normal, "msg");
        q.push(Time(5), Class::Control, "fault");
        q.push(Time(4), Class::Normal, "early");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["early", "fault", "msg"]);
    }

    #[test]
    fn events_scheduled_at_the_current_instant_keep_their_order() {
        let mut q = EventQueue::new();
        for e in ["a", "b", "c"] {
            q.push(Time(5), Class::Normal, e);
        }
        assert_eq!(q.pop(), Some((Time(5), "a")));
        q.push(Time(5), Class::Normal, "d");
        q.push(Time(5), Class::Control, "X"); // a live action: before b, c and d
        q.push(Time(5), Class::Normal, "e");
        q.push(Time(5), Class::Control, "Y");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["X", "Y", "b", "c", "d", "e"]);
        // With only newly scheduled events left at the instant.
        q.push(Time(7), Class::Normal, "f");
        assert_eq!(q.pop(), Some((Time(7), "f")));
        q.push(Time(7), Class::Normal, "g");
        q.push(Time(7), Class::Control, "Z");
        q.push(Time(7), Class::Normal, "h");
        assert_eq!(q.peek_time(), Some(Time(7)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["Z", "g", "h"]);
        assert!(q.is_empty());
    }

    #[test]
    fn interleaved_pushes_and_pops_match_a_sorted_order() {
        // A model check against a sorted list: random delays, ties, control events and
        // pushes made while draining, as the kernel makes them.
        let mut q = EventQueue::new();
        let mut model: Vec<(u64, u8, u64, u64)> = Vec::new(); // (time, lane, seq, id)
        let (mut x, mut seq, mut now) = (7u64, 0u64, 0u64);
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 0..20_000u64 {
            let r = next();
            if r % 3 != 0 || model.is_empty() {
                let at = now + [0, 1, 5, 100, 1 << 20, 1 << 40][(r % 6) as usize] + (r >> 8) % 3;
                // (Control events at the current instant too: a live action lands there.)
                let control = r % 7 == 0;
                q.push(Time(at), if control { Class::Control } else { Class::Normal }, round);
                model.push((at, if control { 0 } else { 1 }, seq, round));
                seq += 1;
            } else {
                model.sort();
                let (t, _, _, id) = model.remove(0);
                assert_eq!(q.peek_time(), Some(Time(t)));
                assert_eq!(q.pop(), Some((Time(t), id)));
                now = t;
            }
            assert_eq!(q.len(), model.len());
        }
    }

    #[test]
    fn handles_many_pending() {
        let mut q = EventQueue::new();
        let mut x: u64 = 12345;
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            q.push(Time(x >> 40), Class::Normal, i);
        }
        let mut last = Time::ZERO;
        while let Some((t, _)) = q.pop() {
            assert!(t >= last);
            last = t;
        }
    }
}
