//! The byte bounds are honest in RSS: `memory_max_bytes` bounds the growth
//! of the process's resident memory over 1M small entries, and so does the
//! in-process tier's `max_bytes`, within 10%.
//!
//! RSS is a property of a whole process, and memory freed by one test is
//! reused by the next, so each case runs alone in a child process (this
//! binary, re-run with `CACHEKIT_RSS_CASE` naming the case). The parent only
//! checks that the child's test passed.

mod common;

use std::process::Command;
use std::time::Duration;

use cachekit::{Cache, Config, LocalTierConfig};

const CASE: &str = "CACHEKIT_RSS_CASE";
const MIB: u64 = 1024 * 1024;

/// Resident memory of this process, from `/proc/self/statm`.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// True in the child that runs `case`; in the parent, runs that child and
/// asserts that its test passed, then returns false.
fn in_own_process(case: &str) -> bool {
    if std::env::var(CASE).as_deref() == Ok(case) {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .env(CASE, case)
        .args([case, "--exact", "--nocapture", "--test-threads=1"])
        .output()
        .expect("run the case in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{case} failed in its own process");
    assert!(
        stdout.contains("1 passed"),
        "{case} did not run in the child"
    );
    false
}

/// Asserts that `grown` bytes of RSS are within 10% above `bound`, and not
/// so far below it that the bound over-charges (half of it at least).
fn assert_bounded(what: &str, grown: u64, bound: u64, entries: u64) {
    let ratio = grown as f64 / bound as f64;
    println!(
        "RSS {what}: grew {:.1} MiB over {entries} entries against a bound of {} MiB: {ratio:.2}x",
        grown as f64 / MIB as f64,
        bound / MIB
    );
    assert!(
        ratio <= 1.10,
        "{what}: RSS grew {ratio:.2}x its bound of {} MiB",
        bound / MIB
    );
    assert!(
        ratio >= 0.5,
        "{what}: RSS grew only {ratio:.2}x its bound: the bound charges far more than it uses"
    );
}

/// A small record: 24 bytes of JSON.
fn value(i: u64) -> String {
    format!("v{i:0>20}")
}

#[test]
fn memory_max_bytes_bounds_rss_over_1m_entries() {
    if !in_own_process("memory_max_bytes_bounds_rss_over_1m_entries") {
        return;
    }
    const BOUND: u64 = 64 * MIB;
    const ENTRIES: u64 = 1_000_000;
    let cache = Cache::new("rss", Duration::from_secs(3600));
    common::run(async {
        cachekit::init(Config::memory().memory_max_bytes(BOUND))
            .await
            .expect("memory backend");
        // Warm what is lazy (the map's shards, the counters).
        for i in 0..1_000 {
            cache
                .set(&format!("warm:{i}"), &value(i))
                .await
                .expect("set");
        }
    });
    let before = rss();
    common::run(async {
        for i in 0..ENTRIES {
            cache
                .set(&format!("user:{i}"), &value(i))
                .await
                .expect("set");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let grown = rss().saturating_sub(before);
    // The bound was reached: the first entries were evicted, the last kept.
    common::run(async {
        let first: Option<String> = cache.get("user:0").await.expect("get");
        let last: Option<String> = cache
            .get(&format!("user:{}", ENTRIES - 1))
            .await
            .expect("get");
        assert_eq!(first, None, "the bound never evicted");
        assert_eq!(last, Some(value(ENTRIES - 1)));
    });
    assert_bounded("memory store", grown, BOUND, ENTRIES);
}

#[cachekit::cached(ttl = 3600, key = "tier:{id}", local = true)]
async fn tiered(id: u64) -> String {
    value(id)
}

#[test]
fn the_tiers_max_bytes_bounds_rss() {
    if !in_own_process("the_tiers_max_bytes_bounds_rss") {
        return;
    }
    const BOUND: u64 = 16 * MIB;
    // Each entry makes round trips to Redis: fewer entries than the memory
    // store's case, still about six times what the bound holds.
    const ENTRIES: u64 = 200_000;
    const TASKS: u64 = 32;
    let server = common::RedisServer::start();
    let tier = LocalTierConfig {
        max_bytes: BOUND,
        max_ttl: Duration::from_secs(3600),
        ..LocalTierConfig::default()
    };
    common::run(async {
        cachekit::init(Config::redis(&server.url()).local_tier(tier))
            .await
            .expect("redis with a tier");
        for i in 0..1_000 {
            tiered(u64::MAX - i).await;
            tiered(u64::MAX - i).await;
        }
    });
    let before = rss();
    common::run(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                tokio::spawn(async move {
                    // A miss stores in Redis; the next read keeps the entry
                    // in process.
                    for i in (t..ENTRIES).step_by(TASKS as usize) {
                        tiered(i).await;
                        tiered(i).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("filler");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let grown = rss().saturating_sub(before);
    let local_hits = cachekit::stats()
        .function("tiered")
        .map_or(0, |f| f.local_hits);
    assert!(local_hits > 0, "the tier kept nothing");
    assert_bounded("in-process tier", grown, BOUND, ENTRIES);
}
