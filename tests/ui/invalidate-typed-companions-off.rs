use cachekit::{cached, invalidate};

trait Store {
    async fn find(&self, id: u64) -> String;
}

struct Repo;

impl Store for Repo {
    #[cached(ttl = 60, key = "repo:{id}", companions = false)]
    async fn find(&self, id: u64) -> String {
        format!("hero {id}")
    }
}

impl Repo {
    #[invalidate(Self::find(self, id))]
    async fn save(&self, id: u64) {
        let _ = id;
    }
}

#[cached(ttl = 60, key = "hero:{id}", companions = false)]
async fn get_hero(id: u64) -> String {
    format!("hero {id}")
}

#[invalidate(get_hero(id))]
async fn save_hero(id: u64) {
    let _ = id;
}

fn main() {}
