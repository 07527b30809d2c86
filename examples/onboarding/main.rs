//! An onboarding service: 23 steps, each saved as the user goes, kept seven
//! days, on cachekit's [`Cache`](cachekit::Cache).
//!
//! ```text
//! cargo run --example onboarding                                            # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 PORT=3000 cargo run --example onboarding # on Redis
//! ```
//!
//! Then, for example:
//!
//! ```text
//! curl -s -X POST localhost:3000/api/v1/onboarding/session
//! curl -s -X POST localhost:3000/api/v1/onboarding/$ID/steps/1 -d '{"name": "Ada"}'
//! curl -s localhost:3000/api/v1/onboarding/$ID/progress
//! ```
//!
//! The router is built by `app::app()`, which the integration tests
//! (`tests/onboarding.rs`) include and serve on a free port.

mod app;

use std::error::Error;

use cachekit::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The embedded store unless REDIS_URL is set.
    cachekit::init(Config::from_env()?).await?;
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {p:?}"))?,
        Err(_) => 3000,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let health = cachekit::health().await;
    println!(
        "onboarding service on http://{}{} (cache: {}, reachable: {})",
        listener.local_addr()?,
        app::PREFIX,
        health.backend,
        health.reachable
    );
    println!(
        "try: curl -s -X POST http://{}{}/session",
        listener.local_addr()?,
        app::PREFIX
    );
    axum::serve(listener, app::app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
