use std::time::Duration;

use cachekit::cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Report {
    partial: bool,
}

#[cached(ttl = 60, unless = |r: &String| r.is_empty())]
async fn report(day: u32) -> Report {
    Report { partial: day == 0 }
}

#[cached(ttl = 60, ttl_from = |r: &Report| if r.partial { 5 } else { 60 })]
async fn summary(day: u32) -> Report {
    Report { partial: day == 0 }
}

fn main() {
    let _ = Duration::ZERO;
}
