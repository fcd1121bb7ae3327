//! The `havoc` command line (DESIGN section 6): the clap types, and the dispatch to one
//! module per command ([`crate::commands`]).

use std::{io, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    commands::{self, EXIT_INVALID},
    policy::duration::HumanDuration,
};

#[derive(Debug, Parser)]
#[command(
    name = "havoc",
    version,
    about = "Continuous, safe chaos for Kubernetes"
)]
pub struct Cli {
    /// Log format on stderr [default: text on a terminal, json otherwise]
    #[arg(long, value_enum, global = true)]
    log_format: Option<crate::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and directories; print every problem as FILE:LINE:COL.
    Validate(ValidateArgs),
    /// Print every clock-triggered fire time in a range.
    Plan(PlanArgs),
    /// Run one experiment of a policy now, through the full lifecycle, and print its
    /// record. Exit 0 passed, 1 deviated, 2 skipped/errored/rollbackFailed (for CD).
    Run(RunArgs),
    /// The long-running service: scheduled chaos, judged by global health, with the
    /// HTTP API and metrics on `server.listen`. Stops on SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Print the JSON Schema of policy and config files, (`rbac`) the RBAC table the
    /// chart renders, or (`openapi`) the OpenAPI document of the HTTP API.
    Schema(SchemaArgs),
    /// Emergency stop without the service: undo every havoc fault in the cluster
    /// (uncordon, restore replicas, delete partitions, remove HTTP fault routes).
    Revert(RevertArgs),
    /// Write a report of experiments (HTML, PDF, Markdown, JUnit XML or JSON) from the
    /// cluster's history or from journals.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Experiments started at or after: RFC 3339, YYYY-MM-DD[THH:MM[:SS]] (UTC), `now`,
    /// or -DURATION before now (e.g. -7d).
    #[arg(long, allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Experiments started before (same forms as --since).
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only this policy.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only experiments with a target in this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this verdict (passed, deviated, skipped, errored, rollbackFailed).
    #[arg(long)]
    pub verdict: Option<String>,
    /// Read these journals (and their rotated files) instead of the cluster's history;
    /// several are merged, a record in more than one counted once.
    #[arg(long, num_args = 1..)]
    pub journal: Vec<PathBuf>,
    #[arg(long, value_enum)]
    pub format: crate::report::Format,
    /// Write here instead of to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Kubeconfig, for the cluster's history (default: $KUBECONFIG, ~/.kube/config, or
    /// in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// havoc's namespace, where the cluster's history is (its HavocExperiment objects).
    #[arg(long, default_value = crate::policy::domain::DEFAULT_HAVOC_NAMESPACE)]
    pub havoc_namespace: String,
}

#[derive(Debug, Args)]
pub struct RevertArgs {
    /// Every havoc fault in the cluster, whoever owns it and whatever its deadline.
    #[arg(long)]
    pub all: bool,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only print what would be reverted.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the records of this installation (`NAMESPACE/LEASE`, as its config's
    /// leaderElection names it), e.g. in the chart's upgrade and uninstall hooks.
    #[arg(long, value_name = "NAMESPACE/LEASE")]
    pub owner: Option<String>,
    /// Only the records of this fault (repeatable), e.g. the faults a chart upgrade turns
    /// off.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<String>,
    /// When there is something to revert, pause that installation's chaos first, for
    /// this long (needs `--owner`): its leader starts nothing new while the faults are
    /// reverted (the chart's upgrade hook).
    #[arg(long, value_name = "DURATION")]
    pub pause_for: Option<HumanDuration>,
    /// The reason written with `--pause-for`.
    #[arg(long, default_value = "havoc revert --all")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The service config: policies are also checked against it (protected namespaces,
    /// receivers, SLOs), and it is validated itself.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy files or directories (or config files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Start (inclusive): RFC 3339, YYYY-MM-DD[THH:MM[:SS]] in UTC, or `now`.
    #[arg(long)]
    pub from: String,
    /// End (exclusive), same forms as --from, or +DURATION after --from (e.g. +7d).
    #[arg(long)]
    pub until: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Seed of random schedules (default: chosen at random and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The service config (default time zone, protected namespaces).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// How `plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What `run` and `serve` read and where they write.
#[derive(Debug, Clone, Args)]
pub struct Sources {
    /// The service config (health sources, receivers, limits, dryRun).
    #[arg(long)]
    pub config: PathBuf,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Policy directory or file; may be given several times (default: the config's
    /// `policies`). Policy names must be unique across all of them.
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// Append every record to this JSON-lines journal (a persistent volume).
    #[arg(long)]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy's name.
    pub policy: String,
    #[command(flatten)]
    pub sources: Sources,
    /// One experiment now, in this process (required: scheduled runs are `havoc serve`).
    #[arg(long)]
    pub once: bool,
    /// Seed of the random target choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not write the experiment's object (HavocExperiment) into havoc's namespace:
    /// for clusters without havoc's CRD. Without it, a run whose object cannot be written
    /// changes nothing (skipped, historyUnavailable).
    #[arg(long)]
    pub no_history: bool,
    /// Also write a report of this run, as FORMAT:FILE (html, pdf, markdown, junit or
    /// json; e.g. junit:havoc.xml for the pipeline's test results). May be repeated.
    #[arg(long = "report", value_name = "FORMAT:FILE", value_parser = parse_report_target)]
    pub reports: Vec<(crate::report::Format, PathBuf)>,
}

/// `FORMAT:FILE` of `havoc run --report`.
fn parse_report_target(s: &str) -> Result<(crate::report::Format, PathBuf), String> {
    let (format, file) = s
        .split_once(':')
        .ok_or_else(|| format!("expected FORMAT:FILE (e.g. junit:report.xml), got {s:?}"))?;
    if file.is_empty() {
        return Err(format!("no file after {format}:"));
    }
    Ok((
        format
            .parse()
            .map_err(|e: crate::report::ReportError| e.to_string())?,
        PathBuf::from(file),
    ))
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// Longest shutdown: running experiments complete their records within it.
    #[arg(long, default_value = "30s")]
    pub shutdown_timeout: HumanDuration,
    /// How often the policy files are checked for changes.
    #[arg(long, default_value = "5s")]
    pub reload_interval: HumanDuration,
    /// Seed of random schedules and target choice (tests).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema (default: both, told apart by `kind`).
    #[arg(value_enum, default_value_t = SchemaKind::All)]
    pub kind: SchemaKind,
    /// Write the schema files into this directory instead of printing.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// Which schema to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    All,
    Policy,
    Config,
    /// The permissions havoc needs, per fault (the chart's `files/rbac.json`).
    Rbac,
    /// The OpenAPI document of the HTTP API (`scheduler/src/api/openapi.json`, served at
    /// `GET /api/v1/openapi.json`).
    Openapi,
    /// The CustomResourceDefinition of the experiment history (the chart's `crds/`).
    Crd,
}

/// At most this many runtime worker threads, however many cores the node has.
const MAX_WORKERS: usize = 2;

/// havoc waits on the network nearly all the time: two workers are plenty (the second
/// keeps the service answering while the first is inside a journal `fdatasync` or a
/// policy reload), and tokio's default of one worker per core would make the footprint
/// grow with the node (a thread, its stack and its malloc arena per core on a 64-core
/// node without a CPU limit), not with the work. `TOKIO_WORKER_THREADS` still overrides.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads(cores.min(MAX_WORKERS));
    }
    Ok(builder.enable_all().build()?)
}

impl Cli {
    /// Parses the command line, runs the command, and returns the exit code.
    pub fn parse_and_run() -> ExitCode {
        Cli::parse().run()
    }

    fn run(self) -> ExitCode {
        let serving = matches!(self.command, Command::Serve(_));
        crate::logging::init(
            if serving { "info,kube=warn" } else { "warn" },
            self.log_format,
        );
        let result = match self.command {
            Command::Validate(args) => commands::validate::validate(&args),
            Command::Plan(args) => commands::plan::plan(&args),
            Command::Schema(args) => commands::schema::schema(&args),
            Command::Serve(args) => {
                runtime().and_then(|rt| rt.block_on(commands::serve::serve(args)))
            }
            Command::Run(args) => {
                runtime().and_then(|rt| rt.block_on(commands::run::run_once(args)))
            }
            Command::Revert(args) => {
                runtime().and_then(|rt| rt.block_on(commands::revert::revert(args)))
            }
            Command::Report(args) => {
                runtime().and_then(|rt| rt.block_on(commands::report::report(args)))
            }
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
            // The service's last word goes to its log, in the log's format.
            Err(e) if serving => {
                tracing::error!(error = format!("{e:#}"), "havoc serve failed");
                ExitCode::from(EXIT_INVALID)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_INVALID)
            }
        }
    }
}

impl Sources {
    /// The policy paths given, or the config's when none was.
    pub fn policy_paths(&self, config_default: &std::path::Path) -> Vec<PathBuf> {
        if self.policies.is_empty() {
            vec![config_default.to_path_buf()]
        } else {
            self.policies.clone()
        }
    }
}
