//! `#[cached]`, `#[invalidate]` and `#[derive(CacheKey)]`, against the
//! backend of the binary that runs them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::{Cache, CacheKey, cached, invalidate};
use serde::{Deserialize, Serialize};

use super::{Ctx, bump, count};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

#[cached(ttl = 60, key = "acc:{tag}:{id}")]
async fn user(tag: &str, id: u64) -> Result<User, String> {
    bump(tag);
    if id == 0 {
        return Err("no user 0".into());
    }
    Ok(User {
        id,
        name: format!("user {id}"),
    })
}

pub async fn second_call_is_a_hit(_: &Ctx) {
    let first = user("hit", 7).await.unwrap();
    let second = user("hit", 7).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.name, "user 7");
    assert_eq!(
        count("hit"),
        1,
        "the second call must be served from the cache"
    );
}

pub async fn err_is_not_cached(_: &Ctx) {
    assert!(user("err", 0).await.is_err());
    assert!(user("err", 0).await.is_err());
    assert_eq!(count("err"), 2, "an Err is never cached");
}

#[cached(ttl = 60, key = "opt:{tag}:{id}")]
async fn maybe(tag: &str, id: u64) -> Option<u64> {
    bump(tag);
    id.is_multiple_of(2).then_some(id)
}

#[cached(ttl = 60, key = "opt-skip:{tag}:{id}", cache_none = false)]
async fn maybe_uncached_none(tag: &str, id: u64) -> Option<u64> {
    bump(tag);
    id.is_multiple_of(2).then_some(id)
}

pub async fn none_is_cached_unless_told_not_to(_: &Ctx) {
    assert_eq!(maybe("none", 1).await, None);
    assert_eq!(maybe("none", 1).await, None);
    assert_eq!(count("none"), 1, "None is an answer and is cached");
    assert_eq!(maybe_uncached_none("none-skip", 1).await, None);
    assert_eq!(maybe_uncached_none("none-skip", 1).await, None);
    assert_eq!(count("none-skip"), 2, "cache_none = false recomputes None");
    assert_eq!(maybe_uncached_none("none-skip", 2).await, Some(2));
    assert_eq!(maybe_uncached_none("none-skip", 2).await, Some(2));
    assert_eq!(count("none-skip"), 3, "Some is still cached");
}

#[cached(ttl = 1, key = "short:{tag}")]
async fn short_lived(tag: &str) -> u32 {
    bump(tag);
    count(tag)
}

pub async fn entries_expire_after_their_ttl(_: &Ctx) {
    assert_eq!(short_lived("ttl").await, 1);
    assert_eq!(short_lived("ttl").await, 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(short_lived("ttl").await, 2, "recomputed after the TTL");
}

#[cached(ttl = 60, key = "inv:{tag}:{id}")]
async fn invalidated(tag: &str, id: u64) -> u32 {
    bump(tag);
    count(tag) * 100 + id as u32
}

pub async fn invalidate_by_pattern_recomputes(_: &Ctx) {
    let tag = crate::common::unique("pat");
    invalidated(&tag, 1).await;
    invalidated(&tag, 2).await;
    invalidated(&tag, 2).await;
    assert_eq!(count(&tag), 2);
    let deleted = cachekit::invalidate(&format!("inv:{tag}:*")).await.unwrap();
    assert_eq!(deleted, 2);
    invalidated(&tag, 1).await;
    invalidated(&tag, 2).await;
    assert_eq!(
        count(&tag),
        4,
        "both keys recomputed after the pattern invalidation"
    );
}

#[cached(ttl = 60, key = "many:{id}")]
async fn slow_square(id: u64) -> u64 {
    bump("many");
    tokio::time::sleep(Duration::from_millis(20)).await;
    id * id
}

pub async fn concurrent_calls_over_many_keys_are_correct(_: &Ctx) {
    let calls = (0..2_000u64).map(|i| {
        let id = i % 50;
        tokio::spawn(async move { (id, slow_square(id).await) })
    });
    for call in calls {
        let (id, value) = call.await.unwrap();
        assert_eq!(value, id * id);
    }
    assert!(
        count("many") <= 50,
        "at most one computation per key, got {}",
        count("many")
    );
}

static COLD: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, key = "cold:{id}")]
async fn cold(id: u64) -> u64 {
    COLD.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id + 1
}

pub async fn a_cold_key_is_computed_once_by_a_thousand_callers(_: &Ctx) {
    let calls: Vec<_> = (0..1_000).map(|_| tokio::spawn(cold(41))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 42);
    }
    assert_eq!(
        COLD.load(Ordering::SeqCst),
        1,
        "one computation for a thousand callers"
    );
}

pub struct Repo {
    pub region: String,
    pub calls: AtomicU32,
}

impl Repo {
    #[cached(ttl = 60, key = "repo:{self.region}:{id}")]
    pub async fn find(&self, id: u64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("{}-{id}", self.region)
    }

    #[cached(ttl = 60)]
    pub async fn unkeyed(&self, id: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        id
    }
}

pub async fn methods_key_on_arguments_and_named_fields(_: &Ctx) {
    let eu = Repo {
        region: "eu".into(),
        calls: AtomicU32::new(0),
    };
    let us = Repo {
        region: "us".into(),
        calls: AtomicU32::new(0),
    };
    assert_eq!(eu.find(1).await, "eu-1");
    assert_eq!(eu.find(1).await, "eu-1");
    assert_eq!(
        us.find(1).await,
        "us-1",
        "{{self.region}} is part of the key"
    );
    assert_eq!(eu.calls.load(Ordering::SeqCst), 1);
    assert_eq!(eu.find_key(1), "repo:eu:1");
    // Without a template, `self` is not part of the key: both share entries.
    let a = Repo {
        region: "a".into(),
        calls: AtomicU32::new(0),
    };
    let b = Repo {
        region: "b".into(),
        calls: AtomicU32::new(0),
    };
    assert_eq!(a.unkeyed(5).await, 5);
    assert_eq!(b.unkeyed(5).await, 5);
    assert_eq!(
        a.calls.load(Ordering::SeqCst) + b.calls.load(Ordering::SeqCst),
        1
    );
    assert!(
        a.unkeyed_key(5).ends_with("Repo::unkeyed:5"),
        "{}",
        a.unkeyed_key(5)
    );
}

#[cached(ttl = 60)]
async fn unkeyed(tag: String, id: u64, flag: bool) -> String {
    bump(&tag);
    format!("{tag}/{id}/{flag}")
}

pub async fn default_keys_cover_every_argument(_: &Ctx) {
    assert_eq!(unkeyed("dflt".into(), 1, true).await, "dflt/1/true");
    assert_eq!(unkeyed("dflt".into(), 1, false).await, "dflt/1/false");
    assert_eq!(unkeyed("dflt".into(), 2, true).await, "dflt/2/true");
    assert_eq!(unkeyed("dflt".into(), 1, true).await, "dflt/1/true");
    assert_eq!(count("dflt"), 3);
    let key = unkeyed_key("dflt".into(), 1, true);
    assert!(key.ends_with("::unkeyed:dflt:1:true"), "{key}");
}

#[cached(ttl = 60, key = "pair:{a}:{b}")]
async fn pair(a: &str, b: &str) -> String {
    format!("{a}|{b}")
}

pub async fn separators_in_values_never_collide(_: &Ctx) {
    assert_eq!(pair("x:y", "z").await, "x:y|z");
    assert_eq!(pair("x", "y:z").await, "x|y:z");
    assert_ne!(pair_key("x:y", "z"), pair_key("x", "y:z"));
    assert_eq!(pair("%3A", "z").await, "%3A|z");
    assert_eq!(pair(":", "z").await, ":|z");
}

/// Rows of optional cells: the nested shape of issue 12.
type Groups = Vec<Vec<Option<String>>>;

#[cached(ttl = 60, key = "nested:{tag}:{groups}")]
async fn nested_echo(tag: &str, groups: Groups) -> Groups {
    bump(tag);
    groups
}

#[cached(ttl = 60)]
async fn nested_echo_unkeyed(tag: String, groups: Groups) -> Groups {
    bump(&tag);
    groups
}

/// Distinct values that a naive layout renders alike: the same cells
/// grouped otherwise, empty against nested-empty, `""` against absent, and
/// cells spelling separators, escapes, markers and globs.
fn tricky_groups() -> Vec<Groups> {
    let s = |x: &str| Some(x.to_owned());
    vec![
        vec![],
        vec![vec![]],
        vec![vec![], vec![]],
        vec![vec![None]],
        vec![vec![s("")]],
        vec![vec![s(""), s("")]],
        vec![vec![s("")], vec![s("")]],
        vec![vec![None], vec![]],
        vec![vec![], vec![None]],
        vec![vec![s("1"), s("2")]],
        vec![vec![s("1")], vec![s("2")]],
        vec![vec![s("1,2")]],
        vec![vec![s("1"), None, s("2")]],
        vec![vec![s(":")]],
        vec![vec![s("a:b")], vec![s("c")]],
        vec![vec![s("a")], vec![s("b:c")]],
        vec![vec![s("%")]],
        vec![vec![s("%none")]],
        vec![vec![s("%s%none")]],
        vec![vec![s("%(%)")]],
        vec![vec![s("%(")], vec![s("%)")]],
        vec![vec![s("%_")]],
        vec![vec![s("%2C")]],
        vec![vec![s(",")]],
        vec![vec![s("*")]],
        vec![vec![s("*"), s("?")]],
        vec![vec![s("[")], vec![s("]")]],
        vec![vec![s("[ab]")]],
        vec![vec![s("%(%(1,2%)%)")]],
        vec![vec![s("{tag}"), s("#"), s(" ")]],
    ]
}

pub async fn nested_keys_never_share_an_entry(_: &Ctx) {
    let values = tricky_groups();
    let distinct: std::collections::HashSet<&Groups> = values.iter().collect();
    assert_eq!(distinct.len(), values.len(), "the values are distinct");
    let keyed = crate::common::unique("nested");
    let unkeyed = crate::common::unique("nested-unkeyed");
    for round in ["computed", "cached"] {
        for v in &values {
            assert_eq!(&nested_echo(&keyed, v.clone()).await, v, "{round}");
            assert_eq!(
                &nested_echo_unkeyed(unkeyed.clone(), v.clone()).await,
                v,
                "{round}, default key"
            );
        }
    }
    assert_eq!(
        count(&keyed) as usize,
        values.len(),
        "one computation per distinct value"
    );
    assert_eq!(
        count(&unkeyed) as usize,
        values.len(),
        "one computation per distinct value, default key"
    );
}

#[cached(ttl = 60, key = "glob:{tag}:{id}")]
async fn globbed(tag: &str, id: &str) -> String {
    bump(tag);
    format!("{id}!")
}

#[invalidate("glob:{tag}:{id}")]
async fn drop_globbed(tag: &str, id: &str) {
    let _ = (tag, id);
}

pub async fn glob_characters_are_plain_data(_: &Ctx) {
    let tag = "globs";
    for id in ["*", "a", "b", "?", "[ab]"] {
        globbed(tag, id).await;
    }
    assert_eq!(count(tag), 5);
    drop_globbed(tag, "*").await;
    for id in ["a", "b", "?", "[ab]"] {
        globbed(tag, id).await;
    }
    assert_eq!(
        count(tag),
        5,
        "invalidating id = \"*\" deleted no other key"
    );
    globbed(tag, "*").await;
    assert_eq!(
        count(tag),
        6,
        "only the key whose id is literally * was deleted"
    );
}

static DECODE: Cache = Cache::new("decode", Duration::from_secs(60));

#[cached(ttl = 60, namespace = "decode", key = "n:{id}")]
async fn decoded(id: u64) -> User {
    bump("decode");
    User {
        id,
        name: "fresh".into(),
    }
}

pub async fn undecodable_entries_are_misses_and_get_overwritten(_: &Ctx) {
    DECODE.set("n:1", &"another type altogether").await.unwrap();
    let before = cachekit::stats().decode_failures;
    assert_eq!(decoded(1).await.name, "fresh");
    assert!(
        cachekit::stats().decode_failures > before,
        "the decode failure is counted"
    );
    assert_eq!(decoded(1).await.name, "fresh");
    assert_eq!(
        count("decode"),
        1,
        "the entry was overwritten with a good value"
    );
    let stored: Option<User> = DECODE.get("n:1").await.unwrap();
    assert_eq!(stored.unwrap().name, "fresh");
}

#[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
async fn hero(id: u64) -> String {
    bump("heroes");
    format!("hero {id} v{}", count("heroes"))
}

#[invalidate(namespace = "heroes")]
async fn reset_heroes() {}

pub async fn namespaces_are_invalidated_in_one_step(_: &Ctx) {
    for id in 0..20 {
        hero(id).await;
    }
    assert_eq!(count("heroes"), 20);
    for id in 0..20 {
        hero(id).await;
    }
    assert_eq!(count("heroes"), 20);
    reset_heroes().await;
    for id in 0..20 {
        hero(id).await;
    }
    assert_eq!(
        count("heroes"),
        40,
        "every entry of the namespace was invalidated"
    );
    cachekit::invalidate_namespace("heroes").await.unwrap();
    hero(0).await;
    assert_eq!(count("heroes"), 41);
}

#[cached(ttl = 60, key = "org-user:{org_id}:{id}", tags = ["org:{org_id}", "users"])]
async fn org_user(org_id: u64, id: u64) -> String {
    bump("tags");
    format!("{org_id}/{id}")
}

#[invalidate(tags = ["org:{org_id}"])]
async fn reorganize(org_id: u64) -> Result<(), String> {
    let _ = org_id;
    Ok(())
}

pub async fn tags_invalidate_exactly_their_entries(_: &Ctx) {
    for org in [1, 2] {
        for id in 0..5 {
            org_user(org, id).await;
        }
    }
    assert_eq!(count("tags"), 10);
    reorganize(1).await.unwrap();
    for org in [1, 2] {
        for id in 0..5 {
            org_user(org, id).await;
        }
    }
    assert_eq!(count("tags"), 15, "only org 1's entries were invalidated");
    let deleted = cachekit::invalidate_tag("users").await.unwrap();
    assert_eq!(deleted, 10);
    org_user(2, 0).await;
    assert_eq!(count("tags"), 16);
    assert_eq!(
        cachekit::invalidate_tag("org:3").await.unwrap(),
        0,
        "an unknown tag deletes nothing"
    );
}

#[cached(ttl = 60, key = "profile:{id}")]
async fn profile(id: u64) -> String {
    bump("profile");
    format!("profile {id} v{}", count("profile"))
}

#[invalidate("profile:{id}")]
async fn save_profile(id: u64, fail: bool) -> Result<u64, String> {
    if fail { Err("db down".into()) } else { Ok(id) }
}

pub async fn invalidate_runs_after_success_only(_: &Ctx) {
    let v1 = profile(1).await;
    assert!(save_profile(1, true).await.is_err());
    assert_eq!(profile(1).await, v1, "a failed write invalidates nothing");
    assert_eq!(save_profile(1, false).await, Ok(1));
    assert_ne!(
        profile(1).await,
        v1,
        "a successful write invalidated the entry"
    );
}

static BEFORE_SEEN: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, key = "before:{id}")]
async fn before_value(id: u64) -> u32 {
    BEFORE_SEEN.fetch_add(1, Ordering::SeqCst) + id as u32
}

#[invalidate("before:{id}", before = true)]
async fn read_fresh(id: u64) -> u32 {
    // Runs after the entry is gone, so this recomputes.
    before_value(id).await
}

pub async fn invalidate_before_runs_first(_: &Ctx) {
    let first = before_value(1).await;
    assert_eq!(before_value(1).await, first);
    let fresh = read_fresh(1).await;
    assert_ne!(fresh, first, "the invalidation ran before the body");
}

#[cached(ttl = 60, key = "comp:{id}")]
async fn companion(id: u64) -> u32 {
    bump("companion");
    count("companion")
}

pub async fn companions_render_refresh_and_invalidate(_: &Ctx) {
    assert_eq!(companion_key(3), "comp:3");
    assert_eq!(companion(3).await, 1);
    assert_eq!(companion(3).await, 1);
    assert_eq!(companion_refresh(3).await, 2, "refresh recomputes");
    assert_eq!(companion(3).await, 2, "and stores");
    assert!(companion_invalidate(3).await.unwrap());
    assert!(
        !companion_invalidate(3).await.unwrap(),
        "nothing left to delete"
    );
    assert_eq!(companion(3).await, 3);
}

#[derive(Debug, Clone, CacheKey)]
#[cache_key("q:{lang}:{id}")]
pub struct HeroQuery {
    lang: String,
    id: u64,
    #[cache_key(skip)]
    trace: String,
}

#[derive(Debug, Clone, CacheKey)]
pub struct Plain {
    a: u32,
    b: String,
}

#[cached(ttl = 60, key = "{q}")]
async fn search(q: HeroQuery) -> String {
    bump("search");
    format!("{}#{} ({})", q.lang, q.id, q.trace)
}

pub async fn derived_keys_render_and_build_patterns(_: &Ctx) {
    let q = |lang: &str, id| HeroQuery {
        lang: lang.into(),
        id,
        trace: "t".into(),
    };
    assert_eq!(q("en", 7).cache_key(), "q:en:7");
    assert_eq!(q("e:n", 7).cache_key(), "q:e%3An:7");
    assert_eq!(
        Plain {
            a: 1,
            b: "x".into()
        }
        .cache_key(),
        "Plain:1:x"
    );
    assert_eq!(HeroQuery::pattern().lang("en").build(), "q:en:*");
    assert_eq!(HeroQuery::pattern().id(7u64).to_string(), "q:*:7");
    assert_eq!(
        HeroQuery::pattern().lang("*").build(),
        "q:%2A:*",
        "values in patterns are literal"
    );
    for (lang, id) in [("en", 1), ("en", 2), ("fr", 1)] {
        search(q(lang, id)).await;
    }
    assert_eq!(count("search"), 3);
    assert_eq!(
        HeroQuery::pattern().lang("en").invalidate().await.unwrap(),
        2
    );
    for (lang, id) in [("en", 1), ("en", 2), ("fr", 1)] {
        search(q(lang, id)).await;
    }
    assert_eq!(
        count("search"),
        5,
        "only the English heroes were invalidated"
    );
}

#[cached(ttl = 60, key = "stats:{id}")]
async fn counted(id: u64) -> u64 {
    id
}

pub async fn stats_count_hits_and_misses(_: &Ctx) {
    counted(1).await;
    counted(1).await;
    counted(1).await;
    let stats = cachekit::stats();
    let f = stats.function("counted").expect("per-function stats");
    assert_eq!((f.hits, f.misses, f.computations), (2, 1, 1));
    assert!(f.hit_rate() > 0.6);
    assert!(stats.hits >= 2 && stats.misses >= 1);
}

static STALE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 1, stale = "30s", key = "stale:{id}")]
async fn stale_value(id: u64) -> u32 {
    let run = STALE_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    run * 1000 + id as u32
}

pub async fn stale_values_are_served_while_one_caller_refreshes(_: &Ctx) {
    assert_eq!(stale_value(1).await, 1001);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Past the TTL: every caller, the one that triggers the refresh
    // included, gets the old value at once, while one refresh runs in the
    // background.
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(stale_value(1))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 1001, "the stale value, at hit latency");
    }
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "no caller waited for the 300 ms refresh: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(STALE_RUNS.load(Ordering::SeqCst), 2, "exactly one refresh");
    assert_eq!(stale_value(1).await, 2001, "the refreshed value is stored");
}

static EARLY_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 2, refresh = "early", beta = 50.0, key = "early:{id}")]
async fn early_value(id: u64) -> u32 {
    EARLY_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    id as u32
}

pub async fn early_refresh_recomputes_before_expiry(_: &Ctx) {
    early_value(1).await;
    assert_eq!(EARLY_RUNS.load(Ordering::SeqCst), 1);
    // With beta = 50 and a 30 ms computation, the gap is ~1.5 s on average:
    // calls in the second half of the TTL recompute before expiry.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..20 {
        early_value(1).await;
    }
    // The refresh runs in the background: give it its 30 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        EARLY_RUNS.load(Ordering::SeqCst) >= 2,
        "recomputed ahead of expiry"
    );
    assert!(EARLY_RUNS.load(Ordering::SeqCst) < 21, "not on every call");
}

static SLOW_STARTED: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, key = "cancel:{id}")]
async fn slow_to_compute(id: u64, delay_ms: u64) -> u64 {
    SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    id
}

pub async fn cancelled_leaders_release_their_followers(_: &Ctx) {
    let leader = tokio::spawn(slow_to_compute(9, 10_000));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = tokio::spawn(slow_to_compute(9, 20));
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(5), follower).await;
    assert_eq!(value.expect("the follower did not hang").unwrap(), 9);
    assert_eq!(SLOW_STARTED.load(Ordering::SeqCst), 2);
}

static ASKED: std::sync::Mutex<Vec<Vec<u64>>> = std::sync::Mutex::new(Vec::new());

#[cached(ttl = 60, key = "batch:{ids}", batch = ids)]
async fn users_by_id(ids: Vec<u64>) -> std::collections::HashMap<u64, String> {
    ASKED.lock().unwrap().push(ids.clone());
    // Id 999 does not exist: it is left out of the map.
    ids.into_iter()
        .filter(|id| *id != 999)
        .map(|id| (id, format!("u{id}")))
        .collect()
}

#[cached(ttl = 60, key = "batch:{id}")]
async fn user_by_id(id: u64) -> String {
    format!("single {id}")
}

#[cached(ttl = 60, key = "batch-slice:{ids}", batch = ids)]
async fn users_from_slice(ids: &[u64]) -> Result<std::collections::BTreeMap<u64, u64>, String> {
    bump("batch-slice");
    if ids.contains(&0) {
        return Err("id 0 is invalid".into());
    }
    Ok(ids.iter().map(|id| (*id, id * 10)).collect())
}

pub async fn batches_compute_only_missing_ids(_: &Ctx) {
    let first = users_by_id(vec![1, 2, 3]).await;
    assert_eq!(first.len(), 3);
    let second = users_by_id(vec![2, 3, 4, 999, 4]).await;
    assert_eq!(second.len(), 3, "{second:?}");
    assert_eq!(second[&4], "u4");
    assert_eq!(second[&2], "u2");
    let asked = ASKED.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![vec![1, 2, 3], vec![4, 999]],
        "only the missing ids were computed"
    );
    assert_eq!(users_by_id(vec![1, 2, 3, 4]).await.len(), 4);
    assert_eq!(ASKED.lock().unwrap().len(), 2, "all four were cached");
    assert_eq!(
        user_by_id(2).await,
        "u2",
        "each id has its own entry, shared with single lookups"
    );
    assert!(users_by_id(vec![]).await.is_empty());
    // Borrowed slices and fallible functions: Err is returned and not cached.
    assert_eq!(users_from_slice(&[1, 2]).await.unwrap()[&2], 20);
    assert_eq!(users_from_slice(&[1, 2]).await.unwrap().len(), 2);
    assert_eq!(count("batch-slice"), 1);
    assert!(users_from_slice(&[2, 0]).await.is_err());
    assert_eq!(users_from_slice(&[2, 5]).await.unwrap()[&5], 50);
    assert_eq!(count("batch-slice"), 3);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub id: u64,
    pub body: String,
}

fn doc(id: u64) -> Doc {
    Doc {
        id,
        body: "lorem ipsum ".repeat(200),
    }
}

#[cached(ttl = 60, key = "codec:{id}")]
async fn doc_json(id: u64) -> Doc {
    bump("codec-json");
    doc(id)
}

#[cached(ttl = 60, key = "codec:{id}", codec = "msgpack")]
async fn doc_msgpack(id: u64) -> Doc {
    bump("codec-msgpack");
    doc(id)
}

#[cached(ttl = 60, key = "codec-lz4:{id}", codec = "msgpack", compress = 256)]
async fn doc_compressed(id: u64) -> Doc {
    bump("codec-lz4");
    doc(id)
}

pub async fn codecs_round_trip_and_a_codec_change_is_a_miss(ctx: &Ctx) {
    assert_eq!(doc_compressed(1).await, doc(1));
    assert_eq!(doc_compressed(1).await, doc(1));
    assert_eq!(count("codec-lz4"), 1, "compressed MessagePack round-trips");
    assert_eq!(doc_json(2).await, doc(2));
    if !ctx.shared || ctx.name.contains("tiered") {
        // The embedded store and the tier keep decoded values: no codec is
        // involved, and the same key read by a function of the same type is
        // a hit (of the right value).
        assert_eq!(doc_msgpack(2).await, doc(2));
        assert_eq!(doc_json(2).await, doc(2));
        return;
    }
    // The same key read with another codec: a miss, recomputed, never garbage.
    let before = cachekit::stats().decode_failures;
    assert_eq!(doc_msgpack(2).await, doc(2));
    assert_eq!(count("codec-msgpack"), 1);
    assert!(cachekit::stats().decode_failures > before);
    assert_eq!(doc_msgpack(2).await, doc(2));
    assert_eq!(
        count("codec-msgpack"),
        1,
        "rewritten in MessagePack, then hit"
    );
    assert_eq!(doc_json(2).await, doc(2));
    assert_eq!(
        count("codec-json"),
        2,
        "and back: JSON reads MessagePack as a miss"
    );
}

#[cached(ttl = 60, key = "tier:{id}", local = true, tags = ["tier-tag"])]
async fn tier_value(id: u64) -> u32 {
    bump("tier");
    count("tier") * 1000 + id as u32
}

pub async fn local_entries_follow_this_process_writes(ctx: &Ctx) {
    let v1 = tier_value(1).await;
    if ctx.shared {
        // Its own write's tracking message evicts the copy the miss kept;
        // the next read keeps it again, and then it serves.
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                assert_eq!(tier_value(1).await, v1);
                let stats = cachekit::stats();
                if stats.function("tier_value").unwrap().local_hits >= 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(served.is_ok(), "never served from the in-process tier");
    }
    assert_eq!(tier_value(1).await, v1);
    // Every kind of invalidation made here reaches this process's tier.
    cachekit::invalidate_tag("tier-tag").await.unwrap();
    let v2 = tier_value(1).await;
    assert_ne!(v2, v1, "tag invalidation");
    cachekit::invalidate("tier:*").await.unwrap();
    let v3 = tier_value(1).await;
    assert_ne!(v3, v2, "pattern invalidation");
    assert!(tier_value_invalidate(1).await.unwrap());
    let v4 = tier_value(1).await;
    assert_ne!(v4, v3, "companion invalidation");
    assert_eq!(tier_value(1).await, v4);
}

#[cached(ttl = 60, namespace = "typed", key = "hero:{tag}:{id}")]
async fn typed_hero(tag: &str, id: u64) -> u32 {
    bump(tag);
    count(tag)
}

#[invalidate(typed_hero(tag, id))]
async fn save_typed_hero(tag: &str, id: u64) -> Result<(), String> {
    let _ = (tag, id);
    Ok(())
}

#[invalidate("hero:{tag}:{id}", within = "typed")]
async fn save_typed_hero_by_template(tag: &str, id: u64) {
    let _ = (tag, id);
}

#[invalidate("hero:{tag}:*", within = "typed")]
async fn drop_typed_heroes(tag: &str) {
    let _ = tag;
}

/// The template alone: outside any namespace, so it reaches nothing here.
#[invalidate("hero:{tag}:{id}")]
async fn save_typed_hero_outside(tag: &str, id: u64) {
    let _ = (tag, id);
}

pub struct HeroRepo {
    pub tag: String,
}

impl HeroRepo {
    #[cached(ttl = 60, namespace = "typed", key = "repo:{self.tag}:{id}")]
    pub async fn find(&self, id: u64) -> u32 {
        bump(&self.tag);
        count(&self.tag)
    }

    #[invalidate(Self::find(self, id))]
    pub async fn save(&self, id: u64) -> Result<(), String> {
        let _ = id;
        Ok(())
    }

    #[invalidate("repo:{self.tag}:{id}", within = "typed")]
    pub async fn save_by_template(&self, id: u64) {
        let _ = id;
    }
}

pub async fn typed_invalidation_reaches_namespaced_entries(_: &Ctx) {
    let tag = crate::common::unique("typed");
    assert_eq!(typed_hero(&tag, 1).await, 1);
    assert_eq!(typed_hero(&tag, 1).await, 1, "a hit");
    save_typed_hero_outside(&tag, 1).await;
    assert_eq!(
        typed_hero(&tag, 1).await,
        1,
        "a template without `within` stays outside the namespace"
    );
    save_typed_hero(&tag, 1).await.unwrap();
    assert_eq!(typed_hero(&tag, 1).await, 2, "the typed target reached it");
    save_typed_hero_by_template(&tag, 1).await;
    assert_eq!(typed_hero(&tag, 1).await, 3, "so did the template `within`");
    typed_hero(&tag, 2).await;
    assert_eq!(count(&tag), 4);
    drop_typed_heroes(&tag).await;
    typed_hero(&tag, 1).await;
    typed_hero(&tag, 2).await;
    assert_eq!(count(&tag), 6, "and the pattern `within`");

    let repo = HeroRepo {
        tag: crate::common::unique("typed-repo"),
    };
    assert_eq!(repo.find(7).await, 1);
    assert_eq!(repo.find(7).await, 1, "a hit");
    repo.save(7).await.unwrap();
    assert_eq!(repo.find(7).await, 2, "`Self::find(self, id)` reached it");
    repo.save_by_template(7).await;
    assert_eq!(repo.find(7).await, 3, "so did the template `within`");
    let stats = cachekit::stats();
    let invalidations = stats.function("typed_hero").map(|f| f.invalidations);
    assert!(
        invalidations.is_some_and(|n| n >= 1),
        "a typed target counts on its function's counters: {invalidations:?}"
    );
}

#[cached(ttl = 60)]
async fn generic_value<T: cachekit::KeyPart + Sync>(tag: &str, value: T) -> String {
    bump(tag);
    std::any::type_name::<T>().to_owned()
}

#[cached(ttl = 60)]
async fn const_generic<const N: usize>(tag: &str) -> usize {
    bump(tag);
    N
}

#[cached(ttl = 60)]
async fn impl_trait_value(tag: &str, value: impl cachekit::KeyPart + Send) -> usize {
    bump(tag);
    let _ = value;
    count(tag) as usize
}

pub async fn generic_functions_key_on_their_type_arguments(_: &Ctx) {
    let tag = crate::common::unique("generic");
    assert_eq!(generic_value::<u32>(&tag, 5).await, "u32");
    assert_eq!(generic_value::<&str>(&tag, "5").await, "&str");
    assert_eq!(generic_value::<u32>(&tag, 5).await, "u32", "a hit");
    assert_eq!(count(&tag), 2, "`5u32` and `\"5\"` have an entry each");
    assert_ne!(
        generic_value_key::<u32>(&tag, 5),
        generic_value_key::<&str>(&tag, "5")
    );
    assert!(
        generic_value_key::<u32>(&tag, 5).contains(":u32:"),
        "{}",
        generic_value_key::<u32>(&tag, 5)
    );

    let tag = crate::common::unique("const-generic");
    assert_eq!(const_generic::<1>(&tag).await, 1);
    assert_eq!(const_generic::<2>(&tag).await, 2);
    assert_eq!(const_generic::<1>(&tag).await, 1);
    assert_eq!(count(&tag), 2, "const arguments are part of the key");

    let tag = crate::common::unique("impl-trait");
    impl_trait_value(&tag, 5u32).await;
    impl_trait_value(&tag, "5").await;
    impl_trait_value(&tag, 5u32).await;
    assert_eq!(count(&tag), 2, "so are the types behind `impl Trait`");
}
