//! Each extension's call forwarding and do-not-disturb.
//!
//! The same concept as `pbx-model`'s `forwarding.rs` at another layer: that
//! one defines and checks the settings, this one stores them (one row per
//! extension that set anything; the row goes with its extension).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Forwarding, Result, Store, TenantId};

impl Store {
    /// The forwarding of the tenant's extension `number` (the defaults when it
    /// set nothing); [`Error::NotFound`] when the tenant has no such extension.
    pub async fn forwarding(&self, tenant: TenantId, number: &str) -> Result<Forwarding> {
        let mut tx = self.read_tx().await?;
        ensure_extension(&mut tx, tenant, number).await?;
        let row = sqlx::query(
            "SELECT always_to, busy_to, no_answer_to, no_answer_secs, dnd \
             FROM extension_forwarding WHERE tenant_id = $1 AND number = $2",
        )
        .bind(tenant.0)
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref()
            .map_or_else(|| Ok(Forwarding::default()), from_row)
    }

    /// Replaces the forwarding of the tenant's extension `number`, checked
    /// first ([`Error::Invalid`]); [`Error::NotFound`] when the tenant has no
    /// such extension. Running servers pick it up on their next reload.
    pub async fn set_forwarding(
        &self,
        tenant: TenantId,
        number: &str,
        forwarding: &Forwarding,
    ) -> Result<()> {
        forwarding
            .validate(number)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        ensure_extension(&mut tx, tenant, number).await?;
        if forwarding.is_default() {
            sqlx::query("DELETE FROM extension_forwarding WHERE tenant_id = $1 AND number = $2")
                .bind(tenant.0)
                .bind(number)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO extension_forwarding \
                 (tenant_id, number, always_to, busy_to, no_answer_to, no_answer_secs, dnd) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id, number) DO UPDATE SET \
                 always_to = excluded.always_to, busy_to = excluded.busy_to, \
                 no_answer_to = excluded.no_answer_to, \
                 no_answer_secs = excluded.no_answer_secs, dnd = excluded.dnd",
            )
            .bind(tenant.0)
            .bind(number)
            .bind(forwarding.always.as_deref())
            .bind(forwarding.busy.as_deref())
            .bind(forwarding.no_answer.as_deref())
            .bind(i64::from(forwarding.no_answer_secs))
            .bind(i64::from(forwarding.dnd))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every extension's forwarding that differs from the defaults, of every
    /// tenant (the host loads them at start and on reload).
    pub async fn all_forwarding(&self) -> Result<Vec<(TenantId, String, Forwarding)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, number, always_to, busy_to, no_answer_to, no_answer_secs, dnd \
             FROM extension_forwarding ORDER BY tenant_id, number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TenantId(r.try_get("tenant_id")?),
                    r.try_get("number")?,
                    from_row(r)?,
                ))
            })
            .collect()
    }
}

/// [`Error::NotFound`] unless `tenant` has the extension `number`.
async fn ensure_extension(
    conn: &mut sqlx::AnyConnection,
    tenant: TenantId,
    number: &str,
) -> Result<()> {
    let found = sqlx::query("SELECT 1 FROM extensions WHERE tenant_id = $1 AND number = $2")
        .bind(tenant.0)
        .bind(number)
        .fetch_optional(conn)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::NotFound(format!(
            "extension {number:?} of tenant {tenant}"
        ))),
    }
}

fn from_row(r: &AnyRow) -> Result<Forwarding> {
    let secs: i64 = r.try_get("no_answer_secs")?;
    Ok(Forwarding {
        always: r.try_get("always_to")?,
        busy: r.try_get("busy_to")?,
        no_answer: r.try_get("no_answer_to")?,
        no_answer_secs: u32::try_from(secs)
            .map_err(|_| Error::Invalid(format!("stored no_answer_secs {secs}")))?,
        dnd: crate::rows::flag(r, "dnd")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn always(target: &str) -> Forwarding {
        Forwarding {
            always: Some(target.into()),
            ..Forwarding::default()
        }
    }

    backend_test! {
        async fn forwarding_is_stored_checked_and_kept_per_tenant_and_extension() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            for t in [a, b] {
                store.add_extension(t, "100", "pw-100-xx").await.unwrap();
            }
            store.add_extension(a, "101", "pw-101-xx").await.unwrap();
            assert_eq!(
                store.forwarding(a, "100").await.unwrap(),
                Forwarding::default()
            );
            let set = Forwarding {
                always: None,
                busy: Some("101".into()),
                no_answer: Some("+12125550100".into()),
                no_answer_secs: 15,
                dnd: true,
            };
            let g0 = store.generation().await.unwrap();
            store.set_forwarding(a, "100", &set).await.unwrap();
            assert_ne!(store.generation().await.unwrap(), g0, "servers reload");
            assert_eq!(store.forwarding(a, "100").await.unwrap(), set);
            // The same number in another tenant, and another extension, untouched.
            assert_eq!(
                store.forwarding(b, "100").await.unwrap(),
                Forwarding::default()
            );
            assert_eq!(
                store.forwarding(a, "101").await.unwrap(),
                Forwarding::default()
            );
            assert_eq!(
                store.all_forwarding().await.unwrap(),
                vec![(a, "100".to_string(), set.clone())]
            );

            // Refused settings change nothing.
            assert!(matches!(
                store.set_forwarding(a, "100", &always("sip:x@y")).await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.set_forwarding(a, "100", &always("100")).await,
                Err(Error::Invalid(_))
            ));
            assert_eq!(store.forwarding(a, "100").await.unwrap(), set);

            // Unknown extensions and tenants are not found, for reads and writes.
            for (t, n) in [(a, "999"), (TenantId(999), "100")] {
                assert!(matches!(
                    store.forwarding(t, n).await,
                    Err(Error::NotFound(_))
                ));
                assert!(matches!(
                    store.set_forwarding(t, n, &always("101")).await,
                    Err(Error::NotFound(_))
                ));
            }

            // Back to the defaults: no row is kept.
            store
                .set_forwarding(a, "100", &Forwarding::default())
                .await
                .unwrap();
            assert!(store.all_forwarding().await.unwrap().is_empty());

            // The settings go with their extension.
            store
                .set_forwarding(a, "101", &always("100"))
                .await
                .unwrap();
            store.remove_extension(a, "101").await.unwrap();
            assert!(store.all_forwarding().await.unwrap().is_empty());
            store.add_extension(a, "101", "pw-101-xx").await.unwrap();
            assert_eq!(
                store.forwarding(a, "101").await.unwrap(),
                Forwarding::default()
            );
        }
    }
}
