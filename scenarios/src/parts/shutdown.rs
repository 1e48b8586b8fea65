//! A process's graceful shutdown — a lifetime that ends in SIGTERM, a grace period, then the kill — and a ledger of the items it handed from producers to consumers, each to be taken exactly once.
//!
//! What an orchestrator does to every process it replaces (Kubernetes sends SIGTERM, waits
//! `terminationGracePeriodSeconds`, then SIGKILL): whatever the process accepted and has not
//! finished by the kill is lost unless it drained in time. The ledger is the truth a check judges
//! a hand-off by: an item accepted and never taken is lost; one taken twice, or taken without
//! ever being accepted, is a broken queue.

use faultline_core::{Micros, NodeId, Time};
use std::collections::BTreeMap;

/// When a process started, and when it was told to stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub started: Time,
    pub sigterm: Option<Time>,
}

/// What a process's clock says should happen now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Its lifetime is up: SIGTERM.
    Term,
    /// Its grace after SIGTERM is up: the kill.
    Kill,
}

impl Lifetime {
    /// A process starting at `now`.
    pub fn begin(now: Time) -> Lifetime {
        Lifetime { started: now, sigterm: None }
    }

    /// SIGTERM at `now`; false if it already had one (a second changes nothing).
    pub fn term(&mut self, now: Time) -> bool {
        let first = self.sigterm.is_none();
        self.sigterm = self.sigterm.or(Some(now));
        first
    }

    /// At `now`, with the lifetime and grace in force (read afresh, so that both act live): the
    /// SIGTERM or the kill that is due, if one is.
    pub fn due(&self, now: Time, lifetime_us: Micros, grace_us: Micros) -> Option<Stage> {
        match self.sigterm {
            None => (now.since(self.started) >= lifetime_us).then_some(Stage::Term),
            Some(at) => (now.since(at) >= grace_us).then_some(Stage::Kill),
        }
    }
}

/// How a take broke the hand-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrong {
    /// Nothing was there (a slot never written).
    Empty,
    /// Taken before, by this node.
    Again(NodeId),
    /// Never accepted.
    Unknown,
}

/// The items accepted and not yet taken, and who took each item, over one process's life.
/// Items are non-zero (0 is the empty slot).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    queued: BTreeMap<i64, ()>,
    taken: BTreeMap<i64, NodeId>,
}

impl Ledger {
    /// A new process: nothing accepted, nothing taken.
    pub fn clear(&mut self) {
        self.queued.clear();
        self.taken.clear();
    }

    pub fn accept(&mut self, item: i64) {
        self.queued.insert(item, ());
    }

    /// `by` took `item`: fine if it was accepted and not taken since; else how it broke.
    pub fn take(&mut self, item: i64, by: NodeId) -> Result<(), Wrong> {
        match (self.queued.remove(&item), self.taken.insert(item, by)) {
            (Some(()), _) => Ok(()),
            _ if item == 0 => Err(Wrong::Empty),
            (None, Some(first)) => Err(Wrong::Again(first)),
            (None, None) => Err(Wrong::Unknown),
        }
    }

    /// How many accepted items nobody has taken, and the oldest of them (the lowest number).
    pub fn left(&self) -> (usize, Option<i64>) {
        (self.queued.len(), self.queued.keys().next().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_comes_when_the_lifetime_is_up_and_the_kill_when_the_grace_is() {
        let mut p = Lifetime::begin(Time(1_000));
        assert_eq!(p.due(Time(5_999), 5_000, 500), None);
        assert_eq!(p.due(Time(6_000), 5_000, 500), Some(Stage::Term));
        assert!(p.term(Time(4_000)), "an early SIGTERM (a fault) counts too");
        assert!(!p.term(Time(4_200)), "a second changes nothing");
        assert_eq!(p.due(Time(4_499), 5_000, 500), None);
        assert_eq!(p.due(Time(4_500), 5_000, 500), Some(Stage::Kill));
        assert_eq!(p.due(Time(4_500), 5_000, 900), None, "the grace read as it is now");
    }

    #[test]
    fn each_accepted_item_is_taken_once_and_anything_else_is_named() {
        let mut l = Ledger::default();
        l.accept(11);
        l.accept(12);
        l.accept(13);
        assert_eq!(l.take(12, 5), Ok(()));
        assert_eq!(l.take(12, 6), Err(Wrong::Again(5)));
        assert_eq!(l.take(0, 6), Err(Wrong::Empty));
        assert_eq!(l.take(99, 6), Err(Wrong::Unknown));
        assert_eq!(l.left(), (2, Some(11)));
        l.clear();
        assert_eq!((l.left(), l.take(11, 1)), ((0, None), Err(Wrong::Unknown)));
    }
}
