//! Recipe URLs: every scenario round-trips with random parameters and actions, and every
//! kind of bad input is a clear, typed error (or a reported repair) — never a panic.

use faultline_core::recipe::MAX_URL_LEN;
use faultline_core::{
    open, shared_check, shared_mark, ActionKind, Fault, Recipe, RecipeError, Shared, SharedCheck, Time,
};
use faultline_scenarios::{find, ALL};
use faultline_tests::links::{fuzzed, random_recipe, try_link, Opened};
use faultline_tests::TestRng;

#[test]
fn every_scenario_round_trips_through_its_url() {
    let mut rng = TestRng(2024);
    for spec in ALL {
        for _ in 0..200 {
            let r = random_recipe(spec, &mut rng);
            let url = format!("https://example.test/faultline/#/play?{}", r.to_query(spec));
            let (back, back_spec) = Recipe::from_url_strict(&url, find).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(back, r, "{url}");
            assert_eq!(back_spec.id(), spec.id());
        }
    }
}

#[test]
fn default_params_are_left_out_and_the_url_is_readable() {
    let spec = find("backpressure").unwrap();
    let r = Recipe::new("backpressure", "shed", 42).with_param("workers", 8);
    assert_eq!(r.to_query(spec), "v=1&s=backpressure&strategy=shed&seed=42&workers=8");
    let d = Recipe::new("backpressure", "shed", 42).with_param("workers", 4);
    assert_eq!(d.to_query(spec), "v=1&s=backpressure&strategy=shed&seed=42");
}

fn fatal(url: &str) -> RecipeError {
    Recipe::from_url(url, find).expect_err(url)
}

fn repaired(url: &str) -> (Recipe, Vec<RecipeError>) {
    let p = Recipe::from_url(url, find).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(p.problems.iter().all(|e| !e.is_fatal()));
    (p.recipe, p.problems)
}

#[test]
fn fatal_errors_say_what_is_wrong() {
    assert_eq!(fatal("?s=nope"), RecipeError::UnknownScenario { id: "nope".into() });
    assert_eq!(fatal("?seed=1"), RecipeError::MissingScenario);
    assert_eq!(fatal("?v=9&s=backpressure"), RecipeError::FutureVersion { found: 9, supported: 1 });
    assert!(matches!(fatal("?v=x&s=backpressure"), RecipeError::BadVersion { .. }));
    assert!(matches!(fatal("?s=backpressure&s=backpressure"), RecipeError::Malformed { .. }));
    assert!(matches!(fatal("?s=backpressure&x=%zz"), RecipeError::Malformed { .. }));
    let long = format!("?s=backpressure&a={}", "A".repeat(MAX_URL_LEN));
    assert!(matches!(fatal(&long), RecipeError::TooLong { .. }));
    assert!(fatal("?s=nope").to_string().contains("no scenario called `nope`"));
    assert!(fatal("?v=9&s=backpressure").to_string().contains("newer Faultline"));
}

#[test]
fn repairable_errors_are_repaired_and_reported() {
    let (r, p) = repaired("?s=backpressure&workers=100000&strategy=bogus&seed=-4&nonsense=1&service_ms=abc&a=%21%21");
    assert_eq!(r.params.get("workers"), Some(&256));
    assert_eq!(r.strategy, "unbounded");
    assert_eq!(r.seed, 1);
    assert!(r.actions.is_empty());
    let kinds: Vec<String> = p.iter().map(|e| format!("{e:?}").split([' ', '{']).next().unwrap().to_string()).collect();
    for want in ["OutOfRange", "UnknownStrategy", "BadSeed", "UnknownParam", "BadParamValue", "BadActions"] {
        assert!(kinds.iter().any(|k| k == want), "missing {want} in {kinds:?}");
    }
    assert!(p.iter().any(|e| e.to_string().contains("256 was used")));
}

#[test]
fn actions_naming_missing_things_are_dropped_with_a_reason() {
    let spec = find("backpressure").unwrap();
    let r = Recipe::new("backpressure", "shed", 1)
        .with_action(Time(5), ActionKind::Fault(Fault::Crash { node: 999 }))
        .with_action(Time(6), ActionKind::SetParam { id: "nope".into(), value: 1 })
        .with_action(Time(7), ActionKind::Fault(Fault::Custom { id: "nope".into(), node: None, value: 1 }))
        .with_action(Time(8), ActionKind::Fault(Fault::Crash { node: 0 }));
    let url = r.to_query(spec);
    let (parsed, problems) = repaired(&url);
    assert_eq!(parsed.actions.len(), 2, "unknown param and fault dropped at parse");
    let (run, more) = faultline_core::open(spec, &parsed);
    assert!(more.iter().any(|e| matches!(e, RecipeError::BadNode { node: 999, .. })));
    assert_eq!(run.recipe().actions.len(), 1);
    assert_eq!(problems.len(), 2);
}

#[test]
fn garbage_never_panics() {
    let mut rng = TestRng(5);
    let alphabet: Vec<char> = "?&=%s.v1a_-AZaz09#+~!backpressure".chars().collect();
    for _ in 0..20_000 {
        let n = rng.below(80) as usize;
        let s: String = (0..n).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect();
        let _ = Recipe::from_url(&s, find);
        let _ = Recipe::from_url(&format!("?s=backpressure&a={s}"), find);
    }
}

/// The benchmarks' runs at the seeds' scales are real recipes: each parses with no problem
/// at all (the browser's bench page would skip one that did not).
#[test]
fn the_at_scale_recipes_parse_strictly() {
    for &(query, secs) in faultline_scenarios::AT_SCALE {
        let parsed = Recipe::from_url_strict(query, faultline_scenarios::find);
        assert!(parsed.is_ok(), "{query}: {:?}", parsed.err());
        assert!(secs > 0, "{query}");
    }
}

#[test]
fn a_shared_link_matches_its_run_and_says_so_when_the_scenario_has_changed() {
    for spec in ALL {
        let (mut run, _) = open(spec, &spec.default_recipe(3));
        run.run_until(Time(spec.default_until / 3), u64::MAX);
        // Shared in the middle of an instant (after single steps), the mark is where it ends.
        for _ in 0..5 {
            run.step();
        }
        let mark = shared_mark(run.as_ref());
        assert_eq!(mark.at, run.now());
        let link = Recipe { shared: Some(mark), ..run.recipe().clone() }.to_query(spec);
        assert!(link.contains(&format!("&fp={:08x}@{}", mark.fingerprint, mark.at.micros())), "{link}");
        let opened = Recipe::from_url_strict(&link, find).expect("reads").0;
        let at = |recipe: &Recipe| {
            let (mut run, _) = open(spec, recipe);
            run.run_until(mark.at, u64::MAX);
            shared_check(run.as_ref())
        };
        assert_eq!(at(&opened), SharedCheck::Matches, "{}: {link}", spec.id());
        // Before the mark it cannot tell yet.
        let (early, _) = open(spec, &opened);
        assert_eq!(shared_check(early.as_ref()), SharedCheck::Pending(mark.at));
        // Another run (here: another fingerprint) is called out, never passed off as the same.
        let changed = Recipe { shared: Some(Shared { fingerprint: mark.fingerprint ^ 1, ..mark }), ..opened };
        match at(&changed) {
            SharedCheck::Changed(e) => {
                assert!(e.to_string().contains("this scenario has changed since the link was made"), "{e}")
            }
            other => panic!("{}: {other:?}", spec.id()),
        }
    }
}

#[test]
fn a_bad_fingerprint_is_reported_and_ignored() {
    for bad in ["xyz", "1234567@5", "123456789@5", "12345678@", "12345678@-1", "12345678"] {
        let (r, problems) = repaired(&format!("s=backpressure&fp={bad}"));
        assert_eq!(r.shared, None);
        assert_eq!(problems, vec![RecipeError::BadFingerprint { text: bad.into() }], "{bad}");
    }
}

#[test]
fn an_action_taken_after_opening_a_shared_link_drops_its_fingerprint() {
    let spec = find("backpressure").unwrap();
    let shared = Shared { fingerprint: 1, at: Time(5) };
    let (mut run, _) = open(spec, &Recipe { shared: Some(shared), ..spec.default_recipe(1) });
    run.inject(ActionKind::SetStrategy { id: "shed".into() }).unwrap();
    assert_eq!(run.recipe().shared, None, "the run is no longer the one shared");
}

/// Links fuzzed for the test command (`scripts/swarm --links N` runs a million).
const FUZZED_LINKS: u64 = 20_000;

/// Damaged links of every scenario (cut short, bit-flipped, huge and negative numbers, keys
/// twice, unknown ids, non-ASCII, overlong, broken or nonsense action logs): each one runs —
/// and the link written back is clean — or is refused with a message a user can act on.
#[test]
fn fuzzed_links_run_or_say_what_is_wrong() {
    let (mut ran, mut refused, mut found) = (0, 0, Vec::new());
    for seed in 0..FUZZED_LINKS {
        let f = fuzzed(seed);
        match try_link(&f.link) {
            Ok(Opened::Ran { .. }) => ran += 1,
            Ok(Opened::Refused(_)) => refused += 1,
            Err(e) => found.push(format!("seed {seed} ({}): {e:?}\n  link: {}", f.mutations.join(", "), f.link)),
        }
    }
    assert!(found.is_empty(), "{} fuzzed links went wrong:\n{}", found.len(), found.join("\n"));
    // The fuzz reaches both outcomes often: a fuzz that only ever refused would test little.
    assert!(ran > FUZZED_LINKS / 5 && refused > FUZZED_LINKS / 10, "ran {ran}, refused {refused}");
}
