//! Errors are JSON with stable codes.

use super::*;

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let config = ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("s")).await;
    let (s, v) = fx
        .call(Method::GET, "/api/v1/nothing-here", None, None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = fx.call(Method::PATCH, "/healthz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let root = fx.session(&fx.root);
    let big = json!({"name": "x".repeat(4096), "domain": "d.example"});
    let (s, v) = fx
        .call(Method::POST, "/api/v1/tenants", Some(&root), Some(big))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name": 5})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name":"a","domain":"x.example"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    // plugins may be larger than JSON bodies
    let uri = format!("/api/v1/tenants/{}/plugins", fx.a);
    let mut wasm = b"\0asm".to_vec();
    wasm.resize(64 * 1024, 0);
    let (s, _, _) = fx
        .send(request(
            Method::POST,
            &uri,
            Some(&root),
            Some(wasm),
            "203.0.113.9",
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // metrics count responses
    let (_, _, body) = fx
        .send(request(Method::GET, "/metrics", None, None, "203.0.113.9"))
        .await;
    let text = String::from_utf8(body).expect("utf8");
    assert!(
        text.contains("pbx_api_responses_total{class=\"4xx\"} 5"),
        "{text}"
    );
}

#[tokio::test]
async fn secret_bearing_responses_are_never_cached() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let root = fx.session(&fx.root);
    let t = fx.a;
    let cases: Vec<(Method, String, Option<&str>, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/auth/login".into(),
            None,
            Some(json!({"username":"admin-a","password":PW})),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/tokens"),
            Some(&admin),
            Some(json!({"name":"n","scopes":["cdrs:read"]})),
        ),
        (
            Method::POST,
            "/api/v1/auth/totp/enroll".into(),
            Some(&root),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/extensions"),
            Some(&admin),
            Some(json!({"number":"555"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{t}/extensions/555/password"),
            Some(&admin),
            Some(json!({})),
        ),
        (Method::GET, "/api/v1/tenants".into(), None, None),
    ];
    for (m, path, token, body) in cases {
        let req = request(
            m.clone(),
            &path,
            token,
            body.map(|b| b.to_string().into_bytes()),
            "203.0.113.9",
        );
        let (s, headers, _) = fx.send(req).await;
        assert!(s.as_u16() < 500, "{m} {path}: {s}");
        assert_eq!(
            headers
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{m} {path}"
        );
    }
}
