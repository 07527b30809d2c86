use cachekit::CacheKey;

#[derive(CacheKey)]
#[cache_key("hero:{language}:{id}")]
struct HeroQuery {
    lang: String,
    id: u64,
}

fn main() {}
