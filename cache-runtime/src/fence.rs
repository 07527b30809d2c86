//! Stale-set fencing for in-process maps (the embedded store, the tier,
//! process-scope entries): a computation that started before an
//! invalidation of its key never stores its result after it.
//!
//! Each key hashes to one of a set of version counters. Invalidating a key
//! bumps its shard's version; invalidating by pattern, tag or namespace (or
//! a resync) bumps the epoch, which voids every stamp. A computation takes a
//! [`Stamp`] before it reads its source, and its result is kept only if the
//! stamp is still current: checked inside the map's atomic insert, and again
//! after it (an invalidation that bumped between the check and the insert
//! then removes the insert, or the insert is undone). The invalidation
//! bumps first and removes after, so one of the two always sees the other.
//!
//! A computation can also register while it runs ([`Fence::begin`]): then a
//! pattern or tag invalidation voids exactly the registered computations it
//! names ([`Fence::void_matching`], [`Fence::void_tagged`]) instead of all of
//! them. The embedded store does this, so that a pattern invalidation of
//! `users:*` does not make every computation under way store nothing.
//!
//! The remote stores fence with leases instead (see `engine`): a marker at
//! the key, taken at the miss, that every kind of invalidation deletes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::key::glob_match;

const SHARDS: usize = 256;

/// Version counters, by key shard, and an epoch.
#[derive(Debug)]
pub(crate) struct Fence {
    versions: Box<[AtomicU64]>,
    epoch: AtomicU64,
    hasher: RandomState,
    /// Registered computations: key → (how many, the tag keys they list).
    running: Mutex<HashMap<String, (usize, Vec<String>)>>,
}

/// A registered computation: its stamp, and its registration, which ends
/// when the ticket is dropped (after the store, or when it is cancelled).
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) stamp: Stamp,
    fence: Arc<Fence>,
    key: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut running = self.fence.running.lock().expect("fence registry");
        if let Some((count, _)) = running.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

/// What a computation saw before it read its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    shard: usize,
    version: u64,
    epoch: u64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            versions: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            hasher: RandomState::new(),
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Fence {
    fn shard(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    /// A stamp for `key`, now.
    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        let shard = self.shard(key);
        Stamp {
            shard,
            version: self.versions[shard].load(Ordering::Acquire),
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    /// Whether nothing that voids `stamp` happened since it was taken.
    pub(crate) fn current(&self, stamp: Stamp) -> bool {
        self.versions[stamp.shard].load(Ordering::Acquire) == stamp.version
            && self.epoch.load(Ordering::Acquire) == stamp.epoch
    }

    /// Another key that shares `key`'s shard (for tests of a voided stamp).
    #[cfg(test)]
    pub(crate) fn shard_mate(&self, key: &str) -> String {
        (0..)
            .map(|i| format!("{key}~{i}"))
            .find(|k| self.shard(k) == self.shard(key))
            .expect("a key in the same shard")
    }

    /// Voids the stamps of `key` (call before removing it).
    pub(crate) fn bump(&self, key: &str) {
        self.versions[self.shard(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Voids every stamp (call before removing by pattern, tag, namespace).
    pub(crate) fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Registers a computation of `key` (listed under `tags`), then stamps
    /// it: an invalidation that looks after this sees it.
    pub(crate) fn begin(self: &Arc<Self>, key: &str, tags: &[String]) -> Ticket {
        {
            let mut running = self.running.lock().expect("fence registry");
            let entry = running
                .entry(key.to_owned())
                .or_insert_with(|| (0, tags.to_vec()));
            entry.0 += 1;
        }
        Ticket {
            stamp: self.stamp(key),
            fence: self.clone(),
            key: key.to_owned(),
        }
    }

    /// Voids the registered computations of keys matching `pattern`.
    pub(crate) fn void_matching(&self, pattern: &str) {
        for key in self.running.lock().expect("fence registry").keys() {
            if glob_match(pattern, key) {
                self.bump(key);
            }
        }
    }

    /// Voids the registered computations listed under the tag `tag_key`.
    pub(crate) fn void_tagged(&self, tag_key: &str) {
        for (key, (_, tags)) in self.running.lock().expect("fence registry").iter() {
            if tags.iter().any(|t| t == tag_key) {
                self.bump(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_void_stamps() {
        let fence = Arc::new(Fence::default());
        let a = fence.stamp("a");
        assert!(fence.current(a));
        fence.bump("b");
        // Another key voids `a` only if it shares its shard.
        let b = fence.stamp("b");
        fence.bump("a");
        assert!(!fence.current(a));
        let a = fence.stamp("a");
        fence.bump_all();
        assert!(!fence.current(a) && !fence.current(b));
    }

    #[test]
    fn patterns_and_tags_void_the_computations_they_name() {
        let fence = Arc::new(Fence::default());
        // Keys in different shards (a shared shard would void both).
        let (a, b) = (0..)
            .map(|i| (format!("user:{i}"), format!("item:{i}")))
            .find(|(a, b)| fence.shard(a) != fence.shard(b))
            .unwrap();
        let ta = fence.begin(&a, &["#tag:t".into()]);
        let tb = fence.begin(&b, &[]);
        fence.void_matching("item:*");
        assert!(fence.current(ta.stamp) && !fence.current(tb.stamp));
        fence.void_tagged("#tag:t");
        assert!(!fence.current(ta.stamp));
        drop((ta, tb));
        assert!(
            fence.running.lock().unwrap().is_empty(),
            "tickets unregister"
        );
    }
}
