//! Faults as data: what can go wrong, applied by the kernel at a simulated instant.

use crate::net::NodeId;
use crate::rng::Ppm;
use crate::time::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One fault. Scheduled in a scenario's fault plan or injected by a user (then it is
/// recorded in the recipe's action log with the time it happened).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The node stops; its volatile state is lost, its durable state kept.
    Crash { node: NodeId },
    /// A crashed node starts again from its durable state.
    Restart { node: NodeId },
    /// Stop-the-world pause (a long GC): events wait until it ends; its clock runs on.
    Pause { node: NodeId, dur: Micros },
    /// Cuts `node` off from every other node (or only its outgoing messages, if one-way).
    Isolate { node: NodeId, one_way: bool },
    /// Cuts side `a` from side `b` (`None`: everyone else).
    Partition { a: Vec<NodeId>, b: Option<Vec<NodeId>>, one_way: bool },
    /// Removes every partition.
    Heal,
    /// Adds `extra` latency to every message sent during `dur`.
    LatencySpike { extra: Micros, dur: Micros },
    /// Loses this share of every message sent during `dur`.
    LossBurst { loss: Ppm, dur: Micros },
    /// Sets the node's clock offset from true time.
    ClockSkew { node: NodeId, offset: i64 },
    /// Sets the node's clock rate error in parts per million (positive runs fast).
    ClockDrift { node: NodeId, ppm: i32 },
    /// The node's disk operations take `factor` times longer during `dur`.
    SlowDisk { node: NodeId, factor: u32, dur: Micros },
    /// A fault the scenario defines itself (its id is in the scenario's fault list).
    Custom { id: String, node: Option<NodeId>, value: i64 },
}

/// The kinds of the faults every scenario has (see [`Fault::kind`]).
pub const GENERIC_FAULTS: &[&str] = &["crash", "pause", "partition", "latency", "loss", "skew", "drift", "slow-disk"];

impl Fault {
    /// A scenario's own fault (declared in its `FaultSpec`s) on everyone, with its value.
    pub fn custom(id: &str, value: i64) -> Fault {
        Fault::Custom { id: id.to_string(), node: None, value }
    }
    /// A scenario's own fault on one node.
    pub fn custom_on(id: &str, node: NodeId, value: i64) -> Fault {
        Fault::Custom { id: id.to_string(), node: Some(node), value }
    }
    /// What kind of fault this is: one of [`GENERIC_FAULTS`] (a restart counts as part of
    /// a crash, a heal as part of a partition), or a scenario's own fault id.
    pub fn kind(&self) -> &str {
        match self {
            Fault::Crash { .. } | Fault::Restart { .. } => "crash",
            Fault::Pause { .. } => "pause",
            Fault::Isolate { .. } | Fault::Partition { .. } | Fault::Heal => "partition",
            Fault::LatencySpike { .. } => "latency",
            Fault::LossBurst { .. } => "loss",
            Fault::ClockSkew { .. } => "skew",
            Fault::ClockDrift { .. } => "drift",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::Custom { id, .. } => id,
        }
    }
    /// The node this fault targets, if it targets one.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Fault::Crash { node }
            | Fault::Restart { node }
            | Fault::Pause { node, .. }
            | Fault::Isolate { node, .. }
            | Fault::ClockSkew { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::SlowDisk { node, .. } => Some(*node),
            Fault::Custom { node, .. } => *node,
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Micros| d / 1000;
        match self {
            Fault::Crash { node } => write!(f, "crash node {node}"),
            Fault::Restart { node } => write!(f, "restart node {node}"),
            Fault::Pause { node, dur } => write!(f, "pause node {node} for {}ms", ms(dur)),
            Fault::Isolate { node, one_way: false } => write!(f, "isolate node {node}"),
            Fault::Isolate { node, one_way: true } => write!(f, "cut node {node}'s outgoing links"),
            Fault::Partition { a, b, one_way } => {
                let arrow = if *one_way { "-/->" } else { "<-/->" };
                match b {
                    Some(b) => write!(f, "partition {a:?} {arrow} {b:?}"),
                    None => write!(f, "partition {a:?} {arrow} rest"),
                }
            }
            Fault::Heal => write!(f, "heal all partitions"),
            Fault::LatencySpike { extra, dur } => {
                write!(f, "latency +{}ms for {}ms", ms(extra), ms(dur))
            }
            Fault::LossBurst { loss, dur } => {
                write!(f, "loss {}% for {}ms", loss.0 / 10_000, ms(dur))
            }
            Fault::ClockSkew { node, offset } => write!(f, "skew node {node} clock by {}ms", offset / 1000),
            Fault::ClockDrift { node, ppm } => write!(f, "drift node {node} clock {ppm}ppm"),
            Fault::SlowDisk { node, factor, dur } => {
                write!(f, "slow disk on node {node} ×{factor} for {}ms", ms(dur))
            }
            Fault::Custom { id, node: Some(n), value } => write!(f, "{id} on node {n} ({value})"),
            Fault::Custom { id, node: None, value } => write!(f, "{id} ({value})"),
        }
    }
}
