use cachekit::cached;

#[cached(ttl = 5, codec = "msgpack", compress = "yes")]
async fn value(n: u64) -> u64 {
    n
}

fn main() {}
