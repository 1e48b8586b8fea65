//! The swarm: random fault plans drawn from a seed, thrown at a scenario on top of its own
//! plan, and what a run under one must never do (panic, leave events unhandled, lose its
//! replay, explode, or — inside the scenario's envelope — break a fixed strategy's check).

use crate::{url, TestRng};
use faultline_core::{
    open, Action, ActionKind, Fault, NodeId, Outcome, Ppm, Recipe, ScenarioSpec, Target, Time, GENERIC_FAULTS,
    MICROS_PER_MS, MICROS_PER_S,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// At most this many faults are drawn for one run (restarts and heals come on top).
pub const MAX_FAULTS: u64 = 4;
/// A run under faults may take this many times the events of the same run without them (plus
/// a floor) before it counts as exploding: a scenario's own faults may multiply its load a
/// hundredfold (a flood), and retries amplify it, but within bounds.
pub const EVENT_GROWTH: u64 = 200;
const EVENT_FLOOR: u64 = 200_000;
/// How much the process's resident memory may grow in one run before it is stopped and
/// reported (with two runs at a time, the growth may be its neighbour's): a fault must not
/// make a scenario's state grow without bound (the player's memory guard would stop it in
/// the browser, but the model should not need it).
pub const MEMORY_LIMIT_BYTES: u64 = 3 << 30;
/// Memory is looked at after each slice of this many events.
const MEMORY_SLICE_EVENTS: u64 = 100_000;

/// The process's resident memory (Linux; 0 where /proc is missing).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// One swarm run's plan: the recipe, and whether every fault drawn is inside the envelope.
pub struct Drawn {
    pub recipe: Recipe,
    pub inside: bool,
    /// The kinds drawn, in order (generic kinds and own fault ids).
    pub kinds: Vec<String>,
}

/// The kinds a plan can draw from: every generic fault and the scenario's own.
pub fn all_kinds(spec: &ScenarioSpec) -> Vec<&'static str> {
    GENERIC_FAULTS.iter().copied().chain(spec.faults.iter().map(|f| f.id)).collect()
}

/// Uniform in `lo..=hi`.
fn between(rng: &mut TestRng, lo: i64, hi: i64) -> i64 {
    lo + rng.below((hi - lo) as u64 + 1) as i64
}

/// Draws a plan for `strategy` from `seed`. A fixed strategy's plan keeps to the envelope
/// on even seeds (that is where it promises to hold) and draws from every fault on odd ones
/// (where it promises only not to crash the simulator); a naive one's draws from every fault.
pub fn draw(spec: &'static ScenarioSpec, strategy: &str, seed: u64, nodes: NodeId) -> Drawn {
    let naive = spec.strategies.iter().any(|s| s.id == strategy && s.naive);
    let kept: Vec<&str> = faultline_scenarios::envelope(spec.id()).faults.to_vec();
    let pool = if !naive && seed.is_multiple_of(2) && !kept.is_empty() { kept } else { all_kinds(spec) };
    let count = 1 + TestRng(seed).below(MAX_FAULTS);
    draw_from(spec, strategy, seed, nodes, &pool, count)
}

/// Draws `count` faults of the kinds in `pool` (repeats allowed) from `seed`.
pub fn draw_from(
    spec: &'static ScenarioSpec,
    strategy: &str,
    seed: u64,
    nodes: NodeId,
    pool: &[&str],
    count: u64,
) -> Drawn {
    let mut rng = TestRng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ spec.id().len() as u64);
    let mut recipe = Recipe::new(spec.id(), strategy, seed);
    let mut actions = Vec::new();
    let mut kinds = Vec::new();
    let end = spec.default_until * 9 / 10;
    let ms = |n: i64| n as u64 * MICROS_PER_MS;
    for _ in 0..count {
        let kind = pool[rng.below(pool.len() as u64) as usize];
        let at = rng.below(end);
        let node = rng.below(nodes as u64) as NodeId;
        let mut push = |at: u64, f: Fault| actions.push(Action { at: Time(at), kind: ActionKind::Fault(f) });
        let later = |rng: &mut TestRng| at + ms(between(rng, 100, 10_000));
        match kind {
            "crash" => {
                push(at, Fault::Crash { node });
                if rng.below(4) > 0 {
                    let t = later(&mut rng);
                    push(t, Fault::Restart { node });
                }
            }
            "pause" => push(at, Fault::Pause { node, dur: ms(between(&mut rng, 10, 5000)) }),
            "partition" => {
                if rng.below(2) == 0 {
                    push(at, Fault::Isolate { node, one_way: rng.below(4) == 0 });
                } else {
                    let a: Vec<NodeId> = (0..nodes).filter(|_| rng.below(2) == 0).collect();
                    let a = if a.is_empty() { vec![node] } else { a };
                    push(at, Fault::Partition { a, b: None, one_way: rng.below(4) == 0 });
                }
                if rng.below(4) > 0 {
                    let t = later(&mut rng);
                    push(t, Fault::Heal);
                }
            }
            "latency" => {
                let (extra, dur) = (ms(between(&mut rng, 1, 1000)), ms(between(&mut rng, 100, 10_000)));
                push(at, Fault::LatencySpike { extra, dur })
            }
            "loss" => {
                let (loss, dur) =
                    (Ppm(between(&mut rng, 10_000, 1_000_000) as u32), ms(between(&mut rng, 100, 10_000)));
                push(at, Fault::LossBurst { loss, dur })
            }
            // Never set back before the run began: the kernel holds a clock at zero rather than
            // let it go negative, and a clock that stands still is no clock a node could have.
            "skew" => {
                let back_ms = (at / MICROS_PER_MS).min(10_000) as i64;
                push(at, Fault::ClockSkew { node, offset: between(&mut rng, -back_ms, 10_000) * MICROS_PER_MS as i64 })
            }
            "drift" => push(at, Fault::ClockDrift { node, ppm: between(&mut rng, -500_000, 500_000) as i32 }),
            "slow-disk" => {
                let (factor, dur) = (between(&mut rng, 2, 100) as u32, ms(between(&mut rng, 100, 10_000)));
                push(at, Fault::SlowDisk { node, factor, dur })
            }
            own => {
                let f = spec.faults.iter().find(|f| f.id == own).expect("drawn from the spec");
                let value = between(&mut rng, f.value_min, f.value_max);
                let on = (f.target == Target::Node).then_some(node);
                push(at, Fault::Custom { id: own.to_string(), node: on, value })
            }
        }
        kinds.push(kind.to_string());
    }
    actions.sort_by_key(|a| a.at);
    for a in actions {
        recipe.push_action(a);
    }
    let envelope = faultline_scenarios::envelope(spec.id());
    let inside = kinds.iter().all(|k| envelope.covers(k));
    Drawn { recipe, inside, kinds }
}

/// What went wrong in one swarm run, if anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Panic(String),
    Unhandled(u64),
    /// The run read back from its link took another course.
    Replay,
    /// More events than `EVENT_GROWTH` times the run without faults.
    Exploded {
        events: u64,
        baseline: u64,
    },
    /// The process's memory grew past `MEMORY_LIMIT_BYTES` during the run (by this simulated second).
    Memory {
        at_s: u64,
    },
    /// A fixed strategy broke a check under faults inside its envelope.
    Violation {
        check: &'static str,
        at_s: f64,
        why: String,
    },
}

/// One run's verdict: the findings, and the link that reproduces it.
pub struct Verdict {
    pub findings: Vec<Finding>,
    pub link: String,
    pub faults: usize,
    /// A check failed (allowed outside the envelope, or for a naive strategy).
    pub violated: bool,
    /// The first check that failed, and why.
    pub broken: Option<(&'static str, String)>,
}

/// Events the run of `strategy` at `seed` takes without swarm faults: the yardstick for
/// `Finding::Exploded`.
pub fn baseline_events(spec: &'static ScenarioSpec, strategy: &str, seed: u64) -> u64 {
    let (mut run, _) = open(spec, &Recipe::new(spec.id(), strategy, seed));
    run.keep_trace(false);
    run.run_until(Time(spec.default_until), u64::MAX);
    run.events()
}

/// The nodes a scenario's default run has (swarm targets are drawn among them).
pub fn node_count(spec: &'static ScenarioSpec) -> NodeId {
    open(spec, &Recipe::new(spec.id(), spec.strategies[0].id, 1)).0.node_count()
}

/// Runs one drawn plan, then reads its link back and runs that again.
pub fn judge(spec: &'static ScenarioSpec, drawn: &Drawn, baseline: u64) -> Verdict {
    let link = url(spec, &drawn.recipe);
    let faults = drawn.kinds.len();
    let cap = baseline.saturating_mul(EVENT_GROWTH).saturating_add(EVENT_FLOOR);
    let naive = spec.strategies.iter().any(|s| s.id == drawn.recipe.strategy && s.naive);
    let play = |recipe: &Recipe| {
        catch_unwind(AssertUnwindSafe(|| {
            let (mut run, problems) = open(spec, recipe);
            assert!(problems.is_empty(), "the drawn recipe has problems: {problems:?}");
            run.keep_trace(false);
            // A slice of events at a time, watching memory.
            let (end, mut over, before) = (Time(spec.default_until), None, resident_bytes());
            while !run.reached(end) && run.events() <= cap && over.is_none() {
                let n = run.run_until(end, MEMORY_SLICE_EVENTS.min(cap + 1 - run.events().min(cap)));
                if resident_bytes().saturating_sub(before) > MEMORY_LIMIT_BYTES {
                    over = Some(run.now().0 / MICROS_PER_S);
                }
                if n == 0 {
                    break;
                }
            }
            (Outcome::of(run.as_ref()), run.unhandled(), !run.reached(Time(spec.default_until)), over)
        }))
    };
    let mut findings = Vec::new();
    let first = match play(&drawn.recipe) {
        Ok(x) => x,
        Err(e) => {
            findings.push(Finding::Panic(crate::panic_text(e.as_ref())));
            return Verdict { findings, link, faults, violated: false, broken: None };
        }
    };
    let (outcome, unhandled, cut, over) = first;
    if let Some(at_s) = over {
        findings.push(Finding::Memory { at_s });
        return Verdict { findings, link, faults, violated: false, broken: None };
    }
    if unhandled > 0 {
        findings.push(Finding::Unhandled(unhandled));
    }
    if cut && outcome.events > cap {
        findings.push(Finding::Exploded { events: outcome.events, baseline });
    }
    let query = drawn.recipe.to_query(spec);
    let back = faultline_core::Recipe::from_url_strict(&query, faultline_scenarios::find);
    match back.ok().map(|(r, _)| play(&r)) {
        Some(Ok((again, ..))) if again.trace_hash == outcome.trace_hash => {}
        _ => findings.push(Finding::Replay),
    }
    let bad = outcome.checks.iter().find(|c| !c.ok);
    if let (Some(c), false, true) = (bad, naive, drawn.inside) {
        findings.push(Finding::Violation {
            check: c.id,
            at_s: c.violated_at_s.unwrap_or_default(),
            why: c.why.clone().unwrap_or_default(),
        });
    }
    let broken = bad.map(|c| (c.id, c.why.clone().unwrap_or_default()));
    Verdict { findings, link, faults, violated: bad.is_some(), broken }
}
