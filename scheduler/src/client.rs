//! The one place that builds kube clients: the rustls provider, timeouts, and kube's
//! default retry turned off (with the reasons), plus a layer counting requests in
//! `havoc_kube_requests_total{verb,resource}`.

use std::{path::Path, time::Duration};

use crate::engine::metrics::Metrics;

/// Read timeout of API calls that are not watches.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// kube's default read timeout, for watch connections (the server ends them after 290 s).
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(295);
/// Connect timeout of every client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster configuration (neither a kubeconfig nor in-cluster): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the client: {0}")]
    Build(#[from] kube::Error),
}

/// kube's rustls needs a process-wide provider; havoc uses ring everywhere.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a client is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Every call but watches: bounded by [`READ_TIMEOUT`].
    Requests,
    /// Long watch connections: kube's default read timeout.
    Watches,
}

/// The client configuration havoc uses everywhere: from an explicit kubeconfig, or
/// inferred ($KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn config(
    kubeconfig: Option<&Path>,
    purpose: Purpose,
) -> Result<kube::Config, ClientError> {
    install_crypto_provider();
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ClientError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    config.read_timeout = Some(match purpose {
        Purpose::Requests => READ_TIMEOUT,
        Purpose::Watches => WATCH_READ_TIMEOUT,
    });
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    // kube 5 retries 429/503/504 by default, up to 15 times and minutes apart. For havoc a
    // 429 on an eviction is a PodDisruptionBudget saying no: retrying it would hang the
    // experiment and then evict the pod anyway once the budget frees up. havoc retries
    // transient errors itself, boundedly (fault::is_transient).
    config.default_retry = false;
    Ok(config)
}

/// A request as the API server counts it in `apiserver_request_total`: its verb (`get`,
/// `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`) and its
/// resource, with the subresource (`pods/eviction`); `discovery` for the API listings.
/// Counted this way, havoc's own figures can be checked against the API server's, and
/// an experiment's requests read by kind.
pub fn classify(method: &str, path: &str, query: &str) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    // namespaces/NS/RESOURCE/... is a namespaced resource; namespaces[/NAME] the kind.
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        r => r,
    };
    let (resource, named) = match rest {
        [] => ("discovery".to_string(), false),
        [r] => (r.to_string(), false),
        [r, _] => (r.to_string(), true),
        [r, _, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// A client; with `metrics`, every request is counted by verb and resource
/// ([`classify`]).
pub async fn client(
    kubeconfig: Option<&Path>,
    purpose: Purpose,
    metrics: Option<&Metrics>,
) -> Result<kube::Client, ClientError> {
    let config = config(kubeconfig, purpose).await?;
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match metrics {
        Some(m) => {
            let m = m.clone();
            let count =
                tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                    let uri = req.uri();
                    let (verb, resource) =
                        classify(req.method().as_str(), uri.path(), uri.query().unwrap_or(""));
                    m.kube_request(verb, &resource);
                    req
                });
            builder.with_layer(&count).build()
        }
        None => builder.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (
                "DELETE",
                "/api/v1/namespaces/d/pods/web-1",
                "",
                "delete pods",
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods/web-1/eviction",
                "",
                "create pods/eviction",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/d/events",
                "",
                "create events",
            ),
            ("GET", "/api/v1/namespaces/d/pods", "limit=500", "list pods"),
            (
                "GET",
                "/api/v1/pods",
                "&watch=true&resourceVersion=1",
                "watch pods",
            ),
            ("GET", "/api/v1/namespaces", "limit=500", "list namespaces"),
            ("PATCH", "/api/v1/namespaces/d", "", "patch namespaces"),
            ("PATCH", "/api/v1/nodes/n1", "", "patch nodes"),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/h/leases/havoc",
                "",
                "update leases",
            ),
            ("GET", "/apis", "", "list discovery"),
            ("GET", "/api", "", "list discovery"),
        ];
        for (method, path, query, named) in cases {
            let (verb, resource) = classify(method, path, query);
            assert_eq!(
                format!("{verb} {resource}"),
                named,
                "{method} {path}?{query}"
            );
        }
    }
}
