//! [`CacheOptions`]: every option of `#[cached]`, for keys built at run
//! time (`Cache::get_or_compute_with` and the HTTP layer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
use crate::engine::{Hooks, Knobs, Policy, Refresh};
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
    knobs: Knobs,
    tags: Arc<[String]>,
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
            .field("knobs", &self.knobs)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<V> CacheOptions<V> {
    /// Entries live `ttl`; every other option is off.
    pub fn new(ttl: Duration) -> Self {
        CacheOptions {
            knobs: Knobs {
                ttl: Some(ttl),
                ..Knobs::DEFAULT
            },
            tags: Arc::new([]),
            hooks: Hooks::NONE,
        }
    }

    /// The time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.knobs.ttl = Some(ttl);
        self
    }

    /// Records the entry under these tags, for `invalidate_tag`.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Whether a value that serializes to `null` (`None`) is stored.
    pub fn cache_none(mut self, cache: bool) -> Self {
        self.knobs.cache_none = cache;
        self
    }

    /// One computation across processes: a lease of the configured length
    /// (or `ttl`) that other processes wait on.
    pub fn lock(mut self, ttl: Option<Duration>) -> Self {
        self.knobs.lock = Some(ttl);
        self
    }

    /// Recomputes ahead of expiry (XFetch) in the background.
    pub fn refresh_early(mut self, beta: f64) -> Self {
        self.knobs.refresh = Refresh::Early { beta };
        self
    }

    /// After the TTL, serves the old value for `stale` more while one
    /// background task refreshes it.
    pub fn stale(mut self, stale: Duration) -> Self {
        self.knobs.stale = Some(stale);
        self
    }

    /// Keeps entries in the in-process tier too.
    pub fn local(mut self, local: bool) -> Self {
        self.knobs.local = local;
        self
    }

    /// The codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.knobs.format.codec = codec;
        self
    }

    /// Compresses payloads of at least `above` bytes.
    pub fn compress(mut self, above: u32) -> Self {
        self.knobs.format.compress_above = Some(above);
        self
    }

    /// Keeps the last good value for `window` past its TTL, to serve when
    /// the computation fails (an `Err`, a panic, a hard timeout).
    pub fn fail_safe(mut self, window: Duration) -> Self {
        self.knobs.fail_safe = Some(window);
        self
    }

    /// After a fail-safe activation, no caller retries the source for
    /// `throttle`.
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.knobs.fail_safe_throttle = Some(throttle);
        self
    }

    /// With a fallback (stale or fail-safe), callers wait at most `timeout`;
    /// the computation goes on in the background and stores its result.
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.knobs.soft_timeout = Some(timeout);
        self
    }

    /// The computation is abandoned after `timeout`: the caller gets the
    /// fallback, or an error (`try_*` methods), or, with neither, the
    /// computation is not abandoned.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.knobs.hard_timeout = Some(timeout);
        self
    }

    /// Takes up to `percent` of the TTL off at random.
    pub fn jitter(mut self, percent: u8) -> Self {
        self.knobs.jitter = Some(percent);
        self
    }

    /// Stores an `Err` for `ttl` (negative caching), for
    /// `Cache::try_get_or_compute_with_err`.
    pub fn cache_err(mut self, ttl: Duration) -> Self {
        self.knobs.cache_err = Some(ttl);
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
        if self.knobs.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("a TTL must be positive"));
        }
        if self.knobs.jitter.is_some_and(|j| j > 100) {
            return Err(Error::invalid("jitter is a percentage: at most 100"));
        }
        Ok(Policy::resolve(
            counters,
            None,
            namespace,
            self.knobs,
            &stack.config,
            self.tags.to_vec(),
            self.hooks,
        ))
    }

    /// The same options, for another value type (without hooks).
    pub(crate) fn without_hooks<W>(&self) -> CacheOptions<W> {
        CacheOptions {
            knobs: self.knobs,
            tags: self.tags.clone(),
            hooks: Hooks::NONE,
        }
    }
}
