//! The WebAssembly plugin runtime: runs tenants' dial plans and providers'
//! (or tenants') policies in a sandbox, on the call path.
//!
//! ```ignore
//! let runtime = PluginRuntime::new(RuntimeConfig::default())?;
//! let plan = runtime.load(World::Dialplan, shipped::DEFAULT_DIALPLAN)?;
//! let policy = runtime.load(World::Policy, shipped::RESTRICTIONS)?;
//! let decision = runtime.route(&plan, &caps, &call)?; // Err → 500/503 reject
//! match runtime.check_call(&policy, &caps, &call, &decision) {
//!     Verdict::Allow => { /* place the call */ }
//!     Verdict::Deny(reason) => { /* 403 + alert */ }
//! }
//! ```
//!
//! # Design
//!
//! - The WIT package `pbx:plugin` (repository `wit/`) is the contract; its host
//!   bindings are generated once ([`bindings`](crate) module, private) and the
//!   record types are re-exported from [`types`]. The shipped plugins
//!   ([`shipped`]): the default dial plan, the destination-class
//!   restrictions and the fraud policy.
//! - Capabilities ([`caps`]) are bound per invocation to one tenant through
//!   [`TenantCaps`]; no import takes or reveals a tenant id. WASI is linked with
//!   an empty context (no files, environment or network; stdout/stderr go into
//!   the tenant's bounded [`PluginLog`]), built only if the guest calls WASI.
//! - [`PluginRuntime::load`] refuses oversize files, core modules, non-components,
//!   components importing anything outside the world (e.g. `wasi:sockets`,
//!   `wasi:filesystem`) and components not exporting the world's functions with
//!   the right types; it compiles (reusing wasmtime's content-hash disk cache
//!   when [`RuntimeConfig::cache_dir`] is set) and pre-links an `InstancePre`.
//! - Every invocation gets a fresh instance from the pooling allocator (the
//!   first MiB of each memory and table slot stays resident and is reset in
//!   place, so a small plugin's call takes no page faults), an epoch
//!   deadline (a background thread advances the epoch) and a memory cap. Traps,
//!   timeouts, memory exhaustion and invalid decisions become [`PluginError`]s;
//!   policies fail closed. After [`RuntimeConfig::quarantine_after`] consecutive
//!   failures a plugin is quarantined for that tenant and calls get
//!   [`PluginError::Quarantined`], telling the caller to run the shipped default.
//! - Synchronous: no async runtime is needed to call a plugin.

mod bindings;
pub mod caps;
mod error;
mod runtime;
pub mod shipped;
pub mod types;

pub use caps::{
    Alert, AlertSink, FixedUsage, LogLine, MemoryAlerts, MemoryStorage, PluginLog, Storage,
    StorageError, TenantCaps, Usage,
};
pub use error::{Error, InvalidDecision, PluginError, Result, ValidationError};
pub use runtime::{LoadedPlugin, PluginRuntime, RuntimeConfig, World};
pub use types::{
    Action, Call, Cdr, Decision, DestinationClass, Directory, ExtensionInfo, Reject, Ring,
    RingStrategy, RingTarget, Severity, TrunkRoute, Verdict,
};

/// The log levels of `pbx:plugin/log`.
pub use bindings::log::Level as LogLevel;
