use cachekit::cached;

#[cached(ttl = 5, key = "user:\t{id}")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
