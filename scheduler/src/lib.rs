//! havoc: continuous, safe chaos for Kubernetes.
//!
//! # Layout
//!
//! Pure logic first, then what talks to the cluster, then the commands that wire it up.
//!
//! - [`policy`]: the policy language and service config: parsing with positions,
//!   validation into the [`policy::domain`] types (every default resolved there), JSON
//!   Schema.
//! - [`schedule`]: clock triggers (cron, random, windows, blackouts); pure.
//! - [`record`]: the records everything shares (verdicts, targets, typed reasons, each
//!   with one `label()`); [`journal`] persists them; [`history`] is how readers query
//!   them (summaries, filters).
//! - [`labels`]: the labels and annotations havoc reads and writes; [`kinds`]: the object
//!   kinds it reads and changes, typed.
//! - [`targets`]: target selection and the safety rules (pure), the cluster
//!   [`targets::Snapshot`] they read, and where snapshots come from (watch caches,
//!   listing).
//! - [`fault`]: faults through the Kubernetes API and their revert records.
//! - [`engine`]: the arbiter, the clock, and the experiment lifecycle;
//!   [`engine::verdict`] holds the pure verdict rules.
//! - [`trigger`]: rollout triggers (one watch per workload kind).
//! - [`leader`]: leader election (Lease) with a validity deadline (the fence).
//! - [`state`]: durable shared state (pauses, `havoc run`s, stops) in a ConfigMap.
//! - [`reload`]: hot reload of the policy directory.
//! - [`report`]: reports of experiments (HTML, PDF, Markdown, JUnit XML, JSON), pure.
//! - [`api`]: the HTTP layer of the service (metrics, probes, `/api/v1`).
//! - [`client`]: the one place kube clients are built.
//! - [`commands`]: one module per command (`validate`, `plan`, `schema`, `run`, `serve`);
//!   [`cli`] holds the clap types; `main.rs` only calls [`cli::Cli::parse_and_run`].
//! - [`logging`]: log output.
//!
//! # Which module may name which
//!
//! Arrows point down; `tests/layout.rs` fails on one pointing back up (file and line):
//!
//! ```text
//! commands, api                  wiring: may name anything below
//!   engine, trigger              the arbiter, clock, experiments; rollout triggers
//!     fault                      faults, revert records, recovery
//!       targets, leader, report  selection + safety rules, caches; the fence; reports
//!         history, state, journal  where records and shared state are kept
//!           policy               the language (its records' names come from record)
//!             record, kinds, labels, schedule  the shared vocabulary; the clock's arithmetic
//! ```
//!
//! One exception, kept on purpose: `record` names `api::openapi::Fault` in a schema
//! attribute only (the OpenAPI shape of a fault's parameters), no code.
//!
//! The wire model (`policy::model`, what YAML parses into) is read only inside
//! [`policy`]; everything else reads the validated [`policy::domain`] types.

pub mod access;
pub mod api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod engine;
pub mod fault;
pub mod history;
pub mod journal;
pub mod kinds;
pub mod labels;
pub mod leader;
pub mod logging;
pub mod policy;
pub mod record;
pub mod reload;
pub mod report;
pub mod schedule;
pub mod state;
pub mod targets;
pub mod trigger;
