//! Every slider does what it says: a live parameter moved mid-run changes what happens from
//! then on; a setup parameter cannot be moved mid-run — it rebuilds the run from 0 with the
//! new value, in the runner and in the player alike.

use faultline_core::{open, ActionKind, ParamSpec, Recipe, RecipeError, Run, ScenarioSpec, Time};
use faultline_scenarios::ALL;
use faultline_tests::url;

/// What a run did, leaving out the trace (whose action entry names the value set, so it
/// always differs): events, every metric and the checks' verdicts.
fn behaviour(run: &dyn Run) -> String {
    let m = run.metrics();
    let hists: Vec<_> = m.histograms().map(|(n, h)| (n, h.count(), h.max(), h.quantile(0.5))).collect();
    let checks: Vec<_> = run.checks().iter().map(|c| c.violation.as_ref().map(|v| v.at)).collect();
    format!("{} {:?} {:?} {hists:?} {checks:?}", run.events(), m.counters(), m.gauges())
}

/// The values worth trying instead of the default: the ends of the range.
fn others(p: &ParamSpec) -> Vec<i64> {
    [p.min, p.max].into_iter().filter(|&v| v != p.default).collect()
}

/// The runs a parameter is tried in: the scenario's default under each strategy, then its
/// runs at the seeds' scale (some parameters only matter under load, like a sweeper's batch),
/// each with the time it ends. Tried in this order until one shows the parameter acting.
fn bases(spec: &'static ScenarioSpec) -> Vec<(Recipe, Time)> {
    let defaults = spec.strategies.iter().map(|st| (Recipe::new(spec.id(), st.id, 1), Time(spec.default_until)));
    let at_scale = faultline_scenarios::at_scale().into_iter().filter(|(s, ..)| s.id() == spec.id());
    // At scale, over the whole default run: a sweeper's batch only binds after the faults.
    defaults.chain(at_scale.map(|(_, r, _)| (r, Time(spec.default_until)))).collect()
}

/// Whether setting `p` to `value` a quarter into the run changes it, compared with setting
/// it to its default at the same instant.
fn moves(spec: &'static ScenarioSpec, (recipe, end): &(Recipe, Time), p: &ParamSpec, value: i64) -> bool {
    let (mut base, problems) = open(spec, recipe);
    assert!(problems.is_empty(), "{problems:?}");
    base.keep_trace(false);
    base.run_until(Time(end.micros() / 4), u64::MAX);
    let [a, b] = [value, p.default].map(|v| {
        let mut run = base.snapshot();
        run.inject(ActionKind::SetParam { id: p.id.to_string(), value: v }).expect("a live parameter can be set");
        run.run_until(*end, u64::MAX);
        behaviour(run.as_ref())
    });
    a != b
}

#[test]
fn live_parameters_act_from_the_instant_they_are_set() {
    let mut dead = Vec::new();
    for spec in ALL {
        let bases = bases(spec);
        for p in spec.params.iter().filter(|p| p.live) {
            let acted = bases.iter().any(|base| others(p).into_iter().any(|v| moves(spec, base, p, v)));
            if !acted {
                dead.push(format!("{}.{} (tried {:?} a quarter into each run)", spec.id(), p.id, others(p)));
            }
        }
    }
    assert!(
        dead.is_empty(),
        "declared live, but setting them mid-run changes nothing under any strategy or at scale (make the model read \
         them, or declare them setup): {dead:#?}"
    );
}

#[test]
fn setup_parameters_rebuild_the_run_with_their_new_value() {
    for spec in ALL {
        for p in spec.params.iter().filter(|p| !p.live) {
            let value = others(p)[0];
            let set = ActionKind::SetParam { id: p.id.to_string(), value };
            // Live, the kernel refuses it: the player rebuilds the run instead.
            let (mut run, _) = open(spec, &spec.default_recipe(1));
            run.run_until(Time(spec.default_until / 4), u64::MAX);
            match run.inject(set.clone()) {
                Err(RecipeError::SetupParamMidRun { id, value: v, .. }) => assert!(id == p.id && v == value),
                other => panic!("{}.{} is setup, but injecting it mid-run gave {other:?}", spec.id(), p.id),
            }
            // In a link, the change is applied from the start, and the runner says so.
            let midrun = spec.default_recipe(1).with_action(Time(spec.default_until / 4), set);
            let query = midrun.to_query(spec);
            let parsed = Recipe::from_url(&query, faultline_scenarios::find).expect("reads");
            assert!(
                matches!(parsed.problems.as_slice(), [RecipeError::SetupParamMidRun { .. }]),
                "{}.{}: {:?}",
                spec.id(),
                p.id,
                parsed.problems
            );
            let from_start = spec.default_recipe(1).with_param(p.id, value);
            assert_eq!(parsed.recipe, from_start, "{}.{}: the link's run is rebuilt with {value}", spec.id(), p.id);
            // And the value matters: under some strategy, the rebuilt run is another run.
            let hash = |r: &Recipe| {
                let (mut run, _) = open(spec, r);
                run.run_until(Time(spec.default_until), u64::MAX);
                run.trace().hash()
            };
            let matters = spec.strategies.iter().any(|st| {
                let plain = Recipe::new(spec.id(), st.id, 1);
                hash(&plain.clone().with_param(p.id, value)) != hash(&plain)
            });
            assert!(matters, "{}.{}={value} changes nothing: {}", spec.id(), p.id, url(spec, &from_start));
        }
    }
}
