//! The engine: one arbiter for all experiments, limits, pause switches, the circuit
//! breaker, and the experiment lifecycle (DESIGN section 1).
//!
//! - [`verdict`]: gate, observation and verdict rules (pure).

pub mod verdict;
