//! The keyed chain of the audit log: how an entry's MAC is computed, and
//! [`verify_audit`], which walks the whole log.
//!
//! Each entry stores `m1:` + hex HMAC-SHA256 over the previous entry's hash and
//! the canonical row ([`store::audit_mac`], computed by the store on append),
//! keyed with [`Store::audit_key`], which is derived from the data directory's
//! secret key file and never stored in the database. Someone
//! who can edit the database but not read that file cannot rewrite an entry and
//! recompute the chain. Entries written before the chain was keyed (plain
//! SHA-256, no prefix) are accepted only up to the entry the store recorded,
//! under the same key, when it first opened the log with keying on.

use serde::Serialize;
use store::{AUDIT_KEYED, AuditEntry, AuditRecord, Store, audit_legacy_hash, audit_mac};

use crate::Result;

/// Appends one entry to the chain.
pub(crate) async fn append(store: &Store, record: &AuditRecord) -> Result<AuditEntry> {
    Ok(store.append_audit(record).await?)
}

/// What [`verify_audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Entries read.
    pub entries: u64,
    /// Entries at the start of the log written before the chain was keyed.
    pub unkeyed: u64,
    /// Every break found, in log order; empty when the chain is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the whole audit log, recomputing every MAC with the data directory's
/// key. Detects an edited entry (its MAC no longer matches, even when the
/// editor recomputed plain hashes), a deleted one (a gap in the ids and a
/// broken link), an unkeyed entry after a keyed one, and entries removed from
/// the end (the head row disagrees).
pub async fn verify_audit(store: &Store) -> Result<AuditReport> {
    let mut report = AuditReport::default();
    let key = store.audit_key();
    let unkeyed_until = match store.audit_unkeyed_until().await? {
        Some(n) => n,
        None => {
            report
                .problems
                .push("the record of when the chain became keyed is missing or was changed".into());
            0
        }
    };
    const PAGE: u32 = 1000;
    let mut expected_id = 1;
    let mut prev_hash = String::new();
    loop {
        let page = store.audit_chain(expected_id - 1, PAGE).await?;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for e in &page {
            report.entries += 1;
            if e.id != expected_id {
                report
                    .problems
                    .push(format!("entries {expected_id}..{} are missing", e.id - 1));
            }
            if e.prev_hash != prev_hash {
                report.problems.push(format!(
                    "entry {} does not link to the entry before it",
                    e.id
                ));
            }
            let intact = if e.hash.starts_with(AUDIT_KEYED) {
                audit_mac(&key, e.id, &e.prev_hash, &e.record) == e.hash
            } else if e.id > unkeyed_until {
                report.problems.push(format!(
                    "entry {} is not keyed but was written after the chain was",
                    e.id
                ));
                true
            } else {
                report.unkeyed += 1;
                audit_legacy_hash(e.id, &e.prev_hash, &e.record) == e.hash
            };
            if !intact {
                report
                    .problems
                    .push(format!("entry {} was changed after it was written", e.id));
            }
            prev_hash = e.hash.clone();
            expected_id = e.id + 1;
        }
        if page.len() < PAGE as usize || last < expected_id - 1 {
            break;
        }
    }
    let head = store.audit_head().await?;
    if head.last_id != expected_id - 1 {
        report.problems.push(format!(
            "the log ends at entry {} but entry {} was written",
            expected_id - 1,
            head.last_id
        ));
    } else if head.hash != prev_hash {
        report
            .problems
            .push("the newest entry does not match the recorded head".into());
    }
    Ok(report)
}
