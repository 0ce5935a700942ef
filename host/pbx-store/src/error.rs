//! The store's one error type.

/// What can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (I/O, lock timeout, constraint the store did not expect).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The named tenant or extension does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The write would duplicate something that must be unique (tenant name,
    /// domain, extension number).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is malformed (bad domain, extension number, password, ...), or a
    /// stored row could not be read back.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The write would pass one of the tenant's quotas: its media storage, or
    /// the messages one mailbox keeps (a full mailbox).
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `what` (a file of the data directory), reported the way
    /// the store reports the database's own I/O failures.
    pub(crate) fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::Db(sqlx::Error::Io(std::io::Error::new(
            err.kind(),
            format!("{what}: {err}"),
        )))
    }

    /// Turns a unique-constraint failure into [`Error::Conflict`] with `what` as the
    /// message; any other database error stays [`Error::Db`].
    pub(crate) fn conflict_on_unique(err: sqlx::Error, what: impl FnOnce() -> String) -> Error {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => Error::Conflict(what()),
            _ => Error::Db(err),
        }
    }
}
