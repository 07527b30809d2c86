//! Retries of transient cache errors, with exponential backoff and jitter.
//!
//! cachekit's resilience layer already retries every idempotent operation
//! (get, set, delete, expire) within its timeout. It never resends a
//! compare-and-swap, since one may have applied before its reply was lost;
//! `Cache::update` is built on one. The service's updates are idempotent as
//! a whole (they set fields to fixed values: merging twice is merging once),
//! so it retries those itself, here. Only transient errors
//! (`Unavailable`, `Timeout`) are retried: anything else is a problem with
//! the call, which the same call would hit again.

use std::future::Future;
use std::time::Duration;

/// Attempts in all, the first one included.
pub const ATTEMPTS: u32 = 3;
/// The first backoff; it doubles after each attempt.
pub const BASE_DELAY: Duration = Duration::from_millis(25);

/// Runs `op` until it succeeds, fails with a non-transient error, or has
/// run [`ATTEMPTS`] times. Waits a random time up to `BASE_DELAY * 2^n`
/// between attempts (full jitter), so that callers do not retry in step.
pub async fn transient<T, F, Fut>(mut op: F) -> Result<T, cachekit::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, cachekit::Error>>,
{
    let mut bound = BASE_DELAY;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tokio::time::sleep(bound.mul_f64(fastrand::f64())).await;
                bound *= 2;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}
