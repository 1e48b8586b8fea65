//! What the player costs for a big run, natively: five simulated seconds (from 1 s) in
//! frames of at most 40 ms of simulation, as the page gives a run that cannot keep up
//! (how many times real time that plays); then the rest of the run in one go, keeping the
//! trace throughout (the checkpoints kept as the page keeps them, weighed with a real
//! clock), then jumps back and forth. `cargo run --release -p faultline-engine --example player_cost -- '<recipe query>'
//! [seconds to jump to…]`; by default every recipe of `faultline_scenarios::AT_SCALE`,
//! jumping to 5 s before the end, then the middle, then 2 s before the end. A profiling
//! aid, not a test.

use faultline_core::{Recipe, Time, MICROS_PER_S};
use faultline_engine::player::Player;
use std::sync::OnceLock;
use std::time::Instant;

fn wall_ms() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

fn measure(query: &str, jumps: &[u64]) {
    let (recipe, spec) = match Recipe::from_url_strict(query, faultline_scenarios::find) {
        Ok(r) => r,
        Err(e) => return println!("{query}: {e}"),
    };
    let (mut p, _) = Player::new(spec, &recipe);
    p.clock = wall_ms;
    p.advance(Time::from_secs(1), || true);
    let t = Instant::now();
    while !p.reached(Time::from_secs(6).min(p.until)) {
        let budget_end = wall_ms() + 40.0;
        p.advance(p.until, || wall_ms() < budget_end);
    }
    let pace = p.now().since(Time::from_secs(1)) as f64 / MICROS_PER_S as f64 / t.elapsed().as_secs_f64();
    print!("{}: in 40 ms frames {pace:.2}× real time; ", spec.id());
    let t = Instant::now();
    p.advance(p.until, || true);
    let (n, bytes) = p.checkpoint_use();
    print!("to the end ({}) {:.2?}, {n} checkpoints, {} MB", p.until, t.elapsed(), bytes >> 20);
    let end = p.until.micros() / MICROS_PER_S;
    let defaults = [end.saturating_sub(5), end / 2, end.saturating_sub(2)];
    for &s in if jumps.is_empty() { &defaults[..] } else { jumps } {
        let t = Instant::now();
        p.seek(Time::from_secs(s));
        print!("; to {s} s {:.2?}", t.elapsed());
    }
    let secs = |t: Time| t.micros() / MICROS_PER_S;
    println!("; checkpoints then at {:?} s", p.checkpoint_times().into_iter().map(secs).collect::<Vec<_>>());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jumps: Vec<u64> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    match args.first() {
        Some(q) => measure(q, &jumps),
        None => faultline_scenarios::AT_SCALE.iter().for_each(|(q, _)| measure(q, &[])),
    }
}
