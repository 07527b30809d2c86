//! The trading example over real HTTP, with its cache on a real Redis:
//! authentication, per-trader isolation, hits within the TTL, invalidation
//! on write, identical answers cached and uncached, expiry.
//!
//! The service is `examples/trading`'s `app()`, seeded small (3,000 rows
//! over 12 traders) and served on a free port, once per cache mode: its
//! reads cached per function (`CACHE_MODE=functions`) and as HTTP responses
//! (`CACHE_MODE=layer`). Every test runs against both, side by side; each
//! service has its own database. Each test reads as its own traders, so
//! tests running side by side never share a cache entry. The outage test
//! serves four more (each mode, fail-safe on and off), since an outage
//! stops a service's database for every test that uses it.

mod common;

#[path = "../examples/trading/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod trading;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{run, shared_server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

const SECRET: &str = "trading-test-secret";
const VIEWS: [&str; 3] = [
    "/api/v1/reconciliation/status",
    "/api/v1/positions",
    "/api/v1/guards",
];

use trading::CacheMode;

struct Service {
    mode: CacheMode,
    base: String,
    trading: Arc<trading::Trading>,
    http: reqwest::Client,
    /// One token per trader: the layer keys on the token, so a trader who
    /// logged in once keeps reading one entry.
    tokens: Mutex<HashMap<i64, String>>,
}

/// cachekit's configuration is process-wide: the test that serves with
/// caching disabled holds this for writing, every other test for reading.
static CACHE_CONFIG: RwLock<()> = RwLock::const_new(());

fn cache_config() -> cachekit::Config {
    cachekit::Config::redis(&shared_server().url())
}

async fn service(mode: CacheMode) -> &'static Service {
    static FUNCTIONS: OnceCell<Service> = OnceCell::const_new();
    static LAYER: OnceCell<Service> = OnceCell::const_new();
    static INIT: OnceCell<()> = OnceCell::const_new();
    INIT.get_or_init(|| async {
        cachekit::init(cache_config()).await.expect("cachekit init");
    })
    .await;
    let cell = match mode {
        CacheMode::Functions => &FUNCTIONS,
        CacheMode::Layer => &LAYER,
    };
    cell.get_or_init(|| start(settings(mode))).await
}

/// A small book (3,000 rows over 12 traders) served in `mode`.
fn settings(mode: CacheMode) -> trading::Settings {
    trading::Settings {
        seed: trading::Seed {
            users: 12,
            rows: 3_000,
        },
        jwt_secret: SECRET.into(),
        readers: 2,
        cache_mode: mode,
        ..trading::Settings::new()
    }
}

/// Opens the book and serves it on a free port.
async fn start(settings: trading::Settings) -> Service {
    let mode = settings.cache_mode;
    let trading = tokio::task::spawn_blocking(move || trading::Trading::open(&settings))
        .await
        .unwrap()
        .expect("open the trading database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = trading::app(trading.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Service {
        mode,
        base,
        trading,
        http: reqwest::Client::new(),
        tokens: Mutex::default(),
    }
}

const MODES: [CacheMode; 2] = [CacheMode::Functions, CacheMode::Layer];

/// Runs `test` against the service in each cache mode, side by side.
fn both<F, Fut>(test: F)
where
    F: Fn(&'static Service) -> Fut,
    Fut: Future<Output = ()>,
{
    run(async {
        let _config = CACHE_CONFIG.read().await;
        let (functions, layer) = (service(MODES[0]).await, service(MODES[1]).await);
        tokio::join!(test(functions), test(layer));
    });
}

/// One response: status, the cache headers, the body.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    cache: String,
    db_queries: u64,
    /// The layer's `Cache-Status` (layer mode).
    cache_status: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Service {
    fn trading_mode_name(&self) -> &'static str {
        self.mode.name()
    }

    fn token(&self, user_id: i64) -> String {
        self.tokens
            .lock()
            .unwrap()
            .entry(user_id)
            .or_insert_with(|| self.trading.token(user_id))
            .clone()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request")).await
    }

    async fn view(&self, path: &str, user_id: i64) -> Reply {
        let reply = self.get(path, Some(&self.token(user_id))).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{:?} {path}: {}",
            self.mode,
            reply.body
        );
        reply
    }

    /// `POST /admin/outage`: every query fails for `duration` ("0s" ends it).
    async fn outage(&self, duration: &str) -> Reply {
        let request = self
            .http
            .post(format!("{}/admin/outage", self.base))
            .json(&json!({ "duration": duration }));
        reply(request.send().await.expect("request")).await
    }

    async fn record(&self, user_id: i64, fill: Value) -> Reply {
        let request = self
            .http
            .post(format!("{}/api/v1/reconciliations", self.base))
            .bearer_auth(self.token(user_id))
            .json(&fill);
        reply(request.send().await.expect("request")).await
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let cache = header("x-cache").unwrap_or_default();
    let db_queries = header("x-db-queries").map_or(0, |v| v.parse().unwrap());
    let cache_status = header("cache-status").unwrap_or_default();
    let status = response.status();
    let body = response.text().await.expect("body");
    Reply {
        status,
        cache,
        db_queries,
        cache_status,
        body,
    }
}

fn mint(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The PTTL of a view's entry on Redis, in ms.
fn stored_pttl(svc: &Service, user_id: i64, view: &str) -> i64 {
    let redis = shared_server();
    match svc.mode {
        CacheMode::Functions => redis.cmd(&["PTTL", &redis_key(user_id, view)]),
        // The layer's key holds a hash of the token, not the trader: every
        // entry of the view has the same TTL, so the longest-lived stands
        // for this one.
        CacheMode::Layer => {
            let keys: Vec<String> = redis.cmd(&["KEYS", &format!("trading-http*GET {view} *")]);
            keys.iter()
                .map(|k| redis.cmd::<i64>(&["PTTL", k]))
                .max()
                .unwrap_or(-2)
        }
    }
}

fn redis_key(user_id: i64, view: &str) -> String {
    let name = match view {
        "/api/v1/reconciliation/status" => "reconciliation",
        "/api/v1/positions" => "positions",
        "/api/v1/guards" => "guards",
        other => panic!("{other}"),
    };
    format!("trading:{user_id}:{name}")
}

#[test]
fn every_endpoint_requires_a_valid_token() {
    both(|svc| async move {
        let good = svc.token(1);
        let other_secret = mint(
            "not-the-secret",
            json!({"sub": "1", "iat": now(), "exp": now() + 600}),
        );
        let expired = mint(
            SECRET,
            json!({"sub": "1", "iat": now() - 7200, "exp": now() - 3600}),
        );
        let not_a_trader = mint(
            SECRET,
            json!({"sub": "ada", "iat": now(), "exp": now() + 600}),
        );
        // Trader 1's token with trader 2's claims: the signature no longer fits.
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = svc.token(2);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            forged_claims.split('.').nth(1).unwrap(),
            parts[2]
        );
        // alg "none", unsigned.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            forged_claims.split('.').nth(1).unwrap()
        );
        for path in VIEWS {
            let reply = svc.get(path, None).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{path} without a token"
            );
            assert!(reply.json()["error"].as_str().unwrap().contains("Bearer"));
            for (what, token) in [
                ("garbage", "not-a-token"),
                ("another secret", other_secret.as_str()),
                ("expired", expired.as_str()),
                ("a subject that is no trader id", not_a_trader.as_str()),
                ("forged claims", forged.as_str()),
                ("alg none", unsigned.as_str()),
            ] {
                let reply = svc.get(path, Some(token)).await;
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{path} with {what}: {}",
                    reply.body
                );
                assert_eq!(reply.cache, "", "rejected before any read");
            }
            assert_eq!(svc.get(path, Some(&good)).await.status, StatusCode::OK);
        }
        // The write too, and a scheme that is not Bearer.
        let write = svc
            .http
            .post(format!("{}/api/v1/reconciliations", svc.base))
            .json(&json!({"account": "trader001-1", "symbol": "AAPL", "side": "buy", "quantity": 10, "price": 1.0}));
        let reply = reply(write.send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let basic = svc
            .http
            .get(format!("{}{}", svc.base, VIEWS[0]))
            .header("authorization", format!("Basic {good}"));
        assert_eq!(
            basic.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    });
}

#[test]
fn login_issues_a_token_for_the_right_password_only() {
    both(|svc| async move {
        let login = |username: &str, password: &str| {
            svc.http
                .post(format!("{}/api/v1/login", svc.base))
                .json(&json!({"username": username, "password": password}))
                .send()
        };
        let ok = reply(login("trader002", "trading-demo").await.unwrap()).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        let token = ok.json();
        assert_eq!(token["user_id"], 2);
        assert_eq!(token["token_type"], "Bearer");
        let reply = svc
            .get(VIEWS[1], Some(token["token"].as_str().unwrap()))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["user_id"], 2);

        for (user, password) in [("trader002", "wrong"), ("nobody", "trading-demo")] {
            let denied = login(user, password).await.unwrap();
            assert_eq!(
                denied.status(),
                StatusCode::UNAUTHORIZED,
                "{user}/{password}"
            );
        }
    });
}

#[test]
fn a_second_read_within_the_ttl_is_a_hit() {
    both(|svc| async move {
        let user = 3;
        for path in VIEWS {
            let started = Instant::now();
            let cold = svc.view(path, user).await;
            assert_eq!(cold.cache, "miss", "{path}: the first read runs SQL");
            assert!(cold.db_queries > 0);
            let pttl = stored_pttl(svc, user, path);
            assert!(
                pttl > 0 && pttl <= 5_000,
                "{path}: stored with the 5 s TTL, PTTL {pttl}"
            );
            for _ in 0..3 {
                let hit = svc.view(path, user).await;
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the machine is too slow for this test: {:?}",
                    started.elapsed()
                );
                assert_eq!(hit.cache, "hit", "{path}: within the TTL");
                assert_eq!(hit.db_queries, 0, "{path}: a hit runs no SQL");
                assert_eq!(hit.body, cold.body);
                if svc.mode == CacheMode::Layer {
                    let ttl: i64 = hit
                        .cache_status
                        .strip_prefix("cachekit; hit; ttl=")
                        .unwrap_or_else(|| panic!("{path}: {}", hit.cache_status))
                        .parse()
                        .unwrap();
                    assert!((0..=5).contains(&ttl), "{}", hit.cache_status);
                }
            }
        }
    });
}

#[test]
fn a_trader_only_ever_sees_their_own_book() {
    both(|svc| async move {
        let (a, b) = (4, 5);
        for path in VIEWS {
            // B's answer is cached first; A must still get A's, cached or not.
            let b_cold = svc.view(path, b).await;
            let a_cold = svc.view(path, a).await;
            let a_hit = svc.view(path, a).await;
            let b_hit = svc.view(path, b).await;
            assert_eq!(
                (a_cold.cache.as_str(), a_hit.cache.as_str()),
                ("miss", "hit")
            );
            assert_eq!(
                (b_cold.cache.as_str(), b_hit.cache.as_str()),
                ("miss", "hit")
            );
            assert_eq!(a_cold.body, a_hit.body);
            assert_eq!(b_cold.body, b_hit.body);
            assert_ne!(a_cold.body, b_cold.body, "{path}");
            for (user, reply) in [(a, &a_cold), (a, &a_hit), (b, &b_cold), (b, &b_hit)] {
                let value = reply.json();
                assert_eq!(value["user_id"], user, "{path}");
                assert_only_accounts_of(user, &value);
            }
        }
        // A cannot record a fill on B's account, and A's cache is untouched.
        let denied = svc
            .record(
                a,
                json!({"account": format!("{}-1", trading::username(b)), "symbol": "AAPL", "side": "buy", "quantity": 10, "price": 100.0}),
            )
            .await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
        // B's write invalidates B's views only.
        let written = svc
            .record(
                b,
                json!({"account": format!("{}-1", trading::username(b)), "symbol": "MSFT", "side": "sell", "quantity": 20, "price": 400.0}),
            )
            .await;
        assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
        for path in VIEWS {
            assert_eq!(
                svc.view(path, a).await.cache,
                "hit",
                "{path}: A's entry stays"
            );
            assert_eq!(svc.view(path, b).await.cache, "miss", "{path}: B's is gone");
        }
    });
}

/// Every `account` anywhere in `value` belongs to `user`.
fn assert_only_accounts_of(user: i64, value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "account" {
                    let account = v.as_str().unwrap();
                    assert!(
                        account.starts_with(&format!("{}-", trading::username(user))),
                        "trader {user} was shown account {account}"
                    );
                }
                assert_only_accounts_of(user, v);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_only_accounts_of(user, v)),
        _ => {}
    }
}

#[test]
fn a_write_shows_up_in_the_next_read() {
    both(|svc| async move {
        let user = 6;
        let account = format!("{}-1", trading::username(user));
        let before: Vec<Value> = {
            let mut v = Vec::new();
            for path in VIEWS {
                svc.view(path, user).await;
                let hit = svc.view(path, user).await;
                assert_eq!(hit.cache, "hit");
                v.push(hit.json());
            }
            v
        };
        let symbol = before[1]["positions"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["account"] == account.as_str()))
            .map_or("AAPL".to_string(), |p| {
                p["symbol"].as_str().unwrap().to_string()
            });
        // A break: the broker booked 10 fewer.
        let written = svc
            .record(
                user,
                json!({"account": account, "symbol": symbol, "side": "buy", "quantity": 70, "price": 101.5, "broker_quantity": 60}),
            )
            .await;
        assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
        let fill = written.json();
        assert_eq!(fill["status"], "break");
        if svc.mode == CacheMode::Functions {
            for path in VIEWS {
                assert!(
                    !shared_server().cmd::<bool>(&["EXISTS", &redis_key(user, path)]),
                    "{path}: invalidated by the write"
                );
            }
        }

        let status = svc.view(VIEWS[0], user).await;
        assert_eq!(status.cache, "miss", "read after the write");
        let status = status.json();
        assert_eq!(status["total"], before[0]["total"].as_i64().unwrap() + 1);
        assert_eq!(status["breaks"], before[0]["breaks"].as_i64().unwrap() + 1);
        assert_eq!(status["recent_breaks"][0]["id"], fill["id"]);
        assert_eq!(status["as_of"], fill["trade_ts"]);

        let positions = svc.view(VIEWS[1], user).await;
        assert_eq!(positions.cache, "miss");
        let quantity_of = |v: &Value| {
            v["positions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["account"] == account.as_str() && p["symbol"] == symbol.as_str())
                .map_or(0, |p| p["quantity"].as_i64().unwrap())
        };
        assert_eq!(quantity_of(&positions.json()), quantity_of(&before[1]) + 70);

        let guards = svc.view(VIEWS[2], user).await;
        assert_eq!(guards.cache, "miss");
        assert_eq!(guards.json()["as_of"], fill["trade_ts"]);

        // And cached again.
        for path in VIEWS {
            assert_eq!(svc.view(path, user).await.cache, "hit", "{path}");
        }

        // A rejected write changes nothing and invalidates nothing.
        let rejected = svc
            .record(
                user,
                json!({"account": account, "symbol": "NOPE", "side": "buy", "quantity": 1, "price": 1.0}),
            )
            .await;
        assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(svc.view(VIEWS[0], user).await.cache, "hit");
    });
}

#[test]
fn cached_and_uncached_answers_are_identical() {
    run(async {
        let user = 9;
        let mut cached = Vec::new();
        {
            let _config = CACHE_CONFIG.read().await;
            for mode in MODES {
                let svc = service(mode).await;
                for path in VIEWS {
                    let cold = svc.view(path, user).await;
                    let hit = svc.view(path, user).await;
                    assert_eq!(
                        (cold.cache.as_str(), hit.cache.as_str()),
                        ("miss", "hit"),
                        "{mode:?}"
                    );
                    // The same bytes, not just the same values.
                    assert_eq!(cold.body, hit.body, "{mode:?} {path}");
                    assert_eq!(cold.json(), hit.json(), "{mode:?} {path}");
                    cached.push(hit);
                }
            }
        }
        // The same services with caching disabled (cachekit's switch, as
        // CACHE_ENABLED=false sets it): every read runs its SQL.
        let _config = CACHE_CONFIG.write().await;
        cachekit::init(cache_config().enabled(false)).await.unwrap();
        let mut uncached = Vec::new();
        for mode in MODES {
            let svc = service(mode).await;
            for path in VIEWS {
                let reply = svc.view(path, user).await;
                assert_eq!(reply.cache, "off");
                assert!(reply.db_queries > 0);
                if mode == CacheMode::Layer {
                    assert_eq!(
                        reply.cache_status,
                        "cachekit; fwd=bypass; fwd-status=200; detail=off"
                    );
                }
                uncached.push(reply);
            }
            let stats: Value = svc
                .http
                .get(format!("{}/stats", svc.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(stats["cache_enabled"], false);
        }
        cachekit::init(cache_config()).await.unwrap();
        let paths = MODES
            .iter()
            .flat_map(|mode| VIEWS.iter().map(move |p| (mode, p)));
        for (((mode, path), hit), fresh) in paths.zip(&cached).zip(&uncached) {
            assert_eq!(
                shape(&hit.json()),
                shape(&fresh.json()),
                "{mode:?} {path}: schema"
            );
            assert_eq!(hit.body, fresh.body, "{mode:?} {path}: the same answer");
        }
        // And the same answer in both modes.
        assert_eq!(
            cached[..3].iter().map(|r| &r.body).collect::<Vec<_>>(),
            cached[3..].iter().map(|r| &r.body).collect::<Vec<_>>()
        );
    });
}

/// The schema of a JSON value: field names and types, arrays by their first item.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_f64() => json!("float"),
        Value::Number(_) => json!("integer"),
        Value::String(_) => json!("string"),
        Value::Array(items) => json!([items.first().map(shape)]),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

#[test]
fn entries_expire_after_five_seconds() {
    both(|svc| async move {
        let user = 8;
        let path = VIEWS[2];
        let cold = svc.view(path, user).await;
        let stored = Instant::now();
        assert_eq!(cold.cache, "miss");
        assert_eq!(svc.view(path, user).await.cache, "hit");
        tokio::time::sleep(Duration::from_millis(5_300).saturating_sub(stored.elapsed())).await;
        if svc.mode == CacheMode::Functions {
            let exists: bool = shared_server().cmd(&["EXISTS", &redis_key(user, path)]);
            assert!(!exists, "Redis dropped the entry after its TTL");
        }
        let expired = svc.view(path, user).await;
        assert_eq!(expired.cache, "miss", "recomputed after the TTL");
        assert_eq!(expired.body, cold.body);
        assert_eq!(svc.view(path, user).await.cache, "hit");
    });
}

#[test]
fn stats_count_reads_hits_and_queries() {
    both(|svc| async move {
        let stats = || async {
            svc.http
                .get(format!("{}/stats", svc.base))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        let before = stats().await;
        let cold = svc.view(VIEWS[0], 10).await;
        svc.view(VIEWS[0], 10).await;
        let after = stats().await;
        let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        assert_eq!(after["cache_backend"], "redis");
        assert_eq!(after["cache_mode"], svc.trading_mode_name());
        // Other tests run beside this one: at least ours are counted.
        assert!(delta("reads") >= 2);
        assert!(delta("cache_hits") >= 1);
        assert!(delta("cache_misses") >= 1);
        assert!(delta("db_queries") >= cold.db_queries);
        assert!(delta("cachekit_hits") >= 1);
        // cachekit's own endpoint: stats and health as JSON.
        let cache: Value = svc
            .http
            .get(format!("{}/cache", svc.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cache["health"]["backend"], "redis");
        assert_eq!(cache["health"]["caching"], "on");
        if svc.mode == CacheMode::Layer {
            let layer = &cache["stats"]["namespaces"]["trading-http"];
            assert!(layer["hits"].as_u64().unwrap() >= 1, "{cache}");
        }
    });
}

/// Layer mode keys on the token; the write invalidates the trader's tag,
/// so every token of the trader sees the write at once. The layer's ETag
/// answers a conditional read with 304, from the cache.
#[test]
fn a_write_reaches_every_token_of_the_trader() {
    run(async {
        let _config = CACHE_CONFIG.read().await;
        let svc = service(CacheMode::Layer).await;
        let user = 11;
        let first = svc.token(user);
        let second = mint(
            SECRET,
            json!({"sub": user.to_string(), "iat": now() - 60, "exp": now() + 600}),
        );
        assert_ne!(first, second);
        let path = VIEWS[0];
        for token in [&first, &second] {
            assert_eq!(
                svc.get(path, Some(token)).await.cache,
                "miss",
                "an entry per token"
            );
            assert_eq!(svc.get(path, Some(token)).await.cache, "hit");
        }
        let etag = svc
            .http
            .get(format!("{}{path}", svc.base))
            .bearer_auth(&first)
            .send()
            .await
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let not_modified = svc
            .http
            .get(format!("{}{path}", svc.base))
            .bearer_auth(&first)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(
            not_modified.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("hit")
        );

        let account = format!("{}-1", trading::username(user));
        let written = svc
            .record(
                user,
                json!({"account": account, "symbol": "KO", "side": "buy", "quantity": 10, "price": 70.0}),
            )
            .await;
        assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
        for token in [&first, &second] {
            let reply = svc.get(path, Some(token)).await;
            assert_eq!(reply.cache, "miss", "invalidated by the trader's tag");
            assert!(reply.db_queries > 0);
        }
        // The new answer has a new ETag: the old one no longer matches.
        let changed = svc
            .http
            .get(format!("{}{path}", svc.base))
            .bearer_auth(&first)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);
    });
}

/// A database outage after the views expired. With fail-safe on, every
/// view still answers 200 with its last good value, again and again; off,
/// each read is a 500. Writes fail either way: no cache can record a
/// fill. Once the outage ends, everything answers again. The admin route
/// exists only with `TRADING_ADMIN` on.
#[test]
fn fail_safe_answers_through_a_database_outage() {
    run(async {
        let _config = CACHE_CONFIG.read().await;
        let shared = service(CacheMode::Functions).await;
        assert_eq!(
            shared.outage("10s").await.status,
            StatusCode::NOT_FOUND,
            "no admin route unless TRADING_ADMIN is on"
        );
        let services = MODES.map(|mode| {
            [true, false].map(move |fail_safe| async move {
                let svc = start(trading::Settings {
                    fail_safe,
                    admin: true,
                    ..settings(mode)
                })
                .await;
                through_an_outage(&svc, fail_safe).await;
            })
        });
        let [[a, b], [c, d]] = services;
        tokio::join!(a, b, c, d);
    });
}

async fn through_an_outage(svc: &Service, fail_safe: bool) {
    // Traders no other test reads: the functions mode's keys name only
    // the trader, and every service here shares one Redis.
    let user = if fail_safe { 7 } else { 12 };
    let what = format!(
        "{:?}, fail-safe {}",
        svc.mode,
        if fail_safe { "on" } else { "off" }
    );
    let mut good = Vec::new();
    for path in VIEWS {
        good.push(svc.view(path, user).await.body);
    }
    let stored = Instant::now();
    tokio::time::sleep(Duration::from_millis(5_300).saturating_sub(stored.elapsed())).await;

    let started = svc.outage("30s").await;
    assert_eq!(started.status, StatusCode::OK, "{what}: {}", started.body);
    assert!(started.json()["outage_ms"].as_u64().unwrap() > 29_000);
    let token = svc.token(user);
    for (path, good) in VIEWS.iter().zip(&good) {
        // The second read is within the throttle: the last good value
        // again, without asking the database.
        for attempt in ["first", "second"] {
            let reply = svc.get(path, Some(&token)).await;
            if fail_safe {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{what}, {path}, {attempt}: {}",
                    reply.body
                );
                assert_eq!(&reply.body, good, "{what}, {path}: the last good value");
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{what}, {path}, {attempt}: expired, and the database is down"
                );
            }
        }
    }
    let account = format!("{}-1", trading::username(user));
    let fill =
        json!({"account": account, "symbol": "KO", "side": "buy", "quantity": 10, "price": 70.0});
    let write = svc.record(user, fill.clone()).await;
    assert_eq!(
        write.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{what}: {}",
        write.body
    );

    assert_eq!(svc.outage("0s").await.json()["outage_ms"], 0);
    for path in VIEWS {
        svc.view(path, user).await;
    }
    let write = svc.record(user, fill).await;
    assert_eq!(write.status, StatusCode::CREATED, "{what}: {}", write.body);
}
