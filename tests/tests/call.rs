//! Calls between extensions of one tenant through the B2BUA, over real sockets.

mod common;

use common::{ACME, BETA, Pbx};
use pbx_e2e::{Phone, Transport};
use store::{CdrFilter, Disposition};

/// Rings `callee`, answers, and returns the caller's dialog view.
async fn answered_call(
    caller: &mut Phone,
    callee: &mut Phone,
) -> (pbx_e2e::OutCall, pbx_e2e::SipMsg) {
    let mut call = caller.call(&callee.user.clone()).await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    assert!(
        invite.body.contains("m=audio"),
        "SDP relayed: {}",
        invite.raw
    );
    callee
        .respond(&invite, 180, "Ringing", Some("callee-tag"), false)
        .await
        .unwrap();
    let ringing = caller.expect_status("INVITE", 180).await.unwrap();
    assert!(ringing.to_tag().is_some());
    callee
        .respond(&invite, 200, "OK", Some("callee-tag"), true)
        .await
        .unwrap();
    let ok = caller.expect_status("INVITE", 200).await.unwrap();
    assert!(
        ok.body.contains("m=audio ") && !ok.body.contains("m=audio 4002"),
        "answer SDP relayed, pointing at the media relay: {}",
        ok.raw
    );
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    callee.expect_request("ACK").await.unwrap();
    (call, invite)
}

async fn cdrs(pbx: &Pbx, tenant: store::TenantId) -> Vec<store::Cdr> {
    pbx.store
        .list_cdrs(tenant, &CdrFilter::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn call_answer_and_caller_hangs_up() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let (call, _) = answered_call(&mut caller, &mut callee).await;

    caller.in_dialog(&call, "BYE", None).await.unwrap();
    caller.expect_status("BYE", 200).await.unwrap();
    let bye = callee.expect_request("BYE").await.unwrap();
    callee.respond(&bye, 200, "OK", None, false).await.unwrap();

    pbx.stop().await;
    let records = cdrs(&pbx, pbx.acme).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let cdr = &records[0];
    assert_eq!(cdr.disposition, Disposition::Answered);
    assert_eq!((cdr.caller.as_str(), cdr.callee.as_str()), ("1000", "1001"));
    assert_eq!(cdr.hangup_by, "caller");
    assert!(cdr.answered_at_ms.is_some());
    assert_eq!(cdr.caller_call_id, call.call_id);
    assert!(!cdr.callee_call_id.is_empty() && cdr.callee_call_id != call.call_id);
    assert!(
        cdrs(&pbx, pbx.beta).await.is_empty(),
        "no record crosses tenants"
    );
}

#[tokio::test]
async fn callee_hangs_up_over_tcp() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Tcp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let (_call, invite) = answered_call(&mut caller, &mut callee).await;

    // The callee ends the call in its own dialog with the PBX.
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {to};tag=callee-tag\r\n\
         To: {from}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        target = invite.contact_uri().unwrap(),
        via = callee.via(),
        to = invite.header("To").unwrap(),
        from = invite.header("From").unwrap(),
        cid = invite.call_id(),
    );
    callee.send(&bye).await.unwrap();
    callee.expect_status("BYE", 200).await.unwrap();
    let bye_a = caller.expect_request("BYE").await.unwrap();
    caller
        .respond(&bye_a, 200, "OK", None, false)
        .await
        .unwrap();

    pbx.stop().await;
    let records = cdrs(&pbx, pbx.acme).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].hangup_by, "callee");
}

#[tokio::test]
async fn caller_cancels_while_ringing() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let call = caller.call("1001").await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    callee
        .respond(&invite, 180, "Ringing", Some("t1"), false)
        .await
        .unwrap();
    caller.expect_status("INVITE", 180).await.unwrap();

    caller.cancel(&call).await.unwrap();
    caller.expect_status("CANCEL", 200).await.unwrap();
    caller.expect_status("INVITE", 487).await.unwrap();
    let cancel = callee.expect_request("CANCEL").await.unwrap();
    callee
        .respond(&cancel, 200, "OK", Some("t1"), false)
        .await
        .unwrap();
    callee
        .respond(&invite, 487, "Request Terminated", Some("t1"), false)
        .await
        .unwrap();
    callee.expect_request("ACK").await.unwrap();

    pbx.stop().await;
    let records = cdrs(&pbx, pbx.acme).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].disposition, Disposition::Cancelled);
    assert_eq!(records[0].sip_code, 487);
}

#[tokio::test]
async fn busy_callee_is_relayed() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let _call = caller.call("1001").await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    callee
        .respond(&invite, 486, "Busy Here", Some("b1"), false)
        .await
        .unwrap();
    callee.expect_request("ACK").await.unwrap();
    caller.expect_status("INVITE", 486).await.unwrap();
    pbx.stop().await;
    assert_eq!(cdrs(&pbx, pbx.acme).await[0].disposition, Disposition::Busy);
}

#[tokio::test]
async fn unregistered_callee_gets_480_and_unknown_extension_404() {
    let mut pbx = Pbx::start().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let _ = caller.call("1002").await.unwrap();
    caller.expect_status("INVITE", 480).await.unwrap();
    let _ = caller.call("7777").await.unwrap();
    caller.expect_status("INVITE", 404).await.unwrap();
    pbx.stop().await;
}

#[tokio::test]
async fn same_extension_numbers_in_two_tenants_stay_apart() {
    let mut pbx = Pbx::start().await;
    let mut acme_1001 = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut beta_1001 = pbx.registered(Transport::Udp, BETA, "1001").await;
    let mut acme_1000 = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut beta_1000 = pbx.registered(Transport::Udp, BETA, "1000").await;

    let _ = acme_1000.call("1001").await.unwrap();
    let invite = acme_1001.expect_request("INVITE").await.unwrap();
    assert!(invite.header("From").unwrap().contains(ACME));
    let _ = beta_1000.call("1001").await.unwrap();
    let invite_b = beta_1001.expect_request("INVITE").await.unwrap();
    assert!(invite_b.header("From").unwrap().contains(BETA));
    // A beta phone cannot authenticate against acme's domain with its own password.
    let mut intruder = Phone::new(
        Transport::Udp,
        "127.0.0.1",
        pbx.udp,
        "1000",
        &common::password(BETA, "1000"),
        ACME,
    )
    .await
    .unwrap();
    let r = intruder.register(300).await.unwrap();
    assert_eq!(r.status(), Some(401));
    pbx.stop().await;
}

#[tokio::test]
async fn parallel_fork_first_answer_wins_and_others_are_cancelled() {
    let mut pbx = Pbx::start().await;
    let mut desk = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut soft = pbx.registered(Transport::Tcp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut call = caller.call("1001").await.unwrap();
    let inv_desk = desk.expect_request("INVITE").await.unwrap();
    let inv_soft = soft.expect_request("INVITE").await.unwrap();
    desk.respond(&inv_desk, 180, "Ringing", Some("desk"), false)
        .await
        .unwrap();
    soft.respond(&inv_soft, 180, "Ringing", Some("soft"), false)
        .await
        .unwrap();
    soft.respond(&inv_soft, 200, "OK", Some("soft"), true)
        .await
        .unwrap();
    let ok = caller.expect_status("INVITE", 200).await.unwrap();
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    let cancel = desk.expect_request("CANCEL").await.unwrap();
    desk.respond(&cancel, 200, "OK", Some("desk"), false)
        .await
        .unwrap();
    desk.respond(&inv_desk, 487, "Request Terminated", Some("desk"), false)
        .await
        .unwrap();
    soft.expect_request("ACK").await.unwrap();
    pbx.stop().await;
}

#[tokio::test]
async fn reinvite_is_relayed() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let (call, _) = answered_call(&mut caller, &mut callee).await;
    caller.in_dialog(&call, "INVITE", None).await.unwrap();
    let re = callee.expect_request("INVITE").await.unwrap();
    callee.respond(&re, 200, "OK", None, true).await.unwrap();
    caller.expect_status("INVITE", 200).await.unwrap();
    pbx.stop().await;
}
