//! The plugin side of the call path: each new call's routing request runs the
//! tenant's dial plan and then every applicable policy, on worker threads apart
//! from the shard tasks, and the decision goes back to the call's shard.
//!
//! # Design
//! - [`PluginHost`] holds what is active: per tenant the dial plan (the shipped
//!   default when none was installed, or when the tenant's is quarantined), the
//!   shipped policies, provider-wide policies, the provider's policies for one
//!   tenant and then the tenant's own policies (installed by its admins), and
//!   the tenant view each capability is bound to. Each policy reads the
//!   configuration of its owner through `config`: a provider policy the
//!   provider's values (a tenant override wins over the provider-wide value),
//!   a tenant's own policy only that tenant's values. [`PluginHost::reload`]
//!   swaps all of it at once when the store's generation moves; components are
//!   compiled once per content hash and reused across reloads.
//! - [`Workers`] is a small pool of OS threads fed by a bounded queue. A plugin
//!   that runs to its deadline holds one worker for that long and never a shard;
//!   when the queue is full the call gets 503 at once.
//! - The decision itself (its order, the destination checks, any deny wins,
//!   admission) is `pbx_core::decision`'s; [`CallPlugins`] is how it asks
//!   this host's plugins, and the host's fraud controls carry out the events
//!   it returns.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use pbx_core::decision::{
    self, Deciders, DialPlan, NewCall, Plan, PlanError, Policies, PolicyOwner, PolicyVerdict,
    Refusal,
};
use pbx_core::{CallEvent, HostMedia, PromptRef, RouteDecision, RouteRequest, Tone};
use pbx_plugin::pool::{FairQueue, Refused, Shares};
use pbx_plugin::{
    Action, Alert, AlertSink, Call, ConfigMap, Decision, DestinationClass, LayeredConfig,
    LoadedPlugin, PluginError, PluginLog, PluginRuntime, PolicyConfig, RingStrategy, RuntimeConfig,
    TenantCaps, Verdict, World,
};
use store::{Cdr, ConfigScope, Store, TenantId};
use tokio::sync::mpsc;

use super::fraud::{CallUsage, Fraud, plugin_class};
use super::plugin_features::FeatureStore;
use super::plugin_kv::KvStore;

/// Most actions one policy's `call-ended` may ask for; the rest are dropped.
pub(crate) const MAX_ACTIONS_PER_CALL: usize = 4;
/// Longest alert or suspension reason kept from a policy, in bytes.
const MAX_ACTION_TEXT: usize = pbx_plugin::caps::alerts::MAX_ALERT_LEN;
/// Longest extension number a policy may name in a suspension.
const MAX_EXTENSION_LEN: usize = 64;

/// Whose a policy is, which decides the configuration it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Shipped or installed by the provider: reads the provider's values.
    Provider,
    /// Installed by the tenant's admins: reads only the tenant's own values.
    Tenant,
}

/// A policy that runs, with its name and owner.
struct ActivePolicy {
    name: Arc<str>,
    owner: Owner,
    plugin: Arc<LoadedPlugin>,
}

/// Every policy's configuration, by owner.
#[derive(Default)]
struct Configs {
    /// The provider's provider-wide values, by policy name.
    provider: HashMap<String, Arc<ConfigMap>>,
    /// The provider's per-tenant overrides, by policy name and tenant.
    overrides: HashMap<(String, TenantId), Arc<ConfigMap>>,
    /// The tenants' values for their own policies.
    tenant_own: HashMap<(String, TenantId), Arc<ConfigMap>>,
}

impl Configs {
    fn load(entries: Vec<store::ConfigEntry>) -> Configs {
        let mut provider: HashMap<String, ConfigMap> = HashMap::new();
        let mut overrides: HashMap<(String, TenantId), ConfigMap> = HashMap::new();
        let mut tenant_own: HashMap<(String, TenantId), ConfigMap> = HashMap::new();
        for e in entries {
            let map = match e.scope {
                ConfigScope::Provider(None) => provider.entry(e.policy).or_default(),
                ConfigScope::Provider(Some(t)) => overrides.entry((e.policy, t)).or_default(),
                ConfigScope::Tenant(t) => tenant_own.entry((e.policy, t)).or_default(),
            };
            map.insert(e.key, e.value);
        }
        let share = |m: ConfigMap| Arc::new(m);
        Configs {
            provider: provider.into_iter().map(|(k, m)| (k, share(m))).collect(),
            overrides: overrides.into_iter().map(|(k, m)| (k, share(m))).collect(),
            tenant_own: tenant_own.into_iter().map(|(k, m)| (k, share(m))).collect(),
        }
    }

    /// What `policy` reads on a call of `tenant`.
    fn bind(&self, policy: &ActivePolicy, tenant: TenantId) -> Arc<dyn PolicyConfig> {
        let key = (policy.name.to_string(), tenant);
        Arc::new(match policy.owner {
            Owner::Provider => LayeredConfig::new(
                self.provider.get(&*policy.name).cloned(),
                self.overrides.get(&key).cloned(),
            ),
            Owner::Tenant => LayeredConfig::new(self.tenant_own.get(&key).cloned(), None),
        })
    }
}

/// Everything plugins run with, swapped whole on reload.
#[derive(Default)]
struct Active {
    dialplans: HashMap<TenantId, Arc<LoadedPlugin>>,
    provider_policies: Vec<ActivePolicy>,
    /// Per tenant: the provider's policies for that tenant, then its own.
    tenant_policies: HashMap<TenantId, Vec<ActivePolicy>>,
    tenants: HashMap<TenantId, Arc<TenantView>>,
    configs: Configs,
}

impl Active {
    /// Every policy a tenant's calls pass: the shipped ones, the provider's, then
    /// the tenant's own. Any deny wins.
    fn policies_for<'a>(
        &'a self,
        shipped: &'a [ActivePolicy],
        tenant: TenantId,
    ) -> impl Iterator<Item = &'a ActivePolicy> {
        shipped
            .iter()
            .chain(self.provider_policies.iter())
            .chain(self.tenant_policies.get(&tenant).into_iter().flatten())
    }
}

/// One tenant as its plugins see it.
struct TenantView {
    directory: Arc<pbx_plugin::Directory>,
    /// The tenant's clock (its calendar), for call handlers.
    clock: Arc<pbx_plugin::TenantClock>,
}

/// The plugins of every tenant, and the capabilities they are bound to.
pub(crate) struct PluginHost {
    runtime: Arc<PluginRuntime>,
    default_dialplan: Arc<LoadedPlugin>,
    /// The shipped provider policies (destination restrictions, fraud limits).
    shipped_policies: Vec<ActivePolicy>,
    active: RwLock<Arc<Active>>,
    /// Compiled components by world and content hash.
    compiled: Mutex<HashMap<(World, String), Arc<LoadedPlugin>>>,
    storage: Arc<KvStore>,
    /// The extensions' forwarding and do-not-disturb (`pbx:plugin/features`).
    features: Arc<FeatureStore>,
    logs: Mutex<HashMap<TenantId, Arc<PluginLog>>>,
    fraud: Arc<Fraud>,
    /// What each call's handler keeps between its steps.
    handler_states: Mutex<HandlerStates>,
}

/// Most calls of one tenant whose call-handler state the host keeps at once
/// (each at most [`pbx_plugin::handler::MAX_STATE_BYTES`]); beyond it a
/// handler's next step sees an empty state.
const MAX_HANDLER_STATES_PER_TENANT: usize = 10_000;

/// What the host kept of an answered call for its handler's last step.
pub(crate) struct FinalStep(HandlerCall, DestinationClass);

/// Most tags one call's record carries; later ones are dropped.
pub(crate) const MAX_TAGS_PER_CALL: usize = 8;

/// What the host keeps of one call between its handler's steps, until the
/// call's record is written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HandlerCall {
    /// The state the last step returned.
    state: Vec<u8>,
    /// Tags for the call's record.
    tags: Vec<String>,
    /// The caller ID to present on the call's trunk legs (`set-caller-id`).
    caller_id: Option<String>,
    /// Time the handler's steps took so far, against [`CALL_PLUGIN_BUDGET`].
    spent: Duration,
    /// The step the handler last ran.
    step: u32,
    /// A call handler ran the call (not a 0.1 dial plan).
    handler: bool,
}

/// Most time one call's handler steps may take together (each step also has
/// the per-invocation limits): a plan that burns its whole deadline at every
/// step ends the call long before its 8 steps are used up.
pub(crate) const CALL_PLUGIN_BUDGET: Duration = Duration::from_millis(40);

/// Call handlers' per-call data by tenant and Call-ID, with a count per
/// tenant so one tenant's calls cannot take another's room.
#[derive(Default)]
struct HandlerStates {
    by_call: HashMap<(TenantId, String), HandlerCall>,
    per_tenant: HashMap<TenantId, usize>,
}

impl HandlerStates {
    fn get(&self, tenant: TenantId, call_id: &str) -> HandlerCall {
        self.by_call
            .get(&(tenant, call_id.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps `call` for the call; false when the tenant's share is full.
    fn set(&mut self, tenant: TenantId, call_id: &str, call: HandlerCall) -> bool {
        let key = (tenant, call_id.to_string());
        if let Some(slot) = self.by_call.get_mut(&key) {
            *slot = call;
            return true;
        }
        let count = self.per_tenant.entry(tenant).or_default();
        if *count >= MAX_HANDLER_STATES_PER_TENANT {
            return false;
        }
        *count += 1;
        self.by_call.insert(key, call);
        true
    }

    fn remove(&mut self, tenant: TenantId, call_id: &str) -> Option<HandlerCall> {
        let removed = self.by_call.remove(&(tenant, call_id.to_string()));
        if removed.is_some()
            && let Some(count) = self.per_tenant.get_mut(&tenant)
        {
            *count = count.saturating_sub(1);
        }
        removed
    }
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
                    .load(World::CallHandler, pbx_plugin::shipped::DEFAULT_DIALPLAN)
                    .map_err(|e| anyhow::anyhow!("shipped dial plan: {e}"))?;
                let mut policies = Vec::new();
                for (name, wasm) in pbx_plugin::shipped::POLICIES {
                    policies.push(ActivePolicy {
                        name: Arc::from(*name),
                        owner: Owner::Provider,
                        plugin: runtime
                            .load(World::Policy, wasm)
                            .map_err(|e| anyhow::anyhow!("shipped policy {name}: {e}"))?,
                    });
                }
                anyhow::Ok((Arc::new(runtime), dialplan, policies))
            })
            .await??;
        let storage = KvStore::start(store).await?;
        let features = FeatureStore::start(store).await?;
        Ok(Arc::new(PluginHost {
            runtime,
            default_dialplan,
            shipped_policies,
            active: RwLock::new(Arc::new(Active::default())),
            compiled: Mutex::new(HashMap::new()),
            storage,
            features,
            logs: Mutex::new(HashMap::new()),
            fraud,
            handler_states: Mutex::new(HandlerStates::default()),
        }))
    }

    /// Reads what is active from the store and swaps it in. A component that no
    /// longer loads is skipped with an alert; the rest still takes effect.
    pub(crate) async fn reload(self: &Arc<Self>, store: &Store) -> anyhow::Result<()> {
        let directory = store.directory().await?;
        let dialplans = store.active_dialplans().await?;
        let policies = store.list_policies().await?;
        let own_policies = store.all_tenant_policies().await?;
        let trunks = store.all_trunks().await?;
        // Admins' storage changes (ring groups among them) made outside the
        // server, in turn with the plugins' own writes.
        self.storage.resync().await?;
        // Forwarding set by admins, in turn with the call handlers' own.
        self.features.resync().await?;

        let mut active = Active {
            configs: Configs::load(store.all_policy_config().await?),
            ..Active::default()
        };
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
        for tenant in names.keys() {
            let mut dir = dirs.remove(tenant).unwrap_or_default();
            for (group, members) in self.storage_for(*tenant).groups() {
                let members: Vec<&str> = members.iter().map(String::as_str).collect();
                dir = dir.with_group(&group, &members);
            }
            let clock = match store.calendar(*tenant).await {
                Ok(calendar) => pbx_plugin::TenantClock::of(&calendar).unwrap_or_else(|e| {
                    tracing::warn!(%tenant, error = %e, "stored calendar unusable; UTC");
                    pbx_plugin::TenantClock::utc()
                }),
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "calendar not read; UTC");
                    pbx_plugin::TenantClock::utc()
                }
            };
            active.tenants.insert(
                *tenant,
                Arc::new(TenantView {
                    directory: Arc::new(dir),
                    clock: Arc::new(clock),
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
                Ok(plugin) => {
                    let entry = ActivePolicy {
                        name: Arc::from(policy.name.as_str()),
                        owner: Owner::Provider,
                        plugin,
                    };
                    match policy.tenant {
                        None => active.provider_policies.push(entry),
                        Some(t) => active.tenant_policies.entry(t).or_default().push(entry),
                    }
                }
                Err(e) => self.runtime_alert(
                    policy.tenant,
                    format!("policy {} not loaded: {e}", policy.name),
                ),
            }
        }
        // The tenants' own policies run after every provider policy.
        for policy in own_policies {
            match self.compile(store, World::Policy, &policy.hash).await {
                Ok(plugin) => active
                    .tenant_policies
                    .entry(policy.tenant)
                    .or_default()
                    .push(ActivePolicy {
                        name: Arc::from(policy.name.as_str()),
                        owner: Owner::Tenant,
                        plugin,
                    }),
                Err(e) => self.runtime_alert(
                    Some(policy.tenant),
                    format!("tenant policy {} not loaded: {e}", policy.name),
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
        // A tenant's dial plan is a 0.1 dial plan or a 0.2 call handler.
        let world = match world {
            World::Dialplan => pbx_plugin::handler::dial_plan_world(&bytes),
            other => other,
        };
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(world, &bytes))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.compiled.lock().insert(key, plugin.clone());
        Ok(plugin)
    }

    fn runtime_alert(&self, tenant: Option<TenantId>, message: String) {
        self.fraud.alert(
            tenant,
            store::Severity::Critical,
            "plugin.load_failed",
            message,
        );
    }

    /// The extensions sharing a ring group with `extension` (call pickup).
    fn group_mates(&self, tenant: TenantId, extension: &str) -> Vec<String> {
        let mut mates: Vec<String> = Vec::new();
        for (_, members) in self.storage_for(tenant).groups() {
            if members.iter().any(|m| m == extension) {
                for m in members {
                    if m != extension && !mates.contains(&m) {
                        mates.push(m);
                    }
                }
            }
        }
        mates
    }

    fn storage_for(&self, tenant: TenantId) -> Arc<super::plugin_kv::KvStorage> {
        self.storage.tenant(tenant)
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
            tenant,
            directory: view.directory.clone(),
            storage: self.storage_for(tenant),
            usage: Arc::new(CallUsage {
                fraud: self.fraud.clone(),
                tenant,
                number: number.map(str::to_string),
            }),
            alerts: Arc::new(TenantAlerts {
                fraud: self.fraud.clone(),
                tenant,
            }),
            log: self.log_for(tenant),
            config: Arc::new(pbx_plugin::EmptyConfig),
            clock: view.clock.clone(),
            call_info: Arc::new(pbx_plugin::CallInfo::default()),
            features: self.features.tenant(tenant),
        }
    }

    /// Decides one new call ([`pbx_core::decision::decide`]) with the
    /// tenant's plugins and the host's fraud controls, and queues what it
    /// asks to record.
    pub(crate) fn decide(&self, req: &RouteRequest) -> RouteDecision {
        let active = self.active.read().clone();
        let Some(view) = active.tenants.get(&req.tenant) else {
            return Refusal::UnknownTenant.into();
        };
        let is_extension = view.directory.extension(&req.dialled).is_some();
        let mut caps = self.caps(
            req.tenant,
            view,
            (!is_extension).then_some(req.dialled.as_str()),
        );
        caps.call_info = Arc::new(call_info_of(req));
        let plugins = CallPlugins::new(self, &active, req.tenant, view, caps);
        let approvals = self.fraud.approvals();
        let outcome = decision::decide(
            req,
            self.fraud.now(),
            &Deciders {
                dial_plan: &plugins,
                policies: &plugins,
                destinations: self.fraud.destinations(),
                approvals: &approvals,
                admission: self.fraud.admission(),
            },
        );
        self.fraud.carry_out(req.tenant, &outcome.events);
        outcome.into_route()
    }

    /// Carries out what a policy's `call-ended` asked for (already bounded by
    /// [`bounded_actions`]).
    fn act(&self, tenant: TenantId, action: Action) {
        match action {
            Action::Alert((severity, message)) => {
                self.fraud
                    .alert(Some(tenant), severity.into(), "policy.alert", message);
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

    /// The tenant's calls in progress and spend today, with the limits in
    /// force for a tenant whose own are `own`.
    pub(crate) fn usage(
        &self,
        tenant: TenantId,
        own: &store::TenantLimits,
    ) -> pbx_api::TenantUsage {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let limits = self.fraud.limits_for(own);
        pbx_api::TenantUsage {
            concurrent_calls: self.fraud.concurrent(tenant),
            max_concurrent: limits.max_concurrent_tenant,
            spend_today_cents: self.fraud.spend_today(tenant, now_ms),
            daily_cap_cents: limits.daily_cap_cents,
        }
    }

    /// The tenant's plugin log, oldest line first (empty before any of its
    /// plugins wrote).
    pub(crate) fn log_lines(&self, tenant: TenantId) -> Vec<pbx_api::PluginLogLine> {
        let Some(log) = self.logs.lock().get(&tenant).cloned() else {
            return Vec::new();
        };
        log.lines()
            .into_iter()
            .map(|l| pbx_api::PluginLogLine {
                seq: l.seq,
                at_ms: l.at_ms,
                level: match l.level {
                    pbx_plugin::LogLevel::Debug => "debug",
                    pbx_plugin::LogLevel::Info => "info",
                    pbx_plugin::LogLevel::Warn => "warn",
                    pbx_plugin::LogLevel::Error => "error",
                }
                .into(),
                message: l.message,
            })
            .collect()
    }

    /// The plugins quarantined for `tenant`: what each is to the tenant, who
    /// owns it, and why it is quarantined.
    pub(crate) fn quarantines(&self, tenant: TenantId) -> Vec<pbx_api::QuarantineInfo> {
        let active = self.active.read().clone();
        if !active.tenants.contains_key(&tenant) {
            return Vec::new();
        }
        self.runtime
            .quarantines()
            .into_iter()
            .filter(|q| q.tenant == tenant)
            .map(|q| {
                let (plugin, provider_owned) = self.describe(&active, tenant, &q.hash);
                pbx_api::QuarantineInfo {
                    plugin,
                    hash: q.hash.to_string(),
                    provider_owned,
                    reason: q.reason,
                    since_s: q.age.as_secs(),
                    lifts_in_s: q.lifts_in.as_secs(),
                }
            })
            .collect()
    }

    /// Lifts `tenant`'s quarantine of the plugin `hash`; false when there
    /// was none.
    pub(crate) fn lift_quarantine(&self, tenant: TenantId, hash: &str) -> bool {
        let active = self.active.read().clone();
        active.tenants.contains_key(&tenant) && self.runtime.release_quarantine_of(tenant, hash)
    }

    /// What the plugin `hash` is to `tenant`, and whether the provider owns it.
    fn describe(&self, active: &Active, tenant: TenantId, hash: &str) -> (String, bool) {
        if active
            .dialplans
            .get(&tenant)
            .is_some_and(|p| p.hash() == hash)
        {
            return ("dialplan".into(), false);
        }
        active
            .policies_for(&self.shipped_policies, tenant)
            .find(|p| p.plugin.hash() == hash)
            .map_or_else(
                // No longer installed: nobody's decision depends on it.
                || ("replaced".into(), false),
                |p| match p.owner {
                    Owner::Provider => (format!("policy:{}", p.name), true),
                    Owner::Tenant => (format!("tenant-policy:{}", p.name), false),
                },
            )
    }

    /// A call's record was written: releases its usage counters. Returns its
    /// destination class when the call had been routed by plugins (then the
    /// policies are to hear of it through [`PluginHost::ended`]), and what
    /// the host kept for the call's handler when the handler is to hear how
    /// the answered call ended ([`PluginHost::final_step`]) before the
    /// record is stored. The tags the call's handler put on it go into the
    /// record here.
    pub(crate) fn release(&self, cdr: &mut Cdr) -> (Option<DestinationClass>, Option<FinalStep>) {
        let kept = self
            .handler_states
            .lock()
            .remove(cdr.tenant, &cdr.caller_call_id);
        let mut last = None;
        if let Some(kept) = kept {
            // The host's own tags (mailbox full, a limit that refused the
            // call) come first; the handler's follow, within the same bound.
            for tag in &kept.tags {
                if cdr.tags.len() < MAX_TAGS_PER_CALL && !cdr.tags.contains(tag) {
                    cdr.tags.push(tag.clone());
                }
            }
            if kept.handler && cdr.answered_at_ms.is_some() && kept.spent < CALL_PLUGIN_BUDGET {
                last = Some(kept);
            }
        }
        let talk = cdr.answered_at_ms.map_or(Duration::ZERO, |a| {
            Duration::from_millis(u64::try_from(cdr.ended_at_ms - a).unwrap_or(0))
        });
        let class = self
            .fraud
            .release(cdr.tenant, &cdr.caller_call_id, talk)
            .map(plugin_class);
        let last = last.map(|kept| FinalStep(kept, class.unwrap_or(DestinationClass::Internal)));
        (class, last)
    }

    /// The call handler's last step of an answered call: `caller-hung-up`
    /// when the caller ended it, else `dial-ended(answered-and-ended)`. Only
    /// its tags are carried out, into `cdr`.
    pub(crate) fn final_step(&self, cdr: &mut Cdr, FinalStep(kept, class): FinalStep) {
        use pbx_plugin::handler::{Action as Step, DialResult, Event, HandlerCall as Seen};
        let active = self.active.read().clone();
        let Some(view) = active.tenants.get(&cdr.tenant) else {
            return;
        };
        let plan = active
            .dialplans
            .get(&cdr.tenant)
            .unwrap_or(&self.default_dialplan);
        if plan.world() != World::CallHandler {
            return;
        }
        let caps = self.caps(cdr.tenant, view, None);
        let call = Seen {
            call_id: cdr.caller_call_id.clone(),
            caller: cdr.caller.clone(),
            caller_extension: view
                .directory
                .extension(&cdr.caller)
                .map(|_| cdr.caller.clone()),
            dialled: cdr.callee.clone(),
            destination_class: class,
            step: kept.step + 1,
        };
        let event = if cdr.hangup_by == "caller" {
            Event::CallerHungUp
        } else {
            Event::DialEnded(DialResult::AnsweredAndEnded)
        };
        let Ok(step) = self.runtime.handle(plan, &caps, &call, &kept.state, &event) else {
            return;
        };
        for action in step.actions {
            if let Step::Tag(tag) = action
                && cdr.tags.len() < MAX_TAGS_PER_CALL
                && !cdr.tags.contains(&tag)
            {
                cdr.tags.push(tag);
            }
        }
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
            let caps = caps.with_config(active.configs.bind(policy, cdr.tenant));
            let actions = self.runtime.call_ended(&policy.plugin, &caps, &record);
            let asked = actions.len();
            if asked > MAX_ACTIONS_PER_CALL {
                self.fraud.alert(
                    Some(cdr.tenant),
                    store::Severity::Warning,
                    "policy.actions_dropped",
                    format!(
                        "policy {} asked for {asked} actions after one call; \
                         the first {MAX_ACTIONS_PER_CALL} were carried out",
                        policy.name
                    ),
                );
            }
            for action in bounded_actions(actions) {
                self.act(cdr.tenant, action);
            }
        }
    }
}

/// One call's view of the tenant's plugins, as the decision asks them: the
/// dial plan (the shipped default when the tenant's is quarantined) and the
/// policies, provider's first.
struct CallPlugins<'a> {
    host: &'a PluginHost,
    active: &'a Active,
    tenant: TenantId,
    view: &'a TenantView,
    caps: TenantCaps,
    provider: Vec<&'a ActivePolicy>,
    own: Vec<&'a ActivePolicy>,
    /// The call as plugins see it, built once.
    call: OnceCell<Call>,
    /// The plan as policies see it, built once.
    decision: OnceCell<Decision>,
}

impl<'a> CallPlugins<'a> {
    fn new(
        host: &'a PluginHost,
        active: &'a Active,
        tenant: TenantId,
        view: &'a TenantView,
        caps: TenantCaps,
    ) -> CallPlugins<'a> {
        let (provider, own): (Vec<_>, Vec<_>) = active
            .policies_for(&host.shipped_policies, tenant)
            .partition(|p| p.owner == Owner::Provider);
        CallPlugins {
            host,
            active,
            tenant,
            view,
            caps,
            provider,
            own,
            call: OnceCell::new(),
            decision: OnceCell::new(),
        }
    }

    fn call(&self, call: &NewCall<'_>) -> &Call {
        self.call.get_or_init(|| {
            let req = call.request;
            Call {
                call_id: req.call_id.clone(),
                caller: req.caller.clone(),
                caller_extension: req.caller_extension.clone(),
                dialled: req.dialled.clone(),
                destination_class: plugin_class(call.class),
            }
        })
    }

    fn run_plan(&self, plan: &LoadedPlugin, call: &NewCall<'_>) -> Result<Plan, PlanError> {
        if plan.world() == World::CallHandler {
            return self.run_handler(plan, call);
        }
        // A `pbx:plugin@0.1.0` dial plan decides once per call: after a dial
        // attempt the call ends with that attempt's outcome, as it always did.
        if !matches!(
            call.request.event,
            CallEvent::Started | CallEvent::TransferRequested
        ) {
            return Ok(Plan::Finish);
        }
        match self.host.runtime.route(plan, &self.caps, self.call(call)) {
            Ok(decision) => Ok(plan_of(decision)),
            Err(e) => Err(plan_error(&e)),
        }
    }
}

impl CallPlugins<'_> {
    /// One step of a call handler (`pbx:plugin@0.2.0`), with the state its
    /// last step kept for this call.
    fn run_handler(&self, plan: &LoadedPlugin, call: &NewCall<'_>) -> Result<Plan, PlanError> {
        use pbx_plugin::handler::{DialResult, Event, HandlerCall as Seen};
        let req = call.request;
        let mut kept = self
            .host
            .handler_states
            .lock()
            .get(self.tenant, &req.call_id);
        let handler_call = Seen {
            call_id: req.call_id.clone(),
            caller: req.caller.clone(),
            caller_extension: req.caller_extension.clone(),
            dialled: req.dialled.clone(),
            destination_class: plugin_class(call.class),
            step: req.step,
        };
        let event = match &req.event {
            CallEvent::Started => Event::CallStarted,
            // A transfer target is routed like a new call, from a fresh state.
            CallEvent::TransferRequested => {
                kept.state.clear();
                Event::CallStarted
            }
            CallEvent::DialEnded(result) => Event::DialEnded(match result {
                pbx_core::DialResult::Busy => DialResult::Busy,
                pbx_core::DialResult::NoAnswer => DialResult::NoAnswer,
                pbx_core::DialResult::Unavailable => DialResult::Unavailable,
                pbx_core::DialResult::Failed { status } => DialResult::Rejected(*status),
            }),
            CallEvent::PromptFinished => Event::PromptFinished,
            CallEvent::DigitsGathered(digits) => Event::DigitsGathered(digits.clone()),
            CallEvent::RecordingFinished { id } => Event::RecordingFinished(id.clone()),
        };
        if kept.spent >= CALL_PLUGIN_BUDGET {
            return Err(PlanError {
                quarantined: false,
                status: 500,
                reason: "Call Handler Budget Spent".into(),
                detail: format!(
                    "the call's handler steps took {} ms, over the per-call budget of {} ms",
                    kept.spent.as_millis(),
                    CALL_PLUGIN_BUDGET.as_millis()
                ),
            });
        }
        let started = Instant::now();
        let step = self
            .host
            .runtime
            .handle(plan, &self.caps, &handler_call, &kept.state, &event);
        kept.spent += started.elapsed();
        let step = step.map_err(|e| plan_error(&e));
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                self.host
                    .handler_states
                    .lock()
                    .set(self.tenant, &req.call_id, kept);
                return Err(e);
            }
        };
        kept.state = step.state;
        kept.step = req.step;
        kept.handler = true;
        let plan = self.plan_of_step(step.actions, &mut kept);
        // Kept until the call's record is written (its tags go there).
        if !self
            .host
            .handler_states
            .lock()
            .set(self.tenant, &req.call_id, kept)
        {
            tracing::warn!(tenant = %self.tenant, "call handler state not kept: the tenant's share is full");
        }
        Ok(plan)
    }

    /// A handler step's actions (already validated) as a plan. Instant
    /// actions update what the host keeps for the call (tags, caller ID); the
    /// last action decides. `answer` then `hang-up` is a confirmation (the
    /// host answers and ends the call); `answer` last keeps the call up.
    fn plan_of_step(
        &self,
        actions: Vec<pbx_plugin::handler::Action>,
        kept: &mut HandlerCall,
    ) -> Plan {
        use pbx_plugin::handler::{Action as Step, TransferTarget};
        let mut plan = Plan::Finish;
        let mut answered = false;
        for action in actions {
            plan = match action {
                Step::Ring(ring) => plan_of(Decision::Ring(ring)),
                // The group's members, ringing together for the step's timeout.
                Step::RingGroup(group) => match self.view.directory.group_members(&group.name) {
                    Some(members) => Plan::Ring {
                        strategy: decision::RingStrategy::Simultaneous,
                        targets: members
                            .iter()
                            .map(|m| decision::RingTarget {
                                extension: m.clone(),
                                timeout_secs: group.timeout_secs,
                            })
                            .collect(),
                    },
                    None => Plan::RingGroup(group.name),
                },
                Step::DialOut(out) => Plan::Trunk {
                    trunk: out.trunk,
                    number: out.number,
                    timeout_secs: out.timeout_secs,
                    caller_id: kept.caller_id.clone(),
                },
                Step::Reject(r) => plan_of(Decision::Reject(r)),
                Step::Finish => Plan::Finish,
                Step::Answer => {
                    answered = true;
                    Plan::Answer { hang_up: false }
                }
                Step::HangUp if answered => Plan::Answer { hang_up: true },
                Step::HangUp => Plan::Media(HostMedia::HangUp),
                Step::Play(prompts) => Plan::Media(HostMedia::Play(host_prompts(prompts))),
                Step::Gather(g) => Plan::Media(HostMedia::Gather(pbx_core::Gather {
                    prompts: host_prompts(g.prompts),
                    max_digits: g.max_digits,
                    terminator: g.terminator,
                    timeout: Duration::from_millis(u64::from(g.timeout_ms)),
                    inter_digit: Duration::from_millis(u64::from(g.inter_digit_ms)),
                    barge_in: g.barge_in,
                })),
                Step::Record(r) => Plan::Media(HostMedia::Record(pbx_core::Record {
                    mailbox: r.mailbox,
                    max: Duration::from_secs(u64::from(r.max_secs)),
                    beep: r.beep,
                    finish_key: r.finish_key,
                    silence: (r.silence_secs > 0)
                        .then(|| Duration::from_secs(u64::from(r.silence_secs))),
                })),
                Step::Voicemail(mailbox) => Plan::Media(HostMedia::Voicemail { mailbox }),
                Step::VoicemailMenu(mailbox) => Plan::Media(HostMedia::VoicemailMenu { mailbox }),
                Step::Tag(tag) => {
                    if kept.tags.len() < MAX_TAGS_PER_CALL && !kept.tags.contains(&tag) {
                        kept.tags.push(tag);
                    }
                    continue;
                }
                Step::SetCallerId(number) => {
                    kept.caller_id = Some(number);
                    continue;
                }
                // The host carries the transfer out itself: the caller is
                // connected to the target (after the host answered, without
                // a new offer to the caller); the next event is the
                // attempt's `dial-ended`.
                Step::Transfer(TransferTarget::Extension(extension)) => Plan::Ring {
                    strategy: decision::RingStrategy::Simultaneous,
                    targets: vec![decision::RingTarget {
                        extension,
                        timeout_secs: 0,
                    }],
                },
                Step::Transfer(TransferTarget::Number(number)) => {
                    match self.view.directory.trunks().first() {
                        Some(trunk) => Plan::Trunk {
                            trunk: trunk.clone(),
                            number,
                            timeout_secs: 0,
                            caller_id: kept.caller_id.clone(),
                        },
                        None => Plan::Reject {
                            status: 403,
                            reason: "No Outbound Route".into(),
                        },
                    }
                }
            };
        }
        plan
    }
}

impl DialPlan for CallPlugins<'_> {
    fn route(&self, call: &NewCall<'_>) -> Result<Plan, PlanError> {
        let plan = self
            .active
            .dialplans
            .get(&self.tenant)
            .unwrap_or(&self.host.default_dialplan);
        self.run_plan(plan, call)
    }

    fn route_default(&self, call: &NewCall<'_>) -> Result<Plan, PlanError> {
        self.run_plan(&self.host.default_dialplan, call)
    }

    fn is_extension(&self, number: &str) -> bool {
        self.view.directory.extension(number).is_some()
    }

    fn group_members(&self, name: &str) -> Option<Vec<String>> {
        self.view
            .directory
            .group_members(name)
            .map(<[String]>::to_vec)
    }
}

impl Policies for CallPlugins<'_> {
    fn count(&self, owner: PolicyOwner) -> usize {
        match owner {
            PolicyOwner::Provider => self.provider.len(),
            PolicyOwner::Tenant => self.own.len(),
        }
    }

    fn check(
        &self,
        owner: PolicyOwner,
        index: usize,
        call: &NewCall<'_>,
        plan: &Plan,
    ) -> PolicyVerdict {
        let list = match owner {
            PolicyOwner::Provider => &self.provider,
            PolicyOwner::Tenant => &self.own,
        };
        let Some(policy) = list.get(index) else {
            return PolicyVerdict::Allow;
        };
        let caps = self
            .caps
            .with_config(self.active.configs.bind(policy, self.tenant));
        let decision = self.decision.get_or_init(|| decision_of(plan.clone()));
        match self
            .host
            .runtime
            .try_check_call(&policy.plugin, &caps, self.call(call), decision)
        {
            Ok(Verdict::Allow) => PolicyVerdict::Allow,
            Ok(Verdict::Deny(reason)) => PolicyVerdict::Deny(reason),
            Err(e) => PolicyVerdict::Failed {
                detail: e.to_string(),
                phrase: pbx_plugin::POLICY_FAILED.to_string(),
            },
        }
    }
}

/// A dial plan's (or call handler's) failure in the core's terms.
/// A handler's prompts in the host's terms (already validated).
fn host_prompts(prompts: Vec<pbx_plugin::handler::Prompt>) -> Vec<PromptRef> {
    use pbx_plugin::handler::{Prompt, Tone as T};
    prompts
        .into_iter()
        .map(|p| match p {
            Prompt::File(name) => PromptRef::Tenant(name),
            Prompt::Tone(t) => PromptRef::Tone(match t {
                T::Beep => Tone::Beep,
                T::Ringback => Tone::Ringback,
                T::Busy => Tone::Busy,
                T::Error => Tone::Error,
            }),
            Prompt::Digits(d) => PromptRef::Digits(d),
            Prompt::SilenceMs(ms) => PromptRef::Silence(Duration::from_millis(u64::from(ms))),
        })
        .collect()
}

fn plan_error(e: &PluginError) -> PlanError {
    PlanError {
        quarantined: matches!(e, PluginError::Quarantined),
        status: e.sip_status(),
        reason: e.reason_phrase().to_string(),
        detail: e.to_string(),
    }
}

/// What `pbx:plugin/call-info` answers for a call: the calling phone as its
/// INVITE showed it, and the INVITE headers the provider exposes (the shard
/// already kept only those, bounded).
fn call_info_of(req: &RouteRequest) -> pbx_plugin::CallInfo {
    pbx_plugin::CallInfo {
        caller_device: req.caller_device.clone(),
        headers: req.headers.clone(),
    }
}

/// A dial plan's decision in the core's terms (already validated against the
/// tenant's directory by the runtime).
fn plan_of(decision: Decision) -> Plan {
    match decision {
        Decision::Ring(ring) => Plan::Ring {
            strategy: match ring.strategy {
                RingStrategy::Simultaneous => decision::RingStrategy::Simultaneous,
                RingStrategy::Sequential => decision::RingStrategy::Sequential,
            },
            targets: ring
                .targets
                .into_iter()
                .map(|t| decision::RingTarget {
                    extension: t.extension,
                    timeout_secs: t.timeout_secs,
                })
                .collect(),
        },
        Decision::RingGroup(name) => Plan::RingGroup(name),
        Decision::Trunk(t) => Plan::trunk(t.trunk, t.number),
        Decision::Reject(r) => Plan::Reject {
            status: r.status,
            reason: r.reason,
        },
    }
}

/// The plan as the policies see it: the dial plan's decision back.
fn decision_of(plan: Plan) -> Decision {
    match plan {
        Plan::Ring { strategy, targets } => Decision::Ring(pbx_plugin::Ring {
            strategy: match strategy {
                decision::RingStrategy::Simultaneous => RingStrategy::Simultaneous,
                decision::RingStrategy::Sequential => RingStrategy::Sequential,
            },
            targets: targets
                .into_iter()
                .map(|t| pbx_plugin::RingTarget {
                    extension: t.extension,
                    timeout_secs: t.timeout_secs,
                })
                .collect(),
        }),
        Plan::RingGroup(name) => Decision::RingGroup(name),
        Plan::Trunk { trunk, number, .. } => {
            Decision::Trunk(pbx_plugin::TrunkRoute { trunk, number })
        }
        Plan::Reject { status, reason } => Decision::Reject(pbx_plugin::Reject { status, reason }),
        // Never shown to a policy (they place nothing); kept total.
        Plan::Finish | Plan::Answer { .. } | Plan::Media(_) => {
            Decision::Reject(pbx_plugin::Reject {
                status: 480,
                reason: "Temporarily Unavailable".into(),
            })
        }
    }
}

/// The first [`MAX_ACTIONS_PER_CALL`] actions, with texts cut to
/// [`MAX_ACTION_TEXT`] bytes; a suspension naming an over-long extension is
/// dropped (no extension has such a number).
fn bounded_actions(actions: Vec<Action>) -> Vec<Action> {
    let cut = |text: String| pbx_plugin::caps::alerts::truncate(text, MAX_ACTION_TEXT);
    actions
        .into_iter()
        .take(MAX_ACTIONS_PER_CALL)
        .filter_map(|action| match action {
            Action::Alert((severity, message)) => Some(Action::Alert((severity, cut(message)))),
            Action::SuspendExtension((extension, reason)) => (extension.len() <= MAX_EXTENSION_LEN)
                .then(|| Action::SuspendExtension((extension, cut(reason)))),
            Action::SuspendTenant(reason) => Some(Action::SuspendTenant(cut(reason))),
        })
        .collect()
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
        self.fraud
            .alert(Some(self.tenant), alert.severity, event, alert.message);
    }
}

/// What the workers are asked to do.
pub(crate) enum Job {
    Route(RouteRequest),
    Ended(Cdr, DestinationClass),
    /// The handler's last step of an answered call; the record, with its
    /// tags, goes back on the sender.
    Final(Cdr, FinalStep, tokio::sync::oneshot::Sender<Cdr>),
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
        // A call is refused while half its routing time is left, rather than
        // queued behind one that will not be decided in time.
        let queue = Arc::new(FairQueue::new(Shares::for_workers(
            n,
            super::ROUTE_TIMEOUT / 2,
        )));
        for i in 0..n {
            let queue = queue.clone();
            let host = host.clone();
            let decisions = decisions.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("plugins-{i}"))
                .spawn(move || {
                    while let Some((tenant, job)) = queue.pop() {
                        match job {
                            // Its shard has answered the call already: no
                            // plugin runs for nobody (under overload this
                            // keeps the workers on calls still waiting).
                            Job::Route(req)
                                if req.answer_by.is_some_and(|t| Instant::now() >= t) =>
                            {
                                tracing::debug!(
                                    call = req.call,
                                    "routing request expired in the queue"
                                );
                            }
                            Job::Route(req) => {
                                let decision = host.decide(&req);
                                if let Some(tx) = decisions.get(req.shard)
                                    && tx.blocking_send((req.call, decision)).is_err()
                                {
                                    return;
                                }
                            }
                            Job::Ended(cdr, class) => host.ended(&cdr, class),
                            Job::Final(mut cdr, last, reply) => {
                                host.final_step(&mut cdr, last);
                                let _ = reply.send(cdr);
                            }
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
            Job::Ended(cdr, _) | Job::Final(cdr, ..) => cdr.tenant,
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

impl pbx_core::PickupGroups for PluginHost {
    fn mates(&self, tenant: TenantId, extension: &str) -> Vec<String> {
        self.group_mates(tenant, extension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: ConfigScope, policy: &str, key: &str, value: &str) -> store::ConfigEntry {
        store::ConfigEntry {
            scope,
            policy: policy.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn policy(name: &str, owner: Owner) -> ActivePolicy {
        let rt = PluginRuntime::new(RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        })
        .unwrap();
        ActivePolicy {
            name: Arc::from(name),
            owner,
            plugin: rt
                .load(World::Policy, pbx_plugin::shipped::DEFAULT_POLICY)
                .unwrap(),
        }
    }

    #[test]
    fn each_owner_reads_only_its_own_configuration() {
        let (a, b) = (TenantId(1), TenantId(2));
        let configs = Configs::load(vec![
            entry(ConfigScope::Provider(None), "fraud", "limit", "20"),
            entry(ConfigScope::Provider(Some(a)), "fraud", "limit", "5"),
            entry(ConfigScope::Tenant(a), "fraud", "limit", "1000000"),
            entry(ConfigScope::Tenant(a), "mine", "limit", "7"),
        ]);
        let provider = policy("fraud", Owner::Provider);
        assert_eq!(
            configs.bind(&provider, a).get("limit").as_deref(),
            Some("5")
        );
        assert_eq!(
            configs.bind(&provider, b).get("limit").as_deref(),
            Some("20")
        );
        // A tenant's own policy of the same name sees the tenant's values only.
        let own = policy("fraud", Owner::Tenant);
        assert_eq!(
            configs.bind(&own, a).get("limit").as_deref(),
            Some("1000000")
        );
        assert_eq!(configs.bind(&own, b).get("limit"), None);
        let mine = policy("mine", Owner::Tenant);
        assert_eq!(configs.bind(&mine, a).list().len(), 1);
        // The provider's values never include the tenant's own.
        assert_eq!(configs.bind(&provider, a).list().len(), 1);
    }

    #[test]
    fn call_ended_actions_are_bounded_and_cut() {
        let long = "x".repeat(100_000);
        let mut asked = vec![Action::SuspendExtension(("9".repeat(65), "r".into()))];
        asked.extend((0..100).map(|_| Action::Alert((pbx_plugin::Severity::Info, long.clone()))));
        let kept = bounded_actions(asked);
        // The over-long extension is dropped, and only the first few count.
        assert_eq!(kept.len(), MAX_ACTIONS_PER_CALL - 1);
        for action in &kept {
            let Action::Alert((_, message)) = action else {
                panic!("unexpected {action:?}");
            };
            assert_eq!(message.len(), MAX_ACTION_TEXT);
        }
        let kept = bounded_actions(vec![
            Action::SuspendTenant(long.clone()),
            Action::SuspendExtension(("1000".into(), long)),
        ]);
        assert!(matches!(&kept[0], Action::SuspendTenant(r) if r.len() == MAX_ACTION_TEXT));
        assert!(
            matches!(&kept[1], Action::SuspendExtension((e, r)) if e == "1000" && r.len() == MAX_ACTION_TEXT)
        );
    }
}
