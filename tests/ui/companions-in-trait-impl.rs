use cachekit::cached;

trait Store {
    async fn find(&self, id: u64) -> String;
}

struct Repo;

impl Store for Repo {
    #[cached(ttl = 60, key = "repo:{id}")]
    async fn find(&self, id: u64) -> String {
        format!("hero {id}")
    }
}

fn main() {}
