//! Shared state of the API handlers.

use std::path::Path;
use std::sync::Arc;

use store::{AuditRecord, Store, TenantId};

use crate::auth::Principal;
use crate::config::ApiConfig;
use crate::control::Control;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::token::{KeyRing, Oidc};
use crate::{Result, audit};

/// The clock: Unix milliseconds. Tests pass a manual one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// Most keys each rate-limit table holds.
const RATE_TABLE_KEYS: usize = 10_000;

pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) store: Store,
    pub(crate) control: Arc<dyn Control>,
    pub(crate) keys: KeyRing,
    pub(crate) oidc: Option<Oidc>,
    pub(crate) by_address: RateLimiter,
    pub(crate) by_token: RateLimiter,
    pub(crate) metrics: Metrics,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
    clock: Clock,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("listen", &self.inner.config.listen)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Loads (or makes) the signing keys in `data_dir`, and the OIDC keys when
    /// configured. Uses the system clock.
    pub fn new(
        config: ApiConfig,
        data_dir: &Path,
        store: Store,
        control: Arc<dyn Control>,
    ) -> Result<ApiState> {
        let clock = system_clock();
        let keys = KeyRing::load_or_create(data_dir, clock())?;
        let oidc = config.oidc.as_ref().map(Oidc::load).transpose()?;
        Ok(ApiState::build(config, store, control, keys, oidc, clock))
    }

    pub(crate) fn build(
        config: ApiConfig,
        store: Store,
        control: Arc<dyn Control>,
        keys: KeyRing,
        oidc: Option<Oidc>,
        clock: Clock,
    ) -> ApiState {
        let inner = Inner {
            by_address: RateLimiter::new(config.rate_per_address_per_min, RATE_TABLE_KEYS),
            by_token: RateLimiter::new(config.rate_per_token_per_min, RATE_TABLE_KEYS),
            config,
            store,
            control,
            keys,
            oidc,
            metrics: Metrics::default(),
        };
        ApiState {
            inner: Arc::new(inner),
            clock,
        }
    }

    /// Replaces the clock (tests drive time by hand).
    pub fn with_clock(mut self, clock: Clock) -> ApiState {
        self.clock = clock;
        self
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Records what `who` did. `detail` never holds a secret.
    pub(crate) async fn audit(
        &self,
        who: &Principal,
        source: &str,
        action: &str,
        tenant: Option<TenantId>,
        detail: serde_json::Value,
    ) -> Result<()> {
        let record = AuditRecord {
            at_ms: self.now_ms(),
            actor: who.subject.clone(),
            role: who.role.as_str().into(),
            tenant,
            source: source.into(),
            action: action.into(),
            detail: detail.to_string(),
        };
        audit::append(self.store(), &record).await?;
        Ok(())
    }

    /// Records an event with no authenticated actor (failed logins).
    pub(crate) async fn audit_anonymous(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        tenant: Option<TenantId>,
        detail: serde_json::Value,
    ) -> Result<()> {
        let record = AuditRecord {
            at_ms: self.now_ms(),
            actor: actor.into(),
            role: "anonymous".into(),
            tenant,
            source: source.into(),
            action: action.into(),
            detail: detail.to_string(),
        };
        audit::append(self.store(), &record).await?;
        Ok(())
    }
}
