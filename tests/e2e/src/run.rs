//! One-shot `havoc run --once` processes for end-to-end tests: the directory of config
//! and policies they read, and the command.

use std::{path::Path, process::Stdio};

use crate::{Env, havoc_bin};

/// Writes what `havoc` reads into `dir`: the config's text as `havoc.yaml`, and each
/// `(file, text)` of `policies` into `policies/`.
pub fn write_dir(dir: &Path, config: &str, policies: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::write(dir.join("havoc.yaml"), config)?;
    std::fs::create_dir(dir.join("policies"))?;
    for (file, text) in policies {
        std::fs::write(dir.join("policies").join(file), text)?;
    }
    Ok(())
}

/// `havoc run POLICY --once` with the config and policies in `dir` (see [`write_dir`])
/// against the local cluster, stdin closed; the caller adds what else it needs and runs
/// it.
pub fn once(env: &Env, dir: &Path, policy: &str) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(havoc_bin()?);
    cmd.args(["run", policy, "--once", "--config"])
        .arg(dir.join("havoc.yaml"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--kubeconfig")
        .arg(env.get("KUBECONFIG")?)
        .stdin(Stdio::null());
    Ok(cmd)
}
