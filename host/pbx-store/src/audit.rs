//! The append-only audit log, chained with an HMAC. Each entry stores `m1:` +
//! hex HMAC-SHA256 over the previous entry's hash and the canonical row, keyed
//! with [`Store::audit_key`] (derived from the data directory's secret key
//! file, never stored in the database). The store computes it on every
//! append, so no writer can chain entries any other way.
//!
//! The same concept as `pbx-api`'s `audit.rs` at another layer: this one owns the
//! hash chain (appended and verified only here), that one records what API callers
//! did.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::{Result, Store, TenantId};

/// One thing that happened, as the caller records it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub at_ms: i64,
    /// Who did it: a username, a token id, or "cli".
    pub actor: String,
    /// The actor's role, or "anonymous" for failed logins.
    pub role: String,
    /// The tenant the action concerned, if any.
    pub tenant: Option<TenantId>,
    /// The source address, or "local" for the CLI.
    pub source: String,
    /// A stable action name, e.g. "login.failure", "extension.create".
    pub action: String,
    /// Details as JSON text.
    pub detail: String,
}

/// A stored audit entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The previous entry's hash ("" for the first).
    pub prev_hash: String,
    pub hash: String,
}

/// The newest entry of the chain as the head row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// 0 when the log is empty.
    pub last_id: i64,
    pub hash: String,
}

macro_rules! columns {
    () => {
        "id, at_ms, actor, role, tenant_id, source, action, detail, prev_hash, hash"
    };
}

/// The header of [`write_audit_csv`]'s rows.
pub const AUDIT_CSV_HEADER: &str = "id,at_ms,actor,role,source,action,detail\n";

/// One audit entry as a CSV row (fields quoted and defused like the call
/// records').
pub fn write_audit_csv(out: &mut String, e: &AuditEntry) {
    out.push_str(&format!("{},{},", e.id, e.record.at_ms));
    for (i, field) in [
        &e.record.actor,
        &e.record.role,
        &e.record.source,
        &e.record.action,
        &e.record.detail,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        crate::cdr_export::csv_field(out, field);
    }
    out.push('\n');
}

impl Store {
    /// Appends `record` as the next entry, chained with [`audit_mac`] inside
    /// the write transaction so the chain never forks.
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        let key = *self.secrets.audit_key();
        let chain = move |id: i64, prev: &str, r: &AuditRecord| audit_mac(&key, id, prev, r);
        let mut tx = self.write_tx().await?;
        let head = sqlx::query("SELECT last_id, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let last_id: i64 = head.try_get("last_id")?;
        let prev_hash: String = head.try_get("hash")?;
        let id = last_id + 1;
        let hash = chain(id, &prev_hash, record);
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, role, tenant_id, source, action, detail, \
             prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(record.at_ms)
        .bind(&record.actor)
        .bind(&record.role)
        .bind(record.tenant.map(|t| t.0))
        .bind(&record.source)
        .bind(&record.action)
        .bind(&record.detail)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET last_id = $1, hash = $2 WHERE id = 1")
            .bind(id)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            id,
            record: record.clone(),
            prev_hash,
            hash,
        })
    }

    /// Entries newest first, before `before_id` when given, at most `limit`
    /// (capped at 1000). `Some(tenant)` lists only that tenant's entries; `None`
    /// lists every entry (provider admins).
    pub async fn list_audit(
        &self,
        tenant: Option<TenantId>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(1000));
        let before = before_id.unwrap_or(i64::MAX);
        let rows = match tenant {
            Some(t) => {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM audit_log WHERE tenant_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(t.0)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(entry_row).collect()
    }

    /// One tenant's entries with id above `after_id` and time in
    /// `[since_ms, until_ms)`, oldest first, at most `limit`: a tenant's
    /// export, page by page.
    pub async fn tenant_audit_page(
        &self,
        tenant: TenantId,
        (since_ms, until_ms): (i64, i64),
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE tenant_id = $1 AND id > $2 AND at_ms >= $3 AND at_ms < $4 \
             ORDER BY id LIMIT $5"
        ))
        .bind(tenant.0)
        .bind(after_id)
        .bind(since_ms)
        .bind(until_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_row).collect()
    }

    /// Entries in chain order with id greater than `after_id`, at most `limit`:
    /// the whole log, page by page, for verification.
    pub async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_row).collect()
    }

    /// The head row: the id and hash of the newest entry ever appended.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        let row = sqlx::query("SELECT last_id, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(AuditHead {
            last_id: row.try_get("last_id")?,
            hash: row.try_get("hash")?,
        })
    }
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditReport {
    /// Entries read.
    pub entries: u64,
    /// Entries at the start of the log written before the chain was keyed.
    pub unkeyed: u64,
    /// Purge checkpoints read (each verified).
    pub checkpoints: u64,
    /// The last entry purged by retention (0 when none was): the log starts
    /// after it, linked to the newest checkpoint.
    pub purged_through: i64,
    /// Every break found, in log order; empty when the chain is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Walks the whole audit log, recomputing every MAC with the data directory's
    /// key. Detects an edited entry (its MAC no longer matches, even when the
    /// editor recomputed plain hashes), a deleted one (a gap in the ids and a
    /// broken link), an unkeyed entry after a keyed one, and entries removed from
    /// the end (the head row disagrees).
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        let key = self.audit_key();
        let unkeyed_until = match self.audit_unkeyed_until().await? {
            Some(n) => n,
            None => {
                report.problems.push(
                    "the record of when the chain became keyed is missing or was changed".into(),
                );
                0
            }
        };
        const PAGE: u32 = 1000;
        let mut expected_id = 1;
        let mut prev_hash = String::new();
        let mut prev_mac = String::new();
        for (n, c) in self.audit_checkpoints().await?.iter().enumerate() {
            report.checkpoints += 1;
            if c.id != n as i64 + 1 {
                report
                    .problems
                    .push(format!("purge checkpoint {} is missing", n + 1));
            }
            if !subtle_eq(
                checkpoint_mac(&key, c, &prev_mac).as_bytes(),
                c.mac.as_bytes(),
            ) {
                report.problems.push(format!(
                    "purge checkpoint {} was changed or not made with this key",
                    c.id
                ));
            }
            if c.through_id < expected_id {
                report.problems.push(format!(
                    "purge checkpoint {} goes back to entry {}",
                    c.id, c.through_id
                ));
            }
            expected_id = c.through_id + 1;
            prev_hash = c.hash.clone();
            prev_mac = c.mac.clone();
            report.purged_through = c.through_id;
        }
        loop {
            let page = self.audit_chain(expected_id - 1, PAGE).await?;
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
        let head = self.audit_head().await?;
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
}

/// Marks a keyed entry's hash.
pub const AUDIT_KEYED: &str = "m1:";

/// The canonical row an entry's hash covers: the JSON array
/// `[id, at_ms, actor, role, tenant, source, action, detail]`.
fn canonical(id: i64, r: &AuditRecord) -> String {
    serde_json::json!([
        id,
        r.at_ms,
        r.actor,
        r.role,
        r.tenant.map(|t| t.0),
        r.source,
        r.action,
        r.detail
    ])
    .to_string()
}

/// `m1:` + `hex(hmac_sha256(key, prev_hash || canonical row))`: the hash of a
/// keyed entry.
pub fn audit_mac(key: &[u8; 32], id: i64, prev_hash: &str, r: &AuditRecord) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(prev_hash.as_bytes());
    mac.update(canonical(id, r).as_bytes());
    format!("{AUDIT_KEYED}{}", hex::encode(mac.finalize().into_bytes()))
}

/// `hex(sha256(prev_hash || canonical row))`: the unkeyed hash of entries
/// written before the chain was keyed.
pub fn audit_legacy_hash(id: i64, prev_hash: &str, r: &AuditRecord) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical(id, r).as_bytes());
    hex::encode(h.finalize())
}

/// `N:hex(hmac_sha256(key, "audit chain keyed after entry N"))`.
fn keying_mark(key: &[u8; 32], after: i64) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(format!("audit chain keyed after entry {after}").as_bytes());
    format!("{after}:{}", hex::encode(mac.finalize().into_bytes()))
}

impl Store {
    /// Records once, MACed with [`Store::audit_key`], how many entries the log
    /// held when its chain became keyed (run at open).
    pub(crate) async fn mark_audit_keying(&self) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT last_id, keyed_after FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mark: Option<String> = row.try_get("keyed_after")?;
        if mark.is_none() {
            let last_id: i64 = row.try_get("last_id")?;
            sqlx::query("UPDATE audit_head SET keyed_after = $1 WHERE id = 1")
                .bind(keying_mark(self.secrets.audit_key(), last_id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many entries at the start of the log were written before its chain
    /// was keyed (they carry plain SHA-256 hashes). `None` when that record is
    /// missing or was not made with this data directory's key: then no entry
    /// may be unkeyed, and the caller reports the record as tampered with.
    pub async fn audit_unkeyed_until(&self) -> Result<Option<i64>> {
        let mark: Option<String> =
            sqlx::query_scalar("SELECT keyed_after FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        let Some(mark) = mark else {
            return Ok(None);
        };
        let Some(after) = mark
            .split_once(':')
            .and_then(|(n, _)| n.parse::<i64>().ok())
        else {
            return Ok(None);
        };
        let expected = keying_mark(self.secrets.audit_key(), after);
        let same: bool = subtle_eq(expected.as_bytes(), mark.as_bytes());
        Ok(same.then_some(after))
    }
}

/// A point up to which the audit log was verified and then purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheckpoint {
    /// 1, 2, 3, ... without gaps.
    pub id: i64,
    /// Entries up to this one were purged.
    pub through_id: i64,
    /// The hash of entry `through_id`, which the first remaining entry links to.
    pub hash: String,
    /// Entries this purge deleted.
    pub entries: i64,
    pub at_ms: i64,
    /// `hex(hmac_sha256(audit key, previous checkpoint's mac || fields))`.
    pub mac: String,
}

/// The MAC of checkpoint `c`, chained to the previous checkpoint's `prev_mac`
/// ("" for the first).
fn checkpoint_mac(key: &[u8; 32], c: &AuditCheckpoint, prev_mac: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(b"audit checkpoint\0");
    mac.update(prev_mac.as_bytes());
    mac.update(
        serde_json::json!([c.id, c.through_id, c.hash, c.entries, c.at_ms])
            .to_string()
            .as_bytes(),
    );
    hex::encode(mac.finalize().into_bytes())
}

impl Store {
    /// The purge checkpoints, oldest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query(
            "SELECT id, through_id, hash, entries, at_ms, mac FROM audit_checkpoints ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditCheckpoint {
                    id: r.try_get("id")?,
                    through_id: r.try_get("through_id")?,
                    hash: r.try_get("hash")?,
                    entries: r.try_get("entries")?,
                    at_ms: r.try_get("at_ms")?,
                    mac: r.try_get("mac")?,
                })
            })
            .collect()
    }

    /// Deletes the audit entries written before `before_ms` (from the oldest
    /// up to the first newer one), after verifying the whole log, and
    /// records a checkpoint that the remaining log links to, so
    /// [`Store::verify_audit`] keeps passing. A log that does not verify is
    /// not purged ([`Error::Invalid`] naming the breaks). `None` when nothing
    /// is old enough.
    pub async fn purge_audit(
        &self,
        before_ms: i64,
        now_ms: i64,
    ) -> Result<Option<AuditCheckpoint>> {
        let report = self.verify_audit().await?;
        if !report.is_intact() {
            return Err(crate::Error::Invalid(format!(
                "the audit log does not verify, so nothing of it is purged: {}",
                report.problems.join("; ")
            )));
        }
        let mut tx = self.write_tx().await?;
        let first: Option<i64> = sqlx::query_scalar("SELECT MIN(id) FROM audit_log")
            .fetch_one(&mut *tx)
            .await?;
        let kept: Option<i64> =
            sqlx::query_scalar("SELECT MIN(id) FROM audit_log WHERE at_ms >= $1")
                .bind(before_ms)
                .fetch_one(&mut *tx)
                .await?;
        let last: i64 = sqlx::query_scalar("SELECT last_id FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let Some(first) = first else {
            return Ok(None);
        };
        let through = kept.map_or(last, |k| k - 1);
        if through < first {
            return Ok(None);
        }
        let hash: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE id = $1")
            .bind(through)
            .fetch_one(&mut *tx)
            .await?;
        let previous =
            sqlx::query("SELECT id, mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (prev_id, prev_mac) = match previous {
            Some(row) => (
                row.try_get::<i64, _>("id")?,
                row.try_get::<String, _>("mac")?,
            ),
            None => (0, String::new()),
        };
        let mut checkpoint = AuditCheckpoint {
            id: prev_id + 1,
            through_id: through,
            hash,
            entries: through - first + 1,
            at_ms: now_ms,
            mac: String::new(),
        };
        checkpoint.mac = checkpoint_mac(self.secrets.audit_key(), &checkpoint, &prev_mac);
        sqlx::query(
            "INSERT INTO audit_checkpoints (id, through_id, hash, entries, at_ms, mac) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(checkpoint.id)
        .bind(checkpoint.through_id)
        .bind(&checkpoint.hash)
        .bind(checkpoint.entries)
        .bind(checkpoint.at_ms)
        .bind(&checkpoint.mac)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM audit_log WHERE id <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }
}

/// Constant-time equality of two byte strings.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn entry_row(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        record: AuditRecord {
            at_ms: row.try_get("at_ms")?,
            actor: row.try_get("actor")?,
            role: row.try_get("role")?,
            tenant: row.try_get::<Option<i64>, _>("tenant_id")?.map(TenantId),
            source: row.try_get("source")?,
            action: row.try_get("action")?,
            detail: row.try_get("detail")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn record(action: &str, tenant: Option<TenantId>) -> AuditRecord {
        AuditRecord {
            at_ms: 7,
            actor: "root".into(),
            role: "provider-admin".into(),
            tenant,
            source: "127.0.0.1".into(),
            action: action.into(),
            detail: "{}".into(),
        }
    }

    backend_test! {
        async fn entries_chain_and_filter_by_tenant() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.append_audit(&record("one", None)).await.expect("1");
            assert_eq!((a.id, a.prev_hash.as_str()), (1, ""));
            let b = store
                .append_audit(&record("two", Some(TenantId(4))))
                .await
                .expect("2");
            assert_eq!(b.prev_hash, a.hash);
            let key = store.audit_key();
            assert_eq!(b.hash, audit_mac(&key, 2, &a.hash, &b.record));
            assert_ne!(b.hash, audit_mac(&[0; 32], 2, &a.hash, &b.record));
            assert_eq!(
                store.audit_head().await.expect("head"),
                AuditHead {
                    last_id: 2,
                    hash: b.hash.clone()
                }
            );
            let all = store.list_audit(None, None, 10).await.expect("all");
            assert_eq!(all, vec![b.clone(), a.clone()]);
            let mine = store
                .list_audit(Some(TenantId(4)), None, 10)
                .await
                .expect("t");
            assert_eq!(mine, vec![b.clone()]);
            assert!(
                store
                    .list_audit(Some(TenantId(5)), None, 10)
                    .await
                    .expect("t")
                    .is_empty()
            );
            assert_eq!(
                store.list_audit(None, Some(2), 10).await.expect("p"),
                vec![a.clone()]
            );
            assert_eq!(store.audit_chain(1, 10).await.expect("chain"), vec![b]);
        }
    }

    async fn log_of(ages: &[i64]) -> Store {
        let store = crate::testdb::store().await.expect("open");
        for (i, at) in ages.iter().enumerate() {
            let mut r = record(&format!("a{i}"), Some(TenantId(1)));
            r.at_ms = *at;
            store.append_audit(&r).await.expect("append");
        }
        store
    }

    backend_test! {
        /// Purges cut the log at the first entry new enough, leave a checkpoint
        /// it links to, and the log keeps verifying across several purges.
        async fn purges_leave_checkpoints_the_log_verifies_through() {
            let store = log_of(&[10, 20, 30, 40, 50]).await;
            let first = store
                .purge_audit(25, 1_000)
                .await
                .expect("purge")
                .expect("some");
            assert_eq!((first.id, first.through_id, first.entries), (1, 2, 2));
            let chain = store.audit_chain(0, 10).await.expect("chain");
            assert_eq!(chain.first().map(|e| e.id), Some(3));
            assert_eq!(chain[0].prev_hash, first.hash);
            let report = store.verify_audit().await.expect("verify");
            assert!(report.is_intact(), "{:?}", report.problems);
            assert_eq!(
                (report.entries, report.checkpoints, report.purged_through),
                (3, 1, 2)
            );
            // Nothing old enough: no checkpoint.
            assert_eq!(store.purge_audit(25, 2_000).await.expect("again"), None);
            store
                .append_audit(&record("later", None))
                .await
                .expect("append");
            let second = store
                .purge_audit(1_000, 3_000)
                .await
                .expect("purge")
                .expect("some");
            assert_eq!((second.id, second.through_id), (2, 6));
            let report = store.verify_audit().await.expect("verify");
            assert!(report.is_intact(), "{:?}", report.problems);
            assert_eq!(report.entries, 0);
            // The chain goes on after an empty log.
            store
                .append_audit(&record("next", None))
                .await
                .expect("append");
            assert!(store.verify_audit().await.expect("verify").is_intact());
        }
    }

    backend_test! {
        /// An edited or deleted checkpoint, and a log that does not verify, are
        /// found; a broken log is not purged.
        async fn tampering_with_checkpoints_is_found_and_a_broken_log_is_not_purged() {
            let store = log_of(&[10, 20, 30, 40]).await;
            store.purge_audit(15, 100).await.expect("purge");
            store.purge_audit(35, 200).await.expect("purge");
            sqlx::query("UPDATE audit_checkpoints SET entries = 9 WHERE id = 1")
                .execute(&store.pool)
                .await
                .expect("edit");
            let report = store.verify_audit().await.expect("verify");
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.contains("checkpoint 1 was changed")),
                "{:?}",
                report.problems
            );

            let store = log_of(&[10, 20, 30, 40]).await;
            store.purge_audit(15, 100).await.expect("purge");
            store.purge_audit(35, 200).await.expect("purge");
            sqlx::query("DELETE FROM audit_checkpoints WHERE id = 2")
                .execute(&store.pool)
                .await
                .expect("delete");
            let report = store.verify_audit().await.expect("verify");
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.contains("entries 2..3 are missing")),
                "{:?}",
                report.problems
            );

            let store = log_of(&[10, 20, 30, 40]).await;
            sqlx::query("UPDATE audit_log SET detail = '{\"x\":1}' WHERE id = 1")
                .execute(&store.pool)
                .await
                .expect("edit");
            let err = store.purge_audit(35, 100).await.expect_err("refused");
            assert!(err.to_string().contains("does not verify"), "{err}");
            assert_eq!(store.audit_chain(0, 10).await.expect("chain").len(), 4);
        }
    }
}
