//! Faults under load, against a real `redis-server` each test controls:
//! killed, paused (SIGSTOP and `CLIENT PAUSE`), slowed by `DEBUG SLEEP`,
//! connections killed (`CLIENT KILL`), connections cut in the middle of a
//! reply (a proxy in front of the server), restarted empty, and nothing
//! listening at start.
//!
//! Each runs 256 concurrent callers of a cached function, plus callers of
//! the `Cache` API (`set`, `get`, `get_or_compute`). For each fault: zero
//! wrong values, zero errors from cached functions (and from
//! `get_or_compute`, which fails open too), no call past its bound, caching
//! back after recovery (the time is measured), and computations counted: at
//! most one per key at a time (single-flight holds while the store fails)
//! and, where the fault lasts, the circuit open, so calls skip the server
//! instead of each waiting for a timeout (no retry storm).
//!
//! Each test prints a `RESULT` line: the numbers of README's "Reliability"
//! table (`cargo test --test faults -- --nocapture 2>&1 | grep RESULT`).
//!
//! The tests of this binary replace the global cache, so they run one at a
//! time (a lock), each with its own server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, CircuitState, Config, cached};
use common::load::{Observed, spawn_cached_callers};
use common::proxy::Proxy;
use common::{RedisServer, note, run};

/// Bound of one cache operation in these tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// What a computation costs.
const WORK: Duration = Duration::from_millis(2);
/// Scheduling slack on a loaded 2-core machine (shared with builds).
const SLACK: Duration = Duration::from_millis(750);

/// Keys the load spreads over.
const KEYS: u64 = 64;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static COMPUTED: AtomicU64 = AtomicU64::new(0);
/// Computations of `work` running now, and the most seen at once.
static RUNNING: AtomicU64 = AtomicU64::new(0);
static PEAK_RUNNING: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 2, key = "fault:{id}")]
async fn work(id: u64) -> Result<u64, String> {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    let running = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
    PEAK_RUNNING.fetch_max(running, Ordering::AcqRel);
    tokio::time::sleep(WORK).await;
    RUNNING.fetch_sub(1, Ordering::AcqRel);
    Ok(id * 3 + 1)
}

/// Values of a few kilobytes, so that replies span several TCP segments
/// and a cut lands inside one.
fn payload(id: u64) -> String {
    format!("{id}:{}", "v".repeat(4096))
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
        PEAK_RUNNING.store(RUNNING.load(Ordering::Acquire), Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Observed::default());
        let bound = TIMEOUT + WORK + SLACK;
        let mut tasks = spawn_cached_callers(callers, KEYS, bound, &stop, &seen, work);
        for caller in 0..callers.div_ceil(10) {
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("s{caller}");
                let mut round = caller as u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let started = Instant::now();
                    let id = round % 16;
                    let computed = SESSIONS
                        .get_or_compute(&format!("c{id}"), Duration::from_secs(2), || async move {
                            payload(id)
                        })
                        .await;
                    if computed.as_ref().ok() != Some(&payload(id)) {
                        seen.computed_api_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let outcome = async {
                        SESSIONS.set(&key, &payload(caller as u64)).await?;
                        match SESSIONS.get::<String>(&key).await? {
                            Some(v) if v != payload(caller as u64) => {
                                panic!("wrong value from the Cache API")
                            }
                            _ => Ok::<_, cachekit::Error>(()),
                        }
                    }
                    .await;
                    // Three operations, each within the timeout (a
                    // computation on a failing store costs one at most).
                    seen.record_api(started.elapsed(), 3 * TIMEOUT + SLACK, outcome.is_err());
                    if outcome.is_err() {
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
        note(self.seen.summary(what));
        self.seen.clone()
    }
}

/// Installs the cache on `url`, waits until it caches, and starts 256
/// callers.
async fn load_on(url: &str) -> Load {
    cachekit::init(config(url)).await.unwrap();
    time_until_caching_works(Duration::from_secs(5)).await;
    Load::start(256)
}

/// What one fault did to the load, for README's table.
struct Report<'a> {
    fault: &'a str,
    recovery: Duration,
    computed_per_s: u64,
    circuit_opened: bool,
}

/// Checks the load's record, resets the computation gauge, and prints the
/// fault's `RESULT` line.
fn assert_correct_and_report(seen: &Observed, r: Report<'_>) {
    let what = r.fault;
    seen.assert_correct(what);
    let peak = PEAK_RUNNING.swap(0, Ordering::AcqRel);
    assert!(
        peak <= KEYS,
        "{what}: {peak} computations at once over {KEYS} keys: single-flight broke"
    );
    let max_ms = seen.max_us.load(Ordering::Relaxed) / 1000;
    let bound = (TIMEOUT + WORK + SLACK).as_millis();
    note(format!(
        "RESULT | {what} | recovery {} ms | slowest cached call {max_ms} ms (bound {bound} ms) | \
         {} cached calls, 0 wrong, 0 errors | peak {peak} computations at once over {KEYS} keys, \
         {} computations/s while failing | circuit opened: {}",
        r.recovery.as_millis(),
        seen.calls.load(Ordering::Relaxed),
        r.computed_per_s,
        if r.circuit_opened { "yes" } else { "no" },
    ));
}

/// Watches the next `window` of a fault: computations per second, and
/// whether the circuit was seen open (it is half-open between probes).
async fn observe(window: Duration) -> (u64, bool) {
    let before = COMPUTED.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut opened = false;
    while started.elapsed() < window {
        opened |= cachekit::health().await.circuit == Some(CircuitState::Open);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_s = (COMPUTED.load(Ordering::Relaxed) - before) * 1000
        / started.elapsed().as_millis().max(1) as u64;
    (per_s, opened)
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
        let load = load_on(&server.url()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (computed_per_s, circuit_opened) = observe(Duration::from_secs(1)).await;
        server.restart();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("killed").await;
        assert!(circuit_opened, "killed: the circuit opened");
        assert_correct_and_report(
            &seen,
            Report {
                fault: "killed (SIGKILL), restarted after 3 s",
                recovery,
                computed_per_s,
                circuit_opened,
            },
        );
    });
}

#[test]
fn redis_paused_with_sigstop() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let load = load_on(&server.url()).await;
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
        let (computed_per_s, _) = observe(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        server.resume();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("paused 10 s").await;
        assert_eq!(cachekit::health().await.circuit, Some(CircuitState::Closed));
        assert_correct_and_report(
            &seen,
            Report {
                fault: "paused (SIGSTOP) for 10 s",
                recovery,
                computed_per_s,
                circuit_opened: true,
            },
        );
    });
}

#[test]
fn redis_client_pause() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let load = load_on(&server.url()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _: () = server.cmd(&["CLIENT", "PAUSE", "3000", "ALL"]);
        let paused = Instant::now();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (computed_per_s, circuit_opened) = observe(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(paused.elapsed())).await;
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("CLIENT PAUSE").await;
        assert!(circuit_opened, "CLIENT PAUSE: the circuit opened");
        assert_correct_and_report(
            &seen,
            Report {
                fault: "CLIENT PAUSE ALL for 3 s",
                recovery,
                computed_per_s,
                circuit_opened,
            },
        );
    });
}

#[test]
fn redis_slowed_by_debug_sleep() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let load = load_on(&server.url()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A server that answers slowly: DEBUG SLEEP blocks it for 3 s.
        let url = server.url();
        let sleeper = std::thread::spawn(move || {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _: () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("3")
                .query(&mut conn)
                .unwrap();
        });
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (computed_per_s, circuit_opened) = observe(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(move || sleeper.join().unwrap())
            .await
            .unwrap();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("DEBUG SLEEP").await;
        assert!(circuit_opened, "DEBUG SLEEP: the circuit opened");
        assert_correct_and_report(
            &seen,
            Report {
                fault: "slow: DEBUG SLEEP 3 s",
                recovery,
                computed_per_s,
                circuit_opened,
            },
        );
    });
}

#[test]
fn connections_killed_by_the_server() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let load = load_on(&server.url()).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // cachekit reconnects in the background; cut its connection
            // once it is back.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let killed: i64 =
                    server.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
                if killed >= 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "cachekit never reconnected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("connections killed").await;
        assert_correct_and_report(
            &seen,
            Report {
                fault: "connections killed (CLIENT KILL, 5 times)",
                recovery,
                computed_per_s: 0,
                circuit_opened: false,
            },
        );
    });
}

#[test]
fn connections_cut_mid_reply() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let proxy = Proxy::start(server.port);
        let load = load_on(&proxy.url()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..5 {
            // The proxy waits for the next reply bytes on any connection,
            // forwards half of them, and closes everything.
            let cutter = proxy.cutter();
            let cut = tokio::task::spawn_blocking(move || cutter.cut_mid_reply());
            assert!(cut.await.unwrap(), "a reply was cut");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        let seen = load.stop("cut mid-reply").await;
        assert!(proxy.cuts() >= 5);
        assert_correct_and_report(
            &seen,
            Report {
                fault: "connections cut mid-reply (proxy, 5 times)",
                recovery,
                computed_per_s: 0,
                circuit_opened: false,
            },
        );
    });
}

#[test]
fn redis_restarted_empty() {
    run(async {
        let _serial = SERIAL.lock().await;
        let mut server = RedisServer::start();
        let load = load_on(&server.url()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Restarted empty: every value is recomputed, none is wrong.
        server.restart();
        let recovery = time_until_caching_works(Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = load.stop("restarted empty").await;
        let keys: i64 = server.cmd(&["DBSIZE"]);
        assert!(keys >= KEYS as i64, "refilled: {keys} keys");
        assert_correct_and_report(
            &seen,
            Report {
                fault: "restarted empty",
                recovery,
                computed_per_s: 0,
                circuit_opened: false,
            },
        );
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
        let load = Load::start(256);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (computed_per_s, circuit_opened) = observe(Duration::from_secs(1)).await;
        assert!(circuit_opened, "nothing listening: the circuit opened");
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
        let seen = load.stop("nothing listening at init").await;
        assert_correct_and_report(
            &seen,
            Report {
                fault: "nothing listening at init, started later",
                recovery,
                computed_per_s,
                circuit_opened,
            },
        );
    });
}

#[test]
fn invalidations_and_explicit_calls_are_bounded_while_the_server_is_frozen() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(config(&server.url())).await.unwrap();
        time_until_caching_works(Duration::from_secs(5)).await;
        for id in 0..2_000 {
            probe(10_000_000 + id).await;
        }
        server.pause();
        // A pattern scan takes many round trips; each is bounded, so it fails
        // instead of hanging. So do tags, namespaces and the Cache API.
        let started = Instant::now();
        assert!(cachekit::invalidate("probe:*").await.is_err());
        assert!(cachekit::invalidate_tag("any").await.is_err());
        assert!(cachekit::invalidate_namespace("fault-ns").await.is_err());
        assert!(SESSIONS.clear().await.is_err());
        assert!(SESSIONS.set("k", &1).await.is_err());
        let took = started.elapsed();
        server.resume();
        assert!(
            took < 5 * (TIMEOUT + SLACK),
            "explicit calls took {took:?} against a frozen server"
        );
        note(format!(
            "frozen server: five explicit calls failed in {took:?}"
        ));
        time_until_caching_works(Duration::from_secs(15)).await;
        assert!(cachekit::invalidate("probe:*").await.unwrap() >= 2_000);
    });
}

/// Starts a server on a given port (it may be taken meanwhile).
fn start_on(port: u16) -> Option<RedisServer> {
    std::panic::catch_unwind(|| RedisServer::start_on_port(port)).ok()
}
