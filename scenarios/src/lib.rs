//! Faultline's scenarios — one distributed-systems pattern per module — and the registry
//! that lists them. Adding a scenario touches this crate only: write the module, then add
//! its `SPEC` to `ALL`.
#![forbid(unsafe_code)]

pub mod backpressure;
pub mod cache_stampede;
pub mod circuit_breaker;
pub mod consistent_hashing;
pub mod distributed_rate_limiter;
pub mod idempotent_payments;
pub mod leader_election;
pub mod queueing;

use faultline_core::ScenarioSpec;

/// Every registered scenario, in gallery order.
pub static ALL: &[&ScenarioSpec] = &[
    &backpressure::SPEC,
    &distributed_rate_limiter::SPEC,
    &circuit_breaker::SPEC,
    &cache_stampede::SPEC,
    &leader_election::SPEC,
    &idempotent_payments::SPEC,
    &consistent_hashing::SPEC,
];

/// Looks a scenario up by its id.
pub fn find(id: &str) -> Option<&'static ScenarioSpec> {
    ALL.iter().copied().find(|s| s.id() == id)
}
