//! The swarm's slice in the test command: for every scenario and strategy, a few random fault
//! plans (`scripts/swarm` runs a thousand seeds each): no panic, nothing unhandled, the same
//! run from its link, no explosion of events, and no fixed strategy broken inside its envelope.

use faultline_scenarios::ALL;
use faultline_tests::swarm::{all_kinds, baseline_events, draw, judge, node_count};

/// Seeds per strategy here: even ones keep a fixed strategy inside its envelope.
const SEEDS: u64 = 4;

#[test]
fn random_fault_plans_find_nothing() {
    let mut found = Vec::new();
    for spec in ALL {
        let nodes = node_count(spec);
        for st in spec.strategies {
            let baseline = baseline_events(spec, st.id, 1);
            for seed in 1..=SEEDS {
                let drawn = draw(spec, st.id, seed, nodes);
                let v = judge(spec, &drawn, baseline);
                for f in v.findings {
                    found.push(format!(
                        "{}/{} seed {seed} ({}): {f:?}\n  reproduce: {}",
                        spec.id(),
                        st.id,
                        drawn.kinds.join(", "),
                        v.link
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "the swarm found {} problems:\n{}", found.len(), found.join("\n"));
}

#[test]
fn every_envelope_names_faults_the_scenario_has_and_says_why_the_rest_are_outside() {
    for spec in ALL {
        let kinds = all_kinds(spec);
        let e = faultline_scenarios::envelope(spec.id());
        assert!(
            !e.faults.is_empty(),
            "{}: declare the faults its fixed strategies survive (scenarios/src/envelopes.rs)",
            spec.id()
        );
        for k in e.faults {
            assert!(kinds.contains(k), "{}: its envelope names `{k}`, which is no fault of it", spec.id());
        }
        let left_out = kinds.iter().any(|k| !e.covers(k));
        assert_eq!(
            left_out,
            !e.outside.is_empty(),
            "{}: say why faults are outside its envelope (and only then)",
            spec.id()
        );
    }
}

#[test]
fn every_envelope_belongs_to_a_registered_scenario() {
    for (id, _) in faultline_scenarios::ENVELOPES {
        assert!(faultline_scenarios::find(id).is_some(), "ENVELOPES names `{id}`, which is no registered scenario");
    }
}
