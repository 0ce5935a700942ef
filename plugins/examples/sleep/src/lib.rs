//! Hostile test plugin: `route` sleeps for an hour. On wasm32-wasip2,
//! `std::thread::sleep` subscribes to the monotonic clock and blocks in
//! `wasi:io/poll`, a host call the epoch deadline cannot interrupt.

use std::time::Duration;

use pbx_sdk::{Call, Decision, DialPlan};

struct Sleep;

impl DialPlan for Sleep {
    fn route(call: &Call) -> Decision {
        std::thread::sleep(Duration::from_secs(3600));
        Decision::reject(486, &call.dialled)
    }
}

pbx_sdk::export_dialplan!(Sleep);
