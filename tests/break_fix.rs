//! Every scenario proves its lesson: under its fault plan some seed makes each naive
//! strategy violate a check, and no seed out of many makes a fixed strategy do so.

use faultline_scenarios::ALL;
use faultline_tests::{outcome, url};

/// Seeds tried to find a break in each naive strategy.
const BREAK_SEEDS: u64 = 20;
/// Seeds a fixed strategy must survive.
const HOLD_SEEDS: u64 = 40;

#[test]
fn naive_strategies_break() {
    for spec in ALL {
        for st in spec.strategies.iter().filter(|s| s.naive) {
            let broke = (1..=BREAK_SEEDS).find(|&seed| {
                let recipe = faultline_core::Recipe::new(spec.id(), st.id, seed);
                !outcome(spec, &recipe).all_ok()
            });
            assert!(broke.is_some(), "{}/{}: no seed in 1..={BREAK_SEEDS} violated any check", spec.id(), st.id);
        }
    }
}

#[test]
fn fixed_strategies_hold() {
    for spec in ALL {
        for st in spec.strategies.iter().filter(|s| !s.naive) {
            for seed in 1..=HOLD_SEEDS {
                let recipe = faultline_core::Recipe::new(spec.id(), st.id, seed);
                let o = outcome(spec, &recipe);
                if let Some(bad) = o.checks.iter().find(|c| !c.ok) {
                    panic!(
                        "{}/{} seed {seed}: check `{}` failed at {:?}s: {}\nreproduce: {}",
                        spec.id(),
                        st.id,
                        bad.id,
                        bad.violated_at_s,
                        bad.why.clone().unwrap_or_default(),
                        url(spec, &recipe)
                    );
                }
            }
        }
    }
}

#[test]
fn every_scenario_is_complete() {
    for spec in ALL {
        let id = spec.id();
        assert!(spec.strategies.iter().any(|s| s.naive), "{id}: no naive strategy");
        assert!(spec.strategies.iter().any(|s| !s.naive), "{id}: no fixed strategy");
        assert!(!spec.checks.is_empty() && !spec.metrics.is_empty(), "{id}: needs checks and metrics");
        let n = &spec.info.note;
        for (what, text) in [
            ("summary", spec.info.summary),
            ("what can go wrong", n.what_can_go_wrong),
            ("sacrifice", n.what_you_sacrifice),
            ("10x", n.at_10x),
            ("resembles", n.resembles),
        ] {
            assert!(text.len() > 40, "{id}: the note's `{what}` is too thin");
        }
        assert!((2..=4).contains(&n.try_this.len()), "{id}: 2–4 try-this steps");
        assert!(!spec.info.seeds.is_empty(), "{id}: cite the seed documents");
        for p in spec.params {
            assert!(
                p.min <= p.default && p.default <= p.max && p.accepts(p.default),
                "{id}.{}: default out of range",
                p.id
            );
            assert!(!["v", "s", "strategy", "seed", "a", "fp"].contains(&p.id), "{id}.{}: reserved in URLs", p.id);
        }
        let mut ids: Vec<&str> = spec.params.iter().map(|p| p.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), spec.params.len(), "{id}: duplicate parameter ids");
    }
    let mut ids: Vec<&str> = ALL.iter().map(|s| s.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ALL.len(), "duplicate scenario ids");
}

/// Break, then fix, in one run: under its naive strategy (seeds 1–3) the check that breaks
/// first is violated; switched to the first fixed strategy half a second later, it holds again
/// (for at least `BAND_GAP_US`) by the end of the default run. Checks are judged after every
/// event, so a check must say whether the promise is broken now (a state, or an event that just
/// broke it), not latch its first failure: the verdict keeps that.
#[test]
fn switching_to_a_fixed_strategy_mid_violation_recovers() {
    use faultline_core::{ActionKind, CheckState, Recipe, Time};
    for spec in ALL {
        let naive = spec.strategies.iter().find(|s| s.naive).expect("a naive strategy");
        let fixed = spec.strategies.iter().find(|s| !s.naive).expect("a fixed strategy");
        for seed in 1..=3 {
            let recipe = Recipe::new(spec.id(), naive.id, seed);
            let broke = outcome(spec, &recipe)
                .checks
                .into_iter()
                .filter_map(|c| Some((c.violated_at_s?, c.id)))
                .reduce(|a, b| if b.0 < a.0 { b } else { a });
            let Some((at_s, check)) = broke else { continue };
            let switch = Time((at_s * 1e6) as u64 + 500_000);
            let recipe = recipe.with_action(switch, ActionKind::SetStrategy { id: fixed.id.into() });
            let run = faultline_tests::run(spec, &recipe, None);
            let status = run.checks().iter().find(|c| c.id == check).expect("the check");
            assert!(
                matches!(status.state(run.now()), CheckState::Recovered { .. }),
                "{}: `{check}` broke under {} at {at_s:.3} s and still fails after the switch to {}: {:?} {:?}\nreproduce: {}",
                spec.id(),
                naive.id,
                fixed.id,
                status.bands.last(),
                status.latest_why,
                url(spec, &recipe)
            );
        }
    }
}
