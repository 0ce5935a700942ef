//! SIP digest authentication: RFC 3261 §22 with RFC 7616 algorithms and RFC 8760
//! (SHA-256) for SIP.
//!
//! # Design
//! Pure functions and one small state holder, no I/O and no clock: every call that
//! depends on time takes `now_ms` (milliseconds since the Unix epoch) as a parameter.
//!
//! - [`Challenge`] renders a `WWW-Authenticate` / `Proxy-Authenticate` value.
//! - [`answer_challenges`] is the client side: it answers the strongest of the
//!   challenges in a `401`/`407` (used for trunk registration and trunk calls).
//! - [`Credentials::parse`] reads an `Authorization` / `Proxy-Authorization` value.
//! - [`ha1`] computes the stored secret; passwords are never kept.
//! - [`Credentials::verify`] checks a response against a stored HA1 in constant time;
//!   [`Credentials::verify_dummy`] does the same work for unknown users so that the
//!   time taken does not reveal whether a user exists.
//! - [`EphemeralKey`] makes and checks short-lived credentials for browser
//!   phones ([`ephemeral`]).
//! - [`Nonces`] issues self-validating nonces (HMAC over issue time and randomness)
//!   that expire (`stale=true`) and tracks the highest `nc` seen per nonce so a
//!   replayed `nc` is rejected.
//!
//! Only `qop=auth` and the RFC 2069 form without `qop` are supported; `auth-int` and
//! the `-sess` algorithms are refused. A nonce presented without `nc` (RFC 2069
//! clients) cannot be replay-checked and is accepted until it goes stale, so the
//! nonce lifetime bounds the replay window for such clients.
//!
//! A typical server flow:
//!
//! ```
//! use pbx_digest::{Algorithm, Challenge, Credentials, NonceCheck, Nonces, ha1};
//!
//! let nonces = Nonces::new([7; 32], 300_000);
//! let now = 1_700_000_000_000;
//! let challenge = Challenge {
//!     realm: "acme.example".into(),
//!     nonce: nonces.issue(now),
//!     algorithm: Algorithm::Sha256,
//!     stale: false,
//!     opaque: None,
//! };
//! assert!(challenge.header_value().starts_with("Digest realm=\"acme.example\""));
//!
//! // The client answers (computed here with the same library).
//! let stored = ha1(Algorithm::Sha256, "alice", "acme.example", "s3cret");
//! let mut creds = Credentials::parse(&format!(
//!     "Digest username=\"alice\", realm=\"acme.example\", nonce=\"{}\", \
//!      uri=\"sip:acme.example\", response=\"\", algorithm=SHA-256, \
//!      qop=auth, nc=00000001, cnonce=\"xyz\"",
//!     challenge.nonce
//! ))?;
//! creds.response = creds.expected_response("REGISTER", &stored).unwrap_or_default();
//!
//! assert_eq!(nonces.check(&creds.nonce, creds.nc, now + 10), NonceCheck::Valid);
//! assert!(creds.verify("REGISTER", &stored));
//! # Ok::<(), pbx_digest::Error>(())
//! ```

mod challenge;
mod client;
mod credentials;
pub mod ephemeral;
mod nonce;

pub use challenge::{Algorithm, Challenge, ha1};
pub use client::{answer_challenges, choose_challenge};
pub use credentials::Credentials;
pub use ephemeral::{Ephemeral, EphemeralKey};
pub use nonce::{DEFAULT_MAX_ENTRIES, NonceCheck, Nonces};

/// Everything that can go wrong while reading digest headers.
///
/// All variants describe input sent by the peer: a SIP layer answers them with
/// `400 Bad Request` (or a fresh challenge), except [`Error::UnsupportedAlgorithm`]
/// which is a capability mismatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The `algorithm` parameter names something other than `MD5` or `SHA-256`
    /// (the `-sess` variants included). Holds at most 32 bytes of the value.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The header does not use the `Digest` scheme.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// The parameter list does not follow the `name=value, ...` grammar.
    #[error("malformed digest parameters: {0}")]
    Malformed(&'static str),
    /// A parameter appears more than once. Holds at most 32 bytes of the name.
    #[error("duplicate digest parameter {0:?}")]
    DuplicateParam(String),
    /// A required parameter is absent.
    #[error("missing digest parameter {0}")]
    MissingParam(&'static str),
    /// `nc` is not exactly eight hexadecimal digits.
    #[error("nc must be eight hexadecimal digits")]
    InvalidNc,
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Truncates peer-supplied text kept in an error to a bounded size, on a char
/// boundary.
pub(crate) fn bounded(s: &str) -> String {
    const MAX: usize = 32;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
