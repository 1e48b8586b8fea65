//! The page ↔ simulation-worker protocol: every command and reply, and their little-endian binary encoding.
//!
//! The page (Leptos UI and drawing) holds no simulation code; the worker owns the run. They
//! talk only through these messages, each encoded into one byte buffer that is transferred,
//! not copied, between the threads. Why binary rather than `serde-wasm-bindgen`: a frame at
//! the seeds' scale is thousands of nodes and messages, which as JS objects would be built
//! one wasm→JS call at a time and structured-cloned every frame; here it is two memcpys.
//! And no serde `Deserialize` lands in the page's module.
//!
//! Strings the core types hold as `&'static str` (a spec's texts, a message's kind, a check's
//! label) are read back through [`intern`]: each distinct text is leaked once, so the page's
//! renderer and panels take the very types the kernel produces.

use faultline_core::*;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Bumped on any change to the wire format: the worker's files are not content-hashed
/// (Trunk names them at build time), so a browser may pair a new page with an old worker.
pub const PROTOCOL: u32 = 3;

/// Page → worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Read `query` as the recipe of scenario `id` and build its run.
    Open {
        id: String,
        query: String,
    },
    /// Start over from 0 with the same recipe but another seed, or without the user's actions.
    Restart {
        seed: Option<u64>,
        forget_actions: bool,
    },
    /// Play at `speed` simulated seconds per wall second (0 = as fast as possible).
    Play {
        speed: f64,
    },
    Pause,
    /// Jump to `to` µs: rewind to a checkpoint now, then catch up slice by slice.
    Seek {
        to: Micros,
    },
    /// One event forward or back; pauses.
    Step {
        forward: bool,
    },
    /// A user action at the current instant (a fault or a strategy switch), as the recipe
    /// writes actions (`encode_actions`).
    Act {
        action: String,
    },
    SetParam {
        id: String,
        value: i64,
    },
    /// The recipe with the run's fingerprint as it stands now, for a shared link.
    Share,
    /// The page drew the last status: send the next one when something changed. `full`
    /// asks for the slow parts as well (event log, charts, timeline).
    Want {
        full: bool,
        log: LogFilter,
    },
    /// Every scenario's default run and every at-scale recipe, as fast as possible
    /// (`#/bench/engine`).
    Bench,
    /// A deliberate panic inside the worker (`#/debug/worker-panic`), for the error panel's test.
    Panic,
}

/// Which event-log entries the page shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogFilter {
    pub node: Option<NodeId>,
    /// A `TraceKind::label`, or empty for all.
    pub kind: String,
    pub limit: u32,
}

/// Worker → page.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The worker is listening (messages sent before this would be lost).
    Ready {
        protocol: u32,
    },
    /// The scenario's declarations (the page draws its controls from them), the run's
    /// canonical recipe, and what reading the link repaired.
    Opened {
        spec: SpecData,
        query: String,
        problems: Vec<String>,
    },
    /// The link cannot be opened: `unknown` names a scenario that does not exist.
    Unreadable {
        unknown: Option<String>,
        message: String,
    },
    Status(Box<Snapshot>),
    /// Something to tell the user about what they just did ("crash server — at 1.2 s").
    Toast(String),
    /// The run started over from 0 (a setup parameter or a new recipe): what was repaired.
    Restarted {
        problems: Vec<String>,
    },
    /// The recipe query with the fingerprint as it stands now.
    Shared {
        query: String,
    },
    BenchRow(BenchRow),
    BenchDone,
    /// The worker failed; `fatal` means it is gone (a panic).
    Error {
        fatal: bool,
        message: String,
    },
}

/// Everything the page shows of the run at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// How many commands the worker had handled: the page, which counts those it sent,
    /// knows a status made before its latest command may not show that command yet.
    pub handled: u64,
    pub now: Micros,
    pub until: Micros,
    pub events: u64,
    pub hash: u64,
    pub playing: bool,
    /// Where a seek is heading while it re-simulates.
    pub seeking: Option<Micros>,
    /// The speed reached, when it falls short of the one chosen.
    pub pace: Option<f64>,
    /// The canonical recipe query (the link), without the scenario.
    pub query: String,
    /// What the controls show at `now`: the strategy in force, the seed, and each
    /// parameter's value (in the spec's order), the recipe's actions up to now applied.
    pub strategy: String,
    pub seed: u64,
    pub params: Vec<i64>,
    /// Why the run was stopped before the tab ran out of memory.
    pub stopped: Option<String>,
    /// Comparing the run with its link's fingerprint: `Some((matches, what))` once, when it
    /// stood where the link was shared.
    pub shared_news: Option<(bool, String)>,
    pub frame: Frame,
    pub full: Option<Full>,
}

/// The parts of a status the page refreshes a few times a second.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Full {
    pub log: Vec<LogRow>,
    pub charts: Charts,
    /// Every fault and action of the run, with its time (for the timeline's marks).
    pub timeline: Vec<(Micros, String)>,
    /// The strategy in force from each time on: the recipe's at 0, then each switch.
    pub strategies: Vec<(Micros, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub seq: u64,
    pub at: Micros,
    pub kind: String,
    pub text: String,
}

/// The headline metrics' sampled series (one per `spec.metrics`) and their values so far.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Charts {
    pub times: Vec<Micros>,
    pub series: Vec<Vec<f64>>,
    pub totals: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    pub id: String,
    pub label: String,
    /// The recipe as a link's query (empty for a default recipe).
    pub query: String,
    pub until: Micros,
    pub events: u64,
    pub simulated: Micros,
    /// Compute time only.
    pub wall_ms: f64,
    pub fingerprint: String,
}

/// A scenario's declarations on the wire; [`SpecData::leak`] turns them back into the
/// `&'static ScenarioSpec` the page's panels read (without a `build`: the page runs nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct SpecData(pub Vec<u8>);

impl SpecData {
    pub fn of(spec: &ScenarioSpec) -> SpecData {
        let mut w = Writer::default();
        put_spec(&mut w, spec);
        SpecData(w.0)
    }

    /// The spec, leaked once per scenario opened (a few kilobytes of text).
    pub fn leak(&self) -> Result<&'static ScenarioSpec, WireError> {
        let mut r = Reader::new(&self.0);
        let spec = get_spec(&mut r)?;
        Ok(Box::leak(Box::new(spec)))
    }
}

/// Why bytes could not be read as a message.
#[derive(Clone, Debug, PartialEq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unreadable message from the simulator: {}", self.0)
    }
}

thread_local! {
    static INTERNED: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

/// `text` as a `&'static str`, leaked the first time it is seen (a scenario has a few dozen
/// distinct static texts; labels that vary per node are `String`s and never come here).
pub fn intern(text: &str) -> &'static str {
    INTERNED.with(|set| {
        let mut set = set.borrow_mut();
        if let Some(s) = set.get(text) {
            return *s;
        }
        let s: &'static str = Box::leak(text.to_owned().into_boxed_str());
        set.insert(s);
        s
    })
}

/// The page does not build runs: a spec it decoded has this in place of `build`.
fn runs_in_the_worker(_: &Setup) -> Box<dyn Run> {
    unreachable!("the page never builds a run: the worker does")
}

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn f32(&mut self, v: f32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn len(&mut self, n: usize) -> &mut Self {
        self.u32(n as u32);
        self
    }
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| WireError(format!("{n} bytes wanted at {} of {}", self.pos, self.buf.len())))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_le_bytes)
    }
    fn f64(&mut self) -> Result<f64, WireError> {
        self.array().map(f64::from_le_bytes)
    }
    fn f32(&mut self) -> Result<f32, WireError> {
        self.array().map(f32::from_le_bytes)
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }
    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError("text that is not UTF-8".into()))
    }
    fn interned(&mut self) -> Result<&'static str, WireError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map(intern).map_err(|_| WireError("text that is not UTF-8".into()))
    }
    /// A count of items, each at least `min_bytes` long: a corrupt count fails here rather
    /// than allocating gigabytes.
    fn len(&mut self, min_bytes: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes.max(1)) > self.buf.len() - self.pos {
            return Err(WireError(format!("a list of {n} in {} bytes", self.buf.len() - self.pos)));
        }
        Ok(n)
    }
    fn vec<T>(
        &mut self,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = self.len(min_bytes)?;
        (0..n).map(|_| item(self)).collect()
    }
    fn option<T>(&mut self, item: impl FnOnce(&mut Self) -> Result<T, WireError>) -> Result<Option<T>, WireError> {
        Ok(if self.bool()? { Some(item(self)?) } else { None })
    }
    fn done(&self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError(format!("{n} bytes left over"))),
        }
    }
}

fn bad(what: &str, tag: u8) -> WireError {
    WireError(format!("unknown {what} {tag}"))
}

fn put_opt<T>(w: &mut Writer, v: &Option<T>, put: impl FnOnce(&mut Writer, &T)) {
    w.bool(v.is_some());
    if let Some(v) = v {
        put(w, v);
    }
}

fn put_strs(w: &mut Writer, list: &[String]) {
    w.len(list.len());
    list.iter().for_each(|s| {
        w.str(s);
    });
}

// ---- the spec -------------------------------------------------------------------------------

fn put_measure(w: &mut Writer, m: &Measure) {
    match *m {
        Measure::Count(c) => {
            w.u8(0).str(c);
        }
        Measure::Rate(c) => {
            w.u8(1).str(c);
        }
        Measure::Gauge(c) => {
            w.u8(2).str(c);
        }
        Measure::GaugePer(c, x) => {
            w.u8(3).str(c).f64(x);
        }
        Measure::Quantile(c, q) => {
            w.u8(4).str(c).f64(q);
        }
        Measure::Mean(c) => {
            w.u8(5).str(c);
        }
        Measure::Percent { num, rest } => {
            w.u8(6).str(num).str(rest);
        }
    }
}

fn get_measure(r: &mut Reader) -> Result<Measure, WireError> {
    Ok(match r.u8()? {
        0 => Measure::Count(r.interned()?),
        1 => Measure::Rate(r.interned()?),
        2 => Measure::Gauge(r.interned()?),
        3 => Measure::GaugePer(r.interned()?, r.f64()?),
        4 => Measure::Quantile(r.interned()?, r.f64()?),
        5 => Measure::Mean(r.interned()?),
        6 => Measure::Percent { num: r.interned()?, rest: r.interned()? },
        t => return Err(bad("measure", t)),
    })
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn put_spec(w: &mut Writer, s: &ScenarioSpec) {
    let i = &s.info;
    for t in [i.id, i.title, i.category, i.summary] {
        w.str(t);
    }
    w.len(i.seeds.len());
    i.seeds.iter().for_each(|t| {
        w.str(t);
    });
    let n = &i.note;
    for t in [n.what_can_go_wrong, n.what_you_sacrifice, n.at_10x, n.resembles] {
        w.str(t);
    }
    w.len(n.try_this.len());
    n.try_this.iter().for_each(|t| {
        w.str(t);
    });
    w.len(s.params.len());
    for p in s.params {
        w.str(p.id).str(p.label).str(p.unit).str(p.help);
        w.i64(p.min).i64(p.max).i64(p.step).i64(p.default).bool(p.live);
    }
    w.len(s.strategies.len());
    for st in s.strategies {
        w.str(st.id).str(st.label).bool(st.naive).str(st.help);
    }
    w.len(s.faults.len());
    for f in s.faults {
        w.str(f.id).str(f.label).bool(f.target == Target::Node).str(f.value_label);
        w.i64(f.value_min).i64(f.value_max).i64(f.value_default).str(f.help);
    }
    w.len(s.checks.len());
    for c in s.checks {
        w.str(c.id).str(c.label).str(c.help);
    }
    w.len(s.metrics.len());
    for m in s.metrics {
        w.str(m.id).str(m.label).str(m.unit);
        put_measure(w, &m.measure);
    }
    w.u8(match s.layout {
        Layout::Tiers => 0,
        Layout::Ring => 1,
        Layout::Grid => 2,
    });
    w.u64(s.default_until).u64(s.sample_every);
}

fn get_spec(r: &mut Reader) -> Result<ScenarioSpec, WireError> {
    let (id, title, category, summary) = (r.interned()?, r.interned()?, r.interned()?, r.interned()?);
    let seeds = leak_slice(r.vec(4, Reader::interned)?);
    let (what_can_go_wrong, what_you_sacrifice, at_10x, resembles) =
        (r.interned()?, r.interned()?, r.interned()?, r.interned()?);
    let try_this = leak_slice(r.vec(4, Reader::interned)?);
    let note = Note { what_can_go_wrong, what_you_sacrifice, at_10x, resembles, try_this };
    let params = r.vec(49, |r| {
        let (id, label, unit, help) = (r.interned()?, r.interned()?, r.interned()?, r.interned()?);
        let (min, max, step, default, live) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.bool()?);
        Ok(ParamSpec { id, label, unit, min, max, step, default, help, live })
    })?;
    let strategies = r.vec(13, |r| {
        Ok(StrategySpec { id: r.interned()?, label: r.interned()?, naive: r.bool()?, help: r.interned()? })
    })?;
    let faults = r.vec(45, |r| {
        let (id, label) = (r.interned()?, r.interned()?);
        let target = if r.bool()? { Target::Node } else { Target::Global };
        let value_label = r.interned()?;
        let (value_min, value_max, value_default, help) = (r.i64()?, r.i64()?, r.i64()?, r.interned()?);
        Ok(FaultSpec { id, label, target, value_label, value_min, value_max, value_default, help })
    })?;
    let checks = r.vec(12, |r| Ok(CheckSpec { id: r.interned()?, label: r.interned()?, help: r.interned()? }))?;
    let metrics = r.vec(13, |r| {
        let (id, label, unit) = (r.interned()?, r.interned()?, r.interned()?);
        Ok(MetricSpec { id, label, unit, measure: get_measure(r)? })
    })?;
    let layout = match r.u8()? {
        0 => Layout::Tiers,
        1 => Layout::Ring,
        2 => Layout::Grid,
        t => return Err(bad("layout", t)),
    };
    let (default_until, sample_every) = (r.u64()?, r.u64()?);
    r.done()?;
    Ok(ScenarioSpec {
        info: Info { id, title, category, seeds, summary, note },
        params: leak_slice(params),
        strategies: leak_slice(strategies),
        faults: leak_slice(faults),
        checks: leak_slice(checks),
        metrics: leak_slice(metrics),
        layout,
        default_until,
        sample_every,
        build: runs_in_the_worker,
    })
}

// ---- frames ---------------------------------------------------------------------------------

fn tone_byte(t: Tone) -> u8 {
    t as u8
}

fn tone(b: u8) -> Result<Tone, WireError> {
    [Tone::Neutral, Tone::Good, Tone::Warn, Tone::Bad].get(b as usize).copied().ok_or_else(|| bad("tone", b))
}

const KINDS: [NodeKind; 10] = [
    NodeKind::Client,
    NodeKind::LoadBalancer,
    NodeKind::Service,
    NodeKind::Worker,
    NodeKind::Queue,
    NodeKind::Cache,
    NodeKind::Database,
    NodeKind::Store,
    NodeKind::Lock,
    NodeKind::Region,
];
const STATUSES: [faultline_core::Status; 3] =
    [faultline_core::Status::Up, faultline_core::Status::Crashed, faultline_core::Status::Paused];

fn put_msg(w: &mut Writer, m: &MsgFrame) {
    w.u32(m.from).u32(m.to).u64(m.sent.micros()).u64(m.deliver.micros());
    w.str(m.kind).bool(m.lost);
}

fn get_msg(r: &mut Reader) -> Result<MsgFrame, WireError> {
    let (from, to, sent, deliver) = (r.u32()?, r.u32()?, Time(r.u64()?), Time(r.u64()?));
    Ok(MsgFrame { from, to, sent, deliver, kind: r.interned()?, lost: r.bool()? })
}

fn put_ids(w: &mut Writer, ids: &[NodeId]) {
    w.len(ids.len());
    ids.iter().for_each(|&n| {
        w.u32(n);
    });
}

pub fn put_frame(w: &mut Writer, f: &Frame) {
    w.u64(f.now.micros());
    w.len(f.nodes.len());
    for n in &f.nodes {
        let v = &n.view;
        w.u32(n.id).str(&v.label).u8(v.kind as u8).u8(v.tier);
        w.u8(n.status as u8).bool(n.cut_off).i64(n.clock_offset);
        w.len(v.badges.len());
        v.badges.iter().for_each(|b| {
            w.str(&b.text).u8(tone_byte(b.tone));
        });
        w.len(v.gauges.len());
        v.gauges.iter().for_each(|g| {
            w.str(g.label).i64(g.value).i64(g.max);
        });
        w.len(v.arcs.len());
        v.arcs.iter().for_each(|a| {
            w.f32(a.start).f32(a.end).u32(a.owner);
        });
        w.len(v.marks.len());
        v.marks.iter().for_each(|m| {
            w.u32(m.node).str(&m.text).u8(tone_byte(m.tone));
        });
    }
    w.len(f.messages.len());
    f.messages.iter().for_each(|m| put_msg(w, m));
    w.u64(f.in_flight as u64);
    w.len(f.cuts.len());
    for c in &f.cuts {
        put_ids(w, &c.a);
        put_opt(w, &c.b, |w, b| put_ids(w, b));
        w.bool(c.one_way);
    }
    w.len(f.checks.len());
    for c in &f.checks {
        w.str(c.id).str(c.label);
        put_opt(w, &c.violation, |w, v| {
            w.u64(v.at.micros()).str(&v.why).u64(v.trace_seq);
        });
        w.len(c.bands.len());
        for b in &c.bands {
            w.u64(b.from.micros()).u64(b.from_seq);
            put_opt(w, &b.to.zip(b.to_seq), |w, (to, seq)| {
                w.u64(to.micros()).u64(*seq);
            });
        }
        put_opt(w, &c.latest_why, |w, why| {
            w.str(why);
        });
    }
    w.u64(f.lost_fade);
    w.len(f.recent.len());
    f.recent.iter().for_each(|m| put_msg(w, m));
}

pub fn get_frame(r: &mut Reader) -> Result<Frame, WireError> {
    let now = Time(r.u64()?);
    let nodes = r.vec(35, |r| {
        let (id, label) = (r.u32()?, r.string()?);
        let kind = r.u8()?;
        let kind = *KINDS.get(kind as usize).ok_or_else(|| bad("node kind", kind))?;
        let tier = r.u8()?;
        let status = r.u8()?;
        let status = *STATUSES.get(status as usize).ok_or_else(|| bad("status", status))?;
        let (cut_off, clock_offset) = (r.bool()?, r.i64()?);
        let badges = r.vec(5, |r| Ok(Badge { text: r.string()?, tone: tone(r.u8()?)? }))?;
        let gauges = r.vec(20, |r| Ok(Gauge { label: r.interned()?, value: r.i64()?, max: r.i64()? }))?;
        let arcs = r.vec(12, |r| Ok(Arc { start: r.f32()?, end: r.f32()?, owner: r.u32()? }))?;
        let marks = r.vec(9, |r| Ok(Mark { node: r.u32()?, text: r.string()?, tone: tone(r.u8()?)? }))?;
        let view = NodeView { label, kind, tier, badges, gauges, arcs, marks };
        Ok(NodeFrame { id, view, status, cut_off, clock_offset })
    })?;
    let messages = r.vec(29, get_msg)?;
    let in_flight = r.u64()? as usize;
    let get_ids = |r: &mut Reader| r.vec(4, Reader::u32);
    let cuts = r.vec(9, |r| Ok(Cut { a: get_ids(r)?, b: r.option(get_ids)?, one_way: r.bool()? }))?;
    let checks = r.vec(11, |r| {
        let (id, label) = (r.interned()?, r.interned()?);
        let violation = r.option(|r| Ok(Violation { at: Time(r.u64()?), why: r.string()?, trace_seq: r.u64()? }))?;
        let bands = r.vec(17, |r| {
            let (from, from_seq) = (Time(r.u64()?), r.u64()?);
            let end = r.option(|r| Ok((Time(r.u64()?), r.u64()?)))?;
            Ok(Band { from, from_seq, to: end.map(|e| e.0), to_seq: end.map(|e| e.1) })
        })?;
        let latest_why = r.option(Reader::string)?;
        Ok(CheckStatus { id, label, violation, bands, latest_why })
    })?;
    let lost_fade = r.u64()?;
    let recent = r.vec(29, get_msg)?;
    Ok(Frame { now, nodes, messages, in_flight, cuts, checks, lost_fade, recent })
}

// ---- commands and replies -------------------------------------------------------------------

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Command::Open { id, query } => {
                w.u8(0).str(id).str(query);
            }
            Command::Restart { seed, forget_actions } => {
                w.u8(1);
                put_opt(&mut w, seed, |w, s| {
                    w.u64(*s);
                });
                w.bool(*forget_actions);
            }
            Command::Play { speed } => {
                w.u8(2).f64(*speed);
            }
            Command::Pause => {
                w.u8(3);
            }
            Command::Seek { to } => {
                w.u8(4).u64(*to);
            }
            Command::Step { forward } => {
                w.u8(5).bool(*forward);
            }
            Command::Act { action } => {
                w.u8(6).str(action);
            }
            Command::SetParam { id, value } => {
                w.u8(7).str(id).i64(*value);
            }
            Command::Share => {
                w.u8(8);
            }
            Command::Want { full, log } => {
                w.u8(9).bool(*full);
                put_opt(&mut w, &log.node, |w, n| {
                    w.u32(*n);
                });
                w.str(&log.kind).u32(log.limit);
            }
            Command::Bench => {
                w.u8(10);
            }
            Command::Panic => {
                w.u8(11);
            }
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, WireError> {
        let mut r = Reader::new(bytes);
        let c = match r.u8()? {
            0 => Command::Open { id: r.string()?, query: r.string()? },
            1 => Command::Restart { seed: r.option(Reader::u64)?, forget_actions: r.bool()? },
            2 => Command::Play { speed: r.f64()? },
            3 => Command::Pause,
            4 => Command::Seek { to: r.u64()? },
            5 => Command::Step { forward: r.bool()? },
            6 => Command::Act { action: r.string()? },
            7 => Command::SetParam { id: r.string()?, value: r.i64()? },
            8 => Command::Share,
            9 => {
                let full = r.bool()?;
                let log = LogFilter { node: r.option(Reader::u32)?, kind: r.string()?, limit: r.u32()? };
                Command::Want { full, log }
            }
            10 => Command::Bench,
            11 => Command::Panic,
            t => return Err(bad("command", t)),
        };
        r.done()?;
        Ok(c)
    }
}

fn put_status(w: &mut Writer, s: &Snapshot) {
    w.u64(s.handled).u64(s.now).u64(s.until).u64(s.events).u64(s.hash).bool(s.playing);
    put_opt(w, &s.seeking, |w, t| {
        w.u64(*t);
    });
    put_opt(w, &s.pace, |w, x| {
        w.f64(*x);
    });
    w.str(&s.query).str(&s.strategy).u64(s.seed).len(s.params.len());
    s.params.iter().for_each(|v| {
        w.i64(*v);
    });
    put_opt(w, &s.stopped, |w, t| {
        w.str(t);
    });
    put_opt(w, &s.shared_news, |w, (m, t)| {
        w.bool(*m).str(t);
    });
    put_frame(w, &s.frame);
    put_opt(w, &s.full, |w, f| {
        w.len(f.log.len());
        f.log.iter().for_each(|l| {
            w.u64(l.seq).u64(l.at).str(&l.kind).str(&l.text);
        });
        w.len(f.charts.times.len());
        f.charts.times.iter().for_each(|t| {
            w.u64(*t);
        });
        w.len(f.charts.series.len());
        for s in &f.charts.series {
            w.len(s.len());
            s.iter().for_each(|v| {
                w.f64(*v);
            });
        }
        w.len(f.charts.totals.len());
        f.charts.totals.iter().for_each(|v| {
            w.f64(*v);
        });
        for list in [&f.timeline, &f.strategies] {
            w.len(list.len());
            list.iter().for_each(|(t, s)| {
                w.u64(*t).str(s);
            });
        }
    });
}

fn get_status(r: &mut Reader) -> Result<Snapshot, WireError> {
    let handled = r.u64()?;
    let (now, until, events, hash, playing) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.bool()?);
    let seeking = r.option(Reader::u64)?;
    let pace = r.option(Reader::f64)?;
    let (query, strategy, seed, params) = (r.string()?, r.string()?, r.u64()?, r.vec(8, Reader::i64)?);
    let stopped = r.option(Reader::string)?;
    let shared_news = r.option(|r| Ok((r.bool()?, r.string()?)))?;
    let frame = get_frame(r)?;
    let full = r.option(|r| {
        let log = r.vec(24, |r| Ok(LogRow { seq: r.u64()?, at: r.u64()?, kind: r.string()?, text: r.string()? }))?;
        let times = r.vec(8, Reader::u64)?;
        let series = r.vec(4, |r| r.vec(8, Reader::f64))?;
        let totals = r.vec(8, Reader::f64)?;
        let timeline = r.vec(12, |r| Ok((r.u64()?, r.string()?)))?;
        let strategies = r.vec(12, |r| Ok((r.u64()?, r.string()?)))?;
        Ok(Full { log, charts: Charts { times, series, totals }, timeline, strategies })
    })?;
    Ok(Snapshot {
        handled,
        now,
        until,
        events,
        hash,
        playing,
        seeking,
        pace,
        query,
        strategy,
        seed,
        params,
        stopped,
        shared_news,
        frame,
        full,
    })
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Reply::Ready { protocol } => {
                w.u8(0).u32(*protocol);
            }
            Reply::Opened { spec, query, problems } => {
                w.u8(1).len(spec.0.len());
                w.0.extend_from_slice(&spec.0);
                w.str(query);
                put_strs(&mut w, problems);
            }
            Reply::Unreadable { unknown, message } => {
                w.u8(2);
                put_opt(&mut w, unknown, |w, s| {
                    w.str(s);
                });
                w.str(message);
            }
            Reply::Status(s) => {
                w.u8(3);
                put_status(&mut w, s);
            }
            Reply::Toast(t) => {
                w.u8(4).str(t);
            }
            Reply::Restarted { problems } => {
                w.u8(5);
                put_strs(&mut w, problems);
            }
            Reply::Shared { query } => {
                w.u8(6).str(query);
            }
            Reply::BenchRow(b) => {
                w.u8(7).str(&b.id).str(&b.label).str(&b.query).u64(b.until).u64(b.events);
                w.u64(b.simulated).f64(b.wall_ms).str(&b.fingerprint);
            }
            Reply::BenchDone => {
                w.u8(8);
            }
            Reply::Error { fatal, message } => {
                w.u8(9).bool(*fatal).str(message);
            }
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let mut r = Reader::new(bytes);
        let strs = |r: &mut Reader| r.vec(4, Reader::string);
        let reply = match r.u8()? {
            0 => Reply::Ready { protocol: r.u32()? },
            1 => {
                let n = r.len(1)?;
                let spec = SpecData(r.take(n)?.to_vec());
                Reply::Opened { spec, query: r.string()?, problems: strs(&mut r)? }
            }
            2 => Reply::Unreadable { unknown: r.option(Reader::string)?, message: r.string()? },
            3 => Reply::Status(Box::new(get_status(&mut r)?)),
            4 => Reply::Toast(r.string()?),
            5 => Reply::Restarted { problems: strs(&mut r)? },
            6 => Reply::Shared { query: r.string()? },
            7 => Reply::BenchRow(BenchRow {
                id: r.string()?,
                label: r.string()?,
                query: r.string()?,
                until: r.u64()?,
                events: r.u64()?,
                simulated: r.u64()?,
                wall_ms: r.f64()?,
                fingerprint: r.string()?,
            }),
            8 => Reply::BenchDone,
            9 => Reply::Error { fatal: r.bool()?, message: r.string()? },
            t => return Err(bad("reply", t)),
        };
        r.done()?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_equal(a: &Frame, b: &Frame) {
        assert_eq!(a.now, b.now);
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.in_flight, b.in_flight);
        assert_eq!(a.cuts.len(), b.cuts.len());
        for (x, y) in a.cuts.iter().zip(&b.cuts) {
            assert_eq!((&x.a, &x.b, x.one_way), (&y.a, &y.b, y.one_way));
        }
        assert_eq!(a.checks, b.checks);
        assert_eq!(a.lost_fade, b.lost_fade);
        assert_eq!(a.recent, b.recent);
    }

    #[test]
    fn every_command_survives_the_wire() {
        let log = LogFilter { node: Some(3), kind: "sent".into(), limit: 150 };
        for c in [
            Command::Open { id: "backpressure".into(), query: "seed=2&a=x".into() },
            Command::Restart { seed: Some(9), forget_actions: false },
            Command::Restart { seed: None, forget_actions: true },
            Command::Play { speed: 0.25 },
            Command::Pause,
            Command::Seek { to: 12_345_678 },
            Command::Step { forward: false },
            Command::Act { action: "1000.crash.3".into() },
            Command::SetParam { id: "workers".into(), value: -7 },
            Command::Share,
            Command::Want { full: true, log },
            Command::Want { full: false, log: LogFilter::default() },
            Command::Bench,
            Command::Panic,
        ] {
            assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn bad_bytes_are_an_error_never_a_panic_or_a_huge_allocation() {
        assert!(Command::decode(&[]).is_err());
        assert!(Command::decode(&[99]).is_err());
        assert!(Command::decode(&[0, 255, 255, 255, 255]).is_err(), "a string longer than the message");
        let mut long = Command::Pause.encode();
        long.push(0);
        assert!(Command::decode(&long).is_err(), "bytes left over");
        assert!(Reply::decode(&[3, 0]).is_err());
        // A list claiming four billion entries in a short message fails before allocating.
        let mut r = Reader::new(&[255, 255, 255, 255, 0, 0]);
        assert!(r.vec(1, Reader::u8).is_err());
    }

    /// Every registered scenario's spec and its frames along its default run (at the
    /// start, a quarter, half way and the end) read back exactly as the kernel made them.
    #[test]
    fn every_scenario_crosses_intact() {
        // Violation bands both open and closed cross too (the naive default runs make them).
        let (mut open_bands, mut closed_bands) = (0, 0);
        for spec in faultline_scenarios::ALL {
            let back = SpecData::of(spec).leak().expect("spec decodes");
            assert_eq!(format!("{:?}", back.info), format!("{:?}", spec.info));
            assert_eq!(format!("{:?}", back.params), format!("{:?}", spec.params));
            assert_eq!(format!("{:?}", back.strategies), format!("{:?}", spec.strategies));
            assert_eq!(format!("{:?}", back.faults), format!("{:?}", spec.faults));
            assert_eq!(format!("{:?}", back.checks), format!("{:?}", spec.checks));
            assert_eq!(format!("{:?}", back.metrics), format!("{:?}", spec.metrics));
            assert_eq!(
                (back.layout, back.default_until, back.sample_every),
                (spec.layout, spec.default_until, spec.sample_every)
            );

            let (mut run, _) = open(spec, &spec.default_recipe(1));
            run.keep_trace(true);
            for quarter in 0..=4u64 {
                run.run_until(Time(spec.default_until * quarter / 4), u64::MAX);
                let frame = run.frame(2000);
                for b in frame.checks.iter().flat_map(|c| &c.bands) {
                    *if b.to.is_some() { &mut closed_bands } else { &mut open_bands } += 1;
                }
                let status = Snapshot {
                    handled: quarter,
                    now: run.now().micros(),
                    until: spec.default_until,
                    events: run.events(),
                    hash: run.trace().hash(),
                    playing: quarter % 2 == 0,
                    seeking: Some(5),
                    pace: Some(0.5),
                    query: run.recipe().to_query(spec),
                    strategy: "x".into(),
                    seed: 3,
                    params: vec![-1, 7],
                    stopped: None,
                    shared_news: Some((true, "same".into())),
                    frame: frame.clone(),
                    full: Some(Full {
                        log: vec![LogRow { seq: 1, at: 2, kind: "sent".into(), text: "a → b".into() }],
                        charts: Charts {
                            times: run.sampler().times.iter().map(|t| t.micros()).collect(),
                            series: run.sampler().series.clone(),
                            totals: vec![1.5, -2.0],
                        },
                        timeline: run.timeline().into_iter().map(|(t, s)| (t.micros(), s)).collect(),
                        strategies: vec![(0, "a".into()), (7, "b".into())],
                    }),
                };
                let bytes = Reply::Status(Box::new(status.clone())).encode();
                let Ok(Reply::Status(back)) = Reply::decode(&bytes) else { panic!("{}: status", spec.id()) };
                frames_equal(&back.frame, &frame);
                assert_eq!(back.full, status.full);
                assert_eq!(
                    (back.now, back.events, back.hash, &back.query),
                    (status.now, status.events, status.hash, &status.query)
                );
                assert_eq!((&back.strategy, back.seed, &back.params), (&status.strategy, status.seed, &status.params));
            }
        }
        assert!(open_bands > 0 && closed_bands > 0, "{open_bands} open and {closed_bands} closed bands crossed");
    }

    #[test]
    fn other_replies_survive_the_wire() {
        let spec = SpecData::of(faultline_scenarios::ALL[0]);
        for r in [
            Reply::Ready { protocol: PROTOCOL },
            Reply::Opened { spec, query: "seed=1".into(), problems: vec!["x".into()] },
            Reply::Unreadable { unknown: Some("nope".into()), message: "no such scenario".into() },
            Reply::Toast("crash — at 1 s".into()),
            Reply::Restarted { problems: vec![] },
            Reply::Shared { query: "seed=1&fp=00ff00ff@12".into() },
            Reply::BenchRow(BenchRow {
                id: "x".into(),
                label: "x at scale".into(),
                query: "seed=2".into(),
                until: 9,
                events: 9,
                simulated: 7,
                wall_ms: 1.5,
                fingerprint: "ab".into(),
            }),
            Reply::BenchDone,
            Reply::Error { fatal: true, message: "boom".into() },
        ] {
            assert_eq!(Reply::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn interned_texts_are_leaked_once() {
        let a = intern("kind-x");
        let b = intern(&String::from("kind-x"));
        assert!(std::ptr::eq(a, b));
    }
}
