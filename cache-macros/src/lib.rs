//! Procedural macros of [cachekit](https://docs.rs/cachekit): `#[cached]`,
//! `#[invalidate]` and `#[derive(CacheKey)]`.
//!
//! Use them through the `cachekit` crate, whose documentation has the full
//! guide, with each option next to the code it stands for. This crate only
//! turns attributes into calls to `cachekit::__private`; every policy lives
//! in the runtime.
//!
//! The stages, one module each: `attr` parses the arguments, `template`
//! parses key templates (pure, no `syn`), `check` validates them against
//! the annotated item, `render` writes keys, and `cached`, `invalidate`,
//! `derive` and `testing` (`#[cachekit::test]`, `assert_cached!`) expand. Every error has a code in `errors`, and a compile-fail
//! case in `tests/ui/`.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

use proc_macro::TokenStream;

mod attr;
mod cached;
mod check;
mod derive;
mod errors;
mod func;
mod invalidate;
mod render;
mod template;
mod testing;

/// Caches an `async fn` (or, with `scope = "process"`, a plain `fn`): get,
/// or compute and set, against the global cache.
///
/// ```
/// use cachekit::cached;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct User { id: u64 }
/// # #[derive(Debug)] struct DbError;
///
/// #[cached(ttl = 5, key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, DbError> {
///     Ok(User { id }) // the database query
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(get_user(7).await.unwrap().id, 7);
/// assert_eq!(get_user_key(7), "user:7");
/// # }
/// ```
///
/// Options: `ttl` (seconds, or `"90s"`, `"1.5s"`, `"5m"`, `"1h"`: the
/// runtime's parser reads durations, at compile time), `key` (a template
/// whose `{placeholders}` name parameters or field paths; `{{`/`}}` are
/// literal braces; default: the function's path, its type arguments and all
/// its arguments), `namespace`, `cache_none`, `tags`, `lock`, `lock_ttl`,
/// `refresh = "early"` (with `beta`), `stale`, `local`, `codec`,
/// `compress`, the latency options `fail_safe`, `fail_safe_throttle`,
/// `soft_timeout`, `hard_timeout`, `cache_err`, `jitter`, the hooks
/// `unless` and `ttl_from` (closures), `scope = "process"` (with
/// `max_entries`; also on a plain `fn`), `batch`, `companions` and `crate`.
/// The `cachekit` crate documents each one next to the runtime call it
/// stands for.
///
/// Beside the function come its companions, `{name}_key`, `{name}_refresh`
/// and `{name}_invalidate`, and a hidden entry that `#[invalidate]`'s typed
/// targets call. A trait impl cannot hold them: write `companions = false`
/// there.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cached::expand(args.into(), item.into()).into()
}

/// Invalidates cached entries, keys, patterns, tags or namespaces when an
/// `async fn` succeeds (or before it runs, with `before = true`).
///
/// A target written as a call names a cached function's entry for those
/// arguments, with its namespace and template, and the compiler checks it:
///
/// ```
/// use cachekit::{cached, invalidate};
///
/// #[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
/// async fn get_hero(id: u64) -> String {
///     format!("hero {id}")
/// }
///
/// #[invalidate(get_hero(id), "heroes:page:*", tags = ["team:{team}"])]
/// async fn save_hero(id: u64, team: u64, name: String) -> Result<(), String> {
///     let _ = (team, name); // the write
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # get_hero(1).await;
/// save_hero(1, 7, "Ada".into()).await.unwrap();
/// # }
/// ```
///
/// Prefer that typed form. A string target is a key template or a glob
/// pattern for keys built by hand, and it is resolved outside any
/// namespace: it does not reach a namespaced entry unless
/// `within = "..."` names the namespace.
///
/// The arguments of typed targets are evaluated before the body runs:
/// write `get_user(name.clone())` to keep a value the body consumes. A
/// method is named through its type (`Self::find(self, id)`), a function
/// of another module by its path (`heroes::get_hero(id)`).
#[proc_macro_attribute]
pub fn invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidate::expand(args.into(), item.into()).into()
}

/// Makes a struct a typed cache key: it implements `KeyPart` and
/// `CacheKey`, and gets a `{Name}Pattern` builder for invalidation.
///
/// ```
/// use cachekit::CacheKey;
///
/// #[derive(CacheKey)]
/// #[cache_key("hero:{lang}:{id}")]
/// struct HeroQuery {
///     lang: String,
///     id: u64,
///     #[cache_key(skip)]
///     asked_at: std::time::Instant,
/// }
///
/// let q = HeroQuery { lang: "en".into(), id: 7, asked_at: std::time::Instant::now() };
/// assert_eq!(cachekit::CacheKey::cache_key(&q), "hero:en:7");
/// assert_eq!(HeroQuery::pattern().lang("en").build(), "hero:en:*");
/// ```
///
/// Without `#[cache_key("...")]` the key is the struct's name and every
/// field that is not skipped: `HeroQuery:{lang}:{id}`.
#[proc_macro_derive(CacheKey, attributes(cache_key))]
pub fn derive_cache_key(input: TokenStream) -> TokenStream {
    derive::expand(input.into()).into()
}

/// A test with its own empty cache: `#[tokio::test]`, with the same
/// options (`flavor = "multi_thread"`, `worker_threads = N`,
/// `start_paused = true`), whose cached functions, `Cache` handles and
/// invalidations use a cache of the test's own. Tests running in parallel
/// in one binary never see each other's entries.
///
/// `#[cachekit::test(redis)]` puts that cache on the Redis server of
/// `REDIS_URL`, under a key prefix of its own, and deletes its keys when
/// the test ends; `#[cachekit::test(redis = url)]` on the server at `url`
/// (an expression, evaluated when the test starts: a harness's server).
///
/// ```
/// use cachekit::cached;
///
/// #[cached(ttl = 5, key = "user:{id}")]
/// async fn get_user(id: u64) -> String {
///     format!("user {id}")
/// }
///
/// #[cachekit::test(start_paused = true)]
/// async fn entries_expire() {
///     cachekit::assert_not_cached!(get_user(7));
///     get_user(7).await;
///     cachekit::assert_cached!(get_user(7));
///     tokio::time::advance(std::time::Duration::from_secs(6)).await;
///     cachekit::assert_not_cached!(get_user(7));
/// }
/// # fn main() {}
/// ```
///
/// Expiry in the test's cache follows tokio's clock, so that
/// `start_paused = true` and `tokio::time::advance` expire entries at once.
/// [`cachekit::testing`](https://docs.rs/cachekit/latest/cachekit/testing/)
/// injects faults into the test's store and reads its counters.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    testing::expand_test(args.into(), item.into()).into()
}

/// Asserts that a call of a cached function would be a hit: its entry for
/// these arguments is fresh. The call is written as it would be, without
/// `.await` (it does not run); the assertion awaits the cache, so it is
/// used in async code. An optional message follows, as in `assert!`.
///
/// ```
/// use cachekit::{assert_cached, assert_not_cached, cached};
///
/// #[cached(ttl = 60, key = "user:{id}")]
/// async fn get_user(id: u64) -> String {
///     format!("user {id}")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_not_cached!(get_user(7));
/// get_user(7).await;
/// assert_cached!(get_user(7), "after the first call");
/// get_user_invalidate(7).await.unwrap();
/// assert_not_cached!(get_user(7));
/// # }
/// ```
///
/// A method is named through its type, the receiver first:
/// `assert_cached!(Repo::find(&repo, 7))`.
#[proc_macro]
pub fn assert_cached(input: TokenStream) -> TokenStream {
    testing::expand_assert(input.into(), true).into()
}

/// Asserts that a call of a cached function would not be a hit: its entry
/// for these arguments is absent, expired or being computed. See
/// [`assert_cached!`].
#[proc_macro]
pub fn assert_not_cached(input: TokenStream) -> TokenStream {
    testing::expand_assert(input.into(), false).into()
}
