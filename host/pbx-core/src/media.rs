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
    /// The leg the SDP goes to is a browser (SIP over WebSocket), so offer it
    /// DTLS-SRTP.
    pub to_webrtc: bool,
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

/// Why the host cannot run its own media (play, gather, record) for one more
/// call: its tenant, or the whole host, holds all the host media sessions it
/// may (`pbx_model::limits` documents both caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMediaFull {
    /// The tenant's share is in use: the caller hears busy (486).
    Tenant { limit: u32 },
    /// The host's total is in use (503).
    Host { limit: u32 },
}

impl HostMediaFull {
    /// The tag the call's record carries.
    pub const TAG: &'static str = "media-sessions-full";

    /// The status and reason phrase the caller is answered with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HostMediaFull::Tenant { .. } => (486, "Busy Here"),
            HostMediaFull::Host { .. } => (503, "Service Unavailable"),
        }
    }

    /// What the `Warning` and `Reason` headers say.
    pub fn text(self) -> String {
        match self {
            HostMediaFull::Tenant { limit } => {
                format!("the tenant's {limit} host media sessions are in use")
            }
            HostMediaFull::Host { limit } => {
                format!("the host's {limit} media sessions are in use")
            }
        }
    }
}

/// Opens the media of new calls.
pub trait MediaAnchor: Send + Sync {
    /// Reserves media for call `call` of `tenant` on shard `shard`; idle
    /// reports and the notices of what the host plays and hears come back
    /// through [`crate::Shard::media_idle`] and [`crate::Shard::media_notice`]
    /// with the same call id. The tenant scopes the prompts and mailboxes the
    /// call's media may name.
    fn open(
        &self,
        shard: usize,
        call: u64,
        tenant: model::TenantId,
    ) -> Result<Box<dyn CallMediaHandle>, MediaRefusal>;
}

/// What the media of a call the host answered reports back to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaNotice {
    /// Everything [`CallMediaHandle::play`] queued has been played (or could
    /// not be: a prompt the tenant does not have is skipped).
    PromptFinished,
    /// The caller pressed a key (RFC 4733 event).
    Digit(char),
    /// A recording ended and was stored in the mailbox: its id and length
    /// (the mailbox's phones hear of it through [`crate::Shard::notify_mailbox`]).
    RecordingStored {
        id: String,
        duration: std::time::Duration,
    },
    /// A recording ended and nothing was stored (nothing said, mailbox full,
    /// storage failed), for this reason.
    RecordingFailed(String),
    /// The tenant's storage has no room for a voicemail message: the
    /// mailbox-full prompt was played instead of the greeting
    /// ([`CallMediaHandle::voicemail_greeting`]).
    MailboxFull,
    /// No recording was made: the tenant's recording minutes are used up.
    /// The caller has heard so (the tenant's `recording-full` prompt, or the
    /// error tone); the call's record is tagged
    /// [`MediaNotice::RECORDING_MINUTES_FULL`].
    RecordingMinutesFull,
}

impl MediaNotice {
    /// The tag of a call whose recording found no minutes left.
    pub const RECORDING_MINUTES_FULL: &'static str = "recording-minutes-full";
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
    /// Plays `prompts` in order to the caller, whose leg the host answered
    /// ([`CallMediaHandle::answer_here`]); one [`MediaNotice::PromptFinished`]
    /// follows the last. Replaces anything still playing.
    fn play(&self, prompts: &[crate::PromptRef]) -> Result<(), MediaRefusal>;
    /// Stops what plays (barge-in); no notice follows.
    fn stop_playing(&self);
    /// Records the caller (`caller`, as the message's sender) into
    /// `record.mailbox`; [`MediaNotice::RecordingStored`] or
    /// [`MediaNotice::RecordingFailed`] follows.
    fn record(&self, record: &crate::Record, caller: &str) -> Result<(), MediaRefusal>;
    /// Plays `greeting` before a message is recorded into `mailbox`, when
    /// the tenant's media storage has room for one:
    /// [`MediaNotice::PromptFinished`] follows. Without room, plays the
    /// mailbox-full prompt instead and [`MediaNotice::MailboxFull`] follows.
    fn voicemail_greeting(
        &self,
        mailbox: &str,
        greeting: &[crate::PromptRef],
    ) -> Result<(), MediaRefusal>;
    /// Runs the mailbox menu of `mailbox` on the caller's leg (the caller's
    /// keys come through [`CallMediaHandle::menu_key`]);
    /// [`MediaNotice::PromptFinished`] follows its end.
    fn voicemail_menu(&self, mailbox: &str) -> Result<(), MediaRefusal>;
    /// A key the caller pressed, for the menu running on the call.
    fn menu_key(&self, key: char);
    /// An offer to the callee while the caller's leg ends at the host: the
    /// format the host's answer chose, so that the caller can be connected
    /// to whoever answers without a new offer to the caller. `to_webrtc`: the
    /// callee is a browser (offer it DTLS-SRTP).
    fn offer_from_host(
        &self,
        to_secure: bool,
        to_webrtc: bool,
        policy: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// The callee's answer to [`CallMediaHandle::offer_from_host`]: the host
    /// stops playing and recording, and the two legs talk through the relay.
    fn answer_to_host_offer(
        &self,
        sdp: &[u8],
        security: MediaSecurity,
        policy: MediaEncryption,
    ) -> Result<(), MediaRefusal>;
    /// Call pickup: connects a phone that picks the ringing call up (its
    /// offer `picker`, on the callee's leg) to the caller, answering the
    /// caller's offer at the host too when `caller` gives it (the offer and
    /// whether the caller's signalling is secure). Returns the answers for
    /// the caller (when asked) and for the picker; on error nothing changed.
    fn answer_pickup(
        &self,
        caller: Option<(&[u8], bool)>,
        picker: &[u8],
        picker_secure: bool,
        policy: MediaEncryption,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), MediaRefusal>;
    /// The caller and the callee talk through the relay from now on (a phone
    /// or a trunk answered; `caller` and `callee` as the call's record names
    /// them). The anchor may announce and record the call here. The default
    /// does nothing.
    fn connected(&self, _caller: &str, _callee: &str) {}
    /// Takes one of the tenant's host media sessions for this call, before
    /// the host answers it to play, gather or record; held until the handle
    /// is dropped or the call is connected to a phone
    /// ([`CallMediaHandle::answer_to_host_offer`]). Asking again while one is
    /// held is a no-op. The default holds nothing (an anchor without caps).
    fn hold_host_session(&self) -> Result<(), HostMediaFull> {
        Ok(())
    }
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
