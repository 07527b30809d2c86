//! Cached trading endpoints: reconciliation status, open positions and risk
//! guards per trader, over SQLite seeded with a million reconciliation rows,
//! JWT-authenticated, each view cached per trader for five seconds and
//! invalidated when the trader records a fill.
//!
//! ```text
//! cargo run --release --features http --example trading                   # embedded cache store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --features http --example trading
//! CACHE_ENABLED=false cargo run --release --features http --example trading   # every read hits SQLite
//! CACHE_MODE=layer cargo run --release --features http --example trading  # HTTP responses cached
//! ```
//!
//! Two ways to cache the three reads, the same answers either way:
//! `CACHE_MODE=functions` (the default) caches each view's function
//! (`#[cached]`, `views`); `CACHE_MODE=layer` caches the HTTP responses
//! with `cachekit::http::CacheLayer`, varying by the trader's token and
//! tagged by trader (`layer`).
//!
//! Then, as trader 7 (every demo trader's password is `trading-demo`):
//!
//! ```text
//! TOKEN=$(curl -s localhost:3000/api/v1/login -H 'content-type: application/json' \
//!     -d '{"username":"trader007","password":"trading-demo"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! curl -i localhost:3000/api/v1/reconciliation/status -H "authorization: Bearer $TOKEN"  # x-cache: miss
//! curl -i localhost:3000/api/v1/reconciliation/status -H "authorization: Bearer $TOKEN"  # x-cache: hit
//! curl localhost:3000/api/v1/reconciliations -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
//!     -d '{"account":"trader007-1","symbol":"AAPL","side":"buy","quantity":100,"price":231.5}'
//! curl localhost:3000/stats
//! curl localhost:3000/cache        # cachekit's stats and health, as JSON
//! ```
//!
//! Environment: `PORT` (3000), `REDIS_URL` and the other cachekit variables,
//! `TRADING_ROWS` (1000000), `TRADING_USERS` (250), `TRADING_DB` (a file to
//! keep the seeded book in and reuse; default a temporary one),
//! `JWT_SECRET`, `TRADING_PASSWORD` (`trading-demo`), `CACHE_MODE`
//! (`functions` or `layer`), `TRADING_FAIL_SAFE` (`off`; `on` serves each
//! view's last good answer, kept for an hour past its TTL, when the
//! database fails) and `TRADING_ADMIN` (`off`; `on` adds the admin routes).
//!
//! A database outage, for trying fail-safe (`TRADING_ADMIN=on` only: the
//! route takes no token, and the service listens on 127.0.0.1 only):
//!
//! ```text
//! curl localhost:3000/admin/outage -H 'content-type: application/json' -d '{"duration":"10s"}'
//! ```
//!
//! For those ten seconds every query fails: a read that the cache cannot
//! answer is a 500, and so is every write; `{"duration":"0s"}` ends it.
//!
//! Layout: `db` (SQLite pool, seeding, query counts), `queries` (the SQL and
//! the response types), `views` (the cache in front of them, per function),
//! `layer` (the cache in front of the routes, per response), `auth` (JWT),
//! `http` (routes). `app()` is what the integration tests serve.

mod auth;
mod db;
mod http;
mod layer;
mod queries;
mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use db::{Seed, username};

/// How the three reads are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Each view's function, `#[cached]` (`views`).
    Functions,
    /// The HTTP responses, by `cachekit::http::CacheLayer` (`layer`).
    Layer,
}

impl CacheMode {
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Functions => "functions",
            CacheMode::Layer => "layer",
        }
    }
}

impl std::str::FromStr for CacheMode {
    type Err = String;

    fn from_str(s: &str) -> Result<CacheMode, String> {
        match s.trim() {
            "functions" => Ok(CacheMode::Functions),
            "layer" => Ok(CacheMode::Layer),
            other => Err(format!("{other:?}: say functions or layer")),
        }
    }
}

/// The service's settings (cachekit reads its own: `Config::from_env`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub seed: Seed,
    /// Where the seeded book lives; `None`: a temporary file.
    pub db_path: Option<PathBuf>,
    /// Reader connections: as many as the machine runs threads.
    pub readers: usize,
    pub jwt_secret: String,
    pub password: String,
    pub cache_mode: CacheMode,
    /// Whether a view whose query fails is answered with its last good
    /// value (`fail_safe`), in either cache mode.
    pub fail_safe: bool,
    /// Whether `POST /admin/outage` exists.
    pub admin: bool,
}

/// The development secret; set `JWT_SECRET` anywhere else.
const DEV_SECRET: &str = "cachekit-trading-example-secret-change-me";

impl Settings {
    /// The defaults: a million rows over 250 traders, on port 3000.
    pub fn new() -> Settings {
        Settings {
            port: 3000,
            seed: Seed {
                users: 250,
                rows: 1_000_000,
            },
            db_path: None,
            readers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            jwt_secret: DEV_SECRET.into(),
            password: "trading-demo".into(),
            cache_mode: CacheMode::Functions,
            fail_safe: false,
            admin: false,
        }
    }

    /// The defaults, overridden by the environment.
    pub fn from_env() -> Result<Settings, String> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v:?} is not valid")),
                Err(_) => Ok(None),
            }
        }
        fn switch(name: &str) -> Result<Option<bool>, String> {
            match std::env::var(name) {
                Ok(v) => match v.trim() {
                    "on" | "1" | "true" => Ok(Some(true)),
                    "off" | "0" | "false" | "" => Ok(Some(false)),
                    _ => Err(format!("{name}={v:?}: say on or off")),
                },
                Err(_) => Ok(None),
            }
        }
        let mut s = Settings::new();
        s.port = var("PORT")?.unwrap_or(s.port);
        s.seed.rows = var("TRADING_ROWS")?.unwrap_or(s.seed.rows);
        s.seed.users = var("TRADING_USERS")?.unwrap_or(s.seed.users);
        s.db_path = std::env::var_os("TRADING_DB").map(PathBuf::from);
        s.jwt_secret = var("JWT_SECRET")?.unwrap_or(s.jwt_secret);
        s.password = var("TRADING_PASSWORD")?.unwrap_or(s.password);
        s.cache_mode = var("CACHE_MODE")?.unwrap_or(s.cache_mode);
        s.fail_safe = switch("TRADING_FAIL_SAFE")?.unwrap_or(s.fail_safe);
        s.admin = switch("TRADING_ADMIN")?.unwrap_or(s.admin);
        if s.seed.users == 0 || s.seed.rows == 0 {
            return Err("TRADING_USERS and TRADING_ROWS must be positive".into());
        }
        Ok(s)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::new()
    }
}

/// The running service's state: the database, the token keys, counters.
pub struct Trading {
    db: db::Db,
    auth: auth::Auth,
    password: String,
    counters: http::Counters,
    cache_mode: CacheMode,
    fail_safe: bool,
    admin: bool,
}

impl Trading {
    /// Opens and seeds the database. Blocking: seeding a million rows takes
    /// a few seconds.
    pub fn open(settings: &Settings) -> Result<Arc<Trading>, String> {
        let db = db::Db::open(settings.db_path.as_deref(), settings.seed, settings.readers)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Trading {
            db,
            auth: auth::Auth::new(settings.jwt_secret.as_bytes(), Duration::from_secs(3600)),
            password: settings.password.clone(),
            counters: http::Counters::default(),
            cache_mode: settings.cache_mode,
            fail_safe: settings.fail_safe,
            admin: settings.admin,
        }))
    }

    /// Simulates a database outage: every query fails for `duration`
    /// (`POST /admin/outage`).
    pub fn fail_database_for(&self, duration: Duration) {
        self.db.fail_for(duration);
    }

    /// A bearer token for trader `user_id`, as `POST /api/v1/login` issues.
    pub fn token(&self, user_id: i64) -> String {
        self.auth.issue(user_id)
    }

    fn password_matches(&self, password: &str) -> bool {
        // Constant time, like any password check.
        let (a, b) = (self.password.as_bytes(), password.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The HTTP application.
pub fn app(trading: Arc<Trading>) -> axum::Router {
    http::router(trading)
}

/// Serves `app` on `127.0.0.1:port` until `shutdown` completes.
pub async fn serve(
    trading: Arc<Trading>,
    port: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("trading: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(trading))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Starts the service from the environment: cachekit from `REDIS_URL` and
/// friends, the book from `TRADING_*`.
pub async fn run(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    if settings.jwt_secret == DEV_SECRET {
        eprintln!("trading: JWT_SECRET is unset; using the development secret");
    }
    cachekit::init(cachekit::Config::from_env()?).await?;
    let health = cachekit::health().await;
    eprintln!(
        "trading: cache {} (enabled: {}, reachable: {}, mode: {}, fail-safe: {}); seeding {} rows for {} traders...",
        health.backend,
        health.enabled,
        health.reachable,
        settings.cache_mode.name(),
        if settings.fail_safe { "on" } else { "off" },
        settings.seed.rows,
        settings.seed.users
    );
    let opening = settings.clone();
    let trading = tokio::task::spawn_blocking(move || Trading::open(&opening)).await??;
    if settings.admin {
        eprintln!("trading: TRADING_ADMIN is on: POST /admin/outage can stop the database");
    }
    serve(trading, settings.port, shutdown).await?;
    eprintln!("trading: stopped");
    Ok(())
}

#[allow(dead_code)] // when this file is a module of a test or of loadgen
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(shutdown_signal()).await
}
