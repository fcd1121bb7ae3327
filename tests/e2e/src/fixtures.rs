//! Fixture builders for the files havoc reads: policies and the service config, written
//! as YAML (block style, as people write them) from JSON values, so that tests say what
//! differs and nothing else.
//!
//! ```ignore
//! let p = fixtures::policy("classic")
//!     .pods("go-demo-8", "app")
//!     .interval("10s", "20s")
//!     .duration("10s")
//!     .min_available(0)
//!     .yaml();
//! ```

use serde_json::{Map, Value, json};

/// YAML text of a JSON value: mappings and sequences in block style, strings
/// double-quoted (JSON string syntax is valid YAML), numbers and booleans as they are.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".to_string(),
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                if is_block(v) {
                    out.push_str(&format!("{pad}{k}:\n"));
                    emit(v, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{k}: {}\n", scalar(v)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for v in a {
                if is_block(v) {
                    // `- ` then the block, its first line on the dash's line.
                    let mut inner = String::new();
                    emit(v, indent + 2, &mut inner);
                    let inner = inner.trim_start();
                    out.push_str(&format!("{pad}- {inner}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(v)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Sets `value` at a `/`-separated path below `root`, creating objects on the way.
fn set_path(root: &mut Value, pointer: &str, value: Value) {
    let mut at = root;
    for key in pointer.trim_start_matches('/').split('/') {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = &mut at[key];
    }
    *at = value;
}

/// A `ChaosPolicy` document being built.
#[derive(Debug, Clone)]
pub struct PolicyDoc(Value);

/// A policy named `name` with a pod-delete fault (grace 0 s) and nothing else yet.
pub fn policy(name: &str) -> PolicyDoc {
    PolicyDoc(json!({
        "apiVersion": "havoc.dev/v1alpha1",
        "kind": "ChaosPolicy",
        "metadata": {"name": name},
        "spec": {"fault": {"podDelete": {"gracePeriod": "0s"}}},
    }))
}

/// A policy `name` run only when asked ([`PolicyDoc::manual_only`] in `ns`) on `target`,
/// injecting `fault` held for `hold`, settling 1 s; health as the caller sets it.
pub fn manual(name: &str, ns: &str, target: Value, fault: Value, hold: &str) -> PolicyDoc {
    policy(name)
        .manual_only(ns)
        .set("/target", target)
        .fault(fault)
        .duration(hold)
        .settle("1s")
}

/// A policy's target: objects of `kind` in `namespace` matching `selector`.
pub fn target(kind: &str, namespace: &str, selector: &str) -> Value {
    json!({"kind": kind, "namespaces": [namespace], "selector": selector})
}

/// A policy's target: the node `name`.
pub fn node_named(name: &str) -> Value {
    json!({"kind": "Node", "selector": format!("kubernetes.io/hostname={name}")})
}

/// A policy's target: the nodes of a test's node pool (see [`crate::with_node_pool`]).
pub fn pool_nodes(pool: &str) -> Value {
    json!({"kind": "Node", "selector": format!("{}={pool}", crate::workloads::POOL)})
}

impl PolicyDoc {
    /// Sets a field below `spec`, e.g. `set("/health/settle", json!("5s"))`.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set_path(&mut self.0["spec"], pointer, value);
        self
    }

    /// Targets pods of `namespace` matching `selector`; alerts count only from there.
    pub fn pods(self, namespace: &str, selector: &str) -> Self {
        let mut target = json!({"kind": "Pod", "namespaces": [namespace]});
        if !selector.is_empty() {
            target["selector"] = json!(selector);
        }
        self.set("/target", target).alerts_from(namespace)
    }

    /// Fires with uniform random gaps.
    pub fn interval(self, min: &str, max: &str) -> Self {
        self.set("/schedule", json!({"interval": {"min": min, "max": max}}))
    }

    /// Runs only when asked (HTTP or `havoc run`): a rollout trigger that never matches
    /// stands in for "no clock".
    pub fn manual_only(self, namespace: &str) -> Self {
        self.set(
            "/triggers",
            json!([{"rollout": {"namespaces": [namespace], "selector": "havoc-e2e=never"}}]),
        )
    }

    /// A rollout trigger.
    pub fn on_rollout(self, rollout: Value) -> Self {
        self.set("/triggers", json!([{ "rollout": rollout }]))
    }

    pub fn fault(self, fault: Value) -> Self {
        self.set("/fault", fault)
    }

    pub fn duration(self, d: &str) -> Self {
        self.set("/duration", json!(d))
    }

    pub fn settle(self, d: &str) -> Self {
        self.set("/health/settle", json!(d))
    }

    pub fn alert_matchers(self, matchers: &[&str]) -> Self {
        self.set("/health/alertMatchers", json!(matchers))
    }

    /// Alerts count only from `namespace`.
    pub fn alerts_from(self, namespace: &str) -> Self {
        self.alert_matchers(&[&format!("namespace=\"{namespace}\"")])
    }

    /// Health that never ends an experiment: alerts counted from a namespace that has
    /// none, and a deviation lets it go on. For tests about what havoc does to the
    /// cluster, not about health.
    pub fn blind(self) -> Self {
        self.alert_matchers(&["namespace=\"havoc-e2e-nowhere\""])
            .on_deviation("continue")
    }

    pub fn min_available(self, n: u32) -> Self {
        self.set("/limits/minAvailableReplicas", json!(n))
    }

    pub fn on_deviation(self, what: &str) -> Self {
        self.set("/onDeviation", json!(what))
    }

    pub fn notify_on(self, on: &[&str]) -> Self {
        self.set("/notify/on", json!(on))
    }

    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The file's text.
    pub fn yaml(&self) -> String {
        yaml(&self.0)
    }
}

/// A `HavocConfig` document being built.
#[derive(Debug, Clone)]
pub struct ConfigDoc(Value);

/// A config with every default.
pub fn config() -> ConfigDoc {
    ConfigDoc(json!({
        "apiVersion": "havoc.dev/v1alpha1",
        "kind": "HavocConfig",
        "spec": {},
    }))
}

impl ConfigDoc {
    /// Sets a field below `spec`.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set_path(&mut self.0["spec"], pointer, value);
        self
    }

    /// Merges the fields of `spec` (an object) into the document's `spec`.
    pub fn merge(mut self, spec: &Value) -> Self {
        if let Value::Object(m) = spec {
            for (k, v) in m {
                self.0["spec"][k] = v.clone();
            }
        }
        self
    }

    pub fn yaml(&self) -> String {
        yaml(&self.0)
    }
}

/// Line and column (1-based) of the first occurrence of `needle` in `text`.
pub fn position_of(text: &str, needle: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        line.find(needle)
            .map(|c| (i + 1, line[..c].chars().count() + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_block_style_and_round_trips_as_json_values() {
        let p = policy("p")
            .pods("d", "app=web")
            .interval("10s", "20s")
            .set("/fault", json!({"podEvict": {}}));
        let text = p.yaml();
        assert!(text.contains("metadata:\n  name: \"p\"\n"), "{text}");
        assert!(text.contains("    namespaces:\n      - \"d\"\n"), "{text}");
        assert!(text.contains("podEvict: {}"), "{text}");
        let (line, col) = position_of(&text, "podEvict").expect("found");
        assert_eq!(col, 5, "{text}");
        assert!(
            text.lines()
                .nth(line - 1)
                .is_some_and(|l| l.contains("podEvict"))
        );
    }
}
