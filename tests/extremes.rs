//! Every parameter at the ends of its range: each scenario's run still ends (or is cut by an
//! event cap, as the player's memory guard would), never panics, and leaves nothing
//! unhandled. Here each end under one strategy, the strategies in turn, and a few random
//! corners; `scripts/swarm --extremes` plays every end under every strategy through the
//! player's engine.

use faultline_core::{open, Recipe, Time};
use faultline_scenarios::ALL;
use faultline_tests::{parameter_corners, parameter_ends_in_turn, url, TestRng};

/// A million events: a second of the machine's time for the heaviest corners, past the
/// faults of every default plan but for those that flood the run (20,000 requests a second)
/// and are cut, as the player would cut them by memory: what matters is that none panics.
const MAX_EVENTS: u64 = 1_000_000;

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

/// Half the scenarios' ends (`half` 0 or 1), so the test threads share the work evenly.
fn ends(half: usize) {
    for spec in ALL.iter().skip(half).step_by(2) {
        parameter_ends_in_turn(spec).iter().for_each(survives);
    }
}

#[test]
fn every_parameter_at_its_min_and_max_runs_without_a_panic_first_half() {
    ends(0);
}

#[test]
fn every_parameter_at_its_min_and_max_runs_without_a_panic_second_half() {
    ends(1);
}

#[test]
fn random_corners_of_each_parameter_space_run_without_a_panic() {
    let mut rng = TestRng(12);
    for spec in ALL {
        parameter_corners(spec, 8, &mut rng).iter().for_each(survives);
    }
}
