//! Coordination: who leads, who owns a key, who may write.

pub mod consistent_hashing;
pub mod crdt_sync;
pub mod distributed_lock;
pub mod hot_partition;
pub mod id_generator;
pub mod leader_election;
