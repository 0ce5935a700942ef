//! Router-level tests: requests go through the whole stack in-process with
//! `oneshot`; time comes from a manual clock.

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
    ApprovalStatus, ApprovalTarget, Cdr, Disposition, MediaEncryption, NewApiToken, NewUser, Store,
    TenantId, TenantLimits, User, UserRole,
};
use tower::ServiceExt;

use crate::auth::{ALL_SCOPES, GRANTABLE, token_hash};
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

    async fn send(&self, req: Request<HttpBody>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
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

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Authorization matrix
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Provider,
    TenantAdminOwn,
    TenantAdminOther,
    UserOwn,
    UserOther,
    ApiOwn,
    ApiOther,
}

const EVERYONE: [Who; 8] = [
    Who::Nobody,
    Who::Provider,
    Who::TenantAdminOwn,
    Who::TenantAdminOther,
    Who::UserOwn,
    Who::UserOther,
    Who::ApiOwn,
    Who::ApiOther,
];

/// How a route is guarded, as the test expects it (written independently of
/// the route table).
#[derive(Debug, Clone, Copy)]
enum Guard {
    Public,
    Session,
    /// Not tenant-scoped. Roles: P provider, T tenant admin, U user; `api`:
    /// whether an integration token's scopes can reach it.
    Global(&'static str, bool),
    /// Tenant-scoped: the path names tenant A.
    Tenant(&'static str, bool),
}

enum Payload {
    None,
    Json(Value),
    Raw(&'static [u8]),
}

struct Case {
    method: Method,
    path: &'static str,
    guard: Guard,
    ok: StatusCode,
    body: Payload,
}

fn case(method: Method, path: &'static str, guard: Guard, ok: u16, body: Payload) -> Case {
    Case {
        method,
        path,
        guard,
        ok: StatusCode::from_u16(ok).expect("status"),
        body,
    }
}

fn matrix_cases() -> Vec<Case> {
    use Guard::{Global as G, Public, Session, Tenant as T};
    use Method as M;
    use Payload::{Json as J, None as N, Raw};
    vec![
        case(M::GET, "/healthz", Public, 200, N),
        case(M::GET, "/metrics", Public, 200, N),
        case(M::GET, "/api/v1/openapi.json", Public, 200, N),
        case(
            M::POST,
            "/api/v1/auth/login",
            Public,
            200,
            J(json!({"username":"root","password":PW})),
        ),
        case(M::POST, "/api/v1/auth/totp/enroll", Session, 200, N),
        case(
            M::POST,
            "/api/v1/auth/totp/confirm",
            Session,
            400,
            J(json!({"code":"000000"})),
        ),
        case(M::GET, "/api/v1/tenants", G("P", false), 200, N),
        case(
            M::POST,
            "/api/v1/tenants",
            G("P", false),
            201,
            J(json!({"name":"c","domain":"c.example"})),
        ),
        case(M::GET, "/api/v1/tenants/{tenant}", T("PT", true), 200, N),
        case(M::DELETE, "/api/v1/tenants/{tenant}", T("P", false), 204, N),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/suspend",
            T("P", false),
            204,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/resume",
            T("P", false),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/limits",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/limits",
            T("P", false),
            200,
            J(json!({"max_concurrent":5})),
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/media-encryption",
            T("PT", false),
            200,
            J(json!({"policy":"required"})),
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/domains",
            T("P", false),
            201,
            J(json!({"domain":"alt.a.example"})),
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/extensions",
            T("PT", true),
            201,
            J(json!({"number":"200"})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/extensions/100",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/100/password",
            T("PTU", true),
            200,
            J(json!({})),
        ),
        case(M::GET, "/api/v1/users", G("P", false), 200, N),
        case(
            M::POST,
            "/api/v1/users",
            G("P", false),
            201,
            J(json!({"username":"dave","password":"Str0ng-Passphrase-x","role":"provider-admin"})),
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/users",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/users",
            T("PT", true),
            201,
            J(
                json!({"username":"carol","password":"Str0ng-Passphrase-x","role":"user","extension":"100"}),
            ),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/users/bob",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/tokens",
            T("PT", false),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/tokens",
            T("PT", false),
            201,
            J(json!({"name":"crm","scopes":["cdrs:read"]})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/tokens/{token_id}",
            T("PT", false),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs",
            T("PTU", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs/export",
            T("PTU", true),
            200,
            N,
        ),
        case(M::GET, "/api/v1/audit", G("PT", true), 200, N),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/calls",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/calls/c1",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins",
            T("PT", true),
            201,
            Raw(b"\0asm-new"),
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/1/activate",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/rollback",
            T("PT", true),
            200,
            N,
        ),
        case(M::GET, "/api/v1/policies", G("P", false), 200, N),
        case(
            M::POST,
            "/api/v1/policies?name=restrict",
            G("P", false),
            201,
            Raw(b"\0asm-policy"),
        ),
        case(M::DELETE, "/api/v1/policies/fraud", G("P", false), 204, N),
        case(M::GET, "/api/v1/approvals", G("P", false), 200, N),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/approvals",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/approvals/{approval_id}/grant",
            G("P", false),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/approvals/{approval_id}/deny",
            G("P", false),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/alerts",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/trunks",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/trunks",
            T("PT", true),
            201,
            J(json!({"name":"t1","uri":"sip:carrier.example","password":"s3cret-trunk"})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/trunks/carrier",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/dids",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/dids",
            T("P", false),
            201,
            J(json!({"number":"+15550001"})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/dids/+15550001",
            T("P", false),
            204,
            N,
        ),
        case(M::GET, "/api/v1/alerts", G("P", false), 200, N),
        case(M::GET, "/api/v1/bans", G("P", false), 200, N),
        case(M::DELETE, "/api/v1/bans/192.0.2.1", G("P", false), 204, N),
    ]
}

fn expected(guard: Guard, who: Who, ok: StatusCode) -> StatusCode {
    let forbidden = StatusCode::FORBIDDEN;
    let verdict = |allowed: bool| if allowed { ok } else { forbidden };
    match (guard, who) {
        (Guard::Public, _) => ok,
        (_, Who::Nobody) => StatusCode::UNAUTHORIZED,
        (Guard::Session, Who::ApiOwn | Who::ApiOther) => forbidden,
        (Guard::Session, _) => ok,
        (Guard::Global(roles, api), who) => match who {
            Who::Provider => ok,
            Who::TenantAdminOwn | Who::TenantAdminOther => verdict(roles.contains('T')),
            Who::UserOwn | Who::UserOther => verdict(roles.contains('U')),
            _ => verdict(roles.contains('T') && api),
        },
        (Guard::Tenant(roles, api), who) => match who {
            Who::Provider => ok,
            Who::TenantAdminOther | Who::UserOther | Who::ApiOther => StatusCode::NOT_FOUND,
            Who::TenantAdminOwn => verdict(roles.contains('T')),
            Who::UserOwn => verdict(roles.contains('U')),
            _ => verdict(roles.contains('T') && api),
        },
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let cases = matrix_cases();
    let table = crate::routes::table(&ApiConfig::default());
    assert_eq!(cases.len(), table.len(), "every route is in the matrix");
    let mut failures = Vec::new();
    for c in &cases {
        for who in EVERYONE {
            let fx = Fx::new().await;
            let token = match who {
                Who::Nobody => None,
                Who::Provider => Some(fx.session(&fx.root)),
                Who::TenantAdminOwn => Some(fx.session(&fx.admin_a)),
                Who::TenantAdminOther => Some(fx.session(&fx.admin_b)),
                Who::UserOwn => Some(fx.session(&fx.alice_a)),
                Who::UserOther => Some(fx.session(&fx.alice_b)),
                Who::ApiOwn => Some(fx.api_a.clone()),
                Who::ApiOther => Some(fx.api_b.clone()),
            };
            let path = c
                .path
                .replace("{tenant}", &fx.a.to_string())
                .replace("{token_id}", &fx.api_a_id.to_string())
                .replace("{approval_id}", &fx.approval_a.to_string());
            let body = match &c.body {
                Payload::None => None,
                Payload::Json(v) => Some(v.to_string().into_bytes()),
                Payload::Raw(b) => Some(b.to_vec()),
            };
            let req = request(
                c.method.clone(),
                &path,
                token.as_deref(),
                body,
                "198.51.100.7",
            );
            let (status, _, bytes) = fx.send(req).await;
            let want = expected(c.guard, who, c.ok);
            if status != want {
                failures.push(format!(
                    "{} {} as {who:?}: got {status}, want {want}: {}",
                    c.method,
                    c.path,
                    String::from_utf8_lossy(&bytes)
                ));
            }
            if !status.is_success() && status != StatusCode::NO_CONTENT {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if code(&v).is_empty() {
                    failures.push(format!(
                        "{} {} as {who:?}: error without a code",
                        c.method, c.path
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn other_tenants_resources_look_missing() {
    let fx = Fx::new().await;
    let admin_b = fx.session(&fx.admin_b);
    let root = fx.session(&fx.root);
    let other = format!("/api/v1/tenants/{}/extensions", fx.a);
    let missing = "/api/v1/tenants/999/extensions";
    let (s1, v1) = fx.call(Method::GET, &other, Some(&admin_b), None).await;
    let (s2, v2) = fx.call(Method::GET, missing, Some(&root), None).await;
    let (s3, v3) = fx
        .call(
            Method::GET,
            "/api/v1/tenants/not-a-number/extensions",
            Some(&admin_b),
            None,
        )
        .await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND
        )
    );
    assert_eq!(v1, v2);
    assert_eq!(v1, v3);
    // a user reading call records only gets their own extension's
    fx.store
        .insert_cdrs(&[cdr(fx.a, "100", "101", 1), cdr(fx.a, "102", "103", 2)])
        .await
        .expect("cdrs");
    let alice = fx.session(&fx.alice_a);
    let uri = format!("/api/v1/tenants/{}/cdrs?extension=102", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&alice), None).await;
    assert_eq!(s, StatusCode::OK);
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["caller"], "100");
    // and changes only their own extension's password
    fx.store
        .add_extension(fx.a, "101", "another-pass-101")
        .await
        .expect("ext");
    let uri = format!("/api/v1/tenants/{}/extensions/101/password", fx.a);
    let (s, _) = fx
        .call(Method::PUT, &uri, Some(&alice), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn token_attacks_are_rejected() {
    let fx = Fx::new().await;
    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    let good = fx.session(&fx.admin_a);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&good), None).await.0,
        StatusCode::OK
    );

    let kid = fx.state.inner.keys.current_kid().to_owned();
    let claims = serde_json::to_value(fx.claims_for(&fx.admin_a)).expect("claims");
    let mut attacks: Vec<(&str, String)> = Vec::new();

    // alg none, with and without our kid
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"JWT","kid":kid})),
        b64(&claims)
    );
    attacks.push(("alg none", none));
    attacks.push((
        "alg none, no kid",
        format!("{}.{}.", b64(&json!({"alg":"none"})), b64(&claims)),
    ));
    // HS256 "signed" with the public key material as secret, naming our kid
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(kid.as_bytes()),
    )
    .expect("hs256");
    attacks.push(("alg HS256", hs));
    // another key, claiming our kid; and another key with its own kid
    let other = KeyRing::in_memory(T0).expect("other");
    let forged = other
        .sign_as(&fx.claims_for(&fx.admin_a), &kid)
        .expect("forge");
    attacks.push(("another key, our kid", forged));
    attacks.push((
        "another key",
        other.sign(&fx.claims_for(&fx.admin_a)).expect("sign"),
    ));
    // edited payload: become provider admin
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims.clone();
    evil["role"] = json!("provider-admin");
    evil["tenant"] = Value::Null;
    attacks.push((
        "edited payload",
        format!("{}.{}.{}", parts[0], b64(&evil), parts[2]),
    ));
    // expired, not yet valid, wrong audience, wrong issuer
    let mut c = fx.claims_for(&fx.admin_a);
    c.exp = fx.now_s() - 1;
    attacks.push(("expired", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.nbf = fx.now_s() + 3600;
    attacks.push(("not yet valid", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.aud = "someone-else".into();
    attacks.push(("wrong aud", fx.state.inner.keys.sign(&c).expect("sign")));
    let mut c = fx.claims_for(&fx.admin_a);
    c.iss = "evil".into();
    attacks.push(("wrong iss", fx.state.inner.keys.sign(&c).expect("sign")));
    // a session token whose role claim disagrees with the user row
    let mut c = fx.claims_for(&fx.alice_a);
    c.role = UserRole::TenantAdmin;
    attacks.push(("role upgrade", fx.state.inner.keys.sign(&c).expect("sign")));
    // an API token that was never stored
    let mut c = fx.claims_for(&fx.admin_a);
    c.typ = TokenKind::Api;
    attacks.push((
        "unstored api token",
        fx.state.inner.keys.sign(&c).expect("sign"),
    ));
    attacks.push(("garbage", "not.a.jwt".into()));

    for (name, token) in &attacks {
        let (s, v) = fx.call(Method::GET, &uri, Some(token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(code(&v), "unauthorized", "{name}");
    }

    // time passes: the good token expires
    fx.advance_ms(601_000);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&good), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoked_tokens_and_deleted_users_are_rejected() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let base = format!("/api/v1/tenants/{}", fx.a);
    let (s, v) = fx
        .call(
            Method::POST,
            &format!("{base}/tokens"),
            Some(&admin),
            Some(json!({"name":"billing","scopes":["cdrs:read"],"expires_in_s":600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = v["token"].as_str().expect("token").to_owned();
    let id = v["id"].as_i64().expect("id");
    // stored hashed, never in clear; listing does not show it
    let stored = fx.store.list_api_tokens(fx.a).await.expect("list");
    assert!(
        stored
            .iter()
            .all(|t| t.token_hash != token && t.token_hash.len() == 64)
    );
    let (_, listed) = fx
        .call(Method::GET, &format!("{base}/tokens"), Some(&admin), None)
        .await;
    assert!(!listed.to_string().contains(&token));
    assert!(!listed.to_string().contains("token_hash"));

    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&token), None)
            .await
            .0,
        StatusCode::OK
    );
    // scoped: cdrs:read does not allow extensions
    let (s, v) = fx
        .call(
            Method::GET,
            &format!("{base}/extensions"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    // unknown scopes cannot be granted
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("{base}/tokens"),
            Some(&admin),
            Some(json!({"name":"x","scopes":["tokens:write"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // another tenant's admin cannot revoke tenant A's tokens
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/tokens/{}", fx.api_a_id),
            Some(&fx.session(&fx.admin_b)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // expiry of API tokens follows the clock
    let scopes = vec!["cdrs:read".to_string()];
    let (short, _) = fx.api_token(fx.a, &scopes, 60).await;
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&short), None)
            .await
            .0,
        StatusCode::OK
    );
    fx.advance_ms(61_000);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&short), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // deleted user
    let bob = fx.session(&fx.bob_a);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&bob), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("{base}/users/bob"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        fx.call(Method::GET, &format!("{base}/cdrs"), Some(&bob), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

// ---------------------------------------------------------------------------
// Login, TOTP, backoff, password policy
// ---------------------------------------------------------------------------

async fn login(fx: &Fx, user: &str, password: &str, totp: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"username": user, "password": password});
    if let Some(t) = totp {
        body["totp"] = json!(t);
    }
    fx.call(Method::POST, "/api/v1/auth/login", None, Some(body))
        .await
}

#[tokio::test]
async fn totp_enrollment_and_login() {
    let config = ApiConfig {
        require_totp_for_provider_admins: true,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("store")).await;
    // without TOTP, a provider admin's login only allows enrollment
    let (s, v) = login(&fx, "root", PW, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["totp_enrollment_required"], true);
    let limited = v["token"].as_str().expect("token").to_owned();
    let (s, v) = fx
        .call(Method::GET, "/api/v1/tenants", Some(&limited), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "missing_scope"));
    // tenant admins are not forced
    let (_, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(v["totp_enrollment_required"], false);

    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/enroll",
            Some(&limited),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(
        v["otpauth_url"]
            .as_str()
            .expect("url")
            .starts_with("otpauth://totp/")
    );
    let generator = crate::routes::totp_for(&secret, "root").expect("totp");
    let wrong = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Some(&limited),
            Some(json!({"code":"000000"})),
        )
        .await;
    assert_eq!(code(&wrong.1), "invalid_totp");
    let code_now = generator
        .generate(u64::try_from(fx.now_s()).expect("time"))
        .to_string();
    let (s, _) = fx
        .call(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Some(&limited),
            Some(json!({"code": code_now})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // from now on the password alone is not enough
    let (s, v) = login(&fx, "root", PW, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "totp_required"));
    // the code used to confirm cannot be used again
    let (s, _) = login(&fx, "root", PW, Some(&code_now)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    fx.advance_ms(30_000);
    let next = generator
        .generate(u64::try_from(fx.now_s()).expect("time"))
        .to_string();
    let (s, v) = login(&fx, "root", PW, Some(&next)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["totp_enrollment_required"], false);
    let full = v["token"].as_str().expect("token");
    assert_eq!(
        fx.call(Method::GET, "/api/v1/tenants", Some(full), None)
            .await
            .0,
        StatusCode::OK
    );
    // enrollment cannot be restarted once confirmed
    assert_eq!(
        fx.call(Method::POST, "/api/v1/auth/totp/enroll", Some(full), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn login_backoff_and_lockout() {
    let fx = Fx::new().await;
    let (s, v) = login(&fx, "admin-a", PW, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["token"].as_str().is_some());
    for _ in 0..3 {
        let (s, v) = login(&fx, "admin-a", "Wrong-password-1", None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    // the fourth attempt must wait, even with the right password
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(
            json!({"username":"admin-a","password":PW})
                .to_string()
                .into_bytes(),
        ),
        "203.0.113.9",
    );
    let (s, headers, _) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // other users are not affected
    assert_eq!(login(&fx, "admin-b", PW, None).await.0, StatusCode::OK);
    fx.advance_ms(1_000);
    assert_eq!(
        login(&fx, "admin-a", PW, None).await.0,
        StatusCode::OK,
        "success resets"
    );
    assert_eq!(
        login(&fx, "admin-a", "Wrong-password-1", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // keep failing: waits double, then a 15-minute lockout
    for _ in 0..15 {
        fx.advance_ms(16 * 60_000);
        login(&fx, "bob", "Wrong-password-1", None).await;
    }
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(
            json!({"username":"bob","password":PW})
                .to_string()
                .into_bytes(),
        ),
        "203.0.113.9",
    );
    let (s, headers, _) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("900")
    );

    // an unknown user fails the same way
    let (s, v) = login(&fx, "nobody", PW, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );

    // every attempt is audited, and no password appears in the log
    let log = fx.store.list_audit(None, None, 1000).await.expect("audit");
    assert!(log.iter().any(|e| e.record.action == "login.success"));
    assert!(
        log.iter()
            .filter(|e| e.record.action == "login.failure")
            .count()
            >= 19
    );
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(PW) && !text.contains("Wrong-password-1"));
}

#[tokio::test]
async fn per_address_login_backoff() {
    let fx = Fx::new().await;
    for i in 0..20 {
        let (s, _) = login(&fx, &format!("user{i}"), "Wrong-password-1", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // the address is now throttled, whatever user it tries
    assert_eq!(
        login(&fx, "admin-a", PW, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    for pw in [
        "short1A!",
        "alllowercasepassword",
        "Carol-is-the-Best-1",
        "Password1234",
    ] {
        let (s, v) = fx
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/users", fx.a),
                Some(&root),
                Some(json!({"username":"carol","password":pw,"role":"tenant-admin"})),
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid"), "{pw}");
    }
    assert!(fx.store.user_by_name("carol").await.expect("get").is_none());
    let weak = crate::add_user(&fx.store, "eve", UserRole::ProviderAdmin, None, "password").await;
    assert!(matches!(weak, Err(crate::Error::Invalid(_))));
    crate::add_user(
        &fx.store,
        "eve",
        UserRole::ProviderAdmin,
        None,
        "Str0ng-Passphrase-x",
    )
    .await
    .expect("cli user");
    let log = fx.store.list_audit(None, None, 10).await.expect("audit");
    assert_eq!(log[0].record.actor, "cli");
    assert_eq!(
        login(&fx, "eve", "Str0ng-Passphrase-x", None).await.0,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------
// Extensions, audit, exports
// ---------------------------------------------------------------------------

#[tokio::test]
async fn generated_sip_passwords_are_shown_once() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let base = format!("/api/v1/tenants/{}/extensions", fx.a);
    let (s, v) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"300"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pw = v["password"].as_str().expect("generated").to_owned();
    assert_eq!(pw.len(), 20);
    let (s, v) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"301","password":"Chosen-sip-pass-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(v.get("password").is_none());
    let (s, _) = fx
        .call(
            Method::POST,
            &base,
            Some(&admin),
            Some(json!({"number":"302","password":"short"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, list) = fx.call(Method::GET, &base, Some(&admin), None).await;
    assert!(!list.to_string().contains(&pw));
    let log = fx.store.list_audit(None, None, 100).await.expect("audit");
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(&pw) && !text.contains("Chosen-sip-pass-1"));
    let entry = log
        .iter()
        .find(|e| e.record.action == "extension.create")
        .expect("audited");
    assert_eq!(entry.record.actor, "admin-a");
    assert_eq!(entry.record.role, "tenant-admin");
    assert_eq!(entry.record.tenant, Some(fx.a));
    assert_eq!(entry.record.source, "203.0.113.9");
}

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
    }
}

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

// ---------------------------------------------------------------------------
// OIDC
// ---------------------------------------------------------------------------

#[tokio::test]
async fn oidc_tokens_are_accepted_and_checked() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let raw = pair.public_key_raw();
    let jwks = json!({"keys":[{
        "kty":"EC","crv":"P-256","kid":"idp-1","alg":"ES256","use":"sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    }]});
    let config = OidcConfig {
        issuer: "https://id.example".into(),
        audience: "pbx".into(),
        jwks_file: "unused".into(),
        role_claim: "pbx_role".into(),
        tenant_claim: "org".into(),
        roles: [("pbx-admins".to_string(), UserRole::TenantAdmin)]
            .into_iter()
            .collect(),
    };
    let oidc = Oidc::from_jwks(&config, &jwks.to_string()).expect("jwks");
    let fx = Fx::with(
        ApiConfig::default(),
        Some(oidc),
        Store::open_in_memory().await.expect("s"),
    )
    .await;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let sign = |claims: Value, kid: &str| {
        let header = jsonwebtoken::Header {
            kid: Some(kid.into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    };
    let now = fx.now_s();
    let good = json!({"iss":"https://id.example","aud":"pbx","sub":"u-1","exp":now+300,
                      "iat":now,"pbx_role":"pbx-admins","org":"a"});
    let uri_a = format!("/api/v1/tenants/{}/extensions", fx.a);
    let uri_b = format!("/api/v1/tenants/{}/extensions", fx.b);
    let t = sign(good.clone(), "idp-1");
    assert_eq!(
        fx.call(Method::GET, &uri_a, Some(&t), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fx.call(Method::GET, &uri_b, Some(&t), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fx.call(Method::GET, "/api/v1/tenants", Some(&t), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    let mut bad = Vec::new();
    for (field, value) in [
        ("aud", json!("other")),
        ("iss", json!("https://evil.example")),
        ("exp", json!(now - 1)),
        ("pbx_role", json!("unknown-group")),
        ("org", json!("no-such-tenant")),
    ] {
        let mut c = good.clone();
        c[field] = value;
        bad.push((field, sign(c, "idp-1")));
    }
    bad.push(("unknown kid", sign(good.clone(), "idp-2")));
    for (what, token) in bad {
        assert_eq!(
            fx.call(Method::GET, &uri_a, Some(&token), None).await.0,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------
// Limits, errors, the OpenAPI document, serving over TLS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rate_limits_per_token_and_per_address() {
    let config = ApiConfig {
        rate_per_token_per_min: 3,
        rate_per_address_per_min: 10,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("s")).await;
    let t = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    for _ in 0..3 {
        assert_eq!(
            fx.call(Method::GET, &uri, Some(&t), None).await.0,
            StatusCode::OK
        );
    }
    let req = request(Method::GET, &uri, Some(&t), None, "203.0.113.9");
    let (s, headers, body) = fx.send(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(code(&v), "rate_limited");
    // another token from the same address still works, until the address limit
    let other = fx.session(&fx.admin_a);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&other), None).await.0,
        StatusCode::OK
    );
    let mut limited = 0;
    for _ in 0..10 {
        let (s, _, _) = fx
            .send(request(Method::GET, "/healthz", None, None, "203.0.113.9"))
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "5 requests used, 5 more allowed, 5 refused");
    let (s, _, _) = fx
        .send(request(Method::GET, "/healthz", None, None, "203.0.113.10"))
        .await;
    assert_eq!(s, StatusCode::OK);
    fx.advance_ms(60_000);
    assert_eq!(
        fx.call(Method::GET, &uri, Some(&t), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let config = ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    };
    let fx = Fx::with(config, None, Store::open_in_memory().await.expect("s")).await;
    let (s, v) = fx
        .call(Method::GET, "/api/v1/nothing-here", None, None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = fx.call(Method::PATCH, "/healthz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let root = fx.session(&fx.root);
    let big = json!({"name": "x".repeat(4096), "domain": "d.example"});
    let (s, v) = fx
        .call(Method::POST, "/api/v1/tenants", Some(&root), Some(big))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name": 5})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let (s, v) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name":"a","domain":"x.example"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    // plugins may be larger than JSON bodies
    let uri = format!("/api/v1/tenants/{}/plugins", fx.a);
    let mut wasm = b"\0asm".to_vec();
    wasm.resize(64 * 1024, 0);
    let (s, _, _) = fx
        .send(request(
            Method::POST,
            &uri,
            Some(&root),
            Some(wasm),
            "203.0.113.9",
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // metrics count responses
    let (_, _, body) = fx
        .send(request(Method::GET, "/metrics", None, None, "203.0.113.9"))
        .await;
    let text = String::from_utf8(body).expect("utf8");
    assert!(
        text.contains("pbx_api_responses_total{class=\"4xx\"} 5"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let fx = Fx::new().await;
    let (s, doc) = fx
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let table = crate::routes::table(&ApiConfig::default());
    let mut count = 0;
    for r in &table {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from the document",
            r.method,
            r.path
        );
        if r.path.contains('{') {
            assert!(op["parameters"].is_array(), "{} has no parameters", r.path);
        }
    }
    // and everything the document lists is served (never the router's fallback)
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            count += 1;
            let uri = path
                .replace("{tenant}", "1")
                .replace("{number}", "100")
                .replace("{username}", "x")
                .replace("{id}", "1")
                .replace("{call_id}", "c1")
                .replace("{version}", "1")
                .replace("{address}", "192.0.2.1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (s, v) = fx.call(m, &uri, None, None).await;
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(v["error"]["message"], "no such route", "{method} {path}");
        }
    }
    assert_eq!(count, table.len());
}

#[tokio::test]
async fn serves_over_tls_with_a_self_signed_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("db")).await.expect("store");
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ApiConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let control: Arc<dyn Control> = Arc::new(FakeControl::default());
    let handle = crate::serve(
        config.clone(),
        dir.path(),
        store.clone(),
        control.clone(),
        async {
            let _ = stop_rx.await;
        },
    )
    .await
    .expect("serve");
    let fp = handle.self_signed_fingerprint.clone().expect("self-signed");
    let pem = std::fs::read(dir.path().join("api-tls/cert.pem")).expect("cert");
    let cert = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .expect("one")
        .expect("pem");
    assert_eq!(crate::tls::fingerprint(cert.as_ref()), fp);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).await.expect("read");
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"status\":\"ok\""));
    let _ = stop_tx.send(());
    handle.wait().await;

    // plain HTTP is refused off loopback
    let open = ApiConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        plain_http: true,
        ..ApiConfig::default()
    };
    let refused = crate::serve(open, dir.path(), store, control, async {}).await;
    assert!(matches!(refused, Err(crate::Error::Config(_))));
}

// ---------------------------------------------------------------------------
// Policies, destination approvals, tenant settings
// ---------------------------------------------------------------------------

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

#[tokio::test]
async fn policies_are_uploaded_listed_and_removed_by_the_provider() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let uri = format!("/api/v1/policies?name=restrict&tenant={}", fx.a);
    let (s, v) = fx.upload(&uri, &root, b"\0asm-policy").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "restrict");
    assert_eq!(v["tenant"], json!(fx.a.0));
    let entries = fx.audited("policy.install").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "root");
    assert_eq!(entries[0].tenant, Some(fx.a));
    assert!(entries[0].detail.contains("\"bytes\":11"), "{entries:?}");

    let (s, v) = fx
        .call(Method::GET, "/api/v1/policies", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["fraud", "restrict"]);

    // refused: garbage, an empty body, no name, a tenant that does not exist
    let (s, v) = fx
        .upload("/api/v1/policies?name=junk", &root, b"not wasm")
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid"));
    let (s, v) = fx.upload("/api/v1/policies?name=junk", &root, b"").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let (s, v) = fx.upload("/api/v1/policies", &root, b"\0asm-x").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_query"));
    let (s, _) = fx
        .upload("/api/v1/policies?name=x&tenant=999", &root, b"\0asm-x")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(fx.audited("policy.install").await.len(), 1);

    // tenant admins may neither list nor upload
    let admin_a = fx.session(&fx.admin_a);
    let (s, _) = fx
        .call(Method::GET, "/api/v1/policies", Some(&admin_a), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = fx.upload(&uri, &admin_a, b"\0asm-policy").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _) = fx
        .call(
            Method::DELETE,
            "/api/v1/policies/restrict",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let removed = fx.audited("policy.remove").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].tenant, Some(fx.a));
    let (s, v) = fx
        .call(
            Method::DELETE,
            "/api/v1/policies/restrict",
            Some(&root),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn approvals_are_listed_and_decided_by_the_provider_only() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let admin_a = fx.session(&fx.admin_a);
    let uk = fx
        .store
        .request_approval(fx.b, &ApprovalTarget::Prefix("44".into()), None, T0 + 1)
        .await
        .expect("request")
        .id;

    let (s, v) = fx
        .call(Method::GET, "/api/v1/approvals", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<i64> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    assert_eq!(ids, [fx.approval_a, uk]);
    let uri = format!("/api/v1/approvals?tenant={}", fx.b);
    let (_, v) = fx.call(Method::GET, &uri, Some(&root), None).await;
    assert_eq!(v.as_array().expect("array").len(), 1);
    assert_eq!(v[0]["kind"], "prefix");
    assert_eq!(v[0]["target"], "44");

    // a tenant admin reads their own tenant's requests, not another's
    let own = format!("/api/v1/tenants/{}/approvals", fx.a);
    let (s, v) = fx.call(Method::GET, &own, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["id"], json!(fx.approval_a));
    assert_eq!(v[0]["status"], "pending");
    let other = format!("/api/v1/tenants/{}/approvals", fx.b);
    let (s, _) = fx.call(Method::GET, &other, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // nor can they (or their integration token) grant it
    let grant = format!("/api/v1/approvals/{}/grant", fx.approval_a);
    for tok in [&admin_a, &fx.api_a] {
        let (s, _) = fx.call(Method::POST, &grant, Some(tok), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    assert!(fx.audited("approval.grant").await.is_empty());
    assert!(
        !fx.store
            .approved(fx.a, "international", "442079460018")
            .await
            .expect("approved")
    );

    let (s, v) = fx.call(Method::POST, &grant, Some(&root), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "granted");
    assert_eq!(v["decided_by"], "root");
    assert_eq!(v["decided_ms"], json!(T0));
    assert!(
        fx.store
            .approved(fx.a, "international", "442079460018")
            .await
            .expect("approved")
    );
    let entries = fx.audited("approval.grant").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "root");
    assert_eq!(entries[0].tenant, Some(fx.a));
    assert!(entries[0].detail.contains("international"));
    // decided once only
    let (s, _) = fx.call(Method::POST, &grant, Some(&root), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // naming the wrong tenant finds nothing; a malformed body is refused
    let deny = format!("/api/v1/approvals/{uk}/deny");
    let wrong = json!({ "tenant": fx.a.0 });
    let (s, _) = fx.call(Method::POST, &deny, Some(&root), Some(wrong)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = fx
        .call(Method::POST, &deny, Some(&root), Some(json!({"who": 1})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"));
    let right = json!({ "tenant": fx.b.0 });
    let (s, v) = fx.call(Method::POST, &deny, Some(&root), Some(right)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "denied");
    let denied = fx.audited("approval.deny").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].tenant, Some(fx.b));
    let listed = fx.store.list_approvals(fx.b).await.expect("list");
    assert_eq!(listed[0].status, ApprovalStatus::Denied);
    let (_, v) = fx
        .call(Method::GET, "/api/v1/approvals", Some(&root), None)
        .await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn limits_and_media_encryption_round_trip() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let admin_a = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/limits", fx.a);
    let (s, v) = fx.call(Method::GET, &uri, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["max_concurrent"], Value::Null);

    let limits = json!({"max_concurrent": 5, "max_calls_per_second": 2, "daily_cap_cents": 10_000});
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
}
