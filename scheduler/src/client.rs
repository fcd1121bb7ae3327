//! The one place that builds kube clients: the rustls provider, timeouts, and kube's
//! default retry turned off (with the reasons), plus a layer counting requests in
//! `havoc_kube_requests_total{verb,resource}`; and the fenced client of a leader's
//! mutations ([`fenced`]).

use std::{path::Path, task::Poll, time::Duration};

use crate::{engine::metrics::Metrics, leader::Leadership};

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
    build(kube::client::ClientBuilder::try_from(config)?, metrics)
}

/// The client of a leader's mutations: its connections run only while `fence` holds.
///
/// The sender checks the fence (`fault::Mutator::send`) before its request waits for a
/// connection and is handed to it; hyper writes it later, from the connection's own task.
/// A process stopped (SIGSTOP, a starved or frozen node) in between writes the request
/// when it runs again: after its fence lapsed, maybe after a successor took over (CI saw
/// one such eviction reach the API server 0.15 s after the successor's first write). No
/// check in the sending task can prevent that, so every poll of a connection task looks
/// at the fence first and, once it has lapsed, drops the connection with whatever it had
/// not written. Requests in flight then fail, as they should: this replica may no longer
/// act on what they return (`fault::Mutator::or_fenced` says so). Only the leader's
/// mutations, the reads that prepare them and the skip counts use this client; watches,
/// the history, the Lease and Events have their own.
pub async fn fenced(
    kubeconfig: Option<&Path>,
    metrics: Option<&Metrics>,
    fence: Leadership,
) -> Result<kube::Client, ClientError> {
    let config = config(kubeconfig, Purpose::Requests).await?;
    build(
        kube::client::ClientBuilder::try_from((config, FencedExecutor(fence)))?,
        metrics,
    )
}

/// Spawns hyper's connection tasks behind the fence (see [`fenced`]).
#[derive(Clone)]
struct FencedExecutor(Leadership);

impl<F> hyper::rt::Executor<F> for FencedExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, connection: F) {
        tokio::spawn(behind_fence(connection, self.0.clone()));
    }
}

/// `connection`, polled only while `fence` holds; dropped at its first poll after.
async fn behind_fence<F: Future<Output = ()>>(connection: F, fence: Leadership) {
    let mut connection = std::pin::pin!(connection);
    std::future::poll_fn(|cx| {
        if !fence.is_leader() {
            return Poll::Ready(());
        }
        connection.as_mut().poll(cx)
    })
    .await;
}

/// What `ClientBuilder::try_from` builds (kube's `GenericService`, not exported).
type Stack = tower::util::BoxService<
    http::Request<kube::client::Body>,
    http::Response<Box<kube::client::DynBody>>,
    Box<dyn std::error::Error + Send + Sync>,
>;

fn build(
    builder: kube::client::ClientBuilder<Stack>,
    metrics: Option<&Metrics>,
) -> Result<kube::Client, ClientError> {
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
    use std::{
        pin::pin,
        sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        },
        task::Poll,
        time::Duration,
    };

    use tokio::time::Instant;

    use super::{behind_fence, classify};
    use crate::leader;

    /// A connection that counts its polls and never ends.
    fn connection(polls: Arc<AtomicU32>) -> impl Future<Output = ()> {
        std::future::poll_fn(move |_| {
            polls.fetch_add(1, Ordering::SeqCst);
            Poll::Pending
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_runs_while_the_fence_holds_and_is_dropped_unpolled_after() {
        let (publisher, fence) = leader::channel();
        publisher.publish_until(Some(Instant::now() + Duration::from_secs(10)));
        let polls = Arc::new(AtomicU32::new(0));
        let mut task = pin!(behind_fence(connection(polls.clone()), fence));
        assert!(futures::poll!(task.as_mut()).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // The process stood still past its fence (nothing polled meanwhile).
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(futures::poll!(task.as_mut()), Poll::Ready(()));
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled after the fence lapsed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_never_led_runs_no_connection() {
        let (_publisher, fence) = leader::channel();
        let polls = Arc::new(AtomicU32::new(0));
        let task = behind_fence(connection(polls.clone()), fence);
        assert_eq!(futures::poll!(pin!(task)), Poll::Ready(()));
        assert_eq!(polls.load(Ordering::SeqCst), 0);
    }

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
