//! Reads global health: active alerts from Alertmanager and SLO values from Prometheus,
//! turned into an [`Observation`] for the verdict rules. A source that cannot be read is
//! reported as unreadable, never as healthy.
//!
//! The engine reads health through the [`HealthSource`] trait, so that the experiment
//! lifecycle can be tested with scripted observations.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{FutureExt, future::BoxFuture};
use havoc_integrations::{alertmanager, prometheus};

use super::{budget::BudgetReading, metrics::Metrics, verdict::Observation};
use crate::{
    policy::{
        Config,
        domain::{Budget, PolicyHealth, Slo},
    },
    record::{AlertRecord, SloRecord},
};

/// Where an experiment's health observations come from.
pub trait HealthSource: Send + Sync {
    /// One reading of every source, narrowed to what `policy` judges by.
    fn observe<'a>(&'a self, policy: &'a PolicyHealth) -> BoxFuture<'a, Observation>;
}

/// The health sources of the service configuration.
#[derive(Debug)]
pub struct Health {
    alertmanager: Option<alertmanager::Client>,
    prometheus: Option<prometheus::Client>,
    /// The service's alert matchers (which alerts count at all).
    matchers: Vec<String>,
    slos: Vec<Slo>,
    /// The config's error budgets (a policy chooses among them, or brings its own).
    budgets: Vec<Budget>,
    metrics: Option<Metrics>,
    readings: Readings,
}

/// The last reading of one health source: when, how long it took, what it said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub at: DateTime<Utc>,
    pub latency: Duration,
    /// What was read (e.g. `2 alerts firing: A, B`), or why it could not be.
    pub outcome: Result<String, String>,
}

/// The last reading of each health source (`alertmanager`, `slo/NAME`), as the
/// experiments read them: a read-only view for the console. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readings(Arc<Mutex<BTreeMap<String, Reading>>>);

impl Readings {
    /// Source name -> its last reading.
    pub fn snapshot(&self) -> BTreeMap<String, Reading> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn record(&self, source: &str, started: Instant, outcome: Result<String, String>) {
        let reading = Reading {
            at: Utc::now(),
            latency: started.elapsed(),
            outcome,
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(source.to_string(), reading);
    }
}

impl HealthSource for Health {
    fn observe<'a>(&'a self, policy: &'a PolicyHealth) -> BoxFuture<'a, Observation> {
        self.read(policy).boxed()
    }
}

impl Health {
    pub fn from_config(cfg: &Config) -> Result<Self, havoc_integrations::Error> {
        let h = &cfg.health;
        let alertmanager = h
            .alertmanager
            .as_ref()
            .map(|a| alertmanager::Client::new(&a.endpoint.url, a.endpoint.timeout))
            .transpose()?;
        let prometheus = h
            .prometheus
            .as_ref()
            .map(|p| prometheus::Client::new(&p.url, p.timeout))
            .transpose()?;
        Ok(Health {
            alertmanager,
            prometheus,
            matchers: h
                .alertmanager
                .iter()
                .flat_map(|a| a.matchers.iter().map(ToString::to_string))
                .collect(),
            slos: h.slos.clone(),
            budgets: h.budgets.clone(),
            metrics: None,
            readings: Readings::default(),
        })
    }

    /// Counts every read in `havoc_health_checks_total{source,result}`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, source: &str, ok: bool) {
        if let Some(m) = &self.metrics {
            m.health_check(source, ok);
        }
    }

    /// The last reading of each source (a handle that follows later reads).
    pub fn readings(&self) -> Readings {
        self.readings.clone()
    }

    /// Whether any source is configured at all.
    pub fn has_sources(&self) -> bool {
        self.alertmanager.is_some()
            || (self.prometheus.is_some() && !(self.slos.is_empty() && self.budgets.is_empty()))
    }

    async fn read(&self, policy: &PolicyHealth) -> Observation {
        let extra: Vec<String> = policy
            .alert_matchers
            .iter()
            .map(ToString::to_string)
            .collect();
        let (alerts, slos, budgets) = tokio::join!(
            self.alerts(&extra),
            self.slo_readings(policy),
            self.budget_readings(policy)
        );
        let mut obs = Observation::default();
        match alerts {
            Ok(a) => obs.alerts = a,
            Err(e) => obs.unreadable.push(format!("alertmanager: {e}")),
        }
        let (readings, errors) = slos;
        obs.slos = readings;
        obs.unreadable.extend(errors);
        (obs.budgets, obs.budget_unreadable) = budgets;
        obs
    }

    /// Reads every error budget `policy` spends: its remaining share and, when it has
    /// one, its burn rate, all queries at once. No data is unreadable (fail closed).
    async fn budget_readings(&self, policy: &PolicyHealth) -> (Vec<BudgetReading>, Vec<String>) {
        let budgets = match policy.budgets.resolve(&self.budgets) {
            Ok(b) => b,
            Err(e) => return (Vec::new(), vec![e]),
        };
        let reads = budgets.into_iter().map(|budget| async move {
            let Some(prom) = &self.prometheus else {
                return Err(format!(
                    "{}: health.prometheus is not configured",
                    budget.name
                ));
            };
            let started = Instant::now();
            let burn = async {
                match &budget.source.burn_rate {
                    Some(q) => Some(prom.slo_value(q).await),
                    None => None,
                }
            };
            let (remaining, burn) = tokio::join!(prom.slo_value(&budget.source.remaining), burn);
            self.count(
                "prometheus",
                remaining.is_ok() && burn.as_ref().is_none_or(Result::is_ok),
            );
            let remaining = match remaining {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(format!(
                    "{} ({}): no data for the remaining budget",
                    budget.name, budget.source.text
                )),
                Err(e) => Err(format!("{} ({}): {e}", budget.name, budget.source.text)),
            };
            // A burn rate nobody judges by may be missing; one a threshold needs may not.
            let judged = budget.max_burn_rate.is_some() || budget.burn_rate_after.is_some();
            let burn_rate = match burn {
                Some(Ok(Some(v))) => Ok(Some(v)),
                None => Ok(None),
                Some(Ok(None)) if judged => Err(format!(
                    "{} ({}): no data for the burn rate",
                    budget.name, budget.source.text
                )),
                Some(Err(e)) if judged => Err(format!(
                    "{} ({}): burn rate: {e}",
                    budget.name, budget.source.text
                )),
                Some(_) => Ok(None),
            };
            self.readings.record(
                &format!("budget/{}", budget.name),
                started,
                match (&remaining, &burn_rate) {
                    (Ok(left), Ok(rate)) => Ok(format!(
                        "{} remaining (minimum {}){}",
                        super::budget::value(*left),
                        budget.min_remaining,
                        rate.map(|r| format!(", burn rate {}", super::budget::value(r)))
                            .unwrap_or_default()
                    )),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                },
            );
            match (remaining, burn_rate) {
                (Ok(left), Ok(rate)) => Ok(BudgetReading {
                    budget,
                    remaining: Some(left),
                    burn_rate: rate,
                }),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        });
        let (mut readings, mut errors) = (Vec::new(), Vec::new());
        for r in futures::future::join_all(reads).await {
            match r {
                Ok(r) => readings.push(r),
                Err(e) => errors.push(e),
            }
        }
        (readings, errors)
    }

    async fn alerts(
        &self,
        extra: &[String],
    ) -> Result<Vec<AlertRecord>, havoc_integrations::Error> {
        let Some(am) = &self.alertmanager else {
            return Ok(Vec::new());
        };
        let matchers: Vec<String> = self.matchers.iter().chain(extra).cloned().collect();
        let started = Instant::now();
        let alerts = am.active_alerts(&matchers).await;
        self.count("alertmanager", alerts.is_ok());
        self.readings.record(
            "alertmanager",
            started,
            match &alerts {
                Ok(a) if a.is_empty() => Ok("no alert firing".to_string()),
                Ok(a) => Ok(format!(
                    "{} firing: {}",
                    a.len(),
                    a.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(e) => Err(e.to_string()),
            },
        );
        Ok(alerts?
            .into_iter()
            .map(|a| AlertRecord {
                name: a.name,
                fingerprint: a.fingerprint,
                labels: a.labels,
                starts_at: a.starts_at,
            })
            .collect())
    }

    async fn slo_readings(&self, policy: &PolicyHealth) -> (Vec<SloRecord>, Vec<String>) {
        let (mut readings, mut errors) = (Vec::new(), Vec::new());
        let wanted = self.slos.iter().filter(|s| policy.slos.includes(&s.name));
        // All queries at once: the gate's latency is one round trip, not one per SLO.
        let reads = wanted.map(|slo| async move {
            let Some(prom) = &self.prometheus else {
                return Err(format!("prometheus: not configured for SLO {}", slo.name));
            };
            let started = Instant::now();
            let value = prom.slo_value(&slo.query).await;
            self.count("prometheus", value.is_ok());
            self.readings.record(
                &format!("slo/{}", slo.name),
                started,
                match &value {
                    Ok(Some(v)) => Ok(format!("{v} (objective {})", slo.objective_text)),
                    Ok(None) => Ok("no data".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            );
            match value {
                Ok(value) => Ok(SloRecord {
                    name: slo.name.clone(),
                    value,
                    objective: slo.objective_text.clone(),
                    // No data (e.g. no traffic) is not a breach.
                    breached: value.is_some_and(|v| !slo.objective.holds(v)),
                    at: Utc::now(),
                }),
                Err(e) => Err(format!("prometheus: SLO {}: {e}", slo.name)),
            }
        });
        for r in futures::future::join_all(reads).await {
            match r {
                Ok(s) => readings.push(s),
                Err(e) => errors.push(e),
            }
        }
        (readings, errors)
    }
}
