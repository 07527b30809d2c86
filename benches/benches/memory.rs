//! Memory per entry: of the embedded memory backend, and of the in-process
//! tier in front of Redis. Bytes held by the allocator (a counting global
//! allocator) before and after `N` entries are cached through `#[cached]`,
//! divided by `N`; RSS as a cross-check.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cachekit::LocalTierConfig;

#[path = "../support/mod.rs"]
mod support;

use support::{Plan, RedisServer, Report, User, bytes, load_user, run};

/// The system allocator, counting the bytes it holds.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counter is only arithmetic on the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[cachekit::cached(ttl = 3600, key = "user:{id}")]
async fn user(id: u64) -> User {
    load_user(id)
}

#[cachekit::cached(ttl = 3600, key = "user:{id}", local = true)]
async fn tier_user(id: u64) -> User {
    load_user(id)
}

struct Measured {
    heap: f64,
    rss: f64,
    payload: f64,
}

/// Caches `n` entries through `fill` and measures what stays allocated.
fn measure(n: u64, fill: impl AsyncFn(u64)) -> Measured {
    // Warm every lazy structure first (connections, maps, counters).
    run(async {
        for id in 0..100 {
            fill(u64::MAX - id).await;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let (heap_before, rss_before) = (live(), rss());
    run(async {
        for id in 0..n {
            fill(id).await;
        }
        // Let the store settle, and let every invalidation of the fill's
        // own writes arrive: the tier hears of its process's SETs through
        // `CLIENT TRACKING` too, and one that arrives after the read that
        // kept the entry drops it (more often the more workers there are).
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Then read every entry again, so that the store holds all of them.
        for id in 0..n {
            fill(id).await;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let (heap_after, rss_after) = (live(), rss());
    let payload: usize = (0..n)
        .map(|id| {
            format!("user:{id}").len() + serde_json::to_vec(&load_user(id)).expect("json").len()
        })
        .sum();
    Measured {
        heap: (heap_after - heap_before) as f64 / n as f64,
        rss: (rss_after - rss_before) as f64 / n as f64,
        payload: payload as f64 / n as f64,
    }
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start("memory", "Memory per entry", plan);
    let n = plan.n(100_000) as u64;

    run(async {
        cachekit::init(cachekit::Config::memory().memory_max_bytes(1 << 30))
            .await
            .expect("memory backend");
    });
    let memory = measure(n, async |id| {
        user(id).await;
    });

    let server = RedisServer::start();
    let url = server.url();
    run(async {
        let tier = LocalTierConfig {
            // Room for every entry: the point is their cost, not eviction.
            max_bytes: 1 << 30,
            max_ttl: Duration::from_secs(3600),
            ..LocalTierConfig::default()
        };
        cachekit::init(cachekit::Config::redis(&url).local_tier(tier))
            .await
            .expect("redis with a tier");
    });
    let tier = measure(n, async |id| {
        // A miss stores in Redis; the next read keeps the entry in process.
        tier_user(id).await;
        tier_user(id).await;
    });
    let before = cachekit::stats();
    // Every entry is held in process now: a third read of each is local.
    run(async {
        for id in 0..n {
            tier_user(id).await;
        }
    });
    let after = cachekit::stats();
    let local = after.function("tier_user").map_or(0, |c| c.local_hits)
        - before.function("tier_user").map_or(0, |c| c.local_hits);
    drop(server);

    report.text(&format!(
        "{n} entries of a 113-byte JSON record under keys `user:<id>`, cached through `#[cached]`; \
         bytes held by the allocator (a counting global allocator) after minus before, divided by {n}. \
         The payload is the key plus the stored JSON. Tier check: {local} of the last {n} reads were served in process."
    ));
    let row = |name: &str, m: &Measured| {
        vec![
            name.to_owned(),
            bytes(m.heap),
            bytes(m.payload),
            bytes(m.heap - m.payload),
            format!("{:.1}x", m.heap / m.payload),
            bytes(m.rss),
        ]
    };
    report.table(
        &[
            "store",
            "heap per entry",
            "payload per entry",
            "overhead per entry",
            "heap ÷ payload",
            "RSS per entry",
        ],
        &[
            row("memory backend (`Config::memory()`)", &memory),
            row("in-process tier (`local = true`)", &tier),
        ],
    );
    report.finish();
}
