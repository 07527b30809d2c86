//! `scope = "process"`: values need no serde, and plain functions can be
//! cached, with their companions and typed invalidation.
#![deny(warnings)]

use std::sync::Arc;

use cachekit::{cached, invalidate};

/// Not serde: a compiled set of rules, shared.
#[derive(Clone)]
struct Rules(Arc<Vec<String>>);

#[cached(scope = "process", max_entries = 100, ttl = 60, stale = "30s", key = "rules:{tenant}")]
async fn rules(tenant: &str) -> Rules {
    Rules(Arc::new(vec![tenant.to_owned()]))
}

#[cached(scope = "process", ttl = "90s", namespace = "math", key = "square:{n}", tags = ["math"], jitter = 10, unless = |v: &u64| *v == 0)]
fn square(n: u64) -> u64 {
    n * n
}

#[cached(scope = "process", ttl = 60, cache_err = "1s", cache_none = false)]
fn parse(text: &str) -> Result<Option<u64>, String> {
    text.parse().map(Some).map_err(|_| format!("not a number: {text}"))
}

#[invalidate(square(n))]
async fn forget_square(n: u64) {
    let _ = n;
}

fn main() {
    let _ = rules("t");
    assert_eq!(square(3), 9);
    assert_eq!(square_key(3), "square:3");
    let _ = square_invalidate(3);
    let _ = forget_square(3);
    assert!(parse("x").is_err());
    let _ = rules("t");
    let _: Rules = Rules(Arc::new(Vec::new()));
}
