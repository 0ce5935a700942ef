//! Rate limits per token and per address.

use super::*;

#[tokio::test]
async fn rate_limits_per_token_and_per_address() {
    let config = ApiConfig {
        rate_per_token_per_min: 3,
        rate_per_address_per_min: 10,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("s")).await;
    let t = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    for _ in 0..3 {
        assert_eq!(
            fx.call(Method::GET, &uri, Some(&t), None).await.0,
            StatusCode::OK
        );
    }
    let req = request(Method::GET, &uri, Some(&t), None, "203.0.113.9");
    let (s, headers, body) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(code(&v), "rate_limited");
    // another token from the same address still works, until the address limit
    let other = fx.session(&fx.admin_a);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&other), None).await.0,
        StatusCode::OK
    );
    let mut limited = 0;
    for _ in 0..10 {
        let (s, _, _) = fx
            .send(request(Method::GET, "/healthz", None, None, "203.0.113.9"))
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "5 requests used, 5 more allowed, 5 refused");
    let (s, _, _) = fx
        .send(request(Method::GET, "/healthz", None, None, "203.0.113.10"))
        .await;
    assert_eq!(s, StatusCode::OK);
    fx.advance_ms(60_000);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&t), None).await.0,
        StatusCode::OK
    );
}
