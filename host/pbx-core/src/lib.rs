//! The PBX's SIP logic: multi-tenant registrar, back-to-back user agent and
//! message-waiting notifier (`subscription.rs`).
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
//!
//! Tenants, extensions, registrations and call records are `pbx-model`'s types
//! (re-exported here where callers need them); this crate does not depend on
//! the store.

mod app;
mod auth;
mod call;
pub mod decision;
mod directory;
mod error;
mod live_calls;
mod media;
mod msg;
mod pickup;
mod registrar;
mod route;
mod shard;
mod subscription;
#[cfg(test)]
mod tests;
mod transfer;
mod trunk_reg;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use app::MAILBOX_FULL_TAG;
use bytes::Bytes;
pub use error::Error;
pub use live_calls::CallSummary;
pub use media::{
    CallMediaHandle, CdrMedia, HostMediaFull, LegMedia, MediaAnchor, MediaEncryption, MediaLeg,
    MediaNotice, MediaRefusal, MediaSecurity,
};
pub use model::{CallerDevice, Cdr, Directory, Registration, RegistrationChange, TransportKind};
use parking_lot::RwLock;
pub use pickup::{Handoff, PICKUP_CODE, PickupGroups};
pub use route::{
    CallEvent, DialResult, Gather, HostMedia, MAX_CALL_STEPS, MAX_GATHER_DIGITS, MAX_RECORDING,
    MAX_SILENCE, PromptRef, Record, RingStep, RouteDecision, RouteRequest, Routing, Tone,
    TrunkEntry, Trunks,
};
pub use shard::Shard;
pub use subscription::MESSAGE_SUMMARY;
pub use trunk_reg::{RegState, RegTimers, TrunkRegConfig, TrunkRegistration};

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
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub peer: Peer,
    /// The host address it arrived on.
    pub local: SocketAddr,
    pub bytes: Bytes,
    /// Set only on a message one shard hands to another ([`Output::Forward`]):
    /// a call-pickup INVITE with the identity its digest proved. `None` for
    /// everything that arrives from the network.
    pub handoff: Option<Handoff>,
    /// The client's address when a proxy the host trusts for it (a
    /// cluster's front, `[guard] proxies`) relayed the request: what
    /// authentication failures, successes and network restrictions are
    /// judged by. `None` when it came straight from its client.
    pub client: Option<IpAddr>,
}

impl Inbound {
    /// A message as it arrived from the network.
    pub fn new(peer: Peer, local: SocketAddr, bytes: Bytes) -> Inbound {
        Inbound {
            peer,
            local,
            bytes,
            handoff: None,
            client: None,
        }
    }
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
    /// A call was answered: its record so far (ending when it was answered),
    /// for a cluster to record as in progress until [`Output::Cdr`] comes (so
    /// a node that dies leaves a record of each call it dropped). Only with
    /// [`CoreConfig::track_answered`].
    Answered(Cdr),
    /// Decide where a new call goes, then call [`Shard::route_decided`] (only with
    /// [`Routing::External`]). [`decision::decide`] takes the decision, with the
    /// dial plan, policies and counters the I/O layer provides.
    Route(RouteRequest),
    /// Credentials were presented and did not pass: a wrong password, or a user
    /// or domain that does not exist (the sender got the usual challenge). Never
    /// raised for the first, credential-less challenge of a login. Feeds the
    /// brute-force bans.
    AuthFailure {
        /// The client's address ([`Inbound::client`], else the sender's).
        source: IpAddr,
        /// The request's domain, lower-case.
        domain: String,
        /// The username the credentials named (empty when unreadable).
        user: String,
        method: String,
        /// The tenant the domain belongs to, when it names one.
        tenant: Option<model::TenantId>,
    },
    /// A request from `source` passed digest authentication.
    Authenticated { source: IpAddr },
    /// Queue this message on shard `shard`, which holds the call it belongs
    /// to (call pickup, [`PICKUP_CODE`]).
    Forward { shard: usize, inbound: Inbound },
}

/// Registrar limits (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Contacts kept per address-of-record; a further one replaces the oldest.
    pub max_contacts: usize,
    /// This node's id in a cluster, written with every binding it makes
    /// (empty on a single node).
    pub node: String,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts: 5,
            node: String::new(),
        }
    }
}

/// Limits on message-waiting subscriptions (RFC 3842 `message-summary` over
/// RFC 6665): how long one lasts, and how many are kept. A phone subscribes
/// only to its own extension's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Shortest subscription granted; a shorter one gets 423 with Min-Expires.
    pub min_expires: u32,
    /// Longest subscription granted; a longer request is cut to this.
    pub max_expires: u32,
    /// What a SUBSCRIBE without Expires gets.
    pub default_expires: u32,
    /// Subscriptions kept per extension; a further one replaces the oldest
    /// (a rebooted phone is not locked out by the subscription it forgot).
    pub max_per_extension: usize,
    /// Subscriptions kept per tenant: its share of the total. A tenant at its
    /// share gets 480 and nobody else notices.
    pub max_per_tenant: usize,
    /// Subscriptions kept in all; beyond it, 503.
    pub max_total: usize,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_per_extension: 8,
            max_per_tenant: 1000,
            max_total: 20_000,
        }
    }
}

pub use model::{DigestAlgorithm, DigestAlgorithms};

/// Everything the SIP core is configured with, parsed once at the edge.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The addresses the host advertises in Via/Contact, per transport. When a
    /// listener is bound to an unspecified address, the I/O layer fills in a
    /// concrete one.
    pub advertise: Vec<(TransportKind, SocketAddr)>,
    pub registrar: RegistrarConfig,
    /// Message-waiting subscriptions.
    pub subscriptions: SubscriptionConfig,
    /// Challenges offered, one header each, in this order (RFC 8760 §2.4: a
    /// client answers the first it supports), to phones whose tenant or
    /// extension has no choice of its own. MD5 alone by default: every phone
    /// answers it, while some (Debian's baresip among them) give up when a
    /// SHA-256 challenge is offered too. The provider turns SHA-256 on per
    /// tenant or per extension for phones known to handle it.
    pub digest_algorithms: DigestAlgorithms,
    /// How long a nonce is good for before `stale=true`.
    pub nonce_lifetime: Duration,
    /// The key nonces are made with: shared by the nodes of a cluster so any
    /// of them checks what another issued; random per process when none.
    pub nonce_key: Option<[u8; 32]>,
    /// The key short-lived browser credentials are checked with (derived
    /// from the data directory's secret, as the admin API that issues them
    /// derives it); `None` accepts none.
    pub ephemeral_key: Option<digest_auth::EphemeralKey>,
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
    /// Who decides where calls go.
    pub routing: Routing,
    /// Headers of a caller's INVITE that plugins may read (`call-info`), by
    /// name, at most [`MAX_EXPOSED_HEADERS`]; none by default.
    pub exposed_headers: Vec<String>,
    /// Announce each answered call ([`Output::Answered`]): a node of a
    /// cluster records its calls in progress. Off on a single node.
    pub track_answered: bool,
}

/// Most INVITE headers a provider may expose to plugins.
pub const MAX_EXPOSED_HEADERS: usize = 16;
/// Longest exposed header value handed on, in bytes (cut at a character
/// boundary).
pub const MAX_EXPOSED_VALUE: usize = 1024;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            advertise: Vec::new(),
            registrar: RegistrarConfig::default(),
            subscriptions: SubscriptionConfig::default(),
            digest_algorithms: DigestAlgorithms::md5(),
            // A challenge is answered within seconds; a phone that reuses a
            // nonce later is told `stale=true` and answers anew, unprompted.
            // The replay table holds what a minute issues (60,000 nonces at
            // 1,000 challenged calls a second), and a client without `qop`
            // can replay its request for a minute at most.
            nonce_lifetime: Duration::from_secs(60),
            nonce_key: None,
            ephemeral_key: None,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(60),
            max_call_duration: Duration::from_secs(4 * 3600),
            user_agent: None,
            track_answered: false,
            routing: Routing::Builtin,
            exposed_headers: Vec::new(),
        }
    }
}

/// State shared by every shard.
pub struct Shared {
    pub(crate) config: CoreConfig,
    directory: RwLock<Arc<directory::Index>>,
    trunks: RwLock<Arc<Trunks>>,
    pub(crate) bindings: registrar::Bindings,
    /// Message-waiting subscriptions of every shard, and the mailbox counts
    /// they report.
    pub(crate) subscriptions: subscription::Subscriptions,
    pub(crate) nonces: digest_auth::Nonces,
    /// Monotonic instant and the Unix milliseconds it corresponds to.
    pub(crate) clock: (Instant, i64),
    shards: usize,
    /// Anchors the media of new calls; calls keep their SDP as is without one.
    media: std::sync::OnceLock<Arc<dyn MediaAnchor>>,
    /// Ringing calls and pinned Call-IDs, for call pickup.
    pub(crate) pickup: pickup::Board,
    /// Calls in progress on every shard (routing, ringing or answered).
    calls_up: AtomicUsize,
    /// Set while the node drains: new calls, registrations and probes are
    /// refused with 503 (a front sends them to another node); dialogs in
    /// progress go on.
    draining: AtomicBool,
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
        let key = config.nonce_key.unwrap_or_else(|| {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            key
        });
        let lifetime_ms = i64::try_from(config.nonce_lifetime.as_millis()).unwrap_or(i64::MAX);
        Arc::new(Shared {
            nonces: digest_auth::Nonces::new(key, lifetime_ms),
            config,
            directory: RwLock::new(Arc::new(directory::Index::build(&directory))),
            trunks: RwLock::new(Arc::new(Trunks::default())),
            bindings: registrar::Bindings::restore(registrations),
            subscriptions: subscription::Subscriptions::default(),
            clock,
            shards: shards.max(1),
            media: std::sync::OnceLock::new(),
            pickup: pickup::Board::default(),
            calls_up: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        })
    }

    /// Calls in progress on every shard: routing, ringing or answered.
    pub fn calls_up(&self) -> usize {
        self.calls_up.load(Ordering::Relaxed)
    }

    pub(crate) fn call_started(&self) {
        self.calls_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_ended(&self) {
        // Never below zero, whatever the order of updates.
        let _ = self
            .calls_up
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Starts or stops draining (see [`Shared::draining`]).
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Whether new calls, registrations and probes are refused with 503
    /// while the calls in progress finish.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Bindings this node holds itself (not those it knows of other
    /// nodes), unexpired.
    pub fn own_bindings(&self, now: Instant) -> usize {
        self.bindings
            .count_of_node(&self.config.registrar.node, self.unix_ms(now))
    }

    /// Sets the media anchor, once, before calls arrive; `false` when one was
    /// already set.
    pub fn set_media_anchor(&self, anchor: Arc<dyn MediaAnchor>) -> bool {
        self.media.set(anchor).is_ok()
    }

    /// Sets where call pickup reads the tenants' ring groups, once; `false`
    /// when already set. Without it nothing can be picked up.
    pub fn set_pickup_groups(&self, groups: Arc<dyn PickupGroups>) -> bool {
        self.pickup.set_groups(groups)
    }

    pub(crate) fn media_anchor(&self) -> Option<Arc<dyn MediaAnchor>> {
        self.media.get().cloned()
    }

    /// Swaps in a new tenant directory (provisioning changed); calls in progress
    /// keep going.
    pub fn replace_directory(&self, directory: Directory) {
        let index = Arc::new(directory::Index::build(&directory));
        *self.directory.write() = index;
    }

    pub(crate) fn index(&self) -> Arc<directory::Index> {
        self.directory.read().clone()
    }

    /// Swaps in new tenant trunks and inbound numbers.
    pub fn replace_trunks(&self, trunks: Trunks) {
        *self.trunks.write() = Arc::new(trunks);
    }

    pub(crate) fn trunks(&self) -> Arc<Trunks> {
        self.trunks.read().clone()
    }

    /// Which shard a raw message belongs to (by Call-ID); cheap, no full parse.
    /// Call-IDs the host made for outbound legs name their shard.
    pub fn shard_for(&self, bytes: &[u8]) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let Some(call_id) = sip::peek_call_id(bytes) else {
            return 0;
        };
        if let Some(n) = own_shard_tag(call_id) {
            return n % self.shards;
        }
        if let Some(n) = self.pickup.pinned(call_id) {
            return n % self.shards;
        }
        let h = msg::fnv1a(call_id);
        (h % self.shards as u64) as usize
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Live registrations of an extension (for tests and the API).
    pub fn registrations(&self, tenant: model::TenantId, extension: &str, now: Instant) -> usize {
        self.bindings
            .lookup(tenant, extension, self.unix_ms(now))
            .len()
    }

    /// Takes in the bindings of an address-of-record as the store holds them,
    /// after another node of the cluster changed them (see the registrar's
    /// module documentation): this node's own bindings are kept, the others'
    /// replaced.
    pub fn refresh_bindings(
        &self,
        tenant: model::TenantId,
        extension: &str,
        stored: Vec<Registration>,
        now: Instant,
    ) {
        self.bindings.refresh(
            tenant,
            extension,
            stored,
            &self.config.registrar.node,
            self.unix_ms(now),
        );
    }

    /// Takes in every binding the store holds, after this node may have
    /// missed announcements of other nodes' changes.
    pub fn resync_bindings(&self, all: Vec<Registration>, now: Instant) {
        self.bindings
            .resync(all, &self.config.registrar.node, self.unix_ms(now));
    }

    /// Sets what a mailbox holds (new, old messages), as the store counts
    /// them: at start-up for every mailbox with messages, and after every
    /// change. New subscriptions report it; see [`Shard::notify_mailbox`].
    pub fn set_mailbox_counts(&self, tenant: model::TenantId, mailbox: &str, counts: (u32, u32)) {
        self.subscriptions.set_counts(tenant, mailbox, counts);
    }

    /// Message-waiting subscriptions kept for an extension (for tests and
    /// the API).
    pub fn subscriptions(&self, tenant: model::TenantId, extension: &str) -> usize {
        self.subscriptions.of_mailbox(tenant, extension).len()
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> i64 {
        let (base, base_ms) = self.clock;
        if now >= base {
            base_ms + i64::try_from((now - base).as_millis()).unwrap_or(i64::MAX / 2)
        } else {
            base_ms - i64::try_from((base - now).as_millis()).unwrap_or(0)
        }
    }
}

/// The shard number in a Call-ID the host made (`pbx<n>-...`), read without
/// allocating.
fn own_shard_tag(call_id: &[u8]) -> Option<usize> {
    let rest = call_id.strip_prefix(b"pbx")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 4 || rest.get(digits) != Some(&b'-') {
        return None;
    }
    Some(
        rest[..digits]
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}
