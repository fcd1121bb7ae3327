//! `havoc validate [--config F] PATH...`: every problem as `FILE:LINE:COL: error: ...`,
//! one per line, and a line per valid file; exit 0 when all is valid, 2 otherwise.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use super::{EXIT_INVALID, context_from};
use crate::{
    cli::ValidateArgs,
    policy::{self, Context, Expect},
};

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (config, paths) = (args.config.as_deref(), &args.paths);
    let (ctx, config_ok) = match context_from(config)? {
        Ok(ctx) => (ctx, true),
        Err(()) => (Context::default(), false),
    };
    let report = policy::load_paths(paths, &ctx, Expect::Any);
    let mut out = io::stdout().lock();
    let (mut valid, mut invalid, mut errors, mut policies) = (0, 0, 0, 0);
    for file in &report.files {
        for w in &file.warnings {
            eprintln!("{}", w.warning_line());
        }
        if file.is_valid() {
            valid += 1;
            policies += file.policies.len();
            let mut what = format!(
                "{} polic{}",
                file.policies.len(),
                if file.policies.len() == 1 { "y" } else { "ies" }
            );
            if !file.configs.is_empty() {
                what = if file.policies.is_empty() {
                    "config".to_string()
                } else {
                    format!("{what}, config")
                };
            }
            writeln!(out, "{}: ok ({what})", file.path.display())?;
        } else {
            invalid += 1;
            errors += file.diagnostics.len();
            for d in &file.diagnostics {
                eprintln!("{d}");
            }
        }
    }
    writeln!(
        out,
        "{} checked: {valid} valid ({}), {invalid} invalid ({})",
        plural(valid + invalid, "file", "files"),
        plural(policies, "policy", "policies"),
        plural(errors, "error", "errors"),
    )?;
    Ok(if invalid == 0 && config_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
