//! Test fixtures: snapshots of a made-up cluster.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{NamespaceInfo, PodInfo, Snapshot};
use crate::record::ObjectRef;

/// A Running, Ready, hour-old pod `name` of Deployment `workload` in `namespace`.
pub fn pod(namespace: &str, workload: &str, name: &str) -> PodInfo {
    PodInfo {
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::from([("app".into(), workload.into())]),
        created: Utc::now() - chrono::Duration::hours(1),
        running: true,
        terminating: false,
        ready: true,
        owner: Some(ObjectRef::namespaced("Deployment", namespace, workload)),
        node: Some("node-0".into()),
        mirror: false,
    }
}

/// One namespace holding `replicas` ready pods `WORKLOAD-0..` of one Deployment.
pub fn snapshot(namespace: &str, workload: &str, replicas: usize) -> Snapshot {
    let pods = (0..replicas)
        .map(|i| pod(namespace, workload, &format!("{workload}-{i}")))
        .collect();
    let ns = NamespaceInfo {
        name: namespace.into(),
        labels: BTreeMap::new(),
    };
    Snapshot {
        pods,
        namespaces: BTreeMap::from([(namespace.to_string(), ns)]),
        ..Snapshot::default()
    }
}

/// A scripted API server for watch tests (kube's `tower_test` pattern).
pub type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// Requests seen: `METHOD PATH?QUERY [meta]` (`meta`: a metadata-only request).
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn json_response(v: &serde_json::Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .body(kube::client::Body::from(
            serde_json::to_vec(v).expect("json"),
        ))
        .expect("response")
}

/// Answers lists from `objects` (path -> items; selectors are not applied) and gets of
/// one of their items by name (404 if none), holds watches open, serves a discovery
/// without Istio; records every request in `seen`.
pub async fn api_server(
    mut handle: Handle,
    objects: BTreeMap<&'static str, Vec<serde_json::Value>>,
    seen: Seen,
) {
    use serde_json::json;
    let mut watches = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let meta = req
            .headers()
            .get("accept")
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("PartialObjectMetadata"));
        seen.lock().expect("lock").push(format!(
            "{} {path}?{query}{}",
            req.method(),
            if meta { " meta" } else { "" }
        ));
        if query.contains("watch=true") {
            watches.push(send);
            continue;
        }
        let body = match path.as_str() {
            "/api" => {
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
            }
            "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            p => match (objects.get(p), p.rsplit_once('/')) {
                // One object, by name, from its list.
                (None, Some((list, name))) if objects.contains_key(list) => {
                    match objects[list].iter().find(|o| o["metadata"]["name"] == name) {
                        Some(o) => o.clone(),
                        None => {
                            send.send_response(
                                http::Response::builder()
                                    .status(404)
                                    .body(kube::client::Body::from(
                                        serde_json::to_vec(&json!({
                                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "NotFound", "code": 404, "message": "not found"}))
                                        .expect("json"),
                                    ))
                                    .expect("response"),
                            );
                            continue;
                        }
                    }
                }
                (items, _) => json!({
                    "apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "1"},
                    "items": items.cloned().unwrap_or_default(),
                }),
            },
        };
        send.send_response(json_response(&body));
    }
}

/// The requests of `seen` starting with `prefix`.
pub fn requested(seen: &Seen, prefix: &str) -> Vec<String> {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|r| r.starts_with(prefix))
        .cloned()
        .collect()
}

/// Waits (5 s at most, real time) until `ok`.
pub async fn until(what: &str, ok: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "timed out: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
