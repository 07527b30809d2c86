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
//!
//! `--outage 10s` stops the service's database for that long, starting
//! `--outage-at` into the measured window (by default centred in it), by
//! `POST /admin/outage` (the spawned services get `TRADING_ADMIN=on`; a
//! service given by URL needs it). Its default modes are `functions` and
//! `functions-fail-safe` (and `layer-fail-safe` exists too): the same
//! service with `TRADING_FAIL_SAFE` off and on. It adds error rate and
//! p50/p99 latency per second, and before, during and after the outage,
//! and the chart shows them over time:
//!
//! ```text
//! cargo run --release --features http --example loadgen -- --users 100 --duration 30s --outage 10s --chart docs/outage.svg
//! ```

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
    /// A database outage this long during the measured window.
    outage: Option<Duration>,
    /// When it starts, into the measured window.
    outage_at: Duration,
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

/// A service to start: how it caches, and whether its views are
/// fail-safe (`TRADING_FAIL_SAFE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spawned {
    mode: Mode,
    fail_safe: bool,
}

impl Spawned {
    fn parse_list(list: &str) -> Result<Vec<Spawned>, String> {
        list.split(',')
            .map(|m| {
                let (mode, fail_safe) = match m.trim() {
                    "uncached" => (Mode::Uncached, false),
                    "functions" | "cached" => (Mode::Functions, false),
                    "layer" => (Mode::Layer, false),
                    "functions-fail-safe" => (Mode::Functions, true),
                    "layer-fail-safe" => (Mode::Layer, true),
                    other => {
                        return Err(format!(
                            "--modes: {other:?} is not uncached, functions, layer, \
                             functions-fail-safe or layer-fail-safe"
                        ));
                    }
                };
                Ok(Spawned { mode, fail_safe })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Targets {
    /// Start the service in each of these modes.
    Spawn(Vec<Spawned>),
    /// One running service.
    One(String),
    /// Two running services.
    Both { uncached: String, cached: String },
}

const USAGE: &str =
    "usage: loadgen [--users N] [--duration 30s] [--warmup 2s] [--write-ratio 0.05] \
[--think 0] [--chart target/loadtest.svg] [--modes uncached,functions,layer] \
[--outage 10s [--outage-at 10s]] [--url URL | --uncached-url URL --cached-url URL]

--modes also takes functions-fail-safe and layer-fail-safe; with --outage the
default is functions,functions-fail-safe and the chart target/outage.svg";

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
            outage: None,
            outage_at: Duration::ZERO,
        };
        let (mut url, mut cached, mut uncached) = (env("LOADGEN_URL"), None, None);
        let (mut modes, mut chart, mut outage_at) = (None, None, None);
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
                "--duration" | "--warmup" | "--think" | "--outage" | "--outage-at" => {
                    let v = value()?;
                    let d = if v.trim() == "0" {
                        Duration::ZERO
                    } else {
                        cachekit::parse_duration(&v).ok_or(format!("{flag} {v:?}: say 30s"))?
                    };
                    match flag.as_str() {
                        "--duration" => o.duration = d,
                        "--warmup" => o.warmup = d,
                        "--outage" => o.outage = Some(d).filter(|d| !d.is_zero()),
                        "--outage-at" => outage_at = Some(d),
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
                "--chart" => chart = Some(value()?.into()),
                "--modes" => modes = Some(Spawned::parse_list(&value()?)?),
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
        if let Some(outage) = o.outage {
            o.outage_at = outage_at.unwrap_or((o.duration.saturating_sub(outage)) / 2);
            if o.outage_at + outage > o.duration {
                return Err(format!(
                    "the outage ({outage:?} from {:?}) must end within --duration ({:?})",
                    o.outage_at, o.duration
                ));
            }
        } else if outage_at.is_some() {
            return Err("--outage-at needs --outage".into());
        }
        let (default_modes, default_chart) = if o.outage.is_some() {
            ("functions,functions-fail-safe", "target/outage.svg")
        } else {
            ("uncached,functions", "target/loadtest.svg")
        };
        let modes = match modes {
            Some(modes) => modes,
            None => Spawned::parse_list(default_modes)?,
        };
        o.chart = chart.unwrap_or_else(|| default_chart.into());
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
    /// Whether the views are fail-safe (absent: they are not).
    #[serde(default)]
    fail_safe: bool,
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
    /// Every measured request, by when it was sent.
    samples: Vec<Sample>,
    /// When the outage began and ended, in seconds into the measured window.
    outage: Option<(f64, f64)>,
}

/// One measured request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was sent, in ms into the measured window.
    at_ms: u32,
    /// How long it took, in microseconds.
    us: u32,
    ok: bool,
    write: bool,
}

/// The requests sent within a span of the measured window.
#[derive(Debug, Default)]
struct Span {
    requests: u64,
    errors: u64,
    reads: u64,
    read_errors: u64,
    writes: u64,
    write_errors: u64,
    /// Sorted latencies, in microseconds.
    latencies: Vec<u32>,
}

impl Span {
    /// The samples sent in `[from, to)` seconds.
    fn of(run: &Run, from: f64, to: f64) -> Span {
        let mut span = Span::default();
        let (from, to) = ((from * 1000.0) as u32, (to * 1000.0) as u32);
        for s in run
            .samples
            .iter()
            .filter(|s| s.at_ms >= from && s.at_ms < to)
        {
            span.requests += 1;
            span.errors += u64::from(!s.ok);
            if s.write {
                span.writes += 1;
                span.write_errors += u64::from(!s.ok);
            } else {
                span.reads += 1;
                span.read_errors += u64::from(!s.ok);
            }
            span.latencies.push(s.us);
        }
        span.latencies.sort_unstable();
        span
    }

    fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }
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
    if options.outage.is_some() {
        report_outage(&runs);
        outage_chart(&options, &runs)?;
    } else {
        chart(&options, &runs)?;
    }
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
            for &spawned in modes {
                let mut service = Service::start(spawned, o.outage.is_some())?;
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
    /// Starts the service; with `admin`, `POST /admin/outage` can stop its
    /// database.
    fn start(spawned: Spawned, admin: bool) -> Result<Service, BoxError> {
        let Spawned { mode, fail_safe } = spawned;
        let switch = |on: bool| if on { "on" } else { "off" };
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
            .env("TRADING_FAIL_SAFE", switch(fail_safe))
            .env("TRADING_ADMIN", switch(admin))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        eprintln!(
            "\nstarted the trading service on port {port} (caching {}, fail-safe {})",
            match mode {
                Mode::Uncached => "off",
                Mode::Functions => "on, per function",
                Mode::Layer => "on, HTTP layer",
            },
            switch(fail_safe)
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
    samples: Vec<Sample>,
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
    .to_string()
        + match (before.fail_safe, before.cache_enabled && o.outage.is_some()) {
            (true, _) => ", fail-safe",
            (false, true) => ", no fail-safe",
            (false, false) => "",
        };
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
                    tally.samples.push(Sample {
                        at_ms: t0.saturating_duration_since(measure_from).as_millis() as u32,
                        us,
                        ok,
                        write,
                    });
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
    let outage = o.outage.map(|duration| {
        let (http, url) = (http.clone(), url.to_string());
        let at = measure_from + o.outage_at;
        tokio::spawn(async move { start_outage(&http, &url, at, duration, measure_from).await })
    });
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
        samples: Vec::new(),
        outage: None,
    };
    if let Some(outage) = outage {
        run.outage = Some(outage.await??);
    }
    for task in tasks {
        let tally = task.await?;
        run.latencies.extend(tally.latencies);
        run.samples.extend(tally.samples);
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
    run.samples.sort_unstable_by_key(|s| s.at_ms);
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

/// At `at`, stops the service's database for `duration`
/// (`POST /admin/outage`); returns when the outage began and ends, in
/// seconds after `measure_from`.
async fn start_outage(
    http: &reqwest::Client,
    url: &str,
    at: Instant,
    duration: Duration,
    measure_from: Instant,
) -> Result<(f64, f64), BoxError> {
    tokio::time::sleep_until(at.into()).await;
    let began = Instant::now();
    let response = http
        .post(format!("{url}/admin/outage"))
        .json(&json!({ "duration": format!("{}ms", duration.as_millis()) }))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!(
            "POST /admin/outage answered {}: start the service with TRADING_ADMIN=on",
            response.status()
        )
        .into());
    }
    let began = began.duration_since(measure_from).as_secs_f64();
    Ok((began, began + duration.as_secs_f64()))
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

/// Before, during and after the outage, and second by second.
fn report_outage(runs: &[Run]) {
    let Some((began, ended)) = runs.iter().find_map(|r| r.outage) else {
        return;
    };
    println!(
        "\nThe database outage: {:.1} s from {began:.1} s into the measured window:\n",
        ended - began
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
    let spans = |r: &Run| {
        let (began, ended) = r.outage.unwrap_or((began, ended));
        [
            Span::of(r, 0.0, began),
            Span::of(r, began, ended),
            Span::of(r, ended, f64::MAX),
        ]
    };
    let all: Vec<[Span; 3]> = runs.iter().map(spans).collect();
    let p50_p99 = |s: &Span| format!("{:.2} / {:.2}", s.percentile(50.0), s.percentile(99.0));
    // Each row shows [before, during, after] so.
    type Show<'a> = &'a dyn Fn(&[Span; 3]) -> String;
    let rows: [(&str, Show<'_>); 8] = [
        ("requests during the outage", &|s| s[1].requests.to_string()),
        ("error rate during the outage", &|s| {
            format!("{:.1}%", s[1].error_rate() * 100.0)
        }),
        ("reads failed during the outage", &|s| {
            format!("{} of {}", s[1].read_errors, s[1].reads)
        }),
        ("writes failed during the outage", &|s| {
            format!("{} of {}", s[1].write_errors, s[1].writes)
        }),
        ("p50 / p99 during the outage (ms)", &|s| p50_p99(&s[1])),
        ("p50 / p99 before (ms)", &|s| p50_p99(&s[0])),
        ("p50 / p99 after (ms)", &|s| p50_p99(&s[2])),
        ("error rate before / after", &|s| {
            format!(
                "{:.2}% / {:.2}%",
                s[0].error_rate() * 100.0,
                s[2].error_rate() * 100.0
            )
        }),
    ];
    for (name, show) in rows {
        print!("| {name} |");
        for spans in &all {
            print!(" {} |", show(spans));
        }
        println!();
    }

    println!("\nSecond by second: requests, error rate, p50 / p99 (ms):\n");
    print!("| s |");
    for r in runs {
        print!(" {} |", r.label);
    }
    print!("\n|---:|");
    for _ in runs {
        print!("---:|");
    }
    println!();
    for (second, buckets) in timelines(runs).iter().enumerate() {
        // A second is the outage's if most of it is.
        let middle = second as f64 + 0.5;
        let outage = began <= middle && middle < ended;
        print!("| {second}{} |", if outage { " (outage)" } else { "" });
        for s in buckets {
            print!(
                " {}, {:.1}%, {:.2} / {:.2} |",
                s.requests,
                s.error_rate() * 100.0,
                s.percentile(50.0),
                s.percentile(99.0)
            );
        }
        println!();
    }
}

/// Each whole second of the measured window, for each run.
fn timelines(runs: &[Run]) -> Vec<Vec<Span>> {
    let seconds = runs
        .iter()
        .filter_map(|r| r.samples.last())
        .map(|s| s.at_ms / 1000 + 1)
        .max()
        .unwrap_or(0);
    (0..seconds)
        .map(|t| {
            let t = f64::from(t);
            runs.iter().map(|r| Span::of(r, t, t + 1.0)).collect()
        })
        .collect()
}

/// Error rate and p50/p99 latency per second, the outage shaded.
fn outage_chart(o: &Options, runs: &[Run]) -> Result<(), BoxError> {
    use plotters::prelude::*;

    if let Some(dir) = o.chart.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let timeline = timelines(runs);
    let end = timeline.len().max(1) as f64;
    let slowest = timeline
        .iter()
        .flatten()
        .map(|s| s.percentile(99.0))
        .fold(1.0, f64::max);
    let fastest = timeline
        .iter()
        .flatten()
        .filter(|s| s.requests > 0)
        .map(|s| s.percentile(50.0))
        .fold(f64::MAX, f64::min)
        .min(slowest);
    let low = 10f64.powf(fastest.max(0.01).log10().floor());
    // A decade above the slowest second, for the legend.
    let high = 10f64.powf(slowest.log10().ceil() + 1.0);
    let outage = runs.iter().find_map(|r| r.outage);

    let root = SVGBackend::new(&o.chart, (960, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "Trading endpoints, {} concurrent traders, through a {:.0} s database outage",
            o.users,
            outage.map_or(0.0, |(a, b)| b - a)
        ),
        ("sans-serif", 22),
    )?;
    let (top, bottom) = root.split_vertically(300);
    let colors = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
    ];
    let shade = RGBColor(0, 0, 0).mix(0.08).filled();
    // Each second's point sits in the middle of its second.
    let mid = |t: usize| t as f64 + 0.5;

    let mut errors = ChartBuilder::on(&top)
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..100.0)?;
    errors
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc("errors (% of requests)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    if let Some((a, b)) = outage {
        errors
            .draw_series([Rectangle::new([(a, 0.0), (b, 100.0)], shade)])?
            .label("database outage")
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], shade));
    }
    for (i, (run, &color)) in runs.iter().zip(colors.iter().cycle()).enumerate() {
        let points = timeline
            .iter()
            .enumerate()
            .map(|(t, s)| (mid(t), s[i].error_rate() * 100.0));
        errors
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(run.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    errors
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    let mut latency = ChartBuilder::on(&bottom)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, (low..high).log_scale())?;
    latency
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()?;
    if let Some((a, b)) = outage {
        latency.draw_series([Rectangle::new([(a, low), (b, high)], shade)])?;
    }
    for (i, (run, &color)) in runs.iter().zip(colors.iter().cycle()).enumerate() {
        let series = |p: f64| {
            timeline
                .iter()
                .enumerate()
                .filter(move |(_, s)| s[i].requests > 0)
                .map(move |(t, s)| (mid(t), s[i].percentile(p).max(low)))
                .collect::<Vec<_>>()
        };
        latency
            .draw_series(LineSeries::new(series(99.0), color.stroke_width(2)))?
            .label(format!("{}: p99", run.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        latency
            .draw_series(DashedLineSeries::new(
                series(50.0),
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(format!("{}: p50", run.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
            });
    }
    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
