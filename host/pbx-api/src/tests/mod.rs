//! Router-level tests: requests go through the whole stack in-process with
//! `oneshot`; time comes from a manual clock. One file per resource; the
//! fixture and request helpers shared by all of them live here.

mod alert_stream;
mod approvals;
mod audit;
mod cdrs;
mod contract;
mod errors;
mod extensions;
mod login;
mod matrix;
mod oidc;
mod openapi;
mod plugin_config;
mod plugins;
mod policies;
mod recordings;
mod request_limits;
mod sessions;
mod settings;
mod tls;
mod tokens;
mod users;
mod voicemail;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use store::{
    ApprovalStatus, ApprovalTarget, Cdr, ConfigScope, Disposition, MediaEncryption, NewApiToken,
    NewUser, Store, TenantId, TenantLimits, User, UserRole,
};
use tower::ServiceExt;

use crate::access::{ALL_SCOPES, GRANTABLE, token_hash};
use crate::config::{ApiConfig, OidcConfig};
use crate::control::Control;
use crate::control::fake::FakeControl;
use crate::state::{ApiState, Clock};
use crate::token::{AUDIENCE, Claims, KeyRing, Oidc, TokenKind, new_jti};
use crate::{password, router, verify_audit};

/// Everyone's password in the fixtures.
const PW: &str = "Correct-Horse-9-battery";
/// The start of test time: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

fn pw_hash() -> String {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| password::hash(PW).expect("hash")).clone()
}

struct Fx {
    state: ApiState,
    app: Router,
    clock: Arc<AtomicI64>,
    store: Store,
    a: TenantId,
    b: TenantId,
    root: User,
    admin_a: User,
    admin_b: User,
    alice_a: User,
    alice_b: User,
    bob_a: User,
    api_a: String,
    api_a_id: i64,
    api_b: String,
    /// A pending destination approval of tenant A.
    approval_a: i64,
    /// The running server the API talks to, faked.
    control: Arc<FakeControl>,
}

async fn add_user(
    store: &Store,
    name: &str,
    role: UserRole,
    tenant: Option<TenantId>,
    ext: Option<&str>,
) -> User {
    store
        .add_user(&NewUser {
            username: name.into(),
            role,
            tenant,
            extension: ext.map(str::to_owned),
            password_hash: pw_hash(),
            created_at_ms: T0,
        })
        .await
        .expect("user")
}

impl Fx {
    async fn new() -> Fx {
        Fx::with(
            ApiConfig::default(),
            None,
            Store::open_in_memory().await.expect("store"),
        )
        .await
    }

    async fn with(config: ApiConfig, oidc: Option<Oidc>, store: Store) -> Fx {
        let a = store.add_tenant("a", "a.example").await.expect("a").id;
        let b = store.add_tenant("b", "b.example").await.expect("b").id;
        for t in [a, b] {
            store
                .add_extension(t, "100", "first-pass-100")
                .await
                .expect("ext");
        }
        let root = add_user(&store, "root", UserRole::ProviderAdmin, None, None).await;
        add_user(&store, "ops", UserRole::ProviderAdmin, None, None).await;
        let admin_a = add_user(&store, "admin-a", UserRole::TenantAdmin, Some(a), None).await;
        let admin_b = add_user(&store, "admin-b", UserRole::TenantAdmin, Some(b), None).await;
        let alice_a = add_user(&store, "alice-a", UserRole::User, Some(a), Some("100")).await;
        let alice_b = add_user(&store, "alice-b", UserRole::User, Some(b), Some("100")).await;
        let bob_a = add_user(&store, "bob", UserRole::User, Some(a), None).await;

        let control = Arc::new(FakeControl::default());
        for _ in 0..2 {
            control
                .install_plugin(a, b"\0asm-v".to_vec())
                .await
                .expect("plugin");
        }
        control.activate_plugin(a, 2).await.expect("activate");
        // Tenant A's dial plan (its own) and the provider's policy
        // (provider-owned) are quarantined.
        control.quarantines.lock().insert(
            a,
            vec![
                crate::control::QuarantineInfo {
                    plugin: "dialplan".into(),
                    hash: "feed01".into(),
                    provider_owned: false,
                    reason: "failed in route: plugin ran past its deadline".into(),
                    since_s: 3,
                    lifts_in_s: 297,
                },
                crate::control::QuarantineInfo {
                    plugin: "policy:fraud".into(),
                    hash: "feed02".into(),
                    provider_owned: true,
                    reason: "failed in check-call: plugin trapped".into(),
                    since_s: 3,
                    lifts_in_s: 297,
                },
            ],
        );
        control
            .install_policy("fraud".into(), None, b"\0asm-p".to_vec())
            .await
            .expect("policy");
        let approval_a = store
            .request_approval(
                a,
                &ApprovalTarget::Class("international".into()),
                Some("+442079460018"),
                T0,
            )
            .await
            .expect("approval")
            .id;
        // Plugin configuration and storage the routes can read and remove.
        store
            .policy_config_set(ConfigScope::Provider(None), "fraud", "limit", "5")
            .await
            .expect("provider config");
        store
            .plugin_kv_admin_put(a, "k", Some(b"v"))
            .await
            .expect("storage");
        store
            .install_tenant_policy(a, "own", b"\0asm-own", T0)
            .await
            .expect("tenant policy");
        store
            .policy_config_set(ConfigScope::Tenant(a), "own", "limit", "1")
            .await
            .expect("tenant config");
        let fake = control.clone();
        let control: Arc<dyn Control> = control;

        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let clock_fn: Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let keys = KeyRing::in_memory(T0).expect("keys");
        let state = ApiState::build(config, store.clone(), control, keys, oidc, clock_fn);
        let app = router(state.clone());
        let mut fx = Fx {
            state,
            app,
            clock,
            store,
            a,
            b,
            root,
            admin_a,
            admin_b,
            alice_a,
            alice_b,
            bob_a,
            api_a: String::new(),
            api_a_id: 0,
            api_b: String::new(),
            approval_a,
            control: fake,
        };
        let scopes: Vec<String> = GRANTABLE.iter().map(|s| s.to_string()).collect();
        let (tok, id) = fx.api_token(a, &scopes, 3600).await;
        fx.api_a = tok;
        fx.api_a_id = id;
        fx.api_b = fx.api_token(b, &scopes, 3600).await.0;
        fx
    }

    fn now_s(&self) -> i64 {
        self.clock.load(Ordering::SeqCst) / 1000
    }

    fn advance_ms(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn claims_for(&self, u: &User) -> Claims {
        let now = self.now_s();
        Claims {
            iss: "pbx".into(),
            aud: AUDIENCE.into(),
            sub: u.id.to_string(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: new_jti(),
            role: u.role,
            tenant: u.tenant,
            scopes: vec![ALL_SCOPES.into()],
            typ: TokenKind::Session,
            epoch: u.session_epoch,
        }
    }

    fn session(&self, u: &User) -> String {
        self.state
            .inner
            .keys
            .sign(&self.claims_for(u))
            .expect("sign")
    }

    async fn api_token(&self, tenant: TenantId, scopes: &[String], ttl_s: i64) -> (String, i64) {
        let now = self.now_s();
        let claims = Claims {
            iss: "pbx".into(),
            aud: AUDIENCE.into(),
            sub: "token:t".into(),
            iat: now,
            nbf: now,
            exp: now + ttl_s,
            jti: new_jti(),
            role: UserRole::TenantAdmin,
            tenant: Some(tenant),
            scopes: scopes.to_vec(),
            typ: TokenKind::Api,
            epoch: 0,
        };
        let token = self.state.inner.keys.sign(&claims).expect("sign");
        let stored = self
            .store
            .add_api_token(
                tenant,
                &NewApiToken {
                    jti: claims.jti.clone(),
                    name: format!("t-{}", &claims.jti[..6]),
                    scopes: scopes.to_vec(),
                    token_hash: token_hash(&token),
                    created_by: "test".into(),
                    created_at_ms: now * 1000,
                    expires_at_ms: claims.exp * 1000,
                },
            )
            .await
            .expect("token");
        (token, stored.id)
    }

    /// Sends a request; the answer's body in full, or for an event stream
    /// (which does not end), what it sent in its first [`STREAM_GLIMPSE`].
    async fn send(&self, req: Request<HttpBody>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let events = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        if events {
            return (
                status,
                headers,
                glimpse(resp.into_body(), STREAM_GLIMPSE).await,
            );
        }
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        (status, headers, body)
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = request(
            method,
            uri,
            token,
            body.map(|b| b.to_string().into_bytes()),
            "203.0.113.9",
        );
        let (status, _, bytes) = self.send(req).await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }
}

/// How long [`Fx::send`] reads an event stream.
const STREAM_GLIMPSE: std::time::Duration = std::time::Duration::from_millis(200);

/// What a body that may never end sends within `time`.
async fn glimpse(body: HttpBody, time: std::time::Duration) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut frames = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + time;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, frames.next()).await {
        out.extend_from_slice(&chunk);
    }
    out
}

fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    source: &str,
) -> Request<HttpBody> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(bytes) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            HttpBody::from(bytes)
        }
        None => HttpBody::empty(),
    };
    let mut req = b.body(body).expect("request");
    let addr: SocketAddr = format!("{source}:40000").parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// The shortest WAV the store takes: a tenth of a second of 8 kHz 16-bit
/// mono silence.
fn silence_wav() -> Vec<u8> {
    let mut out = Vec::new();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut out), spec).expect("wav");
    for _ in 0..800 {
        w.write_sample(0i16).expect("sample");
    }
    w.finalize().expect("wav");
    out
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn login(fx: &Fx, user: &str, password: &str, totp: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"username": user, "password": password});
    if let Some(t) = totp {
        body["totp"] = json!(t);
    }
    fx.call(Method::POST, "/api/v1/auth/login", None, Some(body))
        .await
}

fn cdr(tenant: TenantId, caller: &str, callee: &str, started_at_ms: i64) -> Cdr {
    Cdr {
        tenant,
        caller: caller.into(),
        callee: callee.into(),
        started_at_ms,
        answered_at_ms: Some(started_at_ms + 1_000),
        ended_at_ms: started_at_ms + 30_000,
        disposition: Disposition::Answered,
        sip_code: 200,
        hangup_by: "caller".into(),
        caller_call_id: format!("call-{started_at_ms}"),
        callee_call_id: String::new(),
        media: store::CdrMedia::default(),
        tags: Vec::new(),
    }
}

impl Fx {
    /// Audit entries with this action, oldest first.
    async fn audited(&self, action: &str) -> Vec<store::AuditRecord> {
        let mut found: Vec<store::AuditRecord> = self
            .store
            .list_audit(None, None, 1000)
            .await
            .expect("audit")
            .into_iter()
            .filter(|e| e.record.action == action)
            .map(|e| e.record)
            .collect();
        found.reverse();
        found
    }

    async fn upload(&self, uri: &str, token: &str, bytes: &[u8]) -> (StatusCode, Value) {
        let req = request(
            Method::POST,
            uri,
            Some(token),
            Some(bytes.to_vec()),
            "203.0.113.9",
        );
        let (status, _, body) = self.send(req).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}
