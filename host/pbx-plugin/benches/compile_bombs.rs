//! Compile bombs of growing size through the compile sandbox, as an upload
//! takes it: per size, the upload's wall time until accepted or refused, the
//! compiling child's peak resident memory, and this process's (the server's)
//! resident memory afterwards.
//!
//! Each bomb is functions of 1,000 locals kept live across 1,000 blocks with a
//! conditional branch each (2,000 branching instructions: exactly at the
//! default locals × branches cap), as many as fit in the size.
//!
//! Run with
//! `cargo build --release -p pbx && cargo bench -p pbx-plugin --features test-plugins --bench compile_bombs -- target/release/pbx`
//! (the `pbx` binary's hidden `compile-plugin` command is the child; it runs
//! under `/usr/bin/time -f "%M %e"` to read its peak memory).

use std::path::PathBuf;
use std::time::Instant;

use pbx_plugin::{CompileSandbox, PluginRuntime, RuntimeConfig, World, shipped::generated};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let pbx = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/pbx"));
    let pbx = std::fs::canonicalize(&pbx).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo build --release -p pbx`",
            pbx.display()
        )
    });
    let cache = tempfile::tempdir().expect("cache dir");
    let measured = cache.path().join("time.txt");
    let mut sandbox = CompileSandbox::new(
        "/usr/bin/time".into(),
        vec![
            "-f".into(),
            "%M %e".into(),
            "-o".into(),
            measured.clone().into_os_string(),
            pbx.into_os_string(),
            "compile-plugin".into(),
        ],
    );
    // The defaults, said here so that the table states them.
    sandbox.cpu_secs = 20;
    sandbox.memory_bytes = 1 << 30;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        sandbox: Some(sandbox.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    println!(
        "sandbox: {} CPU s, {} MiB address space, {} s wall",
        sandbox.cpu_secs,
        sandbox.memory_bytes >> 20,
        sandbox.wall.as_secs()
    );
    println!("| upload | functions | result | wall time | child peak RSS | server RSS after |");
    println!("|---:|---:|---|---:|---:|---:|");
    for size in [64usize << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20] {
        // Stay under the 16 MiB upload limit.
        let bomb = generated::compile_bomb_of_size(size - 4096, 1000);
        let functions = bomb.len() / generated::compile_bomb(1, 1000, 1000).len().max(1);
        let _ = std::fs::remove_file(&measured);
        let started = Instant::now();
        let result = runtime.load(World::Dialplan, &bomb);
        let wall = started.elapsed();
        let child = std::fs::read_to_string(&measured).unwrap_or_default();
        let peak_kib: u64 = child
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let result = match result {
            Ok(_) => "compiled".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        println!(
            "| {:.2} MiB | {functions} | {result} | {:.2} s | {} MiB | {} MiB |",
            bomb.len() as f64 / (1 << 20) as f64,
            wall.as_secs_f64(),
            peak_kib >> 10,
            rss_kib() >> 10,
        );
    }
}
