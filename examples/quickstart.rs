//! The two-minute tour: a cached function over a (model) database, a miss,
//! hits, a write that changes the row and invalidates the entry, and what
//! the cache counted.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded store, no server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart  # the same on Redis
//! ```

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use cachekit::{Config, cached, invalidate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// The model database: one table of users, and a query that takes 150 ms.
static USERS: LazyLock<Mutex<HashMap<u64, String>>> =
    LazyLock::new(|| Mutex::new(HashMap::from([(7, "Grace".to_owned())])));

async fn query_user(id: u64) -> Result<User, String> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let name = USERS.lock().unwrap().get(&id).cloned();
    name.map(|name| User { id, name })
        .ok_or_else(|| format!("no user {id}"))
}

/// A slow lookup, cached for a minute.
#[cached(ttl = 60, key = "user:{id}")]
async fn get_user(id: u64) -> Result<User, String> {
    query_user(id).await
}

/// A write: when it succeeds, `get_user`'s entry for this id is invalidated
/// (the compiler checks that `get_user` is a cached function taking an id).
#[invalidate(get_user(id))]
async fn rename_user(id: u64, name: &str) -> Result<(), String> {
    USERS.lock().unwrap().insert(id, name.to_owned());
    println!("  (saved user {id} as {name:?})");
    Ok(())
}

async fn timed(label: &str, id: u64) -> Result<User, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let user = get_user(id).await?;
    println!("{label:<30} {:>10.3?}  {user:?}", started.elapsed());
    Ok(user)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The embedded store unless REDIS_URL is set.
    cachekit::init(Config::from_env()?).await?;
    let health = cachekit::health().await;
    println!(
        "cache store: {} (reachable: {})\n",
        health.backend, health.reachable
    );

    timed("first call (miss, queries)", 7).await?;
    timed("second call (hit)", 7).await?;
    timed("third call (hit)", 7).await?;
    println!("key of get_user(7): {:?}", get_user_key(7));

    rename_user(7, "Ada").await?;
    let after = timed("after the write (miss)", 7).await?;
    assert_eq!(after.name, "Ada", "the write shows at once");
    timed("and cached again (hit)", 7).await?;

    let stats = cachekit::stats();
    let f = stats.function("get_user").expect("counted");
    // Latencies are sampled (one call in eight per thread): a mean that
    // was never sampled is unknown, not zero.
    let mean =
        |d: Option<Duration>| d.map_or_else(|| "not sampled".to_owned(), |d| format!("{d:.3?}"));
    println!(
        "\nget_user: {} hits, {} misses, hit rate {:.0}%, mean hit {}, mean miss {}",
        f.hits,
        f.misses,
        f.hit_rate() * 100.0,
        mean(f.mean_hit_latency),
        mean(f.mean_miss_latency)
    );
    Ok(())
}
