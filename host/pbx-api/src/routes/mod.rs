//! Every route of the API in one table: method, path, access rule, handler,
//! and the types of its query, request and answer. The router and the OpenAPI
//! document are both built from it.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Serialize;
use serde_json::Value;
use tower_http::timeout::TimeoutLayer;
use utoipa::{IntoParams, ToSchema};

use crate::access::{Access, Roles, authorize, per_address};
use crate::error::ApiError;
use crate::openapi::{Schemas, array_ref, query_params, schema_ref};
use crate::state::ApiState;

mod alerts;
mod approvals;
mod audit;
mod cdrs;
mod control;
mod export;
mod extensions;
mod login;
mod plugin_config;
mod policies;
pub(crate) mod prompts;
mod recordings;
mod settings;
mod system;
mod tenants;
mod tokens;
mod users;
mod voicemail;

#[cfg(test)]
pub(crate) use login::{DUMMY_HASH, totp_for};

/// One route.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    /// The OpenAPI `operationId`: what the call does, in camelCase.
    pub(crate) operation: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) access: Access,
    /// The query parameters, if the route reads any.
    pub(crate) query: Option<fn() -> Vec<Value>>,
    /// The request body, if the route reads one.
    pub(crate) request: Option<Request>,
    /// The status of success, and what its answer carries (`None`: nothing).
    pub(crate) ok: StatusCode,
    pub(crate) response: Option<Content>,
    handler: MethodRouter<ApiState>,
}

/// A request body as the OpenAPI document describes it.
#[derive(Clone, Copy)]
pub(crate) struct Request {
    pub(crate) content: Content,
    /// Whether the body may be left out.
    pub(crate) required: bool,
}

/// What a body carries, for the OpenAPI document.
#[derive(Clone, Copy)]
pub(crate) enum Content {
    /// JSON. The function adds the schema (derived from a Rust type with
    /// `utoipa`) to the document's components and returns its reference.
    Json(fn(&mut Schemas) -> Value),
    /// Rows, as CSV (`?format=csv`, the default) or as a JSON array of the
    /// schema's items (`?format=json`).
    Export(fn(&mut Schemas) -> Value),
    /// Bytes of one of these media types (audio, WebAssembly, metrics text).
    Bytes(&'static [&'static str]),
    /// Server-Sent Events (`text/event-stream`) whose `data` is JSON of the
    /// schema.
    Events(fn(&mut Schemas) -> Value),
}

/// Prompt uploads: the media types `PUT .../prompts/{name}` reads.
const AUDIO_UPLOAD: &[&str] = &["audio/wav", "audio/basic", "audio/pcma"];
/// Prompts, recordings and voicemail as downloaded.
const WAV: &[&str] = &["audio/wav"];
/// Plugin and policy uploads.
const WASM: &[&str] = &["application/wasm"];

impl Route {
    /// The route reads its query string as a `T`.
    fn query<T: IntoParams>(mut self) -> Route {
        self.query = Some(query_params::<T>);
        self
    }

    /// The route reads a JSON `T`.
    fn takes<T: ToSchema>(mut self) -> Route {
        self.request = Some(Request {
            content: Content::Json(schema_ref::<T>),
            required: true,
        });
        self
    }

    /// The route reads a JSON `T` if one is sent.
    fn may_take<T: ToSchema>(mut self) -> Route {
        self.request = Some(Request {
            content: Content::Json(schema_ref::<T>),
            required: false,
        });
        self
    }

    /// The route reads bytes of one of these media types.
    fn takes_bytes(mut self, types: &'static [&'static str]) -> Route {
        self.request = Some(Request {
            content: Content::Bytes(types),
            required: true,
        });
        self
    }

    /// Success is `status` with `content`.
    fn returns(mut self, status: StatusCode, content: Content) -> Route {
        self.ok = status;
        self.response = Some(content);
        self
    }

    /// Success is 200 with a JSON `T`.
    fn gives<T: ToSchema>(self) -> Route {
        self.returns(StatusCode::OK, Content::Json(schema_ref::<T>))
    }

    /// Success is 200 with a JSON array of `T`.
    fn lists<T: ToSchema>(self) -> Route {
        self.returns(StatusCode::OK, Content::Json(array_ref::<T>))
    }

    /// Success is 201 with the created `T`.
    fn creates<T: ToSchema>(self) -> Route {
        self.returns(StatusCode::CREATED, Content::Json(schema_ref::<T>))
    }

    /// Success is 200 with bytes of one of these media types.
    fn gives_bytes(self, types: &'static [&'static str]) -> Route {
        self.returns(StatusCode::OK, Content::Bytes(types))
    }

    /// Success is 200 with rows of `T`, as CSV or JSON.
    fn exports<T: ToSchema>(self) -> Route {
        self.returns(StatusCode::OK, Content::Export(array_ref::<T>))
    }

    /// Success is 200 with a stream of events carrying a JSON `T` each.
    fn streams<T: ToSchema>(self) -> Route {
        self.returns(StatusCode::OK, Content::Events(schema_ref::<T>))
    }

    /// Success is `status` with no body.
    fn empty(mut self, status: StatusCode) -> Route {
        self.ok = status;
        self.response = None;
        self
    }
}

/// The body of a deletion that answers with what it deleted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// The name or id of what is gone.
    pub(crate) deleted: String,
}

fn route(
    method: Method,
    path: &'static str,
    operation: &'static str,
    summary: &'static str,
    access: Access,
    handler: MethodRouter<ApiState>,
) -> Route {
    Route {
        method,
        path,
        operation,
        summary,
        access,
        query: None,
        request: None,
        ok: StatusCode::OK,
        response: None,
        handler,
    }
}

const fn tenant(roles: Roles, scope: &'static str) -> Access {
    Access::Tenant { roles, scope }
}

const fn global(roles: Roles, scope: &'static str) -> Access {
    Access::Global { roles, scope }
}

/// The route table.
pub(crate) fn table(config: &crate::ApiConfig) -> Vec<Route> {
    use Method as M;
    use Roles as R;
    let plugin_limit = DefaultBodyLimit::max(config.max_plugin_bytes);
    vec![
        route(
            M::GET,
            "/healthz",
            "getHealth",
            "Liveness check",
            Access::Public,
            get(system::healthz),
        )
        .gives::<system::Health>(),
        route(
            M::GET,
            "/metrics",
            "getMetrics",
            "Prometheus metrics",
            Access::Public,
            get(system::metrics),
        )
        .gives_bytes(&["text/plain"]),
        route(
            M::GET,
            "/api/v1/openapi.json",
            "getOpenApiDocument",
            "This document",
            Access::Public,
            get(system::openapi),
        )
        .returns(StatusCode::OK, Content::Json(crate::openapi::document_schema)),
        route(
            M::POST,
            "/api/v1/auth/login",
            "login",
            "Log in; returns a short-lived token",
            Access::Public,
            post(login::login),
        )
        .takes::<login::LoginRequest>()
        .gives::<login::LoginResponse>(),
        route(
            M::POST,
            "/api/v1/auth/totp/enroll",
            "enrollTotp",
            "Start TOTP enrollment",
            Access::Session,
            post(login::totp_enroll),
        )
        .gives::<login::EnrollResponse>(),
        route(
            M::POST,
            "/api/v1/auth/totp/confirm",
            "confirmTotp",
            "Confirm TOTP enrollment with a code",
            Access::Session,
            post(login::totp_confirm),
        )
        .takes::<login::ConfirmRequest>()
        .gives::<login::TotpConfirmed>(),
        route(
            M::GET,
            "/api/v1/auth/session",
            "getSession",
            "Who the caller's session is: username, role, tenant, scopes",
            Access::Session,
            get(login::whoami),
        )
        .gives::<login::SessionInfo>(),
        route(
            M::POST,
            "/api/v1/auth/logout",
            "logout",
            "Log out: every session of the caller ends",
            Access::Session,
            post(login::logout),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::POST,
            "/api/v1/auth/password",
            "changePassword",
            "Change one's own password (every session ends)",
            Access::Session,
            post(login::change_password),
        )
        .takes::<login::PasswordChange>()
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants",
            "listTenants",
            "List tenants",
            global(R::PROVIDER, "tenants:read"),
            get(tenants::list),
        )
        .lists::<store::Tenant>(),
        route(
            M::POST,
            "/api/v1/tenants",
            "createTenant",
            "Create a tenant",
            global(R::PROVIDER, "tenants:write"),
            post(tenants::create),
        )
        .takes::<tenants::NewTenant>()
        .creates::<store::Tenant>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}",
            "getTenant",
            "Show a tenant",
            tenant(R::ADMINS, "tenants:read"),
            get(tenants::show),
        )
        .gives::<store::Tenant>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}",
            "deleteTenant",
            "Delete a tenant and purge its data",
            tenant(R::PROVIDER, "tenants:write"),
            delete(tenants::remove),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/suspend",
            "suspendTenant",
            "Suspend a tenant",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::suspend),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/resume",
            "resumeTenant",
            "Resume a tenant",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::resume),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/limits",
            "getTenantLimits",
            "Show a tenant's call limits (null: the host default)",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::limits),
        )
        .gives::<store::TenantLimits>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/limits",
            "setTenantLimits",
            "Replace a tenant's call limits",
            tenant(R::PROVIDER, "tenants:write"),
            put(settings::set_limits),
        )
        .takes::<settings::LimitsBody>()
        .gives::<store::TenantLimits>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/calendar",
            "getTenantCalendar",
            "Show a tenant's calendar: time zone and holidays, as its call handlers read them",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::calendar),
        )
        .gives::<store::Calendar>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/calendar",
            "setTenantCalendar",
            "Replace a tenant's calendar (an IANA time zone and up to 1,000 holidays)",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_calendar),
        )
        .takes::<store::Calendar>()
        .gives::<store::Calendar>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/call-recording",
            "getCallRecording",
            "Show whether the tenant's answered calls are recorded",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::call_recording),
        )
        .gives::<settings::CallRecordingBody>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/call-recording",
            "setCallRecording",
            "Record (or stop recording) the tenant's answered calls; both parties hear the recording-notice prompt first",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_call_recording),
        )
        .takes::<settings::CallRecordingBody>()
        .gives::<settings::CallRecordingBody>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/media-encryption",
            "setMediaEncryption",
            "Set a tenant's SRTP policy (required, optional or disabled)",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_media_encryption),
        )
        .takes::<settings::MediaBody>()
        .gives::<settings::MediaBody>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/digest",
            "setTenantDigest",
            "Set the digest algorithms offered to a tenant's phones (null: the server default, MD5)",
            tenant(R::PROVIDER, "tenants:write"),
            put(settings::set_tenant_digest),
        )
        .takes::<settings::DigestBody>()
        .gives::<settings::DigestBody>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/digest",
            "setExtensionDigest",
            "Set the digest algorithms offered to one extension (null: its tenant's)",
            tenant(R::PROVIDER, "extensions:write"),
            put(settings::set_extension_digest),
        )
        .takes::<settings::DigestBody>()
        .gives::<settings::DigestBody>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/domains",
            "addTenantDomain",
            "Add a SIP domain",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::add_domain),
        )
        .takes::<tenants::NewDomain>()
        .empty(StatusCode::CREATED),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions",
            "listExtensions",
            "List extensions",
            tenant(R::ADMINS, "extensions:read"),
            get(extensions::list),
        )
        .lists::<extensions::ExtensionView>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/extensions",
            "createExtension",
            "Create an extension (a generated password is shown once)",
            tenant(R::ADMINS, "extensions:write"),
            post(extensions::create),
        )
        .takes::<extensions::NewExtension>()
        .creates::<extensions::Credentials>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/extensions/{number}",
            "deleteExtension",
            "Delete an extension",
            tenant(R::ADMINS, "extensions:write"),
            delete(extensions::remove),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/password",
            "setExtensionPassword",
            "Set or generate an extension's SIP password",
            tenant(R::ALL, "extensions:write"),
            put(extensions::set_password),
        )
        .takes::<extensions::NewPassword>()
        .gives::<extensions::Credentials>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/extensions/{number}/browser-credentials",
            "issueBrowserCredentials",
            "Issue short-lived SIP credentials for a browser phone on an extension",
            tenant(R::ALL, "extensions:write"),
            post(extensions::browser_credentials),
        )
        .gives::<extensions::BrowserCredentials>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions/{number}/forwarding",
            "getForwarding",
            "Show an extension's call forwarding and do-not-disturb",
            tenant(R::ADMINS, "extensions:read"),
            get(extensions::forwarding),
        )
        .gives::<store::Forwarding>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/forwarding",
            "setForwarding",
            "Replace an extension's call forwarding (always, busy, no answer after N seconds) and do-not-disturb",
            tenant(R::ADMINS, "extensions:write"),
            put(extensions::set_forwarding),
        )
        .takes::<store::Forwarding>()
        .gives::<store::Forwarding>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts",
            "listPrompts",
            "List the tenant's prompts",
            tenant(R::ADMINS, "prompts:read"),
            get(prompts::list),
        )
        .lists::<store::PromptInfo>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "putPrompt",
            "Upload a prompt (audio/wav 16-bit 8 kHz mono, audio/basic PCMU, audio/pcma), counted against the media quota",
            tenant(R::ADMINS, "prompts:write"),
            put(prompts::put).layer(DefaultBodyLimit::max(pbx_media::upload::MAX_UPLOAD_BYTES)),
        )
        .takes_bytes(AUDIO_UPLOAD)
        .gives::<store::PromptInfo>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "downloadPrompt",
            "Download a prompt as WAV",
            tenant(R::ADMINS, "prompts:read"),
            get(prompts::get),
        )
        .gives_bytes(WAV),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "deletePrompt",
            "Delete a prompt",
            tenant(R::ADMINS, "prompts:write"),
            delete(prompts::delete),
        )
        .gives::<Deleted>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings",
            "listRecordings",
            "List the tenant's call recordings",
            tenant(R::ADMINS, "recordings:read"),
            get(recordings::list),
        )
        .lists::<store::CallRecording>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings/{id}",
            "downloadRecording",
            "Download a call recording as WAV",
            tenant(R::ADMINS, "recordings:read"),
            get(recordings::download),
        )
        .gives_bytes(WAV),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/recordings/{id}",
            "deleteRecording",
            "Delete a call recording",
            tenant(R::ADMINS, "recordings:write"),
            delete(recordings::delete),
        )
        .gives::<Deleted>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            "getVoicemailRetention",
            "Show how many days the tenant keeps voicemail",
            tenant(R::ADMINS, "voicemail:read"),
            get(voicemail::retention),
        )
        .gives::<voicemail::RetentionBody>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            "setVoicemailRetention",
            "Set how many days the tenant keeps voicemail (null: the default)",
            tenant(R::ADMINS, "voicemail:write"),
            put(voicemail::set_retention),
        )
        .takes::<voicemail::RetentionBody>()
        .gives::<voicemail::RetentionBody>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages",
            "listVoicemailMessages",
            "List a mailbox's voicemail messages (a user: their own extension's only)",
            tenant(R::ALL, "voicemail:read"),
            get(voicemail::list),
        )
        .lists::<store::VoicemailMessage>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "downloadVoicemailMessage",
            "Download a voicemail message as WAV",
            tenant(R::ALL, "voicemail:read"),
            get(voicemail::download),
        )
        .gives_bytes(WAV),
        route(
            M::PATCH,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "markVoicemailMessage",
            "Mark a voicemail message heard or saved",
            tenant(R::ALL, "voicemail:write"),
            patch(voicemail::mark),
        )
        .takes::<voicemail::MarkBody>()
        .gives::<voicemail::Marked>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "deleteVoicemailMessage",
            "Delete a voicemail message",
            tenant(R::ALL, "voicemail:write"),
            delete(voicemail::delete),
        )
        .gives::<Deleted>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/pin",
            "setVoicemailPin",
            "Set a mailbox's PIN (4 to 12 digits, stored hashed)",
            tenant(R::ALL, "voicemail:write"),
            put(voicemail::set_pin),
        )
        .takes::<voicemail::PinBody>()
        .gives::<voicemail::PinSet>(),
        route(
            M::GET,
            "/api/v1/users",
            "listUsers",
            "List provider admins",
            global(R::PROVIDER, "users:read"),
            get(users::list_admins),
        )
        .lists::<store::User>(),
        route(
            M::POST,
            "/api/v1/users",
            "createUser",
            "Create a user of any role",
            global(R::PROVIDER, "users:write"),
            post(users::create_any),
        )
        .takes::<users::NewUserRequest>()
        .creates::<store::User>(),
        route(
            M::DELETE,
            "/api/v1/users/{username}",
            "deleteUser",
            "Remove a provider admin (never the last one)",
            global(R::PROVIDER, "users:write"),
            delete(users::remove_admin),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/users",
            "listTenantUsers",
            "List a tenant's users",
            tenant(R::ADMINS, "users:read"),
            get(users::list),
        )
        .lists::<store::User>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/users",
            "createTenantUser",
            "Create a tenant user",
            tenant(R::ADMINS, "users:write"),
            post(users::create),
        )
        .takes::<users::NewUserRequest>()
        .creates::<store::User>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/users/{username}",
            "deleteTenantUser",
            "Delete a tenant user",
            tenant(R::ADMINS, "users:write"),
            delete(users::remove),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::PATCH,
            "/api/v1/tenants/{tenant}/users/{username}",
            "updateTenantUser",
            "Change a tenant user's role, password or disabled flag (its sessions end)",
            tenant(R::ADMINS, "users:write"),
            patch(users::change),
        )
        .takes::<users::UserChangeRequest>()
        .gives::<store::User>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/tokens",
            "listTokens",
            "List integration tokens",
            tenant(R::ADMINS, "tokens:write"),
            get(tokens::list),
        )
        .lists::<store::ApiToken>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/tokens",
            "createToken",
            "Issue an integration token (shown once)",
            tenant(R::ADMINS, "tokens:write"),
            post(tokens::create),
        )
        .takes::<tokens::NewTokenRequest>()
        .creates::<tokens::IssuedToken>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/tokens/{id}",
            "revokeToken",
            "Revoke an integration token",
            tenant(R::ADMINS, "tokens:write"),
            delete(tokens::revoke),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs",
            "listCdrs",
            "List call records",
            tenant(R::ALL, "cdrs:read"),
            get(cdrs::list),
        )
        .query::<cdrs::CdrQuery>()
        .lists::<store::Cdr>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs/export",
            "exportCdrs",
            "Export call records as CSV or JSON (streamed)",
            tenant(R::ALL, "cdrs:read"),
            get(cdrs::export),
        )
        .query::<cdrs::CdrQuery>()
        .exports::<store::Cdr>(),
        route(
            M::GET,
            "/api/v1/audit",
            "listAudit",
            "Read the audit log",
            global(R::ADMINS, "audit:read"),
            get(audit::list),
        )
        .query::<audit::AuditQuery>()
        .lists::<store::AuditEntry>(),
        route(
            M::POST,
            "/api/v1/audit/verify",
            "verifyAudit",
            "Verify the whole audit chain (and its purge checkpoints) with the data directory's key",
            global(R::PROVIDER, "audit:read"),
            post(audit::verify),
        )
        .gives::<store::AuditReport>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/calls",
            "listCalls",
            "List calls in progress",
            tenant(R::ADMINS, "calls:read"),
            get(control::calls),
        )
        .lists::<crate::control::CallInfo>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/calls/{call_id}",
            "hangUpCall",
            "Hang up a call",
            tenant(R::ADMINS, "calls:control"),
            delete(control::hangup),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins",
            "listPlugins",
            "List dial-plan plugin versions",
            tenant(R::ADMINS, "plugins:read"),
            get(control::plugins),
        )
        .lists::<crate::control::PluginInfo>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins",
            "uploadPlugin",
            "Upload a dial-plan component (application/wasm)",
            tenant(R::ADMINS, "plugins:write"),
            post(control::install).layer(plugin_limit),
        )
        .takes_bytes(WASM)
        .creates::<crate::control::PluginInfo>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/{version}/activate",
            "activatePlugin",
            "Activate a plugin version",
            tenant(R::ADMINS, "plugins:write"),
            post(control::activate),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/rollback",
            "rollbackPlugin",
            "Roll back to the previous plugin version",
            tenant(R::ADMINS, "plugins:write"),
            post(control::rollback),
        )
        .gives::<crate::control::PluginInfo>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/quarantine",
            "listQuarantines",
            "Plugins quarantined for the tenant, with the reason",
            tenant(R::ADMINS, "plugins:read"),
            get(control::quarantines),
        )
        .lists::<crate::control::QuarantineInfo>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/usage",
            "getTenantUsage",
            "The tenant's calls in progress and spend today, against its limits in force",
            tenant(R::ADMINS, "calls:read"),
            get(control::usage),
        )
        .gives::<crate::control::TenantUsage>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log",
            "getPluginLog",
            "The tenant's plugin log, oldest line first (the newest 256 lines, kept in memory)",
            tenant(R::ADMINS, "plugins:read"),
            get(control::plugin_log),
        )
        .lists::<crate::control::PluginLogLine>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log/export",
            "exportPluginLog",
            "Export the tenant's plugin log as CSV or JSON (?since_ms&until_ms&format)",
            tenant(R::ADMINS, "plugins:read"),
            get(export::plugin_log),
        )
        .query::<export::ExportQuery>()
        .exports::<crate::control::PluginLogLine>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/plugins/quarantine/{hash}",
            "liftQuarantine",
            "Lift a plugin's quarantine (a provider policy's: provider only)",
            tenant(R::ADMINS, "plugins:write"),
            delete(control::lift_quarantine),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/policies",
            "listPolicies",
            "List policy plugins",
            global(R::PROVIDER, "plugins:read"),
            get(policies::list),
        )
        .lists::<crate::control::PolicyInfo>(),
        route(
            M::POST,
            "/api/v1/policies",
            "installPolicy",
            "Upload a policy component (application/wasm; ?name=NAME[&tenant=ID])",
            global(R::PROVIDER, "plugins:write"),
            post(policies::install).layer(plugin_limit),
        )
        .query::<policies::InstallQuery>()
        .takes_bytes(WASM)
        .creates::<crate::control::PolicyInfo>(),
        route(
            M::DELETE,
            "/api/v1/policies/{name}",
            "removePolicy",
            "Remove a policy plugin",
            global(R::PROVIDER, "plugins:write"),
            delete(policies::remove),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::POST,
            "/api/v1/policies/{name}/rollback",
            "rollbackPolicy",
            "Go back to a policy's version before its last install (the one replaced is kept)",
            global(R::PROVIDER, "plugins:write"),
            post(policies::rollback),
        )
        .gives::<crate::control::PolicyInfo>(),
        route(
            M::GET,
            "/api/v1/policies/{name}/config",
            "listPolicyConfig",
            "List the provider's configuration of a policy (?tenant=ID: that tenant's overrides)",
            global(R::PROVIDER, "plugins:read"),
            get(plugin_config::provider_list),
        )
        .query::<plugin_config::ScopeQuery>()
        .lists::<plugin_config::ConfigItem>(),
        route(
            M::GET,
            "/api/v1/policies/{name}/config/{key}",
            "getPolicyConfig",
            "Read one key of a policy's configuration (?tenant=ID: the override)",
            global(R::PROVIDER, "plugins:read"),
            get(plugin_config::provider_get),
        )
        .query::<plugin_config::ScopeQuery>()
        .gives::<plugin_config::ConfigItem>(),
        route(
            M::PUT,
            "/api/v1/policies/{name}/config/{key}",
            "setPolicyConfig",
            "Set one key of a policy's configuration ({\"value\": ...}; ?tenant=ID: an override)",
            global(R::PROVIDER, "plugins:write"),
            put(plugin_config::provider_set),
        )
        .query::<plugin_config::ScopeQuery>()
        .takes::<plugin_config::ValueBody>()
        .gives::<plugin_config::ConfigItem>(),
        route(
            M::DELETE,
            "/api/v1/policies/{name}/config/{key}",
            "deletePolicyConfig",
            "Remove one key of a policy's configuration (?tenant=ID: the override)",
            global(R::PROVIDER, "plugins:write"),
            delete(plugin_config::provider_delete),
        )
        .query::<plugin_config::ScopeQuery>()
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/storage",
            "listStorage",
            "List a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::storage_list),
        )
        .lists::<plugin_config::StorageItem>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "getStorageKey",
            "Read one key of a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::storage_get),
        )
        .gives::<plugin_config::StorageItem>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "setStorageKey",
            "Set one key of a tenant's plugin storage ({\"value\": ...})",
            tenant(R::ADMINS, "plugins:write"),
            put(plugin_config::storage_set),
        )
        .takes::<plugin_config::ValueBody>()
        .gives::<plugin_config::StorageItem>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "deleteStorageKey",
            "Remove one key of a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::storage_delete),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/policies",
            "listTenantPolicies",
            "List the tenant's own policies",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::tenant_policies),
        )
        .lists::<store::TenantPolicy>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/policies",
            "installTenantPolicy",
            "Upload one of the tenant's own policies (application/wasm; ?name=NAME); runs after the provider's",
            tenant(R::ADMINS, "plugins:write"),
            post(plugin_config::tenant_policy_install).layer(plugin_limit),
        )
        .query::<plugin_config::NameQuery>()
        .takes_bytes(WASM)
        .creates::<store::TenantPolicy>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/{name}",
            "removeTenantPolicy",
            "Remove one of the tenant's own policies",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::tenant_policy_remove),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/policies/{name}/config",
            "listTenantPolicyConfig",
            "List the tenant's configuration of its own policy",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::tenant_config_list),
        )
        .lists::<plugin_config::ConfigItem>(),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/policies/{name}/config/{key}",
            "setTenantPolicyConfig",
            "Set one key of the tenant's own policy's configuration ({\"value\": ...})",
            tenant(R::ADMINS, "plugins:write"),
            put(plugin_config::tenant_config_set),
        )
        .takes::<plugin_config::ValueBody>()
        .gives::<plugin_config::ConfigItem>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/{name}/config/{key}",
            "deleteTenantPolicyConfig",
            "Remove one key of the tenant's own policy's configuration",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::tenant_config_delete),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/approvals",
            "listApprovals",
            "List pending destination approvals (?tenant=ID narrows)",
            global(R::PROVIDER, "approvals:read"),
            get(approvals::queue),
        )
        .query::<approvals::QueueQuery>()
        .lists::<store::Approval>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/approvals",
            "listTenantApprovals",
            "List a tenant's destination approvals",
            tenant(R::ADMINS, "approvals:read"),
            get(approvals::list),
        )
        .lists::<store::Approval>(),
        route(
            M::POST,
            "/api/v1/approvals/{id}/grant",
            "grantApproval",
            "Grant a pending destination approval",
            global(R::PROVIDER, "approvals:write"),
            post(approvals::grant),
        )
        .may_take::<approvals::Decision>()
        .gives::<store::Approval>(),
        route(
            M::POST,
            "/api/v1/approvals/{id}/deny",
            "denyApproval",
            "Deny a pending destination approval",
            global(R::PROVIDER, "approvals:write"),
            post(approvals::deny),
        )
        .may_take::<approvals::Decision>()
        .gives::<store::Approval>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/alerts",
            "listTenantAlerts",
            "List a tenant's alerts",
            tenant(R::ADMINS, "alerts:read"),
            get(control::tenant_alerts),
        )
        .lists::<crate::control::Alert>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/alerts/export",
            "exportTenantAlerts",
            "Export a tenant's alerts as CSV or JSON (?since_ms&until_ms&format, streamed)",
            tenant(R::ADMINS, "alerts:read"),
            get(export::alerts),
        )
        .query::<export::ExportQuery>()
        .exports::<store::AlertRecord>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/audit/export",
            "exportTenantAudit",
            "Export a tenant's audit entries as CSV or JSON (?since_ms&until_ms&format, streamed)",
            tenant(R::ADMINS, "audit:read"),
            get(export::audit),
        )
        .query::<export::ExportQuery>()
        .exports::<store::AuditEntry>(),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/trunks",
            "listTrunks",
            "List trunks",
            tenant(R::ADMINS, "trunks:read"),
            get(control::trunks),
        )
        .lists::<crate::control::TrunkInfo>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/trunks",
            "addTrunk",
            "Add a trunk",
            tenant(R::ADMINS, "trunks:write"),
            post(control::add_trunk),
        )
        .takes::<crate::control::NewTrunk>()
        .creates::<crate::control::TrunkInfo>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/trunks/{name}",
            "removeTrunk",
            "Remove a trunk",
            tenant(R::ADMINS, "trunks:write"),
            delete(control::remove_trunk),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/dids",
            "listDids",
            "List DIDs",
            tenant(R::ADMINS, "trunks:read"),
            get(control::dids),
        )
        .lists::<crate::control::Did>(),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/dids",
            "addDid",
            "Assign a DID",
            tenant(R::PROVIDER, "trunks:write"),
            post(control::add_did),
        )
        .takes::<crate::control::Did>()
        .creates::<crate::control::Did>(),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/dids/{number}",
            "removeDid",
            "Take a DID away from the tenant",
            tenant(R::PROVIDER, "trunks:write"),
            delete(control::remove_did),
        )
        .empty(StatusCode::NO_CONTENT),
        route(
            M::GET,
            "/api/v1/alerts",
            "listAlerts",
            "List all alerts",
            global(R::PROVIDER, "alerts:read"),
            get(control::all_alerts),
        )
        .lists::<crate::control::Alert>(),
        route(
            M::GET,
            "/api/v1/alerts/stream",
            "streamAlerts",
            "Alerts as they are raised, as Server-Sent Events (`event: alert`, JSON data; a heartbeat comment every 15 s). Provider admins: every tenant's (?tenant=ID narrows); tenant admins: their own. ?after_id=ID (or Last-Event-ID) starts with the stored ones after it",
            global(R::ADMINS, "alerts:read"),
            get(alerts::stream),
        )
        .query::<alerts::StreamQuery>()
        .streams::<store::AlertRecord>(),
        route(
            M::GET,
            "/api/v1/bans",
            "listBans",
            "List banned addresses",
            global(R::PROVIDER, "bans:read"),
            get(control::bans),
        )
        .lists::<crate::control::Ban>(),
        route(
            M::DELETE,
            "/api/v1/bans/{address}",
            "liftBan",
            "Lift a ban",
            global(R::PROVIDER, "bans:write"),
            delete(control::unban),
        )
        .empty(StatusCode::NO_CONTENT),
    ]
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Turns the bare 408 of the timeout layer into a JSON error.
async fn json_timeout(resp: Response) -> Response {
    if resp.status() == StatusCode::REQUEST_TIMEOUT && resp.headers().get("content-type").is_none()
    {
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "request timed out")
            .into_response();
    }
    resp
}

/// Every answer of the API may carry a secret (a token, a TOTP seed, a
/// generated password) or tenant data, so none may be cached anywhere.
async fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The API's router. Tests drive it in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: ApiState) -> Router {
    let config = state.config().clone();
    let mut r: Router<ApiState> = Router::new();
    for rt in table(&config) {
        let layered = rt
            .handler
            .route_layer(from_fn_with_state((state.clone(), rt.access), authorize));
        r = r.route(rt.path, layered);
    }
    // Layers run outside in: the per-address limit, then `no_store` and
    // `json_timeout` (outside the timeout, so its bare 408 becomes our JSON
    // error), then the timeout, which also covers reading a stalled body.
    // The web console: public static files; everything it shows comes from
    // the routes above, under their access rules.
    r = r
        .route("/", get(crate::console::page))
        .route("/console/{file}", get(crate::console::file));
    r.fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_s.max(1)),
        ))
        .layer(map_response(json_timeout))
        .layer(map_response(no_store))
        .layer(from_fn_with_state(state.clone(), per_address))
        .with_state(state)
}
