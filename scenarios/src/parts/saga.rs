//! Sagas (Garcia-Molina and Salem, 1987): steps done in order and, once one fails, the compensations of those done run in reverse — an orchestrator's durable log of each saga's progress, and a participant's per-key record that makes a step and its compensation idempotent.
//!
//! The log holds, per saga, the action awaited: step `s` going forward, the compensation of
//! step `s` going back. A step that fails ends the saga at once (`Recovery::None`: what was
//! done stays done), or turns it back through the steps known done (`KnownDone`) or through
//! the failed step too (`AlsoUncertain`: a step that timed out may have been done, and its
//! compensation is harmless if not). A compensation that fails for good gives the saga up.
//! The participant's record per key answers a repeated step with its first outcome, reverses
//! a step at most once under the key (without the key, every undo reverses again: a refund
//! without its charge), and leaves a tombstone when an undo comes before its step, so that
//! the late step is refused rather than done after its compensation.

use crate::parts::calls::{CallId, Calls};
use crate::parts::retried::{Ended, Retried};
use crate::parts::retry::{RetryBudget, RetryPolicy};
use crate::parts::table::KeyTable;
use faultline_core::{Ctx, Micros, Node, Time};

/// How a saga ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Completed,
    Compensated,
    GaveUp,
}

/// What the orchestrator does next for a saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Step(usize),
    Undo(usize),
    End(End),
}

/// What a failed step turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    None,
    KnownDone,
    AlsoUncertain,
}

/// One saga: when it began (true time and the orchestrator's clock), the step awaited (`at`;
/// going `back` while compensating), how it ended, and a tag for the caller.
#[derive(Clone, Copy, Debug)]
pub struct Saga {
    pub born: Time,
    pub started: Time,
    at: i8,
    back: bool,
    pub end: Option<End>,
    pub tag: bool,
}

/// Sagas numbered from 1 in the order started.
#[derive(Clone, Debug)]
pub struct SagaLog {
    sagas: KeyTable<Saga>,
    steps: i8,
    open: u32,
    gave_up: u64,
}

impl SagaLog {
    pub fn new(steps: usize) -> SagaLog {
        SagaLog { sagas: KeyTable::default(), steps: steps as i8, open: 0, gave_up: 0 }
    }

    /// A new saga, awaiting its first step: its number.
    pub fn start(&mut self, born: Time, started: Time, tag: bool) -> u64 {
        let id = self.sagas.len() as u64 + 1;
        self.sagas.insert(id, Saga { born, started, at: 0, back: false, end: None, tag });
        self.open += 1;
        id
    }

    pub fn get(&self, id: u64) -> Option<&Saga> {
        self.sagas.get(id)
    }

    /// The action saga `id` awaits.
    pub fn next(&self, id: u64) -> Next {
        let s = self.sagas.get(id).expect("a saga of this log");
        match (s.end, s.back) {
            (Some(end), _) => Next::End(end),
            (None, false) => Next::Step(s.at as usize),
            (None, true) => Next::Undo(s.at as usize),
        }
    }

    /// The awaited action succeeded: the next one (or the end, still to be `finish`ed).
    pub fn succeeded(&mut self, id: u64) -> Next {
        let steps = self.steps;
        let s = self.sagas.get_mut(id).expect("a saga of this log");
        s.at += if s.back { -1 } else { 1 };
        match (s.at, s.back) {
            (at, false) if at == steps => Next::End(End::Completed),
            (-1, true) => Next::End(End::Compensated),
            (at, false) => Next::Step(at as usize),
            (at, true) => Next::Undo(at as usize),
        }
    }

    /// The awaited action failed for good (`uncertain`: a step that timed out).
    pub fn failed(&mut self, id: u64, uncertain: bool, recovery: Recovery) -> Next {
        let s = self.sagas.get_mut(id).expect("a saga of this log");
        if s.back {
            return Next::End(End::GaveUp);
        }
        if recovery == Recovery::None {
            let clean = s.at == 0 && !uncertain;
            return Next::End(if clean { End::Compensated } else { End::GaveUp });
        }
        s.back = true;
        s.at -= !(uncertain && recovery == Recovery::AlsoUncertain) as i8;
        match s.at {
            -1 => Next::End(End::Compensated),
            at => Next::Undo(at as usize),
        }
    }

    /// Saga `id` ends `end` at `now` (the orchestrator's clock): the time it spent open, or
    /// `None` if it had ended already.
    pub fn finish(&mut self, id: u64, end: End, now: Time) -> Option<Micros> {
        let s = self.sagas.get_mut(id).expect("a saga of this log");
        if s.end.is_some() {
            return None;
        }
        s.end = Some(end);
        self.open -= 1;
        self.gave_up += (end == End::GaveUp) as u64;
        Some(now.since(s.started))
    }

    /// The sagas still open with tag `tag`, to resume after a restart.
    pub fn open_ids(&self, tag: bool) -> Vec<u64> {
        self.sagas.iter().filter(|(_, s)| s.end.is_none() && s.tag == tag).map(|(id, _)| id).collect()
    }

    pub fn open(&self) -> u32 {
        self.open
    }

    pub fn gave_up(&self) -> u64 {
        self.gave_up
    }
}

/// What a participant did for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Done,
    Declined,
    Undone,
}

/// What a compensation came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undid {
    /// The step's effect is reversed now.
    Reversed,
    /// Reversed again: a compensation without the key, repeated.
    Again,
    /// Nothing to reverse: declined, undone already, or not done yet (now a tombstone).
    Nothing,
}

/// A participant's records per key, with its effects in force and its double reversals.
#[derive(Clone, Debug, Default)]
pub struct Participant {
    records: KeyTable<Record>,
    in_force: i64,
    twice: u64,
}

impl Participant {
    /// The step for `key`: whether it is done, and whether it was done just now. The first
    /// time, `decline` (asked only then) tells whether it is refused; a repeat gets the first
    /// outcome, and a step after its compensation is refused.
    pub fn apply(&mut self, key: u64, decline: impl FnOnce() -> bool) -> (bool, bool) {
        if let Some(&r) = self.records.get(key) {
            return (r == Record::Done, false);
        }
        let r = if decline() { Record::Declined } else { Record::Done };
        self.records.insert(key, r);
        self.in_force += (r == Record::Done) as i64;
        (r == Record::Done, r == Record::Done)
    }

    /// The compensation for `key`, under the key (`keyed`) or not.
    pub fn undo(&mut self, key: u64, keyed: bool) -> Undid {
        let undid = match self.records.insert(key, Record::Undone) {
            Some(Record::Done) => Undid::Reversed,
            Some(Record::Undone) if !keyed => Undid::Again,
            Some(Record::Declined) => {
                self.records.insert(key, Record::Declined);
                Undid::Nothing
            }
            Some(Record::Undone) | None => Undid::Nothing,
        };
        self.in_force -= (undid != Undid::Nothing) as i64;
        self.twice += (undid == Undid::Again) as u64;
        undid
    }

    /// Effects in force: steps done less reversals (negative after reversals repeated).
    pub fn in_force(&self) -> i64 {
        self.in_force
    }

    pub fn twice(&self) -> u64 {
        self.twice
    }
}

/// An orchestrator: its durable log, and each action (a step, a compensation) an operation of
/// its saga tried as calls, which a crash loses — a step tried once, a compensation retried
/// as the caller's policy allows.
#[derive(Clone, Debug)]
pub struct Orchestrator {
    pub log: SagaLog,
    calls: Retried<u64>,
}

/// What became of a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The saga's action is over: this is what it does next.
    Act(u64, Next),
    Retrying,
    Stale,
}

impl Orchestrator {
    /// Sagas of `steps` steps, their tries kept in `calls` (which names the latency histogram).
    pub fn new(steps: usize, calls: Calls<(u32, u32)>) -> Orchestrator {
        Orchestrator { log: SagaLog::new(steps), calls: Retried::new(calls, RetryBudget::new(0, 0)) }
    }

    /// Starts saga `id`'s awaited action as an operation: the call to send.
    pub fn start<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        id: u64,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> CallId {
        self.calls.start(ctx, id, timeout_us, timer)
    }

    /// Try `try_no` of operation `op`, as its retry timer fires: its saga and the call to send.
    pub fn again<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        op: u32,
        try_no: u32,
        timeout_us: Micros,
        timer: impl FnOnce(CallId) -> N::Timer,
    ) -> Option<(u64, CallId)> {
        let call = self.calls.again(ctx, op, try_no, timeout_us, timer)?;
        Some((*self.calls.data_mut(op).expect("an open operation"), call))
    }

    /// A try ended: answered (`Some(ok)`) or timed out (`None`: uncertain). A failed step is
    /// recovered by `recovery`; a failed compensation is retried under `undo`, then given up.
    pub fn ended<N: Node>(
        &mut self,
        ctx: &mut Ctx<N>,
        call: CallId,
        answer: Option<bool>,
        recovery: Recovery,
        undo: &RetryPolicy,
        retry: impl FnOnce(u32, u32) -> N::Timer,
    ) -> Progress {
        let id = self.calls.try_of(call).and_then(|(op, _)| self.calls.data_mut(op).copied());
        let undoing = id.is_some_and(|id| matches!(self.log.next(id), Next::Undo(_)));
        match self.calls.ended(ctx, call, answer, if undoing { undo } else { &RetryPolicy::NEVER }, false, retry) {
            Ended::Succeeded { data, .. } => Progress::Act(data, self.log.succeeded(data)),
            Ended::GaveUp(id) => Progress::Act(id, self.log.failed(id, answer.is_none(), recovery)),
            Ended::Retrying { .. } => Progress::Retrying,
            Ended::Stale => Progress::Stale,
        }
    }

    /// A crash: the tries in flight are lost, the log is not (resume its open sagas).
    pub fn crashed<N: Node>(&mut self, ctx: &mut Ctx<N>) {
        self.calls.clear(ctx);
    }
}

/// Choreography's events: a saga started, or step `s` done, declined or undone. Each goes to
/// the one that reacts: the next step going forward, the previous one going back, the
/// initiator (`None`) at either end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Did(usize),
    Declined(usize),
    Undone(usize),
}

impl Event {
    /// Who reacts, in a saga of `steps` steps: a step, or the initiator (`None`).
    pub fn subscriber(self, steps: usize) -> Option<usize> {
        match self {
            Event::Started => Some(0),
            Event::Did(s) => Some(s + 1).filter(|&n| n < steps),
            Event::Declined(s) | Event::Undone(s) => s.checked_sub(1),
        }
    }

    /// Whether it asks the next step to be done (else, a compensation).
    pub fn forward(self) -> bool {
        matches!(self, Event::Started | Event::Did(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_one() -> (SagaLog, u64) {
        let mut log = SagaLog::new(3);
        let id = log.start(Time(0), Time(0), false);
        (log, id)
    }

    #[test]
    fn steps_run_forward_and_compensations_in_reverse() {
        let (mut log, id) = log_with_one();
        assert_eq!((log.next(id), log.succeeded(id), log.succeeded(id)), (Next::Step(0), Next::Step(1), Next::Step(2)));
        // The third step declines: the second, then the first, are compensated.
        assert_eq!(log.failed(id, false, Recovery::KnownDone), Next::Undo(1));
        assert_eq!((log.succeeded(id), log.succeeded(id)), (Next::Undo(0), Next::End(End::Compensated)));
        assert_eq!(log.finish(id, End::Compensated, Time(50)), Some(50));
        assert_eq!((log.finish(id, End::Compensated, Time(60)), log.open()), (None, 0), "ends once");
        let (mut log, id) = log_with_one();
        (0..3).for_each(|_| _ = log.succeeded(id));
        assert_eq!(log.next(id), Next::Step(3));
    }

    #[test]
    fn a_timed_out_step_is_compensated_only_when_uncertain_steps_are() {
        for (recovery, next) in [(Recovery::KnownDone, Next::Undo(0)), (Recovery::AlsoUncertain, Next::Undo(1))] {
            let (mut log, id) = log_with_one();
            log.succeeded(id);
            assert_eq!(log.failed(id, true, recovery), next, "{recovery:?}");
        }
        let (mut log, id) = log_with_one();
        assert_eq!(log.failed(id, false, Recovery::KnownDone), Next::End(End::Compensated), "nothing was done");
        let (mut log, id) = log_with_one();
        assert_eq!(log.failed(id, false, Recovery::None), Next::End(End::Compensated));
        let (mut log, id) = log_with_one();
        log.succeeded(id);
        assert_eq!(log.failed(id, false, Recovery::None), Next::End(End::GaveUp), "the first step stays done");
        let (mut log, id) = log_with_one();
        log.succeeded(id);
        log.failed(id, false, Recovery::AlsoUncertain);
        assert_eq!(log.failed(id, false, Recovery::AlsoUncertain), Next::End(End::GaveUp), "a compensation failed");
        log.finish(id, End::GaveUp, Time(1));
        assert_eq!((log.gave_up(), log.open_ids(false)), (1, vec![]));
    }

    #[test]
    fn a_participant_steps_once_reverses_once_under_the_key_and_keeps_tombstones() {
        let mut p = Participant::default();
        assert_eq!(p.apply(1, || false), (true, true));
        assert_eq!(p.apply(1, || unreachable!("a repeat is not decided again")), (true, false));
        assert_eq!((p.undo(1, true), p.undo(1, true)), (Undid::Reversed, Undid::Nothing));
        assert_eq!((p.undo(1, false), p.in_force(), p.twice()), (Undid::Again, -1, 1), "a refund without its charge");
        assert_eq!(p.apply(2, || true), (false, false));
        assert_eq!(
            (p.undo(2, false), p.apply(2, || false)),
            (Undid::Nothing, (false, false)),
            "declined stays declined"
        );
        assert_eq!(p.undo(3, true), Undid::Nothing);
        assert_eq!(p.apply(3, || false), (false, false), "the step after its compensation is refused");
    }

    #[test]
    fn events_go_forward_to_the_next_step_and_back_to_the_previous_one() {
        let to = |e: Event| e.subscriber(3);
        assert_eq!(
            [to(Event::Started), to(Event::Did(0)), to(Event::Did(1)), to(Event::Did(2))],
            [Some(0), Some(1), Some(2), None]
        );
        assert_eq!([to(Event::Declined(2)), to(Event::Undone(1)), to(Event::Undone(0))], [Some(1), Some(0), None]);
        assert!(Event::Did(1).forward() && !Event::Declined(1).forward());
    }
}
