//! Call recordings of a tenant: list, download (WAV), delete. A tenant's
//! admins (and provider admins) reach them; another tenant's recording, or
//! one that does not exist, is the same 404.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store::{CallRecording, TenantId};

use crate::access::{P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

use super::Deleted;

pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<CallRecording>>> {
    Ok(Json(state.store().call_recordings(TenantId(tenant)).await?))
}

pub(super) async fn download(
    State(state): State<ApiState>,
    P((tenant, id)): P<(i64, String)>,
) -> ApiResult<Response> {
    let Some(wav) = state
        .store()
        .call_recording_audio(TenantId(tenant), &id)
        .await?
    else {
        return Err(ApiError::not_found());
    };
    Ok((
        [
            (CONTENT_TYPE, "audio/wav".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"recording-{id}.wav\""),
            ),
        ],
        wav,
    )
        .into_response())
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, id)): P<(i64, String)>,
) -> ApiResult<Json<Deleted>> {
    let tenant = TenantId(tenant);
    if !state.store().delete_call_recording(tenant, &id).await? {
        return Err(ApiError::not_found());
    }
    state
        .audit(
            &p,
            &source,
            "recording.delete",
            Some(tenant),
            json!({ "id": id }),
        )
        .await?;
    Ok(Json(Deleted { deleted: id }))
}
