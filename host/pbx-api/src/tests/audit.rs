//! The audit log: per-tenant views and the hash chain.

use super::*;

#[tokio::test]
async fn tenant_admins_see_only_their_audit_entries() {
    let fx = Fx::new().await;
    for (u, t) in [(&fx.admin_a, fx.a), (&fx.admin_b, fx.b)] {
        let tok = fx.session(u);
        let uri = format!("/api/v1/tenants/{t}/extensions");
        let (s, _) = fx
            .call(
                Method::POST,
                &uri,
                Some(&tok),
                Some(json!({"number":"500"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let admin_a = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/audit?tenant={}", fx.b);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let entries = v.as_array().expect("array");
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["tenant"] == json!(fx.a.0)));
    let (_, all) = fx
        .call(
            Method::GET,
            "/api/v1/audit",
            Some(&fx.session(&fx.root)),
            None,
        )
        .await;
    assert!(all.as_array().expect("array").len() > entries.len());
}

#[tokio::test]
async fn audit_chain_detects_edits_and_deletions() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).await.expect("store");
    let fx = Fx::with(ApiConfig::default(), None, store).await;
    let admin = fx.session(&fx.admin_a);
    for n in 600..606 {
        let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
        let (s, _) = fx
            .call(
                Method::POST,
                &uri,
                Some(&admin),
                Some(json!({"number": n.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let report = verify_audit(&fx.store).await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.entries, 6);

    let url = format!("sqlite://{}", dir.path().join(store::DB_FILE).display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("raw");
    // edit an entry
    sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE id = 3")
        .execute(&mut conn)
        .await
        .expect("edit");
    let report = verify_audit(&fx.store).await.expect("verify");
    assert!(!report.is_intact());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("entry 3 was changed")),
        "{:?}",
        report.problems
    );
    sqlx::query("UPDATE audit_log SET actor = 'admin-a' WHERE id = 3")
        .execute(&mut conn)
        .await
        .expect("restore");
    assert!(verify_audit(&fx.store).await.expect("verify").is_intact());
    // delete one in the middle
    sqlx::query("DELETE FROM audit_log WHERE id = 4")
        .execute(&mut conn)
        .await
        .expect("delete");
    let report = verify_audit(&fx.store).await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("4..4 are missing")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("entry 5 does not link"))
    );
    // delete the newest
    sqlx::query("DELETE FROM audit_log WHERE id = 6")
        .execute(&mut conn)
        .await
        .expect("delete");
    let report = verify_audit(&fx.store).await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("entry 6 was written")),
        "{:?}",
        report.problems
    );
    conn.close().await.expect("close");
}

#[tokio::test]
async fn rewriting_the_chain_without_the_key_is_detected() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).await.expect("store");
    let fx = Fx::with(ApiConfig::default(), None, store).await;
    let admin = fx.session(&fx.admin_a);
    for n in 700..704 {
        let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
        let (s, _) = fx
            .call(
                Method::POST,
                &uri,
                Some(&admin),
                Some(json!({"number": n.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    assert!(verify_audit(&fx.store).await.expect("verify").is_intact());
    // Someone who can edit the database rewrites entry 2 and recomputes every
    // hash after it, both as plain SHA-256 (the old, unkeyed scheme) and as an
    // HMAC under a key of their own; the head row is fixed up too.
    let url = format!("sqlite://{}", dir.path().join(store::DB_FILE).display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("raw");
    for forged_key in [None, Some([7u8; 32])] {
        let mut entries = fx.store.audit_chain(0, 100).await.expect("chain");
        entries[1].record.actor = "someone-else".into();
        let mut prev = String::new();
        for e in &mut entries {
            e.prev_hash = prev.clone();
            e.hash = match forged_key {
                Some(k) => store::audit_mac(&k, e.id, &prev, &e.record),
                None => store::audit_legacy_hash(e.id, &prev, &e.record),
            };
            prev = e.hash.clone();
            sqlx::query("UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?")
                .bind(&e.record.actor)
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .bind(e.id)
                .execute(&mut conn)
                .await
                .expect("rewrite");
        }
        sqlx::query("UPDATE audit_head SET hash = ? WHERE id = 1")
            .bind(&prev)
            .execute(&mut conn)
            .await
            .expect("head");
        let report = verify_audit(&fx.store).await.expect("verify");
        assert!(
            !report.is_intact(),
            "forged with {forged_key:?} went unnoticed"
        );
    }
    // The record of when the chain became keyed cannot be moved either.
    sqlx::query("UPDATE audit_head SET keyed_after = '99:00' WHERE id = 1")
        .execute(&mut conn)
        .await
        .expect("mark");
    let report = verify_audit(&fx.store).await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("record of when the chain became keyed")),
        "{:?}",
        report.problems
    );
    conn.close().await.expect("close");
}

#[tokio::test]
async fn denied_requests_and_failed_logins_reach_the_right_audit_views() {
    let fx = Fx::new().await;
    // A tenant B admin probes tenant A; a narrowed token of A oversteps; an
    // anonymous caller knocks.
    let admin_b = fx.session(&fx.admin_b);
    let cdrs_only = vec!["cdrs:read".to_string()];
    let (narrow, _) = fx.api_token(fx.a, &cdrs_only, 3600).await;
    let probes = [
        (
            Some(admin_b.as_str()),
            format!("/api/v1/tenants/{}/users", fx.a),
            404,
        ),
        (
            Some(narrow.as_str()),
            format!("/api/v1/tenants/{}/users", fx.a),
            403,
        ),
        (None, format!("/api/v1/tenants/{}/users", fx.a), 401),
        (Some("not-a-token"), "/api/v1/tenants".to_owned(), 401),
    ];
    for (token, path, want) in &probes {
        let (s, _) = fx.call(Method::GET, path, *token, None).await;
        assert_eq!(s.as_u16(), *want, "{path}");
    }
    let denied = fx.audited("access.denied").await;
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert_eq!(
        (
            denied[0].actor.as_str(),
            denied[0].tenant,
            denied[0].source.as_str()
        ),
        ("admin-b", Some(fx.b), "203.0.113.9")
    );
    assert!(denied[0].detail.contains("404"), "{}", denied[0].detail);
    assert!(denied[1].actor.starts_with("token:"));
    assert_eq!(denied[1].tenant, Some(fx.a));
    assert_eq!(
        (denied[2].actor.as_str(), denied[2].tenant),
        ("anonymous", None)
    );

    // A failed login for tenant A's user shows in tenant A's view, not B's.
    let (s, _) = login(&fx, "bob", "Wrong-password-1", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let view = |token: String| {
        let fx = &fx;
        async move {
            let (s, v) = fx
                .call(Method::GET, "/api/v1/audit", Some(&token), None)
                .await;
            assert_eq!(s, StatusCode::OK);
            v.as_array().expect("entries").clone()
        }
    };
    let a_view = view(fx.session(&fx.admin_a)).await;
    assert!(
        a_view
            .iter()
            .any(|e| e["action"] == "login.failure" && e["actor"] == "bob"),
        "{a_view:?}"
    );
    assert!(a_view.iter().any(|e| e["action"] == "access.denied"
        && e["actor"].as_str().is_some_and(|a| a.starts_with("token:"))));
    let b_view = view(fx.session(&fx.admin_b)).await;
    assert!(!b_view.iter().any(|e| e["action"] == "login.failure"));
    // A path of any length is kept short.
    let long = format!("/api/v1/tenants/{}/users", "9".repeat(20_000));
    let (s, _) = fx.call(Method::GET, &long, Some("junk"), None).await;
    assert!(s.is_client_error());
    let last = fx.audited("access.denied").await;
    assert!(last.iter().all(|e| e.detail.len() < 1_000));
    // Anonymous knocking is audited up to 30 times a minute per address.
    for _ in 0..100 {
        fx.call(Method::GET, "/api/v1/tenants", Some("junk"), None)
            .await;
    }
    let anonymous = fx
        .audited("access.denied")
        .await
        .into_iter()
        .filter(|e| e.actor == "anonymous")
        .count();
    assert_eq!(anonymous, 30);
}

#[tokio::test]
async fn a_tenant_exports_its_own_audit_entries_and_alerts_as_csv_and_json() {
    let fx = Fx::new().await;
    // Something audited for each tenant, and an alert each.
    for (t, u) in [(fx.a, &fx.admin_a), (fx.b, &fx.admin_b)] {
        let tok = fx.session(u);
        let uri = format!("/api/v1/tenants/{t}/extensions");
        let (s, v) = fx
            .call(
                Method::POST,
                &uri,
                Some(&tok),
                Some(json!({"number": "777", "password": "Exported-Passw0rd-1"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        fx.store
            .insert_alert(&store::Alert {
                tenant: Some(t),
                severity: store::Severity::Warning,
                event: "fraud.burst".into(),
                message: format!("=cmd|' /C calc'!A0 for {t}"),
                at_ms: T0,
            })
            .await
            .expect("alert");
    }
    let token = fx.session(&fx.admin_a);
    let get = |uri: String| {
        let req = request(Method::GET, &uri, Some(&token), None, "203.0.113.9");
        fx.send(req)
    };
    let (s, headers, body) = get(format!("/api/v1/tenants/{}/audit/export", fx.a)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with(store::AUDIT_CSV_HEADER), "{csv}");
    assert!(csv.contains("extension.create"), "{csv}");
    // JSON over a range: every entry in it, and only tenant A's.
    let uri = format!(
        "/api/v1/tenants/{}/audit/export?format=json&since_ms={}",
        fx.a,
        T0 - 1
    );
    let (s, _, body) = get(uri).await;
    assert_eq!(s, StatusCode::OK);
    let entries: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array");
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["tenant"] == json!(fx.a.0)),
        "{entries:?}"
    );
    let later = format!(
        "/api/v1/tenants/{}/audit/export?format=json&since_ms=9000000000000",
        fx.a
    );
    let (_, _, body) = get(later).await;
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&body).unwrap().len(),
        0
    );

    let (s, _, body) = get(format!("/api/v1/tenants/{}/alerts/export", fx.a)).await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with(store::ALERT_CSV_HEADER), "{csv}");
    assert!(csv.contains(&format!("for {}", fx.a)) && !csv.contains(&format!("for {}", fx.b)));
    assert!(csv.contains("\"'=cmd"), "a formula is defused: {csv}");
    // Another tenant's export is "not found", like a missing tenant.
    let (s, _, _) = get(format!("/api/v1/tenants/{}/alerts/export", fx.b)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(format!("/api/v1/tenants/{}/audit/export?format=xml", fx.a)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_tenant_exports_its_plugin_log_over_a_time_range() {
    let fx = Fx::new().await;
    let line = |seq: u64, at_ms: i64, message: &str| crate::control::PluginLogLine {
        seq,
        at_ms,
        level: "warn".into(),
        message: message.into(),
    };
    fx.control.plugin_logs.lock().insert(
        fx.a,
        vec![
            line(3, 1_000, "=HYPERLINK(\"http://x\")"),
            line(4, 2_000, "<script>alert(1)</script>"),
            line(7, 3_000, "late"),
        ],
    );
    fx.control
        .plugin_logs
        .lock()
        .insert(fx.b, vec![line(1, 1_500, "tenant b's secret")]);
    let token = fx.session(&fx.admin_a);
    let get = |uri: String| {
        let req = request(Method::GET, &uri, Some(&token), None, "203.0.113.9");
        fx.send(req)
    };
    let (s, _, body) = get(format!("/api/v1/tenants/{}/plugins/log", fx.a)).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["message"], "<script>alert(1)</script>");

    let uri = format!(
        "/api/v1/tenants/{}/plugins/log/export?since_ms=1500&until_ms=3000",
        fx.a
    );
    let (s, headers, body) = get(uri).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("plugin-log.csv")
    );
    let csv = String::from_utf8(body).unwrap();
    assert_eq!(
        csv,
        format!(
            "{}4,2000,warn,<script>alert(1)</script>\n",
            crate::control::PLUGIN_LOG_CSV_HEADER
        )
    );
    let (_, _, body) = get(format!(
        "/api/v1/tenants/{}/plugins/log/export?format=json",
        fx.a
    ))
    .await;
    let all: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(all.len(), 3);
    let (_, _, body) = get(format!("/api/v1/tenants/{}/plugins/log/export", fx.a)).await;
    assert!(
        String::from_utf8(body).unwrap().contains("\"'=HYPERLINK"),
        "formula defused"
    );
    let (s, _, _) = get(format!("/api/v1/tenants/{}/plugins/log/export", fx.b)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
