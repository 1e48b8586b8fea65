//! Faultline's simulation worker: the player engine that owns a run, and the glue that serves it to the page.
//!
//! The page (crate `web`) holds no simulation code. It sends `faultline_protocol::Command`s
//! and draws what comes back. `Engine` is the worker's logic, natively testable. `worker`
//! runs it inside a dedicated Web Worker. Each worker module is a `[[bin]]` naming the
//! scenarios it carries (`sim-all` carries every one).

mod engine;
pub mod heap;
pub mod player;
#[cfg(target_arch = "wasm32")]
pub mod worker;

pub use engine::*;

/// Every registered scenario, with the engine bench's runs: the `sim-all` module's catalog.
pub fn everything() -> Catalog {
    fn bench() -> Vec<BenchRun> {
        let defaults = faultline_scenarios::ALL.iter().map(|spec| {
            (spec.id().to_string(), *spec, spec.default_recipe(1), faultline_core::Time(spec.default_until))
        });
        let at_scale = faultline_scenarios::at_scale().into_iter().map(|(spec, recipe, until)| {
            (format!("{} at scale ({})", spec.id(), recipe.strategy), spec, recipe, until)
        });
        defaults.chain(at_scale).collect()
    }
    Catalog { find: faultline_scenarios::find, bench }
}

/// A worker module's entry: serves `catalog` in a browser's Web Worker. The modules are
/// built for the browser only; a native build of one says so and exits.
pub fn main(catalog: Catalog) {
    #[cfg(target_arch = "wasm32")]
    worker::serve(catalog);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = catalog;
        eprintln!("a Faultline worker module runs in a browser (trunk build); natively, use `faultline run`");
    }
}

/// One scenario's catalog: its module carries that scenario's code only (no engine bench).
#[macro_export]
macro_rules! only {
    ($spec:path) => {{
        fn find(id: &str) -> Option<&'static faultline_core::ScenarioSpec> {
            (id == $spec.id()).then_some(&$spec)
        }
        $crate::Catalog { find, bench: Vec::new }
    }};
}
