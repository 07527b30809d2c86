//! A store of your own: the [`Store`] contract implemented over a plain
//! `Mutex<HashMap>`, checked by cachekit's conformance suite (cancellation
//! included), then used by a cached function like any other store.
//!
//! ```text
//! cargo run --example custom_store
//! ```
//!
//! A custom store is treated as shared (other processes may use it): it
//! gets the resilience layer (timeouts, retries, breaker) and fencing by
//! lease markers; no in-process tier is kept in front of it, since nothing
//! tells this process what others change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cachekit::store::{BoxFuture, Bytes, KeyTtl, Store, Swap, Write, conformance};
use cachekit::{Config, Error, cached};

/// What a key holds.
#[derive(Debug, Clone)]
enum Value {
    Bytes(Bytes),
    /// member → expiry.
    Set(HashMap<String, Instant>),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// The store: one lock around one map. Simple, and correct.
#[derive(Debug, Default)]
pub struct MapStore {
    map: Mutex<HashMap<String, Entry>>,
}

fn wrong_type(key: &str) -> Error {
    // A refused command is a backend error, as Redis' WRONGTYPE is.
    Error::Backend(format!("WRONGTYPE `{key}` holds a set"))
}

impl MapStore {
    /// Runs `f` on the live entries, under the lock.
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> T) -> T {
        let now = Instant::now();
        let mut map = self.map.lock().expect("store lock");
        map.retain(|_, e| e.live(now));
        f(&mut map, now)
    }

    fn bytes(map: &HashMap<String, Entry>, key: &str) -> Result<Option<Bytes>, Error> {
        match map.get(key).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b.clone())),
            Some(Value::Set(_)) => Err(wrong_type(key)),
        }
    }

    fn put(map: &mut HashMap<String, Entry>, now: Instant, w: &Write) {
        for set in &w.member_of {
            let entry = map.entry(set.clone()).or_insert(Entry {
                value: Value::Set(HashMap::new()),
                expires: Some(now + w.ttl),
            });
            if let Value::Set(members) = &mut entry.value {
                members.insert(w.key.clone(), now + w.ttl);
            }
            entry.expires = entry.expires.map(|t| t.max(now + w.ttl));
        }
        map.insert(
            w.key.clone(),
            Entry {
                value: Value::Bytes(w.value.clone()),
                expires: Some(now + w.ttl),
            },
        );
    }
}

/// A ready future: every operation of this store completes at once.
fn ready<'a, T: Send + 'a>(value: Result<T, Error>) -> BoxFuture<'a, Result<T, Error>> {
    Box::pin(std::future::ready(value))
}

impl Store for MapStore {
    fn name(&self) -> &'static str {
        "map"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, Error>> {
        ready(self.with(|map, _| Self::bytes(map, key)))
    }

    fn get_with_ttl<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>, Error>> {
        ready(self.with(|map, now| {
            let ttl = map.get(key).map(|e| match e.expires {
                Some(t) => KeyTtl::Expires(t - now),
                None => KeyTtl::Persistent,
            });
            Ok(Self::bytes(map, key)?.zip(ttl))
        }))
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Bytes>>, Error>> {
        ready(self.with(|map, _| {
            Ok(keys
                .iter()
                .map(|k| Self::bytes(map, k).ok().flatten())
                .collect())
        }))
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), Error>> {
        ready(self.with(|map, now| {
            writes.iter().for_each(|w| Self::put(map, now, w));
            Ok(())
        }))
    }

    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool, Error>> {
        ready(self.with(|map, now| {
            if map.contains_key(&write.key) {
                return Ok(false);
            }
            Self::put(map, now, write);
            Ok(true)
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        ready(self.with(|map, now| {
            if Self::bytes(map, key).ok().flatten().as_deref() != Some(expected) {
                return Ok(false);
            }
            match swap {
                Swap::Set {
                    value,
                    ttl,
                    member_of,
                } => {
                    Self::put(
                        map,
                        now,
                        &Write {
                            key: key.to_owned(),
                            value,
                            ttl,
                            member_of,
                        },
                    );
                }
                Swap::SetKeepTtl(value) => {
                    let entry = map.get_mut(key).expect("checked");
                    entry.value = Value::Bytes(value);
                }
                Swap::Delete => {
                    map.remove(key);
                }
                Swap::Expire(ttl) => {
                    map.get_mut(key).expect("checked").expires = Some(now + ttl);
                }
                _ => return Ok(false),
            }
            Ok(true)
        }))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64, Error>> {
        ready(
            self.with(|map, _| Ok(keys.iter().filter(|k| map.remove(*k).is_some()).count() as u64)),
        )
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        ready(self.with(|map, now| {
            Ok(map
                .get_mut(key)
                .map(|e| e.expires = Some(now + ttl))
                .is_some())
        }))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl, Error>> {
        ready(self.with(|map, now| {
            Ok(match map.get(key) {
                None => KeyTtl::Missing,
                Some(Entry { expires: None, .. }) => KeyTtl::Persistent,
                Some(Entry {
                    expires: Some(t), ..
                }) => KeyTtl::Expires(*t - now),
            })
        }))
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64, Error>> {
        ready(self.with(|map, now| {
            let current = match Self::bytes(map, key)? {
                None => 0,
                Some(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| Error::Backend(format!("`{key}` is not an integer")))?,
            };
            let new = current
                .checked_add(by)
                .ok_or_else(|| Error::Backend(format!("`{key}` would overflow")))?;
            let expires = map
                .get(key)
                .and_then(|e| e.expires)
                .or(ttl.map(|t| now + t));
            map.insert(
                key.to_owned(),
                Entry {
                    value: Value::Bytes(Bytes::from(new.to_string())),
                    expires,
                },
            );
            Ok(new)
        }))
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        ready(
            self.with(|map, now| match map.get_mut(set).map(|e| &mut e.value) {
                None => Ok(Vec::new()),
                Some(Value::Set(members)) => {
                    members.retain(|_, t| *t > now);
                    Ok(members.keys().cloned().collect())
                }
                Some(Value::Bytes(_)) => Err(Error::Backend(format!("WRONGTYPE `{set}`"))),
            }),
        )
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<(), Error>> {
        ready(self.with(|map, _| {
            if let Some(Entry {
                value: Value::Set(listed),
                ..
            }) = map.get_mut(set)
            {
                members.iter().for_each(|m| {
                    listed.remove(m);
                });
            }
            Ok(())
        }))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        ready(self.with(|map, _| {
            let before = map.len();
            map.retain(|k, _| !cachekit::store::glob_match(pattern, k));
            Ok((before - map.len()) as u64)
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        ready(Ok(()))
    }
}

#[cached(ttl = 60, key = "square:{n}")]
async fn square(n: u64) -> u64 {
    n * n
}

#[tokio::main]
async fn main() {
    let store = MapStore::default();
    conformance::check(&store).await;
    conformance::check_cancellation(&store, 500).await;
    println!("MapStore passes cachekit's Store conformance suite (cancellation included)");

    cachekit::init(Config::store(store)).await.expect("init");
    assert_eq!(square(12).await, 144);
    assert_eq!(square(12).await, 144);
    let counts = *cachekit::stats().function("square").expect("counted");
    println!(
        "square(12) twice through the custom store: {} miss, {} hit",
        counts.misses, counts.hits
    );
    assert_eq!((counts.misses, counts.hits), (1, 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` runs this (the example is declared with `test = true`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_map_store_passes_the_conformance_suite() {
        let store = MapStore::default();
        conformance::check(&store).await;
        conformance::check_cancellation(&store, 500).await;
    }
}
