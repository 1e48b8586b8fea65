//! A database's commit log as change-data-capture reads it: replication slots (each reader's confirmed position), a long poll parked until the next commit, batches read from a slot, entries read by age (an audit), and a reader's side (numbered pulls, the batch in hand, the position its next pull confirms).
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
//! age and confirms past them: an audit judging each entry once its grace has run out.
//!
//! The log is a [`Partition`] (slots are its consumer groups), so copies share its blocks.

use crate::parts::partition::{Offset, Partition, Record};
use faultline_core::{Micros, Time};

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

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

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
}
