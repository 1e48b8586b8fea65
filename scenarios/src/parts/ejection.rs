//! A balancer's rotation and who is ejected from it: errors and probes counted in a row, ejection for a time that may grow with each one, a cap on the share out at once, readmission, and flaps told.
//!
//! What Envoy's outlier detection (`consecutive_5xx`, `base_ejection_time` × ejections so far,
//! `max_ejection_percent`) and its active health checks (`unhealthy_threshold`,
//! `healthy_threshold`), or Kubernetes' readiness probes (`failureThreshold`,
//! `successThreshold`), keep per upstream. [`Rotation`] holds the counts; the strategy that
//! reads them (eject after so many errors, readmit after so many passed probes) stays in the
//! scenario, so it can be switched live.
//! - `answered`/`probed` count errors, and probes passed or failed, in a row (a pass resets
//!   the failures and a failure the passes).
//! - `eject(i, now, out_us, flap_us)` takes an upstream out until `now + out_us` and tells a
//!   flap: an ejection less than `flap_us` after its last readmission. `ejections(i)` is how
//!   many so far, for ejection times that grow with them.
//! - `may_eject(max_pct)`: one more may go while at most `max_pct`% of all are out after it.
//! - `probe_sent(i)`, then at the next round `unanswered(i)`: a probe still unanswered then is
//!   to be counted failed (a probe that times out failed).

use faultline_core::{Micros, Time};

/// What a balancer knows of one upstream.
#[derive(Clone, Debug, Default)]
struct Upstream {
    errors_in_row: u32,
    probe_oks: u32,
    probe_fails: u32,
    /// A probe sent and not yet answered.
    probe_pending: bool,
    ejected: bool,
    out_until: Time,
    ejections: u32,
    readmitted: Option<Time>,
}

/// The upstreams of one balancer, by index.
#[derive(Clone, Debug)]
pub struct Rotation {
    ups: Vec<Upstream>,
}

impl Rotation {
    pub fn new(upstreams: usize) -> Rotation {
        Rotation { ups: vec![Upstream::default(); upstreams] }
    }

    pub fn len(&self) -> usize {
        self.ups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ups.is_empty()
    }

    /// Those in rotation, ascending (a chooser's candidates).
    pub fn in_rotation(&self) -> Vec<usize> {
        (0..self.ups.len()).filter(|&i| !self.ups[i].ejected).collect()
    }

    /// Those out, ascending.
    pub fn ejected(&self) -> Vec<usize> {
        (0..self.ups.len()).filter(|&i| self.ups[i].ejected).collect()
    }

    pub fn is_ejected(&self, i: usize) -> bool {
        self.ups[i].ejected
    }

    /// Ejections of `i` so far.
    pub fn ejections(&self, i: usize) -> u32 {
        self.ups[i].ejections
    }

    /// `i` is out and its time is up.
    pub fn due(&self, i: usize, now: Time) -> bool {
        self.ups[i].ejected && now >= self.ups[i].out_until
    }

    /// An answer from `i`, ok or an error: its errors in a row after it.
    pub fn answered(&mut self, i: usize, ok: bool) -> u32 {
        let u = &mut self.ups[i];
        u.errors_in_row = if ok { 0 } else { u.errors_in_row + 1 };
        u.errors_in_row
    }

    /// A probe's verdict on `i`: its passes and failures in a row after it.
    pub fn probed(&mut self, i: usize, ok: bool) -> (u32, u32) {
        let u = &mut self.ups[i];
        u.probe_pending = false;
        (u.probe_oks, u.probe_fails) = if ok { (u.probe_oks + 1, 0) } else { (0, u.probe_fails + 1) };
        (u.probe_oks, u.probe_fails)
    }

    /// A probe sent to `i`: pending until its answer.
    pub fn probe_sent(&mut self, i: usize) {
        self.ups[i].probe_pending = true;
    }

    /// Whether `i`'s last probe went unanswered (to be counted failed); it is no longer pending.
    pub fn unanswered(&mut self, i: usize) -> bool {
        std::mem::take(&mut self.ups[i].probe_pending)
    }

    /// One more may be ejected while at most `max_pct`% of all are out after it.
    pub fn may_eject(&self, max_pct: u64) -> bool {
        (self.ejected().len() as u64 + 1) * 100 <= self.ups.len() as u64 * max_pct
    }

    /// Takes `i` out until `now + out_us`, its passed probes forgotten; true when this is a flap
    /// (less than `flap_us` since it was last readmitted).
    pub fn eject(&mut self, i: usize, now: Time, out_us: Micros, flap_us: Micros) -> bool {
        let u = &mut self.ups[i];
        (u.ejected, u.out_until, u.probe_oks, u.ejections) = (true, now.plus(out_us), 0, u.ejections + 1);
        u.readmitted.is_some_and(|t| now < t.plus(flap_us))
    }

    /// Puts `i` back in rotation, its errors and failed probes in a row forgotten.
    pub fn readmit(&mut self, i: usize, now: Time) {
        let u = &mut self.ups[i];
        (u.ejected, u.errors_in_row, u.probe_fails, u.readmitted) = (false, 0, 0, Some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::MICROS_PER_S;

    #[test]
    fn counts_in_a_row_reset_on_the_other_outcome() {
        let mut r = Rotation::new(2);
        assert_eq!(
            [r.answered(0, false), r.answered(0, false), r.answered(0, true), r.answered(0, false)],
            [1, 2, 0, 1]
        );
        assert_eq!(
            [r.probed(1, true), r.probed(1, true), r.probed(1, false), r.probed(1, true)],
            [(1, 0), (2, 0), (0, 1), (1, 0)]
        );
    }

    #[test]
    fn the_cap_keeps_the_share_out_at_or_below_it() {
        // 30% of 10: a third may go only if it leaves 3 out, not 4 (Envoy's max_ejection_percent).
        let mut r = Rotation::new(10);
        let mut out = 0;
        for i in 0..10 {
            if r.may_eject(30) {
                r.eject(i, Time::ZERO, MICROS_PER_S, 0);
                out += 1;
            }
        }
        assert_eq!((out, r.ejected(), r.in_rotation().len()), (3, vec![0, 1, 2], 7));
        assert!(!Rotation::new(3).may_eject(0) && Rotation::new(3).may_eject(34) && !Rotation::new(3).may_eject(33));
    }

    #[test]
    fn ejection_lasts_its_time_and_a_quick_return_is_a_flap() {
        let mut r = Rotation::new(1);
        let t = |s: u64| Time::from_secs(s);
        assert!(!r.eject(0, t(0), 10 * MICROS_PER_S, 30 * MICROS_PER_S), "never readmitted: no flap");
        assert!(!r.due(0, t(9)) && r.due(0, t(10)));
        r.readmit(0, t(10));
        assert!(r.in_rotation() == [0] && !r.due(0, t(11)));
        assert!(r.eject(0, t(20), 20 * MICROS_PER_S, 30 * MICROS_PER_S), "back out 10 s after: a flap");
        assert_eq!(r.ejections(0), 2);
        r.readmit(0, t(40));
        assert!(!r.eject(0, t(71), MICROS_PER_S, 30 * MICROS_PER_S), "31 s after: not a flap");
    }

    #[test]
    fn an_unanswered_probe_comes_back_at_the_next_round() {
        let mut r = Rotation::new(3);
        (0..3).for_each(|i| r.probe_sent(i));
        r.probed(0, true);
        r.probed(2, false);
        assert_eq!((0..3).map(|i| r.unanswered(i)).collect::<Vec<_>>(), [false, true, false]);
        assert!(!r.unanswered(1), "counted once");
    }
}
