use cachekit::CacheKey;

#[derive(CacheKey)]
struct Release {
    version: String,
    build: u32,
}

fn main() {}
