use cachekit::{cached, invalidate};

#[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
async fn get_hero(id: u64) -> u64 {
    id
}

#[invalidate(get_hero(id), within = "heroes")]
async fn save_hero(id: u64) {
    let _ = id;
}

fn main() {}
