//! The sans-IO media state of one call: offer/answer rewriting, per-leg SRTP,
//! latching and forwarding decisions, statistics and the idle clock.
//!
//! [`MediaSession`] never touches a socket or reads the clock. The relay feeds it
//! each datagram with the leg and channel it arrived on and `now`, and sends the
//! [`Transmit`] it returns. Offer/answer methods take SDP bytes and return the SDP
//! for the other leg.
//!
//! Only the first active audio stream of an offer is anchored; every other stream
//! is disabled (port 0) in the SDP passed on, so the answer disables it too.
//!
//! # The host as an endpoint
//! A leg answered by [`MediaSession::answer_here`] ends at the host: its media
//! is never forwarded (nor is the other leg's forwarded to it) until an answer
//! from the other leg ([`MediaSession::answer_from`]) connects the two. On such
//! a leg the host plays prompts ([`MediaSession::play`], paced by
//! [`MediaSession::poll_transmit`] and [`MediaSession::poll_timeout`]) in the
//! format its answer chose ([`AnsweredFormat`]), SRTP-protected with the key
//! that answer gave, hears RFC 4733 key presses, and records what the leg
//! sends ([`MediaSession::record`], see [`crate::record`]). What happens is
//! told by [`SessionEvent`]s from [`MediaSession::poll_event`].
//!
//! # Connecting a leg the host answered
//! When the host answered leg A itself (an IVR) and the call then goes on to
//! leg B, [`MediaSession::offer_from_host`] makes the offer for B from the
//! host's own answer to A: the one format it kept, with the same payload type
//! numbers, so A needs no new offer/answer. B's answer
//! ([`MediaSession::answer_to_host_offer`]) ends the host's end of A and the
//! legs are relayed as in any call; A keeps the keys of the host's answer.

//!
//! # Browser legs (WebRTC)
//! A leg is a browser's when its offer or answer uses `UDP/TLS/RTP/SAVPF`
//! with `a=fingerprint`, or when [`Security::to_webrtc`] says the offer goes
//! to one. SDP toward it is written by [`crate::webrtc`]; SDP from it reaches
//! the other leg as plain RTP/AVP or SDES with G.711 only. The leg's address
//! is never taken from SDP: [`MediaSession::handle`] answers its ICE checks
//! ([`crate::ice`]) and latches to the address a check came from (the first,
//! then any the browser nominates). Its one port carries STUN, DTLS, RTP and
//! RTCP (RFC 7983, RFC 5761); DTLS is the relay's business: once ICE has
//! checked the leg and offer/answer settled the roles,
//! [`MediaSession::poll_dtls_start`] hands out the handshake to run,
//! [`MediaSession::accepts_dtls`] says which records belong to it, and
//! [`MediaSession::install_dtls_keys`] (or [`MediaSession::dtls_failed`])
//! ends it. Until the keys are in, nothing is forwarded to or from the leg.
//! The host answers a browser itself ([`MediaSession::answer_here`]) and
//! plays to it once its keys are in, and offers to one on its own with
//! [`MediaSession::offer_from_host_to`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use crate::call_record::CallRecorder;
use crate::dtls::DtlsKeys;
use crate::dtmf::{self, Digit, DtmfReceiver};
use crate::error::{Error, Result};
use crate::g711::G711;
use crate::ice::{self, IceCredentials};
use crate::play::{Played, Player};
use crate::prompt::Prompt;
use crate::record::{RecordSpec, Recorder, Recording, RecordingEnd};
use crate::rtp::{self, Channel, LossCounter};
use crate::sdes::{self, Chosen, KeyMaterial, Suite};
use crate::sdp::{CryptoAttr, Direction, Line, Media, Sdp};
use crate::srtp::{SrtpReceiver, SrtpSender};
use crate::webrtc::{self, BrowserSdp, Demux, DtlsRole, Fingerprint, OurTransport};

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
}

impl Leg {
    /// The opposite leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// Whether media must, may or must not be encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionPolicy {
    /// Both legs must use SRTP; a plaintext offer or answer is an error (488).
    Required,
    /// SRTP on each leg where the peer offers or accepts it and its signalling is secure.
    Optional,
    /// Never SRTP; an `RTP/SAVP`-only offer is an error (488).
    Disabled,
}

/// Whether the signalling of each leg is on a secure transport (TLS). Keys are only
/// sent in SDP to a secure leg, and only taken from one. DTLS-SRTP keys never
/// travel in SDP, so a browser leg needs no secure signalling for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Security {
    /// The leg the SDP came from.
    pub from_secure: bool,
    /// The leg the rewritten SDP goes to.
    pub to_secure: bool,
    /// The leg the SDP goes to is a browser (SIP over WebSocket), so offer it
    /// DTLS-SRTP with ICE-lite ([`crate::webrtc`]). Whether the leg the SDP
    /// came from is a browser is read from the SDP itself.
    pub to_webrtc: bool,
}

/// Our side of the call: the address to put in SDP and each leg's RTP port
/// (RTCP is the next port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPorts {
    /// Address advertised in SDP.
    pub ip: IpAddr,
    /// RTP port facing leg A.
    pub a: u16,
    /// RTP port facing leg B.
    pub b: u16,
}

impl LocalPorts {
    fn port(&self, leg: Leg) -> u16 {
        match leg {
            Leg::A => self.a,
            Leg::B => self.b,
        }
    }
}

/// A datagram to send: from our socket facing `leg` on `channel`, to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The leg it goes to (and whose local socket sends it).
    pub leg: Leg,
    /// RTP or RTCP socket.
    pub channel: Channel,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Bytes,
    /// For a packet the host plays, when it was due (the driver may measure
    /// how late it leaves); `None` for relayed packets.
    pub due: Option<Instant>,
}

/// The audio format the host's own answer ([`MediaSession::answer_here`]) kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredFormat {
    /// Payload type of the audio format.
    pub payload_type: u8,
    /// Its clock rate, from the offer's `a=rtpmap` or RFC 3551's static table.
    pub clock_rate: Option<u32>,
    /// The G.711 law, when the format is PCMU or PCMA at 8000 Hz: what the
    /// host can play.
    pub g711: Option<G711>,
    /// Payload type and clock rate of the `telephone-event` format kept.
    pub telephone_event: Option<(u8, u32)>,
}

/// Something that happened on a leg the host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The last packet of a prompt was sent (or, on a leg whose answer does
    /// not let the host send, its time passed).
    PromptFinished {
        /// The leg it played on.
        leg: Leg,
    },
    /// A key press arrived as an RFC 4733 telephone event.
    Digit {
        /// The leg it came from.
        leg: Leg,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// How long the key was held.
        duration_ms: u32,
    },
    /// An announcement to both legs ([`MediaSession::announce`]) has been
    /// played; the legs hear each other from now on.
    AnnouncementFinished,
    /// A recording ([`MediaSession::record`]) ended.
    RecordingFinished {
        /// The leg it was made on.
        leg: Leg,
        /// The audio and why it ended.
        recording: Recording,
    },
}

/// Events a session holds until polled; more are dropped and counted. A
/// [`SessionEvent::RecordingFinished`] is never dropped: there is at most one
/// per call of [`MediaSession::record`].
pub const MAX_SESSION_EVENTS: usize = 64;

/// Per-leg counters. "in" is what the leg sent us, "out" what we sent it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LegStats {
    /// Datagrams accepted from the leg (before SRTP checks).
    pub packets_in: u64,
    /// Bytes accepted from the leg.
    pub bytes_in: u64,
    /// Datagrams sent to the leg.
    pub packets_out: u64,
    /// Bytes sent to the leg.
    pub bytes_out: u64,
    /// SRTP/SRTCP packets from the leg that failed authentication.
    pub srtp_auth_failures: u64,
    /// SRTP/SRTCP packets from the leg dropped as replays.
    pub srtp_replays: u64,
    /// Datagrams dropped for other reasons (unknown source, foreign SSRC,
    /// malformed, no destination yet).
    pub dropped: u64,
    /// RTP packets missing from the leg's sequence numbers.
    pub packets_lost: u64,
    /// The address media from the leg was latched to.
    pub latched: Option<SocketAddr>,
    /// Whether the leg uses SRTP.
    pub srtp: bool,
    /// Key presses heard from the leg (host-answered legs only).
    pub digits: u64,
}

/// Counters of both legs of a call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallMediaStats {
    /// The caller's leg.
    pub a: LegStats,
    /// The callee's leg.
    pub b: LegStats,
}

#[derive(Default)]
struct LegState {
    remote: [Option<SocketAddr>; 2],
    latched: [Option<SocketAddr>; 2],
    // The SRTP contexts, the host's end and the WebRTC transport are boxed:
    // most legs have none of them, and inline they were 1.3 KiB of every leg.
    rx: Option<Box<SrtpReceiver>>,
    tx: Option<Box<SrtpSender>>,
    stats: LegStats,
    loss: LossCounter,
    /// Set while the leg ends at the host.
    here: Option<Box<HostEnd>>,
    /// Set while the leg is a browser's (DTLS-SRTP, ICE-lite, rtcp-mux).
    webrtc: Option<Box<WebRtcLeg>>,
}

/// The WebRTC transport of a browser leg.
#[derive(Clone)]
struct WebRtcLeg {
    /// Our ICE credentials on this leg.
    ice: IceCredentials,
    /// The fingerprint of the browser's certificate, from its SDP.
    peer: Option<Fingerprint>,
    /// Our DTLS role, once offer and answer settled it.
    role: Option<DtlsRole>,
    /// The `a=mid` of the leg's audio section.
    mid: String,
    dtls: DtlsState,
}

/// Where a browser leg's handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DtlsState {
    /// Not handed to the relay yet ([`MediaSession::poll_dtls_start`]).
    Waiting,
    /// Handed to the relay; no keys yet.
    Started,
    /// Keys installed ([`MediaSession::install_dtls_keys`]).
    Keyed,
    /// The handshake failed ([`MediaSession::dtls_failed`]): no media.
    Failed,
}

impl WebRtcLeg {
    /// The state for a browser leg whose certificate is `peer` (unknown
    /// until its SDP arrives) and our role `role`, keeping what `old` had
    /// when the browser is the same one: a re-offer keeps ICE credentials
    /// and, for the same certificate, the established DTLS association.
    fn renewed(
        old: Option<WebRtcLeg>,
        peer: Option<Fingerprint>,
        role: Option<DtlsRole>,
        mid: String,
    ) -> Self {
        let fresh = |ice| WebRtcLeg {
            ice,
            peer,
            role,
            mid: mid.clone(),
            dtls: DtlsState::Waiting,
        };
        match old {
            Some(o)
                if matches!(o.dtls, DtlsState::Started | DtlsState::Keyed)
                    && (peer.is_none() || o.peer == peer) =>
            {
                o
            }
            Some(o) => fresh(o.ice),
            None => fresh(IceCredentials::generate()),
        }
    }

    /// Our `a=setup` in an offer: `actpass`, or our role once a handshake
    /// is under way (RFC 5763 §5: a new offer must not start a new one).
    fn offer_setup(&self) -> &'static str {
        match (self.dtls, self.role) {
            (DtlsState::Started | DtlsState::Keyed, Some(role)) => role.setup(),
            _ => "actpass",
        }
    }
}

/// A handshake the relay is to run ([`MediaSession::poll_dtls_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsStart {
    /// The browser leg.
    pub leg: Leg,
    /// Our side of the handshake.
    pub role: DtlsRole,
    /// The fingerprint the browser's certificate must have.
    pub peer: Fingerprint,
}

/// The host's end of a leg it answered.
struct HostEnd {
    format: Option<AnsweredFormat>,
    /// The `a=rtpmap`/`a=fmtp` lines of the formats the answer kept, and the
    /// transport it answered on: what an offer to the other leg repeats.
    kept: Vec<Line>,
    proto: String,
    /// Whether the answer lets the host send (not `recvonly` or `inactive`).
    sends: bool,
    player: Option<Player>,
    /// When the player last handed out a packet.
    last_played: Option<Instant>,
    dtmf: Option<DtmfReceiver>,
    capture: Option<Capture>,
}

/// A recording on a leg the host answered.
struct Capture {
    recorder: Recorder,
    /// The key that ends it, as [`dtmf::event_digit`] names it.
    finish_key: Option<char>,
    /// While its beep is to play: the prompts still to finish before the beep.
    beep_ahead: Option<usize>,
}

impl HostEnd {
    /// The law and payload type the host plays and records in.
    fn g711(&self) -> Result<(G711, u8)> {
        self.format
            .and_then(|f| Some((f.g711?, f.payload_type)))
            .ok_or(Error::NotAcceptable(
                "the host's answer chose neither PCMU nor PCMA",
            ))
    }

    /// The beep of a recording will not play (stopped, or the player is gone):
    /// the recording starts where playing stopped.
    fn beep_cut(&mut self) {
        if let Some(c) = &mut self.capture
            && c.beep_ahead.take().is_some()
        {
            c.recorder
                .start(self.last_played.unwrap_or(c.recorder.created()));
        }
    }

    /// Ends the recording, if one runs, with `how` and queues its event; a
    /// beep still to play stops with what plays. Returns whether one ran.
    fn end_recording(
        &mut self,
        leg: Leg,
        how: RecordingEnd,
        events: &mut VecDeque<SessionEvent>,
    ) -> bool {
        let Some(c) = self.capture.take() else {
            return false;
        };
        if c.beep_ahead.is_some()
            && let Some(p) = &mut self.player
        {
            p.stop();
        }
        events.push_back(SessionEvent::RecordingFinished {
            leg,
            recording: c.recorder.finish(how),
        });
        true
    }

    /// A key press: the recording's finish key ends it, any other is reported.
    fn heard(
        &mut self,
        leg: Leg,
        d: Digit,
        stats: &mut LegStats,
        events: &mut VecDeque<SessionEvent>,
        dropped: &mut u64,
    ) {
        stats.digits += 1;
        if self
            .capture
            .as_ref()
            .is_some_and(|c| c.finish_key == Some(d.digit))
        {
            self.end_recording(leg, RecordingEnd::FinishKey, events);
        } else {
            push_event(
                events,
                dropped,
                SessionEvent::Digit {
                    leg,
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                },
            );
        }
    }
}

/// Counts a finished prompt against the beep of `capture`; true when it was
/// the beep, which starts the recording at `now`.
fn beep_finished(capture: &mut Option<Capture>, now: Instant) -> bool {
    let Some(c) = capture else {
        return false;
    };
    match c.beep_ahead {
        Some(0) => {
            c.beep_ahead = None;
            c.recorder.start(now);
            true
        }
        Some(n) => {
            c.beep_ahead = Some(n - 1);
            false
        }
        None => false,
    }
}

fn push_event(events: &mut VecDeque<SessionEvent>, dropped: &mut u64, event: SessionEvent) {
    if events.len() >= MAX_SESSION_EVENTS {
        *dropped += 1;
    } else {
        events.push_back(event);
    }
}

fn ch(channel: Channel) -> usize {
    match channel {
        Channel::Rtp => 0,
        Channel::Rtcp => 1,
    }
}

/// A packet the host plays to `leg`, sent to `to` (the leg's latched or
/// signalled address) and protected with the leg's `tx`, and counted in
/// `stats`; `None` (counted as dropped) without an address or when
/// protection fails.
fn send_played(
    leg: Leg,
    played: Played,
    to: Option<SocketAddr>,
    tx: &mut Option<Box<SrtpSender>>,
    stats: &mut LegStats,
    blocked: bool,
) -> Option<Transmit> {
    let (Some(to), false) = (to, blocked) else {
        stats.dropped += 1;
        return None;
    };
    let data = match tx {
        Some(tx) => match tx.protect(Channel::Rtp, &played.packet) {
            Some(b) => b,
            None => {
                stats.dropped += 1;
                return None;
            }
        },
        None => played.packet,
    };
    stats.packets_out += 1;
    stats.bytes_out += data.len() as u64;
    Some(Transmit {
        leg,
        channel: Channel::Rtp,
        to,
        data,
        due: Some(played.due),
    })
}

impl LegState {
    /// Takes what an answer from this leg settled: for a browser (`dtls`:
    /// its certificate and our role) the DTLS association, kept when a
    /// repeated answer (183 then 200) says the same; for any other leg its
    /// addresses and SDES keys.
    fn settle(
        &mut self,
        dtls: Option<(Fingerprint, DtlsRole)>,
        (rtp, rtcp): (Option<SocketAddr>, Option<SocketAddr>),
        (rx, tx): (Option<SrtpReceiver>, Option<SrtpSender>),
    ) -> Result<()> {
        match (dtls, self.webrtc.as_mut()) {
            (Some(_), None) => return Err(Error::Protocol("the browser leg has no WebRTC state")),
            (Some((peer, role)), Some(w)) => {
                if w.peer != Some(peer) || w.role != Some(role) || w.dtls == DtlsState::Failed {
                    w.peer = Some(peer);
                    w.role = Some(role);
                    w.dtls = DtlsState::Waiting;
                    self.set_keys(None, None);
                }
            }
            (None, _) => {
                self.webrtc = None;
                self.set_remote(rtp, rtcp);
                self.set_keys(rx, tx);
            }
        }
        Ok(())
    }

    /// A browser leg without DTLS keys yet: nothing may go to it.
    fn blocked(&self) -> bool {
        self.webrtc.is_some() && self.tx.is_none()
    }

    fn set_remote(&mut self, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        if self.remote != [rtp, rtcp] {
            self.remote = [rtp, rtcp];
            self.latched = [None, None];
        }
    }

    /// Installs keys, keeping the existing context when the key is unchanged (so
    /// replay and rollover state survive a repeated answer).
    fn set_keys(&mut self, rx: Option<SrtpReceiver>, tx: Option<SrtpSender>) {
        if rx.as_ref().map(SrtpReceiver::keys) != self.rx.as_deref().map(SrtpReceiver::keys) {
            self.rx = rx.map(Box::new);
        }
        if tx.as_ref().map(SrtpSender::keys) != self.tx.as_deref().map(SrtpSender::keys) {
            self.tx = tx.map(Box::new);
        }
    }

    fn stats(&self) -> LegStats {
        let mut s = self.stats;
        if let Some(rx) = &self.rx {
            let c = rx.counters();
            s.srtp_auth_failures += c.auth_failures;
            s.srtp_replays += c.replays;
            s.dropped += c.foreign_ssrc + c.malformed;
        }
        s.packets_lost = self.loss.lost();
        s.latched = self.latched[0];
        s.srtp = self.rx.is_some() || self.tx.is_some();
        s
    }
}

struct PendingOffer {
    from: Leg,
    index: usize,
    from_proto: String,
    /// The offerer is a browser: its offer, for the sections our answer
    /// must mirror (mids, BUNDLE, rejected sections).
    browser: Option<(BrowserSdp, Sdp)>,
    /// The offer went to a browser (DTLS-SRTP).
    to_browser: bool,
    /// Tag and our key for the answer to the offerer, when it gets SRTP.
    to_offerer: Option<(u32, KeyMaterial)>,
    /// Keys we offered to the other leg, by tag.
    offered: Vec<(u32, KeyMaterial)>,
}

/// An offer the host made ([`MediaSession::offer_from_host`]) to the leg
/// `to`, whose answer connects it with the leg the host answered.
struct HostOffer {
    to: Leg,
    /// The audio format offered: payload type and its encoding and rate.
    audio: (u8, Option<(String, u32)>),
    /// The telephone-event payload type offered.
    events: Option<u8>,
    /// Keys offered, by tag.
    offered: Vec<(u32, KeyMaterial)>,
    /// The offer went to a browser (DTLS-SRTP).
    to_browser: bool,
}

/// The media state of one call. See the module docs.
pub struct MediaSession {
    local: LocalPorts,
    legs: [LegState; 2],
    // Boxed, as only a moment of a call has one.
    offer: Option<Box<PendingOffer>>,
    host_offer: Option<HostOffer>,
    last_media: Instant,
    events: VecDeque<SessionEvent>,
    events_dropped: u64,
    /// The recording of the relayed call ([`MediaSession::record_call`]).
    call_record: Option<CallRecorder>,
    /// The G.711 format of the last answer between the legs, for
    /// announcements to both.
    relayed_format: Option<(G711, u8)>,
    /// An announcement playing to both legs ([`MediaSession::announce`]).
    announcement: Option<Box<Announcement>>,
    /// The legs do not hear each other yet ([`MediaSession::hold`]).
    held: bool,
    /// The fingerprint of the host's DTLS certificate, for browser legs.
    dtls_fingerprint: Option<Fingerprint>,
}

/// Prompts played to both legs of a relayed call before they hear each
/// other, and the recording that starts when they end.
struct Announcement {
    players: [Player; 2],
    record: Option<std::time::Duration>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("local", &self.local)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Attributes that describe the peer's own transport and must not be passed on.
const TRANSPORT_ATTRS: &[&str] = &[
    "rtcp",
    "rtcp-mux",
    "rtcp-mux-only",
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "fingerprint",
    "setup",
    "crypto",
];

fn set_secure(proto: &str, secure: bool) -> String {
    let feedback = proto.ends_with('F');
    match (secure, feedback) {
        (true, true) => "RTP/SAVPF",
        (true, false) => "RTP/SAVP",
        (false, true) => "RTP/AVPF",
        (false, false) => "RTP/AVP",
    }
    .to_owned()
}

/// The key an offer's sender uses, as `policy` and the transports allow: none
/// (plain RTP), or the first supported `a=crypto` of the offer; an offer the
/// policy cannot take is an error.
fn offerer_srtp(m: &Media, policy: EncryptionPolicy, security: Security) -> Result<Option<Chosen>> {
    let savp = m.is_savp();
    let chosen = sdes::negotiate(&m.cryptos())?;
    Ok(match policy {
        EncryptionPolicy::Disabled if savp => {
            return Err(Error::NotAcceptable("SRTP offered but disabled"));
        }
        EncryptionPolicy::Disabled => None,
        EncryptionPolicy::Required => {
            if !security.from_secure || !security.to_secure {
                return Err(Error::EncryptionRequired(
                    "a leg is not on a secure transport",
                ));
            }
            Some(chosen.ok_or(Error::EncryptionRequired("no supported a=crypto"))?)
        }
        EncryptionPolicy::Optional => match chosen {
            Some(c) if security.from_secure => Some(c),
            _ if savp => {
                return Err(Error::NotAcceptable(
                    "RTP/SAVP offer without a usable key on a secure transport",
                ));
            }
            _ => None,
        },
    })
}

fn anchored_index(sdp: &Sdp) -> Result<usize> {
    sdp.media
        .iter()
        .position(|m| m.kind == "audio" && m.port != 0 && (m.is_rtp() || webrtc::is_webrtc(m)))
        .ok_or(Error::NotAcceptable("no active RTP audio stream"))
}

/// The remote RTP and RTCP addresses of media section `index`; none while on hold
/// with an unspecified address.
fn remote_addrs(sdp: &Sdp, index: usize) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let (Some(m), Some(ip)) = (sdp.media.get(index), sdp.media_connection(index)) else {
        return (None, None);
    };
    if ip.is_unspecified() {
        return (None, None);
    }
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = match m.rtcp() {
        Some(r) => Some(SocketAddr::new(r.addr.unwrap_or(ip), r.port)),
        None => m.port.checked_add(1).map(|p| SocketAddr::new(ip, p)),
    };
    (Some(rtp), rtcp)
}

/// Copies `sdp` for the other side: our address and port on the anchored stream,
/// other streams disabled, the peer's transport attributes and keys removed.
fn rewrite(sdp: &Sdp, index: usize, ip: IpAddr, port: u16) -> Sdp {
    let mut out = sdp.clone();
    if out.connection().is_some() {
        out.set_connection(ip);
    }
    out.session
        .retain(|l| !l.attr().is_some_and(|(n, _)| TRANSPORT_ATTRS.contains(&n)));
    for (i, m) in out.media.iter_mut().enumerate() {
        m.remove_attrs(&["crypto"]);
        if i == index {
            m.port = port;
            m.port_count = None;
            m.set_connection(ip, false);
            m.remove_attrs(TRANSPORT_ATTRS);
        } else {
            m.port = 0;
        }
    }
    out
}

/// RFC 3551 table 4: the audio payload types with a static encoding.
fn static_format(pt: &str) -> Option<(&'static str, u32)> {
    Some(match pt {
        "0" => ("PCMU", 8000),
        "3" => ("GSM", 8000),
        "4" => ("G723", 8000),
        "5" => ("DVI4", 8000),
        "6" => ("DVI4", 16000),
        "7" => ("LPC", 8000),
        "8" => ("PCMA", 8000),
        "9" => ("G722", 8000),
        "10" | "11" => ("L16", 44100),
        "12" => ("QCELP", 8000),
        "13" => ("CN", 8000),
        "14" => ("MPA", 90000),
        "15" => ("G728", 8000),
        "16" => ("DVI4", 11025),
        "17" => ("DVI4", 22050),
        "18" => ("G729", 8000),
        _ => return None,
    })
}

/// The encoding name and clock rate of format `pt` of `m`: its `a=rtpmap`, else
/// the static assignment.
fn rtpmap(m: &Media, pt: &str) -> Option<(String, u32)> {
    m.lines
        .iter()
        .find_map(|l| match l.attr() {
            Some(("rtpmap", Some(v))) => {
                let (p, enc) = v.split_once(' ')?;
                let mut parts = enc.trim().split('/');
                let name = parts.next()?;
                let rate = parts.next()?.parse().ok()?;
                (p == pt).then(|| (name.to_owned(), rate))
            }
            _ => None,
        })
        .or_else(|| static_format(pt).map(|(n, r)| (n.to_owned(), r)))
}

fn payload_type(format: &str) -> Option<u8> {
    format.parse().ok().filter(|pt| *pt < 128)
}

/// Keeps one audio format of `m` — the first PCMU or PCMA at 8000 Hz offered
/// (what the host can play), else the first offered — and one
/// `telephone-event` format (at the audio's clock rate when there is one),
/// with their `a=rtpmap`/`a=fmtp` lines; drops the rest. Returns what was kept.
fn keep_playable_format(m: &mut Media) -> Option<AnsweredFormat> {
    let maps: Vec<(String, Option<(String, u32)>)> = m
        .formats
        .iter()
        .map(|f| (f.clone(), rtpmap(m, f)))
        .collect();
    let is_event = |map: &Option<(String, u32)>| {
        map.as_ref()
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case("telephone-event"))
    };
    let g711 = |map: &Option<(String, u32)>| {
        map.as_ref()
            .filter(|(_, rate)| *rate == 8000)
            .and_then(|(n, _)| G711::from_encoding(n))
    };
    let audio = maps
        .iter()
        .find(|(_, map)| g711(map).is_some())
        .or_else(|| maps.iter().find(|(_, map)| !is_event(map)));
    let rate = audio.and_then(|(_, map)| map.as_ref().map(|(_, r)| *r));
    let mut events = maps.iter().filter(|(_, map)| is_event(map));
    let event = events
        .clone()
        .find(|(_, map)| map.as_ref().map(|(_, r)| *r) == rate)
        .or_else(|| events.next());
    let kept: Vec<String> = audio
        .iter()
        .chain(event.iter())
        .map(|(f, _)| f.clone())
        .collect();
    m.lines.retain(|l| match l.attr() {
        Some(("rtpmap" | "fmtp", Some(v))) => {
            let pt = v.split(' ').next().unwrap_or("");
            kept.iter().any(|k| k == pt)
        }
        _ => true,
    });
    m.formats = kept;
    let (format, map) = audio?;
    Some(AnsweredFormat {
        payload_type: payload_type(format)?,
        clock_rate: rate,
        g711: g711(map),
        telephone_event: event.and_then(|(f, map)| Some((payload_type(f)?, map.as_ref()?.1))),
    })
}

/// The answerer's key and ours for it: the `a=crypto` of answer `m` that
/// takes one of the keys `offered` (none offered: plain RTP), as `policy` and
/// the answerer's transport allow.
fn answered_keys(
    offered: &[(u32, KeyMaterial)],
    m: &Media,
    security: Security,
    policy: EncryptionPolicy,
) -> Result<Option<(KeyMaterial, KeyMaterial)>> {
    let cryptos = m.cryptos();
    let mut answerer_keys = None;
    if offered.is_empty() {
        if !cryptos.is_empty() {
            return Err(Error::Protocol(
                "a=crypto in an answer to a plaintext offer",
            ));
        }
    } else {
        for c in &cryptos {
            let Some(ours) = offered.iter().find(|(t, _)| *t == c.tag) else {
                continue;
            };
            if let Some(theirs) = KeyMaterial::from_attr(c)?
                && theirs.suite() == ours.1.suite()
            {
                answerer_keys = Some((theirs, ours.1.clone()));
                break;
            }
        }
        if answerer_keys.is_none() {
            if policy == EncryptionPolicy::Required {
                return Err(Error::EncryptionRequired("answer has no usable a=crypto"));
            }
            if m.is_savp() {
                return Err(Error::NotAcceptable("RTP/SAVP answer without a usable key"));
            }
        }
    }
    if answerer_keys.is_some() && !security.from_secure {
        return Err(Error::NotAcceptable(
            "keys answered on an insecure transport",
        ));
    }
    Ok(answerer_keys)
}

/// A fresh key for each suite we support, tagged from 1: what an offer to a
/// leg that gets SRTP carries.
fn offer_keys() -> Vec<(u32, KeyMaterial)> {
    (1u32..)
        .zip(Suite::ALL)
        .map(|(tag, s)| (tag, KeyMaterial::generate(s)))
        .collect()
}

/// The receiver and sender of a leg keyed by `keys` (its key, ours).
fn srtp_pair(
    keys: Option<&(KeyMaterial, KeyMaterial)>,
) -> Result<(Option<SrtpReceiver>, Option<SrtpSender>)> {
    Ok(match keys {
        Some((theirs, ours)) => (
            Some(SrtpReceiver::new(theirs)?),
            Some(SrtpSender::new(ours)?),
        ),
        None => (None, None),
    })
}

/// Our `o=` line's value: a fresh session id, version 1, our address.
fn origin(ip: IpAddr) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!("pbx {} 1 IN {family} {ip}", rand::random::<u32>())
}

fn anchored(sdp: &mut Sdp, index: usize) -> Result<&mut Media> {
    sdp.media
        .get_mut(index)
        .ok_or(Error::NotAcceptable("stream missing"))
}

impl MediaSession {
    /// A session with our address and ports; `now` starts the idle clock.
    pub fn new(local: LocalPorts, now: Instant) -> Self {
        Self {
            local,
            legs: Default::default(),
            offer: None,
            host_offer: None,
            last_media: now,
            events: VecDeque::new(),
            events_dropped: 0,
            call_record: None,
            relayed_format: None,
            announcement: None,
            held: false,
            dtls_fingerprint: None,
        }
    }

    /// Lets the session take browser legs: `fingerprint` is that of the
    /// host's DTLS certificate ([`crate::dtls::DtlsIdentity`]). Without it
    /// a WebRTC offer, or `to_webrtc`, is `NotAcceptable`.
    pub fn with_dtls_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.dtls_fingerprint = Some(fingerprint);
        self
    }

    /// The host's DTLS fingerprint, when a browser leg needs one.
    fn fingerprint_for(&self, needed: bool) -> Result<Option<Fingerprint>> {
        match (needed, self.dtls_fingerprint) {
            (false, _) => Ok(None),
            (true, Some(fp)) => Ok(Some(fp)),
            (true, None) => Err(Error::NotAcceptable(
                "WebRTC legs need a DTLS certificate, and none is configured",
            )),
        }
    }

    /// Our address and ports.
    pub fn local(&self) -> LocalPorts {
        self.local
    }

    fn leg(&mut self, leg: Leg) -> &mut LegState {
        &mut self.legs[leg.index()]
    }

    /// Takes an offer from `from` and returns the offer to send to the other leg.
    /// On error nothing changes; the caller answers the offer with 488 (or 400
    /// for malformed SDP).
    pub fn offer_from(
        &mut self,
        from: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let parsed = Sdp::parse(sdp)?;
        let index = anchored_index(&parsed)?;
        let m = &parsed.media[index];
        let savp = m.is_savp();
        let browser = match webrtc::is_webrtc(m) {
            true => Some(BrowserSdp::read(&parsed, index)?),
            false => None,
        };
        let from_role = browser
            .as_ref()
            .map(BrowserSdp::answering_role)
            .transpose()?;
        let fingerprint = self.fingerprint_for(browser.is_some() || security.to_webrtc)?;
        if fingerprint.is_some() && policy == EncryptionPolicy::Disabled {
            return Err(Error::NotAcceptable(
                "a WebRTC leg needs SRTP, which is disabled",
            ));
        }
        // A browser leg is encrypted by DTLS-SRTP, whatever its signalling.
        let from_srtp = match browser {
            Some(_)
                if policy == EncryptionPolicy::Required
                    && !security.to_secure
                    && !security.to_webrtc =>
            {
                return Err(Error::EncryptionRequired(
                    "a leg is not on a secure transport",
                ));
            }
            Some(_) => None,
            None => offerer_srtp(
                m,
                policy,
                Security {
                    to_secure: security.to_secure || security.to_webrtc,
                    ..security
                },
            )?,
        };
        let to_srtp =
            policy != EncryptionPolicy::Disabled && security.to_secure && !security.to_webrtc;
        let offered = if to_srtp { offer_keys() } else { Vec::new() };
        let to_offerer = from_srtp
            .as_ref()
            .map(|c| (c.tag, KeyMaterial::generate(c.remote.suite())));

        let to_port = self.local.port(from.other());
        let mut out = rewrite(&parsed, index, self.local.ip, to_port);
        if browser.is_some() {
            webrtc::strip_browser_lines(&mut out);
        }
        let om = anchored(&mut out, index)?;
        let secure_proto = to_srtp && (policy == EncryptionPolicy::Required || savp);
        // A SIP phone gets plain RTP/AVP (or SAVP) from a browser, not AVPF.
        let base = if browser.is_some() {
            "RTP/AVP"
        } else {
            m.proto.as_str()
        };
        om.proto = set_secure(base, secure_proto);
        let attrs: Vec<CryptoAttr> = offered.iter().map(|(t, k)| k.to_attr(*t)).collect();
        om.set_cryptos(&attrs);
        if browser.is_some() || security.to_webrtc {
            webrtc::keep_g711(om)?;
        }
        let to_webrtc = fingerprint
            .filter(|_| security.to_webrtc)
            .map(|fp| self.offer_to_browser(&mut out, index, from.other(), fp));

        let rx = match &from_srtp {
            Some(c) => Some(SrtpReceiver::new(&c.remote)?),
            None => None,
        };
        let (rtp, rtcp) = remote_addrs(&parsed, index);
        let leg = self.leg(from);
        match &browser {
            // A browser's address comes from ICE and its keys from DTLS.
            Some(b) => {
                let mid = b
                    .mids
                    .get(index)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "0".to_owned());
                leg.webrtc = Some(Box::new(WebRtcLeg::renewed(
                    leg.webrtc.take().map(|w| *w),
                    Some(b.fingerprint),
                    from_role,
                    mid,
                )));
            }
            None => {
                leg.webrtc = None;
                leg.set_remote(rtp, rtcp);
                // The offerer's sending key is in its offer; what we send it is
                // keyed by our answer, installed in `answer_from`.
                if leg.rx.as_deref().map(SrtpReceiver::keys) != rx.as_ref().map(SrtpReceiver::keys)
                {
                    leg.rx = rx.map(Box::new);
                }
            }
        }
        if let Some(w) = to_webrtc {
            self.leg(from.other()).webrtc = Some(Box::new(w));
        }
        self.host_offer = None;
        self.offer = Some(Box::new(PendingOffer {
            from,
            index,
            from_proto: m.proto.clone(),
            browser: browser.map(|b| (b, parsed.clone())),
            to_browser: security.to_webrtc,
            to_offerer,
            offered,
        }));
        Ok(out.to_bytes())
    }

    /// Writes our offer to browser leg `to` into media section `index` of
    /// `out` (every other section gets a mid of its own, as BUNDLE-aware
    /// browsers expect one per section) and returns the leg's new state.
    fn offer_to_browser(
        &self,
        out: &mut Sdp,
        index: usize,
        to: Leg,
        fingerprint: Fingerprint,
    ) -> WebRtcLeg {
        webrtc::strip_browser_lines(out);
        let old = self.legs[to.index()].webrtc.as_deref().cloned();
        let leg = WebRtcLeg::renewed(old, None, None, index.to_string());
        for (i, m) in out.media.iter_mut().enumerate() {
            if i != index {
                m.lines.push(Line {
                    kind: 'a',
                    value: format!("mid:{i}"),
                });
            }
        }
        webrtc::write_browser_media(
            out,
            index,
            &OurTransport {
                ice: &leg.ice,
                fingerprint,
                setup: leg.offer_setup(),
                mid: &leg.mid,
                ip: self.local.ip,
                port: self.local.port(to),
            },
        );
        // Browsers that insist on bundling (`max-bundle`, as most SIP
        // phones in a browser configure) refuse an offer without the group.
        webrtc::write_bundle(out, &leg.mid);
        leg
    }

    /// Takes the answer from `from` to the pending offer of the other leg and
    /// returns the answer to send to the offerer. May be called again with the
    /// same answer (183 then 200): keys in use are kept.
    pub fn answer_from(
        &mut self,
        from: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let pending = self
            .offer
            .as_ref()
            .filter(|p| p.from == from.other())
            .ok_or(Error::Protocol(
                "answer without an offer from the other leg",
            ))?;
        let parsed = Sdp::parse(sdp)?;
        let m = parsed
            .media
            .get(pending.index)
            .ok_or(Error::NotAcceptable("answer lacks the audio stream"))?;
        let browser = pending.to_browser;
        if m.port == 0 || m.kind != "audio" || !(m.is_rtp() || (browser && webrtc::is_webrtc(m))) {
            return Err(Error::NotAcceptable("answer rejected the audio stream"));
        }
        // The browser we offered DTLS-SRTP to: its certificate and our role.
        let dtls = match browser {
            true if !webrtc::is_webrtc(m) => {
                return Err(Error::NotAcceptable(
                    "the browser answered without DTLS-SRTP",
                ));
            }
            true => {
                let b = BrowserSdp::read(&parsed, pending.index)?;
                Some((b.fingerprint, b.answered_role()?))
            }
            false => None,
        };
        let answerer_keys = match browser {
            true => None,
            false => answered_keys(&pending.offered, m, security, policy)?,
        };
        let relayed_format = m.formats.iter().find_map(|f| {
            let (name, rate) = rtpmap(m, f)?;
            let law = G711::from_encoding(&name).filter(|_| rate == 8000)?;
            Some((law, payload_type(f)?))
        });
        if pending.to_offerer.is_some() && !security.to_secure {
            return Err(Error::EncryptionRequired(
                "the offerer's transport is no longer secure",
            ));
        }

        let mut out = rewrite(
            &parsed,
            pending.index,
            self.local.ip,
            self.local.port(from.other()),
        );
        if browser {
            webrtc::strip_browser_lines(&mut out);
        }
        let om = anchored(&mut out, pending.index)?;
        om.proto = pending.from_proto.clone();
        let back: Vec<CryptoAttr> = pending
            .to_offerer
            .iter()
            .map(|(t, k)| k.to_attr(*t))
            .collect();
        om.set_cryptos(&back);
        if let Some((offer, offer_sdp)) = &pending.browser {
            self.answer_to_browser(&mut out, pending.index, from.other(), offer, offer_sdp)?;
        }

        let (arx, atx) = srtp_pair(answerer_keys.as_ref())?;
        let otx = match &pending.to_offerer {
            Some((_, k)) => Some(SrtpSender::new(k)?),
            None => None,
        };
        let offerer = pending.from;
        let offerer_is_browser = pending.browser.is_some();
        let (rtp, rtcp) = remote_addrs(&parsed, pending.index);
        self.leg(from).settle(dtls, (rtp, rtcp), (arx, atx))?;
        let o = self.leg(offerer);
        if !offerer_is_browser
            && otx.as_ref().map(SrtpSender::keys) != o.tx.as_deref().map(SrtpSender::keys)
        {
            o.tx = otx.map(Box::new);
        }
        // The answer connects the legs: neither ends at the host any more.
        for leg in &mut self.legs {
            leg.here = None;
        }
        self.relayed_format = relayed_format;
        Ok(out.to_bytes())
    }

    /// Writes the answer to browser leg `to`, whose offer was `offer_sdp`,
    /// into `out` (the other leg's answer, rewritten): our transport on
    /// section `index`, every other section rejected as the offer wrote it
    /// with its mid, BUNDLE of our one section when the offer bundled.
    fn answer_to_browser(
        &self,
        out: &mut Sdp,
        index: usize,
        to: Leg,
        offer: &BrowserSdp,
        offer_sdp: &Sdp,
    ) -> Result<()> {
        let fingerprint = self.dtls_fingerprint.ok_or(Error::NotAcceptable(
            "WebRTC legs need a DTLS certificate, and none is configured",
        ))?;
        let w = self.legs[to.index()]
            .webrtc
            .as_ref()
            .ok_or(Error::Protocol("the browser leg has no WebRTC state"))?;
        let role = w
            .role
            .ok_or(Error::Protocol("no DTLS role for the browser leg"))?;
        if out.media.len() != offer_sdp.media.len() {
            return Err(Error::NotAcceptable(
                "the answer's streams do not match the offer",
            ));
        }
        for (i, (m, offered)) in out.media.iter_mut().zip(&offer_sdp.media).enumerate() {
            if i == index {
                continue;
            }
            *m = Media {
                kind: offered.kind.clone(),
                port: 0,
                port_count: None,
                proto: offered.proto.clone(),
                formats: offered.formats.clone(),
                lines: offer.mids[i]
                    .iter()
                    .map(|mid| Line {
                        kind: 'a',
                        value: format!("mid:{mid}"),
                    })
                    .collect(),
            };
        }
        webrtc::write_browser_media(
            out,
            index,
            &OurTransport {
                ice: &w.ice,
                fingerprint,
                setup: role.setup(),
                mid: &w.mid,
                ip: self.local.ip,
                port: self.local.port(to),
            },
        );
        if offer.bundle {
            webrtc::write_bundle(out, &w.mid);
        }
        Ok(())
    }

    /// Answers an offer from `from` at the host itself (the call is answered by
    /// the PBX, not by the other leg): our address and the port facing `from`,
    /// the first of the offered formats plus `telephone-event` (RFC 4733), the
    /// direction that complements the offer's, and SRTP as `policy` and the
    /// offerer's transport allow. Nothing is forwarded to the other leg; what
    /// the host plays into the call goes to `from` through the same keys.
    pub fn answer_here(
        &mut self,
        from: Leg,
        sdp: &[u8],
        from_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let parsed = Sdp::parse(sdp)?;
        let index = anchored_index(&parsed)?;
        let m = &parsed.media[index];
        let browser = match webrtc::is_webrtc(m) {
            true => Some(BrowserSdp::read(&parsed, index)?),
            false => None,
        };
        let role = browser
            .as_ref()
            .map(BrowserSdp::answering_role)
            .transpose()?;
        self.fingerprint_for(browser.is_some())?;
        // The host is the other end: its side is as secure as it needs.
        let security = Security {
            from_secure,
            to_secure: true,
            to_webrtc: false,
        };
        // A browser's keys come from DTLS, never from SDP.
        let srtp = match &browser {
            Some(_) if policy == EncryptionPolicy::Disabled => {
                return Err(Error::NotAcceptable(
                    "a WebRTC leg needs SRTP, which is disabled",
                ));
            }
            Some(_) => None,
            None => offerer_srtp(m, policy, security)?,
        };
        let mut out = rewrite(&parsed, index, self.local.ip, self.local.port(from));
        for line in &mut out.session {
            if line.kind == 'o' {
                line.value = origin(self.local.ip);
            }
        }
        if browser.is_some() {
            webrtc::strip_browser_lines(&mut out);
        }
        let om = anchored(&mut out, index)?;
        if browser.is_some() {
            webrtc::keep_g711(om)?;
        }
        let format = keep_playable_format(om);
        let kept: Vec<Line> = om
            .lines
            .iter()
            .filter(|l| matches!(l.attr(), Some(("rtpmap" | "fmtp", Some(_)))))
            .cloned()
            .collect();
        let sends = matches!(m.direction(), Direction::SendRecv | Direction::RecvOnly);
        let direction = match m.direction() {
            Direction::SendOnly => Some("recvonly"),
            Direction::RecvOnly => Some("sendonly"),
            Direction::Inactive => Some("inactive"),
            Direction::SendRecv => None,
        };
        om.remove_attrs(&["sendrecv", "sendonly", "recvonly", "inactive"]);
        if let Some(d) = direction {
            om.lines.push(Line {
                kind: 'a',
                value: d.to_owned(),
            });
        }
        let (rx, tx) = match &srtp {
            Some(c) => {
                let ours = KeyMaterial::generate(c.remote.suite());
                om.set_cryptos(&[ours.to_attr(c.tag)]);
                (
                    Some(SrtpReceiver::new(&c.remote)?),
                    Some(SrtpSender::new(&ours)?),
                )
            }
            None => (None, None),
        };
        let (rtp, rtcp) = remote_addrs(&parsed, index);
        let leg = self.leg(from);
        match &browser {
            Some(b) => {
                let mid = b.mids.get(index).cloned().flatten();
                let mid = mid.unwrap_or_else(|| "0".to_owned());
                let peer = Some(b.fingerprint);
                let old = leg.webrtc.take().map(|w| *w);
                leg.webrtc = Some(Box::new(WebRtcLeg::renewed(old, peer, role, mid)));
            }
            None => {
                leg.webrtc = None;
                leg.set_remote(rtp, rtcp);
                leg.set_keys(rx, tx);
            }
        }
        let mut end = leg.here.take().unwrap_or_else(|| {
            Box::new(HostEnd {
                format: None,
                kept: Vec::new(),
                proto: String::new(),
                sends,
                player: None,
                last_played: None,
                dtmf: None,
                capture: None,
            })
        });
        end.sends = sends;
        end.format = format;
        end.kept = kept;
        end.proto = m.proto.clone();
        // A new answer keeps the stream going in the format it chose.
        match (
            format.and_then(|f| f.g711.map(|g| (g, f.payload_type))),
            &mut end.player,
        ) {
            (Some((g711, pt)), Some(player)) => player.set_format(g711, pt),
            (None, player) => *player = None,
            (Some(_), None) => {}
        }
        if end.player.is_none() {
            end.beep_cut();
        }
        let event = format.and_then(|f| f.telephone_event);
        if end.dtmf.as_ref().map(|d| d.payload_type()) != event.map(|(pt, _)| pt) {
            end.dtmf = event.map(|(pt, rate)| DtmfReceiver::new(pt, rate));
        }
        leg.here = Some(end);
        self.offer = None;
        if let Some(b) = &browser {
            self.answer_to_browser(&mut out, index, from, b, &parsed)?;
        }
        Ok(out.to_bytes())
    }

    /// Call pickup: connects a phone that asks for a ringing call (`picker`,
    /// its offer, on the callee's leg) to the caller. The caller's leg is
    /// answered at the host from `caller` (its offer, and whether its
    /// signalling is secure), or was already (`None`: the host answered it
    /// before the call rang). The picker's offer must include the caller's
    /// G.711 law, which both answers keep, so the legs are relayed without
    /// transcoding; then neither leg ends at the host. Returns the answers
    /// for the caller (when `caller` was given) and for the picker. Every
    /// check runs before anything changes: on error the ringing call's media
    /// is as it was.
    pub fn answer_pickup(
        &mut self,
        caller: Option<(&[u8], bool)>,
        picker: &[u8],
        picker_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
        let checked = |sdp: &Sdp, secure: bool| -> Result<usize> {
            let index = anchored_index(sdp)?;
            let security = Security {
                from_secure: secure,
                to_secure: true,
                to_webrtc: false,
            };
            if !webrtc::is_webrtc(&sdp.media[index]) {
                offerer_srtp(&sdp.media[index], policy, security)?;
            }
            Ok(index)
        };
        let law = match caller {
            Some((sdp, secure)) => {
                let parsed = Sdp::parse(sdp)?;
                let index = checked(&parsed, secure)?;
                let mut m = parsed.media[index].clone();
                keep_playable_format(&mut m).and_then(|f| f.g711)
            }
            None => self.legs[Leg::A.index()]
                .here
                .as_ref()
                .ok_or(Error::Protocol("the caller's leg was not answered"))?
                .format
                .and_then(|f| f.g711),
        }
        .ok_or(Error::NotAcceptable("the caller talks no G.711"))?;
        let mut parsed = Sdp::parse(picker)?;
        let index = checked(&parsed, picker_secure)?;
        let m = &mut parsed.media[index];
        let same_law = |f: &str| {
            rtpmap(m, f)
                .is_some_and(|(name, rate)| rate == 8000 && G711::from_encoding(&name) == Some(law))
        };
        let is_event = |f: &str| {
            rtpmap(m, f).is_some_and(|(name, _)| name.eq_ignore_ascii_case("telephone-event"))
        };
        let keep: Vec<String> = match m.formats.iter().find(|f| same_law(f)) {
            Some(audio) => std::iter::once(audio.clone())
                .chain(m.formats.iter().filter(|f| is_event(f)).cloned())
                .collect(),
            None => {
                return Err(Error::NotAcceptable(
                    "the picking phone does not offer the caller's codec",
                ));
            }
        };
        m.lines.retain(|l| match l.attr() {
            Some(("rtpmap" | "fmtp", Some(v))) => {
                keep.iter().any(|k| v.split(' ').next() == Some(k))
            }
            _ => true,
        });
        m.formats = keep;
        let picker = parsed.to_bytes();

        let to_caller = match caller {
            Some((sdp, secure)) => Some(self.answer_here(Leg::A, sdp, secure, policy)?),
            None => None,
        };
        let to_picker = self.answer_here(Leg::B, &picker, picker_secure, policy)?;
        // The answers connect the legs: neither ends at the host any more.
        for leg in &mut self.legs {
            leg.here = None;
        }
        self.host_offer = None;
        Ok((to_caller, to_picker))
    }

    /// An SDP offer toward `to` while the other leg ends at the host
    /// ([`MediaSession::answer_here`]): our address and the port facing `to`,
    /// the one format the host's answer on the other leg kept (same payload
    /// type number, `a=rtpmap` and `a=fmtp`) plus its `telephone-event`,
    /// `sendrecv`, and SDES keys when `policy` allows SRTP and `to_secure`
    /// (on `RTP/SAVP` when `policy` requires SRTP or the other leg uses it),
    /// as [`MediaSession::offer_from`] offers to a secure leg. The answer goes
    /// to [`MediaSession::answer_to_host_offer`]. Errors: `to` ends at the host
    /// or the other leg does not (`Protocol`), the host's answer kept no
    /// format (`NotAcceptable`), SRTP is required and `to` is not secure
    /// (`EncryptionRequired`).
    pub fn offer_from_host(
        &mut self,
        to: Leg,
        to_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let security = Security {
            from_secure: true,
            to_secure,
            to_webrtc: false,
        };
        self.offer_from_host_to(to, security, policy)
    }

    /// [`MediaSession::offer_from_host`] to a leg that may be a browser
    /// (`security.to_webrtc`): then the offer is DTLS-SRTP with ICE-lite
    /// ([`crate::webrtc`]), `a=setup:actpass`, no SDES keys, and the format
    /// kept must be PCMU or PCMA (`NotAcceptable` otherwise). Only
    /// `security.to_secure` and `to_webrtc` are read.
    pub fn offer_from_host_to(
        &mut self,
        to: Leg,
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let to_secure = security.to_secure && !security.to_webrtc;
        let fingerprint = self.fingerprint_for(security.to_webrtc)?;
        if fingerprint.is_some() && policy == EncryptionPolicy::Disabled {
            return Err(Error::NotAcceptable(
                "a WebRTC leg needs SRTP, which is disabled",
            ));
        }
        if self.legs[to.index()].here.is_some() {
            return Err(Error::Protocol("the leg to offer to ends at the host"));
        }
        let end = self.legs[to.other().index()]
            .here
            .as_ref()
            .ok_or(Error::Protocol("the other leg does not end at the host"))?;
        let format = end.format.ok_or(Error::NotAcceptable(
            "the host's answer kept no audio format",
        ))?;
        if fingerprint.is_some() && format.g711.is_none() {
            return Err(Error::NotAcceptable(
                "a WebRTC leg needs PCMU or PCMA (no transcoding)",
            ));
        }
        let to_srtp = match policy {
            EncryptionPolicy::Disabled => false,
            EncryptionPolicy::Required if !to_secure && fingerprint.is_none() => {
                return Err(Error::EncryptionRequired(
                    "a leg is not on a secure transport",
                ));
            }
            _ => to_secure,
        };
        let offered = if to_srtp { offer_keys() } else { Vec::new() };
        let secure_proto = to_srtp
            && (policy == EncryptionPolicy::Required
                || matches!(end.proto.as_str(), "RTP/SAVP" | "RTP/SAVPF"));

        let audio = format.payload_type.to_string();
        let mut formats = vec![audio.clone()];
        formats.extend(format.telephone_event.map(|(pt, _)| pt.to_string()));
        let mut lines = Vec::new();
        let mapped = end
            .kept
            .iter()
            .any(|l| matches!(l.attr(), Some(("rtpmap", Some(v))) if v.split(' ').next() == Some(&audio)));
        if !mapped && let Some((name, rate)) = static_format(&audio) {
            lines.push(Line {
                kind: 'a',
                value: format!("rtpmap:{audio} {name}/{rate}"),
            });
        }
        lines.extend(end.kept.iter().cloned());
        lines.push(Line {
            kind: 'a',
            value: "sendrecv".to_owned(),
        });
        let ip = self.local.ip;
        let connection = format!("IN {} {ip}", if ip.is_ipv4() { "IP4" } else { "IP6" });
        let mut media = Media {
            kind: "audio".to_owned(),
            port: self.local.port(to),
            port_count: None,
            // A browser answered here talks to the other leg in plain RTP/AVP terms.
            proto: match webrtc::is_webrtc_proto(&end.proto) {
                true => set_secure("RTP/AVP", secure_proto),
                false => set_secure(&end.proto, secure_proto),
            },
            formats,
            lines,
        };
        let attrs: Vec<CryptoAttr> = offered.iter().map(|(t, k)| k.to_attr(*t)).collect();
        media.set_cryptos(&attrs);
        let line = |kind: char, value: String| Line { kind, value };
        let mut sdp = Sdp {
            session: vec![
                line('v', "0".to_owned()),
                line('o', origin(ip)),
                line('s', "-".to_owned()),
                line('c', connection),
                line('t', "0 0".to_owned()),
            ],
            media: vec![media],
        };
        let audio_map = rtpmap(&sdp.media[0], &audio);
        if let Some(fp) = fingerprint {
            let w = self.offer_to_browser(&mut sdp, 0, to, fp);
            self.legs[to.index()].webrtc = Some(Box::new(w));
        }
        self.host_offer = Some(HostOffer {
            to,
            audio: (format.payload_type, audio_map),
            events: format.telephone_event.map(|(pt, _)| pt),
            offered,
            to_browser: fingerprint.is_some(),
        });
        self.offer = None;
        Ok(sdp.to_bytes())
    }

    /// Takes the answer from `from` to [`MediaSession::offer_from_host`]. It
    /// must keep the offered format (same payload type, no other format but
    /// the offered `telephone-event`) and SRTP as [`MediaSession::answer_from`]
    /// requires; then `from`'s address and keys are set, the host's end of the
    /// other leg ends (what plays or records there stops, without events), and
    /// from then on the legs are relayed as in any call. The other leg keeps
    /// the keys of the host's answer. May be called again with the same answer
    /// (183 then 200): keys in use are kept.
    pub fn answer_to_host_offer(
        &mut self,
        from: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<()> {
        let pending = self
            .host_offer
            .as_ref()
            .filter(|p| p.to == from)
            .ok_or(Error::Protocol("answer without an offer from the host"))?;
        let parsed = Sdp::parse(sdp)?;
        let m = parsed
            .media
            .first()
            .ok_or(Error::NotAcceptable("answer lacks the audio stream"))?;
        let browser = pending.to_browser;
        if m.port == 0 || m.kind != "audio" || !(m.is_rtp() || (browser && webrtc::is_webrtc(m))) {
            return Err(Error::NotAcceptable("answer rejected the audio stream"));
        }
        let dtls = match browser {
            true if !webrtc::is_webrtc(m) => {
                return Err(Error::NotAcceptable(
                    "the browser answered without DTLS-SRTP",
                ));
            }
            true => {
                let b = BrowserSdp::read(&parsed, 0)?;
                Some((b.fingerprint, b.answered_role()?))
            }
            false => None,
        };
        let (pt, map) = &pending.audio;
        let audio = pt.to_string();
        let events = pending.events.map(|pt| pt.to_string());
        if !m.formats.contains(&audio) {
            return Err(Error::NotAcceptable(
                "the answer does not take the offered format",
            ));
        }
        if m.formats
            .iter()
            .any(|f| *f != audio && Some(f) != events.as_ref())
        {
            return Err(Error::NotAcceptable(
                "the answer has a format that was not offered",
            ));
        }
        if let (Some((name, rate)), Some((their_name, their_rate))) = (map, rtpmap(m, &audio))
            && (!name.eq_ignore_ascii_case(&their_name) || *rate != their_rate)
        {
            return Err(Error::NotAcceptable(
                "the answer maps the offered payload type to another format",
            ));
        }
        let keys = match browser {
            true => None,
            false => answered_keys(&pending.offered, m, security, policy)?,
        };
        let (rx, tx) = srtp_pair(keys.as_ref())?;
        let (rtp, rtcp) = remote_addrs(&parsed, 0);
        let relayed_format = rtpmap(m, &audio)
            .filter(|(_, rate)| *rate == 8000)
            .and_then(|(name, _)| G711::from_encoding(&name))
            .map(|law| (law, *pt));
        let answerer = self.leg(from);
        answerer.settle(dtls, (rtp, rtcp), (rx, tx))?;
        // The answer connects the legs: neither ends at the host any more.
        for leg in &mut self.legs {
            leg.here = None;
        }
        self.relayed_format = relayed_format;
        Ok(())
    }

    /// The format the host's answer on `leg` kept; `None` unless the host
    /// answered that leg ([`MediaSession::answer_here`]).
    pub fn answered_format(&self, leg: Leg) -> Option<AnsweredFormat> {
        self.legs[leg.index()].here.as_ref()?.format
    }

    /// Queues `prompt` on `leg`, which the host answered; it starts at `now`
    /// when nothing plays there, else after what is queued. Errors: the host
    /// did not answer `leg` (`Protocol`), its answer chose a format other than
    /// PCMU or PCMA (`NotAcceptable`), or the queue is full (`Prompt`).
    pub fn play(&mut self, leg: Leg, prompt: Prompt, now: Instant) -> Result<()> {
        let end = self.legs[leg.index()]
            .here
            .as_mut()
            .ok_or(Error::Protocol("play on a leg the host did not answer"))?;
        let (g711, pt) = end.g711()?;
        end.player
            .get_or_insert_with(|| Player::new(g711, pt))
            .play(prompt, now)
    }

    /// Stops what plays on `leg` and drops what is queued (barge-in); no
    /// [`SessionEvent::PromptFinished`] follows. Returns whether anything played.
    /// A recording's beep stops too, and the recording starts at once.
    pub fn stop_playing(&mut self, leg: Leg) -> bool {
        let Some(end) = self.legs[leg.index()].here.as_mut() else {
            return false;
        };
        let stopped = end.player.as_mut().is_some_and(Player::stop);
        end.beep_cut();
        stopped
    }

    /// Starts recording what `leg` (which the host answered) sends; see
    /// [`crate::record`] for how audio is placed and what ends a recording.
    /// With `beep`, [`Prompt::beep`] plays first, after any prompt queued, and
    /// the recording starts when it has finished (its
    /// [`SessionEvent::PromptFinished`] is not reported). The end is reported
    /// as [`SessionEvent::RecordingFinished`]. Errors like
    /// [`MediaSession::play`], and `Protocol` when a recording already runs on
    /// `leg` or the finish key is not a DTMF key.
    pub fn record(&mut self, leg: Leg, spec: RecordSpec, now: Instant) -> Result<()> {
        let end = self.legs[leg.index()]
            .here
            .as_mut()
            .ok_or(Error::Protocol("record on a leg the host did not answer"))?;
        let (g711, pt) = end.g711()?;
        if end.capture.is_some() {
            return Err(Error::Protocol("a recording already runs on the leg"));
        }
        let finish_key = match spec.finish_key {
            Some(k) => Some(
                dtmf::digit_event(k)
                    .and_then(dtmf::event_digit)
                    .ok_or(Error::Protocol("the finish key is not a DTMF key"))?,
            ),
            None => None,
        };
        let capture = if spec.beep {
            let player = end.player.get_or_insert_with(|| Player::new(g711, pt));
            let ahead = player.queued();
            player.play(Prompt::beep(), now)?;
            Capture {
                recorder: Recorder::pending(&spec, now),
                finish_key,
                beep_ahead: Some(ahead),
            }
        } else {
            Capture {
                recorder: Recorder::new(&spec, now),
                finish_key,
                beep_ahead: None,
            }
        };
        end.capture = Some(capture);
        Ok(())
    }

    /// Ends the recording on `leg` early: [`RecordingEnd::Stopped`], or the
    /// end a deadline passed by `now` brought. A recording stopped during its
    /// beep stops the beep (and what is queued with it). Returns whether one
    /// was running; its [`SessionEvent::RecordingFinished`] follows.
    pub fn stop_recording(&mut self, leg: Leg, now: Instant) -> bool {
        let Some(end) = self.legs[leg.index()].here.as_mut() else {
            return false;
        };
        let how = end
            .capture
            .as_mut()
            .and_then(|c| c.recorder.handle_timeout(now))
            .unwrap_or(RecordingEnd::Stopped);
        end.end_recording(leg, how, &mut self.events)
    }

    /// Ends the recording on `leg` (as [`MediaSession::stop_recording`]) and
    /// hands it over instead of reporting it: for an owner closing the call
    /// while its caller was still leaving a message. `None` when none ran,
    /// or when the caller left during the beep.
    pub fn take_recording(&mut self, leg: Leg, now: Instant) -> Option<Recording> {
        let end = self.legs[leg.index()].here.as_mut()?;
        let mut capture = end.capture.take()?;
        if capture.beep_ahead.is_some() {
            return None;
        }
        let how = capture
            .recorder
            .handle_timeout(now)
            .unwrap_or(RecordingEnd::Stopped);
        Some(capture.recorder.finish(how))
    }

    /// Whether a recording runs (or waits for its beep) on `leg`.
    pub fn is_recording(&self, leg: Leg) -> bool {
        self.legs[leg.index()]
            .here
            .as_ref()
            .is_some_and(|e| e.capture.is_some())
    }

    /// Whether a prompt plays on `leg`.
    pub fn is_playing(&self, leg: Leg) -> bool {
        self.legs[leg.index()]
            .here
            .as_ref()
            .and_then(|e| e.player.as_ref())
            .is_some_and(Player::is_playing)
    }

    /// The next packet the host plays that is due by `now`, SRTP-protected
    /// when its leg is; call until `None`. A packet with nowhere to go (no
    /// address yet, or a failed protection) is dropped and counted; one the
    /// answer does not let the host send is skipped, so prompts keep time.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.poll_announcement(now) {
            return Some(t);
        }
        for leg in [Leg::A, Leg::B] {
            let LegState {
                here,
                tx,
                stats,
                latched,
                remote,
                webrtc,
                ..
            } = &mut self.legs[leg.index()];
            let blocked = webrtc.is_some() && tx.is_none();
            let Some(end) = here.as_mut() else {
                continue;
            };
            let Some(player) = end.player.as_mut() else {
                continue;
            };
            while let Some(played) = player.poll_packet(now) {
                end.last_played = Some(now);
                if played.finished_prompt && !beep_finished(&mut end.capture, now) {
                    push_event(
                        &mut self.events,
                        &mut self.events_dropped,
                        SessionEvent::PromptFinished { leg },
                    );
                }
                if !end.sends {
                    continue;
                }
                if let Some(out) =
                    send_played(leg, played, latched[0].or(remote[0]), tx, stats, blocked)
                {
                    return Some(out);
                }
            }
        }
        None
    }

    /// When the session next needs [`MediaSession::poll_transmit`] (a packet
    /// to play is due) or [`MediaSession::handle_timeout`] (a key press whose
    /// end packets were lost is to be reported, a recording reaches its
    /// length or its silence).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.legs
            .iter()
            .filter_map(|l| l.here.as_ref())
            .flat_map(|e| {
                [
                    e.player.as_ref().and_then(Player::poll_timeout),
                    e.dtmf.as_ref().and_then(DtmfReceiver::poll_timeout),
                    e.capture.as_ref().and_then(|c| c.recorder.poll_timeout()),
                ]
            })
            .flatten()
            .chain(
                self.announcement
                    .iter()
                    .flat_map(|a| a.players.iter().filter_map(Player::poll_timeout)),
            )
            .min()
    }

    /// Reports key presses whose end packets never came, once they are stale,
    /// and ends recordings whose deadline passed. Packets due are handed out
    /// by [`MediaSession::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for leg in [Leg::A, Leg::B] {
            let st = &mut self.legs[leg.index()];
            let Some(end) = st.here.as_mut() else {
                continue;
            };
            if let Some(d) = end.dtmf.as_mut().and_then(|rx| rx.handle_timeout(now)) {
                end.heard(
                    leg,
                    d,
                    &mut st.stats,
                    &mut self.events,
                    &mut self.events_dropped,
                );
            }
            if let Some(how) = end
                .capture
                .as_mut()
                .and_then(|c| c.recorder.handle_timeout(now))
            {
                end.end_recording(leg, how, &mut self.events);
            }
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Events dropped because [`MAX_SESSION_EVENTS`] were waiting.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Handles one datagram that arrived from `from` on our socket facing `leg`
    /// (`channel` says which of its two ports). Returns what to send, if anything.
    pub fn handle(
        &mut self,
        now: Instant,
        leg: Leg,
        channel: Channel,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<Transmit> {
        let src = &mut self.legs[leg.index()];
        let socket = ch(channel);
        if src.webrtc.is_some() {
            match webrtc::demux(data) {
                Demux::Stun if channel == Channel::Rtp => return self.on_stun(leg, from, data),
                Demux::Rtp if channel == Channel::Rtp && src.rx.is_some() => {}
                // DTLS goes to the relay's handshake ([`Self::accepts_dtls`]);
                // media before the keys, and the unused RTCP port: dropped.
                _ => {
                    src.stats.dropped += 1;
                    return None;
                }
            }
        }
        if src.remote[0].is_none() {
            src.stats.dropped += 1;
            return None;
        }
        if src.latched[socket].is_some_and(|l| l != from) {
            src.stats.dropped += 1;
            return None;
        }
        // RTCP may arrive multiplexed on the RTP port (RFC 5761).
        let Some(kind) = rtp::classify(data) else {
            src.stats.dropped += 1;
            return None;
        };
        src.stats.packets_in += 1;
        src.stats.bytes_in += data.len() as u64;
        let plain = match &mut src.rx {
            Some(rx) => rx.unprotect(kind, data)?,
            None => Bytes::copy_from_slice(data),
        };
        // Latch only to packets that passed authentication (if any applies).
        src.latched[socket] = Some(from);
        self.last_media = now;
        if kind == Channel::Rtp
            && let (Some(ssrc), Some(seq)) = (rtp::ssrc(&plain, kind), rtp::seq(&plain))
        {
            src.loss.on_packet(ssrc, seq);
        }
        // A leg that ends at the host: heard here, never forwarded.
        if let Some(end) = &mut src.here {
            if kind == Channel::Rtp {
                let recorded = match (&mut end.capture, end.format) {
                    (
                        Some(c),
                        Some(AnsweredFormat {
                            payload_type,
                            g711: Some(law),
                            ..
                        }),
                    ) => c.recorder.on_rtp(now, &plain, payload_type, law),
                    _ => None,
                };
                if let Some(how) = recorded {
                    end.end_recording(leg, how, &mut self.events);
                }
                let digits = end
                    .dtmf
                    .as_mut()
                    .map(|rx| rx.on_rtp(now, &plain))
                    .unwrap_or_default();
                for d in digits.into_iter().flatten() {
                    end.heard(
                        leg,
                        d,
                        &mut src.stats,
                        &mut self.events,
                        &mut self.events_dropped,
                    );
                }
            }
            return None;
        }

        let dst_leg = leg.other();
        if self.held || self.announcement.is_some() {
            // The legs hear the announcement, not each other, until it ends.
            return None;
        }
        if kind == Channel::Rtp
            && self.legs[dst_leg.index()].here.is_none()
            && let Some(r) = &mut self.call_record
        {
            r.on_rtp(now, leg, &plain);
        }
        let dst = &mut self.legs[dst_leg.index()];
        if dst.here.is_some() {
            // The host answered the other leg itself: nothing goes to it.
            self.legs[leg.index()].stats.dropped += 1;
            return None;
        }
        if dst.blocked() {
            dst.stats.dropped += 1;
            return None;
        }
        let Some(to) = dst.latched[ch(kind)].or(dst.remote[ch(kind)]) else {
            dst.stats.dropped += 1;
            return None;
        };
        let data = match &mut dst.tx {
            Some(tx) => match tx.protect(kind, &plain) {
                Some(b) => b,
                None => {
                    dst.stats.dropped += 1;
                    return None;
                }
            },
            None => plain,
        };
        dst.stats.packets_out += 1;
        dst.stats.bytes_out += data.len() as u64;
        // A browser leg multiplexes RTCP on its RTP port (RFC 5761).
        let channel = if dst.webrtc.is_some() {
            Channel::Rtp
        } else {
            kind
        };
        Some(Transmit {
            leg: dst_leg,
            channel,
            to,
            data,
            due: None,
        })
    }

    /// A STUN datagram on browser leg `leg`: a Binding request that checks
    /// with our credentials is answered ([`crate::ice`]), and its source
    /// becomes the leg's address when none is yet or the browser nominates
    /// it (USE-CANDIDATE); anything else is dropped.
    fn on_stun(&mut self, leg: Leg, from: SocketAddr, data: &[u8]) -> Option<Transmit> {
        let st = &mut self.legs[leg.index()];
        let checked = st
            .webrtc
            .as_ref()
            .and_then(|w| ice::answer_binding(data, from, &w.ice));
        let Some(checked) = checked else {
            st.stats.dropped += 1;
            return None;
        };
        if st.latched[0].is_none() || checked.nominated {
            st.remote = [Some(from); 2];
            st.latched = [Some(from); 2];
        }
        Some(Transmit {
            leg,
            channel: Channel::Rtp,
            to: from,
            data: Bytes::from(checked.response),
            due: None,
        })
    }

    /// Whether `leg` is a browser's (DTLS-SRTP, ICE-lite, rtcp-mux).
    pub fn is_webrtc(&self, leg: Leg) -> bool {
        self.legs[leg.index()].webrtc.is_some()
    }

    /// Our ICE credentials on browser leg `leg`.
    pub fn ice_credentials(&self, leg: Leg) -> Option<&IceCredentials> {
        self.legs[leg.index()].webrtc.as_ref().map(|w| &w.ice)
    }

    /// The address DTLS records of browser leg `leg` go to: the one ICE
    /// checked (and nominated).
    pub fn dtls_peer(&self, leg: Leg) -> Option<SocketAddr> {
        let st = &self.legs[leg.index()];
        st.webrtc.as_ref().and(st.latched[0])
    }

    /// Whether a DTLS record from `from` on `leg` is for the leg's handshake:
    /// the leg is a browser's, its handshake runs or ran, and `from` is the
    /// address ICE checked. The relay passes such records to the handshake
    /// and drops every other.
    pub fn accepts_dtls(&self, leg: Leg, from: SocketAddr) -> bool {
        let st = &self.legs[leg.index()];
        st.webrtc
            .as_ref()
            .is_some_and(|w| matches!(w.dtls, DtlsState::Started | DtlsState::Keyed))
            && st.latched[0] == Some(from)
    }

    /// The next DTLS handshake the relay is to run: a browser leg whose
    /// certificate fingerprint and our role are settled by offer and answer,
    /// and whose address ICE has checked. A browser starts DTLS only once
    /// ICE is connected (and, as the client, we need its address for the
    /// ClientHello), so the handshake's time bound runs from there, not from
    /// an offer that may ring for a minute. Each is handed out once (again
    /// only after a new offer/answer changes the certificate or role).
    pub fn poll_dtls_start(&mut self) -> Option<DtlsStart> {
        for leg in [Leg::A, Leg::B] {
            let st = &mut self.legs[leg.index()];
            if st.latched[0].is_none() {
                continue;
            }
            let Some(w) = st.webrtc.as_mut() else {
                continue;
            };
            let (Some(role), Some(peer), DtlsState::Waiting) = (w.role, w.peer, w.dtls) else {
                continue;
            };
            w.dtls = DtlsState::Started;
            return Some(DtlsStart { leg, role, peer });
        }
        None
    }

    /// Installs the SRTP keys the handshake on browser leg `leg` yielded;
    /// media flows to and from the leg from now on. `Protocol` when the leg
    /// is not a browser's or its handshake was not started.
    pub fn install_dtls_keys(&mut self, leg: Leg, keys: &DtlsKeys) -> Result<()> {
        let st = &mut self.legs[leg.index()];
        let w = st
            .webrtc
            .as_mut()
            .filter(|w| w.dtls == DtlsState::Started)
            .ok_or(Error::Protocol("no DTLS handshake runs on the leg"))?;
        let rx = SrtpReceiver::new(&keys.remote)?;
        let tx = SrtpSender::new(&keys.local)?;
        w.dtls = DtlsState::Keyed;
        st.rx = Some(Box::new(rx));
        st.tx = Some(Box::new(tx));
        Ok(())
    }

    /// The handshake on browser leg `leg` failed (or timed out): the leg
    /// gets no media, and no new handshake starts until a new offer/answer.
    pub fn dtls_failed(&mut self, leg: Leg) {
        let st = &mut self.legs[leg.index()];
        if let Some(w) = st.webrtc.as_mut() {
            w.dtls = DtlsState::Failed;
            st.rx = None;
            st.tx = None;
        }
    }

    /// Starts recording what the two legs send each other, mixed
    /// ([`crate::call_record`]), at most `max` of it; replaces a recording
    /// already running. Taken with [`MediaSession::take_call_recording`].
    pub fn record_call(&mut self, max: std::time::Duration, now: Instant) {
        self.call_record = Some(CallRecorder::new(now, max));
    }

    /// Plays `prompts` to both legs of the relayed call, in the format their
    /// answer chose (PCMU or PCMA), before they hear each other: what either
    /// leg sends meanwhile is neither forwarded nor recorded. When the last
    /// packet has gone to both, [`SessionEvent::AnnouncementFinished`] is
    /// reported and, with `record`, the call's recording starts
    /// ([`MediaSession::record_call`]). `Protocol` while a leg ends at the
    /// host; `NotAcceptable` when the legs do not talk G.711.
    pub fn announce(
        &mut self,
        prompts: &[Prompt],
        record: Option<std::time::Duration>,
        now: Instant,
    ) -> Result<()> {
        if self.legs.iter().any(|l| l.here.is_some()) {
            return Err(Error::Protocol("announce on a leg the host answered"));
        }
        let (law, pt) = self
            .relayed_format
            .ok_or(Error::NotAcceptable("the legs do not talk PCMU or PCMA"))?;
        let mut players = [Player::new(law, pt), Player::new(law, pt)];
        for player in &mut players {
            for prompt in prompts {
                player.play(prompt.clone(), now)?;
            }
        }
        self.announcement = Some(Box::new(Announcement { players, record }));
        self.held = false;
        self.finish_announcement(now);
        Ok(())
    }

    /// Holds back what the legs send each other (neither forwarded nor
    /// recorded) while an announcement is being prepared; it ends with
    /// [`MediaSession::announce`] or `hold(false)`.
    pub fn hold(&mut self, on: bool) {
        self.held = on;
    }

    /// Ends the announcement once neither leg has anything left to hear.
    fn finish_announcement(&mut self, now: Instant) {
        if self
            .announcement
            .as_ref()
            .is_none_or(|a| a.players.iter().any(Player::is_playing))
        {
            return;
        }
        if let Some(max) = self.announcement.take().and_then(|a| a.record) {
            self.call_record = Some(CallRecorder::new(now, max));
        }
        push_event(
            &mut self.events,
            &mut self.events_dropped,
            SessionEvent::AnnouncementFinished,
        );
    }

    /// The next packet of the announcement, if one is due.
    fn poll_announcement(&mut self, now: Instant) -> Option<Transmit> {
        let announcement = self.announcement.as_mut()?;
        for leg in [Leg::A, Leg::B] {
            let st = &mut self.legs[leg.index()];
            while let Some(played) = announcement.players[leg.index()].poll_packet(now) {
                let to = st.latched[0].or(st.remote[0]);
                let blocked = st.blocked();
                if let Some(out) = send_played(leg, played, to, &mut st.tx, &mut st.stats, blocked)
                {
                    return Some(out);
                }
            }
        }
        self.finish_announcement(now);
        None
    }

    /// The call's recording so far, ending it; `None` when none runs.
    pub fn take_call_recording(&mut self) -> Option<Recording> {
        self.call_record.take().map(CallRecorder::finish)
    }

    /// When media last arrived (or when the session was created).
    pub fn idle_since(&self) -> Instant {
        self.last_media
    }

    /// Counters of both legs.
    pub fn stats(&self) -> CallMediaStats {
        CallMediaStats {
            a: self.legs[0].stats(),
            b: self.legs[1].stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every call in progress holds a session: what only some calls or a
    /// moment of a call need (SRTP contexts, the host's end, the WebRTC
    /// transport, a pending offer, an announcement) is boxed, so a plain
    /// relayed call's session stays small.
    #[test]
    fn a_plain_call_session_stays_small() {
        let size = std::mem::size_of::<MediaSession>();
        assert!(size <= 1024, "MediaSession is {size} bytes");
        assert!(std::mem::size_of::<LegState>() <= 384);
    }

    const LOCAL: LocalPorts = LocalPorts {
        ip: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)),
        a: 20000,
        b: 20002,
    };

    fn offer(proto: &str, crypto: Option<&str>) -> Vec<u8> {
        let mut s = format!(
            "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             a=ice-ufrag:abcd\r\nm=audio 4000 {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=candidate:1 1 UDP 1 192.0.2.10 4000 typ host\r\na=rtcp-mux\r\n"
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s.push_str("m=video 5000 RTP/AVP 96\r\n");
        s.into_bytes()
    }

    fn answer(proto: &str, crypto: Option<String>) -> Vec<u8> {
        let mut s = format!(
            "v=0\r\no=b 7 7 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n\
             m=audio 6000 {proto} 0 101\r\na=rtcp:6001\r\n"
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s.push_str("m=video 0 RTP/AVP 96\r\n");
        s.into_bytes()
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    const PLAIN: Security = Security {
        from_secure: false,
        to_secure: false,
        to_webrtc: false,
    };
    const TLS: Security = Security {
        from_secure: true,
        to_secure: true,
        to_webrtc: false,
    };

    #[test]
    fn a_recorded_call_mixes_what_both_legs_relay() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(LOCAL, t0);
        s.offer_from(
            Leg::A,
            &offer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        s.answer_from(
            Leg::B,
            &answer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        assert!(s.take_call_recording().is_none(), "nothing recorded yet");
        s.hold(true);
        let a: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        assert!(
            s.handle(t0, Leg::A, Channel::Rtp, a, &rtp(1, 1)).is_none(),
            "held back"
        );
        s.hold(false);
        s.record_call(Duration::from_secs(60), t0);
        let b: SocketAddr = "198.51.100.20:6000".parse().unwrap();
        // Relaying is unchanged by the recording.
        let out = s.handle(t0, Leg::A, Channel::Rtp, a, &rtp(1, 1)).unwrap();
        assert_eq!(&out.data[..], &rtp(1, 1)[..]);
        let t1 = t0 + Duration::from_millis(20);
        assert!(s.handle(t1, Leg::B, Channel::Rtp, b, &rtp(9, 1)).is_some());
        let recording = s.take_call_recording().expect("recorded");
        assert_eq!(recording.samples.len(), 320, "A's 20 ms, then B's");
        assert!(s.take_call_recording().is_none(), "taken once");
    }

    #[test]
    fn an_announcement_plays_to_both_legs_before_they_hear_each_other() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(LOCAL, t0);
        let notice = Prompt::tone(&[440], -13.0, Duration::from_millis(100)).unwrap();
        s.offer_from(
            Leg::A,
            &offer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        assert!(
            s.announce(std::slice::from_ref(&notice), None, t0).is_err(),
            "nothing to announce to before the answer"
        );
        s.answer_from(
            Leg::B,
            &answer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        s.announce(&[notice], Some(Duration::from_secs(60)), t0)
            .unwrap();
        let a: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let b: SocketAddr = "198.51.100.20:6000".parse().unwrap();
        // Meanwhile neither leg hears the other.
        assert!(s.handle(t0, Leg::A, Channel::Rtp, a, &rtp(1, 1)).is_none());
        let mut to = [0, 0];
        let mut now = t0;
        loop {
            while let Some(t) = s.poll_transmit(now) {
                assert_eq!(t.data[1] & 0x7f, 0, "in the answer's PCMU");
                to[t.leg.index()] += 1;
            }
            if let Some(event) = s.poll_event() {
                assert_eq!(event, SessionEvent::AnnouncementFinished);
                break;
            }
            now = s.poll_timeout().unwrap_or(now + Duration::from_millis(20));
            assert!(now < t0 + Duration::from_secs(1), "the announcement ends");
        }
        assert_eq!(to, [5, 5], "100 ms to each leg");
        // Then the legs talk, and the recording holds only that.
        let out = s.handle(now, Leg::A, Channel::Rtp, a, &rtp(1, 2)).unwrap();
        assert_eq!(out.leg, Leg::B);
        assert!(s.handle(now, Leg::B, Channel::Rtp, b, &rtp(9, 1)).is_some());
        let recording = s.take_call_recording().expect("recording");
        assert_eq!(recording.samples.len(), 160);
    }

    #[test]
    fn plain_call_rewrites_sdp_and_relays_with_latching() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(LOCAL, t0);
        let to_b = s
            .offer_from(
                Leg::A,
                &offer("RTP/AVP", None),
                PLAIN,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let to_b = String::from_utf8(to_b).unwrap();
        assert!(to_b.contains("c=IN IP4 203.0.113.1\r\n"), "{to_b}");
        assert!(to_b.contains("m=audio 20002 RTP/AVP 0 101\r\n"));
        assert!(to_b.contains("m=video 0 RTP/AVP 96\r\n"));
        assert!(
            !to_b.contains("candidate")
                && !to_b.contains("ice-ufrag")
                && !to_b.contains("rtcp-mux")
        );
        assert!(!to_b.contains("192.0.2.10 4000"));

        let to_a = s
            .answer_from(
                Leg::B,
                &answer("RTP/AVP", None),
                PLAIN,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let to_a = String::from_utf8(to_a).unwrap();
        assert!(to_a.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{to_a}");
        assert!(!to_a.contains("a=rtcp:6001"));

        // A's packet goes to B's SDP address until B sends from elsewhere (NAT).
        let a_nat: SocketAddr = "192.0.2.99:31000".parse().unwrap();
        let t1 = t0 + Duration::from_secs(1);
        let out = s
            .handle(t1, Leg::A, Channel::Rtp, a_nat, &rtp(1, 1))
            .unwrap();
        assert_eq!((out.leg, out.channel), (Leg::B, Channel::Rtp));
        assert_eq!(out.to, "198.51.100.20:6000".parse().unwrap());
        assert_eq!(&out.data[..], &rtp(1, 1)[..]);
        assert_eq!(s.idle_since(), t1);

        let b_nat: SocketAddr = "198.51.100.77:40000".parse().unwrap();
        let out = s
            .handle(t1, Leg::B, Channel::Rtp, b_nat, &rtp(9, 100))
            .unwrap();
        assert_eq!(out.to, a_nat);
        let out = s
            .handle(t1, Leg::A, Channel::Rtp, a_nat, &rtp(1, 4))
            .unwrap();
        assert_eq!(out.to, b_nat);
        // RTCP goes to the a=rtcp port before latching.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let out = s.handle(t1, Leg::A, Channel::Rtcp, a_nat, &rr).unwrap();
        assert_eq!(
            (out.channel, out.to),
            (Channel::Rtcp, "198.51.100.20:6001".parse().unwrap())
        );

        // A spoofed source on a latched port is dropped.
        let spoof: SocketAddr = "10.9.9.9:1234".parse().unwrap();
        let t2 = t1 + Duration::from_secs(5);
        assert!(
            s.handle(t2, Leg::A, Channel::Rtp, spoof, &rtp(1, 5))
                .is_none()
        );
        assert_eq!(s.idle_since(), t1);

        let st = s.stats();
        assert_eq!(st.a.packets_in, 3);
        assert_eq!(st.a.bytes_in, 2 * 172 + 8);
        assert_eq!(st.b.packets_out, 3);
        assert_eq!(st.b.packets_in, 1);
        assert_eq!(st.a.packets_out, 1);
        assert_eq!(st.a.packets_lost, 2);
        assert_eq!(st.a.dropped, 1);
        assert_eq!(st.a.latched, Some(a_nat));
        assert!(!st.a.srtp && !st.b.srtp);
    }

    #[test]
    fn media_before_sdp_and_garbage_is_dropped() {
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let from: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        assert!(
            s.handle(Instant::now(), Leg::A, Channel::Rtp, from, &rtp(1, 1))
                .is_none()
        );
        s.offer_from(
            Leg::A,
            &offer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Disabled,
        )
        .unwrap();
        assert!(
            s.handle(Instant::now(), Leg::A, Channel::Rtp, from, b"hello")
                .is_none()
        );
        // No answer yet: nowhere to send.
        assert!(
            s.handle(Instant::now(), Leg::A, Channel::Rtp, from, &rtp(1, 1))
                .is_none()
        );
        assert_eq!(s.stats().a.dropped, 2);
        assert_eq!(s.stats().b.dropped, 1);
    }

    #[test]
    fn policies_and_key_exposure() {
        let key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80)
            .to_attr(1)
            .to_value();
        let mut s = MediaSession::new(LOCAL, Instant::now());
        // Required: plaintext offer refused; insecure legs refused.
        let e = s.offer_from(
            Leg::A,
            &offer("RTP/AVP", None),
            TLS,
            EncryptionPolicy::Required,
        );
        assert!(matches!(e, Err(Error::EncryptionRequired(_))));
        let e = s.offer_from(
            Leg::A,
            &offer("RTP/SAVP", Some(&key)),
            PLAIN,
            EncryptionPolicy::Required,
        );
        assert!(matches!(e, Err(Error::EncryptionRequired(_))));
        // Disabled: an SAVP offer is not acceptable, AVP+crypto is relayed plain.
        let e = s.offer_from(
            Leg::A,
            &offer("RTP/SAVP", Some(&key)),
            TLS,
            EncryptionPolicy::Disabled,
        );
        assert!(matches!(e, Err(Error::NotAcceptable(_))));
        let out = s
            .offer_from(
                Leg::A,
                &offer("RTP/AVP", Some(&key)),
                TLS,
                EncryptionPolicy::Disabled,
            )
            .unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("crypto"));
        // Optional, SRTP offer from a secure leg to an insecure one: no keys to B.
        let sec = Security {
            from_secure: true,
            to_secure: false,
            to_webrtc: false,
        };
        let out = s
            .offer_from(
                Leg::A,
                &offer("RTP/SAVP", Some(&key)),
                sec,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("crypto") && out.contains("m=audio 20002 RTP/AVP 0 101"));
        assert!(!out.contains(&key[2..]));
        // Optional, keys received over an insecure transport are not used for SAVP.
        let sec = Security {
            from_secure: false,
            to_secure: true,
            to_webrtc: false,
        };
        let e = s.offer_from(
            Leg::A,
            &offer("RTP/SAVP", Some(&key)),
            sec,
            EncryptionPolicy::Optional,
        );
        assert!(matches!(e, Err(Error::NotAcceptable(_))));
        // Malformed SDP is an SDP error.
        assert!(matches!(
            s.offer_from(Leg::A, b"v=0\r\n", TLS, EncryptionPolicy::Optional),
            Err(Error::Sdp { .. })
        ));
        // An answer from the offering leg itself is out of order.
        let e = s.answer_from(
            Leg::A,
            &answer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        );
        assert!(matches!(e, Err(Error::Protocol(_))));
    }

    fn find_key(sdp: &[u8]) -> (u32, KeyMaterial) {
        let parsed = Sdp::parse(sdp).unwrap();
        let c = sdes::negotiate(&parsed.media[0].cryptos())
            .unwrap()
            .unwrap();
        (c.tag, c.remote)
    }

    #[test]
    fn srtp_leg_a_plain_leg_b() {
        let a_key = KeyMaterial::generate(Suite::AesCm128HmacSha1_32);
        let mut a_tx = SrtpSender::new(&a_key).unwrap();
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let sec_ab = Security {
            from_secure: true,
            to_secure: false,
            to_webrtc: false,
        };
        let to_b = s
            .offer_from(
                Leg::A,
                &offer("RTP/SAVP", Some(&a_key.to_attr(5).to_value())),
                sec_ab,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        assert!(!String::from_utf8_lossy(&to_b).contains("crypto"));
        let sec_ba = Security {
            from_secure: false,
            to_secure: true,
            to_webrtc: false,
        };
        let to_a = s
            .answer_from(
                Leg::B,
                &answer("RTP/AVP", None),
                sec_ba,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let text = String::from_utf8(to_a.clone()).unwrap();
        assert!(text.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{text}");
        let (tag, our_key) = find_key(&to_a);
        assert_eq!(tag, 5);
        assert_eq!(our_key.suite(), Suite::AesCm128HmacSha1_32);
        assert_ne!(our_key, a_key);
        let mut a_rx = SrtpReceiver::new(&our_key).unwrap();

        let now = Instant::now();
        let a: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let b: SocketAddr = "198.51.100.20:6000".parse().unwrap();
        let enc = a_tx.protect(Channel::Rtp, &rtp(77, 1)).unwrap();
        let out = s.handle(now, Leg::A, Channel::Rtp, a, &enc).unwrap();
        assert_eq!(&out.data[..], &rtp(77, 1)[..]);
        let out = s.handle(now, Leg::B, Channel::Rtp, b, &rtp(88, 1)).unwrap();
        assert_eq!(out.to, a);
        assert_eq!(
            &a_rx.unprotect(Channel::Rtp, &out.data).unwrap()[..],
            &rtp(88, 1)[..]
        );
        // Tampered and replayed packets from A are counted, not relayed.
        let mut bad = a_tx.protect(Channel::Rtp, &rtp(77, 2)).unwrap().to_vec();
        bad[20] ^= 0xff;
        assert!(s.handle(now, Leg::A, Channel::Rtp, a, &bad).is_none());
        assert!(s.handle(now, Leg::A, Channel::Rtp, a, &enc).is_none());
        let st = s.stats();
        assert_eq!((st.a.srtp_auth_failures, st.a.srtp_replays), (1, 1));
        assert!(st.a.srtp && !st.b.srtp);

        // The same answer again (183 then 200) keeps the keys and the replay state.
        let again = s
            .answer_from(
                Leg::B,
                &answer("RTP/AVP", None),
                sec_ba,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        assert_eq!(find_key(&again).1, our_key);
        assert!(s.handle(now, Leg::A, Channel::Rtp, a, &enc).is_none());
        assert_eq!(s.stats().a.srtp_replays, 2);
    }

    #[test]
    fn required_policy_needs_a_keyed_answer() {
        let a_key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let to_b = s
            .offer_from(
                Leg::A,
                &offer("RTP/AVP", Some(&a_key.to_attr(1).to_value())),
                TLS,
                EncryptionPolicy::Required,
            )
            .unwrap();
        let parsed = Sdp::parse(&to_b).unwrap();
        assert_eq!(parsed.media[0].proto, "RTP/SAVP");
        let offered = parsed.media[0].cryptos();
        assert_eq!(offered.len(), Suite::ALL.len());
        let e = s.answer_from(
            Leg::B,
            &answer("RTP/AVP", None),
            TLS,
            EncryptionPolicy::Required,
        );
        assert!(matches!(e, Err(Error::EncryptionRequired(_))));
        // B picks our GCM line.
        let gcm = offered
            .iter()
            .find(|c| c.suite == "AEAD_AES_128_GCM")
            .unwrap();
        let b_key = KeyMaterial::generate(Suite::AeadAes128Gcm);
        let to_a = s
            .answer_from(
                Leg::B,
                &answer("RTP/SAVP", Some(b_key.to_attr(gcm.tag).to_value())),
                TLS,
                EncryptionPolicy::Required,
            )
            .unwrap();
        // A's answer mirrors its own proto and tag, with our key for A.
        let parsed = Sdp::parse(&to_a).unwrap();
        assert_eq!(parsed.media[0].proto, "RTP/AVP");
        let (tag, k) = find_key(&to_a);
        assert_eq!((tag, k.suite()), (1, Suite::AesCm128HmacSha1_80));
        let st = s.stats();
        assert!(st.a.srtp && st.b.srtp);
    }

    #[test]
    fn the_host_answers_with_one_codec_and_events_on_the_callers_port() {
        let mut offer_sdp = String::from_utf8(offer("RTP/AVP", None)).unwrap();
        offer_sdp = offer_sdp
            .replace("RTP/AVP 0 101", "RTP/AVP 8 0 101")
            .replace(
                "a=rtpmap:0 PCMU/8000\r\n",
                "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendonly\r\n",
            );
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let out = s
            .answer_here(
                Leg::A,
                offer_sdp.as_bytes(),
                false,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let answer = Sdp::parse(&out).unwrap();
        let m = &answer.media[0];
        assert_eq!(m.port, LOCAL.a);
        assert_eq!(m.formats, ["8", "101"]);
        assert_eq!(m.direction(), Direction::RecvOnly);
        assert!(m.cryptos().is_empty());
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("PCMU"), "{text}");
        assert!(text.contains("a=fmtp:101 0-16"), "{text}");
        assert!(
            !text.contains("o=a "),
            "the answer has our own origin: {text}"
        );
        assert_eq!(answer.media[1].port, 0, "other streams are refused");
        // Media from the caller is taken in, not forwarded anywhere.
        let from = "192.0.2.10:4000".parse().unwrap();
        assert!(
            s.handle(Instant::now(), Leg::A, Channel::Rtp, from, &rtp(1, 1))
                .is_none()
        );
        assert_eq!(s.stats().a.packets_in, 1);
    }

    #[test]
    fn the_host_answer_keeps_to_the_encryption_policy() {
        let key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
        let keyed = offer("RTP/SAVP", Some(&key.to_attr(3).to_value()));
        let mut s = MediaSession::new(LOCAL, Instant::now());
        // Keys offered over plain signalling are never taken.
        assert!(
            s.answer_here(Leg::A, &keyed, false, EncryptionPolicy::Optional)
                .is_err()
        );
        assert!(
            s.answer_here(
                Leg::A,
                &offer("RTP/AVP", None),
                true,
                EncryptionPolicy::Required
            )
            .is_err()
        );
        let out = s
            .answer_here(Leg::A, &keyed, true, EncryptionPolicy::Required)
            .unwrap();
        let (tag, ours) = find_key(&out);
        assert_eq!((tag, ours.suite()), (3, Suite::AesCm128HmacSha1_80));
        assert_ne!(ours, key, "the host sends with its own key");
        assert!(s.stats().a.srtp);
    }

    /// A caller's offer to the host: `formats` on the audio line, with the
    /// given `a=rtpmap` lines, the caller at 192.0.2.10:4000.
    fn caller_offer(formats: &str, maps: &str, extra: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP {formats}\r\n{maps}{extra}"
        )
        .into_bytes()
    }

    const EVENTS_101: &str = "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

    fn answered(formats: &str, maps: &str) -> MediaSession {
        let mut s = MediaSession::new(LOCAL, Instant::now());
        s.answer_here(
            Leg::A,
            &caller_offer(formats, maps, ""),
            false,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        s
    }

    /// Drives the session on a virtual clock from `t0` until nothing is due.
    fn play_out(s: &mut MediaSession, t0: Instant) -> Vec<(Instant, Transmit)> {
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(next) = s.poll_timeout() {
            assert!(next >= now, "time never goes back");
            now = next;
            while let Some(t) = s.poll_transmit(now) {
                out.push((now, t));
            }
            s.handle_timeout(now);
        }
        out
    }

    fn events(s: &mut MediaSession) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn a_one_second_prompt_is_fifty_paced_packets_to_the_caller() {
        let mut s = answered("0 101", EVENTS_101);
        assert_eq!(
            s.answered_format(Leg::A),
            Some(AnsweredFormat {
                payload_type: 0,
                clock_rate: Some(8000),
                g711: Some(G711::Pcmu),
                telephone_event: Some((101, 8000)),
            })
        );
        assert_eq!(s.answered_format(Leg::B), None);
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        assert!(s.is_playing(Leg::A));
        assert_eq!(s.poll_timeout(), Some(t0));
        let sent = play_out(&mut s, t0);
        assert_eq!(sent.len(), 50);
        let first = &sent[0].1.data;
        let ssrc = rtp::ssrc(first, Channel::Rtp).unwrap();
        let seq0 = rtp::seq(first).unwrap();
        let ts0 = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
        for (i, (at, t)) in sent.iter().enumerate() {
            let i = i as u32;
            assert_eq!(*at, t0 + Duration::from_millis(20) * i);
            assert_eq!(t.due, Some(*at));
            assert_eq!((t.leg, t.channel), (Leg::A, Channel::Rtp));
            assert_eq!(t.to, "192.0.2.10:4000".parse().unwrap());
            assert_eq!(t.data.len(), 172);
            assert_eq!(t.data[1], if i == 0 { 0x80 } else { 0 }, "marker, PCMU");
            assert_eq!(rtp::ssrc(&t.data, Channel::Rtp), Some(ssrc));
            assert_eq!(rtp::seq(&t.data), Some(seq0.wrapping_add(i as u16)));
            let ts = u32::from_be_bytes([t.data[4], t.data[5], t.data[6], t.data[7]]);
            assert_eq!(ts, ts0.wrapping_add(160 * i));
        }
        assert_eq!(
            events(&mut s),
            [SessionEvent::PromptFinished { leg: Leg::A }]
        );
        assert!(!s.is_playing(Leg::A));
        assert_eq!(s.stats().a.packets_out, 50);

        // The next prompt continues the stream; media latched from a NAT
        // address redirects it.
        let nat: SocketAddr = "192.0.2.99:31000".parse().unwrap();
        assert!(
            s.handle(t0, Leg::A, Channel::Rtp, nat, &rtp(5, 1))
                .is_none()
        );
        let t1 = t0 + Duration::from_secs(3);
        s.play(
            Leg::A,
            Prompt::silence(Duration::from_millis(40)).unwrap(),
            t1,
        )
        .unwrap();
        let more = play_out(&mut s, t1);
        assert_eq!(more.len(), 2);
        assert_eq!(more[0].1.to, nat);
        assert_eq!(rtp::seq(&more[0].1.data), Some(seq0.wrapping_add(50)));
        assert_eq!(more[0].1.data[1], 0x80, "a new talkspurt");
        assert_eq!(more[1].1.data[12..], [0xff; 160], "µ-law silence");
    }

    #[test]
    fn the_law_played_follows_the_answer() {
        for (formats, maps, pt, law) in [
            ("8 0 101", EVENTS_101, 8, G711::Pcma),
            ("0 8", "", 0, G711::Pcmu),
            // Opus first: the host keeps the G.711 it can play.
            (
                "96 8 0",
                "a=rtpmap:96 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\n",
                8,
                G711::Pcma,
            ),
            // A dynamic payload type for PCMU.
            ("97", "a=rtpmap:97 pcmu/8000\r\n", 97, G711::Pcmu),
        ] {
            let mut s = answered(formats, maps);
            assert_eq!(
                s.answered_format(Leg::A).and_then(|f| f.g711),
                Some(law),
                "{formats}"
            );
            let t0 = Instant::now();
            let tone = Prompt::dtmf('1', Duration::from_millis(40)).unwrap();
            s.play(Leg::A, tone.clone(), t0).unwrap();
            let sent = play_out(&mut s, t0);
            assert_eq!(sent.len(), 2);
            assert_eq!(sent[0].1.data[1] & 0x7f, pt, "{formats}");
            let mut want = [0u8; 160];
            law.encode_frame(tone.chunk(160, 160), &mut want);
            assert_eq!(sent[1].1.data[12..], want, "{formats}");
        }
        // A format the host cannot play: the answer stands, playing is refused.
        let mut s = answered("9", "a=rtpmap:9 G722/8000\r\n");
        assert_eq!(
            s.answered_format(Leg::A).map(|f| (f.payload_type, f.g711)),
            Some((9, None))
        );
        assert!(matches!(
            s.play(Leg::A, Prompt::beep(), Instant::now()),
            Err(Error::NotAcceptable(_))
        ));
        // Only a leg the host answered plays.
        assert!(matches!(
            s.play(Leg::B, Prompt::beep(), Instant::now()),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn an_answer_that_does_not_let_the_host_send_keeps_time_silently() {
        let mut s = MediaSession::new(LOCAL, Instant::now());
        s.answer_here(
            Leg::A,
            &caller_offer("0", "", "a=sendonly\r\n"),
            false,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        assert!(play_out(&mut s, t0).is_empty());
        assert_eq!(
            events(&mut s),
            [SessionEvent::PromptFinished { leg: Leg::A }]
        );
        assert_eq!(s.stats().a.packets_out, 0);
    }

    #[test]
    fn stop_playing_is_barge_in() {
        let mut s = answered("0", "");
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        assert!(s.poll_transmit(t0).is_some());
        assert!(s.stop_playing(Leg::A));
        assert!(!s.stop_playing(Leg::A));
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(t0 + Duration::from_secs(1)).is_none());
        assert!(
            events(&mut s).is_empty(),
            "no PromptFinished for a stopped prompt"
        );
    }

    #[test]
    fn srtp_leg_hears_the_host_with_the_key_the_answer_gave() {
        let caller_key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
        let offer_sdp = caller_offer(
            "8 101",
            EVENTS_101,
            &format!("a=crypto:{}\r\n", caller_key.to_attr(1).to_value()),
        );
        let offer_sdp = String::from_utf8(offer_sdp)
            .unwrap()
            .replace("RTP/AVP", "RTP/SAVP");
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let answer = s
            .answer_here(
                Leg::A,
                offer_sdp.as_bytes(),
                true,
                EncryptionPolicy::Required,
            )
            .unwrap();
        let (_, host_key) = find_key(&answer);
        let mut caller_rx = SrtpReceiver::new(&host_key).unwrap();
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        let sent = play_out(&mut s, t0);
        assert_eq!(sent.len(), 50);
        for (_, t) in &sent {
            assert_eq!(t.data.len(), 172 + 10, "an 80-bit tag");
            let plain = caller_rx
                .unprotect(Channel::Rtp, &t.data)
                .expect("decrypts");
            assert_eq!(plain[1] & 0x7f, 8);
            assert_eq!(plain.len(), 172);
        }
        assert_eq!(caller_rx.counters(), crate::SrtpCounters::default());

        // The caller's key presses arrive encrypted with its own key.
        let mut caller_tx = SrtpSender::new(&caller_key).unwrap();
        let from: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let mut seq = 1;
        for p in crate::dtmf::tests::press(&mut seq, 8000, 11, 960) {
            let enc = caller_tx.protect(Channel::Rtp, &p).unwrap();
            assert!(s.handle(t0, Leg::A, Channel::Rtp, from, &enc).is_none());
        }
        // Plaintext forged into the SRTP leg is not heard.
        let forged = crate::dtmf::tests::event(100, 20000, 1, true, 800);
        assert!(s.handle(t0, Leg::A, Channel::Rtp, from, &forged).is_none());
        assert_eq!(
            events(&mut s)[1..],
            [SessionEvent::Digit {
                leg: Leg::A,
                digit: '#',
                duration_ms: 120
            }]
        );
    }

    #[test]
    fn key_presses_on_the_answered_leg_are_heard_not_forwarded() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        let from: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let mut seq = 500;
        let mut pkts = Vec::new();
        for (i, code) in [1u8, 2, 3].into_iter().enumerate() {
            pkts.extend(crate::dtmf::tests::press(
                &mut seq,
                16000 * (i as u32 + 1),
                code,
                800,
            ));
        }
        // Audio between them, a foreign payload type, garbage.
        let mut foreign = crate::dtmf::tests::event(9, 90000, 4, true, 800);
        foreign[1] = 100;
        pkts.insert(2, rtp(0x1234_5678, 40));
        pkts.insert(4, foreign);
        pkts.push(vec![0x80, 101, 0, 1]);
        pkts.push(crate::dtmf::tests::event(10, 99999, 200, true, 800));
        for p in &pkts {
            assert!(s.handle(t0, Leg::A, Channel::Rtp, from, p).is_none());
        }
        let digits: String = events(&mut s)
            .into_iter()
            .map(|e| match e {
                SessionEvent::Digit {
                    leg: Leg::A,
                    digit,
                    duration_ms: 100,
                } => digit,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(digits, "123");
        let st = s.stats();
        assert_eq!((st.a.digits, st.b.packets_out, st.b.dropped), (3, 0, 0));

        // A press whose ends are lost is reported when it goes stale.
        let mut lost = crate::dtmf::tests::press(&mut seq, 80000, 9, 1200);
        lost.truncate(2);
        for p in &lost {
            s.handle(t0, Leg::A, Channel::Rtp, from, p);
        }
        assert!(events(&mut s).is_empty());
        let stale = s.poll_timeout().unwrap();
        assert_eq!(stale, t0 + crate::dtmf::EVENT_STALE);
        s.handle_timeout(stale);
        assert!(matches!(
            events(&mut s)[..],
            [SessionEvent::Digit { digit: '9', .. }]
        ));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn session_events_are_bounded() {
        let mut s = answered("0 101", EVENTS_101);
        let from: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let t0 = Instant::now();
        // 25 digits a second for four seconds, never polled.
        for i in 0..100u32 {
            let t = t0 + Duration::from_millis(40) * i;
            let p = crate::dtmf::tests::event(i as u16, 1000 + 800 * i, 5, true, 400);
            s.handle(t, Leg::A, Channel::Rtp, from, &p);
        }
        assert_eq!(s.events_dropped(), 100 - MAX_SESSION_EVENTS as u64);
        assert_eq!(events(&mut s).len(), MAX_SESSION_EVENTS);
    }

    #[test]
    fn an_answer_from_the_other_leg_connects_the_legs() {
        let mut s = answered("0 101", EVENTS_101);
        s.play(Leg::A, Prompt::beep(), Instant::now()).unwrap();
        s.offer_from(
            Leg::A,
            &offer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        s.answer_from(
            Leg::B,
            &answer("RTP/AVP", None),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        assert_eq!(s.answered_format(Leg::A), None);
        assert_eq!((s.poll_timeout(), s.is_playing(Leg::A)), (None, false));
        let from: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let out = s
            .handle(Instant::now(), Leg::A, Channel::Rtp, from, &rtp(1, 1))
            .unwrap();
        assert_eq!(out.leg, Leg::B);
    }

    #[test]
    fn a_pickup_answers_both_legs_in_the_callers_law_and_connects_them() {
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let ringing = caller_offer("8 0 101", "a=rtpmap:8 PCMA/8000\r\n", EVENTS_101);
        // A picker without the caller's law is refused and nothing changes.
        let pcmu_only = callee_answer("RTP/AVP", "0", "");
        assert!(matches!(
            s.answer_pickup(
                Some((&ringing, false)),
                &pcmu_only,
                false,
                EncryptionPolicy::Optional
            ),
            Err(Error::NotAcceptable(_))
        ));
        assert_eq!(
            s.answered_format(Leg::A),
            None,
            "the caller's leg untouched"
        );

        let picker = callee_answer("RTP/AVP", "0 8 101", PCMA_PCMU_EVENTS);
        let (to_caller, to_picker) = s
            .answer_pickup(
                Some((&ringing, false)),
                &picker,
                false,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let to_caller = String::from_utf8(to_caller.expect("caller answered")).unwrap();
        let to_picker = String::from_utf8(to_picker).unwrap();
        assert!(
            to_caller.contains("m=audio 20000 RTP/AVP 8 101"),
            "{to_caller}"
        );
        assert!(
            to_picker.contains("m=audio 20002 RTP/AVP 8 101"),
            "{to_picker}"
        );
        assert!(!to_picker.contains("PCMU"), "{to_picker}");
        // Neither leg ends at the host: the caller's audio goes to the picker.
        assert_eq!(s.answered_format(Leg::A), None);
        let out = s
            .handle(Instant::now(), Leg::A, Channel::Rtp, caller(), &rtp(1, 1))
            .unwrap();
        assert_eq!((out.leg, out.to), (Leg::B, callee()));
    }

    // Recording and connecting a host-answered leg.

    use crate::record::tests::{packets, through, tone};

    const CALLER: &str = "192.0.2.10:4000";
    const MS20: Duration = Duration::from_millis(20);

    fn caller() -> SocketAddr {
        CALLER.parse().unwrap()
    }

    fn spec(max_s: u64) -> RecordSpec {
        RecordSpec {
            max: Duration::from_secs(max_s),
            beep: false,
            finish_key: None,
            silence: None,
        }
    }

    /// Runs what falls due up to `until` on a virtual clock; returns what was sent.
    fn run_until(s: &mut MediaSession, until: Instant) -> Vec<(Instant, Transmit)> {
        let mut out = Vec::new();
        while let Some(next) = s.poll_timeout().filter(|t| *t <= until) {
            while let Some(t) = s.poll_transmit(next) {
                out.push((next, t));
            }
            s.handle_timeout(next);
        }
        out
    }

    /// The caller sends `pkts` 20 ms apart from `t0`, the session driven
    /// between them; returns what the host sent meanwhile.
    fn feed(s: &mut MediaSession, t0: Instant, pkts: &[Vec<u8>]) -> Vec<(Instant, Transmit)> {
        let mut sent = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            let at = t0 + MS20 * i as u32;
            sent.extend(run_until(s, at));
            assert!(s.handle(at, Leg::A, Channel::Rtp, caller(), p).is_none());
        }
        sent
    }

    fn recordings(s: &mut MediaSession) -> Vec<Recording> {
        events(s)
            .into_iter()
            .map(|e| match e {
                SessionEvent::RecordingFinished {
                    leg: Leg::A,
                    recording,
                } => recording,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_five_second_stream_is_recorded_as_the_caller_sent_it() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        s.record(Leg::A, spec(60), t0).unwrap();
        assert!(s.is_recording(Leg::A));
        let pcm = tone(5000);
        feed(&mut s, t0, &packets(G711::Pcmu, 0, 77, 123_456, &pcm));
        assert!(events(&mut s).is_empty());
        assert!(s.stop_recording(Leg::A, t0 + Duration::from_secs(5)));
        assert!(!s.stop_recording(Leg::A, t0 + Duration::from_secs(5)));
        assert!(!s.is_recording(Leg::A));
        let got = recordings(&mut s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].end, RecordingEnd::Stopped);
        assert_eq!(got[0].duration(), Duration::from_secs(5));
        assert_eq!(got[0].samples, through(G711::Pcmu, &pcm));
        assert_eq!(s.stats().a.packets_in, 250);
    }

    #[test]
    fn max_length_cuts_the_recording() {
        let mut s = answered("8 101", EVENTS_101);
        let t0 = Instant::now();
        s.record(Leg::A, spec(3), t0).unwrap();
        let pcm = tone(5000);
        let pkts = packets(G711::Pcma, 8, 1, 0, &pcm);
        feed(&mut s, t0, &pkts[..150]);
        assert!(!s.is_recording(Leg::A), "ended by the 150th packet");
        feed(&mut s, t0 + MS20 * 150, &pkts[150..]);
        let got = recordings(&mut s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].end, RecordingEnd::MaxLength);
        assert_eq!(got[0].samples, through(G711::Pcma, &pcm[..24000]));
    }

    #[test]
    fn silence_ends_the_recording_and_is_trimmed() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        let quiet = RecordSpec {
            silence: Some(Duration::from_secs(1)),
            ..spec(60)
        };
        s.record(Leg::A, quiet, t0).unwrap();
        let mut pcm = tone(1000);
        pcm.extend(std::iter::repeat_n(0i16, 8000 * 3));
        let pkts = packets(G711::Pcmu, 0, 1, 0, &pcm);
        feed(&mut s, t0, &pkts[..100]);
        assert!(!s.is_recording(Leg::A), "a second of silence after voice");
        let got = recordings(&mut s);
        assert_eq!(got[0].end, RecordingEnd::Silence);
        assert_eq!(got[0].samples, through(G711::Pcmu, &pcm[..8000]));

        // Nothing but silence (here: no packets): ends `silence` after the
        // start, with no audio.
        s.record(Leg::A, quiet, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(11)));
        run_until(&mut s, t0 + Duration::from_secs(11));
        let got = recordings(&mut s);
        assert_eq!(
            (got[0].end, got[0].samples.len()),
            (RecordingEnd::Silence, 0)
        );
    }

    #[test]
    fn the_finish_key_ends_the_recording_and_is_not_a_digit() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        let keyed = RecordSpec {
            finish_key: Some('#'),
            ..spec(60)
        };
        s.record(Leg::A, keyed, t0).unwrap();
        let pcm = tone(1000);
        let mut pkts = packets(G711::Pcmu, 0, 1, 0, &pcm);
        let mut seq = 1;
        // '5' halfway, '#' at the end: key presses between the audio.
        let five = crate::dtmf::tests::press(&mut seq, 4000, 5, 800);
        let hash = crate::dtmf::tests::press(&mut seq, 8000, 11, 800);
        pkts.splice(25..25, five);
        pkts.extend(hash);
        feed(&mut s, t0, &pkts);
        assert!(!s.is_recording(Leg::A));
        let evs = events(&mut s);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(
            evs[0],
            SessionEvent::Digit {
                leg: Leg::A,
                digit: '5',
                duration_ms: 100
            }
        );
        let SessionEvent::RecordingFinished { recording, .. } = &evs[1] else {
            panic!("{evs:?}");
        };
        assert_eq!(recording.end, RecordingEnd::FinishKey);
        assert_eq!(recording.samples, through(G711::Pcmu, &pcm));
        assert_eq!(s.stats().a.digits, 2);
        // Without a recording the key is a digit again.
        feed(
            &mut s,
            t0 + Duration::from_secs(5),
            &crate::dtmf::tests::press(&mut seq, 16000, 11, 800),
        );
        assert!(matches!(
            events(&mut s)[..],
            [SessionEvent::Digit { digit: '#', .. }]
        ));
    }

    #[test]
    fn the_beep_plays_before_the_recording_starts() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        let beeped = RecordSpec {
            beep: true,
            ..spec(60)
        };
        s.record(Leg::A, beeped, t0).unwrap();
        assert!(s.is_playing(Leg::A));
        // A signal that differs packet to packet.
        let pcm: Vec<i16> = (0..16000).map(|i| (i % 4000) as i16 * 4 - 8000).collect();
        let sent = feed(&mut s, t0, &packets(G711::Pcmu, 0, 1, 0, &pcm));
        assert_eq!(sent.len(), 50, "the beep's packets");
        let last_beep = sent.last().unwrap().0;
        assert_eq!(last_beep, t0 + MS20 * 49);
        let mut want = [0u8; 160];
        G711::Pcmu.encode_frame(Prompt::beep().chunk(160, 160), &mut want);
        assert_eq!(sent[1].1.data[12..], want);
        assert!(s.stop_recording(Leg::A, t0 + Duration::from_secs(2)));
        // No PromptFinished for the beep; the audio from its last packet on.
        let got = recordings(&mut s);
        assert_eq!(got[0].samples, through(G711::Pcmu, &pcm[49 * 160..]));

        // After a prompt queued ahead, whose end is reported.
        let t1 = t0 + Duration::from_secs(10);
        s.play(
            Leg::A,
            Prompt::silence(Duration::from_millis(100)).unwrap(),
            t1,
        )
        .unwrap();
        s.record(Leg::A, beeped, t1).unwrap();
        let sent = run_until(&mut s, t1 + Duration::from_secs(2));
        assert_eq!(sent.len(), 5 + 50);
        assert_eq!(
            events(&mut s),
            [SessionEvent::PromptFinished { leg: Leg::A }]
        );
        assert_eq!(
            s.poll_timeout(),
            Some(t1 + MS20 * 54 + Duration::from_secs(60)),
            "recording since the beep's last packet"
        );

        // Stopped during its beep: the beep stops, nothing recorded.
        s.stop_recording(Leg::A, t1 + Duration::from_secs(3));
        recordings(&mut s);
        let t2 = t1 + Duration::from_secs(20);
        s.record(Leg::A, beeped, t2).unwrap();
        assert!(s.poll_transmit(t2).is_some());
        assert!(s.stop_recording(Leg::A, t2));
        assert!(!s.is_playing(Leg::A));
        assert_eq!(recordings(&mut s)[0].samples.len(), 0);
        assert!(events(&mut s).is_empty());

        // Barge-in on the beep starts the recording at once.
        s.record(Leg::A, beeped, t2).unwrap();
        assert!(s.stop_playing(Leg::A));
        assert!(s.is_recording(Leg::A));
        assert_eq!(s.poll_timeout(), Some(t2 + Duration::from_secs(60)));
    }

    #[test]
    fn a_lost_packet_leaves_a_gap_of_silence() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        s.record(Leg::A, spec(60), t0).unwrap();
        let pcm = tone(1000);
        let mut pkts = packets(G711::Pcmu, 0, 1, 0, &pcm);
        pkts.remove(10);
        let dup = pkts[20].clone();
        pkts.insert(21, dup);
        feed(&mut s, t0, &pkts);
        s.stop_recording(Leg::A, t0 + Duration::from_secs(1));
        let mut want = through(G711::Pcmu, &pcm);
        want[1600..1760].fill(0);
        assert_eq!(recordings(&mut s)[0].samples, want);
    }

    #[test]
    fn no_packets_at_all_still_end_at_max() {
        let mut s = answered("0 101", EVENTS_101);
        let t0 = Instant::now();
        s.record(Leg::A, spec(2), t0).unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        run_until(&mut s, t0 + Duration::from_millis(1999));
        assert!(s.is_recording(Leg::A));
        run_until(&mut s, t0 + Duration::from_secs(2));
        let got = recordings(&mut s);
        assert_eq!(
            (got[0].end, got[0].samples.len()),
            (RecordingEnd::MaxLength, 0)
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn an_srtp_leg_is_recorded_after_unprotect() {
        let caller_key = KeyMaterial::generate(Suite::AeadAes128Gcm);
        let offer_sdp = String::from_utf8(caller_offer(
            "8 101",
            EVENTS_101,
            &format!("a=crypto:{}\r\n", caller_key.to_attr(1).to_value()),
        ))
        .unwrap()
        .replace("RTP/AVP", "RTP/SAVP");
        let mut s = MediaSession::new(LOCAL, Instant::now());
        s.answer_here(
            Leg::A,
            offer_sdp.as_bytes(),
            true,
            EncryptionPolicy::Required,
        )
        .unwrap();
        let t0 = Instant::now();
        s.record(Leg::A, spec(60), t0).unwrap();
        let pcm = tone(400);
        let mut tx = SrtpSender::new(&caller_key).unwrap();
        let mut pkts: Vec<Vec<u8>> = packets(G711::Pcma, 8, 5, 0, &pcm)
            .iter()
            .map(|p| tx.protect(Channel::Rtp, p).unwrap().to_vec())
            .collect();
        // Plaintext forged into the SRTP leg is not recorded.
        pkts.insert(3, packets(G711::Pcma, 8, 5, 480, &[20000; 160])[0].clone());
        feed(&mut s, t0, &pkts);
        s.stop_recording(Leg::A, t0 + Duration::from_secs(1));
        assert_eq!(recordings(&mut s)[0].samples, through(G711::Pcma, &pcm));
    }

    #[test]
    fn recording_is_refused_like_playing() {
        let t0 = Instant::now();
        let mut s = answered("9", "a=rtpmap:9 G722/8000\r\n");
        assert!(matches!(
            s.record(Leg::A, spec(5), t0),
            Err(Error::NotAcceptable(_))
        ));
        assert!(matches!(
            s.record(Leg::B, spec(5), t0),
            Err(Error::Protocol(_))
        ));
        assert!(!s.stop_recording(Leg::B, t0));
        let mut s = answered("0", "");
        let bad_key = RecordSpec {
            finish_key: Some('x'),
            ..spec(5)
        };
        assert!(matches!(
            s.record(Leg::A, bad_key, t0),
            Err(Error::Protocol(_))
        ));
        s.record(Leg::A, spec(5), t0).unwrap();
        assert!(matches!(
            s.record(Leg::A, spec(5), t0),
            Err(Error::Protocol(_))
        ));
        // A lowercase key is the same key.
        let mut s = answered("0 101", EVENTS_101);
        let lower = RecordSpec {
            finish_key: Some('d'),
            ..spec(5)
        };
        s.record(Leg::A, lower, t0).unwrap();
        let mut seq = 1;
        feed(&mut s, t0, &crate::dtmf::tests::press(&mut seq, 0, 15, 800));
        assert_eq!(recordings(&mut s)[0].end, RecordingEnd::FinishKey);
    }

    /// The callee's answer: `formats` on the audio line from 198.51.100.20:6000.
    fn callee_answer(proto: &str, formats: &str, extra: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=b 7 7 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n\
             m=audio 6000 {proto} {formats}\r\n{extra}"
        )
        .into_bytes()
    }

    const PCMA_PCMU_EVENTS: &str = "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

    fn callee() -> SocketAddr {
        "198.51.100.20:6000".parse().unwrap()
    }

    fn rtp_pt(pt: u8, ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = rtp(ssrc, seq);
        p[1] = pt;
        p
    }

    #[test]
    fn the_host_offers_its_format_to_the_callee_and_connects_the_legs() {
        let mut s = answered("8 0 101", PCMA_PCMU_EVENTS);
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        assert!(s.poll_transmit(t0).is_some());
        s.record(Leg::A, spec(60), t0).unwrap();

        let out = s
            .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let sdp = Sdp::parse(&out).unwrap();
        assert_eq!(sdp.connection(), Some(LOCAL.ip));
        assert_eq!(sdp.media.len(), 1);
        let m = &sdp.media[0];
        assert_eq!((m.port, m.proto.as_str()), (LOCAL.b, "RTP/AVP"));
        assert_eq!(m.formats, ["8", "101"]);
        assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"), "{text}");
        assert!(
            text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            "{text}"
        );
        assert!(!text.contains("PCMU") && !text.contains("crypto"), "{text}");
        assert_eq!(m.direction(), Direction::SendRecv);
        assert!(text.contains("a=sendrecv"), "{text}");
        // Nothing changes until the answer.
        assert!(s.is_playing(Leg::A) && s.is_recording(Leg::A));

        s.answer_to_host_offer(
            Leg::B,
            &callee_answer("RTP/AVP", "8 101", "a=rtpmap:8 PCMA/8000\r\n"),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        // The prompt and the recording stop without events.
        assert!(!s.is_playing(Leg::A) && !s.is_recording(Leg::A));
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(t0 + Duration::from_secs(1)).is_none());
        assert!(events(&mut s).is_empty());
        assert_eq!(s.answered_format(Leg::A), None);

        let t1 = t0 + Duration::from_secs(1);
        let out = s
            .handle(t1, Leg::A, Channel::Rtp, caller(), &rtp_pt(8, 1, 1))
            .unwrap();
        assert_eq!((out.leg, out.to), (Leg::B, callee()));
        assert_eq!(&out.data[..], &rtp_pt(8, 1, 1)[..]);
        let out = s
            .handle(t1, Leg::B, Channel::Rtp, callee(), &rtp_pt(8, 2, 1))
            .unwrap();
        assert_eq!((out.leg, out.to), (Leg::A, caller()));
        assert_eq!(&out.data[..], &rtp_pt(8, 2, 1)[..]);
        // Key presses are relayed now, not heard.
        let press = crate::dtmf::tests::event(3, 800, 1, true, 800);
        assert_eq!(
            s.handle(t1, Leg::A, Channel::Rtp, caller(), &press)
                .map(|t| t.leg),
            Some(Leg::B)
        );
        assert!(events(&mut s).is_empty());

        // The same answer again (183, then 200).
        s.answer_to_host_offer(
            Leg::B,
            &callee_answer("RTP/AVP", "8 101", ""),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();
        assert!(
            s.handle(t1, Leg::B, Channel::Rtp, callee(), &rtp_pt(8, 2, 2))
                .is_some()
        );
    }

    #[test]
    fn an_answer_to_the_host_offer_must_keep_its_format() {
        let mut s = answered("8 0 101", PCMA_PCMU_EVENTS);
        let plain = |s: &mut MediaSession, formats: &str, extra: &str| {
            s.answer_to_host_offer(
                Leg::B,
                &callee_answer("RTP/AVP", formats, extra),
                PLAIN,
                EncryptionPolicy::Optional,
            )
        };
        assert!(matches!(plain(&mut s, "8", ""), Err(Error::Protocol(_))));
        assert!(matches!(
            s.offer_from_host(Leg::A, false, EncryptionPolicy::Optional),
            Err(Error::Protocol(_))
        ));
        s.offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        for (formats, extra) in [
            ("0", ""),
            ("0 101", ""),
            ("8 0 101", ""),
            ("8 96", "a=rtpmap:96 opus/48000/2\r\n"),
            ("8", "a=rtpmap:8 PCMU/8000\r\n"),
        ] {
            assert!(
                matches!(plain(&mut s, formats, extra), Err(Error::NotAcceptable(_))),
                "{formats} {extra}"
            );
        }
        let rejected =
            b"v=0\r\no=b 7 7 IN IP4 198.51.100.20\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\n";
        assert!(matches!(
            s.answer_to_host_offer(Leg::B, rejected, PLAIN, EncryptionPolicy::Optional),
            Err(Error::NotAcceptable(_))
        ));
        assert!(matches!(
            s.answer_to_host_offer(
                Leg::A,
                &callee_answer("RTP/AVP", "8", ""),
                PLAIN,
                EncryptionPolicy::Optional
            ),
            Err(Error::Protocol(_))
        ));
        // Refused answers leave the caller at the host.
        assert!(s.answered_format(Leg::A).is_some());
        // The events format may be left out.
        plain(&mut s, "8", "").unwrap();
        assert_eq!(s.answered_format(Leg::A), None);

        // No leg at the host, or the host's answer kept a format it cannot
        // play: the offer still follows the answer.
        let mut s = MediaSession::new(LOCAL, Instant::now());
        assert!(matches!(
            s.offer_from_host(Leg::B, false, EncryptionPolicy::Optional),
            Err(Error::Protocol(_))
        ));
        let mut s = answered("97", "a=rtpmap:97 G722/8000\r\na=fmtp:97 x=1\r\n");
        let out = s
            .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("m=audio 20002 RTP/AVP 97\r\na=rtpmap:97 G722/8000\r\na=fmtp:97 x=1\r\n"),
            "{text}"
        );
        // A static type without a=rtpmap in the caller's offer gets one.
        let mut s = answered("0", "");
        let out = s
            .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("m=audio 20002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
            "{text}"
        );
    }

    #[test]
    fn an_srtp_caller_at_the_host_is_connected_to_a_plain_callee() {
        let caller_key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
        let offer_sdp = String::from_utf8(caller_offer(
            "8 0 101",
            PCMA_PCMU_EVENTS,
            &format!("a=crypto:{}\r\n", caller_key.to_attr(1).to_value()),
        ))
        .unwrap()
        .replace("RTP/AVP", "RTP/SAVP");
        let mut s = MediaSession::new(LOCAL, Instant::now());
        let answer = s
            .answer_here(
                Leg::A,
                offer_sdp.as_bytes(),
                true,
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let (_, host_key) = find_key(&answer);
        let t0 = Instant::now();
        s.play(Leg::A, Prompt::beep(), t0).unwrap();
        let mut a_rx = SrtpReceiver::new(&host_key).unwrap();
        let mut a_tx = SrtpSender::new(&caller_key).unwrap();
        let prompt = s.poll_transmit(t0).unwrap();
        assert!(a_rx.unprotect(Channel::Rtp, &prompt.data).is_some());

        // SRTP is required but the callee is not on a secure transport.
        assert!(matches!(
            s.offer_from_host(Leg::B, false, EncryptionPolicy::Required),
            Err(Error::EncryptionRequired(_))
        ));
        // A secure callee is offered keys on RTP/SAVP, as the caller uses.
        let secure = s
            .offer_from_host(Leg::B, true, EncryptionPolicy::Optional)
            .unwrap();
        let m = &Sdp::parse(&secure).unwrap().media[0];
        assert_eq!(m.proto, "RTP/SAVP");
        assert_eq!(m.cryptos().len(), Suite::ALL.len());

        let to_b = s
            .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        let m = &Sdp::parse(&to_b).unwrap().media[0];
        assert_eq!((m.proto.as_str(), m.cryptos().len()), ("RTP/AVP", 0));
        // Keys in an answer to a plain offer are out of order.
        let keyed = format!(
            "a=crypto:{}\r\n",
            KeyMaterial::generate(Suite::AesCm128HmacSha1_80)
                .to_attr(1)
                .to_value()
        );
        assert!(matches!(
            s.answer_to_host_offer(
                Leg::B,
                &callee_answer("RTP/AVP", "8 101", &keyed),
                Security {
                    from_secure: true,
                    to_secure: true,
                    to_webrtc: false,
                },
                EncryptionPolicy::Optional
            ),
            Err(Error::Protocol(_))
        ));
        s.answer_to_host_offer(
            Leg::B,
            &callee_answer("RTP/AVP", "8 101", ""),
            PLAIN,
            EncryptionPolicy::Optional,
        )
        .unwrap();

        let t1 = t0 + Duration::from_secs(1);
        let enc = a_tx.protect(Channel::Rtp, &rtp_pt(8, 1, 1)).unwrap();
        let out = s.handle(t1, Leg::A, Channel::Rtp, caller(), &enc).unwrap();
        assert_eq!(out.leg, Leg::B);
        assert_eq!(&out.data[..], &rtp_pt(8, 1, 1)[..], "plain to the callee");
        let out = s
            .handle(t1, Leg::B, Channel::Rtp, callee(), &rtp_pt(8, 2, 1))
            .unwrap();
        assert_eq!(out.leg, Leg::A);
        // A new SSRC for the caller (the callee's), under the same key; our
        // receiver pins one SSRC, so a fresh one stands for the phone.
        assert!(a_rx.unprotect(Channel::Rtp, &out.data).is_none());
        let mut a_rx = SrtpReceiver::new(&host_key).unwrap();
        let plain = a_rx
            .unprotect(Channel::Rtp, &out.data)
            .expect("the caller decrypts with the key of the host's answer");
        assert_eq!(&plain[..], &rtp_pt(8, 2, 1)[..]);
        let st = s.stats();
        assert!(st.a.srtp && !st.b.srtp);

        // A secure callee that answers with a key gets SRTP both ways.
        let mut s2 = MediaSession::new(LOCAL, Instant::now());
        s2.answer_here(
            Leg::A,
            offer_sdp.as_bytes(),
            true,
            EncryptionPolicy::Required,
        )
        .unwrap();
        let to_b = s2
            .offer_from_host(Leg::B, true, EncryptionPolicy::Required)
            .unwrap();
        let offered = Sdp::parse(&to_b).unwrap().media[0].cryptos();
        let line = offered
            .iter()
            .find(|c| c.suite == "AES_CM_128_HMAC_SHA1_32")
            .unwrap();
        let relay_to_b = KeyMaterial::from_attr(line).unwrap().unwrap();
        let b_key = KeyMaterial::generate(Suite::AesCm128HmacSha1_32);
        s2.answer_to_host_offer(
            Leg::B,
            &callee_answer(
                "RTP/SAVP",
                "8",
                &format!("a=crypto:{}\r\n", b_key.to_attr(line.tag).to_value()),
            ),
            TLS,
            EncryptionPolicy::Required,
        )
        .unwrap();
        let mut b_tx = SrtpSender::new(&b_key).unwrap();
        let mut b_rx = SrtpReceiver::new(&relay_to_b).unwrap();
        let mut a_tx = SrtpSender::new(&caller_key).unwrap();
        let enc = a_tx.protect(Channel::Rtp, &rtp_pt(8, 1, 1)).unwrap();
        let out = s2.handle(t1, Leg::A, Channel::Rtp, caller(), &enc).unwrap();
        assert_eq!(
            &b_rx.unprotect(Channel::Rtp, &out.data).unwrap()[..],
            &rtp_pt(8, 1, 1)[..]
        );
        let enc = b_tx.protect(Channel::Rtp, &rtp_pt(8, 2, 1)).unwrap();
        assert!(
            s2.handle(t1, Leg::B, Channel::Rtp, callee(), &enc)
                .is_some()
        );
    }

    /// Browser legs: DTLS-SRTP, ICE-lite and rtcp-mux facing a browser.
    mod browser {
        use super::*;
        use crate::dtls::DtlsKeys;
        use crate::ice;
        use crate::webrtc::DtlsRole;

        /// The host's certificate fingerprint in these tests.
        const HOST_FP: Fingerprint = Fingerprint([0xAB; 32]);
        /// The browser's.
        const BROWSER_FP: Fingerprint = Fingerprint([0x5C; 32]);

        fn session() -> MediaSession {
            MediaSession::new(LOCAL, Instant::now()).with_dtls_fingerprint(HOST_FP)
        }

        fn browser_addr() -> SocketAddr {
            "192.0.2.50:54321".parse().unwrap()
        }

        fn phone_addr() -> SocketAddr {
            "198.51.100.20:6000".parse().unwrap()
        }

        /// What Chromium offers for one audio track (opus first, G.711 among
        /// the rest, BUNDLE, rtcp-mux, header extensions, SSRCs).
        fn chromium_offer() -> Vec<u8> {
            format!(
                "v=0\r\n\
                 o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
                 s=-\r\n\
                 t=0 0\r\n\
                 a=group:BUNDLE 0\r\n\
                 a=extmap-allow-mixed\r\n\
                 a=msid-semantic: WMS 3a0b5c2e\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
                 c=IN IP4 0.0.0.0\r\n\
                 a=rtcp:9 IN IP4 0.0.0.0\r\n\
                 a=candidate:1467250027 1 udp 2122260223 192.0.2.50 54321 typ host generation 0 network-id 1\r\n\
                 a=ice-ufrag:Brws\r\n\
                 a=ice-pwd:brwsPasswordBrwsPassword\r\n\
                 a=ice-options:trickle\r\n\
                 a=fingerprint:{}\r\n\
                 a=setup:actpass\r\n\
                 a=mid:0\r\n\
                 a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                 a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
                 a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
                 a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                 a=sendrecv\r\n\
                 a=msid:3a0b5c2e 9f8e7d6c\r\n\
                 a=rtcp-mux\r\n\
                 a=rtcp-rsize\r\n\
                 a=rtcp-xr:rcvr-rtt=all\r\n\
                 a=rtpmap:111 opus/48000/2\r\n\
                 a=rtcp-fb:111 transport-cc\r\n\
                 a=fmtp:111 minptime=10;useinbandfec=1\r\n\
                 a=rtpmap:63 red/48000/2\r\n\
                 a=fmtp:63 111/111\r\n\
                 a=rtpmap:9 G722/8000\r\n\
                 a=rtpmap:0 PCMU/8000\r\n\
                 a=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:13 CN/8000\r\n\
                 a=rtpmap:110 telephone-event/48000\r\n\
                 a=rtpmap:126 telephone-event/8000\r\n\
                 a=ssrc:1001 cname:abcdEFGH\r\n\
                 a=ssrc:1001 msid:3a0b5c2e 9f8e7d6c\r\n",
                BROWSER_FP.to_value()
            )
            .into_bytes()
        }

        fn phone_answer() -> Vec<u8> {
            b"v=0\r\no=phone 7 7 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n\
              m=audio 6000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
              a=fmtp:126 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
                .to_vec()
        }

        fn text(sdp: &[u8]) -> String {
            String::from_utf8(sdp.to_vec()).unwrap()
        }

        fn lines(sdp: &[u8]) -> Vec<String> {
            text(sdp).split("\r\n").map(str::to_owned).collect()
        }

        /// The ICE username fragment and password an SDP of ours gives.
        fn ice_of(sdp: &[u8]) -> (String, String) {
            (attr_value(sdp, "ice-ufrag"), attr_value(sdp, "ice-pwd"))
        }

        fn attr_value(sdp: &[u8], name: &str) -> String {
            let prefix = format!("a={name}:");
            lines(sdp)
                .iter()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .unwrap_or_else(|| panic!("no a={name} in {}", text(sdp)))
        }

        /// A browser call: Chromium on A offers, a plain phone on B answers.
        fn browser_calls_phone(s: &mut MediaSession) -> (Vec<u8>, Vec<u8>) {
            let to_phone = s
                .offer_from(Leg::A, &chromium_offer(), PLAIN, EncryptionPolicy::Optional)
                .unwrap();
            let to_browser = s
                .answer_from(Leg::B, &phone_answer(), PLAIN, EncryptionPolicy::Optional)
                .unwrap();
            (to_phone, to_browser)
        }

        #[test]
        fn a_chromium_offer_reaches_a_phone_as_clean_g711_rtp_avp() {
            let mut s = session();
            let (to_phone, _) = browser_calls_phone(&mut s);
            let sdp = Sdp::parse(&to_phone).unwrap();
            assert_eq!(sdp.media.len(), 1);
            let m = &sdp.media[0];
            assert_eq!(
                (m.port, m.proto.as_str(), m.formats.clone()),
                (20002, "RTP/AVP", vec!["0".into(), "8".into(), "126".into()])
            );
            assert_eq!(sdp.media_connection(0), Some(LOCAL.ip));
            let body = text(&to_phone);
            for kept in [
                "a=rtpmap:0 PCMU/8000\r\n",
                "a=rtpmap:8 PCMA/8000\r\n",
                "a=rtpmap:126 telephone-event/8000\r\n",
                "a=sendrecv\r\n",
            ] {
                assert!(body.contains(kept), "{kept} missing from\n{body}");
            }
            for gone in [
                "opus",
                "red/",
                "G722",
                "CN/",
                "telephone-event/48000",
                "a=ice-",
                "a=fingerprint",
                "a=setup",
                "a=mid",
                "a=group",
                "a=extmap",
                "a=ssrc",
                "a=msid",
                "a=rtcp-fb",
                "a=rtcp-mux",
                "a=rtcp-rsize",
                "a=rtcp-xr",
                "a=rtcp:",
                "a=candidate",
                "a=crypto",
                "0.0.0.0",
                "UDP/TLS",
            ] {
                assert!(!body.contains(gone), "{gone} leaked into\n{body}");
            }
            assert!(s.is_webrtc(Leg::A) && !s.is_webrtc(Leg::B));
        }

        #[test]
        fn the_answer_to_chromium_has_everything_it_requires() {
            let mut s = session();
            let (_, to_browser) = browser_calls_phone(&mut s);
            let sdp = Sdp::parse(&to_browser).unwrap();
            let all = lines(&to_browser);
            let m_at = all.iter().position(|l| l.starts_with("m=")).unwrap();
            let session_part = &all[..m_at];
            assert!(session_part.contains(&"a=ice-lite".to_owned()), "{all:?}");
            assert!(
                session_part.contains(&"a=group:BUNDLE 0".to_owned()),
                "{all:?}"
            );
            assert_eq!(all[m_at], "m=audio 20000 UDP/TLS/RTP/SAVPF 0 126");
            assert_eq!(sdp.media_connection(0), Some(LOCAL.ip));
            let media = &all[m_at..];
            for expected in [
                "a=mid:0".to_owned(),
                "a=setup:passive".to_owned(),
                "a=rtcp-mux".to_owned(),
                format!("a=fingerprint:{}", HOST_FP.to_value()),
                "a=candidate:1 1 udp 2130706431 203.0.113.1 20000 typ host".to_owned(),
                "a=end-of-candidates".to_owned(),
                "a=rtpmap:0 PCMU/8000".to_owned(),
                "a=rtpmap:126 telephone-event/8000".to_owned(),
                "a=sendrecv".to_owned(),
            ] {
                assert!(media.contains(&expected), "{expected} missing from {all:?}");
            }
            let ufrag = attr_value(&to_browser, "ice-ufrag");
            let pwd = attr_value(&to_browser, "ice-pwd");
            assert!((4..=256).contains(&ufrag.len()) && (22..=256).contains(&pwd.len()));
            assert_eq!(
                s.ice_credentials(Leg::A).map(|c| c.ufrag.clone()),
                Some(ufrag)
            );
            assert!(!text(&to_browser).contains("a=crypto"));
            assert!(!text(&to_browser).contains("a=ssrc"));
            // We answer actpass as its server; the handshake starts once ICE
            // has checked the browser's address.
            assert_eq!(s.poll_dtls_start(), None);
            let pwd = attr_value(&to_browser, "ice-pwd");
            let ufrag = attr_value(&to_browser, "ice-ufrag");
            let check = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [6; 12], true);
            s.handle(Instant::now(), Leg::A, Channel::Rtp, browser_addr(), &check)
                .unwrap();
            assert_eq!(
                s.poll_dtls_start(),
                Some(DtlsStart {
                    leg: Leg::A,
                    role: DtlsRole::Server,
                    peer: BROWSER_FP
                })
            );
            assert_eq!(s.poll_dtls_start(), None, "handed out once");
            // A repeated answer (183 then 200) changes nothing.
            let again = s
                .answer_from(Leg::B, &phone_answer(), PLAIN, EncryptionPolicy::Optional)
                .unwrap();
            assert_eq!(
                attr_value(&again, "ice-pwd"),
                attr_value(&to_browser, "ice-pwd")
            );
            assert_eq!(s.poll_dtls_start(), None);
        }

        #[test]
        fn a_passive_browser_makes_us_the_client_once_ice_has_checked() {
            let mut s = session();
            let offer = text(&chromium_offer()).replace("a=setup:actpass", "a=setup:passive");
            s.offer_from(Leg::A, offer.as_bytes(), PLAIN, EncryptionPolicy::Optional)
                .unwrap();
            let answer = s
                .answer_from(Leg::B, &phone_answer(), PLAIN, EncryptionPolicy::Optional)
                .unwrap();
            assert_eq!(attr_value(&answer, "setup"), "active");
            assert_eq!(
                s.poll_dtls_start(),
                None,
                "no address to send a ClientHello to"
            );
            let (ufrag, pwd) = ice_of(&answer);
            let req = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [3; 12], true);
            assert!(
                s.handle(Instant::now(), Leg::A, Channel::Rtp, browser_addr(), &req)
                    .is_some()
            );
            assert_eq!(
                s.poll_dtls_start().map(|d| (d.leg, d.role)),
                Some((Leg::A, DtlsRole::Client))
            );
        }

        #[test]
        fn ice_checks_are_answered_only_with_our_credentials() {
            let mut s = session();
            let (_, to_browser) = browser_calls_phone(&mut s);
            let (ufrag, pwd) = ice_of(&to_browser);
            let now = Instant::now();
            let wrong_pwd = ice::binding_request(
                &format!("{ufrag}:Brws"),
                "not-the-password-at-all",
                [1; 12],
                false,
            );
            assert_eq!(
                s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &wrong_pwd),
                None
            );
            let wrong_ufrag = ice::binding_request("zzzz:Brws", &pwd, [1; 12], false);
            assert_eq!(
                s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &wrong_ufrag),
                None
            );
            assert_eq!(
                s.dtls_peer(Leg::A),
                None,
                "nothing latched by failed checks"
            );
            // The phone's leg is no ICE leg: a valid check there gets nothing.
            let good = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [2; 12], false);
            assert_eq!(
                s.handle(now, Leg::B, Channel::Rtp, phone_addr(), &good),
                None
            );

            let t = s
                .handle(now, Leg::A, Channel::Rtp, browser_addr(), &good)
                .expect("a valid check is answered");
            assert_eq!(
                (t.leg, t.channel, t.to),
                (Leg::A, Channel::Rtp, browser_addr())
            );
            assert_eq!(ice::verify_success(&t.data, &pwd), Some(browser_addr()));
            assert_eq!(ice::verify_success(&t.data, "another password"), None);
            assert_eq!(s.dtls_peer(Leg::A), Some(browser_addr()));
            s.poll_dtls_start();
            assert!(s.accepts_dtls(Leg::A, browser_addr()));
            assert!(!s.accepts_dtls(Leg::A, phone_addr()));
            assert!(!s.accepts_dtls(Leg::B, phone_addr()));
            // A check from elsewhere is answered but moves the leg only when nominated.
            let other: SocketAddr = "192.0.2.51:40000".parse().unwrap();
            assert!(s.handle(now, Leg::A, Channel::Rtp, other, &good).is_some());
            assert_eq!(s.dtls_peer(Leg::A), Some(browser_addr()));
            let nominate = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [4; 12], true);
            assert!(
                s.handle(now, Leg::A, Channel::Rtp, other, &nominate)
                    .is_some()
            );
            assert_eq!(s.dtls_peer(Leg::A), Some(other));
        }

        fn keys() -> DtlsKeys {
            DtlsKeys {
                remote: KeyMaterial::generate(Suite::AesCm128HmacSha1_80),
                local: KeyMaterial::generate(Suite::AesCm128HmacSha1_80),
            }
        }

        fn rtcp_sr(ssrc: u32) -> Vec<u8> {
            let mut p = vec![0x80, 200, 0, 6];
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&[0; 20]);
            p
        }

        #[test]
        fn no_media_crosses_before_the_keys_and_srtp_after() {
            let mut s = session();
            let (_, to_browser) = browser_calls_phone(&mut s);
            let (ufrag, pwd) = ice_of(&to_browser);
            let now = Instant::now();
            let check = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [9; 12], true);
            s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &check)
                .unwrap();
            let k = keys();
            let mut browser_tx = SrtpSender::new(&k.remote).unwrap();
            let mut browser_rx = SrtpReceiver::new(&k.local).unwrap();
            let srtp = browser_tx.protect(Channel::Rtp, &rtp(77, 1)).unwrap();

            assert_eq!(
                s.handle(now, Leg::B, Channel::Rtp, phone_addr(), &rtp(5, 1)),
                None
            );
            assert_eq!(
                s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &srtp),
                None
            );
            assert_eq!(
                s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &rtp(77, 2)),
                None
            );
            assert!(
                s.install_dtls_keys(Leg::A, &k).is_err(),
                "no handshake was started"
            );
            assert!(s.poll_dtls_start().is_some());
            s.install_dtls_keys(Leg::A, &k).unwrap();

            let out = s
                .handle(
                    now,
                    Leg::A,
                    Channel::Rtp,
                    browser_addr(),
                    &browser_tx.protect(Channel::Rtp, &rtp(77, 3)).unwrap(),
                )
                .expect("relayed to the phone");
            assert_eq!(
                (out.leg, out.to, out.channel),
                (Leg::B, phone_addr(), Channel::Rtp)
            );
            assert_eq!(&out.data[..], &rtp(77, 3)[..]);
            // Plain RTP from the browser's address is not taken once keyed.
            assert_eq!(
                s.handle(now, Leg::A, Channel::Rtp, browser_addr(), &rtp(77, 4)),
                None
            );

            let out = s
                .handle(now, Leg::B, Channel::Rtp, phone_addr(), &rtp(5, 2))
                .expect("relayed to the browser");
            assert_eq!(
                (out.leg, out.to, out.channel),
                (Leg::A, browser_addr(), Channel::Rtp)
            );
            assert_eq!(
                &browser_rx.unprotect(Channel::Rtp, &out.data).unwrap()[..],
                &rtp(5, 2)[..]
            );
            // RTCP from the phone's RTCP port reaches the browser on its one port.
            let rtcp_from: SocketAddr = "198.51.100.20:6001".parse().unwrap();
            let out = s
                .handle(now, Leg::B, Channel::Rtcp, rtcp_from, &rtcp_sr(5))
                .expect("RTCP relayed");
            assert_eq!((out.to, out.channel), (browser_addr(), Channel::Rtp));
            assert_eq!(
                &browser_rx.unprotect(Channel::Rtcp, &out.data).unwrap()[..],
                &rtcp_sr(5)[..]
            );
            let stats = s.stats();
            assert!(stats.a.srtp && !stats.b.srtp);

            // A failed handshake ends the leg's media.
            s.dtls_failed(Leg::A);
            assert_eq!(
                s.handle(now, Leg::B, Channel::Rtp, phone_addr(), &rtp(5, 3)),
                None
            );
            assert!(!s.accepts_dtls(Leg::A, browser_addr()));
        }

        fn plain_offer() -> Vec<u8> {
            b"v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
              m=audio 4000 RTP/AVP 18 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:0 PCMU/8000\r\n\
              a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n\
              m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                .to_vec()
        }

        const TO_BROWSER: Security = Security {
            from_secure: false,
            to_secure: true,
            to_webrtc: true,
        };

        fn chromium_answer(setup: &str) -> Vec<u8> {
            format!(
                "v=0\r\no=- 99 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=msid-semantic: WMS\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
                 a=ice-ufrag:Ans1\r\na=ice-pwd:answerPasswordAnswerPass\r\na=ice-options:trickle\r\n\
                 a=fingerprint:{}\r\na=setup:{setup}\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
                 a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ssrc:42 cname:x\r\n\
                 m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n",
                BROWSER_FP.to_value()
            )
            .into_bytes()
        }

        #[test]
        fn the_host_offers_dtls_to_a_browser_callee() {
            let mut s = session();
            let to_browser = s
                .offer_from(
                    Leg::A,
                    &plain_offer(),
                    TO_BROWSER,
                    EncryptionPolicy::Optional,
                )
                .unwrap();
            let all = lines(&to_browser);
            let m_at = all.iter().position(|l| l.starts_with("m=")).unwrap();
            assert!(all[..m_at].contains(&"a=ice-lite".to_owned()));
            assert!(
                all[..m_at].contains(&"a=group:BUNDLE 0".to_owned()),
                "{all:?}"
            );
            assert_eq!(all[m_at], "m=audio 20002 UDP/TLS/RTP/SAVPF 0 101");
            for expected in [
                "a=setup:actpass".to_owned(),
                "a=mid:0".to_owned(),
                "a=rtcp-mux".to_owned(),
                "a=end-of-candidates".to_owned(),
                format!("a=fingerprint:{}", HOST_FP.to_value()),
                "a=candidate:1 1 udp 2130706431 203.0.113.1 20002 typ host".to_owned(),
                "a=mid:1".to_owned(),
            ] {
                assert!(all.contains(&expected), "{expected} missing from {all:?}");
            }
            let body = text(&to_browser);
            assert!(
                !body.contains("G729") && !body.contains("a=crypto"),
                "{body}"
            );
            assert!(body.contains("a=ice-ufrag:") && body.contains("a=ice-pwd:"));
            assert_eq!(s.poll_dtls_start(), None, "the role is not settled yet");

            let to_caller = s
                .answer_from(
                    Leg::B,
                    &chromium_answer("active"),
                    PLAIN,
                    EncryptionPolicy::Optional,
                )
                .unwrap();
            let body = text(&to_caller);
            let m = &Sdp::parse(&to_caller).unwrap().media[0];
            assert_eq!((m.port, m.proto.as_str()), (20000, "RTP/AVP"));
            for gone in [
                "a=ice",
                "a=fingerprint",
                "a=setup",
                "a=mid",
                "a=ssrc",
                "a=rtcp-mux",
                "a=msid",
            ] {
                assert!(!body.contains(gone), "{gone} leaked into\n{body}");
            }
            assert_eq!(s.poll_dtls_start(), None, "ICE has not checked yet");
            let (ufrag, pwd) = ice_of(&to_browser);
            let check = ice::binding_request(&format!("{ufrag}:Ans1"), &pwd, [6; 12], true);
            s.handle(Instant::now(), Leg::B, Channel::Rtp, browser_addr(), &check)
                .expect("the callee's check is answered");
            assert_eq!(
                s.poll_dtls_start(),
                Some(DtlsStart {
                    leg: Leg::B,
                    role: DtlsRole::Server,
                    peer: BROWSER_FP
                })
            );
        }

        #[test]
        fn browser_legs_need_a_certificate_srtp_and_g711() {
            let mut bare = MediaSession::new(LOCAL, Instant::now());
            assert!(matches!(
                bare.offer_from(Leg::A, &chromium_offer(), PLAIN, EncryptionPolicy::Optional),
                Err(Error::NotAcceptable(_))
            ));
            assert!(matches!(
                bare.offer_from(
                    Leg::A,
                    &plain_offer(),
                    TO_BROWSER,
                    EncryptionPolicy::Optional
                ),
                Err(Error::NotAcceptable(_))
            ));
            let mut s = session();
            assert!(matches!(
                s.offer_from(Leg::A, &chromium_offer(), PLAIN, EncryptionPolicy::Disabled),
                Err(Error::NotAcceptable(_))
            ));
            let opus_only =
                text(&chromium_offer()).replace(" 111 63 9 0 8 13 110 126", " 111 63 9 13 110");
            assert!(matches!(
                s.offer_from(
                    Leg::A,
                    opus_only.as_bytes(),
                    PLAIN,
                    EncryptionPolicy::Optional
                ),
                Err(Error::NotAcceptable(_))
            ));
            let no_fp = text(&chromium_offer()).replace("a=fingerprint:", "a=x-fingerprint:");
            assert!(matches!(
                s.offer_from(Leg::A, no_fp.as_bytes(), PLAIN, EncryptionPolicy::Optional),
                Err(Error::NotAcceptable(_))
            ));
            // A browser answering without DTLS is refused.
            s.offer_from(
                Leg::A,
                &plain_offer(),
                TO_BROWSER,
                EncryptionPolicy::Optional,
            )
            .unwrap();
            assert!(matches!(
                s.answer_from(
                    Leg::B,
                    &answer("RTP/AVP", None),
                    PLAIN,
                    EncryptionPolicy::Optional
                ),
                Err(Error::NotAcceptable(_))
            ));
            assert!(matches!(
                session().answer_here(Leg::A, &chromium_offer(), false, EncryptionPolicy::Disabled),
                Err(Error::NotAcceptable(_))
            ));
        }

        #[test]
        fn a_caller_the_host_answered_is_connected_to_a_browser() {
            let mut s = session();
            s.answer_here(Leg::A, &plain_offer(), false, EncryptionPolicy::Optional)
                .unwrap();
            let offer = s
                .offer_from_host_to(Leg::B, TO_BROWSER, EncryptionPolicy::Optional)
                .unwrap();
            let all = lines(&offer);
            assert!(
                all.contains(&"m=audio 20002 UDP/TLS/RTP/SAVPF 0 101".to_owned()),
                "{all:?}"
            );
            for expected in [
                "a=ice-lite",
                "a=group:BUNDLE 0",
                "a=setup:actpass",
                "a=mid:0",
                "a=rtcp-mux",
                "a=end-of-candidates",
            ] {
                assert!(
                    all.contains(&expected.to_owned()),
                    "{expected} missing from {all:?}"
                );
            }
            assert!(!text(&offer).contains("a=crypto"));
            s.answer_to_host_offer(
                Leg::B,
                &chromium_answer("passive"),
                PLAIN,
                EncryptionPolicy::Optional,
            )
            .unwrap();
            assert!(s.is_webrtc(Leg::B) && !s.is_webrtc(Leg::A));
            assert_eq!(s.poll_dtls_start(), None);
            let (ufrag, pwd) = ice_of(&offer);
            let check = ice::binding_request(&format!("{ufrag}:Ans1"), &pwd, [8; 12], true);
            s.handle(Instant::now(), Leg::B, Channel::Rtp, browser_addr(), &check)
                .unwrap();
            assert_eq!(
                s.poll_dtls_start(),
                Some(DtlsStart {
                    leg: Leg::B,
                    role: DtlsRole::Client,
                    peer: BROWSER_FP
                })
            );
            // A plain answer from the leg we offered DTLS to is refused.
            let mut s = session();
            s.answer_here(Leg::A, &plain_offer(), false, EncryptionPolicy::Optional)
                .unwrap();
            s.offer_from_host_to(Leg::B, TO_BROWSER, EncryptionPolicy::Optional)
                .unwrap();
            assert!(matches!(
                s.answer_to_host_offer(
                    Leg::B,
                    &answer("RTP/AVP", None),
                    PLAIN,
                    EncryptionPolicy::Optional
                ),
                Err(Error::NotAcceptable(_))
            ));
        }

        #[test]
        fn the_host_answers_a_browser_and_plays_to_it_once_keyed() {
            let mut s = session();
            let t0 = Instant::now();
            let answer = s
                .answer_here(Leg::A, &chromium_offer(), false, EncryptionPolicy::Optional)
                .unwrap();
            let all = lines(&answer);
            assert!(
                all.contains(&"m=audio 20000 UDP/TLS/RTP/SAVPF 0 126".to_owned()),
                "{all:?}"
            );
            for expected in [
                "a=ice-lite",
                "a=group:BUNDLE 0",
                "a=mid:0",
                "a=setup:passive",
                "a=rtcp-mux",
                "a=end-of-candidates",
            ] {
                assert!(
                    all.contains(&expected.to_owned()),
                    "{expected} missing from {all:?}"
                );
            }
            assert!(!text(&answer).contains("a=crypto") && !text(&answer).contains("opus"));
            assert_eq!(
                s.answered_format(Leg::A).and_then(|f| f.g711),
                Some(G711::Pcmu)
            );

            s.play(Leg::A, Prompt::beep(), t0).unwrap();
            assert_eq!(s.poll_transmit(t0), None, "nothing plays before the keys");
            let (ufrag, pwd) = ice_of(&answer);
            let check = ice::binding_request(&format!("{ufrag}:Brws"), &pwd, [7; 12], true);
            s.handle(t0, Leg::A, Channel::Rtp, browser_addr(), &check)
                .unwrap();
            let start = s.poll_dtls_start().unwrap();
            assert_eq!((start.leg, start.role), (Leg::A, DtlsRole::Server));
            let k = keys();
            s.install_dtls_keys(Leg::A, &k).unwrap();
            let mut browser_rx = SrtpReceiver::new(&k.local).unwrap();
            let later = t0 + Duration::from_millis(100);
            let out = s.poll_transmit(later).expect("the beep plays");
            assert_eq!(
                (out.leg, out.to, out.channel),
                (Leg::A, browser_addr(), Channel::Rtp)
            );
            let plain = browser_rx.unprotect(Channel::Rtp, &out.data).unwrap();
            assert_eq!(plain[1] & 0x7f, 0, "PCMU");

            // Connecting the browser to a phone: the phone gets plain RTP/AVP.
            let to_phone = s
                .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
                .unwrap();
            let m = &Sdp::parse(&to_phone).unwrap().media[0];
            assert_eq!(
                (m.proto.as_str(), m.formats.clone()),
                ("RTP/AVP", vec!["0".into(), "126".into()])
            );
        }
    }
}
