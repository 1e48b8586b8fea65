//! How long building one animation frame takes for a big crowd (cache-stampede with 5,000
//! clients), next to simulating one second of it: `cargo run --release -p
//! faultline-scenarios --example frame_cost`. A profiling aid, not a test.

use faultline_core::*;

fn main() {
    let spec = faultline_scenarios::find("cache-stampede").expect("registered");
    let mut recipe = Recipe::new("cache-stampede", spec.strategies[0].id, 1);
    recipe.params.insert("clients".into(), 5000);
    let (mut run, _) = open(spec, &recipe);
    run.run_until(Time::from_ms(3000), u64::MAX);
    println!("{} events, {} messages in flight", run.events(), run.frame(0).in_flight);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(run.frame(2000));
    }
    println!("frame(2000): {:?} each", t.elapsed() / 100);
    let t = std::time::Instant::now();
    run.run_until(Time::from_ms(4000), u64::MAX);
    println!("one more simulated second: {:?}", t.elapsed());
}
