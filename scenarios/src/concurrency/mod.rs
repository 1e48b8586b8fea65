//! Concurrency: threads over shared memory, where the interleaving is the seeded schedule.

pub mod bank_transfer;
pub mod bounded_queue;
pub mod counter;
pub mod read_mostly_map;
