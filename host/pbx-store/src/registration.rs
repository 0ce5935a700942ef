//! Registrar bindings, persisted so they survive a restart.

use std::net::SocketAddr;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Error, Registration, RegistrationChange, Result, Store, TenantId, TransportKind};

/// Upsert keyed by (tenant, extension, contact). The `WHERE EXISTS` guard skips
/// bindings of extensions removed meanwhile instead of failing the whole batch.
const UPSERT: &str = "INSERT INTO registrations \
    (tenant_id, extension, contact, source, transport, local_addr, call_id, cseq, \
     expires_at_ms, user_agent) \
    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
    WHERE EXISTS (SELECT 1 FROM extensions WHERE tenant_id = ? AND number = ?) \
    ON CONFLICT (tenant_id, extension, contact) DO UPDATE SET \
    source = excluded.source, transport = excluded.transport, \
    local_addr = excluded.local_addr, call_id = excluded.call_id, cseq = excluded.cseq, \
    expires_at_ms = excluded.expires_at_ms, user_agent = excluded.user_agent";

const REMOVE: &str =
    "DELETE FROM registrations WHERE tenant_id = ? AND extension = ? AND contact = ?";

impl Store {
    /// Applies a batch of binding changes in one transaction, in order.
    ///
    /// Upserts for an extension that no longer exists are skipped.
    pub async fn apply_registrations(&self, changes: &[RegistrationChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for change in changes {
            match change {
                RegistrationChange::Upsert(r) => {
                    sqlx::query(UPSERT)
                        .bind(r.tenant.0)
                        .bind(&r.extension)
                        .bind(&r.contact)
                        .bind(r.source.to_string())
                        .bind(r.transport.as_str())
                        .bind(r.local.to_string())
                        .bind(&r.call_id)
                        .bind(i64::from(r.cseq))
                        .bind(r.expires_at_ms)
                        .bind(r.user_agent.as_deref())
                        .bind(r.tenant.0)
                        .bind(&r.extension)
                        .execute(&mut *tx)
                        .await?;
                }
                RegistrationChange::Remove {
                    tenant,
                    extension,
                    contact,
                } => {
                    sqlx::query(REMOVE)
                        .bind(tenant.0)
                        .bind(extension)
                        .bind(contact)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the bindings that lapsed at or before `now_ms` and returns the rest,
    /// ordered by tenant, extension and contact.
    pub async fn load_registrations(&self, now_ms: i64) -> Result<Vec<Registration>> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM registrations WHERE expires_at_ms <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT tenant_id, extension, contact, source, transport, local_addr, call_id, \
             cseq, expires_at_ms, user_agent FROM registrations \
             ORDER BY tenant_id, extension, contact",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }
}

fn from_row(row: &SqliteRow) -> Result<Registration> {
    let tenant = TenantId(row.try_get("tenant_id")?);
    let bad =
        |what: &str| Error::Invalid(format!("stored registration of tenant {tenant}: {what}"));
    let addr = |col: &str| -> Result<SocketAddr> {
        let text: String = row.try_get(col)?;
        text.parse().map_err(|_| bad(col))
    };
    let transport: String = row.try_get("transport")?;
    let cseq: i64 = row.try_get("cseq")?;
    Ok(Registration {
        tenant,
        extension: row.try_get("extension")?,
        contact: row.try_get("contact")?,
        source: addr("source")?,
        transport: TransportKind::parse(&transport).ok_or_else(|| bad("transport"))?,
        local: addr("local_addr")?,
        call_id: row.try_get("call_id")?,
        cseq: u32::try_from(cseq).map_err(|_| bad("cseq"))?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        user_agent: row.try_get("user_agent")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::*;

    pub(crate) fn binding(
        tenant: TenantId,
        extension: &str,
        contact: &str,
        expires_at_ms: i64,
    ) -> Registration {
        Registration {
            tenant,
            extension: extension.into(),
            contact: contact.into(),
            source: "[2001:db8::7]:5070".parse().expect("addr"),
            transport: TransportKind::Tls,
            local: "192.0.2.1:5061".parse().expect("addr"),
            call_id: format!("cid-{contact}"),
            cseq: u32::MAX,
            expires_at_ms,
            user_agent: Some("Phone/1.0".into()),
        }
    }

    #[tokio::test]
    async fn bindings_round_trip_and_expire() {
        let store = Store::open_in_memory().await.expect("open");
        let t = store.add_tenant("a", "a.example").await.expect("t").id;
        store.add_extension(t, "100", "pw").await.expect("ext");
        store.add_extension(t, "101", "pw").await.expect("ext");

        let keep = binding(t, "100", "sip:100@10.0.0.1", 60_000);
        let mut lapsing = binding(t, "101", "sip:101@10.0.0.2", 5_000);
        lapsing.user_agent = None;
        lapsing.transport = TransportKind::Udp;
        store
            .apply_registrations(&[
                RegistrationChange::Upsert(keep.clone()),
                RegistrationChange::Upsert(lapsing.clone()),
            ])
            .await
            .expect("apply");
        assert_eq!(
            store.load_registrations(1_000).await.expect("load"),
            vec![keep.clone(), lapsing.clone()]
        );

        // refresh replaces the row with the same key
        let mut refreshed = keep.clone();
        refreshed.cseq = 7;
        refreshed.expires_at_ms = 120_000;
        refreshed.source = "198.51.100.9:40000".parse().expect("addr");
        store
            .apply_registrations(&[RegistrationChange::Upsert(refreshed.clone())])
            .await
            .expect("apply");

        // the lapsed binding is dropped and deleted
        assert_eq!(
            store.load_registrations(5_000).await.expect("load"),
            vec![refreshed.clone()]
        );
        assert_eq!(
            store.load_registrations(0).await.expect("load"),
            vec![refreshed.clone()]
        );

        store
            .apply_registrations(&[RegistrationChange::Remove {
                tenant: t,
                extension: "100".into(),
                contact: refreshed.contact.clone(),
            }])
            .await
            .expect("remove");
        assert!(store.load_registrations(0).await.expect("load").is_empty());
    }

    #[tokio::test]
    async fn bindings_follow_their_extension() {
        let store = Store::open_in_memory().await.expect("open");
        let t = store.add_tenant("a", "a.example").await.expect("t").id;
        store.add_extension(t, "100", "pw").await.expect("ext");
        let ok = binding(t, "100", "sip:100@h", 10_000);
        let orphan = binding(t, "999", "sip:999@h", 10_000);
        store
            .apply_registrations(&[
                RegistrationChange::Upsert(ok.clone()),
                RegistrationChange::Upsert(orphan),
            ])
            .await
            .expect("apply");
        assert_eq!(store.load_registrations(0).await.expect("load"), vec![ok]);
        store.remove_extension(t, "100").await.expect("rm");
        assert!(store.load_registrations(0).await.expect("load").is_empty());
    }
}
