//! Threads over shared memory: every access (read, write, CAS, fetch-add, lock, try-lock, read lock, unlock) is one step.
//!
//! Threads are nodes that run small programs; shared memory is a node that applies each access
//! atomically, in the order they reach it, and answers (sequential consistency: a thread issues
//! one access at a time and waits for its answer). The schedule is the interleaving of those
//! arrivals, drawn from the run's seed: each step costs an exponential time (memoryless, so the
//! next access to land is any running thread's with equal chance — the *uniform stochastic
//! scheduler* of Alistarh, Censor-Hillel & Shavit, "Are lock-free concurrent algorithms
//! practically wait-free?", STOC 2014), and before any step a thread may be preempted for a time
//! slice. A lost update or a deadlock is therefore a seed, replayable step by step.
//!
//! Mutexes keep their holder and a FIFO of parked waiters; an unlock hands the lock to the
//! oldest waiter, who pays a wake-up (a context switch) before its next step. A lock taken
//! `Shared` is a readers-writer lock's read side: many readers hold it at once. Each thread waits
//! on at most one lock, so the wait-for graph (to a lock's writer, else its first reader) is a
//! function and a deadlock is a cycle in it.

use super::retry::{Jitter, RetryPolicy};
use faultline_core::{
    numbered, Control, Ctx, Fault, FaultSpec, Label, Micros, Node, NodeId, NodeView, ParamSpec, Ppm, Rng, Time, Tone,
    MICROS_PER_MS,
};
use std::collections::{BTreeMap, VecDeque};

/// A thread is named by its node.
pub type ThreadId = NodeId;

/// One access to shared memory: a cell (an `i64` word) or a mutex, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Label)]
pub enum Access {
    Read(u32),
    Write(u32, i64),
    /// Compare-and-set (as Rust's `compare_exchange`): stores `new` if the cell holds `expect`.
    Cas {
        cell: u32,
        expect: i64,
        new: i64,
    },
    /// Atomic fetch-and-add (x86 `lock xadd`): answers the value before.
    FetchAdd(u32, i64),
    Lock(u32),
    TryLock(u32),
    /// A read lock (as `pthread_rwlock_rdlock`): held by many readers at once, never beside a
    /// writer. `defer`: a reader waits behind a writer already waiting (writer preference);
    /// without it, it enters whenever no writer holds the lock (reader preference, glibc's
    /// default, under which a stream of readers starves writers).
    Shared {
        lock: u32,
        defer: bool,
    },
    /// Gives back a lock held either way.
    Unlock(u32),
    /// Sleeps on a condition variable (as `pthread_cond_wait`): gives back `lock`, which the
    /// thread holds, until a notify; then queues for `lock` again and is answered `Woken` once it
    /// holds it. Mesa semantics: others may take the lock between the notify and the wake-up, so
    /// the condition must be checked again (a `while`, not an `if`).
    Wait {
        cond: u32,
        lock: u32,
    },
    /// Wakes the oldest sleeper on a condition variable, or all of them (`notify_one`,
    /// `notify_all`): each queues for its lock.
    Notify {
        cond: u32,
        all: bool,
    },
}

/// Memory's answer to an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Label)]
pub enum Reply {
    /// A read's value, or a fetch-add's value before the add.
    Value(i64),
    Stored,
    /// A CAS: whether it stored, and the value the cell held when it was tried.
    Swapped(bool, i64),
    /// The lock was free: held now.
    Locked,
    /// The lock was handed over after a wait: the thread was parked and must be woken.
    Woken,
    /// A try-lock found the lock held.
    Busy,
    Unlocked,
    /// A notify: how many sleepers it woke (none is not an error: nobody was waiting).
    Notified(u32),
}

/// What applying an access did: the answer to its thread (none while it waits for a lock),
/// and the parked waiters an unlock handed the lock to (answer each `Reply::Woken`): a writer,
/// or the readers at the head of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub reply: Option<Reply>,
    pub woken: Vec<ThreadId>,
}

/// A lock: its writer (or a plain mutex's holder), its readers, and its FIFO of waiters, some
/// of them for the read side (with their `defer`).
#[derive(Clone, Debug, Default)]
struct Mutex {
    holder: Option<ThreadId>,
    readers: Vec<ThreadId>,
    waiters: VecDeque<ThreadId>,
    want_shared: Vec<(ThreadId, bool)>,
}

impl Mutex {
    fn shared(&self, t: ThreadId) -> Option<bool> {
        self.want_shared.iter().find(|(w, _)| *w == t).map(|&(_, defer)| defer)
    }

    /// Free now: the oldest waiter takes it — a writer alone; or, if a reader is oldest, the
    /// readers up to the first writer waiting, with every reader that does not defer to writers
    /// (as it would have entered, had it asked now). Who was woken.
    fn hand_over(&mut self) -> Vec<ThreadId> {
        let Some(&first) = self.waiters.front() else { return vec![] };
        if self.shared(first).is_none() {
            self.waiters.pop_front();
            self.holder = Some(first);
            return vec![first];
        }
        let writer_at = self.waiters.iter().position(|&w| self.shared(w).is_none()).unwrap_or(self.waiters.len());
        let (waiters, mut woken) = (std::mem::take(&mut self.waiters), vec![]);
        for (i, w) in waiters.into_iter().enumerate() {
            match self.shared(w) {
                Some(defer) if i < writer_at || !defer => woken.push(w),
                _ => self.waiters.push_back(w),
            }
        }
        self.want_shared.retain(|(w, _)| !woken.contains(w));
        self.readers.extend(&woken);
        woken
    }
}

/// Shared memory: cells and mutexes, each access applied whole.
#[derive(Clone, Debug)]
pub struct Memory {
    cells: Vec<i64>,
    locks: Vec<Mutex>,
    /// Each condition variable's sleepers, oldest first, with the lock each gave back.
    conds: Vec<VecDeque<(ThreadId, u32)>>,
}

impl Memory {
    pub fn new(cells: usize, locks: usize) -> Memory {
        Memory { cells: vec![0; cells], locks: vec![Mutex::default(); locks], conds: vec![] }
    }

    /// With `n` condition variables.
    pub fn with_conds(mut self, n: usize) -> Memory {
        self.conds = vec![VecDeque::new(); n];
        self
    }

    /// The threads asleep on `cond`, oldest first.
    pub fn sleepers(&self, cond: u32) -> impl Iterator<Item = ThreadId> + '_ {
        self.conds[cond as usize].iter().map(|&(t, _)| t)
    }

    pub fn cells(&self) -> &[i64] {
        &self.cells
    }

    /// Sets a cell outside any thread (the main thread before it starts the others).
    pub fn set(&mut self, cell: u32, value: i64) {
        self.cells[cell as usize] = value;
    }

    /// Every cell zero, every lock free and unwaited (a fresh process).
    pub fn reset(&mut self) {
        self.cells.iter_mut().for_each(|c| *c = 0);
        self.locks.iter_mut().for_each(|m| *m = Mutex::default());
        self.conds.iter_mut().for_each(VecDeque::clear);
    }

    /// Applies `access` by thread `t`, atomically. Locks are not re-entrant: a holder asking
    /// again waits on itself (a deadlock of one). Unlocking a lock one does not hold is a bug.
    pub fn apply(&mut self, t: ThreadId, access: Access) -> Applied {
        let now = |reply| Applied { reply: Some(reply), woken: vec![] };
        match access {
            Access::Read(c) => now(Reply::Value(self.cells[c as usize])),
            Access::Write(c, v) => {
                self.cells[c as usize] = v;
                now(Reply::Stored)
            }
            Access::Cas { cell, expect, new } => {
                let seen = self.cells[cell as usize];
                if seen == expect {
                    self.cells[cell as usize] = new;
                }
                now(Reply::Swapped(seen == expect, seen))
            }
            Access::FetchAdd(c, d) => {
                let before = self.cells[c as usize];
                self.cells[c as usize] = before + d;
                now(Reply::Value(before))
            }
            Access::Lock(l) | Access::TryLock(l) => {
                let m = &mut self.locks[l as usize];
                match (m.holder.is_none() && m.readers.is_empty(), access) {
                    (true, _) => {
                        m.holder = Some(t);
                        now(Reply::Locked)
                    }
                    (false, Access::TryLock(_)) => now(Reply::Busy),
                    (false, _) => {
                        m.waiters.push_back(t);
                        Applied { reply: None, woken: vec![] }
                    }
                }
            }
            Access::Shared { lock, defer } => {
                let m = &mut self.locks[lock as usize];
                let writer_waits = m.waiters.iter().any(|&w| m.shared(w).is_none());
                if m.holder.is_none() && !(defer && writer_waits) {
                    m.readers.push(t);
                    return now(Reply::Locked);
                }
                m.waiters.push_back(t);
                m.want_shared.push((t, defer));
                Applied { reply: None, woken: vec![] }
            }
            Access::Unlock(l) => {
                let m = &mut self.locks[l as usize];
                match m.readers.iter().position(|&r| r == t) {
                    Some(i) => _ = m.readers.remove(i),
                    None => {
                        assert_eq!(m.holder, Some(t), "thread {t} unlocked lock {l}, which it does not hold");
                        m.holder = None;
                    }
                }
                let woken = if m.readers.is_empty() { m.hand_over() } else { vec![] };
                Applied { reply: Some(Reply::Unlocked), woken }
            }
            Access::Wait { cond, lock } => {
                let m = &mut self.locks[lock as usize];
                assert_eq!(m.holder, Some(t), "thread {t} waited on condition {cond} without holding lock {lock}");
                m.holder = None;
                self.conds[cond as usize].push_back((t, lock));
                Applied { reply: None, woken: m.hand_over() }
            }
            Access::Notify { cond, all } => {
                let sleepers = &mut self.conds[cond as usize];
                let n = if all { sleepers.len() } else { sleepers.len().min(1) };
                let mut woken = vec![];
                for (w, lock) in sleepers.drain(..n) {
                    let m = &mut self.locks[lock as usize];
                    if m.holder.is_none() && m.readers.is_empty() {
                        m.holder = Some(w);
                        woken.push(w);
                    } else {
                        m.waiters.push_back(w);
                    }
                }
                Applied { reply: Some(Reply::Notified(n as u32)), woken }
            }
        }
    }

    /// The threads holding `lock`'s read side.
    pub fn readers(&self, lock: u32) -> &[ThreadId] {
        &self.locks[lock as usize].readers
    }

    pub fn holder(&self, lock: u32) -> Option<ThreadId> {
        self.locks[lock as usize].holder
    }

    /// Who waits for `lock`, oldest first.
    pub fn waiters(&self, lock: u32) -> impl Iterator<Item = ThreadId> + '_ {
        self.locks[lock as usize].waiters.iter().copied()
    }

    /// The lock `t` is parked on, if any.
    pub fn waiting_on(&self, t: ThreadId) -> Option<u32> {
        self.locks.iter().position(|m| m.waiters.contains(&t)).map(|l| l as u32)
    }

    /// The wait-for graph's edge from `t`: the holder of the lock it waits on (its writer, else
    /// its first reader).
    pub fn waits_for(&self, t: ThreadId) -> Option<ThreadId> {
        self.waiting_on(t).and_then(|l| self.holder(l).or(self.readers(l).first().copied()))
    }

    /// A deadlock: threads each waiting on a lock the next one holds, back to the first
    /// (starting from the lowest id in the cycle). Each thread waits on one lock at most, so
    /// walking the edges from any waiter either ends at a running thread or loops.
    pub fn deadlock(&self) -> Option<Vec<ThreadId>> {
        let mut waiting: Vec<ThreadId> = self.locks.iter().flat_map(|m| m.waiters.iter().copied()).collect();
        waiting.sort_unstable();
        for &start in &waiting {
            let mut path = vec![start];
            let mut at = start;
            while let Some(next) = self.waits_for(at) {
                if let Some(i) = path.iter().position(|&p| p == next) {
                    let mut cycle = path.split_off(i);
                    let low = (0..cycle.len()).min_by_key(|&j| cycle[j]).unwrap_or(0);
                    cycle.rotate_left(low);
                    return Some(cycle);
                }
                path.push(next);
                at = next;
            }
        }
        None
    }

    /// A thread that died: it waits no more (the locks it held stay held by a dead owner,
    /// as a plain mutex's do — robust mutexes are another design).
    pub fn forget(&mut self, t: ThreadId) {
        for m in &mut self.locks {
            m.waiters.retain(|&w| w != t);
            m.want_shared.retain(|&(w, _)| w != t);
        }
        self.conds.iter_mut().for_each(|c| c.retain(|&(w, _)| w != t));
    }
}

impl Memory {
    /// Applies `access` by `t` and answers through `ctx`: `t` at once, and a parked waiter an
    /// unlock handed its lock to (`Reply::Woken`). `answer` wraps a reply in the scenario's message.
    pub fn serve<N: Node>(&mut self, t: ThreadId, access: Access, ctx: &mut Ctx<N>, answer: impl Fn(Reply) -> N::Msg) {
        let applied = self.apply(t, access);
        if let Some(reply) = applied.reply {
            ctx.send(t, answer(reply));
        }
        for w in applied.woken {
            ctx.send(w, answer(Reply::Woken));
        }
    }

    /// The lock's holder and waiters marked on their threads' nodes (`name` names a thread), and
    /// a badge saying who holds it; a deadlock's cycle is marked and told in red.
    pub fn marks(&self, mut v: NodeView, lock: u32, name: impl Fn(ThreadId) -> String) -> NodeView {
        let cycle = self.deadlock().unwrap_or_default();
        if let Some(h) = self.holder(lock) {
            v = v.badge(format!("lock {lock}: {}", name(h)), Tone::Warn).mark(
                h,
                format!("holds lock {lock}"),
                Tone::Warn,
            );
            for w in self.waiters(lock) {
                let tone = if cycle.contains(&w) { Tone::Bad } else { Tone::Warn };
                v = v.mark(w, format!("waits for {}", name(h)), tone);
            }
        }
        let told: Vec<String> = cycle.iter().map(|&t| name(t)).collect();
        v.badge_if(!cycle.is_empty(), format!("deadlock: {}", told.join(" → ")), Tone::Bad)
    }
}

impl Memory {
    /// A deadlock's cycle in words, `name` naming threads and `lock_name` locks: "thread 1 holds
    /// account 2 and waits for account 4, held by thread 3; thread 3 holds account 4 and waits
    /// for account 2, held by thread 1".
    pub fn tell_cycle(
        &self,
        cycle: &[ThreadId],
        name: impl Fn(ThreadId) -> String,
        lock_name: impl Fn(u32) -> String,
    ) -> String {
        let holds = |t: ThreadId| -> Vec<String> {
            (0..self.locks.len() as u32).filter(|&l| self.holder(l) == Some(t)).map(&lock_name).collect()
        };
        let step = |&t: &ThreadId| {
            let (l, h) = (self.waiting_on(t).expect("in the cycle"), self.waits_for(t).expect("in the cycle"));
            format!("{} holds {} and waits for {}, held by {}", name(t), holds(t).join(", "), lock_name(l), name(h))
        };
        cycle.iter().map(step).collect::<Vec<_>>().join("; ")
    }

    /// Every held lock marked on its holder, and each waiter marked with what it waits for and
    /// whom; a deadlock's threads in red and its cycle told in a badge.
    pub fn all_marks(
        &self,
        mut v: NodeView,
        name: impl Fn(ThreadId) -> String,
        lock_name: impl Fn(u32) -> String,
    ) -> NodeView {
        let cycle = self.deadlock().unwrap_or_default();
        let tone = |t: ThreadId| if cycle.contains(&t) { Tone::Bad } else { Tone::Warn };
        for (l, m) in self.locks.iter().enumerate() {
            let lock = lock_name(l as u32);
            for &r in &m.readers {
                v = v.mark(r, format!("reads under {lock}"), Tone::Neutral);
            }
            let by = match m.holder {
                Some(h) => {
                    v = v.mark(h, format!("holds {lock}"), tone(h));
                    name(h)
                }
                None if m.readers.is_empty() => continue,
                None => numbered("reader", m.readers.len() as u64),
            };
            for &w in &m.waiters {
                v = v.mark(w, format!("waits for {lock} ({by})"), tone(w));
            }
        }
        let told = (!cycle.is_empty()).then(|| format!("deadlock: {}", self.tell_cycle(&cycle, &name, &lock_name)));
        v.badge_if(told.is_some(), told.unwrap_or_default(), Tone::Bad)
    }
}

impl Memory {
    /// Who holds `lock`, in words (`name` names a thread): "held by thread 2", "its read side
    /// held by thread 1, thread 3", or "free".
    pub fn held_by(&self, lock: u32, name: impl Fn(ThreadId) -> String) -> String {
        match (self.holder(lock), self.readers(lock)) {
            (Some(h), _) => format!("held by {}", name(h)),
            (None, []) => "free".into(),
            (None, rs) => {
                format!("its read side held by {}", rs.iter().map(|&r| name(r)).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// Each parked thread's wait for a lock, timed at memory from when its ask arrived, so that a
/// thread's own step and time slice before the ask are not counted as waiting.
#[derive(Clone, Debug, Default)]
pub struct Waits(BTreeMap<ThreadId, Time>);

impl Waits {
    /// After `access` by `t` was applied at `now`: a lock it asked for and did not get starts a
    /// wait; the waits of threads that hold their lock now end. The ended waits, with their
    /// lengths (a lock got at once is a wait of 0).
    pub fn after(&mut self, mem: &Memory, t: ThreadId, access: Access, now: Time) -> Vec<(ThreadId, Micros)> {
        if matches!(access, Access::Lock(_) | Access::Shared { .. }) {
            self.0.insert(t, now);
        }
        let ended: Vec<ThreadId> = self.0.keys().copied().filter(|&p| mem.waiting_on(p).is_none()).collect();
        ended.into_iter().map(|p| (p, now.since(self.0.remove(&p).unwrap_or(now)))).collect()
    }

    /// Of the threads `which` picks, the one waiting longest at `now`, and for how long.
    pub fn longest(&self, now: Time, which: impl Fn(ThreadId) -> bool) -> Option<(ThreadId, Micros)> {
        let waits = self.0.iter().filter(|(&t, _)| which(t)).map(|(&t, &since)| (t, now.since(since)));
        waits.max_by_key(|&(t, wait)| (wait, std::cmp::Reverse(t)))
    }
}

/// A critical section's locks, asked for in the order given and given back last taken first:
/// each with `Lock` (waiting for it), or — `try_later` — every one after the first with
/// `TryLock`, where a busy one makes the thread give back what it holds and try again after a
/// jittered backoff (no hold-and-wait, so no deadlock; without the backoff, livelock).
#[derive(Clone, Debug, Default)]
pub struct LockSet {
    want: Vec<u32>,
    pub held: Vec<u32>,
    try_later: bool,
    backing_off: bool,
    /// Tries given up so far, and the latest backoff (decorrelated jitter reads it).
    tries: u32,
    last_wait_us: Micros,
}

impl LockSet {
    pub fn new(want: Vec<u32>, try_later: bool) -> LockSet {
        LockSet { want, try_later, ..LockSet::default() }
    }

    /// The next lock to ask for, if any is not held yet.
    pub fn ask(&self) -> Option<Access> {
        let l = *self.want.get(self.held.len())?;
        Some(if self.try_later && !self.held.is_empty() { Access::TryLock(l) } else { Access::Lock(l) })
    }

    /// The answer to the lock asked for: true if it is held now; false if it was busy (give
    /// back what is held with [`LockSet::unlock`], then wait out [`LockSet::backoff`]). Only for
    /// an answer to the lock [`LockSet::ask`] named, the first not held: the caller checks that
    /// the access in flight was that lock (as `Cpu::answered` does), since another answer would
    /// be taken for it.
    pub fn answered(&mut self, reply: Reply) -> bool {
        let l = self.want[self.held.len()];
        match reply {
            Reply::Locked | Reply::Woken => self.held.push(l),
            _ => self.backing_off = true,
        }
        !self.backing_off
    }

    /// The next lock to give back, last taken first.
    pub fn unlock(&mut self) -> Option<Access> {
        self.held.pop().map(Access::Unlock)
    }

    /// Once everything is given back after a busy lock: the wait before asking again (full
    /// jitter from `base_us`, doubling up to 32×); `None` if it gave them back because it was done.
    pub fn backoff(&mut self, base_us: Micros, rng: &mut Rng) -> Option<Micros> {
        if !std::mem::take(&mut self.backing_off) {
            return None;
        }
        self.tries += 1;
        let policy = RetryPolicy::new(u32::MAX, base_us, 32 * base_us, Jitter::Full);
        self.last_wait_us = policy.delay_us(self.tries, self.last_wait_us, rng).unwrap_or(base_us);
        Some(self.last_wait_us)
    }
}

/// The parameters a threads scenario shares, read by [`Cpu::issue`] under these names.
pub const STEP_US: ParamSpec = ParamSpec::live(
    "step_us",
    "Step cost",
    "us",
    1..=10_000,
    200,
    "Mean time of one access to shared memory (exponential).",
);
pub const WAKE_US: ParamSpec = ParamSpec::live(
    "wake_us",
    "Wake-up",
    "us",
    0..=100_000,
    500,
    "A thread parked on a mutex takes this long to run once handed the lock (a context switch).",
)
.step(10);
pub const PREEMPT_PM: ParamSpec = ParamSpec::live(
    "preempt_pm",
    "Preemption chance",
    "‰",
    0..=1000,
    1,
    "Per step: the chance the thread is descheduled first.",
);
pub const SLICE_MS: ParamSpec =
    ParamSpec::live("slice_ms", "Time slice", "ms", 1..=1000, 10, "How long a preempted thread waits to run again.");

/// The faults a threads scenario shares, handled by [`Cpu::control`].
pub const DESCHEDULE: FaultSpec = FaultSpec::node(
    "deschedule",
    "Deschedule in the critical section",
    "At its next step inside its critical section (holding a lock, or between its read and its write), this thread \
     is descheduled for this long.",
)
.value("ms", 1..=60_000, 2000);
pub const STORM: FaultSpec = FaultSpec::global(
    "storm",
    "Preemption storm",
    "Every thread is preempted at this chance per step (0 ends the storm).",
)
.value("‰ of steps", 0..=1000, 30);

/// A thread's side of its steps: the access in flight, the wake-up it owes, the faults aimed at it.
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    pub doing: Option<Access>,
    /// How many locks the thread holds.
    pub held: u32,
    woken: bool,
    deschedule_ms: Option<i64>,
    storm_pm: Option<u32>,
}

impl Cpu {
    /// Takes the kit's faults (`DESCHEDULE`, `STORM`); false for anything else.
    pub fn control(&mut self, c: Control) -> bool {
        match c {
            Control::Custom { id: "deschedule", value } => self.deschedule_ms = Some(value),
            Control::Custom { id: "storm", value } => self.storm_pm = (value > 0).then_some(value as u32),
            _ => return false,
        }
        true
    }

    /// An answer came. False if it answers no access in flight — one sent before a crash, or a
    /// lock handed to a waiter that died (memory cannot tell): the caller ignores it. Otherwise
    /// nothing is in flight now, a lock may be held or given back, and a `Woken` thread pays its
    /// wake-up at its next step.
    pub fn answered(&mut self, reply: Reply) -> bool {
        let fits = matches!(
            (self.doing, reply),
            (Some(Access::Read(_) | Access::FetchAdd(..)), Reply::Value(_))
                | (Some(Access::Write(..)), Reply::Stored)
                | (Some(Access::Cas { .. }), Reply::Swapped(..))
                | (Some(Access::Lock(_) | Access::Shared { .. }), Reply::Locked | Reply::Woken)
                | (Some(Access::TryLock(_)), Reply::Locked | Reply::Busy)
                | (Some(Access::Unlock(_)), Reply::Unlocked)
                | (Some(Access::Wait { .. }), Reply::Woken)
                | (Some(Access::Notify { .. }), Reply::Notified(_))
        );
        if !fits {
            return false;
        }
        // A wait gave its lock back and holds it again: no change.
        match reply {
            Reply::Woken if matches!(self.doing, Some(Access::Wait { .. })) => {}
            Reply::Locked | Reply::Woken => self.held += 1,
            Reply::Unlocked => self.held -= 1,
            _ => {}
        }
        (self.doing, self.woken) = (None, reply == Reply::Woken);
        true
    }

    /// A fresh start (a crash, a new round): nothing in flight, no wake-up owed, no lock known
    /// (after a crash memory still has them, held by the dead); the faults aimed at it stay.
    pub fn reset(&mut self) {
        (self.doing, self.held, self.woken) = (None, 0, false);
    }

    /// A badge for the thread's node: the lock it holds or waits for, or the access in flight.
    pub fn badge(&self, v: NodeView) -> NodeView {
        match self.doing {
            Some(Access::Wait { cond, .. }) => v.badge(format!("sleeps on condition {cond}"), Tone::Neutral),
            _ if self.held > 0 => v.badge("holds a lock", Tone::Warn),
            Some(Access::Lock(l) | Access::Shared { lock: l, .. }) => {
                v.badge(format!("waits for lock {l}"), Tone::Warn)
            }
            Some(a) => v.badge(a.label(), Tone::Neutral),
            None => v,
        }
    }

    /// Sends `access` to `memory` after its step (a cost, a time slice first if preempted, a
    /// wake-up if owed); `inside` the critical section (or holding a lock), an armed deschedule
    /// strikes now.
    pub fn issue<N: Node>(&mut self, ctx: &mut Ctx<N>, memory: NodeId, access: Access, inside: bool, msg: N::Msg) {
        let preempt = Ppm::from_permille(self.storm_pm.unwrap_or(ctx.param("preempt_pm") as u32));
        let (step_us, wake_us) = (ctx.param("step_us") as Micros, ctx.param("wake_us") as Micros);
        let sched = Sched { step_us, preempt, slice_us: ctx.param_ms("slice_ms"), wake_us };
        let turn = sched.turn(ctx.rng(), std::mem::take(&mut self.woken));
        if turn.preempted {
            ctx.count("preemptions", 1);
        }
        if let Some(ms) = self.deschedule_ms.filter(|_| inside || self.held > 0) {
            self.deschedule_ms = None;
            ctx.note(format!("descheduled for {ms} ms before its {}", access.label()));
            ctx.inflict(Fault::Pause { node: ctx.me(), dur: ms as Micros * MICROS_PER_MS });
        }
        self.doing = Some(access);
        ctx.send_after(turn.delay_us, memory, msg);
    }
}

/// How one thread's next step is timed: its cost, a preemption before it, a wake-up after a
/// wait for a lock. Parameters, read afresh at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sched {
    /// Mean time of one access (exponential).
    pub step_us: Micros,
    /// The chance, at each step, that the thread is descheduled first for a time slice.
    pub preempt: Ppm,
    pub slice_us: Micros,
    /// A parked thread's wake-up once it is handed the lock: a context switch.
    pub wake_us: Micros,
}

/// When a thread's next access lands, from now, and whether it was preempted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    pub delay_us: Micros,
    pub preempted: bool,
}

impl Sched {
    /// The next step's timing; `woken` if the last answer was `Reply::Woken`.
    pub fn turn(&self, rng: &mut Rng, woken: bool) -> Turn {
        let preempted = rng.chance(self.preempt);
        let cost = rng.exponential(self.step_us as f64) as Micros;
        let delay_us = cost + if preempted { self.slice_us } else { 0 } + if woken { self.wake_us } else { 0 };
        Turn { delay_us, preempted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::interleaving::{cas_rates, lock_ceiling_per_s, no_lost_update_chance, sharded_cas_rates};

    #[test]
    fn each_access_is_applied_whole() {
        let mut m = Memory::new(2, 0);
        let mut go = |a| m.apply(7, a).reply;
        assert_eq!(go(Access::Write(1, 5)), Some(Reply::Stored));
        assert_eq!(go(Access::Read(1)), Some(Reply::Value(5)));
        assert_eq!(go(Access::Cas { cell: 1, expect: 4, new: 9 }), Some(Reply::Swapped(false, 5)));
        assert_eq!(go(Access::Cas { cell: 1, expect: 5, new: 9 }), Some(Reply::Swapped(true, 5)));
        assert_eq!(go(Access::FetchAdd(1, 3)), Some(Reply::Value(9)));
        assert_eq!(m.cells(), &[0, 12]);
        m.reset();
        assert_eq!(m.cells(), &[0, 0]);
    }

    #[test]
    fn an_unlock_hands_the_lock_to_the_oldest_waiter() {
        let mut m = Memory::new(0, 1);
        assert_eq!(m.apply(1, Access::Lock(0)).reply, Some(Reply::Locked));
        assert_eq!(m.apply(2, Access::Lock(0)), Applied { reply: None, woken: vec![] });
        assert_eq!(m.apply(3, Access::Lock(0)).reply, None);
        assert_eq!(m.apply(4, Access::TryLock(0)).reply, Some(Reply::Busy));
        assert_eq!((m.waiters(0).collect::<Vec<_>>(), m.waits_for(3), m.waiting_on(4)), (vec![2, 3], Some(1), None));
        assert_eq!(m.apply(1, Access::Unlock(0)), Applied { reply: Some(Reply::Unlocked), woken: vec![2] });
        assert_eq!((m.holder(0), m.waits_for(3)), (Some(2), Some(2)));
        assert_eq!(m.apply(2, Access::Unlock(0)).woken, vec![3]);
        assert_eq!(m.apply(3, Access::Unlock(0)).woken, vec![]);
        assert_eq!(m.apply(4, Access::TryLock(0)).reply, Some(Reply::Locked));
    }

    #[test]
    fn readers_share_a_lock_and_the_preference_decides_whether_a_waiting_writer_starves() {
        let (read, defer) = (Access::Shared { lock: 0, defer: false }, Access::Shared { lock: 0, defer: true });
        let mut m = Memory::new(0, 1);
        assert_eq!(m.apply(1, read).reply, Some(Reply::Locked));
        assert_eq!(m.apply(2, read).reply, Some(Reply::Locked));
        assert_eq!(m.apply(3, Access::Lock(0)).reply, None, "a writer waits for the readers");
        assert_eq!(m.apply(3, Access::TryLock(0)).reply, Some(Reply::Busy));
        assert_eq!(m.waits_for(3), Some(1));
        // Reader preference: a new reader walks past the waiting writer, and the read side never empties.
        assert_eq!(m.apply(4, read).reply, Some(Reply::Locked));
        assert_eq!(m.apply(1, Access::Unlock(0)).woken, vec![]);
        // Writer preference: a reader waits behind the writer, who enters once the readers are out.
        assert_eq!(m.apply(5, defer).reply, None);
        assert_eq!(m.apply(2, Access::Unlock(0)).woken, vec![]);
        assert_eq!(m.apply(4, Access::Unlock(0)).woken, vec![3]);
        assert_eq!(m.holder(0), Some(3));
        assert_eq!(m.apply(6, read).reply, None, "no reader beside a writer");
        // The writer out: the readers at the head of the queue enter together.
        assert_eq!(m.apply(3, Access::Unlock(0)).woken, vec![5, 6]);
        assert_eq!((m.readers(0), m.holder(0)), (&[5, 6][..], None));
        // Readers that queued behind a writer while it held: when it is out, all that do not
        // defer go in, even past a second writer; those that defer wait behind that writer.
        let mut m = Memory::new(0, 1);
        m.apply(1, Access::Lock(0));
        m.apply(2, read);
        m.apply(3, Access::Lock(0));
        m.apply(4, read);
        m.apply(5, defer);
        assert_eq!(m.apply(1, Access::Unlock(0)).woken, vec![2, 4]);
        assert_eq!(m.waiters(0).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(m.held_by(0, |t| format!("t{t}")), "its read side held by t2, t4");
    }

    #[test]
    fn a_condition_wait_gives_the_lock_back_and_a_notify_queues_the_sleeper_for_it() {
        let (wait, mut m) = (Access::Wait { cond: 0, lock: 0 }, Memory::new(0, 1).with_conds(2));
        m.apply(1, Access::Lock(0));
        m.apply(2, Access::Lock(0));
        // Thread 1 sleeps: its lock goes to thread 2, who was queued for it.
        assert_eq!(m.apply(1, wait), Applied { reply: None, woken: vec![2] });
        m.apply(4, Access::Lock(0));
        assert_eq!((m.holder(0), m.sleepers(0).collect::<Vec<_>>()), (Some(2), vec![1]));
        // A notify while the notifier holds the lock: the sleeper queues behind thread 4 (Mesa:
        // 4 takes the lock first and may take what 1 was woken for).
        let one = Access::Notify { cond: 0, all: false };
        assert_eq!(m.apply(2, one), Applied { reply: Some(Reply::Notified(1)), woken: vec![] });
        assert_eq!(m.waiters(0).collect::<Vec<_>>(), vec![4, 1]);
        assert_eq!(m.apply(2, Access::Unlock(0)).woken, vec![4]);
        assert_eq!(m.apply(4, Access::Unlock(0)).woken, vec![1], "woken, holding its lock again");
        assert_eq!(m.apply(9, Access::Notify { cond: 0, all: true }).reply, Some(Reply::Notified(0)), "nobody asleep");
        // notify_all wakes every sleeper; with the lock free, the first takes it at once.
        m.apply(1, Access::Wait { cond: 1, lock: 0 });
        m.apply(3, Access::Lock(0));
        m.apply(3, Access::Wait { cond: 1, lock: 0 });
        let all = m.apply(9, Access::Notify { cond: 1, all: true });
        assert_eq!(all, Applied { reply: Some(Reply::Notified(2)), woken: vec![1] });
        assert_eq!((m.holder(0), m.waiters(0).collect::<Vec<_>>()), (Some(1), vec![3]));
        m.reset();
        assert_eq!(m.sleepers(0).count() + m.sleepers(1).count(), 0);
        // The thread's side: a wait keeps its count of locks held; a notify is answered by its count.
        let mut cpu = Cpu { held: 1, doing: Some(wait), ..Cpu::default() };
        assert!(!cpu.answered(Reply::Locked) && cpu.answered(Reply::Woken) && cpu.held == 1);
        cpu.doing = Some(Access::Notify { cond: 0, all: false });
        assert!(cpu.answered(Reply::Notified(0)));
    }

    #[test]
    #[should_panic(expected = "without holding lock 0")]
    fn waiting_without_the_lock_is_a_bug() {
        Memory::new(0, 1).with_conds(1).apply(1, Access::Wait { cond: 0, lock: 0 });
    }

    #[test]
    fn a_wait_is_timed_from_the_ask_reaching_memory_to_the_lock_held() {
        let (mut m, mut w) = (Memory::new(0, 1), Waits::default());
        fn step(m: &mut Memory, w: &mut Waits, t: ThreadId, a: Access, at: u64) -> Vec<(ThreadId, Micros)> {
            m.apply(t, a);
            w.after(m, t, a, Time(at))
        }
        assert_eq!(step(&mut m, &mut w, 1, Access::Lock(0), 100), vec![(1, 0)], "got at once");
        assert_eq!(step(&mut m, &mut w, 2, Access::Lock(0), 150), vec![]);
        assert_eq!(step(&mut m, &mut w, 3, Access::Lock(0), 170), vec![]);
        assert_eq!(w.longest(Time(400), |_| true), Some((2, 250)));
        assert_eq!(w.longest(Time(400), |t| t == 3), Some((3, 230)));
        assert_eq!(step(&mut m, &mut w, 1, Access::Unlock(0), 500), vec![(2, 350)]);
        assert_eq!(m.held_by(0, |t| format!("t{t}")), "held by t2");
    }

    #[test]
    #[should_panic(expected = "does not hold")]
    fn unlocking_a_lock_one_does_not_hold_is_a_bug() {
        Memory::new(0, 1).apply(1, Access::Unlock(0));
    }

    #[test]
    fn a_cycle_of_waits_is_a_deadlock_and_a_chain_is_not() {
        // Threads 5 and 3 each hold one lock and ask for the other's (bank transfer's A→B, B→A).
        let mut m = Memory::new(0, 3);
        m.apply(5, Access::Lock(0));
        m.apply(3, Access::Lock(1));
        m.apply(9, Access::Lock(1));
        assert_eq!(m.deadlock(), None, "9 waits for 3, who runs");
        m.apply(5, Access::Lock(1));
        assert_eq!(m.deadlock(), None, "9 and 5 wait for 3, who runs");
        m.apply(3, Access::Lock(0));
        assert_eq!(m.deadlock(), Some(vec![3, 5]), "from the lowest id: 3 waits for 5, 5 for 3");
        // A dead waiter waits no more: the cycle is gone (its locks stay held).
        m.forget(3);
        assert_eq!((m.deadlock(), m.holder(1)), (None, Some(3)));
        // Locks are not re-entrant: asking again for one's own lock is a deadlock of one.
        m.apply(1, Access::Lock(2));
        m.apply(1, Access::Lock(2));
        assert_eq!(m.deadlock(), Some(vec![1]));
    }

    #[test]
    fn the_view_marks_holder_and_waiters_and_tells_a_deadlock() {
        let mut m = Memory::new(0, 2);
        m.apply(1, Access::Lock(0));
        m.apply(2, Access::Lock(1));
        m.apply(3, Access::Lock(0));
        let name = |t: ThreadId| format!("t{t}");
        let v = m.marks(NodeView::new(faultline_core::NodeKind::Store, 0, "memory"), 0, name);
        let marks: Vec<(NodeId, &str)> = v.marks.iter().map(|k| (k.node, k.text.as_str())).collect();
        assert_eq!(marks, vec![(1, "holds lock 0"), (3, "waits for t1")]);
        assert!(v.badges.iter().all(|b| !b.text.starts_with("deadlock")));
        m.apply(1, Access::Lock(1));
        m.apply(2, Access::Lock(0));
        let v = m.marks(NodeView::new(faultline_core::NodeKind::Store, 0, "memory"), 1, name);
        assert!(v.badges.iter().any(|b| b.text == "deadlock: t1 → t2" && b.tone == Tone::Bad), "{:?}", v.badges);
        assert!(v.marks.iter().any(|k| k.node == 1 && k.tone == Tone::Bad));
    }

    #[test]
    fn every_held_lock_is_marked_and_a_cycle_told_with_its_locks() {
        let mut m = Memory::new(0, 3);
        m.apply(1, Access::Lock(0));
        m.apply(2, Access::Lock(1));
        m.apply(1, Access::Lock(1));
        let (name, lock) = (|t: ThreadId| format!("t{t}"), |l: u32| format!("a{l}"));
        let view = |m: &Memory| m.all_marks(NodeView::new(faultline_core::NodeKind::Store, 0, "memory"), name, lock);
        let v = view(&m);
        let marks: Vec<(NodeId, &str, Tone)> = v.marks.iter().map(|k| (k.node, k.text.as_str(), k.tone)).collect();
        assert_eq!(
            marks,
            vec![(1, "holds a0", Tone::Warn), (2, "holds a1", Tone::Warn), (1, "waits for a1 (t2)", Tone::Warn)]
        );
        assert!(v.badges.is_empty());
        m.apply(2, Access::Lock(0));
        let cycle = m.deadlock().expect("t1 and t2 wait for each other");
        let told = "t1 holds a0 and waits for a1, held by t2; t2 holds a1 and waits for a0, held by t1";
        assert_eq!(m.tell_cycle(&cycle, name, lock), told);
        let v = view(&m);
        assert!(
            v.badges.iter().filter(|b| b.tone == Tone::Bad).count() == 1
                && v.badges[0].text == format!("deadlock: {told}")
        );
        assert!(v.marks.iter().all(|k| k.tone == Tone::Bad), "{:?}", v.marks);
    }

    #[test]
    fn a_lock_set_takes_its_locks_in_order_and_a_busy_try_gives_them_back() {
        let mut m = Memory::new(0, 3);
        let mut set = LockSet::new(vec![2, 0], true);
        let mut rng = Rng::new(1);
        assert_eq!(set.ask(), Some(Access::Lock(2)));
        assert!(set.answered(m.apply(1, Access::Lock(2)).reply.expect("free")));
        assert_eq!(set.ask(), Some(Access::TryLock(0)), "the later ones tried");
        m.apply(9, Access::Lock(0));
        assert!(!set.answered(m.apply(1, Access::TryLock(0)).reply.expect("busy")));
        assert_eq!((set.unlock(), set.unlock()), (Some(Access::Unlock(2)), None));
        let wait = set.backoff(100, &mut rng).expect("it gave them back for a busy lock");
        assert!(wait <= 100, "full jitter: U(0, base) the first time, {wait}");
        assert_eq!(set.backoff(100, &mut rng), None, "nothing busy since");
        assert_eq!(set.ask(), Some(Access::Lock(2)), "from the first again");
        let mut plain = LockSet::new(vec![0, 1], false);
        plain.held.push(0);
        assert_eq!(plain.ask(), Some(Access::Lock(1)));
    }

    #[test]
    fn a_cpu_takes_only_the_kits_faults() {
        let mut cpu = Cpu::default();
        assert!(cpu.control(Control::Custom { id: "storm", value: 40 }));
        assert!(cpu.control(Control::Custom { id: "deschedule", value: 5 }));
        assert!(!cpu.control(Control::Custom { id: "other", value: 1 }));
        assert_eq!((cpu.storm_pm, cpu.deschedule_ms), (Some(40), Some(5)));
        assert!(cpu.control(Control::Custom { id: "storm", value: 0 }));
        assert!(!cpu.answered(Reply::Woken), "no lock was asked for");
        cpu.doing = Some(Access::Lock(0));
        assert!(cpu.answered(Reply::Woken) && !cpu.answered(Reply::Woken), "one answer per access");
        assert!(cpu.woken && cpu.storm_pm.is_none() && cpu.held == 1);
        cpu.doing = Some(Access::Unlock(0));
        assert!(!cpu.answered(Reply::Stored) && cpu.answered(Reply::Unlocked));
        cpu.doing = Some(Access::TryLock(0));
        assert!(cpu.answered(Reply::Locked));
        assert!(!cpu.woken && cpu.held == 1);
        cpu.reset();
        assert!(!cpu.woken && cpu.deschedule_ms == Some(5) && cpu.doing.is_none() && cpu.held == 0);
    }

    #[test]
    fn a_turn_costs_a_step_a_slice_when_preempted_and_a_wake_up_after_a_wait() {
        // 200k turns: the share preempted is binomial (σ = 0.05% at 2%; ±0.3% is 6σ), and the
        // mean delay is 100 + 0.02 × 5000 + 300 µs (exponential steps truncated to whole µs,
        // which takes 0.5 µs off; ±2% is far beyond the sampling error of about 0.3%).
        let sched = Sched { step_us: 100, preempt: Ppm::from_permille(20), slice_us: 5_000, wake_us: 300 };
        let mut rng = Rng::new(3);
        let n = 200_000;
        let turns: Vec<Turn> = (0..n).map(|_| sched.turn(&mut rng, true)).collect();
        let share = turns.iter().filter(|t| t.preempted).count() as f64 / n as f64;
        assert!((share - 0.02).abs() < 0.003, "{share}");
        let mean = turns.iter().map(|t| t.delay_us as f64).sum::<f64>() / n as f64;
        assert!((mean - 499.5).abs() < 10.0, "{mean}");
        let plain = Sched { preempt: Ppm::NEVER, ..sched }.turn(&mut rng, false);
        assert!(!plain.preempted && plain.delay_us < 5_000);
    }

    #[test]
    fn the_cas_chain_matches_what_a_hand_solution_gives() {
        // One thread: read + CAS, never a retry. Two with no work: solving the five-state chain
        // by hand gives 0.8 successes per step time and half a retry per success.
        let one = cas_rates(1, 0.0, 100.0);
        assert!((one.successes_per_s - 5_000.0).abs() < 1e-6 && one.retries_per_s.abs() < 1e-9);
        let two = cas_rates(2, 0.0, 100.0);
        assert!((two.successes_per_s - 8_000.0).abs() < 1e-6, "{two:?}");
        assert!((two.retries_per_s - 4_000.0).abs() < 1e-6, "{two:?}");
        // Local work dilutes contention: with a long one the threads almost never collide.
        let calm = cas_rates(4, 1e6, 100.0);
        assert!(calm.retries_per_s / calm.successes_per_s < 0.001, "{calm:?}");
        // Under the uniform scheduler the system takes Θ(√n) steps per success (Alistarh et
        // al.), so retries per success keep growing with n, and more slowly than n.
        let per = |n| {
            let c = cas_rates(n, 0.0, 1.0);
            c.retries_per_s / c.successes_per_s
        };
        let (r4, r12) = (per(4), per(12));
        // Shards add up: four threads on two shards are two pairs.
        let (pairs, two) = (sharded_cas_rates(4, 2, 0.0, 100.0), cas_rates(2, 0.0, 100.0));
        assert!((pairs.retries_per_s - 2.0 * two.retries_per_s).abs() < 1e-6);
        assert!(per(2) < r4 && r4 < r12 && r12 < 3.0 * r4, "{r4} {r12}");
    }

    /// Runs `n` threads of CAS loops (no local work) against a `Memory`, each access landing
    /// after an exponential step: the event loop of the kernel, written small.
    fn simulate_cas(n: u32, steps: u64, seed: u64) -> (f64, f64) {
        let mut rng = Rng::new(seed);
        let mut mem = Memory::new(1, 0);
        let mut next: Vec<(f64, Access)> = (0..n).map(|_| (rng.exponential(1.0), Access::Read(0))).collect();
        let (mut ok, mut retries, mut now) = (0u64, 0u64, 0.0);
        for _ in 0..steps {
            let t = (0..n as usize).min_by(|&a, &b| next[a].0.total_cmp(&next[b].0)).unwrap_or(0);
            now = next[t].0;
            let following = match mem.apply(t as ThreadId, next[t].1).reply {
                Some(Reply::Value(v)) => Access::Cas { cell: 0, expect: v, new: v + 1 },
                Some(Reply::Swapped(true, _)) => {
                    ok += 1;
                    Access::Read(0)
                }
                Some(Reply::Swapped(false, seen)) => {
                    retries += 1;
                    Access::Cas { cell: 0, expect: seen, new: seen + 1 }
                }
                other => unreachable!("{other:?}"),
            };
            next[t] = (now + rng.exponential(1.0), following);
        }
        (ok as f64 / now, retries as f64 / now)
    }

    #[test]
    fn the_cas_chain_matches_the_memory_under_exponential_steps() {
        // 400k steps each: a rate's relative sampling error is about 0.3%; ±2% is wide of it,
        // and an off-by-one in the chain (say, a retry that reads again) moves it by 10% or more.
        for n in [2, 3, 6] {
            let (ok, retries) = simulate_cas(n, 400_000, n as u64);
            let want = cas_rates(n, 0.0, 1e6);
            let close = |got: f64, want: f64| (got - want).abs() <= 0.02 * want;
            assert!(close(ok, want.successes_per_s), "n = {n}: {ok} successes per unit, chain {want:?}");
            assert!(close(retries, want.retries_per_s), "n = {n}: {retries} retries per unit, chain {want:?}");
        }
    }

    #[test]
    fn no_lost_update_only_in_a_serial_order() {
        assert_eq!(no_lost_update_chance(1), 1.0);
        assert_eq!(no_lost_update_chance(2), 0.5);
        assert!((no_lost_update_chance(4) - 1.0 / 24.0).abs() < 1e-12);
        assert!((lock_ceiling_per_s(3, 100.0, 200.0) - 2_000.0).abs() < 1e-9);
    }
}
