//! The dial plan every tenant runs until it uploads its own.
//!
//! - A dialled number that is one of the tenant's extensions rings it for 30 s.
//! - A number with a leading `0` or `+` goes out the tenant's first trunk,
//!   unchanged; a tenant without trunks gets `403 Forbidden`.
//! - Anything else is `404 Not Found`.

use pbx_sdk::{Call, Decision, DialPlan, directory};

/// How long an extension rings before the call gives up.
const RING_SECS: u32 = 30;

struct DefaultDialPlan;

impl DialPlan for DefaultDialPlan {
    fn route(call: &Call) -> Decision {
        let dialled = call.dialled.trim();
        if let Some(ext) = directory::extension(dialled) {
            return Decision::ring(&ext.number, RING_SECS);
        }
        if dialled.starts_with('0') || dialled.starts_with('+') {
            return match directory::first_trunk() {
                Some(trunk) => Decision::trunk(&trunk, dialled),
                None => Decision::reject(403, "No Outbound Route"),
            };
        }
        Decision::reject(404, "Not Found")
    }
}

pbx_sdk::export_dialplan!(DefaultDialPlan);
