use cachekit::CacheKey;

#[derive(CacheKey)]
enum Kind {
    A,
    B,
}

fn main() {}
