//! Dial plans and policies on the call path of a running PBX: installed and
//! rolled back while it serves, failing safely, kept apart per tenant; trunks out
//! and numbers in.

mod common;

use std::time::Duration;

use common::{ACME, BETA, Pbx, next_invite};
use pbx_e2e::{Phone, SipMsg, Transport};

/// Calls `callee` and returns the first final response, answering nothing.
async fn final_status(caller: &mut Phone, callee: &str) -> SipMsg {
    let call = caller.call(callee).await.unwrap();
    caller.final_response(&call).await.unwrap()
}

/// Repeats a call until its final response satisfies `done` (the server picks
/// up provisioning changes on its next poll); fails after a bounded number.
async fn until_final(caller: &mut Phone, callee: &str, done: impl Fn(&SipMsg) -> bool) -> SipMsg {
    for _ in 0..100 {
        let r = final_status(caller, callee).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the change never took effect");
}

#[tokio::test]
async fn a_runaway_dial_plan_rejects_its_calls_and_rollback_restores_routing() {
    let pbx = Pbx::start().await;
    let mut acme_caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut beta_caller = pbx.registered(Transport::Udp, BETA, "1000").await;

    let first = pbx
        .store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::DEFAULT_DIALPLAN, 1)
        .await
        .unwrap();
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::SPIN, 2)
        .await
        .unwrap();
    let r = until_final(&mut acme_caller, "1001", |r| r.status() == Some(500)).await;
    assert!(r.start.contains("Dial Plan Timeout"), "{}", r.start);

    // The other tenant's calls are routed as before (1001 is not registered: 480).
    let r = final_status(&mut beta_caller, "1001").await;
    assert_eq!(r.status(), Some(480), "{}", r.start);

    pbx.store
        .rollback_dialplan(pbx.acme, Some(first.version))
        .await
        .unwrap();
    until_final(&mut acme_caller, "1001", |r| r.status() == Some(480)).await;
}

#[tokio::test]
async fn tenants_run_their_own_dial_plans_side_by_side() {
    let pbx = Pbx::start().await;
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::COUNTER, 1)
        .await
        .unwrap();
    let mut acme_caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut beta_caller = pbx.registered(Transport::Udp, BETA, "1000").await;
    let mut beta_callee = pbx.registered(Transport::Udp, BETA, "1001").await;
    // Wait until acme's counter plan is active: it rejects with 480 "<n>/<stored>".
    until_final(&mut acme_caller, "1001", |r| r.start.contains("1/")).await;

    // Both tenants call at the same time.
    let acme = async {
        let r = final_status(&mut acme_caller, "1001").await;
        assert!(
            r.start.starts_with("SIP/2.0 480 1/"),
            "acme's plan: {}",
            r.start
        );
    };
    let beta = async {
        beta_caller.call("1001").await.unwrap();
        let invite = beta_callee.expect_request("INVITE").await.unwrap();
        beta_callee
            .respond(&invite, 486, "Busy Here", Some("b"), false)
            .await
            .unwrap();
        let r = beta_caller.expect_final("INVITE").await.unwrap();
        assert_eq!(r.status(), Some(486), "beta's default plan rang 1001");
    };
    tokio::join!(acme, beta);
}

#[tokio::test]
async fn outbound_calls_go_out_the_tenants_trunk_with_its_credentials() {
    let pbx = Pbx::start().await;
    let mut carrier = Phone::new(
        Transport::Udp,
        "127.0.0.1",
        pbx.udp,
        "carrier",
        "unused",
        "carrier.example",
    )
    .await
    .unwrap();
    pbx.store
        .add_trunk(
            pbx.acme,
            "carrier",
            &format!("sip:{}", carrier.local),
            Some("acct"),
            Some("trunk-secret"),
        )
        .await
        .unwrap();
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;

    // Until the trunk is loaded the number has no route (403).
    let mut invite = None;
    for _ in 0..100 {
        let call = caller.call("95551234567").await.unwrap();
        if let Some(r) = next_invite(&mut carrier, Duration::from_millis(300)).await {
            invite = Some(r);
            break;
        }
        let r = caller.final_response(&call).await.unwrap();
        assert_eq!(r.status(), Some(403), "{}", r.start);
    }
    let invite = invite.expect("the carrier is called");
    assert_eq!(invite.method(), Some("INVITE"));
    assert!(
        invite
            .start
            .starts_with(&format!("INVITE sip:5551234567@{}", carrier.local)),
        "{}",
        invite.start
    );
    let mut challenge = format!(
        "SIP/2.0 407 Proxy Authentication Required\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=cx\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        invite.header("Via").unwrap(),
        invite.header("From").unwrap(),
        invite.header("To").unwrap(),
        invite.call_id(),
        invite.header("CSeq").unwrap(),
    );
    challenge.push_str("Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n");
    carrier.send(&challenge).await.unwrap();
    let ack = carrier.expect_request("ACK").await.unwrap();
    assert_eq!(ack.call_id(), invite.call_id());
    let retry = next_invite(&mut carrier, Duration::from_secs(5))
        .await
        .expect("INVITE with credentials");
    let creds = digest_auth::Credentials::parse(retry.header("Proxy-Authorization").unwrap())
        .expect("credentials");
    assert_eq!(creds.username, "acct");
    let ha1 = digest_auth::ha1(
        digest_auth::Algorithm::Md5,
        "acct",
        "carrier.example",
        "trunk-secret",
    );
    assert!(creds.verify("INVITE", &ha1), "the trunk password is right");
    carrier
        .respond(&retry, 200, "OK", Some("cx"), true)
        .await
        .unwrap();
    let ok = caller.expect_status("INVITE", 200).await.unwrap();
    assert!(ok.body.contains("m=audio"));
}

#[tokio::test]
async fn calls_to_a_did_from_the_trunk_reach_the_tenants_dial_plan() {
    let mut pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("+4930123456").await;
    pbx.store.add_did(pbx.acme, "+15550001").await.unwrap();
    common::cli(
        &pbx.store,
        &["storage", "set", "acme", "did:+15550001", "1001"],
    )
    .await;
    // Restart so the call below need not wait for the next reload.
    pbx.stop().await;
    pbx.serve().await;
    carrier.server = pbx.udp;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;

    // The trunk's INVITE carries no credentials; once the DID is loaded it rings 1001.
    let mut rang = None;
    for _ in 0..100 {
        let call = pbx_e2e::OutCall {
            uri: "sip:+15550001@127.0.0.1".into(),
            call_id: pbx_e2e::token(),
            from_tag: pbx_e2e::token(),
            via: carrier.via(),
            cseq: 1,
            to_tag: None,
            target: None,
            route: Vec::new(),
        };
        let text = carrier.invite_text(&call, None);
        carrier.send(&text).await.unwrap();
        if let Ok(invite) = callee.recv_within(Duration::from_millis(300)).await {
            rang = Some(invite);
            break;
        }
        let r = carrier.final_response(&call).await.unwrap();
        assert_ne!(r.status(), Some(200), "{}", r.start);
    }
    let invite = rang.expect("1001 rings");
    assert_eq!(invite.method(), Some("INVITE"));
    assert!(invite.header("From").unwrap().contains("+4930123456"));
}
