//! Values held in process, decoded: what the embedded store, the tier in
//! front of a shared store, and process-scope functions keep. A hit on any
//! of them is a lookup, a downcast and a clone of the value; nothing is
//! deserialized.
//!
//! [`LocalMap`] is the bounded map (quick_cache) behind the tier and
//! process scope, fenced (see `fence`) so that a computation or a fill that raced
//! an invalidation never puts back what it invalidated. [`Tier`] adds what
//! a copy of a shared store needs: a bound on how long a copy lives, and
//! whether the process can hear about changes at all. While it cannot (its
//! tracking connection is down), the tier is bypassed, and it starts empty
//! once it hears again: it never serves from a period when it could not
//! hear.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quick_cache::sync::Cache as Map;

use crate::clock::{Clock, millis};
use crate::codec::{Codec, Envelope, Format, Meta, Times};
use crate::error::Result;
use crate::fence::{Fence, Stamp};
use crate::key::glob_match;

/// Serializes a held value with a codec: monomorphized for its type when
/// the value is stored, so that a held entry can still be read as bytes.
pub(crate) type PayloadFn = fn(&(dyn Any + Send + Sync), Codec) -> Result<Vec<u8>>;

/// How a held value becomes the bytes a store would hold.
#[derive(Clone, Debug)]
pub(crate) struct Encoder {
    pub(crate) payload: PayloadFn,
    pub(crate) format: Format,
    pub(crate) envelope: Envelope,
}

struct Entry {
    value: Box<dyn Any + Send + Sync>,
    times: Option<Times>,
    weight: u32,
    encoder: Option<Encoder>,
    tags: Box<[String]>,
}

/// A decoded value and what the engine needs to know about it. Cloning it
/// clones a pointer.
#[derive(Clone)]
pub(crate) struct Held(Arc<Entry>);

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("times", &self.0.times)
            .field("weight", &self.0.weight)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// Holds `value`. `weight` is its estimated heap size in bytes.
    pub(crate) fn new<T: Any + Send + Sync>(
        value: T,
        times: Option<Times>,
        weight: usize,
        encoder: Option<Encoder>,
        tags: &[String],
    ) -> Held {
        Held(Arc::new(Entry {
            value: Box::new(value),
            times,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            encoder,
            tags: tags.into(),
        }))
    }

    /// The value, if it is a `T`.
    #[inline]
    pub(crate) fn get<T: Any>(&self) -> Option<&T> {
        self.0.value.downcast_ref()
    }

    pub(crate) fn times(&self) -> Option<Times> {
        self.0.times
    }

    pub(crate) fn weight(&self) -> u32 {
        self.0.weight
    }

    /// The bytes a store would hold for this entry at `key`, if it can be
    /// serialized.
    pub(crate) fn to_bytes(&self, key: &str) -> Option<Bytes> {
        let encoder = self.0.encoder.as_ref()?;
        let payload = (encoder.payload)(&*self.0.value, encoder.format.codec).ok()?;
        let meta = Meta {
            times: self.0.times,
            indexes: Vec::new(),
        };
        encoder
            .envelope
            .frame(key, payload, encoder.format, &meta)
            .ok()
    }

    fn has_tag(&self, tag: &str) -> bool {
        self.0.tags.iter().any(|t| t == tag)
    }
}

#[derive(Clone)]
struct Slot {
    held: Held,
    expires_ms: u64,
}

/// What a slot costs against a map's bound: its bytes, or 1 (an entry).
#[derive(Clone)]
enum ByWeight {
    Bytes,
    Entries,
}

impl quick_cache::Weighter<String, Slot> for ByWeight {
    fn weight(&self, key: &String, slot: &Slot) -> u64 {
        match self {
            ByWeight::Bytes => {
                (key.len() + crate::store::ENTRY_OVERHEAD) as u64 + u64::from(slot.held.weight())
            }
            ByWeight::Entries => 1,
        }
    }
}

/// How a [`LocalMap`] is bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bound {
    /// Bytes of heap: keys, values' estimated sizes and bookkeeping.
    Bytes(u64),
    /// Entries.
    Entries(u64),
}

/// A bounded, fenced map of held values. Expired values are dropped when
/// read, or evicted like any other once the bound is reached.
pub(crate) struct LocalMap {
    map: Map<String, Slot, ByWeight>,
    fence: Fence,
    clock: Clock,
}

impl fmt::Debug for LocalMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMap")
            .field("entries", &self.map.len())
            .finish()
    }
}

impl LocalMap {
    pub(crate) fn new(bound: Bound, clock: Clock) -> Self {
        let map = match bound {
            Bound::Bytes(max) => {
                let estimated = usize::try_from(max / 1024).unwrap_or(usize::MAX).max(64);
                Map::with_weighter(estimated, max.max(1), ByWeight::Bytes)
            }
            Bound::Entries(max) => {
                let max = max.max(1);
                Map::with_weighter(
                    usize::try_from(max).unwrap_or(usize::MAX),
                    max,
                    ByWeight::Entries,
                )
            }
        };
        LocalMap {
            map,
            fence: Fence::default(),
            clock,
        }
    }

    /// The live value at `key` and when it expires (ms, on the map's clock).
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<(Held, u64)> {
        let slot = self.map.get(key)?;
        let now = self.clock.now_ms();
        if slot.expires_ms > now {
            return Some((slot.held, slot.expires_ms));
        }
        self.map.remove_if(key, |s: &Slot| s.expires_ms <= now);
        None
    }

    /// A stamp for a fill or computation of `key` about to start.
    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        self.fence.stamp(key)
    }

    /// Keeps `held` until `expires_ms`, unless `key` was invalidated since
    /// `stamp`. Returns whether it did.
    ///
    /// When it does not, any copy at `key` goes too: the value being kept
    /// replaces it (a refresh, a write to the shared store), so the copy is
    /// older than what the caller knows. The stamp can also be voided by an
    /// invalidation of another key of its shard, or by a pattern, which
    /// removed nothing here: the copy would otherwise outlive the write.
    pub(crate) fn keep(&self, key: &str, held: Held, expires_ms: u64, stamp: Stamp) -> bool {
        if expires_ms > self.clock.now_ms() && self.fence.current(stamp) {
            self.map.insert(key.to_owned(), Slot { held, expires_ms });
            // An invalidation between the check and the insert: undo.
            if self.fence.current(stamp) {
                return true;
            }
        }
        self.map.remove(key);
        false
    }

    /// Removes `key`; returns whether it held a live value.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.fence.bump(key);
        let now = self.clock.now_ms();
        self.map
            .remove(key)
            .is_some_and(|(_, s)| s.expires_ms > now)
    }

    /// Drops the copies of `keys`.
    pub(crate) fn evict(&self, keys: &[String]) {
        for key in keys {
            self.fence.bump(key);
            self.map.remove(key.as_str());
        }
    }

    /// Drops the copies of keys matching `pattern`.
    pub(crate) fn evict_matching(&self, pattern: &str) {
        self.fence.bump_all();
        self.map.retain(|k, _| !glob_match(pattern, k));
    }

    /// Drops the entries listed under `tag`.
    pub(crate) fn evict_tag(&self, tag: &str) {
        self.fence.bump_all();
        self.map.retain(|_, v| !v.held.has_tag(tag));
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.fence.bump_all();
        self.map.clear();
    }
}

/// The in-process tier in front of a shared store.
#[derive(Debug)]
pub(crate) struct Tier {
    map: LocalMap,
    max_ttl: Duration,
    hearing: AtomicBool,
}

impl Tier {
    /// A tier bounded to `max_bytes`, keeping copies at most `max_ttl`. It
    /// starts deaf when it must hear of changes through a bus, and serves
    /// once the bus says it hears.
    pub(crate) fn new(max_bytes: u64, max_ttl: Duration, clock: Clock, hearing: bool) -> Self {
        Tier {
            map: LocalMap::new(Bound::Bytes(max_bytes), clock),
            max_ttl,
            hearing: AtomicBool::new(hearing),
        }
    }

    /// The copy at `key`, if the tier hears about changes.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<(Held, u64)> {
        if !self.hearing.load(Ordering::Acquire) {
            return None;
        }
        self.map.get(key)
    }

    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        self.map.stamp(key)
    }

    /// Keeps a copy read from (or just written to) the shared store, for at
    /// most its remaining life and the tier's `max_ttl`.
    pub(crate) fn keep(&self, key: &str, held: Held, expires_ms: u64, stamp: Stamp) -> bool {
        if !self.hearing.load(Ordering::Acquire) {
            return false;
        }
        let cap = self.map.clock.now_ms() + millis(self.max_ttl);
        self.map.keep(key, held, expires_ms.min(cap), stamp)
    }

    pub(crate) fn evict(&self, keys: &[String]) {
        self.map.evict(keys);
    }

    pub(crate) fn evict_matching(&self, pattern: &str) {
        self.map.evict_matching(pattern);
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
    }

    /// The tier can no longer hear about changes: stop serving.
    pub(crate) fn deafen(&self) {
        self.hearing.store(false, Ordering::Release);
        self.map.clear();
    }

    /// The tier hears again: start empty, then serve.
    pub(crate) fn hear(&self) {
        self.map.clear();
        self.hearing.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(v: u32) -> Held {
        Held::new(v, None, 4, None, &[])
    }

    fn value(map: &LocalMap, key: &str) -> Option<u32> {
        map.get(key).and_then(|(h, _)| h.get::<u32>().copied())
    }

    /// A keep that is fenced off (here by an invalidation of another key
    /// of its shard, which removes nothing at `k`) must not leave the copy
    /// it was to replace: that copy is older than the value just written.
    #[test]
    fn a_fenced_off_keep_removes_the_copy_it_would_replace() {
        let map = LocalMap::new(Bound::Entries(100), Clock::System);
        let far = Clock::System.now_ms() + 60_000;
        assert!(map.keep("k", held(1), far, map.stamp("k")));
        let stamp = map.stamp("k");
        map.evict(&[map.fence.shard_mate("k")]);
        assert!(!map.keep("k", held(2), far, stamp));
        assert_eq!(value(&map, "k"), None, "the old copy is gone");
        // A pattern elsewhere voids every stamp: the same holds.
        assert!(map.keep("k", held(3), far, map.stamp("k")));
        let stamp = map.stamp("k");
        map.evict_matching("elsewhere:*");
        assert!(!map.keep("k", held(4), far, stamp));
        assert_eq!(value(&map, "k"), None);
        assert!(map.keep("k", held(5), far, map.stamp("k")));
        assert_eq!(value(&map, "k"), Some(5));
    }
}
