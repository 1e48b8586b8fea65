//! Benchmark models shared by the native bench (`cargo bench`) and the WASM bench in
//! Chromium: ping-pong pairs and an M/M/1 queue, each on the engine and as a bare
//! `BinaryHeap` loop with the same semantics, so the engine's overhead is a ratio.

use faultline_core::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "bench",
        title: "Benchmark",
        category: "Bench",
        seeds: &[],
        summary: "",
        note: Note { what_can_go_wrong: "", what_you_sacrifice: "", at_10x: "", resembles: "", try_this: &[] },
    },
    params: &[],
    strategies: &[StrategySpec { id: "x", label: "", naive: false, help: "" }],
    faults: &[],
    checks: &[],
    metrics: &[],
    layout: Layout::Tiers,
    default_until: MICROS_PER_S,
    sample_every: u64::MAX / 4,
    build: |_| unreachable!(),
};

#[derive(Clone, Debug)]
pub enum Msg {
    Ball,
    Job,
}
impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Ball => "ball",
            Msg::Job => "job",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Tick {
    Arrive,
    Done,
}
impl Label for Tick {
    fn label(&self) -> &'static str {
        match self {
            Tick::Arrive => "arrive",
            Tick::Done => "done",
        }
    }
}

/// Ping-pong players (node 2k and 2k+1 are a pair), or an M/M/1 source and server.
#[derive(Clone, Debug)]
pub enum B {
    Player { serve: bool, partner: NodeId },
    Source { mean_gap: f64 },
    Server { mean_service: f64, queue: u64, busy: bool },
}

impl Node for B {
    type Msg = Msg;
    type Timer = Tick;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            B::Player { serve: true, partner } => ctx.send(*partner, Msg::Ball),
            B::Source { mean_gap } => {
                let g = ctx.rng().exponential(*mean_gap) as Micros;
                ctx.set_timer(g.max(1), Tick::Arrive);
            }
            _ => {}
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match self {
            B::Player { .. } => ctx.send(from, msg),
            B::Server { mean_service, queue, busy } => {
                if *busy {
                    *queue += 1;
                } else {
                    *busy = true;
                    let s = ctx.rng().exponential(*mean_service) as Micros;
                    ctx.set_timer(s.max(1), Tick::Done);
                }
            }
            B::Source { .. } => {}
        }
    }
    fn on_timer(&mut self, t: Tick, ctx: &mut Ctx<Self>) {
        match (self, t) {
            (B::Source { mean_gap }, Tick::Arrive) => {
                ctx.send(1, Msg::Job);
                let g = ctx.rng().exponential(*mean_gap) as Micros;
                ctx.set_timer(g.max(1), Tick::Arrive);
            }
            (B::Server { mean_service, queue, busy }, Tick::Done) => {
                ctx.count("served", 1);
                if *queue > 0 {
                    *queue -= 1;
                    let s = ctx.rng().exponential(*mean_service) as Micros;
                    ctx.set_timer(s.max(1), Tick::Done);
                } else {
                    *busy = false;
                }
            }
            _ => {}
        }
    }
    fn view(&self) -> NodeView {
        NodeView::new(NodeKind::Service, 0, "")
    }
}

fn setup() -> Setup {
    Setup { spec: &SPEC, recipe: Recipe::new("bench", "x", 1) }
}

/// `pairs` ping-pong pairs on the engine, with a uniform 1–100 µs latency.
pub fn engine_pingpong(pairs: u32, events: u64) -> u64 {
    pingpong(pairs, events, false)
}

/// The same, keeping the trace with details as the browser player does (for its event log).
pub fn engine_pingpong_traced(pairs: u32, events: u64) -> u64 {
    pingpong(pairs, events, true)
}

fn pingpong(pairs: u32, events: u64, traced: bool) -> u64 {
    let mut sim: Sim<B> = Sim::new(&setup(), Link::with_latency(Latency::Uniform { lo: 1, hi: 100 }));
    for p in 0..pairs {
        sim.add_node(B::Player { serve: true, partner: 2 * p + 1 });
        sim.add_node(B::Player { serve: false, partner: 2 * p });
    }
    sim.keep_trace(traced);
    let mut n = 0;
    while n < events && sim.step() {
        n += 1;
    }
    n
}

/// An M/M/1 queue at ρ = 0.9 on the engine (zero-latency link from source to server).
pub fn engine_mm1(events: u64) -> u64 {
    let mut sim: Sim<B> = Sim::new(&setup(), Link::local());
    sim.add_node(B::Source { mean_gap: 100.0 });
    sim.add_node(B::Server { mean_service: 90.0, queue: 0, busy: false });
    sim.keep_trace(false);
    let mut n = 0;
    while n < events && sim.step() {
        n += 1;
    }
    n
}

/// The same ping-pong as a bare heap loop: (time, seq, from, to).
pub fn bare_pingpong(pairs: u32, events: u64) -> u64 {
    let mut rng = Rng::new(1);
    let mut heap = BinaryHeap::with_capacity(pairs as usize * 2);
    let mut seq = 0u64;
    for p in 0..pairs {
        heap.push(Reverse((rng.range(1, 100), seq, 2 * p, 2 * p + 1)));
        seq += 1;
    }
    let mut n = 0;
    while n < events {
        let Some(Reverse((t, _, from, to))) = heap.pop() else { break };
        n += 1;
        heap.push(Reverse((t + rng.range(1, 100), seq, to, from)));
        seq += 1;
    }
    n
}

/// The same M/M/1 as a bare heap loop: (time, seq, kind).
pub fn bare_mm1(events: u64) -> u64 {
    let mut rng = Rng::new(1);
    let mut heap = BinaryHeap::new();
    let (mut seq, mut queue, mut busy, mut served) = (0u64, 0u64, false, 0u64);
    heap.push(Reverse((rng.exponential(100.0) as u64, seq, 0u8)));
    let mut n = 0;
    while n < events {
        let Some(Reverse((t, _, kind))) = heap.pop() else { break };
        n += 1;
        seq += 1;
        if kind == 0 {
            heap.push(Reverse((t + (rng.exponential(100.0) as u64).max(1), seq, 0)));
            seq += 1;
            heap.push(Reverse((t, seq, 1))); // the job reaches the server
        } else if kind == 1 {
            if busy {
                queue += 1;
            } else {
                busy = true;
                heap.push(Reverse((t + (rng.exponential(90.0) as u64).max(1), seq, 2)));
            }
        } else {
            served += 1;
            if queue > 0 {
                queue -= 1;
                heap.push(Reverse((t + (rng.exponential(90.0) as u64).max(1), seq, 2)));
            } else {
                busy = false;
            }
        }
    }
    std::hint::black_box(served);
    n
}

/// Every benchmark: (name, engine run, bare run), each taking an event budget.
pub type Case = (&'static str, fn(u64) -> u64, fn(u64) -> u64);

pub fn cases() -> Vec<Case> {
    vec![
        ("ping-pong, 1 pair", |e| engine_pingpong(1, e), |e| bare_pingpong(1, e)),
        ("ping-pong, 1k pairs", |e| engine_pingpong(1_000, e), |e| bare_pingpong(1_000, e)),
        ("ping-pong, 100k pairs", |e| engine_pingpong(100_000, e), |e| bare_pingpong(100_000, e)),
        ("ping-pong, 1k, traced", |e| engine_pingpong_traced(1_000, e), |e| bare_pingpong(1_000, e)),
        ("M/M/1, rho 0.9", engine_mm1, bare_mm1),
    ]
}
