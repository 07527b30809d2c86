use cachekit::cached;

#[cached(ttl = 60, stale = "30s", fail_safe_throttle = "10s")]
async fn quote(symbol: String) -> f64 {
    symbol.len() as f64
}

fn main() {}
