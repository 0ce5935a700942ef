//! Browser phones: SIP over secure WebSocket (RFC 7118) with short-lived
//! credentials from the admin API.
//!
//! The server runs the shipped defaults plus what these tests are about: a
//! `--sip-wss` listener (with its certificate, as `--tls-cert`/`--tls-key`
//! give it) and the admin API on plain HTTP on loopback.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{ACME, Pbx, ROOT_PASSWORD, http, next_invite, password, tenant_admin_token};
use pbx_e2e::{Phone, Transport, ws_connect};

/// The provisioned tenants served with the API and a secure WebSocket
/// listener; returns the server, its WebSocket address and the certificate.
async fn serve() -> (Pbx, SocketAddr, PathBuf) {
    let mut pbx = Pbx::provisioned_with_root().await;
    let (opts, cert) = pbx.options_with_wss();
    pbx.serve_with(opts).await;
    let wss = pbx.handle.as_ref().expect("running").wss_addrs()[0];
    (pbx, wss, cert)
}

/// Short-lived credentials for `number` of acme, as `token` gets them.
async fn credentials(pbx: &Pbx, token: &str, number: &str) -> (u16, serde_json::Value) {
    let path = format!(
        "/api/v1/tenants/{}/extensions/{number}/browser-credentials",
        pbx.acme.0
    );
    http(pbx.api(), "POST", &path, Some(token), None).await
}

#[tokio::test]
async fn a_browser_phone_registers_with_short_lived_credentials_and_calls_both_ways() {
    let (pbx, wss, cert) = serve().await;
    let admin = tenant_admin_token(&pbx, "acme").await;
    let (status, creds) = credentials(&pbx, &admin, "1000").await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["number"], "1000");
    assert_eq!(creds["domain"], ACME);
    assert_eq!(creds["servers"][0], format!("wss://{wss}"));
    let username = creds["username"].as_str().expect("username").to_owned();
    assert!(
        username.starts_with("webrtc.") && username.ends_with(".1000"),
        "{username}"
    );
    assert_ne!(
        creds["password"],
        password(ACME, "1000"),
        "never the SIP password"
    );

    let mut browser = Phone::new_wss(
        wss,
        &cert,
        "1000",
        creds["password"].as_str().expect("password"),
        ACME,
    )
    .await
    .expect("WebSocket phone");
    browser.auth_user = Some(username.clone());
    let ok = browser.register(300).await.expect("REGISTER answered");
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);
    assert!(
        ok.header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/WSS")),
        "{}",
        ok.raw
    );

    // The browser calls a desk phone.
    let mut desk = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut call = browser.call("1001").await.expect("INVITE");
    let invite = next_invite(&mut desk, Duration::from_secs(5))
        .await
        .expect("the desk phone rings");
    assert!(
        invite
            .header("From")
            .is_some_and(|f| f.contains("sip:1000@")),
        "{}",
        invite.raw
    );
    desk.respond(&invite, 200, "OK", Some("desk"), true)
        .await
        .expect("answer");
    let answered = browser.final_response(&call).await.expect("200");
    assert_eq!(answered.status(), Some(200), "{}", answered.raw);
    call.answered(&answered);
    browser.ack_2xx(&call).await.expect("ACK");
    browser.in_dialog(&call, "BYE", None).await.expect("BYE");
    let bye = desk
        .expect_request("BYE")
        .await
        .expect("BYE reaches the desk");
    desk.respond(&bye, 200, "OK", None, false)
        .await
        .expect("200");
    browser
        .expect_status("BYE", 200)
        .await
        .expect("BYE answered");

    // The desk phone calls the browser: the INVITE comes over the browser's
    // own connection, with the PBX's WSS Via on top.
    let _ringing = desk.call("1000").await.expect("INVITE");
    let incoming = next_invite(&mut browser, Duration::from_secs(5))
        .await
        .expect("the browser rings");
    assert!(
        incoming
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/WSS")),
        "{}",
        incoming.raw
    );
    browser
        .respond(&incoming, 486, "Busy Here", Some("b"), false)
        .await
        .expect("busy");
    let busy = desk.expect_final("INVITE").await.expect("final");
    assert_eq!(busy.status(), Some(486), "{}", busy.raw);
}

#[tokio::test]
async fn short_lived_credentials_work_only_over_websocket_and_for_their_own_extension() {
    let (pbx, wss, cert) = serve().await;
    let admin = tenant_admin_token(&pbx, "acme").await;
    let (_, creds) = credentials(&pbx, &admin, "1000").await;
    let username = creds["username"].as_str().expect("username").to_owned();
    let secret = creds["password"].as_str().expect("password").to_owned();

    // Over UDP the same username and password are an unknown user.
    let mut udp = Phone::new(Transport::Udp, "127.0.0.1", pbx.udp, "1000", &secret, ACME)
        .await
        .expect("phone");
    udp.auth_user = Some(username.clone());
    let refused = udp.register(300).await.expect("answered");
    assert_eq!(refused.status(), Some(401), "{}", refused.raw);

    // Bent to another extension, they fail.
    let mut bent = Phone::new_wss(wss, &cert, "1001", &secret, ACME)
        .await
        .expect("phone");
    bent.auth_user = Some(username.replace(".1000", ".1001"));
    let refused = bent.register(300).await.expect("answered");
    assert_eq!(refused.status(), Some(401), "{}", refused.raw);

    // A user gets credentials for their own extension and "not found" for
    // any other.
    pbx.add_acme_user(&admin, "alice", "1001").await;
    let (s, v) = http(
        pbx.api(),
        "POST",
        "/api/v1/auth/login",
        None,
        Some(serde_json::json!({ "username": "alice", "password": ROOT_PASSWORD })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let alice = v["token"].as_str().expect("token").to_owned();
    let (s, own) = credentials(&pbx, &alice, "1001").await;
    assert_eq!(s, 200, "{own}");
    assert!(
        own["username"]
            .as_str()
            .is_some_and(|u| u.ends_with(".1001"))
    );
    let (s, _) = credentials(&pbx, &alice, "1000").await;
    assert_eq!(s, 404);
    let (s, _) = credentials(&pbx, &admin, "4242").await;
    assert_eq!(s, 404, "an unknown extension");

    // A WebSocket that does not ask for the sip subprotocol is refused.
    assert!(ws_connect(wss, &cert, None).await.is_err());
    assert!(ws_connect(wss, &cert, Some("chat")).await.is_err());
}
