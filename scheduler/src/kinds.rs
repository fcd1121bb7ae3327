//! The Kubernetes object kinds havoc reads and changes, typed: each comes from its Rust
//! type's [`Resource`] implementation (k8s-openapi), or, for Istio's VirtualService, from
//! discovery. Records name objects by kind ([`crate::record::ObjectRef`]); this is where a
//! kind's name leads back to its API, so no other module keeps a kind → apiVersion table.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{Node, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Client, Resource,
    api::{ApiResource, GroupVersionKind},
    discovery::Discovery,
};

/// Istio's API group.
pub const ISTIO_GROUP: &str = "networking.istio.io";
/// The kind of Istio's VirtualService.
pub const VIRTUAL_SERVICE: &str = "VirtualService";

/// One kind: its API, and whether its objects live in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub api: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    /// The kind of a k8s-openapi type.
    pub fn of<K>(namespaced: bool) -> Kind
    where
        K: Resource<DynamicType = ()>,
    {
        Kind {
            api: ApiResource::erase::<K>(&()),
            namespaced,
        }
    }

    /// The kinds havoc knows by type (VirtualService needs discovery: [`virtual_services`]).
    pub fn typed() -> [Kind; 6] {
        [
            Kind::of::<Pod>(true),
            Kind::of::<Node>(false),
            Kind::of::<Deployment>(true),
            Kind::of::<StatefulSet>(true),
            Kind::of::<DaemonSet>(true),
            Kind::of::<NetworkPolicy>(true),
        ]
    }

    /// The typed kind named `kind` (`Deployment`), if havoc knows it.
    pub fn named(kind: &str) -> Option<Kind> {
        Kind::typed().into_iter().find(|k| k.api.kind == kind)
    }
}

/// The apiVersion of objects of `kind` (for an Event's involvedObject): the typed kinds',
/// VirtualService's as Istio serves it today, else `v1`.
pub fn api_version(kind: &str) -> String {
    match Kind::named(kind) {
        Some(k) => k.api.api_version,
        None if kind == VIRTUAL_SERVICE => {
            ApiResource::from_gvk(&GroupVersionKind::gvk(ISTIO_GROUP, "v1", VIRTUAL_SERVICE))
                .api_version
        }
        None => "v1".to_string(),
    }
}

/// The VirtualService API of the cluster, if Istio's CRD is installed.
pub async fn virtual_services(client: &Client) -> Result<Option<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone())
        .filter(&[ISTIO_GROUP])
        .run()
        .await?;
    Ok(discovery
        .groups()
        .find(|g| g.name() == ISTIO_GROUP)
        .and_then(|g| g.recommended_kind(VIRTUAL_SERVICE))
        .map(|(ar, _)| ar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_their_types() {
        assert_eq!(api_version("Deployment"), "apps/v1");
        assert_eq!(api_version("Node"), "v1");
        assert_eq!(api_version("NetworkPolicy"), "networking.k8s.io/v1");
        assert_eq!(api_version("VirtualService"), "networking.istio.io/v1");
        let sts = Kind::named("StatefulSet").expect("known");
        assert_eq!(sts.api.plural, "statefulsets");
        assert!(sts.namespaced && !Kind::named("Node").expect("known").namespaced);
        assert!(Kind::named("Secret").is_none());
    }
}
