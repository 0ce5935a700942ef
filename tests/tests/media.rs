//! Media anchoring through the B2BUA over real sockets: SDP rewritten to the
//! relay, the tenant's SRTP policy, and calls whose media stops.

mod common;

use std::time::Duration;

use common::{ACME, BETA, Pbx, password};
use pbx::server::{MediaOptions, start};
use pbx_e2e::{Phone, SipMsg, Transport};
use store::{CdrFilter, MediaEncryption, Store};

/// A PBX like the shared fixture's, with the media relay's idle timeout set
/// (the idle timeout is what the test using it is about).
async fn pbx_with_idle(idle: Duration) -> Pbx {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).await.expect("open store");
    let acme = store.add_tenant("acme", ACME).await.expect("acme").id;
    let beta = store.add_tenant("beta", BETA).await.expect("beta").id;
    for (t, d) in [(acme, ACME), (beta, BETA)] {
        for ext in ["1000", "1001", "1002"] {
            store
                .add_extension(t, ext, &password(d, ext))
                .await
                .expect("extension");
        }
    }
    let mut opts = common::shipped_options(&["127.0.0.1:0"], &["127.0.0.1:0"], None);
    opts.media = Some(MediaOptions {
        idle_timeout: idle,
        ..MediaOptions::default()
    });
    let handle = start(opts, Store::open(dir.path()).await.expect("reopen"))
        .await
        .expect("server starts");
    Pbx {
        udp: handle.addrs().udp[0],
        tcp: handle.addrs().tcp[0],
        handle: Some(handle),
        dir,
        store,
        acme,
        beta,
    }
}

/// The `c=` address and `m=audio` port of an SDP body.
fn media_addr(body: &str) -> (String, u16) {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    (ip, port)
}

/// Rings `callee` and answers; returns the callee's INVITE and the caller's 200.
async fn answer(caller: &mut Phone, callee: &mut Phone) -> (SipMsg, SipMsg) {
    let mut call = caller.call(&callee.user.clone()).await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    callee
        .respond(&invite, 200, "OK", Some("callee-tag"), true)
        .await
        .unwrap();
    let ok = caller.expect_status("INVITE", 200).await.unwrap();
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    callee.expect_request("ACK").await.unwrap();
    (invite, ok)
}

#[tokio::test]
async fn each_phone_sees_sdp_pointing_at_the_relay() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let (invite, ok) = answer(&mut caller, &mut callee).await;
    // The phones offered 4000 and answered 4002; each sees a relay port instead,
    // a different one per leg, on the host's address.
    let (ip_b, port_b) = media_addr(&invite.body);
    let (ip_a, port_a) = media_addr(&ok.body);
    assert_eq!(ip_b, "127.0.0.1", "{}", invite.body);
    assert_eq!(ip_a, "127.0.0.1", "{}", ok.body);
    assert!(port_a >= 20000 && port_b >= 20000, "{port_a} {port_b}");
    assert_ne!(port_a, port_b);
    assert_eq!(port_a % 2, 0, "RTP on an even port");
    assert!(!invite.body.contains("a=crypto"), "no keys over UDP");
    pbx.stop().await;
}

#[tokio::test]
async fn a_plaintext_offer_is_refused_under_required() {
    let mut pbx = Pbx::start().await;
    pbx.stop().await;
    pbx.store
        .set_media_encryption(pbx.acme, MediaEncryption::Required)
        .await
        .unwrap();
    pbx.serve().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    caller.call("1001").await.unwrap();
    let r = caller.expect_final("INVITE").await.unwrap();
    assert_eq!(r.status(), Some(488), "{}", r.raw);
    // nothing rang
    assert!(
        callee
            .recv_within(Duration::from_millis(300))
            .await
            .is_err()
    );
    // The other tenant keeps the default policy.
    let mut b_callee = pbx.registered(Transport::Udp, BETA, "1001").await;
    let mut b_caller = pbx.registered(Transport::Udp, BETA, "1000").await;
    answer(&mut b_caller, &mut b_callee).await;
    pbx.stop().await;
    let cdrs = pbx
        .store
        .list_cdrs(pbx.acme, &CdrFilter::default())
        .await
        .unwrap();
    assert_eq!(cdrs[0].sip_code, 488);
}

#[tokio::test]
async fn a_call_whose_media_stops_is_hung_up() {
    let mut pbx = pbx_with_idle(Duration::from_secs(1)).await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    answer(&mut caller, &mut callee).await;
    // Neither phone sends media: the relay reports the call idle and the host
    // hangs up both legs.
    let bye_a = caller.expect_request("BYE").await.unwrap();
    caller
        .respond(&bye_a, 200, "OK", None, false)
        .await
        .unwrap();
    let bye_b = callee.expect_request("BYE").await.unwrap();
    callee
        .respond(&bye_b, 200, "OK", None, false)
        .await
        .unwrap();
    pbx.stop().await;
    let cdrs = pbx
        .store
        .list_cdrs(pbx.acme, &CdrFilter::default())
        .await
        .unwrap();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].hangup_by, "system");
    assert_eq!(cdrs[0].media.caller.packets_in, 0);
}
