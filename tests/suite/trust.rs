//! Trust, on every backend: no stale set after an invalidation (the miss is
//! held inside its computation while the write and the invalidation
//! happen), no value stored that would not read back as itself, and the
//! store contract, cancellation included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::{Cache, CacheOptions};
use tokio::sync::oneshot;

use super::Ctx;
use crate::common::unique;

fn cache() -> Cache {
    let ns: &'static str = Box::leak(unique("trust").into_boxed_str());
    Cache::new(ns, Duration::from_secs(60))
}

/// A reader misses `key` and computes the old row (1); while it is held
/// inside its computation, the write commits (the row becomes 2) and
/// `invalidate` runs; then the reader finishes. Its result must not be
/// stored: the next reader sees 2.
async fn held_miss(
    c: &'static Cache,
    key: &str,
    options: CacheOptions<u32>,
    invalidate: impl AsyncFnOnce(),
) {
    let (entered_tx, entered) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let reader = {
        let (key, options) = (key.to_owned(), options.clone());
        tokio::spawn(async move {
            c.get_or_compute_with(&key, &options, move || async move {
                entered_tx.send(()).unwrap();
                released.await.unwrap();
                1u32
            })
            .await
        })
    };
    entered.await.expect("the reader computes");
    invalidate().await;
    release.send(()).unwrap();
    assert_eq!(
        reader.await.unwrap(),
        1,
        "the held reader gets what it computed"
    );
    let next = c
        .get_or_compute_with(key, &options, || async { 2u32 })
        .await;
    assert_eq!(
        next, 2,
        "{key}: a result computed before the invalidation was stored after it"
    );
}

pub async fn stale_sets_are_fenced_for_every_invalidation(_: &Ctx) {
    let c: &'static Cache = Box::leak(Box::new(cache()));
    let ns = c.namespace();
    let plain = CacheOptions::new(Duration::from_secs(60));
    let tag = unique("fence-tag");
    let tagged = plain.clone().tags([tag.clone()]);
    held_miss(c, "by-key", plain.clone(), async || {
        c.delete("by-key").await.unwrap();
    })
    .await;
    held_miss(c, "by-pattern:1", plain.clone(), async || {
        cachekit::invalidate(&format!("{ns}:by-pattern:*"))
            .await
            .unwrap();
    })
    .await;
    held_miss(c, "by-tag", tagged, async || {
        cachekit::invalidate_tag(&tag).await.unwrap();
    })
    .await;
    held_miss(c, "by-namespace", plain.clone(), async || {
        cachekit::invalidate_namespace(ns).await.unwrap();
    })
    .await;
    // The same through the in-process tier and across-process locks.
    let local = plain.clone().local(true);
    held_miss(c, "tier", local, async || {
        c.delete("tier").await.unwrap();
    })
    .await;
    let locked = plain.clone().lock(None);
    held_miss(c, "locked", locked, async || {
        c.delete("locked").await.unwrap();
    })
    .await;
    let stats = cachekit::stats();
    assert!(
        stats.namespace(ns).unwrap().fenced >= 4,
        "key, pattern, tag and lock stores fenced: {stats:?}"
    );
}

pub async fn values_that_do_not_round_trip_are_returned_not_stored(ctx: &Ctx) {
    let c: &'static Cache = Box::leak(Box::new(cache()));
    let calls = Arc::new(AtomicU32::new(0));
    let options = CacheOptions::<Option<f64>>::new(Duration::from_secs(60));
    for _ in 0..3 {
        let calls = calls.clone();
        let v = c
            .get_or_compute_with("nan", &options, move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Some(f64::NAN)
            })
            .await;
        assert!(
            v.is_some_and(f64::is_nan),
            "the caller gets its NaN, never None"
        );
    }
    let counts = *cachekit::stats().namespace(c.namespace()).unwrap();
    if ctx.shared {
        // JSON would store NaN as null: not stored, computed each time,
        // counted, and never a decode-fail-rewrite loop.
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(counts.unstorable, 3, "{counts:?}");
        assert_eq!(counts.decode_failures, 0, "{counts:?}");
    } else {
        // The embedded store keeps the value itself: it round-trips.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

pub async fn the_store_contract_holds_with_cancellation(_: &Ctx) {
    let store = cachekit::testing::store().await;
    cachekit::store::conformance::check(&*store).await;
    cachekit::store::conformance::check_cancellation(&*store, 200).await;
}
