//! Call records: filtered listing, and CSV/JSON export streamed page by page.

use std::fmt::Write;

use axum::Extension;
use axum::Json;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::{Cdr, CdrCursor, CdrFilter, Disposition, Store, TenantId, UserRole};

use crate::auth::{P, Principal, Q};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// Records per page of an export.
const PAGE: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
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

/// Quotes a CSV field when needed and defuses spreadsheet formulas.
fn csv_field(out: &mut String, s: &str) {
    let formula = match s.chars().next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !s[1..].chars().all(|c| c.is_ascii_digit()),
        _ => false,
    };
    let needs_quotes = formula || s.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

const CSV_HEADER: &str = "started_at_ms,answered_at_ms,ended_at_ms,caller,callee,disposition,\
                          sip_code,hangup_by,caller_call_id,callee_call_id\n";

fn csv_row(out: &mut String, c: &Cdr) {
    let _ = write!(
        out,
        "{},{},{},",
        c.started_at_ms,
        c.answered_at_ms.map(|a| a.to_string()).unwrap_or_default(),
        c.ended_at_ms
    );
    for (i, f) in [&c.caller, &c.callee].into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    let _ = write!(out, ",{},{},", c.disposition.as_str(), c.sip_code);
    for (i, f) in [&c.hangup_by, &c.caller_call_id, &c.callee_call_id]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push('\n');
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
                        out.push_str(CSV_HEADER);
                    }
                    csv_row(&mut out, c);
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
                (Format::Csv, false) => out.push_str(CSV_HEADER),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        let mut s = String::new();
        csv_field(&mut s, "+15551234");
        assert_eq!(s, "+15551234");
        s.clear();
        csv_field(&mut s, "a,\"b\"");
        assert_eq!(s, "\"a,\"\"b\"\"\"");
        s.clear();
        csv_field(&mut s, "=cmd()");
        assert_eq!(s, "\"'=cmd()\"");
    }
}
