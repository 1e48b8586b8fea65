//! Two-phase commit's bookkeeping: a coordinator's rounds (votes, decision, acknowledgements, forced commit log, what it may answer an in-doubt participant) and a resource manager's row locks, in-doubt transactions and outcomes.
//!
//! The rules are Gray's (1978) and Bernstein, Hadzilacos & Goodman's (ch. 7): one no vote
//! decides abort, all yes votes commit; a participant that voted yes is in doubt and may not
//! decide alone. Presumed abort (Mohan, Lindsay & Obermarck, 1986): the commit record is
//! forced before any participant hears "commit" and ended once all acknowledge; an abort is
//! neither logged nor acknowledged, so a coordinator with no record of a transaction answers
//! abort. Without the log, a coordinator that forgot a transaction can say nothing safe.

use crate::parts::calls::CallId;
use crate::parts::table::KeyTable;
use crate::parts::writeback::GroupCommit;
use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// Participants are numbered from 1; bit p − 1 of a set stands for participant p.
fn bit(p: u32) -> u32 {
    1 << (p - 1)
}

/// Where a coordinator's transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Collecting votes: the participants that said yes.
    Voting(u32),
    /// Commit decided, its record being forced: nobody may hear it yet.
    Forcing,
    /// Decided (true: commit) and being told to the participants.
    Deciding(bool),
}

/// One transaction at the coordinator.
#[derive(Clone, Debug)]
pub struct Round {
    pub phase: Phase,
    /// Participants that have not acknowledged the decision.
    pub waiting: u32,
    /// The call in flight: the vote timeout, then the resend timeout.
    pub call: CallId,
}

/// What a coordinator can tell a participant that asks about a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Decided(bool),
    /// Still voting, or forcing the commit record: ask again.
    Pending,
    /// No record, under presumed abort: it cannot have committed.
    Presumed,
    /// Forgotten (no log): it may have committed somewhere, so nothing is safe to say.
    Unknown,
}

impl Answer {
    /// The outcome to tell the participant, if there is one it may be told.
    pub fn tells(self) -> Option<bool> {
        match self {
            Answer::Decided(commit) => Some(commit),
            Answer::Presumed => Some(false),
            Answer::Pending | Answer::Unknown => None,
        }
    }
}

/// A coordinator's transactions in memory, and its durable log of commit records.
#[derive(Clone, Debug)]
pub struct Coordinator {
    n: u32,
    /// Durable: ids are never reused across restarts (a real one puts its epoch in the id).
    next_tx: u64,
    rounds: BTreeMap<u64, Round>,
    /// Durable: commit records forced and not yet ended.
    log: KeyTable<()>,
    /// Commit records being forced (appends during an fsync share the next one).
    forcing: GroupCommit<u64>,
    presume: bool,
    /// Only transactions begun under presumed abort (ids from here) may be presumed aborted:
    /// one begun before may have committed without a record.
    presume_from: u64,
}

impl Coordinator {
    /// A coordinator of `n` participants, presuming abort or not.
    pub fn new(n: u32, presume: bool) -> Coordinator {
        Coordinator {
            n,
            next_tx: 1,
            rounds: BTreeMap::new(),
            log: KeyTable::default(),
            forcing: GroupCommit::default(),
            presume,
            presume_from: 1,
        }
    }
    fn all(&self) -> u32 {
        (1 << self.n) - 1
    }
    pub fn participants(&self) -> u32 {
        self.n
    }
    /// Whether it logs commits and presumes abort (switched live: only later transactions are presumed).
    pub fn set_presume(&mut self, on: bool) {
        if on && !self.presume {
            self.presume_from = self.next_tx;
        }
        self.presume = on;
    }
    pub fn presumes(&self) -> bool {
        self.presume
    }
    /// Under presumed abort, the first transaction it may presume aborted (begun under it).
    pub fn presumes_from(&self) -> Option<u64> {
        self.presume.then_some(self.presume_from)
    }
    /// The id the next transaction will get.
    pub fn next_tx(&self) -> u64 {
        self.next_tx
    }
    /// A new transaction, collecting votes under `call`: its id.
    pub fn begin(&mut self, call: CallId) -> u64 {
        let tx = self.next_tx;
        self.next_tx += 1;
        self.rounds.insert(tx, Round { phase: Phase::Voting(0), waiting: self.all(), call });
        tx
    }
    pub fn round(&self, tx: u64) -> Option<&Round> {
        self.rounds.get(&tx)
    }
    /// Participant `p` voted: the decision if this vote makes it (a no, or the last yes), with
    /// the vote call to end. A late vote (decided already, or forgotten) decides nothing.
    pub fn vote(&mut self, tx: u64, p: u32, yes: bool) -> Option<(bool, CallId)> {
        let all = self.all();
        let r = self.rounds.get_mut(&tx)?;
        let Phase::Voting(got) = r.phase else { return None };
        let got = got | bit(p);
        let decided = (!yes || got == all).then_some(yes);
        r.phase = decided.map_or(Phase::Voting(got), Phase::Deciding);
        decided.map(|d| (d, r.call))
    }
    /// Decides `commit` for a transaction still voting (a vote timeout: abort).
    pub fn decide(&mut self, tx: u64, commit: bool) {
        if let Some(r) = self.rounds.get_mut(&tx) {
            r.phase = Phase::Deciding(commit);
        }
    }
    /// `Some` if a commit must be forced to the log before it is sent (it now waits for that),
    /// with whether an fsync starts now (the caller times it); `None`: send it now.
    pub fn force(&mut self, tx: u64) -> Option<bool> {
        let r = self.rounds.get_mut(&tx).filter(|r| r.phase == Phase::Deciding(true) && self.presume)?;
        r.phase = Phase::Forcing;
        Some(self.forcing.append(tx))
    }
    /// The fsync ended: the commits now durable (to be sent), and whether another fsync starts.
    pub fn synced(&mut self) -> (Vec<u64>, bool) {
        let (done, again) = self.forcing.synced();
        for &tx in &done {
            self.log.insert(tx, ());
            self.decide(tx, true);
        }
        (done, again)
    }
    /// The decision and who must still hear it. An abort under presumed abort is sent once and
    /// forgotten (`None` call needed): whoever misses it asks and is told abort.
    pub fn to_tell(&mut self, tx: u64) -> Option<(bool, Vec<u32>, bool)> {
        let r = self.rounds.get(&tx)?;
        let Phase::Deciding(commit) = r.phase else { return None };
        let to = (1..=self.n).filter(|&p| r.waiting & bit(p) != 0).collect();
        let forget = !commit && self.presume;
        if forget {
            self.rounds.remove(&tx);
        }
        Some((commit, to, !forget))
    }
    pub fn set_call(&mut self, tx: u64, call: CallId) {
        if let Some(r) = self.rounds.get_mut(&tx) {
            r.call = call;
        }
    }
    /// `p` acknowledged the decision: the call to end once all have (the round and its record end).
    pub fn ack(&mut self, tx: u64, p: u32) -> Option<CallId> {
        let r = self.rounds.get_mut(&tx).filter(|r| matches!(r.phase, Phase::Deciding(_)))?;
        r.waiting &= !bit(p);
        if r.waiting != 0 {
            return None;
        }
        let call = r.call;
        self.rounds.remove(&tx);
        // The end record: not forced, it only lets the log be trimmed.
        self.log.remove(tx);
        Some(call)
    }
    pub fn answer(&self, tx: u64) -> Answer {
        match self.rounds.get(&tx).map(|r| r.phase) {
            Some(Phase::Deciding(commit)) => Answer::Decided(commit),
            Some(_) => Answer::Pending,
            None if self.log.contains_key(tx) => Answer::Decided(true),
            None if self.presume && tx >= self.presume_from => Answer::Presumed,
            None => Answer::Unknown,
        }
    }
    /// Memory is gone (with a commit record not yet synced); the log and the id counter stay.
    pub fn crash(&mut self) {
        self.rounds.clear();
        self.forcing.crash();
    }
    /// After a restart: every commit logged and not ended is decided again, to be told to all.
    pub fn recover(&mut self) -> Vec<u64> {
        let logged: Vec<u64> = self.log.iter().map(|(tx, _)| tx).collect();
        for &tx in &logged {
            self.rounds.insert(tx, Round { phase: Phase::Deciding(true), waiting: self.all(), call: CallId(0) });
        }
        logged
    }
    pub fn in_flight(&self) -> usize {
        self.rounds.len()
    }
    pub fn logged(&self) -> usize {
        self.log.len()
    }
}

/// A transaction a participant voted yes on and has not heard the outcome of.
#[derive(Clone, Debug)]
pub struct Doubt {
    pub row: u32,
    /// When it voted yes (its clock) and in true time (for checks).
    pub since: Time,
    pub since_truth: Time,
    /// Up to when its blocked time has been counted.
    pub counted: Time,
}

/// What a prepare finds at a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepare {
    /// Decided, in doubt or being prepared already: nothing to do.
    Known,
    /// Refused, or the row is locked by another transaction (no-wait locking): vote no.
    No,
    /// Locked for it: force the prepare record, then vote yes; whether an fsync starts now.
    Locked(bool),
}

/// What an in-doubt participant does when its timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// No longer in doubt.
    Gone,
    /// Ask the coordinator, and wake again after `next`; `blocked`: time blocked since last counted.
    Ask { blocked: Micros, next: Micros },
    /// Timed out: abort alone (the unsafe strategy).
    GiveUp { blocked: Micros },
}

/// A resource manager: row locks, transactions in doubt, and every outcome decided here.
/// Locks of prepared transactions, the doubts and the outcomes are durable (forced records).
#[derive(Clone, Debug, Default)]
pub struct Participant {
    locks: BTreeMap<u32, u64>,
    in_doubt: BTreeMap<u64, Doubt>,
    preparing: GroupCommit<u64>,
    outcomes: KeyTable<bool>,
    /// The latest outcome decided here, with its true time.
    last: Option<(u64, bool, Time)>,
}

impl Participant {
    /// A prepare of `tx` on `row`; `refuse`: the participant votes no whatever the lock.
    pub fn prepare(&mut self, tx: u64, row: u32, refuse: bool) -> Prepare {
        if self.outcomes.contains_key(tx) || self.in_doubt.contains_key(&tx) || self.locks.values().any(|&t| t == tx) {
            Prepare::Known
        } else if refuse || self.locks.contains_key(&row) {
            Prepare::No
        } else {
            self.locks.insert(row, tx);
            Prepare::Locked(self.preparing.append(tx))
        }
    }
    /// The fsync ended: the transactions in doubt from now (to vote yes; not those aborted
    /// meanwhile), and whether another fsync starts.
    pub fn synced(&mut self, since: Time, since_truth: Time) -> (Vec<u64>, bool) {
        let (mut done, again) = self.preparing.synced();
        done.retain(|&tx| {
            let Some((&row, _)) = self.locks.iter().find(|&(_, &t)| t == tx) else { return false };
            self.in_doubt.insert(tx, Doubt { row, since, since_truth, counted: since });
            true
        });
        (done, again)
    }
    /// The wait until an in-doubt participant's next ask — or, with `give_up` (a timeout after
    /// the vote), until the timeout if that comes first.
    pub fn next_wake(waited: Micros, ask: Micros, give_up: Option<Micros>) -> Micros {
        ask.min(give_up.map_or(Micros::MAX, |g| g.saturating_sub(waited).max(1)))
    }
    /// The timer of `tx` fired at `now`: ask again or, past `give_up`, abort alone.
    pub fn wake(&mut self, tx: u64, now: Time, ask: Micros, give_up: Option<Micros>) -> Wake {
        let Some(d) = self.in_doubt.get_mut(&tx) else { return Wake::Gone };
        let (blocked, waited) = (now.since(d.counted), now.since(d.since));
        d.counted = now;
        match give_up {
            Some(g) if waited >= g => Wake::GiveUp { blocked },
            _ => Wake::Ask { blocked, next: Self::next_wake(waited, ask, give_up) },
        }
    }
    /// Decides `tx` here (told, refused at prepare, or alone): releases its row; the doubt it ends.
    pub fn decide(&mut self, tx: u64, commit: bool, truth: Time) -> Option<Doubt> {
        self.locks.retain(|_, t| *t != tx);
        self.outcomes.insert(tx, commit);
        self.last = Some((tx, commit, truth));
        self.in_doubt.remove(&tx)
    }
    pub fn doubt_mut(&mut self, tx: u64) -> Option<&mut Doubt> {
        self.in_doubt.get_mut(&tx)
    }
    pub fn in_doubt(&self) -> impl Iterator<Item = (u64, &Doubt)> + '_ {
        self.in_doubt.iter().map(|(&tx, d)| (tx, d))
    }
    /// The longest in doubt among transactions numbered `from` or more.
    pub fn oldest(&self, from: u64) -> Option<(u64, &Doubt)> {
        self.in_doubt().filter(|&(tx, _)| tx >= from).min_by_key(|(_, d)| d.since_truth)
    }
    pub fn outcome(&self, tx: u64) -> Option<bool> {
        self.outcomes.get(tx).copied()
    }
    pub fn last(&self) -> Option<(u64, bool, Time)> {
        self.last
    }
    pub fn locked(&self) -> usize {
        self.locks.len()
    }
    /// A crash: a prepare not yet forced never happened, so its lock goes.
    pub fn crash(&mut self) {
        self.preparing.crash();
        let doubt = &self.in_doubt;
        self.locks.retain(|_, tx| doubt.contains_key(tx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_no_aborts_and_all_yes_commit() {
        let mut c = Coordinator::new(3, false);
        let (a, b) = (c.begin(CallId(1)), c.begin(CallId(2)));
        assert_eq!((c.vote(a, 1, true), c.vote(a, 2, false)), (None, Some((false, CallId(1)))));
        assert_eq!(c.vote(a, 3, true), None, "a late vote decides nothing");
        assert_eq!([c.vote(b, 1, true), c.vote(b, 3, true), c.vote(b, 2, true)], [None, None, Some((true, CallId(2)))]);
    }

    #[test]
    fn without_a_log_a_forgotten_transaction_has_no_safe_answer() {
        let mut c = Coordinator::new(2, false);
        let tx = c.begin(CallId(1));
        c.vote(tx, 1, true);
        c.vote(tx, 2, true);
        assert_eq!(c.force(tx), None);
        assert_eq!(c.to_tell(tx), Some((true, vec![1, 2], true)));
        assert_eq!(c.answer(tx), Answer::Decided(true));
        c.crash();
        assert_eq!((c.answer(tx), c.recover()), (Answer::Unknown, vec![]));
    }

    #[test]
    fn presumed_abort_forces_commits_and_answers_abort_without_a_record() {
        let mut c = Coordinator::new(2, true);
        let (a, b) = (c.begin(CallId(1)), c.begin(CallId(2)));
        c.vote(a, 1, true);
        c.vote(a, 2, true);
        assert_eq!(c.force(a), Some(true), "an fsync starts");
        assert_eq!((c.to_tell(a), c.answer(a)), (None, Answer::Pending), "nobody hears a commit before its record");
        assert_eq!(c.synced(), (vec![a], false));
        assert_eq!(c.vote(b, 2, false), Some((false, CallId(2))));
        // The abort is sent once, forgotten, and never acknowledged.
        assert_eq!(c.to_tell(b), Some((false, vec![1, 2], false)));
        assert_eq!((c.answer(b), c.answer(b).tells()), (Answer::Presumed, Some(false)));
        c.crash();
        assert_eq!((c.recover(), c.answer(a)), (vec![a], Answer::Decided(true)));
        assert_eq!((c.ack(a, 1), c.ack(a, 2)), (None, Some(CallId(0))));
        assert_eq!((c.logged(), c.answer(a)), (0, Answer::Presumed), "ended: a late ask finds no record");
    }

    #[test]
    fn a_switch_to_presumed_abort_presumes_only_later_transactions() {
        let mut c = Coordinator::new(1, false);
        let old = c.begin(CallId(1));
        c.set_presume(true);
        let new = c.begin(CallId(2));
        c.crash();
        assert_eq!((c.answer(old), c.answer(new)), (Answer::Unknown, Answer::Presumed));
        assert_eq!(c.presumes_from(), Some(new));
    }

    #[test]
    fn a_participant_locks_doubts_and_keeps_prepared_locks_through_a_crash() {
        let mut p = Participant::default();
        let prepares = (p.prepare(1, 7, false), p.prepare(2, 7, false), p.prepare(1, 7, false));
        assert_eq!(prepares, (Prepare::Locked(true), Prepare::No, Prepare::Known));
        assert_eq!((p.prepare(4, 9, true), p.locked()), (Prepare::No, 1), "a refusal locks nothing");
        assert_eq!(p.prepare(3, 8, false), Prepare::Locked(false), "it shares the next fsync");
        assert_eq!(p.synced(Time(5), Time(5)), (vec![1], true));
        p.crash();
        assert_eq!((p.locked(), p.synced(Time(6), Time(6))), (1, (vec![], false)), "3 was not prepared yet");
        assert_eq!(p.decide(1, true, Time(9)).map(|d| d.row), Some(7));
        assert_eq!((p.locked(), p.outcome(1), p.last()), (0, Some(true), Some((1, true, Time(9)))));
    }

    #[test]
    fn an_in_doubt_participant_asks_until_told_or_timing_out_gives_up() {
        let mut p = Participant::default();
        p.prepare(1, 7, false);
        p.synced(Time(0), Time(0));
        let (ask, give_up) = (250, Some(1000));
        assert_eq!(p.wake(1, Time(250), ask, None), Wake::Ask { blocked: 250, next: 250 }, "waits for good");
        assert_eq!(p.wake(1, Time(900), ask, give_up), Wake::Ask { blocked: 650, next: 100 });
        assert_eq!(p.wake(1, Time(1000), ask, give_up), Wake::GiveUp { blocked: 100 });
        p.decide(1, false, Time(1000));
        assert_eq!(p.wake(1, Time(1100), ask, give_up), Wake::Gone);
    }
}
