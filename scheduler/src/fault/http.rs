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

use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    FaultError, Held, Injection, Mutator, Reverted, bounded,
    revert::{Stamp, clear_annotation, merge, object_name, precondition, record_of, still_ours},
    with_conflict_retries,
};
use crate::{policy::domain::HttpFault, record::ObjectRef, targets::VirtualServiceInfo};

pub const FAULT: &str = "httpFault";

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
    m: &Mutator,
    ar: &ApiResource,
    target: &VirtualServiceInfo,
    fault: &HttpFault,
    stamp: &Stamp,
    dry_run: bool,
) -> Result<Injection, FaultError> {
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
        let patch = merge(
            merge(
                precondition(current.metadata.resource_version.clone()),
                record.annotate(),
            ),
            json!({"spec": {"http": http}}),
        );
        m.send(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await?;
        Ok(Injection::injected(
            change,
            Held {
                object: object.clone(),
                record,
            },
        ))
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
        let mut patch = merge(
            precondition(current.metadata.resource_version.clone()),
            json!({"spec": {"http": kept}}),
        );
        if recorded.is_ok() {
            patch = merge(patch, clear_annotation());
        }
        m.send(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await?;
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
