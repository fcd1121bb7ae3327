//! Typed clients for the systems havoc judges by and reports to (Prometheus,
//! Alertmanager, Slack, webhooks). They know nothing of the engine.
//!
//! The clients arrive with the service (issue 4); the crate exists now so that the
//! workspace has its final shape.
