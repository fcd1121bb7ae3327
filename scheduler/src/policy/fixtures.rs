//! Test fixtures: builders for policies and configs that go through the real parser and
//! validation (a policy built here is exactly what a file saying the same would give).
//!
//! ```ignore
//! let p = fixtures::policy("p").namespaces(&["d"]).live().duration_secs(10).build();
//! let c = fixtures::config().max_concurrent(2).build();
//! ```

use serde_json::{Value, json};

use super::{Config, Context, Policy, load_str};
use crate::policy::Expect;

/// Sets the field at `pointer` below the document's `spec`, creating objects on the way.
fn set_in_spec(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = &mut doc["spec"];
    for key in pointer.trim_start_matches('/').split('/') {
        at = &mut at[key];
    }
    *at = value;
}

/// A `ChaosPolicy` being built; [`PolicyFixture::build`] validates it.
#[derive(Debug, Clone)]
pub struct PolicyFixture {
    doc: Value,
    ctx: Context,
}

/// A pod-delete policy named `name`, fired hourly, on no namespace yet.
pub fn policy(name: &str) -> PolicyFixture {
    PolicyFixture {
        doc: json!({
            "apiVersion": "havoc.dev/v1alpha1",
            "kind": "ChaosPolicy",
            "metadata": {"name": name},
            "spec": {
                "schedule": {"cron": "@hourly"},
                "target": {"kind": "Pod"},
                "fault": {"podDelete": {}},
            }
        }),
        ctx: Context::default(),
    }
}

impl PolicyFixture {
    /// Sets the field at a JSON pointer below `spec` (e.g. `/duration`), creating objects.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set_in_spec(&mut self.doc, pointer, value);
        self
    }

    pub fn namespaces(self, names: &[&str]) -> Self {
        self.set("/target/namespaces", json!(names))
    }

    pub fn selector(self, selector: &str) -> Self {
        self.set("/target/selector", json!(selector))
    }

    pub fn kind(self, kind: &str) -> Self {
        self.set("/target/kind", json!(kind))
    }

    pub fn fault(self, fault: Value) -> Self {
        self.set("/fault", fault)
    }

    pub fn count(self, n: u32) -> Self {
        self.set("/target/count", json!(n))
    }

    pub fn duration_secs(self, secs: u64) -> Self {
        self.set("/duration", json!(format!("{secs}s")))
    }

    pub fn settle_secs(self, secs: u64) -> Self {
        self.set("/health/settle", json!(format!("{secs}s")))
    }

    pub fn min_available(self, n: u32) -> Self {
        self.set("/limits/minAvailableReplicas", json!(n))
    }

    /// Validated against a service that is not in dry run.
    pub fn live(mut self) -> Self {
        self.ctx.dry_run = false;
        self
    }

    /// Validated against this config's context.
    pub fn within(mut self, config: &Config) -> Self {
        self.ctx = config.context();
        self
    }

    /// The document as text (JSON is YAML).
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.doc).unwrap_or_default()
    }

    /// Parses and validates; panics with the diagnostics if the policy is invalid.
    pub fn build(self) -> Policy {
        let report = load_str(
            std::path::Path::new("fixture.yaml"),
            &self.text(),
            &self.ctx,
            Expect::Policies,
        );
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        report
            .policies
            .into_iter()
            .next()
            .map(|(p, _)| p)
            .expect("one policy")
    }
}

/// A `HavocConfig` being built; [`ConfigFixture::build`] validates it.
#[derive(Debug, Clone)]
pub struct ConfigFixture {
    doc: Value,
}

/// A config with every default, judging by nothing (`health.none`) until a test sets a
/// health source.
pub fn config() -> ConfigFixture {
    ConfigFixture {
        doc: json!({
            "apiVersion": "havoc.dev/v1alpha1",
            "kind": "HavocConfig",
            "spec": {"health": {"none": true}}
        }),
    }
}

impl ConfigFixture {
    /// Sets the field at a JSON pointer below `spec`, creating objects.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set_in_spec(&mut self.doc, pointer, value);
        self
    }

    pub fn dry_run(self, dry: bool) -> Self {
        self.set("/dryRun", json!(dry))
    }

    pub fn max_concurrent(self, n: u32) -> Self {
        self.set("/limits/maxConcurrentExperiments", json!(n))
    }

    pub fn interval_secs(self, secs: u64) -> Self {
        self.set("/health/interval", json!(format!("{secs}s")))
    }

    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.doc).unwrap_or_default()
    }

    /// Parses and validates; panics with the diagnostics if the config is invalid.
    pub fn build(mut self) -> Config {
        let health = &mut self.doc["spec"]["health"];
        if ["alertmanager", "slos", "budgets"]
            .iter()
            .any(|k| health.get(*k).is_some())
            && let Some(h) = health.as_object_mut()
        {
            h.remove("none");
        }
        let report = load_str(
            std::path::Path::new("fixture.yaml"),
            &self.text(),
            &Context::default(),
            Expect::Any,
        );
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        report.configs.into_iter().next().expect("one config")
    }
}

/// A "billion laughs" YAML document: 10 * 10^12 strings if its aliases were expanded.
pub fn alias_bomb() -> String {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    text
}
