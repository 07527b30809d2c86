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
//! the annotated item, `render` writes keys, and `cached`, `invalidate` and
//! `derive` expand. Every error has a code in `errors`, and a compile-fail
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

/// Caches an `async fn`: get, or compute and set, against the global cache.
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
/// Options: `ttl` (seconds, or `"90s"`, `"5m"`, `"1h"`), `key` (a template
/// whose `{placeholders}` name parameters or field paths; `{{`/`}}` are
/// literal braces; default: the function's path, its type arguments and all
/// its arguments), `namespace`, `cache_none`, `tags`, `lock`, `lock_ttl`,
/// `refresh = "early"` (with `beta`), `stale`, `local`, `codec`,
/// `compress`, `batch`, `companions` and `crate`. The `cachekit` crate
/// documents each one next to the runtime call it stands for.
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
