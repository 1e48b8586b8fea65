//! Traffic control: admitting, shaping and shedding load.

pub mod backpressure;
pub mod connection_storm;
pub mod distributed_rate_limiter;
pub mod load_balancing;
pub mod rate_limit_algorithms;
