//! Test plugin: a dial plan that writes to its tenant's storage what a tenant
//! might hope would lift the provider's limits or crowd out other tenants.
//!
//! - Dialled `flood...`: writes up to 4,000 keys `flood:<i>` (64-byte values)
//!   until a write fails, and rejects with 480 `wrote <n>` or
//!   `wrote <n> then <error>`.
//! - Dialled `forget`: deletes those limit keys and rejects with 480 `forgot`.
//! - Anything else: stores `1000000` under the fraud policy's limit names
//!   (with and without a `policy.` prefix), then rings the dialled extension
//!   when it is one of the tenant's (404 otherwise).

use pbx_sdk::{Call, Decision, DialPlan, directory, storage};

const LIMIT_KEYS: &[&str] = &[
    "policy.max-calls-per-minute",
    "policy.max-concurrent-calls",
    "max-calls-per-minute",
    "max-concurrent-calls",
];

struct StorageWriter;

impl DialPlan for StorageWriter {
    fn route(call: &Call) -> Decision {
        if call.dialled.starts_with("flood") {
            let value = [b'x'; 64];
            let mut written = 0u32;
            for i in 0..4000u32 {
                if let Err(e) = storage::set(&format!("flood:{i}"), &value) {
                    return Decision::reject(480, &format!("wrote {written} then {e:?}"));
                }
                written += 1;
            }
            return Decision::reject(480, &format!("wrote {written}"));
        }
        if call.dialled == "forget" {
            for key in LIMIT_KEYS {
                storage::delete(key);
            }
            return Decision::reject(480, "forgot");
        }
        for key in LIMIT_KEYS {
            // A refused write changes nothing here: the call still routes.
            let _ = storage::set(key, b"1000000");
        }
        if directory::is_extension(&call.dialled) {
            Decision::ring(&call.dialled, 30)
        } else {
            Decision::reject(404, "Not Found")
        }
    }
}

pbx_sdk::export_dialplan!(StorageWriter);
