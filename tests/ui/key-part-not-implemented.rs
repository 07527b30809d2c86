use cachekit::cached;

struct Opaque {
    id: u64,
}

#[cached(ttl = 5, key = "user:{who}")]
async fn get_user(who: Opaque) -> u64 {
    who.id
}

fn main() {}
