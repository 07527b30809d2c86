use std::collections::HashMap;

use cachekit::cached;

#[cached(ttl = 60, key = "user:{tenant}", batch = ids)]
async fn users(ids: Vec<u64>, tenant: u32) -> HashMap<u64, u32> {
    ids.into_iter().map(|id| (id, tenant)).collect()
}

fn main() {}
