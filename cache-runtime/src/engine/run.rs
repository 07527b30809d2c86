//! One call through the engine: the policy of the call, where its entry
//! lives, and the dispatch between a hit, a served-while-refreshing hit,
//! and a miss.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;

use super::lookup::{Looked, State, lookup};
use super::{Computation, Hooks, Knobs, Output, Refresh, Scope, Site, Storage};
use crate::bus::Event;
use crate::codec::Times;
use crate::error::Result;
use crate::fence::{Stamp, Ticket};
use crate::global::current;
use crate::local::{LocalMap, Tier};
use crate::stack::{Off, Stack};
use crate::stats::{Count, Counters};
use crate::store::memory::MemoryStore;

/// The policy of one call: a function's (or a `CacheOptions`') knobs,
/// with what the configuration fills in resolved.
#[derive(Debug)]
pub(crate) struct Policy<V> {
    pub(crate) counters: &'static Counters,
    pub(crate) site: Option<&'static Site>,
    pub(crate) namespace: Option<&'static str>,
    pub(crate) tags: Vec<String>,
    pub(crate) hooks: Hooks<V>,
    pub(crate) knobs: Knobs,
    pub(crate) ttl: Duration,
    pub(crate) lock: Option<Duration>,
    pub(crate) throttle: Duration,
    pub(crate) jitter: u8,
}

impl<V> Clone for Policy<V> {
    fn clone(&self) -> Self {
        Policy {
            tags: self.tags.clone(),
            ..*self
        }
    }
}

impl<V> Policy<V> {
    /// Resolves `knobs` against `config`.
    pub(crate) fn resolve(
        counters: &'static Counters,
        site: Option<&'static Site>,
        namespace: Option<&'static str>,
        knobs: Knobs,
        config: &crate::Config,
        tags: Vec<String>,
        hooks: Hooks<V>,
    ) -> Self {
        Policy {
            counters,
            site,
            namespace,
            tags,
            hooks,
            ttl: knobs.ttl.unwrap_or(config.default_ttl),
            lock: knobs.lock.map(|ttl| ttl.unwrap_or(config.lease_ttl)),
            throttle: knobs
                .fail_safe_throttle
                .unwrap_or(config.fail_safe_throttle),
            jitter: knobs.jitter.unwrap_or(config.jitter),
            knobs,
        }
    }

    /// A plain get-or-compute in `namespace`: JSON, no refresh, no lock.
    pub(crate) fn plain(
        counters: &'static Counters,
        ttl: Duration,
        namespace: Option<&'static str>,
        config: &crate::Config,
    ) -> Self {
        let knobs = Knobs {
            ttl: Some(ttl),
            ..Knobs::DEFAULT
        };
        Self::resolve(
            counters,
            None,
            namespace,
            knobs,
            config,
            Vec::new(),
            Hooks::NONE,
        )
    }

    /// The policy of a call of `site`.
    pub(crate) fn of_site(
        site: &'static Site,
        stack: &Stack,
        tags: Vec<String>,
        hooks: Hooks<V>,
    ) -> Self {
        let counters = stack.counters(&site.counters);
        Self::resolve(
            counters,
            Some(site),
            site.namespace,
            site.knobs,
            &stack.config,
            tags,
            hooks,
        )
    }

    /// Whether entries carry their times (soft and hard expiry, the
    /// computation's duration).
    pub(crate) fn keeps_times(&self, stack: &Stack) -> bool {
        self.knobs.stale.is_some()
            || self.knobs.fail_safe.is_some()
            || matches!(self.knobs.refresh, Refresh::Early { .. })
            || stack.clock.is_virtual()
    }

    /// How long past the TTL an entry is kept: for stale serving or
    /// fail-safe.
    pub(crate) fn grace(&self) -> Duration {
        self.knobs
            .stale
            .unwrap_or_default()
            .max(self.knobs.fail_safe.unwrap_or_default())
    }
}

/// How a computation that started before an invalidation is kept from
/// storing its result after it.
#[derive(Debug, Clone)]
pub(crate) enum Fence {
    /// A shared store: the bytes at the key when the computation started
    /// (a lease marker, or the value being refreshed); the store is a
    /// compare-and-swap against them.
    Bytes(Bytes),
    /// An in-process map: a stamp of its versions.
    Stamp(Stamp),
    /// The embedded store: a registered stamp (see `fence`).
    Ticket(Arc<Ticket>),
    /// Nothing to fence with (the store failed): do not store.
    Unfenced,
}

/// Where one call's entry lives.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    /// The embedded store, as decoded values.
    Memory(Arc<MemoryStore>),
    /// A process-scope function's own map.
    Process(Arc<LocalMap>),
    /// A shared store, maybe with the tier in front.
    Remote(Option<Arc<Tier>>),
}

impl Place {
    pub(crate) fn of<V>(stack: &Stack, p: &Policy<V>) -> Place {
        if let Scope::Process { max_entries } = p.knobs.scope {
            let site = p.site.map_or(0, |s| s as *const Site as usize);
            return Place::Process(stack.process_map(site, max_entries));
        }
        // Injected faults (`testing::faults`) reach the embedded store
        // through its byte operations, which the fault layer wraps.
        if let Some(memory) = &stack.memory
            && !stack.faults.as_ref().is_some_and(|f| f.injecting())
        {
            return Place::Memory(memory.clone());
        }
        let tiered = p.knobs.local || stack.config.local.all;
        Place::Remote(stack.tier.clone().filter(|_| tiered))
    }
}

/// Everything one call carries: the stack, its policy, its store key.
pub(crate) struct Call<V, O, S> {
    pub(crate) stack: Arc<Stack>,
    pub(crate) p: Policy<V>,
    pub(crate) full: String,
    pub(crate) output: O,
    pub(crate) storage: S,
    pub(crate) place: Place,
}

impl<V, O: Copy, S: Copy> Clone for Call<V, O, S> {
    fn clone(&self) -> Self {
        Call {
            stack: self.stack.clone(),
            p: self.p.clone(),
            full: self.full.clone(),
            output: self.output,
            storage: self.storage,
            place: self.place.clone(),
        }
    }
}

tokio::task_local! {
    static FORCE_REFRESH: bool;
}

/// Runs a cached call as a forced refresh: it computes and stores whatever
/// is cached. Calls it makes itself are not forced.
pub async fn force_refresh<F: Future>(call: F) -> F::Output {
    FORCE_REFRESH.scope(true, call).await
}

pub(crate) fn forced() -> bool {
    FORCE_REFRESH.try_with(|f| *f).unwrap_or(false)
}

/// Counts a computation; cached calls inside it are not forced.
pub(crate) async fn computing<F: Future>(counters: &'static Counters, fut: F) -> F::Output {
    counters.add(Count::Computation);
    FORCE_REFRESH.scope(false, fut).await
}

/// Counts a computation of a sync function.
pub(crate) fn computing_sync<R>(counters: &'static Counters, f: impl FnOnce() -> R) -> R {
    counters.add(Count::Computation);
    f()
}

/// Runs the policy for one call. Never fails: the cache is an optimization.
pub(crate) async fn run<R, O, S, C>(
    stack: Arc<Stack>,
    p: Policy<O::Value>,
    key: String,
    output: O,
    storage: S,
    comp: C,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let started = crate::stats::sample_latency().then(Instant::now);
    if let Some(off) = &stack.off {
        if let Off::Broken(_) = off {
            p.counters.add(Count::Error);
        }
        return computing(p.counters, comp.start()).await;
    }
    let full = match full_key(&stack, &p, key).await {
        Ok(full) => full,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(namespace = p.namespace, error = %e, "cache unavailable; computing");
            return computing(p.counters, comp.start()).await;
        }
    };
    let place = Place::of(&stack, &p);
    let call = Call {
        stack,
        p,
        full,
        output,
        storage,
        place,
    };
    if forced() {
        call.p.counters.add(Count::Refresh);
        let span = refresh_span(&call.p, &call.full);
        return Box::pin(super::miss::lead(&call, comp, None, true).instrument(span)).await;
    }
    let ended = call.stack.flights.ended();
    let looked = lookup(&call).await;
    dispatch(&call, looked, comp, started, ended).await
}

/// The store key of a call: with its prefix and namespace. Process-scope
/// keys never carry a generation: their namespaces are invalidated by
/// pattern, so that sync functions need no I/O.
async fn full_key<V>(stack: &Stack, p: &Policy<V>, key: String) -> Result<String> {
    match (p.knobs.scope, p.namespace) {
        (Scope::Process { .. }, ns) => Ok(stack.layout.data_key(ns, &key)),
        (Scope::Shared, ns) => stack.store_key(ns, key).await,
    }
}

async fn dispatch<R, O, S, C>(
    call: &Call<O::Value, O, S>,
    looked: Looked<O::Value>,
    comp: C,
    started: Option<Instant>,
    ended: u64,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    match looked.state {
        State::Fresh | State::RefreshDue | State::Stale => {
            let (value, times) = looked.value.expect("a hit has a value");
            if looked.state != State::Fresh {
                if looked.state == State::Stale {
                    call.p.counters.add(Count::StaleHit);
                }
                super::refresh::spawn(call, comp, (value.clone(), times));
            }
            hit(&call.p, started, looked.local, call.output.restore(value))
        }
        State::Expired | State::Miss | State::Failed => {
            let span = tracing::debug_span!("cachekit.miss", key = %call.full, namespace = call.p.namespace);
            // Boxed: the miss path's state is large, and inline it would
            // make every call's future (a hit's too) that large, to be
            // copied wherever the future moves. A miss pays one allocation
            // beside its round trips.
            let value =
                Box::pin(super::miss::miss(call, comp, looked, ended).instrument(span)).await;
            miss(&call.p, started, value)
        }
    }
}

/// The span of a refresh (forced, early or of a stale entry).
pub(crate) fn refresh_span<V>(p: &Policy<V>, full: &str) -> tracing::Span {
    tracing::debug_span!("cachekit.refresh", key = %full, namespace = p.namespace)
}

/// Counts a call served without computing.
pub(crate) fn hit<R, V>(p: &Policy<V>, started: Option<Instant>, local: bool, value: R) -> R {
    p.counters.add(Count::Hit);
    if local {
        p.counters.add(Count::LocalHit);
    }
    if let Some(started) = started {
        p.counters.latency(true, started.elapsed());
    }
    value
}

/// Counts a call that computed (or got a fallback instead).
fn miss<R, V>(p: &Policy<V>, started: Option<Instant>, value: R) -> R {
    p.counters.add(Count::Miss);
    if let Some(started) = started {
        p.counters.latency(false, started.elapsed());
    }
    value
}

/// The entry point of `#[cached]` with a computation that borrows the
/// arguments.
pub async fn get_or_compute<R, O, F>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    compute: F,
) -> R
where
    R: 'static,
    O: Output<R>,
    O::Value: super::CacheValue,
    F: Future<Output = R>,
{
    cached(site, key, tags, output, Hooks::NONE, super::Inline(compute)).await
}

/// A fresh in-process hit, served without entering the engine: the budget
/// spent so that a loop of hits still yields to the worker's other tasks.
async fn fast_hit<R, O: Output<R>>(site: &'static Site, key: &str, output: O) -> Option<R> {
    let hit = super::fast::hit(site, key, output)?;
    tokio::task::consume_budget().await;
    Some(hit)
}

/// The entry point of `#[cached]`: with hooks, and any computation
/// ([`Inline`](super::Inline) or [`Owned`](super::Owned)).
pub async fn cached<R, O, C>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    hooks: Hooks<O::Value>,
    comp: C,
) -> R
where
    R: 'static,
    O: Output<R>,
    O::Value: super::CacheValue,
    C: Computation<R>,
{
    if let Some(hit) = fast_hit(site, &key, output).await {
        return hit;
    }
    // Not boxed: a box of the engine's state costs a Redis hit more (about
    // 680 instructions, callgrind) than moving it does. The miss path
    // within it is boxed (see `dispatch`).
    of_site(site, key, tags, output, hooks, super::Serde, comp).await
}

/// The entry point of `#[cached(scope = "process")]` on an `async fn`.
pub async fn cached_process<R, O, C>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    hooks: Hooks<O::Value>,
    comp: C,
) -> R
where
    R: 'static,
    O: Output<R>,
    O::Value: super::ProcessValue,
    C: Computation<R>,
{
    of_site(site, key, tags, output, hooks, super::Opaque, comp).await
}

/// Runs a call of `site` through the engine.
async fn of_site<R, O, S, C>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    hooks: Hooks<O::Value>,
    storage: S,
    comp: C,
) -> R
where
    R: 'static,
    O: Output<R>,
    S: Storage<O::Value>,
    C: Computation<R>,
{
    let stack = current().await;
    let p = Policy::of_site(site, &stack, tags, hooks);
    run(stack, p, key, output, storage, comp).await
}

/// The entry of a cached function for some arguments: what typed
/// invalidation (`#[invalidate(get_hero(id))]`) names.
#[derive(Debug)]
pub struct Entry {
    /// The function.
    pub site: &'static Site,
    /// Its key for the arguments, rendered (no prefix, no namespace).
    pub key: String,
}

/// Deletes the entry of a cached function. The typed `*_invalidate`
/// companions call this.
pub async fn invalidate_entry(site: &'static Site, key: String) -> Result<bool> {
    let stack = current().await;
    stack.check()?;
    let deleted = delete_entry(&stack, site, &key).await?;
    site.counters.add(Count::Invalidation);
    Ok(deleted)
}

/// Whether one entry of a function is fresh where the function keeps it.
pub(crate) async fn is_fresh(stack: &Arc<Stack>, site: &'static Site, key: &str) -> bool {
    let p = Policy::<()>::of_site(site, stack, Vec::new(), Hooks::NONE);
    let Ok(full) = full_key(stack, &p, key.to_owned()).await else {
        return false;
    };
    let now = stack.clock.now_ms();
    let fresh = |times: Option<Times>| times.is_none_or(|t| now < t.soft_ms);
    match Place::of(stack, &p) {
        Place::Process(map) => map.get(&full).is_some_and(|(held, _)| fresh(held.times())),
        Place::Memory(memory) => match memory.get_held(&full) {
            crate::store::memory::Found::Held(held) => fresh(held.times()),
            crate::store::memory::Found::Bytes(raw) => stack
                .envelope
                .decode(&full, &raw)
                .is_ok_and(|e| fresh(e.meta.times)),
            crate::store::memory::Found::Absent => false,
        },
        Place::Remote(_) => match stack.store.get(&full).await {
            Ok(Some(raw)) if !crate::codec::is_lease(&raw) => stack
                .envelope
                .decode(&full, &raw)
                .is_ok_and(|e| fresh(e.meta.times)),
            _ => false,
        },
    }
}

/// Deletes one entry wherever its function keeps it.
pub(crate) async fn delete_entry(
    stack: &Arc<Stack>,
    site: &'static Site,
    key: &str,
) -> Result<bool> {
    let p = Policy::<()>::of_site(site, stack, Vec::new(), Hooks::NONE);
    let full = full_key(stack, &p, key.to_owned()).await?;
    let deleted = match Place::of(stack, &p) {
        Place::Process(map) => map.remove(&full),
        Place::Memory(_) | Place::Remote(_) => {
            stack.store.delete(std::slice::from_ref(&full)).await? > 0
        }
    };
    stack.announce(Event::Keys(vec![full])).await;
    Ok(deleted)
}

/// Times for an entry written now.
pub(crate) fn times_for<V>(
    stack: &Stack,
    p: &Policy<V>,
    ttl: Duration,
    took: Duration,
) -> Option<Times> {
    if !p.keeps_times(stack) {
        return None;
    }
    let now = stack.clock.now_ms();
    Some(Times {
        soft_ms: now + crate::clock::millis(ttl),
        hard_ms: now + crate::clock::millis(ttl + p.grace()),
        delta_ms: took.as_millis().min(u128::from(u32::MAX)) as u32,
    })
}
