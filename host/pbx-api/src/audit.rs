//! The hash chain of the audit log: how an entry's hash is computed, and
//! [`verify_audit`], which walks the whole log.

use serde::Serialize;
use sha2::{Digest, Sha256};
use store::{AuditEntry, AuditRecord, Store};

use crate::Result;

/// `hex(sha256(prev_hash || canonical row))`, the canonical row being the JSON
/// array `[id, at_ms, actor, role, tenant, source, action, detail]`.
pub(crate) fn chain_hash(id: i64, prev_hash: &str, r: &AuditRecord) -> String {
    let canonical = serde_json::json!([
        id,
        r.at_ms,
        r.actor,
        r.role,
        r.tenant.map(|t| t.0),
        r.source,
        r.action,
        r.detail
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Appends one entry to the chain.
pub(crate) async fn append(store: &Store, record: &AuditRecord) -> Result<AuditEntry> {
    Ok(store.append_audit(record, chain_hash).await?)
}

/// What [`verify_audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Entries read.
    pub entries: u64,
    /// Every break found, in log order; empty when the chain is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the whole audit log, recomputing every hash. Detects an edited entry
/// (its hash no longer matches), a deleted one (a gap in the ids and a broken
/// link) and entries removed from the end (the head row disagrees).
pub async fn verify_audit(store: &Store) -> Result<AuditReport> {
    const PAGE: u32 = 1000;
    let mut report = AuditReport::default();
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
            if chain_hash(e.id, &e.prev_hash, &e.record) != e.hash {
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
