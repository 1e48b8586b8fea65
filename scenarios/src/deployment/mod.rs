//! Deployment & rollout: patterns for changing a running system without an outage.

pub mod canary_analysis;
