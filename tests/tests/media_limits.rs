//! Media limits end to end, real SIP over sockets: a tenant whose host media
//! sessions (here the `*97` mailbox menu) are all in use gets a busy answer
//! that says why, and a tagged record, while another tenant's callers still
//! reach the host's media; a session given back is usable again.

mod common;

use common::{ACME, BETA, Pbx};
use pbx_e2e::{OutCall, Phone, Transport};

/// Calls `*97` from `phone` and returns the call with its final response.
async fn mailbox_menu(phone: &mut Phone) -> (OutCall, pbx_e2e::SipMsg) {
    let mut call = phone.call("*97").await.unwrap();
    let answer = phone.final_response(&call).await.unwrap();
    if answer.status() == Some(200) {
        call.answered(&answer);
        phone.ack_2xx(&call).await.unwrap();
    }
    (call, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_media_session_cap_is_refused_while_others_are_served() {
    let mut pbx = Pbx::start().await;
    // Acme may hold one host media session at once: the test is about
    // reaching the cap, not the shipped default.
    common::cli(
        &pbx.store,
        &["tenant", "limits", "acme", "--max-media-sessions", "1"],
    )
    .await;
    // With PINs set, a menu waits for keys (three tries of ten seconds)
    // rather than ending at once: it holds its session until hung up.
    for (tenant, mailbox) in [(pbx.acme, "1000"), (pbx.acme, "1001"), (pbx.beta, "1000")] {
        pbx.store
            .set_voicemail_pin(tenant, mailbox, "4826")
            .await
            .expect("PIN set");
    }
    pbx.applied().await;

    let mut first = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut second = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut other = pbx.registered(Transport::Udp, BETA, "1000").await;

    let (held, ok) = mailbox_menu(&mut first).await;
    assert_eq!(ok.status(), Some(200), "the menu answers: {}", ok.raw);

    // Acme's only session is in use: the next caller hears busy and why.
    let (_, refused) = mailbox_menu(&mut second).await;
    assert_eq!(refused.status(), Some(486), "{}", refused.raw);
    let warning = refused.header("Warning").expect("a Warning says why");
    assert!(
        warning.starts_with("399 ") && warning.contains("host media sessions"),
        "{warning}"
    );
    let reason = refused.header("Reason").expect("a Reason says why");
    assert!(reason.contains("cause=486"), "{reason}");

    // Beta is not affected by acme being full.
    let (beta_call, beta_ok) = mailbox_menu(&mut other).await;
    assert_eq!(
        beta_ok.status(),
        Some(200),
        "beta is served: {}",
        beta_ok.raw
    );

    // The first caller hangs up: acme's session is free again.
    first.in_dialog(&held, "BYE", None).await.unwrap();
    first.expect_status("BYE", 200).await.unwrap();
    let (again, again_ok) = mailbox_menu(&mut second).await;
    assert_eq!(again_ok.status(), Some(200), "{}", again_ok.raw);
    second.in_dialog(&again, "BYE", None).await.unwrap();
    second.expect_status("BYE", 200).await.unwrap();
    other.in_dialog(&beta_call, "BYE", None).await.unwrap();
    other.expect_status("BYE", 200).await.unwrap();

    // The refused call's record says why.
    pbx.stop().await;
    let cdrs = pbx
        .store
        .list_cdrs(pbx.acme, &store::CdrFilter::default())
        .await
        .expect("records");
    let tagged: Vec<_> = cdrs
        .iter()
        .filter(|c| c.tags.iter().any(|t| t == "media-sessions-full"))
        .collect();
    assert_eq!(tagged.len(), 1, "{cdrs:?}");
    assert_eq!(tagged[0].sip_code, 486);
    assert_eq!(tagged[0].caller, "1001");
}
