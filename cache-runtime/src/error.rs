//! The one error type of cachekit.
//!
//! Cached functions never see it: they fail open and compute. The explicit
//! API (`Cache`, `invalidate`, `lock`, ...) returns it so that a caller who
//! asks can act on it. Each variant says what to do; none carries a secret.

use std::time::Duration;

/// What went wrong talking to the cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot be reached, or the circuit breaker is open after
    /// repeated failures. Transient: cachekit reconnects in the background.
    #[error("cache backend unavailable: {0} (cachekit reconnects in the background; retry later)")]
    Unavailable(String),

    /// The backend did not answer in time.
    #[error(
        "cache operation `{op}` timed out after {after:?} (raise the timeout with `Config::timeout` or `REDIS_SOCKET_TIMEOUT`)"
    )]
    Timeout {
        /// The operation that timed out.
        op: &'static str,
        /// How long it waited.
        after: Duration,
    },

    /// A value could not be encoded, or a stored value is not what the
    /// operation needs (for example `update` on an entry that is not a JSON
    /// object).
    #[error("cache codec error: {0}")]
    Codec(String),

    /// The configuration is invalid. The message names the setting or
    /// environment variable.
    #[error("invalid cache configuration: {0}")]
    Config(String),

    /// An argument is invalid: an empty or malformed namespace, key, tag or
    /// TTL. Nothing was read or written.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The backend refused the command (for example an ACL `NOPERM`, or a key
    /// holding another Redis type).
    #[error("cache backend error: {0}")]
    Backend(String),
}

impl Error {
    /// Whether retrying the same call later may succeed (the backend was
    /// unreachable or slow), as opposed to a problem with the call itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout { .. })
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        // `RedisError`'s Display never includes the connection password; the
        // URL is not part of the error either.
        if e.is_timeout() {
            Error::Timeout {
                op: "redis",
                after: Duration::ZERO,
            }
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
            || e.is_cluster_error()
            || matches!(
                e.kind(),
                // A failover under way: a replica without its primary, a
                // primary just demoted, a node loading its data.
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::ReadOnly
                        | redis::ServerErrorKind::BusyLoading
                )
            )
        {
            Error::Unavailable(e.to_string())
        } else {
            Error::Backend(e.to_string())
        }
    }
}

/// A computation abandoned at its hard timeout (`hard_timeout`). A cached
/// function returning `Result<T, E>` with `E: From<Elapsed>` returns
/// `Err(E::from(Elapsed))` when no last good value can serve instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the computation did not finish within its hard timeout")]
pub struct Elapsed(());

impl Elapsed {
    pub(crate) fn new() -> Self {
        Elapsed(())
    }
}

impl From<Elapsed> for Error {
    fn from(_: Elapsed) -> Self {
        Error::Timeout {
            op: "computation",
            after: Duration::ZERO,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
