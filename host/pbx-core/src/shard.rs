//! One shard of the SIP core: message dispatch, transaction tables and timers.
//!
//! Inbound bytes are parsed, matched against server or client transactions
//! (RFC 3261 §17.1.3, §17.2.3) and otherwise handed to the registrar or the B2BUA.
//! Challenges, registrations and OPTIONS are answered statelessly: nothing is
//! allocated for a request before it is authenticated, and a retransmitted REGISTER
//! simply gets the same answer again. A SUBSCRIBE, once authenticated, is
//! answered in a server transaction (`subscription.rs`).

use std::collections::VecDeque;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use transaction::{
    ClientInvite, ClientInviteState, ClientNonInvite, Key, ServerInvite, ServerNonInvite,
    TimerEvent, TimerQueue, table::Table,
};

use crate::auth::{self, Kind, Outcome};
use crate::call::{Call, ClientRole, Ended};
use crate::msg::{self, Method, Msg, NameAddr, SipUri, Writer};
use crate::registrar::Reply;
use crate::{Error, Inbound, Output, Peer, Shared, TransportKind};

/// Methods the host understands; anything else gets 501.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY, SUBSCRIBE";

pub(crate) enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

impl ServerTx {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerTx::Invite(t) => t.poll_timeout(),
            ServerTx::NonInvite(t) => t.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Vec<TimerEvent> {
        match self {
            ServerTx::Invite(t) => t.handle_timeout(now).into_iter().collect(),
            ServerTx::NonInvite(t) => t.handle_timeout(now).into_iter().collect(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
    fn on_request_retransmission(&mut self, now: Instant) -> Option<Bytes> {
        match self {
            ServerTx::Invite(t) => t.on_request_retransmission(now),
            ServerTx::NonInvite(t) => t.on_request_retransmission(now),
        }
    }
    /// Sends a response through the transaction; `None` when the transaction has
    /// already sent its final response (the TU raced itself; nothing goes out).
    fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> Option<Bytes> {
        let r = match self {
            ServerTx::Invite(t) => t.send_response(now, status, bytes),
            ServerTx::NonInvite(t) => t.send_response(now, status, bytes),
        };
        r.inspect_err(|e| tracing::debug!(error = %e, status, "response not sent"))
            .ok()
    }
}

/// Seconds a draining node asks a client to wait before trying it again
/// (RFC 3261 §20.33).
const DRAIN_RETRY_AFTER: u32 = 30;

pub(crate) struct ServerEntry {
    pub(crate) tx: ServerTx,
    pub(crate) peer: Peer,
    pub(crate) local: SocketAddr,
    pub(crate) call: Option<u64>,
}

pub(crate) enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientTx {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.poll_timeout(),
            ClientTx::NonInvite(t) => t.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Vec<TimerEvent> {
        match self {
            ClientTx::Invite(t) => t.handle_timeout(now).into_iter().collect(),
            ClientTx::NonInvite(t) => t.handle_timeout(now).into_iter().collect(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

pub(crate) struct ClientEntry {
    pub(crate) tx: ClientTx,
    pub(crate) dest: Peer,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) call: Option<u64>,
    pub(crate) role: ClientRole,
    /// For INVITEs: the request's lines the ACK of a non-2xx final reuses;
    /// dropped once a final response came.
    pub(crate) invite: Option<Box<SentInvite>>,
}

/// What a CANCEL or a non-2xx ACK copies from the INVITE it refers to (§9.1, §17.1.1.3).
#[derive(Debug, Clone)]
pub(crate) struct SentInvite {
    pub(crate) uri: String,
    pub(crate) via: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) route: Vec<String>,
}

impl SentInvite {
    pub(crate) fn cancel(&self) -> Bytes {
        self.with_method(Method::Cancel, &self.to)
    }

    pub(crate) fn ack(&self, to: &str) -> Bytes {
        self.with_method(Method::Ack, to)
    }

    fn with_method(&self, method: Method, to: &str) -> Bytes {
        let mut w = Writer::request(method, &self.uri);
        w.header("Via", &self.via)
            .header("Max-Forwards", 70)
            .header("From", &self.from)
            .header("To", to)
            .header("Call-ID", &self.call_id)
            .header("CSeq", format_args!("{} {method}", self.cseq));
        for r in &self.route {
            w.header("Route", r);
        }
        w.finish(None)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TimerKey {
    Server(Key),
    Client(Arc<str>),
    Call(u64),
    /// A message-waiting subscription's expiry (boxed: every key of the
    /// timer queue is as large as the largest, and there are few of these).
    Subscription(Box<crate::subscription::DialogKey>),
    Sweep,
}

/// The request fields every response copies (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone)]
pub(crate) struct ReqCtx {
    pub(crate) vias: Vec<String>,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) call_id: String,
    pub(crate) cseq: String,
    /// The request's Record-Route, in order: copied into the responses that
    /// set up a dialog (RFC 3261 §12.1.1), so a proxy that record-routed the
    /// request (a cluster's front) stays on the dialog's path.
    pub(crate) record_route: Vec<String>,
}

impl ReqCtx {
    pub(crate) fn new(msg: &Msg, source: SocketAddr) -> ReqCtx {
        let mut vias: Vec<String> = msg.headers_named("Via").map(str::to_string).collect();
        if let Some(top) = vias.first_mut() {
            *top = msg::via_for_response(top, source);
        }
        ReqCtx {
            vias,
            from: msg.header("From").unwrap_or("").to_string(),
            to: msg.header("To").unwrap_or("").to_string(),
            call_id: msg.call_id().to_string(),
            cseq: msg.header("CSeq").unwrap_or("").to_string(),
            record_route: msg
                .headers_named("Record-Route")
                .map(str::to_string)
                .collect(),
        }
    }

    /// The answer refusing the request with `error` (no To tag of ours).
    pub(crate) fn refusal(&self, error: &Error, user_agent: Option<&str>) -> Writer {
        self.response(error.status(), error.reason(), None, user_agent)
    }

    /// A response writer with Via, From, To (tagged when `to_tag` is given and the
    /// request had none), Call-ID and CSeq filled in.
    pub(crate) fn response(
        &self,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        user_agent: Option<&str>,
    ) -> Writer {
        let mut w = Writer::response(status, reason);
        for v in &self.vias {
            w.header("Via", v);
        }
        if (101..300).contains(&status) && to_tag.is_some() {
            for r in &self.record_route {
                w.header("Record-Route", r);
            }
        }
        w.header("From", &self.from);
        match to_tag {
            Some(tag) if NameAddr::parse(&self.to).tag().is_none() => {
                w.header("To", format_args!("{};tag={tag}", self.to));
            }
            _ => {
                w.header("To", &self.to);
            }
        }
        w.header("Call-ID", &self.call_id)
            .header("CSeq", &self.cseq);
        if let Some(ua) = user_agent {
            w.header("Server", ua);
        }
        w
    }
}

/// One shard: owns its transactions and calls.
pub struct Shard {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// Entries are boxed so a slot of the table, which keeps room for more
    /// entries than it holds, costs a pointer rather than a whole entry.
    pub(crate) servers: Table<Key, Box<ServerEntry>>,
    /// By branch (`branch|CANCEL` for a CANCEL), shared with the timer queue.
    pub(crate) clients: Table<Arc<str>, Box<ClientEntry>>,
    /// Boxed: a call is over two kilobytes, and the map keeps room for more
    /// entries than it holds; a slot costs a pointer instead.
    pub(crate) calls: Table<u64, Box<Call>>,
    /// Calls that ended, lingering 64*T1 with what late messages need.
    pub(crate) ended: Table<u64, Box<Ended>>,
    /// Call-ID of either leg → call.
    pub(crate) dialogs: Table<String, u64>,
    pub(crate) timers: TimerQueue<TimerKey>,
    pub(crate) out: VecDeque<Output>,
    pub(crate) next_call: u64,
    /// [`Inbound::client`] of the message being handled.
    client: Option<std::net::IpAddr>,
}

impl Shard {
    /// Creates shard `index` of `shared.shards()`.
    pub fn new(index: usize, shared: Arc<Shared>) -> Shard {
        let mut timers = TimerQueue::new();
        if index == 0 {
            timers.schedule(TimerKey::Sweep, shared.clock.0);
        }
        Shard {
            index,
            shared,
            servers: Table::new(),
            clients: Table::new(),
            calls: Table::new(),
            ended: Table::new(),
            dialogs: Table::new(),
            timers,
            out: VecDeque::new(),
            next_call: 1,
            client: None,
        }
    }

    /// Feeds one inbound message.
    pub fn handle(&mut self, now: Instant, inbound: Inbound) {
        // A message that raced its Call-ID's pin to another shard follows it
        // there (call pickup).
        if let Some(shard) = self.pinned_elsewhere(&inbound.bytes) {
            self.out.push_back(Output::Forward { shard, inbound });
            return;
        }
        let Inbound {
            peer,
            local,
            bytes,
            handoff,
            client,
        } = inbound;
        self.client = client;
        let msg = match Msg::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let (status, reason) = e.status();
                tracing::debug!(source = %peer.addr, %status, error = %e, "unparseable SIP message");
                if let Some(reply) = sip::error_response(&bytes, status, reason) {
                    self.transmit(peer, Some(local), Bytes::from(reply));
                }
                return;
            }
        };
        match msg.method() {
            Some(_) => self.on_request(now, msg, (&bytes, handoff), peer, local),
            None => self.on_response(now, msg, peer),
        }
    }

    /// The address a request is judged by: the client's behind a trusted
    /// proxy ([`Inbound::client`]), else the sender's.
    fn client_ip(&self, peer: Peer) -> std::net::IpAddr {
        self.client.unwrap_or(peer.addr.ip())
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TimerKey> = self.timers.pop_due(now).collect();
        for key in due {
            match key {
                TimerKey::Server(k) => self.server_timeout(now, k),
                TimerKey::Client(b) => self.client_timeout(now, b),
                TimerKey::Call(id) => self.call_timeout(now, id),
                TimerKey::Subscription(key) => self.subscription_timeout(now, &key),
                TimerKey::Sweep => {
                    let now_ms = self.shared.unix_ms(now);
                    let linger =
                        i64::try_from((self.shared.config.t1 * 64).as_millis()).unwrap_or(i64::MAX);
                    let dialogs = &self.dialogs;
                    self.shared
                        .pickup
                        .sweep_pins(self.index, now_ms, linger, |id| dialogs.contains_key(id));
                    // Nonces are forgotten a few at a time as new ones are
                    // issued; a quiet spell after a busy one must not keep
                    // the busy one's expired entries.
                    self.shared.nonces.purge(now_ms);
                    let gone = self.shared.bindings.sweep(now_ms);
                    if gone > 0 {
                        tracing::debug!(gone, "expired registrations swept");
                    }
                    tracing::debug!(
                        shard = self.index,
                        calls = self.calls.len(),
                        ended = self.ended.len(),
                        servers = self.servers.len(),
                        clients = self.clients.len(),
                        dialogs = self.dialogs.len(),
                        timers = self.timers.len(),
                        timer_entries = self.timers.entries(),
                        "shard occupancy"
                    );
                    self.timers
                        .schedule(TimerKey::Sweep, now + std::time::Duration::from_secs(30));
                }
            }
        }
        self.fit_tables();
    }

    /// Keeps the tables sized to their entries: most entries end in a
    /// timer, so this runs after timers.
    fn fit_tables(&mut self) {
        fit_table(&mut self.servers);
        fit_table(&mut self.clients);
        fit_table(&mut self.calls);
        fit_table(&mut self.ended);
        fit_table(&mut self.dialogs);
    }

    /// When [`Shard::handle_timeout`] next wants to run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next thing for the I/O layer to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Calls in this shard: in progress, or ended and lingering 64*T1 for
    /// late messages.
    pub fn active_calls(&self) -> usize {
        self.calls.len() + self.ended.len()
    }

    /// Transactions in progress in this shard (server, client).
    pub fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// A stream connection closed: bindings that used it fall back to a new one.
    pub fn connection_closed(&mut self, conn: crate::ConnId) {
        if self.index == 0 {
            self.shared.bindings.connection_closed(conn);
            self.shared.subscriptions.connection_closed(conn);
        }
    }

    pub(crate) fn transmit(&mut self, dest: Peer, local: Option<SocketAddr>, bytes: Bytes) {
        self.out.push_back(Output::Transmit { dest, local, bytes });
    }

    pub(crate) fn user_agent(&self) -> Option<&str> {
        self.shared.config.user_agent.as_deref()
    }

    /// `host:port` the host puts in Via and Contact for `transport`.
    pub(crate) fn advertised(&self, transport: TransportKind, local: Option<SocketAddr>) -> String {
        if let Some((_, a)) = self
            .shared
            .config
            .advertise
            .iter()
            .find(|(t, _)| *t == transport)
            && !a.ip().is_unspecified()
        {
            return msg::host_port(*a);
        }
        match local {
            Some(l) if !l.ip().is_unspecified() => msg::host_port(l),
            _ => self
                .shared
                .config
                .advertise
                .first()
                .map(|(_, a)| msg::host_port(*a))
                .unwrap_or_else(|| "127.0.0.1:5060".to_string()),
        }
    }

    pub(crate) fn timers_cfg(&self) -> transaction::Timers {
        let c = &self.shared.config;
        transaction::Timers {
            t1: c.t1,
            t2: c.t2,
            t4: c.t4,
        }
    }

    /// Answers `msg` statelessly with the status and phrase of `error`.
    pub(crate) fn refuse(
        &mut self,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        error: &Error,
        extra: &[(&str, String)],
    ) {
        self.reply_stateless(msg, peer, local, error.status(), error.reason(), extra);
    }

    /// Answers a request statelessly.
    pub(crate) fn reply_stateless(
        &mut self,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        status: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let ctx = ReqCtx::new(msg, peer.addr);
        let tag = stateless_tag(&ctx.call_id);
        let mut w = ctx.response(status, reason, Some(&tag), self.user_agent());
        for (n, v) in extra {
            w.header(n, v);
        }
        let bytes = w.finish(None);
        self.transmit(peer, Some(local), bytes);
    }

    fn on_request(
        &mut self,
        now: Instant,
        msg: Msg,
        (bytes, handoff): (&Bytes, Option<crate::Handoff>),
        peer: Peer,
        local: SocketAddr,
    ) {
        let Some(method) = msg.method() else {
            return;
        };
        let Ok(via) = msg.top_via() else {
            return;
        };
        let branch = via.branch().unwrap_or("").to_string();
        let sent_by = via.sent_by.to_string();
        // RFC 3261 §17.2.3 matching needs a magic-cookie branch; older clients are
        // matched by the same key, which is unique enough for their retransmissions.
        let key = Key::server(&branch, &sent_by, msg::method_name(method));

        if method == Method::Ack {
            if let Some(entry) = self.servers.get_mut(&key)
                && let ServerTx::Invite(tx) = &mut entry.tx
            {
                // In Accepted (RFC 6026) the ACK is for our 2xx, sent by a client
                // that reused the INVITE's branch: it belongs to the call, not the
                // transaction.
                let for_2xx = tx.on_ack(now);
                let deadline = entry.tx.poll_timeout();
                let call = entry.call;
                self.schedule_server(&key, deadline);
                if let Some(call) = call {
                    self.on_ack_for_call(now, call, &msg, !for_2xx);
                }
                return;
            }
            if let Some(&call) = self.dialogs.get(msg.call_id()) {
                self.on_ack_for_call(now, call, &msg, false);
            }
            return;
        }

        if method == Method::Cancel {
            self.on_cancel(now, &msg, peer, local, &branch, &sent_by);
            return;
        }

        if let Some(entry) = self.servers.get_mut(&key) {
            if let Some(bytes) = entry.tx.on_request_retransmission(now) {
                let (p, l) = (entry.peer, entry.local);
                self.transmit(p, Some(l), bytes);
            }
            return;
        }

        if msg.max_forwards() == Some(0) && !matches!(method, Method::Register | Method::Options) {
            self.refuse(&msg, peer, local, &Error::TooManyHops, &[]);
            return;
        }

        let in_dialog = msg.to().ok().and_then(|t| t.tag().map(str::to_string));
        if let Some(_to_tag) = in_dialog {
            if method == Method::Subscribe {
                self.on_subscribe_refresh(now, &msg, peer, local, key);
                return;
            }
            match self.dialogs.get(msg.call_id()).copied() {
                Some(call) => self.on_in_dialog(now, call, msg, peer, local, key),
                None => self.refuse(&msg, peer, local, &Error::NoSuchCall, &[]),
            }
            return;
        }

        let new_work = matches!(
            method,
            Method::Register | Method::Invite | Method::Options | Method::Subscribe
        );
        if new_work && handoff.is_none() && self.shared.draining() {
            // A front (its OPTIONS probes included) takes these to another
            // node; a phone talking to this node directly retries later.
            let extra = [("Retry-After", DRAIN_RETRY_AFTER.to_string())];
            self.refuse(&msg, peer, local, &Error::Draining, &extra);
            return;
        }
        match method {
            Method::Register => self.on_register(now, &msg, peer, local),
            Method::Invite => match handoff {
                Some(h) => self.pick_up(now, msg, peer, local, key, h),
                None => self.on_invite(now, msg, bytes, peer, local, key),
            },
            Method::Subscribe => self.on_subscribe(now, &msg, peer, local, key),
            Method::Options => {
                let extra = [
                    ("Allow", ALLOW.to_string()),
                    ("Accept", "application/sdp".to_string()),
                    ("Allow-Events", crate::MESSAGE_SUMMARY.to_string()),
                ];
                self.reply_stateless(&msg, peer, local, 200, "OK", &extra);
            }
            Method::Bye => self.refuse(&msg, peer, local, &Error::NoSuchCall, &[]),
            Method::Info
            | Method::Update
            | Method::PRack
            | Method::Message
            | Method::Notify
            | Method::Publish
            | Method::Refer => {
                let extra = [("Allow", ALLOW.to_string())];
                self.refuse(&msg, peer, local, &Error::MethodNotAllowed, &extra);
            }
            // ACK and CANCEL were handled above.
            Method::Ack | Method::Cancel => {}
        }
    }

    /// The tenant domain a request names: Request-URI host, then To, then From.
    pub(crate) fn request_domain(msg: &Msg) -> String {
        let candidates = [
            Some(msg.request_uri()),
            msg.to().ok().map(|t| t.uri),
            msg.from().ok().map(|f| f.uri),
        ];
        let mut first = None;
        for uri in candidates.into_iter().flatten() {
            if let Some(p) = SipUri::parse(uri) {
                let host = p.host.to_ascii_lowercase();
                if host.parse::<std::net::IpAddr>().is_err() {
                    return host;
                }
                first.get_or_insert(host);
            }
        }
        first.unwrap_or_default()
    }

    /// Authenticates `msg` in the tenant its domain names, answering with a
    /// challenge when it does not pass.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        kind: Kind,
    ) -> Option<(model::TenantId, String)> {
        let domain = Self::request_domain(msg);
        self.authenticate_in(now, msg, peer, local, kind, domain)
    }

    /// Authenticates `msg` in the tenant of `domain` (lower-case), answering
    /// with a challenge when it does not pass.
    pub(crate) fn authenticate_in(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        kind: Kind,
        domain: String,
    ) -> Option<(model::TenantId, String)> {
        let now_ms = self.shared.unix_ms(now);
        let index = self.shared.index();
        let tenant = index.tenant_for_domain(&domain);
        let outcome = match auth::check(
            &self.shared.nonces,
            &index,
            tenant,
            &domain,
            msg,
            kind,
            &self.shared.config.digest_algorithms,
            self.shared
                .config
                .ephemeral_key
                .as_ref()
                .filter(|_| peer.transport == TransportKind::Wss),
            now_ms,
        ) {
            // Right credentials, nonce count already used: a retransmitted
            // REGISTER gets its 200 again (nothing is applied twice); anything
            // else is a replay, challenged and reported like any failure.
            Outcome::Repeated {
                tenant,
                extension,
                realm,
                retransmission,
            } => {
                if retransmission && msg.method() == Some(Method::Register) {
                    self.answer_register_retransmission(
                        msg, peer, local, tenant, &extension, now_ms,
                    );
                    return None;
                }
                Outcome::Challenge {
                    realm,
                    stale: false,
                    failure: auth::failure("nonce count replayed", &extension),
                }
            }
            other => other,
        };
        match outcome {
            Outcome::Ok { tenant, extension } => {
                self.out.push_back(Output::Authenticated {
                    source: self.client_ip(peer),
                });
                // The credential is right; the network must be one the tenant (or
                // this extension) allows. Past authentication, a 403 reveals nothing.
                if !index.network_allowed(tenant, &extension, self.client_ip(peer)) {
                    tracing::info!(
                        event = "sip.acl.denied",
                        source = %peer.addr,
                        %tenant,
                        extension = %extension,
                        "request from a network the extension may not use"
                    );
                    self.refuse(msg, peer, local, &Error::Forbidden, &[]);
                    return None;
                }
                Some((tenant, extension))
            }
            Outcome::Challenge {
                realm,
                stale,
                failure,
            } => {
                if let Some(failure) = failure {
                    let method = msg.method().map_or("", msg::method_name);
                    tracing::info!(
                        event = "sip.auth.failure",
                        source = %peer.addr,
                        method,
                        domain = %domain,
                        user = %failure.user,
                        reason = failure.reason,
                        "authentication failed"
                    );
                    self.out.push_back(Output::AuthFailure {
                        source: self.client_ip(peer),
                        domain: domain.clone(),
                        user: failure.user,
                        method: method.to_owned(),
                        tenant: tenant.map(|t| t.id),
                    });
                }
                let user = auth::challenged_user(msg, kind);
                let offered =
                    index.digest_algorithms(tenant, &user, &self.shared.config.digest_algorithms);
                let values = auth::challenges(&self.shared.nonces, offered, &realm, stale, now_ms);
                let extra: Vec<(&str, String)> = values
                    .into_iter()
                    .map(|v| (kind.challenge_header(), v))
                    .collect();
                self.refuse(msg, peer, local, &kind.refusal(), &extra);
                None
            }
            Outcome::Suspended { tenant, extension } => {
                tracing::info!(
                    event = "sip.auth.suspended",
                    source = %peer.addr,
                    %tenant,
                    extension = %extension,
                    "request from a suspended extension or tenant"
                );
                self.refuse(msg, peer, local, &Error::Forbidden, &[]);
                None
            }
            // Turned into a challenge or answered above.
            Outcome::Repeated { .. } => None,
        }
    }

    /// Answers a retransmitted REGISTER with the current bindings, as its
    /// original was answered; the bindings are not touched.
    fn answer_register_retransmission(
        &mut self,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        tenant: model::TenantId,
        extension: &str,
        now_ms: i64,
    ) {
        let contacts = self
            .shared
            .bindings
            .lookup(tenant, extension, now_ms)
            .into_iter()
            .map(|b| {
                let secs = u32::try_from((b.expires_at_ms - now_ms).max(0) / 1000).unwrap_or(0);
                (b.contact, secs)
            })
            .collect();
        self.reply_bindings(msg, peer, local, contacts);
    }

    /// 200 OK to a REGISTER, listing the contacts with their remaining seconds
    /// and echoing the Path a front recorded (RFC 3327 §5.3).
    fn reply_bindings(
        &mut self,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        contacts: Vec<(String, u32)>,
    ) {
        let extra: Vec<(&str, String)> = msg
            .headers_named("Path")
            .take(crate::registrar::MAX_PATH)
            .map(|p| ("Path", p.to_string()))
            .chain(
                contacts
                    .into_iter()
                    .map(|(c, secs)| ("Contact", format!("<{c}>;expires={secs}"))),
            )
            .collect();
        self.reply_stateless(msg, peer, local, 200, "OK", &extra);
    }

    fn on_register(&mut self, now: Instant, msg: &Msg, peer: Peer, local: SocketAddr) {
        let Some((tenant, extension)) = self.authenticate(now, msg, peer, local, Kind::Www) else {
            return;
        };
        // A phone may register only its own address-of-record.
        let aor_user = msg
            .to()
            .ok()
            .and_then(|t| SipUri::parse(t.uri).and_then(|p| p.user.map(str::to_string)));
        if aor_user.as_deref() != Some(extension.as_str()) {
            self.refuse(msg, peer, local, &Error::Forbidden, &[]);
            return;
        }
        let now_ms = self.shared.unix_ms(now);
        let nat = msg
            .top_via()
            .map_or(true, |v| crate::registrar::behind_nat(v.sent_by, peer.addr));
        let mut changes = Vec::new();
        let reply = self.shared.bindings.register(
            &self.shared.config.registrar,
            tenant,
            &extension,
            msg,
            peer,
            nat,
            local,
            now_ms,
            &mut changes,
        );
        for c in changes {
            self.out.push_back(Output::Registration(c));
        }
        match reply {
            Reply::Ok(contacts) => self.reply_bindings(msg, peer, local, contacts),
            Reply::TooBrief(min) => {
                let extra = [("Min-Expires", min.to_string())];
                self.refuse(msg, peer, local, &Error::IntervalTooBrief, &extra);
            }
            Reply::Error(error) => self.refuse(msg, peer, local, &error, &[]),
        }
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        branch: &str,
        sent_by: &str,
    ) {
        let invite_key = Key::server(branch, sent_by, "INVITE");
        let Some(call) = self.servers.get(&invite_key).and_then(|e| e.call) else {
            self.refuse(msg, peer, local, &Error::NoSuchCall, &[]);
            return;
        };
        // The CANCEL is its own non-INVITE transaction (§9.2).
        let key = Key::server(branch, sent_by, "CANCEL");
        let ctx = ReqCtx::new(msg, peer.addr);
        let to_tag = self.calls.get(&call).map(|c| c.a.local_tag.clone());
        let ok = ctx
            .response(200, "OK", to_tag.as_deref(), self.user_agent())
            .finish(None);
        self.respond_new_server(now, key, false, peer, local, None, 200, ok);
        self.cancel_call(now, call);
    }

    /// Creates a server transaction and sends its first response through it.
    #[allow(clippy::too_many_arguments)] // a transaction's identity, route and first answer
    pub(crate) fn respond_new_server(
        &mut self,
        now: Instant,
        key: Key,
        invite: bool,
        peer: Peer,
        local: SocketAddr,
        call: Option<u64>,
        status: u16,
        bytes: Bytes,
    ) {
        let reliable = peer.transport != TransportKind::Udp;
        let timers = self.timers_cfg();
        let tx = if invite {
            ServerTx::Invite(ServerInvite::new(now, reliable, timers))
        } else {
            ServerTx::NonInvite(ServerNonInvite::new(now, reliable, timers))
        };
        let mut entry = ServerEntry {
            tx,
            peer,
            local,
            call,
        };
        let send = entry.tx.send_response(now, status, bytes);
        let deadline = entry.tx.poll_timeout();
        let terminated = entry.tx.is_terminated();
        if let Some(send) = send {
            self.transmit(peer, Some(local), send);
        }
        if !terminated {
            self.servers.insert(key.clone(), Box::new(entry));
            self.schedule_server(&key, deadline);
        }
    }

    /// Sends a response through an existing server transaction.
    pub(crate) fn respond(&mut self, now: Instant, key: &Key, status: u16, bytes: Bytes) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let send = entry.tx.send_response(now, status, bytes);
        let (p, l) = (entry.peer, entry.local);
        let deadline = entry.tx.poll_timeout();
        let terminated = entry.tx.is_terminated();
        if let Some(send) = send {
            self.transmit(p, Some(l), send);
        }
        if terminated {
            self.servers.remove(key);
        } else {
            self.schedule_server(key, deadline);
        }
    }

    pub(crate) fn schedule_server(&mut self, key: &Key, deadline: Option<Instant>) {
        if let Some(at) = deadline {
            self.timers.schedule(TimerKey::Server(key.clone()), at);
        }
    }

    pub(crate) fn schedule_client(&mut self, branch: &str) {
        if let Some((branch, entry)) = self.clients.get_key_value(branch)
            && let Some(at) = entry.tx.poll_timeout()
        {
            self.timers.schedule(TimerKey::Client(branch.clone()), at);
        }
    }

    /// Starts a client transaction and sends its request.
    pub(crate) fn send_request(
        &mut self,
        now: Instant,
        branch: String,
        request: Bytes,
        entry: impl FnOnce(ClientTx) -> ClientEntry,
        invite: bool,
        dest: Peer,
    ) {
        let reliable = dest.transport != TransportKind::Udp;
        let timers = self.timers_cfg();
        let (tx, first) = if invite {
            let (t, b) = ClientInvite::new(now, request, reliable, timers);
            (ClientTx::Invite(t), b)
        } else {
            let (t, b) = ClientNonInvite::new(now, request, reliable, timers);
            (ClientTx::NonInvite(t), b)
        };
        let e = entry(tx);
        let local = e.local;
        let branch: Arc<str> = Arc::from(branch);
        self.clients.insert(branch.clone(), Box::new(e));
        self.transmit(dest, local, first);
        self.schedule_client(&branch);
    }

    fn server_timeout(&mut self, now: Instant, key: Key) {
        let Some(entry) = self.servers.get_mut(&key) else {
            return;
        };
        if entry.tx.poll_timeout().is_some_and(|t| t > now) {
            let d = entry.tx.poll_timeout();
            self.schedule_server(&key, d);
            return;
        }
        let events = entry.tx.handle_timeout(now);
        let (p, l, call) = (entry.peer, entry.local, entry.call);
        let deadline = entry.tx.poll_timeout();
        let terminated = entry.tx.is_terminated();
        for ev in events {
            match ev {
                TimerEvent::Retransmit(b) => self.transmit(p, Some(l), b),
                TimerEvent::TimedOut => {
                    // Timer H: the caller never acknowledged our final response.
                    if let Some(call) = call {
                        self.on_caller_ack_timeout(now, call);
                    }
                }
                TimerEvent::Terminated => {}
            }
        }
        if terminated {
            self.servers.remove(&key);
        } else {
            self.schedule_server(&key, deadline);
        }
    }

    fn client_timeout(&mut self, now: Instant, branch: Arc<str>) {
        let Some(entry) = self.clients.get_mut(&branch) else {
            return;
        };
        if entry.tx.poll_timeout().is_some_and(|t| t > now) {
            self.schedule_client(&branch);
            return;
        }
        let events = entry.tx.handle_timeout(now);
        let (dest, local, call, role) = (entry.dest, entry.local, entry.call, entry.role);
        let terminated = entry.tx.is_terminated();
        let mut timed_out = false;
        for ev in events {
            match ev {
                TimerEvent::Retransmit(b) => self.transmit(dest, local, b),
                TimerEvent::TimedOut => timed_out = true,
                TimerEvent::Terminated => {}
            }
        }
        if terminated {
            self.clients.remove(&branch);
        } else {
            self.schedule_client(&branch);
        }
        if timed_out && let Some(call) = call {
            self.on_client_timeout(now, call, role, &branch);
        }
    }

    fn on_response(&mut self, now: Instant, msg: Msg, peer: Peer) {
        let Ok(via) = msg.top_via() else {
            return;
        };
        let Some(branch) = via.branch() else {
            return;
        };
        // A CANCEL shares its INVITE's branch but is a transaction of its own.
        let branch = match msg.cseq() {
            Ok((_, Method::Cancel)) => format!("{branch}|CANCEL"),
            _ => branch.to_string(),
        };
        let status = msg.status().unwrap_or(0);
        let Some(entry) = self.clients.get_mut(branch.as_str()) else {
            // A 2xx retransmitted after its transaction ended: re-acknowledge it.
            if (200..300).contains(&status)
                && let Some(&call) = self.dialogs.get(msg.call_id())
            {
                self.on_stray_2xx(now, call, &msg);
            }
            return;
        };
        let pass = match &mut entry.tx {
            ClientTx::Invite(tx) => {
                let to = msg.header("To").unwrap_or("");
                let sent = &entry.invite;
                let action = tx.on_response(now, status, || {
                    sent.as_ref().map(|i| i.ack(to)).unwrap_or_default()
                });
                if !matches!(
                    tx.state(),
                    ClientInviteState::Calling | ClientInviteState::Proceeding
                ) {
                    // The ACK for a non-2xx is built and kept by now; nothing
                    // else reads the INVITE's lines once a final came.
                    entry.invite = None;
                }
                if let Some(b) = action.transmit {
                    let (d, l) = (entry.dest, entry.local);
                    self.out.push_back(Output::Transmit {
                        dest: d,
                        local: l,
                        bytes: b,
                    });
                }
                action.pass_to_tu
            }
            ClientTx::NonInvite(tx) => tx.on_response(now, status),
        };
        let Some(entry) = self.clients.get(branch.as_str()) else {
            return;
        };
        let (call, role, terminated) = (entry.call, entry.role, entry.tx.is_terminated());
        if terminated {
            self.clients.remove(branch.as_str());
        } else {
            self.schedule_client(&branch);
        }
        let _ = peer;
        if pass && call.is_none() && role == ClientRole::Notify && status == 481 {
            self.subscription_refused(&msg);
        }
        if pass && let Some(call) = call {
            self.on_call_response(now, call, role, &branch, &msg);
        }
    }
}

/// Keeps one of the shard's tables sized to its entries ([`Table`]): the room
/// of a burst is given back once it is over (a hash table never shrinks by
/// itself), and the table is rebuilt before the slots that removals left
/// behind would make it double at a steady count. This runs after each batch
/// of timers rather than before every insert, so the rebuild is made while an
/// eighth of the entries still fit, room for the inserts in between.
fn fit_table<K: Eq + Hash, V>(map: &mut Table<K, V>) {
    map.shrink_sparse();
    if !map.is_empty() {
        let margin = map.len() / 8;
        map.make_room(margin);
    }
}

/// A To-tag for stateless answers: stable per Call-ID, so a retransmitted request
/// gets the same tag.
pub(crate) fn stateless_tag(call_id: &str) -> String {
    format!("{:016x}", msg::fnv1a(call_id.as_bytes()))
}
