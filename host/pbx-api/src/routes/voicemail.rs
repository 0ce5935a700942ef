//! Voicemail mailboxes: list, download (WAV), mark, delete messages (the
//! extension's phones then hear the new counts), and set a mailbox's PIN. A
//! `user` reaches only the mailbox of their own extension, a tenant admin
//! every mailbox of their tenant; anything else (another tenant's mailbox,
//! someone else's, a message that does not exist) is the same 404.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use store::{TenantId, UserRole, VoicemailMessage};
use utoipa::ToSchema;

use crate::access::{Body, P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

use super::Deleted;

/// A user may open only their own extension's mailbox; everyone the route
/// admits otherwise may open any of the tenant's. Refused the same way as a
/// mailbox that does not exist.
fn reachable(p: &Principal, mailbox: &str) -> ApiResult<()> {
    if p.role == UserRole::User && p.extension.as_deref() != Some(mailbox) {
        return Err(ApiError::not_found());
    }
    Ok(())
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    P((tenant, mailbox)): P<(i64, String)>,
) -> ApiResult<Json<Vec<VoicemailMessage>>> {
    reachable(&p, &mailbox)?;
    let messages = state
        .store()
        .voicemail_messages(TenantId(tenant), &mailbox)
        .await?;
    Ok(Json(messages))
}

pub(super) async fn download(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    P((tenant, mailbox, id)): P<(i64, String, String)>,
) -> ApiResult<Response> {
    reachable(&p, &mailbox)?;
    let Some(wav) = state
        .store()
        .voicemail_audio(TenantId(tenant), &mailbox, &id)
        .await?
    else {
        return Err(ApiError::not_found());
    };
    Ok((
        [
            (CONTENT_TYPE, "audio/wav".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"voicemail-{mailbox}-{id}.wav\""),
            ),
        ],
        wav,
    )
        .into_response())
}

/// What a message is marked as.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkBody {
    heard: bool,
    #[serde(default)]
    saved: bool,
}

pub(super) async fn mark(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, mailbox, id)): P<(i64, String, String)>,
    Body(req): Body<MarkBody>,
) -> ApiResult<Json<Marked>> {
    reachable(&p, &mailbox)?;
    let tenant = TenantId(tenant);
    if !state
        .store()
        .mark_voicemail(tenant, &mailbox, &id, req.heard, req.saved)
        .await?
    {
        return Err(ApiError::not_found());
    }
    state
        .inner
        .control
        .mailbox_changed(tenant, mailbox.clone())
        .await;
    state
        .audit(
            &p,
            &source,
            "voicemail.mark",
            Some(tenant),
            json!({ "mailbox": mailbox, "id": id, "heard": req.heard, "saved": req.saved }),
        )
        .await?;
    Ok(Json(Marked {
        id,
        heard: req.heard,
        saved: req.saved,
    }))
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, mailbox, id)): P<(i64, String, String)>,
) -> ApiResult<Json<Deleted>> {
    reachable(&p, &mailbox)?;
    let tenant = TenantId(tenant);
    if !state
        .store()
        .delete_voicemail(tenant, &mailbox, &id)
        .await?
    {
        return Err(ApiError::not_found());
    }
    state
        .inner
        .control
        .mailbox_changed(tenant, mailbox.clone())
        .await;
    state
        .audit(
            &p,
            &source,
            "voicemail.delete",
            Some(tenant),
            json!({ "mailbox": mailbox, "id": id }),
        )
        .await?;
    Ok(Json(Deleted { deleted: id }))
}

/// A message's flags after marking it.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct Marked {
    id: String,
    heard: bool,
    saved: bool,
}

/// The answer to setting a PIN: a PIN given is never shown back; a
/// generated one is shown this once.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(examples(json!({"mailbox": "1000", "pin_set": true, "pin": "483920"})))]
pub(crate) struct PinSet {
    mailbox: String,
    pin_set: bool,
    /// Only when generated; never stored in clear or shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
}

/// A mailbox PIN: 4 to 12 digits; absent, one is generated (a reset).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinBody {
    #[serde(default)]
    pin: Option<String>,
}

/// Digits of a generated PIN.
const GENERATED_PIN_DIGITS: usize = 6;

fn generated_pin() -> String {
    (0..GENERATED_PIN_DIGITS)
        .map(|_| char::from(b'0' + rand::random_range(0..10u8)))
        .collect()
}

pub(super) async fn set_pin(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, mailbox)): P<(i64, String)>,
    Body(req): Body<PinBody>,
) -> ApiResult<Json<PinSet>> {
    reachable(&p, &mailbox)?;
    let tenant = TenantId(tenant);
    let shown = req.pin.is_none().then(generated_pin);
    let pin = req.pin.as_deref().or(shown.as_deref()).unwrap_or_default();
    state
        .store()
        .set_voicemail_pin(tenant, &mailbox, pin)
        .await?;
    // The PIN itself is never logged.
    state
        .audit(
            &p,
            &source,
            "voicemail.pin",
            Some(tenant),
            json!({ "mailbox": mailbox, "pin_generated": shown.is_some() }),
        )
        .await?;
    Ok(Json(PinSet {
        mailbox,
        pin_set: true,
        pin: shown,
    }))
}

/// How long the tenant keeps voicemail, in days (`null`: the default).
#[derive(Debug, serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    days: Option<u32>,
}

pub(super) async fn retention(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<RetentionBody>> {
    let days = state.store().voicemail_retention(TenantId(tenant)).await?;
    Ok(Json(RetentionBody { days }))
}

pub(super) async fn set_retention(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P(tenant): P<i64>,
    Body(req): Body<RetentionBody>,
) -> ApiResult<Json<RetentionBody>> {
    let tenant = TenantId(tenant);
    state
        .store()
        .set_voicemail_retention(tenant, req.days)
        .await?;
    state
        .audit(
            &p,
            &source,
            "voicemail.retention",
            Some(tenant),
            json!({ "days": req.days }),
        )
        .await?;
    Ok(Json(req))
}
