//! Call detail records.
//!
//! The same concept as `pbx-model`'s `cdr.rs` at another layer: that one defines a
//! call record, this one stores and exports it.

use crate::sql::QueryBuilder;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Cdr, CdrMedia, Disposition, Error, LegMedia, Result, Store, TenantId};

/// Which of a tenant's CDRs to list. Every field is optional; the default lists
/// the newest [`CdrFilter::MAX_LIMIT`] records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrFilter {
    /// Calls that started at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// Calls that started before this Unix millisecond.
    pub until_ms: Option<i64>,
    /// Calls where this extension was the caller or the callee.
    pub extension: Option<String>,
    pub disposition: Option<Disposition>,
    /// At most this many records (capped at [`CdrFilter::MAX_LIMIT`]).
    pub limit: Option<u32>,
}

impl CdrFilter {
    /// The most records one listing returns.
    pub const MAX_LIMIT: u32 = 10_000;
}

const INSERT: &str = "INSERT INTO cdrs \
    (tenant_id, caller, callee, started_at_ms, answered_at_ms, ended_at_ms, disposition, \
     sip_code, hangup_by, caller_call_id, callee_call_id, \
     caller_packets_in, caller_bytes_in, caller_packets_out, caller_bytes_out, \
     caller_srtp_auth_failures, caller_packets_lost, \
     callee_packets_in, callee_bytes_in, callee_packets_out, callee_bytes_out, \
     callee_srtp_auth_failures, callee_packets_lost, tags) ";

/// Records per statement, of 24 parameters each.
const CHUNK: usize = crate::sql::rows_per_statement(24);

/// The columns a CDR is read from (after `id`).
pub(crate) const COLUMNS: &str = "tenant_id, caller, callee, started_at_ms, answered_at_ms, \
    ended_at_ms, disposition, sip_code, hangup_by, caller_call_id, callee_call_id, \
    caller_packets_in, caller_bytes_in, caller_packets_out, caller_bytes_out, \
    caller_srtp_auth_failures, caller_packets_lost, \
    callee_packets_in, callee_bytes_in, callee_packets_out, callee_bytes_out, \
    callee_srtp_auth_failures, callee_packets_lost, tags";

/// SQLite integers are signed: counters saturate at `i64::MAX`.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes a batch of CDRs in one transaction, a few hundred per statement;
    /// when this returns `Ok` they are on disk.
    pub async fn insert_cdrs(&self, cdrs: &[Cdr]) -> Result<()> {
        if cdrs.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        insert_in(&mut tx, cdrs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's CDRs matching `filter`, newest first.
    pub async fn list_cdrs(&self, tenant: TenantId, filter: &CdrFilter) -> Result<Vec<Cdr>> {
        let mut q = QueryBuilder::new(
            self.backend,
            format!("SELECT {COLUMNS} FROM cdrs WHERE tenant_id = "),
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
        let limit = filter
            .limit
            .unwrap_or(CdrFilter::MAX_LIMIT)
            .min(CdrFilter::MAX_LIMIT);
        q.push(" ORDER BY started_at_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build()?.fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }
}

/// Writes `cdrs` inside `tx`, a few hundred per statement.
pub(crate) async fn insert_in(tx: &mut Transaction<'static, Any>, cdrs: &[Cdr]) -> Result<()> {
    let backend = crate::Backend::of(tx);
    for chunk in cdrs.chunks(CHUNK) {
        let mut q = QueryBuilder::new(backend, INSERT);
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.tenant.0)
                .push_bind(c.caller.as_str())
                .push_bind(c.callee.as_str())
                .push_bind(c.started_at_ms)
                .push_bind(c.answered_at_ms)
                .push_bind(c.ended_at_ms)
                .push_bind(c.disposition.as_str())
                .push_bind(i64::from(c.sip_code))
                .push_bind(c.hangup_by.as_str())
                .push_bind(c.caller_call_id.as_str())
                .push_bind(c.callee_call_id.as_str());
            for leg in [&c.media.caller, &c.media.callee] {
                row.push_bind(count(leg.packets_in))
                    .push_bind(count(leg.bytes_in))
                    .push_bind(count(leg.packets_out))
                    .push_bind(count(leg.bytes_out))
                    .push_bind(count(leg.srtp_auth_failures))
                    .push_bind(count(leg.packets_lost));
            }
            row.push_bind(serde_json::to_string(&c.tags).unwrap_or_else(|_| "[]".into()));
        });
        q.build()?
            .persistent(chunk.len() == CHUNK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Reads one record from a row holding [`COLUMNS`].
pub(crate) fn from_row(row: &AnyRow) -> Result<Cdr> {
    let tenant = TenantId(row.try_get("tenant_id")?);
    let bad = |what: &str| Error::Invalid(format!("stored CDR of tenant {tenant}: {what}"));
    let disposition: String = row.try_get("disposition")?;
    let sip_code: i64 = row.try_get("sip_code")?;
    Ok(Cdr {
        tenant,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        started_at_ms: row.try_get("started_at_ms")?,
        answered_at_ms: row.try_get("answered_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        disposition: Disposition::parse(&disposition).ok_or_else(|| bad("disposition"))?,
        sip_code: u16::try_from(sip_code).map_err(|_| bad("sip_code"))?,
        hangup_by: row.try_get("hangup_by")?,
        caller_call_id: row.try_get("caller_call_id")?,
        callee_call_id: row.try_get("callee_call_id")?,
        media: CdrMedia {
            caller: leg_media(row, "caller")?,
            callee: leg_media(row, "callee")?,
        },
        tags: serde_json::from_str(&row.try_get::<String, _>("tags")?).map_err(|_| bad("tags"))?,
    })
}

fn leg_media(row: &AnyRow, leg: &str) -> Result<LegMedia> {
    let get = |what: &str| -> Result<u64> {
        let n: i64 = row.try_get(format!("{leg}_{what}").as_str())?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(LegMedia {
        packets_in: get("packets_in")?,
        bytes_in: get("bytes_in")?,
        packets_out: get("packets_out")?,
        bytes_out: get("bytes_out")?,
        srtp_auth_failures: get("srtp_auth_failures")?,
        packets_lost: get("packets_lost")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::*;

    pub(crate) fn cdr(tenant: TenantId, caller: &str, callee: &str, started_at_ms: i64) -> Cdr {
        Cdr {
            tenant,
            caller: caller.into(),
            callee: callee.into(),
            started_at_ms,
            answered_at_ms: Some(started_at_ms + 2_000),
            ended_at_ms: started_at_ms + 60_000,
            disposition: Disposition::Answered,
            sip_code: 200,
            hangup_by: "caller".into(),
            caller_call_id: format!("a-{started_at_ms}"),
            callee_call_id: format!("b-{started_at_ms}"),
            media: CdrMedia::default(),
            tags: Vec::new(),
        }
    }

    backend_test! {
        async fn media_counters_round_trip() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let mut c = cdr(a, "100", "101", 1_000);
            c.media.caller = LegMedia {
                packets_in: 500,
                bytes_in: 86_000,
                packets_out: 498,
                bytes_out: 85_656,
                srtp_auth_failures: 2,
                packets_lost: 1,
            };
            c.media.callee.packets_in = 498;
            c.media.callee.bytes_out = u64::MAX;
            store
                .insert_cdrs(std::slice::from_ref(&c))
                .await
                .expect("insert");
            let got = store
                .list_cdrs(a, &CdrFilter::default())
                .await
                .expect("list");
            assert_eq!(got[0].media.caller, c.media.caller);
            assert_eq!(got[0].media.callee.packets_in, 498);
            // saturated rather than wrapped
            assert_eq!(got[0].media.callee.bytes_out, i64::MAX as u64);
            let (page, _) = store
                .cdr_page(a, &CdrFilter::default(), None, 10)
                .await
                .expect("page");
            assert_eq!(page[0].media, got[0].media);
        }
    }

    fn starts(cdrs: &[Cdr]) -> Vec<i64> {
        cdrs.iter().map(|c| c.started_at_ms).collect()
    }

    backend_test! {
        async fn insert_list_and_filter() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;

            let mut busy = cdr(a, "100", "102", 3_000);
            busy.disposition = Disposition::Busy;
            busy.sip_code = 486;
            busy.answered_at_ms = None;
            busy.callee_call_id = String::new();
            let batch = vec![
                cdr(a, "100", "101", 1_000),
                cdr(a, "101", "103", 2_000),
                busy.clone(),
                cdr(a, "103", "104", 4_000),
                cdr(b, "100", "101", 2_500),
            ];
            store.insert_cdrs(&batch).await.expect("insert");

            let all = store
                .list_cdrs(a, &CdrFilter::default())
                .await
                .expect("list");
            assert_eq!(starts(&all), [4_000, 3_000, 2_000, 1_000]);
            assert_eq!(all[1], busy);
            assert!(all.iter().all(|c| c.tenant == a));

            let window = CdrFilter {
                since_ms: Some(2_000),
                until_ms: Some(4_000),
                ..CdrFilter::default()
            };
            assert_eq!(
                starts(&store.list_cdrs(a, &window).await.expect("list")),
                [3_000, 2_000]
            );

            let by_ext = CdrFilter {
                extension: Some("101".into()),
                ..CdrFilter::default()
            };
            assert_eq!(
                starts(&store.list_cdrs(a, &by_ext).await.expect("list")),
                [2_000, 1_000]
            );

            let by_disposition = CdrFilter {
                disposition: Some(Disposition::Busy),
                ..CdrFilter::default()
            };
            assert_eq!(
                store.list_cdrs(a, &by_disposition).await.expect("list"),
                vec![busy]
            );

            let limited = CdrFilter {
                limit: Some(2),
                ..CdrFilter::default()
            };
            assert_eq!(
                starts(&store.list_cdrs(a, &limited).await.expect("list")),
                [4_000, 3_000]
            );
        }
    }

    backend_test! {
        async fn tenants_never_see_each_others_cdrs() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            store
                .insert_cdrs(&[cdr(b, "100", "101", 1_000), cdr(b, "100", "101", 2_000)])
                .await
                .expect("insert");
            let same_ext = CdrFilter {
                extension: Some("100".into()),
                ..CdrFilter::default()
            };
            assert!(
                store
                    .list_cdrs(a, &same_ext)
                    .await
                    .expect("list")
                    .is_empty()
            );
            assert!(
                store
                    .list_cdrs(a, &CdrFilter::default())
                    .await
                    .expect("list")
                    .is_empty()
            );
            assert_eq!(
                store
                    .list_cdrs(b, &CdrFilter::default())
                    .await
                    .expect("list")
                    .len(),
                2
            );
            // CDRs of an unknown tenant are refused, and the batch with them
            assert!(
                store
                    .insert_cdrs(&[cdr(a, "1", "2", 5), cdr(TenantId(99), "1", "2", 6)])
                    .await
                    .is_err()
            );
            assert!(
                store
                    .list_cdrs(a, &CdrFilter::default())
                    .await
                    .expect("list")
                    .is_empty()
            );
        }
    }

    backend_test! {
        async fn a_batch_larger_than_a_statement_is_written_whole() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("t").id;
            let n = crate::cdr::CHUNK * 2 + 3;
            let batch: Vec<Cdr> = (0..n)
                .map(|i| cdr(a, "100", "101", 1_000 + i as i64))
                .collect();
            store.insert_cdrs(&batch).await.expect("insert");
            let mut all = store
                .list_cdrs(a, &CdrFilter::default())
                .await
                .expect("list");
            all.reverse();
            assert_eq!(all, batch);
        }
    }
}
