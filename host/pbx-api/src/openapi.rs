//! The OpenAPI 3.1 document, built from the route table so it cannot drift from
//! the router. The schemas of the bodies are derived from their Rust types with
//! `utoipa` (`#[derive(ToSchema)]`) and gathered under `components/schemas`;
//! operations point at them with `$ref`. A copy is checked in at
//! `docs/openapi.json` and a test keeps it equal to what the server serves.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use crate::access::Access;
use crate::config::ApiConfig;
use crate::error::ErrorBody;
use crate::routes::{Content, table};

/// The document's component schemas by name.
pub(crate) type Schemas = BTreeMap<String, Value>;

/// Adds `T`'s schema, and those of the types it names, to `schemas`; returns
/// a reference to it.
pub(crate) fn schema_ref<T: ToSchema>(schemas: &mut Schemas) -> Value {
    let mut found = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut found);
    for (name, schema) in found {
        let schema = serde_json::to_value(schema).unwrap_or_default();
        if let Some(before) = schemas.insert(name.clone(), schema.clone()) {
            debug_assert_eq!(before, schema, "two types are named {name}");
        }
    }
    json!({ "$ref": format!("#/components/schemas/{}", T::name()) })
}

/// Like [`schema_ref`], for a JSON array of `T`.
pub(crate) fn array_ref<T: ToSchema>(schemas: &mut Schemas) -> Value {
    json!({ "type": "array", "items": schema_ref::<T>(schemas) })
}

/// The query parameters of `T` (derived with `#[derive(IntoParams)]`).
pub(crate) fn query_params<T: IntoParams>() -> Vec<Value> {
    T::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap_or_default())
        .collect()
}

/// The schema of this document's own answer.
pub(crate) fn document_schema(_: &mut Schemas) -> Value {
    json!({ "type": "object", "description": "This OpenAPI 3.1 document" })
}

/// The tags, in the order a reader meets them, with what each covers.
const TAGS: &[(&str, &str)] = &[
    ("system", "Liveness, metrics and this document"),
    (
        "auth",
        "Logging in, the session, TOTP and one's own password",
    ),
    (
        "tenants",
        "Tenants and their settings: domains, limits, calendar, call recording, media encryption, digest",
    ),
    (
        "extensions",
        "Extensions, their SIP passwords, digest and call forwarding",
    ),
    ("prompts", "A tenant's audio prompts"),
    ("recordings", "A tenant's call recordings"),
    ("voicemail", "Mailboxes: messages, PINs and retention"),
    ("users", "Provider admins and tenant users"),
    ("tokens", "Integration tokens"),
    ("cdrs", "Call records"),
    ("calls", "Calls in progress and the tenant's usage"),
    (
        "plugins",
        "Dial-plan plugins, their quarantine and log, and plugin storage",
    ),
    ("policies", "Policy plugins and their configuration"),
    ("approvals", "Destination approvals"),
    ("alerts", "Alerts"),
    ("audit", "The audit log"),
    ("trunks", "Trunks and DIDs"),
    ("bans", "Banned addresses"),
];

/// The tag of a path: its resource (for a tenant's, the part after
/// `/tenants/{tenant}`), with a tenant's settings under `tenants`.
pub(crate) fn tag(path: &str) -> &'static str {
    let mut segs = path.strip_prefix("/api/v1/").unwrap_or("").split('/');
    let first = segs.next().unwrap_or("");
    let resource = match first {
        "tenants" => segs.nth(1).unwrap_or("tenants"),
        other => other,
    };
    let resource = match resource {
        "" | "openapi.json" => "system",
        "limits" | "calendar" | "call-recording" | "media-encryption" | "digest" | "domains"
        | "suspend" | "resume" => "tenants",
        "usage" => "calls",
        "storage" => "plugins",
        "dids" => "trunks",
        other => other,
    };
    TAGS.iter()
        .find(|(t, _)| *t == resource)
        .map_or("other", |(t, _)| t)
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = if name == "tenant" || name == "id" || name == "version" {
                json!({ "type": "integer" })
            } else {
                json!({ "type": "string" })
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect()
}

/// The `content` of a request or response body.
fn content(c: Content, schemas: &mut Schemas) -> Value {
    match c {
        Content::Json(schema) => json!({ "application/json": { "schema": schema(schemas) } }),
        Content::Export(rows) => json!({
            "text/csv": { "schema": { "type": "string" } },
            "application/json": { "schema": rows(schemas) }
        }),
        Content::Events(data) => json!({
            "text/event-stream": {
                "schema": { "type": "string" },
                "x-event-data": data(schemas)
            }
        }),
        Content::Bytes(types) => types
            .iter()
            .map(|t| ((*t).to_owned(), json!({})))
            .collect::<Map<_, _>>()
            .into(),
    }
}

fn success(status: StatusCode, body: Option<Content>, schemas: &mut Schemas) -> Value {
    let description = match status {
        StatusCode::CREATED => "created",
        StatusCode::NO_CONTENT => "done; no body",
        _ => "success",
    };
    let mut resp = json!({ "description": description });
    if let Some(c) = body {
        resp["content"] = content(c, schemas);
    }
    resp
}

/// The error answers every operation may give, by status: the reference
/// name under `components/responses` and its description.
const ERRORS: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "malformed request"),
    ("401", "Unauthorized", "no valid token"),
    (
        "403",
        "Forbidden",
        "role or scope not allowed (or, for a session route, not a login session)",
    ),
    ("404", "NotFound", "missing, or another tenant's"),
    ("429", "TooManyRequests", "rate limited; see Retry-After"),
];

fn error_ref(status: &str) -> Value {
    let name = ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map_or("BadRequest", |(_, name, _)| name);
    json!({ "$ref": format!("#/components/responses/{name}") })
}

/// The document served at `GET /api/v1/openapi.json`.
pub(crate) fn document(config: &ApiConfig) -> Value {
    let mut schemas = Schemas::new();
    let error = schema_ref::<ErrorBody>(&mut schemas);
    let error_responses: Map<String, Value> = ERRORS
        .iter()
        .map(|(_, name, description)| {
            let response = json!({
                "description": description,
                "content": { "application/json": { "schema": error } }
            });
            ((*name).to_owned(), response)
        })
        .collect();
    let mut paths = Map::new();
    for r in table(config) {
        let mut op = Map::new();
        op.insert("tags".into(), json!([tag(r.path)]));
        op.insert("summary".into(), json!(r.summary));
        op.insert("operationId".into(), json!(r.operation));
        let mut params = path_params(r.path);
        params.extend(r.query.map(|q| q()).unwrap_or_default());
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(req) = r.request {
            op.insert(
                "requestBody".into(),
                json!({ "required": req.required, "content": content(req.content, &mut schemas) }),
            );
        }
        let mut responses = Map::new();
        responses.insert(
            r.ok.as_u16().to_string(),
            success(r.ok, r.response, &mut schemas),
        );
        let errors: &[&str] = match r.access {
            Access::Public => {
                op.insert("security".into(), json!([]));
                &["400", "429"]
            }
            Access::Session => &["400", "401", "403", "429"],
            Access::Global { scope, .. } | Access::Tenant { scope, .. } => {
                op.insert("x-required-scope".into(), json!(scope));
                &["400", "401", "403", "404", "429"]
            }
        };
        for status in errors {
            responses.insert((*status).to_owned(), error_ref(status));
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(r.method.as_str().to_lowercase(), Value::Object(op));
        }
    }
    let tags: Vec<Value> = TAGS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "PBX admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Provisioning and operations of the multi-tenant PBX. Errors are \
                {\"error\":{\"code\":\"...\",\"message\":\"...\"}} with stable codes."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "tags": tags,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "responses": error_responses,
            "schemas": schemas
        },
        "paths": Value::Object(paths)
    })
}
