//! Extensions: generated SIP passwords, call forwarding and do-not-disturb.

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

#[tokio::test]
async fn forwarding_is_set_by_the_tenants_admins_checked_and_kept_apart() {
    let fx = Fx::new().await;
    let admin_a = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/extensions/100/forwarding", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"always": null, "busy": null, "no_answer": null, "no_answer_secs": 20, "dnd": false})
    );
    let set = json!({
        "always": null,
        "busy": "sales",
        "no_answer": "+12125550100",
        "no_answer_secs": 15,
        "dnd": true
    });
    let (s, v) = fx
        .call(Method::PUT, &uri, Some(&admin_a), Some(set.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, set);
    let (_, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(v, set);
    // An integration token with the extensions scopes reads it too.
    let (s, v) = fx.call(Method::GET, &uri, Some(&fx.api_a), None).await;
    assert_eq!((s, &v), (StatusCode::OK, &set));

    // Bad bodies: 400 with a message saying what is wrong; nothing changes.
    for (bad, says) in [
        (json!({"always": "sip:evil@example.com"}), "always forward"),
        (json!({"busy": "1002@example.com"}), "busy forward"),
        (json!({"no_answer": "100"}), "cannot forward to itself"),
        (json!({"no_answer_secs": 0}), "no_answer_secs"),
        (json!({"no_answer_secs": 100000}), "no_answer_secs"),
        (json!({"always": "1".repeat(33)}), "always forward"),
        (json!({"forward_to": "101"}), "unknown field"),
        (json!({"dnd": "yes"}), "dnd"),
    ] {
        let (s, v) = fx
            .call(Method::PUT, &uri, Some(&admin_a), Some(bad.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{bad}: {message}");
    }
    let (_, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(v, set, "a refused body changes nothing");

    // An extension the tenant does not have: 404, for reads and writes.
    let missing = format!("/api/v1/tenants/{}/extensions/999/forwarding", fx.a);
    let (s, _) = fx.call(Method::GET, &missing, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = fx
        .call(
            Method::PUT,
            &missing,
            Some(&admin_a),
            Some(json!({"dnd": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Tenant B's admin and token can neither read nor write A's extension
    // 100 (B has a 100 of its own), and cannot tell it exists.
    let admin_b = fx.session(&fx.admin_b);
    for token in [&admin_b, &fx.api_b] {
        let (s, v) = fx.call(Method::GET, &uri, Some(token), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, _) = fx
            .call(
                Method::PUT,
                &uri,
                Some(token),
                Some(json!({"always": "+15550000"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(v, set, "B changed nothing of A's");
    let b_uri = format!("/api/v1/tenants/{}/extensions/100/forwarding", fx.b);
    let (s, v) = fx.call(Method::GET, &b_uri, Some(&admin_b), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["dnd"], false, "A's settings are not B's");
    // A user (not an admin) of A cannot change it either.
    let alice = fx.session(&fx.alice_a);
    let (s, _) = fx
        .call(Method::PUT, &uri, Some(&alice), Some(json!({"dnd": false})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let audited = fx.audited("extension.forwarding").await;
    assert_eq!(audited.len(), 1, "one accepted change, one entry");
    assert_eq!(audited[0].actor, "admin-a");
    assert_eq!(audited[0].tenant, Some(fx.a));
    assert!(
        audited[0].detail.contains("+12125550100"),
        "{}",
        audited[0].detail
    );
}
