//! Shared helpers for the cross-crate tests: run a recipe to its end and describe it.

use faultline_core::{open, Outcome, Recipe, Run, ScenarioSpec, Time};

/// Runs `recipe` to `until` (the scenario's default when `None`) and returns the run.
pub fn run(spec: &'static ScenarioSpec, recipe: &Recipe, until: Option<Time>) -> Box<dyn Run> {
    let (mut run, problems) = open(spec, recipe);
    assert!(problems.is_empty(), "recipe has problems: {problems:?}");
    run.keep_trace(false);
    run.run_until(until.unwrap_or(Time(spec.default_until)), u64::MAX);
    assert_eq!(run.unhandled(), 0, "a message or timer went unhandled (see the event log): {}", url(spec, recipe));
    run
}

pub fn outcome(spec: &'static ScenarioSpec, recipe: &Recipe) -> Outcome {
    Outcome::of(run(spec, recipe, None).as_ref())
}

/// The link that reproduces a recipe, for failure messages.
pub fn url(spec: &ScenarioSpec, recipe: &Recipe) -> String {
    format!("faultline run '?{}'", recipe.to_query(spec))
}

/// What a caught panic said (its message, if it was text).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Every parameter of `spec` at its min and at its max, one at a time, under every strategy
/// (seed 1): the extremes test's and `scripts/swarm --extremes`'s first set.
pub fn parameter_ends(spec: &ScenarioSpec) -> Vec<Recipe> {
    let mut recipes = Vec::new();
    for st in spec.strategies {
        for p in spec.params {
            for value in [p.min, p.max] {
                recipes.push(Recipe::new(spec.id(), st.id, 1).with_param(p.id, value));
            }
        }
    }
    recipes
}

/// Every parameter at its min and at its max, each under one strategy, the strategies taken in
/// turn (so each appears while there are at least as many ends as strategies): the test
/// command's slice of [`parameter_ends`], which `scripts/swarm --extremes` runs in full.
pub fn parameter_ends_in_turn(spec: &ScenarioSpec) -> Vec<Recipe> {
    let values = spec.params.iter().flat_map(|p| [(p, p.min), (p, p.max)]);
    let strategies = spec.strategies.iter().cycle();
    values.zip(strategies).map(|((p, value), st)| Recipe::new(spec.id(), st.id, 1).with_param(p.id, value)).collect()
}

/// `n` random corners of `spec`'s parameter space: a random strategy and seed, every parameter
/// at its min, its max or its default, at random.
pub fn parameter_corners(spec: &ScenarioSpec, n: usize, rng: &mut TestRng) -> Vec<Recipe> {
    (0..n)
        .map(|_| {
            let st = &spec.strategies[rng.below(spec.strategies.len() as u64) as usize];
            let recipe = Recipe::new(spec.id(), st.id, rng.next_u64());
            spec.params.iter().fold(recipe, |r, p| r.with_param(p.id, [p.min, p.max, p.default][rng.below(3) as usize]))
        })
        .collect()
}

/// A small deterministic generator for test inputs (not the simulation's).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[path = "swarm_plan.rs"]
pub mod swarm;

#[path = "links_plan.rs"]
pub mod links;
