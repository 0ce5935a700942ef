//! Blind transfer by REFER (RFC 3515) from the phone that answered, end to end
//! on the shipped defaults: the host carries the transfer out, and the
//! transfer target is decided like any new leg (dial plan, destination
//! approval, policies), so a transfer cannot reach what a call could not.

mod common;

use std::time::Duration;

use common::{ACME, Pbx, eventually, next_invite};
use pbx_e2e::{OutCall, Phone, SipMsg, Transport};

/// 1000 calls 1001, which answers (its tag `t1`): the caller and callee
/// phones, the caller's call and the INVITE the callee got.
async fn answered_call(pbx: &Pbx) -> (Phone, Phone, OutCall, SipMsg) {
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut call = caller.call("1001").await.unwrap();
    let invite = next_invite(&mut callee, Duration::from_secs(5))
        .await
        .expect("1001 rings");
    callee
        .respond(&invite, 200, "OK", Some("t1"), true)
        .await
        .unwrap();
    callee.expect_request("ACK").await.expect("the host's ACK");
    let ok = caller.final_response(&call).await.unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    (caller, callee, call, invite)
}

/// Sends REFER in the dialog `invite` set up at the callee (which answered
/// with `tag`), to `target`, with `referred_by` when given; returns the
/// host's final response.
async fn refer(
    callee: &mut Phone,
    invite: &SipMsg,
    tag: &str,
    target: &str,
    referred_by: Option<&str>,
) -> SipMsg {
    let pbx_contact = invite
        .contact_uri()
        .expect("the host's INVITE has a Contact");
    let referred_by = referred_by
        .map(|r| format!("Referred-By: <{r}>\r\n"))
        .unwrap_or_default();
    let text = format!(
        "REFER {pbx_contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 1 REFER\r\n\
         Contact: {contact}\r\nRefer-To: <{target}>\r\n{referred_by}Content-Length: 0\r\n\r\n",
        via = callee.via(),
        to = invite.header("To").unwrap(),
        from = invite.header("From").unwrap(),
        cid = invite.call_id(),
        contact = callee.contact(),
    );
    callee.send(&text).await.unwrap();
    callee.expect_final("REFER").await.expect("REFER answered")
}

/// The next transfer NOTIFY at the transferor, answered 200; returns the
/// status line its sipfrag carries.
async fn notify(transferor: &mut Phone) -> String {
    let n = transferor
        .expect_request("NOTIFY")
        .await
        .expect("a transfer NOTIFY");
    assert_eq!(n.header("Event"), Some("refer"), "{}", n.raw);
    assert!(
        n.header("Content-Type")
            .is_some_and(|c| c.starts_with("message/sipfrag")),
        "{}",
        n.raw
    );
    transferor
        .respond(&n, 200, "OK", None, false)
        .await
        .unwrap();
    let body = n.raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    body.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_transfer_to_a_premium_number_is_refused_and_the_call_goes_on() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    pbx.applied().await;
    let (mut caller, mut callee, call, invite) = answered_call(&pbx).await;

    // A Referred-By naming someone else is refused outright.
    let forged = refer(
        &mut callee,
        &invite,
        "t1",
        "sip:1002@acme.example",
        Some("sip:1000@acme.example"),
    )
    .await;
    assert_eq!(forged.status(), Some(403), "{}", forged.raw);

    // The transfer to a premium-rate number is accepted, then refused by the
    // destination check: the transferor hears why.
    let accepted = refer(
        &mut callee,
        &invite,
        "t1",
        "sip:919005550123@acme.example",
        Some("sip:1001@acme.example"),
    )
    .await;
    assert_eq!(accepted.status(), Some(202), "{}", accepted.raw);
    assert_eq!(notify(&mut callee).await, "SIP/2.0 100 Trying");
    let last = notify(&mut callee).await;
    assert_eq!(last, "SIP/2.0 403 Destination Not Approved");
    assert!(
        next_invite(&mut carrier, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing went out the trunk"
    );
    // The refusal filed a request for the provider (written behind).
    let (store, acme) = (pbx.store.clone(), pbx.acme);
    eventually(|| {
        let store = store.clone();
        async move { store.list_approvals(acme).await.unwrap().len() == 1 }
    })
    .await;
    let filed = pbx.store.list_approvals(acme).await.unwrap().remove(0);
    assert_eq!(filed.sample_number.as_deref(), Some("19005550123"));

    // The call is still up: the caller's BYE reaches the callee.
    caller.in_dialog(&call, "BYE", None).await.unwrap();
    let bye = callee.expect_request("BYE").await.expect("BYE relayed");
    callee.respond(&bye, 200, "OK", None, false).await.unwrap();
    let done = caller.expect_final("BYE").await.unwrap();
    assert_eq!(done.status(), Some(200));
}

#[tokio::test]
async fn a_transfer_to_another_extension_replaces_the_transferor() {
    let pbx = Pbx::start().await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;
    let (mut caller, mut callee, call, invite) = answered_call(&pbx).await;

    // No Referred-By: the dialog itself says who transfers.
    let accepted = refer(&mut callee, &invite, "t1", "sip:1002@acme.example", None).await;
    assert_eq!(accepted.status(), Some(202), "{}", accepted.raw);
    assert_eq!(notify(&mut callee).await, "SIP/2.0 100 Trying");
    let ring = next_invite(&mut target, Duration::from_secs(5))
        .await
        .expect("the transfer target rings");
    assert!(
        ring.header("From").unwrap().contains("sip:1000@"),
        "{}",
        ring.raw
    );
    target
        .respond(&ring, 200, "OK", Some("x1"), true)
        .await
        .unwrap();
    target.expect_request("ACK").await.expect("the host's ACK");
    assert_eq!(notify(&mut callee).await, "SIP/2.0 200 OK");
    let bye = callee
        .expect_request("BYE")
        .await
        .expect("the transferor's leg ends");
    callee.respond(&bye, 200, "OK", None, false).await.unwrap();

    // The caller now talks to 1002: its BYE goes there.
    caller.in_dialog(&call, "BYE", None).await.unwrap();
    let bye = target.expect_request("BYE").await.expect("BYE to 1002");
    target.respond(&bye, 200, "OK", None, false).await.unwrap();
    assert_eq!(
        caller.expect_final("BYE").await.unwrap().status(),
        Some(200)
    );
}
