//! One module per command of the `havoc` binary (DESIGN section 6). Each takes its parsed
//! arguments from [`crate::cli`] and returns the process exit code; `anyhow` is used here,
//! at the edge, and nowhere below.

pub mod plan;
pub mod report;
pub mod revert;
pub mod run;
pub mod schema;
pub mod serve;
pub mod validate;

use std::path::Path;

use crate::policy::{self, Config, Context};

/// Exit code for invalid input (bad files, bad arguments), as clap uses for usage errors.
pub const EXIT_INVALID: u8 = 2;

/// Reads the service config; its problems are printed (`FILE:LINE:COL: error: ...`).
/// havoc's own namespace (`POD_NAMESPACE`) joins the protected ones.
pub fn load_config(path: &Path) -> Option<Config> {
    match policy::load_config(path) {
        Ok(c) => Some(c.with_own_namespace(std::env::var("POD_NAMESPACE").ok())),
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            None
        }
    }
}

/// The context of an optional config: `Err` when the config is invalid (its problems
/// are printed).
pub fn context_from(config: Option<&Path>) -> anyhow::Result<Result<Context, ()>> {
    let Some(path) = config else {
        return Ok(Ok(Context::default()));
    };
    Ok(load_config(path).map(|c| c.context()).ok_or(()))
}
