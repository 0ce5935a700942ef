//! API users: provider admins, tenant admins and extension users. Every route
//! that creates, changes or removes a user first asks [`crate::grant::Grants`]
//! whether the caller holds every right of the user's role, so a narrowed
//! integration token cannot mint (or remove) someone with more rights than it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use store::{NewUser, TenantId, User, UserChange, UserRole};
use utoipa::ToSchema;

use crate::access::{Body, P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::password;
use crate::state::ApiState;

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"username": "alice", "password": "Correct-Horse-9-battery", "role": "user", "tenant": 1, "extension": "1000"})))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChangeRequest {
    #[serde(default)]
    role: Option<UserRole>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

/// Checks the caller may grant the role, the password policy, hashes, stores
/// and audits a new user.
pub(crate) async fn create_user(
    state: &ApiState,
    actor: &Principal,
    source: &str,
    new: NewUser,
    password: String,
) -> ApiResult<User> {
    state.inner.grants.may_act_on(actor, new.role)?;
    let username = store::normalize_name("username", &new.username, store::MAX_USERNAME)?;
    password::check_policy(&username, &password)?;
    let hash = state.hash_password(new.tenant, password).await?;
    let user = state
        .store()
        .add_user(&NewUser {
            username,
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
            json!({ "id": user.id, "username": user.username, "role": user.role.as_str(),
                    "extension": user.extension }),
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

/// The user `username` of `tenant` (`None`: a provider admin), once the caller
/// is known to hold every right the user has.
async fn target(
    state: &ApiState,
    p: &Principal,
    tenant: Option<TenantId>,
    username: &str,
) -> ApiResult<User> {
    let user = state
        .store()
        .user_in(tenant, username)
        .await?
        .ok_or_else(ApiError::not_found)?;
    state.inner.grants.may_act_on(p, user.role)?;
    Ok(user)
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, username)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    let user = target(&state, &p, Some(tenant), &username).await?;
    state.store().remove_user(tenant, &user.username).await?;
    state
        .audit(
            &p,
            &source,
            "user.delete",
            Some(tenant),
            json!({ "id": user.id, "username": user.username }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove_admin(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(username): P<String>,
) -> ApiResult<StatusCode> {
    let user = target(&state, &p, None, &username).await?;
    state.store().remove_provider_admin(&user.username).await?;
    state
        .audit(
            &p,
            &source,
            "user.delete",
            None,
            json!({ "id": user.id, "username": user.username }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn change(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, username)): P<(i64, String)>,
    Body(req): Body<UserChangeRequest>,
) -> ApiResult<Json<User>> {
    let tenant = TenantId(tenant);
    let user = target(&state, &p, Some(tenant), &username).await?;
    if let Some(role) = req.role {
        state.inner.grants.may_act_on(&p, role)?;
    }
    let password_hash = match req.password {
        Some(pw) => {
            password::check_policy(&user.username, &pw)?;
            Some(state.hash_password(user.tenant, pw).await?)
        }
        None => None,
    };
    let changed = state
        .store()
        .change_user(
            user.id,
            &UserChange {
                role: req.role,
                disabled: req.disabled,
                password_hash: password_hash.clone(),
            },
        )
        .await?;
    state
        .audit(
            &p,
            &source,
            "user.change",
            Some(tenant),
            json!({ "id": user.id, "username": user.username, "role": changed.role.as_str(),
                    "disabled": changed.disabled, "password_changed": password_hash.is_some() }),
        )
        .await?;
    Ok(Json(changed))
}
