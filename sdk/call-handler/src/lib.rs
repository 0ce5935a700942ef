//! Write PBX call handlers (`pbx:plugin@0.2.0`) in Rust.
//!
//! A call handler runs a tenant's whole call: the host asks it once when the
//! call starts and again after each event (a dial attempt ended, a prompt
//! finished, keys were gathered, a message was recorded...), and it answers with the next actions and the state it wants
//! back next time. Implement [`CallHandler`] and name the type with
//! [`export_call_handler!`]:
//!
//! ```ignore
//! use pbx_sdk_call_handler::{Action, CallHandler, Call, Event, Step};
//!
//! struct Handler;
//!
//! impl CallHandler for Handler {
//!     fn handle(call: &Call, _state: &[u8], event: &Event) -> Step {
//!         match event {
//!             Event::CallStarted => Step::new(vec![Action::Finish], ""),
//!             _ => Step::finish(),
//!         }
//!     }
//! }
//!
//! pbx_sdk_call_handler::export_call_handler!(Handler);
//! ```
//!
//! The 0.1 capabilities ([`pbx_sdk::directory`], [`pbx_sdk::storage`],
//! [`pbx_sdk::usage`], [`pbx_sdk::alerts`], [`pbx_sdk::log`]) are the same
//! interfaces and are used from `pbx_sdk`; 0.2 adds [`clock`],
//! [`call_info`] and [`features`] (the extensions' call forwarding and
//! do-not-disturb, kept by the host). [`Machine`] is a small helper for
//! handlers written as a state machine over a one-word state.

/// Raw bindings of the `call-handler` world; plugin code uses the re-exports.
pub mod bindings {
    #[allow(
        missing_docs,
        clippy::too_many_arguments,
        reason = "generated; the WIT file documents every interface, type and function, \
                  and the canonical ABI shims take one argument per flattened value"
    )]
    pub mod call_handler {
        wit_bindgen::generate!({
            world: "pbx:plugin/call-handler@0.2.0",
            path: "../../wit/v0.2",
            export_macro_name: "__export_call_handler_raw",
            pub_export_macro: true,
            default_bindings_module: "::pbx_sdk_call_handler::bindings::call_handler",
            with: {
                "pbx:plugin/types@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::types,
                "pbx:plugin/directory@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::directory,
                "pbx:plugin/storage@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::storage,
                "pbx:plugin/usage@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::usage,
                "pbx:plugin/alerts@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::alerts,
                "pbx:plugin/log@0.1.0": pbx_sdk::bindings::dialplan::pbx::plugin::log,
            },
        });
    }
}

use bindings::call_handler::pbx::plugin0_2_0 as wit2;

pub use pbx_sdk;
pub use pbx_sdk::{Reject, Ring, RingStrategy, RingTarget};
pub use wit2::call_info;
pub use wit2::call_types::{
    Action, Call, DialOut, DialResult, Event, Gather, Prompt, Recording, RingGroup, Step, Tone,
    TransferResult, TransferTarget,
};
pub use wit2::clock;
pub use wit2::features;

impl Step {
    /// A step that does `actions` and keeps `state` for the next event.
    pub fn new(actions: Vec<Action>, state: impl Into<Vec<u8>>) -> Step {
        Step {
            actions,
            state: state.into(),
        }
    }

    /// Ends the call with the outcome of its last dial attempt.
    pub fn finish() -> Step {
        Step::new(vec![Action::Finish], Vec::new())
    }
}

/// A tenant's call handler: asked once when a call starts and again after
/// each of its events.
pub trait CallHandler {
    /// The next step of `call`; `state` is what the last step returned
    /// (empty when the call starts).
    fn handle(call: &Call, state: &[u8], event: &Event) -> Step;
}

/// A handler written as a state machine: `state` names where the call is
/// (the text the last step kept), and each arm answers with the actions and
/// the name of the next state.
///
/// ```ignore
/// Machine::from(state).then(|at| match (at, event) {
///     ("", Event::CallStarted) => (vec![ring], "ringing"),
///     ("ringing", Event::DialEnded(_)) => (vec![forward], "forwarded"),
///     _ => (vec![Action::Finish], ""),
/// })
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine<'a> {
    at: &'a str,
}

impl<'a> Machine<'a> {
    /// The state the last step kept (not text: the start state, `""`).
    pub fn from(state: &'a [u8]) -> Machine<'a> {
        Machine {
            at: std::str::from_utf8(state).unwrap_or(""),
        }
    }

    /// Where the call is.
    pub fn at(&self) -> &'a str {
        self.at
    }

    /// The step `next` chooses from where the call is.
    pub fn then(self, next: impl FnOnce(&'a str) -> (Vec<Action>, &'static str)) -> Step {
        let (actions, state) = next(self.at);
        Step::new(actions, state)
    }
}

/// Export a type implementing [`CallHandler`] as this component's `handle`.
#[macro_export]
macro_rules! export_call_handler {
    ($ty:ty) => {
        const _: () = {
            struct __PbxCallHandlerExport;
            impl $crate::bindings::call_handler::Guest for __PbxCallHandlerExport {
                fn handle(
                    call: $crate::Call,
                    state: ::std::vec::Vec<u8>,
                    event: $crate::Event,
                ) -> $crate::Step {
                    <$ty as $crate::CallHandler>::handle(&call, &state, &event)
                }
            }
            $crate::bindings::call_handler::__export_call_handler_raw!(
                __PbxCallHandlerExport with_types_in $crate::bindings::call_handler
            );
        };
    };
}
