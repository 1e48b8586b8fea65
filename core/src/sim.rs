//! The kernel: nodes with typed messages and timers, a context that records their effects,
//! and the loop that applies faults and actions, runs checks, samples metrics and traces.

use crate::fault::Fault;
use crate::frame::{CheckStatus, Frame, MsgFrame, NodeFrame, NodeView, Status, Violation};
use crate::metrics::{Metrics, Sampler};
use crate::net::{Cut, Fate, Link, Network, NodeId};
use crate::queue::{Class, EventQueue};
use crate::recipe::{Action, ActionKind, Recipe, RecipeError};
use crate::rng::Rng;
use crate::run::Run;
use crate::spec::{ScenarioSpec, Setup, Target};
use crate::time::{Micros, Time};
use crate::trace::{DropReason, Trace, TraceKind};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

/// A short static name for a message or timer variant: used in the trace and for colours.
pub trait Label {
    fn label(&self) -> &'static str;
}

/// Something the user changed while the run was going; every node hears it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Strategy(&'static str),
    Param {
        id: &'static str,
        value: i64,
    },
    /// A scenario-specific fault (targeted ones go to their node only).
    Custom {
        id: &'static str,
        value: i64,
    },
}

/// One simulated process. A scenario usually makes an enum of its node kinds implement this.
/// Handlers touch only their own state and the `Ctx`, which records effects for the kernel.
pub trait Node: Clone + 'static {
    type Msg: Clone + Debug + Label + 'static;
    type Timer: Clone + Debug + Label + 'static;

    /// At time 0, and again after each restart (volatile state was already dropped).
    fn on_start(&mut self, ctx: &mut Ctx<Self>);
    fn on_message(&mut self, from: NodeId, msg: Self::Msg, ctx: &mut Ctx<Self>);
    fn on_timer(&mut self, timer: Self::Timer, ctx: &mut Ctx<Self>);
    /// Drop volatile state; keep what the node would have on disk. The context is for
    /// accounting (metrics, notes): messages and timers set here are discarded.
    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {}
    fn on_control(&mut self, _control: Control, _ctx: &mut Ctx<Self>) {}
    fn view(&self) -> NodeView;
}

/// A timer handle, for cancelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerId(u64);

enum Effect<N: Node> {
    Send(NodeId, N::Msg),
    Timer(TimerId, Micros, N::Timer),
    Cancel(TimerId),
    Count(&'static str, i64),
    Gauge(&'static str, i64),
    Observe(&'static str, u64),
    Note(String),
    Crash(Option<Micros>),
    Inflict(Fault),
    Tally(&'static str, u64, i64),
}

/// What a handler may do. Everything is recorded and applied by the kernel afterwards.
pub struct Ctx<'a, N: Node> {
    me: NodeId,
    local_now: Time,
    true_now: Time,
    rng: &'a mut Rng,
    out: &'a mut Vec<Effect<N>>,
    next_timer: &'a mut u64,
    disk_factor: u32,
    params: &'a [i64],
    spec: &'static ScenarioSpec,
}

impl<N: Node> Ctx<'_, N> {
    pub fn me(&self) -> NodeId {
        self.me
    }
    /// This node's own clock (skewed and drifting if a fault says so).
    pub fn now(&self) -> Time {
        self.local_now
    }
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }
    pub fn send(&mut self, to: NodeId, msg: N::Msg) {
        self.out.push(Effect::Send(to, msg));
    }
    /// Fires after `after` microseconds of this node's clock.
    pub fn set_timer(&mut self, after: Micros, timer: N::Timer) -> TimerId {
        let id = TimerId(*self.next_timer);
        *self.next_timer += 1;
        self.out.push(Effect::Timer(id, after, timer));
        id
    }
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.out.push(Effect::Cancel(id));
    }
    pub fn count(&mut self, name: &'static str, delta: i64) {
        self.out.push(Effect::Count(name, delta));
    }
    pub fn gauge(&mut self, name: &'static str, value: i64) {
        self.out.push(Effect::Gauge(name, value));
    }
    pub fn observe(&mut self, name: &'static str, value: u64) {
        self.out.push(Effect::Observe(name, value));
    }
    /// A line in the event log, attached to this node.
    pub fn note(&mut self, text: impl Into<String>) {
        self.out.push(Effect::Note(text.into()));
    }
    /// True simulated time, for instrumenting checks and metrics only (`tally`, histograms
    /// of true latency). Node logic must use `now()`: reading the truth defeats clock faults.
    pub fn truth(&self) -> Time {
        self.true_now
    }
    /// Adds `delta` to a god's-eye tally keyed by name and an integer key (say, user and
    /// true-time window). Checks read tallies; nodes never do.
    pub fn tally(&mut self, name: &'static str, key: u64, delta: i64) {
        self.out.push(Effect::Tally(name, key, delta));
    }
    /// This node dies now (out of memory, a panic…) after its other effects are applied;
    /// a supervisor restarts it after `restart_after`, if given.
    pub fn crash(&mut self, restart_after: Option<Micros>) {
        self.out.push(Effect::Crash(restart_after));
    }
    /// Something happens to the world because of this node (it stalls in a GC pause, its
    /// clock drifts, it loses its link to a peer). Applied after the handler's other effects,
    /// and traced like any fault. For scenario faults that target "whoever leads now".
    pub fn inflict(&mut self, fault: Fault) {
        self.out.push(Effect::Inflict(fault));
    }
    /// How long a disk operation that normally takes `base` takes now.
    pub fn disk(&self, base: Micros) -> Micros {
        base.saturating_mul(self.disk_factor as u64)
    }
    /// A parameter's current value.
    pub fn param(&self, id: &str) -> i64 {
        param_value(self.spec, self.params, id)
    }
}

fn param_value(spec: &ScenarioSpec, params: &[i64], id: &str) -> i64 {
    let i = spec.params.iter().position(|p| p.id == id);
    params[i.unwrap_or_else(|| panic!("{} has no parameter `{id}`", spec.id()))]
}

/// What a check sees: every node, the metrics, the current parameters.
pub struct World<'a, N: Node> {
    pub nodes: &'a [N],
    pub metrics: &'a Metrics,
    /// The tallies changed by the event just processed, with their new values.
    pub tallied: &'a [(&'static str, u64, i64)],
    tallies: &'a BTreeMap<(&'static str, u64), i64>,
    pub now: Time,
    /// The node whose handler just ran, if any: lets checks stay O(1) per event.
    pub touched: Option<NodeId>,
    up: &'a [NodeRt],
    params: &'a [i64],
    spec: &'static ScenarioSpec,
}

impl<N: Node> World<'_, N> {
    pub fn param(&self, id: &str) -> i64 {
        param_value(self.spec, self.params, id)
    }
    pub fn is_up(&self, n: NodeId) -> bool {
        self.up[n as usize].up
    }
    pub fn tally(&self, name: &'static str, key: u64) -> i64 {
        self.tallies.get(&(name, key)).copied().unwrap_or(0)
    }
}

/// A named invariant, evaluated after every event until it first fails.
pub type CheckFn<N> = fn(&World<N>) -> Result<(), String>;

#[derive(Clone, Debug)]
struct NodeRt {
    up: bool,
    epoch: u32,
    paused_until: Time,
    /// Clock offset at `anchor`, and drift since then.
    skew: i64,
    drift_ppm: i32,
    anchor: Time,
    disk_factor: u32,
    disk_until: Time,
}

impl NodeRt {
    fn new() -> NodeRt {
        NodeRt {
            up: true,
            epoch: 0,
            paused_until: Time::ZERO,
            skew: 0,
            drift_ppm: 0,
            anchor: Time::ZERO,
            disk_factor: 1,
            disk_until: Time::ZERO,
        }
    }
    fn offset(&self, now: Time) -> i64 {
        let since = now.since(self.anchor) as i128;
        self.skew + (since * self.drift_ppm as i128 / 1_000_000) as i64
    }
    fn local(&self, now: Time) -> Time {
        Time((now.0 as i128 + self.offset(now) as i128).clamp(0, u64::MAX as i128) as u64)
    }
    /// True time for `d` of this node's clock to pass.
    fn true_duration(&self, d: Micros) -> Micros {
        if self.drift_ppm == 0 {
            return d;
        }
        let rate = 1_000_000i128 + self.drift_ppm as i128;
        (d as i128 * 1_000_000 / rate.max(1)) as Micros
    }
}

#[derive(Clone, Debug)]
enum Ev<N: Node> {
    Start(NodeId),
    Deliver { from: NodeId, to: NodeId, msg: N::Msg, id: u64, sent: Time },
    Timer { node: NodeId, id: TimerId, epoch: u32, timer: N::Timer },
    Control(u32),
}

/// A lost message kept briefly so the player can show it vanish.
#[derive(Clone, Debug)]
struct Drop {
    frame: MsgFrame,
    gone_at: Time,
}

const LOST_FADE: Micros = 400_000;
const RECENT: usize = 512;

/// A running simulation of one scenario.
#[derive(Clone)]
pub struct Sim<N: Node> {
    spec: &'static ScenarioSpec,
    recipe: Recipe,
    params: Vec<i64>,
    nodes: Vec<N>,
    rt: Vec<NodeRt>,
    net: Network,
    queue: EventQueue<Ev<N>>,
    /// Faults and actions, scheduled or done, with their times (events refer to them by index).
    controls: Vec<(Time, ActionKind)>,
    rng: Rng,
    now: Time,
    events: u64,
    next_msg: u64,
    next_timer: u64,
    live_timers: BTreeSet<TimerId>,
    metrics: Metrics,
    tallies: BTreeMap<(&'static str, u64), i64>,
    tallied: Vec<(&'static str, u64, i64)>,
    sampler: Sampler,
    trace: Trace,
    checks: Vec<(usize, CheckFn<N>)>,
    statuses: Vec<CheckStatus>,
    drops: VecDeque<Drop>,
    /// The latest deliveries, so a renderer can show traffic that is faster than a frame.
    recent: VecDeque<MsgFrame>,
    /// Reused between handler calls so recording effects allocates nothing.
    scratch: Vec<Effect<N>>,
}

impl<N: Node> Clone for Effect<N> {
    fn clone(&self) -> Self {
        match self {
            Effect::Send(to, m) => Effect::Send(*to, m.clone()),
            Effect::Timer(id, after, t) => Effect::Timer(*id, *after, t.clone()),
            Effect::Cancel(id) => Effect::Cancel(*id),
            Effect::Count(n, d) => Effect::Count(n, *d),
            Effect::Gauge(n, v) => Effect::Gauge(n, *v),
            Effect::Observe(n, v) => Effect::Observe(n, *v),
            Effect::Note(t) => Effect::Note(t.clone()),
            Effect::Crash(r) => Effect::Crash(*r),
            Effect::Inflict(f) => Effect::Inflict(f.clone()),
            Effect::Tally(n, k, d) => Effect::Tally(n, *k, *d),
        }
    }
}

impl<N: Node> Sim<N> {
    /// A run of `setup` whose links all behave like `default_link` unless overridden.
    pub fn new(setup: &Setup, default_link: Link) -> Sim<N> {
        let spec = setup.spec;
        let params = spec.params.iter().map(|p| setup.param(p.id)).collect();
        let measures = spec.metrics.iter().map(|m| m.measure).collect();
        let mut sim = Sim {
            spec,
            recipe: setup.recipe.clone(),
            params,
            nodes: Vec::new(),
            rt: Vec::new(),
            net: Network::new(default_link),
            queue: EventQueue::with_capacity(1024),
            controls: Vec::new(),
            rng: Rng::new(setup.recipe.seed),
            now: Time::ZERO,
            events: 0,
            next_msg: 0,
            next_timer: 0,
            live_timers: BTreeSet::new(),
            metrics: Metrics::default(),
            tallies: BTreeMap::new(),
            tallied: Vec::new(),
            sampler: Sampler::new(spec.sample_every, measures),
            trace: Trace::new(20_000),
            checks: Vec::new(),
            statuses: spec.checks.iter().map(|c| CheckStatus { id: c.id, label: c.label, violation: None }).collect(),
            drops: VecDeque::new(),
            recent: VecDeque::new(),
            scratch: Vec::new(),
        };
        for a in setup.recipe.actions.clone() {
            sim.schedule_control(a.at, a.kind);
        }
        sim
    }

    pub fn add_node(&mut self, node: N) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(node);
        self.rt.push(NodeRt::new());
        self.queue.push(Time::ZERO, Class::Normal, Ev::Start(id));
        id
    }

    pub fn net(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Adds a fault to the scenario's plan.
    pub fn schedule(&mut self, at: Time, fault: Fault) {
        if let Fault::Custom { id, .. } = &fault {
            assert!(self.spec.fault(id).is_some(), "{} schedules fault `{id}` but does not declare it", self.spec.id());
        }
        self.schedule_control(at, ActionKind::Fault(fault));
    }

    /// Registers the evaluator of a check the spec declares.
    pub fn check(&mut self, id: &str, eval: CheckFn<N>) {
        let i = self.spec.checks.iter().position(|c| c.id == id);
        let i = i.unwrap_or_else(|| panic!("{} declares no check `{id}`", self.spec.id()));
        self.checks.push((i, eval));
    }

    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    pub fn param(&self, id: &str) -> i64 {
        param_value(self.spec, &self.params, id)
    }

    fn schedule_control(&mut self, at: Time, kind: ActionKind) {
        let idx = self.controls.len() as u32;
        self.controls.push((at, kind));
        self.queue.push(at, Class::Control, Ev::Control(idx));
    }

    fn invoke(&mut self, node: NodeId, f: impl FnOnce(&mut N, &mut Ctx<N>)) {
        let rt = &self.rt[node as usize];
        let disk_factor = if self.now < rt.disk_until { rt.disk_factor } else { 1 };
        let mut out = std::mem::take(&mut self.scratch);
        let mut ctx = Ctx {
            me: node,
            local_now: rt.local(self.now),
            true_now: self.now,
            rng: &mut self.rng,
            out: &mut out,
            next_timer: &mut self.next_timer,
            disk_factor,
            params: &self.params,
            spec: self.spec,
        };
        f(&mut self.nodes[node as usize], &mut ctx);
        let mut crash = None;
        let mut inflicted = Vec::new();
        for e in out.drain(..) {
            match e {
                Effect::Crash(restart) => crash = Some(restart),
                Effect::Inflict(f) => inflicted.push(f),
                e => self.apply(node, e),
            }
        }
        self.scratch = out;
        for f in inflicted {
            self.trace.push(self.now, TraceKind::Fault { text: format!("{f} (by node {node})") }, String::new);
            self.fault(f);
        }
        if let Some(restart) = crash {
            self.fault(Fault::Crash { node });
            if let Some(after) = restart {
                self.schedule_control(self.now.plus(after.max(1)), ActionKind::Fault(Fault::Restart { node }));
            }
        }
    }

    /// Runs a handler of a node that is going down: only its accounting takes effect.
    fn invoke_dead(&mut self, node: NodeId, f: impl FnOnce(&mut N, &mut Ctx<N>)) {
        let mut out = Vec::new();
        let mut ctx = Ctx {
            me: node,
            local_now: self.rt[node as usize].local(self.now),
            true_now: self.now,
            rng: &mut self.rng,
            out: &mut out,
            next_timer: &mut self.next_timer,
            disk_factor: 1,
            params: &self.params,
            spec: self.spec,
        };
        f(&mut self.nodes[node as usize], &mut ctx);
        for e in out {
            if matches!(
                e,
                Effect::Count(..) | Effect::Gauge(..) | Effect::Observe(..) | Effect::Note(_) | Effect::Tally(..)
            ) {
                self.apply(node, e);
            }
        }
    }

    fn apply(&mut self, me: NodeId, e: Effect<N>) {
        match e {
            Effect::Send(to, msg) => self.send(me, to, msg),
            Effect::Timer(id, after, timer) => {
                let rt = &self.rt[me as usize];
                let at = self.now.plus(rt.true_duration(after));
                let epoch = rt.epoch;
                self.live_timers.insert(id);
                self.queue.push(at, Class::Normal, Ev::Timer { node: me, id, epoch, timer });
            }
            Effect::Cancel(id) => {
                self.live_timers.remove(&id);
            }
            Effect::Count(n, d) => self.metrics.add(n, d),
            Effect::Gauge(n, v) => self.metrics.set_gauge(n, v),
            Effect::Observe(n, v) => self.metrics.observe(n, v),
            Effect::Note(text) => self.trace.push(self.now, TraceKind::Note { node: me, text }, String::new),
            Effect::Tally(name, key, delta) => {
                let v = self.tallies.entry((name, key)).or_insert(0);
                *v += delta;
                self.tallied.push((name, key, *v));
            }
            Effect::Crash(_) | Effect::Inflict(_) => unreachable!("handled by invoke"),
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        assert!((to as usize) < self.nodes.len(), "send to node {to}, which does not exist");
        let id = self.next_msg;
        self.next_msg += 1;
        let label = msg.label();
        self.trace.push(self.now, TraceKind::Sent { from, to, msg: label, id }, || format!("{msg:?}"));
        match self.net.send(from, to, self.now, &mut self.rng) {
            Fate::Deliver { delay, duplicate } => {
                let sent = self.now;
                if let Some(d2) = duplicate {
                    let copy = msg.clone();
                    self.queue.push(sent.plus(d2), Class::Normal, Ev::Deliver { from, to, msg: copy, id, sent });
                }
                self.queue.push(sent.plus(delay), Class::Normal, Ev::Deliver { from, to, msg, id, sent });
            }
            Fate::Lost { delay } => {
                let deliver = self.now.plus(delay);
                self.trace.push(
                    self.now,
                    TraceKind::Dropped { from, to, msg: label, id, why: DropReason::Lost },
                    String::new,
                );
                let gone_at = self.now.plus(delay / 2);
                self.remember_drop(MsgFrame { from, to, sent: self.now, deliver, kind: label, lost: true }, gone_at);
            }
        }
    }

    fn remember_drop(&mut self, frame: MsgFrame, gone_at: Time) {
        if self.drops.len() >= 256 {
            self.drops.pop_front();
        }
        self.drops.push_back(Drop { frame, gone_at });
    }

    fn control(&mut self, idx: u32) {
        let kind = self.controls[idx as usize].1.clone();
        let text = kind.to_string();
        if let Some(node) = match &kind {
            ActionKind::Fault(f) => f.node(),
            _ => None,
        } {
            if node as usize >= self.nodes.len() {
                self.trace.push(
                    self.now,
                    TraceKind::Action { text: format!("ignored ({text}): no such node") },
                    String::new,
                );
                return;
            }
        }
        match kind {
            ActionKind::Fault(f) => {
                self.trace.push(self.now, TraceKind::Fault { text }, String::new);
                self.fault(f);
            }
            ActionKind::SetParam { id, value } => {
                self.trace.push(self.now, TraceKind::Action { text }, String::new);
                if let Some(i) = self.spec.params.iter().position(|p| p.id == id) {
                    self.params[i] = value;
                    self.broadcast(Control::Param { id: self.spec.params[i].id, value });
                }
            }
            ActionKind::SetStrategy { id } => {
                self.trace.push(self.now, TraceKind::Action { text }, String::new);
                if let Some(s) = self.spec.strategy(&id) {
                    self.broadcast(Control::Strategy(s.id));
                }
            }
        }
    }

    fn broadcast(&mut self, c: Control) {
        for n in 0..self.nodes.len() as NodeId {
            if self.rt[n as usize].up {
                self.invoke(n, |node, ctx| node.on_control(c, ctx));
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        let now = self.now;
        match f {
            Fault::Crash { node } => {
                let rt = &mut self.rt[node as usize];
                if rt.up {
                    rt.up = false;
                    rt.epoch += 1;
                    rt.paused_until = Time::ZERO;
                    self.trace.push(now, TraceKind::Crashed { node }, String::new);
                    self.invoke_dead(node, |n, ctx| n.on_crash(ctx));
                }
            }
            Fault::Restart { node } => {
                let rt = &mut self.rt[node as usize];
                if !rt.up {
                    rt.up = true;
                    rt.epoch += 1;
                    self.trace.push(now, TraceKind::Restarted { node }, String::new);
                    self.invoke(node, |n, ctx| n.on_start(ctx));
                }
            }
            Fault::Pause { node, dur } => {
                let rt = &mut self.rt[node as usize];
                if rt.up {
                    rt.paused_until = rt.paused_until.max(now.plus(dur));
                }
            }
            Fault::Isolate { node, one_way } => self.net.add_cut(Cut { a: vec![node], b: None, one_way }),
            Fault::Partition { a, b, one_way } => self.net.add_cut(Cut { a, b, one_way }),
            Fault::Heal => self.net.heal(),
            Fault::LatencySpike { extra, dur } => self.net.latency_spike(extra, now.plus(dur)),
            Fault::LossBurst { loss, dur } => self.net.loss_burst(loss, now.plus(dur)),
            Fault::ClockSkew { node, offset } => {
                let rt = &mut self.rt[node as usize];
                rt.skew = offset;
                rt.anchor = now;
            }
            Fault::ClockDrift { node, ppm } => {
                let rt = &mut self.rt[node as usize];
                rt.skew = rt.offset(now);
                rt.anchor = now;
                rt.drift_ppm = ppm;
            }
            Fault::SlowDisk { node, factor, dur } => {
                let rt = &mut self.rt[node as usize];
                rt.disk_factor = factor.max(1);
                rt.disk_until = now.plus(dur);
            }
            Fault::Custom { id, node, value } => {
                let Some(spec) = self.spec.fault(&id) else { return };
                let c = Control::Custom { id: spec.id, value };
                match (spec.target, node) {
                    (Target::Node, Some(n)) if self.rt[n as usize].up => self.invoke(n, |x, ctx| x.on_control(c, ctx)),
                    (Target::Node, _) => {}
                    (Target::Global, _) => self.broadcast(c),
                }
            }
        }
    }

    /// Holds an event for a paused node until its pause ends. Returns true if held.
    fn held(&mut self, node: NodeId, ev: &Ev<N>) -> bool {
        let until = self.rt[node as usize].paused_until;
        if self.now < until {
            self.queue.push(until, Class::Normal, ev.clone());
            true
        } else {
            false
        }
    }

    fn dispatch(&mut self, ev: Ev<N>) -> Option<NodeId> {
        match ev {
            Ev::Start(n) => {
                if self.rt[n as usize].up && !self.held(n, &ev) {
                    self.invoke(n, |x, ctx| x.on_start(ctx));
                }
                Some(n)
            }
            Ev::Control(i) => {
                self.control(i);
                None
            }
            Ev::Timer { node, id, epoch, .. } => {
                let rt = &self.rt[node as usize];
                if epoch != rt.epoch || !rt.up || !self.live_timers.contains(&id) {
                    return None;
                }
                if self.held(node, &ev) {
                    return None;
                }
                self.live_timers.remove(&id);
                let Ev::Timer { timer, .. } = ev else { unreachable!() };
                self.trace.push(self.now, TraceKind::Timer { node, timer: timer.label() }, || format!("{timer:?}"));
                self.invoke(node, |x, ctx| x.on_timer(timer, ctx));
                Some(node)
            }
            Ev::Deliver { from, to, id, sent, .. } => {
                if self.rt[to as usize].up && self.held(to, &ev) {
                    return None;
                }
                let Ev::Deliver { msg, .. } = ev else { unreachable!() };
                let label = msg.label();
                let why = if !self.rt[to as usize].up {
                    Some(DropReason::NodeDown)
                } else if self.net.blocked(from, to) {
                    Some(DropReason::Partitioned)
                } else {
                    None
                };
                if let Some(why) = why {
                    self.trace
                        .push(self.now, TraceKind::Dropped { from, to, msg: label, id, why }, || format!("{msg:?}"));
                    let frame = MsgFrame { from, to, sent, deliver: self.now, kind: label, lost: true };
                    self.remember_drop(frame, self.now);
                    return None;
                }
                self.trace.push(self.now, TraceKind::Delivered { from, to, msg: label, id }, || format!("{msg:?}"));
                if self.recent.len() >= RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(MsgFrame { from, to, sent, deliver: self.now, kind: label, lost: false });
                self.invoke(to, |x, ctx| x.on_message(from, msg, ctx));
                Some(to)
            }
        }
    }

    fn evaluate_checks(&mut self, touched: Option<NodeId>) {
        let world = World {
            nodes: &self.nodes,
            metrics: &self.metrics,
            tallied: &self.tallied,
            tallies: &self.tallies,
            now: self.now,
            touched,
            up: &self.rt,
            params: &self.params,
            spec: self.spec,
        };
        let mut failed = Vec::new();
        for (i, eval) in &self.checks {
            if self.statuses[*i].violation.is_none() {
                if let Err(why) = eval(&world) {
                    failed.push((*i, why));
                }
            }
        }
        for (i, why) in failed {
            let check = self.statuses[i].id;
            let trace_seq = self.trace.total().saturating_sub(1);
            self.trace.push(self.now, TraceKind::Violation { check, why: why.clone() }, String::new);
            self.statuses[i].violation = Some(Violation { at: self.now, why, trace_seq });
        }
        self.tallied.clear();
    }

    fn take_samples(&mut self, upto: Time) {
        while self.sampler.due(upto) {
            self.sampler.sample(&mut self.metrics);
        }
    }
}

impl<N: Node> Run for Sim<N> {
    fn spec(&self) -> &'static ScenarioSpec {
        self.spec
    }
    fn recipe(&self) -> &Recipe {
        &self.recipe
    }
    fn now(&self) -> Time {
        self.now
    }
    fn node_count(&self) -> u32 {
        self.nodes.len() as u32
    }
    fn events(&self) -> u64 {
        self.events
    }
    fn next_event_time(&self) -> Option<Time> {
        self.queue.peek_time()
    }

    fn step(&mut self) -> bool {
        let Some((t, ev)) = self.queue.pop() else { return false };
        if t > self.sampler.next_at() {
            self.take_samples(Time(t.0 - 1));
        }
        self.now = self.now.max(t);
        self.events += 1;
        let touched = self.dispatch(ev);
        self.evaluate_checks(touched);
        true
    }

    fn run_until(&mut self, t: Time, max_events: u64) -> u64 {
        let mut n = 0;
        while n < max_events && self.queue.peek_time().is_some_and(|next| next <= t) {
            self.step();
            n += 1;
        }
        if self.queue.peek_time().is_none_or(|next| next > t) {
            self.take_samples(t);
            self.now = self.now.max(t);
        }
        n
    }

    fn inject(&mut self, kind: ActionKind) -> Result<Time, RecipeError> {
        let mut probe = Recipe::new(&self.recipe.scenario, &self.recipe.strategy, 0);
        probe.actions.push(Action { at: Time::ZERO, kind: kind.clone() });
        if let Some(e) = probe.validate(self.spec).into_iter().next() {
            return Err(e);
        }
        if let ActionKind::Fault(f) = &kind {
            let nodes: Vec<NodeId> = match f {
                Fault::Partition { a, b, .. } => a.iter().chain(b.iter().flatten()).copied().collect(),
                other => other.node().into_iter().collect(),
            };
            if let Some(&node) = nodes.iter().find(|&&n| n >= self.node_count()) {
                return Err(RecipeError::BadNode { node, nodes: self.node_count() });
            }
        }
        let at = self.now.plus(1);
        self.recipe.push_action(Action { at, kind: probe.actions.remove(0).kind });
        let kind = self.recipe.actions.iter().rev().find(|a| a.at == at).map(|a| a.kind.clone()).expect("just pushed");
        self.schedule_control(at, kind);
        Ok(at)
    }

    fn frame(&self, max_messages: usize) -> Frame {
        let nodes = self
            .nodes
            .iter()
            .zip(&self.rt)
            .enumerate()
            .map(|(i, (n, rt))| NodeFrame {
                id: i as NodeId,
                view: n.view(),
                status: if !rt.up {
                    Status::Crashed
                } else if self.now < rt.paused_until {
                    Status::Paused
                } else {
                    Status::Up
                },
                cut_off: self.net.is_cut_off(i as NodeId),
                clock_offset: rt.offset(self.now),
            })
            .collect();
        let in_flight = self.queue.iter().filter(|(_, e)| matches!(e, Ev::Deliver { .. })).count();
        let every = in_flight.div_ceil(max_messages.max(1)).max(1);
        let mut messages: Vec<MsgFrame> = self
            .queue
            .iter()
            .filter_map(|(at, e)| match e {
                Ev::Deliver { from, to, msg, id, sent } => Some((
                    *id,
                    MsgFrame {
                        from: *from,
                        to: *to,
                        sent: *sent,
                        deliver: at,
                        kind: msg.label(),
                        lost: self.net.blocked(*from, *to),
                    },
                )),
                _ => None,
            })
            .filter(|(id, _)| (*id as usize).is_multiple_of(every))
            .map(|(_, m)| m)
            .collect();
        messages.sort_by_key(|m| (m.sent, m.from, m.to));
        messages.truncate(max_messages);
        for d in self.drops.iter().filter(|d| self.now.since(d.gone_at) < LOST_FADE && d.frame.sent <= self.now) {
            messages.push(d.frame.clone());
        }
        Frame {
            now: self.now,
            nodes,
            messages,
            in_flight,
            cuts: self.net.cuts().to_vec(),
            checks: self.statuses.clone(),
            lost_fade: LOST_FADE,
            recent: self.recent.iter().cloned().collect(),
        }
    }

    fn checks(&self) -> &[CheckStatus] {
        &self.statuses
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn sampler(&self) -> &Sampler {
        &self.sampler
    }
    fn trace(&self) -> &Trace {
        &self.trace
    }
    fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }
    fn snapshot(&self) -> Box<dyn Run> {
        Box::new(self.clone())
    }
    fn timeline(&self) -> Vec<(Time, String)> {
        let mut all: Vec<(Time, String)> = self.controls.iter().map(|(t, k)| (*t, k.to_string())).collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }
}
