//! The audit log as the API writes and checks it. The chain itself (how an
//! entry's MAC is computed, how the log is walked and checked) is the store's:
//! [`Store::append_audit`] and [`Store::verify_audit`].
//!
//! The same concept as `pbx-store`'s `audit.rs` at another layer: this one records
//! what API callers did, that one owns the hash chain.

use store::{AuditEntry, AuditRecord, Store};

pub use store::AuditReport;

use crate::Result;

/// Appends one entry to the chain.
pub(crate) async fn append(store: &Store, record: &AuditRecord) -> Result<AuditEntry> {
    Ok(store.append_audit(record).await?)
}

/// Walks the whole audit log, recomputing every MAC ([`Store::verify_audit`]).
pub async fn verify_audit(store: &Store) -> Result<AuditReport> {
    Ok(store.verify_audit().await?)
}
