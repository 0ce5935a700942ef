//! The live alert feed as Server-Sent Events: provider admins see every
//! tenant's alerts (or one tenant's), tenant admins their tenant's only, as
//! with the audit log. See [`crate::alert_feed`] for where the alerts come
//! from and how a slow client is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use store::{AlertRecord, TenantId, UserRole};
use utoipa::IntoParams;

use crate::access::{Principal, Q};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// How often an idle stream sends a comment, so proxies keep it open and a
/// dead client is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long one stream lasts: the browser then reconnects (with
/// `Last-Event-ID`), so a session that ended or a token revoked since is
/// checked again.
const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// Most stored alerts a stream starts with when resumed.
const CATCH_UP: u32 = 200;
/// What a browser waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 3_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Provider admins may narrow to one tenant.
    tenant: Option<i64>,
    /// Start with the stored alerts after this id (the newest the caller
    /// has); a reconnecting browser's `Last-Event-ID` header does the same.
    after_id: Option<i64>,
}

/// One alert as an event: `event: alert`, its id, and the alert as JSON.
fn event(alert: &AlertRecord) -> Result<Event, Infallible> {
    let event = Event::default()
        .event("alert")
        .id(alert.id.to_string())
        .json_data(alert)
        .unwrap_or_else(|_| Event::default().comment("unencodable alert"));
    Ok(event)
}

/// `GET /api/v1/alerts/stream`.
pub(super) async fn stream(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Q(q): Q<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let scope = match p.role {
        UserRole::ProviderAdmin => q.tenant.map(TenantId),
        _ => Some(p.tenant.ok_or_else(ApiError::not_found)?),
    };
    let key = match p.tenant {
        Some(t) => format!("tenant:{}", t.0),
        None => p.limit_key.clone(),
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = q.after_id.max(last_event_id);
    // Subscribe before reading the stored alerts: whatever is stored from
    // now on comes through the subscription, the rest from the store, and
    // what both have is sent once.
    let sub = Arc::clone(&state.inner.alerts)
        .subscribe(state.store(), key, scope)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "too many alert streams are open; close one first",
            )
        })?;
    // The stored alerts after `after`, oldest first, at most CATCH_UP: a
    // tenant's read with the tenant in the query, never by scanning others'.
    let stored = match (after, scope) {
        (None, _) => Vec::new(),
        (Some(after), None) => state.store().alerts_after(after, CATCH_UP).await?,
        (Some(after), Some(tenant)) => {
            state
                .store()
                .tenant_alerts_page(tenant, (i64::MIN, i64::MAX), after, CATCH_UP)
                .await?
        }
    };
    let seen = stored.last().map_or(0, |a| a.id);
    let live = stream::unfold(sub, |mut sub| async move {
        let alert = sub.alerts.recv().await?;
        Some((alert, sub))
    })
    .filter(move |a| std::future::ready(a.id > seen))
    .map(|a| event(&a));
    let retry = stream::once(std::future::ready(Ok(
        Event::default().retry(Duration::from_millis(RETRY_MS))
    )));
    let events = retry
        .chain(stream::iter(stored.iter().map(event).collect::<Vec<_>>()))
        .chain(live)
        .take_until(tokio::time::sleep(STREAM_LIFETIME));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}
