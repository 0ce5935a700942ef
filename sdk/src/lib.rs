//! Write PBX dial plans and policies in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements
//! [`DialPlan`] (a tenant's routing logic) or [`Policy`] (call restrictions and
//! fraud hooks) on a type of its own and names that type with
//! [`export_dialplan!`] or [`export_policy!`]:
//!
//! ```ignore
//! use pbx_sdk::{Call, Decision, DialPlan, directory};
//!
//! struct Plan;
//!
//! impl DialPlan for Plan {
//!     fn route(call: &Call) -> Decision {
//!         match directory::extension(&call.dialled) {
//!             Some(ext) => Decision::ring(&ext.number, 30),
//!             None => Decision::reject(404, "Not Found"),
//!         }
//!     }
//! }
//!
//! pbx_sdk::export_dialplan!(Plan);
//! ```
//!
//! # Design
//!
//! The WIT package `pbx:plugin` (the repository's `wit/` folder) is the only
//! contract with the host. This crate generates the guest bindings for both of
//! its worlds once, shares the record types between them, and adds small
//! helpers on top. Every capability ([`directory`], [`storage`], [`usage`],
//! [`alerts`], [`log`], and for policies [`config`]) is already bound by the host to the tenant whose call
//! is being handled: there is no tenant id anywhere in this API, and no way to
//! reach another tenant's data.
//!
//! The host runs each call in a fresh instance with a short deadline and a
//! memory cap. Globals do not survive between calls; use [`storage`] for state.
//! A plugin that panics, loops or returns a decision naming something that is
//! not the tenant's own fails that call (a dial plan) or denies it (a policy).

/// Raw bindings generated from the WIT package, one module per world.
///
/// Plugin code normally uses the re-exports at the crate root instead.
pub mod bindings {
    /// Bindings for the `dialplan` world; also the home of the shared
    /// interfaces.
    #[allow(
        missing_docs,
        clippy::too_many_arguments,
        reason = "generated; the WIT file documents every interface, type and function, \
                  and the canonical ABI shims take one argument per flattened value"
    )]
    pub mod dialplan {
        wit_bindgen::generate!({
            world: "pbx:plugin/dialplan",
            path: "../wit",
            export_macro_name: "__export_dialplan_raw",
            pub_export_macro: true,
            default_bindings_module: "::pbx_sdk::bindings::dialplan",
        });
    }

    /// Bindings for the `policy` world; its imports reuse the `dialplan`
    /// world's generated types.
    #[allow(
        missing_docs,
        clippy::too_many_arguments,
        reason = "generated; the WIT file documents every interface, type and function, \
                  and the canonical ABI shims take one argument per flattened value"
    )]
    pub mod policy {
        wit_bindgen::generate!({
            world: "pbx:plugin/policy",
            path: "../wit",
            export_macro_name: "__export_policy_raw",
            pub_export_macro: true,
            default_bindings_module: "::pbx_sdk::bindings::policy",
            with: {
                "pbx:plugin/types@0.1.0": crate::bindings::dialplan::pbx::plugin::types,
                "pbx:plugin/directory@0.1.0": crate::bindings::dialplan::pbx::plugin::directory,
                "pbx:plugin/storage@0.1.0": crate::bindings::dialplan::pbx::plugin::storage,
                "pbx:plugin/usage@0.1.0": crate::bindings::dialplan::pbx::plugin::usage,
                "pbx:plugin/alerts@0.1.0": crate::bindings::dialplan::pbx::plugin::alerts,
                "pbx:plugin/log@0.1.0": crate::bindings::dialplan::pbx::plugin::log,
            },
        });
    }
}

use bindings::dialplan::pbx::plugin as wit;

pub use wit::types::{
    Action, Call, Cdr, Decision, DestinationClass, Reject, Ring, RingStrategy, RingTarget,
    Severity, TrunkRoute, Verdict,
};

/// This tenant's extensions, ring groups, trunks and registration state.
pub mod directory {
    pub use crate::wit::directory::{
        ExtensionInfo, extension, extensions, group_members, groups, trunks,
    };

    /// Whether `number` is one of this tenant's extensions.
    pub fn is_extension(number: &str) -> bool {
        extension(number).is_some()
    }

    /// The tenant's first trunk, if it has any.
    pub fn first_trunk() -> Option<String> {
        trunks().into_iter().next()
    }
}

/// This tenant's key-value data, with a byte quota enforced by the host.
pub mod storage {
    pub use crate::wit::storage::{StorageError, delete, get, set};

    /// The value under `key` read as a decimal `u64`; `None` when missing or not
    /// a number.
    pub fn get_u64(key: &str) -> Option<u64> {
        let bytes = get(key)?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    /// Store `value` under `key` as decimal text.
    pub fn set_u64(key: &str, value: u64) -> Result<(), StorageError> {
        set(key, value.to_string().as_bytes())
    }
}

/// The running policy's configuration, read-only (policies only).
///
/// The host binds it to this policy and the tenant whose call is being
/// handled. A provider policy reads what the provider set (a per-tenant
/// override wins over the provider-wide value); a tenant's own policy reads
/// what that tenant's admins set. Nothing here can write, and a tenant's
/// plugins cannot change a provider policy's values. A dial plan that calls
/// these functions imports `pbx:plugin/config`, which the host refuses for the
/// `dialplan` world at upload.
pub mod config {
    pub use crate::bindings::policy::pbx::plugin::config::{entries, get};

    /// The value under `key` read as a decimal `u64`; `None` when missing or
    /// not a number.
    pub fn get_u64(key: &str) -> Option<u64> {
        get(key)?.trim().parse().ok()
    }
}

/// This tenant's live call counters.
pub mod usage {
    pub use crate::wit::usage::{
        calls_in_window, class_approved, concurrent_calls, concurrent_calls_by_extension,
    };
}

/// Alerts to the provider's and the tenant's alert feeds.
pub mod alerts {
    use crate::Severity;
    pub use crate::wit::alerts::raise;

    /// Raise a warning.
    pub fn warn(message: &str) {
        raise(Severity::Warning, message);
    }

    /// Raise a critical alert.
    pub fn critical(message: &str) {
        raise(Severity::Critical, message);
    }
}

/// The tenant's bounded plugin log.
pub mod log {
    pub use crate::wit::log::{Level, write};

    /// Log a debug line.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    /// Log an informational line.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// Log a warning.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// Log an error.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

impl Decision {
    /// Ring one extension for `timeout_secs` seconds.
    pub fn ring(extension: &str, timeout_secs: u32) -> Self {
        Decision::Ring(Ring {
            targets: vec![RingTarget {
                extension: extension.to_owned(),
                timeout_secs,
            }],
            strategy: RingStrategy::Simultaneous,
        })
    }

    /// Ring several extensions with the given strategy, each for its own timeout.
    pub fn ring_all(targets: &[(&str, u32)], strategy: RingStrategy) -> Self {
        Decision::Ring(Ring {
            targets: targets
                .iter()
                .map(|(extension, timeout_secs)| RingTarget {
                    extension: (*extension).to_owned(),
                    timeout_secs: *timeout_secs,
                })
                .collect(),
            strategy,
        })
    }

    /// Ring a group by name.
    pub fn group(name: &str) -> Self {
        Decision::RingGroup(name.to_owned())
    }

    /// Send the call out `trunk`, dialling `number`.
    pub fn trunk(trunk: &str, number: &str) -> Self {
        Decision::Trunk(TrunkRoute {
            trunk: trunk.to_owned(),
            number: number.to_owned(),
        })
    }

    /// Reject the call with a SIP status and reason phrase.
    pub fn reject(status: u16, reason: &str) -> Self {
        Decision::Reject(Reject {
            status,
            reason: reason.to_owned(),
        })
    }
}

impl Verdict {
    /// Deny with a reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Verdict::Deny(reason.into())
    }
}

/// A tenant's dial plan: decides where each call goes.
pub trait DialPlan {
    /// Decide where `call` goes. Name only the tenant's own extensions, groups
    /// and trunks (see [`directory`]).
    fn route(call: &Call) -> Decision;
}

/// A call policy: may deny a dial plan's decision and reacts to finished calls.
pub trait Policy {
    /// Allow or deny `decision` for `call`.
    fn check_call(call: &Call, decision: &Decision) -> Verdict;

    /// React to a finished call; by default, do nothing.
    fn call_ended(cdr: &Cdr) -> Vec<Action> {
        let _ = cdr;
        Vec::new()
    }
}

/// Export a type implementing [`DialPlan`] as this component's `route`.
#[macro_export]
macro_rules! export_dialplan {
    ($ty:ty) => {
        const _: () = {
            struct __PbxDialPlanExport;
            impl $crate::bindings::dialplan::Guest for __PbxDialPlanExport {
                fn route(call: $crate::Call) -> $crate::Decision {
                    <$ty as $crate::DialPlan>::route(&call)
                }
            }
            $crate::bindings::dialplan::__export_dialplan_raw!(
                __PbxDialPlanExport with_types_in $crate::bindings::dialplan
            );
        };
    };
}

/// Export a type implementing [`Policy`] as this component's `check-call` and
/// `call-ended`.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        const _: () = {
            struct __PbxPolicyExport;
            impl $crate::bindings::policy::Guest for __PbxPolicyExport {
                fn check_call(call: $crate::Call, decision: $crate::Decision) -> $crate::Verdict {
                    <$ty as $crate::Policy>::check_call(&call, &decision)
                }
                fn call_ended(cdr: $crate::Cdr) -> ::std::vec::Vec<$crate::Action> {
                    <$ty as $crate::Policy>::call_ended(&cdr)
                }
            }
            $crate::bindings::policy::__export_policy_raw!(
                __PbxPolicyExport with_types_in $crate::bindings::policy
            );
        };
    };
}
