//! Watching health for one experiment: while its fault is injected and held, and while it
//! settles.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Env;
use crate::{
    engine::verdict::{Assessment, Judge},
    policy::Policy,
};

/// Why observation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The window passed.
    Elapsed,
    /// A deviation (with [`Until::Deviation`]).
    Deviated,
    /// Health became unreadable.
    Unreadable,
    /// Shutdown.
    Cancelled,
    /// This replica lost leadership.
    Demoted,
}

/// Whether a deviation ends the observation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Deviation,
    End,
}

/// Polls health for one policy while its fault is held and while it settles.
#[derive(Debug)]
pub struct Observer<'a> {
    pub env: &'a Env,
    pub policy: &'a Policy,
    pub cancel: &'a CancellationToken,
    /// When health was last read (the gate's reading, then each of the windows').
    pub last_read: Instant,
}

impl Observer<'_> {
    /// Polls every `health.interval` for `window`, until unreadable health, shutdown, or
    /// (with [`Until::Deviation`]) a deviation. The window ends on time: a window shorter
    /// than the interval (or not a multiple of it) ends with a last reading at its end,
    /// not at the next tick, so that a fault is held for its `duration`, not up to one
    /// interval longer.
    ///
    /// Readings are one interval apart across windows: the first is one interval after
    /// the reading before the window (the gate's before the hold, the hold's last before
    /// the settle), at once if that is already past (a drain that took minutes to evict),
    /// or at the window's end if that comes first. A window usually begins milliseconds
    /// after a reading, and another one then could not see anything new (alerts take
    /// their `for:` to fire): an experiment held 1 s and settling 2 s reads health 3
    /// times, not 5.
    pub async fn observe(&mut self, judge: &mut Judge, window: Duration, until: Until) -> Stop {
        let end = Instant::now() + window;
        let every = self.env.config.health.interval;
        let mut ticker = tokio::time::interval_at(self.last_read + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let at_end = tokio::time::sleep_until(end);
        tokio::pin!(at_end);
        let mut leader = self.env.leader.watch();
        let demoted = !self.policy.dry_run;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut at_end => {}
                () = self.cancel.cancelled() => return Stop::Cancelled,
                Ok(()) = leader.changed(), if demoted => {
                    if !self.env.leader.is_leader() {
                        tracing::warn!("leadership lost: ending the fault early");
                        return Stop::Demoted;
                    }
                    continue;
                }
            }
            let obs = tokio::select! {
                obs = self.env.health.observe(&self.policy.health) => obs,
                () = self.cancel.cancelled() => return Stop::Cancelled,
            };
            self.last_read = Instant::now();
            match judge.observe(&obs) {
                Assessment::Holding => {}
                Assessment::Deviated(reason) => {
                    if until == Until::Deviation {
                        tracing::info!(%reason, "deviation: ending the fault early");
                        return Stop::Deviated;
                    }
                }
                Assessment::Unreadable(reason) => {
                    tracing::info!(%reason, "health unreadable: stopping the experiment");
                    return Stop::Unreadable;
                }
            }
            if Instant::now() >= end {
                return Stop::Elapsed;
            }
        }
    }
}
