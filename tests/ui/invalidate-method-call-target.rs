use cachekit::{cached, invalidate};

struct Repo;

impl Repo {
    #[cached(ttl = 60, key = "repo:{id}")]
    async fn find(&self, id: u64) -> u64 {
        id
    }

    #[invalidate(self.find(id))]
    async fn save(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
