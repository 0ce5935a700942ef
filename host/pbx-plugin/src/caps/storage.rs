//! `pbx:plugin/storage`: the tenant's key-value data, with a byte quota.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::bindings::storage as wit;
use crate::runtime::HostState;

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The write would take the tenant over its quota (or the key is too long).
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// The backing store cannot be reached.
    #[error("storage unavailable")]
    Unavailable,
}

/// One tenant's key-value store. The host implements this over its database;
/// [`MemoryStorage`] is an in-memory version.
pub trait Storage: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Store `value` under `key`, within the tenant's quota. `until` is when
    /// the invocation's wall-clock cap runs out: a write that cannot be made
    /// durable by then fails with [`StorageError::Unavailable`].
    fn set(&self, key: &str, value: &[u8], until: Instant) -> Result<(), StorageError>;
    /// Remove `key` (kept when that cannot be made durable by `until`).
    fn delete(&self, key: &str, until: Instant);
}

/// In-memory storage with a byte quota (keys plus values).
#[derive(Debug)]
pub struct MemoryStorage {
    quota_bytes: usize,
    inner: Mutex<(HashMap<String, Vec<u8>>, usize)>,
}

impl MemoryStorage {
    /// An empty store holding at most `quota_bytes` of keys plus values.
    pub fn new(quota_bytes: usize) -> Self {
        Self {
            quota_bytes,
            inner: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Bytes in use (keys plus values).
    pub fn used_bytes(&self) -> usize {
        self.inner.lock().1
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.lock().0.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], _until: Instant) -> Result<(), StorageError> {
        if key.len() > MAX_KEY_LEN {
            return Err(StorageError::QuotaExceeded);
        }
        let mut guard = self.inner.lock();
        let (map, used) = &mut *guard;
        let old = map.get(key).map_or(0, |v| key.len() + v.len());
        let new_used = *used - old + key.len() + value.len();
        if new_used > self.quota_bytes {
            return Err(StorageError::QuotaExceeded);
        }
        map.insert(key.to_owned(), value.to_vec());
        *used = new_used;
        Ok(())
    }

    fn delete(&self, key: &str, _until: Instant) {
        let mut guard = self.inner.lock();
        let (map, used) = &mut *guard;
        if let Some(v) = map.remove(key) {
            *used -= key.len() + v.len();
        }
    }
}

impl wit::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.caps.storage.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), wit::StorageError> {
        let until = self.wall_deadline();
        self.caps
            .storage
            .set(&key, &value, until)
            .map_err(|e| match e {
                StorageError::QuotaExceeded => wit::StorageError::QuotaExceeded,
                StorageError::Unavailable => wit::StorageError::Unavailable,
            })
    }

    fn delete(&mut self, key: String) {
        let until = self.wall_deadline();
        self.caps.storage.delete(&key, until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn quota_counts_keys_and_values_and_frees_on_delete() {
        let s = MemoryStorage::new(10);
        assert_eq!(s.set("k", b"12345", now()), Ok(()));
        assert_eq!(s.used_bytes(), 6);
        assert_eq!(
            s.set("j", b"12345", now()),
            Err(StorageError::QuotaExceeded)
        );
        // Replacing a value counts only the difference.
        assert_eq!(s.set("k", b"123456789", now()), Ok(()));
        assert_eq!(s.used_bytes(), 10);
        s.delete("k", now());
        assert_eq!(s.used_bytes(), 0);
        assert_eq!(s.get("k"), None);
        assert_eq!(s.set("j", b"12345", now()), Ok(()));
        assert_eq!(s.get("j").as_deref(), Some(&b"12345"[..]));
    }

    #[test]
    fn long_keys_are_refused() {
        let s = MemoryStorage::new(10_000);
        let key = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(s.set(&key, b"", now()), Err(StorageError::QuotaExceeded));
    }
}
