//! The engine: one arbiter for all experiments, limits, pause switches, the circuit
//! breaker, and the experiment lifecycle (DESIGN section 1).
//!
//! - [`arbiter`]: decides whether an experiment starts (pauses, limits, circuit breaker)
//!   and emits its record.
//! - [`clock`]: clock triggers in the service; missed fires are recorded, not run late.
//! - [`experiment`]: one experiment from gate to verdict.
//! - [`emit`]: a final record emitted (journal, metrics, Events), the same for the service
//!   and `havoc run`; the breaker's decision and the receivers for the caller.
//! - [`events`]: Kubernetes Events on targets.
//! - [`metrics`]: the Prometheus metrics.
//! - [`notify`]: failure-only notifications to Slack and webhooks.
//! - [`annotations`]: live experiments marked on dashboards (a gauge, Grafana regions).
//! - [`health`]: reads Alertmanager and Prometheus into observations (behind the
//!   [`health::HealthSource`] trait).
//! - [`verdict`]: gate, observation and verdict rules (pure).

pub mod annotations;
pub mod arbiter;
pub mod budget;
pub mod clock;
pub mod emit;
pub mod events;
pub mod experiment;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod sweeper;
pub mod verdict;
