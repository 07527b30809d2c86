//! Onboarding sessions on the cache.
//!
//! A session is three kinds of keys (see `keys`): its metadata, its
//! progress, and one record per saved step. All of them expire at the
//! moment recorded in the metadata, seven days after creation: a write sets
//! the TTL that is left, never a fresh seven days, so a session never
//! outlives part of itself.
//!
//! Saving a step merges `{"<step>": saved_at_ms}` into the progress object
//! with `Cache::update`, atomically: steps saved concurrently (two tabs,
//! retried requests) are all counted. Reads of several keys (progress,
//! summary) are one `get_many` round trip.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::ApiError;
use super::keys::{ONBOARDING, SESSION_TTL, SessionKeys, TOTAL_STEPS};
use super::retry;

/// Whether a session can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Steps are being saved.
    InProgress,
    /// Finalized: read-only until it expires or is deleted.
    Finalized,
}

/// `onboarding:{id}:metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The session.
    pub session_id: Uuid,
    /// Whether it can still change.
    pub status: Status,
    /// Unix time in milliseconds.
    pub created_at_ms: u64,
    /// When every key of the session expires, Unix time in milliseconds.
    pub expires_at_ms: u64,
    /// When it was finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_at_ms: Option<u64>,
}

impl Metadata {
    /// The time the session has left; `None` once it is over (the store may
    /// not have dropped it yet).
    fn remaining(&self) -> Option<Duration> {
        let left = self.expires_at_ms.checked_sub(now_ms())?;
        (left > 0).then(|| Duration::from_millis(left))
    }
}

/// `onboarding:{id}:step:{n}`: what the client posted, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's data, a JSON object.
    pub data: Map<String, Value>,
    /// Unix time in milliseconds.
    pub saved_at_ms: u64,
}

/// `onboarding:{id}:progress`: each saved step and when it was last saved.
pub type Progress = BTreeMap<u8, u64>;

/// A session as the progress endpoints show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    /// The session.
    pub session_id: Uuid,
    /// Whether it can still change.
    pub status: Status,
    /// The steps saved so far, in order.
    pub completed_steps: Vec<u8>,
    /// The steps not saved yet, in order.
    pub remaining_steps: Vec<u8>,
    /// `completed_steps.len()`.
    pub completed: usize,
    /// 23.
    pub total_steps: u8,
    /// Percent complete, 0 to 100.
    pub percent_complete: f64,
    /// The first step not saved yet.
    pub next_step: Option<u8>,
    /// Unix time in milliseconds.
    pub created_at_ms: u64,
    /// Unix time in milliseconds.
    pub expires_at_ms: u64,
    /// Unix time in milliseconds, once finalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalized_at_ms: Option<u64>,
}

impl ProgressView {
    fn new(meta: &Metadata, progress: &Progress) -> Self {
        let completed_steps: Vec<u8> = progress
            .keys()
            .copied()
            .filter(|s| (1..=TOTAL_STEPS).contains(s))
            .collect();
        let remaining_steps: Vec<u8> = (1..=TOTAL_STEPS)
            .filter(|s| !progress.contains_key(s))
            .collect();
        ProgressView {
            session_id: meta.session_id,
            status: meta.status,
            completed: completed_steps.len(),
            percent_complete: (completed_steps.len() as f64 * 1000.0 / f64::from(TOTAL_STEPS))
                .round()
                / 10.0,
            next_step: remaining_steps.first().copied(),
            completed_steps,
            remaining_steps,
            total_steps: TOTAL_STEPS,
            created_at_ms: meta.created_at_ms,
            expires_at_ms: meta.expires_at_ms,
            finalized_at_ms: meta.finalized_at_ms,
        }
    }
}

/// One saved step in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// The step.
    pub step_id: u8,
    /// What was posted.
    pub data: Map<String, Value>,
    /// Unix time in milliseconds.
    pub saved_at_ms: u64,
}

/// A step just saved, and where the session is now.
#[derive(Debug, Clone, Serialize)]
pub struct SavedStep {
    /// The step.
    pub step_id: u8,
    /// Unix time in milliseconds.
    pub saved_at_ms: u64,
    /// Progress and status after the save.
    #[serde(flatten)]
    pub progress: ProgressView,
}

/// Everything about a session.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Progress and status.
    #[serde(flatten)]
    pub progress: ProgressView,
    /// Each saved step with its data, in order.
    pub steps: Vec<StepView>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Decodes an entry read as JSON. A shape we did not write is a bug (or
/// someone else's data under our keys): an internal error, not a 4xx.
fn decode<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::Internal(format!("the stored {what} is not what we wrote: {e}")))
}

/// Reads the metadata and progress of a session in one round trip.
async fn load(id: Uuid) -> Result<(Metadata, Progress), ApiError> {
    let keys = SessionKeys::new(id);
    let mut found = ONBOARDING
        .get_many::<Value>(&[keys.metadata(), keys.progress()])
        .await?
        .into_iter();
    let (Some(Some(meta)), Some(progress)) = (found.next(), found.next()) else {
        return Err(ApiError::SessionNotFound(id));
    };
    let meta: Metadata = decode(meta, "metadata")?;
    if meta.remaining().is_none() {
        return Err(ApiError::SessionNotFound(id));
    }
    // Progress written before its metadata expired may be gone a moment
    // before it: an empty progress is the honest reading.
    let progress = progress.map(|p| decode(p, "progress")).transpose()?;
    Ok((meta, progress.unwrap_or_default()))
}

/// Starts a session.
pub async fn create() -> Result<ProgressView, ApiError> {
    let now = now_ms();
    let meta = Metadata {
        session_id: Uuid::new_v4(),
        status: Status::InProgress,
        created_at_ms: now,
        expires_at_ms: now + SESSION_TTL.as_millis() as u64,
        finalized_at_ms: None,
    };
    let keys = SessionKeys::new(meta.session_id);
    let meta_value = serde_json::to_value(&meta).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Both keys in one round trip, for the namespace's TTL: seven days.
    ONBOARDING
        .set_many(&[(keys.metadata(), meta_value), (keys.progress(), json!({}))])
        .await?;
    Ok(ProgressView::new(&meta, &Progress::new()))
}

/// Saves (or replaces) the data of a step, and counts it in the progress.
pub async fn save_step(
    id: Uuid,
    step: u8,
    data: Map<String, Value>,
) -> Result<SavedStep, ApiError> {
    let (meta, _) = load(id).await?;
    if meta.status == Status::Finalized {
        return Err(ApiError::SessionFinalized(id));
    }
    let ttl = meta.remaining().ok_or(ApiError::SessionNotFound(id))?;
    let keys = SessionKeys::new(id);
    let saved_at_ms = now_ms();
    let record = StepRecord { data, saved_at_ms };
    ONBOARDING
        .set_with_ttl(&keys.step(step), &record, ttl)
        .await?;
    let progress_key = keys.progress();
    let patch = json!({ step.to_string(): saved_at_ms });
    // The progress keeps the session's own end (not a fresh seven days).
    let counted =
        retry::transient(|| ONBOARDING.update_keeping_ttl(&progress_key, patch.clone())).await?;
    if !counted {
        // Deleted (or expired) while we wrote: leave nothing behind.
        ONBOARDING.delete(&keys.step(step)).await?;
        return Err(ApiError::SessionNotFound(id));
    }
    let (meta, progress) = load(id).await?;
    Ok(SavedStep {
        step_id: step,
        saved_at_ms,
        progress: ProgressView::new(&meta, &progress),
    })
}

/// The data saved for one step.
pub async fn step(id: Uuid, step: u8) -> Result<StepView, ApiError> {
    let keys = SessionKeys::new(id);
    let mut found = ONBOARDING
        .get_many::<Value>(&[keys.metadata(), keys.step(step)])
        .await?
        .into_iter();
    let (Some(Some(meta)), Some(record)) = (found.next(), found.next()) else {
        return Err(ApiError::SessionNotFound(id));
    };
    let meta: Metadata = decode(meta, "metadata")?;
    if meta.remaining().is_none() {
        return Err(ApiError::SessionNotFound(id));
    }
    let record: StepRecord = decode(
        record.ok_or(ApiError::StepNotFound(id, step))?,
        "step record",
    )?;
    Ok(StepView {
        step_id: step,
        data: record.data,
        saved_at_ms: record.saved_at_ms,
    })
}

/// Progress and status.
pub async fn progress(id: Uuid) -> Result<ProgressView, ApiError> {
    let (meta, progress) = load(id).await?;
    Ok(ProgressView::new(&meta, &progress))
}

/// Progress, status and every saved step: one round trip for all 25 keys.
pub async fn summary(id: Uuid) -> Result<Summary, ApiError> {
    let keys = SessionKeys::new(id);
    let mut all = vec![keys.metadata(), keys.progress()];
    all.extend(keys.steps());
    let mut found = ONBOARDING.get_many::<Value>(&all).await?.into_iter();
    let (Some(Some(meta)), Some(progress)) = (found.next(), found.next()) else {
        return Err(ApiError::SessionNotFound(id));
    };
    let meta: Metadata = decode(meta, "metadata")?;
    if meta.remaining().is_none() {
        return Err(ApiError::SessionNotFound(id));
    }
    let progress: Progress = progress
        .map(|p| decode(p, "progress"))
        .transpose()?
        .unwrap_or_default();
    let mut steps = Vec::new();
    for (step_id, record) in (1..=TOTAL_STEPS).zip(found) {
        if let Some(record) = record {
            let record: StepRecord = decode(record, "step record")?;
            steps.push(StepView {
                step_id,
                data: record.data,
                saved_at_ms: record.saved_at_ms,
            });
        }
    }
    Ok(Summary {
        progress: ProgressView::new(&meta, &progress),
        steps,
    })
}

/// Marks a session finalized once every step is saved, and returns its
/// summary.
pub async fn finalize(id: Uuid) -> Result<Summary, ApiError> {
    let (meta, progress) = load(id).await?;
    if meta.status == Status::Finalized {
        return Err(ApiError::SessionFinalized(id));
    }
    let missing: Vec<u8> = (1..=TOTAL_STEPS)
        .filter(|s| !progress.contains_key(s))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Incomplete(missing));
    }
    // An expired session cannot be finalized.
    meta.remaining().ok_or(ApiError::SessionNotFound(id))?;
    let keys = SessionKeys::new(id);
    let metadata_key = keys.metadata();
    let patch = json!({"status": Status::Finalized, "finalized_at_ms": now_ms()});
    // As in `save_step`: the session keeps its own end.
    let updated =
        retry::transient(|| ONBOARDING.update_keeping_ttl(&metadata_key, patch.clone())).await?;
    if !updated {
        return Err(ApiError::SessionNotFound(id));
    }
    summary(id).await
}

/// Deletes a session and everything in it. `SessionNotFound` if there was
/// no session.
pub async fn delete(id: Uuid) -> Result<(), ApiError> {
    let keys = SessionKeys::new(id);
    // The metadata first: from then on, the session is gone for every
    // endpoint, whatever happens to the rest.
    let existed = ONBOARDING.delete(&keys.metadata()).await?;
    let rest: Vec<String> = std::iter::once(keys.progress())
        .chain(keys.steps())
        .collect();
    let deleted_any = ONBOARDING.delete_many(&rest).await? > 0;
    if existed || deleted_any {
        Ok(())
    } else {
        Err(ApiError::SessionNotFound(id))
    }
}
