//! Provisioning through the built `pbx` binary against a temporary data directory.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{ok, pbx, pbx_with_stdin};

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "pbx unexpectedly succeeded");
    let stderr = String::from_utf8(out.stderr.clone()).expect("utf-8 stderr");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "backtrace hint: {stderr}"
    );
    stderr
}

fn extensions(dir: &Path, tenant: &str) -> Vec<String> {
    ok(&pbx(dir, &["extension", "list", tenant]))
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect()
}

/// A fresh data directory with tenant `acme` (domain `acme.example`) added.
fn data_dir_with_acme() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&pbx(
        dir.path(),
        &["tenant", "add", "acme", "--domain", "acme.example"],
    ));
    dir
}

#[test]
fn tenant_add_and_list() {
    let dir = data_dir_with_acme();
    ok(&pbx(
        dir.path(),
        &["tenant", "add", "globex", "--domain", "Globex.Example"],
    ));
    let list = ok(&pbx(dir.path(), &["tenant", "list"]));
    assert!(list.contains("acme\tactive\tacme.example"), "{list}");
    assert!(list.contains("globex\tactive\tglobex.example"), "{list}");
}

#[test]
fn a_tenant_can_own_several_domains() {
    let dir = data_dir_with_acme();
    ok(&pbx(
        dir.path(),
        &["tenant", "add-domain", "acme", "Sales.Acme.Example"],
    ));
    let list = ok(&pbx(dir.path(), &["tenant", "list"]));
    assert!(
        list.contains("acme\tactive\tacme.example,sales.acme.example"),
        "{list}"
    );
    // A domain belongs to one tenant only.
    ok(&pbx(
        dir.path(),
        &["tenant", "add", "globex", "--domain", "globex.example"],
    ));
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "add-domain", "globex", "sales.acme.example"],
    ));
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn duplicate_tenant_fails_with_a_clear_message() {
    let dir = data_dir_with_acme();
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "add", "acme", "--domain", "other.example"],
    ));
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("acme"), "{err}");
}

#[test]
fn extension_add_with_password_on_stdin() {
    let dir = data_dir_with_acme();
    ok(&pbx_with_stdin(
        dir.path(),
        &["extension", "add", "acme", "1000", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    ok(&pbx(
        dir.path(),
        &[
            "extension",
            "add",
            "acme",
            "1001",
            "--password",
            "s3cret-pass",
        ],
    ));
    assert_eq!(extensions(dir.path(), "acme"), vec!["1000", "1001"]);

    // Nothing on stdin: refused, nothing added.
    let err = fails(&pbx_with_stdin(
        dir.path(),
        &["extension", "add", "acme", "1002", "--password-stdin"],
        Some(""),
    ));
    assert!(err.contains("stdin"), "{err}");
    // Both password sources: a usage error.
    fails(&pbx(
        dir.path(),
        &[
            "extension",
            "add",
            "acme",
            "1003",
            "--password",
            "x",
            "--password-stdin",
        ],
    ));
    // Unknown tenant.
    let err = fails(&pbx(
        dir.path(),
        &["extension", "add", "nobody", "1000", "--password", "x"],
    ));
    assert!(err.contains("nobody"), "{err}");
    assert_eq!(extensions(dir.path(), "acme"), vec!["1000", "1001"]);
}

#[test]
fn import_of_two_thousand_rows() {
    let dir = data_dir_with_acme();
    let mut csv = String::from("extension,password\n");
    for i in 0..2_000 {
        csv.push_str(&format!("{},pw-{i}-x\n", 10_000 + i));
        if i % 500 == 0 {
            csv.push('\n');
        }
    }
    let file = dir.path().join("ext.csv");
    std::fs::write(&file, csv).unwrap();
    let out = ok(&pbx(
        dir.path(),
        &["extension", "import", "acme", file.to_str().unwrap()],
    ));
    assert!(out.contains("2000"), "{out}");
    let list = extensions(dir.path(), "acme");
    assert_eq!(list.len(), 2_000);
    assert!(list.contains(&"11999".to_owned()));
}

#[test]
fn import_with_one_bad_row_writes_nothing() {
    let dir = data_dir_with_acme();
    let mut csv = String::from("extension,password\n");
    for i in 0..100 {
        csv.push_str(&format!("{},pw{i}\n", 2_000 + i));
    }
    // Line 102: not a valid extension number.
    csv.push_str("bad ext!,pw\n");
    csv.push_str("3000,pw\n");
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, csv).unwrap();
    let err = fails(&pbx(
        dir.path(),
        &["extension", "import", "acme", file.to_str().unwrap()],
    ));
    assert!(err.contains("line 102"), "{err}");
    assert!(extensions(dir.path(), "acme").is_empty());

    // A row clashing with an existing extension also writes nothing.
    ok(&pbx(
        dir.path(),
        &["extension", "add", "acme", "2050", "--password", "pw"],
    ));
    let good: String = (0..100).map(|i| format!("{},pw\n", 2_000 + i)).collect();
    std::fs::write(&file, good).unwrap();
    fails(&pbx(
        dir.path(),
        &["extension", "import", "acme", file.to_str().unwrap()],
    ));
    assert_eq!(extensions(dir.path(), "acme"), vec!["2050"]);
}

#[test]
fn missing_import_file_is_a_clear_error() {
    let dir = data_dir_with_acme();
    let err = fails(&pbx(
        dir.path(),
        &["extension", "import", "acme", "/nonexistent/x.csv"],
    ));
    assert!(err.contains("/nonexistent/x.csv"), "{err}");
}

#[test]
fn cdr_list_of_a_fresh_tenant() {
    let dir = data_dir_with_acme();
    let csv = ok(&pbx(dir.path(), &["cdr", "list", "acme"]));
    assert!(csv.starts_with("started_at_ms,"), "{csv}");
    assert_eq!(csv.lines().count(), 1);
    let json = ok(&pbx(
        dir.path(),
        &["cdr", "list", "acme", "--format", "json", "--limit", "5"],
    ));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, serde_json::json!([]));
    fails(&pbx(dir.path(), &["cdr", "list", "nobody"]));
}

#[test]
fn serve_rejects_a_config_with_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pbx.toml");
    std::fs::write(&config, "[sip]\nudp = [\"127.0.0.1:0\"]\nbogus = 1\n").unwrap();
    let err = fails(&pbx(
        dir.path(),
        &["serve", "--config", config.to_str().unwrap()],
    ));
    assert!(err.contains("bogus"), "{err}");
}

/// Writes `bytes` to `name` inside `dir` and returns the path as a string.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `(version, active)` of each line of `plugin list`.
fn plugin_versions(dir: &Path, tenant: &str) -> Vec<(String, bool)> {
    ok(&pbx(dir, &["plugin", "list", tenant]))
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            (fields[0].to_owned(), fields.last() == Some(&"*"))
        })
        .collect()
}

#[test]
fn plugin_install_list_and_rollback() {
    let dir = data_dir_with_acme();
    let dialplan = write_file(
        dir.path(),
        "dialplan.wasm",
        pbx_plugin::shipped::DEFAULT_DIALPLAN,
    );
    let out = ok(&pbx(dir.path(), &["plugin", "install", "acme", &dialplan]));
    assert!(out.contains("version 1"), "{out}");
    let out = ok(&pbx(dir.path(), &["plugin", "install", "acme", &dialplan]));
    assert!(out.contains("version 2"), "{out}");
    assert_eq!(
        plugin_versions(dir.path(), "acme"),
        [("1".to_owned(), false), ("2".to_owned(), true)]
    );
    let list = ok(&pbx(dir.path(), &["plugin", "list", "acme"]));
    let line: Vec<&str> = list.lines().next().unwrap().split('\t').collect();
    assert_eq!(line[1].len(), 12, "{list}");
    assert_eq!(
        line[2],
        pbx_plugin::shipped::DEFAULT_DIALPLAN.len().to_string()
    );
    assert!(line[3].ends_with('Z'), "{list}");

    let out = ok(&pbx(dir.path(), &["plugin", "rollback", "acme"]));
    assert!(out.contains("version 1"), "{out}");
    assert_eq!(
        plugin_versions(dir.path(), "acme"),
        [("1".to_owned(), true), ("2".to_owned(), false)]
    );
    // Nothing before version 1.
    let err = fails(&pbx(dir.path(), &["plugin", "rollback", "acme"]));
    assert!(err.contains("before 1"), "{err}");
    ok(&pbx(dir.path(), &["plugin", "rollback", "acme", "2"]));
    assert_eq!(
        plugin_versions(dir.path(), "acme")[1],
        ("2".to_owned(), true)
    );
    fails(&pbx(dir.path(), &["plugin", "rollback", "acme", "9"]));

    // Another tenant sees none of it and cannot activate acme's versions.
    ok(&pbx(
        dir.path(),
        &["tenant", "add", "globex", "--domain", "globex.example"],
    ));
    assert!(plugin_versions(dir.path(), "globex").is_empty());
    fails(&pbx(dir.path(), &["plugin", "rollback", "globex", "1"]));
    // Unknown tenant.
    let err = fails(&pbx(
        dir.path(),
        &["plugin", "install", "nobody", &dialplan],
    ));
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn refused_plugin_files_store_nothing() {
    let dir = data_dir_with_acme();
    // A core module (the smallest valid one), random bytes, and a policy offered
    // as a dial plan.
    let core = write_file(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let err = fails(&pbx(dir.path(), &["plugin", "install", "acme", &core]));
    assert!(err.contains("core WebAssembly module"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let junk = write_file(dir.path(), "junk.wasm", b"\x13\x37 definitely not wasm");
    let err = fails(&pbx(dir.path(), &["plugin", "install", "acme", &junk]));
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
    let policy = write_file(
        dir.path(),
        "policy.wasm",
        pbx_plugin::shipped::DEFAULT_POLICY,
    );
    let err = fails(&pbx(dir.path(), &["plugin", "install", "acme", &policy]));
    assert!(err.contains("dialplan"), "{err}");
    let err = fails(&pbx(
        dir.path(),
        &["plugin", "install", "acme", "/nonexistent/p.wasm"],
    ));
    assert!(err.contains("/nonexistent/p.wasm"), "{err}");
    assert!(plugin_versions(dir.path(), "acme").is_empty());
    // The same for policies.
    fails(&pbx(dir.path(), &["policy", "install", "p", &junk]));
    assert_eq!(ok(&pbx(dir.path(), &["policy", "list"])), "");
}

#[test]
fn policy_install_replace_list_and_remove() {
    let dir = data_dir_with_acme();
    let policy = write_file(
        dir.path(),
        "policy.wasm",
        pbx_plugin::shipped::DEFAULT_POLICY,
    );
    ok(&pbx(dir.path(), &["policy", "install", "fraud", &policy]));
    ok(&pbx(
        dir.path(),
        &["policy", "install", "limits", &policy, "--tenant", "acme"],
    ));
    // Same name again: replaced, not added.
    ok(&pbx(dir.path(), &["policy", "install", "fraud", &policy]));
    let list = ok(&pbx(dir.path(), &["policy", "list"]));
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0][..2], ["fraud", "(all tenants)"]);
    assert_eq!(rows[1][..2], ["limits", "acme"]);
    fails(&pbx(
        dir.path(),
        &["policy", "install", "x", &policy, "--tenant", "nobody"],
    ));
    ok(&pbx(dir.path(), &["policy", "remove", "fraud"]));
    let err = fails(&pbx(dir.path(), &["policy", "remove", "fraud"]));
    assert!(err.contains("fraud"), "{err}");
    let list = ok(&pbx(dir.path(), &["policy", "list"]));
    assert!(list.starts_with("limits\tacme\t"), "{list}");
    assert_eq!(list.lines().count(), 1);
}

#[test]
fn a_policy_rolls_back_to_the_version_before_its_last_install() {
    let dir = data_dir_with_acme();
    let first = write_file(
        dir.path(),
        "first.wasm",
        pbx_plugin::shipped::DEFAULT_POLICY,
    );
    let second = write_file(dir.path(), "second.wasm", pbx_plugin::shipped::RESTRICTIONS);
    let hash = |list: &str| list.split('\t').nth(2).unwrap_or("").to_owned();
    ok(&pbx(dir.path(), &["policy", "install", "fraud", &first]));
    let err = fails(&pbx(dir.path(), &["policy", "rollback", "fraud"]));
    assert!(err.contains("no earlier version"), "{err}");
    let v1 = hash(&ok(&pbx(dir.path(), &["policy", "list"])));
    ok(&pbx(dir.path(), &["policy", "install", "fraud", &second]));
    let v2 = hash(&ok(&pbx(dir.path(), &["policy", "list"])));
    assert_ne!(v1, v2);
    let out = ok(&pbx(dir.path(), &["policy", "rollback", "fraud"]));
    assert!(out.starts_with("policy fraud is back to sha256 "), "{out}");
    assert_eq!(hash(&ok(&pbx(dir.path(), &["policy", "list"]))), v1);
    // And forward again.
    ok(&pbx(dir.path(), &["policy", "rollback", "fraud"]));
    assert_eq!(hash(&ok(&pbx(dir.path(), &["policy", "list"]))), v2);
    let err = fails(&pbx(dir.path(), &["policy", "rollback", "nobody"]));
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn trunk_add_with_password_on_stdin() {
    let dir = data_dir_with_acme();
    let out = ok(&pbx_with_stdin(
        dir.path(),
        &[
            "trunk",
            "add",
            "acme",
            "carrier",
            "--uri",
            "sip:gw.example.net:5080",
            "--username",
            "acct-7",
            "--password-stdin",
        ],
        Some("trunk secret pw\n"),
    ));
    assert!(out.contains("carrier"), "{out}");
    ok(&pbx(
        dir.path(),
        &[
            "trunk",
            "add",
            "acme",
            "backup",
            "--uri",
            "sips:gw2.example.net",
        ],
    ));
    let list = ok(&pbx(dir.path(), &["trunk", "list", "acme"]));
    assert_eq!(
        list,
        "backup\tsip:gw2.example.net:5061;transport=tls\t-\tno-register\n\
         carrier\tsip:gw.example.net:5080;transport=udp\tacct-7\tregister\n"
    );
    // The password is neither printed nor stored in clear.
    assert!(!list.contains("trunk secret pw"));
    let db = std::fs::read(dir.path().join("pbx.db")).unwrap();
    let wal = std::fs::read(dir.path().join("pbx.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(15).any(|w| w == b"trunk secret pw"));
    }
    assert!(dir.path().join("secret.key").is_file());

    // Duplicate name, bad URI, unknown tenant, empty stdin: refused.
    fails(&pbx(
        dir.path(),
        &[
            "trunk",
            "add",
            "acme",
            "carrier",
            "--uri",
            "sip:gw.example.net",
        ],
    ));
    let err = fails(&pbx(
        dir.path(),
        &[
            "trunk",
            "add",
            "acme",
            "x",
            "--uri",
            "http://gw.example.net",
        ],
    ));
    assert!(err.contains("sip:"), "{err}");
    let err = fails(&pbx(
        dir.path(),
        &["trunk", "add", "nobody", "x", "--uri", "sip:gw.example.net"],
    ));
    assert!(err.contains("nobody"), "{err}");
    fails(&pbx_with_stdin(
        dir.path(),
        &[
            "trunk",
            "add",
            "acme",
            "y",
            "--uri",
            "sip:gw.example.net",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some(""),
    ));
    ok(&pbx(dir.path(), &["trunk", "remove", "acme", "backup"]));
    fails(&pbx(dir.path(), &["trunk", "remove", "acme", "backup"]));
    let list = ok(&pbx(dir.path(), &["trunk", "list", "acme"]));
    assert!(list.starts_with("carrier\t"), "{list}");
    assert_eq!(list.lines().count(), 1);
}

#[test]
fn did_add_list_and_remove() {
    let dir = data_dir_with_acme();
    ok(&pbx(
        dir.path(),
        &["tenant", "add", "globex", "--domain", "globex.example"],
    ));
    ok(&pbx(dir.path(), &["did", "add", "acme", "+4930123456"]));
    ok(&pbx(dir.path(), &["did", "add", "acme", "5550100"]));
    // A number routes to one tenant only.
    let err = fails(&pbx(dir.path(), &["did", "add", "globex", "+4930123456"]));
    assert!(err.contains("+4930123456"), "{err}");
    fails(&pbx(dir.path(), &["did", "add", "acme", "12ab"]));
    fails(&pbx(dir.path(), &["did", "add", "nobody", "5550101"]));
    assert_eq!(
        ok(&pbx(dir.path(), &["did", "list", "acme"])),
        "+4930123456\n5550100\n"
    );
    assert_eq!(ok(&pbx(dir.path(), &["did", "list", "globex"])), "");
    ok(&pbx(dir.path(), &["did", "remove", "+4930123456"]));
    fails(&pbx(dir.path(), &["did", "remove", "+4930123456"]));
    ok(&pbx(dir.path(), &["did", "add", "globex", "+4930123456"]));
    assert_eq!(
        ok(&pbx(dir.path(), &["did", "list", "globex"])),
        "+4930123456\n"
    );
}

const STRONG: &str = "Corr3ct-Horse-Battery\n";

#[test]
fn user_add_applies_the_password_policy() {
    let dir = data_dir_with_acme();
    let add = |name: &str, role: &str, tenant: Option<&str>, password: &str| {
        let mut args = vec!["user", "add", name, "--role", role];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        args.push("--password-stdin");
        pbx_with_stdin(dir.path(), &args, Some(password))
    };
    for weak in ["password123\n", "short1A!\n", "rootroot-Root-1\n", "\n"] {
        let err = fails(&add("root", "provider-admin", None, weak));
        assert!(err.contains("password"), "{weak:?}: {err}");
    }
    let out = ok(&add("root", "provider-admin", None, STRONG));
    assert!(out.contains("added user root (provider-admin)"), "{out}");
    // The same name twice, a tenant role without a tenant, an unknown tenant.
    fails(&add("root", "provider-admin", None, STRONG));
    fails(&add("ann", "tenant-admin", None, STRONG));
    let err = fails(&add("ann", "tenant-admin", Some("nobody"), STRONG));
    assert!(err.contains("nobody"), "{err}");
    ok(&add("ann", "tenant-admin", Some("acme"), STRONG));
}

/// Runs one SQL statement against the data directory's database.
fn raw_sql(dir: &Path, sql: &'static str) {
    let db = dir.join("pbx.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    });
}

#[test]
fn audit_verify_detects_an_edited_entry() {
    let dir = data_dir_with_acme();
    for name in ["root", "ops"] {
        ok(&pbx_with_stdin(
            dir.path(),
            &[
                "user",
                "add",
                name,
                "--role",
                "provider-admin",
                "--password-stdin",
            ],
            Some(STRONG),
        ));
    }
    let out = ok(&pbx(dir.path(), &["audit", "verify"]));
    assert_eq!(out, "audit log intact: 2 entries\n");

    raw_sql(
        dir.path(),
        "UPDATE audit_log SET actor = 'someone-else' WHERE id = 1",
    );
    let err = fails(&pbx(dir.path(), &["audit", "verify"]));
    assert!(
        err.contains("entry 1 was changed after it was written"),
        "{err}"
    );

    raw_sql(dir.path(), "DELETE FROM audit_log WHERE id = 1");
    let err = fails(&pbx(dir.path(), &["audit", "verify"]));
    assert!(err.contains("entries 1..1 are missing"), "{err}");
}

#[test]
fn audit_verify_detects_a_chain_recomputed_without_the_key() {
    let dir = data_dir_with_acme();
    for name in ["root", "ops", "sec"] {
        ok(&pbx_with_stdin(
            dir.path(),
            &[
                "user",
                "add",
                name,
                "--role",
                "provider-admin",
                "--password-stdin",
            ],
            Some(STRONG),
        ));
    }
    assert_eq!(
        ok(&pbx(dir.path(), &["audit", "verify"])),
        "audit log intact: 3 entries\n"
    );
    // Someone with write access to pbx.db (not to secret.key) changes entry 1
    // and recomputes every hash after it: as plain SHA-256 (the unkeyed scheme
    // of earlier versions), then as an HMAC under a key of their own.
    for forged_key in [None, Some([9u8; 32])] {
        with_store(dir.path(), async |s| {
            let mut entries = s.audit_chain(0, 100).await.unwrap();
            entries[0].record.actor = "someone-else".into();
            let mut prev = String::new();
            let rt_sql =
                sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("pbx.db"));
            use sqlx::ConnectOptions as _;
            let mut conn = rt_sql.connect().await.unwrap();
            for e in &mut entries {
                e.hash = match forged_key {
                    Some(k) => store::audit_mac(&k, e.id, &prev, &e.record),
                    None => store::audit_legacy_hash(e.id, &prev, &e.record),
                };
                sqlx::query("UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?")
                    .bind(&e.record.actor)
                    .bind(&prev)
                    .bind(&e.hash)
                    .bind(e.id)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                prev = e.hash.clone();
            }
            sqlx::query("UPDATE audit_head SET hash = ? WHERE id = 1")
                .bind(&prev)
                .execute(&mut conn)
                .await
                .unwrap();
        });
        let err = fails(&pbx(dir.path(), &["audit", "verify"]));
        assert!(err.contains("audit log is broken"), "{forged_key:?}: {err}");
    }
}

#[test]
fn api_rotate_key_adds_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = ok(&pbx(dir.path(), &["api", "rotate-key"]));
    let second = ok(&pbx(dir.path(), &["api", "rotate-key"]));
    for out in [&first, &second] {
        assert!(out.starts_with("new signing key "), "{out}");
        assert!(!out.contains("retired"), "{out}");
    }
    assert_ne!(first, second);
    let keys = std::fs::read_dir(dir.path().join("api-keys"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pk8"))
        })
        .count();
    assert_eq!(keys, 2);
}

#[test]
fn tenant_limits_are_set_and_an_unknown_tenant_is_refused() {
    let dir = data_dir_with_acme();
    let out = ok(&pbx(
        dir.path(),
        &[
            "tenant",
            "limits",
            "acme",
            "--max-concurrent",
            "20",
            "--max-calls-per-second",
            "5",
        ],
    ));
    assert!(out.contains("concurrent 20"), "{out}");
    assert!(out.contains("per second 5"), "{out}");
    assert!(out.contains("per extension default"), "{out}");
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "limits", "nobody", "--max-concurrent", "1"],
    ));
    assert!(err.contains("nobody"), "{err}");
}

/// Runs `f` against the data directory's store (the binary is not running).
fn with_store<T>(dir: &Path, f: impl AsyncFnOnce(&store::Store) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = store::Store::open(dir).await.expect("open store");
        f(&store).await
    })
}

/// `cdr list` prints each leg's media figures in both formats.
#[test]
fn cdr_list_shows_media_per_leg() {
    let dir = data_dir_with_acme();
    with_store(dir.path(), async |s| {
        let tenant = s.tenant_by_name("acme").await.unwrap().unwrap().id;
        let leg = |n: u64| store::LegMedia {
            packets_in: n,
            bytes_in: n * 172,
            packets_out: n + 1,
            bytes_out: (n + 1) * 172,
            srtp_auth_failures: n % 7,
            packets_lost: n % 5,
        };
        s.insert_cdrs(&[store::Cdr {
            tenant,
            caller: "1000".into(),
            callee: "1001".into(),
            started_at_ms: 1_700_000_000_000,
            answered_at_ms: Some(1_700_000_001_000),
            ended_at_ms: 1_700_000_031_000,
            disposition: store::Disposition::Answered,
            sip_code: 200,
            hangup_by: "caller".into(),
            caller_call_id: "a@x".into(),
            callee_call_id: "b@x".into(),
            media: store::CdrMedia {
                caller: leg(1503),
                callee: leg(1497),
            },
            tags: vec!["after-hours".into(), "vip".into()],
        }])
        .await
        .unwrap();
    });
    let csv = ok(&pbx(dir.path(), &["cdr", "list", "acme"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    let head: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    let field = |name: &str| row[head.iter().position(|h| *h == name).expect(name)];
    assert_eq!(field("caller_packets_in"), "1503", "{csv}");
    assert_eq!(field("caller_bytes_out"), (1504 * 172).to_string(), "{csv}");
    assert_eq!(field("caller_srtp_auth_failures"), (1503 % 7).to_string());
    assert_eq!(field("callee_packets_out"), "1498", "{csv}");
    assert_eq!(field("callee_packets_lost"), (1497 % 5).to_string());
    assert_eq!(field("tags"), "after-hours;vip", "{csv}");
    let json = ok(&pbx(
        dir.path(),
        &["cdr", "list", "acme", "--format", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["media"]["caller"]["packets_in"], 1503, "{json}");
    assert_eq!(v[0]["media"]["callee"]["bytes_in"], 1497 * 172, "{json}");
}

/// SHA-256 is turned on per tenant or per extension and back to the default.
#[test]
fn digest_algorithms_are_set_per_tenant_and_extension() {
    let dir = data_dir_with_acme();
    ok(&pbx(
        dir.path(),
        &[
            "extension",
            "add",
            "acme",
            "1000",
            "--password",
            "Pw-1000-x9!",
        ],
    ));
    ok(&pbx(
        dir.path(),
        &[
            "extension",
            "add",
            "acme",
            "1001",
            "--password",
            "Pw-1001-x9!",
        ],
    ));
    let out = ok(&pbx(
        dir.path(),
        &["tenant", "set", "acme", "--digest", "sha-256,md5"],
    ));
    assert!(out.contains("digest SHA-256,MD5"), "{out}");
    let out = ok(&pbx(
        dir.path(),
        &["extension", "set", "acme", "1001", "--digest", "SHA-256"],
    ));
    assert!(out.contains("digest SHA-256"), "{out}");
    let list = ok(&pbx(dir.path(), &["extension", "list", "acme"]));
    assert_eq!(list, "1000\tenabled\tdefault\n1001\tenabled\tSHA-256\n");
    let (tenant, ext) = with_store(dir.path(), async |s| {
        let t = s.tenant_by_name("acme").await.unwrap().unwrap();
        let e = s.list_extensions(t.id).await.unwrap();
        (t.digest, e[1].digest.clone())
    });
    assert_eq!(
        tenant.map(|d| d.to_string()).as_deref(),
        Some("SHA-256,MD5")
    );
    assert_eq!(ext.map(|d| d.to_string()).as_deref(), Some("SHA-256"));
    ok(&pbx(
        dir.path(),
        &["tenant", "set", "acme", "--digest", "default"],
    ));
    ok(&pbx(
        dir.path(),
        &["extension", "set", "acme", "1001", "--digest", "default"],
    ));
    let list = ok(&pbx(dir.path(), &["extension", "list", "acme"]));
    assert_eq!(list, "1000\tenabled\tdefault\n1001\tenabled\tdefault\n");
    let err = fails(&pbx(
        dir.path(),
        &["extension", "set", "acme", "4711", "--digest", "MD5"],
    ));
    assert!(err.contains("4711"), "{err}");
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "set", "acme", "--digest", "SHA-512"],
    ));
    assert!(err.contains("SHA-512"), "{err}");
}

#[test]
fn ban_list_and_remove() {
    let dir = data_dir_with_acme();
    let far = 4_102_444_800_000; // 2100-01-01
    with_store(dir.path(), async |s| {
        s.upsert_ban(&store::BanRecord {
            ip: "192.0.2.66".parse().unwrap(),
            reason: "10 authentication failures".into(),
            count: 10,
            strikes: 1,
            first_ms: 1_700_000_000_000,
            last_ms: 1_700_000_060_000,
            tried: vec!["REGISTER 1000@acme.example".into()],
            until_ms: far,
        })
        .await
        .unwrap();
    });
    let list = ok(&pbx(dir.path(), &["ban", "list"]));
    assert!(
        list.contains("192.0.2.66\t10 authentication failures\tcount=10"),
        "{list}"
    );
    assert!(list.contains("first=2023-11-14T22:13:20Z"), "{list}");
    assert!(list.contains("until=2100-01-01T00:00:00Z"), "{list}");
    assert!(list.contains("tried=REGISTER 1000@acme.example"), "{list}");
    let out = ok(&pbx(dir.path(), &["ban", "remove", "192.0.2.66"]));
    assert!(out.contains("lifted the ban of 192.0.2.66"), "{out}");
    assert_eq!(ok(&pbx(dir.path(), &["ban", "list"])), "");
    let err = fails(&pbx(dir.path(), &["ban", "remove", "192.0.2.66"]));
    assert!(err.contains("not banned"), "{err}");
    fails(&pbx(dir.path(), &["ban", "remove", "not-an-ip"]));
}

#[test]
fn approval_list_grant_deny_are_audited() {
    let dir = data_dir_with_acme();
    let (first, second) = with_store(dir.path(), async |s| {
        let acme = s.tenant_by_name("acme").await.unwrap().unwrap().id;
        let class = store::ApprovalTarget::Class("international".into());
        let prefix = store::ApprovalTarget::Prefix("44".into());
        let a = s
            .request_approval(acme, &class, Some("+442079460018"), 1_000)
            .await
            .unwrap();
        let b = s
            .request_approval(acme, &prefix, None, 2_000)
            .await
            .unwrap();
        (a.id, b.id)
    });
    let pending = ok(&pbx(dir.path(), &["approval", "list"]));
    assert!(
        pending.contains(&format!(
            "{first}\tacme\tclass:international\tpending\tsample=+442079460018"
        )),
        "{pending}"
    );
    assert!(
        pending.contains(&format!("{second}\tacme\tprefix:44\tpending")),
        "{pending}"
    );
    let out = ok(&pbx(
        dir.path(),
        &["approval", "grant", &first.to_string(), "--by", "alice"],
    ));
    assert!(
        out.contains(&format!("granted approval {first} of tenant acme")),
        "{out}"
    );
    ok(&pbx(
        dir.path(),
        &["approval", "deny", &second.to_string(), "--by", "bob"],
    ));
    let all = ok(&pbx(dir.path(), &["approval", "list", "acme"]));
    assert!(
        all.contains("granted") && all.contains("decided_by=alice"),
        "{all}"
    );
    assert!(
        all.contains("denied") && all.contains("decided_by=bob"),
        "{all}"
    );
    assert_eq!(ok(&pbx(dir.path(), &["approval", "list"])), "");
    // Decided once: a second decision fails; the audit chain holds both.
    fails(&pbx(
        dir.path(),
        &["approval", "grant", &second.to_string(), "--by", "alice"],
    ));
    fails(&pbx(dir.path(), &["approval", "grant", "1", "--by", ""]));
    let audit = ok(&pbx(dir.path(), &["audit", "verify"]));
    assert!(audit.contains("audit log intact: 2 entries"), "{audit}");
    let actions = with_store(dir.path(), async |s| {
        s.list_audit(None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.record.action, e.record.actor))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        actions,
        vec![
            ("approval.deny".to_string(), "bob".to_string()),
            ("approval.grant".to_string(), "alice".to_string()),
        ]
    );
}

#[test]
fn networks_are_allowed_listed_and_removed() {
    let dir = data_dir_with_acme();
    let out = ok(&pbx(dir.path(), &["tenant", "allow", "acme", "10.1.2.3/8"]));
    assert!(out.contains("allowed 10.0.0.0/8 for tenant acme"), "{out}");
    ok(&pbx(
        dir.path(),
        &[
            "tenant",
            "allow",
            "acme",
            "192.0.2.7",
            "--extension",
            "1000",
        ],
    ));
    let list = ok(&pbx(dir.path(), &["tenant", "networks", "acme"]));
    assert!(list.contains("*\t10.0.0.0/8"), "{list}");
    assert!(list.contains("1000\t192.0.2.7/32"), "{list}");
    let err = fails(&pbx(dir.path(), &["tenant", "allow", "acme", "ten.0.0.0"]));
    assert!(err.contains("ten.0.0.0"), "{err}");
    ok(&pbx(
        dir.path(),
        &["tenant", "disallow", "acme", "10.0.0.0/8"],
    ));
    let list = ok(&pbx(dir.path(), &["tenant", "networks", "acme"]));
    assert!(!list.contains("10.0.0.0/8"), "{list}");
    fails(&pbx(
        dir.path(),
        &["tenant", "disallow", "acme", "10.0.0.0/8"],
    ));
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn uploads_compile_in_a_limited_child_and_are_cached_by_hash() {
    let dir = data_dir_with_acme();
    let plan = write_file(
        dir.path(),
        "plan.wasm",
        pbx_plugin::shipped::DEFAULT_DIALPLAN,
    );
    ok(&pbx(dir.path(), &["plugin", "install", "acme", &plan]));
    // The child left the compiled code where the server looks it up.
    assert!(files_under(&dir.path().join("plugin-cache")) > 0);

    // Over a compile cap: refused before any compiling.
    let bomb = pbx_plugin::shipped::generated::compile_bomb(1, 5000, 10);
    let bomb = write_file(dir.path(), "bomb.wasm", &bomb);
    let err = fails(&pbx(dir.path(), &["plugin", "install", "acme", &bomb]));
    assert!(err.contains("compile limit"), "{err}");
    assert_eq!(plugin_versions(dir.path(), "acme").len(), 1);
}

#[test]
fn a_compile_child_out_of_cpu_time_refuses_the_upload() {
    use pbx_plugin::{CompileSandbox, PluginRuntime, RuntimeConfig, ValidationError, World};
    let dir = tempfile::tempdir().unwrap();
    // Within every compile cap, but hundreds of functions at the largest
    // allowed cost: more than the one CPU second this sandbox allows.
    let heavy = pbx_plugin::shipped::generated::compile_bomb(400, 1000, 1000);
    let mut sandbox = CompileSandbox::new(
        env!("CARGO_BIN_EXE_pbx").into(),
        vec!["compile-plugin".into()],
    );
    sandbox.cpu_secs = 1;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        sandbox: Some(sandbox),
        max_instances: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let err = runtime.load(World::Dialplan, &heavy).unwrap_err();
    assert_eq!(err, ValidationError::CompileExhausted("CPU time or memory"));
    // The shipped dial plan goes through the same child.
    runtime
        .load(World::CallHandler, pbx_plugin::shipped::DEFAULT_DIALPLAN)
        .unwrap();
}

#[test]
fn a_tenants_calendar_is_set_and_shown() {
    let dir = data_dir_with_acme();
    let out = ok(&pbx(dir.path(), &["tenant", "calendar", "acme"]));
    assert_eq!(out, "tenant acme: time zone UTC\n");
    let out = ok(&pbx(
        dir.path(),
        &[
            "tenant",
            "calendar",
            "acme",
            "--time-zone",
            "Europe/Paris",
            "--holiday",
            "2026-12-25=Christmas Day",
            "--holiday",
            "2027-01-01=New Year",
        ],
    ));
    assert_eq!(
        out,
        "tenant acme: time zone Europe/Paris\n2026-12-25\tChristmas Day\n2027-01-01\tNew Year\n"
    );
    let stored = with_store(dir.path(), async |s| {
        let t = s.tenant_by_name("acme").await.unwrap().unwrap();
        s.calendar(t.id).await.unwrap()
    });
    assert_eq!(stored.time_zone, "Europe/Paris");
    assert_eq!(stored.holidays.len(), 2);
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "calendar", "acme", "--time-zone", "Mars/Olympus"],
    ));
    assert!(err.contains("Mars/Olympus"), "{err}");
    let err = fails(&pbx(
        dir.path(),
        &["tenant", "calendar", "acme", "--holiday", "tomorrow"],
    ));
    assert!(err.contains("DATE=NAME"), "{err}");
}

#[test]
fn an_extensions_forwarding_is_set_shown_and_audited() {
    let dir = data_dir_with_acme();
    for ext in ["1001", "1002"] {
        ok(&pbx(
            dir.path(),
            &["extension", "add", "acme", ext, "--password", "s3cret-pass"],
        ));
    }
    let shown = ok(&pbx(
        dir.path(),
        &["extension", "forwarding", "acme", "1001"],
    ));
    assert_eq!(
        shown,
        "always\t-\nbusy\t-\nno-answer\t-\nno-answer-secs\t20\ndnd\toff\n"
    );
    let out = ok(&pbx(
        dir.path(),
        &[
            "extension",
            "forward",
            "acme",
            "1001",
            "--busy",
            "1002",
            "--no-answer",
            "+12125550100",
            "--no-answer-secs",
            "15",
            "--dnd",
            "on",
        ],
    ));
    assert_eq!(
        out,
        "always\t-\nbusy\t1002\nno-answer\t+12125550100\nno-answer-secs\t15\ndnd\ton\n"
    );
    // Options not given keep their value; an empty target removes a forward.
    let out = ok(&pbx(
        dir.path(),
        &[
            "extension",
            "forward",
            "acme",
            "1001",
            "--always",
            "sales",
            "--busy",
            "",
        ],
    ));
    assert_eq!(
        out,
        "always\tsales\nbusy\t-\nno-answer\t+12125550100\nno-answer-secs\t15\ndnd\ton\n"
    );
    assert_eq!(
        ok(&pbx(
            dir.path(),
            &["extension", "forwarding", "acme", "1001"]
        )),
        out
    );
    let stored = with_store(dir.path(), async |s| {
        let t = s.tenant_by_name("acme").await.unwrap().unwrap();
        s.forwarding(t.id, "1001").await.unwrap()
    });
    assert_eq!(stored.always.as_deref(), Some("sales"));
    assert!(stored.dnd);

    // Refused: a SIP URI, a forward to itself, a bad time, an unknown
    // extension; nothing changes.
    for (args, says) in [
        (vec!["--always", "sip:evil@example.com"], "always forward"),
        (vec!["--no-answer", "1001"], "itself"),
        (vec!["--no-answer-secs", "0"], "no_answer_secs"),
    ] {
        let mut argv = vec!["extension", "forward", "acme", "1001"];
        argv.extend(args);
        let err = fails(&pbx(dir.path(), &argv));
        assert!(err.contains(says), "{err}");
    }
    let err = fails(&pbx(
        dir.path(),
        &["extension", "forward", "acme", "1999", "--dnd", "on"],
    ));
    assert!(err.contains("1999"), "{err}");
    fails(&pbx(
        dir.path(),
        &["extension", "forward", "acme", "1001", "--dnd", "maybe"],
    ));
    // --clear starts from nothing.
    let out = ok(&pbx(
        dir.path(),
        &["extension", "forward", "acme", "1001", "--clear"],
    ));
    assert_eq!(
        out,
        "always\t-\nbusy\t-\nno-answer\t-\nno-answer-secs\t20\ndnd\toff\n"
    );
    let audited = with_store(dir.path(), async |s| {
        s.list_audit(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.record.action == "extension.forwarding")
            .count()
    });
    assert_eq!(audited, 3, "each accepted change is audited");
}

/// A WAV file of `samples` 8 kHz mono 16-bit samples (a ramp).
fn wav(samples: usize) -> Vec<u8> {
    let data = u32::try_from(samples * 2).expect("small");
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    for field in [16u32.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec()] {
        w.extend_from_slice(&field);
    }
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for i in 0..samples {
        w.extend_from_slice(&((i as i16).wrapping_mul(31)).to_le_bytes());
    }
    w
}

/// Runs `pbx` with the export passphrase in the environment.
fn pbx_with_passphrase(dir: &Path, args: &[&str], passphrase: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pbx"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PBX_DATA_DIR")
        .env_remove("RUST_LOG")
        .env("PBX_BACKUP_PASSPHRASE", passphrase)
        .stdin(Stdio::null())
        .output()
        .expect("run pbx")
}

/// The database's bytes, WAL included.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join("pbx.db")).unwrap();
    bytes.extend(std::fs::read(dir.join("pbx.db-wal")).unwrap_or_default());
    bytes
}

/// `tenant export` on one PBX and `tenant import --as` on another: the
/// tenant arrives with its extensions, trunk password, user, call records,
/// storage and voicemail, under new ids, and nothing of the first PBX's
/// other tenant comes with it. A wrong passphrase is refused and writes
/// nothing.
#[test]
fn a_tenant_moves_to_another_pbx_under_a_new_name() {
    let a = data_dir_with_acme();
    ok(&pbx(
        a.path(),
        &["tenant", "add", "zeta", "--domain", "zeta-private.example"],
    ));
    for (tenant, n) in [("acme", "100"), ("acme", "101"), ("zeta", "100")] {
        ok(&pbx_with_stdin(
            a.path(),
            &["extension", "add", tenant, n, "--password-stdin"],
            Some("ext-password-long\n"),
        ));
    }
    ok(&pbx_with_stdin(
        a.path(),
        &[
            "trunk",
            "add",
            "acme",
            "carrier",
            "--uri",
            "sip:gw.example.net",
            "--username",
            "u7",
            "--password-stdin",
        ],
        Some("trunk secret pw\n"),
    ));
    ok(&pbx_with_stdin(
        a.path(),
        &[
            "user",
            "add",
            "acme-admin",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        Some(STRONG),
    ));
    let audio = wav(4000);
    let (acme_a, zeta_a) = with_store(a.path(), async |s| {
        let acme = s.tenant_by_name("acme").await.unwrap().unwrap().id;
        let zeta = s.tenant_by_name("zeta").await.unwrap().unwrap().id;
        for t in [acme, zeta] {
            let mut cdr = store::Cdr {
                tenant: t,
                caller: "100".into(),
                callee: "101".into(),
                started_at_ms: 1_000,
                answered_at_ms: Some(2_000),
                ended_at_ms: 9_000,
                disposition: store::Disposition::Answered,
                sip_code: 200,
                hangup_by: "caller".into(),
                caller_call_id: format!("zeta-call-{t}"),
                callee_call_id: "b".into(),
                media: Default::default(),
                tags: Vec::new(),
            };
            if t == acme {
                cdr.caller_call_id = "acme-call".into();
            }
            s.insert_cdrs(&[cdr]).await.unwrap();
        }
        s.save_voicemail(acme, "100", "5551234", &audio, 250)
            .await
            .unwrap();
        s.plugin_kv_admin_put(acme, "ring-group:sales", Some(b"100,101"))
            .await
            .unwrap();
        (acme, zeta)
    });
    let file = a.path().join("acme.tenant");
    let out = ok(&pbx_with_passphrase(
        a.path(),
        &["tenant", "export", "acme", "--out", file.to_str().unwrap()],
        "move words",
    ));
    assert!(out.contains("1 audio files"), "{out}");
    // The file is encrypted: nothing of the tenant reads in it.
    let sealed = std::fs::read(&file).unwrap();
    for clear in [&b"acme.example"[..], b"trunk secret pw", b"acme-call"] {
        assert!(!sealed.windows(clear.len()).any(|w| w == clear));
    }

    let b = tempfile::tempdir().unwrap();
    for n in 0..3 {
        ok(&pbx(
            b.path(),
            &[
                "tenant",
                "add",
                &format!("b{n}"),
                "--domain",
                &format!("b{n}.example"),
            ],
        ));
    }
    let err = fails(&pbx_with_passphrase(
        b.path(),
        &["tenant", "import", file.to_str().unwrap(), "--as", "acme2"],
        "wrong words",
    ));
    assert!(err.contains("wrong passphrase"), "{err}");
    let out = ok(&pbx_with_passphrase(
        b.path(),
        &["tenant", "import", file.to_str().unwrap(), "--as", "acme2"],
        "move words",
    ));
    assert!(out.contains("imported tenant acme2"), "{out}");
    let listed = ok(&pbx(b.path(), &["tenant", "list"]));
    assert!(
        listed.contains("acme2") && !listed.contains("zeta"),
        "{listed}"
    );
    assert_eq!(extensions(b.path(), "acme2"), ["100", "101"]);

    let original = with_store_id(a.path(), acme_a);
    assert_eq!(original.len(), 1);
    with_store(b.path(), async |s| {
        let t = s.tenant_by_name("acme2").await.unwrap().unwrap();
        assert_eq!(t.status, store::TenantStatus::Active);
        assert_eq!(t.domains, ["acme.example"]);
        let others: Vec<_> = s
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.id != t.id)
            .collect();
        assert_eq!(others.len(), 3);
        assert!(others.iter().all(|o| o.id != t.id));
        let trunks = s.list_trunks(t.id).await.unwrap();
        assert_eq!(trunks[0].password.as_deref(), Some("trunk secret pw"));
        let admin = s.user_by_name("acme-admin").await.unwrap().expect("user");
        assert_eq!(admin.tenant, Some(t.id));
        let cdrs = s
            .list_cdrs(t.id, &store::CdrFilter::default())
            .await
            .unwrap();
        assert_eq!(cdrs.len(), 1);
        assert_eq!(cdrs[0].caller_call_id, "acme-call");
        let messages = s.voicemail_messages(t.id, "100").await.unwrap();
        assert_eq!(messages.len(), 1);
        let heard = s
            .voicemail_audio(t.id, "100", &messages[0].id)
            .await
            .unwrap();
        assert_eq!(heard, Some(audio.clone()));
        assert_eq!(
            s.plugin_kv_get(t.id, "ring-group:sales").await.unwrap(),
            Some(b"100,101".to_vec())
        );
        // New ids: the message's id is not the one it had on the first PBX.
        assert!(!original.contains(&messages[0].id));
        s.close().await;
    });
    // Nothing of the other tenant of the first PBX is anywhere in the second.
    let db = database_bytes(b.path());
    for theirs in [&b"zeta-private.example"[..], b"zeta-call"] {
        assert!(
            !db.windows(theirs.len()).any(|w| w == theirs),
            "{}",
            String::from_utf8_lossy(theirs)
        );
    }
    let _ = zeta_a;
    let audit = ok(&pbx(b.path(), &["audit", "verify"]));
    assert!(audit.contains("intact"), "{audit}");
    let actions: Vec<String> = with_store(a.path(), async |s| {
        s.audit_chain(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.record.action)
            .collect()
    });
    assert!(actions.iter().any(|a| a == "tenant.export"), "{actions:?}");
    // The same file again: its domain is taken now, and nothing is added.
    let err = fails(&pbx_with_passphrase(
        b.path(),
        &["tenant", "import", file.to_str().unwrap(), "--as", "acme3"],
        "move words",
    ));
    assert!(err.contains("acme.example"), "{err}");
    assert!(!ok(&pbx(b.path(), &["tenant", "list"])).contains("acme3"));
}

/// The ids of the voicemail messages of `tenant` in `dir`.
fn with_store_id(dir: &Path, tenant: store::TenantId) -> Vec<String> {
    with_store(dir, async |s| {
        s.voicemail_messages(tenant, "100")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect()
    })
}

/// `audit purge` deletes old entries behind a checkpoint, and `audit
/// verify` still passes, naming the purge.
#[test]
fn audit_purge_keeps_the_log_verifying() {
    let dir = data_dir_with_acme();
    with_store(dir.path(), async |s| {
        for days in [400i64, 300] {
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                - days * 86_400_000;
            s.append_audit(&store::AuditRecord {
                at_ms,
                actor: "root".into(),
                role: "provider-admin".into(),
                tenant: None,
                source: "local".into(),
                action: "tenant.create".into(),
                detail: "{}".into(),
            })
            .await
            .unwrap();
        }
    });
    let out = ok(&pbx(
        dir.path(),
        &["audit", "purge", "--older-than-days", "200"],
    ));
    assert!(
        out.contains("purged audit entries up to 2 (2 entries)"),
        "{out}"
    );
    let out = ok(&pbx(dir.path(), &["audit", "verify"]));
    assert!(out.contains("audit log intact: 1 entries"), "{out}");
    assert!(
        out.contains("entries 1..2 purged by retention behind 1 verified checkpoints"),
        "{out}"
    );
    let out = ok(&pbx(
        dir.path(),
        &["audit", "purge", "--older-than-days", "200"],
    ));
    assert!(
        out.contains("no audit entry is older than 200 days"),
        "{out}"
    );
    fails(&pbx(
        dir.path(),
        &["audit", "purge", "--older-than-days", "0"],
    ));
}

/// `ban sync --once` feeds the firewall script to the firewall program (here
/// a stand-in that keeps what it reads); a program that fails is a clear
/// error.
#[test]
fn ban_sync_feeds_the_firewall_program() {
    use std::os::unix::fs::PermissionsExt;
    let dir = data_dir_with_acme();
    with_store(dir.path(), async |s| {
        s.upsert_ban(&store::BanRecord {
            ip: "198.51.100.7".parse().unwrap(),
            reason: "scanner".into(),
            count: 1,
            strikes: 1,
            first_ms: 1_700_000_000_000,
            last_ms: 1_700_000_000_000,
            tried: Vec::new(),
            until_ms: 4_102_444_800_000,
        })
        .await
        .unwrap();
    });
    // A script written just now can be "busy" to exec while another test's
    // fork still holds it open (before that child's exec closes it): run
    // again then.
    let run = |args: &[&str]| {
        for _ in 0..50 {
            let out = pbx(dir.path(), args);
            if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
                return out;
            }
        }
        panic!("the script stayed busy");
    };
    let seen = dir.path().join("nft-input");
    let fake = dir.path().join("fake-nft");
    std::fs::write(&fake, format!("#!/bin/sh\ncat > '{}'\n", seen.display())).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ok(&run(&[
        "ban",
        "sync",
        "--once",
        "--command",
        fake.to_str().unwrap(),
    ]));
    assert!(out.contains("applied 1 bans"), "{out}");
    let script = std::fs::read_to_string(&seen).unwrap();
    assert!(script.contains("flush set inet pbx banned4"), "{script}");
    assert!(
        script.contains("add element inet pbx banned4 { 198.51.100.7 timeout "),
        "{script}"
    );

    let failing = dir.path().join("failing-nft");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'Operation not permitted' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = fails(&run(&[
        "ban",
        "sync",
        "--once",
        "--command",
        failing.to_str().unwrap(),
    ]));
    assert!(err.contains("Operation not permitted"), "{err}");
}
