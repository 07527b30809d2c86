//! The behaviour suites, written once and run against every backend:
//! `cached` (the macros) and `conformance` (the `Cache` API).
//!
//! A backend's test binary builds a [`Ctx`] and calls [`all_tests!`], which
//! generates one `#[test]` per case.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use cachekit::Config;
use tokio::sync::OnceCell;

pub mod cached;
pub mod conformance;
pub mod trust;

/// Which backend a binary tests, and how to configure it.
pub struct Ctx {
    /// A short name: `memory`, `redis`, `cluster`, `tiered`.
    pub name: &'static str,
    /// Builds the configuration (called once per binary).
    pub config: fn() -> Config,
    /// Whether other processes share the store.
    pub shared: bool,
}

static READY: OnceCell<()> = OnceCell::const_new();

impl Ctx {
    /// Installs the global cache for this binary, once.
    pub async fn ready(&self) {
        READY
            .get_or_init(|| async {
                cachekit::init((self.config)()).await.expect("init");
                if self.shared {
                    // The bus hears (tracking is on) before tests start.
                    let hearing = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                        while !cachekit::health().await.coherent {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    })
                    .await;
                    assert!(
                        hearing.is_ok(),
                        "{}: the event bus never came up",
                        self.name
                    );
                }
            })
            .await;
    }
}

/// Computation counters, per test tag.
static COUNTS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Default::default);

pub fn bump(tag: &str) {
    *COUNTS.lock().unwrap().entry(tag.to_owned()).or_default() += 1;
}

pub fn count(tag: &str) -> u32 {
    COUNTS.lock().unwrap().get(tag).copied().unwrap_or(0)
}

/// Generates a `#[test]` per suite case for the backend of `$ctx`.
#[macro_export]
macro_rules! all_tests {
    ($ctx:expr) => {
        $crate::all_tests!(@cases $ctx;
            cached::second_call_is_a_hit,
            cached::err_is_not_cached,
            cached::none_is_cached_unless_told_not_to,
            cached::entries_expire_after_their_ttl,
            cached::invalidate_by_pattern_recomputes,
            cached::concurrent_calls_over_many_keys_are_correct,
            cached::a_cold_key_is_computed_once_by_a_thousand_callers,
            cached::methods_key_on_arguments_and_named_fields,
            cached::default_keys_cover_every_argument,
            cached::separators_in_values_never_collide,
            cached::nested_keys_never_share_an_entry,
            cached::glob_characters_are_plain_data,
            cached::undecodable_entries_are_misses_and_get_overwritten,
            cached::namespaces_are_invalidated_in_one_step,
            cached::tags_invalidate_exactly_their_entries,
            cached::invalidate_runs_after_success_only,
            cached::invalidate_before_runs_first,
            cached::companions_render_refresh_and_invalidate,
            cached::derived_keys_render_and_build_patterns,
            cached::stats_count_hits_and_misses,
            cached::stale_values_are_served_while_one_caller_refreshes,
            cached::early_refresh_recomputes_before_expiry,
            cached::cancelled_leaders_release_their_followers,
            cached::batches_compute_only_missing_ids,
            cached::codecs_round_trip_and_a_codec_change_is_a_miss,
            cached::local_entries_follow_this_process_writes,
            cached::typed_invalidation_reaches_namespaced_entries,
            cached::generic_functions_key_on_their_type_arguments,
            cached::a_stale_burst_is_served_at_once_and_refreshed_once,
            cached::fail_safe_serves_the_last_good_value_and_throttles_the_source,
            cached::soft_timeouts_answer_with_the_old_value_and_store_the_slow_one,
            cached::unless_keeps_matching_values_out_of_the_cache,
            cached::ttl_from_gives_each_value_its_own_ttl,
            cached::cache_err_keeps_an_err_for_its_own_ttl,
            cached::jitter_takes_up_to_its_share_off_the_ttl,
            cached::process_scope_caches_values_without_serde,
            cached::sync_functions_are_cached_and_invalidated,
            cached::max_entries_bounds_a_process_scope_function,
            cached::methods_on_an_arc_refresh_stale_values,
            conformance::set_get_delete_exists,
            conformance::ttls_are_kept_and_changed,
            conformance::update_merges_fields,
            conformance::concurrent_updates_all_land,
            conformance::increment_counts_atomically,
            conformance::clear_touches_only_its_namespace,
            conformance::indexes_track_their_entries,
            conformance::batches_read_and_write_many,
            conformance::get_or_compute_computes_once,
            conformance::bad_input_is_a_clear_error,
            conformance::undecodable_values_read_as_absent,
            conformance::namespace_invalidation_hides_old_entries,
            conformance::locks_are_exclusive,
            trust::stale_sets_are_fenced_for_every_invalidation,
            trust::values_that_do_not_round_trip_are_returned_not_stored,
            trust::the_store_contract_holds_with_cancellation,
        );
    };
    (@cases $ctx:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                common::run(async {
                    let ctx = $ctx;
                    ctx.ready().await;
                    suite::$module::$name(&ctx).await;
                });
            }
        )*
    };
}
