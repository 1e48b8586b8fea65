//! One benchmark model at a time, for profiling:
//! `cargo build --release -p faultline-core --example prof && perf record target/release/examples/prof 1k`
//! (models: `1`, `1k`, `100k` ping-pong pairs, or `mm1`; an optional second argument is the
//! number of events, say 1000000 under `valgrind --tool=callgrind`).

#[allow(dead_code)]
#[path = "../benches/models.rs"]
mod models;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(20_000_000);
    let t = std::time::Instant::now();
    let e = match which.as_str() {
        "1" => models::engine_pingpong(1, n),
        "1k" => models::engine_pingpong(1000, n),
        "100k" => models::engine_pingpong(100_000, n),
        _ => models::engine_mm1(n),
    };
    eprintln!("{:.2} M ev/s", e as f64 / t.elapsed().as_secs_f64() / 1e6);
}
