//! `podDelete` and `podEvict`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, EvictParams},
};

use super::{API_ATTEMPTS, FaultError, Mutator, Outcome, is_transient};

/// Which pod fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFault {
    Delete { grace: Option<Duration> },
    Evict { grace: Option<Duration> },
}

/// Applies a pod fault with bounded retries, each sent through the [`Mutator`] (fence
/// and stop checked before every attempt). A pod already gone (404) is skipped; an
/// eviction refused by a PodDisruptionBudget (429) is skipped for that pod.
pub async fn inject(
    m: &Mutator,
    namespace: &str,
    name: &str,
    fault: PodFault,
) -> Result<Outcome, FaultError> {
    let api: Api<Pod> = Api::namespaced(m.client().clone(), namespace);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match fault {
            PodFault::Delete { grace } => {
                let dp = DeleteParams {
                    grace_period_seconds: grace.map(|g| g.as_secs() as u32),
                    ..DeleteParams::default()
                };
                m.send(api.delete(name, &dp)).await.map(|_| ())
            }
            PodFault::Evict { grace } => {
                let ep = EvictParams {
                    delete_options: Some(DeleteParams {
                        grace_period_seconds: grace.map(|g| g.as_secs() as u32),
                        ..DeleteParams::default()
                    }),
                    ..EvictParams::default()
                };
                m.send(api.evict(name, &ep)).await.map(|_| ())
            }
        };
        let e = match result {
            Ok(()) => return Ok(Outcome::Injected),
            Err(e) => e,
        };
        match &e {
            FaultError::Api(kube::Error::Api(s)) if s.code == 404 => {
                return Ok(Outcome::Skipped("pod already gone".to_string()));
            }
            FaultError::Api(kube::Error::Api(s))
                if s.code == 429 && matches!(fault, PodFault::Evict { .. }) =>
            {
                return Ok(Outcome::Skipped(format!("eviction refused: {}", s.message)));
            }
            _ => {}
        }
        let transient = match &e {
            FaultError::Api(api) => is_transient(api),
            FaultError::Timeout(_) => true,
            _ => false,
        };
        if !transient || attempt >= API_ATTEMPTS {
            return Err(e);
        }
        tracing::warn!(pod = name, attempt, error = %e, "retrying pod fault");
        if m.pause(Duration::from_millis(200 * u64::from(attempt)))
            .await
        {
            return Err(FaultError::Cancelled);
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

    fn mock_api() -> (Mutator, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Mutator::unfenced(Client::new(service, "ns")), handle)
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
            "ns",
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
        let out = inject(&api, "ns", "p", PodFault::Delete { grace: None })
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
        let out = inject(&api, "ns", "p", PodFault::Evict { grace: None })
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
        let err = inject(&api, "ns", "p", PodFault::Delete { grace: None })
            .await
            .expect_err("gives up");
        assert!(matches!(err, FaultError::Api(kube::Error::Api(s)) if s.code == 500));
        server.await.expect("scripted after exactly 3 attempts");

        let (api, handle) = mock_api();
        let server = tokio::spawn(script(
            handle,
            "DELETE",
            "/api/v1/namespaces/ns/pods/p",
            vec![status(403, "Forbidden")],
        ));
        assert!(
            inject(&api, "ns", "p", PodFault::Delete { grace: None })
                .await
                .is_err(),
            "403 is not retried"
        );
        server.await.expect("scripted");
    }
}
