use cachekit::cached;

#[cached(5, key = "user:{id}")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
