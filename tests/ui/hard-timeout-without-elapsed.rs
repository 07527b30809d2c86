use cachekit::cached;

#[cached(ttl = 60, hard_timeout = "2s")]
async fn quote(symbol: String) -> Result<f64, String> {
    Ok(symbol.len() as f64)
}

#[cached(ttl = 60, hard_timeout = "2s")]
async fn rate(symbol: String) -> f64 {
    symbol.len() as f64
}

fn main() {}
