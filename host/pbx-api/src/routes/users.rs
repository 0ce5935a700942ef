//! API users: provider admins, tenant admins and extension users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use store::{NewUser, TenantId, User, UserRole};

use crate::auth::{Body, P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;
use crate::{Error, Result, password};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserRequest {
    username: String,
    password: String,
    role: UserRole,
    /// Required for every role but provider-admin (only on `/api/v1/users`).
    #[serde(default)]
    tenant: Option<i64>,
    #[serde(default)]
    extension: Option<String>,
}

/// Checks the password policy, hashes, stores and audits a new user.
pub(crate) async fn create_user(
    state: &ApiState,
    actor: &Principal,
    source: &str,
    new: NewUser,
    password: String,
) -> Result<User> {
    password::check_policy(&new.username, &password)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::Crypto(format!("hashing task: {e}")))??;
    let user = state
        .store()
        .add_user(&NewUser {
            password_hash: hash,
            ..new
        })
        .await?;
    state
        .audit(
            actor,
            source,
            "user.create",
            user.tenant,
            json!({ "username": user.username, "role": user.role.as_str(), "extension": user.extension }),
        )
        .await?;
    Ok(user)
}

pub(super) async fn list_admins(State(state): State<ApiState>) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.store().list_provider_admins().await?))
}

pub(super) async fn create_any(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Body(req): Body<NewUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let now = state.now_ms();
    let new = NewUser {
        username: req.username,
        role: req.role,
        tenant: req.tenant.map(TenantId),
        extension: req.extension,
        password_hash: String::new(),
        created_at_ms: now,
    };
    let user = create_user(&state, &p, &source, new, req.password).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.store().list_users(TenantId(tenant)).await?))
}

pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<NewUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    if req.role == UserRole::ProviderAdmin {
        return Err(ApiError::bad_request(
            "invalid",
            "a tenant user cannot be a provider admin",
        ));
    }
    if req.tenant.is_some_and(|t| t != tenant) {
        return Err(ApiError::bad_request(
            "invalid",
            "the body names another tenant than the path",
        ));
    }
    let new = NewUser {
        username: req.username,
        role: req.role,
        tenant: Some(TenantId(tenant)),
        extension: req.extension,
        password_hash: String::new(),
        created_at_ms: state.now_ms(),
    };
    let user = create_user(&state, &p, &source, new, req.password).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, username)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.store().remove_user(tenant, &username).await?;
    state
        .audit(
            &p,
            &source,
            "user.delete",
            Some(tenant),
            json!({ "username": username }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
