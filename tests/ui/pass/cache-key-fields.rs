//! Fields a key does not write need nothing: a skipped `Instant`, a field
//! the template leaves out. Tuple structs and generic structs derive too.
#![deny(warnings)]

use std::time::Instant;

use cachekit::CacheKey;

struct Opaque;

#[derive(CacheKey)]
struct Query {
    lang: String,
    id: u64,
    #[cache_key(skip)]
    asked_at: Instant,
}

#[derive(CacheKey)]
#[cache_key("page:{number}")]
struct Page {
    number: u32,
    filter: Opaque,
}

#[derive(CacheKey)]
struct UserId(u64);

#[derive(CacheKey)]
#[cache_key("wrapped:{inner}")]
struct Wrapped<T> {
    inner: T,
    #[cache_key(skip)]
    note: Opaque,
}

fn main() {
    let q = Query { lang: "en".into(), id: 1, asked_at: Instant::now() };
    let _ = (q.lang.len(), q.id, q.asked_at);
    let page = Page { number: 1, filter: Opaque };
    let _ = (page.number, &page.filter);
    let _ = (Query::pattern().lang("en").build(), Page::pattern().number(2u32).build());
    let _ = (UserId(1).0, UserId::pattern().field_0(2u64).build());
    let w = Wrapped { inner: 5u32, note: Opaque };
    let _ = (w.inner, &w.note, Wrapped::<u32>::pattern().inner(1u32).build());
}
