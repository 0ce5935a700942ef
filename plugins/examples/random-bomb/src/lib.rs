//! Hostile test plugin: `route` asks `wasi:random` for 64 MiB of random bytes
//! in one host call, a host-side allocation outside the guest's memory cap.

use pbx_sdk::{Call, Decision, DialPlan};

mod wasi {
    wit_bindgen::generate!({
        inline: "
            package pbx:random-bomb;

            world bomb {
                import wasi:random/random@0.2.0;
            }

            package wasi:random@0.2.0 {
                interface random {
                    get-random-bytes: func(len: u64) -> list<u8>;
                    get-random-u64: func() -> u64;
                }
            }
        ",
        world: "pbx:random-bomb/bomb",
        generate_all,
    });
}

struct RandomBomb;

impl DialPlan for RandomBomb {
    fn route(call: &Call) -> Decision {
        let bytes = wasi::wasi::random::random::get_random_bytes(64 << 20);
        Decision::reject(486, &format!("{} {}", call.dialled, bytes.len()))
    }
}

pbx_sdk::export_dialplan!(RandomBomb);
