//! API users (argon2id password hashes, optional TOTP) and failed-login counters.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::{Error, Result, Store, TenantId};

/// What an API user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"id": 7, "username": "alice", "role": "user", "tenant": 1, "extension": "1000", "created_at_ms": 1700000000000_i64, "disabled": false})))]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: UserRole,
    pub tenant: Option<TenantId>,
    pub extension: Option<String>,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub created_at_ms: i64,
    /// Goes up whenever the user's sessions must end (password or role change,
    /// disabling, logout, suspension of the tenant); a session token carries
    /// the epoch it was issued at.
    #[serde(skip)]
    pub session_epoch: i64,
    /// A disabled user cannot log in and has no valid session.
    #[serde(default)]
    pub disabled: bool,
}

/// Networks remembered per user for login anomaly alerts.
pub const MAX_LOGIN_NETWORKS: i64 = 64;

/// Longest username, in characters (after NFKC normalisation).
pub const MAX_USERNAME: usize = 64;

/// A change to a user; every change ends the user's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<UserRole>,
    pub disabled: Option<bool>,
    /// A new argon2id PHC string.
    pub password_hash: Option<String>,
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
        "id, username, role, tenant_id, extension, password_hash, created_at_ms, session_epoch, \
         disabled"
    };
}

impl Store {
    /// Creates a user. A taken username gives [`Error::Conflict`]; a role and
    /// tenant that do not fit (provider admin with a tenant, anyone else without
    /// one), an unknown tenant or an unknown extension give [`Error::Invalid`] or
    /// [`Error::NotFound`].
    ///
    /// The username is NFKC-normalised and checked by [`crate::normalize_name`]
    /// (and may not hold `:`); the stored user has the normalised name. The
    /// conflict error does not repeat the name.
    pub async fn add_user(&self, user: &NewUser) -> Result<User> {
        let username = crate::checks::name("username", &user.username, MAX_USERNAME)?;
        if username.contains(':') {
            return Err(Error::Invalid("username may not contain ':'".into()));
        }
        let user = &NewUser {
            username,
            ..user.clone()
        };
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
                    sqlx::query("SELECT 1 FROM extensions WHERE tenant_id = $1 AND number = $2")
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
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&user.username)
        .bind(user.role.as_str())
        .bind(user.tenant.map(|t| t.0))
        .bind(&user.extension)
        .bind(&user.password_hash)
        .bind(user.created_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| Error::conflict_on_unique(e, || "that username is not available".into()))?;
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
            session_epoch: 0,
            disabled: false,
        })
    }

    /// The user with this username, whatever its tenant (logins name no tenant).
    /// The name is normalised first; one that cannot be a username finds nobody.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let Ok(username) = crate::checks::name("username", username, MAX_USERNAME) else {
            return Ok(None);
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// The user with this id, whatever its tenant (token subjects are user ids).
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM users WHERE id = $1"))
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
            " FROM users WHERE tenant_id = $1 ORDER BY id"
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

    /// The user of `tenant` (`None`: a provider admin) with this username.
    pub async fn user_in(&self, tenant: Option<TenantId>, username: &str) -> Result<Option<User>> {
        Ok(self
            .user_by_name(username)
            .await?
            .filter(|u| u.tenant == tenant))
    }

    /// Removes a user of a tenant. [`Error::NotFound`] when the tenant has no
    /// user of that name.
    pub async fn remove_user(&self, tenant: TenantId, username: &str) -> Result<()> {
        let Some(user) = self.user_in(Some(tenant), username).await? else {
            return Err(Error::NotFound(format!("user of tenant {tenant}")));
        };
        let done = sqlx::query("DELETE FROM users WHERE id = $1 AND tenant_id = $2")
            .bind(user.id)
            .bind(tenant.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("user of tenant {tenant}")));
        }
        Ok(())
    }

    /// Removes a provider admin. The last one cannot be removed
    /// ([`Error::Conflict`]), so the provider never locks itself out.
    pub async fn remove_provider_admin(&self, username: &str) -> Result<()> {
        let Some(user) = self.user_in(None, username).await? else {
            return Err(Error::NotFound("provider admin".into()));
        };
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'provider-admin'")
            .fetch_one(&mut *tx)
            .await?;
        let admins: i64 = row.try_get("n")?;
        if admins <= 1 {
            return Err(Error::Conflict(
                "the last provider admin cannot be removed".into(),
            ));
        }
        sqlx::query("DELETE FROM users WHERE id = $1 AND role = 'provider-admin'")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies `change` to a user and ends its sessions (the session epoch goes
    /// up in the same write). Returns the changed user.
    pub async fn change_user(&self, user_id: i64, change: &UserChange) -> Result<User> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM users WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut user) = row.as_ref().map(user_row).transpose()? else {
            return Err(Error::NotFound(format!("user {user_id}")));
        };
        if let Some(role) = change.role {
            if (role == UserRole::ProviderAdmin) != (user.role == UserRole::ProviderAdmin) {
                return Err(Error::Invalid(
                    "a user cannot move between the provider and a tenant".into(),
                ));
            }
            if role != UserRole::User && user.extension.is_some() {
                return Err(Error::Invalid("only a user is tied to an extension".into()));
            }
            user.role = role;
        }
        if let Some(disabled) = change.disabled {
            user.disabled = disabled;
        }
        if let Some(hash) = &change.password_hash {
            user.password_hash = hash.clone();
        }
        user.session_epoch += 1;
        sqlx::query(
            "UPDATE users SET role = $1, disabled = $2, password_hash = $3, session_epoch = $4 \
             WHERE id = $5",
        )
        .bind(user.role.as_str())
        .bind(i64::from(user.disabled))
        .bind(&user.password_hash)
        .bind(user.session_epoch)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Replaces a user's password hash; this ends the user's sessions.
    pub async fn set_user_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()> {
        self.change_user(
            user_id,
            &UserChange {
                password_hash: Some(password_hash.to_owned()),
                ..UserChange::default()
            },
        )
        .await
        .map(|_| ())
    }

    /// When the user's password was last set (Unix milliseconds).
    pub async fn user_password_changed_ms(&self, user_id: i64) -> Result<i64> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT password_changed_ms FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        Ok(at.unwrap_or(0))
    }

    /// Ends every session of the user (logout).
    pub async fn end_sessions(&self, user_id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// Notes that `user_id` logged in from `network` at `now_ms`. Returns
    /// whether the network is new for the user and how many others it had
    /// (a first login ever has none, and is not an anomaly). At most
    /// [`MAX_LOGIN_NETWORKS`] are kept per user, the least recent dropped.
    pub async fn note_login_network(
        &self,
        user_id: i64,
        network: &str,
        now_ms: i64,
    ) -> Result<(bool, u64)> {
        let mut tx = self.write_tx().await?;
        let known: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM login_networks WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        let inserted = sqlx::query(
            "INSERT INTO login_networks (user_id, network, first_ms, last_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, network) DO NOTHING",
        )
        .bind(user_id)
        .bind(network)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query(
                "DELETE FROM login_networks WHERE user_id = $1 AND network NOT IN \
                 (SELECT network FROM login_networks WHERE user_id = $2 ORDER BY last_ms DESC LIMIT $3)",
            )
            .bind(user_id)
            .bind(user_id)
            .bind(MAX_LOGIN_NETWORKS)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE login_networks SET last_ms = $1 WHERE user_id = $2 AND network = $3",
            )
            .bind(now_ms)
            .bind(user_id)
            .bind(network)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((inserted, u64::try_from(known).unwrap_or(0)))
    }

    /// The user's TOTP state, if enrollment was started.
    pub async fn totp(&self, user_id: i64) -> Result<Option<TotpState>> {
        let row = sqlx::query("SELECT secret, confirmed, last_step FROM totp WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(TotpState {
                secret: self.open_totp_secret(user_id, &row.try_get::<String, _>("secret")?)?,
                confirmed: row.try_get::<i64, _>("confirmed")? != 0,
                last_step: row.try_get("last_step")?,
            })),
            None => Ok(None),
        }
    }

    /// Starts (or restarts) TOTP enrollment with a new, unconfirmed secret.
    /// Refused with [`Error::Conflict`] once enrollment was confirmed. The
    /// secret is stored encrypted with the data directory's secret key, bound
    /// to the user, like trunk passwords.
    pub async fn begin_totp(&self, user_id: i64, secret: &str) -> Result<()> {
        let sealed = self.seal_totp_secret(user_id, secret)?;
        let secret = sealed.as_str();
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT confirmed FROM totp WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row
            && row.try_get::<i64, _>("confirmed")? != 0
        {
            return Err(Error::Conflict("TOTP is already enrolled".into()));
        }
        sqlx::query("DELETE FROM totp WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO totp (user_id, secret, confirmed, last_step) VALUES ($1, $2, 0, -1)",
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
            "UPDATE totp SET last_step = $1, confirmed = 1 WHERE user_id = $2 AND last_step < $3",
        )
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) fn seal_totp_secret(&self, user_id: i64, secret: &str) -> Result<String> {
        Ok(format!(
            "{SEALED}{}",
            self.secrets.seal(&totp_aad(user_id), secret.as_bytes())?
        ))
    }

    pub(crate) fn open_totp_secret(&self, user_id: i64, stored: &str) -> Result<String> {
        let bad = || {
            Error::Invalid(format!(
                "stored TOTP secret of user {user_id} does not open"
            ))
        };
        let sealed = stored.strip_prefix(SEALED).ok_or_else(bad)?;
        let plain = self
            .secrets
            .open(&totp_aad(user_id), sealed)
            .ok_or_else(bad)?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Encrypts TOTP secrets stored in clear by earlier versions (run at open).
    pub(crate) async fn seal_plain_totp_secrets(&self) -> Result<()> {
        let rows = sqlx::query("SELECT user_id, secret FROM totp WHERE secret NOT LIKE 'sealed:%'")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let user_id: i64 = row.try_get("user_id")?;
            let secret: String = row.try_get("secret")?;
            sqlx::query("UPDATE totp SET secret = $1 WHERE user_id = $2 AND secret = $3")
                .bind(self.seal_totp_secret(user_id, &secret)?)
                .bind(user_id)
                .bind(&secret)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Counts one login attempt under each of `keys` before the password is
    /// checked, so concurrent attempts cannot all pass the limit: in one write
    /// transaction, rows older than `expire_before_ms` are dropped, the wait of
    /// every key is computed with `wait_ms(key_index, failures, last_failure_ms)`,
    /// and unless one must wait, every key's count goes up by one. Returns the
    /// longest wait (0: the attempt may go ahead and was counted). A successful
    /// login then clears its keys with [`Store::clear_login_failures`].
    pub async fn reserve_login_attempt(
        &self,
        keys: &[&str],
        now_ms: i64,
        expire_before_ms: i64,
        wait_ms: impl Fn(usize, LoginFailures) -> i64 + Send,
    ) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM login_attempts WHERE last_failure_ms < $1")
            .bind(expire_before_ms)
            .execute(&mut *tx)
            .await?;
        let mut wait = 0;
        for (i, key) in keys.iter().enumerate() {
            let row =
                sqlx::query("SELECT failures, last_failure_ms FROM login_attempts WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = row {
                wait = wait.max(wait_ms(i, failures_row(&row)?));
            }
        }
        if wait > 0 {
            return Ok(wait);
        }
        for key in keys {
            sqlx::query(
                "INSERT INTO login_attempts (key, failures, last_failure_ms) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET failures = login_attempts.failures + 1, \
                 last_failure_ms = excluded.last_failure_ms",
            )
            .bind(key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(0)
    }

    /// Rows in the login throttle table (to check it stays bounded).
    pub async fn login_attempt_rows(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM login_attempts")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Failed logins recorded under `key`.
    pub async fn login_failures(&self, key: &str) -> Result<Option<LoginFailures>> {
        let row =
            sqlx::query("SELECT failures, last_failure_ms FROM login_attempts WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(failures_row).transpose()
    }

    /// Counts one more failed login under `key` and returns the new count.
    pub async fn record_login_failure(&self, key: &str, now_ms: i64) -> Result<LoginFailures> {
        let row = sqlx::query(
            "INSERT INTO login_attempts (key, failures, last_failure_ms) VALUES ($1, 1, $2) \
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
        sqlx::query("DELETE FROM login_attempts WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Marks a sealed TOTP secret.
const SEALED: &str = "sealed:";

fn totp_aad(user_id: i64) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

fn failures_row(row: &AnyRow) -> Result<LoginFailures> {
    let failures: i64 = row.try_get("failures")?;
    Ok(LoginFailures {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        last_failure_ms: row.try_get("last_failure_ms")?,
    })
}

fn user_row(row: &AnyRow) -> Result<User> {
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
        session_epoch: row.try_get("session_epoch")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
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

    backend_test! {
        async fn users_roles_and_tenants() {
            let store = crate::testdb::store().await.expect("open");
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
    }

    backend_test! {
        async fn totp_codes_are_single_use() {
            let store = crate::testdb::store().await.expect("open");
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
    }

    backend_test! {
        async fn login_failures_count_and_clear() {
            let store = crate::testdb::store().await.expect("open");
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

    backend_test! {
        async fn ids_of_deleted_users_tenants_and_tokens_are_never_handed_out_again() {
            let store = crate::testdb::store().await.expect("open");
            let t1 = store.add_tenant("t1", "t1.example").await.expect("t1").id;
            let u1 = store
                .add_user(&new_user("u1", UserRole::TenantAdmin, Some(t1)))
                .await
                .expect("u1");
            let token = |jti: &str| NewApiToken {
                jti: jti.into(),
                name: "n".into(),
                scopes: vec!["cdrs:read".into()],
                token_hash: "h".into(),
                created_by: "x".into(),
                created_at_ms: 1,
                expires_at_ms: 2,
            };
            let k1 = store.add_api_token(t1, &token("j1")).await.expect("k1");
            // The newest of each is deleted: a plain INTEGER PRIMARY KEY would hand
            // its id to the next row.
            store.remove_user(t1, "u1").await.expect("rm user");
            store.delete_tenant(t1).await.expect("rm tenant");
            let t2 = store.add_tenant("t2", "t2.example").await.expect("t2").id;
            let u2 = store
                .add_user(&new_user("u1", UserRole::TenantAdmin, Some(t2)))
                .await
                .expect("u2");
            let k2 = store.add_api_token(t2, &token("j2")).await.expect("k2");
            assert!(t2.0 > t1.0, "tenant id {t1} came back");
            assert!(u2.id > u1.id, "user id {} came back", u1.id);
            assert!(k2.id > k1.id, "token id {} came back", k1.id);
            assert_eq!(store.user_by_id(u1.id).await.expect("get"), None);
        }
    }

    backend_test! {
        async fn changes_end_sessions_and_suspension_ends_the_tenants_sessions() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            let u = store
                .add_user(&new_user("alice", UserRole::TenantAdmin, Some(t)))
                .await
                .expect("u");
            assert_eq!((u.session_epoch, u.disabled), (0, false));
            store.set_user_password_hash(u.id, "h2").await.expect("pw");
            let epoch = |store: Store| async move {
                store
                    .user_by_id(u.id)
                    .await
                    .expect("get")
                    .expect("some")
                    .session_epoch
            };
            assert_eq!(epoch(store.clone()).await, 1);
            let changed = store
                .change_user(
                    u.id,
                    &UserChange {
                        role: Some(UserRole::User),
                        disabled: Some(true),
                        ..UserChange::default()
                    },
                )
                .await
                .expect("change");
            assert_eq!(
                (changed.role, changed.disabled, changed.session_epoch),
                (UserRole::User, true, 2)
            );
            assert!(matches!(
                store
                    .change_user(
                        u.id,
                        &UserChange {
                            role: Some(UserRole::ProviderAdmin),
                            ..UserChange::default()
                        }
                    )
                    .await,
                Err(Error::Invalid(_))
            ));
            store.end_sessions(u.id).await.expect("logout");
            assert_eq!(epoch(store.clone()).await, 3);
            store
                .set_tenant_status(t, TenantStatus::Suspended)
                .await
                .expect("suspend");
            assert_eq!(epoch(store.clone()).await, 4);
            store
                .set_tenant_status(t, TenantStatus::Active)
                .await
                .expect("resume");
            assert_eq!(epoch(store.clone()).await, 4);
        }
    }

    backend_test! {
        async fn the_last_provider_admin_stays() {
            let store = crate::testdb::store().await.expect("open");
            for n in ["r1", "r2"] {
                store
                    .add_user(&new_user(n, UserRole::ProviderAdmin, None))
                    .await
                    .expect("admin");
            }
            store.remove_provider_admin("r1").await.expect("rm");
            assert!(matches!(
                store.remove_provider_admin("r2").await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.remove_provider_admin("r1").await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn usernames_are_normalised_and_conflicts_do_not_echo_them() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let u = store
                .add_user(&new_user("ｒｏｏｔ", UserRole::TenantAdmin, Some(a)))
                .await
                .expect("add");
            assert_eq!(u.username, "root");
            assert_eq!(
                store
                    .user_by_name("ｒｏｏｔ")
                    .await
                    .expect("get")
                    .map(|u| u.id),
                Some(u.id)
            );
            assert!(matches!(
                store
                    .add_user(&new_user("root\u{200b}", UserRole::TenantAdmin, Some(b)))
                    .await,
                Err(Error::Invalid(_))
            ));
            match store
                .add_user(&new_user("root", UserRole::TenantAdmin, Some(b)))
                .await
            {
                Err(Error::Conflict(msg)) => assert!(!msg.contains("root"), "{msg}"),
                other => panic!("expected a conflict, got {other:?}"),
            }
            assert_eq!(store.user_in(Some(b), "root").await.expect("in"), None);
        }
    }

    backend_test! {
        async fn totp_secrets_are_encrypted_at_rest() {
            let store = crate::testdb::store().await.expect("open");
            let root = store
                .add_user(&new_user("root", UserRole::ProviderAdmin, None))
                .await
                .expect("root");
            store
                .begin_totp(root.id, "JBSWY3DPEHPK3PXP")
                .await
                .expect("begin");
            let raw: String = sqlx::query_scalar("SELECT secret FROM totp WHERE user_id = $1")
                .bind(root.id)
                .fetch_one(&store.pool)
                .await
                .expect("raw");
            assert!(!raw.contains("JBSWY3DPEHPK3PXP"), "{raw}");
            assert_eq!(
                store
                    .totp(root.id)
                    .await
                    .expect("totp")
                    .expect("some")
                    .secret,
                "JBSWY3DPEHPK3PXP"
            );
            // A secret another version stored in clear is sealed at the next open.
            sqlx::query("UPDATE totp SET secret = 'KRSXG5CTMVRXEZLU' WHERE user_id = $1")
                .bind(root.id)
                .execute(&store.pool)
                .await
                .expect("plain");
            store.seal_plain_totp_secrets().await.expect("seal");
            assert_eq!(
                store
                    .totp(root.id)
                    .await
                    .expect("totp")
                    .expect("some")
                    .secret,
                "KRSXG5CTMVRXEZLU"
            );
        }
    }

    backend_test! {
        async fn login_reservations_count_before_checking_and_rows_expire() {
            let store = crate::testdb::store().await.expect("open");
            let free = |_: usize, f: LoginFailures| if f.failures >= 3 { 1_000 } else { 0 };
            for _ in 0..3 {
                assert_eq!(
                    store
                        .reserve_login_attempt(&["user:a", "addr:x"], 10, 0, free)
                        .await
                        .expect("reserve"),
                    0
                );
            }
            assert_eq!(
                store
                    .reserve_login_attempt(&["user:a", "addr:x"], 11, 0, free)
                    .await
                    .expect("reserve"),
                1_000
            );
            assert_eq!(
                store
                    .login_failures("user:a")
                    .await
                    .expect("get")
                    .map(|f| f.failures),
                Some(3),
                "a refused attempt is not counted"
            );
            assert_eq!(store.login_attempt_rows().await.expect("rows"), 2);
            store
                .reserve_login_attempt(&["user:b"], 5_000, 100, free)
                .await
                .expect("reserve");
            assert_eq!(
                store.login_attempt_rows().await.expect("rows"),
                1,
                "old rows expire"
            );
        }
    }

    #[tokio::test]
    async fn upgrading_keeps_the_data_and_stops_reusing_ids() {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        // A database as the previous release left it: migrations up to 0008.
        let dir = tempfile::tempdir().expect("dir");
        let old = dir.path().join("old-migrations");
        std::fs::create_dir(&old).expect("mkdir");
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
        for entry in std::fs::read_dir(&all).expect("migrations") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            if name.as_str() < "0009" {
                std::fs::copy(&path, old.join(&name)).expect("copy");
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join(crate::DB_FILE))
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("pool");
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .expect("migrator")
            .run(&pool)
            .await
            .expect("old migrations");
        for sql in [
            "INSERT INTO tenants (id, name) VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO tenant_domains (domain, tenant_id, position) VALUES ('a.example', 1, 0), ('b.example', 2, 0)",
            "INSERT INTO extensions (tenant_id, number, ha1_md5, ha1_sha256) VALUES (2, '100', 'x', 'y')",
            "INSERT INTO users (id, username, role, tenant_id, password_hash, created_at_ms) VALUES (7, 'root', 'provider-admin', NULL, 'h', 1), (8, 'bob', 'user', 2, 'h', 1)",
            "INSERT INTO totp (user_id, secret, confirmed, last_step) VALUES (7, 'JBSWY3DPEHPK3PXP', 1, 5)",
            "INSERT INTO api_tokens (id, tenant_id, jti, name, scopes, token_hash, created_by, created_at_ms, expires_at_ms) VALUES (3, 2, 'j', 'n', 'cdrs:read', 'h', 'root', 1, 2)",
            "INSERT INTO approvals (id, tenant_id, kind, target, requested_ms) VALUES (4, 2, 'class', 'international', 1)",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;

        let store = Store::open(dir.path()).await.expect("upgrade");
        let b = store.tenant_by_name("b").await.expect("get").expect("b");
        assert_eq!(b.id, TenantId(2));
        let bob = store.user_by_name("bob").await.expect("get").expect("bob");
        assert_eq!((bob.id, bob.tenant, bob.session_epoch), (8, Some(b.id), 0));
        assert_eq!(store.list_extensions(b.id).await.expect("ext").len(), 1);
        assert_eq!(
            store.totp(7).await.expect("totp").expect("some").secret,
            "JBSWY3DPEHPK3PXP",
            "the clear secret was sealed and still opens"
        );
        assert_eq!(store.list_api_tokens(b.id).await.expect("tokens")[0].id, 3);
        let violations: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&store.pool)
                .await
                .expect("fk check");
        assert!(violations.is_empty(), "{violations:?}");
        // The newest of each goes; the next one gets a new id.
        store.delete_tenant(b.id).await.expect("rm");
        let c = store.add_tenant("c", "c.example").await.expect("c");
        assert_eq!(c.id, TenantId(3));
        let u = store
            .add_user(&new_user("carol", UserRole::TenantAdmin, Some(c.id)))
            .await
            .expect("carol");
        assert_eq!(
            u.id, 9,
            "user 8 was deleted with its tenant; its id stays used"
        );
        // Deleting a tenant still cascades to its rows.
        assert_eq!(store.user_by_name("bob").await.expect("get"), None);
    }
}
