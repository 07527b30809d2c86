//! HTTP response caching for tower services, axum routers and handlers
//! above all (feature `http`): [`CacheLayer`], and a stats endpoint,
//! [`stats_service`].
//!
//! ```text
//! Router::new()
//!     .route("/report", get(report))
//!     .layer(CacheLayer::new().ttl(Duration::from_secs(5)).vary_by("authorization"))
//! ```
//!
//! # What is cached
//!
//! `GET` and `HEAD` responses (HEAD is answered from the GET response, and
//! a HEAD miss fetches it with a GET) whose status is cacheable (by
//! default RFC 9110's list: 200, 203, 204, 300, 301, 308, 404, 405, 410,
//! 414, 501) and whose body ends within the cap (1 MiB by default). A
//! larger body streams through whole and uncached; so does every other
//! method. A response is not stored when its `Cache-Control` says
//! `no-store`, `no-cache` or `max-age=0`, when it is `private` (unless the
//! layer varies by the request's `Authorization` or `Cookie` and the
//! request carried it: then the entry is that client's own), when it sets
//! a cookie, or when it answers a request with `Authorization` that the
//! layer does not vary by without saying `public` (RFC 9111 §3.5). Its
//! `s-maxage` or `max-age` shortens the layer's TTL, never lengthens it.
//!
//! The key is the method, the path and query, and a SHA-256 (HMAC when an
//! integrity secret is configured) of the values of the headers the layer
//! [varies by](CacheLayer::vary_by): never a credential in clear. A
//! response whose `Vary` names a header the layer does not vary by is not
//! stored: the layer keeps one entry per key, and no index of variants, so
//! such a response could otherwise be served to a request it does not
//! fit. Add the header with `vary_by` to cache it.
//!
//! A request with `Cache-Control: no-cache` (or `max-age=0`) calls the
//! service and stores the fresh response; with `no-store` it bypasses the
//! cache.
//!
//! # What the client sees
//!
//! A `Cache-Status` member (RFC 9211): `cachekit; hit; ttl=4` (a negative
//! `ttl`: served stale while a refresh runs), `cachekit; fwd=miss;
//! fwd-status=200; stored`, `cachekit; fwd=miss; fwd-status=200; collapsed`
//! (another request's call answered this one), `cachekit; fwd=stale;
//! fwd-status=503; ttl=-20; detail=fail-safe`, `cachekit; fwd=miss;
//! fwd-status=200; detail=no-store` (why it was not stored),
//! `cachekit; fwd=method`. A response from the cache has `Age`; a stored
//! success has a strong `ETag` (the service's own, or one computed from
//! the body), and a request whose `If-None-Match` matches it gets
//! `304 Not Modified` from the cache.
//!
//! # Built on the engine
//!
//! Each request is one call of the engine behind `#[cached]`, whose
//! computation is an owned call of a clone of the inner service. So
//! concurrent misses of one key call the service once (and once across
//! processes with [`lock(true)`](CacheLayer::lock)); [`stale`](CacheLayer::stale)
//! serves the old response while one background call refreshes it;
//! [`fail_safe`](CacheLayer::fail_safe) serves the last good response when
//! the service errors, answers 5xx, panics or times out; a
//! [`soft_timeout`](CacheLayer::soft_timeout) lets the call finish in the
//! background. Entries live in the layer's namespace (`http` unless told)
//! under tags of your choosing, so that [`invalidate_namespace`](crate::invalidate_namespace)
//! and [`invalidate_tag`](crate::invalidate_tag) reach them, and
//! [`stats()`](crate::stats) counts them under the namespace.
//!
//! A layer needs a body that ends: do not put it in front of a stream of
//! events (`text/event-stream` responses pass through unread) or a long
//! poll.

mod body;
mod layer;
mod rules;
mod service;
mod stats;
mod stored;

pub use body::CachedBody;
pub use layer::CacheLayer;
pub use rules::CACHE_STATUS;
pub use service::CacheService;
pub use stats::{StatsService, stats_router, stats_service};
