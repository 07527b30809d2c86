use cachekit::cached;

#[cached(ttl = 5, key = user_id)]
async fn get_user(user_id: u64) -> u64 {
    user_id
}

fn main() {}
