//! Messaging: brokers, queues and the delivery guarantees between producers and consumers.

pub mod delivery_semantics;
pub mod job_queue;
pub mod log_pipeline;
pub mod message_ordering;
pub mod outbox;
pub mod poison_message;
pub mod priority_queue;
pub mod webhook_delivery;
