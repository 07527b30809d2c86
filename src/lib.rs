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
//! #[invalidate(get_user(id))]
//! async fn save_user(id: u64, user: User) -> Result<(), DbError> {
//!     // the write; on success, get_user's entry for `id` is deleted
//! #   let _ = user; Ok(())
//! }
//! # #[tokio::main] async fn main() {
//! let user = get_user(7).await.unwrap(); // a miss: computes and stores `user:7`
//! let again = get_user(7).await.unwrap(); // a hit
//! save_user(7, again).await.unwrap(); // deletes `user:7`
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
//!
//! With no namespace and no key prefix, `key = "user:{id}"` with `id = 7`
//! is exactly `user:7` on the store, and the value is readable JSON.
//!
//! Without a template, the key is the function's path (for a method, its
//! type's), then the function's type arguments (and the concrete types
//! behind its `impl Trait` arguments), then all its arguments, so that
//! `describe::<u32>(5)` and `describe::<&str>("5")` never share an entry.
//! A template is the programmer's choice of key: on a generic function it
//! holds only what it names, and instances whose placeholders render alike
//! share an entry.
//!
//! ```
//! use cachekit::{KeyPart, cached};
//!
//! #[cached(ttl = 60)]
//! async fn describe<T: KeyPart + Sync>(value: T) -> String {
//!     std::any::type_name::<T>().to_owned()
//! }
//! # fn main() {
//! assert!(describe_key(5u32).ends_with("::describe:u32:5"));
//! assert!(describe_key("5").ends_with("::describe:&str:5"));
//! # }
//! ```
//!
//! (Type names come from [`std::any::type_name`], which may change between
//! compiler versions: a new compiler may start such entries afresh.)
//!
//! ## The options of `#[cached]`, each beside the code it stands for
//!
//! | option | meaning |
//! |---|---|
//! | [`ttl = 5` / `ttl = "90s"`](#ttl) | time to live (`"500ms"`, `"1.5s"`, `"5m"`, `"1h"`, `"1d"`); default `CACHE_DEFAULT_TTL` |
//! | [`key = "user:{id}"`](#key) | the key template |
//! | [`namespace = "heroes"`](#namespace) | keys live under `heroes:`, invalidated at once by [`invalidate_namespace`] |
//! | [`cache_none = false`](#cache_none) | do not store `None` (it is stored by default: it is an answer) |
//! | [`tags = ["org:{org_id}"]`](#tags) | record the entry under tags, for [`invalidate_tag`] |
//! | [`lock = true`, `lock_ttl = "5s"`](#lock-and-lock_ttl) | one computation across processes (a Redis lease) |
//! | [`refresh = "early"`, `beta = 1.0`](#refresh--early-and-beta) | recompute probabilistically before expiry (XFetch) |
//! | [`stale = "30s"`](#stale) | after the TTL, serve the old value while one caller refreshes |
//! | [`local = true`](#local) | keep hot entries in the in-process tier too |
//! | [`codec = "msgpack"`, `compress = true`](#codec-and-compress) | MessagePack, LZ4 above 1 KiB (features `msgpack`, `lz4`) |
//! | [`fail_safe = "1h"`, `fail_safe_throttle = "30s"`](#fail_safe-and-fail_safe_throttle) | when the computation fails, serve the last good value (kept this long past its TTL), and leave the source alone for the throttle |
//! | [`soft_timeout = "100ms"`](#soft_timeout) | with a value to fall back on, callers wait at most this long; the computation finishes in the background |
//! | [`hard_timeout = "2s"`](#hard_timeout) | abandon the computation: the fallback, or `Err(E::from(cachekit::Elapsed))` |
//! | [`cache_err = "5s"`](#cache_err) | store an `Err` too, for this long (negative caching) |
//! | [`jitter = "10%"`](#jitter) | take up to this share off each entry's TTL, so that entries written together do not expire together |
//! | [`unless = \|r: &Report\| r.partial`, `ttl_from = ...`](#unless-and-ttl_from) | do not store a value for which the closure says so; take each value's TTL from it |
//! | [`scope = "process"`, `max_entries = 10_000`](#scope--process-and-max_entries) | keep entries in this process only: no serde, no I/O, at most so many; the one scope of a plain `fn` |
//! | [`batch = ids`](#batch) | one entry per id of a collection parameter, one round trip for all |
//! | [`companions = false`](#companions) | do not generate `name_key`, `name_refresh`, `name_invalidate` |
//! | [`crate = "path"`](#crate) | where cachekit is, if renamed |
//!
//! `Result<T, E>` stores only `Ok` (unless `cache_err`). Concurrent misses
//! of one key share one computation. [`Cache::get_or_compute`] and
//! [`Cache::get_or_compute_with`] (with [`CacheOptions`], every option
//! above but `scope`) are the same engine for keys built at run time.
//!
//! Durations are seconds (`5`) or strings with a unit, read by the runtime's
//! one parser (the one `CACHE_DEFAULT_TTL` goes through) at compile time: a
//! string that is not a duration does not compile. Options given without
//! their value (`lock = true` without `lock_ttl`, `refresh = "early"`
//! without `beta`, `compress = true`, `scope = "process"` without
//! `max_entries`) take the runtime's defaults.
//!
//! ### `ttl`
//!
//! How long an entry lives: seconds, or a string with a unit.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 30, namespace = "reports", key = "report:{day}")]
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
//! assert_eq!(report(3).await, vec![3]);
//! // One entry: the handle finds what the function stored, and its TTL.
//! let ttl = REPORTS.ttl("report:3").await.unwrap().unwrap();
//! assert!(ttl <= Duration::from_secs(30));
//! assert_eq!(report_by_hand(3).await, vec![3]);
//! # }
//! ```
//!
//! ### `key`
//!
//! The template: literal text as written, each value escaped by its
//! [`KeyPart`]. The `name_key` companion renders it.
//!
//! ```
//! use cachekit::cached;
//!
//! #[cached(ttl = 60, key = "greeting:{id}:{lang}")]
//! async fn greeting(id: u64, lang: &str) -> String {
//!     format!("hello {id} ({lang})")
//! }
//! # fn main() {
//! // By hand: `render_key` writes one value as a key part.
//! use cachekit::render_key;
//! let by_hand = format!("greeting:{}:{}", render_key(&7u64), render_key("e:n"));
//! assert_eq!(greeting_key(7, "e:n"), by_hand);
//! assert_eq!(by_hand, "greeting:7:e%3An");
//! # }
//! ```
//!
//! ### `namespace`
//!
//! Keys live in a namespace, the one a [`Cache`] handle of that name reads,
//! and [`invalidate_namespace`] drops all of them in one round trip.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
//! async fn hero(id: u64) -> String {
//!     format!("hero {id}")
//! }
//!
//! static HEROES: Cache = Cache::new("heroes", Duration::from_secs(60));
//! # #[tokio::main] async fn main() -> Result<(), cachekit::Error> {
//! hero(7).await;
//! assert_eq!(HEROES.get::<String>("hero:7").await?, Some("hero 7".to_owned()));
//! cachekit::invalidate_namespace("heroes").await?;
//! assert_eq!(HEROES.get::<String>("hero:7").await?, None);
//! # Ok(()) }
//! ```
//!
//! ### `cache_none`
//!
//! `None` is an answer and is stored; `cache_none = false` stores only
//! `Some`.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 60, namespace = "users", key = "user:{id}", cache_none = false)]
//! async fn find_user(id: u64) -> Option<String> {
//!     (id == 1).then(|| "ada".to_owned())
//! }
//!
//! // The same, written by hand:
//! static USERS: Cache = Cache::new("users", Duration::from_secs(60));
//! async fn find_user_by_hand(id: u64) -> Option<String> {
//!     let key = format!("user:{id}");
//!     if let Ok(Some(user)) = USERS.get::<String>(&key).await {
//!         return Some(user);
//!     }
//!     let user = (id == 1).then(|| "ada".to_owned());
//!     if let Some(found) = &user {
//!         let _ = USERS.set(&key, found).await; // a cache error is not the caller's
//!     }
//!     user
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(find_user(2).await, None);
//! assert!(!USERS.exists("user:2").await.unwrap(), "None was not stored");
//! assert_eq!(find_user_by_hand(1).await, Some("ada".to_owned()));
//! assert_eq!(find_user(1).await, Some("ada".to_owned()));
//! # }
//! ```
//!
//! ### `tags`
//!
//! Each entry is recorded under its rendered tags, and [`invalidate_tag`]
//! deletes the entries of a tag without scanning the keyspace.
//!
//! ```
//! use cachekit::cached;
//!
//! #[cached(ttl = 60, key = "member:{org_id}:{id}", tags = ["org:{org_id}"])]
//! async fn member(org_id: u64, id: u64) -> String {
//!     format!("{org_id}/{id}")
//! }
//! # #[tokio::main] async fn main() -> Result<(), cachekit::Error> {
//! member(42, 1).await;
//! member(42, 2).await;
//! member(7, 1).await;
//! assert_eq!(cachekit::invalidate_tag("org:42").await?, 2);
//! # Ok(()) }
//! ```
//!
//! ### `lock` and `lock_ttl`
//!
//! On a miss, one process computes, under a lease of `lock_ttl` (default:
//! the configured [`Config::lease_ttl`], 5 s); the others wait for its
//! value. By hand, with [`lock()`]:
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 600, namespace = "nightly", key = "report:{day}", lock = true, lock_ttl = "10s")]
//! async fn nightly(day: u32) -> u64 {
//!     u64::from(day) * 1_000 // minutes of work
//! }
//!
//! static NIGHTLY: Cache = Cache::new("nightly", Duration::from_secs(600));
//! async fn nightly_by_hand(day: u32) -> Result<u64, cachekit::Error> {
//!     let key = format!("report:{day}");
//!     if let Some(report) = NIGHTLY.get(&key).await? {
//!         return Ok(report);
//!     }
//!     let _lease = cachekit::lock(&format!("nightly:{key}"), Duration::from_secs(10)).await?;
//!     if let Some(report) = NIGHTLY.get(&key).await? {
//!         return Ok(report); // another process computed it meanwhile
//!     }
//!     let report = u64::from(day) * 1_000;
//!     NIGHTLY.set_with_ttl(&key, &report, Duration::from_secs(600)).await?;
//!     Ok(report)
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(nightly(3).await, 3_000);
//! assert_eq!(nightly_by_hand(3).await.unwrap(), 3_000);
//! # }
//! ```
//!
//! ### `refresh = "early"` and `beta`
//!
//! A hit may recompute ahead of expiry (XFetch): it does when
//! `now - delta * beta * ln(rand) >= expiry`, `delta` being how long the
//! last computation took, so that one caller refreshes a hot entry before
//! it expires instead of all of them after. The policy is
//! [`Refresh::Early`]; there is no shorter way to write it by hand.
//!
//! ```
//! use cachekit::cached;
//!
//! #[cached(ttl = 60, key = "rates:{currency}", refresh = "early", beta = 1.5)]
//! async fn rates(currency: &str) -> Vec<f64> {
//!     vec![1.0, 1.1] // a slow upstream call
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(rates("EUR").await, vec![1.0, 1.1]);
//! # }
//! ```
//!
//! ### `stale`
//!
//! Past its TTL, an entry is served for `stale` more while one caller
//! refreshes it in the background; a computation that fails or times out
//! falls back to it.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[cached(ttl = 5, stale = "1m", namespace = "feeds", key = "feed:{user}")]
//! async fn feed(user: &str) -> Vec<String> {
//!     vec![format!("post for {user}")]
//! }
//!
//! // The same, written by hand:
//! static FEEDS: Cache = Cache::new("feeds", Duration::from_secs(5));
//! async fn feed_by_hand(user: &str) -> Vec<String> {
//!     let options = CacheOptions::new(Duration::from_secs(5)).stale(Duration::from_secs(60));
//!     let key = format!("feed:{}", cachekit::render_key(user));
//!     let user = user.to_owned(); // the refresh runs on its own task
//!     FEEDS
//!         .get_or_compute_with(&key, &options, move || async move { vec![format!("post for {user}")] })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(feed("ada").await, vec!["post for ada".to_owned()]);
//! assert_eq!(feed_by_hand("ada").await, vec!["post for ada".to_owned()]);
//! # }
//! ```
//!
//! #### Arguments of a computation that runs on its own task
//!
//! With `stale`, `refresh = "early"` or `soft_timeout`, the computation may
//! outlive the call, so it owns copies of the arguments, made only when it
//! runs (a hit copies nothing): a value moves in, and a `&T` (`&str`,
//! `&[T]`) is copied with `ToOwned` (a `Clone`) and lent to the body as
//! before, which is unchanged. A parameter that cannot be copied is a
//! compile error that says what to write: `&mut T`, `impl Trait`, a type
//! that borrows (`Cow<'a, str>`), a pattern (`(a, b): (u8, u8)`).
//!
//! A method cannot lend `&self` to another task. Take `self: Arc<Self>`, or
//! make the type a cheap `Clone` handle (its state in an `Arc`) and take
//! `self`:
//!
//! ```
//! use std::sync::Arc;
//! use cachekit::cached;
//!
//! struct Catalog {
//!     region: String,
//! }
//!
//! impl Catalog {
//!     #[cached(ttl = 5, stale = "1m", key = "catalog:{self.region}:{id}")]
//!     async fn item(self: Arc<Self>, id: u64) -> String {
//!         format!("{}/{id}", self.region)
//!     }
//! }
//!
//! /// A handle: cloning it clones an `Arc`.
//! #[derive(Clone)]
//! struct Prices {
//!     inner: Arc<Catalog>,
//! }
//!
//! impl Prices {
//!     #[cached(ttl = 5, refresh = "early", key = "price:{self.inner.region}:{id}")]
//!     async fn price(self, id: u64) -> u64 {
//!         id * 100
//!     }
//! }
//! # #[tokio::main] async fn main() {
//! let catalog = Arc::new(Catalog { region: "eu".into() });
//! assert_eq!(catalog.clone().item(7).await, "eu/7");
//! let prices = Prices { inner: catalog };
//! assert_eq!(prices.clone().price(7).await, 700);
//! # }
//! ```
//!
//! ### `local`
//!
//! Entries are kept in the in-process tier as well (configured by
//! [`Config::local_tier`]; [`LocalTierConfig::all`] does it for every
//! function): a hit there is a lookup and a clone. The tier follows writes
//! of this process and, on Redis, of the others.
//!
//! ```
//! use cachekit::cached;
//!
//! #[cached(ttl = 60, key = "flags:{tenant}", local = true)]
//! async fn flags(tenant: u64) -> Vec<String> {
//!     vec![format!("beta-{tenant}")]
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(flags(1).await, vec!["beta-1".to_owned()]);
//! # }
//! ```
//!
//! ### `codec` and `compress`
//!
//! Values are JSON by default; `codec = "msgpack"` stores MessagePack, and
//! `compress = true` (or a threshold in bytes) compresses payloads above
//! 1 KiB with LZ4. By hand, the value's bytes are what [`Codec::encode`]
//! makes of it:
//!
//! ```
//! use cachekit::{Codec, cached};
//!
//! #[cached(ttl = 60, key = "doc:{id}", codec = "msgpack", compress = true)]
//! async fn document(id: u64) -> Vec<String> {
//!     vec!["lorem ipsum".repeat(200); id as usize]
//! }
//! # #[tokio::main] async fn main() {
//! let json = Codec::Json.encode(&vec![1u8, 2, 3]).unwrap();
//! let msgpack = Codec::MsgPack.encode(&vec![1u8, 2, 3]).unwrap();
//! assert!(msgpack.len() < json.len());
//! assert_eq!(document(2).await.len(), 2);
//! # }
//! ```
//!
//! ### `fail_safe` and `fail_safe_throttle`
//!
//! The last good value is kept for `fail_safe` past its TTL. When the
//! computation fails (an `Err`, a panic, a hard timeout), callers get that
//! value instead, and it is served as fresh for `fail_safe_throttle`
//! (default 30 s, [`Config::fail_safe_throttle`]) before anyone tries the
//! source again: a failing source is called once per throttle, not once per
//! call.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[derive(Debug)]
//! struct Upstream;
//!
//! impl From<cachekit::Error> for Upstream {
//!     fn from(_: cachekit::Error) -> Self {
//!         Upstream
//!     }
//! }
//!
//! #[cached(ttl = 5, fail_safe = "1h", fail_safe_throttle = "30s", namespace = "fx", key = "rate:{currency}")]
//! async fn rate(currency: &str) -> Result<f64, Upstream> {
//!     Ok(1.08) // an upstream that sometimes fails
//! }
//!
//! // The same, written by hand:
//! static FX: Cache = Cache::new("fx", Duration::from_secs(5));
//! async fn rate_by_hand(currency: &str) -> Result<f64, Upstream> {
//!     let options = CacheOptions::new(Duration::from_secs(5))
//!         .fail_safe(Duration::from_secs(3600))
//!         .fail_safe_throttle(Duration::from_secs(30));
//!     let key = format!("rate:{}", cachekit::render_key(currency));
//!     FX.try_get_or_compute_with(&key, &options, || async { Ok(1.08) }).await
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(rate("EUR").await.unwrap(), 1.08);
//! assert_eq!(rate_by_hand("EUR").await.unwrap(), 1.08);
//! # }
//! ```
//!
//! `fail_safe` alone keeps the computation in the caller's future: its
//! arguments need not be owned.
//!
//! ### `soft_timeout`
//!
//! When there is a value to fall back on (an expired entry kept by `stale`
//! or `fail_safe`), callers wait at most `soft_timeout` for the
//! computation: then they get that value, and the computation goes on in
//! the background and stores its result. Without a fallback it would do
//! nothing, so it needs `stale` or `fail_safe`.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[cached(ttl = 60, fail_safe = "1h", soft_timeout = "100ms", namespace = "search", key = "results:{query}")]
//! async fn results(query: &str) -> Vec<String> {
//!     vec![query.to_uppercase()] // usually fast, sometimes very slow
//! }
//!
//! // The same, written by hand:
//! static SEARCH: Cache = Cache::new("search", Duration::from_secs(60));
//! async fn results_by_hand(query: &str) -> Vec<String> {
//!     let options = CacheOptions::new(Duration::from_secs(60))
//!         .fail_safe(Duration::from_secs(3600))
//!         .soft_timeout(Duration::from_millis(100));
//!     let key = format!("results:{}", cachekit::render_key(query));
//!     let query = query.to_owned(); // it may finish on its own task
//!     SEARCH
//!         .get_or_compute_with(&key, &options, move || async move { vec![query.to_uppercase()] })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(results("rust").await, vec!["RUST".to_owned()]);
//! assert_eq!(results_by_hand("rust").await, vec!["RUST".to_owned()]);
//! # }
//! ```
//!
//! ### `hard_timeout`
//!
//! The computation is abandoned after `hard_timeout`: the caller gets the
//! fallback if there is one (`stale`, `fail_safe`), and otherwise
//! `Err(E::from(cachekit::Elapsed))`. The function returns `Result<T, E>`
//! with `impl From<cachekit::Elapsed> for E` (the compiler says so
//! otherwise); [`Error`] is one.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[cached(ttl = 60, hard_timeout = "100ms", namespace = "quotes", key = "quote:{symbol}")]
//! async fn quote(symbol: &str) -> Result<f64, cachekit::Error> {
//!     tokio::time::sleep(Duration::from_secs(10)).await; // a stuck upstream
//!     Ok(42.0)
//! }
//!
//! // The same, written by hand (its error is `Error::Timeout` too):
//! static QUOTES: Cache = Cache::new("quotes", Duration::from_secs(60));
//! async fn quote_by_hand(symbol: &str) -> Result<f64, cachekit::Error> {
//!     let options = CacheOptions::new(Duration::from_secs(60)).hard_timeout(Duration::from_millis(100));
//!     let key = format!("quote:{}", cachekit::render_key(symbol));
//!     QUOTES
//!         .try_get_or_compute_with(&key, &options, || async {
//!             tokio::time::sleep(Duration::from_secs(10)).await;
//!             Ok(42.0)
//!         })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! assert!(matches!(quote("ACME").await, Err(cachekit::Error::Timeout { .. })));
//! assert!(matches!(quote_by_hand("ACME").await, Err(cachekit::Error::Timeout { .. })));
//! # }
//! ```
//!
//! ### `cache_err`
//!
//! An `Err` is stored too, for `cache_err` (the TTL of an `Ok` stays
//! `ttl`): a lookup that fails, say for an unknown id, is not repeated on
//! every call. The whole `Result` is stored, so `E` is cloneable and serde
//! as `T` is; `cache_err` on a function that does not return a `Result`
//! does not compile.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
//! enum LookupError {
//!     NotFound,
//!     Cache,
//! }
//!
//! impl From<cachekit::Error> for LookupError {
//!     fn from(_: cachekit::Error) -> Self {
//!         LookupError::Cache
//!     }
//! }
//!
//! #[cached(ttl = 300, cache_err = "5s", namespace = "accounts", key = "account:{id}")]
//! async fn account(id: u64) -> Result<String, LookupError> {
//!     if id == 0 { Err(LookupError::NotFound) } else { Ok(format!("account {id}")) }
//! }
//!
//! // The same, written by hand:
//! static ACCOUNTS: Cache = Cache::new("accounts", Duration::from_secs(300));
//! async fn account_by_hand(id: u64) -> Result<String, LookupError> {
//!     let options = CacheOptions::new(Duration::from_secs(300)).cache_err(Duration::from_secs(5));
//!     ACCOUNTS
//!         .try_get_or_compute_with_err(&format!("account:{id}"), &options, move || async move {
//!             if id == 0 { Err(LookupError::NotFound) } else { Ok(format!("account {id}")) }
//!         })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(account(0).await, Err(LookupError::NotFound));
//! assert!(ACCOUNTS.exists("account:0").await.unwrap(), "the Err is stored");
//! assert_eq!(account_by_hand(0).await, Err(LookupError::NotFound));
//! # }
//! ```
//!
//! ### `jitter`
//!
//! Each entry's TTL loses up to `jitter` of itself at random, so that
//! entries written together (after a deploy, a cold start) do not expire
//! together. A percentage: `jitter = "10%"` or `jitter = 10`; the default
//! is [`Config::jitter`] (none).
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[cached(ttl = 600, jitter = "10%", namespace = "profiles", key = "profile:{id}")]
//! async fn profile(id: u64) -> String {
//!     format!("profile {id}")
//! }
//!
//! // The same, written by hand:
//! static PROFILES: Cache = Cache::new("profiles", Duration::from_secs(600));
//! async fn profile_by_hand(id: u64) -> String {
//!     let options = CacheOptions::new(Duration::from_secs(600)).jitter(10);
//!     PROFILES
//!         .get_or_compute_with(&format!("profile:{id}"), &options, move || async move { format!("profile {id}") })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! profile(1).await;
//! let ttl = PROFILES.ttl("profile:1").await.unwrap().unwrap();
//! assert!(ttl <= Duration::from_secs(600) && ttl > Duration::from_secs(530));
//! assert_eq!(profile_by_hand(2).await, "profile 2");
//! # }
//! ```
//!
//! ### `unless` and `ttl_from`
//!
//! Hooks on the value, written as closures (or paths of functions), never
//! as strings: `unless` keeps a value for which it returns `true` out of
//! the cache, and `ttl_from` gives each value its own TTL
//! (`Duration::ZERO`: do not store it). The closure takes `&T` (the `Ok`
//! value of a `Result`; with `cache_err`, the whole `Result`), and the
//! compiler checks its type where it is written.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, CacheOptions, cached};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Report {
//!     partial: bool,
//!     fresh_for_secs: u64,
//! }
//!
//! #[cached(
//!     ttl = 60,
//!     namespace = "reports",
//!     key = "report:{day}",
//!     unless = |r: &Report| r.partial,
//!     ttl_from = |r: &Report| Duration::from_secs(r.fresh_for_secs)
//! )]
//! async fn report(day: u32) -> Report {
//!     Report { partial: day == 0, fresh_for_secs: 30 }
//! }
//!
//! // The same, written by hand:
//! static REPORTS: Cache = Cache::new("reports", Duration::from_secs(60));
//! async fn report_by_hand(day: u32) -> Report {
//!     let options = CacheOptions::new(Duration::from_secs(60))
//!         .unless(|r: &Report| r.partial)
//!         .ttl_from(|r: &Report| Duration::from_secs(r.fresh_for_secs));
//!     REPORTS
//!         .get_or_compute_with(&format!("report:{day}"), &options, move || async move {
//!             Report { partial: day == 0, fresh_for_secs: 30 }
//!         })
//!         .await
//! }
//! # #[tokio::main] async fn main() {
//! report(0).await;
//! assert!(!REPORTS.exists("report:0").await.unwrap(), "a partial report is not stored");
//! report(1).await;
//! assert!(REPORTS.ttl("report:1").await.unwrap().unwrap() <= Duration::from_secs(30));
//! report_by_hand(2).await;
//! # }
//! ```
//!
//! ### `scope = "process"` and `max_entries`
//!
//! Entries stay in this process, whatever the store: in a map of the
//! function's own, bounded by `max_entries` (default 10 000), as values (a
//! hit is a lookup and a clone). The value needs `Clone + Send + Sync`, and
//! no serde: a compiled regex, a connection handle, an `Arc` of anything.
//! Typed and pattern invalidations of this process, `name_invalidate`, TTLs,
//! tags, `stale`, `fail_safe`, timeouts and hooks work as elsewhere; `lock`,
//! `local`, `codec` and `compress` do not apply.
//!
//! It is also the scope that caches a plain `fn`: with no I/O to await, a
//! sync function can be cached in process (a shared store needs I/O, so a
//! plain `fn` without `scope = "process"` does not compile). Its callers of
//! one key share one computation; `stale`, `refresh`, the timeouts and
//! `fail_safe` need a task and are refused; `name_key` and
//! `name_invalidate` (async) are its companions.
//!
//! ```
//! use std::sync::Arc;
//! use cachekit::cached;
//!
//! /// Not serde: compiled once, shared.
//! #[derive(Clone)]
//! struct Rules(Arc<Vec<String>>);
//!
//! #[cached(scope = "process", max_entries = 1_000, ttl = 600, key = "rules:{tenant}")]
//! async fn rules(tenant: u64) -> Rules {
//!     Rules(Arc::new(vec![format!("tenant {tenant}")]))
//! }
//!
//! #[cached(scope = "process", ttl = 60, key = "slug:{title}")]
//! fn slug(title: &str) -> String {
//!     title.to_lowercase().replace(' ', "-")
//! }
//! # #[tokio::main] async fn main() {
//! let a = rules(1).await;
//! assert!(Arc::ptr_eq(&a.0, &rules(1).await.0), "a hit is a clone of the one value");
//! assert_eq!(slug("Hello World"), "hello-world");
//! cachekit::invalidate("slug:*").await.unwrap();
//! # }
//! ```
//!
//! There is no `Cache` handle for process scope; the function's entries are
//! reached through its companions and `#[invalidate]`.
//!
//! ### `batch`
//!
//! For a function of many ids: each id has its own entry (the key must use
//! the collection parameter), all are read in one round trip, and the body
//! runs for the missing ids only. A batch function has no companions (and
//! so no typed `#[invalidate]` target): its entries are those of a
//! function of one id with the same key template, or of the template
//! itself. By hand, with [`Cache::get_many`] and [`Cache::set_many`]:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use cachekit::{Cache, cached};
//!
//! #[cached(ttl = 60, namespace = "names", key = "name:{ids}", batch = ids)]
//! async fn names(ids: Vec<u64>) -> HashMap<u64, String> {
//!     ids.into_iter().map(|id| (id, format!("user {id}"))).collect()
//! }
//!
//! static NAMES: Cache = Cache::new("names", Duration::from_secs(60));
//! async fn names_by_hand(ids: Vec<u64>) -> Result<HashMap<u64, String>, cachekit::Error> {
//!     let keys: Vec<String> = ids.iter().map(|id| format!("name:{id}")).collect();
//!     let found: Vec<Option<String>> = NAMES.get_many(&keys).await?;
//!     let mut out = HashMap::new();
//!     let mut missing = Vec::new();
//!     for (id, value) in ids.into_iter().zip(found) {
//!         match value {
//!             Some(name) => drop(out.insert(id, name)),
//!             None => missing.push(id),
//!         }
//!     }
//!     let computed: Vec<(String, String)> =
//!         missing.iter().map(|id| (format!("name:{id}"), format!("user {id}"))).collect();
//!     NAMES.set_many(&computed).await?;
//!     out.extend(missing.into_iter().zip(computed.into_iter().map(|(_, name)| name)));
//!     Ok(out)
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(names(vec![1, 2]).await[&2], "user 2");
//! assert_eq!(names_by_hand(vec![2, 3]).await.unwrap()[&2], "user 2");
//! # }
//! ```
//!
//! ### `companions`
//!
//! For each cached function `name`, three companions take the same
//! arguments: `name_key(...) -> String` renders its key (as the template
//! does, without prefix or namespace), `name_refresh(...)` recomputes and
//! stores whatever is cached, and `name_invalidate(...)` deletes the entry.
//! For a method they are methods (`repo.find_key(7)`); for a free function,
//! functions beside it. A hidden entry beside them is what typed
//! `#[invalidate]` targets call.
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
//! A trait impl holds only the trait's items, so a cached method there
//! needs `companions = false`; without it, the error says so. An associated
//! function without `self` is taken for a free function unless its
//! signature names `Self`: write `companions = false` on one that does not.
//!
//! ```
//! use cachekit::cached;
//!
//! trait Store {
//!     async fn find(&self, id: u64) -> String;
//! }
//!
//! struct Heroes;
//!
//! impl Store for Heroes {
//!     #[cached(ttl = 60, key = "hero:{id}", companions = false)]
//!     async fn find(&self, id: u64) -> String {
//!         format!("hero {id}")
//!     }
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(Heroes.find(1).await, "hero 1");
//! # }
//! ```
//!
//! ### `crate`
//!
//! Generated code reaches cachekit by `::cachekit`; under another name,
//! say where it is.
//!
//! ```
//! use cachekit as caching;
//! use caching::cached;
//!
//! #[cached(ttl = 60, key = "n:{n}", crate = "caching")]
//! async fn double(n: u64) -> u64 {
//!     n * 2
//! }
//! # #[tokio::main] async fn main() {
//! assert_eq!(double(2).await, 4);
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
//! ### Typed targets: name the cached function
//!
//! A target written as a call, `#[invalidate(get_hero(id))]`, names the
//! cached function's entry for those arguments, with its namespace, key
//! prefix and template: it deletes exactly what `get_hero_invalidate(id)`
//! deletes. The compiler resolves it, so a wrong name or wrong arguments
//! do not compile. This is the form to prefer.
//!
//! ```
//! use cachekit::{cached, invalidate};
//!
//! #[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
//! async fn get_hero(id: u64) -> String {
//!     format!("hero {id}")
//! }
//!
//! #[invalidate(get_hero(id))]
//! async fn rename_hero(id: u64, name: String) -> Result<(), String> {
//!     let _ = name; // the write
//!     Ok(())
//! }
//!
//! // The same, written by hand:
//! async fn rename_hero_by_hand(id: u64, name: String) -> Result<(), String> {
//!     let _ = name;
//!     get_hero_invalidate(id).await.ok(); // an invalidation error is logged, not returned
//!     Ok(())
//! }
//! # #[tokio::main] async fn main() {
//! # get_hero(1).await;
//! rename_hero(1, "Ada".into()).await.unwrap();
//! rename_hero_by_hand(1, "Ada".into()).await.unwrap();
//! # }
//! ```
//!
//! The arguments are Rust expressions, evaluated before the body runs; the
//! body may consume what they borrow or move, so write
//! `get_user(name.clone())` to keep using `name`. A method is named through
//! its type: `#[invalidate(Self::find(self, id))]`, `Repo::find(&repo, id)`;
//! a function of another module by its path, `heroes::get_hero(id)`. The
//! function needs its companions (`companions = false`, as in a trait impl,
//! leaves it no entry to name).
//!
//! ```
//! use cachekit::{cached, invalidate};
//!
//! struct Repo {
//!     region: String,
//! }
//!
//! impl Repo {
//!     #[cached(ttl = 60, namespace = "repo", key = "{self.region}:{id}")]
//!     async fn find(&self, id: u64) -> String {
//!         format!("{}/{id}", self.region)
//!     }
//!
//!     #[invalidate(Self::find(self, id))]
//!     async fn save(&self, id: u64) {
//!         let _ = id; // the write
//!     }
//! }
//! # #[tokio::main] async fn main() {
//! let repo = Repo { region: "eu".into() };
//! repo.find(1).await;
//! repo.save(1).await;
//! # }
//! ```
//!
//! ### Key templates and patterns: keys built by hand
//!
//! A string target is a key template (`"user:{id}"`: one key) or a glob
//! pattern (`"users:page:*"`, `?` for one character), rendered as keys are.
//! It is resolved outside any namespace: **a string template does not reach
//! into a namespace** unless `within = "..."` names it. So beside
//! `#[cached(namespace = "villains", key = "villain:{id}")]`,
//! `"villain:{id}"` alone deletes nothing of it; `within = "villains"` (or
//! the typed target) does.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{Cache, cached, invalidate};
//!
//! #[cached(ttl = 60, namespace = "villains", key = "villain:{id}")]
//! async fn get_villain(id: u64) -> String {
//!     format!("villain {id}")
//! }
//!
//! #[invalidate("villain:{id}", within = "villains")]
//! async fn save_villain(id: u64) {
//!     let _ = id;
//! }
//!
//! // The same, written by hand:
//! static VILLAINS: Cache = Cache::new("villains", Duration::from_secs(60));
//! async fn save_villain_by_hand(id: u64) {
//!     VILLAINS.delete(&format!("villain:{}", cachekit::render_key(&id))).await.ok();
//! }
//! # #[tokio::main] async fn main() {
//! get_villain(1).await;
//! save_villain(1).await;
//! assert!(!VILLAINS.exists("villain:1").await.unwrap());
//! get_villain(1).await;
//! save_villain_by_hand(1).await;
//! assert!(!VILLAINS.exists("villain:1").await.unwrap());
//! # }
//! ```
//!
//! A pattern `within` a namespace matches the keys of its current
//! generation, as `#[invalidate("villain:*", within = "villains")]`. Outside
//! namespaces, a template is [`invalidate()`] of its rendering:
//! `#[invalidate("users:page:*")]` runs `cachekit::invalidate("users:page:*")`.
//!
//! ### `tags`, `namespace`, `before` and `crate`
//!
//! `tags = ["org:{org_id}"]` runs [`invalidate_tag`] on each rendered tag,
//! `namespace = "heroes"` runs [`invalidate_namespace`], and
//! `before = true` invalidates before the body instead of after its
//! success. `crate` is as for `#[cached]`.
//!
//! ```
//! use cachekit::{cached, invalidate};
//!
//! #[cached(ttl = 60, key = "team-member:{org_id}:{id}", tags = ["org:{org_id}"])]
//! async fn team_member(org_id: u64, id: u64) -> String {
//!     format!("{org_id}/{id}")
//! }
//!
//! #[invalidate(tags = ["org:{org_id}"], before = true)]
//! async fn reorganize(org_id: u64) -> Result<(), String> {
//!     // By hand: `cachekit::invalidate_tag(&format!("org:{org_id}")).await`, then the body.
//!     let _ = org_id;
//!     Ok(())
//! }
//! # #[tokio::main] async fn main() {
//! team_member(43, 1).await;
//! reorganize(43).await.unwrap();
//! assert_eq!(cachekit::invalidate_tag("org:43").await.unwrap(), 0, "already gone");
//! # }
//! ```
//!
//! ### Typed keys
//!
//! `#[derive(CacheKey)]` makes a struct a key part with its own template,
//! and gives it a pattern builder whose unset fields match anything.
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
//! ## Testing
//!
//! `#[cachekit::test]` is `#[tokio::test]` (same options) whose test gets an
//! empty cache of its own: tests running in parallel in one binary never
//! see each other's entries, even under the same keys, and tasks a test
//! spawns use its cache. Expiry follows tokio's clock, so `start_paused =
//! true` and `tokio::time::advance` expire entries without waiting.
//! `#[cachekit::test(redis)]` puts the test's cache on the Redis of
//! `REDIS_URL` (or `redis = url`: the server at `url`), under a key prefix
//! of its own that is deleted when the test ends. [`assert_cached!`] and [`assert_not_cached!`] say whether a call
//! would hit, and [`testing`] injects faults and reads the test's counters.
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{assert_cached, assert_not_cached, cached, testing};
//!
//! #[cached(ttl = 5, key = "user:{id}")]
//! async fn get_user(id: u64) -> String {
//!     format!("user {id}")
//! }
//!
//! #[cachekit::test(start_paused = true)]
//! async fn users_expire() {
//!     get_user(7).await;
//!     assert_cached!(get_user(7));
//!     tokio::time::advance(Duration::from_secs(6)).await;
//!     assert_not_cached!(get_user(7));
//! }
//!
//! #[cachekit::test]
//! async fn a_dead_cache_is_not_an_error() {
//!     testing::faults().fail_all();
//!     assert_eq!(get_user(7).await, "user 7");
//!     assert!(testing::stats().errors > 0);
//! }
//! # fn main() {}
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
//! ## HTTP
//!
//! With the `http` feature, `cachekit::http::CacheLayer` caches the
//! responses of any tower service, axum routers and handlers above all, on
//! the same engine, store and invalidation as `#[cached]`: `GET` and `HEAD`
//! responses per path, query and the values of the headers it varies by
//! (hashed, never in clear), one call of the service for concurrent misses,
//! `stale`, `fail_safe` and timeouts as above, `Cache-Status` (RFC 9211),
//! `Age`, a strong `ETag` and `304 Not Modified` from the cache. Entries
//! live in the layer's namespace, under tags computed from the request, so
//! that [`invalidate_namespace`] and [`invalidate_tag`] reach them.
//! `cachekit::http::stats_service()` (also named `stats_router()`) serves
//! [`stats()`] and [`health()`] as JSON, for a `/cache` route.
//!
//! ```
//! # #[cfg(feature = "http")]
//! # mod doc {
//! use std::time::Duration;
//! use axum::{Router, http::HeaderMap, routing::get};
//! use cachekit::http::CacheLayer;
//!
//! async fn report(headers: HeaderMap) -> String {
//!     // an expensive query for the caller
//! #   let _ = headers;
//!     "the report".to_owned()
//! }
//!
//! fn app() -> Router {
//!     Router::new()
//!         .route("/report", get(report))
//!         .layer(
//!             CacheLayer::new()
//!                 .namespace("web")
//!                 .ttl(Duration::from_secs(5))
//!                 .vary_by("authorization")
//!                 .tags(|request| vec![format!("page:{}", request.uri.path())]),
//!         )
//!         .route_service("/cache", cachekit::http::stats_service())
//! }
//!
//! # pub async fn main() {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}/report", listener.local_addr().unwrap());
//! tokio::spawn(async move { axum::serve(listener, app()).await });
//!
//! let first = reqwest::get(&url).await.unwrap();
//! assert_eq!(first.headers()["cache-status"], "cachekit; fwd=miss; fwd-status=200; stored");
//! let second = reqwest::get(&url).await.unwrap();
//! assert!(second.headers()["cache-status"].to_str().unwrap().starts_with("cachekit; hit"));
//! assert_eq!(second.text().await.unwrap(), "the report");
//!
//! cachekit::invalidate_tag("page:/report").await.unwrap(); // the next GET is a miss
//! # }
//! # }
//! # #[tokio::main]
//! # async fn main() {
//! #     #[cfg(feature = "http")]
//! #     doc::main().await;
//! # }
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

pub use cachekit_macros::{CacheKey, assert_cached, assert_not_cached, cached, invalidate, test};
pub use cachekit_runtime::*;

/// Support for the code the macros generate. Not a stable API: it changes
/// without notice. Do not use it directly.
#[doc(hidden)]
pub mod __private {
    pub use cachekit_runtime::__private::*;
}
