//! Users and what may be granted: narrowed tokens trying every route that
//! creates, changes or removes a principal or a credential; names that pose as
//! others; conflicts that would reveal other tenants' usernames.

use super::*;

/// Every route that creates, changes or removes a principal or a credential,
/// with a body that would succeed for a caller holding every right.
fn granting_routes(fx: &Fx) -> Vec<(Method, String, Option<Value>)> {
    let t = fx.a;
    vec![
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/users"),
            Some(json!({"username":"mallory","password":PW,"role":"tenant-admin"})),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/users"),
            Some(json!({"username":"mallory2","password":PW,"role":"user","extension":"100"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{t}/users/bob"),
            Some(json!({"role":"tenant-admin"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{t}/users/admin-a"),
            Some(json!({"password":"Took-0ver-Passphrase"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{t}/users/admin-a"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/tokens"),
            Some(json!({"name":"wider","scopes":["extensions:read"]})),
        ),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            Some(json!({"username":"mallory3","password":PW,"role":"provider-admin"})),
        ),
        (Method::DELETE, "/api/v1/users/ops".to_owned(), None),
        (Method::POST, "/api/v1/auth/totp/enroll".to_owned(), None),
        (
            Method::POST,
            "/api/v1/auth/password".to_owned(),
            Some(json!({"current_password":PW,"new_password":"Took-0ver-Passphrase"})),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/extensions"),
            Some(json!({"number":"666"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{t}/extensions/100/password"),
            Some(json!({})),
        ),
    ]
}

#[tokio::test]
async fn narrowed_tokens_cannot_grant_more_than_they_hold() {
    let fx = Fx::new().await;
    let users_write = vec!["users:write".to_string()];
    let (narrow, _) = fx.api_token(fx.a, &users_write, 3600).await;
    let mut failures = Vec::new();
    for (m, path, body) in granting_routes(&fx) {
        let (s, v) = fx.call(m.clone(), &path, Some(&narrow), body).await;
        if s.is_success() {
            failures.push(format!("{m} {path}: {s} {v}"));
        }
    }
    assert!(failures.is_empty(), "escalations:\n{}", failures.join("\n"));
    // The tenant's admin and users are all still there, unchanged.
    let names: Vec<String> = fx
        .store
        .list_users(fx.a)
        .await
        .expect("users")
        .into_iter()
        .map(|u| format!("{}:{}", u.username, u.role.as_str()))
        .collect();
    assert_eq!(names, ["admin-a:tenant-admin", "alice-a:user", "bob:user"]);

    // With exactly the rights of a `user` (and users:write) a token may make one.
    let enough: Vec<String> = [
        "users:write",
        "cdrs:read",
        "extensions:write",
        "voicemail:read",
        "voicemail:write",
    ]
    .map(String::from)
    .to_vec();
    let (wide, _) = fx.api_token(fx.a, &enough, 3600).await;
    let (s, v) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/users", fx.a),
            Some(&wide),
            Some(json!({"username":"carol","password":PW,"role":"user","extension":"100"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // ... but still no tenant admin, and no token wider than itself.
    let (s, v) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/users", fx.a),
            Some(&wide),
            Some(json!({"username":"dave","password":PW,"role":"tenant-admin"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    // A tenant admin's session issues tokens; a user's session cannot make admins.
    let admin = fx.session(&fx.admin_a);
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/tokens", fx.a),
            Some(&admin),
            Some(json!({"name":"ok","scopes":["extensions:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn names_cannot_pose_as_others_and_conflicts_reveal_nothing() {
    let fx = Fx::new().await;
    let admin_b = fx.session(&fx.admin_b);
    let uri = format!("/api/v1/tenants/{}/users", fx.b);
    for name in [
        "root\u{200b}",
        "ro\u{202e}ot",
        "root\u{3164}",
        "r\u{0}oot",
        "",
    ] {
        let (s, v) = fx
            .call(
                Method::POST,
                &uri,
                Some(&admin_b),
                Some(json!({"username": name, "password": PW, "role": "user"})),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "invalid"),
            "{name:?}"
        );
    }
    let (s, _) = fx
        .call(
            Method::POST,
            &uri,
            Some(&admin_b),
            Some(json!({"username": "x".repeat(65), "password": PW, "role": "user"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // `ｂｏｂ` is `bob` once normalised: taken (in tenant A). The answer is the
    // same as for a name taken in one's own tenant, and names nobody.
    let (s_other, v_other) = fx
        .call(
            Method::POST,
            &uri,
            Some(&admin_b),
            Some(json!({"username": "ｂｏｂ", "password": PW, "role": "user"})),
        )
        .await;
    let (s_own, v_own) = fx
        .call(
            Method::POST,
            &uri,
            Some(&admin_b),
            Some(json!({"username": "alice-b", "password": PW, "role": "user"})),
        )
        .await;
    assert_eq!(s_other, StatusCode::CONFLICT);
    assert_eq!((s_other, &v_other), (s_own, &v_own));
    assert!(!v_other.to_string().contains("bob"), "{v_other}");
    // Token names are held to the same rule.
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/tokens", fx.b),
            Some(&admin_b),
            Some(json!({"name":"billing\u{200b}","scopes":["cdrs:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let root = fx.session(&fx.root);
    let (s, _) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name":"a\u{2060}","domain":"a2.example"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
