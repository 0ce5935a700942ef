//! The B2BUA's view of media anchoring: a socket-free interface the host
//! implements with its relay. The core asks for one handle per call, passes every
//! SDP offer and answer through it (getting back the SDP for the other leg), and
//! reads the counters when the call ends.
//!
//! The same concept as `pbx`'s `server/media.rs` at another layer: this one is the
//! trait the B2BUA asks, that one implements it over the relay.

use std::time::Instant;

pub use model::{CdrMedia, LegMedia, MediaEncryption};

/// Which leg an SDP body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaLeg {
    /// The caller's leg.
    Caller,
    /// The callee's leg.
    Callee,
}

/// Whether each leg's signalling is on TLS: keys are only written into SDP sent
/// to a secure leg, and only taken from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSecurity {
    /// The leg the SDP came from.
    pub from_secure: bool,
    /// The leg the rewritten SDP goes to.
    pub to_secure: bool,
}

/// Why media could not be anchored, as the SIP status to answer with (400 for
/// malformed SDP, 488 for an unacceptable offer, 500/503 for local failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRefusal {
    pub status: u16,
    pub reason: String,
}

impl MediaRefusal {
    pub fn new(status: u16, reason: impl Into<String>) -> MediaRefusal {
        MediaRefusal {
            status,
            reason: reason.into(),
        }
    }

    /// The refusal the caller is answered with.
    pub(crate) fn error(&self) -> crate::Error {
        crate::Error::Media(self.status)
    }
}

/// Opens the media of new calls.
pub trait MediaAnchor: Send + Sync {
    /// Reserves media for call `call` of shard `shard`; idle reports for it come
    /// back through [`crate::Shard::media_idle`] with the same call id.
    fn open(&self, shard: usize, call: u64) -> Result<Box<dyn CallMediaHandle>, MediaRefusal>;
}

/// The media of one call. Dropping it releases the ports.
pub trait CallMediaHandle: Send + std::fmt::Debug {
    /// Takes an offer from `from` and returns the offer for the other leg.
    fn offer(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        security: MediaSecurity,
        policy: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// Takes the answer from `from` to the other leg's offer and returns the
    /// answer for the offerer. May be repeated (18x then 2xx).
    fn answer(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        security: MediaSecurity,
        policy: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// Answers an offer from `from` at the host itself (the PBX answers the
    /// call; nothing is forwarded to the other leg) and returns the answer.
    fn answer_here(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        from_secure: bool,
        policy: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// Counters of both legs so far.
    fn stats(&self) -> CdrMedia;
    /// When media last arrived.
    fn idle_since(&self) -> Instant;
}

/// Whether a body's content type is SDP.
pub(crate) fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}
