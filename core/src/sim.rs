//! The kernel: nodes with typed messages and timers, a context that records their effects,
//! and the loop that applies faults and actions, runs checks, samples metrics and traces.

use crate::fault::Fault;
use crate::frame::{CheckStatus, Frame, MsgFrame, NodeFrame, NodeView, Status};
use crate::metrics::{slot, Metrics, Sampler};
use crate::net::{Cut, Fate, Link, Network, NodeId};
use crate::queue::{Class, EventQueue};
use crate::recipe::{Action, ActionKind, Recipe, RecipeError};
use crate::ring::Ring;
use crate::rng::Rng;
use crate::run::Run;
use crate::spec::{ScenarioSpec, Setup, Target};
use crate::time::{Micros, Time};
use crate::trace::{DropReason, Trace, TraceKind};
use std::collections::{BTreeMap, VecDeque};
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

/// What a handler may do. The context is the kernel's hand: sends, timers, metrics and
/// notes are applied (and traced) by the kernel as the handler makes them, in order; a
/// crash or an inflicted fault waits until the handler has returned.
pub struct Ctx<'a, N: Node> {
    me: NodeId,
    local_now: Time,
    disk_factor: u32,
    /// The node is going down: only accounting (metrics, notes, tallies) takes effect.
    dying: bool,
    k: &'a mut Kernel<N>,
    crash: Option<Option<Micros>>,
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
        &mut self.k.c.rng
    }
    pub fn send(&mut self, to: NodeId, msg: N::Msg) {
        if !self.dying {
            self.k.send(self.me, to, msg);
        }
    }
    /// Sends `msg` after `after` microseconds of this node's clock: a reply that takes that
    /// long to prepare (a disk write, a slow dependency). Traced when it leaves; lost if the
    /// node crashes first, held while it is paused, like a timer.
    pub fn send_after(&mut self, after: Micros, to: NodeId, msg: N::Msg) {
        if self.dying {
            return;
        }
        if after == 0 {
            self.k.send(self.me, to, msg);
        } else {
            let (at, epoch) = self.k.c.due(self.me, after);
            self.k.queue.push(at, Class::Normal, Ev::Later { from: self.me, to, epoch, msg });
        }
    }
    /// Fires after `after` microseconds of this node's clock.
    pub fn set_timer(&mut self, after: Micros, timer: N::Timer) -> TimerId {
        let id = self.k.c.timers.allocate();
        if !self.dying {
            self.k.set_timer(self.me, id, after, timer);
        }
        id
    }
    pub fn cancel_timer(&mut self, id: TimerId) {
        if !self.dying {
            self.k.c.timers.cancel(id);
        }
    }
    pub fn count(&mut self, name: &'static str, delta: i64) {
        self.k.c.metrics.add(name, delta);
    }
    pub fn gauge(&mut self, name: &'static str, value: i64) {
        self.k.c.metrics.set_gauge(name, value);
    }
    pub fn observe(&mut self, name: &'static str, value: u64) {
        self.k.c.metrics.observe(name, value);
    }
    /// A line in the event log, attached to this node.
    pub fn note(&mut self, text: impl Into<String>) {
        let (now, node) = (self.k.c.now, self.me);
        self.k.c.trace.push(now, TraceKind::Note { node, text: text.into() });
    }
    /// True simulated time, for instrumenting checks and metrics only (`tally`, histograms
    /// of true latency). Node logic must use `now()`: reading the truth defeats clock faults.
    pub fn truth(&self) -> Time {
        self.k.c.now
    }
    /// Adds `delta` to a god's-eye tally keyed by name and an integer key (say, user and
    /// true-time window). Checks read tallies; nodes never do.
    pub fn tally(&mut self, name: &'static str, key: u64, delta: i64) {
        let v = self.k.c.tallies.add(name, key, delta);
        self.k.c.tallied.push((name, key, v));
    }
    /// This node dies now (out of memory, a panic…) after the handler returns;
    /// a supervisor restarts it after `restart_after`, if given.
    pub fn crash(&mut self, restart_after: Option<Micros>) {
        if !self.dying {
            self.crash = Some(restart_after);
        }
    }
    /// Something happens to the world because of this node (it stalls in a GC pause, its
    /// clock drifts, it loses its link to a peer). Applied after the handler returns, and
    /// traced like any fault. For scenario faults that target "whoever leads now".
    pub fn inflict(&mut self, fault: Fault) {
        if !self.dying {
            self.k.c.inflicted.push(fault);
        }
    }
    /// How long a disk operation that normally takes `base` takes now.
    pub fn disk(&self, base: Micros) -> Micros {
        base.saturating_mul(self.disk_factor as u64)
    }
    /// A parameter's current value.
    pub fn param(&self, id: &str) -> i64 {
        param_value(self.k.c.spec, &self.k.c.params, id)
    }
    /// A parameter given in milliseconds (`…_ms`), in microseconds.
    pub fn param_ms(&self, id: &str) -> Micros {
        self.param(id) as Micros * crate::time::MICROS_PER_MS
    }
    /// The strategy in force. Switches reach running nodes as `Control::Strategy`, and a
    /// node that was down then as it restarts (after its `on_start`).
    pub fn strategy(&self) -> &'static str {
        self.k.c.strategy
    }
    /// A message or timer reached this node and no handler arm expects it: a programming
    /// error, never a silent `_ => {}`. Counted (`Run::unhandled`, which the tests require
    /// to be zero) and noted in the event log with what it was.
    #[cold]
    pub fn unhandled(&mut self, what: &impl Label) {
        self.k.c.unhandled += 1;
        self.note(format!("unhandled {}", what.label()));
    }
}

fn held<N: Holds<T>, T>(node: &N, id: NodeId) -> &T {
    node.held().unwrap_or_else(|| panic!("node {id} is not a {}", std::any::type_name::<T>()))
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
    tallies: &'a Tallies,
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
    /// Node `id` as the kind it is (`w.node::<Server>(SERVER)`). A node of another kind is
    /// a programming error, and the panic says which.
    pub fn node<T>(&self, id: NodeId) -> &T
    where
        N: Holds<T>,
    {
        held(&self.nodes[id as usize], id)
    }
    /// Every node of one kind, with its id.
    pub fn all<T: 'static>(&self) -> impl Iterator<Item = (NodeId, &T)>
    where
        N: Holds<T>,
    {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.held().map(|t| (i as NodeId, t)))
    }
    pub fn is_up(&self, n: NodeId) -> bool {
        self.up[n as usize].up
    }
    pub fn tally(&self, name: &'static str, key: u64) -> i64 {
        self.tallies.get(name, key)
    }
}

/// The god's-eye tallies (`Ctx::tally`), by name and then by key. A run has a few names and
/// may have many keys (say, a user and a window for every admission): names are found in a
/// short list, like metrics, and keys in a map of integers, so a lookup never compares
/// strings (keyed by (name, key), a map compared the name at every level of its tree: 5%
/// of payments at the seeds' scale, when payments tallied its charges).
#[derive(Clone, Debug, Default)]
struct Tallies(Vec<(&'static str, BTreeMap<u64, i64>)>);

impl Tallies {
    /// Adds `delta` to the tally and returns its new value.
    fn add(&mut self, name: &'static str, key: u64, delta: i64) -> i64 {
        let v = slot(&mut self.0, name).entry(key).or_insert(0);
        *v += delta;
        *v
    }
    fn get(&self, name: &str, key: u64) -> i64 {
        let keys = self.0.iter().find(|(n, _)| *n == name).map(|(_, keys)| keys);
        keys.and_then(|keys| keys.get(&key).copied()).unwrap_or(0)
    }
}

/// A named invariant, evaluated after every event until it first fails. A closure, so it
/// can capture what the scenario computed when it built the run (node ids, a bound); shared,
/// so copying the run for a checkpoint copies a pointer.
pub type CheckFn<N> = std::rc::Rc<dyn Fn(&World<N>) -> Result<(), String>>;

/// A god's-eye gauge: a value of the whole run (the longest queue of several nodes, how long
/// since the system last served well) that no single node knows, read from the world just
/// before each metrics sample. Shared like a check, and like a check it keeps no state: what
/// it needs to remember lives in the nodes or the tallies, which checkpoints copy.
pub type ProbeFn<N> = std::rc::Rc<dyn Fn(&World<N>) -> i64>;

/// A node enum's variant read by its type (`#[derive(Holds)]` writes it for each variant
/// that holds one value), so checks and tests say `w.node::<Server>(id)`.
pub trait Holds<T> {
    fn held(&self) -> Option<&T>;
}

/// What the kernel reads about a node on every event, packed small: with many nodes these
/// records are read at random, and four share a cache line.
#[derive(Clone, Debug)]
struct NodeRt {
    paused_until: Time,
    epoch: u32,
    up: bool,
    /// The node's clock or disk was ever faulted: its `NodeClock` must be consulted.
    faulted: bool,
}

impl NodeRt {
    fn new() -> NodeRt {
        NodeRt { paused_until: Time::ZERO, epoch: 0, up: true, faulted: false }
    }
}

/// A node's clock and disk faults (read only for nodes that ever had one).
#[derive(Clone, Debug)]
struct NodeClock {
    /// Clock offset at `anchor`, and drift since then.
    skew: i64,
    drift_ppm: i32,
    anchor: Time,
    disk_factor: u32,
    disk_until: Time,
}

impl NodeClock {
    fn new() -> NodeClock {
        NodeClock { skew: 0, drift_ppm: 0, anchor: Time::ZERO, disk_factor: 1, disk_until: Time::ZERO }
    }
    fn offset(&self, now: Time) -> i64 {
        let since = now.since(self.anchor) as i128;
        self.skew + (since * self.drift_ppm as i128 / 1_000_000) as i64
    }
    fn local(&self, now: Time) -> Time {
        Time((now.0 as i128 + self.offset(now) as i128).clamp(0, u64::MAX as i128) as u64)
    }
    /// True time for `d` of this node's clock to pass, rounded up: on a fast clock a timer
    /// of one microsecond must not fire in the instant it was set (a node waiting for its
    /// clock to reach a moment would set it again and again, and never get there).
    fn true_duration(&self, d: Micros) -> Micros {
        if self.drift_ppm == 0 {
            return d;
        }
        let rate = (1_000_000i128 + self.drift_ppm as i128).max(1);
        ((d as i128 * 1_000_000 + rate - 1) / rate) as Micros
    }
}

#[derive(Clone, Debug)]
enum Ev<N: Node> {
    Start(NodeId),
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: N::Msg,
        id: u64,
        sent: Time,
    },
    Timer {
        node: NodeId,
        id: TimerId,
        epoch: u32,
        timer: N::Timer,
    },
    /// A message a node sends once its processing delay is over (`Ctx::send_after`).
    Later {
        from: NodeId,
        to: NodeId,
        epoch: u32,
        msg: N::Msg,
    },
    Control(u32),
}

/// A copy of a traced message or timer, formatted only when someone looks at it.
#[derive(Clone)]
enum Detail<N: Node> {
    Msg(N::Msg),
    Timer(N::Timer),
}

/// A lost message kept briefly so the player can show it vanish.
#[derive(Clone, Debug)]
struct Drop {
    frame: MsgFrame,
    gone_at: Time,
}

const LOST_FADE: Micros = 400_000;
const RECENT: usize = 512;
/// How many trace entries (and copies of their messages and timers) a run keeps.
const TRACE_CAP: usize = 20_000;

/// Which timers are still pending (set, neither fired nor cancelled): one bit per timer id,
/// in a window that slides forward as the oldest timers are done. Ids are handed out here.
#[derive(Clone, Debug, Default)]
struct Timers {
    next: u64,
    /// The id of bit 0 of `words[0]` (a multiple of 64).
    base: u64,
    words: VecDeque<u64>,
}

impl Timers {
    fn allocate(&mut self) -> TimerId {
        self.next += 1;
        TimerId(self.next - 1)
    }
    fn arm(&mut self, id: TimerId) {
        let i = (id.0 - self.base) as usize;
        while self.words.len() <= i / 64 {
            self.words.push_back(0);
        }
        self.words[i / 64] |= 1 << (i % 64);
    }
    fn is_live(&self, id: TimerId) -> bool {
        id.0 >= self.base
            && self.words.get(((id.0 - self.base) / 64) as usize).is_some_and(|w| w >> (id.0 % 64) & 1 == 1)
    }
    fn cancel(&mut self, id: TimerId) {
        if self.is_live(id) {
            self.disarm(id);
        }
    }
    /// Cancels a timer known to be live (one that is firing).
    fn disarm(&mut self, id: TimerId) {
        let i = (id.0 - self.base) as usize;
        self.words[i / 64] &= !(1 << (i % 64));
        while self.words.front() == Some(&0) && self.base + 64 <= self.next {
            self.words.pop_front();
            self.base += 64;
        }
    }
}

/// Which handlers a fault calls once the kernel has applied it.
enum Heard {
    Nothing,
    Crashed(NodeId),
    Restarted(NodeId),
    /// To one node, or to every node that is up.
    Control(Option<NodeId>, Control),
}

/// Everything of a run but its nodes, so a handler can borrow its node and the kernel at once.
struct Kernel<N: Node> {
    c: Common,
    queue: EventQueue<Ev<N>>,
    /// Copies of the messages and timers of the kept trace entries, by trace sequence number.
    details: Ring<(u64, Detail<N>)>,
    /// How many `Ev::Deliver` are in the queue (messages in flight), so a frame need not
    /// count them among every pending timer.
    in_flight: usize,
}

/// The part of the kernel that does not depend on the scenario's types. Kept apart so that
/// one copy of its code (building a run, cloning it for snapshots, frames, faults, live
/// actions) serves every scenario in the WASM bundle, where each scenario instantiates the
/// generic part anew.
#[derive(Clone)]
struct Common {
    spec: &'static ScenarioSpec,
    recipe: Recipe,
    /// The strategy in force (the recipe's, then the last switch), so a node that was down
    /// when the user switched reads it when it starts again.
    strategy: &'static str,
    /// Whether the user ever switched strategies during the run.
    switched: bool,
    params: Vec<i64>,
    rt: Vec<NodeRt>,
    /// Per node, its clock and disk faults (see `NodeRt::faulted`); empty until the first
    /// such fault, so big runs without one do not pay for it.
    clocks: Vec<NodeClock>,
    net: Network,
    /// Faults and actions, scheduled or done, with their times (events refer to them by index).
    controls: Vec<(Time, ActionKind)>,
    rng: Rng,
    now: Time,
    events: u64,
    /// Messages and timers that reached a handler with no arm for them (`Ctx::unhandled`).
    unhandled: u64,
    next_msg: u64,
    timers: Timers,
    metrics: Metrics,
    tallies: Tallies,
    tallied: Vec<(&'static str, u64, i64)>,
    sampler: Sampler,
    trace: Trace,
    statuses: Vec<CheckStatus>,
    /// Messages lost lately, so the player can show them vanish.
    drops: Ring<Drop>,
    /// The latest deliveries, so a renderer can show traffic that is faster than a frame.
    /// Like the trace's entries, remembered only for someone watching (`Run::keep_trace`):
    /// headless runs and benchmarks skip them.
    recent: Ring<MsgFrame>,
    /// Faults the running handler inflicted (`Ctx::inflict`), applied once it returns.
    inflicted: Vec<Fault>,
}

/// A running simulation of one scenario.
#[derive(Clone)]
pub struct Sim<N: Node> {
    nodes: Vec<N>,
    checks: Vec<(usize, CheckFn<N>)>,
    probes: Vec<(&'static str, ProbeFn<N>)>,
    k: Kernel<N>,
}

impl<N: Node> Clone for Kernel<N> {
    fn clone(&self) -> Self {
        Kernel {
            c: self.c.cloned(),
            queue: self.queue.clone(),
            details: self.details.clone(),
            in_flight: self.in_flight,
        }
    }
}

impl Common {
    #[inline(never)]
    fn new(setup: &Setup, default_link: Link) -> Common {
        let spec = setup.spec;
        Common {
            spec,
            recipe: setup.recipe.clone(),
            strategy: setup.strategy(),
            switched: false,
            params: spec.params.iter().map(|p| setup.param(p.id)).collect(),
            rt: Vec::new(),
            clocks: Vec::new(),
            net: Network::new(default_link),
            controls: Vec::new(),
            rng: Rng::new(setup.recipe.seed),
            now: Time::ZERO,
            events: 0,
            unhandled: 0,
            next_msg: 0,
            timers: Timers::default(),
            metrics: Metrics::default(),
            tallies: Tallies::default(),
            tallied: Vec::new(),
            sampler: Sampler::new(spec.sample_every, spec.metrics.iter().map(|m| m.measure).collect()),
            trace: Trace::new(TRACE_CAP),
            statuses: spec.checks.iter().map(|c| CheckStatus::new(c.id, c.label)).collect(),
            drops: Ring::new(256),
            recent: Ring::new(RECENT),
            inflicted: Vec::new(),
        }
    }

    /// A node's clock and disk state, if a clock or disk fault ever touched it.
    #[inline]
    fn clock(&self, node: NodeId) -> Option<&NodeClock> {
        self.rt[node as usize].faulted.then(|| &self.clocks[node as usize])
    }

    /// When `after` of `node`'s own clock will have passed, and the node's current life
    /// (a timer or delayed send from an earlier life is dropped).
    fn due(&self, node: NodeId, after: Micros) -> (Time, u32) {
        let after = self.clock(node).map_or(after, |c| c.true_duration(after));
        (self.now.plus(after), self.rt[node as usize].epoch)
    }

    fn remember_drop(&mut self, frame: MsgFrame, gone_at: Time) {
        self.drops.push(Drop { frame, gone_at });
    }

    fn take_samples(&mut self, upto: Time) {
        while self.sampler.due(upto) {
            self.sampler.sample(&mut self.metrics);
        }
    }

    /// A node's clock and disk state, to change it (marks the node as faulted).
    fn clock_mut(&mut self, node: NodeId) -> &mut NodeClock {
        self.rt[node as usize].faulted = true;
        if self.clocks.len() < self.rt.len() {
            self.clocks.resize(self.rt.len(), NodeClock::new());
        }
        &mut self.clocks[node as usize]
    }

    /// Applies a fault to the kernel's state and says which handler must hear of it.
    #[inline(never)]
    fn apply_fault(&mut self, f: Fault) -> Heard {
        let now = self.now;
        match f {
            Fault::Crash { node } => {
                let rt = &mut self.rt[node as usize];
                if rt.up {
                    rt.up = false;
                    rt.epoch += 1;
                    rt.paused_until = Time::ZERO;
                    self.trace.push(now, TraceKind::Crashed { node });
                    return Heard::Crashed(node);
                }
            }
            Fault::Restart { node } => {
                let rt = &mut self.rt[node as usize];
                if !rt.up {
                    rt.up = true;
                    rt.epoch += 1;
                    self.trace.push(now, TraceKind::Restarted { node });
                    return Heard::Restarted(node);
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
                let c = self.clock_mut(node);
                c.skew = offset;
                c.anchor = now;
            }
            Fault::ClockDrift { node, ppm } => {
                let c = self.clock_mut(node);
                c.skew = c.offset(now);
                c.anchor = now;
                c.drift_ppm = ppm;
            }
            Fault::SlowDisk { node, factor, dur } => {
                let c = self.clock_mut(node);
                c.disk_factor = factor.max(1);
                c.disk_until = now.plus(dur);
            }
            Fault::Custom { id, node, value } => {
                let Some(spec) = self.spec.fault(&id) else { return Heard::Nothing };
                let c = Control::Custom { id: spec.id, value };
                match (spec.target, node) {
                    (Target::Node, Some(n)) if self.rt[n as usize].up => return Heard::Control(Some(n), c),
                    (Target::Node, _) => {}
                    (Target::Global, _) => return Heard::Control(None, c),
                }
            }
        }
        Heard::Nothing
    }

    /// Validates an action injected live and adds it to the recipe, a microsecond from now;
    /// returns it as the recipe now has it (repaired, if it needed to be), to be scheduled.
    #[inline(never)]
    fn record_action(&mut self, kind: ActionKind) -> Result<(Time, ActionKind), RecipeError> {
        let mut probe = Recipe::new(&self.recipe.scenario, &self.recipe.strategy, 0);
        probe.actions.push(Action { at: Time::ZERO, kind: kind.clone() });
        if let Some(e) = probe.validate(self.spec).into_iter().next() {
            return Err(e);
        }
        let count = self.rt.len() as u32;
        if let ActionKind::Fault(f) = &kind {
            let nodes: Vec<NodeId> = match f {
                Fault::Partition { a, b, .. } => a.iter().chain(b.iter().flatten()).copied().collect(),
                other => other.node().into_iter().collect(),
            };
            if let Some(&node) = nodes.iter().find(|&&n| n >= count) {
                return Err(RecipeError::BadNode { node, nodes: count });
            }
        }
        let at = self.now.plus(1);
        // The run no longer is the one a shared link described.
        self.recipe.shared = None;
        self.recipe.push_action(Action { at, kind: probe.actions.remove(0).kind });
        let kind = self.recipe.actions.iter().rev().find(|a| a.at == at).map(|a| a.kind.clone()).expect("just pushed");
        Ok((at, kind))
    }

    /// The frame around the nodes' views and a sample of the messages in flight (the only
    /// parts that depend on the scenario's types).
    #[inline(never)]
    fn frame(&self, views: Vec<NodeView>, mut messages: Vec<MsgFrame>, in_flight: usize, max: usize) -> Frame {
        let now = self.now;
        let nodes = views
            .into_iter()
            .zip(&self.rt)
            .enumerate()
            .map(|(i, (view, rt))| NodeFrame {
                id: i as NodeId,
                view,
                status: if !rt.up {
                    Status::Crashed
                } else if now < rt.paused_until {
                    Status::Paused
                } else {
                    Status::Up
                },
                cut_off: self.net.is_cut_off(i as NodeId),
                clock_offset: self.clock(i as NodeId).map_or(0, |c| c.offset(now)),
            })
            .collect();
        for m in &mut messages {
            m.lost = self.net.blocked(m.from, m.to);
        }
        messages.sort_unstable_by_key(|m| (m.sent, m.from, m.to));
        messages.truncate(max);
        for d in self.drops.iter().filter(|d| now.since(d.gone_at) < LOST_FADE && d.frame.sent <= now) {
            messages.push(d.frame.clone());
        }
        Frame {
            now,
            nodes,
            messages,
            in_flight,
            cuts: self.net.cuts().to_vec(),
            checks: self.statuses.clone(),
            lost_fade: LOST_FADE,
            recent: self.recent.to_vec(),
        }
    }

    /// Not inlined, so one copy serves every scenario's snapshots.
    #[inline(never)]
    fn cloned(&self) -> Common {
        self.clone()
    }
}

impl<N: Node> Kernel<N> {
    /// Keeps a copy of what the next trace entry is about, if the trace keeps details.
    #[inline]
    fn detail(&mut self, what: impl FnOnce() -> Detail<N>) {
        if self.c.trace.keep && self.c.trace.details {
            self.details.push((self.c.trace.total(), what()));
        }
    }

    fn schedule_control(&mut self, at: Time, kind: ActionKind) {
        let idx = self.c.controls.len() as u32;
        self.c.controls.push((at, kind));
        self.queue.push(at, Class::Control, Ev::Control(idx));
    }

    fn set_timer(&mut self, me: NodeId, id: TimerId, after: Micros, timer: N::Timer) {
        let (at, epoch) = self.c.due(me, after);
        self.c.timers.arm(id);
        self.queue.push(at, Class::Normal, Ev::Timer { node: me, id, epoch, timer });
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        assert!((to as usize) < self.c.rt.len(), "send to node {to}, which does not exist");
        let id = self.c.next_msg;
        self.c.next_msg += 1;
        let label = msg.label();
        self.detail(|| Detail::Msg(msg.clone()));
        self.c.trace.sent(self.c.now, from, to, label, id);
        match self.c.net.send(from, to, self.c.now, &mut self.c.rng) {
            Fate::Deliver { delay, duplicate } => {
                let sent = self.c.now;
                if let Some(d2) = duplicate {
                    let copy = msg.clone();
                    self.in_flight += 1;
                    self.queue.push(sent.plus(d2), Class::Normal, Ev::Deliver { from, to, msg: copy, id, sent });
                }
                self.in_flight += 1;
                self.queue.push(sent.plus(delay), Class::Normal, Ev::Deliver { from, to, msg, id, sent });
            }
            Fate::Lost { delay } => {
                let deliver = self.c.now.plus(delay);
                self.c.trace.push(self.c.now, TraceKind::Dropped { from, to, msg: label, id, why: DropReason::Lost });
                let gone_at = self.c.now.plus(delay / 2);
                self.c
                    .remember_drop(MsgFrame { from, to, sent: self.c.now, deliver, kind: label, lost: true }, gone_at);
            }
        }
    }

    /// Holds an event for a paused node until its pause ends. Returns true if held.
    #[inline]
    fn held(&mut self, node: NodeId, ev: &Ev<N>) -> bool {
        let until = self.c.rt[node as usize].paused_until;
        if self.c.now < until {
            self.hold(until, ev);
            true
        } else {
            false
        }
    }

    #[cold]
    fn hold(&mut self, until: Time, ev: &Ev<N>) {
        self.queue.push(until, Class::Normal, ev.clone());
    }
}

impl<N: Node> Sim<N> {
    /// A run of `setup` whose links all behave like `default_link` unless overridden.
    pub fn new(setup: &Setup, default_link: Link) -> Sim<N> {
        let mut sim = Sim {
            nodes: Vec::new(),
            checks: Vec::new(),
            probes: Vec::new(),
            k: Kernel {
                c: Common::new(setup, default_link),
                queue: EventQueue::new(),
                details: Ring::new(TRACE_CAP),
                in_flight: 0,
            },
        };
        for a in setup.recipe.actions.clone() {
            sim.k.schedule_control(a.at, a.kind);
        }
        sim
    }

    pub fn add_node(&mut self, node: N) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(node);
        self.k.c.rt.push(NodeRt::new());
        self.k.queue.push(Time::ZERO, Class::Normal, Ev::Start(id));
        id
    }

    pub fn net(&mut self) -> &mut Network {
        &mut self.k.c.net
    }

    /// Adds a fault to the scenario's plan.
    pub fn schedule(&mut self, at: Time, fault: Fault) {
        if let Fault::Custom { id, .. } = &fault {
            assert!(
                self.k.c.spec.fault(id).is_some(),
                "{} schedules fault `{id}` but does not declare it",
                self.k.c.spec.id()
            );
        }
        self.k.schedule_control(at, ActionKind::Fault(fault));
    }

    /// Registers the evaluator of a check the spec declares.
    pub fn check(&mut self, id: &str, eval: impl Fn(&World<N>) -> Result<(), String> + 'static) {
        let eval: CheckFn<N> = std::rc::Rc::new(eval);
        let i = self.k.c.spec.checks.iter().position(|c| c.id == id);
        let i = i.unwrap_or_else(|| panic!("{} declares no check `{id}`", self.k.c.spec.id()));
        self.checks.push((i, eval));
    }

    /// Registers a god's-eye gauge `name`, set from `value` just before each metrics sample
    /// (and so charted and read like any gauge; between samples it keeps the last value).
    pub fn probe(&mut self, name: &'static str, value: impl Fn(&World<N>) -> i64 + 'static) {
        self.probes.push((name, std::rc::Rc::new(value)));
    }

    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// Node `id` as the kind it is, as `World::node` (for tests and set-up).
    pub fn node<T>(&self, id: NodeId) -> &T
    where
        N: Holds<T>,
    {
        held(&self.nodes[id as usize], id)
    }

    pub fn param(&self, id: &str) -> i64 {
        param_value(self.k.c.spec, &self.k.c.params, id)
    }

    fn invoke(&mut self, node: NodeId, f: impl FnOnce(&mut N, &mut Ctx<N>)) {
        self.call(node, false, f);
    }

    /// Runs a handler of a node that is going down: only its accounting takes effect.
    fn invoke_dead(&mut self, node: NodeId, f: impl FnOnce(&mut N, &mut Ctx<N>)) {
        self.call(node, true, f);
    }

    fn call(&mut self, node: NodeId, dying: bool, f: impl FnOnce(&mut N, &mut Ctx<N>)) {
        let k = &mut self.k;
        let now = k.c.now;
        let (local_now, disk_factor) = match k.c.clock(node) {
            Some(c) => (c.local(now), if !dying && now < c.disk_until { c.disk_factor } else { 1 }),
            None => (now, 1),
        };
        let mut ctx = Ctx { me: node, local_now, disk_factor, dying, k, crash: None };
        f(&mut self.nodes[node as usize], &mut ctx);
        let crash = ctx.crash;
        if !self.k.c.inflicted.is_empty() {
            let inflicted = std::mem::take(&mut self.k.c.inflicted);
            self.inflicted(node, inflicted);
        }
        if let Some(restart) = crash {
            self.crashed(node, restart);
        }
    }

    #[cold]
    fn inflicted(&mut self, node: NodeId, faults: Vec<Fault>) {
        for f in faults {
            self.k.c.trace.push(self.k.c.now, TraceKind::Fault { text: format!("{f} (by node {node})") });
            self.fault(f);
        }
    }

    #[cold]
    fn crashed(&mut self, node: NodeId, restart: Option<Micros>) {
        self.fault(Fault::Crash { node });
        if let Some(after) = restart {
            self.k.schedule_control(self.k.c.now.plus(after.max(1)), ActionKind::Fault(Fault::Restart { node }));
        }
    }

    fn control(&mut self, idx: u32) {
        let kind = self.k.c.controls[idx as usize].1.clone();
        let text = kind.to_string();
        if let Some(node) = match &kind {
            ActionKind::Fault(f) => f.node(),
            _ => None,
        } {
            if node as usize >= self.nodes.len() {
                self.k
                    .c
                    .trace
                    .push(self.k.c.now, TraceKind::Action { text: format!("ignored ({text}): no such node") });
                return;
            }
        }
        match kind {
            ActionKind::Fault(f) => {
                self.k.c.trace.push(self.k.c.now, TraceKind::Fault { text });
                self.fault(f);
            }
            ActionKind::SetParam { id, value } => {
                self.k.c.trace.push(self.k.c.now, TraceKind::Action { text });
                if let Some(i) = self.k.c.spec.params.iter().position(|p| p.id == id) {
                    self.k.c.params[i] = value;
                    self.broadcast(Control::Param { id: self.k.c.spec.params[i].id, value });
                }
            }
            ActionKind::SetStrategy { id } => {
                self.k.c.trace.push(self.k.c.now, TraceKind::Action { text });
                if let Some(s) = self.k.c.spec.strategy(&id) {
                    self.k.c.strategy = s.id;
                    self.k.c.switched = true;
                    self.broadcast(Control::Strategy(s.id));
                }
            }
        }
    }

    fn broadcast(&mut self, c: Control) {
        for n in 0..self.nodes.len() as NodeId {
            if self.k.c.rt[n as usize].up {
                self.invoke(n, |node, ctx| node.on_control(c, ctx));
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        match self.k.c.apply_fault(f) {
            Heard::Nothing => {}
            Heard::Crashed(node) => self.invoke_dead(node, |n, ctx| n.on_crash(ctx)),
            Heard::Restarted(node) => {
                self.invoke(node, |n, ctx| n.on_start(ctx));
                // A node that was down when the user switched strategies missed the switch:
                // it hears the strategy in force as it comes back (harmless if it knew).
                if self.k.c.switched {
                    let now = Control::Strategy(self.k.c.strategy);
                    self.invoke(node, |n, ctx| n.on_control(now, ctx));
                }
            }
            Heard::Control(Some(node), c) => self.invoke(node, |n, ctx| n.on_control(c, ctx)),
            Heard::Control(None, c) => self.broadcast(c),
        }
    }

    fn dispatch(&mut self, ev: Ev<N>) -> Option<NodeId> {
        match ev {
            Ev::Start(n) => {
                if self.k.c.rt[n as usize].up && !self.k.held(n, &ev) {
                    self.invoke(n, |x, ctx| x.on_start(ctx));
                }
                Some(n)
            }
            Ev::Control(i) => {
                self.control(i);
                None
            }
            Ev::Timer { node, id, epoch, .. } => {
                let rt = &self.k.c.rt[node as usize];
                if epoch != rt.epoch || !rt.up || !self.k.c.timers.is_live(id) {
                    return None;
                }
                if self.k.held(node, &ev) {
                    return None;
                }
                self.k.c.timers.disarm(id);
                let Ev::Timer { timer, .. } = ev else { unreachable!() };
                self.k.detail(|| Detail::Timer(timer.clone()));
                self.k.c.trace.timer(self.k.c.now, node, timer.label());
                self.invoke(node, |x, ctx| x.on_timer(timer, ctx));
                Some(node)
            }
            Ev::Later { from, epoch, .. } => {
                let rt = &self.k.c.rt[from as usize];
                if epoch != rt.epoch || !rt.up || self.k.held(from, &ev) {
                    return None;
                }
                let Ev::Later { to, msg, .. } = ev else { unreachable!() };
                self.k.send(from, to, msg);
                None
            }
            Ev::Deliver { from, to, id, sent, .. } => {
                if self.k.c.rt[to as usize].up && self.k.held(to, &ev) {
                    return None;
                }
                self.k.in_flight -= 1;
                let Ev::Deliver { msg, .. } = ev else { unreachable!() };
                let label = msg.label();
                let why = if !self.k.c.rt[to as usize].up {
                    Some(DropReason::NodeDown)
                } else if self.k.c.net.blocked(from, to) {
                    Some(DropReason::Partitioned)
                } else {
                    None
                };
                if let Some(why) = why {
                    self.k.detail(|| Detail::Msg(msg.clone()));
                    self.k.c.trace.push(self.k.c.now, TraceKind::Dropped { from, to, msg: label, id, why });
                    let frame = MsgFrame { from, to, sent, deliver: self.k.c.now, kind: label, lost: true };
                    self.k.c.remember_drop(frame, self.k.c.now);
                    return None;
                }
                self.k.detail(|| Detail::Msg(msg.clone()));
                self.k.c.trace.delivered(self.k.c.now, from, to, label, id);
                if self.k.c.trace.keep {
                    self.k.c.recent.push(MsgFrame { from, to, sent, deliver: self.k.c.now, kind: label, lost: false });
                }
                self.invoke(to, |x, ctx| x.on_message(from, msg, ctx));
                Some(to)
            }
        }
    }

    fn world(&self, touched: Option<NodeId>) -> World<'_, N> {
        World {
            nodes: &self.nodes,
            metrics: &self.k.c.metrics,
            tallied: &self.k.c.tallied,
            tallies: &self.k.c.tallies,
            now: self.k.c.now,
            touched,
            up: &self.k.c.rt,
            params: &self.k.c.params,
            spec: self.k.c.spec,
        }
    }

    /// Takes the samples due by `upto`, the probes' gauges read first.
    fn sample(&mut self, upto: Time) {
        if !self.probes.is_empty() && self.k.c.sampler.due(upto) {
            let world = self.world(None);
            let values: Vec<_> = self.probes.iter().map(|(name, value)| (*name, value(&world))).collect();
            for (name, value) in values {
                self.k.c.metrics.set_gauge(name, value);
            }
        }
        self.k.c.take_samples(upto);
    }

    fn evaluate_checks(&mut self, touched: Option<NodeId>) {
        if self.checks.is_empty() {
            self.k.c.tallied.clear();
            return;
        }
        let world = self.world(touched);
        // Every check is judged after every event, violated or not, so that its bands end
        // where it holds again (the verdict is still its first violation).
        let mut failed = Vec::new();
        for (i, eval) in &self.checks {
            if let Err(why) = eval(&world) {
                failed.push((*i, why));
            }
        }
        let (now, trace_seq) = (self.k.c.now, self.k.c.trace.total().saturating_sub(1));
        for status in self.k.c.statuses.iter_mut() {
            status.held(now, trace_seq);
        }
        for (i, why) in failed {
            let status = &mut self.k.c.statuses[i];
            if status.failed(now, trace_seq, why) {
                let (check, why) = (status.id, status.latest_why.clone().unwrap_or_default());
                self.k.c.trace.push(now, TraceKind::Violation { check, why });
            }
        }
        self.k.c.tallied.clear();
    }
}

impl<N: Node> Run for Sim<N> {
    fn spec(&self) -> &'static ScenarioSpec {
        self.k.c.spec
    }
    fn recipe(&self) -> &Recipe {
        &self.k.c.recipe
    }
    fn now(&self) -> Time {
        self.k.c.now
    }
    fn node_count(&self) -> u32 {
        self.nodes.len() as u32
    }
    fn events(&self) -> u64 {
        self.k.c.events
    }
    fn unhandled(&self) -> u64 {
        self.k.c.unhandled
    }
    fn next_event_time(&self) -> Option<Time> {
        self.k.queue.peek_time()
    }

    fn step(&mut self) -> bool {
        let Some((t, ev)) = self.k.queue.pop() else { return false };
        if let Some(batch) = self.k.queue.fresh_instant() {
            warm(&self.nodes, &self.k.c.rt, batch);
        }
        if t > self.k.c.sampler.next_at() {
            self.sample(Time(t.0 - 1));
        }
        self.k.c.now = self.k.c.now.max(t);
        self.k.c.events += 1;
        let touched = self.dispatch(ev);
        self.evaluate_checks(touched);
        true
    }

    fn run_until(&mut self, t: Time, max_events: u64) -> u64 {
        let mut n = 0;
        while n < max_events && self.k.queue.peek_time().is_some_and(|next| next <= t) {
            self.step();
            n += 1;
        }
        if self.k.queue.peek_time().is_none_or(|next| next > t) {
            self.sample(t);
            self.k.c.now = self.k.c.now.max(t);
        }
        n
    }

    fn inject(&mut self, kind: ActionKind) -> Result<Time, RecipeError> {
        let (at, kind) = self.k.c.record_action(kind)?;
        self.k.schedule_control(at, kind);
        Ok(at)
    }

    fn frame(&self, max_messages: usize) -> Frame {
        let views = self.nodes.iter().map(N::view).collect();
        let in_flight = self.k.in_flight;
        debug_assert_eq!(in_flight, self.k.queue.iter().filter(|(_, e)| matches!(e, Ev::Deliver { .. })).count());
        let every = in_flight.div_ceil(max_messages.max(1)).max(1);
        // Messages are due soon and timers often seconds away, so the queue (walked from its
        // soonest buckets) has usually shown every message long before its last timer: the
        // walk stops at the last message (payments at scale: half a million events pending).
        let mut messages = Vec::new();
        let mut left = in_flight;
        for (at, e) in self.k.queue.iter() {
            if left == 0 {
                break;
            }
            if let Ev::Deliver { from, to, msg, id, sent } = e {
                left -= 1;
                if (*id as usize).is_multiple_of(every) {
                    messages.push(MsgFrame {
                        from: *from,
                        to: *to,
                        sent: *sent,
                        deliver: at,
                        kind: msg.label(),
                        lost: false,
                    });
                }
            }
        }
        self.k.c.frame(views, messages, in_flight, max_messages)
    }

    fn checks(&self) -> &[CheckStatus] {
        &self.k.c.statuses
    }
    fn metrics(&self) -> &Metrics {
        &self.k.c.metrics
    }
    fn sampler(&self) -> &Sampler {
        &self.k.c.sampler
    }
    fn trace(&self) -> &Trace {
        &self.k.c.trace
    }
    fn keep_trace(&mut self, on: bool) {
        if on && !self.k.c.trace.keep {
            self.k.c.trace.forget_kept();
            self.k.details.clear();
            self.k.c.recent.clear();
        }
        self.k.c.trace.keep = on;
    }
    fn detail(&self, seq: u64) -> Option<String> {
        let d = &self.k.details;
        let i = d.partition_point(|(s, _)| *s < seq);
        match d.get(i) {
            Some((s, Detail::Msg(m))) if *s == seq => Some(format!("{m:?}")),
            Some((s, Detail::Timer(t))) if *s == seq => Some(format!("{t:?}")),
            _ => None,
        }
    }
    fn snapshot(&self) -> Box<dyn Run> {
        Box::new(self.clone())
    }
    fn timeline(&self) -> Vec<(Time, String)> {
        timeline_of(&self.k.c.controls)
    }
}

/// Reads the runtime record (and, for enum nodes, the variant) of every node that a batch
/// of events is for. With many nodes these reads miss the cache; made together, back to
/// back, they overlap, where one at a time, as each event is handled, each would stall the
/// kernel. Small runs are left alone: their nodes stay cached.
#[inline]
fn warm<'a, N: Node>(nodes: &[N], rt: &[NodeRt], batch: impl Iterator<Item = &'a Ev<N>>) {
    if rt.len() < 4096 {
        return;
    }
    let mut any = 0u32;
    for ev in batch {
        let node = match ev {
            Ev::Deliver { to, .. } => *to as usize,
            Ev::Timer { node, .. } => *node as usize,
            _ => continue,
        };
        if let (Some(r), Some(n)) = (rt.get(node), nodes.get(node)) {
            any ^= r.epoch;
            std::hint::black_box(std::mem::discriminant(n));
        }
    }
    std::hint::black_box(any);
}

fn timeline_of(controls: &[(Time, ActionKind)]) -> Vec<(Time, String)> {
    let mut all: Vec<(Time, String)> = controls.iter().map(|(t, k)| (*t, k.to_string())).collect();
    all.sort_by_key(|(t, _)| *t);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_on_a_drifting_clock_takes_at_least_its_local_time() {
        let mut c = NodeClock::new();
        for ppm in [-500_000, -1, 1, 100_000, 500_000, 999_999] {
            c.drift_ppm = ppm;
            for d in [1, 2, 3, 7, 1000, 123_457] {
                let t = c.true_duration(d);
                assert!(t >= 1, "{d} µs at {ppm} ppm fired in the instant it was set");
                // Rounded up, and by less than a microsecond.
                let local = t as i128 * (1_000_000 + ppm as i128);
                assert!(
                    local >= d as i128 * 1_000_000 && local < (d as i128 + 2) * 1_000_000,
                    "{d} µs at {ppm} ppm: {t}"
                );
            }
        }
    }

    #[test]
    fn timers_window_slides_and_forgets_nothing_live() {
        let mut t = Timers::default();
        let ids: Vec<TimerId> = (0..1000).map(|_| t.allocate()).collect();
        for &id in &ids {
            t.arm(id);
        }
        // Everything but one early timer finishes: the window keeps that one live.
        for &id in ids.iter().filter(|id| id.0 != 3) {
            t.cancel(id);
        }
        assert!(t.is_live(ids[3]));
        assert!(ids.iter().filter(|id| id.0 != 3).all(|&id| !t.is_live(id)));
        t.cancel(ids[3]);
        t.cancel(ids[3]); // twice, or after firing: harmless
        assert!(t.words.iter().all(|&w| w == 0) && t.words.len() <= 1 && t.base == 960, "{:?} {}", t.words, t.base);
        let late = t.allocate();
        t.arm(late);
        assert!(t.is_live(late) && !t.is_live(ids[999]));
    }
}
