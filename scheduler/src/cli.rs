//! The `havoc` command line (DESIGN section 6).

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    policy::{self, Context, Expect, duration::HumanDuration, schema},
    schedule::plan::plan,
};

/// Exit code for invalid input (bad files, bad arguments), as clap uses for usage errors.
pub const EXIT_INVALID: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "havoc",
    version,
    about = "Continuous, safe chaos for Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and directories; print every problem as FILE:LINE:COL.
    Validate {
        /// The service config: policies are also checked against it (protected namespaces,
        /// receivers, SLOs), and it is validated itself.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Policy files or directories (or config files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print every clock-triggered fire time in a range.
    Plan {
        /// Policy files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Start (inclusive): RFC 3339, YYYY-MM-DD[THH:MM[:SS]] in UTC, or `now`.
        #[arg(long)]
        from: String,
        /// End (exclusive), same forms as --from, or +DURATION after --from (e.g. +7d).
        #[arg(long)]
        until: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Seed of random schedules (default: chosen at random and printed).
        #[arg(long)]
        seed: Option<u64>,
        /// The service config (default time zone, protected namespaces).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one experiment of a policy now, through the full lifecycle, and print its
    /// record. Exit 0 passed, 1 deviated, 2 skipped/errored/rollbackFailed (for CD).
    Run {
        /// The policy's name.
        policy: String,
        /// The service config (health sources, receivers, limits, dryRun).
        #[arg(long)]
        config: PathBuf,
        /// One experiment now, in this process (the only mode so far).
        #[arg(long)]
        once: bool,
        /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Policy files or directories (default: the config's `policies`).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Append the record to this JSON-lines journal.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Seed of the random target choice.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// The long-running service: scheduled chaos, judged by global health, with the
    /// HTTP API and metrics on `server.listen`. Stops on SIGTERM/SIGINT.
    Serve {
        /// The service config.
        #[arg(long)]
        config: PathBuf,
        /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Policy directory or file (default: the config's `policies`).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Append every record to this JSON-lines journal (a persistent volume).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Longest shutdown: running experiments complete their records within it.
        #[arg(long, default_value = "30s")]
        shutdown_timeout: HumanDuration,
        /// How often the policy files are checked for changes.
        #[arg(long, default_value = "5s")]
        reload_interval: HumanDuration,
        /// Seed of random schedules and target choice (tests).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Print the JSON Schema of policy and config files.
    Schema {
        /// Which schema (default: both, told apart by `kind`).
        #[arg(value_enum, default_value_t = SchemaKind::All)]
        kind: SchemaKind,
        /// Write the schema files into this directory instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SchemaKind {
    All,
    Policy,
    Config,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Serve { .. }) {
        "info,kube=warn"
    } else {
        "warn"
    });
    let result = match cli.command {
        Command::Validate { config, paths } => validate(config.as_deref(), &paths),
        Command::Plan {
            paths,
            from,
            until,
            format,
            seed,
            config,
        } => run_plan(&paths, &from, &until, format, seed, config.as_deref()),
        Command::Schema { kind, write } => print_schema(kind, write.as_deref()),
        Command::Serve {
            config,
            kubeconfig,
            policies,
            journal,
            shutdown_timeout,
            reload_interval,
            seed,
        } => runtime().and_then(|rt| {
            rt.block_on(crate::serve::serve(crate::serve::ServeArgs {
                config,
                kubeconfig,
                policies,
                journal,
                shutdown_timeout: shutdown_timeout.0,
                reload_interval: reload_interval.0,
                seed,
            }))
        }),
        Command::Run {
            policy,
            config,
            once: _,
            kubeconfig,
            policies,
            journal,
            seed,
        } => runtime().and_then(|rt| {
            rt.block_on(crate::run::run_once(crate::run::RunArgs {
                policy,
                config,
                kubeconfig,
                policies,
                journal,
                seed,
            }))
        }),
    };
    match result {
        Ok(code) => code,
        // `havoc plan ... | head` closes the pipe early: not an error.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Logs go to stderr, filtered by `HAVOC_LOG` (default: `info` for the service, `warn`
/// for the one-shot commands).
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAVOC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// Loads the optional config; its problems are printed and fail the command.
fn context_from(config: Option<&Path>) -> anyhow::Result<Result<Context, ()>> {
    let Some(path) = config else {
        return Ok(Ok(Context::default()));
    };
    match policy::load_config(path) {
        Ok(cfg) => Ok(Ok(cfg.context())),
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            Ok(Err(()))
        }
    }
}

fn validate(config: Option<&Path>, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (ctx, config_ok) = match context_from(config)? {
        Ok(ctx) => (ctx, true),
        Err(()) => (Context::default(), false),
    };
    let report = policy::load_paths(paths, &ctx, Expect::Any);
    let mut out = io::stdout().lock();
    let (mut valid, mut invalid, mut errors, mut policies) = (0, 0, 0, 0);
    for file in &report.files {
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

/// Parses `--from`/`--until` values.
fn parse_time(
    s: &str,
    now: DateTime<Utc>,
    base: Option<DateTime<Utc>>,
) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let base =
            base.ok_or_else(|| anyhow!("a relative time (+{rel}) is only allowed for --until"))?;
        let d: HumanDuration = rel.parse()?;
        return Ok(base + chrono::Duration::from_std(d.0)?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc());
    }
    bail!(
        "invalid time {s:?}: expected RFC 3339 (2026-03-30T09:00:00+02:00), YYYY-MM-DD[THH:MM[:SS]] (UTC), `now`, or +DURATION for --until"
    )
}

fn run_plan(
    paths: &[PathBuf],
    from: &str,
    until: &str,
    format: Format,
    seed: Option<u64>,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let from = parse_time(from, now, None).context("--from")?;
    let until = parse_time(until, now, Some(from)).context("--until")?;
    if until <= from {
        bail!("--until must be later than --from");
    }
    let Ok(ctx) = context_from(config)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let report = policy::load_paths(paths, &ctx, Expect::Policies);
    for d in report.diagnostics() {
        eprintln!("{d}");
    }
    let seed = seed.unwrap_or_else(rand::random);
    let policies: Vec<_> = report.policies().collect();
    let scheduled = policies
        .iter()
        .filter_map(|p| p.schedule.as_ref().map(|s| (p.name.as_str(), s)));
    let fires = plan(scheduled, from, until, seed);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                policy: &'a str,
                at: String,
            }
            for f in &fires {
                let line = Line {
                    policy: f.policy,
                    at: f.at.to_rfc3339(),
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
        }
        Format::Text => {
            let mut previous: std::collections::HashMap<&str, DateTime<Utc>> = Default::default();
            let width = fires.iter().map(|f| f.policy.len()).max().unwrap_or(0);
            for f in &fires {
                let at = f.at.with_timezone(&Utc);
                let gap = match previous.insert(f.policy, at) {
                    Some(prev) => format!(
                        "+{}",
                        HumanDuration((at - prev).to_std().unwrap_or_default())
                    ),
                    None => "first".to_string(),
                };
                writeln!(
                    out,
                    "{}  {:width$}  {}",
                    f.at.format("%a %Y-%m-%d %H:%M:%S %:z"),
                    f.policy,
                    gap
                )?;
            }
        }
    }
    out.flush()?;
    drop(out);
    let trigger_only: Vec<&str> = policies
        .iter()
        .filter(|p| p.schedule.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if format == Format::Text {
        eprintln!(
            "{} fires of {} scheduled policies from {} until {} (seed {seed})",
            fires.len(),
            policies.len() - trigger_only.len(),
            from.to_rfc3339(),
            until.to_rfc3339()
        );
        if !trigger_only.is_empty() {
            eprintln!(
                "not planned (event triggers only): {}",
                trigger_only.join(", ")
            );
        }
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

fn print_schema(kind: SchemaKind, write: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Some(dir) = write {
        std::fs::create_dir_all(dir)?;
        for (name, text) in schema::files() {
            std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let value = match kind {
        SchemaKind::All => schema::combined_schema(),
        SchemaKind::Policy => schema::policy_schema().to_value(),
        SchemaKind::Config => schema::config_schema().to_value(),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arguments() {
        let now = Utc::now();
        let t = |s: &str| parse_time(s, now, None).expect("valid").to_rfc3339();
        assert_eq!(t("2026-03-30T09:00:00+02:00"), "2026-03-30T07:00:00+00:00");
        assert_eq!(t("2026-03-30"), "2026-03-30T00:00:00+00:00");
        assert_eq!(t("2026-03-30T09:15"), "2026-03-30T09:15:00+00:00");
        assert_eq!(parse_time("now", now, None).expect("valid"), now);
        let base = parse_time("2026-01-01", now, None).expect("valid");
        assert_eq!(
            parse_time("+7d", now, Some(base))
                .expect("valid")
                .to_rfc3339(),
            "2026-01-08T00:00:00+00:00"
        );
        assert!(parse_time("+7d", now, None).is_err());
        assert!(parse_time("yesterday", now, None).is_err());
    }
}
