//! A tenant's settings: call limits (set by the provider), its media
//! encryption policy (set by the provider or the tenant's admins) and the
//! digest algorithms its phones are challenged with (set by the provider, per
//! tenant or per extension).

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{Calendar, DigestAlgorithms, MediaEncryption, TenantId, TenantLimits};
use utoipa::ToSchema;

use crate::access::{Body, P, Principal, Source};
use crate::error::ApiResult;
use crate::state::ApiState;

/// The limits as sent: every field optional (absent or null: the host default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsBody {
    #[serde(default)]
    max_concurrent: Option<u32>,
    #[serde(default)]
    max_concurrent_extension: Option<u32>,
    #[serde(default)]
    max_calls_per_second: Option<u32>,
    #[serde(default)]
    daily_cap_cents: Option<u64>,
    /// Bytes of prompts and voicemail the tenant may keep (the default
    /// quota when unset).
    #[serde(default)]
    media_storage_bytes: Option<u64>,
    /// Host media sessions (IVR, voicemail) the tenant may hold at once
    /// (the provider's configured default when unset).
    #[serde(default)]
    max_media_sessions: Option<u32>,
    /// Minutes of recorded audio the tenant may keep (the default when
    /// unset).
    #[serde(default)]
    recording_minutes: Option<u32>,
}

/// A media encryption policy: `required`, `optional` or `disabled`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MediaBody {
    policy: MediaEncryption,
}

/// Digest algorithms offered: `"MD5"`, `"SHA-256"`, `"SHA-256,MD5"` or
/// `"MD5,SHA-256"`; `null` inherits (an extension its tenant's choice, a
/// tenant the server's `[auth] algorithms`, MD5 as shipped).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DigestBody {
    algorithms: Option<DigestAlgorithms>,
}

pub(super) async fn set_tenant_digest(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<DigestBody>,
) -> ApiResult<Json<DigestBody>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .set_tenant_digest(tenant, req.algorithms.as_ref())
        .await?;
    state
        .audit(&p, &source, "tenant.digest", Some(tenant), json!(req))
        .await?;
    Ok(Json(req))
}

pub(super) async fn set_extension_digest(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
    Body(req): Body<DigestBody>,
) -> ApiResult<Json<DigestBody>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .set_extension_digest(tenant, &number, req.algorithms.as_ref())
        .await?;
    state
        .audit(
            &p,
            &source,
            "extension.digest",
            Some(tenant),
            json!({ "number": number, "algorithms": req.algorithms }),
        )
        .await?;
    Ok(Json(req))
}

pub(super) async fn limits(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<TenantLimits>> {
    Ok(Json(state.store().tenant_limits(TenantId(tenant)).await?))
}

pub(super) async fn set_limits(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<LimitsBody>,
) -> ApiResult<Json<TenantLimits>> {
    let tenant = TenantId(tenant);
    let limits = TenantLimits {
        max_concurrent: req.max_concurrent,
        max_concurrent_extension: req.max_concurrent_extension,
        max_calls_per_second: req.max_calls_per_second,
        daily_cap_cents: req.daily_cap_cents,
        media_storage_bytes: req.media_storage_bytes,
        max_media_sessions: req.max_media_sessions,
        recording_minutes: req.recording_minutes,
    };
    state.store().set_tenant_limits(tenant, &limits).await?;
    state
        .audit(&p, &source, "tenant.limits", Some(tenant), json!(limits))
        .await?;
    Ok(Json(limits))
}

pub(super) async fn set_media_encryption(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<MediaBody>,
) -> ApiResult<Json<MediaBody>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .set_media_encryption(tenant, req.policy)
        .await?;
    state
        .audit(
            &p,
            &source,
            "tenant.media_encryption",
            Some(tenant),
            json!({ "policy": req.policy.as_str() }),
        )
        .await?;
    Ok(Json(req))
}

/// Whether the tenant's answered calls are recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallRecordingBody {
    enabled: bool,
}

pub(super) async fn call_recording(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<CallRecordingBody>> {
    let enabled = state.store().call_recording(TenantId(tenant)).await?;
    Ok(Json(CallRecordingBody { enabled }))
}

pub(super) async fn set_call_recording(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<CallRecordingBody>,
) -> ApiResult<Json<CallRecordingBody>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .set_call_recording(tenant, req.enabled)
        .await?;
    state
        .audit(
            &p,
            &source,
            "tenant.call_recording",
            Some(tenant),
            json!({ "enabled": req.enabled }),
        )
        .await?;
    Ok(Json(req))
}

pub(super) async fn calendar(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Calendar>> {
    Ok(Json(state.store().calendar(TenantId(tenant)).await?))
}

/// Replaces the tenant's calendar (time zone and holidays) that its call
/// handlers read through `pbx:plugin/clock`.
pub(super) async fn set_calendar(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<Calendar>,
) -> ApiResult<Json<Calendar>> {
    let tenant = TenantId(tenant);
    state.store().set_calendar(tenant, &req).await?;
    state
        .audit(
            &p,
            &source,
            "tenant.calendar",
            Some(tenant),
            json!({ "time_zone": req.time_zone, "holidays": req.holidays.len() }),
        )
        .await?;
    Ok(Json(req))
}
