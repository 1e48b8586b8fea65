//! Engine throughput, native: `cargo bench -p faultline-core` prints events/s for each model
//! on the engine and as a bare heap loop, and the ratio. Targets live in BENCHMARKS.md.

mod models;

use std::time::Instant;

fn rate(f: fn(u64) -> u64, events: u64) -> f64 {
    f(events / 20); // warm up
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        let n = f(events);
        best = best.max(n as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = if quick { 20_000 } else { 3_000_000 };
    println!("{:<24} {:>16} {:>16} {:>8}", "model", "engine ev/s", "bare heap ev/s", "ratio");
    for (name, engine, bare) in models::cases() {
        let (e, b) = (rate(engine, events), rate(bare, events));
        println!("{name:<24} {:>16.0} {:>16.0} {:>8.2}", e, b, b / e);
    }
}
