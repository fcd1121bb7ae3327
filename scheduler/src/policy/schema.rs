//! JSON Schema of the policy and config files, generated from the model types.
//!
//! The generated files are checked in under `policies/schema/` so that editors (e.g.
//! yaml-language-server) can complete and check policy files; a test fails when they drift
//! from the code (`HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema` rewrites them).

use schemars::{Schema, generate::SchemaSettings};
use serde_json::{Value, json};

use super::model::{ChaosPolicy, HavocConfig};

fn generator() -> schemars::SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// The schema of a `ChaosPolicy` document.
pub fn policy_schema() -> Schema {
    let mut s = generator().into_root_schema_for::<ChaosPolicy>();
    s.insert(
        "$id".into(),
        json!("https://havoc.dev/schema/chaos-policy.json"),
    );
    s
}

/// The schema of a `HavocConfig` document.
pub fn config_schema() -> Schema {
    let mut s = generator().into_root_schema_for::<HavocConfig>();
    s.insert(
        "$id".into(),
        json!("https://havoc.dev/schema/havoc-config.json"),
    );
    s
}

/// Either document, told apart by `kind`: what `havoc schema` prints.
pub fn combined_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://havoc.dev/schema/havoc.json",
        "title": "havoc.dev/v1alpha1",
        "description": "A havoc ChaosPolicy or HavocConfig document.",
        "oneOf": [policy_schema(), config_schema()],
    })
}

/// The files under `policies/schema/` and their contents.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    vec![
        (
            "chaos-policy.schema.json",
            pretty(policy_schema().as_value()),
        ),
        (
            "havoc-config.schema.json",
            pretty(config_schema().as_value()),
        ),
        ("havoc.schema.json", pretty(&combined_schema())),
    ]
}
