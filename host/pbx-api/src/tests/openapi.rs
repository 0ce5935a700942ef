//! The OpenAPI document.

use super::*;

#[tokio::test]
async fn openapi_lists_every_route() {
    let fx = Fx::new().await;
    let (s, doc) = fx
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let table = crate::routes::table(&ApiConfig::default());
    let mut count = 0;
    for r in &table {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from the document",
            r.method,
            r.path
        );
        if r.path.contains('{') {
            assert!(op["parameters"].is_array(), "{} has no parameters", r.path);
        }
    }
    // and everything the document lists is served (never the router's fallback)
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            count += 1;
            let uri = path
                .replace("{tenant}", "1")
                .replace("{number}", "100")
                .replace("{username}", "x")
                .replace("{id}", "1")
                .replace("{call_id}", "c1")
                .replace("{version}", "1")
                .replace("{address}", "192.0.2.1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (s, v) = fx.call(m, &uri, None, None).await;
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(v["error"]["message"], "no such route", "{method} {path}");
        }
    }
    assert_eq!(count, table.len());
}

/// Operations have intent names (`listExtensions`), each unique, in
/// camelCase.
#[test]
fn operations_have_unique_intent_names() {
    let table = crate::routes::table(&crate::ApiConfig::default());
    let mut seen = std::collections::HashSet::new();
    for r in &table {
        let name = r.operation;
        assert!(
            name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name} is not camelCase"
        );
        assert!(seen.insert(name), "{name} names two operations");
    }
    let doc = crate::openapi::document(&crate::ApiConfig::default());
    assert_eq!(
        doc["paths"]["/api/v1/tenants/{tenant}/extensions"]["get"]["operationId"],
        "listExtensions"
    );
}

/// Where the checked-in copy of the document lives, from this crate.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn pretty(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("JSON");
    text.push('\n');
    text
}

/// The document in `docs/openapi.json` is the one the server serves: a change
/// to a route or a body type shows up in review as a change to that file.
/// After such a change, regenerate it with
/// `cargo test -p pbx-api -- --ignored write_openapi_document`.
#[test]
fn checked_in_document_is_current() {
    let served = crate::openapi::document(&ApiConfig::default());
    let text = std::fs::read_to_string(CHECKED_IN).expect("docs/openapi.json");
    let checked_in: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    assert!(
        checked_in == served,
        "docs/openapi.json differs from the served document; regenerate it with \
         `cargo test -p pbx-api -- --ignored write_openapi_document`"
    );
    assert_eq!(text, pretty(&served), "docs/openapi.json is not as written");
}

/// Writes `docs/openapi.json` (run on purpose, see above).
#[test]
#[ignore = "writes docs/openapi.json"]
fn write_openapi_document() {
    let served = crate::openapi::document(&ApiConfig::default());
    std::fs::write(CHECKED_IN, pretty(&served)).expect("write docs/openapi.json");
}

/// Every operation has a tag the document lists, a summary and a success
/// answer, and every `$ref` in the document points at something in it.
#[test]
fn operations_are_tagged_and_references_resolve() {
    let doc = crate::openapi::document(&ApiConfig::default());
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            let tag = op["tags"][0].as_str().unwrap_or("");
            assert!(
                tags.contains(&tag),
                "{method} {path}: tag {tag:?} not listed"
            );
            assert!(op["summary"].is_string(), "{method} {path}: no summary");
            let success = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .any(|s| s.starts_with('2'));
            assert!(success, "{method} {path}: no success answer");
        }
    }
    fn refs<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}
