//! Scenario tests of a shard driven with a virtual clock: no sockets, no sleeps.
//! Time jumps straight to the shard's next timer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use digest_auth::{Algorithm, ha1};
use store::{Directory, Extension, Tenant, TenantId, TenantStatus, TransportKind};

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
    };
    Directory {
        tenants: vec![Tenant {
            id: TenantId(1),
            name: "acme".into(),
            status: TenantStatus::Active,
            realm: DOMAIN.into(),
            domains: vec![DOMAIN.into()],
        }],
        extensions: vec![ext("1000"), ext("1001")],
    }
}

struct Harness {
    shard: Shard,
    now: Instant,
    sent: Vec<(SocketAddr, Msg)>,
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
        let now = Instant::now();
        let shared = Shared::new(config, directory(), Vec::new(), (now, 1_700_000_000_000), 1);
        Harness {
            shard: Shard::new(0, shared),
            now,
            sent: Vec::new(),
        }
    }

    fn feed(&mut self, from: &str, text: &str) {
        self.shard.handle(
            self.now,
            Inbound {
                peer: peer(from),
                local: SERVER.parse().unwrap(),
                bytes: Bytes::from(text.to_string()),
            },
        );
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.shard.poll_output() {
            if let Output::Transmit { dest, bytes, .. } = o {
                self.sent
                    .push((dest.addr, Msg::parse(&bytes).expect("host sends valid SIP")));
            }
        }
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
        let h1 = ha1(Algorithm::Md5, user, DOMAIN, &format!("pw{user}"));
        let md5 = |s: String| {
            use md5::Digest;
            hex::encode(md5::Md5::digest(s.as_bytes()))
        };
        let h2 = md5(format!("{method}:{uri}"));
        let resp = md5(format!("{h1}:{nonce}:00000001:c0ffee:auth:{h2}"));
        let auth = format!(
            "Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
        );
        self.feed(from, &request(Some(&auth)));
        self.take()
    }

    fn register(&mut self, user: &str, addr: &str) {
        let uri = format!("sip:{DOMAIN}");
        let out = self.authorize(
            addr,
            |auth| {
                format!(
                    "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKr{}\r\nFrom: <sip:{user}@{DOMAIN}>;tag=r\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@{addr}>\r\nExpires: 3600\r\n{}Content-Length: 0\r\n\r\n",
                    auth.is_some() as u8,
                    1 + auth.is_some() as u8,
                    auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default()
                )
            },
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
        .find(|(a, m)| m.method() == Some("INVITE") && a.port() == 7001)
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
            .any(|(a, m)| m.method() == Some("CANCEL") && a.port() == 7001)
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
        .find(|(_, m)| m.method() == Some("INVITE"))
        .unwrap()
        .1
        .clone();
    h.feed("127.0.0.1:7001", &answer(&invite, 200, "OK"));
    let out = h.take();
    let ok = out
        .iter()
        .find(|(_, m)| m.status() == Some(200))
        .expect("200 relayed")
        .1
        .clone();
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
    let ack = format!(
        "ACK sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKack\r\nFrom: <sip:1000@{DOMAIN}>;tag=a\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        ok.header("To").unwrap()
    );
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
        .filter(|(_, m)| m.method() == Some("BYE"))
        .map(|(a, _)| a.port())
        .collect();
    assert!(
        byes.contains(&7000) && byes.contains(&7001),
        "BYE to both legs: {byes:?}"
    );
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
        .find(|(_, m)| m.method() == Some("INVITE"))
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
        out.iter().all(|(_, m)| m.method() != Some("BYE")),
        "the call stays up"
    );
    assert_eq!(h.shard.active_calls(), 1);
}
