//! A single owner of writes: jobs on keys (writes, and fills of a missing key) in one FIFO, run one at a time — store first, then cache — each step a call with a timeout.
//!
//! The single-writer pattern for caches: one process makes every change to the rows and to
//! their cached copies, so cache sets happen in the order the rows changed and no reader ever
//! sets a value it read earlier. A job is a write (write the row, then set its new version in
//! the cache) or a fill (read the row, then set it); the next job starts only when the cache
//! has acknowledged the set, because two sets in flight could be reordered by the network.
//! Fills of a key already queued are dropped (one is enough). A step not answered within the
//! timeout — the write's answer or the set's acknowledgement lost — is followed by a fill of
//! the same key: whatever became of the write, the row is read again and set as it is.
//!
//! The owner is a data structure: the scenario's node calls it and sends the [`Step`] it
//! returns as its own messages, carrying the step's call id, which answers echo.

use crate::parts::calls::{CallId, Calls};
use faultline_core::{Ctx, Micros, Node};
use std::collections::{BTreeSet, VecDeque};

/// What the owner asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<K> {
    /// Write a new version of the row.
    Write(K, CallId),
    /// Read the row.
    Read(K, CallId),
    /// Set this version of the row in the cache.
    Set(K, u64, CallId),
}

/// The owner's queue of jobs and its one call in flight.
#[derive(Clone, Debug)]
pub struct Owner<K> {
    /// (key, a write: else a fill).
    queue: VecDeque<(K, bool)>,
    fills: BTreeSet<K>,
    calls: Calls<K>,
    timeout_us: Micros,
}

impl<K: Ord + Clone> Owner<K> {
    /// An owner whose steps time out after `timeout_us`; call latencies go to the histogram `latency`.
    pub fn new(timeout_us: Micros, latency: &'static str) -> Owner<K> {
        Owner { queue: VecDeque::new(), fills: BTreeSet::new(), calls: Calls::new(latency), timeout_us }
    }

    /// A write of `key` is asked for: queued; the step to send if the owner was idle.
    pub fn write<N: Node>(&mut self, key: K, ctx: &mut Ctx<N>, timer: fn(CallId) -> N::Timer) -> Option<Step<K>> {
        self.queue.push_back((key, true));
        self.next_if_idle(ctx, timer)
    }

    /// A reader missed `key`: a fill is queued unless one is already.
    pub fn fill<N: Node>(&mut self, key: K, ctx: &mut Ctx<N>, timer: fn(CallId) -> N::Timer) -> Option<Step<K>> {
        if self.fills.insert(key.clone()) {
            self.queue.push_back((key, false));
        }
        self.next_if_idle(ctx, timer)
    }

    /// The row was written or read at `version` (an answer to `call`): set it in the cache.
    pub fn row<N: Node>(
        &mut self,
        call: CallId,
        version: u64,
        ctx: &mut Ctx<N>,
        timer: fn(CallId) -> N::Timer,
    ) -> Option<Step<K>> {
        let key = self.calls.reply(call, ctx)?;
        Some(Step::Set(key.clone(), version, self.calls.start(ctx, key, self.timeout_us, timer)))
    }

    /// The cache acknowledged the set of `call`: the job is done; the next one's first step.
    pub fn stored<N: Node>(
        &mut self,
        call: CallId,
        ctx: &mut Ctx<N>,
        timer: fn(CallId) -> N::Timer,
    ) -> Option<Step<K>> {
        self.calls.reply(call, ctx)?;
        self.next_if_idle(ctx, timer)
    }

    /// `call` timed out: read the row again (then set it).
    pub fn timed_out<N: Node>(
        &mut self,
        call: CallId,
        ctx: &mut Ctx<N>,
        timer: fn(CallId) -> N::Timer,
    ) -> Option<Step<K>> {
        let key = self.calls.timeout(call)?;
        Some(Step::Read(key.clone(), self.calls.start(ctx, key, self.timeout_us, timer)))
    }

    /// A crash: the queue and the call in flight are lost (their answers come back as late).
    pub fn crashed<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        (self.queue, self.fills) = Default::default();
        self.calls.clear(ctx);
    }

    /// Jobs waiting (the one running not included).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn next_if_idle<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: fn(CallId) -> N::Timer) -> Option<Step<K>> {
        if !self.calls.is_empty() {
            return None;
        }
        let (key, write) = self.queue.pop_front()?;
        if !write {
            self.fills.remove(&key);
        }
        let call = self.calls.start(ctx, key.clone(), self.timeout_us, timer);
        Some(if write { Step::Write(key, call) } else { Step::Read(key, call) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Label, NodeId, NodeKind, NodeView, Time};

    /// An owner and, on the same node, the store and cache it drives: each step answered
    /// 1 ms later, except every `drop_every`-th one (lost).
    #[derive(Clone, Debug)]
    struct Alone {
        owner: Owner<u32>,
        row: u64,
        cache: Vec<u64>,
        steps: u64,
        drop_every: u64,
    }

    #[derive(Clone, Debug, Label)]
    enum Msg {
        Answer(Step<u32>, u64),
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Job(u32),
        Call(CallId),
    }

    impl Alone {
        fn run(&mut self, step: Option<Step<u32>>, ctx: &mut Ctx<Self>) {
            let Some(step) = step else { return };
            self.steps += 1;
            let version = match step {
                Step::Write(..) => {
                    self.row += 1;
                    self.row
                }
                Step::Read(..) => self.row,
                Step::Set(_, v, _) => {
                    self.cache.push(v);
                    v
                }
            };
            if !self.steps.is_multiple_of(self.drop_every) {
                ctx.send_after(1_000, 0, Msg::Answer(step, version));
            }
        }
    }

    impl Node for Alone {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for i in 0..200 {
                ctx.set_timer(500 * i as u64, Timer::Job(i));
            }
        }
        fn on_message(&mut self, _: NodeId, Msg::Answer(step, version): Msg, ctx: &mut Ctx<Self>) {
            let next = match step {
                Step::Write(_, c) | Step::Read(_, c) => self.owner.row(c, version, ctx, Timer::Call),
                Step::Set(_, _, c) => self.owner.stored(c, ctx, Timer::Call),
            };
            self.run(next, ctx);
        }
        fn on_timer(&mut self, t: Timer, ctx: &mut Ctx<Self>) {
            let next = match t {
                Timer::Job(i) if i % 3 == 0 => self.owner.fill(0, ctx, Timer::Call),
                Timer::Job(_) => self.owner.write(0, ctx, Timer::Call),
                Timer::Call(c) => self.owner.timed_out(c, ctx, Timer::Call),
            };
            self.run(next, ctx);
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "owner")
        }
    }

    #[test]
    fn the_cache_follows_the_row_in_order_even_when_answers_are_lost() {
        // Jobs every 0.5 ms against 2 ms per job (write or read, then set): the queue grows, and
        // repeated fills of the key collapse. With every 7th step lost, timeouts re-read the row.
        for drop_every in [u64::MAX, 7] {
            let node = Alone { owner: Owner::new(10_000, "owner_us"), row: 0, cache: vec![], steps: 0, drop_every };
            let done = crate::parts::testing::run_alone(node, 1, Time::from_secs(5));
            assert_eq!(done.owner.queued(), 0);
            assert!(done.cache.windows(2).all(|w| w[0] <= w[1]), "sets in the order of the row: {:?}", done.cache);
            assert_eq!(done.cache.last(), Some(&done.row), "the cache ends with the row's version");
            if drop_every == u64::MAX {
                // 133 writes and at most 67 fills, but fewer: queued fills of one key collapse.
                assert_eq!(done.row, 133);
                assert!(done.cache.len() < 200, "{} sets", done.cache.len());
            }
        }
    }
}
