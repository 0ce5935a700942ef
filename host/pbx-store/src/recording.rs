//! Call recordings (table `call_recordings`) and the tenant's call-recording
//! setting (a `tenants` column): answered calls of a tenant that has it on
//! are recorded, kept as 8 kHz 16-bit WAV in the tenant's encrypted audio
//! files (`audio.rs`), exactly as voicemail is.
//!
//! A recording counts against the tenant's media quota and recording
//! minutes, like a voicemail message, and is deleted by
//! [`Store::sweep_call_recordings`] once older than the tenant's retention
//! (the same days as its voicemail, `voicemail.rs`).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::audio::{self, AudioFile, Kind};
use crate::{
    DEFAULT_VOICEMAIL_RETENTION_DAYS, Error, MAX_CALL_RECORDING_BYTES, Result, Store, TenantId,
    checks, tenant,
};

/// A day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// A recorded call, without its audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallRecording {
    /// Random and URL-safe (22 characters of `[A-Za-z0-9_-]`), never reused.
    pub id: String,
    /// Who called and what they dialled, as the call's record shows them.
    pub caller: String,
    pub callee: String,
    /// When the recording was stored (Unix ms).
    pub created_at_ms: i64,
    /// Length of its audio.
    pub duration_ms: u64,
}

fn from_row(row: &AnyRow) -> Result<CallRecording> {
    let duration_ms: i64 = row.try_get("duration_ms")?;
    Ok(CallRecording {
        id: row.try_get("id")?,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        created_at_ms: row.try_get("created_at_ms")?,
        duration_ms: u64::try_from(duration_ms).unwrap_or(0),
    })
}

/// Fails with [`Error::QuotaExceeded`] unless the tenant has room for a
/// recording of `bytes` and `duration_ms`.
async fn room_for(
    conn: &mut AnyConnection,
    tenant: TenantId,
    bytes: u64,
    duration_ms: u64,
) -> Result<()> {
    tenant::ensure_tenant(&mut *conn, tenant).await?;
    audio::check_quota(conn, tenant, bytes, 0).await?;
    audio::check_recording_quota(conn, tenant, duration_ms).await
}

impl Store {
    /// Whether the tenant's answered calls are recorded (off unless set).
    pub async fn call_recording(&self, tenant: TenantId) -> Result<bool> {
        let row = sqlx::query("SELECT call_recording FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        crate::rows::flag(&row, "call_recording")
    }

    /// Every tenant whose answered calls are recorded. One of the store's
    /// cross-tenant reads, for the server's reload (a change to the setting
    /// moves the provisioning generation).
    pub async fn call_recording_tenants(&self) -> Result<Vec<TenantId>> {
        let rows = sqlx::query("SELECT id FROM tenants WHERE call_recording = 1 ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(TenantId(r.try_get("id")?)))
            .collect()
    }

    /// Turns recording of the tenant's answered calls on or off.
    pub async fn set_call_recording(&self, tenant: TenantId, on: bool) -> Result<()> {
        let done = sqlx::query("UPDATE tenants SET call_recording = $1 WHERE id = $2")
            .bind(i64::from(on))
            .bind(tenant.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }

    /// Stores the recording of a call of the tenant: `wav` is an 8 kHz
    /// 16-bit WAV of `duration_ms`, at most [`MAX_CALL_RECORDING_BYTES`],
    /// stored encrypted. [`Error::QuotaExceeded`] when the tenant's media
    /// storage or recording minutes are full. Uses the system clock.
    pub async fn save_call_recording(
        &self,
        tenant: TenantId,
        (caller, callee): (&str, &str),
        wav: &[u8],
        duration_ms: u64,
    ) -> Result<CallRecording> {
        self.save_call_recording_at(
            tenant,
            (caller, callee),
            wav,
            duration_ms,
            audio::system_now_ms(),
        )
        .await
    }

    /// [`Store::save_call_recording`] at `now_ms`.
    pub async fn save_call_recording_at(
        &self,
        tenant: TenantId,
        (caller, callee): (&str, &str),
        wav: &[u8],
        duration_ms: u64,
        now_ms: i64,
    ) -> Result<CallRecording> {
        checks::caller(caller)?;
        checks::caller(callee)?;
        audio::check_wav(wav, MAX_CALL_RECORDING_BYTES, "call recording")?;
        let bytes = wav.len() as u64;
        room_for(&mut *self.pool.acquire().await?, tenant, bytes, duration_ms).await?;
        let key = self.tenant_key_or_create(tenant).await?;
        let id = audio::new_id();
        let file = AudioFile::new(tenant, Kind::Recording, &id);
        self.write_sealed(
            file.clone(),
            key,
            audio::recording_aad(tenant, &id),
            wav.to_vec(),
        )
        .await?;
        let recording = CallRecording {
            id,
            caller: caller.to_owned(),
            callee: callee.to_owned(),
            created_at_ms: now_ms,
            duration_ms,
        };
        let row = async {
            let mut tx = self.write_tx().await?;
            room_for(&mut tx, tenant, bytes, duration_ms).await?;
            sqlx::query(
                "INSERT INTO call_recordings (id, tenant_id, caller, callee, created_at_ms, \
                 duration_ms, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&recording.id)
            .bind(tenant.0)
            .bind(caller)
            .bind(callee)
            .bind(now_ms)
            .bind(i64::try_from(duration_ms).unwrap_or(i64::MAX))
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = row {
            self.remove_files(vec![file]).await;
            return Err(e);
        }
        Ok(recording)
    }

    /// The tenant's call recordings, oldest first.
    pub async fn call_recordings(&self, tenant: TenantId) -> Result<Vec<CallRecording>> {
        let rows = sqlx::query(
            "SELECT id, caller, callee, created_at_ms, duration_ms FROM call_recordings \
             WHERE tenant_id = $1 ORDER BY created_at_ms, id",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// One of the tenant's call recordings, if it has one with this id.
    pub async fn call_recording_info(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<CallRecording>> {
        if !audio::is_id(id) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, caller, callee, created_at_ms, duration_ms FROM call_recordings \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The decrypted WAV of one of the tenant's call recordings, or `None`
    /// when it has none with this id. A file that is missing or does not
    /// decrypt (altered, or copied from elsewhere) is an error.
    pub async fn call_recording_audio(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        if self.call_recording_info(tenant, id).await?.is_none() {
            return Ok(None);
        }
        let key = self.tenant_key(tenant).await?.ok_or_else(|| {
            Error::Invalid(format!("tenant {tenant} has recordings but no media key"))
        })?;
        let wav = self
            .read_sealed(
                AudioFile::new(tenant, Kind::Recording, id),
                key,
                audio::recording_aad(tenant, id),
            )
            .await?;
        Ok(Some(wav))
    }

    /// Deletes one of the tenant's call recordings and its file; `false`
    /// when it has none with this id.
    pub async fn delete_call_recording(&self, tenant: TenantId, id: &str) -> Result<bool> {
        if !audio::is_id(id) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM call_recordings WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.remove_files(vec![AudioFile::new(tenant, Kind::Recording, id)])
            .await;
        Ok(true)
    }

    /// Deletes every call recording (and its file) older at `now_ms` than
    /// its tenant's retention; returns how many. Reads every tenant's
    /// recordings: one of the store's cross-tenant reads, for the server's
    /// maintenance task.
    pub async fn sweep_call_recordings(&self, now_ms: i64) -> Result<u64> {
        let rows = sqlx::query(
            "DELETE FROM call_recordings WHERE id IN ( \
               SELECT r.id FROM call_recordings r JOIN tenants t ON t.id = r.tenant_id \
               WHERE r.created_at_ms <= $1 - COALESCE(t.voicemail_retention_days, $2) * $3) \
             RETURNING id, tenant_id",
        )
        .bind(now_ms)
        .bind(i64::from(DEFAULT_VOICEMAIL_RETENTION_DAYS))
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let files = rows
            .iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                Ok(AudioFile::new(
                    TenantId(r.try_get("tenant_id")?),
                    Kind::Recording,
                    &id,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let swept = files.len() as u64;
        self.remove_files(files).await;
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantLimits;
    use crate::prompt::tests::wav;

    backend_test! {
        async fn recordings_are_the_tenants_own_counted_and_swept() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            assert!(!store.call_recording(a).await.expect("setting"));
            store.set_call_recording(a, true).await.expect("on");
            assert!(store.call_recording(a).await.expect("setting"));
            assert!(!store.call_recording(b).await.expect("b's own"));
            assert_eq!(store.call_recording_tenants().await.expect("all"), vec![a]);
            assert!(matches!(
                store.set_call_recording(TenantId(999), true).await,
                Err(Error::NotFound(_))
            ));

            let audio = wav(8000);
            let r = store
                .save_call_recording_at(a, ("1000", "1001"), &audio, 1_000, 5_000)
                .await
                .expect("save");
            assert!(audio::is_id(&r.id));
            assert_eq!(
                store.call_recordings(a).await.expect("list"),
                vec![r.clone()]
            );
            assert!(store.call_recordings(b).await.expect("list").is_empty());
            assert_eq!(
                store.call_recording_audio(a, &r.id).await.expect("audio"),
                Some(audio.clone())
            );
            assert_eq!(
                store.call_recording_audio(b, &r.id).await.expect("b"),
                None,
                "not another tenant's"
            );
            let usage = store.media_usage(a).await.expect("usage");
            assert_eq!(usage.recorded_ms, 1_000);
            assert_eq!(usage.used_bytes, audio.len() as u64);

            // The recording minutes bound calls too.
            store
                .set_tenant_limits(
                    a,
                    &TenantLimits {
                        recording_minutes: Some(1),
                        ..TenantLimits::default()
                    },
                )
                .await
                .expect("limits");
            assert!(matches!(
                store
                    .save_call_recording_at(a, ("1000", "1001"), &audio, 59_001, 5_000)
                    .await,
                Err(Error::QuotaExceeded(_))
            ));

            assert!(!store.delete_call_recording(b, &r.id).await.expect("b"));
            assert!(store.delete_call_recording(a, &r.id).await.expect("a"));
            assert!(!store.delete_call_recording(a, &r.id).await.expect("gone"));
            assert_eq!(store.memory_files(), 0);

            // Kept for the tenant's retention (one day here), then swept.
            store
                .set_voicemail_retention(a, Some(1))
                .await
                .expect("retention");
            let old = store
                .save_call_recording_at(a, ("1000", "1001"), &audio, 1_000, 0)
                .await
                .expect("save");
            let recent = store
                .save_call_recording_at(a, ("1000", "1001"), &audio, 1_000, DAY_MS)
                .await
                .expect("save");
            assert_eq!(
                store
                    .sweep_call_recordings(DAY_MS + 1)
                    .await
                    .expect("sweep"),
                1
            );
            assert_eq!(store.call_recordings(a).await.expect("list"), vec![recent]);
            assert_eq!(
                store.call_recording_info(a, &old.id).await.expect("x"),
                None
            );
        }
    }
}
