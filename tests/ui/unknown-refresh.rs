use cachekit::cached;

#[cached(ttl = 5, refresh = "late")]
async fn value(n: u64) -> u64 {
    n
}

fn main() {}
