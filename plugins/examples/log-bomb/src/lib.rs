//! Hostile test plugin: every call writes 2 MiB lines through `pbx:plugin/log`
//! and prints one to stdout, then rejects with 486.

use pbx_sdk::{Call, Decision, DialPlan, log};

struct LogBomb;

impl DialPlan for LogBomb {
    fn route(call: &Call) -> Decision {
        let line = "x".repeat(2 << 20);
        for _ in 0..4 {
            log::warn(&line);
        }
        println!("{line}");
        Decision::reject(486, &call.dialled)
    }
}

pbx_sdk::export_dialplan!(LogBomb);
