//! Scenario tests of a shard driven with a virtual clock: no sockets, no sleeps.
//! Time jumps straight to the shard's next timer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use digest_auth::{Algorithm, ha1};
use model::{Directory, Extension, Tenant, TenantId, TenantStatus, TransportKind};

use crate::msg::Msg;
use crate::{CoreConfig, Inbound, Output, Peer, Shard, Shared};

const DOMAIN: &str = "acme.example";
const SERVER: &str = "127.0.0.1:5060";

fn directory() -> Directory {
    let ext = |n: &str| Extension {
        tenant: TenantId(1),
        number: n.into(),
        ha1_md5: ha1(Algorithm::Md5, n, DOMAIN, &format!("pw{n}")),
        ha1_sha256: ha1(Algorithm::Sha256, n, DOMAIN, &format!("pw{n}")),
        enabled: true,
        digest: None,
    };
    Directory {
        tenants: vec![Tenant {
            id: TenantId(1),
            name: "acme".into(),
            status: TenantStatus::Active,
            realm: DOMAIN.into(),
            domains: vec![DOMAIN.into()],
            media_encryption: model::MediaEncryption::default(),
            digest: None,
        }],
        extensions: vec![ext("1000"), ext("1001"), ext("1002")],
        acls: Vec::new(),
    }
}

struct Harness {
    shard: Shard,
    shared: std::sync::Arc<Shared>,
    now: Instant,
    sent: Vec<(SocketAddr, Msg)>,
    routes: Vec<crate::RouteRequest>,
    cdrs: Vec<model::Cdr>,
    /// Calls announced as answered ([`Output::Answered`]).
    answered: Vec<model::Cdr>,
    /// Messages handed to another shard ([`Output::Forward`]).
    forwards: Vec<(usize, Inbound)>,
}

fn peer(addr: &str) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: addr.parse().unwrap(),
        conn: None,
    }
}

impl Harness {
    fn new(config: CoreConfig) -> Harness {
        Harness::with_directory(config, directory())
    }

    fn with_directory(config: CoreConfig, directory: Directory) -> Harness {
        let now = Instant::now();
        let shared = Shared::new(config, directory, Vec::new(), (now, 1_700_000_000_000), 1);
        Harness {
            shard: Shard::new(0, shared.clone()),
            shared,
            now,
            sent: Vec::new(),
            routes: Vec::new(),
            cdrs: Vec::new(),
            answered: Vec::new(),
            forwards: Vec::new(),
        }
    }

    fn feed(&mut self, from: &str, text: &str) {
        self.shard.handle(
            self.now,
            Inbound::new(
                peer(from),
                SERVER.parse().unwrap(),
                Bytes::from(text.to_string()),
            ),
        );
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.shard.poll_output() {
            match o {
                Output::Transmit { dest, bytes, .. } => self
                    .sent
                    .push((dest.addr, Msg::parse(&bytes).expect("host sends valid SIP"))),
                Output::Route(req) => self.routes.push(req),
                Output::Cdr(cdr) => self.cdrs.push(cdr),
                Output::Answered(cdr) => self.answered.push(cdr),
                Output::Forward { shard, inbound } => self.forwards.push((shard, inbound)),
                _ => {}
            }
        }
    }

    /// 1001 answers the INVITE the host rang it with; the 200 relayed to the
    /// caller.
    fn answer_call(&mut self, invite: &Msg) -> Msg {
        self.feed("127.0.0.1:7001", &answer(invite, 200, "OK"));
        self.take()
            .into_iter()
            .find(|(_, m)| m.status() == Some(200))
            .expect("200 relayed")
            .1
    }

    /// Jumps to the next timer, as long as it is before `until`.
    fn run_until(&mut self, until: Instant) {
        while let Some(t) = self.shard.poll_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.shard.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn take(&mut self) -> Vec<(SocketAddr, Msg)> {
        std::mem::take(&mut self.sent)
    }

    fn authorize(
        &mut self,
        from: &str,
        request: impl Fn(Option<&str>) -> String,
        header: &str,
        method: &str,
        uri: &str,
        user: &str,
    ) -> Vec<(SocketAddr, Msg)> {
        self.authorize_in_realm(from, request, header, method, uri, user, DOMAIN)
    }

    #[allow(clippy::too_many_arguments, reason = "one digest exchange's inputs")]
    fn authorize_in_realm(
        &mut self,
        from: &str,
        request: impl Fn(Option<&str>) -> String,
        header: &str,
        method: &str,
        uri: &str,
        user: &str,
        realm: &str,
    ) -> Vec<(SocketAddr, Msg)> {
        self.feed(from, &request(None));
        let challenge = self.take().pop().expect("challenge").1;
        let value = challenge
            .header(header)
            .expect("challenge header")
            .to_string();
        let nonce = value
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let h1 = ha1(Algorithm::Md5, user, realm, &format!("pw{user}"));
        let md5 = |s: String| {
            use md5::Digest;
            hex::encode(md5::Md5::digest(s.as_bytes()))
        };
        let h2 = md5(format!("{method}:{uri}"));
        let resp = md5(format!("{h1}:{nonce}:00000001:c0ffee:auth:{h2}"));
        let auth = format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
        );
        self.feed(from, &request(Some(&auth)));
        self.take()
    }

    fn register(&mut self, user: &str, addr: &str) {
        let uri = format!("sip:{DOMAIN}");
        let call_id = format!("reg-{user}");
        let out = self.authorize(
            addr,
            |auth| register_request(user, addr, &call_id, 3600, auth),
            "WWW-Authenticate",
            "REGISTER",
            &uri,
            user,
        );
        assert_eq!(out[0].1.status(), Some(200));
    }

    /// 1000 calls 1001; returns what the host sent after the authenticated INVITE.
    fn invite(&mut self) -> Vec<(SocketAddr, Msg)> {
        let uri = format!("sip:1001@{DOMAIN}");
        self.authorize(
            "127.0.0.1:7000",
            |auth| {
                format!(
                    "INVITE sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi{}\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-1\r\nCSeq: {} INVITE\r\nContact: <sip:1000@127.0.0.1:7000>\r\n{}Content-Length: 0\r\n\r\n",
                    auth.is_some() as u8,
                    1 + auth.is_some() as u8,
                    auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default()
                )
            },
            "Proxy-Authenticate",
            "INVITE",
            &uri,
            "1000",
        )
    }
}

/// A REGISTER of `user`'s contact at `addr`: CSeq 1 without credentials, 2 with
/// `auth` (an Authorization value), a branch of its own for each.
fn register_request(
    user: &str,
    addr: &str,
    call_id: &str,
    expires: u32,
    auth: Option<&str>,
) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{call_id}-{}\r\nFrom: <sip:{user}@{DOMAIN}>;tag=r\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: {call_id}\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@{addr}>\r\nExpires: {expires}\r\n{}Content-Length: 0\r\n\r\n",
        auth.is_some() as u8,
        1 + auth.is_some() as u8,
        auth.map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default()
    )
}

/// The challenges a REGISTER of `user` gets, in order.
fn register_challenges(h: &mut Harness, user: &str) -> Vec<digest_auth::Challenge> {
    let addr = "127.0.0.1:7100";
    h.feed(
        addr,
        &register_request(user, addr, &format!("alg-{user}"), 3600, None),
    );
    let (_, reply) = h.take().pop().expect("challenge");
    assert_eq!(reply.status(), Some(401));
    reply
        .headers_named("WWW-Authenticate")
        .map(|v| digest_auth::Challenge::parse(v).expect("challenge parses"))
        .collect()
}

/// The status of a REGISTER of `user` answering `challenge` in `algorithm`.
fn register_with(
    h: &mut Harness,
    user: &str,
    challenge: &digest_auth::Challenge,
    algorithm: Algorithm,
) -> Option<u16> {
    let addr = "127.0.0.1:7100";
    let mut c = challenge.clone();
    c.algorithm = algorithm;
    let uri = format!("sip:{DOMAIN}");
    let creds = digest_auth::Credentials::answer(
        &c,
        "REGISTER",
        &uri,
        user,
        &format!("pw{user}"),
        "c0ffee",
    );
    let call_id = format!("alg-{user}-{}", algorithm.as_str());
    h.feed(
        addr,
        &register_request(user, addr, &call_id, 3600, Some(&creds.header_value())),
    );
    h.take().pop().and_then(|(_, m)| m.status())
}

/// One challenge, MD5, unless the provider chose otherwise: per extension,
/// else per tenant, else in the configuration. An answer in an algorithm the
/// extension is not offered fails.
#[test]
fn digest_algorithms_follow_extension_then_tenant_then_default() {
    let algs = |s: &str| model::DigestAlgorithms::parse(s).expect("algorithms");
    let names = |cs: &[digest_auth::Challenge]| {
        cs.iter()
            .map(|c| c.algorithm.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut dir = directory();
    dir.extensions[1].digest = Some(algs("SHA-256"));
    let mut h = Harness::with_directory(CoreConfig::default(), dir.clone());
    // shipped default: MD5 alone
    let c = register_challenges(&mut h, "1000");
    assert_eq!(names(&c), "MD5");
    assert_eq!(
        register_with(&mut h, "1000", &c[0], Algorithm::Md5),
        Some(200)
    );
    // an unknown user gets what an extension without a choice gets
    assert_eq!(names(&register_challenges(&mut h, "4711")), "MD5");
    // 1001 was given SHA-256 alone: only that is offered and accepted
    let c = register_challenges(&mut h, "1001");
    assert_eq!(names(&c), "SHA-256");
    assert_eq!(
        register_with(&mut h, "1001", &c[0], Algorithm::Md5),
        Some(401)
    );
    let c = register_challenges(&mut h, "1001");
    assert_eq!(
        register_with(&mut h, "1001", &c[0], Algorithm::Sha256),
        Some(200)
    );

    // the tenant's choice applies to extensions without their own
    dir.tenants[0].digest = Some(algs("SHA-256,MD5"));
    let mut h = Harness::with_directory(CoreConfig::default(), dir.clone());
    let c = register_challenges(&mut h, "1000");
    assert_eq!(names(&c), "SHA-256,MD5");
    assert_eq!(
        register_with(&mut h, "1000", &c[0], Algorithm::Sha256),
        Some(200)
    );
    let c = register_challenges(&mut h, "1000");
    assert_eq!(
        register_with(&mut h, "1000", &c[1], Algorithm::Md5),
        Some(200)
    );
    assert_eq!(names(&register_challenges(&mut h, "1001")), "SHA-256");

    // the configured default applies where nobody chose
    dir.tenants[0].digest = None;
    let config = CoreConfig {
        digest_algorithms: algs("MD5,SHA-256"),
        ..CoreConfig::default()
    };
    let mut h = Harness::with_directory(config, dir);
    assert_eq!(names(&register_challenges(&mut h, "1000")), "MD5,SHA-256");
}

/// A response from the callee phone to the host's INVITE.
fn answer(invite: &Msg, status: u16, reason: &str) -> String {
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for v in invite.headers_named("Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!(
        "From: {}\r\nTo: {};tag=b\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1001@127.0.0.1:7001>\r\nContent-Length: 0\r\n\r\n",
        invite.header("From").unwrap(),
        invite.header("To").unwrap(),
        invite.call_id(),
        invite.header("CSeq").unwrap()
    ));
    s
}

fn statuses(out: &[(SocketAddr, Msg)]) -> Vec<u16> {
    out.iter().filter_map(|(_, m)| m.status()).collect()
}

#[test]
fn unanswered_call_times_out_with_480_and_cancel() {
    let config = CoreConfig {
        ring_timeout: Duration::from_secs(20),
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = out
        .iter()
        .find(|(a, m)| m.method() == Some(crate::msg::Method::Invite) && a.port() == 7001)
        .expect("INVITE to the callee")
        .1
        .clone();
    h.feed("127.0.0.1:7001", &answer(&invite, 180, "Ringing"));
    assert!(statuses(&h.take()).contains(&180));

    let start = h.now;
    h.run_until(start + Duration::from_secs(19));
    assert!(
        !statuses(&h.take()).contains(&480),
        "not before the ring timeout"
    );
    h.run_until(start + Duration::from_secs(21));
    let out = h.take();
    assert!(statuses(&out).contains(&480), "caller told nobody answered");
    assert!(
        out.iter()
            .any(|(a, m)| m.method() == Some(crate::msg::Method::Cancel) && a.port() == 7001)
    );
    assert_eq!(
        h.shard.active_calls(),
        1,
        "the call lingers to absorb late replies"
    );
    h.run_until(h.now + Duration::from_secs(40));
    assert_eq!(h.shard.active_calls(), 0, "then it is reaped");
}

#[test]
fn answered_call_is_ended_at_the_maximum_duration() {
    let config = CoreConfig {
        max_call_duration: Duration::from_secs(3600),
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = out
        .iter()
        .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
        .unwrap()
        .1
        .clone();
    let ok = h.answer_call(&invite);
    // The caller never ACKs: the 200 is retransmitted (T1, 2*T1, ...) and the call
    // is hung up after 64*T1.
    let start = h.now;
    h.run_until(start + Duration::from_secs(2));
    let retrans = h
        .take()
        .into_iter()
        .filter(|(_, m)| m.status() == Some(200))
        .count();
    assert!(
        retrans >= 2,
        "200 OK retransmitted until ACK, got {retrans}"
    );
    let ack = from_caller("ACK", 2, "z9hG4bKack", &ok);
    h.feed("127.0.0.1:7000", &ack);
    h.run_until(start + Duration::from_secs(30));
    assert!(
        h.take().iter().all(|(_, m)| m.status() != Some(200)),
        "ACK stops retransmission"
    );
    h.run_until(start + Duration::from_secs(3601));
    let out = h.take();
    let byes: Vec<u16> = out
        .iter()
        .filter(|(_, m)| m.method() == Some(crate::msg::Method::Bye))
        .map(|(a, _)| a.port())
        .collect();
    assert!(
        byes.contains(&7000) && byes.contains(&7001),
        "BYE to both legs: {byes:?}"
    );
}

/// A request of the caller (1000, Call-ID `call-1`, from 127.0.0.1:7000)
/// inside the dialog its 200 `ok` set up.
fn from_caller(method: &str, cseq: u32, branch: &str, ok: &Msg) -> String {
    format!(
        "{method} sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={branch}\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        ok.header("To").unwrap()
    )
}

/// A node of a cluster announces each call when it is answered (once, with
/// the caller's Call-ID its record will have) and counts calls in progress.
#[test]
fn answered_calls_are_announced_and_counted_when_tracked() {
    for track in [false, true] {
        let config = CoreConfig {
            track_answered: track,
            ..CoreConfig::default()
        };
        let mut h = Harness::new(config);
        h.register("1001", "127.0.0.1:7001");
        assert_eq!(h.shared.calls_up(), 0);
        let out = h.invite();
        assert_eq!(h.shared.calls_up(), 1, "ringing counts");
        let invite = sent_to(&out, 7001, "INVITE").expect("rings").clone();
        assert!(h.answered.is_empty(), "not before the answer");
        let ok = h.answer_call(&invite);
        if track {
            assert_eq!(h.answered.len(), 1, "announced once");
            let a = &h.answered[0];
            assert_eq!((a.caller.as_str(), a.callee.as_str()), ("1000", "1001"));
            assert_eq!(a.caller_call_id, "call-1");
            assert!(a.answered_at_ms.is_some());
        } else {
            assert!(h.answered.is_empty(), "a single node announces nothing");
        }
        h.feed("127.0.0.1:7000", &from_caller("BYE", 3, "z9hG4bKbye", &ok));
        assert_eq!(h.shared.calls_up(), 0, "hung up");
        assert_eq!(h.cdrs.len(), 1);
        assert_eq!(
            h.answered.len(),
            usize::from(track),
            "no second announcement"
        );
    }
}

/// A draining node refuses new calls, registrations and probes with 503 and
/// Retry-After, while the dialogs it holds go on; resumed, it serves again.
#[test]
fn a_draining_node_refuses_new_work_but_keeps_its_calls() {
    let mut h = Harness::new(CoreConfig::default());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = sent_to(&out, 7001, "INVITE").expect("rings").clone();
    let ok = h.answer_call(&invite);

    h.shared.set_draining(true);
    let options = format!(
        "OPTIONS sip:{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7200;branch=z9hG4bKopt\r\nFrom: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{SERVER}>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed("127.0.0.1:7200", &options);
    h.feed(
        "127.0.0.1:7100",
        &register_request("1002", "127.0.0.1:7100", "drain-reg", 3600, None),
    );
    let refused = h.take();
    assert_eq!(statuses(&refused), [503, 503], "probe and REGISTER refused");
    for (_, m) in &refused {
        assert_eq!(m.header("Retry-After"), Some("30"));
    }

    h.feed("127.0.0.1:7000", &from_caller("BYE", 3, "z9hG4bKbye", &ok));
    let out = h.take();
    assert!(
        sent_to(&out, 7001, "BYE").is_some(),
        "the call in progress is hung up as usual"
    );
    assert_eq!(h.cdrs.len(), 1);

    h.shared.set_draining(false);
    h.feed("127.0.0.1:7200", &options.replace("probe-1", "probe-2"));
    assert_eq!(statuses(&h.take()), [200], "resumed");
}

#[test]
fn outbound_call_ids_name_their_shard() {
    let shared = Shared::new(
        CoreConfig::default(),
        directory(),
        Vec::new(),
        (Instant::now(), 0),
        4,
    );
    let msg = |cid: &str| format!("BYE sip:x SIP/2.0\r\nCall-ID: {cid}\r\n\r\n");
    assert_eq!(shared.shard_for(msg("pbx3-00ff").as_bytes()), 3);
    assert_eq!(shared.shard_for(msg("pbx6-00ff").as_bytes()), 2);
    assert_eq!(super::own_shard_tag(b"pbx-00ff"), None);
    assert_eq!(super::own_shard_tag(b"pbx12"), None);
    // Any other Call-ID lands on the same shard every time.
    let a = shared.shard_for(msg("abc@host").as_bytes());
    assert_eq!(shared.shard_for(msg("abc@host").as_bytes()), a);
    assert!(a < 4);
}

#[test]
fn ack_reusing_the_invite_branch_still_confirms_the_call() {
    let mut h = Harness::new(CoreConfig::default());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = out
        .iter()
        .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
        .unwrap()
        .1
        .clone();
    h.feed("127.0.0.1:7001", &answer(&invite, 200, "OK"));
    let ok = h
        .take()
        .into_iter()
        .find(|(_, m)| m.status() == Some(200))
        .unwrap()
        .1;
    // Same branch as the authenticated INVITE (z9hG4bKi1), as some phones do.
    let ack = format!(
        "ACK sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi1\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        ok.header("To").unwrap()
    );
    h.feed("127.0.0.1:7000", &ack);
    let start = h.now;
    h.run_until(start + Duration::from_secs(60));
    let out = h.take();
    assert!(
        out.iter().all(|(_, m)| m.status() != Some(200)),
        "no 200 retransmission"
    );
    assert!(
        out.iter()
            .all(|(_, m)| m.method() != Some(crate::msg::Method::Bye)),
        "the call stays up"
    );
    assert_eq!(h.shard.active_calls(), 1);
}

/// Counts what `out` sent to `port` with `method`.
fn count_to(out: &[(SocketAddr, Msg)], port: u16, method: &str) -> usize {
    out.iter()
        .filter(|(a, m)| {
            a.port() == port && m.method().map(crate::msg::method_name) == Some(method)
        })
        .count()
}

/// 1000 calls 1001 on the defaults: the harness and the INVITE 1001 got.
fn calling_1001() -> (Harness, Msg) {
    let mut h = Harness::new(CoreConfig::default());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = sent_to(&out, 7001, "INVITE")
        .expect("INVITE to the callee")
        .clone();
    (h, invite)
}

/// 1001 sends its 200 to `invite` again: the host acknowledges it again and
/// neither hangs up nor tells the caller.
fn assert_repeated_200_acknowledged(h: &mut Harness, invite: &Msg) {
    h.feed("127.0.0.1:7001", &answer(invite, 200, "OK"));
    let out = h.take();
    assert_eq!(count_to(&out, 7001, "ACK"), 1, "acknowledged: {out:?}");
    assert_eq!(count_to(&out, 7001, "BYE"), 0, "not hung up: {out:?}");
    assert!(statuses(&out).is_empty(), "nothing to the caller: {out:?}");
}

/// The callee's 200 again (our ACK was lost) is acknowledged again, during the
/// call and after it, and never taken for a second answer to hang up; once
/// the call ended its dialog answers 481, and 64*T1 later it is gone.
#[test]
fn the_callees_repeated_200_is_acknowledged_again_not_hung_up() {
    let (mut h, invite) = calling_1001();
    h.feed("127.0.0.1:7001", &answer(&invite, 200, "OK"));
    let ok = h
        .take()
        .into_iter()
        .find(|(_, m)| m.status() == Some(200))
        .expect("200 relayed")
        .1;
    // No offer in the INVITE: the callee's ACK waits for the caller's, which
    // carries the answer.
    h.feed("127.0.0.1:7000", &from_caller("ACK", 2, "z9hG4bKack", &ok));
    let out = h.take();
    assert_eq!(count_to(&out, 7001, "ACK"), 1, "the answer is acknowledged");

    assert_repeated_200_acknowledged(&mut h, &invite);

    h.feed("127.0.0.1:7000", &from_caller("BYE", 3, "z9hG4bKbye", &ok));
    let out = h.take();
    assert_eq!(count_to(&out, 7001, "BYE"), 1, "hung up: {out:?}");
    // After the call, too.
    assert_repeated_200_acknowledged(&mut h, &invite);

    h.feed(
        "127.0.0.1:7000",
        &from_caller("INFO", 4, "z9hG4bKinfo", &ok),
    );
    assert_eq!(statuses(&h.take()), vec![481], "the dialog is over");
    assert_eq!(h.shard.active_calls(), 1, "the call lingers");
    h.run_until(h.now + Duration::from_secs(33));
    assert_eq!(h.shard.active_calls(), 0, "then it is reaped");
    assert_eq!(h.shard.dialogs.len(), 0, "with its dialogs");
}

/// A call hung up more than 64*T1 after its answer has nothing left to
/// absorb: it is forgotten at once, and its dialog answers 481.
#[test]
fn a_call_ended_long_after_its_answer_is_forgotten_at_once() {
    let (mut h, invite) = calling_1001();
    let ok = h.answer_call(&invite);
    h.feed("127.0.0.1:7000", &from_caller("ACK", 2, "z9hG4bKack", &ok));
    h.run_until(h.now + Duration::from_secs(60));
    h.take();
    assert_eq!(h.shard.active_calls(), 1);
    h.feed("127.0.0.1:7000", &from_caller("BYE", 3, "z9hG4bKbye", &ok));
    assert_eq!(count_to(&h.take(), 7001, "BYE"), 1);
    assert_eq!(h.shard.active_calls(), 0, "nothing lingers");
    assert_eq!(h.shard.dialogs.len(), 0);
    h.feed(
        "127.0.0.1:7000",
        &from_caller("INFO", 4, "z9hG4bKinfo", &ok),
    );
    assert_eq!(statuses(&h.take()), vec![481]);
}

/// A phone that had not rung when the caller gave up is cancelled once it
/// rings (no CANCEL before a provisional response, RFC 3261 §9.1), and its
/// answer racing that CANCEL is acknowledged and hung up.
#[test]
fn a_fork_ringing_after_the_call_ended_is_cancelled_and_its_answer_hung_up() {
    let (mut h, invite) = calling_1001();
    h.feed(
        "127.0.0.1:7000",
        &format!(
            "CANCEL sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi1\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let out = h.take();
    assert!(
        statuses(&out).contains(&487),
        "the caller hears 487: {out:?}"
    );
    assert_eq!(count_to(&out, 7001, "CANCEL"), 0, "nothing rang yet");

    h.feed("127.0.0.1:7001", &answer(&invite, 180, "Ringing"));
    let out = h.take();
    assert_eq!(count_to(&out, 7001, "CANCEL"), 1, "cancelled once it rings");
    assert!(statuses(&out).is_empty(), "nothing to the caller: {out:?}");

    h.feed("127.0.0.1:7001", &answer(&invite, 200, "OK"));
    let out = h.take();
    assert_eq!(count_to(&out, 7001, "ACK"), 1, "{out:?}");
    assert_eq!(count_to(&out, 7001, "BYE"), 1, "{out:?}");
    assert!(statuses(&out).is_empty(), "nothing to the caller: {out:?}");
}

fn external() -> CoreConfig {
    CoreConfig {
        routing: crate::Routing::External {
            timeout: Duration::from_secs(2),
        },
        ..CoreConfig::default()
    }
}

impl Harness {
    fn decide(&mut self, decision: crate::RouteDecision) {
        let req = self.routes.pop().expect("a routing request");
        self.shard.route_decided(self.now, req.call, decision);
        self.drain();
    }
}

fn sent_to<'a>(out: &'a [(SocketAddr, Msg)], port: u16, method: &str) -> Option<&'a Msg> {
    out.iter()
        .find(|(a, m)| a.port() == port && m.method().map(crate::msg::method_name) == Some(method))
        .map(|(_, m)| m)
}

#[test]
fn external_routing_asks_then_rings_in_sequence() {
    let mut h = Harness::new(external());
    h.register("1001", "127.0.0.1:7001");
    h.register("1000", "127.0.0.1:7002");
    let out = h.invite();
    assert!(statuses(&out).contains(&100));
    assert!(
        sent_to(&out, 7001, "INVITE").is_none(),
        "nothing rings before the decision"
    );
    let req = h.routes.last().expect("routing request").clone();
    assert_eq!(req.caller, "1000");
    assert_eq!(req.caller_extension.as_deref(), Some("1000"));
    assert_eq!(req.dialled, "1001");
    assert_eq!(req.inbound_trunk, None);

    h.decide(crate::RouteDecision::Ring(vec![
        crate::RingStep {
            extensions: vec!["1001".into()],
            timeout: Duration::from_secs(5),
        },
        crate::RingStep {
            extensions: vec!["1000".into(), "9999".into()],
            timeout: Duration::from_secs(5),
        },
    ]));
    let out = h.take();
    let first = sent_to(&out, 7001, "INVITE")
        .expect("step 1 rings 1001")
        .clone();
    h.feed("127.0.0.1:7001", &answer(&first, 180, "Ringing"));
    h.take();
    let start = h.now;
    h.run_until(start + Duration::from_secs(6));
    let out = h.take();
    assert!(
        sent_to(&out, 7001, "CANCEL").is_some(),
        "step 1 is cancelled"
    );
    let second = sent_to(&out, 7002, "INVITE")
        .expect("step 2 rings 1000")
        .clone();
    assert!(!statuses(&out).contains(&480), "the caller still waits");
    assert_eq!(second.header("CSeq"), Some("2 INVITE"));
    assert!(second.header("To").unwrap().contains("sip:1000@"));

    h.feed("127.0.0.1:7002", &answer(&second, 200, "OK"));
    let out = h.take();
    let ok = out
        .iter()
        .find(|(a, m)| a.port() == 7000 && m.status() == Some(200))
        .expect("the caller gets the answer")
        .1
        .clone();
    // No offer in the INVITE: the caller's ACK carries the answer to the callee.
    let ack = from_caller("ACK", 2, "z9hG4bKack", &ok);
    h.feed("127.0.0.1:7000", &ack);
    let out = h.take();
    let ack = sent_to(&out, 7002, "ACK").expect("the host ACKs the callee's 2xx");
    assert_eq!(
        ack.header("CSeq"),
        Some("2 ACK"),
        "ACK matches the INVITE's CSeq"
    );
}

#[test]
fn a_reject_decision_reaches_the_caller_and_a_late_one_is_ignored() {
    let mut h = Harness::new(external());
    h.register("1001", "127.0.0.1:7001");
    h.invite();
    h.decide(crate::RouteDecision::reject(
        403,
        "International Calls Barred",
    ));
    let out = h.take();
    let reply = out
        .iter()
        .find(|(_, m)| m.status() == Some(403))
        .expect("403");
    assert_eq!(reply.1.reason(), "International Calls Barred");
    let cdr_seen = {
        let mut seen = false;
        while let Some(o) = h.shard.poll_output() {
            seen |= matches!(o, Output::Cdr(_));
        }
        seen
    };
    // The CDR was already drained with the 403; a second decision does nothing.
    assert!(!cdr_seen);
    h.shard.route_decided(
        h.now,
        1,
        crate::RouteDecision::Ring(vec![crate::RingStep {
            extensions: vec!["1001".into()],
            timeout: Duration::from_secs(5),
        }]),
    );
    h.drain();
    assert!(sent_to(&h.take(), 7001, "INVITE").is_none());
}

#[test]
fn no_decision_in_time_gets_503_and_cancel_while_routing_gets_487() {
    let mut h = Harness::new(external());
    h.register("1001", "127.0.0.1:7001");
    h.invite();
    let start = h.now;
    // The request says when the shard stops waiting, so a worker that
    // reaches it later can skip it.
    let asked = h.routes.last().expect("a routing request").answer_by;
    assert_eq!(asked, Some(start + Duration::from_secs(2)));
    h.run_until(start + Duration::from_secs(3));
    let out = h.take();
    let reply = out
        .iter()
        .find(|(_, m)| m.status() == Some(503))
        .expect("503");
    assert_eq!(reply.1.reason(), "Routing Timeout");

    let mut h = Harness::new(external());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let _ = out;
    let cancel = format!(
        "CANCEL sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi1\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed("127.0.0.1:7000", &cancel);
    let out = h.take();
    assert!(statuses(&out).contains(&200), "CANCEL answered");
    assert!(statuses(&out).contains(&487), "INVITE terminated");
    h.decide(crate::RouteDecision::Ring(vec![crate::RingStep {
        extensions: vec!["1001".into()],
        timeout: Duration::from_secs(5),
    }]));
    assert!(
        sent_to(&h.take(), 7001, "INVITE").is_none(),
        "too late to ring"
    );
}

fn carrier(username: Option<&str>) -> crate::Trunks {
    crate::Trunks::new(
        vec![crate::TrunkEntry {
            tenant: TenantId(1),
            name: "carrier".into(),
            peer: peer("127.0.0.1:9000"),
            host: "carrier.example".into(),
            port: 9000,
            username: username.map(str::to_string),
            password: username.map(|_| "trunk-secret".to_string()),
        }],
        vec![("+15550001".into(), TenantId(1))],
    )
}

#[test]
fn the_routing_request_carries_the_calling_device_and_only_exposed_headers() {
    let config = CoreConfig {
        exposed_headers: vec!["X-Customer-Id".into()],
        ..external()
    };
    let mut h = Harness::new(config);
    let uri = format!("sip:1001@{DOMAIN}");
    h.authorize(
        "127.0.0.1:7000",
        |auth| {
            format!(
                "INVITE sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKx{}\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-x\r\nCSeq: {} INVITE\r\nContact: <sip:1000@127.0.0.1:7000>\r\nUser-Agent: DeskPhone/2.1\r\nx-customer-id: 4711\r\nX-Secret: hidden\r\n{}Content-Length: 0\r\n\r\n",
                auth.is_some() as u8,
                1 + auth.is_some() as u8,
                auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default()
            )
        },
        "Proxy-Authenticate",
        "INVITE",
        &uri,
        "1000",
    );
    let req = h.routes.pop().expect("a routing request");
    let device = req.caller_device.expect("a phone called");
    assert_eq!(device.contact, "sip:1000@127.0.0.1:7000");
    assert_eq!(device.user_agent, "DeskPhone/2.1");
    assert_eq!(device.transport, TransportKind::Udp);
    assert_eq!(
        req.headers,
        [("x-customer-id".to_string(), "4711".to_string())]
    );
}

#[test]
fn a_trunk_call_presents_only_the_tenants_own_number_and_rings_for_its_timeout() {
    let mut h = Harness::new(external());
    h.shared.replace_trunks(carrier(None));
    h.invite();
    h.decide(crate::RouteDecision::Trunk {
        trunk: "carrier".into(),
        number: "15551234567".into(),
        timeout: Duration::from_secs(7),
        caller_id: Some("+15550001".into()),
    });
    let start = h.now;
    let out = h.take();
    let invite = sent_to(&out, 9000, "INVITE")
        .expect("out the trunk")
        .clone();
    assert!(
        invite
            .header("From")
            .unwrap()
            .contains("sip:+15550001@carrier.example"),
        "{:?}",
        invite.header("From")
    );
    h.feed("127.0.0.1:9000", &answer(&invite, 180, "Ringing"));
    h.run_until(start + Duration::from_millis(6900));
    assert!(sent_to(&h.take(), 9000, "CANCEL").is_none());
    h.run_until(start + Duration::from_millis(7100));
    assert!(
        sent_to(&h.take(), 9000, "CANCEL").is_some(),
        "the dial-out's own timeout ends it"
    );

    // A number the tenant does not own is refused before anything is sent.
    let mut h = Harness::new(external());
    h.shared.replace_trunks(carrier(None));
    h.invite();
    h.decide(crate::RouteDecision::Trunk {
        trunk: "carrier".into(),
        number: "15551234567".into(),
        timeout: Duration::ZERO,
        caller_id: Some("+15559999".into()),
    });
    let out = h.take();
    assert!(sent_to(&out, 9000, "INVITE").is_none());
    let refusal = out
        .iter()
        .find(|(_, m)| m.status() == Some(403))
        .expect("403");
    assert_eq!(refusal.1.reason(), "Caller ID Not Allowed");
}

#[test]
fn trunk_calls_answer_the_carriers_challenge_once() {
    let mut h = Harness::new(external());
    h.shared.replace_trunks(carrier(Some("acct")));
    h.invite();
    h.decide(crate::RouteDecision::trunk("carrier", "15551234567"));
    let out = h.take();
    let first = sent_to(&out, 9000, "INVITE")
        .expect("INVITE to the carrier")
        .clone();
    assert_eq!(first.request_uri(), "sip:15551234567@carrier.example:9000");
    assert!(first.header("Proxy-Authorization").is_none());

    let challenge = digest_auth::Challenge {
        realm: "carrier.example".into(),
        nonce: "n0nce".into(),
        algorithm: Algorithm::Md5,
        stale: false,
        opaque: None,
    };
    let mut resp = answer(&first, 407, "Proxy Authentication Required");
    resp = resp.replace(
        "Content-Length: 0",
        &format!(
            "Proxy-Authenticate: {}\r\nContent-Length: 0",
            challenge.header_value()
        ),
    );
    h.feed("127.0.0.1:9000", &resp);
    let out = h.take();
    assert!(
        sent_to(&out, 9000, "ACK").is_some(),
        "the 407 is acknowledged"
    );
    assert!(
        !statuses(&out).contains(&407),
        "the caller never sees the carrier's challenge"
    );
    let second = sent_to(&out, 9000, "INVITE")
        .expect("INVITE with credentials")
        .clone();
    assert_eq!(second.header("CSeq"), Some("2 INVITE"));
    assert_eq!(second.call_id(), first.call_id(), "same dialog");
    let creds =
        digest_auth::Credentials::parse(second.header("Proxy-Authorization").unwrap()).unwrap();
    let h1 = ha1(Algorithm::Md5, "acct", "carrier.example", "trunk-secret");
    assert!(creds.verify("INVITE", &h1));

    // A second challenge is not answered again: the caller gets the failure.
    h.feed(
        "127.0.0.1:9000",
        &resp
            .replace(&first.header("CSeq").unwrap().to_string(), "2 INVITE")
            .replace(
                first.top_via().unwrap().branch().unwrap(),
                second.top_via().unwrap().branch().unwrap(),
            ),
    );
    let out = h.take();
    assert!(sent_to(&out, 9000, "ACK").is_some());
    // The dial plan hears how the attempt ended, and ends the call.
    assert_eq!(
        h.routes.last().map(|r| r.event.clone()),
        Some(crate::CallEvent::DialEnded(crate::DialResult::Failed {
            status: 407
        }))
    );
    h.decide(crate::RouteDecision::Finish);
    assert!(statuses(&h.take()).contains(&407));
}

#[test]
fn a_decision_cannot_use_another_tenants_trunk() {
    let mut h = Harness::new(external());
    h.shared.replace_trunks(crate::Trunks::new(
        vec![crate::TrunkEntry {
            tenant: TenantId(2),
            name: "theirs".into(),
            peer: peer("127.0.0.1:9001"),
            host: "other.example".into(),
            port: 9001,
            username: None,
            password: None,
        }],
        vec![],
    ));
    h.invite();
    h.decide(crate::RouteDecision::trunk("theirs", "15551234567"));
    let out = h.take();
    assert!(sent_to(&out, 9001, "INVITE").is_none());
    assert!(statuses(&out).contains(&503));
}

#[test]
fn calls_from_a_trunk_to_a_did_skip_digest_and_carry_the_trunk() {
    let mut h = Harness::new(external());
    h.shared.replace_trunks(carrier(None));
    let invite = |via: &str| {
        format!(
            "INVITE sip:+15550001@pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKt1\r\nFrom: <sip:+4930123456@carrier.example>;tag=c\r\nTo: <sip:+15550001@pbx.example>\r\nCall-ID: in-1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{via}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    h.feed("127.0.0.1:9000", &invite("127.0.0.1:9000"));
    let out = h.take();
    assert_eq!(statuses(&out), vec![100]);
    let req = h.routes.pop().expect("routed");
    assert_eq!(req.inbound_trunk.as_deref(), Some("carrier"));
    assert_eq!(req.caller, "+4930123456");
    assert_eq!(req.caller_extension, None);
    assert_eq!(req.tenant, TenantId(1));

    // The same INVITE from anywhere else must authenticate.
    h.feed(
        "127.0.0.2:9555",
        &invite("127.0.0.2:9555").replace("in-1", "in-2"),
    );
    assert_eq!(statuses(&h.take()), vec![407]);
    assert!(h.routes.is_empty());
}

/// Feeds one REGISTER for `user@domain` answering the host's challenge with
/// `password` (no credentials when `None`); returns the guard outputs and the
/// final status.
fn register_outputs(
    h: &mut Harness,
    user: &str,
    domain: &str,
    password: Option<&str>,
) -> (Vec<Output>, Option<u16>) {
    register_outputs_relayed(h, user, domain, password, None)
}

/// [`register_outputs`] for a REGISTER a trusted proxy relayed from `client`.
fn register_outputs_relayed(
    h: &mut Harness,
    user: &str,
    domain: &str,
    password: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> (Vec<Output>, Option<u16>) {
    let from = "127.0.0.1:7100";
    let text = |auth: Option<String>| {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKg{}\r\nFrom: <sip:{user}@{domain}>;tag=g\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: guard-{user}\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@{from}>\r\n{}Content-Length: 0\r\n\r\n",
            auth.is_some() as u8,
            1 + auth.is_some() as u8,
            auth.map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default()
        )
    };
    let feed = |h: &mut Harness, text: String| {
        let mut inbound = Inbound::new(peer(from), SERVER.parse().unwrap(), Bytes::from(text));
        inbound.client = client;
        h.shard.handle(h.now, inbound);
        let (mut guard, mut reply) = (Vec::new(), None);
        while let Some(o) = h.shard.poll_output() {
            match o {
                Output::Transmit { bytes, .. } => {
                    reply = Some(Msg::parse(&bytes).expect("valid SIP"));
                }
                o @ (Output::AuthFailure { .. } | Output::Authenticated { .. }) => guard.push(o),
                _ => {}
            }
        }
        (guard, reply.expect("an answer"))
    };
    let (first, challenge) = feed(h, text(None));
    assert!(
        first.is_empty(),
        "the first challenge is no failure: {first:?}"
    );
    assert_eq!(challenge.status(), Some(401));
    let Some(password) = password else {
        return (first, challenge.status());
    };
    let value = challenge.header("WWW-Authenticate").expect("challenge");
    let nonce = value
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    let uri = format!("sip:{domain}");
    let h1 = ha1(Algorithm::Md5, user, domain, password);
    let md5 = |s: String| {
        use md5::Digest;
        hex::encode(md5::Md5::digest(s.as_bytes()))
    };
    let h2 = md5(format!("REGISTER:{uri}"));
    let resp = md5(format!("{h1}:{nonce}:00000001:c0ffee:auth:{h2}"));
    let auth = format!(
        "Digest username=\"{user}\", realm=\"{domain}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
    );
    let (out, reply) = feed(h, text(Some(auth)));
    (out, reply.status())
}

#[test]
fn auth_failures_and_successes_are_reported_but_first_challenges_are_not() {
    let mut h = Harness::new(CoreConfig::default());
    let source: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let failure = |domain: &str, user: &str, tenant: Option<TenantId>| Output::AuthFailure {
        source,
        domain: domain.into(),
        user: user.into(),
        method: "REGISTER".into(),
        tenant,
    };

    let (out, status) = register_outputs(&mut h, "1000", DOMAIN, None);
    assert_eq!((out, status), (vec![], Some(401)));

    let (out, status) = register_outputs(&mut h, "1000", DOMAIN, Some("wrong"));
    assert_eq!(status, Some(401));
    assert_eq!(out, vec![failure(DOMAIN, "1000", Some(TenantId(1)))]);

    let (out, _) = register_outputs(&mut h, "9999", DOMAIN, Some("pw9999"));
    assert_eq!(out, vec![failure(DOMAIN, "9999", Some(TenantId(1)))]);

    let (out, status) = register_outputs(&mut h, "1000", "nowhere.example", Some("pw1000"));
    assert_eq!(status, Some(401));
    assert_eq!(out, vec![failure("nowhere.example", "1000", None)]);

    let (out, status) = register_outputs(&mut h, "1000", DOMAIN, Some("pw1000"));
    assert_eq!(status, Some(200));
    assert_eq!(out, vec![Output::Authenticated { source }]);
}

/// Behind a trusted proxy (a cluster's front), failures, successes and the
/// tenant's network restrictions go by the client's address, not the
/// proxy's.
#[test]
fn relayed_requests_are_judged_by_the_clients_address() {
    let mut dir = directory();
    dir.acls.push(model::NetworkAcl {
        tenant: TenantId(1),
        extension: None,
        cidr: "198.51.100.0/24".into(),
    });
    let mut h = Harness::with_directory(CoreConfig::default(), dir);
    let office: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let (out, status) =
        register_outputs_relayed(&mut h, "1000", DOMAIN, Some("pw1000"), Some(office));
    assert_eq!(status, Some(200), "the office's network is allowed");
    assert_eq!(out, vec![Output::Authenticated { source: office }]);
    let stranger: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    let (out, status) =
        register_outputs_relayed(&mut h, "1000", DOMAIN, Some("pw1000"), Some(stranger));
    assert_eq!(
        status,
        Some(403),
        "another network is not, whatever the proxy's"
    );
    assert_eq!(out, vec![Output::Authenticated { source: stranger }]);
    let (out, _) = register_outputs_relayed(&mut h, "1000", DOMAIN, Some("wrong"), Some(stranger));
    assert!(
        matches!(out.as_slice(), [Output::AuthFailure { source, .. }] if *source == stranger),
        "{out:?}"
    );
    let (_, status) = register_outputs(&mut h, "1000", DOMAIN, Some("pw1000"));
    assert_eq!(status, Some(403), "straight from 127.0.0.1: not the office");
}

/// A disabled extension's right password gets 403 and is no failure (its
/// phone retrying must not get the address banned); a wrong one is a failure.
/// The same for a suspended tenant.
#[test]
fn suspended_extensions_and_tenants_are_refused_without_failures() {
    let source: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut dir = directory();
    dir.extensions[0].enabled = false;
    let mut h = Harness::with_directory(CoreConfig::default(), dir.clone());
    let (out, status) = register_outputs(&mut h, "1000", DOMAIN, Some("pw1000"));
    assert_eq!((out, status), (vec![], Some(403)));
    let (out, status) = register_outputs(&mut h, "1000", DOMAIN, Some("wrong"));
    assert_eq!(status, Some(401));
    assert!(
        matches!(out.as_slice(), [Output::AuthFailure { .. }]),
        "{out:?}"
    );
    let (out, status) = register_outputs(&mut h, "1001", DOMAIN, Some("pw1001"));
    assert_eq!(
        (out, status),
        (vec![Output::Authenticated { source }], Some(200))
    );

    dir.tenants[0].status = TenantStatus::Suspended;
    let mut h = Harness::with_directory(CoreConfig::default(), dir);
    let (out, status) = register_outputs(&mut h, "1001", DOMAIN, Some("pw1001"));
    assert_eq!((out, status), (vec![], Some(403)));
}

/// Media anchoring with a stand-in anchor: rewrites the `c=` line to the relay's
/// address, refuses offers that say `refuse`, counts what it saw.
mod anchoring {
    use super::*;
    use crate::{
        CallMediaHandle, CdrMedia, MediaAnchor, MediaEncryption, MediaLeg, MediaRefusal,
        MediaSecurity,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    pub(super) struct Anchor {
        opened: AtomicU64,
        /// What the calls' media were asked to do besides SDP, in order.
        pub(super) asked: Arc<parking_lot::Mutex<Vec<String>>>,
        /// Host media sessions refused this way while set.
        pub(super) full: Arc<parking_lot::Mutex<Option<crate::HostMediaFull>>>,
    }

    #[derive(Debug)]
    struct Handle {
        seen: AtomicU64,
        asked: Arc<parking_lot::Mutex<Vec<String>>>,
        full: Arc<parking_lot::Mutex<Option<crate::HostMediaFull>>>,
    }

    fn rewrite(sdp: &[u8], leg: MediaLeg, kind: &str) -> Result<Vec<u8>, MediaRefusal> {
        let text = std::str::from_utf8(sdp).map_err(|_| MediaRefusal::new(400, "not text"))?;
        if text.contains("refuse") {
            return Err(MediaRefusal::new(488, "refused"));
        }
        Ok(text
            .replace(
                "c=IN IP4 127.0.0.1",
                &format!("c=IN IP4 192.0.2.99 ({kind} from {leg:?})"),
            )
            .into_bytes())
    }

    impl CallMediaHandle for Handle {
        fn offer(
            &self,
            from: MediaLeg,
            sdp: &[u8],
            _: MediaSecurity,
            _: MediaEncryption,
        ) -> Result<Vec<u8>, MediaRefusal> {
            self.seen.fetch_add(1, Ordering::Relaxed);
            rewrite(sdp, from, "offer")
        }
        fn answer(
            &self,
            from: MediaLeg,
            sdp: &[u8],
            _: MediaSecurity,
            _: MediaEncryption,
        ) -> Result<Vec<u8>, MediaRefusal> {
            self.seen.fetch_add(1, Ordering::Relaxed);
            rewrite(sdp, from, "answer")
        }
        fn answer_here(
            &self,
            from: MediaLeg,
            sdp: &[u8],
            _: bool,
            _: MediaEncryption,
        ) -> Result<Vec<u8>, MediaRefusal> {
            self.seen.fetch_add(1, Ordering::Relaxed);
            rewrite(sdp, from, "host answer")
        }
        fn play(&self, prompts: &[crate::PromptRef]) -> Result<(), MediaRefusal> {
            self.asked.lock().push(format!("play {prompts:?}"));
            Ok(())
        }
        fn stop_playing(&self) {
            self.asked.lock().push("stop".into());
        }
        fn record(&self, record: &crate::Record, _: &str) -> Result<(), MediaRefusal> {
            self.asked.lock().push(format!("record {}", record.mailbox));
            Ok(())
        }
        fn voicemail_menu(&self, mailbox: &str) -> Result<(), MediaRefusal> {
            self.asked.lock().push(format!("menu {mailbox}"));
            Ok(())
        }
        fn voicemail_greeting(
            &self,
            mailbox: &str,
            greeting: &[crate::PromptRef],
        ) -> Result<(), MediaRefusal> {
            self.asked
                .lock()
                .push(format!("greet {mailbox} {greeting:?}"));
            Ok(())
        }
        fn menu_key(&self, key: char) {
            self.asked.lock().push(format!("key {key}"));
        }
        fn offer_from_host(
            &self,
            _: bool,
            _: bool,
            _: MediaEncryption,
        ) -> Result<Vec<u8>, MediaRefusal> {
            self.asked.lock().push("offer from host".into());
            Ok(SDP.replace("127.0.0.1", "192.0.2.99").into_bytes())
        }
        fn answer_to_host_offer(
            &self,
            _: &[u8],
            _: MediaSecurity,
            _: MediaEncryption,
        ) -> Result<(), MediaRefusal> {
            self.asked.lock().push("connected".into());
            Ok(())
        }
        fn answer_pickup(
            &self,
            caller: Option<(&[u8], bool)>,
            picker: &[u8],
            _: bool,
            _: MediaEncryption,
        ) -> Result<(Option<Vec<u8>>, Vec<u8>), MediaRefusal> {
            self.asked.lock().push("pickup".into());
            let to_caller = match caller {
                Some((sdp, _)) => Some(rewrite(sdp, MediaLeg::Caller, "pickup answer")?),
                None => None,
            };
            Ok((
                to_caller,
                rewrite(picker, MediaLeg::Callee, "pickup answer")?,
            ))
        }
        fn connected(&self, caller: &str, callee: &str) {
            self.asked.lock().push(format!("bridged {caller} {callee}"));
        }
        fn hold_host_session(&self) -> Result<(), crate::HostMediaFull> {
            match *self.full.lock() {
                Some(full) => Err(full),
                None => Ok(()),
            }
        }
        fn stats(&self) -> CdrMedia {
            let mut m = CdrMedia::default();
            m.caller.packets_in = self.seen.load(Ordering::Relaxed);
            m
        }
        fn idle_since(&self) -> Instant {
            Instant::now()
        }
    }

    impl MediaAnchor for Anchor {
        fn open(
            &self,
            _: usize,
            _: u64,
            _: model::TenantId,
        ) -> Result<Box<dyn CallMediaHandle>, MediaRefusal> {
            self.opened.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Handle {
                seen: AtomicU64::new(0),
                asked: self.asked.clone(),
                full: self.full.clone(),
            }))
        }
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    fn harness() -> (Harness, Arc<Anchor>) {
        let h = Harness::new(CoreConfig::default());
        let anchor = Arc::new(Anchor::default());
        assert!(h.shared.set_media_anchor(anchor.clone()));
        assert!(!h.shared.set_media_anchor(anchor.clone()), "set once");
        (h, anchor)
    }

    fn invite_with(h: &mut Harness, body: &str) -> Vec<(SocketAddr, Msg)> {
        invite_from(h, ("127.0.0.1:7000", "1000"), "1001", "call-1", body)
    }

    /// `user` at `from` calls `target` with `body` as its offer, answering
    /// the challenge; what the host sent after the authenticated INVITE.
    fn invite_from(
        h: &mut Harness,
        (from, user): (&str, &str),
        target: &str,
        call_id: &str,
        body: &str,
    ) -> Vec<(SocketAddr, Msg)> {
        let uri = format!("sip:{target}@{DOMAIN}");
        let port = from.rsplit(':').next().unwrap_or_default().to_string();
        h.authorize(
            from,
            |auth| {
                format!(
                    "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKi{port}{}\r\nFrom: <sip:{user}@{DOMAIN}>;tag=a\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {} INVITE\r\nContact: <sip:{user}@{from}>\r\n{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                    auth.is_some() as u8,
                    1 + auth.is_some() as u8,
                    auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default(),
                    body.len()
                )
            },
            "Proxy-Authenticate",
            "INVITE",
            &uri,
            user,
        )
    }

    fn with_body(response: &str, body: &str) -> String {
        response.replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    #[test]
    fn offer_and_answer_are_rewritten_and_idle_media_hangs_up() {
        let (mut h, anchor) = harness();
        h.register("1001", "127.0.0.1:7001");
        let out = invite_with(&mut h, SDP);
        let invite = &out
            .iter()
            .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
            .expect("fork")
            .1;
        let body = String::from_utf8_lossy(&invite.body).to_string();
        assert!(body.contains("(offer from Caller)"), "{body}");
        assert_eq!(anchor.opened.load(Ordering::Relaxed), 1);

        let ringing = with_body(&answer(invite, 183, "Session Progress"), SDP);
        h.feed("127.0.0.1:7001", &ringing);
        let ok = with_body(&answer(invite, 200, "OK"), SDP);
        h.feed("127.0.0.1:7001", &ok);
        let out = h.take();
        for status in [183, 200] {
            let m = &out
                .iter()
                .find(|(_, m)| m.status() == Some(status))
                .expect("relayed")
                .1;
            let body = String::from_utf8_lossy(&m.body).to_string();
            assert!(body.contains("(answer from Callee)"), "{status}: {body}");
        }
        assert_eq!(
            anchor.asked.lock().as_slice(),
            ["bridged 1000 1001"],
            "the media hears once that the legs talk"
        );

        // The relay reports the call idle: both legs get a BYE, and the record
        // carries the media counters.
        h.shard.media_idle(h.now, 1);
        h.drain();
        let out = h.take();
        let byes: Vec<u16> = out
            .iter()
            .filter(|(_, m)| m.method() == Some(crate::msg::Method::Bye))
            .map(|(a, _)| a.port())
            .collect();
        assert!(byes.contains(&7000) && byes.contains(&7001), "{byes:?}");
    }

    #[test]
    fn a_refused_offer_gets_488_and_nothing_rings() {
        let (mut h, _) = harness();
        h.register("1001", "127.0.0.1:7001");
        let out = invite_with(&mut h, &format!("{SDP}a=refuse\r\n"));
        assert!(statuses(&out).contains(&488), "{:?}", statuses(&out));
        assert!(
            out.iter()
                .all(|(_, m)| m.method() != Some(crate::msg::Method::Invite))
        );
    }

    #[test]
    fn late_offer_goes_through_the_media_both_ways() {
        let (mut h, _) = harness();
        h.register("1001", "127.0.0.1:7001");
        let out = h.invite();
        let invite = out
            .iter()
            .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
            .expect("fork")
            .1
            .clone();
        assert!(invite.body.is_empty());
        h.feed(
            "127.0.0.1:7001",
            &with_body(&answer(&invite, 200, "OK"), SDP),
        );
        let out = h.take();
        let ok = out
            .iter()
            .find(|(_, m)| m.status() == Some(200))
            .expect("200")
            .1
            .clone();
        assert!(String::from_utf8_lossy(&ok.body).contains("(offer from Callee)"));
        let ack = format!(
            "ACK sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKack\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            ok.header("To").unwrap(),
            SDP.len()
        );
        h.feed("127.0.0.1:7000", &ack);
        let out = h.take();
        let ack_b = &out
            .iter()
            .find(|(a, m)| m.method() == Some(crate::msg::Method::Ack) && a.port() == 7001)
            .expect("ACK to the callee")
            .1;
        assert!(String::from_utf8_lossy(&ack_b.body).contains("(answer from Caller)"));
    }

    #[test]
    fn the_record_carries_media_counters() {
        let (mut h, _) = harness();
        h.register("1001", "127.0.0.1:7001");
        let out = invite_with(&mut h, SDP);
        let invite = out
            .iter()
            .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
            .expect("fork")
            .1
            .clone();
        h.feed(
            "127.0.0.1:7001",
            &with_body(&answer(&invite, 200, "OK"), SDP),
        );
        h.shard.media_idle(h.now, 1);
        let mut cdr = None;
        while let Some(o) = h.shard.poll_output() {
            if let Output::Cdr(c) = o {
                cdr = Some(c);
            }
        }
        let cdr = cdr.expect("record written");
        // offer + answer passed through the handle
        assert_eq!(cdr.media.caller.packets_in, 2);
        assert_eq!(cdr.hangup_by, "system");
    }

    fn ack_for(ok: &Msg) -> String {
        format!(
            "ACK sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKack\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
            ok.header("To").unwrap()
        )
    }

    fn external_harness() -> Harness {
        let h = Harness::new(external());
        assert!(h.shared.set_media_anchor(Arc::new(Anchor::default())));
        h
    }

    #[test]
    fn the_host_answers_and_hangs_up_only_after_the_ack() {
        let mut h = external_harness();
        invite_with(&mut h, SDP);
        h.decide(crate::RouteDecision::Answer { hang_up: true });
        let out = h.take();
        let ok = out
            .iter()
            .find(|(_, m)| m.status() == Some(200))
            .map(|(_, m)| m.clone())
            .expect("the host answers");
        let body = String::from_utf8_lossy(&ok.body).to_string();
        assert!(body.contains("(host answer from Caller)"), "{body}");
        assert!(ok.header("Contact").is_some());
        assert!(
            out.iter()
                .all(|(_, m)| m.method() != Some(crate::msg::Method::Bye)),
            "no BYE before the ACK (RFC 3261 §15)"
        );
        assert!(h.cdrs.is_empty());
        h.feed("127.0.0.1:7000", &ack_for(&ok));
        let bye = sent_to(&h.take(), 7000, "BYE")
            .expect("BYE to the caller")
            .clone();
        assert_eq!(bye.call_id(), "call-1");
        let cdr = h.cdrs.pop().expect("record written");
        assert_eq!(cdr.disposition, model::Disposition::Answered);
        assert_eq!(cdr.hangup_by, "system");
        assert!(cdr.answered_at_ms.is_some());
    }

    #[test]
    fn a_host_answered_call_stays_up_and_answers_in_dialog_requests_itself() {
        let mut h = external_harness();
        invite_with(&mut h, SDP);
        h.decide(crate::RouteDecision::Answer { hang_up: false });
        let ok = h
            .take()
            .into_iter()
            .find(|(_, m)| m.status() == Some(200))
            .map(|(_, m)| m)
            .expect("answered");
        h.feed("127.0.0.1:7000", &ack_for(&ok));
        assert!(
            sent_to(&h.take(), 7000, "BYE").is_none(),
            "the call stays up"
        );
        let to = ok.header("To").unwrap().to_string();
        let reinvite = format!(
            "INVITE sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKre\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: 3 INVITE\r\nContact: <sip:1000@127.0.0.1:7000>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        );
        h.feed("127.0.0.1:7000", &reinvite);
        let out = h.take();
        let again = out
            .iter()
            .find(|(_, m)| m.status() == Some(200))
            .expect("a refresh is answered by the host")
            .1
            .clone();
        assert_eq!(again.body, ok.body, "with the same answer");
        let bye = format!(
            "BYE sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKbye\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: 4 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        h.feed("127.0.0.1:7000", &bye);
        let out = h.take();
        assert_eq!(statuses(&out), vec![200]);
        assert_eq!(out.len(), 1, "no BYE goes anywhere else: {out:?}");
        assert_eq!(h.cdrs.pop().expect("record").hangup_by, "caller");
    }

    #[test]
    fn the_host_cannot_answer_without_an_offer() {
        let mut h = external_harness();
        h.invite();
        h.decide(crate::RouteDecision::Answer { hang_up: true });
        assert!(statuses(&h.take()).contains(&488));
    }

    /// A shard routing externally with an anchor whose requests the test
    /// reads, 1001 registered on :7001, and 1000 calling 1001 with an offer.
    fn media_harness() -> (Harness, Arc<Anchor>, u64) {
        let mut h = Harness::new(external());
        let anchor = Arc::new(Anchor::default());
        assert!(h.shared.set_media_anchor(anchor.clone()));
        h.register("1001", "127.0.0.1:7001");
        h.take();
        invite_with(&mut h, SDP);
        let call = h.routes.last().expect("asked to route").call;
        (h, anchor, call)
    }

    fn menu() -> crate::HostMedia {
        crate::HostMedia::Gather(crate::Gather {
            prompts: vec![crate::PromptRef::Tenant("menu".into())],
            max_digits: 1,
            terminator: Some('#'),
            timeout: Duration::from_secs(5),
            inter_digit: Duration::from_secs(3),
            barge_in: true,
        })
    }

    fn last_event(h: &Harness) -> crate::CallEvent {
        h.routes
            .last()
            .expect("asked for the next step")
            .event
            .clone()
    }

    #[test]
    fn an_ivr_answers_gathers_a_key_and_connects_the_caller_to_a_phone() {
        let (mut h, anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(menu()));
        let out = h.take();
        let ok = out
            .iter()
            .find(|(_, m)| m.status() == Some(200))
            .map(|(_, m)| m.clone())
            .expect("the host answers before it plays");
        assert_eq!(anchor.asked.lock().as_slice(), ["play [Tenant(\"menu\")]"]);
        h.feed("127.0.0.1:7000", &ack_for(&ok));
        // The caller presses 2 while the menu plays: it stops (barge-in).
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::Digit('2'));
        h.drain();
        assert_eq!(anchor.asked.lock().last().map(String::as_str), Some("stop"));
        assert_eq!(last_event(&h), crate::CallEvent::DigitsGathered("2".into()));
        assert_eq!(h.routes.last().unwrap().step, 2);
        h.decide(crate::RouteDecision::Ring(vec![crate::RingStep {
            extensions: vec!["1001".into()],
            timeout: Duration::from_secs(20),
        }]));
        let out = h.take();
        let invite = sent_to(&out, 7001, "INVITE")
            .expect("the phone rings")
            .clone();
        assert!(
            String::from_utf8_lossy(&invite.body).contains("192.0.2.99"),
            "offered from the host's media"
        );
        assert!(anchor.asked.lock().contains(&"offer from host".to_string()));
        h.feed("127.0.0.1:7001", &answer(&invite, 180, "Ringing"));
        h.feed(
            "127.0.0.1:7001",
            &with_body(&answer(&invite, 200, "OK"), SDP),
        );
        let out = h.take();
        assert!(
            sent_to(&out, 7001, "ACK").is_some(),
            "the phone's answer is acknowledged"
        );
        assert!(
            out.iter().all(|(a, _)| a.port() != 7000),
            "the caller, answered already, hears nothing in SIP: {out:?}"
        );
        assert_eq!(
            anchor.asked.lock().as_slice().last_chunk::<2>(),
            Some(&["connected".to_string(), "bridged 1000 1001".to_string()]),
            "connected to the phone, then told the legs talk"
        );
        // The caller hangs up: the phone gets the BYE, one record is written.
        let bye = format!(
            "BYE sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKbye\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 4 BYE\r\nContent-Length: 0\r\n\r\n",
            ok.header("To").unwrap()
        );
        h.feed("127.0.0.1:7000", &bye);
        assert!(sent_to(&h.take(), 7001, "BYE").is_some());
        let cdr = h.cdrs.pop().expect("record");
        assert_eq!(cdr.disposition, model::Disposition::Answered);
        assert_eq!(cdr.hangup_by, "caller");
        assert!(h.cdrs.is_empty());
    }

    #[test]
    fn a_gather_without_keys_times_out_empty_and_info_keys_count() {
        let (mut h, _anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(menu()));
        let ok = h
            .take()
            .into_iter()
            .find(|(_, m)| m.status() == Some(200))
            .map(|(_, m)| m)
            .expect("answered");
        h.feed("127.0.0.1:7000", &ack_for(&ok));
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::PromptFinished);
        h.drain();
        assert!(h.routes.is_empty(), "waits for a key");
        let until = h.now + Duration::from_secs(5);
        h.run_until(until);
        assert_eq!(
            last_event(&h),
            crate::CallEvent::DigitsGathered(String::new())
        );
        // The next gather hears a key sent as SIP INFO.
        h.decide(crate::RouteDecision::Media(menu()));
        let again = h.take();
        assert!(again.is_empty(), "answered once only: {again:?}");
        let to = format!("<sip:1001@{DOMAIN}>;tag={}", {
            let c = h.shard.calls.get(&call).unwrap();
            c.a.local_tag.clone()
        });
        let body = "Signal=7\r\nDuration=160\r\n";
        let info = format!(
            "INFO sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKinfo\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: 5 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        h.feed("127.0.0.1:7000", &info);
        assert_eq!(statuses(&h.take()), vec![200]);
        assert_eq!(last_event(&h), crate::CallEvent::DigitsGathered("7".into()));
    }

    #[test]
    fn voicemail_greets_records_and_lights_the_phone() {
        let (mut h, anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(crate::HostMedia::Voicemail {
            mailbox: "1001".into(),
        }));
        assert!(statuses(&h.take()).contains(&200));
        assert_eq!(
            anchor.asked.lock().as_slice(),
            ["greet 1001 [Tenant(\"greeting-1001\")]"]
        );
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::PromptFinished);
        h.drain();
        assert_eq!(
            anchor.asked.lock().last().map(String::as_str),
            Some("record 1001")
        );
        h.shard.media_notice(
            h.now,
            call,
            crate::MediaNotice::RecordingStored {
                id: "m1".into(),
                duration: Duration::from_secs(5),
            },
        );
        h.shard
            .notify_mailbox(h.now, model::TenantId(1), "1001", (1, 2));
        h.drain();
        let out = h.take();
        let notify = sent_to(&out, 7001, "NOTIFY").expect("MWI to the mailbox's phone");
        assert_eq!(notify.header("Event"), Some("message-summary"));
        let body = String::from_utf8_lossy(&notify.body).to_string();
        assert!(body.contains("Messages-Waiting: yes"), "{body}");
        assert!(body.contains("Voice-Message: 1/2"), "{body}");
        assert_eq!(
            last_event(&h),
            crate::CallEvent::RecordingFinished {
                id: Some("m1".into())
            }
        );
        h.decide(crate::RouteDecision::Media(crate::HostMedia::HangUp));
        assert!(
            sent_to(&h.take(), 7000, "BYE").is_some(),
            "the host hangs up"
        );
        assert_eq!(
            h.cdrs.pop().expect("record").disposition,
            model::Disposition::Answered
        );
    }

    #[test]
    fn a_full_mailbox_hangs_up_without_recording_and_tags_the_record() {
        let (mut h, anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(crate::HostMedia::Voicemail {
            mailbox: "1001".into(),
        }));
        assert!(statuses(&h.take()).contains(&200));
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::MailboxFull);
        h.drain();
        assert!(
            sent_to(&h.take(), 7000, "BYE").is_some(),
            "the host hangs up"
        );
        assert!(
            !anchor.asked.lock().iter().any(|a| a.starts_with("record")),
            "nothing is recorded: {:?}",
            anchor.asked.lock()
        );
        let cdr = h.cdrs.pop().expect("record");
        assert_eq!(cdr.tags, [crate::MAILBOX_FULL_TAG]);
        assert_eq!(cdr.disposition, model::Disposition::Answered);
    }

    #[test]
    fn a_recording_without_minutes_left_ends_the_step_and_tags_the_record() {
        let (mut h, anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(crate::HostMedia::Voicemail {
            mailbox: "1001".into(),
        }));
        assert!(statuses(&h.take()).contains(&200));
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::PromptFinished);
        h.drain();
        assert_eq!(
            anchor.asked.lock().last().map(String::as_str),
            Some("record 1001")
        );
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::RecordingMinutesFull);
        h.drain();
        assert_eq!(
            last_event(&h),
            crate::CallEvent::RecordingFinished { id: None }
        );
        h.decide(crate::RouteDecision::Media(crate::HostMedia::HangUp));
        h.take();
        assert_eq!(
            h.cdrs.pop().expect("record").tags,
            vec![crate::MediaNotice::RECORDING_MINUTES_FULL.to_string()]
        );
    }

    #[test]
    fn the_mailbox_menu_hears_the_callers_keys_from_media_and_info() {
        let (mut h, anchor, call) = media_harness();
        h.decide(crate::RouteDecision::Media(
            crate::HostMedia::VoicemailMenu {
                mailbox: "1000".into(),
            },
        ));
        let ok = h
            .take()
            .into_iter()
            .find(|(_, m)| m.status() == Some(200))
            .map(|(_, m)| m)
            .expect("answered");
        h.feed("127.0.0.1:7000", &ack_for(&ok));
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::Digit('4'));
        let to = ok.header("To").unwrap().to_string();
        let body = "Signal=#\r\n";
        let info = format!(
            "INFO sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKinfo2\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: 5 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        h.feed("127.0.0.1:7000", &info);
        assert_eq!(statuses(&h.take()), vec![200]);
        assert_eq!(
            anchor.asked.lock().as_slice(),
            ["menu 1000", "key 4", "key #"]
        );
        assert!(h.routes.is_empty(), "the menu runs until it is done");
        h.shard
            .media_notice(h.now, call, crate::MediaNotice::PromptFinished);
        h.drain();
        assert_eq!(last_event(&h), crate::CallEvent::PromptFinished);
    }

    /// 1001 and 1002 share a ring group; 1000 is in none.
    struct Sales;
    impl crate::PickupGroups for Sales {
        fn mates(&self, _: model::TenantId, extension: &str) -> Vec<String> {
            match extension {
                "1001" => vec!["1002".into()],
                "1002" => vec!["1001".into()],
                _ => Vec::new(),
            }
        }
    }

    fn pickup_invite(
        h: &mut Harness,
        from: &str,
        user: &str,
        call_id: &str,
    ) -> Vec<(SocketAddr, Msg)> {
        invite_from(h, (from, user), "*8", call_id, SDP)
    }

    #[test]
    fn a_group_mate_picks_up_a_call_ringing_on_another_shard() {
        let mut h = Harness::new(CoreConfig::default());
        let shared = Shared::new(
            CoreConfig::default(),
            directory(),
            Vec::new(),
            (h.now, 1_700_000_000_000),
            2,
        );
        let anchor = Arc::new(Anchor::default());
        assert!(shared.set_media_anchor(anchor.clone()));
        assert!(shared.set_pickup_groups(Arc::new(Sales)));
        h.shared = shared.clone();
        h.shard = Shard::new(0, shared.clone());
        let mut other = Shard::new(1, shared.clone());
        h.register("1001", "127.0.0.1:7001");
        h.register("1002", "127.0.0.1:7002");

        // Shard 0: 1000 calls 1001, whose phone rings.
        let out = invite_with(&mut h, SDP);
        let fork = sent_to(&out, 7001, "INVITE").expect("1001 rings").clone();
        h.feed("127.0.0.1:7001", &answer(&fork, 180, "Ringing"));
        assert!(statuses(&h.take()).contains(&180));

        // Shard 1: 1000 is in no group with 1001 and finds nothing to pick up.
        std::mem::swap(&mut h.shard, &mut other);
        let out = pickup_invite(&mut h, "127.0.0.1:7000", "1000", "pick-0");
        assert_eq!(statuses(&out), vec![480], "nothing to pick up for 1000");
        assert!(h.forwards.is_empty());

        // 1002 dials *8 on shard 1: once authenticated, the INVITE goes to
        // shard 0 with 1002's identity, and its Call-ID follows.
        let out = pickup_invite(&mut h, "127.0.0.1:7002", "1002", "pick-1");
        assert!(
            out.is_empty(),
            "shard 1 answers nothing itself: {:?}",
            statuses(&out)
        );
        let (to, inbound) = h.forwards.pop().expect("handed over");
        assert_eq!(to, 0);
        assert_eq!(
            shared.shard_for(&inbound.bytes),
            0,
            "pinned to the call's shard"
        );

        // A retransmission that still reaches shard 1 follows it too.
        let again = Inbound::new(inbound.peer, inbound.local, inbound.bytes.clone());
        h.shard.handle(h.now, again);
        h.drain();
        assert_eq!(
            h.forwards.pop().map(|(s, i)| (s, i.handoff)),
            Some((0, None))
        );

        // Shard 0 picks up: 1001's phone is cancelled, the caller and the
        // picker are answered through the media and connected.
        std::mem::swap(&mut h.shard, &mut other);
        h.shard.handle(h.now, inbound);
        h.drain();
        let out = h.take();
        assert!(
            sent_to(&out, 7001, "CANCEL").is_some(),
            "the ringing phone stops"
        );
        let to_caller = out
            .iter()
            .find(|(a, m)| a.port() == 7000 && m.status() == Some(200))
            .expect("caller answered")
            .1
            .clone();
        assert!(String::from_utf8_lossy(&to_caller.body).contains("(pickup answer from Caller)"));
        let to_picker = out
            .iter()
            .find(|(a, m)| a.port() == 7002 && m.status() == Some(200))
            .expect("picker answered")
            .1
            .clone();
        assert!(String::from_utf8_lossy(&to_picker.body).contains("(pickup answer from Callee)"));
        assert!(anchor.asked.lock().contains(&"pickup".to_string()));

        // The picker's 200 is repeated until its ACK.
        let later = h.now + Duration::from_millis(600);
        h.run_until(later);
        assert!(
            h.take()
                .iter()
                .any(|(a, m)| a.port() == 7002 && m.status() == Some(200)),
            "200 retransmitted to the picker"
        );
        let tag = to_picker.to().unwrap().tag().unwrap().to_string();
        let in_dialog = |method: &str, cseq: u32| {
            format!(
                "{method} sip:*8@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7002;branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:1002@{DOMAIN}>;tag=a\r\nTo: <sip:*8@{DOMAIN}>;tag={tag}\r\nCall-ID: pick-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        h.feed("127.0.0.1:7002", &in_dialog("ACK", 2));
        let later = h.now + Duration::from_secs(2);
        h.run_until(later);
        assert!(
            !h.take()
                .iter()
                .any(|(a, m)| a.port() == 7002 && m.status() == Some(200)),
            "no 200 after the ACK"
        );

        // The picker hangs up: the caller gets a BYE, and the record says
        // who picked the call up from whom.
        h.feed("127.0.0.1:7002", &in_dialog("BYE", 3));
        let out = h.take();
        assert!(
            sent_to(&out, 7000, "BYE").is_some(),
            "the caller is hung up"
        );
        let cdr = h.cdrs.pop().expect("record");
        assert_eq!(cdr.disposition, model::Disposition::Answered);
        assert_eq!(cdr.callee_call_id, "pick-1");
        assert_eq!(cdr.tags, vec!["picked-up-from:1001".to_string()]);
    }

    #[test]
    fn a_call_that_finds_no_host_media_session_is_refused_with_the_reason() {
        for (full, status) in [
            (crate::HostMediaFull::Tenant { limit: 2 }, 486),
            (crate::HostMediaFull::Host { limit: 9 }, 503),
        ] {
            let (mut h, anchor, _call) = media_harness();
            *anchor.full.lock() = Some(full);
            h.decide(crate::RouteDecision::Media(menu()));
            let out = h.take();
            let refusal = out
                .iter()
                .find(|(a, m)| a.port() == 7000 && m.status() == Some(status))
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| panic!("{status} to the caller: {out:?}"));
            assert!(statuses(&out).iter().all(|s| *s != 200), "never answered");
            let warning = refusal.header("Warning").expect("Warning").to_string();
            assert!(
                warning.starts_with("399 ") && warning.contains(&full.text()),
                "{warning}"
            );
            let reason = refusal.header("Reason").expect("Reason").to_string();
            assert!(reason.contains(&format!("cause={status}")), "{reason}");
            assert!(anchor.asked.lock().is_empty(), "nothing played");
            let cdr = h.cdrs.pop().expect("record");
            assert_eq!(cdr.tags, vec![crate::HostMediaFull::TAG.to_string()]);
            assert_eq!(cdr.sip_code, status);
        }
    }

    #[test]
    fn a_refused_connection_after_the_host_answered_hangs_up_the_caller() {
        let (mut h, _anchor, _call) = media_harness();
        h.decide(crate::RouteDecision::Media(crate::HostMedia::Play(vec![])));
        assert!(statuses(&h.take()).contains(&200));
        let call = h.routes.is_empty();
        assert!(call, "waits for the prompt");
        let id = h.shard.calls.keys().copied().next().unwrap();
        h.shard
            .media_notice(h.now, id, crate::MediaNotice::PromptFinished);
        h.drain();
        assert_eq!(last_event(&h), crate::CallEvent::PromptFinished);
        h.decide(crate::RouteDecision::reject(403, "Policy Denied"));
        let out = h.take();
        assert!(
            sent_to(&out, 7000, "BYE").is_some(),
            "BYE, not a 403 after 200"
        );
        assert!(statuses(&out).iter().all(|s| *s != 403), "{out:?}");
        assert_eq!(h.cdrs.len(), 1);
    }
}

#[test]
fn a_retransmitted_register_gets_200_again_but_a_replay_is_challenged() {
    let mut h = Harness::new(CoreConfig::default());
    let sent = std::cell::RefCell::new(String::new());
    let uri = format!("sip:{DOMAIN}");
    let out = h.authorize(
        "127.0.0.1:7001",
        |auth| {
            let text = register_request("1001", "127.0.0.1:7001", "reg-1001", 3600, auth);
            *sent.borrow_mut() = text.clone();
            text
        },
        "WWW-Authenticate",
        "REGISTER",
        &uri,
        "1001",
    );
    assert_eq!(out[0].1.status(), Some(200));
    let retransmission = sent.borrow().clone();
    h.feed("127.0.0.1:7001", &retransmission);
    let out = h.take();
    assert_eq!(
        statuses(&out),
        vec![200],
        "the retransmission is answered alike"
    );
    assert!(
        out[0]
            .1
            .header("Contact")
            .unwrap()
            .contains("sip:1001@127.0.0.1:7001")
    );
    // The phone registers again (a new Call-ID) before a late retransmission of
    // the first REGISTER arrives: that is still answered alike, and changes
    // nothing.
    let out = h.authorize(
        "127.0.0.1:7001",
        |auth| register_request("1001", "127.0.0.1:7001", "reg-1001-again", 1800, auth),
        "WWW-Authenticate",
        "REGISTER",
        &uri,
        "1001",
    );
    assert_eq!(out[0].1.status(), Some(200));
    h.feed("127.0.0.1:7001", &retransmission);
    let out = h.take();
    assert_eq!(statuses(&out), vec![200], "a late retransmission");
    let contact = out[0].1.header("Contact").unwrap().to_string();
    assert!(
        contact.contains("expires=1800") || contact.contains("expires=1799"),
        "the newer binding stands: {contact}"
    );
    // The same credentials on a different request are a replay.
    let replay = retransmission.replace("CSeq: 2 REGISTER", "CSeq: 3 REGISTER");
    h.feed("127.0.0.1:7001", &replay);
    let out = h.take();
    assert_eq!(statuses(&out), vec![401], "a replay is challenged");
}

/// The tenant a request belongs to is the host of its Request-URI as the URI
/// grammar reads it (RFC 3261 §19.1), over the URI forms of RFC 4475.
mod tenant_from_uri {
    use proptest::prelude::*;

    use super::*;
    use crate::Shard;

    /// A request to `uri` whose To and From name `fallback` (a host name), so a
    /// wrong reading of the Request-URI shows as the wrong tenant.
    fn request(uri: &str, fallback: &str) -> Msg {
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKt\r\nFrom: <sip:caller@{fallback}>;tag=a\r\nTo: <sip:callee@{fallback}>\r\nCall-ID: t-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Msg::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    #[test]
    fn user_part_with_parameters_names_the_host_tenant() {
        // RFC 3261 §19.1.4: the user is `alice;day=tuesday`, the host atlanta.com.
        let msg = request("sip:alice;day=tuesday@atlanta.com", "fallback.example");
        assert_eq!(Shard::request_domain(&msg), "atlanta.com");
        let uri = crate::msg::SipUri::parse(msg.request_uri()).expect("a SIP URI");
        assert_eq!(uri.user, Some("alice;day=tuesday"));
    }

    #[test]
    fn an_invite_to_a_user_with_parameters_is_challenged_by_its_tenant() {
        // Before the URI was read by its grammar the host came out as `1001`,
        // an unknown tenant; now the call is challenged in acme's realm.
        let mut h = Harness::new(CoreConfig::default());
        h.feed(
            "127.0.0.1:7000",
            &format!(
                "INVITE sip:1001;day=tuesday@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKu1\r\nFrom: <sip:1000@192.0.2.1>;tag=a\r\nTo: <sip:1001@192.0.2.1>\r\nCall-ID: user-params-1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@127.0.0.1:7000>\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        let reply = h
            .take()
            .into_iter()
            .map(|(_, m)| m)
            .find(|m| m.status().is_some_and(|s| s >= 400))
            .expect("a final answer");
        assert_eq!(reply.status(), Some(407));
        let challenge =
            digest_auth::Challenge::parse(reply.header("Proxy-Authenticate").expect("a challenge"))
                .expect("challenge parses");
        assert_eq!(challenge.realm, DOMAIN);
    }

    /// A host name: labels of letters, digits and inner hyphens, any case.
    fn host_name() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 1..4)
            .prop_map(|labels| format!("{}.example", labels.join(".")))
    }

    /// A user part: plain, with dots, `%`-escaped, with parameters (§19.1.4),
    /// a telephone number, with a password.
    fn user_part() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "[a-zA-Z0-9]{1,10}".prop_map(Some),
            "[a-z]{1,5}\\.[a-z]{1,5}".prop_map(Some),
            "(%[0-9A-F]{2}|[a-z]){1,6}".prop_map(Some),
            ("[a-z]{1,6}", "[a-z]{1,6}", "[a-z0-9]{1,6}")
                .prop_map(|(u, k, v)| Some(format!("{u};{k}={v}"))),
            "\\+[0-9]{4,12}".prop_map(Some),
            ("[a-z]{1,6}", "[a-z0-9]{1,6}").prop_map(|(u, p)| Some(format!("{u}:{p}"))),
            Just(Some("sips%3Auser%40example.com".to_string())),
        ]
    }

    /// The host as written in the URI, and whether it is an IP address.
    fn host() -> impl Strategy<Value = (String, bool)> {
        prop_oneof![
            4 => host_name().prop_map(|h| (h, false)),
            1 => any::<[u8; 4]>().prop_map(|o| (std::net::Ipv4Addr::from(o).to_string(), true)),
            1 => any::<[u16; 8]>()
                .prop_map(|s| (format!("[{}]", std::net::Ipv6Addr::from(s)), true)),
        ]
    }

    proptest! {
        #[test]
        fn tenant_is_the_request_uri_host(
            secure in any::<bool>(),
            scheme_upper in any::<bool>(),
            user in user_part(),
            (host, is_ip) in host(),
            port in proptest::option::of(1u16..),
            params in proptest::collection::vec("[a-z]{1,6}(=[a-z0-9]{1,6})?", 0..3),
            fallback in host_name(),
        ) {
            let scheme = match (secure, scheme_upper) {
                (false, false) => "sip",
                (false, true) => "SIP",
                (true, false) => "sips",
                (true, true) => "SIPS",
            };
            let mut uri = format!("{scheme}:");
            if let Some(user) = &user {
                uri.push_str(user);
                uri.push('@');
            }
            uri.push_str(&host);
            if let Some(port) = port {
                uri.push_str(&format!(":{port}"));
            }
            for p in &params {
                uri.push(';');
                uri.push_str(p);
            }
            let msg = request(&uri, &fallback);
            // A name in the Request-URI is the tenant; an address is not, and
            // the To host is used instead.
            let expected = if is_ip { fallback } else { host.clone() };
            prop_assert_eq!(Shard::request_domain(&msg), expected.to_ascii_lowercase(), "{}", uri);
            let parsed = crate::msg::SipUri::parse(msg.request_uri());
            prop_assert!(parsed.is_some(), "{}", uri);
            let parsed = parsed.unwrap();
            let user_only = user.as_deref().map(|u| u.split(':').next().unwrap_or(u));
            prop_assert_eq!(parsed.user, user_only);
            prop_assert_eq!(parsed.port, port);
            prop_assert_eq!(parsed.secure, secure);
        }
    }
}

/// The decision and the shard together: a dial plan's sequential ring goes
/// through `decision::decide` and rings each target for its own timeout, the
/// last one (no timeout of its own) for the host's ring timeout.
#[test]
fn a_decided_sequential_plan_rings_each_step_for_its_timeout() {
    use crate::decision::fakes::{FakeCounters, FakePlan, FakePolicies};
    use crate::decision::{
        Admission, Approvals, Deciders, Destinations, Now, Plan, RingStrategy, RingTarget,
    };

    let mut h = Harness::new(CoreConfig {
        ring_timeout: Duration::from_secs(20),
        ..external()
    });
    h.register("1001", "127.0.0.1:7001");
    h.register("1000", "127.0.0.1:7002");
    h.invite();
    let req = h.routes.last().expect("routing request").clone();
    let plan = FakePlan::answering(Plan::Ring {
        strategy: RingStrategy::Sequential,
        targets: vec![
            RingTarget {
                extension: "1001".into(),
                timeout_secs: 3,
            },
            RingTarget {
                extension: "1000".into(),
                timeout_secs: 0,
            },
        ],
    });
    let admission = Admission::new(
        std::sync::Arc::new(FakeCounters::new(10, 10)),
        pbx_guard::PatternConfig::default(),
    );
    let outcome = crate::decision::decide(
        &req,
        Now {
            at: h.now,
            // A weekday morning, UTC: no off-hours alert.
            unix_ms: 1_796_205_600_000,
        },
        &Deciders {
            dial_plan: &plan,
            policies: &FakePolicies::default(),
            destinations: &Destinations::new(&pbx_guard::ClassifierConfig::default()).unwrap(),
            approvals: &Approvals::default(),
            admission: &admission,
        },
    );
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);
    h.decide(outcome.into_route());
    let out = h.take();
    let first = sent_to(&out, 7001, "INVITE")
        .expect("step 1 rings 1001")
        .clone();
    h.feed("127.0.0.1:7001", &answer(&first, 180, "Ringing"));
    h.take();
    let start = h.now;
    h.run_until(start + Duration::from_millis(2900));
    assert!(
        sent_to(&h.take(), 7001, "CANCEL").is_none(),
        "not before 3 s"
    );
    h.run_until(start + Duration::from_millis(3100));
    let out = h.take();
    assert!(
        sent_to(&out, 7001, "CANCEL").is_some(),
        "step 1 ends at 3 s"
    );
    let second = sent_to(&out, 7002, "INVITE")
        .expect("step 2 rings 1000")
        .clone();
    h.feed("127.0.0.1:7002", &answer(&second, 180, "Ringing"));
    h.take();
    let start = h.now;
    h.run_until(start + Duration::from_secs(19));
    assert!(!statuses(&h.take()).contains(&480), "step 2 rings 20 s");
    h.run_until(start + Duration::from_secs(21));
    let out = h.take();
    assert!(sent_to(&out, 7002, "CANCEL").is_some());
    // The plan (one decision per call) ends it: the caller hears 480.
    let again = h.routes.last().expect("asked again").clone();
    assert_eq!(
        again.event,
        crate::CallEvent::DialEnded(crate::DialResult::NoAnswer)
    );
    let finish = crate::decision::decide(
        &again,
        Now {
            at: h.now,
            unix_ms: 1_796_205_600_000,
        },
        &Deciders {
            dial_plan: &plan,
            policies: &FakePolicies::default(),
            destinations: &Destinations::new(&pbx_guard::ClassifierConfig::default()).unwrap(),
            approvals: &Approvals::default(),
            admission: &admission,
        },
    );
    assert_eq!(finish.route, Ok(crate::RouteDecision::Finish));
    h.decide(finish.into_route());
    assert!(
        statuses(&h.take()).contains(&480),
        "then the caller hears 480"
    );
}

/// A call is routed again after each unanswered dial attempt
/// ([`crate::CallEvent::DialEnded`]), within [`crate::MAX_CALL_STEPS`].
mod call_steps {
    use super::*;
    use crate::{CallEvent, DialResult, RingStep, RouteDecision};

    fn ring(ext: &str, secs: u64) -> RouteDecision {
        RouteDecision::Ring(vec![RingStep {
            extensions: vec![ext.into()],
            timeout: Duration::from_secs(secs),
        }])
    }

    /// A shard routing externally with 1001 on :7001 and 1002 on :7003.
    fn harness() -> Harness {
        let mut h = Harness::new(CoreConfig {
            ring_timeout: Duration::from_secs(30),
            ..external()
        });
        h.register("1001", "127.0.0.1:7001");
        h.register("1002", "127.0.0.1:7003");
        h.register("1000", "127.0.0.1:7002");
        h.invite();
        h
    }

    /// The next routing request, which must be about a dial attempt.
    fn dial_ended(h: &Harness) -> (DialResult, u32) {
        let req = h.routes.last().expect("asked to route again");
        match &req.event {
            CallEvent::DialEnded(result) => (*result, req.step),
            other => panic!("not a dial attempt's end: {other:?}"),
        }
    }

    #[test]
    fn busy_goes_on_to_a_second_target() {
        let mut h = harness();
        assert_eq!(h.routes.last().unwrap().event, CallEvent::Started);
        assert_eq!(h.routes.last().unwrap().step, 1);
        h.decide(ring("1001", 20));
        let out = h.take();
        let first = sent_to(&out, 7001, "INVITE").expect("1001 rings").clone();
        h.feed("127.0.0.1:7001", &answer(&first, 486, "Busy Here"));
        let out = h.take();
        assert!(
            !statuses(&out).contains(&486),
            "the caller does not hear busy while the plan decides"
        );
        assert_eq!(dial_ended(&h), (DialResult::Busy, 2));
        h.decide(ring("1002", 20));
        let out = h.take();
        let second = sent_to(&out, 7003, "INVITE").expect("1002 rings").clone();
        h.feed("127.0.0.1:7003", &answer(&second, 200, "OK"));
        let out = h.take();
        assert!(statuses(&out).contains(&200), "the caller is connected");
    }

    #[test]
    fn no_answer_forwards_then_goes_out_a_trunk() {
        let mut h = harness();
        h.shared.replace_trunks(carrier(None));
        h.decide(ring("1001", 5));
        let first = sent_to(&h.take(), 7001, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7001", &answer(&first, 180, "Ringing"));
        h.take();
        let start = h.now;
        h.run_until(start + Duration::from_millis(4900));
        assert!(h.routes.is_empty(), "still ringing at 4.9 s");
        h.run_until(start + Duration::from_millis(5100));
        assert!(
            sent_to(&h.take(), 7001, "CANCEL").is_some(),
            "1001 rang out"
        );
        assert_eq!(dial_ended(&h), (DialResult::NoAnswer, 2));

        h.decide(ring("1002", 5));
        let second = sent_to(&h.take(), 7003, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7003", &answer(&second, 180, "Ringing"));
        h.take();
        let start = h.now;
        h.run_until(start + Duration::from_millis(5100));
        h.take();
        assert_eq!(dial_ended(&h), (DialResult::NoAnswer, 3));

        h.decide(RouteDecision::trunk("carrier", "15551234567"));
        let out = h.take();
        let out_trunk = sent_to(&out, 9000, "INVITE").expect("out the trunk");
        assert_eq!(
            out_trunk.request_uri(),
            "sip:15551234567@carrier.example:9000"
        );
    }

    #[test]
    fn finish_gives_the_caller_the_last_attempts_failure() {
        let mut h = harness();
        h.decide(ring("1001", 20));
        let first = sent_to(&h.take(), 7001, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7001", &answer(&first, 486, "Busy Here"));
        h.take();
        h.decide(RouteDecision::Finish);
        assert!(statuses(&h.take()).contains(&486), "the caller hears busy");
        assert!(h.routes.is_empty());
    }

    #[test]
    fn nothing_to_ring_is_unavailable_and_a_refusal_is_failed() {
        let mut h = harness();
        h.decide(ring("1099", 20));
        assert_eq!(dial_ended(&h), (DialResult::Unavailable, 2));
        h.decide(ring("1001", 20));
        let first = sent_to(&h.take(), 7001, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7001", &answer(&first, 603, "Decline"));
        h.take();
        assert_eq!(dial_ended(&h), (DialResult::Failed { status: 603 }, 3));
    }

    #[test]
    fn a_forward_loop_between_two_extensions_is_stopped() {
        let mut h = harness();
        h.decide(ring("1001", 20));
        let first = sent_to(&h.take(), 7001, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7001", &answer(&first, 486, "Busy Here"));
        h.take();
        // 1001 forwards on busy to 1002 ...
        h.decide(ring("1002", 20));
        let second = sent_to(&h.take(), 7003, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7003", &answer(&second, 486, "Busy Here"));
        h.take();
        // ... and 1002 back to 1001.
        h.decide(ring("1001", 20));
        let out = h.take();
        assert!(
            sent_to(&out, 7001, "INVITE").is_none(),
            "1001 is not rung again"
        );
        assert!(
            statuses(&out).contains(&482),
            "the caller hears Loop Detected"
        );
        assert!(h.routes.is_empty());
    }

    #[test]
    fn a_call_ends_when_its_steps_are_used_up() {
        let mut h = harness();
        let mut steps = 0;
        while let Some(req) = h.routes.last() {
            steps = req.step;
            // A plan that keeps ringing someone nobody can reach: each step is
            // new to the loop check, but every one costs a step.
            h.decide(ring(&format!("2{steps:03}"), 20));
        }
        assert_eq!(steps, crate::MAX_CALL_STEPS);
        assert!(statuses(&h.take()).contains(&480));
    }

    #[test]
    fn a_caller_who_hangs_up_between_steps_ends_the_call() {
        let mut h = harness();
        h.decide(ring("1001", 20));
        let first = sent_to(&h.take(), 7001, "INVITE").unwrap().clone();
        h.feed("127.0.0.1:7001", &answer(&first, 486, "Busy Here"));
        h.take();
        // The caller's INVITE (the authenticated one, branch ...i1) is cancelled.
        h.feed(
            "127.0.0.1:7000",
            &format!(
                "CANCEL sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi1\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        let out = h.take();
        assert!(statuses(&out).contains(&487));
        h.decide(ring("1002", 20));
        assert!(sent_to(&h.take(), 7003, "INVITE").is_none(), "too late");
    }
}

/// Message-waiting subscriptions (RFC 3842 over RFC 6665).
mod subscribe {
    use super::*;
    use crate::SubscriptionConfig;

    /// A SUBSCRIBE from `user`'s phone at `addr`.
    struct Sub<'a> {
        user: &'a str,
        addr: &'a str,
        call_id: &'a str,
        /// The Request-URI: the mailbox subscribed to.
        target: String,
        event: &'a str,
        expires: Option<u32>,
        /// The host's tag, for a refresh in the dialog.
        to_tag: Option<String>,
        cseq: u32,
    }

    impl<'a> Sub<'a> {
        fn own(user: &'a str, addr: &'a str, call_id: &'a str) -> Sub<'a> {
            Sub {
                user,
                addr,
                call_id,
                target: format!("sip:{user}@{DOMAIN}"),
                event: "message-summary",
                expires: Some(600),
                to_tag: None,
                cseq: 1,
            }
        }

        /// CSeq `cseq` without credentials, the next with `auth`.
        fn request(&self, auth: Option<&str>) -> String {
            let cseq = self.cseq + u32::from(auth.is_some());
            let to_tag = self
                .to_tag
                .as_ref()
                .map(|t| format!(";tag={t}"))
                .unwrap_or_default();
            let expires = self
                .expires
                .map(|e| format!("Expires: {e}\r\n"))
                .unwrap_or_default();
            let auth = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            format!(
                "SUBSCRIBE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{call_id}-{cseq}\r\n\
                 From: <sip:{user}@{DOMAIN}>;tag=s{call_id}\r\nTo: <{target}>{to_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{user}@{addr}>\r\n\
                 Event: {event}\r\nAccept: application/simple-message-summary\r\n{expires}{auth}\
                 Content-Length: 0\r\n\r\n",
                target = self.target,
                addr = self.addr,
                call_id = self.call_id,
                user = self.user,
                event = self.event,
            )
        }
    }

    impl Harness {
        /// Sends `sub` with credentials (after the challenge); what came back.
        fn subscribe(&mut self, sub: &Sub<'_>) -> Vec<(SocketAddr, Msg)> {
            let target = sub.target.clone();
            self.authorize(
                sub.addr,
                |auth| sub.request(auth),
                "WWW-Authenticate",
                "SUBSCRIBE",
                &target,
                sub.user,
            )
        }
    }

    fn response(out: &[(SocketAddr, Msg)]) -> &Msg {
        &out.iter()
            .find(|(_, m)| m.status().is_some())
            .expect("a response")
            .1
    }

    fn notifies(out: &[(SocketAddr, Msg)]) -> Vec<&Msg> {
        out.iter()
            .filter(|(_, m)| m.method() == Some(crate::msg::Method::Notify))
            .map(|(_, m)| m)
            .collect()
    }

    fn body(m: &Msg) -> String {
        String::from_utf8_lossy(&m.body).into_owned()
    }

    fn to_tag(m: &Msg) -> String {
        m.to().unwrap().tag().expect("a To tag").to_string()
    }

    /// Tenant 1 (acme) and tenant 2 (globex, with its own 1000).
    fn two_tenants() -> Directory {
        let mut d = directory();
        d.tenants.push(Tenant {
            id: TenantId(2),
            name: "globex".into(),
            status: TenantStatus::Active,
            realm: "globex.example".into(),
            domains: vec!["globex.example".into()],
            media_encryption: model::MediaEncryption::default(),
            digest: None,
        });
        d.extensions.push(Extension {
            tenant: TenantId(2),
            number: "1000".into(),
            ha1_md5: ha1(Algorithm::Md5, "1000", "globex.example", "pw1000"),
            ha1_sha256: ha1(Algorithm::Sha256, "1000", "globex.example", "pw1000"),
            enabled: true,
            digest: None,
        });
        d
    }

    #[test]
    fn a_phone_subscribes_to_its_own_mailbox_and_hears_its_state() {
        let mut h = Harness::new(CoreConfig::default());
        h.shared.set_mailbox_counts(TenantId(1), "1000", (2, 1));
        let sub = Sub::own("1000", "127.0.0.1:7000", "sub-1");
        h.feed(sub.addr, &sub.request(None));
        let challenge = h.take();
        assert_eq!(response(&challenge).status(), Some(401));
        assert!(response(&challenge).header("WWW-Authenticate").is_some());
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 0);

        let out = h.subscribe(&sub);
        let ok = response(&out);
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.header("Expires"), Some("600"));
        assert!(ok.header("Contact").is_some());
        let tag = to_tag(ok);
        let notify = notifies(&out);
        assert_eq!(notify.len(), 1);
        let n = notify[0];
        assert_eq!(n.call_id(), "sub-1");
        assert_eq!(n.from().unwrap().tag(), Some(tag.as_str()));
        assert_eq!(n.to().unwrap().tag(), Some("ssub-1"));
        assert_eq!(n.header("Event"), Some("message-summary"));
        assert_eq!(n.header("Subscription-State"), Some("active;expires=600"));
        assert_eq!(
            n.header("Content-Type"),
            Some("application/simple-message-summary")
        );
        let text = body(n);
        assert!(text.starts_with("Messages-Waiting: yes\r\n"), "{text}");
        assert!(
            text.contains("Message-Account: sip:1000@acme.example"),
            "{text}"
        );
        assert!(text.contains("Voice-Message: 2/1 (0/0)"), "{text}");
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 1);
    }

    #[test]
    fn another_extensions_or_another_tenants_mailbox_is_forbidden_alike() {
        let mut h = Harness::with_directory(CoreConfig::default(), two_tenants());
        let targets = [
            format!("sip:1001@{DOMAIN}"),
            "sip:1000@globex.example".to_string(),
            "sip:1009@globex.example".to_string(),
            "sip:1000@nowhere.example".to_string(),
        ];
        for target in targets {
            let sub = Sub {
                target: target.clone(),
                ..Sub::own("1000", "127.0.0.1:7000", "sub-x")
            };
            let out = h.subscribe(&sub);
            let r = response(&out);
            assert_eq!(
                (r.status(), r.reason()),
                (Some(403), "Forbidden"),
                "{target}"
            );
            assert!(notifies(&out).is_empty(), "{target}");
        }
        assert_eq!(h.shared.subscriptions(TenantId(1), "1001"), 0);
        assert_eq!(h.shared.subscriptions(TenantId(2), "1000"), 0);
    }

    #[test]
    fn a_retransmitted_refused_subscribe_gets_the_same_answer() {
        let mut h = Harness::new(CoreConfig::default());
        let sub = Sub {
            target: format!("sip:1001@{DOMAIN}"),
            ..Sub::own("1000", "127.0.0.1:7000", "sub-t")
        };
        let sent = std::cell::RefCell::new(String::new());
        let out = h.authorize(
            sub.addr,
            |auth| {
                let text = sub.request(auth);
                *sent.borrow_mut() = text.clone();
                text
            },
            "WWW-Authenticate",
            "SUBSCRIBE",
            &sub.target,
            "1000",
        );
        assert_eq!(response(&out).status(), Some(403));
        let again = sent.borrow().clone();
        h.feed(sub.addr, &again);
        let out = h.take();
        assert_eq!(
            response(&out).status(),
            Some(403),
            "absorbed by the transaction, not challenged as a replay"
        );
    }

    #[test]
    fn an_unknown_event_package_is_489_with_allow_events() {
        let mut h = Harness::new(CoreConfig::default());
        let sub = Sub {
            event: "presence",
            ..Sub::own("1000", "127.0.0.1:7000", "sub-p")
        };
        h.feed(sub.addr, &sub.request(None));
        let out = h.take();
        let r = response(&out);
        assert_eq!(r.status(), Some(489));
        assert_eq!(r.header("Allow-Events"), Some("message-summary"));
    }

    #[test]
    fn expiry_below_the_minimum_is_423_and_above_the_maximum_is_cut() {
        let mut h = Harness::new(CoreConfig::default());
        let short = Sub {
            expires: Some(10),
            ..Sub::own("1000", "127.0.0.1:7000", "sub-s")
        };
        let out = h.subscribe(&short);
        assert_eq!(response(&out).status(), Some(423));
        assert_eq!(response(&out).header("Min-Expires"), Some("60"));
        let long = Sub {
            expires: Some(86_400),
            ..Sub::own("1000", "127.0.0.1:7000", "sub-l")
        };
        let out = h.subscribe(&long);
        assert_eq!(response(&out).header("Expires"), Some("3600"));
        assert_eq!(
            notifies(&out)[0].header("Subscription-State"),
            Some("active;expires=3600")
        );
    }

    #[test]
    fn a_refresh_extends_the_subscription_and_expires_zero_ends_it() {
        let mut h = Harness::new(CoreConfig::default());
        let mut sub = Sub {
            expires: Some(120),
            ..Sub::own("1000", "127.0.0.1:7000", "sub-r")
        };
        let out = h.subscribe(&sub);
        sub.to_tag = Some(to_tag(response(&out)));
        sub.cseq = 3;
        sub.expires = Some(600);
        h.feed(sub.addr, &sub.request(None));
        let out = h.take();
        assert_eq!(
            response(&out).status(),
            Some(200),
            "no new challenge in the dialog"
        );
        assert_eq!(response(&out).header("Expires"), Some("600"));
        let refreshed = notifies(&out);
        assert_eq!(
            refreshed[0].header("Subscription-State"),
            Some("active;expires=600")
        );

        // Past the first expiry, the subscription is still there.
        let later = h.now + Duration::from_secs(300);
        h.run_until(later);
        let states: Vec<String> = notifies(&h.take())
            .iter()
            .filter_map(|n| n.header("Subscription-State").map(str::to_string))
            .collect();
        assert!(
            states.iter().all(|s| !s.starts_with("terminated")),
            "{states:?}"
        );
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 1);

        sub.cseq = 4;
        sub.expires = Some(0);
        h.feed(sub.addr, &sub.request(None));
        let out = h.take();
        assert_eq!(response(&out).status(), Some(200));
        assert_eq!(
            notifies(&out)[0].header("Subscription-State"),
            Some("terminated;reason=timeout")
        );
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 0);

        // The dialog is gone.
        sub.cseq = 5;
        sub.expires = Some(600);
        h.feed(sub.addr, &sub.request(None));
        assert_eq!(response(&h.take()).status(), Some(481));
    }

    #[test]
    fn an_unrefreshed_subscription_expires_with_a_final_notify() {
        let mut h = Harness::new(CoreConfig::default());
        let sub = Sub {
            expires: Some(60),
            ..Sub::own("1000", "127.0.0.1:7000", "sub-e")
        };
        h.subscribe(&sub);
        let before = h.now + Duration::from_secs(59);
        h.run_until(before);
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 1);
        h.take();
        let after = h.now + Duration::from_secs(2);
        h.run_until(after);
        let out = h.take();
        // One NOTIFY (unanswered here, so retransmitted with the same CSeq).
        let mut ended: Vec<&Msg> = notifies(&out)
            .into_iter()
            .filter(|n| n.header("Subscription-State") == Some("terminated;reason=timeout"))
            .collect();
        ended.dedup_by_key(|n| n.header("CSeq").map(str::to_string));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].call_id(), "sub-e");
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 0);
    }

    #[test]
    fn an_extension_keeps_its_newest_subscriptions_and_a_full_tenant_gets_480() {
        let config = CoreConfig {
            subscriptions: SubscriptionConfig {
                max_per_extension: 2,
                max_per_tenant: 3,
                ..SubscriptionConfig::default()
            },
            ..CoreConfig::default()
        };
        let mut h = Harness::new(config);
        for call_id in ["a", "b", "c"] {
            let out = h.subscribe(&Sub::own("1000", "127.0.0.1:7000", call_id));
            assert_eq!(response(&out).status(), Some(200));
        }
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 2);
        let out = h.subscribe(&Sub::own("1001", "127.0.0.1:7001", "d"));
        assert_eq!(response(&out).status(), Some(200));
        let out = h.subscribe(&Sub::own("1002", "127.0.0.1:7002", "e"));
        let r = response(&out);
        assert_eq!(
            (r.status(), r.reason()),
            (Some(480), "Too Many Subscriptions")
        );
        assert!(notifies(&out).is_empty());
        assert_eq!(h.shared.subscriptions(TenantId(1), "1002"), 0);
    }

    #[test]
    fn beyond_the_total_another_tenant_gets_503_and_a_tenant_past_its_share_480() {
        let config = CoreConfig {
            subscriptions: SubscriptionConfig {
                max_per_tenant: 2,
                max_total: 3,
                ..SubscriptionConfig::default()
            },
            ..CoreConfig::default()
        };
        let mut h = Harness::with_directory(config, two_tenants());
        for (user, call_id) in [("1000", "a"), ("1001", "b")] {
            let out = h.subscribe(&Sub::own(user, "127.0.0.1:7000", call_id));
            assert_eq!(response(&out).status(), Some(200));
        }
        let out = h.subscribe(&Sub::own("1002", "127.0.0.1:7000", "c"));
        assert_eq!(
            response(&out).status(),
            Some(480),
            "tenant 1 used its share"
        );
        // Tenant 2 still has room for one, then the host is full.
        h.shared.set_mailbox_counts(TenantId(2), "1000", (1, 0));
        let globex = |call_id: &'static str| {
            move |auth: Option<&str>| {
                Sub {
                    target: "sip:1000@globex.example".into(),
                    ..Sub::own("1000", "127.0.0.1:7100", call_id)
                }
                .request(auth)
                .replace(DOMAIN, "globex.example")
            }
        };
        let uri = "sip:1000@globex.example";
        let out = h.authorize_in_realm(
            "127.0.0.1:7100",
            globex("g1"),
            "WWW-Authenticate",
            "SUBSCRIBE",
            uri,
            "1000",
            "globex.example",
        );
        assert_eq!(response(&out).status(), Some(200));
        assert!(body(notifies(&out)[0]).contains("Message-Account: sip:1000@globex.example"));
        assert!(body(notifies(&out)[0]).starts_with("Messages-Waiting: yes"));
        let out = h.authorize_in_realm(
            "127.0.0.1:7100",
            globex("g2"),
            "WWW-Authenticate",
            "SUBSCRIBE",
            uri,
            "1000",
            "globex.example",
        );
        let r = response(&out);
        assert_eq!(
            (r.status(), r.reason()),
            (Some(503), "Too Many Subscriptions")
        );
        assert!(r.header("Retry-After").is_some());
        assert_eq!(h.shared.subscriptions(TenantId(2), "1000"), 1);
    }

    #[test]
    fn a_subscriber_that_answers_481_loses_its_subscription() {
        let mut h = Harness::new(CoreConfig::default());
        let out = h.subscribe(&Sub::own("1000", "127.0.0.1:7000", "sub-g"));
        let notify = notifies(&out)[0].clone();
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 1);
        let gone = format!(
            "SIP/2.0 481 Call/Transaction Does Not Exist\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            notify.header("Via").unwrap(),
            notify.header("From").unwrap(),
            notify.header("To").unwrap(),
            notify.call_id(),
            notify.header("CSeq").unwrap(),
        );
        h.feed("127.0.0.1:7000", &gone);
        assert_eq!(h.shared.subscriptions(TenantId(1), "1000"), 0);
    }

    #[test]
    fn a_mailbox_change_reaches_each_phone_once() {
        let mut h = Harness::new(CoreConfig::default());
        h.register("1000", "127.0.0.1:7000");
        h.register("1000", "127.0.0.1:7001");
        let out = h.subscribe(&Sub::own("1000", "127.0.0.1:7000", "sub-m"));
        assert_eq!(
            body(notifies(&out)[0]).lines().next(),
            Some("Messages-Waiting: no")
        );

        h.shard.notify_mailbox(h.now, TenantId(1), "1000", (1, 0));
        h.drain();
        let out = h.take();
        let to_7000: Vec<&Msg> = out
            .iter()
            .filter(|(a, m)| a.port() == 7000 && m.method() == Some(crate::msg::Method::Notify))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(to_7000.len(), 1, "the subscriber hears once, in its dialog");
        assert_eq!(to_7000[0].call_id(), "sub-m");
        assert!(
            to_7000[0]
                .header("Subscription-State")
                .unwrap()
                .starts_with("active;expires=")
        );
        assert!(body(to_7000[0]).starts_with("Messages-Waiting: yes"));
        let other = sent_to(&out, 7001, "NOTIFY").expect("the phone without a subscription");
        assert_eq!(other.header("Subscription-State"), Some("active"));
        assert!(body(other).starts_with("Messages-Waiting: yes"));
        assert_eq!(notifies(&out).len(), 2);

        // A new subscription hears the latest counts.
        let out = h.subscribe(&Sub::own("1000", "127.0.0.1:7001", "sub-n"));
        assert!(body(notifies(&out)[0]).contains("Voice-Message: 1/0"));
    }
}

/// RFC 3327 behind a front proxy: a REGISTER relayed with a Path is answered
/// with that Path, and a call to the phone goes to the proxy with the Path as
/// its route set; a binding another node made (refreshed from the store)
/// is called the same way, from whichever socket of this node.
#[test]
fn path_of_a_front_routes_calls_and_other_nodes_bindings_are_used() {
    let front = "127.0.0.1:5999";
    let path = "<sip:127.0.0.1:5999;lr;received=sip:192.0.2.50:5080>";
    let mut h = Harness::new(CoreConfig::default());
    let uri = format!("sip:{DOMAIN}");
    let out = h.authorize(
        front,
        |auth| {
            format!(
                "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {front};branch=z9hG4bKfront{0}\r\nVia: SIP/2.0/UDP 192.0.2.50:5080;received=192.0.2.50;rport=5080;branch=z9hG4bKphone{0}\r\nPath: {path}\r\nFrom: <sip:1001@{DOMAIN}>;tag=r\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: path-reg\r\nCSeq: {1} REGISTER\r\nContact: <sip:1001@192.0.2.50:5080>\r\nExpires: 600\r\n{2}Content-Length: 0\r\n\r\n",
                auth.is_some() as u8,
                1 + auth.is_some() as u8,
                auth.map(|a| format!("Authorization: {a}\r\n"))
                    .unwrap_or_default()
            )
        },
        "WWW-Authenticate",
        "REGISTER",
        &uri,
        "1001",
    );
    let ok = &out[0].1;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.headers_named("Path").collect::<Vec<_>>(), vec![path]);
    assert_eq!(out[0].0, front.parse::<SocketAddr>().unwrap());

    let out = h.invite();
    let (to, invite) = out
        .iter()
        .find(|(_, m)| m.method() == Some(crate::msg::Method::Invite))
        .expect("INVITE to the phone");
    assert_eq!(*to, front.parse::<SocketAddr>().unwrap());
    assert_eq!(invite.request_uri(), "sip:1001@192.0.2.50:5080");
    assert_eq!(
        invite.headers_named("Route").collect::<Vec<_>>(),
        vec![path]
    );

    // The phone re-registers through another node, whose binding lasts longer.
    let other = model::Registration {
        tenant: TenantId(1),
        extension: "1001".into(),
        contact: "sip:1001@192.0.2.50:5080".into(),
        source: "127.0.0.1:5998".parse().unwrap(),
        transport: TransportKind::Udp,
        local: "127.0.0.1:5070".parse().unwrap(),
        call_id: "path-reg".into(),
        cseq: 9,
        expires_at_ms: h.shared.unix_ms(h.now) + 3_600_000,
        user_agent: None,
        path: vec!["<sip:127.0.0.1:5998;lr>".into()],
        node: "node-b".into(),
    };
    h.shared
        .refresh_bindings(TenantId(1), "1001", vec![other.clone()], h.now);
    let binding = h.shared.bindings.lookup(TenantId(1), "1001", 0);
    assert_eq!(binding.len(), 1);
    assert_eq!(&*binding[0].node, "node-b");
    assert_eq!(binding[0].peer.addr, other.source);
    // When node B's binding goes, so does it here.
    h.shared
        .refresh_bindings(TenantId(1), "1001", Vec::new(), h.now);
    assert_eq!(h.shared.registrations(TenantId(1), "1001", h.now), 0);
}

/// RFC 3261 §17.2.1 and §17.1.1.2: once a call is refused, a retransmitted
/// INVITE gets the same final answer, the caller's ACK is absorbed and stops
/// the retransmissions, and the callee's retransmitted 486 gets the same ACK
/// again, all without the call hearing of it.
#[test]
fn completed_invite_transactions_absorb_retransmissions() {
    let mut h = Harness::new(CoreConfig::default());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = sent_to(&out, 7001, "INVITE").expect("rings").clone();
    let busy = answer(&invite, 486, "Busy Here");
    h.feed("127.0.0.1:7001", &busy);
    let out = h.take();
    let ack = sent_to(&out, 7001, "ACK")
        .expect("the 486 acknowledged")
        .clone();
    let refusal = out
        .iter()
        .find(|(a, m)| a.port() == 7000 && m.status() == Some(486))
        .expect("the caller hears busy")
        .1
        .clone();

    h.feed("127.0.0.1:7001", &busy);
    let out = h.take();
    assert_eq!(out.len(), 1, "only the ACK again: {out:?}");
    let again = sent_to(&out, 7001, "ACK").expect("the same ACK again");
    assert_eq!(again.header("Via"), ack.header("Via"));
    assert_eq!(again.header("CSeq"), ack.header("CSeq"));

    let retransmitted = format!(
        "INVITE sip:1001@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKi1\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: call-1\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed("127.0.0.1:7000", &retransmitted);
    let out = h.take();
    assert_eq!(out.len(), 1, "only the final again: {out:?}");
    assert_eq!(out[0].1.status(), Some(486));
    assert_eq!(out[0].1.header("To"), refusal.header("To"));

    let caller_ack = from_caller("ACK", 2, "z9hG4bKi1", &refusal);
    h.feed("127.0.0.1:7000", &caller_ack);
    h.feed("127.0.0.1:7000", &caller_ack);
    assert!(h.take().is_empty(), "ACKs absorbed");
    let start = h.now;
    h.run_until(start + Duration::from_secs(4));
    assert!(
        h.take().iter().all(|(_, m)| m.status() != Some(486)),
        "the ACK stopped timer G"
    );
    assert_eq!(h.cdrs.len(), 1, "one record, written once");
    h.run_until(start + Duration::from_secs(40));
    assert_eq!(h.shard.transactions(), (0, 0), "timers I and D ended both");
}

/// RFC 3261 §17.2.2 and §17.1.2.2: a retransmitted BYE gets the 200 it got
/// the first time while timer J runs, and the callee's retransmitted 200 to
/// the host's BYE is absorbed while timer K runs.
#[test]
fn completed_non_invite_transactions_absorb_retransmissions() {
    let mut h = Harness::new(CoreConfig::default());
    h.register("1001", "127.0.0.1:7001");
    let out = h.invite();
    let invite = sent_to(&out, 7001, "INVITE").expect("rings").clone();
    let ok = h.answer_call(&invite);
    h.feed("127.0.0.1:7000", &from_caller("ACK", 2, "z9hG4bKack", &ok));
    h.take();

    let bye = from_caller("BYE", 3, "z9hG4bKbye", &ok);
    h.feed("127.0.0.1:7000", &bye);
    let out = h.take();
    let first = out
        .iter()
        .find(|(a, m)| a.port() == 7000 && m.status() == Some(200))
        .expect("the BYE answered")
        .1
        .clone();
    let relayed = sent_to(&out, 7001, "BYE")
        .expect("BYE to the callee")
        .clone();
    let bye_ok = answer(&relayed, 200, "OK");
    h.feed("127.0.0.1:7001", &bye_ok);
    assert!(h.take().is_empty());

    h.run_until(h.now + Duration::from_secs(2));
    h.feed("127.0.0.1:7000", &bye);
    let out = h.take();
    assert_eq!(out.len(), 1, "only the 200 again: {out:?}");
    assert_eq!(out[0].0.port(), 7000);
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(out[0].1.header("To"), first.header("To"));
    assert_eq!(out[0].1.header("CSeq"), first.header("CSeq"));

    h.feed("127.0.0.1:7001", &bye_ok);
    assert!(
        h.take().is_empty(),
        "the callee's retransmitted 200 absorbed"
    );
    assert_eq!(h.cdrs.len(), 1);
    h.run_until(h.now + Duration::from_secs(40));
    assert_eq!(h.shard.transactions(), (0, 0), "timers J and K ended both");
    assert_eq!(h.shard.active_calls(), 0);
}
