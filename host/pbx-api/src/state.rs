//! Shared state of the API handlers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use store::{AuditRecord, Store, TenantId};

use crate::access::Principal;
use crate::config::ApiConfig;
use crate::control::Control;
use crate::error::{ApiError, ApiResult};
use crate::grant::Grants;
use crate::metrics::Metrics;
use crate::request_limits::RateLimiter;
use crate::token::{KeyRing, Oidc};
use crate::{Error, Result, audit, password};

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
/// Denied requests audited per token (or anonymous source address) and
/// minute.
const DENIALS_AUDITED_PER_MIN: u32 = 30;

pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) store: Store,
    pub(crate) control: Arc<dyn Control>,
    pub(crate) keys: KeyRing,
    /// Makes browser phones' short-lived SIP credentials, as the SIP core
    /// checks them (both derive it from the data directory's secret).
    pub(crate) ephemeral: digest_auth::EphemeralKey,
    pub(crate) oidc: Option<Oidc>,
    pub(crate) by_address: RateLimiter,
    pub(crate) by_token: RateLimiter,
    /// Audit entries of denied requests per token (per source address for
    /// anonymous callers) and minute: past it they are only counted, so no
    /// caller can grow the audit log without bound.
    pub(crate) denials: RateLimiter,
    pub(crate) metrics: Metrics,
    /// The live alert feed's streams and poller.
    pub(crate) alerts: Arc<crate::alert_feed::AlertFeed>,
    /// The scopes each role can use, from the route table.
    pub(crate) grants: Grants,
    /// One permit per argon2 run allowed at once: each takes the argon2
    /// memory cost (19 MiB), so this caps the memory password checks can use
    /// whatever the number of concurrent logins.
    pub(crate) hash_slots: tokio::sync::Semaphore,
    /// The threads argon2 runs on, as many as there are slots: memory an
    /// allocator keeps per thread stays bounded by their number too.
    hash_workers: HashWorkers,
    /// Each tenant's share of the hash slots (half of them, at least one), so
    /// a login flood against one tenant's users, or against unknown names
    /// (the tenant-less share, with provider admins), leaves slots to others.
    hash_shares: parking_lot::Mutex<HashMap<Option<TenantId>, Arc<tokio::sync::Semaphore>>>,
    /// Login anomalies (new networks, failures from many addresses).
    pub(crate) logins: crate::anomaly::LoginWatch,
    /// One plugin upload per tenant at a time (quota check, install, prune).
    plugin_uploads: parking_lot::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

type HashJob = Box<dyn FnOnce(&mut password::Hasher) + Send>;

/// A fixed set of threads running password hashing jobs in turn. They end
/// when the state holding them is dropped.
struct HashWorkers {
    jobs: parking_lot::Mutex<std::sync::mpsc::Sender<HashJob>>,
}

impl HashWorkers {
    fn new(threads: usize) -> HashWorkers {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        for _ in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name("pbx-api-hash".into())
                .spawn(move || {
                    // This worker's argon2 memory, allocated once.
                    let mut hasher = password::Hasher::default();
                    loop {
                        let job = rx.lock().recv();
                        let Ok(job) = job else { break };
                        // A panicking job loses its answer (the caller sees
                        // an internal error), not the worker.
                        let run = std::panic::AssertUnwindSafe(|| job(&mut hasher));
                        let _ = std::panic::catch_unwind(run);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashWorkers {
            jobs: parking_lot::Mutex::new(tx),
        }
    }

    fn run(&self, job: HashJob) {
        let _ = self.jobs.lock().send(job);
    }
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
        let logins =
            crate::anomaly::LoginWatch::open(config.geoip_db.as_deref()).map_err(Error::Config)?;
        let state = ApiState::build(config, store, control, keys, oidc, clock);
        Ok(state.with_logins(logins))
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
            logins: crate::anomaly::LoginWatch::open(None).expect("no database to open"),
            grants: Grants::from_table(&config),
            plugin_uploads: parking_lot::Mutex::new(HashMap::new()),
            hash_slots: tokio::sync::Semaphore::new(config.max_concurrent_password_hashes.max(1)),
            hash_workers: HashWorkers::new(config.max_concurrent_password_hashes.max(1)),
            hash_shares: parking_lot::Mutex::new(HashMap::new()),
            by_address: RateLimiter::new(config.rate_per_address_per_min, RATE_TABLE_KEYS),
            by_token: RateLimiter::new(config.rate_per_token_per_min, RATE_TABLE_KEYS),
            denials: RateLimiter::new(DENIALS_AUDITED_PER_MIN, RATE_TABLE_KEYS),
            ephemeral: digest_auth::EphemeralKey::derive(&store.nonce_key()),
            config,
            store,
            control,
            keys,
            oidc,
            metrics: Metrics::default(),
            alerts: Arc::default(),
        };
        ApiState {
            inner: Arc::new(inner),
            clock,
        }
    }

    /// Sets the login watch (with the GeoIP database); only before the state
    /// is shared.
    fn with_logins(mut self, logins: crate::anomaly::LoginWatch) -> ApiState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.logins = logins;
        }
        self
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

    /// Runs `work` (an argon2 hash or check) on a hashing worker once a slot
    /// of `tenant`'s share and a slot in all are free; a caller that waits
    /// longer than the request timeout gets 503 instead of queueing without
    /// bound.
    async fn with_hash_slot<T: Send + 'static>(
        &self,
        tenant: Option<TenantId>,
        work: impl FnOnce(&mut password::Hasher) -> T + Send + 'static,
    ) -> ApiResult<T> {
        let busy = || {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many password checks at once; try again",
            )
        };
        let wait = std::time::Duration::from_secs(self.config().request_timeout_s.max(1));
        let deadline = tokio::time::Instant::now() + wait;
        let share = {
            let slots = self.config().max_concurrent_password_hashes.max(1);
            self.inner
                .hash_shares
                .lock()
                .entry(tenant)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new((slots / 2).max(1))))
                .clone()
        };
        let Ok(Ok(_share_permit)) = tokio::time::timeout_at(deadline, share.acquire_owned()).await
        else {
            return Err(busy());
        };
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(deadline, self.inner.hash_slots.acquire()).await
        else {
            return Err(busy());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.hash_workers.run(Box::new(move |hasher| {
            let _ = tx.send(work(hasher));
        }));
        let out = rx
            .await
            .map_err(|_| ApiError::internal("a password hashing job failed"));
        drop(permit);
        out
    }

    /// The lock a tenant's plugin uploads take in turn.
    pub(crate) fn plugin_upload_lock(&self, tenant: TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .plugin_uploads
            .lock()
            .entry(tenant)
            .or_default()
            .clone()
    }

    /// argon2id hash of `password` for a user of `tenant`, within the
    /// hash-slot limits.
    pub(crate) async fn hash_password(
        &self,
        tenant: Option<TenantId>,
        password: String,
    ) -> ApiResult<String> {
        self.with_hash_slot(tenant, move |h| h.hash(&password))
            .await?
            .map_err(|e: Error| e.into())
    }

    /// Whether `password` matches `phc` (of a user of `tenant`), within the
    /// hash-slot limits.
    pub(crate) async fn verify_password(
        &self,
        tenant: Option<TenantId>,
        password: String,
        phc: String,
    ) -> ApiResult<bool> {
        self.with_hash_slot(tenant, move |h| h.verify(&password, &phc))
            .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fake::FakeControl;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_cannot_take_every_hash_slot() {
        // One second of patience, so the refused caller is answered quickly.
        let config = ApiConfig {
            request_timeout_s: 1,
            ..ApiConfig::default()
        };
        let store = Store::open_in_memory().await.expect("store");
        let state = ApiState::build(
            config,
            store,
            Arc::new(FakeControl::default()),
            KeyRing::in_memory(0).expect("keys"),
            None,
            system_clock(),
        );
        let (a, b) = (Some(TenantId(1)), Some(TenantId(2)));
        // Tenant A's share (one of the two slots) is held by a job that waits.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .with_hash_slot(a, move |_| {
                        let _ = started_tx.send(());
                        let _ = release_rx.recv();
                    })
                    .await
            })
        };
        started_rx.await.expect("started");
        // B is served at once; A's next check is refused as busy.
        assert_eq!(state.with_hash_slot(b, |_| 7).await.ok(), Some(7));
        let refused = state.with_hash_slot(a, |_| 8).await;
        assert_eq!(refused.err().map(|e| e.status().as_u16()), Some(503));
        release_tx.send(()).expect("release");
        assert!(holder.await.expect("join").is_ok());
        assert_eq!(state.with_hash_slot(a, |_| 9).await.ok(), Some(9));
    }
}
