//! Trust under load and at the edges, against a real Redis:
//!
//! * a randomized cache-aside checker: 8 writers and 64 readers over 100
//!   keys against a model database (a version per key), on memory, Redis
//!   and Redis with the in-process tier. A reader that starts after a
//!   write's invalidation returned must never see an older version than
//!   that write's. It prints the stale-read count, which must be 0;
//! * caching never goes silently off: a runtime that is alive but no
//!   longer driven does not slow other runtimes' calls; re-`init` ends the
//!   old cache's connections and listener; a half-open probe cancelled by
//!   its caller gives its turn back; `health()` and `stats()` say why
//!   caching is off.
//!
//! The tests replace the global cache, so they run one at a time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, CacheOptions, Caching, Config, LocalTierConfig, cached};
use common::{RedisServer, note, run, shared_server};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long each backend's checker runs (`CACHEKIT_COHERENCE_SECS`).
fn checker_secs() -> u64 {
    std::env::var("CACHEKIT_COHERENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

const KEYS: usize = 100;

/// The model database: a version per key. A write commits a new version,
/// then invalidates; `published` is the highest version whose invalidation
/// has returned.
struct Model {
    rows: Vec<AtomicU64>,
    published: Vec<AtomicU64>,
    reads: AtomicU64,
    stale: AtomicU64,
    writes: AtomicU64,
}

impl Model {
    fn new() -> Self {
        Model {
            rows: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            published: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            reads: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
}

static ROWS: Cache = Cache::new("coherence", Duration::from_secs(60));

/// One reader's read of `key`: what it saw, against what it must see.
async fn read(model: &Arc<Model>, options: &CacheOptions<u64>, key: usize) {
    let floor = model.published[key].load(Ordering::Acquire);
    let m = model.clone();
    let got = ROWS
        .get_or_compute_with(&format!("row:{key}"), options, move || async move {
            let version = m.rows[key].load(Ordering::Acquire);
            // The query takes a moment: the window the race needs.
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..1_500))).await;
            version
        })
        .await;
    model.reads.fetch_add(1, Ordering::Relaxed);
    if got < floor {
        model.stale.fetch_add(1, Ordering::Relaxed);
    }
}

/// One writer's write of `key`: commit, invalidate (by key, pattern, tag
/// or namespace), then publish the version.
async fn write(model: &Model, key: usize) {
    let version = model.rows[key].fetch_add(1, Ordering::AcqRel) + 1;
    let outcome = match fastrand::u8(0..10) {
        0..=5 => ROWS.delete(&format!("row:{key}")).await.map(drop),
        // Any generation of the namespace (`coherence` or `coherence#G`).
        6 | 7 => cachekit::invalidate(&format!("coherence*:row:{key}"))
            .await
            .map(drop),
        8 => cachekit::invalidate_tag(&format!("row-tag:{key}"))
            .await
            .map(drop),
        _ => cachekit::invalidate_namespace("coherence").await.map(drop),
    };
    outcome.expect("the invalidation succeeds (the store is up)");
    model.published[key].fetch_max(version, Ordering::AcqRel);
    model.writes.fetch_add(1, Ordering::Relaxed);
}

/// Runs the checker on the installed cache and returns (stale, reads, writes).
async fn checker(name: &str, local: bool) -> (u64, u64, u64) {
    let model = Arc::new(Model::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (model, stop) = (model.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = fastrand::usize(0..KEYS);
                let options = CacheOptions::new(Duration::from_secs(60))
                    .local(local)
                    .tags([format!("row-tag:{key}")]);
                read(&model, &options, key).await;
            }
        }));
    }
    for _ in 0..8 {
        let (model, stop) = (model.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                write(&model, fastrand::usize(0..KEYS)).await;
                tokio::time::sleep(Duration::from_micros(fastrand::u64(0..2_000))).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(checker_secs())).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let (stale, reads, writes) = (
        model.stale.load(Ordering::Relaxed),
        model.reads.load(Ordering::Relaxed),
        model.writes.load(Ordering::Relaxed),
    );
    let fenced = cachekit::stats()
        .namespace("coherence")
        .map_or(0, |c| c.fenced);
    note(format!(
        "coherence checker, {name}, {}s: {stale} stale reads of {reads} reads, {writes} writes, {fenced} stores fenced",
        checker_secs()
    ));
    (stale, reads, writes)
}

fn checked(name: &str, config: Config, local: bool) {
    run(async {
        let _serial = SERIAL.lock().await;
        cachekit::init(config).await.unwrap();
        let (stale, reads, writes) = checker(name, local).await;
        assert!(
            reads > 1_000 && writes > 100,
            "the checker ran: {reads} reads, {writes} writes"
        );
        assert_eq!(
            stale, 0,
            "{name}: a reader saw a version older than a returned invalidation"
        );
    });
}

#[test]
fn cache_aside_readers_never_see_a_replaced_version_on_memory() {
    checked("memory", Config::memory(), false);
}

#[test]
fn cache_aside_readers_never_see_a_replaced_version_on_redis() {
    checked("redis", Config::redis(&shared_server().url()), false);
}

#[test]
fn cache_aside_readers_never_see_a_replaced_version_through_the_tier() {
    let config = Config::redis(&shared_server().url()).local_tier(LocalTierConfig {
        all: true,
        ..LocalTierConfig::default()
    });
    checked("redis + tier", config, true);
}

static LIVENESS_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60, key = "liveness:{id}")]
async fn liveness(id: u64) -> u64 {
    LIVENESS_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

/// A setup runtime installs the cache and is kept alive but no longer
/// driven; a second runtime's calls must not pay for it.
#[test]
fn a_runtime_kept_alive_but_not_driven_never_slows_another() {
    let _serial = SERIAL.blocking_lock();
    let url = shared_server().url();
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    setup.block_on(async {
        cachekit::init(Config::redis(&url)).await.unwrap();
        liveness(1).await; // a connection made on the setup runtime
    });
    // `setup` stays alive, idle: nothing drives its tasks any more.
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = cachekit::stats()
        .function("liveness")
        .copied()
        .unwrap_or_default();
    let slowest = caller.block_on(async {
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(liveness(1).await, 1);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    });
    let after = *cachekit::stats().function("liveness").unwrap();
    assert_eq!(after.errors - before.errors, 0, "no call failed over");
    assert_eq!(after.hits - before.hits, 20, "every call hit");
    assert!(
        slowest < Duration::from_millis(100),
        "slowest call {slowest:?}"
    );
    note(format!(
        "idle setup runtime: 20 hits from another runtime, slowest {slowest:?}"
    ));
    drop(setup);
}

/// The clients connected to `server`.
fn clients(server: &RedisServer) -> usize {
    let list: String = server.cmd(&["CLIENT", "LIST"]);
    list.lines().count()
}

/// The threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|comm| comm.trim() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn reinit_ends_the_old_caches_connections_and_listener() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(Config::redis(&server.url())).await.unwrap();
        liveness(2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = clients(&server);
        for _ in 0..20 {
            cachekit::init(Config::redis(&server.url())).await.unwrap();
            liveness(2).await;
        }
        // The old listeners stop at their next poll; their threads end.
        let settled = tokio::time::timeout(Duration::from_secs(5), async {
            while clients(&server) > baseline + 2 || threads_named("cachekit-bus") > 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let (now, threads) = (clients(&server), threads_named("cachekit-bus"));
        note(format!(
            "20 re-inits: {baseline} clients before, {now} after; {threads} bus thread(s)"
        ));
        assert!(
            settled.is_ok(),
            "re-init leaked: {now} clients (was {baseline}), {threads} bus threads"
        );
    });
}

#[test]
fn a_cancelled_half_open_probe_never_leaves_caching_off() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        let config = Config::redis(&server.url())
            .timeout(Duration::from_millis(200))
            .breaker(cachekit::BreakerPolicy {
                failure_threshold: 2,
                open_for: Duration::from_millis(100),
            });
        cachekit::init(config).await.unwrap();
        liveness(3).await;
        server.pause();
        // The breaker opens; then half-open probes start, and every one is
        // cancelled by its caller before the paused server can answer.
        for _ in 0..30 {
            let _ = tokio::time::timeout(Duration::from_millis(20), liveness(3)).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        server.resume();
        let back = Instant::now();
        let before = cachekit::stats().function("liveness").unwrap().hits;
        let resumed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                liveness(3).await;
                if cachekit::stats().function("liveness").unwrap().hits > before {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(resumed.is_ok(), "caching stayed off after cancelled probes");
        note(format!(
            "cancelled probes: caching back {:?} after the server resumed",
            back.elapsed()
        ));
    });
}

#[test]
fn health_and_stats_say_why_caching_is_off() {
    run(async {
        let _serial = SERIAL.lock().await;
        cachekit::init(Config::memory().enabled(false))
            .await
            .unwrap();
        assert_eq!(cachekit::health().await.caching, Caching::Disabled);
        assert!(cachekit::stats().off.unwrap().contains("disabled"));

        let server = RedisServer::start();
        let config = Config::redis(&server.url())
            .timeout(Duration::from_millis(100))
            .breaker(cachekit::BreakerPolicy {
                failure_threshold: 1,
                open_for: Duration::from_secs(30),
            });
        cachekit::init(config).await.unwrap();
        liveness(4).await;
        assert_eq!(cachekit::health().await.caching, Caching::On);
        assert_eq!(cachekit::stats().off, None);
        server.pause();
        for _ in 0..3 {
            liveness(4).await;
        }
        let off = cachekit::stats().off.expect("caching is off");
        assert!(off.contains("circuit breaker open"), "{off}");
        let health = cachekit::health().await;
        assert!(
            matches!(health.caching, Caching::Unreachable(_)),
            "the real cause, past the open circuit: {health:?}"
        );
        server.resume();
        cachekit::init(Config::memory()).await.unwrap();
    });
}

static TRACKED: Cache = Cache::new("tracked", Duration::from_secs(60));

/// Reads `key` through the tier until it is `want`; how long that took.
async fn until_seen(key: &str, want: u64, within: Duration) -> Duration {
    let options = CacheOptions::new(Duration::from_secs(60)).local(true);
    let started = Instant::now();
    loop {
        let got: u64 = TRACKED
            .get_or_compute_with(key, &options, || async { 0 })
            .await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{key}: still {got}, not {want}, after {within:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits until the current cache hears (or stops hearing) about changes.
async fn until_coherent(coherent: bool) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while cachekit::health().await.coherent != coherent {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "coherent never became {coherent}");
}

#[test]
fn another_clients_writes_evict_the_tier_copy_within_milliseconds() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(Config::redis(&server.url())).await.unwrap();
        until_coherent(true).await;
        let mut lags = Vec::new();
        for round in 1..=50u64 {
            let key = format!("k{}", round % 5);
            let full = format!("tracked:{key}");
            // Served from the tier first (a fill that raced the tracking
            // message of the SET is not kept: the next read keeps it).
            let _: () = server.cmd(&["SET", &full, &(round * 10).to_string()]);
            until_seen(&key, round * 10, Duration::from_secs(2)).await;
            let local = || cachekit::stats().namespace("tracked").unwrap().local_hits;
            let local_before = local();
            let served = tokio::time::timeout(Duration::from_secs(2), async {
                while local() == local_before {
                    until_seen(&key, round * 10, Duration::from_secs(2)).await;
                }
            })
            .await;
            assert!(served.is_ok(), "never served from the tier");
            // Another client (not cachekit) writes it.
            let _: () = server.cmd(&["SET", &full, &(round * 10 + 1).to_string()]);
            lags.push(until_seen(&key, round * 10 + 1, Duration::from_secs(2)).await);
        }
        lags.sort();
        let pct = |p: usize| lags[(lags.len() - 1) * p / 100];
        note(format!(
            "tracking lag, external SET to the tier serving the new value, 50 writes: p50 {:?}, p90 {:?}, max {:?}",
            pct(50),
            pct(90),
            pct(100)
        ));
        assert!(pct(100) < Duration::from_millis(500), "{lags:?}");
    });
}

#[test]
fn a_lost_tracking_connection_turns_the_tier_off_until_it_hears_again() {
    run(async {
        let _serial = SERIAL.lock().await;
        let server = RedisServer::start();
        cachekit::init(Config::redis(&server.url())).await.unwrap();
        until_coherent(true).await;
        let _: () = server.cmd(&["SET", "tracked:lost", "1"]);
        until_seen("lost", 1, Duration::from_secs(2)).await;
        until_seen("lost", 1, Duration::from_secs(2)).await;
        // The bus's connection is killed, and a write happens meanwhile.
        let list: String = server.cmd(&["CLIENT", "LIST"]);
        let ids: Vec<String> = list
            .lines()
            .filter(|l| l.contains("name=cachekit-bus"))
            .filter_map(|l| {
                l.split_whitespace()
                    .next()?
                    .strip_prefix("id=")
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(ids.len(), 1, "one named bus connection: {list}");
        let killed: i64 = server.cmd(&["CLIENT", "KILL", "ID", &ids[0]]);
        assert_eq!(killed, 1);
        let _: () = server.cmd(&["SET", "tracked:lost", "2"]);
        // Whether the process noticed yet or not, it never serves the old
        // copy: deaf, the tier is bypassed; hearing again, it starts empty.
        until_seen("lost", 2, Duration::from_secs(5)).await;
        until_coherent(true).await;
        until_seen("lost", 2, Duration::from_secs(1)).await;
    });
}
