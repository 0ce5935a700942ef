//! The crate's one error type.

/// What can go wrong configuring the guard or feeding it input it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An ACL entry is neither an address nor a CIDR network.
    #[error("bad network {input:?}: {reason}")]
    BadNetwork { input: String, reason: String },
    /// A home country is not an ISO 3166 two-letter code the numbering data knows.
    #[error("unknown country {0:?}")]
    UnknownCountry(String),
    /// A configured number prefix is not 1-15 digits (an optional leading `+`).
    #[error("bad prefix {0:?}")]
    BadPrefix(String),
    /// A dialled number has characters that cannot be dialled, or is too long.
    #[error("bad number {0:?}")]
    BadNumber(String),
    /// A configuration value is out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// A webhook payload could not be encoded.
    #[error("json: {0}")]
    Json(String),
}

/// Result with the guard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
