//! Behaviour across processes sharing one real Redis: this binary starts
//! copies of itself in worker roles (`CACHEKIT_ROLE`).
//!
//! * `lock = true`: four processes miss one cold key at once and compute it
//!   once between them;
//! * a lease holder killed mid-computation blocks the others no longer than
//!   its lease;
//! * an invalidation in one process makes another's in-process tier miss,
//!   within milliseconds (the lag is measured and printed).
//!
//! `harness = false`: `main` runs the scenarios in order and fails loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachekit::{Config, LocalTierConfig, cached};
use common::{RedisServer, note};

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The server's URL: workers get it from the environment, the parent from
/// the server it started.
fn redis_url() -> String {
    std::env::var("CACHEKIT_TEST_REDIS")
        .ok()
        .or_else(|| URL.get().cloned())
        .expect("a Redis URL")
}

static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The "database" behind the cached functions: a counter of computations
/// and a source value, in Redis itself so that every process sees them.
fn db() -> redis::Connection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[cached(ttl = 60, key = "proc:locked:{id}", lock = true, lock_ttl = "2s")]
async fn locked(id: u64, work_ms: u64) -> u64 {
    let _: i64 = redis::cmd("INCR")
        .arg(format!("computations:{id}"))
        .query(&mut db())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    id * 100
}

#[cached(ttl = 60, key = "proc:source:{id}", local = true)]
async fn local_value(id: u64) -> String {
    redis::cmd("GET")
        .arg(format!("source:{id}"))
        .query::<Option<String>>(&mut db())
        .unwrap()
        .unwrap_or_default()
}

fn spawn(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("CACHEKIT_ROLE", role)
        .env("CACHEKIT_TEST_REDIS", redis_url())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a worker process")
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().expect("worker output");
    assert!(out.status.success(), "a worker failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Worker: calls `locked` at a given wall-clock time, prints the value.
async fn lock_worker(start_at_us: u128, work_ms: u64) {
    cachekit::init(Config::redis(&redis_url())).await.unwrap();
    let wait = start_at_us.saturating_sub(now_us());
    tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    let started = Instant::now();
    let value = locked(7, work_ms).await;
    println!("{value} {}", started.elapsed().as_millis());
}

/// Worker: keeps reading `local_value(1)`; prints when it changes.
async fn tier_reader() {
    cachekit::init(Config::redis(&redis_url()).local_tier(LocalTierConfig::default()))
        .await
        .unwrap();
    let first = local_value(1).await;
    println!("ready {first}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let value = local_value(1).await;
        if value != first {
            println!("changed {value} {}", now_us());
            let stats = cachekit::stats();
            println!("local_hits {}", stats.local_hits);
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    panic!("the reader never saw the invalidation");
}

fn four_processes_compute_once() {
    let start_at = now_us() + 1_500_000;
    let workers: Vec<Child> = (0..4)
        .map(|_| spawn("lock-worker", &[&start_at.to_string(), "800"]))
        .collect();
    let outputs: Vec<String> = workers.into_iter().map(output).collect();
    for out in &outputs {
        assert!(out.starts_with("700 "), "a worker got {out:?}");
    }
    let computations: i64 = redis::cmd("GET")
        .arg("computations:7")
        .query(&mut db())
        .unwrap();
    assert_eq!(
        computations, 1,
        "four processes computed once between them: {outputs:?}"
    );
    note(format!(
        "lock = true: 4 processes, 1 computation; waits (value ms): {outputs:?}"
    ));
}

fn a_dead_lease_holder_blocks_no_longer_than_its_lease() {
    let _: () = redis::cmd("DEL")
        .arg("proc:locked:7")
        .arg("computations:7")
        .query(&mut db())
        .unwrap();
    // The holder takes the lease and computes for a minute...
    let mut holder = spawn("lock-worker", &[&now_us().to_string(), "60000"]);
    // The lease is a marker at the entry's own key while it computes.
    let lease_key = "proc:locked:7";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis::cmd("EXISTS")
        .arg(lease_key)
        .query::<bool>(&mut db())
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the holder never took the lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ... and dies without releasing it.
    holder.kill().unwrap();
    let _ = holder.wait();
    let killed = Instant::now();
    let waiter = spawn("lock-worker", &[&now_us().to_string(), "10"]);
    let out = output(waiter);
    let waited = killed.elapsed();
    assert!(out.starts_with("700 "), "{out:?}");
    // The lease was 2 s: the waiter computes once it expires.
    assert!(
        waited < Duration::from_secs(6),
        "the waiter was blocked {waited:?}"
    );
    note(format!(
        "dead lease holder: the next process computed {waited:?} after the kill (lease 2 s)"
    ));
}

fn invalidation_reaches_other_processes_tiers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(cachekit::init(Config::redis(&redis_url())))
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("source:1")
        .arg("v1")
        .query(&mut db())
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("proc:source:1")
        .query(&mut db())
        .unwrap();
    let mut lags = Vec::new();
    for round in 0..5 {
        let mut reader = spawn("tier-reader", &[]);
        let mut lines = BufReader::new(reader.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        assert!(ready.starts_with("ready v"), "{ready}");
        // Let the reader serve from its tier for a while.
        std::thread::sleep(Duration::from_millis(300));
        let next = format!("v{}", round + 2);
        let _: () = redis::cmd("SET")
            .arg("source:1")
            .arg(&next)
            .query(&mut db())
            .unwrap();
        let sent = now_us();
        let deleted = rt.block_on(local_value_invalidate(1)).unwrap();
        assert!(deleted);
        let changed = lines.next().unwrap().unwrap();
        let hits = lines.next().unwrap().unwrap();
        let _ = reader.wait();
        let mut parts = changed.split(' ');
        assert_eq!(parts.next(), Some("changed"));
        assert_eq!(parts.next(), Some(next.as_str()));
        let seen: u128 = parts.next().unwrap().parse().unwrap();
        let local_hits: u64 = hits.trim_start_matches("local_hits ").parse().unwrap();
        assert!(
            local_hits > 10,
            "the reader was served from its tier ({local_hits} local hits)"
        );
        lags.push(Duration::from_micros(seen.saturating_sub(sent) as u64));
    }
    lags.sort();
    note(format!(
        "invalidation lag to another process's tier, 5 runs: {lags:?}"
    ));
    assert!(
        lags[4] < Duration::from_secs(1),
        "an invalidation took {:?} to arrive",
        lags[4]
    );
}

fn main() {
    match std::env::var("CACHEKIT_ROLE").as_deref() {
        Ok("lock-worker") => {
            let args: Vec<String> = std::env::args().collect();
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(lock_worker(
                args[1].parse().unwrap(),
                args[2].parse().unwrap(),
            ));
        }
        Ok("tier-reader") => tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(tier_reader()),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {
            let server = RedisServer::start();
            URL.set(server.url()).unwrap();
            for (name, scenario) in [
                (
                    "four_processes_compute_once",
                    four_processes_compute_once as fn(),
                ),
                (
                    "a_dead_lease_holder_blocks_no_longer_than_its_lease",
                    a_dead_lease_holder_blocks_no_longer_than_its_lease,
                ),
                (
                    "invalidation_reaches_other_processes_tiers",
                    invalidation_reaches_other_processes_tiers,
                ),
            ] {
                let started = Instant::now();
                scenario();
                println!("test {name} ... ok ({:?})", started.elapsed());
            }
        }
    }
}
