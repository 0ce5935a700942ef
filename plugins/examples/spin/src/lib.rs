//! Hostile test plugin: `route` never returns.

use pbx_sdk::{Call, Decision, DialPlan};

struct Spin;

impl DialPlan for Spin {
    fn route(call: &Call) -> Decision {
        let mut n: u64 = call.dialled.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

pbx_sdk::export_dialplan!(Spin);
