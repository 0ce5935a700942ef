//! Encryption of secrets the host must be able to read back (trunk passwords).
//!
//! ChaCha20-Poly1305 with one random 256-bit key per data directory, kept in
//! [`SECRET_KEY_FILE`] (mode 0600). Each value gets a fresh random 96-bit nonce
//! and is stored as base64(nonce || ciphertext || tag). The caller passes
//! associated data naming the row, so a ciphertext copied into another row does
//! not decrypt.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;

use crate::{Error, Result};

/// The key file inside the data directory.
pub const SECRET_KEY_FILE: &str = "secret.key";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// The data directory's secret key. Its `Debug` output never shows the key.
pub(crate) struct SecretKey {
    cipher: ChaCha20Poly1305,
    /// `SHA-256("pbx audit chain v1" || key)`: the key of the audit log's HMAC
    /// chain, kept outside the database like the key it comes from.
    audit: [u8; KEY_LEN],
    /// `SHA-256("pbx digest nonces v1" || key)`: the key digest nonces are
    /// made with on every node of a cluster, so that any node checks a nonce
    /// another one issued.
    nonce: [u8; KEY_LEN],
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A fresh random key that lives only in memory.
    pub(crate) fn random() -> SecretKey {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        SecretKey::from_bytes(&key)
    }

    fn from_bytes(key: &[u8; KEY_LEN]) -> SecretKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"pbx audit chain v1");
        h.update(key);
        let audit = h.finalize().into();
        let mut h = Sha256::new();
        h.update(b"pbx digest nonces v1");
        h.update(key);
        SecretKey {
            cipher: ChaCha20Poly1305::new(&(*key).into()),
            audit,
            nonce: h.finalize().into(),
        }
    }

    /// The audit chain's MAC key (derived; never stored in the database).
    pub(crate) fn audit_key(&self) -> &[u8; KEY_LEN] {
        &self.audit
    }

    /// The digest nonce key (derived).
    pub(crate) fn nonce_key(&self) -> &[u8; KEY_LEN] {
        &self.nonce
    }

    /// Reads the key from `path`, or creates the file (mode 0600 on unix) with a
    /// fresh random key when it does not exist yet.
    pub(crate) fn load_or_create(path: &Path) -> Result<SecretKey> {
        let io = |e: std::io::Error| {
            Error::Db(sqlx::Error::Io(std::io::Error::new(
                e.kind(),
                format!("secret key {}: {e}", path.display()),
            )))
        };
        match create_new_private(path) {
            Ok(mut file) => {
                let mut key = [0u8; KEY_LEN];
                rand::rng().fill_bytes(&mut key);
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(SecretKey::from_bytes(&key))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let mut bytes = Vec::with_capacity(KEY_LEN);
                std::fs::File::open(path)
                    .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
                    .map_err(io)?;
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    Error::Invalid(format!(
                        "secret key {} is not {KEY_LEN} bytes long",
                        path.display()
                    ))
                })?;
                Ok(SecretKey::from_bytes(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plaintext` bound to `aad`: base64(nonce || ciphertext).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Invalid("secret could not be encrypted".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(BASE64.encode(out))
    }

    /// Decrypts what [`SecretKey::seal`] produced with the same `aad`. `None` when
    /// the value is malformed, was sealed for other associated data or under
    /// another key.
    pub(crate) fn open(&self, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let bytes = BASE64.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

/// Creates `path`, which must not exist, readable by the owner only.
#[cfg(unix)]
pub(crate) fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_with_matching_aad_only() {
        let key = SecretKey::random();
        let sealed = key.seal(b"row-1", b"hunter2").expect("seal");
        assert_eq!(key.open(b"row-1", &sealed), Some(b"hunter2".to_vec()));
        assert_eq!(key.open(b"row-2", &sealed), None);
        assert_eq!(SecretKey::random().open(b"row-1", &sealed), None);
        assert_eq!(key.open(b"row-1", "not base64!"), None);
        assert_eq!(key.open(b"row-1", "AAAA"), None);
        // A fresh nonce each time: the same secret never encrypts the same way.
        assert_ne!(key.seal(b"row-1", b"hunter2").expect("seal"), sealed);
        assert!(!format!("{key:?}").contains("cipher"));
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SECRET_KEY_FILE);
        let first = SecretKey::load_or_create(&path).expect("create");
        let sealed = first.seal(b"a", b"secret").expect("seal");
        let again = SecretKey::load_or_create(&path).expect("load");
        assert_eq!(again.open(b"a", &sealed), Some(b"secret".to_vec()));
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(
            SecretKey::load_or_create(&path),
            Err(Error::Invalid(_))
        ));
    }
}
