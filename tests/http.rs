//! `cachekit::http::CacheLayer` over real HTTP: an axum service behind the
//! layer on a free port, driven by reqwest, on the embedded store and on a
//! real Redis.
//!
//! Each test runs once per backend (`memory::name`, `redis::name`), on a
//! runtime of its own with a cache of its own (on Redis, under a key
//! prefix of its own), so that tests running side by side share nothing.
//! The origin counts its calls per path: "the handler ran once" is a
//! count, not a guess from timings.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachekit::http::CacheLayer;
use cachekit::testing::RuntimeCache;
use common::{shared_server, unique};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Redis,
}

/// What a test runs with.
struct Ctx {
    backend: Backend,
    /// The Redis key prefix of the test's cache.
    prefix: String,
}

impl Ctx {
    /// The keys of the test's cache on Redis (none in memory).
    fn redis_keys(&self) -> Vec<String> {
        match self.backend {
            Backend::Memory => Vec::new(),
            Backend::Redis => shared_server().cmd(&["KEYS", &format!("{}*", self.prefix)]),
        }
    }

    /// Whether nothing is stored on Redis once the leases of calls whose
    /// answers were not stored are gone (they are removed in the
    /// background).
    async fn nothing_stored(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let keys = self.redis_keys();
            if keys.is_empty() {
                return true;
            }
            if Instant::now() > deadline {
                eprintln!("still stored: {keys:?}");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `test` on a runtime and a cache of its own.
fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let prefix = unique("http-test-");
        let config = match backend {
            Backend::Memory => cachekit::Config::memory(),
            Backend::Redis => {
                cachekit::Config::redis(&shared_server().url()).key_prefix(prefix.clone())
            }
        };
        let cache = RuntimeCache::with_config(config);
        test(Ctx { backend, prefix }).await;
        cache.cleanup().await;
    });
}

macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::run(super::Backend::Memory, super::$name) })*
        }
        mod redis {
            $(#[test] fn $name() { super::run(super::Backend::Redis, super::$name) })*
        }
    };
}

on_each_backend!(
    a_second_get_is_a_hit_and_the_handler_runs_once,
    a_matching_if_none_match_gets_a_304_from_the_cache,
    a_no_store_response_is_not_stored,
    request_directives_revalidate_or_bypass,
    two_tokens_make_two_entries_and_never_see_each_other,
    a_post_is_never_cached,
    concurrent_cold_gets_call_the_handler_once,
    the_fail_safe_copy_is_served_when_the_handler_fails,
    a_stale_response_is_served_while_it_refreshes,
    tag_and_namespace_invalidation_make_the_next_get_a_miss,
    a_body_over_the_cap_streams_through_whole,
    the_stats_endpoint_answers_json,
    a_hard_timeout_answers_504_or_the_copy,
    lock_makes_one_call_across_processes,
);

/// The service behind the layer: counts its calls per path, and fails on
/// demand.
#[derive(Default)]
struct Origin {
    calls: Mutex<HashMap<String, usize>>,
    failing: AtomicBool,
}

impl Origin {
    fn calls(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// Bytes of the large bodies: 256 KiB, not a repeating 1 KiB.
fn big_body() -> Vec<u8> {
    (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect()
}

async fn answer(State(origin): State<Arc<Origin>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let call = {
        let mut calls = origin.calls.lock().unwrap();
        let n = calls.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if origin.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the database is down").into_response();
    }
    // The user a bearer token names ("Bearer alice": alice).
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("anonymous")
        .to_owned();
    let report = json!({"path": path, "for": user, "call": call});
    match path.as_str() {
        "/no-store" => ([(header::CACHE_CONTROL, "no-store")], Json(report)).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Json(report).into_response()
        }
        "/slower" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Json(report).into_response()
        }
        "/big-stream" => {
            let chunks: Vec<Result<Bytes, Infallible>> = big_body()
                .chunks(16 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        "/big-known" => big_body().into_response(),
        "/private" => (
            [(header::CACHE_CONTROL, "private, max-age=60")],
            Json(report),
        )
            .into_response(),
        _ => Json(report).into_response(),
    }
}

/// The origin behind `layer` on a free port, and `/cache` (the stats
/// endpoint) beside it.
struct Server {
    base: String,
    origin: Arc<Origin>,
    http: reqwest::Client,
}

async fn serve(layer: CacheLayer) -> Server {
    serve_origin(layer, Arc::new(Origin::default())).await
}

/// [`serve`], with an origin shared with another server.
async fn serve_origin(layer: CacheLayer, origin: Arc<Origin>) -> Server {
    let app = Router::new()
        .route("/{*path}", get(answer).post(answer))
        .layer(layer)
        .route_service("/cache", cachekit::http::stats_service())
        .nest_service("/actuator/caches", cachekit::http::stats_router())
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base,
        origin,
        http: reqwest::Client::new(),
    }
}

/// One response, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The layer's `Cache-Status` member.
    fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Server {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }
}

fn layer() -> CacheLayer {
    CacheLayer::new()
        .namespace("web")
        .ttl(Duration::from_secs(30))
}

async fn a_second_get_is_a_hit_and_the_handler_runs_once(ctx: Ctx) {
    let server = serve(layer()).await;
    let cold = server.get("/report?day=3").await;
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(
        cold.cache_status(),
        "cachekit; fwd=miss; fwd-status=200; stored"
    );
    assert!(cold.header("age").is_none(), "fetched for this request");
    let etag = cold.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong: {etag}"
    );

    let hit = server.get("/report?day=3").await;
    assert_eq!(hit.status, StatusCode::OK);
    assert!(
        hit.cache_status().starts_with("cachekit; hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert!(hit.header("age").is_some());
    assert_eq!(hit.header("etag"), Some(etag.as_str()));
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert_eq!(hit.body, cold.body, "the same bytes");
    assert_eq!(server.origin.calls("/report"), 1, "the handler ran once");

    // HEAD is answered from the GET entry: the head, the length, no body.
    let head = server
        .send(server.http.head(format!("{}/report?day=3", server.base)))
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.cache_status().contains("hit"),
        "{}",
        head.cache_status()
    );
    assert_eq!(
        head.header("content-length"),
        Some(cold.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
    // Another query is another entry.
    let other = server.get("/report?day=4").await;
    assert!(other.cache_status().contains("fwd=miss"));
    assert_eq!(server.origin.calls("/report"), 2);

    let stats = cachekit::testing::stats();
    let web = stats
        .namespace("web")
        .expect("the layer's namespace is counted");
    assert_eq!((web.hits, web.misses), (2, 2));
    if ctx.backend == Backend::Redis {
        let keys = ctx.redis_keys();
        assert_eq!(keys.len(), 2, "{keys:?}");
        let key = keys
            .iter()
            .find(|k| k.ends_with("GET /report?day=3"))
            .unwrap_or_else(|| panic!("the key names the target: {keys:?}"));
        let stored: Vec<u8> = shared_server().cmd(&["GET", key]);
        let text = String::from_utf8_lossy(&stored);
        // After the engine's frame (entries of a test cache carry their
        // times), the response reads as an HTTP message.
        assert!(
            text.contains("cachekit-http/1 200 ")
                && text.contains("\r\ncontent-type: application/json\r\n"),
            "readable in redis-cli: {text}"
        );
        assert!(text.ends_with(std::str::from_utf8(&cold.body).unwrap()));
    }
}

async fn a_matching_if_none_match_gets_a_304_from_the_cache(_: Ctx) {
    let server = serve(layer()).await;
    let cold = server.get("/report").await;
    let etag = cold.header("etag").unwrap().to_owned();
    for condition in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let reply = server
            .get_with("/report", &[("if-none-match", &condition)])
            .await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{condition}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
        assert!(reply.cache_status().contains("hit"));
    }
    let changed = server
        .get_with("/report", &[("if-none-match", "\"something-else\"")])
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, cold.body);
    assert_eq!(
        server.origin.calls("/report"),
        1,
        "every answer came from the cache"
    );
    // On a miss the condition is answered from the fresh response, and the
    // service got an unconditional request (its full response is stored).
    let miss = server
        .get_with("/report?x", &[("if-none-match", &etag)])
        .await;
    assert_eq!(miss.status, StatusCode::OK, "another body, another ETag");
    let again = server
        .get_with(
            "/report?x",
            &[("if-none-match", miss.header("etag").unwrap())],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}

async fn a_no_store_response_is_not_stored(ctx: Ctx) {
    let server = serve(layer()).await;
    for call in 1..=3 {
        let reply = server.get("/no-store").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["call"], call);
        assert_eq!(
            reply.cache_status(),
            "cachekit; fwd=miss; fwd-status=200; detail=no-store"
        );
    }
    assert_eq!(server.origin.calls("/no-store"), 3);
    assert!(ctx.nothing_stored().await);
}

async fn request_directives_revalidate_or_bypass(_: Ctx) {
    let server = serve(layer()).await;
    let first = server.get("/report").await;
    assert_eq!(first.json()["call"], 1);
    // no-cache: the service answers, and its answer replaces the entry.
    let fresh = server
        .get_with("/report", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(fresh.json()["call"], 2);
    assert_eq!(
        fresh.cache_status(),
        "cachekit; fwd=request; fwd-status=200; stored"
    );
    let hit = server.get("/report").await;
    assert_eq!(hit.json()["call"], 2, "the revalidated response is stored");
    assert!(hit.cache_status().contains("hit"));
    // no-store: past the cache, and nothing stored.
    let bypass = server
        .get_with("/report", &[("cache-control", "no-store")])
        .await;
    assert_eq!(bypass.json()["call"], 3);
    assert_eq!(
        bypass.cache_status(),
        "cachekit; fwd=request; fwd-status=200; detail=no-store"
    );
    assert_eq!(server.get("/report").await.json()["call"], 2);
}

async fn two_tokens_make_two_entries_and_never_see_each_other(ctx: Ctx) {
    let server = serve(layer().vary_by("authorization")).await;
    let as_user = |user: &'static str| {
        let server = &server;
        async move {
            server
                .get_with("/report", &[("authorization", &format!("Bearer {user}"))])
                .await
        }
    };
    let alice = as_user("alice").await;
    let bob = as_user("bob").await;
    assert_eq!(alice.json()["for"], "alice");
    assert_eq!(bob.json()["for"], "bob");
    assert_eq!(server.origin.calls("/report"), 2, "two entries");
    for _ in 0..3 {
        let (a, b) = (as_user("alice").await, as_user("bob").await);
        assert!(a.cache_status().contains("hit") && b.cache_status().contains("hit"));
        assert_eq!(a.body, alice.body);
        assert_eq!(b.body, bob.body);
    }
    // No token is a third entry, not anyone's.
    let anonymous = server.get("/report").await;
    assert_eq!(anonymous.json()["for"], "anonymous");
    assert_eq!(server.origin.calls("/report"), 3);

    // A private answer is stored per token too; without a token it is not.
    for user in ["alice", "bob"] {
        let reply = server
            .get_with("/private", &[("authorization", &format!("Bearer {user}"))])
            .await;
        assert_eq!(reply.json()["for"], user);
        assert!(reply.cache_status().contains("stored"));
    }
    for _ in 0..2 {
        let reply = server.get("/private").await;
        assert_eq!(
            reply.cache_status(),
            "cachekit; fwd=miss; fwd-status=200; detail=private"
        );
    }
    assert_eq!(server.origin.calls("/private"), 4);

    if ctx.backend == Backend::Redis {
        let keys = ctx.redis_keys();
        assert_eq!(keys.len(), 5, "{keys:?}");
        for key in &keys {
            assert!(
                !key.contains("alice") && !key.contains("bob") && !key.contains("Bearer"),
                "a credential in clear: {key}"
            );
        }
    }
}

async fn a_post_is_never_cached(ctx: Ctx) {
    let server = serve(layer()).await;
    for call in 1..=3 {
        let reply = server
            .send(server.http.post(format!("{}/report", server.base)))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["call"], call);
        assert_eq!(reply.cache_status(), "cachekit; fwd=method; fwd-status=200");
    }
    assert!(ctx.nothing_stored().await);
    // And a GET after them is a miss of its own.
    assert!(
        server
            .get("/report")
            .await
            .cache_status()
            .contains("fwd=miss")
    );
}

async fn concurrent_cold_gets_call_the_handler_once(_: Ctx) {
    let server = Arc::new(serve(layer()).await);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move { server.get("/slow").await }));
    }
    let mut statuses = HashMap::<String, usize>::new();
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let kind = if reply.cache_status().contains("stored") {
            "stored"
        } else if reply.cache_status().contains("collapsed") {
            "collapsed"
        } else if reply.cache_status().contains("hit") {
            "hit"
        } else {
            panic!("{}", reply.cache_status())
        };
        *statuses.entry(kind.into()).or_default() += 1;
        bodies.push(reply.body);
    }
    assert_eq!(server.origin.calls("/slow"), 1, "one call for 100 requests");
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(statuses.get("stored"), Some(&1), "{statuses:?}");
    assert!(
        statuses.get("collapsed").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
}

async fn the_fail_safe_copy_is_served_when_the_handler_fails(_: Ctx) {
    let server = serve(
        layer()
            .ttl(Duration::from_millis(300))
            .fail_safe(Duration::from_secs(60)),
    )
    .await;
    let good = server.get("/report").await;
    assert_eq!(good.status, StatusCode::OK);
    server.origin.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let copy = server.get("/report").await;
    assert_eq!(copy.status, StatusCode::OK, "the last good response");
    assert_eq!(copy.body, good.body);
    let status = copy.cache_status();
    assert!(
        status.starts_with("cachekit; fwd=stale; fwd-status=500; ttl=-")
            && status.ends_with("; detail=fail-safe"),
        "{status}"
    );
    assert_eq!(server.origin.calls("/report"), 2, "the service was asked");
    // Throttled: the copy serves without asking the failing service again.
    let throttled = server.get("/report").await;
    assert_eq!(throttled.body, good.body);
    assert_eq!(server.origin.calls("/report"), 2);

    // With no copy, the failure passes through, and is not stored.
    let failure = server.get("/other").await;
    assert_eq!(failure.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failure.cache_status(), "cachekit; fwd=miss; fwd-status=500");
    server.origin.failing.store(false, Ordering::SeqCst);
    assert_eq!(server.get("/other").await.status, StatusCode::OK);
}

async fn a_stale_response_is_served_while_it_refreshes(_: Ctx) {
    let server = serve(
        layer()
            .ttl(Duration::from_millis(300))
            .stale(Duration::from_secs(30)),
    )
    .await;
    assert_eq!(server.get("/report").await.json()["call"], 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale = server.get("/report").await;
    assert_eq!(stale.json()["call"], 1, "served at once, stale");
    assert!(
        stale.cache_status().starts_with("cachekit; hit; ttl=-"),
        "{}",
        stale.cache_status()
    );
    // The refresh ran in the background, on the owned call of the service.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = server.get("/report").await;
        if reply.json()["call"] == 2 {
            assert!(reply.cache_status().contains("hit"));
            break;
        }
        assert!(Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.origin.calls("/report"), 2);
}

async fn tag_and_namespace_invalidation_make_the_next_get_a_miss(_: Ctx) {
    let layer = layer().vary_by("x-user").tags(|request| {
        request
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(|user| vec![format!("user:{user}")])
            .unwrap_or_default()
    });
    let server = serve(layer).await;
    let as_user = |user: &'static str| {
        let server = &server;
        async move { server.get_with("/report", &[("x-user", user)]).await }
    };
    as_user("1").await;
    as_user("2").await;
    assert!(as_user("1").await.cache_status().contains("hit"));
    assert_eq!(server.origin.calls("/report"), 2);

    assert_eq!(cachekit::invalidate_tag("user:1").await.unwrap(), 1);
    assert!(
        as_user("1").await.cache_status().contains("fwd=miss"),
        "invalidated"
    );
    assert!(
        as_user("2").await.cache_status().contains("hit"),
        "untouched"
    );
    assert_eq!(server.origin.calls("/report"), 3);

    cachekit::invalidate_namespace("web").await.unwrap();
    assert!(as_user("1").await.cache_status().contains("fwd=miss"));
    assert!(as_user("2").await.cache_status().contains("fwd=miss"));
    assert_eq!(server.origin.calls("/report"), 5);
}

async fn a_body_over_the_cap_streams_through_whole(ctx: Ctx) {
    let server = serve(layer().max_body(64 * 1024)).await;
    let expected = big_body();
    for path in ["/big-stream", "/big-known"] {
        for call in 1..=2 {
            let reply = server.get(path).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body.len(), expected.len(), "{path}");
            assert!(reply.body == expected, "{path}: every byte, in order");
            assert_eq!(
                reply.cache_status(),
                "cachekit; fwd=miss; fwd-status=200; detail=too-large"
            );
            assert_eq!(server.origin.calls(path), call, "never stored");
        }
    }
    assert!(ctx.nothing_stored().await);
    // Under the default cap (1 MiB) the same body is stored.
    let server = serve(layer()).await;
    server.get("/big-stream").await;
    let hit = server.get("/big-stream").await;
    assert!(hit.cache_status().contains("hit"));
    assert!(hit.body == expected);
}

async fn the_stats_endpoint_answers_json(ctx: Ctx) {
    let server = serve(layer()).await;
    server.get("/report").await;
    server.get("/report").await;
    let reply = server.get("/cache").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let backend = match ctx.backend {
        Backend::Memory => "memory",
        Backend::Redis => "redis",
    };
    assert_eq!(body["health"]["backend"], backend);
    assert_eq!(body["health"]["reachable"], true);
    assert_eq!(body["health"]["caching"], "on");
    let web = &body["stats"]["namespaces"]["web"];
    assert_eq!(
        (web["hits"].as_u64(), web["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(web["hit_rate"], 0.5);
    assert!(body["stats"]["hits"].as_u64().unwrap() >= 1);
    let post = server
        .send(server.http.post(format!("{}/cache", server.base)))
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    // The same endpoint, nested as a route of its own.
    let nested = server.get("/actuator/caches").await;
    assert_eq!(nested.status, StatusCode::OK);
    assert_eq!(nested.json()["health"]["backend"], backend);
}

async fn a_hard_timeout_answers_504_or_the_copy(_: Ctx) {
    let server = serve(
        layer()
            .ttl(Duration::from_millis(300))
            .hard_timeout(Duration::from_millis(100)),
    )
    .await;
    let abandoned = server.get("/slower").await;
    assert_eq!(abandoned.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        abandoned.cache_status(),
        "cachekit; fwd=miss; detail=timeout"
    );
    // With a copy to fall back on, the copy answers.
    let server = serve(
        layer()
            .ttl(Duration::from_millis(300))
            .fail_safe(Duration::from_secs(60)),
    )
    .await;
    let good = server.get("/slower").await;
    assert_eq!(good.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let server_slow = serve_origin(
        layer()
            .ttl(Duration::from_millis(300))
            .fail_safe(Duration::from_secs(60))
            .hard_timeout(Duration::from_millis(100)),
        server.origin.clone(),
    )
    .await;
    let started = Instant::now();
    let copy = server_slow.get("/slower").await;
    assert!(
        started.elapsed() < Duration::from_millis(290),
        "not waited for"
    );
    assert_eq!(copy.status, StatusCode::OK);
    assert_eq!(copy.body, good.body);
    assert!(
        copy.cache_status().contains("fwd=stale") && copy.cache_status().contains("fail-safe"),
        "{}",
        copy.cache_status()
    );
}

/// Two processes (two runtimes, each with its own cache on the same Redis
/// prefix, as two replicas of a service would have): with `lock(true)`
/// their concurrent cold GETs call the service once in all; without, once
/// per process.
async fn lock_makes_one_call_across_processes(ctx: Ctx) {
    if ctx.backend != Backend::Redis {
        return;
    }
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for (lock, path, calls) in [(true, "/slow?locked", 1), (false, "/slow?unlocked", 2)] {
        let origin = Arc::new(Origin::default());
        let layer = layer().lock(lock);
        let here = Arc::new(serve_origin(layer.clone(), origin.clone()).await);
        let config = cachekit::Config::redis(&shared_server().url()).key_prefix(ctx.prefix.clone());
        let (cache, there) = other
            .spawn(async move {
                let cache = RuntimeCache::with_config(config);
                (cache, serve_origin(layer, origin).await)
            })
            .await
            .unwrap();
        let there = Arc::new(there);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let server = if i % 2 == 0 {
                here.clone()
            } else {
                there.clone()
            };
            tasks.push(tokio::spawn(async move { server.get(path).await }));
        }
        let mut bodies = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap();
            assert_eq!(reply.status, StatusCode::OK);
            bodies.push(reply.body);
        }
        assert_eq!(here.origin.calls("/slow"), calls, "lock({lock})");
        if lock {
            assert!(bodies.iter().all(|b| *b == bodies[0]));
        }
        drop(cache);
    }
    other.shutdown_background();
}
