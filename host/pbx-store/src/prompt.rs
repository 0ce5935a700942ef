//! A tenant's prompts: named audio its admins upload for its calls to play,
//! kept as 8 kHz mono 16-bit WAV (converted at upload) in the tenant's
//! encrypted audio files (`audio.rs`), one row each in `prompts`.
//!
//! The same concept as `pbx-media`'s `prompt.rs` at another layer: that one is
//! audio the media engine plays, this one keeps a tenant's named prompts.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::audio::{self, AudioFile, Kind};
use crate::{Error, MAX_PROMPT_BYTES, MAX_PROMPT_MS, Result, Store, TenantId, checks, tenant};

/// A stored prompt, without its audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromptInfo {
    /// 1-64 characters of `[0-9A-Za-z._-]`, unique within the tenant.
    pub name: String,
    /// Size of its WAV file.
    pub bytes: u64,
    /// Length of its audio.
    pub duration_ms: u64,
    /// When this audio was stored (Unix ms).
    pub created_at_ms: i64,
}

impl Store {
    /// Stores (or replaces) the tenant's prompt `name`: `wav_8k_mono` is an
    /// 8 kHz mono 16-bit PCM WAV of `duration_ms`, at most
    /// [`MAX_PROMPT_BYTES`] and [`MAX_PROMPT_MS`]. [`Error::QuotaExceeded`]
    /// when the tenant's media storage would pass its quota (a replaced
    /// prompt's bytes count as freed); [`Error::NotFound`] for an unknown
    /// tenant. Uses the system clock; [`Store::put_prompt_at`] takes the time.
    pub async fn put_prompt(
        &self,
        tenant: TenantId,
        name: &str,
        wav_8k_mono: &[u8],
        duration_ms: u64,
    ) -> Result<PromptInfo> {
        self.put_prompt_at(
            tenant,
            name,
            wav_8k_mono,
            duration_ms,
            audio::system_now_ms(),
        )
        .await
    }

    /// [`Store::put_prompt`] at `now_ms`.
    pub async fn put_prompt_at(
        &self,
        tenant: TenantId,
        name: &str,
        wav_8k_mono: &[u8],
        duration_ms: u64,
        now_ms: i64,
    ) -> Result<PromptInfo> {
        checks::prompt_name(name)?;
        audio::check_wav(wav_8k_mono, MAX_PROMPT_BYTES, "prompt")?;
        if duration_ms > MAX_PROMPT_MS {
            return Err(Error::Invalid(format!(
                "a prompt is at most {} s long",
                MAX_PROMPT_MS / 1000
            )));
        }
        let bytes = wav_8k_mono.len() as u64;
        // Refuse before writing anything when it cannot fit.
        room_for(&mut *self.pool.acquire().await?, tenant, name, bytes).await?;
        let key = self.tenant_key_or_create(tenant).await?;
        let file = AudioFile::new(tenant, Kind::Prompt, &audio::new_id());
        let aad = audio::prompt_aad(tenant, file.name());
        self.write_sealed(file.clone(), key, aad, wav_8k_mono.to_vec())
            .await?;
        let row = async {
            let mut tx = self.write_tx().await?;
            let replaced = room_for(&mut tx, tenant, name, bytes).await?;
            sqlx::query(
                "INSERT INTO prompts (tenant_id, name, file, bytes, duration_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                 file = excluded.file, bytes = excluded.bytes, \
                 duration_ms = excluded.duration_ms, created_at_ms = excluded.created_at_ms",
            )
            .bind(tenant.0)
            .bind(name)
            .bind(file.name())
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .bind(i64::try_from(duration_ms).unwrap_or(i64::MAX))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, Error>(replaced)
        }
        .await;
        match row {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    self.remove_files(vec![AudioFile::new(tenant, Kind::Prompt, &old)])
                        .await;
                }
                Ok(PromptInfo {
                    name: name.to_owned(),
                    bytes,
                    duration_ms,
                    created_at_ms: now_ms,
                })
            }
            Err(e) => {
                self.remove_files(vec![file]).await;
                Err(e)
            }
        }
    }

    /// The WAV of the tenant's prompt `name`, or `None` when it has none of
    /// that name. A file that is missing or does not decrypt is an error.
    pub async fn prompt_audio(&self, tenant: TenantId, name: &str) -> Result<Option<Vec<u8>>> {
        if checks::prompt_name(name).is_err() {
            return Ok(None);
        }
        let Some(row) = sqlx::query("SELECT file FROM prompts WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.0)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let file: String = row.try_get("file")?;
        let key = self.tenant_key(tenant).await?.ok_or_else(|| {
            Error::Invalid(format!("tenant {tenant} has prompts but no media key"))
        })?;
        let aad = audio::prompt_aad(tenant, &file);
        let wav = self
            .read_sealed(AudioFile::new(tenant, Kind::Prompt, &file), key, aad)
            .await?;
        Ok(Some(wav))
    }

    /// The tenant's prompts by name. [`Error::NotFound`] for an unknown tenant.
    pub async fn prompts(&self, tenant: TenantId) -> Result<Vec<PromptInfo>> {
        let mut tx = self.read_tx().await?;
        tenant::ensure_tenant(&mut tx, tenant).await?;
        let rows = sqlx::query(
            "SELECT name, bytes, duration_ms, created_at_ms FROM prompts \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let bytes: i64 = r.try_get("bytes")?;
                let duration_ms: i64 = r.try_get("duration_ms")?;
                Ok(PromptInfo {
                    name: r.try_get("name")?,
                    bytes: u64::try_from(bytes).unwrap_or(0),
                    duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                    created_at_ms: r.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Deletes the tenant's prompt `name` and its file; `false` when there was
    /// none.
    pub async fn delete_prompt(&self, tenant: TenantId, name: &str) -> Result<bool> {
        if checks::prompt_name(name).is_err() {
            return Ok(false);
        }
        let row =
            sqlx::query("DELETE FROM prompts WHERE tenant_id = $1 AND name = $2 RETURNING file")
                .bind(tenant.0)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let file: String = row.try_get("file")?;
        self.remove_files(vec![AudioFile::new(tenant, Kind::Prompt, &file)])
            .await;
        Ok(true)
    }
}

/// Checks that the tenant exists and that `bytes` more (less the prompt it
/// replaces) fit its quota; returns the file of the prompt it replaces.
async fn room_for(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
    bytes: u64,
) -> Result<Option<String>> {
    tenant::ensure_tenant(conn, tenant).await?;
    let old = sqlx::query("SELECT file, bytes FROM prompts WHERE tenant_id = $1 AND name = $2")
        .bind(tenant.0)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    let (file, freeing) = match old {
        Some(row) => {
            let freed: i64 = row.try_get("bytes")?;
            (
                Some(row.try_get::<String, _>("file")?),
                u64::try_from(freed).unwrap_or(0),
            )
        }
        None => (None, 0),
    };
    audio::check_quota(conn, tenant, bytes, freeing).await?;
    Ok(file)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::TenantLimits;

    /// A WAV file of `samples` 8 kHz mono 16-bit samples (a ramp), made by
    /// hand so the store needs no audio crate.
    pub(crate) fn wav(samples: usize) -> Vec<u8> {
        let data = u32::try_from(samples * 2).expect("small");
        let mut w = b"RIFF".to_vec();
        w.extend_from_slice(&(36 + data).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&8000u32.to_le_bytes());
        w.extend_from_slice(&16000u32.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data.to_le_bytes());
        for i in 0..samples {
            w.extend_from_slice(&((i as i16).wrapping_mul(31)).to_le_bytes());
        }
        w
    }

    backend_test! {
        async fn prompts_round_trip_replace_and_delete() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let first = wav(800);
            let info = store
                .put_prompt_at(a, "menu", &first, 100, 5_000)
                .await
                .expect("put");
            assert_eq!(
                info,
                PromptInfo {
                    name: "menu".into(),
                    bytes: first.len() as u64,
                    duration_ms: 100,
                    created_at_ms: 5_000
                }
            );
            assert_eq!(
                store.prompt_audio(a, "menu").await.expect("get"),
                Some(first)
            );
            assert_eq!(store.prompt_audio(b, "menu").await.expect("other"), None);
            assert!(store.prompts(b).await.expect("list b").is_empty());

            let second = wav(1600);
            store
                .put_prompt_at(a, "menu", &second, 200, 6_000)
                .await
                .expect("replace");
            store
                .put_prompt_at(a, "hold", &wav(80), 10, 7_000)
                .await
                .expect("put");
            let names: Vec<_> = store
                .prompts(a)
                .await
                .expect("list")
                .into_iter()
                .map(|p| (p.name, p.duration_ms))
                .collect();
            assert_eq!(names, vec![("hold".into(), 10), ("menu".into(), 200)]);
            assert_eq!(
                store.prompt_audio(a, "menu").await.expect("get"),
                Some(second)
            );
            // The replaced file is gone: one file per prompt.
            assert_eq!(store.memory_files(), 2);

            assert!(!store.delete_prompt(b, "menu").await.expect("other"));
            assert!(store.delete_prompt(a, "menu").await.expect("delete"));
            assert!(!store.delete_prompt(a, "menu").await.expect("again"));
            assert_eq!(store.prompt_audio(a, "menu").await.expect("gone"), None);
            assert_eq!(store.memory_files(), 1);
            assert!(matches!(
                store.prompts(TenantId(99)).await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn bad_prompts_are_refused_before_anything_is_written() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            for (name, audio, ms) in [
                ("bad/name", wav(8), 1),
                ("", wav(8), 1),
                (
                    "ok",
                    b"not a wav file at all, but long enough to be one".to_vec(),
                    1,
                ),
                ("ok", wav(8), MAX_PROMPT_MS + 1),
                ("ok", wav(MAX_PROMPT_BYTES as usize / 2 + 1), 1),
            ] {
                assert!(
                    matches!(
                        store.put_prompt_at(a, name, &audio, ms, 0).await,
                        Err(Error::Invalid(_))
                    ),
                    "{name:?} {ms}"
                );
            }
            assert!(matches!(
                store.put_prompt_at(TenantId(99), "ok", &wav(8), 1, 0).await,
                Err(Error::NotFound(_))
            ));
            assert_eq!(store.memory_files(), 0);
            assert_eq!(store.prompt_audio(a, "../x").await.expect("bad name"), None);
        }
    }

    backend_test! {
        async fn the_quota_refuses_what_does_not_fit_and_counts_replacements_as_freed() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            let one = wav(1000);
            let quota = 2 * one.len() as u64 + 10;
            store
                .set_tenant_limits(
                    a,
                    &TenantLimits {
                        media_storage_bytes: Some(quota),
                        ..TenantLimits::default()
                    },
                )
                .await
                .expect("limits");
            store.put_prompt_at(a, "p1", &one, 1, 0).await.expect("p1");
            store.put_prompt_at(a, "p2", &one, 1, 0).await.expect("p2");
            let refused = store.put_prompt_at(a, "p3", &one, 1, 0).await;
            assert!(
                matches!(&refused, Err(Error::QuotaExceeded(m)) if m.contains("media storage is full")),
                "{refused:?}"
            );
            // Replacing p2 with audio of the same size fits; another tenant is unaffected.
            store
                .put_prompt_at(a, "p2", &one, 1, 0)
                .await
                .expect("replace");
            store.put_prompt_at(b, "p3", &one, 1, 0).await.expect("b");
            let usage = store.media_usage(a).await.expect("usage");
            assert_eq!(
                (usage.used_bytes, usage.quota_bytes, usage.prompts),
                (2 * one.len() as u64, quota, 2)
            );
            assert_eq!(
                store.media_usage(b).await.expect("usage").quota_bytes,
                crate::DEFAULT_MEDIA_STORAGE_BYTES
            );
            assert_eq!(store.memory_files(), 3, "the refused upload left no file");
        }
    }
}
