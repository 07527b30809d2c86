//! `Cache::get_many` of N keys (one `MGET`) vs N single `Cache::get` calls
//! one after the other, on Redis. Round trips are counted through a proxy.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cachekit::Cache;
use serde::{Deserialize, Serialize};

#[path = "../support/mod.rs"]
mod support;

use support::{CountingProxy, Plan, RedisServer, Report, median, order, per_op, range, run, x};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
}

static USERS: Cache = Cache::new("users", Duration::from_secs(3600));

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

async fn many(keys: &[String]) {
    let values: Vec<Option<User>> = USERS.get_many(keys).await.expect("get_many");
    assert!(values.iter().all(Option::is_some), "every key is present");
    black_box(values);
}

async fn singles(keys: &[String]) {
    for k in keys {
        let v: Option<User> = USERS.get(k).await.expect("get");
        assert!(v.is_some(), "every key is present");
        black_box(v);
    }
}

/// Runs `op` `reps` times on one task; time per `op`.
async fn time(batch: bool, keys: Vec<String>, reps: usize) -> Duration {
    tokio::spawn(async move {
        let started = Instant::now();
        for _ in 0..reps {
            if batch {
                many(&keys).await;
            } else {
                singles(&keys).await;
            }
        }
        started.elapsed() / reps as u32
    })
    .await
    .expect("bench task")
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "get_many",
        "`Cache::get_many` vs N single gets (Redis)",
        plan,
    );
    let server = RedisServer::start();
    let sizes = [10usize, 100, 1_000];
    let port = server.port;
    let round_trips = run(async move {
        // Count round trips once, through a proxy; time without it.
        let proxy = CountingProxy::start(port).await;
        cachekit::init(cachekit::Config::redis(&proxy.url()))
            .await
            .expect("init");
        let items: Vec<(String, User)> = (0..1_000u64)
            .map(|id| {
                (
                    format!("user:{id}"),
                    User {
                        id,
                        name: format!("User {id}"),
                        email: format!("user{id}@example.com"),
                        active: true,
                    },
                )
            })
            .collect();
        USERS.set_many(&items).await.expect("set_many");
        let mut counted = Vec::new();
        for n in sizes {
            let k = keys(n);
            // Let background messages (set_many announces its keys) go
            // out first: a request that overlaps another on the one
            // connection shares its round trip and would not be counted.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let start = proxy.round_trips();
            many(&k).await;
            let batch = proxy.round_trips() - start;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let start = proxy.round_trips();
            singles(&k).await;
            counted.push((batch, proxy.round_trips() - start));
        }
        counted
    });
    let url = server.url();
    run(async {
        cachekit::init(cachekit::Config::redis(&url))
            .await
            .expect("init");
    });

    let mut rows = Vec::new();
    let mut abs = Vec::new();
    for (s, n) in sizes.into_iter().enumerate() {
        // About 10k single gets per measurement.
        let reps = plan.n((10_000 / n).max(10));
        let mut batch_ns = Vec::new();
        let mut single_ns = Vec::new();
        for round in 0..plan.rounds {
            for i in order(round, 2) {
                let took = run(time(i == 0, keys(n), reps)).as_nanos() as f64;
                if i == 0 {
                    batch_ns.push(took);
                } else {
                    single_ns.push(took);
                }
            }
        }
        let ratios: Vec<f64> = single_ns
            .iter()
            .zip(&batch_ns)
            .map(|(s, b)| s / b)
            .collect();
        let (lo, hi) = range(&ratios);
        let (rt_batch, rt_single) = round_trips[s];
        rows.push(vec![
            n.to_string(),
            x(median(&ratios)),
            format!("{} – {}", x(lo), x(hi)),
            format!("{rt_batch} vs {rt_single}"),
        ]);
        abs.push(vec![
            n.to_string(),
            per_op(Duration::from_nanos(median(&batch_ns) as u64)),
            per_op(Duration::from_nanos(median(&single_ns) as u64)),
        ]);
        eprintln!("N = {n}: {:.1}x", median(&ratios));
    }
    drop(server);
    report.text(
        "One task; keys hold a small JSON record in namespace `users`. The ratio is the time of N `get` calls one after the other over the time of one `get_many` of the same N keys \
         (above 1: `get_many` is faster). Round trips counted once through a proxy that counts request bursts; the timed runs connect directly.",
    );
    report.table(
        &[
            "N",
            "N gets ÷ get_many (time)",
            "range over rounds",
            "round trips (get_many vs N gets)",
        ],
        &rows,
    );
    report.text("Absolute numbers (medians):");
    report.table(&["N", "get_many", "N gets"], &abs);
    report.finish();
}
