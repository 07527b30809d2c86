//! The HTTP API (axum).
//!
//! Every read answers with two headers a load generator can count:
//! `x-cache: hit | miss | off` (whether this request ran SQL, or caching is
//! disabled) and `x-db-queries: <n>` (the SQL statements it ran). `GET
//! /stats` has the totals, `GET /cache` cachekit's own stats and health.
//!
//! The reads are cached per function (`views`, `CACHE_MODE=functions`) or
//! as HTTP responses (`layer`, `CACHE_MODE=layer`), with or without
//! fail-safe (`TRADING_FAIL_SAFE`). With `TRADING_ADMIN=on`, `POST
//! /admin/outage {"duration":"10s"}` makes every query fail for that long.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::db::{DbError, REQUEST_QUERIES};
use super::queries::{NewFill, WriteError};
use super::{CacheMode, Trading, layer, views};

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_DB_QUERIES: HeaderName = HeaderName::from_static("x-db-queries");

/// The routes.
pub fn router(trading: Arc<Trading>) -> Router {
    let reads = match trading.cache_mode {
        CacheMode::Functions => Router::new()
            .route("/api/v1/reconciliation/status", get(reconciliation_status))
            .route("/api/v1/positions", get(open_positions))
            .route("/api/v1/guards", get(guard_status)),
        CacheMode::Layer => layer::routes(trading.clone()),
    };
    let admin = if trading.admin {
        Router::new().route("/admin/outage", post(outage))
    } else {
        Router::new()
    };
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route_service("/cache", cachekit::http::stats_service())
        .route("/api/v1/login", post(login))
        .merge(reads)
        .route("/api/v1/reconciliations", post(record_fill))
        .merge(admin)
        .with_state(trading)
}

/// What the service did since it started.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    writes: AtomicU64,
}

/// An error, as JSON `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(&'static str),
    Forbidden(String),
    Invalid(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Internal(m) => {
                eprintln!("internal error: {m}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::Invalid(e.body_text())
    }
}

/// The authenticated trader: `Authorization: Bearer <token>`, or the
/// trader a middleware in front already authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Trader(pub i64);

impl FromRequestParts<Arc<Trading>> for Trader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        trading: &Arc<Trading>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(trader) = parts.extensions.get::<Trader>() {
            return Ok(*trader);
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>`",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        let user_id = trading
            .auth
            .verify(token.trim())
            .map_err(|e| ApiError::Unauthorized(e.0))?;
        Ok(Trader(user_id))
    }
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Token {
    token: String,
    token_type: &'static str,
    expires_in: u64,
    user_id: i64,
}

async fn login(
    State(trading): State<Arc<Trading>>,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Json<Token>, ApiError> {
    let Json(login) = body?;
    let name = login.username.clone();
    let user_id: Option<i64> = trading
        .db
        .read(move |sql| {
            Ok(sql
                .rows("SELECT id FROM users WHERE username = ?1", [&name], |r| {
                    r.get(0)
                })?
                .pop())
        })
        .await?;
    // One answer for an unknown user and a wrong password.
    let user_id = match user_id {
        Some(id) if trading.password_matches(&login.password) => id,
        _ => return Err(ApiError::Unauthorized("unknown user or wrong password")),
    };
    Ok(Json(Token {
        token: trading.auth.issue(user_id),
        token_type: "Bearer",
        expires_in: trading.auth.lifetime().as_secs(),
        user_id,
    }))
}

async fn reconciliation_status(
    State(trading): State<Arc<Trading>>,
    Trader(user_id): Trader,
) -> Response {
    let read = views::reconciliation_status(&trading.db, user_id, trading.fail_safe);
    view(&trading, read).await
}

async fn open_positions(State(trading): State<Arc<Trading>>, Trader(user_id): Trader) -> Response {
    let read = views::open_positions(&trading.db, user_id, trading.fail_safe);
    view(&trading, read).await
}

async fn guard_status(State(trading): State<Arc<Trading>>, Trader(user_id): Trader) -> Response {
    let read = views::guard_status(&trading.db, user_id, trading.fail_safe);
    view(&trading, read).await
}

/// Serves a view, saying whether it came from the cache.
async fn view<T: Serialize>(
    trading: &Trading,
    read: impl Future<Output = Result<T, DbError>>,
) -> Response {
    let (result, queries) = REQUEST_QUERIES
        .scope(Cell::new(0), async {
            let result = read.await;
            (result, REQUEST_QUERIES.with(Cell::get))
        })
        .await;
    let value = match result {
        Ok(value) => value,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let c = &trading.counters;
    c.reads.fetch_add(1, Ordering::Relaxed);
    let cache = if !cache_enabled() {
        "off"
    } else if queries == 0 {
        c.hits.fetch_add(1, Ordering::Relaxed);
        "hit"
    } else {
        c.misses.fetch_add(1, Ordering::Relaxed);
        "miss"
    };
    let mut response = Json(value).into_response();
    let headers = response.headers_mut();
    headers.insert(X_CACHE, HeaderValue::from_static(cache));
    headers.insert(X_DB_QUERIES, HeaderValue::from(queries));
    response
}

async fn record_fill(
    State(trading): State<Arc<Trading>>,
    Trader(user_id): Trader,
    body: Result<Json<NewFill>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(fill) = body?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (result, queries) = REQUEST_QUERIES
        .scope(Cell::new(0), async {
            let result = match trading.cache_mode {
                CacheMode::Functions => views::record_fill(&trading.db, user_id, fill, now).await,
                CacheMode::Layer => layer::record_fill(&trading.db, user_id, fill, now).await,
            };
            (result, REQUEST_QUERIES.with(Cell::get))
        })
        .await;
    let fill = result.map_err(|e| match e {
        WriteError::Invalid(m) => ApiError::Invalid(m),
        WriteError::NotYourAccount(a) => ApiError::Forbidden(format!("account {a:?} is not yours")),
        WriteError::Db(e) => ApiError::from(e),
    })?;
    trading.counters.writes.fetch_add(1, Ordering::Relaxed);
    let mut response = (StatusCode::CREATED, Json(fill)).into_response();
    response
        .headers_mut()
        .insert(X_DB_QUERIES, HeaderValue::from(queries));
    Ok(response)
}

#[derive(Deserialize)]
struct Outage {
    /// `"10s"`, `"500ms"`; `"0s"` ends an outage.
    duration: String,
}

/// `POST /admin/outage {"duration":"10s"}` (with `TRADING_ADMIN=on`):
/// every query fails for that long, from now.
async fn outage(
    State(trading): State<Arc<Trading>>,
    body: Result<Json<Outage>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(outage) = body?;
    let duration = match outage.duration.trim() {
        "0" => Some(std::time::Duration::ZERO),
        d => cachekit::parse_duration(d),
    }
    .ok_or_else(|| ApiError::Invalid(format!("{:?}: say 10s or 500ms", outage.duration)))?;
    trading.fail_database_for(duration);
    eprintln!("trading: database outage for {duration:?}");
    Ok(Json(
        json!({ "outage_ms": trading.db.outage_left().as_millis() as u64 }),
    ))
}

pub fn cache_enabled() -> bool {
    cachekit::current_config().is_none_or(|c| c.is_enabled())
}

async fn health() -> Json<serde_json::Value> {
    let h = cachekit::health().await;
    Json(json!({
        "status": "ok",
        "cache": {
            "backend": h.backend,
            "reachable": h.reachable,
            "enabled": h.enabled,
            "error": h.error,
        }
    }))
}

/// The counters a load generator reads before and after a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub cache_enabled: bool,
    pub cache_backend: String,
    /// `functions` or `layer`.
    pub cache_mode: String,
    /// Whether the views serve their last good value when the database
    /// fails.
    #[serde(default)]
    pub fail_safe: bool,
    /// What is left of a simulated database outage (0: none).
    #[serde(default)]
    pub db_outage_ms: u64,
    /// SQL statements run since startup.
    pub db_queries: u64,
    /// Views served, and how: from the cache (hits) or the database (misses).
    pub reads: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Fills recorded.
    pub writes: u64,
    /// cachekit's own counters over the three views (their functions, or
    /// the layer's namespace).
    pub cachekit_hits: u64,
    pub cachekit_misses: u64,
    pub cachekit_errors: u64,
}

async fn stats(State(trading): State<Arc<Trading>>) -> Json<Stats> {
    let config = cachekit::current_config();
    let backend = match config.as_ref().map(|c| c.backend()) {
        None => "none",
        Some(cachekit::BackendConfig::Memory) => "memory",
        Some(cachekit::BackendConfig::Redis(_)) => "redis",
        Some(cachekit::BackendConfig::Cluster(_)) => "cluster",
        Some(_) => "other",
    };
    let all = cachekit::stats();
    let (mut hits, mut misses, mut errors) = (0, 0, 0);
    let views = all
        .functions
        .iter()
        .filter(|(name, _)| name.contains("::views::") && !name.ends_with("record_fill"))
        .map(|(_, counts)| counts);
    for counts in views.chain(all.namespace(layer::NAMESPACE)) {
        hits += counts.hits;
        misses += counts.misses;
        errors += counts.errors;
    }
    let c = &trading.counters;
    Json(Stats {
        cache_enabled: config.is_none_or(|c| c.is_enabled()),
        cache_backend: backend.into(),
        cache_mode: trading.cache_mode.name().into(),
        fail_safe: trading.fail_safe,
        db_outage_ms: trading.db.outage_left().as_millis() as u64,
        db_queries: trading.db.queries(),
        reads: c.reads.load(Ordering::Relaxed),
        cache_hits: c.hits.load(Ordering::Relaxed),
        cache_misses: c.misses.load(Ordering::Relaxed),
        writes: c.writes.load(Ordering::Relaxed),
        cachekit_hits: hits,
        cachekit_misses: misses,
        cachekit_errors: errors,
    })
}
