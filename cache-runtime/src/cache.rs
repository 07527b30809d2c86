//! The namespaced cache service: what application code calls directly.
//!
//! ```no_run
//! use std::time::Duration;
//! use cachekit_runtime::Cache;
//!
//! static SIGNUP: Cache = Cache::new("signup", Duration::from_secs(300));
//!
//! # async fn f() -> Result<(), cachekit_runtime::Error> {
//! SIGNUP.set("session-1", &serde_json::json!({"email": "ada@example.com"})).await?;
//! SIGNUP.update("session-1", serde_json::json!({"step": 2})).await?;
//! let attempts = SIGNUP.increment("attempts:ada", 1).await?;
//! # Ok(()) }
//! ```
//!
//! Keys are `namespace:key` on the store (`namespace#G:key` after `G`
//! namespace invalidations). Every method returns a [`Result`]: unlike cached
//! functions, the explicit API lets the caller see a failure. An entry that
//! cannot be decoded as the requested type reads as absent (and is counted),
//! never as an error.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::Event;
use crate::codec::{self, Format, Meta};
use crate::engine::{self, CacheValue, Policy};
use crate::error::{Error, Result};
use crate::global::current;
use crate::key;
use crate::stack::Stack;
use crate::stats::{Count, Counters};
use crate::store::{KeyTtl, Swap, Write};

use crate::options::CacheOptions;

/// Attempts of an optimistic `update` before it reports contention.
const UPDATE_ATTEMPTS: usize = 1_000;

/// A namespaced handle on the global cache, with a default TTL.
///
/// `Cache::new` is a `const fn`, so a handle can be a `static`. The namespace
/// holds letters, digits, `_`, `.` and `-`; it is checked on each call.
#[derive(Debug)]
pub struct Cache {
    namespace: &'static str,
    default_ttl: Duration,
    counters: OnceLock<&'static Counters>,
}

impl Clone for Cache {
    fn clone(&self) -> Self {
        Cache {
            namespace: self.namespace,
            default_ttl: self.default_ttl,
            counters: self.counters.clone(),
        }
    }
}

/// The context of one call: the stack, the namespace's current segment,
/// and the counters to count in.
struct Scope {
    stack: Arc<Stack>,
    segment: Arc<str>,
    counters: &'static Counters,
}

impl Scope {
    fn key(&self, key: &str) -> String {
        self.stack.layout.data_key(Some(&self.segment), key)
    }

    /// The key relative to the namespace, if `full` is one of its current keys.
    fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        full.strip_prefix(self.stack.layout.prefix())?
            .strip_prefix(&*self.segment)?
            .strip_prefix(':')
    }

    /// Follows a change to keys in this process's copies. Other processes
    /// hear of it by tracking (the keys changed in the shared store).
    fn changed(&self, keys: Vec<String>) {
        if !keys.is_empty() {
            self.stack.apply(&Event::Keys(keys));
        }
    }

    fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if result.as_ref().is_err_and(Error::is_transient) {
            self.counters.add(Count::Error);
        }
        result
    }
}

impl Cache {
    /// A handle on `namespace` whose entries live `default_ttl` unless told
    /// otherwise.
    pub const fn new(namespace: &'static str, default_ttl: Duration) -> Self {
        Cache {
            namespace,
            default_ttl,
            counters: OnceLock::new(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// The default TTL.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    fn counters(&self) -> &'static Counters {
        self.counters
            .get_or_init(|| Counters::for_namespace(self.namespace))
    }

    async fn scope(&self) -> Result<Scope> {
        key::validate_namespace(self.namespace)?;
        if self.default_ttl.is_zero() {
            return Err(Error::invalid(format!(
                "the default TTL of namespace `{}` is zero",
                self.namespace
            )));
        }
        let stack = current().await;
        stack.check()?;
        let counters = stack.counters(self.counters());
        let segment = stack
            .namespace_segment(self.namespace)
            .await
            .inspect_err(|_| counters.add(Count::Error))?;
        Ok(Scope {
            stack,
            segment,
            counters,
        })
    }

    fn check_ttl(ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return Err(Error::invalid("a TTL must be positive"));
        }
        Ok(())
    }

    /// Stores `value` under `key` for the default TTL.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.set_with_ttl(key, value, self.default_ttl).await
    }

    /// Stores `value` under `key` for `ttl`.
    pub async fn set_with_ttl<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        key::validate_key("key", key)?;
        Self::check_ttl(ttl)?;
        let scope = self.scope().await?;
        let full = scope.key(key);
        let raw = scope
            .stack
            .envelope
            .encode(&full, value, Format::JSON, &Meta::NONE)?;
        let write = Write::new(full.clone(), raw, ttl);
        scope.counted(scope.stack.store.write(std::slice::from_ref(&write)).await)?;
        scope.changed(vec![full]);
        Ok(())
    }

    /// Reads the value under `key`. `None` if it is absent, expired, or
    /// cannot be decoded as a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        key::validate_key("key", key)?;
        let scope = self.scope().await?;
        let full = scope.key(key);
        let raw = scope.counted(scope.stack.store.get(&full).await)?;
        Ok(self.decode(&scope, &full, raw.as_deref()))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        scope: &Scope,
        full: &str,
        raw: Option<&[u8]>,
    ) -> Option<T> {
        // A lease marker is a computation under way: nothing yet.
        let Some(raw) = raw.filter(|raw| !codec::is_lease(raw)) else {
            scope.counters.add(Count::Miss);
            return None;
        };
        let corrupted = scope.stack.faults.as_ref().is_some_and(|f| f.corrupts());
        let decoded = if corrupted {
            Err(Error::Codec("corrupted read (injected)".into()))
        } else {
            scope
                .stack
                .envelope
                .decode(full, raw)
                .and_then(|e| e.value(crate::Codec::Json))
        };
        match decoded {
            Ok(value) => {
                scope.counters.add(Count::Hit);
                Some(value)
            }
            Err(e) => {
                scope.counters.add(Count::DecodeFailure);
                scope.counters.add(Count::Miss);
                tracing::debug!(key = full, error = %e, "undecodable entry read as absent");
                None
            }
        }
    }

    /// Deletes `key`. Returns whether it existed. The key leaves its
    /// indexes too: they never return a deleted entry.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        key::validate_key("key", key)?;
        let scope = self.scope().await?;
        let full = scope.key(key);
        let deleted =
            scope.counted(scope.stack.store.delete(std::slice::from_ref(&full)).await)? > 0;
        scope.changed(vec![full]);
        Ok(deleted)
    }

    /// Deletes many keys in one round trip (per slot on a cluster). Returns
    /// how many existed.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        for k in keys {
            key::validate_key("key", k.as_ref())?;
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let scope = self.scope().await?;
        let full: Vec<String> = keys.iter().map(|k| scope.key(k.as_ref())).collect();
        let deleted = scope.counted(scope.stack.store.delete(&full).await)?;
        scope.changed(full);
        Ok(deleted)
    }

    /// Whether `key` holds a live entry (a computation under way holds
    /// none yet).
    pub async fn exists(&self, key: &str) -> Result<bool> {
        key::validate_key("key", key)?;
        let scope = self.scope().await?;
        let raw = scope.counted(scope.stack.store.get(&scope.key(key)).await)?;
        Ok(raw.is_some_and(|raw| !codec::is_lease(&raw)))
    }

    /// Merges the fields of `patch` (a JSON object) into the JSON object
    /// stored under `key`, atomically, and resets its TTL to the default.
    /// Returns `false` if `key` is absent.
    ///
    /// The merge is optimistic: read, merge, and compare-and-swap, retried
    /// on conflict, so concurrent updates of different fields all land.
    /// Numbers keep their exact value (no float round trip).
    pub async fn update(&self, key: &str, patch: serde_json::Value) -> Result<bool> {
        self.merge(key, patch, Some(self.default_ttl)).await
    }

    /// Like [`Cache::update`], but the entry keeps the time to live it has
    /// (for entries that must expire at a fixed moment, such as a session).
    pub async fn update_keeping_ttl(&self, key: &str, patch: serde_json::Value) -> Result<bool> {
        self.merge(key, patch, None).await
    }

    /// Merges `patch` into the object at `key` with a compare-and-swap loop;
    /// the entry then lives `ttl`, or keeps its TTL.
    async fn merge(
        &self,
        key: &str,
        patch: serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        key::validate_key("key", key)?;
        let serde_json::Value::Object(patch) = patch else {
            return Err(Error::invalid("an update patch must be a JSON object"));
        };
        let scope = self.scope().await?;
        let full = scope.key(key);
        let backend = &scope.stack.store;
        for attempt in 0..UPDATE_ATTEMPTS {
            let Some(raw) = scope
                .counted(backend.get(&full).await)?
                .filter(|raw| !codec::is_lease(raw))
            else {
                return Ok(false);
            };
            let entry = scope.stack.envelope.decode(&full, &raw)?;
            let mut current: serde_json::Value = entry.value(crate::Codec::Json)?;
            let Some(object) = current.as_object_mut() else {
                return Err(Error::Codec(format!(
                    "the entry under `{key}` is not a JSON object"
                )));
            };
            for (field, value) in &patch {
                object.insert(field.clone(), value.clone());
            }
            let updated =
                scope
                    .stack
                    .envelope
                    .encode(&full, &current, Format::JSON, &entry.meta)?;
            let swap = match ttl {
                Some(ttl) => Swap::set(updated, ttl),
                None => Swap::SetKeepTtl(updated),
            };
            if scope.counted(backend.compare_and_swap(&full, &raw, swap).await)? {
                scope.changed(vec![full]);
                return Ok(true);
            }
            // Lost a race: back off a little, with jitter, and merge again.
            let bound = Duration::from_micros(50 * (1 << attempt.min(8)) as u64);
            tokio::time::sleep(bound.mul_f64(fastrand::f64())).await;
        }
        Err(Error::Unavailable(format!(
            "update of `{key}` kept conflicting with concurrent writes ({UPDATE_ATTEMPTS} attempts)"
        )))
    }

    /// Sets the TTL of `key`. Returns `false` if it is absent.
    pub async fn set_ttl(&self, key: &str, ttl: Duration) -> Result<bool> {
        key::validate_key("key", key)?;
        Self::check_ttl(ttl)?;
        let scope = self.scope().await?;
        scope.counted(scope.stack.store.expire(&scope.key(key), ttl).await)
    }

    /// The remaining TTL of `key`; `None` if it is absent (or never expires).
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        key::validate_key("key", key)?;
        let scope = self.scope().await?;
        Ok(
            match scope.counted(scope.stack.store.ttl(&scope.key(key)).await)? {
                KeyTtl::Expires(d) => Some(d),
                KeyTtl::Missing | KeyTtl::Persistent => None,
            },
        )
    }

    /// Adds `by` to the counter under `key` and returns its new value,
    /// atomically. A counter created by this call lives for the default TTL
    /// (a rate-limit window): it is not extended by later increments.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        key::validate_key("key", key)?;
        let scope = self.scope().await?;
        let full = scope.key(key);
        let value = scope.counted(
            scope
                .stack
                .store
                .incr(&full, by, Some(self.default_ttl))
                .await,
        )?;
        scope.changed(vec![full]);
        Ok(value)
    }

    /// Deletes every entry and index of this namespace (all generations),
    /// and nothing else. Returns how many keys were deleted.
    pub async fn clear(&self) -> Result<u64> {
        let scope = self.scope().await?;
        let mut deleted = 0;
        for pattern in scope.stack.layout.namespace_patterns(self.namespace) {
            deleted += scope.counted(scope.stack.store.delete_matching(&pattern).await)?;
            scope.stack.announce(Event::Pattern(pattern)).await;
        }
        scope.counters.add(Count::Invalidation);
        Ok(deleted)
    }

    /// Stores `value` under `key` and lists it in the given secondary
    /// indexes (`(name, value)` pairs), atomically with the value write.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # static SESSIONS: cachekit_runtime::Cache = cachekit_runtime::Cache::new("sessions", Duration::from_secs(60));
    /// # async fn f() -> Result<(), cachekit_runtime::Error> {
    /// SESSIONS.set_indexed("s1", &"...", &[("user", "alice")]).await?;
    /// let alice: Vec<String> = SESSIONS.get_by_index("user", "alice").await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_indexed<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        indexes: &[(&str, &str)],
    ) -> Result<()> {
        key::validate_key("key", key)?;
        for (name, v) in indexes {
            key::validate_key("index name", name)?;
            key::validate_key("index value", v)?;
        }
        let scope = self.scope().await?;
        let full = scope.key(key);
        let index_keys: Vec<String> = indexes
            .iter()
            .map(|(name, v)| scope.stack.layout.index_key(self.namespace, name, v))
            .collect();
        let meta = Meta {
            indexes: index_keys.clone(),
            ..Meta::NONE
        };
        let raw = scope
            .stack
            .envelope
            .encode(&full, value, Format::JSON, &meta)?;
        let write = Write {
            key: full.clone(),
            value: raw,
            ttl: self.default_ttl,
            member_of: index_keys,
        };
        scope.counted(scope.stack.store.write(std::slice::from_ref(&write)).await)?;
        scope.changed(vec![full]);
        Ok(())
    }

    /// The live entries listed in index `(name, value)`, decoded as `T`.
    pub async fn get_by_index<T: DeserializeOwned>(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<T>> {
        Ok(self
            .indexed(name, value)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// The keys (relative to the namespace) listed in index `(name, value)`
    /// whose entries are live.
    pub async fn keys_by_index(&self, name: &str, value: &str) -> Result<Vec<String>> {
        Ok(self
            .indexed::<serde::de::IgnoredAny>(name, value)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Reads an index and checks each member against its entry: an entry
    /// that is gone, from an older generation, or no longer listed in this
    /// index is pruned, never returned.
    async fn indexed<T: DeserializeOwned>(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<(String, T)>> {
        key::validate_key("index name", name)?;
        key::validate_key("index value", value)?;
        let scope = self.scope().await?;
        let index_key = scope.stack.layout.index_key(self.namespace, name, value);
        let backend = &scope.stack.store;
        let members = scope.counted(backend.members(&index_key).await)?;
        let (current, old): (Vec<String>, Vec<String>) = members
            .into_iter()
            .partition(|m| scope.relative(m).is_some());
        let raws = if current.is_empty() {
            Vec::new()
        } else {
            scope.counted(backend.get_many(&current).await)?
        };
        let mut found = Vec::new();
        let mut gone = old;
        for (full, raw) in current.into_iter().zip(raws) {
            let entry = raw
                .as_deref()
                .and_then(|raw| scope.stack.envelope.decode(&full, raw).ok())
                .filter(|entry| entry.meta.indexes.contains(&index_key));
            let Some(entry) = entry else {
                gone.push(full);
                continue;
            };
            // A listed entry that is not a `T` is skipped, not pruned: reading
            // an index as another type must not drop its members.
            match entry.value::<T>(crate::Codec::Json) {
                Ok(v) => {
                    let relative = scope.relative(&full).expect("partitioned").to_owned();
                    found.push((relative, v));
                }
                Err(_) => scope.counters.add(Count::DecodeFailure),
            }
        }
        if !gone.is_empty() {
            // Pruning is housekeeping: a failure here changes no answer.
            let _ = backend.remove_members(&index_key, &gone).await;
        }
        Ok(found)
    }

    /// Reads many keys in one round trip (per node on a cluster). Absent
    /// and undecodable entries are `None`, in the order of `keys`:
    /// `SIGNUP.get_many::<Session>(&["a", "b"])`.
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<Vec<Option<T>>> {
        for k in keys {
            key::validate_key("key", k.as_ref())?;
        }
        let scope = self.scope().await?;
        let full: Vec<String> = keys.iter().map(|k| scope.key(k.as_ref())).collect();
        let raws = scope.counted(scope.stack.store.get_many(&full).await)?;
        Ok(full
            .iter()
            .zip(raws)
            .map(|(k, raw)| self.decode(&scope, k, raw.as_deref()))
            .collect())
    }

    /// Stores many values for the default TTL in one round trip (pipelined).
    pub async fn set_many<K: AsRef<str>, V: Serialize>(&self, items: &[(K, V)]) -> Result<()> {
        for (k, _) in items {
            key::validate_key("key", k.as_ref())?;
        }
        let scope = self.scope().await?;
        let writes = items
            .iter()
            .map(|(k, v)| {
                let full = scope.key(k.as_ref());
                let raw = scope
                    .stack
                    .envelope
                    .encode(&full, v, Format::JSON, &Meta::NONE)?;
                Ok(Write::new(full, raw, self.default_ttl))
            })
            .collect::<Result<Vec<_>>>()?;
        scope.counted(scope.stack.store.write(&writes).await)?;
        scope.changed(writes.into_iter().map(|w| w.key).collect());
        Ok(())
    }

    /// Returns the value under `key`, or computes it, stores it for `ttl`
    /// and returns it: the engine of `#[cached]`, for keys built at run
    /// time. Concurrent callers of one key share one computation. A cache
    /// failure never fails the call (it computes); the error is only for an
    /// invalid key or TTL. [`Cache::get_or_compute_with`] takes every other
    /// option of `#[cached]`.
    pub async fn get_or_compute<T, F, Fut>(&self, key: &str, ttl: Duration, compute: F) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let (stack, policy) = self.plain(key, ttl).await?;
        Ok(engine::run(
            stack,
            policy,
            key.to_owned(),
            engine::PlainOutput,
            engine::Serde,
            engine::Inline(compute()),
        )
        .await)
    }

    /// Like [`Cache::get_or_compute`] for a fallible computation: `Err` is
    /// returned and never stored.
    pub async fn try_get_or_compute<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<T, E>
    where
        T: CacheValue,
        E: From<Error> + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (stack, policy) = self.plain(key, ttl).await?;
        engine::run(
            stack,
            policy,
            key.to_owned(),
            engine::ResultOutput,
            engine::Serde,
            engine::Inline(compute()),
        )
        .await
    }

    async fn plain<V>(&self, key: &str, ttl: Duration) -> Result<(Arc<Stack>, Policy<V>)> {
        key::validate_key("key", key)?;
        key::validate_namespace(self.namespace)?;
        Self::check_ttl(ttl)?;
        let stack = current().await;
        let counters = stack.counters(self.counters());
        let policy = Policy::plain(counters, ttl, Some(self.namespace), &stack.config);
        Ok((stack, policy))
    }

    /// Returns the value under `key`, or computes it, with every option of
    /// `#[cached]`: stale serving and early refresh in the background,
    /// fail-safe, soft and hard timeouts, locks, the in-process tier, tags,
    /// jitter, and hooks on the value. The computation owns its inputs
    /// (`move` them in), since it may run on its own task. Without a
    /// fallback value a hard timeout does not abandon the computation here;
    /// use [`Cache::try_get_or_compute_with`] to get an error instead.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use cachekit_runtime::{Cache, CacheOptions};
    /// # static QUOTES: Cache = Cache::new("quotes", Duration::from_secs(5));
    /// # async fn fetch(symbol: String) -> f64 { 1.0 }
    /// # async fn f(symbol: String) {
    /// let options = CacheOptions::new(Duration::from_secs(5))
    ///     .stale(Duration::from_secs(30))
    ///     .tags(["quotes"]);
    /// let key = format!("quote:{symbol}");
    /// let price: f64 = QUOTES
    ///     .get_or_compute_with(&key, &options, move || fetch(symbol))
    ///     .await;
    /// # }
    /// ```
    pub async fn get_or_compute_with<T, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions<T>,
        compute: F,
    ) -> T
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.run_with(key, options, engine::PlainOutput, compute)
            .await
    }

    /// Like [`Cache::get_or_compute_with`] for a fallible computation:
    /// `Err` is never stored (fail-safe serves the last good value in its
    /// place, if it keeps one). A computation abandoned at its hard timeout
    /// without a fallback returns `Err` of [`Error::Timeout`].
    pub async fn try_get_or_compute_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions<T>,
        compute: F,
    ) -> Result<T, E>
    where
        T: CacheValue,
        E: From<Error> + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let output = engine::TimedAs(engine::ResultOutput);
        self.run_with(key, options, output, compute).await
    }

    /// Like [`Cache::try_get_or_compute_with`], storing an `Err` for the
    /// options' `cache_err` TTL (negative caching of a failing lookup): the
    /// error type is serde too.
    pub async fn try_get_or_compute_with_err<T, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions<T>,
        compute: F,
    ) -> Result<T, E>
    where
        T: CacheValue,
        E: CacheValue + From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let options = options.without_hooks::<Result<T, E>>();
        let output = engine::TimedAs(engine::ErrOutput);
        self.run_with(key, &options, output, compute).await
    }

    /// Runs a computation with options through the engine, or uncached if
    /// the options or the key are invalid.
    async fn run_with<R, O, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions<O::Value>,
        output: O,
        compute: F,
    ) -> R
    where
        R: 'static,
        O: engine::Output<R>,
        O::Value: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (stack, policy) = match self.with_options(key, options).await {
            Ok(ready) => ready,
            Err(()) => return compute().await,
        };
        let computation = engine::Owned(compute);
        engine::run(
            stack,
            policy,
            key.to_owned(),
            output,
            engine::Serde,
            computation,
        )
        .await
    }

    /// The stack and policy of a call with options, or `Err` (logged and
    /// counted) if they are invalid: the call then computes uncached.
    async fn with_options<V>(
        &self,
        key: &str,
        options: &CacheOptions<V>,
    ) -> std::result::Result<(Arc<Stack>, Policy<V>), ()> {
        let stack = current().await;
        let counters = stack.counters(self.counters());
        match options.policy(counters, Some(self.namespace), &stack, key) {
            Ok(policy) => Ok((stack, policy)),
            Err(e) => {
                tracing::warn!(key, error = %e, "invalid cache key or options; computing uncached");
                counters.add(Count::Error);
                Err(())
            }
        }
    }
}
