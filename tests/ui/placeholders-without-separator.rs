use cachekit::{CacheKey, cached};

#[cached(ttl = 5, key = "pair:{a}-{b}")]
async fn pair(a: String, b: String) -> String {
    a + &b
}

#[derive(CacheKey)]
#[cache_key("{x}{y}")]
struct Joined {
    x: String,
    y: String,
}

fn main() {}
