//! Resilience around a remote store: a bound on every operation, retries
//! of transient failures, and a circuit breaker.
//!
//! [`Resilience`] is a [`Layer`] the stack puts around a remote store. Every operation
//! finishes within the configured timeout, retries included. Only transient
//! failures (unreachable, timed out) are retried, with exponential backoff and
//! full jitter, and only for idempotent operations: a `SET NX`, a
//! compare-and-swap or an increment may have run before its reply was lost,
//! so it is never sent twice. After `failure_threshold` consecutive transient
//! failures the circuit opens: for `open_for`, operations fail at once with
//! [`Error::Unavailable`] instead of waiting for a timeout each; then one
//! probe operation is let through, and its outcome closes or reopens the
//! circuit. A refused command (an ACL denial, a wrong type) proves the server
//! is up and does not count as a failure. A probe whose caller is cancelled
//! (a request timeout, a `select!`) gives its turn back when it is dropped:
//! the breaker never stays half-open with no probe running.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{BreakerPolicy, RetryPolicy};
use crate::error::{Error, Result};
use crate::store::BoxFuture;
use crate::store::layer::{Layer, Op};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Operations reach the backend.
    Closed,
    /// Operations fail fast until the breaker probes again.
    Open,
    /// One probe operation is deciding whether to close.
    HalfOpen,
}

fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A circuit breaker counting consecutive transient failures.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    failures: AtomicU32,
    /// `clock_ms()` until which the circuit is open; 0 when closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

/// Whether an operation may run, and if it is the half-open probe.
#[derive(Debug, PartialEq, Eq)]
enum Permit<'a> {
    Run(Probe<'a>),
    Reject,
}

/// An operation's turn to run. For the half-open probe it is the probe's
/// turn: recording the outcome ends it, and dropping it unrecorded (the
/// caller was cancelled) gives it back, so that the next operation probes.
#[derive(Debug)]
struct Probe<'a> {
    breaker: Option<&'a Breaker>,
}

impl PartialEq for Probe<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.is_probe() == other.is_probe()
    }
}

impl Eq for Probe<'_> {}

impl Probe<'_> {
    fn is_probe(&self) -> bool {
        self.breaker.is_some()
    }

    fn record<T>(mut self, breaker: &Breaker, outcome: &Result<T>) {
        let probe = self.breaker.take().is_some();
        breaker.record(probe, outcome);
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker {
            breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> CircuitState {
        match self.open_until.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            until if clock_ms() < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    fn permit(&self) -> Permit<'_> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Run(Probe { breaker: None });
        }
        if clock_ms() < until {
            return Permit::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Permit::Run(Probe {
                breaker: Some(self),
            })
        } else {
            Permit::Reject
        }
    }

    fn on_success(&self, probe: bool) {
        // Every operation of a healthy backend ends here: read before
        // writing, so that the breaker's cache line is not bounced between
        // cores on each call.
        if self.failures.load(Ordering::Acquire) != 0 {
            self.failures.store(0, Ordering::Release);
        }
        if self.open_until.load(Ordering::Acquire) != 0
            && self.open_until.swap(0, Ordering::AcqRel) != 0
        {
            tracing::info!("cache backend answers again; circuit closed");
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    fn on_failure(&self, probe: bool) {
        let open_until = clock_ms() + self.policy.open_for.as_millis() as u64;
        if probe {
            self.open_until.store(open_until, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.policy.failure_threshold
            && self
                .open_until
                .compare_exchange(0, open_until, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::warn!(
                failures,
                open_for_ms = self.policy.open_for.as_millis() as u64,
                "cache backend keeps failing; circuit opened, calls skip it until a probe succeeds"
            );
        }
    }

    /// Records the outcome of an operation that ran with `permit`.
    fn record(&self, probe: bool, outcome: &Result<impl Sized>) {
        match outcome {
            Err(e) if e.is_transient() => self.on_failure(probe),
            _ => self.on_success(probe),
        }
    }
}

/// Timeouts, retries and a circuit breaker around each operation of a
/// store.
#[derive(Debug)]
pub(crate) struct Resilience {
    timeout: Duration,
    retry: RetryPolicy,
    breaker: std::sync::Arc<Breaker>,
}

fn circuit_open(op: Op) -> Error {
    Error::Unavailable(format!(
        "circuit open after repeated failures; `{}` skipped",
        op.name()
    ))
}

impl Resilience {
    pub(crate) fn new(
        timeout: Duration,
        retry: RetryPolicy,
        breaker: std::sync::Arc<Breaker>,
    ) -> Self {
        Resilience {
            timeout,
            retry,
            breaker,
        }
    }

    async fn run<'a, T>(
        &'a self,
        op: Op,
        attempt: impl Fn() -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        // One clock read per operation: the deadline of every attempt.
        let started = tokio::time::Instant::now();
        let deadline = started + self.timeout;
        let mut retries = 0;
        loop {
            let Permit::Run(probe) = self.breaker.permit() else {
                return Err(circuit_open(op));
            };
            let outcome = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Err(Error::Timeout { .. })) | Err(_) => Err(Error::Timeout {
                    op: op.name(),
                    after: started.elapsed(),
                }),
                Ok(outcome) => outcome,
            };
            probe.record(&self.breaker, &outcome);
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !error.is_transient() || !op.idempotent() || retries >= self.retry.max_retries {
                return Err(error);
            }
            // Full jitter: a random delay up to the exponential bound.
            let bound = self
                .retry
                .base_delay
                .saturating_mul(1 << retries.min(16))
                .min(self.retry.max_delay);
            let delay = bound.mul_f64(fastrand::f64());
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(error);
            }
            retries += 1;
            tracing::debug!(op = op.name(), retries, error = %error, "retrying cache operation");
            tokio::time::sleep(delay).await;
        }
    }

    /// A scan over a large keyspace takes many round trips; each is bounded
    /// by the store, not the whole.
    async fn unbounded<'a, T>(&'a self, op: Op, attempt: BoxFuture<'a, Result<T>>) -> Result<T> {
        let Permit::Run(probe) = self.breaker.permit() else {
            return Err(circuit_open(op));
        };
        let outcome = attempt.await;
        probe.record(&self.breaker, &outcome);
        outcome
    }

    /// A health probe: it asks the store even while the circuit is open, so
    /// that the real cause (a wrong password, a refused connection) shows
    /// instead of "circuit open". A success closes the circuit; a failure
    /// does not count towards opening it.
    async fn probe<'a, T>(&'a self, attempt: BoxFuture<'a, Result<T>>) -> Result<T> {
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout {
                op: "ping",
                after: self.timeout,
            }),
        };
        if outcome.is_ok() {
            self.breaker.on_success(false);
        }
        outcome
    }
}

impl Layer for Resilience {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        attempt: impl Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        match op {
            Op::Ping => Box::pin(self.probe(attempt())),
            Op::DeleteMatching => Box::pin(self.unbounded(op, attempt())),
            _ => Box::pin(self.run(op, attempt)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_probes_and_closes() {
        let breaker = Breaker::new(BreakerPolicy {
            failure_threshold: 3,
            open_for: Duration::from_millis(30),
        });
        let fail: Result<()> = Err(Error::Unavailable("down".into()));
        for _ in 0..3 {
            let Permit::Run(probe) = breaker.permit() else {
                panic!("closed breaker rejected")
            };
            assert!(!probe.is_probe());
            probe.record(&breaker, &fail);
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.permit(), Permit::Reject);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let Permit::Run(probe) = breaker.permit() else {
            panic!("half-open breaker let no probe through")
        };
        assert!(probe.is_probe());
        assert_eq!(breaker.permit(), Permit::Reject, "only one probe at a time");
        probe.record(&breaker, &fail);
        assert_eq!(breaker.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(40));
        let Permit::Run(probe) = breaker.permit() else {
            panic!("no second probe")
        };
        probe.record(&breaker, &Ok(()));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn a_cancelled_probe_gives_its_turn_back() {
        let breaker = Breaker::new(BreakerPolicy {
            failure_threshold: 1,
            open_for: Duration::from_millis(10),
        });
        breaker.record(false, &Err::<(), _>(Error::Unavailable("down".into())));
        std::thread::sleep(Duration::from_millis(20));
        let Permit::Run(probe) = breaker.permit() else {
            panic!("no probe")
        };
        assert!(probe.is_probe());
        // The probe's caller is dropped before the outcome is known.
        drop(probe);
        let Permit::Run(next) = breaker.permit() else {
            panic!("the breaker stayed half-open with no probe running")
        };
        next.record(&breaker, &Ok(()));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn refusals_do_not_open_the_circuit() {
        let breaker = Breaker::new(BreakerPolicy {
            failure_threshold: 1,
            open_for: Duration::from_secs(10),
        });
        breaker.record(false, &Err::<(), _>(Error::Backend("NOPERM".into())));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
