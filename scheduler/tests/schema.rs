//! The JSON Schema checked in under `policies/schema/` must match the code.
//! `HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema` rewrites it.

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

/// The chart renders its RBAC from `files/rbac.json`, generated from havoc's own table.
#[test]
fn checked_in_rbac_table_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/havoc/files/rbac.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&havoc::access::rbac_table()).expect("json")
    );
    if std::env::var_os("HAVOC_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write the RBAC table");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "deploy/helm/havoc/files/rbac.json drifted from scheduler/src/access.rs; run HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema"
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
