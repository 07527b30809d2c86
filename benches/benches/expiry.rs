//! What callers wait for when a hot key expires: 256 callers on one key
//! whose source takes 300 ms, for `#[cached]` with no option, `stale`,
//! `refresh = "early"` and `soft_timeout` (with `fail_safe`), and for a
//! cashews-style early refresh written by hand on a `Cache` handle (the
//! entry carries its "refresh after" time; the first caller past it starts
//! a refresh on its own task and returns the cached value).
//!
//! Per variant and round: a new key is computed once (the warm-up), then
//! the callers call it at a steady pace twice: just after it was stored
//! (the hit latency, far from expiry), and from 3.5 s before its expiry to
//! 0.6 s after (the window across the expiry, long enough that XFetch's
//! early refresh falls inside it). A caller's latency is counted from when
//! its call was due, not from when it could start (a caller stuck in one
//! call has its next calls counted from their due times, as wrk2 does), so
//! a stall shows in every call it delays. Counted as well: computations in
//! the window (one per expiry is the goal), and the latency of the calls
//! that started around the computation (from 50 ms before it started to
//! 100 ms after the source's 300 ms).
//!
//! Run on the embedded memory store, then on Redis; the default
//! multi-thread runtime (one worker per core), built here.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachekit::Cache;
use serde::{Deserialize, Serialize};

#[path = "../support/mod.rs"]
mod support;

use support::{Plan, Report, User, load_user, median, order, per_op, range, x};

/// How long the source takes.
const SOURCE: Duration = Duration::from_millis(300);
/// The entries' TTL.
/// (Long enough that the entry an early refresh stores does not reach its
/// own early-refresh zone before the window ends: at 12,800 calls per
/// second XFetch refreshes a 300 ms computation about 2.5 s before expiry.)
const TTL: Duration = Duration::from_secs(8);
/// When the hand-written variant refreshes (cashews' `early_ttl`).
const HAND_REFRESH_AFTER: Duration = Duration::from_secs(6);
const CALLERS: usize = 256;
/// Each caller calls once per period (12,800 calls per second in all).
const PERIOD: Duration = Duration::from_millis(20);
/// The hit phase: from this long after the warm-up stored the entry...
const HIT_FROM: Duration = Duration::from_millis(50);
/// ...to this long after.
const HIT_TO: Duration = Duration::from_millis(850);
/// The window across the expiry starts this long before it...
const BEFORE_EXPIRY: Duration = Duration::from_millis(3500);
/// ...and ends this long after.
const AFTER_EXPIRY: Duration = Duration::from_millis(600);
/// Around a computation: from this long before it started...
const AROUND_BEFORE: Duration = Duration::from_millis(50);
/// ...to this long after it should have ended.
const AROUND_AFTER: Duration = Duration::from_millis(100);

const VARIANTS: usize = 5;
const PLAIN: usize = 0;
const STALE: usize = 1;
const EARLY: usize = 2;
const SOFT: usize = 3;
const HAND: usize = 4;
const NAMES: [&str; VARIANTS] = [
    "no option (`ttl` only)",
    "`stale = \"10s\"`",
    "`refresh = \"early\"`",
    "`soft_timeout = \"50ms\"`, `fail_safe = \"1h\"`",
    "hand-written early refresh (cashews-style)",
];

static COMPUTED: [AtomicU64; VARIANTS] = [const { AtomicU64::new(0) }; VARIANTS];
/// When each variant's first computation since the last reset started.
static STARTED: [Mutex<Option<Instant>>; VARIANTS] = [const { Mutex::new(None) }; VARIANTS];

async fn source(variant: usize, id: u64) -> User {
    COMPUTED[variant].fetch_add(1, Ordering::Relaxed);
    STARTED[variant]
        .lock()
        .expect("started")
        .get_or_insert_with(Instant::now);
    tokio::time::sleep(SOURCE).await;
    load_user(id)
}

#[cachekit::cached(ttl = 8, key = "expiry:plain:{id}")]
async fn plain(id: u64) -> User {
    source(PLAIN, id).await
}

#[cachekit::cached(ttl = 8, stale = "10s", key = "expiry:stale:{id}")]
async fn stale(id: u64) -> User {
    source(STALE, id).await
}

#[cachekit::cached(ttl = 8, refresh = "early", key = "expiry:early:{id}")]
async fn early(id: u64) -> User {
    source(EARLY, id).await
}

#[cachekit::cached(
    ttl = 8,
    fail_safe = "1h",
    soft_timeout = "50ms",
    key = "expiry:soft:{id}"
)]
async fn soft(id: u64) -> User {
    source(SOFT, id).await
}

/// The hand-written variant's entry: the value and when to refresh it.
#[derive(Serialize, Deserialize)]
struct Early {
    value: User,
    refresh_after_ms: u64,
}

static HAND_CACHE: Cache = Cache::new("expiry-hand", TTL);
/// Keys being refreshed in this process: one refresh at a time per key.
static REFRESHING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

async fn hand_store(key: &str, value: &User) {
    let entry = Early {
        value: value.clone(),
        refresh_after_ms: unix_ms() + HAND_REFRESH_AFTER.as_millis() as u64,
    };
    // A cache that fails is a miss next time, as in the cached functions.
    let _ = HAND_CACHE.set_with_ttl(key, &entry, TTL).await;
}

/// Early refresh by hand: what users write without `refresh = "early"`.
async fn hand(id: u64) -> User {
    let key = format!("hand:{id}");
    if let Ok(Some(entry)) = HAND_CACHE.get::<Early>(&key).await {
        if unix_ms() >= entry.refresh_after_ms
            && REFRESHING.lock().expect("refreshing").insert(key.clone())
        {
            tokio::spawn(async move {
                let value = source(HAND, id).await;
                hand_store(&key, &value).await;
                REFRESHING.lock().expect("refreshing").remove(&key);
            });
        }
        return entry.value;
    }
    let value = source(HAND, id).await;
    hand_store(&key, &value).await;
    value
}

async fn call(variant: usize, id: u64) -> User {
    match variant {
        PLAIN => plain(id).await,
        STALE => stale(id).await,
        EARLY => early(id).await,
        SOFT => soft(id).await,
        _ => hand(id).await,
    }
}

/// A call's start (its due time, or when it started if the caller was
/// idle then), from the run's epoch, and its latency, in nanoseconds.
type Sample = (u64, u64);

/// `CALLERS` callers, each calling once per `PERIOD` from `from` to `to`
/// (staggered over the period).
async fn phase(variant: usize, id: u64, epoch: Instant, from: Instant, to: Instant) -> Vec<Sample> {
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut due = from + PERIOD * i as u32 / CALLERS as u32;
                let mut last_done = Instant::now();
                while due < to {
                    tokio::time::sleep_until(due.into()).await;
                    let began = Instant::now();
                    // Behind schedule: the call was due while the caller
                    // was still in its previous one.
                    let reference = if last_done > due { due } else { began };
                    black_box(call(variant, id).await);
                    let done = Instant::now();
                    samples.push((
                        (reference - epoch).as_nanos() as u64,
                        (done - reference).as_nanos() as u64,
                    ));
                    last_done = done;
                    due += PERIOD;
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in callers {
        all.extend(c.await.expect("caller"));
    }
    all
}

/// Latency percentiles of some samples.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    calls: usize,
}

fn latency(samples: impl Iterator<Item = u64>) -> Latency {
    let mut v: Vec<u64> = samples.collect();
    assert!(!v.is_empty(), "no calls measured");
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64;
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1] as f64,
        calls: v.len(),
    }
}

/// One variant's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Figures {
    hit: Latency,
    window: Latency,
    around: Latency,
    computations: u64,
    /// When the computation in the window started, from the expiry (ms;
    /// negative: before it).
    started_ms: f64,
}

async fn scenario(variant: usize, id: u64) -> Figures {
    let epoch = Instant::now();
    black_box(call(variant, id).await);
    let stored = Instant::now();
    let expiry = stored + TTL;
    let warm = COMPUTED[variant].load(Ordering::Relaxed);
    *STARTED[variant].lock().expect("started") = None;
    let hits = phase(variant, id, epoch, stored + HIT_FROM, stored + HIT_TO).await;
    assert_eq!(
        COMPUTED[variant].load(Ordering::Relaxed),
        warm,
        "{}: no computation while the key is fresh",
        NAMES[variant]
    );
    let window = phase(
        variant,
        id,
        epoch,
        expiry - BEFORE_EXPIRY,
        expiry + AFTER_EXPIRY,
    )
    .await;
    let computations = COMPUTED[variant].load(Ordering::Relaxed) - warm;
    let started = STARTED[variant]
        .lock()
        .expect("started")
        .expect("a computation ran");
    let started_ms = (started - epoch).as_secs_f64() * 1e3 - (expiry - epoch).as_secs_f64() * 1e3;
    let from = (started - AROUND_BEFORE - epoch).as_nanos() as u64;
    let to = (started + SOURCE + AROUND_AFTER - epoch).as_nanos() as u64;
    Figures {
        hit: latency(hits.iter().map(|s| s.1)),
        window: latency(window.iter().map(|s| s.1)),
        around: latency(
            window
                .iter()
                .filter(|s| (from..to).contains(&s.0))
                .map(|s| s.1),
        ),
        computations,
        started_ms,
    }
}

fn ns(v: f64) -> String {
    per_op(Duration::from_nanos(v as u64))
}

/// Median and range of a ratio over rounds.
fn ratio_cell(values: &[f64]) -> String {
    let (lo, hi) = range(values);
    format!("{} ({} – {})", x(median(values)), x(lo), x(hi))
}

fn report_backend(report: &mut Report, backend: &str, rounds: &[[Figures; VARIANTS]]) {
    let pick = |v: usize, f: &dyn Fn(&Figures) -> f64| -> Vec<f64> {
        rounds.iter().map(|r| f(&r[v])).collect()
    };
    let mut rows = Vec::new();
    for (v, name) in NAMES.iter().enumerate() {
        let computations = pick(v, &|f| f.computations as f64);
        let (clo, chi) = range(&computations);
        rows.push(vec![
            (*name).to_owned(),
            ns(median(&pick(v, &|f| f.hit.p50))),
            ns(median(&pick(v, &|f| f.hit.p99))),
            ns(median(&pick(v, &|f| f.window.p50))),
            ns(median(&pick(v, &|f| f.window.p99))),
            ns(median(&pick(v, &|f| f.window.max))),
            ns(median(&pick(v, &|f| f.around.p99))),
            ns(median(&pick(v, &|f| f.around.max))),
            if clo == chi {
                format!("{clo:.0} every round")
            } else {
                format!("{clo:.0} – {chi:.0}")
            },
            format!("{:+.0} ms", median(&pick(v, &|f| f.started_ms))),
        ]);
    }
    report.text(&format!(
        "**{backend}.** Latencies are medians over rounds; \"window\" is every call from {} s before the expiry to {} s after ({} calls a round), \"around\" the calls that started from {} ms before the computation to {} ms after the source's {} ms.",
        BEFORE_EXPIRY.as_secs_f64(),
        AFTER_EXPIRY.as_secs_f64(),
        rounds[0][PLAIN].window.calls,
        AROUND_BEFORE.as_millis(),
        AROUND_AFTER.as_millis(),
        SOURCE.as_millis(),
    ));
    report.table(
        &[
            "variant",
            "hit p50",
            "hit p99",
            "window p50",
            "window p99",
            "window max",
            "around p99",
            "around max",
            "computations in the window",
            "first computation started (from expiry)",
        ],
        &rows,
    );
    let mut rows = Vec::new();
    for (v, name) in NAMES.iter().enumerate() {
        let around_vs_p50 = pick(v, &|f| f.around.p99 / f.hit.p50);
        let around_vs_p99 = pick(v, &|f| f.around.p99 / f.hit.p99);
        let window_vs_p99 = pick(v, &|f| f.window.p99 / f.hit.p99);
        let floor = pick(v, &|f| f.hit.p99 / f.hit.p50);
        let goal = matches!(v, STALE | EARLY);
        let met = |r: &[f64]| {
            if !goal {
                "–"
            } else if median(r) < 2.0 {
                "yes"
            } else {
                "**no**"
            }
        };
        rows.push(vec![
            (*name).to_owned(),
            ratio_cell(&around_vs_p50),
            met(&around_vs_p50).to_owned(),
            ratio_cell(&around_vs_p99),
            met(&around_vs_p99).to_owned(),
            ratio_cell(&window_vs_p99),
            ratio_cell(&floor),
        ]);
    }
    report.text(&format!(
        "**{backend}**, ratios (median over rounds, range in brackets); the bar, for `stale` and `refresh = \"early\"`: p99 at the expiry under 2x the hit latency, read against the hits' p50 and against their p99 (the last column is the hits' own p99 ÷ p50, with no expiry anywhere near)."
    ));
    report.table(
        &[
            "variant",
            "around p99 ÷ hit p50",
            "< 2x",
            "around p99 ÷ hit p99",
            "< 2x",
            "window p99 ÷ hit p99",
            "hits alone: p99 ÷ p50",
        ],
        &rows,
    );
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    plan: Plan,
    backend: &str,
    first_id: u64,
) -> Vec<[Figures; VARIANTS]> {
    let mut rounds = Vec::new();
    for round in 0..plan.rounds {
        let mut figures = [None; VARIANTS];
        for v in order(round, VARIANTS) {
            let id = first_id + round as u64;
            let f = runtime.block_on(scenario(v, id));
            eprintln!(
                "{backend} round {} {}: hit p50 {} p99 {}; window p99 {} max {}; around p99 {} max {}; {} computation(s), started {:+.0} ms",
                round + 1,
                NAMES[v],
                ns(f.hit.p50),
                ns(f.hit.p99),
                ns(f.window.p99),
                ns(f.window.max),
                ns(f.around.p99),
                ns(f.around.max),
                f.computations,
                f.started_ms,
            );
            figures[v] = Some(f);
        }
        rounds.push(figures.map(|f| f.expect("every variant ran")));
    }
    rounds
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start(
        "expiry",
        "Latency across an expiry: stale, early refresh, soft timeout",
        plan,
    );
    let server = support::RedisServer::start();
    // The default multi-thread runtime: one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = runtime.metrics().num_workers();

    runtime
        .block_on(cachekit::init(cachekit::Config::memory()))
        .expect("init memory");
    let memory = measure(&runtime, plan, "memory", 1);
    runtime
        .block_on(cachekit::init(cachekit::Config::redis(&server.url())))
        .expect("init redis");
    let redis = measure(&runtime, plan, "redis", 1_000);
    drop(server);

    report.text(&format!(
        "This bench builds its own runtime: the default multi-thread runtime, {workers} worker threads (one per core). \
         Per variant and round: a new key is computed once (the source sleeps {} ms), then {CALLERS} callers, each calling once every {} ms (staggered; {} calls per second in all), call it for {} ms just after it was stored (the hit latency), and again from {} s before its {} s TTL runs out to {} s after. \
         A call's latency counts from when it was due: a caller held up by one call has its next calls counted from their due times, so a stall shows in every call it delays. \
         The hand-written variant stores `{{ value, refresh_after }}` with `Cache::set_with_ttl` and refreshes {} s after the store: the first caller past that time spawns the refresh (one per key, by an in-process set of keys being refreshed) and returns the cached value.",
        SOURCE.as_millis(),
        PERIOD.as_millis(),
        CALLERS as u128 * 1000 / PERIOD.as_millis(),
        (HIT_TO - HIT_FROM).as_millis(),
        BEFORE_EXPIRY.as_secs_f64(),
        TTL.as_secs(),
        AFTER_EXPIRY.as_secs_f64(),
        HAND_REFRESH_AFTER.as_secs(),
    ));
    report_backend(&mut report, "Embedded memory store", &memory);
    report_backend(&mut report, "Redis", &redis);
    report.finish();
}
