//! Per-tenant call limits set by the provider, stored. The type and the
//! defaults it overrides are the model's (`pbx_model::limits`).
//!
//! The same concept as `pbx-model`'s `limits.rs` at another layer: that one defines
//! the limits and their defaults, this one stores a tenant's own.

use sqlx::Row;

use crate::{Result, Store, TenantId, TenantLimits};

impl Store {
    /// Replaces the tenant's limits (every column).
    pub async fn set_tenant_limits(&self, tenant: TenantId, limits: &TenantLimits) -> Result<()> {
        let mut tx = self.write_tx().await?;
        crate::tenant::ensure_tenant(&mut tx, tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_limits (tenant_id, max_concurrent, max_concurrent_extension, \
             max_calls_per_second, daily_cap_cents, media_storage_bytes, max_media_sessions, \
             recording_minutes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id) DO UPDATE SET max_concurrent = excluded.max_concurrent, \
             max_concurrent_extension = excluded.max_concurrent_extension, \
             max_calls_per_second = excluded.max_calls_per_second, \
             daily_cap_cents = excluded.daily_cap_cents, \
             media_storage_bytes = excluded.media_storage_bytes, \
             max_media_sessions = excluded.max_media_sessions, \
             recording_minutes = excluded.recording_minutes",
        )
        .bind(tenant.0)
        .bind(limits.max_concurrent.map(i64::from))
        .bind(limits.max_concurrent_extension.map(i64::from))
        .bind(limits.max_calls_per_second.map(i64::from))
        .bind(
            limits
                .daily_cap_cents
                .map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
        )
        .bind(
            limits
                .media_storage_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        )
        .bind(limits.max_media_sessions.map(i64::from))
        .bind(limits.recording_minutes.map(i64::from))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's limits (all `None` when none were set).
    pub async fn tenant_limits(&self, tenant: TenantId) -> Result<TenantLimits> {
        let row = sqlx::query(
            "SELECT tenant_id, max_concurrent, max_concurrent_extension, max_calls_per_second, \
             daily_cap_cents, media_storage_bytes, max_media_sessions, recording_minutes \
             FROM tenant_limits WHERE tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map_or(Ok(TenantLimits::default()), |r| {
            from_row(&r).map(|(_, l)| l)
        })
    }

    /// Every tenant that has limits of its own.
    pub async fn all_tenant_limits(&self) -> Result<Vec<(TenantId, TenantLimits)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, max_concurrent, max_concurrent_extension, max_calls_per_second, \
             daily_cap_cents, media_storage_bytes, max_media_sessions, recording_minutes \
             FROM tenant_limits ORDER BY tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<(TenantId, TenantLimits)> {
    let u32_col = |name: &str| -> Result<Option<u32>> {
        let v: Option<i64> = row.try_get(name)?;
        Ok(v.and_then(|v| u32::try_from(v).ok()))
    };
    let u64_col = |name: &str| -> Result<Option<u64>> {
        let v: Option<i64> = row.try_get(name)?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    };
    Ok((
        TenantId(row.try_get("tenant_id")?),
        TenantLimits {
            max_concurrent: u32_col("max_concurrent")?,
            max_concurrent_extension: u32_col("max_concurrent_extension")?,
            max_calls_per_second: u32_col("max_calls_per_second")?,
            daily_cap_cents: u64_col("daily_cap_cents")?,
            media_storage_bytes: u64_col("media_storage_bytes")?,
            max_media_sessions: u32_col("max_media_sessions")?,
            recording_minutes: u32_col("recording_minutes")?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_test! {
        async fn limits_round_trip_and_bump_the_generation() {
            let store = crate::testdb::store().await.unwrap();
            let t = store.add_tenant("acme", "acme.example").await.unwrap().id;
            assert_eq!(
                store.tenant_limits(t).await.unwrap(),
                TenantLimits::default()
            );
            let before = store.generation().await.unwrap();
            let limits = TenantLimits {
                max_concurrent: Some(50),
                max_concurrent_extension: None,
                max_calls_per_second: Some(5),
                daily_cap_cents: Some(2500),
                media_storage_bytes: Some(1 << 20),
                max_media_sessions: Some(3),
                recording_minutes: Some(30),
            };
            store.set_tenant_limits(t, &limits).await.unwrap();
            assert_eq!(store.tenant_limits(t).await.unwrap(), limits);
            assert!(store.generation().await.unwrap() > before);
            let again = TenantLimits {
                max_concurrent: Some(7),
                ..TenantLimits::default()
            };
            store.set_tenant_limits(t, &again).await.unwrap();
            assert_eq!(store.all_tenant_limits().await.unwrap(), vec![(t, again)]);
            assert!(
                store
                    .set_tenant_limits(TenantId(999), &again)
                    .await
                    .is_err()
            );
        }
    }
}
