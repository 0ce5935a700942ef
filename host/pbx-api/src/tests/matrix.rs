//! Authorization matrix: every route against every kind of caller, and
//! another tenant's resources answering exactly like missing ones.

use super::*;

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

pub(super) enum Payload {
    None,
    Json(Value),
    Raw(&'static [u8]),
}

pub(super) struct Case {
    pub(super) method: Method,
    pub(super) path: &'static str,
    guard: Guard,
    pub(super) ok: StatusCode,
    pub(super) body: Payload,
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

/// One representative call of every route (the contract test reuses them).
pub(super) fn matrix_cases() -> Vec<Case> {
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
        case(M::GET, "/api/v1/auth/session", Session, 200, N),
        case(M::POST, "/api/v1/auth/logout", Session, 204, N),
        case(
            M::POST,
            "/api/v1/auth/password",
            Session,
            204,
            J(json!({"current_password":PW,"new_password":"An0ther-Passphrase-x"})),
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
            M::GET,
            "/api/v1/tenants/{tenant}/calendar",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/calendar",
            T("PT", false),
            200,
            J(json!({"time_zone":"Europe/Paris"})),
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/media-encryption",
            T("PT", false),
            200,
            J(json!({"policy":"required"})),
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/digest",
            T("P", false),
            200,
            J(json!({"algorithms":"SHA-256,MD5"})),
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/100/digest",
            T("P", false),
            200,
            J(json!({"algorithms":"SHA-256"})),
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
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/extensions/100/browser-credentials",
            T("PTU", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions/100/forwarding",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/100/forwarding",
            T("PT", true),
            200,
            J(json!({"busy":"sales","dnd":true})),
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts",
            T("PT", true),
            200,
            N,
        ),
        // The matrix sends JSON: the route is reached, and refuses the format.
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/prompts/menu",
            T("PT", true),
            415,
            Raw(b"\xff\xff\xff\xff"),
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts/menu",
            T("PT", true),
            404,
            N,
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/prompts/menu",
            T("PT", true),
            404,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/call-recording",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/call-recording",
            T("PT", false),
            200,
            J(json!({"enabled": true})),
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings/nope",
            T("PT", true),
            404,
            N,
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/recordings/nope",
            T("PT", true),
            404,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            T("PT", true),
            200,
            J(json!({"days": 14})),
        ),
        // Mailbox 100 is the user's own extension.
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/100/messages",
            T("PTU", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/100/messages/nope",
            T("PTU", true),
            404,
            N,
        ),
        case(
            M::PATCH,
            "/api/v1/tenants/{tenant}/voicemail/100/messages/nope",
            T("PTU", true),
            404,
            J(json!({"heard": true})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/voicemail/100/messages/nope",
            T("PTU", true),
            404,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/100/pin",
            T("PTU", true),
            200,
            J(json!({"pin": "4826"})),
        ),
        case(M::GET, "/api/v1/users", G("P", false), 200, N),
        case(
            M::POST,
            "/api/v1/users",
            G("P", false),
            201,
            J(json!({"username":"dave","password":"Str0ng-Passphrase-x","role":"provider-admin"})),
        ),
        case(M::DELETE, "/api/v1/users/ops", G("P", false), 204, N),
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
            M::PATCH,
            "/api/v1/tenants/{tenant}/users/bob",
            T("PT", true),
            200,
            J(json!({"disabled":true})),
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
        case(M::POST, "/api/v1/audit/verify", G("P", false), 200, N),
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
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/quarantine",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/usage",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log/export?format=json",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/plugins/quarantine/feed01",
            T("PT", true),
            204,
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
        // fraud has no earlier version in the fixture: the route is reached
        // and refuses (the contract test covers a success).
        case(
            M::POST,
            "/api/v1/policies/fraud/rollback",
            G("P", false),
            409,
            N,
        ),
        case(M::DELETE, "/api/v1/policies/fraud", G("P", false), 204, N),
        case(
            M::GET,
            "/api/v1/policies/fraud/config",
            G("P", false),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/policies/fraud/config/limit",
            G("P", false),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/policies/fraud/config/limit",
            G("P", false),
            200,
            J(json!({"value":"7"})),
        ),
        case(
            M::DELETE,
            "/api/v1/policies/fraud/config/limit",
            G("P", false),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/storage",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/storage/k",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/storage/k",
            T("PT", true),
            200,
            J(json!({"value":"w"})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/storage/k",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/policies",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::POST,
            "/api/v1/tenants/{tenant}/policies?name=mine",
            T("PT", true),
            201,
            Raw(b"\0asm-policy"),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/own",
            T("PT", true),
            204,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/policies/own/config",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::PUT,
            "/api/v1/tenants/{tenant}/policies/own/config/limit",
            T("PT", true),
            200,
            J(json!({"value":"2"})),
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/own/config/limit",
            T("PT", true),
            204,
            N,
        ),
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
            "/api/v1/tenants/{tenant}/alerts/export",
            T("PT", true),
            200,
            N,
        ),
        case(
            M::GET,
            "/api/v1/tenants/{tenant}/audit/export",
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
        case(M::GET, "/api/v1/alerts/stream", G("PT", true), 200, N),
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
