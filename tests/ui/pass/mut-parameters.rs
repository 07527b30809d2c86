//! A parameter the body mutates keeps its `mut`, with no warning: neither
//! on the function nor on its companions.
#![deny(warnings)]

use std::collections::HashMap;

use cachekit::{cached, invalidate};

#[cached(ttl = 60, key = "count:{start}")]
async fn count_up(mut start: u32, times: u32) -> u32 {
    for _ in 0..times {
        start += 1;
    }
    start
}

#[cached(ttl = 60)]
async fn unkeyed(mut start: u32, (mut a, b): (u32, u32)) -> u32 {
    start += 1;
    a += b;
    start + a
}

#[cached(ttl = 60, key = "batch:{ids}", batch = ids)]
async fn batch(ids: Vec<u32>, mut offset: u32) -> HashMap<u32, u32> {
    offset += 1;
    ids.into_iter().map(|id| (id, id + offset)).collect()
}

#[invalidate("count:{start}")]
async fn reset(mut start: u32) -> u32 {
    start += 1;
    start
}

struct Counter {
    base: u32,
}

impl Counter {
    #[cached(ttl = 60, key = "counter:{self.base}:{step}")]
    async fn next(mut self, step: u32) -> u32 {
        self.base += step;
        self.base
    }
}

fn main() {
    let _ = (count_up(1, 2), count_up_key(1, 2), count_up_refresh(1, 2), count_up_invalidate(1, 2));
    let _ = (unkeyed(1, (2, 3)), batch(vec![1], 2), reset(1));
    let _ = Counter { base: 1 }.next(1);
    let _ = Counter { base: 1 }.next_key(1);
}
