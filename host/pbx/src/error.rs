use std::path::PathBuf;

/// Everything the host's edge can fail with before the server runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed an operation.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The data directory could not be opened.
    #[error("cannot open the data directory {}: {source}", path.display())]
    OpenStore {
        path: PathBuf,
        #[source]
        source: store::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to stdout or reading stdin failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration file or flags are not acceptable.
    #[error("configuration: {0}")]
    Config(String),
    /// A row of an extension import file is not acceptable.
    #[error("{file} line {line}: {message}")]
    ImportRow {
        file: String,
        line: usize,
        message: String,
    },
    /// A command-line value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The named tenant does not exist.
    #[error("no tenant named `{0}`")]
    NoSuchTenant(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
