//! Plugins: tenants' dial-plan versions with an active pointer, policies, the
//! content-addressed component bytes behind both, and the plugins' per-tenant
//! key-value storage.
//!
//! The store keeps bytes; it does not judge them. Callers validate a component
//! (the plugin runtime's `load`) before installing it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::tenant::ensure_tenant;
use crate::{Error, Result, Store, TenantId};

/// Longest policy name accepted.
const MAX_POLICY_NAME: usize = 64;
/// Most policies one tenant's admins may install for the tenant.
pub const MAX_TENANT_POLICIES: i64 = 8;

/// One uploaded version of a tenant's dial plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub tenant: TenantId,
    /// 1 for the first upload, then one more than the highest so far.
    pub version: i64,
    /// Lower-case hex SHA-256 of the component bytes ([`Store::plugin_blob`]).
    pub hash: String,
    /// Size of the component in bytes.
    pub size: i64,
    /// Unix milliseconds.
    pub uploaded_at_ms: i64,
    /// Whether the tenant's calls run this version.
    pub active: bool,
}

/// An installed policy component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Unique across the provider.
    pub name: String,
    /// The tenant it applies to; `None` for a provider-wide policy.
    pub tenant: Option<TenantId>,
    /// Lower-case hex SHA-256 of the component bytes ([`Store::plugin_blob`]).
    pub hash: String,
    /// Unix milliseconds.
    pub installed_at_ms: i64,
    /// The hash of the version before the last install, what a rollback
    /// ([`Store::rollback_policy`]) goes back to; `None` when there is none.
    #[serde(default)]
    pub previous_hash: Option<String>,
}

/// A policy a tenant's admins installed for the tenant's own calls. Names are
/// the tenant's own: another tenant (or the provider) may use the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPolicy {
    pub tenant: TenantId,
    /// Unique within the tenant.
    pub name: String,
    /// Lower-case hex SHA-256 of the component bytes ([`Store::plugin_blob`]).
    pub hash: String,
    /// Unix milliseconds.
    pub installed_at_ms: i64,
}

/// A query over dial-plan versions with their size and active flag; the
/// argument (a `WHERE ... ORDER BY ...` literal) follows the joins.
macro_rules! versions_query {
    ($rest:literal) => {
        concat!(
            "SELECT v.tenant_id, v.version, v.hash, b.size, v.uploaded_ms, \
             CASE WHEN a.version = v.version THEN 1 ELSE 0 END AS active \
             FROM dialplan_versions v \
             JOIN plugin_blobs b ON b.hash = v.hash \
             LEFT JOIN dialplan_active a ON a.tenant_id = v.tenant_id ",
            $rest
        )
    };
}

impl Store {
    /// Stores a new dial-plan version for `tenant` and makes it the active one, in
    /// one transaction. The bytes are stored once per content hash.
    pub async fn install_dialplan(
        &self,
        tenant: TenantId,
        wasm: &[u8],
        now_ms: i64,
    ) -> Result<PluginVersion> {
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let hash = put_blob(&mut tx, wasm, now_ms).await?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM dialplan_versions \
             WHERE tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_one(&mut *tx)
        .await?;
        let version: i64 = row.try_get("next")?;
        sqlx::query(
            "INSERT INTO dialplan_versions (tenant_id, version, hash, uploaded_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.0)
        .bind(version)
        .bind(&hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        set_active(&mut tx, tenant, version).await?;
        let installed = version_row(&mut tx, tenant, version).await?;
        tx.commit().await?;
        Ok(installed)
    }

    /// The tenant's dial-plan versions, oldest first.
    pub async fn list_dialplans(&self, tenant: TenantId) -> Result<Vec<PluginVersion>> {
        let rows = sqlx::query(versions_query!("WHERE v.tenant_id = $1 ORDER BY v.version"))
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Makes one of the tenant's versions the active one. A version number the
    /// tenant does not have gives [`Error::NotFound`].
    pub async fn activate_dialplan(&self, tenant: TenantId, version: i64) -> Result<PluginVersion> {
        let mut tx = self.write_tx().await?;
        version_row(&mut tx, tenant, version).await?;
        set_active(&mut tx, tenant, version).await?;
        let active = version_row(&mut tx, tenant, version).await?;
        tx.commit().await?;
        Ok(active)
    }

    /// Goes back to `version`, or with `None` to the highest version below the
    /// active one. [`Error::NotFound`] when there is no such version (or, for
    /// `None`, no active version).
    pub async fn rollback_dialplan(
        &self,
        tenant: TenantId,
        version: Option<i64>,
    ) -> Result<PluginVersion> {
        let mut tx = self.write_tx().await?;
        let target = match version {
            Some(v) => v,
            None => {
                let active =
                    sqlx::query("SELECT version FROM dialplan_active WHERE tenant_id = $1")
                        .bind(tenant.0)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| {
                            Error::NotFound(format!("tenant {tenant} has no active dial plan"))
                        })?;
                let active: i64 = active.try_get("version")?;
                let row = sqlx::query(
                    "SELECT MAX(version) AS previous FROM dialplan_versions \
                     WHERE tenant_id = $1 AND version < $2",
                )
                .bind(tenant.0)
                .bind(active)
                .fetch_one(&mut *tx)
                .await?;
                let previous: Option<i64> = row.try_get("previous")?;
                previous.ok_or_else(|| {
                    Error::NotFound(format!(
                        "tenant {tenant} has no dial-plan version before {active}"
                    ))
                })?
            }
        };
        version_row(&mut tx, tenant, target).await?;
        set_active(&mut tx, tenant, target).await?;
        let active = version_row(&mut tx, tenant, target).await?;
        tx.commit().await?;
        Ok(active)
    }

    /// Every tenant's active dial-plan version (tenants without one run the
    /// shipped default and are not listed), by tenant id.
    pub async fn active_dialplans(&self) -> Result<Vec<(TenantId, PluginVersion)>> {
        let rows = sqlx::query(versions_query!(
            "WHERE a.version = v.version ORDER BY v.tenant_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| version_from_row(row).map(|v| (v.tenant, v)))
            .collect()
    }

    /// The component bytes stored under `hash`, if any.
    pub async fn plugin_blob(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM plugin_blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("bytes")?),
            None => None,
        })
    }

    /// Installs a policy under `name` (1-64 characters of `[A-Za-z0-9._-]`),
    /// replacing any policy of that name. `tenant: None` makes it provider-wide.
    pub async fn install_policy(
        &self,
        name: &str,
        tenant: Option<TenantId>,
        wasm: &[u8],
        now_ms: i64,
    ) -> Result<Policy> {
        policy_name(name)?;
        let mut tx = self.write_tx().await?;
        if let Some(t) = tenant {
            ensure_tenant(&mut tx, t).await?;
        }
        let (current, before) = policy_hashes(&mut tx, name).await?.unzip();
        let before = before.flatten();
        let hash = put_blob(&mut tx, wasm, now_ms).await?;
        // The version replaced becomes the one to roll back to; installing
        // the same bytes again keeps the earlier one.
        let previous = match current {
            Some(c) if c != hash => Some(c),
            _ => before.clone(),
        };
        sqlx::query(
            "INSERT INTO policies (name, tenant_id, hash, installed_ms, previous_hash) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id, \
             hash = excluded.hash, installed_ms = excluded.installed_ms, \
             previous_hash = excluded.previous_hash",
        )
        .bind(name)
        .bind(tenant.map(|t| t.0))
        .bind(&hash)
        .bind(now_ms)
        .bind(previous.as_deref())
        .execute(&mut *tx)
        .await?;
        if let Some(old) = before.filter(|b| Some(b) != previous.as_ref()) {
            drop_blob_if_unused(&mut tx, &old).await?;
        }
        tx.commit().await?;
        Ok(Policy {
            name: name.to_owned(),
            tenant,
            hash,
            installed_at_ms: now_ms,
            previous_hash: previous,
        })
    }

    /// Goes back to the version of the named policy before its last install;
    /// the version replaced becomes the one to go back to, so a rollback can
    /// itself be undone. [`Error::NotFound`] without such a policy,
    /// [`Error::Conflict`] when it has no earlier version.
    pub async fn rollback_policy(&self, name: &str, now_ms: i64) -> Result<Policy> {
        let mut tx = self.write_tx().await?;
        let (current, previous) = policy_hashes(&mut tx, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("policy {name:?}")))?;
        let previous = previous
            .ok_or_else(|| Error::Conflict(format!("policy {name:?} has no earlier version")))?;
        sqlx::query(
            "UPDATE policies SET hash = $1, previous_hash = $2, installed_ms = $3 WHERE name = $4",
        )
        .bind(&previous)
        .bind(&current)
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT name, tenant_id, hash, installed_ms, previous_hash FROM policies WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        policy_from_row(&row)
    }

    /// Removes the named policy; [`Error::NotFound`] when there is none.
    pub async fn remove_policy(&self, name: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (hash, previous) = policy_hashes(&mut tx, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("policy {name:?}")))?;
        sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        drop_blob_if_unused(&mut tx, &hash).await?;
        if let Some(previous) = previous {
            drop_blob_if_unused(&mut tx, &previous).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Bytes the tenant's dial-plan versions take, each version counting its
    /// component's size (what a per-tenant upload quota is checked against).
    pub async fn dialplan_bytes(&self, tenant: TenantId) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS total FROM dialplan_versions v \
             JOIN plugin_blobs b ON b.hash = v.hash WHERE v.tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("total")?)
    }

    /// Deletes the tenant's old dial-plan versions beyond the newest `keep`
    /// (at least 1), never the active version nor the one before it (what a
    /// rollback goes to), and the component bytes nothing uses any more.
    /// Returns the pruned version numbers.
    pub async fn prune_dialplans(&self, tenant: TenantId, keep: usize) -> Result<Vec<i64>> {
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let mut tx = self.write_tx().await?;
        let active: Option<i64> =
            sqlx::query_scalar("SELECT version FROM dialplan_active WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_optional(&mut *tx)
                .await?;
        let before_active: Option<i64> = match active {
            Some(a) => sqlx::query_scalar(
                "SELECT MAX(version) FROM dialplan_versions WHERE tenant_id = $1 AND version < $2",
            )
            .bind(tenant.0)
            .bind(a)
            .fetch_one(&mut *tx)
            .await?,
            None => None,
        };
        let rows = sqlx::query(
            "SELECT version, hash FROM dialplan_versions WHERE tenant_id = $1 \
             ORDER BY version DESC LIMIT $2 OFFSET $3",
        )
        .bind(tenant.0)
        .bind(i64::MAX)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        let mut pruned = Vec::new();
        for row in rows {
            let version: i64 = row.try_get("version")?;
            if Some(version) == active || Some(version) == before_active {
                continue;
            }
            let hash: String = row.try_get("hash")?;
            sqlx::query("DELETE FROM dialplan_versions WHERE tenant_id = $1 AND version = $2")
                .bind(tenant.0)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            drop_blob_if_unused(&mut tx, &hash).await?;
            pruned.push(version);
        }
        tx.commit().await?;
        pruned.sort_unstable();
        Ok(pruned)
    }

    /// Every installed policy, by name.
    pub async fn list_policies(&self) -> Result<Vec<Policy>> {
        let rows = sqlx::query(
            "SELECT name, tenant_id, hash, installed_ms, previous_hash FROM policies ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Installs one of the tenant's own policies under `name` (1-64 characters
    /// of `[A-Za-z0-9._-]`), replacing the tenant's policy of that name; a
    /// tenant has at most [`MAX_TENANT_POLICIES`].
    pub async fn install_tenant_policy(
        &self,
        tenant: TenantId,
        name: &str,
        wasm: &[u8],
        now_ms: i64,
    ) -> Result<TenantPolicy> {
        policy_name(name)?;
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let previous = tenant_policy_hash(&mut tx, tenant, name).await?;
        if previous.is_none() {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM tenant_policies WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_one(&mut *tx)
                .await?;
            let n: i64 = row.try_get("n")?;
            if n >= MAX_TENANT_POLICIES {
                return Err(Error::Invalid(format!(
                    "a tenant may install at most {MAX_TENANT_POLICIES} policies"
                )));
            }
        }
        let hash = put_blob(&mut tx, wasm, now_ms).await?;
        sqlx::query(
            "INSERT INTO tenant_policies (tenant_id, name, hash, installed_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO UPDATE SET \
             hash = excluded.hash, installed_ms = excluded.installed_ms",
        )
        .bind(tenant.0)
        .bind(name)
        .bind(&hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(old) = previous {
            drop_blob_if_unused(&mut tx, &old).await?;
        }
        tx.commit().await?;
        Ok(TenantPolicy {
            tenant,
            name: name.to_owned(),
            hash,
            installed_at_ms: now_ms,
        })
    }

    /// Removes one of the tenant's own policies; [`Error::NotFound`] when the
    /// tenant has none of that name.
    pub async fn remove_tenant_policy(&self, tenant: TenantId, name: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let hash = tenant_policy_hash(&mut tx, tenant, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("policy {name:?}")))?;
        sqlx::query("DELETE FROM tenant_policies WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.0)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        drop_blob_if_unused(&mut tx, &hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's own policies, by name.
    pub async fn list_tenant_policies(&self, tenant: TenantId) -> Result<Vec<TenantPolicy>> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, hash, installed_ms FROM tenant_policies \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_policy_from_row).collect()
    }

    /// Every tenant's own policies, by tenant and name (the server's reload).
    pub async fn all_tenant_policies(&self) -> Result<Vec<TenantPolicy>> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, hash, installed_ms FROM tenant_policies \
             ORDER BY tenant_id, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_policy_from_row).collect()
    }

    /// Every tenant's plugin storage entries, by tenant and key (loaded once at
    /// start-up; the host keeps them in memory and writes changes back).
    pub async fn plugin_kv_all(&self) -> Result<Vec<(TenantId, String, Vec<u8>)>> {
        let rows =
            sqlx::query("SELECT tenant_id, key, value FROM plugin_kv ORDER BY tenant_id, key")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    TenantId(row.try_get("tenant_id")?),
                    row.try_get("key")?,
                    row.try_get("value")?,
                ))
            })
            .collect()
    }
}

/// A policy name: 1-64 characters of `[A-Za-z0-9._-]`.
pub(crate) fn policy_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POLICY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "policy name must be 1-{MAX_POLICY_NAME} characters of [A-Za-z0-9._-]: {name:?}"
        )))
    }
}

/// Stores `wasm` under its SHA-256 unless those bytes are already there; returns
/// the hash.
async fn put_blob(conn: &mut AnyConnection, wasm: &[u8], now_ms: i64) -> Result<String> {
    if wasm.is_empty() {
        return Err(Error::Invalid("plugin file is empty".into()));
    }
    let size =
        i64::try_from(wasm.len()).map_err(|_| Error::Invalid("plugin file is too large".into()))?;
    let hash = hex::encode(Sha256::digest(wasm));
    sqlx::query(
        "INSERT INTO plugin_blobs (hash, bytes, size, created_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&hash)
    .bind(wasm)
    .bind(size)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(hash)
}

/// Deletes a blob that no dial-plan version and no policy refers to any more.
async fn drop_blob_if_unused(conn: &mut AnyConnection, hash: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM plugin_blobs WHERE hash = $1 \
         AND NOT EXISTS (SELECT 1 FROM dialplan_versions WHERE hash = $2) \
         AND NOT EXISTS (SELECT 1 FROM policies WHERE hash = $3 OR previous_hash = $4) \
         AND NOT EXISTS (SELECT 1 FROM tenant_policies WHERE hash = $5)",
    )
    .bind(hash)
    .bind(hash)
    .bind(hash)
    .bind(hash)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

fn tenant_policy_from_row(row: &AnyRow) -> Result<TenantPolicy> {
    Ok(TenantPolicy {
        tenant: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        installed_at_ms: row.try_get("installed_ms")?,
    })
}

async fn tenant_policy_hash(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT hash FROM tenant_policies WHERE tenant_id = $1 AND name = $2")
        .bind(tenant.0)
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("hash")?),
        None => None,
    })
}

fn policy_from_row(row: &AnyRow) -> Result<Policy> {
    Ok(Policy {
        name: row.try_get("name")?,
        tenant: row.try_get::<Option<i64>, _>("tenant_id")?.map(TenantId),
        hash: row.try_get("hash")?,
        installed_at_ms: row.try_get("installed_ms")?,
        previous_hash: row.try_get("previous_hash")?,
    })
}

/// The named policy's hash and the hash of its version before, if it exists.
async fn policy_hashes(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<(String, Option<String>)>> {
    let row = sqlx::query("SELECT hash, previous_hash FROM policies WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => Some((row.try_get("hash")?, row.try_get("previous_hash")?)),
        None => None,
    })
}

async fn set_active(conn: &mut AnyConnection, tenant: TenantId, version: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO dialplan_active (tenant_id, version) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version",
    )
    .bind(tenant.0)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// One of the tenant's versions; [`Error::NotFound`] when the tenant has no such
/// version (whether or not another tenant does).
async fn version_row(
    conn: &mut AnyConnection,
    tenant: TenantId,
    version: i64,
) -> Result<PluginVersion> {
    let row = sqlx::query(versions_query!("WHERE v.tenant_id = $1 AND v.version = $2"))
        .bind(tenant.0)
        .bind(version)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!("dial-plan version {version} of tenant {tenant}"))
        })?;
    version_from_row(&row)
}

fn version_from_row(row: &AnyRow) -> Result<PluginVersion> {
    let active: i64 = row.try_get("active")?;
    Ok(PluginVersion {
        tenant: TenantId(row.try_get("tenant_id")?),
        version: row.try_get("version")?,
        hash: row.try_get("hash")?,
        size: row.try_get("size")?,
        uploaded_at_ms: row.try_get("uploaded_ms")?,
        active: active == 1,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    async fn two_tenants() -> (Store, TenantId, TenantId) {
        let store = crate::testdb::store().await.expect("open");
        let a = store.add_tenant("a", "a.example").await.expect("a").id;
        let b = store.add_tenant("b", "b.example").await.expect("b").id;
        (store, a, b)
    }

    async fn blob_count(store: &Store) -> i64 {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM plugin_blobs")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        sqlx::Row::try_get(&row, "n").expect("n")
    }

    fn versions(list: &[PluginVersion]) -> Vec<(i64, bool)> {
        list.iter().map(|v| (v.version, v.active)).collect()
    }

    backend_test! {
        async fn versions_are_numbered_per_tenant_and_the_newest_is_active() {
            let (store, a, b) = two_tenants().await;
            assert!(store.list_dialplans(a).await.expect("list").is_empty());
            let v1 = store.install_dialplan(a, b"one", 1_000).await.expect("v1");
            assert_eq!(v1.version, 1);
            assert!(v1.active);
            assert_eq!(v1.size, 3);
            assert_eq!(v1.uploaded_at_ms, 1_000);
            assert_eq!(v1.hash.len(), 64);
            let v2 = store.install_dialplan(a, b"two", 2_000).await.expect("v2");
            assert_eq!(v2.version, 2);
            let b1 = store.install_dialplan(b, b"one", 3_000).await.expect("b1");
            assert_eq!(b1.version, 1);
            assert_eq!(
                versions(&store.list_dialplans(a).await.expect("list")),
                [(1, false), (2, true)]
            );
            assert_eq!(
                store.plugin_blob(&v2.hash).await.expect("blob"),
                Some(b"two".to_vec())
            );
            assert_eq!(store.plugin_blob("00").await.expect("blob"), None);
            // Unknown tenant and empty bytes are refused.
            assert!(matches!(
                store.install_dialplan(TenantId(99), b"x", 1).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.install_dialplan(a, b"", 1).await,
                Err(Error::Invalid(_))
            ));
            assert_eq!(store.list_dialplans(a).await.expect("list").len(), 2);
        }
    }

    backend_test! {
        async fn identical_bytes_are_stored_once() {
            let (store, a, b) = two_tenants().await;
            let v1 = store.install_dialplan(a, b"same", 1).await.expect("v1");
            let v2 = store.install_dialplan(a, b"same", 2).await.expect("v2");
            let b1 = store.install_dialplan(b, b"same", 3).await.expect("b1");
            let p = store
                .install_policy("p", None, b"same", 4)
                .await
                .expect("policy");
            assert_eq!(v1.hash, v2.hash);
            assert_eq!(v1.hash, b1.hash);
            assert_eq!(v1.hash, p.hash);
            assert_eq!(blob_count(&store).await, 1);
            store.install_dialplan(a, b"other", 5).await.expect("v3");
            assert_eq!(blob_count(&store).await, 2);
        }
    }

    backend_test! {
        async fn activation_and_rollback() {
            let (store, a, _) = two_tenants().await;
            for (i, bytes) in [b"v1", b"v2", b"v3"].iter().enumerate() {
                store
                    .install_dialplan(a, *bytes, i as i64)
                    .await
                    .expect("install");
            }
            // None: one step below the active version.
            let back = store.rollback_dialplan(a, None).await.expect("rollback");
            assert_eq!((back.version, back.active), (2, true));
            let back = store.rollback_dialplan(a, None).await.expect("rollback");
            assert_eq!(back.version, 1);
            assert!(matches!(
                store.rollback_dialplan(a, None).await,
                Err(Error::NotFound(_))
            ));
            // A given version, forwards or backwards.
            let v3 = store.rollback_dialplan(a, Some(3)).await.expect("to 3");
            assert_eq!(v3.version, 3);
            assert_eq!(
                versions(&store.list_dialplans(a).await.expect("list")),
                [(1, false), (2, false), (3, true)]
            );
            let v1 = store.activate_dialplan(a, 1).await.expect("activate");
            assert!(v1.active);
            // A missing version changes nothing.
            assert!(matches!(
                store.activate_dialplan(a, 7).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.rollback_dialplan(a, Some(0)).await,
                Err(Error::NotFound(_))
            ));
            assert_eq!(
                versions(&store.list_dialplans(a).await.expect("list")),
                [(1, true), (2, false), (3, false)]
            );
            let active = store.active_dialplans().await.expect("active");
            assert_eq!(active.len(), 1);
            assert_eq!((active[0].0, active[0].1.version), (a, 1));
            assert_eq!(active[0].1.hash, v1.hash);
        }
    }

    backend_test! {
        async fn rollback_without_any_version_is_an_error() {
            let (store, a, _) = two_tenants().await;
            assert!(matches!(
                store.rollback_dialplan(a, None).await,
                Err(Error::NotFound(_))
            ));
            assert!(store.active_dialplans().await.expect("active").is_empty());
        }
    }

    backend_test! {
        async fn tenants_cannot_see_or_activate_each_others_versions() {
            let (store, a, b) = two_tenants().await;
            store.install_dialplan(a, b"a1", 1).await.expect("a1");
            store.install_dialplan(a, b"a2", 2).await.expect("a2");
            store.install_dialplan(b, b"b1", 3).await.expect("b1");
            assert_eq!(store.list_dialplans(b).await.expect("list").len(), 1);
            assert!(
                store
                    .list_dialplans(b)
                    .await
                    .expect("list")
                    .iter()
                    .all(|v| v.tenant == b)
            );
            // B has no version 2: A's version 2 is not reachable through B.
            assert!(matches!(
                store.activate_dialplan(b, 2).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.rollback_dialplan(b, Some(2)).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.rollback_dialplan(b, None).await,
                Err(Error::NotFound(_))
            ));
            let active = store.active_dialplans().await.expect("active");
            let summary: Vec<_> = active.iter().map(|(t, v)| (*t, v.version)).collect();
            assert_eq!(summary, [(a, 2), (b, 1)]);
        }
    }

    backend_test! {
        async fn policies_are_replaced_by_name_and_removed() {
            let (store, a, _) = two_tenants().await;
            let p = store
                .install_policy("fraud", None, b"p1", 10)
                .await
                .expect("install");
            assert_eq!(p.tenant, None);
            store
                .install_policy("own-limits", Some(a), b"p2", 11)
                .await
                .expect("install");
            let replaced = store
                .install_policy("fraud", None, b"p3", 12)
                .await
                .expect("replace");
            let list = store.list_policies().await.expect("list");
            assert_eq!(list.len(), 2);
            assert_eq!(list[0], replaced);
            assert_eq!(list[1].name, "own-limits");
            assert_eq!(list[1].tenant, Some(a));
            // The replaced bytes stay as the version to roll back to; the
            // new ones are there.
            assert_eq!(replaced.previous_hash.as_ref(), Some(&p.hash));
            assert_eq!(
                store.plugin_blob(&p.hash).await.expect("blob"),
                Some(b"p1".to_vec())
            );
            assert_eq!(
                store.plugin_blob(&replaced.hash).await.expect("blob"),
                Some(b"p3".to_vec())
            );
            // One more install: the version before the previous one is gone.
            store
                .install_policy("fraud", None, b"p4", 13)
                .await
                .expect("replace");
            assert_eq!(store.plugin_blob(&p.hash).await.expect("blob"), None);
            store.remove_policy("fraud").await.expect("remove");
            assert!(matches!(
                store.remove_policy("fraud").await,
                Err(Error::NotFound(_))
            ));
            assert_eq!(store.list_policies().await.expect("list").len(), 1);
            assert_eq!(blob_count(&store).await, 1);
            // Bad names and unknown tenants are refused.
            assert!(matches!(
                store.install_policy("bad name", None, b"x", 1).await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.install_policy("x", Some(TenantId(99)), b"x", 1).await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn a_policy_rolls_back_to_its_version_before_and_forward_again() {
            let (store, _, _) = two_tenants().await;
            let first = store
                .install_policy("fraud", None, b"v1", 10)
                .await
                .expect("install");
            assert_eq!(first.previous_hash, None);
            assert!(matches!(
                store.rollback_policy("fraud", 11).await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.rollback_policy("nope", 11).await,
                Err(Error::NotFound(_))
            ));
            let second = store
                .install_policy("fraud", None, b"v2", 12)
                .await
                .expect("install");
            // Installing the same bytes again keeps the version to go back to.
            let again = store
                .install_policy("fraud", None, b"v2", 13)
                .await
                .expect("install");
            assert_eq!(again.previous_hash.as_ref(), Some(&first.hash));
            let back = store.rollback_policy("fraud", 14).await.expect("rollback");
            assert_eq!(back.hash, first.hash);
            assert_eq!(back.previous_hash.as_ref(), Some(&second.hash));
            assert_eq!(back.installed_at_ms, 14);
            assert_eq!(
                store.list_policies().await.expect("list"),
                std::slice::from_ref(&back)
            );
            assert_eq!(
                store.plugin_blob(&back.hash).await.expect("blob"),
                Some(b"v1".to_vec())
            );
            let forward = store.rollback_policy("fraud", 15).await.expect("undo");
            assert_eq!(forward.hash, second.hash);
            assert_eq!(blob_count(&store).await, 2);
            store.remove_policy("fraud").await.expect("remove");
            assert_eq!(blob_count(&store).await, 0, "both versions' bytes go");
        }
    }

    /// One call-time write; whether it was applied.
    async fn put(store: &Store, tenant: TenantId, key: &str, value: Option<&[u8]>) -> bool {
        store
            .plugin_kv_apply(&[(tenant, key.to_owned(), value.map(<[u8]>::to_vec))])
            .await
            .expect("apply")[0]
    }

    backend_test! {
        async fn plugin_storage_is_per_tenant() {
            let (store, a, b) = two_tenants().await;
            assert!(put(&store, a, "count", Some(b"1")).await);
            assert!(put(&store, a, "count", Some(b"2")).await);
            assert!(put(&store, b, "count", Some(b"9")).await);
            assert!(put(&store, b, "gone", Some(b"x")).await);
            assert!(put(&store, b, "gone", None).await);
            assert_eq!(
                store.plugin_kv_all().await.expect("all"),
                vec![
                    (a, "count".to_owned(), b"2".to_vec()),
                    (b, "count".to_owned(), b"9".to_vec())
                ]
            );
            assert!(!put(&store, a, "", Some(b"x")).await);
            assert!(!put(&store, a, &"k".repeat(257), Some(b"x")).await);
            assert!(!put(&store, TenantId(99), "k", Some(b"x")).await);
        }
    }

    backend_test! {
        async fn generation_moves_on_plugins_but_not_on_storage() {
            let (store, a, _) = two_tenants().await;
            let g0 = store.generation().await.expect("g");
            store.install_dialplan(a, b"v1", 1).await.expect("v1");
            let g1 = store.generation().await.expect("g");
            assert!(g1 > g0);
            store.install_dialplan(a, b"v2", 2).await.expect("v2");
            store.rollback_dialplan(a, None).await.expect("rollback");
            let g2 = store.generation().await.expect("g");
            assert!(g2 > g1);
            store
                .install_policy("p", None, b"p", 3)
                .await
                .expect("policy");
            let g3 = store.generation().await.expect("g");
            assert!(g3 > g2);
            store.remove_policy("p").await.expect("remove");
            let g4 = store.generation().await.expect("g");
            assert!(g4 > g3);
            assert!(put(&store, a, "k", Some(b"v")).await);
            assert!(put(&store, a, "k", None).await);
            assert_eq!(store.generation().await.expect("g"), g4);
            // A failed activation leaves it alone too.
            assert!(store.activate_dialplan(a, 9).await.is_err());
            assert_eq!(store.generation().await.expect("g"), g4);
        }
    }

    backend_test! {
        async fn pruning_keeps_the_newest_the_active_and_the_one_before() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            for i in 0..6u8 {
                store
                    .install_dialplan(t, &[0, b'a', b's', b'm', i], 1)
                    .await
                    .expect("install");
            }
            assert_eq!(store.dialplan_bytes(t).await.expect("bytes"), 30);
            store.activate_dialplan(t, 3).await.expect("activate");
            let pruned = store.prune_dialplans(t, 2).await.expect("prune");
            assert_eq!(pruned, vec![1, 4]);
            let left: Vec<i64> = store
                .list_dialplans(t)
                .await
                .expect("list")
                .iter()
                .map(|v| v.version)
                .collect();
            assert_eq!(left, vec![2, 3, 5, 6]);
            assert_eq!(store.dialplan_bytes(t).await.expect("bytes"), 20);
            store
                .rollback_dialplan(t, None)
                .await
                .expect("rollback to 2");
            let next = store
                .install_dialplan(t, b"\0asm-new", 2)
                .await
                .expect("install");
            assert_eq!(next.version, 7, "version numbers are not reused");
        }
    }

    backend_test! {
        async fn tenant_policies_have_their_own_names_and_bound() {
            let (store, a, b) = two_tenants().await;
            store
                .install_policy("fraud", None, b"provider", 1)
                .await
                .expect("provider policy");
            let g0 = store.generation().await.expect("g");
            // The same name in a tenant's own space leaves the provider's alone.
            store
                .install_tenant_policy(a, "fraud", b"mine", 2)
                .await
                .expect("tenant policy");
            assert!(store.generation().await.expect("g") > g0);
            assert_eq!(store.list_policies().await.expect("list").len(), 1);
            assert_eq!(store.list_tenant_policies(a).await.expect("a").len(), 1);
            assert!(store.list_tenant_policies(b).await.expect("b").is_empty());
            // Another tenant cannot remove it.
            assert!(matches!(
                store.remove_tenant_policy(b, "fraud").await,
                Err(Error::NotFound(_))
            ));
            // Replacing keeps one row and drops the old bytes.
            store
                .install_tenant_policy(a, "fraud", b"mine-2", 3)
                .await
                .expect("replace");
            assert_eq!(store.all_tenant_policies().await.expect("all").len(), 1);
            assert_eq!(blob_count(&store).await, 2);
            for i in 1..MAX_TENANT_POLICIES {
                store
                    .install_tenant_policy(a, &format!("p{i}"), b"x", 4)
                    .await
                    .expect("within the bound");
            }
            assert!(matches!(
                store.install_tenant_policy(a, "one-more", b"x", 5).await,
                Err(Error::Invalid(_))
            ));
            store
                .remove_tenant_policy(a, "fraud")
                .await
                .expect("remove");
            assert_eq!(blob_count(&store).await, 2, "provider bytes and x stay");
        }
    }
}
