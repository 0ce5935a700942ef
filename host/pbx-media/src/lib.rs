//! Media anchoring for the PBX: both legs of a call send their media to the host,
//! which relays RTP and RTCP between them, terminates SRTP per leg and re-keys it,
//! and reports calls whose media stopped. On a leg the host answers itself it is
//! the endpoint: it plays prompts, hears key presses and records; such a leg can
//! later be connected to the other one without a new offer to it.
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
//! - [`g711`]: PCMU and PCMA, per sample and per 20 ms frame.
//! - [`prompt`]: what the host plays — 8 kHz mono PCM from WAV files (16-bit PCM
//!   or G.711), tones (a beep, DTMF per Q.23) and silence; bounded in length.
//! - [`play`]: [`Player`], prompts as one paced G.711 RTP stream (20 ms packets,
//!   absolute schedule, continuous sequence and timestamp).
//! - [`dtmf`]: the Q.23 keypad and [`DtmfReceiver`], RFC 4733 telephone events
//!   to one digit per key press.
//! - [`record`]: [`RecordSpec`] and [`Recording`], what a leg sends as 8 kHz
//!   PCM placed by RTP timestamp, ended by length, silence, a key or a stop;
//!   bounded by [`record::MAX_RECORDING`].
//! - [`call_record`]: [`CallRecorder`], what both legs of a relayed call send,
//!   mixed into one 8 kHz mono track placed by RTP timestamps.
//! - [`webrtc`]: browser legs in SDP — `UDP/TLS/RTP/SAVPF` offers and
//!   answers read and written (fingerprint, setup, mid, BUNDLE, ICE-lite,
//!   rtcp-mux), G.711 kept and WebRTC-only lines stripped toward SIP, and the
//!   RFC 7983 demultiplexing of a browser leg's port.
//! - [`ice`]: ICE-lite, a pure function from a STUN Binding request to its
//!   signed answer (or nothing).
//! - [`dtls`]: the one async part of a browser leg — the DTLS-SRTP handshake
//!   over `webrtc-dtls`, the host's certificate ([`DtlsIdentity`]), the
//!   peer's checked against its `a=fingerprint`, and the SRTP keys exported
//!   from it (RFC 5764 §4.2).
//! - [`session`]: [`MediaSession`], the state of one call: offer/answer rewriting
//!   (`offer_from`/`answer_from` return the SDP for the other leg), latching
//!   (symmetric RTP), decrypt/re-encrypt, statistics, and `idle_since()`; fed
//!   datagrams and `now`, it returns what to send. On a leg answered with
//!   `answer_here` it plays (`play`, `poll_transmit`, `poll_timeout`), hears
//!   digits and records (`record`), reported as [`SessionEvent`]s;
//!   `offer_from_host`/`answer_to_host_offer` then connect it to the other leg.
//!   Between two relayed legs it can `announce` prompts to both before they
//!   hear each other and then record the call (`record_call`).
//! - [`relay`]: [`MediaRelay`] owns the UDP port range (even RTP port, RTCP next),
//!   [`MediaRelay::open_call`] reserves a pair per leg and runs one task per call,
//!   which also sends what its session has due to play;
//!   [`CallMedia`] is the synchronous handle the B2BUA uses, [`MediaControl`]
//!   a cloneable one for playing and recording from other tasks, and idle
//!   calls, finished prompts, digits and recordings are reported as
//!   [`MediaEvent`]s.
//!
//! Keys for a leg are only ever written into SDP sent to that leg, and only when
//! its signalling is secure ([`Security`]); [`EncryptionPolicy`] decides whether
//! plaintext is acceptable. A browser leg's keys never travel in SDP: they
//! come from its DTLS handshake, and until then nothing goes to or comes from
//! the leg.
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
//! let security = Security { from_secure: true, to_secure: false, to_webrtc: false };
//! let to_callee = call.offer_from(Leg::A, offer, security, EncryptionPolicy::Optional)?;
//!
//! // Or the host answers the caller itself, beeps and listens for digits.
//! let ivr = relay.open_call()?;
//! let answer = ivr.answer_here(Leg::A, offer, true, EncryptionPolicy::Optional)?;
//! ivr.play(Leg::A, Prompt::beep())?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         MediaEvent::PromptFinished { .. } => { /* play the next, or hang up */ }
//!         MediaEvent::Digit { digit: _, .. } => { /* barge in: */ ivr.stop_playing(Leg::A); }
//!         MediaEvent::RecordingFinished { recording, .. } => { let _wav = recording.to_wav(); }
//!         _ => {}
//!     }
//! }
//! # let _ = (to_callee, answer);
//! # Ok(()) }
//! ```

pub mod call_record;
pub mod dtls;
pub mod dtmf;
mod error;
pub mod g711;
pub mod ice;
pub mod play;
pub mod prompt;
pub mod record;
pub mod relay;
pub(crate) mod rtp;
pub mod sdes;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod upload;
pub mod webrtc;

pub use call_record::CallRecorder;
pub use dtls::{DtlsIdentity, DtlsKeys};
pub use dtmf::{Digit, DtmfReceiver};
pub use error::{Error, MediaError, Result};
pub use g711::G711;
pub use play::Player;
pub use prompt::Prompt;
pub use record::{RecordSpec, Recording, RecordingEnd};
pub use relay::{CallId, CallMedia, MediaConfig, MediaControl, MediaEvent, MediaRelay, Pacing};
pub use rtp::Channel;
pub use sdes::{KeyMaterial, Suite};
pub use session::{
    AnsweredFormat, CallMediaStats, DtlsStart, EncryptionPolicy, Leg, LegStats, LocalPorts,
    MediaSession, Security, SessionEvent, Transmit,
};
pub use srtp::{SrtpCounters, SrtpReceiver, SrtpSender};
pub use webrtc::{DtlsRole, Fingerprint};
