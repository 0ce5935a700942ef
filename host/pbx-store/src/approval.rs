//! Approvals of costly destinations: a tenant asks to call a destination class
//! (e.g. "international") or an E.164 prefix (a country code is a prefix), and
//! the provider grants or denies it.
//!
//! The same concept as `pbx-core`'s `decision/approval.rs` at another layer: this
//! one stores approval requests and grants, that one applies them to calls.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use crate::{Error, Result, Store, TenantId};

/// What an approval is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "target", rename_all = "lowercase")]
pub enum ApprovalTarget {
    /// A destination class name such as "international" or "premium-rate".
    Class(String),
    /// E.164 digits without `+`, e.g. "44" (a country) or "4420" (London).
    Prefix(String),
}

impl ApprovalTarget {
    fn kind(&self) -> &'static str {
        match self {
            ApprovalTarget::Class(_) => "class",
            ApprovalTarget::Prefix(_) => "prefix",
        }
    }

    fn value(&self) -> &str {
        match self {
            ApprovalTarget::Class(v) | ApprovalTarget::Prefix(v) => v,
        }
    }

    /// Checks and normalises: class names are 1-32 of `[a-z-]`, prefixes 1-15
    /// digits (a leading `+` is dropped).
    fn normalized(&self) -> Result<ApprovalTarget> {
        match self {
            ApprovalTarget::Class(c) => {
                let ok = !c.is_empty()
                    && c.len() <= 32
                    && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                if ok {
                    Ok(self.clone())
                } else {
                    Err(Error::Invalid(format!("destination class {c:?}")))
                }
            }
            ApprovalTarget::Prefix(p) => {
                let digits = p.strip_prefix('+').unwrap_or(p);
                let ok = !digits.is_empty()
                    && digits.len() <= 15
                    && digits.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(ApprovalTarget::Prefix(digits.to_owned()))
                } else {
                    Err(Error::Invalid(format!("number prefix {p:?}")))
                }
            }
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Granted,
    Denied,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Granted => "granted",
            ApprovalStatus::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        match s {
            "pending" => Some(ApprovalStatus::Pending),
            "granted" => Some(ApprovalStatus::Granted),
            "denied" => Some(ApprovalStatus::Denied),
            _ => None,
        }
    }
}

/// A stored approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub id: i64,
    pub tenant: TenantId,
    #[serde(flatten)]
    pub target: ApprovalTarget,
    pub status: ApprovalStatus,
    /// A number that triggered the request, for the reviewer.
    pub sample_number: Option<String>,
    pub requested_ms: i64,
    pub decided_ms: Option<i64>,
    pub decided_by: Option<String>,
}

/// The columns every query reads, as a literal for `concat!`.
macro_rules! approval_columns {
    () => {
        "id, tenant_id, kind, target, status, sample_number, requested_ms, \
                       decided_ms, decided_by"
    };
}

impl Store {
    /// Asks for `target`. Idempotent: while a request for the same target is
    /// pending, or once it is granted, that one is returned and nothing is
    /// written. After a denial a new request may be made.
    pub async fn request_approval(
        &self,
        tenant: TenantId,
        target: &ApprovalTarget,
        sample_number: Option<&str>,
        now_ms: i64,
    ) -> Result<Approval> {
        let target = target.normalized()?;
        let sample = sample_number.map(|s| s.chars().take(32).collect::<String>());
        let mut tx = self.write_tx().await?;
        let existing = sqlx::query(concat!(
            "SELECT ",
            approval_columns!(),
            " FROM approvals WHERE tenant_id = $1 AND kind = $2 AND target = $3 \
             AND status IN ('pending', 'granted') ORDER BY id DESC LIMIT 1"
        ))
        .bind(tenant.0)
        .bind(target.kind())
        .bind(target.value())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return from_row(&row);
        }
        let row = sqlx::query(concat!(
            "INSERT INTO approvals (tenant_id, kind, target, status, sample_number, requested_ms) \
             VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING ",
            approval_columns!()
        ))
        .bind(tenant.0)
        .bind(target.kind())
        .bind(target.value())
        .bind(sample)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        let approval = from_row(&row)?;
        tx.commit().await?;
        Ok(approval)
    }

    /// The tenant's approvals, newest first.
    pub async fn list_approvals(&self, tenant: TenantId) -> Result<Vec<Approval>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            approval_columns!(),
            " FROM approvals WHERE tenant_id = $1 ORDER BY id DESC"
        ))
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Every pending request of every tenant, oldest first (the provider's queue).
    pub async fn list_pending_approvals(&self) -> Result<Vec<Approval>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            approval_columns!(),
            " FROM approvals WHERE status = 'pending' ORDER BY requested_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Grants the tenant's pending request `id`.
    pub async fn grant_approval(
        &self,
        tenant: TenantId,
        id: i64,
        decided_by: &str,
        now_ms: i64,
    ) -> Result<Approval> {
        self.decide(tenant, id, ApprovalStatus::Granted, decided_by, now_ms)
            .await
    }

    /// Denies the tenant's pending request `id`.
    pub async fn deny_approval(
        &self,
        tenant: TenantId,
        id: i64,
        decided_by: &str,
        now_ms: i64,
    ) -> Result<Approval> {
        self.decide(tenant, id, ApprovalStatus::Denied, decided_by, now_ms)
            .await
    }

    async fn decide(
        &self,
        tenant: TenantId,
        id: i64,
        status: ApprovalStatus,
        decided_by: &str,
        now_ms: i64,
    ) -> Result<Approval> {
        let mut tx: Transaction<'static, Any> = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "UPDATE approvals SET status = $1, decided_ms = $2, decided_by = $3 \
             WHERE id = $4 AND tenant_id = $5 AND status = 'pending' RETURNING ",
            approval_columns!()
        ))
        .bind(status.as_str())
        .bind(now_ms)
        .bind(decided_by)
        .bind(id)
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row
            .ok_or_else(|| Error::NotFound(format!("pending approval {id} of tenant {tenant}")))?;
        let approval = from_row(&row)?;
        tx.commit().await?;
        Ok(approval)
    }

    /// Whether the tenant may call `e164` (digits, optional `+`) of destination
    /// class `class`: a granted approval names the class or a prefix of the
    /// number.
    pub async fn approved(&self, tenant: TenantId, class: &str, e164: &str) -> Result<bool> {
        let digits = e164.strip_prefix('+').unwrap_or(e164);
        let row = sqlx::query(
            "SELECT 1 AS ok FROM approvals WHERE tenant_id = $1 AND status = 'granted' \
             AND ((kind = 'class' AND target = $2) \
               OR (kind = 'prefix' AND substr($3, 1, length(target)) = target)) \
             LIMIT 1",
        )
        .bind(tenant.0)
        .bind(class)
        .bind(digits)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

fn from_row(row: &AnyRow) -> Result<Approval> {
    let id: i64 = row.try_get("id")?;
    let bad = |what: &str| Error::Invalid(format!("stored approval {id}: {what}"));
    let kind: String = row.try_get("kind")?;
    let value: String = row.try_get("target")?;
    let target = match kind.as_str() {
        "class" => ApprovalTarget::Class(value),
        "prefix" => ApprovalTarget::Prefix(value),
        _ => return Err(bad("kind")),
    };
    let status: String = row.try_get("status")?;
    Ok(Approval {
        id,
        tenant: TenantId(row.try_get("tenant_id")?),
        target,
        status: ApprovalStatus::parse(&status).ok_or_else(|| bad("status"))?,
        sample_number: row.try_get("sample_number")?,
        requested_ms: row.try_get("requested_ms")?,
        decided_ms: row.try_get("decided_ms")?,
        decided_by: row.try_get("decided_by")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(c: &str) -> ApprovalTarget {
        ApprovalTarget::Class(c.into())
    }

    fn prefix(p: &str) -> ApprovalTarget {
        ApprovalTarget::Prefix(p.into())
    }

    backend_test! {
        async fn request_is_idempotent_and_decisions_stick() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let first = store
                .request_approval(a, &class("international"), Some("+442079460018"), 1_000)
                .await
                .expect("request");
            assert_eq!(first.status, ApprovalStatus::Pending);
            let again = store
                .request_approval(a, &class("international"), Some("+33142685300"), 2_000)
                .await
                .expect("again");
            assert_eq!(again, first);
            assert_eq!(store.list_approvals(a).await.expect("list").len(), 1);
            assert_eq!(
                store.list_pending_approvals().await.expect("pending").len(),
                1
            );

            assert!(
                !store
                    .approved(a, "international", "442079460018")
                    .await
                    .expect("q")
            );
            let granted = store
                .grant_approval(a, first.id, "ops", 3_000)
                .await
                .expect("grant");
            assert_eq!(granted.status, ApprovalStatus::Granted);
            assert_eq!(granted.decided_ms, Some(3_000));
            assert_eq!(granted.decided_by.as_deref(), Some("ops"));
            assert!(
                store
                    .approved(a, "international", "+442079460018")
                    .await
                    .expect("q")
            );
            assert!(
                !store
                    .approved(a, "premium-rate", "19005550100")
                    .await
                    .expect("q")
            );
            // a granted request is returned as is; deciding twice is not possible
            let after = store
                .request_approval(a, &class("international"), None, 4_000)
                .await
                .expect("after");
            assert_eq!(after.id, first.id);
            assert!(matches!(
                store.deny_approval(a, first.id, "ops", 5_000).await,
                Err(Error::NotFound(_))
            ));
            assert!(store.list_pending_approvals().await.expect("p").is_empty());
        }
    }

    backend_test! {
        async fn prefixes_denials_and_tenant_isolation() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let uk = store
                .request_approval(a, &prefix("+44"), None, 1_000)
                .await
                .expect("uk");
            assert_eq!(uk.target, prefix("44"));
            // the other tenant cannot decide a's request
            assert!(matches!(
                store.grant_approval(b, uk.id, "x", 2_000).await,
                Err(Error::NotFound(_))
            ));
            store
                .grant_approval(a, uk.id, "ops", 2_000)
                .await
                .expect("grant");
            assert!(
                store
                    .approved(a, "international", "442079460018")
                    .await
                    .expect("q")
            );
            assert!(!store.approved(a, "international", "4").await.expect("q"));
            assert!(
                !store
                    .approved(a, "international", "33142685300")
                    .await
                    .expect("q")
            );
            assert!(
                !store
                    .approved(b, "international", "442079460018")
                    .await
                    .expect("q")
            );

            let cu = store
                .request_approval(a, &prefix("53"), Some("5371234567"), 3_000)
                .await
                .expect("cu");
            let denied = store
                .deny_approval(a, cu.id, "ops", 4_000)
                .await
                .expect("deny");
            assert_eq!(denied.status, ApprovalStatus::Denied);
            assert!(
                !store
                    .approved(a, "high-risk", "5371234567")
                    .await
                    .expect("q")
            );
            // after a denial a new request opens
            let retry = store
                .request_approval(a, &prefix("53"), None, 5_000)
                .await
                .expect("retry");
            assert_ne!(retry.id, cu.id);
            assert_eq!(retry.status, ApprovalStatus::Pending);
            let listed = store.list_approvals(a).await.expect("list");
            assert_eq!(listed.len(), 3);
            assert!(store.list_approvals(b).await.expect("list").is_empty());

            for bad in [
                class("Intl"),
                class(""),
                prefix("+"),
                prefix("44a"),
                prefix(&"1".repeat(16)),
            ] {
                assert!(matches!(
                    store.request_approval(a, &bad, None, 1).await,
                    Err(Error::Invalid(_))
                ));
            }
            assert!(
                store
                    .request_approval(TenantId(99), &class("international"), None, 1)
                    .await
                    .is_err()
            );
        }
    }
}
