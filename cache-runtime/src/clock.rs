//! The clock that expiry follows: the system's, or tokio's (virtual time in
//! tests, where `tokio::time::pause` and `advance` move it).
//!
//! Times are milliseconds since the Unix epoch, so that they mean the same
//! in every process sharing a store (soft expiries travel inside entries).
//! The tokio clock starts at the system time when it is created and moves
//! with `tokio::time::Instant`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The system clock.
    System,
    /// Tokio's clock, anchored at the system time it was created.
    Tokio {
        base_ms: u64,
        base: tokio::time::Instant,
    },
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Clock {
    /// Tokio's clock (must be called inside a runtime when time is paused).
    pub(crate) fn tokio() -> Self {
        Clock::Tokio {
            base_ms: system_ms(),
            base: tokio::time::Instant::now(),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Clock::System => system_ms(),
            Clock::Tokio { base_ms, base } => base_ms + base.elapsed().as_millis() as u64,
        }
    }

    /// Whether this is tokio's clock (virtual time possible).
    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, Clock::Tokio { .. })
    }
}

/// Milliseconds of a duration, at least 1 (a TTL of 0 ms would mean "no TTL"
/// or "already gone", depending on the store).
pub(crate) fn millis(d: Duration) -> u64 {
    (d.as_millis().min(u128::from(u64::MAX)) as u64).max(1)
}
