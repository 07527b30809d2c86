use cachekit::cached;

#[cached(ttl = 60, soft_timeout = "100ms")]
async fn quote(symbol: String) -> f64 {
    symbol.len() as f64
}

fn main() {}
