//! Throughput of one Redis node against a local 3-primary Redis Cluster
//! (3 replicas), through cachekit's public API, in one run and at the same
//! concurrency. Both are started by the test harness on this machine.
//!
//! ```sh
//! cargo bench --bench cluster_throughput            # 64 concurrent callers, 3 s per case
//! CALLERS=256 SECONDS=5 cargo bench --bench cluster_throughput
//! CASES=get_many ROUNDS=7 cargo bench --bench cluster_throughput   # some cases, more rounds
//! ```
//!
//! The client runs on tokio's default multi-thread runtime (one worker per
//! core; `WORKERS=N` sets the count). Each case runs on the single node and
//! on the cluster, in turns, for `ROUNDS` rounds (default 2); the best
//! round is kept, and the per-round ratios are printed beside it.
//! The numbers go to `BENCHMARKS.md`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit::{Cache, Config, cached};
use common::RedisServer;
use common::cluster::RedisCluster;

/// Keys per case: enough to spread over every slot range of the cluster.
const KEYS: u64 = 10_000;

#[cached(ttl = 600, key = "bench:hit:{id}")]
async fn hit(id: u64) -> u64 {
    id
}

static STORE: Cache = Cache::new("bench", Duration::from_secs(600));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// A cached function whose entries are all present: one GET per call.
    CachedHit,
    /// `Cache::set`: one SET per call.
    Set,
    /// `Cache::set_indexed` with one index: on one node one script; on a
    /// cluster the index's sorted set, then the value.
    SetIndexed,
    /// `Cache::get_many` of 100 keys: one MGET on one node, one per slot
    /// on a cluster.
    GetMany100,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::CachedHit,
        Case::Set,
        Case::SetIndexed,
        Case::GetMany100,
    ];

    /// The name `CASES` selects it by.
    fn id(self) -> &'static str {
        match self {
            Case::CachedHit => "hit",
            Case::Set => "set",
            Case::SetIndexed => "set_indexed",
            Case::GetMany100 => "get_many",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Case::CachedHit => "cached call, hit (GET)",
            Case::Set => "Cache::set (SET)",
            Case::SetIndexed => "Cache::set_indexed, 1 index",
            Case::GetMany100 => "Cache::get_many, 100 keys",
        }
    }

    async fn once(self, n: u64) {
        let id = n % KEYS;
        match self {
            Case::CachedHit => assert_eq!(hit(id).await, id),
            Case::Set => STORE.set(&format!("k{id}"), &id).await.expect("set"),
            Case::SetIndexed => {
                let owner = format!("u{}", id % 100);
                STORE
                    .set_indexed(&format!("i{id}"), &id, &[("owner", &owner)])
                    .await
                    .expect("set_indexed")
            }
            Case::GetMany100 => {
                let keys: Vec<String> = (0..100)
                    .map(|i| format!("k{}", (id + i * 97) % KEYS))
                    .collect();
                let got = STORE.get_many::<u64>(&keys).await.expect("get_many");
                assert_eq!(got.len(), 100);
            }
        }
    }
}

/// Operations per second of `case` with `callers` concurrent callers.
async fn measure(case: Case, callers: usize, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = caller as u64 * 7919;
                while !stop.load(Ordering::Relaxed) {
                    case.once(n).await;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a caller panicked");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Fills the store so that every case reads present entries.
async fn warm() {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let items: Vec<(String, u64)> = chunk.iter().map(|&i| (format!("k{i}"), i)).collect();
        STORE.set_many(&items).await.expect("set_many");
        for &i in chunk {
            hit(i).await;
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let callers = env_number("CALLERS", 64) as usize;
    let seconds = env_number("SECONDS", 3);
    // `CASES=hit,set,set_indexed,get_many` (any of them): default all.
    let cases: Vec<Case> = match std::env::var("CASES") {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(
                    Case::ALL.iter().any(|c| c.id() == *w),
                    "CASES: unknown case {w:?}; expected hit, set, set_indexed or get_many"
                );
            }
            Case::ALL
                .into_iter()
                .filter(|c| wanted.contains(&c.id()))
                .collect()
        }
        _ => Case::ALL.to_vec(),
    };
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    let targets = [
        ("1 node", Config::redis(&server.url())),
        ("cluster", Config::cluster(&cluster.urls())),
    ];
    // Tokio's default multi-thread runtime, what services run.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()) {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let workers = runtime.metrics().num_workers();
    // `ROUNDS=N` (default 2): each round runs every case on both targets.
    let rounds = env_number("ROUNDS", 2).max(1) as usize;
    let mut best = vec![[0f64; 2]; cases.len()];
    // ops/s per case, target and round: the per-round ratios below.
    let mut all = vec![[Vec::new(), Vec::new()]; cases.len()];
    runtime.block_on(async {
        for round in 0..rounds {
            for (t, (name, config)) in targets.iter().enumerate() {
                cachekit::init(config.clone().timeout(Duration::from_secs(2)))
                    .await
                    .expect("init");
                if round == 0 {
                    warm().await;
                }
                for (c, &case) in cases.iter().enumerate() {
                    let ops = measure(case, callers, seconds).await;
                    common::note(format!(
                        "round {round}, {name}: {}: {ops:.0} ops/s",
                        case.name()
                    ));
                    best[c][t] = best[c][t].max(ops);
                    all[c][t].push(ops);
                }
                let errors = cachekit::stats().errors;
                assert_eq!(errors, 0, "{name}: cache errors during the run");
            }
        }
    });
    println!();
    println!(
        "{callers} concurrent callers, {seconds} s per case, best of {rounds} rounds, one multi-thread tokio runtime with {workers} workers"
    );
    println!("| case | 1 node (ops/s) | 3-primary cluster (ops/s) | cluster / 1 node |");
    println!("|---|---:|---:|---:|");
    for (case, [node, cluster]) in cases.iter().zip(&best) {
        println!(
            "| {} | {node:.0} | {cluster:.0} | {:.2} |",
            case.name(),
            cluster / node
        );
    }
    println!();
    println!("cluster / 1 node per round (the two targets run in turns within a round):");
    println!("| case | median | range | rounds |");
    println!("|---|---:|---:|---|");
    for (case, [node, cluster]) in cases.iter().zip(&all) {
        let mut ratios: Vec<f64> = cluster.iter().zip(node).map(|(c, n)| c / n).collect();
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let mid = ratios.len() / 2;
        let median = if ratios.len() % 2 == 1 {
            ratios[mid]
        } else {
            (ratios[mid - 1] + ratios[mid]) / 2.0
        };
        println!(
            "| {} | {median:.2} | {:.2} – {:.2} | {} |",
            case.name(),
            ratios[0],
            ratios[ratios.len() - 1],
            listed.join(", ")
        );
    }
}
