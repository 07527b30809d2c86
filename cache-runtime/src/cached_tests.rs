//! What the engine asks of the store: a hit is one read, a miss one read
//! and one write, and a caller whose miss raced with another leader's store
//! reads again instead of computing twice. Over the memory backend, behind
//! a wrapper that counts reads and can hold one read back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tokio::sync::oneshot;

use super::*;
use crate::backend::{BoxFuture, EventStream, KeyTtl, MemoryBackend, Swap};
use crate::config::Config;

/// The memory backend, counting reads and writes. A read can be held back
/// after it has looked at the store: `hold_next_read` returns a receiver
/// that fires once the read has looked, and a sender that lets it return.
#[derive(Debug)]
struct Counted {
    inner: MemoryBackend,
    reads: AtomicUsize,
    writes: AtomicUsize,
    hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Counted {
    fn new() -> Self {
        Counted {
            inner: MemoryBackend::new(1 << 20),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            hold: Mutex::new(None),
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Holds the next read back: returns (read has looked, let it return).
    fn hold_next_read(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (looked_tx, looked_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some((looked_tx, release_rx));
        (looked_rx, release_tx)
    }
}

impl Backend for Counted {
    fn name(&self) -> &'static str {
        "counted"
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let value = self.inner.get(key).await;
            let hold = self.hold.lock().unwrap().take();
            if let Some((looked, release)) = hold {
                let _ = looked.send(());
                let _ = release.await;
            }
            value
        })
    }
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        self.inner.get_many(keys)
    }
    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(writes)
    }
    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.set_nx(key, value, ttl)
    }
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.compare_and_swap(key, expected, swap)
    }
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.inner.delete(keys)
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.exists(key)
    }
    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        self.inner.expire(key, ttl)
    }
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.inner.ttl(key)
    }
    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.inner.incr(key, by, ttl)
    }
    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        self.inner.members(set)
    }
    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.remove_members(set, members)
    }
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.inner.delete_matching(pattern)
    }
    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        self.inner.publish(channel, event)
    }
    fn subscribe(&self, channel: &str) -> Option<EventStream> {
        self.inner.subscribe(channel)
    }
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.ping()
    }
    fn is_shared(&self) -> bool {
        false
    }
}

static COUNTERS: Counters = Counters::new(Scope::Function, "cached_tests");

fn setup() -> (Arc<Counted>, Arc<Runtime>) {
    let store = Arc::new(Counted::new());
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
