//! Invalidation on a keyspace of 1M keys: by pattern (`invalidate`, SCAN +
//! UNLINK), by tag (`invalidate_tag`, the tag's set), and of a namespace
//! (`invalidate_namespace`, one increment). Each round writes the same
//! group of entries through `#[cached(namespace = ..., tags = [...])]`, so
//! all three methods invalidate exactly the same entries among the same 1M
//! keys. Wall time, round trips (through a counting proxy) and the
//! commands the server ran (`INFO commandstats`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[path = "../support/mod.rs"]
mod support;

use support::{
    CountingProxy, Plan, RedisServer, Report, command_calls, command_delta, median, order, per_op,
    range, redis_cmd, run, x,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    org: u64,
    name: String,
}

#[cachekit::cached(ttl = 3600, namespace = "org42", key = "item:{id}", tags = ["org:42"])]
async fn item(id: u64) -> Item {
    Item {
        id,
        org: 42,
        name: format!("item {id}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    Pattern,
    Tag,
    Namespace,
}

const METHODS: [Method; 3] = [Method::Pattern, Method::Tag, Method::Namespace];

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Pattern => "pattern: `invalidate(\"org42:*\")`",
            Method::Tag => "tag: `invalidate_tag(\"org:42\")`",
            Method::Namespace => "namespace: `invalidate_namespace(\"org42\")`",
        }
    }

    /// Invalidates the group; returns the entries it reports.
    async fn run(self) -> u64 {
        match self {
            // The namespace's keys at generation 0 start with `org42:`; later
            // generations with `org42#G:`, which the cleanup removes.
            Method::Pattern => cachekit::invalidate("org42:*").await,
            Method::Tag => cachekit::invalidate_tag("org:42").await,
            Method::Namespace => cachekit::invalidate_namespace("org42").await.map(|_| 0),
        }
        .expect("invalidation")
    }
}

/// Writes the group: `group` entries through the cached function, 64 at a time.
async fn seed_group(group: u64) {
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            tokio::spawn(async move {
                let mut id = t;
                while id < group {
                    item(id).await;
                    id += 64;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("seed task");
    }
}

/// Whether every entry of the group is a miss now (reads bypass nothing:
/// a cached call that computes counts a miss).
async fn all_missed(group: u64) -> bool {
    let before = cachekit::stats().function("item").map_or(0, |c| c.misses);
    for id in (0..group).step_by((group / 100).max(1) as usize) {
        item(id).await;
    }
    let after = cachekit::stats().function("item").map_or(0, |c| c.misses);
    after - before == group.div_ceil((group / 100).max(1))
}

/// Back to generation 0 with no entry of the group left anywhere: every
/// generation's keys, the generation counter (`org42#gen`) and the tag set.
/// The filler stays.
fn reset(conn: &mut redis::Connection) {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("org42*")
            .arg("COUNT")
            .arg(10_000)
            .query(conn)
            .expect("SCAN");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK").arg(&keys).query(conn).expect("UNLINK");
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let _: i64 = redis_cmd(conn, &["DEL", "#tag:org:42"]);
}

struct Outcome {
    wall: Duration,
    reported: u64,
    round_trips: u64,
    commands: Vec<(String, u64)>,
}

fn measure(
    method: Method,
    group: u64,
    conn: &mut redis::Connection,
    proxy: &CountingProxy,
) -> Outcome {
    reset(conn);
    run(async {
        // Forget generations read before the reset.
        cachekit::init(cachekit::Config::redis(&proxy.url()))
            .await
            .expect("init");
        seed_group(group).await;
    });
    let before = command_calls(conn);
    let (wall, reported, round_trips) = run(async {
        let trips = proxy.round_trips();
        let started = Instant::now();
        let reported = method.run().await;
        let wall = started.elapsed();
        (wall, reported, proxy.round_trips() - trips)
    });
    let after = command_calls(conn);
    assert!(
        run(all_missed(group)),
        "{method:?}: every entry of the group must be a miss afterwards"
    );
    Outcome {
        wall,
        reported,
        round_trips,
        commands: command_delta(&before, &after),
    }
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "invalidation",
        "Invalidation on 1M keys: pattern vs tag vs namespace",
        plan,
    );
    let keyspace = plan.n(1_000_000) as u64;
    let group = plan.n(10_000) as u64;
    let server = RedisServer::start();
    let mut conn = server.conn();
    let filler = keyspace - group;
    let _: String = redis_cmd(
        &mut conn,
        &["DEBUG", "POPULATE", &filler.to_string(), "filler", "100"],
    );
    let port = server.port;
    let proxy = run(async move { CountingProxy::start(port).await });

    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut outcomes: Vec<Option<Outcome>> = vec![None, None, None];
    for round in 0..plan.rounds {
        for i in order(round, METHODS.len()) {
            let o = measure(METHODS[i], group, &mut conn, &proxy);
            wall[i].push(o.wall.as_nanos() as f64);
            eprintln!(
                "round {}: {:?} {} ({} round trips)",
                round + 1,
                METHODS[i],
                per_op(o.wall),
                o.round_trips
            );
            outcomes[i] = Some(o);
        }
    }
    let dbsize: i64 = redis_cmd(&mut conn, &["DBSIZE"]);
    drop(server);

    let ratio = |a: usize, b: usize| -> Vec<f64> {
        wall[a].iter().zip(&wall[b]).map(|(a, b)| a / b).collect()
    };
    report.text(&format!(
        "A fresh server holds {filler} filler keys (`DEBUG POPULATE`, 100-byte values) and, each round, a group of {group} entries written through \
         `#[cached(namespace = \"org42\", key = \"item:{{id}}\", tags = [\"org:42\"])]`: {keyspace} keys in all ({dbsize} at the end, tag set and generation included). \
         Each method then invalidates the same group; afterwards every entry of the group is checked to be a miss. \
         cachekit runs through a proxy that counts round trips (request bursts on the wire); the wall time includes the proxy's hop."
    ));
    let mut rows = Vec::new();
    for (i, m) in METHODS.iter().enumerate() {
        let o = outcomes[i].as_ref().expect("measured");
        let (lo, hi) = range(&wall[i]);
        rows.push(vec![
            m.name().to_owned(),
            per_op(Duration::from_nanos(median(&wall[i]) as u64)),
            format!(
                "{} – {}",
                per_op(Duration::from_nanos(lo as u64)),
                per_op(Duration::from_nanos(hi as u64))
            ),
            o.round_trips.to_string(),
            o.commands
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            if *m == Method::Namespace {
                "— (old entries expire by TTL)".into()
            } else {
                o.reported.to_string()
            },
        ]);
    }
    report.table(
        &[
            "method",
            "wall time (median)",
            "range over rounds",
            "round trips",
            "server commands (incl. inside scripts)",
            "entries deleted",
        ],
        &rows,
    );
    let p_vs_t = ratio(0, 1);
    let p_vs_n = ratio(0, 2);
    let t_vs_n = ratio(1, 2);
    report.table(
        &["ratio of wall times", "median", "range"],
        &[
            ("pattern ÷ tag", &p_vs_t),
            ("pattern ÷ namespace", &p_vs_n),
            ("tag ÷ namespace", &t_vs_n),
        ]
        .iter()
        .map(|(label, r)| {
            let (lo, hi) = range(r);
            vec![
                (*label).to_owned(),
                x(median(r)),
                format!("{} – {}", x(lo), x(hi)),
            ]
        })
        .collect::<Vec<_>>(),
    );
    report.finish();
}
