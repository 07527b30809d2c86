use cachekit::cached;

#[cached(ttl = 5, key = "")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
