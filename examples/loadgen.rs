//! A load generator for the trading example: N concurrent traders for a
//! duration, uncached against cached, side by side.
//!
//! ```text
//! cargo run --release --features http --example loadgen -- --users 100 --duration 30s --chart docs/loadtest.svg
//! ```
//!
//! With no URL it starts the trading service itself, once per mode, one
//! after the other, as child processes of this binary (`loadgen --serve` is
//! the trading example): by default first with `CACHE_ENABLED=false`, then
//! with caching on (Redis when `REDIS_URL` is set, the embedded store
//! otherwise). `--modes uncached,functions,layer` runs those three: the
//! reads uncached, cached per function (`#[cached]` behind plain handlers,
//! `CACHE_MODE=functions`), and cached as HTTP responses by
//! `cachekit::http::CacheLayer` (`CACHE_MODE=layer`). The `TRADING_*`
//! variables reach the service, so `TRADING_ROWS=20000` makes a quick run.
//! Or point it at services already running:
//!
//! ```text
//! loadgen --url http://127.0.0.1:3000                  # one service, whatever its mode
//! loadgen --uncached-url http://127.0.0.1:3001 --cached-url http://127.0.0.1:3000
//! ```
//!
//! Each virtual trader logs in (`POST /api/v1/login`), then sends requests
//! one after the other, pausing `--think` between them (0: back to back, the
//! service's capacity; `300ms`: a dashboard refreshing each of its three
//! panels about once a second): a read of one of the three views, or, with
//! probability `--write-ratio` (0.05), a fill recorded on one of its
//! accounts, which invalidates its three cached views. The first
//! `--warmup` (2s) is not measured. Reported per mode: throughput,
//! p50/p95/p99/max latency over every request, error rate (non-2xx or
//! transport errors), cache hit rate (the reads answered `x-cache: hit`),
//! and database queries per second (`GET /stats` before and after).
//! Options can also come from `LOADGEN_USERS`, `LOADGEN_DURATION`,
//! `LOADGEN_URL`.

#[path = "trading/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod trading;

use std::error::Error;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;

type BoxError = Box<dyn Error + Send + Sync>;

const VIEWS: [&str; 3] = [
    "/api/v1/reconciliation/status",
    "/api/v1/positions",
    "/api/v1/guards",
];

#[derive(Debug, Clone)]
struct Options {
    users: u32,
    duration: Duration,
    warmup: Duration,
    write_ratio: f64,
    /// Pause between a trader's requests (0: back to back).
    think: Duration,
    password: String,
    chart: PathBuf,
    targets: Targets,
}

/// How a spawned service caches its reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `CACHE_ENABLED=false`.
    Uncached,
    /// `CACHE_MODE=functions`: `#[cached]` views.
    Functions,
    /// `CACHE_MODE=layer`: the HTTP layer.
    Layer,
}

impl Mode {
    fn parse_list(list: &str) -> Result<Vec<Mode>, String> {
        list.split(',')
            .map(|m| match m.trim() {
                "uncached" => Ok(Mode::Uncached),
                "functions" | "cached" => Ok(Mode::Functions),
                "layer" => Ok(Mode::Layer),
                other => Err(format!(
                    "--modes: {other:?} is not uncached, functions or layer"
                )),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Targets {
    /// Start the service in each of these modes.
    Spawn(Vec<Mode>),
    /// One running service.
    One(String),
    /// Two running services.
    Both { uncached: String, cached: String },
}

const USAGE: &str = "usage: loadgen [--users N] [--duration 30s] [--warmup 2s] [--write-ratio 0.05] \
[--think 0] [--chart target/loadtest.svg] [--modes uncached,functions,layer] \
[--url URL | --uncached-url URL --cached-url URL]";

impl Options {
    fn parse() -> Result<Options, String> {
        let env = |name: &str| std::env::var(name).ok();
        let mut o = Options {
            users: 100,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(2),
            write_ratio: 0.05,
            think: Duration::ZERO,
            password: env("TRADING_PASSWORD").unwrap_or_else(|| "trading-demo".into()),
            chart: PathBuf::from("target/loadtest.svg"),
            targets: Targets::Spawn(Vec::new()),
        };
        let (mut url, mut cached, mut uncached) = (env("LOADGEN_URL"), None, None);
        let mut modes = vec![Mode::Uncached, Mode::Functions];
        if let Some(v) = env("LOADGEN_USERS") {
            o.users = v.parse().map_err(|_| format!("LOADGEN_USERS={v:?}"))?;
        }
        if let Some(v) = env("LOADGEN_DURATION") {
            o.duration = cachekit::parse_duration(&v).ok_or(format!("LOADGEN_DURATION={v:?}"))?;
        }
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
            match flag.as_str() {
                "--users" => o.users = value()?.parse().map_err(|e| format!("--users: {e}"))?,
                "--duration" | "--warmup" | "--think" => {
                    let v = value()?;
                    let d = if v.trim() == "0" {
                        Duration::ZERO
                    } else {
                        cachekit::parse_duration(&v).ok_or(format!("{flag} {v:?}: say 30s"))?
                    };
                    match flag.as_str() {
                        "--duration" => o.duration = d,
                        "--warmup" => o.warmup = d,
                        _ => o.think = d,
                    }
                }
                "--write-ratio" => {
                    o.write_ratio = value()?
                        .parse()
                        .map_err(|e| format!("--write-ratio: {e}"))?;
                    if !(0.0..=1.0).contains(&o.write_ratio) {
                        return Err("--write-ratio is between 0 and 1".into());
                    }
                }
                "--chart" => o.chart = value()?.into(),
                "--modes" => modes = Mode::parse_list(&value()?)?,
                "--url" => url = Some(value()?),
                "--cached-url" => cached = Some(value()?),
                "--uncached-url" => uncached = Some(value()?),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        if o.users == 0 {
            return Err("--users must be at least 1".into());
        }
        o.targets = match (url, uncached, cached) {
            (None, None, None) => Targets::Spawn(modes),
            (Some(url), None, None) => Targets::One(url),
            (None, Some(uncached), Some(cached)) => Targets::Both { uncached, cached },
            _ => {
                return Err(format!(
                    "give --url, or both --uncached-url and --cached-url\n{USAGE}"
                ));
            }
        };
        Ok(o)
    }
}

/// What `GET /stats` says (the fields we use).
#[derive(Debug, Clone, Deserialize)]
struct Stats {
    cache_enabled: bool,
    cache_backend: String,
    /// `functions` or `layer` (absent from services that predate it).
    #[serde(default)]
    cache_mode: Option<String>,
    db_queries: u64,
}

/// One run against one service.
#[derive(Debug)]
struct Run {
    label: String,
    backend: String,
    /// Latencies of every measured request, in microseconds, sorted.
    latencies: Vec<u32>,
    /// Sorted latencies of cache hits, reads that ran SQL, writes.
    by_kind: [Vec<u32>; 3],
    seconds: f64,
    errors: u64,
    reads: u64,
    hits: u64,
    writes: u64,
    db_queries: u64,
    /// Per view, before the load: the median of a first and a second read.
    unloaded: Vec<(&'static str, f64, f64)>,
}

impl Run {
    fn requests(&self) -> u64 {
        self.latencies.len() as u64
    }

    fn throughput(&self) -> f64 {
        self.requests() as f64 / self.seconds
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }

    fn max(&self) -> f64 {
        self.latencies
            .last()
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    }

    fn error_rate(&self) -> f64 {
        self.errors as f64 / (self.requests().max(1)) as f64
    }

    fn hit_rate(&self) -> f64 {
        self.hits as f64 / (self.reads.max(1)) as f64
    }

    fn db_queries_per_second(&self) -> f64 {
        self.db_queries as f64 / self.seconds
    }
}

fn main() -> Result<(), BoxError> {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        return serve();
    }
    let options = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runs = runtime.block_on(run_all(&options))?;
    report(&options, &runs);
    chart(&options, &runs)?;
    println!("\nchart: {}", options.chart.display());
    Ok(())
}

/// `loadgen --serve`: the trading service, until stdin closes (the parent
/// ended) or a signal.
fn serve() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = [0u8; 64];
                while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            })
            .await;
        };
        let shutdown = async move {
            tokio::select! {
                () = trading::shutdown_signal() => {}
                () = stdin_closed => {}
            }
        };
        trading::run(shutdown)
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })
    })
}

async fn run_all(o: &Options) -> Result<Vec<Run>, BoxError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.users as usize + 8)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut runs = Vec::new();
    match &o.targets {
        Targets::Spawn(modes) => {
            for &mode in modes {
                let mut service = Service::start(mode)?;
                let result = async {
                    service.ready(&http).await?;
                    measure(o, &http, &service.url).await
                }
                .await;
                service.stop();
                runs.push(result?);
            }
        }
        Targets::One(url) => runs.push(measure(o, &http, url).await?),
        Targets::Both { uncached, cached } => {
            runs.push(measure(o, &http, uncached).await?);
            runs.push(measure(o, &http, cached).await?);
        }
    }
    Ok(runs)
}

/// A trading service this process started.
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(mode: Mode) -> Result<Service, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .env("PORT", port.to_string())
            .env("CACHE_ENABLED", (mode != Mode::Uncached).to_string())
            .env(
                "CACHE_MODE",
                if mode == Mode::Layer {
                    "layer"
                } else {
                    "functions"
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        eprintln!(
            "\nstarted the trading service on port {port} (caching {})",
            match mode {
                Mode::Uncached => "off",
                Mode::Functions => "on, per function",
                Mode::Layer => "on, HTTP layer",
            }
        );
        Ok(Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Waits for `/health` (seeding a million rows takes a few seconds).
    async fn ready(&mut self, http: &reqwest::Client) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the trading service exited: {status}").into());
            }
            if Instant::now() > deadline {
                return Err("the trading service did not start within 10 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        // Closing its stdin asks it to stop (and remove its database).
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn stats(http: &reqwest::Client, url: &str) -> Result<Stats, BoxError> {
    Ok(http
        .get(format!("{url}/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// What one virtual trader measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    /// The same, by kind: reads served from the cache, reads that ran SQL,
    /// writes.
    by_kind: [Vec<u32>; 3],
    errors: u64,
    reads: u64,
    hits: u64,
    writes: u64,
}

async fn measure(o: &Options, http: &reqwest::Client, url: &str) -> Result<Run, BoxError> {
    let before = stats(http, url).await?;
    let label = match (before.cache_enabled, before.cache_mode.as_deref()) {
        (false, _) => "uncached",
        (true, Some("layer")) => "cached (layer)",
        (true, _) => "cached (functions)",
    }
    .to_string();
    let backend = if before.cache_enabled {
        before.cache_backend.clone()
    } else {
        "-".into()
    };
    // Log every trader in first: logins are not part of the load.
    let mut tokens = Vec::new();
    for user in 1..=i64::from(o.users) {
        let response = http
            .post(format!("{url}/api/v1/login"))
            .json(&json!({"username": trading::username(user), "password": o.password}))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!(
                "login as {} failed ({}): does the service have {} traders (TRADING_USERS)?",
                trading::username(user),
                response.status(),
                o.users
            )
            .into());
        }
        let body: serde_json::Value = response.json().await?;
        let token = body["token"]
            .as_str()
            .ok_or("no token in the login answer")?;
        tokens.push((user, format!("Bearer {token}")));
    }

    let unloaded = unloaded(http, url, &tokens).await?;

    let started = Instant::now();
    let measure_from = started + o.warmup;
    let deadline = measure_from + o.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let progress = ProgressBar::new(o.duration.as_millis() as u64);
    progress.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {elapsed:>4} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    progress.set_prefix(label.clone());
    let ticker = {
        let (progress, sent, failed) = (progress.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                let n = sent.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, n);
                let phase = if now < measure_from {
                    "warming up, "
                } else {
                    ""
                };
                progress
                    .set_position(now.saturating_duration_since(measure_from).as_millis() as u64);
                progress.set_message(format!(
                    "{phase}{n} requests, {rate:.0}/s, {} errors",
                    failed.load(Ordering::Relaxed)
                ));
            }
        })
    };

    let mut tasks = Vec::new();
    for (user, auth) in tokens {
        let (http, url, sent, failed) =
            (http.clone(), url.to_string(), sent.clone(), failed.clone());
        let (write_ratio, think) = (o.write_ratio, o.think);
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(user as u64);
            let account = format!("{}-1", trading::username(user));
            let mut tally = Tally::default();
            let mut measuring = false;
            // Traders start spread over one think time, not in lockstep.
            tokio::time::sleep(think.mul_f64(rng.f64())).await;
            while Instant::now() < deadline {
                if !measuring && Instant::now() >= measure_from {
                    measuring = true;
                }
                let write = rng.f64() < write_ratio;
                let t0 = Instant::now();
                let result = if write {
                    http.post(format!("{url}/api/v1/reconciliations"))
                        .header("authorization", &auth)
                        .json(&random_fill(&mut rng, &account))
                        .send()
                        .await
                } else {
                    http.get(format!("{url}{}", VIEWS[rng.usize(0..VIEWS.len())]))
                        .header("authorization", &auth)
                        .send()
                        .await
                };
                let (ok, hit) = match result {
                    Ok(response) => {
                        let hit = response
                            .headers()
                            .get("x-cache")
                            .is_some_and(|v| v == "hit");
                        let ok = response.status().is_success();
                        // Read the body: it is part of the latency.
                        (response.bytes().await.is_ok() && ok, hit)
                    }
                    Err(_) => (false, false),
                };
                let took = t0.elapsed();
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if measuring {
                    let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
                    tally.latencies.push(us);
                    tally.by_kind[match (write, hit) {
                        (true, _) => WRITE,
                        (false, true) => HIT,
                        (false, false) => SQL_READ,
                    }]
                    .push(us);
                    tally.errors += u64::from(!ok);
                    if write {
                        tally.writes += 1;
                    } else {
                        tally.reads += 1;
                        tally.hits += u64::from(hit);
                    }
                }
                if !ok {
                    // A failing service is not hammered in a tight loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Between half and one and a half think times.
                tokio::time::sleep(think.mul_f64(0.5 + rng.f64())).await;
            }
            tally
        }));
    }
    // The database counter over the measured window.
    tokio::time::sleep_until(measure_from.into()).await;
    let at_start = stats(http, url).await?;
    let mut run = Run {
        label,
        backend,
        latencies: Vec::new(),
        by_kind: Default::default(),
        seconds: 0.0,
        errors: 0,
        reads: 0,
        hits: 0,
        writes: 0,
        db_queries: 0,
        unloaded,
    };
    for task in tasks {
        let tally = task.await?;
        run.latencies.extend(tally.latencies);
        for (all, more) in run.by_kind.iter_mut().zip(tally.by_kind) {
            all.extend(more);
        }
        run.errors += tally.errors;
        run.reads += tally.reads;
        run.hits += tally.hits;
        run.writes += tally.writes;
    }
    let at_end = stats(http, url).await?;
    run.seconds = measure_from
        .elapsed()
        .as_secs_f64()
        .max(o.duration.as_secs_f64());
    run.db_queries = at_end.db_queries - at_start.db_queries;
    ticker.abort();
    progress.finish_and_clear();
    run.latencies.sort_unstable();
    run.by_kind.iter_mut().for_each(|v| v.sort_unstable());
    eprintln!(
        "{}: {} requests in {:.1}s, p50 {:.1} ms, hit rate {:.1}%",
        run.label,
        run.requests(),
        run.seconds,
        run.percentile(50.0),
        run.hit_rate() * 100.0
    );
    Ok(run)
}

/// One request at a time, before the load: each view read twice by up to
/// 20 traders; the median of the first reads and of the second reads, in ms.
/// Uncached, both run the SQL; cached, the first is a miss and the second a
/// hit (unless another client read it within the TTL).
async fn unloaded(
    http: &reqwest::Client,
    url: &str,
    tokens: &[(i64, String)],
) -> Result<Vec<(&'static str, f64, f64)>, BoxError> {
    let mut medians = Vec::new();
    for view in VIEWS {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for (_, auth) in tokens.iter().take(20) {
            for times in [&mut first, &mut second] {
                let t0 = Instant::now();
                http.get(format!("{url}{view}"))
                    .header("authorization", auth)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        medians.push((view, median(&mut first), median(&mut second)));
    }
    Ok(medians)
}

const HIT: usize = 0;
const SQL_READ: usize = 1;
const WRITE: usize = 2;

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A fill; one in ten the broker booked differently (a break).
fn random_fill(rng: &mut fastrand::Rng, account: &str) -> serde_json::Value {
    const SYMBOLS: [(&str, f64); 6] = [
        ("AAPL", 231.4),
        ("MSFT", 418.9),
        ("JPM", 211.8),
        ("XOM", 117.6),
        ("NVDA", 121.3),
        ("KO", 69.8),
    ];
    let (symbol, price) = SYMBOLS[rng.usize(0..SYMBOLS.len())];
    let quantity = 10 * rng.i64(1..=50);
    let mut fill = json!({
        "account": account,
        "symbol": symbol,
        "side": if rng.bool() { "buy" } else { "sell" },
        "quantity": quantity,
        "price": (price * (0.99 + rng.f64() * 0.02) * 100.0).round() / 100.0,
    });
    if rng.usize(0..10) == 0 {
        fill["broker_quantity"] = json!(quantity - 10);
    }
    fill
}

fn report(o: &Options, runs: &[Run]) {
    let col = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("cache backend", col(&|r| r.backend.clone())),
        ("requests", col(&|r| r.requests().to_string())),
        (
            "throughput (req/s)",
            col(&|r| format!("{:.0}", r.throughput())),
        ),
        (
            "p50 latency (ms)",
            col(&|r| format!("{:.2}", r.percentile(50.0))),
        ),
        (
            "p95 latency (ms)",
            col(&|r| format!("{:.2}", r.percentile(95.0))),
        ),
        (
            "p99 latency (ms)",
            col(&|r| format!("{:.2}", r.percentile(99.0))),
        ),
        ("max latency (ms)", col(&|r| format!("{:.2}", r.max()))),
        (
            "error rate",
            col(&|r| format!("{:.2}%", r.error_rate() * 100.0)),
        ),
        (
            "cache hit rate (reads)",
            col(&|r| format!("{:.1}%", r.hit_rate() * 100.0)),
        ),
        (
            "DB queries/s",
            col(&|r| format!("{:.0}", r.db_queries_per_second())),
        ),
        (
            "reads / writes",
            col(&|r| format!("{} / {}", r.reads, r.writes)),
        ),
    ];
    println!(
        "\n{} concurrent traders, {:?} measured after a {:?} warm-up, {:.0}% writes, {}\n",
        o.users,
        o.duration,
        o.warmup,
        o.write_ratio * 100.0,
        if o.think.is_zero() {
            "no think time".to_string()
        } else {
            format!("{:?} think time", o.think)
        }
    );
    print!("| |");
    for r in runs {
        print!(" {} |", r.label);
    }
    print!("\n|---|");
    for _ in runs {
        print!("---:|");
    }
    println!();
    for (name, values) in rows {
        println!("| {name} | {} |", values.join(" | "));
    }

    println!("\nBy kind of request: count, p50 / p95 / p99 (ms):\n");
    print!("| kind |");
    for r in runs {
        print!(" {} |", r.label);
    }
    print!("\n|---|");
    for _ in runs {
        print!("---:|");
    }
    println!();
    for (kind, name) in [
        (HIT, "reads served from the cache"),
        (SQL_READ, "reads that ran SQL"),
        (WRITE, "writes"),
    ] {
        print!("| {name} |");
        for r in runs {
            let v = &r.by_kind[kind];
            if v.is_empty() {
                print!(" - |");
            } else {
                print!(
                    " {}: {:.2} / {:.2} / {:.2} |",
                    v.len(),
                    percentile(v, 50.0),
                    percentile(v, 95.0),
                    percentile(v, 99.0)
                );
            }
        }
        println!();
    }

    println!("\nUnloaded, one request at a time (median over up to 20 traders, ms):\n");
    print!("| view |");
    for r in runs {
        if r.label != "uncached" {
            print!(" {}, miss | {}, hit |", r.label, r.label);
        } else {
            print!(" {}, 1st read | {}, 2nd read |", r.label, r.label);
        }
    }
    print!("\n|---|");
    for _ in runs {
        print!("---:|---:|");
    }
    println!();
    for (i, view) in VIEWS.iter().enumerate() {
        print!("| `{view}` |");
        for r in runs {
            let (_, first, second) = r.unloaded[i];
            print!(" {first:.2} | {second:.2} |");
        }
        println!();
    }
}

/// The latency distributions as cumulative curves, on a log scale.
fn chart(o: &Options, runs: &[Run]) -> Result<(), BoxError> {
    use plotters::prelude::*;

    if let Some(dir) = o.chart.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let fastest = runs
        .iter()
        .filter_map(|r| r.latencies.first())
        .min()
        .map_or(0.1, |&us| f64::from(us) / 1000.0);
    let slowest = runs.iter().map(Run::max).fold(1.0, f64::max);
    let low = 10f64.powf(fastest.max(0.01).log10().floor());
    let high = 10f64.powf(slowest.log10().ceil());

    let root = SVGBackend::new(&o.chart, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Trading endpoints, {} concurrent traders, {}: latency distribution",
                o.users,
                if o.think.is_zero() {
                    "back to back".to_string()
                } else {
                    format!("{:?} think time", o.think)
                }
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((low..high).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("requests at or under (%)")
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let colors = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
    ];
    for (run, &color) in runs.iter().zip(colors.iter().cycle()) {
        let n = run.latencies.len();
        if n == 0 {
            continue;
        }
        // ~1000 points along the sorted samples, and the tail exactly.
        let step = (n / 1000).max(1);
        let points = (0..n).step_by(step).chain([n - 1]).map(|i| {
            (
                f64::from(run.latencies[i]).max(1.0) / 1000.0,
                (i + 1) as f64 * 100.0 / n as f64,
            )
        });
        let label = format!(
            "{}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {:.0} req/s",
            run.label,
            run.percentile(50.0),
            run.percentile(95.0),
            run.percentile(99.0),
            run.throughput()
        );
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
