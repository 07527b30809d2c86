//! Load under faults: callers of a cached function and of the `Cache` API,
//! and what they saw. Shared by the fault and failover tests.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the callers saw.
#[derive(Default)]
pub struct Observed {
    pub calls: AtomicU64,
    pub wrong: AtomicU64,
    pub errors: AtomicU64,
    pub over_bound: AtomicU64,
    pub max_us: AtomicU64,
    pub api_calls: AtomicU64,
    pub api_errors: AtomicU64,
    pub api_over_bound: AtomicU64,
    pub api_max_us: AtomicU64,
    /// `get_or_compute` failures or wrong values: it fails open, so none.
    pub computed_api_failures: AtomicU64,
}

impl Observed {
    /// Records one call of the `Cache` API (some operations in a row).
    pub fn record_api(&self, took: Duration, bound: Duration, failed: bool) {
        timed(
            [&self.api_calls, &self.api_max_us, &self.api_over_bound],
            took,
            bound,
        );
        if failed {
            self.api_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One line of what was seen, for the test's output.
    pub fn summary(&self, what: &str) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{what}: {} cached calls (max {} ms, {} over bound), {} Cache API calls ({} errors, max {} ms, {} over bound)",
            get(&self.calls),
            get(&self.max_us) / 1000,
            get(&self.over_bound),
            get(&self.api_calls),
            get(&self.api_errors),
            get(&self.api_max_us) / 1000,
            get(&self.api_over_bound),
        )
    }

    /// Asserts what must hold whatever the fault: calls ran, none returned a
    /// wrong value or an error, none went past its bound.
    pub fn assert_correct(&self, what: &str) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert!(get(&self.calls) > 0, "{what}: no calls ran");
        assert_eq!(get(&self.wrong), 0, "{what}: wrong values");
        assert_eq!(get(&self.errors), 0, "{what}: cached calls failed");
        assert_eq!(
            get(&self.over_bound),
            0,
            "{what}: cached calls past their bound"
        );
        assert_eq!(
            get(&self.api_over_bound),
            0,
            "{what}: Cache API calls past their bound"
        );
        assert_eq!(
            get(&self.computed_api_failures),
            0,
            "{what}: get_or_compute failed or returned a wrong value"
        );
    }
}

/// Counts a call in `[calls, max_us, over_bound]`.
fn timed([calls, max_us, over_bound]: [&AtomicU64; 3], took: Duration, bound: Duration) {
    calls.fetch_add(1, Ordering::Relaxed);
    max_us.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
    if took > bound {
        over_bound.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spawns `callers` tasks calling `work(id)` over `keys` ids (each caller
/// its own pseudo-random sequence) until `stop`; `work(id)` must return
/// `id * 3 + 1` within `bound`.
pub fn spawn_cached_callers<F, Fut, E>(
    callers: usize,
    keys: u64,
    bound: Duration,
    stop: &Arc<AtomicBool>,
    seen: &Arc<Observed>,
    work: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: Send,
{
    (0..callers)
        .map(|caller| {
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut n = caller as u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = (n >> 33) % keys;
                    let started = Instant::now();
                    let result = work(id).await;
                    timed(
                        [&seen.calls, &seen.max_us, &seen.over_bound],
                        started.elapsed(),
                        bound,
                    );
                    match result {
                        Ok(v) if v == id * 3 + 1 => {}
                        Ok(_) => {
                            seen.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            seen.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect()
}
