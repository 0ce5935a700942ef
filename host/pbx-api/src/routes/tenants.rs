//! Tenants and their SIP domains.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use store::{Tenant, TenantId, TenantStatus};
use utoipa::ToSchema;

use crate::access::{Body, P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// A tenant to create, with its primary SIP domain.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"name": "acme", "domain": "acme.example"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    name: String,
    domain: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDomain {
    domain: String,
}

pub(super) async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(state.store().list_tenants().await?))
}

pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Body(req): Body<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let t = state.store().add_tenant(&req.name, &req.domain).await?;
    state
        .audit(
            &p,
            &source,
            "tenant.create",
            Some(t.id),
            json!({ "name": t.name, "domain": t.realm }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

pub(super) async fn show(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Tenant>> {
    state
        .store()
        .tenant(TenantId(tenant))
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.store().delete_tenant(tenant).await?;
    state
        .audit(
            &p,
            &source,
            "tenant.delete",
            Some(tenant),
            json!({ "purged": true }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: &ApiState,
    p: &Principal,
    source: &str,
    tenant: TenantId,
    status: TenantStatus,
) -> ApiResult<StatusCode> {
    state.store().set_tenant_status(tenant, status).await?;
    state
        .audit(
            p,
            source,
            "tenant.status",
            Some(tenant),
            json!({ "status": status.as_str() }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn suspend(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
) -> ApiResult<StatusCode> {
    set_status(
        &state,
        &p,
        &source,
        TenantId(tenant),
        TenantStatus::Suspended,
    )
    .await
}

pub(super) async fn resume(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
) -> ApiResult<StatusCode> {
    set_status(&state, &p, &source, TenantId(tenant), TenantStatus::Active).await
}

pub(super) async fn add_domain(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<NewDomain>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.store().add_domain(tenant, &req.domain).await?;
    state
        .audit(
            &p,
            &source,
            "domain.create",
            Some(tenant),
            json!({ "domain": req.domain.to_ascii_lowercase() }),
        )
        .await?;
    Ok(StatusCode::CREATED)
}
