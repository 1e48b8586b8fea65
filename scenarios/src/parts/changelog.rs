//! A database's commit log as change-data-capture reads it: replication slots (each reader's confirmed position), a long poll parked until the next commit, batches read from a slot, entries read by age (an audit), and a reader's side (numbered pulls, the batch in hand, the position its next pull confirms) with its loop at a node ([`Reader`]).
//!
//! The model is Postgres's logical replication slots (and MySQL's binlog positions as
//! Debezium keeps them): every commit is appended to the log; each reader has a slot, the
//! position up to which it has *confirmed* the changes, and the database keeps the log from
//! the oldest slot's position on. A reader reads a batch from its slot's position, handles it
//! (publishes it, applies it, invalidates what it names) and confirms it with its next pull.
//! A reader that crashes after handling a batch and before confirming it reads that batch
//! again from the slot: every change is handled at least once, never skipped.
//!
//! A reader that finds nothing may sleep a poll interval, or *long poll*: its pull is parked
//! at the database ([`ChangeLog::park`]) and answered by the next commit. A commit then waits
//! for a polling reader half a cycle on average (the time from a random instant to the next
//! poll, the cycle being the interval plus a pull's round trip), and for a long-polling one
//! only the answer's trip. [`ChangeLog::aged`] reads from a slot the entries older than an
//! age and confirms past them: an audit judging each entry once its grace has run out
//! ([`ChangeLog::audit`] tallies them for a check).
//!
//! Between nodes, a pull and its answer are a [`Pull`], which the scenario carries in its own
//! message: the database answers with [`ChangeLog::serve`] (and [`ChangeLog::batch`] for the
//! long polls a commit wakes); the reader's node drives a [`Reader`]: pull, handle the batch
//! (its sink acknowledges it), pull again confirming it. A pull or a batch unanswered within
//! the reader's timeout is pulled again (a long poll is renewed after its own, longer time: an
//! answer lost, a database restarted), and the reader keeps one timer at a time.
//!
//! The log is a [`Partition`] (slots are its consumer groups), so copies share its blocks.

use crate::parts::partition::{Offset, Partition, Record};
use faultline_core::{Ctx, Micros, Node, Time, TimerId};

/// A pull and its answer between a reader and the database, carried in the scenario's own
/// messages (`Msg::Log(Pull<T>)`).
#[derive(Clone, Debug, PartialEq)]
pub enum Pull<T> {
    /// Pull `no` from a reader that has handled everything before `done` (if it says so);
    /// `wait`: a long poll.
    Ask { no: u64, wait: bool, done: Option<Offset> },
    /// The answer to pull `no`: up to a batch of changes with their commit times, and the
    /// position after them.
    Batch { no: u64, changes: Vec<(T, Time)>, next: Offset },
}

/// The commit log, its slots (numbered 0, 1, … as given to `new`) and each slot's parked pull.
#[derive(Clone, Debug)]
pub struct ChangeLog<T> {
    log: Partition<T>,
    parked: Vec<Option<u64>>,
}

impl<T: Clone> ChangeLog<T> {
    /// An empty log read through `slots` slots, each at position 0.
    pub fn new(slots: usize) -> ChangeLog<T> {
        ChangeLog { log: Partition::new(slots), parked: vec![None; slots] }
    }

    /// Appends a committed change at `at`; returns the parked pulls it wakes, `(slot, pull)`,
    /// each once: answer them now.
    pub fn commit(&mut self, change: T, at: Time) -> Vec<(usize, u64)> {
        self.log.append(change, at);
        self.parked.iter_mut().enumerate().filter_map(|(slot, p)| p.take().map(|no| (slot, no))).collect()
    }

    /// Slot `slot`'s reader has handled everything before `next`. Positions only move forward
    /// (a late, older confirmation changes nothing) and never past the end. Returns whether it moved.
    pub fn confirm(&mut self, slot: usize, next: Offset, at: Time) -> bool {
        self.log.commit(slot, next, at)
    }

    /// Up to `max` changes from the slot's position on, oldest first, with their commit times,
    /// and the position after them (what the reader confirms once it has handled them).
    pub fn read(&self, slot: usize, max: usize) -> (Vec<(T, Time)>, Offset) {
        let from = self.log.committed(slot);
        let changes: Vec<_> = self.log.read(from, max).into_iter().map(|(o, c)| (c, self.at(o))).collect();
        let next = from + changes.len() as Offset;
        (changes, next)
    }

    /// A long poll `pull` from the slot's reader: parked (true) when nothing follows the slot's
    /// position, to be woken by the next commit; false (answer it now) otherwise. A newer pull
    /// from the same slot takes the older one's place.
    pub fn park(&mut self, slot: usize, pull: u64) -> bool {
        let idle = self.log.lag(slot) == 0;
        if idle {
            self.parked[slot] = Some(pull);
        }
        idle
    }

    /// The slot's parked pull, if any.
    pub fn parked(&self, slot: usize) -> Option<u64> {
        self.parked[slot]
    }

    /// A database restart: the parked pulls were connections, and are gone (readers pull again).
    pub fn unpark_all(&mut self) {
        self.parked.iter_mut().for_each(|p| *p = None);
    }

    /// The changes committed at least `age_us` before `now`, from the slot's position on, in
    /// order; the slot is confirmed past them, so each is returned once.
    pub fn aged(&mut self, slot: usize, now: Time, age_us: Micros) -> Vec<T> {
        let from = self.log.committed(slot);
        let mut to = from;
        while self.log.get(to).is_some_and(|r| r.at.plus(age_us) <= now) {
            to += 1;
        }
        self.log.commit(slot, to, now);
        self.log.read(from, (to - from) as usize).into_iter().map(|(_, c)| c).collect()
    }

    /// Tallies under `name`, keyed by `key`, each change committed at least `age_us` ago that
    /// the audit reading through `slot` has not reported yet (true time: instrumentation).
    pub fn audit<N: Node>(
        &mut self,
        slot: usize,
        age_us: Micros,
        name: &'static str,
        key: impl Fn(&T) -> u64,
        ctx: &mut Ctx<N>,
    ) {
        for change in self.aged(slot, ctx.truth(), age_us) {
            ctx.tally(name, key(&change), 1);
        }
    }

    /// The database's side of a pull from `slot`'s reader: what it reports done is confirmed,
    /// then it is answered now (`Some`: up to `max` changes, maybe none) or, a long poll with
    /// nothing to read, parked (`None`) until a commit wakes it: answer that one with `batch`.
    pub fn serve(&mut self, slot: usize, ask: Pull<T>, max: usize, at: Time) -> Option<Pull<T>> {
        let Pull::Ask { no, wait, done } = ask else { panic!("the database answers pulls, not answers") };
        if let Some(next) = done {
            self.confirm(slot, next, at);
        }
        (!(wait && self.park(slot, no))).then(|| self.batch(slot, no, max))
    }

    /// The answer to pull `no` from `slot`'s reader: up to `max` changes from its position on.
    pub fn batch(&self, slot: usize, no: u64, max: usize) -> Pull<T> {
        let (changes, next) = self.read(slot, max);
        Pull::Batch { no, changes, next }
    }

    /// The slot's confirmed position: the first change its reader has not confirmed.
    pub fn position(&self, slot: usize) -> Offset {
        self.log.committed(slot)
    }

    /// Changes committed and not yet confirmed by the slot.
    pub fn lag(&self, slot: usize) -> u64 {
        self.log.lag(slot)
    }

    /// How many changes were ever committed (the log-end position).
    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn get(&self, at: Offset) -> Option<&Record<T>> {
        self.log.get(at)
    }

    fn at(&self, o: Offset) -> Time {
        self.log.get(o).expect("read").at
    }
}

/// A reader's side: its pulls, numbered so that late answers to given-up ones are told apart;
/// the batch in hand (`D`: what handling it finishes, such as the position after it); and what
/// its next pull confirms.
#[derive(Clone, Debug)]
pub struct Tail<D> {
    no: u64,
    working: Option<D>,
    done: Option<D>,
}

impl<D> Default for Tail<D> {
    fn default() -> Self {
        Tail { no: 0, working: None, done: None }
    }
}

impl<D> Tail<D> {
    /// A new pull: its number, past every earlier one, and what it confirms. A batch still in
    /// hand is given up (it will be read again).
    pub fn pull(&mut self) -> (u64, Option<D>) {
        (self.no, self.working) = (self.no + 1, None);
        (self.no, self.done.take())
    }

    /// The number of the latest pull (and of the batch it brought).
    pub fn no(&self) -> u64 {
        self.no
    }

    /// The answer to the latest pull: a batch to handle (`batch`), finished by `finish`; or
    /// nothing to handle, and `done` (a position moved past changes it skips) is confirmed by
    /// the next pull.
    pub fn answered(&mut self, batch: bool, done: D) {
        match batch {
            true => self.working = Some(done),
            false => self.done = Some(done),
        }
    }

    /// The batch in hand is handled: confirmed by the next pull. False if none was in hand.
    pub fn finish(&mut self) -> bool {
        let Some(d) = self.working.take() else { return false };
        self.done = Some(d);
        true
    }

    pub fn working(&self) -> Option<&D> {
        self.working.as_ref()
    }

    /// Pull `no` (or its batch) went unanswered: given up if it is the latest (returns whether);
    /// its batch will be read again, and answers to it are stale.
    pub fn give_up(&mut self, no: u64) -> bool {
        let latest = no == self.no;
        if latest {
            (self.no, self.working) = (self.no + 1, None);
        }
        latest
    }

    /// A crash: the batch in hand and the confirmation not yet sent were in memory. What they
    /// finished is read again from the slot: at least once.
    pub fn crash(&mut self) {
        (self.working, self.done) = (None, None);
    }
}

/// A reader's loop at its node — pull, handle the batch, pull again confirming it — with the
/// one timer it keeps: when it fires, the reader pulls (again). It is set for the pull's
/// answer (`timeout_us`; a long poll's: `renew_us`), for the batch's handling (`timeout_us`),
/// and, with nothing to handle, for the idle time before the next pull (a poll interval; 0 for
/// a long poller, whose next pull waits at the database). A fault can make it crash right
/// after handling a batch, before its next pull confirms it: the at-least-once window.
#[derive(Clone, Debug)]
pub struct Reader {
    tail: Tail<Offset>,
    timer: Option<TimerId>,
    handling: Option<usize>,
    timeout_us: Micros,
    renew_us: Micros,
    crashes_due: i64,
}

/// What the acknowledgement of a batch calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The batch in hand is handled: pull next, which confirms it.
    Next,
    /// It is handled, and a crash was due now, before the confirmation: crash (the batch will be
    /// read and handled again).
    Crash,
    /// Not the batch in hand (one pulled again since, or from before a crash): nothing to do.
    Stale,
}

impl Reader {
    pub fn new(timeout_us: Micros, renew_us: Micros) -> Reader {
        Reader { tail: Tail::default(), timer: None, handling: None, timeout_us, renew_us, crashes_due: 0 }
    }

    /// Schedules crashes: right after each of its next `n` batches is handled (a fault's plan,
    /// kept through the crashes).
    pub fn crash_after(&mut self, n: i64) {
        self.crashes_due = n;
    }

    /// Its next pull (a long poll if `wait`), confirming what it finished: send it to the database.
    pub fn pull<T, N: Node>(&mut self, ctx: &mut Ctx<N>, wait: bool, timer: N::Timer) -> Pull<T> {
        let (no, done) = self.tail.pull();
        self.handling = None;
        self.arm(ctx, if wait { self.renew_us } else { self.timeout_us }, timer);
        Pull::Ask { no, wait, done }
    }

    /// The database's answer: the changes `keep` keeps (those it handles, skipping the others)
    /// with the batch's number, if it answers the latest pull and keeps any — hand them to the
    /// sink and report its acknowledgement (`handled`). With none kept it pulls again, confirming
    /// the skip: at once if it skipped some (there may be more), else after `idle_us`. A stale
    /// answer (to a pull given up, or a copy) changes nothing: `None`.
    pub fn answered<T, N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        answer: Pull<T>,
        keep: impl Fn(&T) -> bool,
        idle_us: Micros,
        timer: N::Timer,
    ) -> Option<(u64, Vec<(T, Time)>)> {
        let Pull::Batch { no, mut changes, next } = answer else { panic!("a reader gets answers, not pulls") };
        if no != self.tail.no() || self.handling.is_some() {
            return None;
        }
        let read = changes.len();
        changes.retain(|c| keep(&c.0));
        self.tail.answered(!changes.is_empty(), next);
        if changes.is_empty() {
            self.arm(ctx, if read > 0 { 0 } else { idle_us }, timer);
            return None;
        }
        self.handling = Some(changes.len());
        self.arm(ctx, self.timeout_us, timer);
        Some((no, changes))
    }

    /// The sink acknowledged batch `no`.
    pub fn handled(&mut self, no: u64) -> Handled {
        if no != self.tail.no() || !self.tail.finish() {
            return Handled::Stale;
        }
        self.handling = None;
        if self.crashes_due > 0 {
            self.crashes_due -= 1;
            return Handled::Crash;
        }
        Handled::Next
    }

    /// How many changes the batch in hand has, if one is.
    pub fn handling(&self) -> Option<usize> {
        self.handling
    }

    /// A crash: the batch in hand and what it finished but did not confirm are read again (the
    /// kernel drops the timer).
    pub fn crash(&mut self) {
        self.tail.crash();
        (self.timer, self.handling) = (None, None);
    }

    fn arm<N: Node>(&mut self, ctx: &mut Ctx<N>, after: Micros, timer: N::Timer) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_timer(t);
        }
        self.timer = Some(ctx.set_timer(after, timer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Rng, Run};

    #[test]
    fn slots_read_from_their_position_and_confirm_forward() {
        let mut log = ChangeLog::new(2);
        assert!(log.is_empty() && log.park(0, 7), "nothing to read: parked");
        assert_eq!(log.parked(0), Some(7));
        // A commit wakes the parked pull, once.
        assert_eq!(log.commit('a', Time(10)), [(0, 7)]);
        assert_eq!(log.commit('b', Time(20)), []);
        log.commit('c', Time(30));
        assert!(!log.park(0, 8), "changes pending: answered at once");
        assert_eq!(log.read(0, 2), (vec![('a', Time(10)), ('b', Time(20))], 2));
        // Reading moves nothing: until confirmed, a crashed reader reads the same batch again.
        assert_eq!(log.read(0, 2).1, 2);
        assert!(log.confirm(0, 2, Time(40)));
        assert!(!log.confirm(0, 1, Time(41)), "a late, older confirmation");
        assert_eq!((log.position(0), log.lag(0), log.lag(1)), (2, 1, 3));
        assert_eq!(log.read(0, 100), (vec![('c', Time(30))], 3));
        assert!(log.confirm(0, 3, Time(50)) && log.park(0, 9));
        log.unpark_all();
        assert_eq!((log.parked(0), log.commit('d', Time(60))), (None, vec![]));
        assert_eq!((log.len(), log.get(3).map(|r| r.value)), (4, Some('d')));
    }

    #[test]
    fn an_audit_reads_each_entry_once_when_it_is_old_enough() {
        let mut log = ChangeLog::new(1);
        for (i, c) in "abcd".chars().enumerate() {
            log.commit(c, Time(100 * i as u64));
        }
        // Age 150 at 260: entries from 0 and 100 are due (0 + 150 ≤ 260, 100 + 150 ≤ 260).
        assert_eq!(log.aged(0, Time(260), 150), ['a', 'b']);
        assert_eq!(log.aged(0, Time(260), 150), [], "each once");
        assert_eq!(log.aged(0, Time(350), 150), ['c']);
        assert_eq!(log.aged(0, Time(1_000), 0), ['d']);
    }

    #[test]
    fn the_database_confirms_a_pull_then_answers_it_or_parks_a_long_poll() {
        let mut log = ChangeLog::new(1);
        log.commit('a', Time(1));
        let ask = |no, wait, done| Pull::Ask { no, wait, done };
        let batch = |no, changes: &[(char, u64)], next| Pull::Batch {
            no,
            changes: changes.iter().map(|&(c, at)| (c, Time(at))).collect(),
            next,
        };
        assert_eq!(log.serve(0, ask(1, false, None), 10, Time(2)), Some(batch(1, &[('a', 1)], 1)));
        // Confirmed by the next pull, which finds nothing: answered empty, or parked if it waits.
        assert_eq!(log.serve(0, ask(2, false, Some(1)), 10, Time(3)), Some(batch(2, &[], 1)));
        assert_eq!(log.serve(0, ask(3, true, None), 10, Time(4)), None);
        assert_eq!(log.commit('b', Time(5)), [(0, 3)], "the commit wakes it");
        assert_eq!(log.batch(0, 3, 10), batch(3, &[('b', 5)], 2));
    }

    #[test]
    fn a_reader_confirms_a_batch_with_its_next_pull_and_rereads_it_after_a_crash() {
        let mut log = ChangeLog::new(1);
        let mut tail: Tail<Offset> = Tail::default();
        for t in 0..5 {
            log.commit(t, Time(t));
        }
        let (no, done) = tail.pull();
        assert_eq!((no, done), (1, None));
        let (batch, next) = log.read(0, 3);
        tail.answered(!batch.is_empty(), next);
        assert!(tail.finish() && !tail.finish(), "one batch, finished once");
        let (no, done) = tail.pull();
        assert_eq!((no, done), (2, Some(3)));
        log.confirm(0, 3, Time(10));
        // The second batch is handled, then the reader crashes before its next pull confirms it.
        let (_, next) = log.read(0, 3);
        tail.answered(true, next);
        assert!(tail.finish());
        tail.crash();
        assert_eq!(tail.pull(), (3, None));
        assert_eq!(log.read(0, 3), (vec![(3, Time(3)), (4, Time(4))], 5), "read again: at least once");
        // A pull given up: its number is stale, its batch dropped.
        tail.answered(true, 5);
        assert!(!tail.give_up(2) && tail.give_up(3) && tail.working().is_none() && tail.no() == 4);
        tail.answered(false, 5);
        assert_eq!(tail.pull(), (5, Some(5)), "nothing to handle: the skip is confirmed");
    }

    /// Mean wait from a commit to the pull that reads it, over `n` Poisson commits at
    /// `lambda` per s: polling every `cycle_us` (a reader idle in between), or long polling
    /// with answers taking `trip_us`.
    fn mean_wait_us(lambda: f64, cycle_us: Option<u64>, trip_us: u64, n: usize, seed: u64) -> f64 {
        let mut rng = Rng::new(seed);
        let mut log = ChangeLog::new(1);
        let (mut now, mut total) = (0.0f64, 0.0);
        assert!(cycle_us.is_some() || log.park(0, 0));
        for i in 0..n {
            now += rng.exponential(1e6 / lambda);
            let woken = log.commit(i, Time(now as u64));
            let read_at = match cycle_us {
                // The next poll after the commit: polls at whole cycles.
                Some(c) => ((now as u64 / c) + 1) * c,
                None => {
                    assert_eq!(woken, [(0, i as u64)], "the parked pull is woken");
                    now as u64 + trip_us
                }
            };
            let (changes, next) = log.read(0, 10);
            total += read_at as f64 - changes[0].1 .0 as f64;
            log.confirm(0, next, Time(read_at));
            if cycle_us.is_none() {
                assert!(log.park(0, i as u64 + 1));
            }
        }
        total / n as f64
    }

    #[test]
    fn a_polling_reader_lags_half_a_cycle_and_a_long_poll_one_trip() {
        // A commit at a random instant (Poisson: PASTA) waits for the next poll U(0, cycle):
        // cycle / 2 on average. 20,000 commits: the mean of a uniform has a standard error of
        // cycle / √12 / √20000 = 0.2% of the cycle; ±2% is ten of them. Long polling, the
        // parked pull is answered by the commit itself: one trip, exactly.
        for seed in 1..=3 {
            let polled = mean_wait_us(100.0, Some(100_000), 0, 20_000, seed);
            assert!((polled - 50_000.0).abs() <= 1_000.0, "seed {seed}: {polled:.0} µs, cycle/2 = 50000");
            let parked = mean_wait_us(100.0, None, 700, 20_000, seed);
            assert!((parked - 700.0).abs() < 1.0, "seed {seed}: {parked:.0} µs");
        }
    }

    /// A database committing `n` changes 7 ms apart (1, 2, 3…) and a relay reading them
    /// through a [`Reader`], handling those it keeps (the even ones) at once.
    #[derive(Clone, Debug)]
    enum Loop {
        Db { log: ChangeLog<u32>, n: u32, drop_pulls: u32, twice: bool },
        Relay { reader: Reader, wait: bool, poll_us: Micros, handled: Vec<(u32, Time, Time)> },
    }

    #[derive(Clone, Debug, faultline_core::Label)]
    enum Wire {
        Log(Pull<u32>),
    }

    #[derive(Clone, Debug, faultline_core::Label)]
    enum Tick {
        Commit,
        Pull,
    }

    const DB: faultline_core::NodeId = 0;
    const RELAY: faultline_core::NodeId = 1;

    fn pull(reader: &mut Reader, wait: bool, ctx: &mut Ctx<Loop>) {
        let ask = reader.pull(ctx, wait, Tick::Pull);
        ctx.send(DB, Wire::Log(ask));
    }

    impl Node for Loop {
        type Msg = Wire;
        type Timer = Tick;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            match self {
                Loop::Db { .. } => _ = ctx.set_timer(7_000, Tick::Commit),
                Loop::Relay { reader, wait, .. } => pull(reader, *wait, ctx),
            }
        }
        fn on_message(&mut self, _: faultline_core::NodeId, Wire::Log(msg): Wire, ctx: &mut Ctx<Self>) {
            match self {
                // The first `drop_pulls` pulls go unanswered; `twice`: every answer comes twice.
                Loop::Db { drop_pulls, .. } if *drop_pulls > 0 => *drop_pulls -= 1,
                Loop::Db { log, twice, .. } => {
                    if let Some(answer) = log.serve(0, msg, 3, ctx.now()) {
                        (0..1 + *twice as u8).for_each(|_| ctx.send(RELAY, Wire::Log(answer.clone())));
                    }
                }
                Loop::Relay { reader, wait, poll_us, handled } => {
                    let Some((no, changes)) = reader.answered(ctx, msg, |c| c % 2 == 0, *poll_us, Tick::Pull) else {
                        return;
                    };
                    handled.extend(changes.into_iter().map(|(c, at)| (c, at, ctx.now())));
                    match reader.handled(no) {
                        Handled::Next => pull(reader, *wait, ctx),
                        Handled::Crash => ctx.crash(Some(50_000)),
                        Handled::Stale => unreachable!("the batch in hand"),
                    }
                }
            }
        }
        fn on_timer(&mut self, tick: Tick, ctx: &mut Ctx<Self>) {
            match (self, tick) {
                (Loop::Db { log, n, twice, .. }, Tick::Commit) => {
                    *n += 1;
                    for (slot, no) in log.commit(*n, ctx.now()) {
                        (0..1 + *twice as u8).for_each(|_| ctx.send(RELAY, Wire::Log(log.batch(slot, no, 3))));
                    }
                    ctx.set_timer(7_000, Tick::Commit);
                }
                (Loop::Relay { reader, wait, .. }, Tick::Pull) => pull(reader, *wait, ctx),
                (_, tick) => panic!("unexpected {tick:?}"),
            }
        }
        fn on_crash(&mut self, _: &mut Ctx<Self>) {
            if let Loop::Relay { reader, .. } = self {
                reader.crash();
            }
        }
        fn view(&self) -> faultline_core::NodeView {
            faultline_core::NodeView::new(faultline_core::NodeKind::Worker, 0, "node")
        }
    }

    /// Runs the loop for a second (a 1 ms link); returns the relay's handled changes, in order.
    fn run_loop(wait: bool, drop_pulls: u32, twice: bool, crashes: i64) -> Vec<(u32, Time, Time)> {
        static SPEC: faultline_core::ScenarioSpec = faultline_core::ScenarioSpec::bare("changelog-test", build);
        fn build(_: &faultline_core::Setup) -> Box<dyn faultline_core::Run> {
            unreachable!("built here")
        }
        let setup =
            faultline_core::Setup { spec: &SPEC, recipe: faultline_core::Recipe::new("changelog-test", "only", 1) };
        let mut sim = faultline_core::Sim::new(&setup, faultline_core::Link::constant(1_000));
        sim.keep_trace(false);
        sim.add_node(Loop::Db { log: ChangeLog::new(1), n: 0, drop_pulls, twice });
        let mut reader = Reader::new(30_000, 300_000);
        reader.crash_after(crashes);
        sim.add_node(Loop::Relay { reader, wait, poll_us: 20_000, handled: Vec::new() });
        sim.run_until(Time::from_secs(1), u64::MAX);
        match &sim.nodes()[RELAY as usize] {
            Loop::Relay { handled, .. } => handled.clone(),
            Loop::Db { .. } => unreachable!(),
        }
    }

    #[test]
    fn a_reader_handles_each_change_it_keeps_at_least_once() {
        // 142 commits in a second (7 ms apart), the even ones kept: those committed by 938 ms
        // (2, 4, …, 134) are handled each once, in order, whatever the way the reader pulls and
        // whatever the answers' copies.
        let evens: Vec<u32> = (1..=67).map(|i| 2 * i).collect();
        let kept = |got: &[(u32, Time, Time)]| got.iter().map(|h| h.0).filter(|&c| c <= 134).collect::<Vec<_>>();
        for (wait, twice) in [(false, false), (true, false), (false, true), (true, true)] {
            let got = run_loop(wait, 0, twice, 0);
            assert_eq!(kept(&got), evens, "wait {wait}, twice {twice}");
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "once each: {got:?}");
            // Long polling, a commit is handled one trip after it (the parked pull's answer); a
            // reader polling every 20 ms waits up to a cycle (20 ms and a round trip) for it.
            let worst = got.iter().map(|&(_, at, seen)| seen.since(at)).max().expect("handled");
            assert!(if wait { worst == 1_000 } else { worst <= 22_000 && worst > 10_000 }, "{worst} µs");
        }
        // Pulls unanswered are pulled again after the timeout (30 ms, or 300 ms for a long poll):
        // nothing is skipped.
        for wait in [false, true] {
            assert_eq!(kept(&run_loop(wait, 2, false, 0)), evens, "wait {wait}");
        }
        // A crash after handling a batch, before the next pull confirms it: the batch (of up to
        // three changes, one or two kept) is handled again after the restart, and nothing else is.
        let got = kept(&run_loop(false, 0, false, 1));
        let mut once = got.clone();
        once.dedup();
        assert!((1..=2).contains(&(got.len() - evens.len())) && once == evens, "{got:?}");
        assert!(got.windows(2).all(|w| w[0] <= w[1]), "{got:?}");
    }
}
