//! Traffic control: admitting, shaping and shedding load.

pub mod backpressure;
pub mod distributed_rate_limiter;
