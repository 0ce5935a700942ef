//! The tokio layer: a port pool, one task per call that moves datagrams between
//! the call's four sockets through its [`MediaSession`], plays what the session
//! has due, and reports idle calls, finished prompts, key presses and
//! recordings.
//!
//! # Handles
//! [`CallMedia`] owns a call's media: dropping it stops the task and frees the
//! ports. [`MediaControl`] ([`CallMedia::control`]) is a cloneable handle to
//! the same session for what the host does on a leg it answered (play, record)
//! from other tasks, e.g. one that loads a prompt from storage first. Once the
//! call's media is closed its methods do nothing (`play` and `record` say so
//! with an error): nothing would be sent or heard.
//!
//! # Pacing
//! Each call's task sleeps until its session's `poll_timeout()` (the next
//! packet to play, or a key press to time out) and sends what is due from the
//! socket of the leg it goes to. The timer is one `Sleep` per task, reset
//! rather than re-created, so a playing call costs one timer-wheel entry and
//! 50 wake-ups a second; tokio's wheel has millisecond resolution, so packets
//! leave a millisecond or two after they are due, never before. How late they
//! left is kept in a histogram ([`MediaRelay::pacing`]); `benches/playback.rs`
//! measures it for hundreds of calls. Tasks per call rather than one timer task
//! for all: the sends of calls due at the same instant then spread over every
//! worker thread instead of queueing on one (the bench with `workers=1` shows
//! the tail that costs).
//!
//! # Events
//! [`MediaRelay::new`] reports on an unbounded channel (kept for its current
//! callers); [`MediaRelay::with_event_capacity`] on a bounded one, where an
//! event that finds it full is dropped and counted
//! ([`MediaRelay::events_dropped`]) and an idle report is retried a second
//! later. Each session holds at most
//! [`MAX_SESSION_EVENTS`](crate::session::MAX_SESSION_EVENTS) events and
//! reports at most [`MAX_DIGITS_PER_SECOND`](crate::dtmf::MAX_DIGITS_PER_SECOND)
//! digits a second, so a caller cannot flood either channel.
//!
//! # Browser legs
//! A browser leg (see [`crate::webrtc`]) uses only its RTP socket. The call's
//! task answers its STUN checks and relays its SRTP through the session like
//! any other datagram; DTLS records from the address ICE checked go to a
//! handshake task of the leg's own ([`crate::dtls`]), started when the
//! session asks ([`MediaSession::poll_dtls_start`]), which installs the keys
//! in the session or reports [`MediaEvent::DtlsFailed`]. The relay makes one
//! DTLS certificate when it is built; every call's SDP carries its
//! fingerprint. Handshake tasks end with their call.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use parking_lot::Mutex;
use std::io::IoSliceMut;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::dtls::{self, DTLS_QUEUE, DtlsIdentity, LegConn, PeerAddr};
use crate::error::{Error, Result};
use crate::prompt::Prompt;
use crate::record::{RecordSpec, Recording};
use crate::rtp::Channel;
use crate::session::{
    AnsweredFormat, CallMediaStats, DtlsStart, EncryptionPolicy, Leg, LocalPorts, MediaSession,
    Security, SessionEvent, Transmit,
};
use crate::webrtc::{self, Demux};

/// Relay configuration, parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// Address put in SDP; defaults to `bind_ip`, required when that is unspecified.
    pub advertise_ip: Option<IpAddr>,
    /// Lowest port of the range (inclusive).
    pub port_min: u16,
    /// Highest port of the range (inclusive).
    pub port_max: u16,
    /// A call with no media for this long is reported idle.
    pub idle_timeout: Duration,
}

/// Identifies a call within one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Something the owner of the relay should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// No media arrived on the call since `since` for at least the idle timeout;
    /// the owner usually hangs the call up. Reported once per idle period.
    Idle {
        /// The call.
        call: CallId,
        /// When media last arrived.
        since: Instant,
    },
    /// The last packet of a prompt played on a leg the host answered was sent
    /// ([`CallMedia::play`]).
    PromptFinished {
        /// The call.
        call: CallId,
        /// The leg.
        leg: Leg,
    },
    /// A key press (RFC 4733) arrived on a leg the host answered.
    Digit {
        /// The call.
        call: CallId,
        /// The leg.
        leg: Leg,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// How long the key was held.
        duration_ms: u32,
    },
    /// The announcement to both legs ([`CallMedia::announce`]) has been
    /// played.
    AnnouncementFinished {
        /// The call.
        call: CallId,
    },
    /// A recording on a leg the host answered ended ([`CallMedia::record`]).
    RecordingFinished {
        /// The call.
        call: CallId,
        /// The leg.
        leg: Leg,
        /// The audio and why it ended.
        recording: Recording,
    },
    /// The DTLS handshake on a browser leg failed or timed out: that leg
    /// gets no media (the owner usually hangs the call up).
    DtlsFailed {
        /// The call.
        call: CallId,
        /// The browser leg.
        leg: Leg,
    },
}

impl MediaEvent {
    fn from_session(call: CallId, event: SessionEvent) -> Self {
        match event {
            SessionEvent::PromptFinished { leg } => MediaEvent::PromptFinished { call, leg },
            SessionEvent::Digit {
                leg,
                digit,
                duration_ms,
            } => MediaEvent::Digit {
                call,
                leg,
                digit,
                duration_ms,
            },
            SessionEvent::AnnouncementFinished => MediaEvent::AnnouncementFinished { call },
            SessionEvent::RecordingFinished { leg, recording } => MediaEvent::RecordingFinished {
                call,
                leg,
                recording,
            },
        }
    }
}

/// Width of one bucket of the pacing histogram.
const PACING_BUCKET: Duration = Duration::from_micros(25);

/// Buckets of the pacing histogram: 50 ms; the last also holds anything later.
const PACING_BUCKETS: usize = 2000;

/// How late played packets left: the instant `send_to` returned minus the
/// instant the packet was due, counted in 25 µs buckets up to 50 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacing {
    counts: Vec<u64>,
    max: Duration,
}

impl Pacing {
    /// Packets counted.
    pub fn packets(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The lateness at or below which a fraction `q` (0.0–1.0) of the packets
    /// left, to the bucket's upper edge; `None` before any packet.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let total = self.packets();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                if i + 1 == self.counts.len() {
                    break; // the last bucket is open-ended
                }
                return Some((PACING_BUCKET * (i as u32 + 1)).min(self.max));
            }
        }
        Some(self.max)
    }

    /// The latest packet's lateness.
    pub fn max(&self) -> Duration {
        self.max
    }
}

struct PacingHistogram {
    counts: Box<[AtomicU64]>,
    max_ns: AtomicU64,
}

impl PacingHistogram {
    fn new() -> Self {
        Self {
            counts: (0..PACING_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }

    fn record(&self, late: Duration) {
        let ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (ns / PACING_BUCKET.as_nanos() as u64).min(PACING_BUCKETS as u64 - 1);
        self.counts[bucket as usize].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Pacing {
        Pacing {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
        }
    }
}

enum EventSink {
    Unbounded(mpsc::UnboundedSender<MediaEvent>),
    Bounded(mpsc::Sender<MediaEvent>),
}

/// What every call task of a relay shares.
struct Shared {
    events: EventSink,
    events_dropped: AtomicU64,
    pacing: PacingHistogram,
}

impl Shared {
    /// Queues `event`; false (and counted) when a bounded channel is full. A
    /// receiver that is gone takes nothing and is not an error.
    fn emit(&self, event: MediaEvent) -> bool {
        let closed = match &self.events {
            EventSink::Unbounded(tx) => tx.send(event).is_err(),
            EventSink::Bounded(tx) => match tx.try_send(event) {
                Ok(()) => false,
                Err(mpsc::error::TrySendError::Closed(_)) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.events_dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            },
        };
        if closed {
            tracing::debug!("media event receiver gone");
        }
        true
    }
}

struct Pool {
    free: Mutex<VecDeque<u16>>,
}

/// One reserved RTP/RTCP port pair; returns to the pool when dropped.
struct PortPair {
    rtp: u16,
    pool: Arc<Pool>,
}

impl Drop for PortPair {
    fn drop(&mut self) {
        self.pool.free.lock().push_back(self.rtp);
    }
}

struct RelayInner {
    config: MediaConfig,
    advertise: IpAddr,
    /// The certificate of every DTLS handshake on browser legs.
    identity: Arc<DtlsIdentity>,
    pool: Arc<Pool>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
}

/// Owns the media port range and opens calls.
#[derive(Clone)]
pub struct MediaRelay {
    inner: Arc<RelayInner>,
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("config", &self.inner.config)
            .field("free_port_pairs", &self.free_port_pairs())
            .finish()
    }
}

impl MediaRelay {
    /// A relay over `config`'s port range, and the (unbounded) receiver of its
    /// events.
    pub fn new(config: MediaConfig) -> Result<(Self, mpsc::UnboundedReceiver<MediaEvent>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((Self::build(config, EventSink::Unbounded(tx))?, rx))
    }

    /// A relay over `config`'s port range, and the receiver of its events,
    /// which holds at most `capacity` of them (see the module docs).
    pub fn with_event_capacity(
        config: MediaConfig,
        capacity: usize,
    ) -> Result<(Self, mpsc::Receiver<MediaEvent>)> {
        if capacity == 0 {
            return Err(Error::Config("event capacity must be positive"));
        }
        let (tx, rx) = mpsc::channel(capacity);
        Ok((Self::build(config, EventSink::Bounded(tx))?, rx))
    }

    fn build(config: MediaConfig, events: EventSink) -> Result<Self> {
        let advertise = config.advertise_ip.unwrap_or(config.bind_ip);
        if advertise.is_unspecified() {
            return Err(Error::Config(
                "advertise_ip is needed when bind_ip is unspecified",
            ));
        }
        if config.port_min == 0 || config.port_max <= config.port_min {
            return Err(Error::Config("port range must be non-empty and above 0"));
        }
        if config.idle_timeout.is_zero() {
            return Err(Error::Config("idle_timeout must be positive"));
        }
        let first = config.port_min + config.port_min % 2;
        let free: VecDeque<u16> = (first..config.port_max).step_by(2).collect();
        if free.is_empty() {
            return Err(Error::Config("port range holds no even/odd pair"));
        }
        let inner = RelayInner {
            config,
            advertise,
            identity: Arc::new(DtlsIdentity::generate()?),
            pool: Arc::new(Pool {
                free: Mutex::new(free),
            }),
            next_id: AtomicU64::new(1),
            shared: Arc::new(Shared {
                events,
                events_dropped: AtomicU64::new(0),
                pacing: PacingHistogram::new(),
            }),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// How late the packets played so far left (all calls).
    pub fn pacing(&self) -> Pacing {
        self.inner.shared.pacing.snapshot()
    }

    /// Events dropped because the bounded event channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.inner.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// The host's DTLS certificate, whose fingerprint every SDP to a
    /// browser carries.
    pub fn dtls_identity(&self) -> &DtlsIdentity {
        &self.inner.identity
    }

    /// Port pairs currently free.
    pub fn free_port_pairs(&self) -> usize {
        self.inner.pool.free.lock().len()
    }

    fn allocate(&self) -> Result<(PortPair, [UdpSocket; 2])> {
        let ip = self.inner.config.bind_ip;
        let tries = self.free_port_pairs();
        for _ in 0..tries {
            let Some(port) = self.inner.pool.free.lock().pop_front() else {
                break;
            };
            let pair = PortPair {
                rtp: port,
                pool: self.inner.pool.clone(),
            };
            // A port taken by another process is skipped and retried later.
            if let Ok(sockets) = bind_pair(ip, port) {
                return Ok((pair, sockets));
            }
        }
        Err(Error::PortsExhausted)
    }

    /// Opens a call: reserves a port pair per leg and starts its relay task.
    /// Must be called within a tokio runtime.
    pub fn open_call(&self) -> Result<CallMedia> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("open_call needs a tokio runtime"))?;
        let (pa, sa) = self.allocate()?;
        let (pb, sb) = self.allocate()?;
        let local = LocalPorts {
            ip: self.inner.advertise,
            a: pa.rtp,
            b: pb.rtp,
        };
        let id = CallId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let now = now();
        let session =
            MediaSession::new(local, now).with_dtls_fingerprint(self.inner.identity.fingerprint());
        let session = Arc::new(Mutex::new(session));
        let wake = Arc::new(Notify::new());
        let closed = Arc::new(AtomicBool::new(false));
        let task = runtime.spawn(run_call(CallTask {
            id,
            session: session.clone(),
            sockets: [sa, sb].map(|pair| pair.map(Arc::new)),
            identity: self.inner.identity.clone(),
            idle_timeout: self.inner.config.idle_timeout,
            shared: self.inner.shared.clone(),
            wake: wake.clone(),
            _ports: [pa, pb],
        }));
        Ok(CallMedia {
            control: MediaControl {
                id,
                session,
                wake,
                closed,
            },
            task,
        })
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> Result<[UdpSocket; 2]> {
    let bind = |p: u16| -> Result<UdpSocket> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, p))?;
        s.set_nonblocking(true)?;
        Ok(UdpSocket::from_std(s)?)
    };
    let rtp = bind(port)?;
    let rtcp = bind(port.checked_add(1).ok_or(Error::PortsExhausted)?)?;
    Ok([rtp, rtcp])
}

/// The media of one call. Dropping it (or [`CallMedia::close`]) stops the relay
/// task; the ports return to the pool once the task has ended.
pub struct CallMedia {
    control: MediaControl,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("id", &self.control.id)
            .finish_non_exhaustive()
    }
}

impl CallMedia {
    /// The call's id (as reported in [`MediaEvent`]s).
    pub fn id(&self) -> CallId {
        self.control.id
    }

    fn session(&self) -> parking_lot::MutexGuard<'_, MediaSession> {
        self.control.session.lock()
    }

    /// A cloneable handle for playing and recording on this call from other
    /// tasks (see the module docs).
    pub fn control(&self) -> MediaControl {
        self.control.clone()
    }

    /// Our address and the ports facing each leg.
    pub fn local(&self) -> LocalPorts {
        self.session().local()
    }

    /// See [`MediaSession::offer_from`]. Wakes the call's task, which starts
    /// a browser leg's handshake when the session asks for it.
    pub fn offer_from(
        &self,
        leg: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let out = self.session().offer_from(leg, sdp, security, policy)?;
        self.control.wake.notify_one();
        Ok(out)
    }

    /// See [`MediaSession::answer_from`].
    pub fn answer_from(
        &self,
        leg: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        let out = self.session().answer_from(leg, sdp, security, policy)?;
        self.control.wake.notify_one();
        Ok(out)
    }

    /// See [`MediaSession::answer_here`].
    pub fn answer_here(
        &self,
        leg: Leg,
        sdp: &[u8],
        from_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session().answer_here(leg, sdp, from_secure, policy)
    }

    /// See [`MediaSession::offer_from_host`].
    pub fn offer_from_host(
        &self,
        to: Leg,
        to_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session().offer_from_host(to, to_secure, policy)
    }

    /// See [`MediaSession::offer_from_host_to`] (a browser callee).
    pub fn offer_from_host_to(
        &self,
        to: Leg,
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session().offer_from_host_to(to, security, policy)
    }

    /// See [`MediaSession::answer_to_host_offer`]; what played or recorded on
    /// the other leg stops without events.
    pub fn answer_to_host_offer(
        &self,
        from: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<()> {
        self.session()
            .answer_to_host_offer(from, sdp, security, policy)?;
        self.control.wake.notify_one();
        Ok(())
    }

    /// See [`MediaSession::answer_pickup`]; what played to the caller stops
    /// without events.
    pub fn answer_pickup(
        &self,
        caller: Option<(&[u8], bool)>,
        picker: &[u8],
        picker_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
        let answers = self
            .session()
            .answer_pickup(caller, picker, picker_secure, policy)?;
        self.control.wake.notify_one();
        Ok(answers)
    }

    /// See [`MediaSession::answered_format`].
    pub fn answered_format(&self, leg: Leg) -> Option<AnsweredFormat> {
        self.session().answered_format(leg)
    }

    /// See [`MediaControl::play`].
    pub fn play(&self, leg: Leg, prompt: Prompt) -> Result<()> {
        self.control.play(leg, prompt)
    }

    /// See [`MediaControl::stop_playing`].
    pub fn stop_playing(&self, leg: Leg) -> bool {
        self.control.stop_playing(leg)
    }

    /// See [`MediaControl::is_playing`].
    pub fn is_playing(&self, leg: Leg) -> bool {
        self.control.is_playing(leg)
    }

    /// See [`MediaControl::record`].
    pub fn record(&self, leg: Leg, spec: RecordSpec) -> Result<()> {
        self.control.record(leg, spec)
    }

    /// See [`MediaControl::stop_recording`].
    pub fn stop_recording(&self, leg: Leg) -> bool {
        self.control.stop_recording(leg)
    }

    /// See [`MediaSession::take_recording`].
    pub fn take_recording(&self, leg: Leg) -> Option<crate::Recording> {
        let now = tokio::time::Instant::now().into_std();
        self.session().take_recording(leg, now)
    }

    /// See [`MediaSession::record_call`].
    pub fn record_call(&self, max: Duration) {
        let now = tokio::time::Instant::now().into_std();
        self.session().record_call(max, now);
    }

    /// See [`MediaSession::take_call_recording`].
    pub fn take_call_recording(&self) -> Option<crate::Recording> {
        self.session().take_call_recording()
    }

    /// See [`MediaSession::hold`].
    pub fn hold(&self, on: bool) {
        self.session().hold(on);
    }

    /// See [`MediaControl::announce`].
    pub fn announce(&self, prompts: &[Prompt], record: Option<Duration>) -> Result<()> {
        self.control.announce(prompts, record)
    }

    /// Counters of both legs.
    pub fn stats(&self) -> CallMediaStats {
        self.session().stats()
    }

    /// When media last arrived.
    pub fn idle_since(&self) -> Instant {
        self.session().idle_since()
    }

    /// Stops relaying and frees the ports.
    pub fn close(self) {}
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.control.closed.store(true, Ordering::Release);
        self.task.abort();
    }
}

/// A cloneable handle to a call's session for what the host does on a leg it
/// answered: play prompts and record. `Send` and `Sync`; see the module docs
/// for what it does once the call's media is closed.
#[derive(Clone)]
pub struct MediaControl {
    id: CallId,
    session: Arc<Mutex<MediaSession>>,
    /// Tells the call's task that the session's timeout changed or it has
    /// events to report.
    wake: Arc<Notify>,
    /// Set when the [`CallMedia`] is dropped.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for MediaControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaControl")
            .field("id", &self.id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl MediaControl {
    /// The call's id (as reported in [`MediaEvent`]s).
    pub fn id(&self) -> CallId {
        self.id
    }

    /// Whether the call's media is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn open(&self) -> Result<parking_lot::MutexGuard<'_, MediaSession>> {
        if self.is_closed() {
            return Err(Error::Protocol("the call's media is closed"));
        }
        Ok(self.session.lock())
    }

    /// Plays `prompt` on `leg`, which the host answered, after what is queued
    /// there; [`MediaEvent::PromptFinished`] follows its last packet. See
    /// [`MediaSession::play`] for the errors; `Protocol` once the call's media
    /// is closed.
    pub fn play(&self, leg: Leg, prompt: Prompt) -> Result<()> {
        self.open()?.play(leg, prompt, now())?;
        self.wake.notify_one();
        Ok(())
    }

    /// See [`MediaSession::stop_playing`].
    pub fn stop_playing(&self, leg: Leg) -> bool {
        let stopped = self.open().is_ok_and(|mut s| s.stop_playing(leg));
        self.wake.notify_one();
        stopped
    }

    /// See [`MediaSession::is_playing`]; false once the call's media is closed.
    pub fn is_playing(&self, leg: Leg) -> bool {
        self.open().is_ok_and(|s| s.is_playing(leg))
    }

    /// Records what `leg`, which the host answered, sends;
    /// [`MediaEvent::RecordingFinished`] follows its end. See
    /// [`MediaSession::record`] for the errors; `Protocol` once the call's
    /// media is closed.
    pub fn record(&self, leg: Leg, spec: RecordSpec) -> Result<()> {
        self.open()?.record(leg, spec, now())?;
        self.wake.notify_one();
        Ok(())
    }

    /// See [`MediaSession::announce`]; [`MediaEvent::AnnouncementFinished`]
    /// follows its end. `Protocol` once the call's media is closed.
    pub fn announce(&self, prompts: &[Prompt], record: Option<Duration>) -> Result<()> {
        self.open()?.announce(prompts, record, now())?;
        self.wake.notify_one();
        Ok(())
    }

    /// See [`MediaSession::hold`]; nothing once the call's media is closed.
    pub fn hold(&self, on: bool) {
        if let Ok(mut s) = self.open() {
            s.hold(on);
        }
    }

    /// Ends the recording on `leg` early; returns whether one was running.
    /// [`MediaEvent::RecordingFinished`] follows (not once the call's media
    /// is closed: then nothing runs).
    pub fn stop_recording(&self, leg: Leg) -> bool {
        let stopped = self.open().is_ok_and(|mut s| s.stop_recording(leg, now()));
        self.wake.notify_one();
        stopped
    }

    /// See [`MediaSession::is_recording`]; false once the call's media is
    /// closed.
    pub fn is_recording(&self, leg: Leg) -> bool {
        self.open().is_ok_and(|s| s.is_recording(leg))
    }
}

struct CallTask {
    id: CallId,
    session: Arc<Mutex<MediaSession>>,
    /// RTP and RTCP per leg; a browser leg's handshake task shares its RTP
    /// socket.
    sockets: [[Arc<UdpSocket>; 2]; 2],
    // One certificate for the relay, shared by its calls.
    identity: Arc<DtlsIdentity>,
    idle_timeout: Duration,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    // Dropped after the sockets (field order), so a freed port is closed.
    _ports: [PortPair; 2],
}

const BUF: usize = 2048;

/// Datagrams one read asks a socket for. A read that gets fewer has emptied
/// the socket (`recvmmsg` on a non-blocking socket stops at the first
/// datagram not there), so the task forgets the socket's readiness at once
/// instead of learning it from a second, empty read: at 50 packets a second
/// per socket nearly every read gets one, and the empty read was a system
/// call per packet relayed.
const BATCH: usize = 2;

thread_local! {
    /// The receive buffers of the call tasks that run on this thread. A task
    /// borrows them only between reading datagrams and handling them, never
    /// across an await, so one set per runtime thread serves every call.
    static RECV_BUF: RefCell<[[u8; BUF]; BATCH]> = const { RefCell::new([[0; BUF]; BATCH]) };
}

/// Reads up to [`BATCH`] datagrams from `socket`, the i-th into `bufs[i]`
/// with its length (cut to [`BUF`]) and source in `got[i]` (`None` for one
/// whose source is not an IP address), and returns how many were read: zero
/// when the readiness was spurious; an error only when nothing was read.
fn read_batch(
    socket: &UdpSocket,
    bufs: &mut [[u8; BUF]; BATCH],
    got: &mut [Option<(usize, SocketAddr)>; BATCH],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n = 0;
    let read = socket.try_io(tokio::io::Interest::READABLE, || {
        // Fresh headers per read, not kept with the buffers: nix does not
        // reset an address's length between calls, and the kernel writes the
        // last source's length there, which would cut a longer (IPv6) source
        // short on the next read from another relay's socket.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let received = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for (i, msg) in received.enumerate() {
            got[i] = msg
                .address
                .as_ref()
                .and_then(socket_addr)
                .map(|from| (msg.bytes.min(BUF), from));
            n = i + 1;
        }
        if n < BATCH {
            // Empty now: tokio clears the readiness (unless an event came
            // since it was observed) and the task waits for the next datagram.
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match read {
        Err(e) if n == 0 && e.kind() != std::io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(n),
    }
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// How long an idle report that found the bounded event channel full waits
/// before it is tried again.
const IDLE_RETRY: Duration = Duration::from_secs(1);

impl CallTask {
    async fn send(&self, t: &Transmit) {
        let socket =
            &self.sockets[usize::from(t.leg == Leg::B)][usize::from(t.channel == Channel::Rtcp)];
        // Sent at once when the socket has room, as it nearly always has; only
        // a full send buffer waits, in a boxed future (inline, the wait made
        // every call task larger for a case that rarely comes).
        let sent = match socket.try_send_to(&t.data, t.to) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Box::pin(socket.send_to(&t.data, t.to)).await
            }
            other => other,
        };
        if let Err(e) = sent {
            tracing::debug!(call = self.id.0, error = %e, "media send failed");
        }
    }

    /// Passes the session's events on.
    fn report(&self, session: &mut MediaSession) {
        while let Some(event) = session.poll_event() {
            let recording = matches!(event, SessionEvent::RecordingFinished { .. });
            if !self.shared.emit(MediaEvent::from_session(self.id, event)) && recording {
                tracing::warn!(
                    call = self.id.0,
                    "a finished recording was dropped: the event channel is full"
                );
            }
        }
    }

    /// Sends what the session has due and runs its timeouts.
    async fn on_timeout(&self) {
        let now = now();
        loop {
            let t = self.session.lock().poll_transmit(now);
            let Some(t) = t else { break };
            self.send(&t).await;
            if let Some(due) = t.due {
                let sent = tokio::time::Instant::now().into_std();
                self.shared
                    .pacing
                    .record(sent.saturating_duration_since(due));
            }
        }
        let mut session = self.session.lock();
        session.handle_timeout(now);
        self.report(&mut session);
    }

    /// Starts the handshakes the session asks for, replacing any earlier
    /// one on the same leg.
    fn start_dtls(&self, session: &mut MediaSession, legs: &mut [Option<DtlsLeg>; 2]) {
        while let Some(start) = session.poll_dtls_start() {
            let (tx, rx) = mpsc::channel(DTLS_QUEUE);
            let peer = SessionPeer {
                session: self.session.clone(),
                leg: start.leg,
            };
            let socket = self.sockets[usize::from(start.leg == Leg::B)][0].clone();
            let conn = Arc::new(LegConn::new(socket, rx, Box::new(peer)));
            let task = tokio::spawn(run_dtls(
                start,
                conn,
                self.identity.clone(),
                self.session.clone(),
                self.shared.clone(),
                self.id,
            ));
            legs[usize::from(start.leg == Leg::B)] = Some(DtlsLeg { inbox: tx, task });
        }
    }

    /// Passes a DTLS record from `from` to `leg`'s handshake when the session
    /// says it belongs there; drops it otherwise (or when the queue is full).
    fn pass_dtls(&self, legs: &[Option<DtlsLeg>; 2], leg: Leg, from: SocketAddr, data: &[u8]) {
        if !self.session.lock().accepts_dtls(leg, from) {
            return;
        }
        if let Some(d) = &legs[usize::from(leg == Leg::B)] {
            let _ = d.inbox.try_send(bytes::Bytes::copy_from_slice(data));
        }
    }
}

/// A browser leg's handshake task and its inbox; dropping it ends the task.
struct DtlsLeg {
    inbox: mpsc::Sender<bytes::Bytes>,
    task: JoinHandle<()>,
}

impl Drop for DtlsLeg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address ICE latched on a leg, read from the session for each send.
struct SessionPeer {
    session: Arc<Mutex<MediaSession>>,
    leg: Leg,
}

impl PeerAddr for SessionPeer {
    fn peer(&self) -> Option<SocketAddr> {
        self.session.lock().dtls_peer(self.leg)
    }
}

/// One leg's handshake: installs the keys, or ends the leg's media and
/// reports [`MediaEvent::DtlsFailed`]. After success the association is kept
/// (and read, so a peer's retransmission is answered) until the call ends or
/// the peer closes it.
async fn run_dtls(
    start: DtlsStart,
    conn: Arc<LegConn>,
    identity: Arc<DtlsIdentity>,
    session: Arc<Mutex<MediaSession>>,
    shared: Arc<Shared>,
    call: CallId,
) {
    let leg = start.leg;
    let done = dtls::handshake(conn, &identity, start.peer, start.role).await;
    let installed = done.and_then(|(conn, keys)| {
        session.lock().install_dtls_keys(leg, &keys)?;
        Ok(conn)
    });
    match installed {
        Ok(conn) => {
            tracing::debug!(call = call.0, ?leg, "DTLS-SRTP keys installed");
            let mut buf = vec![0u8; BUF];
            while conn.read(&mut buf, None).await.is_ok() {}
        }
        Err(e) => {
            tracing::info!(call = call.0, ?leg, error = %e, "DTLS handshake failed");
            session.lock().dtls_failed(leg);
            shared.emit(MediaEvent::DtlsFailed { call, leg });
        }
    }
}

/// The first of the call's four sockets (RTP and RTCP of leg A, then of leg
/// B) found readable, polling from `turn` round so that none starves the
/// others. Polling their readiness stores nothing in the call's task, where
/// four `readable()` futures took 600 bytes.
fn poll_readable(
    sockets: &[[Arc<UdpSocket>; 2]; 2],
    turn: usize,
    cx: &mut Context<'_>,
) -> Poll<(Leg, Channel, std::io::Result<()>)> {
    const SOCKETS: [(Leg, Channel); 4] = [
        (Leg::A, Channel::Rtp),
        (Leg::A, Channel::Rtcp),
        (Leg::B, Channel::Rtp),
        (Leg::B, Channel::Rtcp),
    ];
    for i in 0..SOCKETS.len() {
        let (leg, channel) = SOCKETS[(turn + i) % SOCKETS.len()];
        let socket = &sockets[leg.index()][usize::from(channel == Channel::Rtcp)];
        if let Poll::Ready(r) = socket.poll_recv_ready(cx) {
            return Poll::Ready((leg, channel, r));
        }
    }
    Poll::Pending
}

async fn run_call(task: CallTask) {
    // Which socket is polled first, turned round each wait.
    let mut turn = 0usize;
    // The task waits for whichever socket is readable and then reads it into
    // its thread's buffer (`RECV_BUF`), rather than holding a read and a
    // buffer open on each socket: 8 KiB less per call in progress.
    let mut reported: Option<Instant> = None;
    let mut dtls_legs: [Option<DtlsLeg>; 2] = [None, None];
    let mut idle_not_before = tokio::time::Instant::now();
    // Both timers are reset, not re-created, each turn.
    let idle = tokio::time::sleep(Duration::ZERO);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(idle, timer);
    let (mut idle_at, mut timer_at) = (None, None);
    // One waiter on the handle's wake-ups, renewed only when it fires (a new
    // one each turn would join and leave the waiter list per packet).
    let mut woken = std::pin::pin!(task.wake.notified());
    loop {
        let (since, due) = {
            let s = task.session.lock();
            (s.idle_since(), s.poll_timeout())
        };
        let armed = reported != Some(since);
        let idle_deadline =
            (tokio::time::Instant::from_std(since) + task.idle_timeout).max(idle_not_before);
        if armed && idle_at != Some(idle_deadline) {
            idle.as_mut().reset(idle_deadline);
            idle_at = Some(idle_deadline);
        }
        let due = due.map(tokio::time::Instant::from_std);
        if let Some(d) = due
            && timer_at != Some(d)
        {
            timer.as_mut().reset(d);
            timer_at = Some(d);
        }
        turn = turn.wrapping_add(1);
        let (leg, channel, ready) = tokio::select! {
            r = std::future::poll_fn(|cx| poll_readable(&task.sockets, turn, cx)) => r,
            () = &mut timer, if due.is_some() => {
                timer_at = None;
                task.on_timeout().await;
                continue;
            }
            () = &mut idle, if armed => {
                idle_at = None;
                if task.shared.emit(MediaEvent::Idle { call: task.id, since }) {
                    reported = Some(since);
                } else {
                    idle_not_before = tokio::time::Instant::now() + IDLE_RETRY;
                }
                continue;
            }
            () = &mut woken => {
                woken.set(task.wake.notified());
                let mut session = task.session.lock();
                task.report(&mut session);
                task.start_dtls(&mut session, &mut dtls_legs);
                continue;
            }
        };
        if ready.is_err() {
            continue;
        }
        let socket = &task.sockets[leg.index()][usize::from(channel == Channel::Rtcp)];
        // Read and handled with no await in between, so the thread's buffers
        // are free again before another call's task runs on this thread.
        let mut out: [Option<Transmit>; BATCH] = Default::default();
        RECV_BUF.with_borrow_mut(|bufs| {
            let mut got = [None; BATCH];
            // Readiness can be spurious; receive errors on UDP (e.g. ICMP port
            // unreachable surfaced) are not fatal either.
            let n = read_batch(socket, bufs, &mut got).unwrap_or(0);
            for (i, slot) in got[..n].iter().enumerate() {
                let Some((len, from)) = *slot else { continue };
                let data = &bufs[i][..len];
                if channel == Channel::Rtp && webrtc::demux(data) == Demux::Dtls {
                    task.pass_dtls(&dtls_legs, leg, from, data);
                    continue;
                }
                let mut session = task.session.lock();
                out[i] = session.handle(now(), leg, channel, from, data);
                task.report(&mut session);
                // An ICE check may have given a client-role handshake its peer.
                task.start_dtls(&mut session, &mut dtls_legs);
            }
        });
        for t in out.iter().flatten() {
            task.send(t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice;
    use crate::sdes::{self, KeyMaterial};
    use crate::sdp::Sdp;
    use crate::srtp::{SrtpReceiver, SrtpSender};

    fn config(port_min: u16, port_max: u16) -> MediaConfig {
        MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: None,
            port_min,
            port_max,
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn sdp(port: u16, proto: &str, crypto: Option<String>) -> Vec<u8> {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s.into_bytes()
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    async fn recv(sock: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("datagram expected")
            .unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn config_is_checked() {
        let mut c = config(21000, 21001);
        c.bind_ip = "0.0.0.0".parse().unwrap();
        assert!(matches!(MediaRelay::new(c), Err(Error::Config(_))));
        assert!(matches!(
            MediaRelay::new(config(21001, 21002)),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            MediaRelay::new(config(21010, 21000)),
            Err(Error::Config(_))
        ));
        let (relay, _rx) = MediaRelay::new(config(21001, 21006)).unwrap();
        assert_eq!(relay.free_port_pairs(), 2); // 21002 and 21004
        assert!(
            matches!(relay.open_call(), Err(Error::Config(_))),
            "no runtime"
        );
    }

    #[tokio::test]
    async fn ports_are_reused_and_exhaustion_is_an_error() {
        let (relay, _events) = MediaRelay::new(config(21100, 21107)).unwrap();
        assert_eq!(relay.free_port_pairs(), 4);
        for _ in 0..50 {
            let c1 = relay.open_call().unwrap();
            let c2 = relay.open_call().unwrap();
            assert!(matches!(relay.open_call(), Err(Error::PortsExhausted)));
            let l = c1.local();
            assert!(l.a % 2 == 0 && l.b % 2 == 0 && l.a != l.b);
            c1.close();
            drop(c2);
            for _ in 0..100 {
                if relay.free_port_pairs() == 4 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(relay.free_port_pairs(), 4);
        }
    }

    #[tokio::test]
    async fn plain_leg_a_to_srtp_leg_b_end_to_end() {
        let (relay, _events) = MediaRelay::new(config(21200, 21299)).unwrap();
        let call = relay.open_call().unwrap();
        let local = call.local();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a_port = a.local_addr().unwrap().port();
        let b_port = b.local_addr().unwrap().port();

        // A is plain on an insecure transport; B is reached over TLS.
        let to_b = call
            .offer_from(
                Leg::A,
                &sdp(a_port, "RTP/AVP", None),
                Security {
                    from_secure: false,
                    to_secure: true,
                    to_webrtc: false,
                },
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let offer_b = Sdp::parse(&to_b).unwrap();
        assert_eq!(offer_b.media[0].port, local.b);
        let line = offer_b.media[0]
            .cryptos()
            .into_iter()
            .find(|c| c.suite == "AES_CM_128_HMAC_SHA1_80")
            .unwrap();
        let relay_to_b = sdes::negotiate(std::slice::from_ref(&line))
            .unwrap()
            .unwrap()
            .remote;
        let b_key = KeyMaterial::generate(crate::Suite::AesCm128HmacSha1_80);
        let to_a = call
            .answer_from(
                Leg::B,
                &sdp(b_port, "RTP/AVP", Some(b_key.to_attr(line.tag).to_value())),
                Security {
                    from_secure: true,
                    to_secure: false,
                    to_webrtc: false,
                },
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let answer_a = Sdp::parse(&to_a).unwrap();
        assert_eq!(answer_a.media[0].port, local.a);
        assert!(
            answer_a.media[0].cryptos().is_empty(),
            "no keys to the plain leg"
        );

        let mut b_tx = SrtpSender::new(&b_key).unwrap();
        let mut b_rx = SrtpReceiver::new(&relay_to_b).unwrap();
        let relay_a = SocketAddr::new(local.ip, local.a);
        let relay_b = SocketAddr::new(local.ip, local.b);
        for seq in [1u16, 2, 4] {
            a.send_to(&rtp(0xaaaa, seq), relay_a).await.unwrap();
            let got = recv(&b).await;
            assert_ne!(got, rtp(0xaaaa, seq), "B must get SRTP");
            let plain = b_rx
                .unprotect(Channel::Rtp, &got)
                .expect("decrypts with B's key");
            assert_eq!(&plain[..], &rtp(0xaaaa, seq)[..]);

            let enc = b_tx.protect(Channel::Rtp, &rtp(0xbbbb, seq)).unwrap();
            b.send_to(&enc, relay_b).await.unwrap();
            assert_eq!(recv(&a).await, rtp(0xbbbb, seq));
        }
        // A forged packet towards B's port is dropped and counted.
        let mut forged = b_tx
            .protect(Channel::Rtp, &rtp(0xbbbb, 5))
            .unwrap()
            .to_vec();
        forged[30] ^= 1;
        b.send_to(&forged, relay_b).await.unwrap();
        // A marker packet after it shows the relay has processed the forged one.
        let enc = b_tx.protect(Channel::Rtp, &rtp(0xbbbb, 6)).unwrap();
        b.send_to(&enc, relay_b).await.unwrap();
        assert_eq!(recv(&a).await, rtp(0xbbbb, 6));

        let st = call.stats();
        assert_eq!(st.a.packets_in, 3);
        assert_eq!(st.a.bytes_in, 3 * 172);
        assert_eq!(st.b.packets_out, 3);
        assert_eq!(st.b.bytes_out, 3 * (172 + 10));
        assert_eq!(st.b.packets_in, 5);
        assert_eq!(st.a.packets_out, 4);
        assert_eq!(st.b.srtp_auth_failures, 1);
        assert_eq!(st.a.packets_lost, 1);
        assert_eq!(st.b.packets_lost, 2, "3 and the forged 5");
        assert_eq!(st.a.latched, Some(a.local_addr().unwrap()));
        assert!(st.b.srtp && !st.a.srtp);
    }

    #[tokio::test]
    async fn a_burst_queued_on_a_socket_is_relayed_in_full() {
        // The test's runtime has one thread: the burst is queued on the
        // relay's socket before the call's task runs, so its reads take
        // several datagrams at a time and the last one takes fewer.
        let (relay, _events) = MediaRelay::new(config(21920, 21929)).unwrap();
        let call = relay.open_call().unwrap();
        let local = call.local();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plain = Security {
            from_secure: false,
            to_secure: false,
            to_webrtc: false,
        };
        let port = |s: &UdpSocket| s.local_addr().unwrap().port();
        call.offer_from(
            Leg::A,
            &sdp(port(&a), "RTP/AVP", None),
            plain,
            EncryptionPolicy::Disabled,
        )
        .unwrap();
        call.answer_from(
            Leg::B,
            &sdp(port(&b), "RTP/AVP", None),
            plain,
            EncryptionPolicy::Disabled,
        )
        .unwrap();
        let relay_a = SocketAddr::new(local.ip, local.a);
        for burst in [1u16, 7, 2] {
            let first = call.stats().a.packets_in as u16 + 1;
            let seqs = first..first + burst;
            for seq in seqs.clone() {
                a.send_to(&rtp(0xaaaa, seq), relay_a).await.unwrap();
            }
            for seq in seqs {
                assert_eq!(recv(&b).await, rtp(0xaaaa, seq), "burst of {burst}");
            }
        }
        assert_eq!(call.stats().a.packets_in, 10);
        assert_eq!(call.stats().b.packets_out, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_call_is_reported_once() {
        let (relay, mut events) = MediaRelay::new(config(21300, 21309)).unwrap();
        let call = relay.open_call().unwrap();
        let opened = tokio::time::Instant::now();
        call.offer_from(
            Leg::A,
            &sdp(4000, "RTP/AVP", None),
            Security {
                from_secure: false,
                to_secure: false,
                to_webrtc: false,
            },
            EncryptionPolicy::Optional,
        )
        .unwrap();
        let event = events.recv().await.unwrap();
        assert_eq!(
            event,
            MediaEvent::Idle {
                call: call.id(),
                since: call.idle_since()
            }
        );
        assert!(opened.elapsed() >= Duration::from_secs(30));
        assert!(opened.elapsed() < Duration::from_secs(31));
        // Not reported again while it stays idle.
        let again = tokio::time::timeout(Duration::from_secs(3600), events.recv()).await;
        assert!(again.is_err());
    }

    #[tokio::test]
    async fn the_host_plays_paced_packets_and_hears_key_presses() {
        let (relay, mut events) =
            MediaRelay::with_event_capacity(config(21400, 21409), 16).unwrap();
        let call = relay.open_call().unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = caller.local_addr().unwrap().port();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n"
        );
        let answer = call
            .answer_here(Leg::A, offer.as_bytes(), false, EncryptionPolicy::Optional)
            .unwrap();
        assert_eq!(Sdp::parse(&answer).unwrap().media[0].formats, ["8", "101"]);
        assert!(matches!(
            call.play(Leg::B, Prompt::beep()),
            Err(Error::Protocol(_))
        ));

        let started = tokio::time::Instant::now();
        call.play(
            Leg::A,
            Prompt::dtmf('5', Duration::from_millis(200)).unwrap(),
        )
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..10 {
            got.push(recv(&caller).await);
        }
        let last = started.elapsed();
        assert!(
            last >= Duration::from_millis(180),
            "paced, not a burst: {last:?}"
        );
        assert!(last < Duration::from_secs(2), "{last:?}");
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.len(), 172);
            assert_eq!(p[1], if i == 0 { 0x80 | 8 } else { 8 });
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let seq0 = u16::from_be_bytes([got[0][2], got[0][3]]);
            let ts0 = u32::from_be_bytes([got[0][4], got[0][5], got[0][6], got[0][7]]);
            assert_eq!(seq, seq0.wrapping_add(i as u16));
            assert_eq!(ts, ts0.wrapping_add(160 * i as u32));
        }
        let finished = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            finished,
            MediaEvent::PromptFinished {
                call: call.id(),
                leg: Leg::A
            }
        );
        let pacing = relay.pacing();
        assert_eq!(pacing.packets(), 10);
        assert!(pacing.percentile(0.5).unwrap() <= pacing.max());

        // The caller presses 7: updates, then the end three times.
        let to = SocketAddr::new(call.local().ip, call.local().a);
        for (seq, end, duration) in [
            (1u16, false, 400u16),
            (2, true, 640),
            (3, true, 640),
            (4, true, 640),
        ] {
            let mut p = vec![0x80, 101];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&4000u32.to_be_bytes());
            p.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
            p.extend_from_slice(&[7, if end { 0x8a } else { 0x0a }]);
            p.extend_from_slice(&duration.to_be_bytes());
            caller.send_to(&p, to).await.unwrap();
        }
        let digit = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            digit,
            MediaEvent::Digit {
                call: call.id(),
                leg: Leg::A,
                digit: '7',
                duration_ms: 80
            }
        );
        assert_eq!(call.stats().a.digits, 1);
        assert_eq!(relay.events_dropped(), 0);
    }

    /// A call whose caller (a loopback socket) the host answered with PCMA
    /// and telephone events.
    async fn answered_call(relay: &MediaRelay) -> (CallMedia, UdpSocket, SocketAddr) {
        let call = relay.open_call().unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = caller.local_addr().unwrap().port();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n"
        );
        call.answer_here(Leg::A, offer.as_bytes(), false, EncryptionPolicy::Optional)
            .unwrap();
        let to = SocketAddr::new(call.local().ip, call.local().a);
        (call, caller, to)
    }

    async fn next_event<T>(events: &mut mpsc::Receiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event")
            .expect("the relay is alive")
    }

    fn spec(max: Duration) -> RecordSpec {
        RecordSpec {
            max,
            beep: false,
            finish_key: Some('#'),
            silence: None,
        }
    }

    #[tokio::test]
    async fn the_host_records_the_caller_until_the_finish_key() {
        use crate::g711::G711;
        use crate::record::{
            RecordingEnd,
            tests::{packets, through, tone},
        };
        let (relay, mut events) =
            MediaRelay::with_event_capacity(config(21500, 21509), 16).unwrap();
        let (call, caller, to) = answered_call(&relay).await;
        assert!(matches!(
            call.record(Leg::B, spec(Duration::from_secs(10))),
            Err(Error::Protocol(_))
        ));
        call.record(Leg::A, spec(Duration::from_secs(10))).unwrap();
        let pcm = tone(500);
        for p in packets(G711::Pcma, 8, 0x0a0b_0c0d, 1000, &pcm) {
            caller.send_to(&p, to).await.unwrap();
        }
        // The caller presses # (the end three times).
        for seq in [100u16, 101, 102] {
            let mut p = vec![0x80, 101];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&9000u32.to_be_bytes());
            p.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
            p.extend_from_slice(&[11, 0x8a, 3, 32]);
            caller.send_to(&p, to).await.unwrap();
        }
        let MediaEvent::RecordingFinished {
            call: id,
            leg,
            recording,
        } = next_event(&mut events).await
        else {
            panic!("the recording first, and no digit");
        };
        assert_eq!((id, leg), (call.id(), Leg::A));
        assert_eq!(recording.end, RecordingEnd::FinishKey);
        assert_eq!(recording.samples, through(G711::Pcma, &pcm));
        assert_eq!(call.stats().a.digits, 1);

        // Stopped from outside: the task reports it without waiting for media.
        call.record(Leg::A, spec(Duration::from_secs(10))).unwrap();
        assert!(call.stop_recording(Leg::A));
        let MediaEvent::RecordingFinished { recording, .. } = next_event(&mut events).await else {
            panic!("a recording");
        };
        assert_eq!(
            (recording.end, recording.samples.len()),
            (RecordingEnd::Stopped, 0)
        );
        assert!(!call.stop_recording(Leg::A));
        assert_eq!(relay.events_dropped(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recording_without_media_ends_at_max() {
        let (relay, mut events) =
            MediaRelay::with_event_capacity(config(21600, 21609), 16).unwrap();
        let (call, _caller, _) = answered_call(&relay).await;
        let started = tokio::time::Instant::now();
        call.record(Leg::A, spec(Duration::from_secs(20))).unwrap();
        // The paused clock jumps to the deadline.
        let MediaEvent::RecordingFinished { recording, .. } = events.recv().await.unwrap() else {
            panic!("a recording");
        };
        assert_eq!(recording.end, crate::RecordingEnd::MaxLength);
        assert!(recording.samples.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test]
    async fn a_control_handle_plays_from_another_task_and_is_harmless_after_close() {
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<MediaControl>();
        let (relay, mut events) =
            MediaRelay::with_event_capacity(config(21700, 21709), 16).unwrap();
        let (call, caller, _) = answered_call(&relay).await;
        let control = call.control();
        assert_eq!(control.id(), call.id());
        let task = tokio::spawn({
            let control = control.clone();
            async move {
                // As if the prompt were loaded from storage first.
                tokio::task::yield_now().await;
                control.play(Leg::A, Prompt::silence(Duration::from_millis(60))?)
            }
        });
        task.await.unwrap().unwrap();
        for _ in 0..3 {
            let p = recv(&caller).await;
            assert_eq!((p.len(), p[1] & 0x7f), (172, 8));
        }
        assert_eq!(
            next_event(&mut events).await,
            MediaEvent::PromptFinished {
                call: call.id(),
                leg: Leg::A
            }
        );
        control
            .record(Leg::A, spec(Duration::from_secs(30)))
            .unwrap();
        assert!(control.is_recording(Leg::A));
        control.play(Leg::A, Prompt::beep()).unwrap();
        assert!(control.is_playing(Leg::A));

        call.close();
        assert!(control.is_closed());
        assert!(!control.is_playing(Leg::A) && !control.is_recording(Leg::A));
        assert!(matches!(
            control.play(Leg::A, Prompt::beep()),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            control.record(Leg::A, spec(Duration::from_secs(1))),
            Err(Error::Protocol(_))
        ));
        assert!(!control.stop_playing(Leg::A) && !control.stop_recording(Leg::A));
        // Nothing is sent once the task is gone, and the ports are freed
        // although the handle lives on.
        let mut buf = [0u8; 2048];
        for _ in 0..100 {
            if relay.free_port_pairs() == 5 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(relay.free_port_pairs(), 5);
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(100), caller.recv_from(&mut buf)).await
        {
            // packets sent before the close
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), caller.recv_from(&mut buf))
                .await
                .is_err()
        );
        drop(control);
    }

    #[tokio::test]
    async fn a_caller_answered_at_the_host_is_connected_to_the_callee() {
        let (relay, _events) = MediaRelay::new(config(21800, 21809)).unwrap();
        let (call, caller, to_a) = answered_call(&relay).await;
        let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let callee_port = callee.local_addr().unwrap().port();
        call.play(Leg::A, Prompt::beep()).unwrap();
        let played = recv(&caller).await;
        let host_ssrc = crate::rtp::ssrc(&played, Channel::Rtp).unwrap();

        let offer = call
            .offer_from_host(Leg::B, false, EncryptionPolicy::Optional)
            .unwrap();
        let offer = Sdp::parse(&offer).unwrap();
        assert_eq!(offer.media[0].formats, ["8", "101"]);
        assert_eq!(offer.media[0].port, call.local().b);
        let answer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {callee_port} RTP/AVP 8 101\r\n"
        );
        call.answer_to_host_offer(
            Leg::B,
            answer.as_bytes(),
            Security {
                from_secure: false,
                to_secure: false,
                to_webrtc: false,
            },
            EncryptionPolicy::Optional,
        )
        .unwrap();
        assert!(!call.is_playing(Leg::A));

        let to_b = SocketAddr::new(call.local().ip, call.local().b);
        let mut from_a = rtp(0xaaaa, 1);
        from_a[1] = 8;
        caller.send_to(&from_a, to_a).await.unwrap();
        assert_eq!(recv(&callee).await, from_a);
        let mut from_b = rtp(0xbbbb, 1);
        from_b[1] = 8;
        callee.send_to(&from_b, to_b).await.unwrap();
        // Prompt packets sent before the answer may still be queued.
        loop {
            let got = recv(&caller).await;
            if crate::rtp::ssrc(&got, Channel::Rtp) != Some(host_ssrc) {
                assert_eq!(got, from_b);
                break;
            }
        }
    }

    /// A browser in the test: a UDP socket whose DTLS records go to a
    /// `webrtc-dtls` client and whose other datagrams to `media`.
    struct Browser {
        socket: Arc<UdpSocket>,
        identity: DtlsIdentity,
        media: mpsc::Receiver<Vec<u8>>,
        dtls_inbox: Option<mpsc::Receiver<bytes::Bytes>>,
        _demux: tokio::task::JoinHandle<()>,
    }

    struct Fixed(SocketAddr);

    impl PeerAddr for Fixed {
        fn peer(&self) -> Option<SocketAddr> {
            Some(self.0)
        }
    }

    impl Browser {
        async fn new() -> Self {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let (dtls_tx, dtls_rx) = mpsc::channel(64);
            let (media_tx, media) = mpsc::channel(64);
            let reader = socket.clone();
            let demux = tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok((n, _)) = reader.recv_from(&mut buf).await {
                    let data = &buf[..n];
                    let _ = match webrtc::demux(data) {
                        Demux::Dtls => dtls_tx
                            .send(bytes::Bytes::copy_from_slice(data))
                            .await
                            .is_ok(),
                        _ => media_tx.send(data.to_vec()).await.is_ok(),
                    };
                }
            });
            Self {
                socket,
                identity: DtlsIdentity::generate().unwrap(),
                media,
                dtls_inbox: Some(dtls_rx),
                _demux: demux,
            }
        }

        /// Chromium's offer, trimmed to what matters, with `fingerprint`.
        fn offer(&self, fingerprint: crate::Fingerprint) -> Vec<u8> {
            format!(
                "v=0\r\no=- 461173 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\n\
                 a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Brws\r\na=ice-pwd:brwsPasswordBrwsPassword\r\n\
                 a=fingerprint:{}\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
                 a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:126 telephone-event/8000\r\n",
                fingerprint.to_value()
            )
            .into_bytes()
        }

        /// The ICE check a browser makes with the credentials of `answer`;
        /// returns the address the relay says it saw.
        async fn check(&mut self, answer: &[u8], relay: SocketAddr) -> Option<SocketAddr> {
            let sdp = Sdp::parse(answer).unwrap();
            let m = &sdp.media[0];
            let ufrag = m.attr("ice-ufrag").flatten().unwrap();
            let pwd = m.attr("ice-pwd").flatten().unwrap();
            let req = ice::binding_request(&format!("{ufrag}:Brws"), pwd, [5; 12], true);
            self.socket.send_to(&req, relay).await.unwrap();
            let resp = self.next_media().await;
            ice::verify_success(&resp, pwd)
        }

        async fn next_media(&mut self) -> Vec<u8> {
            tokio::time::timeout(Duration::from_secs(5), self.media.recv())
                .await
                .expect("datagram expected")
                .unwrap()
        }

        /// The DTLS client handshake with the relay at `relay`, whose
        /// certificate must have `fingerprint`.
        async fn handshake(
            &mut self,
            relay: SocketAddr,
            fingerprint: crate::Fingerprint,
        ) -> Result<(webrtc_dtls::conn::DTLSConn, crate::DtlsKeys)> {
            let inbox = self.dtls_inbox.take().unwrap();
            let conn = Arc::new(LegConn::new(
                self.socket.clone(),
                inbox,
                Box::new(Fixed(relay)),
            ));
            dtls::handshake(conn, &self.identity, fingerprint, crate::DtlsRole::Client).await
        }
    }

    fn srtp_context(keys: &KeyMaterial) -> webrtc_srtp::context::Context {
        webrtc_srtp::context::Context::new(
            keys.key(),
            keys.salt(),
            keys.suite().profile(),
            None,
            None,
        )
        .unwrap()
    }

    fn answer_fingerprint(answer: &[u8]) -> crate::Fingerprint {
        let sdp = Sdp::parse(answer).unwrap();
        crate::Fingerprint::parse(sdp.media[0].attr("fingerprint").flatten().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_browser_leg_handshakes_dtls_and_relays_srtp_both_ways() {
        let (relay, _events) = MediaRelay::new(config(21900, 21909)).unwrap();
        let call = relay.open_call().unwrap();
        let local = call.local();
        let relay_a = SocketAddr::new("127.0.0.1".parse().unwrap(), local.a);
        let relay_b = SocketAddr::new("127.0.0.1".parse().unwrap(), local.b);
        let mut browser = Browser::new().await;
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let phone_port = phone.local_addr().unwrap().port();
        let browser_offer = browser.offer(browser.identity.fingerprint());

        let to_phone = call
            .offer_from(
                Leg::A,
                &browser_offer,
                Security::default(),
                EncryptionPolicy::Optional,
            )
            .unwrap();
        assert_eq!(Sdp::parse(&to_phone).unwrap().media[0].proto, "RTP/AVP");
        let answer = call
            .answer_from(
                Leg::B,
                &sdp(phone_port, "RTP/AVP", None),
                Security::default(),
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let relay_fp = answer_fingerprint(&answer);
        assert_eq!(relay_fp, relay.dtls_identity().fingerprint());

        let seen = browser.check(&answer, relay_a).await;
        assert_eq!(seen, Some(browser.socket.local_addr().unwrap()));
        let (dtls_conn, keys) = browser
            .handshake(relay_a, relay_fp)
            .await
            .expect("handshake");
        let mut to_relay = srtp_context(&keys.local);
        let mut from_relay = srtp_context(&keys.remote);

        // The relay installs its keys when its side of the handshake ends,
        // which may be just after ours: send as a stream does, until the
        // phone hears one.
        let mut buf = [0u8; 2048];
        let mut heard = None;
        for seq in 1..=50u16 {
            let packet = to_relay.encrypt_rtp(&rtp(0xB0B, seq)).unwrap();
            browser.socket.send_to(&packet, relay_a).await.unwrap();
            let wait = Duration::from_millis(100);
            if let Ok(Ok((n, _))) = tokio::time::timeout(wait, phone.recv_from(&mut buf)).await {
                heard = Some((seq, buf[..n].to_vec()));
                break;
            }
        }
        let (seq, plain) = heard.expect("the phone hears the browser");
        assert_eq!(
            plain,
            rtp(0xB0B, seq),
            "decrypted by the relay, sent as plain RTP"
        );

        phone.send_to(&rtp(0xFEED, 1), relay_b).await.unwrap();
        let srtp = browser.next_media().await;
        assert_ne!(srtp, rtp(0xFEED, 1), "encrypted toward the browser");
        let plain = from_relay.decrypt_rtp(&srtp).unwrap();
        assert_eq!(&plain[..], &rtp(0xFEED, 1)[..]);
        let stats = call.stats();
        assert!(stats.a.srtp && stats.a.packets_out >= 1 && stats.b.packets_out >= 1);
        drop(dtls_conn);
    }

    #[tokio::test]
    async fn a_browser_whose_certificate_is_not_its_fingerprint_gets_no_media() {
        let (relay, mut events) = MediaRelay::new(config(21910, 21919)).unwrap();
        let call = relay.open_call().unwrap();
        let relay_a = SocketAddr::new("127.0.0.1".parse().unwrap(), call.local().a);
        let mut browser = Browser::new().await;
        let impostor = DtlsIdentity::generate().unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let phone_port = phone.local_addr().unwrap().port();
        call.offer_from(
            Leg::A,
            &browser.offer(impostor.fingerprint()),
            Security::default(),
            EncryptionPolicy::Optional,
        )
        .unwrap();
        let answer = call
            .answer_from(
                Leg::B,
                &sdp(phone_port, "RTP/AVP", None),
                Security::default(),
                EncryptionPolicy::Optional,
            )
            .unwrap();
        assert!(browser.check(&answer, relay_a).await.is_some());
        let relay_fp = answer_fingerprint(&answer);
        assert!(browser.handshake(relay_a, relay_fp).await.is_err());
        let event = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("an event")
            .unwrap();
        assert_eq!(
            event,
            MediaEvent::DtlsFailed {
                call: call.id(),
                leg: Leg::A
            }
        );
        assert!(!call.stats().a.srtp);
    }

    #[test]
    fn pacing_percentiles() {
        let h = PacingHistogram::new();
        assert_eq!(h.snapshot().percentile(0.5), None);
        for us in [10u64, 30, 30, 40, 1000] {
            h.record(Duration::from_micros(us));
        }
        h.record(Duration::from_secs(1));
        let p = h.snapshot();
        assert_eq!(p.packets(), 6);
        assert_eq!(p.percentile(0.0), Some(Duration::from_micros(25)));
        assert_eq!(p.percentile(0.5), Some(Duration::from_micros(50)));
        assert_eq!(p.percentile(0.8), Some(Duration::from_micros(1025)));
        assert_eq!(p.percentile(1.0), Some(Duration::from_secs(1)));
        assert_eq!(p.max(), Duration::from_secs(1));
    }
}
