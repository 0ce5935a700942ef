//! Registering the host to a tenant's carrier (RFC 3261 §10.2): the client side of
//! REGISTER, one [`TrunkRegistration`] per trunk.
//!
//! Sans-IO like the rest of the core: the driver sends what
//! [`TrunkRegistration::poll_transmit`] hands out, feeds back every response with
//! [`TrunkRegistration::handle_response`], and calls
//! [`TrunkRegistration::handle_timeout`] at [`TrunkRegistration::poll_timeout`].
//!
//! One attempt is one REGISTER plus whatever it takes to answer it: a digest
//! challenge (401/407) is answered with the trunk's credentials, once per nonce;
//! a `423 Interval Too Brief` raises the asked expiry to the carrier's
//! `Min-Expires`. All requests share one Call-ID and From tag and count up the
//! CSeq; each has a new branch. A 2xx schedules a refresh at about 80 % of the
//! granted expiry; any other failure, or no final answer within the transaction
//! timeout, schedules a new attempt after a back-off that doubles up to a cap.
//! Each REGISTER runs in a [`transaction::ClientNonInvite`] (RFC 3261 §17.1.2):
//! over UDP it is retransmitted from T1, doubling up to T2 (Timer E, every T2
//! once a provisional answer came); over streams it is sent once; Timer F
//! (64*T1) ends an unanswered attempt.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use transaction::{ClientNonInvite, TimerEvent};

use crate::TransportKind;
use crate::call::token;
use crate::msg::{Method, Msg, NameAddr, Writer, via_transport};

/// Longest expiry a registration is asked for or believed, in seconds (one week);
/// anything a carrier says beyond this is cut to it.
const MAX_EXPIRES: u32 = 7 * 24 * 3600;
/// Challenges answered within one attempt before giving up (a carrier that keeps
/// sending fresh nonces must not keep us busy forever).
const MAX_AUTH_ROUNDS: u32 = 4;

/// Timers of a trunk registration; the defaults follow RFC 3261 and suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegTimers {
    /// First UDP retransmission interval (T1).
    pub t1: Duration,
    /// Longest UDP retransmission interval (T2). A REGISTER unanswered for
    /// 64*T1 (Timer F) fails the attempt.
    pub t2: Duration,
    /// Back-off after the first failure; it doubles with each further one ...
    pub retry_min: Duration,
    /// ... up to this.
    pub retry_max: Duration,
    /// A refresh is never scheduled sooner than this after a success (unless the
    /// granted expiry itself is shorter), so a carrier granting tiny expiries
    /// cannot make us spin.
    pub min_refresh: Duration,
}

impl Default for RegTimers {
    fn default() -> Self {
        RegTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            min_refresh: Duration::from_secs(1),
        }
    }
}

/// What a trunk registration needs to know. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkRegConfig {
    /// The user part of the address-of-record (`sip:<aor_user>@<host>`).
    pub aor_user: String,
    /// The carrier's host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    /// The user name to authenticate with.
    pub username: String,
    pub password: String,
    /// Our advertised SIP URI, sent as the Contact (where inbound calls go).
    pub contact: String,
    /// `host:port` for our Via, where the carrier sends its responses.
    pub via_sent_by: String,
    /// Expiry asked for, in seconds.
    pub expires: u32,
    /// Sent as `User-Agent` when set.
    pub user_agent: Option<String>,
    pub timers: RegTimers,
}

impl fmt::Debug for TrunkRegConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkRegConfig")
            .field("aor_user", &self.aor_user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("contact", &self.contact)
            .field("via_sent_by", &self.via_sent_by)
            .field("expires", &self.expires)
            .field("user_agent", &self.user_agent)
            .field("timers", &self.timers)
            .finish()
    }
}

/// Where a trunk registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// The first attempt (or one after a failure) is under way.
    Registering,
    /// The carrier accepted the binding until `until`; a refresh runs before then.
    Registered { until: Instant },
    /// The last attempt failed; the next starts at `retry_at`.
    Failed { reason: String, retry_at: Instant },
    /// [`TrunkRegistration::unregister`] was called; the `Expires: 0` is under way.
    Unregistering,
    /// The binding was removed (or the removal was abandoned); nothing more happens.
    Unregistered,
}

/// The REGISTER in flight.
#[derive(Debug, Clone)]
struct Pending {
    branch: String,
    cseq: u32,
    expires: u32,
    /// The nonce this request answered, if it carried credentials.
    nonce: Option<String>,
    /// Its client transaction (retransmissions and Timer F); dropped with the
    /// final answer, after which a retransmitted answer no longer matches.
    tx: ClientNonInvite,
}

/// The client side of registering one trunk to its carrier.
#[derive(Debug)]
pub struct TrunkRegistration {
    config: TrunkRegConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Expiry to ask for (raised by a 423).
    expires: u32,
    state: RegState,
    pending: Option<Pending>,
    outbox: VecDeque<Bytes>,
    refresh_at: Option<Instant>,
    /// Failures in a row, for the back-off.
    failures: u32,
    auth_rounds: u32,
}

impl TrunkRegistration {
    /// Starts registering: the first REGISTER is ready in
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn new(config: TrunkRegConfig, now: Instant) -> TrunkRegistration {
        let expires = config.expires.clamp(1, MAX_EXPIRES);
        let mut reg = TrunkRegistration {
            call_id: format!("trunkreg-{}", token(12)),
            from_tag: token(8),
            cseq: 0,
            expires,
            state: RegState::Registering,
            pending: None,
            outbox: VecDeque::new(),
            refresh_at: None,
            failures: 0,
            auth_rounds: 0,
            config,
        };
        reg.start_attempt(now);
        reg
    }

    /// Where the registration stands.
    pub fn state(&self) -> &RegState {
        &self.state
    }

    /// The Call-ID every REGISTER of this registration carries.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The next REGISTER (or retransmission) to send to the carrier.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None` once
    /// nothing more will happen.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        match &self.pending {
            Some(p) => consider(p.tx.poll_timeout()),
            None => {
                consider(self.refresh_at);
                if let RegState::Failed { retry_at, .. } = &self.state {
                    consider(Some(*retry_at));
                }
            }
        }
        if let RegState::Registered { until } = &self.state {
            consider(Some(*until));
        }
        next
    }

    /// Runs the timers due at `now`: retransmission, transaction timeout,
    /// refresh, retry, and the end of a binding.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = &mut self.pending {
            let mut timed_out = false;
            while let Some(event) = p.tx.handle_timeout(now) {
                match event {
                    TimerEvent::Retransmit(bytes) => self.outbox.push_back(bytes),
                    TimerEvent::TimedOut => {
                        timed_out = true;
                        break;
                    }
                    // Only after a final answer, when the transaction is gone.
                    TimerEvent::Terminated => break,
                }
            }
            if timed_out {
                self.pending = None;
                if self.state == RegState::Unregistering {
                    self.state = RegState::Unregistered;
                } else {
                    self.fail(now, "no response from the carrier".into(), None);
                }
                return;
            }
        }
        if let RegState::Registered { until } = self.state
            && now >= until
        {
            self.state = RegState::Registering;
        }
        if self.pending.is_some() {
            return;
        }
        if self.refresh_at.is_some_and(|at| now >= at) {
            self.start_attempt(now);
            return;
        }
        if let RegState::Failed { retry_at, .. } = self.state
            && now >= retry_at
        {
            self.state = RegState::Registering;
            self.start_attempt(now);
        }
    }

    /// Feeds a message received from the carrier. Returns whether it was the
    /// answer to our REGISTER in flight (anything else is ignored).
    pub fn handle_response(&mut self, bytes: &[u8], now: Instant) -> bool {
        let Ok(msg) = Msg::parse(bytes) else {
            return false;
        };
        let Some(status) = msg.status() else {
            return false;
        };
        let Some(pending) = &mut self.pending else {
            return false;
        };
        let ours = msg.call_id() == self.call_id
            && msg
                .cseq()
                .is_ok_and(|(n, m)| n == pending.cseq && m == Method::Register)
            && msg
                .top_via()
                .is_ok_and(|v| v.branch() == Some(pending.branch.as_str()));
        if !ours {
            return false;
        }
        if status < 200 {
            // Proceeding: from its next firing Timer E waits T2.
            pending.tx.on_response(now, status);
            return true;
        }
        let Some(pending) = self.pending.take() else {
            return false;
        };
        let unregistering = self.state == RegState::Unregistering;
        match status {
            200..=299 if unregistering => self.state = RegState::Unregistered,
            200..=299 => self.on_success(&msg, pending.expires, now),
            401 | 407 => {
                if let Err(reason) = self.answer_challenge(&msg, status, &pending, now) {
                    if unregistering {
                        self.state = RegState::Unregistered;
                    } else {
                        self.fail(now, reason.to_string(), None);
                    }
                }
            }
            423 if !unregistering => {
                let min = msg
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|&m| m > pending.expires && m <= MAX_EXPIRES);
                match min {
                    Some(m) => {
                        self.expires = m;
                        self.send_register(now, None);
                    }
                    None => self.fail(now, "423 without a usable Min-Expires".into(), None),
                }
            }
            _ if unregistering => self.state = RegState::Unregistered,
            _ => {
                let retry_after = msg
                    .header("Retry-After")
                    .and_then(|v| v.split([';', '(']).next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.fail(now, format!("{status} {}", msg.reason()), retry_after);
            }
        }
        true
    }

    /// Removes the binding (`Expires: 0`), e.g. on shutdown. Afterwards the state
    /// ends as [`RegState::Unregistered`] once the carrier answers or the
    /// transaction times out; when no binding exists, at once.
    pub fn unregister(&mut self, now: Instant) {
        self.refresh_at = None;
        match self.state {
            RegState::Unregistering | RegState::Unregistered => {}
            RegState::Failed { .. } => {
                self.pending = None;
                self.state = RegState::Unregistered;
            }
            RegState::Registering | RegState::Registered { .. } => {
                self.state = RegState::Unregistering;
                self.auth_rounds = 0;
                self.send_register(now, None);
            }
        }
    }

    /// A fresh attempt: a REGISTER without credentials.
    fn start_attempt(&mut self, now: Instant) {
        self.refresh_at = None;
        self.auth_rounds = 0;
        self.send_register(now, None);
    }

    fn on_success(&mut self, ok: &Msg, asked: u32, now: Instant) {
        let granted = self.granted_expiry(ok).unwrap_or(asked).min(MAX_EXPIRES);
        if granted == 0 {
            self.fail(now, "the carrier granted no time".into(), None);
            return;
        }
        let granted = Duration::from_secs(u64::from(granted));
        let refresh = (granted * 4 / 5)
            .max(self.config.timers.min_refresh)
            .min(granted);
        self.failures = 0;
        self.state = RegState::Registered {
            until: now + granted,
        };
        self.refresh_at = Some(now + refresh);
    }

    /// The expiry the 2xx grants our contact: its own `expires` parameter, else
    /// the Expires header, else (one contact only) that contact's parameter.
    fn granted_expiry(&self, ok: &Msg) -> Option<u32> {
        let ours = NameAddr::parse(&self.config.contact).uri.to_owned();
        let contacts: Vec<NameAddr<'_>> =
            ok.headers_named("Contact").map(NameAddr::parse).collect();
        if let Some(e) = contacts
            .iter()
            .find(|c| c.uri.eq_ignore_ascii_case(&ours))
            .and_then(NameAddr::expires)
        {
            return Some(e);
        }
        if let Some(e) = ok.expires() {
            return Some(e);
        }
        match contacts.as_slice() {
            [only] => only.expires(),
            _ => None,
        }
    }

    /// Answers a 401/407 with credentials for the nonce it carries. Fails when
    /// the challenge cannot be read, repeats the nonce just answered (the
    /// password is wrong), or the carrier keeps challenging.
    fn answer_challenge(
        &mut self,
        msg: &Msg,
        status: u16,
        pending: &Pending,
        now: Instant,
    ) -> Result<(), crate::Error> {
        let (challenge_header, answer_header) = if status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let (challenge, credentials) = digest_auth::answer_challenges(
            msg.headers_named(challenge_header),
            "REGISTER",
            &self.request_uri(),
            &self.config.username,
            &self.config.password,
            &token(8),
        )
        .ok_or(crate::Error::ChallengeUnanswerable(status))?;
        if pending.nonce.as_deref() == Some(challenge.nonce.as_str()) && !challenge.stale {
            return Err(crate::Error::CredentialsRejected(status));
        }
        self.auth_rounds += 1;
        if self.auth_rounds > MAX_AUTH_ROUNDS {
            return Err(crate::Error::TooManyChallenges(status));
        }
        self.send_register(
            now,
            Some((answer_header, credentials.header_value(), challenge.nonce)),
        );
        Ok(())
    }

    /// Schedules the next attempt after a back-off.
    fn fail(&mut self, now: Instant, reason: String, retry_after: Option<Duration>) {
        let timers = &self.config.timers;
        let doubling = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let mut delay = timers
            .retry_min
            .saturating_mul(doubling)
            .min(timers.retry_max);
        if let Some(after) = retry_after {
            delay = delay.max(after.min(timers.retry_max));
        }
        self.failures = self.failures.saturating_add(1);
        self.pending = None;
        self.refresh_at = None;
        self.state = RegState::Failed {
            reason,
            retry_at: now + delay,
        };
    }

    /// `sip:host:port` (with `;transport=tcp`, or `sips:` for TLS).
    fn request_uri(&self) -> String {
        let host = bracketed(&self.config.host);
        let port = self.config.port;
        match self.config.transport {
            TransportKind::Udp => format!("sip:{host}:{port}"),
            TransportKind::Tcp => format!("sip:{host}:{port};transport=tcp"),
            TransportKind::Tls | TransportKind::Wss => format!("sips:{host}:{port}"),
        }
    }

    /// Builds the next REGISTER (new CSeq and branch) and queues it.
    fn send_register(&mut self, now: Instant, auth: Option<(&str, String, String)>) {
        self.cseq = self.cseq.wrapping_add(1) & 0x7fff_ffff;
        let cseq = self.cseq;
        let branch = transaction::new_branch();
        let expires = if self.state == RegState::Unregistering {
            0
        } else {
            self.expires
        };
        let cfg = &self.config;
        let aor = format!("<sip:{}@{}>", cfg.aor_user, bracketed(&cfg.host));
        let contact = if cfg.contact.starts_with('<') {
            cfg.contact.clone()
        } else {
            format!("<{}>", cfg.contact)
        };
        let mut w = Writer::request(Method::Register, &self.request_uri());
        w.header(
            "Via",
            format_args!(
                "SIP/2.0/{} {};branch={branch};rport",
                via_transport(cfg.transport),
                cfg.via_sent_by
            ),
        )
        .header("Max-Forwards", 70)
        .header("From", format_args!("{aor};tag={}", self.from_tag))
        .header("To", &aor)
        .header("Call-ID", &self.call_id)
        .header("CSeq", format_args!("{cseq} REGISTER"))
        .header("Contact", contact)
        .header("Expires", expires);
        let mut nonce = None;
        if let Some((name, value, answered)) = auth {
            w.header(name, value);
            nonce = Some(answered);
        }
        if let Some(ua) = &cfg.user_agent {
            w.header("User-Agent", ua);
        }
        let bytes = w.finish(None);
        let reliable = cfg.transport != TransportKind::Udp;
        let timers = transaction::Timers {
            t1: cfg.timers.t1,
            t2: cfg.timers.t2,
            ..transaction::Timers::default()
        };
        let (tx, first) = ClientNonInvite::new(now, bytes, reliable, timers);
        self.outbox.push_back(first);
        self.pending = Some(Pending {
            branch,
            cseq,
            expires,
            nonce,
            tx,
        });
    }
}

/// An IPv6 address in brackets, anything else as it is.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use digest_auth::{Algorithm, Credentials, ha1};

    const REALM: &str = "carrier.example";

    fn config(transport: TransportKind) -> TrunkRegConfig {
        TrunkRegConfig {
            aor_user: "acct".into(),
            host: "gw.carrier.example".into(),
            port: 5060,
            transport,
            username: "acct".into(),
            password: "trunk-secret".into(),
            contact: "sip:acct@192.0.2.10:5060".into(),
            via_sent_by: "192.0.2.10:40000".into(),
            expires: 600,
            user_agent: Some("test-pbx".into()),
            timers: RegTimers::default(),
        }
    }

    fn sent(reg: &mut TrunkRegistration) -> Msg {
        let bytes = reg.poll_transmit().expect("a REGISTER to send");
        Msg::parse(&bytes).expect("our REGISTER parses")
    }

    /// A response to `req` with `extra` header lines (each ending in CRLF).
    fn reply(req: &Msg, status: u16, reason: &str, extra: &str) -> Vec<u8> {
        let h = |n: &str| req.header(n).expect(n).to_owned();
        format!(
            "SIP/2.0 {status} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=srv\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq"),
        )
        .into_bytes()
    }

    fn challenge(nonce: &str) -> String {
        format!(
            "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5\r\n"
        )
    }

    /// Runs a new registration through 401 and 200 (granting `expires`).
    fn registered(now: Instant, expires: u32) -> TrunkRegistration {
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        assert!(reg.handle_response(&reply(&first, 401, "Unauthorized", &challenge("n1")), now));
        let second = sent(&mut reg);
        let ok = reply(&second, 200, "OK", &format!("Expires: {expires}\r\n"));
        assert!(reg.handle_response(&ok, now));
        reg
    }

    #[test]
    fn first_register_is_well_formed() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        assert_eq!(reg.state(), &RegState::Registering);
        let req = sent(&mut reg);
        assert!(reg.poll_transmit().is_none(), "one REGISTER only");
        assert_eq!(req.method(), Some(Method::Register));
        assert_eq!(req.request_uri(), "sip:gw.carrier.example:5060");
        assert_eq!(req.cseq().unwrap(), (1, Method::Register));
        assert_eq!(req.call_id(), reg.call_id());
        let via = req.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.sent_by, "192.0.2.10:40000");
        assert!(via.branch().unwrap().starts_with("z9hG4bK"));
        assert!(req.from().unwrap().tag().is_some());
        assert_eq!(req.to().unwrap().uri, "sip:acct@gw.carrier.example");
        assert_eq!(req.header("Contact"), Some("<sip:acct@192.0.2.10:5060>"));
        assert_eq!(req.expires(), Some(600));
        assert_eq!(req.header("User-Agent"), Some("test-pbx"));
        assert!(req.header("Authorization").is_none());
        assert_eq!(reg.poll_timeout(), Some(now + Duration::from_millis(500)));
    }

    #[test]
    fn challenge_is_answered_with_verifiable_credentials() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        let first_branch = first.top_via().unwrap().branch().unwrap().to_owned();
        assert!(reg.handle_response(&reply(&first, 401, "Unauthorized", &challenge("n1")), now));
        let second = sent(&mut reg);
        assert_eq!(second.call_id(), first.call_id());
        assert_eq!(second.cseq().unwrap(), (2, Method::Register));
        assert_eq!(second.from().unwrap().tag(), first.from().unwrap().tag());
        assert_ne!(second.top_via().unwrap().branch().unwrap(), first_branch);
        let creds = Credentials::parse(second.header("Authorization").unwrap()).unwrap();
        assert_eq!(creds.username, "acct");
        assert_eq!(creds.uri, "sip:gw.carrier.example:5060");
        let secret = ha1(Algorithm::Md5, "acct", REALM, "trunk-secret");
        assert!(creds.verify("REGISTER", &secret));
        let wrong = ha1(Algorithm::Md5, "acct", REALM, "other");
        assert!(!creds.verify("REGISTER", &wrong));

        // A late response to the first request no longer matters.
        assert!(!reg.handle_response(&reply(&first, 200, "OK", ""), now));
        assert_eq!(reg.state(), &RegState::Registering);
    }

    #[test]
    fn proxy_challenge_gets_proxy_authorization() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        let extra = "Proxy-Authenticate: Digest realm=\"p\", nonce=\"x\", algorithm=SHA-256, qop=\"auth\"\r\n";
        assert!(reg.handle_response(
            &reply(&first, 407, "Proxy Authentication Required", extra),
            now
        ));
        let second = sent(&mut reg);
        assert!(second.header("Authorization").is_none());
        let creds = Credentials::parse(second.header("Proxy-Authorization").unwrap()).unwrap();
        assert_eq!(creds.algorithm, Algorithm::Sha256);
        assert!(creds.verify(
            "REGISTER",
            &ha1(Algorithm::Sha256, "acct", "p", "trunk-secret")
        ));
    }

    #[test]
    fn success_schedules_a_refresh_at_80_percent() {
        let now = Instant::now();
        let mut reg = registered(now, 100);
        let until = now + Duration::from_secs(100);
        assert_eq!(reg.state(), &RegState::Registered { until });
        assert!(reg.poll_transmit().is_none());
        let refresh = now + Duration::from_secs(80);
        assert_eq!(reg.poll_timeout(), Some(refresh));

        reg.handle_timeout(refresh - Duration::from_millis(1));
        assert!(reg.poll_transmit().is_none(), "nothing before the refresh");
        reg.handle_timeout(refresh);
        let again = sent(&mut reg);
        assert_eq!(again.cseq().unwrap(), (3, Method::Register));
        assert_eq!(again.call_id(), reg.call_id());
        assert!(again.header("Authorization").is_none(), "a fresh attempt");
        assert_eq!(
            reg.state(),
            &RegState::Registered { until },
            "still bound while refreshing"
        );

        // The carrier challenges again with the same nonce: that is answered, since
        // the request it challenges carried no credentials.
        assert!(reg.handle_response(
            &reply(&again, 401, "Unauthorized", &challenge("n1")),
            refresh
        ));
        let answered = sent(&mut reg);
        assert!(answered.header("Authorization").is_some());
        let contact = "Contact: <sip:other@198.51.100.1>;expires=30, <sip:acct@192.0.2.10:5060>;expires=50\r\nExpires: 900\r\n";
        assert!(reg.handle_response(&reply(&answered, 200, "OK", contact), refresh));
        assert_eq!(
            reg.state(),
            &RegState::Registered {
                until: refresh + Duration::from_secs(50)
            },
            "our contact's own expires wins"
        );
        assert_eq!(reg.poll_timeout(), Some(refresh + Duration::from_secs(40)));
    }

    #[test]
    fn tiny_expiry_is_refreshed_no_sooner_than_the_floor() {
        let now = Instant::now();
        let reg = registered(now, 1);
        // 80 % of 1 s is below the 1 s floor: refresh at the expiry itself.
        assert_eq!(reg.poll_timeout(), Some(now + Duration::from_secs(1)));
        let reg = registered(now, 2);
        assert_eq!(reg.poll_timeout(), Some(now + Duration::from_millis(1600)));
    }

    #[test]
    fn rejected_credentials_fail_with_back_off_doubling_to_the_cap() {
        let start = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), start);
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let first = sent(&mut reg);
            assert!(
                reg.handle_response(&reply(&first, 401, "Unauthorized", &challenge("same")), now)
            );
            let second = sent(&mut reg);
            assert!(reg.handle_response(
                &reply(&second, 401, "Unauthorized", &challenge("same")),
                now
            ));
            assert!(
                reg.poll_transmit().is_none(),
                "a repeated nonce is not answered twice"
            );
            let RegState::Failed { reason, retry_at } = reg.state().clone() else {
                panic!("expected a failure, got {:?}", reg.state());
            };
            assert!(reason.contains("rejected"), "{reason}");
            assert_eq!(reg.poll_timeout(), Some(retry_at));
            delays.push((retry_at - now).as_secs());
            now = retry_at;
            reg.handle_timeout(now);
            assert_eq!(reg.state(), &RegState::Registering);
        }
        assert_eq!(delays, [30, 60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn other_failures_back_off_and_success_resets_it() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        assert!(reg.handle_response(&reply(&first, 403, "Forbidden", ""), now));
        let RegState::Failed { reason, retry_at } = reg.state().clone() else {
            panic!("expected a failure");
        };
        assert_eq!(reason, "403 Forbidden");
        assert_eq!(retry_at, now + Duration::from_secs(30));
        reg.handle_timeout(retry_at);
        let second = sent(&mut reg);
        let extra = "Retry-After: 120\r\n";
        assert!(reg.handle_response(&reply(&second, 503, "Service Unavailable", extra), retry_at));
        let RegState::Failed { retry_at: next, .. } = reg.state().clone() else {
            panic!("expected a failure");
        };
        assert_eq!(
            next,
            retry_at + Duration::from_secs(120),
            "Retry-After beats 60 s"
        );
        reg.handle_timeout(next);
        let third = sent(&mut reg);
        assert!(reg.handle_response(&reply(&third, 200, "OK", "Expires: 60\r\n"), next));
        assert!(matches!(reg.state(), RegState::Registered { .. }));
        let refresh = reg.poll_timeout().unwrap();
        reg.handle_timeout(refresh);
        let fourth = sent(&mut reg);
        assert!(reg.handle_response(&reply(&fourth, 500, "Server Error", ""), refresh));
        let RegState::Failed { retry_at, .. } = reg.state().clone() else {
            panic!("expected a failure");
        };
        assert_eq!(
            retry_at,
            refresh + Duration::from_secs(30),
            "back-off starts over"
        );
    }

    #[test]
    fn udp_retransmits_then_times_out() {
        let start = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), start);
        let first = reg.poll_transmit().unwrap();
        let mut gaps = Vec::new();
        let mut last = start;
        while let Some(at) = reg.poll_timeout() {
            reg.handle_timeout(at);
            if let Some(again) = reg.poll_transmit() {
                assert_eq!(again, first, "a retransmission is the same bytes");
                gaps.push((at - last).as_millis());
                last = at;
            }
            if matches!(reg.state(), RegState::Failed { .. }) {
                assert_eq!(at, start + Duration::from_secs(32));
                break;
            }
        }
        assert_eq!(gaps[..5], [500, 1000, 2000, 4000, 4000]);
        let RegState::Failed { reason, .. } = reg.state() else {
            panic!("expected a timeout");
        };
        assert!(reason.contains("no response"), "{reason}");
    }

    #[test]
    fn provisional_slows_retransmission_and_tcp_never_retransmits() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let req = sent(&mut reg);
        let proceeding = now + Duration::from_millis(200);
        assert!(reg.handle_response(&reply(&req, 100, "Trying", ""), proceeding));
        // RFC 3261 §17.1.2.2: Timer E still fires at T1, then every T2.
        let first = now + Duration::from_millis(500);
        assert_eq!(reg.poll_timeout(), Some(first));
        reg.handle_timeout(first);
        let again = reg.poll_transmit().expect("a retransmission");
        let again = Msg::parse(&again).expect("parses");
        assert_eq!(again.cseq().unwrap(), req.cseq().unwrap());
        assert_eq!(
            again.top_via().unwrap().branch(),
            req.top_via().unwrap().branch()
        );
        assert_eq!(reg.poll_timeout(), Some(first + Duration::from_secs(4)));

        let mut tcp = TrunkRegistration::new(config(TransportKind::Tcp), now);
        let req = sent(&mut tcp);
        assert!(
            req.request_uri()
                .eq_ignore_ascii_case("sip:gw.carrier.example:5060;transport=tcp")
        );
        assert_eq!(req.top_via().unwrap().transport, "TCP");
        assert_eq!(tcp.poll_timeout(), Some(now + Duration::from_secs(32)));
        tcp.handle_timeout(now + Duration::from_secs(31));
        assert!(tcp.poll_transmit().is_none());
    }

    #[test]
    fn interval_too_brief_raises_the_expiry() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        let extra = "Min-Expires: 1800\r\n";
        assert!(reg.handle_response(&reply(&first, 423, "Interval Too Brief", extra), now));
        let second = sent(&mut reg);
        assert_eq!(second.expires(), Some(1800));
        assert_eq!(second.cseq().unwrap().0, 2);
        assert!(reg.handle_response(&reply(&second, 200, "OK", ""), now));
        assert_eq!(
            reg.state(),
            &RegState::Registered {
                until: now + Duration::from_secs(1800)
            },
            "no expiry in the 2xx: the one asked for"
        );
        // Later refreshes keep asking for the carrier's minimum.
        reg.handle_timeout(reg.poll_timeout().unwrap());
        assert_eq!(sent(&mut reg).expires(), Some(1800));

        // A 423 that does not raise the expiry is a failure, not a loop.
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let first = sent(&mut reg);
        let extra = "Min-Expires: 300\r\n";
        assert!(reg.handle_response(&reply(&first, 423, "Interval Too Brief", extra), now));
        assert!(matches!(reg.state(), RegState::Failed { .. }));
        assert!(reg.poll_transmit().is_none());
    }

    #[test]
    fn unregister_sends_expires_zero_and_answers_a_challenge() {
        let now = Instant::now();
        let mut reg = registered(now, 600);
        reg.unregister(now);
        assert_eq!(reg.state(), &RegState::Unregistering);
        let bye = sent(&mut reg);
        assert_eq!(bye.expires(), Some(0));
        assert_eq!(bye.call_id(), reg.call_id());
        assert!(reg.handle_response(&reply(&bye, 401, "Unauthorized", &challenge("n2")), now));
        let answered = sent(&mut reg);
        assert_eq!(answered.expires(), Some(0));
        assert!(answered.header("Authorization").is_some());
        assert!(reg.handle_response(&reply(&answered, 200, "OK", ""), now));
        assert_eq!(reg.state(), &RegState::Unregistered);
        assert_eq!(reg.poll_timeout(), None, "nothing more happens");

        // Never bound: nothing to remove.
        let mut failed = TrunkRegistration::new(config(TransportKind::Udp), now);
        let req = sent(&mut failed);
        assert!(failed.handle_response(&reply(&req, 404, "Not Found", ""), now));
        failed.unregister(now);
        assert_eq!(failed.state(), &RegState::Unregistered);
        assert!(failed.poll_transmit().is_none());

        // No answer: the removal is abandoned after the transaction timeout.
        let mut silent = registered(now, 600);
        silent.unregister(now);
        assert!(silent.poll_transmit().is_some());
        silent.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(silent.state(), &RegState::Unregistered);
    }

    #[test]
    fn junk_and_foreign_responses_are_ignored() {
        let now = Instant::now();
        let mut reg = TrunkRegistration::new(config(TransportKind::Udp), now);
        let req = sent(&mut reg);
        assert!(!reg.handle_response(b"", now));
        assert!(!reg.handle_response(b"SIP/2.0 200 OK\r\n\r\n", now));
        let other = String::from_utf8(reply(&req, 200, "OK", ""))
            .unwrap()
            .replace(reg.call_id(), "someone-else");
        assert!(!reg.handle_response(other.as_bytes(), now));
        let wrong_branch = String::from_utf8(reply(&req, 200, "OK", ""))
            .unwrap()
            .replace("branch=z9hG4bK", "branch=z9hG4bKx");
        assert!(!reg.handle_response(wrong_branch.as_bytes(), now));
        let bad_challenge = reply(
            &req,
            401,
            "Unauthorized",
            "WWW-Authenticate: Basic realm=\"x\"\r\n",
        );
        assert!(reg.handle_response(&bad_challenge, now));
        assert!(matches!(reg.state(), RegState::Failed { .. }));
    }

    #[test]
    fn ipv6_carrier_and_debug_hides_the_password() {
        let now = Instant::now();
        let mut cfg = config(TransportKind::Udp);
        cfg.host = "2001:db8::5".into();
        assert!(!format!("{cfg:?}").contains("trunk-secret"));
        let mut reg = TrunkRegistration::new(cfg, now);
        // rsip cannot read IPv6 references in a request line: look at the text.
        let raw = reg.poll_transmit().unwrap();
        let text = std::str::from_utf8(&raw).unwrap();
        assert!(
            text.starts_with("REGISTER sip:[2001:db8::5]:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nTo: <sip:acct@[2001:db8::5]>\r\n"),
            "{text}"
        );
    }
}
