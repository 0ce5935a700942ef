//! The host registers to a tenant's carrier: a fake carrier on a UDP socket
//! challenges the REGISTER, checks the credentials, grants a short expiry, sees the
//! refresh arrive, and on shutdown sees the binding removed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Pbx;
use pbx_e2e::{SipMsg, WAIT};
use tokio::net::UdpSocket;

const REALM: &str = "carrier.example";
const PASSWORD: &str = "Trunk-secret-9!";

/// The fake carrier: receives REGISTERs and answers them.
struct Carrier {
    socket: UdpSocket,
}

impl Carrier {
    /// Waits (bounded) for a REGISTER matching `pred`, skipping others (such as
    /// retransmissions).
    async fn register(&self, what: &str, pred: impl Fn(&SipMsg) -> bool) -> (SipMsg, SocketAddr) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
                .expect("carrier socket");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let msg = SipMsg::parse(&text).expect("a SIP message");
            assert_eq!(msg.method(), Some("REGISTER"), "{}", msg.raw);
            if pred(&msg) {
                return (msg, from);
            }
        }
    }

    async fn answer(&self, req: &SipMsg, to: SocketAddr, status: &str, extra: &str) {
        let h = |n: &str| {
            req.header(n)
                .unwrap_or_else(|| panic!("{n} in {}", req.raw))
        };
        let text = format!(
            "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=carrier\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq"),
        );
        self.socket
            .send_to(text.as_bytes(), to)
            .await
            .expect("carrier sends");
    }

    /// Challenges `req` with `nonce`, then checks that the retried REGISTER's
    /// credentials verify against the trunk password; returns the retry.
    async fn authenticate(&self, req: &SipMsg, from: SocketAddr, nonce: &str) -> SipMsg {
        let challenge = format!(
            "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5\r\n"
        );
        self.answer(req, from, "401 Unauthorized", &challenge).await;
        let (retry, retry_from) = self
            .register("an authenticated REGISTER", |m| {
                m.header("Authorization").is_some()
            })
            .await;
        assert_eq!(retry_from, from, "the same socket retries");
        assert_eq!(retry.call_id(), req.call_id(), "same Call-ID");
        assert_eq!(tag(&retry, "From"), tag(req, "From"), "same From tag");
        assert_eq!(cseq(&retry), cseq(req) + 1, "CSeq counts up");
        assert_ne!(branch(&retry), branch(req), "a new branch");
        let creds = digest_auth::Credentials::parse(retry.header("Authorization").unwrap())
            .expect("credentials parse");
        assert_eq!(creds.username, "acct");
        assert_eq!(creds.nonce, nonce);
        let secret = digest_auth::ha1(digest_auth::Algorithm::Md5, "acct", REALM, PASSWORD);
        assert!(
            creds.verify("REGISTER", &secret),
            "the trunk password is right"
        );
        let wrong = digest_auth::ha1(digest_auth::Algorithm::Md5, "acct", REALM, "wrong");
        assert!(!creds.verify("REGISTER", &wrong));
        retry
    }
}

fn cseq(m: &SipMsg) -> u32 {
    m.header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("CSeq number")
}

fn tag(m: &SipMsg, header: &str) -> Option<String> {
    pbx_e2e::tag_of(m.header(header)?)
}

fn branch(m: &SipMsg) -> String {
    let via = m.header("Via").expect("Via");
    via.split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .expect("branch")
        .to_string()
}

#[tokio::test]
async fn host_registers_to_the_carrier_and_keeps_it_fresh() {
    let mut pbx = Pbx::start().await;
    let carrier = Carrier {
        socket: UdpSocket::bind("127.0.0.1:0").await.expect("carrier binds"),
    };
    let carrier_addr = carrier.socket.local_addr().unwrap();
    pbx.store
        .add_trunk(
            pbx.acme,
            "carrier",
            &format!("sip:{carrier_addr}"),
            Some("acct"),
            Some(PASSWORD),
        )
        .await
        .expect("trunk added");

    // The running server picks the trunk up and registers.
    let (first, from) = carrier.register("the first REGISTER", |_| true).await;
    assert!(
        first
            .start
            .starts_with(&format!("REGISTER sip:{carrier_addr}")),
        "{}",
        first.start
    );
    assert_eq!(first.header("Expires"), Some("3600"));
    assert!(first.header("Authorization").is_none());
    assert_eq!(
        first.contact_uri().as_deref(),
        Some(format!("sip:acct@{}", pbx.udp).as_str()),
        "inbound calls go to the main listener"
    );
    assert_ne!(from, pbx.udp, "registration has its own socket");
    let via = first.header("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {from};")),
        "responses come back to the registering socket: {via}"
    );
    assert!(first.header("To").unwrap().contains("sip:acct@127.0.0.1"));

    let second = carrier.authenticate(&first, from, "nonce-1").await;
    let ok_at = tokio::time::Instant::now();
    carrier
        .answer(
            &second,
            from,
            "200 OK",
            &format!("Contact: <sip:acct@{}>;expires=2\r\n", pbx.udp),
        )
        .await;

    // About 80 % of the granted 2 s later, the refresh arrives.
    let (refresh, refresh_from) = carrier
        .register("the refresh", |m| cseq(m) > cseq(&second))
        .await;
    assert!(
        ok_at.elapsed() >= Duration::from_millis(1200),
        "a refresh, not a retry: {:?}",
        ok_at.elapsed()
    );
    assert_eq!(refresh_from, from);
    assert_eq!(refresh.call_id(), first.call_id());
    let third = carrier.authenticate(&refresh, from, "nonce-2").await;
    carrier
        .answer(&third, from, "200 OK", "Expires: 3600\r\n")
        .await;

    // On shutdown the host removes its binding (Expires: 0), answering the
    // challenge, and the server stops once the carrier confirms.
    let handle = pbx.handle.take().expect("server running");
    let stopping = tokio::spawn(handle.shutdown());
    let (bye, _) = carrier
        .register("the unregister", |m| cseq(m) > cseq(&third))
        .await;
    assert_eq!(bye.header("Expires"), Some("0"));
    assert_eq!(bye.call_id(), first.call_id());
    let bye_auth = carrier.authenticate(&bye, from, "nonce-3").await;
    assert_eq!(bye_auth.header("Expires"), Some("0"));
    carrier.answer(&bye_auth, from, "200 OK", "").await;
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops in time")
        .expect("shutdown task")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_removed_trunk_is_unregistered() {
    let pbx = Pbx::start().await;
    let carrier = Carrier {
        socket: UdpSocket::bind("127.0.0.1:0").await.expect("carrier binds"),
    };
    let carrier_addr = carrier.socket.local_addr().unwrap();
    pbx.store
        .add_trunk(
            pbx.beta,
            "gw",
            &format!("sip:{carrier_addr}"),
            Some("acct"),
            Some(PASSWORD),
        )
        .await
        .expect("trunk added");
    let (first, from) = carrier.register("the first REGISTER", |_| true).await;
    carrier
        .answer(&first, from, "200 OK", "Expires: 600\r\n")
        .await;

    pbx.store
        .remove_trunk(pbx.beta, "gw")
        .await
        .expect("removed");
    let (bye, _) = carrier
        .register("the unregister", |m| cseq(m) > cseq(&first))
        .await;
    assert_eq!(bye.header("Expires"), Some("0"));
    assert_eq!(bye.call_id(), first.call_id());
}
