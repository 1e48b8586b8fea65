//! Observability: what a fleet tells its operators — alerts, aggregated metrics, sampled traces — and how it misleads them.

pub mod metrics_aggregation;
pub mod slo_alerting;
pub mod trace_sampling;
