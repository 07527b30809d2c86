//! The cache in front of the queries: each view is cached per trader for
//! five seconds, and recording a fill invalidates exactly that trader's
//! three views.
//!
//! Keys are `trading:{user_id}:<view>`: the trader's id is in every key, so
//! one trader's cached answer can never be served to another, and a write
//! deletes three known keys (one `DEL`, no pattern scan).
//!
//! With `TRADING_FAIL_SAFE=on` each read goes through its fail-safe twin:
//! the same key and TTL, plus `fail_safe = "1h"`. When the database fails,
//! a trader whose view has expired gets the last good answer (kept for an
//! hour past its TTL) instead of an error, and the database is asked again
//! for that view at most every `fail_safe_throttle` (5 s, the TTL: once it
//! is back, a view is at most one TTL staler than without fail-safe).
//! `#[cached]` takes its options as literals, so the switch picks between
//! two attributed functions rather than building options at run time.

use cachekit::{cached, invalidate};

use super::db::{Db, DbError};
use super::queries::{
    self, Fill, GuardStatus, NewFill, OpenPositions, ReconciliationStatus, WriteError,
};

/// The trader's reconciliation status; with `fail_safe`, the last good one
/// while the database fails.
pub async fn reconciliation_status(
    db: &Db,
    user_id: i64,
    fail_safe: bool,
) -> Result<ReconciliationStatus, DbError> {
    if fail_safe {
        reconciliation_status_or_last_good(db, user_id).await
    } else {
        reconciliation_status_fresh(db, user_id).await
    }
}

/// The trader's open positions; with `fail_safe`, the last good ones while
/// the database fails.
pub async fn open_positions(
    db: &Db,
    user_id: i64,
    fail_safe: bool,
) -> Result<OpenPositions, DbError> {
    if fail_safe {
        open_positions_or_last_good(db, user_id).await
    } else {
        open_positions_fresh(db, user_id).await
    }
}

/// The trader's risk guards; with `fail_safe`, the last good ones while
/// the database fails.
pub async fn guard_status(db: &Db, user_id: i64, fail_safe: bool) -> Result<GuardStatus, DbError> {
    if fail_safe {
        guard_status_or_last_good(db, user_id).await
    } else {
        guard_status_fresh(db, user_id).await
    }
}

#[cached(ttl = 5, key = "trading:{user_id}:reconciliation")]
async fn reconciliation_status_fresh(
    db: &Db,
    user_id: i64,
) -> Result<ReconciliationStatus, DbError> {
    db.read(move |sql| queries::reconciliation_status(sql, user_id))
        .await
}

#[cached(
    ttl = 5,
    fail_safe = "1h",
    fail_safe_throttle = "5s",
    key = "trading:{user_id}:reconciliation"
)]
async fn reconciliation_status_or_last_good(
    db: &Db,
    user_id: i64,
) -> Result<ReconciliationStatus, DbError> {
    db.read(move |sql| queries::reconciliation_status(sql, user_id))
        .await
}

#[cached(ttl = 5, key = "trading:{user_id}:positions")]
async fn open_positions_fresh(db: &Db, user_id: i64) -> Result<OpenPositions, DbError> {
    db.read(move |sql| queries::open_positions(sql, user_id))
        .await
}

#[cached(
    ttl = 5,
    fail_safe = "1h",
    fail_safe_throttle = "5s",
    key = "trading:{user_id}:positions"
)]
async fn open_positions_or_last_good(db: &Db, user_id: i64) -> Result<OpenPositions, DbError> {
    db.read(move |sql| queries::open_positions(sql, user_id))
        .await
}

#[cached(ttl = 5, key = "trading:{user_id}:guards")]
async fn guard_status_fresh(db: &Db, user_id: i64) -> Result<GuardStatus, DbError> {
    db.read(move |sql| queries::guard_status(sql, user_id))
        .await
}

#[cached(
    ttl = 5,
    fail_safe = "1h",
    fail_safe_throttle = "5s",
    key = "trading:{user_id}:guards"
)]
async fn guard_status_or_last_good(db: &Db, user_id: i64) -> Result<GuardStatus, DbError> {
    db.read(move |sql| queries::guard_status(sql, user_id))
        .await
}

/// Records a fill; once it is committed, the trader's views are deleted,
/// so the next read shows it.
#[invalidate(
    "trading:{user_id}:reconciliation",
    "trading:{user_id}:positions",
    "trading:{user_id}:guards"
)]
pub async fn record_fill(
    db: &Db,
    user_id: i64,
    fill: NewFill,
    now: i64,
) -> Result<Fill, WriteError> {
    db.write(move |sql| queries::record_fill(sql, user_id, &fill, now))
        .await
}
