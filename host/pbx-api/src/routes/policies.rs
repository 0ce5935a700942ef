//! Provider policy plugins: fraud and restriction components that check every
//! call of one tenant or of all. Provider admins only.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use store::TenantId;
use utoipa::IntoParams;

use super::control::wasm_body;
use crate::access::{P, Principal, Q, Source};
use crate::control::PolicyInfo;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// `?name=NAME[&tenant=ID]` of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallQuery {
    name: String,
    /// The tenant the policy applies to; absent: every tenant.
    tenant: Option<i64>,
}

pub(super) async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<PolicyInfo>>> {
    Ok(Json(state.inner.control.list_policies().await?))
}

pub(super) async fn install(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Q(q): Q<InstallQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PolicyInfo>)> {
    let wasm = wasm_body(body)?;
    let tenant = match q.tenant {
        Some(id) => {
            let t = state
                .store()
                .tenant(TenantId(id))
                .await?
                .ok_or_else(ApiError::not_found)?;
            Some(t.id)
        }
        None => None,
    };
    let size = wasm.len();
    let info = state
        .inner
        .control
        .install_policy(q.name, tenant, wasm.to_vec())
        .await?;
    state
        .audit(
            &p,
            &source,
            "policy.install",
            tenant,
            json!({ "name": info.name, "hash": info.hash, "bytes": size }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Goes back to the policy's version before its last install (audited).
pub(super) async fn rollback(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(name): P<String>,
) -> ApiResult<Json<PolicyInfo>> {
    let info = state.inner.control.rollback_policy(name).await?;
    state
        .audit(
            &p,
            &source,
            "policy.rollback",
            info.tenant,
            json!({ "name": info.name, "hash": info.hash }),
        )
        .await?;
    Ok(Json(info))
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(name): P<String>,
) -> ApiResult<StatusCode> {
    // The audit entry names the tenant the policy applied to.
    let tenant = state
        .inner
        .control
        .list_policies()
        .await?
        .into_iter()
        .find(|policy| policy.name == name)
        .ok_or_else(ApiError::not_found)?
        .tenant;
    state.inner.control.remove_policy(name.clone()).await?;
    state
        .audit(
            &p,
            &source,
            "policy.remove",
            tenant,
            json!({ "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
