//! The latency options: a computation that may run on its own task owns
//! copies of its arguments (`&str`, `&[T]`, `&T` are copied only when it
//! runs, and the body sees them unchanged), methods take `self: Arc<Self>`
//! or a `Clone` handle, and hooks are closures, with or without types.
#![deny(warnings)]

use std::sync::Arc;
use std::time::Duration;

use cachekit::{CacheKey, cached};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Report {
    partial: bool,
    rows: Vec<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum FetchError {
    Timeout,
    Upstream(String),
}

impl From<cachekit::Elapsed> for FetchError {
    fn from(_: cachekit::Elapsed) -> Self {
        FetchError::Timeout
    }
}

#[derive(Clone, CacheKey)]
struct Query {
    lang: String,
    page: u32,
}

fn valid_for(report: &Report) -> Duration {
    Duration::from_secs(report.rows.len() as u64 + 1)
}

#[cached(ttl = "1.5s", stale = "30s", key = "report:{name}:{q}", unless = |r: &Report| r.partial)]
async fn report(name: &str, rows: &[u64], q: &Query, mut limit: u32, label: &'static str) -> Report {
    limit += q.page;
    let _ = (name.len(), label);
    Report {
        partial: false,
        rows: rows.iter().copied().take(limit as usize).collect(),
    }
}

#[cached(ttl = 5, refresh = "early", beta = 2.0, fail_safe = "1h", fail_safe_throttle = "30s", soft_timeout = "100ms", hard_timeout = "2s", jitter = "10%", ttl_from = valid_for)]
async fn fetch(symbol: &str) -> Result<Report, FetchError> {
    if symbol.is_empty() {
        return Err(FetchError::Upstream("no symbol".into()));
    }
    Ok(Report {
        partial: false,
        rows: vec![symbol.len() as u64],
    })
}

// Fail-safe and a hard timeout alone keep the computation in the caller's
// future: `&mut` is fine there.
#[cached(ttl = 5, fail_safe = "1h", hard_timeout = "2s", jitter = 10, key = "sum:{id}")]
async fn sum(id: u64, scratch: &mut Vec<u64>) -> Result<u64, FetchError> {
    scratch.push(id);
    Ok(scratch.iter().sum())
}

#[cached(ttl = 60, cache_err = "5s", ttl_from = |r| match r { Ok(_) => Duration::from_secs(60), Err(_) => Duration::ZERO })]
async fn lookup(id: u64) -> Result<u64, FetchError> {
    Ok(id)
}

struct Service {
    name: String,
}

impl Service {
    #[cached(ttl = 5, stale = "10s", key = "svc:{self.name}:{id}")]
    async fn find(self: Arc<Self>, id: u64, tag: &str) -> String {
        format!("{}:{id}:{tag}", self.name)
    }
}

#[derive(Clone)]
struct Handle {
    inner: Arc<Service>,
}

impl Handle {
    #[cached(ttl = 5, refresh = "early", key = "handle:{id}")]
    async fn find(self, id: u64) -> String {
        format!("{}:{id}", self.inner.name)
    }
}

fn main() {
    let q = Query {
        lang: "en".into(),
        page: 1,
    };
    let _ = report("a", &[1, 2], &q, 3, "x");
    let _ = (fetch("ACME"), fetch_key("ACME"), fetch_refresh("ACME"));
    let mut scratch = Vec::new();
    let _ = sum(1, &mut scratch);
    let _ = lookup(1);
    let service = Arc::new(Service { name: "s".into() });
    let _ = service.clone().find(1, "t");
    let _ = service.clone().find_key(1, "t");
    let handle = Handle { inner: service };
    let _ = handle.find(1);
}
