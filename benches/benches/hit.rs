//! The hit path against one local Redis, side by side:
//!
//! * `#[cached]` (cachekit);
//! * the same get-or-compute written by hand with `redis` (GET, then
//!   `serde_json`), on a `redis::aio::MultiplexedConnection` (the issue's
//!   reference: the cheapest handle the crate offers) and on the
//!   connection type cachekit uses, `redis::aio::ConnectionManager` (which
//!   wraps a multiplexed connection and reconnects);
//! * the `cached` crate's `#[concurrent_cached(redis = true)]` (its
//!   `AsyncRedisCache`, MessagePack values);
//! * a bare `GET` of the same bytes (no decoding), the floor of any client;
//! * `redis-benchmark -t get` at the same concurrency: the server's ceiling.
//!
//! At 1 task (latency per call) and 256 concurrent tasks (throughput), on
//! the benches' runtime (the default multi-thread runtime unless
//! `BENCH_WORKERS` says otherwise). Also
//! a cachekit miss (fresh key: GET, compute, SET) as a ratio to a bare GET,
//! for the note on issue 2.

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};

#[path = "../support/mod.rs"]
mod support;

use support::{
    Plan, Report, User, load_user, median, median_row, order, per_op, range, rate, ratio_row, run,
    start_server_for_cached_crate,
};

#[derive(Debug, Clone)]
struct BenchError(String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computations per variant: a hit must not compute.
static COMPUTED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
const CACHEKIT: usize = 0;
const HAND: usize = 1;
const PEER: usize = 2;

/// Distinct keys the hit loops cycle through (all warm).
const KEYS: u64 = 1_000;

/// Calls per turn of a variant at 1 task.
const BLOCK: usize = 250;

#[cachekit::cached(ttl = 3600, key = "ck:user:{id}")]
async fn ck_user(id: u64) -> Result<User, BenchError> {
    COMPUTED[CACHEKIT].fetch_add(1, Ordering::Relaxed);
    Ok(load_user(id))
}

#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    map_error = |e| BenchError(format!("{e}"))
)]
async fn peer_user(id: u64) -> Result<User, BenchError> {
    COMPUTED[PEER].fetch_add(1, Ordering::Relaxed);
    Ok(load_user(id))
}

/// What a careful engineer writes without a caching library: GET, decode,
/// or compute and SET with a TTL.
async fn hand_user<C: ConnectionLike + Clone>(conn: &C, id: u64) -> Result<User, BenchError> {
    let key = format!("hand:user:{id}");
    let mut conn = conn.clone();
    let cached: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    if let Some(raw) = cached
        && let Ok(user) = serde_json::from_slice(&raw)
    {
        return Ok(user);
    }
    COMPUTED[HAND].fetch_add(1, Ordering::Relaxed);
    let user = load_user(id);
    let raw = serde_json::to_vec(&user).map_err(|e| BenchError(e.to_string()))?;
    redis::cmd("SET")
        .arg(&key)
        .arg(raw)
        .arg("EX")
        .arg(3600)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(user)
}

/// A bare GET of a stored value: what any client pays at least.
async fn raw_get(conn: &ConnectionManager, id: u64) -> Result<usize, BenchError> {
    let mut conn = conn.clone();
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("hand:user:{id}"))
        .query_async(&mut conn)
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(raw.map_or(0, |r| r.len()))
}

static FRESH: AtomicU64 = AtomicU64::new(10_000_000);

/// A miss every call: the key was never written.
#[cachekit::cached(ttl = 60, key = "ck:miss:{id}")]
async fn ck_miss(id: u64) -> Result<User, BenchError> {
    Ok(load_user(id))
}

#[derive(Clone)]
enum Variant {
    Cachekit,
    Hand(ConnectionManager),
    HandMux(MultiplexedConnection),
    Peer,
    RawGet(ConnectionManager),
    CachekitMiss,
}

impl Variant {
    async fn call(&self, id: u64) {
        match self {
            Variant::Cachekit => {
                black_box(ck_user(id).await.expect("cachekit"));
            }
            Variant::Hand(conn) => {
                black_box(hand_user(conn, id).await.expect("hand-written"));
            }
            Variant::HandMux(conn) => {
                black_box(
                    hand_user(conn, id)
                        .await
                        .expect("hand-written, multiplexed"),
                );
            }
            Variant::Peer => {
                black_box(peer_user(id).await.expect("cached crate"));
            }
            Variant::RawGet(conn) => {
                let len = raw_get(conn, id).await.expect("GET");
                assert!(len > 0, "the bare GET must read a stored value");
            }
            Variant::CachekitMiss => {
                let id = FRESH.fetch_add(1, Ordering::Relaxed);
                black_box(ck_miss(id).await.expect("cachekit miss"));
            }
        }
    }
}

/// `calls` calls split over `tasks` concurrent tasks; the wall time.
async fn drive(variant: &Variant, tasks: usize, calls: usize) -> Duration {
    let per_task = calls / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let variant = variant.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let id = (t as u64 * 7919 + i as u64) % KEYS;
                    variant.call(id).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    started.elapsed() / (per_task * tasks) as u32
}

/// `redis-benchmark -t get -c clients -P pipeline` against `port`:
/// requests per second.
fn redis_benchmark(port: u16, clients: usize, pipeline: usize, requests: usize) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "get",
            "-c",
            &clients.to_string(),
            "-P",
            &pipeline.to_string(),
            "-n",
            &requests.to_string(),
            "-q",
        ])
        .output()
        .expect("redis-benchmark (installed with redis-server) must run");
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines, then "GET: 123456.79 requests per second, p50=0.183 msec".
    text.rsplit("GET:")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected redis-benchmark output: {text:?}"))
}

struct Samples {
    names: Vec<&'static str>,
    per_call: Vec<Vec<f64>>,
}

impl Samples {
    fn new(names: &[&'static str]) -> Self {
        Samples {
            names: names.to_vec(),
            per_call: vec![Vec::new(); names.len()],
        }
    }
    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| *n == name).expect("name")
    }
    fn ratios(&self, a: &str, b: &str) -> Vec<f64> {
        let (a, b) = (self.index(a), self.index(b));
        self.per_call[a]
            .iter()
            .zip(&self.per_call[b])
            .map(|(a, b)| a / b)
            .collect()
    }
    fn median_ns(&self, name: &str) -> f64 {
        median(&self.per_call[self.index(name)])
    }
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "hit",
        "Hit path: `#[cached]` vs hand-written redis vs `cached`",
        plan,
    );
    let server = start_server_for_cached_crate();
    let url = server.url();

    let (hand_conn, mux_conn, raw_conn) = run(async {
        cachekit::init(cachekit::Config::redis(&url))
            .await
            .expect("cachekit init");
        let client = redis::Client::open(url.as_str()).expect("client");
        let hand = ConnectionManager::new(client.clone())
            .await
            .expect("hand conn");
        let mux = client
            .get_multiplexed_async_connection()
            .await
            .expect("multiplexed conn");
        let raw = ConnectionManager::new(client).await.expect("raw conn");
        // Warm every key of every variant.
        for id in 0..KEYS {
            ck_user(id).await.expect("warm cachekit");
            hand_user(&hand, id).await.expect("warm hand");
            peer_user(id).await.expect("warm cached");
        }
        (hand, mux, raw)
    });
    // The server's ceiling reads a value of the same size.
    let sample = serde_json::to_vec(&load_user(1)).expect("json");
    let mut conn = server.conn();
    redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg(&sample)
        .query::<()>(&mut conn)
        .expect("SET");
    let warm = COMPUTED.each_ref().map(|c| c.load(Ordering::Relaxed));

    // `BENCH_PROFILE=cachekit|hand|mux|cached` runs only that variant at 256
    // tasks for a while, to compare them under a profiler
    // (`perf record`, `valgrind --tool=callgrind`).
    if let Ok(only) = std::env::var("BENCH_PROFILE") {
        let variant = match only.as_str() {
            "cachekit" => Variant::Cachekit,
            "hand" => Variant::Hand(hand_conn),
            "mux" => Variant::HandMux(mux_conn),
            "cached" => Variant::Peer,
            other => panic!("BENCH_PROFILE={other}: expected cachekit, hand, mux or cached"),
        };
        let calls = plan.n(256 * 4_000);
        let took = run(drive(&variant, 256, calls));
        eprintln!(
            "{only}: {calls} calls at 256 tasks, {} per call",
            per_op(took)
        );
        return;
    }

    let one_names = [
        "cachekit",
        "hand",
        "hand mux",
        "cached",
        "raw GET",
        "cachekit miss",
    ];
    let one_variants = [
        Variant::Cachekit,
        Variant::Hand(hand_conn.clone()),
        Variant::HandMux(mux_conn.clone()),
        Variant::Peer,
        Variant::RawGet(raw_conn.clone()),
        Variant::CachekitMiss,
    ];
    let many_names = ["cachekit", "hand", "hand mux", "cached"];
    let many_variants = [
        Variant::Cachekit,
        Variant::Hand(hand_conn.clone()),
        Variant::HandMux(mux_conn.clone()),
        Variant::Peer,
    ];
    let one_calls = plan.n(20_000);
    let tasks = 256;
    let many_calls = plan.n(256 * 800);
    let bench_requests = plan.n(400_000);

    let mut one = Samples::new(&one_names);
    let mut many = Samples::new(&many_names);
    let mut ceiling_256 = Vec::new();
    let mut ceiling_1 = Vec::new();
    let mut ceiling_pipelined = Vec::new();
    for round in 0..plan.rounds {
        // At 1 task a call is a few wake-ups of idle cores, whose cost
        // drifts with the machine's state: the variants take turns in
        // blocks of BLOCK calls, so a drift lands on all of them.
        let blocks = (one_calls / BLOCK).max(1);
        let mut sums = vec![Duration::ZERO; one_variants.len()];
        for b in 0..blocks {
            for i in order(round * blocks + b, one_variants.len()) {
                sums[i] += run(drive(&one_variants[i], 1, BLOCK)) * BLOCK as u32;
            }
        }
        for (i, sum) in sums.iter().enumerate() {
            one.per_call[i].push(sum.as_nanos() as f64 / (blocks * BLOCK) as f64);
        }
        for i in order(round, many_variants.len() + 1) {
            if i == many_variants.len() {
                ceiling_256.push(redis_benchmark(server.port, tasks, 1, bench_requests));
                ceiling_1.push(redis_benchmark(server.port, 1, 1, bench_requests / 10));
                ceiling_pipelined.push(redis_benchmark(server.port, 1, tasks, bench_requests * 4));
                continue;
            }
            let took = run(drive(&many_variants[i], tasks, many_calls));
            many.per_call[i].push(took.as_nanos() as f64);
        }
        eprintln!(
            "round {}: cachekit/hand mux {:.3} (1 task), {:.3} (256 tasks); cachekit/hand {:.3} (1 task), {:.3} (256 tasks)",
            round + 1,
            one.per_call[0][round] / one.per_call[2][round],
            many.per_call[0][round] / many.per_call[2][round],
            one.per_call[0][round] / one.per_call[1][round],
            many.per_call[0][round] / many.per_call[1][round]
        );
    }
    let computed: Vec<u64> = COMPUTED
        .iter()
        .zip(warm)
        .map(|(c, w)| c.load(Ordering::Relaxed) - w)
        .collect();
    let hits = cachekit::stats()
        .function("ck_user")
        .map(|c| (c.hits, c.misses, c.errors));
    drop(server);

    // Time ratios: above 1 means slower than the reference.
    let one_vs_mux = one.ratios("cachekit", "hand mux");
    let many_vs_mux = many.ratios("cachekit", "hand mux");
    let one_vs_hand = one.ratios("cachekit", "hand");
    let one_vs_peer = one.ratios("cachekit", "cached");
    let many_vs_hand = many.ratios("cachekit", "hand");
    let many_vs_peer = many.ratios("cachekit", "cached");
    // Throughput as a fraction of redis-benchmark's, per round.
    let frac = |s: &Samples, name: &str, ceiling: &[f64]| -> Vec<f64> {
        s.per_call[s.index(name)]
            .iter()
            .zip(ceiling)
            .map(|(ns, rps)| (1e9 / ns) / rps)
            .collect::<Vec<f64>>()
    };
    let many_frac = frac(&many, "cachekit", &ceiling_256);
    let hand_frac = frac(&many, "hand", &ceiling_256);
    let mux_frac = frac(&many, "hand mux", &ceiling_256);
    let peer_frac = frac(&many, "cached", &ceiling_256);
    let one_frac = frac(&one, "cachekit", &ceiling_1);
    let many_frac_pipelined = frac(&many, "cachekit", &ceiling_pipelined);
    let hand_frac_pipelined = frac(&many, "hand", &ceiling_pipelined);
    let hit_vs_get = one.ratios("cachekit", "raw GET");
    let hand_vs_get = one.ratios("hand", "raw GET");
    let miss_vs_get = one.ratios("cachekit miss", "raw GET");

    report.text(&format!(
        "Each call reads one of {KEYS} warm keys holding a {}-byte JSON record (the `cached` crate stores the same record as MessagePack). \
         Per round: {one_calls} calls at 1 task (the variants taking turns every {BLOCK} calls), {many_calls} calls spread over {tasks} tasks, `redis-benchmark -t get -n {bench_requests} -c {tasks}` (and `-c 1`) on a key holding the same bytes. \
         Ratios are of time per call (cachekit ÷ reference): below 1 cachekit is faster. Computations during the measured hits: cachekit {}, hand-written {}, cached {} (must be 0); cachekit's own counters: {}.",
        sample.len(),
        computed[CACHEKIT],
        computed[HAND],
        computed[PEER],
        hits.map_or("none".into(), |(h, m, e)| format!("{h} hits, {m} misses, {e} errors")),
    ));
    report.table(
        &[
            "comparison",
            "median ratio",
            "range over rounds",
            "goal",
            "met",
        ],
        &[
            ratio_row(
                "1 task: `#[cached]` ÷ hand-written, `MultiplexedConnection`",
                &one_vs_mux,
                "≤ 1.05x",
                median(&one_vs_mux) <= 1.05,
            ),
            ratio_row(
                "256 tasks: `#[cached]` ÷ hand-written, `MultiplexedConnection`",
                &many_vs_mux,
                "≤ 1.05x",
                median(&many_vs_mux) <= 1.05,
            ),
            ratio_row(
                "1 task: `#[cached]` ÷ hand-written, `ConnectionManager`",
                &one_vs_hand,
                "≤ 1.05x",
                median(&one_vs_hand) <= 1.05,
            ),
            ratio_row(
                "256 tasks: `#[cached]` ÷ hand-written, `ConnectionManager`",
                &many_vs_hand,
                "≤ 1.05x",
                median(&many_vs_hand) <= 1.05,
            ),
            ratio_row(
                "1 task: `#[cached]` ÷ `cached` crate",
                &one_vs_peer,
                "≤ 1.00x",
                median(&one_vs_peer) <= 1.0,
            ),
            ratio_row(
                "256 tasks: `#[cached]` ÷ `cached` crate",
                &many_vs_peer,
                "≤ 1.00x",
                median(&many_vs_peer) <= 1.0,
            ),
        ],
    );
    report.text(
        "Throughput as a fraction of `redis-benchmark` at the same concurrency. The Rust clients multiplex their 256 tasks on one connection, \
         which batches requests into fewer reads and writes than `redis-benchmark -c 256` (256 connections, one request each in flight) does; \
         `redis-benchmark -c 1 -P 256` (256 requests in flight on one connection, sent as one pipeline) is the server's ceiling for that shape:",
    );
    let frac_row = |label: &str, f: &[f64]| {
        let (lo, hi) = range(f);
        vec![
            label.to_owned(),
            format!("{:.1}%", median(f) * 100.0),
            format!("{:.1}% – {:.1}%", lo * 100.0, hi * 100.0),
        ]
    };
    report.table(
        &["", "median", "range"],
        &[
            frac_row(
                "`#[cached]`, 256 tasks ÷ `redis-benchmark -c 256`",
                &many_frac,
            ),
            frac_row(
                "hand-written (`MultiplexedConnection`), 256 tasks ÷ `redis-benchmark -c 256`",
                &mux_frac,
            ),
            frac_row(
                "hand-written (`ConnectionManager`), 256 tasks ÷ `redis-benchmark -c 256`",
                &hand_frac,
            ),
            frac_row(
                "`cached` crate, 256 tasks ÷ `redis-benchmark -c 256`",
                &peer_frac,
            ),
            frac_row(
                "`#[cached]`, 256 tasks ÷ `redis-benchmark -c 1 -P 256`",
                &many_frac_pipelined,
            ),
            frac_row(
                "hand-written, 256 tasks ÷ `redis-benchmark -c 1 -P 256`",
                &hand_frac_pipelined,
            ),
            frac_row("`#[cached]`, 1 task ÷ `redis-benchmark -c 1`", &one_frac),
        ],
    );
    report.text("Absolute numbers (medians; context only, the machine is shared):");
    let abs = |s: &Samples, name: &str| {
        let ns = s.median_ns(name);
        vec![
            name.to_owned(),
            per_op(Duration::from_nanos(ns as u64)),
            rate(1e9 / ns),
        ]
    };
    let mut rows = vec![];
    for name in one_names {
        let mut row = abs(&one, name);
        row[0] = format!("1 task: {}", row[0]);
        rows.push(row);
    }
    for name in many_names {
        let mut row = abs(&many, name);
        row[0] = format!("256 tasks: {}", row[0]);
        rows.push(row);
    }
    rows.push(vec![
        "redis-benchmark -c 1".into(),
        per_op(Duration::from_nanos((1e9 / median(&ceiling_1)) as u64)),
        rate(median(&ceiling_1)),
    ]);
    rows.push(vec![
        "redis-benchmark -c 256".into(),
        per_op(Duration::from_nanos((1e9 / median(&ceiling_256)) as u64)),
        rate(median(&ceiling_256)),
    ]);
    rows.push(vec![
        "redis-benchmark -c 1 -P 256".into(),
        per_op(Duration::from_nanos(
            (1e9 / median(&ceiling_pipelined)) as u64,
        )),
        rate(median(&ceiling_pipelined)),
    ]);
    report.table(&["variant", "time per call", "calls per second"], &rows);
    report.text("For issue 2: a hit and a miss as ratios to a bare `GET` of the same bytes on a `ConnectionManager`, 1 task, same run (a miss is a GET that finds nothing, the computation, and a SET):");
    report.table(
        &["", "median ratio", "range"],
        &[
            median_row("`#[cached]` hit ÷ bare GET", &hit_vs_get),
            median_row("hand-written hit ÷ bare GET", &hand_vs_get),
            median_row("`#[cached]` miss ÷ bare GET", &miss_vs_get),
        ],
    );
    report.finish();
}
