//! Hostile test plugin: a policy whose every entry point traps.

use pbx_sdk::{Action, Call, Cdr, Decision, Policy, Verdict};

struct PolicyTrap;

impl Policy for PolicyTrap {
    fn check_call(call: &Call, _decision: &Decision) -> Verdict {
        panic!("no verdict for {}", call.dialled)
    }

    fn call_ended(cdr: &Cdr) -> Vec<Action> {
        panic!("no actions for {}", cdr.call_id)
    }
}

pbx_sdk::export_policy!(PolicyTrap);
