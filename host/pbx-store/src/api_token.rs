//! Integration tokens: tenant-bound, scoped, expiring, revocable. The store keeps
//! a hash of each token, never the token.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::{Error, Result, Store, TenantId};

/// A token to record. The caller makes the token and hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// The token's unique id (its JWT `jti`).
    pub jti: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// hex SHA-256 of the token text.
    pub token_hash: String,
    /// Who issued it (a username).
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A stored token (without the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    pub id: i64,
    pub tenant: TenantId,
    pub jti: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, jti, name, scopes, token_hash, created_by, created_at_ms, \
                       expires_at_ms, revoked_at_ms"
    };
}

impl Store {
    /// Records a new token of `tenant`.
    pub async fn add_api_token(&self, tenant: TenantId, token: &NewApiToken) -> Result<ApiToken> {
        if token.scopes.iter().any(|s| s.contains(' ') || s.is_empty()) {
            return Err(Error::Invalid("scopes must be non-empty words".into()));
        }
        let mut tx = self.write_tx().await?;
        crate::tenant::ensure_tenant(&mut tx, tenant).await?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (tenant_id, jti, name, scopes, token_hash, created_by, \
             created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(tenant.0)
        .bind(&token.jti)
        .bind(&token.name)
        .bind(token.scopes.join(" "))
        .bind(&token.token_hash)
        .bind(&token.created_by)
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| Error::conflict_on_unique(e, || "token id is taken".into()))?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(ApiToken {
            id,
            tenant,
            jti: token.jti.clone(),
            name: token.name.clone(),
            scopes: token.scopes.clone(),
            token_hash: token.token_hash.clone(),
            created_by: token.created_by.clone(),
            created_at_ms: token.created_at_ms,
            expires_at_ms: token.expires_at_ms,
            revoked_at_ms: None,
        })
    }

    /// The token with this `jti`, whatever its tenant (a presented token names
    /// its id; the caller then checks the tenant it claims).
    pub async fn api_token_by_jti(&self, jti: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens WHERE jti = $1"
        ))
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// The tenant's tokens, by id.
    pub async fn list_api_tokens(&self, tenant: TenantId) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens WHERE tenant_id = $1 ORDER BY id"
        ))
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes a token of the tenant. Revoking twice keeps the first time;
    /// another tenant's token is [`Error::NotFound`].
    pub async fn revoke_api_token(&self, tenant: TenantId, id: i64, now_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $1) \
             WHERE tenant_id = $2 AND id = $3",
        )
        .bind(now_ms)
        .bind(tenant.0)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("token {id} of tenant {tenant}")));
        }
        Ok(())
    }
}

fn token_row(row: &AnyRow) -> Result<ApiToken> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        tenant: TenantId(row.try_get("tenant_id")?),
        jti: row.try_get("jti")?,
        name: row.try_get("name")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        token_hash: row.try_get("token_hash")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    backend_test! {
        async fn tokens_are_tenant_bound_and_revocable() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let new = NewApiToken {
                jti: "j1".into(),
                name: "billing".into(),
                scopes: vec!["cdrs:read".into(), "extensions:read".into()],
                token_hash: "ab".into(),
                created_by: "root".into(),
                created_at_ms: 1,
                expires_at_ms: 100,
            };
            let t = store.add_api_token(a, &new).await.expect("add");
            assert_eq!(
                store.api_token_by_jti("j1").await.expect("get"),
                Some(t.clone())
            );
            assert_eq!(
                store.list_api_tokens(a).await.expect("list"),
                vec![t.clone()]
            );
            assert!(store.list_api_tokens(b).await.expect("list").is_empty());
            assert!(matches!(
                store.add_api_token(a, &new).await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.revoke_api_token(b, t.id, 5).await,
                Err(Error::NotFound(_))
            ));
            store.revoke_api_token(a, t.id, 5).await.expect("revoke");
            store.revoke_api_token(a, t.id, 9).await.expect("again");
            let got = store
                .api_token_by_jti("j1")
                .await
                .expect("get")
                .expect("some");
            assert_eq!(got.revoked_at_ms, Some(5));
            assert_eq!(got.scopes, new.scopes);
        }
    }
}
