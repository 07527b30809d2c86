//! Reading an entry: in process as a decoded value (a lookup and a clone),
//! else from the shared store as bytes (decoded, and kept in the tier when
//! the call uses it), then classified by its times.

use bytes::Bytes;

use super::run::{Call, Place};
use super::{Output, Refresh, Storage};
use crate::codec::{self, Times};
use crate::local::Held;
use crate::stats::Count;
use crate::store::memory::Found;

/// What a lookup made of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A hit.
    Fresh,
    /// A hit that XFetch picked for early refresh.
    RefreshDue,
    /// Past its TTL, within its stale window: served while it refreshes.
    Stale,
    /// Past its TTL and stale window, within its fail-safe window: a
    /// fallback if the computation fails.
    Expired,
    /// Nothing usable.
    Miss,
    /// The store failed.
    Failed,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) struct Looked<V> {
    pub(crate) state: State,
    /// The value and its times, for every state but a miss.
    pub(crate) value: Option<(V, Option<Times>)>,
    /// Whether it came from in process.
    pub(crate) local: bool,
    /// On a shared store, the bytes at the key: the value, or another
    /// caller's lease marker. What a computation fences with.
    pub(crate) raw: Option<Bytes>,
}

impl<V> Looked<V> {
    fn miss(raw: Option<Bytes>) -> Self {
        Looked {
            state: State::Miss,
            value: None,
            local: false,
            raw,
        }
    }

    fn failed() -> Self {
        Looked {
            state: State::Failed,
            value: None,
            local: false,
            raw: None,
        }
    }
}

/// Reads the entry of `call`.
pub(crate) async fn lookup<R, O, S>(call: &Call<O::Value, O, S>) -> Looked<O::Value>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match &call.place {
        Place::Process(map) => {
            tokio::task::consume_budget().await;
            from_held(call, map.get(&call.full).map(|(h, _)| h), true)
        }
        Place::Memory(memory) => {
            // Never waits on I/O: spend the task's budget, so that a loop of
            // hits still yields to the other tasks of its worker.
            tokio::task::consume_budget().await;
            match memory.get_held(&call.full) {
                Found::Held(held) => from_held(call, Some(held), false),
                Found::Bytes(raw) => from_bytes(call, raw, false),
                Found::Absent => Looked::miss(None),
            }
        }
        Place::Remote(tier) => {
            if let Some(tier) = tier
                && let Some((held, _)) = tier.get(&call.full)
            {
                tokio::task::consume_budget().await;
                let looked = from_held(call, Some(held), true);
                // The tier serves hits only; anything else is asked of the
                // shared store, whose bytes fence the computation.
                if matches!(looked.state, State::Fresh | State::RefreshDue) {
                    return looked;
                }
            }
            remote(call, tier.as_deref()).await
        }
    }
}

/// Reads the entry of `call` where it is kept, past the tier: what a
/// computation that replaces it fences with.
pub(crate) async fn lookup_store<R, O, S>(call: &Call<O::Value, O, S>) -> Looked<O::Value>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    match &call.place {
        Place::Remote(_) => remote(call, None).await,
        _ => lookup(call).await,
    }
}

/// Reads the shared store, keeping what it finds in the tier.
async fn remote<R, O, S>(
    call: &Call<O::Value, O, S>,
    tier: Option<&crate::local::Tier>,
) -> Looked<O::Value>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    let store = &call.stack.store;
    let Some(tier) = tier else {
        return match store.get(&call.full).await {
            Ok(Some(raw)) => from_bytes(call, raw, true),
            Ok(None) => Looked::miss(None),
            Err(e) => failed(call, &e),
        };
    };
    let stamp = tier.stamp(&call.full);
    match store.get_with_ttl(&call.full).await {
        Ok(Some((raw, ttl))) => {
            let looked = from_bytes(call, raw, true);
            if looked.state == State::Fresh
                && let Some((value, times)) = &looked.value
            {
                let expires = match ttl {
                    crate::store::KeyTtl::Expires(d) => {
                        call.stack.clock.now_ms() + crate::clock::millis(d)
                    }
                    _ => u64::MAX,
                };
                let expires = times.map_or(expires, |t| expires.min(t.soft_ms));
                tier.keep(
                    &call.full,
                    held(call, value.clone(), *times),
                    expires,
                    stamp,
                );
            }
            looked
        }
        Ok(None) => Looked::miss(None),
        Err(e) => failed(call, &e),
    }
}

fn failed<R, O, S>(call: &Call<O::Value, O, S>, e: &crate::Error) -> Looked<O::Value>
where
    O: Output<R>,
{
    call.p.counters.add(Count::Error);
    tracing::warn!(key = %call.full, error = %e, "cache read failed; computing");
    Looked::failed()
}

/// A held value for the tier or the embedded store.
pub(crate) fn held<R, O, S>(
    call: &Call<O::Value, O, S>,
    value: O::Value,
    times: Option<Times>,
) -> Held
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    let encoder = S::payload_fn().map(|payload| crate::local::Encoder {
        payload,
        format: call.p.knobs.format,
        envelope: call.stack.envelope.clone(),
    });
    let weight = S::weight(&value);
    Held::new(value, times, weight, encoder, &call.p.tags)
}

fn from_held<R, O, S>(
    call: &Call<O::Value, O, S>,
    held: Option<Held>,
    local: bool,
) -> Looked<O::Value>
where
    O: Output<R>,
{
    let Some(held) = held else {
        return Looked::miss(None);
    };
    let Some(value) = held.get::<O::Value>() else {
        // Another function's value under the same key (two templates that
        // render alike): not ours, a miss.
        call.p.counters.add(Count::DecodeFailure);
        return Looked::miss(None);
    };
    classify(call, value.clone(), held.times(), local, None)
}

fn from_bytes<R, O, S>(call: &Call<O::Value, O, S>, raw: Bytes, remote: bool) -> Looked<O::Value>
where
    O: Output<R>,
    S: Storage<O::Value>,
{
    if codec::is_lease(&raw) {
        return Looked::miss(Some(raw));
    }
    let decoded = call
        .stack
        .envelope
        .decode(&call.full, &raw)
        .and_then(|entry| {
            if entry.codec != call.p.knobs.format.codec {
                return Err(crate::Error::Codec("written with another codec".into()));
            }
            Ok((S::decode(&entry.payload, entry.codec)?, entry.meta.times))
        });
    match decoded {
        Ok((value, times)) => classify(call, value, times, false, remote.then_some(raw)),
        Err(e) => {
            call.p.counters.add(Count::DecodeFailure);
            tracing::debug!(key = %call.full, error = %e, "undecodable cache entry; recomputing");
            Looked::miss(remote.then_some(raw))
        }
    }
}

/// Sorts a found value by its times.
fn classify<R, O, S>(
    call: &Call<O::Value, O, S>,
    value: O::Value,
    times: Option<Times>,
    local: bool,
    raw: Option<Bytes>,
) -> Looked<O::Value>
where
    O: Output<R>,
{
    let state = match times {
        None => State::Fresh,
        Some(t) => state_at(call, &value, t, call.stack.clock.now_ms()),
    };
    Looked {
        state,
        value: (state != State::Miss).then_some((value, times)),
        local,
        raw,
    }
}

fn state_at<R, O, S>(call: &Call<O::Value, O, S>, value: &O::Value, t: Times, now: u64) -> State
where
    O: Output<R>,
{
    let p = &call.p;
    if now >= t.hard_ms {
        return State::Miss;
    }
    if now >= t.soft_ms {
        let stale_until = t.soft_ms + p.knobs.stale.map_or(0, crate::clock::millis);
        // A cached failure (`cache_err`) is never served past its TTL.
        let good = !call.output.failure(value);
        return if good && p.knobs.stale.is_some() && now < stale_until {
            State::Stale
        } else if good && p.knobs.fail_safe.is_some() {
            State::Expired
        } else {
            State::Miss
        };
    }
    if let Refresh::Early { beta } = p.knobs.refresh {
        // XFetch: -ln(rand) is exponentially distributed, so the chance to
        // recompute rises as expiry nears, scaled by the computation time.
        let gap = f64::from(t.delta_ms) * beta * -(1.0 - fastrand::f64()).ln();
        if now as f64 + gap >= t.soft_ms as f64 {
            return State::RefreshDue;
        }
    }
    State::Fresh
}
