//! Where a session lives on the store.
//!
//! Every key of a session is a `#[derive(CacheKey)]` struct whose template
//! is checked against its fields at compile time, rendered into the
//! `onboarding` namespace:
//!
//! ```text
//! onboarding:{session_id}:metadata        Metadata (JSON)
//! onboarding:{session_id}:progress        Progress: {"<step>": saved_at_ms, ...}
//! onboarding:{session_id}:step:{step_id}  StepRecord (JSON), one per step
//! ```

use std::time::Duration;

use cachekit::{Cache, CacheKey};
use uuid::Uuid;

/// How long a session lives from its creation. Every key of a session
/// expires at the same moment.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The steps of the flow are `1..=TOTAL_STEPS`.
pub const TOTAL_STEPS: u8 = 23;

/// The namespace every key of the service lives in.
pub static ONBOARDING: Cache = Cache::new("onboarding", SESSION_TTL);

/// `onboarding:{session_id}:metadata`.
#[derive(Debug, Clone, Copy, CacheKey)]
#[cache_key("{session_id}:metadata")]
pub struct MetadataKey {
    /// The session.
    pub session_id: Uuid,
}

/// `onboarding:{session_id}:progress`.
#[derive(Debug, Clone, Copy, CacheKey)]
#[cache_key("{session_id}:progress")]
pub struct ProgressKey {
    /// The session.
    pub session_id: Uuid,
}

/// `onboarding:{session_id}:step:{step_id}`.
#[derive(Debug, Clone, Copy, CacheKey)]
#[cache_key("{session_id}:step:{step_id}")]
pub struct StepKey {
    /// The session.
    pub session_id: Uuid,
    /// The step, `1..=TOTAL_STEPS`.
    pub step_id: u8,
}

/// The keys of one session, rendered.
#[derive(Debug, Clone, Copy)]
pub struct SessionKeys {
    session_id: Uuid,
}

impl SessionKeys {
    /// The keys of `session_id`.
    pub fn new(session_id: Uuid) -> Self {
        SessionKeys { session_id }
    }

    /// Its metadata.
    pub fn metadata(&self) -> String {
        MetadataKey {
            session_id: self.session_id,
        }
        .cache_key()
    }

    /// Its progress.
    pub fn progress(&self) -> String {
        ProgressKey {
            session_id: self.session_id,
        }
        .cache_key()
    }

    /// The data of one step.
    pub fn step(&self, step_id: u8) -> String {
        StepKey {
            session_id: self.session_id,
            step_id,
        }
        .cache_key()
    }

    /// Every step's key, in order.
    pub fn steps(&self) -> impl Iterator<Item = String> + '_ {
        (1..=TOTAL_STEPS).map(|step| self.step(step))
    }
}
