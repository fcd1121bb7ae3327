//! Typed clients for the systems havoc judges by and reports to: Prometheus and
//! Alertmanager (health), Slack and webhooks (notifications), Grafana (annotations). They know nothing of the
//! engine: they take URLs, secrets and timeouts, and return typed values or typed errors.
//!
//! # Layout
//!
//! - [`secret`]: [`SecretString`] (never printed) and resolution of `{env, file}` references.
//! - [`alertmanager`]: active alerts from the v2 API, filtered by Alertmanager itself.
//! - [`prometheus`]: instant queries and the single number an SLO query yields.
//! - [`slack`]: `chat.postMessage` (one JSON POST), with retryable/permanent failures;
//!   every message cut to Slack's limits ([`slack::limits`]), the text alone when Slack
//!   still refuses the blocks; `https://` only, but for loopback hosts.
//! - [`webhook`]: JSON `POST` signed with a timestamped HMAC-SHA256
//!   (`X-Havoc-Signature: t=<unix seconds>,v1=<hex>`), and [`webhook::verify`], the check
//!   a receiver makes.
//! - [`grafana`]: annotations through Grafana's HTTP API (create a region, patch its end).
//! - [`retry`](mod@retry): exponential backoff for notifications, honouring `Retry-After`
//!   up to the backoff's maximum.
//! - [`error`]: [`Error`] (health sources, configuration, secrets) and [`NotifyError`]
//!   (notifications), each with a stable `kind()` label for metrics.
//!
//! # HTTP and TLS
//!
//! Prometheus, Alertmanager, webhooks and Slack share one HTTP stack, `reqwest` (hyper
//! underneath, HTTP/1.1 only). TLS is rustls with the `ring` crypto provider
//! only, the one kube uses, so no second provider (aws-lc-rs) enters the build. Every
//! client gets its rustls configuration from [`tls::client_config`] (ring + the platform's
//! certificate verifier), so nothing here depends on, or installs, a process-wide default
//! provider.
//!
//! Every request carries a timeout; errors and `Debug` output never contain a secret
//! (tokens, webhook secrets, webhook URL paths and queries, URL credentials), and quote
//! what an upstream said only short and sanitized (see [`error`]).
//!
//! `README.md` next to this crate's `Cargo.toml` tells receivers how to verify webhook
//! signatures and explains the choices above.

pub mod alertmanager;
pub mod error;
pub mod grafana;
mod http;
pub mod preflight;
pub mod prometheus;
pub mod retry;
pub mod secret;
pub mod slack;
#[cfg(any(test, feature = "test-server"))]
pub mod test_server;
pub mod tls;
pub mod webhook;

pub use error::{Error, NotifyError};
pub use retry::{Backoff, RetryFailure, retry};
pub use secret::{SecretRef, SecretString};
