use cachekit::cached;

#[cached(ttl = 60, scope = "process", lock = true, local = true, codec = "msgpack")]
async fn settings(tenant: u64) -> Vec<String> {
    vec![tenant.to_string()]
}

fn main() {}
