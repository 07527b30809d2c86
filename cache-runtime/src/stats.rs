//! Counters: hits, misses, errors, decode failures and latency, per cached
//! function and per namespace, read through [`stats()`].
//!
//! Counting is a relaxed atomic add on counters that live as long as the
//! program (a cached function's are in its static call site); a snapshot sums
//! them. With the `metrics` feature every count is also reported through the
//! `metrics` facade, labelled `function` or `namespace`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// What a set of counters is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A cached function (`#[cached]`).
    Function,
    /// A namespace of the `Cache` API.
    Namespace,
    /// Everything else (invalidations, locks).
    Other,
}

/// Shards of counters: each thread counts in its own shard, on its own
/// cache lines, so that a hot function counted from every core does not
/// bounce one line between them. A snapshot sums the shards.
const SHARDS: usize = 8;

/// One shard: the counts (indexed by [`Count`]), and latency sums, sample
/// counts and maxima for hits and misses.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    counts: [AtomicU64; COUNTS],
    hit_ns: AtomicU64,
    hit_samples: AtomicU64,
    hit_max_ns: AtomicU64,
    miss_ns: AtomicU64,
    miss_samples: AtomicU64,
    miss_max_ns: AtomicU64,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            counts: [const { AtomicU64::new(0) }; COUNTS],
            hit_ns: AtomicU64::new(0),
            hit_samples: AtomicU64::new(0),
            hit_max_ns: AtomicU64::new(0),
            miss_ns: AtomicU64::new(0),
            miss_samples: AtomicU64::new(0),
            miss_max_ns: AtomicU64::new(0),
        }
    }
}

/// The shard of the current thread.
fn shard_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.try_with(|i| *i).unwrap_or(0)
}

/// Whether this call's latency is measured: one call in
/// [`LATENCY_SAMPLING`] per thread (the first included), so that most hits
/// read no clock. Means and maxima are over the sampled calls.
pub(crate) fn sample_latency() -> bool {
    let sampled = next_sampled();
    count_call();
    sampled
}

thread_local! {
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the next call will be sampled, without counting it (the fast
/// hit path decides before it knows whether it will serve the call).
#[inline]
pub(crate) fn next_sampled() -> bool {
    CALLS
        .try_with(|calls| calls.get() % LATENCY_SAMPLING == 0)
        .unwrap_or(false)
}

/// Counts a call towards sampling.
#[inline]
pub(crate) fn count_call() {
    let _ = CALLS.try_with(|calls| calls.set(calls.get().wrapping_add(1)));
}

/// One call in this many has its latency measured.
pub(crate) const LATENCY_SAMPLING: u32 = 8;

/// The counters of one function or namespace.
#[derive(Debug)]
pub struct Counters {
    scope: Scope,
    name: &'static str,
    /// Listed in the process-wide registry (after the first count), unless
    /// private to an isolated cache.
    registered: AtomicBool,
    shards: [Shard; SHARDS],
}

/// Which count an event adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Count {
    Hit,
    Miss,
    StaleHit,
    LocalHit,
    Error,
    DecodeFailure,
    Computation,
    Refresh,
    Invalidation,
    RefreshFailed,
    FailSafe,
    SoftTimeout,
    HardTimeout,
    Unstorable,
    Fenced,
}

const COUNTS: usize = 15;

impl Count {
    #[cfg(feature = "metrics")]
    fn metric(self) -> &'static str {
        match self {
            Count::Hit => "cachekit_hits_total",
            Count::Miss => "cachekit_misses_total",
            Count::StaleHit => "cachekit_stale_hits_total",
            Count::LocalHit => "cachekit_local_hits_total",
            Count::Error => "cachekit_errors_total",
            Count::DecodeFailure => "cachekit_decode_failures_total",
            Count::Computation => "cachekit_computations_total",
            Count::Refresh => "cachekit_refreshes_total",
            Count::Invalidation => "cachekit_invalidations_total",
            Count::RefreshFailed => "cachekit_refresh_failures_total",
            Count::FailSafe => "cachekit_fail_safe_total",
            Count::SoftTimeout => "cachekit_soft_timeouts_total",
            Count::HardTimeout => "cachekit_hard_timeouts_total",
            Count::Unstorable => "cachekit_unstorable_total",
            Count::Fenced => "cachekit_fenced_total",
        }
    }
}

static REGISTRY: Mutex<Vec<&'static Counters>> = Mutex::new(Vec::new());
static NAMESPACES: LazyLock<Mutex<std::collections::HashMap<String, &'static Counters>>> =
    LazyLock::new(Default::default);
pub(crate) static OTHER: Counters = Counters::new(Scope::Other, "other");

impl Counters {
    /// Zeroed counters. They are listed in [`stats()`] after their first count.
    pub const fn new(scope: Scope, name: &'static str) -> Self {
        Counters {
            scope,
            name,
            registered: AtomicBool::new(false),
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    /// Counters that the process-wide [`stats()`] never lists: those of an
    /// isolated cache (`testing`), which keeps its own.
    pub(crate) fn private(scope: Scope, name: &'static str) -> Self {
        Counters {
            scope,
            name,
            registered: AtomicBool::new(true),
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    /// The scope counted.
    pub(crate) fn scope(&self) -> Scope {
        self.scope
    }

    /// The counters of a namespace, created on first use.
    pub(crate) fn for_namespace(ns: &str) -> &'static Counters {
        let mut map = NAMESPACES.lock().expect("stats registry");
        if let Some(c) = map.get(ns) {
            return c;
        }
        let name: &'static str = Box::leak(ns.to_owned().into_boxed_str());
        let counters: &'static Counters =
            Box::leak(Box::new(Counters::new(Scope::Namespace, name)));
        map.insert(ns.to_owned(), counters);
        counters
    }

    fn ensure_registered(&'static self) {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            REGISTRY.lock().expect("stats registry").push(self);
        }
    }

    /// The function's path or the namespace counted.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Adds one to `count`.
    #[inline]
    pub(crate) fn add(&'static self, count: Count) {
        self.add_n(count, 1);
    }

    pub(crate) fn add_n(&'static self, count: Count, n: u64) {
        self.ensure_registered();
        self.shards[shard_index()].counts[count as usize].fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            let label = match self.scope {
                Scope::Function => "function",
                Scope::Namespace => "namespace",
                Scope::Other => "scope",
            };
            metrics::counter!(count.metric(), label => self.name).increment(n);
        }
    }

    /// Records how long a hit or a miss took.
    pub(crate) fn latency(&'static self, hit: bool, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128) as u64;
        let shard = &self.shards[shard_index()];
        let (sum, samples, max) = if hit {
            (&shard.hit_ns, &shard.hit_samples, &shard.hit_max_ns)
        } else {
            (&shard.miss_ns, &shard.miss_samples, &shard.miss_max_ns)
        };
        sum.fetch_add(ns, Ordering::Relaxed);
        samples.fetch_add(1, Ordering::Relaxed);
        // A new maximum is rare: read first, write only then.
        if ns > max.load(Ordering::Relaxed) {
            max.fetch_max(ns, Ordering::Relaxed);
        }
        #[cfg(feature = "metrics")]
        {
            let label = if matches!(self.scope, Scope::Namespace) {
                "namespace"
            } else {
                "function"
            };
            let name = if hit {
                "cachekit_hit_seconds"
            } else {
                "cachekit_miss_seconds"
            };
            metrics::histogram!(name, label => self.name).record(took.as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> Counts {
        let sum = |f: &dyn Fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let max = |f: &dyn Fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .max()
                .unwrap_or(0)
        };
        let count = |c: Count| sum(&|s| &s.counts[c as usize]);
        Counts {
            hits: count(Count::Hit),
            misses: count(Count::Miss),
            stale_hits: count(Count::StaleHit),
            local_hits: count(Count::LocalHit),
            errors: count(Count::Error),
            decode_failures: count(Count::DecodeFailure),
            computations: count(Count::Computation),
            refreshes: count(Count::Refresh),
            invalidations: count(Count::Invalidation),
            refresh_failures: count(Count::RefreshFailed),
            fail_safe: count(Count::FailSafe),
            soft_timeouts: count(Count::SoftTimeout),
            hard_timeouts: count(Count::HardTimeout),
            unstorable: count(Count::Unstorable),
            fenced: count(Count::Fenced),
            mean_hit_latency: mean(sum(&|s| &s.hit_ns), sum(&|s| &s.hit_samples)),
            max_hit_latency: Duration::from_nanos(max(&|s| &s.hit_max_ns)),
            mean_miss_latency: mean(sum(&|s| &s.miss_ns), sum(&|s| &s.miss_samples)),
            max_miss_latency: Duration::from_nanos(max(&|s| &s.miss_max_ns)),
        }
    }
}

/// A mean over sampled latencies: `None` when no call was sampled (a mean
/// of nothing is unknown, not zero).
fn mean(total_ns: u64, n: u64) -> Option<Duration> {
    total_ns.checked_div(n).map(Duration::from_nanos)
}

/// The counts of one function, one namespace, or all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Calls served from the cache without computing (any tier, stale
    /// values included).
    pub hits: u64,
    /// Calls that computed: nothing usable was cached (absent, expired or
    /// undecodable).
    pub misses: u64,
    /// Of the hits, values served stale while one caller refreshed them.
    pub stale_hits: u64,
    /// Of the hits, values served from the in-process tier.
    pub local_hits: u64,
    /// Backend errors and timeouts (the call failed open).
    pub errors: u64,
    /// Entries that could not be decoded (read as misses and overwritten).
    pub decode_failures: u64,
    /// Times the function body ran.
    pub computations: u64,
    /// Early or stale refreshes.
    pub refreshes: u64,
    /// Invalidations run (keys, patterns, tags, namespaces).
    pub invalidations: u64,
    /// Background refreshes whose computation failed (the old value stayed).
    pub refresh_failures: u64,
    /// Fail-safe activations: a failed computation answered with the last
    /// good value.
    pub fail_safe: u64,
    /// Callers answered with the last good value at the soft timeout while
    /// the computation went on.
    pub soft_timeouts: u64,
    /// Computations abandoned at their hard timeout.
    pub hard_timeouts: u64,
    /// Values returned but not stored because they would not read back as
    /// themselves (JSON and NaN, say).
    pub unstorable: u64,
    /// Results not stored because an invalidation of their key came while
    /// they were computed (stale-set fencing at work).
    pub fenced: u64,
    /// Mean time to serve a hit (any tier), `None` if no hit was sampled.
    /// Latencies are sampled: one call in eight per thread is timed, so
    /// that most hits read no clock.
    pub mean_hit_latency: Option<Duration>,
    /// Longest sampled hit.
    pub max_hit_latency: Duration,
    /// Mean time of a miss, computation included (sampled), `None` if no
    /// miss was sampled.
    pub mean_miss_latency: Option<Duration>,
    /// Longest sampled miss.
    pub max_miss_latency: Duration,
}

impl Counts {
    /// Hits over calls, between 0 and 1 (0 before any call).
    pub fn hit_rate(&self) -> f64 {
        let calls = self.hits + self.misses;
        if calls == 0 {
            0.0
        } else {
            self.hits as f64 / calls as f64
        }
    }

    fn add(&mut self, o: &Counts) {
        let weighted = |a: Option<Duration>, na: u64, b: Option<Duration>, nb: u64| {
            let (na, nb) = (
                if a.is_some() { na } else { 0 },
                if b.is_some() { nb } else { 0 },
            );
            let n = u128::from(na) + u128::from(nb);
            if n == 0 {
                return a.or(b);
            }
            let total = a.unwrap_or_default().as_nanos() * u128::from(na)
                + b.unwrap_or_default().as_nanos() * u128::from(nb);
            Some(Duration::from_nanos(
                (total / n).min(u128::from(u64::MAX)) as u64
            ))
        };
        self.mean_hit_latency =
            weighted(self.mean_hit_latency, self.hits, o.mean_hit_latency, o.hits);
        self.mean_miss_latency = weighted(
            self.mean_miss_latency,
            self.misses,
            o.mean_miss_latency,
            o.misses,
        );
        self.max_hit_latency = self.max_hit_latency.max(o.max_hit_latency);
        self.max_miss_latency = self.max_miss_latency.max(o.max_miss_latency);
        self.hits += o.hits;
        self.misses += o.misses;
        self.stale_hits += o.stale_hits;
        self.local_hits += o.local_hits;
        self.errors += o.errors;
        self.decode_failures += o.decode_failures;
        self.computations += o.computations;
        self.refreshes += o.refreshes;
        self.invalidations += o.invalidations;
        self.refresh_failures += o.refresh_failures;
        self.fail_safe += o.fail_safe;
        self.soft_timeouts += o.soft_timeouts;
        self.hard_timeouts += o.hard_timeouts;
        self.unstorable += o.unstorable;
        self.fenced += o.fenced;
    }
}

/// A snapshot of every counter since the program started.
///
/// The totals are the snapshot's own fields (`stats().hits`, through
/// `Deref` to [`Counts`]); `functions` and `namespaces` break them down.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// All functions and namespaces together, with latencies.
    pub totals: Counts,
    /// Per cached function, by its path (`my_crate::users::get_user`).
    pub functions: BTreeMap<String, Counts>,
    /// Per namespace of the `Cache` API.
    pub namespaces: BTreeMap<String, Counts>,
    /// Whether caching is off, and why (`None`: it is on). The same as
    /// `health().caching`, without the round trip.
    pub off: Option<String>,
}

impl std::ops::Deref for Stats {
    type Target = Counts;

    fn deref(&self) -> &Counts {
        &self.totals
    }
}

impl Stats {
    /// The counts of a cached function, by its full path or its last
    /// segments (`"get_user"`, `"users::get_user"`).
    pub fn function(&self, name: &str) -> Option<&Counts> {
        self.functions.get(name).or_else(|| {
            let suffix = format!("::{name}");
            self.functions
                .iter()
                .find(|(k, _)| k.ends_with(&suffix))
                .map(|(_, v)| v)
        })
    }

    /// The counts of a namespace.
    pub fn namespace(&self, name: &str) -> Option<&Counts> {
        self.namespaces.get(name)
    }

    /// Hits over calls, all tiers, between 0 and 1.
    pub fn hit_rate(&self) -> f64 {
        self.totals.hit_rate()
    }
}

/// A snapshot of the counters of every cached function and namespace of
/// the process (an isolated test cache keeps its own: `testing::stats()`).
pub fn stats() -> Stats {
    let registry = REGISTRY.lock().expect("stats registry").clone();
    let mut stats = snapshot(registry.iter().copied());
    stats.off = crate::global::off_reason();
    stats
}

/// A snapshot of some counters.
pub(crate) fn snapshot<'a>(counters: impl Iterator<Item = &'a Counters>) -> Stats {
    let mut stats = Stats::default();
    for counters in counters {
        let counts = counters.snapshot();
        stats.totals.add(&counts);
        let map = match counters.scope {
            Scope::Function => &mut stats.functions,
            Scope::Namespace => &mut stats.namespaces,
            Scope::Other => continue,
        };
        map.entry(counters.name.to_owned())
            .or_default()
            .add(&counts);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        static A: Counters = Counters::new(Scope::Function, "tests::stats::a");
        A.add(Count::Hit);
        A.add(Count::Hit);
        A.add(Count::Miss);
        A.latency(true, Duration::from_micros(10));
        let ns = Counters::for_namespace("stats-test");
        ns.add(Count::DecodeFailure);
        let s = stats();
        let a = s.function("a").unwrap();
        assert_eq!((a.hits, a.misses), (2, 1));
        assert!(a.hit_rate() > 0.6);
        assert_eq!(s.namespace("stats-test").unwrap().decode_failures, 1);
        assert!(s.hits >= 2 && s.decode_failures >= 1);
        assert!(std::ptr::eq(ns, Counters::for_namespace("stats-test")));
    }

    /// With the `metrics` feature, every count also reaches the recorder,
    /// labelled by function or namespace.
    #[cfg(feature = "metrics")]
    #[test]
    fn counts_reach_the_metrics_facade() {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        use metrics::{
            Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
            Unit,
        };

        #[derive(Default)]
        struct Seen(Mutex<HashMap<String, u64>>);
        struct Cell(Arc<Seen>, String);
        impl CounterFn for Cell {
            fn increment(&self, value: u64) {
                *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
            }
            fn absolute(&self, _: u64) {}
        }
        struct Capture(Arc<Seen>);
        impl Recorder for Capture {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let name = format!("{}{{{}}}", key.name(), labels.join(","));
                Counter::from_arc(Arc::new(Cell(self.0.clone(), name)))
            }
            fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::noop()
            }
            fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::noop()
            }
        }

        static F: Counters = Counters::new(Scope::Function, "tests::metrics::f");
        let seen = Arc::new(Seen::default());
        metrics::with_local_recorder(&Capture(seen.clone()), || {
            F.add(Count::Hit);
            F.add(Count::Hit);
            F.add(Count::Miss);
            Counters::for_namespace("metrics-ns").add(Count::DecodeFailure);
        });
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen["cachekit_hits_total{function=tests::metrics::f}"], 2);
        assert_eq!(seen["cachekit_misses_total{function=tests::metrics::f}"], 1);
        assert_eq!(
            seen["cachekit_decode_failures_total{namespace=metrics-ns}"],
            1
        );
    }
}
