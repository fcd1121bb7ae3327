//! The one place that builds kube clients: the rustls provider, timeouts, and kube's
//! default retry turned off (with the reasons), plus a layer counting requests in
//! `havoc_kube_requests_total{verb}`.

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

/// A client; with `metrics`, every request is counted by HTTP method.
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
                    m.kube_request(req.method().as_str());
                    req
                });
            builder.with_layer(&count).build()
        }
        None => builder.build(),
    })
}
