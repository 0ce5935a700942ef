//! Media anchoring for the PBX: both legs of a call send their media to the host,
//! which relays RTP and RTCP between them, terminates SRTP per leg and re-keys it,
//! and reports calls whose media stopped.
//!
//! # Design
//! Protocol logic is sans-IO and clock-free; only [`relay`] does I/O.
//!
//! - [`sdp`]: a strict SDP parser/writer that keeps unknown lines verbatim and
//!   rewrites addresses, ports and `a=crypto` lines.
//! - [`sdes`]: SRTP crypto suites, key material in `a=crypto`, fresh keys, choosing
//!   a suite from an offer.
//! - [`srtp`]: per-leg SRTP contexts over `webrtc-srtp` with replay protection, SSRC
//!   pinning and drop counters.
//! - [`session`]: [`MediaSession`], the state of one call: offer/answer rewriting
//!   (`offer_from`/`answer_from` return the SDP for the other leg), latching
//!   (symmetric RTP), decrypt/re-encrypt, statistics, and `idle_since()`; fed
//!   datagrams and `now`, it returns what to send.
//! - [`relay`]: [`MediaRelay`] owns the UDP port range (even RTP port, RTCP next),
//!   [`MediaRelay::open_call`] reserves a pair per leg and runs one task per call;
//!   [`CallMedia`] is the synchronous handle the B2BUA uses, and idle calls are
//!   reported as [`MediaEvent::Idle`].
//!
//! Keys for a leg are only ever written into SDP sent to that leg, and only when
//! its signalling is secure ([`Security`]); [`EncryptionPolicy`] decides whether
//! plaintext is acceptable.
//!
//! ```no_run
//! # async fn demo(offer: &[u8]) -> pbx_media::Result<()> {
//! use pbx_media::*;
//! let (relay, mut events) = MediaRelay::new(MediaConfig {
//!     bind_ip: "203.0.113.7".parse().unwrap(),
//!     advertise_ip: None,
//!     port_min: 20000,
//!     port_max: 29999,
//!     idle_timeout: std::time::Duration::from_secs(60),
//! })?;
//! let call = relay.open_call()?;
//! let security = Security { from_secure: true, to_secure: false };
//! let to_callee = call.offer_from(Leg::A, offer, security, EncryptionPolicy::Optional)?;
//! # let _ = (to_callee, events.recv().await);
//! # Ok(()) }
//! ```

pub mod dtmf;
mod error;
pub mod g711;
pub mod play;
pub mod prompt;
pub mod relay;
pub(crate) mod rtp;
pub mod sdes;
pub mod sdp;
pub mod session;
pub mod srtp;

pub use dtmf::{Digit, DtmfReceiver};
pub use error::{Error, MediaError, Result};
pub use g711::G711;
pub use play::Player;
pub use prompt::Prompt;
pub use relay::{CallId, CallMedia, MediaConfig, MediaEvent, MediaRelay, Pacing};
pub use rtp::Channel;
pub use sdes::{KeyMaterial, Suite};
pub use session::{
    AnsweredFormat, CallMediaStats, EncryptionPolicy, Leg, LegStats, LocalPorts, MediaSession,
    Security, SessionEvent, Transmit,
};
pub use srtp::{SrtpCounters, SrtpReceiver, SrtpSender};
