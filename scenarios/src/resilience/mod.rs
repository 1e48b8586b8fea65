//! Resilience: staying up while a dependency is down or slow.

pub mod bulkhead;
pub mod cascading_failure;
pub mod circuit_breaker;
pub mod connection_pool;
pub mod health_checks;
pub mod retry_storm;
pub mod timeouts_deadlines;
