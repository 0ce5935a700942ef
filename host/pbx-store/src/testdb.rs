//! Stores for tests, on either backend.
//!
//! [`on`] runs a test body with a backend chosen; inside it, [`store`] hands
//! out a fresh, empty, migrated store on that backend: SQLite in memory, or a
//! new database on a private PostgreSQL server.
//!
//! # Layout
//! - One PostgreSQL server per test process, started on first use: `initdb`
//!   (from `/usr/lib/postgresql/<version>/bin`) into a temporary directory,
//!   then `postgres` listening only on a unix socket in that directory. As
//!   root it runs as the `postgres` user (or `nobody`), since PostgreSQL
//!   refuses to run as root.
//! - The server is started by a small shell that waits on a pipe from this
//!   process; when the process exits, however it exits, the pipe closes and
//!   the shell stops the server and removes its directory.
//! - Each [`store`] gets its own database (`CREATE DATABASE t_<pid>_<n>`).
//! - Without PostgreSQL installed, the PostgreSQL runs of [`on`] print a
//!   notice and pass, unless `PBX_REQUIRE_TOOLS=1`, when they fail.

use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

use crate::{Backend, Result, Store};

tokio::task_local! {
    static BACKEND: Backend;
}

/// Runs `test` with [`store`] handing out stores on `backend`. On PostgreSQL
/// without the server's programs installed, prints why and returns without
/// running it (or panics when `PBX_REQUIRE_TOOLS=1`).
pub async fn on<F: Future<Output = ()>>(backend: Backend, test: F) {
    if backend == Backend::Postgres
        && !present_or_skip(
            server().await.is_some(),
            "initdb/postgres not found under /usr/lib/postgresql",
        )
    {
        return;
    }
    BACKEND.scope(backend, test).await;
}

/// Whether a PostgreSQL test may go on: `present` as given. When it is not,
/// prints that the test is skipped because of `missing`, or panics when CI
/// requires every tool (`PBX_REQUIRE_TOOLS=1`).
pub fn present_or_skip(present: bool, missing: &str) -> bool {
    if !present {
        let required = std::env::var("PBX_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(!required, "{missing}, and PBX_REQUIRE_TOOLS=1");
        eprintln!("skipped on PostgreSQL: {missing}");
    }
    present
}

/// The backend [`on`] chose (SQLite outside of it).
pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// A fresh, empty store on the backend [`on`] chose.
pub async fn store() -> Result<Store> {
    match backend() {
        Backend::Sqlite => Store::open_in_memory().await,
        Backend::Postgres => Store::connect_ephemeral(&fresh_database().await).await,
    }
}

/// The store of `data_dir` on the backend [`on`] chose, keeping its secret
/// key and tenant audio there: [`Store::open`] on SQLite; on PostgreSQL a new
/// database the first time, and the same one again when the directory is
/// opened again.
pub async fn store_in(data_dir: &Path) -> Result<Store> {
    static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    match backend() {
        Backend::Sqlite => Store::open(data_dir).await,
        Backend::Postgres => {
            let known = DATABASES
                .lock()
                .expect("lock")
                .iter()
                .find(|(dir, _)| dir == data_dir)
                .map(|(_, url)| url.clone());
            let url = match known {
                Some(url) => url,
                None => {
                    let url = fresh_database().await;
                    DATABASES
                        .lock()
                        .expect("lock")
                        .push((data_dir.to_path_buf(), url.clone()));
                    url
                }
            };
            Store::connect(&url, data_dir).await
        }
    }
}

/// The URL of a new, empty database on the test server.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let server = server()
        .await
        .expect("PostgreSQL is not installed (run the test through testdb::on)");
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = server.admin().await.expect("connect to the test server");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create a test database");
    admin.close().await.expect("close");
    server.url(&name)
}

/// The running test server.
pub struct Server {
    /// Holds the socket and the data directory.
    dir: PathBuf,
    /// The shell that stops the server when this pipe closes. Never written,
    /// and never dropped: it closes when the process exits.
    _lifeline: Mutex<ChildStdin>,
    _shell: Mutex<Child>,
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://pbx@localhost/{name}?host={}",
            self.dir.display()
        )
    }

    async fn admin(&self) -> sqlx::Result<sqlx::postgres::PgConnection> {
        self.url("postgres")
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .connect()
            .await
    }
}

static SERVER: tokio::sync::OnceCell<Option<Server>> = tokio::sync::OnceCell::const_new();

/// The process's test server, started on first use; `None` when PostgreSQL is
/// not installed. Panics when it is installed but does not start.
pub async fn server() -> Option<&'static Server> {
    SERVER
        .get_or_init(|| async {
            let bin = find_bin()?;
            Some(start(&bin).await)
        })
        .await
        .as_ref()
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding both programs.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `Some((user, uid, gid))` to run the server as when this process is root.
fn unprivileged_user() -> Option<(String, u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let euid = std::fs::metadata("/proc/self").ok()?.uid();
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    ["postgres", "nobody"].iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == *name)
                .then(|| Some((name.to_string(), f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    })
}

/// A command that runs `program` as `user` when there is one.
fn command_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

async fn start(bin: &Path) -> Server {
    let dir = tempfile::Builder::new()
        .prefix("pbx-pg-")
        .tempdir()
        .expect("temporary directory")
        .keep();
    let user = unprivileged_user();
    if let Some((_, uid, gid)) = &user {
        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).expect("chown the server's dir");
    }
    let user = user.map(|(name, _, _)| name);
    let data = dir.join("data");

    let init = command_as(user.as_deref(), &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "pbx",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .output()
        .expect("run initdb");
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    // The shell runs the server in the background and waits for its stdin to
    // close (this process exiting), then stops the server (fast shutdown)
    // and removes the directory.
    let script = r#"
        "$1/postgres" -D "$2/data" -k "$2" -c listen_addresses= -F \
            -c max_connections=300 -c full_page_writes=off >"$2/log" 2>&1 &
        pg=$!
        cat >/dev/null
        kill -INT "$pg"
        wait "$pg"
        rm -rf "$2"
    "#;
    let mut shell = command_as(user.as_deref(), Path::new("/bin/sh"))
        .args(["-c", script, "sh"])
        .arg(bin)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    let lifeline = shell.stdin.take().expect("stdin pipe");
    let server = Server {
        dir,
        _lifeline: Mutex::new(lifeline),
        _shell: Mutex::new(shell),
    };

    // Ready when it accepts a connection.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match server.admin().await {
            Ok(conn) => {
                conn.close().await.expect("close");
                return server;
            }
            // A missing socket, a refused connection or "the database system
            // is starting up" mean "not yet"; a bad URL never gets better.
            Err(e) if Instant::now() > deadline || matches!(e, sqlx::Error::Configuration(_)) => {
                let mut log = String::new();
                if let Ok(mut f) = std::fs::File::open(server.dir.join("log")) {
                    let _ = f.read_to_string(&mut log);
                }
                panic!("PostgreSQL did not start: {e}\n{log}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Defines a test that runs twice, as `NAME::sqlite` and `NAME::postgres`,
/// with [`store`] giving stores on that backend.
#[cfg(test)]
macro_rules! backend_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test]
            async fn sqlite() {
                $crate::testdb::on($crate::Backend::Sqlite, async $body).await
            }

            $(#[$meta])*
            #[tokio::test]
            async fn postgres() {
                $crate::testdb::on($crate::Backend::Postgres, async $body).await
            }
        }
    };
}
