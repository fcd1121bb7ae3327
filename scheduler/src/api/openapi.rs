//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! It is written by hand (`openapi.json` beside this file) rather than generated: the
//! answers are built from types of the engine and the records (`ExperimentRecord`,
//! `Pause`, ...) that know nothing of HTTP, and a generator would need derives on all of
//! them and new dependencies for one static file. What keeps the document true instead:
//!
//! - the router is built from one table of endpoints, and a test checks that table and the
//!   document's paths against each other, both ways;
//! - tests send real requests through the router, for every documented status we can
//!   produce, and validate each answer against the schema the document gives for that
//!   operation, status and media type ([`check`]);
//! - `tests/api/schemathesis` fuzzes a live `havoc serve` against it in CI.
//!
//! To add an endpoint: a line in `endpoints()` (`api/mod.rs`), its entry under `paths`
//! here (reusing `components`: `PauseBody`, the error `responses`), and a request in the
//! tests of `api/tests.rs`.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

/// The fault names havoc knows (the registry's), as records and views write them.
#[derive(Debug)]
pub struct Fault;

impl JsonSchema for Fault {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fault".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = crate::fault::registry().iter().map(|f| f.name()).collect();
        json_schema!({"type": "string", "enum": names})
    }
}

/// A small JSON Schema check for the subset the document uses, so that tests can hold real
/// answers against it.
#[cfg(test)]
pub(crate) mod check {
    use std::collections::BTreeSet;

    use serde_json::Value;

    pub fn document() -> Value {
        serde_json::from_str(super::DOCUMENT).expect("openapi.json is JSON")
    }

    /// Every (method, path) the document describes.
    pub fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.clone(), path.clone()));
            }
        }
        out
    }

    /// Follows `$ref`s; `Null` when one does not resolve.
    pub fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
        while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            schema = r
                .strip_prefix('#')
                .and_then(|p| doc.pointer(p))
                .unwrap_or(&Value::Null);
        }
        schema
    }

    /// The schema of an answer, if the document has one for it.
    pub fn answer_schema<'a>(
        doc: &'a Value,
        method: &str,
        path: &str,
        status: u16,
        media: &str,
    ) -> Option<&'a Value> {
        let responses = &doc["paths"][path][method]["responses"];
        let response = resolve(doc, responses.get(status.to_string())?);
        response["content"].get(media)?.get("schema")
    }

    /// What is wrong with `value` against `schema`; empty when it conforms.
    pub fn problems(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        walk(doc, schema, value, "$", &mut out);
        out
    }

    fn is_type(v: &Value, t: &str) -> bool {
        match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            _ => false,
        }
    }

    fn walk(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let s = resolve(doc, schema);
        let Some(s) = s.as_object() else {
            out.push(format!("{at}: no schema ({schema})"));
            return;
        };
        if let Some(c) = s.get("const")
            && c != v
        {
            out.push(format!("{at}: {v} is not {c}"));
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            out.push(format!("{at}: {v} is not one of {e:?}"));
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.iter().any(|t| is_type(v, t)) {
                out.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        let fits = |sub: &Value| {
            let mut o = Vec::new();
            walk(doc, sub, v, at, &mut o);
            o.is_empty()
        };
        if let Some(any) = s.get("anyOf").and_then(Value::as_array)
            && !any.iter().any(fits)
        {
            out.push(format!("{at}: {v} matches none of anyOf"));
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let n = one.iter().filter(|sub| fits(sub)).count();
            if n != 1 {
                out.push(format!("{at}: {v} matches {n} of oneOf, not exactly one"));
            }
        }
        match v {
            Value::Object(m) => {
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = r.as_str()
                        && !m.contains_key(r)
                    {
                        out.push(format!("{at}: missing {r}"));
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                for (k, val) in m {
                    let here = format!("{at}.{k}");
                    match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                        (Some(p), _) => walk(doc, p, val, &here, out),
                        (None, Some(Value::Bool(false))) => {
                            out.push(format!("{here}: not in the schema"));
                        }
                        (None, Some(extra)) if extra.is_object() => {
                            walk(doc, extra, val, &here, out);
                        }
                        (None, _) => {}
                    }
                }
            }
            Value::Array(items) => {
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    out.push(format!("{at}: more than {max} items"));
                }
                if let Some(item) = s.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        walk(doc, item, x, &format!("{at}[{i}]"), out);
                    }
                }
            }
            Value::String(x) => {
                let chars = x.chars().count() as u64;
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                    && chars > max
                {
                    out.push(format!("{at}: longer than {max}"));
                }
                if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                    && chars < min
                {
                    out.push(format!("{at}: shorter than {min}"));
                }
                if let Some(p) = s.get("pattern").and_then(Value::as_str)
                    && !regex::Regex::new(p).expect("pattern").is_match(x)
                {
                    out.push(format!("{at}: {x:?} does not match {p}"));
                }
                if s.get("format").and_then(Value::as_str) == Some("date-time")
                    && chrono::DateTime::parse_from_rfc3339(x).is_err()
                {
                    out.push(format!("{at}: {x:?} is not an RFC 3339 date-time"));
                }
            }
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(f64::NAN);
                if s.get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| n < m)
                {
                    out.push(format!("{at}: {n} below the minimum"));
                }
                if s.get("maximum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| n > m)
                {
                    out.push(format!("{at}: {n} above the maximum"));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::check::{self, problems, resolve};

    #[test]
    fn the_document_and_the_router_list_the_same_endpoints() {
        let doc = check::document();
        let routed: BTreeSet<(String, String)> = super::super::endpoints()
            .into_iter()
            .map(|(m, p, _)| (m.as_str().to_ascii_lowercase(), p.to_string()))
            .collect();
        let documented = check::operations(&doc);
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routed, not in openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "in openapi.json, not routed: {unrouted:?}"
        );
        // The stop endpoint's contract is there already.
        assert!(documented.contains(&("post".into(), "/api/v1/stop".into())));
    }

    /// Every `$ref` of the document resolves, and every operation documents its answers
    /// with a media type and a schema.
    #[test]
    fn the_document_is_complete() {
        let doc = check::document();
        assert_eq!(doc["openapi"], "3.1.0");
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        out.push(r);
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20);
        for r in all {
            assert!(
                !resolve(&doc, &json!({ "$ref": r })).is_null(),
                "{r} does not resolve"
            );
        }
        for (method, path) in check::operations(&doc) {
            let op = &doc["paths"][&path][&method];
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: operationId"
            );
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.contains_key("default"),
                "{method} {path}: every status is listed"
            );
            for (status, r) in responses {
                let r = resolve(&doc, r);
                let content = r["content"].as_object();
                assert!(
                    content.is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                    "{method} {path} {status}: media type and schema"
                );
            }
            // The mutating endpoints need the token; `GET /api/v1/...` may need it
            // (`server.readRequiresToken`: security lists "none" too); the rest is open.
            let security = &op["security"];
            if method == "post" {
                assert_eq!(security, &json!([{"bearerAuth": []}]), "{method} {path}");
            } else if path.starts_with("/api/v1/") {
                assert_eq!(
                    security,
                    &json!([{}, {"bearerAuth": []}]),
                    "{method} {path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}: 401");
            } else {
                assert!(security.is_null(), "{method} {path}: open");
            }
        }
    }

    /// The checker itself tells good from bad, so the answer tests can fail.
    #[test]
    fn the_checker_finds_what_does_not_conform() {
        let doc = check::document();
        let pause = json!({"$ref": "#/components/schemas/PauseView"});
        let good = json!({"all": null, "policies": {"p": {
            "since": "2026-01-01T00:00:00Z", "until": null, "reason": "r"}}});
        assert!(
            problems(&doc, &pause, &good).is_empty(),
            "{:?}",
            problems(&doc, &pause, &good)
        );
        for bad in [
            json!({"all": null}),
            json!({"all": null, "policies": {}, "extra": 1}),
            json!({"all": "yes", "policies": {}}),
            json!({"all": null, "policies": {"p": {"since": "yesterday", "until": null, "reason": "r"}}}),
        ] {
            assert!(!problems(&doc, &pause, &bad).is_empty(), "{bad} passed");
        }
        let trigger = json!({"$ref": "#/components/schemas/Trigger"});
        assert!(problems(&doc, &trigger, &json!({"kind": "manual", "source": "http"})).is_empty());
        assert!(
            !problems(
                &doc,
                &trigger,
                &json!({"kind": "manual", "scheduledAt": "x"})
            )
            .is_empty()
        );
        let body = json!({"$ref": "#/components/schemas/PauseBody"});
        assert!(problems(&doc, &body, &json!({"for": "1h30m"})).is_empty());
        assert!(!problems(&doc, &body, &json!({"for": " 1h"})).is_empty());
        assert!(!problems(&doc, &body, &json!({"for": "90"})).is_empty());
    }
}
