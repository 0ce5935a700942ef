//! SIP digest authentication: RFC 3261 §22 with RFC 7616 algorithms and RFC 8760
//! (SHA-256) for SIP.
//!
//! # Design
//! Pure functions and one small state holder, no I/O and no clock: every call that
//! depends on time takes `now_ms` (milliseconds since the Unix epoch) as a parameter.
//!
//! - [`Challenge`] renders a `WWW-Authenticate` / `Proxy-Authenticate` value.
//! - [`Credentials::parse`] reads an `Authorization` / `Proxy-Authorization` value.
//! - [`ha1`] computes the stored secret; passwords are never kept.
//! - [`Credentials::verify`] checks a response against a stored HA1 in constant time.
//! - [`Nonces`] issues self-validating nonces (HMAC over issue time and randomness)
//!   that expire (`stale=true`) and tracks the highest `nc` seen per nonce so a
//!   replayed `nc` is rejected.

// Implementation to be filled in.
