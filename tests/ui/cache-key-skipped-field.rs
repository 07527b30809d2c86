use cachekit::CacheKey;

#[derive(CacheKey)]
#[cache_key("hero:{lang}:{trace}")]
struct HeroQuery {
    lang: String,
    #[cache_key(skip)]
    trace: String,
}

fn main() {}
