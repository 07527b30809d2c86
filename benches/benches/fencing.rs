//! What stale-set fencing costs: the miss path of `#[cached]` (a fencing
//! token taken at the miss, a compare-and-set when storing) against the
//! version-one miss path written by hand on a redis `MultiplexedConnection`
//! (GET that finds nothing, `serde_json` encode, SET EX), and the hit path
//! of both (GET and decode), which fencing must leave alone.
//!
//! Per round, at 1 task (the variants taking turns every 250 calls) and at
//! 256 tasks (each variant in turn, in an order that rotates): time per
//! call of misses on keys never seen before (the computation returns at
//! once), and of hits on 1,000 warm keys. Then, outside the timing, the
//! commands each variant sends per miss and per hit (`INFO commandstats`
//! deltas on the bench's own server) and its round trips (through a
//! counting proxy).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

#[path = "../support/mod.rs"]
mod support;

use support::{
    CountingProxy, Plan, Report, User, command_calls, command_delta, load_user, median, median_row,
    order, per_op, range,
};

/// Calls per turn of a variant at 1 task.
const BLOCK: usize = 250;
const TASKS: usize = 256;
const WARM_KEYS: u64 = 1_000;
/// TTL of the entries of misses: short, so that the server does not fill up.
const MISS_TTL: u64 = 30;

static FRESH: AtomicU64 = AtomicU64::new(1_000_000_000);

fn fresh() -> u64 {
    FRESH.fetch_add(1, Ordering::Relaxed)
}

#[cachekit::cached(ttl = 30, key = "fence:miss:{id}")]
async fn ck_miss(id: u64) -> User {
    load_user(id)
}

#[cachekit::cached(ttl = 3600, key = "fence:hit:{id}")]
async fn ck_hit(id: u64) -> User {
    load_user(id)
}

/// The version-one miss: GET, compute, encode, SET EX.
async fn hand_miss(conn: &MultiplexedConnection, id: u64) -> User {
    let key = format!("hand:miss:{id}");
    let mut conn = conn.clone();
    let cached: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    if let Some(raw) = cached
        && let Ok(user) = serde_json::from_slice(&raw)
    {
        return user;
    }
    let user = load_user(id);
    let raw = serde_json::to_vec(&user).expect("encode");
    redis::cmd("SET")
        .arg(&key)
        .arg(raw)
        .arg("EX")
        .arg(MISS_TTL)
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");
    user
}

/// A hit by hand: GET and decode.
async fn hand_hit(conn: &MultiplexedConnection, id: u64) -> User {
    let mut conn = conn.clone();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("hand:hit:{id}"))
        .query_async(&mut conn)
        .await
        .expect("GET");
    serde_json::from_slice(&raw).expect("decode")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Miss,
    Hit,
}

const CACHEKIT: usize = 0;
const HAND: usize = 1;
const NAMES: [&str; 2] = ["`#[cached]` (fenced)", "hand-written (GET, SET EX)"];

async fn one(variant: usize, path: Path, conn: &MultiplexedConnection, n: u64) {
    let user = match (variant, path) {
        (CACHEKIT, Path::Miss) => ck_miss(fresh()).await,
        (CACHEKIT, Path::Hit) => ck_hit(n % WARM_KEYS).await,
        (_, Path::Miss) => hand_miss(conn, fresh()).await,
        (_, Path::Hit) => hand_hit(conn, n % WARM_KEYS).await,
    };
    black_box(user);
}

/// `calls` calls from one task: its time.
async fn serial(
    variant: usize,
    path: Path,
    conn: &MultiplexedConnection,
    calls: usize,
) -> Duration {
    let conn = conn.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        for n in 0..calls {
            one(variant, path, &conn, n as u64).await;
        }
        started.elapsed()
    })
    .await
    .expect("task")
}

/// `calls` calls spread over `TASKS` tasks: the wall time.
async fn parallel(
    variant: usize,
    path: Path,
    conn: &MultiplexedConnection,
    calls: usize,
) -> Duration {
    let per_task = calls / TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let conn = conn.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    one(variant, path, &conn, (t * per_task + n) as u64).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    started.elapsed()
}

/// Nanoseconds per call of each variant at 1 task, in turns of `BLOCK`.
async fn at_one_task(
    path: Path,
    conn: &MultiplexedConnection,
    calls: usize,
    round: usize,
) -> [f64; 2] {
    let blocks = (calls / BLOCK).max(1);
    let mut sums = [Duration::ZERO; 2];
    for b in 0..blocks {
        for v in order(round * blocks + b, 2) {
            sums[v] += serial(v, path, conn, BLOCK).await;
        }
    }
    sums.map(|s| s.as_nanos() as f64 / (blocks * BLOCK) as f64)
}

/// Nanoseconds per call of each variant at `TASKS` tasks.
async fn at_many_tasks(
    path: Path,
    conn: &MultiplexedConnection,
    calls: usize,
    round: usize,
) -> [f64; 2] {
    let mut out = [0.0; 2];
    for v in order(round, 2) {
        let calls = calls / TASKS * TASKS;
        out[v] = parallel(v, path, conn, calls).await.as_nanos() as f64 / calls as f64;
    }
    out
}

/// Commands per call of each variant, by `INFO commandstats` deltas.
fn commands_per_call(
    runtime: &tokio::runtime::Runtime,
    admin: &mut redis::Connection,
    conn: &MultiplexedConnection,
    path: Path,
    calls: usize,
) -> [String; 2] {
    [CACHEKIT, HAND].map(|v| {
        // Let the previous variant's background writes (a lease's release)
        // land first, and this one's before counting.
        std::thread::sleep(Duration::from_millis(200));
        let before = command_calls(admin);
        runtime.block_on(serial(v, path, conn, calls));
        std::thread::sleep(Duration::from_millis(200));
        let after = command_calls(admin);
        // Less than one in 200 calls: background traffic (the store's
        // liveness pings), not the calls'.
        let delta: Vec<(String, u64)> = command_delta(&before, &after)
            .into_iter()
            .filter(|(_, n)| *n * 200 >= calls as u64)
            .collect();
        let total: u64 = delta.iter().map(|(_, n)| n).sum();
        let detail: Vec<String> = delta
            .iter()
            .map(|(name, n)| format!("{} {}", name, trim(*n as f64 / calls as f64)))
            .collect();
        format!(
            "{} ({})",
            trim(total as f64 / calls as f64),
            detail.join(", ")
        )
    })
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Round trips per call of each variant, through a counting proxy (the
/// global cache and a connection of its own are pointed at it).
fn round_trips_per_call(
    runtime: &tokio::runtime::Runtime,
    server_port: u16,
    calls: usize,
) -> [[f64; 2]; 2] {
    runtime.block_on(async {
        let proxy = CountingProxy::start(server_port).await;
        cachekit::init(cachekit::Config::redis(&proxy.url()))
            .await
            .expect("init through the proxy");
        let client = redis::Client::open(proxy.url()).expect("client");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection through the proxy");
        // Connect both, and warm what the hits read.
        ck_hit(0).await;
        hand_hit(&conn, 0).await;
        let mut out = [[0.0; 2]; 2];
        for (p, path) in [Path::Miss, Path::Hit].into_iter().enumerate() {
            for v in [CACHEKIT, HAND] {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let before = proxy.round_trips();
                serial(v, path, &conn, calls).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                out[p][v] = (proxy.round_trips() - before) as f64 / calls as f64;
            }
        }
        out
    })
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "fencing",
        "Fencing cost: the miss path before and after",
        plan,
    );
    let server = support::RedisServer::start();
    let url = server.url();
    let port = server.port;
    // The default multi-thread runtime: one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = runtime.metrics().num_workers();
    let conn = runtime.block_on(async {
        cachekit::init(cachekit::Config::redis(&url))
            .await
            .expect("cachekit init");
        let client = redis::Client::open(url.as_str()).expect("client");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        for id in 0..WARM_KEYS {
            ck_hit(id).await;
            let raw = serde_json::to_vec(&load_user(id)).expect("encode");
            let mut c = conn.clone();
            redis::cmd("SET")
                .arg(format!("hand:hit:{id}"))
                .arg(raw)
                .query_async::<()>(&mut c)
                .await
                .expect("SET");
        }
        conn
    });
    let mut admin = server.conn();

    let serial_calls = plan.n(5_000);
    let parallel_calls = plan.n(25_600).max(TASKS);
    // [path][concurrency][variant][round], ns per call
    let mut ns = vec![vec![vec![Vec::new(); 2]; 2]; 2];
    for round in 0..plan.rounds {
        for (p, path) in [Path::Miss, Path::Hit].into_iter().enumerate() {
            let one = runtime.block_on(at_one_task(path, &conn, serial_calls, round));
            let many = runtime.block_on(at_many_tasks(path, &conn, parallel_calls, round));
            for v in 0..2 {
                ns[p][0][v].push(one[v]);
                ns[p][1][v].push(many[v]);
            }
        }
        eprintln!(
            "round {}: miss ck/hand {:.3} (1 task) {:.3} ({TASKS} tasks); hit ck/hand {:.3} / {:.3}",
            round + 1,
            ns[0][0][0][round] / ns[0][0][1][round],
            ns[0][1][0][round] / ns[0][1][1][round],
            ns[1][0][0][round] / ns[1][0][1][round],
            ns[1][1][0][round] / ns[1][1][1][round],
        );
    }

    let count_calls = 1_000;
    let miss_commands = commands_per_call(&runtime, &mut admin, &conn, Path::Miss, count_calls);
    let hit_commands = commands_per_call(&runtime, &mut admin, &conn, Path::Hit, count_calls);
    let round_trips = round_trips_per_call(&runtime, port, count_calls);
    drop(server);

    let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<f64>>();
    report.text(&format!(
        "This bench builds its own runtime: the default multi-thread runtime, {workers} worker threads (one per core). \
         One Redis, the bench's own. A miss is a call on a key never seen before whose computation returns at once (a 113-byte JSON record); a hit reads one of {WARM_KEYS} warm keys. \
         Per round: {serial_calls} calls of each variant from 1 task (the variants taking turns every {BLOCK} calls), and {parallel_calls} calls of each spread over {TASKS} tasks. \
         Ratios are of time per call (`#[cached]` ÷ hand-written): the cost of fencing on the miss path is the miss ratio's distance from the hit ratio."
    ));
    let mut rows = Vec::new();
    for (p, path) in ["miss", "hit"].into_iter().enumerate() {
        for (c, tasks) in ["1 task", "256 tasks"].into_iter().enumerate() {
            rows.push(median_row(
                &format!("{path}, {tasks}: `#[cached]` ÷ hand-written"),
                &ratio(&ns[p][c][CACHEKIT], &ns[p][c][HAND]),
            ));
        }
    }
    report.table(&["comparison", "median ratio", "range over rounds"], &rows);

    let mut rows = Vec::new();
    for v in [CACHEKIT, HAND] {
        let cell = |p: usize, c: usize| {
            let (lo, hi) = range(&ns[p][c][v]);
            format!(
                "{} ({} – {})",
                per_op(Duration::from_nanos(median(&ns[p][c][v]) as u64)),
                per_op(Duration::from_nanos(lo as u64)),
                per_op(Duration::from_nanos(hi as u64)),
            )
        };
        rows.push(vec![
            NAMES[v].to_owned(),
            cell(0, 0),
            cell(0, 1),
            cell(1, 0),
            cell(1, 1),
        ]);
    }
    report.text("Time per call (medians over rounds, range in brackets; context only, the machine is shared):");
    report.table(
        &[
            "",
            "miss, 1 task",
            "miss, 256 tasks (wall ÷ calls)",
            "hit, 1 task",
            "hit, 256 tasks (wall ÷ calls)",
        ],
        &rows,
    );

    report.text(&format!(
        "What each call sends ({count_calls} calls from 1 task, outside the timing): commands per call from `INFO commandstats` deltas on the bench's server, and round trips per call counted by a proxy in front of it (a round trip: the client's bytes that follow the server's last answer on a connection)."
    ));
    let rows = [CACHEKIT, HAND]
        .map(|v| {
            vec![
                NAMES[v].to_owned(),
                miss_commands[v].clone(),
                trim(round_trips[0][v]),
                hit_commands[v].clone(),
                trim(round_trips[1][v]),
            ]
        })
        .to_vec();
    report.table(
        &[
            "",
            "miss: commands per call",
            "miss: round trips",
            "hit: commands per call",
            "hit: round trips",
        ],
        &rows,
    );
    report.finish();
}
