//! The database: SQLite in a file, seeded at startup with a deterministic
//! book of reconciliation rows, read through a small pool of connections.
//!
//! SQLite calls block, so each one runs on tokio's blocking pool. Readers
//! share the file in WAL mode (they never wait for the writer); one writer
//! connection records new rows. Every SQL statement is counted, in total
//! and per request (a task-local the HTTP layer sets), so the service can
//! say how much work the cache saved.
//!
//! An outage can be simulated (`Db::fail_for`, `POST /admin/outage`): for
//! its duration every read and write fails at once with `DbError`, as
//! against a database that refuses connections, without touching SQLite.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Params, Row, params};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    /// SQL statements run on behalf of the current request.
    pub static REQUEST_QUERIES: Cell<u64>;
}

/// Bumped when the schema or the seed changes, so an old file is never reused.
const SEED_VERSION: i64 = 1;
/// The seeded book ends here (2026-01-01T00:00:00Z) and spans a year:
/// the same rows in every process, whatever the clock says.
pub const SEED_END_TS: i64 = 1_767_225_600;
const SEED_SPAN_SECS: i64 = 365 * 86_400;

/// Instruments with the price the seeded book ends on.
pub const SYMBOLS: &[(&str, f64)] = &[
    ("AAPL", 231.4),
    ("MSFT", 418.9),
    ("GOOGL", 168.2),
    ("AMZN", 186.5),
    ("META", 512.7),
    ("NVDA", 121.3),
    ("TSLA", 244.1),
    ("JPM", 211.8),
    ("BAC", 39.6),
    ("WFC", 58.2),
    ("GS", 497.3),
    ("MS", 103.9),
    ("V", 276.4),
    ("MA", 489.1),
    ("KO", 69.8),
    ("PEP", 171.2),
    ("XOM", 117.6),
    ("CVX", 155.3),
    ("JNJ", 160.4),
    ("PFE", 29.1),
    ("MRK", 112.7),
    ("UNH", 589.2),
    ("HD", 383.0),
    ("WMT", 80.3),
    ("COST", 901.6),
    ("DIS", 97.4),
    ("NFLX", 701.5),
    ("INTC", 22.9),
    ("AMD", 157.8),
    ("ORCL", 171.6),
    ("CSCO", 57.1),
    ("IBM", 224.3),
    ("BA", 160.2),
    ("CAT", 377.9),
    ("GE", 178.4),
    ("F", 11.2),
    ("GM", 51.7),
    ("T", 22.4),
    ("VZ", 43.9),
    ("SPY", 573.8),
];

/// How much to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// Traders.
    pub users: u32,
    /// Reconciliation rows, spread over the traders.
    pub rows: u32,
}

/// A database error, as the API reports it.
#[derive(Debug, Clone)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

/// The database: a pool of readers, one writer, and the query counter.
pub struct Db {
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One per idle reader; held until the reader is back in the pool.
    permits: Arc<Semaphore>,
    writer: Arc<Mutex<Connection>>,
    queries: Arc<AtomicU64>,
    /// A simulated outage ends at `opened` plus this many milliseconds
    /// (0: no outage since opening, or it ended).
    outage_until_ms: AtomicU64,
    opened: Instant,
    _dir: Option<TempDir>,
}

/// A connection that counts the statements it runs.
pub struct Sql<'c> {
    conn: &'c Connection,
    statements: u64,
}

impl Sql<'_> {
    /// Every row of `sql`, mapped.
    pub fn rows<T, P: Params>(
        &mut self,
        sql: &str,
        params: P,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        self.statements += 1;
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params, map)?;
        Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
    }

    /// The one row of `sql` (an aggregate), mapped.
    pub fn row<T, P: Params>(
        &mut self,
        sql: &str,
        params: P,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        self.statements += 1;
        Ok(self.conn.query_row(sql, params, map)?)
    }

    /// Runs a statement that changes rows; returns the last inserted rowid.
    pub fn insert<P: Params>(&mut self, sql: &str, params: P) -> Result<i64, DbError> {
        self.statements += 1;
        self.conn.execute(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }
}

impl Db {
    /// Opens (and seeds) the database at `path`, or in a fresh directory
    /// under the system's temp dir that is removed when the `Db` is dropped.
    /// A file already seeded with the same `seed` is reused as it is.
    pub fn open(path: Option<&Path>, seed: Seed, readers: usize) -> Result<Db, DbError> {
        let (dir, file) = match path {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let dir = TempDir::new()?;
                let file = dir.0.join("trading.db");
                (Some(dir), file)
            }
        };
        let writer = open_conn(&file, true)?;
        writer.busy_timeout(Duration::from_secs(300))?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        seed_if_needed(&writer, seed)?;
        writer.busy_timeout(Duration::from_secs(5))?;
        let readers = (0..readers.max(1))
            .map(|_| open_conn(&file, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            permits: Arc::new(Semaphore::new(readers.len())),
            readers: Arc::new(Mutex::new(readers)),
            writer: Arc::new(Mutex::new(writer)),
            queries: Arc::new(AtomicU64::new(0)),
            outage_until_ms: AtomicU64::new(0),
            opened: Instant::now(),
            _dir: dir,
        })
    }

    /// Simulates a database outage: for `duration` from now, every query
    /// fails (zero ends an outage).
    pub fn fail_for(&self, duration: Duration) {
        let until = if duration.is_zero() {
            0
        } else {
            (self.opened.elapsed() + duration).as_millis() as u64
        };
        self.outage_until_ms.store(until, Ordering::Relaxed);
    }

    /// How much of a simulated outage is left (zero: the database is up).
    pub fn outage_left(&self) -> Duration {
        let until = Duration::from_millis(self.outage_until_ms.load(Ordering::Relaxed));
        until.saturating_sub(self.opened.elapsed())
    }

    /// `Err` while a simulated outage lasts.
    fn check_up(&self) -> Result<(), DbError> {
        let left = self.outage_left();
        if left.is_zero() {
            Ok(())
        } else {
            Err(DbError(format!(
                "the database is unavailable (simulated outage, {} ms left)",
                left.as_millis()
            )))
        }
    }

    /// SQL statements run so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Adds to the current request's count (the total is counted where the
    /// statements run).
    fn count_for_request(statements: u64) {
        let _ = REQUEST_QUERIES.try_with(|n| n.set(n.get() + statements));
    }

    /// Runs `f` on a reader connection, on the blocking pool. If the caller
    /// goes away (a client hung up), the query still finishes and hands its
    /// connection back.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.check_up()?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError("the pool is closed".into()))?;
        let (readers, total) = (self.readers.clone(), self.queries.clone());
        let (statements, result) = tokio::task::spawn_blocking(move || {
            let conn = readers
                .lock()
                .expect("reader pool")
                .pop()
                .expect("a permit guarantees a connection");
            let lease = Lease {
                conn: Some(conn),
                readers,
                _permit: permit,
            };
            let conn = lease.conn.as_ref().expect("leased");
            let mut sql = Sql {
                conn,
                statements: 0,
            };
            // One read transaction: the statements of a view see one snapshot.
            let result = conn
                .execute_batch("BEGIN")
                .map_err(DbError::from)
                .and_then(|()| f(&mut sql));
            let statements = sql.statements;
            let _ = conn.execute_batch("COMMIT");
            total.fetch_add(statements, Ordering::Relaxed);
            drop(lease);
            (statements, result)
        })
        .await
        .map_err(|e| DbError(format!("query task failed: {e}")))?;
        Self::count_for_request(statements);
        result
    }

    /// Runs `f` in a write transaction on the writer connection.
    /// An `Err` from `f` rolls the transaction back.
    pub async fn write<T, E>(
        &self,
        f: impl FnOnce(&mut Sql<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.check_up().map_err(E::from)?;
        let (writer, total) = (self.writer.clone(), self.queries.clone());
        let (statements, result) = tokio::task::spawn_blocking(move || {
            let conn = writer.lock().expect("writer");
            let mut sql = Sql {
                conn: &conn,
                statements: 0,
            };
            let result = match conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => f(&mut sql),
                Err(e) => return (sql.statements, Err(E::from(e.into()))),
            };
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let result = match (result, conn.execute_batch(end)) {
                (Ok(v), Ok(())) => Ok(v),
                (Ok(_), Err(e)) => Err(E::from(e.into())),
                (Err(e), _) => Err(e),
            };
            total.fetch_add(sql.statements, Ordering::Relaxed);
            (sql.statements, result)
        })
        .await
        .map_err(|e| E::from(DbError(format!("write task failed: {e}"))))?;
        Self::count_for_request(statements);
        result
    }
}

/// A reader taken from the pool: it goes back when dropped, even if the
/// query panicked, and only then is its permit released.
struct Lease {
    conn: Option<Connection>,
    readers: Arc<Mutex<Vec<Connection>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            if let Ok(mut readers) = self.readers.lock() {
                readers.push(conn);
            }
        }
    }
}

fn open_conn(file: &Path, write: bool) -> Result<Connection, DbError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Room for the whole book in each reader's page cache (64 MiB).
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE meta (version INTEGER NOT NULL, users INTEGER NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id)
);
CREATE TABLE prices (symbol TEXT PRIMARY KEY, price REAL NOT NULL);
CREATE TABLE guards (
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    limit_value REAL NOT NULL,
    PRIMARY KEY (user_id, name)
);
-- One row per fill: our record (quantity, price) against the broker's.
CREATE TABLE reconciliations (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    symbol TEXT NOT NULL,
    side INTEGER NOT NULL,            -- 1 buy, -1 sell
    quantity INTEGER NOT NULL,
    price REAL NOT NULL,
    broker_quantity INTEGER NOT NULL,
    broker_price REAL NOT NULL,
    status TEXT NOT NULL,             -- matched, break, pending
    trade_ts INTEGER NOT NULL,
    reconciled_ts INTEGER             -- NULL while pending
);
";

/// Created after the bulk insert, which is faster than maintaining them.
const INDEXES: &str = "
CREATE INDEX reconciliations_user_time ON reconciliations (user_id, trade_ts);
CREATE INDEX accounts_user ON accounts (user_id);
";

fn seed_if_needed(conn: &Connection, seed: Seed) -> Result<(), DbError> {
    // IMMEDIATE: two processes seeding one file take turns; the second
    // finds the book there.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let has_meta: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if has_meta {
            let found: Option<(i64, u32, u32)> = conn
                .query_row("SELECT version, users, rows FROM meta", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .ok();
            return match found {
                Some((SEED_VERSION, users, rows)) if users == seed.users && rows == seed.rows => {
                    Ok(())
                }
                other => Err(DbError(format!(
                    "the database file holds another book ({other:?}, want version {SEED_VERSION} with {seed:?}); \
                     remove it or point TRADING_DB elsewhere"
                ))),
            };
        }
        let started = Instant::now();
        conn.execute_batch(SCHEMA)?;
        insert_book(conn, seed)?;
        conn.execute_batch(INDEXES)?;
        conn.execute(
            "INSERT INTO meta (version, users, rows) VALUES (?1, ?2, ?3)",
            params![SEED_VERSION, seed.users, seed.rows],
        )?;
        eprintln!(
            "seeded {} reconciliation rows for {} traders in {:.2?}",
            seed.rows,
            seed.users,
            started.elapsed()
        );
        Ok(())
    })();
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            conn.execute_batch("ANALYZE")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The username of trader `id`; every demo trader has the same password.
pub fn username(id: i64) -> String {
    format!("trader{id:03}")
}

/// What one trader trades.
struct Book {
    symbols: Vec<usize>,
    accounts: Vec<String>,
}

fn insert_book(conn: &Connection, seed: Seed) -> Result<(), DbError> {
    let mut rng = fastrand::Rng::with_seed(0x07ea_d1e5);
    let users = i64::from(seed.users.max(1));
    let mut books = Vec::new();
    {
        let mut user =
            conn.prepare("INSERT INTO users (id, username, display_name) VALUES (?1, ?2, ?3)")?;
        let mut account = conn.prepare("INSERT INTO accounts (id, user_id) VALUES (?1, ?2)")?;
        let mut guard =
            conn.prepare("INSERT INTO guards (user_id, name, limit_value) VALUES (?1, ?2, ?3)")?;
        for id in 1..=users {
            let name = username(id);
            user.execute(params![id, name, format!("Trader {id}")])?;
            let mut symbols: Vec<usize> = (0..SYMBOLS.len()).collect();
            rng.shuffle(&mut symbols);
            symbols.truncate(6 + rng.usize(0..10));
            let accounts: Vec<String> = (1..=1 + rng.usize(0..3))
                .map(|n| format!("{name}-{n}"))
                .collect();
            for a in &accounts {
                account.execute(params![a, id])?;
            }
            let scale = 0.5 + rng.f64() * 1.5;
            for (guard_name, limit) in [
                ("gross_exposure", (8_000_000.0 * scale).round()),
                ("single_position", (3_000_000.0 * scale).round()),
                ("daily_notional", (1_500_000.0 * scale).round()),
                ("open_breaks", (60.0 + rng.f64() * 80.0).round()),
            ] {
                guard.execute(params![id, guard_name, limit])?;
            }
            books.push(Book { symbols, accounts });
        }
        let mut price = conn.prepare("INSERT INTO prices (symbol, price) VALUES (?1, ?2)")?;
        for (symbol, last) in SYMBOLS {
            price.execute(params![symbol, last])?;
        }
    }

    let mut fill = conn.prepare(
        "INSERT INTO reconciliations (user_id, account, symbol, side, quantity, price, broker_quantity, broker_price, status, trade_ts, reconciled_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let start = SEED_END_TS - SEED_SPAN_SECS;
    let rows = u64::from(seed.rows.max(1));
    for i in 0..rows {
        // Fills arrive in time order, from every trader at once.
        let trade_ts = start + (i as i128 * i128::from(SEED_SPAN_SECS) / rows as i128) as i64;
        let user = rng.i64(1..=users);
        let book = &books[(user - 1) as usize];
        let s = book.symbols[rng.usize(0..book.symbols.len())];
        let (symbol, last) = SYMBOLS[s];
        // A slow drift towards the last price, and noise.
        let drift = 1.0 - 0.15 * (SEED_END_TS - trade_ts) as f64 / SEED_SPAN_SECS as f64;
        let price = cents(last * drift * (1.0 + (rng.f64() - 0.5) * 0.02));
        let quantity = 10 * rng.i64(1..=50);
        let side = if rng.bool() { 1 } else { -1 };
        let age = SEED_END_TS - trade_ts;
        let roll = rng.f64();
        let (status, broker_quantity, broker_price, reconciled) = if age < 2 * 86_400 && roll < 0.3
        {
            ("pending", quantity, price, None)
        } else if roll < 0.025 {
            // A break: the broker booked a different quantity, or price.
            if rng.bool() {
                (
                    "break",
                    quantity - 10 * rng.i64(1..=3),
                    price,
                    Some(trade_ts + rng.i64(600..86_400)),
                )
            } else {
                (
                    "break",
                    quantity,
                    cents(price + 0.01 * rng.i64(1..=25) as f64),
                    Some(trade_ts + rng.i64(600..86_400)),
                )
            }
        } else {
            (
                "matched",
                quantity,
                price,
                Some(trade_ts + rng.i64(60..7_200)),
            )
        };
        fill.execute(params![
            user,
            book.accounts[rng.usize(0..book.accounts.len())],
            symbol,
            side,
            quantity,
            price,
            broker_quantity,
            broker_price,
            status,
            trade_ts,
            reconciled,
        ])?;
    }
    Ok(())
}

/// Rounds to cents.
pub fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A directory of this process under the system temp dir, removed on drop.
/// Directories left by processes that died are swept when the next opens.
struct TempDir(PathBuf);

impl TempDir {
    const PREFIX: &'static str = "cachekit-trading-";

    fn new() -> Result<TempDir, DbError> {
        let base = std::env::temp_dir();
        Self::sweep(&base);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = base.join(format!(
            "{}{}-{}",
            Self::PREFIX,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| DbError(format!("{}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }

    /// Removes the directories of processes that are gone (Linux: `/proc`).
    fn sweep(base: &Path) {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(Self::PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
