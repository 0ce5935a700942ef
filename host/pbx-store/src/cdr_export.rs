//! Call records page by page, for exports larger than one listing, and the
//! one CSV form of a call record that every export (CLI and API) writes.

use std::fmt::Write;

use crate::sql::QueryBuilder;
use sqlx::Row;

use crate::cdr::{COLUMNS, from_row};
use crate::{Cdr, CdrFilter, LegMedia, Result, Store, TenantId};

/// The header line of the CSV export (with its line end). Media columns come
/// per leg: `caller_*` is the caller's leg, `callee_*` the callee's; "in" is
/// what the leg sent the host, "out" what the host sent it.
pub const CDR_CSV_HEADER: &str = "started_at_ms,answered_at_ms,ended_at_ms,caller,callee,\
disposition,sip_code,hangup_by,caller_call_id,callee_call_id,\
caller_packets_in,caller_bytes_in,caller_packets_out,caller_bytes_out,\
caller_srtp_auth_failures,caller_packets_lost,\
callee_packets_in,callee_bytes_in,callee_packets_out,callee_bytes_out,\
callee_srtp_auth_failures,callee_packets_lost,tags\n";

/// Appends `cdr` as one CSV line (RFC 4180 quoting; text that a spreadsheet
/// would run as a formula is quoted and prefixed with `'`).
pub fn write_cdr_csv(out: &mut String, cdr: &Cdr) {
    let answered = cdr
        .answered_at_ms
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = write!(out, "{},{answered},{},", cdr.started_at_ms, cdr.ended_at_ms);
    csv_field(out, &cdr.caller);
    out.push(',');
    csv_field(out, &cdr.callee);
    let _ = write!(out, ",{},{},", cdr.disposition.as_str(), cdr.sip_code);
    csv_field(out, &cdr.hangup_by);
    out.push(',');
    csv_field(out, &cdr.caller_call_id);
    out.push(',');
    csv_field(out, &cdr.callee_call_id);
    for leg in [&cdr.media.caller, &cdr.media.callee] {
        let LegMedia {
            packets_in,
            bytes_in,
            packets_out,
            bytes_out,
            srtp_auth_failures,
            packets_lost,
        } = leg;
        let _ = write!(
            out,
            ",{packets_in},{bytes_in},{packets_out},{bytes_out},{srtp_auth_failures},{packets_lost}"
        );
    }
    // One field: the tags joined by `;` (a tag never holds one).
    out.push(',');
    csv_field(out, &cdr.tags.join(";"));
    out.push('\n');
}

/// Quotes a CSV field when needed and defuses spreadsheet formulas.
pub(crate) fn csv_field(out: &mut String, s: &str) {
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

/// Where the next page of an export starts: just after this record in
/// newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdrCursor {
    started_at_ms: i64,
    id: i64,
}

impl Store {
    /// One page (at most `page` records, capped at [`CdrFilter::MAX_LIMIT`]) of
    /// the tenant's CDRs matching `filter` (its `limit` is ignored), newest first,
    /// after `cursor`. Returns the records and the cursor of the next page, `None`
    /// when this was the last one.
    pub async fn cdr_page(
        &self,
        tenant: TenantId,
        filter: &CdrFilter,
        cursor: Option<CdrCursor>,
        page: u32,
    ) -> Result<(Vec<Cdr>, Option<CdrCursor>)> {
        let page = page.clamp(1, CdrFilter::MAX_LIMIT);
        let mut q = QueryBuilder::new(
            self.backend,
            format!("SELECT id, {COLUMNS} FROM cdrs WHERE tenant_id = "),
        );
        q.push_bind(tenant.0);
        if let Some(since) = filter.since_ms {
            q.push(" AND started_at_ms >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND started_at_ms < ").push_bind(until);
        }
        if let Some(ext) = &filter.extension {
            q.push(" AND (caller = ")
                .push_bind(ext.clone())
                .push(" OR callee = ")
                .push_bind(ext.clone())
                .push(")");
        }
        if let Some(d) = filter.disposition {
            q.push(" AND disposition = ").push_bind(d.as_str());
        }
        if let Some(c) = cursor {
            q.push(" AND (started_at_ms < ")
                .push_bind(c.started_at_ms)
                .push(" OR (started_at_ms = ")
                .push_bind(c.started_at_ms)
                .push(" AND id < ")
                .push_bind(c.id)
                .push("))");
        }
        q.push(" ORDER BY started_at_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(page));
        let rows = q.build()?.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let cdr = from_row(row)?;
            last = Some(CdrCursor {
                started_at_ms: cdr.started_at_ms,
                id: row.try_get("id")?,
            });
            out.push(cdr);
        }
        let next = if out.len() < page as usize {
            None
        } else {
            last
        };
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::{CDR_CSV_HEADER, csv_field, write_cdr_csv};
    use crate::*;

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
        s.clear();
        csv_field(&mut s, "-1+2");
        assert_eq!(s, "\"'-1+2\"");
    }

    #[test]
    fn csv_rows_carry_each_legs_media_under_the_header() {
        let mut cdr = crate::cdr::tests::cdr(TenantId(1), "1000", "1001", 5_000);
        cdr.media.caller = LegMedia {
            packets_in: 11,
            bytes_in: 1_892,
            packets_out: 12,
            bytes_out: 2_064,
            srtp_auth_failures: 1,
            packets_lost: 2,
        };
        cdr.media.callee = LegMedia {
            packets_in: 21,
            bytes_in: 3_612,
            packets_out: 22,
            bytes_out: 3_784,
            srtp_auth_failures: 0,
            packets_lost: 3,
        };
        let mut row = String::new();
        write_cdr_csv(&mut row, &cdr);
        let header: Vec<&str> = CDR_CSV_HEADER.trim_end().split(',').collect();
        let fields: Vec<&str> = row.trim_end().split(',').collect();
        assert_eq!(header.len(), fields.len(), "{row}");
        let get = |name: &str| {
            let i = header.iter().position(|h| *h == name).expect(name);
            fields[i]
        };
        assert_eq!(get("caller"), "1000");
        assert_eq!(get("callee"), "1001");
        assert_eq!(get("started_at_ms"), "5000");
        assert_eq!(get("caller_packets_in"), "11");
        assert_eq!(get("caller_bytes_in"), "1892");
        assert_eq!(get("caller_packets_out"), "12");
        assert_eq!(get("caller_bytes_out"), "2064");
        assert_eq!(get("caller_srtp_auth_failures"), "1");
        assert_eq!(get("caller_packets_lost"), "2");
        assert_eq!(get("callee_packets_in"), "21");
        assert_eq!(get("callee_bytes_in"), "3612");
        assert_eq!(get("callee_packets_out"), "22");
        assert_eq!(get("callee_bytes_out"), "3784");
        assert_eq!(get("callee_srtp_auth_failures"), "0");
        assert_eq!(get("callee_packets_lost"), "3");
        assert!(row.ends_with('\n') && !row[..row.len() - 1].contains('\n'));
    }

    backend_test! {
        async fn pages_cover_everything_once_even_with_equal_start_times() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let mut batch: Vec<Cdr> = (0..7)
                .map(|i| crate::cdr::tests::cdr(a, "100", "101", 1_000 * (i / 3)))
                .collect();
            batch.push(crate::cdr::tests::cdr(b, "100", "101", 5));
            store.insert_cdrs(&batch).await.expect("insert");
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) = store
                    .cdr_page(a, &CdrFilter::default(), cursor, 2)
                    .await
                    .expect("page");
                assert!(page.len() <= 2);
                seen.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 7);
            assert!(seen.iter().all(|c| c.tenant == a));
            assert!(
                seen.windows(2)
                    .all(|w| w[0].started_at_ms >= w[1].started_at_ms)
            );
        }
    }
}
