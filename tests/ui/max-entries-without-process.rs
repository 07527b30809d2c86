use cachekit::cached;

#[cached(ttl = 60, max_entries = 1_000)]
async fn settings(tenant: u64) -> Vec<String> {
    vec![tenant.to_string()]
}

fn main() {}
