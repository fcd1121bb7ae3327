//! havoc: continuous, safe chaos for Kubernetes.
//!
//! # Layout
//!
//! - [`policy`]: the policy language and service config: parsing with positions,
//!   validation into domain types, JSON Schema.
//! - [`schedule`]: clock triggers (cron, random, windows, blackouts); pure.
//! - [`engine`]: the experiment lifecycle; [`engine::verdict`] holds the pure verdict rules.
//! - [`fault`]: faults through the Kubernetes API (pod delete and evict so far).
//! - [`journal`]: experiment records and the JSON-lines journal.
//! - [`target`]: target selection and the safety rules (pure), and snapshots built from
//!   Kubernetes objects ([`target::kube`]).
//! - [`run`]: `havoc run POLICY --once`, one experiment for CI/CD.
//! - [`serve`]: `havoc serve`, the long-running service; [`server`] is its HTTP API.
//! - [`cli`]: the `havoc` command line; `main.rs` only calls [`cli::run`].
//!
//! - [`trigger`]: rollout triggers (one watch per workload kind).

pub mod cli;
pub mod engine;
pub mod fault;
pub mod journal;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod server;
pub mod target;
pub mod trigger;
