//! The API contract: real answers of the router checked against the schemas of
//! the OpenAPI document it serves. Each route is called once as the provider
//! (the authorization matrix's representative calls, plus a few successes the
//! matrix does not reach); every JSON body, request and answer, must validate
//! against the schema the document gives for it.
//!
//! The check is stricter than the document: an object may have no property
//! its schema does not list (`unevaluatedProperties: false` is added to the
//! components here, not in the served document, where clients should accept
//! new fields). A field renamed on one side only therefore fails it.

use std::collections::{BTreeSet, HashSet};

use super::matrix::{Payload, matrix_cases};
use super::*;

/// The document's components with every object schema closed to properties
/// it does not list. Schemas that are parts of another (`allOf`, from
/// `#[serde(flatten)]`) stay open: closing a part would reject the other
/// parts' properties; the whole is closed instead.
fn strict_components(doc: &Value) -> Value {
    let mut components = doc["components"].clone();
    let schemas = components["schemas"].as_object_mut().expect("schemas");
    let parts: HashSet<String> = schemas
        .values()
        .filter_map(|s| s["allOf"].as_array())
        .flatten()
        .filter_map(|p| p["$ref"].as_str())
        .filter_map(|r| r.rsplit('/').next())
        .map(str::to_owned)
        .collect();
    for (name, schema) in schemas.iter_mut() {
        let object = schema.get("properties").is_some() || schema.get("allOf").is_some();
        if object && !parts.contains(name) {
            schema["unevaluatedProperties"] = json!(false);
        }
    }
    components
}

/// Why `instance` does not match `schema` (a schema of `doc`, whose `$ref`s
/// point into its components); empty when it does.
fn violations(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = schema.clone();
    root["components"] = strict_components(doc);
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The document's operation for a concrete path: the template whose
/// segments match, preferring literal segments over parameters.
fn operation<'d>(doc: &'d Value, method: &Method, path: &str) -> Option<(&'d str, &'d Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, methods) in doc["paths"].as_object()? {
        let Some(op) = methods.get(method.as_str().to_lowercase()) else {
            continue;
        };
        let tsegs: Vec<&str> = template.split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let fits = tsegs.iter().zip(&segs).all(|(t, s)| {
            let param = t.starts_with('{');
            literal += usize::from(!param && t == s);
            param || t == s
        });
        if fits && best.is_none_or(|(n, _, _)| literal > n) {
            best = Some((literal, template, op));
        }
    }
    best.map(|(_, t, op)| (t, op))
}

/// One call of the contract check: what was sent and what came back.
struct Exchange {
    method: Method,
    path: String,
    body: Option<Value>,
    status: StatusCode,
    content_type: String,
    bytes: Vec<u8>,
}

impl Fx {
    /// PUTs a WAV to `path` as the provider admin.
    async fn upload_wav(&self, path: &str) -> Exchange {
        self.send_as_root(Method::PUT, path, None, Some((silence_wav(), "audio/wav")))
            .await
    }

    async fn exchange(&self, method: Method, path: &str, body: Payload) -> Exchange {
        let (json_body, raw) = match body {
            Payload::None => (None, None),
            Payload::Json(v) => (Some(v.clone()), Some(v.to_string().into_bytes())),
            Payload::Raw(b) => (None, Some(b.to_vec())),
        };
        let raw = raw.map(|bytes| (bytes, "application/json"));
        self.send_as_root(method, path, json_body, raw).await
    }

    /// Sends `raw` (bytes, content type) to `path` as the provider admin;
    /// `json_body` is what the exchange records as the JSON sent.
    async fn send_as_root(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Value>,
        raw: Option<(Vec<u8>, &'static str)>,
    ) -> Exchange {
        let token = self.session(&self.root);
        let content = raw.as_ref().map(|(_, t)| *t);
        let mut req = request(
            method.clone(),
            path,
            Some(&token),
            raw.map(|(b, _)| b),
            "198.51.100.7",
        );
        if let Some(t) = content {
            req.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(t));
        }
        let (status, headers, bytes) = self.send(req).await;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Exchange {
            method,
            path: path.to_owned(),
            body: json_body,
            status,
            content_type,
            bytes,
        }
    }
}

/// Checks one exchange against the document (its query parameters, its JSON
/// request and answer); returns the operation id when it was a success with
/// a JSON body.
fn check(doc: &Value, x: &Exchange, failures: &mut Vec<String>) -> Option<String> {
    let what = format!("{} {}", x.method, x.path);
    let Some((template, op)) = operation(doc, &x.method, &x.path) else {
        failures.push(format!("{what}: not in the document"));
        return None;
    };
    if let Some((_, query)) = x.path.split_once('?') {
        for key in query.split('&').filter_map(|kv| kv.split('=').next()) {
            let listed = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "query" && p["name"] == key);
            if !listed {
                failures.push(format!("{what}: query parameter {key} not in the document"));
            }
        }
    }
    if let Some(body) = &x.body {
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        if schema.is_null() {
            failures.push(format!("{what}: sends JSON, the document describes none"));
        } else {
            for v in violations(doc, schema, body) {
                failures.push(format!("{what}: request: {v}"));
            }
        }
    }
    let status = x.status.as_str();
    let Some(response) = op["responses"].get(status) else {
        // Refusals the document does not list one by one (415, 409, ...)
        // still carry the error body.
        if x.status.is_success() {
            failures.push(format!("{what}: answered {status}, not in the document"));
        }
        return None;
    };
    // error answers are shared: `{"$ref": "#/components/responses/NotFound"}`
    let response = match response["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => response,
    };
    let media = x.content_type.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        if !x.bytes.is_empty() || response.get("content").is_some() {
            failures.push(format!("{what}: answered {status} without a media type"));
        }
        return None;
    }
    let Some(described) = response["content"].get(media) else {
        failures.push(format!(
            "{what} ({template}): answered {media}, not described"
        ));
        return None;
    };
    if media != "application/json" {
        return None;
    }
    let Ok(answer) = serde_json::from_slice::<Value>(&x.bytes) else {
        failures.push(format!(
            "{what}: answered application/json that is not JSON"
        ));
        return None;
    };
    for v in violations(doc, &described["schema"], &answer) {
        failures.push(format!("{what}: answer {status}: {v}"));
    }
    x.status
        .is_success()
        .then(|| op["operationId"].as_str().unwrap_or("").to_owned())
}

/// Every JSON body the router sends or answers matches the document, and
/// every operation that answers JSON was seen succeeding.
#[tokio::test]
async fn answers_match_the_document() {
    let doc = crate::openapi::document(&ApiConfig::default());
    let mut failures = Vec::new();
    let mut succeeded = BTreeSet::new();
    for c in matrix_cases() {
        let fx = Fx::new().await;
        // a row for the call-record routes to show
        fx.store
            .insert_cdrs(&[cdr(fx.a, "100", "101", T0)])
            .await
            .expect("cdr");
        let path = c
            .path
            .replace("{tenant}", &fx.a.to_string())
            .replace("{token_id}", &fx.api_a_id.to_string())
            .replace("{approval_id}", &fx.approval_a.to_string());
        let x = fx.exchange(c.method.clone(), &path, c.body).await;
        if x.status != c.ok {
            failures.push(format!(
                "{} {path}: got {}, want {}",
                c.method, x.status, c.ok
            ));
        }
        succeeded.extend(check(&doc, &x, &mut failures));
    }
    for x in extra_successes().await {
        if !x.status.is_success() {
            failures.push(format!("{} {}: got {}", x.method, x.path, x.status));
        }
        succeeded.extend(check(&doc, &x, &mut failures));
    }
    // and nothing that answers JSON went unchecked
    for methods in doc["paths"].as_object().expect("paths").values() {
        for op in methods.as_object().expect("methods").values() {
            let json_success = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .any(|(s, r)| s.starts_with('2') && r["content"]["application/json"].is_object());
            let id = op["operationId"].as_str().expect("operationId");
            if json_success && !succeeded.contains(id) {
                failures.push(format!("{id}: no successful answer was checked"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Successes the matrix's calls do not reach: a confirmed TOTP enrollment,
/// the exports as JSON, and changes to audio that exists.
async fn extra_successes() -> Vec<Exchange> {
    let fx = Fx::new().await;
    fx.store
        .insert_cdrs(&[cdr(fx.a, "100", "101", T0)])
        .await
        .expect("cdr");
    let mut out = Vec::new();
    let enroll = fx
        .exchange(Method::POST, "/api/v1/auth/totp/enroll", Payload::None)
        .await;
    let v: Value = serde_json::from_slice(&enroll.bytes).expect("enrollment");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    let now = u64::try_from(fx.now_s()).expect("time");
    let code = crate::routes::totp_for(&secret, "root")
        .expect("totp")
        .generate(now)
        .to_string();
    out.push(
        fx.exchange(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Payload::Json(json!({ "code": code })),
        )
        .await,
    );
    for export in ["cdrs/export", "alerts/export", "audit/export"] {
        let path = format!("/api/v1/tenants/{}/{export}?format=json", fx.a);
        out.push(fx.exchange(Method::GET, &path, Payload::None).await);
    }
    // Audio that exists: a prompt uploaded then removed, a call recording
    // removed, a voicemail message marked then removed.
    let prompt = format!("/api/v1/tenants/{}/prompts/menu", fx.a);
    out.push(fx.upload_wav(&prompt).await);
    out.push(fx.exchange(Method::DELETE, &prompt, Payload::None).await);
    let recording = fx
        .store
        .save_call_recording(fx.a, ("100", "101"), &silence_wav(), 100)
        .await
        .expect("recording");
    let path = format!("/api/v1/tenants/{}/recordings/{}", fx.a, recording.id);
    out.push(fx.exchange(Method::DELETE, &path, Payload::None).await);
    let message = fx
        .store
        .save_voicemail(fx.a, "100", "101", &silence_wav(), 100)
        .await
        .expect("message");
    let path = format!(
        "/api/v1/tenants/{}/voicemail/100/messages/{}",
        fx.a, message.id
    );
    // A policy installed again, then rolled back to its first version.
    let reinstall = fx
        .send_as_root(
            Method::POST,
            "/api/v1/policies?name=fraud",
            None,
            Some((b"\0asm-again".to_vec(), "application/wasm")),
        )
        .await;
    out.push(reinstall);
    out.push(
        fx.exchange(
            Method::POST,
            "/api/v1/policies/fraud/rollback",
            Payload::None,
        )
        .await,
    );
    let heard = Payload::Json(json!({ "heard": true }));
    out.push(fx.exchange(Method::PATCH, &path, heard).await);
    out.push(fx.exchange(Method::DELETE, &path, Payload::None).await);
    out
}

/// The examples in the document match their own schemas.
#[test]
fn examples_match_their_schemas() {
    let doc = crate::openapi::document(&ApiConfig::default());
    let mut failures = Vec::new();
    let mut seen = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let reference = json!({ "$ref": format!("#/components/schemas/{name}") });
        for example in schema["examples"].as_array().into_iter().flatten() {
            seen += 1;
            for v in violations(&doc, &reference, example) {
                failures.push(format!("{name}: example {example}: {v}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(seen >= 5, "the main bodies have examples ({seen} found)");
}

/// The check can fail: a field renamed in the document but not in the
/// answer, or in the answer but not in the document, is caught.
#[tokio::test]
async fn a_renamed_field_breaks_the_contract() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let (s, tenant) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}", fx.a),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let doc = crate::openapi::document(&ApiConfig::default());
    let schema = json!({ "$ref": "#/components/schemas/Tenant" });
    assert_eq!(violations(&doc, &schema, &tenant), Vec::<String>::new());

    let mut renamed_doc = doc.clone();
    let t = &mut renamed_doc["components"]["schemas"]["Tenant"];
    let realm = t["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("realm")
        .expect("realm");
    t["properties"]["primary_domain"] = realm;
    for r in t["required"].as_array_mut().expect("required") {
        if r == "realm" {
            *r = json!("primary_domain");
        }
    }
    assert!(!violations(&renamed_doc, &schema, &tenant).is_empty());

    let mut renamed_answer = tenant.clone();
    let obj = renamed_answer.as_object_mut().expect("object");
    let realm = obj.remove("realm").expect("realm");
    obj.insert("primary_domain".into(), realm);
    assert!(!violations(&doc, &schema, &renamed_answer).is_empty());
}
