use cachekit::cached;

#[cached(ttl = 5, cache_none = "no")]
async fn maybe(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
