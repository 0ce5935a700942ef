//! Plugin configuration by owner, and the admin side of the plugins' storage.
//!
//! - A provider policy's configuration (`policy_config`) belongs to the
//!   provider: a provider-wide value per key, and per-tenant overrides that win
//!   over it. Nothing a tenant can reach writes or reads these rows.
//! - A tenant policy's configuration (`tenant_policy_config`) belongs to that
//!   tenant and is set by its admins.
//! - The tenants' plugin storage (`plugin_kv`) can also be set by the tenant's
//!   admins ([`Store::plugin_kv_admin_put`]); those writes move the provisioning
//!   generation so a running server picks them up, while the server's own
//!   call-time writes ([`Store::plugin_kv_apply`]) do not.
//!
//! Every write here is bounded: key and value lengths, keys per owner, bytes of
//! storage per tenant.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::tenant::ensure_tenant;
use crate::{Error, Result, Store, TenantId};

/// Longest configuration key, in bytes.
pub const MAX_CONFIG_KEY: usize = 128;
/// Longest configuration value, in bytes.
pub const MAX_CONFIG_VALUE: usize = 1024;
/// Most configuration keys of one policy in one scope (provider-wide, one
/// tenant's override, or one tenant's own policy).
pub const MAX_CONFIG_KEYS: i64 = 256;
/// Bytes of keys plus values a tenant's plugin storage may hold. The plugin
/// host enforces the same quota on call-time writes.
pub const PLUGIN_KV_QUOTA_BYTES: usize = 1 << 20;
/// Longest plugin storage key, in bytes (the plugin runtime's own limit).
pub const MAX_KV_KEY: usize = 256;

/// Whose configuration of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigScope {
    /// The provider's configuration of a provider policy: `None` is the
    /// provider-wide value, `Some(t)` the override for tenant `t`.
    Provider(Option<TenantId>),
    /// A tenant's configuration of its own policy.
    Tenant(TenantId),
}

/// One configuration row, as the running server loads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub scope: ConfigScope,
    pub policy: String,
    pub key: String,
    pub value: String,
}

/// A configuration key: 1-128 bytes of `[A-Za-z0-9._:-]`.
fn config_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_CONFIG_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "configuration keys are 1-{MAX_CONFIG_KEY} characters of [A-Za-z0-9._:-]"
        )))
    }
}

/// A configuration value: at most 1024 bytes of text without control characters.
fn config_value(value: &str) -> Result<()> {
    if value.len() > MAX_CONFIG_VALUE || value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "configuration values are at most {MAX_CONFIG_VALUE} bytes of printable text"
        )));
    }
    Ok(())
}

/// A plugin storage key: 1-256 bytes.
pub(crate) fn kv_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KV_KEY {
        return Err(Error::Invalid(format!(
            "plugin storage keys must be 1-{MAX_KV_KEY} bytes"
        )));
    }
    Ok(())
}

impl Store {
    /// Sets `key` of `policy`'s configuration in `scope`, replacing any value
    /// there. The policy need not be installed yet (the shipped ones never are).
    pub async fn policy_config_set(
        &self,
        scope: ConfigScope,
        policy: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        crate::plugin::policy_name(policy)?;
        config_key(key)?;
        config_value(value)?;
        let mut tx = self.write_tx().await?;
        let exists = config_get(&mut tx, scope, policy, key).await?.is_some();
        if !exists && config_count(&mut tx, scope, policy).await? >= MAX_CONFIG_KEYS {
            return Err(Error::Invalid(format!(
                "policy {policy} has {MAX_CONFIG_KEYS} configuration keys in this scope already"
            )));
        }
        match scope {
            ConfigScope::Provider(tenant) => {
                if let Some(t) = tenant {
                    ensure_tenant(&mut tx, t).await?;
                }
                config_delete(&mut tx, scope, policy, key).await?;
                sqlx::query(
                    "INSERT INTO policy_config (policy, tenant_id, key, value) VALUES ($1, $2, $3, $4)",
                )
                .bind(policy)
                .bind(tenant.map(|t| t.0))
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
            ConfigScope::Tenant(t) => {
                ensure_tenant(&mut tx, t).await?;
                sqlx::query(
                    "INSERT INTO tenant_policy_config (tenant_id, policy, key, value) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, policy, key) \
                     DO UPDATE SET value = excluded.value",
                )
                .bind(t.0)
                .bind(policy)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The value of `key` in exactly `scope` (no fall-back from a tenant's
    /// override to the provider-wide value).
    pub async fn policy_config_get(
        &self,
        scope: ConfigScope,
        policy: &str,
        key: &str,
    ) -> Result<Option<String>> {
        let mut conn = self.pool.acquire().await?;
        config_get(&mut conn, scope, policy, key).await
    }

    /// Every key and value of `policy` in exactly `scope`, by key.
    pub async fn policy_config_list(
        &self,
        scope: ConfigScope,
        policy: &str,
    ) -> Result<Vec<(String, String)>> {
        let rows = match scope {
            ConfigScope::Provider(None) => {
                sqlx::query(
                    "SELECT key, value FROM policy_config \
                     WHERE policy = $1 AND tenant_id IS NULL ORDER BY key",
                )
                .bind(policy)
                .fetch_all(&self.pool)
                .await?
            }
            ConfigScope::Provider(Some(t)) => {
                sqlx::query(
                    "SELECT key, value FROM policy_config \
                     WHERE policy = $1 AND tenant_id = $2 ORDER BY key",
                )
                .bind(policy)
                .bind(t.0)
                .fetch_all(&self.pool)
                .await?
            }
            ConfigScope::Tenant(t) => {
                sqlx::query(
                    "SELECT key, value FROM tenant_policy_config \
                     WHERE tenant_id = $1 AND policy = $2 ORDER BY key",
                )
                .bind(t.0)
                .bind(policy)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    /// Removes `key` from `policy`'s configuration in `scope`; false when it
    /// was not set.
    pub async fn policy_config_delete(
        &self,
        scope: ConfigScope,
        policy: &str,
        key: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let removed = config_delete(&mut tx, scope, policy, key).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Every configuration row of every scope (the server's reload).
    pub async fn all_policy_config(&self) -> Result<Vec<ConfigEntry>> {
        let mut tx = self.read_tx().await?;
        let provider = sqlx::query(
            "SELECT policy, tenant_id, key, value FROM policy_config ORDER BY policy, key",
        )
        .fetch_all(&mut *tx)
        .await?;
        let tenant = sqlx::query(
            "SELECT tenant_id, policy, key, value FROM tenant_policy_config \
             ORDER BY tenant_id, policy, key",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut all = Vec::with_capacity(provider.len() + tenant.len());
        for r in &provider {
            all.push(ConfigEntry {
                scope: ConfigScope::Provider(
                    r.try_get::<Option<i64>, _>("tenant_id")?.map(TenantId),
                ),
                policy: r.try_get("policy")?,
                key: r.try_get("key")?,
                value: r.try_get("value")?,
            });
        }
        for r in &tenant {
            all.push(ConfigEntry {
                scope: ConfigScope::Tenant(TenantId(r.try_get("tenant_id")?)),
                policy: r.try_get("policy")?,
                key: r.try_get("key")?,
                value: r.try_get("value")?,
            });
        }
        Ok(all)
    }

    /// One key of the tenant's plugin storage.
    pub async fn plugin_kv_get(&self, tenant: TenantId, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM plugin_kv WHERE tenant_id = $1 AND key = $2")
            .bind(tenant.0)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    /// The tenant's plugin storage, by key.
    pub async fn plugin_kv_list(&self, tenant: TenantId) -> Result<Vec<(String, Vec<u8>)>> {
        let rows =
            sqlx::query("SELECT key, value FROM plugin_kv WHERE tenant_id = $1 ORDER BY key")
                .bind(tenant.0)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    /// An admin's write to a tenant's plugin storage: sets (`Some`) or deletes
    /// (`None`) one key within the tenant's quota ([`PLUGIN_KV_QUOTA_BYTES`])
    /// and moves the provisioning generation, so a running server reloads the
    /// tenant's storage on its next poll. Returns false for a delete of a key
    /// that was not there.
    pub async fn plugin_kv_admin_put(
        &self,
        tenant: TenantId,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<bool> {
        kv_key(key)?;
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let changed = match value {
            Some(value) => {
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(OCTET_LENGTH(key) + LENGTH(value)), 0) AS BIGINT) AS used \
                     FROM plugin_kv WHERE tenant_id = $1 AND key <> $2",
                )
                .bind(tenant.0)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                let used: i64 = row.try_get("used")?;
                let used = usize::try_from(used).unwrap_or(usize::MAX);
                if used.saturating_add(key.len() + value.len()) > PLUGIN_KV_QUOTA_BYTES {
                    return Err(Error::Invalid(format!(
                        "the tenant's plugin storage would exceed its quota of \
                         {PLUGIN_KV_QUOTA_BYTES} bytes"
                    )));
                }
                sqlx::query(
                    "INSERT INTO plugin_kv (tenant_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(tenant.0)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
                true
            }
            None => {
                sqlx::query("DELETE FROM plugin_kv WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant.0)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0
            }
        };
        if changed {
            sqlx::query("UPDATE directory_generation SET value = value + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// The plugin host's call-time writes, in one transaction: each entry sets
    /// (`Some`) or deletes (`None`) one key. Returns, per entry, whether it was
    /// applied (false: its tenant no longer exists or the key is invalid);
    /// an `Err` means nothing was written. Does not move the generation.
    pub async fn plugin_kv_apply(
        &self,
        batch: &[(TenantId, String, Option<Vec<u8>>)],
    ) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let mut applied = Vec::with_capacity(batch.len());
        for (tenant, key, value) in batch {
            if kv_key(key).is_err() {
                applied.push(false);
                continue;
            }
            let ok = match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO plugin_kv (tenant_id, key, value) \
                         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $4) \
                         ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(tenant.0)
                    .bind(key)
                    .bind(value)
                    .bind(tenant.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0
                }
                None => {
                    sqlx::query("DELETE FROM plugin_kv WHERE tenant_id = $1 AND key = $2")
                        .bind(tenant.0)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    true
                }
            };
            applied.push(ok);
        }
        tx.commit().await?;
        Ok(applied)
    }
}

async fn config_get(
    conn: &mut AnyConnection,
    scope: ConfigScope,
    policy: &str,
    key: &str,
) -> Result<Option<String>> {
    let row =
        match scope {
            ConfigScope::Provider(None) => {
                sqlx::query(
                    "SELECT value FROM policy_config \
                 WHERE policy = $1 AND tenant_id IS NULL AND key = $2",
                )
                .bind(policy)
                .bind(key)
                .fetch_optional(conn)
                .await?
            }
            ConfigScope::Provider(Some(t)) => sqlx::query(
                "SELECT value FROM policy_config WHERE policy = $1 AND tenant_id = $2 AND key = $3",
            )
            .bind(policy)
            .bind(t.0)
            .bind(key)
            .fetch_optional(conn)
            .await?,
            ConfigScope::Tenant(t) => {
                sqlx::query(
                    "SELECT value FROM tenant_policy_config \
                 WHERE tenant_id = $1 AND policy = $2 AND key = $3",
                )
                .bind(t.0)
                .bind(policy)
                .bind(key)
                .fetch_optional(conn)
                .await?
            }
        };
    Ok(match row {
        Some(r) => Some(r.try_get("value")?),
        None => None,
    })
}

async fn config_count(conn: &mut AnyConnection, scope: ConfigScope, policy: &str) -> Result<i64> {
    let row = match scope {
        ConfigScope::Provider(None) => {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM policy_config WHERE policy = $1 AND tenant_id IS NULL",
            )
            .bind(policy)
            .fetch_one(conn)
            .await?
        }
        ConfigScope::Provider(Some(t)) => {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM policy_config WHERE policy = $1 AND tenant_id = $2",
            )
            .bind(policy)
            .bind(t.0)
            .fetch_one(conn)
            .await?
        }
        ConfigScope::Tenant(t) => sqlx::query(
            "SELECT COUNT(*) AS n FROM tenant_policy_config WHERE tenant_id = $1 AND policy = $2",
        )
        .bind(t.0)
        .bind(policy)
        .fetch_one(conn)
        .await?,
    };
    Ok(row.try_get("n")?)
}

async fn config_delete(
    conn: &mut AnyConnection,
    scope: ConfigScope,
    policy: &str,
    key: &str,
) -> Result<bool> {
    let done = match scope {
        ConfigScope::Provider(None) => {
            sqlx::query(
                "DELETE FROM policy_config WHERE policy = $1 AND tenant_id IS NULL AND key = $2",
            )
            .bind(policy)
            .bind(key)
            .execute(conn)
            .await?
        }
        ConfigScope::Provider(Some(t)) => {
            sqlx::query(
                "DELETE FROM policy_config WHERE policy = $1 AND tenant_id = $2 AND key = $3",
            )
            .bind(policy)
            .bind(t.0)
            .bind(key)
            .execute(conn)
            .await?
        }
        ConfigScope::Tenant(t) => sqlx::query(
            "DELETE FROM tenant_policy_config WHERE tenant_id = $1 AND policy = $2 AND key = $3",
        )
        .bind(t.0)
        .bind(policy)
        .bind(key)
        .execute(conn)
        .await?,
    };
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_two_tenants() -> (Store, TenantId, TenantId) {
        let store = crate::testdb::store().await.expect("store");
        let a = store
            .add_tenant("acme", "acme.example")
            .await
            .expect("a")
            .id;
        let b = store
            .add_tenant("beta", "beta.example")
            .await
            .expect("b")
            .id;
        (store, a, b)
    }

    backend_test! {
        async fn provider_scopes_are_apart_and_overrides_are_per_tenant() {
            let (store, a, b) = store_with_two_tenants().await;
            let g0 = store.generation().await.unwrap();
            let global = ConfigScope::Provider(None);
            store
                .policy_config_set(global, "default-policy", "max-calls-per-minute", "20")
                .await
                .unwrap();
            store
                .policy_config_set(
                    ConfigScope::Provider(Some(a)),
                    "default-policy",
                    "max-calls-per-minute",
                    "5",
                )
                .await
                .unwrap();
            // Replacing a value keeps one row.
            store
                .policy_config_set(
                    ConfigScope::Provider(Some(a)),
                    "default-policy",
                    "max-calls-per-minute",
                    "6",
                )
                .await
                .unwrap();
            assert!(
                store.generation().await.unwrap() > g0,
                "changes move the generation"
            );
            assert_eq!(
                store
                    .policy_config_get(global, "default-policy", "max-calls-per-minute")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("20")
            );
            assert_eq!(
                store
                    .policy_config_list(ConfigScope::Provider(Some(a)), "default-policy")
                    .await
                    .unwrap(),
                vec![("max-calls-per-minute".to_string(), "6".to_string())]
            );
            assert!(
                store
                    .policy_config_list(ConfigScope::Provider(Some(b)), "default-policy")
                    .await
                    .unwrap()
                    .is_empty()
            );
            // The tenant's own scope is another table entirely.
            assert!(
                store
                    .policy_config_get(
                        ConfigScope::Tenant(a),
                        "default-policy",
                        "max-calls-per-minute"
                    )
                    .await
                    .unwrap()
                    .is_none()
            );
            let all = store.all_policy_config().await.unwrap();
            assert_eq!(all.len(), 2);
            assert!(
                store
                    .policy_config_delete(
                        ConfigScope::Provider(Some(a)),
                        "default-policy",
                        "max-calls-per-minute"
                    )
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .policy_config_delete(
                        ConfigScope::Provider(Some(a)),
                        "default-policy",
                        "max-calls-per-minute"
                    )
                    .await
                    .unwrap()
            );
            assert_eq!(store.all_policy_config().await.unwrap().len(), 1);
        }
    }

    backend_test! {
        async fn bad_keys_values_and_unknown_tenants_are_refused() {
            let (store, a, _) = store_with_two_tenants().await;
            let p = ConfigScope::Provider(None);
            for key in ["", "a b", "k\n", &"k".repeat(MAX_CONFIG_KEY + 1)] {
                assert!(matches!(
                    store.policy_config_set(p, "x", key, "1").await,
                    Err(Error::Invalid(_))
                ));
            }
            assert!(matches!(
                store.policy_config_set(p, "x", "k", "a\r\nb").await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store
                    .policy_config_set(p, "x", "k", &"v".repeat(MAX_CONFIG_VALUE + 1))
                    .await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.policy_config_set(p, "bad name", "k", "1").await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store
                    .policy_config_set(ConfigScope::Provider(Some(TenantId(999))), "x", "k", "1")
                    .await,
                Err(Error::NotFound(_))
            ));
            // Keys per scope are bounded.
            let own = ConfigScope::Tenant(a);
            for i in 0..MAX_CONFIG_KEYS {
                store
                    .policy_config_set(own, "mine", &format!("k{i}"), "1")
                    .await
                    .unwrap();
            }
            assert!(matches!(
                store.policy_config_set(own, "mine", "one-more", "1").await,
                Err(Error::Invalid(_))
            ));
            // Replacing an existing key is still allowed at the bound.
            store
                .policy_config_set(own, "mine", "k0", "2")
                .await
                .unwrap();
        }
    }

    backend_test! {
        async fn admin_storage_writes_move_the_generation_and_keep_the_quota() {
            let (store, a, b) = store_with_two_tenants().await;
            let g0 = store.generation().await.unwrap();
            assert!(store.plugin_kv_admin_put(a, "k", Some(b"v")).await.unwrap());
            let g1 = store.generation().await.unwrap();
            assert!(g1 > g0);
            assert_eq!(
                store.plugin_kv_get(a, "k").await.unwrap().as_deref(),
                Some(&b"v"[..])
            );
            assert_eq!(store.plugin_kv_get(b, "k").await.unwrap(), None);
            let big = vec![0u8; PLUGIN_KV_QUOTA_BYTES];
            assert!(matches!(
                store.plugin_kv_admin_put(a, "big", Some(&big)).await,
                Err(Error::Invalid(_))
            ));
            assert!(store.plugin_kv_admin_put(a, "k", None).await.unwrap());
            assert!(!store.plugin_kv_admin_put(a, "k", None).await.unwrap());
            assert!(store.plugin_kv_list(a).await.unwrap().is_empty());
            assert!(matches!(
                store
                    .plugin_kv_admin_put(TenantId(999), "k", Some(b"v"))
                    .await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn call_time_batches_skip_gone_tenants_and_leave_the_generation() {
            let (store, a, _) = store_with_two_tenants().await;
            let g0 = store.generation().await.unwrap();
            let applied = store
                .plugin_kv_apply(&[
                    (a, "x".into(), Some(b"1".to_vec())),
                    (TenantId(999), "x".into(), Some(b"1".to_vec())),
                    (a, String::new(), Some(b"1".to_vec())),
                    (a, "y".into(), Some(b"2".to_vec())),
                    (a, "y".into(), None),
                ])
                .await
                .unwrap();
            assert_eq!(applied, vec![true, false, false, true, true]);
            assert_eq!(store.generation().await.unwrap(), g0);
            assert_eq!(
                store.plugin_kv_list(a).await.unwrap(),
                vec![("x".to_string(), b"1".to_vec())]
            );
        }
    }
}
