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

/// Deletes call records and alerts past their tenant's retention, and
/// audits each tenant's purge (`retention.purge`, by `system`); then the
/// audit entries past `audit_days`, behind a checkpoint the log keeps
/// verifying through (`audit.purge`, the first entry after it).
pub(crate) async fn purge_records(store: &Store, policy: &store::RecordRetention, now_ms: i64) {
    purge_tenant_records(store, policy, now_ms).await;
    if let Some(days) = policy.audit_days {
        purge_audit(store, now_ms - i64::from(days) * 86_400_000, now_ms).await;
    }
}

/// Deletes the audit entries written before `before_ms` and audits that.
pub(crate) async fn purge_audit(store: &Store, before_ms: i64, now_ms: i64) {
    let checkpoint = match store.purge_audit(before_ms, now_ms).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "audit log retention purge refused");
            return;
        }
    };
    tracing::info!(
        through = checkpoint.through_id,
        entries = checkpoint.entries,
        "audit entries past their retention deleted"
    );
    let record = store::AuditRecord {
        at_ms: now_ms,
        actor: "system".into(),
        role: "system".into(),
        tenant: None,
        source: "local".into(),
        action: "audit.purge".into(),
        detail: serde_json::json!({
            "checkpoint": checkpoint.id,
            "through_id": checkpoint.through_id,
            "entries": checkpoint.entries,
            "hash": checkpoint.hash,
        })
        .to_string(),
    };
    if let Err(e) = store.append_audit(&record).await {
        tracing::warn!(error = %e, "audit purge not audited");
    }
}

async fn purge_tenant_records(store: &Store, policy: &store::RecordRetention, now_ms: i64) {
    let purged = match store.purge_records(now_ms, policy).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "call record and alert retention sweep failed");
            return;
        }
    };
    for (tenant, cdrs, alerts) in purged {
        tracing::info!(%tenant, cdrs, alerts, "records past their retention deleted");
        let record = store::AuditRecord {
            at_ms: now_ms,
            actor: "system".into(),
            role: "system".into(),
            tenant: Some(tenant),
            source: "local".into(),
            action: "retention.purge".into(),
            detail: serde_json::json!({ "cdrs": cdrs, "alerts": alerts }).to_string(),
        };
        if let Err(e) = store.append_audit(&record).await {
            tracing::warn!(error = %e, "retention purge not audited");
        }
    }
}

/// Sweeps until `stop` fires.
pub(crate) async fn run(
    store: Store,
    mailboxes: Mailboxes,
    records: store::RecordRetention,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = unix_ms();
        sweep(&store, &mailboxes, now_ms).await;
        purge_records(&store, &records, now_ms).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_purge_is_audited_and_the_audit_chain_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let t = store.add_tenant("acme", "acme.example").await.unwrap().id;
        let day = 24 * 3600 * 1000i64;
        let now = unix_ms();
        for (i, age) in [1, 50, 100].into_iter().enumerate() {
            let record = store::AuditRecord {
                at_ms: now - age * day,
                actor: "root".into(),
                role: "provider-admin".into(),
                tenant: Some(t),
                source: "local".into(),
                action: "extension.create".into(),
                detail: format!("{{\"n\":{i}}}"),
            };
            store.append_audit(&record).await.unwrap();
            store
                .insert_alert(&store::Alert {
                    tenant: Some(t),
                    severity: store::Severity::Info,
                    event: "fraud.burst".into(),
                    message: "m".into(),
                    at_ms: now - age * day,
                })
                .await
                .unwrap();
        }
        let policy = store::RecordRetention {
            alert_days: Some(30),
            ..Default::default()
        };
        purge_records(&store, &policy, now).await;
        assert_eq!(store.list_alerts(t, 10).await.unwrap().len(), 1);
        let entries = store.list_audit(Some(t), None, 10).await.unwrap();
        let purge = entries
            .iter()
            .find(|e| e.record.action == "retention.purge")
            .expect("the purge is audited");
        assert_eq!(purge.record.detail, r#"{"alerts":2,"cdrs":0}"#);
        let report = pbx_api::verify_audit(&store).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
    }

    /// With `audit_days`, the sweep purges the audit entries past it behind a
    /// checkpoint, audits that, and the log still verifies.
    #[tokio::test]
    async fn the_audit_log_is_purged_behind_a_checkpoint_and_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let day = 24 * 3600 * 1000i64;
        let now = unix_ms();
        for age in [100, 50, 1] {
            let record = store::AuditRecord {
                at_ms: now - age * day,
                actor: "root".into(),
                role: "provider-admin".into(),
                tenant: None,
                source: "local".into(),
                action: "tenant.create".into(),
                detail: format!("{{\"age\":{age}}}"),
            };
            store.append_audit(&record).await.unwrap();
        }
        let policy = store::RecordRetention {
            audit_days: Some(30),
            ..Default::default()
        };
        purge_records(&store, &policy, now).await;
        let left = store.audit_chain(0, 10).await.unwrap();
        let actions: Vec<_> = left
            .iter()
            .map(|e| (e.id, e.record.action.as_str()))
            .collect();
        assert_eq!(actions, [(3, "tenant.create"), (4, "audit.purge")]);
        assert!(
            left[1].record.detail.contains("\"through_id\":2"),
            "{}",
            left[1].record.detail
        );
        let report = pbx_api::verify_audit(&store).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.checkpoints, report.purged_through), (1, 2));
    }
}
