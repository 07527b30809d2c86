//! The onboarding API: a router over the session store.
//!
//! * `keys`: the `Cache` handle and the key structs (templates checked at
//!   compile time);
//! * `store`: sessions, steps, progress, finalization, on the cache;
//! * `routes`: the HTTP handlers and input validation;
//! * `error`: every error as a JSON body with a status and a stable code;
//! * `retry`: retries of transient cache errors, for the one operation the
//!   resilience layer does not retry.
//!
//! Used by `main.rs` and by `tests/onboarding.rs` (through
//! `#[path = "../examples/onboarding/app/mod.rs"] mod app;`).

pub mod error;
pub mod keys;
pub mod retry;
pub mod routes;
pub mod store;

use axum::Router;
use axum::routing::{delete, get, post};

/// Where the API is mounted.
pub const PREFIX: &str = "/api/v1/onboarding";

/// The service's router, ready to serve.
pub fn app() -> Router {
    let api = Router::new()
        .route("/health", get(routes::health))
        .route("/session", post(routes::create_session))
        .route(
            "/{session_id}/steps/{step_id}",
            post(routes::save_step).get(routes::get_step),
        )
        .route("/{session_id}/progress", get(routes::progress))
        .route("/{session_id}/summary", get(routes::summary))
        .route("/{session_id}/finalize", post(routes::finalize))
        .route("/{session_id}", delete(routes::delete_session))
        .method_not_allowed_fallback(routes::method_not_allowed);
    Router::new().nest(PREFIX, api).fallback(routes::not_found)
}
