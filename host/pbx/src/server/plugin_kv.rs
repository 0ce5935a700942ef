//! The tenants' plugin storage (`pbx:plugin/storage`): read from memory on the
//! call path, written through to the database before a write is acknowledged.
//!
//! # Design
//! - Reads are served from each tenant's in-memory map. Only the writer task
//!   changes the maps, and only after the database committed the change, so
//!   memory never holds a write or a delete the disk does not.
//! - A plugin's `set` or `delete` queues one entry in the tenant's share of a
//!   [`FairQueue`] ([`TENANT_SHARE`] entries) and waits for the commit, at
//!   most until the invocation's wall-clock cap (waiting spends no CPU, so it
//!   does not count against the plugin's CPU budget). A full share is a tenant-local
//!   `unavailable`; other tenants' writes still go in. The writer commits
//!   rounds of a few entries per tenant in one transaction, so one tenant's
//!   backlog delays another's write by at most one round.
//! - The writer runs on its own thread (and runtime), apart from the server's.
//! - An acknowledged write or delete is on disk. A write whose wait ran out is
//!   reported `unavailable`; it may still be committed (and then shows in
//!   memory), never the reverse.
//! - Admins' writes (CLI, API) go straight to the database and move the
//!   provisioning generation; the reload then asks the writer to re-read
//!   every tenant's storage ([`KvStore::resync`]), in turn with the writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use parking_lot::Mutex;
use pbx_plugin::{Storage, StorageError};
use store::{PLUGIN_KV_QUOTA_BYTES, Store, TenantId};
use tokio::sync::{mpsc, oneshot};

use super::fair::FairQueue;

/// Writes one tenant may have waiting for the writer.
pub(crate) const TENANT_SHARE: usize = 16;
/// Entries of one tenant committed per round.
const PER_TENANT_ROUND: usize = 8;
/// Entries committed per transaction.
const MAX_ROUND: usize = 256;

/// One write waiting for the writer.
struct Pending {
    key: String,
    value: Option<Vec<u8>>,
    reply: std_mpsc::SyncSender<Result<(), StorageError>>,
}

type Data = (HashMap<String, Vec<u8>>, usize);

/// Every tenant's plugin storage and the writer behind it.
pub(crate) struct KvStore {
    tenants: Mutex<HashMap<TenantId, Arc<KvStorage>>>,
    queue: Arc<FairQueue<TenantId, Pending>>,
    resync: mpsc::Sender<oneshot::Sender<()>>,
}

impl KvStore {
    /// Loads every tenant's storage and starts the writer.
    pub(crate) async fn start(store: &Store) -> anyhow::Result<Arc<KvStore>> {
        let (resync, resync_rx) = mpsc::channel(4);
        let kv = Arc::new(KvStore {
            tenants: Mutex::new(HashMap::new()),
            queue: Arc::new(FairQueue::new(TENANT_SHARE)),
            resync,
        });
        kv.replace_all(store).await?;
        // The writer has a thread of its own, so how soon a write is committed
        // (and a plugin waiting for it resumes) does not depend on how busy
        // the server's runtime is.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (store, weak) = (store.clone(), Arc::downgrade(&kv));
        std::thread::Builder::new()
            .name("plugin-kv-writer".into())
            .spawn(move || runtime.block_on(run_writer(store, weak, resync_rx)))?;
        Ok(kv)
    }

    /// The tenant's storage (empty when it has none yet).
    pub(crate) fn tenant(&self, tenant: TenantId) -> Arc<KvStorage> {
        self.tenants
            .lock()
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(KvStorage {
                    tenant,
                    data: Mutex::new((HashMap::new(), 0)),
                    queue: self.queue.clone(),
                })
            })
            .clone()
    }

    /// Re-reads every tenant's storage from the database, after every write
    /// queued before this call (admins' changes made outside the server).
    pub(crate) async fn resync(&self) -> anyhow::Result<()> {
        let (done, wait) = oneshot::channel();
        self.resync
            .send(done)
            .await
            .map_err(|_| anyhow::anyhow!("the plugin storage writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the plugin storage writer stopped"))
    }

    async fn replace_all(&self, store: &Store) -> anyhow::Result<()> {
        let mut loaded: HashMap<TenantId, HashMap<String, Vec<u8>>> = HashMap::new();
        for (tenant, key, value) in store.plugin_kv_all().await? {
            loaded.entry(tenant).or_default().insert(key, value);
        }
        let known: Vec<TenantId> = self.tenants.lock().keys().copied().collect();
        for tenant in known {
            loaded.entry(tenant).or_default();
        }
        for (tenant, map) in loaded {
            let used = map.iter().map(|(k, v)| k.len() + v.len()).sum();
            *self.tenant(tenant).data.lock() = (map, used);
        }
        Ok(())
    }
}

/// One tenant's plugin storage.
pub(crate) struct KvStorage {
    tenant: TenantId,
    data: Mutex<Data>,
    queue: Arc<FairQueue<TenantId, Pending>>,
}

impl KvStorage {
    /// Ring groups kept in the tenant's storage: `ring-group:NAME` = member
    /// extensions separated by commas or spaces.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
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

    /// Queues one change and waits for its commit.
    fn write(&self, key: &str, value: Option<Vec<u8>>, until: Instant) -> Result<(), StorageError> {
        let (reply, done) = std_mpsc::sync_channel(1);
        let pending = Pending {
            key: key.to_string(),
            value,
            reply,
        };
        if self.queue.push(self.tenant, pending).is_err() {
            tracing::debug!(tenant = %self.tenant, "plugin storage write share full");
            return Err(StorageError::Unavailable);
        }
        done.recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or(Err(StorageError::Unavailable))
    }
}

impl Storage for KvStorage {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.data.lock().0.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], until: Instant) -> Result<(), StorageError> {
        if key.is_empty() || key.len() > pbx_plugin::caps::storage::MAX_KEY_LEN {
            return Err(StorageError::QuotaExceeded);
        }
        {
            // Refuse early what cannot fit; the writer checks again.
            let data = self.data.lock();
            let old = data.0.get(key).map_or(0, |v| key.len() + v.len());
            if data.1 - old + key.len() + value.len() > PLUGIN_KV_QUOTA_BYTES {
                return Err(StorageError::QuotaExceeded);
            }
        }
        self.write(key, Some(value.to_vec()), until)
    }

    fn delete(&self, key: &str, until: Instant) {
        if !self.data.lock().0.contains_key(key) {
            return;
        }
        if let Err(e) = self.write(key, None, until) {
            // The key stays, in memory and on disk.
            tracing::debug!(tenant = %self.tenant, error = %e, "plugin storage delete not done");
        }
    }
}

/// Commits queued writes round by round and re-reads storage on request,
/// until the [`KvStore`] is dropped.
async fn run_writer(
    store: Store,
    kv: std::sync::Weak<KvStore>,
    mut resync: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let Some(queue) = kv.upgrade().map(|kv| kv.queue.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            () = queue.ready() => {}
            request = resync.recv() => {
                let Some(done) = request else { return };
                let Some(kv) = kv.upgrade() else { return };
                // Writes queued before the request go first.
                drain(&store, &kv).await;
                if let Err(e) = kv.replace_all(&store).await {
                    tracing::warn!(error = %e, "cannot re-read plugin storage");
                }
                let _ = done.send(());
                continue;
            }
        }
        let Some(kv) = kv.upgrade() else { return };
        drain(&store, &kv).await;
    }
}

/// Commits everything queued, a round at a time.
async fn drain(store: &Store, kv: &KvStore) {
    loop {
        let round = kv.queue.take(PER_TENANT_ROUND, MAX_ROUND);
        if round.is_empty() {
            return;
        }
        commit_round(store, kv, round).await;
    }
}

/// Checks each entry against its tenant's quota (counting earlier entries of
/// the round), commits the accepted ones in one transaction, applies them to
/// memory and answers every waiter.
async fn commit_round(store: &Store, kv: &KvStore, round: Vec<(TenantId, Pending)>) {
    // Sizes as they will be after the entries accepted so far.
    let mut sizes: HashMap<(TenantId, String), usize> = HashMap::new();
    let mut used: HashMap<TenantId, usize> = HashMap::new();
    let mut accepted = Vec::with_capacity(round.len());
    for (tenant, pending) in round {
        let storage = kv.tenant(tenant);
        let data = storage.data.lock();
        let total = *used.entry(tenant).or_insert(data.1);
        let old = *sizes
            .entry((tenant, pending.key.clone()))
            .or_insert_with(|| {
                data.0
                    .get(&pending.key)
                    .map_or(0, |v| pending.key.len() + v.len())
            });
        drop(data);
        let new = pending
            .value
            .as_ref()
            .map_or(0, |v| pending.key.len() + v.len());
        let after = total - old + new;
        if pending.value.is_some() && after > PLUGIN_KV_QUOTA_BYTES {
            let _ = pending.reply.send(Err(StorageError::QuotaExceeded));
            continue;
        }
        used.insert(tenant, after);
        sizes.insert((tenant, pending.key.clone()), new);
        accepted.push((tenant, pending));
    }
    if accepted.is_empty() {
        return;
    }
    let batch: Vec<(TenantId, String, Option<Vec<u8>>)> = accepted
        .iter()
        .map(|(t, p)| (*t, p.key.clone(), p.value.clone()))
        .collect();
    match store.plugin_kv_apply(&batch).await {
        Ok(applied) => {
            for ((tenant, pending), ok) in accepted.into_iter().zip(applied) {
                if !ok {
                    let _ = pending.reply.send(Err(StorageError::Unavailable));
                    continue;
                }
                let storage = kv.tenant(tenant);
                let mut data = storage.data.lock();
                let (map, used) = &mut *data;
                if let Some(old) = map.remove(&pending.key) {
                    *used -= pending.key.len() + old.len();
                }
                if let Some(value) = pending.value {
                    *used += pending.key.len() + value.len();
                    map.insert(pending.key, value);
                }
                drop(data);
                let _ = pending.reply.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, entries = batch.len(), "plugin storage writes failed");
            for (_, pending) in accepted {
                let _ = pending.reply.send(Err(StorageError::Unavailable));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generous wall-clock cap: these tests are about durability and
    /// shares, not about the wait.
    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    async fn two_tenants() -> (Store, TenantId, TenantId) {
        let store = Store::open_in_memory().await.unwrap();
        let a = store.add_tenant("a", "a.example").await.unwrap().id;
        let b = store.add_tenant("b", "b.example").await.unwrap().id;
        (store, a, b)
    }

    /// Runs a blocking storage call off the runtime's threads.
    async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_and_deletes_are_on_disk() {
        let (store, a, b) = two_tenants().await;
        let kv = KvStore::start(&store).await.unwrap();
        let sa = kv.tenant(a);
        let set = blocking(move || sa.set("k", b"v", soon())).await;
        assert_eq!(set, Ok(()));
        assert_eq!(
            store.plugin_kv_get(a, "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(kv.tenant(a).get("k").as_deref(), Some(&b"v"[..]));
        assert_eq!(kv.tenant(b).get("k"), None);
        let sa = kv.tenant(a);
        blocking(move || sa.delete("k", soon())).await;
        assert_eq!(store.plugin_kv_get(a, "k").await.unwrap(), None);
        assert_eq!(kv.tenant(a).get("k"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_quota_holds_across_a_round() {
        let (store, a, _) = two_tenants().await;
        let kv = KvStore::start(&store).await.unwrap();
        let half = vec![0u8; PLUGIN_KV_QUOTA_BYTES / 2];
        let mut handles = Vec::new();
        for i in 0..3 {
            let s = kv.tenant(a);
            let value = half.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                s.set(&format!("k{i}"), &value, soon())
            }));
        }
        let mut ok = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => assert_eq!(e, StorageError::QuotaExceeded),
            }
        }
        assert_eq!(ok, 1, "only one half-quota value fits next to its key");
        assert_eq!(store.plugin_kv_list(a).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_share_is_tenant_local() {
        let (store, a, b) = two_tenants().await;
        let kv = KvStore::start(&store).await.unwrap();
        // Fill a's share directly, as if its writes were all in flight; the
        // writer is woken only by a later push, so they stay queued until then.
        let mut waiters = Vec::new();
        for i in 0..TENANT_SHARE {
            let (reply, done) = std_mpsc::sync_channel(1);
            let pushed = kv.queue.push(
                a,
                Pending {
                    key: format!("flood{i}"),
                    value: Some(vec![1]),
                    reply,
                },
            );
            if pushed.is_ok() {
                waiters.push(done);
            }
        }
        let sa = kv.tenant(a);
        let sb = kv.tenant(b);
        let (a_result, b_result) = blocking(move || {
            // Either a's share is still full (refused at once) or the writer
            // already took some of it; b's write goes through either way.
            (sa.set("more", b"x", soon()), sb.set("mine", b"y", soon()))
        })
        .await;
        assert!(matches!(a_result, Ok(()) | Err(StorageError::Unavailable)));
        assert_eq!(b_result, Ok(()));
        assert_eq!(
            store.plugin_kv_get(b, "mine").await.unwrap().as_deref(),
            Some(&b"y"[..])
        );
        for done in waiters {
            assert_eq!(
                blocking(move || done.recv_timeout(std::time::Duration::from_secs(5))).await,
                Ok(Ok(()))
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resync_picks_up_admin_writes() {
        let (store, a, _) = two_tenants().await;
        let kv = KvStore::start(&store).await.unwrap();
        store
            .plugin_kv_admin_put(a, "ring-group:sales", Some(b"1000,1001"))
            .await
            .unwrap();
        assert_eq!(kv.tenant(a).get("ring-group:sales"), None);
        kv.resync().await.unwrap();
        assert_eq!(
            kv.tenant(a).groups(),
            vec![(
                "sales".to_string(),
                vec!["1000".to_string(), "1001".to_string()]
            )]
        );
        store
            .plugin_kv_admin_put(a, "ring-group:sales", None)
            .await
            .unwrap();
        kv.resync().await.unwrap();
        assert!(kv.tenant(a).groups().is_empty());
    }
}
