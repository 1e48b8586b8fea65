//! Transactions and consistency: doing a thing once, and everyone agreeing it was done.

pub mod bulk_import;
pub mod event_sourcing;
pub mod idempotent_payments;
pub mod inventory_reservation;
pub mod replication_consistency;
pub mod request_dedup;
pub mod saga;
pub mod two_phase_commit;
