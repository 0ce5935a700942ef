//! The host's own call-level fraud controls, applied to every call a dial plan
//! routes, before and independently of any policy plugin:
//! destination classes (a well-kept numbering library plus configured
//! prefixes), international/premium-rate/high-risk calls denied until a provider
//! admin approves them (the denial files the approval request), per-tenant and
//! per-extension concurrency, calls per second and a daily spend cap, and usage
//! pattern alerts that can suspend an extension or a tenant.
//!
//! Destination approval has one answer, `pbx_core::decision::Approvals`:
//! the decision enforces it for every call out a trunk, and the shipped
//! `restrictions` policy asks the same table through the
//! `usage.class-approved` capability ([`CallUsage`]). The limits' defaults and
//! which limit applies where are documented in `pbx_model::limits`.
//!
//! # Design
//! The decisions are `pbx_core::decision`'s (classification, approvals,
//! admission, patterns; sans-IO, on `pbx_guard`'s counters). This module holds
//! one instance of each for the host, loads the limits and approvals from the
//! store, gives the decision the time, and hands everything the decision asks
//! to record (alerts, suspensions, approval requests) to one background task,
//! never blocking the plugin workers on it. That task's queue is a [`FairQueue`] with a share per
//! tenant ([`TENANT_ACTIONS`]) and one for the provider's own events: a tenant
//! whose share is full loses its own next alert (counted and logged), never
//! another tenant's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use pbx_core::decision::{Admission, Approvals, Destinations, Event, Now};
use pbx_guard::{
    ClassifierConfig, DestinationClass as Class, Limits, PatternConfig, Usage, UsageConfig,
};
use pbx_plugin::DestinationClass;
use store::{
    Alert, ApprovalStatus, ApprovalTarget, Severity, Store, TenantId, TenantLimits, TenantStatus,
};

use super::fair::FairQueue;
use super::unix_ms;
use super::webhook::Webhook;

/// Work for the database, queued by the call path.
enum Action {
    Alert(Alert),
    SuspendExtension(TenantId, String),
    SuspendTenant(TenantId),
    RequestApproval(TenantId, ApprovalTarget, String),
}

/// Settings of the host's fraud controls.
#[derive(Debug, Clone)]
pub struct FraudConfig {
    pub classifier: ClassifierConfig,
    pub usage: UsageConfig,
    pub patterns: PatternConfig,
    /// Where alerts are pushed, signed (none: stored and logged only).
    pub webhook: Option<Webhook>,
    /// Count per-tenant limits in a Redis shared by the cluster's nodes
    /// (none: in this process).
    pub shared_counters: Option<SharedCountersConfig>,
}

/// `[cluster]`: the shared counters' Redis and this node's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCountersConfig {
    pub url: String,
    pub node: String,
}

impl Default for FraudConfig {
    /// `pbx_guard`'s defaults, except that approval (not a zero quota) is what
    /// gates premium-rate and high-risk destinations (once approved, an
    /// extension may call 10 premium-rate or 5 high-risk numbers an hour), and
    /// that up to 200,000 extensions per tenant are tracked.
    fn default() -> Self {
        // A host serves tenants with tens of thousands of extensions; these bound
        // memory, they must not refuse calls of a large tenant.
        let mut usage = UsageConfig {
            max_extensions_per_tenant: 200_000,
            max_tenants: 100_000,
            ..UsageConfig::default()
        };
        usage.defaults.per_class_in_window = vec![
            (Class::International, 20),
            (Class::PremiumRate, 10),
            (Class::HighRisk, 5),
        ];
        FraudConfig {
            classifier: ClassifierConfig::default(),
            usage,
            patterns: PatternConfig::default(),
            webhook: None,
            shared_counters: None,
        }
    }
}

/// The host's call-level fraud controls.
pub(crate) struct Fraud {
    destinations: Destinations,
    usage: Arc<Usage>,
    default_limits: Limits,
    admission: Admission,
    approvals: RwLock<Arc<Approvals>>,
    names: RwLock<HashMap<TenantId, String>>,
    actions: Arc<FairQueue<Option<TenantId>, Action>>,
    /// Actions refused because their owner's share was full.
    dropped: std::sync::atomic::AtomicU64,
    webhook: Option<Arc<FairQueue<Option<TenantId>, pbx_guard::WebhookAlert>>>,
}

/// Database actions (alerts, suspensions, approval requests) one tenant, or
/// the provider's own events, may have waiting.
pub(crate) const TENANT_ACTIONS: usize = 64;
/// Actions of one owner stored per round of the background task.
const ACTIONS_PER_ROUND: usize = 8;

impl Fraud {
    pub(crate) fn new(store: &Store, config: &FraudConfig) -> anyhow::Result<Fraud> {
        let actions = Arc::new(FairQueue::new(TENANT_ACTIONS));
        tokio::spawn(run_actions(store.clone(), actions.clone()));
        let webhook = config.webhook.clone().map(|hook| {
            let queue = Arc::new(FairQueue::new(TENANT_ACTIONS));
            tokio::spawn(run_webhook(hook, queue.clone()));
            queue
        });
        let usage = Arc::new(Usage::new(config.usage.clone()));
        let counters: Arc<dyn pbx_core::decision::Counters> = match &config.shared_counters {
            Some(shared) => super::shared_counters::SharedCounters::start(
                &shared.url,
                &shared.node,
                usage.clone(),
            )
            .map_err(|e| anyhow::anyhow!("cluster counters at {}: {e}", shared.url))?,
            None => usage.clone(),
        };
        Ok(Fraud {
            destinations: Destinations::new(&config.classifier)
                .map_err(|e| anyhow::anyhow!("fraud classifier: {e}"))?,
            admission: Admission::new(counters, config.patterns.clone()),
            usage,
            default_limits: config.usage.defaults.clone(),
            approvals: RwLock::new(Arc::new(Approvals::default())),
            names: RwLock::new(HashMap::new()),
            actions,
            dropped: std::sync::atomic::AtomicU64::new(0),
            webhook,
        })
    }

    /// Re-reads every tenant's limits and granted approvals.
    pub(crate) async fn reload(
        &self,
        store: &Store,
        tenants: &HashMap<TenantId, String>,
    ) -> anyhow::Result<()> {
        let own: HashMap<TenantId, TenantLimits> =
            store.all_tenant_limits().await?.into_iter().collect();
        for (tenant, name) in tenants {
            let limits = match own.get(tenant) {
                Some(l) => self.default_limits.clone().overridden_by(l),
                None => self.default_limits.clone(),
            };
            if let Err(e) = self.usage.set_limits(*tenant, limits) {
                tracing::warn!(tenant = %name, error = %e, "limits not applied");
            }
        }
        let mut approvals = Approvals::default();
        for &tenant in tenants.keys() {
            for a in store.list_approvals(tenant).await? {
                if a.status != ApprovalStatus::Granted {
                    continue;
                }
                match a.target {
                    // A class name no class has approves nothing.
                    ApprovalTarget::Class(c) => {
                        if let Some(class) = Class::parse(&c) {
                            approvals.grant_class(tenant, class);
                        }
                    }
                    ApprovalTarget::Prefix(p) => approvals.grant_prefix(tenant, p),
                }
            }
        }
        *self.approvals.write() = Arc::new(approvals);
        *self.names.write() = tenants.clone();
        Ok(())
    }

    /// The time, for a decision.
    pub(crate) fn now(&self) -> Now {
        Now {
            at: Instant::now(),
            unix_ms: unix_ms(std::time::SystemTime::now()),
        }
    }

    pub(crate) fn destinations(&self) -> &Destinations {
        &self.destinations
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The granted approvals, as of the last reload.
    pub(crate) fn approvals(&self) -> Arc<Approvals> {
        self.approvals.read().clone()
    }

    /// Whether the tenant may call `class` (and, for a number, its prefix).
    pub(crate) fn approved(&self, tenant: TenantId, class: Class, number: Option<&str>) -> bool {
        self.approvals().approved(tenant, class, number)
    }

    /// Records and carries out what a decision asked for, in order.
    pub(crate) fn carry_out(&self, tenant: TenantId, events: &[Event]) {
        for event in events {
            match event {
                Event::Alert {
                    severity,
                    event,
                    message,
                } => self.alert(Some(tenant), *severity, event, message.clone()),
                Event::RequestApproval { class, number } => {
                    self.queue(Action::RequestApproval(
                        tenant,
                        ApprovalTarget::Class(class.as_str().to_string()),
                        number.clone(),
                    ));
                }
                Event::SuspendExtension(extension) => self.suspend_extension(tenant, extension),
                Event::SuspendTenant => self.suspend_tenant(tenant),
            }
        }
    }

    /// A call's record was written: releases its counters, charges its talk
    /// time, runs the end-of-call patterns. Returns its class when it had been
    /// admitted.
    pub(crate) fn release(&self, tenant: TenantId, call_id: &str, talk: Duration) -> Option<Class> {
        let (class, events) = self.admission.release(tenant, call_id, talk, self.now())?;
        self.carry_out(tenant, &events);
        Some(class)
    }

    pub(crate) fn suspend_extension(&self, tenant: TenantId, extension: &str) {
        self.alert(
            Some(tenant),
            Severity::Critical,
            "fraud.suspend_extension",
            format!("extension {extension} suspended"),
        );
        self.queue(Action::SuspendExtension(tenant, extension.to_string()));
    }

    pub(crate) fn suspend_tenant(&self, tenant: TenantId) {
        self.alert(
            Some(tenant),
            Severity::Critical,
            "fraud.suspend_tenant",
            "tenant suspended".into(),
        );
        self.queue(Action::SuspendTenant(tenant));
    }

    /// Logs an alert with its stable event name and stores it.
    pub(crate) fn alert(
        &self,
        tenant: Option<TenantId>,
        severity: Severity,
        event: &'static str,
        message: String,
    ) {
        tracing::warn!(event, tenant = ?tenant.map(|t| t.0), severity = severity.as_str(), message = %message, "alert");
        let stored = Alert {
            tenant,
            severity,
            event: event.to_string(),
            message,
            at_ms: unix_ms(std::time::SystemTime::now()),
        };
        let pushed = self.webhook.as_ref().map(|_| {
            let name = tenant.and_then(|t| self.names.read().get(&t).cloned());
            pbx_guard::WebhookAlert::new(&stored, name)
        });
        // An alert over the tenant's share is neither stored nor pushed.
        if !self.queue(Action::Alert(stored)) {
            return;
        }
        if let (Some(hook), Some(alert)) = (&self.webhook, pushed)
            && hook.push(tenant, alert).is_err()
        {
            tracing::warn!(tenant = ?tenant.map(|t| t.0), "this tenant's share of the webhook queue is full; an alert was not pushed");
        }
    }

    /// Queues a database action in its owner's share; false when the share
    /// was full and the action was dropped.
    fn queue(&self, action: Action) -> bool {
        let owner = match &action {
            Action::Alert(a) => a.tenant,
            Action::SuspendExtension(t, _)
            | Action::SuspendTenant(t)
            | Action::RequestApproval(t, _, _) => Some(*t),
        };
        let queued = self.actions.push(owner, action).is_ok();
        if !queued {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            tracing::warn!(
                tenant = ?owner.map(|t| t.0),
                dropped,
                "this tenant's share of the fraud action queue is full; its action was dropped"
            );
        }
        queued
    }

    pub(crate) fn concurrent(&self, tenant: TenantId) -> u32 {
        self.usage.concurrent(tenant)
    }

    /// What the tenant spent today (UTC), cents.
    pub(crate) fn spend_today(&self, tenant: TenantId, unix_ms: i64) -> u64 {
        self.usage.spend_today(tenant, unix_ms)
    }

    /// The limits in force for a tenant whose own are `own`.
    pub(crate) fn limits_for(&self, own: &store::TenantLimits) -> Limits {
        self.default_limits.clone().overridden_by(own)
    }

    pub(crate) fn concurrent_extension(&self, tenant: TenantId, extension: &str) -> u32 {
        self.usage.concurrent_extension(tenant, extension)
    }

    /// Calls the tenant (or one extension) started within `window`, of one
    /// class or of any.
    pub(crate) fn calls_in_window(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        class: Option<Class>,
        window: Duration,
    ) -> u32 {
        self.usage
            .calls_in_window(tenant, extension, class, window, Instant::now())
    }
}

async fn run_actions(store: Store, queue: Arc<FairQueue<Option<TenantId>, Action>>) {
    loop {
        let round = queue.take(ACTIONS_PER_ROUND, 256);
        if round.is_empty() {
            // Everything is stored; once the host is gone, so is this task.
            if Arc::strong_count(&queue) == 1 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), queue.ready()).await;
            continue;
        }
        for (_, action) in round {
            store_action(&store, action).await;
        }
    }
}

async fn store_action(store: &Store, action: Action) {
    let result = match action {
        Action::Alert(alert) => store.insert_alert(&alert).await.map(|_| ()),
        Action::SuspendExtension(tenant, ext) => {
            store.set_extension_enabled(tenant, &ext, false).await
        }
        Action::SuspendTenant(tenant) => {
            store
                .set_tenant_status(tenant, TenantStatus::Suspended)
                .await
        }
        Action::RequestApproval(tenant, target, sample) => store
            .request_approval(
                tenant,
                &target,
                Some(&sample),
                unix_ms(std::time::SystemTime::now()),
            )
            .await
            .map(|_| ()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "fraud action not stored");
    }
}

async fn run_webhook(
    hook: Webhook,
    queue: Arc<FairQueue<Option<TenantId>, pbx_guard::WebhookAlert>>,
) {
    loop {
        let round = queue.take(ACTIONS_PER_ROUND, 64);
        if round.is_empty() {
            if Arc::strong_count(&queue) == 1 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), queue.ready()).await;
            continue;
        }
        for (_, alert) in round {
            match hook.deliver(&alert).await {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => {
                    tracing::warn!(status, event = %alert.event, "webhook refused an alert");
                }
                Err(e) => {
                    tracing::warn!(error = %e, event = %alert.event, "webhook delivery failed")
                }
            }
        }
    }
}

/// The plugin-facing class of a host class.
pub(crate) fn plugin_class(class: Class) -> DestinationClass {
    match class {
        Class::Emergency => DestinationClass::Emergency,
        Class::Internal => DestinationClass::Internal,
        Class::National => DestinationClass::National,
        Class::Mobile => DestinationClass::Mobile,
        Class::International | Class::HighRisk => DestinationClass::International,
        Class::PremiumRate => DestinationClass::Premium,
    }
}

/// The host class a plugin asks about.
fn host_class(class: DestinationClass) -> Option<Class> {
    Some(match class {
        DestinationClass::Emergency => Class::Emergency,
        DestinationClass::Internal => Class::Internal,
        DestinationClass::National => Class::National,
        DestinationClass::Mobile => Class::Mobile,
        DestinationClass::International => Class::International,
        DestinationClass::Premium => Class::PremiumRate,
        DestinationClass::Unknown => return None,
    })
}

/// One call's view of the counters, as the `usage` capability shows them.
pub(crate) struct CallUsage {
    pub(crate) fraud: Arc<Fraud>,
    pub(crate) tenant: TenantId,
    /// The number being called, for prefix approvals.
    pub(crate) number: Option<String>,
}

impl pbx_plugin::Usage for CallUsage {
    fn concurrent_calls(&self) -> u32 {
        self.fraud.concurrent(self.tenant)
    }

    fn concurrent_calls_by_extension(&self, extension: &str) -> u32 {
        self.fraud.concurrent_extension(self.tenant, extension)
    }

    fn calls_in_window(
        &self,
        window: Duration,
        extension: Option<&str>,
        class: Option<DestinationClass>,
    ) -> u32 {
        // Plugins see high-risk numbers as international: count both.
        if class == Some(DestinationClass::International) {
            return [Class::International, Class::HighRisk]
                .into_iter()
                .map(|c| {
                    self.fraud
                        .calls_in_window(self.tenant, extension, Some(c), window)
                })
                .fold(0u32, u32::saturating_add);
        }
        // `unknown` is no host class: nothing is counted under it.
        let class = match class {
            Some(c) => match host_class(c) {
                Some(c) => Some(c),
                None => return 0,
            },
            None => None,
        };
        self.fraud
            .calls_in_window(self.tenant, extension, class, window)
    }

    fn class_approved(&self, class: DestinationClass) -> bool {
        host_class(class)
            .is_some_and(|c| self.fraud.approved(self.tenant, c, self.number.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_tenants_alert_flood_leaves_the_others_alone() {
        let store = Store::open_in_memory().await.unwrap();
        let a = store.add_tenant("a", "a.example").await.unwrap().id;
        let b = store.add_tenant("b", "b.example").await.unwrap().id;
        let fraud = Fraud::new(&store, &FraudConfig::default()).unwrap();
        // On this single-threaded runtime the storing task cannot run until
        // the test yields: the whole flood meets a's share at once.
        for i in 0..1000 {
            fraud.alert(
                Some(a),
                Severity::Warning,
                "plugin.alert",
                format!("flood {i}"),
            );
        }
        fraud.alert(
            Some(b),
            Severity::Critical,
            "plugin.alert",
            "b's own".into(),
        );
        fraud.suspend_extension(b, "1000");
        let mut stored_b = Vec::new();
        for _ in 0..200 {
            stored_b = store.list_alerts(b, 100).await.unwrap();
            if stored_b.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            stored_b.len(),
            2,
            "b's alert and suspension notice are stored"
        );
        // a's share is stored too, in turns with b's; the rest was dropped.
        let mut stored_a = 0;
        for _ in 0..200 {
            stored_a = store.list_alerts(a, 2000).await.unwrap().len();
            if stored_a >= TENANT_ACTIONS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stored_a, TENANT_ACTIONS);
        assert_eq!(
            fraud.dropped.load(std::sync::atomic::Ordering::Relaxed),
            1000 - TENANT_ACTIONS as u64
        );
    }
}
