//! The behaviour suites on a real local Redis Cluster (3 primaries, 3
//! replicas, started by the harness), and what only a cluster has: keys
//! spread over every slot and primary, pattern invalidation and `clear()`
//! reaching all of them, multi-slot batches, and another client's write on
//! any primary reaching this process's tier (tracking on every primary).
//!
//! Failover has a cluster of its own, in `tests/cluster_failover.rs`.

mod common;
mod suite;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cachekit::{Cache, CacheOptions, Config, LocalTierConfig, cached, testing};
use common::cluster::{RedisCluster, key_slot as slot, one_id_per_slot, shared_cluster};
use common::{run, unique};

fn ctx() -> suite::Ctx {
    suite::Ctx {
        name: "cluster",
        config: || cachekit::Config::cluster(&shared_cluster().urls()),
        shared: true,
    }
}

all_tests!(ctx());

/// Keys matching `pattern` on each healthy primary, by port.
fn per_primary(cluster: &RedisCluster, pattern: &str) -> HashMap<u16, usize> {
    cluster
        .primaries()
        .into_iter()
        .map(|n| (n.port, cluster.scan_node(n.port, pattern).len()))
        .collect()
}

/// `EVAL` calls that succeeded so far on each primary, by port (`INFO
/// commandstats`: `calls` counts the failed ones too, `rejected_calls`
/// neither).
fn eval_calls(cluster: &RedisCluster) -> HashMap<u16, u64> {
    cluster
        .primaries()
        .into_iter()
        .map(|n| {
            let info: String = n.cmd(&["INFO", "commandstats"]);
            let stats = info
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_eval:"))
                .unwrap_or_default();
            let field = |name: &str| -> u64 {
                stats
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .map_or(0, |c| c.parse().expect("a count"))
            };
            (n.port, field("calls") - field("failed_calls"))
        })
        .collect()
}

#[test]
fn slots_are_computed_as_the_cluster_does() {
    let cluster = shared_cluster();
    for key in [
        "",
        "a",
        "user:7",
        "spread:x:123",
        "{user:7}:cart",
        "a{}b",
        "é:ü",
    ] {
        assert_eq!(slot(key), cluster.slot_of(key), "slot of {key:?}");
    }
}

#[cached(ttl = 120, key = "spread:{run}:{id}")]
async fn spread(run: &str, id: u64) -> u64 {
    id * 7
}

#[test]
fn pattern_invalidation_removes_matching_keys_from_every_primary() {
    run(async {
        ctx().ready().await;
        let cluster = shared_cluster();
        let run_id = unique("pat");
        let other = unique("keep");
        let ids = one_id_per_slot(|i| format!("spread:{run_id}:{i}"));
        // Every slot gets a key, so every primary holds its share.
        for chunk in ids.chunks(512) {
            let calls: Vec<_> = chunk
                .iter()
                .map(|&id| {
                    let run_id = run_id.clone();
                    tokio::spawn(async move { assert_eq!(spread(&run_id, id).await, id * 7) })
                })
                .collect();
            for call in calls {
                call.await.unwrap();
            }
        }
        for id in 0..300 {
            spread(&other, id).await;
        }
        let pattern = format!("spread:{run_id}:*");
        let before = per_primary(cluster, &pattern);
        common::note(format!("keys per primary before: {before:?}"));
        assert_eq!(before.len(), 3, "three primaries: {before:?}");
        assert_eq!(before.values().sum::<usize>(), 16384);
        // Each primary serves a third of the slots, so holds a third of the keys.
        assert!(before.values().all(|&n| n > 5000), "{before:?}");
        let kept_before = per_primary(cluster, &format!("spread:{other}:*"));
        assert_eq!(kept_before.values().sum::<usize>(), 300);

        let deleted = cachekit::invalidate(&pattern).await.unwrap();
        assert_eq!(deleted, 16384, "every key, on every primary");
        let after = per_primary(cluster, &pattern);
        assert!(after.values().all(|&n| n == 0), "left behind: {after:?}");
        assert_eq!(
            per_primary(cluster, &format!("spread:{other}:*")),
            kept_before,
            "keys outside the pattern stay where they were"
        );
        // Recomputed, and cached again.
        assert_eq!(spread(&run_id, ids[0]).await, ids[0] * 7);
        let key = format!("spread:{run_id}:{}", ids[0]);
        let owner = cluster.primary_port_of_slot(slot(&key));
        assert_eq!(cluster.scan_node(owner, &key), vec![key]);
    });
}

#[test]
fn clear_empties_its_namespace_on_every_primary() {
    run(async {
        ctx().ready().await;
        let cluster = shared_cluster();
        let base = unique("clrc");
        let ns: &'static str = Box::leak(base.clone().into_boxed_str());
        let longer: &'static str = Box::leak(format!("{base}up").into_boxed_str());
        let cache = Cache::new(ns, Duration::from_secs(120));
        let neighbour = Cache::new(longer, Duration::from_secs(120));
        let items: Vec<(String, u64)> = (0..3000).map(|i| (format!("k{i}"), i)).collect();
        for chunk in items.chunks(500) {
            cache.set_many(chunk).await.unwrap();
            neighbour.set_many(chunk).await.unwrap();
        }
        for i in 0..50 {
            cache
                .set_indexed(&format!("s{i}"), &i, &[("user", "ada"), ("org", "acme")])
                .await
                .unwrap();
        }
        cachekit::invalidate_namespace(ns).await.unwrap();
        for i in 0..100 {
            cache.set(&format!("new{i}"), &i).await.unwrap();
        }
        let before = per_primary(cluster, &format!("{ns}[:#]*"));
        common::note(format!(
            "namespace keys per primary before clear: {before:?}"
        ));
        assert!(before.values().all(|&n| n > 500), "spread: {before:?}");
        let neighbour_before = per_primary(cluster, &format!("{longer}:*"));

        let deleted = cache.clear().await.unwrap();
        // 3000 + 50 values, 2 indexes, the 100 of the next generation; the
        // generation counter is not an entry and survives.
        assert_eq!(deleted, 3000 + 50 + 2 + 100);
        let after = per_primary(cluster, &format!("{ns}[:#]*"));
        let left: usize = after.values().sum();
        assert_eq!(left, 1, "only the generation counter is left: {after:?}");
        assert_eq!(
            per_primary(cluster, &format!("{longer}:*")),
            neighbour_before
        );
        assert_eq!(neighbour.get::<u64>("k2999").await.unwrap(), Some(2999));
        assert!(cache.keys_by_index("user", "ada").await.unwrap().is_empty());
    });
}

#[test]
fn batches_and_indexes_span_slots() {
    run(async {
        ctx().ready().await;
        let cluster = shared_cluster();
        let ns: &'static str = Box::leak(unique("batch").into_boxed_str());
        let cache = Cache::new(ns, Duration::from_secs(120));
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let slots: HashSet<u16> = keys.iter().map(|k| slot(&format!("{ns}:{k}"))).collect();
        assert!(slots.len() > 900, "the batch spans many slots");
        let items: Vec<(&String, usize)> = keys.iter().zip(0..).collect();
        cache.set_many(&items).await.unwrap();
        let mut asked: Vec<String> = keys.iter().rev().cloned().collect();
        asked.insert(10, "absent".into());
        let evals_before = eval_calls(cluster);
        let got = cache.get_many::<usize>(&asked).await.unwrap();
        let evals_after = eval_calls(cluster);
        // One read-only script per primary (per 256 keys) read the batch
        // across its slots: nothing else in cachekit sends `EVAL` (its
        // scripts go by `EVALSHA`).
        for (port, before) in &evals_before {
            assert!(
                evals_after[port] > *before,
                "primary {port} read its keys with one script: {evals_before:?} -> {evals_after:?}"
            );
        }
        assert_eq!(got[10], None);
        for (k, v) in asked.iter().zip(&got) {
            if k != "absent" {
                let i: usize = k[1..].parse().unwrap();
                assert_eq!(*v, Some(i), "in the order asked");
            }
        }
        // An index and its entries live in different slots.
        for i in 0..40 {
            cache
                .set_indexed(&format!("s{i}"), &i, &[("user", "ada")])
                .await
                .unwrap();
        }
        let mut listed = cache.keys_by_index("user", "ada").await.unwrap();
        listed.sort();
        assert_eq!(listed.len(), 40);
        assert!(cache.delete("s3").await.unwrap());
        assert_eq!(cache.keys_by_index("user", "ada").await.unwrap().len(), 39);
        let owners: HashSet<u16> = (0..40)
            .map(|i| cluster.primary_port_of_slot(slot(&format!("{ns}:s{i}"))))
            .collect();
        assert_eq!(owners.len(), 3, "indexed entries on every primary");
    });
}

#[cached(ttl = 120, key = "tagged:{run}:{id}", tags = ["run:{run}"])]
async fn tagged(run: &str, id: u64) -> u64 {
    suite::bump(run);
    id + 1
}

#[test]
fn tags_reach_entries_on_every_primary() {
    run(async {
        ctx().ready().await;
        let cluster = shared_cluster();
        let run_id = unique("tag");
        for id in 0..200 {
            assert_eq!(tagged(&run_id, id).await, id + 1);
        }
        let before = per_primary(cluster, &format!("tagged:{run_id}:*"));
        assert!(before.values().all(|&n| n > 30), "{before:?}");
        assert_eq!(
            cachekit::invalidate_tag(&format!("run:{run_id}"))
                .await
                .unwrap(),
            200
        );
        let after = per_primary(cluster, &format!("tagged:{run_id}:*"));
        assert!(after.values().all(|&n| n == 0), "{after:?}");
        tagged(&run_id, 0).await;
        assert_eq!(suite::count(&run_id), 201);
    });
}

#[test]
fn a_write_by_another_client_on_any_primary_evicts_the_tier_copy() {
    run(async {
        let urls = shared_cluster().urls();
        let config = || {
            Config::cluster(&urls).local_tier(LocalTierConfig {
                all: true,
                ..LocalTierConfig::default()
            })
        };
        static C: Cache = Cache::new("tracked", Duration::from_secs(60));
        let options = CacheOptions::new(Duration::from_secs(60)).local(true);
        testing::isolated(config(), async {
            // Wait for the bus to hear (tracking on every primary).
            let hearing = tokio::time::timeout(Duration::from_secs(10), async {
                while !cachekit::health().await.coherent {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(hearing.is_ok(), "tracking never came up on the cluster");
            // One key on each primary.
            let cluster = shared_cluster();
            let mut keys: Vec<String> = Vec::new();
            let mut primaries = HashSet::new();
            for i in 0.. {
                let key = format!("t:{i}");
                if primaries.insert(cluster.primary_port_of_slot(slot(&format!("tracked:{key}")))) {
                    keys.push(key);
                }
                if primaries.len() == cluster.primaries().len() {
                    break;
                }
            }
            for key in &keys {
                let first: u64 = C.get_or_compute_with(key, &options, || async { 1 }).await;
                assert_eq!(first, 1);
                // The tracking message of its own write evicts the copy the
                // miss kept; a read keeps it again, then it serves.
                let before = testing::stats().local_hits;
                let served = tokio::time::timeout(Duration::from_secs(5), async {
                    while testing::stats().local_hits == before {
                        let cached: u64 =
                            C.get_or_compute_with(key, &options, || async { 2 }).await;
                        assert_eq!(cached, 1);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
                .await;
                assert!(served.is_ok(), "{key} never served from the tier");
            }
            // Another client writes each key on its own primary.
            for key in &keys {
                let full = format!("tracked:{key}");
                let node = cluster.node(cluster.primary_port_of_slot(slot(&full)));
                let _: () = node.cmd(&["SET", &full, "9"]);
            }
            let seen = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let mut all = true;
                    for key in &keys {
                        let v: u64 = C.get_or_compute_with(key, &options, || async { 3 }).await;
                        all &= v == 9;
                    }
                    if all {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(
                seen.is_ok(),
                "the tier kept serving values another client replaced"
            );
        })
        .await;
    });
}
