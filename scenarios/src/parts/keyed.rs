//! A station whose jobs each belong to a key, with a god's-eye tally of each key's jobs in flight (queued or in service) for a check of concurrent work per key, and the most jobs it ever held at once.
//!
//! What a check of "at most one load of a key at a time" needs from an origin behind a cache
//! (or of one charge per payment from a provider): [`Keyed`] wraps a [`Station`] and adds 1
//! to the tally `name` under the job's key when it offers a job, and takes 1 away when the job
//! finishes or a crash loses it. A check then reads `w.tallied` — the tallies changed in this
//! step — and needs no scan of the queue. The tally is instrumentation: nothing a node does
//! reads it. The station itself is public: its server count, service and slow-down change live
//! as any station's (but not `Full::Hold`: a job on hold is neither in flight nor handed back).

use crate::parts::station::{Finished, Offer, Slot, Station};
use faultline_core::{Ctx, Node, NodeView, Tone};

#[derive(Clone, Debug)]
pub struct Keyed<J> {
    pub station: Station<J>,
    /// The tally's name, and each job's key in it.
    name: &'static str,
    key: fn(&J) -> u64,
    /// The most jobs held (queued or in service) at once.
    peak: usize,
}

impl<J> Keyed<J> {
    pub fn new(station: Station<J>, name: &'static str, key: fn(&J) -> u64) -> Keyed<J> {
        Keyed { station, name, key, peak: 0 }
    }

    /// Offers a job (tallied under its key while it is held); see [`Station::offer`].
    pub fn offer<N: Node>(&mut self, job: J, ctx: &mut Ctx<N>, timer: impl Fn(Slot) -> N::Timer) -> Offer<J> {
        ctx.tally(self.name, (self.key)(&job), 1);
        let offer = self.station.offer(job, ctx, timer);
        debug_assert!(!matches!(offer, Offer::OnHold), "a job on hold is neither in flight nor handed back");
        if let Offer::Rejected(job) | Offer::Blocked(job) = &offer {
            ctx.tally(self.name, (self.key)(job), -1);
        }
        self.peak = self.peak.max(self.station.held());
        offer
    }

    /// A completion timer fired: the finished job, no longer tallied; see [`Station::done`].
    pub fn done<N: Node>(
        &mut self,
        slot: Slot,
        ctx: &mut Ctx<N>,
        timer: impl Fn(Slot) -> N::Timer,
    ) -> Option<Finished<J>> {
        let finished = self.station.done(slot, ctx, timer)?;
        ctx.tally(self.name, (self.key)(&finished.job), -1);
        Some(finished)
    }

    /// Loses every job held (a crash), each taken off the tally; see [`Station::crash`].
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<J> {
        let lost = self.station.crash(ctx);
        lost.iter().for_each(|job| ctx.tally(self.name, (self.key)(job), -1));
        lost
    }

    /// The most jobs held at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Gauges of the servers busy (named `busy`) and the jobs queued (against `queue_scale`),
    /// and a badge while the station is slowed down.
    pub fn view(&self, view: NodeView, busy: &'static str, queue_scale: i64) -> NodeView {
        let (s, slow) = (&self.station, self.station.slowdown_pct());
        view.gauge(busy, s.busy() as i64, s.servers() as i64)
            .gauge("queued", s.queue_len() as i64, queue_scale)
            .badge_if(slow > 100, format!("slow ×{}", slow / 100), Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::station::Service;
    use crate::parts::testing::NoMsg;
    use faultline_core::*;

    static SPEC: ScenarioSpec = ScenarioSpec {
        checks: &[CheckSpec::new("tally-is-held", "Tally is held", "Each key's tally is its jobs held.")],
        ..ScenarioSpec::bare("keyed-test", |_| panic!("built by the test"))
    };

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Arrive,
        Done(Slot),
        Crash,
    }

    /// Jobs on 4 keys arriving every 3 ms at 2 servers of 10 ms (a queue builds), and a crash
    /// of the workers at 500 ms (not the node: the station's own `crash`).
    #[derive(Clone, Debug)]
    struct Origin {
        k: Keyed<u64>,
        sent: u64,
        finished: u64,
    }

    impl Node for Origin {
        type Msg = NoMsg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            ctx.set_timer(1, Timer::Arrive);
            ctx.set_timer(500 * MICROS_PER_MS, Timer::Crash);
        }
        fn on_message(&mut self, _: NodeId, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            match timer {
                Timer::Arrive if self.sent < 300 => {
                    let _ = self.k.offer(self.sent % 4, ctx, Timer::Done);
                    self.sent += 1;
                    ctx.set_timer(3 * MICROS_PER_MS, Timer::Arrive);
                }
                Timer::Arrive => {}
                Timer::Done(slot) => self.finished += self.k.done(slot, ctx, Timer::Done).is_some() as u64,
                Timer::Crash => _ = self.k.crash(ctx),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "origin")
        }
    }

    #[test]
    fn each_keys_tally_is_its_jobs_held_at_every_step_crash_included() {
        let setup = Setup { spec: &SPEC, recipe: Recipe::new("keyed-test", "only", 1) };
        let mut sim: Sim<Origin> = Sim::new(&setup, Link::local());
        sim.keep_trace(false);
        let station = Station::new(2, Service::Constant(10 * MICROS_PER_MS));
        sim.add_node(Origin { k: Keyed::new(station, "jobs", |&key| key), sent: 0, finished: 0 });
        sim.check("tally-is-held", |w| {
            let s = &w.nodes[0].k.station;
            for key in 0..4 {
                let held = s.queued().chain(s.in_service()).filter(|&&k| k == key).count() as i64;
                if w.tally("jobs", key) != held {
                    return Err(format!("key {key}: tally {}, held {held}", w.tally("jobs", key)));
                }
            }
            Ok(())
        });
        sim.run_until(Time::from_secs(2), u64::MAX);
        assert!(sim.checks().iter().all(|c| c.violation.is_none()), "{:?}", sim.checks());
        let o = &sim.nodes()[0];
        // 3 ms arrivals against 5 ms per job: the queue grows by 1 every 7.5 ms, so by the crash
        // at 500 ms about 500/3 − 500/5 ≈ 67 jobs are held; after it, the last ones drain.
        assert!((60..=70).contains(&o.k.peak()), "peak {}", o.k.peak());
        assert_eq!(o.sent, 300);
        assert!(o.finished < 300, "the crash lost some");
    }
}
