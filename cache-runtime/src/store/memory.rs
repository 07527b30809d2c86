//! The embedded store: a bounded in-memory map (quick_cache, a sharded
//! S3-FIFO cache) with Redis' semantics
//! for every [`Store`] primitive (TTLs, `SET NX`, compare-and-swap,
//! counters, scored member sets, pattern deletion). The default when no
//! Redis is configured, and the reference the conformance suite holds the
//! other stores to. One process sees it; nothing is persisted.
//!
//! Cached functions keep decoded values here ([`Held`]): a hit is a lookup
//! and a clone, with no serialization. A typed entry is encoded only if
//! something reads it as bytes (the `Cache` API with another type, say).
//! Expiry follows the stack's [`Clock`], so tests on tokio's paused clock
//! see entries expire when they advance it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quick_cache::sync::{Cache as Map, EntryAction, EntryResult};

use super::{BoxFuture, KeyTtl, Store, Swap, Write};
use crate::clock::{Clock, millis};
use crate::error::{Error, Result};
use crate::fence::{Fence, Stamp, Ticket};
use crate::key::glob_match;
use crate::local::Held;

#[derive(Clone)]
enum Value {
    Bytes(Bytes),
    /// A decoded value of a cached function.
    Held(Held),
    /// member → expiry (ms since the epoch).
    Set(Arc<Mutex<HashMap<Box<str>, u64>>>),
}

#[derive(Clone)]
struct Stored {
    value: Value,
    /// On the stack's clock; `None`: persistent.
    expires_ms: Option<u64>,
}

impl Stored {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|t| t > now_ms)
    }

    fn ttl(&self, now_ms: u64) -> KeyTtl {
        self.expires_ms.map_or(KeyTtl::Persistent, |t| {
            KeyTtl::Expires(Duration::from_millis(t.saturating_sub(now_ms)))
        })
    }

    fn weight(&self, key: &str) -> u32 {
        let value = match &self.value {
            Value::Bytes(b) => b.len(),
            Value::Held(h) => h.weight() as usize,
            Value::Set(set) => set
                .lock()
                .map_or(0, |s| s.keys().map(|k| k.len() + 64).sum()),
        };
        u32::try_from(key.len() + value + super::ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }
}

/// What an entry costs against the store's byte bound.
#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<String, Stored> for ByWeight {
    fn weight(&self, key: &String, value: &Stored) -> u64 {
        u64::from(value.weight(key))
    }
}

/// What an atomic update of one key does.
enum Op {
    Nop,
    Put(Stored),
    Remove,
}

/// The embedded in-memory store.
///
/// Expired entries are dropped when they are read, and otherwise evicted
/// like any entry once the bound is reached (no timer runs): whether an
/// entry is live is decided on each read by the stack's clock, which tests
/// may move faster than real time.
#[derive(Clone)]
pub struct MemoryStore {
    map: Arc<Map<String, Stored, ByWeight>>,
    fence: Arc<Fence>,
    clock: Clock,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.map.len())
            .field("bytes", &self.map.weight())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(256 * 1024 * 1024)
    }
}

fn wrong_type(key: &str) -> Error {
    Error::Backend(format!(
        "WRONGTYPE operation against key `{key}` holding the wrong kind of value"
    ))
}

/// What a typed read found.
pub(crate) enum Found {
    Held(Held),
    Bytes(Bytes),
    Absent,
}

impl MemoryStore {
    /// A store bounded to about `max_bytes` of heap (keys, values and about
    /// 350 bytes of bookkeeping per entry); past the bound, the least
    /// valuable entries are evicted (TinyLFU).
    pub fn new(max_bytes: u64) -> Self {
        Self::with_clock(max_bytes, Clock::System)
    }

    pub(crate) fn with_clock(max_bytes: u64, clock: Clock) -> Self {
        // quick_cache sizes its tables from an estimate of the entries.
        let estimated = usize::try_from(max_bytes / 1024)
            .unwrap_or(usize::MAX)
            .max(64);
        MemoryStore {
            map: Arc::new(Map::with_weighter(estimated, max_bytes.max(1), ByWeight)),
            fence: Arc::new(Fence::default()),
            clock,
        }
    }

    /// Entries currently held (expired entries linger until read or
    /// evicted).
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against the bound.
    pub fn weighted_size(&self) -> u64 {
        self.map.weight()
    }

    /// Applies `f` to the live value at `key` (or `None`) atomically with
    /// respect to every other update of `key`, and returns what it returned.
    fn update<T>(&self, key: &str, f: impl FnOnce(Option<&Stored>) -> (Op, T)) -> T {
        let now = self.now();
        let mut f = Some(f);
        let mut out = None;
        let result = self.map.entry(key, None, |_, current| {
            let live = current.live(now).then_some(&*current);
            let (op, t) = (f.take().expect("called once"))(live);
            out = Some(t);
            match op {
                Op::Nop => EntryAction::Retain(()),
                Op::Put(new) => {
                    *current = new;
                    EntryAction::Retain(())
                }
                Op::Remove => EntryAction::Remove,
            }
        });
        if let EntryResult::Vacant(guard) = result {
            let (op, t) = (f.take().expect("called once"))(None);
            out = Some(t);
            if let Op::Put(new) = op {
                let _ = guard.insert(new);
            }
        }
        out.expect("the update ran")
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn deadline(&self, ttl: Duration) -> u64 {
        self.now() + millis(ttl)
    }

    fn live(&self, key: &str) -> Option<Stored> {
        let now = self.now();
        let stored = self.map.get(key)?;
        if stored.live(now) {
            return Some(stored);
        }
        // Expired: drop it now (no timer does).
        self.map.remove_if(key, |s: &Stored| !s.live(self.now()));
        None
    }

    fn bytes_of(&self, key: &str, stored: Stored) -> Result<Option<Bytes>> {
        match stored.value {
            Value::Bytes(b) => Ok(Some(b)),
            Value::Held(h) => Ok(h.to_bytes(key)),
            Value::Set(_) => Err(wrong_type(key)),
        }
    }

    fn get_now(&self, key: &str) -> Result<Option<Bytes>> {
        match self.live(key) {
            None => Ok(None),
            Some(stored) => self.bytes_of(key, stored),
        }
    }

    /// Removes `key` after voiding the stamps of computations under way.
    fn remove(&self, key: &str) -> bool {
        self.fence.bump(key);
        let now = self.now();
        self.map.remove(key).is_some_and(|(_, s)| s.live(now))
    }

    fn add_member(&self, set: &str, member: &str, expiry_ms: u64, set_deadline: u64) -> Result<()> {
        let now = self.now();
        self.update(set, |current| match current {
            Some(Stored {
                value: Value::Set(members),
                expires_ms,
            }) => {
                let mut guard = members.lock().expect("set lock");
                guard.retain(|_, exp| *exp > now);
                guard.insert(member.into(), expiry_ms);
                drop(guard);
                // A set lives at least as long as its longest-lived member.
                let put = Stored {
                    value: Value::Set(members.clone()),
                    expires_ms: expires_ms.map(|t| t.max(set_deadline)),
                };
                (Op::Put(put), Ok(()))
            }
            Some(_) => (Op::Nop, Err(wrong_type(set))),
            None => {
                let members = HashMap::from([(Box::from(member), expiry_ms)]);
                let put = Stored {
                    value: Value::Set(Arc::new(Mutex::new(members))),
                    expires_ms: Some(set_deadline),
                };
                (Op::Put(put), Ok(()))
            }
        })
    }

    fn list(&self, key: &str, member_of: &[String], ttl: Duration) -> Result<()> {
        let deadline = self.deadline(ttl);
        for set in member_of {
            self.add_member(set, key, deadline, deadline)?;
        }
        Ok(())
    }

    fn put(&self, key: &str, value: Value, ttl: Duration) {
        self.fence.bump(key);
        self.map.insert(
            key.to_owned(),
            Stored {
                value,
                expires_ms: Some(self.deadline(ttl)),
            },
        );
    }

    /// Reads `key` for a cached function: its decoded value, or bytes
    /// written by something else (to decode), or nothing.
    pub(crate) fn get_held(&self, key: &str) -> Found {
        match self.live(key) {
            Some(Stored {
                value: Value::Held(h),
                ..
            }) => Found::Held(h),
            Some(Stored {
                value: Value::Bytes(b),
                ..
            }) => Found::Bytes(b),
            _ => Found::Absent,
        }
    }

    /// Registers a computation of `key`, listed under the tag keys `tags`,
    /// about to start: an invalidation of `key` (by key, pattern or tag)
    /// from now on voids its store.
    pub(crate) fn begin(&self, key: &str, tags: &[String]) -> Ticket {
        self.fence.begin(key, tags)
    }

    /// Stores a decoded value for `ttl`, listed in `member_of`, unless an
    /// invalidation of `key` happened since `stamp`. Returns whether it did.
    pub(crate) fn put_held(
        &self,
        key: &str,
        held: Held,
        ttl: Duration,
        member_of: &[String],
        stamp: Stamp,
    ) -> Result<bool> {
        self.put_fenced(key, Value::Held(held), ttl, member_of, stamp)
    }

    fn put_fenced(
        &self,
        key: &str,
        value: Value,
        ttl: Duration,
        member_of: &[String],
        stamp: Stamp,
    ) -> Result<bool> {
        // A put that is fenced off removes what the key holds: the value it
        // would have replaced is no newer (a forced refresh must not leave
        // the old value behind), and its stamp may have been voided by an
        // invalidation of another key of its shard, which removed nothing
        // here. A value put at the key meanwhile (which voided the stamp)
        // goes too: a miss, never an older value.
        if !self.fence.current(stamp) {
            self.map.remove(key);
            return Ok(false);
        }
        // Listed before it is visible: a tag invalidation that misses the
        // listing bumped the epoch, which the checks below see.
        self.list(key, member_of, ttl)?;
        let deadline = self.deadline(ttl);
        let stored = self.update(key, |_| {
            if self.fence.current(stamp) {
                let put = Stored {
                    value,
                    expires_ms: Some(deadline),
                };
                (Op::Put(put), true)
            } else {
                (Op::Remove, false)
            }
        });
        if stored && !self.fence.current(stamp) {
            // An invalidation bumped between the check and the insert, and
            // may have looked before the insert: undo it.
            self.map.remove(key);
            return Ok(false);
        }
        Ok(stored)
    }

    /// Stores bytes for `ttl` unless an invalidation of `key` happened since
    /// `stamp` (a batch's computed entries). Returns whether it did.
    pub(crate) fn put_bytes(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        stamp: Stamp,
    ) -> Result<bool> {
        self.put_fenced(key, Value::Bytes(value), ttl, &[], stamp)
    }

    /// Voids the computations under way of entries listed under the tag
    /// `tag_key` (they are listed only once they store).
    pub(crate) fn void_tagged(&self, tag_key: &str) {
        self.fence.void_tagged(tag_key);
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            // Never waits on I/O: yield when the task's budget is spent.
            tokio::task::consume_budget().await;
            self.get_now(key)
        })
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        Box::pin(async move {
            let now = self.now();
            match self.live(key) {
                None => Ok(None),
                Some(stored) => {
                    let ttl = stored.ttl(now);
                    Ok(self.bytes_of(key, stored)?.map(|b| (b, ttl)))
                }
            }
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            // Like MGET: a key of another type reads as absent.
            Ok(keys
                .iter()
                .map(|k| self.get_now(k).ok().flatten())
                .collect())
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for w in writes {
                self.list(&w.key, &w.member_of, w.ttl)?;
                self.put(&w.key, Value::Bytes(w.value.clone()), w.ttl);
            }
            Ok(())
        })
    }

    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let deadline = self.deadline(write.ttl);
            let stored = self.update(&write.key, |current| match current {
                Some(_) => (Op::Nop, false),
                None => {
                    let put = Stored {
                        value: Value::Bytes(write.value.clone()),
                        expires_ms: Some(deadline),
                    };
                    (Op::Put(put), true)
                }
            });
            if stored {
                self.fence.bump(&write.key);
                self.list(&write.key, &write.member_of, write.ttl)?;
            }
            Ok(stored)
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = self.now();
            let swapped = self.update(key, |current| {
                let Some(stored) = current else {
                    return (Op::Nop, None);
                };
                let matches = match &stored.value {
                    Value::Bytes(b) => b.as_ref() == expected,
                    Value::Held(h) => h.to_bytes(key).is_some_and(|b| b.as_ref() == expected),
                    Value::Set(_) => false,
                };
                if !matches {
                    return (Op::Nop, None);
                }
                let op = match &swap {
                    Swap::Set { value, ttl, .. } => Op::Put(Stored {
                        value: Value::Bytes(value.clone()),
                        expires_ms: Some(now + millis(*ttl)),
                    }),
                    Swap::SetKeepTtl(value) => Op::Put(Stored {
                        value: Value::Bytes(value.clone()),
                        expires_ms: stored.expires_ms,
                    }),
                    Swap::Delete => Op::Remove,
                    Swap::Expire(ttl) => Op::Put(Stored {
                        value: stored.value.clone(),
                        expires_ms: Some(now + millis(*ttl)),
                    }),
                };
                (op, Some(swap.clone()))
            });
            let Some(swap) = swapped else {
                return Ok(false);
            };
            self.fence.bump(key);
            if let Swap::Set { ttl, member_of, .. } = &swap {
                self.list(key, member_of, *ttl)?;
            }
            Ok(true)
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { Ok(keys.iter().filter(|k| self.remove(k)).count() as u64) })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = self.now();
            Ok(self.update(key, |current| match current {
                Some(stored) => {
                    let put = Stored {
                        value: stored.value.clone(),
                        expires_ms: Some(now + millis(ttl)),
                    };
                    (Op::Put(put), true)
                }
                None => (Op::Nop, false),
            }))
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move {
            let now = self.now();
            Ok(self.live(key).map_or(KeyTtl::Missing, |s| s.ttl(now)))
        })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let now = self.now();
            let result = self.update(key, |current| {
                let fresh = ttl.map(|t| now + millis(t));
                let (old, expires_ms) = match current {
                    None => (0, fresh),
                    Some(Stored {
                        value: Value::Bytes(b),
                        expires_ms,
                    }) => match std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => (n, expires_ms.or(fresh)),
                        None => {
                            let e = Error::Backend(format!(
                                "ERR value at `{key}` is not an integer or out of range"
                            ));
                            return (Op::Nop, Err(e));
                        }
                    },
                    Some(_) => return (Op::Nop, Err(wrong_type(key))),
                };
                match old.checked_add(by) {
                    Some(new) => {
                        let put = Stored {
                            value: Value::Bytes(Bytes::from(new.to_string())),
                            expires_ms,
                        };
                        (Op::Put(put), Ok(new))
                    }
                    None => {
                        let e = Error::Backend(format!("ERR increment at `{key}` would overflow"));
                        (Op::Nop, Err(e))
                    }
                }
            });
            if result.is_ok() {
                self.fence.bump(key);
            }
            result
        })
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            match self.live(set) {
                None => Ok(Vec::new()),
                Some(Stored {
                    value: Value::Set(members),
                    ..
                }) => {
                    let now = self.now();
                    let mut guard = members.lock().expect("set lock");
                    guard.retain(|_, exp| *exp > now);
                    Ok(guard.keys().map(|k| k.to_string()).collect())
                }
                Some(_) => Err(wrong_type(set)),
            }
        })
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let Some(Stored {
                value: Value::Set(listed),
                ..
            }) = self.live(set)
            {
                let mut guard = listed.lock().expect("set lock");
                for m in members {
                    guard.remove(m.as_str());
                }
                if guard.is_empty() {
                    drop(guard);
                    self.map.remove(set);
                }
            }
            Ok(())
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.fence.void_matching(pattern);
            // Shard by shard, under each shard's write lock: a key inserted
            // meanwhile in a shard already visited stays (like SCAN), and
            // the fence voided the computations that would insert them.
            let now = self.now();
            let deleted = AtomicU64::new(0);
            self.map.retain(|key, stored| {
                if !glob_match(pattern, key) {
                    return true;
                }
                self.fence.bump(key);
                if stored.live(now) {
                    deleted.fetch_add(1, Ordering::Relaxed);
                }
                false
            });
            tokio::task::yield_now().await;
            let deleted = deleted.load(Ordering::Relaxed);
            Ok(deleted)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(v: u32) -> Held {
        Held::new(v, None, 4, None, &[])
    }

    fn value(store: &MemoryStore, key: &str) -> Option<u32> {
        match store.get_held(key) {
            Found::Held(h) => h.get::<u32>().copied(),
            _ => None,
        }
    }

    /// A forced refresh whose put is fenced off by an invalidation of
    /// another key of its shard must not leave the value it recomputed
    /// (after a write to the source, say) behind in the store.
    #[test]
    fn a_fenced_off_put_removes_the_value_it_would_replace() {
        let store = MemoryStore::new(1 << 20);
        let ttl = Duration::from_secs(60);
        let first = store.begin("k", &[]);
        assert!(store.put_held("k", held(1), ttl, &[], first.stamp).unwrap());
        let refresh = store.begin("k", &[]);
        store.remove(&store.fence.shard_mate("k"));
        assert!(
            !store
                .put_held("k", held(2), ttl, &[], refresh.stamp)
                .unwrap()
        );
        assert_eq!(value(&store, "k"), None, "the old value is gone");
        let again = store.begin("k", &[]);
        assert!(store.put_held("k", held(3), ttl, &[], again.stamp).unwrap());
        assert_eq!(value(&store, "k"), Some(3));
    }
}
