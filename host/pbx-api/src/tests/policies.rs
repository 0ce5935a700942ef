//! Provider policies.

use super::*;

#[tokio::test]
async fn policies_are_uploaded_listed_and_removed_by_the_provider() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let uri = format!("/api/v1/policies?name=restrict&tenant={}", fx.a);
    let (s, v) = fx.upload(&uri, &root, b"\0asm-policy").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "restrict");
    assert_eq!(v["tenant"], json!(fx.a.0));
    let entries = fx.audited("policy.install").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "root");
    assert_eq!(entries[0].tenant, Some(fx.a));
    assert!(entries[0].detail.contains("\"bytes\":11"), "{entries:?}");

    let (s, v) = fx
        .call(Method::GET, "/api/v1/policies", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["fraud", "restrict"]);

    // refused: garbage, an empty body, no name, a tenant that does not exist
    let (s, v) = fx
        .upload("/api/v1/policies?name=junk", &root, b"not wasm")
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid"));
    let (s, v) = fx.upload("/api/v1/policies?name=junk", &root, b"").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let (s, v) = fx.upload("/api/v1/policies", &root, b"\0asm-x").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_query"));
    let (s, _) = fx
        .upload("/api/v1/policies?name=x&tenant=999", &root, b"\0asm-x")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(fx.audited("policy.install").await.len(), 1);

    // tenant admins may neither list nor upload
    let admin_a = fx.session(&fx.admin_a);
    let (s, _) = fx
        .call(Method::GET, "/api/v1/policies", Some(&admin_a), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = fx.upload(&uri, &admin_a, b"\0asm-policy").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _) = fx
        .call(
            Method::DELETE,
            "/api/v1/policies/restrict",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let removed = fx.audited("policy.remove").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].tenant, Some(fx.a));
    let (s, v) = fx
        .call(
            Method::DELETE,
            "/api/v1/policies/restrict",
            Some(&root),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}
