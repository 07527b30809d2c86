use cachekit::{cached, invalidate};

#[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
async fn get_hero(id: u64) -> String {
    format!("hero {id}")
}

#[invalidate(get_hero(id, name))]
async fn rename_hero(id: u64, name: String) {
    let _ = (id, name);
}

#[invalidate(get_hero(name))]
async fn save_hero(name: String) {
    let _ = name;
}

fn main() {}
