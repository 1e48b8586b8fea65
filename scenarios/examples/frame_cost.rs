//! What the player spends besides simulating, for a big run: building one animation frame
//! (`Run::frame`), keeping a checkpoint (`Run::snapshot`), next to simulating one second,
//! with the trace kept as the player keeps it, one simulated second into the run or later.
//! `cargo run --release -p faultline-scenarios --example frame_cost -- [recipe query
//! [seconds]]`; by default every recipe of `faultline_scenarios::AT_SCALE`, at 1 s. A
//! profiling aid, not a test.

use faultline_core::*;

fn measure(query: &str, at: Time) {
    let (recipe, spec) = match Recipe::from_url_strict(query, faultline_scenarios::find) {
        Ok(r) => r,
        Err(e) => return println!("{query}: {e}"),
    };
    let (mut run, _) = open(spec, &recipe);
    run.keep_trace(true);
    run.run_until(at, u64::MAX);
    let events = run.events();
    let t = std::time::Instant::now();
    run.run_until(at.plus(100 * MICROS_PER_MS), u64::MAX);
    let sim = t.elapsed() * 10;
    let per_s = (run.events() - events) * 10;
    let t = std::time::Instant::now();
    for _ in 0..20 {
        std::hint::black_box(run.frame(2000));
    }
    let frame = t.elapsed() / 20;
    let t = std::time::Instant::now();
    std::hint::black_box(run.snapshot());
    let snapshot = t.elapsed();
    let f = run.frame(2000);
    println!(
        "{} at {at}: {} nodes, {} in flight, {per_s} events/simulated s: one simulated s {sim:.2?}, frame {frame:.2?}, snapshot {snapshot:.2?}",
        spec.id(),
        f.nodes.len(),
        f.in_flight
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let at = Time::from_secs(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1));
    match args.first() {
        Some(q) => measure(q, at),
        None => faultline_scenarios::AT_SCALE.iter().for_each(|(q, _)| measure(q, at)),
    }
}
