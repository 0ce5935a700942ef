//! Call records page by page, for exports larger than one listing.

use sqlx::{QueryBuilder, Row, Sqlite};

use crate::cdr::{COLUMNS, from_row};
use crate::{Cdr, CdrFilter, Result, Store, TenantId};

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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, {COLUMNS} FROM cdrs WHERE tenant_id = "
        ));
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
        let rows = q.build().fetch_all(&self.pool).await?;
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
    use crate::*;

    #[tokio::test]
    async fn pages_cover_everything_once_even_with_equal_start_times() {
        let store = Store::open_in_memory().await.expect("open");
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
