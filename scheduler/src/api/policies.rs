//! `GET /api/v1/policies`: the loaded policies with their next fires, pauses, running
//! and last experiments, recent triggers and skips, and the views it answers with.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::{Shared, openapi};
use crate::{engine::arbiter::Pause, record::Verdict, trigger::TriggerView};

/// The answer of `GET /api/v1/policies`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PoliciesView {
    /// Whether this replica leads (only the leader injects).
    leader: bool,
    /// When the policies were loaded; null before the first load.
    loaded_at: Option<DateTime<Utc>>,
    /// All chaos paused; null when not.
    paused: Option<Pause>,
    policies: Vec<PolicyView>,
}

/// A loaded policy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    name: String,
    /// The policy's file name, without its directory (which stays private).
    file: String,
    #[schemars(with = "openapi::Fault")]
    fault: &'static str,
    dry_run: bool,
    /// The next clock fire, in the policy's time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "DateTime<chrono::FixedOffset>")]
    next_fire_at: Option<DateTime<chrono::FixedOffset>>,
    /// Whether the policy has a clock schedule.
    scheduled: bool,
    /// How many rollout triggers it has.
    rollout_triggers: usize,
    /// The policy's own pause, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Pause")]
    paused: Option<Pause>,
    /// Ids of its running experiments.
    running: Vec<String>,
    /// Its last experiment that ran (the cluster's history).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "LastRun")]
    last: Option<LastRun>,
    /// Newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recent_triggers: Vec<TriggerView>,
    /// Its skips (experiments that did not run), counted by reason code, and the last
    /// one: skips are not kept in the history one by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::history::skips::PolicySkips")]
    skips: Option<crate::history::skips::PolicySkips>,
}

/// The last experiment of a policy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct LastRun {
    id: String,
    verdict: Verdict,
    ended_at: DateTime<Utc>,
}

/// The name of a policy's file, without its directory.
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) async fn policies(State(app): Shared) -> Response {
    let arbiter = &app.arbiter;
    let set = app.policies.current();
    let pauses = arbiter.pauses();
    let running = arbiter.running();
    let skips = arbiter.shared_state().skips_seen();
    // The newest experiment of each policy in the history (skips are counted, not kept).
    let mut last: std::collections::HashMap<String, crate::history::Summary> =
        std::collections::HashMap::new();
    for s in app.history.summaries() {
        if last
            .get(&s.policy)
            .is_none_or(|l| (l.started_at, &l.id) < (s.started_at, &s.id))
        {
            last.insert(s.policy.clone(), s);
        }
    }
    let views: Vec<PolicyView> = set
        .policies
        .values()
        .map(|p| PolicyView {
            name: p.name.clone(),
            file: file_name(&p.file),
            fault: p.fault.name(),
            dry_run: p.dry_run,
            next_fire_at: app.next_fires.get(&p.name).and_then(|t| {
                p.schedule
                    .as_ref()
                    .map(|s| t.with_timezone(&s.calendar.tz).fixed_offset())
            }),
            scheduled: p.schedule.is_some(),
            rollout_triggers: p.triggers.len(),
            paused: pauses.policies.get(&p.name).cloned(),
            running: running
                .iter()
                .filter(|(_, name)| **name == p.name)
                .map(|(id, _)| id.clone())
                .collect(),
            last: last.get(&p.name).map(|r| LastRun {
                id: r.id.clone(),
                verdict: r.verdict,
                ended_at: r.ended_at,
            }),
            recent_triggers: app.triggers.of(&p.name),
            skips: skips.get(&p.name).cloned(),
        })
        .collect();
    Json(PoliciesView {
        leader: app.leader.is_leader(),
        loaded_at: set.loaded_at,
        paused: pauses.all,
        policies: views,
    })
    .into_response()
}
