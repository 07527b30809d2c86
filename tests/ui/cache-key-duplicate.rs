use cachekit::CacheKey;

#[derive(CacheKey)]
#[cache_key("hero:{id}")]
#[cache_key("heroes:{id}")]
struct HeroQuery {
    id: u64,
}

fn main() {}
