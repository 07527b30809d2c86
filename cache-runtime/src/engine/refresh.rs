//! Work that outlives the call that started it: the background refresh of
//! a stale (or early-refreshed) entry, and the rest of a computation past
//! its soft timeout. Both run on the stack's task set, so they end when
//! the cache is re-`init`ed or shut down, and neither makes a caller wait.
//!
//! A refresh runs once per key in a process (and once across processes
//! with `lock = true`, under a refresh lease). It takes its fence when it
//! starts (the bytes at the key, or a stamp in process), so an invalidation
//! during the refresh wins. A failed refresh keeps the old value, is
//! counted and logged, and with fail-safe reuses the old value for the
//! throttle before anyone tries again.

use std::time::Duration;

use super::miss::{Attempt, Lease, attempt, fail_safe, store};
use super::run::{Call, Fence, Place, refresh_span};
use super::{Computation, Output, Storage};
use crate::codec::{self, Times};
use crate::flight::Refreshing;
use crate::stats::Count;
use crate::store::{BoxFuture, Swap, Write};
use tracing::Instrument;

/// Refreshes the entry of `call` in the background, unless a refresh of it
/// is under way in this process.
pub(crate) fn spawn<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    comp: C,
    old: (O::Value, Option<Times>),
) where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let Some(guard) = call.stack.flights.refreshing(&call.stack, &call.full) else {
        return;
    };
    let Ok(fut) = comp.detach() else {
        // A computation that borrows its arguments cannot outlive the call
        // (the macro requires owned arguments for `stale` and `refresh`).
        return;
    };
    let call = call.clone();
    let span = refresh_span(&call.p, &call.full);
    call.stack.clone().tasks.spawn(
        async move {
            let _guard = guard;
            call.p.counters.add(Count::Refresh);
            let Some(refresh_lease) = refresh_lease(&call).await else {
                return;
            };
            let Some(fence) = fence_now(&call).await else {
                return;
            };
            let good = reduce(&call, attempt(&call, fut, true).await);
            let ok = settle_value(&call, good, old, &fence).await.1;
            if !ok {
                call.p.counters.add(Count::RefreshFailed);
            }
            if let Some(key) = refresh_lease {
                let _ = call
                    .stack
                    .store
                    .compare_and_swap(&key.0, &key.1, Swap::Delete)
                    .await;
            }
        }
        .instrument(span),
    );
}

/// With `lock = true` on a shared store, the refresh lease of the key
/// (`Some(None)`: no lease needed; `None`: another process refreshes).
async fn refresh_lease<R, O, S>(
    call: &Call<O::Value, O, S>,
) -> Option<Option<(String, bytes::Bytes)>>
where
    O: Output<R>,
{
    if call.p.lock.is_none() || !matches!(call.place, Place::Remote(_)) {
        return Some(None);
    }
    let key = format!("{}#refresh", call.full);
    let marker = codec::lease_marker();
    let write = Write::new(
        key.clone(),
        marker.clone(),
        call.stack.lease_ttl(call.p.lock),
    );
    match call.stack.store.set_nx(&write).await {
        Ok(true) => Some(Some((key, marker))),
        Ok(false) => None,
        // Refresh anyway: a failing lease must not stop refreshes.
        Err(_) => Some(None),
    }
}

/// The fence of a refresh starting now; `None` if there is nothing to
/// refresh (the entry is gone or already fresh: a miss or another refresh
/// handled it).
async fn fence_now<R, O, S>(call: &Call<O::Value, O, S>) -> Option<Fence>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match &call.place {
        Place::Memory(memory) => {
            let tags: Vec<String> = call
                .p
                .tags
                .iter()
                .map(|t| call.stack.layout.tag_key(t))
                .collect();
            Some(Fence::Ticket(std::sync::Arc::new(
                memory.begin(&call.full, &tags),
            )))
        }
        Place::Process(map) => Some(Fence::Stamp(map.stamp(&call.full))),
        Place::Remote(_) => {
            let raw = call.stack.store.get(&call.full).await.ok()??;
            if codec::is_lease(&raw) {
                return None;
            }
            // Still the entry that asked for a refresh (not refreshed by
            // another process meanwhile)?
            let fresh = call
                .stack
                .envelope
                .decode(&call.full, &raw)
                .ok()
                .and_then(|e| e.meta.times)
                .is_some_and(|t| {
                    let now = call.stack.clock.now_ms();
                    now < t.soft_ms && !matches!(call.p.knobs.refresh, super::Refresh::Early { .. })
                });
            (!fresh).then_some(Fence::Bytes(raw))
        }
    }
}

/// Reduces a detached computation's outcome to its good value, if any,
/// before any `.await`: the task never holds the return type itself (which
/// need not be `Send`).
fn reduce<R, O, S>(call: &Call<O::Value, O, S>, outcome: Attempt<R>) -> Option<(O::Value, Duration)>
where
    O: Output<R>,
{
    match outcome {
        Attempt::Done(result, took) => {
            let value = (!call.output.failed(&result))
                .then(|| call.output.cacheable(&result).cloned())
                .flatten();
            value.map(|v| (v, took))
        }
        Attempt::Panicked(_) => {
            tracing::warn!(key = %call.full, "background computation panicked");
            None
        }
        Attempt::TimedOut => None,
    }
}

/// Settles a detached computation: stores a good value, or falls back to
/// `old` (fail-safe). Returns the value to serve and whether the
/// computation succeeded.
async fn settle_value<R, O, S>(
    call: &Call<O::Value, O, S>,
    good: Option<(O::Value, Duration)>,
    old: (O::Value, Option<Times>),
    fence: &Fence,
) -> (O::Value, bool)
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match good {
        Some((value, took)) => {
            store(call, &value, took, fence).await;
            (value, true)
        }
        None => {
            tracing::warn!(key = %call.full, "background computation failed; the last good value stays");
            if call.p.knobs.fail_safe.is_some() {
                fail_safe(call, old.0.clone(), old.1, fence).await;
            }
            (old.0, false)
        }
    }
}

/// Runs a computation that may outlive its caller: the caller waits at
/// most `soft`, then gets `old` while the computation goes on in the
/// background and stores its result.
pub(crate) async fn within_soft_timeout<R, O, S>(
    call: &Call<O::Value, O, S>,
    fut: BoxFuture<'static, R>,
    old: (O::Value, Option<Times>),
    (fence, lease): (Fence, Option<Lease>),
    soft: Duration,
    background: Refreshing,
) -> O::Value
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task_call = call.clone();
    let fallback = old.0.clone();
    call.stack.tasks.spawn(async move {
        // Other callers serve the fallback until this computation ends.
        let _background = background;
        let call = task_call;
        let work = async { reduce(&call, attempt(&call, fut, true).await) };
        let good = match &lease {
            Some(lease) => lease.hold(&call, work).await,
            None => work.await,
        };
        let (value, _) = settle_value(&call, good, old, &fence).await;
        if let Some(lease) = lease {
            // Whether a value replaced the marker is not known here: the
            // removal is a compare-and-swap, harmless if it did.
            lease.done(false);
        }
        let _ = tx.send(value);
    });
    match tokio::time::timeout(soft, rx).await {
        Ok(Ok(value)) => value,
        // The computation's task ended without an answer (the cache shut
        // down), or the soft timeout passed: the fallback serves.
        Ok(Err(_)) | Err(_) => {
            call.p.counters.add(Count::SoftTimeout);
            tracing::debug!(key = %call.full, timeout = ?soft, "soft timeout: serving the last good value while the computation goes on");
            fallback
        }
    }
}
