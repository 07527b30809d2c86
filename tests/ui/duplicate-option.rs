use cachekit::cached;

#[cached(ttl = 5, ttl = 10)]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
