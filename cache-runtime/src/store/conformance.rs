//! The [`Store`] contract, as a test kit: what every store (the embedded
//! one, Redis, Redis Cluster, the layers around them, and yours) must do.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use cachekit_runtime::store::{MemoryStore, conformance};
//!
//! let store = MemoryStore::new(1 << 20);
//! conformance::check(&store).await;
//! conformance::check_cancellation(&store, 200).await;
//! # }
//! ```
//!
//! Each check panics with a message that names the primitive and what it
//! did wrong. The keys it uses start with a random prefix, so a shared
//! server can run it beside other data; it deletes them at the end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use super::{KeyTtl, Store, Swap, Write};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Runs every check of the contract against `store`.
pub async fn check(store: &dyn Store) {
    let p = format!("conformance:{:016x}:", fastrand::u64(..));
    let k = |s: &str| format!("{p}{s}");
    values_and_ttls(store, &k).await;
    conditional_writes(store, &k).await;
    counters(store, &k).await;
    member_sets(store, &k).await;
    patterns(store, &k, &p).await;
    store
        .delete_matching(&format!("{}*", crate::key::escape_glob(&p)))
        .await
        .expect("cleanup");
}

async fn values_and_ttls(store: &dyn Store, k: &dyn Fn(&str) -> String) {
    let ttl = Duration::from_secs(60);
    assert_eq!(
        store.get(&k("absent")).await.unwrap(),
        None,
        "get of an absent key"
    );
    store
        .write(&[Write::new(k("a"), b("1"), ttl)])
        .await
        .unwrap();
    assert_eq!(
        store.get(&k("a")).await.unwrap(),
        Some(b("1")),
        "get after write"
    );
    let (value, left) = store
        .get_with_ttl(&k("a"))
        .await
        .unwrap()
        .expect("get_with_ttl");
    assert_eq!(value, b("1"));
    assert!(
        matches!(left, KeyTtl::Expires(d) if d <= ttl && d > ttl / 2),
        "get_with_ttl's remaining life: {left:?}"
    );
    store
        .write(&[
            Write::new(k("a"), b("2"), ttl),
            Write::new(k("b"), b("3"), ttl),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_many(&[k("a"), k("absent"), k("b")])
            .await
            .unwrap(),
        vec![Some(b("2")), None, Some(b("3"))],
        "get_many keeps the order and reads absent keys as None"
    );
    assert!(store.expire(&k("a"), Duration::from_secs(5)).await.unwrap());
    assert!(
        matches!(store.ttl(&k("a")).await.unwrap(), KeyTtl::Expires(d) if d <= Duration::from_secs(5)),
        "expire sets the TTL"
    );
    assert!(
        !store.expire(&k("absent"), ttl).await.unwrap(),
        "expire of an absent key"
    );
    assert_eq!(store.ttl(&k("absent")).await.unwrap(), KeyTtl::Missing);
    assert_eq!(
        store.delete(&[k("a"), k("b"), k("absent")]).await.unwrap(),
        2,
        "delete counts what existed"
    );
    assert_eq!(store.get(&k("a")).await.unwrap(), None, "get after delete");
    store
        .write(&[Write::new(k("short"), b("x"), Duration::from_millis(50))])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store.get(&k("short")).await.unwrap(),
        None,
        "an entry expires after its TTL"
    );
}

async fn conditional_writes(store: &dyn Store, k: &dyn Fn(&str) -> String) {
    let ttl = Duration::from_secs(60);
    let lease = Write::new(k("nx"), b("token"), ttl);
    assert!(
        store.set_nx(&lease).await.unwrap(),
        "set_nx of an absent key"
    );
    assert!(
        !store
            .set_nx(&Write::new(k("nx"), b("other"), ttl))
            .await
            .unwrap(),
        "set_nx of a present key"
    );
    assert_eq!(store.get(&k("nx")).await.unwrap(), Some(b("token")));
    assert!(
        !store
            .compare_and_swap(&k("nx"), b"wrong", Swap::Delete)
            .await
            .unwrap(),
        "compare_and_swap with the wrong expected value"
    );
    let swap = Swap::Set {
        value: b("value"),
        ttl,
        member_of: vec![k("set")],
    };
    assert!(
        store
            .compare_and_swap(&k("nx"), b"token", swap)
            .await
            .unwrap(),
        "compare_and_swap Set"
    );
    assert_eq!(store.get(&k("nx")).await.unwrap(), Some(b("value")));
    assert_eq!(
        store.members(&k("set")).await.unwrap(),
        vec![k("nx")],
        "a Set swap lists its key"
    );
    assert!(
        store
            .compare_and_swap(&k("nx"), b"value", Swap::SetKeepTtl(b("kept")))
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap(&k("nx"), b"kept", Swap::Expire(Duration::from_secs(3)))
            .await
            .unwrap()
    );
    assert!(
        matches!(store.ttl(&k("nx")).await.unwrap(), KeyTtl::Expires(d) if d <= Duration::from_secs(3))
    );
    assert!(
        store
            .compare_and_swap(&k("nx"), b"kept", Swap::Delete)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(&k("nx")).await.unwrap(),
        None,
        "a Delete swap deletes"
    );
    assert!(
        !store
            .compare_and_swap(&k("nx"), b"kept", Swap::Delete)
            .await
            .unwrap(),
        "compare_and_swap of an absent key never applies"
    );
}

async fn counters(store: &dyn Store, k: &dyn Fn(&str) -> String) {
    assert_eq!(
        store
            .incr(&k("n"), 2, Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .incr(&k("n"), -5, Some(Duration::from_secs(1)))
            .await
            .unwrap(),
        -3
    );
    assert!(
        matches!(store.ttl(&k("n")).await.unwrap(), KeyTtl::Expires(d) if d > Duration::from_secs(30)),
        "incr keeps the TTL of an existing counter"
    );
    assert_eq!(store.incr(&k("p"), 1, None).await.unwrap(), 1);
    assert_eq!(
        store.ttl(&k("p")).await.unwrap(),
        KeyTtl::Persistent,
        "incr with no TTL"
    );
    store
        .write(&[Write::new(k("text"), b("x"), Duration::from_secs(60))])
        .await
        .unwrap();
    assert!(
        store.incr(&k("text"), 1, None).await.is_err(),
        "incr of a non-integer fails"
    );
}

async fn member_sets(store: &dyn Store, k: &dyn Fn(&str) -> String) {
    let ttl = Duration::from_secs(60);
    let listed = |key: &str, ttl| Write {
        key: k(key),
        value: b("v"),
        ttl,
        member_of: vec![k("tag")],
    };
    store
        .write(&[
            listed("m1", ttl),
            listed("m2", ttl),
            listed("gone", Duration::from_millis(30)),
        ])
        .await
        .unwrap();
    assert!(store.set_nx(&listed("m3", ttl)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(80)).await;
    let mut members = store.members(&k("tag")).await.unwrap();
    members.sort();
    assert_eq!(
        members,
        vec![k("m1"), k("m2"), k("m3")],
        "members lists live entries only"
    );
    store.remove_members(&k("tag"), &[k("m1")]).await.unwrap();
    let mut members = store.members(&k("tag")).await.unwrap();
    members.sort();
    assert_eq!(members, vec![k("m2"), k("m3")], "remove_members");
    assert!(
        store.get(&k("tag")).await.is_err(),
        "get of a member set is a wrong-type error"
    );
}

async fn patterns(store: &dyn Store, k: &dyn Fn(&str) -> String, prefix: &str) {
    let ttl = Duration::from_secs(60);
    let writes: Vec<Write> = ["user:1", "user:2", "users:1", "user:*"]
        .iter()
        .map(|s| Write::new(k(s), b("v"), ttl))
        .collect();
    store.write(&writes).await.unwrap();
    let escaped = crate::key::escape_glob(prefix);
    assert_eq!(
        store
            .delete_matching(&format!("{escaped}user:\\*"))
            .await
            .unwrap(),
        1,
        "an escaped glob matches itself only"
    );
    assert_eq!(
        store
            .delete_matching(&format!("{escaped}user:*"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.get(&k("users:1")).await.unwrap(),
        Some(b("v")),
        "a pattern deletes nothing else"
    );
    assert!(store.ping().await.is_ok(), "ping");
}

/// Polls `fut` at most `polls` times, then drops it: the future is
/// cancelled wherever it was.
async fn poll_then_drop<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let polled =
            std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = polled {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Drops every primitive's future at random points (after 0 to 8 polls),
/// `rounds` times, interleaved with complete operations; then checks that
/// the store still works and holds no wrong value: every key holds one of
/// the values written to it, or nothing.
pub async fn check_cancellation(store: &dyn Store, rounds: usize) {
    let p = format!("cancel:{:016x}:", fastrand::u64(..));
    let ttl = Duration::from_secs(60);
    for round in 0..rounds {
        let key = format!("{p}{}", round % 7);
        let value = b(&format!("v{round}"));
        let polls = fastrand::usize(0..=8);
        let w = Write {
            key: key.clone(),
            value: value.clone(),
            ttl,
            member_of: vec![format!("{p}set")],
        };
        let op: Pin<Box<dyn Future<Output = ()> + Send + '_>> = match fastrand::u8(0..7) {
            0 => Box::pin(async { drop(store.write(std::slice::from_ref(&w)).await) }),
            1 => Box::pin(async { drop(store.set_nx(&w).await) }),
            2 => Box::pin(async {
                drop(
                    store
                        .compare_and_swap(&key, b"v0", Swap::set(value.clone(), ttl))
                        .await,
                )
            }),
            3 => Box::pin(async { drop(store.delete(std::slice::from_ref(&key)).await) }),
            4 => Box::pin(async { drop(store.get_many(std::slice::from_ref(&key)).await) }),
            5 => Box::pin(async {
                drop(
                    store
                        .delete_matching(&format!("{}{}*", crate::key::escape_glob(&p), round % 3))
                        .await,
                )
            }),
            _ => Box::pin(async { drop(store.members(&format!("{p}set")).await) }),
        };
        poll_then_drop(op, polls).await;
        // A complete operation after each cancelled one must still work.
        store
            .get(&key)
            .await
            .expect("the store works after a cancelled operation");
    }
    for i in 0..7 {
        let key = format!("{p}{i}");
        if let Some(v) = store.get(&key).await.expect("get") {
            let text = std::str::from_utf8(&v).expect("a value that was written");
            let round: usize = text[1..].parse().expect("a value that was written");
            assert_eq!(round % 7, i, "{key} holds another key's value: {text}");
        }
    }
    store
        .write(&[Write::new(format!("{p}after"), b("ok"), ttl)])
        .await
        .expect("write after the cancellations");
    assert_eq!(
        store.get(&format!("{p}after")).await.unwrap(),
        Some(b("ok"))
    );
    let _ = store
        .delete_matching(&format!("{}*", crate::key::escape_glob(&p)))
        .await;
}
