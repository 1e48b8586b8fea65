//! The scenario kit: mechanisms that recur across patterns, written once and tested once
//! against what the literature says. A scenario composes them and keeps only its lesson.

pub mod arrivals;
pub mod calls;
pub mod degraded;
pub mod lease;
pub mod queueing;
pub mod retry;
pub mod station;
pub mod store;
pub mod table;
pub mod waiters;
pub mod window;
