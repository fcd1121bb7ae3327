//! The generated files checked in (the JSON Schema under `policies/schema/`, the chart's
//! RBAC table, the OpenAPI document) must match the code.
//! `HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema` rewrites them.

use std::path::Path;

#[test]
fn checked_in_schema_matches_the_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/schema");
    let update = std::env::var_os("HAVOC_UPDATE_SCHEMA").is_some();
    let mut drifted = Vec::new();
    for (name, generated) in havoc::policy::schema::files() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != generated {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "policies/schema/{drifted:?} drifted from the model; run HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema"
    );
}

/// Compares a checked-in generated file with what the code generates now (rewrites it
/// with `HAVOC_UPDATE_SCHEMA=1`).
fn checked_in(relative: &str, generated: &str, from: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var_os("HAVOC_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, generated).expect("write");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{relative} drifted from {from}; run HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema"
    );
}

fn pretty(v: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).expect("json"))
}

/// The chart renders its RBAC from `files/rbac.json`, generated from havoc's own table.
#[test]
fn checked_in_rbac_table_matches_the_code() {
    checked_in(
        "../deploy/helm/havoc/files/rbac.json",
        &pretty(&havoc::access::rbac_table()),
        "scheduler/src/access.rs",
    );
}

/// The service serves `scheduler/src/api/openapi.json`, generated from the API's code.
#[test]
fn checked_in_openapi_document_matches_the_code() {
    checked_in(
        "src/api/openapi.json",
        &pretty(&havoc::api::openapi::generate()),
        "the code (api/mod.rs endpoints(), the types it answers with)",
    );
}

/// The chart's `crds/` and `deploy/local/up` install the experiment history's CRD.
#[test]
fn checked_in_crd_matches_the_code() {
    checked_in(
        "../deploy/helm/havoc/crds/havocexperiments.havoc.dev.yaml",
        &havoc::history::object::crd_document(),
        "scheduler/src/history/object.rs",
    );
}

#[test]
fn schema_describes_the_examples_shape() {
    let schema = havoc::policy::schema::policy_schema().to_value();
    let spec = &schema["$defs"]["PolicySpec"]["properties"];
    for field in [
        "schedule",
        "triggers",
        "target",
        "fault",
        "duration",
        "health",
        "notify",
        "onDeviation",
    ] {
        assert!(
            spec.get(field).is_some(),
            "PolicySpec.{field} missing from the schema"
        );
    }
    assert_eq!(
        schema["$defs"]["PolicySpec"]["additionalProperties"], false,
        "unknown fields are refused"
    );
}

/// For every fault of the registry: the generated RBAC table holds exactly its access
/// rules, and the chart has a toggle for it (values, schema, README).
#[test]
fn every_fault_has_its_rbac_and_its_chart_toggle() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/havoc");
    let table: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart.join("files/rbac.json")).expect("rbac.json"),
    )
    .expect("json");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart.join("values.schema.json")).expect("schema"),
    )
    .expect("json");
    let values = std::fs::read_to_string(chart.join("values.yaml")).expect("values.yaml");
    let readme = std::fs::read_to_string(chart.join("README.md")).expect("README.md");
    for fault in havoc::fault::registry() {
        let name = fault.name();
        assert_eq!(
            table["faults"][name],
            serde_json::to_value(fault.access()).expect("json"),
            "{name}: files/rbac.json"
        );
        assert_eq!(
            schema["properties"]["faults"]["properties"][name]["type"], "boolean",
            "{name}: values.schema.json faults.{name}"
        );
        assert!(
            values
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{name}: "))),
            "{name}: values.yaml faults.{name}"
        );
        assert!(
            readme.contains(&format!("`faults.{name}`")),
            "{name}: the chart README's values table"
        );
    }
    let names: Vec<&str> = havoc::fault::registry().iter().map(|f| f.name()).collect();
    let listed: Vec<&String> = table["faults"]
        .as_object()
        .expect("faults")
        .keys()
        .collect();
    assert_eq!(
        listed.len(),
        names.len(),
        "no fault in the table that havoc does not know"
    );
}
