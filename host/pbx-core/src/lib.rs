//! The PBX's SIP logic: multi-tenant registrar and back-to-back user agent.
//!
//! # Design
//! Nothing here touches a socket, a clock or the database. A [`Shard`] is fed
//! datagrams/frames with [`Shard::handle`] and timer ticks with
//! [`Shard::handle_timeout`], both taking `now`; it answers through
//! [`Shard::poll_output`] (bytes to send, registrations and call records to persist)
//! and [`Shard::poll_timeout`]. The tokio layer in the `pbx` crate owns sockets,
//! timers and the store, and runs one shard per core; [`Shared::shard_for`] picks the
//! shard of a message from its Call-ID so a call's legs always meet in one shard.
//!
//! State shared by all shards (tenant directory, registrar bindings, nonce keys)
//! lives in [`Shared`], behind sharded maps and an atomically swapped snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use store::{Cdr, Directory, Registration, RegistrationChange, TransportKind};

/// A stream connection's id, assigned by the transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// The far end of a message: where it came from, or where it is to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
    /// For stream transports, the connection to use; `None` means "open one to
    /// `addr` if no connection to it exists".
    pub conn: Option<ConnId>,
}

/// One SIP message as it arrived: a UDP datagram or one framed stream message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub peer: Peer,
    /// The host address it arrived on.
    pub local: SocketAddr,
    pub bytes: Bytes,
}

/// What a shard asks the I/O layer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send these bytes to `dest`, from the listener bound to `local` when given.
    Transmit {
        dest: Peer,
        local: Option<SocketAddr>,
        bytes: Bytes,
    },
    /// Persist a registrar change (batched, behind the SIP path).
    Registration(RegistrationChange),
    /// Persist a finished call's record.
    Cdr(Cdr),
}

/// Registrar limits (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Contacts kept per address-of-record; a further one replaces the oldest.
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts: 5,
        }
    }
}

/// Digest algorithms offered in challenges, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

/// Everything the SIP core is configured with, parsed once at the edge.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The addresses the host advertises in Via/Contact, per transport. When a
    /// listener is bound to an unspecified address, the I/O layer fills in a
    /// concrete one.
    pub advertise: Vec<(TransportKind, SocketAddr)>,
    pub registrar: RegistrarConfig,
    /// Challenges offered, most preferred first (RFC 8760 §2.4).
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// How long a nonce is good for before `stale=true`.
    pub nonce_lifetime: Duration,
    /// RFC 3261 timer T1.
    pub t1: Duration,
    /// RFC 3261 timer T2.
    pub t2: Duration,
    /// RFC 3261 timer T4.
    pub t4: Duration,
    /// How long an unanswered outbound leg may ring.
    pub ring_timeout: Duration,
    /// Longest call allowed; the host hangs up both legs after it.
    pub max_call_duration: Duration,
    /// Sent as `Server`/`User-Agent` when set; nothing is sent otherwise.
    pub user_agent: Option<String>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            advertise: Vec::new(),
            registrar: RegistrarConfig::default(),
            digest_algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(60),
            max_call_duration: Duration::from_secs(4 * 3600),
            user_agent: None,
        }
    }
}

/// State shared by every shard.
pub struct Shared {
    _private: (),
}

impl Shared {
    /// Builds the shared state. `clock` anchors monotonic time to wall time: the
    /// instant and the Unix milliseconds it corresponds to.
    pub fn new(
        config: CoreConfig,
        directory: Directory,
        registrations: Vec<Registration>,
        clock: (Instant, i64),
        shards: usize,
    ) -> Arc<Shared> {
        let _ = (config, directory, registrations, clock, shards);
        todo!()
    }

    /// Swaps in a new tenant directory (provisioning changed); calls in progress
    /// keep going.
    pub fn replace_directory(&self, directory: Directory) {
        let _ = directory;
        todo!()
    }

    /// Which shard a raw message belongs to (by Call-ID); cheap, no full parse.
    pub fn shard_for(&self, bytes: &[u8]) -> usize {
        let _ = bytes;
        todo!()
    }

    pub fn shards(&self) -> usize {
        todo!()
    }
}

/// One shard of the SIP core: owns its transactions and calls.
pub struct Shard {
    _private: (),
}

impl Shard {
    pub fn new(index: usize, shared: Arc<Shared>) -> Shard {
        let _ = (index, shared);
        todo!()
    }

    /// Feeds one inbound message.
    pub fn handle(&mut self, now: Instant, inbound: Inbound) {
        let _ = (now, inbound);
        todo!()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When [`Shard::handle_timeout`] next wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next thing for the I/O layer to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// Ends every call (BYE to both legs) and emits their records; used on shutdown.
    pub fn shutdown(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Calls in progress in this shard.
    pub fn active_calls(&self) -> usize {
        todo!()
    }
}
