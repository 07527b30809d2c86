//! The engine behind `#[cached]`, `Cache::get_or_compute` and the HTTP
//! layer: get, or compute and set, with every policy in one place.
//!
//! A call renders its key (the macro does that), then:
//!
//! 1. looks the entry up (`lookup`): in process (the embedded store, the
//!    tier, a process-scope map) as a decoded value, else in the shared
//!    store as bytes. A fresh entry is a hit. A hit that XFetch picks for
//!    early refresh, and an entry past its TTL but within its stale window,
//!    are served at once while a background task refreshes them
//!    (`refresh`): no caller waits for a refresh;
//! 2. on a miss, joins the key's flight (`miss`): the first caller of the
//!    process leads, fences its computation (a lease on a shared store, a
//!    stamp in process), computes, stores unless an invalidation came
//!    first, and hands the value to the followers. A failing computation
//!    falls back to the last good value when fail-safe keeps one;
//! 3. fails open throughout: a store error or timeout is counted and
//!    logged, and the call computes. An undecodable entry is a miss.
//!
//! `Err` is never stored (unless `cache_err` asks for a short negative
//! entry); a value that serializes to `null` (`None`) is stored unless
//! `cache_none` is off; a value that would not read back as itself is
//! returned and not stored.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, Format};
use crate::error::Elapsed;
use crate::stats::{Count, Counters, Scope as StatsScope};
use crate::store::BoxFuture;

mod fast;
mod lookup;
mod miss;
mod refresh;
mod run;
mod sync;
#[cfg(test)]
mod tests;
mod value;

pub use run::{Entry, cached, cached_process, force_refresh, get_or_compute, invalidate_entry};
pub(crate) use run::{Policy, delete_entry, is_fresh, run};
pub use sync::cached_sync;
pub(crate) use value::{Opaque, Serde, Storage};

/// When to recompute ahead of expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refresh {
    /// Only when the entry is gone.
    OnMiss,
    /// Probabilistically before expiry (XFetch): a hit recomputes in the
    /// background when `now - delta * beta * ln(rand) >= expiry`, where
    /// `delta` is how long the last computation took.
    Early {
        /// Larger recomputes earlier; 1.0 is the usual choice.
        beta: f64,
    },
}

/// Where a function's entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the configured store, shared with other processes.
    Shared,
    /// In this process only, whatever the store: no serialization, at most
    /// this many entries.
    Process {
        /// The bound on the function's entries.
        max_entries: u64,
    },
}

/// Default entries of a process-scope function without `max_entries`.
pub(crate) const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Default `beta` of early refresh.
pub(crate) const DEFAULT_BETA: f64 = 1.0;
/// Default compression threshold of `compress = true`, in bytes.
pub(crate) const DEFAULT_COMPRESS_ABOVE: u32 = 1024;
/// Default time during which a fail-safe value is reused before the source
/// is tried again.
pub(crate) const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

/// The policy of one cached function, built by `#[cached]` as a `static`
/// with these `const` builder methods. Durations left unset take their
/// value from the [`Config`](crate::Config) at run time.
#[derive(Debug)]
pub struct Site {
    pub(crate) counters: Counters,
    pub(crate) ttl: Option<Duration>,
    pub(crate) namespace: Option<&'static str>,
    pub(crate) cache_none: bool,
    /// `Some(None)`: a lease of the configured length.
    pub(crate) lock: Option<Option<Duration>>,
    pub(crate) refresh: Refresh,
    pub(crate) stale: Option<Duration>,
    pub(crate) local: bool,
    pub(crate) format: Format,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) fail_safe_throttle: Option<Duration>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    /// Fraction of the TTL taken off at random, in percent.
    pub(crate) jitter: Option<u8>,
    pub(crate) cache_err: Option<Duration>,
    pub(crate) scope: Scope,
    /// Whether an unstorable value was logged already.
    pub(crate) logged_unstorable: AtomicBool,
}

impl Site {
    /// The defaults: TTL from the configuration, JSON, `None` cached.
    pub const fn new(name: &'static str) -> Self {
        Site {
            counters: Counters::new(StatsScope::Function, name),
            ttl: None,
            namespace: None,
            cache_none: true,
            lock: None,
            refresh: Refresh::OnMiss,
            stale: None,
            local: false,
            format: Format::JSON,
            fail_safe: None,
            fail_safe_throttle: None,
            soft_timeout: None,
            hard_timeout: None,
            jitter: None,
            cache_err: None,
            scope: Scope::Shared,
            logged_unstorable: AtomicBool::new(false),
        }
    }

    /// Entries live `ttl`.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries live `ms` milliseconds.
    pub const fn ttl_ms(self, ms: u64) -> Self {
        self.ttl(Duration::from_millis(ms))
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

    /// Takes a cross-process lease to compute: of `ttl`, or of the
    /// configured length (`Config::lease_ttl`) when `None`.
    pub const fn lock(mut self, ttl: Option<Duration>) -> Self {
        self.lock = Some(ttl);
        self
    }

    /// Takes a cross-process lease of `ms` milliseconds to compute.
    pub const fn lock_ms(self, ms: u64) -> Self {
        self.lock(Some(Duration::from_millis(ms)))
    }

    /// Recomputes early (XFetch) with `beta`, or [`DEFAULT_BETA`].
    pub const fn refresh_early_beta(mut self, beta: Option<f64>) -> Self {
        self.refresh = Refresh::Early {
            beta: match beta {
                Some(b) => b,
                None => DEFAULT_BETA,
            },
        };
        self
    }

    /// Recomputes early (XFetch) with `beta`.
    pub const fn refresh_early(self, beta: f64) -> Self {
        self.refresh_early_beta(Some(beta))
    }

    /// Serves expired entries for `stale` more while refreshing them in the
    /// background.
    pub const fn stale(mut self, stale: Duration) -> Self {
        self.stale = Some(stale);
        self
    }

    /// Serves expired entries for `ms` more milliseconds while refreshing.
    pub const fn stale_ms(self, ms: u64) -> Self {
        self.stale(Duration::from_millis(ms))
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

    /// The codec.
    pub const fn codec(mut self, codec: Codec) -> Self {
        self.format.codec = codec;
        self
    }

    /// Compresses payloads of at least `above` bytes, or of
    /// [`DEFAULT_COMPRESS_ABOVE`] when `None`.
    pub const fn compress(mut self, above: Option<u32>) -> Self {
        self.format.compress_above = Some(match above {
            Some(n) => n,
            None => DEFAULT_COMPRESS_ABOVE,
        });
        self
    }

    /// Keeps the last good value for `window` past its TTL, to serve when
    /// the computation fails.
    pub const fn fail_safe(mut self, window: Duration) -> Self {
        self.fail_safe = Some(window);
        self
    }

    /// After a fail-safe activation, no caller retries the source for
    /// `throttle`.
    pub const fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// With a fallback value, callers wait at most `timeout` for the
    /// computation, which goes on in the background.
    pub const fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// The computation is abandoned after `timeout`.
    pub const fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Takes up to `percent` of the TTL off at random, so that entries
    /// written together do not expire together.
    pub const fn jitter(mut self, percent: u8) -> Self {
        self.jitter = Some(percent);
        self
    }

    /// Stores an `Err` for `ttl` (negative caching).
    pub const fn cache_err(mut self, ttl: Duration) -> Self {
        self.cache_err = Some(ttl);
        self
    }

    /// Keeps entries in this process only, at most `max_entries` of them
    /// ([`DEFAULT_MAX_ENTRIES`] when `None`).
    pub const fn process_scope(mut self, max_entries: Option<u64>) -> Self {
        self.scope = Scope::Process {
            max_entries: match max_entries {
                Some(n) => n,
                None => DEFAULT_MAX_ENTRIES,
            },
        };
        self
    }

    /// The function's path.
    pub fn name(&self) -> &'static str {
        self.counters.name()
    }
}

/// Per-call hooks on the value: non-capturing closures or function paths.
#[derive(Debug)]
pub struct Hooks<V> {
    /// The value is not stored when this returns `true`.
    pub unless: Option<fn(&V) -> bool>,
    /// The TTL of the value; `Duration::ZERO` means "do not store".
    pub ttl_from: Option<fn(&V) -> Duration>,
}

impl<V> Clone for Hooks<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Hooks<V> {}

impl<V> Default for Hooks<V> {
    fn default() -> Self {
        Hooks {
            unless: None,
            ttl_from: None,
        }
    }
}

impl<V> Hooks<V> {
    /// No hooks.
    pub const NONE: Self = Hooks {
        unless: None,
        ttl_from: None,
    };

    /// Skips storing values for which `f` is true.
    pub const fn unless(mut self, f: fn(&V) -> bool) -> Self {
        self.unless = Some(f);
        self
    }

    /// Takes the TTL from the value.
    pub const fn ttl_from(mut self, f: fn(&V) -> Duration) -> Self {
        self.ttl_from = Some(f);
        self
    }
}

/// How a return type is cached: `Result` stores its `Ok` value (or the
/// whole result with `cache_err`), anything else stores itself.
pub trait Output<R>: Copy + Send + Sync + 'static {
    /// The stored value.
    type Value: Clone + Send + Sync + 'static;
    /// The value to store, if any.
    fn cacheable<'r>(&self, result: &'r R) -> Option<&'r Self::Value>;
    /// The return value for a stored value.
    fn restore(&self, value: Self::Value) -> R;
    /// Whether a stored value is a failure (an `Err` kept by `cache_err`):
    /// it lives for the `cache_err` TTL and is no last good value.
    fn failure(&self, _value: &Self::Value) -> bool {
        false
    }
    /// Whether a result is a failure that fail-safe may replace.
    fn failed(&self, result: &R) -> bool;
    /// The result of a computation abandoned by `hard_timeout`, if the
    /// return type can say so.
    fn elapsed(&self) -> Option<R> {
        None
    }
}

/// What every cached value needs: in process it is shared between tasks
/// and cloned out on each hit.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it must implement `Clone`, `Send` and `Sync`, and own its data",
    label = "the cached value",
    note = "derive `Clone` (with `serde::Serialize` and `serde::Deserialize` for a shared store), or wrap it in an `Arc` and use `scope = \"process\"`; for `Result<T, E>` only `T` is stored"
)]
pub trait Storable: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Storable for T {}

/// [`Output`] of `Result<T, E>`: only `Ok` is stored.
#[derive(Debug, Clone, Copy)]
pub struct ResultOutput;

impl<T, E> Output<Result<T, E>> for ResultOutput
where
    T: Storable,
{
    type Value = T;
    fn cacheable<'r>(&self, result: &'r Result<T, E>) -> Option<&'r T> {
        result.as_ref().ok()
    }
    fn restore(&self, value: T) -> Result<T, E> {
        Ok(value)
    }
    fn failed(&self, result: &Result<T, E>) -> bool {
        result.is_err()
    }
}

/// [`Output`] of every other type: the value itself.
#[derive(Debug, Clone, Copy)]
pub struct PlainOutput;

impl<T: Storable> Output<T> for PlainOutput {
    type Value = T;
    fn cacheable<'r>(&self, result: &'r T) -> Option<&'r T> {
        Some(result)
    }
    fn restore(&self, value: T) -> T {
        value
    }
    fn failed(&self, _: &T) -> bool {
        false
    }
}

/// [`Output`] of `Result<T, E>` with `cache_err`: the whole result is
/// stored, an `Err` for the `cache_err` TTL.
#[derive(Debug, Clone, Copy)]
pub struct ErrOutput;

impl<T, E> Output<Result<T, E>> for ErrOutput
where
    T: Storable,
    E: Storable,
{
    type Value = Result<T, E>;
    fn cacheable<'r>(&self, result: &'r Result<T, E>) -> Option<&'r Result<T, E>> {
        Some(result)
    }
    fn restore(&self, value: Result<T, E>) -> Result<T, E> {
        value
    }
    fn failure(&self, value: &Result<T, E>) -> bool {
        value.is_err()
    }
    fn failed(&self, result: &Result<T, E>) -> bool {
        result.is_err()
    }
}

/// An [`Output`] whose `Err` can say that the computation was abandoned by
/// `hard_timeout`: `E: From<cachekit::Elapsed>`.
#[derive(Debug, Clone, Copy)]
pub struct Timed<O>(pub O);

impl<T, E, O> Output<Result<T, E>> for Timed<O>
where
    O: Output<Result<T, E>>,
    E: From<Elapsed>,
{
    type Value = O::Value;
    fn cacheable<'r>(&self, result: &'r Result<T, E>) -> Option<&'r O::Value> {
        self.0.cacheable(result)
    }
    fn restore(&self, value: O::Value) -> Result<T, E> {
        self.0.restore(value)
    }
    fn failure(&self, value: &O::Value) -> bool {
        self.0.failure(value)
    }
    fn failed(&self, result: &Result<T, E>) -> bool {
        self.0.failed(result)
    }
    fn elapsed(&self) -> Option<Result<T, E>> {
        Some(Err(E::from(Elapsed::new())))
    }
}

/// An [`Output`] whose `Err` converts from [`cachekit::Error`](crate::Error):
/// a computation abandoned by its hard timeout returns
/// `Err(Error::Timeout)` (the `try_*` methods of `Cache`).
#[derive(Debug, Clone, Copy)]
pub struct TimedAs<O>(pub O);

impl<T, E, O> Output<Result<T, E>> for TimedAs<O>
where
    O: Output<Result<T, E>>,
    E: From<crate::Error>,
{
    type Value = O::Value;
    fn cacheable<'r>(&self, result: &'r Result<T, E>) -> Option<&'r O::Value> {
        self.0.cacheable(result)
    }
    fn restore(&self, value: O::Value) -> Result<T, E> {
        self.0.restore(value)
    }
    fn failure(&self, value: &O::Value) -> bool {
        self.0.failure(value)
    }
    fn failed(&self, result: &Result<T, E>) -> bool {
        self.0.failed(result)
    }
    fn elapsed(&self) -> Option<Result<T, E>> {
        Some(Err(E::from(crate::Error::from(Elapsed::new()))))
    }
}

/// A value that can be cached in a shared store: serde, `Clone`, `Send`,
/// `Sync` and `'static`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it must implement `Clone`, `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "the cached value",
    note = "derive them with `#[derive(Clone, serde::Serialize, serde::Deserialize)]`; for `Result<T, E>` only `T` is stored; a value that is not serde can be cached in process with `scope = \"process\"`"
)]
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// A value that can be cached in process (`scope = "process"`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached in process: it must implement `Clone`, `Send` and `Sync`, and hold no borrow",
    label = "the cached value",
    note = "wrap it in an `Arc` if it cannot be cloned"
)]
pub trait ProcessValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> ProcessValue for T {}

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

/// A computation the engine may run: in the caller's future, or detached
/// on its own task (a background refresh, the rest of a computation past
/// its soft timeout).
pub trait Computation<R: 'static>: Sized {
    /// The computation, run in the caller's future.
    type Fut: Future<Output = R>;
    /// Starts it in the caller's future.
    fn start(self) -> Self::Fut;
    /// Starts it as a future that owns its inputs, if it can.
    fn detach(self) -> Result<BoxFuture<'static, R>, Self>;
}

/// A computation that borrows the caller's arguments: it runs only in the
/// caller's future.
#[derive(Debug)]
pub struct Inline<F>(pub F);

impl<F: Future> Computation<F::Output> for Inline<F>
where
    F::Output: 'static,
{
    type Fut = F;
    fn start(self) -> F {
        self.0
    }
    fn detach(self) -> Result<BoxFuture<'static, F::Output>, Self> {
        Err(self)
    }
}

/// A computation made, when needed, from owned copies of the arguments:
/// it can run on its own task.
#[derive(Debug)]
pub struct Owned<M>(pub M);

impl<M, F> Computation<F::Output> for Owned<M>
where
    M: FnOnce() -> F,
    F: Future + Send + 'static,
{
    type Fut = F;
    fn start(self) -> F {
        (self.0)()
    }
    fn detach(self) -> Result<BoxFuture<'static, F::Output>, Self> {
        Ok(Box::pin((self.0)()))
    }
}

/// Logs an unstorable value once per function, and counts it each time.
pub(crate) fn unstorable(counters: &'static Counters, site: Option<&Site>, key: &str, why: &str) {
    counters.add(Count::Unstorable);
    let first = site.is_none_or(|s| !s.logged_unstorable.swap(true, Ordering::Relaxed));
    if first {
        tracing::warn!(
            function = counters.name(),
            key,
            why,
            "value returned but not cached: it would not read back as itself (logged once per function)"
        );
    }
}
