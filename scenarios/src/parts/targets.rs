//! A balancer's target group: targets registered (routed) or not, each health-checked at its own phase, marked down after failed probes in a row and up after passed ones; a target serves only when routed and up.
//!
//! What an AWS ALB target group (interval, unhealthy and healthy threshold counts) or a Kubernetes
//! Service with readiness probes (periodSeconds, failureThreshold, successThreshold) keeps. Counting
//! in a row is `ejection`'s `Rotation` (marked down = ejected); this adds registration, the probe
//! loop and its timing:
//! - `watch(i, every_us, …)` starts probing `i`, its first probe at a uniform phase in `(0, every]`:
//!   real balancers do not check their targets in step (`arm_all` for those watched from the start). `probe_due(i, every_us, …)` at its timer
//!   counts a probe still unanswered as failed and says whether to send the next one.
//! - `verdict(i, ok, down_after, up_after)` applies a probe's answer: `Some(true)` marked up,
//!   `Some(false)` marked down, `None` unchanged.
//! - The theory: a target that dies at a random instant is marked down (k − ½)·I later on average
//!   (the first failed probe after a uniform wait, then k − 1 intervals), and one that becomes ready
//!   is marked up (h − ½)·I later — the time a killed instance keeps its share of the traffic.

use crate::parts::ejection::Rotation;
use faultline_core::{Ctx, Micros, Node, Time};

#[derive(Clone, Debug)]
pub struct Targets {
    health: Rotation,
    routed: Vec<bool>,
    watched: Vec<bool>,
}

impl Targets {
    /// `n` targets, the first `routed` of them registered, up and watched (a warm fleet); the rest
    /// unregistered and down until probes pass.
    pub fn new(n: usize, routed: usize) -> Targets {
        let mut health = Rotation::new(n);
        for i in routed..n {
            health.eject(i, Time::ZERO, 0, 0);
        }
        Targets { health, routed: (0..n).map(|i| i < routed).collect(), watched: (0..n).map(|i| i < routed).collect() }
    }

    pub fn len(&self) -> usize {
        self.routed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routed.is_empty()
    }

    pub fn is_up(&self, i: usize) -> bool {
        !self.health.is_ejected(i)
    }

    pub fn is_routed(&self, i: usize) -> bool {
        self.routed[i]
    }

    pub fn is_watched(&self, i: usize) -> bool {
        self.watched[i]
    }

    /// Routed and marked up: a balancer's candidates, ascending.
    pub fn serving(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.routed[i] && self.is_up(i)).collect()
    }

    /// In (or out of) the target group: traffic goes to it once it is also marked up.
    pub fn route(&mut self, i: usize, routed: bool) {
        self.routed[i] = routed;
    }

    /// Out of the group and no longer probed (its timer stops at its next firing).
    pub fn deregister(&mut self, i: usize) {
        (self.routed[i], self.watched[i]) = (false, false);
    }

    /// Starts probing `i` (if it was not): its first probe at a uniform phase of the interval.
    pub fn watch<N: Node>(&mut self, i: usize, every_us: Micros, ctx: &mut Ctx<N>, timer: N::Timer) {
        if !std::mem::replace(&mut self.watched[i], true) {
            arm(every_us, ctx, timer);
        }
    }

    /// Sets a probe timer at a uniform phase for every watched target: at the start, and after the
    /// balancer's restart (a crash took its timers).
    pub fn arm_all<N: Node>(&self, every_us: Micros, ctx: &mut Ctx<N>, timer: impl Fn(usize) -> N::Timer) {
        (0..self.len()).filter(|&i| self.watched[i]).for_each(|i| arm(every_us, ctx, timer(i)));
    }

    /// `i`'s probe timer: whether its last probe went unanswered (to be judged failed), and whether to
    /// probe it now (then its next timer is set `every_us` later).
    pub fn probe_due<N: Node>(
        &mut self,
        i: usize,
        every_us: Micros,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
    ) -> (bool, bool) {
        let unanswered = self.health.unanswered(i);
        if self.watched[i] {
            self.health.probe_sent(i);
            ctx.set_timer(every_us, timer);
        }
        (unanswered, self.watched[i])
    }

    /// A probe's answer: marked down after `down_after` failures in a row (`Some(false)`), up after
    /// `up_after` passes in a row (`Some(true)`).
    pub fn verdict(&mut self, i: usize, ok: bool, down_after: u32, up_after: u32) -> Option<bool> {
        let ((oks, fails), up) = (self.health.probed(i, ok), self.is_up(i));
        if up && fails >= down_after {
            self.health.eject(i, Time::ZERO, 0, 0);
            Some(false)
        } else if !up && oks >= up_after {
            self.health.readmit(i, Time::ZERO);
            Some(true)
        } else {
            None
        }
    }
}

fn arm<N: Node>(every_us: Micros, ctx: &mut Ctx<N>, timer: N::Timer) {
    let phase = 1 + ctx.rng().below(every_us.max(1));
    ctx.set_timer(phase, timer);
}

/// Mean time from a target's death (at a random instant) to its being marked down: (k − ½)·I.
pub fn mean_detection_us(every_us: Micros, down_after: u32) -> f64 {
    (down_after as f64 - 0.5) * every_us as f64
}

/// Mean time from a target's becoming ready to its being marked up: (h − ½)·I.
pub fn mean_admission_us(every_us: Micros, up_after: u32) -> f64 {
    (up_after as f64 - 0.5) * every_us as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{run_alone, NoMsg};
    use faultline_core::{Label, MICROS_PER_S};

    const EVERY_US: Micros = MICROS_PER_S;

    #[derive(Clone, Debug)]
    struct Probe(usize);

    impl Label for Probe {
        fn label(&self) -> &'static str {
            "probe"
        }
    }

    /// Target 0 is up and dies at 10 s; target 1 is down and ready from 10 s. Probes are answered
    /// at once (the truth at the probe's instant); when each was marked down and up is kept.
    #[derive(Clone, Debug)]
    struct Prober {
        t: Targets,
        marked: [Option<Time>; 2],
    }

    impl Node for Prober {
        type Msg = NoMsg;
        type Timer = Probe;

        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.t.arm_all(EVERY_US, ctx, Probe);
            self.t.watch(1, EVERY_US, ctx, Probe(1));
        }

        fn on_message(&mut self, _: faultline_core::NodeId, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }

        fn on_timer(&mut self, Probe(i): Probe, ctx: &mut Ctx<Self>) {
            if self.t.probe_due(i, EVERY_US, ctx, Probe(i)).1 {
                let ok = (ctx.now() < Time::from_secs(10)) == (i == 0);
                if self.t.verdict(i, ok, 3, 2).is_some() {
                    self.marked[i] = Some(ctx.now());
                }
            }
        }

        fn view(&self) -> faultline_core::NodeView {
            faultline_core::NodeView::new(faultline_core::NodeKind::LoadBalancer, 0, "prober")
        }
    }

    #[test]
    fn a_death_is_noticed_and_a_readiness_admitted_half_an_interval_short_of_the_thresholds() {
        // The theory: the first probe after the change comes after a uniform wait in (0, I], then
        // k − 1 (or h − 1) more: (k − ½)·I = 2.5 s to mark down, (h − ½)·I = 1.5 s to mark up.
        // The uniform wait's s.d. is I/√12 = 0.29 s, so the mean of 400 runs has s.d. 0.014 s:
        // ±0.05 s is 3.5 of them, while forgetting the phase (k·I) would be 0.5 s off.
        let (mut down, mut up) = (0.0, 0.0);
        for seed in 1..=400 {
            let node = Prober { t: Targets::new(2, 1), marked: [None, None] };
            let p = run_alone(node, seed, Time::from_secs(20));
            let after = |i: usize| p.marked[i].expect("marked").since(Time::from_secs(10)) as f64;
            (down, up) = (down + after(0) / 400.0, up + after(1) / 400.0);
            assert!(!p.t.is_up(0) && p.t.is_up(1) && p.t.serving() == [0usize; 0], "seed {seed}");
        }
        assert!((down - mean_detection_us(EVERY_US, 3)).abs() < 0.05e6, "down after {down} µs");
        assert!((up - mean_admission_us(EVERY_US, 2)).abs() < 0.05e6, "up after {up} µs");
    }

    #[test]
    fn only_routed_targets_marked_up_serve_and_a_deregistered_one_is_no_longer_probed() {
        let mut t = Targets::new(3, 2);
        assert_eq!((t.serving(), t.is_up(2), t.is_watched(2)), (vec![0, 1], false, false));
        assert_eq!([t.verdict(0, false, 2, 2), t.verdict(0, false, 2, 2)], [None, Some(false)]);
        assert_eq!(t.serving(), vec![1]);
        t.route(2, true);
        assert_eq!([t.verdict(2, true, 2, 2), t.verdict(2, false, 2, 2), t.verdict(2, true, 2, 2)], [None; 3]);
        assert_eq!(t.verdict(2, true, 2, 2), Some(true), "two passes in a row");
        assert_eq!(t.serving(), vec![1, 2]);
        t.deregister(1);
        assert!(!t.is_routed(1) && !t.is_watched(1) && t.is_up(1));
        assert_eq!(t.serving(), vec![2]);
    }
}
