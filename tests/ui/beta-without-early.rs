use cachekit::cached;

#[cached(ttl = 5, beta = 2.0)]
async fn value(n: u64) -> u64 {
    n
}

fn main() {}
