//! The plugin side of the call path: each new call's routing request runs the
//! tenant's dial plan and then every applicable policy, on worker threads apart
//! from the shard tasks, and the decision goes back to the call's shard.
//!
//! # Design
//! - [`PluginHost`] holds what is active: per tenant the dial plan (the shipped
//!   default when none was installed, or when the tenant's is quarantined), the
//!   shipped restrictions policy, provider-wide policies and the tenant's own
//!   policies, and the tenant view each capability is bound to. [`PluginHost::reload`]
//!   swaps all of it at once when the store's generation moves; components are
//!   compiled once per content hash and reused across reloads.
//! - [`Workers`] is a small pool of OS threads fed by a bounded queue. A plugin
//!   that runs to its deadline holds one worker for that long and never a shard;
//!   when the queue is full the call gets 503 at once.
//! - Any dial-plan failure rejects the call with the runtime's status and raises an
//!   alert; any policy denial or failure rejects with 403 (fail closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use pbx_core::{RingStep, RouteDecision, RouteRequest};
use pbx_plugin::pool::{FairQueue, Refused, Shares};
use pbx_plugin::{
    Action, Alert, AlertSink, Call, Decision, DestinationClass, LoadedPlugin, PluginError,
    PluginLog, PluginRuntime, RingStrategy, RuntimeConfig, Severity, Storage, StorageError,
    TenantCaps, Verdict, World,
};
use store::{Cdr, Store, TenantId};
use tokio::sync::mpsc;

use super::fraud::{CallUsage, Fraud, plugin_class};

/// Bytes of keys plus values a tenant's plugins may keep in storage.
const STORAGE_QUOTA: usize = 1 << 20;
/// Storage writes waiting for the database.
const QUEUE: usize = 1024;

/// Everything plugins run with, swapped whole on reload.
#[derive(Default)]
struct Active {
    dialplans: HashMap<TenantId, Arc<LoadedPlugin>>,
    provider_policies: Vec<(String, Arc<LoadedPlugin>)>,
    tenant_policies: HashMap<TenantId, Vec<(String, Arc<LoadedPlugin>)>>,
    tenants: HashMap<TenantId, Arc<TenantView>>,
}

impl Active {
    /// Every policy a tenant's calls pass: the shipped ones, the provider's, then
    /// the tenant's own.
    fn policies_for<'a>(
        &'a self,
        shipped: &'a [Arc<LoadedPlugin>],
        tenant: TenantId,
    ) -> impl Iterator<Item = &'a Arc<LoadedPlugin>> {
        shipped
            .iter()
            .chain(self.provider_policies.iter().map(|(_, p)| p))
            .chain(
                self.tenant_policies
                    .get(&tenant)
                    .into_iter()
                    .flatten()
                    .map(|(_, p)| p),
            )
    }
}

/// One tenant as its plugins see it.
struct TenantView {
    name: Arc<str>,
    directory: Arc<pbx_plugin::Directory>,
}

/// The plugins of every tenant, and the capabilities they are bound to.
pub(crate) struct PluginHost {
    runtime: Arc<PluginRuntime>,
    default_dialplan: Arc<LoadedPlugin>,
    /// The shipped provider policies (destination restrictions, fraud limits).
    shipped_policies: Vec<Arc<LoadedPlugin>>,
    active: RwLock<Arc<Active>>,
    /// Compiled components by world and content hash.
    compiled: Mutex<HashMap<(World, String), Arc<LoadedPlugin>>>,
    storage: Mutex<HashMap<TenantId, Arc<KvStorage>>>,
    logs: Mutex<HashMap<TenantId, Arc<PluginLog>>>,
    fraud: Arc<Fraud>,
    kv_writes: mpsc::Sender<(TenantId, String, Option<Vec<u8>>)>,
}

impl PluginHost {
    /// Loads the shipped plugins and the tenants' plugin storage; call
    /// [`PluginHost::reload`] next.
    pub(crate) async fn new(
        store: &Store,
        config: RuntimeConfig,
        fraud: Arc<Fraud>,
    ) -> anyhow::Result<Arc<PluginHost>> {
        let (runtime, default_dialplan, shipped_policies) =
            tokio::task::spawn_blocking(move || {
                let runtime = PluginRuntime::new(config)?;
                let dialplan = runtime
                    .load(World::Dialplan, pbx_plugin::shipped::DEFAULT_DIALPLAN)
                    .map_err(|e| anyhow::anyhow!("shipped dial plan: {e}"))?;
                let mut policies = Vec::new();
                for (name, wasm) in pbx_plugin::shipped::POLICIES {
                    policies.push(
                        runtime
                            .load(World::Policy, wasm)
                            .map_err(|e| anyhow::anyhow!("shipped policy {name}: {e}"))?,
                    );
                }
                anyhow::Ok((Arc::new(runtime), dialplan, policies))
            })
            .await??;
        let mut storage: HashMap<TenantId, HashMap<String, Vec<u8>>> = HashMap::new();
        for (tenant, key, value) in store.plugin_kv_all().await? {
            storage.entry(tenant).or_default().insert(key, value);
        }
        let (kv_writes, kv_rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_kv(store.clone(), kv_rx));
        let host = Arc::new(PluginHost {
            runtime,
            default_dialplan,
            shipped_policies,
            active: RwLock::new(Arc::new(Active::default())),
            compiled: Mutex::new(HashMap::new()),
            storage: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            fraud,
            kv_writes,
        });
        {
            let mut map = host.storage.lock();
            for (tenant, data) in storage {
                map.insert(
                    tenant,
                    Arc::new(KvStorage::with(tenant, data, host.kv_writes.clone())),
                );
            }
        }
        Ok(host)
    }

    /// Reads what is active from the store and swaps it in. A component that no
    /// longer loads is skipped with an alert; the rest still takes effect.
    pub(crate) async fn reload(self: &Arc<Self>, store: &Store) -> anyhow::Result<()> {
        let directory = store.directory().await?;
        let dialplans = store.active_dialplans().await?;
        let policies = store.list_policies().await?;
        let trunks = store.all_trunks().await?;

        let mut active = Active::default();
        let mut names: HashMap<TenantId, String> = HashMap::new();
        for tenant in &directory.tenants {
            names.insert(tenant.id, tenant.name.clone());
        }
        let mut dirs: HashMap<TenantId, pbx_plugin::Directory> = HashMap::new();
        for ext in &directory.extensions {
            let dir = dirs.remove(&ext.tenant).unwrap_or_default();
            dirs.insert(ext.tenant, dir.with_extension(&ext.number, "", true));
        }
        for trunk in &trunks {
            let dir = dirs.remove(&trunk.tenant).unwrap_or_default();
            dirs.insert(trunk.tenant, dir.with_trunk(&trunk.name));
        }
        for (tenant, name) in &names {
            let mut dir = dirs.remove(tenant).unwrap_or_default();
            for (group, members) in self.storage_for(*tenant).groups() {
                let members: Vec<&str> = members.iter().map(String::as_str).collect();
                dir = dir.with_group(&group, &members);
            }
            active.tenants.insert(
                *tenant,
                Arc::new(TenantView {
                    name: Arc::from(name.as_str()),
                    directory: Arc::new(dir),
                }),
            );
        }
        for (tenant, version) in dialplans {
            match self.compile(store, World::Dialplan, &version.hash).await {
                Ok(plugin) => {
                    active.dialplans.insert(tenant, plugin);
                }
                Err(e) => self.runtime_alert(
                    Some(tenant),
                    format!("dial plan v{} not loaded: {e}", version.version),
                ),
            }
        }
        for policy in policies {
            match self.compile(store, World::Policy, &policy.hash).await {
                Ok(plugin) => match policy.tenant {
                    None => active.provider_policies.push((policy.name, plugin)),
                    Some(t) => active
                        .tenant_policies
                        .entry(t)
                        .or_default()
                        .push((policy.name, plugin)),
                },
                Err(e) => self.runtime_alert(
                    policy.tenant,
                    format!("policy {} not loaded: {e}", policy.name),
                ),
            }
        }
        self.fraud.reload(store, &names).await?;
        tracing::info!(
            dialplans = active.dialplans.len(),
            provider_policies = active.provider_policies.len(),
            "plugins reloaded"
        );
        *self.active.write() = Arc::new(active);
        Ok(())
    }

    async fn compile(
        &self,
        store: &Store,
        world: World,
        hash: &str,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let key = (world, hash.to_string());
        if let Some(p) = self.compiled.lock().get(&key) {
            return Ok(p.clone());
        }
        let bytes = store
            .plugin_blob(hash)
            .await?
            .ok_or_else(|| anyhow::anyhow!("blob {hash} is missing"))?;
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(world, &bytes))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.compiled.lock().insert(key, plugin.clone());
        Ok(plugin)
    }

    fn runtime_alert(&self, tenant: Option<TenantId>, message: String) {
        self.fraud
            .alert(tenant, "critical", "plugin.load_failed", message);
    }

    fn storage_for(&self, tenant: TenantId) -> Arc<KvStorage> {
        self.storage
            .lock()
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(KvStorage::with(
                    tenant,
                    HashMap::new(),
                    self.kv_writes.clone(),
                ))
            })
            .clone()
    }

    fn log_for(&self, tenant: TenantId) -> Arc<PluginLog> {
        self.logs
            .lock()
            .entry(tenant)
            .or_insert_with(|| Arc::new(PluginLog::new(256, 512)))
            .clone()
    }

    fn caps(&self, tenant: TenantId, view: &TenantView, number: Option<&str>) -> TenantCaps {
        TenantCaps {
            tenant: view.name.clone(),
            directory: view.directory.clone(),
            storage: self.storage_for(tenant),
            usage: Arc::new(CallUsage {
                fraud: self.fraud.clone(),
                tenant,
                tenant_name: view.name.clone(),
                number: number.map(str::to_string),
            }),
            alerts: Arc::new(TenantAlerts {
                fraud: self.fraud.clone(),
                tenant,
            }),
            log: self.log_for(tenant),
        }
    }

    /// Runs the dial plan and the policies for one new call.
    pub(crate) fn decide(&self, req: &RouteRequest) -> RouteDecision {
        let active = self.active.read().clone();
        let Some(view) = active.tenants.get(&req.tenant) else {
            return RouteDecision::reject(404, "Not Found");
        };
        let is_extension = view.directory.extension(&req.dialled).is_some();
        let class = self.fraud.classify(&req.dialled, is_extension);
        let caps = self.caps(
            req.tenant,
            view,
            (!is_extension).then_some(req.dialled.as_str()),
        );
        let call = Call {
            call_id: req.call_id.clone(),
            caller: req.caller.clone(),
            caller_extension: req.caller_extension.clone(),
            dialled: req.dialled.clone(),
            destination_class: plugin_class(class),
        };
        let plan = active
            .dialplans
            .get(&req.tenant)
            .unwrap_or(&self.default_dialplan);
        let decision = match self.runtime.route(plan, &caps, &call) {
            Ok(d) => d,
            Err(PluginError::Quarantined) => {
                match self.runtime.route(&self.default_dialplan, &caps, &call) {
                    Ok(d) => d,
                    Err(e) => return self.plan_failed(&caps, &e),
                }
            }
            Err(e) => return self.plan_failed(&caps, &e),
        };
        let who = req
            .caller_extension
            .as_deref()
            .or(req.inbound_trunk.as_deref())
            .unwrap_or(&req.caller);
        // Built-in destination control first: costly classes need an approval.
        let class = match &decision {
            Decision::Trunk(t) => {
                let class = self.fraud.classify_number(&t.number);
                if let Err((status, reason)) = self
                    .fraud
                    .check_destination(req.tenant, who, class, &t.number)
                {
                    return RouteDecision::reject(status, reason);
                }
                class
            }
            _ => class,
        };
        for policy in active.policies_for(&self.shipped_policies, req.tenant) {
            // A failing policy denies with a fixed phrase; its details are in
            // the alert the runtime raised, never in the SIP reason.
            let (reason, phrase) =
                match self.runtime.try_check_call(policy, &caps, &call, &decision) {
                    Ok(Verdict::Allow) => continue,
                    Ok(Verdict::Deny(reason)) => {
                        let phrase = short_reason(&reason);
                        (reason, phrase)
                    }
                    Err(e) => (e.to_string(), pbx_plugin::POLICY_FAILED.to_string()),
                };
            self.fraud.alert(
                Some(req.tenant),
                "warning",
                "policy.deny",
                format!("call {} to {} denied: {reason}", call.caller, call.dialled),
            );
            return RouteDecision::reject(403, phrase);
        }
        let decision = convert(decision, &view.directory);
        if matches!(decision, RouteDecision::Reject { .. }) {
            return decision;
        }
        // The host's limits count only calls that will be placed.
        if let Err((status, reason)) = self.fraud.admit(
            &req.call_id,
            req.tenant,
            &view.name,
            who,
            class,
            &req.dialled,
        ) {
            return RouteDecision::reject(status, reason);
        }
        decision
    }

    /// Carries out what a policy's `call-ended` asked for.
    fn act(&self, tenant: TenantId, action: Action) {
        match action {
            Action::Alert((severity, message)) => {
                self.fraud.alert(
                    Some(tenant),
                    severity_name(severity),
                    "policy.alert",
                    message,
                );
            }
            Action::SuspendExtension((extension, reason)) => {
                tracing::warn!(%tenant, %extension, %reason, "policy suspends an extension");
                self.fraud.suspend_extension(tenant, &extension);
            }
            Action::SuspendTenant(reason) => {
                tracing::warn!(%tenant, %reason, "policy suspends the tenant");
                self.fraud.suspend_tenant(tenant);
            }
        }
    }

    fn plan_failed(&self, caps: &TenantCaps, error: &PluginError) -> RouteDecision {
        caps.alerts.raise(Alert {
            severity: Severity::Critical,
            from_runtime: true,
            message: format!("dial plan failed: {error}"),
        });
        RouteDecision::reject(error.sip_status(), error.reason_phrase())
    }

    /// A call's record was written: releases its usage counters. Returns its
    /// destination class when the call had been routed by plugins (then the
    /// policies are to hear of it through [`PluginHost::ended`]).
    pub(crate) fn release(&self, cdr: &Cdr) -> Option<DestinationClass> {
        let talk = cdr.answered_at_ms.map_or(Duration::ZERO, |a| {
            Duration::from_millis(u64::try_from(cdr.ended_at_ms - a).unwrap_or(0))
        });
        self.fraud
            .release(&cdr.caller_call_id, talk)
            .map(plugin_class)
    }

    /// Tells the policies that a call ended.
    pub(crate) fn ended(&self, cdr: &Cdr, class: DestinationClass) {
        let active = self.active.read().clone();
        let Some(view) = active.tenants.get(&cdr.tenant) else {
            return;
        };
        let caps = self.caps(cdr.tenant, view, None);
        let duration_secs = cdr.answered_at_ms.map_or(0, |a| {
            u32::try_from((cdr.ended_at_ms - a).max(0) / 1000).unwrap_or(u32::MAX)
        });
        let record = pbx_plugin::Cdr {
            call_id: cdr.caller_call_id.clone(),
            caller: cdr.caller.clone(),
            caller_extension: Some(cdr.caller.clone()),
            dialled: cdr.callee.clone(),
            destination_class: class,
            answered: cdr.answered_at_ms.is_some(),
            duration_secs,
            final_status: cdr.sip_code,
        };
        for policy in active.policies_for(&self.shipped_policies, cdr.tenant) {
            for action in self.runtime.call_ended(policy, &caps, &record) {
                self.act(cdr.tenant, action);
            }
        }
    }
}

/// Keeps a deny reason fit for a SIP reason phrase.
fn short_reason(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if clean.is_empty() {
        "Forbidden".into()
    } else {
        clean
    }
}

/// The plugin decision in the SIP core's terms (already validated against the
/// tenant's directory by the runtime).
fn convert(decision: Decision, directory: &pbx_plugin::Directory) -> RouteDecision {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    match decision {
        Decision::Ring(ring) => match ring.strategy {
            RingStrategy::Simultaneous => RouteDecision::Ring(vec![RingStep {
                timeout: secs(
                    ring.targets
                        .iter()
                        .map(|t| t.timeout_secs)
                        .max()
                        .unwrap_or(0),
                ),
                extensions: ring.targets.into_iter().map(|t| t.extension).collect(),
            }]),
            RingStrategy::Sequential => RouteDecision::Ring(
                ring.targets
                    .into_iter()
                    .map(|t| RingStep {
                        extensions: vec![t.extension],
                        timeout: secs(t.timeout_secs),
                    })
                    .collect(),
            ),
        },
        Decision::RingGroup(name) => match directory.group_members(&name) {
            Some(members) => RouteDecision::Ring(vec![RingStep {
                extensions: members.to_vec(),
                timeout: Duration::ZERO,
            }]),
            None => RouteDecision::reject(404, "Not Found"),
        },
        Decision::Trunk(t) => RouteDecision::Trunk {
            trunk: t.trunk,
            number: t.number,
        },
        Decision::Reject(r) => RouteDecision::reject(r.status, short_reason(&r.reason)),
    }
}

/// A tenant's plugin storage: in memory for the call path, written behind to
/// the store.
struct KvStorage {
    tenant: TenantId,
    data: Mutex<(HashMap<String, Vec<u8>>, usize)>,
    writes: mpsc::Sender<(TenantId, String, Option<Vec<u8>>)>,
}

impl KvStorage {
    fn with(
        tenant: TenantId,
        data: HashMap<String, Vec<u8>>,
        writes: mpsc::Sender<(TenantId, String, Option<Vec<u8>>)>,
    ) -> KvStorage {
        let used = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        KvStorage {
            tenant,
            data: Mutex::new((data, used)),
            writes,
        }
    }

    /// Ring groups kept in the tenant's storage: `ring-group:NAME` = member
    /// extensions separated by commas or spaces.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let data = self.data.lock();
        data.0
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("ring-group:")?;
                let members = std::str::from_utf8(v)
                    .ok()?
                    .split([',', ' '])
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                Some((name.to_string(), members))
            })
            .collect()
    }
}

impl Storage for KvStorage {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.data.lock().0.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        if key.len() > pbx_plugin::caps::storage::MAX_KEY_LEN {
            return Err(StorageError::QuotaExceeded);
        }
        let mut data = self.data.lock();
        let old = data.0.get(key).map_or(0, |v| key.len() + v.len());
        let used = data.1 - old + key.len() + value.len();
        if used > STORAGE_QUOTA {
            return Err(StorageError::QuotaExceeded);
        }
        self.writes
            .try_send((self.tenant, key.to_string(), Some(value.to_vec())))
            .map_err(|_| StorageError::Unavailable)?;
        data.0.insert(key.to_string(), value.to_vec());
        data.1 = used;
        Ok(())
    }

    fn delete(&self, key: &str) {
        let mut data = self.data.lock();
        if let Some(v) = data.0.remove(key) {
            data.1 -= key.len() + v.len();
            if self
                .writes
                .try_send((self.tenant, key.to_string(), None))
                .is_err()
            {
                tracing::warn!(tenant = %self.tenant, "plugin storage delete not persisted");
            }
        }
    }
}

async fn write_kv(store: Store, mut rx: mpsc::Receiver<(TenantId, String, Option<Vec<u8>>)>) {
    while let Some((tenant, key, value)) = rx.recv().await {
        if let Err(e) = store.plugin_kv_put(tenant, &key, value.as_deref()).await {
            tracing::warn!(%tenant, error = %e, "plugin storage write failed");
        }
    }
}

/// A tenant's plugin alerts: logged and stored with the host's alerts.
struct TenantAlerts {
    fraud: Arc<Fraud>,
    tenant: TenantId,
}

impl AlertSink for TenantAlerts {
    fn raise(&self, alert: Alert) {
        let event = if alert.from_runtime {
            "plugin.failure"
        } else {
            "plugin.alert"
        };
        self.fraud.alert(
            Some(self.tenant),
            severity_name(alert.severity),
            event,
            alert.message,
        );
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// What the workers are asked to do.
pub(crate) enum Job {
    Route(RouteRequest),
    Ended(Cdr, DestinationClass),
}

/// A pool of threads running plugins, fed through per-tenant queues: a
/// tenant runs on at most half of the workers and queues a bounded number of
/// jobs, so one tenant's slow or flooding plugins never delay another's
/// calls by more than one job's deadline ([`pbx_plugin::pool`]).
pub(crate) struct Workers {
    queue: Arc<FairQueue<TenantId, Job>>,
}

/// Threads that run plugins: at least four, so that a tenant's half of
/// them is still two on a small machine.
pub(crate) fn worker_count() -> usize {
    super::default_shards().max(4)
}

impl Workers {
    /// Starts `n` workers; decisions go to `decisions[shard]`.
    pub(crate) fn start(
        host: Arc<PluginHost>,
        n: usize,
        decisions: Vec<mpsc::Sender<(u64, RouteDecision)>>,
    ) -> Workers {
        let n = n.max(1);
        let queue = Arc::new(FairQueue::new(Shares::for_workers(n)));
        for i in 0..n {
            let queue = queue.clone();
            let host = host.clone();
            let decisions = decisions.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("plugins-{i}"))
                .spawn(move || {
                    while let Some((tenant, job)) = queue.pop() {
                        match job {
                            Job::Route(req) => {
                                let decision = host.decide(&req);
                                if let Some(tx) = decisions.get(req.shard)
                                    && tx.blocking_send((req.call, decision)).is_err()
                                {
                                    return;
                                }
                            }
                            Job::Ended(cdr, class) => host.ended(&cdr, class),
                        }
                        queue.done(&tenant);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a plugin worker");
            }
        }
        Workers { queue }
    }

    /// Queues a job in its tenant's share, or says why not.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Refused> {
        let tenant = match &job {
            Job::Route(req) => req.tenant,
            Job::Ended(cdr, _) => cdr.tenant,
        };
        self.queue.push(tenant, job)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The reason phrase of a call refused because its tenant's share of plugin
/// workers is full (503; other tenants are not affected).
pub(crate) const SHARE_EXHAUSTED: &str = "Plugin Share Exhausted";
