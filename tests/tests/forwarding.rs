//! Per-extension call forwarding and do-not-disturb end to end: the host keeps
//! each extension's settings (set through the API, the store as the CLI does,
//! or the phone's feature codes) and the shipped dial plan, a call handler,
//! follows them over real SIP: unconditional, busy and no-answer forwards
//! (on to another extension, then out the carrier trunk), do-not-disturb, a
//! forward loop stopped with 482, `*72` from a phone, and a ringing call
//! picked up by a phone of the same ring group with `*8`.

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

/// The RTP address in an SDP body.
fn media_addr(body: &str) -> std::net::SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .expect("m= line");
    format!("{ip}:{port}").parse().expect("an address")
}

/// One PCMU packet with sequence number `seq`.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![
        0x80,
        0,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
        160,
        0,
        0,
        0,
        7,
    ];
    p.extend([0xff; 160]);
    p
}

/// Sends from `from` to the relay (which latches on it) until `to` hears
/// the audio; every wait is bounded.
async fn audio_flows(
    from: &tokio::net::UdpSocket,
    relay: std::net::SocketAddr,
    to: &tokio::net::UdpSocket,
) -> bool {
    let mut buf = [0u8; 2048];
    for seq in 0..50u16 {
        from.send_to(&rtp(seq), relay).await.expect("sent");
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(100), to.recv_from(&mut buf)).await
        {
            return n == 172;
        }
    }
    false
}

#[tokio::test]
async fn a_group_mate_picks_up_a_ringing_call_with_star_8() {
    let pbx = Pbx::start().await;
    pbx.store
        .plugin_kv_admin_put(pbx.acme, "ring-group:sales", Some(b"1001,1002"))
        .await
        .expect("tenant storage");
    pbx.applied().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut ringing = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut picker = pbx.registered(Transport::Udp, ACME, "1002").await;
    let mut outsider = pbx.registered(Transport::Udp, ACME, "1000").await;

    let mut call = caller.call("1001").await.unwrap();
    let invite = next_invite(&mut ringing, SOON).await.expect("1001 rings");
    ringing
        .respond(&invite, 180, "Ringing", Some("r1"), false)
        .await
        .unwrap();

    // 1000 is in no group with 1001: nothing to pick up.
    let nothing = outsider.call("*8").await.unwrap();
    let refused = outsider.final_response(&nothing).await.unwrap();
    assert_eq!(refused.status(), Some(480), "{}", refused.raw);

    // 1002 shares the sales group with 1001 and takes the call.
    let mut pick = picker.call("*8").await.unwrap();
    let to_picker = picker.final_response(&pick).await.unwrap();
    assert_eq!(to_picker.status(), Some(200), "{}", to_picker.raw);
    pick.answered(&to_picker);
    picker.ack_2xx(&pick).await.unwrap();
    ringing
        .expect_request("CANCEL")
        .await
        .expect("the ringing phone stops");
    let to_caller = caller.final_response(&call).await.unwrap();
    assert_eq!(to_caller.status(), Some(200), "{}", to_caller.raw);
    call.answered(&to_caller);
    caller.ack_2xx(&call).await.unwrap();

    // Caller and picker hear each other through the relay.
    let caller_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let picker_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller_relay = media_addr(&to_caller.body);
    let picker_relay = media_addr(&to_picker.body);
    picker_rtp.send_to(&rtp(0), picker_relay).await.unwrap();
    assert!(
        audio_flows(&caller_rtp, caller_relay, &picker_rtp).await,
        "caller to picker"
    );
    assert!(
        audio_flows(&picker_rtp, picker_relay, &caller_rtp).await,
        "picker to caller"
    );

    // The picker hangs up; the caller is hung up, and the record says the
    // call was picked up from 1001 and answered by 1002's phone.
    picker.in_dialog(&pick, "BYE", None).await.unwrap();
    caller
        .expect_request("BYE")
        .await
        .expect("the caller is hung up");
    common::eventually(|| async {
        let cdrs = pbx
            .store
            .list_cdrs(pbx.acme, &store::CdrFilter::default())
            .await
            .unwrap_or_default();
        cdrs.iter().any(|c| {
            c.callee_call_id == pick.call_id && c.tags.contains(&"picked-up-from:1001".to_string())
        })
    })
    .await;
}
