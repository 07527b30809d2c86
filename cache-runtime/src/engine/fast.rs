//! The hit path of a cached function when its entry is held in process
//! (the embedded store, or the tier in front of a shared store) and fresh:
//! a borrow of this thread's copy of the cache, a lookup, a downcast and a
//! clone, with no I/O, no allocation of the engine's call state and no
//! reference count moved. Anything else (a miss, a stale entry, a
//! namespace to resolve, an isolated test cache) takes the full path.

use std::borrow::Cow;
use std::time::Instant;

use super::{Output, Refresh, Scope, Site};
use crate::key;
use crate::stats::Count;
use crate::store::memory::Found;

/// The value of `site`'s fresh in-process entry at `key`, counted as a hit.
#[inline]
pub(crate) fn hit<R, O: Output<R>>(site: &'static Site, key: &str, output: O) -> Option<R> {
    if site.namespace.is_some() || site.knobs.scope != Scope::Shared || super::run::forced() {
        return None;
    }
    // The sampling decision is only taken (counted) if this path serves
    // the call: otherwise the full path takes it.
    let started = crate::stats::next_sampled().then(Instant::now);
    crate::global::with_local(|stack| {
        if stack.off.is_some() {
            return None;
        }
        // Only a store or tier in process can serve here: a shared store
        // without its tier goes straight to the full path.
        let tier = match &stack.memory {
            Some(_) => None,
            None if site.knobs.local || stack.config.local.all => Some(stack.tier.as_ref()?),
            None => return None,
        };
        let full: Cow<'_, str> = if stack.layout.prefix().is_empty() && !key::needs_hashing(key) {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(stack.layout.data_key(None, key))
        };
        let (held, local) = match (&stack.memory, tier) {
            (Some(memory), _) => match memory.get_held(&full) {
                Found::Held(held) => (held, false),
                Found::Bytes(_) | Found::Absent => return None,
            },
            (None, Some(tier)) => (tier.get(&full)?.0, true),
            (None, None) => return None,
        };
        let value = held.get::<O::Value>()?;
        if let Some(times) = held.times()
            && (stack.clock.now_ms() >= times.soft_ms
                || matches!(site.knobs.refresh, Refresh::Early { .. }))
        {
            // Stale, or maybe due for early refresh: the full path decides.
            return None;
        }
        crate::stats::count_call();
        let counters = stack.counters(&site.counters);
        counters.add(Count::Hit);
        if local {
            counters.add(Count::LocalHit);
        }
        if let Some(started) = started {
            counters.latency(true, started.elapsed());
        }
        Some(output.restore(value.clone()))
    })
}
