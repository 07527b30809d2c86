use std::collections::HashMap;

use cachekit::cached;

#[cached(ttl = 60, key = "user:{tenant}", batch = ids)]
async fn without_id_in_key(ids: Vec<u64>, tenant: u32) -> HashMap<u64, u32> {
    ids.into_iter().map(|id| (id, tenant)).collect()
}

#[cached(ttl = 60, key = "user:{ids}", batch = idz, lock = true)]
async fn unknown_param_and_lock(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
