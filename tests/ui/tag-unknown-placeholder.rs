use cachekit::cached;

#[cached(ttl = 5, key = "user:{id}", tags = ["org:{org}"])]
async fn get_user(id: u64, org_id: u64) -> u64 {
    id + org_id
}

fn main() {}
