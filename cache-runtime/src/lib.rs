//! The runtime of [cachekit](https://docs.rs/cachekit): everything that runs.
//!
//! Users depend on `cachekit`, which re-exports this crate with the macros.
//! The runtime is layered:
//!
//! ```text
//! #[cached] / Cache / CacheLayer      the front doors: one engine behind them
//! engine                              get-or-compute: policy, flight, fencing, refresh, fail-safe
//! Stack = { store, tier, bus, breaker }   assembled once from a Config
//! Store trait (byte primitives)       memory, redis, cluster, and users' own
//! bus                                 Redis tracking and pub/sub
//! ```
//!
//! The modules, one per concern: `config`, `global` (the installed cache),
//! `stack`, `store` (the [`Store`] contract and the stores), `local` (decoded
//! values in process), `bus`, `resilience`, `fence`, `flight`, `engine`,
//! `cache` (the [`Cache`] handle), `invalidate`, `lock`, `key`, `codec`,
//! `stats`, [`testing`], and `http` (feature `http`: the response-caching
//! layer for tower and axum).
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod batch;
mod bus;
mod cache;
mod clock;
mod codec;
mod config;
mod duration;
mod engine;
mod error;
mod fence;
mod flight;
mod global;
#[cfg(feature = "http")]
pub mod http;
mod invalidate;
mod key;
mod local;
mod lock;
mod options;
mod per_thread;
mod resilience;
mod stack;
mod stats;
pub mod store;
pub mod testing;

pub use cache::Cache;
pub use codec::Codec;
pub use config::{
    BackendConfig, BreakerPolicy, Config, DEFAULT_LEASE_TTL, DEFAULT_TIMEOUT, DEFAULT_TTL,
    LocalTierConfig, RedisUrl, RetryPolicy, Secret, parse_duration,
};
pub use engine::{CacheValue, ProcessValue, Refresh};
pub use error::{Elapsed, Error, Result};
pub use global::{Caching, Health, current_config, health, init, shutdown};
pub use invalidate::{invalidate, invalidate_namespace, invalidate_tag};
pub use key::{CacheKey, KeyPart, KeyWriter, render as render_key};
pub use lock::{LockGuard, lock, try_lock};
pub use options::CacheOptions;
pub use resilience::CircuitState;
pub use stats::{Counts, Stats, stats};
pub use store::Store;

/// Support for the code that cachekit's macros generate, and for cachekit's
/// own tests and benches. Not a stable API: it changes without notice. Do
/// not use it directly.
#[doc(hidden)]
pub mod __private {
    pub use crate::batch::{BatchMap, BatchOutput, get_or_compute_batch};
    pub use crate::codec::{Codec, Envelope, Format, Meta, Times};
    pub use crate::duration::positive as duration;
    pub use crate::engine::{
        CacheValue, Computation, Entry, ErrOutput, Hooks, Inline, Kind, Output, Owned, PlainKind,
        PlainOutput, ProcessValue, ResultKind, ResultOutput, Scope as CacheScope, Site, Timed,
        TimedAs, cached, cached_process, cached_sync, force_refresh, get_or_compute,
        invalidate_entry,
    };
    pub use crate::error::Error;
    pub use crate::invalidate::{
        Targets, invalidate as invalidate_pattern_str, invalidate_targets,
    };
    pub use crate::key::{
        CacheKey, HASHED_KEY_HEAD, KeyPart, KeyWriter, MAX_KEY_LEN, escape, escape_glob,
        glob_match, render,
    };
    pub use crate::stats::{Counters, Scope};
    #[cfg(feature = "test")]
    pub use crate::testing::run_test;
    pub use crate::testing::{TestRuntime, is_cached};
    pub use ::std::{borrow::ToOwned, string::String, vec::Vec};

    /// The hooks of a function whose return type `R` is stored by `output`:
    /// `Hooks<O::Value>`, named before the closures are, so that a closure
    /// without type annotations gets the value's type.
    pub const fn hooks<R, O: Output<R>>(_output: &O) -> Hooks<O::Value> {
        Hooks::NONE
    }

    /// How `cache_err` stores a return type: the whole `Result`.
    #[diagnostic::on_unimplemented(
        message = "`cache_err` caches an `Err` for a while, and `{Self}` is not a `Result`",
        label = "not a `Result`",
        note = "remove `cache_err`, or return `Result<T, E>`; the whole result is stored, so `E` needs what `T` needs"
    )]
    pub trait CacheErr {
        /// [`ErrOutput`].
        type Output;
        /// The output.
        const OUTPUT: Self::Output;
    }

    impl<T, E> CacheErr for Result<T, E> {
        type Output = ErrOutput;
        const OUTPUT: ErrOutput = ErrOutput;
    }

    /// How `hard_timeout` wraps a return type's output: an abandoned
    /// computation answers `Err(E::from(Elapsed))`.
    #[diagnostic::on_unimplemented(
        message = "`hard_timeout` abandons the computation and returns an error, and `{Self}` is not a `Result`",
        label = "not a `Result`",
        note = "return `Result<T, E>` with `impl From<cachekit::Elapsed> for E`"
    )]
    pub trait HardTimeout<O> {
        /// [`Timed`] of the output.
        type Output;
        /// Wraps `output`.
        fn timed(output: O) -> Self::Output;
    }

    impl<T, E: TimeoutError, O> HardTimeout<O> for Result<T, E> {
        type Output = Timed<O>;
        fn timed(output: O) -> Timed<O> {
            Timed(output)
        }
    }

    /// The output of a function with `hard_timeout`: `output`, wrapped.
    pub fn timed<R: HardTimeout<O>, O>(output: O) -> R::Output {
        R::timed(output)
    }

    /// An error type that can say a computation was abandoned at its hard
    /// timeout.
    #[diagnostic::on_unimplemented(
        message = "`hard_timeout` returns `Err(E::from(cachekit::Elapsed))` when it abandons the computation, and `{Self}` does not implement `From<cachekit::Elapsed>`",
        label = "the error type",
        note = "implement `From<cachekit::Elapsed>` for `{Self}` (a variant such as `Timeout`), or remove `hard_timeout`"
    )]
    pub trait TimeoutError: From<crate::Elapsed> {}

    impl<E: From<crate::Elapsed>> TimeoutError for E {}

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
