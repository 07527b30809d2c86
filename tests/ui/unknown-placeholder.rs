use cachekit::cached;

#[cached(ttl = 5, key = "user:{idd}")]
async fn get_user(id: u64, name: String) -> u64 {
    let _ = name;
    id
}

fn main() {}
