//! The engine in a real browser (headless Chromium via wasm-bindgen-test): the player's
//! rewinding, stepping back and budgets, and live actions replayed from their link.

use faultline_core::{ActionKind, Fault, Time};
use faultline_engine::player::Player;
use faultline_engine::{load, strip_s};
use faultline_scenarios::{find, ALL};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn rewinding_and_stepping_back_reproduce_the_run() {
    for spec in ALL {
        let (mut p, _) = Player::new(spec, &spec.default_recipe(9));
        p.advance(Time::from_secs(3), || true);
        let at_3s = p.run.trace().hash();
        let events = p.run.events();
        p.advance(Time::from_secs(5), || true);
        p.seek(Time::from_secs(3));
        assert_eq!(p.run.trace().hash(), at_3s, "{}: seek back", spec.id());
        p.step();
        p.step_back();
        assert_eq!(p.run.events(), events, "{}: step back", spec.id());
        assert_eq!(p.run.trace().hash(), at_3s, "{}: step back hash", spec.id());
    }
}

#[wasm_bindgen_test]
fn advancing_says_whether_the_budget_ran_out() {
    let mut stopped_early = 0;
    for spec in ALL {
        let (mut p, _) = Player::new(spec, &spec.default_recipe(2));
        // No time left after the first chunk of events: it stops short and says so, unless
        // the whole second fitted in that chunk.
        let reached = p.advance(Time::from_secs(1), || false);
        assert_eq!(reached, p.reached(Time::from_secs(1)), "{}", spec.id());
        stopped_early += usize::from(!reached);
        assert!(p.advance(Time::from_secs(2), || true), "{}", spec.id());
        assert_eq!(p.now(), Time::from_secs(2), "{}", spec.id());
    }
    assert!(stopped_early > 0, "some scenario has more than a chunk of events in its first second");
}

#[wasm_bindgen_test]
fn live_actions_replay_from_the_link() {
    for spec in ALL {
        let (mut live, _) = Player::new(spec, &spec.default_recipe(4));
        live.advance(Time::from_ms(1_500), || true);
        live.inject(ActionKind::Fault(Fault::Crash { node: 0 })).expect("valid");
        live.advance(Time::from_secs(4), || true);
        live.seek(Time::from_secs(1)); // rewinding keeps the action
        live.advance(Time::from_secs(4), || true);
        let link = strip_s(&live.recipe().to_query(spec));
        let (s, recipe, _) = load(find, spec.id(), &link).unwrap();
        let (mut replay, _) = Player::new(s, &recipe);
        replay.advance(Time::from_secs(4), || true);
        assert_eq!(live.run.trace().hash(), replay.run.trace().hash(), "{}: {link}", spec.id());
    }
}
