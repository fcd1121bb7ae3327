//! Leader election: only the replica holding the Kubernetes Lease injects faults.
//!
//! [`elect`] holds the Lease (through `kube-lease-manager`) until stopped and publishes
//! whether this replica leads; [`Leadership`] is the read side the engine checks.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::policy::domain::LeaderElection;

/// Lease duration and renewal grace of leader election, in seconds.
pub const LEASE_SECONDS: u64 = 15;
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// Whether this replica leads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    known: Arc<AtomicBool>,
}

/// The write side, held by [`elect`] (or set once when election is off).
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<bool>,
    known: Arc<AtomicBool>,
}

/// A leadership channel, not leading and state unknown until published.
pub fn channel() -> (Publisher, Leadership) {
    let (tx, rx) = watch::channel(false);
    let known = Arc::new(AtomicBool::new(false));
    (
        Publisher {
            tx,
            known: known.clone(),
        },
        Leadership { rx, known },
    )
}

impl Publisher {
    /// Publishes the state; whether it changed.
    pub fn publish(&self, leading: bool) -> bool {
        self.known.store(true, Ordering::Release);
        self.tx.send_replace(leading) != leading
    }
}

impl Leadership {
    /// A replica that always leads (leader election off, tests).
    pub fn always() -> Self {
        let (publisher, leadership) = channel();
        publisher.publish(true);
        // The value stays readable after the sender is gone.
        drop(publisher);
        leadership
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Whether the Lease state has been read at least once (for `/readyz`).
    pub fn is_known(&self) -> bool {
        self.known.load(Ordering::Acquire)
    }

    /// A receiver that wakes on every change.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// The identity of this replica in the Lease: the pod name, else the host name, plus a
/// random suffix so two processes on one host differ.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "havoc".to_string());
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// Holds the Lease until `stop`, publishing whether this replica leads; releases it on
/// the way out so that another replica takes over at once.
pub async fn elect(
    client: kube::Client,
    cfg: LeaderElection,
    publisher: Publisher,
    stop: CancellationToken,
) {
    let id = identity();
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.lease)
            .with_namespace(&cfg.namespace)
            .with_identity(&id)
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.lease, namespace = %cfg.namespace, "cannot reach the leader Lease; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let (mut rx, task) = manager.watch().await;
    loop {
        let leading = *rx.borrow_and_update();
        if publisher.publish(leading) {
            tracing::info!(identity = %id, leading, "leadership changed");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    publisher.publish(false);
    drop(rx);
    match task.await {
        Ok(Ok(manager)) => {
            if let Err(e) = manager.release().await {
                tracing::warn!(error = %e, "cannot release the Lease");
            } else {
                tracing::info!("Lease released");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "lease manager stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "lease manager task failed"),
    }
}
