//! Test plugin: counts calls both in a global and in storage, and rejects with
//! `<global>/<stored>` as the reason (`<global>/quota` when the store refuses the
//! write). A host that gives every call a fresh instance always shows `1/...`,
//! while the stored count goes up.

use std::sync::atomic::{AtomicU32, Ordering};

use pbx_sdk::{Call, Decision, DialPlan, storage};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl DialPlan for Counter {
    fn route(_call: &Call) -> Decision {
        let seen = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let stored = storage::get_u64("count").unwrap_or(0) + 1;
        let reason = match storage::set_u64("count", stored) {
            Ok(()) => format!("{seen}/{stored}"),
            Err(_) => format!("{seen}/quota"),
        };
        Decision::reject(480, &reason)
    }
}

pbx_sdk::export_dialplan!(Counter);
