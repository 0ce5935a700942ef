//! Encrypted backups of a data directory: `pbx backup create | verify |
//! restore`, and the scheduled backups of `[backup]`.
//!
//! An archive is an age file (passphrase through scrypt, or X25519 recipients)
//! holding a tar stream: a consistent snapshot of the database (`VACUUM INTO`
//! while the server runs), every other file of the data directory (the secret
//! key that tenant audio and trunk passwords are encrypted under, the API
//! signing keys, tenant prompts and voicemail), and last `MANIFEST.json`,
//! the SHA-256 and length of each. The compiled-plugin cache is left out (it
//! is rebuilt from the plugins in the database), and so are the live database
//! files, which the snapshot replaces.
//!
//! Verifying decrypts the whole archive (age authenticates every chunk) and
//! checks each file against the manifest, writing nothing. Restoring does the
//! same into a new, empty directory, private to its owner, and removes what
//! it wrote when anything fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

pub use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::Store;

/// What the manifest says the archive is.
pub const FORMAT: &str = "pbx-backup/1";
const MANIFEST: &str = "MANIFEST.json";
/// Data directory entries never archived: the live database (replaced by its
/// snapshot) and the compiled-plugin cache.
const SKIPPED: [&str; 4] = ["pbx.db", "pbx.db-wal", "pbx.db-shm", "plugin-cache"];
/// Most files and bytes one archive may unpack (a bound on what a hostile
/// archive makes a restore write).
const MAX_FILES: usize = 10_000_000;

/// Why a backup could not be made, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("database snapshot failed: {0}")]
    Store(#[from] store::Error),
    #[error("the archive cannot be decrypted: wrong passphrase or key")]
    WrongKey,
    #[error("the archive cannot be decrypted: {0}")]
    Decrypt(String),
    #[error("the archive is damaged: {0}")]
    Damaged(String),
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, BackupError>;

/// Whom an archive is encrypted to.
pub enum Seal {
    /// A passphrase (age's scrypt recipient).
    Passphrase(SecretString),
    /// X25519 public keys (`age1…`): only the holders of the identities
    /// decrypt, and scheduled backups need no secret on the server.
    Recipients(Vec<age::x25519::Recipient>),
}

/// What opens an archive.
pub enum Unseal {
    Passphrase(SecretString),
    /// The contents of an age identity file (`AGE-SECRET-KEY-1…` lines).
    Identities(Vec<age::x25519::Identity>),
}

impl Seal {
    /// Recipients from their `age1…` strings.
    pub fn recipients(keys: &[String]) -> Result<Seal> {
        let parsed = keys
            .iter()
            .map(|k| {
                k.trim()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|e| BackupError::Invalid(format!("recipient {k:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(BackupError::Invalid("no recipient given".into()));
        }
        Ok(Seal::Recipients(parsed))
    }
}

impl Unseal {
    /// Identities from an identity file's text (comments and blank lines
    /// skipped).
    pub fn identities(text: &str) -> Result<Unseal> {
        let parsed = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                l.parse::<age::x25519::Identity>()
                    .map_err(|e| BackupError::Invalid(format!("identity file: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(BackupError::Invalid(
                "the identity file holds no key".into(),
            ));
        }
        Ok(Unseal::Identities(parsed))
    }
}

/// One archived file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The last entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub pbx_version: String,
    pub created_at_ms: i64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Writes an encrypted backup of `data_dir` (whose database `store` is) to
/// `out`, which must not exist yet. Safe while the server runs.
pub async fn create(store: &Store, data_dir: &Path, out: &Path, seal: Seal) -> Result<Manifest> {
    if out.exists() {
        return Err(BackupError::Invalid(format!(
            "{} exists already: a backup never overwrites a file",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".pbx-backup-")
        .tempdir_in(parent)?;
    let snapshot = work.path().join("pbx.db");
    store.snapshot_into(&snapshot).await?;
    let (data_dir, out) = (data_dir.to_path_buf(), out.to_path_buf());
    let partial = work.path().join("archive.age");
    let manifest = tokio::task::spawn_blocking(move || {
        let manifest = write_archive(&data_dir, &snapshot, &partial, seal)?;
        // Only a complete archive takes the name asked for.
        std::fs::rename(&partial, &out)?;
        Ok::<_, BackupError>(manifest)
    })
    .await
    .map_err(|e| BackupError::Io(io::Error::other(e)))??;
    drop(work);
    Ok(manifest)
}

/// The files of `data_dir` a backup holds, by archive path (the snapshot in
/// place of the live database).
fn files_of(data_dir: &Path, snapshot: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    files.insert("pbx.db".to_string(), snapshot.to_path_buf());
    let mut dirs = vec![(data_dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if prefix.is_empty() && (SKIPPED.contains(&name.as_str()) || name.starts_with('.')) {
                continue;
            }
            let path = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push((entry.path(), format!("{path}/")));
            } else if kind.is_file() {
                files.insert(path, entry.path());
            }
        }
    }
    Ok(files)
}

fn write_archive(data_dir: &Path, snapshot: &Path, out: &Path, seal: Seal) -> Result<Manifest> {
    let mut tar = tar::Builder::new(sealed_file(out, seal)?);
    let mut manifest = Manifest {
        format: FORMAT.into(),
        pbx_version: env!("CARGO_PKG_VERSION").into(),
        created_at_ms: now_ms(),
        files: Vec::new(),
    };
    for (name, path) in files_of(data_dir, snapshot)? {
        // A file that vanished since the listing (a message deleted) is
        // simply not in this backup. Files stream through: a large
        // database is never held in memory.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let len = file.metadata()?.len();
        let mut hashed = Hashing {
            inner: BufReader::new(file).take(len),
            hash: Sha256::new(),
            read: 0,
        };
        append(&mut tar, &name, len, &mut hashed)?;
        if hashed.read != len {
            return Err(BackupError::Invalid(format!(
                "{name} changed while it was archived"
            )));
        }
        manifest.files.push(FileEntry {
            path: name,
            bytes: len,
            sha256: hex::encode(hashed.hash.finalize()),
        });
    }
    let listing = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    append(&mut tar, MANIFEST, listing.len() as u64, &listing[..])?;
    let sealed = tar.into_inner()?;
    let mut file = sealed.finish()?;
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok(manifest)
}

/// A new private file at `out` that what is written to is encrypted to
/// `seal`; `finish()` ends the age stream.
pub(crate) fn sealed_file(
    out: &Path,
    seal: Seal,
) -> Result<age::stream::StreamWriter<BufWriter<File>>> {
    let encryptor = match seal {
        Seal::Passphrase(p) => age::Encryptor::with_user_passphrase(p),
        Seal::Recipients(keys) => {
            age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| BackupError::Invalid(e.to_string()))?
        }
    };
    Ok(encryptor.wrap_output(BufWriter::new(private_file(out)?))?)
}

/// The decrypted contents of the age file `archive`; a wrong key is
/// [`BackupError::WrongKey`], and reading fails on any altered or missing
/// chunk.
pub(crate) fn opened_file(archive: &Path, unseal: &Unseal) -> Result<impl Read + use<>> {
    let file = BufReader::new(File::open(archive)?);
    let decryptor = age::Decryptor::new(file).map_err(decrypt_error)?;
    match unseal {
        Unseal::Passphrase(p) => {
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
        Unseal::Identities(ids) => decryptor.decrypt(ids.iter().map(|i| i as &dyn age::Identity)),
    }
    .map_err(decrypt_error)
}

/// Adds `len` bytes read from `data` to the archive as file `name`.
pub(crate) fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: impl Read,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Checks `archive` without restoring it: it decrypts, and every file
/// matches the manifest.
pub fn verify(archive: &Path, unseal: &Unseal) -> Result<Manifest> {
    read_archive(archive, unseal, None)
}

/// Restores `archive` into `target`, a directory that is new or empty. On
/// failure nothing of it is left in `target`.
pub fn restore(archive: &Path, unseal: &Unseal, target: &Path) -> Result<Manifest> {
    if target.exists() && std::fs::read_dir(target)?.next().is_some() {
        return Err(BackupError::Invalid(format!(
            "{} is not empty: restore into a new directory",
            target.display()
        )));
    }
    private_dir(target)?;
    let restored = read_archive(archive, unseal, Some(target));
    if restored.is_err()
        && let Ok(entries) = std::fs::read_dir(target)
    {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    restored
}

/// Decrypts and reads `archive`, writing its files under `target` when
/// given, and checks them against the manifest.
fn read_archive(archive: &Path, unseal: &Unseal, target: Option<&Path>) -> Result<Manifest> {
    let mut tar = tar::Archive::new(opened_file(archive, unseal)?);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in tar.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        if manifest.is_some() {
            return Err(BackupError::Damaged("data after the manifest".into()));
        }
        if seen.len() >= MAX_FILES {
            return Err(BackupError::Damaged("too many files".into()));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BackupError::Damaged("an entry that is not a file".into()));
        }
        let name = entry.path().map_err(damaged)?.to_path_buf();
        let name = safe_name(&name)?;
        if name == MANIFEST {
            let mut text = Vec::new();
            entry.by_ref().take(64 << 20).read_to_end(&mut text)?;
            manifest = Some(
                serde_json::from_slice(&text)
                    .map_err(|e| BackupError::Damaged(format!("manifest: {e}")))?,
            );
            continue;
        }
        let mut sink: Box<dyn Write> = match target {
            Some(dir) => {
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    private_dir(parent)?;
                }
                Box::new(BufWriter::new(private_file(&path)?))
            }
            None => Box::new(io::sink()),
        };
        let mut hashed = Hashing {
            inner: &mut entry,
            hash: Sha256::new(),
            read: 0,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // A read that fails is a damaged archive; a write, our disk.
            let n = hashed.read(&mut buf).map_err(damaged)?;
            if n == 0 {
                break;
            }
            sink.write_all(&buf[..n])?;
        }
        sink.flush()?;
        let (bytes, sha256) = (hashed.read, hex::encode(hashed.hash.finalize()));
        if seen.insert(name.clone(), (bytes, sha256)).is_some() {
            return Err(BackupError::Damaged(format!("{name} twice")));
        }
    }
    let manifest = manifest.ok_or_else(|| BackupError::Damaged("no manifest".into()))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Damaged(format!(
            "format {:?}, not {FORMAT}",
            manifest.format
        )));
    }
    let listed: BTreeMap<String, (u64, String)> = manifest
        .files
        .iter()
        .map(|f| (f.path.clone(), (f.bytes, f.sha256.clone())))
        .collect();
    if listed != seen {
        let differ: Vec<&String> = listed
            .keys()
            .chain(seen.keys())
            .filter(|k| listed.get(*k) != seen.get(*k))
            .collect();
        return Err(BackupError::Damaged(format!(
            "files differ from the manifest: {differ:?}"
        )));
    }
    if !seen.contains_key("pbx.db") {
        return Err(BackupError::Damaged("no database in the archive".into()));
    }
    Ok(manifest)
}

/// An archive path as a relative path of plain components.
fn safe_name(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| BackupError::Damaged("a name that is not UTF-8".into()))?,
            ),
            _ => {
                return Err(BackupError::Damaged(format!(
                    "{} leaves the directory",
                    path.display()
                )));
            }
        }
    }
    if parts.is_empty() {
        return Err(BackupError::Damaged("an empty name".into()));
    }
    Ok(parts.join("/"))
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    match e {
        age::DecryptError::DecryptionFailed
        | age::DecryptError::NoMatchingKeys
        | age::DecryptError::KeyDecryptionFailed => BackupError::WrongKey,
        other => BackupError::Decrypt(other.to_string()),
    }
}

pub(crate) fn damaged(e: io::Error) -> BackupError {
    BackupError::Damaged(e.to_string())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new file readable by its owner only.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A directory (and its parents) private to its owner.
fn private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// `[backup]`: an archive every `every` into `dir`, encrypted to
/// `recipients`, the newest `keep` kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub data_dir: PathBuf,
    pub dir: PathBuf,
    pub every: std::time::Duration,
    pub keep: usize,
    pub recipients: Vec<String>,
}

/// Scheduled archives are named `pbx-<UTC time>.age`.
const SCHEDULED_PREFIX: &str = "pbx-";

/// Makes one scheduled backup now and deletes the oldest beyond `keep`.
/// Returns the new archive's path.
pub async fn scheduled(store: &Store, schedule: &Schedule) -> Result<PathBuf> {
    private_dir(&schedule.dir)?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let out = schedule.dir.join(format!("{SCHEDULED_PREFIX}{stamp}.age"));
    let seal = Seal::recipients(&schedule.recipients)?;
    create(store, &schedule.data_dir, &out, seal).await?;
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&schedule.dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX) && n.ends_with(".age"))
        })
        .collect();
    // The names sort by time.
    archives.sort();
    let extra = archives.len().saturating_sub(schedule.keep);
    for old in &archives[..extra] {
        std::fs::remove_file(old)?;
    }
    Ok(out)
}

/// Runs [`scheduled`] every `schedule.every` until `stop`; a failure is
/// logged and tried again at the next time.
pub async fn run_schedule(
    store: Store,
    schedule: Schedule,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the server starts with a fresh backup.
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match scheduled(&store, &schedule).await {
            Ok(path) => tracing::info!(archive = %path.display(), "backup written"),
            Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(p: &str) -> SecretString {
        SecretString::from(p.to_string())
    }

    async fn data_dir() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let t = store.add_tenant("acme", "acme.example").await.unwrap();
        store
            .add_extension(t.id, "1000", "pw-1000-long")
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn an_archive_verifies_restores_and_refuses_the_wrong_key() {
        let (dir, store) = data_dir().await;
        std::fs::create_dir_all(dir.path().join("plugin-cache")).unwrap();
        std::fs::write(dir.path().join("plugin-cache/x.bin"), b"cache").unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("b.age");
        let made = create(
            &store,
            dir.path(),
            &out,
            Seal::Passphrase(pass("s3cret words")),
        )
        .await
        .unwrap();
        let names: Vec<&str> = made.files.iter().map(|f| f.path.as_str()).collect();
        assert!(
            names.contains(&"pbx.db") && names.contains(&"secret.key"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("plugin-cache")),
            "{names:?}"
        );
        // Encrypted: neither the database's header nor the manifest shows.
        let raw = std::fs::read(&out).unwrap();
        assert!(raw.starts_with(b"age-encryption.org/v1"));
        assert!(!raw.windows(15).any(|w| w == b"SQLite format 3"));
        // Never overwrites.
        assert!(
            create(&store, dir.path(), &out, Seal::Passphrase(pass("x")))
                .await
                .is_err()
        );

        assert!(matches!(
            verify(&out, &Unseal::Passphrase(pass("wrong"))),
            Err(BackupError::WrongKey)
        ));
        assert_eq!(
            verify(&out, &Unseal::Passphrase(pass("s3cret words"))).unwrap(),
            made
        );

        let target = out_dir.path().join("restored");
        restore(&out, &Unseal::Passphrase(pass("s3cret words")), &target).unwrap();
        let restored = Store::open(&target).await.unwrap();
        assert_eq!(restored.directory().await.unwrap().extensions.len(), 1);
        assert_eq!(
            std::fs::read(target.join("secret.key")).unwrap(),
            std::fs::read(dir.path().join("secret.key")).unwrap()
        );
        // A second restore into the same place is refused.
        assert!(restore(&out, &Unseal::Passphrase(pass("s3cret words")), &target).is_err());
    }

    #[tokio::test]
    async fn recipients_and_damage() {
        let (dir, store) = data_dir().await;
        let key = age::x25519::Identity::generate();
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("b.age");
        let seal = Seal::recipients(&[key.to_public().to_string()]).unwrap();
        create(&store, dir.path(), &out, seal).await.unwrap();
        let ours = Unseal::identities(&format!("# key\n{}\n", secret_text(&key))).unwrap();
        verify(&out, &ours).unwrap();
        let other = age::x25519::Identity::generate();
        let theirs = Unseal::identities(&secret_text(&other)).unwrap();
        assert!(matches!(verify(&out, &theirs), Err(BackupError::WrongKey)));
        // A flipped byte in the payload fails its authentication; the restore
        // leaves nothing behind.
        let mut raw = std::fs::read(&out).unwrap();
        let at = raw.len() - 100;
        raw[at] ^= 1;
        std::fs::write(&out, raw).unwrap();
        assert!(verify(&out, &ours).is_err());
        let target = out_dir.path().join("restored");
        assert!(restore(&out, &ours, &target).is_err());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    fn secret_text(key: &age::x25519::Identity) -> String {
        use age::secrecy::ExposeSecret;
        key.to_string().expose_secret().to_string()
    }

    #[tokio::test]
    async fn scheduled_backups_keep_the_newest() {
        let (dir, store) = data_dir().await;
        let key = age::x25519::Identity::generate();
        let out = tempfile::tempdir().unwrap();
        let schedule = Schedule {
            data_dir: dir.path().to_path_buf(),
            dir: out.path().join("backups"),
            every: std::time::Duration::from_secs(3600),
            keep: 2,
            recipients: vec![key.to_public().to_string()],
        };
        let mut made = Vec::new();
        for _ in 0..3 {
            made.push(scheduled(&store, &schedule).await.unwrap());
        }
        let mut left: Vec<PathBuf> = std::fs::read_dir(&schedule.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        assert_eq!(left, made[1..].to_vec(), "the oldest is gone");
        let unseal = Unseal::identities(&secret_text(&key)).unwrap();
        verify(&made[2], &unseal).unwrap();
    }

    #[test]
    fn archive_names_stay_inside() {
        assert_eq!(
            safe_name(Path::new("media/1/a.wav")).unwrap(),
            "media/1/a.wav"
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(safe_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
