//! The cache in front of the queries: each view is cached per trader for
//! five seconds, and recording a fill invalidates exactly that trader's
//! three views.
//!
//! Keys are `trading:{user_id}:<view>`: the trader's id is in every key, so
//! one trader's cached answer can never be served to another, and a write
//! deletes three known keys (one `DEL`, no pattern scan).

use cachekit::{cached, invalidate};

use super::db::{Db, DbError};
use super::queries::{
    self, Fill, GuardStatus, NewFill, OpenPositions, ReconciliationStatus, WriteError,
};

#[cached(ttl = 5, key = "trading:{user_id}:reconciliation")]
pub async fn reconciliation_status(db: &Db, user_id: i64) -> Result<ReconciliationStatus, DbError> {
    db.read(move |sql| queries::reconciliation_status(sql, user_id))
        .await
}

#[cached(ttl = 5, key = "trading:{user_id}:positions")]
pub async fn open_positions(db: &Db, user_id: i64) -> Result<OpenPositions, DbError> {
    db.read(move |sql| queries::open_positions(sql, user_id))
        .await
}

#[cached(ttl = 5, key = "trading:{user_id}:guards")]
pub async fn guard_status(db: &Db, user_id: i64) -> Result<GuardStatus, DbError> {
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
