//! Who is calling and what they may do: bearer-token authentication, the
//! per-route access rule, and the extractors handlers use.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use store::{TenantId, TenantStatus, UserRole};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;
use crate::token::TokenKind;

/// The scope every login token carries: the role decides.
pub(crate) const ALL_SCOPES: &str = "*";
/// The only scope of a provider admin who must enroll TOTP first.
pub(crate) const TOTP_ONLY: &str = "totp:enroll";
/// The only scope of a user whose password is past its maximum age: the
/// session can change the password and nothing else.
pub(crate) const PASSWORD_ONLY: &str = "password:change";

/// Scopes an integration token may be given.
pub(crate) const GRANTABLE: &[&str] = &[
    "tenants:read",
    "extensions:read",
    "extensions:write",
    "users:read",
    "users:write",
    "plugins:read",
    "plugins:write",
    "cdrs:read",
    "calls:read",
    "calls:control",
    "audit:read",
    "trunks:read",
    "trunks:write",
    "alerts:read",
    "approvals:read",
    "voicemail:read",
    "voicemail:write",
    "prompts:read",
    "prompts:write",
    "recordings:read",
    "recordings:write",
];

/// How the bearer authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A login token of a local user.
    Session { user_id: i64 },
    /// An integration token (its stored id).
    ApiToken { id: i64 },
    /// A token of the configured OIDC issuer.
    Oidc,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Username, `token:<name>` or `oidc:<sub>`: what the audit log names.
    pub(crate) subject: String,
    pub(crate) role: UserRole,
    pub(crate) tenant: Option<TenantId>,
    /// The extension a `user` owns.
    pub(crate) extension: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) via: Via,
    /// The key its requests are rate-limited under.
    pub(crate) limit_key: String,
}

impl Principal {
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == ALL_SCOPES || s == scope)
    }
}

/// Which roles a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roles {
    pub(crate) tenant_admin: bool,
    pub(crate) user: bool,
}

impl Roles {
    pub(crate) const PROVIDER: Roles = Roles {
        tenant_admin: false,
        user: false,
    };
    pub(crate) const ADMINS: Roles = Roles {
        tenant_admin: true,
        user: false,
    };
    pub(crate) const ALL: Roles = Roles {
        tenant_admin: true,
        user: true,
    };

    pub(crate) fn admits(self, role: UserRole) -> bool {
        match role {
            UserRole::ProviderAdmin => true,
            UserRole::TenantAdmin => self.tenant_admin,
            UserRole::User => self.user,
        }
    }
}

/// The access rule of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token needed.
    Public,
    /// A logged-in local user, whatever the role and scopes (TOTP enrollment).
    Session,
    /// Not tied to a tenant in the path.
    Global { roles: Roles, scope: &'static str },
    /// The path names a tenant (`{tenant}`): provider admins reach any, others
    /// only their own; anyone else's is answered as missing.
    Tenant { roles: Roles, scope: &'static str },
}

impl Access {
    pub(crate) fn is_public(self) -> bool {
        self == Access::Public
    }
}

/// The caller's address, as a string for the audit log ("unknown" in-process).
#[derive(Debug, Clone)]
pub(crate) struct Source(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        )))
    }
}

fn source_of(info: Option<&ConnectInfo<SocketAddr>>) -> String {
    info.map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A JSON body whose rejection is our JSON error.
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                e.status(),
                "body_too_large",
                "request body is too large",
            )),
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// Query parameters whose rejection is our JSON error.
pub(crate) struct Q<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// Path parameters; any that do not parse answer as a missing resource.
pub(crate) struct P<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

/// hex SHA-256 of a token's text, as stored for integration tokens.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Turns a bearer token into a principal, or `None` (401) whatever is wrong.
pub(crate) async fn authenticate(state: &ApiState, token: &str) -> ApiResult<Option<Principal>> {
    let now_ms = state.now_ms();
    let now_s = now_ms.div_euclid(1000);
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return Ok(None);
    };
    let kid = header.kid.unwrap_or_default();
    if state.inner.keys.knows(&kid) {
        let Some(c) = state
            .inner
            .keys
            .verify(token, &state.config().issuer, now_s)
        else {
            return Ok(None);
        };
        return match c.typ {
            TokenKind::Session => {
                let Ok(user_id) = c.sub.parse::<i64>() else {
                    return Ok(None);
                };
                let Some(user) = state.store().user_by_id(user_id).await? else {
                    return Ok(None);
                };
                // Ids are never reused, and the epoch binds the session to the
                // user's state when it was issued: any change since (password,
                // role, disabling, logout, suspension of the tenant) ends it.
                if user.disabled
                    || user.session_epoch != c.epoch
                    || user.role != c.role
                    || user.tenant != c.tenant
                {
                    return Ok(None);
                }
                Ok(Some(Principal {
                    subject: user.username,
                    role: user.role,
                    tenant: user.tenant,
                    extension: user.extension,
                    scopes: c.scopes,
                    via: Via::Session { user_id },
                    limit_key: format!("jti:{}", c.jti),
                }))
            }
            TokenKind::Api => {
                let Some(stored) = state.store().api_token_by_jti(&c.jti).await? else {
                    return Ok(None);
                };
                let hash_ok: bool = stored
                    .token_hash
                    .as_bytes()
                    .ct_eq(token_hash(token).as_bytes())
                    .into();
                if !hash_ok
                    || stored.revoked_at_ms.is_some()
                    || stored.expires_at_ms <= now_ms
                    || Some(stored.tenant) != c.tenant
                    || c.role != UserRole::TenantAdmin
                {
                    return Ok(None);
                }
                Ok(Some(Principal {
                    subject: format!("token:{}", stored.name),
                    role: UserRole::TenantAdmin,
                    tenant: Some(stored.tenant),
                    extension: None,
                    scopes: stored.scopes,
                    via: Via::ApiToken { id: stored.id },
                    limit_key: format!("jti:{}", c.jti),
                }))
            }
        };
    }
    let Some(oidc) = &state.inner.oidc else {
        return Ok(None);
    };
    let Some(id) = oidc.verify(token, now_s) else {
        return Ok(None);
    };
    let tenant = match &id.tenant_name {
        Some(name) => match state.store().tenant_by_name(name).await? {
            Some(t) => Some(t.id),
            None => return Ok(None),
        },
        None => None,
    };
    Ok(Some(Principal {
        subject: format!("oidc:{}", id.sub),
        role: id.role,
        tenant,
        extension: None,
        scopes: vec![ALL_SCOPES.into()],
        via: Via::Oidc,
        limit_key: format!("oidc:{}", id.sub),
    }))
}

/// The console's session cookie: the session token, `HttpOnly`.
pub(crate) const SESSION_COOKIE: &str = "pbx_session";
/// The console's CSRF cookie, readable by its script, which sends it back as
/// [`CSRF_HEADER`] on every request that changes something.
pub(crate) const CSRF_COOKIE: &str = "pbx_csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF value of a session token: bound to it, so it cannot be guessed
/// or carried to another session.
pub(crate) fn csrf_for(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("pbx csrf\0{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The token a request carries: its bearer token, else the console's
/// session cookie. A cookie session must show its CSRF value on anything
/// that is not a read.
fn request_token(req: &Request, read_only: bool) -> ApiResult<Option<String>> {
    if let Some(t) = bearer(req) {
        return Ok(Some(t.to_owned()));
    }
    let Some(token) = cookie(req, SESSION_COOKIE) else {
        return Ok(None);
    };
    if !read_only {
        let shown = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = csrf_for(token);
        let same = shown.len() == expected.len()
            && shown
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(ApiError::forbidden(
                "a console request that changes something needs its CSRF token",
            ));
        }
    }
    Ok(Some(token.to_owned()))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Rate limit by source address, for every request, and count responses.
pub(crate) async fn per_address(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let source = source_of(req.extensions().get::<ConnectInfo<SocketAddr>>());
    let resp = match state.inner.by_address.check(&source, state.now_ms()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            state.inner.metrics.rate_limited();
            ApiError::too_many("rate_limited", wait).into_response()
        }
    };
    state.inner.metrics.response(resp.status().as_u16());
    resp
}

/// Enforces a route's [`Access`] rule, then hands the request on with the
/// [`Principal`] in its extensions.
pub(crate) async fn authorize(
    State((state, access)): State<(ApiState, Access)>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let token = match request_token(&req, read_only) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut who = None;
    match check(
        &state,
        access,
        &params,
        token.as_deref(),
        read_only,
        &mut who,
    )
    .await
    {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(e) => {
            let status = e.status();
            if matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            ) {
                let source = source_of(req.extensions().get::<ConnectInfo<SocketAddr>>());
                let method = req.method().as_str().to_owned();
                let path = req.uri().path().to_owned();
                audit_denied(&state, who.as_ref(), &source, &method, path, status).await;
            }
            e.into_response()
        }
    }
}

/// Longest request path kept in an audit entry of a denied request.
const MAX_AUDITED_PATH: usize = 256;

/// Records a request the access rule refused, with its source and (when the
/// token was valid) its principal. The entry belongs to the principal's tenant,
/// so a tenant sees what its own tokens tried; the path is cut short, and
/// denials are audited at most 30 a minute per token (per source address for
/// anonymous callers), so no caller can grow the audit log without bound.
async fn audit_denied(
    state: &ApiState,
    who: Option<&Principal>,
    source: &str,
    method: &str,
    mut path: String,
    status: StatusCode,
) {
    if path.len() > MAX_AUDITED_PATH {
        let mut cut = MAX_AUDITED_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    let detail = serde_json::json!({
        "method": method,
        "path": path,
        "status": status.as_u16(),
    });
    let key = match who {
        Some(p) => p.limit_key.as_str(),
        None => source,
    };
    if state.inner.denials.check(key, state.now_ms()).is_err() {
        tracing::debug!(%source, "denied request not audited: over the per-minute limit");
        return;
    }
    let result = match who {
        Some(p) => {
            state
                .audit(p, source, "access.denied", p.tenant, detail)
                .await
        }
        None => {
            state
                .audit_anonymous("anonymous", source, "access.denied", None, detail)
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not audit a denied request");
    }
}

async fn check(
    state: &ApiState,
    access: Access,
    params: &RawPathParams,
    token: Option<&str>,
    read_only: bool,
    who: &mut Option<Principal>,
) -> ApiResult<Option<Principal>> {
    if access.is_public() {
        return Ok(None);
    }
    let token = token.ok_or_else(ApiError::unauthorized)?;
    let p = authenticate(state, token)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    *who = Some(p.clone());
    if let Err(wait) = state.inner.by_token.check(&p.limit_key, state.now_ms()) {
        state.inner.metrics.rate_limited();
        return Err(ApiError::too_many("rate_limited", wait));
    }
    // A suspended tenant's own principals may still look, but not change
    // anything; looking after their own sign-in (logout, password, TOTP:
    // the session routes) stays open.
    if !read_only
        && access != Access::Session
        && let Some(t) = p.tenant
    {
        let suspended = state
            .store()
            .tenant(t)
            .await?
            .is_none_or(|t| t.status == TenantStatus::Suspended);
        if suspended {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "the tenant is suspended: its data can be read but not changed",
            ));
        }
    }
    match access {
        Access::Public => {}
        Access::Session => {
            if !matches!(p.via, Via::Session { .. }) {
                return Err(ApiError::forbidden("this needs a login session"));
            }
        }
        Access::Global { roles, scope } => {
            if !roles.admits(p.role) {
                return Err(ApiError::forbidden("your role may not do this"));
            }
            require_scope(&p, scope)?;
        }
        Access::Tenant { roles, scope } => {
            let wanted = params
                .iter()
                .find(|(k, _)| *k == "tenant")
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .map(TenantId)
                .ok_or_else(ApiError::not_found)?;
            if p.role != UserRole::ProviderAdmin && p.tenant != Some(wanted) {
                return Err(ApiError::not_found());
            }
            if state.store().tenant(wanted).await?.is_none() {
                return Err(ApiError::not_found());
            }
            if !roles.admits(p.role) {
                return Err(ApiError::forbidden("your role may not do this"));
            }
            require_scope(&p, scope)?;
        }
    }
    Ok(Some(p))
}

fn require_scope(p: &Principal, scope: &str) -> ApiResult<()> {
    if p.has_scope(scope) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing_scope",
            format!("the token lacks the scope {scope}"),
        ))
    }
}
