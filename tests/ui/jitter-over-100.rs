use cachekit::cached;

#[cached(ttl = 60, jitter = "150%")]
async fn quote(symbol: String) -> f64 {
    symbol.len() as f64
}

fn main() {}
