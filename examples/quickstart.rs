//! The two-minute tour: a cached function, a miss, a hit, an invalidation.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded store, no server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart  # the same on Redis
//! ```

use std::time::{Duration, Instant};

use cachekit::{Config, cached, invalidate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// A slow lookup (a database query, an HTTP call), cached for a minute.
#[cached(ttl = 60, key = "user:{id}")]
async fn get_user(id: u64) -> Result<User, String> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    Ok(User {
        id,
        name: format!("user-{id}"),
    })
}

/// A write: when it succeeds, the cached user is invalidated.
#[invalidate("user:{id}")]
async fn rename_user(id: u64, name: &str) -> Result<(), String> {
    println!("  (saving user {id} as {name:?})");
    Ok(())
}

async fn timed(label: &str, id: u64) -> Result<User, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let user = get_user(id).await?;
    println!("{label:<28} {:>10.3?}  {user:?}", started.elapsed());
    Ok(user)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The embedded store unless REDIS_URL is set.
    cachekit::init(Config::from_env()?).await?;
    let health = cachekit::health().await;
    println!(
        "cache backend: {} (reachable: {})\n",
        health.backend, health.reachable
    );

    timed("first call (miss, computes)", 7).await?;
    timed("second call (hit)", 7).await?;
    timed("third call (hit)", 7).await?;
    println!("key of get_user(7): {:?}", get_user_key(7));

    rename_user(7, "Ada").await?;
    timed("after the write (miss)", 7).await?;
    timed("and cached again (hit)", 7).await?;

    let stats = cachekit::stats();
    let f = stats.function("get_user").expect("counted");
    println!(
        "\nget_user: {} hits, {} misses, hit rate {:.0}%, mean hit {:?}, mean miss {:?}",
        f.hits,
        f.misses,
        f.hit_rate() * 100.0,
        f.mean_hit_latency,
        f.mean_miss_latency
    );
    Ok(())
}
