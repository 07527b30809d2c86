//! `CACHE_MODE=layer`: the three views cached as HTTP responses by
//! `cachekit::http::CacheLayer`, in place of the per-function caching of
//! `views`.
//!
//! ```text
//! authenticate (401 here, before the cache)  ->  CacheLayer  ->  uncached handlers
//! ```
//!
//! The layer varies by `Authorization`, so each trader's token has its own
//! entries and one trader never sees another's answer; each entry is
//! tagged `trading:trader:{id}`, and recording a fill invalidates that tag
//! (every token of that trader at once). Authentication runs in front of
//! the layer: a hit never skips the token check, and the tag comes from the
//! verified trader, not from anything the client says.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachekit::http::{CACHE_STATUS, CacheLayer};

use super::Trading;
use super::db::{Db, DbError, REQUEST_QUERIES};
use super::http::{ApiError, Trader, X_CACHE, X_DB_QUERIES, cache_enabled};
use super::queries::{self, Fill, NewFill, WriteError};

/// The layer's namespace: its entries, and its counters in `stats()`.
pub const NAMESPACE: &str = "trading-http";

/// The tag of a trader's cached responses.
pub fn trader_tag(user_id: i64) -> String {
    format!("trading:trader:{user_id}")
}

/// The three views, cached by the layer, behind authentication.
pub fn routes(trading: Arc<Trading>) -> Router<Arc<Trading>> {
    let mut cache = CacheLayer::new()
        .namespace(NAMESPACE)
        .ttl(Duration::from_secs(5))
        .vary_by(AUTHORIZATION)
        .tags(|request| {
            request
                .extensions
                .get::<Trader>()
                .map(|trader| vec![trader_tag(trader.0)])
                .unwrap_or_default()
        });
    if trading.fail_safe {
        // As `views` does: a 5xx from a handler (the database failed) is
        // answered with the last good response, kept an hour past its TTL.
        cache = cache
            .fail_safe(Duration::from_secs(3600))
            .fail_safe_throttle(Duration::from_secs(5));
    }
    Router::new()
        .route("/api/v1/reconciliation/status", get(reconciliation_status))
        .route("/api/v1/positions", get(open_positions))
        .route("/api/v1/guards", get(guard_status))
        .layer(cache)
        .layer(middleware::from_fn_with_state(trading, authenticate))
}

/// Checks the token (401 otherwise) and hands the trader to the layer and
/// the handlers; then says, as the handlers of `CACHE_MODE=functions` do,
/// whether the read was a hit (`x-cache`, from the layer's `Cache-Status`)
/// and how many SQL statements it ran (`x-db-queries`).
async fn authenticate(
    State(trading): State<Arc<Trading>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let trader = match Trader::from_request_parts(&mut parts, &trading).await {
        Ok(trader) => trader,
        Err(e) => return e.into_response(),
    };
    parts.extensions.insert(trader);
    let request = Request::from_parts(parts, body);
    let (mut response, queries) = REQUEST_QUERIES
        .scope(Cell::new(0), async {
            let response = next.run(request).await;
            (response, REQUEST_QUERIES.with(Cell::get))
        })
        .await;
    if !response.status().is_success() {
        return response;
    }
    let hit = response
        .headers()
        .get(CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|status| status.contains("; hit") || status.contains("; collapsed"));
    let c = &trading.counters;
    c.reads.fetch_add(1, Ordering::Relaxed);
    let cache = if !cache_enabled() {
        "off"
    } else if hit {
        c.hits.fetch_add(1, Ordering::Relaxed);
        "hit"
    } else {
        c.misses.fetch_add(1, Ordering::Relaxed);
        "miss"
    };
    let headers = response.headers_mut();
    headers.insert(X_CACHE, HeaderValue::from_static(cache));
    headers.insert(X_DB_QUERIES, HeaderValue::from(queries));
    response
}

/// A view, uncached: the layer caches the response.
fn view<T: serde::Serialize>(result: Result<T, DbError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn reconciliation_status(
    State(trading): State<Arc<Trading>>,
    Trader(user_id): Trader,
) -> Response {
    view(
        trading
            .db
            .read(move |sql| queries::reconciliation_status(sql, user_id))
            .await,
    )
}

async fn open_positions(State(trading): State<Arc<Trading>>, Trader(user_id): Trader) -> Response {
    view(
        trading
            .db
            .read(move |sql| queries::open_positions(sql, user_id))
            .await,
    )
}

async fn guard_status(State(trading): State<Arc<Trading>>, Trader(user_id): Trader) -> Response {
    view(
        trading
            .db
            .read(move |sql| queries::guard_status(sql, user_id))
            .await,
    )
}

/// Records a fill; once it is committed, every cached response of the
/// trader (any token) is invalidated by its tag, so the next read shows
/// it.
pub async fn record_fill(
    db: &Db,
    user_id: i64,
    fill: NewFill,
    now: i64,
) -> Result<Fill, WriteError> {
    let fill = db
        .write(move |sql| queries::record_fill(sql, user_id, &fill, now))
        .await?;
    if let Err(e) = cachekit::invalidate_tag(&trader_tag(user_id)).await {
        // The write stands; the trader's cached views expire within 5 s.
        tracing::warn!(user_id, error = %e, "could not invalidate the trader's cached views");
    }
    Ok(fill)
}
