//! havoc: continuous, safe chaos for Kubernetes.
//!
//! # Layout
//!
//! - [`policy`]: the policy language and service config: parsing with positions,
//!   validation into domain types, JSON Schema.
//! - [`schedule`]: clock triggers (cron, random, windows, blackouts); pure.
//! - [`cli`]: the `havoc` command line; `main.rs` only calls [`cli::run`].
//!
//! Event triggers, targets, faults, the engine, the journal and the HTTP server arrive
//! with the service.

pub mod cli;
pub mod policy;
pub mod schedule;
