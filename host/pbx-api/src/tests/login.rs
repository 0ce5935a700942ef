//! Login, TOTP enrollment, backoff and lockout, the password policy.

use super::*;

#[tokio::test]
async fn totp_enrollment_and_login() {
    let config = ApiConfig {
        require_totp_for_provider_admins: true,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("store")).await;
    // without TOTP, a provider admin's login only allows enrollment
    let (s, v) = login(&fx, "root", PW, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["totp_enrollment_required"], true);
    let limited = v["token"].as_str().expect("token").to_owned();
    let (s, v) = fx
        .call(Method::GET, "/api/v1/tenants", Some(&limited), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    // tenant admins are not forced
    let (_, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(v["totp_enrollment_required"], false);

    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/enroll",
            Some(&limited),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(
        v["otpauth_url"]
            .as_str()
            .expect("url")
            .starts_with("otpauth://totp/")
    );
    let generator = crate::routes::totp_for(&secret, "root").expect("totp");
    let wrong = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Some(&limited),
            Some(json!({"code":"000000"})),
        )
        .await;
    assert_eq!(code(&wrong.1), "invalid_totp");
    let code_now = generator
        .generate(u64::try_from(fx.now_s()).expect("time"))
        .to_string();
    let (s, _) = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Some(&limited),
            Some(json!({"code": code_now})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // from now on the password alone is not enough
    let (s, v) = login(&fx, "root", PW, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "totp_required"));
    // the code used to confirm cannot be used again
    let (s, _) = login(&fx, "root", PW, Some(&code_now)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    fx.advance_ms(30_000);
    let next = generator
        .generate(u64::try_from(fx.now_s()).expect("time"))
        .to_string();
    let (s, v) = login(&fx, "root", PW, Some(&next)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["totp_enrollment_required"], false);
    let full = v["token"].as_str().expect("token");
    assert_eq!(
        fx.call(Method::GET, "/api/v1/tenants", Some(full), None)
            .await
            .0,
        StatusCode::OK
    );
    // enrollment cannot be restarted once confirmed
    assert_eq!(
        fx.call(Method::POST, "/api/v1/auth/totp/enroll", Some(full), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn login_backoff_and_lockout() {
    let fx = Fx::new().await;
    let (s, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["token"].as_str().is_some());
    for _ in 0..3 {
        let (s, v) = login(&fx, "admin-a", "Wrong-password-1", None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    // the fourth attempt must wait, even with the right password
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(
            json!({"username":"admin-a","password":PW})
                .to_string()
                .into_bytes(),
        ),
        "203.0.113.9",
    );
    let (s, headers, _) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // other users are not affected
    assert_eq!(login(&fx, "admin-b", PW, None).await.0, StatusCode::OK);
    fx.advance_ms(1_000);
    assert_eq!(
        login(&fx, "admin-a", PW, None).await.0,
        StatusCode::OK,
        "success resets"
    );
    assert_eq!(
        login(&fx, "admin-a", "Wrong-password-1", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // keep failing: waits double, then a 15-minute lockout
    for _ in 0..15 {
        fx.advance_ms(16 * 60_000);
        login(&fx, "bob", "Wrong-password-1", None).await;
    }
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(
            json!({"username":"bob","password":PW})
                .to_string()
                .into_bytes(),
        ),
        "203.0.113.9",
    );
    let (s, headers, _) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("900")
    );

    // an unknown user fails the same way
    let (s, v) = login(&fx, "nobody", PW, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );

    // every attempt is audited, and no password appears in the log
    let log = fx.store.list_audit(None, None, 1000).await.expect("audit");
    assert!(log.iter().any(|e| e.record.action == "login.success"));
    assert!(
        log.iter()
            .filter(|e| e.record.action == "login.failure")
            .count()
            >= 19
    );
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(PW) && !text.contains("Wrong-password-1"));
}

#[tokio::test]
async fn per_address_login_backoff() {
    let fx = Fx::new().await;
    for i in 0..20 {
        let (s, _) = login(&fx, &format!("user{i}"), "Wrong-password-1", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // the address is now throttled, whatever user it tries
    assert_eq!(
        login(&fx, "admin-a", PW, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    for pw in [
        "short1A!",
        "alllowercasepassword",
        "Carol-is-the-Best-1",
        "Password1234",
    ] {
        let (s, v) = fx
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/users", fx.a),
                Some(&root),
                Some(json!({"username":"carol","password":pw,"role":"tenant-admin"})),
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid"), "{pw}");
    }
    assert!(fx.store.user_by_name("carol").await.expect("get").is_none());
    let weak = crate::add_user(&fx.store, "eve", UserRole::ProviderAdmin, None, "password").await;
    assert!(matches!(weak, Err(crate::Error::Invalid(_))));
    crate::add_user(
        &fx.store,
        "eve",
        UserRole::ProviderAdmin,
        None,
        "Str0ng-Passphrase-x",
    )
    .await
    .expect("cli user");
    let log = fx.store.list_audit(None, None, 10).await.expect("audit");
    assert_eq!(log[0].record.actor, "cli");
    assert_eq!(
        login(&fx, "eve", "Str0ng-Passphrase-x", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn oversized_login_fields_are_refused_before_anything_is_stored() {
    let fx = Fx::new().await;
    let audit_before = fx.store.audit_head().await.expect("head").last_id;
    let huge = "x".repeat(700_000);
    for body in [
        json!({"username": huge, "password": "Wrong-password-1"}),
        json!({"username": "admin-a", "password": "p".repeat(10_000)}),
        json!({"username": "admin-a", "password": PW, "totp": "1".repeat(1000)}),
    ] {
        let (s, v) = fx
            .call(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_credentials")
        );
    }
    assert_eq!(
        fx.store.audit_head().await.expect("head").last_id,
        audit_before,
        "nothing audited"
    );
    assert_eq!(fx.store.login_attempt_rows().await.expect("rows"), 0);
    // A name that cannot be a username is throttled by address only and never
    // stored verbatim.
    let (s, _) = login(&fx, "evil\u{200b}name", "Wrong-password-1", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let log = fx.store.list_audit(None, None, 10).await.expect("audit");
    assert!(!serde_json::to_string(&log).expect("json").contains("evil"));
    assert_eq!(fx.store.login_attempt_rows().await.expect("rows"), 1);
    // Throttle rows expire a day after their last failure.
    fx.advance_ms(25 * 3600 * 1000);
    let (s, _) = login(&fx, "nobody", "Wrong-password-1", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fx.store.login_attempt_rows().await.expect("rows"),
        2,
        "the old address row was dropped and the new attempt counted under address and user"
    );
}

/// Logs in from `source`; the status.
async fn login_from(fx: &Fx, source: &str, user: &str, password: &str) -> StatusCode {
    let body = json!({"username": user, "password": password}).to_string();
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(body.into_bytes()),
        source,
    );
    fx.send(req).await.0
}

async fn alert_events(fx: &Fx) -> Vec<String> {
    fx.store
        .list_all_alerts(100)
        .await
        .expect("alerts")
        .into_iter()
        .map(|a| a.alert.event)
        .collect()
}

#[tokio::test]
async fn a_login_from_a_new_network_and_failures_from_many_addresses_raise_alerts() {
    let fx = Fx::new().await;
    // The first login ever, then another address of the same /24: nothing.
    assert_eq!(
        login_from(&fx, "203.0.113.9", "root", PW).await,
        StatusCode::OK
    );
    assert_eq!(
        login_from(&fx, "203.0.113.200", "root", PW).await,
        StatusCode::OK
    );
    assert!(alert_events(&fx).await.is_empty());
    // Another network: one alert, naming it.
    assert_eq!(
        login_from(&fx, "198.51.100.7", "root", PW).await,
        StatusCode::OK
    );
    let alerts = fx.store.list_all_alerts(10).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert.event, "login.new_network");
    assert!(
        alerts[0].alert.message.contains("198.51.100.0/24"),
        "{}",
        alerts[0].alert.message
    );
    // Seen now: no second alert.
    assert_eq!(
        login_from(&fx, "198.51.100.7", "root", PW).await,
        StatusCode::OK
    );
    assert_eq!(alert_events(&fx).await.len(), 1);

    // Wrong passwords for admin-a from five addresses: one alert.
    for i in 1..=6 {
        let s = login_from(&fx, &format!("192.0.2.{i}"), "admin-a", "Wrong-password-1").await;
        // Refused, or already locked out by the account's back-off.
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&s),
            "{s}"
        );
    }
    let events = alert_events(&fx).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "login.distributed_failures")
            .count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn an_aged_password_logs_in_only_to_be_changed_and_is_warned_before() {
    let config = ApiConfig {
        password_max_age_days: Some(90),
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("store")).await;
    // Fresh: no warning, full scopes.
    let (s, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["password_change_required"], false);
    assert!(v.get("password_expires_at_ms").is_none(), "{v}");
    // Eighty days on: warned, still in.
    fx.advance_ms(80 * 24 * 3600 * 1000);
    let (_, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(v["password_change_required"], false);
    assert!(v["password_expires_at_ms"].as_i64().is_some(), "{v}");
    // Past ninety days: the token can change the password and nothing else.
    fx.advance_ms(11 * 24 * 3600 * 1000);
    let (_, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(v["password_change_required"], true);
    let limited = v["token"].as_str().expect("token").to_owned();
    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&limited), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    let (s, _) = fx
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&limited),
            Some(json!({"current_password": PW, "new_password": "A-fresh-Passw0rd-2027"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
