//! Faultline's scenarios — one distributed-systems pattern per module — and the registry
//! that lists them. Adding a scenario: write the module, add it to `registry!` below, then
//! regenerate its web worker module (`FAULTLINE_BLESS=1 cargo test -p faultline-tests --test tidy`).
#![forbid(unsafe_code)]

// The kit every scenario is built from.
pub mod parts;
// The faults each scenario's fixed strategies promise to survive (the swarm's envelopes).
pub mod envelopes;

// The scenarios, a folder per catalog category.
pub mod caching;
pub mod concurrency;
pub mod consistency;
pub mod coordination;
pub mod data;
pub mod deployment;
pub mod messaging;
pub mod observability;
pub mod resilience;
pub mod traffic;

pub use envelopes::{envelope, ENVELOPES};

use faultline_core::{Recipe, ScenarioSpec, Time, MICROS_PER_S};

/// Lists the registered scenarios once, as `ALL` and as `MODULES` (each one's module path,
/// from which the web build names a worker module per scenario).
macro_rules! registry {
    ($($category:ident :: $module:ident),* $(,)?) => {
        /// Every registered scenario, in gallery order.
        pub static ALL: &[&ScenarioSpec] = &[$(&$category::$module::SPEC),*];
        /// Each registered scenario's module path in this crate (`traffic::backpressure`),
        /// in the order of `ALL`.
        pub static MODULES: &[&str] = &[$(concat!(stringify!($category), "::", stringify!($module))),*];
    };
}

registry! {
    traffic::backpressure,
    traffic::distributed_rate_limiter,
    resilience::circuit_breaker,
    caching::cache_stampede,
    coordination::leader_election,
    consistency::idempotent_payments,
    coordination::consistent_hashing,
    resilience::bulkhead,
    resilience::retry_storm,
    resilience::health_checks,
    resilience::timeouts_deadlines,
    messaging::job_queue,
    resilience::cascading_failure,
    traffic::rate_limit_algorithms,
    data::scatter_gather,
    messaging::poison_message,
    messaging::delivery_semantics,
    resilience::connection_pool,
    traffic::load_balancing,
    messaging::outbox,
    data::noisy_neighbor,
    data::token_revocation,
    consistency::inventory_reservation,
    consistency::replication_consistency,
    coordination::distributed_lock,
    coordination::id_generator,
    messaging::priority_queue,
    messaging::message_ordering,
    messaging::log_pipeline,
    caching::cache_invalidation,
    messaging::webhook_delivery,
    caching::cache_write_policies,
    caching::distributed_cache,
    traffic::connection_storm,
    consistency::saga,
    consistency::two_phase_commit,
    consistency::request_dedup,
    consistency::event_sourcing,
    consistency::bulk_import,
    coordination::hot_partition,
    coordination::crdt_sync,
    concurrency::counter,
    concurrency::bank_transfer,
    concurrency::read_mostly_map,
    concurrency::bounded_queue,
    data::pagination,
    deployment::rolling_deploy,
    deployment::canary_analysis,
    observability::metrics_aggregation,
    observability::slo_alerting,
    observability::trace_sampling,
    deployment::feature_flags,
    deployment::config_rollout,
    data::chunked_upload,
    data::url_shortener,
    data::feed_fanout,
    data::n_plus_one,
    data::sliding_window_analytics,
}

/// Looks a scenario up by its id.
pub fn find(id: &str) -> Option<&'static ScenarioSpec> {
    ALL.iter().copied().find(|s| s.id() == id)
}

/// Runs at the seed documents' own scales — thousands of clients, hundreds of thousands of
/// requests a second — for the benchmarks: a recipe (a share link's query) and how many
/// simulated seconds to run it. `cargo bench -p faultline-tests --bench scale` runs them
/// natively and `#/bench/engine` in the browser; both say how many times faster than real
/// time each runs (below 1, the player cannot keep up at 1× speed).
pub static AT_SCALE: &[(&str, u64)] = &[
    ("s=backpressure&strategy=adaptive&producers=50&arrival_rate=5000&workers=256&service_ms=50", 10),
    ("s=distributed-rate-limiter&strategy=gossip&users=200&abusive=200&normal_rps=1000&abusive_rps=5000&instances=32", 2),
    ("s=circuit-breaker&strategy=breaker&clients=100&rps=5000&pool=1000", 10),
    ("s=cache-stampede&strategy=stale-while-revalidate&clients=5000&client_rps=100&keys=10000", 3),
    ("s=idempotent-payments&strategy=key-unique&clients=500&pay_per_s=1000&instances=10", 3),
    ("s=consistent-hashing&strategy=ring-vnodes&nodes=15&keys=200000&vnodes=1000&rps=100000", 5),
    ("s=job-queue&strategy=backoff-dlq&jobs_per_s=1667&workers=200", 60),
    ("s=poison-message&strategy=retry-dlq&msgs_per_s=20000&process_us=20", 20),
    ("s=inventory-reservation&strategy=reservation-ttl&buyers=50000&stock=10000&instances=32", 10),
    ("s=distributed-lock&strategy=fencing&clients=100000&keys=10000&think_ms=10000", 10),
    ("s=priority-queue&strategy=weighted-fair&high_per_s=500&low_per_s=1167&workers=200&job_ms=100&campaign_jobs=20000", 10),
    ("s=message-ordering&strategy=sub-keys-sequence&orders_per_s=10000&customers=100000&partitions=32&sub_keys=32&hot_at_s=1", 10),
    ("s=connection-storm&strategy=admission&clients=500000&handshakes_per_s=5000&blip_at=30&blip_pct=20&campaign_users=200000&campaign_at=0&campaign_s=90", 90),
    ("s=log-pipeline&strategy=spooled&services=1000&records_per_s=116&cores=64&gzip=1&batch_records=10000&per_record_us=1", 3),
    ("s=webhook-delivery&strategy=failover&customers=10000&events_per_s=5000&workers=1024&window_ms=10000&notify_per_s=500&provider_rps=1000", 20),
    ("s=event-sourcing&strategy=projection-atomic&accounts=1000&history=2000000&cmd_per_s=1000&read_per_s=5000&replay_us=5&apply_us=100&batch=1000", 10),
    ("s=distributed-cache&strategy=ring-replicas-local&rps=500000&nodes=16&keys=100000&capacity_keys=12000&node_capacity_rps=100000&db_capacity_rps=60000", 2),
    ("s=feature-flags&strategy=sticky-streaming&regions=5&servers=100&users=100000&user_rpm=30", 10),
    ("s=trace-sampling&strategy=tail-based&services=20&rps=2000&collectors=8&budget=200", 10),
    ("s=metrics-aggregation&strategy=merged-histograms&hosts=50&rps=500&users=100000", 21),
    ("s=url-shortener&strategy=counter-base62&code_len=7&create_rps=116&redirect_rps=1157&creators=100000&hot_links=100000&cache_keys=10000&range_size=1000", 30),
    ("s=sliding-window-analytics&strategy=count-min&rate=500000&window_s=300", 5),
    ("s=n-plus-one&strategy=query-per-field&users=100&posts=6&comments=12&max_queries=100000", 10),
    ("s=token-revocation&strategy=pushed-filter&instances=200&users=100000&rps=20000&revocations_per_s=100&filter_bits=65536", 10),
];

/// `AT_SCALE` ready to run: each recipe (read strictly; a test checks that all of them read)
/// with its scenario and the time to run it to.
pub fn at_scale() -> Vec<(&'static ScenarioSpec, Recipe, Time)> {
    AT_SCALE
        .iter()
        .filter_map(|&(query, secs)| {
            let (recipe, spec) = Recipe::from_url_strict(query, find).ok()?;
            Some((spec, recipe, Time(secs * MICROS_PER_S)))
        })
        .collect()
}
