//! What the engine asks of the store: a hit is one read, a miss one read
//! and one write, and a caller whose miss raced with another leader's store
//! reads again instead of computing twice. Over the memory backend, behind
//! a wrapper that counts reads and can hold one read back (`TestStore`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::backend::test_store::TestStore;
use crate::config::Config;

static COUNTERS: Counters = Counters::new(Scope::Function, "cached_tests");

fn setup() -> (Arc<TestStore>, Arc<Runtime>) {
    let store = Arc::new(TestStore::new());
    let rt = Runtime::with_backend(Config::memory(), store.clone());
    (store, rt)
}

fn policy() -> Policy<'static> {
    Policy::plain(&COUNTERS, Duration::from_secs(60), None)
}

#[tokio::test]
async fn a_miss_reads_once_and_writes_once_and_a_hit_reads_once() {
    let (store, rt) = setup();
    let value: u32 = run(&rt, &policy(), "k".to_owned(), PlainOutput, async { 7 }).await;
    assert_eq!(value, 7);
    assert_eq!(
        (store.reads(), store.writes()),
        (1, 1),
        "a miss is one read and one write"
    );
    let value: u32 = run(&rt, &policy(), "k".to_owned(), PlainOutput, async {
        panic!("a hit does not compute")
    })
    .await;
    assert_eq!(value, 7);
    assert_eq!((store.reads(), store.writes()), (2, 1), "a hit is one read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_that_raced_with_a_store_reads_again_instead_of_computing() {
    let (store, rt) = setup();
    let computed = Arc::new(AtomicU32::new(0));
    // B reads (a miss) and is held there...
    let (looked, release) = store.hold_next_read();
    let b = {
        let (rt, computed) = (rt.clone(), computed.clone());
        tokio::spawn(async move {
            run(&rt, &policy(), "k".to_owned(), PlainOutput, async move {
                computed.fetch_add(1, Ordering::SeqCst);
                1u32
            })
            .await
        })
    };
    looked.await.expect("B read the store");
    // ...while A misses, leads, computes and stores; its flight ends.
    let a: u32 = run(&rt, &policy(), "k".to_owned(), PlainOutput, async {
        computed.fetch_add(1, Ordering::SeqCst);
        1u32
    })
    .await;
    assert_eq!(a, 1);
    // B now leads a new flight of the key: it must find A's entry.
    release.send(()).expect("B waits");
    assert_eq!(b.await.expect("B"), 1);
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "B read again and found A's value"
    );
    assert_eq!(store.writes(), 1);
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
    let (_store, rt) = setup();
    // tracing caches each callsite's interest process-wide, from the thread
    // that reaches it first: a test on another thread, with no subscriber,
    // could make these spans disabled for every thread. Reach them here,
    // then have their interest asked again while this subscriber is ours.
    let _: u32 = run(&rt, &policy(), "warm".to_owned(), PlainOutput, async { 0 }).await;
    crate::invalidate::invalidate_pattern(&rt, "warm", &COUNTERS)
        .await
        .expect("invalidated");
    tracing::callsite::rebuild_interest_cache();
    spans.0.lock().unwrap().clear();
    let _: u32 = run(&rt, &policy(), "span:1".to_owned(), PlainOutput, async {
        7
    })
    .await;
    assert_eq!(
        spans.names(),
        [("cachekit.miss", Some("span:1".to_owned()))]
    );
    let _: u32 = run(&rt, &policy(), "span:1".to_owned(), PlainOutput, async {
        8
    })
    .await;
    assert_eq!(
        spans.names().len(),
        1,
        "a hit opens no span: {:?}",
        spans.names()
    );
    let deleted = crate::invalidate::invalidate_pattern(&rt, "span:*", &COUNTERS)
        .await
        .expect("invalidated");
    assert_eq!(deleted, 1);
    assert_eq!(
        spans.names()[1],
        ("cachekit.invalidate", Some("span:*".to_owned()))
    );
}
