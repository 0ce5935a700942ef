//! Hostile test plugin: `route` allocates and touches memory until it fails.

use pbx_sdk::{Call, Decision, DialPlan};

struct MemHog;

impl DialPlan for MemHog {
    fn route(call: &Call) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk = vec![call.dialled.len() as u8; 1 << 20];
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

pbx_sdk::export_dialplan!(MemHog);
