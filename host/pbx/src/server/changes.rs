//! What other nodes of a cluster change, taken in as PostgreSQL announces it
//! (`store::Changes`): provisioning wakes the reload at once, bans are
//! adopted and lifted, and the bindings of an address-of-record that another
//! node changed are re-read and handed to the registrar. On SQLite there is
//! no other node and this task does not run.
//!
//! Bindings announcements come in bursts (a front spreading re-registrations
//! over the nodes); each wake-up takes all that is waiting, up to
//! [`BATCH`] addresses-of-record, and reads them in one query. When the
//! listening connection drops, everything is re-read once it is back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_core::Shared;
use store::{Change, Changes, Store, TenantId};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::guard::Guard;

/// Addresses-of-record re-read in one query.
const BATCH: usize = 500;
/// Changes read but not yet handled; beyond this the connection waits
/// (PostgreSQL queues them).
const QUEUE: usize = 4096;
/// How long to wait before listening again after the connection failed.
const RETRY: Duration = Duration::from_secs(1);

/// Listens until `stop`. `wake` tells the reload task to look at the
/// provisioning generation now.
pub(crate) async fn run(
    store: Store,
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    node: String,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let changes = match store.listen_changes().await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the cluster's changes");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        // Whatever changed before we listened is read now.
        resync(&store, &shared, &guard, &wake).await;
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let feed = tokio::spawn(forward(changes, tx));
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => {
                    feed.abort();
                    return;
                }
                c = rx.recv() => c,
            };
            // The feed ended: its connection failed for good; listen anew.
            let Some(first) = first else { break };
            let mut aors = BTreeSet::new();
            let mut next = Some(first);
            while let Some(change) = next.take() {
                match change {
                    Change::Generation => wake.notify_one(),
                    Change::Bans => adopt_bans(&store, &guard).await,
                    Change::Registration {
                        tenant,
                        node: from,
                        extension,
                    } => {
                        if from != node {
                            aors.insert((tenant, extension));
                        }
                    }
                    Change::Resync => {
                        resync(&store, &shared, &guard, &wake).await;
                        aors.clear();
                    }
                }
                if aors.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !aors.is_empty() {
                refresh(&store, &shared, aors.into_iter().collect()).await;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Hands the connection's changes on, one at a time, until it fails.
async fn forward(mut changes: Changes, tx: mpsc::Sender<Change>) {
    loop {
        match changes.next().await {
            Ok(change) => {
                if tx.send(change).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lost the cluster's change feed");
                return;
            }
        }
    }
}

/// Re-reads these addresses-of-record and hands them to the registrar.
async fn refresh(store: &Store, shared: &Shared, aors: Vec<(TenantId, String)>) {
    let now = Instant::now();
    let stored = match store.registrations_of(&aors, unix_ms()).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's bindings");
            return;
        }
    };
    let mut rows = stored.into_iter().peekable();
    for (tenant, extension) in aors {
        let mut of = Vec::new();
        while let Some(r) = rows.next_if(|r| (r.tenant, &r.extension) <= (tenant, &extension)) {
            if r.tenant == tenant && r.extension == extension {
                of.push(r);
            }
        }
        shared.refresh_bindings(tenant, &extension, of, now);
    }
}

/// Everything, after the feed was down: the provisioning generation, bans,
/// and every address-of-record this node or the store has bindings of.
async fn resync(store: &Store, shared: &Shared, guard: &Guard, wake: &Notify) {
    wake.notify_one();
    adopt_bans(store, guard).await;
    match store.load_registrations(unix_ms()).await {
        Ok(all) => shared.resync_bindings(all, Instant::now()),
        Err(e) => tracing::warn!(error = %e, "cannot read the cluster's bindings"),
    }
}

/// Takes in bans other nodes made and lifts those removed.
async fn adopt_bans(store: &Store, guard: &Guard) {
    if let Err(e) = guard.restore(store).await {
        tracing::warn!(error = %e, "cannot read the cluster's bans");
    }
    if let Err(e) = guard.sync_bans(store).await {
        tracing::warn!(error = %e, "cannot read the cluster's bans");
    }
}

fn unix_ms() -> i64 {
    super::unix_ms(std::time::SystemTime::now())
}
