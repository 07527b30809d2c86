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
//! Each reaches what it names wherever it lives: the shared store, this
//! process's tier and process-scope entries, and (by tracking and by
//! message) those of other processes. Each also fences: a computation of a
//! key it reaches, started before it, never stores its result after it.
//!
//! A string template names keys outside any namespace unless `within`
//! says which namespace; the typed form `#[invalidate(get_hero(id))]`
//! names a cached function's entry, namespace and all, and is checked by
//! the compiler.

use std::sync::Arc;

use crate::bus::Event;
use crate::engine::Entry;
use crate::error::{Error, Result};
use crate::global::current;
use crate::key;
use crate::stack::Stack;
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
    let stack = current().await;
    stack.check()?;
    let counters = stack.counters(&OTHER);
    invalidate_pattern(&stack, None, pattern, counters).await
}

/// Deletes the keys matching `pattern` (in namespace `ns`, if given).
#[tracing::instrument(name = "cachekit.invalidate", level = "debug", skip_all, fields(pattern = %pattern))]
pub(crate) async fn invalidate_pattern(
    stack: &Arc<Stack>,
    ns: Option<&str>,
    pattern: &str,
    counters: &'static Counters,
) -> Result<u64> {
    key::validate_key("pattern", pattern)?;
    let segment = match ns {
        Some(ns) => Some(stack.namespace_segment(ns).await?),
        None => None,
    };
    let full = stack.layout.pattern(segment.as_deref(), pattern);
    // Process-scope keys of a namespace carry no generation.
    let process = ns.map(|ns| stack.layout.pattern(Some(ns), pattern));
    let deleted = stack.store.delete_matching(&full).await?;
    counters.add(Count::Invalidation);
    tracing::debug!(pattern = %full, deleted, "pattern invalidated");
    stack.announce(Event::Pattern(full)).await;
    if let Some(process) = process {
        stack.announce(Event::Pattern(process)).await;
    }
    Ok(deleted)
}

/// Deletes every entry recorded under `tag` (by `#[cached(tags = [...])]`),
/// without scanning the keyspace. Returns how many entries were deleted.
pub async fn invalidate_tag(tag: &str) -> Result<u64> {
    let stack = current().await;
    stack.check()?;
    let counters = stack.counters(&OTHER);
    invalidate_tag_in(&stack, tag, counters).await
}

#[tracing::instrument(name = "cachekit.invalidate_tag", level = "debug", skip_all, fields(tag = %tag))]
pub(crate) async fn invalidate_tag_in(
    stack: &Arc<Stack>,
    tag: &str,
    counters: &'static Counters,
) -> Result<u64> {
    key::validate_key("tag", tag)?;
    let tag_key = stack.layout.tag_key(tag);
    // In process, a computation under way is listed in the tag only once it
    // stores: void the ones registered under it.
    if let Some(memory) = &stack.memory {
        memory.void_tagged(&tag_key);
    }
    let members = stack.store.members(&tag_key).await?;
    let mut deleted = 0;
    // The members read leave the set before their entries go, and only
    // they: an entry written meanwhile (re)lists itself after its value, so
    // it is either among them and deleted, or stays listed for the next
    // invalidation. Deleting the whole set instead could drop the listing
    // of an entry written between the read and the delete, which no later
    // invalidation of the tag would then find.
    for batch in members.chunks(TAG_BATCH) {
        stack.store.remove_members(&tag_key, batch).await?;
        deleted += stack.store.delete(batch).await?;
    }
    counters.add(Count::Invalidation);
    tracing::debug!(tag, deleted, "tag invalidated");
    if !members.is_empty() {
        stack.announce(Event::Keys(members)).await;
    }
    stack.announce(Event::Tag(tag.to_owned())).await;
    Ok(deleted)
}

/// Invalidates every entry of a namespace in one round trip, by moving it to
/// its next generation; returns the new generation. Entries written before
/// are never read again and expire by their TTL.
#[tracing::instrument(name = "cachekit.invalidate_namespace", level = "debug")]
pub async fn invalidate_namespace(namespace: &str) -> Result<u64> {
    let stack = current().await;
    stack.check()?;
    let generation = stack.bump_namespace(namespace).await?;
    stack.counters(&OTHER).add(Count::Invalidation);
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
    let stack = current().await;
    if stack.off.is_some() {
        return;
    }
    let counters = stack.counters(counters);
    let mut failures: Vec<(String, Error)> = Vec::new();
    for k in &targets.keys {
        let outcome = if is_pattern(k) {
            invalidate_pattern(&stack, targets.within, k, counters)
                .await
                .map(drop)
        } else {
            delete_key(&stack, targets.within, k, counters).await
        };
        if let Err(e) = outcome {
            failures.push((k.clone(), e));
        }
    }
    for entry in &targets.entries {
        match crate::engine::delete_entry(&stack, entry.site, &entry.key).await {
            // Counted on the invalidated function's counters.
            Ok(_) => stack
                .counters(&entry.site.counters)
                .add(Count::Invalidation),
            Err(e) => failures.push((format!("{} {}", entry.site.name(), entry.key), e)),
        }
    }
    for tag in &targets.tags {
        if let Err(e) = invalidate_tag_in(&stack, tag, counters).await {
            failures.push((format!("tag {tag}"), e));
        }
    }
    for ns in targets.namespaces {
        match stack.bump_namespace(ns).await {
            Ok(_) => counters.add(Count::Invalidation),
            Err(e) => failures.push((format!("namespace {ns}"), e)),
        }
    }
    for (target, error) in failures {
        counters.add(Count::Error);
        tracing::warn!(target, error = %error, "invalidation failed; entries expire by their TTL");
    }
}

/// Deletes one key (in namespace `ns`, if given), wherever it lives.
async fn delete_key(
    stack: &Arc<Stack>,
    ns: Option<&str>,
    k: &str,
    counters: &'static Counters,
) -> Result<()> {
    key::validate_key("key", k)?;
    let full = stack.data_key(ns, k).await?;
    stack.store.delete(std::slice::from_ref(&full)).await?;
    counters.add(Count::Invalidation);
    let mut keys = vec![full];
    if let Some(ns) = ns {
        // A process-scope entry of the namespace (no generation).
        keys.push(stack.layout.data_key(Some(ns), k));
    }
    stack.announce(Event::Keys(keys)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_recognized() {
        assert!(is_pattern("users:page:*"));
        assert!(is_pattern("user:?"));
        assert!(!is_pattern("user:7"));
        assert!(!is_pattern("user:%2A"));
        assert!(!is_pattern("a\\*b"));
    }
}
