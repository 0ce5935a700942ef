//! Keeping tenant audio to its retention: voicemail (the mailboxes' phones
//! hear their new counts) and call recordings older than their tenant's
//! retention are deleted, and audio files a crash left without their row are
//! removed, when the server starts and every hour after.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use store::Store;
use tokio_util::sync::CancellationToken;

use super::media::Mailboxes;

/// How often the sweep runs.
const EVERY: Duration = Duration::from_secs(3600);

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One sweep; returns how many messages and recordings, and how many
/// orphaned files, went.
pub(crate) async fn sweep(store: &Store, mailboxes: &Mailboxes, now_ms: i64) -> (u64, u64) {
    let mut swept = store.sweep_voicemail(now_ms).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "voicemail retention sweep failed");
        Vec::new()
    });
    let voicemail = swept.len() as u64;
    swept.sort();
    swept.dedup();
    for (tenant, mailbox) in swept {
        mailboxes.changed(tenant, &mailbox).await;
    }
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
pub(crate) async fn run(store: Store, mailboxes: Mailboxes, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        sweep(&store, &mailboxes, unix_ms()).await;
    }
}
