//! A concurrent login flood against the router, in a process of its own so
//! that its peak memory (VmHWM, read from /proc) is this test's alone: the
//! attempts are counted before any password is checked, and argon2 (19 MiB a
//! run) runs on a fixed number of threads whatever the number of attempts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use pbx_api::{
    Alert, ApiConfig, ApiState, Ban, BoxFuture, CallInfo, Control, ControlError, ControlResult,
    Did, NewTrunk, PluginInfo, PolicyInfo, QuarantineInfo, TrunkInfo,
};
use store::{Store, TenantId, UserRole};
use tower::ServiceExt;

/// A server with nothing running: every call is "not found".
struct Nothing;

fn none<T: Send + 'static>() -> BoxFuture<'static, ControlResult<T>> {
    Box::pin(async { Err(ControlError::NotFound("nothing runs here".into())) })
}

impl Control for Nothing {
    fn list_calls(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<CallInfo>>> {
        none()
    }
    fn hangup(&self, _: TenantId, _: String) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn list_plugins(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginInfo>>> {
        none()
    }
    fn install_plugin(&self, _: TenantId, _: Vec<u8>) -> BoxFuture<'_, ControlResult<PluginInfo>> {
        none()
    }
    fn activate_plugin(&self, _: TenantId, _: u32) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn rollback_plugin(&self, _: TenantId) -> BoxFuture<'_, ControlResult<PluginInfo>> {
        none()
    }
    fn list_policies(&self) -> BoxFuture<'_, ControlResult<Vec<PolicyInfo>>> {
        none()
    }
    fn install_policy(
        &self,
        _: String,
        _: Option<TenantId>,
        _: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
        none()
    }
    fn remove_policy(&self, _: String) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn rollback_policy(&self, _: String) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
        none()
    }
    fn install_tenant_policy(
        &self,
        _: TenantId,
        _: String,
        _: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<store::TenantPolicy>> {
        none()
    }
    fn list_alerts(&self, _: Option<TenantId>) -> BoxFuture<'_, ControlResult<Vec<Alert>>> {
        none()
    }
    fn list_bans(&self) -> BoxFuture<'_, ControlResult<Vec<Ban>>> {
        none()
    }
    fn remove_ban(&self, _: std::net::IpAddr) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn list_trunks(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<TrunkInfo>>> {
        none()
    }
    fn add_trunk(&self, _: TenantId, _: NewTrunk) -> BoxFuture<'_, ControlResult<TrunkInfo>> {
        none()
    }
    fn remove_trunk(&self, _: TenantId, _: String) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn list_dids(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<Did>>> {
        none()
    }
    fn add_did(&self, _: TenantId, _: Did) -> BoxFuture<'_, ControlResult<Did>> {
        none()
    }
    fn remove_did(&self, _: TenantId, _: String) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn list_quarantines(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<QuarantineInfo>>> {
        none()
    }
    fn lift_quarantine(&self, _: TenantId, _: String) -> BoxFuture<'_, ControlResult<()>> {
        none()
    }
    fn plugin_log(&self, _: TenantId) -> BoxFuture<'_, ControlResult<Vec<pbx_api::PluginLogLine>>> {
        none()
    }
    fn usage(&self, _: TenantId) -> BoxFuture<'_, ControlResult<pbx_api::TenantUsage>> {
        none()
    }
    fn mailbox_changed(&self, _: TenantId, _: String) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The process's peak resident memory (VmHWM), KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_login_floods_are_throttled_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_in_memory().await.expect("store");
    store.add_tenant("a", "a.example").await.expect("tenant");
    pbx_api::add_user(
        &store,
        "admin-a",
        UserRole::TenantAdmin,
        Some("a"),
        "Correct-Horse-9-battery",
    )
    .await
    .expect("user");
    // Time stands still, so the backoff cannot run out during the burst
    // however slow the machine.
    let state = ApiState::new(ApiConfig::default(), dir.path(), store, Arc::new(Nothing))
        .expect("state")
        .with_clock(Arc::new(|| 1_700_000_000_000));
    let app = pbx_api::router(state);
    let before = peak_rss_kib();
    let send = |user: String, source: &'static str| {
        let app = app.clone();
        async move {
            let body = serde_json::json!({"username": user, "password": "Wrong-password-1"});
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request");
            let addr: SocketAddr = format!("{source}:40000").parse().expect("addr");
            req.extensions_mut().insert(ConnectInfo(addr));
            app.oneshot(req).await.expect("infallible").status()
        }
    };
    let count =
        |statuses: &[StatusCode], want: StatusCode| statuses.iter().filter(|s| **s == want).count();

    // Sixteen wrong passwords for one user at once: the user's three free
    // attempts are checked, every other one is refused before hashing.
    let burst: Vec<_> = (0..16)
        .map(|_| tokio::spawn(send("admin-a".into(), "198.51.100.1")))
        .collect();
    let mut statuses = Vec::new();
    for h in burst {
        statuses.push(h.await.expect("join"));
    }
    assert_eq!(
        (
            count(&statuses, StatusCode::UNAUTHORIZED),
            count(&statuses, StatusCode::TOO_MANY_REQUESTS)
        ),
        (3, 13),
        "{statuses:?}"
    );

    // 150 at once from one address, each naming another user: the address's
    // twenty free attempts are checked, no more.
    let flood: Vec<_> = (0..150)
        .map(|i| tokio::spawn(send(format!("user{i}"), "198.51.100.2")))
        .collect();
    let mut statuses = Vec::new();
    for h in flood {
        statuses.push(h.await.expect("join"));
    }
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        20,
        "{statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 130);

    // At most `max_concurrent_password_hashes` (2) argon2 runs were under way,
    // on two threads that reuse their memory: 2 x 19 MiB. 150 at once would
    // need 2.8 GiB (and before the fix, 680 MB was measured).
    let (Some(before), Some(after)) = (before, peak_rss_kib()) else {
        panic!("no VmHWM in /proc/self/status");
    };
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("peak memory grew by {grown_mib} MiB during the floods");
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");
}
