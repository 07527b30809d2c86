//! The conformance suite of the `Cache` API: every backend must behave the
//! same. Each case uses its own namespace, so cases run side by side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::{Cache, Error};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Ctx;
use crate::common::unique;

/// A handle on a namespace of its own.
fn cache(ttl: Duration) -> Cache {
    let ns: &'static str = Box::leak(unique("ns").into_boxed_str());
    Cache::new(ns, ttl)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    email: String,
    step: u32,
    tags: Vec<String>,
}

fn session(step: u32) -> Session {
    Session {
        email: "ada@example.com".into(),
        step,
        tags: vec![],
    }
}

pub async fn set_get_delete_exists(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    assert_eq!(c.get::<Session>("s1").await.unwrap(), None);
    assert!(!c.exists("s1").await.unwrap());
    c.set("s1", &session(1)).await.unwrap();
    assert_eq!(c.get::<Session>("s1").await.unwrap(), Some(session(1)));
    assert!(c.exists("s1").await.unwrap());
    c.set("s1", &session(2)).await.unwrap();
    assert_eq!(
        c.get::<Session>("s1").await.unwrap(),
        Some(session(2)),
        "set overwrites"
    );
    assert!(c.delete("s1").await.unwrap());
    assert!(!c.delete("s1").await.unwrap(), "nothing left to delete");
    for i in 0..5 {
        c.set(&format!("m{i}"), &i).await.unwrap();
    }
    assert_eq!(c.delete_many(&["m0", "m1", "m2", "m9"]).await.unwrap(), 3);
    assert!(!c.exists("m1").await.unwrap() && c.exists("m3").await.unwrap());
    assert_eq!(c.delete_many::<&str>(&[]).await.unwrap(), 0);
    assert_eq!(c.get::<Session>("s1").await.unwrap(), None);
    // Keys may hold separators, glob characters and unicode.
    for key in ["a:b:c", "*", "user[1]", "naïve key", "{tag}"] {
        c.set(key, &key).await.unwrap();
        assert_eq!(c.get::<String>(key).await.unwrap().as_deref(), Some(key));
    }
    assert_eq!(
        c.get::<String>("a:b:?").await.unwrap(),
        None,
        "keys are not patterns"
    );
}

pub async fn ttls_are_kept_and_changed(_: &Ctx) {
    let c = cache(Duration::from_secs(300));
    c.set("default", &1).await.unwrap();
    let ttl = c.ttl("default").await.unwrap().expect("a TTL");
    assert!(
        ttl > Duration::from_secs(290) && ttl <= Duration::from_secs(300),
        "{ttl:?}"
    );
    c.set_with_ttl("short", &1, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(c.ttl("short").await.unwrap().unwrap() <= Duration::from_millis(400));
    assert!(c.set_ttl("default", Duration::from_secs(10)).await.unwrap());
    assert!(c.ttl("default").await.unwrap().unwrap() <= Duration::from_secs(10));
    assert!(!c.set_ttl("absent", Duration::from_secs(10)).await.unwrap());
    assert_eq!(c.ttl("absent").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.get::<i32>("short").await.unwrap(), None, "expired");
    assert!(!c.exists("short").await.unwrap());
}

pub async fn update_merges_fields(_: &Ctx) {
    let c = cache(Duration::from_secs(300));
    assert!(
        !c.update("absent", json!({"step": 2})).await.unwrap(),
        "absent key: false"
    );
    c.set_with_ttl("s", &session(1), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        c.update("s", json!({"step": 2, "tags": ["a"]}))
            .await
            .unwrap()
    );
    let s: Session = c.get("s").await.unwrap().unwrap();
    assert_eq!(
        s,
        Session {
            email: "ada@example.com".into(),
            step: 2,
            tags: vec!["a".into()]
        }
    );
    assert!(
        c.ttl("s").await.unwrap().unwrap() > Duration::from_secs(200),
        "the TTL was refreshed"
    );
    // Exact numbers survive the merge.
    c.set("n", &json!({"big": u64::MAX})).await.unwrap();
    c.update("n", json!({"other": 1})).await.unwrap();
    let n: serde_json::Value = c.get("n").await.unwrap().unwrap();
    assert_eq!(n["big"], json!(u64::MAX));
    // Not an object: a clear error, nothing changed.
    c.set("list", &[1, 2]).await.unwrap();
    assert!(matches!(
        c.update("list", json!({"a": 1})).await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(
        c.update("s", json!([1])).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(c.get::<Vec<i32>>("list").await.unwrap(), Some(vec![1, 2]));
    // Keeping the TTL: a session that must expire at a fixed moment.
    c.set_with_ttl("fixed", &session(1), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        c.update_keeping_ttl("fixed", json!({"step": 3}))
            .await
            .unwrap()
    );
    assert_eq!(c.get::<Session>("fixed").await.unwrap().unwrap().step, 3);
    assert!(
        c.ttl("fixed").await.unwrap().unwrap() <= Duration::from_secs(5),
        "the TTL was kept"
    );
    assert!(
        !c.update_keeping_ttl("absent", json!({"a": 1}))
            .await
            .unwrap()
    );
}

pub async fn concurrent_updates_all_land(_: &Ctx) {
    let c = Arc::new(cache(Duration::from_secs(300)));
    c.set("doc", &json!({})).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.update("doc", json!({ format!("f{i}"): i }))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let doc: BTreeMap<String, u32> = c.get("doc").await.unwrap().unwrap();
    assert_eq!(doc.len(), 64, "every field landed: {doc:?}");
    assert!((0..64).all(|i| doc[&format!("f{i}")] == i));
}

pub async fn increment_counts_atomically(_: &Ctx) {
    let c = Arc::new(cache(Duration::from_secs(60)));
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.increment("hits", 1).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=1_000).collect::<Vec<i64>>(),
        "each increment saw its own value"
    );
    assert_eq!(c.get::<i64>("hits").await.unwrap(), Some(1_000));
    let ttl = c
        .ttl("hits")
        .await
        .unwrap()
        .expect("the counter got the default TTL");
    assert!(ttl <= Duration::from_secs(60));
    assert_eq!(c.increment("hits", -10).await.unwrap(), 990);
    // A rate-limit window: the TTL is not extended by later increments.
    let w = cache(Duration::from_millis(500));
    w.increment("window", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.increment("window", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        w.get::<i64>("window").await.unwrap(),
        None,
        "the window closed on time"
    );
    c.set("text", &"abc").await.unwrap();
    assert!(c.increment("text", 1).await.is_err(), "not a counter");
}

pub async fn clear_touches_only_its_namespace(_: &Ctx) {
    let base = unique("clr");
    let sign: &'static str = Box::leak(base.clone().into_boxed_str());
    let signup: &'static str = Box::leak(format!("{base}up").into_boxed_str());
    let a = Cache::new(sign, Duration::from_secs(60));
    let b = Cache::new(signup, Duration::from_secs(60));
    for i in 0..30 {
        a.set(&format!("k{i}"), &i).await.unwrap();
        b.set(&format!("k{i}"), &i).await.unwrap();
    }
    a.set_indexed("x", &1, &[("user", "alice")]).await.unwrap();
    let deleted = a.clear().await.unwrap();
    assert!(deleted >= 31, "{deleted}");
    assert_eq!(a.get::<i32>("k0").await.unwrap(), None);
    assert!(a.keys_by_index("user", "alice").await.unwrap().is_empty());
    for i in 0..30 {
        assert_eq!(
            b.get::<i32>(&format!("k{i}")).await.unwrap(),
            Some(i),
            "the other namespace is untouched"
        );
    }
    assert_eq!(a.clear().await.unwrap(), 0);
}

pub async fn indexes_track_their_entries(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    c.set_indexed("s1", &session(1), &[("user", "alice"), ("org", "acme")])
        .await
        .unwrap();
    c.set_indexed("s2", &session(2), &[("user", "alice")])
        .await
        .unwrap();
    c.set_indexed("s3", &session(3), &[("user", "bob")])
        .await
        .unwrap();
    let mut keys = c.keys_by_index("user", "alice").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["s1", "s2"]);
    let mut steps: Vec<u32> = c
        .get_by_index::<Session>("user", "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.step)
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2]);
    assert_eq!(c.keys_by_index("org", "acme").await.unwrap(), ["s1"]);
    assert_eq!(
        c.get::<Session>("s1").await.unwrap(),
        Some(session(1)),
        "indexed values read like any other"
    );
    // Deleted entries leave their indexes.
    assert!(c.delete("s1").await.unwrap());
    assert_eq!(c.keys_by_index("user", "alice").await.unwrap(), ["s2"]);
    assert!(c.keys_by_index("org", "acme").await.unwrap().is_empty());
    // Re-indexed entries move.
    c.set_indexed("s2", &session(2), &[("user", "bob")])
        .await
        .unwrap();
    assert!(c.keys_by_index("user", "alice").await.unwrap().is_empty());
    let mut bob = c.keys_by_index("user", "bob").await.unwrap();
    bob.sort();
    assert_eq!(bob, ["s2", "s3"]);
    // Overwritten without an index: gone from the index.
    c.set("s3", &session(9)).await.unwrap();
    assert_eq!(c.keys_by_index("user", "bob").await.unwrap(), ["s2"]);
    // Updates keep the index.
    c.update("s2", json!({"step": 5})).await.unwrap();
    let bobs: Vec<Session> = c.get_by_index("user", "bob").await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].step, 5);
    // Expired entries are pruned, never returned.
    let short = cache(Duration::from_millis(300));
    short
        .set_indexed("gone", &1, &[("user", "carol")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        short
            .get_by_index::<i32>("user", "carol")
            .await
            .unwrap()
            .is_empty()
    );
    // Separators in index values cannot collide.
    c.set_indexed("p", &1, &[("a:b", "c")]).await.unwrap();
    assert!(c.keys_by_index("a", "b:c").await.unwrap().is_empty());
    assert_eq!(c.keys_by_index("a:b", "c").await.unwrap(), ["p"]);
}

pub async fn batches_read_and_write_many(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    let items: Vec<(String, Session)> = (0..100).map(|i| (format!("k{i}"), session(i))).collect();
    c.set_many(&items).await.unwrap();
    let keys: Vec<String> = (0..105).map(|i| format!("k{i}")).collect();
    let got: Vec<Option<Session>> = c.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), 105);
    for (i, v) in got.iter().enumerate() {
        if i < 100 {
            assert_eq!(v.as_ref().map(|s| s.step), Some(i as u32));
        } else {
            assert!(v.is_none());
        }
    }
    let borrowed = [("a", &session(1)), ("b", &session(2))];
    c.set_many(&borrowed).await.unwrap();
    assert_eq!(
        c.get_many::<Session>(&["b", "a"]).await.unwrap(),
        vec![Some(session(2)), Some(session(1))]
    );
    assert!(
        c.get_many::<Session>(&[] as &[&str])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.ttl("k0").await.unwrap().is_some(),
        "batch writes get the default TTL"
    );
}

pub async fn get_or_compute_computes_once(_: &Ctx) {
    let c = Arc::new(cache(Duration::from_secs(60)));
    let calls = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, calls) = (c.clone(), calls.clone());
            tokio::spawn(async move {
                c.get_or_compute("report", Duration::from_secs(30), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    session(7)
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), session(7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        c.get::<Session>("report").await.unwrap(),
        Some(session(7)),
        "stored under the namespace"
    );
    let failed: Result<u32, Error> = c
        .try_get_or_compute("fallible", Duration::from_secs(30), || async {
            Err(Error::Backend("db down".into()))
        })
        .await;
    assert!(failed.is_err());
    assert!(!c.exists("fallible").await.unwrap(), "Err is never stored");
}

pub async fn bad_input_is_a_clear_error(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    for key in ["", "a\nb", "tab\there"] {
        assert!(
            matches!(c.set(key, &1).await, Err(Error::InvalidInput(_))),
            "{key:?}"
        );
        assert!(
            matches!(c.get::<i32>(key).await, Err(Error::InvalidInput(_))),
            "{key:?}"
        );
    }
    for ns in ["", "has:colon", "star*", "sp ace", "br{ace}"] {
        let bad = Cache::new(
            Box::leak(ns.to_owned().into_boxed_str()),
            Duration::from_secs(1),
        );
        let err = bad.set("k", &1).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{ns:?}: {err}");
        assert!(err.to_string().contains("namespace"), "{err}");
    }
    let zero = Cache::new("zero-ttl", Duration::ZERO);
    assert!(matches!(
        zero.set("k", &1).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        c.set_with_ttl("k", &1, Duration::ZERO).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        c.set_indexed("k", &1, &[("", "x")]).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        cachekit::invalidate("").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        cachekit::invalidate_namespace("a:b").await,
        Err(Error::InvalidInput(_))
    ));
    // Long keys work, and stay distinct.
    let long_a = "a".repeat(10_000);
    let long_b = format!("{}b", "a".repeat(9_999));
    c.set(&long_a, &"A").await.unwrap();
    c.set(&long_b, &"B").await.unwrap();
    assert_eq!(
        c.get::<String>(&long_a).await.unwrap().as_deref(),
        Some("A")
    );
    assert_eq!(
        c.get::<String>(&long_b).await.unwrap().as_deref(),
        Some("B")
    );
}

pub async fn undecodable_values_read_as_absent(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    c.set("text", &"not a session").await.unwrap();
    let before = cachekit::stats().decode_failures;
    assert_eq!(c.get::<Session>("text").await.unwrap(), None);
    assert!(cachekit::stats().decode_failures > before);
    assert_eq!(
        c.get::<String>("text").await.unwrap().as_deref(),
        Some("not a session"),
        "still there"
    );
    let many: Vec<Option<Session>> = c.get_many(&["text"]).await.unwrap();
    assert_eq!(many, vec![None]);
}

pub async fn namespace_invalidation_hides_old_entries(_: &Ctx) {
    let c = cache(Duration::from_secs(60));
    c.set("a", &1).await.unwrap();
    c.set_indexed("b", &2, &[("user", "x")]).await.unwrap();
    let generation = cachekit::invalidate_namespace(c.namespace()).await.unwrap();
    assert_eq!(generation, 1);
    assert_eq!(
        c.get::<i32>("a").await.unwrap(),
        None,
        "old entries are out of reach"
    );
    assert!(
        c.keys_by_index("user", "x").await.unwrap().is_empty(),
        "and out of the indexes"
    );
    c.set("a", &3).await.unwrap();
    assert_eq!(c.get::<i32>("a").await.unwrap(), Some(3));
    assert!(
        c.clear().await.unwrap() >= 2,
        "clear reaches every generation"
    );
    assert_eq!(c.get::<i32>("a").await.unwrap(), None);
}

pub async fn locks_are_exclusive(_: &Ctx) {
    let name = unique("lock");
    let guard = cachekit::lock(&name, Duration::from_secs(5)).await.unwrap();
    assert!(guard.is_held());
    assert!(
        cachekit::try_lock(&name, Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(guard.release().await.unwrap());
    let again = cachekit::try_lock(&name, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free after release");
    drop(again);
    // Dropping releases in the background.
    let mut free = None;
    for _ in 0..50 {
        free = cachekit::try_lock(&name, Duration::from_secs(5))
            .await
            .unwrap();
        if free.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free.is_some(), "dropped guards release their lock");
    // A short lease held by a live guard is renewed past its TTL.
    let renewed = unique("renew");
    let held = cachekit::lock(&renewed, Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(held.is_held());
    assert!(
        cachekit::try_lock(&renewed, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    // Waiting for a held lock gives up after the TTL.
    let err = cachekit::lock(&renewed, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}
