//! The engine, loading (validate, compile, pre-link), and invocation with a
//! deadline, a memory cap, a fresh instance per call and quarantine.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use model::{Severity, TenantId};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::call_handler::CallHandlerPre;
use crate::bindings::dialplan::{Dialplan, DialplanPre};
use crate::bindings::log::Level;
use crate::bindings::policy::PolicyPre;
use crate::caps::{Alert, TenantCaps};
use crate::error::{Error, PluginError, Result, ValidationError};
use crate::handler::{Event, HandlerCall, Step};
use crate::types::{Action, Call, Cdr, Decision, Verdict};

/// Most bytes one lift out of guest memory may copy to the host.
const MAX_LIFT_BYTES: usize = 4 << 20;

/// Most alerts one invocation may raise through `pbx:plugin/alerts`.
pub(crate) const MAX_ALERTS_PER_CALL: u32 = 8;
/// Bytes of stdout and of stderr kept per invocation.
const STDIO_CAPACITY: usize = 4096;
/// Longest failure detail kept in a [`PluginError`] or alert.
const MAX_DETAIL_LEN: usize = 300;
/// Interfaces of `pbx:plugin` a component may import.
const PBX_INTERFACES: &[&str] = &["types", "directory", "storage", "usage", "alerts", "log"];
/// Interfaces of `pbx:plugin` only the `policy` world imports.
const POLICY_ONLY_INTERFACES: &[&str] = &["config"];
/// Interfaces of `pbx:plugin` only the `call-handler` world (0.2.0) imports.
const CALL_HANDLER_ONLY_INTERFACES: &[&str] = &["call-types", "clock", "call-info", "features"];
/// Bytes of each pooled memory and table slot kept mapped between calls.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// WASI packages the host provides, with an empty context.
const WASI_PACKAGES: &[&str] = &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/"];
/// The WASI functions that wait (for a clock or a stream): the epoch deadline
/// interrupts guest code only, so a guest blocked in one of these would hold its
/// worker for as long as it asked. They trap instead (see the crate's `# Design`).
/// The version is the one `wasmtime-wasi` links; guests importing an older
/// 0.2.x are matched to it by semver.
const BLOCKING_WASI: &[(&str, &str)] = &[
    ("wasi:io/poll@0.2.12", "poll"),
    ("wasi:io/poll@0.2.12", "[method]pollable.block"),
];
/// Most bytes one `wasi:random` call may ask for (wasmtime's default is 64 MiB,
/// allocated on the host). Guest toolchains ask for 16 to 32 bytes.
pub(crate) const MAX_RANDOM_BYTES: u64 = 4096;
/// Most linear memories one instance may have, counting every core module of
/// the component (a Rust or JavaScript plugin has one).
pub(crate) const MAX_MEMORIES_PER_INSTANCE: u32 = 2;
/// Most tables one instance may have (a Rust plugin has 2 or 3: its own and
/// the adapter's shims).
pub(crate) const MAX_TABLES_PER_INSTANCE: u32 = 8;
/// Most core instances one component may create (a Rust plugin has 4 or 5:
/// itself, the WASI adapter and the shims wiring them).
pub(crate) const MAX_CORE_INSTANCES_PER_INSTANCE: u32 = 16;
/// Most elements of one table, at creation and when grown.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 65_536;

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `pbx:plugin/dialplan`: exports `route`.
    Dialplan,
    /// `pbx:plugin/policy`: exports `check-call` and `call-ended`.
    Policy,
    /// `pbx:plugin/call-handler@0.2.0`: exports `handle`, one call step at a
    /// time.
    CallHandler,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Dialplan => "dialplan",
            World::Policy => "policy",
            World::CallHandler => "call-handler",
        })
    }
}

/// Runtime limits and settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// CPU-time budget of one invocation (instantiation plus the call),
    /// counted on the thread that runs it: time the scheduler gives to other
    /// threads on a loaded host is not charged to the plugin.
    pub deadline: Duration,
    /// Wall-clock cap of one invocation, whatever the scheduler does: a
    /// worker is never held longer than this (plus one epoch tick).
    pub wall_limit: Duration,
    /// Most linear memory one instance may use, all its memories together.
    pub memory_limit_bytes: usize,
    /// Largest component accepted by [`PluginRuntime::load`]. Rust plugins
    /// are tens of KiB; JavaScript ones carry a JS engine and are over 10 MiB.
    pub max_component_bytes: usize,
    /// Consecutive failures after which a plugin is quarantined for a tenant.
    pub quarantine_after: u32,
    /// Where compiled artifacts are cached by content hash (none: no disk cache).
    pub cache_dir: Option<PathBuf>,
    /// Compile uploads in a child process with CPU and memory limits (needs
    /// `cache_dir`, through which the compiled code comes back). `None`
    /// compiles in this process, after the [`CompileLimits`](crate::CompileLimits).
    pub sandbox: Option<crate::CompileSandbox>,
    /// Instances that may run at the same time (pool size). Each instance
    /// takes at most its per-instance caps of memories, tables and core
    /// instances from the pool, so the pool holds `max_instances` of the
    /// largest plugins at once: keep it at or above the number of threads
    /// that run plugins.
    pub max_instances: u32,
    /// How long a quarantine lasts before the plugin gets another chance
    /// (its failure count starts again from zero).
    pub quarantine_backoff: Duration,
    /// Caps checked on every core module of an upload before compiling it.
    pub compile_limits: crate::validate::CompileLimits,
}

impl Default for RuntimeConfig {
    /// 10 ms of CPU within 100 ms of wall clock, 16 MiB of memory, 16 MiB components, quarantine after 5 for
    /// 5 minutes, no disk cache, 64 concurrent instances, the default
    /// [`CompileLimits`](crate::CompileLimits).
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(10),
            wall_limit: Duration::from_millis(100),
            memory_limit_bytes: 16 << 20,
            max_component_bytes: 16 << 20,
            quarantine_after: 5,
            cache_dir: None,
            sandbox: None,
            max_instances: 64,
            quarantine_backoff: Duration::from_secs(300),
            compile_limits: crate::validate::CompileLimits::default(),
        }
    }
}

/// A validated, compiled and pre-linked plugin. Every invocation instantiates
/// it afresh.
pub struct LoadedPlugin {
    world: World,
    hash: Arc<str>,
    pre: Pre,
}

enum Pre {
    Dialplan(DialplanPre<HostState>),
    Policy(PolicyPre<HostState>),
    CallHandler(CallHandlerPre<HostState>),
}

impl LoadedPlugin {
    /// The world it was loaded for.
    pub fn world(&self) -> World {
        self.world
    }

    /// Its content hash: SHA-256 of the uploaded bytes, lower-case hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("world", &self.world)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Per-invocation store data: the tenant's capabilities, an empty WASI
/// context (built on the guest's first WASI call) and the memory cap.
pub(crate) struct HostState {
    pub(crate) caps: TenantCaps,
    pub(crate) alerts_raised: u32,
    wasi: Option<Wasi>,
    table: ResourceTable,
    memory: MemoryCap,
    budget: Budget,
}

impl HostState {
    /// When this invocation's wall-clock cap runs out: host calls that wait
    /// (a storage write waiting for its commit) wait no longer than this.
    pub(crate) fn wall_deadline(&self) -> Instant {
        self.budget.started + self.budget.wall
    }
}

/// The empty WASI context and the pipes that catch the guest's stdout and
/// stderr. Most plugins never call WASI, so it is only built on demand: that
/// keeps random-number seeding and pipe buffers off the common call path.
struct Wasi {
    ctx: WasiCtx,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Wasi {
    fn new() -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // No preopens, no environment, no arguments, no network, empty stdin.
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        Self {
            ctx,
            stdout,
            stderr,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.get_or_insert_with(Wasi::new).ctx,
            table: &mut self.table,
        }
    }
}

/// Caps what one instance may hold: its linear memories together (creation
/// counts as growth from zero), the number of memories, tables and core
/// instances, and table sizes. Remembers a refused memory growth, so the
/// resulting trap is reported as memory exhaustion.
struct MemoryCap {
    limit: usize,
    used: usize,
    hit: bool,
}

impl MemoryCap {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES_PER_INSTANCE as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_INSTANCE as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_INSTANCE as usize
    }
}

/// Tenant key and plugin hash; both shared, so building a key never allocates.
type HealthKey = (TenantId, Arc<str>);

/// A plugin's recent failures for one tenant.
struct Health {
    /// Consecutive failures.
    failures: u32,
    /// The last failure.
    reason: String,
    /// When the quarantine began, once `failures` reached the threshold.
    since: Option<Instant>,
}

/// A plugin quarantined for one tenant (see [`PluginRuntime::quarantines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// The tenant ([`TenantCaps::tenant`]).
    pub tenant: TenantId,
    /// The plugin's content hash.
    pub hash: Arc<str>,
    /// The failure that completed the quarantine, as alerted.
    pub reason: String,
    /// How long it has lasted.
    pub age: Duration,
    /// How long until the back-off lifts it.
    pub lifts_in: Duration,
}

/// Runs plugins. One engine (pooling allocator, epoch interruption) per
/// runtime, shared by all tenants; one background thread ("pbx-plugin-epoch")
/// advances the epoch every tick while an invocation runs
/// ([`EpochTicker`]) and stops when the runtime is dropped.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    deadline_ticks: u64,
    tick: Duration,
    loaded: Mutex<HashMap<(World, String), Weak<LoadedPlugin>>>,
    failures: Mutex<HashMap<HealthKey, Health>>,
    ticker: EpochTicker,
}

/// The thread that advances the engine's epoch, every tick while at least
/// one invocation runs and not at all otherwise: parked, it costs a host that
/// runs no plugin (or one busy relaying media on one core) no wake-ups, where
/// it used to wake every tick (1,000 times a second at the default 10 ms
/// deadline). An invocation that finds it parked unparks it
/// ([`EpochTicker::enter`]); the epoch deadline of a store counts ticks from
/// when it was set, so ticks missed while parked change nothing.
struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TickerShared {
    running: AtomicUsize,
    stop: AtomicBool,
    /// Set while the thread is parked (for tests).
    parked: AtomicBool,
    /// Ticks so far (for tests).
    ticks: AtomicU64,
}

impl EpochTicker {
    fn start(tick: Duration, on_tick: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(TickerShared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pbx-plugin-epoch".into())
                .spawn(move || {
                    while !shared.stop.load(Ordering::Acquire) {
                        if shared.running.load(Ordering::Acquire) == 0 {
                            shared.parked.store(true, Ordering::Release);
                            // An unpark between the load and here is kept as
                            // the thread's token: park returns at once.
                            std::thread::park();
                            shared.parked.store(false, Ordering::Release);
                            continue;
                        }
                        std::thread::sleep(tick);
                        on_tick();
                        shared.ticks.fetch_add(1, Ordering::Relaxed);
                    }
                })?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Marks an invocation as running until the guard is dropped.
    fn enter(&self) -> Running<'_> {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
        Running(&self.shared)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread only parks, sleeps and ticks; it cannot have panicked.
            let _ = thread.join();
        }
    }
}

/// An invocation in progress (see [`EpochTicker::enter`]).
struct Running<'a>(&'a TickerShared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One invocation's budget: CPU time on its own thread and a wall-clock cap.
///
/// The epoch ticker only says "look again": when the store's epoch deadline
/// comes, [`Budget::check`] reads the thread's CPU clock. A plugin that has
/// used its CPU budget, or has run past the wall-clock cap, is interrupted;
/// otherwise the deadline moves on by what is left. On an idle host the two
/// agree; on a loaded one, time spent waiting for a core is not the
/// plugin's, so a well-behaved plugin is not failed (and quarantined) for the
/// host's load, while a worker is still never held past the wall cap.
#[derive(Debug, Clone, Copy)]
struct Budget {
    cpu: Duration,
    wall: Duration,
    cpu_at_start: Duration,
    started: Instant,
}

impl Budget {
    fn start(cpu: Duration, wall: Duration) -> Budget {
        Budget {
            cpu,
            wall: wall.max(cpu),
            cpu_at_start: thread_cpu_time(),
            started: Instant::now(),
        }
    }

    /// What to do when the epoch deadline is reached at `now`, with the
    /// thread's CPU clock reading `cpu_now`.
    fn check(&self, now: Instant, cpu_now: Duration, tick: Duration) -> UpdateDeadline {
        let cpu_used = cpu_now.saturating_sub(self.cpu_at_start);
        let wall_used = now.saturating_duration_since(self.started);
        let left = self
            .cpu
            .saturating_sub(cpu_used)
            .min(self.wall.saturating_sub(wall_used));
        if left.is_zero() {
            return UpdateDeadline::Interrupt;
        }
        let ticks = u64::try_from(left.as_nanos() / tick.as_nanos().max(1)).unwrap_or(u64::MAX);
        UpdateDeadline::Continue(ticks.max(1))
    }
}

/// CPU time consumed by the calling thread (wasmtime runs a synchronous
/// call on the thread that makes it).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The epoch tick for a deadline: a tenth of it, between 50 µs and 1 ms.
fn tick_for(deadline: Duration) -> Duration {
    (deadline / 10).clamp(Duration::from_micros(50), Duration::from_millis(1))
}

fn config_err(e: impl fmt::Display) -> Error {
    Error::Config(e.to_string())
}

fn detail(e: impl fmt::Display) -> String {
    crate::caps::alerts::truncate(e.to_string(), MAX_DETAIL_LEN)
}

impl PluginRuntime {
    /// Build the engine and linker and start the epoch ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        if config.sandbox.is_some() && config.cache_dir.is_none() {
            return Err(Error::Config(
                "a compile sandbox needs a cache directory to hand compiled code back".into(),
            ));
        }
        Self::build(config, true)
    }

    /// The runtime a compile sandbox runs: the same compiler settings (so the
    /// code it caches is what [`PluginRuntime::new`]'s engine looks up), but
    /// instances allocated on demand, since the pool's address-space
    /// reservation would not fit under the sandbox's memory limit.
    pub(crate) fn for_compiling(mut config: RuntimeConfig) -> Result<Self> {
        config.sandbox = None;
        Self::build(config, false)
    }

    fn build(config: RuntimeConfig, pooling: bool) -> Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        // Per-instance caps first, then totals that fit `instances` plugins
        // at those caps: no plugin can take more than its own share.
        pool.max_memories_per_component(MAX_MEMORIES_PER_INSTANCE)
            .max_memories_per_module(MAX_MEMORIES_PER_INSTANCE)
            .max_tables_per_component(MAX_TABLES_PER_INSTANCE)
            .max_tables_per_module(MAX_TABLES_PER_INSTANCE)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_INSTANCE)
            .table_elements(MAX_TABLE_ELEMENTS)
            .total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES_PER_INSTANCE))
            .total_memories(instances.saturating_mul(MAX_MEMORIES_PER_INSTANCE))
            .total_tables(instances.saturating_mul(MAX_TABLES_PER_INSTANCE))
            .total_stacks(instances)
            .max_memory_size(config.memory_limit_bytes)
            // Reset the first pages of a slot with memset/memcpy instead of
            // madvise: a call then takes no page faults or TLB shootdowns for
            // the memory a small plugin actually touches.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true).epoch_interruption(true);
        if pooling {
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        if let Some(dir) = &config.cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            wasm.cache(Some(Cache::new(cache).map_err(config_err)?));
        }
        let engine = Engine::new(&wasm).map_err(config_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(config_err)?;
        linker.allow_shadowing(true);
        for (interface, function) in BLOCKING_WASI {
            let name = format!("{interface}#{function}");
            linker
                .instance(interface)
                .and_then(|mut i| {
                    i.func_new(function, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(format!(
                            "{name} would block; plugins may not wait (no sleeps or polls)"
                        )))
                    })
                })
                .map_err(config_err)?;
        }
        linker.allow_shadowing(false);
        Dialplan::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(config_err)?;
        // The policy world's own import; `check_imports` keeps dial plans off it.
        crate::bindings::config::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(config_err)?;
        // The call handler's own imports (0.2.0); its 0.1.0 capabilities are
        // the ones linked above.
        {
            use crate::bindings::call_handler::pbx::plugin0_2_0::{call_info, clock, features};
            use wasmtime::component::HasSelf;
            clock::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(config_err)?;
            call_info::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(config_err)?;
            features::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(config_err)?;
        }

        let tick = tick_for(config.deadline);
        let deadline_ticks = u64::try_from(config.deadline.as_nanos() / tick.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let ticker = {
            let engine = engine.clone();
            EpochTicker::start(tick, move || engine.increment_epoch())?
        };
        Ok(Self {
            engine,
            linker,
            config,
            deadline_ticks,
            tick,
            loaded: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Validate, compile and pre-link an uploaded plugin for `world`. Loading
    /// the same bytes again while the first result is alive returns it; with a
    /// `cache_dir`, compiled code is also reused across restarts.
    pub fn load(&self, world: World, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, ValidationError> {
        if wasm.len() > self.config.max_component_bytes {
            return Err(ValidationError::TooLarge {
                size: wasm.len(),
                limit: self.config.max_component_bytes,
            });
        }
        let hash = hex::encode(Sha256::digest(wasm));
        let key = (world, hash);
        if let Some(plugin) = self.loaded.lock().get(&key).and_then(Weak::upgrade) {
            return Ok(plugin);
        }
        if wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0] {
            return Err(ValidationError::CoreModule);
        }
        crate::validate::check(wasm, &self.config.compile_limits)?;
        if let Some(sandbox) = &self.config.sandbox {
            // Compiled (and checked) in the child, which leaves the code in the
            // shared cache: the compile below loads it from there.
            crate::sandbox::compile(sandbox, &self.config, world, wasm)?;
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| ValidationError::NotAComponent(detail(e)))?;
        check_imports(&self.engine, &component, world)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ValidationError::ImportMismatch(detail(format_args!("{e:#}"))))?;
        let exports = |e: wasmtime::Error| ValidationError::Exports {
            world,
            detail: detail(format_args!("{e:#}")),
        };
        let pre = match world {
            World::Dialplan => Pre::Dialplan(DialplanPre::new(instance_pre).map_err(exports)?),
            World::Policy => Pre::Policy(PolicyPre::new(instance_pre).map_err(exports)?),
            World::CallHandler => {
                Pre::CallHandler(CallHandlerPre::new(instance_pre).map_err(exports)?)
            }
        };
        let plugin = Arc::new(LoadedPlugin {
            world,
            hash: Arc::from(key.1.as_str()),
            pre,
        });
        let mut loaded = self.loaded.lock();
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(key, Arc::downgrade(&plugin));
        Ok(plugin)
    }

    /// Run a dial plan's `route` for `call`. The decision is checked against
    /// the tenant's directory; any failure is an error the call path turns
    /// into a reject ([`PluginError::sip_status`]) — or, for
    /// [`PluginError::Quarantined`], into running the shipped default.
    pub fn route(
        &self,
        plugin: &LoadedPlugin,
        caps: &TenantCaps,
        call: &Call,
    ) -> Result<Decision, PluginError> {
        let Pre::Dialplan(pre) = &plugin.pre else {
            return Err(PluginError::WrongWorld(plugin.world));
        };
        self.invoke(plugin, caps, "route", |store| {
            let instance = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
            // Lifted whole before the guest's post-return frees it; what the
            // lift may copy is capped by the store's hostcall fuel.
            let decision = instance
                .call_route(&mut *store, call)
                .map_err(Failure::Wasm)?;
            decision.validate(&caps.directory)?;
            Ok(decision)
        })
    }

    /// Run one step of a call handler: `state` is what its last step
    /// returned (empty at the start), `event` what happened since. The step is
    /// checked ([`crate::handler::validate_step`]) before it is returned.
    pub fn handle(
        &self,
        plugin: &LoadedPlugin,
        caps: &TenantCaps,
        call: &HandlerCall,
        state: &[u8],
        event: &Event,
    ) -> Result<Step, PluginError> {
        let Pre::CallHandler(pre) = &plugin.pre else {
            return Err(PluginError::WrongWorld(plugin.world));
        };
        self.invoke(plugin, caps, "handle", |store| {
            let instance = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
            let step = instance
                .call_handle(&mut *store, call, state, event)
                .map_err(Failure::Wasm)?;
            crate::handler::validate_step(&step, &caps.directory)?;
            Ok(step)
        })
    }

    /// Run a policy's `check-call`, reporting failures as errors. Most callers
    /// want [`PluginRuntime::check_call`], which fails closed.
    pub fn try_check_call(
        &self,
        plugin: &LoadedPlugin,
        caps: &TenantCaps,
        call: &Call,
        decision: &Decision,
    ) -> Result<Verdict, PluginError> {
        let Pre::Policy(pre) = &plugin.pre else {
            return Err(PluginError::WrongWorld(plugin.world));
        };
        self.invoke(plugin, caps, "check-call", |store| {
            let instance = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
            instance
                .call_check_call(&mut *store, call, decision)
                .map_err(Failure::Wasm)
        })
    }

    /// Run a policy's `check-call`; any failure (including quarantine) denies
    /// with [`POLICY_FAILED`](crate::POLICY_FAILED) (the details are alerted).
    pub fn check_call(
        &self,
        plugin: &LoadedPlugin,
        caps: &TenantCaps,
        call: &Call,
        decision: &Decision,
    ) -> Verdict {
        self.try_check_call(plugin, caps, call, decision)
            .unwrap_or_else(|_| Verdict::Deny(crate::error::POLICY_FAILED.to_string()))
    }

    /// Run a policy's `call-ended`; a failure yields no actions (it is alerted
    /// and counts towards quarantine).
    pub fn call_ended(&self, plugin: &LoadedPlugin, caps: &TenantCaps, cdr: &Cdr) -> Vec<Action> {
        let Pre::Policy(pre) = &plugin.pre else {
            return Vec::new();
        };
        self.invoke(plugin, caps, "call-ended", |store| {
            let instance = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
            instance
                .call_call_ended(&mut *store, cdr)
                .map_err(Failure::Wasm)
        })
        .unwrap_or_default()
    }

    /// Whether `plugin` is quarantined for `tenant` (and its back-off has not
    /// run out).
    pub fn is_quarantined(&self, tenant: TenantId, plugin: &LoadedPlugin) -> bool {
        self.failures
            .lock()
            .get(&(tenant, Arc::clone(&plugin.hash)))
            .and_then(|h| h.since)
            .is_some_and(|since| since.elapsed() < self.config.quarantine_backoff)
    }

    /// Every quarantine in force, with its reason.
    pub fn quarantines(&self) -> Vec<Quarantine> {
        let backoff = self.config.quarantine_backoff;
        self.failures
            .lock()
            .iter()
            .filter_map(|((tenant, hash), health)| {
                let age = health.since?.elapsed();
                (age < backoff).then(|| Quarantine {
                    tenant: *tenant,
                    hash: Arc::clone(hash),
                    reason: health.reason.clone(),
                    age,
                    lifts_in: backoff - age,
                })
            })
            .collect()
    }

    /// Lift a quarantine (for example after the tenant uploads a fix or an
    /// operator intervenes) and reset the failure count.
    pub fn release_quarantine(&self, tenant: TenantId, plugin: &LoadedPlugin) {
        self.release_quarantine_of(tenant, &plugin.hash);
    }

    /// [`PluginRuntime::release_quarantine`] by content hash; true when there
    /// was a quarantine or failure count to clear.
    pub fn release_quarantine_of(&self, tenant: TenantId, hash: &str) -> bool {
        self.failures
            .lock()
            .remove(&(tenant, Arc::from(hash)))
            .is_some()
    }

    fn new_store(&self, caps: &TenantCaps) -> Store<HostState> {
        let state = HostState {
            caps: caps.clone(),
            alerts_raised: 0,
            wasi: None,
            table: ResourceTable::new(),
            memory: MemoryCap::new(self.config.memory_limit_bytes),
            budget: Budget::start(self.config.deadline, self.config.wall_limit),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(self.deadline_ticks);
        let tick = self.tick;
        // Bytes one lift out of the guest may copy (a decision, a log line, a
        // storage value): a decision aliasing one big string many times
        // traps at this bound instead of being copied whole.
        store.set_hostcall_fuel(MAX_LIFT_BYTES);
        store.epoch_deadline_callback(move |ctx| {
            Ok(ctx
                .data()
                .budget
                .check(Instant::now(), thread_cpu_time(), tick))
        });
        store
    }

    fn invoke<R>(
        &self,
        plugin: &LoadedPlugin,
        caps: &TenantCaps,
        entry: &str,
        run: impl FnOnce(&mut Store<HostState>) -> Result<R, Failure>,
    ) -> Result<R, PluginError> {
        let key: HealthKey = (caps.tenant, Arc::clone(&plugin.hash));
        let threshold = self.config.quarantine_after.max(1);
        {
            let mut failures = self.failures.lock();
            if let Some(since) = failures.get(&key).and_then(|h| h.since) {
                if since.elapsed() < self.config.quarantine_backoff {
                    return Err(PluginError::Quarantined);
                }
                // The back-off ran out: a fresh start, and a fresh count.
                failures.remove(&key);
                drop(failures);
                caps.alerts.raise(Alert {
                    severity: Severity::Info,
                    from_runtime: true,
                    message: format!(
                        "{} plugin {} released from quarantine after its back-off",
                        plugin.world,
                        short(&plugin.hash)
                    ),
                });
            }
        }
        let running = self.ticker.enter();
        let mut store = self.new_store(caps);
        let outcome = run(&mut store);
        drop(running);
        if let Some(wasi) = &store.data().wasi {
            drain(&wasi.stdout, Level::Info, caps);
            drain(&wasi.stderr, Level::Warn, caps);
        }
        let error = match outcome {
            Ok(value) => {
                let mut failures = self.failures.lock();
                if !failures.is_empty() {
                    failures.remove(&key);
                }
                return Ok(value);
            }
            Err(Failure::Instantiate(e)) => {
                if !store.data().memory.hit && e.downcast_ref::<Trap>().is_none() {
                    // The host is short of instances: not the plugin's fault.
                    return Err(PluginError::Instantiate(detail(e)));
                }
                // The plugin's own start-up code trapped or ran out of budget.
                classify(&e, store.data().memory.hit)
            }
            Err(Failure::Invalid(e)) => PluginError::InvalidDecision(e),
            Err(Failure::Wasm(e)) => classify(&e, store.data().memory.hit),
        };
        let count = {
            let mut failures = self.failures.lock();
            let health = failures.entry(key).or_insert_with(|| Health {
                failures: 0,
                reason: String::new(),
                since: None,
            });
            health.failures += 1;
            health.reason = format!("failed in {entry}: {error}");
            if health.failures >= threshold && health.since.is_none() {
                health.since = Some(Instant::now());
            }
            health.failures
        };
        caps.alerts.raise(Alert {
            severity: Severity::Warning,
            from_runtime: true,
            message: format!(
                "{} plugin {} failed in {entry}: {error}",
                plugin.world,
                short(&plugin.hash)
            ),
        });
        if count == threshold {
            caps.alerts.raise(Alert {
                severity: Severity::Critical,
                from_runtime: true,
                message: format!(
                    "{} plugin {} quarantined after {count} consecutive failures; \
                     the shipped default runs instead",
                    plugin.world,
                    short(&plugin.hash)
                ),
            });
        }
        Err(error)
    }
}

/// Why an invocation did not produce a value, before classification.
enum Failure {
    Instantiate(wasmtime::Error),
    Wasm(wasmtime::Error),
    Invalid(crate::error::InvalidDecision),
}

impl From<crate::error::InvalidDecision> for Failure {
    fn from(e: crate::error::InvalidDecision) -> Self {
        Failure::Invalid(e)
    }
}

fn classify(e: &wasmtime::Error, memory_hit: bool) -> PluginError {
    if memory_hit {
        return PluginError::MemoryExhausted;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Deadline,
        Some(trap) => PluginError::Trap(detail(trap)),
        // A host function's error (a refused blocking call, an oversized
        // request): its own message, not the backtrace wrapped around it.
        None => PluginError::Trap(detail(e.root_cause())),
    }
}

/// Move what the guest printed into the tenant's log, a line at a time.
fn drain(pipe: &MemoryOutputPipe, level: Level, caps: &TenantCaps) {
    let bytes = pipe.contents();
    if bytes.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(&bytes).lines() {
        if !line.is_empty() {
            caps.log.push(level, line.to_owned());
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Refuse imports outside `world`'s part of `pbx:plugin` and the WASI subset
/// with an empty context.
fn check_imports(
    engine: &Engine,
    component: &Component,
    world: World,
) -> Result<(), ValidationError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let allowed = if let Some(rest) = name.strip_prefix("pbx:plugin/") {
            let iface = rest.split('@').next().unwrap_or_default();
            PBX_INTERFACES.contains(&iface)
                || (world == World::Policy && POLICY_ONLY_INTERFACES.contains(&iface))
                || (world == World::CallHandler && CALL_HANDLER_ONLY_INTERFACES.contains(&iface))
        } else {
            WASI_PACKAGES.iter().any(|p| name.starts_with(p))
        };
        if !allowed {
            return Err(ValidationError::ForbiddenImport(detail(name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until `cond` holds; the ticker runs on its own thread.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "never: {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_epoch_ticker_ticks_only_while_an_invocation_runs() {
        let ticker = EpochTicker::start(Duration::from_micros(50), || {}).unwrap();
        let shared = Arc::clone(&ticker.shared);
        eventually("parked before any invocation", || {
            shared.parked.load(Ordering::Acquire)
        });
        assert_eq!(shared.ticks.load(Ordering::Relaxed), 0);
        for _ in 0..3 {
            let before = shared.ticks.load(Ordering::Relaxed);
            let running = ticker.enter();
            eventually("ticks while running", || {
                shared.ticks.load(Ordering::Relaxed) >= before + 3
            });
            // Two at once: the second does not need to wake it.
            let second = ticker.enter();
            drop(running);
            let now = shared.ticks.load(Ordering::Relaxed);
            eventually("still ticks for the second", || {
                shared.ticks.load(Ordering::Relaxed) > now
            });
            drop(second);
            eventually("parked again", || shared.parked.load(Ordering::Acquire));
            let parked_at = shared.ticks.load(Ordering::Relaxed);
            // Parked means no tick until the next invocation (at most one
            // sleep already under way when the last one ended).
            assert!(shared.parked.load(Ordering::Acquire));
            assert_eq!(shared.ticks.load(Ordering::Relaxed), parked_at);
        }
        drop(ticker);
        assert!(shared.stop.load(Ordering::Acquire));
    }

    #[test]
    fn tick_is_a_tenth_of_the_deadline_within_bounds() {
        assert_eq!(
            tick_for(Duration::from_millis(10)),
            Duration::from_millis(1)
        );
        assert_eq!(
            tick_for(Duration::from_millis(2)),
            Duration::from_micros(200)
        );
        assert_eq!(tick_for(Duration::from_secs(5)), Duration::from_millis(1));
        assert_eq!(tick_for(Duration::ZERO), Duration::from_micros(50));
    }

    const MS: Duration = Duration::from_millis(1);

    /// A budget of 10 ms CPU and 50 ms wall, and a check on it after the
    /// given use: `check(tick)` as the epoch callback would call it.
    fn budget_after(
        cpu_used: Duration,
        wall_used: Duration,
    ) -> impl Fn(Duration) -> UpdateDeadline {
        let now = Instant::now();
        let cpu_at_start = Duration::from_secs(7);
        let budget = Budget {
            cpu: 10 * MS,
            wall: 50 * MS,
            cpu_at_start,
            started: now,
        };
        move |tick| budget.check(now + wall_used, cpu_at_start + cpu_used, tick)
    }

    #[test]
    fn time_spent_waiting_for_a_core_is_not_charged_to_the_plugin() {
        // 20 ms of wall clock have passed but the thread ran for almost none
        // of it: the deadline moves on by what is left of the CPU budget.
        let check = budget_after(Duration::ZERO, 20 * MS);
        match check(MS) {
            UpdateDeadline::Continue(ticks) => assert!((1..=10).contains(&ticks), "{ticks}"),
            _ => panic!("interrupted a plugin that has used no CPU"),
        }
    }

    #[test]
    fn a_plugin_that_used_its_cpu_budget_is_interrupted() {
        let check = budget_after(10 * MS, 10 * MS);
        assert!(matches!(check(MS), UpdateDeadline::Interrupt));
    }

    #[test]
    fn the_wall_clock_cap_holds_whatever_the_cpu_clock_says() {
        let check = budget_after(Duration::ZERO, 50 * MS);
        assert!(matches!(check(MS), UpdateDeadline::Interrupt));
        // Close to the cap, the next look comes no later than the cap.
        let check = budget_after(Duration::ZERO, 48 * MS);
        match check(MS) {
            UpdateDeadline::Continue(ticks) => assert!(ticks <= 2, "{ticks}"),
            _ => panic!("interrupted before the wall cap"),
        }
    }

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work_only() {
        let cpu = thread_cpu_time();
        let wall = Instant::now();
        let mut x = 0u64;
        while wall.elapsed() < 2 * MS {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let (used, elapsed) = (thread_cpu_time() - cpu, wall.elapsed());
        assert!(!used.is_zero());
        // A thread cannot run for longer than the wall clock it had.
        assert!(used <= elapsed + MS, "{used:?} of CPU in {elapsed:?}");
    }

    #[test]
    fn world_names_match_the_wit() {
        assert_eq!(World::Dialplan.to_string(), "dialplan");
        assert_eq!(World::Policy.to_string(), "policy");
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod plugin_tests;
