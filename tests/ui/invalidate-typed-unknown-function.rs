use cachekit::{cached, invalidate};

#[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
async fn get_hero(id: u64) -> String {
    format!("hero {id}")
}

#[invalidate(get_hreo(id))]
async fn save_hero(id: u64) {
    let _ = id;
}

fn main() {}
