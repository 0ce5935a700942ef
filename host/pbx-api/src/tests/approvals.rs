//! Destination approvals.

use super::*;

#[tokio::test]
async fn approvals_are_listed_and_decided_by_the_provider_only() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let admin_a = fx.session(&fx.admin_a);
    let uk = fx
        .store
        .request_approval(fx.b, &ApprovalTarget::Prefix("44".into()), None, T0 + 1)
        .await
        .expect("request")
        .id;

    let (s, v) = fx
        .call(Method::GET, "/api/v1/approvals", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<i64> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    assert_eq!(ids, [fx.approval_a, uk]);
    let uri = format!("/api/v1/approvals?tenant={}", fx.b);
    let (_, v) = fx.call(Method::GET, &uri, Some(&root), None).await;
    assert_eq!(v.as_array().expect("array").len(), 1);
    assert_eq!(v[0]["kind"], "prefix");
    assert_eq!(v[0]["target"], "44");

    // a tenant admin reads their own tenant's requests, not another's
    let own = format!("/api/v1/tenants/{}/approvals", fx.a);
    let (s, v) = fx.call(Method::GET, &own, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["id"], json!(fx.approval_a));
    assert_eq!(v[0]["status"], "pending");
    let other = format!("/api/v1/tenants/{}/approvals", fx.b);
    let (s, _) = fx.call(Method::GET, &other, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // nor can they (or their integration token) grant it
    let grant = format!("/api/v1/approvals/{}/grant", fx.approval_a);
    for tok in [&admin_a, &fx.api_a] {
        let (s, _) = fx.call(Method::POST, &grant, Some(tok), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    assert!(fx.audited("approval.grant").await.is_empty());
    assert!(
        !fx.store
            .approved(fx.a, "international", "442079460018")
            .await
            .expect("approved")
    );

    let (s, v) = fx.call(Method::POST, &grant, Some(&root), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "granted");
    assert_eq!(v["decided_by"], "root");
    assert_eq!(v["decided_ms"], json!(T0));
    assert!(
        fx.store
            .approved(fx.a, "international", "442079460018")
            .await
            .expect("approved")
    );
    let entries = fx.audited("approval.grant").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "root");
    assert_eq!(entries[0].tenant, Some(fx.a));
    assert!(entries[0].detail.contains("international"));
    // decided once only
    let (s, _) = fx.call(Method::POST, &grant, Some(&root), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // naming the wrong tenant finds nothing; a malformed body is refused
    let deny = format!("/api/v1/approvals/{uk}/deny");
    let wrong = json!({ "tenant": fx.a.0 });
    let (s, _) = fx.call(Method::POST, &deny, Some(&root), Some(wrong)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = fx
        .call(Method::POST, &deny, Some(&root), Some(json!({"who": 1})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let right = json!({ "tenant": fx.b.0 });
    let (s, v) = fx.call(Method::POST, &deny, Some(&root), Some(right)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "denied");
    let denied = fx.audited("approval.deny").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].tenant, Some(fx.b));
    let listed = fx.store.list_approvals(fx.b).await.expect("list");
    assert_eq!(listed[0].status, ApprovalStatus::Denied);
    let (_, v) = fx
        .call(Method::GET, "/api/v1/approvals", Some(&root), None)
        .await;
    assert_eq!(v, json!([]));
}
