//! Encrypted backups of a data directory: `pbx backup create | verify |
//! restore`, and the scheduled backups of `[backup]`.
//!
//! An archive is an age file (passphrase through scrypt, or X25519 recipients)
//! holding a tar stream: a consistent copy of the database, every other file
//! of the data directory (the secret key that tenant audio and trunk
//! passwords are encrypted under, the API signing keys, tenant prompts and
//! voicemail), and last `MANIFEST.json`, the SHA-256 and length of each and
//! which database the copy is of. The compiled-plugin cache is left out (it
//! is rebuilt from the plugins in the database), and so are the live database
//! files, which the copy replaces.
//!
//! The copy of an SQLite database is `pbx.db`, a snapshot (`VACUUM INTO`
//! while the server runs); of a PostgreSQL database, `pbx.pgdump`, written by
//! `pg_dump --format=custom` (one consistent snapshot too). Either is first
//! written to a private temporary directory next to the archive, since a tar
//! entry's length comes before its bytes, and then streamed into the archive.
//!
//! Verifying decrypts the whole archive (age authenticates every chunk) and
//! checks each file against the manifest, writing nothing. Restoring does the
//! same into a new, empty directory, private to its owner, and removes what
//! it wrote when anything fails; a PostgreSQL dump is then loaded with
//! `pg_restore` into an empty database when one is named
//! ([`restore_with_database`]), or left in the directory for the operator.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

pub use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::Store;

/// What the manifest says the archive is.
pub const FORMAT: &str = "pbx-backup/1";
const MANIFEST: &str = "MANIFEST.json";
/// Data directory entries never archived: the live database (replaced by its
/// snapshot), a dump left by an earlier restore (replaced by a new one) and
/// the compiled-plugin cache.
const SKIPPED: [&str; 5] = [
    SQLITE_FILE,
    "pbx.db-wal",
    "pbx.db-shm",
    PG_DUMP_FILE,
    "plugin-cache",
];
/// The archive's copy of an SQLite database.
const SQLITE_FILE: &str = "pbx.db";
/// The archive's copy of a PostgreSQL database (`pg_dump --format=custom`).
pub const PG_DUMP_FILE: &str = "pbx.pgdump";
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
    #[error(
        "{0} is not installed (not on PATH nor in /usr/lib/postgresql/*/bin): \
         install PostgreSQL's client programs (Debian: postgresql-client)"
    )]
    NotInstalled(&'static str),
    /// `pg_dump` or `pg_restore` could not run or failed; `detail` is what it
    /// said on standard error.
    #[error("{program} failed: {detail}")]
    Tool {
        program: &'static str,
        detail: String,
    },
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

/// Which database an archive holds a copy of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// An SQLite snapshot, `pbx.db` (what archives without the field hold).
    #[default]
    Sqlite,
    /// A PostgreSQL dump in `pg_dump`'s custom format, `pbx.pgdump`.
    Postgres,
}

impl DatabaseKind {
    /// The archive path of the database copy.
    pub fn file(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => SQLITE_FILE,
            DatabaseKind::Postgres => PG_DUMP_FILE,
        }
    }
}

/// The last entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub pbx_version: String,
    pub created_at_ms: i64,
    /// What the database copy is; older archives, without it, are SQLite.
    #[serde(default)]
    pub database: DatabaseKind,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Writes an encrypted backup of `data_dir` (whose database `store` is) to
/// `out`, which must not exist yet. Safe while the server runs. On
/// PostgreSQL the database is dumped with `pg_dump`, which must be installed.
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
    let kind = match store.backend() {
        store::Backend::Sqlite => DatabaseKind::Sqlite,
        store::Backend::Postgres => DatabaseKind::Postgres,
    };
    let snapshot = work.path().join(kind.file());
    match (kind, store.postgres_url()) {
        (DatabaseKind::Postgres, Some(url)) => {
            let (url, dump) = (url.to_string(), snapshot.clone());
            tokio::task::spawn_blocking(move || pg_dump(&url, &dump))
                .await
                .map_err(|e| BackupError::Io(io::Error::other(e)))??;
        }
        _ => store.snapshot_into(&snapshot).await?,
    }
    let (data_dir, out) = (data_dir.to_path_buf(), out.to_path_buf());
    let partial = work.path().join("archive.age");
    let manifest = tokio::task::spawn_blocking(move || {
        let manifest = write_archive(&data_dir, kind, &snapshot, &partial, seal)?;
        // Only a complete archive takes the name asked for.
        std::fs::rename(&partial, &out)?;
        Ok::<_, BackupError>(manifest)
    })
    .await
    .map_err(|e| BackupError::Io(io::Error::other(e)))??;
    drop(work);
    Ok(manifest)
}

/// The files of `data_dir` a backup holds, by archive path (the database
/// copy `snapshot`, of `kind`, in place of the live database).
fn files_of(
    data_dir: &Path,
    kind: DatabaseKind,
    snapshot: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    files.insert(kind.file().to_string(), snapshot.to_path_buf());
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

fn write_archive(
    data_dir: &Path,
    kind: DatabaseKind,
    snapshot: &Path,
    out: &Path,
    seal: Seal,
) -> Result<Manifest> {
    let mut tar = tar::Builder::new(sealed_file(out, seal)?);
    let mut manifest = Manifest {
        format: FORMAT.into(),
        pbx_version: env!("CARGO_PKG_VERSION").into(),
        created_at_ms: now_ms(),
        database: kind,
        files: Vec::new(),
    };
    for (name, path) in files_of(data_dir, kind, snapshot)? {
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
    if restored.is_err() {
        clear_dir(target);
    }
    restored
}

/// Removes everything inside `dir` (what a failed restore wrote), leaving
/// the directory itself.
fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// [`restore`], and for an archive of a PostgreSQL database, its dump loaded
/// into `database` (a `postgres://` URL) when given: `pg_restore` in one
/// transaction into a database that must hold no tables yet (an existing
/// database is never written over). The dump is removed from `target` once
/// loaded; without `database` it stays there as [`PG_DUMP_FILE`]
/// ([`pg_restore_hint`] says how to load it). When loading fails or is
/// refused, nothing is left in `target` and the database is as it was.
/// `database` is not used for an archive of an SQLite database.
pub async fn restore_with_database(
    archive: &Path,
    unseal: Unseal,
    target: &Path,
    database: Option<&str>,
) -> Result<Manifest> {
    let (archive, dir) = (archive.to_path_buf(), target.to_path_buf());
    let manifest = tokio::task::spawn_blocking(move || restore(&archive, &unseal, &dir))
        .await
        .map_err(|e| BackupError::Io(io::Error::other(e)))??;
    let (DatabaseKind::Postgres, Some(url)) = (manifest.database, database) else {
        return Ok(manifest);
    };
    let loaded = load_dump(url, &target.join(PG_DUMP_FILE)).await;
    if loaded.is_err() {
        clear_dir(target);
    }
    loaded.map(|()| manifest)
}

/// Loads the restored dump `dump` into the PostgreSQL database at `url`,
/// which must hold no tables, and removes it.
async fn load_dump(url: &str, dump: &Path) -> Result<()> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(BackupError::Invalid(
            "the archive holds a PostgreSQL database: --database must be a postgres:// URL".into(),
        ));
    }
    find_program("pg_restore")?;
    let tables = Store::postgres_tables(url).await.map_err(|e| {
        BackupError::Invalid(format!("cannot read the database to restore into: {e}"))
    })?;
    if !tables.is_empty() {
        return Err(BackupError::Invalid(format!(
            "the database to restore into is not empty (it has the tables {}): \
             restore into a new, empty database",
            tables.join(", ")
        )));
    }
    let (url, dump) = (url.to_string(), dump.to_path_buf());
    tokio::task::spawn_blocking(move || {
        pg_restore(&url, &dump)?;
        std::fs::remove_file(&dump)?;
        Ok(())
    })
    .await
    .map_err(|e| BackupError::Io(io::Error::other(e)))?
}

/// The command that loads the dump a restore left at `dump` into an empty
/// database (`URL` standing for it), as a shell line.
pub fn pg_restore_hint(dump: &Path) -> String {
    format!(
        "pg_restore {} -d URL {}",
        PG_RESTORE_ARGS.join(" "),
        shell_word(&dump.display().to_string())
    )
}

/// `text` as one word of a shell line: as it is when plain, else in single
/// quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// How `pg_dump` writes a backup's copy: its custom format (compressed, and
/// what `pg_restore` reads), without ownership or grants, so it loads into a
/// database of any other owner.
const PG_DUMP_ARGS: [&str; 3] = ["--format=custom", "--no-owner", "--no-privileges"];
/// How a dump is loaded: as the connecting user, all of it in one
/// transaction, stopping at the first error.
const PG_RESTORE_ARGS: [&str; 4] = [
    "--no-owner",
    "--no-privileges",
    "--exit-on-error",
    "--single-transaction",
];

/// Dumps the PostgreSQL database at `url` into the new file `dump`.
fn pg_dump(url: &str, dump: &Path) -> Result<()> {
    let mut command = Command::new(find_program("pg_dump")?);
    command.args(PG_DUMP_ARGS).arg("--file").arg(dump);
    run_tool("pg_dump", command, url)
}

/// Loads the dump `dump` into the PostgreSQL database at `url`.
fn pg_restore(url: &str, dump: &Path) -> Result<()> {
    let mut command = Command::new(find_program("pg_restore")?);
    command.args(PG_RESTORE_ARGS).arg(dump);
    run_tool("pg_restore", command, url)
}

/// Runs `command` (`program`, a PostgreSQL client) against the database at
/// `url`: the URL without its password as `--dbname`, the password in
/// `PGPASSWORD`, so that it is neither in the process list nor in what the
/// program prints. An exit other than success is [`BackupError::Tool`] with
/// what the program wrote on standard error.
fn run_tool(program: &'static str, mut command: Command, url: &str) -> Result<()> {
    let (url, password) = split_password(url);
    command
        .arg("--dbname")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = &password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().map_err(|e| BackupError::Tool {
        program,
        detail: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        detail = detail.replace(&password, "***");
    }
    if detail.len() > MAX_TOOL_ERROR {
        detail.truncate(detail.floor_char_boundary(MAX_TOOL_ERROR));
        detail.push_str(" …");
    }
    if detail.is_empty() {
        detail = output.status.to_string();
    }
    Err(BackupError::Tool { program, detail })
}

/// The most of a tool's standard error an error carries.
const MAX_TOOL_ERROR: usize = 4096;

/// `url` without the password of its user part, and the password
/// (percent-decoded), if it had one.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let Some((user, password)) = user_info.split_once(':') else {
        return (url.to_string(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(percent_decode(password)),
    )
}

/// `%XX` escapes of `text` decoded (others kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the PostgreSQL client `name` is: the first on `PATH`, else in the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout, where `PATH`
/// may hold only the wrappers of some programs).
pub fn find_program(name: &'static str) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    let versioned = || {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let program = e.path().join("bin").join(name);
                program.is_file().then_some((version, program))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, program)| program)
    };
    on_path
        .or_else(versioned)
        .ok_or(BackupError::NotInstalled(name))
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
    if !seen.contains_key(manifest.database.file()) {
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
        assert_eq!(made.database, DatabaseKind::Sqlite);
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

    /// Runs `test` on the private PostgreSQL server of `store::testdb` when
    /// PostgreSQL and its client programs are installed; else prints why and
    /// returns, or panics when `PBX_REQUIRE_TOOLS=1`.
    async fn on_postgres<F: std::future::Future<Output = ()>>(test: F) {
        let found = find_program("pg_dump").is_ok() && find_program("pg_restore").is_ok();
        if !store::testdb::present_or_skip(found, "pg_dump/pg_restore not found") {
            return;
        }
        store::testdb::on(store::Backend::Postgres, test).await
    }

    fn cdr(tenant: store::TenantId) -> store::Cdr {
        store::Cdr {
            tenant,
            caller: "1000".into(),
            callee: "1001".into(),
            started_at_ms: 1_000,
            answered_at_ms: Some(1_500),
            ended_at_ms: 9_000,
            disposition: store::Disposition::Answered,
            sip_code: 200,
            hangup_by: "caller".into(),
            caller_call_id: "call-1".into(),
            callee_call_id: "call-2".into(),
            media: store::CdrMedia::default(),
            tags: Vec::new(),
        }
    }

    /// The URL of database `name` on the server of `url` (a test server URL,
    /// `postgres://pbx@localhost/DB?host=DIR`).
    fn database_named(url: &str, name: &str) -> String {
        let (head, rest) = url.split_once("localhost/").expect("a test URL");
        let (_, query) = rest.split_once('?').expect("a test URL");
        format!("{head}localhost/{name}?{query}")
    }

    #[tokio::test]
    async fn a_postgres_database_is_dumped_verified_and_restored() {
        on_postgres(async {
            let dir = tempfile::tempdir().unwrap();
            let store = store::testdb::store_in(dir.path()).await.unwrap();
            let t = store.add_tenant("acme", "acme.example").await.unwrap();
            store
                .add_extension(t.id, "1000", "pw-1000-long")
                .await
                .unwrap();
            store.insert_cdrs(&[cdr(t.id)]).await.unwrap();
            let out_dir = tempfile::tempdir().unwrap();
            let out = out_dir.path().join("b.age");
            let unseal = || Unseal::Passphrase(pass("pg words"));
            let made = create(&store, dir.path(), &out, Seal::Passphrase(pass("pg words")))
                .await
                .unwrap();
            assert_eq!(made.database, DatabaseKind::Postgres);
            let names: Vec<&str> = made.files.iter().map(|f| f.path.as_str()).collect();
            assert!(
                names.contains(&PG_DUMP_FILE) && names.contains(&"secret.key"),
                "{names:?}"
            );
            assert!(!names.contains(&"pbx.db"), "{names:?}");
            // Only the archive is left next to it.
            assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);
            assert_eq!(verify(&out, &unseal()).unwrap(), made);

            // A database that has tables is never restored into.
            let used = store.postgres_url().unwrap().to_string();
            let refused = out_dir.path().join("refused");
            let e = restore_with_database(&out, unseal(), &refused, Some(&used))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("not empty"), "{e}");
            assert_eq!(std::fs::read_dir(&refused).unwrap().count(), 0);
            assert_eq!(store.directory().await.unwrap().extensions.len(), 1);

            // A new, empty one gets every row.
            let url = store::testdb::fresh_database().await;
            let target = out_dir.path().join("restored");
            let restored = restore_with_database(&out, unseal(), &target, Some(&url))
                .await
                .unwrap();
            assert_eq!(restored, made);
            assert!(
                !target.join(PG_DUMP_FILE).exists(),
                "the loaded dump is removed"
            );
            assert_eq!(
                std::fs::read(target.join("secret.key")).unwrap(),
                std::fs::read(dir.path().join("secret.key")).unwrap()
            );
            let back = Store::connect(&url, &target).await.unwrap();
            let directory = back.directory().await.unwrap();
            assert_eq!(directory.tenants.len(), 1);
            assert_eq!(directory.tenants[0].name, "acme");
            assert_eq!(directory.extensions.len(), 1);
            assert_eq!(directory.extensions[0].number, "1000");
            let cdrs = back
                .list_cdrs(directory.tenants[0].id, &store::CdrFilter::default())
                .await
                .unwrap();
            assert_eq!(cdrs, vec![cdr(t.id)]);
            // Now it has tables: a second restore into it is refused.
            let again = out_dir.path().join("again");
            assert!(
                restore_with_database(&out, unseal(), &again, Some(&url))
                    .await
                    .is_err()
            );
            assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);

            // Without a database the dump is left in the directory.
            let files_only = out_dir.path().join("files-only");
            restore_with_database(&out, unseal(), &files_only, None)
                .await
                .unwrap();
            assert!(files_only.join(PG_DUMP_FILE).is_file());
            assert!(files_only.join("secret.key").is_file());

            // Scheduled backups take the same path.
            let key = age::x25519::Identity::generate();
            let schedule = Schedule {
                data_dir: dir.path().to_path_buf(),
                dir: out_dir.path().join("scheduled"),
                every: std::time::Duration::from_secs(3600),
                keep: 2,
                recipients: vec![key.to_public().to_string()],
            };
            let archive = scheduled(&store, &schedule).await.unwrap();
            let checked =
                verify(&archive, &Unseal::identities(&secret_text(&key)).unwrap()).unwrap();
            assert_eq!(checked.database, DatabaseKind::Postgres);
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_dump_leaves_nothing_and_says_why() {
        on_postgres(async {
            let dir = tempfile::tempdir().unwrap();
            let store = store::testdb::store_in(dir.path()).await.unwrap();
            let url = store.postgres_url().unwrap().to_string();
            // The database goes away under the store.
            let name = url
                .split_once("localhost/")
                .and_then(|(_, rest)| rest.split_once('?'))
                .map(|(name, _)| name.to_string())
                .unwrap();
            {
                use sqlx::{Connection as _, Executor as _};
                let mut admin =
                    sqlx::postgres::PgConnection::connect(&database_named(&url, "postgres"))
                        .await
                        .unwrap();
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE {name} WITH (FORCE)"
                    )))
                    .await
                    .unwrap();
            }
            let out_dir = tempfile::tempdir().unwrap();
            let out = out_dir.path().join("b.age");
            let e = create(&store, dir.path(), &out, Seal::Passphrase(pass("x")))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    BackupError::Tool {
                        program: "pg_dump",
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains(&name), "pg_dump's own words: {e}");
            // No archive, no temporary files.
            assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);

            // A password given in the URL reaches pg_dump through the
            // environment and never shows in an error.
            let with_password = url
                .replacen("pbx@", "pbx:hunter%32@", 1)
                .replace(&name, "no_such_db");
            let e = pg_dump(&with_password, &out_dir.path().join("x.pgdump")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("no_such_db"), "{text}");
            assert!(!text.contains("hunter"), "{text}");
        })
        .await;
    }

    #[test]
    fn passwords_come_out_of_urls() {
        assert_eq!(
            split_password("postgres://pbx:s%40cret@db:5432/pbx?sslmode=require"),
            (
                "postgres://pbx@db:5432/pbx?sslmode=require".to_string(),
                Some("s@cret".to_string())
            )
        );
        assert_eq!(
            split_password("postgresql://pbx@db/pbx?password=x:y@z"),
            ("postgresql://pbx@db/pbx?password=x:y@z".to_string(), None)
        );
        assert_eq!(
            split_password("postgres://db/pbx"),
            ("postgres://db/pbx".to_string(), None)
        );
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = find_program("pbx-no-such-program").unwrap_err();
        assert!(matches!(e, BackupError::NotInstalled(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("pbx-no-such-program is not installed"),
            "{e}"
        );
    }

    #[test]
    fn the_restore_hint_is_a_shell_line() {
        assert_eq!(
            pg_restore_hint(Path::new("/srv/new/pbx.pgdump")),
            "pg_restore --no-owner --no-privileges --exit-on-error --single-transaction \
             -d URL /srv/new/pbx.pgdump"
        );
        assert_eq!(shell_word("my dir/it's"), r"'my dir/it'\''s'");
    }

    #[test]
    fn old_manifests_hold_sqlite() {
        let old = r#"{"format":"pbx-backup/1","pbx_version":"0.1.0","created_at_ms":1,"files":[]}"#;
        let manifest: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(manifest.database, DatabaseKind::Sqlite);
        assert_eq!(manifest.database.file(), "pbx.db");
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
