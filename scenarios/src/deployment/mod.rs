//! Deployment & rollout: replacing and reconfiguring a running fleet without failing its requests.

pub mod rolling_deploy;
