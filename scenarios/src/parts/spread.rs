//! Per-node state timelines merged into spells: while the nodes disagree (a divergence window), while any of them is in a condition (a bad config's exposure, until the last one is rolled back).
//!
//! Each node keeps a [`Timeline`] of the states it went through, with the true time of each
//! change (instrumentation: a god's-eye view, never read by the model). [`spells`] merges them:
//! the maximal stretches of time during which a predicate over all the nodes' states held, the
//! last one open if it still holds. [`divergent`] asks "are not all the same?" and [`any_in`]
//! "is any in this condition?". The cost is O(changes × nodes) per question, for the few dozen
//! changes a rollout makes.

use faultline_core::{Micros, Time};

/// The states one node went through, each from a (true) time on.
#[derive(Clone, Debug)]
pub struct Timeline<S>(Vec<(Time, S)>);

impl<S: Clone + PartialEq> Timeline<S> {
    /// A node in state `s` from `at`.
    pub fn new(s: S, at: Time) -> Timeline<S> {
        Timeline(vec![(at, s)])
    }
    /// The node is in `s` from `at` on (no entry if that is no change).
    pub fn set(&mut self, s: S, at: Time) {
        if self.now() != &s {
            self.0.push((at, s));
        }
    }
    pub fn now(&self) -> &S {
        &self.0.last().expect("a timeline starts with a state").1
    }
    /// The state at `t` (the first one before the timeline began).
    pub fn at(&self, t: Time) -> &S {
        let i = self.0.partition_point(|(at, _)| *at <= t);
        &self.0[i.saturating_sub(1)].1
    }
    /// Every change, oldest first.
    pub fn changes(&self) -> impl Iterator<Item = &(Time, S)> {
        self.0.iter()
    }
}

/// A stretch of time a predicate held: from `start` until `end` (`None`: it still holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spell {
    pub start: Time,
    pub end: Option<Time>,
}

impl Spell {
    /// How long it held, up to `now` if it still does.
    pub fn len_us(&self, now: Time) -> Micros {
        self.end.unwrap_or(now).since(self.start)
    }
}

/// The spells during which `holds` (over every node's state at once) held, oldest first.
pub fn spells<'a, S: Clone + PartialEq + 'a>(nodes: &[&'a Timeline<S>], holds: impl Fn(&[&S]) -> bool) -> Vec<Spell> {
    let mut times: Vec<Time> = nodes.iter().flat_map(|n| n.changes().map(|c| c.0)).collect();
    times.sort_unstable();
    times.dedup();
    let mut out: Vec<Spell> = Vec::new();
    for t in times {
        let states: Vec<&S> = nodes.iter().map(|n| n.at(t)).collect();
        match (holds(&states), out.last_mut()) {
            (true, Some(Spell { end: None, .. })) => {}
            (true, _) => out.push(Spell { start: t, end: None }),
            (false, Some(s)) if s.end.is_none() => s.end = Some(t),
            (false, _) => {}
        }
    }
    out
}

/// The spells during which the nodes were not all in the same state.
pub fn divergent<S: Clone + PartialEq>(nodes: &[&Timeline<S>]) -> Vec<Spell> {
    spells(nodes, |s| s.windows(2).any(|w| w[0] != w[1]))
}

/// The spells during which at least one node was in a state `bad` picks.
pub fn any_in<S: Clone + PartialEq>(nodes: &[&Timeline<S>], bad: impl Fn(&S) -> bool) -> Vec<Spell> {
    spells(nodes, |s| s.iter().any(|x| bad(x)))
}

/// The latest spell's length at `now` (0 if none): the open one's so far, else the last closed one's.
pub fn latest_us(spells: &[Spell], now: Time) -> Micros {
    spells.last().map_or(0, |s| s.len_us(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn divergence_runs_from_the_first_node_to_change_to_the_last() {
        let (mut a, mut b, c) = (Timeline::new(1, t(0)), Timeline::new(1, t(0)), Timeline::new(1, t(0)));
        assert!(divergent(&[&a, &b, &c]).is_empty());
        a.set(2, t(100));
        b.set(2, t(250));
        let mut c = c;
        assert_eq!(divergent(&[&a, &b, &c]), vec![Spell { start: t(100), end: None }]);
        assert_eq!(latest_us(&divergent(&[&a, &b, &c]), t(400)), 300_000);
        c.set(2, t(420));
        // Two nodes going back and forth make a second spell.
        a.set(3, t(1000));
        a.set(2, t(1050));
        let d = divergent(&[&a, &b, &c]);
        assert_eq!(d, vec![Spell { start: t(100), end: Some(t(420)) }, Spell { start: t(1000), end: Some(t(1050)) }]);
        assert_eq!(latest_us(&d, t(5000)), 50_000);
    }

    #[test]
    fn exposure_lasts_until_the_last_node_leaves_the_condition() {
        let bad = |s: &u32| *s == 2;
        let (mut a, mut b) = (Timeline::new(1, t(0)), Timeline::new(1, t(0)));
        a.set(2, t(10));
        b.set(2, t(30));
        a.set(1, t(40));
        assert_eq!(any_in(&[&a, &b], bad), vec![Spell { start: t(10), end: None }]);
        b.set(1, t(70));
        assert_eq!(any_in(&[&a, &b], bad), vec![Spell { start: t(10), end: Some(t(70)) }]);
        assert_eq!(*a.at(t(35)), 2);
        assert_eq!(*a.at(t(5)), 1);
        // Setting the same state again is no change.
        a.set(1, t(80));
        assert_eq!(a.changes().count(), 3);
    }
}
