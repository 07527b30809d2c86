//! The embedded store: a bounded in-memory map (moka) with Redis' semantics
//! for everything cachekit uses (TTLs, `SET NX`, compare-and-swap, counters,
//! scored member sets, pattern deletion). The default when no Redis is
//! configured, and the reference the conformance suite holds the other
//! backends to. One process sees it; nothing is persisted.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::ops::compute::Op;
use moka::sync::Cache as Moka;

use super::{Backend, BoxFuture, Event, EventStream, KeyTtl, Swap, Write};
use crate::codec::now_ms;
use crate::error::{Error, Result};
use crate::key::glob_match;

/// Keys visited per step of a pattern deletion; the task yields between steps.
const DELETE_BATCH: usize = 1_000;

#[derive(Clone)]
enum Value {
    Bytes(Bytes),
    /// member → expiry (ms since the epoch).
    Set(Arc<Mutex<HashMap<Box<str>, u64>>>),
}

#[derive(Clone)]
struct Stored {
    value: Value,
    expires_at: Option<Instant>,
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    fn weight(&self, key: &str) -> u32 {
        let value = match &self.value {
            Value::Bytes(b) => b.len(),
            Value::Set(set) => set
                .lock()
                .map_or(0, |s| s.keys().map(|k| k.len() + 64).sum()),
        };
        u32::try_from(key.len() + value + super::ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }
}

struct ByDeadline;

impl moka::Expiry<String, Stored> for ByDeadline {
    fn expire_after_create(&self, _: &String, value: &Stored, now: Instant) -> Option<Duration> {
        value.expires_at.map(|t| t.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Stored,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.expires_at.map(|t| t.saturating_duration_since(now))
    }
}

/// The embedded in-memory store.
#[derive(Clone)]
pub struct MemoryBackend {
    map: Moka<String, Stored>,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.map.entry_count())
            .field("bytes", &self.map.weighted_size())
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new(256 * 1024 * 1024)
    }
}

fn wrong_type(key: &str) -> Error {
    Error::Backend(format!(
        "WRONGTYPE operation against key `{key}` holding the wrong kind of value"
    ))
}

impl MemoryBackend {
    /// A store bounded to about `max_bytes` of heap (keys, values and about
    /// 480 bytes of bookkeeping per entry); past the
    /// bound, the least valuable entries are evicted (TinyLFU).
    pub fn new(max_bytes: u64) -> Self {
        MemoryBackend {
            map: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Stored| v.weight(k))
                .expire_after(ByDeadline)
                .build(),
        }
    }

    /// Entries currently held (approximate: expired entries linger until
    /// housekeeping).
    pub fn len(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self, key: &str) -> Option<Stored> {
        self.map.get(key).filter(|s| s.live(Instant::now()))
    }

    fn get_now(&self, key: &str) -> Result<Option<Bytes>> {
        match self.live(key) {
            None => Ok(None),
            Some(Stored {
                value: Value::Bytes(b),
                ..
            }) => Ok(Some(b)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    fn add_members(&self, set: &str, member: &str, expiry_ms: u64, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let deadline = now + ttl;
        let mut result = Ok(());
        self.map.entry_by_ref(set).and_compute_with(|current| {
            let current = current.map(|e| e.into_value()).filter(|s| s.live(now));
            match current {
                Some(Stored {
                    value: Value::Set(members),
                    expires_at,
                }) => {
                    let mut guard = members.lock().expect("set lock");
                    let now_ms = now_ms();
                    guard.retain(|_, exp| *exp > now_ms);
                    guard.insert(member.into(), expiry_ms);
                    drop(guard);
                    // A set lives at least as long as its longest-lived member.
                    let expires_at = expires_at.map(|t| t.max(deadline));
                    Op::Put(Stored {
                        value: Value::Set(members),
                        expires_at,
                    })
                }
                Some(_) => {
                    result = Err(wrong_type(set));
                    Op::Nop
                }
                None => {
                    let members = HashMap::from([(Box::from(member), expiry_ms)]);
                    Op::Put(Stored {
                        value: Value::Set(Arc::new(Mutex::new(members))),
                        expires_at: Some(deadline),
                    })
                }
            }
        });
        result
    }
}

impl Backend for MemoryBackend {
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
            let now = Instant::now();
            match self.live(key) {
                None => Ok(None),
                Some(Stored {
                    value: Value::Bytes(b),
                    expires_at,
                }) => Ok(Some((
                    b,
                    expires_at.map_or(KeyTtl::Persistent, |t| {
                        KeyTtl::Expires(t.saturating_duration_since(now))
                    }),
                ))),
                Some(_) => Err(wrong_type(key)),
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
                let expiry_ms = now_ms() + w.ttl.as_millis() as u64;
                for set in &w.member_of {
                    self.add_members(set, &w.key, expiry_ms, w.ttl)?;
                }
                self.map.insert(
                    w.key.clone(),
                    Stored {
                        value: Value::Bytes(w.value.clone()),
                        expires_at: Some(Instant::now() + w.ttl),
                    },
                );
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
            let now = Instant::now();
            let mut stored = false;
            self.map.entry_by_ref(key).and_compute_with(|current| {
                if current.is_some_and(|e| e.value().live(now)) {
                    Op::Nop
                } else {
                    stored = true;
                    Op::Put(Stored {
                        value: Value::Bytes(value),
                        expires_at: Some(now + ttl),
                    })
                }
            });
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
            let now = Instant::now();
            let mut swapped = false;
            self.map.entry_by_ref(key).and_compute_with(|current| {
                let current = current.map(|e| e.into_value()).filter(|s| s.live(now));
                match current {
                    Some(Stored {
                        value: Value::Bytes(b),
                        expires_at: current_expiry,
                    }) if b.as_ref() == expected => {
                        swapped = true;
                        match swap {
                            Swap::Set(value, ttl) => Op::Put(Stored {
                                value: Value::Bytes(value),
                                expires_at: Some(now + ttl),
                            }),
                            Swap::SetKeepTtl(value) => Op::Put(Stored {
                                value: Value::Bytes(value),
                                expires_at: current_expiry,
                            }),
                            Swap::Delete => Op::Remove,
                            Swap::Expire(ttl) => Op::Put(Stored {
                                value: Value::Bytes(b),
                                expires_at: Some(now + ttl),
                            }),
                        }
                    }
                    _ => Op::Nop,
                }
            });
            Ok(swapped)
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let now = Instant::now();
            Ok(keys
                .iter()
                .filter(|k| self.map.remove(k.as_str()).is_some_and(|s| s.live(now)))
                .count() as u64)
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.live(key).is_some()) })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut found = false;
            self.map.entry_by_ref(key).and_compute_with(|current| {
                match current.map(|e| e.into_value()).filter(|s| s.live(now)) {
                    Some(mut stored) => {
                        found = true;
                        stored.expires_at = Some(now + ttl);
                        Op::Put(stored)
                    }
                    None => Op::Nop,
                }
            });
            Ok(found)
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move {
            let now = Instant::now();
            Ok(match self.live(key) {
                None => KeyTtl::Missing,
                Some(Stored {
                    expires_at: None, ..
                }) => KeyTtl::Persistent,
                Some(Stored {
                    expires_at: Some(t),
                    ..
                }) => KeyTtl::Expires(t.saturating_duration_since(now)),
            })
        })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut result = Err(Error::Backend("increment did not run".into()));
            self.map.entry_by_ref(key).and_compute_with(|current| {
                let current = current.map(|e| e.into_value()).filter(|s| s.live(now));
                let fresh = ttl.map(|t| now + t);
                let (old, expires_at) = match &current {
                    None => (0, fresh),
                    Some(Stored {
                        value: Value::Bytes(b),
                        expires_at,
                    }) => {
                        let parsed = std::str::from_utf8(b)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok());
                        match parsed {
                            Some(n) => (n, expires_at.or(fresh)),
                            None => {
                                result = Err(Error::Backend(format!(
                                    "ERR value at `{key}` is not an integer or out of range"
                                )));
                                return Op::Nop;
                            }
                        }
                    }
                    Some(_) => {
                        result = Err(wrong_type(key));
                        return Op::Nop;
                    }
                };
                match old.checked_add(by) {
                    Some(new) => {
                        result = Ok(new);
                        Op::Put(Stored {
                            value: Value::Bytes(Bytes::from(new.to_string())),
                            expires_at,
                        })
                    }
                    None => {
                        result = Err(Error::Backend(format!(
                            "ERR increment at `{key}` would overflow"
                        )));
                        Op::Nop
                    }
                }
            });
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
                    let now_ms = now_ms();
                    let mut guard = members.lock().expect("set lock");
                    guard.retain(|_, exp| *exp > now_ms);
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
                value: Value::Set(set_members),
                ..
            }) = self.live(set)
            {
                let mut guard = set_members.lock().expect("set lock");
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
            let now = Instant::now();
            let mut deleted = 0;
            let mut batch = Vec::with_capacity(DELETE_BATCH);
            let mut visited = 0;
            // moka's iterator is weakly consistent: keys inserted meanwhile may
            // or may not be seen, like SCAN.
            let matching: Vec<Arc<String>> = self
                .map
                .iter()
                .filter_map(|(k, _)| glob_match(pattern, &k).then_some(k))
                .collect();
            for key in matching {
                batch.push(key);
                visited += 1;
                if batch.len() == DELETE_BATCH {
                    deleted += batch
                        .drain(..)
                        .filter(|k| self.map.remove(k.as_str()).is_some_and(|s| s.live(now)))
                        .count() as u64;
                    tracing::trace!(pattern, visited, deleted, "pattern invalidation progress");
                    tokio::task::yield_now().await;
                }
            }
            deleted += batch
                .drain(..)
                .filter(|k| self.map.remove(k.as_str()).is_some_and(|s| s.live(now)))
                .count() as u64;
            Ok(deleted)
        })
    }

    fn publish<'a>(&'a self, _: &'a str, _: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, _: &str) -> Option<EventStream> {
        None
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn is_shared(&self) -> bool {
        false
    }
}
