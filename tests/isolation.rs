//! `#[cachekit::test]`: each test gets its own empty cache, so tests running
//! in parallel in one binary never see each other's entries, even under
//! the same keys; expiry follows tokio's clock (`start_paused = true`); and
//! `cachekit::testing` injects faults into the test's store.
//!
//! Every test runs twice: on the embedded store, and on Redis
//! (`#[cachekit::test(redis = ...)]`, under a key prefix of its own, on
//! the harness's server for this binary).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::{Cache, assert_cached, assert_not_cached, cached, testing};

#[cached(ttl = 60, key = "shared:{name}")]
async fn owned_by(name: &str, test: u32) -> u32 {
    let _ = name;
    test
}

#[cached(scope = "process", ttl = 60, key = "shared-sync:{name}")]
fn owned_by_sync(name: &str, test: u32) -> u32 {
    let _ = name;
    test
}

static SHARED: Cache = Cache::new("shared", Duration::from_secs(60));

/// What test `test` does: write the keys every other test writes, and see
/// only its own values.
async fn only_its_own(test: u32) {
    assert_not_cached!(owned_by("a", test), "a test starts with an empty cache");
    assert_eq!(SHARED.get::<u32>("k").await.unwrap(), None);
    assert_eq!(owned_by("a", test).await, test);
    assert_eq!(owned_by_sync("a", test), test);
    SHARED.set("k", &test).await.unwrap();
    for _ in 0..5 {
        // The other tests write the same keys meanwhile.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(owned_by("a", test).await, test, "its own entry");
        assert_eq!(owned_by_sync("a", test), test);
        assert_eq!(SHARED.get::<u32>("k").await.unwrap(), Some(test));
    }
    let stats = testing::stats();
    let counts = stats.function("owned_by").expect("its own counters");
    assert_eq!(
        (counts.computations, counts.hits),
        (1, 5),
        "the test's calls only"
    );
    if test.is_multiple_of(2) {
        // An invalidation reaches the test's own entries only.
        cachekit::invalidate("shared:*").await.unwrap();
        assert_not_cached!(owned_by("a", test));
    }
    assert_cached!(owned_by_sync("a", test));
}

macro_rules! isolated {
    ($($memory:ident, $redis:ident = $n:literal;)*) => {
        $(
            #[cachekit::test]
            async fn $memory() {
                only_its_own($n).await;
            }

            #[cachekit::test(redis = common::shared_server().url())]
            async fn $redis() {
                only_its_own($n).await;
            }
        )*
    };
}

isolated! {
    isolated_01, redis_isolated_01 = 1;
    isolated_02, redis_isolated_02 = 2;
    isolated_03, redis_isolated_03 = 3;
    isolated_04, redis_isolated_04 = 4;
    isolated_05, redis_isolated_05 = 5;
    isolated_06, redis_isolated_06 = 6;
    isolated_07, redis_isolated_07 = 7;
    isolated_08, redis_isolated_08 = 8;
    isolated_09, redis_isolated_09 = 9;
    isolated_10, redis_isolated_10 = 10;
    isolated_11, redis_isolated_11 = 11;
    isolated_12, redis_isolated_12 = 12;
    isolated_13, redis_isolated_13 = 13;
    isolated_14, redis_isolated_14 = 14;
    isolated_15, redis_isolated_15 = 15;
    isolated_16, redis_isolated_16 = 16;
}

/// Computations of `clocked` and `clocked_stale`, per id: each variant of
/// the paused-clock test (memory, Redis) counts its own, as they run side
/// by side.
static CLOCKED: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static STALE: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

#[cached(ttl = 5, key = "clock:{id}")]
async fn clocked(id: usize) -> u32 {
    CLOCKED[id].fetch_add(1, Ordering::SeqCst) + 1
}

#[cached(ttl = 5, stale = "30s", key = "clock-stale:{id}")]
async fn clocked_stale(id: usize) -> u32 {
    // A slow source, on tokio's clock: paused, it costs no real time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    STALE[id].fetch_add(1, Ordering::SeqCst) + 1
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum QuoteError {
    Timeout,
}

impl From<cachekit::Elapsed> for QuoteError {
    fn from(_: cachekit::Elapsed) -> Self {
        QuoteError::Timeout
    }
}

#[cached(ttl = 5, hard_timeout = "2s", key = "hard:{id}")]
async fn stuck(id: u64) -> Result<u64, QuoteError> {
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    Ok(id)
}

/// Expiry, stale serving and timeouts on a paused clock: no real waiting.
async fn time_is_tokio_s(id: usize) {
    let real = std::time::Instant::now();
    assert_eq!(clocked(id).await, 1);
    assert_eq!(clocked(id).await, 1, "a hit");
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_cached!(clocked(id), "4 s into a 5 s TTL");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_not_cached!(clocked(id), "6 s into a 5 s TTL");
    assert_eq!(clocked(id).await, 2, "recomputed");

    let first = clocked_stale(id).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        clocked_stale(id).await,
        first,
        "past the TTL, the old value at once"
    );
    // The refresh runs in the background, on the same paused clock.
    while clocked_stale(id).await == first {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(STALE[id].load(Ordering::SeqCst), 2, "one refresh");

    let started = tokio::time::Instant::now();
    assert_eq!(stuck(1).await, Err(QuoteError::Timeout));
    assert_eq!(
        started.elapsed().as_secs(),
        2,
        "abandoned at the hard timeout"
    );
    assert!(
        real.elapsed() < Duration::from_millis(1_000),
        "no real waiting: {:?}",
        real.elapsed()
    );
}

#[cachekit::test(start_paused = true)]
async fn expiry_follows_a_paused_clock() {
    time_is_tokio_s(0).await;
}

#[cachekit::test(redis = common::shared_server().url(), start_paused = true)]
async fn redis_expiry_follows_a_paused_clock() {
    time_is_tokio_s(1).await;
}

#[cached(ttl = 60, key = "faulty:{id}")]
async fn faulty(id: u64) -> u64 {
    id * 2
}

/// A failing store: cached functions still answer, and the test's stats
/// count the errors.
async fn faults_fail_open() {
    testing::faults().fail_all();
    assert_eq!(faulty(1).await, 2);
    assert_eq!(faulty(1).await, 2);
    let stats = testing::stats();
    assert_eq!(stats.function("faulty").unwrap().computations, 2);
    assert!(stats.errors >= 2, "errors counted: {}", stats.errors);
    assert!(testing::faults().injected() >= 2);
    testing::faults().heal();
    // Healed, the store keeps entries again: at once in memory, and on
    // Redis once the circuit breaker that the failures opened lets calls
    // through (it stays open for a second).
    let healed = std::time::Instant::now();
    loop {
        assert_eq!(faulty(1).await, 2);
        if faulty(1).await == 2 && testing::stats().function("faulty").unwrap().hits > 0 {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "never cached again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_cached!(faulty(1));
}

#[cachekit::test]
async fn a_failing_store_fails_open() {
    faults_fail_open().await;
}

#[cachekit::test(redis = common::shared_server().url())]
async fn redis_a_failing_store_fails_open() {
    faults_fail_open().await;
}

#[cachekit::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_share_the_test_cache() {
    owned_by("spawned", 99).await;
    let seen = tokio::spawn(async { owned_by("spawned", 0).await })
        .await
        .unwrap();
    assert_eq!(seen, 99, "a task the test spawns uses the test's cache");
}

/// A Redis test's keys are deleted when it ends, whether it passes or
/// panics (on a server of its own, which no other test writes).
#[test]
fn a_redis_tests_keys_are_deleted_when_it_ends() {
    let server = common::RedisServer::start();
    let how = || cachekit::__private::TestRuntime {
        multi_thread: false,
        worker_threads: None,
        start_paused: false,
        redis: true,
        redis_url: Some(server.url()),
    };
    cachekit::__private::run_test(how(), only_its_own(1_000));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cachekit::__private::run_test(how(), async {
            only_its_own(1_001).await;
            panic!("the test fails");
        })
    }));
    assert!(panicked.is_err(), "the panic reaches the test harness");
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(keys.is_empty(), "left behind: {keys:?}");
}
