//! Picks up provisioning changes made while the server runs (by the CLI or the
//! API) by polling the store's generation counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use pbx_core::{Peer, Shared, TrunkEntry, Trunks};
use store::Store;
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::plugins::PluginHost;
use super::trunk_reg_task::TrunkRegistrar;

/// Every tenant's trunks, with their hosts resolved (a trunk whose host does not
/// resolve is left out, with a warning), and the inbound numbers.
pub(crate) async fn load_trunks(store: &Store) -> anyhow::Result<Trunks> {
    let mut entries = Vec::new();
    for trunk in store.all_trunks().await? {
        let resolved = tokio::net::lookup_host((trunk.host.as_str(), trunk.port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        let Some(addr) = resolved else {
            tracing::warn!(tenant = %trunk.tenant, trunk = %trunk.name, host = %trunk.host, "trunk host does not resolve");
            continue;
        };
        entries.push(TrunkEntry {
            tenant: trunk.tenant,
            name: trunk.name,
            peer: Peer {
                transport: trunk.transport,
                addr,
                conn: None,
            },
            host: trunk.host,
            port: trunk.port,
            username: trunk.username,
            password: trunk.password,
        });
    }
    Ok(Trunks::new(entries, store.all_dids().await?))
}

#[allow(
    clippy::too_many_arguments,
    reason = "each is one independent piece the reload swaps"
)]
pub(crate) async fn run(
    store: Store,
    shared: Arc<Shared>,
    plugins: Option<Arc<PluginHost>>,
    guard: Arc<Guard>,
    applied: Arc<AtomicI64>,
    every: Duration,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
    trunk_registrar: TrunkRegistrar,
    tenant_media: Option<super::media::TenantMedia>,
) {
    let mut generation = applied.load(Ordering::Acquire);
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
            // Another node changed provisioning (PostgreSQL announced it).
            () = wake.notified() => {}
        }
        let current = match store.generation().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's generation");
                continue;
            }
        };
        if current == generation {
            continue;
        }
        // Read the generation before the directory: a change racing with the read
        // shows up as a new generation on the next tick.
        match store.directory().await {
            Ok(directory) => {
                tracing::info!(
                    generation = current,
                    tenants = directory.tenants.len(),
                    extensions = directory.extensions.len(),
                    "directory reloaded"
                );
                shared.replace_directory(directory);
                match load_trunks(&store).await {
                    Ok(trunks) => shared.replace_trunks(trunks),
                    Err(e) => tracing::warn!(error = %e, "cannot reload trunks"),
                }
                match store.all_trunks().await {
                    Ok(trunks) => trunk_registrar.sync(trunks),
                    Err(e) => tracing::warn!(error = %e, "cannot reload trunk registrations"),
                }
                if let Some(plugins) = &plugins
                    && let Err(e) = plugins.reload(&store).await
                {
                    tracing::warn!(error = %e, "cannot reload plugins");
                }
                if let Some(tenant_media) = &tenant_media
                    && let Err(e) = tenant_media.reload(&store).await
                {
                    tracing::warn!(error = %e, "cannot reload tenants' media settings");
                }
                // A ban removed from the store (CLI, API) is lifted here.
                if let Err(e) = guard.sync_bans(&store).await {
                    tracing::warn!(error = %e, "cannot reload bans");
                }
                generation = current;
                applied.store(current, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the directory"),
        }
    }
}
