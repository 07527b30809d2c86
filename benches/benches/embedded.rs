//! The embedded default's hit, side by side with the in-memory choices a
//! Rust user has, on the default multi-thread tokio runtime (what services
//! run, unless `BENCH_WORKERS` says otherwise): time per hit at 1 task and
//! at 256 concurrent tasks, over a warm
//! set of 1,000 records of 113 bytes (the `User` of `support`).
//!
//! * `#[cached]` on the embedded store (cachekit's default, no config);
//! * the `cached` crate's `#[cached(ttl_secs = ...)]` on an `async fn`;
//! * moka's `future::Cache::get` (a clone of the value);
//! * a `Mutex<HashMap>` get and clone, the floor of hand-written code.
//!
//! `BENCH_ROUNDS` rounds (default 7), each variant's turn in a rotating
//! order; ratios per round, median and range reported.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../support/mod.rs"]
mod support;

use support::{Plan, Report, User, load_user, median, order, per_op, range, ratio_row};

const KEYS: u64 = 1_000;
const VARIANTS: usize = 4;
const NAMES: [&str; VARIANTS] = [
    "cachekit #[cached] (embedded)",
    "cached crate #[cached]",
    "moka future::Cache::get",
    "Mutex<HashMap> get + clone",
];

#[cachekit::cached(ttl = 3600, key = "user:{id}")]
async fn ck_user(id: u64) -> User {
    load_user(id)
}

#[cached::proc_macro::cached(ttl_secs = 3600)]
async fn peer_user(id: u64) -> User {
    load_user(id)
}

struct Peers {
    moka: moka::future::Cache<u64, User>,
    map: Mutex<HashMap<u64, User>>,
}

async fn call(peers: &Peers, variant: usize, id: u64) -> User {
    match variant {
        0 => ck_user(id).await,
        1 => peer_user(id).await,
        2 => peers.moka.get(&id).await.expect("warm"),
        _ => peers
            .map
            .lock()
            .expect("map")
            .get(&id)
            .cloned()
            .expect("warm"),
    }
}

/// Time per hit of `variant` with `tasks` tasks making `calls` calls each.
async fn drive(peers: &Arc<Peers>, variant: usize, tasks: usize, calls: usize) -> Duration {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let peers = peers.clone();
            tokio::spawn(async move {
                for i in 0..calls {
                    let id = (i as u64 * 7 + t as u64) % KEYS;
                    black_box(call(&peers, variant, id).await);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    started.elapsed() / (tasks * calls) as u32
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "embedded",
        "Embedded default hit vs in-memory peers (default multi-thread runtime)",
        plan,
    );
    // The benches' runtime: the default multi-thread runtime (one worker
    // per core) unless `BENCH_WORKERS` says otherwise.
    let runtime = &*support::RUNTIME;
    let workers = support::workers();
    let peers = Arc::new(Peers {
        moka: moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(3600))
            .build(),
        map: Mutex::new(HashMap::new()),
    });
    runtime.block_on(async {
        for id in 0..KEYS {
            ck_user(id).await;
            peer_user(id).await;
            peers.moka.insert(id, load_user(id)).await;
            peers.map.lock().unwrap().insert(id, load_user(id));
        }
    });
    // `BENCH_PROFILE=cachekit|cached|moka|map`: only that variant (at
    // `BENCH_TASKS` tasks, default 1), for a profiler.
    if let Ok(only) = std::env::var("BENCH_PROFILE") {
        let variant = ["cachekit", "cached", "moka", "map"]
            .iter()
            .position(|n| *n == only)
            .unwrap_or_else(|| {
                panic!("BENCH_PROFILE={only}: expected cachekit, cached, moka or map")
            });
        let tasks: usize = std::env::var("BENCH_TASKS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(1);
        let calls = plan.n(2_000_000) / tasks;
        let took = runtime.block_on(drive(&peers, variant, tasks, calls));
        eprintln!("{only}: {tasks} task(s), {} per hit", per_op(took));
        return;
    }
    // At 1 task the variants take turns in blocks, so that a drift of the
    // shared machine lands on all of them.
    for (tasks, blocks, calls) in [(1usize, 10, plan.n(20_000)), (256, 1, plan.n(2_000))] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS];
        for round in 0..plan.rounds {
            let mut sums = [0f64; VARIANTS];
            for b in 0..blocks {
                for v in order(round + b, VARIANTS) {
                    let t = runtime.block_on(drive(&peers, v, tasks, calls));
                    sums[v] += t.as_nanos() as f64;
                }
            }
            for (t, sum) in times.iter_mut().zip(sums) {
                t.push(sum / blocks as f64);
            }
        }
        let mut rows = Vec::new();
        for (v, name) in NAMES.iter().enumerate() {
            let (lo, hi) = range(&times[v]);
            rows.push(vec![
                (*name).to_owned(),
                per_op(Duration::from_nanos(median(&times[v]) as u64)),
                format!(
                    "{} – {}",
                    per_op(Duration::from_nanos(lo as u64)),
                    per_op(Duration::from_nanos(hi as u64))
                ),
            ]);
        }
        report.text(&format!(
            "**{tasks} task(s), {workers} workers: time per hit**"
        ));
        report.table(&["variant", "median", "range"], &rows);
        let ratios = |peer: usize| -> Vec<f64> {
            times[0]
                .iter()
                .zip(&times[peer])
                .map(|(ck, p)| ck / p)
                .collect()
        };
        let goal_cached = ratios(1);
        report.text(&format!("**{tasks} task(s): cachekit ÷ peer (per round)**"));
        report.table(
            &["cachekit ÷", "median", "range", "goal", "met"],
            &[
                ratio_row(
                    NAMES[1],
                    &goal_cached,
                    "≤ 1.0x",
                    median(&goal_cached) <= 1.0,
                ),
                ratio_row(NAMES[2], &ratios(2), "—", true),
                ratio_row(NAMES[3], &ratios(3), "—", true),
            ],
        );
    }
    report.finish();
}
