//! Health, metrics and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::ApiState;

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    status: &'static str,
}

pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub(super) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.inner.metrics.render(),
    )
}

pub(super) async fn openapi(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(state.config()))
}
