//! The OpenAPI 3 document, built from the route table so it cannot drift from
//! the router.

use serde_json::{Map, Value, json};

use crate::access::Access;
use crate::config::ApiConfig;
use crate::routes::table;

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

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// The document served at `GET /api/v1/openapi.json`.
pub(crate) fn document(config: &ApiConfig) -> Value {
    let mut paths = Map::new();
    for r in table(config) {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert("operationId".into(), json!(r.operation));
        let params = path_params(r.path);
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        let mut responses = Map::new();
        responses.insert("200".into(), json!({ "description": "success" }));
        responses.insert("400".into(), error_response("malformed request"));
        responses.insert(
            "429".into(),
            error_response("rate limited; see Retry-After"),
        );
        match r.access {
            Access::Public => {
                op.insert("security".into(), json!([]));
            }
            Access::Session => {
                responses.insert("401".into(), error_response("no valid token"));
                responses.insert("403".into(), error_response("not a login session"));
            }
            Access::Global { scope, .. } | Access::Tenant { scope, .. } => {
                op.insert("x-required-scope".into(), json!(scope));
                responses.insert("401".into(), error_response("no valid token"));
                responses.insert("403".into(), error_response("role or scope not allowed"));
                responses.insert("404".into(), error_response("missing, or another tenant's"));
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(r.method.as_str().to_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "PBX admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Provisioning and operations of the multi-tenant PBX. Errors are \
                {\"error\":{\"code\":\"...\",\"message\":\"...\"}} with stable codes."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" }
                            }
                        }
                    }
                }
            }
        },
        "paths": Value::Object(paths)
    })
}
