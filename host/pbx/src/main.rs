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
    // Resident memory should follow the live heap. mimalloc asks the kernel for
    // transparent huge pages on its arenas: a 2 MiB page stays resident while
    // any of it is in use, and the pages a purge gave back come back when the
    // kernel folds a range into a huge page again. Without them the
    // 1,000 calls/s soak runs about 25 MiB lower (BENCHMARKS.md). The flag is
    // the process's, so it covers the threads already running; a kernel
    // without it leaves things as they were.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
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
