//! Retrying notifications: exponential backoff capped at a maximum, honouring the
//! receiver's `Retry-After` up to that same maximum, stopping at a permanent error or
//! after `max_attempts`. Waits with `tokio::time::sleep`, so tests run it on tokio's
//! paused clock.
//!
//! # `Retry-After` is capped at `max`
//!
//! A receiver's `Retry-After` is honoured when it asks for more than the backoff's own
//! delay, but never beyond [`Backoff::max`] (30 s by default). A receiver answering
//! `Retry-After: 86400` would otherwise hold the delivery of a failed experiment's
//! notification, and whatever queues behind it, for a day; a notification that arrives a
//! day late is as good as lost. Attempts are counted as usual, so a receiver that keeps
//! asking us to wait gets at most `max_attempts` requests, `max` apart, and the
//! notification is then dropped (and counted) like any other that did not get through.

use std::{future::Future, time::Duration};

use crate::NotifyError;

/// How to retry: after the n-th failed attempt wait `initial * factor^(n-1)`, or what a
/// `Retry-After` asked for when that is longer, but never more than `max`; give up after
/// `max_attempts` attempts in all (`0` counts as `1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s, 8 s between five attempts; never more than 30 s apart, whatever a
    /// `Retry-After` says.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2.0,
            max_attempts: 5,
        }
    }
}

impl Backoff {
    /// The wait after `failed_attempts` (1 for the first failure) failed attempts, before
    /// any `Retry-After` is considered.
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        let exponent = i32::try_from(failed_attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }

    /// The wait after `failed_attempts` failed attempts when the receiver asked for
    /// `retry_after`: the longer of the two, capped at `max` (see the [module
    /// docs](self)).
    pub fn wait(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        let asked = retry_after.unwrap_or_default().min(self.max);
        self.delay(failed_attempts).max(asked)
    }
}

/// A notification that did not get through: the last error and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (after {attempts} attempt(s))")]
pub struct RetryFailure {
    pub error: NotifyError,
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails permanently, or `backoff.max_attempts` attempts were
/// made. On success returns the value and the number of attempts it took.
///
/// Between attempts it waits [`Backoff::wait`]: [`Backoff::delay`], or the error's
/// `retry_after` when that is longer, never more than `backoff.max`.
pub async fn retry<T, F, Fut>(backoff: &Backoff, mut op: F) -> Result<(T, u32), RetryFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, NotifyError>>,
{
    let max_attempts = backoff.max_attempts.max(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match op().await {
            Ok(value) => return Ok((value, attempts)),
            Err(error) if !error.is_retryable() || attempts >= max_attempts => {
                return Err(RetryFailure { error, attempts });
            }
            Err(error) => {
                let delay = backoff.wait(attempts, error.retry_after());
                if error.retry_after().is_some_and(|asked| asked > delay) {
                    tracing::debug!(
                        asked_s = error.retry_after().map(|d| d.as_secs()),
                        waiting_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "Retry-After longer than the backoff's maximum, capped"
                    );
                }
                tracing::debug!(
                    attempt = attempts,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason = error.reason(),
                    "notification failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            factor: 2.0,
            max_attempts: 6,
        }
    }

    /// Runs `retry` with an operation answering from `script` (then succeeding), and
    /// returns the result and the paused-clock instants of every attempt relative to the
    /// start.
    async fn run(
        backoff: &Backoff,
        script: Vec<NotifyError>,
    ) -> (Result<(&'static str, u32), RetryFailure>, Vec<Duration>) {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let result = retry(backoff, || {
            let calls = calls.clone();
            let script = script.clone();
            async move {
                calls.lock().expect("lock").push(start.elapsed());
                match script.lock().expect("lock").next() {
                    Some(e) => Err(e),
                    None => Ok("sent"),
                }
            }
        })
        .await;
        let calls = calls.lock().expect("lock").clone();
        (result, calls)
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let b = backoff();
        let delays: Vec<_> = (1..=5).map(|n| b.delay(n)).collect();
        assert_eq!(delays, ms(&[100, 200, 400, 500, 500]));
        assert_eq!(b.delay(u32::MAX), b.max);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_exponential_delays_until_success() {
        let script = vec![NotifyError::retryable("500"); 4];
        let (result, calls) = run(&backoff(), script).await;
        assert_eq!(result, Ok(("sent", 5)));
        assert_eq!(calls, ms(&[0, 100, 300, 700, 1200]));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        // Longer than the backoff's own delay (100 ms), within its max (500 ms).
        let script = vec![NotifyError::Retryable {
            reason: "ratelimited".into(),
            retry_after: Some(Duration::from_millis(300)),
        }];
        let (result, calls) = run(&backoff(), script).await;
        assert_eq!(result, Ok(("sent", 2)));
        assert_eq!(calls, ms(&[0, 300]));
        // Shorter than the backoff's delay: the backoff wins.
        let script = vec![NotifyError::Retryable {
            reason: "ratelimited".into(),
            retry_after: Some(Duration::from_millis(10)),
        }];
        let (_, calls) = run(&backoff(), script).await;
        assert_eq!(calls, ms(&[0, 100]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_capped_at_max_and_attempts_still_count() {
        let day = NotifyError::Retryable {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(86_400)),
        };
        // Gets through on the third attempt, each wait capped at max (500 ms).
        let (result, calls) = run(&backoff(), vec![day.clone(), day.clone()]).await;
        assert_eq!(result, Ok(("sent", 3)));
        assert_eq!(calls, ms(&[0, 500, 1000]));
        // A receiver that always asks for a day gets max_attempts requests, max apart.
        let b = Backoff {
            max_attempts: 4,
            ..backoff()
        };
        let (result, calls) = run(&b, vec![day; 10]).await;
        assert_eq!(result.expect_err("gives up").attempts, 4);
        assert_eq!(calls, ms(&[0, 500, 1000, 1500]));
    }

    #[test]
    fn the_default_caps_at_30_seconds_and_keeps_its_schedule() {
        let b = Backoff::default();
        assert_eq!(b.max, Duration::from_secs(30));
        assert_eq!(b.max_attempts, 5);
        let delays: Vec<_> = (1..=4).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(
            b.wait(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.wait(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.wait(4, Some(Duration::from_secs(1))),
            Duration::from_secs(8)
        );
        assert_eq!(b.wait(2, None), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_a_permanent_error() {
        let script = vec![
            NotifyError::retryable("timeout"),
            NotifyError::permanent("invalid_auth"),
        ];
        let (result, calls) = run(&backoff(), script).await;
        let failure = result.expect_err("permanent");
        assert_eq!(failure.attempts, 2);
        assert_eq!(failure.error, NotifyError::permanent("invalid_auth"));
        assert_eq!(calls, ms(&[0, 100]));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let b = Backoff {
            max_attempts: 3,
            ..backoff()
        };
        let (result, calls) = run(&b, vec![NotifyError::retryable("503"); 10]).await;
        let failure = result.expect_err("gives up");
        assert_eq!(failure.attempts, 3);
        assert!(failure.error.is_retryable());
        assert_eq!(calls, ms(&[0, 100, 300]));
        assert!(failure.to_string().contains("after 3 attempt"), "{failure}");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_attempts_means_one() {
        let b = Backoff {
            max_attempts: 0,
            ..backoff()
        };
        let (result, calls) = run(&b, vec![NotifyError::retryable("503")]).await;
        assert_eq!(result.expect_err("one attempt").attempts, 1);
        assert_eq!(calls.len(), 1);
    }
}
