//! Caching: what a cache saves, and how it fails its origin.

pub mod cache_invalidation;
pub mod cache_stampede;
pub mod cache_write_policies;
pub mod distributed_cache;
