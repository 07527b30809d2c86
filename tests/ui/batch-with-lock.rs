use std::collections::HashMap;

use cachekit::cached;

#[cached(ttl = 60, key = "user:{ids}", batch = ids, lock = true)]
async fn users(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
