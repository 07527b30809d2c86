//! The miss path, and a hot key that expires under load, side by side:
//! `#[cached]` vs the `cached` crate's `#[concurrent_cached(redis = true)]`
//! (and the hand-written get-or-compute, for context).
//!
//! * Miss: one task, a key never written before on every call, a trivial
//!   computation: what the cache adds to a call that computes (GET that
//!   finds nothing, the computation, SET).
//! * Stampede: 1,000 tasks released at once on one key that has just
//!   expired (`PEXPIRE key 1`, then a wait), the computation a query on a
//!   database that serves 16 queries at a time, 10 ms each. Counted: how
//!   many computations ran, and the wall time until every caller had its
//!   value.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Semaphore};

#[path = "../support/mod.rs"]
mod support;

use support::{
    Plan, Report, median, median_row, order, per_op, range, run, start_server_for_cached_crate,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    symbol: String,
    price: f64,
    volume: u64,
    venue: String,
}

fn quote(id: u64) -> Quote {
    Quote {
        symbol: format!("SYM{id}"),
        price: id as f64 * 0.25,
        volume: id * 100,
        venue: "XNAS".into(),
    }
}

#[derive(Debug, Clone)]
struct BenchError(String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The database behind the hot key: 16 queries at a time, 10 ms each.
static DATABASE: Semaphore = Semaphore::const_new(16);
const QUERY: Duration = Duration::from_millis(10);

async fn query(id: u64) -> Quote {
    let _permit = DATABASE.acquire().await.expect("database");
    tokio::time::sleep(QUERY).await;
    quote(id)
}

static HOT_COMPUTED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
const CACHEKIT: usize = 0;
const PEER: usize = 1;
const HAND: usize = 2;
const HOT: u64 = 42;

#[cachekit::cached(ttl = 3600, key = "ck:hot:{id}")]
async fn ck_hot(id: u64) -> Result<Quote, BenchError> {
    HOT_COMPUTED[CACHEKIT].fetch_add(1, Ordering::Relaxed);
    Ok(query(id).await)
}

#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    map_error = |e| BenchError(format!("{e}"))
)]
async fn peer_hot(id: u64) -> Result<Quote, BenchError> {
    HOT_COMPUTED[PEER].fetch_add(1, Ordering::Relaxed);
    Ok(query(id).await)
}

/// GET, decode, or compute and SET: no stampede protection.
async fn hand(
    conn: &ConnectionManager,
    prefix: &str,
    id: u64,
    compute: impl Future<Output = Quote>,
) -> Result<Quote, BenchError> {
    let key = format!("{prefix}:{id}");
    let mut conn = conn.clone();
    let cached: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    if let Some(raw) = cached
        && let Ok(q) = serde_json::from_slice(&raw)
    {
        return Ok(q);
    }
    let q = compute.await;
    let raw = serde_json::to_vec(&q).map_err(|e| BenchError(e.to_string()))?;
    redis::cmd("SET")
        .arg(&key)
        .arg(raw)
        .arg("EX")
        .arg(3600)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(q)
}

async fn hand_hot(conn: &ConnectionManager, id: u64) -> Result<Quote, BenchError> {
    hand(conn, "hand:hot", id, async {
        HOT_COMPUTED[HAND].fetch_add(1, Ordering::Relaxed);
        query(id).await
    })
    .await
}

/// Misses per turn of a variant.
const BLOCK: usize = 250;

static FRESH: AtomicU64 = AtomicU64::new(1_000_000_000);

fn fresh() -> u64 {
    FRESH.fetch_add(1, Ordering::Relaxed)
}

#[cachekit::cached(ttl = 60, key = "ck:miss:{id}")]
async fn ck_miss(id: u64) -> Result<Quote, BenchError> {
    Ok(quote(id))
}

#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 60,
    map_error = |e| BenchError(format!("{e}"))
)]
async fn peer_miss(id: u64) -> Result<Quote, BenchError> {
    Ok(quote(id))
}

#[derive(Clone)]
enum Variant {
    Cachekit,
    Peer,
    Hand(ConnectionManager),
}

impl Variant {
    async fn miss(&self) {
        let id = fresh();
        let q = match self {
            Variant::Cachekit => ck_miss(id).await,
            Variant::Peer => peer_miss(id).await,
            Variant::Hand(conn) => hand(conn, "hand:miss", id, async { quote(id) }).await,
        };
        black_box(q.expect("miss"));
    }

    async fn hot(&self) -> Quote {
        match self {
            Variant::Cachekit => ck_hot(HOT).await,
            Variant::Peer => peer_hot(HOT).await,
            Variant::Hand(conn) => hand_hot(conn, HOT).await,
        }
        .expect("hot key")
    }
}

/// `callers` tasks released at once on the hot key: computations and wall time.
async fn stampede(variant: &Variant, index: usize, callers: usize) -> (u64, Duration) {
    let before = HOT_COMPUTED[index].load(Ordering::Relaxed);
    let gate = Arc::new(Barrier::new(callers + 1));
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (variant, gate) = (variant.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                assert_eq!(
                    variant.hot().await,
                    quote(HOT),
                    "every caller gets the value"
                );
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    for h in handles {
        h.await.expect("caller");
    }
    let took = started.elapsed();
    (HOT_COMPUTED[index].load(Ordering::Relaxed) - before, took)
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "stampede",
        "Miss path and hot-key stampede: `#[cached]` vs `cached`",
        plan,
    );
    let server = start_server_for_cached_crate();
    let url = server.url();
    let hand_conn = run(async {
        cachekit::init(cachekit::Config::redis(&url))
            .await
            .expect("cachekit init");
        let client = redis::Client::open(url.as_str()).expect("client");
        let conn = ConnectionManager::new(client).await.expect("connection");
        // Connect every variant and create the hot entries.
        ck_hot(HOT).await.expect("warm");
        peer_hot(HOT).await.expect("warm");
        hand_hot(&conn, HOT).await.expect("warm");
        conn
    });
    let mut admin = server.conn();
    let peer_key: String = {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*PEER_HOT*")
            .query(&mut admin)
            .expect("KEYS");
        assert_eq!(
            keys.len(),
            1,
            "one entry of the cached crate's hot key: {keys:?}"
        );
        keys[0].clone()
    };
    let hot_keys = [format!("ck:hot:{HOT}"), peer_key, format!("hand:hot:{HOT}")];
    let variants = [Variant::Cachekit, Variant::Peer, Variant::Hand(hand_conn)];
    let names = ["`#[cached]`", "`cached` crate", "hand-written"];
    let misses = plan.n(5_000);
    let callers = 1_000;

    let mut miss_ns: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut computed: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..plan.rounds {
        // Turns of BLOCK misses each, so that a drift of the machine's
        // state lands on every variant.
        let blocks = (misses / BLOCK).max(1);
        let mut sums = [Duration::ZERO; 3];
        for b in 0..blocks {
            for i in order(round * blocks + b, variants.len()) {
                let variant = variants[i].clone();
                sums[i] += run(async move {
                    tokio::spawn(async move {
                        let started = Instant::now();
                        for _ in 0..BLOCK {
                            variant.miss().await;
                        }
                        started.elapsed()
                    })
                    .await
                    .expect("miss task")
                });
            }
        }
        for (i, sum) in sums.iter().enumerate() {
            miss_ns[i].push(sum.as_nanos() as f64 / (blocks * BLOCK) as f64);
        }
        for i in order(round, variants.len()) {
            // Expire the hot key for real, then release the callers.
            let _: i64 = redis::cmd("PEXPIRE")
                .arg(&hot_keys[i])
                .arg(1)
                .query(&mut admin)
                .expect("PEXPIRE");
            std::thread::sleep(Duration::from_millis(20));
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&hot_keys[i])
                .query(&mut admin)
                .expect("EXISTS");
            assert_eq!(exists, 0, "the hot key must have expired");
            let variant = variants[i].clone();
            let (n, took) = run(async move { stampede(&variant, i, callers).await });
            computed[i].push(n as f64);
            wall[i].push(took.as_nanos() as f64);
        }
        eprintln!(
            "round {}: miss cachekit/cached {:.3}; stampede computations {} / {} / {}",
            round + 1,
            miss_ns[CACHEKIT][round] / miss_ns[PEER][round],
            computed[CACHEKIT][round],
            computed[PEER][round],
            computed[HAND][round],
        );
    }
    drop(server);

    let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<f64>>();
    let miss_vs_peer = ratio(&miss_ns[CACHEKIT], &miss_ns[PEER]);
    let miss_vs_hand = ratio(&miss_ns[CACHEKIT], &miss_ns[HAND]);
    let wall_peer_vs_ck = ratio(&wall[PEER], &wall[CACHEKIT]);
    let wall_hand_vs_ck = ratio(&wall[HAND], &wall[CACHEKIT]);

    report.text(&format!(
        "Miss: {misses} calls per round from one task (the variants taking turns every {BLOCK} calls), each on a key never written (trivial computation). \
         Stampede: {callers} tasks released at once on a key that just expired (`PEXPIRE key 1`, 20 ms wait, checked gone); \
         the computation is a query on a database that serves 16 queries at a time, 10 ms each (so 1,000 computations take at least {:.0} ms). \
         Every caller checks it got the right value.",
        (callers as f64 / 16.0).ceil() * QUERY.as_millis() as f64
    ));
    report.table(
        &["comparison", "median ratio", "range over rounds"],
        &[
            median_row(
                "miss, time per call: `#[cached]` ÷ `cached` crate",
                &miss_vs_peer,
            ),
            median_row(
                "miss, time per call: `#[cached]` ÷ hand-written",
                &miss_vs_hand,
            ),
            median_row(
                "stampede wall time: `cached` crate ÷ `#[cached]`",
                &wall_peer_vs_ck,
            ),
            median_row(
                "stampede wall time: hand-written ÷ `#[cached]`",
                &wall_hand_vs_ck,
            ),
        ],
    );
    let mut rows = Vec::new();
    for i in 0..3 {
        let (lo, hi) = range(&computed[i]);
        rows.push(vec![
            names[i].to_owned(),
            per_op(Duration::from_nanos(median(&miss_ns[i]) as u64)),
            format!("{:.0}", median(&computed[i])),
            if lo == hi {
                format!("{lo:.0} every round")
            } else {
                format!("{lo:.0} – {hi:.0}")
            },
            per_op(Duration::from_nanos(median(&wall[i]) as u64)),
        ]);
    }
    report.text("Absolute numbers (medians):");
    report.table(
        &[
            "",
            "miss, time per call",
            "stampede: computations",
            "computations, range",
            "stampede: wall time",
        ],
        &rows,
    );
    report.finish();
}
