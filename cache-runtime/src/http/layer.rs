//! [`CacheLayer`]: the layer's settings, as a builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::request::Parts;

use super::rules::Statuses;
use super::service::CacheService;
use super::stored::Value;
use crate::options::CacheOptions;
use crate::stats::Counters;

/// The namespace of a layer that is given none.
const DEFAULT_NAMESPACE: &str = "http";
/// The default cap on a stored body.
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Tags of a request's entry: a closure from the request head.
pub(crate) type TagFn = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// A [`tower::Layer`] that caches the responses of the service it wraps:
/// `GET` and `HEAD` responses with a cacheable status and a body within
/// the cap, per request target and the values of the headers it varies by.
///
/// ```
/// use std::time::Duration;
/// use cachekit_runtime::http::CacheLayer;
///
/// let layer = CacheLayer::new()
///     .namespace("reports")
///     .ttl(Duration::from_secs(5))
///     .stale(Duration::from_secs(30))
///     .fail_safe(Duration::from_secs(3600))
///     .vary_by("authorization")
///     .tags(|req| vec![format!("report:{}", req.uri.path())]);
/// ```
///
/// Every option of the engine behaves as in `#[cached]`. A layer is cheap
/// to clone, and every service it wraps (each route of a router) shares
/// its settings and its counters: [`stats()`](crate::stats) lists them
/// under the layer's namespace.
#[derive(Clone)]
pub struct CacheLayer {
    settings: Arc<Settings>,
}

/// What a layer and its services know.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) namespace: &'static str,
    pub(crate) counters: &'static Counters,
    /// The TTL; `None`: the configuration's default TTL.
    pub(crate) ttl: Option<Duration>,
    /// Every other option of the engine, `lock` applied. Its own TTL is
    /// unused: each entry carries its freshness (the TTL, or less if the
    /// response says so).
    pub(crate) options: CacheOptions<Value>,
    /// The same without `lock` (an option that cannot be unset).
    unlocked: CacheOptions<Value>,
    lock: bool,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) statuses: Statuses,
    pub(crate) max_body: usize,
    pub(crate) tags: Option<TagFn>,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("CacheLayer")
            .field("namespace", &s.namespace)
            .field("ttl", &s.ttl)
            .field("options", &s.options)
            .field("vary", &s.vary)
            .field("max_body", &s.max_body)
            .field("tags", &s.tags.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for CacheLayer {
    fn default() -> Self {
        CacheLayer::new()
    }
}

impl CacheLayer {
    /// A layer in namespace `http`, with the configuration's default TTL,
    /// varying by no header, storing bodies up to 1 MiB with the statuses
    /// of RFC 9110 §15.1 (200, 203, 204, 300, 301, 308, 404, 405, 410, 414,
    /// 501).
    pub fn new() -> Self {
        let options = CacheOptions::new(Duration::from_secs(1))
            .ttl_from(|stored: &Value| Duration::from_millis(stored.fresh_ms));
        CacheLayer {
            settings: Arc::new(Settings {
                namespace: DEFAULT_NAMESPACE,
                counters: Counters::for_namespace(DEFAULT_NAMESPACE),
                ttl: None,
                options: options.clone(),
                unlocked: options,
                lock: false,
                vary: Vec::new(),
                statuses: Statuses::new(Statuses::DEFAULT),
                max_body: DEFAULT_MAX_BODY,
                tags: None,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    fn with_options(self, f: impl FnOnce(CacheOptions<Value>) -> CacheOptions<Value>) -> Self {
        self.with(|s| {
            s.unlocked = f(s.unlocked.clone());
            s.options = if s.lock {
                s.unlocked.clone().lock(None)
            } else {
                s.unlocked.clone()
            };
        })
    }

    /// Entries live in `namespace` (letters, digits, `_`, `.`, `-`):
    /// [`invalidate_namespace`](crate::invalidate_namespace) drops them all
    /// at once, and [`stats()`](crate::stats) counts them under it.
    ///
    /// # Panics
    ///
    /// If `namespace` is not a valid namespace.
    pub fn namespace(self, namespace: &'static str) -> Self {
        if let Err(e) = crate::key::validate_namespace(namespace) {
            panic!("CacheLayer::namespace: {e}");
        }
        self.with(|s| {
            s.namespace = namespace;
            s.counters = Counters::for_namespace(namespace);
        })
    }

    /// Responses are fresh for `ttl`, or for less when their
    /// `Cache-Control` says `s-maxage` or `max-age`.
    ///
    /// # Panics
    ///
    /// If `ttl` is zero.
    pub fn ttl(self, ttl: Duration) -> Self {
        assert!(!ttl.is_zero(), "CacheLayer::ttl: a TTL must be positive");
        self.with(|s| s.ttl = Some(ttl))
    }

    /// Adds `header` to the key: requests with different values of it never
    /// share an entry. Values are hashed into the key, never stored in
    /// clear. Vary by `authorization` (or `cookie`) for responses that
    /// depend on who asks; a response marked `private` is stored only then.
    ///
    /// # Panics
    ///
    /// If `header` is not a valid header name.
    pub fn vary_by<H>(self, header: H) -> Self
    where
        H: TryInto<HeaderName>,
        H::Error: fmt::Debug,
    {
        let name = header
            .try_into()
            .unwrap_or_else(|e| panic!("CacheLayer::vary_by: not a header name: {e:?}"));
        self.with(|s| {
            if !s.vary.contains(&name) {
                s.vary.push(name);
            }
        })
    }

    /// Records each entry under the tags `tags` returns for its request,
    /// for [`invalidate_tag`](crate::invalidate_tag): the user, the tenant,
    /// the resource a route shows. The closure sees the request head (URI,
    /// headers, extensions) and may hold what it needs to read them (a key
    /// to decode a token).
    pub fn tags<F>(self, tags: F) -> Self
    where
        F: Fn(&Parts) -> Vec<String> + Send + Sync + 'static,
    {
        self.with(|s| s.tags = Some(Arc::new(tags)))
    }

    /// The status codes whose responses may be stored, in place of the
    /// default list.
    ///
    /// # Panics
    ///
    /// If a code is not between 100 and 599.
    pub fn statuses(self, codes: impl IntoIterator<Item = u16>) -> Self {
        let statuses = Statuses::new(codes);
        self.with(|s| s.statuses = statuses)
    }

    /// Stores bodies of at most `bytes` (default 1 MiB); a larger body
    /// streams through whole, uncached.
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|s| s.max_body = bytes)
    }

    /// After the TTL, serves the old response for `stale` more while one
    /// background call of the service refreshes it.
    pub fn stale(self, stale: Duration) -> Self {
        self.with_options(|o| o.stale(stale))
    }

    /// Keeps the last good response for `window` past its TTL, and serves it
    /// when the service fails (an error, a 5xx, a panic, a hard timeout).
    pub fn fail_safe(self, window: Duration) -> Self {
        self.with_options(|o| o.fail_safe(window))
    }

    /// After a fail-safe answer, no request calls the service again for
    /// `throttle`.
    pub fn fail_safe_throttle(self, throttle: Duration) -> Self {
        self.with_options(|o| o.fail_safe_throttle(throttle))
    }

    /// With a fallback response (stale or fail-safe), a request waits at
    /// most `timeout` for the service, whose call goes on in the background
    /// and stores its answer.
    pub fn soft_timeout(self, timeout: Duration) -> Self {
        self.with_options(|o| o.soft_timeout(timeout))
    }

    /// The service's call is abandoned after `timeout`: the request gets the
    /// fallback response, or `504 Gateway Timeout`.
    pub fn hard_timeout(self, timeout: Duration) -> Self {
        self.with_options(|o| o.hard_timeout(timeout))
    }

    /// One call of the service per key across processes, too (a lease on
    /// the shared store that the other processes wait on). Within one
    /// process concurrent misses always share one call.
    pub fn lock(self, lock: bool) -> Self {
        self.with(|s| s.lock = lock).with_options(|o| o)
    }

    /// Keeps hot entries in the in-process tier too.
    pub fn local(self, local: bool) -> Self {
        self.with_options(|o| o.local(local))
    }

    /// Takes up to `percent` of each entry's lifetime off at random.
    pub fn jitter(self, percent: u8) -> Self {
        self.with_options(|o| o.jitter(percent))
    }
}

impl<S> tower::Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService::new(inner, self.settings.clone())
    }
}
