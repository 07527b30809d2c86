//! The engine behind `#[cached]` and `Cache::get_or_compute`: get, or
//! compute and set, with every policy in one place.
//!
//! A call renders its key (the macro does that), then:
//!
//! 1. reads the entry; a fresh entry is a hit. With early refresh, a hit may
//!    be picked (XFetch) to recompute ahead of expiry; with stale serving, an
//!    expired entry is served while one caller refreshes it;
//! 2. on a miss, joins the key's flight: the first caller leads, reads again
//!    (another leader may just have stored it), optionally takes the
//!    cross-process lease, computes, stores, and hands the entry to the
//!    followers;
//! 3. fails open throughout: a backend error or timeout is counted and
//!    logged, and the call computes. An undecodable entry is a miss.
//!
//! `Err` is never stored; a value that serializes to `null` (`None`) is
//! stored unless `cache_none` is off.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::backend::{Backend, Event, Write};
use crate::codec::{Format, Meta, now_ms};
use crate::error::Result;
use crate::flight::{self, Joined, Lease, Outcome};
use crate::global::{Runtime, runtime};
use crate::stats::{Count, Counters, Scope};

/// When to recompute ahead of expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refresh {
    /// Only when the entry is gone.
    OnMiss,
    /// Probabilistically before expiry (XFetch): a hit recomputes when
    /// `now - delta * beta * ln(rand) >= expiry`, where `delta` is how long
    /// the last computation took.
    Early {
        /// Larger recomputes earlier; 1.0 is the usual choice.
        beta: f64,
    },
}

/// The policy of one cached function, built by `#[cached]` as a `static`.
#[derive(Debug)]
pub struct Site {
    pub(crate) counters: Counters,
    pub(crate) ttl: Option<Duration>,
    pub(crate) namespace: Option<&'static str>,
    pub(crate) cache_none: bool,
    pub(crate) lock: Option<Duration>,
    pub(crate) refresh: Refresh,
    pub(crate) stale: Option<Duration>,
    pub(crate) local: bool,
    pub(crate) format: Format,
}

impl Site {
    /// The defaults: TTL from the configuration, JSON, `None` cached.
    pub const fn new(name: &'static str) -> Self {
        Site {
            counters: Counters::new(Scope::Function, name),
            ttl: None,
            namespace: None,
            cache_none: true,
            lock: None,
            refresh: Refresh::OnMiss,
            stale: None,
            local: false,
            format: Format::JSON,
        }
    }

    /// Entries live `ms` milliseconds.
    pub const fn ttl_ms(mut self, ms: u64) -> Self {
        self.ttl = Some(Duration::from_millis(ms));
        self
    }

    /// Keys live in namespace `ns`.
    pub const fn namespace(mut self, ns: &'static str) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// Whether a `None` result is stored.
    pub const fn cache_none(mut self, cache: bool) -> Self {
        self.cache_none = cache;
        self
    }

    /// Takes a cross-process lease of `ms` milliseconds to compute.
    pub const fn lock_ms(mut self, ms: u64) -> Self {
        self.lock = Some(Duration::from_millis(ms));
        self
    }

    /// Recomputes early (XFetch) with `beta`.
    pub const fn refresh_early(mut self, beta: f64) -> Self {
        self.refresh = Refresh::Early { beta };
        self
    }

    /// Serves expired entries for `ms` more milliseconds while refreshing.
    pub const fn stale_ms(mut self, ms: u64) -> Self {
        self.stale = Some(Duration::from_millis(ms));
        self
    }

    /// Keeps entries in the in-process tier too.
    pub const fn local(mut self, local: bool) -> Self {
        self.local = local;
        self
    }

    /// The codec and compression.
    pub const fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub(crate) fn policy<'a>(&'static self, rt: &Runtime, tags: &'a [String]) -> Policy<'a> {
        Policy {
            counters: &self.counters,
            ttl: self.ttl.unwrap_or(rt.config.default_ttl),
            namespace: self.namespace,
            cache_none: self.cache_none,
            lock: self.lock,
            refresh: self.refresh,
            stale: self.stale,
            local: self.local,
            format: self.format,
            tags,
        }
    }
}

/// The policy of one call.
#[derive(Debug, Clone)]
pub(crate) struct Policy<'a> {
    pub(crate) counters: &'static Counters,
    pub(crate) ttl: Duration,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) cache_none: bool,
    pub(crate) lock: Option<Duration>,
    pub(crate) refresh: Refresh,
    pub(crate) stale: Option<Duration>,
    pub(crate) local: bool,
    pub(crate) format: Format,
    pub(crate) tags: &'a [String],
}

impl<'a> Policy<'a> {
    /// A plain get-or-compute: JSON, no refresh, no lock.
    pub(crate) fn plain(
        counters: &'static Counters,
        ttl: Duration,
        namespace: Option<&'a str>,
    ) -> Self {
        Policy {
            counters,
            ttl,
            namespace,
            cache_none: true,
            lock: None,
            refresh: Refresh::OnMiss,
            stale: None,
            local: false,
            format: Format::JSON,
            tags: &[],
        }
    }

    /// How long the store keeps an entry: its TTL, plus the stale window.
    fn store_ttl(&self) -> Duration {
        self.ttl + self.stale.unwrap_or_default()
    }

    fn keeps_times(&self) -> bool {
        self.stale.is_some() || matches!(self.refresh, Refresh::Early { .. })
    }
}

/// How a return type is cached: `Result` stores its `Ok` value, anything
/// else stores itself.
pub trait Output<R>: Copy + Send + Sync + 'static {
    /// The stored value.
    type Value: Serialize + DeserializeOwned + Send + 'static;
    /// The value to store, if any.
    fn cacheable<'r>(&self, result: &'r R) -> Option<&'r Self::Value>;
    /// The return value for a stored value.
    fn restore(&self, value: Self::Value) -> R;
}

/// [`Output`] of `Result<T, E>`: only `Ok` is stored.
#[derive(Debug, Clone, Copy)]
pub struct ResultOutput;

impl<T, E> Output<Result<T, E>> for ResultOutput
where
    T: CacheValue,
{
    type Value = T;
    fn cacheable<'r>(&self, result: &'r Result<T, E>) -> Option<&'r T> {
        result.as_ref().ok()
    }
    fn restore(&self, value: T) -> Result<T, E> {
        Ok(value)
    }
}

/// [`Output`] of every other type: the value itself.
#[derive(Debug, Clone, Copy)]
pub struct PlainOutput;

impl<T: CacheValue> Output<T> for PlainOutput {
    type Value = T;
    fn cacheable<'r>(&self, result: &'r T) -> Option<&'r T> {
        Some(result)
    }
    fn restore(&self, value: T) -> T {
        value
    }
}

/// A value that can be stored: `Serialize + DeserializeOwned + Send + 'static`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "the cached value",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`; for `Result<T, E>` only `T` is stored"
)]
pub trait CacheValue: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> CacheValue for T {}

/// Picks the [`Output`] of a return type at compile time (autoref
/// specialization): `(&Kind::<R>::NEW).output()` is [`ResultOutput`] for a
/// `Result` and [`PlainOutput`] for anything else.
pub struct Kind<R>(PhantomData<fn() -> R>);

impl<R> Kind<R> {
    /// The marker.
    pub const NEW: Self = Kind(PhantomData);
}

/// Chosen first, for `Result`.
pub trait ResultKind {
    /// [`ResultOutput`].
    fn output(&self) -> ResultOutput {
        ResultOutput
    }
}
impl<T, E> ResultKind for Kind<Result<T, E>> {}

/// The fallback.
pub trait PlainKind {
    /// [`PlainOutput`].
    fn output(&self) -> PlainOutput {
        PlainOutput
    }
}
impl<R> PlainKind for &Kind<R> {}

tokio::task_local! {
    static FORCE_REFRESH: bool;
}

/// Runs a cached call as a forced refresh: it computes and stores whatever
/// is cached. Calls it makes itself are not forced.
pub async fn force_refresh<F: Future>(call: F) -> F::Output {
    FORCE_REFRESH.scope(true, call).await
}

fn forced() -> bool {
    FORCE_REFRESH.try_with(|f| *f).unwrap_or(false)
}

/// The entry point of `#[cached]`.
pub async fn get_or_compute<R, O, F>(
    site: &'static Site,
    key: String,
    tags: Vec<String>,
    output: O,
    compute: F,
) -> R
where
    O: Output<R>,
    F: Future<Output = R>,
{
    let rt = runtime().await;
    let policy = site.policy(&rt, &tags);
    run(&rt, &policy, key, output, compute).await
}

/// Deletes the entry of a cached function. The typed `*_invalidate`
/// companions call this.
pub async fn invalidate_entry(site: &'static Site, key: String) -> Result<bool> {
    let rt = runtime().await;
    let full = rt.data_key(site.namespace, &key).await?;
    let deleted = rt
        .store(site.local)
        .delete(std::slice::from_ref(&full))
        .await?
        > 0;
    site.counters.add(Count::Invalidation);
    rt.publish(Event::Keys(vec![full])).await;
    Ok(deleted)
}

/// What a lookup found.
enum Found<V> {
    /// A fresh entry; `true` if the in-process tier held it.
    Hit(V, bool),
    /// A fresh hit that XFetch picked for early recomputation.
    HitToRefresh(V),
    /// Past its TTL, within the stale window.
    Stale(V),
    Miss,
    Failed,
}

/// Runs the policy for one call. Never fails: the cache is an optimization.
pub(crate) async fn run<R, O, F>(
    rt: &Arc<Runtime>,
    p: &Policy<'_>,
    key: String,
    output: O,
    compute: F,
) -> R
where
    O: Output<R>,
    F: Future<Output = R>,
{
    let started = crate::stats::sample_latency().then(Instant::now);
    let force = forced();
    let compute = async {
        p.counters.add(Count::Computation);
        // Cached calls inside the computation are not forced.
        FORCE_REFRESH.scope(false, compute).await
    };
    if !rt.config.enabled {
        return compute.await;
    }
    let full = match rt.store_key(p.namespace, key).await {
        Ok(full) => full,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(namespace = p.namespace, error = %e, "cache unavailable; computing");
            return compute.await;
        }
    };
    if force {
        p.counters.add(Count::Refresh);
        let (value, _) = compute_and_store(rt, p, &full, output, compute, true)
            .instrument(refresh_span(p, &full))
            .await;
        return value;
    }

    let mut failing = false;
    let ended = rt.flights.ended();
    match lookup::<O::Value>(rt, p, &full).await {
        Found::Hit(v, in_process) => return hit(p, started, in_process, output.restore(v)),
        Found::HitToRefresh(v) => {
            // One caller recomputes; the others keep getting the hit.
            let Some(leader) = rt.flights.try_lead(&full) else {
                return hit(p, started, false, output.restore(v));
            };
            p.counters.add(Count::Refresh);
            let (value, outcome) = compute_and_store(rt, p, &full, output, compute, true)
                .instrument(refresh_span(p, &full))
                .await;
            leader.finish(outcome);
            return hit(p, started, false, value);
        }
        Found::Stale(v) => {
            let Some(leader) = rt.flights.try_lead(&full) else {
                p.counters.add(Count::StaleHit);
                return hit(p, started, false, output.restore(v));
            };
            p.counters.add(Count::Refresh);
            let (value, outcome) = compute_and_store(rt, p, &full, output, compute, true)
                .instrument(refresh_span(p, &full))
                .await;
            leader.finish(outcome.clone());
            // If the refresh produced nothing cacheable (an error), the stale
            // value keeps serving until its window ends.
            if matches!(outcome, Outcome::Uncached) && output.cacheable(&value).is_none() {
                p.counters.add(Count::StaleHit);
                return hit(p, started, false, output.restore(v));
            }
            return hit(p, started, false, value);
        }
        Found::Miss => {}
        Found::Failed => failing = true,
    }

    // A miss: one computation per key in this process, also while the store
    // fails (the database behind it needs the protection most then).
    let span = tracing::debug_span!("cachekit.miss", key = %full, namespace = p.namespace);
    async {
        loop {
            match rt.flights.join(&full) {
                Joined::Leader(leader) => {
                    if failing {
                        // The store just failed: spend no more time on it in
                        // this call, so the call costs one timeout at most.
                        let computing = Instant::now();
                        let value = compute.await;
                        let raw = output
                            .cacheable(&value)
                            .and_then(|v| encode_for(rt, p, &full, v, computing.elapsed()).ok());
                        leader.finish(raw.map_or(Outcome::Uncached, Outcome::Stored));
                        return miss(p, started, value);
                    }
                    // Another leader may have stored the entry since our read;
                    // if no flight ended since, none did, and a second read
                    // would only cost a round trip.
                    if rt.flights.ended() != ended {
                        match lookup::<O::Value>(rt, p, &full).await {
                            Found::Hit(v, _) | Found::HitToRefresh(v) => {
                                if let Ok(raw) = encode_for(rt, p, &full, &v, Duration::ZERO) {
                                    leader.finish(Outcome::Stored(raw));
                                }
                                return hit(p, started, false, output.restore(v));
                            }
                            Found::Failed => {
                                failing = true;
                                drop(leader);
                                continue;
                            }
                            Found::Miss | Found::Stale(_) => {}
                        }
                    }
                    let (value, outcome) = match p.lock {
                        Some(lease_ttl) => {
                            compute_under_lease(rt, p, &full, output, compute, lease_ttl).await
                        }
                        None => compute_and_store(rt, p, &full, output, compute, false).await,
                    };
                    leader.finish(outcome);
                    return miss(p, started, value);
                }
                Joined::Follower(rx) => match flight::follow(rx).await {
                    Some(Outcome::Stored(raw)) => {
                        match decode_entry::<O::Value>(rt, p, &full, &raw) {
                            Some(v) => return hit(p, started, false, output.restore(v)),
                            None => return miss(p, started, compute.await),
                        }
                    }
                    Some(Outcome::Uncached | Outcome::Running) => {
                        return miss(p, started, compute.await);
                    }
                    // The leader was cancelled: start over, one of us leads.
                    None => continue,
                },
            }
        }
    }
    .instrument(span)
    .await
}

/// The span of a refresh (forced, early or of a stale entry).
fn refresh_span(p: &Policy<'_>, full: &str) -> tracing::Span {
    tracing::debug_span!("cachekit.refresh", key = %full, namespace = p.namespace)
}

/// Counts a call served without computing.
fn hit<R>(p: &Policy<'_>, started: Option<Instant>, in_process: bool, value: R) -> R {
    p.counters.add(Count::Hit);
    if in_process {
        p.counters.add(Count::LocalHit);
    }
    if let Some(started) = started {
        p.counters.latency(true, started.elapsed());
    }
    value
}

/// Counts a call that computed.
fn miss<R>(p: &Policy<'_>, started: Option<Instant>, value: R) -> R {
    p.counters.add(Count::Miss);
    if let Some(started) = started {
        p.counters.latency(false, started.elapsed());
    }
    value
}

/// Reads and decodes the entry at `full`: from the in-process tier when the
/// call uses it and holds the entry, else from the store.
async fn lookup<V: DeserializeOwned>(rt: &Runtime, p: &Policy<'_>, full: &str) -> Found<V> {
    let store = rt.store(p.local);
    let local = store.as_tiered().and_then(|tier| tier.peek(full));
    let in_process = local.is_some();
    let raw = match local {
        Some(raw) => {
            // A hit from the in-process tier never waits on I/O: spend the
            // task's budget, so that a loop of hits still yields to the other
            // tasks of its worker (the embedded store does the same).
            tokio::task::consume_budget().await;
            raw
        }
        None => match store.get(full).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return Found::Miss,
            Err(e) => {
                p.counters.add(Count::Error);
                tracing::warn!(key = full, error = %e, "cache read failed; computing");
                return Found::Failed;
            }
        },
    };
    let entry = match rt.envelope.decode(full, &raw) {
        Ok(entry) => entry,
        Err(e) => return undecodable(p, full, &e),
    };
    let value: V = match entry.value(p.format.codec) {
        Ok(v) => v,
        Err(e) => return undecodable(p, full, &e),
    };
    let Some(soft_expiry) = entry.meta.soft_expiry_ms else {
        return Found::Hit(value, in_process);
    };
    let now = now_ms();
    if now >= soft_expiry {
        return if p.stale.is_some() {
            Found::Stale(value)
        } else {
            Found::Miss
        };
    }
    if let Refresh::Early { beta } = p.refresh {
        // XFetch: -ln(rand) is exponentially distributed, so the chance to
        // recompute rises as expiry nears, scaled by the computation time.
        let gap = f64::from(entry.meta.delta_ms) * beta * -(1.0 - fastrand::f64()).ln();
        if now as f64 + gap >= soft_expiry as f64 {
            return Found::HitToRefresh(value);
        }
    }
    Found::Hit(value, in_process)
}

fn undecodable<V>(p: &Policy<'_>, full: &str, e: &crate::Error) -> Found<V> {
    p.counters.add(Count::DecodeFailure);
    tracing::debug!(key = full, error = %e, "undecodable cache entry; recomputing");
    Found::Miss
}

fn decode_entry<V: DeserializeOwned>(
    rt: &Runtime,
    p: &Policy<'_>,
    full: &str,
    raw: &[u8],
) -> Option<V> {
    rt.envelope
        .decode(full, raw)
        .ok()?
        .value(p.format.codec)
        .ok()
}

fn encode_for<V: Serialize>(
    rt: &Runtime,
    p: &Policy<'_>,
    full: &str,
    value: &V,
    took: Duration,
) -> Result<Bytes> {
    encode_payload(rt, p, full, p.format.codec.encode(value)?, took)
}

fn encode_payload(
    rt: &Runtime,
    p: &Policy<'_>,
    full: &str,
    payload: Vec<u8>,
    took: Duration,
) -> Result<Bytes> {
    let meta = if p.keeps_times() {
        Meta {
            soft_expiry_ms: Some(now_ms() + p.ttl.as_millis() as u64),
            delta_ms: took.as_millis().min(u128::from(u32::MAX)) as u32,
            indexes: Vec::new(),
        }
    } else {
        Meta::NONE
    };
    rt.envelope.frame(full, payload, p.format, &meta)
}

/// Computes, stores if cacheable, and returns the value and what followers
/// should get. `announce` tells other processes (a refresh overwrites a value
/// they may hold; a miss fills a key nobody holds).
async fn compute_and_store<R, O, F>(
    rt: &Runtime,
    p: &Policy<'_>,
    full: &str,
    output: O,
    compute: F,
    announce: bool,
) -> (R, Outcome)
where
    O: Output<R>,
    F: Future<Output = R>,
{
    let started = Instant::now();
    let value = compute.await;
    let took = started.elapsed();
    let outcome = store(rt, p, full, output, &value, took, announce).await;
    (value, outcome)
}

async fn store<R, O: Output<R>>(
    rt: &Runtime,
    p: &Policy<'_>,
    full: &str,
    output: O,
    value: &R,
    took: Duration,
    announce: bool,
) -> Outcome {
    let Some(cacheable) = output.cacheable(value) else {
        return Outcome::Uncached;
    };
    let encoded = p.format.codec.encode(cacheable).and_then(|payload| {
        if !p.cache_none && p.format.codec.is_null(&payload) {
            return Ok(None);
        }
        encode_payload(rt, p, full, payload, took).map(Some)
    });
    let raw = match encoded {
        Ok(Some(raw)) => raw,
        Ok(None) => return Outcome::Uncached,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(key = full, error = %e, "value cannot be encoded; not cached");
            return Outcome::Uncached;
        }
    };
    let tags: Vec<String> = p.tags.iter().map(|t| rt.layout.tag_key(t)).collect();
    let write = Write {
        key: full.to_owned(),
        value: raw.clone(),
        ttl: p.store_ttl(),
        member_of: tags,
    };
    if let Err(e) = rt.store(p.local).write(std::slice::from_ref(&write)).await {
        p.counters.add(Count::Error);
        tracing::warn!(key = full, error = %e, "cache write failed; value returned uncached");
    } else if announce {
        rt.publish(Event::Keys(vec![full.to_owned()])).await;
    }
    Outcome::Stored(raw)
}

/// Computes under a cross-process lease: the holder computes; the others
/// poll for the value until it appears or the lease is free (its holder
/// died or failed), never past a bound.
async fn compute_under_lease<R, O, F>(
    rt: &Arc<Runtime>,
    p: &Policy<'_>,
    full: &str,
    output: O,
    compute: F,
    lease_ttl: Duration,
) -> (R, Outcome)
where
    O: Output<R>,
    F: Future<Output = R>,
{
    let lease_key = format!("{full}#lease");
    let backend: &dyn Backend = &*rt.backend;
    let give_up = Instant::now() + (lease_ttl * 4).max(Duration::from_secs(10));
    let mut wait = Duration::from_millis(5);
    loop {
        match Lease::acquire(backend, lease_key.clone(), lease_ttl).await {
            Ok(Some(lease)) => {
                // The previous holder may have stored it as we polled.
                if let Found::Hit(v, _) = lookup::<O::Value>(rt, p, full).await
                    && let Ok(raw) = encode_for(rt, p, full, &v, Duration::ZERO)
                {
                    let _ = lease.release(backend).await;
                    return (output.restore(v), Outcome::Stored(raw));
                }
                let guard = LeaseGuard {
                    backend: rt.backend.clone(),
                    lease: Some(lease),
                };
                let lease = guard.lease.as_ref().expect("held");
                let result = lease
                    .hold(
                        backend,
                        compute_and_store(rt, p, full, output, compute, false),
                    )
                    .await;
                guard.release().await;
                return result;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(key = full, error = %e, "lease unavailable; computing without it");
                return compute_and_store(rt, p, full, output, compute, false).await;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
        if let Found::Hit(v, _) = lookup::<O::Value>(rt, p, full).await {
            let raw = encode_for(rt, p, full, &v, Duration::ZERO).ok();
            return (
                output.restore(v),
                raw.map_or(Outcome::Uncached, Outcome::Stored),
            );
        }
        if Instant::now() >= give_up {
            tracing::warn!(
                key = full,
                "lease held too long by another process; computing"
            );
            return compute_and_store(rt, p, full, output, compute, false).await;
        }
    }
}

/// Releases a lease when dropped, so a cancelled computation frees it.
struct LeaseGuard {
    backend: Arc<dyn Backend>,
    lease: Option<Lease>,
}

impl LeaseGuard {
    async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = lease.release(&*self.backend).await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            flight::release_in_background(self.backend.clone(), lease);
        }
    }
}

#[cfg(test)]
#[path = "cached_tests.rs"]
mod tests;
