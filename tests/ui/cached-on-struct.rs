use cachekit::cached;

#[cached(ttl = 5)]
struct User {
    id: u64,
}

fn main() {
    let _ = User { id: 1 }.id;
}
