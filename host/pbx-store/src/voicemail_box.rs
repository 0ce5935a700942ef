//! A mailbox's PIN (table `voicemail_boxes`): an argon2id hash, and the
//! mailbox's own brute-force state, persisted so a restart does not reset it.
//!
//! # Design
//! A PIN is 4 to 12 digits, a small space whatever the hash, so the limit on
//! guessing is what protects it: [`MAX_PIN_ATTEMPTS`] wrong tries in a row
//! lock the mailbox for [`PIN_LOCKOUT_MS`], counted per mailbox whatever line
//! the tries come from. A try is counted in one write transaction before its
//! PIN is hashed, so tries made at once cannot get past the limit together; a
//! right PIN clears the count. Hashing runs off the async threads, at most
//! [`PIN_HASHES_AT_ONCE`] at a time (each takes argon2's 19 MiB).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use sqlx::Row;
use tokio::sync::Semaphore;

use crate::voicemail::ensure_mailbox;
use crate::{Error, Result, Store, TenantId, checks};

/// Wrong PINs in a row that lock a mailbox.
pub const MAX_PIN_ATTEMPTS: u32 = 5;
/// How long a locked mailbox refuses every PIN, ms (15 minutes).
pub const PIN_LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// PIN hashes computed at once.
const PIN_HASHES_AT_ONCE: usize = 2;
/// Most argon2 memory a stored hash may ask for, KiB: one asking for more
/// (an edited row) does not verify.
const MAX_HASH_KIB: u32 = 64 * 1024;

static PIN_HASHES: Semaphore = Semaphore::const_new(PIN_HASHES_AT_ONCE);

/// What a PIN check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The PIN is right; the mailbox's wrong tries are forgotten.
    Accepted,
    /// The PIN is wrong; this many more wrong tries lock the mailbox.
    Wrong { attempts_left: u32 },
    /// Too many wrong tries: every PIN is refused until then (Unix ms).
    Locked { until_ms: i64 },
    /// The mailbox has no PIN set.
    NoPin,
}

/// Runs an argon2 job off the async threads, within the hashing limit.
async fn hashing<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = PIN_HASHES
        .acquire()
        .await
        .map_err(|e| Error::Invalid(format!("PIN hashing: {e}")))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| Error::Invalid(format!("PIN hashing: {e}")))
}

fn hash_pin(pin: &str) -> Result<String> {
    argon2::Argon2::default()
        .hash_password(pin.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("hashing a PIN: {e}")))
}

fn verify_pin(pin: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    match argon2::Params::try_from(&parsed) {
        Ok(params) if params.m_cost() <= MAX_HASH_KIB => {}
        _ => return false,
    }
    argon2::Argon2::default()
        .verify_password(pin.as_bytes(), &parsed)
        .is_ok()
}

impl Store {
    /// Sets `mailbox`'s PIN (4 to 12 digits, stored as an argon2id hash) and
    /// unlocks it. [`Error::NotFound`] when the tenant has no such mailbox.
    pub async fn set_voicemail_pin(
        &self,
        tenant: TenantId,
        mailbox: &str,
        pin: &str,
    ) -> Result<()> {
        checks::pin(pin)?;
        ensure_mailbox(&mut *self.pool.acquire().await?, tenant, mailbox).await?;
        let pin = pin.to_owned();
        let hash = hashing(move || hash_pin(&pin)).await??;
        let mut tx = self.write_tx().await?;
        ensure_mailbox(&mut tx, tenant, mailbox).await?;
        sqlx::query(
            "INSERT INTO voicemail_boxes (tenant_id, mailbox, pin_hash, failed_attempts, \
             locked_until_ms) VALUES ($1, $2, $3, 0, NULL) ON CONFLICT (tenant_id, mailbox) \
             DO UPDATE SET pin_hash = excluded.pin_hash, failed_attempts = 0, \
             locked_until_ms = NULL",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a PIN for `mailbox` at `now_ms` (see the module docs for the
    /// limit on tries). [`Error::NotFound`] when the tenant has no such
    /// mailbox.
    pub async fn check_voicemail_pin(
        &self,
        tenant: TenantId,
        mailbox: &str,
        pin: &str,
        now_ms: i64,
    ) -> Result<PinCheck> {
        // Count the try before hashing anything.
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT pin_hash, failed_attempts, locked_until_ms FROM voicemail_boxes \
             WHERE tenant_id = $1 AND mailbox = $2",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            ensure_mailbox(&mut tx, tenant, mailbox).await?;
            return Ok(PinCheck::NoPin);
        };
        let hash: String = row.try_get("pin_hash")?;
        let failed: i64 = row.try_get("failed_attempts")?;
        let locked_until: Option<i64> = row.try_get("locked_until_ms")?;
        if let Some(until_ms) = locked_until.filter(|u| *u > now_ms) {
            return Ok(PinCheck::Locked { until_ms });
        }
        let limit = i64::from(MAX_PIN_ATTEMPTS);
        if failed >= limit {
            // Every try allowed is in progress: refuse without hashing.
            return Ok(PinCheck::Locked {
                until_ms: now_ms + PIN_LOCKOUT_MS,
            });
        }
        sqlx::query(
            "UPDATE voicemail_boxes SET failed_attempts = failed_attempts + 1 \
             WHERE tenant_id = $1 AND mailbox = $2",
        )
        .bind(tenant.0)
        .bind(mailbox)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let this_try = failed + 1;

        let right = checks::pin(pin).is_ok() && {
            let pin = pin.to_owned();
            hashing(move || verify_pin(&pin, &hash)).await?
        };
        let (outcome, failed_after, locked_until) = if right {
            (PinCheck::Accepted, Some(0), None)
        } else if this_try >= limit {
            let until_ms = now_ms + PIN_LOCKOUT_MS;
            (PinCheck::Locked { until_ms }, Some(0), Some(until_ms))
        } else {
            let attempts_left = u32::try_from(limit - this_try).unwrap_or(0);
            (PinCheck::Wrong { attempts_left }, None, None)
        };
        if let Some(failed) = failed_after {
            sqlx::query(
                "UPDATE voicemail_boxes SET failed_attempts = $1, locked_until_ms = $2 \
                 WHERE tenant_id = $3 AND mailbox = $4",
            )
            .bind(failed)
            .bind(locked_until)
            .bind(tenant.0)
            .bind(mailbox)
            .execute(&self.pool)
            .await?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_test! {
        async fn wrong_pins_lock_the_mailbox_until_the_lockout_passes() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = crate::testdb::store_in(dir.path()).await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            for t in [a, b] {
                store
                    .add_extension(t, "100", "pw-long-enough")
                    .await
                    .expect("ext");
            }
            let t0 = 1_700_000_000_000;
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "1234", t0)
                    .await
                    .expect("check"),
                PinCheck::NoPin
            );
            assert!(matches!(
                store.check_voicemail_pin(a, "999", "1234", t0).await,
                Err(Error::NotFound(_))
            ));
            for bad in ["123", "12345678901234", "12a4"] {
                assert!(matches!(
                    store.set_voicemail_pin(a, "100", bad).await,
                    Err(Error::Invalid(_))
                ));
            }
            assert!(matches!(
                store.set_voicemail_pin(a, "999", "1234").await,
                Err(Error::NotFound(_))
            ));
            store
                .set_voicemail_pin(a, "100", "4321")
                .await
                .expect("set");
            store
                .set_voicemail_pin(b, "100", "1111")
                .await
                .expect("set");

            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "4321", t0)
                    .await
                    .expect("check"),
                PinCheck::Accepted
            );
            // Four wrong tries count down (a malformed PIN counts too); the fifth locks.
            for left in [4, 3, 2, 1] {
                let pin = if left == 2 { "not-a-pin" } else { "0000" };
                assert_eq!(
                    store
                        .check_voicemail_pin(a, "100", pin, t0)
                        .await
                        .expect("check"),
                    PinCheck::Wrong {
                        attempts_left: left
                    }
                );
            }
            let until_ms = t0 + PIN_LOCKOUT_MS;
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "0000", t0)
                    .await
                    .expect("check"),
                PinCheck::Locked { until_ms }
            );
            // Locked: even the right PIN is refused, across a reopening of the store.
            store.close().await;
            let store = crate::testdb::store_in(dir.path()).await.expect("reopen");
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "4321", until_ms - 1)
                    .await
                    .expect("check"),
                PinCheck::Locked { until_ms }
            );
            // The lock is this mailbox's only.
            assert_eq!(
                store
                    .check_voicemail_pin(b, "100", "1111", t0)
                    .await
                    .expect("check"),
                PinCheck::Accepted
            );
            // Once it has passed, five tries again, and the right PIN clears them.
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "0000", until_ms)
                    .await
                    .expect("check"),
                PinCheck::Wrong { attempts_left: 4 }
            );
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "4321", until_ms)
                    .await
                    .expect("check"),
                PinCheck::Accepted
            );
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "0000", until_ms)
                    .await
                    .expect("check"),
                PinCheck::Wrong { attempts_left: 4 }
            );
            // Setting a PIN unlocks and forgets the tries; only the hash is stored.
            store
                .set_voicemail_pin(a, "100", "24680")
                .await
                .expect("set");
            let stored: String =
                sqlx::query("SELECT pin_hash FROM voicemail_boxes WHERE tenant_id = $1")
                    .bind(a.0)
                    .fetch_one(&store.pool)
                    .await
                    .expect("row")
                    .get("pin_hash");
            assert!(stored.starts_with("$argon2id$") && !stored.contains("24680"));
            assert_eq!(
                store
                    .check_voicemail_pin(a, "100", "24680", until_ms)
                    .await
                    .expect("check"),
                PinCheck::Accepted
            );
        }
    }

    #[test]
    fn greedy_or_malformed_hashes_never_verify() {
        let h = hash_pin("1234").expect("hash");
        assert!(verify_pin("1234", &h));
        assert!(!verify_pin("1235", &h));
        assert!(!verify_pin("1234", "not a hash"));
        let greedy = h.replace("m=19456", "m=1048576");
        assert_ne!(greedy, h);
        assert!(!verify_pin("1234", &greedy));
    }
}
