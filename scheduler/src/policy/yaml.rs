//! YAML with source positions.
//!
//! Policy files are parsed in two steps (see `mod.rs`): this module turns YAML text into
//! plain JSON values *plus* an index from JSON pointer (`/spec/schedule/cron`) to the line
//! and column of that key and value. serde then deserializes the JSON value, and every
//! later check (serde's own errors, semantic validation) reports a pointer that this index
//! turns back into `FILE:LINE:COL`.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// Files larger than this are refused before parsing: policies are small, and the limit
/// keeps a malicious or mistaken file from costing unbounded memory.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Nesting deeper than this is refused (policies are a handful of levels deep).
const MAX_DEPTH: usize = 64;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: &saphyr::Marker) -> Self {
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// Where one node sits: its key (when it is a mapping value) and its value.
#[derive(Debug, Clone, Copy)]
struct Place {
    key: Option<Pos>,
    value: Pos,
}

/// Positions of every node of one document, by JSON pointer.
#[derive(Debug, Default, Clone)]
pub struct Locations {
    places: HashMap<String, Place>,
}

impl Locations {
    /// Position of the value at `pointer`, or of its nearest existing ancestor.
    pub fn value(&self, pointer: &str) -> Pos {
        self.nearest(pointer).value
    }

    /// Position of the key at `pointer` (falls back to the value, then to ancestors).
    pub fn key(&self, pointer: &str) -> Pos {
        let place = self.nearest(pointer);
        place.key.unwrap_or(place.value)
    }

    /// Whether a node exists at exactly `pointer`.
    pub fn contains(&self, pointer: &str) -> bool {
        self.places.contains_key(pointer)
    }

    fn nearest(&self, pointer: &str) -> Place {
        let mut p = pointer;
        loop {
            if let Some(place) = self.places.get(p) {
                return *place;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => {
                    return self.places.get("").copied().unwrap_or(Place {
                        key: None,
                        value: Pos { line: 1, col: 1 },
                    });
                }
            }
        }
    }
}

/// One YAML document converted to JSON, with its positions.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub locations: Locations,
}

/// A located problem found while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Appends one JSON-pointer segment (RFC 6901 escaping).
pub fn push_pointer(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + segment.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Parses every document of a YAML stream. Empty documents are dropped. A syntax error
/// fails the whole stream (nothing after it can be trusted); problems inside one document
/// (non-scalar keys, nesting too deep) fail only that document.
pub fn parse_stream(text: &str) -> Result<Vec<Result<Document, YamlError>>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "file is larger than {} KiB; policy files are expected to be small",
                MAX_FILE_BYTES / 1024
            ),
        });
    }
    let docs = MarkedYaml::load_from_str(text).map_err(|e| YamlError {
        pos: Pos::from_marker(e.marker()),
        message: format!("invalid YAML: {}", e.info()),
    })?;
    Ok(docs
        .iter()
        .filter(|d| !matches!(d.data, YamlData::Value(Scalar::Null)))
        .map(|d| {
            let mut locations = Locations::default();
            convert(d, String::new(), None, 0, &mut locations)
                .map(|value| Document { value, locations })
        })
        .collect())
}

fn convert(
    node: &MarkedYaml<'_>,
    pointer: String,
    key: Option<Pos>,
    depth: usize,
    locations: &mut Locations,
) -> Result<Value, YamlError> {
    let pos = Pos::from_marker(&node.span.start);
    if depth > MAX_DEPTH {
        return Err(YamlError {
            pos,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    locations
        .places
        .insert(pointer.clone(), Place { key, value: pos });
    Ok(match &node.data {
        YamlData::Value(scalar) => scalar_to_json(scalar),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Tagged(_, inner) => convert(inner, pointer, key, depth + 1, locations)?,
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let p = push_pointer(&pointer, &i.to_string());
                out.push(convert(item, p, None, depth + 1, locations)?);
            }
            Value::Array(out)
        }
        YamlData::Mapping(entries) => {
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries.iter() {
                let key_pos = Pos::from_marker(&k.span.start);
                let name = key_text(k).ok_or_else(|| YamlError {
                    pos: key_pos,
                    message: "mapping keys must be plain scalars".to_string(),
                })?;
                let p = push_pointer(&pointer, &name);
                let value = convert(v, p, Some(key_pos), depth + 1, locations)?;
                out.insert(name, value);
            }
            Value::Object(out)
        }
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(YamlError {
                pos,
                message: "unresolvable YAML node (bad alias?)".to_string(),
            });
        }
    })
}

fn key_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Null) => Some("null".to_string()),
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        YamlData::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

fn scalar_to_json(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Document {
        let mut docs = parse_stream(text).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0).expect("converts")
    }

    #[test]
    fn positions_of_keys_and_values_are_one_based() {
        let doc = one("a:\n  b: 1\n  list:\n    - x\n    - \"y\"\n");
        assert_eq!(doc.locations.key("/a/b"), Pos { line: 2, col: 3 });
        assert_eq!(doc.locations.value("/a/b"), Pos { line: 2, col: 6 });
        assert_eq!(doc.locations.value("/a/list/1"), Pos { line: 5, col: 7 });
        // a missing leaf resolves to its nearest ancestor
        assert_eq!(doc.locations.key("/a/missing"), Pos { line: 1, col: 1 });
        assert_eq!(doc.value["a"]["list"][1], "y");
    }

    #[test]
    fn pointer_segments_are_escaped() {
        let doc = one("labels:\n  app.kubernetes.io/name: x\n");
        let p = push_pointer("/labels", "app.kubernetes.io/name");
        assert_eq!(p, "/labels/app.kubernetes.io~1name");
        assert_eq!(doc.locations.value(&p), Pos { line: 2, col: 27 });
    }

    #[test]
    fn scalars_follow_yaml_1_2_core_schema() {
        let doc = one("t: 10:00\nn: 5\nb: true\ns: '5'\nd: 12-24\nno: no\n");
        assert_eq!(doc.value["t"], "10:00");
        assert_eq!(doc.value["n"], 5);
        assert_eq!(doc.value["b"], true);
        assert_eq!(doc.value["s"], "5");
        assert_eq!(doc.value["d"], "12-24");
        assert_eq!(doc.value["no"], "no");
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse_stream("a: 1\nb: [1, 2\nc: 3\n").expect_err("invalid");
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(err.message.starts_with("invalid YAML"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_stream("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.pos.line, 2, "{err:?}");
    }

    #[test]
    fn multiple_documents_and_empty_ones() {
        let docs = parse_stream("---\na: 1\n---\n---\nb: 2\n").expect("parses");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn alias_bombs_do_not_explode() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            text.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        // either refused or bounded; never a hang or a crash
        let _ = parse_stream(&text);
    }
}
