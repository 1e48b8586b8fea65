//! Every parameter at the ends of its range: each scenario's run still ends (or is cut by an
//! event cap, as the player's memory guard would), never panics, and leaves nothing
//! unhandled — under each strategy.

use faultline_core::{open, Recipe, Time};
use faultline_scenarios::ALL;
use faultline_tests::{url, TestRng};

/// Enough events to reach the faults of any default plan; a corner that generates more is
/// cut here as the player would cut it (by memory) — what matters is that it never panics.
const MAX_EVENTS: u64 = 3_000_000;

/// Runs a recipe to its scenario's end (or the cap); fails with the link on a panic or an
/// unhandled message.
fn survives(recipe: &Recipe) {
    let spec = faultline_scenarios::find(&recipe.scenario).expect("registered");
    let link = url(spec, recipe);
    let run = std::panic::catch_unwind(|| {
        let (mut run, problems) = open(spec, recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time(spec.default_until), MAX_EVENTS);
        run.unhandled()
    });
    match run {
        Ok(0) => {}
        Ok(n) => panic!("{n} messages or timers went unhandled: {link}"),
        Err(_) => panic!("panicked: {link}"),
    }
}

#[test]
fn every_parameter_at_its_min_and_max_runs_without_a_panic() {
    for spec in ALL {
        for st in spec.strategies {
            for p in spec.params {
                for value in [p.min, p.max] {
                    survives(&Recipe::new(spec.id(), st.id, 1).with_param(p.id, value));
                }
            }
        }
    }
}

#[test]
fn random_corners_of_each_parameter_space_run_without_a_panic() {
    let mut rng = TestRng(12);
    for spec in ALL {
        for _ in 0..8 {
            let st = &spec.strategies[rng.below(spec.strategies.len() as u64) as usize];
            let mut recipe = Recipe::new(spec.id(), st.id, rng.next_u64());
            // Every parameter at its min, its max or its default, at random.
            for p in spec.params {
                recipe = recipe.with_param(p.id, [p.min, p.max, p.default][rng.below(3) as usize]);
            }
            survives(&recipe);
        }
    }
}
