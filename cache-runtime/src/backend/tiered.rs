//! The in-process tier: a bounded local store (moka) in front of a shared
//! one, kept coherent across processes.
//!
//! Reads are served locally when they can be; a local miss reads the shared
//! store (value and remaining TTL in one round trip) and keeps the entry
//! locally for at most its remaining TTL and the tier's `max_ttl`. Writes go
//! to the shared store first, then drop the local copy.
//!
//! Coherence comes from the invalidation messages every cachekit process
//! publishes when it writes, deletes or invalidates (`backend::Event`): the
//! runtime hands them to [`TieredBackend::apply`]. A read that races with an
//! invalidation must not put back what was just invalidated, so each key
//! hashes to one of a set of version counters, bumped by every invalidation
//! of a key in that shard (and all of them by a pattern or a resync): an
//! entry read from the shared store is kept only if its shard's version did
//! not move during the read, checked again after the insert. After a lost
//! subscription the tier is emptied (messages may have been missed).
//! Writers outside cachekit (`redis-cli SET`) are not seen until the local
//! copy expires: bound that with `max_ttl`.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache as Moka;

use super::{Backend, BoxFuture, Event, EventStream, KeyTtl, Swap, Write};
use crate::config::LocalTierConfig;
use crate::error::Result;
use crate::key::glob_match;

const VERSION_SHARDS: usize = 256;

#[derive(Clone)]
struct Local {
    value: Bytes,
    expires_at: Instant,
}

struct UntilDeadline;

impl moka::Expiry<String, Local> for UntilDeadline {
    fn expire_after_create(&self, _: &String, v: &Local, now: Instant) -> Option<Duration> {
        Some(v.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Local,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires_at.saturating_duration_since(now))
    }
}

/// An in-process tier in front of a shared backend.
pub struct TieredBackend {
    local: Moka<String, Local>,
    remote: Arc<dyn Backend>,
    max_ttl: Duration,
    versions: Box<[AtomicU64]>,
    /// Bumped by pattern invalidations and resyncs, which touch every shard.
    epoch: AtomicU64,
    hasher: RandomState,
}

impl fmt::Debug for TieredBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredBackend")
            .field("remote", &self.remote)
            .field("entries", &self.local.entry_count())
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

/// A read's view of the versions, to check that no invalidation ran during it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    shard: usize,
    version: u64,
    epoch: u64,
}

impl TieredBackend {
    /// A tier bounded by `config.max_bytes` in front of `remote`.
    pub fn new(remote: Arc<dyn Backend>, config: &LocalTierConfig) -> Self {
        TieredBackend {
            local: Moka::builder()
                .max_capacity(config.max_bytes)
                .weigher(|k: &String, v: &Local| {
                    u32::try_from(k.len() + v.value.len() + super::ENTRY_OVERHEAD)
                        .unwrap_or(u32::MAX)
                })
                .expire_after(UntilDeadline)
                .support_invalidation_closures()
                .build(),
            remote,
            max_ttl: config.max_ttl,
            versions: (0..VERSION_SHARDS).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            hasher: RandomState::new(),
        }
    }

    /// The shared backend behind the tier.
    pub fn remote(&self) -> &Arc<dyn Backend> {
        &self.remote
    }

    /// Entries held in process.
    pub fn len(&self) -> u64 {
        self.local.run_pending_tasks();
        self.local.entry_count()
    }

    /// Whether the tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in process (keys and values).
    pub fn weighted_size(&self) -> u64 {
        self.local.run_pending_tasks();
        self.local.weighted_size()
    }

    /// The value held in process for `key`, without asking the shared store.
    #[inline]
    pub fn peek(&self, key: &str) -> Option<Bytes> {
        self.local
            .get(key)
            .filter(|l| l.expires_at > Instant::now())
            .map(|l| l.value)
    }

    fn shard(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % VERSION_SHARDS
    }

    fn stamp(&self, key: &str) -> Stamp {
        let shard = self.shard(key);
        Stamp {
            shard,
            version: self.versions[shard].load(Ordering::Acquire),
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    fn unchanged(&self, stamp: Stamp) -> bool {
        self.versions[stamp.shard].load(Ordering::Acquire) == stamp.version
            && self.epoch.load(Ordering::Acquire) == stamp.epoch
    }

    /// Keeps `value` locally unless `key` was invalidated since `stamp`.
    fn keep(&self, key: &str, value: Bytes, ttl: KeyTtl, stamp: Stamp) {
        let life = match ttl {
            KeyTtl::Expires(d) => d.min(self.max_ttl),
            KeyTtl::Persistent => self.max_ttl,
            KeyTtl::Missing => return,
        };
        if life.is_zero() || !self.unchanged(stamp) {
            return;
        }
        self.local.insert(
            key.to_owned(),
            Local {
                value,
                expires_at: Instant::now() + life,
            },
        );
        // An invalidation between the check and the insert: undo.
        if !self.unchanged(stamp) {
            self.local.invalidate(key);
        }
    }

    /// Drops the local copies of `keys`.
    pub fn evict(&self, keys: &[String]) {
        for key in keys {
            self.versions[self.shard(key)].fetch_add(1, Ordering::AcqRel);
            self.local.invalidate(key.as_str());
        }
    }

    /// Drops the local copies of keys matching `pattern`.
    pub fn evict_matching(&self, pattern: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let pattern = pattern.to_owned();
        // Registered at once, so no later read returns a matching entry;
        // moka removes them during its maintenance.
        if self
            .local
            .invalidate_entries_if(move |k, _| glob_match(&pattern, k))
            .is_err()
        {
            self.local.invalidate_all();
        }
    }

    /// Drops every local copy.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.local.invalidate_all();
    }

    /// Follows a change announced by another process (or a resubscription).
    pub fn apply(&self, event: &Event) {
        match event {
            Event::Keys(keys) => self.evict(keys),
            Event::Pattern(pattern) => self.evict_matching(pattern),
            Event::Resync => self.clear(),
            Event::Generation { .. } => {}
        }
    }

    async fn then_evict<T>(&self, keys: &[String], outcome: Result<T>) -> Result<T> {
        // Evict even on failure: the write may have landed before the error.
        self.evict(keys);
        outcome
    }
}

impl Backend for TieredBackend {
    fn name(&self) -> &'static str {
        "tiered"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            if let Some(value) = self.peek(key) {
                return Ok(Some(value));
            }
            let stamp = self.stamp(key);
            match self.remote.get_with_ttl(key).await? {
                Some((value, ttl)) => {
                    self.keep(key, value.clone(), ttl, stamp);
                    Ok(Some(value))
                }
                None => Ok(None),
            }
        })
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        Box::pin(async move {
            if let Some(local) = self.local.get(key) {
                let now = Instant::now();
                if local.expires_at > now {
                    return Ok(Some((local.value, KeyTtl::Expires(local.expires_at - now))));
                }
            }
            let stamp = self.stamp(key);
            let found = self.remote.get_with_ttl(key).await?;
            if let Some((value, ttl)) = &found {
                self.keep(key, value.clone(), *ttl, stamp);
            }
            Ok(found)
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            let mut out: Vec<Option<Bytes>> = keys.iter().map(|k| self.peek(k)).collect();
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(out);
            }
            // Without TTLs in one round trip, remote values are not kept
            // locally here; single reads populate the tier.
            let wanted: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
            let remote = self.remote.get_many(&wanted).await?;
            for (i, value) in missing.into_iter().zip(remote) {
                out[i] = value;
            }
            Ok(out)
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let stamps: Vec<Stamp> = writes.iter().map(|w| self.stamp(&w.key)).collect();
            self.remote.write(writes).await?;
            for (w, stamp) in writes.iter().zip(stamps) {
                self.keep(&w.key, w.value.clone(), KeyTtl::Expires(w.ttl), stamp);
            }
            Ok(())
        })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let keys = [key.to_owned()];
            let outcome = self.remote.set_nx(key, value, ttl).await;
            self.then_evict(&keys, outcome).await
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let keys = [key.to_owned()];
            let outcome = self.remote.compare_and_swap(key, expected, swap).await;
            self.then_evict(&keys, outcome).await
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let outcome = self.remote.delete(keys).await;
            self.then_evict(keys, outcome).await
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if self.peek(key).is_some() {
                return Ok(true);
            }
            self.remote.exists(key).await
        })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let keys = [key.to_owned()];
            let outcome = self.remote.expire(key, ttl).await;
            self.then_evict(&keys, outcome).await
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.remote.ttl(key)
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let keys = [key.to_owned()];
            let outcome = self.remote.incr(key, by, ttl).await;
            self.then_evict(&keys, outcome).await
        })
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        self.remote.members(set)
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        self.remote.remove_members(set, members)
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let outcome = self.remote.delete_matching(pattern).await;
            self.evict_matching(pattern);
            outcome
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        self.remote.publish(channel, event)
    }

    fn subscribe(&self, channel: &str) -> Option<EventStream> {
        self.remote.subscribe(channel)
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.remote.ping()
    }

    fn is_shared(&self) -> bool {
        self.remote.is_shared()
    }

    fn circuit(&self) -> Option<crate::resilience::CircuitState> {
        self.remote.circuit()
    }

    fn as_tiered(&self) -> Option<&TieredBackend> {
        Some(self)
    }
}
