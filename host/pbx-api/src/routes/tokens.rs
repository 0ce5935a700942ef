//! Integration tokens: scoped, tenant-bound, expiring, revocable; the token is
//! shown once and only its hash is kept.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{ApiToken, NewApiToken, TenantId, UserRole};
use utoipa::ToSchema;

use crate::access::{Body, GRANTABLE, P, Principal, Source, token_hash};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;
use crate::token::{AUDIENCE, Claims, TokenKind, new_jti};

/// Default lifetime: 90 days.
const DEFAULT_TTL_S: u64 = 90 * 24 * 3600;
/// Longest lifetime: a year (signing keys retire after it).
const MAX_TTL_S: u64 = crate::token::MAX_TOKEN_LIFETIME_S;

/// An integration token to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"name": "crm", "scopes": ["cdrs:read", "calls:read"], "expires_in_s": 2592000})))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenRequest {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

/// An issued integration token: the token is shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"id": 3, "token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln", "scopes": ["cdrs:read", "calls:read"], "expires_at_ms": 1702592000000_i64})))]
pub(crate) struct IssuedToken {
    id: i64,
    /// Shown once.
    token: String,
    scopes: Vec<String>,
    expires_at_ms: i64,
}

pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(state.store().list_api_tokens(TenantId(tenant)).await?))
}

pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let tenant = TenantId(tenant);
    let name = store::normalize_name("token name", &req.name, 64)?;
    if req.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid",
            "a token needs at least one scope",
        ));
    }
    if let Some(bad) = req.scopes.iter().find(|s| !GRANTABLE.contains(&s.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_scope",
            format!("unknown scope {bad:?}"),
        ));
    }
    // A token carries at most the rights of whoever issues it.
    state.inner.grants.may_issue(&p, &req.scopes)?;
    let ttl = req.expires_in_s.unwrap_or(DEFAULT_TTL_S);
    if ttl == 0 || ttl > MAX_TTL_S {
        return Err(ApiError::bad_request(
            "invalid",
            "expires_in_s must be 1 s to 1 year",
        ));
    }
    let ttl = i64::try_from(ttl).unwrap_or(0);
    let now = state.now_ms();
    let now_s = now.div_euclid(1000);
    let claims = Claims {
        iss: state.config().issuer.clone(),
        aud: AUDIENCE.into(),
        sub: format!("token:{name}"),
        iat: now_s,
        nbf: now_s,
        exp: now_s + ttl,
        jti: new_jti(),
        role: UserRole::TenantAdmin,
        tenant: Some(tenant),
        scopes: req.scopes.clone(),
        typ: TokenKind::Api,
        epoch: 0,
    };
    let token = state.inner.keys.sign(&claims)?;
    let stored = state
        .store()
        .add_api_token(
            tenant,
            &NewApiToken {
                jti: claims.jti.clone(),
                name,
                scopes: req.scopes.clone(),
                token_hash: token_hash(&token),
                created_by: p.subject.clone(),
                created_at_ms: now,
                expires_at_ms: claims.exp * 1000,
            },
        )
        .await?;
    state
        .audit(
            &p,
            &source,
            "token.issue",
            Some(tenant),
            json!({ "id": stored.id, "name": stored.name, "scopes": stored.scopes,
                    "expires_at_ms": stored.expires_at_ms }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            id: stored.id,
            token,
            scopes: stored.scopes,
            expires_at_ms: stored.expires_at_ms,
        }),
    ))
}

pub(super) async fn revoke(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, id)): P<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state
        .store()
        .revoke_api_token(tenant, id, state.now_ms())
        .await?;
    state
        .audit(
            &p,
            &source,
            "token.revoke",
            Some(tenant),
            json!({ "id": id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
