//! Tenant audio at rest: the files that hold prompts and voicemail messages,
//! the per-tenant key that encrypts them (table `tenant_media_keys`), and the
//! tenant's media quota. `prompt.rs` and `voicemail.rs` keep the rows that
//! describe the files.
//!
//! # Layout
//! A store opened on a data directory keeps audio under
//! `DATA_DIR/media/<tenant id>/` ([`MEDIA_DIR`]): `prompts/<file>`, a fresh
//! random name per upload, `voicemail/<message id>` and
//! `recordings/<recording id>`. Directories are made
//! 0700 and files 0600 on unix. An in-memory store
//! ([`Store::open_in_memory`]) keeps the same files in memory.
//!
//! # Encryption
//! Each tenant has its own random 256-bit key, made on its first audio write
//! and stored sealed with the data directory's secret key
//! ([`crate::SECRET_KEY_FILE`]), bound to the tenant's id. Deleting a tenant
//! deletes its key, which shreds its audio wherever copies of the files are.
//!
//! A file is `PBXA`, a format byte (1), a random 96-bit nonce, then the
//! ChaCha20-Poly1305 ciphertext of the WAV and its tag. The associated data
//! names the tenant and the prompt's file, or the mailbox and the message, so
//! a file copied to another name, mailbox or tenant does not decrypt. A file
//! never starts with `RIFF`: nothing reads it as audio without the key.
//!
//! # Writes
//! A file is written under a temporary name, synced and renamed into place.
//! It is written before its row, and the row is added in one write
//! transaction with the quota check; a row is deleted before its file. A
//! crash in between leaves a file without a row, which
//! [`Store::remove_orphan_media`] deletes once it is an hour old.
//!
//! # Quota
//! A tenant's prompts and messages count by their WAV size against its
//! [`crate::TenantLimits::media_storage_bytes`] (pbx-model's
//! `DEFAULT_MEDIA_STORAGE_BYTES` when not set). The check runs inside the
//! transaction that adds the row, so two writes cannot both pass it. The
//! lengths of its recordings (voicemail messages and recorded calls) count the same way against
//! its [`crate::TenantLimits::recording_minutes`] (pbx-model's
//! `DEFAULT_RECORDING_MINUTES` when not set); [`Store::recording_ms_left`]
//! tells a recording about to start how long it may be.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::{Error, Result, Store, TenantId, TenantLimits, tenant};

/// The directory of tenant audio inside the data directory.
pub const MEDIA_DIR: &str = "media";

/// The first bytes of every audio file.
const MAGIC: &[u8; 4] = b"PBXA";
/// The format byte after [`MAGIC`].
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;
const KEY_LEN: usize = 32;
/// A file without a row is left alone until it is this old: it may belong to
/// a write in progress.
const ORPHAN_AGE_MS: i64 = 3_600_000;
/// The shortest WAV file: a RIFF header, a `fmt ` chunk and a `data` header.
const MIN_WAV_BYTES: usize = 44;

/// What a tenant's audio takes and may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUsage {
    /// Bytes of its prompts and voicemail messages (their WAV sizes).
    pub used_bytes: u64,
    /// Its media storage quota, bytes.
    pub quota_bytes: u64,
    /// Prompts kept.
    pub prompts: u32,
    /// Voicemail messages kept, in all its mailboxes.
    pub voicemail_messages: u32,
    /// Length of its recordings (voicemail messages), milliseconds.
    #[serde(default)]
    pub recorded_ms: u64,
    /// Its recording quota, milliseconds.
    #[serde(default)]
    pub recording_quota_ms: u64,
}

impl MediaUsage {
    /// Whether `bytes` more fit within the quota.
    pub fn has_room_for(&self, bytes: u64) -> bool {
        self.used_bytes.saturating_add(bytes) <= self.quota_bytes
    }
}

/// Where audio files live: a directory, or memory for an in-memory store.
pub(crate) enum AudioFiles {
    Dir(PathBuf),
    Memory(Mutex<HashMap<PathBuf, Vec<u8>>>),
}

impl fmt::Debug for AudioFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioFiles::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            AudioFiles::Memory(_) => f.write_str("Memory"),
        }
    }
}

/// Which kind of audio a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Prompt,
    Voicemail,
    /// A recorded call (`recording.rs`).
    Recording,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Prompt => "prompts",
            Kind::Voicemail => "voicemail",
            Kind::Recording => "recordings",
        }
    }
}

/// One audio file: whose, of which kind, and its name (an id made by
/// [`new_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudioFile {
    tenant: TenantId,
    kind: Kind,
    name: String,
}

impl AudioFile {
    pub(crate) fn new(tenant: TenantId, kind: Kind, name: &str) -> AudioFile {
        AudioFile {
            tenant,
            kind,
            name: name.to_owned(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn relative(&self) -> PathBuf {
        Path::new(&self.tenant.0.to_string())
            .join(self.kind.dir())
            .join(&self.name)
    }
}

impl fmt::Display for AudioFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audio file {}", self.relative().display())
    }
}

/// A fresh random id (128 bits, URL-safe base64): a message's id, a prompt's
/// file name.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `id` has the shape [`new_id`] gives (so it is safe in a path).
pub(crate) fn is_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The wall clock in Unix milliseconds, for the methods whose signature has no
/// `now_ms` (each has an `_at` twin that takes it).
pub(crate) fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Checks that `wav` looks like a WAV file of at most `max` bytes (the
/// callers convert and check the audio itself).
pub(crate) fn check_wav(wav: &[u8], max: u64, what: &str) -> Result<()> {
    if wav.len() < MIN_WAV_BYTES || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(Error::Invalid(format!("{what} audio is not a WAV file")));
    }
    if wav.len() as u64 > max {
        return Err(Error::Invalid(format!(
            "{what} audio is {} bytes; at most {max} are kept",
            wav.len()
        )));
    }
    Ok(())
}

/// Associated data of an audio file: a label, the tenant, the kind and the
/// names that place the file (none of which holds a NUL).
fn aad(tenant: TenantId, kind: Kind, parts: &[&str]) -> Vec<u8> {
    let mut aad = b"pbx audio v1".to_vec();
    for part in [tenant.0.to_string().as_str(), kind.dir()]
        .into_iter()
        .chain(parts.iter().copied())
    {
        aad.push(0);
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// The associated data of a prompt's file.
pub(crate) fn prompt_aad(tenant: TenantId, file: &str) -> Vec<u8> {
    aad(tenant, Kind::Prompt, &[file])
}

/// The associated data of a voicemail message's file.
pub(crate) fn voicemail_aad(tenant: TenantId, mailbox: &str, id: &str) -> Vec<u8> {
    aad(tenant, Kind::Voicemail, &[mailbox, id])
}

pub(crate) fn recording_aad(tenant: TenantId, id: &str) -> Vec<u8> {
    aad(tenant, Kind::Recording, &[id])
}

fn key_aad(tenant: TenantId) -> Vec<u8> {
    format!("pbx tenant media key v1\0{}", tenant.0).into_bytes()
}

/// A tenant's audio key. Its `Debug` output never shows the key.
pub(crate) struct TenantKey(ChaCha20Poly1305);

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantKey(..)")
    }
}

impl TenantKey {
    fn from_bytes(key: &[u8; KEY_LEN]) -> TenantKey {
        TenantKey(ChaCha20Poly1305::new(&(*key).into()))
    }

    /// `MAGIC || FORMAT || nonce || ciphertext || tag`.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
            .map_err(|_| Error::Invalid("audio could not be encrypted".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of what [`TenantKey::seal`] made with the same `aad`;
    /// `None` when the file is malformed, altered, or sealed for other
    /// associated data or under another key.
    fn open(&self, aad: &[u8], file: &[u8]) -> Option<Vec<u8>> {
        let rest = file.strip_prefix(MAGIC)?.strip_prefix(&[FORMAT])?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.0
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

#[cfg(unix)]
fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced,
/// then renamed over it (and the directory synced, so the rename lasts).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("an audio file has no directory"))?;
    create_private_dirs(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", new_id()));
    let written = crate::secret::create_new_private(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn not_found_is_ok(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl AudioFiles {
    pub(crate) fn in_dir(data_dir: &Path) -> AudioFiles {
        AudioFiles::Dir(data_dir.join(MEDIA_DIR))
    }

    pub(crate) fn in_memory() -> AudioFiles {
        AudioFiles::Memory(Mutex::new(HashMap::new()))
    }

    fn memory(
        files: &Mutex<HashMap<PathBuf, Vec<u8>>>,
    ) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Vec<u8>>> {
        files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, file: &AudioFile, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            AudioFiles::Dir(root) => write_atomic(&root.join(file.relative()), bytes),
            AudioFiles::Memory(files) => {
                Self::memory(files).insert(file.relative(), bytes.to_vec());
                Ok(())
            }
        }
    }

    fn read(&self, file: &AudioFile) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            AudioFiles::Dir(root) => match std::fs::read(root.join(file.relative())) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            AudioFiles::Memory(files) => Ok(Self::memory(files).get(&file.relative()).cloned()),
        }
    }

    fn remove(&self, file: &AudioFile) -> std::io::Result<()> {
        match self {
            AudioFiles::Dir(root) => {
                not_found_is_ok(std::fs::remove_file(root.join(file.relative())))
            }
            AudioFiles::Memory(files) => {
                Self::memory(files).remove(&file.relative());
                Ok(())
            }
        }
    }

    fn remove_tenant(&self, tenant: TenantId) -> std::io::Result<()> {
        let dir = PathBuf::from(tenant.0.to_string());
        match self {
            AudioFiles::Dir(root) => not_found_is_ok(std::fs::remove_dir_all(root.join(dir))),
            AudioFiles::Memory(files) => {
                Self::memory(files).retain(|path, _| !path.starts_with(&dir));
                Ok(())
            }
        }
    }
}

/// Runs file work (and the encryption that goes with it) off the async
/// threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io(what, std::io::Error::other(e.to_string())))?
}

impl Store {
    /// The tenant's audio key, made (and stored sealed) when it has none yet.
    /// [`Error::NotFound`] for an unknown tenant.
    pub(crate) async fn tenant_key_or_create(&self, tenant: TenantId) -> Result<TenantKey> {
        if let Some(key) = self.tenant_key(tenant).await? {
            return Ok(key);
        }
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let sealed = self.secrets.seal(&key_aad(tenant), &key)?;
        let mut tx = self.write_tx().await?;
        tenant::ensure_tenant(&mut tx, tenant).await?;
        // A concurrent first write may have made one: the first stays.
        sqlx::query(
            "INSERT INTO tenant_media_keys (tenant_id, sealed_key) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant.0)
        .bind(&sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.tenant_key(tenant).await?.ok_or_else(|| {
            Error::NotFound(format!("tenant {tenant} (deleted while its key was made)"))
        })
    }

    /// The tenant's audio key, if it has one.
    pub(crate) async fn tenant_key(&self, tenant: TenantId) -> Result<Option<TenantKey>> {
        let row = sqlx::query("SELECT sealed_key FROM tenant_media_keys WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: String = row.try_get("sealed_key")?;
        let bad = || {
            Error::Invalid(format!(
                "the media key of tenant {tenant} does not open with this data directory's \
                 secret key"
            ))
        };
        let key = self
            .secrets
            .open(&key_aad(tenant), &sealed)
            .ok_or_else(bad)?;
        let key: [u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| bad())?;
        Ok(Some(TenantKey::from_bytes(&key)))
    }

    /// Encrypts `plain` with `key` bound to `aad` and writes it as `file`.
    pub(crate) async fn write_sealed(
        &self,
        file: AudioFile,
        key: TenantKey,
        aad: Vec<u8>,
        plain: Vec<u8>,
    ) -> Result<()> {
        let files = self.audio.clone();
        blocking("writing audio", move || {
            let sealed = key.seal(&aad, &plain)?;
            files
                .write(&file, &sealed)
                .map_err(|e| Error::io(format!("writing {file}"), e))
        })
        .await
    }

    /// Reads `file` and decrypts it with `key` and `aad`. A missing file, or
    /// one that does not decrypt (altered, or copied from elsewhere), is
    /// [`Error::Invalid`].
    pub(crate) async fn read_sealed(
        &self,
        file: AudioFile,
        key: TenantKey,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let files = self.audio.clone();
        blocking("reading audio", move || {
            let sealed = files
                .read(&file)
                .map_err(|e| Error::io(format!("reading {file}"), e))?
                .ok_or_else(|| Error::Invalid(format!("{file} is missing")))?;
            key.open(&aad, &sealed).ok_or_else(|| {
                Error::Invalid(format!(
                    "{file} does not decrypt: it was altered or does not belong there"
                ))
            })
        })
        .await
    }

    /// Deletes files whose rows are gone. A failure is logged, not returned:
    /// the rows are deleted already, and the orphan sweep retries.
    pub(crate) async fn remove_files(&self, files: Vec<AudioFile>) {
        if files.is_empty() {
            return;
        }
        let audio = self.audio.clone();
        let done = blocking("removing audio", move || {
            for file in &files {
                if let Err(e) = audio.remove(file) {
                    tracing::warn!(error = %e, %file, "cannot remove an audio file; the orphan sweep will retry");
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot remove audio files");
        }
    }

    /// Deletes every audio file of a tenant (whose key is gone already).
    pub(crate) async fn remove_tenant_files(&self, tenant: TenantId) {
        let audio = self.audio.clone();
        let done = blocking("removing a tenant's audio", move || {
            audio
                .remove_tenant(tenant)
                .map_err(|e| Error::io(format!("removing the audio of tenant {tenant}"), e))
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot remove a deleted tenant's audio; the orphan sweep will retry");
        }
    }

    /// What the tenant's audio takes and may take. [`Error::NotFound`] for an
    /// unknown tenant.
    pub async fn media_usage(&self, tenant: TenantId) -> Result<MediaUsage> {
        let mut tx = self.read_tx().await?;
        tenant::ensure_tenant(&mut tx, tenant).await?;
        let used_bytes = bytes_used(&mut tx, tenant).await?;
        let own = own_limits(&mut tx, tenant).await?;
        let recorded_ms = recorded_ms(&mut tx, tenant).await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM prompts WHERE tenant_id = $1) AS prompts, \
             (SELECT COUNT(*) FROM voicemail_messages WHERE tenant_id = $2) AS messages",
        )
        .bind(tenant.0)
        .bind(tenant.0)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let count = |name: &str| -> Result<u32> {
            let n: i64 = row.try_get(name)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        Ok(MediaUsage {
            used_bytes,
            quota_bytes: own.media_storage_quota(),
            prompts: count("prompts")?,
            voicemail_messages: count("messages")?,
            recorded_ms,
            recording_quota_ms: own.recording_quota_ms(),
        })
    }

    /// How long a recording of the tenant starting now may be before its
    /// recording minutes are used up (0 when they are).
    pub async fn recording_ms_left(&self, tenant: TenantId) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let quota = own_limits(&mut conn, tenant).await?.recording_quota_ms();
        let used = recorded_ms(&mut conn, tenant).await?;
        Ok(quota.saturating_sub(used))
    }

    /// Deletes audio files that no row names and that are at least an hour
    /// old at `now_ms` (left by a crash between writing a file and its row,
    /// or a failed removal), and the empty directories of deleted tenants.
    /// Returns how many files it deleted. Reads every tenant's rows: one of the
    /// store's cross-tenant reads, for the server's maintenance task.
    pub async fn remove_orphan_media(&self, now_ms: i64) -> Result<u64> {
        let AudioFiles::Dir(root) = &*self.audio else {
            // In memory, a file is always written with its row or removed.
            return Ok(0);
        };
        let mut tx = self.read_tx().await?;
        let tenants: HashSet<i64> = sqlx::query("SELECT id FROM tenants")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut named: HashSet<(i64, &'static str, String)> = HashSet::new();
        for (sql, kind) in [
            ("SELECT tenant_id, file AS name FROM prompts", Kind::Prompt),
            (
                "SELECT tenant_id, id AS name FROM voicemail_messages",
                Kind::Voicemail,
            ),
            (
                "SELECT tenant_id, id AS name FROM call_recordings",
                Kind::Recording,
            ),
        ] {
            for row in sqlx::query(sql).fetch_all(&mut *tx).await? {
                named.insert((row.try_get("tenant_id")?, kind.dir(), row.try_get("name")?));
            }
        }
        tx.commit().await?;
        let root = root.clone();
        blocking("sweeping orphaned audio", move || {
            Ok(remove_orphans(&root, &tenants, &named, now_ms))
        })
        .await
    }
}

/// The walk of [`Store::remove_orphan_media`]. Only entries named like the
/// store names them are looked at; anything else is left alone.
fn remove_orphans(
    root: &Path,
    tenants: &HashSet<i64>,
    named: &HashSet<(i64, &'static str, String)>,
    now_ms: i64,
) -> u64 {
    let entries = |dir: &Path| -> Vec<std::fs::DirEntry> {
        match std::fs::read_dir(dir) {
            Ok(list) => list.filter_map(std::result::Result::ok).collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot list audio files");
                Vec::new()
            }
        }
    };
    let old_enough = |entry: &std::fs::DirEntry| {
        entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .is_some_and(|modified| now_ms.saturating_sub(modified) >= ORPHAN_AGE_MS)
    };
    let mut removed = 0;
    for tenant_dir in entries(root) {
        let Some(tenant) = tenant_dir
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        for kind in [Kind::Prompt, Kind::Voicemail, Kind::Recording] {
            let dir = tenant_dir.path().join(kind.dir());
            for file in entries(&dir) {
                let name = file.file_name().to_string_lossy().into_owned();
                let temporary = name.starts_with('.') && name.contains(".tmp-");
                if !(is_id(&name) || temporary)
                    || named.contains(&(tenant, kind.dir(), name.clone()))
                    || !old_enough(&file)
                {
                    continue;
                }
                match std::fs::remove_file(file.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, file = %file.path().display(), "cannot remove an orphaned audio file");
                    }
                }
            }
            if !tenants.contains(&tenant) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if !tenants.contains(&tenant) {
            let _ = std::fs::remove_dir(tenant_dir.path());
        }
    }
    removed
}

/// Bytes of the tenant's prompts and messages.
pub(crate) async fn bytes_used(conn: &mut AnyConnection, tenant: TenantId) -> Result<u64> {
    let row = sqlx::query(
        "SELECT (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM prompts WHERE tenant_id = $1) \
         + (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM voicemail_messages WHERE tenant_id = $2) \
         + (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM call_recordings WHERE tenant_id = $3) AS used",
    )
    .bind(tenant.0)
    .bind(tenant.0)
    .bind(tenant.0)
    .fetch_one(conn)
    .await?;
    let used: i64 = row.try_get("used")?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// Milliseconds of the tenant's recordings (voicemail messages and recorded
/// calls).
pub(crate) async fn recorded_ms(conn: &mut AnyConnection, tenant: TenantId) -> Result<u64> {
    let row = sqlx::query(
        "SELECT (SELECT CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) FROM voicemail_messages \
           WHERE tenant_id = $1) \
         + (SELECT CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) FROM call_recordings WHERE tenant_id = $2) \
         AS used",
    )
    .bind(tenant.0)
    .bind(tenant.0)
    .fetch_one(conn)
    .await?;
    let used: i64 = row.try_get("used")?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// The tenant's own media quotas (`None` where it has none).
async fn own_limits(conn: &mut AnyConnection, tenant: TenantId) -> Result<TenantLimits> {
    let row = sqlx::query(
        "SELECT media_storage_bytes, recording_minutes FROM tenant_limits WHERE tenant_id = $1",
    )
    .bind(tenant.0)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(TenantLimits::default());
    };
    let bytes: Option<i64> = row.try_get("media_storage_bytes")?;
    let minutes: Option<i64> = row.try_get("recording_minutes")?;
    Ok(TenantLimits {
        media_storage_bytes: bytes.and_then(|b| u64::try_from(b).ok()),
        recording_minutes: minutes.and_then(|m| u32::try_from(m).ok()),
        ..TenantLimits::default()
    })
}

/// Fails with [`Error::QuotaExceeded`] unless the tenant's recordings, with
/// `adding_ms` more, stay within its recording minutes.
pub(crate) async fn check_recording_quota(
    conn: &mut AnyConnection,
    tenant: TenantId,
    adding_ms: u64,
) -> Result<()> {
    let used = recorded_ms(conn, tenant).await?;
    let quota = own_limits(conn, tenant).await?.recording_quota_ms();
    if used.saturating_add(adding_ms) > quota {
        return Err(Error::QuotaExceeded(format!(
            "the tenant's recording minutes are used up: {used} of its {quota} ms are recorded \
             and this needs {adding_ms} more"
        )));
    }
    Ok(())
}

/// Fails with [`Error::QuotaExceeded`] unless the tenant's audio, with
/// `adding` bytes more and `freeing` bytes less, stays within its quota.
pub(crate) async fn check_quota(
    conn: &mut AnyConnection,
    tenant: TenantId,
    adding: u64,
    freeing: u64,
) -> Result<()> {
    let used = bytes_used(conn, tenant).await?;
    let quota = own_limits(conn, tenant).await?.media_storage_quota();
    if used.saturating_sub(freeing).saturating_add(adding) > quota {
        return Err(Error::QuotaExceeded(format!(
            "the tenant's media storage is full: {used} of its {quota} bytes are used and \
             this needs {adding} more"
        )));
    }
    Ok(())
}

#[cfg(test)]
impl Store {
    /// Audio files an in-memory store holds (0 for a file-backed one).
    pub(crate) fn memory_files(&self) -> usize {
        match &*self.audio {
            AudioFiles::Memory(files) => AudioFiles::memory(files).len(),
            AudioFiles::Dir(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_what_the_quota_leaves() {
        let usage = MediaUsage {
            used_bytes: 900,
            quota_bytes: 1000,
            prompts: 0,
            voicemail_messages: 1,
            recorded_ms: 0,
            recording_quota_ms: 60_000,
        };
        assert!(usage.has_room_for(100));
        assert!(!usage.has_room_for(101));
        let over = MediaUsage {
            used_bytes: 2000,
            ..usage
        };
        assert!(!over.has_room_for(0));
    }

    #[test]
    fn sealed_audio_opens_only_with_its_key_and_associated_data() {
        let key = TenantKey::from_bytes(&[7; KEY_LEN]);
        let wav = b"RIFF....WAVEfmt and the rest".to_vec();
        let aad = voicemail_aad(TenantId(1), "100", "m1");
        let sealed = key.seal(&aad, &wav).expect("seal");
        assert_eq!(&sealed[..5], b"PBXA\x01");
        assert_eq!(sealed.len(), HEADER_LEN + wav.len() + 16);
        assert_eq!(key.open(&aad, &sealed), Some(wav.clone()));
        for other in [
            voicemail_aad(TenantId(2), "100", "m1"),
            voicemail_aad(TenantId(1), "101", "m1"),
            voicemail_aad(TenantId(1), "100", "m2"),
            prompt_aad(TenantId(1), "m1"),
        ] {
            assert_eq!(key.open(&other, &sealed), None);
        }
        assert_eq!(
            TenantKey::from_bytes(&[8; KEY_LEN]).open(&aad, &sealed),
            None
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("tag") ^= 1;
        assert_eq!(key.open(&aad, &flipped), None);
        assert_eq!(key.open(&aad, &sealed[..HEADER_LEN]), None);
        assert_eq!(key.open(&aad, b"RIFF"), None);
        assert_ne!(key.seal(&aad, &wav).expect("seal"), sealed, "fresh nonce");
        assert_eq!(format!("{key:?}"), "TenantKey(..)");
    }

    #[test]
    fn ids_are_url_safe_and_checked() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        assert_ne!(id, new_id());
        for bad in [
            "",
            "..",
            "a/b",
            &"a".repeat(21),
            &"a".repeat(23),
            "aaaaaaaaaaaaaaaaaaaa..",
        ] {
            assert!(!is_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn wav_shape_is_checked() {
        let mut wav = b"RIFF\0\0\0\0WAVE".to_vec();
        wav.resize(MIN_WAV_BYTES, 0);
        assert!(check_wav(&wav, 100, "prompt").is_ok());
        assert!(check_wav(&wav, 43, "prompt").is_err());
        assert!(check_wav(&wav[..43], 100, "prompt").is_err());
        let mut not = wav.clone();
        not[0] = b'X';
        assert!(check_wav(&not, 100, "prompt").is_err());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    backend_test! {
        async fn files_on_disk_are_sealed_and_bound_to_their_place() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = crate::testdb::store_in(dir.path()).await.expect("open");
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
            let wav = crate::prompt::tests::wav(800);
            let path = |t: TenantId, kind: Kind, name: &str| {
                dir.path()
                    .join(MEDIA_DIR)
                    .join(t.0.to_string())
                    .join(kind.dir())
                    .join(name)
            };
            let m1 = store
                .save_voicemail_at(a, "100", "x", &wav, 100, 0)
                .await
                .expect("m1");
            let m2 = store
                .save_voicemail_at(a, "101", "x", &wav, 100, 0)
                .await
                .expect("m2");
            let mb = store
                .save_voicemail_at(b, "100", "x", &wav, 100, 0)
                .await
                .expect("mb");
            let on_disk = std::fs::read(path(a, Kind::Voicemail, &m1.id)).expect("file");
            assert_ne!(&on_disk[..4], b"RIFF");
            assert_eq!(&on_disk[..4], b"PBXA");
            assert!(
                !contains(&on_disk, &wav[44..108]),
                "no plaintext audio on disk"
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode(&path(a, Kind::Voicemail, &m1.id)), 0o600);
                assert_eq!(mode(&dir.path().join(MEDIA_DIR)), 0o700);
            }

            // A file copied over another message's, in the same tenant or
            // another, does not decrypt there.
            for (t, mailbox, id) in [(a, "101", &m2.id), (b, "100", &mb.id)] {
                std::fs::copy(
                    path(a, Kind::Voicemail, &m1.id),
                    path(t, Kind::Voicemail, id),
                )
                .expect("copy");
                let read = store.voicemail_audio(t, mailbox, id).await;
                assert!(matches!(read, Err(Error::Invalid(_))), "{read:?}");
            }
            assert_eq!(
                store.voicemail_audio(a, "100", &m1.id).await.expect("read"),
                Some(wav.clone())
            );

            // Prompts are sealed the same way.
            store
                .put_prompt_at(a, "menu", &wav, 100, 0)
                .await
                .expect("prompt");
            let prompts: Vec<_> = std::fs::read_dir(
                dir.path()
                    .join(MEDIA_DIR)
                    .join(a.0.to_string())
                    .join("prompts"),
            )
            .expect("dir")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
            .collect();
            assert_eq!(prompts.len(), 1);
            assert_eq!(&prompts[0][..4], b"PBXA");

            // Deleting the tenant deletes its key and its files.
            store.delete_tenant(a).await.expect("delete");
            assert!(!dir.path().join(MEDIA_DIR).join(a.0.to_string()).exists());
            assert!(store.tenant_key(a).await.expect("key").is_none());
            assert!(path(b, Kind::Voicemail, &mb.id).exists());
        }
    }

    backend_test! {
        async fn orphaned_files_are_removed_once_an_hour_old() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = crate::testdb::store_in(dir.path()).await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            store
                .add_extension(a, "100", "pw-long-enough")
                .await
                .expect("ext");
            let wav = crate::prompt::tests::wav(80);
            let kept = store
                .save_voicemail_at(a, "100", "x", &wav, 10, 0)
                .await
                .expect("save");
            let media = dir.path().join(MEDIA_DIR);
            let vm = media.join(a.0.to_string()).join("voicemail");
            let gone_tenant = media.join("999").join("prompts");
            std::fs::create_dir_all(&gone_tenant).expect("dir");
            for (d, name) in [
                (&vm, new_id()),
                (&vm, format!(".{}.tmp-{}", new_id(), new_id())),
                (&gone_tenant, new_id()),
            ] {
                std::fs::write(d.join(name), b"PBXA").expect("orphan");
            }
            std::fs::write(vm.join("README"), b"not ours").expect("other");
            let now = system_now_ms();
            assert_eq!(
                store.remove_orphan_media(now).await.expect("sweep"),
                0,
                "too young"
            );
            assert_eq!(
                store
                    .remove_orphan_media(now + 2 * ORPHAN_AGE_MS)
                    .await
                    .expect("sweep"),
                3
            );
            assert!(
                !media.join("999").exists(),
                "a deleted tenant's directory goes"
            );
            assert!(
                vm.join("README").exists(),
                "what the store did not name stays"
            );
            assert_eq!(
                store
                    .voicemail_audio(a, "100", &kept.id)
                    .await
                    .expect("read"),
                Some(wav)
            );
            assert_eq!(
                crate::testdb::store()
                    .await
                    .expect("mem")
                    .remove_orphan_media(now)
                    .await
                    .expect("sweep"),
                0
            );
        }
    }
}
