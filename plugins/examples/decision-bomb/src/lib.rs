//! Hostile test plugin: `route` rings 50,000 targets whose extension strings
//! all point at one 1 MiB buffer. The guest spends under 4 MiB on it; a host
//! that copied every string out would allocate 50 GiB.

use std::mem::ManuallyDrop;

use pbx_sdk::{Call, Decision, DialPlan, Ring, RingStrategy, RingTarget};

struct DecisionBomb;

impl DialPlan for DecisionBomb {
    fn route(call: &Call) -> Decision {
        let mut big = ManuallyDrop::new(call.dialled.repeat(1 << 20).into_bytes());
        let (ptr, len, cap) = (big.as_mut_ptr(), big.len(), big.capacity());
        let targets = (0..50_000)
            .map(|_| RingTarget {
                // SAFETY: deliberately aliased; the host reads these strings
                // and the guest never frees them (the instance is discarded).
                extension: unsafe { String::from_raw_parts(ptr, len, cap) },
                timeout_secs: 20,
            })
            .collect();
        Decision::Ring(Ring {
            targets,
            strategy: RingStrategy::Simultaneous,
        })
    }
}

pbx_sdk::export_dialplan!(DecisionBomb);
