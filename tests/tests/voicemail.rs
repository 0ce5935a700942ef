//! Voicemail end to end, real SIP and RTP over sockets: the shipped default
//! dial plan sends a call that rang out to the callee's voicemail; the
//! caller speaks and hangs up; the message is stored, the callee's phone gets
//! message-waiting indication (RFC 3842), the message downloads through the
//! API as a WAV of the expected length, another tenant gets the same 404 as
//! for a message that does not exist, and the file on disk is encrypted. The
//! mailbox menu (`*97`) stops a caller guessing its PIN.

mod common;

use std::time::Duration;

use common::{ACME, BETA, Pbx, eventually, files_under, get_raw, http, next_invite};
use pbx_e2e::{OutCall, Phone, SipMsg, Transport};
use serde_json::json;
use tokio::net::UdpSocket;

/// How long to wait for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// The `(address, port)` the host's SDP answer points the caller's media at.
fn media_target(ok: &SipMsg) -> std::net::SocketAddr {
    let body = ok.raw.split("\r\n\r\n").nth(1).expect("SDP");
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line");
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("m= line");
    format!("{}:{port}", ip.trim()).parse().expect("address")
}

/// Sends `secs` seconds of a 400 Hz PCMU tone to `to`, paced at 20 ms as a
/// phone sends it.
async fn talk(to: std::net::SocketAddr, secs: u32) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut t = 0u32;
    for seq in 0..secs * 50 {
        tick.tick().await;
        let mut packet = vec![0x80, 0x00];
        packet.extend_from_slice(&(seq as u16).to_be_bytes());
        packet.extend_from_slice(&(seq * 160).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        for _ in 0..160 {
            let phase = f64::from(t) * 400.0 * std::f64::consts::TAU / 8000.0;
            let sample = (phase.sin() * 8000.0) as i16;
            packet.push(pbx_media::G711::Pcmu.encode(sample));
            t += 1;
        }
        socket.send_to(&packet, to).await.unwrap();
    }
}

/// `caller` calls extension `ext` of its tenant, whose phone `callee` rings
/// for one second (the test is about what happens after nobody answers, not
/// the shipped ring time) until voicemail answers; returns the call and the
/// answer, acknowledged.
async fn reach_voicemail(
    pbx: &Pbx,
    caller: &mut Phone,
    callee: &mut Phone,
    ext: &str,
) -> (OutCall, SipMsg) {
    let tenant = if callee.domain == ACME {
        pbx.acme
    } else {
        pbx.beta
    };
    pbx.store
        .set_forwarding(
            tenant,
            ext,
            &store::Forwarding {
                no_answer_secs: 1,
                ..store::Forwarding::default()
            },
        )
        .await
        .expect("ring time stored");
    pbx.applied().await;
    let mut call = caller.call(ext).await.unwrap();
    let invite = next_invite(callee, SOON)
        .await
        .expect("the extension rings");
    callee
        .respond(&invite, 180, "Ringing", Some("r1"), false)
        .await
        .unwrap();
    callee
        .expect_request("CANCEL")
        .await
        .expect("nobody answers; the ringing stops");
    let ok = caller.final_response(&call).await.unwrap();
    assert_eq!(ok.status(), Some(200), "voicemail answers: {}", ok.raw);
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    (call, ok)
}

/// `caller` reaches the voicemail of extension `ext` ([`reach_voicemail`]),
/// speaks for `secs` seconds and hangs up.
async fn leave_message(pbx: &Pbx, caller: &mut Phone, callee: &mut Phone, ext: &str, secs: u32) {
    let (call, ok) = reach_voicemail(pbx, caller, callee, ext).await;
    talk(media_target(&ok), secs).await;
    caller.in_dialog(&call, "BYE", None).await.unwrap();
    caller.expect_status("BYE", 200).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_caller_leaves_a_message_that_lights_the_phone_and_downloads() {
    let pbx = Pbx::start_with_api().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    // The caller speaks for six seconds (the beep takes the first part).
    leave_message(&pbx, &mut caller, &mut callee, "1001", 6).await;

    // The callee's phone hears that a message waits (RFC 3842).
    let notify = callee
        .expect_request("NOTIFY")
        .await
        .expect("message-waiting NOTIFY");
    assert_eq!(notify.header("Event"), Some("message-summary"));
    assert!(
        notify.raw.contains("Messages-Waiting: yes"),
        "{}",
        notify.raw
    );
    assert!(notify.raw.contains("Voice-Message: 1/0"), "{}", notify.raw);
    callee
        .respond(&notify, 200, "OK", None, false)
        .await
        .unwrap();

    // The message lists and downloads through the API, as a WAV of about
    // the length spoken after the beep.
    let token = pbx.root_token().await;
    let list = format!("/api/v1/tenants/{}/voicemail/1001/messages", pbx.acme);
    let (s, v) = http(pbx.api(), "GET", &list, Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    let messages = v.as_array().cloned().unwrap_or_else(|| {
        v["messages"]
            .as_array()
            .cloned()
            .expect("a list of messages")
    });
    assert_eq!(messages.len(), 1, "{v}");
    let id = messages[0]["id"].as_str().expect("message id").to_string();
    assert_eq!(messages[0]["caller"], json!("1000"), "{v}");
    let path = format!("{list}/{id}");
    let (s, wav) = get_raw(pbx.api(), &path, &token).await;
    assert_eq!(s, 200);
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV file");
    assert_eq!(reader.spec().sample_rate, 8000);
    assert_eq!(reader.spec().channels, 1);
    let secs = f64::from(reader.duration()) / 8000.0;
    assert!(
        (4.5..=6.1).contains(&secs),
        "the message is about the six seconds spoken, less the beep: {secs} s"
    );
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 2000).count();
    assert!(loud > samples.len() / 4, "the tone was recorded");

    // Another tenant's admin gets the same 404 as for a message that does
    // not exist.
    pbx_api::add_user(
        &pbx.store,
        "beta-admin",
        store::UserRole::TenantAdmin,
        Some("beta"),
        common::ROOT_PASSWORD,
    )
    .await
    .expect("beta's admin");
    let (s, v) = http(
        pbx.api(),
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "username": "beta-admin", "password": common::ROOT_PASSWORD })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let beta_token = v["token"].as_str().unwrap().to_string();
    let theirs = format!("/api/v1/tenants/{}/voicemail/1001/messages/{id}", pbx.acme);
    let (s_other, body_other) = get_raw(pbx.api(), &theirs, &beta_token).await;
    let own_path = format!("/api/v1/tenants/{}/voicemail/1001/messages/{id}", pbx.beta);
    let (s_own, body_own) = get_raw(pbx.api(), &own_path, &beta_token).await;
    let missing = format!("/api/v1/tenants/{}/voicemail/1001/messages/nope", pbx.beta);
    let (s_missing, body_missing) = get_raw(pbx.api(), &missing, &beta_token).await;
    assert_eq!((s_other, s_own, s_missing), (404, 404, 404));
    assert_eq!(body_own, body_missing, "no existence oracle");
    assert!(!body_other.starts_with(b"RIFF"));

    // On disk the message is not a WAV: it is encrypted with acme's key.
    let stored: Vec<_> = files_under(&pbx.data_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert!(
        !stored.is_empty(),
        "the message is a file in the data directory"
    );
    for file in stored {
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.len() > 1000, "{} holds the audio", file.display());
        assert!(
            !bytes.starts_with(b"RIFF"),
            "{} is encrypted",
            file.display()
        );
        assert!(hound::WavReader::new(std::io::Cursor::new(&bytes)).is_err());
    }
}

/// Calls `*97` from `phone`, keys in each of `pins` with `#` (SIP INFO) as
/// the menu asks, and answers the host's BYE when the menu ends.
async fn try_pins(phone: &mut Phone, pins: &[&str]) {
    let mut call = phone.call("*97").await.unwrap();
    let ok = phone.final_response(&call).await.unwrap();
    assert_eq!(ok.status(), Some(200), "the host answers *97: {}", ok.raw);
    call.answered(&ok);
    phone.ack_2xx(&call).await.unwrap();
    for pin in pins {
        for key in pin.chars().chain(['#']) {
            phone.send_key(&call, key).await.unwrap();
            phone.expect_status("INFO", 200).await.unwrap();
        }
    }
    let bye = phone
        .expect_request("BYE")
        .await
        .expect("the menu ends and the host hangs up");
    phone.respond(&bye, 200, "OK", None, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_mailbox_pin_from_the_phone_is_stopped() {
    let pbx = Pbx::start().await;
    pbx.store
        .set_voicemail_pin(pbx.acme, "1001", "4826")
        .await
        .expect("PIN set");
    let mut phone = pbx.registered(Transport::Udp, ACME, "1001").await;
    // One call gets three tries, then the menu ends.
    try_pins(&mut phone, &["1111", "2222", "3333"]).await;
    // The mailbox counts tries across calls: two more lock it.
    try_pins(&mut phone, &["4444", "5555"]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        matches!(
            pbx.store
                .check_voicemail_pin(pbx.acme, "1001", "4826", now)
                .await
                .unwrap(),
            store::PinCheck::Locked { .. }
        ),
        "after five wrong PINs even the right one is refused"
    );
    // While locked, the right PIN from the phone ends the menu at once too.
    try_pins(&mut phone, &["4826"]).await;
}

/// The next message-waiting NOTIFY `phone` receives, answered with 200.
async fn next_summary(phone: &mut Phone) -> SipMsg {
    let notify = phone
        .expect_request("NOTIFY")
        .await
        .expect("message-waiting NOTIFY");
    assert_eq!(notify.header("Event"), Some("message-summary"));
    assert_eq!(
        notify.header("Content-Type"),
        Some("application/simple-message-summary")
    );
    phone
        .respond(&notify, 200, "OK", None, false)
        .await
        .unwrap();
    notify
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_phone_hears_a_new_message_and_its_deletion_and_other_tenants_are_refused() {
    let pbx = Pbx::start_with_api().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    // The mailbox's phone talks TCP: its NOTIFYs come over its connection.
    let mut phone = pbx.registered(Transport::Tcp, ACME, "1001").await;
    let mailbox = format!("sip:1001@{ACME}");
    let ok = phone.subscribe_mwi(&mailbox, 600).await.unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);
    assert_eq!(ok.header("Expires"), Some("600"));
    let dialog = ok.call_id().to_string();

    // At once: the mailbox is empty.
    let notify = next_summary(&mut phone).await;
    assert_eq!(notify.call_id(), dialog, "in the subscription's dialog");
    assert_eq!(
        notify.header("Subscription-State"),
        Some("active;expires=600")
    );
    assert!(
        notify.raw.contains("Messages-Waiting: no"),
        "{}",
        notify.raw
    );
    assert!(
        notify
            .raw
            .contains(&format!("Message-Account: sip:1001@{ACME}")),
        "{}",
        notify.raw
    );

    // A caller leaves a message: the subscription hears of it.
    leave_message(&pbx, &mut caller, &mut phone, "1001", 3).await;
    let notify = next_summary(&mut phone).await;
    assert_eq!(notify.call_id(), dialog, "{}", notify.raw);
    assert!(
        notify.raw.contains("Messages-Waiting: yes"),
        "{}",
        notify.raw
    );
    assert!(notify.raw.contains("Voice-Message: 1/0"), "{}", notify.raw);

    // Deleted through the API: the light goes out. Had the phone also been
    // sent an unsolicited NOTIFY for the message, it would come first.
    let token = pbx.root_token().await;
    let list = format!("/api/v1/tenants/{}/voicemail/1001/messages", pbx.acme);
    let (s, v) = http(pbx.api(), "GET", &list, Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    let id = v[0]["id"].as_str().expect("message id").to_string();
    let (s, v) = http(
        pbx.api(),
        "DELETE",
        &format!("{list}/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let notify = next_summary(&mut phone).await;
    assert_eq!(notify.call_id(), dialog, "{}", notify.raw);
    assert!(
        notify.raw.contains("Messages-Waiting: no"),
        "{}",
        notify.raw
    );
    assert!(notify.raw.contains("Voice-Message: 0/0"), "{}", notify.raw);

    // Another tenant's phone may not subscribe to acme's mailbox; a mailbox
    // that does not exist gets the same answer.
    let mut other = pbx.registered(Transport::Udp, BETA, "1001").await;
    let theirs = other.subscribe_mwi(&mailbox, 600).await.unwrap();
    let missing = other
        .subscribe_mwi(&format!("sip:1999@{ACME}"), 600)
        .await
        .unwrap();
    assert_eq!(theirs.status(), Some(403), "{}", theirs.raw);
    assert_eq!(theirs.start, missing.start, "no existence oracle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_is_told_to_the_caller_and_records_nothing_and_other_tenants_still_record() {
    let pbx = Pbx::start().await;
    // The provider leaves acme no room for a message (what this test is
    // about); beta keeps the default quota.
    pbx.store
        .set_tenant_limits(
            pbx.acme,
            &store::TenantLimits {
                media_storage_bytes: Some(1000),
                ..store::TenantLimits::default()
            },
        )
        .await
        .expect("quota set");
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let (call, _) = reach_voicemail(&pbx, &mut caller, &mut callee, "1001").await;
    // The caller hears the mailbox-full prompt, then the host hangs up.
    let bye = caller
        .expect_request("BYE")
        .await
        .expect("the host hangs up after the prompt");
    assert_eq!(bye.call_id(), call.call_id);
    caller.respond(&bye, 200, "OK", None, false).await.unwrap();
    let acme_records = || async {
        pbx.store
            .list_cdrs(pbx.acme, &store::CdrFilter::default())
            .await
            .unwrap()
    };
    eventually(|| async { !acme_records().await.is_empty() }).await;
    let record = acme_records().await.pop().expect("the call's record");
    assert_eq!(record.tags, [pbx_core::MAILBOX_FULL_TAG], "{record:?}");
    assert!(
        pbx.store
            .voicemail_messages(pbx.acme, "1001")
            .await
            .unwrap()
            .is_empty(),
        "nothing recorded"
    );

    // Beta's storage is its own: its voicemail still takes a message.
    let mut beta_caller = pbx.registered(Transport::Udp, BETA, "1000").await;
    let mut beta_callee = pbx.registered(Transport::Udp, BETA, "1001").await;
    leave_message(&pbx, &mut beta_caller, &mut beta_callee, "1001", 3).await;
    let notify = beta_callee
        .expect_request("NOTIFY")
        .await
        .expect("the message lights beta's phone");
    assert!(notify.raw.contains("Voice-Message: 1/0"), "{}", notify.raw);
    assert_eq!(
        pbx.store
            .voicemail_messages(pbx.beta, "1001")
            .await
            .unwrap()
            .len(),
        1
    );
}
