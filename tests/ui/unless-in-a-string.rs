use cachekit::cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Report {
    partial: bool,
}

#[cached(ttl = 60, unless = "r.partial")]
async fn report(day: u32) -> Report {
    Report { partial: day == 0 }
}

fn main() {}
