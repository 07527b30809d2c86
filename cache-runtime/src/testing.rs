//! Testing an application that uses cachekit: isolated caches, virtual
//! time, injected faults, and stats of one test.
//!
//! An isolated cache takes the place of the global one for one test:
//! cached functions, `Cache` handles and invalidations called from the test
//! use it, and nothing else does, so tests running in parallel in one
//! binary never see each other's entries. `#[cachekit::test]` gives each
//! test its own (for the test's runtime, so tasks it spawns use it too);
//! [`isolated`] does the same for one future (several may run together in
//! one task).
//!
//! Expiry in an isolated cache follows tokio's clock: with
//! `start_paused = true`, `tokio::time::advance(Duration::from_secs(6))`
//! expires a 5-second entry at once. [`faults`] makes its store fail, slow
//! down, corrupt a read or drop its connection on demand, to test an
//! application's fail-open path.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use cachekit_runtime::{Cache, Config, testing};
//! use std::time::Duration;
//!
//! static USERS: Cache = Cache::new("users", Duration::from_secs(5));
//!
//! testing::isolated(Config::memory(), async {
//!     USERS.set("7", &"Ada").await.unwrap();
//!     testing::faults().fail_next(1);
//!     assert!(USERS.get::<String>("7").await.is_err(), "the injected failure");
//!     assert_eq!(USERS.get::<String>("7").await.unwrap().as_deref(), Some("Ada"));
//!     assert_eq!(testing::stats().namespace("users").unwrap().hits, 1);
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::global::ISOLATED;
use crate::stack::Stack;
use crate::stats::Stats;
use crate::store::BoxFuture;
use crate::store::layer::{Layer, Op};

tokio::task_local! {
    static ISOLATED_STACK: Arc<Stack>;
}

/// Isolated caches by the runtime they serve (`#[cachekit::test]`).
static BY_RUNTIME: RwLock<Vec<(tokio::runtime::Id, Weak<Stack>)>> = RwLock::new(Vec::new());

/// The isolated cache of the calling task or runtime, if any.
pub(crate) fn current_isolated() -> Option<Arc<Stack>> {
    if let Ok(stack) = ISOLATED_STACK.try_with(Arc::clone) {
        return Some(stack);
    }
    let id = tokio::runtime::Handle::try_current().ok()?.id();
    BY_RUNTIME
        .read()
        .expect("isolated caches")
        .iter()
        .find(|(rt, _)| *rt == id)
        .and_then(|(_, stack)| stack.upgrade())
}

/// Builds an isolated stack: tokio's clock, a fault layer, its own stats.
fn build(config: Config) -> Result<Arc<Stack>> {
    Stack::build_isolated(config, Clock::tokio())
}

/// Runs `fut` with its own empty cache built from `config`: cached
/// functions, `Cache` handles and invalidations it calls use that cache.
/// Tasks it spawns use the global cache (or their runtime's isolated one):
/// use `#[cachekit::test]` for a test whose spawned tasks must share it.
///
/// # Panics
///
/// If `config` is invalid.
pub async fn isolated<F: Future>(config: Config, fut: F) -> F::Output {
    let stack = build(config).expect("an isolated cache needs a valid configuration");
    let _count = Counted::new();
    let out = ISOLATED_STACK.scope(stack.clone(), fut).await;
    stack.shutdown();
    out
}

/// Counts an isolated cache while it exists, so that calls look for one.
struct Counted;

impl Counted {
    fn new() -> Self {
        ISOLATED.fetch_add(1, Ordering::AcqRel);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        ISOLATED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The isolated cache of one runtime: made by `#[cachekit::test]` at the
/// start of a test, removed (and its Redis keys deleted) when dropped.
#[doc(hidden)]
#[must_use]
pub struct RuntimeCache {
    stack: Arc<Stack>,
    runtime: tokio::runtime::Id,
    _counted: Counted,
}

impl RuntimeCache {
    /// Makes the current runtime's cache. `redis`: on the Redis at `url`,
    /// or else at `REDIS_URL`, under a key prefix of its own; otherwise in
    /// memory.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or with `redis` and no usable URL.
    pub fn install(redis: bool, url: Option<String>) -> RuntimeCache {
        let config = if redis {
            let url = url
                .or_else(|| std::env::var("REDIS_URL").ok())
                .unwrap_or_else(|| {
                    panic!(
                        "#[cachekit::test(redis)] needs REDIS_URL to name a Redis server \
                     (or name one: `#[cachekit::test(redis = url)]`)"
                    )
                });
            let prefix = format!("cachekit-test-{:016x}", fastrand::u64(..));
            Config::redis(&url).key_prefix(prefix)
        } else {
            Config::memory()
        };
        RuntimeCache::with_config(config)
    }

    /// Makes the current runtime's cache from `config` (give a shared
    /// store a key prefix of its own: `cleanup` deletes everything under it).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or with an invalid `config`.
    pub fn with_config(config: Config) -> RuntimeCache {
        let stack = build(config).expect("an isolated cache needs a valid configuration");
        let runtime = tokio::runtime::Handle::current().id();
        BY_RUNTIME
            .write()
            .expect("isolated caches")
            .push((runtime, Arc::downgrade(&stack)));
        RuntimeCache {
            stack,
            runtime,
            _counted: Counted::new(),
        }
    }

    /// Deletes the test's keys from a shared store.
    pub async fn cleanup(&self) {
        if self.stack.is_shared() {
            let pattern = self.stack.layout.pattern(None, "*");
            if let Err(e) = self.stack.store.delete_matching(&pattern).await {
                tracing::warn!(error = %e, "could not delete an isolated cache's keys");
            }
        }
    }
}

impl Drop for RuntimeCache {
    fn drop(&mut self) {
        self.stack.shutdown();
        BY_RUNTIME
            .write()
            .expect("isolated caches")
            .retain(|(rt, stack)| *rt != self.runtime && stack.strong_count() > 0);
    }
}

/// The store of the cache in use (the isolated cache's, or the global one),
/// with its layers (resilience, and an isolated cache's faults): what
/// [`store::conformance`](crate::store::conformance) checks.
pub async fn store() -> Arc<dyn crate::Store> {
    crate::global::current().await.store.clone()
}

/// How `#[cachekit::test]` runs a test: tokio's runtime options, and
/// where the test's cache is.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct TestRuntime {
    /// `flavor = "multi_thread"` (else current-thread).
    pub multi_thread: bool,
    /// `worker_threads = N` (multi-thread only).
    pub worker_threads: Option<usize>,
    /// `start_paused = true` (current-thread only).
    pub start_paused: bool,
    /// `#[cachekit::test(redis)]`: on the Redis of `REDIS_URL`.
    pub redis: bool,
    /// `#[cachekit::test(redis = url)]`: on the Redis at `url`.
    pub redis_url: Option<String>,
}

/// Runs a test the way `#[cachekit::test]` does: on a runtime of its own,
/// with a cache of its own ([`RuntimeCache`]), whose Redis keys (if any)
/// are deleted when the test ends, whether it passes or panics.
///
/// # Panics
///
/// If the runtime cannot be built, or as the test does.
#[doc(hidden)]
#[cfg(feature = "test")]
pub fn run_test<F: Future>(how: TestRuntime, test: F) -> F::Output {
    use futures_util::FutureExt;

    let mut builder = if how.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    if let Some(n) = how.worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().start_paused(how.start_paused);
    let runtime = builder.build().expect("the test's tokio runtime");
    runtime.block_on(async move {
        let cache = RuntimeCache::install(how.redis, how.redis_url);
        if how.redis
            && how.start_paused
            && let Some(faults) = &cache.stack.faults
        {
            faults.real_time_io.on.store(true, Ordering::Release);
        }
        let out = std::panic::AssertUnwindSafe(test).catch_unwind().await;
        cache.cleanup().await;
        drop(cache);
        out.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Whether a call of a cached function would hit, without running it:
/// what `assert_cached!(get_user(7))` asks (through the function's hidden
/// entry). A fresh entry is a hit; an absent, expired, undecodable or
/// under-way (leased) one is not.
#[doc(hidden)]
pub async fn is_cached(entry: crate::engine::Entry) -> bool {
    let stack = crate::global::current().await;
    crate::engine::is_fresh(&stack, entry.site, &entry.key).await
}

fn isolated_stack(what: &str) -> Arc<Stack> {
    current_isolated().unwrap_or_else(|| {
        panic!("cachekit::testing::{what}() is for an isolated cache: call it inside `#[cachekit::test]` or `cachekit::testing::isolated`")
    })
}

/// The counters of the isolated cache only: the same [`Stats`] that
/// `cachekit::stats()` gives for the whole process.
///
/// # Panics
///
/// Outside an isolated cache.
pub fn stats() -> Stats {
    isolated_stack("stats").stats()
}

/// The fault injector of the isolated cache's store.
///
/// # Panics
///
/// Outside an isolated cache.
pub fn faults() -> Faults {
    let stack = isolated_stack("faults");
    Faults(
        stack
            .faults
            .clone()
            .expect("isolated caches have a fault layer"),
    )
}

/// Injects faults into an isolated cache's store. Each method returns the
/// handle, so calls chain.
#[derive(Debug, Clone)]
pub struct Faults(pub(crate) Arc<FaultState>);

/// What the fault layer does next.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    fail_next: AtomicU64,
    failing: AtomicBool,
    fail_until: Mutex<Option<tokio::time::Instant>>,
    latency_us: AtomicU64,
    corrupt_next: AtomicU64,
    dropped: AtomicBool,
    injected: AtomicU64,
    /// Drops the store's connections (a shared store).
    pub(crate) on_drop: Mutex<Option<DropConnections>>,
    /// Store operations under way, holding a paused clock (see
    /// [`RealTimeIo`]).
    real_time_io: RealTimeIo,
}

/// Real I/O under a paused clock. A paused runtime advances its clock to
/// the next timer whenever it is idle, and a test waiting on Redis is idle:
/// every operation would reach its timeout at once. While store operations
/// are under way, a blocking task waits for the last of them to end, and a
/// blocking task holds tokio's auto-advance (the clock stays paused, and
/// `tokio::time::advance` still moves it). `#[cachekit::test(redis,
/// start_paused = true)]` turns this on.
#[derive(Debug, Default)]
struct RealTimeIo {
    on: AtomicBool,
    /// Operations under way, and the line to the blocking task.
    under_way: Mutex<(usize, Option<std::sync::mpsc::Sender<()>>)>,
}

/// An operation under way, holding auto-advance.
struct HoldingTime<'a>(&'a RealTimeIo);

impl RealTimeIo {
    fn enter(&self) -> Option<HoldingTime<'_>> {
        if !self.on.load(Ordering::Acquire) {
            return None;
        }
        let mut under_way = self.under_way.lock().expect("real-time I/O");
        if under_way.0 == 0 {
            let (done, wait) = std::sync::mpsc::channel::<()>();
            // Ends when the sender is dropped, after the last operation.
            tokio::task::spawn_blocking(move || {
                let _ = wait.recv();
            });
            under_way.1 = Some(done);
        }
        under_way.0 += 1;
        Some(HoldingTime(self))
    }
}

impl Drop for HoldingTime<'_> {
    fn drop(&mut self) {
        let mut under_way = self.0.under_way.lock().expect("real-time I/O");
        under_way.0 -= 1;
        if under_way.0 == 0 {
            under_way.1 = None;
        }
    }
}

/// How to drop a store's connections.
pub(crate) struct DropConnections(pub(crate) Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for DropConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropConnections")
    }
}

impl Faults {
    /// The next `n` operations fail with [`Error::Unavailable`].
    pub fn fail_next(&self, n: u64) -> &Self {
        self.0.fail_next.fetch_add(n, Ordering::AcqRel);
        self
    }

    /// Every operation fails until [`Faults::heal`].
    pub fn fail_all(&self) -> &Self {
        self.0.failing.store(true, Ordering::Release);
        self
    }

    /// Every operation fails for `d` (on tokio's clock).
    pub fn fail_for(&self, d: Duration) -> &Self {
        *self.0.fail_until.lock().expect("faults") = Some(tokio::time::Instant::now() + d);
        self
    }

    /// Every operation takes `d` longer.
    pub fn latency(&self, d: Duration) -> &Self {
        self.0
            .latency_us
            .store(d.as_micros() as u64, Ordering::Release);
        self
    }

    /// The next value read comes back corrupted (it reads as a miss).
    pub fn corrupt_next_read(&self) -> &Self {
        self.0.corrupt_next.fetch_add(1, Ordering::AcqRel);
        self
    }

    /// Drops the store's connection: the next operation fails as a lost
    /// connection would, and the store reconnects.
    pub fn drop_connection(&self) -> &Self {
        self.0.dropped.store(true, Ordering::Release);
        if let Some(drop_connections) = &*self.0.on_drop.lock().expect("faults") {
            (drop_connections.0)();
        }
        self
    }

    /// Stops every fault.
    pub fn heal(&self) -> &Self {
        self.0.fail_next.store(0, Ordering::Release);
        self.0.failing.store(false, Ordering::Release);
        *self.0.fail_until.lock().expect("faults") = None;
        self.0.latency_us.store(0, Ordering::Release);
        self.0.corrupt_next.store(0, Ordering::Release);
        self
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.0.injected.load(Ordering::Acquire)
    }
}

impl FaultState {
    /// Whether any fault is set: the engine then reaches the embedded
    /// store through the fault layer.
    pub(crate) fn injecting(&self) -> bool {
        self.failing.load(Ordering::Acquire)
            || self.fail_next.load(Ordering::Acquire) > 0
            || self.latency_us.load(Ordering::Acquire) > 0
            || self.corrupt_next.load(Ordering::Acquire) > 0
            || self.dropped.load(Ordering::Acquire)
            || self
                .fail_until
                .lock()
                .expect("faults")
                .is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// What to do before an operation: wait, then fail or not.
    pub(crate) async fn before(&self, op: Op) -> Result<()> {
        let latency = self.latency_us.load(Ordering::Acquire);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let until = *self.fail_until.lock().expect("faults");
        let failing = self.failing.load(Ordering::Acquire)
            || until.is_some_and(|t| tokio::time::Instant::now() < t)
            || self
                .fail_next
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
        if self.dropped.swap(false, Ordering::AcqRel) {
            self.injected.fetch_add(1, Ordering::AcqRel);
            return Err(Error::Unavailable(format!(
                "connection dropped (injected) during `{}`",
                op.name()
            )));
        }
        if failing {
            self.injected.fetch_add(1, Ordering::AcqRel);
            return Err(Error::Unavailable(format!(
                "injected failure of `{}`",
                op.name()
            )));
        }
        Ok(())
    }

    /// Whether this read's value must come back corrupted (the engine and
    /// the `Cache` handle ask when they decode).
    pub(crate) fn corrupts(&self) -> bool {
        self.corrupt_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Layer for Arc<FaultState> {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        attempt: impl Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            self.before(op).await?;
            let _holding = self.real_time_io.enter();
            attempt().await
        })
    }
}
