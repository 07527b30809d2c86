//! [`CacheService`]: one request through the layer.
//!
//! A `GET` or `HEAD` becomes one call of the engine (`engine::run`), the
//! engine of `#[cached]`: the key is the request's (see `rules::key`), the
//! value a [`Stored`] response, and the computation an owned call of a
//! clone of the inner service, so that the engine can run it in the
//! caller's future (a miss), share it with concurrent requests
//! (single-flight), or run it on its own task (a stale refresh, the rest of
//! a call past its soft timeout). Whatever the engine returns is then
//! turned into the client's response: the stored one (with `Age`, its
//! `ETag`, or a `304`), or the service's own, and a `Cache-Status` that
//! says which.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::body::{CachedBody, Collected, collect};
use super::layer::Settings;
use super::rules::{self, Asks, CacheStatus, Credentials};
use super::stored::{Stored, Value, Wire};
use crate::engine::{self, Output, Owned};
use crate::stack::Stack;
use crate::stats::Count;
use crate::store::BoxFuture;

/// The service [`CacheLayer`](super::CacheLayer) wraps around another:
/// answers `GET` and `HEAD` from the cache, and passes everything else
/// through.
///
/// It is always ready: a hit needs nothing of the inner service, and a
/// call of the inner service waits for its readiness on a clone.
pub struct CacheService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        CacheService { inner, settings }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.inner)
            .field("namespace", &self.settings.namespace)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CacheService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    type Response = Response<CachedBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        Box::pin(handle(self.inner.clone(), self.settings.clone(), request))
    }
}

/// Calls a service once it is ready.
async fn call<S, Q>(mut service: S, request: Q) -> Result<S::Response, S::Error>
where
    S: Service<Q>,
{
    poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

async fn handle<S, ReqB, ResB>(
    inner: S,
    settings: Arc<Settings>,
    request: Request<ReqB>,
) -> Result<Response<CachedBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        return pass(inner, request, CacheStatus::forward("method", None)).await;
    }
    let asks = Asks::of(request.headers());
    if asks.bypass {
        let status = CacheStatus::forward("request", None).detail("no-store");
        return pass(inner, request, status).await;
    }
    let stack = crate::global::current().await;
    if stack.off.is_some() {
        // Caching is disabled, or could not start: nothing to read or store.
        let status = CacheStatus::forward("bypass", None).detail("off");
        return pass(inner, request, status).await;
    }
    let (mut parts, body) = request.into_parts();
    let key = rules::key(&parts, &settings.vary, stack.config.integrity.as_ref());
    let counters = stack.counters(settings.counters);
    let mut policy = match settings
        .options
        .policy(counters, Some(settings.namespace), &stack, &key)
    {
        Ok(policy) => policy,
        Err(e) => {
            counters.add(Count::Error);
            tracing::warn!(namespace = settings.namespace, error = %e, "invalid cache options; calling the service uncached");
            let request = Request::from_parts(parts, body);
            return pass(inner, request, CacheStatus::forward("bypass", None)).await;
        }
    };
    if let Some(tags) = &settings.tags {
        policy.tags = tags(&parts);
    }
    // The layer answers conditions itself, from a whole stored response.
    let if_none_match = parts.headers.remove(header::IF_NONE_MATCH);
    parts.headers.remove(header::IF_MODIFIED_SINCE);
    // HEAD is answered from (and on a miss fetches) the GET response.
    parts.method = Method::GET;
    let fetch = Fetch {
        credentials: Credentials::of(&parts.headers, &settings.vary),
        settings,
        stack: stack.clone(),
    };
    let request = Request::from_parts(parts, body);
    let computation = Owned(move || fetch.run(inner, request));
    let started_ms = stack.clock.now_ms();
    let (fetched, trace) = TRACE
        .scope(Cell::new(Trace::default()), async {
            let run = engine::run(stack.clone(), policy, key, Responses, Wire, computation);
            let fetched = if asks.revalidate {
                engine::force_refresh(run).await
            } else {
                run.await
            };
            (fetched, TRACE.with(Cell::get))
        })
        .await;
    let answer = Answer {
        head,
        if_none_match,
        forward: if asks.revalidate { "request" } else { "miss" },
        started_ms,
        now_ms: stack.clock.now_ms(),
        trace,
    };
    answer.respond(fetched)
}

/// Passes a request the layer does not cache to the service.
async fn pass<S, ReqB, ResB>(
    inner: S,
    request: Request<ReqB>,
    mut status: CacheStatus,
) -> Result<Response<CachedBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
{
    let mut response = call(inner, request).await?.map(CachedBody::stream);
    if let CacheStatus::Forward { status: fwd, .. } = &mut status {
        *fwd = Some(response.status().as_u16());
    }
    rules::add_cache_status(response.headers_mut(), &status);
    Ok(response)
}

/// What a call of the service, or the cache, produced: the engine's
/// return type.
enum Fetched<B: Body, E> {
    /// A response of the service, read whole, to store.
    Fresh(Value),
    /// A stored response: a hit, another request's call (single-flight), a
    /// fail-safe copy.
    Cached(Value),
    /// A response of the service that is not stored, and why.
    Passed(Response<CachedBody<B>>, rules::Unstored),
    /// The service failed: its error, or a 5xx response.
    Failed(Result<Response<CachedBody<B>>, E>),
    /// The call was abandoned at the hard timeout, with no copy to serve.
    TimedOut,
}

/// How the engine treats [`Fetched`]: it stores fresh responses, shares
/// stored ones with the requests of a flight, and lets fail-safe replace a
/// failure.
#[derive(Debug, Clone, Copy)]
struct Responses;

impl<B: Body, E> Output<Fetched<B, E>> for Responses {
    type Value = Value;

    fn cacheable<'r>(&self, fetched: &'r Fetched<B, E>) -> Option<&'r Value> {
        match fetched {
            Fetched::Fresh(stored) | Fetched::Cached(stored) => Some(stored),
            _ => None,
        }
    }

    fn restore(&self, stored: Value) -> Fetched<B, E> {
        Fetched::Cached(stored)
    }

    fn failed(&self, fetched: &Fetched<B, E>) -> bool {
        matches!(fetched, Fetched::Failed(_) | Fetched::TimedOut)
    }

    fn elapsed(&self) -> Option<Fetched<B, E>> {
        Some(Fetched::TimedOut)
    }
}

/// What this request's own call of the service did, if it made one: the
/// engine runs the computation in the caller's task on a miss, and on
/// another task for a refresh; only the first kind is traced.
#[derive(Debug, Clone, Copy, Default)]
struct Trace {
    called: bool,
    status: Option<u16>,
}

tokio::task_local! {
    static TRACE: Cell<Trace>;
}

fn trace(f: impl FnOnce(&mut Trace)) {
    let _ = TRACE.try_with(|cell| {
        let mut trace = cell.get();
        f(&mut trace);
        cell.set(trace);
    });
}

/// A call of the service, owned: what the engine computes with.
struct Fetch {
    settings: Arc<Settings>,
    stack: Arc<Stack>,
    credentials: Credentials,
}

impl Fetch {
    async fn run<S, ReqB, ResB>(self, inner: S, request: Request<ReqB>) -> Fetched<ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        ResB: Body,
    {
        trace(|t| t.called = true);
        let response = match call(inner, request).await {
            Ok(response) => response,
            Err(e) => return Fetched::Failed(Err(e)),
        };
        let status = response.status();
        trace(|t| t.status = Some(status.as_u16()));
        if status.is_server_error() {
            return Fetched::Failed(Ok(response.map(CachedBody::stream)));
        }
        let settings = &self.settings;
        let ttl = settings.ttl.unwrap_or(self.stack.config.default_ttl);
        let fresh = rules::freshness(
            status,
            response.headers(),
            &settings.statuses,
            &settings.vary,
            self.credentials,
            ttl,
        );
        let fresh = match fresh {
            Ok(fresh) if !is_event_stream(response.headers()) => fresh,
            Ok(_) => return Fetched::Passed(response.map(CachedBody::stream), "event-stream"),
            Err(why) => return Fetched::Passed(response.map(CachedBody::stream), why),
        };
        let (parts, body) = response.into_parts();
        match collect(body, settings.max_body).await {
            Collected::Whole(body) => {
                let now = self.stack.clock.now_ms();
                Fetched::Fresh(Arc::new(Stored::new(
                    status,
                    parts.headers,
                    body,
                    now,
                    fresh,
                )))
            }
            Collected::Passed(body, why) => Fetched::Passed(Response::from_parts(parts, body), why),
        }
    }
}

/// A stream of events never ends: it is not read to be stored.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Turns what the engine returned into the client's response.
struct Answer {
    head: bool,
    if_none_match: Option<HeaderValue>,
    /// `miss`, or `request` when the request asked to revalidate.
    forward: &'static str,
    started_ms: u64,
    now_ms: u64,
    trace: Trace,
}

impl Answer {
    fn respond<B: Body, E>(&self, fetched: Fetched<B, E>) -> Result<Response<CachedBody<B>>, E> {
        Ok(match fetched {
            Fetched::Fresh(stored) => {
                let status = CacheStatus::Forward {
                    fwd: self.forward,
                    status: Some(stored.status.as_u16()),
                    stored: true,
                    collapsed: false,
                    ttl: None,
                    detail: None,
                };
                self.stored(&stored, &status, false)
            }
            Fetched::Cached(stored) => {
                let ttl = stored.ttl_secs(self.now_ms);
                let status = if self.trace.called {
                    // This request called the service, and got the last good
                    // response in place of a failure.
                    CacheStatus::Forward {
                        fwd: "stale",
                        status: self.trace.status,
                        stored: false,
                        collapsed: false,
                        ttl: Some(ttl),
                        detail: Some("fail-safe"),
                    }
                } else if stored.stored_ms > self.started_ms && ttl >= 0 {
                    // Stored after this request came (in a later
                    // millisecond): it waited for another request's call.
                    CacheStatus::Forward {
                        fwd: self.forward,
                        status: Some(stored.status.as_u16()),
                        stored: false,
                        collapsed: true,
                        ttl: None,
                        detail: None,
                    }
                } else {
                    CacheStatus::Hit { ttl }
                };
                self.stored(&stored, &status, true)
            }
            Fetched::Passed(response, why) => {
                let status = CacheStatus::forward(self.forward, Some(response.status().as_u16()));
                self.passed(response, &status.detail(why))
            }
            Fetched::Failed(Ok(response)) => {
                let status = CacheStatus::forward(self.forward, Some(response.status().as_u16()));
                self.passed(response, &status)
            }
            Fetched::Failed(Err(e)) => return Err(e),
            Fetched::TimedOut => {
                let mut response = Response::new(CachedBody::empty());
                *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                let status = CacheStatus::forward(self.forward, None).detail("timeout");
                rules::add_cache_status(response.headers_mut(), &status);
                response
            }
        })
    }

    /// A stored response: whole, as a `304`, or its head only.
    fn stored<B: Body>(
        &self,
        stored: &Stored,
        status: &CacheStatus,
        cached: bool,
    ) -> Response<CachedBody<B>> {
        let mut headers = stored.headers.clone();
        if cached {
            headers.insert(
                header::AGE,
                HeaderValue::from(stored.age_ms(self.now_ms) / 1000),
            );
        }
        rules::add_cache_status(&mut headers, status);
        let not_modified = stored.status.is_success()
            && match (&self.if_none_match, stored.headers.get(header::ETAG)) {
                (Some(condition), Some(etag)) => rules::none_match(condition, etag),
                _ => false,
            };
        let (code, body) = if not_modified {
            let mut kept = HeaderMap::with_capacity(rules::NOT_MODIFIED_HEADERS.len() + 2);
            for name in rules::NOT_MODIFIED_HEADERS
                .iter()
                .chain([&header::AGE, &rules::CACHE_STATUS])
            {
                for value in headers.get_all(name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            headers = kept;
            (StatusCode::NOT_MODIFIED, CachedBody::empty())
        } else if self.head {
            if has_body(stored.status) {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
            }
            (stored.status, CachedBody::empty())
        } else {
            (stored.status, CachedBody::full(stored.body.clone()))
        };
        let mut response = Response::new(body);
        *response.status_mut() = code;
        *response.headers_mut() = headers;
        response
    }

    /// A response of the service, passed through (its head only for HEAD).
    fn passed<B: Body>(
        &self,
        response: Response<CachedBody<B>>,
        status: &CacheStatus,
    ) -> Response<CachedBody<B>> {
        let (mut parts, body) = response.into_parts();
        rules::add_cache_status(&mut parts.headers, status);
        if !self.head {
            return Response::from_parts(parts, body);
        }
        if let Some(len) = body.size_hint().exact()
            && has_body(parts.status)
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        Response::from_parts(parts, CachedBody::empty())
    }
}

/// Whether a response with this status has a body (and a length).
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}
