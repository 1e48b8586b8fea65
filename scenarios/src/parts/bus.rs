//! An event bus on the broker's queue: each event lost at publish with a given chance, the rest delivered a fixed delay later to subscribers that long-poll and acknowledge.
//!
//! What invalidation buses look like from a cache: a change event is published after the
//! commit, reaches the subscriber after the bus's lag (a consumer group behind, a batching
//! relay), and sometimes never — Redis pub/sub drops what a disconnected subscriber misses,
//! and a fire-and-forget publish dies with its connection. Loss is drawn once per event at
//! publish (at most once past that point the queue delivers at least once: an unacknowledged
//! event comes back after the visibility timeout). The queue is a [`Broker`]; the subscribers'
//! long polls are [`Consumers`], and a subscriber asks again with each acknowledgement.

use crate::parts::broker::{Broker, Consumers, Delivery, MsgId};
use faultline_core::{Ctx, Micros, Node, NodeId, NodeView, Ppm, Tone};

/// The queue, its waiting subscribers and the events lost so far.
#[derive(Clone, Debug)]
pub struct Bus<J> {
    queue: Broker<J>,
    subscribers: Consumers,
    lost: u64,
}

/// How a bus node sends a delivery: its timer for the queue's next wake, and its message.
pub struct Wiring<N: Node, J> {
    pub timer: N::Timer,
    pub wrap: fn(Delivery<J>) -> N::Msg,
}

impl<J: Clone> Bus<J> {
    /// A bus whose deliveries come back unless acknowledged within `visibility_us`.
    pub fn new(visibility_us: Micros) -> Bus<J> {
        Bus { queue: Broker::new(visibility_us), subscribers: Consumers::default(), lost: 0 }
    }

    /// Publishes `job`: lost with chance `loss` (`false`), else delivered `delay_us` from now.
    pub fn publish<N: Node>(&mut self, job: J, delay_us: Micros, loss: Ppm, ctx: &mut Ctx<N>, w: Wiring<N, J>) -> bool {
        let kept = !ctx.rng().chance(loss);
        if kept {
            self.queue.send(job, ctx.now(), delay_us);
        } else {
            self.lost += 1;
        }
        self.dispatch(ctx, w);
        kept
    }

    /// `who` asks for the next event, acknowledging `done` (the one it just handled), if any.
    pub fn ask<N: Node>(&mut self, who: NodeId, done: Option<(MsgId, u64)>, ctx: &mut Ctx<N>, w: Wiring<N, J>) {
        if let Some((id, receipt)) = done {
            self.queue.ack(id, receipt);
        }
        self.subscribers.ask(who);
        self.dispatch(ctx, w);
    }

    /// Hands out what is due to waiting subscribers (call when the wake timer rings, too).
    pub fn dispatch<N: Node>(&mut self, ctx: &mut Ctx<N>, w: Wiring<N, J>) {
        let wrap = w.wrap;
        self.subscribers.dispatch(&mut self.queue, ctx, w.timer, |ctx, who, d| ctx.send(who, wrap(d)));
    }

    /// A (re)start of the bus node: the queue is durable, the long polls were not; `all` are
    /// taken to be asking.
    pub fn restarted<N: Node>(&mut self, all: impl IntoIterator<Item = NodeId>, ctx: &mut Ctx<N>, w: Wiring<N, J>) {
        self.subscribers.restarted(all);
        self.dispatch(ctx, w);
    }

    /// The bus node crashed: the waiting subscribers are forgotten.
    pub fn crashed(&mut self) {
        self.subscribers.clear();
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn queue(&self) -> &Broker<J> {
        &self.queue
    }

    /// `v` with the queue's gauges, the events not yet due, and a badge for those lost.
    pub fn gauges(&self, v: NodeView) -> NodeView {
        let delayed = self.queue.delayed() as i64;
        self.queue.gauges(v).gauge("delayed", delayed, delayed.max(100)).badge_if(
            self.lost > 0,
            format!("{} lost", self.lost),
            Tone::Bad,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Label, NodeKind, Time};

    #[derive(Clone, Debug)]
    struct Alone {
        bus: Bus<u32>,
        got: Vec<(Time, u32)>,
        published: u32,
    }

    #[derive(Clone, Debug, Label)]
    enum Msg {
        Event(Delivery<u32>),
    }

    #[derive(Clone, Debug, Label)]
    enum Timer {
        Publish,
        Wake,
    }

    fn wiring() -> Wiring<Alone, u32> {
        Wiring { timer: Timer::Wake, wrap: Msg::Event }
    }

    impl Node for Alone {
        type Msg = Msg;
        type Timer = Timer;
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            // The node is its own subscriber; it publishes every millisecond, 10% lost, 50 ms late.
            self.bus.restarted([0], ctx, wiring());
            ctx.set_timer(1_000, Timer::Publish);
        }
        fn on_message(&mut self, _: NodeId, Msg::Event(d): Msg, ctx: &mut Ctx<Self>) {
            self.got.push((ctx.now(), d.job));
            self.bus.ask(0, Some((d.id, d.receipt)), ctx, wiring());
        }
        fn on_timer(&mut self, t: Timer, ctx: &mut Ctx<Self>) {
            match t {
                Timer::Publish if self.published < 20_000 => {
                    self.published += 1;
                    let job = ctx.now().micros() as u32;
                    self.bus.publish(job, 50_000, Ppm::from_percent(10), ctx, wiring());
                    ctx.set_timer(1_000, Timer::Publish);
                }
                Timer::Publish => {}
                Timer::Wake => self.bus.dispatch(ctx, wiring()),
            }
        }
        fn view(&self) -> NodeView {
            self.bus.gauges(NodeView::new(NodeKind::Queue, 0, "bus"))
        }
    }

    #[test]
    fn events_arrive_their_delay_late_in_order_and_a_share_is_lost() {
        // 20,000 events, each lost with p = 0.1: the count lost is Binomial(20,000, 0.1), mean
        // 2,000 and standard deviation 42 — ±200 is almost 5 of them. The rest arrive exactly
        // 50 ms after they were published (the node is its own subscriber: no link delay),
        // in order, each once, and all are acknowledged.
        let node = Alone { bus: Bus::new(1_000_000), got: Vec::new(), published: 0 };
        let done = crate::parts::testing::run_alone(node, 4, Time::from_secs(30));
        assert_eq!(done.published, 20_000);
        assert_eq!(done.got.len() as u64 + done.bus.lost(), 20_000);
        assert!((done.bus.lost() as i64 - 2_000).abs() < 200, "{} lost", done.bus.lost());
        assert!(done.got.iter().all(|&(at, job)| at.micros() == job as u64 + 50_000));
        assert!(done.got.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!((done.bus.queue().in_flight(), done.bus.queue().redelivered()), (0, 0));
    }
}
