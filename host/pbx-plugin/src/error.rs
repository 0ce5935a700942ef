//! Errors, sorted by who is at fault: the runtime's configuration ([`Error`]),
//! an uploaded file ([`ValidationError`]), a plugin at call time
//! ([`PluginError`]) and a decision naming what is not the tenant's
//! ([`InvalidDecision`]).

use crate::World;

/// The runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine rejected the configuration (pool sizes, cache directory, ...).
    #[error("plugin engine configuration: {0}")]
    Config(String),
    /// The epoch ticker thread could not be started.
    #[error("could not start the epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
}

/// Result of setting up the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An uploaded plugin was refused. Messages are meant for the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Over the configured size limit.
    #[error("plugin is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the upload.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A core WebAssembly module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Not WebAssembly at all, or a component that does not compile.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// Imports an interface outside the `pbx:plugin` world and the empty WASI
    /// subset the host provides.
    #[error(
        "plugin imports `{0}`, which plugins may not use (allowed: pbx:plugin interfaces, \
         wasi:cli, wasi:io, wasi:clocks, wasi:random)"
    )]
    ForbiddenImport(String),
    /// Imports are allowed by name but do not match the host's types.
    #[error("plugin imports do not match the pbx:plugin@0.1.0 interfaces: {0}")]
    ImportMismatch(String),
    /// Over one of the [`CompileLimits`](crate::CompileLimits) checked before compiling.
    #[error("plugin is over a compile limit: {0}")]
    OverLimit(String),
    /// Compiling it in the sandbox ran out of CPU time, memory or wall time.
    #[error("compiling the plugin exceeded its {0} limit")]
    CompileExhausted(&'static str),
    /// The compile sandbox refused it; the text is the sandbox's
    /// [`ValidationError`] message.
    #[error("{0}")]
    Refused(String),
    /// The compile sandbox could not be run or did not answer.
    #[error("the plugin compiler failed: {0}")]
    Sandbox(String),
    /// Does not export the world's functions with the right types.
    #[error(
        "plugin does not export the `{world}` world's functions with the right types: {detail}"
    )]
    Exports {
        /// The world the plugin was uploaded for.
        world: World,
        /// What the engine found wrong.
        detail: String,
    },
}

/// A decision that names something that is not the calling tenant's, or is
/// malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDecision {
    /// Ring with no targets.
    #[error("ring decision has no targets")]
    NoTargets,
    /// Ring with too many targets.
    #[error("ring decision has {0} targets, too many")]
    TooManyTargets(usize),
    /// Names an extension the tenant does not have.
    #[error("extension {0:?} is not one of this tenant's")]
    UnknownExtension(String),
    /// Names a group the tenant does not have.
    #[error("group {0:?} is not one of this tenant's")]
    UnknownGroup(String),
    /// Names a trunk the tenant does not have.
    #[error("trunk {0:?} is not one of this tenant's")]
    UnknownTrunk(String),
    /// A ring timeout of zero or too long.
    #[error("ring timeout of {0} s is out of range")]
    BadTimeout(u32),
    /// A trunk number that is not dialable.
    #[error("trunk number {0:?} is not dialable")]
    BadNumber(String),
    /// A reject status outside 400..=699.
    #[error("reject status {0} is not a 4xx-6xx final status")]
    BadStatus(u16),
    /// A reject reason that is too long or has control characters.
    #[error("reject reason is too long or has control characters")]
    BadReason,
    /// A call handler's state over its size cap.
    #[error("call handler state of {0} bytes is over the cap")]
    StateTooLarge(usize),
    /// A call handler step with too many actions.
    #[error("call handler step has {0} actions, too many")]
    TooManyActions(usize),
    /// An action after one that dials or ends the call.
    #[error("an action follows one that dials or ends the call")]
    ActionAfterEnd,
    /// A call-record tag that is empty, too long or holds anything but
    /// letters, digits and `-_.:/`.
    #[error("tag is empty, too long or holds characters other than letters, digits and -_.:/")]
    BadTag,
    /// A media action outside its bounds (a prompt name, digits, a key, a
    /// length or a count), saying which.
    #[error("media action out of bounds: {0}")]
    BadMedia(&'static str),
}

/// A plugin invocation failed. The call path turns a dial plan's failure into a
/// 500/503 reject (see [`PluginError::sip_status`]); policies fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin trapped (panic, unreachable, bad memory access, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin ran past its deadline and was stopped.
    #[error("plugin ran past its deadline")]
    Deadline,
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin exceeded its memory limit")]
    MemoryExhausted,
    /// The instance could not be created (for example the pool is full).
    #[error("could not instantiate plugin: {0}")]
    Instantiate(String),
    /// The dial plan returned a decision that is not allowed.
    #[error("plugin returned an invalid decision: {0}")]
    InvalidDecision(#[from] InvalidDecision),
    /// The plugin was loaded for the other world.
    #[error("plugin was loaded for the `{0}` world")]
    WrongWorld(World),
    /// The plugin failed too often and is quarantined for this tenant; run the
    /// shipped default instead.
    #[error("plugin is quarantined after repeated failures; use the default")]
    Quarantined,
}

/// The reason phrase of a call refused because a policy failed (trapped, ran
/// out of time or memory, or is quarantined): policies fail closed with 403.
pub const POLICY_FAILED: &str = "Policy Failed";

impl PluginError {
    /// The SIP status a dial-plan failure turns into: `503` when the caller
    /// should retry later (overload, quarantine), `500` otherwise.
    pub fn sip_status(&self) -> u16 {
        match self {
            PluginError::Instantiate(_) | PluginError::Quarantined => 503,
            _ => 500,
        }
    }

    /// The reason phrase a dial-plan failure is answered with: a fixed text
    /// per kind of failure (documented in `docs/plugins.md`), never the
    /// failure's details, which go to the tenant's alerts.
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            PluginError::Deadline => "Dial Plan Timeout",
            PluginError::MemoryExhausted => "Dial Plan Out Of Memory",
            PluginError::InvalidDecision(_) => "Invalid Dial Plan Decision",
            PluginError::Quarantined | PluginError::Instantiate(_) => "Dial Plan Unavailable",
            PluginError::Trap(_) | PluginError::WrongWorld(_) => "Dial Plan Failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_plan_failures_map_to_server_errors() {
        assert_eq!(PluginError::Deadline.sip_status(), 500);
        assert_eq!(PluginError::Quarantined.sip_status(), 503);
        let leaky = PluginError::Instantiate("maximum concurrent memory limit of 128".into());
        assert_eq!(leaky.reason_phrase(), "Dial Plan Unavailable");
        assert_eq!(
            PluginError::Trap("wasm backtrace: 0x1f".into()).reason_phrase(),
            "Dial Plan Failed"
        );
        let msg = ValidationError::ForbiddenImport("wasi:sockets/tcp@0.2.6".into()).to_string();
        assert!(msg.contains("wasi:sockets/tcp"), "{msg}");
    }
}
