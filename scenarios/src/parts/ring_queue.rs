//! A queue in threads' shared memory (`parts::threads`): a ring with a head, a count and a closed flag under one lock, a put and a take as single accesses, waits on "not empty" and "not full" condition variables — checked again in a `while`, or (broken) once with an `if`.
//!
//! The textbook monitor (Hoare 1974; Java's ArrayBlockingQueue): a put is lock, read the closed
//! flag, read the count — wait while full — read the head, write the slot at head + count, write
//! the count, notify a consumer, unlock; a take mirrors it from the head. Condition variables
//! have Mesa semantics (Lampson & Redell 1980): a woken thread queues for the lock again and
//! another may take the item or the slot first, so the condition must be checked again.

use super::threads::{Access, Memory, Reply};

/// Cells: the ring's head, the count, the closed flag, then the ring's slots. Lock 0 guards
/// them all; condition 0 is "not empty", 1 "not full".
pub const HEAD: u32 = 0;
pub const COUNT: u32 = 1;
pub const CLOSED: u32 = 2;
pub const RING: u32 = 3;
pub const LOCK: u32 = 0;
pub const NOT_EMPTY: u32 = 0;
pub const NOT_FULL: u32 = 1;

/// A queue's memory with `slots` slots.
pub fn memory(slots: usize) -> Memory {
    Memory::new(RING as usize + slots, 1).with_conds(2)
}

/// Closes the queue and wakes every sleeper to see it, by `by`, who holds the lock (else a thread
/// that read the flag just before would sleep through it: a lost wake-up); who was woken holding
/// the lock, if it was free (answer each `Reply::Woken`).
pub fn close(mem: &mut Memory, by: u32) -> Vec<u32> {
    mem.set(CLOSED, 1);
    [NOT_EMPTY, NOT_FULL].into_iter().flat_map(|cond| mem.apply(by, Access::Notify { cond, all: true }).woken).collect()
}

/// How the queue is written, read at each decision (so a switch acts at the next one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The most items a put may leave; `None`: unbounded.
    pub bound: Option<i64>,
    /// A full queue rejects a put (the producer is told) instead of making it wait.
    pub reject: bool,
    /// Woken, check the condition again (`while`); false: go on as if it held (`if`).
    pub recheck: bool,
    /// Once closed, a consumer stops at once instead of draining.
    pub abort: bool,
}

/// What a thread does next in its put or take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Next(Access),
    /// Full, and the rules reject: give the lock back; the producer is told.
    Reject,
    /// Closed (or aborting): give the lock back and stop.
    Stop,
    /// The lock given back: the put or take is over.
    Done,
}

/// A producer's or a consumer's side of one put or take: the item it puts, what it read under
/// the lock, and whether it was just woken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    pub producer: bool,
    pub item: i64,
    count: i64,
    head: i64,
    closed: bool,
    woke: bool,
}

impl Side {
    pub fn new(producer: bool) -> Side {
        Side { producer, ..Side::default() }
    }

    /// A new put of `item` (a producer) or a new take: ask for the lock.
    pub fn begin(&mut self, item: i64) -> Access {
        (self.item, self.woke) = (item, false);
        Access::Lock(LOCK)
    }

    /// What follows `last`'s answer `reply`, by `rules`, in a ring of `slots`.
    pub fn after(&mut self, last: Access, reply: Reply, rules: Rules, slots: i64) -> Step {
        let slot = |at: i64| RING + at.rem_euclid(slots) as u32;
        let next = match (last, reply) {
            (Access::Lock(_), _) => Access::Read(CLOSED),
            (Access::Wait { .. }, _) => {
                self.woke = !rules.recheck;
                Access::Read(if self.woke { COUNT } else { CLOSED })
            }
            (Access::Read(CLOSED), Reply::Value(c)) => {
                self.closed = c == 1;
                Access::Read(COUNT)
            }
            (Access::Read(COUNT), Reply::Value(n)) => {
                self.count = n;
                return self.decide(rules);
            }
            (Access::Read(HEAD), Reply::Value(h)) if self.producer => Access::Write(slot(h + self.count), self.item),
            (Access::Read(HEAD), Reply::Value(h)) => {
                self.head = h;
                Access::Read(slot(h))
            }
            (Access::Read(_), _) => Access::Write(HEAD, (self.head + 1).rem_euclid(slots)),
            (Access::Write(HEAD, _), _) => Access::Write(COUNT, self.count - 1),
            (Access::Write(COUNT, _), _) => {
                Access::Notify { cond: if self.producer { NOT_EMPTY } else { NOT_FULL }, all: false }
            }
            (Access::Write(..), _) => Access::Write(COUNT, self.count + 1),
            (Access::Notify { .. }, _) => Access::Unlock(LOCK),
            _ => return Step::Done,
        };
        Step::Next(next)
    }

    /// Holding the lock, with the closed flag and the count read (or, woken under `if`, the
    /// count alone): stop, wait, reject, or go on to the head.
    fn decide(&mut self, rules: Rules) -> Step {
        let woke = std::mem::take(&mut self.woke);
        let full = rules.bound.is_some_and(|b| self.count >= b);
        let wait = |cond| Step::Next(Access::Wait { cond, lock: LOCK });
        match (self.producer, self.count > 0) {
            _ if woke => Step::Next(Access::Read(HEAD)),
            (true, _) if self.closed => Step::Stop,
            (true, _) if full && rules.reject => Step::Reject,
            (true, _) if full => wait(NOT_FULL),
            (false, _) if self.closed && rules.abort => Step::Stop,
            (false, false) if self.closed => Step::Stop,
            (false, false) => wait(NOT_EMPTY),
            _ => Step::Next(Access::Read(HEAD)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHILE: Rules = Rules { bound: Some(2), reject: false, recheck: true, abort: false };

    /// Drives thread `t`'s side until it waits for something (a lock or a wake-up) or ends;
    /// what the slots' reads returned, and how it ended.
    fn drive(mem: &mut Memory, t: u32, side: &mut Side, mut access: Access, rules: Rules) -> (Vec<i64>, Step) {
        let mut took = vec![];
        loop {
            let Some(reply) = mem.apply(t, access).reply else { return (took, Step::Next(access)) };
            if let (Access::Read(s), Reply::Value(v)) = (access, reply) {
                took.extend((s >= RING).then_some(v));
            }
            match side.after(access, reply, rules, 4) {
                Step::Next(a) => access = a,
                Step::Reject | Step::Stop => access = Access::Unlock(LOCK),
                Step::Done => return (took, Step::Done),
            }
        }
    }

    #[test]
    fn a_put_and_a_take_move_an_item_through_the_ring() {
        let mut mem = memory(4);
        let (mut p, mut c) = (Side::new(true), Side::new(false));
        for item in [7, 8] {
            let a = p.begin(item);
            assert_eq!(drive(&mut mem, 1, &mut p, a, WHILE), (vec![], Step::Done));
        }
        let a = p.begin(9);
        assert_eq!(drive(&mut mem, 1, &mut p, a, WHILE).1, Step::Next(Access::Wait { cond: NOT_FULL, lock: LOCK }));
        let a = c.begin(0);
        assert_eq!(drive(&mut mem, 2, &mut c, a, WHILE), (vec![7], Step::Done), "oldest first; the producer woken");
        assert_eq!(mem.holder(LOCK), Some(1));
        let reject = Rules { reject: true, ..WHILE };
        assert_eq!(p.after(Access::Read(COUNT), Reply::Value(2), reject, 4), Step::Reject);
        assert_eq!(mem.cells()[..3], [1, 1, 0]);
    }

    #[test]
    fn woken_under_if_a_consumer_takes_from_an_empty_queue_and_under_while_it_sleeps_again() {
        for (recheck, took) in [(false, vec![0]), (true, vec![])] {
            let rules = Rules { recheck, ..WHILE };
            let mut mem = memory(4);
            let (mut p, mut a, mut b) = (Side::new(true), Side::new(false), Side::new(false));
            // Consumer a finds the queue empty and sleeps; consumer b queues for the lock behind
            // the producer, whose notify queues a behind b (Mesa): b takes the item.
            let first = a.begin(0);
            assert_eq!(
                drive(&mut mem, 2, &mut a, first, rules).1,
                Step::Next(Access::Wait { cond: NOT_EMPTY, lock: LOCK })
            );
            let put = p.begin(5);
            mem.apply(1, put);
            let ask = b.begin(0);
            let (took_b, _) = drive(&mut mem, 3, &mut b, ask, rules);
            assert!(took_b.is_empty(), "b waits for the lock");
            let (_, done) = drive(&mut mem, 1, &mut p, Access::Read(CLOSED), rules);
            assert_eq!(done, Step::Done);
            let (took_b, _) = drive(&mut mem, 3, &mut b, Access::Read(CLOSED), rules);
            assert_eq!(took_b, vec![5]);
            let Step::Next(again) = a.after(Access::Wait { cond: NOT_EMPTY, lock: LOCK }, Reply::Woken, rules, 4)
            else {
                panic!("a woken thread goes on")
            };
            assert_eq!(drive(&mut mem, 2, &mut a, again, rules).0, took, "recheck {recheck}");
            // Closed, a draining consumer stops once the queue is empty; an aborting one at once.
            let mut mem = memory(4);
            close(&mut mem, 0);
            let mut c = Side::new(false);
            let ask = c.begin(0);
            assert_eq!(drive(&mut mem, 4, &mut c, ask, rules), (vec![], Step::Done));
            assert_eq!(c.after(Access::Read(COUNT), Reply::Value(3), Rules { abort: true, ..rules }, 4), Step::Stop);
        }
    }
}
