//! The global cache: one [`Stack`] per process, installed by [`init`] or,
//! on first use, from the environment; and the isolated caches of tests
//! (`testing`), which take its place for one test.
//!
//! Reading the global is a per-thread copy checked against a counter that
//! moves only when a cache is installed: no lock's cache line is written
//! from every core on every cached call. Calling `init` again replaces the
//! cache and shuts the old one down (its listener and background work
//! end); calls under way finish on the stack they started with.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::Result;
use crate::per_thread;
use crate::resilience::CircuitState;
use crate::stack::{Off, Stack};

static GLOBAL: RwLock<Option<Arc<Stack>>> = RwLock::new(None);
static INIT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Bumped each time `GLOBAL` changes.
static INSTALLS: AtomicU64 = AtomicU64::new(0);
/// How many isolated caches exist: while none does, no call looks for one.
pub(crate) static ISOLATED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's copy of the global cache, good while no other cache
    /// was installed since. A hit borrows it in place: no reference count
    /// moves, so no cache line is written from every core on every call. A
    /// replaced cache is shut down at once (its listener and background
    /// work end); its memory goes when each thread next calls, or ends.
    static LOCAL: per_thread::Slot<u64, Arc<Stack>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's copy of the installed cache, borrowed in
/// place, if the thread has a current one (and no isolated cache exists).
#[inline]
pub(crate) fn with_local<T>(f: impl FnOnce(&Arc<Stack>) -> Option<T>) -> Option<T> {
    if ISOLATED.load(Ordering::Relaxed) != 0 {
        return None;
    }
    let stamp = INSTALLS.load(Ordering::Acquire);
    LOCAL
        .try_with(|slot| match &*slot.borrow() {
            Some((taken, stack)) if *taken == stamp => f(stack),
            _ => None,
        })
        .ok()
        .flatten()
}

fn install(stack: Arc<Stack>) {
    let old = GLOBAL.write().expect("global cache lock").replace(stack);
    INSTALLS.fetch_add(1, Ordering::AcqRel);
    if let Some(old) = old {
        old.shutdown();
    }
}

/// Installs the global cache. Succeeds while a configured Redis is
/// unreachable: cached functions compute until it answers, and caching
/// resumes by itself. Fails only on an invalid configuration. Calling it
/// again replaces the cache, and ends the old one's connections, listener
/// and background refreshes.
pub async fn init(config: Config) -> Result<()> {
    let _serial = INIT.lock().await;
    let stack = Stack::build(config)?;
    connect_once(&stack).await;
    install(stack);
    Ok(())
}

/// Shuts the global cache down: its listener and background refreshes
/// end, and cached calls compute until the next `init` (or first use,
/// which installs one from the environment again).
pub async fn shutdown() {
    let _serial = INIT.lock().await;
    if let Some(old) = GLOBAL.write().expect("global cache lock").take() {
        old.shutdown();
    }
    INSTALLS.fetch_add(1, Ordering::AcqRel);
}

/// One bounded attempt to reach a shared store, so that the first calls
/// find a connection, and a log line says if it is not reachable yet.
async fn connect_once(stack: &Stack) {
    if !stack.is_shared() || stack.off.is_some() {
        return;
    }
    let name = stack.store.name();
    match tokio::time::timeout(stack.config.connect_timeout, stack.store.ping()).await {
        Ok(Ok(())) => tracing::debug!(store = name, "cache store connected"),
        Ok(Err(e)) => {
            tracing::warn!(store = name, error = %e, "cache store not reachable yet; cached calls compute until it is")
        }
        Err(_) => tracing::warn!(
            store = name,
            "cache store did not answer in time; cached calls compute until it does"
        ),
    }
}

/// The cache this call uses: the isolated cache of a test, or the global
/// one, initialized from the environment on first use.
pub(crate) async fn current() -> Arc<Stack> {
    if let Some(stack) = isolated() {
        return stack;
    }
    let stamp = INSTALLS.load(Ordering::Acquire);
    if let Some(stack) = per_thread::get(&LOCAL, &stamp) {
        return stack;
    }
    if let Some(stack) = GLOBAL.read().expect("global cache lock").clone() {
        per_thread::put(&LOCAL, stamp, stack.clone());
        return stack;
    }
    let _serial = INIT.lock().await;
    let installed = GLOBAL.read().expect("global cache lock").clone();
    let stack = match installed {
        Some(stack) => stack,
        None => {
            let stack = from_env();
            connect_once(&stack).await;
            install(stack.clone());
            stack
        }
    };
    per_thread::put(&LOCAL, INSTALLS.load(Ordering::Acquire), stack.clone());
    stack
}

/// [`current`] for sync functions: it never waits for I/O (a cache made
/// from the environment here skips the first connection attempt).
pub(crate) fn current_blocking() -> Arc<Stack> {
    if let Some(stack) = isolated() {
        return stack;
    }
    let stamp = INSTALLS.load(Ordering::Acquire);
    if let Some(stack) = per_thread::get(&LOCAL, &stamp) {
        return stack;
    }
    let mut global = GLOBAL.write().expect("global cache lock");
    let stack = match &*global {
        Some(stack) => stack.clone(),
        None => {
            let stack = from_env();
            *global = Some(stack.clone());
            INSTALLS.fetch_add(1, Ordering::AcqRel);
            stack
        }
    };
    drop(global);
    per_thread::put(&LOCAL, INSTALLS.load(Ordering::Acquire), stack.clone());
    stack
}

fn from_env() -> Arc<Stack> {
    Config::from_env()
        .and_then(Stack::build)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cachekit cannot start from the environment; every cached call computes");
            Stack::broken(e)
        })
}

fn isolated() -> Option<Arc<Stack>> {
    if ISOLATED.load(Ordering::Acquire) == 0 {
        return None;
    }
    crate::testing::current_isolated()
}

/// The configuration of the global cache, if one is installed.
pub fn current_config() -> Option<Config> {
    GLOBAL
        .read()
        .expect("global cache lock")
        .as_ref()
        .map(|s| s.config.clone())
}

/// Why the cache in use does not cache, without asking the store.
pub(crate) fn off_reason() -> Option<String> {
    let stack = isolated().or_else(|| GLOBAL.read().expect("global cache lock").clone())?;
    stack.off_reason()
}

/// Whether caching is on, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caching {
    /// Cached calls use the store.
    On,
    /// Caching is turned off (`CACHE_ENABLED=false`, `Config::enabled`).
    Disabled,
    /// The configuration could not start; every call computes. The reason.
    Broken(String),
    /// The store does not answer; calls compute until it does. The reason.
    Unreachable(String),
    /// The circuit breaker is open after repeated failures: calls skip the
    /// store until a probe succeeds.
    CircuitOpen,
}

/// Whether the store answers, how fast, and whether caching is on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// `memory`, `redis`, `cluster`, or a custom store's name.
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
    /// Whether caching is on, and if not, why: what to look at first.
    pub caching: Caching,
    /// Whether the process hears about changes made by other clients
    /// (tracking and events): in-process copies serve only while it does.
    pub coherent: bool,
}

/// Checks the cache's store.
pub async fn health() -> Health {
    let stack = current().await;
    let started = Instant::now();
    let ping = tokio::time::timeout(stack.config.timeout, stack.store.ping()).await;
    let (reachable, error) = match ping {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_) => (
            false,
            Some(format!("no answer within {:?}", stack.config.timeout)),
        ),
    };
    let circuit = stack.circuit();
    let caching = match (&stack.off, &error, circuit) {
        (Some(Off::Disabled), _, _) => Caching::Disabled,
        (Some(Off::Broken(e)), _, _) => Caching::Broken(e.to_string()),
        (None, Some(e), _) => Caching::Unreachable(e.clone()),
        (None, None, Some(CircuitState::Open)) => Caching::CircuitOpen,
        (None, None, _) => Caching::On,
    };
    Health {
        backend: stack.store.name(),
        reachable,
        latency: reachable.then(|| started.elapsed()),
        circuit,
        error,
        enabled: stack.config.enabled,
        caching,
        coherent: stack.hears(),
    }
}
