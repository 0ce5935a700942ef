//! Stored alerts: per tenant, or provider-wide with no tenant.
//!
//! The same concept as `pbx-model`'s `alert.rs` at another layer: that one defines
//! an alert, this one stores it.

use crate::sql::QueryBuilder;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::{Alert, Error, Result, Severity, Store, TenantId};

/// Most alerts one listing returns.
pub const MAX_ALERTS: u32 = 1_000;

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertRecord {
    pub id: i64,
    #[serde(flatten)]
    pub alert: Alert,
    pub acknowledged: bool,
}

/// The header of [`write_alert_csv`]'s rows.
pub const ALERT_CSV_HEADER: &str = "id,at_ms,severity,event,message,acknowledged\n";

/// One alert as a CSV row (fields quoted and defused like the call records').
pub fn write_alert_csv(out: &mut String, a: &AlertRecord) {
    out.push_str(&format!(
        "{},{},{},",
        a.id,
        a.alert.at_ms,
        a.alert.severity.as_str()
    ));
    crate::cdr_export::csv_field(out, &a.alert.event);
    out.push(',');
    crate::cdr_export::csv_field(out, &a.alert.message);
    out.push_str(if a.acknowledged {
        ",true\n"
    } else {
        ",false\n"
    });
}

impl Store {
    /// Stores an alert and returns its id.
    pub async fn insert_alert(&self, alert: &Alert) -> Result<i64> {
        if alert.event.is_empty() || alert.event.len() > 64 {
            return Err(Error::Invalid("alert event name".into()));
        }
        let row = sqlx::query(
            "INSERT INTO alerts (tenant_id, severity, event, message, created_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(alert.tenant.map(|t| t.0))
        .bind(alert.severity.as_str())
        .bind(&alert.event)
        .bind(&alert.message)
        .bind(alert.at_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// The tenant's alerts, newest first (at most `limit`, capped at
    /// [`MAX_ALERTS`]).
    pub async fn list_alerts(&self, tenant: TenantId, limit: u32) -> Result<Vec<AlertRecord>> {
        self.alerts(Some(tenant), limit).await
    }

    /// Every alert, provider-wide ones included, newest first.
    pub async fn list_all_alerts(&self, limit: u32) -> Result<Vec<AlertRecord>> {
        self.alerts(None, limit).await
    }

    async fn alerts(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AlertRecord>> {
        let mut q = QueryBuilder::new(
            self.backend,
            "SELECT id, tenant_id, severity, event, message, created_ms, acknowledged \
             FROM alerts",
        );
        if let Some(t) = tenant {
            q.push(" WHERE tenant_id = ").push_bind(t.0);
        }
        q.push(" ORDER BY created_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit.min(MAX_ALERTS)));
        let rows = q.build()?.fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Alerts with an id above `after_id`, oldest first, at most `limit`
    /// (capped at [`MAX_ALERTS`]): every alert once, for forwarding.
    pub async fn alerts_after(&self, after_id: i64, limit: u32) -> Result<Vec<AlertRecord>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, severity, event, message, created_ms, acknowledged \
             FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit.min(MAX_ALERTS)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The id of the newest alert stored (0 when there is none).
    pub async fn last_alert_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM alerts")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// One tenant's alerts with id above `after_id` and time in
    /// `[since_ms, until_ms)`, oldest first, at most `limit` (capped at
    /// [`MAX_ALERTS`]): a tenant's export, page by page.
    pub async fn tenant_alerts_page(
        &self,
        tenant: TenantId,
        (since_ms, until_ms): (i64, i64),
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, severity, event, message, created_ms, acknowledged \
             FROM alerts WHERE tenant_id = $1 AND id > $2 AND created_ms >= $3 AND created_ms < $4 \
             ORDER BY id LIMIT $5",
        )
        .bind(tenant.0)
        .bind(after_id)
        .bind(since_ms)
        .bind(until_ms)
        .bind(i64::from(limit.min(MAX_ALERTS)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Marks an alert as seen. With a tenant, only that tenant's alerts can be
    /// acknowledged; `None` (a provider) may acknowledge any. `false` when no
    /// such alert is visible.
    pub async fn acknowledge_alert(&self, tenant: Option<TenantId>, id: i64) -> Result<bool> {
        let mut q = QueryBuilder::new(
            self.backend,
            "UPDATE alerts SET acknowledged = 1 WHERE id = ",
        );
        q.push_bind(id);
        if let Some(t) = tenant {
            q.push(" AND tenant_id = ").push_bind(t.0);
        }
        let done = q.build()?.execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}

fn from_row(row: &AnyRow) -> Result<AlertRecord> {
    let tenant: Option<i64> = row.try_get("tenant_id")?;
    let acknowledged: i64 = row.try_get("acknowledged")?;
    Ok(AlertRecord {
        id: row.try_get("id")?,
        alert: Alert {
            tenant: tenant.map(TenantId),
            severity: stored_severity(row)?,
            event: row.try_get("event")?,
            message: row.try_get("message")?,
            at_ms: row.try_get("created_ms")?,
        },
        acknowledged: acknowledged != 0,
    })
}

/// The `severity` column: the names of [`Severity::as_str`]; any other text is
/// an error, never a default.
fn stored_severity(row: &AnyRow) -> Result<Severity> {
    let text: String = row.try_get("severity")?;
    Severity::parse(&text)
        .ok_or_else(|| Error::Invalid(format!("stored alert has severity {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(tenant: Option<TenantId>, event: &str, at_ms: i64) -> Alert {
        Alert {
            tenant,
            severity: Severity::Warning,
            event: event.into(),
            message: format!("{event} at {at_ms}"),
            at_ms,
        }
    }

    backend_test! {
        async fn per_tenant_and_provider_wide_alerts() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let a1 = store
                .insert_alert(&alert(Some(a), "fraud.burst", 1_000))
                .await
                .expect("a1");
            store
                .insert_alert(&alert(Some(a), "fraud.off-hours", 3_000))
                .await
                .expect("a2");
            let b1 = store
                .insert_alert(&alert(Some(b), "fraud.burst", 2_000))
                .await
                .expect("b1");
            store
                .insert_alert(&alert(None, "sip.ban", 4_000))
                .await
                .expect("p");

            let of_a = store.list_alerts(a, 100).await.expect("list");
            let events: Vec<&str> = of_a.iter().map(|r| r.alert.event.as_str()).collect();
            assert_eq!(events, ["fraud.off-hours", "fraud.burst"]);
            assert!(
                of_a.iter()
                    .all(|r| r.alert.tenant == Some(a) && !r.acknowledged)
            );

            let all = store.list_all_alerts(100).await.expect("all");
            let times: Vec<i64> = all.iter().map(|r| r.alert.at_ms).collect();
            assert_eq!(times, [4_000, 3_000, 2_000, 1_000]);
            assert_eq!(all[0].alert.tenant, None);
            assert_eq!(store.list_all_alerts(2).await.expect("all").len(), 2);

            // a tenant cannot acknowledge another tenant's alert
            assert!(!store.acknowledge_alert(Some(a), b1).await.expect("ack"));
            assert!(store.acknowledge_alert(Some(a), a1).await.expect("ack"));
            assert!(store.acknowledge_alert(None, b1).await.expect("ack"));
            let of_b = store.list_alerts(b, 10).await.expect("list");
            assert!(of_b[0].acknowledged);
            assert!(!store.acknowledge_alert(None, 999).await.expect("ack"));

            // the column holds only the model's names ([`stored_severity`] refuses
            // any other text instead of guessing)
            for name in Severity::ALL.map(Severity::as_str) {
                sqlx::query(
                    "INSERT INTO alerts (tenant_id, severity, event, message, created_ms) \
                     VALUES ($1, $2, 'x', 'm', 9000)",
                )
                .bind(b.0)
                .bind(name)
                .execute(&store.pool)
                .await
                .expect("a known severity");
            }
            let shown: Vec<Severity> = store
                .list_alerts(b, 3)
                .await
                .expect("list")
                .iter()
                .map(|r| r.alert.severity)
                .collect();
            assert_eq!(shown.len(), 3);
            assert!(Severity::ALL.iter().all(|s| shown.contains(s)));
            assert!(
                sqlx::query(
                    "INSERT INTO alerts (tenant_id, severity, event, message, created_ms) \
                     VALUES ($1, 'panic', 'x', 'm', 9000)",
                )
                .bind(b.0)
                .execute(&store.pool)
                .await
                .is_err()
            );
            assert!(
                store
                    .insert_alert(&alert(Some(TenantId(99)), "x", 1))
                    .await
                    .is_err()
            );
        }
    }
}
