//! Invalidation: by key pattern, by tag, and of a whole namespace.
//!
//! * [`invalidate`] deletes the keys matching a glob pattern (`SCAN` and
//!   `UNLINK` in batches on every primary, never `KEYS`). Its cost grows with
//!   the keyspace.
//! * [`invalidate_tag`] deletes the entries recorded under a tag (a sorted
//!   set written with each entry): its cost grows with the tag only.
//! * [`invalidate_namespace`] moves a namespace to its next generation: one
//!   increment, whatever the namespace holds. Old entries are out of reach at
//!   once and age out by their TTL.
//!
//! Other processes learn of each invalidation by message, so their in-process
//! copies follow.

use std::sync::Arc;

use crate::backend::Event;
use crate::cached::{Site, invalidate_entry};
use crate::error::{Error, Result};
use crate::global::{Runtime, runtime};
use crate::key;
use crate::stats::{Count, Counters, OTHER};

/// Keys deleted per `UNLINK` when a tag is invalidated.
const TAG_BATCH: usize = 1_000;

/// Deletes every key matching the glob `pattern` (`*`, `?`, `[...]`, `\`
/// escapes), under the configured key prefix, and returns how many.
///
/// ```no_run
/// # async fn f() -> Result<(), cachekit_runtime::Error> {
/// cachekit_runtime::invalidate("users:page:*").await?;
/// # Ok(()) }
/// ```
///
/// Keys rendered from placeholders never contain glob characters, so a value
/// such as `*` can only be matched literally.
pub async fn invalidate(pattern: &str) -> Result<u64> {
    let rt = runtime().await;
    invalidate_pattern(&rt, pattern, &OTHER).await
}

#[tracing::instrument(name = "cachekit.invalidate", level = "debug", skip_all, fields(pattern = %pattern))]
pub(crate) async fn invalidate_pattern(
    rt: &Arc<Runtime>,
    pattern: &str,
    counters: &'static Counters,
) -> Result<u64> {
    invalidate_pattern_in(rt, None, pattern, counters).await
}

/// [`invalidate_pattern`] inside namespace `ns` (at its current
/// generation), or outside any namespace.
async fn invalidate_pattern_in(
    rt: &Arc<Runtime>,
    ns: Option<&str>,
    pattern: &str,
    counters: &'static Counters,
) -> Result<u64> {
    key::validate_key("pattern", pattern)?;
    let full = match ns {
        None => rt.layout.pattern(None, pattern),
        Some(ns) => {
            let segment = rt.namespace_segment(ns).await?;
            rt.layout.pattern(Some(&segment), pattern)
        }
    };
    let deleted = rt.backend.delete_matching(&full).await?;
    counters.add(Count::Invalidation);
    tracing::debug!(pattern = %full, deleted, "pattern invalidated");
    rt.publish(Event::Pattern(full)).await;
    Ok(deleted)
}

/// Deletes every entry recorded under `tag` (by `#[cached(tags = [...])]`),
/// without scanning the keyspace. Returns how many entries were deleted.
pub async fn invalidate_tag(tag: &str) -> Result<u64> {
    let rt = runtime().await;
    invalidate_tag_in(&rt, tag, &OTHER).await
}

#[tracing::instrument(name = "cachekit.invalidate_tag", level = "debug", skip_all, fields(tag = %tag))]
pub(crate) async fn invalidate_tag_in(
    rt: &Arc<Runtime>,
    tag: &str,
    counters: &'static Counters,
) -> Result<u64> {
    key::validate_key("tag", tag)?;
    let tag_key = rt.layout.tag_key(tag);
    let members = rt.backend.members(&tag_key).await?;
    let mut deleted = 0;
    // The members read leave the set before their entries go, and only
    // they: an entry written meanwhile (re)lists itself after its value, so
    // it is either among them and deleted, or stays listed for the next
    // invalidation. Deleting the whole set instead could drop the listing
    // of an entry written between the read and the delete, which no later
    // invalidation of the tag would then find.
    for batch in members.chunks(TAG_BATCH) {
        rt.backend.remove_members(&tag_key, batch).await?;
        deleted += rt.backend.delete(batch).await?;
    }
    counters.add(Count::Invalidation);
    tracing::debug!(tag, deleted, "tag invalidated");
    if !members.is_empty() {
        rt.publish(Event::Keys(members)).await;
    }
    Ok(deleted)
}

/// Invalidates every entry of a namespace in one round trip, by moving it to
/// its next generation; returns the new generation. Entries written before
/// are never read again and expire by their TTL.
#[tracing::instrument(name = "cachekit.invalidate_namespace", level = "debug")]
pub async fn invalidate_namespace(namespace: &str) -> Result<u64> {
    let rt = runtime().await;
    let generation = rt.bump_namespace(namespace).await?;
    OTHER.add(Count::Invalidation);
    tracing::debug!(namespace, generation, "namespace invalidated");
    Ok(generation)
}

/// Whether a rendered template is a pattern (holds an unescaped glob
/// character); otherwise it is one exact key.
pub(crate) fn is_pattern(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// What a `#[invalidate]` function invalidates, rendered from its arguments.
#[derive(Debug, Default)]
pub struct Targets {
    /// Rendered key templates (exact keys, or patterns with `*`).
    pub keys: Vec<String>,
    /// Rendered tags.
    pub tags: Vec<String>,
    /// Namespaces to move to their next generation.
    pub namespaces: &'static [&'static str],
    /// Entries of cached functions, named by a typed target
    /// (`#[invalidate(get_hero(id))]`): each is deleted as its
    /// `*_invalidate` companion deletes it, in its function's namespace.
    pub entries: Vec<Entry>,
    /// The namespace the `keys` are resolved in (`within = "heroes"`), at
    /// its current generation; outside any namespace if `None`.
    pub within: Option<&'static str>,
}

/// One cached function's entry for given arguments: its call site (policy,
/// namespace, counters) and its rendered key. `#[cached]` generates a hidden
/// function returning it, which typed `#[invalidate]` targets call.
#[derive(Debug)]
pub struct Entry {
    /// The cached function's call site.
    pub site: &'static Site,
    /// The key its template renders for these arguments (without prefix or
    /// namespace).
    pub key: String,
}

/// Runs a `#[invalidate]`. Never fails: errors are logged and counted, so an
/// invalidation problem cannot turn a successful write into a failure.
#[tracing::instrument(
    name = "cachekit.invalidate_targets",
    level = "debug",
    skip_all,
    fields(
        function = counters.name(),
        keys = ?targets.keys,
        tags = ?targets.tags,
        namespaces = ?targets.namespaces,
        entries = targets.entries.len(),
        within = targets.within,
    )
)]
pub async fn invalidate_targets(counters: &'static Counters, targets: Targets) {
    let rt = runtime().await;
    let mut failures: Vec<(String, Error)> = Vec::new();
    for k in &targets.keys {
        let outcome = if is_pattern(k) {
            invalidate_pattern_in(&rt, targets.within, k, counters)
                .await
                .map(drop)
        } else {
            delete_key(&rt, targets.within, k, counters).await
        };
        if let Err(e) = outcome {
            failures.push((k.clone(), e));
        }
    }
    // Counted once, on the cached function's counters (as its companion
    // counts it), so that the totals count each deletion once.
    for Entry { site, key } in targets.entries {
        let target = format!("{} {key}", site.counters.name());
        if let Err(e) = invalidate_entry(site, key).await {
            failures.push((target, e));
        }
    }
    for tag in &targets.tags {
        if let Err(e) = invalidate_tag_in(&rt, tag, counters).await {
            failures.push((format!("tag {tag}"), e));
        }
    }
    for ns in targets.namespaces {
        match rt.bump_namespace(ns).await {
            Ok(_) => counters.add(Count::Invalidation),
            Err(e) => failures.push((format!("namespace {ns}"), e)),
        }
    }
    for (target, error) in failures {
        counters.add(Count::Error);
        tracing::warn!(target, error = %error, "invalidation failed; entries expire by their TTL");
    }
}

async fn delete_key(
    rt: &Arc<Runtime>,
    ns: Option<&str>,
    k: &str,
    counters: &'static Counters,
) -> Result<()> {
    key::validate_key("key", k)?;
    let full = rt.data_key(ns, k).await?;
    rt.backend.delete(std::slice::from_ref(&full)).await?;
    counters.add(Count::Invalidation);
    rt.publish(Event::Keys(vec![full])).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_store::TestStore;
    use crate::backend::{Backend, Write};
    use bytes::Bytes;
    use std::time::Duration;

    #[tokio::test]
    async fn an_entry_written_during_a_tag_invalidation_stays_listed() {
        let tagged = |key: &str| Write {
            key: key.into(),
            value: Bytes::from_static(b"1"),
            ttl: Duration::from_secs(60),
            member_of: vec!["#tag:t".into()],
        };
        let backend = Arc::new(TestStore::new());
        backend.write_after_next_delete(tagged("new"));
        let rt = Runtime::with_backend(crate::Config::memory(), backend.clone());
        backend.write(&[tagged("old")]).await.unwrap();
        // `new` is written (and listed) right after `old` is deleted.
        assert_eq!(invalidate_tag_in(&rt, "t", &OTHER).await.unwrap(), 1);
        assert!(backend.exists("new").await.unwrap());
        assert_eq!(
            backend.members("#tag:t").await.unwrap(),
            vec!["new".to_owned()],
            "a live entry of the tag is listed, so the next invalidation finds it"
        );
        assert_eq!(invalidate_tag_in(&rt, "t", &OTHER).await.unwrap(), 1);
        assert!(!backend.exists("new").await.unwrap());
    }

    #[test]
    fn patterns_are_recognized() {
        assert!(is_pattern("users:page:*"));
        assert!(is_pattern("user:?"));
        assert!(!is_pattern("user:7"));
        assert!(!is_pattern("user:%2A"));
        assert!(!is_pattern("a\\*b"));
    }
}
