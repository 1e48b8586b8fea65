//! Every parameter at the ends of its range: each scenario's run still ends (or is cut by an
//! event cap, as the player's memory guard would), never panics, and leaves nothing
//! unhandled — under each strategy.

use faultline_core::{open, Recipe, Time};
use faultline_scenarios::ALL;
use faultline_tests::{parameter_corners, parameter_ends, url, TestRng};

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
        parameter_ends(spec).iter().for_each(survives);
    }
}

#[test]
fn random_corners_of_each_parameter_space_run_without_a_panic() {
    let mut rng = TestRng(12);
    for spec in ALL {
        parameter_corners(spec, 8, &mut rng).iter().for_each(survives);
    }
}
