//! Extensions: generated SIP passwords.

use super::*;

#[tokio::test]
async fn generated_sip_passwords_are_shown_once() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let base = format!("/api/v1/tenants/{}/extensions", fx.a);
    let (s, v) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"300"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pw = v["password"].as_str().expect("generated").to_owned();
    assert_eq!(pw.len(), 20);
    let (s, v) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"301","password":"Chosen-sip-pass-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(v.get("password").is_none());
    let (s, _) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"302","password":"short"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, list) = fx.call(Method::GET, &base, Some(&admin), None).await;
    assert!(!list.to_string().contains(&pw));
    let log = fx.store.list_audit(None, None, 100).await.expect("audit");
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(&pw) && !text.contains("Chosen-sip-pass-1"));
    let entry = log
        .iter()
        .find(|e| e.record.action == "extension.create")
        .expect("audited");
    assert_eq!(entry.record.actor, "admin-a");
    assert_eq!(entry.record.role, "tenant-admin");
    assert_eq!(entry.record.tenant, Some(fx.a));
    assert_eq!(entry.record.source, "203.0.113.9");
}
