//! What every bench shares: a `redis-server` of its own (the test harness's
//! supervisor, so no server outlives the bench and the system Redis on 6379
//! is never touched), interleaved rounds, medians, the machine's state, and
//! the writer of `BENCHMARKS.md`.
//!
//! Every claim is a ratio of two things measured side by side in one run:
//! the variants of a comparison run one after the other inside each round,
//! in an order that rotates from round to round, and the reported figure is
//! the median over rounds of the per-round ratio. A load spike from another
//! process then lands on one round, not on one side.
//!
//! Environment:
//! * `BENCH_ROUNDS`: rounds per comparison (default 7);
//! * `BENCH_QUICK=1`: a tenth of the work, two rounds, and `BENCHMARKS.md`
//!   is left alone (for trying a change);
//! * `BENCH_WAIT_LOAD=1.5`: before measuring, wait (up to 10 minutes) until
//!   the 1-minute load average is below this;
//! * `BENCH_NO_WRITE=1`: print the tables only;
//! * `BENCH_WORKERS=N`: worker threads of the client's runtime (default:
//!   tokio's default multi-thread runtime, one worker per core).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[path = "../../tests/common/mod.rs"]
pub mod server;

#[allow(unused_imports)]
pub use server::RedisServer;

/// The benches' tokio runtime: the default multi-thread runtime (one
/// worker per core), what services run. A hot path that shares a counter
/// or a lock across workers shows up only there: a 1-worker runtime hid a
/// 1.20x slowdown at 256 tasks. `BENCH_WORKERS=N` sets the worker count
/// instead; `BENCH_WORKERS=1` gives the figures of the earlier runs, where
/// every task of the client, the connections' drivers included, shares
/// one thread and the server has the other core (at 1 task, with 2
/// workers, which worker a connection's driver lands on can move a
/// variant's latency by tens of percent: a wake-up across idle cores costs
/// tens of microseconds on this VM). The global cache's connection lives
/// on this runtime, so every measurement of a bench runs on it.
pub static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = requested_workers() {
        builder.worker_threads(n);
    }
    builder.enable_all().build().expect("tokio runtime")
});

/// `BENCH_WORKERS`, if set to a positive number.
fn requested_workers() -> Option<usize> {
    std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|&n| n > 0)
}

/// The worker threads of the benches' runtime, as tokio reports them.
pub fn workers() -> usize {
    RUNTIME.metrics().num_workers()
}

/// Runs `f` on the benches' runtime.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}

/// How much work a bench does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rounds: usize,
    pub quick: bool,
}

impl Plan {
    pub fn from_env() -> Plan {
        let quick = env_flag("BENCH_QUICK");
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(if quick { 2 } else { 7 });
        Plan {
            rounds: rounds.max(1),
            quick,
        }
    }

    /// `full`, or a tenth of it in quick mode.
    pub fn n(&self, full: usize) -> usize {
        if self.quick { (full / 10).max(1) } else { full }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The median of `values` (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Smallest and largest.
pub fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// The order in which `count` variants run in round `round`: rotated, so
/// that no variant always runs first (cold) or last.
pub fn order(round: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |i| (i + round) % count)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> (f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse().unwrap_or(f64::NAN));
    (
        parts.next().unwrap_or(f64::NAN),
        parts.next().unwrap_or(f64::NAN),
        parts.next().unwrap_or(f64::NAN),
    )
}

/// Waits until the 1-minute load average is below `BENCH_WAIT_LOAD`, if set.
pub fn wait_for_quiet_machine() {
    let Some(limit) = std::env::var("BENCH_WAIT_LOAD")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (one, _, _) = load_average();
        if one < limit {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("load average still {one:.2} after 10 minutes; measuring anyway");
            return;
        }
        eprintln!("load average {one:.2} >= {limit}; waiting");
        std::thread::sleep(Duration::from_secs(15));
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// One bench's report: the machine, then tables, written to stdout and to
/// its section of `BENCHMARKS.md`.
pub struct Report {
    /// The section's id, as in `cargo bench -p cachekit-benches --bench <id>`.
    id: &'static str,
    title: &'static str,
    plan: Plan,
    load_before: (f64, f64, f64),
    started: Instant,
    body: String,
}

impl Report {
    /// Starts a report (waiting for a quiet machine if asked to).
    pub fn start(id: &'static str, title: &'static str, plan: Plan) -> Report {
        wait_for_quiet_machine();
        eprintln!(
            "== {title} (bench `{id}`, {} rounds{})",
            plan.rounds,
            if plan.quick { ", quick" } else { "" }
        );
        Report {
            id,
            title,
            plan,
            load_before: load_average(),
            started: Instant::now(),
            body: String::new(),
        }
    }

    /// Adds a paragraph.
    pub fn text(&mut self, text: &str) {
        self.body.push_str(text.trim_end());
        self.body.push_str("\n\n");
    }

    /// Adds a table.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.body, "| {} |", header.join(" | "));
        let _ = writeln!(
            self.body,
            "|{}|",
            header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        );
        for row in rows {
            let _ = writeln!(self.body, "| {} |", row.join(" | "));
        }
        self.body.push('\n');
    }

    fn render(&self) -> String {
        let (b1, b5, _) = self.load_before;
        let (a1, a5, _) = load_average();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "`cargo bench -p cachekit-benches --bench {}` ({} rounds, {:.0} s{})\n",
            self.id,
            self.plan.rounds,
            self.started.elapsed().as_secs_f64(),
            if self.plan.quick { ", quick mode" } else { "" }
        );
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), load average {b1:.2} / {b5:.2} (1 / 5 min) before, {a1:.2} / {a5:.2} after; client runtime: multi-thread, {} worker thread(s) ({}); {}; {}; cachekit {}.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model(),
            workers(),
            requested_workers().map_or("tokio's default".to_owned(), |n| format!(
                "BENCH_WORKERS={n}"
            )),
            first_line("redis-server", &["--version"])
                .split(" sha=")
                .next()
                .unwrap_or(""),
            first_line("rustc", &["--version"])
                .split(" (")
                .next()
                .unwrap_or(""),
            first_line("git", &["rev-parse", "--short", "HEAD"]),
        );
        out.push_str(&self.body);
        out
    }

    /// Prints the report and writes it into `BENCHMARKS.md`, between this
    /// bench's markers (the section is appended the first time). Other
    /// sections of the file are left as they are.
    pub fn finish(self) {
        let rendered = self.render();
        println!("\n## {}\n\n{rendered}", self.title);
        if self.plan.quick || env_flag("BENCH_NO_WRITE") {
            eprintln!("(BENCHMARKS.md not written: quick mode or BENCH_NO_WRITE)");
            return;
        }
        let path = benchmarks_md();
        let current = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            "# Benchmarks\n\nRun everything with `cargo bench -p cachekit-benches`.\n".into()
        });
        let updated = replace_section(&current, self.id, self.title, &rendered);
        std::fs::write(&path, updated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote section `{}` of {}", self.id, path.display());
    }
}

/// `BENCHMARKS.md` at the workspace root.
pub fn benchmarks_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .join("BENCHMARKS.md")
}

fn markers(id: &str) -> (String, String) {
    (
        format!(
            "<!-- bench:{id}:begin (generated by `cargo bench -p cachekit-benches --bench {id}`; edit outside the markers) -->"
        ),
        format!("<!-- bench:{id}:end -->"),
    )
}

/// Replaces the generated block of `id` in `doc`, or appends a section.
pub fn replace_section(doc: &str, id: &str, title: &str, rendered: &str) -> String {
    let (begin, end) = markers(id);
    let begin_prefix = format!("<!-- bench:{id}:begin");
    if let Some(start) = doc.find(&begin_prefix)
        && let Some(stop) = doc[start..].find(&end).map(|i| start + i + end.len())
    {
        return format!("{}{begin}\n{rendered}{end}{}", &doc[..start], &doc[stop..]);
    }
    let mut out = doc.trim_end().to_owned();
    let _ = write!(out, "\n\n## {title}\n\n{begin}\n{rendered}{end}\n");
    out
}

/// Formats a ratio as `1.03x`.
pub fn x(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}x")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}x")
    } else {
        format!("{ratio:.3}x")
    }
}

/// Formats a duration per operation.
pub fn per_op(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Formats a rate.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else {
        format!("{:.1} k/s", per_sec / 1e3)
    }
}

/// Formats a byte count.
pub fn bytes(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// A plain command on a blocking connection to `server`.
pub fn redis_cmd<T: redis::FromRedisValue>(conn: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A field of `INFO <section>`, as a number.
pub fn info_field(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis_cmd(conn, &["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no numeric {field}"))
}

/// A TCP proxy in front of a local server that counts round trips: a round
/// trip is a burst of bytes from a client that follows the server's last
/// answer on that connection (one request, or one pipeline, however many
/// reads it takes). Start it on the runtime the clients use.
pub struct CountingProxy {
    pub port: u16,
    round_trips: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    pub async fn start(target_port: u16) -> CountingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                // Whether the last bytes on this connection went to the server.
                let asking = Arc::new(AtomicBool::new(false));
                let (asking_up, counter_up) = (asking.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                        if !asking_up.swap(true, Ordering::AcqRel) {
                            counter_up.fetch_add(1, Ordering::Relaxed);
                        }
                        if server_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                        // Before the client can see the answer, so its next
                        // request counts as a new round trip.
                        asking.store(false, Ordering::Release);
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CountingProxy { port, round_trips }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Round trips so far, over every connection through the proxy.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Deltas of `INFO commandstats` calls per command.
pub fn command_calls(conn: &mut redis::Connection) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis_cmd(conn, &["INFO", "commandstats"]);
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// `after - before` per command, without the zeros and without `info`.
pub fn command_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A small record, about 110 bytes of JSON: the value of the hit, tier,
/// memory and codec benches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub roles: Vec<String>,
    pub score: f64,
}

/// The record of user `id`.
pub fn load_user(id: u64) -> User {
    User {
        id,
        name: format!("User number {id}"),
        email: format!("user{id}@example.com"),
        active: !id.is_multiple_of(3),
        roles: vec!["reader".into(), "writer".into()],
        score: id as f64 * 1.5,
    }
}

/// A table row: a ratio's median and range over rounds.
pub fn median_row(label: &str, ratios: &[f64]) -> Vec<String> {
    let (lo, hi) = range(ratios);
    vec![
        label.into(),
        x(median(ratios)),
        format!("{} – {}", x(lo), x(hi)),
    ]
}

/// A table row: a ratio's median and range over rounds, its goal, and
/// whether the median met it.
pub fn ratio_row(label: &str, ratios: &[f64], goal: &str, met: bool) -> Vec<String> {
    let mut row = median_row(label, ratios);
    row.push(goal.into());
    row.push(if met { "yes" } else { "**no**" }.into());
    row
}

/// Starts the bench's server and points the `cached` crate's macros at it
/// (they read their server from the environment). Call it first, before
/// the bench starts any thread.
pub fn start_server_for_cached_crate() -> RedisServer {
    let server = RedisServer::start();
    // SAFETY: the bench has started no other thread yet.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("CACHED_REDIS_CONNECTION_STRING", server.url());
    }
    server
}
