use cachekit::cached;

#[cached(ttl = 5, namespace = "heroes:eu")]
async fn hero(id: u64) -> u64 {
    id
}

fn main() {}
