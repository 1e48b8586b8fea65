//! The engine benchmarks compiled to WASM and run in headless Chromium. They run only when
//! built with FAULTLINE_BENCH=1 (scripts/bench does that, in release mode); otherwise this
//! test returns at once so the ordinary test command stays quick.

// Compiled in faultline-core (at opt-level 3, like the scenarios), not here: this crate is
// built for size, and a generic kernel instantiated here would be too.
use faultline_core::bench_models as models;

use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

fn rate(f: fn(u64) -> u64, events: u64) -> f64 {
    f(events / 20);
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let t = now_ms();
        let n = f(events);
        best = best.max(n as f64 / ((now_ms() - t) / 1000.0).max(1e-9));
    }
    best
}

/// The size of this module's linear memory. It only ever grows, so growth across a run is
/// that run's high-water mark (to the 64 KiB page), allocator slack included.
fn memory_bytes() -> u32 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length())
        .unwrap_or(0)
}

#[wasm_bindgen_test]
fn engine_throughput_in_the_browser() {
    if option_env!("FAULTLINE_BENCH").is_none() {
        return;
    }
    // Memory first, while nothing has been allocated and freed that a run could reuse.
    let before = memory_bytes();
    models::engine_pingpong(100_000, 1_000_000);
    let grown = memory_bytes() - before;
    web_sys::console::log_1(&format!("WASMMEM|ping-pong, 100k pairs|{grown}|{}", grown / 100_000).into());
    for (name, engine, bare) in models::cases() {
        let (e, b) = (rate(engine, 1_000_000), rate(bare, 1_000_000));
        web_sys::console::log_1(&format!("WASMBENCH|{name}|{e:.0}|{b:.0}").into());
    }
}
