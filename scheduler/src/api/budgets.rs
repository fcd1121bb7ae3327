//! `GET /api/v1/budgets`: what is left of each namespace's chaos budget (counted from the
//! history in the cluster, the same on every replica) and the error budgets with their
//! last readings.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::{ApiError, Shared, error};
use crate::{
    history::ledger::NamespaceSpend,
    policy::{Policy, domain::NamespaceScope},
};

/// The answer of `GET /api/v1/budgets`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BudgetsView {
    /// Each namespace's chaos budget; null when `limits.namespaceBudget` is not set.
    namespace_budget: Option<NamespaceBudgetView>,
    /// The config's error budgets, with their last readings on this replica.
    error_budgets: Vec<ErrorBudgetView>,
}

/// `limits.namespaceBudget` now.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct NamespaceBudgetView {
    /// The period (a window ending now), in seconds.
    period_seconds: u64,
    /// The fault time of a namespace without its own, in seconds.
    default_seconds: u64,
    /// The namespaces the policies name, those that took fault time in the period, and
    /// those with their own budget; sorted.
    namespaces: Vec<NamespaceSpend>,
}

/// An error budget of the config.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ErrorBudgetView {
    name: String,
    /// `sloth SERVICE/SLO`, `pyrra SLO` or `query`.
    source: String,
    min_remaining: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_burn_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    burn_rate_after: Option<f64>,
    /// When an experiment last read it on this replica; null: not yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<DateTime<Utc>>,
    /// What that reading said (remaining, burn rate), or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reading: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The namespaces `policies` name in their targets.
pub(crate) fn named_namespaces<'a>(policies: impl Iterator<Item = &'a Policy>) -> Vec<String> {
    policies
        .filter_map(|p| match &p.target.namespaces {
            NamespaceScope::Names(names) => Some(names.iter().cloned()),
            NamespaceScope::All | NamespaceScope::Selector(_) => None,
        })
        .flatten()
        .collect()
}

pub(super) async fn budgets(State(app): Shared) -> Result<Response, ApiError> {
    let config = &app.console.parts.config;
    let namespace_budget = match &config.limits.namespace_budget {
        None => None,
        Some(_) if !app.history.is_ready() => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the experiment history has not been read yet: namespace budgets are counted from it",
            ));
        }
        Some(b) => {
            let set = app.policies.current();
            Some(NamespaceBudgetView {
                period_seconds: b.per.as_secs(),
                default_seconds: b.fault_time.as_secs(),
                namespaces: crate::history::ledger::spends(
                    b,
                    app.history.as_ref(),
                    named_namespaces(set.policies.values().map(AsRef::as_ref)),
                    Utc::now(),
                ),
            })
        }
    };
    let readings = app.console.parts.health.snapshot();
    let error_budgets = config
        .health
        .budgets
        .iter()
        .map(|b| {
            let last = readings.get(&format!("budget/{}", b.name));
            ErrorBudgetView {
                name: b.name.clone(),
                source: b.source.text.clone(),
                min_remaining: b.min_remaining,
                max_burn_rate: b.max_burn_rate,
                burn_rate_after: b.burn_rate_after,
                read_at: last.map(|r| r.at),
                reading: last.and_then(|r| r.outcome.clone().ok()),
                error: last.and_then(|r| r.outcome.clone().err()),
            }
        })
        .collect();
    Ok(Json(BudgetsView {
        namespace_budget,
        error_budgets,
    })
    .into_response())
}
