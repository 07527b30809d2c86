//! Stores: where entries live. [`Store`] is the narrow waist of cachekit, a
//! dozen byte-level primitives with TTLs that the embedded memory store,
//! Redis and Redis Cluster implement, and that users can implement for a
//! store of their own (see [`conformance`]). Everything above it (cached
//! functions, the `Cache` handle, tags, indexes, namespaces, locks, leases
//! and fencing) is written once, against this trait. Resilience, the
//! in-process tier and the event bus are layers the runtime assembles
//! around a store (`stack`), not parts of it.
//!
//! # The contract
//!
//! Keys given to a store are complete store keys (prefix and namespace
//! included); values are opaque bytes. Every primitive is atomic on its own
//! key, with Redis' semantics: a key holds a value or a member set, and an
//! operation on the other kind fails. TTLs are at least 1 ms. A member set
//! (`Write::member_of`, read by [`Store::members`]) scores each member with
//! its entry's expiry, so that members of expired entries are pruned, and
//! lives at least as long as its longest-lived member.
//!
//! [`Store::write`] and [`Store::set_nx`] are atomic per [`Write`] where the
//! store allows it (memory, one Redis); on a cluster the value is written
//! before its member sets, which readers tolerate because they check every
//! member against the entry itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::Result;

pub(crate) mod cluster;
pub mod conformance;
pub(crate) mod layer;
pub(crate) mod liveness;
pub(crate) mod memory;
pub(crate) mod protocol;
pub(crate) mod redis;

pub use crate::key::glob_match;
pub use bytes::Bytes;
pub use memory::MemoryStore;

/// Memory an in-process entry costs beyond its key and value (quick_cache's
/// slot and its share of the shard's table, the key `String`, the value's
/// `Arc`, the allocator's rounding): charged to each entry so that byte
/// bounds bound the resident memory really used. Checked in RSS by
/// `tests/rss.rs` (1M small entries: the growth stays between 0.5x and
/// 1.1x the bound) and measured per entry by the `memory` bench.
pub(crate) const ENTRY_OVERHEAD: usize = 352;

/// A boxed `Send` future: what the trait's methods return, so that stores
/// can be used as `dyn Store`.
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
    /// Sets to add `key` to, each scored with the entry's expiry.
    pub member_of: Vec<String>,
}

impl Write {
    /// A plain value, listed in no set.
    pub fn new(key: impl Into<String>, value: Bytes, ttl: Duration) -> Self {
        Write {
            key: key.into(),
            value,
            ttl,
            member_of: Vec::new(),
        }
    }
}

/// What a compare-and-swap does when the stored value is the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// Replace the value and its TTL, and add the key to these member sets.
    Set {
        /// The new value.
        value: Bytes,
        /// Its time to live.
        ttl: Duration,
        /// Sets to list the key in (as [`Write::member_of`]).
        member_of: Vec<String>,
    },
    /// Replace the value, keeping its TTL.
    SetKeepTtl(Bytes),
    /// Delete the key.
    Delete,
    /// Only reset the TTL.
    Expire(Duration),
}

impl Swap {
    /// Replace the value and its TTL.
    pub fn set(value: Bytes, ttl: Duration) -> Self {
        Swap::Set {
            value,
            ttl,
            member_of: Vec::new(),
        }
    }
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

/// A store of bytes with TTLs: the embedded [`MemoryStore`], Redis, Redis
/// Cluster, or your own. Every implementation must pass
/// [`conformance::check`].
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and `health()`: `memory`, `redis`, `cluster`.
    fn name(&self) -> &'static str;

    /// Reads a value.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Reads a value and its remaining life (one round trip on a remote
    /// store: what the in-process tier needs to keep a copy).
    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>>;

    /// Reads many values, in the order of `keys` (one round trip per node).
    /// A key holding a member set reads as absent, as `MGET` does.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>>;

    /// Stores values, each with the member sets that list it.
    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>>;

    /// Stores `write` only if its key is absent (and then lists it in its
    /// member sets). Returns whether it did.
    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool>>;

    /// If the value at `key` equals `expected`, applies `swap`. Returns
    /// whether it did.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Deletes keys (`UNLINK` on Redis). Returns how many existed.
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Sets a key's TTL. Returns whether the key exists.
    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;

    /// A key's remaining life.
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>>;

    /// Adds `by` to the integer at `key` (0 if absent) and returns the new
    /// value. A key without a TTL afterwards (just created) gets `ttl`; with
    /// `None` it stays persistent.
    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>>;

    /// The members of a set written through [`Write::member_of`], without
    /// those whose entries expired (which are pruned).
    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Removes members from a set.
    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes every key matching a Redis glob pattern, in bounded batches
    /// (`SCAN` and `UNLINK` on every primary; never `KEYS`). Returns how many.
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Checks that the store answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
}
