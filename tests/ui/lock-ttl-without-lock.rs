use cachekit::cached;

#[cached(ttl = 5, lock_ttl = "2s")]
async fn value(n: u64) -> u64 {
    n
}

fn main() {}
