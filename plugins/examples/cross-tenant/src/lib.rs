//! Hostile test plugin: routes to things that belong to some other tenant.
//!
//! The dialled number picks the attempt: `ext` rings extension `9999`, `mixed`
//! rings one of the tenant's own extensions together with `9999`, `group` rings
//! group `other-sales`, and anything else goes out trunk `other-carrier`.

use pbx_sdk::{Call, Decision, DialPlan, RingStrategy, directory};

struct CrossTenant;

impl DialPlan for CrossTenant {
    fn route(call: &Call) -> Decision {
        match call.dialled.as_str() {
            "ext" => Decision::ring("9999", 20),
            "mixed" => {
                let own = directory::extensions()
                    .into_iter()
                    .next()
                    .map(|e| e.number)
                    .unwrap_or_default();
                Decision::ring_all(&[(&own, 20), ("9999", 20)], RingStrategy::Sequential)
            }
            "group" => Decision::group("other-sales"),
            other => Decision::trunk("other-carrier", other),
        }
    }
}

pbx_sdk::export_dialplan!(CrossTenant);
