//! A hit served by the in-process tier (`#[cached(local = true)]` with
//! `Config::local_tier`) vs a hit served by Redis (`#[cached]`), side by
//! side on one runtime and one local Redis. Both decode the same JSON
//! record on every call; the tier saves the round trip.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cachekit::LocalTierConfig;

#[path = "../support/mod.rs"]
mod support;

use support::{Plan, RedisServer, Report, User, load_user, median, order, per_op, ratio_row, run};

const KEYS: u64 = 1_000;

#[cachekit::cached(ttl = 3600, key = "redis:user:{id}")]
async fn redis_user(id: u64) -> User {
    load_user(id)
}

#[cachekit::cached(ttl = 3600, key = "tier:user:{id}", local = true)]
async fn tier_user(id: u64) -> User {
    load_user(id)
}

/// `calls` calls from one task; time per call.
async fn drive(local: bool, calls: usize) -> Duration {
    tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..calls {
            let id = i as u64 % KEYS;
            if local {
                black_box(tier_user(id).await);
            } else {
                black_box(redis_user(id).await);
            }
        }
        started.elapsed() / calls as u32
    })
    .await
    .expect("bench task")
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start("tier", "In-process tier hit vs Redis hit", plan);
    let server = RedisServer::start();
    let url = server.url();
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
        }
    });
    // `BENCH_PROFILE=tier|redis`: only those hits, for a profiler.
    if let Ok(only) = std::env::var("BENCH_PROFILE") {
        let local = match only.as_str() {
            "tier" => true,
            "redis" => false,
            other => panic!("BENCH_PROFILE={other}: expected tier or redis"),
        };
        let took = run(drive(local, plan.n(if local { 1_000_000 } else { 50_000 })));
        eprintln!("{only}: {} per call", per_op(took));
        return;
    }
    let before = cachekit::stats();
    let redis_calls = plan.n(20_000);
    let tier_calls = plan.n(400_000);
    let mut redis_ns = Vec::new();
    let mut tier_ns = Vec::new();
    for round in 0..plan.rounds {
        for i in order(round, 2) {
            if i == 0 {
                redis_ns.push(run(drive(false, redis_calls)).as_nanos() as f64);
            } else {
                tier_ns.push(run(drive(true, tier_calls)).as_nanos() as f64);
            }
        }
        eprintln!(
            "round {}: Redis hit ÷ tier hit {:.1}",
            round + 1,
            redis_ns[round] / tier_ns[round]
        );
    }
    let after = cachekit::stats();
    drop(server);
    let tier_counts = after.function("tier_user").copied().unwrap_or_default();
    let tier_before = before.function("tier_user").copied().unwrap_or_default();
    let local_hits = tier_counts.local_hits - tier_before.local_hits;
    let tier_total = (tier_calls * plan.rounds) as u64;

    let ratios: Vec<f64> = redis_ns.iter().zip(&tier_ns).map(|(r, t)| r / t).collect();
    report.text(&format!(
        "One task; {KEYS} warm keys holding a 113-byte JSON record; per round {redis_calls} Redis hits and {tier_calls} tier hits, \
         both decoding the record (the tier keeps encoded bytes, so a tier hit still runs serde_json). \
         Tier hits served in process during the measurement: {local_hits} of {tier_total}."
    ));
    report.table(
        &[
            "comparison",
            "median ratio",
            "range over rounds",
            "goal",
            "met",
        ],
        &[ratio_row(
            "Redis hit time ÷ tier hit time",
            &ratios,
            "≥ 50x",
            median(&ratios) >= 50.0,
        )],
    );
    report.text("Absolute numbers (medians):");
    report.table(
        &["", "time per call"],
        &[
            vec![
                "`#[cached]`, Redis hit".into(),
                per_op(Duration::from_nanos(median(&redis_ns) as u64)),
            ],
            vec![
                "`#[cached(local = true)]`, tier hit".into(),
                per_op(Duration::from_nanos(median(&tier_ns) as u64)),
            ],
        ],
    );
    report.finish();
}
