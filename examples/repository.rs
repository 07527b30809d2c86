//! The cache-aside repository: reads are cached, writes invalidate what
//! they change.
//!
//! ```text
//! cargo run --example repository                                   # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example repository  # on Redis
//! ```
//!
//! * `find_by_id` caches each hero under `hero:{id}`;
//! * `list_all` and `list_by_team` cache collections, tagged `hero-lists`;
//! * `save`, `update` and `delete` invalidate the hero's own key and, by
//!   tag, every collection it may belong to (no keyspace scan);
//! * the readout at the end comes from `cachekit::stats()`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachekit::{Config, cached, invalidate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Hero {
    id: u64,
    name: String,
    team: String,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// A stand-in for a database: a map behind a lock, 20 ms per query.
struct Database {
    rows: Mutex<BTreeMap<u64, Hero>>,
    queries: AtomicU64,
}

impl Database {
    async fn query<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, Hero>) -> T) -> Result<T, DbError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut rows = self.rows.lock().map_err(|_| DbError("poisoned".into()))?;
        Ok(f(&mut rows))
    }
}

struct HeroRepository {
    db: Database,
}

impl HeroRepository {
    /// One hero, cached under `hero:{id}`. `None` (no such hero) is cached
    /// too: it is an answer.
    #[cached(ttl = 300, key = "hero:{id}")]
    async fn find_by_id(&self, id: u64) -> Result<Option<Hero>, DbError> {
        self.db.query(|rows| rows.get(&id).cloned()).await
    }

    /// Every hero: a collection, tagged so writes can drop it by tag.
    #[cached(ttl = 60, key = "heroes:all", tags = ["hero-lists"])]
    async fn list_all(&self) -> Result<Vec<Hero>, DbError> {
        self.db.query(|rows| rows.values().cloned().collect()).await
    }

    /// The heroes of one team.
    #[cached(ttl = 60, key = "heroes:team:{team}", tags = ["hero-lists"])]
    async fn list_by_team(&self, team: &str) -> Result<Vec<Hero>, DbError> {
        self.db
            .query(|rows| rows.values().filter(|h| h.team == team).cloned().collect())
            .await
    }

    /// A new hero: its key (it may be cached as `None`) and every list change.
    #[invalidate("hero:{hero.id}", tags = ["hero-lists"])]
    async fn save(&self, hero: Hero) -> Result<(), DbError> {
        self.db
            .query(|rows| rows.insert(hero.id, hero))
            .await
            .map(drop)
    }

    /// An existing hero changes.
    #[invalidate("hero:{id}", tags = ["hero-lists"])]
    async fn update(&self, id: u64, team: &str) -> Result<(), DbError> {
        let found = self
            .db
            .query(|rows| {
                rows.get_mut(&id)
                    .map(|h| h.team = team.to_owned())
                    .is_some()
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(DbError(format!("no hero {id}")))
        }
    }

    /// A hero leaves.
    #[invalidate("hero:{id}", tags = ["hero-lists"])]
    async fn delete(&self, id: u64) -> Result<(), DbError> {
        self.db.query(|rows| rows.remove(&id)).await.map(drop)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    cachekit::init(Config::from_env()?).await?;
    println!("cache backend: {}\n", cachekit::health().await.backend);
    let repo = HeroRepository {
        db: Database {
            rows: Mutex::new(BTreeMap::new()),
            queries: AtomicU64::new(0),
        },
    };
    for (id, name, team) in [
        (1, "Ada", "avengers"),
        (2, "Grace", "avengers"),
        (3, "Alan", "x-men"),
    ] {
        repo.save(Hero {
            id,
            name: name.into(),
            team: team.into(),
        })
        .await?;
    }
    let queries = || repo.db.queries.load(Ordering::Relaxed);

    let before = queries();
    for _ in 0..10 {
        repo.find_by_id(1).await?;
        repo.list_all().await?;
        repo.list_by_team("avengers").await?;
    }
    println!(
        "30 reads: {} database queries (the first of each, then hits)",
        queries() - before
    );

    println!("update: Alan joins the avengers");
    repo.update(3, "avengers").await?;
    let avengers = repo.list_by_team("avengers").await?;
    println!(
        "  avengers now: {:?}",
        avengers.iter().map(|h| &h.name).collect::<Vec<_>>()
    );
    assert_eq!(avengers.len(), 3, "the team list was invalidated by tag");

    println!("delete: Grace leaves");
    repo.delete(2).await?;
    assert_eq!(
        repo.find_by_id(2).await?,
        None,
        "her cached entry was invalidated"
    );
    assert_eq!(repo.list_all().await?.len(), 2);

    println!("a failed write invalidates nothing");
    let cached_before = queries();
    assert!(repo.update(42, "nobody").await.is_err());
    repo.find_by_id(1).await?;
    repo.list_all().await?;
    assert_eq!(
        queries() - cached_before,
        1,
        "only the failed update queried"
    );

    let stats = cachekit::stats();
    println!(
        "\n{:<14} {:>5} {:>7} {:>9}",
        "function", "hits", "misses", "hit rate"
    );
    for name in ["find_by_id", "list_all", "list_by_team"] {
        let c = stats.function(name).expect("counted");
        println!(
            "{name:<14} {:>5} {:>7} {:>8.0}%",
            c.hits,
            c.misses,
            c.hit_rate() * 100.0
        );
    }
    println!("database queries: {}", queries());
    Ok(())
}
