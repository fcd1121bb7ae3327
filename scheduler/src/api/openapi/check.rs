//! A small JSON Schema check for the subset the document uses, so that tests can hold real
//! answers against it.

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
