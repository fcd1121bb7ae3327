//! Retrying notifications: exponential backoff capped at a maximum, honouring the
//! receiver's `Retry-After`, stopping at a permanent error or after `max_attempts`.
//! Waits with `tokio::time::sleep`, so tests run it on tokio's paused clock.

use std::{future::Future, time::Duration};

use crate::NotifyError;

/// How to retry: after the n-th failed attempt wait `initial * factor^(n-1)`, at most
/// `max` (but at least what a `Retry-After` asked for), and give up after `max_attempts`
/// attempts in all (`0` counts as `1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s, 8 s between five attempts; never more than a minute apart.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
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
/// Between attempts it waits [`Backoff::delay`], or the error's `retry_after` when that is
/// longer (a receiver's `Retry-After` is honoured even beyond `backoff.max`).
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
                let delay = backoff
                    .delay(attempts)
                    .max(error.retry_after().unwrap_or_default());
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
        let script = vec![NotifyError::Retryable {
            reason: "ratelimited".into(),
            retry_after: Some(Duration::from_secs(2)),
        }];
        let (result, calls) = run(&backoff(), script).await;
        assert_eq!(result, Ok(("sent", 2)));
        assert_eq!(calls, ms(&[0, 2000]));
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
