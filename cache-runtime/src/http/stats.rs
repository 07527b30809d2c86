//! [`StatsService`]: the cache's counters and health over HTTP, as JSON,
//! in the manner of Spring Boot's actuator endpoints. A plain tower
//! service, so that any server can mount it (axum:
//! `.route_service("/cache", cachekit::http::stats_service())`).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use tower::Service;

use crate::global::{Caching, Health};
use crate::resilience::CircuitState;
use crate::stats::{Counts, Stats};
use crate::store::BoxFuture;

/// Answers `GET` with the cache's [`stats()`](crate::stats) and
/// [`health()`](crate::health) as JSON:
///
/// ```text
/// {"health": {"backend": "redis", "reachable": true, "latency_ms": 0.21, "caching": "on", ...},
///  "stats": {"hits": 90, "misses": 10, "hit_rate": 0.9, ...,
///            "functions": {"app::get_user": {...}}, "namespaces": {"web": {...}}, "off": null}}
/// ```
///
/// The status is 200 whatever the cache's health: a cache that is down
/// does not take the application down (calls compute), and `caching` says
/// why it is off. Other methods get `405 Method Not Allowed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsService;

/// The stats endpoint: a [`StatsService`].
pub fn stats_service() -> StatsService {
    StatsService
}

/// The stats endpoint, to mount as a route of its own: the same
/// [`StatsService`] as [`stats_service`], which answers at whatever path
/// it is mounted on (axum: `.route_service("/cache", stats_router())` or
/// `.nest_service("/cache", stats_router())`). A tower service rather than
/// an `axum::Router`, so that the `http` feature does not depend on axum.
pub fn stats_router() -> StatsService {
    stats_service()
}

impl<B> Service<Request<B>> for StatsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method().clone();
        Box::pin(async move {
            if method != Method::GET && method != Method::HEAD {
                let mut response = Response::new(Full::default());
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return Ok(response);
            }
            let stats = crate::global::current().await.stats();
            let health = crate::global::health().await;
            let body = json!({ "health": health_json(&health), "stats": stats_json(&stats) });
            let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
            let mut response = Response::new(if method == Method::HEAD {
                Full::default()
            } else {
                Full::new(Bytes::from(bytes))
            });
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn health_json(h: &Health) -> Value {
    let (caching, reason) = match &h.caching {
        Caching::On => ("on", None),
        Caching::Disabled => ("disabled", None),
        Caching::Broken(why) => ("broken", Some(why.as_str())),
        Caching::Unreachable(why) => ("unreachable", Some(why.as_str())),
        Caching::CircuitOpen => ("circuit-open", None),
    };
    json!({
        "backend": h.backend,
        "reachable": h.reachable,
        "latency_ms": h.latency.map(ms),
        "circuit": h.circuit.map(|c| match c {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }),
        "error": h.error,
        "enabled": h.enabled,
        "caching": caching,
        "caching_reason": reason,
        "coherent": h.coherent,
    })
}

fn stats_json(s: &Stats) -> Value {
    let group = |map: &std::collections::BTreeMap<String, Counts>| {
        Value::Object(
            map.iter()
                .map(|(name, c)| (name.clone(), counts_json(c)))
                .collect::<Map<_, _>>(),
        )
    };
    let mut out = counts_json(&s.totals);
    out["functions"] = group(&s.functions);
    out["namespaces"] = group(&s.namespaces);
    out["off"] = json!(s.off);
    out
}

fn counts_json(c: &Counts) -> Value {
    // Every field named: a new counter is a compile error here until it
    // is shown.
    let Counts {
        hits,
        misses,
        stale_hits,
        local_hits,
        errors,
        decode_failures,
        computations,
        refreshes,
        invalidations,
        refresh_failures,
        fail_safe,
        soft_timeouts,
        hard_timeouts,
        unstorable,
        fenced,
        mean_hit_latency,
        max_hit_latency,
        mean_miss_latency,
        max_miss_latency,
    } = *c;
    json!({
        "hits": hits,
        "misses": misses,
        "hit_rate": c.hit_rate(),
        "stale_hits": stale_hits,
        "local_hits": local_hits,
        "errors": errors,
        "decode_failures": decode_failures,
        "computations": computations,
        "refreshes": refreshes,
        "invalidations": invalidations,
        "refresh_failures": refresh_failures,
        "fail_safe": fail_safe,
        "soft_timeouts": soft_timeouts,
        "hard_timeouts": hard_timeouts,
        "unstorable": unstorable,
        "fenced": fenced,
        "mean_hit_latency_ms": mean_hit_latency.map(ms),
        "max_hit_latency_ms": ms(max_hit_latency),
        "mean_miss_latency_ms": mean_miss_latency.map(ms),
        "max_miss_latency_ms": ms(max_miss_latency),
    })
}
