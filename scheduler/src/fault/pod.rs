//! `podDelete` and `podEvict`: not reversible, the owning workload replaces the pod.
//! Selection never leaves a workload below `minAvailableReplicas` ready pods
//! ([`crate::targets::select_pods`]); the pods chosen are claimed while the experiment runs.
//!
//! RBAC: `delete` on `pods` (`podDelete`), `create` on `pods/eviction` (`podEvict`), in
//! the namespaces the policies target.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, EvictParams},
};

use super::{
    API_ATTEMPTS, Act, FaultError, FaultKind, Injection, Mutator, Outcome, Plan, PlanInput,
    Planned, Step,
    access::{FaultAccess, rule},
    is_transient,
};
use crate::{
    policy::{Policy, domain::Fault},
    record::ObjectRef,
    targets::{
        Claim, PodInfo,
        scope::{Namespaces, Needs},
        select_pods,
    },
};

/// `podDelete` and `podEvict`: one type, two registry entries.
#[derive(Debug)]
pub struct PodFaults {
    evict: bool,
}

/// `podDelete`.
pub const POD_DELETE: PodFaults = PodFaults { evict: false };
/// `podEvict`.
pub const POD_EVICT: PodFaults = PodFaults { evict: true };

impl FaultKind for PodFaults {
    fn name(&self) -> &'static str {
        if self.evict { "podEvict" } else { "podDelete" }
    }

    fn access(&self) -> FaultAccess {
        let rule = if self.evict {
            rule(
                &[""],
                &["pods/eviction"],
                &["create"],
                "podEvict: the Eviction API (honours PodDisruptionBudgets)",
            )
        } else {
            rule(&[""], &["pods"], &["delete"], "podDelete")
        };
        FaultAccess {
            namespaced: vec![rule],
            ..FaultAccess::default()
        }
    }

    /// The pods of its namespaces, and havoc's own (never a target, nor its workload).
    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        Needs {
            pods: Some(Namespaces::of(&policy.target.namespaces).with(own_namespace)),
            ..Needs::default()
        }
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let fault = match (self.evict, &input.policy.fault) {
            (false, Fault::PodDelete { grace }) => PodFault::Delete { grace: *grace },
            (true, Fault::PodEvict { grace }) => PodFault::Evict { grace: *grace },
            _ => return Err(super::not_mine(self, input.policy)),
        };
        let sel = select_pods(
            &input.policy.target,
            &input.snapshot.pods,
            &input.snapshot.namespaces,
            input.guards,
            Utc::now(),
            input.rng,
        );
        Ok(Box::new(PodPlan {
            fault,
            pods: sel.into_chosen()?,
        }))
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

    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        let p = &self.pods[i];
        Box::pin(async move {
            if act.dry_run {
                tracing::info!(pod = %p.name, namespace = %p.namespace, fault = ?self.fault, "dry run: would inject");
                return Ok(Injection {
                    outcome: Outcome::DryRun,
                    detail: None,
                    held: None,
                });
            }
            inject(act.m, &p.namespace, &p.name, self.fault).await
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
/// and stop checked before every attempt). A pod already gone (404) is skipped, unless an
/// earlier attempt went unanswered (a timeout, a broken connection): that attempt most
/// likely removed it, so the pod counts as injected and the experiment watches what its
/// loss does. An eviction refused by a PodDisruptionBudget (429) is skipped for that pod.
pub async fn inject(
    m: &Mutator,
    namespace: &str,
    name: &str,
    fault: PodFault,
) -> Result<Injection, FaultError> {
    let api: Api<Pod> = Api::namespaced(m.client().clone(), namespace);
    let mut attempt = 0;
    let mut unanswered = false;
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
            Ok(()) => return Ok(Injection::not_reversible(None)),
            Err(e) => e,
        };
        match &e {
            FaultError::Api(kube::Error::Api(s)) if s.code == 404 && unanswered => {
                return Ok(Injection::not_reversible(Some(
                    "gone when an unanswered request was retried: most likely removed by it".into(),
                )));
            }
            FaultError::Api(kube::Error::Api(s)) if s.code == 404 => {
                return Ok(Injection::skipped("pod already gone"));
            }
            FaultError::Api(kube::Error::Api(s))
                if s.code == 429 && matches!(fault, PodFault::Evict { .. }) =>
            {
                return Ok(Injection::skipped(format!(
                    "eviction refused: {}",
                    s.message
                )));
            }
            _ => {}
        }
        // No answer: the request may have reached the API server and been carried out.
        unanswered |= matches!(
            e,
            FaultError::Timeout(_)
                | FaultError::Api(kube::Error::HyperError(_) | kube::Error::Service(_))
        );
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

    /// Answers the next requests with `answers`, checking method and path. `None`: no
    /// answer (the request hangs until the client gives up).
    async fn script(
        mut handle: Handle,
        method: &str,
        path: String,
        answers: Vec<Option<Response<Body>>>,
    ) {
        let mut hanging = Vec::new();
        for answer in answers {
            let (req, send) = tokio::time::timeout(Duration::from_secs(15), handle.next_request())
                .await
                .expect("a request comes")
                .expect("service alive");
            assert_eq!(req.method().as_str(), method);
            assert_eq!(req.uri().path(), path);
            match answer {
                Some(answer) => send.send_response(answer),
                None => hanging.push(send),
            }
        }
    }

    /// Injects `fault` into pod ns/p against a scripted API server that answers with
    /// `answers` in order, and checks that each answer was asked for (no fewer requests; a
    /// request beyond them finds no server and fails).
    async fn scripted(
        fault: PodFault,
        answers: Vec<Response<Body>>,
    ) -> Result<Outcome, FaultError> {
        scripted_with(fault, answers.into_iter().map(Some).collect())
            .await
            .map(|i| i.outcome)
    }

    /// [`scripted`], with unanswered requests (`None`) and the whole injection.
    async fn scripted_with(
        fault: PodFault,
        answers: Vec<Option<Response<Body>>>,
    ) -> Result<Injection, FaultError> {
        const POD: &str = "/api/v1/namespaces/ns/pods/p";
        let (method, path) = match fault {
            PodFault::Delete { .. } => ("DELETE", POD.to_string()),
            PodFault::Evict { .. } => ("POST", format!("{POD}/eviction")),
        };
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(script(handle, method, path, answers));
        let m = Mutator::unfenced(Client::new(service, "ns"));
        let out = inject(&m, "ns", "p", fault).await;
        server.await.expect("every scripted answer was asked for");
        out
    }

    const DELETE: PodFault = PodFault::Delete { grace: None };

    #[tokio::test]
    async fn delete_succeeds_after_transient_errors() {
        let answers = vec![
            status(503, "ServiceUnavailable"),
            status(409, "Conflict"),
            ok_pod(),
        ];
        let grace = Some(Duration::ZERO);
        let out = scripted(PodFault::Delete { grace }, answers).await;
        assert_eq!(out.expect("injected"), Outcome::Injected);
    }

    #[tokio::test]
    async fn a_vanished_pod_is_a_skip() {
        let out = scripted(DELETE, vec![status(404, "NotFound")]).await;
        assert!(matches!(out.expect("no error"), Outcome::Skipped(r) if r.contains("gone")));
    }

    /// A delete that got no answer (it timed out) and finds the pod gone when retried
    /// most likely removed it: injected, saying so, never "not disrupted" (CI,
    /// 2026-12-07: such a run was skipped, and its object closed as crashed).
    #[tokio::test(start_paused = true)]
    async fn a_pod_gone_after_an_unanswered_delete_is_injected() {
        let answers = vec![None, Some(status(404, "NotFound"))];
        let out = scripted_with(DELETE, answers).await.expect("no error");
        assert_eq!(out.outcome, Outcome::Injected);
        assert!(
            out.detail
                .as_deref()
                .is_some_and(|d| d.contains("unanswered")),
            "{:?}",
            out.detail
        );
        // An answered failure (503) proves nothing landed: a 404 after it is a skip.
        let answers = vec![status(503, "ServiceUnavailable"), status(404, "NotFound")];
        let out = scripted(DELETE, answers).await.expect("no error");
        assert!(matches!(out, Outcome::Skipped(r) if r.contains("gone")));
    }

    #[tokio::test]
    async fn a_pdb_refusal_is_a_skip_and_persistent_errors_give_up() {
        let evict = PodFault::Evict { grace: None };
        let out = scripted(evict, vec![status(429, "TooManyRequests")]).await;
        assert!(
            matches!(out.expect("no error"), Outcome::Skipped(r) if r.contains("eviction refused"))
        );

        // Exactly 3 attempts.
        let errors = (0..3).map(|_| status(500, "InternalError")).collect();
        let err = scripted(DELETE, errors).await.expect_err("gives up");
        assert!(matches!(err, FaultError::Api(kube::Error::Api(s)) if s.code == 500));

        let out = scripted(DELETE, vec![status(403, "Forbidden")]).await;
        assert!(out.is_err(), "403 is not retried");
    }
}
