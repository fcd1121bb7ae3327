//! The policies the service runs: one set, replaced as a whole on reload, watched by the
//! clock, the rollout triggers and the HTTP API.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::policy::Policy;

/// The policies the engine runs.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: BTreeMap<String, Arc<Policy>>,
    pub loaded_at: Option<DateTime<Utc>>,
}

impl PolicySet {
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Self {
        PolicySet {
            policies: policies
                .into_iter()
                .map(|p| (p.name.clone(), Arc::new(p)))
                .collect(),
            loaded_at: Some(Utc::now()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }
}

/// A shared handle on the current [`PolicySet`].
#[derive(Debug, Clone)]
pub struct Policies(Arc<watch::Sender<Arc<PolicySet>>>);

impl Default for Policies {
    fn default() -> Self {
        Policies(Arc::new(watch::Sender::new(Arc::new(PolicySet::default()))))
    }
}

impl Policies {
    pub fn current(&self) -> Arc<PolicySet> {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicySet>> {
        self.0.subscribe()
    }

    /// Replaces the running policies (start-up and reload).
    pub fn replace(&self, set: PolicySet) {
        self.0.send_replace(Arc::new(set));
    }
}
