//! Plugin configuration by owner, and tenants' own policies:
//! - `/api/v1/policies/{name}/config[/{key}]?tenant=ID`: the provider's
//!   configuration of a policy (provider admins only); without `tenant` the
//!   provider-wide values, with it that tenant's overrides;
//! - `/api/v1/tenants/{tenant}/storage[/{key}]`: the tenant's plugin storage
//!   (provider and the tenant's admins);
//! - `/api/v1/tenants/{tenant}/policies[/{name}]` and
//!   `.../policies/{name}/config[/{key}]`: the tenant's own policies, which
//!   run after the provider's, and their configuration (tenant-owned).
//!
//! Every change is audited and reaches the running server on its next
//! provisioning poll.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{ConfigScope, TenantId, TenantPolicy};
use utoipa::{IntoParams, ToSchema};

use super::control::wasm_body;
use crate::access::{Body, P, Principal, Q, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// `?tenant=ID`: one tenant's overrides instead of the provider-wide values.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeQuery {
    tenant: Option<i64>,
}

/// A value to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueBody {
    value: String,
}

/// One configuration key and its value.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigItem {
    key: String,
    value: String,
}

/// One storage key: its value as text when it is UTF-8, and always as hex.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StorageItem {
    key: String,
    value: Option<String>,
    hex: String,
}

fn storage_item(key: String, bytes: &[u8]) -> StorageItem {
    StorageItem {
        key,
        value: std::str::from_utf8(bytes).ok().map(str::to_owned),
        hex: hex::encode(bytes),
    }
}

/// The provider's scope named by `?tenant=`; an unknown tenant is not found.
async fn provider_scope(state: &ApiState, q: &ScopeQuery) -> ApiResult<ConfigScope> {
    match q.tenant {
        Some(id) => {
            let t = state
                .store()
                .tenant(TenantId(id))
                .await?
                .ok_or_else(ApiError::not_found)?;
            Ok(ConfigScope::Provider(Some(t.id)))
        }
        None => Ok(ConfigScope::Provider(None)),
    }
}

fn scope_tenant(scope: ConfigScope) -> Option<TenantId> {
    match scope {
        ConfigScope::Provider(t) => t,
        ConfigScope::Tenant(t) => Some(t),
    }
}

async fn list_scope(
    state: &ApiState,
    scope: ConfigScope,
    policy: &str,
) -> ApiResult<Json<Vec<ConfigItem>>> {
    let items = state
        .store()
        .policy_config_list(scope, policy)
        .await?
        .into_iter()
        .map(|(key, value)| ConfigItem { key, value })
        .collect();
    Ok(Json(items))
}

async fn get_scope(
    state: &ApiState,
    scope: ConfigScope,
    policy: String,
    key: String,
) -> ApiResult<Json<ConfigItem>> {
    let value = state
        .store()
        .policy_config_get(scope, &policy, &key)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(ConfigItem { key, value }))
}

async fn set_scope(
    state: &ApiState,
    p: &Principal,
    source: &str,
    scope: ConfigScope,
    (policy, key, value): (String, String, String),
) -> ApiResult<Json<ConfigItem>> {
    state
        .store()
        .policy_config_set(scope, &policy, &key, &value)
        .await?;
    let owner = match scope {
        ConfigScope::Provider(_) => "provider",
        ConfigScope::Tenant(_) => "tenant",
    };
    state
        .audit(
            p,
            source,
            "policy.config.set",
            scope_tenant(scope),
            json!({ "policy": policy, "owner": owner, "key": key, "value": value }),
        )
        .await?;
    Ok(Json(ConfigItem { key, value }))
}

async fn delete_scope(
    state: &ApiState,
    p: &Principal,
    source: &str,
    scope: ConfigScope,
    (policy, key): (String, String),
) -> ApiResult<StatusCode> {
    if !state
        .store()
        .policy_config_delete(scope, &policy, &key)
        .await?
    {
        return Err(ApiError::not_found());
    }
    let owner = match scope {
        ConfigScope::Provider(_) => "provider",
        ConfigScope::Tenant(_) => "tenant",
    };
    state
        .audit(
            p,
            source,
            "policy.config.delete",
            scope_tenant(scope),
            json!({ "policy": policy, "owner": owner, "key": key }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn provider_list(
    State(state): State<ApiState>,
    P(policy): P<String>,
    Q(q): Q<ScopeQuery>,
) -> ApiResult<Json<Vec<ConfigItem>>> {
    let scope = provider_scope(&state, &q).await?;
    list_scope(&state, scope, &policy).await
}

pub(super) async fn provider_get(
    State(state): State<ApiState>,
    P((policy, key)): P<(String, String)>,
    Q(q): Q<ScopeQuery>,
) -> ApiResult<Json<ConfigItem>> {
    let scope = provider_scope(&state, &q).await?;
    get_scope(&state, scope, policy, key).await
}

pub(super) async fn provider_set(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((policy, key)): P<(String, String)>,
    Q(q): Q<ScopeQuery>,
    Body(body): Body<ValueBody>,
) -> ApiResult<Json<ConfigItem>> {
    let scope = provider_scope(&state, &q).await?;
    set_scope(&state, &p, &source, scope, (policy, key, body.value)).await
}

pub(super) async fn provider_delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((policy, key)): P<(String, String)>,
    Q(q): Q<ScopeQuery>,
) -> ApiResult<StatusCode> {
    let scope = provider_scope(&state, &q).await?;
    delete_scope(&state, &p, &source, scope, (policy, key)).await
}

pub(super) async fn storage_list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<StorageItem>>> {
    let items = state
        .store()
        .plugin_kv_list(TenantId(tenant))
        .await?
        .into_iter()
        .map(|(key, value)| storage_item(key, &value))
        .collect();
    Ok(Json(items))
}

pub(super) async fn storage_get(
    State(state): State<ApiState>,
    P((tenant, key)): P<(i64, String)>,
) -> ApiResult<Json<StorageItem>> {
    let value = state
        .store()
        .plugin_kv_get(TenantId(tenant), &key)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(storage_item(key, &value)))
}

pub(super) async fn storage_set(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, key)): P<(i64, String)>,
    Body(body): Body<ValueBody>,
) -> ApiResult<Json<StorageItem>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .plugin_kv_admin_put(tenant, &key, Some(body.value.as_bytes()))
        .await?;
    state
        .audit(
            &p,
            &source,
            "storage.set",
            Some(tenant),
            json!({ "key": key, "bytes": body.value.len() }),
        )
        .await?;
    Ok(Json(storage_item(key, body.value.as_bytes())))
}

pub(super) async fn storage_delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, key)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    if !state
        .store()
        .plugin_kv_admin_put(tenant, &key, None)
        .await?
    {
        return Err(ApiError::not_found());
    }
    state
        .audit(
            &p,
            &source,
            "storage.delete",
            Some(tenant),
            json!({ "key": key }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?name=NAME` of a tenant's policy upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameQuery {
    name: String,
}

pub(super) async fn tenant_policies(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<TenantPolicy>>> {
    Ok(Json(
        state.store().list_tenant_policies(TenantId(tenant)).await?,
    ))
}

pub(super) async fn tenant_policy_install(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Q(q): Q<NameQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TenantPolicy>)> {
    let tenant = TenantId(tenant);
    let wasm = wasm_body(body)?;
    let size = wasm.len();
    let installed = state
        .inner
        .control
        .install_tenant_policy(tenant, q.name, wasm.to_vec())
        .await?;
    state
        .audit(
            &p,
            &source,
            "tenant_policy.install",
            Some(tenant),
            json!({ "name": installed.name, "hash": installed.hash, "bytes": size }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(installed)))
}

pub(super) async fn tenant_policy_remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, name)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.store().remove_tenant_policy(tenant, &name).await?;
    state
        .audit(
            &p,
            &source,
            "tenant_policy.remove",
            Some(tenant),
            json!({ "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn tenant_config_list(
    State(state): State<ApiState>,
    P((tenant, policy)): P<(i64, String)>,
) -> ApiResult<Json<Vec<ConfigItem>>> {
    list_scope(&state, ConfigScope::Tenant(TenantId(tenant)), &policy).await
}

pub(super) async fn tenant_config_set(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, policy, key)): P<(i64, String, String)>,
    Body(body): Body<ValueBody>,
) -> ApiResult<Json<ConfigItem>> {
    let scope = ConfigScope::Tenant(TenantId(tenant));
    set_scope(&state, &p, &source, scope, (policy, key, body.value)).await
}

pub(super) async fn tenant_config_delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, policy, key)): P<(i64, String, String)>,
) -> ApiResult<StatusCode> {
    let scope = ConfigScope::Tenant(TenantId(tenant));
    delete_scope(&state, &p, &source, scope, (policy, key)).await
}
