use std::borrow::Cow;

use cachekit::cached;

#[cached(ttl = 60, stale = "30s", key = "rows")]
async fn rows<'a>(
    buffer: &mut Vec<u64>,
    label: impl std::fmt::Display,
    text: Cow<'a, str>,
    (from, to): (u64, u64),
) -> Vec<u64> {
    buffer.push(from + to);
    let _ = (label.to_string(), text);
    buffer.clone()
}

fn main() {}
