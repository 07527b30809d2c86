use std::time::Duration;

use cachekit::{Cache, CacheKey, cached, invalidate};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
}

#[derive(Clone, CacheKey)]
#[cache_key("q:{{literal}}:{lang}:{page}")]
struct Query {
    lang: String,
    page: u32,
}

#[cached(ttl = "90s", key = "user:{id}", namespace = "users", tags = ["org:{org}", "users"], cache_none = false)]
async fn get_user(id: u64, org: u64) -> Option<User> {
    let _ = org;
    Some(User { id })
}

#[cached(ttl = 5, refresh = "early", beta = 1.5, stale = "30s", lock = true, lock_ttl = "2s")]
async fn report(q: Query) -> Result<Vec<u64>, std::io::Error> {
    Ok(vec![u64::from(q.page)])
}

#[cached(key = "{q}", local = true, companions = false)]
async fn search(q: &Query) -> Vec<String> {
    vec![q.lang.clone()]
}

#[invalidate("user:{id}", "users:page:*", tags = ["org:{org}"], namespace = "users")]
async fn save_user(id: u64, org: u64) -> Result<(), String> {
    let _ = (id, org);
    Ok(())
}

struct Repo {
    region: String,
}

impl Repo {
    #[cached(ttl = 60, key = "repo:{self.region}:{id}")]
    async fn find(&self, id: u64) -> Result<User, String> {
        Ok(User { id })
    }

    #[invalidate("repo:{self.region}:{id}", before = true)]
    async fn remove(&self, id: u64) {
        let _ = id;
    }
}

#[cached(ttl = 60, key = "user:{tenant}:{ids}", batch = ids)]
async fn users(ids: &[u64], tenant: &str) -> Result<std::collections::HashMap<u64, User>, String> {
    let _ = tenant;
    Ok(ids.iter().map(|id| (*id, User { id: *id })).collect())
}

static SIGNUP: Cache = Cache::new("signup", Duration::from_secs(300));

fn main() {
    let _ = (get_user(1, 2), report(Query { lang: "en".into(), page: 1 }), search);
    let _ = (save_user(1, 2), get_user_key(1, 2), report_key(Query { lang: "en".into(), page: 1 }));
    let repo = Repo { region: "eu".into() };
    let _ = (repo.find(1), repo.find_key(1), repo.remove(1), &SIGNUP);
    let _ = Query::pattern().lang("en").build();
    let _ = users(&[1, 2], "t");
}
