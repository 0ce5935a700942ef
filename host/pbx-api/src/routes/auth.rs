//! Login and TOTP enrollment.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::UserRole;
use totp_rs::{Builder, Secret, Totp};

use crate::auth::{ALL_SCOPES, Body, Principal, Source, TOTP_ONLY, Via};
use crate::error::{ApiError, ApiResult};
use crate::limits::{ADDRESS_FREE_FAILURES, USER_FREE_FAILURES, backoff_ms};
use crate::password;
use crate::state::ApiState;
use crate::token::{AUDIENCE, Claims, TokenKind, new_jti};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LoginResponse {
    token: String,
    token_type: &'static str,
    expires_at_ms: i64,
    /// The token only allows TOTP enrollment until it is confirmed.
    totp_enrollment_required: bool,
}

/// An argon2id hash of nothing anyone knows, checked when the username is
/// unknown so that both cases cost the same.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("no-such-user-Placeholder-1").unwrap_or_default())
}

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

async fn login_failed(
    state: &ApiState,
    source: &str,
    username: &str,
    reason: &str,
) -> ApiResult<ApiError> {
    let now = state.now_ms();
    state
        .store()
        .record_login_failure(&format!("user:{username}"), now)
        .await?;
    state
        .store()
        .record_login_failure(&format!("addr:{source}"), now)
        .await?;
    state.inner.metrics.login(false);
    state
        .audit_anonymous(
            username,
            source,
            "login.failure",
            None,
            json!({ "reason": reason }),
        )
        .await?;
    Ok(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username, password or code",
    ))
}

/// How long `key` must still wait before its next attempt, ms.
async fn wait_ms(state: &ApiState, key: &str, free: u32, now: i64) -> ApiResult<i64> {
    Ok(match state.store().login_failures(key).await? {
        Some(f) => (f.last_failure_ms + backoff_ms(f.failures, free) - now).max(0),
        None => 0,
    })
}

pub(super) async fn login(
    State(state): State<ApiState>,
    Source(source): Source,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let now = state.now_ms();
    let user_key = format!("user:{}", req.username);
    let addr_key = format!("addr:{source}");
    let wait = wait_ms(&state, &user_key, USER_FREE_FAILURES, now)
        .await?
        .max(wait_ms(&state, &addr_key, ADDRESS_FREE_FAILURES, now).await?);
    if wait > 0 {
        state.inner.metrics.login(false);
        state
            .audit_anonymous(
                &req.username,
                &source,
                "login.failure",
                None,
                json!({ "reason": "locked" }),
            )
            .await?;
        let wait_s = u64::try_from(wait).unwrap_or(1).div_ceil(1000);
        return Err(ApiError::too_many("login_locked", wait_s));
    }

    let user = state.store().user_by_name(&req.username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let pw = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
        .await
        .unwrap_or(false);
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => return Err(login_failed(&state, &source, &req.username, "password").await?),
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
                return Err(login_failed(&state, &source, &req.username, "totp").await?);
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

    state.store().clear_login_failures(&user_key).await?;
    state.store().clear_login_failures(&addr_key).await?;
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
            json!({ "jti": claims.jti, "totp_enrollment_required": enrollment_required }),
        )
        .await?;
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer",
        expires_at_ms: claims.exp * 1000,
        totp_enrollment_required: enrollment_required,
    }))
}

#[derive(Debug, Serialize)]
pub(crate) struct EnrollResponse {
    /// The shared secret, base32; shown once.
    secret: String,
    /// For authenticator apps (as a QR code).
    otpauth_url: String,
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
    Ok(Json(EnrollResponse {
        secret,
        otpauth_url,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmRequest {
    code: String,
}

pub(super) async fn totp_confirm(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    Body(req): Body<ConfirmRequest>,
) -> ApiResult<Json<serde_json::Value>> {
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
    Ok(Json(json!({ "confirmed": true })))
}
