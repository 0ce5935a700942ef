//! Per-extension call forwarding and do-not-disturb end to end: the host keeps
//! each extension's settings (set through the API, the store as the CLI does,
//! or the phone's feature codes) and the shipped dial plan, a call handler,
//! follows them over real SIP: unconditional, busy and no-answer forwards
//! (on to another extension, then out the carrier trunk), do-not-disturb, a
//! forward loop stopped with 482, and `*72` from a phone.

mod common;

use std::time::Duration;

use common::{ACME, Pbx, http, next_invite};
use pbx_e2e::{Phone, SipMsg, Transport};
use serde_json::json;
use store::Forwarding;

/// How long to wait for something that should happen at once.
const SOON: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

/// Stores `settings` for acme's extension `ext` (as `pbx extension forward`
/// does) and waits until the running server has them.
async fn forward(pbx: &Pbx, ext: &str, settings: Forwarding) {
    pbx.store
        .set_forwarding(pbx.acme, ext, &settings)
        .await
        .expect("settings stored");
    pbx.applied().await;
}

/// The INVITE `callee` gets, answered with `status`.
async fn rings_and_answers(callee: &mut Phone, status: u16, reason: &str) -> SipMsg {
    let invite = next_invite(callee, SOON)
        .await
        .unwrap_or_else(|| panic!("{} rings", callee.user));
    callee
        .respond(&invite, status, reason, Some("t1"), status == 200)
        .await
        .unwrap();
    invite
}

/// `callee` rings (180) and is cancelled when nobody answers in time.
async fn rings_out(callee: &mut Phone) {
    let invite = next_invite(callee, SOON)
        .await
        .unwrap_or_else(|| panic!("{} rings", callee.user));
    callee
        .respond(&invite, 180, "Ringing", Some("t1"), false)
        .await
        .unwrap();
    callee
        .expect_request("CANCEL")
        .await
        .unwrap_or_else(|e| panic!("{} rang out and is cancelled: {e}", callee.user));
}

/// Asserts that `phone` gets no INVITE for a while.
async fn does_not_ring(phone: &mut Phone) {
    assert!(
        next_invite(phone, QUIET).await.is_none(),
        "{} must not ring",
        phone.user
    );
}

#[tokio::test]
async fn an_unconditional_forward_set_through_the_api_is_followed() {
    let pbx = Pbx::start_with_api().await;
    let token = pbx.root_token().await;
    let uri = format!("/api/v1/tenants/{}/extensions/1001/forwarding", pbx.acme);
    let (s, v) = http(
        pbx.api(),
        "PUT",
        &uri,
        Some(&token),
        Some(json!({ "always": "1002" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    pbx.applied().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut forwarder = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    let invite = rings_and_answers(&mut target, 200, "OK").await;
    assert!(
        invite.start.starts_with("INVITE sip:1002@"),
        "{}",
        invite.start
    );
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
    does_not_ring(&mut forwarder).await;
}

#[tokio::test]
async fn no_answer_forwards_to_another_extension_then_out_the_trunk() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    // One second each: what the test is about is what follows the time-out.
    forward(
        &pbx,
        "1001",
        Forwarding {
            no_answer: Some("1002".into()),
            no_answer_secs: 1,
            ..Forwarding::default()
        },
    )
    .await;
    forward(
        &pbx,
        "1002",
        Forwarding {
            no_answer: Some("+12125550100".into()),
            no_answer_secs: 1,
            ..Forwarding::default()
        },
    )
    .await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut first = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut second = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    rings_out(&mut first).await;
    rings_out(&mut second).await;
    let out = rings_and_answers(&mut carrier, 200, "OK").await;
    assert!(
        out.start.starts_with("INVITE sip:+12125550100@"),
        "{}",
        out.start
    );
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
}

#[tokio::test]
async fn a_busy_extension_forwards_on_busy() {
    let pbx = Pbx::start().await;
    forward(
        &pbx,
        "1001",
        Forwarding {
            busy: Some("1002".into()),
            ..Forwarding::default()
        },
    )
    .await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut busy = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    rings_and_answers(&mut busy, 486, "Busy Here").await;
    rings_and_answers(&mut target, 200, "OK").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);

    // Without the busy forward, the caller hears the busy signal.
    forward(&pbx, "1001", Forwarding::default()).await;
    let call = caller.call("1001").await.unwrap();
    rings_and_answers(&mut busy, 486, "Busy Here").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(486), "{}", answer.raw);
    does_not_ring(&mut target).await;
}

#[tokio::test]
async fn an_extension_in_do_not_disturb_is_not_rung() {
    let pbx = Pbx::start().await;
    forward(
        &pbx,
        "1001",
        Forwarding {
            dnd: true,
            ..Forwarding::default()
        },
    )
    .await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut dnd = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(486), "{}", answer.raw);
    does_not_ring(&mut dnd).await;

    // With a busy forward, do-not-disturb sends the call there.
    forward(
        &pbx,
        "1001",
        Forwarding {
            dnd: true,
            busy: Some("1002".into()),
            ..Forwarding::default()
        },
    )
    .await;
    let call = caller.call("1001").await.unwrap();
    rings_and_answers(&mut target, 200, "OK").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
    does_not_ring(&mut dnd).await;
}

#[tokio::test]
async fn a_forward_loop_between_two_extensions_is_stopped() {
    let pbx = Pbx::start().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut one = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut two = pbx.registered(Transport::Udp, ACME, "1002").await;

    // Unconditional both ways: found before anything rings.
    forward(
        &pbx,
        "1001",
        Forwarding {
            always: Some("1002".into()),
            ..Forwarding::default()
        },
    )
    .await;
    forward(
        &pbx,
        "1002",
        Forwarding {
            always: Some("1001".into()),
            ..Forwarding::default()
        },
    )
    .await;
    let call = caller.call("1001").await.unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(482), "{}", answer.raw);
    does_not_ring(&mut one).await;
    does_not_ring(&mut two).await;

    // Across attempts: 1001 does not answer, 1002 is busy and would send the
    // call back to 1001.
    forward(
        &pbx,
        "1001",
        Forwarding {
            no_answer: Some("1002".into()),
            no_answer_secs: 1,
            ..Forwarding::default()
        },
    )
    .await;
    forward(
        &pbx,
        "1002",
        Forwarding {
            busy: Some("1001".into()),
            ..Forwarding::default()
        },
    )
    .await;
    let call = caller.call("1001").await.unwrap();
    rings_out(&mut one).await;
    rings_and_answers(&mut two, 486, "Busy Here").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(482), "{}", answer.raw);
    does_not_ring(&mut one).await;
}

/// The host's confirmation of a feature code: it answers the call itself and
/// hangs up once the phone acknowledged the answer.
async fn confirmed(phone: &mut Phone, code: &str) {
    let mut call = phone.call(code).await.unwrap();
    let answer = phone.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{code}: {}", answer.raw);
    call.answered(&answer);
    phone.ack_2xx(&call).await.unwrap();
    let bye = phone
        .expect_request("BYE")
        .await
        .unwrap_or_else(|e| panic!("{code}: the host hangs up: {e}"));
    phone.respond(&bye, 200, "OK", None, false).await.unwrap();
}

#[tokio::test]
async fn star_72_from_a_phone_forwards_its_calls_and_shows_in_the_api() {
    let mut pbx = Pbx::start_with_api().await;
    let mut phone = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;

    confirmed(&mut phone, "*721002").await;
    // Saved before the confirmation: the next call follows it at once.
    let call = caller.call("1000").await.unwrap();
    rings_and_answers(&mut target, 200, "OK").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
    does_not_ring(&mut phone).await;

    let token = pbx.root_token().await;
    let uri = format!("/api/v1/tenants/{}/extensions/1000/forwarding", pbx.acme);
    let (s, v) = http(pbx.api(), "GET", &uri, Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["always"], "1002", "{v}");
    let audit = pbx
        .store
        .list_audit(Some(pbx.acme), None, 10)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.record.action == "extension.forwarding" && e.record.detail.contains("1002")),
        "the phone's change is audited: {audit:?}"
    );

    // It survives a restart.
    pbx.stop().await;
    pbx.serve_with_api().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut target = pbx.registered(Transport::Udp, ACME, "1002").await;
    let call = caller.call("1000").await.unwrap();
    rings_and_answers(&mut target, 200, "OK").await;
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);

    // `*73` turns it off again; a code the plan does not know is refused.
    let mut phone = pbx.registered(Transport::Udp, ACME, "1000").await;
    confirmed(&mut phone, "*73").await;
    let (_, v) = http(pbx.api(), "GET", &uri, Some(&pbx.root_token().await), None).await;
    assert_eq!(v["always"], serde_json::Value::Null, "{v}");
    let bad = phone.call("*99").await.unwrap();
    let answer = phone.final_response(&bad).await.unwrap();
    assert_eq!(answer.status(), Some(404), "{}", answer.raw);
}
