//! Redis Cluster faults and settings, each on a cluster of its own (so the
//! suites in `tests/cluster.rs` never see them): a primary killed under load
//! and replaced by its replica, a cluster absent when the cache starts, the
//! node that carries the event bus dying (the tier stops serving, then
//! hears again), a cluster that requires a password.
//!
//! For the load: zero wrong values, zero errors from cached functions, no
//! call past its bound, and caching back on the new topology (times
//! measured and printed).
//!
//! The tests replace the global cache, so they run one at a time (a lock).

mod common;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, CacheOptions, Config, LocalTierConfig, cached, testing};
use common::cluster::{RedisCluster, cluster_ports, key_slot};
use common::load::{Observed, spawn_cached_callers};
use common::{note, run};

/// Bound of one cache operation in these tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// What a computation costs.
const WORK: Duration = Duration::from_millis(2);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(400);
/// How long a silent node takes to be declared failed: short, so that a
/// failover takes seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1500);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 30, key = "cfo:{id}")]
async fn work(id: u64) -> Result<u64, String> {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(WORK).await;
    Ok(id * 3 + 1)
}

#[cached(ttl = 60, key = "cfo-probe:{id}")]
async fn probe(id: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    id
}

static SESSIONS: Cache = Cache::new("cfo-sessions", Duration::from_secs(60));

fn config(urls: &[String]) -> Config {
    Config::cluster(urls)
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
}

/// `callers` tasks calling the cached function over 256 keys (spread over
/// every primary), and a tenth as many writing and reading through the
/// `Cache` API, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Observed>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(callers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Observed::default());
        let bound = TIMEOUT + WORK + SLACK;
        let mut tasks = spawn_cached_callers(callers, 256, bound, &stop, &seen, work);
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
                    // Two operations, each within the timeout. The explicit
                    // API reports failures; during a failover some are
                    // expected.
                    seen.record_api(started.elapsed(), 2 * TIMEOUT + SLACK, outcome.is_err());
                    if outcome.is_err() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        Load { stop, seen, tasks }
    }

    async fn stop(self, what: &str) -> Arc<Observed> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a caller panicked");
        }
        note(self.seen.summary(what));
        self.seen
    }
}

/// Waits until a fresh key whose slot is in `slots` (any slot if empty) is
/// computed once and then served from the cluster. Returns the key's id.
async fn until_caching_works(slots: &[RangeInclusive<u16>], within: Duration) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    let started = Instant::now();
    loop {
        let id = loop {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let slot = key_slot(&format!("cfo-probe:{id}"));
            if slots.is_empty() || slots.iter().any(|r| r.contains(&slot)) {
                break id;
            }
        };
        probe(id).await;
        let before = COMPUTED.load(Ordering::Relaxed);
        probe(id).await;
        if COMPUTED.load(Ordering::Relaxed) == before {
            return id;
        }
        assert!(
            started.elapsed() < within,
            "caching did not resume within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs blocking harness code off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("harness call")
}

#[test]
fn a_primary_killed_under_load_fails_over_with_no_caller_visible_error() {
    run(async {
        let _serial = SERIAL.lock().await;
        let cluster = blocking(|| RedisCluster::start_with_node_timeout(NODE_TIMEOUT)).await;
        cachekit::init(config(&cluster.urls())).await.unwrap();
        until_caching_works(&[], Duration::from_secs(10)).await;
        let load = Load::start(128);
        tokio::time::sleep(Duration::from_secs(1)).await;

        // The victim: the primary serving `cfo:0`, and its replica.
        let victim = cluster.primary_port_of_slot(key_slot("cfo:0"));
        let topology = cluster.topology();
        let victim_id = &topology.iter().find(|n| n.port == victim).unwrap().id;
        let heir = topology
            .iter()
            .find(|n| n.primary_id.as_ref() == Some(victim_id))
            .expect("the victim has a replica")
            .port;
        let moved_slots = cluster.slots_of(victim);
        let keys_on_victim = (0..256)
            .filter(|id| {
                let slot = key_slot(&format!("cfo:{id}"));
                moved_slots.iter().any(|r| r.contains(&slot))
            })
            .count();
        note(format!(
            "killing primary {victim} (slots {moved_slots:?}, {keys_on_victim} of the 256 loaded keys); replica {heir} should take over"
        ));
        let cluster = Arc::new(std::sync::Mutex::new(cluster));
        let killed = {
            let cluster = cluster.clone();
            blocking(move || {
                cluster.lock().unwrap().node_mut(victim).kill();
                Instant::now()
            })
            .await
        };

        // The replica is promoted by the cluster itself.
        let promoted = {
            let cluster = cluster.clone();
            blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let cluster = cluster.lock().unwrap();
                    let view = cluster.topology_seen_by(heir);
                    if view
                        .iter()
                        .any(|n| n.port == heir && n.primary && n.slots > 0)
                    {
                        return killed.elapsed();
                    }
                    assert!(Instant::now() < deadline, "no failover within 30 s");
                    drop(cluster);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .await
        };
        // Caching resumes on the moved slots, served by the new primary.
        let probe_id = until_caching_works(&moved_slots, Duration::from_secs(30)).await;
        let resumed = killed.elapsed();
        // Then the whole load is served from the cache again: a second of
        // it computes fewer values than there are keys.
        let steady = loop {
            let before = COMPUTED.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let computed = COMPUTED.load(Ordering::Relaxed) - before;
            if computed < 256 {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "the load is not served from the cache again: {computed} computations in 1 s"
            );
        };
        let seen = load.stop("failover").await;
        note(format!(
            "failover: replica {heir} promoted {} ms after the kill; caching resumed on its slots after {} ms; the whole load served from the cache again (a second with fewer computations than keys) after {} ms",
            promoted.as_millis(),
            resumed.as_millis(),
            steady.as_millis(),
        ));
        seen.assert_correct("failover");
        let stored: Option<String> = blocking({
            let cluster = cluster.clone();
            move || {
                cluster
                    .lock()
                    .unwrap()
                    .node(heir)
                    .cmd(&["GET", &format!("cfo-probe:{probe_id}")])
            }
        })
        .await;
        assert_eq!(
            stored.as_deref(),
            Some(probe_id.to_string().as_str()),
            "the entry lives on the new primary"
        );
        let health = cachekit::health().await;
        assert!(health.reachable, "{health:?}");
        // Pattern invalidation reaches the new primary too.
        let deleted = cachekit::invalidate("cfo-probe:*").await.unwrap();
        assert!(deleted >= 1, "{deleted}");
        let left: Vec<String> = blocking(move || {
            let cluster = cluster.lock().unwrap();
            cluster.scan_node(heir, "cfo-probe:*")
        })
        .await;
        assert!(left.is_empty(), "left on the new primary: {left:?}");
    });
}

#[test]
fn a_cluster_absent_at_init_is_used_once_it_is_up() {
    run(async {
        let _serial = SERIAL.lock().await;
        let ports = cluster_ports(6);
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let started = Instant::now();
        cachekit::init(config(&urls)).await.unwrap();
        assert!(
            started.elapsed() < TIMEOUT + SLACK,
            "init waited for the cluster: {:?}",
            started.elapsed()
        );
        assert!(!cachekit::health().await.reachable);
        for id in 0..20 {
            let started = Instant::now();
            assert_eq!(work(id).await, Ok(id * 3 + 1));
            assert!(started.elapsed() < TIMEOUT + WORK + SLACK);
        }
        let cluster =
            blocking(move || RedisCluster::start_on(&ports, Duration::from_secs(5))).await;
        let up = Instant::now();
        until_caching_works(&[], Duration::from_secs(30)).await;
        note(format!(
            "absent at init: caching works {} ms after the cluster is up",
            up.elapsed().as_millis()
        ));
        assert!(cachekit::health().await.reachable);
        drop(cluster);
    });
}

/// Waits until the current cache hears about changes (or not).
async fn until_coherent(coherent: bool, within: Duration) -> Duration {
    let started = Instant::now();
    let reached = tokio::time::timeout(within, async {
        while cachekit::health().await.coherent != coherent {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "coherent never became {coherent} within {within:?}"
    );
    started.elapsed()
}

#[test]
fn the_tier_stops_serving_when_its_bus_node_dies_and_serves_again_once_it_hears() {
    run(async {
        let _serial = SERIAL.lock().await;
        let mut cluster = blocking(|| RedisCluster::start_with_node_timeout(NODE_TIMEOUT)).await;
        let config = config(&cluster.urls()).local_tier(LocalTierConfig {
            all: true,
            ..LocalTierConfig::default()
        });
        static C: Cache = Cache::new("cfo-tier", Duration::from_secs(60));
        let options = CacheOptions::new(Duration::from_secs(60)).local(true);
        testing::isolated(config, async {
            until_coherent(true, Duration::from_secs(10)).await;
            let v: u64 = C.get_or_compute_with("k", &options, || async { 1 }).await;
            assert_eq!(v, 1);
            // The node carrying the bus's subscription (and one of its
            // tracking connections) dies.
            let channel = "#events";
            let carrier = cluster
                .live()
                .find(|n| {
                    let (_, subscribers): (String, i64) = n.cmd(&["PUBSUB", "NUMSUB", channel]);
                    subscribers > 0
                })
                .expect("a node carries the bus")
                .port;
            cluster.node_mut(carrier).kill();
            let deaf = until_coherent(false, Duration::from_secs(10)).await;
            // While deaf, nothing is served from the tier.
            let local_before = testing::stats().local_hits;
            let _: u64 = C.get_or_compute_with("k", &options, || async { 2 }).await;
            assert_eq!(testing::stats().local_hits, local_before, "the tier served while deaf");
            let hearing = until_coherent(true, Duration::from_secs(40)).await;
            note(format!(
                "bus: deaf {} ms after its node was killed; hearing again {} ms later (failover included)",
                deaf.as_millis(),
                hearing.as_millis()
            ));
        })
        .await;
    });
}

#[test]
fn a_cluster_with_a_password_is_reached_with_the_credentials_of_its_urls() {
    run(async {
        let _serial = SERIAL.lock().await;
        let password = "cluster-s3cr3t";
        let cluster = blocking(move || RedisCluster::start_with_password(password)).await;
        let urls = cluster.urls();
        assert!(urls[0].contains(password));
        cachekit::init(config(&urls)).await.unwrap();
        let id = until_caching_works(&[], Duration::from_secs(10)).await;
        let stored: Option<String> = cluster
            .node(cluster.primary_port_of_slot(key_slot(&format!("cfo-probe:{id}"))))
            .cmd(&["GET", &format!("cfo-probe:{id}")]);
        assert_eq!(stored, Some(id.to_string()));
        let shown = format!("{:?}", cachekit::current_config().unwrap());
        assert!(!shown.contains(password), "{shown}");

        // A wrong password: the cache builds, and every command fails
        // with an error that names no password.
        let wrong: Vec<String> = urls
            .iter()
            .map(|u| u.replace(password, "not-the-password"))
            .collect();
        let health = testing::isolated(config(&wrong), cachekit::health()).await;
        assert!(!health.reachable);
        let shown = format!("{health:?}");
        assert!(
            !shown.contains("not-the-password") && !shown.contains(password),
            "{shown}"
        );
        drop(cluster);
    });
}
