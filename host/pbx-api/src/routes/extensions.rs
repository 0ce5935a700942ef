//! Extensions, their SIP passwords (set, or generated and shown once) and
//! their call forwarding and do-not-disturb.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{Forwarding, TenantId, UserRole};
use utoipa::ToSchema;

use crate::access::{Body, P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::password;
use crate::state::ApiState;

/// Length of a generated SIP password.
const GENERATED_LEN: usize = 20;

/// An extension as listed (never its digests).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"number": "1000", "enabled": true})))]
pub(crate) struct ExtensionView {
    number: String,
    enabled: bool,
}

/// An extension to create.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"number": "1000"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewExtension {
    number: String,
    /// Absent: a password is generated and returned once.
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    #[serde(default)]
    password: Option<String>,
}

/// An extension's SIP credentials as set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"number": "1000", "password": "generated-once-shown-once"})))]
pub(crate) struct Credentials {
    number: String,
    /// Only when generated; never stored or shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// How long a browser phone's SIP credentials work.
const BROWSER_CREDENTIALS_TTL_S: i64 = 3600;

/// Short-lived SIP credentials for a browser phone: good for this extension,
/// over secure WebSocket only, until `expires_at_ms`. The extension's own SIP
/// password is never given out.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({
    "number": "1000",
    "username": "webrtc.1700003600.1000",
    "password": "9f2c4e1b7a0d3c5e8f6a1b2c3d4e5f60",
    "domain": "acme.example",
    "expires_at_ms": 1700003600000_i64,
    "servers": ["wss://pbx.example:8089"]
})))]
pub(crate) struct BrowserCredentials {
    number: String,
    /// The digest username (it names the extension and the expiry).
    username: String,
    password: String,
    /// The tenant's SIP domain: the digest realm and the domain of its URIs.
    domain: String,
    expires_at_ms: i64,
    /// The SIP over secure WebSocket URLs to connect to; empty when the PBX
    /// serves none.
    servers: Vec<String>,
}

/// Issues short-lived SIP credentials for a browser phone on `number`: to
/// the tenant's admins, and to a user for their own extension only.
pub(super) async fn browser_credentials(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
) -> ApiResult<Json<BrowserCredentials>> {
    if p.role == UserRole::User && p.extension.as_deref() != Some(number.as_str()) {
        return Err(ApiError::not_found());
    }
    let tenant = TenantId(tenant);
    let extension = state.store().extension(tenant, &number).await?;
    if !extension.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "extension_disabled",
            "the extension is disabled",
        ));
    }
    let domain = state
        .store()
        .tenant(tenant)
        .await?
        .ok_or_else(ApiError::not_found)?
        .realm;
    let expires_s = state.now_ms().div_euclid(1000) + BROWSER_CREDENTIALS_TTL_S;
    let issued = state.inner.ephemeral.issue(tenant.0, &number, expires_s);
    state
        .audit(
            &p,
            &source,
            "extension.browser_credentials",
            Some(tenant),
            json!({ "number": number, "expires_at_ms": expires_s * 1000 }),
        )
        .await?;
    Ok(Json(BrowserCredentials {
        number,
        username: issued.username,
        password: issued.password,
        domain,
        expires_at_ms: expires_s * 1000,
        servers: state.inner.config.sip_wss.clone(),
    }))
}

/// The password to set: the caller's (checked), or a generated one to show.
fn choose(given: Option<String>) -> ApiResult<(String, Option<String>)> {
    match given {
        Some(pw) => {
            password::check_sip_password(&pw)?;
            Ok((pw, None))
        }
        None => {
            let pw = password::generate(GENERATED_LEN);
            Ok((pw.clone(), Some(pw)))
        }
    }
}

pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<ExtensionView>>> {
    let list = state.store().list_extensions(TenantId(tenant)).await?;
    Ok(Json(
        list.into_iter()
            .map(|e| ExtensionView {
                number: e.number,
                enabled: e.enabled,
            })
            .collect(),
    ))
}

pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<NewExtension>,
) -> ApiResult<(StatusCode, Json<Credentials>)> {
    let tenant = TenantId(tenant);
    let (pw, shown) = choose(req.password)?;
    state
        .store()
        .add_extension(tenant, &req.number, &pw)
        .await?;
    state
        .audit(
            &p,
            &source,
            "extension.create",
            Some(tenant),
            json!({ "number": req.number, "password_generated": shown.is_some() }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Credentials {
            number: req.number,
            password: shown,
        }),
    ))
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId(tenant);
    state.store().remove_extension(tenant, &number).await?;
    state
        .audit(
            &p,
            &source,
            "extension.delete",
            Some(tenant),
            json!({ "number": number }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn set_password(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
    Body(req): Body<NewPassword>,
) -> ApiResult<Json<Credentials>> {
    if p.role == UserRole::User && p.extension.as_deref() != Some(number.as_str()) {
        return Err(ApiError::not_found());
    }
    let tenant = TenantId(tenant);
    let (pw, shown) = choose(req.password)?;
    state
        .store()
        .set_extension_password(tenant, &number, &pw)
        .await?;
    state
        .audit(
            &p,
            &source,
            "extension.password",
            Some(tenant),
            json!({ "number": number, "password_generated": shown.is_some() }),
        )
        .await?;
    Ok(Json(Credentials {
        number,
        password: shown,
    }))
}

pub(super) async fn forwarding(
    State(state): State<ApiState>,
    P((tenant, number)): P<(i64, String)>,
) -> ApiResult<Json<Forwarding>> {
    Ok(Json(
        state.store().forwarding(TenantId(tenant), &number).await?,
    ))
}

/// Replaces an extension's forwarding and do-not-disturb (checked by the
/// store as `pbx:plugin/features` checks a call handler's).
pub(super) async fn set_forwarding(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, number)): P<(i64, String)>,
    Body(req): Body<Forwarding>,
) -> ApiResult<Json<Forwarding>> {
    let tenant = TenantId(tenant);
    state.store().set_forwarding(tenant, &number, &req).await?;
    state
        .audit(
            &p,
            &source,
            "extension.forwarding",
            Some(tenant),
            json!({ "number": number, "forwarding": req }),
        )
        .await?;
    Ok(Json(req))
}
