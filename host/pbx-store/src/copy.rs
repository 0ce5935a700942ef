//! Moving a whole store to another database: every table, in an order where
//! each row's parents come first, in one transaction on the target.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::sql::QueryBuilder;
use crate::{Backend, Error, Result, Store};

/// Every table, parents before children. `directory_generation` and
/// `audit_head` are single rows the migrations create; they are updated, not
/// inserted.
const TABLES: &[&str] = &[
    "tenants",
    "tenant_domains",
    "extensions",
    "registrations",
    "cdrs",
    "cluster_calls",
    "plugin_blobs",
    "dialplan_versions",
    "dialplan_active",
    "policies",
    "plugin_kv",
    "trunks",
    "dids",
    "users",
    "totp",
    "api_tokens",
    "login_attempts",
    "audit_log",
    "audit_checkpoints",
    "bans",
    "alerts",
    "approvals",
    "tenant_limits",
    "network_acls",
    "policy_config",
    "tenant_policies",
    "tenant_policy_config",
    "tenant_holidays",
    "extension_forwarding",
    "tenant_media_keys",
    "prompts",
    "voicemail_messages",
    "voicemail_boxes",
    "call_recordings",
    "login_networks",
];

/// Single rows the migrations create, carried over by update.
const SINGLE_ROWS: &[&str] = &["directory_generation", "audit_head"];

/// Tables a copy leaves behind, and why.
pub const NOT_COPIED: &[(&str, &str)] = &[(
    "cluster_nodes",
    "each node writes its own row on the new database; the old rows \
     describe the old database's nodes",
)];

/// Tables whose ids come from a sequence on PostgreSQL (AUTOINCREMENT or a
/// rowid on SQLite): the sequence restarts above every id ever handed out.
const WITH_IDS: &[&str] = &[
    "tenants",
    "cdrs",
    "users",
    "api_tokens",
    "alerts",
    "approvals",
    "network_acls",
];

/// Rows per INSERT statement (PostgreSQL takes at most 65535 arguments).
const ROWS_PER_INSERT: usize = 200;

/// What [`Store::copy_into`] moved: rows per table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

/// How a column is read from the source and bound on the target.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

impl Store {
    /// Copies every row of this store into `target`, which must be a
    /// PostgreSQL store with no tenants, users or call records yet, in one
    /// transaction on the target: parents before children, the provisioning
    /// generation and the audit head carried over, and each id sequence
    /// restarted above the highest id the source ever handed out. The files
    /// of the data directory (`secret.key`, tenant audio) are not in the
    /// database: the target uses the same data directory.
    pub async fn copy_into(&self, target: &Store) -> Result<CopyReport> {
        if target.backend != Backend::Postgres {
            return Err(Error::Invalid(
                "the copy's target must be PostgreSQL".into(),
            ));
        }
        let mut tx = target.write_tx().await?;
        for table in ["tenants", "users", "cdrs", "audit_log"] {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "the target database is not empty: {table} has {n} rows"
                )));
            }
        }
        let mut report = CopyReport { tables: Vec::new() };
        for table in TABLES {
            let columns = target_columns(&mut tx, table).await?;
            let list = columns
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {list} FROM {table}")))
                .fetch_all(&self.pool)
                .await?;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut q =
                    QueryBuilder::new(target.backend, format!("INSERT INTO {table} ({list}) "));
                q.push_values(chunk, |mut b, row| {
                    for (i, (_, kind)) in columns.iter().enumerate() {
                        match kind {
                            Kind::Integer => b.push_bind(row.try_get::<Option<i64>, _>(i).ok()),
                            Kind::Text => b.push_bind(row.try_get::<Option<String>, _>(i).ok()),
                            Kind::Bytes => b.push_bind(row.try_get::<Option<Vec<u8>>, _>(i).ok()),
                        };
                    }
                });
                q.build()?.execute(&mut *tx).await?;
            }
            // Check every value was read (a failed read above bound NULL).
            for row in &rows {
                read_all(row, &columns, table)?;
            }
            // Triggers stamp a password's age on insert; keep the source's.
            if matches!(*table, "users" | "extensions") {
                restore_password_age(&mut tx, table, &rows).await?;
            }
            report
                .tables
                .push((table.to_string(), u64::try_from(rows.len()).unwrap_or(0)));
        }
        for (table, columns) in SINGLE_ROWS
            .iter()
            .zip(["value", "last_id, hash, keyed_after"])
        {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {columns} FROM {table} WHERE id = 1"
            )))
            .fetch_one(&self.pool)
            .await?;
            let mut q = QueryBuilder::new(target.backend, format!("UPDATE {table} SET "));
            for (i, column) in columns.split(", ").enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push(format_args!("{column} = "));
                if column == "value" || column == "last_id" {
                    q.push_bind(row.try_get::<i64, _>(i)?);
                } else {
                    q.push_bind(row.try_get::<Option<String>, _>(i)?);
                }
            }
            q.push(" WHERE id = 1");
            q.build()?.execute(&mut *tx).await?;
        }
        for table in WITH_IDS {
            let max: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE(MAX(id), 0) FROM {table}"
            )))
            .fetch_one(&self.pool)
            .await?;
            let high_water = match self.backend {
                Backend::Sqlite => {
                    sqlx::query_scalar::<_, i64>("SELECT seq FROM sqlite_sequence WHERE name = $1")
                        .bind(*table)
                        .fetch_optional(&self.pool)
                        .await?
                        .unwrap_or(0)
                }
                Backend::Postgres => 0,
            };
            sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, false)")
                .bind(*table)
                .bind(max.max(high_water) + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// The columns of `table` on the target (PostgreSQL), in order, with how
/// each is carried.
async fn target_columns(
    tx: &mut Transaction<'static, Any>,
    table: &str,
) -> Result<Vec<(String, Kind)>> {
    let rows = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS type \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get("name")?;
            let kind = match r.try_get::<String, _>("type")?.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "text" => Kind::Text,
                "bytea" => Kind::Bytes,
                other => {
                    return Err(Error::Invalid(format!(
                        "{table}.{name} has type {other}, which the copy does not carry"
                    )));
                }
            };
            Ok((name, kind))
        })
        .collect()
}

/// Fails on the first value of `row` that does not read as its column's kind.
fn read_all(row: &AnyRow, columns: &[(String, Kind)], table: &str) -> Result<()> {
    for (i, (name, kind)) in columns.iter().enumerate() {
        let read = match kind {
            Kind::Integer => row.try_get::<Option<i64>, _>(i).map(drop),
            Kind::Text => row.try_get::<Option<String>, _>(i).map(drop),
            Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i).map(drop),
        };
        read.map_err(|e| Error::Invalid(format!("{table}.{name}: {e}")))?;
    }
    Ok(())
}

async fn restore_password_age(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    rows: &[AnyRow],
) -> Result<()> {
    for row in rows {
        let at: Option<i64> = row.try_get("password_changed_ms")?;
        if table == "users" {
            sqlx::query("UPDATE users SET password_changed_ms = $1 WHERE id = $2")
                .bind(at)
                .bind(row.try_get::<i64, _>("id")?)
                .execute(&mut **tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE extensions SET password_changed_ms = $1 \
                 WHERE tenant_id = $2 AND number = $3",
            )
            .bind(at)
            .bind(row.try_get::<i64, _>("tenant_id")?)
            .bind(row.try_get::<String, _>("number")?)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cdr, CdrFilter, TenantStatus};

    /// Every table is copied, carried over as a single row, or left behind
    /// for a reason.
    #[tokio::test]
    async fn every_table_is_copied_or_left_for_a_reason() {
        let store = Store::open_in_memory().await.expect("open");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
        )
        .fetch_all(&store.pool)
        .await
        .expect("tables");
        for table in &tables {
            let copied = TABLES.contains(&table.as_str());
            let single = SINGLE_ROWS.contains(&table.as_str());
            let left = NOT_COPIED.iter().any(|(t, _)| t == table);
            assert_eq!(
                u8::from(copied) + u8::from(single) + u8::from(left),
                1,
                "{table} must be copied, a single row or left for a reason"
            );
        }
        for listed in TABLES
            .iter()
            .chain(SINGLE_ROWS)
            .chain(NOT_COPIED.iter().map(|(t, _)| t))
        {
            assert!(
                tables.iter().any(|t| t == listed),
                "{listed} is not a table"
            );
        }
    }

    #[tokio::test]
    async fn a_sqlite_store_moves_whole_to_postgres() {
        crate::testdb::on(Backend::Postgres, async {
            let dir = tempfile::tempdir().expect("dir");
            let source = Store::open(dir.path()).await.expect("sqlite");
            let acme = source.add_tenant("acme", "acme.example").await.expect("t");
            let gone = source.add_tenant("gone", "gone.example").await.expect("t");
            source
                .add_domain(acme.id, "alt.acme.example")
                .await
                .expect("dom");
            for n in ["100", "101", "102"] {
                source
                    .add_extension(acme.id, n, "pw-long-enough")
                    .await
                    .expect("ext");
            }
            source
                .set_tenant_status(acme.id, TenantStatus::Suspended)
                .await
                .expect("status");
            let cdrs: Vec<Cdr> = (0..450)
                .map(|i| crate::cdr::tests::cdr(acme.id, "100", "101", 1_000 + i))
                .collect();
            source.insert_cdrs(&cdrs).await.expect("cdrs");
            source.delete_tenant(gone.id).await.expect("rm");
            let generation = source.generation().await.expect("generation");
            let before = source.directory().await.expect("directory");
            source.close().await;

            let source = Store::open(dir.path()).await.expect("reopen");
            let url = crate::testdb::fresh_database().await;
            let target = Store::connect(&url, dir.path()).await.expect("postgres");
            let report = source.copy_into(&target).await.expect("copy");
            assert!(report.tables.contains(&("cdrs".to_string(), 450)));
            assert!(report.tables.contains(&("extensions".to_string(), 3)));
            target.close().await;

            // Read back through a new connection, as the server would.
            let moved = Store::connect(&url, dir.path()).await.expect("reconnect");
            assert_eq!(moved.backend(), Backend::Postgres);
            let after = moved.directory().await.expect("directory");
            assert_eq!(after.tenants, before.tenants);
            assert_eq!(after.extensions, before.extensions);
            assert_eq!(moved.generation().await.expect("generation"), generation);
            let filter = CdrFilter {
                limit: Some(1000),
                ..CdrFilter::default()
            };
            let listed = moved.list_cdrs(acme.id, &filter).await.expect("cdrs");
            assert_eq!(listed.len(), 450);
            assert_eq!(listed[0].started_at_ms, 1_449);
            // Ids go on above the source's, never reusing the removed tenant's.
            let next = moved.add_tenant("next", "next.example").await.expect("t");
            assert!(next.id.0 > gone.id.0, "{next:?}");
            // A second copy into the same database is refused.
            assert!(matches!(
                source.copy_into(&moved).await,
                Err(Error::Conflict(_))
            ));
        })
        .await;
    }
}
