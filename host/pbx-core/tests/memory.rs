//! The signalling state the core keeps stays within its budget: at most
//! 16 KiB per call in progress and 2 KiB per completed transaction while its
//! timers run, and nothing once they all fired (see `benches/memory.rs` for
//! the figures). Deterministic: dhat counts
//! the bytes asked of the allocator, and the clock is virtual.
//!
//! One test in this file: dhat's profiler is one per process.

mod memory_scenario;

use memory_scenario::{AFTER_TIMERS, ANSWERED, COMPLETED_TX, ENDED_CALL, Heap, SETTLED};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The budgets: 16 KiB per call in progress (signalling only), 2 KiB per
/// completed transaction while its timers run.
const CALL_BUDGET: f64 = 16.0 * 1024.0;
const TX_BUDGET: f64 = 2.0 * 1024.0;
/// The test holds the figures to half the budget (they are about a third of
/// it), so a regression fails here long before the budget is spent.
const MARGIN: f64 = 0.5;

#[test]
fn signalling_memory_stays_within_budget() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let report = memory_scenario::run(200, 50, None, || {
        let stats = dhat::HeapStats::get();
        Heap {
            bytes: stats.curr_bytes,
            blocks: stats.curr_blocks,
        }
    });
    eprint!("{}", report.table());
    for label in [ANSWERED, SETTLED] {
        let each = report.get(label).bytes_each();
        assert!(
            each <= CALL_BUDGET * MARGIN,
            "{label}: {each:.0} bytes per call"
        );
    }
    let ended = report.get(ENDED_CALL);
    let each = report.get(COMPLETED_TX).bytes_each();
    assert!(
        each <= TX_BUDGET * MARGIN,
        "{each:.0} bytes per completed transaction"
    );
    // A call hung up more than 64*T1 after its answer has nothing left to
    // absorb: it is forgotten at once, and only its two completed BYE
    // transactions stay while their timers run.
    assert!(
        ended.bytes_each() <= 2.0 * TX_BUDGET * MARGIN,
        "{:.0} bytes per ended call",
        ended.bytes_each()
    );
    // Back to where it started, but for the small tables each of the nonce
    // table's 16 shards keeps once it held entries (at most two blocks of
    // about 1 KiB together per shard). A leak of even one block per call
    // shows in the block count.
    let after = report.get(AFTER_TIMERS);
    assert!(
        after.bytes <= 24 * 1024 && after.blocks <= 48,
        "{} bytes in {} blocks left after every timer fired",
        after.bytes,
        after.blocks
    );
}
