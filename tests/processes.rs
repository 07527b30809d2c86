//! Behaviour across processes sharing one real Redis: this binary starts
//! copies of itself in worker roles (`CACHEKIT_ROLE`).
//!
//! * `lock = true`: four processes miss one cold key at once and compute it
//!   once between them;
//! * a lease holder killed mid-computation blocks the others no longer than
//!   its lease;
//! * an invalidation in one process makes another's in-process tier miss,
//!   and another's process-scope entry (`scope = "process"`, kept in that
//!   process whatever the backend) too, within milliseconds (the lag is
//!   measured and printed).
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

#[cached(scope = "process", ttl = 60, key = "proc:scoped:{id}")]
async fn process_value(id: u64) -> String {
    redis::cmd("GET")
        .arg(format!("source:{id}"))
        .query::<Option<String>>(&mut db())
        .unwrap()
        .unwrap_or_default()
}

/// Where a reader keeps its copies: the tier in front of Redis, or a
/// process-scope function's own map.
#[derive(Clone, Copy)]
enum Kept {
    Tier,
    Process,
}

impl Kept {
    fn name(self) -> &'static str {
        match self {
            Kept::Tier => "tier",
            Kept::Process => "process",
        }
    }

    async fn read(self, id: u64) -> String {
        match self {
            Kept::Tier => local_value(id).await,
            Kept::Process => process_value(id).await,
        }
    }

    /// Calls served in process so far.
    fn served_in_process(self) -> u64 {
        let stats = cachekit::stats();
        match self {
            Kept::Tier => stats.function("local_value").map_or(0, |f| f.local_hits),
            Kept::Process => stats.function("process_value").map_or(0, |f| f.hits),
        }
    }

    async fn invalidate(self, id: u64) -> bool {
        match self {
            Kept::Tier => local_value_invalidate(id).await.unwrap(),
            Kept::Process => process_value_invalidate(id).await.unwrap(),
        }
    }
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

/// Worker: keeps reading id 1 where `kept` keeps it; prints when it
/// changes.
async fn reader(kept: Kept) {
    cachekit::init(Config::redis(&redis_url()).local_tier(LocalTierConfig::default()))
        .await
        .unwrap();
    let first = kept.read(1).await;
    println!("ready {first}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let value = kept.read(1).await;
        if value != first {
            println!("changed {value} {}", now_us());
            println!("in_process {}", kept.served_in_process());
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
    invalidation_reaches_other_processes(Kept::Tier);
}

fn invalidation_reaches_other_processes_process_scope() {
    invalidation_reaches_other_processes(Kept::Process);
}

fn invalidation_reaches_other_processes(kept: Kept) {
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
        .arg("proc:scoped:1")
        .query(&mut db())
        .unwrap();
    let mut lags = Vec::new();
    for round in 0..5 {
        let mut reader = spawn("reader", &[kept.name()]);
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
        let deleted = rt.block_on(kept.invalidate(1));
        // A process-scope entry lives in the reader's process only: there
        // is nothing to delete here, and the invalidation still reaches it.
        assert!(deleted || matches!(kept, Kept::Process));
        let changed = lines.next().unwrap().unwrap();
        let hits = lines.next().unwrap().unwrap();
        let _ = reader.wait();
        let mut parts = changed.split(' ');
        assert_eq!(parts.next(), Some("changed"));
        assert_eq!(parts.next(), Some(next.as_str()));
        let seen: u128 = parts.next().unwrap().parse().unwrap();
        let in_process: u64 = hits.trim_start_matches("in_process ").parse().unwrap();
        assert!(
            in_process > 10,
            "the reader was served in process ({in_process} calls)"
        );
        lags.push(Duration::from_micros(seen.saturating_sub(sent) as u64));
    }
    lags.sort();
    note(format!(
        "invalidation lag to another process's {}, 5 runs: {lags:?}",
        match kept {
            Kept::Tier => "tier",
            Kept::Process => "process-scope entry",
        }
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
        Ok("reader") => {
            let kept = match std::env::args().nth(1).as_deref() {
                Some("tier") => Kept::Tier,
                Some("process") => Kept::Process,
                other => panic!("unknown reader {other:?}"),
            };
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(reader(kept))
        }
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
                (
                    "invalidation_reaches_other_processes_process_scope",
                    invalidation_reaches_other_processes_process_scope,
                ),
            ] {
                let started = Instant::now();
                scenario();
                println!("test {name} ... ok ({:?})", started.elapsed());
            }
        }
    }
}
