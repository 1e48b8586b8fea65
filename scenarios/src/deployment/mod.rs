//! Deployment & rollout: replacing and reconfiguring a running fleet without failing its requests.

pub mod canary_analysis;
pub mod config_rollout;
pub mod feature_flags;
pub mod rolling_deploy;
