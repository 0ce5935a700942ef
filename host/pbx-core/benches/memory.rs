//! Live heap the SIP core keeps per call in progress, per completed
//! transaction while its RFC 3261 timers run, and after they all fired.
//!
//! Run with `cargo bench -p pbx-core --bench memory` (`-- 5000 1000` for
//! 5,000 calls and 1,000 registrations; the default is 2,000 and 500). It
//! prints one table; the figures are dhat's count of bytes asked of the
//! allocator and still live, so they are the same from run to run (up to the
//! nonce table's random spread over its shards) and leave out the
//! allocator's own overhead (about 16 bytes a block with glibc, hence the
//! block count beside them).
//!
//! `-- 2000 0 settled` (or `answered`, `info`, `ended`, `timers`) stops right
//! after that reading and writes `dhat-heap.json` in the temporary directory, whose "at t-end" figures
//! are what was live there, by allocation site (view it with DHAT's viewer).

#[path = "../tests/memory_scenario/mod.rs"]
mod memory_scenario;

use memory_scenario::{AFTER_TIMERS, ANSWERED, COMPLETED_TX, ENDED_CALL, SETTLED};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut numbers = args.iter().filter_map(|a| a.parse::<usize>().ok());
    let calls = numbers.next().unwrap_or(2_000);
    let registrations = numbers.next().unwrap_or(500);
    let stop_at = args.iter().find_map(|a| match a.as_str() {
        "answered" => Some(ANSWERED),
        "settled" => Some(SETTLED),
        "info" => Some(COMPLETED_TX),
        "ended" => Some(ENDED_CALL),
        "timers" => Some(AFTER_TIMERS),
        _ => None,
    });
    let profiler = if stop_at.is_some() {
        let file = std::env::temp_dir().join("dhat-heap.json");
        eprintln!("heap profile to {}", file.display());
        dhat::Profiler::builder()
            .trim_backtraces(Some(12))
            .file_name(file)
            .build()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    let report = memory_scenario::run(calls, registrations, stop_at, || {
        let stats = dhat::HeapStats::get();
        memory_scenario::Heap {
            bytes: stats.curr_bytes,
            blocks: stats.curr_blocks,
        }
    });
    print!("{}", report.table());
    if stop_at.is_none() {
        println!(
            "targets: <= 16384 bytes per call in progress (now {:.0}), <= 2048 per completed transaction (now {:.0})",
            report.get(SETTLED).bytes_each(),
            report.get(COMPLETED_TX).bytes_each()
        );
    }
    drop(profiler);
}
