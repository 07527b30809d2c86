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

use crate::backend::Write;
use crate::cached::{CacheValue, PlainOutput, ResultOutput, Site};
use crate::global::runtime;
use crate::stats::Count;

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
    let rt = runtime().await;
    let p = site.policy(&rt, &[]);
    let computing = |missing: Vec<K>, n: u64| {
        p.counters.add(Count::Computation);
        p.counters.add_n(Count::Miss, n);
        compute(missing)
    };
    if !rt.config.enabled || ids.is_empty() {
        let n = ids.len() as u64;
        return computing(ids, n).await;
    }
    let mut full = Vec::with_capacity(keys.len());
    for key in &keys {
        match rt.data_key(p.namespace, key).await {
            Ok(k) => full.push(k),
            Err(e) => {
                p.counters.add(Count::Error);
                tracing::warn!(error = %e, "cache unavailable; computing the batch");
                let n = ids.len() as u64;
                return computing(ids, n).await;
            }
        }
    }
    let store = rt.store(p.local);
    let raws = match store.get_many(&full).await {
        Ok(raws) => raws,
        Err(e) => {
            p.counters.add(Count::Error);
            tracing::warn!(error = %e, "cache read failed; computing the batch");
            vec![None; full.len()]
        }
    };
    let mut hits: Vec<(K, <O::Map as BatchMap<K>>::Value)> = Vec::new();
    let mut missing: Vec<K> = Vec::new();
    let mut key_of: HashMap<K, String> = HashMap::with_capacity(ids.len());
    for ((id, key), raw) in ids.into_iter().zip(full).zip(raws) {
        if key_of.contains_key(&id) {
            continue; // the same id twice
        }
        let decoded = raw.and_then(|raw| {
            match rt
                .envelope
                .decode(&key, &raw)
                .and_then(|e| e.value(p.format.codec))
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
    p.counters.add_n(Count::Hit, hits.len() as u64);
    if missing.is_empty() {
        p.counters.latency(true, started.elapsed());
        return output.restore_map(<O::Map as BatchMap<K>>::from_hits(hits));
    }
    let n = missing.len() as u64;
    let mut result = computing(missing, n).await;
    if let Some(map) = output.map_mut(&mut result) {
        let mut writes = Vec::new();
        for (id, value) in map.entries() {
            let Some(key) = key_of.get(id) else { continue };
            if hits.iter().any(|(hit, _)| hit == id) {
                continue;
            }
            match p.format.codec.encode(value).and_then(|payload| {
                rt.envelope
                    .frame(key, payload, p.format, &crate::codec::Meta::NONE)
            }) {
                Ok(raw) => writes.push(Write::new(key.clone(), raw, p.ttl)),
                Err(e) => {
                    p.counters.add(Count::Error);
                    tracing::warn!(key, error = %e, "value cannot be encoded; not cached");
                }
            }
        }
        if let Err(e) = store.write(&writes).await {
            p.counters.add(Count::Error);
            tracing::warn!(error = %e, "cache write of a batch failed; values returned uncached");
        }
        for (id, value) in hits {
            map.insert_hit(id, value);
        }
    }
    p.counters.latency(false, started.elapsed());
    result
}
