//! The recipe — scenario, strategy, parameters, seed and timestamped user actions —
//! and its URL form. A run is a pure function of its recipe.
//!
//! URL form (query string, version 1):
//! `v=1&s=<scenario>&strategy=<id>&seed=<n>&<param>=<value>…&a=<actions>`
//! Parameters equal to their default are left out. `a` is the action log: a varint
//! byte encoding in unpadded base64url (see `encode_actions`). Versioned: a link made
//! today keeps working when the format grows; a link from a newer version says so.

use crate::fault::Fault;
use crate::rng::Ppm;
use crate::spec::ScenarioSpec;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const RECIPE_VERSION: u32 = 1;
/// Longer URLs are refused outright: browsers and chat tools truncate beyond this.
pub const MAX_URL_LEN: usize = 16_384;
pub const MAX_ACTIONS: usize = 2_000;
const RESERVED: [&str; 6] = ["v", "s", "strategy", "seed", "a", "fp"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    Fault(Fault),
    SetParam { id: String, value: i64 },
    SetStrategy { id: String },
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionKind::Fault(x) => write!(f, "{x}"),
            ActionKind::SetParam { id, value } => write!(f, "set {id} = {value}"),
            ActionKind::SetStrategy { id } => write!(f, "switch strategy to {id}"),
        }
    }
}

/// Something the user did, at a simulated time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub at: Time,
    pub kind: ActionKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    pub version: u32,
    pub scenario: String,
    pub strategy: String,
    /// Parameter values that were set (others take their defaults).
    pub params: BTreeMap<String, i64>,
    pub seed: u64,
    /// In time order.
    pub actions: Vec<Action>,
    /// The fingerprint of the run when its link was shared, if it was. Not part of what the
    /// run does: it lets whoever opens the link learn that the scenario has changed since.
    #[serde(default)]
    pub shared: Option<Shared>,
}

/// What a shared link says its run looked like: the fingerprint (`trace::fold` of the trace
/// hash) once every event up to and including `at` had happened. URL form `fp=<8 hex>@<µs>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    pub fingerprint: u32,
    pub at: Time,
}

impl Shared {
    /// Reads `fp`'s value: eight hex digits, `@`, whole microseconds.
    pub fn parse(text: &str) -> Option<Shared> {
        let (fp, at) = text.split_once('@')?;
        if fp.len() != 8 {
            return None;
        }
        Some(Shared { fingerprint: u32::from_str_radix(fp, 16).ok()?, at: Time(at.parse().ok()?) })
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}@{}", self.fingerprint, self.at.micros())
    }
}

/// Everything that can be wrong with a recipe or its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipeError {
    TooLong {
        len: usize,
        max: usize,
    },
    Malformed {
        part: String,
        why: String,
    },
    MissingScenario,
    UnknownScenario {
        id: String,
    },
    FutureVersion {
        found: u32,
        supported: u32,
    },
    BadVersion {
        text: String,
    },
    UnknownParam {
        id: String,
    },
    BadParamValue {
        id: String,
        text: String,
    },
    OutOfRange {
        id: String,
        value: i64,
        min: i64,
        max: i64,
        used: i64,
    },
    UnknownStrategy {
        id: String,
        used: String,
    },
    BadSeed {
        text: String,
    },
    BadActions {
        why: String,
    },
    TooManyActions {
        count: usize,
        max: usize,
    },
    UnknownFault {
        id: String,
    },
    BadNode {
        node: u32,
        nodes: u32,
    },
    /// A setup parameter (read when the run is built) was changed mid-run: it cannot act
    /// then, so the run is built with the new value from the start.
    SetupParamMidRun {
        id: String,
        value: i64,
        at: Time,
    },
    /// The link was shared with a run whose fingerprint differs from this one's: the
    /// scenario's model has changed since (see `Recipe::shared`).
    ChangedSinceShared {
        shared: u32,
        now: u32,
        at: Time,
    },
    BadFingerprint {
        text: String,
    },
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RecipeError::*;
        match self {
            TooLong { len, max } => write!(f, "the link is {len} characters long; at most {max} are accepted"),
            Malformed { part, why } => write!(f, "`{part}` is malformed: {why}"),
            MissingScenario => write!(f, "the link names no scenario (s=…)"),
            UnknownScenario { id } => write!(f, "there is no scenario called `{id}`"),
            FutureVersion { found, supported } => write!(
                f,
                "this link was made by a newer Faultline (recipe version {found}; this one reads up to {supported})"
            ),
            BadVersion { text } => write!(f, "`v={text}` is not a recipe version"),
            UnknownParam { id } => write!(f, "this scenario has no parameter `{id}`; it was ignored"),
            BadParamValue { id, text } => write!(f, "`{id}={text}` is not a whole number; the default was used"),
            OutOfRange { id, value, min, max, used } => {
                write!(f, "`{id}={value}` is outside {min}..={max} (or off its step); {used} was used")
            }
            UnknownStrategy { id, used } => write!(f, "there is no strategy `{id}`; `{used}` was used"),
            BadSeed { text } => write!(f, "`seed={text}` is not a whole number from 0 to 2^64-1; seed 1 was used"),
            BadActions { why } => write!(f, "the action log could not be read ({why}); it was ignored"),
            TooManyActions { count, max } => write!(f, "{count} actions is more than {max}; the rest were ignored"),
            UnknownFault { id } => write!(f, "this scenario has no fault `{id}`; that action was ignored"),
            BadNode { node, nodes } => {
                write!(f, "node {node} does not exist (this run has {nodes}); that action was ignored")
            }
            SetupParamMidRun { id, value, at } => write!(
                f,
                "`{id}` is read when the run is built, so setting it at {at} cannot act mid-run; the run starts with {value} instead"
            ),
            ChangedSinceShared { shared, now, at } => write!(
                f,
                "this scenario has changed since the link was made: at {at} the shared run's fingerprint was {shared:08x}, this run's is {now:08x} — what you see is not the run that was shared"
            ),
            BadFingerprint { text } => {
                write!(f, "`fp={text}` is not a fingerprint (8 hex digits @ microseconds); it was ignored")
            }
        }
    }
}

impl std::error::Error for RecipeError {}

impl RecipeError {
    /// Fatal errors leave nothing to run; the others were repaired (ignored or clamped).
    pub fn is_fatal(&self) -> bool {
        use RecipeError::*;
        matches!(
            self,
            TooLong { .. }
                | Malformed { .. }
                | MissingScenario
                | UnknownScenario { .. }
                | FutureVersion { .. }
                | BadVersion { .. }
        )
    }
}

/// A recipe read from a URL, with what had to be repaired on the way.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub recipe: Recipe,
    pub spec: &'static ScenarioSpec,
    /// Non-fatal problems: each was ignored or clamped, and says so.
    pub problems: Vec<RecipeError>,
}

impl Recipe {
    pub fn new(scenario: &str, strategy: &str, seed: u64) -> Recipe {
        Recipe {
            version: RECIPE_VERSION,
            scenario: scenario.to_string(),
            strategy: strategy.to_string(),
            params: BTreeMap::new(),
            seed,
            actions: Vec::new(),
            shared: None,
        }
    }

    pub fn with_param(mut self, id: &str, value: i64) -> Recipe {
        self.params.insert(id.to_string(), value);
        self
    }

    pub fn with_action(mut self, at: Time, kind: ActionKind) -> Recipe {
        self.push_action(Action { at, kind });
        self
    }

    /// Adds an action, keeping the log in time order (stable for equal times).
    pub fn push_action(&mut self, action: Action) {
        let at = self.actions.partition_point(|a| a.at <= action.at);
        self.actions.insert(at, action);
    }

    /// The query string for this recipe (no leading `?`). Default parameters are omitted.
    pub fn to_query(&self, spec: &ScenarioSpec) -> String {
        let mut q = format!("v={}&s={}&strategy={}&seed={}", self.version, self.scenario, self.strategy, self.seed);
        for p in spec.params {
            if let Some(&v) = self.params.get(p.id) {
                if v != p.default {
                    q.push_str(&format!("&{}={}", p.id, v));
                }
            }
        }
        if !self.actions.is_empty() {
            q.push_str("&a=");
            q.push_str(&encode_actions(&self.actions));
        }
        if let Some(s) = self.shared {
            q.push_str(&format!("&fp={s}"));
        }
        q
    }

    /// Reads a recipe from a URL or bare query string, leniently: whatever can be repaired
    /// is, and reported in `problems`. Fatal problems are the `Err`.
    pub fn from_url(url: &str, lookup: impl Fn(&str) -> Option<&'static ScenarioSpec>) -> Result<Parsed, RecipeError> {
        if url.len() > MAX_URL_LEN {
            return Err(RecipeError::TooLong { len: url.len(), max: MAX_URL_LEN });
        }
        let query = url.rsplit_once('?').map_or(url, |(_, q)| q);
        let query = query.split('#').next().unwrap_or("");
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = percent_decode(k).ok_or_else(|| malformed(part, "bad %-escape"))?;
            let v = percent_decode(v).ok_or_else(|| malformed(part, "bad %-escape"))?;
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(malformed(part, "the key appears twice"));
            }
            pairs.push((k, v));
        }
        let get = |k: &str| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());

        let version = match get("v") {
            None => RECIPE_VERSION,
            Some(t) => t.parse::<u32>().map_err(|_| RecipeError::BadVersion { text: t.to_string() })?,
        };
        if version > RECIPE_VERSION {
            return Err(RecipeError::FutureVersion { found: version, supported: RECIPE_VERSION });
        }
        if version == 0 {
            return Err(RecipeError::BadVersion { text: "0".into() });
        }
        let id = get("s").filter(|s| !s.is_empty()).ok_or(RecipeError::MissingScenario)?;
        let spec = lookup(id).ok_or_else(|| RecipeError::UnknownScenario { id: id.to_string() })?;

        let mut problems = Vec::new();
        let mut recipe = spec.default_recipe(1);
        if let Some(t) = get("seed") {
            match t.parse::<u64>() {
                Ok(s) => recipe.seed = s,
                Err(_) => problems.push(RecipeError::BadSeed { text: t.to_string() }),
            }
        }
        if let Some(st) = get("strategy") {
            recipe.strategy = check_strategy(spec, st, &mut problems);
        }
        for (k, v) in &pairs {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            let Some(p) = spec.param(k) else {
                problems.push(RecipeError::UnknownParam { id: k.clone() });
                continue;
            };
            match v.parse::<i64>() {
                Ok(value) => {
                    let used = check_param(spec, p.id, value, &mut problems);
                    recipe.params.insert(p.id.to_string(), used);
                }
                Err(_) => problems.push(RecipeError::BadParamValue { id: k.clone(), text: v.clone() }),
            }
        }
        if let Some(a) = get("a").filter(|a| !a.is_empty()) {
            match decode_actions(a) {
                Ok(mut actions) => {
                    if actions.len() > MAX_ACTIONS {
                        problems.push(RecipeError::TooManyActions { count: actions.len(), max: MAX_ACTIONS });
                        actions.truncate(MAX_ACTIONS);
                    }
                    recipe.actions = validate_actions(spec, actions, &mut recipe.params, &mut problems);
                }
                Err(why) => problems.push(RecipeError::BadActions { why }),
            }
        }
        if let Some(t) = get("fp") {
            match Shared::parse(t) {
                Some(s) => recipe.shared = Some(s),
                None => problems.push(RecipeError::BadFingerprint { text: t.to_string() }),
            }
        }
        Ok(Parsed { recipe, spec, problems })
    }

    /// Like `from_url`, but any problem at all is an error.
    pub fn from_url_strict(
        url: &str,
        lookup: impl Fn(&str) -> Option<&'static ScenarioSpec>,
    ) -> Result<(Recipe, &'static ScenarioSpec), RecipeError> {
        let parsed = Recipe::from_url(url, lookup)?;
        match parsed.problems.into_iter().next() {
            Some(e) => Err(e),
            None => Ok((parsed.recipe, parsed.spec)),
        }
    }

    /// Checks an in-memory recipe against its scenario, repairing what it can.
    pub fn validate(&mut self, spec: &ScenarioSpec) -> Vec<RecipeError> {
        let mut problems = Vec::new();
        self.strategy = check_strategy(spec, &self.strategy, &mut problems);
        let params = std::mem::take(&mut self.params);
        for (id, value) in params {
            match spec.param(&id) {
                Some(p) => {
                    let used = check_param(spec, p.id, value, &mut problems);
                    self.params.insert(id, used);
                }
                None => problems.push(RecipeError::UnknownParam { id }),
            }
        }
        let actions = std::mem::take(&mut self.actions);
        self.actions = validate_actions(spec, actions, &mut self.params, &mut problems);
        problems
    }
}

fn malformed(part: &str, why: &str) -> RecipeError {
    let part: String = part.chars().take(60).collect();
    RecipeError::Malformed { part, why: why.to_string() }
}

fn check_strategy(spec: &ScenarioSpec, id: &str, problems: &mut Vec<RecipeError>) -> String {
    match spec.strategy(id) {
        Some(s) => s.id.to_string(),
        None => {
            let used = spec.default_strategy().id.to_string();
            problems.push(RecipeError::UnknownStrategy { id: id.to_string(), used: used.clone() });
            used
        }
    }
}

fn check_param(spec: &ScenarioSpec, id: &str, value: i64, problems: &mut Vec<RecipeError>) -> i64 {
    let p = spec.param(id).expect("caller looked the parameter up");
    if p.accepts(value) {
        return value;
    }
    let used = p.clamp(value);
    problems.push(RecipeError::OutOfRange { id: id.to_string(), value, min: p.min, max: p.max, used });
    used
}

/// Keeps the actions that make sense for `spec`, in time order. A setup parameter set
/// mid-run cannot act then: its value becomes the starting one (in `params`), as the player
/// does when the slider is moved, and the problem says so.
fn validate_actions(
    spec: &ScenarioSpec,
    actions: Vec<Action>,
    params: &mut BTreeMap<String, i64>,
    problems: &mut Vec<RecipeError>,
) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    for mut a in actions {
        match &mut a.kind {
            ActionKind::SetParam { id, value } => match spec.param(id) {
                Some(p) if !p.live => {
                    let value = check_param(spec, p.id, *value, problems);
                    problems.push(RecipeError::SetupParamMidRun { id: p.id.to_string(), value, at: a.at });
                    params.insert(p.id.to_string(), value);
                    continue;
                }
                Some(p) => *value = check_param(spec, p.id, *value, problems),
                None => {
                    problems.push(RecipeError::UnknownParam { id: id.clone() });
                    continue;
                }
            },
            ActionKind::SetStrategy { id } => {
                if spec.strategy(id).is_none() {
                    problems.push(RecipeError::UnknownStrategy { id: id.clone(), used: "the previous one".into() });
                    continue;
                }
            }
            ActionKind::Fault(Fault::Custom { id, value, .. }) => match spec.fault(id) {
                Some(f) => *value = (*value).clamp(f.value_min, f.value_max),
                None => {
                    problems.push(RecipeError::UnknownFault { id: id.clone() });
                    continue;
                }
            },
            ActionKind::Fault(_) => {}
        }
        let at = out.partition_point(|x| x.at <= a.at);
        out.insert(at, a);
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

// ---- the action log's compact encoding ------------------------------------------------

mod tag {
    pub const CRASH: u8 = 0;
    pub const RESTART: u8 = 1;
    pub const PAUSE: u8 = 2;
    pub const ISOLATE: u8 = 3;
    pub const PARTITION: u8 = 4;
    pub const HEAL: u8 = 5;
    pub const SPIKE: u8 = 6;
    pub const LOSS: u8 = 7;
    pub const SKEW: u8 = 8;
    pub const DRIFT: u8 = 9;
    pub const SLOW_DISK: u8 = 10;
    pub const CUSTOM: u8 = 11;
    pub const SET_PARAM: u8 = 20;
    pub const SET_STRATEGY: u8 = 21;
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn nodes(&mut self, ns: &[u32]) {
        self.varint(ns.len() as u64);
        for &n in ns {
            self.varint(n as u64);
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let x = *self.b.get(self.i).ok_or("it ends too soon")?;
        self.i += 1;
        Ok(x)
    }
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let x = self.byte()?;
            v |= ((x & 0x7f) as u64) << shift;
            if x & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number is too long".into())
    }
    fn signed(&mut self) -> Result<i64, String> {
        let u = self.varint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "a node number is too large".to_string())
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.varint()? as usize;
        let end = self.i.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("a name runs past the end")?;
        let s = std::str::from_utf8(&self.b[self.i..end]).map_err(|_| "a name is not text")?;
        self.i = end;
        Ok(s.to_string())
    }
    fn nodes(&mut self) -> Result<Vec<u32>, String> {
        let n = self.varint()? as usize;
        if n > 100_000 {
            return Err("a partition lists too many nodes".into());
        }
        (0..n).map(|_| self.u32()).collect()
    }
}

/// A recipe query without its `s=` (in a `#/s/<id>?…` link the path names the scenario).
pub fn without_scenario(query: &str) -> String {
    query.split('&').filter(|p| !p.starts_with("s=") && !p.is_empty()).collect::<Vec<_>>().join("&")
}

/// Encodes actions (in time order) as varints, then unpadded base64url.
pub fn encode_actions(actions: &[Action]) -> String {
    let mut w = Writer(Vec::new());
    w.varint(actions.len() as u64);
    let mut last = 0;
    for a in actions {
        w.varint(a.at.0.saturating_sub(last));
        last = a.at.0.max(last);
        match &a.kind {
            ActionKind::Fault(f) => encode_fault(&mut w, f),
            ActionKind::SetParam { id, value } => {
                w.0.push(tag::SET_PARAM);
                w.str(id);
                w.signed(*value);
            }
            ActionKind::SetStrategy { id } => {
                w.0.push(tag::SET_STRATEGY);
                w.str(id);
            }
        }
    }
    base64url_encode(&w.0)
}

fn encode_fault(w: &mut Writer, f: &Fault) {
    match f {
        Fault::Crash { node } => {
            w.0.push(tag::CRASH);
            w.varint(*node as u64);
        }
        Fault::Restart { node } => {
            w.0.push(tag::RESTART);
            w.varint(*node as u64);
        }
        Fault::Pause { node, dur } => {
            w.0.push(tag::PAUSE);
            w.varint(*node as u64);
            w.varint(*dur);
        }
        Fault::Isolate { node, one_way } => {
            w.0.push(tag::ISOLATE);
            w.varint(*node as u64);
            w.varint(*one_way as u64);
        }
        Fault::Partition { a, b, one_way } => {
            w.0.push(tag::PARTITION);
            w.nodes(a);
            match b {
                Some(b) => {
                    w.varint(1);
                    w.nodes(b);
                }
                None => w.varint(0),
            }
            w.varint(*one_way as u64);
        }
        Fault::Heal => w.0.push(tag::HEAL),
        Fault::LatencySpike { extra, dur } => {
            w.0.push(tag::SPIKE);
            w.varint(*extra);
            w.varint(*dur);
        }
        Fault::LossBurst { loss, dur } => {
            w.0.push(tag::LOSS);
            w.varint(loss.0 as u64);
            w.varint(*dur);
        }
        Fault::ClockSkew { node, offset } => {
            w.0.push(tag::SKEW);
            w.varint(*node as u64);
            w.signed(*offset);
        }
        Fault::ClockDrift { node, ppm } => {
            w.0.push(tag::DRIFT);
            w.varint(*node as u64);
            w.signed(*ppm as i64);
        }
        Fault::SlowDisk { node, factor, dur } => {
            w.0.push(tag::SLOW_DISK);
            w.varint(*node as u64);
            w.varint(*factor as u64);
            w.varint(*dur);
        }
        Fault::Custom { id, node, value } => {
            w.0.push(tag::CUSTOM);
            w.str(id);
            w.varint(node.map_or(0, |n| n as u64 + 1));
            w.signed(*value);
        }
    }
}

/// Decodes what `encode_actions` wrote. Any damage is an error that says what is wrong.
pub fn decode_actions(text: &str) -> Result<Vec<Action>, String> {
    let bytes = base64url_decode(text)?;
    let mut r = Reader { b: &bytes, i: 0 };
    let n = r.varint()? as usize;
    if n > MAX_ACTIONS * 4 {
        return Err(format!("it claims {n} actions"));
    }
    let mut out = Vec::with_capacity(n.min(MAX_ACTIONS));
    let mut at: u64 = 0;
    for _ in 0..n {
        at = at.checked_add(r.varint()?).ok_or("a time overflows")?;
        let kind = decode_kind(&mut r)?;
        out.push(Action { at: Time(at), kind });
    }
    if r.i != bytes.len() {
        return Err("there are stray bytes after the last action".into());
    }
    Ok(out)
}

fn decode_kind(r: &mut Reader) -> Result<ActionKind, String> {
    let t = r.byte()?;
    let fault = match t {
        tag::CRASH => Fault::Crash { node: r.u32()? },
        tag::RESTART => Fault::Restart { node: r.u32()? },
        tag::PAUSE => Fault::Pause { node: r.u32()?, dur: r.varint()? },
        tag::ISOLATE => Fault::Isolate { node: r.u32()?, one_way: r.varint()? != 0 },
        tag::PARTITION => {
            let a = r.nodes()?;
            let b = if r.varint()? != 0 { Some(r.nodes()?) } else { None };
            Fault::Partition { a, b, one_way: r.varint()? != 0 }
        }
        tag::HEAL => Fault::Heal,
        tag::SPIKE => Fault::LatencySpike { extra: r.varint()?, dur: r.varint()? },
        tag::LOSS => {
            let loss = r.varint()?.min(1_000_000) as u32;
            Fault::LossBurst { loss: Ppm(loss), dur: r.varint()? }
        }
        tag::SKEW => Fault::ClockSkew { node: r.u32()?, offset: r.signed()? },
        tag::DRIFT => {
            let node = r.u32()?;
            let ppm = r.signed()?.clamp(-1_000_000, 1_000_000) as i32;
            Fault::ClockDrift { node, ppm }
        }
        tag::SLOW_DISK => {
            Fault::SlowDisk { node: r.u32()?, factor: r.varint()?.clamp(1, 10_000) as u32, dur: r.varint()? }
        }
        tag::CUSTOM => {
            let id = r.str()?;
            let node = match r.varint()? {
                0 => None,
                n => Some(u32::try_from(n - 1).map_err(|_| "a node number is too large")?),
            };
            Fault::Custom { id, node, value: r.signed()? }
        }
        tag::SET_PARAM => return Ok(ActionKind::SetParam { id: r.str()?, value: r.signed()? }),
        tag::SET_STRATEGY => return Ok(ActionKind::SetStrategy { id: r.str()? }),
        other => return Err(format!("unknown action type {other}")),
    };
    Ok(ActionKind::Fault(fault))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 4 / 3 + 4);
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..=n {
            s.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

fn base64url_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v =
            B64.iter().position(|&x| x == c).ok_or_else(|| format!("`{}` is not a base64url character", c as char))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("its length is impossible for base64url".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&data)).unwrap(), data);
        }
        assert!(base64url_decode("a").is_err());
        assert!(base64url_decode("ab+c").is_err());
    }

    #[test]
    fn every_action_kind_round_trips() {
        let kinds = vec![
            ActionKind::Fault(Fault::Crash { node: 3 }),
            ActionKind::Fault(Fault::Restart { node: 3 }),
            ActionKind::Fault(Fault::Pause { node: 1, dur: 5_000_000 }),
            ActionKind::Fault(Fault::Isolate { node: 2, one_way: true }),
            ActionKind::Fault(Fault::Partition { a: vec![0, 1], b: Some(vec![4]), one_way: false }),
            ActionKind::Fault(Fault::Partition { a: vec![7], b: None, one_way: true }),
            ActionKind::Fault(Fault::Heal),
            ActionKind::Fault(Fault::LatencySpike { extra: 200_000, dur: 3_000_000 }),
            ActionKind::Fault(Fault::LossBurst { loss: Ppm(250_000), dur: 1_000_000 }),
            ActionKind::Fault(Fault::ClockSkew { node: 0, offset: -1_500_000 }),
            ActionKind::Fault(Fault::ClockDrift { node: 0, ppm: -200 }),
            ActionKind::Fault(Fault::SlowDisk { node: 5, factor: 10, dur: 2_000_000 }),
            ActionKind::Fault(Fault::Custom { id: "burst".into(), node: None, value: 3 }),
            ActionKind::Fault(Fault::Custom { id: "x".into(), node: Some(0), value: -9 }),
            ActionKind::SetParam { id: "workers".into(), value: 12 },
            ActionKind::SetStrategy { id: "shed".into() },
        ];
        let actions: Vec<Action> =
            kinds.into_iter().enumerate().map(|(i, kind)| Action { at: Time(i as u64 * 1_000_123), kind }).collect();
        let text = encode_actions(&actions);
        assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(decode_actions(&text).unwrap(), actions);
    }

    #[test]
    fn damaged_action_logs_are_errors_not_panics() {
        let good = encode_actions(&[Action { at: Time(5), kind: ActionKind::Fault(Fault::Crash { node: 1 }) }]);
        for cut in 0..good.len() {
            let _ = decode_actions(&good[..cut]);
        }
        assert!(decode_actions("____________").is_err());
        assert!(decode_actions(&format!("{good}AA")).is_err());
        assert!(decode_actions("Aw").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").unwrap(), "a b c");
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%2").is_none());
    }
}
