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
//!   [`TenantCaps`]; no import takes or reveals a tenant id. The policy
//!   world's read-only `config` is bound to (policy, tenant) by the host
//!   ([`TenantCaps::with_config`]); its owner, not the tenant, writes it. WASI is linked with
//!   an empty context (no files, environment or network; stdout/stderr go into
//!   the tenant's bounded [`PluginLog`]), built only if the guest calls WASI.
//! - [`PluginRuntime::load`] refuses oversize files, core modules, non-components,
//!   components importing anything outside the world (e.g. `wasi:sockets`,
//!   `wasi:filesystem`) and components not exporting the world's functions with
//!   the right types; it compiles (reusing wasmtime's content-hash disk cache
//!   when [`RuntimeConfig::cache_dir`] is set) and pre-links an `InstancePre`.
//! - Every invocation gets a fresh instance from the pooling allocator (the
//!   first MiB of each memory and table slot stays resident and is reset in
//!   place, so a small plugin's call takes no page faults), a CPU-time
//!   deadline and wall-clock cap (a background thread advances the epoch;
//!   see below) and a memory cap. Traps,
//!   timeouts, memory exhaustion and invalid decisions become [`PluginError`]s;
//!   policies fail closed. After [`RuntimeConfig::quarantine_after`] consecutive
//!   failures a plugin is quarantined for that tenant and calls get
//!   [`PluginError::Quarantined`], telling the caller to run the shipped default.
//! - Synchronous: no async runtime is needed to call a plugin.
//!
//! ## Deadlines across host calls
//!
//! The epoch deadline interrupts guest code only: a guest blocked inside a
//! host call is not running wasm. Two ways out were weighed: running every
//! call asynchronously (a fiber per call; the host abandons the future at the
//! deadline) or linking no host call that can wait. This runtime does the
//! latter. Every host call it links returns without waiting: the WASI
//! functions that wait (`wasi:io/poll`'s `poll` and `pollable.block`, which
//! `std::thread::sleep` and clock subscriptions end in) are shadowed by
//! functions that trap at once ("would block"), and the streams the empty
//! WASI context has (in-memory stdout/stderr, closed stdin) never report
//! "not ready", so the blocking stream writes and reads return at once too.
//! Guests still import those interfaces (Rust's standard library does for
//! wasm32-wasip2), so the shipped plugins and examples load unchanged; only a
//! guest that actually waits fails, like any trap. The cost on the call path
//! is nil (no fiber stack, no future polling; measured in BENCHMARKS.md),
//! where async calls would add a fiber switch and stack to every invocation.
//! The one host call that waits by design, a storage write waiting for its
//! commit, waits at most until the invocation's wall-clock cap.
//!
//! ## CPU budget and wall-clock cap
//!
//! [`RuntimeConfig::deadline`] is CPU time on the thread running the call:
//! when the epoch deadline comes, the runtime reads the thread's CPU clock and
//! either interrupts the guest or moves the deadline on by what is left. A
//! loaded host (more runnable threads than cores) then does not fail, and
//! eventually quarantine, a well-behaved plugin for time it spent waiting for
//! a core. [`RuntimeConfig::wall_limit`] caps the same call in wall-clock
//! time, so a worker is never held longer than that plus one epoch tick.
//!
//! ## What one instance and one upload may take
//!
//! - Per instance: at most 2 memories, 8 tables, 16 core instances, tables of
//!   65,536 elements, and [`RuntimeConfig::memory_limit_bytes`] of linear
//!   memory across all its memories (counted from creation). The pool holds
//!   [`RuntimeConfig::max_instances`] instances at those caps, so no instance
//!   takes another's slots.
//! - Host-side allocations a guest can cause: `wasi:random` gives at most
//!   4 KiB per call; strings and lists lifted out of the guest live only for
//!   the host call, and one lift copies at most 4 MiB (the store's hostcall
//!   fuel: a decision aliasing one big string many times traps there); log lines are cut
//!   to 512 bytes and their allocation given back, and each tenant's
//!   [`PluginLog`] keeps at most 64 KiB; stdout/stderr keep 4 KiB a call.
//! - Uploads: [`CompileLimits`] (modules, functions, body size, locals,
//!   branches, locals × branches) are checked by one linear parse before any
//!   compiling; with a [`CompileSandbox`] the upload is then compiled in a
//!   child process under `RLIMIT_CPU` and `RLIMIT_AS`, which leaves the code
//!   in the content-hash cache that the serving process then loads.
//! - Workers: [`pool::FairQueue`] gives each tenant a bounded share of the
//!   plugin threads and queue.
//! - Quarantine ends after [`RuntimeConfig::quarantine_backoff`], or when
//!   released ([`PluginRuntime::release_quarantine_of`]); a new upload has a
//!   new hash and starts with a clean record. [`PluginRuntime::quarantines`]
//!   lists each with its reason.
//! - Failures reach SIP as fixed reason phrases
//!   ([`PluginError::reason_phrase`], [`POLICY_FAILED`]); details go to the
//!   tenant's alerts only.

mod bindings;
pub mod caps;
mod error;
pub mod handler;
pub mod pool;
mod runtime;
mod sandbox;
pub mod shipped;
pub mod types;
pub mod upload;
mod validate;

pub use caps::{
    Alert, AlertSink, CallInfo, ConfigMap, EmptyConfig, Features, FeaturesError, FixedUsage,
    LayeredConfig, LogLine, MemoryAlerts, MemoryFeatures, MemoryStorage, PluginLog, PolicyConfig,
    Storage, StorageError, TenantCaps, TenantClock, Usage,
};
pub use error::{Error, InvalidDecision, POLICY_FAILED, PluginError, Result, ValidationError};
pub use runtime::{LoadedPlugin, PluginRuntime, Quarantine, RuntimeConfig, World};
pub use sandbox::{CompileRequest, CompileSandbox, serve_compile_request};
pub use types::{
    Action, Call, Cdr, Decision, DestinationClass, Directory, ExtensionInfo, Reject, Ring,
    RingStrategy, RingTarget, Severity, TrunkRoute, Verdict,
};
pub use upload::{UploadCheck, UploadError};
pub use validate::CompileLimits;

/// The log levels of `pbx:plugin/log`.
pub use bindings::log::Level as LogLevel;
