//! The experiment history in the cluster as a test reads it: the `HavocExperiment`
//! objects (havoc.dev/v1alpha1) of a namespace.

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
};
use serde_json::Value;

/// The API of the experiment objects in `namespace`.
pub fn experiments(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("havoc.dev", "v1alpha1", "HavocExperiment");
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "havocexperiments"),
    )
}

/// The object of experiment `id` (its name is the id in lowercase), as JSON.
pub async fn object(client: &Client, namespace: &str, id: &str) -> anyhow::Result<Option<Value>> {
    let o = experiments(client, namespace)
        .get_opt(&id.to_ascii_lowercase())
        .await?;
    Ok(o.map(|o| serde_json::to_value(o).unwrap_or_default()))
}

/// The objects of one installation (its Lease's name) in `namespace`, as JSON.
pub async fn of_installation(
    client: &Client,
    namespace: &str,
    lease: &str,
) -> anyhow::Result<Vec<Value>> {
    let list = experiments(client, namespace)
        .list(&ListParams::default().labels(&format!("havoc.dev/installation={lease}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .collect())
}
