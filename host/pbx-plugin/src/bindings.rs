//! Host bindings for the `pbx:plugin` WIT package, generated in this one place.
//!
//! The `dialplan` world owns the shared interfaces; the `policy` world reuses
//! them, so both worlds use the same Rust types and the same host impls.

#![allow(
    missing_docs,
    unreachable_pub,
    reason = "generated; the WIT file documents every item, and the crate root re-exports what is public"
)]

pub(crate) mod dialplan {
    wasmtime::component::bindgen!({
        world: "pbx:plugin/dialplan",
        path: "../../wit",
        additional_derives: [PartialEq, Eq, Hash],
    });
}

pub(crate) mod policy {
    wasmtime::component::bindgen!({
        world: "pbx:plugin/policy",
        path: "../../wit",
        with: {
            "pbx:plugin/types": crate::bindings::dialplan::pbx::plugin::types,
            "pbx:plugin/directory": crate::bindings::dialplan::pbx::plugin::directory,
            "pbx:plugin/storage": crate::bindings::dialplan::pbx::plugin::storage,
            "pbx:plugin/usage": crate::bindings::dialplan::pbx::plugin::usage,
            "pbx:plugin/alerts": crate::bindings::dialplan::pbx::plugin::alerts,
            "pbx:plugin/log": crate::bindings::dialplan::pbx::plugin::log,
        },
    });
}

/// `pbx:plugin@0.2.0`'s call handler: the 0.1 capabilities are the same
/// interfaces (imported at 0.1.0), so they reuse the `dialplan` world's types
/// and host impls; only `call-types`, `clock`, `call-info` and `features`
/// are new.
pub(crate) mod call_handler {
    wasmtime::component::bindgen!({
        world: "pbx:plugin/call-handler@0.2.0",
        path: "../../wit/v0.2",
        additional_derives: [PartialEq, Eq, Hash],
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

pub(crate) use dialplan::pbx::plugin::{alerts, directory, log, storage, types, usage};
pub(crate) use policy::pbx::plugin::config;
