//! A ServiceAccount with exactly the chart's RBAC, read from the same table the chart
//! renders (`deploy/helm/havoc/files/rbac.json`), for a `havoc serve` run with in-cluster
//! configuration (`Setup::identity`): what the test then sees is what an installed havoc
//! may do. Tests take permissions away from it to see how havoc behaves without them.

use std::future::Future;

use anyhow::Context as _;
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

use crate::{Env, cleaned_up, repo_root, with_namespace};

/// [`with_namespace`], with an identity `havoc` in a namespace of its own beside the
/// test's ([`Identity::beside`]: the chart's rules for `faults`): `body` gets what
/// [`with_namespace`]'s does and the identity, which is removed afterwards whatever the
/// body did.
pub async fn with_identity_beside<F, Fut>(
    prefix: &str,
    faults: &'static [&'static str],
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Env, Client, String, Identity) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    with_namespace(prefix, move |env, client, ns| async move {
        let identity = Identity::beside(&client, &ns, faults).await?;
        let body = body(env, client.clone(), ns, identity.clone());
        cleaned_up(body, async move { identity.delete(&client).await }).await
    })
    .await
}

/// The chart's RBAC table.
pub fn rbac_table() -> anyhow::Result<Value> {
    let path = repo_root().join("deploy/helm/havoc/files/rbac.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The rules of a table entry, as an RBAC object takes them.
fn rules(entries: &Value) -> Vec<Value> {
    entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let mut rule = json!({
                "apiGroups": r["apiGroups"],
                "resources": r["resources"],
                "verbs": r["verbs"],
            });
            if let Some(names) = r.get("resourceNames") {
                rule["resourceNames"] = names.clone();
            }
            rule
        })
        .collect()
}

/// A ServiceAccount `name` in namespace `ns` bound to the chart's rules for `faults`
/// (cluster scope), with its Lease `lease` and state ConfigMap `lease-state` created, as
/// the chart creates them. [`Identity::delete`] removes the cluster-wide objects.
#[derive(Debug, Clone)]
pub struct Identity {
    pub namespace: String,
    pub name: String,
    pub lease: String,
    cluster_name: String,
    /// The namespace is the identity's own ([`Identity::beside`]): deleted with it.
    own_namespace: bool,
}

impl Identity {
    pub async fn create(
        client: &Client,
        ns: &str,
        name: &str,
        faults: &[&str],
        lease: &str,
    ) -> anyhow::Result<Identity> {
        let table = rbac_table()?;
        let cluster_name = format!("{ns}-{name}");
        let pp = PostParams::default();
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&pp, &sa)
            .await?;
        let mut cluster = rules(&table["always"]);
        for f in faults {
            let access = &table["faults"][*f];
            anyhow::ensure!(access.is_object(), "no fault {f} in the RBAC table");
            for part in ["reads", "cluster", "namespaced"] {
                cluster.extend(rules(&access[part]));
            }
        }
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": cluster_name, "labels": {"havoc.dev/e2e": "true"}},
            "rules": cluster,
        }))?;
        Api::<ClusterRole>::all(client.clone())
            .create(&pp, &role)
            .await?;
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": cluster_name, "labels": {"havoc.dev/e2e": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }))?;
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&pp, &binding)
            .await?;
        let own: Vec<Value> = rules(&table["ownNamespace"])
            .into_iter()
            .map(|mut r| {
                let names = r["resourceNames"].to_string();
                let names = names
                    .replace("$LEASE", lease)
                    .replace("$STATE", &format!("{lease}-state"));
                r["resourceNames"] = serde_json::from_str(&names).unwrap_or_default();
                r
            })
            .collect();
        let own_role: Role = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "rules": own,
        }))?;
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&pp, &own_role)
            .await?;
        let own_binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }))?;
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(&pp, &own_binding)
            .await?;
        // The chart creates both; the Role reaches them by name and grants no `create`.
        // (Another replica's identity of the same installation may have made them.)
        fn exists<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
            match r {
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }
        let l: Lease = serde_json::from_value(json!({"metadata": {"name": lease}}))?;
        exists(
            Api::<Lease>::namespaced(client.clone(), ns)
                .create(&pp, &l)
                .await,
        )?;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("{lease}-state")}}))?;
        exists(
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .create(&pp, &cm)
                .await,
        )?;
        Ok(Identity {
            namespace: ns.to_string(),
            name: name.to_string(),
            lease: lease.to_string(),
            cluster_name,
            own_namespace: false,
        })
    }

    /// An identity `havoc` (Lease `havoc`) in a namespace of its own beside the test's
    /// namespace `target` (`<target>-havoc`: havoc's own namespace is protected, so it
    /// cannot be the one it breaks), with the chart's rules for `faults`. [`Identity::delete`]
    /// removes the namespace too.
    pub async fn beside(
        client: &Client,
        target: &str,
        faults: &[&str],
    ) -> anyhow::Result<Identity> {
        let ns = format!("{target}-havoc");
        let n: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
            json!({"metadata": {"name": ns, "labels": {"havoc.dev/e2e": "true"}}}),
        )?;
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(&PostParams::default(), &n)
            .await?;
        let mut id = Identity::create(client, &ns, "havoc", faults, "havoc").await?;
        id.own_namespace = true;
        Ok(id)
    }

    /// `(namespace, name)` for `Setup::identity`.
    pub fn setup(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    /// Replaces the rules of the identity's own-namespace Role (e.g. without `update` on
    /// the state ConfigMap).
    pub async fn own_rules(&self, client: &Client, rules: Value) -> anyhow::Result<()> {
        let api = Api::<Role>::namespaced(client.clone(), &self.namespace);
        let mut role = api.get(&self.name).await?;
        role.rules = serde_json::from_value(rules)?;
        api.replace(&self.name, &PostParams::default(), &role)
            .await?;
        Ok(())
    }

    /// The own-namespace rules of the chart for this identity.
    pub fn chart_own_rules(&self) -> anyhow::Result<Value> {
        let table = rbac_table()?;
        let text = serde_json::to_string(&rules(&table["ownNamespace"]))?
            .replace("$LEASE", &self.lease)
            .replace("$STATE", &format!("{}-state", self.lease));
        Ok(serde_json::from_str(&text)?)
    }

    /// Takes `verb` on `resource` away from the identity's ClusterRole (the RBAC of a
    /// chart upgrade that turned a fault off, say).
    pub async fn revoke(&self, client: &Client, resource: &str, verb: &str) -> anyhow::Result<()> {
        let api = Api::<ClusterRole>::all(client.clone());
        let mut role = api.get(&self.cluster_name).await?;
        for rule in role.rules.iter_mut().flatten() {
            if rule.resources.iter().flatten().any(|r| r == resource) {
                rule.verbs.retain(|v| v != verb);
            }
        }
        if let Some(rules) = role.rules.as_mut() {
            rules.retain(|r| !r.verbs.is_empty());
        }
        api.replace(&self.cluster_name, &PostParams::default(), &role)
            .await?;
        Ok(())
    }

    /// Removes the cluster-wide objects (the namespaced ones go with the namespace).
    pub async fn delete(&self, client: &Client) -> anyhow::Result<()> {
        let dp = DeleteParams::default();
        let _ = Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&self.cluster_name, &dp)
            .await;
        let _ = Api::<ClusterRole>::all(client.clone())
            .delete(&self.cluster_name, &dp)
            .await;
        if self.own_namespace {
            let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .delete(&self.namespace, &DeleteParams::background())
                .await;
        }
        Ok(())
    }
}
