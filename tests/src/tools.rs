//! The external programs end-to-end tests drive (Debian packages), shared by
//! the test crates: whether one is installed, and a private Redis.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program` is on the PATH; otherwise a notice, or a failure when CI
/// requires every tool (`PBX_REQUIRE_TOOLS=1`, or `require_var=1`).
pub fn installed(program: &str, package: &str, require_var: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        for var in ["PBX_REQUIRE_TOOLS", require_var] {
            assert!(
                std::env::var(var).as_deref() != Ok("1"),
                "{program} (Debian package `{package}`) is not installed and {var}=1"
            );
        }
        eprintln!("SKIPPED: {program} is not installed (Debian package `{package}`)");
    }
    found
}

/// A private redis-server on a Unix socket, killed when dropped.
pub struct Redis {
    child: Child,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it accepts connections; `None` (with a
    /// notice) when redis-server is not installed, unless
    /// `PBX_REQUIRE_TOOLS=1`.
    pub fn start() -> Option<Redis> {
        if !installed("redis-server", "redis-server", "PBX_REQUIRE_TOOLS") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(dir.path().join("redis.sock"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(redis.socket()).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(redis)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Its URL, as `[cluster] redis` takes it.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
