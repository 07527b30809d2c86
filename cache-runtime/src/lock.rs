//! Distributed locks for application code, on the same leases that
//! `#[cached(lock = true)]` uses.
//!
//! ```no_run
//! # async fn f() -> Result<(), cachekit_runtime::Error> {
//! use std::time::Duration;
//! let guard = cachekit_runtime::lock("nightly-report", Duration::from_secs(30)).await?;
//! // ... only one process at a time runs this ...
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! A lease is renewed in the background while its guard lives, and released
//! when the guard is dropped (or by [`LockGuard::release`]). If the holder
//! dies, the lease expires after its TTL and another process can take it.
//! On the memory backend the lock is process-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flight::{self, Lease};
use crate::global::current;
use crate::key;
use crate::store::Store;

/// A held lock. Dropping it releases the lock.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    name: String,
    store: Arc<dyn Store>,
    lease: Option<Lease>,
    held: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the lease is still ours: `false` once a renewal found it
    /// taken or expired (the store was unreachable longer than its TTL).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Releases the lock now. Returns whether it was still held.
    pub async fn release(mut self) -> Result<bool> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let lease = self
            .lease
            .take()
            .expect("a guard holds its lease until released");
        lease.release(&*self.store).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Some(lease) = self.lease.take() {
            flight::release_in_background(self.store.clone(), lease);
        }
    }
}

fn check(name: &str, ttl: Duration) -> Result<()> {
    key::validate_key("lock name", name)?;
    if ttl < Duration::from_millis(10) {
        return Err(Error::invalid("a lock TTL must be at least 10 ms"));
    }
    Ok(())
}

/// Takes the lock `name` if it is free. The lease lasts `ttl` and is renewed
/// while the guard lives.
#[tracing::instrument(name = "cachekit.try_lock", level = "debug")]
pub async fn try_lock(name: &str, ttl: Duration) -> Result<Option<LockGuard>> {
    check(name, ttl)?;
    let stack = current().await;
    stack.check()?;
    let lease_key = stack.layout.lock_key(name);
    let Some(lease) = Lease::acquire(&*stack.store, lease_key, ttl).await? else {
        return Ok(None);
    };
    let held = Arc::new(AtomicBool::new(true));
    let renewer = {
        let store = stack.store.clone();
        let held = held.clone();
        let lease = Lease {
            key: lease.key.clone(),
            token: lease.token.clone(),
            ttl,
        };
        tokio::spawn(async move {
            let mut every = tokio::time::interval((ttl / 3).max(Duration::from_millis(5)));
            every.tick().await;
            loop {
                every.tick().await;
                match lease.renew(&*store).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lock = %lease.key, "lock lost: its lease expired or was taken");
                        held.store(false, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(lock = %lease.key, error = %e, "lock renewal failed; retrying")
                    }
                }
            }
        })
    };
    Ok(Some(LockGuard {
        name: name.to_owned(),
        store: stack.store.clone(),
        lease: Some(lease),
        held,
        renewer: Some(renewer),
    }))
}

/// Takes the lock `name`, waiting for it at most `ttl` (the longest a
/// crashed holder can keep it). Fails with [`Error::Timeout`] if a live
/// holder keeps it longer.
#[tracing::instrument(name = "cachekit.lock", level = "debug")]
pub async fn lock(name: &str, ttl: Duration) -> Result<LockGuard> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(2);
    loop {
        if let Some(guard) = try_lock(name, ttl).await? {
            return Ok(guard);
        }
        if started.elapsed() >= ttl {
            return Err(Error::Timeout {
                op: "lock",
                after: started.elapsed(),
            });
        }
        tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64())).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}
