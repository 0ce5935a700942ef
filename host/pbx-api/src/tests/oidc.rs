//! Tokens of an external OIDC issuer.

use super::*;

#[tokio::test]
async fn oidc_tokens_are_accepted_and_checked() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let raw = pair.public_key_raw();
    let jwks = json!({"keys":[{
        "kty":"EC","crv":"P-256","kid":"idp-1","alg":"ES256","use":"sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    }]});
    let config = OidcConfig {
        issuer: "https://id.example".into(),
        audience: "pbx".into(),
        jwks_file: "unused".into(),
        role_claim: "pbx_role".into(),
        tenant_claim: "org".into(),
        roles: [("pbx-admins".to_string(), UserRole::TenantAdmin)]
            .into_iter()
            .collect(),
        max_token_lifetime_s: 3600,
    };
    let oidc = Oidc::from_jwks(&config, &jwks.to_string()).expect("jwks");
    let fx = Fx::with(
        ApiConfig::default(),
        Some(oidc),
        Store::open_in_memory().await.expect("s"),
    )
    .await;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let sign = |claims: Value, kid: &str| {
        let header = jsonwebtoken::Header {
            kid: Some(kid.into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    };
    let now = fx.now_s();
    let good = json!({"iss":"https://id.example","aud":"pbx","sub":"u-1","exp":now+300,
                      "iat":now,"pbx_role":"pbx-admins","org":"a"});
    let uri_a = format!("/api/v1/tenants/{}/extensions", fx.a);
    let uri_b = format!("/api/v1/tenants/{}/extensions", fx.b);
    let t = sign(good.clone(), "idp-1");
    assert_eq!(
        fx.call(Method::GET, &uri_a, Some(&t), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fx.call(Method::GET, &uri_b, Some(&t), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fx.call(Method::GET, "/api/v1/tenants", Some(&t), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    let mut bad = Vec::new();
    for (field, value) in [
        ("aud", json!("other")),
        ("iss", json!("https://evil.example")),
        ("exp", json!(now - 1)),
        ("pbx_role", json!("unknown-group")),
        ("org", json!("no-such-tenant")),
    ] {
        let mut c = good.clone();
        c[field] = value;
        bad.push((field, sign(c, "idp-1")));
    }
    bad.push(("unknown kid", sign(good.clone(), "idp-2")));
    // Lifetimes beyond the configured maximum (an hour), or unknown ones.
    let mut long = good.clone();
    long["exp"] = json!(now + 3601);
    bad.push(("exp more than an hour after iat", sign(long, "idp-1")));
    let mut backdated = good.clone();
    backdated["iat"] = json!(now - 86_400);
    backdated["exp"] = json!(now + 60);
    bad.push(("a day-long lifetime", sign(backdated, "idp-1")));
    let mut no_iat = good.clone();
    no_iat.as_object_mut().expect("object").remove("iat");
    bad.push(("no iat", sign(no_iat, "idp-1")));
    let mut lying = good.clone();
    lying["iat"] = json!(now + 86_000);
    lying["exp"] = json!(now + 86_400);
    bad.push(("iat in the future to hide a long exp", sign(lying, "idp-1")));
    for (what, token) in bad {
        assert_eq!(
            fx.call(Method::GET, &uri_a, Some(&token), None).await.0,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
}
