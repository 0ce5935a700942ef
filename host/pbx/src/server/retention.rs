//! Keeping tenant audio to its retention: voicemail and call recordings
//! older than their tenant's retention are deleted, and audio files a crash left without their row are
//! removed, when the server starts and every hour after.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use store::Store;
use tokio_util::sync::CancellationToken;

/// How often the sweep runs.
const EVERY: Duration = Duration::from_secs(3600);

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One sweep; returns how many messages and recordings, and how many
/// orphaned files, went.
pub(crate) async fn sweep(store: &Store, now_ms: i64) -> (u64, u64) {
    let voicemail = store.sweep_voicemail(now_ms).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "voicemail retention sweep failed");
        0
    });
    let recordings = store
        .sweep_call_recordings(now_ms)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "call recording retention sweep failed");
            0
        });
    let messages = voicemail + recordings;
    let orphans = store.remove_orphan_media(now_ms).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "orphan audio sweep failed");
        0
    });
    if messages + orphans > 0 {
        tracing::info!(messages, orphans, "expired tenant audio deleted");
    }
    (messages, orphans)
}

/// Sweeps until `stop` fires.
pub(crate) async fn run(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        sweep(&store, unix_ms()).await;
    }
}
