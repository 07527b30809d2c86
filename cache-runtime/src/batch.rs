//! Batch keys: a cached function that takes a collection of ids and returns
//! a map reads every id's entry in one `MGET` and computes only the missing
//! ids (aiocache's `multi_cached`).
//!
//! ```
//! # use std::collections::HashMap;
//! # use cachekit_runtime as cachekit;
//! // With the macros (`cachekit::cached`):
//! // #[cached(ttl = 60, key = "user:{ids}", batch = ids)]
//! // async fn users(ids: Vec<u64>) -> HashMap<u64, String> { ... }
//! ```
//!
//! Each id gets its own entry (`user:1`, `user:2`, ...), shared with any
//! other function whose key template renders the same. Ids the function
//! leaves out of its map are not cached (they are asked again next time).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::codec::{self, Meta};
use crate::engine::{CacheValue, Hooks, PlainOutput, Policy, ResultOutput, Site};
use crate::global::current;
use crate::stack::Stack;
use crate::stats::Count;
use crate::store::{Swap, Write};

/// A map a batch function returns: id → value.
pub trait BatchMap<K>: Sized {
    /// The value stored per id.
    type Value: CacheValue;
    /// The entries, to store.
    fn entries(&self) -> Vec<(&K, &Self::Value)>;
    /// Adds an entry read from the cache.
    fn insert_hit(&mut self, key: K, value: Self::Value);
    /// A map of entries read from the cache.
    fn from_hits(hits: Vec<(K, Self::Value)>) -> Self;
}

impl<K: Eq + Hash, V: CacheValue, S: BuildHasher + Default> BatchMap<K> for HashMap<K, V, S> {
    type Value = V;
    fn entries(&self) -> Vec<(&K, &V)> {
        self.iter().collect()
    }
    fn insert_hit(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn from_hits(hits: Vec<(K, V)>) -> Self {
        hits.into_iter().collect()
    }
}

impl<K: Ord, V: CacheValue> BatchMap<K> for BTreeMap<K, V> {
    type Value = V;
    fn entries(&self) -> Vec<(&K, &V)> {
        self.iter().collect()
    }
    fn insert_hit(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn from_hits(hits: Vec<(K, V)>) -> Self {
        hits.into_iter().collect()
    }
}

/// How a batch function's return type holds its map: a `Result`'s `Ok`, or
/// the map itself.
pub trait BatchOutput<R, K>: Copy {
    /// The map type.
    type Map: BatchMap<K>;
    /// The map, if the call succeeded.
    fn map_mut<'r>(&self, result: &'r mut R) -> Option<&'r mut Self::Map>;
    /// The return value for a map read entirely from the cache.
    fn restore_map(&self, map: Self::Map) -> R;
}

impl<K, M: BatchMap<K>, E> BatchOutput<Result<M, E>, K> for ResultOutput {
    type Map = M;
    fn map_mut<'r>(&self, result: &'r mut Result<M, E>) -> Option<&'r mut M> {
        result.as_mut().ok()
    }
    fn restore_map(&self, map: M) -> Result<M, E> {
        Ok(map)
    }
}

impl<K, M: BatchMap<K>> BatchOutput<M, K> for PlainOutput {
    type Map = M;
    fn map_mut<'r>(&self, result: &'r mut M) -> Option<&'r mut M> {
        Some(result)
    }
    fn restore_map(&self, map: M) -> M {
        map
    }
}

/// The entry point of `#[cached(batch = ...)]`: `ids` and their rendered
/// keys, in the same order; `compute` gets the ids that were not cached.
///
/// Every missing id is fenced like a single miss: a lease marker at its
/// key (all taken concurrently, one round trip), and each value stored by
/// a compare-and-swap against its marker, so an invalidation during the
/// computation wins.
pub async fn get_or_compute_batch<K, R, O, F, Fut>(
    site: &'static Site,
    ids: Vec<K>,
    keys: Vec<String>,
    output: O,
    compute: F,
) -> R
where
    K: Clone + Eq + Hash,
    O: BatchOutput<R, K>,
    F: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = R>,
{
    let started = Instant::now();
    let stack = current().await;
    let p = Policy::<()>::of_site(site, &stack, Vec::new(), Hooks::NONE);
    let computing = |missing: Vec<K>, n: u64| {
        p.counters.add(Count::Computation);
        p.counters.add_n(Count::Miss, n);
        compute(missing)
    };
    if stack.off.is_some() || ids.is_empty() {
        let n = ids.len() as u64;
        return computing(ids, n).await;
    }
    let full = match full_keys(&stack, &p, &keys).await {
        Ok(full) => full,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(error = %e, "cache unavailable; computing the batch");
            let n = ids.len() as u64;
            return computing(ids, n).await;
        }
    };
    let (hits, missing, key_of) = read(&stack, &p, ids, full).await;
    p.counters.add_n(Count::Hit, hits.len() as u64);
    if missing.is_empty() {
        p.counters.latency(true, started.elapsed());
        return output.restore_map(<O::Map as BatchMap<K>>::from_hits(hits));
    }
    let fences = fence(&stack, &p, &missing, &key_of).await;
    let n = missing.len() as u64;
    let mut result = computing(missing, n).await;
    if let Some(map) = output.map_mut(&mut result) {
        store(&stack, &p, map, &hits, &key_of, &fences).await;
        for (id, value) in hits {
            map.insert_hit(id, value);
        }
    }
    p.counters.latency(false, started.elapsed());
    result
}

async fn full_keys(stack: &Stack, p: &Policy<()>, keys: &[String]) -> crate::Result<Vec<String>> {
    let mut full = Vec::with_capacity(keys.len());
    for key in keys {
        full.push(stack.data_key(p.namespace, key).await?);
    }
    Ok(full)
}

/// Reads every id's entry in one round trip: the hits, the missing ids,
/// and each id's store key.
async fn read<K: Clone + Eq + Hash, V: CacheValue>(
    stack: &Stack,
    p: &Policy<()>,
    ids: Vec<K>,
    full: Vec<String>,
) -> (Vec<(K, V)>, Vec<K>, HashMap<K, String>) {
    let raws = match stack.store.get_many(&full).await {
        Ok(raws) => raws,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(error = %e, "cache read failed; computing the batch");
            vec![None; full.len()]
        }
    };
    let mut hits = Vec::new();
    let mut missing = Vec::new();
    let mut key_of: HashMap<K, String> = HashMap::with_capacity(ids.len());
    for ((id, key), raw) in ids.into_iter().zip(full).zip(raws) {
        if key_of.contains_key(&id) {
            continue; // the same id twice
        }
        let decoded = raw.filter(|raw| !codec::is_lease(raw)).and_then(|raw| {
            match stack
                .envelope
                .decode(&key, &raw)
                .and_then(|e| e.value(p.knobs.format.codec))
            {
                Ok(v) => Some(v),
                Err(e) => {
                    p.counters.add(Count::DecodeFailure);
                    tracing::debug!(key, error = %e, "undecodable cache entry; recomputing");
                    None
                }
            }
        });
        match decoded {
            Some(v) => hits.push((id.clone(), v)),
            None => missing.push(id.clone()),
        }
        key_of.insert(id, key);
    }
    (hits, missing, key_of)
}

/// How each missing id's store is fenced.
enum BatchFence {
    /// A lease marker this call put at the key.
    Marker(Bytes),
    /// In process: a registered stamp of the embedded store.
    Ticket(crate::fence::Ticket),
    /// The marker could not be put (another caller's, or the store
    /// failed): the value is returned, not stored.
    None,
}

async fn fence<K: Eq + Hash>(
    stack: &Stack,
    p: &Policy<()>,
    missing: &[K],
    key_of: &HashMap<K, String>,
) -> HashMap<String, BatchFence> {
    let keys: Vec<&String> = missing.iter().filter_map(|id| key_of.get(id)).collect();
    if let Some(memory) = &stack.memory {
        return keys
            .into_iter()
            .map(|k| (k.clone(), BatchFence::Ticket(memory.begin(k, &[]))))
            .collect();
    }
    let lease_ttl = stack.lease_ttl(p.lock);
    let taken = join_all(keys.iter().map(|key| async move {
        let marker = codec::lease_marker();
        let write = Write::new((*key).clone(), marker.clone(), lease_ttl);
        match stack.store.set_nx(&write).await {
            Ok(true) => ((*key).clone(), BatchFence::Marker(marker)),
            _ => ((*key).clone(), BatchFence::None),
        }
    }))
    .await;
    taken.into_iter().collect()
}

/// Stores the computed entries whose fence still holds.
async fn store<K: Eq + Hash, M: BatchMap<K>>(
    stack: &Stack,
    p: &Policy<()>,
    map: &M,
    hits: &[(K, M::Value)],
    key_of: &HashMap<K, String>,
    fences: &HashMap<String, BatchFence>,
) {
    let mut writes = Vec::new();
    for (id, value) in map.entries() {
        let Some(key) = key_of.get(id) else { continue };
        if hits.iter().any(|(hit, _)| hit == id) {
            continue;
        }
        match p
            .knobs
            .format
            .codec
            .encode_checked(value)
            .and_then(|payload| {
                stack
                    .envelope
                    .frame(key, payload, p.knobs.format, &Meta::NONE)
            }) {
            Ok(raw) => writes.push((key, raw)),
            Err(e) => crate::engine::unstorable(p.counters, p.site, key, &e.to_string()),
        }
    }
    let stored = join_all(writes.into_iter().map(|(key, raw)| async move {
        let swap = Swap::set(raw, p.ttl);
        let stored = match fences.get(key) {
            Some(BatchFence::Marker(marker)) => stack.store.compare_and_swap(key, marker, swap).await,
            Some(BatchFence::Ticket(ticket)) => {
                let Swap::Set { value, ttl, .. } = swap else { unreachable!() };
                stack.memory.as_ref().map_or(Ok(false), |m| m.put_bytes(key, value, ttl, ticket.stamp))
            }
            _ => Ok(false),
        };
        stored.inspect_err(|e| {
            tracing::warn!(key, error = %e, "cache write of a batch entry failed; value returned uncached");
        })
    }))
    .await;
    for outcome in stored {
        match outcome {
            Ok(true) => {}
            Ok(false) => p.counters.add(Count::Fenced),
            Err(_) => p.counters.add(Count::Error),
        }
    }
    // Markers whose id the computation left out are released.
    for (key, fence) in fences {
        if let BatchFence::Marker(marker) = fence
            && !map
                .entries()
                .iter()
                .any(|(id, _)| key_of.get(*id) == Some(key))
        {
            let _ = stack
                .store
                .compare_and_swap(key, marker, Swap::Delete)
                .await;
        }
    }
}
