//! Resilience around a remote store: a bound on every operation, retries
//! of transient failures, and a circuit breaker.
//!
//! [`Resilient`] wraps a [`Backend`] and is one itself. Every operation
//! finishes within the configured timeout, retries included. Only transient
//! failures (unreachable, timed out) are retried, with exponential backoff and
//! full jitter, and only for idempotent operations: a `SET NX`, a
//! compare-and-swap or an increment may have run before its reply was lost,
//! so it is never sent twice. After `failure_threshold` consecutive transient
//! failures the circuit opens: for `open_for`, operations fail at once with
//! [`Error::Unavailable`] instead of waiting for a timeout each; then one
//! probe operation is let through, and its outcome closes or reopens the
//! circuit. A refused command (an ACL denial, a wrong type) proves the server
//! is up and does not count as a failure.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{Backend, BoxFuture, DirectGet, Event, EventStream, KeyTtl, Swap, Write};
use crate::config::{BreakerPolicy, RetryPolicy};
use crate::error::{Error, Result};

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
pub struct Breaker {
    policy: BreakerPolicy,
    failures: AtomicU32,
    /// `clock_ms()` until which the circuit is open; 0 when closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

/// Whether an operation may run, and if it is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permit {
    Run { probe: bool },
    Reject,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match self.open_until.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            until if clock_ms() < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    fn permit(&self) -> Permit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Run { probe: false };
        }
        if clock_ms() < until {
            return Permit::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Permit::Run { probe: true }
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

/// A backend behind a timeout, retries and a circuit breaker.
#[derive(Debug)]
pub struct Resilient<B> {
    inner: B,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: Breaker,
}

/// Whether sending an operation twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
}

impl<B: DirectGet> Resilient<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration, retry: RetryPolicy, breaker: BreakerPolicy) -> Self {
        Resilient {
            inner,
            timeout,
            retry,
            breaker: Breaker::new(breaker),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        idempotent: Idempotent,
        attempt_fn: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        // One clock read per operation: the deadline of every attempt.
        let started = tokio::time::Instant::now();
        let deadline = started + self.timeout;
        let mut retries = 0;
        loop {
            let Permit::Run { probe } = self.breaker.permit() else {
                return Err(Error::Unavailable(format!(
                    "circuit open after repeated failures; `{op}` skipped"
                )));
            };
            let outcome = match tokio::time::timeout_at(deadline, attempt_fn()).await {
                Ok(Err(Error::Timeout { .. })) | Err(_) => Err(Error::Timeout {
                    op,
                    after: started.elapsed(),
                }),
                Ok(outcome) => outcome,
            };
            self.breaker.record(probe, &outcome);
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !error.is_transient()
                || idempotent == Idempotent::No
                || retries >= self.retry.max_retries
            {
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
            tracing::debug!(op, retries, error = %error, "retrying cache operation");
            tokio::time::sleep(delay).await;
        }
    }
}

impl<B: DirectGet> Backend for Resilient<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.run("get", Idempotent::Yes, move || self.inner.get_direct(key)))
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        Box::pin(self.run("get_with_ttl", Idempotent::Yes, move || {
            self.inner.get_with_ttl(key)
        }))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(self.run("get_many", Idempotent::Yes, move || {
            self.inner.get_many(keys)
        }))
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run("write", Idempotent::Yes, move || self.inner.write(writes)))
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.run("set_nx", Idempotent::No, move || {
            self.inner.set_nx(key, value.clone(), ttl)
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.run("compare_and_swap", Idempotent::No, move || {
            self.inner.compare_and_swap(key, expected, swap.clone())
        }))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.run("delete", Idempotent::Yes, move || self.inner.delete(keys)))
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.run("exists", Idempotent::Yes, move || self.inner.exists(key)))
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.run("expire", Idempotent::Yes, move || {
            self.inner.expire(key, ttl)
        }))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(self.run("ttl", Idempotent::Yes, move || self.inner.ttl(key)))
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.run("incr", Idempotent::No, move || {
            self.inner.incr(key, by, ttl)
        }))
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.run("members", Idempotent::Yes, move || self.inner.members(set)))
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run("remove_members", Idempotent::Yes, move || {
            self.inner.remove_members(set, members)
        }))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        // A scan over a large keyspace takes many round trips; each is bounded
        // by the connection's response timeout rather than the whole.
        Box::pin(async move {
            let Permit::Run { probe } = self.breaker.permit() else {
                return Err(Error::Unavailable(
                    "circuit open after repeated failures; pattern invalidation skipped".into(),
                ));
            };
            let outcome = self.inner.delete_matching(pattern).await;
            self.breaker.record(probe, &outcome);
            outcome
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run("publish", Idempotent::Yes, move || {
            self.inner.publish(channel, event)
        }))
    }

    fn subscribe(&self, channel: &str) -> Option<EventStream> {
        self.inner.subscribe(channel)
    }

    /// A health probe: it asks the store even while the circuit is open, so
    /// that the real cause (a wrong password, a refused connection) shows
    /// instead of "circuit open". A success closes the circuit; a failure
    /// does not count towards opening it.
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let outcome = match tokio::time::timeout(self.timeout, self.inner.ping()).await {
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
        })
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn circuit(&self) -> Option<CircuitState> {
        Some(self.breaker.state())
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
            let Permit::Run { probe } = breaker.permit() else {
                panic!("closed breaker rejected")
            };
            breaker.record(probe, &fail);
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.permit(), Permit::Reject);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.permit(), Permit::Run { probe: true });
        assert_eq!(breaker.permit(), Permit::Reject, "only one probe at a time");
        breaker.record(true, &fail);
        assert_eq!(breaker.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.permit(), Permit::Run { probe: true });
        breaker.record(true, &Ok(()));
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
