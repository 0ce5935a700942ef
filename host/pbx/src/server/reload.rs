//! Picks up provisioning changes made while the server runs (by the CLI or the
//! API) by polling the store's generation counter.

use std::sync::Arc;
use std::time::Duration;

use pbx_core::Shared;
use store::Store;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(
    store: Store,
    shared: Arc<Shared>,
    mut generation: i64,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
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
                generation = current;
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the directory"),
        }
    }
}
