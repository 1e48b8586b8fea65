//! A link's bandwidth shared by the transfers on it: n at once each send at min(cap, B/n) bytes a second (the fair share TCP flows settle to, each capped by its window over the round trip), with one timer for the next to finish.
//!
//! How a scenario uses it: `let id = up.start(ctx, item, bytes, Timer::Sent)`; on
//! `Timer::Sent`, `up.finished(ctx, Timer::Sent)` gives the items whose last byte just left
//! (send each as a message: the link's latency is the propagation after it). A dropped
//! connection is `up.abort(ctx)`: the transfers in progress and the bytes each had sent.
//! Bytes are counted exactly: what is left is kept in byte-microseconds, and a flow at r
//! bytes a second drains r of them each microsecond.

use faultline_core::{Ctx, Node, Time, TimerId, MICROS_PER_S};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Flow<T> {
    item: T,
    bytes: u64,
    /// What is left to send, in byte-microseconds (bytes × 10⁶).
    left: u64,
}

/// The transfers on one link and the bandwidth they share.
#[derive(Clone, Debug)]
pub struct Uplink<T> {
    bandwidth_bps: u64,
    cap_bps: u64,
    flows: BTreeMap<u64, Flow<T>>,
    next: u64,
    /// When `left` was last brought up to date, in true time: bytes flow by physics, not by
    /// the node's clock (a clock stepped forward must not finish a transfer).
    since: Time,
    timer: Option<TimerId>,
}

impl<T: Clone> Uplink<T> {
    /// A link of `bandwidth_bps` bytes a second, each transfer at most `cap_bps`.
    pub fn new(bandwidth_bps: u64, cap_bps: u64) -> Uplink<T> {
        Uplink { bandwidth_bps, cap_bps, flows: BTreeMap::new(), next: 0, since: Time::ZERO, timer: None }
    }

    /// Each transfer's rate now, bytes a second: B/n, at most the cap (B shared integer-wise:
    /// under n bytes a second of B go unused).
    pub fn rate_bps(&self) -> u64 {
        (self.bandwidth_bps / self.flows.len().max(1) as u64).min(self.cap_bps).max(1)
    }

    /// Starts sending `item`, `bytes` long: its transfer id.
    pub fn start<N: Node>(&mut self, ctx: &mut Ctx<N>, item: T, bytes: u64, timer: N::Timer) -> u64 {
        self.advance(ctx.truth());
        self.next += 1;
        self.flows.insert(self.next, Flow { item, bytes, left: bytes.max(1) * MICROS_PER_S });
        self.reschedule(ctx, timer);
        self.next
    }

    /// At the timer: the items whose last byte has left, in the order they were started.
    pub fn finished<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) -> Vec<T> {
        self.timer = None;
        self.advance(ctx.truth());
        let done: Vec<u64> = self.flows.iter().filter(|(_, f)| f.left == 0).map(|(&id, _)| id).collect();
        let out = done.into_iter().filter_map(|id| self.flows.remove(&id)).map(|f| f.item).collect();
        self.reschedule(ctx, timer);
        out
    }

    /// New bandwidth and cap from now on (what was sent so far at the old rates stays sent).
    pub fn set_rates<N: Node>(&mut self, ctx: &mut Ctx<N>, bandwidth_bps: u64, cap_bps: u64, timer: N::Timer) {
        self.advance(ctx.truth());
        (self.bandwidth_bps, self.cap_bps) = (bandwidth_bps.max(1), cap_bps.max(1));
        self.reschedule(ctx, timer);
    }

    /// The connection dropped (or the sender crashed): every transfer in progress, with the
    /// bytes it had sent — wasted, since a chunk cut short is not stored.
    pub fn abort<N: Node>(&mut self, ctx: &mut Ctx<N>) -> Vec<(T, u64)> {
        self.advance(ctx.truth());
        if let Some(t) = self.timer.take() {
            ctx.cancel_timer(t);
        }
        let flows = std::mem::take(&mut self.flows);
        flows.into_values().map(|f| (f.item, f.bytes - f.left.div_ceil(MICROS_PER_S))).collect()
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    fn advance(&mut self, now: Time) {
        let drained = self.rate_bps().saturating_mul(now.since(self.since));
        for f in self.flows.values_mut() {
            f.left = f.left.saturating_sub(drained);
        }
        self.since = now;
    }

    fn reschedule<N: Node>(&mut self, ctx: &mut Ctx<N>, timer: N::Timer) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_timer(t);
        }
        if let Some(least) = self.flows.values().map(|f| f.left).min() {
            self.timer = Some(ctx.set_timer(least.div_ceil(self.rate_bps()), timer));
        }
    }
}

/// A connection that drops (a phone on the move): connected for an exponential time — the
/// drops a Poisson process while connected — then offline for a while before it reconnects.
#[derive(Clone, Debug)]
pub struct Drops {
    pub online: bool,
    timer: Option<TimerId>,
}

impl Default for Drops {
    fn default() -> Self {
        Drops { online: true, timer: None }
    }
}

impl Drops {
    /// (Re)draws the time to the next drop, mean `mean_us` (none at 0). Drawing again when
    /// the mean changes is fair: the exponential has no memory.
    pub fn schedule<N: Node>(&mut self, ctx: &mut Ctx<N>, mean_us: u64, timer: N::Timer) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_timer(t);
        }
        if mean_us > 0 && self.online {
            let after = ctx.rng().exponential(mean_us as f64) as u64;
            self.timer = Some(ctx.set_timer(after.max(1), timer));
        }
    }

    /// Connected (again): the next drop drawn.
    pub fn connect<N: Node>(&mut self, ctx: &mut Ctx<N>, mean_us: u64, timer: N::Timer) {
        self.online = true;
        self.schedule(ctx, mean_us, timer);
    }

    /// Drops now, for `offline_us` (then `reconnect` fires): false if it was offline already.
    pub fn drop<N: Node>(&mut self, ctx: &mut Ctx<N>, offline_us: u64, reconnect: N::Timer) -> bool {
        if !std::mem::replace(&mut self.online, false) {
            return false;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_timer(t);
        }
        ctx.set_timer(offline_us.max(1), reconnect);
        true
    }

    /// A crash killed the timers; the restart connects again.
    pub fn crashed(&mut self) {
        self.timer = None;
    }
}

/// The time (µs) `bytes` take alone on a link of `bandwidth_bps` capped at `cap_bps`.
pub fn alone_us(bytes: u64, bandwidth_bps: u64, cap_bps: u64) -> u64 {
    (bytes * MICROS_PER_S).div_ceil(bandwidth_bps.min(cap_bps).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{run_alone, NoMsg};
    use faultline_core::{Label, NodeKind, NodeView};

    /// Starts transfers at given times (ms, bytes), aborts all at `abort_ms`; records when
    /// each finished (µs) and what an abort returned.
    #[derive(Clone, Debug)]
    struct Sender {
        up: Uplink<u32>,
        plan: Vec<(u64, u64)>,
        abort_ms: Option<u64>,
        done: Vec<(u32, u64)>,
        aborted: Vec<(u32, u64)>,
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Start(u32),
        Sent,
        Abort,
    }

    impl Node for Sender {
        type Msg = NoMsg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            for (i, &(at_ms, _)) in self.plan.iter().enumerate() {
                ctx.set_timer(at_ms * 1000, Timer::Start(i as u32));
            }
            if let Some(a) = self.abort_ms {
                ctx.set_timer(a * 1000, Timer::Abort);
            }
        }
        fn on_message(&mut self, _: u32, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
            match timer {
                Timer::Start(i) => {
                    self.up.start(ctx, i, self.plan[i as usize].1, Timer::Sent);
                }
                Timer::Sent => {
                    let now = ctx.now().micros();
                    self.done.extend(self.up.finished(ctx, Timer::Sent).into_iter().map(|i| (i, now)));
                }
                Timer::Abort => self.aborted = self.up.abort(ctx),
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "sender")
        }
    }

    fn run(bandwidth: u64, cap: u64, plan: &[(u64, u64)], abort_ms: Option<u64>) -> Sender {
        let s =
            Sender { up: Uplink::new(bandwidth, cap), plan: plan.to_vec(), abort_ms, done: vec![], aborted: vec![] };
        run_alone(s, 1, Time::from_secs(1000))
    }

    #[test]
    fn one_transfer_alone_takes_its_bytes_over_the_lesser_of_bandwidth_and_cap() {
        assert_eq!(run(1_000_000, u64::MAX, &[(0, 2_000_000)], None).done, vec![(0, 2_000_000)]);
        // A 64 KB window over a 100 ms round trip: 640 KB/s, whatever the link could do.
        assert_eq!(run(1_000_000, 640_000, &[(0, 1_280_000)], None).done, vec![(0, 2_000_000)]);
        assert_eq!(alone_us(1_280_000, 1_000_000, 640_000), 2_000_000);
    }

    #[test]
    fn n_transfers_together_share_the_bandwidth_and_finish_together() {
        let s = run(1_000_000, u64::MAX, &[(0, 500_000); 4], None);
        assert_eq!(s.done, (0..4).map(|i| (i, 2_000_000)).collect::<Vec<_>>(), "4 × 0.5 MB at 1 MB/s: 2 s");
        // Capped below their share, each goes at its cap and the link is not full.
        let s = run(1_000_000, 100_000, &[(0, 100_000); 4], None);
        assert!(s.done.iter().all(|&(_, t)| t == 1_000_000), "{:?}", s.done);
    }

    #[test]
    fn the_link_is_work_conserving_when_a_transfer_joins_midway() {
        // A alone for 0.5 s sends half; then both at 0.5 MB/s: A's other half takes 1 s
        // (done at 1.5 s), B has half left then and finishes alone at 2 s — 2 MB in 2 s.
        let s = run(1_000_000, u64::MAX, &[(0, 1_000_000), (500, 1_000_000)], None);
        assert_eq!(s.done, vec![(0, 1_500_000), (1, 2_000_000)]);
    }

    #[test]
    fn an_abort_hands_back_each_transfer_with_the_bytes_it_had_sent() {
        let s = run(1_000_000, u64::MAX, &[(0, 1_000_000), (0, 1_000_000), (1000, 300_000)], Some(1_500));
        // 1 s of two at 0.5 MB/s, then 0.5 s of three at 333,333 B/s (each 166,666.5 B).
        assert!(s.done.is_empty());
        let sent: Vec<u64> = s.aborted.iter().map(|&(_, b)| b).collect();
        assert_eq!(sent, vec![666_666, 666_666, 166_666]);
    }

    /// Connects, drops at each timer for 2 s, and counts drops and the time online.
    #[derive(Clone, Debug)]
    struct Phone {
        link: Drops,
        drops: u64,
        online_us: u64,
        since: u64,
    }

    #[derive(Clone, Debug, Label)]
    enum PhoneTimer {
        Drop,
        Back,
    }

    impl Node for Phone {
        type Msg = NoMsg;
        type Timer = PhoneTimer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            self.link.connect(ctx, 8_000_000, PhoneTimer::Drop);
        }
        fn on_message(&mut self, _: u32, msg: NoMsg, _: &mut Ctx<Self>) {
            match msg {}
        }
        fn on_timer(&mut self, timer: PhoneTimer, ctx: &mut Ctx<Self>) {
            let now = ctx.now().micros();
            match timer {
                PhoneTimer::Drop => {
                    assert!(
                        self.link.drop(ctx, 2_000_000, PhoneTimer::Back) && !self.link.drop(ctx, 1, PhoneTimer::Back)
                    );
                    (self.drops, self.online_us) = (self.drops + 1, self.online_us + now - self.since);
                }
                PhoneTimer::Back => {
                    self.since = now;
                    self.link.connect(ctx, 8_000_000, PhoneTimer::Drop);
                }
            }
        }
        fn view(&self) -> NodeView {
            NodeView::new(NodeKind::Client, 0, "phone")
        }
    }

    #[test]
    fn drops_come_at_the_mean_rate_while_connected() {
        // Mean 8 s connected, 2 s offline: over 100,000 s about 10,000 cycles; the mean time
        // connected has an s.e. of 1% (exponential: s.d. = mean); within 4%.
        let p = Phone { link: Drops::default(), drops: 0, online_us: 0, since: 0 };
        let p = run_alone(p, 3, Time::from_secs(100_000));
        let mean_s = p.online_us as f64 / p.drops as f64 / 1e6;
        assert!((mean_s - 8.0).abs() < 0.32 && p.drops > 9_000, "{} drops, {mean_s:.2} s connected", p.drops);
    }
}
