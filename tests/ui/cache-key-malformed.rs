use cachekit::CacheKey;

#[derive(CacheKey)]
#[cache_key(hero)]
struct HeroQuery {
    id: u64,
}

fn main() {}
