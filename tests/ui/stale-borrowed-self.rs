use cachekit::cached;

struct Repo {
    region: String,
}

impl Repo {
    #[cached(ttl = 60, refresh = "early", key = "repo:{self.region}:{id}")]
    async fn find(&self, id: u64) -> String {
        format!("{}/{id}", self.region)
    }
}

fn main() {}
