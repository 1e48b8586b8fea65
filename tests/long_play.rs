//! Long play, the test command's slice: every scenario's default run played through the player's engine for two minutes of simulated time (four times its usual length) — the memory guard never trips, the checkpoints stay within their budget and spread over the run, the trace within its cap. `scripts/swarm --long` plays an hour and prints the figures.

use faultline_core::{Recipe, Time, MICROS_PER_S};
use faultline_engine::heap;
use faultline_engine::player::Player;
use faultline_scenarios::ALL;

const PLAYED_S: u64 = 120;
/// How often the test looks, in simulated seconds.
const LOOK_EVERY_S: u64 = 10;

#[test]
fn every_scenario_plays_two_minutes_within_its_memory_checkpoint_and_trace_budgets() {
    for spec in ALL {
        let recipe = Recipe::new(spec.id(), spec.strategies[0].id, 1);
        let (mut p, problems) = Player::new(spec, &recipe);
        assert!(problems.is_empty(), "{}: {problems:?}", spec.id());
        p.until = Time(PLAYED_S * MICROS_PER_S);
        let before = heap::live_bytes();
        while !p.at_end() {
            p.advance(p.now().plus(LOOK_EVERY_S * MICROS_PER_S), || true);
            let at = p.now();
            assert!(!p.out_of_memory, "{}: the memory guard stopped the run at {at}", spec.id());
            let (_, bytes) = p.checkpoint_use();
            assert!(bytes <= p.checkpoint_budget, "{}: checkpoints hold {bytes} bytes at {at}", spec.id());
            let (kept, cap) = (p.run.trace().entries().len(), p.run.trace().cap());
            assert!(kept <= cap, "{}: the trace holds {kept} entries at {at}, over its cap {cap}", spec.id());
        }
        // Without a clock every checkpoint is free, so one is kept each simulated second
        // until the budget thins them, evenly: no stretch is more than a few times another.
        let mut times = p.checkpoint_times();
        times.push(p.now());
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1].since(w[0])).collect();
        let even = PLAYED_S * MICROS_PER_S / gaps.len() as u64;
        let widest = gaps.iter().copied().max().unwrap_or(0);
        assert!(
            widest <= 3 * even + MICROS_PER_S,
            "{}: {} checkpoints, the widest stretch {widest} µs against {even} µs if even: {times:?}",
            spec.id(),
            gaps.len()
        );
        // What the run holds beyond its checkpoints is its own state: well under the guard.
        let (_, bytes) = p.checkpoint_use();
        let grown = heap::live_bytes().saturating_sub(before);
        assert!(grown <= bytes + (256 << 20), "{}: the heap grew {grown} bytes ({bytes} in checkpoints)", spec.id());
    }
}
