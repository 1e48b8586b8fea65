//! The event queue: a binary heap ordered by (time, class, insertion sequence).
//!
//! Equal times run in insertion order, except that control events (faults and user
//! actions) run before ordinary events at the same time. That lets an action injected
//! live at time t replay identically from the recipe, where it was scheduled first.

use crate::time::Time;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Which lane an event is in at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Faults and user actions: first at their instant.
    Control,
    /// Messages and timers.
    Normal,
}

#[derive(Clone, Debug)]
struct Entry<E> {
    /// time << 64 | class << 63 | seq: one integer compare orders everything.
    key: u128,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the smallest key pops first.
        other.key.cmp(&self.key)
    }
}

/// A min-queue of timed events.
#[derive(Clone, Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue { heap: BinaryHeap::new(), seq: 0 }
    }

    pub fn with_capacity(n: usize) -> Self {
        EventQueue { heap: BinaryHeap::with_capacity(n), seq: 0 }
    }

    pub fn push(&mut self, at: Time, class: Class, event: E) {
        let lane: u128 = match class {
            Class::Control => 0,
            Class::Normal => 1,
        };
        let seq = self.seq as u128 & ((1u128 << 63) - 1);
        self.seq += 1;
        let key = ((at.0 as u128) << 64) | (lane << 63) | seq;
        self.heap.push(Entry { key, event });
    }

    pub fn pop(&mut self) -> Option<(Time, E)> {
        self.heap.pop().map(|e| (Time((e.key >> 64) as u64), e.event))
    }

    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|e| Time((e.key >> 64) as u64))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Every pending event, in no particular order (for drawing frames).
    pub fn iter(&self) -> impl Iterator<Item = (Time, &E)> {
        self.heap.iter().map(|e| (Time((e.key >> 64) as u64), &e.event))
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
    fn handles_many_pending() {
        let mut q = EventQueue::with_capacity(100_000);
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
