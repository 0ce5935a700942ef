//! Login and TOTP enrollment.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{TenantId, UserRole};
use totp_rs::{Builder, Secret, Totp};
use utoipa::ToSchema;

use crate::access::{ALL_SCOPES, Body, PASSWORD_ONLY, Principal, Source, TOTP_ONLY, Via};
use crate::error::{ApiError, ApiResult};
use crate::password;
use crate::request_limits::{ADDRESS_FREE_FAILURES, USER_FREE_FAILURES, backoff_ms};
use crate::state::ApiState;
use crate::token::{AUDIENCE, Claims, TokenKind, new_jti};

/// A login.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"username": "alice", "password": "Correct-Horse-9-battery", "totp": "123456"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
    /// For the web console: the session is set as cookies (`HttpOnly` token,
    /// CSRF value for the script) and the token is left out of the answer.
    #[serde(default)]
    cookie: bool,
}

/// The answer to a login.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln", "token_type": "Bearer", "expires_at_ms": 1700000900000_i64, "totp_enrollment_required": false, "password_change_required": false})))]
pub(crate) struct LoginResponse {
    /// Absent when the session went into cookies.
    #[serde(skip_serializing_if = "String::is_empty")]
    token: String,
    token_type: &'static str,
    expires_at_ms: i64,
    /// The token only allows TOTP enrollment until it is confirmed.
    totp_enrollment_required: bool,
    /// The password is past its maximum age: the token only allows changing
    /// it (`POST /api/v1/auth/password`).
    password_change_required: bool,
    /// When the password expires, once that is within the warning period.
    #[serde(skip_serializing_if = "Option::is_none")]
    password_expires_at_ms: Option<i64>,
}

/// An argon2id hash (the default parameters) that no password matches,
/// checked when the username is unknown so that both cases cost the same.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The TOTP generator for a stored base32 secret (RFC 6238: SHA-1, 6 digits,
/// 30 s, one step of skew).
pub(crate) fn totp_for(secret_b32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("PBX"))
        .build()
        .ok()
}

fn secs(ms: i64) -> u64 {
    u64::try_from(ms.div_euclid(1000)).unwrap_or(0)
}

/// Longest username a login looks at, bytes: longer ones are refused before
/// anything is stored or audited.
const MAX_LOGIN_NAME_BYTES: usize = 256;
/// Longest TOTP code a login looks at, bytes.
const MAX_TOTP_BYTES: usize = 16;
/// Throttle rows whose last failure is older than this are dropped.
const THROTTLE_MEMORY_MS: i64 = 24 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username, password or code",
    )
}

/// Audits a failed login. It belongs to the tenant of the user it named, when
/// that user exists, so the tenant sees attempts on its accounts.
async fn login_failed(
    state: &ApiState,
    source: &str,
    username: &str,
    tenant: Option<store::TenantId>,
    reason: &str,
) -> ApiResult<ApiError> {
    state.inner.metrics.login(false);
    state
        .audit_anonymous(
            username,
            source,
            "login.failure",
            tenant,
            json!({ "reason": reason }),
        )
        .await?;
    watch_failure(state, username, source, tenant).await?;
    Ok(invalid_credentials())
}

/// Counts a failed (or locked-out) attempt on `username` towards
/// `login.distributed_failures`.
async fn watch_failure(
    state: &ApiState,
    username: &str,
    source: &str,
    tenant: Option<store::TenantId>,
) -> ApiResult<()> {
    if state.inner.logins.failed(username, source, state.now_ms()) {
        let message = format!(
            "failed logins for {username} from {} or more addresses within {} minutes",
            crate::anomaly::DISTINCT_SOURCES,
            crate::anomaly::WINDOW_MS / 60_000
        );
        raise(state, tenant, "login.distributed_failures", message).await?;
    }
    Ok(())
}

/// Stores an alert about a login (the API's alert feed and the SIEM show it).
async fn raise(
    state: &ApiState,
    tenant: Option<store::TenantId>,
    event: &str,
    message: String,
) -> ApiResult<()> {
    state
        .store()
        .insert_alert(&store::Alert {
            tenant,
            severity: store::Severity::Warning,
            event: event.into(),
            message,
            at_ms: state.now_ms(),
        })
        .await?;
    Ok(())
}

/// A successful login from a network the user never logged in from (and
/// not its first login) raises `login.new_network`.
async fn check_network(state: &ApiState, user: &store::User, source: &str) -> ApiResult<()> {
    let Ok(ip) = source.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    let network = state.inner.logins.network(ip);
    let (new, known) = state
        .store()
        .note_login_network(user.id, &network.key, state.now_ms())
        .await?;
    if new && known > 0 {
        let message = format!(
            "{} ({}) logged in from {source}, a network not seen for this user: {}{}",
            user.username,
            user.role.as_str(),
            network.key,
            network
                .country
                .map(|c| format!(", country {c}"))
                .unwrap_or_default()
        );
        raise(state, user.tenant, "login.new_network", message).await?;
    }
    Ok(())
}

pub(super) async fn login(
    State(state): State<ApiState>,
    Source(source): Source,
    Body(req): Body<LoginRequest>,
) -> ApiResult<axum::response::Response> {
    let now = state.now_ms();
    // Unauthenticated input is bounded before it is stored, audited or hashed.
    if req.username.len() > MAX_LOGIN_NAME_BYTES
        || req.password.len() > password::MAX_LEN
        || req.totp.as_ref().is_some_and(|t| t.len() > MAX_TOTP_BYTES)
    {
        state.inner.metrics.login(false);
        return Err(ApiError::bad_request(
            "invalid_credentials",
            "username, password or code is too long",
        ));
    }
    // A name that cannot be a username is throttled under the address only
    // and audited as such, never verbatim.
    let username = store::normalize_name("username", &req.username, store::MAX_USERNAME).ok();
    let shown = username
        .clone()
        .unwrap_or_else(|| "(not a username)".into());
    let addr_key = format!("addr:{source}");
    let user_key = username.as_ref().map(|u| format!("user:{u}"));
    let mut keys = vec![addr_key.as_str()];
    keys.extend(user_key.as_deref());
    let user = match &username {
        Some(u) => state.store().user_by_name(u).await?,
        None => None,
    };
    let tenant = user.as_ref().and_then(|u| u.tenant);

    // The attempt is counted before the password is checked, atomically with
    // the limit check, so concurrent attempts cannot all slip under the limit.
    let wait = state
        .store()
        .reserve_login_attempt(&keys, now, now - THROTTLE_MEMORY_MS, |i, f| {
            let free = if i == 0 {
                ADDRESS_FREE_FAILURES
            } else {
                USER_FREE_FAILURES
            };
            (f.last_failure_ms + backoff_ms(f.failures, free) - now).max(0)
        })
        .await?;
    if wait > 0 {
        state.inner.metrics.login(false);
        state
            .audit_anonymous(
                &shown,
                &source,
                "login.failure",
                tenant,
                json!({ "reason": "locked" }),
            )
            .await?;
        watch_failure(&state, &shown, &source, tenant).await?;
        let wait_s = u64::try_from(wait).unwrap_or(1).div_ceil(1000);
        return Err(ApiError::too_many("login_locked", wait_s));
    }

    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let ok = state
        .verify_password(tenant, req.password.clone(), hash)
        .await?;
    let user = match (ok, user) {
        (true, Some(u)) if !u.disabled => u,
        _ => return Err(login_failed(&state, &source, &shown, tenant, "password").await?),
    };

    let mut scopes = vec![ALL_SCOPES.to_owned()];
    let mut enrollment_required = false;
    match state.store().totp(user.id).await? {
        Some(t) if t.confirmed => {
            let Some(code) = req.totp.as_deref() else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "totp_required",
                    "this account needs a TOTP code",
                ));
            };
            let step = totp_for(&t.secret, &user.username).and_then(|g| g.check(code, secs(now)));
            let fresh = match step.and_then(|s| i64::try_from(s).ok()) {
                Some(s) => state.store().use_totp_step(user.id, s).await?,
                None => false,
            };
            if !fresh {
                return Err(login_failed(&state, &source, &shown, tenant, "totp").await?);
            }
        }
        _ => {
            if user.role == UserRole::ProviderAdmin
                && state.config().require_totp_for_provider_admins
            {
                scopes = vec![TOTP_ONLY.to_owned()];
                enrollment_required = true;
            }
        }
    }

    for key in keys {
        state.store().clear_login_failures(key).await?;
    }
    check_network(&state, &user, &source).await?;
    let (password_change_required, password_expires_at_ms) =
        match state.config().password_max_age_days {
            Some(days) => {
                let changed = state.store().user_password_changed_ms(user.id).await?;
                let expires = changed + i64::from(days) * DAY_MS;
                let warn_from = expires - i64::from(state.config().password_warn_days) * DAY_MS;
                (now >= expires, (now >= warn_from).then_some(expires))
            }
            None => (false, None),
        };
    if password_change_required {
        scopes = vec![PASSWORD_ONLY.to_owned()];
    }
    let now_s = now.div_euclid(1000);
    let ttl = i64::try_from(state.config().session_ttl_s).unwrap_or(900);
    let claims = Claims {
        iss: state.config().issuer.clone(),
        aud: AUDIENCE.into(),
        sub: user.id.to_string(),
        iat: now_s,
        nbf: now_s,
        exp: now_s + ttl,
        jti: new_jti(),
        role: user.role,
        tenant: user.tenant,
        scopes,
        typ: TokenKind::Session,
        epoch: user.session_epoch,
    };
    let token = state.inner.keys.sign(&claims)?;
    state.inner.metrics.login(true);
    let who = Principal {
        subject: user.username.clone(),
        role: user.role,
        tenant: user.tenant,
        extension: user.extension.clone(),
        scopes: claims.scopes.clone(),
        via: Via::Session { user_id: user.id },
        limit_key: String::new(),
    };
    state
        .audit(
            &who,
            &source,
            "login.success",
            user.tenant,
            json!({
                "jti": claims.jti,
                "totp_enrollment_required": enrollment_required,
                "password_change_required": password_change_required,
            }),
        )
        .await?;
    let answer = LoginResponse {
        token: if req.cookie {
            String::new()
        } else {
            token.clone()
        },
        token_type: "Bearer",
        expires_at_ms: claims.exp * 1000,
        totp_enrollment_required: enrollment_required,
        password_change_required,
        password_expires_at_ms,
    };
    if !req.cookie {
        return Ok(Json(answer).into_response());
    }
    let csrf = crate::access::csrf_for(&token);
    let cookies = [
        session_cookie(crate::access::SESSION_COOKIE, &token, ttl, true),
        session_cookie(crate::access::CSRF_COOKIE, &csrf, ttl, false),
    ];
    let mut resp = Json(answer).into_response();
    for c in cookies {
        if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// A console cookie: `Secure`, `SameSite=Strict`, for the whole site, for
/// `ttl_s` seconds (0 deletes it); `HttpOnly` unless the script must read it.
pub(crate) fn session_cookie(name: &str, value: &str, ttl_s: i64, http_only: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={ttl_s}; Secure; SameSite=Strict{}",
        if http_only { "; HttpOnly" } else { "" }
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnrollResponse {
    /// The shared secret, base32; shown once.
    secret: String,
    /// For authenticator apps (as a QR code).
    otpauth_url: String,
    /// `otpauth_url` as a QR code: an SVG image as a `data:` URL.
    qr_code: String,
}

/// `text` as a QR code, an SVG `data:` URL (an image: nothing in it runs).
fn qr_data_url(text: &str) -> ApiResult<String> {
    use base64::Engine as _;
    let code =
        qrcode::QrCode::new(text.as_bytes()).map_err(|e| ApiError::internal(e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

fn session_user(p: &Principal) -> ApiResult<i64> {
    match p.via {
        Via::Session { user_id } => Ok(user_id),
        _ => Err(ApiError::forbidden("this needs a login session")),
    }
}

pub(super) async fn totp_enroll(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
) -> ApiResult<Json<EnrollResponse>> {
    let user_id = session_user(&p)?;
    let bytes: [u8; 20] = rand::random();
    let secret = Secret::from(&bytes[..]).to_base32();
    let generator = totp_for(&secret, &p.subject)
        .ok_or_else(|| ApiError::internal("TOTP generator refused a fresh secret"))?;
    let otpauth_url = generator.to_url().map_err(ApiError::internal)?;
    state.store().begin_totp(user_id, &secret).await?;
    state
        .audit(&p, &source, "totp.enroll", p.tenant, json!({}))
        .await?;
    let qr_code = qr_data_url(&otpauth_url)?;
    Ok(Json(EnrollResponse {
        secret,
        otpauth_url,
        qr_code,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmRequest {
    code: String,
}

pub(super) async fn totp_confirm(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Body(req): Body<ConfirmRequest>,
) -> ApiResult<Json<TotpConfirmed>> {
    let user_id = session_user(&p)?;
    let Some(t) = state.store().totp(user_id).await? else {
        return Err(ApiError::bad_request(
            "totp_not_started",
            "start enrollment first",
        ));
    };
    if t.confirmed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "TOTP is already enrolled",
        ));
    }
    let step = totp_for(&t.secret, &p.subject)
        .and_then(|g| g.check(&req.code, secs(state.now_ms())))
        .and_then(|s| i64::try_from(s).ok());
    let ok = match step {
        Some(s) => state.store().use_totp_step(user_id, s).await?,
        None => false,
    };
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_totp",
            "the code is not valid",
        ));
    }
    state
        .audit(&p, &source, "totp.confirm", p.tenant, json!({}))
        .await?;
    Ok(Json(TotpConfirmed { confirmed: true }))
}

/// The answer to a confirmed TOTP enrollment.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpConfirmed {
    confirmed: bool,
}

/// Who the caller's session is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    /// The username (or `token:<name>`, `oidc:<sub>`).
    username: String,
    role: UserRole,
    tenant: Option<TenantId>,
    /// The extension a `user` owns.
    extension: Option<String>,
    scopes: Vec<String>,
}

/// The caller's session, for the console.
pub(super) async fn whoami(Extension(p): Extension<Principal>) -> Json<SessionInfo> {
    Json(SessionInfo {
        username: p.subject,
        role: p.role,
        tenant: p.tenant,
        extension: p.extension,
        scopes: p.scopes,
    })
}

pub(super) async fn logout(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
) -> ApiResult<axum::response::Response> {
    let user_id = session_user(&p)?;
    state.store().end_sessions(user_id).await?;
    state
        .audit(&p, &source, "logout", p.tenant, json!({}))
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for name in [crate::access::SESSION_COOKIE, crate::access::CSRF_COOKIE] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&session_cookie(name, "", 0, true)) {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(super) async fn change_password(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Body(req): Body<PasswordChange>,
) -> ApiResult<StatusCode> {
    let user_id = session_user(&p)?;
    if req.current_password.len() > password::MAX_LEN {
        return Err(invalid_credentials());
    }
    let user = state
        .store()
        .user_by_id(user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if !state
        .verify_password(
            user.tenant,
            req.current_password,
            user.password_hash.clone(),
        )
        .await?
    {
        state
            .audit(
                &p,
                &source,
                "password.change",
                p.tenant,
                json!({ "ok": false }),
            )
            .await?;
        return Err(invalid_credentials());
    }
    password::check_policy(&user.username, &req.new_password)?;
    let hash = state.hash_password(user.tenant, req.new_password).await?;
    // Every session of the user ends, this one included.
    state.store().set_user_password_hash(user_id, &hash).await?;
    state
        .audit(
            &p,
            &source,
            "password.change",
            p.tenant,
            json!({ "ok": true }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
