//! Reading the audit log: provider admins see everything, tenant admins their
//! tenant's entries only.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use store::{AuditEntry, TenantId, UserRole};
use utoipa::IntoParams;

use crate::access::{Principal, Q};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Provider admins may narrow to one tenant.
    tenant: Option<i64>,
    before_id: Option<i64>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let tenant = match p.role {
        UserRole::ProviderAdmin => q.tenant.map(TenantId),
        _ => Some(p.tenant.ok_or_else(ApiError::not_found)?),
    };
    let entries = state
        .store()
        .list_audit(tenant, q.before_id, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(entries))
}

/// Walks the whole chain now: what `pbx audit verify` reports.
pub(super) async fn verify(
    State(state): State<ApiState>,
) -> ApiResult<Json<crate::audit::AuditReport>> {
    Ok(Json(crate::audit::verify_audit(state.store()).await?))
}
