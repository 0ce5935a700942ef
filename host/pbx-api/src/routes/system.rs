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
    let mut text = state.inner.metrics.render();
    // The cluster's figures when nodes heartbeat; a failed read leaves
    // them out rather than failing the scrape.
    match state.inner.store.list_nodes().await {
        Ok(nodes) => text.push_str(&crate::metrics::render_cluster(&nodes, state.now_ms())),
        Err(e) => tracing::warn!(error = %e, "cannot read the cluster's nodes for /metrics"),
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}

pub(super) async fn openapi(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(state.config()))
}
