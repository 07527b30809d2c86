//! `#[cached]` on a plain (non-async) `fn`: process scope only, since a
//! shared store needs I/O and a sync function has nowhere to await it.
//!
//! The entry lives in the function's process-scope map, with the same key
//! templates, TTLs, hooks, single-flight (callers of one key block on its
//! leader) and invalidation as an async function; a panicking leader
//! releases its followers, and one of them computes.

use std::sync::Arc;

use super::miss::ttl_of;
use super::run::{Policy, computing_sync};
use super::{Hooks, Output, ProcessValue, Site};
use crate::flight::SyncJoined;
use crate::local::Held;
use crate::stats::Count;

/// The entry point of `#[cached]` on a sync function.
pub fn cached_sync<R, O, F>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    hooks: Hooks<O::Value>,
    compute: F,
) -> R
where
    O: Output<R>,
    O::Value: ProcessValue,
    F: FnOnce() -> R,
{
    let stack = crate::global::current_blocking();
    let p = Policy::of_site(site, &stack, tags, hooks);
    if stack.off.is_some() {
        return computing_sync(p.counters, compute);
    }
    let full = stack.layout.data_key(p.namespace, &key);
    let max_entries = match p.knobs.scope {
        super::Scope::Process { max_entries } => max_entries,
        super::Scope::Shared => super::DEFAULT_MAX_ENTRIES,
    };
    let map = stack.process_map(site as *const Site as usize, max_entries);
    let found = || {
        map.get(&full)
            .and_then(|(held, _)| held.get::<O::Value>().cloned())
    };
    if let Some(value) = found() {
        return super::run::hit(&p, None, true, output.restore(value));
    }
    {
        match stack.flights.join_sync(&full) {
            SyncJoined::Leader(leader) => {
                // A leader that just finished may have kept it.
                if let Some(value) = found() {
                    leader.finish(None);
                    return super::run::hit(&p, None, true, output.restore(value));
                }
                let stamp = map.stamp(&full);
                let started = std::time::Instant::now();
                let result = computing_sync(p.counters, compute);
                p.counters.add(Count::Miss);
                let kept = output.cacheable(&result).and_then(|value| {
                    let ttl = ttl_of(&p, output, value, |_| false)?;
                    let times = super::run::times_for(&stack, &p, ttl, started.elapsed());
                    let held = Held::new(
                        value.clone(),
                        times,
                        std::mem::size_of::<O::Value>(),
                        None,
                        &p.tags,
                    );
                    let expires = stack.clock.now_ms() + crate::clock::millis(ttl);
                    map.keep(&full, held, expires, stamp)
                        .then(|| Arc::new(value.clone()))
                });
                leader.finish(kept.map(|v| v as Arc<dyn std::any::Any + Send + Sync>));
                result
            }
            SyncJoined::Followed(Some(value)) => {
                if let Some(value) = value.downcast_ref::<O::Value>() {
                    return super::run::hit(&p, None, true, output.restore(value.clone()));
                }
                computing_sync(p.counters, compute)
            }
            SyncJoined::Followed(None) => {
                if let Some(value) = found() {
                    return super::run::hit(&p, None, true, output.restore(value));
                }
                // The leader kept nothing (an error, or it panicked): each
                // follower computes on its own, as async followers do.
                p.counters.add(Count::Miss);
                computing_sync(p.counters, compute)
            }
        }
    }
}
