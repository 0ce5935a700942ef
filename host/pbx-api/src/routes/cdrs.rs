//! Call records: filtered listing, and CSV/JSON export streamed page by page.

use axum::Extension;
use axum::Json;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::{
    CDR_CSV_HEADER, Cdr, CdrCursor, CdrFilter, Disposition, Store, TenantId, UserRole,
    write_cdr_csv,
};
use utoipa::IntoParams;

use crate::access::{P, Principal, Q};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// Records per page of an export.
const PAGE: u32 = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CdrQuery {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    extension: Option<String>,
    disposition: Option<String>,
    limit: Option<u32>,
    /// `csv` (default) or `json`; export only.
    format: Option<String>,
}

/// The filter a caller may use: a `user` only ever sees their own extension.
fn filter_for(p: &Principal, q: &CdrQuery) -> ApiResult<CdrFilter> {
    let disposition = match q.disposition.as_deref() {
        Some(d) => Some(
            Disposition::parse(d)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "unknown disposition"))?,
        ),
        None => None,
    };
    let extension = if p.role == UserRole::User {
        Some(p.extension.clone().ok_or_else(ApiError::not_found)?)
    } else {
        q.extension.clone()
    };
    Ok(CdrFilter {
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        extension,
        disposition,
        limit: q.limit,
    })
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    P(tenant): P<i64>,
    Q(q): Q<CdrQuery>,
) -> ApiResult<Json<Vec<Cdr>>> {
    if q.format.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "format is for the export",
        ));
    }
    let filter = filter_for(&p, &q)?;
    Ok(Json(
        state.store().list_cdrs(TenantId(tenant), &filter).await?,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

struct Export {
    store: Store,
    tenant: TenantId,
    filter: CdrFilter,
    format: Format,
    cursor: Option<CdrCursor>,
    started: bool,
    done: bool,
}

impl Export {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Export)> {
        if self.done {
            return None;
        }
        let page = self
            .store
            .cdr_page(self.tenant, &self.filter, self.cursor, PAGE)
            .await;
        let (rows, next) = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "CDR export failed");
                self.done = true;
                return Some((Err(std::io::Error::other("export failed")), self));
            }
        };
        let mut out = String::with_capacity(rows.len() * 128 + 128);
        for c in &rows {
            match self.format {
                Format::Csv => {
                    if !self.started {
                        out.push_str(CDR_CSV_HEADER);
                    }
                    write_cdr_csv(&mut out, c);
                }
                Format::Json => {
                    out.push_str(if self.started { ",\n" } else { "[\n" });
                    out.push_str(&serde_json::to_string(c).unwrap_or_default());
                }
            }
            self.started = true;
        }
        if next.is_none() {
            self.done = true;
            match (self.format, self.started) {
                (Format::Csv, false) => out.push_str(CDR_CSV_HEADER),
                (Format::Json, false) => out.push_str("[]\n"),
                (Format::Json, true) => out.push_str("\n]\n"),
                (Format::Csv, true) => {}
            }
        }
        self.cursor = next;
        Some((Ok(Bytes::from(out)), self))
    }
}

pub(super) async fn export(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    P(tenant): P<i64>,
    Q(q): Q<CdrQuery>,
) -> ApiResult<Response> {
    let format = match q.format.as_deref() {
        None | Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "format is csv or json",
            ));
        }
    };
    let mut filter = filter_for(&p, &q)?;
    filter.limit = None;
    let start = Export {
        store: state.store().clone(),
        tenant: TenantId(tenant),
        filter,
        format,
        cursor: None,
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(start, Export::next_chunk);
    let (ctype, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "cdrs.csv"),
        Format::Json => ("application/json", "cdrs.json"),
    };
    Ok((
        [
            (CONTENT_TYPE, ctype.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        HttpBody::from_stream(stream),
    )
        .into_response())
}
