//! `havoc schema [all|policy|config|rbac|openapi|crd] [--write DIR]`: the JSON Schema of policy
//! and config files, generated from the wire model; `rbac`: the RBAC table the chart
//! renders; `openapi`: the OpenAPI document of the HTTP API; `crd`: the experiment
//! history's CustomResourceDefinition.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::{
    cli::{SchemaArgs, SchemaKind},
    policy::schema,
};

pub fn schema(args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let (kind, write) = (args.kind, args.write.as_deref());
    if let Some(dir) = write {
        std::fs::create_dir_all(dir)?;
        for (name, text) in schema::files() {
            std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(kind, SchemaKind::Crd) {
        print!("{}", crate::history::object::crd_document());
        return Ok(ExitCode::SUCCESS);
    }
    let value = match kind {
        SchemaKind::All => schema::combined_schema(),
        SchemaKind::Policy => schema::policy_schema().to_value(),
        SchemaKind::Config => schema::config_schema().to_value(),
        SchemaKind::Rbac => crate::access::rbac_table(),
        SchemaKind::Openapi => crate::api::openapi::generate(),
        SchemaKind::Crd => unreachable!("printed above"),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}
