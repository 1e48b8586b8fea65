//! An adaptive concurrency limit: AIMD (additive increase, multiplicative decrease) on how many
//! jobs a server lets in at once, steered by the latency they see. It is the rule of Netflix's
//! concurrency-limits (`AIMDLimit`: a slow sample multiplies the limit by 0.9) and of TCP's
//! congestion avoidance (Jacobson 1988: +1 segment per round trip, halve once per loss event),
//! with "the job took longer than the target" in place of a lost packet.
//!
//! ```text
//! admit(in_flight)       in_flight < limit ?  yes: take the job   no: refuse it (429, 503)
//! on_done(latency, now)  latency ≤ target  →  limit += 1/limit   (+1 per limit's worth of jobs)
//!                        latency > target  →  limit ×= 0.9       (at most once per target)
//!                        then limit is kept within [min, max]
//! ```
//!
//! Why these rules. Adding 1/limit per fast job grows the limit by one per "round" of jobs, as
//! TCP grows its window by one segment per round trip: a slow, linear probe for room. Cutting
//! by a factor backs off fast once latency shows a queue; among linear rules only AIMD drives
//! competing senders to a fair and full share (Chiu & Jain 1989). Cutting at most once per
//! target interval is TCP's "once per window": the slow jobs of one queue build-up are one
//! congestion signal, not one per job — per-job cuts would drive the limit to its floor.
//!
//! Where it settles: in front of c servers of fixed service time S, with the limit L saturated,
//! a job's latency is about ⌈L/c⌉·S. The limit climbs to one past the largest L that meets the
//! target (L* = c·⌊target/S⌋), is cut by 10% — twice, when the jobs let in at the higher limit
//! take longer than a target to drain — and climbs again: it saws between about 0.8·L* and
//! L* + 1, keeping latency near the target by refusing work rather than queueing it.
//!
//! The limit is kept in thousandths of a job (integers: runs replay exactly).

use faultline_core::{Micros, Time};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aimd {
    /// The limit, in thousandths of a job.
    limit_milli: u64,
    min: u64,
    max: u64,
    target_us: Micros,
    backoff_pct: u64,
    last_cut: Option<Time>,
}

impl Aimd {
    /// A limit between `min` and `max` jobs (starting at `min`), aiming at `target_us` latency,
    /// cut to 90% when a job is slower.
    pub fn new(min: u32, max: u32, target_us: Micros) -> Aimd {
        let (min, max) = (min as u64, (max as u64).max(min as u64));
        Aimd { limit_milli: min * 1000, min, max, target_us, backoff_pct: 90, last_cut: None }
    }

    /// A different multiplicative decrease: the limit is cut to `pct`% (TCP Reno: 50).
    pub fn with_backoff_pct(mut self, pct: u32) -> Aimd {
        self.backoff_pct = pct.clamp(1, 99) as u64;
        self
    }

    /// The limit in whole jobs (rounded down).
    pub fn limit(&self) -> u64 {
        self.limit_milli / 1000
    }
    /// The limit in thousandths of a job, as kept.
    pub fn limit_milli(&self) -> u64 {
        self.limit_milli
    }
    pub fn target_us(&self) -> Micros {
        self.target_us
    }

    /// Whether one more job may come in while `in_flight` are inside already.
    pub fn admit(&self, in_flight: usize) -> bool {
        (in_flight as u64).saturating_mul(1000) < self.limit_milli
    }

    /// A job finished after `latency_us` (its time inside: waiting and service), at `now`.
    pub fn on_done(&mut self, latency_us: Micros, now: Time) {
        if latency_us <= self.target_us {
            self.limit_milli += 1_000_000 / self.limit_milli.max(1);
        } else if self.last_cut.is_none_or(|at| now.since(at) >= self.target_us) {
            self.limit_milli = self.limit_milli * self.backoff_pct / 100;
            self.last_cut = Some(now);
        }
        self.limit_milli = self.limit_milli.clamp(self.min * 1000, self.max * 1000);
    }

    /// New bounds, live: the limit moves into them at once (`max` below `min` counts as `min`).
    pub fn set_bounds(&mut self, min: u32, max: u32) {
        (self.min, self.max) = (min as u64, (max as u64).max(min as u64));
        self.limit_milli = self.limit_milli.clamp(self.min * 1000, self.max * 1000);
    }

    /// A new latency target, for the jobs that finish from now on.
    pub fn set_target_us(&mut self, target_us: Micros) {
        self.target_us = target_us;
    }

    /// Forgets what it learned (a restart): back to `min`.
    pub fn reset(&mut self) {
        (self.limit_milli, self.last_cut) = (self.min * 1000, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::MICROS_PER_MS;

    const MS: Micros = MICROS_PER_MS;

    #[test]
    fn a_fast_job_adds_one_over_the_limit() {
        // At 4 jobs, +1/4 a job; four fast jobs at 4.x add just under one (the step shrinks as
        // the limit grows): 4000 → 4250 → 4485 → 4707 → 4919 thousandths.
        let mut l = Aimd::new(4, 100, 300 * MS);
        let mut seen = vec![];
        for i in 0..4 {
            l.on_done(300 * MS, Time::from_ms(i)); // exactly the target is fast enough
            seen.push(l.limit_milli());
        }
        assert_eq!(seen, [4250, 4485, 4707, 4919]);
        assert_eq!(l.limit(), 4);
        // So a limit's worth of fast jobs (one "round trip") adds about one: 10 → 11.
        let mut l = Aimd::new(10, 100, 300 * MS);
        (0..10).for_each(|i| l.on_done(MS, Time::from_ms(i)));
        assert_eq!(l.limit(), 10);
        l.on_done(MS, Time::from_ms(10));
        assert_eq!(l.limit(), 11);
    }

    #[test]
    fn a_slow_job_cuts_to_ninety_percent_once_per_target() {
        let mut l = Aimd::new(10, 100, 300 * MS);
        l.set_bounds(10, 100);
        (0..200).for_each(|i| l.on_done(MS, Time::from_ms(i)));
        let before = l.limit_milli();
        assert!(before > 20_000, "{before}");
        // The first slow job cuts; the next ones within 300 ms change nothing; 300 ms after
        // the cut the next slow job cuts again.
        l.on_done(301 * MS, Time::from_ms(1_000));
        assert_eq!(l.limit_milli(), before * 9 / 10);
        l.on_done(900 * MS, Time::from_ms(1_100));
        l.on_done(900 * MS, Time::from_ms(1_299));
        assert_eq!(l.limit_milli(), before * 9 / 10);
        l.on_done(900 * MS, Time::from_ms(1_300));
        assert_eq!(l.limit_milli(), before * 9 / 10 * 9 / 10);
        // TCP Reno's halving, if asked.
        let mut reno = Aimd::new(1, 100, MS).with_backoff_pct(50);
        reno.set_bounds(1, 100);
        (0..100).for_each(|i| reno.on_done(0, Time::from_ms(i)));
        let w = reno.limit_milli();
        reno.on_done(2 * MS, Time::from_ms(100));
        assert_eq!(reno.limit_milli(), w / 2);
    }

    #[test]
    fn bounds_hold_and_admit_counts_against_the_limit() {
        let mut l = Aimd::new(4, 6, 10 * MS);
        assert!(l.admit(3) && !l.admit(4));
        (0..100).for_each(|i| l.on_done(0, Time::from_ms(i)));
        assert_eq!(l.limit_milli(), 6_000, "capped at max");
        assert!(l.admit(5) && !l.admit(6));
        (0..100).for_each(|i| l.on_done(11 * MS, Time::from_secs(i)));
        assert_eq!(l.limit_milli(), 4_000, "floored at min");
        l.set_bounds(8, 20);
        assert_eq!(l.limit(), 8, "raised into new bounds at once");
        l.set_bounds(2, 3);
        assert_eq!(l.limit(), 3, "and lowered");
        l.set_bounds(8, 20);
        l.reset();
        assert_eq!(l.limit(), 8);
    }

    /// A server of `c` workers, each job exactly `service` long, fed as many jobs as the limit
    /// admits (a saturating load). The lowest and highest limit over the second half.
    fn converge(c: u64, service: Micros, target: Micros, start: u32) -> (u64, u64) {
        use std::collections::VecDeque;
        let mut l = Aimd::new(start, 1_000, target);
        l.set_bounds(1, 1_000);
        // Jobs inside, as their arrival times; workers' finish times; the clock.
        let (mut queue, mut busy, mut now) = (VecDeque::<u64>::new(), Vec::<(u64, u64)>::new(), 0u64);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for step in 0..200_000 {
            while l.admit(queue.len() + busy.len()) {
                queue.push_back(now);
            }
            while busy.len() < c as usize {
                let Some(arrived) = queue.pop_front() else { break };
                busy.push((now + service, arrived));
            }
            // The next completion (earliest finish; ties by start order).
            let i = (0..busy.len()).min_by_key(|&i| busy[i].0).unwrap();
            let (done, arrived) = busy.remove(i);
            now = done;
            l.on_done(now - arrived, Time(now));
            if step > 100_000 {
                (lo, hi) = (lo.min(l.limit()), hi.max(l.limit()));
            }
        }
        (lo, hi)
    }

    #[test]
    fn converges_to_the_most_jobs_that_meet_the_target() {
        // 4 workers of 10 ms, target 25 ms: 8 jobs inside wait at most one round (20 ms), 9 make
        // the ninth wait two (30 ms). From below or from far above, it settles at 8..=9.
        assert_eq!(converge(4, 10 * MS, 25 * MS, 1), (8, 9));
        assert_eq!(converge(4, 10 * MS, 25 * MS, 500), (8, 9));
        // 16 workers of 50 ms, target 300 ms: 16·6 = 96 meet it. From 97 the 97 jobs inside take
        // 350 ms to drain, so a second cut follows the first: 97.x → 88 → 79.
        assert_eq!(converge(16, 50 * MS, 300 * MS, 1), (79, 97));
    }
}
