//! Reads global health: active alerts from Alertmanager and SLO values from Prometheus,
//! turned into an [`Observation`] for the verdict rules. A source that cannot be read is
//! reported as unreadable, never as healthy.

use std::time::Duration;

use chrono::Utc;
use havoc_integrations::{alertmanager, prometheus};

use super::verdict::Observation;
use crate::{
    journal::{AlertRecord, SloRecord},
    policy::{Config, expr::Objective, model::Slo},
};

/// Default per-request timeout of health sources.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The health sources of the service configuration.
#[derive(Debug)]
pub struct Health {
    alertmanager: Option<alertmanager::Client>,
    prometheus: Option<prometheus::Client>,
    /// The service's alert matchers (which alerts count at all).
    matchers: Vec<String>,
    slos: Vec<(Slo, Objective)>,
    metrics: Option<super::metrics::Metrics>,
}

impl Health {
    pub fn from_config(cfg: &Config) -> Result<Self, havoc_integrations::Error> {
        let h = &cfg.spec.health;
        let alertmanager = h
            .alertmanager
            .as_ref()
            .map(|a| alertmanager::Client::new(&a.url, a.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0)))
            .transpose()?;
        let prometheus = h
            .prometheus
            .as_ref()
            .map(|p| prometheus::Client::new(&p.url, p.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0)))
            .transpose()?;
        Ok(Health {
            alertmanager,
            prometheus,
            matchers: h
                .alertmanager
                .as_ref()
                .map(|a| a.matchers.clone())
                .unwrap_or_default(),
            slos: cfg.slos.clone(),
            metrics: None,
        })
    }

    /// Counts every read in `havoc_health_checks_total{source,result}`.
    pub fn with_metrics(mut self, metrics: super::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, source: &str, ok: bool) {
        if let Some(m) = &self.metrics {
            m.health_check(source, ok);
        }
    }

    /// Whether any source is configured at all.
    pub fn has_sources(&self) -> bool {
        self.alertmanager.is_some() || (self.prometheus.is_some() && !self.slos.is_empty())
    }

    /// One reading of every source. `alert_matchers` narrow the alerts (a policy's);
    /// `slo_names` picks the SLO checks (`None`: all).
    pub async fn observe(
        &self,
        alert_matchers: &[String],
        slo_names: Option<&[String]>,
    ) -> Observation {
        let (alerts, slos) =
            tokio::join!(self.alerts(alert_matchers), self.slo_readings(slo_names));
        let mut obs = Observation::default();
        match alerts {
            Ok(a) => obs.alerts = a,
            Err(e) => obs.unreadable.push(e),
        }
        let (readings, errors) = slos;
        obs.slos = readings;
        obs.unreadable.extend(errors);
        obs
    }

    async fn alerts(&self, extra: &[String]) -> Result<Vec<AlertRecord>, String> {
        let Some(am) = &self.alertmanager else {
            return Ok(Vec::new());
        };
        let matchers: Vec<String> = self.matchers.iter().chain(extra).cloned().collect();
        let alerts = am.active_alerts(&matchers).await;
        self.count("alertmanager", alerts.is_ok());
        let alerts = alerts.map_err(|e| format!("alertmanager: {e}"))?;
        Ok(alerts
            .into_iter()
            .map(|a| AlertRecord {
                name: a.name,
                fingerprint: a.fingerprint,
                labels: a.labels,
                starts_at: a.starts_at,
            })
            .collect())
    }

    async fn slo_readings(&self, names: Option<&[String]>) -> (Vec<SloRecord>, Vec<String>) {
        let (mut readings, mut errors) = (Vec::new(), Vec::new());
        let wanted = self
            .slos
            .iter()
            .filter(|(s, _)| names.is_none_or(|n| n.contains(&s.name)));
        // All queries at once: the gate's latency is one round trip, not one per SLO.
        let reads = wanted.map(|(slo, objective)| async move {
            let Some(prom) = &self.prometheus else {
                return Err(format!("prometheus: not configured for SLO {}", slo.name));
            };
            let value = prom.slo_value(&slo.query).await;
            self.count("prometheus", value.is_ok());
            match value {
                Ok(value) => Ok(SloRecord {
                    name: slo.name.clone(),
                    value,
                    objective: slo.objective.clone(),
                    // No data (e.g. no traffic) is not a breach.
                    breached: value.is_some_and(|v| !objective.holds(v)),
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
