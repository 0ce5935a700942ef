//! The admin REST API of the PBX: provisioning (tenants, domains, extensions,
//! users, limits, media encryption), integration tokens, call records,
//! destination approvals, the audit log, and the endpoints the running server
//! answers (live calls, dial-plan and policy plugins, trunks, DIDs, alerts,
//! bans).
//!
//! # Design
//! - axum under `/api/v1`, JSON in and out; every error is
//!   `{"error":{"code":"...","message":"..."}}` with a stable code. Served over
//!   TLS (rustls, ring) with the configured certificate or a self-signed one made
//!   in the data directory; plain HTTP only on loopback. `GET /healthz`,
//!   `GET /metrics` (Prometheus text) and `GET /api/v1/openapi.json`.
//! - One route table (`routes`) holds method, path, access rule, handler and
//!   the types of its bodies; the router and the OpenAPI 3.1 document are both
//!   built from it, the document's schemas derived from those types (`utoipa`).
//!   A contract test checks real answers against it. The access rule is
//!   enforced in one middleware before any handler runs: token → principal,
//!   per-token rate limit, then role, tenant and scope. A tenant-scoped caller
//!   asking for another tenant gets the same 404 as for a missing one.
//! - Tokens are EdDSA JWTs signed with keys kept in `DATA/api-keys` (`kid`
//!   names the key; the newest signs, all verify). `alg` must be EdDSA; `iss`,
//!   `aud`, `exp`, `nbf`, `iat` are checked against the injected clock. Login
//!   tokens are short-lived and re-checked against the user row; integration
//!   tokens are tenant-bound, scoped, expiring, revocable and stored as a
//!   SHA-256. Tokens of an external OIDC issuer are accepted when configured.
//! - Passwords: argon2id, a policy (length, classes, not the username, not in
//!   the bundled list of common passwords), backoff then lockout per user and
//!   per source address, TOTP (RFC 6238) enrollment and single-use codes.
//! - Sessions are bound to the user's current state: ids are never reused and
//!   a token carries the user's session epoch, which any change to the user
//!   (password, role, disabling, logout, suspension of its tenant) moves on.
//! - Grants are a subset of the granter's rights (module `grant`): the rights of a
//!   role are read from the route table, so a narrowed token can only create,
//!   change or remove principals and tokens it could be itself.
//! - Logins reserve their attempt atomically before hashing; argon2 runs are
//!   capped by a semaphore; throttle rows expire. Connections are capped in
//!   all and per source, and every request head and TLS handshake has a
//!   deadline (module `conn`).
//! - Every login, token issue/revocation, change and denied request is
//!   appended to the audit log, chained with an HMAC keyed outside the
//!   database ([`verify_audit`] walks it). Secrets never go in; every
//!   response is `Cache-Control: no-store`, and HSTS over TLS.
//! - The server side (calls, plugins, trunks, ...) is the [`Control`] trait the
//!   host implements; the API only checks access and routes to it.
//! - Time is a parameter ([`Clock`]); tests drive the router in-process with
//!   `tower::ServiceExt::oneshot`.

mod access;
mod alert_feed;
mod anomaly;
mod audit;
mod config;
mod conn;
pub mod console;
pub mod console_client;
mod control;
mod custom_sections;
mod error;
mod grant;
mod metrics;
mod openapi;
mod password;
mod request_limits;
mod routes;
mod state;
mod tls;
mod token;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use store::{AuditRecord, NewUser, Store, UserRole};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use audit::{AuditReport, verify_audit};
pub use config::{ApiConfig, OidcConfig};
pub use control::{
    Alert, Ban, BoxFuture, CallInfo, Control, ControlError, ControlResult, Did, NewTrunk,
    PLUGIN_LOG_CSV_HEADER, PluginInfo, PluginLogLine, PolicyInfo, QuarantineInfo, TenantUsage,
    TrunkInfo, write_plugin_log_csv,
};
pub use error::{Error, Result};
pub use password::check_policy;
pub use routes::prompts::{prompt_wav, valid_prompt_name};
pub use routes::router;
pub use state::{ApiState, Clock, system_clock};
pub use token::{Rotation, rotate_signing_key};

/// A running API server.
#[derive(Debug)]
pub struct ApiHandle {
    /// The address it listens on (useful with port 0).
    pub local_addr: SocketAddr,
    /// SHA-256 fingerprint of the self-signed certificate, when one is used.
    pub self_signed_fingerprint: Option<String>,
    task: JoinHandle<()>,
}

impl ApiHandle {
    /// Waits until the server has shut down (after the shutdown future fired
    /// and open requests finished).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds `config.listen` and serves the API until `shutdown` completes.
///
/// TLS uses `tls_cert`/`tls_key`, or a self-signed certificate made in
/// `data_dir/api-tls` on first start (its fingerprint is logged and returned).
/// `plain_http` is refused unless the address is loopback.
pub async fn serve(
    config: ApiConfig,
    data_dir: &Path,
    store: Store,
    control: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ApiHandle> {
    if config.plain_http && !config.listen.ip().is_loopback() {
        return Err(Error::Config(
            "plain HTTP is only allowed on a loopback address".into(),
        ));
    }
    let identity = if config.plain_http {
        None
    } else {
        Some(tls::identity(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            data_dir,
            config.listen,
        )?)
    };
    let state = ApiState::new(config.clone(), data_dir, store, control)?;
    // Open alert streams never end by themselves: end them when shutting
    // down, so open requests can finish.
    let feed = Arc::clone(&state.inner.alerts);
    let shutdown = async move {
        shutdown.await;
        feed.close();
    };
    let mut app = router(state);
    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let local_addr = tcp
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let mut fingerprint = None;
    let acceptor = match identity {
        None => {
            tracing::info!(%local_addr, "admin API listening (plain HTTP, loopback)");
            None
        }
        Some(identity) => {
            fingerprint = identity.self_signed_fingerprint.clone();
            if let Some(fp) = &fingerprint {
                tracing::info!(fingerprint = %fp, "admin API uses a self-signed certificate (SHA-256)");
            }
            tracing::info!(%local_addr, "admin API listening (TLS)");
            app = app.layer(axum::middleware::map_response(hsts));
            Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                identity,
            )?))
        }
    };
    let task = tokio::spawn(conn::run(tcp, acceptor, app, config, shutdown));
    Ok(ApiHandle {
        local_addr,
        self_signed_fingerprint: fingerprint,
        task,
    })
}

/// Browsers that reached the API over TLS must never fall back to plain HTTP.
async fn hsts(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

/// Creates a user from the command line: the password policy applies, and the
/// change is audited with actor `cli`. `tenant` is the tenant's name (required
/// for every role but provider-admin).
pub async fn add_user(
    store: &Store,
    username: &str,
    role: UserRole,
    tenant: Option<&str>,
    password: &str,
) -> Result<()> {
    let tenant = match tenant {
        Some(name) => Some(
            store
                .tenant_by_name(name)
                .await?
                .ok_or_else(|| Error::Invalid(format!("no tenant named {name:?}")))?
                .id,
        ),
        None => None,
    };
    password::check_policy(username, password)?;
    let username = store::normalize_name("username", username, store::MAX_USERNAME)?;
    let username = username.as_str();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| Error::Crypto(format!("hashing task: {e}")))??;
    let now = (system_clock())();
    let user = store
        .add_user(&NewUser {
            username: username.to_owned(),
            role,
            tenant,
            extension: None,
            password_hash: hash,
            created_at_ms: now,
        })
        .await?;
    let record = AuditRecord {
        at_ms: now,
        actor: "cli".into(),
        role: "cli".into(),
        tenant: user.tenant,
        source: "local".into(),
        action: "user.create".into(),
        detail: json!({ "username": user.username, "role": user.role.as_str() }).to_string(),
    };
    audit::append(store, &record).await?;
    Ok(())
}
