//! Each tenant's calendar (time zone and holidays) for its call handlers.
//!
//! The same concept as `pbx-model`'s `calendar.rs` at another layer: that one
//! defines and checks a calendar, this one stores it.

use sqlx::Row;

use crate::{Calendar, Error, Holiday, Result, Store, TenantId};

impl Store {
    /// The tenant's calendar (UTC and no holidays until set).
    pub async fn calendar(&self, tenant: TenantId) -> Result<Calendar> {
        let row = sqlx::query("SELECT time_zone FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        let holidays =
            sqlx::query("SELECT day, name FROM tenant_holidays WHERE tenant_id = $1 ORDER BY day")
                .bind(tenant.0)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| {
                    Ok(Holiday {
                        date: r.try_get("day")?,
                        name: r.try_get("name")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(Calendar {
            time_zone: row.try_get("time_zone")?,
            holidays,
        })
    }

    /// Replaces the tenant's calendar, checked first; running servers pick it
    /// up on their next reload.
    pub async fn set_calendar(&self, tenant: TenantId, calendar: &Calendar) -> Result<()> {
        calendar
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE tenants SET time_zone = $1 WHERE id = $2")
            .bind(&calendar.time_zone)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        sqlx::query("DELETE FROM tenant_holidays WHERE tenant_id = $1")
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        for h in &calendar.holidays {
            sqlx::query("INSERT INTO tenant_holidays (tenant_id, day, name) VALUES ($1, $2, $3)")
                .bind(tenant.0)
                .bind(&h.date)
                .bind(&h.name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    backend_test! {
        async fn a_calendar_is_stored_checked_and_kept_per_tenant() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            assert_eq!(store.calendar(a).await.unwrap(), Calendar::default());
            let paris = Calendar {
                time_zone: "Europe/Paris".into(),
                holidays: vec![Holiday {
                    date: "2026-12-25".into(),
                    name: "Noël".into(),
                }],
            };
            let g0 = store.generation().await.unwrap();
            store.set_calendar(a, &paris).await.unwrap();
            assert_ne!(store.generation().await.unwrap(), g0, "servers reload");
            assert_eq!(store.calendar(a).await.unwrap(), paris);
            assert_eq!(store.calendar(b).await.unwrap(), Calendar::default());
            let bad = Calendar {
                time_zone: "Nowhere/Land".into(),
                holidays: Vec::new(),
            };
            assert!(matches!(
                store.set_calendar(a, &bad).await,
                Err(Error::Invalid(_))
            ));
            assert_eq!(
                store.calendar(a).await.unwrap(),
                paris,
                "nothing half-written"
            );
            assert!(matches!(
                store.set_calendar(TenantId(999), &paris).await,
                Err(Error::NotFound(_))
            ));
        }
    }
}
