use cachekit::{assert_cached, cached};

struct Repo;

impl Repo {
    #[cached(ttl = 60, key = "user:{id}")]
    async fn find(&self, id: u64) -> String {
        id.to_string()
    }
}

async fn check(repo: &Repo) {
    assert_cached!(repo.find(7));
}

fn main() {
    let _ = check;
}
