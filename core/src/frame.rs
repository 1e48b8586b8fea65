//! What a renderer needs at one instant. Renderers read frames, never simulation internals.

use crate::net::{Cut, NodeId};
use crate::time::{Micros, Time, MICROS_PER_S};
use serde::Serialize;

/// What a node is, so the player can pick its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeKind {
    Client,
    LoadBalancer,
    Service,
    Worker,
    Queue,
    Cache,
    Database,
    Store,
    Lock,
    Region,
}

/// The colour a badge or gauge suggests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Tone {
    Neutral,
    Good,
    Warn,
    Bad,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Badge {
    pub text: String,
    pub tone: Tone,
}

/// A bar gauge: `value` out of `max` (queue depth, cache slots, tokens…).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gauge {
    pub label: &'static str,
    pub value: i64,
    pub max: i64,
}

/// How a node wants to be drawn; produced by the node itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView {
    pub label: String,
    pub kind: NodeKind,
    /// Column in a tiered layout (0 = leftmost); position on a ring layout is by id.
    pub tier: u8,
    pub badges: Vec<Badge>,
    pub gauges: Vec<Gauge>,
    /// On a ring layout: arcs of the ring, as fractions [start, end) of a turn, and their owners.
    /// Usually carried by the node that knows the ring (a router).
    pub arcs: Vec<Arc>,
    /// What this node says about others, drawn at them: a balancer marks the instances it has
    /// taken out of rotation, though they themselves cannot know it.
    pub marks: Vec<Mark>,
}

/// A word one node puts on another node in the picture.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mark {
    pub node: NodeId,
    pub text: String,
    pub tone: Tone,
}

/// A stretch of a hash ring and the node that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Arc {
    pub start: f32,
    pub end: f32,
    pub owner: NodeId,
}

/// `format!("{prefix} {n}")` without the formatting machinery, for node labels: a frame
/// labels every node, and with 5,000 clients `format!` was half the cost of building one.
pub fn numbered(prefix: &str, n: u64) -> String {
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(prefix.len() + 1 + digits.len() - i);
    s.push_str(prefix);
    s.push(' ');
    s.extend(digits[i..].iter().map(|&d| d as char));
    s
}

impl NodeView {
    pub fn new(kind: NodeKind, tier: u8, label: impl Into<String>) -> NodeView {
        let (badges, gauges, arcs, marks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        NodeView { label: label.into(), kind, tier, badges, gauges, arcs, marks }
    }
    pub fn arcs(mut self, arcs: Vec<Arc>) -> NodeView {
        self.arcs = arcs;
        self
    }
    pub fn badge(mut self, text: impl Into<String>, tone: Tone) -> NodeView {
        self.badges.push(Badge { text: text.into(), tone });
        self
    }
    /// A badge shown only when `show` holds (a state worth pointing at: "open", "leader").
    pub fn badge_if(self, show: bool, text: impl Into<String>, tone: Tone) -> NodeView {
        if show {
            self.badge(text, tone)
        } else {
            self
        }
    }
    /// Puts `text` on node `node` in the picture (and in its description for screen readers).
    pub fn mark(mut self, node: NodeId, text: impl Into<String>, tone: Tone) -> NodeView {
        self.marks.push(Mark { node, text: text.into(), tone });
        self
    }
    pub fn gauge(mut self, label: &'static str, value: i64, max: i64) -> NodeView {
        self.gauges.push(Gauge { label, value, max });
        self
    }
}

/// The kernel's view of a node's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Status {
    Up,
    Crashed,
    Paused,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFrame {
    pub id: NodeId,
    pub view: NodeView,
    pub status: Status,
    /// Some partition involves this node.
    pub cut_off: bool,
    /// Its local clock minus true time.
    pub clock_offset: i64,
}

/// A message on the wire, to be drawn between `sent` and `deliver`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MsgFrame {
    pub from: NodeId,
    pub to: NodeId,
    pub sent: Time,
    pub deliver: Time,
    pub kind: &'static str,
    /// It will never arrive (lost on the wire or cut by a partition).
    pub lost: bool,
}

/// Violations closer together than this are one band: a check judged now and then (once a
/// second, or at each write) reads as violated from its first failure to its last, not as a
/// flicker; and it reads as holding again only once it has held this long.
pub const BAND_GAP_US: Micros = MICROS_PER_S;
/// The most bands a check keeps: past it, the last band absorbs later violations (so a long
/// run's memory stays bounded; the bands are still where the check failed, only merged).
pub const MAX_BANDS: usize = 4096;

/// One check's state, for the checks panel: its first violation (the verdict: a run breaks a
/// check if it is ever violated) and every stretch of time in which it was violated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckStatus {
    pub id: &'static str,
    pub label: &'static str,
    pub violation: Option<Violation>,
    /// The stretches in which it was violated, oldest first; the last may still be open.
    pub bands: Vec<Band>,
    /// Why it failed most recently (the first violation keeps its own reason).
    pub latest_why: Option<String>,
}

/// A stretch of time in which a check was violated: from the event at which it first failed
/// to the first event after which it held again (`to` is `None` while it still fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Band {
    pub from: Time,
    pub to: Option<Time>,
    /// The trace entries of the events after which it failed, and after which it held again.
    pub from_seq: u64,
    pub to_seq: Option<u64>,
}

/// What a check's panel line says at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// Never violated.
    Holding,
    /// Violated now, in the band that began at `since`.
    Violated { since: Time },
    /// Violated before, and holding again since `since` (for at least `BAND_GAP_US`).
    Recovered { since: Time },
}

impl CheckStatus {
    pub fn new(id: &'static str, label: &'static str) -> CheckStatus {
        CheckStatus { id, label, violation: None, bands: Vec::new(), latest_why: None }
    }

    /// The check failed at `at`, after trace entry `seq`; says whether a new band began (a
    /// failure within `BAND_GAP_US` of the last band's end reopens that band instead).
    pub fn failed(&mut self, at: Time, seq: u64, why: String) -> bool {
        if self.violation.is_none() {
            self.violation = Some(Violation { at, why: why.clone(), trace_seq: seq });
        }
        self.latest_why = Some(why);
        let full = self.bands.len() >= MAX_BANDS;
        match self.bands.last_mut() {
            Some(b) if b.to.is_none() => false,
            Some(b) if full || b.to.is_some_and(|to| at.micros() < to.micros() + BAND_GAP_US) => {
                (b.to, b.to_seq) = (None, None);
                false
            }
            _ => {
                self.bands.push(Band { from: at, to: None, from_seq: seq, to_seq: None });
                true
            }
        }
    }

    /// The check held at `at`, after trace entry `seq`: closes an open band.
    pub fn held(&mut self, at: Time, seq: u64) {
        if let Some(b) = self.bands.last_mut().filter(|b| b.to.is_none()) {
            (b.to, b.to_seq) = (Some(at), Some(seq));
        }
    }

    /// Whether it is failing now (its last band is open, or closed less than `BAND_GAP_US`
    /// before `now`, so it may yet reopen).
    pub fn state(&self, now: Time) -> CheckState {
        match self.bands.last() {
            None => CheckState::Holding,
            Some(Band { to: Some(to), .. }) if now.micros() >= to.micros() + BAND_GAP_US => {
                CheckState::Recovered { since: *to }
            }
            Some(b) => CheckState::Violated { since: b.from },
        }
    }
}

/// The first time a check failed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub at: Time,
    pub why: String,
    /// The trace entry of the event after which it was found.
    pub trace_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Frame {
    pub now: Time,
    pub nodes: Vec<NodeFrame>,
    /// At most the number asked for; a deterministic sample when more are in flight.
    pub messages: Vec<MsgFrame>,
    pub in_flight: usize,
    pub cuts: Vec<Cut>,
    pub checks: Vec<CheckStatus>,
    /// How long a lost message stays visible after it vanished.
    pub lost_fade: Micros,
    /// The latest deliveries (oldest first), for showing traffic faster than a frame.
    pub recent: Vec<MsgFrame>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_labels_read_as_formatted() {
        for n in [0, 7, 10, 99, 12_345, u32::MAX as u64, u64::MAX] {
            assert_eq!(numbered("client", n), format!("client {n}"));
        }
    }
}
