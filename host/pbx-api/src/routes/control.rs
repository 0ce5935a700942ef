//! Endpoints the running server answers through [`crate::Control`]: live calls,
//! plugins, alerts, trunks, DIDs and bans.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use store::{TenantId, UserRole};

use crate::access::{Body, P, Principal, Source};
use crate::control::{
    Alert, Ban, CallInfo, ControlError, Did, NewTrunk, PluginInfo, QuarantineInfo, TrunkInfo,
};
use crate::custom_sections;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => ApiError::not_found(),
            ControlError::Invalid(m) => ApiError::bad_request("invalid", m),
            ControlError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ControlError::Internal(m) => ApiError::internal(m),
        }
    }
}

pub(super) async fn calls(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<CallInfo>>> {
    Ok(Json(
        state.inner.control.list_calls(TenantId(tenant)).await?,
    ))
}

pub(super) async fn hangup(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, call_id)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.inner.control.hangup(tenant, call_id.clone()).await?;
    state
        .audit(
            &p,
            &source,
            "call.hangup",
            Some(tenant),
            json!({ "call_id": call_id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn plugins(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<PluginInfo>>> {
    Ok(Json(
        state.inner.control.list_plugins(TenantId(tenant)).await?,
    ))
}

pub(super) async fn quarantines(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<QuarantineInfo>>> {
    Ok(Json(
        state
            .inner
            .control
            .list_quarantines(TenantId(tenant))
            .await?,
    ))
}

/// The tenant's usage now.
pub(super) async fn usage(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<crate::control::TenantUsage>> {
    Ok(Json(state.inner.control.usage(TenantId(tenant)).await?))
}

/// The tenant's plugin log.
pub(super) async fn plugin_log(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<crate::control::PluginLogLine>>> {
    Ok(Json(
        state.inner.control.plugin_log(TenantId(tenant)).await?,
    ))
}

/// Lifts a quarantine. A tenant's admins may lift their own plugins'
/// (dial plan, tenant policies); a provider policy's is the provider's call.
pub(super) async fn lift_quarantine(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, hash)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    let control = &state.inner.control;
    let found = control
        .list_quarantines(tenant)
        .await?
        .into_iter()
        .find(|q| q.hash == hash)
        .ok_or_else(ApiError::not_found)?;
    if found.provider_owned && p.role != UserRole::ProviderAdmin {
        return Err(ApiError::forbidden(
            "the provider's policy quarantine is lifted by the provider",
        ));
    }
    control.lift_quarantine(tenant, hash).await?;
    state
        .audit(
            &p,
            &source,
            "plugin.quarantine.lift",
            Some(tenant),
            json!({ "plugin": found.plugin, "hash": found.hash, "reason": found.reason }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A component upload's body: not empty, within the plugin size limit.
pub(super) fn wasm_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    let wasm = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "body_too_large", "plugin is too large")
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    if wasm.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "empty plugin"));
    }
    Ok(wasm)
}

pub(super) async fn install(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PluginInfo>)> {
    let wasm = wasm_body(body)?;
    let tenant = TenantId(tenant);
    let size = wasm.len();
    let custom = custom_sections::scan(&wasm);
    if custom.count > custom_sections::MAX_CUSTOM_SECTIONS
        || custom.bytes > custom_sections::MAX_CUSTOM_BYTES
    {
        return Err(ApiError::bad_request(
            "too_many_custom_sections",
            format!(
                "the component has {} custom sections of {} bytes; at most {} of {} bytes in \
                 all are accepted (strip debug information before uploading)",
                custom.count,
                custom.bytes,
                custom_sections::MAX_CUSTOM_SECTIONS,
                custom_sections::MAX_CUSTOM_BYTES
            ),
        ));
    }
    // One upload per tenant at a time, so the quota check and the install
    // cannot interleave with another upload of the same tenant.
    let lock = state.plugin_upload_lock(tenant);
    let _held = lock.lock().await;
    let keep = state.config().plugin_versions_kept;
    let mut pruned = state.store().prune_dialplans(tenant, keep).await?;
    let used = u64::try_from(state.store().dialplan_bytes(tenant).await?).unwrap_or(u64::MAX);
    let quota = state.config().plugin_quota_bytes;
    if used.saturating_add(size as u64) > quota {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "quota_exceeded",
            format!(
                "the tenant's plugins take {used} bytes; this upload of {size} bytes would pass \
                 its quota of {quota} bytes"
            ),
        ));
    }
    let info = state
        .inner
        .control
        .install_plugin(tenant, wasm.to_vec())
        .await?;
    pruned.extend(state.store().prune_dialplans(tenant, keep).await?);
    state
        .audit(
            &p,
            &source,
            "plugin.install",
            Some(tenant),
            json!({ "version": info.version, "hash": info.hash, "bytes": size,
                    "pruned_versions": pruned }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn activate(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, version)): P<(i64, u32)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.inner.control.activate_plugin(tenant, version).await?;
    state
        .audit(
            &p,
            &source,
            "plugin.activate",
            Some(tenant),
            json!({ "version": version }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn rollback(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
) -> ApiResult<Json<PluginInfo>> {
    let tenant = TenantId(tenant);
    let info = state.inner.control.rollback_plugin(tenant).await?;
    state
        .audit(
            &p,
            &source,
            "plugin.rollback",
            Some(tenant),
            json!({ "version": info.version }),
        )
        .await?;
    Ok(Json(info))
}

pub(super) async fn tenant_alerts(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<Alert>>> {
    Ok(Json(
        state
            .inner
            .control
            .list_alerts(Some(TenantId(tenant)))
            .await?,
    ))
}

pub(super) async fn all_alerts(State(state): State<ApiState>) -> ApiResult<Json<Vec<Alert>>> {
    Ok(Json(state.inner.control.list_alerts(None).await?))
}

pub(super) async fn trunks(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<TrunkInfo>>> {
    Ok(Json(
        state.inner.control.list_trunks(TenantId(tenant)).await?,
    ))
}

pub(super) async fn add_trunk(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(trunk): Body<NewTrunk>,
) -> ApiResult<(StatusCode, Json<TrunkInfo>)> {
    let tenant = TenantId(tenant);
    let info = state.inner.control.add_trunk(tenant, trunk).await?;
    state
        .audit(
            &p,
            &source,
            "trunk.create",
            Some(tenant),
            json!({ "name": info.name, "uri": info.uri }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn dids(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<Did>>> {
    Ok(Json(state.inner.control.list_dids(TenantId(tenant)).await?))
}

pub(super) async fn add_did(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(did): Body<Did>,
) -> ApiResult<(StatusCode, Json<Did>)> {
    let tenant = TenantId(tenant);
    let did = state.inner.control.add_did(tenant, did).await?;
    state
        .audit(
            &p,
            &source,
            "did.create",
            Some(tenant),
            json!({ "number": did.number }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(did)))
}

pub(super) async fn remove_trunk(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, name)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state
        .inner
        .control
        .remove_trunk(tenant, name.clone())
        .await?;
    state
        .audit(
            &p,
            &source,
            "trunk.remove",
            Some(tenant),
            json!({ "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove_did(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state
        .inner
        .control
        .remove_did(tenant, number.clone())
        .await?;
    state
        .audit(
            &p,
            &source,
            "did.remove",
            Some(tenant),
            json!({ "number": number }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn bans(State(state): State<ApiState>) -> ApiResult<Json<Vec<Ban>>> {
    Ok(Json(state.inner.control.list_bans().await?))
}

pub(super) async fn unban(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(address): P<String>,
) -> ApiResult<StatusCode> {
    let ip: IpAddr = address
        .parse()
        .map_err(|_| ApiError::bad_request("invalid", "not an IP address"))?;
    state.inner.control.remove_ban(ip).await?;
    state
        .audit(
            &p,
            &source,
            "ban.remove",
            None,
            json!({ "address": ip.to_string() }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
