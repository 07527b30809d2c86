//! Stores. The [`Backend`] trait is the narrow waist of cachekit: a handful
//! of async primitives over bytes, implemented by the embedded memory store,
//! Redis, Redis Cluster and the in-process tier. Everything above it
//! (cached functions, the `Cache` handle, tags, indexes, namespaces, locks)
//! is written once, against this trait.
//!
//! Keys given to a backend are complete store keys (prefix and namespace
//! included); values are opaque bytes (see `codec`). Every primitive is
//! atomic on its own key. [`Backend::write`] is atomic per [`Write`] where
//! the store allows it (memory, one Redis); on a cluster the value is written
//! before its member sets, which readers tolerate because they check every
//! member against the entry itself, and which keeps an entry racing a tag
//! invalidation either deleted or still listed (see `invalidate_tag`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

/// Heap an in-process entry costs beyond its key and value bytes (moka's
/// entry, its deques and timer wheel, the key `String`, the `Bytes` value
/// and its wrapper): about 470 bytes, measured by the `memory` bench. The
/// in-process stores charge it to each entry, so that their byte bounds
/// bound the memory they really use.
pub(crate) const ENTRY_OVERHEAD: usize = 480;

pub mod cluster;
pub mod memory;
pub mod redis;
#[cfg(test)]
pub(crate) mod test_store;
pub mod tiered;

pub use cluster::ClusterBackend;
pub use memory::MemoryBackend;
pub use redis::RedisBackend;
pub use tiered::TieredBackend;

/// A boxed `Send` future: what the trait's methods return, so that backends
/// can be used as `dyn Backend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One value to store, and the member sets (tags, indexes) that list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The store key.
    pub key: String,
    /// The encoded entry.
    pub value: Bytes,
    /// Its time to live.
    pub ttl: Duration,
    /// Sets to add `key` to, each scored with the entry's expiry so that
    /// members of expired entries are pruned. A set lives at least as long
    /// as its longest-lived member.
    pub member_of: Vec<String>,
}

impl Write {
    /// A plain value.
    pub fn new(key: String, value: Bytes, ttl: Duration) -> Self {
        Write {
            key,
            value,
            ttl,
            member_of: Vec::new(),
        }
    }
}

/// What a compare-and-swap does when the stored value is the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// Replace the value and its TTL.
    Set(Bytes, Duration),
    /// Replace the value, keeping its TTL.
    SetKeepTtl(Bytes),
    /// Delete the key.
    Delete,
    /// Only reset the TTL.
    Expire(Duration),
}

/// The remaining life of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No such key.
    Missing,
    /// The key does not expire.
    Persistent,
    /// The key expires after this.
    Expires(Duration),
}

/// A message between processes sharing a store: what changed, so that
/// in-process copies (the local tier, namespace generations) follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// These store keys were written or deleted.
    Keys(Vec<String>),
    /// Every key matching this store pattern was deleted.
    Pattern(String),
    /// The namespace's generation changed.
    Generation {
        /// The namespace.
        namespace: String,
        /// Its new generation.
        generation: u64,
    },
    /// The subscription was (re)established: messages may have been missed,
    /// so in-process copies must be dropped.
    Resync,
}

/// Where events arrive. Dropping it ends the subscription.
pub type EventStream = tokio::sync::mpsc::UnboundedReceiver<Event>;

/// A store of bytes with TTLs.
///
/// Implementations: [`MemoryBackend`] (embedded), [`RedisBackend`] (one Redis
/// server), [`ClusterBackend`] (Redis Cluster) and [`TieredBackend`] (an
/// in-process tier in front of another backend). All of them pass the same
/// conformance suite.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and `health()`: `memory`, `redis`, `cluster`, `tiered`.
    fn name(&self) -> &'static str;

    /// Reads a value.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Reads a value and its remaining life in one round trip. The default
    /// asks twice; remote stores pipeline it.
    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        Box::pin(async move {
            let Some(value) = self.get(key).await? else {
                return Ok(None);
            };
            Ok(Some((value, self.ttl(key).await?)))
        })
    }

    /// Reads many values in one round trip (per node on a cluster).
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>>;

    /// Stores values, each with the member sets that list it, in one round
    /// trip (per slot on a cluster).
    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>>;

    /// Stores a value only if the key is absent. Returns whether it did.
    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// If the stored value equals `expected`, applies `swap`. Returns whether
    /// it did.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Deletes keys (`UNLINK` on Redis). Returns how many existed.
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Whether a key exists.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Sets a key's TTL. Returns whether the key exists.
    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;

    /// A key's remaining life.
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>>;

    /// Adds `by` to the integer at `key` (0 if absent) and returns the new
    /// value. A key that has no TTL afterwards (it was just created) gets
    /// `ttl`; with `None` it stays persistent.
    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>>;

    /// The members of a set written by [`Backend::write`], without those
    /// whose entries expired (they are pruned).
    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Removes members from a set.
    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes every key matching a glob pattern, in bounded batches (`SCAN`
    /// and `UNLINK` on every primary; never `KEYS`). Returns how many.
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Tells the other processes sharing this store what changed. A no-op
    /// for stores that only this process sees.
    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>>;

    /// Listens to [`Backend::publish`] on `channel`, across reconnections
    /// (each reconnection delivers [`Event::Resync`]). `None` for stores that
    /// only this process sees.
    fn subscribe(&self, channel: &str) -> Option<EventStream>;

    /// Checks that the store answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;

    /// Whether other processes can see this store (`false` for memory).
    fn is_shared(&self) -> bool {
        true
    }

    /// This backend as an in-process tier, if it is one.
    fn as_tiered(&self) -> Option<&TieredBackend> {
        None
    }

    /// The state of the circuit breaker in front of this store, if any.
    fn circuit(&self) -> Option<crate::resilience::CircuitState> {
        None
    }
}

/// The Redis Cluster backend for `urls`, behind the same timeout, retries
/// and circuit breaker as one Redis.
pub(crate) fn cluster_backend(
    urls: &[crate::config::RedisUrl],
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn Backend>> {
    let cluster = ClusterBackend::new(
        urls,
        config.tls_ca.as_deref(),
        config.timeout,
        config.connect_timeout,
    )?;
    Ok(std::sync::Arc::new(crate::resilience::Resilient::new(
        cluster,
        config.timeout,
        config.retry,
        config.breaker,
    )))
}

/// A remote store's read without the box: [`Resilient`](crate::resilience::Resilient)
/// wraps it in its own boxed future, so the hit path allocates one future,
/// not two.
pub trait DirectGet: Backend {
    /// [`Backend::get`], unboxed.
    fn get_direct<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<Bytes>>> + Send + 'a;
}

/// Encodes an [`Event`] as a pub/sub message.
pub(crate) fn encode_event(sender: u64, event: &Event) -> String {
    let mut out = format!("{sender:016x}\n");
    match event {
        Event::Keys(keys) => {
            out.push('k');
            for key in keys {
                out.push('\n');
                out.push_str(key);
            }
        }
        Event::Pattern(pattern) => {
            out.push_str("p\n");
            out.push_str(pattern);
        }
        Event::Generation {
            namespace,
            generation,
        } => {
            out.push_str(&format!("g\n{namespace}\n{generation}"));
        }
        Event::Resync => out.push('r'),
    }
    out
}

/// Decodes a pub/sub message: the sender and the event.
pub(crate) fn decode_event(message: &str) -> Option<(u64, Event)> {
    let (sender, rest) = message.split_once('\n')?;
    let sender = u64::from_str_radix(sender, 16).ok()?;
    let mut lines = rest.split('\n');
    let event = match lines.next()? {
        "k" => Event::Keys(lines.map(str::to_owned).collect()),
        "p" => Event::Pattern(lines.next()?.to_owned()),
        "g" => Event::Generation {
            namespace: lines.next()?.to_owned(),
            generation: lines.next()?.parse().ok()?,
        },
        "r" => Event::Resync,
        _ => return None,
    };
    Some((sender, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        for event in [
            Event::Keys(vec!["a:1".into(), "b:2".into()]),
            Event::Pattern("user:*".into()),
            Event::Generation {
                namespace: "heroes".into(),
                generation: 3,
            },
            Event::Resync,
        ] {
            assert_eq!(decode_event(&encode_event(42, &event)), Some((42, event)));
        }
        assert_eq!(decode_event("garbage"), None);
    }
}
