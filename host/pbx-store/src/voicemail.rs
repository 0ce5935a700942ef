//! Voicemail messages (table `voicemail_messages`): what callers leave in an
//! extension's mailbox, kept as 8 kHz mono WAV in the tenant's encrypted audio
//! files (`audio.rs`), and the tenant's retention (a `tenants` column).
//!
//! A mailbox is an extension number of the tenant; its messages go with the
//! extension. A mailbox keeps at most [`MAX_VOICEMAIL_MESSAGES`]; the
//! tenant's audio counts against its media quota and its messages' lengths
//! against its recording minutes; messages older than the
//! tenant's retention are deleted by [`Store::sweep_voicemail`], saved or not.
//! The mailbox's PIN is `voicemail_box.rs`'s.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::audio::{self, AudioFile, Kind};
use crate::{
    DEFAULT_VOICEMAIL_RETENTION_DAYS, Error, MAX_VOICEMAIL_BYTES, MAX_VOICEMAIL_MESSAGES,
    MAX_VOICEMAIL_RETENTION_DAYS, Result, Store, TenantId, checks,
};

/// A day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// A voicemail message, without its audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VoicemailMessage {
    /// Random and URL-safe (22 characters of `[A-Za-z0-9_-]`), never reused.
    pub id: String,
    /// The extension whose mailbox holds it.
    pub mailbox: String,
    /// Who called, as the call showed it (may be empty).
    pub caller: String,
    /// When it was left (Unix ms).
    pub created_at_ms: i64,
    /// Length of its audio.
    pub duration_ms: u64,
    /// Listened to: "old" rather than "new" in [`Store::mailbox_counts`].
    pub heard: bool,
    /// Marked to keep by its owner.
    pub saved: bool,
}

fn from_row(row: &AnyRow) -> Result<VoicemailMessage> {
    let duration_ms: i64 = row.try_get("duration_ms")?;
    Ok(VoicemailMessage {
        id: row.try_get("id")?,
        mailbox: row.try_get("mailbox")?,
        caller: row.try_get("caller")?,
        created_at_ms: row.try_get("created_at_ms")?,
        duration_ms: u64::try_from(duration_ms).unwrap_or(0),
        heard: crate::rows::flag(row, "heard")?,
        saved: crate::rows::flag(row, "saved")?,
    })
}

fn mailbox_not_found(tenant: TenantId, mailbox: &str) -> Error {
    Error::NotFound(format!("mailbox {mailbox:?} of tenant {tenant}"))
}

/// Fails with [`Error::NotFound`] unless the tenant has the extension
/// `mailbox`.
pub(crate) async fn ensure_mailbox(
    conn: &mut AnyConnection,
    tenant: TenantId,
    mailbox: &str,
) -> Result<()> {
    if checks::extension_number(mailbox).is_err() {
        return Err(mailbox_not_found(tenant, mailbox));
    }
    sqlx::query("SELECT 1 FROM extensions WHERE tenant_id = $1 AND number = $2")
        .bind(tenant.0)
        .bind(mailbox)
        .fetch_optional(conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| mailbox_not_found(tenant, mailbox))
}

/// Checks that the mailbox exists and has room for one more message of
/// `bytes` and `duration_ms`: [`Error::QuotaExceeded`] when it is full or
/// the tenant's media storage or recording minutes are.
async fn room_for(
    conn: &mut AnyConnection,
    tenant: TenantId,
    mailbox: &str,
    bytes: u64,
    duration_ms: u64,
) -> Result<()> {
    ensure_mailbox(conn, tenant, mailbox).await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2",
    )
    .bind(tenant.0)
    .bind(mailbox)
    .fetch_one(&mut *conn)
    .await?;
    let kept: i64 = row.try_get("n")?;
    if kept >= i64::from(MAX_VOICEMAIL_MESSAGES) {
        return Err(Error::QuotaExceeded(format!(
            "mailbox {mailbox} is full: it keeps at most {MAX_VOICEMAIL_MESSAGES} messages"
        )));
    }
    audio::check_quota(conn, tenant, bytes, 0).await?;
    audio::check_recording_quota(conn, tenant, duration_ms).await
}

/// Deletes the messages of the extension `mailbox`, about to be removed, in
/// `conn`'s transaction; returns their files, to remove once it commits.
pub(crate) async fn take_mailbox_files(
    conn: &mut AnyConnection,
    tenant: TenantId,
    mailbox: &str,
) -> Result<Vec<AudioFile>> {
    let rows = sqlx::query(
        "DELETE FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2 RETURNING id",
    )
    .bind(tenant.0)
    .bind(mailbox)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            Ok(AudioFile::new(tenant, Kind::Voicemail, &id))
        })
        .collect()
}

impl Store {
    /// Leaves a message in `mailbox` (an extension of the tenant): `wav` is an
    /// 8 kHz mono 16-bit WAV of `duration_ms`, at most
    /// [`MAX_VOICEMAIL_BYTES`], stored encrypted. [`Error::QuotaExceeded`]
    /// when the mailbox is full ([`MAX_VOICEMAIL_MESSAGES`]) or the tenant's
    /// media storage is; [`Error::NotFound`] when there is no such mailbox.
    /// Uses the system clock; [`Store::save_voicemail_at`] takes the time.
    pub async fn save_voicemail(
        &self,
        tenant: TenantId,
        mailbox: &str,
        caller: &str,
        wav: &[u8],
        duration_ms: u64,
    ) -> Result<VoicemailMessage> {
        self.save_voicemail_at(
            tenant,
            mailbox,
            caller,
            wav,
            duration_ms,
            audio::system_now_ms(),
        )
        .await
    }

    /// [`Store::save_voicemail`] at `now_ms`.
    pub async fn save_voicemail_at(
        &self,
        tenant: TenantId,
        mailbox: &str,
        caller: &str,
        wav: &[u8],
        duration_ms: u64,
        now_ms: i64,
    ) -> Result<VoicemailMessage> {
        checks::caller(caller)?;
        audio::check_wav(wav, MAX_VOICEMAIL_BYTES, "voicemail")?;
        let bytes = wav.len() as u64;
        // Refuse before writing anything when it cannot fit.
        room_for(
            &mut *self.pool.acquire().await?,
            tenant,
            mailbox,
            bytes,
            duration_ms,
        )
        .await?;
        let key = self.tenant_key_or_create(tenant).await?;
        let id = audio::new_id();
        let file = AudioFile::new(tenant, Kind::Voicemail, &id);
        let aad = audio::voicemail_aad(tenant, mailbox, &id);
        self.write_sealed(file.clone(), key, aad, wav.to_vec())
            .await?;
        let message = VoicemailMessage {
            id,
            mailbox: mailbox.to_owned(),
            caller: caller.to_owned(),
            created_at_ms: now_ms,
            duration_ms,
            heard: false,
            saved: false,
        };
        let row = async {
            let mut tx = self.write_tx().await?;
            room_for(&mut tx, tenant, mailbox, bytes, duration_ms).await?;
            sqlx::query(
                "INSERT INTO voicemail_messages (id, tenant_id, mailbox, caller, created_at_ms, \
                 duration_ms, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&message.id)
            .bind(tenant.0)
            .bind(mailbox)
            .bind(caller)
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
        Ok(message)
    }

    /// The messages of `mailbox`, oldest first. [`Error::NotFound`] when the
    /// tenant has no such mailbox.
    pub async fn voicemail_messages(
        &self,
        tenant: TenantId,
        mailbox: &str,
    ) -> Result<Vec<VoicemailMessage>> {
        let mut tx = self.read_tx().await?;
        ensure_mailbox(&mut tx, tenant, mailbox).await?;
        let rows = sqlx::query(
            "SELECT id, mailbox, caller, created_at_ms, duration_ms, heard, saved \
             FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2 \
             ORDER BY created_at_ms, id",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// One message of `mailbox`, if it holds one with this id.
    pub async fn voicemail_message(
        &self,
        tenant: TenantId,
        mailbox: &str,
        id: &str,
    ) -> Result<Option<VoicemailMessage>> {
        if !audio::is_id(id) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, mailbox, caller, created_at_ms, duration_ms, heard, saved \
             FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2 AND id = $3",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The decrypted WAV of a message of `mailbox`, or `None` when the
    /// mailbox holds no message with this id. A file that is missing or does
    /// not decrypt (altered, or copied from another message) is an error.
    pub async fn voicemail_audio(
        &self,
        tenant: TenantId,
        mailbox: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        if self.voicemail_message(tenant, mailbox, id).await?.is_none() {
            return Ok(None);
        }
        let key = self.tenant_key(tenant).await?.ok_or_else(|| {
            Error::Invalid(format!("tenant {tenant} has voicemail but no media key"))
        })?;
        let aad = audio::voicemail_aad(tenant, mailbox, id);
        let wav = self
            .read_sealed(AudioFile::new(tenant, Kind::Voicemail, id), key, aad)
            .await?;
        Ok(Some(wav))
    }

    /// Sets a message's heard and saved flags; `false` when `mailbox` holds
    /// no message with this id.
    pub async fn mark_voicemail(
        &self,
        tenant: TenantId,
        mailbox: &str,
        id: &str,
        heard: bool,
        saved: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE voicemail_messages SET heard = $1, saved = $2 \
             WHERE tenant_id = $3 AND mailbox = $4 AND id = $5",
        )
        .bind(i64::from(heard))
        .bind(i64::from(saved))
        .bind(tenant.0)
        .bind(mailbox)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a message and its file; `false` when `mailbox` holds no
    /// message with this id.
    pub async fn delete_voicemail(
        &self,
        tenant: TenantId,
        mailbox: &str,
        id: &str,
    ) -> Result<bool> {
        if !audio::is_id(id) {
            return Ok(false);
        }
        let done = sqlx::query(
            "DELETE FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2 AND id = $3",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.remove_files(vec![AudioFile::new(tenant, Kind::Voicemail, id)])
            .await;
        Ok(true)
    }

    /// `(new, old)`: the messages of `mailbox` not heard yet and heard, for
    /// message-waiting indication. `(0, 0)` for an empty or unknown mailbox.
    pub async fn mailbox_counts(&self, tenant: TenantId, mailbox: &str) -> Result<(u32, u32)> {
        let row = sqlx::query(
            "SELECT COUNT(CASE WHEN heard = 0 THEN 1 END) AS new, \
             COUNT(CASE WHEN heard = 1 THEN 1 END) AS old \
             FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> Result<u32> {
            let n: i64 = row.try_get(name)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        Ok((count("new")?, count("old")?))
    }

    /// The (new, old) message counts of every mailbox that holds messages,
    /// of every tenant (the host loads them at start for message-waiting
    /// subscriptions).
    pub async fn all_mailbox_counts(&self) -> Result<Vec<(TenantId, String, (u32, u32))>> {
        let rows = sqlx::query(
            "SELECT tenant_id, mailbox, COUNT(CASE WHEN heard = 0 THEN 1 END) AS new, \
             COUNT(CASE WHEN heard = 1 THEN 1 END) AS old \
             FROM voicemail_messages GROUP BY tenant_id, mailbox ORDER BY tenant_id, mailbox",
        )
        .fetch_all(&self.pool)
        .await?;
        let count = |row: &AnyRow, name: &str| -> Result<u32> {
            let n: i64 = row.try_get(name)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        rows.iter()
            .map(|r| {
                Ok((
                    TenantId(r.try_get("tenant_id")?),
                    r.try_get("mailbox")?,
                    (count(r, "new")?, count(r, "old")?),
                ))
            })
            .collect()
    }

    /// How many days the tenant keeps voicemail: its own choice, or `None`
    /// for the default ([`DEFAULT_VOICEMAIL_RETENTION_DAYS`]).
    /// [`Error::NotFound`] for an unknown tenant.
    pub async fn voicemail_retention(&self, tenant: TenantId) -> Result<Option<u32>> {
        let row = sqlx::query("SELECT voicemail_retention_days FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        let days: Option<i64> = row.try_get("voicemail_retention_days")?;
        Ok(days.and_then(|d| u32::try_from(d).ok()))
    }

    /// Sets how many days the tenant keeps voicemail (1 to
    /// [`MAX_VOICEMAIL_RETENTION_DAYS`]; `None`: the default).
    pub async fn set_voicemail_retention(&self, tenant: TenantId, days: Option<u32>) -> Result<()> {
        if let Some(d) = days
            && !(1..=MAX_VOICEMAIL_RETENTION_DAYS).contains(&d)
        {
            return Err(Error::Invalid(format!(
                "voicemail is kept 1 to {MAX_VOICEMAIL_RETENTION_DAYS} days"
            )));
        }
        let done = sqlx::query("UPDATE tenants SET voicemail_retention_days = $1 WHERE id = $2")
            .bind(days.map(i64::from))
            .bind(tenant.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }

    /// Deletes every message (and its file) older at `now_ms` than its
    /// tenant's retention, saved or not; returns the mailbox of each message
    /// deleted (for message-waiting indication). Reads every tenant's
    /// messages: one of the store's cross-tenant reads, for the server's
    /// maintenance task.
    pub async fn sweep_voicemail(&self, now_ms: i64) -> Result<Vec<(TenantId, String)>> {
        let rows = sqlx::query(
            "DELETE FROM voicemail_messages WHERE id IN ( \
               SELECT m.id FROM voicemail_messages m JOIN tenants t ON t.id = m.tenant_id \
               WHERE m.created_at_ms <= $1 - COALESCE(t.voicemail_retention_days, $2) * $3) \
             RETURNING id, tenant_id, mailbox",
        )
        .bind(now_ms)
        .bind(i64::from(DEFAULT_VOICEMAIL_RETENTION_DAYS))
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut files = Vec::with_capacity(rows.len());
        let mut mailboxes = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            let tenant = TenantId(r.try_get("tenant_id")?);
            files.push(AudioFile::new(tenant, Kind::Voicemail, &id));
            mailboxes.push((tenant, r.try_get("mailbox")?));
        }
        self.remove_files(files).await;
        Ok(mailboxes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantLimits;
    use crate::prompt::tests::wav;

    async fn fixture() -> (Store, TenantId, TenantId) {
        let store = crate::testdb::store().await.expect("open");
        let a = store.add_tenant("a", "a.example").await.expect("a").id;
        let b = store.add_tenant("b", "b.example").await.expect("b").id;
        for t in [a, b] {
            for n in ["100", "101"] {
                store
                    .add_extension(t, n, "pw-long-enough")
                    .await
                    .expect("ext");
            }
        }
        (store, a, b)
    }

    backend_test! {
        async fn messages_round_trip_are_marked_counted_and_deleted() {
            let (store, a, b) = fixture().await;
            let audio = wav(4000);
            let m = store
                .save_voicemail_at(a, "100", "+4930123456", &audio, 500, 1_000)
                .await
                .expect("save");
            assert!(audio::is_id(&m.id), "{}", m.id);
            assert_eq!((m.heard, m.saved, m.created_at_ms), (false, false, 1_000));
            let later = store
                .save_voicemail_at(a, "100", "", &wav(80), 10, 2_000)
                .await
                .expect("save");
            assert_ne!(m.id, later.id);
            assert_eq!(
                store.voicemail_messages(a, "100").await.expect("list"),
                vec![m.clone(), later.clone()]
            );
            assert_eq!(
                store.voicemail_audio(a, "100", &m.id).await.expect("audio"),
                Some(audio)
            );
            // Not from another mailbox, nor another tenant.
            assert_eq!(
                store.voicemail_audio(a, "101", &m.id).await.expect("x"),
                None
            );
            assert_eq!(
                store.voicemail_audio(b, "100", &m.id).await.expect("x"),
                None
            );
            assert!(
                store
                    .voicemail_messages(b, "100")
                    .await
                    .expect("b")
                    .is_empty()
            );
            assert!(matches!(
                store.voicemail_messages(a, "999").await,
                Err(Error::NotFound(_))
            ));

            assert_eq!(
                store.mailbox_counts(a, "100").await.expect("counts"),
                (2, 0)
            );
            assert!(
                store
                    .mark_voicemail(a, "100", &m.id, true, true)
                    .await
                    .expect("mark")
            );
            assert!(
                !store
                    .mark_voicemail(b, "100", &m.id, true, true)
                    .await
                    .expect("other")
            );
            assert_eq!(
                store.mailbox_counts(a, "100").await.expect("counts"),
                (1, 1)
            );
            assert_eq!(
                store.mailbox_counts(a, "nobody").await.expect("counts"),
                (0, 0)
            );
            assert_eq!(
                store.all_mailbox_counts().await.expect("all counts"),
                vec![(a, "100".to_string(), (1, 1))],
                "only mailboxes with messages"
            );
            let marked = store
                .voicemail_message(a, "100", &m.id)
                .await
                .expect("get")
                .expect("found");
            assert!(marked.heard && marked.saved);

            assert!(
                !store
                    .delete_voicemail(b, "100", &m.id)
                    .await
                    .expect("other")
            );
            assert!(
                store
                    .delete_voicemail(a, "100", &m.id)
                    .await
                    .expect("delete")
            );
            assert!(
                !store
                    .delete_voicemail(a, "100", &m.id)
                    .await
                    .expect("again")
            );
            assert_eq!(
                store.voicemail_audio(a, "100", &m.id).await.expect("gone"),
                None
            );
            assert_eq!(store.memory_files(), 1);
        }
    }

    backend_test! {
        async fn a_message_needs_a_mailbox_and_room() {
            let (store, a, _) = fixture().await;
            assert!(matches!(
                store.save_voicemail_at(a, "999", "x", &wav(8), 1, 0).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store
                    .save_voicemail_at(a, "100", "x\n", &wav(8), 1, 0)
                    .await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.save_voicemail_at(a, "100", "x", b"RIFF", 1, 0).await,
                Err(Error::Invalid(_))
            ));
            for i in 0..MAX_VOICEMAIL_MESSAGES {
                store
                    .save_voicemail_at(a, "100", "x", &wav(8), 1, i64::from(i))
                    .await
                    .expect("save");
            }
            let full = store.save_voicemail_at(a, "100", "x", &wav(8), 1, 0).await;
            assert!(
                matches!(&full, Err(Error::QuotaExceeded(m)) if m.contains("mailbox 100 is full")),
                "{full:?}"
            );
            // Another mailbox still takes messages, until the tenant's storage is full.
            store
                .save_voicemail_at(a, "101", "x", &wav(8), 1, 0)
                .await
                .expect("other mailbox");
            let used = store.media_usage(a).await.expect("usage").used_bytes;
            store
                .set_tenant_limits(
                    a,
                    &TenantLimits {
                        media_storage_bytes: Some(used + 10),
                        ..TenantLimits::default()
                    },
                )
                .await
                .expect("limits");
            assert!(matches!(
                store.save_voicemail_at(a, "101", "x", &wav(8), 1, 0).await,
                Err(Error::QuotaExceeded(_))
            ));
            assert_eq!(
                store.memory_files(),
                usize::try_from(MAX_VOICEMAIL_MESSAGES).expect("small") + 1
            );
        }
    }

    backend_test! {
        async fn recording_minutes_bound_each_tenants_messages() {
            let (store, a, b) = fixture().await;
            let quota = TenantLimits::default().recording_quota_ms();
            assert_eq!(store.recording_ms_left(a).await.expect("left"), quota);
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
            assert_eq!(store.recording_ms_left(a).await.expect("left"), 60_000);
            store
                .save_voicemail_at(a, "100", "x", &wav(8), 45_000, 0)
                .await
                .expect("fits");
            assert_eq!(store.recording_ms_left(a).await.expect("left"), 15_000);
            let usage = store.media_usage(a).await.expect("usage");
            assert_eq!(
                (usage.recorded_ms, usage.recording_quota_ms),
                (45_000, 60_000)
            );
            let over = store
                .save_voicemail_at(a, "101", "x", &wav(8), 15_001, 0)
                .await;
            assert!(
                matches!(&over, Err(Error::QuotaExceeded(m)) if m.contains("recording minutes")),
                "{over:?}"
            );
            store
                .save_voicemail_at(a, "101", "x", &wav(8), 15_000, 0)
                .await
                .expect("exactly what is left");
            assert_eq!(store.recording_ms_left(a).await.expect("left"), 0);
            // The other tenant's minutes are its own.
            assert_eq!(store.recording_ms_left(b).await.expect("left"), quota);
            store
                .save_voicemail_at(b, "100", "x", &wav(8), 60_000, 0)
                .await
                .expect("b records");
        }
    }

    backend_test! {
        async fn the_sweep_deletes_what_is_past_each_tenants_retention() {
            let (store, a, b) = fixture().await;
            assert_eq!(store.voicemail_retention(a).await.expect("get"), None);
            store
                .set_voicemail_retention(a, Some(1))
                .await
                .expect("set");
            assert_eq!(store.voicemail_retention(a).await.expect("get"), Some(1));
            for bad in [Some(0), Some(MAX_VOICEMAIL_RETENTION_DAYS + 1)] {
                assert!(matches!(
                    store.set_voicemail_retention(a, bad).await,
                    Err(Error::Invalid(_))
                ));
            }
            assert!(matches!(
                store.set_voicemail_retention(TenantId(99), None).await,
                Err(Error::NotFound(_))
            ));
            let t0 = 1_700_000_000_000;
            let old_a = store
                .save_voicemail_at(a, "100", "x", &wav(8), 1, t0)
                .await
                .expect("a");
            store
                .mark_voicemail(a, "100", &old_a.id, true, true)
                .await
                .expect("saved");
            let new_a = store
                .save_voicemail_at(a, "100", "x", &wav(8), 1, t0 + DAY_MS)
                .await
                .expect("a");
            let old_b = store
                .save_voicemail_at(b, "100", "x", &wav(8), 1, t0)
                .await
                .expect("b");

            // A day later A's first message, saved or not, is past A's one-day
            // retention; B keeps its messages for the default 60 days.
            assert_eq!(
                store.sweep_voicemail(t0 + DAY_MS - 1).await.expect("sweep"),
                []
            );
            assert_eq!(
                store.sweep_voicemail(t0 + DAY_MS).await.expect("sweep"),
                [(a, "100".to_string())]
            );
            let left: Vec<_> = store
                .voicemail_messages(a, "100")
                .await
                .expect("list")
                .into_iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(left, vec![new_a.id]);
            assert_eq!(store.memory_files(), 2);
            let sixty_days = i64::from(DEFAULT_VOICEMAIL_RETENTION_DAYS) * DAY_MS;
            // Just short of 60 days only A's second message goes.
            assert_eq!(
                store
                    .sweep_voicemail(t0 + sixty_days - 1)
                    .await
                    .expect("sweep")
                    .len(),
                1
            );
            assert_eq!(
                store.voicemail_messages(b, "100").await.expect("b")[0].id,
                old_b.id
            );
            assert_eq!(
                store.sweep_voicemail(t0 + sixty_days).await.expect("sweep"),
                [(b, "100".to_string())]
            );
            assert!(
                store
                    .voicemail_messages(b, "100")
                    .await
                    .expect("b")
                    .is_empty()
            );
            assert_eq!(store.memory_files(), 0);
        }
    }

    backend_test! {
        async fn removing_an_extension_or_tenant_removes_its_voicemail() {
            let (store, a, b) = fixture().await;
            let m = store
                .save_voicemail_at(a, "100", "x", &wav(8), 1, 0)
                .await
                .expect("a");
            store
                .save_voicemail_at(a, "101", "x", &wav(8), 1, 0)
                .await
                .expect("a");
            store
                .save_voicemail_at(b, "100", "x", &wav(8), 1, 0)
                .await
                .expect("b");
            store
                .put_prompt_at(a, "menu", &wav(8), 1, 0)
                .await
                .expect("prompt");
            store.remove_extension(a, "100").await.expect("remove");
            assert_eq!(store.memory_files(), 3);
            // A new extension of the same number starts with an empty mailbox.
            store
                .add_extension(a, "100", "pw-long-enough")
                .await
                .expect("ext");
            assert!(
                store
                    .voicemail_messages(a, "100")
                    .await
                    .expect("list")
                    .is_empty()
            );
            assert_eq!(
                store.voicemail_audio(a, "100", &m.id).await.expect("gone"),
                None
            );
            store.delete_tenant(a).await.expect("delete");
            assert_eq!(store.memory_files(), 1, "only B's message is left");
            assert_eq!(
                store.voicemail_messages(b, "100").await.expect("b").len(),
                1
            );
        }
    }
}
