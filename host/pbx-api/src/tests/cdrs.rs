//! Call records: the CSV export.

use super::*;

#[tokio::test]
async fn csv_export_of_ten_thousand_records() {
    let fx = Fx::new().await;
    let batch: Vec<Cdr> = (0..10_000)
        .map(|i| {
            let caller = if i % 10 == 0 { "100" } else { "200" };
            let mut c = cdr(fx.a, caller, "300", T0 + i64::from(i) / 3);
            c.caller_call_id = format!("call-{i}");
            c
        })
        .collect();
    fx.store.insert_cdrs(&batch).await.expect("insert");
    let mut other = cdr(fx.b, "100", "300", 5);
    other.caller_call_id = "b-only".into();
    fx.store.insert_cdrs(&[other]).await.expect("other");
    let admin = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/cdrs/export", fx.a);
    let req = request(Method::GET, &uri, Some(&admin), None, "203.0.113.9");
    let (s, headers, body) = fx.send(req).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let text = String::from_utf8(body).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10_001);
    assert!(lines[0].starts_with("started_at_ms,"));
    let ids: std::collections::HashSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(8).expect("call id"))
        .collect();
    assert_eq!(ids.len(), 10_000, "every record exactly once");
    assert!(!text.contains("b-only"), "no other tenant's record");

    // JSON, filtered by disposition and time
    let uri = format!(
        "/api/v1/tenants/{}/cdrs/export?format=json&disposition=answered&since_ms={}",
        fx.a,
        T0 + 3_000
    );
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().expect("array").len(), 1_000);

    // a user exports only their own extension's calls
    let alice = fx.session(&fx.alice_a);
    let uri = format!("/api/v1/tenants/{}/cdrs/export?format=json", fx.a);
    let (_, v) = fx.call(Method::GET, &uri, Some(&alice), None).await;
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 1_000);
    assert!(rows.iter().all(|r| r["caller"] == "100"));
}
