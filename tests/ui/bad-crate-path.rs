use cachekit::cached;

#[cached(ttl = 5, crate = "my cachekit")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
