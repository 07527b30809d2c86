//! The global cache: one [`Runtime`] per process, installed by [`init`] or,
//! on first use, from the environment.
//!
//! A `Runtime` owns the backend (wrapped in resilience when it is remote),
//! the key layout, the envelope, the single-flight table and each
//! namespace's generation. Reading the global is a read lock and an `Arc`
//! clone. Calling `init` again replaces it; calls under way finish on the
//! runtime they started with.
//!
//! Processes sharing a store tell each other what changed over pub/sub (see
//! `backend::Event`); the listener is a task on the tokio runtime that
//! installed the cache, restarted on the caller's runtime if that one shuts
//! down.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::backend::{Backend, BoxFuture, Event, MemoryBackend, RedisBackend, TieredBackend};
use crate::codec::Envelope;
use crate::config::{BackendConfig, Config};
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::key::{self, Layout};
use crate::per_thread;
use crate::resilience::{CircuitState, Resilient};

static GLOBAL: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);
static INIT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Bumped each time `GLOBAL` changes.
static INSTALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the global cache, good while no cache was
    /// installed and no tokio runtime ended since it was taken (the ended
    /// runtime may have hosted the listener, which the slow path restarts).
    /// Reading `GLOBAL` and the listener's flag through their locks wrote
    /// two shared cache lines on every cached call, from every core; this
    /// reads two counters that almost never change.
    /// Weak, so that a replaced cache is not kept alive by idle threads.
    static LOCAL: per_thread::Slot<Weak<Runtime>> = const { RefCell::new(None) };
}

fn install(runtime: Arc<Runtime>) {
    *GLOBAL.write().expect("global cache lock") = Some(runtime);
    INSTALLS.fetch_add(1, Ordering::AcqRel);
}

/// Installs the global cache. Succeeds while a configured Redis is
/// unreachable: cached functions compute until it answers, and caching
/// resumes by itself. Fails only on an invalid configuration. Calling it
/// again replaces the cache.
pub async fn init(config: Config) -> Result<()> {
    let _serial = INIT.lock().await;
    let runtime = Runtime::start(config).await?;
    install(runtime);
    Ok(())
}

/// The global cache, initialized from the environment on first use.
pub(crate) async fn runtime() -> Arc<Runtime> {
    let stamp = (
        INSTALLS.load(Ordering::Acquire),
        crate::backend::redis::runtimes_ended(),
    );
    if let Some(rt) = per_thread::get(&LOCAL, stamp).and_then(|rt| rt.upgrade()) {
        return rt;
    }
    let rt = shared_runtime().await;
    per_thread::put(&LOCAL, stamp, Arc::downgrade(&rt));
    rt
}

async fn shared_runtime() -> Arc<Runtime> {
    if let Some(rt) = GLOBAL.read().expect("global cache lock").as_ref() {
        if rt.listener_alive() {
            return rt.clone();
        }
        let rt = rt.clone();
        rt.restart_listener();
        return rt;
    }
    let _serial = INIT.lock().await;
    if let Some(rt) = GLOBAL.read().expect("global cache lock").clone() {
        return rt;
    }
    let runtime = match Config::from_env() {
        Ok(config) => Runtime::start(config).await,
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "cachekit cannot start from the environment; every cached call computes");
        Runtime::broken(e)
    });
    install(runtime.clone());
    runtime
}

/// The configuration of the global cache, if one is installed.
pub fn current_config() -> Option<Config> {
    GLOBAL
        .read()
        .expect("global cache lock")
        .as_ref()
        .map(|rt| rt.config.clone())
}

/// A namespace's generation as this process last saw it.
#[derive(Debug, Clone)]
struct Generation {
    value: u64,
    segment: Arc<str>,
    read_at: Instant,
}

/// The running cache.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) backend: Arc<dyn Backend>,
    /// The in-process tier in front of a shared backend (the backend itself
    /// when every read goes through it).
    pub(crate) tier: Option<Arc<TieredBackend>>,
    pub(crate) layout: Layout,
    pub(crate) envelope: Envelope,
    pub(crate) flights: Flights,
    pub(crate) channel: String,
    generations: RwLock<HashMap<String, Generation>>,
    generation_ttl: Duration,
    listener: RwLock<Arc<AtomicBool>>,
    weak: Weak<Runtime>,
}

impl Runtime {
    async fn start(config: Config) -> Result<Arc<Runtime>> {
        config.validate()?;
        let backend: Arc<dyn Backend> = match config.backend() {
            BackendConfig::Memory => Arc::new(MemoryBackend::new(config.memory_max_bytes)),
            BackendConfig::Redis(url) => {
                let redis = RedisBackend::new(
                    url,
                    config.tls_ca.as_deref(),
                    config.timeout,
                    config.connect_timeout,
                )?;
                Arc::new(Resilient::new(
                    redis,
                    config.timeout,
                    config.retry,
                    config.breaker,
                ))
            }
            BackendConfig::Cluster(urls) => crate::backend::cluster_backend(urls, &config)?,
        };
        let runtime = Self::with_backend(config, backend);
        if runtime.backend.is_shared() {
            // One bounded attempt, so that the first calls find a connection.
            let ping =
                tokio::time::timeout(runtime.config.connect_timeout, runtime.backend.ping()).await;
            match ping {
                Ok(Ok(())) => {
                    tracing::debug!(backend = runtime.backend.name(), "cache backend connected")
                }
                Ok(Err(e)) => {
                    tracing::warn!(backend = runtime.backend.name(), error = %e, "cache backend not reachable yet; cached calls compute until it is")
                }
                Err(_) => tracing::warn!(
                    backend = runtime.backend.name(),
                    "cache backend did not answer in time; cached calls compute until it does"
                ),
            }
        }
        Ok(runtime)
    }

    /// A runtime over any backend (the conformance suite uses this to test
    /// backends side by side).
    pub(crate) fn with_backend(config: Config, backend: Arc<dyn Backend>) -> Arc<Runtime> {
        let layout = Layout::new(config.key_prefix.as_deref());
        let (backend, tier) = if !backend.is_shared() {
            (backend, None)
        } else {
            let tier = Arc::new(TieredBackend::new(backend.clone(), &config.local));
            if config.local.all {
                (tier.clone() as Arc<dyn Backend>, Some(tier))
            } else {
                (backend, Some(tier))
            }
        };
        let generation_ttl = if backend.is_shared() {
            config.namespace_refresh
        } else {
            Duration::MAX
        };
        let runtime = Arc::new_cyclic(|weak| Runtime {
            envelope: Envelope::new(config.integrity.clone()),
            channel: layout.events_channel(),
            layout,
            config,
            backend,
            tier,
            flights: Flights::default(),
            generations: RwLock::new(HashMap::new()),
            generation_ttl,
            listener: RwLock::new(Arc::new(AtomicBool::new(true))),
            weak: weak.clone(),
        });
        runtime.restart_listener();
        runtime
    }

    fn broken(error: Error) -> Arc<Runtime> {
        Self::with_backend(Config::memory(), Arc::new(Broken(error)))
    }

    fn listener_alive(&self) -> bool {
        self.listener
            .read()
            .expect("listener flag")
            .load(Ordering::Acquire)
    }

    /// Subscribes to the events of other processes, on the current runtime.
    fn restart_listener(&self) {
        let mut flag = self.listener.write().expect("listener flag");
        if flag.load(Ordering::Acquire) && Arc::strong_count(&flag) > 1 {
            return;
        }
        let Some(mut events) = self.backend.subscribe(&self.channel) else {
            // Nothing to listen to; mark alive for good.
            *flag = Arc::new(AtomicBool::new(true));
            return;
        };
        let alive = crate::backend::redis::runtime_sentinel();
        *flag = alive.clone();
        let weak = self.weak.clone();
        tokio::spawn(async move {
            let _alive = alive;
            while let Some(event) = events.recv().await {
                let Some(rt) = weak.upgrade() else { return };
                rt.apply(event);
            }
        });
    }

    /// Follows a change made by another process.
    fn apply(&self, event: Event) {
        match event {
            Event::Generation {
                namespace,
                generation,
            } => self.set_generation(&namespace, generation),
            Event::Resync => {
                self.generations.write().expect("generations").clear();
                if let Some(tier) = &self.tier {
                    tier.apply(&event);
                }
            }
            Event::Keys(_) | Event::Pattern(_) => {
                if let Some(tier) = &self.tier {
                    tier.apply(&event);
                }
            }
        }
    }

    fn set_generation(&self, ns: &str, value: u64) {
        let mut map = self.generations.write().expect("generations");
        let known = map.get(ns).map(|g| g.value);
        if known.is_none_or(|known| known <= value) {
            map.insert(
                ns.to_owned(),
                Generation {
                    value,
                    segment: Layout::ns_segment(ns, value).into(),
                    read_at: Instant::now(),
                },
            );
        }
    }

    /// The segment of `ns` at its current generation (`ns` or `ns#G`).
    pub(crate) async fn namespace_segment(&self, ns: &str) -> Result<Arc<str>> {
        let known = self
            .generations
            .read()
            .expect("generations")
            .get(ns)
            .cloned();
        if let Some(g) = &known
            && g.read_at.elapsed() < self.generation_ttl
        {
            return Ok(g.segment.clone());
        }
        key::validate_namespace(ns)?;
        match self.backend.get(&self.layout.generation_key(ns)).await {
            Ok(raw) => {
                let value = raw
                    .and_then(|b| {
                        std::str::from_utf8(&b)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                    })
                    .unwrap_or(0);
                let mut map = self.generations.write().expect("generations");
                let g = Generation {
                    value,
                    segment: Layout::ns_segment(ns, value).into(),
                    read_at: Instant::now(),
                };
                let segment = g.segment.clone();
                map.insert(ns.to_owned(), g);
                Ok(segment)
            }
            // A copy past its refresh is better than no cache at all.
            Err(_) if known.is_some() => Ok(known.expect("checked").segment),
            Err(e) => Err(e),
        }
    }

    /// Moves `ns` to a new generation: every entry written before is out of
    /// reach, in one round trip (plus one message to the other processes).
    pub(crate) async fn bump_namespace(&self, ns: &str) -> Result<u64> {
        key::validate_namespace(ns)?;
        let value = self
            .backend
            .incr(&self.layout.generation_key(ns), 1, None)
            .await?;
        let value = u64::try_from(value)
            .map_err(|_| Error::Backend(format!("generation of `{ns}` is negative")))?;
        self.set_generation(ns, value);
        self.publish(Event::Generation {
            namespace: ns.to_owned(),
            generation: value,
        })
        .await;
        Ok(value)
    }

    /// The store key of `key` in `ns` (or outside any namespace).
    pub(crate) async fn data_key(&self, ns: Option<&str>, key: &str) -> Result<String> {
        match ns {
            None => Ok(self.layout.data_key(None, key)),
            Some(ns) => {
                let segment = self.namespace_segment(ns).await?;
                Ok(self.layout.data_key(Some(&segment), key))
            }
        }
    }

    /// Like [`Runtime::data_key`], taking the rendered key: outside any
    /// namespace and without a prefix, a short key is the store key itself
    /// (no copy on the hit path).
    pub(crate) async fn store_key(&self, ns: Option<&str>, key: String) -> Result<String> {
        if ns.is_none() && self.layout.prefix().is_empty() && !key::needs_hashing(&key) {
            return Ok(key);
        }
        self.data_key(ns, &key).await
    }

    /// Tells other processes what changed; failures are logged, not returned
    /// (the change itself succeeded).
    pub(crate) async fn publish(&self, event: Event) {
        if !self.backend.is_shared() {
            return;
        }
        self.apply_locally(&event);
        if let Err(e) = self.backend.publish(&self.channel, &event).await {
            tracing::debug!(error = %e, "could not tell other processes about a change");
        }
    }

    /// Like [`Runtime::publish`], without waiting for the message to go out:
    /// this process's tier follows at once, the others a moment later.
    pub(crate) fn publish_later(self: &Arc<Self>, event: Event) {
        if !self.backend.is_shared() {
            return;
        }
        self.apply_locally(&event);
        let rt = self.clone();
        tokio::spawn(async move {
            if let Err(e) = rt.backend.publish(&rt.channel, &event).await {
                tracing::debug!(error = %e, "could not tell other processes about a change");
            }
        });
    }

    /// This process ignores its own messages, so it follows its own changes
    /// here: a write through the shared store must not leave a stale copy in
    /// the tier.
    fn apply_locally(&self, event: &Event) {
        if let Some(tier) = &self.tier
            && !matches!(event, Event::Generation { .. } | Event::Resync)
        {
            tier.apply(event);
        }
    }

    /// The store a cached call reads: the in-process tier if the call asks
    /// for it and there is a shared store behind.
    pub(crate) fn store(&self, local: bool) -> &dyn Backend {
        match &self.tier {
            Some(tier) if local || self.config.local.all => &**tier,
            _ => &*self.backend,
        }
    }

    pub(crate) fn circuit(&self) -> Option<CircuitState> {
        self.backend.circuit()
    }
}

/// A backend that only reports why the cache could not start.
#[derive(Debug)]
struct Broken(Error);

impl Broken {
    fn fail<'a, T: Send + 'a>(&'a self) -> BoxFuture<'a, Result<T>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
}

impl Backend for Broken {
    fn name(&self) -> &'static str {
        "unconfigured"
    }
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<bytes::Bytes>>> {
        self.fail()
    }
    fn get_many<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<bytes::Bytes>>>> {
        self.fail()
    }
    fn write<'a>(&'a self, _: &'a [crate::backend::Write]) -> BoxFuture<'a, Result<()>> {
        self.fail()
    }
    fn set_nx<'a>(
        &'a self,
        _: &'a str,
        _: bytes::Bytes,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.fail()
    }
    fn compare_and_swap<'a>(
        &'a self,
        _: &'a str,
        _: &'a [u8],
        _: crate::backend::Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        self.fail()
    }
    fn delete<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.fail()
    }
    fn exists<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.fail()
    }
    fn expire<'a>(&'a self, _: &'a str, _: Duration) -> BoxFuture<'a, Result<bool>> {
        self.fail()
    }
    fn ttl<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<crate::backend::KeyTtl>> {
        self.fail()
    }
    fn incr<'a>(&'a self, _: &'a str, _: i64, _: Option<Duration>) -> BoxFuture<'a, Result<i64>> {
        self.fail()
    }
    fn members<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        self.fail()
    }
    fn remove_members<'a>(&'a self, _: &'a str, _: &'a [String]) -> BoxFuture<'a, Result<()>> {
        self.fail()
    }
    fn delete_matching<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.fail()
    }
    fn publish<'a>(&'a self, _: &'a str, _: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn subscribe(&self, _: &str) -> Option<crate::backend::EventStream> {
        None
    }
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.fail()
    }
    fn is_shared(&self) -> bool {
        false
    }
}

/// Whether the backend answers, how fast, and the circuit's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// `memory`, `redis`, `cluster`, ...
    pub backend: &'static str,
    /// Whether a `PING` succeeded.
    pub reachable: bool,
    /// Round-trip time of the `PING`.
    pub latency: Option<Duration>,
    /// The circuit breaker, for remote stores.
    pub circuit: Option<CircuitState>,
    /// Why it is not reachable (no secrets).
    pub error: Option<String>,
    /// Whether caching is enabled.
    pub enabled: bool,
}

/// Checks the global cache's backend.
pub async fn health() -> Health {
    let rt = runtime().await;
    let started = Instant::now();
    let ping = tokio::time::timeout(rt.config.timeout, rt.backend.ping()).await;
    let (reachable, error) = match ping {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_) => (
            false,
            Some(format!("no answer within {:?}", rt.config.timeout)),
        ),
    };
    Health {
        backend: rt.backend.name(),
        reachable,
        latency: reachable.then(|| started.elapsed()),
        circuit: rt.circuit(),
        error,
        enabled: rt.config.enabled,
    }
}
