//! The stack: a store and the layers around it, assembled once from a
//! [`Config`] by [`Stack::build`].
//!
//! ```text
//! Stack = { store, memory | tier, bus, breaker, ... }
//!   store    the byte store: the embedded MemoryStore, or Redis / Redis
//!            Cluster behind resilience (timeouts, retries, breaker), or
//!            a user's own store
//!   memory   the embedded store's typed face (decoded values)
//!   tier     decoded copies of a shared store's entries, in process
//!   bus      what keeps those copies (and namespace generations,
//!            process-scope entries) coherent across processes
//! ```
//!
//! The engine reads the parts directly. A stack that cannot serve (caching
//! disabled, or a configuration from the environment that does not work)
//! is a value too: [`Stack::off`] says why, and every call computes.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::bus::{Bus, Event, Listener, Nodes};
use crate::clock::Clock;
use crate::codec::Envelope;
use crate::config::{BackendConfig, Config};
use crate::error::{Error, Result};
use crate::flight::{Flights, Named};
use crate::key::{self, Layout};
use crate::local::{Bound, LocalMap, Tier};
use crate::resilience::{Breaker, CircuitState, Resilience};
use crate::stats::{Counters, Stats};
use crate::store::Store;
use crate::store::cluster::ClusterStore;
use crate::store::layer::Layered;
use crate::store::memory::MemoryStore;
use crate::store::protocol::Tuning;
use crate::store::redis::RedisStore;
use crate::testing::{DropConnections, FaultState};

/// Why a stack does not cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Off {
    /// `CACHE_ENABLED=false` or `Config::enabled(false)`.
    Disabled,
    /// The configuration could not start.
    Broken(Error),
}

/// A namespace's generation as this process knows it.
#[derive(Debug, Clone)]
struct Generation {
    value: u64,
    segment: Arc<str>,
}

/// The generations of namespaces, kept coherent by the bus (or, on the
/// embedded store, authoritative in process).
#[derive(Debug, Default)]
struct Generations {
    map: RwLock<HashMap<String, Generation>>,
    /// Bumped whenever a copy may have gone stale, so that a read that
    /// raced it does not put back an old generation.
    epoch: AtomicU64,
}

/// Background work of the stack (refreshes, computations that outlived a
/// soft timeout): it ends when the stack is shut down.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    set: Mutex<Option<tokio::task::JoinSet<()>>>,
}

impl Tasks {
    /// Spawns `work` on the current runtime, to be aborted at shutdown.
    pub(crate) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut guard = self.set.lock().expect("tasks lock");
        let set = guard.get_or_insert_with(tokio::task::JoinSet::new);
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    fn shutdown(&self) {
        if let Some(mut set) = self.set.lock().expect("tasks lock").take() {
            set.abort_all();
            // The aborted tasks are reaped by the runtime; detach them.
            set.detach_all();
        }
    }

    /// Tasks still running (tests).
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn running(&self) -> usize {
        let mut guard = self.set.lock().expect("tasks lock");
        let Some(set) = guard.as_mut() else { return 0 };
        while set.try_join_next().is_some() {}
        set.len()
    }
}

/// The running cache.
pub(crate) struct Stack {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) memory: Option<Arc<MemoryStore>>,
    pub(crate) tier: Option<Arc<Tier>>,
    pub(crate) bus: Option<Arc<Bus>>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) layout: Layout,
    pub(crate) envelope: Envelope,
    pub(crate) flights: Flights,
    pub(crate) clock: Clock,
    pub(crate) tasks: Tasks,
    pub(crate) off: Option<Off>,
    /// The fault layer of an isolated (test) cache.
    pub(crate) faults: Option<Arc<FaultState>>,
    /// An isolated cache's own counters, by the process-wide ones they
    /// stand for.
    private_counters: Option<Mutex<HashMap<usize, &'static Counters>>>,
    /// Whether the bus hears (always, without one).
    hearing: AtomicBool,
    generations: Generations,
    process: RwLock<HashMap<usize, Arc<LocalMap>>>,
    listener: Mutex<Option<Listener>>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("store", &self.store.name())
            .field("tier", &self.tier.is_some())
            .field("off", &self.off)
            .finish_non_exhaustive()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

impl Stack {
    /// Builds the stack `config` describes. Succeeds while a configured
    /// Redis is unreachable; fails only on an invalid configuration. Must
    /// run inside a tokio runtime.
    pub(crate) fn build(config: Config) -> Result<Arc<Stack>> {
        Self::build_on(config, Clock::System)
    }

    pub(crate) fn build_on(config: Config, clock: Clock) -> Result<Arc<Stack>> {
        Self::build_with(config, clock, None)
    }

    /// An isolated (test) cache: tokio's clock, a fault layer under the
    /// resilience layer, counters of its own.
    pub(crate) fn build_isolated(config: Config, clock: Clock) -> Result<Arc<Stack>> {
        Self::build_with(config, clock, Some(Arc::new(FaultState::default())))
    }

    fn build_with(
        config: Config,
        clock: Clock,
        faults: Option<Arc<FaultState>>,
    ) -> Result<Arc<Stack>> {
        config.validate()?;
        let tuning = Tuning {
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
        };
        let faulty = |store: Arc<dyn Store>| -> Arc<dyn Store> {
            match &faults {
                Some(faults) => Arc::new(Layered {
                    layer: faults.clone(),
                    inner: store,
                }),
                None => store,
            }
        };
        let (store, nodes): (Arc<dyn Store>, Option<Nodes>) = match config.backend() {
            BackendConfig::Memory => {
                let memory = Arc::new(MemoryStore::with_clock(config.memory_max_bytes, clock));
                let store = faulty(memory.clone());
                return Ok(Self::assemble(
                    config,
                    store,
                    Some(memory),
                    None,
                    clock,
                    faults,
                ));
            }
            BackendConfig::Redis(url) => {
                let redis = Arc::new(RedisStore::new(url, config.tls_ca.as_deref(), tuning)?);
                if let Some(faults) = &faults {
                    let target = redis.clone();
                    *faults.on_drop.lock().expect("faults") =
                        Some(DropConnections(Box::new(move || target.drop_connections())));
                }
                (faulty(redis.clone()), Some(Nodes::Redis(redis)))
            }
            BackendConfig::Cluster(urls) => {
                let cluster = Arc::new(ClusterStore::new(urls, config.tls_ca.as_deref(), tuning)?);
                (faulty(cluster.clone()), Some(Nodes::Cluster(cluster)))
            }
            BackendConfig::Custom(store) => (faulty(store.clone()), None),
        };
        Ok(Self::remote(config, store, nodes, clock, faults))
    }

    /// A stack over a shared store: resilience around it, a tier in front
    /// of it, and a bus when the store can carry one.
    fn remote(
        config: Config,
        store: Arc<dyn Store>,
        nodes: Option<Nodes>,
        clock: Clock,
        faults: Option<Arc<FaultState>>,
    ) -> Arc<Stack> {
        let breaker = Arc::new(Breaker::new(config.breaker));
        let store: Arc<dyn Store> = Arc::new(Layered {
            layer: Resilience::new(config.timeout, config.retry, breaker.clone()),
            inner: store,
        });
        let layout = Layout::new(config.key_prefix.as_deref());
        let bus = nodes.map(|nodes| {
            Arc::new(Bus::new(
                nodes,
                layout.events_channel(),
                layout.prefix().to_owned(),
                config.connect_timeout,
                config.timeout,
            ))
        });
        // A tier that cannot hear (no bus) never serves.
        let tier = Arc::new(Tier::new(
            config.local.max_bytes,
            config.local.max_ttl,
            clock,
            false,
        ));
        let mut stack = Self::assemble(config, store, None, Some(tier), clock, faults);
        let inner = Arc::get_mut(&mut stack).expect("just built");
        inner.breaker = Some(breaker);
        inner.bus = bus;
        inner.hearing.store(false, Ordering::Release);
        stack.start_listener();
        stack
    }

    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        memory: Option<Arc<MemoryStore>>,
        tier: Option<Arc<Tier>>,
        clock: Clock,
        faults: Option<Arc<FaultState>>,
    ) -> Arc<Stack> {
        let layout = Layout::new(config.key_prefix.as_deref());
        let off = (!config.enabled).then_some(Off::Disabled);
        Arc::new(Stack {
            envelope: Envelope::new(config.integrity.clone()),
            layout,
            store,
            memory,
            tier,
            bus: None,
            breaker: None,
            flights: Flights::default(),
            clock,
            tasks: Tasks::default(),
            off,
            private_counters: faults.as_ref().map(|_| Mutex::new(HashMap::new())),
            faults,
            hearing: AtomicBool::new(true),
            generations: Generations::default(),
            process: RwLock::new(HashMap::new()),
            listener: Mutex::new(None),
            config,
        })
    }

    /// A stack that only says why it cannot cache.
    pub(crate) fn broken(error: Error) -> Arc<Stack> {
        let config = Config::memory();
        let memory = Arc::new(MemoryStore::new(1 << 20));
        let mut stack = Self::assemble(config, memory, None, None, Clock::System, None);
        Arc::get_mut(&mut stack).expect("just built").off = Some(Off::Broken(error));
        stack
    }

    fn start_listener(self: &Arc<Self>) {
        let Some(bus) = &self.bus else { return };
        let weak = Arc::downgrade(self);
        match bus.listen(move |event| {
            if let Some(stack) = weak.upgrade() {
                stack.apply(&event);
            }
        }) {
            Ok(listener) => *self.listener.lock().expect("listener lock") = Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cachekit cannot listen for changes; in-process copies stay off")
            }
        }
    }

    /// Ends the stack's background work: its listener and refreshes. Calls
    /// under way finish.
    pub(crate) fn shutdown(&self) {
        self.listener.lock().expect("listener lock").take();
        self.tasks.shutdown();
        self.hearing.store(false, Ordering::Release);
        if let Some(tier) = &self.tier {
            tier.deafen();
        }
    }

    /// Whether the stack caches, or why not.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.off {
            Some(Off::Broken(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Whether other processes share the store.
    pub(crate) fn is_shared(&self) -> bool {
        self.memory.is_none()
    }

    /// Whether the process hears about changes made by others.
    pub(crate) fn hears(&self) -> bool {
        self.hearing.load(Ordering::Acquire)
    }

    /// Follows a change made elsewhere, or a change in hearing.
    pub(crate) fn apply(&self, event: &Event) {
        match event {
            Event::Keys(keys) => {
                self.flights.detach(Named::Keys(keys));
                self.evict(keys);
            }
            // Not the flights: this process's own lease and value writes
            // come back as tracking messages too, and a flight detached by
            // its own leader's lease would be flown twice. Its store is
            // fenced by the write anyway.
            Event::Tracked(keys) => self.evict(keys),
            Event::Pattern(pattern) => {
                self.flights.detach(Named::Pattern(pattern));
                if let Some(tier) = &self.tier {
                    tier.evict_matching(pattern);
                }
                self.for_process_maps(|map| map.evict_matching(pattern));
            }
            Event::Tag(tag) => {
                self.flights.detach(Named::Tag(&self.layout.tag_key(tag)));
                self.for_process_maps(|map| map.evict_tag(tag));
            }
            Event::Generation {
                namespace,
                generation,
            } => self.set_generation(namespace, *generation),
            Event::Flush => self.forget_everything(),
            Event::Hearing => {
                self.forget_everything();
                if let Some(tier) = &self.tier {
                    tier.hear();
                }
                self.hearing.store(true, Ordering::Release);
            }
            Event::Deaf => {
                self.hearing.store(false, Ordering::Release);
                if let Some(tier) = &self.tier {
                    tier.deafen();
                }
                self.forget_everything();
            }
        }
    }

    fn evict(&self, keys: &[String]) {
        if let Some(tier) = &self.tier {
            tier.evict(keys);
        }
        self.for_process_maps(|map| map.evict(keys));
        self.forget_generations_of(keys);
    }

    /// Drops every copy (flights stay: a flight in progress answers within
    /// one computation, like the propagation lag).
    fn forget_everything(&self) {
        if let Some(tier) = &self.tier {
            tier.clear();
        }
        self.for_process_maps(LocalMap::clear);
        self.generations.epoch.fetch_add(1, Ordering::AcqRel);
        self.generations.map.write().expect("generations").clear();
    }

    fn forget_generations_of(&self, keys: &[String]) {
        let gens: Vec<&str> = keys
            .iter()
            .filter_map(|k| self.layout.namespace_of_generation_key(k))
            .collect();
        if gens.is_empty() {
            return;
        }
        self.generations.epoch.fetch_add(1, Ordering::AcqRel);
        let mut map = self.generations.map.write().expect("generations");
        for ns in gens {
            map.remove(ns);
        }
    }

    /// Tells other processes what changed, after following it here. A
    /// failure is logged, not returned: the change itself succeeded, and a
    /// lost message is covered by tracking (keys written in the store) or
    /// by the listener's resync.
    pub(crate) async fn announce(&self, event: Event) {
        self.apply_here(&event);
        if let Some(bus) = &self.bus
            && let Err(e) = bus.publish(&event).await
        {
            tracing::debug!(error = %e, "could not tell other processes about a change");
        }
    }

    /// Follows a change this process made: the bus skips our own messages.
    fn apply_here(&self, event: &Event) {
        match event {
            Event::Generation { .. } => self.apply(event),
            Event::Keys(_) | Event::Pattern(_) | Event::Tag(_) => self.apply(event),
            Event::Tracked(_) | Event::Flush | Event::Hearing | Event::Deaf => {}
        }
    }

    // -- namespaces ---------------------------------------------------------

    fn set_generation(&self, ns: &str, value: u64) {
        let mut map = self.generations.map.write().expect("generations");
        if map.get(ns).is_none_or(|g| g.value <= value) {
            map.insert(
                ns.to_owned(),
                Generation {
                    value,
                    segment: Layout::ns_segment(ns, value).into(),
                },
            );
        }
    }

    /// The segment of `ns` at its current generation (`ns` or `ns#G`). A
    /// copy is used only while the process hears about changes (or on the
    /// embedded store, where it is the truth).
    pub(crate) async fn namespace_segment(&self, ns: &str) -> Result<Arc<str>> {
        if self.hears()
            && let Some(g) = self.generations.map.read().expect("generations").get(ns)
        {
            return Ok(g.segment.clone());
        }
        key::validate_namespace(ns)?;
        let epoch = self.generations.epoch.load(Ordering::Acquire);
        let raw = self.store.get(&self.layout.generation_key(ns)).await?;
        let value = raw
            .and_then(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
            })
            .unwrap_or(0);
        // Keep it only if nothing changed meanwhile; use it either way (it
        // is what the store said when asked).
        if self.generations.epoch.load(Ordering::Acquire) == epoch {
            self.set_generation(ns, value);
        }
        Ok(Layout::ns_segment(ns, value).into())
    }

    /// Moves `ns` to a new generation: every entry written before is out of
    /// reach, in one round trip (plus one message to the other processes).
    pub(crate) async fn bump_namespace(&self, ns: &str) -> Result<u64> {
        key::validate_namespace(ns)?;
        let value = self
            .store
            .incr(&self.layout.generation_key(ns), 1, None)
            .await?;
        let value = u64::try_from(value)
            .map_err(|_| Error::Backend(format!("generation of `{ns}` is negative")))?;
        self.announce(Event::Generation {
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

    /// Like [`Stack::data_key`], taking the rendered key: outside any
    /// namespace and without a prefix, a short key is the store key itself
    /// (no copy on the hit path).
    pub(crate) async fn store_key(&self, ns: Option<&str>, key: String) -> Result<String> {
        if ns.is_none() && self.layout.prefix().is_empty() && !key::needs_hashing(&key) {
            return Ok(key);
        }
        self.data_key(ns, &key).await
    }

    // -- process scope --------------------------------------------------------

    /// The map of a process-scope function (`site` identifies it), made on
    /// first use with its bound.
    pub(crate) fn process_map(&self, site: usize, max_entries: u64) -> Arc<LocalMap> {
        if let Some(map) = self.process.read().expect("process maps").get(&site) {
            return map.clone();
        }
        self.process
            .write()
            .expect("process maps")
            .entry(site)
            .or_insert_with(|| Arc::new(LocalMap::new(Bound::Entries(max_entries), self.clock)))
            .clone()
    }

    fn for_process_maps(&self, f: impl Fn(&LocalMap)) {
        for map in self.process.read().expect("process maps").values() {
            f(map);
        }
    }

    // -- health ---------------------------------------------------------------

    /// The breaker's state, for remote stores.
    pub(crate) fn circuit(&self) -> Option<CircuitState> {
        self.breaker.as_ref().map(|b| b.state())
    }

    /// The length of a lease: as asked, or as configured.
    pub(crate) fn lease_ttl(&self, asked: Option<Duration>) -> Duration {
        asked.unwrap_or(self.config.lease_ttl)
    }

    /// Why the stack does not cache right now, if it does not.
    pub(crate) fn off_reason(&self) -> Option<String> {
        match (&self.off, self.circuit()) {
            (Some(Off::Disabled), _) => {
                Some("disabled (CACHE_ENABLED=false or Config::enabled(false))".into())
            }
            (Some(Off::Broken(e)), _) => Some(format!("the configuration did not start: {e}")),
            (None, Some(CircuitState::Open)) => Some(
                "circuit breaker open: the store failed repeatedly; calls compute until a probe succeeds"
                    .into(),
            ),
            (None, _) => None,
        }
    }

    // -- counters -------------------------------------------------------------

    /// The counters to use for `global`: itself, or in an isolated cache
    /// its private twin.
    pub(crate) fn counters(&self, global: &'static Counters) -> &'static Counters {
        let Some(private) = &self.private_counters else {
            return global;
        };
        let mut map = private.lock().expect("private counters");
        map.entry(global as *const Counters as usize)
            .or_insert_with(|| {
                Box::leak(Box::new(Counters::private(global.scope(), global.name())))
            })
    }

    /// The counters of this cache: an isolated cache's own, or the process's.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = match &self.private_counters {
            Some(private) => {
                let counters: Vec<&'static Counters> = private
                    .lock()
                    .expect("private counters")
                    .values()
                    .copied()
                    .collect();
                crate::stats::snapshot(counters.into_iter())
            }
            None => crate::stats::stats(),
        };
        stats.off = self.off_reason();
        stats
    }
}
