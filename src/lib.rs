//! # cachekit
//!
//! Caching for async Rust: `#[cached]` turns an `async fn` into
//! get-or-compute-and-set against a global cache, with key templates checked
//! at compile time, on an embedded store, Redis or Redis Cluster.
//!
//! ```
//! use cachekit::{cached, invalidate};
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct User { id: u64 }
//! # #[derive(Debug)] struct DbError;
//!
//! #[cached(ttl = 5, key = "user:{id}")]
//! async fn get_user(id: u64) -> Result<User, DbError> {
//!     // a database query, an HTTP call...
//! #   Ok(User { id })
//! }
//!
//! #[invalidate("user:{id}")]
//! async fn save_user(id: u64, user: User) -> Result<(), DbError> {
//!     // the write; on success, user:{id} is deleted
//! #   let _ = user; Ok(())
//! }
//! # #[tokio::main] async fn main() {
//! let user = get_user(7).await.unwrap(); // a miss: computes and stores `user:7`
//! let again = get_user(7).await.unwrap(); // a hit
//! # }
//! ```
//!
//! ## Where entries live
//!
//! With no configuration, the first cached call installs the cache from the
//! environment: the embedded in-memory store, or Redis when `REDIS_URL` is
//! set (see [`Config::from_env`] for every variable). Or install it yourself:
//!
//! ```no_run
//! # async fn f() -> Result<(), cachekit::Error> {
//! cachekit::init(cachekit::Config::redis("redis://:secret@127.0.0.1:6379").key_prefix("myapp")).await?;
//! # Ok(()) }
//! ```
//!
//! `init` succeeds while Redis is down: cached functions compute until it
//! answers, and caching resumes by itself. A cached function never fails or
//! hangs because of the cache; each backend operation is bounded by a
//! timeout, and a circuit breaker makes a dead Redis cost one fast failure
//! per call. The explicit API ([`Cache`], [`invalidate()`], [`lock()`])
//! returns a [`Result`] instead.
//!
//! ## Keys
//!
//! A key template is literal text with `{placeholders}` naming parameters or
//! field paths (`{q.lang}`, `{self.region}`); `{{` and `}}` are literal
//! braces. Every placeholder is checked at compile time, and its type must
//! implement [`KeyPart`] (integers, strings, bools, chars, uuids, `Option`,
//! slices, and any `#[derive(CacheKey)]` type). Rendering is injective:
//! values are escaped, so `pair("x:y", "z")` and `pair("x", "y:z")` never
//! share a key, and a value such as `*` is plain data, never a wildcard.
//! Without a template, the key is the function's path and all its arguments.
//!
//! With no namespace and no key prefix, `key = "user:{id}"` with `id = 7`
//! is exactly `user:7` on the store, and the value is readable JSON.
//!
//! ## The options of `#[cached]`, and what each one means
//!
//! Each option maps to the runtime; [`Cache::get_or_compute`] is the same
//! engine for keys built at run time.
//!
//! | option | meaning |
//! |---|---|
//! | `ttl = 5` / `ttl = "90s"` | time to live (`"500ms"`, `"5m"`, `"1h"`, `"1d"`); default `CACHE_DEFAULT_TTL` |
//! | `key = "user:{id}"` | the key template |
//! | `namespace = "heroes"` | keys live under `heroes:`, invalidated at once by [`invalidate_namespace`] |
//! | `cache_none = false` | do not store `None` (it is stored by default: it is an answer) |
//! | `tags = ["org:{org_id}"]` | record the entry under tags, for [`invalidate_tag`] |
//! | `lock = true`, `lock_ttl = "5s"` | one computation across processes (a Redis lease) |
//! | `refresh = "early"`, `beta = 1.0` | recompute probabilistically before expiry (XFetch) |
//! | `stale = "30s"` | after the TTL, serve the old value while one caller refreshes |
//! | `local = true` | keep hot entries in the in-process tier too |
//! | `codec = "msgpack"`, `compress = true` | MessagePack, LZ4 above 1 KiB (features `msgpack`, `lz4`) |
//! | `companions = false` | do not generate `name_key`, `name_refresh`, `name_invalidate` |
//! | `crate = "path"` | where cachekit is, if renamed |
//!
//! `Result<T, E>` stores only `Ok`. Concurrent misses of one key share one
//! computation.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 30, key = "report:{day}", namespace = "reports")]
//! async fn report(day: u32) -> Vec<u64> {
//!     vec![u64::from(day)]
//! }
//!
//! // The same, written by hand:
//! static REPORTS: Cache = Cache::new("reports", Duration::from_secs(300));
//! async fn report_by_hand(day: u32) -> Vec<u64> {
//!     REPORTS
//!         .get_or_compute(&format!("report:{day}"), Duration::from_secs(30), || async { vec![u64::from(day)] })
//!         .await
//!         .expect("a valid key")
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(report(3).await, report_by_hand(3).await);
//! # }
//! ```
//!
//! ## Typed companions
//!
//! For each cached function `name`, three companions take the same
//! arguments: `name_key(...) -> String` renders its key (as the template
//! does, without prefix or namespace), `name_refresh(...)` recomputes and
//! stores whatever is cached, and `name_invalidate(...)` deletes the entry.
//! For a method they are methods (`repo.find_key(7)`); for a free function,
//! functions beside it. They cannot be added to a trait implementation:
//! write `companions = false` there.
//!
//! ```
//! # use cachekit::cached;
//! #[cached(ttl = 60, key = "price:{symbol}")]
//! async fn price(symbol: &str) -> f64 {
//!     42.0
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(price_key("ACME"), "price:ACME");
//! price_refresh("ACME").await; // recompute now
//! price_invalidate("ACME").await.unwrap(); // or drop it
//! # }
//! ```
//!
//! ## Invalidation
//!
//! * [`invalidate()`]`("users:page:*")`: a glob pattern (`SCAN` + `UNLINK`
//!   in batches on every primary);
//! * [`invalidate_tag`]`("org:42")`: the entries recorded under a tag;
//! * [`invalidate_namespace`]`("heroes")`: a whole namespace in one round
//!   trip (its generation moves on);
//! * `#[invalidate(...)]` does any of these after a write succeeds (or
//!   `before = true`), never turning a successful write into a failure.
//!
//! ```
//! use cachekit::{CacheKey, cached};
//!
//! #[derive(Clone, CacheKey)]
//! #[cache_key("hero:{lang}:{id}")]
//! struct HeroQuery {
//!     lang: String,
//!     id: u64,
//! }
//!
//! #[cached(ttl = 60, key = "{q}")]
//! async fn hero(q: HeroQuery) -> String {
//!     format!("{} #{}", q.lang, q.id)
//! }
//! # #[tokio::main] async fn main() {
//! hero(HeroQuery { lang: "en".into(), id: 1 }).await;
//! // Every English hero, whatever its id:
//! let pattern = HeroQuery::pattern().lang("en");
//! assert_eq!(pattern.build(), "hero:en:*");
//! assert_eq!(pattern.invalidate().await.unwrap(), 1);
//! # }
//! ```
//!
//! ## The cache service
//!
//! [`Cache`] is a namespaced handle for application code: get, set, partial
//! update, TTLs, counters, secondary indexes and batches, on every backend.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::Cache;
//!
//! static SIGNUP: Cache = Cache::new("signup", Duration::from_secs(300));
//! # #[tokio::main] async fn main() -> Result<(), cachekit::Error> {
//! SIGNUP.set("s-1", &serde_json::json!({"email": "ada@example.com", "step": 1})).await?;
//! SIGNUP.update("s-1", serde_json::json!({"step": 2})).await?;
//! let attempts = SIGNUP.increment("attempts:ada", 1).await?;
//! # assert_eq!(attempts, 1);
//! # Ok(()) }
//! ```
//!
//! ## Observability
//!
//! [`stats()`] counts hits, misses, errors, decode failures and latency per
//! function and namespace; [`health()`] pings the backend and reports the
//! circuit; logs and events go through `tracing` with keys as fields, never
//! values or secrets. The `metrics` feature reports the same counters
//! through the `metrics` facade.
//!
//! Spans, at `debug` level (a hit opens none, so that the hot path stays
//! free): `cachekit.miss` (the lookup, the computation and the write of a
//! miss; fields `key`, `namespace`), `cachekit.refresh` (a forced, early or
//! stale refresh), `cachekit.invalidate` (`pattern`),
//! `cachekit.invalidate_tag` (`tag`), `cachekit.invalidate_namespace`,
//! `cachekit.invalidate_targets` (a `#[invalidate]`), `cachekit.lock` and
//! `cachekit.try_lock`. Events: `warn` when the cache is unavailable and a
//! call computes, or an invalidation fails; `debug` for undecodable entries,
//! reconnections and invalidation progress.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub use cachekit_macros::{CacheKey, cached, invalidate};
pub use cachekit_runtime::*;

/// Support for the code the macros generate. Not a stable API: it changes
/// without notice. Do not use it directly.
#[doc(hidden)]
pub mod __private {
    pub use cachekit_runtime::__private::*;
}
