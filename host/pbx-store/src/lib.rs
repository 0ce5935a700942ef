//! Durable state of the PBX: tenants and their SIP domains, extensions (as HA1
//! digests), registrar bindings and call detail records, kept in one SQLite file
//! (the default) or a PostgreSQL database through sqlx; and tenants' audio
//! (prompts, voicemail), kept encrypted in files in the data directory.
//!
//! # Design
//! - [`Store`] is a cheap-to-clone handle around a connection pool. [`Store::open`]
//!   creates the data directory, opens `pbx.db` in WAL mode with foreign keys on and
//!   applies the embedded migrations (`migrations/sqlite`). [`Store::connect`]
//!   opens a database by URL; on `postgres://` it applies `migrations/postgres`,
//!   the twin of every SQLite migration (same number, same resulting schema).
//! - Both backends run the same SQL through sqlx's `Any` driver. Placeholders
//!   are numbered (`$1`, `$2`, ...; never `?`), integers are `i64` (BIGINT on
//!   PostgreSQL), flags are 0/1 integers bound as `i64::from(flag)` and read with
//!   `rows::flag`, and aggregates that PostgreSQL widens (`SUM`) are cast back
//!   to BIGINT. Where a statement must differ it matches on [`Backend`] in one
//!   place ([`Store::snapshot_into`] is SQLite-only; backups of PostgreSQL
//!   run `pg_dump` on [`Store::postgres_url`]).
//! - Write transactions run one at a time on both: SQLite's `BEGIN IMMEDIATE`,
//!   and on PostgreSQL a transaction-scoped advisory lock taken first.
//! - Every row owned by a tenant carries `tenant_id`, and every method that reads
//!   tenant data takes a [`TenantId`]. The only cross-tenant reads are the ones the
//!   host needs at start-up and on reload: [`Store::directory`],
//!   [`Store::load_registrations`], [`Store::list_tenants`],
//!   [`Store::active_dialplans`], [`Store::all_trunks`], [`Store::all_dids`] and
//!   [`Store::plugin_kv_all`], [`Store::all_tenant_policies`],
//!   [`Store::all_policy_config`], [`Store::all_forwarding`] and
//!   [`Store::all_mailbox_counts`]; and the
//!   server's maintenance: [`Store::sweep_voicemail`] and
//!   [`Store::remove_orphan_media`].
//! - Writes that belong together run in one transaction: provisioning steps, bulk
//!   imports (validated before anything is written), batches of registration
//!   changes and of CDRs.
//! - Provisioning changes bump a generation counter (database triggers), so a
//!   running server polls [`Store::generation`] and reloads [`Store::directory`]
//!   only when it moved. Registration and CDR writes leave it alone.
//! - Passwords never reach the database: extensions store `HA1` digests (MD5 and
//!   SHA-256) for realm = the tenant's primary domain. Trunk passwords, which the
//!   host must send, are encrypted with ChaCha20-Poly1305 under a random key in
//!   `DATA_DIR/secret.key` ([`SECRET_KEY_FILE`]), bound to their tenant and trunk.
//! - Plugins are stored by content hash; a tenant's dial plans are numbered
//!   versions with one active pointer, so activation and rollback are one write.
//! - Tenant audio (`audio`: prompts, voicemail) lives in files under
//!   `DATA_DIR/media/<tenant id>/` ([`MEDIA_DIR`]), each encrypted with its
//!   tenant's own key, which is stored sealed with `secret.key`; the rows that
//!   describe them, the tenant's quota and its voicemail PINs are in the
//!   database. An in-memory store keeps the files in memory.
//! - SQL is plain and portable (no SQLite-only syntax where a portable form exists),
//!   queries are runtime-checked (`sqlx::query`), and the store has no clock:
//!   callers pass `now_ms` where time matters.

#[cfg(any(test, feature = "test-support"))]
#[macro_use]
pub mod testdb;

mod acl;
mod alert;
mod api_token;
mod approval;
mod audio;
mod audit;
mod ban;
mod calendar;
mod cdr;
mod cdr_export;
mod checks;
mod copy;
pub use copy::{CopyReport, NOT_COPIED};
mod error;
mod extension;
mod forwarding;
mod ha1;
mod limits;
mod media_policy;
mod notify;
pub use notify::{Change, Changes};
mod node;
pub use node::{
    ClusterNode, DEAD_AFTER_MS, DROPPED_BY, EndedCall, HEARTBEAT_MS, NodeHeartbeat, NodeState,
    call_key as cluster_call_key,
};
mod plugin;
mod policy_config;
mod prompt;
mod recording;
mod registration;
mod rows;
mod secret;
mod sql;
mod tenant;
pub use tenant::RecordRetention;
mod tenant_transfer;
pub use tenant_transfer::{
    AudioRef, Cell, ImportedTenant, STAYS, TENANT_CHUNK_ROWS, TENANT_EXPORT_FORMAT, TenantChunk,
    TenantExport, TenantExportHeader, TenantImport,
};
mod trunk;
mod user;
mod voicemail;
mod voicemail_box;

pub use alert::{ALERT_CSV_HEADER, AlertRecord, MAX_ALERTS, write_alert_csv};
pub use api_token::{ApiToken, NewApiToken};
pub use approval::{Approval, ApprovalStatus, ApprovalTarget};
pub use audio::{MEDIA_DIR, MediaUsage};
pub use audit::{
    AUDIT_CSV_HEADER, AUDIT_KEYED, AuditCheckpoint, AuditEntry, AuditHead, AuditRecord,
    AuditReport, audit_legacy_hash, audit_mac, write_audit_csv,
};
pub use ban::BanRecord;
pub use cdr::CdrFilter;
pub use cdr_export::{CDR_CSV_HEADER, CdrCursor, write_cdr_csv};
pub use error::{Error, Result};
pub use model::limits::{
    DEFAULT_MEDIA_STORAGE_BYTES, DEFAULT_VOICEMAIL_RETENTION_DAYS, MAX_CALL_RECORDING_BYTES,
    MAX_PROMPT_BYTES, MAX_PROMPT_MS, MAX_VOICEMAIL_BYTES, MAX_VOICEMAIL_MESSAGES,
    MAX_VOICEMAIL_RETENTION_DAYS,
};
pub use model::{
    Alert, Calendar, Cdr, CdrMedia, DigestAlgorithm, DigestAlgorithms, Directory, Disposition,
    Extension, Forwarding, Holiday, LegMedia, MediaEncryption, NetworkAcl, Registration,
    RegistrationChange, Severity, Tenant, TenantId, TenantLimits, TenantStatus, TransportKind,
};
pub use plugin::{MAX_TENANT_POLICIES, PluginVersion, Policy, TenantPolicy};
pub use policy_config::{
    ConfigEntry, ConfigScope, MAX_CONFIG_KEY, MAX_CONFIG_KEYS, MAX_CONFIG_VALUE, MAX_KV_KEY,
    PLUGIN_KV_QUOTA_BYTES,
};
pub use prompt::PromptInfo;
pub use recording::CallRecording;
pub use secret::SECRET_KEY_FILE;
pub use trunk::Trunk;
pub use user::{
    LoginFailures, MAX_LOGIN_NETWORKS, MAX_USERNAME, NewUser, TotpState, User, UserChange, UserRole,
};
pub use voicemail::VoicemailMessage;
pub use voicemail_box::{MAX_PIN_ATTEMPTS, PIN_LOCKOUT_MS, PinCheck};

/// Checks an extension number the way every store write does (1-32 characters of
/// `[0-9A-Za-z._-]`), so callers can report a bad one before writing anything.
pub fn validate_extension_number(number: &str) -> Result<()> {
    checks::extension_number(number)
}

/// NFKC-normalises a name shown to people (usernames, token, tenant and trunk
/// names) and checks it: 1 to `max` characters, no surrounding spaces, no
/// control, format or otherwise invisible characters, so that `root\u{200b}`
/// cannot pose as `root`. `what` names the field in the error.
pub fn normalize_name(what: &str, name: &str, max: usize) -> Result<String> {
    checks::name(what, name, max)
}

/// Appends `field` to a CSV line the way every export writes text: quoted
/// when needed (RFC 4180), and prefixed with `'` when a spreadsheet would
/// run it as a formula.
pub fn write_csv_field(out: &mut String, field: &str) {
    cdr_export::csv_field(out, field)
}

/// Checks a SIP password the way every store write does (1-128 bytes, no control
/// characters).
pub fn validate_password(password: &str) -> Result<()> {
    checks::password(password)
}

use std::path::Path;
use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, Executor, Row, Transaction};

/// The database file inside the data directory.
pub const DB_FILE: &str = "pbx.db";

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Which database a [`Store`] runs on. The SQL is shared; the few statements
/// that must differ match on this in one place each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file in the data directory (or memory): the default.
    Sqlite,
    /// A PostgreSQL database named by a `postgres://` URL.
    Postgres,
}

impl Backend {
    /// The backend `conn` talks to (a connection of either pool).
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// Handle to the PBX database. Clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The PostgreSQL URL, for the connection that listens for changes
    /// ([`Store::listen_changes`]); none on SQLite.
    url: Option<Arc<str>>,
    /// Encrypts trunk passwords; read from `DATA_DIR/secret.key`.
    secrets: Arc<secret::SecretKey>,
    /// Where tenant audio lives: `DATA_DIR/media`, or memory.
    audio: Arc<audio::AudioFiles>,
}

impl Store {
    /// Opens (creating if needed) `data_dir/pbx.db` and applies pending migrations.
    ///
    /// The directory is created with mode 0700 on unix. The database runs in WAL
    /// mode with `synchronous=NORMAL`, foreign keys on and a 5 s busy timeout.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        create_private_dir(data_dir)?;
        let secrets = secret::SecretKey::load_or_create(&data_dir.join(SECRET_KEY_FILE))?;
        let pool = sqlite_pool(&sqlite_url(&data_dir.join(DB_FILE))?, 4, "WAL").await?;
        Store::migrated(
            pool,
            Backend::Sqlite,
            secrets,
            audio::AudioFiles::in_dir(data_dir),
        )
        .await
    }

    /// Opens the database named by `url` and applies pending migrations:
    /// `postgres://…` (or `postgresql://…`) for PostgreSQL, or `sqlite://PATH`
    /// for an SQLite file (as [`Store::open`] does for `data_dir/pbx.db`).
    /// `data_dir` holds what is not in the database: [`SECRET_KEY_FILE`] and
    /// the tenants' audio ([`MEDIA_DIR`]).
    pub async fn connect(url: &str, data_dir: &Path) -> Result<Store> {
        let backend = backend_of(url)?;
        create_private_dir(data_dir)?;
        let secrets = secret::SecretKey::load_or_create(&data_dir.join(SECRET_KEY_FILE))?;
        let pool = match backend {
            Backend::Sqlite => sqlite_pool(url, 4, "WAL").await?,
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                AnyPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await?
            }
        };
        let store =
            Store::migrated(pool, backend, secrets, audio::AudioFiles::in_dir(data_dir)).await?;
        Ok(store.listening_at(url))
    }

    /// Opens a private in-memory database (for tests and throw-away runs);
    /// tenant audio is kept in memory too, under a random secret key.
    ///
    /// The pool holds exactly one connection that never expires, so every query
    /// sees the same database for the life of the store.
    pub async fn open_in_memory() -> Result<Store> {
        let pool = sqlite_pool("sqlite::memory:", 1, "MEMORY").await?;
        Store::migrated(
            pool,
            Backend::Sqlite,
            secret::SecretKey::random(),
            audio::AudioFiles::in_memory(),
        )
        .await
    }

    /// Opens the PostgreSQL database named by `url` for a test: migrations
    /// applied, a random secret key, tenant audio in memory (what
    /// [`Store::open_in_memory`] is on SQLite).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn connect_ephemeral(url: &str) -> Result<Store> {
        if backend_of(url)? != Backend::Postgres {
            return Err(Error::Invalid(
                "an ephemeral store on SQLite is Store::open_in_memory".into(),
            ));
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await?;
        let store = Store::migrated(
            pool,
            Backend::Postgres,
            secret::SecretKey::random(),
            audio::AudioFiles::in_memory(),
        )
        .await?;
        Ok(store.listening_at(url))
    }

    fn listening_at(mut self, url: &str) -> Store {
        if self.backend == Backend::Postgres {
            self.url = Some(url.into());
        }
        self
    }

    async fn migrated(
        pool: AnyPool,
        backend: Backend,
        secrets: secret::SecretKey,
        audio: audio::AudioFiles,
    ) -> Result<Store> {
        backend.migrator().run(&pool).await?;
        let store = Store {
            pool,
            backend,
            url: None,
            secrets: Arc::new(secrets),
            audio: Arc::new(audio),
        };
        store.seal_plain_totp_secrets().await?;
        store.mark_audit_keying().await?;
        Ok(store)
    }

    /// The key digest nonces are made with in a cluster: derived from the
    /// data directory's secret key, which every node shares.
    pub fn nonce_key(&self) -> [u8; 32] {
        *self.secrets.nonce_key()
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The newest migration applied to the database (its number, e.g. 52 for
    /// `0052_record_retention.sql`).
    pub async fn schema_version(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS version FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("version")?)
    }

    /// The key of the audit log's MAC chain. It is derived from the data
    /// directory's secret key ([`SECRET_KEY_FILE`]), so someone who can edit the
    /// database alone cannot recompute the chain.
    pub fn audit_key(&self) -> [u8; 32] {
        *self.secrets.audit_key()
    }

    /// Closes the pool, waiting for connections to be returned and checkpointed.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The provisioning generation: it changes whenever a tenant, domain or
    /// extension is added, changed or removed.
    pub async fn generation(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM directory_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Every tenant (domains primary first), every extension and every allowed
    /// network, read in one transaction so they agree.
    pub async fn directory(&self) -> Result<Directory> {
        let mut tx = self.read_tx().await?;
        let tenants = tenant::load_all(&mut tx).await?;
        let extensions = extension::load_all(&mut tx).await?;
        let acls = acl::load_all(&mut tx).await?;
        tx.commit().await?;
        Ok(Directory {
            tenants,
            extensions,
            acls,
        })
    }

    /// The PostgreSQL URL this store connected with (`None` on SQLite), for
    /// the server's own tools (`pg_dump` in backups). It may hold a password:
    /// never log it or show it in an error.
    pub fn postgres_url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The tables of the PostgreSQL database at `url`, in the schema a
    /// connection there uses (normally `public`), sorted by name: a database
    /// to restore a backup into must have none. Applies no migrations.
    pub async fn postgres_tables(url: &str) -> Result<Vec<String>> {
        use sqlx::Connection as _;
        if backend_of(url)? != Backend::Postgres {
            return Err(Error::Invalid("not a postgres:// URL".into()));
        }
        let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
        let tables = sqlx::query_scalar(
            "SELECT CAST(tablename AS TEXT) FROM pg_catalog.pg_tables \
             WHERE schemaname = current_schema() ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        Ok(tables)
    }

    /// Writes a consistent copy of the whole database to `path` (a new file),
    /// while the store stays in use: SQLite's `VACUUM INTO` reads one
    /// snapshot of the database and writes it compacted. On PostgreSQL this is
    /// [`Error::Invalid`]: backups dump it with `pg_dump` instead
    /// ([`Store::postgres_url`]).
    pub async fn snapshot_into(&self, path: &Path) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(Error::Invalid(
                "a snapshot copies an SQLite database; back up PostgreSQL with pg_dump".into(),
            ));
        }
        let target = path
            .to_str()
            .ok_or_else(|| Error::Invalid(format!("{} is not a UTF-8 path", path.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts a transaction that writes. SQLite takes the write lock up front so a
    /// read-then-write transaction cannot fail half-way on a lock upgrade. On
    /// PostgreSQL the transaction takes one transaction-scoped advisory lock
    /// first, so write transactions run one at a time there too: what a
    /// transaction read (a quota, the audit chain's head, the next version
    /// number) still holds when it writes.
    async fn write_tx(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                tx.execute(sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK))
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Starts a transaction that only reads and sees one snapshot throughout
    /// (SQLite's default; PostgreSQL needs `REPEATABLE READ` for that).
    async fn read_tx(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin().await?),
            Backend::Postgres => Ok(self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?),
        }
    }
}

/// The key of the PostgreSQL advisory lock that [`Store::write_tx`] holds
/// ("pbxstore" in ASCII).
const WRITE_LOCK: i64 = 0x7062_7873_746f_7265;

/// Which backend a database URL names.
fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(Error::Invalid(format!(
            "database URL must start with postgres:// or sqlite:// (got {:?})",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The `sqlite://` URL of the database file `path`, created if missing.
fn sqlite_url(path: &Path) -> Result<String> {
    let path = path
        .to_str()
        .ok_or_else(|| Error::Invalid(format!("{} is not a UTF-8 path", path.display())))?;
    // sqlx percent-decodes the path, and `?` would start the parameters.
    let escaped = path
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Ok(format!("sqlite://{escaped}?mode=rwc"))
}

/// A pool on an SQLite URL: foreign keys on and a 5 s busy timeout (sqlx's
/// defaults), `synchronous=NORMAL` and the given journal mode.
async fn sqlite_pool(url: &str, connections: u32, journal_mode: &'static str) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let mut options = AnyPoolOptions::new()
        .max_connections(connections)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "PRAGMA journal_mode = {journal_mode}; PRAGMA synchronous = NORMAL"
                )))
                .await?;
                Ok(())
            })
        });
    if connections == 1 {
        options = options
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    Ok(options.connect(url).await?)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Db(sqlx::Error::Io(e)))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Db(sqlx::Error::Io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("state");
        let store = Store::open(&data).await.expect("open");
        let t = store
            .add_tenant("acme", "acme.example.com")
            .await
            .expect("tenant");
        store
            .add_extension(t.id, "1000", "secret")
            .await
            .expect("ext");
        let generation = store.generation().await.expect("generation");
        store.close().await;

        let store = Store::open(&data).await.expect("reopen");
        let dir_now = store.directory().await.expect("directory");
        assert_eq!(dir_now.tenants, vec![t]);
        assert_eq!(dir_now.extensions.len(), 1);
        assert_eq!(dir_now.extensions[0].number, "1000");
        assert_eq!(store.generation().await.expect("generation"), generation);
        assert!(data.join(DB_FILE).is_file());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a").join("b");
        let store = Store::open(&data).await.expect("open");
        let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_tables_sees_a_migrated_database() {
        crate::testdb::on(Backend::Postgres, async {
            let url = crate::testdb::fresh_database().await;
            assert_eq!(
                Store::postgres_tables(&url).await.expect("tables"),
                Vec::<String>::new()
            );
            let store = Store::connect_ephemeral(&url).await.expect("connect");
            assert_eq!(store.postgres_url(), Some(url.as_str()));
            let tables = Store::postgres_tables(&url).await.expect("tables");
            for table in ["_sqlx_migrations", "tenants", "cdrs"] {
                assert!(tables.iter().any(|t| t == table), "{table}: {tables:?}");
            }
            assert!(Store::postgres_tables("sqlite::memory:").await.is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn sqlite_has_no_postgres_url() {
        let store = Store::open_in_memory().await.expect("open");
        assert_eq!(store.postgres_url(), None);
    }

    backend_test! {
        async fn directory_lists_tenants_domains_and_extensions() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a");
            store.add_domain(a.id, "Alt.A.Example").await.expect("dom");
            let b = store.add_tenant("b", "b.example").await.expect("b");
            store.add_extension(a.id, "100", "pw1").await.expect("ext");
            store.add_extension(b.id, "200", "pw2").await.expect("ext");

            let d = store.directory().await.expect("directory");
            assert_eq!(d.tenants.len(), 2);
            assert_eq!(d.tenants[0].name, "a");
            assert_eq!(d.tenants[0].domains, vec!["a.example", "alt.a.example"]);
            assert_eq!(d.tenants[0].realm, "a.example");
            assert_eq!(d.tenants[1].domains, vec!["b.example"]);
            let numbers: Vec<_> = d
                .extensions
                .iter()
                .map(|e| (e.tenant, e.number.as_str()))
                .collect();
            assert_eq!(numbers, vec![(a.id, "100"), (b.id, "200")]);
        }
    }

    backend_test! {
        async fn generation_moves_on_provisioning_only() {
            let store = crate::testdb::store().await.expect("open");
            let g0 = store.generation().await.expect("g");
            let t = store.add_tenant("a", "a.example").await.expect("a");
            let g1 = store.generation().await.expect("g");
            assert!(g1 > g0);
            store.add_domain(t.id, "b.example").await.expect("dom");
            let g2 = store.generation().await.expect("g");
            assert!(g2 > g1);
            store.add_extension(t.id, "100", "pw").await.expect("ext");
            let g3 = store.generation().await.expect("g");
            assert!(g3 > g2);
            store
                .set_extension_password(t.id, "100", "pw2")
                .await
                .expect("pw");
            let g4 = store.generation().await.expect("g");
            assert!(g4 > g3);
            store
                .set_tenant_status(t.id, TenantStatus::Suspended)
                .await
                .expect("status");
            let g5 = store.generation().await.expect("g");
            assert!(g5 > g4);

            store
                .apply_registrations(&[RegistrationChange::Upsert(registration::tests::binding(
                    t.id,
                    "100",
                    "sip:100@10.0.0.1",
                    10_000,
                ))])
                .await
                .expect("reg");
            store
                .insert_cdrs(&[cdr::tests::cdr(t.id, "100", "101", 1_000)])
                .await
                .expect("cdr");
            store.load_registrations(0).await.expect("load");
            assert_eq!(store.generation().await.expect("g"), g5);

            store.remove_extension(t.id, "100").await.expect("rm");
            assert!(store.generation().await.expect("g") > g5);
        }
    }
}
