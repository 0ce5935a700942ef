//! Destination approvals: tenants' requests to call costly destination classes
//! or number prefixes. Provider admins see the pending queue and decide; tenant
//! admins read their own tenant's requests.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use store::{Approval, ApprovalStatus, ApprovalTarget, TenantId};
use utoipa::{IntoParams, ToSchema};

use crate::access::{P, Principal, Q, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// `?tenant=ID` narrows the queue to one tenant.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueQuery {
    tenant: Option<i64>,
}

/// The optional body of a decision: naming the tenant makes the decision
/// apply only if the request is that tenant's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    tenant: Option<i64>,
}

/// Pending requests of every tenant (or of one), oldest first.
pub(super) async fn queue(
    State(state): State<ApiState>,
    Q(q): Q<QueueQuery>,
) -> ApiResult<Json<Vec<Approval>>> {
    let mut pending = state.store().list_pending_approvals().await?;
    if let Some(t) = q.tenant {
        pending.retain(|a| a.tenant == TenantId(t));
    }
    Ok(Json(pending))
}

/// Every request of one tenant, newest first.
pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<Approval>>> {
    Ok(Json(state.store().list_approvals(TenantId(tenant)).await?))
}

pub(super) async fn grant(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(id): P<i64>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Approval>> {
    decide(&state, &p, &source, id, body, ApprovalStatus::Granted).await
}

pub(super) async fn deny(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(id): P<i64>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Approval>> {
    decide(&state, &p, &source, id, body, ApprovalStatus::Denied).await
}

fn decision(body: Result<Bytes, BytesRejection>) -> ApiResult<Decision> {
    let bytes = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decision::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

async fn decide(
    state: &ApiState,
    p: &Principal,
    source: &str,
    id: i64,
    body: Result<Bytes, BytesRejection>,
    status: ApprovalStatus,
) -> ApiResult<Json<Approval>> {
    let wanted = decision(body)?;
    // Only pending requests can be decided; the queue says whose this one is.
    let tenant = match wanted.tenant {
        Some(t) => TenantId(t),
        None => {
            state
                .store()
                .list_pending_approvals()
                .await?
                .into_iter()
                .find(|a| a.id == id)
                .ok_or_else(ApiError::not_found)?
                .tenant
        }
    };
    let now = state.now_ms();
    let (approval, action) = match status {
        ApprovalStatus::Denied => (
            state
                .store()
                .deny_approval(tenant, id, &p.subject, now)
                .await?,
            "approval.deny",
        ),
        _ => (
            state
                .store()
                .grant_approval(tenant, id, &p.subject, now)
                .await?,
            "approval.grant",
        ),
    };
    let (kind, target) = match &approval.target {
        ApprovalTarget::Class(c) => ("class", c),
        ApprovalTarget::Prefix(d) => ("prefix", d),
    };
    state
        .audit(
            p,
            source,
            action,
            Some(tenant),
            json!({ "id": approval.id, "kind": kind, "target": target }),
        )
        .await?;
    Ok(Json(approval))
}
