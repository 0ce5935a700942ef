//! `pbx migrate` through the built binary: the schema version, and a SQLite
//! data directory moved into PostgreSQL (on the private server of
//! `store::testdb`; skipped with a notice where PostgreSQL is not installed).

mod common;

use common::{ok, pbx_with_stdin as pbx};

#[test]
fn migrate_prints_the_schema_version_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let out = ok(&pbx(dir.path(), &["migrate"], None));
    let newest = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .expect("migrations")
    .filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.split('_').next()?.parse::<i64>().ok()
    })
    .max()
    .expect("a migration");
    assert_eq!(out.trim(), format!("schema version {newest} (Sqlite)"));
}

#[tokio::test]
async fn a_sqlite_data_dir_moves_to_postgres() {
    store::testdb::on(store::Backend::Postgres, async {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path();
        ok(&pbx(
            data,
            &["tenant", "add", "acme", "--domain", "acme.example"],
            None,
        ));
        for n in ["1000", "1001"] {
            ok(&pbx(
                data,
                &["extension", "add", "acme", n, "--password-stdin"],
                Some("correct horse battery\n"),
            ));
        }
        let url = store::testdb::fresh_database().await;

        let from = data.display().to_string();
        // `--from` needs `--to`.
        assert!(
            !pbx(data, &["migrate", "--from", &from], None)
                .status
                .success()
        );
        let out = ok(&pbx(
            data,
            &["migrate", "--from", &from, "--to", &url],
            None,
        ));
        assert!(out.contains("copied"), "{out}");

        // The CLI reads the moved tenant from PostgreSQL ...
        let list = ok(&pbx(
            data,
            &["--database", &url, "extension", "list", "acme"],
            None,
        ));
        assert!(list.contains("1000") && list.contains("1001"), "{list}");
        // ... and so does the store.
        let moved = store::Store::connect(&url, data).await.expect("connect");
        let tenant = moved
            .tenant_by_name("acme")
            .await
            .expect("read")
            .expect("acme moved");
        assert_eq!(tenant.domains, vec!["acme.example"]);
        let directory = moved.directory().await.expect("directory");
        assert_eq!(directory.extensions.len(), 2);
        // A second move into the same database is refused.
        let again = pbx(data, &["migrate", "--from", &from, "--to", &url], None);
        assert!(!again.status.success());
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("not empty"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    })
    .await;
}
