//! Running the built `pbx` binary against a data directory, shared by the
//! command-line tests.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `pbx --data-dir DIR ARGS…` with nothing on standard input.
pub(crate) fn pbx(data_dir: &Path, args: &[&str]) -> Output {
    pbx_with_stdin(data_dir, args, None)
}

/// Runs `pbx --data-dir DIR ARGS…`, writing `stdin` to it when given. The
/// environment that would choose another data directory, database or log
/// filter is removed, so the test's arguments alone decide.
pub(crate) fn pbx_with_stdin(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbx"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("PBX_DATA_DIR")
        .env_remove("PBX_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pbx");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for pbx")
}

/// The standard output of a run that must succeed.
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pbx failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}
