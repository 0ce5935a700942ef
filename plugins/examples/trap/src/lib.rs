//! Hostile test plugin: every call traps (a panic aborts the instance).

use pbx_sdk::{Call, Decision, DialPlan};

struct Trap;

impl DialPlan for Trap {
    fn route(call: &Call) -> Decision {
        panic!("refusing to route {}", call.dialled)
    }
}

pbx_sdk::export_dialplan!(Trap);
