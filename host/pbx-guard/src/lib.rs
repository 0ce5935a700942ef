//! Fraud and abuse defenses of the PBX, as plain synchronous state machines.
//!
//! - [`bans`]: brute-force bans fed by the host's own authentication failures,
//!   escalating and expiring, with trusted networks exempt.
//! - [`rate`]: a token bucket per source address and a global overload gate
//!   that sheds new requests with `503` while in-dialog ones pass.
//! - [`scanner`]: known scanner user agents and scanning behaviour.
//! - [`acl`]: CIDR allow-lists per tenant and per extension.
//! - [`classify`]: destination classes of dialled numbers (emergency, internal,
//!   national, mobile, international, premium-rate, high-risk).
//! - [`usage`]: concurrent-call guards, windowed call counts, calls per second
//!   and daily spend per tenant and extension.
//! - [`sessions`]: host media sessions (IVR, voicemail) per tenant and for
//!   the whole host.
//! - [`patterns`]: baselines of normal calling and alerts when calls stray from
//!   them (bursts, off-hours international calls, IRSF/wangiri, concurrency).
//! - [`alerts`]: the alert record and the webhook payload signer.
//!
//! # Design
//! Nothing here does I/O or reads a clock: every call takes `now: Instant` (and
//! Unix milliseconds where a value is stored or tied to the calendar), so tests
//! drive time by hand and the server decides where the state lives. Every table
//! has a configured bound and evicts idle or oldest entries first; inputs from
//! the network are cut to fixed lengths. Bad input is an [`Error`] value, never
//! a panic. [`usage::Usage`] is shared between threads; the other types are
//! single-owner and the server wraps them in a lock.

pub mod acl;
pub mod alerts;
pub mod bans;
pub mod classify;
mod error;
pub mod patterns;
pub mod rate;
pub mod scanner;
pub mod sessions;
pub mod usage;

pub use acl::{Acl, TenantAcls};
pub use alerts::{Alert, Severity, WebhookAlert, WebhookSigner};
pub use bans::{Ban, BanConfig, BanEvent, Bans};
pub use classify::{Classification, Classifier, ClassifierConfig, DestinationClass};
pub use error::{Error, Result};
pub use patterns::{AutoSuspend, BusinessHours, CallInfo, PatternAlert, PatternConfig, Patterns};
pub use rate::{Admission, OverloadConfig, OverloadGate, RateConfig, RateLimiter, RequestKind};
pub use scanner::{ScanReason, ScanVerdict, ScannerConfig, ScannerDetector};
pub use sessions::{MediaSessions, SessionCaps, SessionGuard, SessionsFull};
pub use usage::{CallGuard, CallStart, Denial, Limits, Usage, UsageConfig};

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(super::truncate("héllo", 2), "h");
        assert_eq!(super::truncate("héllo", 3), "hé");
        assert_eq!(super::truncate("abc", 10), "abc");
    }
}
