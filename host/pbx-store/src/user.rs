//! API users (argon2id password hashes, optional TOTP) and failed-login counters.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Error, Result, Store, TenantId};

/// What an API user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserRole {
    /// Everything, across tenants.
    ProviderAdmin,
    /// Everything inside one tenant.
    TenantAdmin,
    /// Their own extension and call records.
    User,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::ProviderAdmin => "provider-admin",
            UserRole::TenantAdmin => "tenant-admin",
            UserRole::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<UserRole> {
        Some(match s {
            "provider-admin" => UserRole::ProviderAdmin,
            "tenant-admin" => UserRole::TenantAdmin,
            "user" => UserRole::User,
            _ => return None,
        })
    }
}

/// A user to create. The caller hashes the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub role: UserRole,
    /// `None` exactly for provider admins.
    pub tenant: Option<TenantId>,
    /// The extension a `user` may manage (must exist in the tenant).
    pub extension: Option<String>,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub created_at_ms: i64,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: UserRole,
    pub tenant: Option<TenantId>,
    pub extension: Option<String>,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub created_at_ms: i64,
}

/// A user's TOTP secret and whether enrollment was confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpState {
    /// The shared secret, base32.
    pub secret: String,
    pub confirmed: bool,
    /// The last time step a code was accepted for (codes are single use).
    pub last_step: i64,
}

/// Failed logins recorded under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    pub failures: u32,
    pub last_failure_ms: i64,
}

macro_rules! columns {
    () => {
        "id, username, role, tenant_id, extension, password_hash, created_at_ms"
    };
}

impl Store {
    /// Creates a user. A taken username gives [`Error::Conflict`]; a role and
    /// tenant that do not fit (provider admin with a tenant, anyone else without
    /// one), an unknown tenant or an unknown extension give [`Error::Invalid`] or
    /// [`Error::NotFound`].
    pub async fn add_user(&self, user: &NewUser) -> Result<User> {
        if user.username.is_empty()
            || user.username.len() > 64
            || user.username.chars().any(|c| c.is_control() || c == ':')
        {
            return Err(Error::Invalid("username must be 1-64 characters".into()));
        }
        if (user.role == UserRole::ProviderAdmin) != user.tenant.is_none() {
            return Err(Error::Invalid(
                "provider admins have no tenant; other users need one".into(),
            ));
        }
        if user.extension.is_some() && user.role != UserRole::User {
            return Err(Error::Invalid("only a user is tied to an extension".into()));
        }
        let mut tx = self.write_tx().await?;
        if let Some(tenant) = user.tenant {
            crate::tenant::ensure_tenant(&mut tx, tenant).await?;
            if let Some(ext) = &user.extension {
                let found =
                    sqlx::query("SELECT 1 FROM extensions WHERE tenant_id = ? AND number = ?")
                        .bind(tenant.0)
                        .bind(ext)
                        .fetch_optional(&mut *tx)
                        .await?;
                if found.is_none() {
                    return Err(Error::NotFound(format!(
                        "extension {ext} of tenant {tenant}"
                    )));
                }
            }
        }
        let row = sqlx::query(
            "INSERT INTO users (username, role, tenant_id, extension, password_hash, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&user.username)
        .bind(user.role.as_str())
        .bind(user.tenant.map(|t| t.0))
        .bind(&user.extension)
        .bind(&user.password_hash)
        .bind(user.created_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            Error::conflict_on_unique(e, || format!("username {:?} is taken", user.username))
        })?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(User {
            id,
            username: user.username.clone(),
            role: user.role,
            tenant: user.tenant,
            extension: user.extension.clone(),
            password_hash: user.password_hash.clone(),
            created_at_ms: user.created_at_ms,
        })
    }

    /// The user with this username, whatever its tenant (logins name no tenant).
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// The user with this id, whatever its tenant (token subjects are user ids).
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// The users of one tenant, by id.
    pub async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM users WHERE tenant_id = ? ORDER BY id"
        ))
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_row).collect()
    }

    /// The provider admins, by id.
    pub async fn list_provider_admins(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM users WHERE tenant_id IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_row).collect()
    }

    /// Removes a user of a tenant. [`Error::NotFound`] when the tenant has no
    /// user of that name.
    pub async fn remove_user(&self, tenant: TenantId, username: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM users WHERE tenant_id = ? AND username = ?")
            .bind(tenant.0)
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "user {username} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    /// Replaces a user's password hash.
    pub async fn set_user_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// The user's TOTP state, if enrollment was started.
    pub async fn totp(&self, user_id: i64) -> Result<Option<TotpState>> {
        let row = sqlx::query("SELECT secret, confirmed, last_step FROM totp WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(TotpState {
                secret: row.try_get("secret")?,
                confirmed: row.try_get::<i64, _>("confirmed")? != 0,
                last_step: row.try_get("last_step")?,
            })),
            None => Ok(None),
        }
    }

    /// Starts (or restarts) TOTP enrollment with a new, unconfirmed secret.
    /// Refused with [`Error::Conflict`] once enrollment was confirmed.
    pub async fn begin_totp(&self, user_id: i64, secret: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT confirmed FROM totp WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row
            && row.try_get::<i64, _>("confirmed")? != 0
        {
            return Err(Error::Conflict("TOTP is already enrolled".into()));
        }
        sqlx::query("DELETE FROM totp WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO totp (user_id, secret, confirmed, last_step) VALUES (?, ?, 0, -1)",
        )
        .bind(user_id)
        .bind(secret)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a code of time step `step` as used and enrollment as confirmed.
    /// Returns `false` (and changes nothing) when a code of this or a later step
    /// was already used, so every code works once.
    pub async fn use_totp_step(&self, user_id: i64, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE totp SET last_step = ?, confirmed = 1 WHERE user_id = ? AND last_step < ?",
        )
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Failed logins recorded under `key`.
    pub async fn login_failures(&self, key: &str) -> Result<Option<LoginFailures>> {
        let row = sqlx::query("SELECT failures, last_failure_ms FROM login_attempts WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(failures_row).transpose()
    }

    /// Counts one more failed login under `key` and returns the new count.
    pub async fn record_login_failure(&self, key: &str, now_ms: i64) -> Result<LoginFailures> {
        let row = sqlx::query(
            "INSERT INTO login_attempts (key, failures, last_failure_ms) VALUES (?, 1, ?) \
             ON CONFLICT (key) DO UPDATE SET failures = login_attempts.failures + 1, \
             last_failure_ms = excluded.last_failure_ms \
             RETURNING failures, last_failure_ms",
        )
        .bind(key)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        failures_row(&row)
    }

    /// Forgets the failed logins under `key` (after a successful login).
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_attempts WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn failures_row(row: &SqliteRow) -> Result<LoginFailures> {
    let failures: i64 = row.try_get("failures")?;
    Ok(LoginFailures {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        last_failure_ms: row.try_get("last_failure_ms")?,
    })
}

fn user_row(row: &SqliteRow) -> Result<User> {
    let id: i64 = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let role = UserRole::parse(&role)
        .ok_or_else(|| Error::Invalid(format!("stored user {id} has role {role:?}")))?;
    Ok(User {
        id,
        username: row.try_get("username")?,
        role,
        tenant: row.try_get::<Option<i64>, _>("tenant_id")?.map(TenantId),
        extension: row.try_get("extension")?,
        password_hash: row.try_get("password_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn new_user(name: &str, role: UserRole, tenant: Option<TenantId>) -> NewUser {
        NewUser {
            username: name.into(),
            role,
            tenant,
            extension: None,
            password_hash: "$argon2id$fake".into(),
            created_at_ms: 5,
        }
    }

    #[tokio::test]
    async fn users_roles_and_tenants() {
        let store = Store::open_in_memory().await.expect("open");
        let t = store.add_tenant("a", "a.example").await.expect("t").id;
        store.add_extension(t, "100", "pw").await.expect("ext");
        let root = store
            .add_user(&new_user("root", UserRole::ProviderAdmin, None))
            .await
            .expect("root");
        let mut u = new_user("alice", UserRole::User, Some(t));
        u.extension = Some("100".into());
        let alice = store.add_user(&u).await.expect("alice");
        assert_eq!(
            store.user_by_name("alice").await.expect("get"),
            Some(alice.clone())
        );
        assert_eq!(
            store.user_by_id(root.id).await.expect("get"),
            Some(root.clone())
        );
        assert_eq!(
            store.list_users(t).await.expect("list"),
            vec![alice.clone()]
        );
        assert_eq!(
            store.list_provider_admins().await.expect("list"),
            vec![root]
        );

        assert!(matches!(store.add_user(&u).await, Err(Error::Conflict(_))));
        let bad = new_user("x", UserRole::ProviderAdmin, Some(t));
        assert!(matches!(store.add_user(&bad).await, Err(Error::Invalid(_))));
        let bad = new_user("x", UserRole::TenantAdmin, None);
        assert!(matches!(store.add_user(&bad).await, Err(Error::Invalid(_))));
        let mut bad = new_user("x", UserRole::User, Some(t));
        bad.extension = Some("999".into());
        assert!(matches!(
            store.add_user(&bad).await,
            Err(Error::NotFound(_))
        ));

        store
            .set_user_password_hash(alice.id, "new")
            .await
            .expect("pw");
        let got = store
            .user_by_id(alice.id)
            .await
            .expect("get")
            .expect("some");
        assert_eq!(got.password_hash, "new");
        assert!(matches!(
            store.remove_user(TenantId(99), "alice").await,
            Err(Error::NotFound(_))
        ));
        store.remove_user(t, "alice").await.expect("rm");
        assert_eq!(store.user_by_name("alice").await.expect("get"), None);
    }

    #[tokio::test]
    async fn totp_codes_are_single_use() {
        let store = Store::open_in_memory().await.expect("open");
        let root = store
            .add_user(&new_user("root", UserRole::ProviderAdmin, None))
            .await
            .expect("root");
        assert_eq!(store.totp(root.id).await.expect("totp"), None);
        store.begin_totp(root.id, "SECRET").await.expect("begin");
        let st = store.totp(root.id).await.expect("totp").expect("some");
        assert!(!st.confirmed);
        assert!(store.use_totp_step(root.id, 10).await.expect("use"));
        assert!(!store.use_totp_step(root.id, 10).await.expect("reuse"));
        assert!(!store.use_totp_step(root.id, 9).await.expect("older"));
        assert!(
            store
                .totp(root.id)
                .await
                .expect("totp")
                .expect("some")
                .confirmed
        );
        assert!(matches!(
            store.begin_totp(root.id, "OTHER").await,
            Err(Error::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn login_failures_count_and_clear() {
        let store = Store::open_in_memory().await.expect("open");
        assert_eq!(store.login_failures("user:a").await.expect("get"), None);
        store.record_login_failure("user:a", 10).await.expect("1");
        let f = store.record_login_failure("user:a", 20).await.expect("2");
        assert_eq!(
            f,
            LoginFailures {
                failures: 2,
                last_failure_ms: 20
            }
        );
        store.clear_login_failures("user:a").await.expect("clear");
        assert_eq!(store.login_failures("user:a").await.expect("get"), None);
    }
}
