//! The live alert feed, `GET /api/v1/alerts/stream`.

use super::*;
use store::{Alert, Severity};

fn alert(tenant: Option<TenantId>, message: &str) -> Alert {
    Alert {
        tenant,
        severity: Severity::Warning,
        event: "fraud.burst".into(),
        message: message.into(),
        at_ms: T0,
    }
}

impl Fx {
    /// What the stream at `uri` sends within `time`, as text.
    async fn read_stream(&self, uri: &str, token: &str, time: std::time::Duration) -> String {
        let req = request(Method::GET, uri, Some(token), None, "203.0.113.9");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{uri}"
        );
        String::from_utf8(glimpse(resp.into_body(), time).await).expect("UTF-8")
    }
}

#[tokio::test]
async fn a_provider_sees_every_tenant_and_a_tenant_admin_only_its_own() {
    let fx = Fx::new().await;
    for (tenant, message) in [
        (Some(fx.a), "of-a"),
        (Some(fx.b), "of-b"),
        (None, "provider-wide"),
    ] {
        fx.store
            .insert_alert(&alert(tenant, message))
            .await
            .expect("alert");
    }
    let short = std::time::Duration::from_millis(300);
    let root = fx.session(&fx.root);
    let all = fx
        .read_stream("/api/v1/alerts/stream?after_id=0", &root, short)
        .await;
    for m in [
        "of-a",
        "of-b",
        "provider-wide",
        "event: alert",
        "retry: 3000",
    ] {
        assert!(all.contains(m), "{m} missing from {all}");
    }
    let narrowed = format!("/api/v1/alerts/stream?after_id=0&tenant={}", fx.b);
    let b_only = fx.read_stream(&narrowed, &root, short).await;
    assert!(
        b_only.contains("of-b") && !b_only.contains("of-a"),
        "{b_only}"
    );
    // A tenant admin cannot widen or move the scope with ?tenant.
    let admin = fx.session(&fx.admin_a);
    let own = fx.read_stream(&narrowed, &admin, short).await;
    assert!(own.contains("of-a"), "{own}");
    assert!(
        !own.contains("of-b") && !own.contains("provider-wide"),
        "{own}"
    );
    // Last-Event-ID resumes after the alerts already seen.
    let first_id = all
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id")
        .to_owned();
    let mut req = request(
        Method::GET,
        "/api/v1/alerts/stream",
        Some(&root),
        None,
        "203.0.113.9",
    );
    req.headers_mut()
        .insert("last-event-id", first_id.parse().expect("header"));
    let resp = fx.app.clone().oneshot(req).await.expect("infallible");
    let resumed = String::from_utf8(glimpse(resp.into_body(), short).await).expect("UTF-8");
    assert!(
        !resumed.contains("of-a") && resumed.contains("of-b"),
        "{resumed}"
    );
}

#[tokio::test]
async fn alerts_raised_while_a_stream_is_open_arrive_within_seconds() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let store = fx.store.clone();
    let (a, b) = (fx.a, fx.b);
    let raise = tokio::spawn(async move {
        // after the poller has started and noted the newest alert
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        for (tenant, message) in [(b, "live-b"), (a, "<b>live-a</b>")] {
            store
                .insert_alert(&alert(Some(tenant), message))
                .await
                .expect("alert");
        }
    });
    let got = fx
        .read_stream(
            "/api/v1/alerts/stream",
            &admin,
            std::time::Duration::from_millis(3_500),
        )
        .await;
    raise.await.expect("raised");
    assert!(got.contains(r#""message":"<b>live-a</b>""#), "{got}");
    assert!(!got.contains("live-b"), "{got}");
}

#[tokio::test]
async fn streams_are_capped_per_tenant() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let mut open = Vec::new();
    for _ in 0..crate::alert_feed::STREAMS_PER_KEY {
        let req = request(
            Method::GET,
            "/api/v1/alerts/stream",
            Some(&admin),
            None,
            "203.0.113.9",
        );
        let resp = fx.app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let (s, v) = fx
        .call(Method::GET, "/api/v1/alerts/stream", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code(&v), "too_many_streams");
    // Another tenant's admin is not held back, and a closed stream gives
    // its place back.
    let other = fx.session(&fx.admin_b);
    let (s, _) = fx
        .call(Method::GET, "/api/v1/alerts/stream", Some(&other), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    open.pop();
    let (s, _) = fx
        .call(Method::GET, "/api/v1/alerts/stream", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
}
