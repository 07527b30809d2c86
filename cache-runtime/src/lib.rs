//! The runtime of [cachekit](https://docs.rs/cachekit): everything that runs.
//!
//! Users depend on `cachekit`, which re-exports this crate with the macros.
//! The modules, one per concern:
//!
//! * `config`: [`Config`], from code or the environment;
//! * `global`: the process-wide cache ([`init`], [`health`]);
//! * `key`: [`KeyPart`], escaping and the key layout;
//! * `codec`: serialization and the stored-value envelope;
//! * `backend`: the [`Backend`](backend::Backend) trait and the stores;
//! * `cache`: the namespaced [`Cache`] handle;
//! * `cached`: the engine behind `#[cached]`;
//! * `invalidate`: by pattern, tag and namespace;
//! * `flight`: single-flight and leases; `lock`: distributed locks;
//! * `resilience`: timeouts, retries, circuit breaker;
//! * `stats`: counters.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub mod backend;
mod batch;
mod cache;
mod cached;
pub mod codec;
mod config;
mod error;
mod flight;
mod global;
mod invalidate;
pub mod key;
mod lock;
mod per_thread;
pub mod resilience;
mod stats;

pub use cache::Cache;
pub use cached::Refresh;
pub use codec::{Codec, Format};
pub use config::{
    BackendConfig, BreakerPolicy, Config, DEFAULT_TIMEOUT, DEFAULT_TTL, LocalTierConfig, RedisUrl,
    RetryPolicy, Secret, parse_duration,
};
pub use error::{Error, Result};
pub use global::{Health, current_config, health, init};
pub use invalidate::{invalidate, invalidate_namespace, invalidate_tag};
pub use key::{CacheKey, KeyPart, KeyWriter, escape_glob};
pub use lock::{LockGuard, lock, try_lock};
pub use resilience::CircuitState;
pub use stats::{Counts, Stats, stats};

/// Support for the code that cachekit's macros generate. Not a stable API:
/// it changes without notice. Do not use it directly.
#[doc(hidden)]
pub mod __private {
    pub use crate::batch::{BatchMap, BatchOutput, get_or_compute_batch};
    pub use crate::cached::{
        CacheValue, Kind, Output, PlainKind, PlainOutput, ResultKind, ResultOutput, Site,
        force_refresh, get_or_compute, invalidate_entry,
    };
    pub use crate::codec::{Codec, Format};
    pub use crate::error::Error;
    pub use crate::invalidate::{
        Entry, Targets, invalidate as invalidate_pattern_str, invalidate_targets,
    };
    pub use crate::key::{CacheKey, KeyPart, KeyWriter};
    pub use crate::stats::{Counters, Scope};
    pub use ::std::{string::String, vec::Vec};

    /// Whether a call's result counts as a success (`Ok`, or any value that
    /// is not a `Result`).
    pub trait Succeeded<R> {
        /// Whether `result` is a success.
        fn succeeded(&self, result: &R) -> bool;
    }

    impl<T, E> Succeeded<Result<T, E>> for ResultOutput {
        fn succeeded(&self, result: &Result<T, E>) -> bool {
            result.is_ok()
        }
    }

    impl<R> Succeeded<R> for PlainOutput {
        fn succeeded(&self, _: &R) -> bool {
            true
        }
    }

    /// Writes a key value; generated at the placeholder's span, so that a
    /// type that is not a `KeyPart` is reported there, once.
    #[inline(always)]
    pub fn key_part<T: KeyPart + ?Sized>(value: &T, out: &mut KeyWriter<'_>) {
        value.write_key(out);
    }
}
