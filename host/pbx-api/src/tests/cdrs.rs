//! Call records: the CSV and JSON exports.

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

/// Both export formats carry each leg's media figures (what an auditor needs:
/// packets and bytes each way, SRTP authentication failures, loss).
#[tokio::test]
async fn exports_carry_media_figures_per_leg() {
    let fx = Fx::new().await;
    let mut c = cdr(fx.a, "100", "300", T0);
    c.media.caller = store::LegMedia {
        packets_in: 101,
        bytes_in: 17_372,
        packets_out: 99,
        bytes_out: 17_028,
        srtp_auth_failures: 2,
        packets_lost: 3,
    };
    c.media.callee = store::LegMedia {
        packets_in: 98,
        bytes_in: 16_856,
        packets_out: 100,
        bytes_out: 17_200,
        srtp_auth_failures: 0,
        packets_lost: 1,
    };
    fx.store.insert_cdrs(&[c]).await.expect("insert");
    let admin = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/cdrs/export", fx.a);
    let req = request(Method::GET, &uri, Some(&admin), None, "203.0.113.9");
    let (s, _, body) = fx.send(req).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let head: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(head.len(), row.len(), "{text}");
    let field = |name: &str| row[head.iter().position(|h| *h == name).expect(name)];
    for (name, want) in [
        ("caller_packets_in", "101"),
        ("caller_bytes_in", "17372"),
        ("caller_packets_out", "99"),
        ("caller_bytes_out", "17028"),
        ("caller_srtp_auth_failures", "2"),
        ("caller_packets_lost", "3"),
        ("callee_packets_in", "98"),
        ("callee_bytes_in", "16856"),
        ("callee_packets_out", "100"),
        ("callee_bytes_out", "17200"),
        ("callee_srtp_auth_failures", "0"),
        ("callee_packets_lost", "1"),
    ] {
        assert_eq!(field(name), want, "{name} in {text}");
    }
    let uri = format!("/api/v1/tenants/{}/cdrs/export?format=json", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let media = &v[0]["media"];
    assert_eq!(media["caller"]["packets_in"], 101, "{v}");
    assert_eq!(media["caller"]["srtp_auth_failures"], 2, "{v}");
    assert_eq!(media["caller"]["packets_lost"], 3, "{v}");
    assert_eq!(media["callee"]["bytes_out"], 17_200, "{v}");
    assert_eq!(media["callee"]["packets_lost"], 1, "{v}");
}
