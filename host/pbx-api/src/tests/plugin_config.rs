//! Plugin configuration, plugin storage and tenants' own policies through the
//! router: who owns what, and that every change is audited. (Who may call
//! each route is in the authorization matrix.)

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{ConfigScope, TenantId};

use super::{Fx, code};

/// The audit log's actions, oldest first.
async fn actions(fx: &Fx) -> Vec<String> {
    fx.store
        .audit_chain(0, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.record.action)
        .collect()
}

#[tokio::test]
async fn provider_config_scopes_are_apart_and_audited() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let a = fx.a.0;
    let (s, v) = fx
        .call(
            Method::PUT,
            &format!("/api/v1/policies/default-policy/config/max-calls-per-minute?tenant={a}"),
            Some(&root),
            Some(json!({"value": "3"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"key": "max-calls-per-minute", "value": "3"}));
    // Only the override was set: the provider-wide scope is empty.
    let (s, v) = fx
        .call(
            Method::GET,
            "/api/v1/policies/default-policy/config",
            Some(&root),
            None,
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    let (_, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/policies/default-policy/config?tenant={a}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(v, json!([{"key": "max-calls-per-minute", "value": "3"}]));
    assert_eq!(
        fx.store
            .policy_config_get(
                ConfigScope::Provider(Some(fx.a)),
                "default-policy",
                "max-calls-per-minute"
            )
            .await
            .unwrap()
            .as_deref(),
        Some("3")
    );
    // The tenant's own scope does not see it.
    assert!(
        fx.store
            .policy_config_list(ConfigScope::Tenant(fx.a), "default-policy")
            .await
            .unwrap()
            .is_empty()
    );
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("/api/v1/policies/default-policy/config/max-calls-per-minute?tenant={a}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/policies/default-policy/config/max-calls-per-minute?tenant={a}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let log = actions(&fx).await;
    assert!(
        log.ends_with(&["policy.config.set".into(), "policy.config.delete".into()]),
        "{log:?}"
    );
}

#[tokio::test]
async fn bad_config_input_gets_a_clear_error() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let (s, v) = fx
        .call(
            Method::PUT,
            "/api/v1/policies/fraud/config/limit?tenant=999",
            Some(&root),
            Some(json!({"value": "1"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = fx
        .call(
            Method::PUT,
            "/api/v1/policies/fraud/config/limit",
            Some(&root),
            Some(json!({"value": "a\nb"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(!code(&v).is_empty());
    let long = "v".repeat(store::MAX_CONFIG_VALUE + 1);
    let (s, _) = fx
        .call(
            Method::PUT,
            "/api/v1/policies/fraud/config/limit",
            Some(&root),
            Some(json!({ "value": long })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = fx
        .call(
            Method::PUT,
            "/api/v1/policies/fraud/config/limit",
            Some(&root),
            Some(json!({"value": "1", "tenant": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown fields are refused");
}

#[tokio::test]
async fn tenant_admins_write_their_own_storage_only() {
    let fx = Fx::new().await;
    let admin_a = fx.session(&fx.admin_a);
    let admin_b = fx.session(&fx.admin_b);
    let a = fx.a.0;
    let (s, v) = fx
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{a}/storage/ring-group:sales"),
            Some(&admin_a),
            Some(json!({"value": "100,101"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["value"], "100,101");
    assert_eq!(v["hex"], hex::encode("100,101"));
    let (s, _) = fx
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{a}/storage/ring-group:sales"),
            Some(&admin_b),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        fx.store
            .plugin_kv_get(fx.a, "ring-group:sales")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"100,101"[..])
    );
    assert_eq!(
        fx.store
            .plugin_kv_get(fx.b, "ring-group:sales")
            .await
            .unwrap(),
        None
    );
    let (_, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{a}/storage"),
            Some(&admin_a),
            None,
        )
        .await;
    let keys: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["k", "ring-group:sales"]);
    // A value over the tenant's quota is refused.
    let big = "x".repeat(store::PLUGIN_KV_QUOTA_BYTES);
    let (s, _) = fx
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{a}/storage/big"),
            Some(&admin_a),
            Some(json!({ "value": big })),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    assert!(actions(&fx).await.contains(&"storage.set".to_string()));
}

#[tokio::test]
async fn tenant_policies_and_their_config_stay_in_the_tenant() {
    let fx = Fx::new().await;
    let admin_a = fx.session(&fx.admin_a);
    let a = fx.a.0;
    let (s, v) = fx
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{a}/policies/own/config/max-calls-per-minute"),
            Some(&admin_a),
            Some(json!({"value": "1000000"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The tenant's value is in its own scope, never the provider's.
    for scope in [
        ConfigScope::Provider(None),
        ConfigScope::Provider(Some(fx.a)),
    ] {
        assert_eq!(
            fx.store
                .policy_config_get(scope, "own", "max-calls-per-minute")
                .await
                .unwrap(),
            None
        );
    }
    let (_, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{a}/policies/own/config"),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(
        v,
        json!([
            {"key": "limit", "value": "1"},
            {"key": "max-calls-per-minute", "value": "1000000"}
        ])
    );
    let (s, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{a}/policies"),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["own"]);
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{a}/policies/missing"),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        fx.store
            .list_tenant_policies(TenantId(fx.b.0))
            .await
            .unwrap()
            .is_empty()
    );
    let log = actions(&fx).await;
    assert!(log.contains(&"policy.config.set".to_string()), "{log:?}");
}
