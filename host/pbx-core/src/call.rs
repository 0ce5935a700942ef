//! The back-to-back user agent: one [`Call`] joins the caller's leg (A, where the
//! host is the UAS) and the callee's leg (B, where the host is the UAC, forked in
//! parallel to every registered contact of the callee).
//!
//! Both legs are full dialogs of their own (RFC 3261 §12): their own Call-ID, tags
//! and CSeq spaces; the host relays provisional and final responses, CANCEL, BYE,
//! re-INVITE and other in-dialog requests between them.
//!
//! When the host anchors media ([`crate::MediaAnchor`]), every SDP offer and answer
//! goes through the call's media handle on its way to the other leg: the caller's
//! offer before the forks go out, answers in 18x/2xx, late offers (offer in the
//! 2xx, answer in the ACK) and re-INVITE/UPDATE offers. A refused offer gets 488
//! (400 for malformed SDP); the handle is dropped when the call ends and its
//! counters go into the call record.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use model::{Cdr, Disposition, MediaEncryption, TenantId};
use transaction::Key;

use crate::auth::Kind;
use crate::media::{self, CallMediaHandle, HostMediaFull, MediaLeg, MediaRefusal, MediaSecurity};
use crate::msg::{self, Method, Msg, NameAddr, SipUri, Writer};
use crate::shard::{ALLOW, ClientEntry, ReqCtx, SentInvite, ServerEntry, ServerTx, TimerKey};
use crate::{
    CallEvent, CallerDevice, DialResult, Error, MAX_CALL_STEPS, MAX_EXPOSED_HEADERS,
    MAX_EXPOSED_VALUE, Output, Peer, RingStep, RouteDecision, RouteRequest, Routing, Shard,
    TransportKind, TrunkEntry,
};

/// A trunk call about to be placed.
struct TrunkDial<'a> {
    number: &'a str,
    /// How long it may ring (already bounded by the host's ring timeout).
    timeout: Duration,
    /// The caller ID to present (already checked as the tenant's).
    caller_id: Option<&'a str>,
}

/// Which side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::A => "caller",
            Side::B => "callee",
        }
    }

    fn media(self) -> MediaLeg {
        match self {
            Side::A => MediaLeg::Caller,
            Side::B => MediaLeg::Callee,
        }
    }
}

/// What a client transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientRole {
    /// The initial INVITE to fork `n`.
    Fork(usize),
    Cancel,
    Bye,
    /// A relayed in-dialog request (re-INVITE, INFO, UPDATE, ...).
    Relay,
    /// A NOTIFY about a transfer (its answer changes nothing).
    Notify,
}

/// One dialog's state as the host holds it.
#[derive(Debug, Clone)]
pub(crate) struct Leg {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Option<String>,
    /// Our URI as it appears in this dialog (name-addr, without tag).
    pub(crate) local_uri: String,
    /// The peer's URI (name-addr, without tag).
    pub(crate) remote_uri: String,
    /// Request-URI of requests we send in the dialog.
    pub(crate) remote_target: String,
    pub(crate) route_set: Vec<String>,
    pub(crate) peer: Peer,
    pub(crate) local: Option<SocketAddr>,
    /// Our next CSeq number in this dialog.
    pub(crate) cseq: u32,
}

/// One outbound branch of the initial INVITE.
#[derive(Debug, Clone)]
pub(crate) struct Fork {
    pub(crate) branch: String,
    pub(crate) peer: Peer,
    pub(crate) local: Option<SocketAddr>,
    /// The callee URI this fork's INVITE is addressed to (its To).
    pub(crate) remote_uri: String,
    pub(crate) invite: SentInvite,
    pub(crate) provisional: bool,
    pub(crate) final_status: Option<u16>,
    pub(crate) cancel_pending: bool,
    /// The extension this fork rings (`None` out a trunk).
    pub(crate) extension: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for the routing decision.
    Routing,
    Ringing,
    Answered,
    Ended,
}

/// A request relayed from one leg to the other, waiting for its answer.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) server: Key,
    pub(crate) origin: Side,
    pub(crate) ctx: ReqCtx,
    pub(crate) invite: bool,
    pub(crate) cseq: u32,
    /// The request carried an SDP offer, so the response's SDP is its answer.
    pub(crate) offer: bool,
}

/// Our 2xx to the caller, retransmitted until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
pub(crate) struct Retransmit {
    pub(crate) bytes: Bytes,
    pub(crate) next: Instant,
    pub(crate) interval: Duration,
    pub(crate) give_up: Instant,
}

impl Retransmit {
    /// A 2xx sent at `now`, retransmitted from T1 on and given up after 64·T1.
    pub(crate) fn new(bytes: Bytes, now: Instant, t1: Duration) -> Retransmit {
        Retransmit {
            bytes,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        }
    }
}

/// One call.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) tenant: TenantId,
    pub(crate) caller: String,
    /// What the caller dialled.
    pub(crate) callee: String,
    pub(crate) domain: String,
    pub(crate) a: Leg,
    pub(crate) b: Leg,
    pub(crate) a_invite: ReqCtx,
    pub(crate) a_key: Key,
    /// Every fork sent, over all ring steps (a response names its fork by index).
    pub(crate) forks: Vec<Fork>,
    /// Index of the first fork of the current ring step.
    pub(crate) step_start: usize,
    /// Ring steps still to try.
    pub(crate) steps: VecDeque<RingStep>,
    /// The caller's offer (content type and body) as it arrived.
    pub(crate) caller_offer: Option<(String, Bytes)>,
    /// The offer sent on every fork: the caller's, rewritten when media is
    /// anchored.
    pub(crate) offer: Option<(String, Bytes)>,
    /// The anchored media, when the host anchors media.
    pub(crate) media: Option<Box<dyn CallMediaHandle>>,
    /// The tenant's SRTP policy.
    pub(crate) media_policy: MediaEncryption,
    /// A trunk's credentials, for answering its challenge once.
    pub(crate) trunk_auth: Option<(String, String)>,
    pub(crate) state: State,
    pub(crate) offer_in_invite: bool,
    pub(crate) b_ack: Option<Bytes>,
    /// Boxed, as `picker_ok`: needed only from the answer to the ACK, and
    /// most of a call comes after.
    pub(crate) ok_retransmit: Option<Box<Retransmit>>,
    pub(crate) best_final: Option<(u16, String)>,
    pub(crate) cancelled: bool,
    pub(crate) started_ms: i64,
    pub(crate) answered_ms: Option<i64>,
    pub(crate) ring_deadline: Instant,
    pub(crate) max_deadline: Option<Instant>,
    pub(crate) pending: HashMap<String, Pending>,
    pub(crate) cdr_written: bool,
    /// Tags the host puts on the call's record (`mailbox-full`); a call
    /// handler's own are added when the record is written.
    pub(crate) tags: Vec<String>,
    /// The call's routing request as last handed out (its event and step
    /// updated for each further decision); `None` under built-in routing.
    pub(crate) route: Option<Box<RouteRequest>>,
    /// The current ring step ran out of time (no answer).
    pub(crate) rang_out: bool,
    /// Every extension rung so far, for loop detection across decisions.
    pub(crate) rung: Vec<String>,
    /// The host answered the call itself ([`RouteDecision::Answer`]): the
    /// SDP answer it gave; the call then has no callee leg.
    pub(crate) host_answer: Option<Bytes>,
    /// End the host-answered call as soon as the caller's ACK arrives.
    pub(crate) hang_up_on_ack: bool,
    /// The extension whose phone answered (none out a trunk).
    pub(crate) answered_by: Option<String>,
    /// A blind transfer in progress ([`crate::transfer`]).
    pub(crate) transfer: Option<Box<crate::transfer::Transfer>>,
    /// The callee's leg is gone: its phone hung up after transferring, and
    /// the transfer failed.
    pub(crate) transferor_left: bool,
    /// Call-IDs of legs the call placed besides `a` and `b` (transfer
    /// attempts, the transferor's leg), forgotten with the call.
    pub(crate) other_dialogs: Vec<String>,
    /// The caller got a 2xx to its INVITE: no other final response follows.
    pub(crate) a_answered: bool,
    /// The host answered the caller itself at some point of the call (the
    /// caller may since have been connected to a phone).
    pub(crate) host_answered: bool,
    /// The caller's dialog is over (a BYE went or came).
    pub(crate) a_bye: bool,
    /// What the host's media does on a call it answered ([`crate::app`]).
    /// Boxed: only calls the host answers itself have one.
    pub(crate) app: Option<Box<crate::app::App>>,
    /// Our 2xx to the picker's INVITE, retransmitted until its ACK.
    pub(crate) picker_ok: Option<Box<Retransmit>>,
}

/// What an ended call keeps while it lingers, until 64*T1 after its end
/// (a call in progress is over two kilobytes; this is a few hundred bytes).
///
/// Enough to answer what can still come on its legs: the callee's 2xx again
/// when our ACK was lost (acknowledged again, RFC 3261 §13.2.2.4); a
/// provisional response from a fork that had not rung when the call ended
/// (now it can be cancelled, §9.1); an answer that raced our CANCEL
/// (acknowledged and hung up); and a request in one of its dialogs (481).
#[derive(Debug)]
pub(crate) struct Ended {
    /// The callee's leg: the answered dialog, or the template a late
    /// answer's dialog is built on.
    pub(crate) b: Leg,
    /// Our ACK of the callee's 2xx, when it answered.
    pub(crate) b_ack: Option<Bytes>,
    /// The forks with no final response at the end, by their index.
    pub(crate) forks: Vec<(usize, Fork)>,
    /// The Call-IDs besides `b`'s that the call is found by.
    pub(crate) call_ids: Vec<String>,
    pub(crate) reap_at: Instant,
}

impl Call {
    /// The call's record as of its answer ([`Output::Answered`]); when the
    /// call ends, its end, disposition, status, who hung up and the media
    /// figures are filled in.
    fn record(&self) -> Cdr {
        Cdr {
            tenant: self.tenant,
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            started_at_ms: self.started_ms,
            answered_at_ms: self.answered_ms,
            ended_at_ms: self.answered_ms.unwrap_or(self.started_ms),
            disposition: Disposition::Answered,
            sip_code: 200,
            hangup_by: String::new(),
            caller_call_id: self.a.call_id.clone(),
            callee_call_id: self.b.call_id.clone(),
            media: Default::default(),
            tags: self.tags.clone(),
        }
    }
}

impl Call {
    fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        match self.state {
            State::Routing | State::Ringing => consider(Some(self.ring_deadline)),
            State::Answered => {
                consider(self.max_deadline);
                consider(self.ok_retransmit.as_ref().map(|r| r.next));
                consider(self.picker_ok.as_ref().map(|r| r.next));
                consider(self.transfer.as_ref().map(|t| t.deadline));
                consider(self.app.as_deref().and_then(crate::app::App::deadline));
            }
            State::Ended => {}
        }
        d
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
/// Whether a peer's transport is SIP over WebSocket, i.e. a browser: SDP to
/// it offers DTLS-SRTP with ICE-lite rather than RTP/AVP or SDES.
fn is_browser(transport: TransportKind) -> bool {
    transport == TransportKind::Wss
}

fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A random token for tags and Call-IDs.
pub(crate) fn token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// The callee leg as the 2xx from `fork` establishes it (RFC 3261 §12.1.2): the
/// remote tag and target from the response, the route set from its Record-Route in
/// reverse, and the fork's address.
pub(crate) fn answered_leg(base: &Leg, fork: &Fork, ok: &Msg) -> Leg {
    let mut route_set: Vec<String> = ok
        .headers_named("Record-Route")
        .map(str::to_string)
        .collect();
    route_set.reverse();
    Leg {
        remote_tag: ok.to().ok().and_then(|t| t.tag().map(str::to_string)),
        remote_target: ok
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri.to_string())
            .unwrap_or_else(|| fork.invite.uri.clone()),
        route_set,
        remote_uri: fork.remote_uri.clone(),
        cseq: fork.invite.cseq,
        peer: fork.peer,
        local: fork.local,
        ..base.clone()
    }
}

/// Whether 2xx `ok` comes from the dialog `leg` is: its answer sent again.
fn answers_leg(leg: &Leg, ok: &Msg) -> bool {
    leg.remote_tag.is_some()
        && ok.call_id() == leg.call_id
        && ok.to().ok().and_then(|t| t.tag().map(str::to_string)) == leg.remote_tag
}

/// A CANCEL of a fork, ready to send.
struct ForkCancel {
    key: String,
    bytes: Bytes,
    dest: Peer,
    local: Option<SocketAddr>,
}

/// The CANCEL of `f`, unless it has its final response; before a provisional
/// response it is only marked to be cancelled when one comes (RFC 3261 §9.1).
fn cancel_fork(f: &mut Fork) -> Option<ForkCancel> {
    if f.final_status.is_some() {
        return None;
    }
    if !f.provisional {
        f.cancel_pending = true;
        return None;
    }
    f.cancel_pending = false;
    Some(ForkCancel {
        key: format!("{}|CANCEL", f.branch),
        bytes: f.invite.cancel(),
        dest: f.peer,
        local: f.local,
    })
}

/// How a call that was never answered ended, by the final status.
fn disposition_for(status: u16) -> Disposition {
    match status {
        486 | 600 => Disposition::Busy,
        408 | 480 => Disposition::NoAnswer,
        487 => Disposition::Cancelled,
        _ => Disposition::Failed,
    }
}

/// Ranks final responses for the caller when every fork failed (RFC 3261 §16.7:
/// 6xx first, then the lowest class; busy is the most useful 4xx to a caller).
fn better_final(new: u16, old: u16) -> bool {
    let rank = |s: u16| match s {
        600..=699 => 0,
        486 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    };
    rank(new) < rank(old)
}

impl Shard {
    /// A request in `leg`'s dialog with extra headers (a NOTIFY's Event and
    /// Subscription-State).
    pub(crate) fn leg_request_with(
        &self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        branch: &str,
        content: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
    ) -> Bytes {
        self.build_leg_request(leg, method, cseq, branch, content, None, extra)
            .0
    }

    pub(crate) fn leg_request(
        &self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        branch: &str,
        content: Option<(&str, &[u8])>,
        auth: Option<(&str, &str)>,
    ) -> (Bytes, SentInvite) {
        self.build_leg_request(leg, method, cseq, branch, content, auth, &[])
    }

    #[allow(clippy::too_many_arguments, reason = "one request's parts")]
    fn build_leg_request(
        &self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        branch: &str,
        content: Option<(&str, &[u8])>,
        auth: Option<(&str, &str)>,
        extra: &[(&str, &str)],
    ) -> (Bytes, SentInvite) {
        let transport = leg.peer.transport;
        let adv = self.advertised(transport, leg.local);
        let via = format!(
            "SIP/2.0/{} {adv};branch={branch};rport",
            msg::via_transport(transport)
        );
        let from = format!("{};tag={}", leg.local_uri, leg.local_tag);
        let to = match &leg.remote_tag {
            Some(t) => format!("{};tag={t}", leg.remote_uri),
            None => leg.remote_uri.clone(),
        };
        let mut w = Writer::request(method, &leg.remote_target);
        w.header("Via", &via)
            .header("Max-Forwards", 70)
            .header("From", &from)
            .header("To", &to)
            .header("Call-ID", &leg.call_id)
            .header("CSeq", format_args!("{cseq} {}", msg::method_name(method)));
        for r in &leg.route_set {
            w.header("Route", r);
        }
        if method == Method::Invite {
            w.header("Contact", self.contact(transport, leg.local))
                .header("Allow", ALLOW);
        }
        if let Some((name, value)) = auth {
            w.header(name, value);
        }
        for (name, value) in extra {
            w.header(name, value);
        }
        if let Some(ua) = self.user_agent() {
            w.header("User-Agent", ua);
        }
        let bytes = w.finish(content);
        let sent = SentInvite {
            uri: leg.remote_target.clone(),
            via,
            from,
            to,
            call_id: leg.call_id.clone(),
            cseq,
            route: leg.route_set.clone(),
        };
        (bytes, sent)
    }

    pub(crate) fn contact(&self, transport: TransportKind, local: Option<SocketAddr>) -> String {
        let adv = self.advertised(transport, local);
        match transport {
            TransportKind::Udp => format!("<sip:pbx@{adv}>"),
            TransportKind::Tcp => format!("<sip:pbx@{adv};transport=tcp>"),
            // `sip:` with `transport=tls` rather than `sips:`: deployed phones
            // (baresip among them) cannot route in-dialog requests to a `sips:`
            // target, and the hop is TLS either way.
            TransportKind::Tls => format!("<sip:pbx@{adv};transport=tls>"),
            // RFC 7118 §5.2: the URI parameter is `ws` for WS and WSS alike.
            TransportKind::Wss => format!("<sip:pbx@{adv};transport=ws>"),
        }
    }

    /// A new INVITE outside any dialog: from one of a tenant's phones (digest
    /// authenticated) or from a tenant's trunk to one of its numbers (authorised by
    /// source address). The call waits in `Routing` for its decision.
    pub(crate) fn on_invite(
        &mut self,
        now: Instant,
        msg: Msg,
        bytes: &Bytes,
        peer: Peer,
        local: SocketAddr,
        key: Key,
    ) {
        let dialled = SipUri::parse(msg.request_uri())
            .and_then(|p| p.user.map(str::to_string))
            .unwrap_or_default();
        let trunks = self.shared.trunks();
        let inbound = trunks
            .inbound(peer.addr.ip(), &dialled)
            .map(|(tenant, name)| (tenant, name.to_string()));
        let (tenant, caller, caller_extension, inbound_trunk) = match inbound {
            Some((tenant, trunk)) => {
                let from_user = msg
                    .from()
                    .ok()
                    .and_then(|f| SipUri::parse(f.uri).and_then(|p| p.user.map(str::to_string)))
                    .unwrap_or_else(|| "anonymous".into());
                (tenant, from_user, None, Some(trunk))
            }
            None => {
                let Some((tenant, ext)) = self.authenticate(now, &msg, peer, local, Kind::Proxy)
                else {
                    return;
                };
                if dialled == crate::PICKUP_CODE {
                    self.on_pickup_code(now, msg, bytes, (peer, local), key, tenant, ext);
                    return;
                }
                (tenant, ext.clone(), Some(ext), None)
            }
        };
        if self.dialogs.contains_key(msg.call_id()) {
            self.refuse(&msg, peer, local, &Error::LoopDetected, &[]);
            return;
        }
        let ctx = ReqCtx::new(&msg, peer.addr);
        let trying = ctx
            .response(100, "Trying", None, self.user_agent())
            .finish(None);
        self.respond_new_server(now, key.clone(), true, peer, local, None, 100, trying);

        let now_ms = self.shared.unix_ms(now);
        let domain = Self::request_domain(&msg);
        let from = msg.from().ok();
        let to = msg.to().ok();
        let a_contact = msg
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri.to_string())
            .unwrap_or_else(|| from.as_ref().map(|f| f.uri.to_string()).unwrap_or_default());
        let a = Leg {
            call_id: ctx.call_id.clone(),
            local_tag: token(8),
            remote_tag: from.as_ref().and_then(|f| f.tag().map(str::to_string)),
            local_uri: to.as_ref().map(|t| t.addr.to_string()).unwrap_or_default(),
            remote_uri: from
                .as_ref()
                .map(|f| f.addr.to_string())
                .unwrap_or_default(),
            remote_target: a_contact,
            route_set: msg
                .headers_named("Record-Route")
                .map(str::to_string)
                .collect(),
            peer,
            local: Some(local),
            cseq: 1,
        };
        let b_call_id = format!("pbx{}-{}", self.index, token(12));
        let b = Leg {
            call_id: b_call_id.clone(),
            local_tag: token(8),
            remote_tag: None,
            local_uri: format!("<sip:{caller}@{domain}>"),
            remote_uri: format!("<sip:{dialled}@{domain}>"),
            remote_target: String::new(),
            route_set: Vec::new(),
            peer,
            local: None,
            cseq: 0,
        };
        let id = self.next_call;
        self.next_call += 1;
        let route_timeout = match self.shared.config.routing {
            Routing::External { timeout } => timeout,
            Routing::Builtin => Duration::ZERO,
        };
        let call = Call {
            tenant,
            caller: caller.clone(),
            callee: dialled.clone(),
            domain: domain.clone(),
            a,
            b,
            a_invite: ctx,
            a_key: key.clone(),
            forks: Vec::new(),
            step_start: 0,
            steps: VecDeque::new(),
            caller_offer: msg
                .content()
                .map(|(ct, body)| (ct.to_string(), Bytes::copy_from_slice(body))),
            offer: None,
            media: None,
            media_policy: self.shared.index().media_encryption(tenant),
            trunk_auth: None,
            state: State::Routing,
            offer_in_invite: !msg.body.is_empty(),
            b_ack: None,
            ok_retransmit: None,
            best_final: None,
            cancelled: false,
            started_ms: now_ms,
            answered_ms: None,
            ring_deadline: now + route_timeout,
            max_deadline: None,
            pending: HashMap::new(),
            cdr_written: false,
            tags: Vec::new(),
            route: None,
            rang_out: false,
            rung: Vec::new(),
            host_answer: None,
            hang_up_on_ack: false,
            answered_by: None,
            transfer: None,
            transferor_left: false,
            other_dialogs: Vec::new(),
            a_answered: false,
            host_answered: false,
            a_bye: false,
            app: None,
            picker_ok: None,
        };
        tracing::debug!(call = id, caller = %call.caller, dialled = %call.callee, "call routing");
        if let Some(e) = self.servers.get_mut(&key) {
            e.call = Some(id);
        }
        self.dialogs.insert(call.a.call_id.clone(), id);
        self.dialogs.insert(b_call_id, id);
        let call_id = call.a.call_id.clone();
        self.calls.insert(id, Box::new(call));
        self.shared.call_started();
        if let Some(anchor) = self.shared.media_anchor() {
            match anchor.open(self.index, id, tenant) {
                Ok(handle) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.media = Some(handle);
                    }
                }
                Err(refusal) => {
                    tracing::warn!(call = id, reason = %refusal.reason, "no media for the call");
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.state = State::Ringing;
                    }
                    self.refuse_call(now, id, &refusal.error());
                    return;
                }
            }
        }
        match self.shared.config.routing {
            Routing::Builtin => {
                let index = self.shared.index();
                let decision = if index.extension(tenant, &dialled).is_some() {
                    RouteDecision::Ring(vec![RingStep {
                        extensions: vec![dialled],
                        timeout: self.shared.config.ring_timeout,
                    }])
                } else {
                    RouteDecision::reject(Error::NotFound.status(), Error::NotFound.reason())
                };
                self.route_decided(now, id, decision);
            }
            Routing::External { .. } => {
                let caller_device = caller_extension.as_ref().map(|_| CallerDevice {
                    contact: cut(
                        &msg.header("Contact")
                            .map(|c| NameAddr::parse(c).uri.to_string())
                            .unwrap_or_default(),
                        MAX_EXPOSED_VALUE,
                    ),
                    user_agent: cut(msg.header("User-Agent").unwrap_or(""), 256),
                    transport: peer.transport,
                });
                let exposed = &self.shared.config.exposed_headers;
                let headers = msg
                    .headers
                    .iter()
                    .filter(|(name, _)| exposed.iter().any(|e| e.eq_ignore_ascii_case(name)))
                    .take(MAX_EXPOSED_HEADERS)
                    .map(|(name, value)| (name.to_ascii_lowercase(), cut(value, MAX_EXPOSED_VALUE)))
                    .collect();
                let mut request = RouteRequest {
                    shard: self.index,
                    call: id,
                    tenant,
                    call_id,
                    caller,
                    caller_extension,
                    dialled,
                    inbound_trunk,
                    source: peer.addr,
                    event: CallEvent::Started,
                    step: 1,
                    caller_device,
                    headers,
                    answer_by: None,
                };
                if let Some(call) = self.calls.get_mut(&id) {
                    request.answer_by = Some(call.ring_deadline);
                    call.route = Some(Box::new(request.clone()));
                }
                self.out.push_back(Output::Route(request));
                self.schedule_call(id);
            }
        }
    }

    /// The routing decision for call `id` (see [`Output::Route`]). A decision for
    /// a call that is gone or was cancelled meanwhile is ignored.
    pub fn route_decided(&mut self, now: Instant, id: u64, decision: RouteDecision) {
        let ring_timeout = self.shared.config.ring_timeout;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.transfer.as_ref().is_some_and(|t| t.deciding) {
            self.transfer_decided(now, id, decision);
            return;
        }
        if call.state != State::Routing {
            return;
        }
        call.state = State::Ringing;
        if matches!(
            decision,
            RouteDecision::Ring(_) | RouteDecision::Trunk { .. }
        ) {
            // A new dial attempt: its own outcome is what the next step sees.
            call.best_final = None;
            call.rang_out = false;
        }
        match decision {
            RouteDecision::Reject { status, reason } => {
                self.fail_call(now, id, status, &reason);
            }
            RouteDecision::Finish => self.end_with_best_failure(now, id),
            RouteDecision::Ring(steps)
                if call.route.as_ref().is_some_and(|r| r.step > 1)
                    && steps
                        .iter()
                        .flat_map(|s| &s.extensions)
                        .all(|e| call.rung.contains(e)) =>
            {
                // Ringing again only who already rang is a forwarding loop.
                tracing::info!(call = id, "forwarding loop stopped");
                self.refuse_call(now, id, &Error::LoopDetected);
            }
            RouteDecision::Ring(steps) => {
                call.steps = steps
                    .into_iter()
                    .map(|mut s| {
                        s.timeout = crate::transfer::bounded_ring(s.timeout, ring_timeout);
                        s
                    })
                    .collect();
                self.next_step(now, id);
            }
            RouteDecision::Trunk {
                trunk,
                number,
                timeout,
                caller_id,
            } => {
                let tenant = call.tenant;
                let trunks = self.shared.trunks();
                if let Some(presented) = &caller_id
                    && !trunks.owns_number(tenant, presented)
                {
                    tracing::info!(call = id, caller_id = %presented, "caller ID refused: not the tenant's number");
                    self.refuse_call(now, id, &Error::CallerIdNotOwned);
                    return;
                }
                let timeout = crate::transfer::bounded_ring(timeout, ring_timeout);
                match trunks.get(tenant, &trunk).cloned() {
                    Some(entry) => {
                        let dial = TrunkDial {
                            number: &number,
                            timeout,
                            caller_id: caller_id.as_deref(),
                        };
                        self.start_trunk(now, id, &entry, &dial);
                    }
                    None => self.refuse_call(now, id, &Error::TrunkUnavailable),
                }
            }
            RouteDecision::Answer { hang_up } => {
                if !call.a_answered {
                    self.answer_at_host(now, id, hang_up);
                } else if hang_up {
                    self.hang_up(now, id, "the call handler hung up");
                } else {
                    call.state = State::Answered;
                    self.schedule_call(id);
                }
            }
            RouteDecision::Media(media) => self.start_host_media(now, id, media),
        }
    }

    /// The host answers the call itself: 200 OK with the media's answer to the
    /// caller's offer (the caller's media ends at the relay). With `hang_up`
    /// the call ends once the caller's ACK confirms the answer (RFC 3261
    /// §15: no BYE before the ACK).
    pub(crate) fn answer_at_host(&mut self, now: Instant, id: u64, hang_up: bool) {
        let t1 = self.shared.config.t1;
        let max = self.shared.config.max_call_duration;
        let now_ms = self.shared.unix_ms(now);
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let offer = call
            .caller_offer
            .as_ref()
            .filter(|(ct, body)| media::is_sdp(ct) && !body.is_empty());
        let (Some(handle), Some((_, sdp))) = (call.media.as_ref(), offer) else {
            tracing::info!(
                call = id,
                "cannot answer at the host: no offer or no anchored media"
            );
            self.refuse_call(now, id, &Error::NoOfferToAnswer);
            return;
        };
        let from_secure = call.a.peer.transport.is_secure();
        let answer = match handle.answer_here(MediaLeg::Caller, sdp, from_secure, call.media_policy)
        {
            Ok(answer) => Bytes::from(answer),
            Err(refusal) => {
                tracing::info!(call = id, reason = %refusal.reason, "caller's offer refused");
                self.refuse_call(now, id, &refusal.error());
                return;
            }
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.state = State::Answered;
        call.answered_ms = Some(now_ms);
        call.max_deadline = Some(now + max);
        call.host_answer = Some(answer.clone());
        call.host_answered = true;
        call.hang_up_on_ack = hang_up;
        self.announce_answered(id);
        let ok = self.answer_a(now, id, 200, "OK", Some(("application/sdp", &answer)));
        if let (Some(ok), Some(call)) = (ok, self.calls.get_mut(&id)) {
            call.ok_retransmit = Some(Box::new(Retransmit::new(ok, now, t1)));
        }
        tracing::debug!(call = id, hang_up, "call answered by the host");
        self.schedule_call(id);
    }

    /// The host cannot run media for the call (its tenant or the host holds
    /// all the host media sessions it may): an unanswered caller gets 486 or
    /// 503 with a `Warning` (RFC 3261 §20.43) and a `Reason` (RFC 3326)
    /// saying which, an answered one a BYE; the record is tagged
    /// [`HostMediaFull::TAG`].
    pub(crate) fn refuse_host_media(&mut self, now: Instant, id: u64, full: HostMediaFull) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.tags.iter().any(|t| t == HostMediaFull::TAG) {
            call.tags.push(HostMediaFull::TAG.to_string());
        }
        let text = full.text();
        tracing::info!(call = id, %text, "no host media session");
        if call.a_answered {
            self.hang_up(now, id, "no host media session");
            return;
        }
        let (status, phrase) = full.status();
        let headers = [
            ("Warning", format!("399 {} \"{text}\"", call.domain)),
            ("Reason", format!("SIP ;cause={status} ;text=\"{text}\"")),
        ];
        self.answer_a_with(now, id, (status, phrase), &headers, None);
        self.finish_call(now, id, disposition_for(status), status, "system");
    }

    /// Rejects a call that never rang anywhere.
    fn fail_call(&mut self, now: Instant, id: u64, status: u16, reason: &str) {
        self.answer_a(now, id, status, reason, None);
        self.finish_call(now, id, disposition_for(status), status, "system");
    }

    /// Rejects a call that never rang anywhere, for a reason the core decided.
    fn refuse_call(&mut self, now: Instant, id: u64, error: &Error) {
        self.fail_call(now, id, error.status(), error.reason());
    }

    /// Starts the next ring step that has a registered phone; when none is left,
    /// answers the caller with the best failure seen (480 when nothing rang).
    fn next_step(&mut self, now: Instant, id: u64) {
        let now_ms = self.shared.unix_ms(now);
        loop {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(step) = call.steps.pop_front() else {
                if !self.ask_next_route(now, id) {
                    self.end_with_best_failure(now, id);
                }
                return;
            };
            let tenant = call.tenant;
            let index = self.shared.index();
            let mut targets = Vec::new();
            for ext in &step.extensions {
                // Only the call's own tenant's extensions can be rung.
                if index.extension(tenant, ext).is_none() {
                    continue;
                }
                for binding in self.shared.bindings.lookup(tenant, ext, now_ms) {
                    targets.push((ext.clone(), binding));
                }
            }
            if targets.is_empty() {
                continue;
            }
            let to_secure = targets.iter().all(|(_, b)| b.peer.transport.is_secure());
            // One offer serves every fork: DTLS-SRTP when all are browsers.
            let to_webrtc = targets.iter().all(|(_, b)| is_browser(b.peer.transport));
            if !self.prepare_offer(now, id, to_secure, to_webrtc) {
                return;
            }
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            call.step_start = call.forks.len();
            call.ring_deadline = now + step.timeout;
            call.rang_out = false;
            call.b.cseq += 1;
            call.rung.reserve_exact(step.extensions.len());
            for ext in &step.extensions {
                if !call.rung.contains(ext) {
                    call.rung.push(ext.clone());
                }
            }
            let (template, domain) = (call.b.clone(), call.domain.clone());
            let mut ringing: Vec<String> = Vec::new();
            for (ext, binding) in targets {
                self.fork_to_extension(now, id, &template, &domain, &ext, vec![binding]);
                if !ringing.contains(&ext) {
                    ringing.push(ext);
                }
            }
            self.shared
                .pickup
                .set_ringing(tenant, self.index, id, &ringing);
            self.schedule_call(id);
            return;
        }
    }

    /// Answers the caller with the most telling failure of the last dial
    /// attempt (480 when nothing rang) and ends the call.
    pub(crate) fn end_with_best_failure(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let (code, reason) = call.best_final.clone().unwrap_or_else(|| {
            let none = Error::TemporarilyUnavailable;
            (none.status(), none.reason().into())
        });
        let by = if call.forks.is_empty() {
            "system"
        } else {
            "callee"
        };
        self.answer_a(now, id, code, &reason, None);
        self.finish_call(now, id, disposition_for(code), code, by);
    }

    /// The last dial attempt ended unanswered: hands the call back to the
    /// dial plan with how it ended ([`CallEvent::DialEnded`]), unless routing
    /// is built in, the caller gave up, or the call used up its
    /// [`MAX_CALL_STEPS`]. Returns whether a decision was asked for.
    fn ask_next_route(&mut self, now: Instant, id: u64) -> bool {
        let Routing::External { timeout } = self.shared.config.routing else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.state != State::Ringing || call.cancelled {
            return false;
        }
        let result = if call.rang_out {
            DialResult::NoAnswer
        } else {
            match call.best_final.as_ref().map(|(s, _)| *s) {
                None => DialResult::Unavailable,
                Some(486 | 600) => DialResult::Busy,
                Some(status) => DialResult::Failed { status },
            }
        };
        let Some(request) = call.route.as_mut() else {
            return false;
        };
        if request.step >= MAX_CALL_STEPS {
            tracing::info!(
                call = id,
                steps = request.step,
                "call used up its routing steps"
            );
            return false;
        }
        self.shared
            .pickup
            .clear_ringing(call.tenant, self.index, id);
        request.step += 1;
        request.event = CallEvent::DialEnded(result);
        call.state = State::Routing;
        call.ring_deadline = now + timeout;
        request.answer_by = Some(call.ring_deadline);
        let request = request.clone();
        self.out.push_back(Output::Route(*request));
        self.schedule_call(id);
        true
    }

    /// Sends the call out through a trunk.
    fn start_trunk(&mut self, now: Instant, id: u64, trunk: &TrunkEntry, dial: &TrunkDial<'_>) {
        let number = dial.number;
        if !self.prepare_offer(now, id, trunk.peer.transport.is_secure(), false) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let presented = dial.caller_id.unwrap_or(&call.caller).to_string();
        Shard::aim_at_trunk(&mut call.b, trunk, number, &presented);
        call.b.cseq += 1;
        call.trunk_auth = trunk
            .username
            .clone()
            .zip(trunk.password.clone().or(Some(String::new())));
        call.step_start = call.forks.len();
        call.ring_deadline = now + dial.timeout;
        call.rang_out = false;
        let leg = call.b.clone();
        self.send_fork(now, id, &leg, None);
        self.schedule_call(id);
    }

    /// Rewrites the caller's offer for the forks about to go out (all on secure
    /// transports when `to_secure`). A refused offer fails the call; returns
    /// whether it goes on.
    fn prepare_offer(&mut self, now: Instant, id: u64, to_secure: bool, to_webrtc: bool) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let security = MediaSecurity {
            from_secure: call.a.peer.transport.is_secure(),
            to_secure,
            to_webrtc,
        };
        if call.host_answer.is_some() {
            return self.prepare_offer_from_host(now, id, to_secure, to_webrtc);
        }
        let offer = call.caller_offer.clone();
        let content = offer.as_ref().map(|(ct, b)| (ct.as_str(), &b[..]));
        match self.media_sdp(id, Side::A, true, content, security) {
            Ok(rewritten) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.offer = match (rewritten, offer) {
                        (Some(body), Some((ct, _))) => Some((ct, body)),
                        (_, offer) => offer,
                    };
                }
                true
            }
            Err(refusal) => {
                tracing::info!(call = id, reason = %refusal.reason, "caller's offer refused");
                self.refuse_call(now, id, &refusal.error());
                false
            }
        }
    }

    /// The offer for the forks of a call whose caller the host answered: the
    /// format the caller already talks, so whoever answers is connected to
    /// the caller without a new offer to it.
    fn prepare_offer_from_host(
        &mut self,
        now: Instant,
        id: u64,
        to_secure: bool,
        to_webrtc: bool,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let offer = match call.media.as_ref() {
            Some(handle) => handle.offer_from_host(to_secure, to_webrtc, call.media_policy),
            None => Err(MediaRefusal::new(488, "no media to connect the caller")),
        };
        match offer {
            Ok(sdp) => {
                call.offer = Some(("application/sdp".into(), Bytes::from(sdp)));
                call.offer_in_invite = true;
                // The caller hears ringing until someone answers.
                if let Some(handle) = call.media.as_ref() {
                    let ringing = vec![crate::PromptRef::Tone(crate::Tone::Ringback); 30];
                    let _ = handle.play(&ringing);
                }
                true
            }
            Err(refusal) => {
                tracing::info!(call = id, reason = %refusal.reason, "cannot connect the caller");
                self.refuse_call(now, id, &refusal.error());
                false
            }
        }
    }

    /// Passes an SDP offer or answer from `from` through the call's media.
    /// `Ok(None)`: nothing to rewrite (no anchored media, or no SDP body), send
    /// the body as it is.
    fn media_sdp(
        &self,
        id: u64,
        from: Side,
        offer: bool,
        content: Option<(&str, &[u8])>,
        security: MediaSecurity,
    ) -> Result<Option<Bytes>, MediaRefusal> {
        let Some(call) = self.calls.get(&id) else {
            return Ok(None);
        };
        let Some(handle) = call.media.as_ref() else {
            return Ok(None);
        };
        let Some((ct, body)) = content.filter(|(ct, b)| media::is_sdp(ct) && !b.is_empty()) else {
            return Ok(None);
        };
        let _ = ct;
        let policy = call.media_policy;
        if from == Side::B && !offer && call.host_answer.is_some() {
            // The answer to the host's offer: the caller, already answered,
            // is connected and hears nothing new in SIP.
            handle.answer_to_host_offer(body, security, policy)?;
            return Ok(None);
        }
        let out = if offer {
            handle.offer(from.media(), body, security, policy)?
        } else {
            handle.answer(from.media(), body, security, policy)?
        };
        Ok(Some(Bytes::from(out)))
    }

    /// Sends one fork of the initial INVITE on `leg` (with `leg.cseq`).
    pub(crate) fn send_fork(
        &mut self,
        now: Instant,
        id: u64,
        leg: &Leg,
        auth: Option<(&str, &str)>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let offer = call.offer.clone();
        let content = offer.as_ref().map(|(ct, body)| (ct.as_str(), &body[..]));
        let branch = transaction::new_branch();
        let (bytes, sent) = self.leg_request(leg, Method::Invite, leg.cseq, &branch, content, auth);
        let (dest, local) = (leg.peer, leg.local);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let i = call.forks.len();
        // Most calls have one fork: room for four would be kept all call long.
        call.forks.reserve_exact(1);
        call.forks.push(Fork {
            branch: branch.clone(),
            peer: dest,
            local,
            remote_uri: leg.remote_uri.clone(),
            invite: sent.clone(),
            provisional: false,
            final_status: None,
            cancel_pending: false,
            extension: None,
        });
        self.send_request(
            now,
            branch,
            bytes,
            |tx| ClientEntry {
                tx,
                dest,
                local,
                call: Some(id),
                role: ClientRole::Fork(i),
                invite: Some(Box::new(sent)),
            },
            true,
            dest,
        );
    }

    /// Answers a trunk's 401/407 to our INVITE once, with the trunk's credentials
    /// (RFC 3261 §22.2): the same dialog, the next CSeq, a new branch.
    fn retry_with_credentials(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) -> bool {
        let status = msg.status().unwrap_or(0);
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some((username, password)) = call.trunk_auth.take() else {
            return false;
        };
        let (challenge_header, answer_header) = if status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let uri = call.forks[i].invite.uri.clone();
        let Some((_, credentials)) = digest_auth::answer_challenges(
            msg.headers_named(challenge_header),
            "INVITE",
            &uri,
            &username,
            &password,
            &token(8),
        ) else {
            return false;
        };
        call.b.cseq += 1;
        let leg = call.b.clone();
        let value = credentials.header_value();
        self.send_fork(now, id, &leg, Some((answer_header, &value)));
        true
    }

    pub(crate) fn schedule_call(&mut self, id: u64) {
        if let Some(at) = self.calls.get(&id).and_then(|c| c.next_deadline()) {
            self.timers.schedule(TimerKey::Call(id), at);
        }
    }

    /// Writes the call record (once) and lets the call linger briefly so late
    /// responses on its legs are still recognised.
    fn finish_call(
        &mut self,
        now: Instant,
        id: u64,
        disposition: Disposition,
        code: u16,
        by: &str,
    ) {
        let now_ms = self.shared.unix_ms(now);
        let linger = self.shared.config.t1 * 64;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let (disposition, code) = if call.host_answered {
            // The caller was answered (by the host): whatever ends the call
            // now, the caller's dialog is hung up and the call was answered.
            (Disposition::Answered, 200)
        } else {
            (disposition, code)
        };
        if call.host_answered && !call.a_bye && call.state != State::Ended {
            call.state = State::Ended;
            self.send_bye(now, id, Side::A);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.state = State::Ended;
        call.ok_retransmit = None;
        call.picker_ok = None;
        call.app = None;
        // No fork is sent or answered at the host any more: the offers need
        // not linger with the call.
        call.caller_offer = None;
        call.offer = None;
        // Nor is the call routed again: its routing request, the ring steps
        // left and the extensions rung go too.
        call.route = None;
        call.steps = VecDeque::new();
        call.rung = Vec::new();
        self.shared
            .pickup
            .clear_ringing(call.tenant, self.index, id);
        // Dropping the handle stops the relay and frees the ports.
        let media = call.media.take().map(|m| m.stats()).unwrap_or_default();
        if !call.cdr_written {
            call.cdr_written = true;
            self.shared.call_ended();
            let cdr = Cdr {
                ended_at_ms: now_ms,
                disposition,
                sip_code: code,
                hangup_by: by.to_string(),
                media,
                ..call.record()
            };
            tracing::debug!(
                call = id,
                disposition = disposition.as_str(),
                code,
                "call ended"
            );
            self.out.push_back(Output::Cdr(cdr));
        }
        self.retire(now, id, linger);
    }

    /// Trades ended call `id` for the little it keeps while something can
    /// still come on its legs ([`Ended`]), or forgets it when nothing can.
    ///
    /// A fork without its final response may still ring or answer until
    /// 64*T1 (`linger`) after our CANCEL; an answer is sent again until it is
    /// acknowledged, for at most 64*T1 after it (RFC 3261 §13.3.1.4). A call
    /// that transferred or was picked up keeps the whole `linger`.
    fn retire(&mut self, now: Instant, id: u64, linger: Duration) {
        let now_ms = self.shared.unix_ms(now);
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let Call {
            a,
            b,
            b_ack,
            forks,
            mut other_dialogs,
            answered_ms,
            ..
        } = *call;
        let forks: Vec<(usize, Fork)> = forks
            .into_iter()
            .enumerate()
            .filter(|(_, f)| f.final_status.is_none())
            .collect();
        let reap_at = if !forks.is_empty() || !other_dialogs.is_empty() {
            now + linger
        } else if let Some(answered_ms) = answered_ms {
            let since = u64::try_from(now_ms.saturating_sub(answered_ms)).unwrap_or(0);
            now + linger.saturating_sub(Duration::from_millis(since))
        } else {
            now
        };
        other_dialogs.push(a.call_id);
        if reap_at <= now {
            self.timers.cancel(&TimerKey::Call(id));
            self.forget_dialogs(&b.call_id, &other_dialogs);
            return;
        }
        let ended = Ended {
            b,
            b_ack,
            forks,
            call_ids: other_dialogs,
            reap_at,
        };
        self.ended.insert(id, Box::new(ended));
        self.timers.schedule(TimerKey::Call(id), reap_at);
    }

    /// Announces that call `id` was just answered ([`Output::Answered`]),
    /// when the host tracks answered calls.
    pub(crate) fn announce_answered(&mut self, id: u64) {
        if !self.shared.config.track_answered {
            return;
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let cdr = call.record();
        self.out.push_back(Output::Answered(cdr));
    }

    fn reap(&mut self, id: u64) {
        if let Some(ended) = self.ended.remove(&id) {
            self.forget_dialogs(&ended.b.call_id, &ended.call_ids);
        }
    }

    /// Takes a finished call's Call-IDs out of the dialog index.
    fn forget_dialogs(&mut self, callee: &str, others: &[String]) {
        self.dialogs.remove(callee);
        for call_id in others {
            self.dialogs.remove(call_id);
        }
    }

    /// Sends a final or provisional response to the caller's INVITE.
    pub(crate) fn answer_a(
        &mut self,
        now: Instant,
        id: u64,
        status: u16,
        reason: &str,
        content: Option<(&str, &[u8])>,
    ) -> Option<Bytes> {
        self.answer_a_with(now, id, (status, reason), &[], content)
    }

    /// [`Shard::answer_a`] with `headers` added.
    pub(crate) fn answer_a_with(
        &mut self,
        now: Instant,
        id: u64,
        (status, reason): (u16, &str),
        headers: &[(&str, String)],
        content: Option<(&str, &[u8])>,
    ) -> Option<Bytes> {
        let call = self.calls.get_mut(&id)?;
        if call.a_answered {
            // The caller's INVITE has its 2xx: nothing else answers it.
            return None;
        }
        call.a_answered = (200..300).contains(&status);
        let call = self.calls.get(&id)?;
        let mut w =
            call.a_invite
                .response(status, reason, Some(&call.a.local_tag), self.user_agent());
        if status > 100 && status < 300 {
            w.header("Contact", self.contact(call.a.peer.transport, call.a.local));
        }
        if (200..300).contains(&status) {
            w.header("Allow", ALLOW);
        }
        for (name, value) in headers {
            w.header(name, value);
        }
        let bytes = w.finish(content);
        let key = call.a_key.clone();
        self.respond(now, &key, status, bytes.clone());
        Some(bytes)
    }

    pub(crate) fn send_cancel(&mut self, now: Instant, id: u64, fork: usize) {
        let Some(f) = self
            .calls
            .get_mut(&id)
            .and_then(|call| call.forks.get_mut(fork))
        else {
            return;
        };
        if let Some(cancel) = cancel_fork(f) {
            self.send_fork_cancel(now, id, cancel);
        }
    }

    fn send_fork_cancel(&mut self, now: Instant, id: u64, cancel: ForkCancel) {
        let ForkCancel {
            key,
            bytes,
            dest,
            local,
        } = cancel;
        self.send_request(
            now,
            key,
            bytes,
            |tx| ClientEntry {
                tx,
                dest,
                local,
                call: Some(id),
                role: ClientRole::Cancel,
                invite: None,
            },
            false,
            dest,
        );
    }

    pub(crate) fn cancel_forks(&mut self, now: Instant, id: u64, except: Option<usize>) {
        let n = self.calls.get(&id).map_or(0, |c| c.forks.len());
        for i in 0..n {
            if Some(i) != except {
                self.send_cancel(now, id, i);
            }
        }
    }

    /// CANCEL from the caller (already answered 200 by the dispatcher).
    pub(crate) fn cancel_call(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !matches!(call.state, State::Routing | State::Ringing) {
            return;
        }
        call.cancelled = true;
        self.cancel_forks(now, id, None);
        let cancelled = Error::RequestTerminated;
        self.answer_a(now, id, cancelled.status(), cancelled.reason(), None);
        self.finish_call(
            now,
            id,
            Disposition::Cancelled,
            cancelled.status(),
            "caller",
        );
    }

    fn send_bye(&mut self, now: Instant, id: u64, side: Side) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if side == Side::A {
            if call.a_bye {
                return;
            }
            call.a_bye = true;
        }
        let leg = call.leg_mut(side);
        leg.cseq += 1;
        let leg = leg.clone();
        let branch = transaction::new_branch();
        let (bytes, _) = self.leg_request(&leg, Method::Bye, leg.cseq, &branch, None, None);
        self.send_on_leg(now, &leg, branch, bytes, Some(id), ClientRole::Bye);
    }

    /// Sends a non-INVITE request already written for `leg`'s dialog, in a
    /// client transaction of `role` (of call `call`, when its answer matters).
    pub(crate) fn send_on_leg(
        &mut self,
        now: Instant,
        leg: &Leg,
        branch: String,
        bytes: Bytes,
        call: Option<u64>,
        role: ClientRole,
    ) {
        let (dest, local) = (leg.peer, leg.local);
        self.send_request(
            now,
            branch,
            bytes,
            |tx| ClientEntry {
                tx,
                dest,
                local,
                call,
                role,
                invite: None,
            },
            false,
            dest,
        );
    }

    /// Points `leg` at `number` on `trunk`, presenting `presented` as the
    /// caller.
    pub(crate) fn aim_at_trunk(leg: &mut Leg, trunk: &TrunkEntry, number: &str, presented: &str) {
        let transport_param = match trunk.peer.transport {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
            TransportKind::Tls => ";transport=tls",
            // Trunks are never WebSocket peers (refused when provisioned).
            TransportKind::Wss => ";transport=ws",
        };
        leg.local_uri = format!("<sip:{presented}@{}>", trunk.host);
        leg.remote_uri = format!("<sip:{number}@{}>", trunk.host);
        leg.remote_target = format!(
            "sip:{number}@{}:{}{transport_param}",
            trunk.host, trunk.port
        );
        leg.peer = trunk.peer;
        leg.local = None;
    }

    /// Forks `template` to `bindings`, the registered phones of extension
    /// `ext`, each fork remembering the extension it rings.
    pub(crate) fn fork_to_extension(
        &mut self,
        now: Instant,
        id: u64,
        template: &Leg,
        domain: &str,
        ext: &str,
        bindings: Vec<crate::registrar::Binding>,
    ) {
        for binding in bindings {
            let mut leg = template.clone();
            leg.remote_uri = format!("<sip:{ext}@{domain}>");
            leg.remote_target = binding.contact.clone();
            // A Path recorded at registration is the request's route set
            // (RFC 3327 §5.4); the peer is the proxy it names.
            leg.route_set = binding.path;
            leg.peer = binding.peer;
            // Another node's binding names that node's socket: any of ours will do.
            let own = *binding.node == *self.shared.config.registrar.node;
            leg.local = own.then_some(binding.local);
            self.send_fork(now, id, &leg, None);
            if let Some(fork) = self.calls.get_mut(&id).and_then(|c| c.forks.last_mut()) {
                fork.extension = Some(ext.to_string());
            }
        }
    }

    /// Hangs up an answered call from the host's side.
    pub(crate) fn hang_up(&mut self, now: Instant, id: u64, reason: &str) {
        tracing::info!(call = id, reason, "host hangs up call");
        self.abandon_transfer(now, id);
        self.send_bye(now, id, Side::A);
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.host_answer.is_none() && !c.transferor_left)
        {
            self.send_bye(now, id, Side::B);
        }
        self.finish_call(now, id, Disposition::Answered, 200, "system");
    }

    /// An ACK in a call: for our non-2xx (absorbed by the transaction) or for a 2xx.
    pub(crate) fn on_ack_for_call(&mut self, now: Instant, id: u64, msg: &Msg, for_non_2xx: bool) {
        if for_non_2xx {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.picker_ok.is_some() && msg.call_id() == call.b.call_id {
            call.picker_ok = None;
            self.schedule_call(id);
            return;
        }
        if msg.call_id() != call.a.call_id {
            return;
        }
        call.ok_retransmit = None;
        if call.host_answer.is_some() {
            if call.state == State::Answered && call.hang_up_on_ack {
                call.hang_up_on_ack = false;
                self.send_bye(now, id, Side::A);
                self.finish_call(now, id, Disposition::Answered, 200, "system");
            }
            self.schedule_call(id);
            return;
        }
        if call.state == State::Answered && call.b_ack.is_none() {
            // Late offer: the caller's answer travels in its ACK.
            let leg = call.b.clone();
            let security = MediaSecurity {
                from_secure: call.a.peer.transport.is_secure(),
                to_secure: leg.peer.transport.is_secure(),
                to_webrtc: is_browser(leg.peer.transport),
            };
            let rewritten = match self.media_sdp(id, Side::A, false, msg.content(), security) {
                Ok(r) => r,
                Err(refusal) => {
                    tracing::info!(call = id, reason = %refusal.reason, "caller's answer refused");
                    let branch = transaction::new_branch();
                    let (ack, _) =
                        self.leg_request(&leg, Method::Ack, leg.cseq, &branch, None, None);
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.b_ack = Some(ack.clone());
                    }
                    self.transmit(leg.peer, leg.local, ack);
                    self.hang_up(now, id, "unacceptable answer in ACK");
                    return;
                }
            };
            let ct = msg.content().map_or("application/sdp", |(ct, _)| ct);
            let content = match &rewritten {
                Some(body) => Some((ct, &body[..])),
                None => msg.content(),
            };
            let branch = transaction::new_branch();
            let (bytes, _) = self.leg_request(&leg, Method::Ack, leg.cseq, &branch, content, None);
            if let Some(call) = self.calls.get_mut(&id) {
                call.b_ack = Some(bytes.clone());
            }
            self.transmit(leg.peer, leg.local, bytes);
        }
        self.schedule_call(id);
    }

    /// A 2xx whose transaction is gone: repeat our ACK (§13.2.2.4).
    pub(crate) fn on_stray_2xx(&mut self, _now: Instant, id: u64, msg: &Msg) {
        let Some((b, b_ack)) = self.callee_dialog(id) else {
            return;
        };
        if msg.call_id() == b.call_id
            && let Some(ack) = b_ack.clone()
        {
            let (p, l) = (b.peer, b.local);
            self.transmit(p, l, ack);
        }
    }

    /// Call `id`'s callee leg and our ACK of its 2xx, whether the call is in
    /// progress or ended.
    fn callee_dialog(&self, id: u64) -> Option<(&Leg, &Option<Bytes>)> {
        match (self.calls.get(&id), self.ended.get(&id)) {
            (Some(call), _) => Some((&call.b, &call.b_ack)),
            (None, Some(ended)) => Some((&ended.b, &ended.b_ack)),
            (None, None) => None,
        }
    }

    /// A request inside one of the call's dialogs.
    pub(crate) fn on_in_dialog(
        &mut self,
        now: Instant,
        id: u64,
        msg: Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            // The call ended: its dialogs are gone (§12.2.2).
            self.refuse(&msg, peer, local, &Error::NoSuchCall, &[]);
            return;
        };
        let side = if msg.call_id() == call.a.call_id {
            Side::A
        } else {
            Side::B
        };
        let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_string));
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_string));
        let leg = call.leg(side);
        let tags_match = to_tag.as_deref() == Some(leg.local_tag.as_str())
            && (leg.remote_tag.is_none() || from_tag == leg.remote_tag);
        if !tags_match || call.state == State::Ended {
            self.refuse(&msg, peer, local, &Error::NoSuchCall, &[]);
            return;
        }
        let Some(method) = msg.method() else {
            return;
        };
        let ctx = ReqCtx::new(&msg, peer.addr);
        let state = call.state;
        if method == Method::Bye {
            if side == Side::A
                && let Some(call) = self.calls.get_mut(&id)
            {
                call.a_bye = true;
            }
            let ok = ctx
                .response(200, "OK", None, self.user_agent())
                .finish(None);
            self.respond_new_server(now, key, false, peer, local, Some(id), 200, ok);
            match state {
                State::Answered if side == Side::B && self.transferring(id) => {
                    // The transferor hangs up after its REFER was accepted:
                    // the caller waits for the transfer target.
                    if let Some(t) = self.calls.get_mut(&id).and_then(|c| c.transfer.as_mut()) {
                        t.transferor_gone = true;
                    }
                }
                State::Answered => {
                    self.abandon_transfer(now, id);
                    let gone = self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.host_answer.is_some() || c.transferor_left);
                    if !gone {
                        self.send_bye(now, id, side.other());
                    }
                    self.finish_call(now, id, Disposition::Answered, 200, side.name());
                }
                State::Routing | State::Ringing if side == Side::A => {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.cancelled = true;
                    }
                    self.cancel_forks(now, id, None);
                    let cancelled = Error::RequestTerminated;
                    self.answer_a(now, id, cancelled.status(), cancelled.reason(), None);
                    self.finish_call(
                        now,
                        id,
                        Disposition::Cancelled,
                        cancelled.status(),
                        "caller",
                    );
                }
                _ => {}
            }
            return;
        }
        if state != State::Answered {
            let bytes = ctx
                .refusal(&Error::RequestPending, self.user_agent())
                .finish(None);
            self.respond_new_server(
                now,
                key,
                method == Method::Invite,
                peer,
                local,
                Some(id),
                Error::RequestPending.status(),
                bytes,
            );
            return;
        }
        let invite = method == Method::Invite;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(answer) = call.host_answer.clone() {
            self.answer_in_host_dialog(
                now,
                id,
                (&ctx, msg.content()),
                method,
                answer,
                (peer, local, key),
            );
            return;
        }
        if method == Method::Refer {
            self.on_refer(now, id, side, &msg, &ctx, (peer, local, key));
            return;
        }
        if invite && call.pending.values().any(|p| p.invite) {
            let bytes = ctx
                .refusal(&Error::RequestPending, self.user_agent())
                .finish(None);
            let pending = Error::RequestPending.status();
            self.respond_new_server(now, key, true, peer, local, Some(id), pending, bytes);
            return;
        }
        // Relay into the other dialog.
        let reliable = peer.transport != TransportKind::Udp;
        let timers = self.timers_cfg();
        let tx = if invite {
            ServerTx::Invite(transaction::ServerInvite::new(now, reliable, timers))
        } else {
            ServerTx::NonInvite(transaction::ServerNonInvite::new(now, reliable, timers))
        };
        self.servers.insert(
            key.clone(),
            Box::new(ServerEntry {
                tx,
                peer,
                local,
                call: Some(id),
            }),
        );
        if invite {
            let trying = ctx
                .response(100, "Trying", None, self.user_agent())
                .finish(None);
            self.respond(now, &key, 100, trying);
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // A new offer in the dialog (re-INVITE, UPDATE) goes through the media.
        let offer = (invite || method == Method::Update)
            && msg
                .content()
                .is_some_and(|(ct, b)| media::is_sdp(ct) && !b.is_empty());
        let security = MediaSecurity {
            from_secure: peer.transport.is_secure(),
            to_secure: call.leg(side.other()).peer.transport.is_secure(),
            to_webrtc: is_browser(call.leg(side.other()).peer.transport),
        };
        let rewritten = if offer {
            match self.media_sdp(id, side, true, msg.content(), security) {
                Ok(r) => r,
                Err(refusal) => {
                    tracing::info!(call = id, reason = %refusal.reason, "offer in dialog refused");
                    let bytes = ctx
                        .refusal(&refusal.error(), self.user_agent())
                        .finish(None);
                    self.respond(now, &key, refusal.status, bytes);
                    return;
                }
            }
        } else {
            None
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let other = call.leg_mut(side.other());
        other.cseq += 1;
        let leg = other.clone();
        let branch = transaction::new_branch();
        let ct = msg.content().map_or("application/sdp", |(ct, _)| ct);
        let content = match &rewritten {
            Some(body) => Some((ct, &body[..])),
            None => msg.content(),
        };
        let (bytes, sent) = self.leg_request(&leg, method, leg.cseq, &branch, content, None);
        if let Some(call) = self.calls.get_mut(&id) {
            call.pending.insert(
                branch.clone(),
                Pending {
                    server: key,
                    origin: side,
                    ctx,
                    invite,
                    cseq: leg.cseq,
                    offer,
                },
            );
        }
        let (dest, local) = (leg.peer, leg.local);
        self.send_request(
            now,
            branch,
            bytes,
            |tx| ClientEntry {
                tx,
                dest,
                local,
                call: Some(id),
                role: ClientRole::Relay,
                invite: invite.then(|| Box::new(sent)),
            },
            invite,
            dest,
        );
    }

    /// A request in the dialog of a call the host answered itself: a
    /// re-INVITE or UPDATE (a session refresh, hold) gets the host's answer
    /// again; anything else is acknowledged with 200.
    fn answer_in_host_dialog(
        &mut self,
        now: Instant,
        id: u64,
        (ctx, ctx_content): (&ReqCtx, Option<(&str, &[u8])>),
        method: Method,
        answer: Bytes,
        (peer, local, key): (Peer, SocketAddr, Key),
    ) {
        let invite = method == Method::Invite;
        let mut w = ctx.response(200, "OK", None, self.user_agent());
        let content = if invite || method == Method::Update {
            w.header("Contact", self.contact(peer.transport, Some(local)));
            Some(("application/sdp", &answer[..]))
        } else {
            None
        };
        let ok = w.finish(content);
        self.respond_new_server(now, key, invite, peer, local, Some(id), 200, ok);
        if method == Method::Info {
            self.info_key(now, id, ctx_content);
        }
    }

    /// A response (passed up by its client transaction) on one of the call's legs.
    pub(crate) fn on_call_response(
        &mut self,
        now: Instant,
        id: u64,
        role: ClientRole,
        branch: &str,
        msg: &Msg,
    ) {
        match role {
            ClientRole::Fork(i) => self.on_fork_response(now, id, i, msg),
            ClientRole::Relay => self.on_relay_response(now, id, branch, msg),
            ClientRole::Cancel | ClientRole::Bye | ClientRole::Notify => {}
        }
    }

    fn on_fork_response(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        if self.is_transfer_fork(id, i) {
            self.on_transfer_response(now, id, i, msg);
            return;
        }
        let status = msg.status().unwrap_or(0);
        if (200..300).contains(&status)
            && self
                .callee_dialog(id)
                .is_some_and(|(b, _)| answers_leg(b, msg))
        {
            // The answering phone sent its 2xx again: our ACK was lost.
            self.on_stray_2xx(now, id, msg);
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            self.on_ended_fork_response(now, id, i, msg);
            return;
        };
        let Some(fork) = call.forks.get_mut(i) else {
            return;
        };
        if status < 200 {
            fork.provisional = true;
            let cancel_now = fork.cancel_pending;
            let relay = status > 100 && call.state == State::Ringing && !call.cancelled;
            if cancel_now {
                self.send_cancel(now, id, i);
            }
            if relay {
                match self.fork_sdp(id, i, msg) {
                    Ok(Some(body)) => {
                        let ct = msg.content().map_or("application/sdp", |(ct, _)| ct);
                        self.answer_a(now, id, status, msg.reason(), Some((ct, &body)));
                    }
                    Ok(None) => {
                        self.answer_a(now, id, status, msg.reason(), msg.content());
                    }
                    Err(refusal) => {
                        // Early media we cannot anchor: ring without it.
                        tracing::debug!(call = id, reason = %refusal.reason, "early SDP dropped");
                        self.answer_a(now, id, status, msg.reason(), None);
                    }
                }
            }
            return;
        }
        fork.final_status = Some(status);
        if status < 300 {
            if call.state == State::Ringing && !call.cancelled {
                self.on_answer(now, id, i, msg);
            } else {
                self.drop_late_answer(now, id, i, msg);
            }
            return;
        }
        if matches!(status, 401 | 407) && self.retry_with_credentials(now, id, i, msg) {
            return;
        }
        self.fork_failed(now, id, status, msg.reason());
    }

    /// A response on fork `i` of ended call `id`: a fork that rings only now
    /// is cancelled, an answer is acknowledged and hung up.
    fn on_ended_fork_response(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        let status = msg.status().unwrap_or(0);
        let Some(ended) = self.ended.get_mut(&id) else {
            return;
        };
        let Some(at) = ended.forks.iter().position(|(n, _)| *n == i) else {
            return;
        };
        if status < 200 {
            let fork = &mut ended.forks[at].1;
            fork.provisional = true;
            if fork.cancel_pending
                && let Some(cancel) = cancel_fork(fork)
            {
                self.send_fork_cancel(now, id, cancel);
            }
            return;
        }
        let (_, fork) = ended.forks.swap_remove(at);
        if status < 300 {
            let leg = answered_leg(&ended.b, &fork, msg);
            self.hang_up_answer(now, leg);
        }
    }

    /// A fork ended without answering: remember the most useful failure; when the
    /// whole current step has failed, go on to the next (a 6xx ends the search,
    /// RFC 3261 §16.7).
    fn fork_failed(&mut self, now: Instant, id: u64, status: u16, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call
            .best_final
            .as_ref()
            .is_none_or(|(s, _)| better_final(status, *s))
        {
            call.best_final = Some((status, reason.to_string()));
        }
        if status >= 600 {
            call.steps.clear();
        }
        let step_done = call.forks[call.step_start..]
            .iter()
            .all(|f| f.final_status.is_some());
        if step_done && call.state == State::Ringing && !call.cancelled {
            self.next_step(now, id);
        }
    }

    /// Passes the SDP of fork `i`'s response through the call's media: an answer
    /// to the caller's offer, or (no offer in the INVITE) the callee's offer.
    pub(crate) fn fork_sdp(
        &self,
        id: u64,
        i: usize,
        msg: &Msg,
    ) -> Result<Option<Bytes>, MediaRefusal> {
        let Some(call) = self.calls.get(&id) else {
            return Ok(None);
        };
        let Some(fork) = call.forks.get(i) else {
            return Ok(None);
        };
        let security = MediaSecurity {
            from_secure: fork.peer.transport.is_secure(),
            to_secure: call.a.peer.transport.is_secure(),
            to_webrtc: is_browser(call.a.peer.transport),
        };
        let offer = !call.offer_in_invite;
        self.media_sdp(id, Side::B, offer, msg.content(), security)
    }

    /// The answering fork's SDP was refused: end that fork's dialog, stop the
    /// others and fail the call.
    fn refuse_answer(&mut self, now: Instant, id: u64, i: usize, msg: &Msg, refusal: MediaRefusal) {
        tracing::info!(call = id, reason = %refusal.reason, "callee's SDP refused");
        self.drop_late_answer(now, id, i, msg);
        self.cancel_forks(now, id, Some(i));
        if let Some(call) = self.calls.get_mut(&id) {
            call.cancelled = true;
        }
        self.refuse_call(now, id, &refusal.error());
    }

    pub(crate) fn on_answer(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        let rewritten = match self.fork_sdp(id, i, msg) {
            Ok(r) => r,
            Err(refusal) => {
                self.refuse_answer(now, id, i, msg, refusal);
                return;
            }
        };
        let now_ms = self.shared.unix_ms(now);
        let t1 = self.shared.config.t1;
        let max = self.shared.config.max_call_duration;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let fork = call.forks[i].clone();
        call.state = State::Answered;
        self.shared
            .pickup
            .clear_ringing(call.tenant, self.index, id);
        if call.host_answer.take().is_some() {
            // The caller, answered by the host, is now connected to the
            // phone: the call keeps its answer time and its duration limit.
            call.app = None;
        } else {
            call.answered_ms = Some(now_ms);
            call.max_deadline = Some(now + max);
            self.announce_answered(id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.b = answered_leg(&call.b, &fork, msg);
        call.answered_by = fork.extension.clone();
        let offer_in_invite = call.offer_in_invite;
        let leg = call.b.clone();
        if offer_in_invite {
            let branch = transaction::new_branch();
            let (ack, _) = self.leg_request(&leg, Method::Ack, leg.cseq, &branch, None, None);
            if let Some(call) = self.calls.get_mut(&id) {
                call.b_ack = Some(ack.clone());
            }
            self.transmit(leg.peer, leg.local, ack);
        }
        self.cancel_forks(now, id, Some(i));
        let ct = msg.content().map_or("application/sdp", |(ct, _)| ct);
        let content = match &rewritten {
            Some(body) => Some((ct, &body[..])),
            None => msg.content(),
        };
        let ok = self.answer_a(now, id, msg.status().unwrap_or(200), msg.reason(), content);
        if let (Some(ok), Some(call)) = (ok, self.calls.get_mut(&id)) {
            call.ok_retransmit = Some(Box::new(Retransmit::new(ok, now, t1)));
        }
        if let Some(call) = self.calls.get(&id)
            && let Some(media) = call.media.as_ref()
        {
            media.connected(&call.caller, &call.callee);
        }
        tracing::debug!(call = id, fork = i, "call answered");
        self.schedule_call(id);
    }

    /// A second fork answered, or an answer raced a CANCEL: acknowledge and end it.
    pub(crate) fn drop_late_answer(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(fork) = call.forks.get(i) else {
            return;
        };
        let leg = answered_leg(&call.b, fork, msg);
        self.hang_up_answer(now, leg);
    }

    /// Acknowledges the 2xx that set up `leg` and hangs it up at once.
    fn hang_up_answer(&mut self, now: Instant, leg: Leg) {
        let ack_branch = transaction::new_branch();
        let (ack, _) = self.leg_request(&leg, Method::Ack, leg.cseq, &ack_branch, None, None);
        self.transmit(leg.peer, leg.local, ack);
        let bye_branch = transaction::new_branch();
        let (bye, _) = self.leg_request(&leg, Method::Bye, leg.cseq + 1, &bye_branch, None, None);
        let dest = leg.peer;
        self.send_request(
            now,
            bye_branch,
            bye,
            |tx| ClientEntry {
                tx,
                dest,
                local: leg.local,
                call: None,
                role: ClientRole::Bye,
                invite: None,
            },
            false,
            dest,
        );
    }

    fn on_relay_response(&mut self, now: Instant, id: u64, branch: &str, msg: &Msg) {
        let status = msg.status().unwrap_or(0);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = call.pending.get(branch).cloned() else {
            return;
        };
        if status >= 200 {
            call.pending.remove(branch);
            // Most calls relay a request now and then: the table's room is
            // not kept for the rest of the call.
            call.pending.shrink_to_fit();
        }
        if status == 100 {
            return;
        }
        let far = call.leg(p.origin.other()).clone();
        let origin = call.leg(p.origin).clone();
        if p.invite && (200..300).contains(&status) {
            // Acknowledge the 2xx on the far leg ourselves.
            let ack_branch = transaction::new_branch();
            let (ack, _) = self.leg_request(&far, Method::Ack, p.cseq, &ack_branch, None, None);
            self.transmit(far.peer, far.local, ack);
        }
        let mut w = p
            .ctx
            .response(status, msg.reason(), None, self.user_agent());
        if p.invite && status > 100 && status < 300 {
            w.header("Contact", self.contact(origin.peer.transport, origin.local));
        }
        // The answer to a relayed offer; a 2xx to an offerless re-INVITE carries
        // the far leg's offer.
        let security = MediaSecurity {
            from_secure: far.peer.transport.is_secure(),
            to_secure: origin.peer.transport.is_secure(),
            to_webrtc: is_browser(origin.peer.transport),
        };
        let sdp_role = if p.offer && status < 300 {
            Some(false)
        } else if p.invite && !p.offer && (200..300).contains(&status) {
            Some(true)
        } else {
            None
        };
        let rewritten = match sdp_role {
            Some(is_offer) => {
                self.media_sdp(id, p.origin.other(), is_offer, msg.content(), security)
            }
            None => Ok(None),
        };
        let ct = msg.content().map_or("application/sdp", |(ct, _)| ct);
        let content = match &rewritten {
            Ok(Some(body)) => Some((ct, &body[..])),
            Ok(None) => msg.content(),
            Err(refusal) => {
                tracing::info!(call = id, reason = %refusal.reason, "SDP in dialog dropped");
                None
            }
        };
        let bytes = w.finish(content);
        self.respond(now, &p.server, status, bytes);
    }

    /// The relay saw no media on call `id` for its idle timeout: an answered call
    /// is hung up (media before the answer is not expected).
    pub fn media_idle(&mut self, now: Instant, id: u64) {
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.state == State::Answered)
        {
            self.hang_up(now, id, "media stopped");
        }
    }

    /// A client transaction of the call timed out (Timer B or F).
    pub(crate) fn on_client_timeout(
        &mut self,
        now: Instant,
        id: u64,
        role: ClientRole,
        branch: &str,
    ) {
        match role {
            ClientRole::Fork(i) => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if call.forks.get(i).is_some_and(|f| f.final_status.is_none()) {
                    call.forks[i].final_status = Some(408);
                    let timeout = Error::RequestTimeout;
                    self.fork_failed(now, id, timeout.status(), timeout.reason());
                }
            }
            ClientRole::Relay => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if let Some(p) = call.pending.remove(branch) {
                    call.pending.shrink_to_fit();
                    let bytes = p
                        .ctx
                        .refusal(&Error::RequestTimeout, self.user_agent())
                        .finish(None);
                    self.respond(now, &p.server, Error::RequestTimeout.status(), bytes);
                }
            }
            ClientRole::Bye | ClientRole::Cancel | ClientRole::Notify => {}
        }
    }

    /// Timer H fired on the caller's INVITE: our final response was never ACKed.
    pub(crate) fn on_caller_ack_timeout(&mut self, _now: Instant, id: u64) {
        tracing::debug!(call = id, "caller never acknowledged the final response");
    }

    /// The call's own timer: ring timeout, 2xx retransmission, maximum duration,
    /// reaping.
    pub(crate) fn call_timeout(&mut self, now: Instant, id: u64) {
        let t2 = self.shared.config.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            if self.ended.get(&id).is_some_and(|e| now >= e.reap_at) {
                self.reap(id);
            }
            return;
        };
        match call.state {
            State::Routing if now >= call.ring_deadline => {
                tracing::warn!(call = id, "no routing decision in time");
                call.state = State::Ringing;
                self.refuse_call(now, id, &Error::RoutingTimeout);
            }
            State::Ringing if now >= call.ring_deadline => {
                // This step rang out: stop its forks and try the next one.
                call.rang_out = true;
                self.cancel_forks(now, id, None);
                self.next_step(now, id);
                return;
            }
            State::Answered => {
                if call.app.is_some() {
                    self.host_media_timeout(now, id);
                }
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if call.state != State::Answered {
                    self.schedule_call(id);
                    return;
                }
                for side in [Side::A, Side::B] {
                    let Some(call) = self.calls.get_mut(&id) else {
                        return;
                    };
                    let (leg, ok) = match side {
                        Side::A => (&call.a, &mut call.ok_retransmit),
                        Side::B => (&call.b, &mut call.picker_ok),
                    };
                    let Some(r) = ok.as_mut() else {
                        continue;
                    };
                    if now >= r.give_up {
                        *ok = None;
                        let who = match side {
                            Side::A => "caller never acknowledged 200 OK",
                            Side::B => "picker never acknowledged 200 OK",
                        };
                        self.hang_up(now, id, who);
                        return;
                    }
                    if now >= r.next {
                        r.interval = (r.interval * 2).min(t2);
                        r.next = now + r.interval;
                        let (bytes, p, l) = (r.bytes.clone(), leg.peer, leg.local);
                        self.transmit(p, l, bytes);
                    }
                }
                if self
                    .calls
                    .get(&id)
                    .and_then(|c| c.transfer.as_ref())
                    .is_some_and(|t| now >= t.deadline)
                {
                    self.transfer_timeout(now, id);
                }
                if let Some(call) = self.calls.get(&id)
                    && call.max_deadline.is_some_and(|d| now >= d)
                {
                    self.hang_up(now, id, "maximum call duration reached");
                    return;
                }
            }
            _ => {}
        }
        self.schedule_call(id);
    }

    /// Ends every call (BYE to both legs of answered calls, CANCEL and 503 for
    /// ringing ones) and writes their records.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            match call.state {
                State::Answered => self.hang_up(now, id, "shutting down"),
                State::Routing | State::Ringing => {
                    call.cancelled = true;
                    self.cancel_forks(now, id, None);
                    let down = Error::ServiceUnavailable;
                    self.answer_a(now, id, down.status(), down.reason(), None);
                    self.finish_call(now, id, Disposition::Failed, down.status(), "system");
                }
                State::Ended => {}
            }
        }
    }
}
