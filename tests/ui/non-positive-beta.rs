use cachekit::cached;

#[cached(ttl = 5, refresh = "early", beta = 0)]
async fn value(n: u64) -> u64 {
    n
}

fn main() {}
