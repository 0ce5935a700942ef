//! Registrar bindings, persisted so they survive a restart.
//!
//! The same concept as `pbx-model`'s `registration.rs` at another layer: that one
//! defines a binding, this one persists it.

use std::net::SocketAddr;

use std::collections::HashMap;

use crate::sql::QueryBuilder;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Registration, RegistrationChange, Result, Store, TenantId, TransportKind};

/// Bindings per statement, of 12 parameters each (the widest use).
const CHUNK: usize = crate::sql::rows_per_statement(12);

impl Store {
    /// Applies a batch of binding changes in one transaction.
    ///
    /// Changes to the same binding (tenant, extension, contact) are coalesced, the
    /// last one winning, which leaves the same state as applying them in order;
    /// the rest goes in a few multi-row statements rather than one per change.
    /// Upserts for an extension that no longer exists are skipped (the join with
    /// `extensions`) instead of failing the whole batch.
    pub async fn apply_registrations(&self, changes: &[RegistrationChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut last = HashMap::with_capacity(changes.len());
        for change in changes {
            let key = match change {
                RegistrationChange::Upsert(r) => {
                    (r.tenant, r.extension.as_str(), r.contact.as_str())
                }
                RegistrationChange::Remove {
                    tenant,
                    extension,
                    contact,
                } => (*tenant, extension.as_str(), contact.as_str()),
            };
            last.insert(key, change);
        }
        let (mut upserts, mut removals) = (Vec::new(), Vec::new());
        for (key, change) in last {
            match change {
                RegistrationChange::Upsert(r) => upserts.push(r),
                RegistrationChange::Remove { .. } => removals.push(key),
            }
        }
        let mut tx = self.write_tx().await?;
        for chunk in removals.chunks(CHUNK) {
            let mut q = QueryBuilder::new(
                self.backend,
                "DELETE FROM registrations WHERE (tenant_id, extension, contact) IN (",
            );
            q.push_values(chunk, |mut row, (tenant, extension, contact)| {
                row.push_bind(tenant.0)
                    .push_bind(*extension)
                    .push_bind(*contact);
            });
            q.push(")");
            q.build()?
                .persistent(chunk.len() == CHUNK)
                .execute(&mut *tx)
                .await?;
        }
        for chunk in upserts.chunks(CHUNK) {
            let mut q = QueryBuilder::new(
                self.backend,
                "INSERT INTO registrations (tenant_id, extension, contact, source, transport, \
                 local_addr, call_id, cseq, expires_at_ms, user_agent, path, node) \
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
                 v.column7, v.column8, v.column9, v.column10, v.column11, v.column12 FROM (",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.tenant.0)
                    .push_bind(r.extension.as_str())
                    .push_bind(r.contact.as_str())
                    .push_bind(r.source.to_string())
                    .push_bind(r.transport.as_str())
                    .push_bind(r.local.to_string())
                    .push_bind(r.call_id.as_str())
                    .push_bind(i64::from(r.cseq))
                    .push_bind(r.expires_at_ms)
                    .push_bind(r.user_agent.as_deref())
                    .push_bind(r.path.join("\n"))
                    .push_bind(r.node.as_str());
            });
            // `WHERE true` tells SQLite's parser that ON CONFLICT is not a join
            // constraint.
            q.push(
                ") AS v JOIN extensions AS e ON e.tenant_id = v.column1 AND e.number = v.column2 \
                 WHERE true \
                 ON CONFLICT (tenant_id, extension, contact) DO UPDATE SET \
                 source = excluded.source, transport = excluded.transport, \
                 local_addr = excluded.local_addr, call_id = excluded.call_id, \
                 cseq = excluded.cseq, expires_at_ms = excluded.expires_at_ms, \
                 user_agent = excluded.user_agent, path = excluded.path, \
                 node = excluded.node",
            );
            q.build()?
                .persistent(chunk.len() == CHUNK)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the bindings that lapsed at or before `now_ms` and returns the rest,
    /// ordered by tenant, extension and contact.
    pub async fn load_registrations(&self, now_ms: i64) -> Result<Vec<Registration>> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM registrations WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT tenant_id, extension, contact, source, transport, local_addr, call_id, \
             cseq, expires_at_ms, user_agent, path, node FROM registrations \
             ORDER BY tenant_id, extension, contact",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// The live bindings of these addresses-of-record (tenant, extension), as
    /// every node of a cluster wrote them: what a node re-reads when another
    /// node tells it that they changed.
    pub async fn registrations_of(
        &self,
        aors: &[(TenantId, String)],
        now_ms: i64,
    ) -> Result<Vec<Registration>> {
        let mut out = Vec::new();
        for chunk in aors.chunks(CHUNK) {
            let mut q = QueryBuilder::new(
                self.backend,
                "SELECT tenant_id, extension, contact, source, transport, local_addr, call_id, \
                 cseq, expires_at_ms, user_agent, path, node FROM registrations \
                 WHERE expires_at_ms > ",
            );
            q.push_bind(now_ms);
            q.push(" AND (tenant_id, extension) IN (");
            q.push_values(chunk, |mut row, (tenant, extension)| {
                row.push_bind(tenant.0).push_bind(extension.as_str());
            });
            q.push(") ORDER BY tenant_id, extension, contact");
            let rows = q.build()?.fetch_all(&self.pool).await?;
            for row in &rows {
                out.push(from_row(row)?);
            }
        }
        Ok(out)
    }
}

fn from_row(row: &AnyRow) -> Result<Registration> {
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
        path: {
            let path: String = row.try_get("path")?;
            path.lines().map(str::to_string).collect()
        },
        node: row.try_get("node")?,
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
            path: Vec::new(),
            node: String::new(),
        }
    }

    backend_test! {
        async fn bindings_round_trip_and_expire() {
            let store = crate::testdb::store().await.expect("open");
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
    }

    backend_test! {
        async fn bindings_follow_their_extension() {
            let store = crate::testdb::store().await.expect("open");
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

    backend_test! {
        async fn changes_to_one_binding_leave_the_last_one_in_place() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            store.add_extension(t, "100", "pw").await.expect("ext");
            store.add_extension(t, "101", "pw").await.expect("ext");
            let remove = |ext: &str, contact: &str| RegistrationChange::Remove {
                tenant: t,
                extension: ext.into(),
                contact: contact.into(),
            };
            let first = binding(t, "100", "sip:100@h", 10_000);
            let mut second = first.clone();
            second.cseq = 2;
            second.expires_at_ms = 20_000;
            let gone = binding(t, "101", "sip:101@h", 10_000);
            store
                .apply_registrations(&[
                    RegistrationChange::Upsert(first.clone()),
                    remove("100", "sip:100@h"),
                    RegistrationChange::Upsert(second.clone()),
                    RegistrationChange::Upsert(gone.clone()),
                    remove("101", "sip:101@h"),
                ])
                .await
                .expect("apply");
            assert_eq!(
                store.load_registrations(0).await.expect("load"),
                vec![second]
            );
        }
    }

    backend_test! {
        async fn a_batch_larger_than_a_statement_is_written_whole() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            let n = crate::registration::CHUNK * 2 + 7;
            let rows: Vec<(String, String)> = (0..n)
                .map(|i| (format!("{}", 1000 + i), "secret-pw".to_string()))
                .collect();
            store.import_extensions(t, &rows).await.expect("import");
            let bindings: Vec<Registration> = (0..n)
                .map(|i| binding(t, &format!("{}", 1000 + i), &format!("sip:{i}@h"), 10_000))
                .collect();
            let changes: Vec<RegistrationChange> = bindings
                .iter()
                .cloned()
                .map(RegistrationChange::Upsert)
                .collect();
            store.apply_registrations(&changes).await.expect("apply");
            let mut stored = store.load_registrations(0).await.expect("load");
            stored.sort_by(|a, b| a.extension.cmp(&b.extension));
            assert_eq!(stored, bindings);

            let removals: Vec<RegistrationChange> = bindings
                .iter()
                .filter(|b| b.extension.ends_with('1'))
                .map(|b| RegistrationChange::Remove {
                    tenant: t,
                    extension: b.extension.clone(),
                    contact: b.contact.clone(),
                })
                .collect();
            store.apply_registrations(&removals).await.expect("remove");
            let left = store.load_registrations(0).await.expect("load");
            assert_eq!(left.len(), n - removals.len());
            assert!(left.iter().all(|b| !b.extension.ends_with('1')));
        }
    }
}
