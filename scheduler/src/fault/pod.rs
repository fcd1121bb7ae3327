//! `podDelete` and `podEvict`: not reversible, the owning workload replaces the pod.
//! Selection never leaves a workload below `minAvailableReplicas` ready pods
//! ([`crate::targets::select_pods`]); the pods chosen are claimed while the experiment runs.
//!
//! RBAC: `delete` on `pods` (`podDelete`), `create` on `pods/eviction` (`podEvict`), in
//! the namespaces the policies target.

use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, EvictParams},
};
use rand_chacha::ChaCha8Rng;

use super::{
    API_ATTEMPTS, FaultError, FaultKind, Injection, Mutator, Outcome, Planned,
    access::{FaultAccess, rule},
    is_transient,
    revert::Stamp,
};
use crate::{
    policy::{Policy, domain::Fault},
    record::{ObjectRef, SkipReason},
    targets::{
        Claim, Guards, PodInfo, Snapshot,
        scope::{Namespaces, Needs},
        select_pods,
    },
};

/// `podDelete`.
#[derive(Debug)]
pub struct PodDelete;

/// `podEvict`.
#[derive(Debug)]
pub struct PodEvict;

/// What a pod fault's policy reads: the pods of its namespaces, and havoc's own (never a
/// target, nor its workload).
fn needs(policy: &Policy, own_namespace: &str) -> Needs {
    Needs {
        pods: Some(Namespaces::of(&policy.target.namespaces).with(own_namespace)),
        ..Needs::default()
    }
}

fn plan(
    fault: PodFault,
    policy: &Policy,
    snapshot: &Snapshot,
    guards: &Guards,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Planned>, SkipReason> {
    let sel = select_pods(
        &policy.target,
        &snapshot.pods,
        &snapshot.namespaces,
        guards,
        Utc::now(),
        rng,
    );
    Ok(Box::new(PodPlan {
        fault,
        pods: sel.into_chosen()?,
    }))
}

impl FaultKind for PodDelete {
    fn name(&self) -> &'static str {
        "podDelete"
    }

    fn access(&self) -> FaultAccess {
        FaultAccess {
            namespaced: vec![rule(&[""], &["pods"], &["delete"], "podDelete")],
            ..FaultAccess::default()
        }
    }

    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        needs(policy, own_namespace)
    }

    fn plan(
        &self,
        policy: &Policy,
        snapshot: &Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<Box<dyn Planned>, SkipReason> {
        let Fault::PodDelete { grace } = policy.fault else {
            return Err(super::not_mine(self, policy));
        };
        plan(PodFault::Delete { grace }, policy, snapshot, guards, rng)
    }
}

impl FaultKind for PodEvict {
    fn name(&self) -> &'static str {
        "podEvict"
    }

    fn access(&self) -> FaultAccess {
        FaultAccess {
            namespaced: vec![rule(
                &[""],
                &["pods/eviction"],
                &["create"],
                "podEvict: the Eviction API (honours PodDisruptionBudgets)",
            )],
            ..FaultAccess::default()
        }
    }

    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        needs(policy, own_namespace)
    }

    fn plan(
        &self,
        policy: &Policy,
        snapshot: &Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<Box<dyn Planned>, SkipReason> {
        let Fault::PodEvict { grace } = policy.fault else {
            return Err(super::not_mine(self, policy));
        };
        plan(PodFault::Evict { grace }, policy, snapshot, guards, rng)
    }
}

/// The pods a pod fault takes.
#[derive(Debug)]
struct PodPlan {
    fault: PodFault,
    pods: Vec<PodInfo>,
}

impl Planned for PodPlan {
    fn objects(&self) -> Vec<ObjectRef> {
        self.pods
            .iter()
            .map(|p| ObjectRef::namespaced("Pod", &p.namespace, &p.name))
            .collect()
    }

    fn claims(&self) -> Vec<Claim> {
        self.pods.iter().map(Claim::pod).collect()
    }

    fn inject<'a>(
        &'a self,
        m: &'a Mutator,
        i: usize,
        _: &'a Stamp,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<Injection, FaultError>> {
        let p = &self.pods[i];
        Box::pin(async move {
            if dry_run {
                tracing::info!(pod = %p.name, namespace = %p.namespace, fault = ?self.fault, "dry run: would inject");
                return Ok(Injection {
                    outcome: Outcome::DryRun,
                    detail: None,
                    held: None,
                });
            }
            inject(m, &p.namespace, &p.name, self.fault)
                .await
                .map(|outcome| Injection {
                    outcome,
                    detail: None,
                    held: None,
                })
        })
    }
}

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
