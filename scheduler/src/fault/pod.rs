//! `podDelete` and `podEvict`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, EvictParams},
};

use super::{API_ATTEMPTS, API_TIMEOUT, Outcome, is_transient};

/// Which pod fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFault {
    Delete { grace: Option<Duration> },
    Evict { grace: Option<Duration> },
}

/// Applies a pod fault with bounded retries. A pod already gone (404) is skipped; an
/// eviction refused by a PodDisruptionBudget (429) is skipped for that pod.
pub async fn inject(api: &Api<Pod>, name: &str, fault: PodFault) -> Result<Outcome, kube::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let call = async {
            match fault {
                PodFault::Delete { grace } => {
                    let dp = DeleteParams {
                        grace_period_seconds: grace.map(|g| g.as_secs() as u32),
                        ..DeleteParams::default()
                    };
                    api.delete(name, &dp).await.map(|_| ())
                }
                PodFault::Evict { grace } => {
                    let ep = EvictParams {
                        delete_options: Some(DeleteParams {
                            grace_period_seconds: grace.map(|g| g.as_secs() as u32),
                            ..DeleteParams::default()
                        }),
                        ..EvictParams::default()
                    };
                    api.evict(name, &ep).await.map(|_| ())
                }
            }
        };
        let result = match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(
                format!("timed out after {API_TIMEOUT:?}").into(),
            )),
        };
        match result {
            Ok(()) => return Ok(Outcome::Injected),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Ok(Outcome::Skipped("pod already gone".to_string()));
            }
            Err(kube::Error::Api(s))
                if s.code == 429 && matches!(fault, PodFault::Evict { .. }) =>
            {
                return Ok(Outcome::Skipped(format!("eviction refused: {}", s.message)));
            }
            Err(e) if attempt < API_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(pod = name, attempt, error = %e, "retrying pod fault");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The kube `tower_test` mock pattern: a scripted API server per scenario.
    use super::*;
    use http::{Request, Response};
    use kube::{Client, client::Body};
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn status(code: u16, reason: &str) -> Response<Body> {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("scripted {code}"), "reason": reason, "code": code});
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response")
    }

    fn ok_pod() -> Response<Body> {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}});
        Response::builder()
            .body(Body::from(serde_json::to_vec(&pod).expect("json")))
            .expect("response")
    }

    fn mock_api() -> (Api<Pod>, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Api::namespaced(Client::new(service, "ns"), "ns"), handle)
    }

    /// Answers the next requests with `answers`, checking method and path.
    async fn script(mut handle: Handle, method: &str, path: &str, answers: Vec<Response<Body>>) {
        for answer in answers {
            let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .expect("a request comes")
                .expect("service alive");
            assert_eq!(req.method().as_str(), method);
            assert_eq!(req.uri().path(), path);
            send.send_response(answer);
        }
    }

    #[tokio::test]
    async fn delete_succeeds_after_transient_errors() {
        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "DELETE",
            "/api/v1/namespaces/ns/pods/p",
            vec![
                status(503, "ServiceUnavailable"),
                status(409, "Conflict"),
                ok_pod(),
            ],
        ));
        let out = inject(
            &api,
            "p",
            PodFault::Delete {
                grace: Some(Duration::ZERO),
            },
        )
        .await
        .expect("injected");
        assert_eq!(out, Outcome::Injected);
        server.await.expect("scripted");
    }

    #[tokio::test]
    async fn a_vanished_pod_is_a_skip() {
        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "DELETE",
            "/api/v1/namespaces/ns/pods/p",
            vec![status(404, "NotFound")],
        ));
        let out = inject(&api, "p", PodFault::Delete { grace: None })
            .await
            .expect("no error");
        assert!(matches!(out, Outcome::Skipped(r) if r.contains("gone")));
        server.await.expect("scripted");
    }

    #[tokio::test]
    async fn a_pdb_refusal_is_a_skip_and_persistent_errors_give_up() {
        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "POST",
            "/api/v1/namespaces/ns/pods/p/eviction",
            vec![status(429, "TooManyRequests")],
        ));
        let out = inject(&api, "p", PodFault::Evict { grace: None })
            .await
            .expect("no error");
        assert!(matches!(out, Outcome::Skipped(r) if r.contains("eviction refused")));
        server.await.expect("scripted");

        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "DELETE",
            "/api/v1/namespaces/ns/pods/p",
            vec![
                status(500, "InternalError"),
                status(500, "InternalError"),
                status(500, "InternalError"),
            ],
        ));
        let err = inject(&api, "p", PodFault::Delete { grace: None })
            .await
            .expect_err("gives up");
        assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
        server.await.expect("scripted after exactly 3 attempts");

        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "DELETE",
            "/api/v1/namespaces/ns/pods/p",
            vec![status(403, "Forbidden")],
        ));
        assert!(
            inject(&api, "p", PodFault::Delete { grace: None })
                .await
                .is_err(),
            "403 is not retried"
        );
        server.await.expect("scripted");
    }
}
