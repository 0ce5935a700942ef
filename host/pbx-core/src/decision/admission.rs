//! Admission: a call that will be placed is counted against its tenant's and
//! extension's limits (concurrency, calls per second, calls per class in a
//! window, daily spend) and watched for usage patterns (bursts, odd hours,
//! runs of short calls), which may raise alerts and suspensions. Its counters
//! are released exactly once, when its record is written.
//!
//! The counters sit behind [`Counters`]: in one process `pbx_guard::Usage`,
//! in a cluster a shared store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::TenantId;
use parking_lot::Mutex;
use pbx_guard::{
    AutoSuspend, CallInfo, CallStart, Denial, DestinationClass, PatternAlert, PatternConfig,
    Patterns, Usage,
};

use super::{Event, Now, Refusal};

/// A counted call's hold on the counters: dropping it releases them.
pub type CallSlot = Box<dyn std::any::Any + Send>;

/// The usage counters limits are checked against.
pub trait Counters: Send + Sync {
    /// Checks every limit for a new call and, when all pass, counts it until
    /// the returned slot is dropped.
    fn start_call(&self, call: &CallStart<'_>) -> Result<CallSlot, Denial>;
    /// Calls in progress for the tenant.
    fn concurrent(&self, tenant: TenantId) -> u32;
    /// Calls in progress for one extension.
    fn concurrent_extension(&self, tenant: TenantId, extension: &str) -> u32;
    /// Calls the tenant (or one extension) started within `window` before
    /// `now`, of one class or of any.
    fn calls_in_window(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        class: Option<DestinationClass>,
        window: Duration,
        now: Instant,
    ) -> u32;
    /// Adds a finished call's talk time to the tenant's spend.
    fn charge(
        &self,
        tenant: TenantId,
        class: DestinationClass,
        talk: Duration,
        unix_ms: i64,
    ) -> Result<u64, Denial>;
}

impl Counters for Usage {
    fn start_call(&self, call: &CallStart<'_>) -> Result<CallSlot, Denial> {
        Usage::start_call(self, call).map(|guard| Box::new(guard) as CallSlot)
    }

    fn concurrent(&self, tenant: TenantId) -> u32 {
        Usage::concurrent(self, tenant)
    }

    fn concurrent_extension(&self, tenant: TenantId, extension: &str) -> u32 {
        Usage::concurrent_extension(self, tenant, extension)
    }

    fn calls_in_window(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        class: Option<DestinationClass>,
        window: Duration,
        now: Instant,
    ) -> u32 {
        Usage::calls_in_window(self, tenant, extension, class, window, now)
    }

    fn charge(
        &self,
        tenant: TenantId,
        class: DestinationClass,
        talk: Duration,
        unix_ms: i64,
    ) -> Result<u64, Denial> {
        Usage::charge(self, tenant, class, talk, unix_ms)
    }
}

/// Where `class` stands from cheapest to costliest (the declaration order).
fn cost_rank(class: DestinationClass) -> usize {
    DestinationClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or(usize::MAX)
}

/// A call admitted and counted.
struct Live {
    tenant: TenantId,
    extension: String,
    dialled: String,
    class: DestinationClass,
    _slot: CallSlot,
}

/// A call asking to be admitted.
pub(super) struct Admit<'a> {
    pub call_id: &'a str,
    pub tenant: TenantId,
    /// Who is calling: the extension, the inbound trunk, or the caller.
    pub extension: &'a str,
    pub class: DestinationClass,
    pub dialled: &'a str,
}

/// The host's admission control: counters, pattern detection and the calls
/// admitted until their records are written.
pub struct Admission {
    counters: Arc<dyn Counters>,
    patterns: Mutex<Patterns>,
    /// Admitted calls by tenant and Call-ID (a Call-ID is the caller's
    /// choice: two tenants' calls may share one).
    live: Mutex<HashMap<(TenantId, String), Live>>,
}

impl Admission {
    pub fn new(counters: Arc<dyn Counters>, patterns: PatternConfig) -> Admission {
        Admission {
            counters,
            patterns: Mutex::new(Patterns::new(patterns)),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The counters calls are checked against.
    pub fn counters(&self) -> &Arc<dyn Counters> {
        &self.counters
    }

    /// Counts a call that will be placed, within its limits.
    pub(super) fn admit(
        &self,
        call: &Admit<'_>,
        now: Now,
        events: &mut Vec<Event>,
    ) -> Result<(), Refusal> {
        // A call is counted once, at its first leg; later legs (a forward, a
        // failover, a transfer) are the same call. A later leg to a costlier
        // class is counted again under that class (its limits checked, its
        // spend charged at that class), so a forward or a transfer abroad
        // meets the limits a direct call abroad would.
        let key = (call.tenant, call.call_id.to_string());
        let earlier = {
            let mut live = self.live.lock();
            match live.get(&key) {
                Some(l) if cost_rank(call.class) <= cost_rank(l.class) => return Ok(()),
                Some(_) => live.remove(&key),
                None => None,
            }
        };
        // The earlier legs' hold is let go first, so the call is not counted
        // twice against the concurrency limits.
        let earlier = earlier.map(|l| (l.tenant, l.extension, l.dialled, l.class));
        let started = self
            .counters
            .start_call(&CallStart {
                tenant: call.tenant,
                extension: call.extension,
                class: call.class,
                now: now.at,
                unix_ms: now.unix_ms,
            })
            .map_err(|denial| {
                events.push(Event::alert(
                    pbx_guard::Severity::Warning,
                    "fraud.limit",
                    format!(
                        "call from {} to {} refused: {denial}",
                        call.extension, call.dialled
                    ),
                ));
                Refusal::LimitReached(denial)
            });
        let slot = match started {
            Ok(slot) => slot,
            Err(refusal) => {
                // The call keeps counting as what its earlier legs were (the
                // room it just let go of is there to take back).
                if let Some((tenant, extension, dialled, class)) = earlier
                    && let Ok(slot) = self.counters.start_call(&CallStart {
                        tenant,
                        extension: &extension,
                        class,
                        now: now.at,
                        unix_ms: now.unix_ms,
                    })
                {
                    self.live.lock().insert(
                        key,
                        Live {
                            tenant,
                            extension,
                            dialled,
                            class,
                            _slot: slot,
                        },
                    );
                }
                return Err(refusal);
            }
        };
        let concurrent = self.counters.concurrent(call.tenant);
        let fired = self.patterns.lock().call_started(&CallInfo {
            tenant: call.tenant,
            extension: call.extension,
            class: call.class,
            concurrent,
            now: now.at,
            unix_ms: now.unix_ms,
        });
        for alert in fired {
            pattern_events(alert, events);
        }
        self.live.lock().insert(
            key,
            Live {
                tenant: call.tenant,
                extension: call.extension.to_string(),
                dialled: call.dialled.to_string(),
                class: call.class,
                _slot: slot,
            },
        );
        Ok(())
    }

    /// The record of call `call_id` was written after `talk` of talk time:
    /// releases its counters, charges its spend and runs the end-of-call
    /// patterns. Returns its class and what the patterns raised, when it had
    /// been admitted (once only).
    pub fn release(
        &self,
        tenant: TenantId,
        call_id: &str,
        talk: Duration,
        now: Now,
    ) -> Option<(DestinationClass, Vec<Event>)> {
        let live = self.live.lock().remove(&(tenant, call_id.to_string()))?;
        if let Err(e) = self
            .counters
            .charge(live.tenant, live.class, talk, now.unix_ms)
        {
            tracing::debug!(error = %e, "spend not charged");
        }
        let mut events = Vec::new();
        let fired = self.patterns.lock().call_ended(
            live.tenant,
            &live.extension,
            &live.dialled,
            talk,
            now.at,
        );
        if let Some(alert) = fired {
            pattern_events(alert, &mut events);
        }
        Some((live.class, events))
    }

    /// Calls admitted and not yet released.
    pub fn live_calls(&self) -> usize {
        self.live.lock().len()
    }
}

/// A pattern alert, and the suspension it asks for.
fn pattern_events(alert: PatternAlert, events: &mut Vec<Event>) {
    let suspend = match (alert.action, alert.extension) {
        (Some(AutoSuspend::Extension), Some(ext)) => Some(Event::SuspendExtension(ext)),
        (Some(AutoSuspend::Tenant), _) => Some(Event::SuspendTenant),
        _ => None,
    };
    events.push(Event::alert(alert.severity, alert.event, alert.message));
    events.extend(suspend);
}
