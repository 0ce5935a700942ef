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
