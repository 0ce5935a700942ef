//! Tenant settings: limits, media encryption and the calendar.

use super::*;

#[tokio::test]
async fn limits_and_media_encryption_round_trip() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let admin_a = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/limits", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["max_concurrent"], Value::Null);

    let limits = json!({"max_concurrent": 5, "max_calls_per_second": 2, "daily_cap_cents": 10_000,
        "max_media_sessions": 3, "recording_minutes": 45});
    let (s, v) = fx
        .call(Method::PUT, &uri, Some(&root), Some(limits.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["max_concurrent"], 5);
    assert_eq!(v["max_concurrent_extension"], Value::Null);
    assert_eq!(v["daily_cap_cents"], 10_000);
    assert_eq!(
        fx.store.tenant_limits(fx.a).await.expect("limits"),
        TenantLimits {
            max_concurrent: Some(5),
            max_concurrent_extension: None,
            max_calls_per_second: Some(2),
            daily_cap_cents: Some(10_000),
            media_storage_bytes: None,
            max_media_sessions: Some(3),
            recording_minutes: Some(45),
        }
    );
    assert_eq!(
        fx.store.tenant_limits(fx.b).await.expect("limits"),
        TenantLimits::default()
    );
    let entries = fx.audited("tenant.limits").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].tenant, Some(fx.a));

    // tenant admins read but do not set; unknown fields and negatives are refused
    let (s, _) = fx
        .call(Method::PUT, &uri, Some(&admin_a), Some(limits))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in [json!({"max_calls": 1}), json!({"max_concurrent": -1})] {
        let (s, v) = fx.call(Method::PUT, &uri, Some(&root), Some(bad)).await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    }

    let media = format!("/api/v1/tenants/{}/media-encryption", fx.a);
    let (s, v) = fx
        .call(
            Method::PUT,
            &media,
            Some(&admin_a),
            Some(json!({"policy": "required"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["policy"], "required");
    assert_eq!(
        fx.store.media_encryption(fx.a).await.expect("policy"),
        MediaEncryption::Required
    );
    let (_, t) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}", fx.a),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(t["media_encryption"], "required");
    let (s, v) = fx
        .call(
            Method::PUT,
            &media,
            Some(&root),
            Some(json!({"policy": "sometimes"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let (s, _) = fx
        .call(
            Method::PUT,
            &media,
            Some(&fx.session(&fx.admin_b)),
            Some(json!({"policy": "disabled"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        fx.store.media_encryption(fx.a).await.expect("policy"),
        MediaEncryption::Required
    );
    let entries = fx.audited("tenant.media_encryption").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "admin-a");
    assert!(entries[0].detail.contains("required"));

    // Digest algorithms: the provider's choice, per tenant or extension.
    let digest = format!("/api/v1/tenants/{}/digest", fx.a);
    let (s, v) = fx
        .call(
            Method::PUT,
            &digest,
            Some(&root),
            Some(json!({"algorithms": "sha-256,md5"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["algorithms"], "SHA-256,MD5");
    let (_, t) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}", fx.a),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(t["digest"], "SHA-256,MD5", "{t}");
    let ext_digest = format!("/api/v1/tenants/{}/extensions/100/digest", fx.a);
    let (s, v) = fx
        .call(
            Method::PUT,
            &ext_digest,
            Some(&root),
            Some(json!({"algorithms": "SHA-256"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let exts = fx.store.list_extensions(fx.a).await.expect("extensions");
    let e100 = exts.iter().find(|e| e.number == "100").expect("100");
    assert_eq!(
        e100.digest.as_ref().map(ToString::to_string).as_deref(),
        Some("SHA-256")
    );
    // a tenant admin cannot choose; bad values and unknown extensions are refused
    let (s, _) = fx
        .call(
            Method::PUT,
            &digest,
            Some(&admin_a),
            Some(json!({"algorithms": null})),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    for bad in [
        json!({"algorithms": "SHA-512"}),
        json!({"algorithms": ""}),
        json!({"x": 1}),
    ] {
        let (s, v) = fx.call(Method::PUT, &digest, Some(&root), Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let missing = format!("/api/v1/tenants/{}/extensions/4711/digest", fx.a);
    let (s, _) = fx
        .call(
            Method::PUT,
            &missing,
            Some(&root),
            Some(json!({"algorithms": "MD5"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = fx
        .call(
            Method::PUT,
            &digest,
            Some(&root),
            Some(json!({"algorithms": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        fx.store
            .tenant(fx.a)
            .await
            .expect("tenant")
            .expect("a")
            .digest,
        None
    );
    assert_eq!(fx.audited("tenant.digest").await.len(), 2);
    assert_eq!(fx.audited("extension.digest").await.len(), 1);
}

#[tokio::test]
async fn a_tenants_calendar_is_set_by_its_admins_checked_and_kept_apart() {
    let fx = Fx::new().await;
    let admin_a = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/calendar", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["time_zone"], "UTC");
    let paris = json!({
        "time_zone": "Europe/Paris",
        "holidays": [{"date": "2026-12-25", "name": "Noël"}]
    });
    let (s, v) = fx
        .call(Method::PUT, &uri, Some(&admin_a), Some(paris.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(v, paris);
    for bad in [
        json!({"time_zone": "Mars/Olympus"}),
        json!({"time_zone": "UTC", "holidays": [{"date": "2026-02-30", "name": "x"}]}),
        json!({"time_zone": "UTC", "holidays": [{"date": "2026-01-01", "name": ""}]}),
        json!({"time_zone": "UTC", "extra": 1}),
    ] {
        let (s, v) = fx.call(Method::PUT, &uri, Some(&admin_a), Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (_, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(v, paris, "a refused calendar changes nothing");
    // Another tenant's admin can neither read nor write it (nor learn that
    // the tenant exists).
    let admin_b = fx.session(&fx.admin_b);
    let (s, _) = fx.call(Method::GET, &uri, Some(&admin_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = fx
        .call(
            Method::PUT,
            &uri,
            Some(&admin_b),
            Some(json!({"time_zone": "UTC"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(fx.audited("tenant.calendar").await.len(), 1);
}
