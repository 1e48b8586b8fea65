//! The schema a scenario declares in one place: info and note, parameters, strategies,
//! its own faults, checks, headline metrics and view hints.

use crate::metrics::Measure;
use crate::recipe::Recipe;
use crate::run::Run;
use crate::time::Micros;
use serde::Serialize;

/// The one-page reflection every scenario carries.
#[derive(Debug, Serialize)]
pub struct Note {
    pub what_can_go_wrong: &'static str,
    pub what_you_sacrifice: &'static str,
    pub at_10x: &'static str,
    pub resembles: &'static str,
    /// 2–4 concrete steps for the user to try.
    pub try_this: &'static [&'static str],
}

#[derive(Debug, Serialize)]
pub struct Info {
    pub id: &'static str,
    pub title: &'static str,
    pub category: &'static str,
    /// References into the user's seed documents, e.g. `S0#7`.
    pub seeds: &'static [&'static str],
    pub summary: &'static str,
    pub note: Note,
}

/// An integer parameter, shown as a slider.
#[derive(Debug, Serialize)]
pub struct ParamSpec {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub min: i64,
    pub max: i64,
    pub step: i64,
    pub default: i64,
    pub help: &'static str,
    /// Live: the model uses a new value from the instant it is set (a recorded action).
    /// Setup: the value is read when the run is built (node counts, topology, the fault
    /// plan), so changing it restarts the run from 0 with the new value.
    pub live: bool,
}

impl ParamSpec {
    /// A parameter the model reads as it runs: moving it mid-run acts from that instant.
    /// `range` is `min..=max`; the step is 1 unless `.step(n)` says otherwise.
    pub const fn live(
        id: &'static str,
        label: &'static str,
        unit: &'static str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
        help: &'static str,
    ) -> ParamSpec {
        ParamSpec { id, label, unit, min: *range.start(), max: *range.end(), step: 1, default, help, live: true }
    }
    /// A parameter read when the run is built: changing it restarts the run from 0.
    pub const fn setup(
        id: &'static str,
        label: &'static str,
        unit: &'static str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
        help: &'static str,
    ) -> ParamSpec {
        ParamSpec { live: false, ..ParamSpec::live(id, label, unit, range, default, help) }
    }
    /// The slider's step (values are `min + k × step`).
    pub const fn step(self, step: i64) -> ParamSpec {
        ParamSpec { step, ..self }
    }
    /// Whether `v` is a value this slider can take.
    pub fn accepts(&self, v: i64) -> bool {
        v >= self.min && v <= self.max && (v - self.min) % self.step.max(1) == 0
    }
    /// The nearest value the slider can take.
    pub fn clamp(&self, v: i64) -> i64 {
        let step = self.step.max(1);
        let v = v.clamp(self.min, self.max);
        let snapped = self.min + ((v - self.min) + step / 2) / step * step;
        snapped.min(self.max)
    }
}

#[derive(Debug, Serialize)]
pub struct StrategySpec {
    pub id: &'static str,
    pub label: &'static str,
    /// Naive strategies are the ones that break; the player marks them.
    pub naive: bool,
    pub help: &'static str,
}

impl StrategySpec {
    /// A strategy that breaks under the scenario's faults (the lesson's "before").
    pub const fn naive(id: &'static str, label: &'static str, help: &'static str) -> StrategySpec {
        StrategySpec { id, label, naive: true, help }
    }
    /// A strategy that holds every check (the lesson's "after").
    pub const fn fixed(id: &'static str, label: &'static str, help: &'static str) -> StrategySpec {
        StrategySpec { id, label, naive: false, help }
    }
}

/// What a scenario-specific fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    Global,
    Node,
}

#[derive(Debug, Serialize)]
pub struct FaultSpec {
    pub id: &'static str,
    pub label: &'static str,
    pub target: Target,
    /// The meaning and range of the fault's value (e.g. a factor or a duration in ms).
    pub value_label: &'static str,
    pub value_min: i64,
    pub value_max: i64,
    pub value_default: i64,
    pub help: &'static str,
}

impl FaultSpec {
    /// A fault on the whole scenario (or "whoever leads now"), without a value.
    pub const fn global(id: &'static str, label: &'static str, help: &'static str) -> FaultSpec {
        FaultSpec {
            id,
            label,
            target: Target::Global,
            value_label: "",
            value_min: 0,
            value_max: 0,
            value_default: 0,
            help,
        }
    }
    /// A fault the user aims at one node (from its popover).
    pub const fn node(id: &'static str, label: &'static str, help: &'static str) -> FaultSpec {
        FaultSpec { target: Target::Node, ..FaultSpec::global(id, label, help) }
    }
    /// The fault takes a value (a factor, a duration in ms…): what it means and its range.
    pub const fn value(self, label: &'static str, range: std::ops::RangeInclusive<i64>, default: i64) -> FaultSpec {
        FaultSpec {
            value_label: label,
            value_min: *range.start(),
            value_max: *range.end(),
            value_default: default,
            ..self
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CheckSpec {
    pub id: &'static str,
    pub label: &'static str,
    pub help: &'static str,
}

impl CheckSpec {
    pub const fn new(id: &'static str, label: &'static str, help: &'static str) -> CheckSpec {
        CheckSpec { id, label, help }
    }
}

#[derive(Debug, Serialize)]
pub struct MetricSpec {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub measure: Measure,
}

impl MetricSpec {
    pub const fn new(id: &'static str, label: &'static str, unit: &'static str, measure: Measure) -> MetricSpec {
        MetricSpec { id, label, unit, measure }
    }
}

/// How the player lays nodes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Layout {
    /// Left-to-right tiers (clients → balancers → services → stores); `NodeView::tier`.
    Tiers,
    /// Nodes of tier ≥ 1 on a circle (hash rings, peer groups), tier 0 in the middle;
    /// `NodeView::arcs` are drawn around it.
    Ring,
    /// A grid (many similar nodes).
    Grid,
}

/// Everything a scenario declares. One `static` per scenario.
#[derive(Serialize)]
pub struct ScenarioSpec {
    pub info: Info,
    pub params: &'static [ParamSpec],
    pub strategies: &'static [StrategySpec],
    pub faults: &'static [FaultSpec],
    pub checks: &'static [CheckSpec],
    pub metrics: &'static [MetricSpec],
    pub layout: Layout,
    /// How long a run lasts unless the user says otherwise.
    pub default_until: Micros,
    /// Chart sampling interval.
    pub sample_every: Micros,
    #[serde(skip)]
    pub build: fn(&Setup) -> Box<dyn Run>,
}

/// The faults a scenario's fixed strategies promise to survive (declared in the scenarios
/// crate's `ENVELOPES`): thrown at random on top of its fault plan (the swarm,
/// `scripts/swarm`), at random times, targets and sizes, none of them may make a fixed
/// strategy violate a check. Generic faults are named by [`Fault::kind`](crate::Fault::kind),
/// the scenario's own by their ids.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Envelope {
    pub faults: &'static [&'static str],
    /// Why the faults left out are outside it (what the fixed strategies do not promise).
    pub outside: &'static str,
}

impl Envelope {
    /// Promises nothing beyond the fault plan (a scenario that declares no envelope).
    pub const NONE: Envelope = Envelope { faults: &[], outside: "" };
    pub const fn new(faults: &'static [&'static str], outside: &'static str) -> Envelope {
        Envelope { faults, outside }
    }
    /// Whether a fault of this kind is inside.
    pub fn covers(&self, kind: &str) -> bool {
        self.faults.contains(&kind)
    }
}

impl std::fmt::Debug for ScenarioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScenarioSpec({})", self.info.id)
    }
}

/// The one strategy of a bare spec (a constant, so it is promoted to a static).
const ONLY: &[StrategySpec] = &[StrategySpec::fixed("only", "Only", "")];

impl Note {
    /// No note: for the small specs that tests build to run a kernel.
    pub const EMPTY: Note =
        Note { what_can_go_wrong: "", what_you_sacrifice: "", at_10x: "", resembles: "", try_this: &[] };
}

impl ScenarioSpec {
    /// The least spec a kernel runs: one strategy, nothing else declared (for the kit's
    /// tests and benchmarks; a registered scenario declares everything).
    pub const fn bare(id: &'static str, build: fn(&Setup) -> Box<dyn Run>) -> ScenarioSpec {
        ScenarioSpec {
            info: Info { id, title: id, category: "test", seeds: &[], summary: "", note: Note::EMPTY },
            params: &[],
            strategies: ONLY,
            faults: &[],
            checks: &[],
            metrics: &[],
            layout: Layout::Tiers,
            default_until: crate::time::MICROS_PER_S,
            sample_every: crate::time::MICROS_PER_S,
            build,
        }
    }

    pub fn id(&self) -> &'static str {
        self.info.id
    }
    pub fn param(&self, id: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.id == id)
    }
    pub fn strategy(&self, id: &str) -> Option<&'static StrategySpec> {
        self.strategies.iter().find(|s| s.id == id)
    }
    pub fn fault(&self, id: &str) -> Option<&'static FaultSpec> {
        self.faults.iter().find(|s| s.id == id)
    }
    pub fn default_strategy(&self) -> &'static StrategySpec {
        &self.strategies[0]
    }
    /// A recipe with every default and the given seed.
    pub fn default_recipe(&'static self, seed: u64) -> Recipe {
        Recipe::new(self.id(), self.default_strategy().id, seed)
    }
}

/// A validated recipe, resolved against its scenario: what `build` receives.
#[derive(Clone, Debug)]
pub struct Setup {
    pub spec: &'static ScenarioSpec,
    pub recipe: Recipe,
}

impl Setup {
    /// The starting value of a parameter (recipe value or default).
    /// Panics on an id the scenario does not declare: that is a programming error.
    pub fn param(&self, id: &str) -> i64 {
        let spec = self.spec.param(id).unwrap_or_else(|| panic!("{} has no parameter `{id}`", self.spec.id()));
        self.recipe.params.get(id).copied().unwrap_or(spec.default)
    }
    /// The starting strategy's id.
    pub fn strategy(&self) -> &'static str {
        self.spec.strategy(&self.recipe.strategy).map_or(self.spec.default_strategy().id, |s| s.id)
    }
    pub fn seed(&self) -> u64 {
        self.recipe.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_clamps_to_steps() {
        let p = ParamSpec::live("x", "x", "", 10..=100, 20, "").step(5);
        assert!(p.accepts(15) && !p.accepts(17) && !p.accepts(105));
        assert_eq!(p.clamp(17), 15);
        assert_eq!(p.clamp(18), 20);
        assert_eq!(p.clamp(-3), 10);
        assert_eq!(p.clamp(1_000), 100);
        assert!(p.live && !ParamSpec::setup("y", "y", "", 0..=1, 0, "").live);
    }
}
