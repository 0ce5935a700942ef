//! Token attacks: forged, expired, revoked tokens and deleted principals.

use super::*;

#[tokio::test]
async fn token_attacks_are_rejected() {
    let fx = Fx::new().await;
    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    let good = fx.session(&fx.admin_a);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&good), None).await.0,
        StatusCode::OK
    );

    let kid = fx.state.inner.keys.current_kid().to_owned();
    let claims = serde_json::to_value(fx.claims_for(&fx.admin_a)).expect("claims");
    let mut attacks: Vec<(&str, String)> = Vec::new();

    // alg none, with and without our kid
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"JWT","kid":kid})),
        b64(&claims)
    );
    attacks.push(("alg none", none));
    attacks.push((
        "alg none, no kid",
        format!("{}.{}.", b64(&json!({"alg":"none"})), b64(&claims)),
    ));
    // HS256 "signed" with the public key material as secret, naming our kid
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(kid.as_bytes()),
    )
    .expect("hs256");
    attacks.push(("alg HS256", hs));
    // another key, claiming our kid; and another key with its own kid
    let other = KeyRing::in_memory(T0).expect("other");
    let forged = other
        .sign_as(&fx.claims_for(&fx.admin_a), &kid)
        .expect("forge");
    attacks.push(("another key, our kid", forged));
    attacks.push((
        "another key",
        other.sign(&fx.claims_for(&fx.admin_a)).expect("sign"),
    ));
    // edited payload: become provider admin
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims.clone();
    evil["role"] = json!("provider-admin");
    evil["tenant"] = Value::Null;
    attacks.push((
        "edited payload",
        format!("{}.{}.{}", parts[0], b64(&evil), parts[2]),
    ));
    // expired, not yet valid, wrong audience, wrong issuer
    let mut c = fx.claims_for(&fx.admin_a);
    c.exp = fx.now_s() - 1;
    attacks.push(("expired", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.nbf = fx.now_s() + 3600;
    attacks.push(("not yet valid", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.aud = "someone-else".into();
    attacks.push(("wrong aud", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.iss = "evil".into();
    attacks.push(("wrong iss", fx.state.inner.keys.sign(&c).expect("sign")));
    // a session token whose role claim disagrees with the user row
    let mut c = fx.claims_for(&fx.alice_a);
    c.role = UserRole::TenantAdmin;
    attacks.push(("role upgrade", fx.state.inner.keys.sign(&c).expect("sign")));
    // an API token that was never stored
    let mut c = fx.claims_for(&fx.admin_a);
    c.typ = TokenKind::Api;
    attacks.push((
        "unstored api token",
        fx.state.inner.keys.sign(&c).expect("sign"),
    ));
    attacks.push(("garbage", "not.a.jwt".into()));

    for (name, token) in &attacks {
        let (s, v) = fx.call(Method::GET, &uri, Some(token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(code(&v), "unauthorized", "{name}");
    }

    // time passes: the good token expires
    fx.advance_ms(601_000);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&good), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoked_tokens_and_deleted_users_are_rejected() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let base = format!("/api/v1/tenants/{}", fx.a);
    let (s, v) = fx
        .call(
            Method::POST,
            &format!("{base}/tokens"),
            Some(&admin),
            Some(json!({"name":"billing","scopes":["cdrs:read"],"expires_in_s":600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = v["token"].as_str().expect("token").to_owned();
    let id = v["id"].as_i64().expect("id");
    // stored hashed, never in clear; listing does not show it
    let stored = fx.store.list_api_tokens(fx.a).await.expect("list");
    assert!(
        stored
            .iter()
            .all(|t| t.token_hash != token && t.token_hash.len() == 64)
    );
    let (_, listed) = fx
        .call(Method::GET, &format!("{base}/tokens"), Some(&admin), None)
        .await;
    assert!(!listed.to_string().contains(&token));
    assert!(!listed.to_string().contains("token_hash"));

    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&token), None)
            .await
            .0,
        StatusCode::OK
    );
    // scoped: cdrs:read does not allow extensions
    let (s, v) = fx
        .call(
            Method::GET,
            &format!("{base}/extensions"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    // unknown scopes cannot be granted
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("{base}/tokens"),
            Some(&admin),
            Some(json!({"name":"x","scopes":["tokens:write"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // another tenant's admin cannot revoke tenant A's tokens
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/tokens/{}", fx.api_a_id),
            Some(&fx.session(&fx.admin_b)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // expiry of API tokens follows the clock
    let scopes = vec!["cdrs:read".to_string()];
    let (short, _) = fx.api_token(fx.a, &scopes, 60).await;
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&short), None)
            .await
            .0,
        StatusCode::OK
    );
    fx.advance_ms(61_000);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&short), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // deleted user
    let bob = fx.session(&fx.bob_a);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&bob), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/users/bob"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&bob), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
