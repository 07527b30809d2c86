//! Load and soak: 256 concurrent callers (cached functions, the `Cache`
//! API, and invalidations by key, pattern, tag and namespace) for a while,
//! with a steady footprint:
//!
//! * resident memory (`VmRSS` of /proc/self/status, sampled each second)
//!   stays within a bound of its level after warm-up;
//! * the embedded store stays within its configured bound (a small one,
//!   under a stream of new keys that would grow without it);
//! * no task leaks (tokio's `num_alive_tasks` returns to its level before
//!   the load) and no connection leaks (`CLIENT LIST` on the server);
//! * zero wrong values, zero errors.
//!
//! `CACHEKIT_SOAK_SECS` sets the length (default 30: the CI variant; the
//! 10-minute run is `CACHEKIT_SOAK_SECS=600`), two thirds on Redis and one
//! third on the embedded store.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, Config, cached};
use common::{RUNTIME, RedisServer, note, run};

const CALLERS: usize = 256;

static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 2, key = "soak:{id}", tags = ["grp:{group}"])]
async fn item(id: u64, group: u64) -> Vec<u64> {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    tokio::task::yield_now().await;
    vec![id, group, id * 7]
}

#[cached(ttl = 30, namespace = "soak-ns", key = "page:{n}")]
async fn page(n: u64) -> String {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    format!("page {n}: {}", "p".repeat(256))
}

/// New keys all the time: without a bound, the store would only grow.
#[cached(ttl = 600, key = "stream:{n}")]
async fn stream(n: u64) -> String {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    format!("{n}:{}", "s".repeat(1024))
}

static SESSIONS: Cache = Cache::new("soak-sessions", Duration::from_secs(5));

#[derive(Default)]
struct Seen {
    cached_calls: AtomicU64,
    api_calls: AtomicU64,
    invalidations: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn alive_tasks() -> usize {
    RUNTIME.metrics().num_alive_tasks()
}

fn soak_secs() -> u64 {
    std::env::var("CACHEKIT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn next(n: &mut u64) -> u64 {
    *n = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *n >> 33
}

/// Starts the callers: 200 on cached functions, 48 on the `Cache` API, 8
/// invalidating.
fn start(
    stop: &Arc<AtomicBool>,
    seen: &Arc<Seen>,
    stream_base: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for caller in 0..200u64 {
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = caller;
            let mut streamed = stream_base + caller * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let r = next(&mut n);
                let ok = match r % 10 {
                    0..=5 => {
                        let id = r % 5_000;
                        item(id, id % 16).await == vec![id, id % 16, id * 7]
                    }
                    6..=8 => {
                        let p = r % 500;
                        page(p).await.starts_with(&format!("page {p}: "))
                    }
                    _ => {
                        streamed += 1;
                        stream(streamed).await.starts_with(&format!("{streamed}:"))
                    }
                };
                seen.cached_calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    seen.wrong.fetch_add(1, Ordering::Relaxed);
                }
                // A hit on the embedded store completes without ever
                // suspending: a caller in a tight loop must yield, or it
                // keeps its worker thread to itself.
                tokio::task::yield_now().await;
            }
        }));
    }
    for caller in 0..48u64 {
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = caller + 1_000;
            while !stop.load(Ordering::Relaxed) {
                let r = next(&mut n);
                let id = r % 2_000;
                let key = format!("s{id}");
                let outcome: Result<bool, cachekit::Error> = async {
                    Ok(match r % 8 {
                        0 => {
                            SESSIONS
                                .set(&key, &serde_json::json!({"id": id, "step": 1}))
                                .await?;
                            true
                        }
                        1 => match SESSIONS.get::<serde_json::Value>(&key).await? {
                            Some(v) => v["id"] == id,
                            None => true,
                        },
                        2 => {
                            SESSIONS
                                .update(&key, serde_json::json!({"step": r % 5}))
                                .await?;
                            match SESSIONS.get::<serde_json::Value>(&key).await? {
                                Some(v) => v["id"] == id,
                                None => true,
                            }
                        }
                        3 => SESSIONS.increment(&format!("hits:{}", id % 64), 1).await? >= 1,
                        4 => {
                            SESSIONS
                                .set_indexed(
                                    &format!("i{id}"),
                                    &id,
                                    &[("user", &format!("u{}", id % 32))],
                                )
                                .await?;
                            true
                        }
                        5 => SESSIONS
                            .get_by_index::<u64>("user", &format!("u{}", id % 32))
                            .await?
                            .iter()
                            .all(|v| v % 32 == id % 32),
                        6 => {
                            let keys: Vec<String> =
                                (0..8).map(|i| format!("s{}", (id + i) % 2_000)).collect();
                            let values: Vec<Option<serde_json::Value>> =
                                SESSIONS.get_many(&keys).await?;
                            values.iter().zip(0..8u64).all(|(v, i)| {
                                v.as_ref().is_none_or(|v| v["id"] == (id + i) % 2_000)
                            })
                        }
                        _ => {
                            SESSIONS.delete(&key).await?;
                            SESSIONS.delete(&format!("i{id}")).await?;
                            true
                        }
                    })
                }
                .await;
                seen.api_calls.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(true) => {}
                    Ok(false) => {
                        seen.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        note(format!("Cache API error: {e}"));
                        seen.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for caller in 0..8u64 {
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = caller + 2_000;
            while !stop.load(Ordering::Relaxed) {
                let r = next(&mut n);
                let outcome = match r % 4 {
                    0 => item_invalidate(r % 5_000, (r % 5_000) % 16).await.map(drop),
                    1 => cachekit::invalidate_tag(&format!("grp:{}", r % 16))
                        .await
                        .map(drop),
                    2 => cachekit::invalidate(&format!("soak:{}*", r % 10))
                        .await
                        .map(drop),
                    _ => cachekit::invalidate_namespace("soak-ns").await.map(drop),
                };
                seen.invalidations.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = outcome {
                    note(format!("invalidation error: {e}"));
                    seen.errors.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    assert_eq!(tasks.len(), CALLERS);
    tasks
}

struct Footprint {
    rss_warm_kb: u64,
    rss_peak_kb: u64,
    rss_end_kb: u64,
    tasks_before: usize,
    tasks_peak: usize,
    tasks_after: usize,
}

/// Runs the load for `secs` and samples the footprint each second.
async fn soak(what: &str, secs: u64, stream_base: u64) -> (Arc<Seen>, Footprint) {
    // Let tasks of earlier phases wind down before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks_before = alive_tasks();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let started = Instant::now();
    let computed_before = COMPUTED.load(Ordering::Relaxed);
    let tasks = start(&stop, &seen, stream_base);
    let warm_up = Duration::from_secs((secs / 4).max(3));
    let mut rss_warm_kb = 0;
    let mut rss_peak_kb = 0;
    let mut tasks_peak = 0;
    let mut last_report = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_kb();
        tasks_peak = tasks_peak.max(alive_tasks());
        if started.elapsed() < warm_up {
            rss_warm_kb = rss_warm_kb.max(rss);
        } else {
            rss_peak_kb = rss_peak_kb.max(rss);
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            note(format!(
                "{what}: {:?}: RSS {} MB, {} tasks, {} cached calls",
                started.elapsed(),
                rss / 1024,
                alive_tasks(),
                seen.cached_calls.load(Ordering::Relaxed)
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a caller panicked");
    }
    // Background work (announcements, lease releases) finishes promptly.
    let mut tasks_after = alive_tasks();
    for _ in 0..50 {
        if tasks_after <= tasks_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        tasks_after = alive_tasks();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let footprint = Footprint {
        rss_warm_kb,
        rss_peak_kb,
        rss_end_kb: rss_kb(),
        tasks_before,
        tasks_peak,
        tasks_after,
    };
    note(format!(
        "soak {what}, {secs} s, {CALLERS} callers: {:.0} cached calls/s, {:.0} Cache API calls/s, {:.0} invalidations/s, {:.0} computations/s; \
         RSS after warm-up {} MB, peak {} MB, end {} MB; tasks before {}, peak {}, after {}",
        seen.cached_calls.load(Ordering::Relaxed) as f64 / elapsed,
        seen.api_calls.load(Ordering::Relaxed) as f64 / elapsed,
        seen.invalidations.load(Ordering::Relaxed) as f64 / elapsed,
        (COMPUTED.load(Ordering::Relaxed) - computed_before) as f64 / elapsed,
        footprint.rss_warm_kb / 1024,
        footprint.rss_peak_kb / 1024,
        footprint.rss_end_kb / 1024,
        footprint.tasks_before,
        footprint.tasks_peak,
        footprint.tasks_after,
    ));
    (seen, footprint)
}

fn assert_steady(what: &str, seen: &Seen, f: &Footprint, rss_slack_mb: u64) {
    assert!(
        seen.cached_calls.load(Ordering::Relaxed) > 0,
        "{what}: no calls"
    );
    assert!(
        seen.api_calls.load(Ordering::Relaxed) > 0,
        "{what}: no API calls"
    );
    assert!(
        seen.invalidations.load(Ordering::Relaxed) > 0,
        "{what}: no invalidations"
    );
    assert_eq!(
        seen.wrong.load(Ordering::Relaxed),
        0,
        "{what}: wrong values"
    );
    assert_eq!(seen.errors.load(Ordering::Relaxed), 0, "{what}: errors");
    assert!(
        f.rss_peak_kb <= f.rss_warm_kb + rss_slack_mb * 1024,
        "{what}: resident memory grew from {} MB after warm-up to {} MB",
        f.rss_warm_kb / 1024,
        f.rss_peak_kb / 1024
    );
    assert!(
        f.tasks_after <= f.tasks_before + 2,
        "{what}: {} tasks alive before the load, {} after",
        f.tasks_before,
        f.tasks_after
    );
}

fn client_count(server: &RedisServer) -> usize {
    let list: String = server.cmd(&["CLIENT", "LIST"]);
    // The connection that asks is listed too.
    list.lines().filter(|l| !l.trim().is_empty()).count() - 1
}

#[test]
fn steady_footprint_under_full_concurrency() {
    run(async {
        let secs = soak_secs();
        let redis_secs = (secs * 2 / 3).max(2);
        let memory_secs = (secs - redis_secs).max(2);

        // Redis.
        let server = RedisServer::start();
        cachekit::init(Config::redis(&server.url()).timeout(Duration::from_secs(2)))
            .await
            .unwrap();
        // Connect everything (the shared connection, the event listener).
        assert_eq!(item(0, 0).await, vec![0, 0, 0]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let clients_before = client_count(&server);
        let (seen, footprint) = soak("redis", redis_secs, 0).await;
        let clients_after = client_count(&server);
        note(format!(
            "redis: {clients_before} client connections before, {clients_after} after; {} keys on the server",
            server.cmd::<i64>(&["DBSIZE"])
        ));
        assert!(
            clients_after <= clients_before,
            "connections leaked: {clients_before} before, {clients_after} after"
        );
        assert!(
            clients_before <= 3,
            "one shared connection and the listener"
        );
        assert_steady("redis", &seen, &footprint, 64);

        // The embedded store, bounded to 16 MB under a stream of 1 kB
        // values that would otherwise reach gigabytes.
        cachekit::init(Config::memory().memory_max_bytes(16 * 1024 * 1024))
            .await
            .unwrap();
        let (seen, footprint) = soak("memory", memory_secs, 1 << 40).await;
        assert_steady("memory", &seen, &footprint, 64);
    });
}
