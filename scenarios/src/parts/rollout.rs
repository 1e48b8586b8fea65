//! A fleet's rollout to a new version, as a deploy controller drives it: each old instance serving, draining or stopped, its replacement started; the steps of a kill script, a rolling update under max-unavailable, and blue-green.
//!
//! The controller is a loop (`tick`) over what the balancer knows (`Fleet`: who serves, who is
//! marked up, requests in flight); it returns the steps for the scenario to carry out (messages,
//! target-group changes) and records nothing itself but its plan's progress.
//! - `Plan::Kill`: every `start_us`, stop a batch outright (no deregistration, no drain) and start
//!   their replacements — the script that sleeps instead of looking.
//! - `Plan::Rolling` (Kubernetes' maxUnavailable): deregister one more only while those serving stay
//!   above `n − batch`; a drained one (no requests in flight, or the drain time up) stops and its
//!   replacement starts; a replacement that never passes readiness halts the rollout at the floor.
//! - `Plan::BlueGreen`: start every replacement unrouted; once all are marked up, switch the
//!   balancer to them at once and drain the old.
//! - The theory: with replacements that serve `r` after they start and a batch `b` dividing `n`,
//!   rolling takes (n / b)·(drain + r) — each of the b slots replaces n / b in turn.

use faultline_core::{Micros, Time, Tone, MICROS_PER_S};

/// Where an old instance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Old {
    Serving,
    /// Out of the balancer since then, its in-flight requests finishing.
    Draining(Time),
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Kill,
    Rolling,
    BlueGreen,
}

/// What the controller asks for, instance `i` (its replacement is new `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Out of the target group, to drain; `left` serve after it.
    Deregister { i: usize, left: usize },
    /// Its process stopped (by a kill script: while still in rotation; `left` serve after it).
    Stop { i: usize, left: usize },
    /// New `i` started and registered, routed at once or (blue-green) only at the switch.
    Start { i: usize, routed: bool },
    /// Every new instance routed: blue-green's atomic switch.
    Switch,
}

/// One instance's process: stopped, or started and warming up until ready (its readiness probe
/// passes from then on). A crash keeps it meant to run, so its restart warms up again; a bad
/// build never gets ready.
#[derive(Clone, Debug, Default)]
pub struct Process {
    up: bool,
    warm_at: Option<Time>,
    bad: bool,
}

impl Process {
    /// Running and warm since time 0 (the fleet before the deploy).
    pub fn warm() -> Process {
        Process { up: true, warm_at: Some(Time::ZERO), bad: false }
    }

    /// Started (or restarted after a crash) at `now`: ready `warm_us` later.
    pub fn start(&mut self, now: Time, warm_us: Micros) {
        (self.up, self.warm_at) = (true, Some(now.plus(warm_us)));
    }

    /// Stopped by the deploy (`stop`) or crashed (to be restarted): not ready.
    pub fn halt(&mut self, stop: bool) {
        (self.up, self.warm_at) = (self.up && !stop, None);
    }

    /// Meant to run: a restart starts it again.
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn set_bad(&mut self, bad: bool) {
        self.bad = bad;
    }

    /// Started, warmed up, and a good build.
    pub fn ready(&self, now: Time) -> bool {
        self.up && self.warm_at.is_some_and(|t| now >= t) && !self.bad
    }

    /// For a badge: stopped, running (warming or ready), or a bad build that will never be ready.
    pub fn badge(&self) -> (&'static str, Tone) {
        match (self.up, self.bad) {
            (false, _) => ("stopped", Tone::Neutral),
            (true, false) => ("running", Tone::Good),
            (true, true) => ("never ready", Tone::Bad),
        }
    }
}

/// What the balancer knows, for the controller.
pub trait Fleet {
    /// Old `i` is in rotation and marked up.
    fn serves(&self, i: usize) -> bool;
    /// New `i` is marked up (passed its readiness probes), routed or not.
    fn new_up(&self, i: usize) -> bool;
    /// Requests in flight at old `i`.
    fn inflight(&self, i: usize) -> u64;
    /// Instances serving now, old and new.
    fn serving(&self) -> usize;
}

/// The controller's settings, read at each tick (live).
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    pub batch: usize,
    /// The kill script's wait between batches.
    pub start_us: Micros,
    pub drain_us: Micros,
}

impl Knobs {
    /// From parameters in seconds.
    pub fn secs(batch: i64, start_s: i64, drain_s: i64) -> Knobs {
        let us = |s: i64| s.max(0) as Micros * MICROS_PER_S;
        Knobs { batch: batch.max(0) as usize, start_us: us(start_s), drain_us: us(drain_s) }
    }
}

#[derive(Clone, Debug)]
pub struct Rollout {
    old: Vec<Old>,
    started: Vec<bool>,
    next_kill: Time,
    began: Option<Time>,
    finished: Option<Time>,
    /// The latest step that left fewer than `n − batch` serving: (instance, serving after, floor).
    below_floor: Option<(usize, usize, usize)>,
}

impl Rollout {
    /// `n` old instances, the rollout to begin at `at`.
    pub fn new(n: usize, at: Time) -> Rollout {
        Rollout {
            old: vec![Old::Serving; n],
            started: vec![false; n],
            next_kill: at,
            began: None,
            finished: None,
            below_floor: None,
        }
    }

    pub fn old(&self, i: usize) -> Old {
        self.old[i]
    }

    /// Old instances still running (not stopped) and replacements started: the bill.
    pub fn running(&self) -> usize {
        self.old.iter().filter(|o| **o != Old::Stopped).count() + self.started.iter().filter(|s| **s).count()
    }

    /// Begun and not finished.
    pub fn under_way(&self) -> bool {
        self.began.is_some() && self.finished.is_none()
    }

    /// When it began and, once every old instance is stopped and every new one up, when it finished.
    pub fn times(&self) -> (Option<Time>, Option<Time>) {
        (self.began, self.finished)
    }

    /// The latest step that took an instance out of service leaving fewer than `n − batch` serving:
    /// (instance, serving after, floor) — the promise a rolling update keeps and a kill script breaks.
    pub fn below_floor(&self) -> Option<(usize, usize, usize)> {
        self.below_floor
    }

    /// One round of the controller at `now`: drain, then the plan's next steps.
    pub fn tick(&mut self, plan: Plan, now: Time, k: Knobs, fleet: &impl Fleet) -> Vec<Step> {
        let mut steps = vec![];
        if (now < self.next_kill && self.began.is_none()) || self.finished.is_some() {
            return steps;
        }
        self.began.get_or_insert(now);
        self.drain(now, k, fleet, &mut steps);
        match plan {
            Plan::Kill => self.kill(now, k, fleet, &mut steps),
            Plan::Rolling => self.roll(now, k, fleet, &mut steps),
            Plan::BlueGreen => self.blue_green(now, fleet, &mut steps),
        }
        if (0..self.old.len()).all(|i| self.old[i] == Old::Stopped && fleet.new_up(i)) {
            self.finished = Some(now);
        }
        let floor = self.old.len().saturating_sub(k.batch);
        for s in &steps {
            if let Step::Deregister { i, left } | Step::Stop { i, left } = *s {
                self.below_floor = (left < floor).then_some((i, left, floor)).or(self.below_floor);
            }
        }
        steps
    }

    /// A draining one stops once its requests are done or the drain time is up; its replacement starts
    /// (blue-green's runs already). `inflight` is read before this tick's steps: a tick's lag.
    fn drain(&mut self, now: Time, k: Knobs, fleet: &impl Fleet, steps: &mut Vec<Step>) {
        for i in 0..self.old.len() {
            let Old::Draining(since) = self.old[i] else { continue };
            if fleet.inflight(i) == 0 || now >= since.plus(k.drain_us) {
                self.stop(i, fleet.serving(), steps);
                self.start(i, true, steps);
            }
        }
    }

    fn stop(&mut self, i: usize, left: usize, steps: &mut Vec<Step>) {
        self.old[i] = Old::Stopped;
        steps.push(Step::Stop { i, left });
    }

    fn start(&mut self, i: usize, routed: bool, steps: &mut Vec<Step>) {
        if !std::mem::replace(&mut self.started[i], true) {
            steps.push(Step::Start { i, routed });
        }
    }

    fn kill(&mut self, now: Time, k: Knobs, fleet: &impl Fleet, steps: &mut Vec<Step>) {
        if now < self.next_kill {
            return;
        }
        self.next_kill = now.plus(k.start_us);
        let mut left = fleet.serving();
        let batch: Vec<usize> = (0..self.old.len()).filter(|&i| self.old[i] == Old::Serving).take(k.batch).collect();
        for i in batch {
            left -= fleet.serves(i) as usize;
            self.stop(i, left, steps);
            self.start(i, true, steps);
        }
    }

    fn roll(&mut self, now: Time, k: Knobs, fleet: &impl Fleet, steps: &mut Vec<Step>) {
        let (mut left, floor) = (fleet.serving(), self.old.len().saturating_sub(k.batch));
        while let Some(i) = (0..self.old.len()).find(|&i| self.old[i] == Old::Serving) {
            let after = left - fleet.serves(i) as usize;
            if after < floor {
                return;
            }
            left = after;
            self.old[i] = Old::Draining(now);
            steps.push(Step::Deregister { i, left });
        }
    }

    fn blue_green(&mut self, now: Time, fleet: &impl Fleet, steps: &mut Vec<Step>) {
        let waiting: Vec<usize> = (0..self.old.len()).filter(|&i| self.old[i] == Old::Serving).collect();
        waiting.iter().for_each(|&i| self.start(i, false, steps));
        if waiting.is_empty() || !waiting.iter().all(|&i| fleet.new_up(i)) {
            return;
        }
        steps.push(Step::Switch);
        let left = fleet.serving() + waiting.len() - waiting.iter().filter(|&&i| fleet.serves(i)).count();
        for i in waiting {
            self.old[i] = Old::Draining(now);
            steps.push(Step::Deregister { i, left });
        }
    }
}
