//! Faultline's simulation kernel: integer time, one seeded RNG, an event queue, nodes with
//! typed messages and timers, a faulty network, faults as data, metrics, a typed trace,
//! named checks and frames for renderers. It knows nothing about any particular scenario.
#![forbid(unsafe_code)]

// Lets `benches/models.rs` say `faultline_core::…` both here and in the bench targets.
#[cfg(feature = "bench-models")]
extern crate self as faultline_core;

/// The benchmark models (ping-pong, M/M/1, and their bare-heap twins), for the WASM bench.
#[cfg(feature = "bench-models")]
#[doc(hidden)]
#[path = "../benches/models.rs"]
pub mod bench_models;

pub mod breach;
pub mod fault;
pub mod frame;
pub mod metrics;
pub mod net;
pub mod queue;
pub mod recipe;
pub mod report;
pub mod ring;
pub mod rng;
pub mod run;
pub mod sim;
pub mod spec;
pub mod time;
pub mod trace;

pub use breach::Breach;
pub use fault::{Fault, GENERIC_FAULTS};
pub use faultline_derive::{Holds, Label};
pub use frame::{
    numbered, Arc, Badge, Band, CheckState, CheckStatus, Frame, Gauge, Mark, MsgFrame, NodeFrame, NodeKind, NodeView,
    Status, Tone, Violation, BAND_GAP_US, MAX_BANDS,
};
pub use metrics::{Histogram, Measure, Metrics, Sampler, Summary};
pub use net::{Cut, Latency, Link, Network, NodeId};
pub use recipe::{Action, ActionKind, Parsed, Recipe, RecipeError, Shared};
pub use report::{format_value, BandSecs, CheckVerdict, MetricValue, Outcome};
pub use ring::Ring;
pub use rng::{Ppm, Rng};
pub use run::Run;
pub use sim::{CheckFn, Control, Ctx, Holds, Label, Node, Sim, TimerId, World};
pub use spec::{
    CheckSpec, Envelope, FaultSpec, Info, Layout, MetricSpec, Note, ParamSpec, ScenarioSpec, Setup, StrategySpec,
    Target,
};
pub use time::{ms, Micros, Time, MICROS_PER_MS, MICROS_PER_S};
pub use trace::{fingerprint, fold, Trace, TraceEvent, TraceKind};

/// Builds a run from a recipe: repairs what it can (each repair is reported), refuses
/// actions on nodes that do not exist, and returns the run with the problems found.
pub fn open(spec: &'static ScenarioSpec, recipe: &Recipe) -> (Box<dyn Run>, Vec<RecipeError>) {
    let mut recipe = recipe.clone();
    let mut problems = recipe.validate(spec);
    let mut run = (spec.build)(&Setup { spec, recipe: recipe.clone() });
    let nodes = run.node_count();
    let bad = |a: &Action| match &a.kind {
        ActionKind::Fault(Fault::Partition { a, b, .. }) => {
            a.iter().chain(b.iter().flatten()).find(|&&n| n >= nodes).copied()
        }
        ActionKind::Fault(f) => f.node().filter(|&n| n >= nodes),
        _ => None,
    };
    if recipe.actions.iter().any(|a| bad(a).is_some()) {
        recipe.actions.retain(|a| match bad(a) {
            Some(node) => {
                problems.push(RecipeError::BadNode { node, nodes });
                false
            }
            None => true,
        });
        run = (spec.build)(&Setup { spec, recipe });
    }
    (run, problems)
}

/// Where a run stands against the fingerprint its link was shared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedCheck {
    /// The recipe carries no fingerprint.
    NotShared,
    /// Not yet at the moment the fingerprint was taken (run to it to tell).
    Pending(Time),
    Matches,
    /// The run differs from the one shared (a `RecipeError::ChangedSinceShared`).
    Changed(RecipeError),
    /// The run went past the moment without stopping there; only a replay can tell.
    Passed,
}

/// Compares the run with its recipe's shared fingerprint, if the run stands exactly where
/// that was taken: every event up to and including its time done, none after it.
pub fn shared_check(run: &dyn Run) -> SharedCheck {
    let Some(s) = run.recipe().shared else { return SharedCheck::NotShared };
    if run.now() > s.at {
        return SharedCheck::Passed;
    }
    if run.next_event_time().is_some_and(|t| t <= s.at) {
        return SharedCheck::Pending(s.at);
    }
    let now = trace::fold(run.trace().hash());
    if now == s.fingerprint {
        SharedCheck::Matches
    } else {
        SharedCheck::Changed(RecipeError::ChangedSinceShared { shared: s.fingerprint, now, at: s.at })
    }
}

/// The fingerprint to share the run with: taken now if every event of this instant is
/// done, otherwise on a copy that finishes the instant (after single steps).
pub fn shared_mark(run: &dyn Run) -> Shared {
    let at = run.now();
    let hash = if run.next_event_time().is_some_and(|t| t <= at) {
        let mut copy = run.snapshot();
        copy.run_until(at, u64::MAX);
        copy.trace().hash()
    } else {
        run.trace().hash()
    };
    Shared { fingerprint: trace::fold(hash), at }
}
