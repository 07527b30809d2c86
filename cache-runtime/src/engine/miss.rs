//! A miss: one computation per key in the process (single-flight), fenced
//! so that it never stores a result after an invalidation of its key, and
//! shielded by fail-safe and timeouts.
//!
//! # Fencing on a shared store (memcache leases)
//!
//! A computation takes its token before it reads its source, and its store
//! is a compare-and-swap against that token:
//!
//! * the key is absent: the leader puts a lease marker at the key
//!   (`SET NX`, listed in the entry's tags like the entry will be), renews
//!   it while computing, and stores only if the marker is still there;
//! * another process's marker is there: with `lock = true` the leader waits
//!   for that process's value; otherwise it computes too and fences with
//!   the marker it saw;
//! * an old value is there (expired, undecodable): the leader fences with
//!   those bytes.
//!
//! Every invalidation deletes what it names: a key, the keys matching a
//! pattern (`SCAN` finds markers, which are keys), the keys listed in a
//! tag (markers are listed before the computation starts). So a store
//! whose token is gone was preceded by an invalidation, and is dropped.
//! Namespaces move to a new generation instead: a late store lands under
//! the old one, where nobody reads. The cost on a miss is one round trip
//! (the `SET NX`; the store is a script in place of a `SET`, and a marker
//! that a value replaced needs no removal); on a hit, nothing.
//!
//! In process (the embedded store, process scope) the token is a stamp of
//! the map's versions (see `fence`).

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;

use super::lookup::{Looked, State, held, lookup};
use super::run::{Call, Fence, Place, computing, hit, times_for};
use super::{Computation, Output, Storage, unstorable};
use crate::codec::{self, Meta, Times};
use crate::flight::{self, Joined, Outcome};
use crate::stats::Count;
use crate::store::{Swap, Write};

/// How a computation ended.
pub(crate) enum Attempt<R> {
    /// It returned, after this long.
    Done(R, Duration),
    /// It panicked.
    Panicked(Box<dyn Any + Send>),
    /// `hard_timeout` abandoned it.
    TimedOut,
}

/// A miss of `call`: lead the key's flight, or follow it.
pub(crate) async fn miss<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    comp: C,
    mut looked: Looked<O::Value>,
    ended: u64,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    loop {
        match call.stack.flights.join(&call.full, &tag_keys(call)) {
            Joined::Leader(leader) => {
                // Another leader may have stored the entry since our read;
                // if no flight ended since, none did, and a second read
                // would only cost a round trip.
                if looked.state != State::Failed && call.stack.flights.ended() != ended {
                    let again = lookup(call).await;
                    if matches!(again.state, State::Fresh | State::RefreshDue | State::Stale) {
                        let (value, _) = again.value.expect("a hit has a value");
                        leader.finish(Outcome::Value(Arc::new(value.clone())));
                        return hit(&call.p, None, false, call.output.restore(value));
                    }
                    looked = again;
                }
                let (value, outcome) = lead_flight(call, comp, looked).await;
                leader.finish(outcome);
                return value;
            }
            Joined::Follower(rx) => match flight::follow(rx).await {
                Some(Outcome::Value(value)) => {
                    if let Some(value) = value.downcast_ref::<O::Value>() {
                        return call.output.restore(value.clone());
                    }
                    return computing(call.p.counters, comp.start()).await;
                }
                Some(Outcome::Uncached | Outcome::Running) => {
                    return computing(call.p.counters, comp.start()).await;
                }
                // The leader was cancelled: start over, one of us leads.
                None => {
                    looked = lookup(call).await;
                    if matches!(
                        looked.state,
                        State::Fresh | State::RefreshDue | State::Stale
                    ) {
                        let (value, _) = looked.value.expect("a hit has a value");
                        return call.output.restore(value);
                    }
                    continue;
                }
            },
        }
    }
}

/// The leader's work, and what its followers get.
async fn lead_flight<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    comp: C,
    looked: Looked<O::Value>,
) -> (R, Outcome)
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let result = lead(call, comp, Some(looked), false).await;
    let outcome = match call.output.cacheable(&result) {
        Some(v) if !call.output.failure(v) => Outcome::Value(Arc::new(v.clone())),
        _ => Outcome::Uncached,
    };
    (result, outcome)
}

/// Fences, computes, stores: the work of a leader (or of a forced refresh,
/// which computes whatever is cached).
pub(crate) async fn lead<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    comp: C,
    looked: Option<Looked<O::Value>>,
    forced: bool,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let looked = match looked {
        Some(looked) => looked,
        // A forced refresh fences with what the store holds, not the tier.
        None => super::lookup::lookup_store(call).await,
    };
    let fallback = match looked.state {
        State::Expired | State::Stale if !forced => looked.value.clone(),
        _ => None,
    };
    // With a fallback and a soft timeout, a computation of this key that
    // an earlier caller left running in the background (or a background
    // refresh) is the one computation: the fallback serves at once, rather
    // than start another and wait the soft timeout again.
    let background = match (&fallback, call.p.knobs.soft_timeout) {
        (Some((old, _)), Some(_)) => match call.stack.flights.refreshing(&call.stack, &call.full) {
            Some(guard) => Some(guard),
            None => {
                call.p.counters.add(Count::SoftTimeout);
                return call.output.restore(old.clone());
            }
        },
        _ => None,
    };
    let (fence, lease) = match take_fence(call, &looked).await {
        Ok(fenced) => fenced,
        Err(found) => {
            let (value, _) = found.value.expect("a hit has a value");
            return hit(&call.p, None, found.local, call.output.restore(value));
        }
    };
    let (Some(old), Some(soft), Some(background)) =
        (&fallback, call.p.knobs.soft_timeout, background)
    else {
        return run_inline(call, comp, fallback, fence, lease).await;
    };
    match comp.detach() {
        Ok(fut) => {
            let value = super::refresh::within_soft_timeout(
                call,
                fut,
                old.clone(),
                (fence, lease),
                soft,
                background,
            )
            .await;
            call.output.restore(value)
        }
        Err(comp) => run_inline(call, comp, fallback, fence, lease).await,
    }
}

/// Runs the computation in the caller's future and settles it.
async fn run_inline<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    comp: C,
    fallback: Option<(O::Value, Option<Times>)>,
    fence: Fence,
    lease: Option<Lease>,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let attempt = match &lease {
        Some(lease) => {
            lease
                .hold(call, attempt(call, comp.start(), fallback.is_some()))
                .await
        }
        None => attempt(call, comp.start(), fallback.is_some()).await,
    };
    let (settled, replaced) = settle(call, attempt, fallback, &fence).await;
    if let Some(lease) = lease {
        lease.done(replaced);
    }
    settled
}

/// Runs a computation under the policy's hard timeout (when the call can
/// answer without the result: a fallback, or an error type that can say
/// it timed out), catching a panic when fail-safe could replace it.
pub(crate) async fn attempt<R, O, S, F>(
    call: &Call<O::Value, O, S>,
    fut: F,
    has_fallback: bool,
) -> Attempt<R>
where
    O: Output<R>,
    F: std::future::Future<Output = R>,
{
    let p = &call.p;
    let started = Instant::now();
    let fut = computing(p.counters, fut);
    let timeout = p
        .knobs
        .hard_timeout
        .filter(|_| has_fallback || call.output.elapsed().is_some());
    let caught = async {
        if has_fallback {
            match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                Ok(value) => Attempt::Done(value, started.elapsed()),
                Err(panic) => Attempt::Panicked(panic),
            }
        } else {
            Attempt::Done(fut.await, started.elapsed())
        }
    };
    match timeout {
        Some(limit) => match tokio::time::timeout(limit, caught).await {
            Ok(attempt) => attempt,
            Err(_) => {
                p.counters.add(Count::HardTimeout);
                tracing::warn!(key = %call.full, timeout = ?limit, "computation abandoned at its hard timeout");
                Attempt::TimedOut
            }
        },
        None => caught.await,
    }
}

/// Turns an attempt into the caller's answer: stores a good value,
/// or serves the fallback in place of a failure (fail-safe).
async fn settle<R, O, S>(
    call: &Call<O::Value, O, S>,
    attempt: Attempt<R>,
    fallback: Option<(O::Value, Option<Times>)>,
    fence: &Fence,
) -> (R, bool)
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match attempt {
        Attempt::Done(result, took) => {
            if call.output.failed(&result)
                && let Some((value, times)) = fallback
            {
                let replaced = fail_safe(call, value.clone(), times, fence).await;
                return (call.output.restore(value), replaced);
            }
            let stored = match call.output.cacheable(&result) {
                Some(value) => store(call, value, took, fence).await,
                None => false,
            };
            (result, stored)
        }
        Attempt::Panicked(panic) => match fallback {
            Some((value, times)) => {
                tracing::warn!(key = %call.full, "computation panicked; serving the last good value");
                let replaced = fail_safe(call, value.clone(), times, fence).await;
                (call.output.restore(value), replaced)
            }
            None => std::panic::resume_unwind(panic),
        },
        Attempt::TimedOut => match fallback {
            Some((value, times)) => {
                let replaced = fail_safe(call, value.clone(), times, fence).await;
                (call.output.restore(value), replaced)
            }
            None => (
                call.output
                    .elapsed()
                    .expect("a hard timeout applies only when it can answer"),
                false,
            ),
        },
    }
}

/// Serves the last good value for a failed computation: counts it, and
/// reuses the value as fresh for the throttle, so that no caller retries
/// the source meanwhile (in any process, on a shared store).
pub(crate) async fn fail_safe<R, O, S>(
    call: &Call<O::Value, O, S>,
    value: O::Value,
    times: Option<Times>,
    fence: &Fence,
) -> bool
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    call.p.counters.add(Count::FailSafe);
    tracing::warn!(key = %call.full, throttle = ?call.p.throttle, "computation failed; serving the last good value (fail-safe)");
    let now = call.stack.clock.now_ms();
    let hard = times.map_or(now + crate::clock::millis(call.p.grace()), |t| t.hard_ms);
    let throttled = Times {
        soft_ms: (now + crate::clock::millis(call.p.throttle)).min(hard),
        hard_ms: hard,
        delta_ms: times.map_or(0, |t| t.delta_ms),
    };
    if throttled.soft_ms <= now {
        return false;
    }
    let ttl = Duration::from_millis(hard.saturating_sub(now));
    write(call, &value, Some(throttled), ttl, fence).await
}

/// Stores a computed value, if the policy keeps it and no invalidation
/// came since the computation started. Returns whether it did.
pub(crate) async fn store<R, O, S>(
    call: &Call<O::Value, O, S>,
    value: &O::Value,
    took: Duration,
    fence: &Fence,
) -> bool
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    let Some(ttl) = ttl_of(&call.p, call.output, value, S::is_null) else {
        return false;
    };
    let times = times_for(&call.stack, &call.p, ttl, took);
    let store_ttl = ttl
        + if call.output.failure(value) {
            Duration::ZERO
        } else {
            call.p.grace()
        };
    write(call, value, times, store_ttl, fence).await
}

/// The TTL of a value, or `None` if the policy does not store it.
pub(crate) fn ttl_of<R, O: Output<R>>(
    p: &super::run::Policy<O::Value>,
    output: O,
    value: &O::Value,
    is_null: fn(&O::Value) -> bool,
) -> Option<Duration> {
    if !p.knobs.cache_none && is_null(value) {
        return None;
    }
    if p.hooks.unless.is_some_and(|unless| unless(value)) {
        return None;
    }
    let mut ttl = match (output.failure(value), p.knobs.cache_err) {
        (true, Some(ttl)) => ttl,
        (true, None) => return None,
        (false, _) => match p.hooks.ttl_from {
            Some(ttl_from) => ttl_from(value),
            None => p.ttl,
        },
    };
    if ttl.is_zero() {
        return None;
    }
    if p.jitter > 0 {
        let cut = f64::from(p.jitter.min(100)) / 100.0 * fastrand::f64();
        ttl = ttl.mul_f64(1.0 - cut).max(Duration::from_millis(1));
    }
    Some(ttl)
}

/// Writes a value where the call keeps it, fenced.
async fn write<R, O, S>(
    call: &Call<O::Value, O, S>,
    value: &O::Value,
    times: Option<Times>,
    ttl: Duration,
    fence: &Fence,
) -> bool
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    let stamp = match fence {
        Fence::Stamp(stamp) => Some(*stamp),
        Fence::Ticket(ticket) => Some(ticket.stamp),
        Fence::Unfenced => return false,
        Fence::Bytes(_) => None,
    };
    let stored = match (&call.place, stamp) {
        (Place::Memory(memory), Some(stamp)) => {
            let tags: Vec<String> = call
                .p
                .tags
                .iter()
                .map(|t| call.stack.layout.tag_key(t))
                .collect();
            let held = held(call, value.clone(), times);
            memory.put_held(&call.full, held, ttl, &tags, stamp).unwrap_or_else(|e| {
                call.p.counters.add(Count::Error);
                tracing::warn!(key = %call.full, error = %e, "cache write failed; value returned uncached");
                false
            })
        }
        (Place::Process(map), Some(stamp)) => {
            let expires = call.stack.clock.now_ms() + crate::clock::millis(ttl);
            map.keep(&call.full, held(call, value.clone(), times), expires, stamp)
        }
        (Place::Remote(tier), _) => {
            write_remote(call, tier.as_deref(), value, times, ttl, fence).await
        }
        _ => false,
    };
    if !stored {
        call.p.counters.add(Count::Fenced);
    }
    stored
}

/// Writes to the shared store with a compare-and-swap against the fence,
/// then keeps a copy in the tier.
async fn write_remote<R, O, S>(
    call: &Call<O::Value, O, S>,
    tier: Option<&crate::local::Tier>,
    value: &O::Value,
    times: Option<Times>,
    ttl: Duration,
    fence: &Fence,
) -> bool
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    let Fence::Bytes(expected) = fence else {
        return false;
    };
    let raw = match S::encode(value, call.p.knobs.format.codec).and_then(|payload| {
        let meta = Meta {
            times,
            indexes: Vec::new(),
        };
        call.stack
            .envelope
            .frame(&call.full, payload, call.p.knobs.format, &meta)
    }) {
        Ok(raw) => raw,
        Err(e) => {
            unstorable(call.p.counters, call.p.site, &call.full, &e.to_string());
            return true;
        }
    };
    let stamp = tier.map(|t| t.stamp(&call.full));
    let swap = Swap::Set {
        value: raw,
        ttl,
        member_of: call
            .p
            .tags
            .iter()
            .map(|t| call.stack.layout.tag_key(t))
            .collect(),
    };
    match call
        .stack
        .store
        .compare_and_swap(&call.full, expected, swap)
        .await
    {
        Ok(true) => {
            if let (Some(tier), Some(stamp)) = (tier, stamp) {
                let expires = times
                    .map_or(call.stack.clock.now_ms() + crate::clock::millis(ttl), |t| {
                        t.soft_ms
                    });
                tier.keep(&call.full, held(call, value.clone(), times), expires, stamp);
            }
            true
        }
        Ok(false) => {
            tracing::debug!(key = %call.full, "an invalidation came first; result not stored");
            false
        }
        Err(e) => {
            call.p.counters.add(Count::Error);
            tracing::warn!(key = %call.full, error = %e, "cache write failed; value returned uncached");
            true
        }
    }
}

/// The token a computation fences with, taken before it starts; or a hit
/// found meanwhile (another process's value, with `lock = true`).
async fn take_fence<R, O, S>(
    call: &Call<O::Value, O, S>,
    looked: &Looked<O::Value>,
) -> Result<(Fence, Option<Lease>), Looked<O::Value>>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match &call.place {
        Place::Memory(memory) => {
            let ticket = memory.begin(&call.full, &tag_keys(call));
            return Ok((Fence::Ticket(Arc::new(ticket)), None));
        }
        Place::Process(map) => return Ok((Fence::Stamp(map.stamp(&call.full)), None)),
        Place::Remote(_) => {}
    }
    if looked.state == State::Failed {
        return Ok((Fence::Unfenced, None));
    }
    let mut seen = looked.raw.clone();
    let give_up =
        Instant::now() + (call.stack.lease_ttl(call.p.lock) * 4).max(Duration::from_secs(10));
    let mut wait = Duration::from_millis(5);
    loop {
        match seen {
            Some(raw) if !codec::is_lease(&raw) => return Ok((Fence::Bytes(raw), None)),
            Some(marker) if call.p.lock.is_none() || Instant::now() >= give_up => {
                return Ok((Fence::Bytes(marker), None));
            }
            Some(_) => {
                // `lock = true`: another process computes; wait for its value.
                tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64())).await;
                wait = (wait * 2).min(Duration::from_millis(100));
                let again = lookup(call).await;
                match again.state {
                    State::Fresh | State::RefreshDue | State::Stale => return Err(again),
                    State::Failed => return Ok((Fence::Unfenced, None)),
                    _ => seen = again.raw,
                }
            }
            None => match Lease::take(call).await {
                Ok(Some(lease)) => return Ok((Fence::Bytes(lease.marker.clone()), Some(lease))),
                Ok(None) => {
                    let again = lookup(call).await;
                    match again.state {
                        State::Fresh | State::RefreshDue | State::Stale => return Err(again),
                        State::Failed => return Ok((Fence::Unfenced, None)),
                        // Gone again (an invalidation, an expiry): compute
                        // unfenced rather than loop.
                        _ if again.raw.is_none() => return Ok((Fence::Unfenced, None)),
                        _ => seen = again.raw,
                    }
                }
                Err(e) => {
                    tracing::debug!(key = %call.full, error = %e, "lease unavailable; computing without storing");
                    return Ok((Fence::Unfenced, None));
                }
            },
        }
    }
}

/// The store keys of a call's tags.
fn tag_keys<R, O: Output<R>, S>(call: &Call<O::Value, O, S>) -> Vec<String> {
    call.p
        .tags
        .iter()
        .map(|t| call.stack.layout.tag_key(t))
        .collect()
}

/// A lease marker this process put at a key: renewed while the
/// computation runs, removed if it ends without storing (or is dropped).
pub(crate) struct Lease {
    stack: Arc<crate::stack::Stack>,
    key: String,
    pub(crate) marker: Bytes,
    ttl: Duration,
    done: bool,
}

impl Lease {
    /// Puts a marker at the key, listed in the entry's tags, if it is
    /// absent.
    async fn take<R, O, S>(call: &Call<O::Value, O, S>) -> crate::Result<Option<Lease>>
    where
        O: Output<R>,
    {
        let ttl = call.stack.lease_ttl(call.p.lock);
        let marker = codec::lease_marker();
        let write = Write {
            key: call.full.clone(),
            value: marker.clone(),
            ttl,
            member_of: call
                .p
                .tags
                .iter()
                .map(|t| call.stack.layout.tag_key(t))
                .collect(),
        };
        let taken = call.stack.store.set_nx(&write).await?;
        Ok(taken.then(|| Lease {
            stack: call.stack.clone(),
            key: call.full.clone(),
            marker,
            ttl,
            done: false,
        }))
    }

    /// Runs `work` while renewing the marker every third of its TTL.
    pub(crate) async fn hold<R, O, S, F: std::future::Future>(
        &self,
        call: &Call<O::Value, O, S>,
        work: F,
    ) -> F::Output
    where
        O: Output<R>,
    {
        let mut work = std::pin::pin!(work);
        let every = (self.ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(every) => {
                    let renewed = call.stack.store
                        .compare_and_swap(&self.key, &self.marker, Swap::Expire(self.ttl))
                        .await;
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => tracing::debug!(key = %self.key, "lease gone while computing (an invalidation); the result will not be stored"),
                        Err(e) => tracing::debug!(key = %self.key, error = %e, "lease renewal failed"),
                    }
                }
            }
        }
    }

    /// The computation ended. `replaced`: a value took the marker's place
    /// (the fenced store succeeded), so there is nothing to remove; else a
    /// marker still there is removed in the background.
    pub(crate) fn done(mut self, replaced: bool) {
        if replaced {
            self.done = true;
        }
        self.release();
    }

    fn release(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (stack, key, marker) = (self.stack.clone(), self.key.clone(), self.marker.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = stack
                    .store
                    .compare_and_swap(&key, &marker, Swap::Delete)
                    .await;
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A leader cancelled mid-computation frees the key at once, rather
        // than leave other processes waiting for the marker to expire.
        self.release();
    }
}
