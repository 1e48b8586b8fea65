//! A station sized by its capacity in requests a second, with the load offered to it over the last window.
//!
//! [`Metered`] wraps a [`Station`] of c servers whose exponential service has mean c / capacity
//! (so c busy servers finish `capacity` jobs a second: M/M/c with μ = capacity / c), bounded
//! with a queue that refuses what does not fit. Every offer, refused or not, is counted in a
//! sliding-window counter kept in true time (`ctx.truth()`: it instruments, it decides
//! nothing), so a check can say "this node was offered more than its capacity in the last
//! second" and a view can show the rate against the capacity.

use crate::parts::station::{Full, Offer, Service, Slot, Station};
use crate::parts::window::SlidingCounter;
use faultline_core::{Ctx, Micros, Node, NodeView, Time, Tone};

#[derive(Clone, Debug)]
pub struct Metered<J> {
    pub queue: Station<J>,
    load: SlidingCounter,
    window_us: Micros,
    /// The offered load over the window as last counted (at the last offer).
    pub rate: u64,
    pub capacity_rps: u64,
}

impl<J> Metered<J> {
    /// `servers` serving `capacity_rps` together, a queue of `queue` (refusing the rest), the
    /// offered load counted over `window_us`.
    pub fn new(servers: u32, capacity_rps: i64, queue: usize, window_us: Micros) -> Self {
        let station = Station::new(servers, Service::Constant(1)).bounded(queue, Full::Reject);
        let mut m =
            Metered { queue: station, load: SlidingCounter::new(window_us), window_us, rate: 0, capacity_rps: 0 };
        m.set_capacity(capacity_rps);
        m
    }

    pub fn set_capacity(&mut self, capacity_rps: i64) {
        let mean_us = (self.queue.servers() as u64 * 1_000_000 / capacity_rps.max(1) as u64).max(1);
        self.queue.set_service(Service::Exponential { mean_us });
        self.capacity_rps = capacity_rps.max(1) as u64;
    }

    /// Counts the job's arrival and offers it; hands it back if the queue is full.
    pub fn offer<N: Node>(&mut self, job: J, ctx: &mut Ctx<N>, timer: impl Fn(Slot) -> N::Timer) -> Option<J> {
        self.load.hit(ctx.truth(), 1);
        self.rate = self.load.count(ctx.truth());
        match self.queue.offer(job, ctx, timer) {
            Offer::Rejected(job) => Some(job),
            _ => None,
        }
    }

    /// Jobs offered in the window ending at `now` (true time).
    pub fn offered(&self, now: Time) -> u64 {
        self.load.count(now)
    }

    /// Loses the queue and the jobs in service (a crash); the count starts again.
    pub fn crash<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<J> {
        (self.load, self.rate) = (SlidingCounter::new(self.window_us), 0);
        self.queue.crash(ctx)
    }

    /// Gauges for the offered rate against the capacity and the queue, and `busy` past the capacity.
    pub fn view(&self, view: NodeView, unit: &'static str, busy: &'static str) -> NodeView {
        view.gauge(unit, self.rate as i64, self.capacity_rps as i64)
            .gauge("queued", self.queue.queue_len() as i64, self.queue.queue_capacity().unwrap_or(1) as i64)
            .badge_if(self.rate > self.capacity_rps, busy, Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::arrivals::OpenLoop;
    use crate::parts::testing::run_alone;
    use faultline_core::{Label, NodeKind, MICROS_PER_S};

    #[derive(Clone, Debug)]
    enum Msg {}

    impl Label for Msg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Arrive,
        Done(Slot),
    }

    /// Poisson arrivals offered to a metered station; the largest windowed count seen.
    #[derive(Clone, Debug)]
    struct Fed {
        m: Metered<()>,
        src: OpenLoop,
        peak: u64,
    }

    impl Node for Fed {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.src.start(ctx, Timer::Arrive);
        }
        fn on_message(&mut self, _: faultline_core::NodeId, msg: Msg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            match timer {
                Timer::Arrive => {
                    self.src.on_timer(ctx, Timer::Arrive);
                    let _ = self.m.offer((), ctx, Timer::Done);
                    self.peak = self.peak.max(self.m.rate);
                }
                Timer::Done(slot) => _ = self.m.queue.done(slot, ctx, Timer::Done),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Service, 0, "fed")
        }
    }

    #[test]
    fn capacity_sets_mm_c_service_and_the_window_counts_the_offered_rate() {
        // Capacity 1,000/s over 4 servers: μ = 250/s each. Offered 600/s for 200 s, the mean
        // busy servers are λ/μ = 2.4 (utilisation 0.6); 120,000 jobs estimate it to well
        // under 1% (±3%). The window counts ≈ 600 a second, Poisson: its largest second over
        // 200 s is within 600 ± 5·√600 ≈ 600 ± 122, and so never past the capacity.
        let m = Metered::new(4, 1000, 10_000, MICROS_PER_S);
        let fed = run_alone(Fed { m, src: OpenLoop::poisson(600.0), peak: 0 }, 3, Time::from_secs(200));
        let busy = fed.m.queue.mean_busy(Time::from_secs(200));
        assert!((busy / 2.4 - 1.0).abs() < 0.03, "mean busy {busy}, λ/μ = 2.4");
        assert!((600..=722).contains(&fed.peak) && fed.peak < fed.m.capacity_rps, "peak {}", fed.peak);
        assert!((450..=750).contains(&fed.m.offered(Time::from_secs(200))));
    }
}
