use cachekit::cached;

#[cached(ttl = 60, scope = "thread")]
async fn settings(tenant: u64) -> Vec<String> {
    vec![tenant.to_string()]
}

fn main() {}
