//! The engine: one arbiter for all experiments, limits, pause switches, the circuit
//! breaker, and the experiment lifecycle (DESIGN section 1).
//!
//! - [`experiment`]: one experiment from gate to verdict.
//! - [`notify`]: failure-only notifications to Slack and webhooks.
//! - [`health`]: reads Alertmanager and Prometheus into observations.
//! - [`verdict`]: gate, observation and verdict rules (pure).

pub mod experiment;
pub mod health;
pub mod notify;
pub mod verdict;
