//! [`CacheOptions`]: every option of `#[cached]`, for keys built at run
//! time (`Cache::get_or_compute_with` and the HTTP layer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Codec, Format};
use crate::engine::{Hooks, Policy, Refresh, Scope};
use crate::error::{Error, Result};
use crate::stack::Stack;
use crate::stats::Counters;

/// The options of one get-or-compute, as a builder. `V` is the cached
/// value's type (for the hooks).
///
/// ```
/// use std::time::Duration;
/// use cachekit_runtime::CacheOptions;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Report { partial: bool }
///
/// let options = CacheOptions::<Report>::new(Duration::from_secs(60))
///     .stale(Duration::from_secs(30))
///     .fail_safe(Duration::from_secs(3600))
///     .soft_timeout(Duration::from_millis(100))
///     .unless(|report| report.partial)
///     .jitter(10)
///     .tags(["reports"]);
/// ```
pub struct CacheOptions<V> {
    ttl: Duration,
    tags: Arc<[String]>,
    cache_none: bool,
    lock: Option<Option<Duration>>,
    refresh: Refresh,
    stale: Option<Duration>,
    local: bool,
    format: Format,
    fail_safe: Option<Duration>,
    fail_safe_throttle: Option<Duration>,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    jitter: Option<u8>,
    cache_err: Option<Duration>,
    hooks: Hooks<V>,
}

impl<V> Clone for CacheOptions<V> {
    fn clone(&self) -> Self {
        CacheOptions {
            tags: self.tags.clone(),
            ..*self
        }
    }
}

impl<V> fmt::Debug for CacheOptions<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheOptions")
            .field("ttl", &self.ttl)
            .field("tags", &self.tags)
            .field("stale", &self.stale)
            .field("refresh", &self.refresh)
            .field("lock", &self.lock)
            .field("fail_safe", &self.fail_safe)
            .field("soft_timeout", &self.soft_timeout)
            .field("hard_timeout", &self.hard_timeout)
            .finish_non_exhaustive()
    }
}

impl<V> CacheOptions<V> {
    /// Entries live `ttl`; every other option is off.
    pub fn new(ttl: Duration) -> Self {
        CacheOptions {
            ttl,
            tags: Arc::new([]),
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
            hooks: Hooks::NONE,
        }
    }

    /// The time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Records the entry under these tags, for `invalidate_tag`.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Whether a value that serializes to `null` (`None`) is stored.
    pub fn cache_none(mut self, cache: bool) -> Self {
        self.cache_none = cache;
        self
    }

    /// One computation across processes: a lease of the configured length
    /// (or `ttl`) that other processes wait on.
    pub fn lock(mut self, ttl: Option<Duration>) -> Self {
        self.lock = Some(ttl);
        self
    }

    /// Recomputes ahead of expiry (XFetch) in the background.
    pub fn refresh_early(mut self, beta: f64) -> Self {
        self.refresh = Refresh::Early { beta };
        self
    }

    /// After the TTL, serves the old value for `stale` more while one
    /// background task refreshes it.
    pub fn stale(mut self, stale: Duration) -> Self {
        self.stale = Some(stale);
        self
    }

    /// Keeps entries in the in-process tier too.
    pub fn local(mut self, local: bool) -> Self {
        self.local = local;
        self
    }

    /// The codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.format.codec = codec;
        self
    }

    /// Compresses payloads of at least `above` bytes.
    pub fn compress(mut self, above: u32) -> Self {
        self.format.compress_above = Some(above);
        self
    }

    /// Keeps the last good value for `window` past its TTL, to serve when
    /// the computation fails (an `Err`, a panic, a hard timeout).
    pub fn fail_safe(mut self, window: Duration) -> Self {
        self.fail_safe = Some(window);
        self
    }

    /// After a fail-safe activation, no caller retries the source for
    /// `throttle`.
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// With a fallback (stale or fail-safe), callers wait at most `timeout`;
    /// the computation goes on in the background and stores its result.
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// The computation is abandoned after `timeout`: the caller gets the
    /// fallback, or an error (`try_*` methods), or, with neither, the
    /// computation is not abandoned.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Takes up to `percent` of the TTL off at random.
    pub fn jitter(mut self, percent: u8) -> Self {
        self.jitter = Some(percent);
        self
    }

    /// Stores an `Err` for `ttl` (negative caching), for
    /// `Cache::try_get_or_compute_with_err`.
    pub fn cache_err(mut self, ttl: Duration) -> Self {
        self.cache_err = Some(ttl);
        self
    }

    /// Does not store a value for which `f` is true.
    pub fn unless(mut self, f: fn(&V) -> bool) -> Self {
        self.hooks.unless = Some(f);
        self
    }

    /// Takes the TTL from the value; `Duration::ZERO` means do not store.
    pub fn ttl_from(mut self, f: fn(&V) -> Duration) -> Self {
        self.hooks.ttl_from = Some(f);
        self
    }

    /// The engine's policy for one call, after checking the options.
    pub(crate) fn policy(
        &self,
        counters: &'static Counters,
        namespace: Option<&'static str>,
        stack: &Stack,
        key: &str,
    ) -> Result<Policy<V>> {
        crate::key::validate_key("key", key)?;
        if let Some(ns) = namespace {
            crate::key::validate_namespace(ns)?;
        }
        if self.ttl.is_zero() {
            return Err(Error::invalid("a TTL must be positive"));
        }
        if self.jitter.is_some_and(|j| j > 100) {
            return Err(Error::invalid("jitter is a percentage: at most 100"));
        }
        let config = &stack.config;
        Ok(Policy {
            counters,
            site: None,
            ttl: self.ttl,
            namespace,
            cache_none: self.cache_none,
            lock: self.lock.map(|ttl| ttl.unwrap_or(config.lease_ttl)),
            refresh: self.refresh,
            stale: self.stale,
            local: self.local,
            format: self.format,
            tags: self.tags.to_vec(),
            fail_safe: self.fail_safe,
            throttle: self.fail_safe_throttle.unwrap_or(config.fail_safe_throttle),
            soft_timeout: self.soft_timeout,
            hard_timeout: self.hard_timeout,
            jitter: self.jitter.unwrap_or(config.jitter),
            cache_err: self.cache_err,
            scope: Scope::Shared,
            hooks: self.hooks,
        })
    }

    /// The same options, for another value type (without hooks).
    pub(crate) fn without_hooks<W>(&self) -> CacheOptions<W> {
        CacheOptions {
            ttl: self.ttl,
            tags: self.tags.clone(),
            cache_none: self.cache_none,
            lock: self.lock,
            refresh: self.refresh,
            stale: self.stale,
            local: self.local,
            format: self.format,
            fail_safe: self.fail_safe,
            fail_safe_throttle: self.fail_safe_throttle,
            soft_timeout: self.soft_timeout,
            hard_timeout: self.hard_timeout,
            jitter: self.jitter,
            cache_err: self.cache_err,
            hooks: Hooks::NONE,
        }
    }
}
