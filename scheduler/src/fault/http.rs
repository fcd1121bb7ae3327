//! `httpFault {abort, delay}` through an Istio VirtualService.
//!
//! havoc never rewrites a route of the user's: it inserts, ahead of them, a copy of each
//! HTTP route with the fault added and a name derived from the experiment
//! (`havoc-<experiment>-<i>`). Routes match in order, so the copies take the traffic the
//! originals would have (same matches, same destinations) and add the fault; a fault the
//! user set on a route stays on that route. The change is one merge patch with the
//! object's resourceVersion as precondition (a concurrent edit makes it retry on the new
//! version instead of overwriting it) and the revert record listing the inserted names.
//! The revert removes exactly those routes, again with a precondition.
//!
//! RBAC: `get`, `list`, `watch`, `patch` on `virtualservices.networking.istio.io`.

use chrono::Utc;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
};
use schemars::JsonSchema;
use serde_json::{Value, json};

use super::{
    Act, FaultError, FaultKind, Held, Injection, Mutator, Plan, PlanInput, Planned, Reverted, Step,
    access::{FaultAccess, rule},
    bounded,
    revert::patch_as_read,
    revert::{clear_annotation, merge, object_name, record_of, still_ours},
    with_conflict_retries,
};
use crate::{
    policy::{
        Policy,
        domain::{Fault, HttpFault},
    },
    record::{ObjectRef, SkipReason},
    targets::{VirtualServiceInfo, scope::Needs, select_virtual_services},
};

pub const FAULT: &str = "httpFault";

/// `httpFault`.
#[derive(Debug)]
pub struct Http;

/// What an HTTP fault's revert record keeps.
#[derive(Debug, JsonSchema)]
#[allow(dead_code)] // the schema's shape; the record is written with `json!`
struct Original {
    /// The names of the routes havoc inserted: the revert removes exactly these.
    routes: Vec<String>,
}

impl FaultKind for Http {
    fn name(&self) -> &'static str {
        FAULT
    }

    fn access(&self) -> FaultAccess {
        FaultAccess {
            namespaced: vec![rule(
                &["networking.istio.io"],
                &["virtualservices"],
                &["patch"],
                "httpFault: havoc's routes, with their revert record",
            )],
            ..FaultAccess::default()
        }
    }

    reversible!(records on VirtualService; reverted by revert; original Original);

    fn needs(&self, _: &Policy, _: &str) -> Needs {
        Needs {
            virtual_services: true,
            ..Needs::default()
        }
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let Fault::HttpFault(fault) = &input.policy.fault else {
            return Err(super::not_mine(self, input.policy));
        };
        let Some(vs) = &input.snapshot.virtual_services else {
            return Err(SkipReason::Unavailable(
                "the VirtualService CRD (networking.istio.io) is not installed".into(),
            ));
        };
        let sel = select_virtual_services(
            &input.policy.target,
            &vs.items,
            &input.snapshot.namespaces,
            input.guards,
            Utc::now(),
            input.rng,
        );
        Ok(Box::new(HttpPlan {
            api: vs.api.clone(),
            fault: fault.clone(),
            services: sel.into_chosen()?,
        }))
    }
}

/// The VirtualServices an HTTP fault takes, and the fault.
#[derive(Debug)]
struct HttpPlan {
    api: ApiResource,
    fault: HttpFault,
    services: Vec<VirtualServiceInfo>,
}

impl Planned for HttpPlan {
    fn objects(&self) -> Vec<ObjectRef> {
        self.services
            .iter()
            .map(|v| ObjectRef::namespaced("VirtualService", &v.namespace, &v.name))
            .collect()
    }

    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        Box::pin(inject(act, &self.api, &self.services[i], &self.fault))
    }
}

/// The Istio `fault` of a route.
pub fn istio_fault(f: &HttpFault) -> Value {
    let mut fault = json!({});
    if let Some(a) = &f.abort {
        fault["abort"] = json!({"percentage": {"value": a.percent}, "httpStatus": a.status});
    }
    if let Some(d) = &f.delay {
        fault["delay"] = json!({
            "percentage": {"value": d.percent},
            "fixedDelay": format!("{}s", d.fixed.as_secs_f64()),
        });
    }
    fault
}

fn describe(f: &HttpFault) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &f.abort {
        parts.push(format!("abort {}% with {}", a.percent, a.status));
    }
    if let Some(d) = &f.delay {
        parts.push(format!("delay {}% by {:?}", d.percent, d.fixed));
    }
    parts.join(" and ")
}

fn routes(o: &DynamicObject) -> Vec<Value> {
    o.data["spec"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The spec.http list with havoc's copies in front.
pub fn with_fault_routes(
    routes: &[Value],
    fault: &Value,
    experiment: &str,
) -> (Vec<Value>, Vec<String>) {
    let base = object_name("havoc", experiment);
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let name = format!("{base}-{i}");
        let mut copy = r.clone();
        copy["name"] = json!(name);
        copy["fault"] = fault.clone();
        names.push(name);
        out.push(copy);
    }
    out.extend(routes.iter().cloned());
    (out, names)
}

/// Inserts the fault routes (or, in a dry run, says exactly what it would insert).
pub async fn inject(
    act: Act<'_>,
    ar: &ApiResource,
    target: &VirtualServiceInfo,
    fault: &HttpFault,
) -> Result<Injection, FaultError> {
    let Act { m, stamp, dry_run } = act;
    let api: Api<DynamicObject> = Api::namespaced_with(m.client().clone(), &target.namespace, ar);
    let name = &target.name;
    let object = ObjectRef::namespaced("VirtualService", &target.namespace, name);
    let istio = istio_fault(fault);
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Injection::skipped("the VirtualService is gone"));
        };
        if record_of(&current).is_some() {
            return Ok(Injection::skipped("it already holds a havoc revert record"));
        }
        let existing = routes(&current);
        if existing.is_empty() {
            return Ok(Injection::skipped("it has no HTTP routes"));
        }
        let (http, names) = with_fault_routes(&existing, &istio, &stamp.experiment);
        let change = format!(
            "insert {} route(s) ({}) that {} ahead of the {} HTTP route(s) of VirtualService {}/{name}",
            names.len(),
            names.join(", "),
            describe(fault),
            existing.len(),
            target.namespace
        );
        if dry_run {
            return Ok(Injection::dry_run(change));
        }
        let record = stamp.record(FAULT, json!({"routes": names}));
        let patch = merge(record.annotate(), json!({"spec": {"http": http}}));
        patch_as_read(m, &api, &current, patch).await?;
        Ok(Injection::injected(change, Held::new(object.clone(), record)))
    })
    .await
}

/// Removes exactly the routes the record names, and the record.
pub async fn revert(m: &Mutator, held: &Held) -> Result<Reverted, FaultError> {
    let Some(ar) = crate::kinds::virtual_services(m.client()).await? else {
        return Ok(Reverted::Gone);
    };
    let ns = held.object.namespace.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(m.client().clone(), ns, &ar);
    let name = &held.object.name;
    let ours: Vec<String> = held.record.original["routes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Reverted::Gone);
        };
        let recorded = still_ours(&current, &held.record);
        let all = routes(&current);
        let kept: Vec<Value> = all
            .iter()
            .filter(|r| !r["name"].as_str().is_some_and(|n| ours.iter().any(|o| o == n)))
            .cloned()
            .collect();
        if let Err(why) = &recorded
            && kept.len() == all.len()
        {
            return Ok(Reverted::NotOurs(why.to_string()));
        }
        let mut patch = json!({"spec": {"http": kept}});
        if recorded.is_ok() {
            patch = merge(patch, clear_annotation());
        }
        patch_as_read(m, &api, &current, patch).await?;
        tracing::info!(virtualservice = %name, namespace = %ns, removed = all.len() - kept.len(), "HTTP fault removed");
        Ok(Reverted::Restored)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::domain::{HttpAbort, HttpDelay};

    #[test]
    fn copies_go_ahead_of_the_user_routes_which_are_untouched() {
        let user = vec![
            json!({"name": "canary", "match": [{"headers": {"x": {"exact": "1"}}}], "route": [{"destination": {"host": "a"}}], "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 1}}}}),
            json!({"route": [{"destination": {"host": "b"}}]}),
        ];
        let f = HttpFault {
            abort: Some(HttpAbort {
                percent: 50.0,
                status: 503,
            }),
            delay: Some(HttpDelay {
                percent: 100.0,
                fixed: Duration::from_secs(2),
            }),
        };
        let (http, names) = with_fault_routes(&user, &istio_fault(&f), "p-20261201T120000Z-ab12");
        assert_eq!(
            names,
            [
                "havoc-p-20261201t120000z-ab12-0",
                "havoc-p-20261201t120000z-ab12-1"
            ]
        );
        assert_eq!(http.len(), 4);
        assert_eq!(http[0]["match"], user[0]["match"]);
        assert_eq!(http[0]["fault"]["abort"]["httpStatus"], 503);
        assert_eq!(http[1]["fault"]["delay"]["fixedDelay"], "2s");
        assert_eq!(
            &http[2..],
            &user[..],
            "the user's routes, their own fault included, follow unchanged"
        );
    }
}
