use cachekit::cached;

#[cached(tll = 5, key = "user:{id}")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
