//! Procedural macros of [cachekit](https://docs.rs/cachekit): `#[cached]`,
//! `#[invalidate]` and `#[derive(CacheKey)]`.
//!
//! Use them through the `cachekit` crate, whose documentation has the full
//! guide with examples. This crate only turns attributes into calls to
//! `cachekit::__private`; every policy lives in the runtime.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

use proc_macro::TokenStream;

mod attr;
mod derive;
mod errors;
mod expand;
mod template;

/// Caches an `async fn`: get, or compute and set, against the global cache.
///
/// ```text
/// #[cached(ttl = 5, key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, DbError> { ... }
/// ```
///
/// Options: `ttl` (seconds, or `"90s"`, `"5m"`, `"1h"`), `key` (a template
/// whose `{placeholders}` name parameters or field paths; `{{`/`}}` are
/// literal braces; default: the function's path and all its arguments),
/// `namespace`, `cache_none`, `tags`, `lock`, `lock_ttl`, `refresh = "early"`
/// (with `beta`), `stale`, `local`, `codec`, `compress`, `companions` and
/// `crate`. See the `cachekit` documentation.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Invalidates keys, patterns, tags or namespaces when an `async fn`
/// succeeds (or before it runs, with `before = true`).
///
/// ```text
/// #[invalidate("user:{id}", "users:page:*", tags = ["org:{org_id}"])]
/// async fn update_user(id: u64, org_id: u64, user: User) -> Result<(), DbError> { ... }
/// ```
#[proc_macro_attribute]
pub fn invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidate(args.into(), item.into()).into()
}

/// Makes a struct a typed cache key: it implements `KeyPart` and
/// `CacheKey`, and gets a `{Name}Pattern` builder for invalidation.
///
/// ```text
/// #[derive(CacheKey)]
/// #[cache_key("hero:{lang}:{id}")]
/// struct HeroQuery { lang: String, id: u64, #[cache_key(skip)] trace: String }
/// ```
#[proc_macro_derive(CacheKey, attributes(cache_key))]
pub fn derive_cache_key(input: TokenStream) -> TokenStream {
    expand::derive_cache_key(input.into()).into()
}
