//! Values held in process, decoded: what the embedded store, the tier in
//! front of a shared store, and process-scope functions keep. A hit on any
//! of them is a lookup, a downcast and a clone of the value; nothing is
//! deserialized.
//!
//! [`LocalMap`] is the bounded map (moka) behind the tier and process
//! scope, fenced (see `fence`) so that a computation or a fill that raced
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache as Moka;

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

/// Moka's expiry in real time, to free memory; liveness is decided by the
/// map's clock on each read.
struct UntilDeadline(Clock);

impl moka::Expiry<String, Slot> for UntilDeadline {
    fn expire_after_create(&self, _: &String, v: &Slot, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            v.expires_ms.saturating_sub(self.0.now_ms()),
        ))
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            v.expires_ms.saturating_sub(self.0.now_ms()),
        ))
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

/// A bounded, fenced map of held values.
pub(crate) struct LocalMap {
    map: Moka<String, Slot>,
    fence: Fence,
    clock: Clock,
}

impl fmt::Debug for LocalMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMap")
            .field("entries", &self.map.entry_count())
            .finish()
    }
}

impl LocalMap {
    pub(crate) fn new(bound: Bound, clock: Clock) -> Self {
        let builder = Moka::builder()
            .expire_after(UntilDeadline(clock))
            .support_invalidation_closures();
        let map = match bound {
            Bound::Bytes(max) => builder
                .max_capacity(max)
                .weigher(|k: &String, v: &Slot| {
                    u32::try_from(k.len() + crate::store::ENTRY_OVERHEAD)
                        .unwrap_or(u32::MAX)
                        .saturating_add(v.held.weight())
                })
                .build(),
            Bound::Entries(max) => builder.max_capacity(max).build(),
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
        (slot.expires_ms > self.clock.now_ms()).then_some((slot.held, slot.expires_ms))
    }

    /// A stamp for a fill or computation of `key` about to start.
    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        self.fence.stamp(key)
    }

    /// Keeps `held` until `expires_ms`, unless `key` was invalidated since
    /// `stamp`. Returns whether it did.
    pub(crate) fn keep(&self, key: &str, held: Held, expires_ms: u64, stamp: Stamp) -> bool {
        if expires_ms <= self.clock.now_ms() || !self.fence.current(stamp) {
            return false;
        }
        self.map.insert(key.to_owned(), Slot { held, expires_ms });
        // An invalidation between the check and the insert: undo.
        if !self.fence.current(stamp) {
            self.map.invalidate(key);
            return false;
        }
        true
    }

    /// Removes `key`; returns whether it held a live value.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.fence.bump(key);
        let now = self.clock.now_ms();
        self.map.remove(key).is_some_and(|s| s.expires_ms > now)
    }

    /// Drops the copies of `keys`.
    pub(crate) fn evict(&self, keys: &[String]) {
        for key in keys {
            self.fence.bump(key);
            self.map.invalidate(key.as_str());
        }
    }

    /// Drops the copies of keys matching `pattern`.
    pub(crate) fn evict_matching(&self, pattern: &str) {
        self.fence.bump_all();
        let pattern = pattern.to_owned();
        // Registered at once, so no later read returns a matching entry.
        if self
            .map
            .invalidate_entries_if(move |k, _| glob_match(&pattern, k))
            .is_err()
        {
            self.map.invalidate_all();
        }
    }

    /// Drops the entries listed under `tag`.
    pub(crate) fn evict_tag(&self, tag: &str) {
        self.fence.bump_all();
        let tag = tag.to_owned();
        if self
            .map
            .invalidate_entries_if(move |_, v| v.held.has_tag(&tag))
            .is_err()
        {
            self.map.invalidate_all();
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.fence.bump_all();
        self.map.invalidate_all();
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
