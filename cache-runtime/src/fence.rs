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
//! The remote stores fence with leases instead (see `engine`): a marker at
//! the key, taken at the miss, that every kind of invalidation deletes.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: usize = 256;

/// Version counters, by key shard, and an epoch.
#[derive(Debug)]
pub(crate) struct Fence {
    versions: Box<[AtomicU64]>,
    epoch: AtomicU64,
    hasher: RandomState,
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

    /// Voids the stamps of `key` (call before removing it).
    pub(crate) fn bump(&self, key: &str) {
        self.versions[self.shard(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Voids every stamp (call before removing by pattern, tag, namespace).
    pub(crate) fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_void_stamps() {
        let fence = Fence::default();
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
}
