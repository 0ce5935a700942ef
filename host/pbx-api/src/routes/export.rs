//! A tenant's own audit entries and alerts, exported for compliance audits:
//! CSV or JSON over a time range, streamed page by page (a large export never
//! sits in memory).

use std::future::Future;

use axum::Extension;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::TenantId;
use utoipa::IntoParams;

use crate::access::{P, Principal, Q};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// Rows per page.
const PAGE: u32 = 500;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// From this time on (Unix milliseconds, included).
    since_ms: Option<i64>,
    /// Before this time (excluded).
    until_ms: Option<i64>,
    /// `csv` (default) or `json`.
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

impl ExportQuery {
    fn format(&self) -> ApiResult<Format> {
        match self.format.as_deref() {
            None | Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(_) => Err(ApiError::bad_request(
                "invalid_query",
                "format is csv or json",
            )),
        }
    }

    fn range(&self) -> (i64, i64) {
        (
            self.since_ms.unwrap_or(i64::MIN),
            self.until_ms.unwrap_or(i64::MAX),
        )
    }
}

/// How one kind of row is exported.
struct Kind<R> {
    name: &'static str,
    csv_header: &'static str,
    csv_row: fn(&mut String, &R),
    id: fn(&R) -> i64,
}

/// Streams every row `fetch` pages out (`fetch(after_id)` gives the next
/// page) as a download.
fn download<R, F, Fut>(kind: Kind<R>, format: Format, fetch: F) -> Response
where
    R: Serialize + Send + 'static,
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = store::Result<Vec<R>>> + Send + 'static,
{
    struct Cursor<F> {
        fetch: F,
        after: i64,
        started: bool,
        done: bool,
    }
    let start = Cursor {
        fetch,
        after: 0,
        started: false,
        done: false,
    };
    let Kind {
        name,
        csv_header,
        csv_row,
        id,
    } = kind;
    let stream = futures_util::stream::unfold(start, move |mut c| async move {
        if c.done {
            return None;
        }
        let rows = match (c.fetch)(c.after).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, export = name, "export failed");
                c.done = true;
                return Some((Err(std::io::Error::other("export failed")), c));
            }
        };
        let mut out = String::new();
        if !c.started {
            out.push_str(match format {
                Format::Csv => csv_header,
                Format::Json => "[",
            });
        }
        for (i, row) in rows.iter().enumerate() {
            match format {
                Format::Csv => csv_row(&mut out, row),
                Format::Json => {
                    if c.started || i > 0 {
                        out.push(',');
                    }
                    out.push('\n');
                    out.push_str(&serde_json::to_string(row).unwrap_or_default());
                }
            }
        }
        c.started = c.started || !rows.is_empty() || format == Format::Csv;
        c.after = rows.last().map_or(c.after, id);
        if rows.len() < PAGE as usize {
            c.done = true;
            if format == Format::Json {
                out.push_str("\n]\n");
            }
        }
        Some((Ok(Bytes::from(out)), c))
    });
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    (
        [
            (CONTENT_TYPE, ctype.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{ext}\""),
            ),
        ],
        HttpBody::from_stream(stream),
    )
        .into_response()
}

/// The export of `kind` for `tenant` as `q` asks, `page(store, tenant,
/// range, after_id)` reading each page.
fn export<R, F, Fut>(
    state: &ApiState,
    tenant: i64,
    q: &ExportQuery,
    kind: Kind<R>,
    page: F,
) -> ApiResult<Response>
where
    R: Serialize + Send + 'static,
    F: Fn(store::Store, TenantId, (i64, i64), i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = store::Result<Vec<R>>> + Send + 'static,
{
    let (format, range) = (q.format()?, q.range());
    let store = state.store().clone();
    Ok(download(kind, format, move |after| {
        page(store.clone(), TenantId(tenant), range, after)
    }))
}

pub(super) async fn audit(
    State(state): State<ApiState>,
    Extension(_): Extension<Principal>,
    P(tenant): P<i64>,
    Q(q): Q<ExportQuery>,
) -> ApiResult<Response> {
    let kind = Kind {
        name: "audit",
        csv_header: store::AUDIT_CSV_HEADER,
        csv_row: store::write_audit_csv,
        id: |e: &store::AuditEntry| e.id,
    };
    export(&state, tenant, &q, kind, |s, t, range, after| async move {
        s.tenant_audit_page(t, range, after, PAGE).await
    })
}

/// The plugin log (in memory, at most a few hundred lines) in the same
/// formats; `since_ms`/`until_ms` select by the time each line was written.
pub(super) async fn plugin_log(
    State(state): State<ApiState>,
    Extension(_): Extension<Principal>,
    P(tenant): P<i64>,
    Q(q): Q<ExportQuery>,
) -> ApiResult<Response> {
    let (format, (since, until)) = (q.format()?, q.range());
    let lines = state.inner.control.plugin_log(TenantId(tenant)).await?;
    let kind = Kind {
        name: "plugin-log",
        csv_header: crate::control::PLUGIN_LOG_CSV_HEADER,
        csv_row: crate::control::write_plugin_log_csv,
        id: |l: &crate::control::PluginLogLine| i64::try_from(l.seq).unwrap_or(i64::MAX),
    };
    let lines = std::sync::Arc::new(lines);
    Ok(download(kind, format, move |after| {
        let page: Vec<_> = lines
            .iter()
            .filter(|l| i64::try_from(l.seq).unwrap_or(i64::MAX) > after)
            .filter(|l| (since..until).contains(&l.at_ms))
            .take(PAGE as usize)
            .cloned()
            .collect();
        std::future::ready(Ok(page))
    }))
}

pub(super) async fn alerts(
    State(state): State<ApiState>,
    Extension(_): Extension<Principal>,
    P(tenant): P<i64>,
    Q(q): Q<ExportQuery>,
) -> ApiResult<Response> {
    let kind = Kind {
        name: "alerts",
        csv_header: store::ALERT_CSV_HEADER,
        csv_row: store::write_alert_csv,
        id: |a: &store::AlertRecord| a.id,
    };
    export(&state, tenant, &q, kind, |s, t, range, after| async move {
        s.tenant_alerts_page(t, range, after, PAGE).await
    })
}
