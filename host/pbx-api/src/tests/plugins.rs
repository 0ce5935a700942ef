//! Dial-plan plugin uploads: a tenant cannot fill the shared disk.

use super::*;

/// A wasm section: id, LEB128 size, payload.
fn section(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    let mut n = payload.len();
    loop {
        let b = u8::try_from(n & 0x7f).expect("7 bits");
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn uploads_count_against_a_quota_and_old_versions_are_pruned() {
    // The quota and the number of versions kept are what this test is about:
    // they are lowered from the shipped 64 MiB and 10 versions.
    let config = ApiConfig {
        plugin_quota_bytes: 4_000,
        plugin_versions_kept: 2,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("store")).await;
    let admin = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/plugins", fx.a);
    // Versions the running server stored (the fake control keeps its own list,
    // so they are written to the store directly), 1,000 bytes each.
    for i in 0..5u8 {
        let mut wasm = b"\0asm".to_vec();
        wasm.resize(1_000, i);
        fx.store
            .install_dialplan(fx.a, &wasm, T0)
            .await
            .expect("install");
    }
    fx.store.activate_dialplan(fx.a, 2).await.expect("activate");
    // An upload prunes first: 5 and 4 are the newest, 2 is active, 1 the one
    // before it; 3 goes. Then 4,000 bytes are used: the upload is over quota.
    let (s, v) = fx.upload(&uri, &admin, &[b'\0'; 10]).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded")
    );
    let left: Vec<i64> = fx
        .store
        .list_dialplans(fx.a)
        .await
        .expect("list")
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(left, vec![1, 2, 4, 5]);
    // Another tenant's share is untouched by A's.
    let admin_b = fx.session(&fx.admin_b);
    let (s, _) = fx
        .upload(
            &format!("/api/v1/tenants/{}/plugins", fx.b),
            &admin_b,
            b"\0asm-b",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Once A activates a newer version, the older ones are prunable and an
    // upload fits again.
    fx.store.activate_dialplan(fx.a, 5).await.expect("activate");
    let (s, v) = fx.upload(&uri, &admin, b"\0asm-small").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pruned = fx.audited("plugin.install").await;
    assert!(
        pruned
            .last()
            .is_some_and(|e| e.detail.contains("\"pruned_versions\":[1,2]")),
        "{pruned:?}"
    );
}

#[tokio::test]
async fn components_with_too_many_or_too_large_custom_sections_are_refused() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/plugins", fx.a);
    let component = b"\0asm\x0d\0\x01\0".to_vec();
    let over = crate::custom_sections::MAX_CUSTOM_SECTIONS + 1;
    let mut many = component.clone();
    for _ in 0..over {
        many.extend(section(0, b"\x01x"));
    }
    let mut large = component.clone();
    large.extend(section(
        0,
        &vec![0u8; crate::custom_sections::MAX_CUSTOM_BYTES + 1],
    ));
    // Nested in a core module inside the component, the count is the same.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    for _ in 0..over {
        module.extend(section(0, b"\x01y"));
    }
    let mut nested = component.clone();
    nested.extend(section(1, &module));
    for (what, bytes) in [("many", many), ("large", large), ("nested", nested)] {
        let (s, v) = fx.upload(&uri, &admin, &bytes).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "too_many_custom_sections"),
            "{what}"
        );
    }
    let mut fine = component;
    fine.extend(section(0, b"\x04name"));
    let (s, _) = fx.upload(&uri, &admin, &fine).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn quarantines_are_listed_and_lifted_by_their_owner() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let root = fx.session(&fx.root);
    let list = format!("/api/v1/tenants/{}/plugins/quarantine", fx.a);
    let (s, v) = fx.call(Method::GET, &list, Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let plugins: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["plugin"].as_str())
        .collect();
    assert_eq!(plugins, ["dialplan", "policy:fraud"]);
    assert_eq!(
        v[0]["reason"],
        "failed in route: plugin ran past its deadline"
    );

    // The provider's policy: not the tenant's to lift.
    let provider_owned = format!("{list}/feed02");
    let (s, _) = fx
        .call(Method::DELETE, &provider_owned, Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(fx.audited("plugin.quarantine.lift").await.is_empty());
    // Its own dial plan: lifted, and audited with the reason.
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{list}/feed01"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let entries = fx.audited("plugin.quarantine.lift").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "admin-a");
    assert!(entries[0].detail.contains("deadline"), "{entries:?}");
    // Gone from the list; lifting it again finds nothing.
    let (_, v) = fx.call(Method::GET, &list, Some(&admin), None).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{list}/feed01"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The provider lifts its own policy's.
    let (s, _) = fx
        .call(Method::DELETE, &provider_owned, Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Another tenant's admin sees neither the list nor the entries.
    let other = fx.session(&fx.admin_b);
    let (s, _) = fx.call(Method::GET, &list, Some(&other), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
