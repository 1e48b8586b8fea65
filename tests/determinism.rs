//! Same recipe → same trace, however the run is driven: in one go, in browser-sized
//! slices, from a snapshot, or replayed from a recipe that recorded live actions.

use faultline_core::{open, ActionKind, Fault, Recipe, Run, Time, MICROS_PER_MS};
use faultline_scenarios::ALL;
use faultline_tests::{run, TestRng};

fn hash(r: &dyn Run) -> u64 {
    r.trace().hash()
}

#[test]
fn same_recipe_same_hash_other_seed_other_hash() {
    for spec in ALL {
        for st in spec.strategies {
            let a = run(spec, &Recipe::new(spec.id(), st.id, 7), None);
            let b = run(spec, &Recipe::new(spec.id(), st.id, 7), None);
            let c = run(spec, &Recipe::new(spec.id(), st.id, 8), None);
            assert!(a.events() > 100, "{}/{}: suspiciously few events", spec.id(), st.id);
            assert_eq!(hash(a.as_ref()), hash(b.as_ref()), "{}/{} not deterministic", spec.id(), st.id);
            assert_ne!(hash(a.as_ref()), hash(c.as_ref()), "{}/{}: seed has no effect", spec.id(), st.id);
        }
    }
}

#[test]
fn slicing_and_snapshots_do_not_change_the_run() {
    for spec in ALL {
        let recipe = spec.default_recipe(3);
        let end = Time(spec.default_until);
        let whole = run(spec, &recipe, Some(end));
        // Like the browser: 16 ms of simulated time per frame, with a small event budget.
        let (mut sliced, _) = open(spec, &recipe);
        let mut t = 0;
        while t < end.0 {
            t = (t + 16 * MICROS_PER_MS).min(end.0);
            while sliced.run_until(Time(t), 50) == 50 {}
        }
        assert_eq!(hash(whole.as_ref()), hash(sliced.as_ref()), "{}: slicing changed the run", spec.id());
        assert_eq!(whole.sampler().series, sliced.sampler().series, "{}: slicing changed the charts", spec.id());

        let (mut first, _) = open(spec, &recipe);
        first.run_until(Time(end.0 / 3), u64::MAX);
        let mut copy = first.snapshot();
        first.run_until(end, u64::MAX);
        copy.run_until(end, u64::MAX);
        assert_eq!(hash(first.as_ref()), hash(copy.as_ref()), "{}: snapshot diverged", spec.id());
    }
}

#[test]
fn what_is_kept_for_a_viewer_does_not_change_the_run() {
    for spec in ALL {
        let recipe = spec.default_recipe(5);
        let end = Time(spec.default_until / 3);
        let headless = run(spec, &recipe, Some(end));
        let (mut watched, _) = open(spec, &recipe);
        watched.run_until(end, u64::MAX);
        assert_eq!(hash(headless.as_ref()), hash(watched.as_ref()), "{}: keeping the trace changed the run", spec.id());
        assert_eq!(headless.sampler().series, watched.sampler().series, "{}", spec.id());
        // The trace's entries and the latest deliveries (the afterglow drawn on the canvas)
        // are kept only when someone watches.
        let (h, w) = (headless.frame(100), watched.frame(100));
        assert!(headless.trace().entries().is_empty() && h.recent.is_empty(), "{}", spec.id());
        assert!(!watched.trace().entries().is_empty() && !w.recent.is_empty(), "{}", spec.id());
        assert_eq!((h.now, h.in_flight, h.messages.len()), (w.now, w.in_flight, w.messages.len()), "{}", spec.id());
    }
}

#[test]
fn keeping_for_a_viewer_in_stretches_keeps_one_unbroken_stretch_and_never_changes_the_run() {
    // As the player does for a run that cannot keep up: the trace kept only for the last
    // stretch of each frame. The run is the same, and what is kept is exactly the tail of
    // what a viewer watching throughout would have kept.
    for spec in ALL {
        let recipe = spec.default_recipe(6);
        let end = Time(spec.default_until / 3);
        let (mut watched, _) = open(spec, &recipe);
        watched.run_until(end, u64::MAX);
        let (mut stretches, _) = open(spec, &recipe);
        let mut t = Time::ZERO;
        let mut i = 0;
        while t < end {
            i += 1;
            t = Time((t.0 + end.0 / 9 + i * 7_919).min(end.0));
            stretches.keep_trace(i % 3 == 0);
            stretches.run_until(Time(t.0.saturating_sub(end.0 / 20)), u64::MAX);
            stretches.keep_trace(true);
            stretches.run_until(t, u64::MAX);
        }
        let id = spec.id();
        assert_eq!(hash(stretches.as_ref()), hash(watched.as_ref()), "{id}: keeping in stretches changed the run");
        assert_eq!(stretches.sampler().series, watched.sampler().series, "{id}");
        let (kept, all) = (stretches.trace().entries().to_vec(), watched.trace().entries().to_vec());
        assert!(!kept.is_empty() && kept.len() <= all.len(), "{id}: {} kept", kept.len());
        let tail = &all[all.len() - kept.len()..];
        assert!(kept[..] == tail[..], "{id}: not the unbroken tail of the run (kept from seq {})", kept[0].seq);
        for e in &kept {
            assert_eq!(stretches.detail(e.seq), watched.detail(e.seq), "{id}: detail of {}", e.seq);
        }
        let (s, w) = (stretches.frame(100), watched.frame(100));
        assert!(!s.recent.is_empty() && s.recent[..] == w.recent[w.recent.len() - s.recent.len()..], "{id}: afterglow");
    }
}

#[test]
fn live_actions_replay_exactly_from_the_recipe() {
    let mut rng = TestRng(99);
    for spec in ALL {
        let end = Time(spec.default_until);
        let (mut live, _) = open(spec, &spec.default_recipe(11));
        let nodes = live.node_count();
        let other = spec.strategies.last().expect("strategies").id;
        // A live parameter: setup ones cannot be set mid-run (they rebuild the run).
        let settable: Vec<_> = spec.params.iter().filter(|p| p.live).collect();
        let set = match settable.get(rng.below(settable.len().max(1) as u64) as usize) {
            Some(p) => ActionKind::SetParam { id: p.id.to_string(), value: p.clamp(p.default + p.step) },
            None => ActionKind::Fault(Fault::Heal),
        };
        let actions = [
            ActionKind::Fault(Fault::LatencySpike { extra: 50 * MICROS_PER_MS, dur: 2_000 * MICROS_PER_MS }),
            ActionKind::Fault(Fault::Crash { node: rng.below(nodes as u64) as u32 }),
            set,
            ActionKind::SetStrategy { id: other.to_string() },
            ActionKind::Fault(Fault::Heal),
        ];
        for (i, a) in actions.into_iter().enumerate() {
            // Stop at odd instants, mid-way through runs of same-time events.
            let mut t = Time(end.0 * (i as u64 + 1) / 7 + rng.below(1000));
            live.run_until(t, u64::MAX);
            for _ in 0..rng.below(5) {
                live.step();
                t = live.now();
            }
            let _ = t;
            live.inject(a).expect("valid action");
        }
        live.run_until(end, u64::MAX);
        let replay = run(spec, live.recipe(), Some(end));
        assert_eq!(hash(live.as_ref()), hash(replay.as_ref()), "{}: replay of the recorded recipe diverged", spec.id());
        assert_eq!(live.recipe().actions.len(), 5);
    }
}

#[test]
fn injecting_bad_actions_is_an_error_not_a_panic() {
    for spec in ALL {
        let (mut r, _) = open(spec, &spec.default_recipe(1));
        let n = r.node_count();
        assert!(r.inject(ActionKind::Fault(Fault::Crash { node: n + 5 })).is_err());
        assert!(r.inject(ActionKind::SetParam { id: "no-such".into(), value: 1 }).is_err());
        assert!(r.inject(ActionKind::SetStrategy { id: "no-such".into() }).is_err());
        assert!(r.inject(ActionKind::Fault(Fault::Custom { id: "no-such".into(), node: None, value: 0 })).is_err());
        assert!(r.recipe().actions.is_empty());
    }
}
