use cachekit::CacheKey;

struct Opaque;

#[derive(CacheKey)]
struct Query {
    id: u64,
    filter: Opaque,
}

fn main() {}
