//! The `HavocConfig` document: meaning, into a domain [`Config`] with defaults resolved.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use super::{Checker, Issue, domain_all, is_dns_label, parse_tz};
use crate::policy::{
    domain::{
        AlertmanagerSource, BUILTIN_PROTECTED_NAMESPACES, Config, DEFAULT_HEALTH_TIMEOUT,
        DEFAULT_NOTIFY_ON, Endpoint, HealthConfig, HistoryRetention, LeaderElection, Limits,
        NotifyOn, NotifyRule, Receiver, ServerConfig, Slo, WebhookUrl,
    },
    model::{self, HavocConfig},
};

/// A URL as an error message may show it: scheme and host only (a webhook's path may be
/// its secret).
fn origin(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/...")
        }
        None => match u.split_once('/') {
            Some((host, _)) => format!("{host:?} (and a path)"),
            None => format!("{u:?}"),
        },
    }
}

/// Checks an `http://` or `https://` URL.
fn url(c: &mut Checker, p: &str, u: &str) {
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
        c.value(
            p,
            format!("invalid URL {}: expected http:// or https://", origin(u)),
        );
    }
}

/// Validates the service configuration.
pub fn validate_config(cfg: &HavocConfig) -> Result<Config, Vec<Issue>> {
    let mut c = Checker::default();
    let s = &cfg.spec;
    let tz = c.take("/spec/timezone", parse_tz(&s.timezone));
    for (i, ns) in s.protected_namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            c.value(
                &format!("/spec/protectedNamespaces/{i}"),
                format!("invalid namespace name {ns:?}"),
            );
        }
    }
    // The configured list adds to the built-in one; it never replaces it.
    let mut protected: BTreeSet<String> = BUILTIN_PROTECTED_NAMESPACES
        .iter()
        .map(|s| s.to_string())
        .chain(s.protected_namespaces.iter().cloned())
        .collect();
    protected.insert(s.leader_election.namespace.clone());
    for (i, ns) in s.live_namespaces.iter().enumerate() {
        let p = format!("/spec/liveNamespaces/{i}");
        if !is_dns_label(ns) {
            c.value(&p, format!("invalid namespace name {ns:?}"));
        } else if protected.contains(ns) {
            c.value(
                &p,
                format!("namespace {ns:?} is protected; it cannot be live"),
            );
        }
    }
    if !is_dns_label(&s.leader_election.namespace) {
        c.value(
            "/spec/leaderElection/namespace",
            format!("invalid namespace name {:?}", s.leader_election.namespace),
        );
    }
    if s.limits.max_concurrent_experiments == 0 {
        c.value(
            "/spec/limits/maxConcurrentExperiments",
            "maxConcurrentExperiments must be at least 1",
        );
    }
    let health = health(&mut c, &s.health);
    let namespace_budget =
        super::budget::namespace_budget(&mut c, s.limits.namespace_budget.as_ref());
    let receivers = receivers(&mut c, &s.receivers);
    if let Some(names) = &s.notify.receivers {
        for (i, n) in names.iter().enumerate() {
            if !receivers.contains_key(n) {
                c.value(
                    &format!("/spec/notify/receivers/{i}"),
                    format!("unknown receiver {n:?}"),
                );
            }
        }
    }
    if let Some(t) = &s.server.token {
        c.secret("/spec/server/token", t);
    }
    if let Some(url) = &s.server.grafana_url
        && !grafana_url_ok(url)
    {
        c.value(
            "/spec/server/grafanaUrl",
            // Not quoted: it may hold credentials.
            "invalid grafanaUrl: expected an http:// or https:// URL without credentials, query or fragment",
        );
    }
    if s.server.read_requires_token && s.server.token.is_none() {
        c.value(
            "/spec/server/readRequiresToken",
            "readRequiresToken needs server.token: without a token nobody could read the API or the console",
        );
    }
    for (i, on) in s.events.verdicts.iter().flatten().enumerate() {
        if NotifyOn::from(*on) == NotifyOn::Started {
            c.value(
                &format!("/spec/events/verdicts/{i}"),
                "`started` is not a verdict: the injection has its own Event (ChaosInjected)"
                    .to_string(),
            );
        }
    }
    let grafana = grafana(&mut c, s);
    let listen = c.take(
        "/spec/server/listen",
        s.server.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "invalid listen address {:?}: expected IP:PORT",
                s.server.listen
            )
        }),
    );
    let value = match (tz, listen) {
        (Some(timezone), Some(listen)) => Some(Config {
            dry_run: s.dry_run,
            live_namespaces: s.live_namespaces.iter().cloned().collect(),
            timezone,
            policies: s.policies.clone(),
            protected_namespaces: protected,
            limits: Limits {
                max_concurrent_experiments: s.limits.max_concurrent_experiments,
                min_available_replicas: s.limits.min_available_replicas,
                max_unschedulable_nodes: s.limits.max_unschedulable_nodes,
                namespace_budget,
            },
            health,
            receivers,
            notify: NotifyRule {
                receivers: s.notify.receivers.clone().unwrap_or_default(),
                on: s
                    .notify
                    .on
                    .as_deref()
                    .map_or_else(|| DEFAULT_NOTIFY_ON.to_vec(), domain_all),
            },
            circuit_breaker_cooldown: s.circuit_breaker.cooldown.0,
            event_verdicts: s
                .events
                .verdicts
                .as_deref()
                .map_or_else(|| DEFAULT_NOTIFY_ON.to_vec(), domain_all),
            server: ServerConfig {
                listen,
                token: s.server.token.clone(),
                read_requires_token: s.server.read_requires_token,
                grafana_url: s
                    .server
                    .grafana_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_string()),
            },
            history: history(&mut c, &s.history),
            leader_election: LeaderElection {
                enabled: s.leader_election.enabled,
                namespace: s.leader_election.namespace.clone(),
                lease: s.leader_election.lease.clone(),
            },
            cluster_name: s.cluster_name.clone(),
            grafana,
            preflight: preflight(&mut c, s),
        }),
        _ => None,
    };
    c.finish(value)
}

/// A Grafana link target: http(s), a host, no user info (it would show in every page),
/// and no query or fragment (the console appends the time range).
fn grafana_url_ok(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    !host.is_empty()
        && !host.contains('@')
        && !url.contains(['?', '#', '"', '<', '>', ' '])
        && url.chars().all(|c| c.is_ascii_graphic())
}

fn preflight(c: &mut Checker, s: &model::ConfigSpec) -> Option<super::super::domain::Preflight> {
    let p = s.preflight.as_ref()?;
    url(c, "/spec/preflight/url", &p.url);
    if let Some(secret) = &p.secret {
        c.secret("/spec/preflight/secret", secret);
    }
    if let Some(t) = p.timeout
        && t.0.is_zero()
    {
        c.value("/spec/preflight/timeout", "timeout must be more than 0s");
    }
    Some(super::super::domain::Preflight {
        url: p.url.clone(),
        secret: p.secret.clone(),
        timeout: p.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |t| t.0),
    })
}

fn health(c: &mut Checker, h: &model::HealthConfig) -> HealthConfig {
    if h.interval.0 < Duration::from_secs(1) {
        c.value(
            "/spec/health/interval",
            "health.interval must be at least 1s",
        );
    }
    let prometheus = h.prometheus.as_ref().map(|p| {
        url(c, "/spec/health/prometheus/url", &p.url);
        Endpoint {
            url: p.url.clone(),
            timeout: p.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |t| t.0),
        }
    });
    let alertmanager = h.alertmanager.as_ref().map(|a| {
        url(c, "/spec/health/alertmanager/url", &a.url);
        let mut matchers = Vec::new();
        for (i, m) in a.matchers.iter().enumerate() {
            if let Some(m) = c.take(
                &format!("/spec/health/alertmanager/matchers/{i}"),
                m.parse(),
            ) {
                matchers.push(m);
            }
        }
        AlertmanagerSource {
            endpoint: Endpoint {
                url: a.url.clone(),
                timeout: a.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |t| t.0),
            },
            matchers,
        }
    });
    let mut slos = Vec::new();
    let mut names = BTreeSet::new();
    for (i, slo) in h.slos.iter().enumerate() {
        let p = format!("/spec/health/slos/{i}");
        if !names.insert(slo.name.clone()) {
            c.value(
                &format!("{p}/name"),
                format!("duplicate SLO name {:?}", slo.name),
            );
        }
        if slo.query.trim().is_empty() {
            c.value(&format!("{p}/query"), "empty query");
        }
        if let Some(objective) = c.take(&format!("{p}/objective"), slo.objective.parse()) {
            slos.push(Slo {
                name: slo.name.clone(),
                query: slo.query.clone(),
                objective,
                objective_text: slo.objective.clone(),
            });
        }
    }
    if !slos.is_empty() && prometheus.is_none() {
        c.key("/spec/health/slos", "SLO checks need health.prometheus");
    }
    let budgets = super::budget::config_budgets(c, &h.budgets);
    if !h.budgets.is_empty() && prometheus.is_none() {
        c.key(
            "/spec/health/budgets",
            "error budgets need health.prometheus",
        );
    }
    let sources = alertmanager.is_some() || !slos.is_empty() || !budgets.is_empty();
    if !sources && !h.none {
        c.key(
            "/spec/health",
            "no health source: configure alertmanager and/or prometheus with slos, or say `none: true` to judge by nothing (unsafe: every experiment would pass)",
        );
    }
    if sources && h.none {
        c.key(
            "/spec/health/none",
            "`none: true` with health sources configured: drop one",
        );
    }
    HealthConfig {
        interval: h.interval.0,
        fail_closed: h.fail_closed,
        prometheus,
        alertmanager,
        slos,
        budgets,
    }
}

fn receivers(c: &mut Checker, list: &[model::Receiver]) -> BTreeMap<String, Receiver> {
    let mut receivers = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, r) in list.iter().enumerate() {
        let p = format!("/spec/receivers/{i}");
        let receiver = match (&r.slack, &r.webhook) {
            (Some(sl), None) => {
                c.secret(&format!("{p}/slack/token"), &sl.token);
                if let Some(u) = &sl.api_url {
                    url(c, &format!("{p}/slack/apiUrl"), u);
                    // The bot token travels with every request: never over plain HTTP,
                    // except to this machine (a local sink).
                    if u.starts_with("http://")
                        && let Err(e) = havoc_integrations::slack::validate_api_url(u)
                    {
                        c.value(&format!("{p}/slack/apiUrl"), e.to_string());
                    }
                }
                Some(Receiver::Slack {
                    channel: sl.channel.clone(),
                    token: sl.token.clone(),
                    api_url: sl.api_url.clone(),
                })
            }
            (None, Some(w)) => {
                match &w.url {
                    model::WebhookUrl::Inline(u) => url(c, &format!("{p}/webhook/url"), u),
                    model::WebhookUrl::Secret(s) => c.secret(&format!("{p}/webhook/url"), s),
                }
                if let Some(sec) = &w.secret {
                    c.secret(&format!("{p}/webhook/secret"), sec);
                }
                Some(Receiver::Webhook {
                    url: match &w.url {
                        model::WebhookUrl::Inline(u) => WebhookUrl::Inline(u.clone()),
                        model::WebhookUrl::Secret(s) => WebhookUrl::Secret(s.clone()),
                    },
                    secret: w.secret.clone(),
                })
            }
            _ => {
                c.key(&p, "a receiver needs exactly one of `slack` or `webhook`");
                None
            }
        };
        if !seen.insert(r.name.clone()) {
            c.value(
                &format!("{p}/name"),
                format!("duplicate receiver name {:?}", r.name),
            );
        } else if let Some(receiver) = receiver {
            receivers.insert(r.name.clone(), receiver);
        }
    }
    receivers
}

/// `clusterName` and `grafana`: the name is a metric label value and an annotation tag, so
/// printable, without `,` (Grafana's tag separator in its UI) and at most 63 characters;
/// annotations without it would land on every cluster's graphs alike.
/// Most objects the history may keep (each at most about 100 KiB).
const MAX_KEEP: u32 = 10_000;

fn history(c: &mut Checker, h: &model::HistoryConfig) -> HistoryRetention {
    if !(1..=MAX_KEEP).contains(&h.keep) {
        c.value(
            "/spec/history/keep",
            format!("history.keep must be 1 to {MAX_KEEP}, not {}", h.keep),
        );
    }
    if h.max_age.0 < Duration::from_secs(3600) {
        c.value("/spec/history/maxAge", "history.maxAge must be at least 1h");
    }
    HistoryRetention {
        keep: h.keep as usize,
        max_age: h.max_age.0,
    }
}

fn grafana(c: &mut Checker, s: &model::ConfigSpec) -> Option<super::super::domain::Grafana> {
    if let Some(name) = &s.cluster_name
        && (name.is_empty()
            || name.chars().count() > 63
            || name
                .chars()
                .any(|ch| ch.is_control() || ch.is_whitespace() || ch == ','))
    {
        c.value(
            "/spec/clusterName",
            format!(
                "invalid clusterName {name:?}: 1 to 63 characters, no spaces, commas or control characters"
            ),
        );
    }
    let g = s.grafana.as_ref()?;
    url(c, "/spec/grafana/url", &g.url);
    c.secret("/spec/grafana/token", &g.token);
    if let Some(u) = &g.console_url {
        url(c, "/spec/grafana/consoleUrl", u);
    }
    if s.cluster_name.is_none() {
        c.key(
            "/spec/grafana",
            "grafana annotations need clusterName: every annotation is tagged with the cluster, so that it lands only on that cluster's graphs",
        );
    }
    for (i, t) in g.tags.iter().enumerate() {
        if t.trim().is_empty() || t.chars().any(char::is_control) {
            c.value(
                &format!("/spec/grafana/tags/{i}"),
                format!("invalid tag {t:?}: empty or with control characters"),
            );
        }
    }
    if let Some(t) = g.timeout
        && t.0.is_zero()
    {
        c.value("/spec/grafana/timeout", "timeout must be more than 0s");
    }
    Some(super::super::domain::Grafana {
        url: g.url.clone(),
        token: g.token.clone(),
        dashboard_uid: g.dashboard_uid.clone().filter(|d| !d.is_empty()),
        tags: g.tags.clone(),
        console_url: g
            .console_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
        timeout: g.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |t| t.0),
    })
}
