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
//! - [`target`]: target selection and the safety rules (pure).
//! - [`cli`]: the `havoc` command line; `main.rs` only calls [`cli::run`].
//!
//! Event triggers, targets, faults, the engine, the journal and the HTTP server arrive
//! with the service.

pub mod cli;
pub mod engine;
pub mod fault;
pub mod journal;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod target;
