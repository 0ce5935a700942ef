//! The tenants' extensions' forwarding and do-not-disturb as call handlers see
//! them (`pbx:plugin/features`): read from memory on the call path, written
//! through to the database before a plugin's change is acknowledged.
//!
//! # Design
//! - Each tenant's settings (only the extensions that set something) are kept
//!   in memory. Only the writer changes them, and only after the database
//!   committed, so memory never holds a change the disk does not.
//! - A plugin's `set-forwarding` (already checked by the capability, and
//!   checked again by the store) queues one entry in the tenant's share of a
//!   [`FairQueue`] ([`TENANT_SHARE`] entries) and waits for the commit, at
//!   most until the invocation's wall-clock cap, as plugin storage writes do
//!   (`plugin_kv.rs`). A full share is a tenant-local `unavailable`.
//! - The writer (its own thread and runtime) commits one entry at a time
//!   (these are feature codes, not a stream), answers the plugin, then appends
//!   the change to the audit log (actor `call-handler`). The commit moves the
//!   provisioning generation like an admin's change.
//! - Admins' changes (API, CLI) go straight to the database and move the
//!   generation; the reload then asks the writer to re-read every tenant's
//!   settings ([`FeatureStore::resync`]), in turn with the plugins' writes.
//! - Memory is bounded by the tenants' extensions: the store refuses settings
//!   of an extension that does not exist, and deleting one deletes its row.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use pbx_plugin::{Features, FeaturesError};
use store::{Forwarding, Store, TenantId};
use tokio::sync::{mpsc, oneshot};

use super::fair::FairQueue;

/// Changes one tenant may have waiting for the writer.
pub(crate) const TENANT_SHARE: usize = 4;
/// Changes committed per round (one transaction each).
const MAX_ROUND: usize = 16;

/// One change waiting for the writer.
struct Pending {
    extension: String,
    settings: Forwarding,
    reply: std_mpsc::SyncSender<Result<(), FeaturesError>>,
}

/// Every tenant's forwarding settings and the writer behind them.
pub(crate) struct FeatureStore {
    tenants: Mutex<HashMap<TenantId, Arc<TenantFeatures>>>,
    queue: Arc<FairQueue<TenantId, Pending>>,
    resync: mpsc::Sender<oneshot::Sender<()>>,
}

impl FeatureStore {
    /// Loads every tenant's settings and starts the writer.
    pub(crate) async fn start(store: &Store) -> anyhow::Result<Arc<FeatureStore>> {
        let (resync, resync_rx) = mpsc::channel(4);
        let features = Arc::new(FeatureStore {
            tenants: Mutex::new(HashMap::new()),
            queue: Arc::new(FairQueue::new(TENANT_SHARE)),
            resync,
        });
        features.replace_all(store).await?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (store, weak) = (store.clone(), Arc::downgrade(&features));
        std::thread::Builder::new()
            .name("plugin-features-writer".into())
            .spawn(move || runtime.block_on(run_writer(store, weak, resync_rx)))?;
        Ok(features)
    }

    /// The tenant's settings (none set when it has none yet).
    pub(crate) fn tenant(&self, tenant: TenantId) -> Arc<TenantFeatures> {
        self.tenants
            .lock()
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(TenantFeatures {
                    tenant,
                    settings: Mutex::new(HashMap::new()),
                    queue: self.queue.clone(),
                })
            })
            .clone()
    }

    /// Re-reads every tenant's settings from the database, after every change
    /// queued before this call (admins' changes made outside the server).
    pub(crate) async fn resync(&self) -> anyhow::Result<()> {
        let (done, wait) = oneshot::channel();
        self.resync
            .send(done)
            .await
            .map_err(|_| anyhow::anyhow!("the forwarding writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the forwarding writer stopped"))
    }

    async fn replace_all(&self, store: &Store) -> anyhow::Result<()> {
        let mut loaded: HashMap<TenantId, HashMap<String, Forwarding>> = HashMap::new();
        for (tenant, extension, settings) in store.all_forwarding().await? {
            loaded
                .entry(tenant)
                .or_default()
                .insert(extension, settings);
        }
        let known: Vec<TenantId> = self.tenants.lock().keys().copied().collect();
        for tenant in known {
            loaded.entry(tenant).or_default();
        }
        for (tenant, map) in loaded {
            *self.tenant(tenant).settings.lock() = map;
        }
        Ok(())
    }
}

/// One tenant's extensions' settings.
pub(crate) struct TenantFeatures {
    tenant: TenantId,
    settings: Mutex<HashMap<String, Forwarding>>,
    queue: Arc<FairQueue<TenantId, Pending>>,
}

impl Features for TenantFeatures {
    fn forwarding(&self, extension: &str) -> Forwarding {
        self.settings
            .lock()
            .get(extension)
            .cloned()
            .unwrap_or_default()
    }

    fn set_forwarding(
        &self,
        extension: &str,
        settings: &Forwarding,
        until: Instant,
    ) -> Result<(), FeaturesError> {
        let (reply, done) = std_mpsc::sync_channel(1);
        let pending = Pending {
            extension: extension.to_string(),
            settings: settings.clone(),
            reply,
        };
        if self.queue.push(self.tenant, pending).is_err() {
            tracing::debug!(tenant = %self.tenant, "forwarding write share full");
            return Err(FeaturesError::Unavailable);
        }
        done.recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or(Err(FeaturesError::Unavailable))
    }
}

/// Commits queued changes and re-reads the settings on request, until the
/// [`FeatureStore`] is dropped.
async fn run_writer(
    store: Store,
    features: std::sync::Weak<FeatureStore>,
    mut resync: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let Some(queue) = features.upgrade().map(|f| f.queue.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            () = queue.ready() => {}
            request = resync.recv() => {
                let Some(done) = request else { return };
                let Some(features) = features.upgrade() else { return };
                // Changes queued before the request go first.
                drain(&store, &features).await;
                if let Err(e) = features.replace_all(&store).await {
                    tracing::warn!(error = %e, "cannot re-read forwarding settings");
                }
                let _ = done.send(());
                continue;
            }
        }
        let Some(features) = features.upgrade() else {
            return;
        };
        drain(&store, &features).await;
    }
}

/// Commits everything queued, taking turns between tenants.
async fn drain(store: &Store, features: &FeatureStore) {
    loop {
        let round = features.queue.take(1, MAX_ROUND);
        if round.is_empty() {
            return;
        }
        for (tenant, pending) in round {
            commit(store, features, tenant, pending).await;
        }
    }
}

/// Commits one change, applies it to memory, answers the plugin and audits it.
async fn commit(store: &Store, features: &FeatureStore, tenant: TenantId, pending: Pending) {
    let Pending {
        extension,
        settings,
        reply,
    } = pending;
    if let Err(e) = store.set_forwarding(tenant, &extension, &settings).await {
        // Checked before it was queued: the extension went away meanwhile, or
        // the database failed. Either way nothing changed.
        tracing::warn!(%tenant, %extension, error = %e, "forwarding change not saved");
        let _ = reply.send(Err(FeaturesError::Unavailable));
        return;
    }
    {
        let tenant_features = features.tenant(tenant);
        let mut map = tenant_features.settings.lock();
        if settings.is_default() {
            map.remove(&extension);
        } else {
            map.insert(extension.clone(), settings.clone());
        }
    }
    let _ = reply.send(Ok(()));
    let record = store::AuditRecord {
        at_ms: super::unix_ms(SystemTime::now()),
        actor: "call-handler".into(),
        role: "plugin".into(),
        tenant: Some(tenant),
        source: "sip".into(),
        action: "extension.forwarding".into(),
        detail: serde_json::json!({ "number": extension, "forwarding": settings }).to_string(),
    };
    if let Err(e) = store.append_audit(&record).await {
        tracing::warn!(%tenant, error = %e, "forwarding change not audited");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    async fn two_tenants() -> (Store, TenantId, TenantId) {
        let store = Store::open_in_memory().await.unwrap();
        let a = store.add_tenant("a", "a.example").await.unwrap().id;
        let b = store.add_tenant("b", "b.example").await.unwrap().id;
        for t in [a, b] {
            store.add_extension(t, "100", "pw-100-xx").await.unwrap();
        }
        (store, a, b)
    }

    async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    fn dnd() -> Forwarding {
        Forwarding {
            dnd: true,
            busy: Some("sales".into()),
            ..Forwarding::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acknowledged_change_is_on_disk_in_memory_and_audited() {
        let (store, a, b) = two_tenants().await;
        let features = FeatureStore::start(&store).await.unwrap();
        let fa = features.tenant(a);
        let set = blocking(move || fa.set_forwarding("100", &dnd(), soon())).await;
        assert_eq!(set, Ok(()));
        assert_eq!(store.forwarding(a, "100").await.unwrap(), dnd());
        assert_eq!(features.tenant(a).forwarding("100"), dnd());
        assert_eq!(
            features.tenant(b).forwarding("100"),
            Forwarding::default(),
            "another tenant's 100 is another extension"
        );
        let audited = store.list_audit(Some(a), None, 10).await.unwrap();
        assert!(
            audited
                .iter()
                .any(|e| e.record.action == "extension.forwarding"
                    && e.record.actor == "call-handler"),
            "{audited:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_the_store_refuses_is_unavailable_and_changes_nothing() {
        let (store, a, _) = two_tenants().await;
        let features = FeatureStore::start(&store).await.unwrap();
        let fa = features.tenant(a);
        // No extension 999: the store refuses it (the capability checks the
        // tenant's directory first; this is the race where it went away).
        let set = blocking(move || fa.set_forwarding("999", &dnd(), soon())).await;
        assert_eq!(set, Err(FeaturesError::Unavailable));
        assert_eq!(features.tenant(a).forwarding("999"), Forwarding::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resync_picks_up_admin_changes() {
        let (store, a, _) = two_tenants().await;
        let features = FeatureStore::start(&store).await.unwrap();
        store.set_forwarding(a, "100", &dnd()).await.unwrap();
        assert_eq!(features.tenant(a).forwarding("100"), Forwarding::default());
        features.resync().await.unwrap();
        assert_eq!(features.tenant(a).forwarding("100"), dnd());
        store
            .set_forwarding(a, "100", &Forwarding::default())
            .await
            .unwrap();
        features.resync().await.unwrap();
        assert_eq!(features.tenant(a).forwarding("100"), Forwarding::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_share_is_tenant_local() {
        let (store, a, b) = two_tenants().await;
        let features = FeatureStore::start(&store).await.unwrap();
        // Fill a's share directly, as if its changes were all in flight; the
        // writer is woken only by a later push.
        let mut waiters = Vec::new();
        for _ in 0..TENANT_SHARE {
            let (reply, done) = std_mpsc::sync_channel(1);
            let pushed = features.queue.push(
                a,
                Pending {
                    extension: "100".into(),
                    settings: dnd(),
                    reply,
                },
            );
            if pushed.is_ok() {
                waiters.push(done);
            }
        }
        let (fa, fb) = (features.tenant(a), features.tenant(b));
        let (a_result, b_result) = blocking(move || {
            (
                fa.set_forwarding("100", &dnd(), soon()),
                fb.set_forwarding("100", &dnd(), soon()),
            )
        })
        .await;
        assert!(matches!(a_result, Ok(()) | Err(FeaturesError::Unavailable)));
        assert_eq!(b_result, Ok(()));
        assert_eq!(store.forwarding(b, "100").await.unwrap(), dnd());
        for done in waiters {
            assert_eq!(
                blocking(move || done.recv_timeout(std::time::Duration::from_secs(5))).await,
                Ok(Ok(()))
            );
        }
    }
}
