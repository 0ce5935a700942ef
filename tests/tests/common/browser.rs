//! The browser tests' runner: a Playwright script in `console-tests/` run by
//! node against Debian's Chromium. They need node, `console-tests/node_modules`
//! (`npm ci` there) and chromium; without them a test is skipped with a
//! notice, unless `PBX_REQUIRE_TOOLS=1` (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether node, the Playwright package and chromium are here.
pub(crate) fn tools() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let package = repo()
        .join("console-tests/node_modules/playwright-core")
        .is_dir();
    let chromium = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .any(|p| Path::new(p).exists());
    let found = node && package && chromium;
    if !found {
        assert!(
            std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "node ({node}), console-tests/node_modules ({package}) or chromium ({chromium}) \
             is missing and PBX_REQUIRE_TOOLS=1"
        );
        eprintln!(
            "SKIPPED: the browser tests need node, `npm ci` in console-tests and chromium \
             (Debian: nodejs, npm, chromium)"
        );
    }
    found
}

/// A running browser script: its output line by line, then how it ended.
pub(crate) struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    /// Every line read so far.
    pub(crate) stdout: String,
}

impl Script {
    /// Starts `console-tests/<name>` with `env`.
    pub(crate) fn start(name: &str, env: &[(&str, String)]) -> Script {
        let mut run = tokio::process::Command::new("node");
        run.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .arg(repo().join("console-tests").join(name))
            .kill_on_drop(true);
        for (key, value) in env {
            run.env(key, value);
        }
        let mut child = run.spawn().expect("node runs");
        let stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            BufReader::new(stderr).read_to_string(&mut text).await.ok();
            text
        });
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Script {
            child,
            lines,
            stderr,
            stdout: String::new(),
        }
    }

    /// The next line it prints; `None` once it has closed its output.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        let line = self.lines.next_line().await.ok().flatten()?;
        self.stdout.push_str(&line);
        self.stdout.push('\n');
        Some(line)
    }

    /// Reads what is left and waits for it to end: (stdout, stderr, status).
    pub(crate) async fn finish(mut self) -> (String, String, ExitStatus) {
        while self.next_line().await.is_some() {}
        let status = self.child.wait().await.expect("node ends");
        let stderr = self.stderr.await.unwrap_or_default();
        (self.stdout, stderr, status)
    }
}
