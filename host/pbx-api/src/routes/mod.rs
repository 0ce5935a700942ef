//! Every route of the API in one table: method, path, access rule and handler.
//! The router and the OpenAPI document are both built from it.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tower_http::timeout::TimeoutLayer;

use crate::access::{Access, Roles, authorize, per_address};
use crate::error::ApiError;
use crate::state::ApiState;

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
    handler: MethodRouter<ApiState>,
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
        ),
        route(
            M::GET,
            "/metrics",
            "getMetrics",
            "Prometheus metrics",
            Access::Public,
            get(system::metrics),
        ),
        route(
            M::GET,
            "/api/v1/openapi.json",
            "getOpenApiDocument",
            "This document",
            Access::Public,
            get(system::openapi),
        ),
        route(
            M::POST,
            "/api/v1/auth/login",
            "login",
            "Log in; returns a short-lived token",
            Access::Public,
            post(login::login),
        ),
        route(
            M::POST,
            "/api/v1/auth/totp/enroll",
            "enrollTotp",
            "Start TOTP enrollment",
            Access::Session,
            post(login::totp_enroll),
        ),
        route(
            M::POST,
            "/api/v1/auth/totp/confirm",
            "confirmTotp",
            "Confirm TOTP enrollment with a code",
            Access::Session,
            post(login::totp_confirm),
        ),
        route(
            M::GET,
            "/api/v1/auth/session",
            "getSession",
            "Who the caller's session is: username, role, tenant, scopes",
            Access::Session,
            get(login::whoami),
        ),
        route(
            M::POST,
            "/api/v1/auth/logout",
            "logout",
            "Log out: every session of the caller ends",
            Access::Session,
            post(login::logout),
        ),
        route(
            M::POST,
            "/api/v1/auth/password",
            "changePassword",
            "Change one's own password (every session ends)",
            Access::Session,
            post(login::change_password),
        ),
        route(
            M::GET,
            "/api/v1/tenants",
            "listTenants",
            "List tenants",
            global(R::PROVIDER, "tenants:read"),
            get(tenants::list),
        ),
        route(
            M::POST,
            "/api/v1/tenants",
            "createTenant",
            "Create a tenant",
            global(R::PROVIDER, "tenants:write"),
            post(tenants::create),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}",
            "getTenant",
            "Show a tenant",
            tenant(R::ADMINS, "tenants:read"),
            get(tenants::show),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}",
            "deleteTenant",
            "Delete a tenant and purge its data",
            tenant(R::PROVIDER, "tenants:write"),
            delete(tenants::remove),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/suspend",
            "suspendTenant",
            "Suspend a tenant",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::suspend),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/resume",
            "resumeTenant",
            "Resume a tenant",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::resume),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/limits",
            "getTenantLimits",
            "Show a tenant's call limits (null: the host default)",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::limits),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/limits",
            "setTenantLimits",
            "Replace a tenant's call limits",
            tenant(R::PROVIDER, "tenants:write"),
            put(settings::set_limits),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/calendar",
            "getTenantCalendar",
            "Show a tenant's calendar: time zone and holidays, as its call handlers read them",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::calendar),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/calendar",
            "setTenantCalendar",
            "Replace a tenant's calendar (an IANA time zone and up to 1,000 holidays)",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_calendar),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/call-recording",
            "getCallRecording",
            "Show whether the tenant's answered calls are recorded",
            tenant(R::ADMINS, "tenants:read"),
            get(settings::call_recording),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/call-recording",
            "setCallRecording",
            "Record (or stop recording) the tenant's answered calls; both parties hear the recording-notice prompt first",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_call_recording),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/media-encryption",
            "setMediaEncryption",
            "Set a tenant's SRTP policy (required, optional or disabled)",
            tenant(R::ADMINS, "tenants:write"),
            put(settings::set_media_encryption),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/digest",
            "setTenantDigest",
            "Set the digest algorithms offered to a tenant's phones (null: the server default, MD5)",
            tenant(R::PROVIDER, "tenants:write"),
            put(settings::set_tenant_digest),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/digest",
            "setExtensionDigest",
            "Set the digest algorithms offered to one extension (null: its tenant's)",
            tenant(R::PROVIDER, "extensions:write"),
            put(settings::set_extension_digest),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/domains",
            "addTenantDomain",
            "Add a SIP domain",
            tenant(R::PROVIDER, "tenants:write"),
            post(tenants::add_domain),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions",
            "listExtensions",
            "List extensions",
            tenant(R::ADMINS, "extensions:read"),
            get(extensions::list),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/extensions",
            "createExtension",
            "Create an extension (a generated password is shown once)",
            tenant(R::ADMINS, "extensions:write"),
            post(extensions::create),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/extensions/{number}",
            "deleteExtension",
            "Delete an extension",
            tenant(R::ADMINS, "extensions:write"),
            delete(extensions::remove),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/password",
            "setExtensionPassword",
            "Set or generate an extension's SIP password",
            tenant(R::ALL, "extensions:write"),
            put(extensions::set_password),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/extensions/{number}/forwarding",
            "getForwarding",
            "Show an extension's call forwarding and do-not-disturb",
            tenant(R::ADMINS, "extensions:read"),
            get(extensions::forwarding),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/extensions/{number}/forwarding",
            "setForwarding",
            "Replace an extension's call forwarding (always, busy, no answer after N seconds) and do-not-disturb",
            tenant(R::ADMINS, "extensions:write"),
            put(extensions::set_forwarding),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts",
            "listPrompts",
            "List the tenant's prompts",
            tenant(R::ADMINS, "prompts:read"),
            get(prompts::list),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "putPrompt",
            "Upload a prompt (audio/wav 16-bit 8 kHz mono, audio/basic PCMU, audio/pcma), counted against the media quota",
            tenant(R::ADMINS, "prompts:write"),
            put(prompts::put).layer(DefaultBodyLimit::max(pbx_media::upload::MAX_UPLOAD_BYTES)),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "downloadPrompt",
            "Download a prompt as WAV",
            tenant(R::ADMINS, "prompts:read"),
            get(prompts::get),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/prompts/{name}",
            "deletePrompt",
            "Delete a prompt",
            tenant(R::ADMINS, "prompts:write"),
            delete(prompts::delete),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings",
            "listRecordings",
            "List the tenant's call recordings",
            tenant(R::ADMINS, "recordings:read"),
            get(recordings::list),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/recordings/{id}",
            "downloadRecording",
            "Download a call recording as WAV",
            tenant(R::ADMINS, "recordings:read"),
            get(recordings::download),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/recordings/{id}",
            "deleteRecording",
            "Delete a call recording",
            tenant(R::ADMINS, "recordings:write"),
            delete(recordings::delete),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            "getVoicemailRetention",
            "Show how many days the tenant keeps voicemail",
            tenant(R::ADMINS, "voicemail:read"),
            get(voicemail::retention),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/retention",
            "setVoicemailRetention",
            "Set how many days the tenant keeps voicemail (null: the default)",
            tenant(R::ADMINS, "voicemail:write"),
            put(voicemail::set_retention),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages",
            "listVoicemailMessages",
            "List a mailbox's voicemail messages (a user: their own extension's only)",
            tenant(R::ALL, "voicemail:read"),
            get(voicemail::list),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "downloadVoicemailMessage",
            "Download a voicemail message as WAV",
            tenant(R::ALL, "voicemail:read"),
            get(voicemail::download),
        ),
        route(
            M::PATCH,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "markVoicemailMessage",
            "Mark a voicemail message heard or saved",
            tenant(R::ALL, "voicemail:write"),
            patch(voicemail::mark),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/messages/{id}",
            "deleteVoicemailMessage",
            "Delete a voicemail message",
            tenant(R::ALL, "voicemail:write"),
            delete(voicemail::delete),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/voicemail/{mailbox}/pin",
            "setVoicemailPin",
            "Set a mailbox's PIN (4 to 12 digits, stored hashed)",
            tenant(R::ALL, "voicemail:write"),
            put(voicemail::set_pin),
        ),
        route(
            M::GET,
            "/api/v1/users",
            "listUsers",
            "List provider admins",
            global(R::PROVIDER, "users:read"),
            get(users::list_admins),
        ),
        route(
            M::POST,
            "/api/v1/users",
            "createUser",
            "Create a user of any role",
            global(R::PROVIDER, "users:write"),
            post(users::create_any),
        ),
        route(
            M::DELETE,
            "/api/v1/users/{username}",
            "deleteUser",
            "Remove a provider admin (never the last one)",
            global(R::PROVIDER, "users:write"),
            delete(users::remove_admin),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/users",
            "listTenantUsers",
            "List a tenant's users",
            tenant(R::ADMINS, "users:read"),
            get(users::list),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/users",
            "createTenantUser",
            "Create a tenant user",
            tenant(R::ADMINS, "users:write"),
            post(users::create),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/users/{username}",
            "deleteTenantUser",
            "Delete a tenant user",
            tenant(R::ADMINS, "users:write"),
            delete(users::remove),
        ),
        route(
            M::PATCH,
            "/api/v1/tenants/{tenant}/users/{username}",
            "updateTenantUser",
            "Change a tenant user's role, password or disabled flag (its sessions end)",
            tenant(R::ADMINS, "users:write"),
            patch(users::change),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/tokens",
            "listTokens",
            "List integration tokens",
            tenant(R::ADMINS, "tokens:write"),
            get(tokens::list),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/tokens",
            "createToken",
            "Issue an integration token (shown once)",
            tenant(R::ADMINS, "tokens:write"),
            post(tokens::create),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/tokens/{id}",
            "revokeToken",
            "Revoke an integration token",
            tenant(R::ADMINS, "tokens:write"),
            delete(tokens::revoke),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs",
            "listCdrs",
            "List call records",
            tenant(R::ALL, "cdrs:read"),
            get(cdrs::list),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/cdrs/export",
            "exportCdrs",
            "Export call records as CSV or JSON (streamed)",
            tenant(R::ALL, "cdrs:read"),
            get(cdrs::export),
        ),
        route(
            M::GET,
            "/api/v1/audit",
            "listAudit",
            "Read the audit log",
            global(R::ADMINS, "audit:read"),
            get(audit::list),
        ),
        route(
            M::POST,
            "/api/v1/audit/verify",
            "verifyAudit",
            "Verify the whole audit chain (and its purge checkpoints) with the data directory's key",
            global(R::PROVIDER, "audit:read"),
            post(audit::verify),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/calls",
            "listCalls",
            "List calls in progress",
            tenant(R::ADMINS, "calls:read"),
            get(control::calls),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/calls/{call_id}",
            "hangUpCall",
            "Hang up a call",
            tenant(R::ADMINS, "calls:control"),
            delete(control::hangup),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins",
            "listPlugins",
            "List dial-plan plugin versions",
            tenant(R::ADMINS, "plugins:read"),
            get(control::plugins),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins",
            "uploadPlugin",
            "Upload a dial-plan component (application/wasm)",
            tenant(R::ADMINS, "plugins:write"),
            post(control::install).layer(plugin_limit),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/{version}/activate",
            "activatePlugin",
            "Activate a plugin version",
            tenant(R::ADMINS, "plugins:write"),
            post(control::activate),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/plugins/rollback",
            "rollbackPlugin",
            "Roll back to the previous plugin version",
            tenant(R::ADMINS, "plugins:write"),
            post(control::rollback),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/quarantine",
            "listQuarantines",
            "Plugins quarantined for the tenant, with the reason",
            tenant(R::ADMINS, "plugins:read"),
            get(control::quarantines),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/usage",
            "getTenantUsage",
            "The tenant's calls in progress and spend today, against its limits in force",
            tenant(R::ADMINS, "calls:read"),
            get(control::usage),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log",
            "getPluginLog",
            "The tenant's plugin log, oldest line first (the newest 256 lines, kept in memory)",
            tenant(R::ADMINS, "plugins:read"),
            get(control::plugin_log),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/plugins/log/export",
            "exportPluginLog",
            "Export the tenant's plugin log as CSV or JSON (?since_ms&until_ms&format)",
            tenant(R::ADMINS, "plugins:read"),
            get(export::plugin_log),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/plugins/quarantine/{hash}",
            "liftQuarantine",
            "Lift a plugin's quarantine (a provider policy's: provider only)",
            tenant(R::ADMINS, "plugins:write"),
            delete(control::lift_quarantine),
        ),
        route(
            M::GET,
            "/api/v1/policies",
            "listPolicies",
            "List policy plugins",
            global(R::PROVIDER, "plugins:read"),
            get(policies::list),
        ),
        route(
            M::POST,
            "/api/v1/policies",
            "installPolicy",
            "Upload a policy component (application/wasm; ?name=NAME[&tenant=ID])",
            global(R::PROVIDER, "plugins:write"),
            post(policies::install).layer(plugin_limit),
        ),
        route(
            M::DELETE,
            "/api/v1/policies/{name}",
            "removePolicy",
            "Remove a policy plugin",
            global(R::PROVIDER, "plugins:write"),
            delete(policies::remove),
        ),
        route(
            M::GET,
            "/api/v1/policies/{name}/config",
            "listPolicyConfig",
            "List the provider's configuration of a policy (?tenant=ID: that tenant's overrides)",
            global(R::PROVIDER, "plugins:read"),
            get(plugin_config::provider_list),
        ),
        route(
            M::GET,
            "/api/v1/policies/{name}/config/{key}",
            "getPolicyConfig",
            "Read one key of a policy's configuration (?tenant=ID: the override)",
            global(R::PROVIDER, "plugins:read"),
            get(plugin_config::provider_get),
        ),
        route(
            M::PUT,
            "/api/v1/policies/{name}/config/{key}",
            "setPolicyConfig",
            "Set one key of a policy's configuration ({\"value\": ...}; ?tenant=ID: an override)",
            global(R::PROVIDER, "plugins:write"),
            put(plugin_config::provider_set),
        ),
        route(
            M::DELETE,
            "/api/v1/policies/{name}/config/{key}",
            "deletePolicyConfig",
            "Remove one key of a policy's configuration (?tenant=ID: the override)",
            global(R::PROVIDER, "plugins:write"),
            delete(plugin_config::provider_delete),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/storage",
            "listStorage",
            "List a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::storage_list),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "getStorageKey",
            "Read one key of a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::storage_get),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "setStorageKey",
            "Set one key of a tenant's plugin storage ({\"value\": ...})",
            tenant(R::ADMINS, "plugins:write"),
            put(plugin_config::storage_set),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/storage/{key}",
            "deleteStorageKey",
            "Remove one key of a tenant's plugin storage",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::storage_delete),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/policies",
            "listTenantPolicies",
            "List the tenant's own policies",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::tenant_policies),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/policies",
            "installTenantPolicy",
            "Upload one of the tenant's own policies (application/wasm; ?name=NAME); runs after the provider's",
            tenant(R::ADMINS, "plugins:write"),
            post(plugin_config::tenant_policy_install).layer(plugin_limit),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/{name}",
            "removeTenantPolicy",
            "Remove one of the tenant's own policies",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::tenant_policy_remove),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/policies/{name}/config",
            "listTenantPolicyConfig",
            "List the tenant's configuration of its own policy",
            tenant(R::ADMINS, "plugins:read"),
            get(plugin_config::tenant_config_list),
        ),
        route(
            M::PUT,
            "/api/v1/tenants/{tenant}/policies/{name}/config/{key}",
            "setTenantPolicyConfig",
            "Set one key of the tenant's own policy's configuration ({\"value\": ...})",
            tenant(R::ADMINS, "plugins:write"),
            put(plugin_config::tenant_config_set),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/policies/{name}/config/{key}",
            "deleteTenantPolicyConfig",
            "Remove one key of the tenant's own policy's configuration",
            tenant(R::ADMINS, "plugins:write"),
            delete(plugin_config::tenant_config_delete),
        ),
        route(
            M::GET,
            "/api/v1/approvals",
            "listApprovals",
            "List pending destination approvals (?tenant=ID narrows)",
            global(R::PROVIDER, "approvals:read"),
            get(approvals::queue),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/approvals",
            "listTenantApprovals",
            "List a tenant's destination approvals",
            tenant(R::ADMINS, "approvals:read"),
            get(approvals::list),
        ),
        route(
            M::POST,
            "/api/v1/approvals/{id}/grant",
            "grantApproval",
            "Grant a pending destination approval",
            global(R::PROVIDER, "approvals:write"),
            post(approvals::grant),
        ),
        route(
            M::POST,
            "/api/v1/approvals/{id}/deny",
            "denyApproval",
            "Deny a pending destination approval",
            global(R::PROVIDER, "approvals:write"),
            post(approvals::deny),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/alerts",
            "listTenantAlerts",
            "List a tenant's alerts",
            tenant(R::ADMINS, "alerts:read"),
            get(control::tenant_alerts),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/alerts/export",
            "exportTenantAlerts",
            "Export a tenant's alerts as CSV or JSON (?since_ms&until_ms&format, streamed)",
            tenant(R::ADMINS, "alerts:read"),
            get(export::alerts),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/audit/export",
            "exportTenantAudit",
            "Export a tenant's audit entries as CSV or JSON (?since_ms&until_ms&format, streamed)",
            tenant(R::ADMINS, "audit:read"),
            get(export::audit),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/trunks",
            "listTrunks",
            "List trunks",
            tenant(R::ADMINS, "trunks:read"),
            get(control::trunks),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/trunks",
            "addTrunk",
            "Add a trunk",
            tenant(R::ADMINS, "trunks:write"),
            post(control::add_trunk),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/trunks/{name}",
            "removeTrunk",
            "Remove a trunk",
            tenant(R::ADMINS, "trunks:write"),
            delete(control::remove_trunk),
        ),
        route(
            M::GET,
            "/api/v1/tenants/{tenant}/dids",
            "listDids",
            "List DIDs",
            tenant(R::ADMINS, "trunks:read"),
            get(control::dids),
        ),
        route(
            M::POST,
            "/api/v1/tenants/{tenant}/dids",
            "addDid",
            "Assign a DID",
            tenant(R::PROVIDER, "trunks:write"),
            post(control::add_did),
        ),
        route(
            M::DELETE,
            "/api/v1/tenants/{tenant}/dids/{number}",
            "removeDid",
            "Take a DID away from the tenant",
            tenant(R::PROVIDER, "trunks:write"),
            delete(control::remove_did),
        ),
        route(
            M::GET,
            "/api/v1/alerts",
            "listAlerts",
            "List all alerts",
            global(R::PROVIDER, "alerts:read"),
            get(control::all_alerts),
        ),
        route(
            M::GET,
            "/api/v1/bans",
            "listBans",
            "List banned addresses",
            global(R::PROVIDER, "bans:read"),
            get(control::bans),
        ),
        route(
            M::DELETE,
            "/api/v1/bans/{address}",
            "liftBan",
            "Lift a ban",
            global(R::PROVIDER, "bans:write"),
            delete(control::unban),
        ),
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
