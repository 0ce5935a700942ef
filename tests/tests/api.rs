//! The admin API served by the running PBX: a provider admin provisions a
//! tenant and extensions over HTTP, phones register to them over SIP, and the
//! live call between them is listed and hung up through the API.

mod common;

use std::time::Duration;

use common::{ROOT_PASSWORD, http, options_with_api};
use pbx::server::{ServerHandle, start};
use pbx_e2e::{Phone, Transport};
use serde_json::{Value, json};
use store::{Store, UserRole};

const DOMAIN: &str = "globex.example";

/// Registers `phone` once the server has applied what the API provisioned.
async fn register_when_provisioned(phone: &mut Phone, handle: &ServerHandle, store: &Store) {
    common::applied(handle, store).await;
    let r = phone.register(300).await.expect("REGISTER answered");
    assert_eq!(r.status(), Some(200), "{} registers: {}", phone.user, r.raw);
}

#[tokio::test]
async fn provision_register_call_and_hang_up_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).await.expect("open store");
    pbx_api::add_user(&store, "root", UserRole::ProviderAdmin, None, ROOT_PASSWORD)
        .await
        .expect("provider admin");

    let opts = options_with_api(dir.path());
    let reader = store.clone();
    let handle = start(opts, store).await.expect("server starts");
    let api = handle.api().expect("API is served").clone();
    assert_ne!(api.addr.port(), 0);
    assert_eq!(api.self_signed_fingerprint, None, "plain HTTP on loopback");
    let sip = handle.addrs().udp[0];
    let api = api.addr;

    // Log in as the provider admin.
    let (s, v) = http(
        api,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "username": "root", "password": ROOT_PASSWORD })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    let token = Some(token.as_str());
    let (s, _) = http(api, "GET", "/api/v1/tenants", None, None).await;
    assert_eq!(s, 401, "no token, no tenants");

    // A tenant and two extensions, one with a generated password.
    let (s, v) = http(
        api,
        "POST",
        "/api/v1/tenants",
        token,
        Some(json!({ "name": "globex", "domain": DOMAIN })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let tenant = v["id"].as_i64().expect("tenant id");
    let base = format!("/api/v1/tenants/{tenant}");
    let caller_password = "Ext-2000-pass-x9";
    let (s, v) = http(
        api,
        "POST",
        &format!("{base}/extensions"),
        token,
        Some(json!({ "number": "2000", "password": caller_password })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = http(
        api,
        "POST",
        &format!("{base}/extensions"),
        token,
        Some(json!({ "number": "2001" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let callee_password = v["password"].as_str().expect("generated password");

    // DIDs through the API, kept per tenant.
    let (s, v) = http(
        api,
        "POST",
        &format!("{base}/dids"),
        token,
        Some(json!({ "number": "+15550001" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = http(api, "GET", &format!("{base}/dids"), token, None).await;
    assert_eq!((s, v), (200, json!([{ "number": "+15550001" }])));
    let (s, _) = http(
        api,
        "DELETE",
        &format!("{base}/dids/+15550001"),
        token,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = http(
        api,
        "DELETE",
        &format!("{base}/dids/+15550001"),
        token,
        None,
    )
    .await;
    assert_eq!(s, 404, "already gone");

    // The running server sees the new extensions.
    let mut callee = Phone::new(
        Transport::Udp,
        "127.0.0.1",
        sip,
        "2001",
        callee_password,
        DOMAIN,
    )
    .await
    .expect("phone");
    let mut caller = Phone::new(
        Transport::Udp,
        "127.0.0.1",
        sip,
        "2000",
        caller_password,
        DOMAIN,
    )
    .await
    .expect("phone");
    register_when_provisioned(&mut callee, &handle, &reader).await;
    register_when_provisioned(&mut caller, &handle, &reader).await;

    // An answered call between them.
    let mut call = caller.call("2001").await.expect("INVITE");
    let invite = callee.expect_request("INVITE").await.expect("ringing");
    callee
        .respond(&invite, 200, "OK", Some("callee-tag"), true)
        .await
        .expect("answer");
    let ok = caller.expect_status("INVITE", 200).await.expect("200 OK");
    call.answered(&ok);
    caller.ack_2xx(&call).await.expect("ACK");
    callee.expect_request("ACK").await.expect("ACK relayed");

    // Listed live, then hung up through the API.
    let calls_path = format!("{base}/calls");
    let (s, v) = http(api, "GET", &calls_path, token, None).await;
    assert_eq!(s, 200, "{v}");
    let calls = v.as_array().expect("array");
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["call_id"], call.call_id.as_str());
    assert_eq!(calls[0]["caller"], "2000");
    assert_eq!(calls[0]["callee"], "2001");
    assert!(calls[0]["answered_at_ms"].is_i64(), "{v}");
    let (s, _) = http(
        api,
        "DELETE",
        "/api/v1/tenants/999/calls/whatever",
        token,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let hangup = format!("{calls_path}/{}", call.call_id);
    let (s, v) = http(api, "DELETE", &hangup, token, None).await;
    assert_eq!(s, 204, "{v}");
    let bye = caller
        .expect_request("BYE")
        .await
        .expect("BYE to the caller");
    caller
        .respond(&bye, 200, "OK", None, false)
        .await
        .expect("200 to BYE");
    let bye = callee
        .expect_request("BYE")
        .await
        .expect("BYE to the callee");
    callee
        .respond(&bye, 200, "OK", None, false)
        .await
        .expect("200 to BYE");
    let (s, v) = http(api, "GET", &calls_path, token, None).await;
    assert_eq!((s, v), (200, json!([])));
    let (s, _) = http(api, "DELETE", &hangup, token, None).await;
    assert_eq!(s, 404, "a call ends once");

    // Its record, written behind the SIP path, shows up in the API.
    let cdrs_path = format!("{base}/cdrs");
    let mut records = Value::Null;
    for _ in 0..100 {
        let (s, v) = http(api, "GET", &cdrs_path, token, None).await;
        assert_eq!(s, 200, "{v}");
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            records = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = records.as_array().expect("a call record").clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["caller"], "2000");
    assert_eq!(records[0]["callee"], "2001");
    assert_eq!(records[0]["hangup_by"], "system");
    assert_eq!(records[0]["caller_call_id"], call.call_id.as_str());

    handle.shutdown().await.expect("clean shutdown");
}

/// A dial plan that fails every call is quarantined after five failures; the
/// tenant's admin sees why through the API and lifts it, and the next call
/// runs the plan again.
#[tokio::test]
async fn a_quarantined_dial_plan_is_shown_and_lifted_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).await.expect("open store");
    let tenant = store.add_tenant("globex", DOMAIN).await.expect("tenant").id;
    let password = "Ext-2000-pass-x9";
    pbx_api::add_user(
        &store,
        "boss",
        UserRole::TenantAdmin,
        Some("globex"),
        ROOT_PASSWORD,
    )
    .await
    .expect("tenant admin");
    store
        .add_extension(tenant, "2000", password)
        .await
        .expect("extension");
    let opts = options_with_api(dir.path());
    let reader = store.clone();
    let handle = start(opts, store).await.expect("server starts");
    let api = handle.api().expect("API is served").addr;
    let sip = handle.addrs().udp[0];
    let (s, v) = http(
        api,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "username": "boss", "password": ROOT_PASSWORD })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    let token = Some(token.as_str());

    reader
        .install_dialplan(tenant, pbx_plugin::shipped::examples::SPIN, 1)
        .await
        .expect("spinning dial plan");
    let mut phone = Phone::new(Transport::Udp, "127.0.0.1", sip, "2000", password, DOMAIN)
        .await
        .expect("phone");
    register_when_provisioned(&mut phone, &handle, &reader).await;

    let quarantine = format!("/api/v1/tenants/{tenant}/plugins/quarantine");
    let mut failed = 0;
    let listed = loop {
        let call = phone.call("2999").await.expect("INVITE");
        let r = phone.final_response(&call).await.expect("final response");
        if r.status() == Some(500) {
            assert!(r.start.contains("Dial Plan Timeout"), "{}", r.start);
            failed += 1;
        }
        let (s, v) = http(api, "GET", &quarantine, token, None).await;
        assert_eq!(s, 200, "{v}");
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(failed < 20, "no quarantine after {failed} failed calls");
    };
    assert_eq!(failed, 5, "quarantined on the fifth failure");
    assert_eq!(listed[0]["plugin"], "dialplan", "{listed}");
    assert_eq!(listed[0]["provider_owned"], false, "{listed}");
    assert!(
        listed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("deadline")),
        "{listed}"
    );
    // While quarantined, the shipped default plan answers (no such extension).
    let call = phone.call("2999").await.expect("INVITE");
    let r = phone.final_response(&call).await.expect("final response");
    assert_eq!(r.status(), Some(404), "{}", r.start);

    let hash = listed[0]["hash"].as_str().expect("hash");
    let (s, v) = http(api, "DELETE", &format!("{quarantine}/{hash}"), token, None).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = http(api, "GET", &quarantine, token, None).await;
    assert_eq!((s, v), (200, json!([])));
    // The plan runs again (and fails again).
    let call = phone.call("2999").await.expect("INVITE");
    let r = phone.final_response(&call).await.expect("final response");
    assert_eq!(r.status(), Some(500), "{}", r.start);

    handle.shutdown().await.expect("clean shutdown");
}
