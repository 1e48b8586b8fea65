//! Coordination: who leads, who owns a key, who may write.

pub mod consistent_hashing;
pub mod distributed_lock;
pub mod leader_election;
