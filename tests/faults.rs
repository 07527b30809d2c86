//! Faults under load, against a real `redis-server` each test controls:
//! killed, paused (SIGSTOP and `CLIENT PAUSE`), restarted empty, slowed by
//! `DEBUG SLEEP`, connections cut mid-reply, and nothing listening at start.
//!
//! For each: zero wrong values, zero caller-visible errors from cached
//! functions, no call past its bound, caching back after recovery (time
//! measured and printed), and no retry storm (computations counted).
//!
//! The tests of this binary replace the global cache, so they run one at a
//! time (a lock), each with its own server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, CircuitState, Config, cached};
use common::{RedisServer, note, run};

/// Bound of one cache operation in these tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// What a computation costs.
const WORK: Duration = Duration::from_millis(2);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 2, key = "fault:{id}")]
async fn work(id: u64) -> Result<u64, String> {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(WORK).await;
    Ok(id * 3 + 1)
}

#[cached(ttl = 60, key = "probe:{id}")]
async fn probe(id: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    id
}

static SESSIONS: Cache = Cache::new("fault-sessions", Duration::from_secs(60));

fn config(server_url: &str) -> Config {
    Config::redis(server_url)
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
}

#[derive(Default)]
struct Observed {
    calls: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
    over_bound: AtomicU64,
    max_us: AtomicU64,
    api_calls: AtomicU64,
    api_errors: AtomicU64,
    api_over_bound: AtomicU64,
    api_max_us: AtomicU64,
}

/// `callers` tasks calling the cached function, and a tenth as many calling
/// the `Cache` API, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Observed>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A test that fails mid-load must not leave its callers running into the
/// next test.
impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Load {
    fn start(callers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Observed::default());
        let bound = TIMEOUT + WORK + SLACK;
        let mut tasks = Vec::new();
        for caller in 0..callers {
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = caller as u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = (n >> 33) % 64;
                    let started = Instant::now();
                    let result = work(id).await;
                    let took = started.elapsed();
                    seen.calls.fetch_add(1, Ordering::Relaxed);
                    seen.max_us
                        .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                    if took > bound {
                        seen.over_bound.fetch_add(1, Ordering::Relaxed);
                    }
                    match result {
                        Ok(v) if v == id * 3 + 1 => {}
                        Ok(_) => {
                            seen.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            seen.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        for caller in 0..callers.div_ceil(10) {
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("s{caller}");
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = async {
                        SESSIONS.set(&key, &caller).await?;
                        match SESSIONS.get::<usize>(&key).await? {
                            Some(v) if v != caller => panic!("wrong value from the Cache API"),
                            _ => Ok::<_, cachekit::Error>(()),
                        }
                    }
                    .await;
                    let took = started.elapsed();
                    seen.api_calls.fetch_add(1, Ordering::Relaxed);
                    seen.api_max_us
                        .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                    // Two operations, each within the timeout.
                    if took > 2 * TIMEOUT + SLACK {
                        seen.api_over_bound.fetch_add(1, Ordering::Relaxed);
                    }
                    if outcome.is_err() {
                        seen.api_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        Load { stop, seen, tasks }
    }

    async fn stop(mut self, what: &str) -> Arc<Observed> {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            task.await.expect("a caller panicked");
        }
        let s = &self.seen;
        note(format!(
            "{what}: {} cached calls (max {} ms, {} over bound), {} Cache API calls ({} errors, max {} ms, {} over bound)",
            s.calls.load(Ordering::Relaxed),
            s.max_us.load(Ordering::Relaxed) / 1000,
            s.over_bound.load(Ordering::Relaxed),
            s.api_calls.load(Ordering::Relaxed),
            s.api_errors.load(Ordering::Relaxed),
            s.api_max_us.load(Ordering::Relaxed) / 1000,
            s.api_over_bound.load(Ordering::Relaxed),
        ));
        self.seen.clone()
    }
}

fn assert_correct(seen: &Observed, what: &str) {
    assert!(
        seen.calls.load(Ordering::Relaxed) > 0,
        "{what}: no calls ran"
    );
    assert_eq!(
        seen.wrong.load(Ordering::Relaxed),
        0,
        "{what}: wrong values"
    );
    assert_eq!(
        seen.errors.load(Ordering::Relaxed),
        0,
        "{what}: cached calls failed"
    );
    assert_eq!(
        seen.over_bound.load(Ordering::Relaxed),
        0,
        "{what}: cached calls past their bound"
    );
    assert_eq!(
        seen.api_over_bound.load(Ordering::Relaxed),
        0,
        "{what}: Cache API calls past their bound"
    );
}

/// Waits until a fresh key is computed once and then served from Redis.
async fn time_until_caching_works(within: Duration) -> Duration {
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    let started = Instant::now();
    loop {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        probe(id).await;
        let before = COMPUTED.load(Ordering::Relaxed);
        probe(id).await;
        if COMPUTED.load(Ordering::Relaxed) == before {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "caching did not resume within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn redis_killed_mid_run_then_restarted() {
    run(async {
        let _serial = SERIAL.lock().await;
        let mut server = RedisServer::start();
        cachekit::init(config(&server.url())).await.unwrap();
        time_until_caching_works(Duration::from_secs(5)).await;
        let load = Load::start(256);
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.kill();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let computed_during = COMPUTED.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let per_second_down = COMPUTED.load(Ordering::Relaxed) - computed_during;
        server.restart();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("killed").await;
        note(format!(
            "killed: caching resumed {recovery:?} after the restart ({:?} after the kill); {per_second_down} computations/s while down",
            killed.elapsed()
        ));
        assert_correct(&seen, "killed");
        // Single-flight holds while Redis is down: at most one computation
        // per key at a time, not one per caller.
        assert!(
            per_second_down < 64 * 1000 / WORK.as_millis() as u64,
            "computation storm: {per_second_down}/s"
        );
    });
}

#[test]
fn redis_paused_with_sigstop() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(config(&server.url())).await.unwrap();
        time_until_caching_works(Duration::from_secs(5)).await;
        let load = Load::start(100);
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.pause();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let health = cachekit::health().await;
        assert!(!health.reachable);
        assert_eq!(
            health.circuit,
            Some(CircuitState::Open),
            "the circuit opened: calls skip Redis"
        );
        // While open, a cached call costs no timeout.
        let started = Instant::now();
        assert_eq!(work(1).await, Ok(4));
        assert!(
            started.elapsed() < TIMEOUT,
            "an open circuit fails fast ({:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(8)).await;
        server.resume();
        let resumed = Instant::now();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("paused 10 s").await;
        note(format!(
            "paused: caching resumed {recovery:?} after SIGCONT ({:?})",
            resumed.elapsed()
        ));
        assert_correct(&seen, "paused");
        assert_eq!(cachekit::health().await.circuit, Some(CircuitState::Closed));
    });
}

#[test]
fn redis_client_pause_and_debug_sleep() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(config(&server.url())).await.unwrap();
        time_until_caching_works(Duration::from_secs(5)).await;
        let load = Load::start(256);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _: () = server.cmd(&["CLIENT", "PAUSE", "2000", "ALL"]);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        note(format!(
            "CLIENT PAUSE 2 s: caching resumed {recovery:?} after it ended"
        ));
        // A server that answers slowly: DEBUG SLEEP blocks it for 2 s.
        let url = server.url();
        let sleeper = std::thread::spawn(move || {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _: () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("2")
                .query(&mut conn)
                .unwrap();
        });
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        sleeper.join().unwrap();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("CLIENT PAUSE and DEBUG SLEEP").await;
        note(format!(
            "DEBUG SLEEP 2 s: caching resumed {recovery:?} after it ended"
        ));
        assert_correct(&seen, "slow server");
    });
}

#[test]
fn connections_cut_mid_reply_and_restart_empty() {
    run(async {
        let _serial = SERIAL.lock().await;
        let mut server = RedisServer::start();
        cachekit::init(config(&server.url())).await.unwrap();
        time_until_caching_works(Duration::from_secs(5)).await;
        let load = Load::start(256);
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Cut only once cachekit is connected again (it reconnects in
            // the background; under load that can take a moment).
            let reconnected = Instant::now();
            while server
                .cmd::<String>(&["CLIENT", "LIST", "TYPE", "normal"])
                .lines()
                .count()
                < 2
            {
                assert!(
                    reconnected.elapsed() < Duration::from_secs(10),
                    "cachekit did not reconnect"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let killed: i64 = server.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
            assert!(killed >= 1, "cachekit's connection was cut");
        }
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        note(format!(
            "connections cut: caching resumed {recovery:?} after the last cut"
        ));
        // Restarted empty: every value is recomputed, none is wrong.
        server.restart();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = load.stop("cut and restarted empty").await;
        note(format!(
            "restarted empty: caching resumed {recovery:?} after the restart"
        ));
        assert_correct(&seen, "cut connections");
    });
}

#[test]
fn init_succeeds_with_nothing_listening() {
    run(async {
        let _serial = SERIAL.lock().await;
        let port = common::free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let started = Instant::now();
        cachekit::init(config(&url))
            .await
            .expect("init succeeds while Redis is down");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "init does not hang"
        );
        let before = COMPUTED.load(Ordering::Relaxed);
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(probe(77).await, 77, "cached functions compute");
            assert!(started.elapsed() < TIMEOUT + SLACK);
        }
        assert_eq!(COMPUTED.load(Ordering::Relaxed) - before, 3);
        assert!(
            SESSIONS.get::<u32>("x").await.is_err(),
            "the explicit API reports the outage"
        );
        // Redis arrives later on that port: caching starts by itself.
        let mut late = None;
        for _ in 0..20 {
            if let Some(s) = start_on(port) {
                late = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _late = late.expect("start redis-server on the chosen port");
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        note(format!(
            "nothing listening at init: caching started {recovery:?} after Redis did"
        ));
    });
}

/// Starts a server on a given port (it may be taken meanwhile).
fn start_on(port: u16) -> Option<RedisServer> {
    std::panic::catch_unwind(|| RedisServer::start_on_port(port)).ok()
}
