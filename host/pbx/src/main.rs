//! The `pbx` command. See the `pbx` library for what each command does.

use std::process::ExitCode;

use clap::Parser;
use pbx::cli::Cli;

// The message path allocates and frees many small buffers on several threads;
// mimalloc's thread-local free lists cost less than the system allocator's arenas
// there, and give memory back to the system sooner (see BENCHMARKS.md). The
// `system-allocator` feature leaves it out, for heap profilers that hook malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The only place the environment is read (besides clap's `PBX_DATA_DIR`).
    let log_filter = std::env::var("RUST_LOG").ok();
    match pbx::run(cli, log_filter).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", pbx::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
