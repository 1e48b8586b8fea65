use faultline_core::*;
fn main() {
    let spec = faultline_scenarios::find("cache-stampede").unwrap();
    let mut r = Recipe::new("cache-stampede", &spec.strategies[0].id, 1);
    r.params.insert("clients".into(), 5000);
    let (mut run, _) = open(spec, &r);
    run.run_until(Time::from_ms(3000), u64::MAX);
    println!("events {} pending? in_flight {}", run.events(), run.frame(0).in_flight);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(run.frame(2000));
    }
    println!("frame(2000): {:?} each", t.elapsed() / 100);
    let t = std::time::Instant::now();
    run.run_until(Time::from_ms(4000), u64::MAX);
    println!("1 s of sim: {:?}", t.elapsed());
}
