use cachekit::CacheKey;

#[derive(CacheKey)]
struct HeroQuery {
    id: u64,
    #[cache_key(skipp)]
    trace: String,
}

fn main() {}
