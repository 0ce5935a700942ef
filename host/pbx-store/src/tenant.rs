//! Tenants and their SIP domains.
//!
//! The same concept as `pbx-model`'s `tenant.rs` at another layer: that one defines
//! a tenant, this one stores it.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{
    DigestAlgorithms, Error, MediaEncryption, Result, Store, Tenant, TenantId, TenantStatus, checks,
};

/// The provider's retention of call records and alerts, in days (`None`:
/// kept), and the most a tenant may keep them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordRetention {
    /// Days the audit log keeps its entries (the provider's alone; `None`:
    /// kept). A purge leaves a checkpoint the log keeps verifying through.
    pub audit_days: Option<u32>,
    pub cdr_days: Option<u32>,
    pub alert_days: Option<u32>,
    pub max_cdr_days: Option<u32>,
    pub max_alert_days: Option<u32>,
}

impl Store {
    /// Creates a tenant with its primary domain (which becomes the digest realm).
    ///
    /// The domain is lower-cased and must be a host name. A name or domain that is
    /// already taken gives [`Error::Conflict`].
    pub async fn add_tenant(&self, name: &str, domain: &str) -> Result<Tenant> {
        let name = &checks::tenant_name(name)?;
        let domain = checks::domain(domain)?;
        let mut tx = self.write_tx().await?;
        if sqlx::query("SELECT id FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!("tenant name {name:?} is taken")));
        }
        ensure_domain_free(&mut tx, &domain).await?;
        let row = sqlx::query("INSERT INTO tenants (name, status) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(TenantStatus::Active.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                Error::conflict_on_unique(e, || format!("tenant name {name:?} is taken"))
            })?;
        let id = TenantId(row.try_get("id")?);
        insert_domain(&mut tx, id, &domain, 0).await?;
        tx.commit().await?;
        Ok(Tenant {
            id,
            name: name.to_owned(),
            status: TenantStatus::Active,
            realm: domain.clone(),
            domains: vec![domain],
            media_encryption: MediaEncryption::default(),
            digest: None,
        })
    }

    /// Sets the digest algorithms offered to the tenant's phones (`None`: the
    /// server's default). Running servers pick it up on their next directory
    /// reload.
    pub async fn set_tenant_digest(
        &self,
        tenant: TenantId,
        digest: Option<&DigestAlgorithms>,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE tenants SET digest_algorithms = $1 WHERE id = $2")
            .bind(digest.map(ToString::to_string))
            .bind(tenant.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }

    /// Adds another SIP domain to a tenant. The realm (primary domain) is unchanged.
    pub async fn add_domain(&self, tenant: TenantId, domain: &str) -> Result<()> {
        let domain = checks::domain(domain)?;
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        ensure_domain_free(&mut tx, &domain).await?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(position), -1) + 1 AS next FROM tenant_domains WHERE tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_one(&mut *tx)
        .await?;
        let position: i64 = row.try_get("next")?;
        insert_domain(&mut tx, tenant, &domain, position).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant with this id, if any.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT id, name, status, media_encryption, digest_algorithms FROM tenants WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            Some(row) => Ok(Some(with_domains(&mut conn, &row).await?)),
            None => Ok(None),
        }
    }

    /// The tenant with this exact name, if any.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT id, name, status, media_encryption, digest_algorithms FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            Some(row) => Ok(Some(with_domains(&mut conn, &row).await?)),
            None => Ok(None),
        }
    }

    /// Every tenant, in creation order.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let mut tx = self.read_tx().await?;
        let tenants = load_all(&mut tx).await?;
        tx.commit().await?;
        Ok(tenants)
    }

    /// Activates or suspends a tenant. Suspending also ends the sessions of
    /// every user of the tenant (their session epochs go up in the same write).
    pub async fn set_tenant_status(&self, tenant: TenantId, status: TenantStatus) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE tenants SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(tenant));
        }
        if status == TenantStatus::Suspended {
            sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE tenant_id = $1")
                .bind(tenant.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn not_found(tenant: TenantId) -> Error {
    Error::NotFound(format!("tenant {tenant}"))
}

/// Fails with [`Error::NotFound`] unless the tenant exists.
pub(crate) async fn ensure_tenant(conn: &mut AnyConnection, tenant: TenantId) -> Result<()> {
    let row = sqlx::query("SELECT id FROM tenants WHERE id = $1")
        .bind(tenant.0)
        .fetch_optional(conn)
        .await?;
    row.map(|_| ()).ok_or_else(|| not_found(tenant))
}

/// The tenant's digest realm: its primary domain. [`Error::NotFound`] when the
/// tenant does not exist.
pub(crate) async fn realm(conn: &mut AnyConnection, tenant: TenantId) -> Result<String> {
    let row = sqlx::query(
        "SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY position LIMIT 1",
    )
    .bind(tenant.0)
    .fetch_optional(conn)
    .await?;
    match row {
        Some(row) => Ok(row.try_get("domain")?),
        None => Err(not_found(tenant)),
    }
}

async fn ensure_domain_free(conn: &mut AnyConnection, domain: &str) -> Result<()> {
    let taken = sqlx::query("SELECT tenant_id FROM tenant_domains WHERE domain = $1")
        .bind(domain)
        .fetch_optional(conn)
        .await?
        .is_some();
    if taken {
        return Err(Error::Conflict(format!("domain {domain:?} is taken")));
    }
    Ok(())
}

async fn insert_domain(
    conn: &mut AnyConnection,
    tenant: TenantId,
    domain: &str,
    position: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO tenant_domains (domain, tenant_id, position) VALUES ($1, $2, $3)")
        .bind(domain)
        .bind(tenant.0)
        .bind(position)
        .execute(conn)
        .await
        .map_err(|e| Error::conflict_on_unique(e, || format!("domain {domain:?} is taken")))?;
    Ok(())
}

/// Reads the `id, name, status, media_encryption, digest_algorithms` columns
/// of a tenants row.
fn tenant_row(row: &AnyRow) -> Result<Tenant> {
    let id = TenantId(row.try_get("id")?);
    let name: String = row.try_get("name")?;
    let status: String = row.try_get("status")?;
    let status = TenantStatus::parse(&status)
        .ok_or_else(|| Error::Invalid(format!("stored tenant {id} has status {status:?}")))?;
    let media: String = row.try_get("media_encryption")?;
    let media_encryption = MediaEncryption::parse(&media).ok_or_else(|| {
        Error::Invalid(format!("stored tenant {id} has media encryption {media:?}"))
    })?;
    let digest = crate::rows::stored_digest(row, || format!("tenant {id}"))?;
    Ok(Tenant {
        id,
        name,
        status,
        realm: String::new(),
        domains: Vec::new(),
        media_encryption,
        digest,
    })
}

/// The tenant with its domains, the first of which is its realm.
fn assemble(mut tenant: Tenant, domains: Vec<String>) -> Tenant {
    tenant.realm = domains.first().cloned().unwrap_or_default();
    tenant.domains = domains;
    tenant
}

async fn with_domains(conn: &mut AnyConnection, row: &AnyRow) -> Result<Tenant> {
    let tenant = tenant_row(row)?;
    let rows =
        sqlx::query("SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY position")
            .bind(tenant.id.0)
            .fetch_all(conn)
            .await?;
    let domains = rows
        .iter()
        .map(|r| r.try_get("domain"))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(assemble(tenant, domains))
}

/// Every tenant with its domains (primary first), in id order.
pub(crate) async fn load_all(conn: &mut AnyConnection) -> Result<Vec<Tenant>> {
    let tenant_rows = sqlx::query(
        "SELECT id, name, status, media_encryption, digest_algorithms FROM tenants ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let domain_rows =
        sqlx::query("SELECT tenant_id, domain FROM tenant_domains ORDER BY tenant_id, position")
            .fetch_all(&mut *conn)
            .await?;
    let mut domains: std::collections::HashMap<i64, Vec<String>> = Default::default();
    for row in &domain_rows {
        domains
            .entry(row.try_get("tenant_id")?)
            .or_default()
            .push(row.try_get("domain")?);
    }
    tenant_rows
        .iter()
        .map(|row| {
            let tenant = tenant_row(row)?;
            let list = domains.remove(&tenant.id.0).unwrap_or_default();
            Ok(assemble(tenant, list))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::*;

    backend_test! {
        async fn tenant_crud() {
            let store = crate::testdb::store().await.expect("open");
            let t = store
                .add_tenant("Acme", "PBX.Acme.Example")
                .await
                .expect("add");
            assert_eq!(t.realm, "pbx.acme.example");
            assert_eq!(t.domains, vec!["pbx.acme.example"]);
            assert_eq!(t.status, TenantStatus::Active);

            store.add_domain(t.id, "acme.example").await.expect("dom");
            store
                .add_domain(t.id, "voice.acme.example")
                .await
                .expect("dom");
            let got = store
                .tenant_by_name("Acme")
                .await
                .expect("get")
                .expect("present");
            assert_eq!(
                got.domains,
                vec!["pbx.acme.example", "acme.example", "voice.acme.example"]
            );
            assert_eq!(got.realm, "pbx.acme.example");
            assert_eq!(store.tenant(t.id).await.expect("by id"), Some(got.clone()));
            assert_eq!(store.tenant_by_name("acme").await.expect("get"), None);
            assert_eq!(store.tenant(TenantId(999)).await.expect("get"), None);

            store
                .set_tenant_status(t.id, TenantStatus::Suspended)
                .await
                .expect("status");
            let b = store.add_tenant("Beta", "beta.example").await.expect("b");
            let all = store.list_tenants().await.expect("list");
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].status, TenantStatus::Suspended);
            assert_eq!(all[0].domains.len(), 3);
            assert_eq!(all[1], b);
        }
    }

    backend_test! {
        async fn names_and_domains_are_unique() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a");
            let b = store.add_tenant("b", "b.example").await.expect("b");
            assert!(matches!(
                store.add_tenant("a", "other.example").await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.add_tenant("c", "A.EXAMPLE").await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.add_domain(b.id, "a.example").await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.add_domain(a.id, "a.example").await,
                Err(Error::Conflict(_))
            ));
            // the failed add_tenant("c", ..) left nothing behind
            assert_eq!(store.tenant_by_name("c").await.expect("get"), None);
            assert_eq!(store.list_tenants().await.expect("list").len(), 2);
        }
    }

    backend_test! {
        async fn bad_input_and_unknown_tenants_are_rejected() {
            let store = crate::testdb::store().await.expect("open");
            assert!(matches!(
                store.add_tenant("x", "not a domain").await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.add_tenant("", "x.example").await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.add_domain(TenantId(42), "x.example").await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store
                    .set_tenant_status(TenantId(42), TenantStatus::Active)
                    .await,
                Err(Error::NotFound(_))
            ));
            let t = store.add_tenant("x", "x.example").await.expect("x");
            assert!(matches!(
                store.add_domain(t.id, "bad_domain").await,
                Err(Error::Invalid(_))
            ));
            assert!(store.list_tenants().await.expect("list").len() == 1);
        }
    }
}

impl Store {
    /// Sets how long the tenant's call records and alerts are kept, in days
    /// (`None`: the provider's default).
    pub async fn set_record_retention(
        &self,
        tenant: TenantId,
        cdr_days: Option<u32>,
        alert_days: Option<u32>,
    ) -> Result<()> {
        if cdr_days == Some(0) || alert_days == Some(0) {
            return Err(Error::Invalid("a retention is at least one day".into()));
        }
        let done = sqlx::query(
            "UPDATE tenants SET cdr_retention_days = $1, alert_retention_days = $2 WHERE id = $3",
        )
        .bind(cdr_days.map(i64::from))
        .bind(alert_days.map(i64::from))
        .bind(tenant.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }

    /// The tenant's own call-record and alert retention, in days.
    pub async fn record_retention(&self, tenant: TenantId) -> Result<(Option<u32>, Option<u32>)> {
        let row = sqlx::query(
            "SELECT cdr_retention_days, alert_retention_days FROM tenants WHERE id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        let days = |c: &str| -> Result<Option<u32>> {
            Ok(row
                .try_get::<Option<i64>, _>(c)?
                .and_then(|d| u32::try_from(d).ok()))
        };
        Ok((days("cdr_retention_days")?, days("alert_retention_days")?))
    }

    /// Deletes call records and alerts older than each tenant's retention at
    /// `now_ms`: its own, else `policy`'s default, never longer than
    /// `policy`'s maximum (no retention at all: kept). Returns, per tenant
    /// that lost any, how many records and alerts went.
    pub async fn purge_records(
        &self,
        now_ms: i64,
        policy: &RecordRetention,
    ) -> Result<Vec<(TenantId, u64, u64)>> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let effective =
            |own: Option<u32>, default: Option<u32>, max: Option<u32>| match (own.or(default), max)
            {
                (Some(d), Some(m)) => Some(d.min(m)),
                (Some(d), None) => Some(d),
                (None, m) => m,
            };
        let mut out = Vec::new();
        for t in self.list_tenants().await? {
            let (cdr, alert) = self.record_retention(t.id).await?;
            let mut gone = (0, 0);
            if let Some(days) = effective(cdr, policy.cdr_days, policy.max_cdr_days) {
                gone.0 =
                    sqlx::query("DELETE FROM cdrs WHERE tenant_id = $1 AND started_at_ms < $2")
                        .bind(t.id.0)
                        .bind(now_ms - i64::from(days) * DAY_MS)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
            }
            if let Some(days) = effective(alert, policy.alert_days, policy.max_alert_days) {
                gone.1 = sqlx::query("DELETE FROM alerts WHERE tenant_id = $1 AND created_ms < $2")
                    .bind(t.id.0)
                    .bind(now_ms - i64::from(days) * DAY_MS)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
            if gone != (0, 0) {
                out.push((t.id, gone.0, gone.1));
            }
        }
        Ok(out)
    }

    /// Deletes a tenant and purges everything it owns: domains, extensions,
    /// registrations, call records, API users and tokens, prompts, voicemail
    /// and its audio key, in one transaction; then its audio files (unreadable
    /// from the moment the key is gone). Audit entries stay (they name the
    /// tenant by id only).
    pub async fn delete_tenant(&self, tenant: TenantId) -> Result<()> {
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        for sql in [
            "DELETE FROM cdrs WHERE tenant_id = $1",
            "DELETE FROM registrations WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE id = $1",
        ] {
            sqlx::query(sql).bind(tenant.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.remove_tenant_files(tenant).await;
        Ok(())
    }
}

#[cfg(test)]
mod purge_tests {
    use crate::*;

    backend_test! {
        async fn delete_tenant_purges_its_rows_only() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            for t in [a, b] {
                store.add_extension(t, "100", "pw").await.expect("ext");
                store
                    .insert_cdrs(&[crate::cdr::tests::cdr(t, "100", "101", 1_000)])
                    .await
                    .expect("cdr");
            }
            store.delete_tenant(a).await.expect("delete");
            assert_eq!(store.tenant(a).await.expect("get"), None);
            assert!(matches!(
                store.list_extensions(a).await,
                Err(Error::NotFound(_))
            ));
            assert!(
                store
                    .list_cdrs(a, &CdrFilter::default())
                    .await
                    .expect("cdr")
                    .is_empty()
            );
            assert_eq!(store.list_extensions(b).await.expect("ext").len(), 1);
            assert_eq!(
                store
                    .list_cdrs(b, &CdrFilter::default())
                    .await
                    .expect("cdr")
                    .len(),
                1
            );
            assert!(matches!(
                store.delete_tenant(a).await,
                Err(Error::NotFound(_))
            ));
        }
    }

    /// Every table with a `tenant_id` column, read from the schema.
    async fn tenant_tables(store: &Store) -> Vec<String> {
        let sql = match store.backend {
            crate::Backend::Sqlite => {
                "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND c.name = 'tenant_id' ORDER BY m.name"
            }
            crate::Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND column_name = 'tenant_id' \
                 ORDER BY table_name"
            }
        };
        let tables: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&store.pool)
            .await
            .expect("tables");
        assert!(tables.len() > 20, "{tables:?}");
        tables
    }

    backend_test! {
        async fn deleting_a_tenant_leaves_no_row_or_file_of_it() {
            let dir = tempfile::tempdir().expect("dir");
            let store = crate::testdb::store_in(dir.path()).await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let wav = crate::prompt::tests::wav(800);
            for t in [a, b] {
                store
                    .add_extension(t, "100", "pw-long-enough")
                    .await
                    .expect("ext");
                store
                    .insert_cdrs(&[crate::cdr::tests::cdr(t, "100", "101", 1_000)])
                    .await
                    .expect("cdr");
                store
                    .put_prompt(t, "menu", &wav, 100)
                    .await
                    .expect("prompt");
                store
                    .save_voicemail(t, "100", "101", &wav, 100)
                    .await
                    .expect("voicemail");
                store
                    .plugin_kv_admin_put(t, "ring-group:sales", Some(b"100"))
                    .await
                    .expect("storage");
                store
                    .add_trunk(t, "carrier", "sip:gw.example.net", Some("u"), Some("p"))
                    .await
                    .expect("trunk");
                store
                    .insert_alert(&Alert {
                        tenant: Some(t),
                        severity: Severity::Warning,
                        event: "fraud.burst".into(),
                        message: "m".into(),
                        at_ms: 1,
                    })
                    .await
                    .expect("alert");
            }
            store.delete_tenant(a).await.expect("delete");
            // The audit log is the provider's record and stays whole (its chain
            // must verify); every other table is checked.
            let mut left = Vec::new();
            for table in tenant_tables(&store).await {
                if table == "audit_log" {
                    continue;
                }
                let rows: i64 =
                    // The names come from the schema itself.
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM \"{table}\" WHERE tenant_id = $1"
                    )))
                        .bind(a.0)
                        .fetch_one(&store.pool)
                        .await
                        .expect("count");
                if rows > 0 {
                    left.push(format!("{table}: {rows}"));
                }
            }
            assert!(left.is_empty(), "rows of the deleted tenant: {left:?}");
            let media = dir.path().join("media");
            assert!(!media.join(a.0.to_string()).exists(), "its files are gone");
            assert!(
                media.join(b.0.to_string()).exists(),
                "the other tenant's stay"
            );
            assert_eq!(store.list_extensions(b).await.expect("b").len(), 1);
        }
    }

    backend_test! {
        async fn records_and_alerts_are_purged_by_each_tenants_retention() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let day = 24 * 3600 * 1000i64;
            let now = 1_000 * day;
            for t in [a, b] {
                for age in [5, 40, 400] {
                    store
                        .insert_cdrs(&[crate::cdr::tests::cdr(t, "100", "101", now - age * day)])
                        .await
                        .expect("cdr");
                    store
                        .insert_alert(&Alert {
                            tenant: Some(t),
                            severity: Severity::Info,
                            event: "fraud.burst".into(),
                            message: "m".into(),
                            at_ms: now - age * day,
                        })
                        .await
                        .expect("alert");
                }
            }
            // A keeps 30 days of records; B the default, 365, within the 100-day
            // maximum; alerts have no default, so only the maximum (90) applies.
            store
                .set_record_retention(a, Some(30), None)
                .await
                .expect("set");
            assert!(store.set_record_retention(a, Some(0), None).await.is_err());
            let policy = RecordRetention {
                cdr_days: Some(365),
                alert_days: None,
                max_cdr_days: Some(100),
                max_alert_days: Some(90),
                audit_days: None,
            };
            let gone = store.purge_records(now, &policy).await.expect("purge");
            assert_eq!(gone, vec![(a, 2, 1), (b, 1, 1)]);
            let left = |t| {
                let store = store.clone();
                async move {
                    store
                        .list_cdrs(t, &CdrFilter::default())
                        .await
                        .expect("cdrs")
                        .len()
                }
            };
            assert_eq!((left(a).await, left(b).await), (1, 2));
            assert_eq!(store.list_alerts(a, 10).await.expect("alerts").len(), 2);
            // Nothing more the second time.
            assert!(
                store
                    .purge_records(now, &policy)
                    .await
                    .expect("again")
                    .is_empty()
            );
        }
    }
}
