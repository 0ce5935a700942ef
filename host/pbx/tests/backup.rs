//! `pbx backup` on PostgreSQL through the built binary: an archive of a
//! database on the private server of `store::testdb`, verified, and restored
//! into a new, empty database (skipped with a notice where PostgreSQL or its
//! client programs are not installed, unless `PBX_REQUIRE_TOOLS=1`).

mod common;

use common::{ok, pbx_with_stdin as pbx};

const PASS: Option<&str> = Some("correct horse battery\n");

#[tokio::test]
async fn a_postgres_backup_restores_into_an_empty_database() {
    let found = pbx::backup::find_program("pg_dump").is_ok()
        && pbx::backup::find_program("pg_restore").is_ok();
    if !store::testdb::present_or_skip(found, "pg_dump/pg_restore not found") {
        return;
    }
    store::testdb::on(store::Backend::Postgres, async {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let url = store::testdb::fresh_database().await;
        ok(&pbx(
            &data,
            &[
                "--database",
                &url,
                "tenant",
                "add",
                "acme",
                "--domain",
                "acme.example",
            ],
            None,
        ));
        ok(&pbx(
            &data,
            &[
                "--database",
                &url,
                "extension",
                "add",
                "acme",
                "1000",
                "--password-stdin",
            ],
            PASS,
        ));
        let archive = dir.path().join("b.age");
        let archive_arg = archive.display().to_string();
        let made = ok(&pbx(
            &data,
            &[
                "--database",
                &url,
                "backup",
                "create",
                "--out",
                &archive_arg,
            ],
            PASS,
        ));
        assert!(made.contains("PostgreSQL database"), "{made}");
        let checked = ok(&pbx(&data, &["backup", "verify", &archive_arg], PASS));
        assert!(checked.contains("intact"), "{checked}");

        // Without --database the dump is left with the command to load it.
        let files_only = dir.path().join("files-only");
        let out = ok(&pbx(
            &files_only,
            &["backup", "restore", &archive_arg],
            PASS,
        ));
        assert!(
            out.contains("pbx.pgdump") && out.contains("pg_restore"),
            "{out}"
        );
        assert!(files_only.join("pbx.pgdump").is_file());

        // The database it came from is not empty: refused.
        let refused = pbx(
            &dir.path().join("refused"),
            &["--database", &url, "backup", "restore", &archive_arg],
            PASS,
        );
        assert!(!refused.status.success());
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains("not empty"), "{why}");

        // A new, empty one gets the tenant and its extension.
        let fresh = store::testdb::fresh_database().await;
        let restored = dir.path().join("restored");
        ok(&pbx(
            &restored,
            &["--database", &fresh, "backup", "restore", &archive_arg],
            PASS,
        ));
        assert!(!restored.join("pbx.pgdump").exists());
        let list = ok(&pbx(
            &restored,
            &["--database", &fresh, "extension", "list", "acme"],
            None,
        ));
        assert!(list.contains("1000"), "{list}");
    })
    .await;
}
