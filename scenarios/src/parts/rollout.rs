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
    /// Its process stopped: by a kill script while still serving (`left` serve after it), or once
    /// drained (`None`: it served no more).
    Stop { i: usize, left: Option<usize> },
    /// New `i` started and registered, routed at once or (blue-green) only at the switch.
    Start { i: usize, routed: bool },
    /// Every new instance routed: blue-green's atomic switch.
    Switch,
    /// New `i`, started unrouted by blue-green, routed after all: the plan changed mid-deploy
    /// (to rolling or the kill script) and its old `i` stopped.
    Route { i: usize },
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
    routed: Vec<bool>,
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
            routed: vec![false; n],
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
        // Those just taken out stop at once if idle, or with a drain time of 0 (cutting what they
        // hold): a drain is a grace for requests in flight, not a tick's wait.
        self.drain(now, k, fleet, &mut steps);
        if (0..self.old.len()).all(|i| self.old[i] == Old::Stopped && fleet.new_up(i)) {
            self.finished = Some(now);
        }
        let floor = self.old.len().saturating_sub(k.batch);
        for s in &steps {
            if let Step::Deregister { i, left } | Step::Stop { i, left: Some(left) } = *s {
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
                self.stop(i, None, steps);
                self.start(i, true, steps);
            }
        }
    }

    fn stop(&mut self, i: usize, left: Option<usize>, steps: &mut Vec<Step>) {
        self.old[i] = Old::Stopped;
        steps.push(Step::Stop { i, left });
    }

    /// Starts new `i` (routed or not) if it is not running yet; routes it if it runs unrouted and
    /// should now serve — without this, a switch of plan away from blue-green would stop the old
    /// instances and leave their replacements running but never routed.
    fn start(&mut self, i: usize, routed: bool, steps: &mut Vec<Step>) {
        if !std::mem::replace(&mut self.started[i], true) {
            steps.push(Step::Start { i, routed });
        } else if routed && !self.routed[i] {
            steps.push(Step::Route { i });
        }
        self.routed[i] |= routed;
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
            self.stop(i, Some(left), steps);
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
        self.routed.iter_mut().for_each(|r| *r = true);
        let left = fleet.serving() + waiting.len() - waiting.iter().filter(|&&i| fleet.serves(i)).count();
        for i in waiting {
            self.old[i] = Old::Draining(now);
            steps.push(Step::Deregister { i, left });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::MICROS_PER_MS;

    /// A fake balancer: old instances serve until stopped or deregistered; a new one is up
    /// `ready_us` after its start (never, if `None`); nothing is ever in flight.
    struct Fake {
        n: usize,
        out: Vec<bool>,
        started: Vec<Option<Time>>,
        routed: Vec<bool>,
        ready_us: Option<Micros>,
        now: Time,
    }

    impl Fleet for Fake {
        fn serves(&self, i: usize) -> bool {
            !self.out[i]
        }
        fn new_up(&self, i: usize) -> bool {
            matches!((self.started[i], self.ready_us), (Some(t), Some(r)) if self.now >= t.plus(r))
        }
        fn inflight(&self, _: usize) -> u64 {
            0
        }
        fn serving(&self) -> usize {
            (0..self.n).filter(|&i| self.serves(i)).count()
                + (0..self.n).filter(|&i| self.routed[i] && self.new_up(i)).count()
        }
    }

    /// Runs `plan` every 100 ms for `secs`; returns the rollout, the fewest serving seen, and the peak bill.
    fn drive(plan: Plan, n: usize, batch: usize, ready_us: Option<Micros>, secs: u64) -> (Rollout, usize, usize) {
        drive_plans(|_| plan, n, batch, ready_us, secs).0
    }

    /// As `drive`, the plan chosen at each tick; also returns the routed new instances at the end.
    fn drive_plans(
        plan: impl Fn(Time) -> Plan,
        n: usize,
        batch: usize,
        ready_us: Option<Micros>,
        secs: u64,
    ) -> ((Rollout, usize, usize), usize) {
        let mut f =
            Fake { n, out: vec![false; n], started: vec![None; n], routed: vec![false; n], ready_us, now: Time::ZERO };
        let (mut r, mut fewest, mut peak) = (Rollout::new(n, Time::ZERO), n, n);
        let k = Knobs::secs(batch as i64, 10, 30);
        while f.now < Time::from_secs(secs) {
            for step in r.tick(plan(f.now), f.now, k, &f) {
                match step {
                    Step::Deregister { i, .. } | Step::Stop { i, .. } => f.out[i] = true,
                    Step::Start { i, routed } => (f.started[i], f.routed[i]) = (Some(f.now), routed),
                    Step::Switch => f.routed.iter_mut().for_each(|x| *x = true),
                    Step::Route { i } => f.routed[i] = true,
                }
            }
            (fewest, peak) = (fewest.min(f.serving()), peak.max(r.running()));
            f.now = f.now.plus(100 * MICROS_PER_MS);
        }
        let routed = f.routed.iter().filter(|r| **r).count();
        ((r, fewest, peak), routed)
    }

    #[test]
    fn leaving_blue_green_mid_deploy_routes_the_replacements_it_had_started() {
        // Blue-green starts all 50 unrouted at 0 s; at 4 s (before they are ready) the plan
        // becomes rolling, which drains old instances and must route their running replacements.
        for later in [Plan::Rolling, Plan::Kill] {
            let plan = |t: Time| if t < Time::from_secs(4) { Plan::BlueGreen } else { later };
            let ((r, _, _), routed) = drive_plans(plan, 50, 5, Some(8_000_000), 400);
            assert!(r.times().1.is_some(), "{later:?}: finished");
            assert_eq!(routed, 50, "{later:?}: every replacement serves");
        }
    }

    #[test]
    fn rolling_takes_n_over_b_rounds_of_drain_and_readiness_and_never_dips_below_the_floor() {
        // Each of the b slots replaces n / b in turn; a round is the 8 s to ready (a whole number
        // of ticks, so seen at once), an idle instance stopping as it is taken out: (n / b)·8 s.
        for (n, b) in [(50, 5), (12, 3), (10, 1)] {
            let (r, fewest, peak) = drive(Plan::Rolling, n, b, Some(8_000_000), 400);
            let (began, done) = r.times();
            let took = done.expect("done").since(began.expect("began")) as f64 / 1e6;
            let want = (n / b) as f64 * 8.0;
            assert!((took - want).abs() <= 0.15, "n {n} b {b}: {took} s, theory {want} s");
            assert_eq!((fewest, peak, r.below_floor()), (n - b, n, None), "n {n} b {b}");
        }
    }

    #[test]
    fn a_replacement_that_never_gets_ready_halts_rolling_at_the_floor_but_not_the_kill_script() {
        let (r, fewest, _) = drive(Plan::Rolling, 50, 5, None, 300);
        assert_eq!((fewest, r.times().1, r.below_floor()), (45, None, None));
        assert_eq!((0..50).filter(|&i| r.old(i) == Old::Stopped).count(), 5, "only the first batch went");
        let (r, fewest, _) = drive(Plan::Kill, 50, 5, None, 300);
        assert_eq!((fewest, r.below_floor()), (0, Some((49, 0, 45))), "every batch, ready or not");
    }

    #[test]
    fn blue_green_doubles_the_fleet_then_switches_at_once_when_all_are_ready() {
        let (r, fewest, peak) = drive(Plan::BlueGreen, 50, 5, Some(8_000_000), 60);
        let (began, done) = r.times();
        // Ready at 8 s, switched at the tick that sees it, the old (idle) stopped at once.
        assert_eq!(done.expect("done").since(began.expect("began")), 8_000_000);
        assert_eq!((fewest, peak, r.below_floor()), (50, 100, None));
        let (r, fewest, peak) = drive(Plan::BlueGreen, 50, 5, None, 60);
        assert_eq!((r.times().1, fewest, peak), (None, 50, 100), "a bad fleet is never switched to");
    }

    #[test]
    fn a_process_is_ready_once_warm_unless_its_build_is_bad_and_a_crash_keeps_it_meant_to_run() {
        let mut p = Process::default();
        assert!(!p.ready(Time::ZERO) && !p.is_up());
        p.start(Time::from_secs(1), 2 * MICROS_PER_S);
        assert!(!p.ready(Time::from_secs(2)) && p.ready(Time::from_secs(3)));
        p.halt(false);
        assert!(p.is_up() && !p.ready(Time::from_secs(4)), "crashed: to be restarted");
        p.start(Time::from_secs(4), 0);
        p.set_bad(true);
        assert_eq!((p.ready(Time::from_secs(9)), p.badge().0), (false, "never ready"));
        p.halt(true);
        assert_eq!((p.is_up(), p.badge().0), (false, "stopped"));
        assert!(Process::warm().ready(Time::ZERO));
    }
}
