//! A hit served by the in-process tier (`#[cached(local = true)]` with
//! `Config::local_tier`), side by side with moka's `future::Cache::get` (a
//! clone of the same record) and with a hit served by Redis (`#[cached]`),
//! on the benches' runtime (the default multi-thread runtime unless
//! `BENCH_WORKERS` says otherwise) and one local Redis, at 1 task and at
//! 256 concurrent tasks.
//!
//! The tier keeps decoded values (quick_cache): a tier hit is a lookup and
//! a clone, like moka's `get`. A Redis hit is a round trip and a
//! `serde_json` decode.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachekit::LocalTierConfig;

#[path = "../support/mod.rs"]
mod support;

use support::{
    Plan, RedisServer, Report, User, load_user, median, median_row, order, per_op, range,
    ratio_row, run, workers,
};

const KEYS: u64 = 1_000;

const TIER: usize = 0;
const MOKA: usize = 1;
const REDIS: usize = 2;
const NAMES: [&str; 3] = [
    "`#[cached(local = true)]`, tier hit",
    "moka `future::Cache::get` + clone",
    "`#[cached]`, Redis hit",
];

/// Calls per turn of a variant at 1 task (the variants take turns, so that
/// a drift of the machine lands on all of them).
const BLOCK_LOCAL: usize = 20_000;
const BLOCK_REDIS: usize = 500;

#[cachekit::cached(ttl = 3600, key = "redis:user:{id}")]
async fn redis_user(id: u64) -> User {
    load_user(id)
}

#[cachekit::cached(ttl = 3600, key = "tier:user:{id}", local = true)]
async fn tier_user(id: u64) -> User {
    load_user(id)
}

type Moka = Arc<moka::future::Cache<u64, User>>;

async fn call(moka: &Moka, variant: usize, id: u64) -> User {
    match variant {
        TIER => tier_user(id).await,
        MOKA => moka.get(&id).await.expect("warm"),
        _ => redis_user(id).await,
    }
}

/// `calls` calls of `variant` spread over `tasks` tasks; time per call.
async fn drive(moka: &Moka, variant: usize, tasks: usize, calls: usize) -> Duration {
    let per_task = (calls / tasks).max(1);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let moka = moka.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let id = (i as u64 * 7 + t as u64) % KEYS;
                    black_box(call(&moka, variant, id).await);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    started.elapsed() / (per_task * tasks) as u32
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn time_row(name: &str, times: &[f64]) -> Vec<String> {
    let (lo, hi) = range(times);
    let d = |v: f64| per_op(Duration::from_nanos(v as u64));
    vec![
        name.to_owned(),
        d(median(times)),
        format!("{} – {}", d(lo), d(hi)),
    ]
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start("tier", "In-process tier hit vs moka and Redis", plan);
    let server = RedisServer::start();
    let url = server.url();
    let moka: Moka = Arc::new(
        moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(3600))
            .build(),
    );
    run(async {
        let tier = LocalTierConfig {
            // Long enough that no entry leaves the tier during the run.
            max_ttl: Duration::from_secs(3600),
            ..LocalTierConfig::default()
        };
        cachekit::init(cachekit::Config::redis(&url).local_tier(tier))
            .await
            .expect("cachekit init");
        for id in 0..KEYS {
            redis_user(id).await;
            // A miss stores in Redis; the next read keeps the entry in process.
            tier_user(id).await;
            tier_user(id).await;
            moka.insert(id, load_user(id)).await;
        }
    });
    // `BENCH_PROFILE=tier|moka|redis`: only those hits (at `BENCH_TASKS`
    // tasks, default 256), for a profiler.
    if let Ok(only) = std::env::var("BENCH_PROFILE") {
        let variant = match only.as_str() {
            "tier" => TIER,
            "moka" => MOKA,
            "redis" => REDIS,
            other => panic!("BENCH_PROFILE={other}: expected tier, moka or redis"),
        };
        let tasks = std::env::var("BENCH_TASKS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(256);
        let calls = plan.n(if variant == REDIS { 500_000 } else { 5_000_000 });
        let took = run(drive(&moka, variant, tasks, calls));
        eprintln!(
            "{only}: {calls} calls at {tasks} tasks, {} per call",
            per_op(took)
        );
        return;
    }

    let before = cachekit::stats();
    // Per round: at 1 task, the local variants in turns of BLOCK_LOCAL calls
    // and the Redis hit in turns of BLOCK_REDIS; at 256 tasks, one run each.
    let local_blocks = plan.n(20).max(1);
    let redis_blocks = plan.n(40).max(1);
    let many_local = plan.n(2_000_000);
    let many_redis = plan.n(256 * 400);
    let tasks = 256;
    let mut one: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut many: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut tier_calls = 0u64;
    for round in 0..plan.rounds {
        let mut sums = [0f64; 3];
        for b in 0..local_blocks.max(redis_blocks) {
            for v in order(round + b, 3) {
                let (blocks, block) = if v == REDIS {
                    (redis_blocks, BLOCK_REDIS)
                } else {
                    (local_blocks, BLOCK_LOCAL)
                };
                if b < blocks {
                    sums[v] += ns(run(drive(&moka, v, 1, block))) * block as f64;
                }
            }
        }
        one[TIER].push(sums[TIER] / (local_blocks * BLOCK_LOCAL) as f64);
        one[MOKA].push(sums[MOKA] / (local_blocks * BLOCK_LOCAL) as f64);
        one[REDIS].push(sums[REDIS] / (redis_blocks * BLOCK_REDIS) as f64);
        tier_calls += (local_blocks * BLOCK_LOCAL) as u64;
        for v in order(round, 3) {
            let calls = if v == REDIS { many_redis } else { many_local };
            many[v].push(ns(run(drive(&moka, v, tasks, calls))));
            if v == TIER {
                tier_calls += ((calls / tasks) * tasks) as u64;
            }
        }
        eprintln!(
            "round {}: tier ÷ moka {:.3} (1 task), {:.3} ({tasks} tasks); Redis ÷ tier {:.1} (1 task)",
            round + 1,
            one[TIER][round] / one[MOKA][round],
            many[TIER][round] / many[MOKA][round],
            one[REDIS][round] / one[TIER][round],
        );
    }
    let after = cachekit::stats();
    drop(server);
    let tier_counts = after.function("tier_user").copied().unwrap_or_default();
    let tier_before = before.function("tier_user").copied().unwrap_or_default();
    let local_hits = tier_counts.local_hits - tier_before.local_hits;

    let ratios = |s: &[Vec<f64>], a: usize, b: usize| -> Vec<f64> {
        s[a].iter().zip(&s[b]).map(|(a, b)| a / b).collect()
    };
    let one_vs_moka = ratios(&one, TIER, MOKA);
    let many_vs_moka = ratios(&many, TIER, MOKA);
    let one_redis = ratios(&one, REDIS, TIER);
    let many_redis_ratio = ratios(&many, REDIS, TIER);
    let workers = workers();

    report.text(&format!(
        "{KEYS} warm keys holding a 113-byte JSON record; client runtime with {workers} worker(s). \
         Per round at 1 task: {} tier hits and as many moka gets, in turns of {BLOCK_LOCAL}, and {} Redis hits in turns of {BLOCK_REDIS}; \
         at {tasks} tasks: {many_local} tier hits, {many_local} moka gets and {many_redis} Redis hits, spread over the tasks. \
         The tier keeps decoded values (a hit is a lookup and a clone, no serde); moka's `get` clones the same `User`; a Redis hit is a round trip and a `serde_json` decode. \
         Tier hits served in process during the measurement: {local_hits} of {tier_calls}.",
        local_blocks * BLOCK_LOCAL,
        redis_blocks * BLOCK_REDIS,
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
                "1 task: tier hit ÷ moka `get`",
                &one_vs_moka,
                "≤ 1.5x",
                median(&one_vs_moka) <= 1.5,
            ),
            ratio_row(
                &format!("{tasks} tasks: tier hit ÷ moka `get`"),
                &many_vs_moka,
                "≤ 1.5x",
                median(&many_vs_moka) <= 1.5,
            ),
            ratio_row(
                "1 task: Redis hit ÷ tier hit",
                &one_redis,
                "≥ 50x",
                median(&one_redis) >= 50.0,
            ),
        ],
    );
    report.text(&format!(
        "At {tasks} tasks a Redis hit is bounded by the server's throughput, not its latency (context, no goal):"
    ));
    report.table(
        &["", "median ratio", "range over rounds"],
        &[median_row(
            &format!("{tasks} tasks: Redis hit ÷ tier hit"),
            &many_redis_ratio,
        )],
    );
    report.text("Time per call (medians over rounds, with their range; context only, the machine is shared):");
    let mut rows = Vec::new();
    for (v, name) in NAMES.iter().enumerate() {
        rows.push(time_row(&format!("1 task: {name}"), &one[v]));
    }
    for (v, name) in NAMES.iter().enumerate() {
        rows.push(time_row(&format!("{tasks} tasks: {name}"), &many[v]));
    }
    report.table(&["variant", "median", "range"], &rows);
    report.finish();
}
