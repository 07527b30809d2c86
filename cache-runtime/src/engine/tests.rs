//! The engine against in-process stores: what a hit and a miss ask of the
//! store, stale-set fencing held inside the computation, background
//! refresh, fail-safe and timeouts, cancellation, and the spans. The same
//! behaviours run against real Redis and a cluster in `tests/`.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::run::{Policy, run};
use super::{Inline, Owned, PlainOutput, ResultOutput, Serde};
use crate::clock::Clock;
use crate::config::Config;
use crate::stack::Stack;
use crate::stats::{Counters, Scope};
use crate::store::layer::{Layer, Layered, Op};
use crate::store::{BoxFuture, MemoryStore};

static COUNTERS: Counters = Counters::new(Scope::Function, "engine_tests");

/// Counts the reads and writes a store serves.
#[derive(Debug, Default)]
struct Counting {
    reads: AtomicUsize,
    writes: AtomicUsize,
}

impl Layer for Arc<Counting> {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        attempt: impl Fn() -> BoxFuture<'a, crate::Result<T>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, crate::Result<T>> {
        match op {
            Op::Get | Op::GetWithTtl | Op::GetMany => self.reads.fetch_add(1, Ordering::SeqCst),
            Op::Write | Op::SetNx | Op::CompareAndSwap => {
                self.writes.fetch_add(1, Ordering::SeqCst)
            }
            _ => 0,
        };
        attempt()
    }
}

/// A stack over the embedded store as a shared (byte) store, counted: the
/// path a Redis store takes, leases and all.
fn remote() -> (Arc<Counting>, Arc<Stack>) {
    let counting = Arc::new(Counting::default());
    let store = Layered {
        layer: counting.clone(),
        inner: Arc::new(MemoryStore::new(1 << 20)),
    };
    let stack = Stack::build_on(Config::store(store), Clock::System).expect("stack");
    (counting, stack)
}

/// The embedded store, typed.
fn memory() -> Arc<Stack> {
    Stack::build_on(Config::memory(), Clock::System).expect("stack")
}

fn policy<V>() -> Policy<V> {
    Policy::plain(&COUNTERS, Duration::from_secs(60), None, &Config::memory())
}

async fn get(stack: &Arc<Stack>, p: Policy<u32>, key: &str, value: u32) -> u32 {
    run(
        stack.clone(),
        p,
        key.to_owned(),
        PlainOutput,
        Serde,
        Inline(async move { value }),
    )
    .await
}

#[tokio::test]
async fn a_hit_reads_once_and_a_miss_reads_leases_and_swaps() {
    let (store, stack) = remote();
    assert_eq!(get(&stack, policy(), "k", 7).await, 7);
    assert_eq!(
        (
            store.reads.load(Ordering::SeqCst),
            store.writes.load(Ordering::SeqCst)
        ),
        (1, 2),
        "a miss is one read, one lease and one compare-and-swap"
    );
    assert_eq!(get(&stack, policy(), "k", 8).await, 7, "a hit");
    assert_eq!(store.reads.load(Ordering::SeqCst), 2, "a hit is one read");
    assert_eq!(store.writes.load(Ordering::SeqCst), 2, "and no write");
}

/// The stale-set race, deterministically: the miss is held inside its
/// computation while the write and the invalidation happen.
async fn fenced(
    stack: Arc<Stack>,
    p: Policy<u32>,
    key: &str,
    invalidate: impl AsyncFnOnce(&Arc<Stack>),
) {
    let (entered_tx, entered) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let stack = stack.clone();
        let (key, p) = (key.to_owned(), p.clone());
        tokio::spawn(async move {
            run(
                stack,
                p,
                key.to_owned(),
                PlainOutput,
                Serde,
                Inline(async move {
                    let old = 1u32; // the row as read before the write
                    entered_tx.send(()).unwrap();
                    released.await.unwrap();
                    old
                }),
            )
            .await
        })
    };
    entered.await.unwrap();
    invalidate(&stack).await; // the write commits, then invalidates
    release.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), 1, "the reader gets what it computed");
    assert_eq!(
        get(&stack, p, key, 2).await,
        2,
        "but never stored it: the next reader sees the write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_computation_fences_its_store() {
    for stack in [memory(), remote().1] {
        let tagged = Policy {
            tags: vec!["t".into()],
            ..policy()
        };
        let namespaced = Policy {
            namespace: Some("ns"),
            ..policy()
        };
        fenced(stack.clone(), policy(), "user:7", async |s| {
            s.store.delete(&["user:7".into()]).await.unwrap();
        })
        .await;
        fenced(stack.clone(), policy(), "user:8", async |s| {
            crate::invalidate::invalidate_pattern(s, None, "user:*", &COUNTERS)
                .await
                .unwrap();
        })
        .await;
        fenced(stack.clone(), tagged, "tagged:1", async |s| {
            crate::invalidate::invalidate_tag_in(s, "t", &COUNTERS)
                .await
                .unwrap();
        })
        .await;
        fenced(stack.clone(), namespaced, "1", async |s| {
            s.bump_namespace("ns").await.unwrap();
        })
        .await;
        assert!(
            COUNTERS.snapshot().fenced >= 3,
            "key, pattern and tag invalidations fenced"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_served_at_once_while_one_task_refreshes_it() {
    for stack in [memory(), remote().1] {
        let mut p = policy::<u32>();
        p.ttl = Duration::from_millis(50);
        p.knobs.stale = Some(Duration::from_secs(30));
        let computed = Arc::new(AtomicU32::new(0));
        let slow = |value: u32, computed: Arc<AtomicU32>| {
            Owned(move || async move {
                computed.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                value
            })
        };
        let first = run(
            stack.clone(),
            p.clone(),
            "q".into(),
            PlainOutput,
            Serde,
            slow(1, computed.clone()),
        )
        .await;
        assert_eq!(first, 1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let started = std::time::Instant::now();
        for _ in 0..50 {
            let v = run(
                stack.clone(),
                p.clone(),
                "q".into(),
                PlainOutput,
                Serde,
                slow(2, computed.clone()),
            )
            .await;
            assert_eq!(v, 1, "the stale value, at once");
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "no caller waited for the refresh"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            computed.load(Ordering::SeqCst),
            2,
            "one refresh for fifty stale hits"
        );
        let v = run(
            stack.clone(),
            p.clone(),
            "q".into(),
            PlainOutput,
            Serde,
            slow(3, computed.clone()),
        )
        .await;
        assert_eq!(v, 2, "the refreshed value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_serves_the_last_good_value_and_throttles_the_source() {
    for stack in [memory(), remote().1] {
        let mut p = policy::<u32>();
        p.ttl = Duration::from_millis(30);
        p.knobs.fail_safe = Some(Duration::from_secs(60));
        p.throttle = Duration::from_millis(300);
        let calls = Arc::new(AtomicU32::new(0));
        let call = |ok: bool| {
            let calls = calls.clone();
            let stack = stack.clone();
            let p = p.clone();
            async move {
                run(
                    stack,
                    p,
                    "f".into(),
                    ResultOutput,
                    Serde,
                    Inline(async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        if ok { Ok(5u32) } else { Err("down") }
                    }),
                )
                .await
            }
        };
        assert_eq!(call(true).await, Ok(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..20 {
            assert_eq!(
                call(false).await,
                Ok(5),
                "the last good value, not the failure"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failing call, then the throttle"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(call(false).await, Ok(5));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "retried once the throttle passed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_leader_frees_the_key_for_the_next_caller() {
    let (_, stack) = remote();
    let hung = run(
        stack.clone(),
        policy::<u32>(),
        "d".into(),
        PlainOutput,
        Serde,
        Inline(std::future::pending::<u32>()),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), hung)
            .await
            .is_err()
    );
    // The dropped leader's lease marker goes in the background.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&stack, policy(), "d", 4).await, 4);
    assert_eq!(
        get(&stack, policy(), "d", 5).await,
        4,
        "and the next caller stored it"
    );
}

/// Records the spans opened while it is the thread's subscriber: their
/// names and, where they have one, their `key` or `pattern` field.
#[derive(Default)]
struct Spans(Mutex<Vec<(&'static str, Option<String>)>>);

impl Spans {
    fn names(&self) -> Vec<(&'static str, Option<String>)> {
        self.0.lock().unwrap().clone()
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        struct Target(Option<String>);
        impl tracing::field::Visit for Target {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if matches!(field.name(), "key" | "pattern") {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut target = Target(None);
        attrs.record(&mut target);
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name(), target.0));
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_miss_and_an_invalidation_open_spans_and_a_hit_opens_none() {
    let spans = Arc::new(Spans::default());
    let _default = tracing::subscriber::set_default(spans.clone());
    let rt = memory();
    // tracing caches each callsite's interest process-wide, from the thread
    // that reaches it first: a test on another thread, with no subscriber,
    // could make these spans disabled for every thread. Reach them here,
    // then have their interest asked again while this subscriber is ours.
    let _: u32 = get(&rt, policy(), "warm", 0).await;
    crate::invalidate::invalidate_pattern(&rt, None, "warm", &COUNTERS)
        .await
        .expect("invalidated");
    tracing::callsite::rebuild_interest_cache();
    spans.0.lock().unwrap().clear();
    let _: u32 = get(&rt, policy(), "span:1", 7).await;
    assert_eq!(
        spans.names(),
        [("cachekit.miss", Some("span:1".to_owned()))]
    );
    let _: u32 = get(&rt, policy(), "span:1", 8).await;
    assert_eq!(
        spans.names().len(),
        1,
        "a hit opens no span: {:?}",
        spans.names()
    );
    let deleted = crate::invalidate::invalidate_pattern(&rt, None, "span:*", &COUNTERS)
        .await
        .expect("invalidated");
    assert_eq!(deleted, 1);
    assert_eq!(
        spans.names()[1],
        ("cachekit.invalidate", Some("span:*".to_owned()))
    );
}
