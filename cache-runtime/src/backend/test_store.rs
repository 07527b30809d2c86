//! A store for the runtime's unit tests: the memory backend behind a
//! wrapper that counts reads and writes, can hold one read back, and can
//! perform one extra write right after the first deletion it serves (a
//! writer racing an invalidation).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Backend, BoxFuture, Event, EventStream, KeyTtl, MemoryBackend, Swap, Write};
use crate::error::Result;

#[derive(Debug)]
pub(crate) struct TestStore {
    inner: MemoryBackend,
    reads: AtomicUsize,
    writes: AtomicUsize,
    hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
    after_first_delete: Mutex<Option<Write>>,
}

impl TestStore {
    pub(crate) fn new() -> Self {
        TestStore {
            inner: MemoryBackend::new(1 << 20),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            hold: Mutex::new(None),
            after_first_delete: Mutex::new(None),
        }
    }

    /// Reads served (`get`).
    pub(crate) fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Writes served (`write` calls).
    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Holds the next read back: returns a receiver that fires once the read
    /// has looked at the store, and a sender that lets it return.
    pub(crate) fn hold_next_read(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (looked_tx, looked_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some((looked_tx, release_rx));
        (looked_rx, release_tx)
    }

    /// Performs `write` right after the next deletion.
    pub(crate) fn write_after_next_delete(&self, write: Write) {
        *self.after_first_delete.lock().unwrap() = Some(write);
    }
}

impl Backend for TestStore {
    fn name(&self) -> &'static str {
        "test"
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
        Box::pin(async move {
            let deleted = self.inner.delete(keys).await?;
            let racing = self.after_first_delete.lock().unwrap().take();
            if let Some(write) = racing {
                self.inner.write(std::slice::from_ref(&write)).await?;
            }
            Ok(deleted)
        })
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
