//! The scenarios at the seed documents' own scales (`faultline_scenarios::AT_SCALE`), run
//! natively as the command-line runner runs them (trace hash only): events per second and
//! how many times faster than real time. `cargo bench -p faultline-tests --bench scale`;
//! the same recipes run in the browser on `#/bench/engine`.

use faultline_core::{Time, MICROS_PER_S};
use std::time::Instant;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a slice then.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "{:<40} {:>10} {:>8} {:>10} {:>12} {:>12}",
        "scenario at scale", "events", "sim s", "wall s", "events/s", "× real time"
    );
    for (spec, recipe, end) in faultline_scenarios::at_scale() {
        let until = if quick { Time(MICROS_PER_S / 10) } else { end };
        let (mut run, _) = faultline_core::open(spec, &recipe);
        run.keep_trace(false);
        let start = Instant::now();
        while !run.reached(until) {
            run.run_until(until, 1_000_000);
        }
        let wall = start.elapsed().as_secs_f64();
        let sim = run.now().micros() as f64 / MICROS_PER_S as f64;
        println!(
            "{:<40} {:>10} {:>8.1} {:>10.3} {:>12.0} {:>12.2}",
            format!("{} ({})", spec.id(), recipe.strategy),
            run.events(),
            sim,
            wall,
            run.events() as f64 / wall,
            sim / wall
        );
    }
}
