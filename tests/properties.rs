//! Property tests of keys and patterns (proptest):
//!
//! * rendering is injective over arbitrary argument values: strings, pairs
//!   and triples through templates, `Option`s (nested), `Vec`s, derived
//!   key types, and mixed scalars;
//! * escaping makes a pattern match exactly the keys it should: a glob-
//!   escaped string matches only itself, a derived pattern matches exactly
//!   the keys with those field values, a prefix pattern exactly the keys
//!   under it;
//! * `key::glob_match` agrees with a real redis-server's `SCAN MATCH`, on
//!   the patterns cachekit builds and on arbitrary glob patterns.
//!
//! The template parser's properties are unit tests of `cache-macros`
//! (`template::tests::properties`), and a fuzz target (`fuzz/`).

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use cachekit::key::{escape_glob, glob_match, render};
use cachekit::{CacheKey, cached};
use common::{note, shared_server};
use proptest::prelude::*;

// Cached functions whose `*_key` companions render keys as the macro does.
#[cached(key = "one:{a}")]
async fn one(a: String) -> u8 {
    0
}

#[cached(key = "pair:{a}:{b}")]
async fn pair(a: String, b: String) -> u8 {
    0
}

#[cached(key = "triple:{a}:{b}:{c}")]
async fn triple(a: String, b: String, c: String) -> u8 {
    0
}

#[cached(key = "opt:{a}:{b}")]
async fn opt(a: Option<String>, b: Option<Option<String>>) -> u8 {
    0
}

#[cached(key = "vec:{a}:{b}")]
async fn vecs(a: Vec<String>, b: Vec<Option<String>>) -> u8 {
    0
}

#[cached(key = "mixed:{n}:{s}:{c}:{flag}:{u}")]
async fn mixed(n: i64, s: String, c: char, flag: bool, u: Option<u32>) -> u8 {
    0
}

/// No template: the key is the function's path and every argument.
#[cached]
async fn unkeyed(a: String, b: Vec<String>) -> u8 {
    0
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, CacheKey)]
#[cache_key("q:{lang}:{id}")]
struct Query {
    lang: String,
    id: String,
}

/// Text made of what breaks naive key layouts: separators, the escape
/// character and escaped forms, glob and hash-tag characters, markers,
/// whitespace, unicode, and anything else.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(":"),
        Just("%"),
        Just("3A"),
        Just("25"),
        Just(","),
        Just("2C"),
        Just("*"),
        Just("?"),
        Just("["),
        Just("]"),
        Just("^"),
        Just("-"),
        Just("\\"),
        Just("{"),
        Just("}"),
        Just("#"),
        Just("none"),
        Just("%none"),
        Just("s"),
        Just("e"),
        Just("empty"),
        Just("h"),
        Just(" "),
        Just("\n"),
        Just("é"),
        Just("a"),
    ]
    .prop_map(str::to_owned);
    let piece = prop_oneof![4 => piece, 1 => any::<char>().prop_map(String::from)];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

/// Asserts that distinct values never render the same key.
fn assert_injective<V: Clone + Eq + Hash + Debug>(
    values: &[V],
    render: impl Fn(&V) -> String,
) -> Result<(), TestCaseError> {
    let mut seen: HashMap<String, V> = HashMap::new();
    for v in values {
        let key = render(v);
        if let Some(other) = seen.insert(key.clone(), v.clone()) {
            prop_assert_eq!(&other, v, "both render {:?}", key);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn strings_render_injectively(values in prop::collection::vec(nasty(), 1..40)) {
        assert_injective(&values, |a| one_key(a.clone()))?;
        // A rendered value never holds a glob, hash-tag or whitespace
        // character: it is literal in any pattern.
        for a in &values {
            let rendered = render(a.as_str());
            let metas = ['*', '?', '[', ']', '\\', '{', '}', ' ', '\n', ':', ',', '#'];
            prop_assert!(!rendered.contains(metas), "raw metacharacter in {:?}", rendered);
            prop_assert_eq!(escape_glob(&rendered), rendered);
        }
    }

    #[test]
    fn pairs_and_triples_render_injectively(
        values in prop::collection::vec((nasty(), nasty(), nasty()), 1..40),
    ) {
        assert_injective(&values, |(a, b, c)| triple_key(a.clone(), b.clone(), c.clone()))?;
        let pairs: Vec<(String, String)> =
            values.iter().map(|(a, b, _)| (a.clone(), b.clone())).collect();
        assert_injective(&pairs, |(a, b)| pair_key(a.clone(), b.clone()))?;
        // Recombinations of the same text: `a:b` vs `a` + `:b`, ...
        let mut split = Vec::new();
        for (a, b) in &pairs {
            let joined = format!("{a}:{b}");
            for at in joined.char_indices().map(|(i, _)| i) {
                split.push((joined[..at].to_owned(), joined[at..].to_owned()));
            }
        }
        assert_injective(&split, |(a, b)| pair_key(a.clone(), b.clone()))?;
    }

    #[test]
    fn options_render_injectively(
        values in prop::collection::vec(
            (prop::option::of(nasty()), prop::option::of(prop::option::of(nasty()))),
            1..40,
        ),
    ) {
        let mut values = values;
        // The markers themselves, as values.
        for marker in ["%none", "%s", "%snone", "%e", "%empty", "none", ""] {
            values.push((Some(marker.into()), Some(Some(marker.into()))));
            values.push((Some(marker.into()), Some(None)));
            values.push((None, None));
        }
        assert_injective(&values, |(a, b)| opt_key(a.clone(), b.clone()))?;
    }

    #[test]
    fn vecs_render_injectively(
        values in prop::collection::vec(
            (
                prop::collection::vec(nasty(), 0..4),
                prop::collection::vec(prop::option::of(nasty()), 0..4),
            ),
            1..40,
        ),
    ) {
        let mut values = values;
        values.push((vec![], vec![]));
        values.push((vec![String::new()], vec![None]));
        values.push((vec!["%empty".into()], vec![Some(String::new())]));
        values.push((vec!["a,b".into()], vec![Some("a".into()), Some("b".into())]));
        values.push((vec!["a".into(), "b".into()], vec![Some("a,b".into())]));
        assert_injective(&values, |(a, b)| vecs_key(a.clone(), b.clone()))?;
        let unkeyed: Vec<(String, Vec<String>)> = values
            .iter()
            .map(|(a, b)| (a.concat(), b.iter().flatten().cloned().collect()))
            .collect();
        assert_injective(&unkeyed, |(a, b)| unkeyed_key(a.clone(), b.clone()))?;
    }

    #[test]
    fn mixed_scalars_render_injectively(
        values in prop::collection::vec(
            (any::<i64>(), nasty(), any::<char>(), any::<bool>(), prop::option::of(any::<u32>())),
            1..40,
        ),
    ) {
        assert_injective(&values, |(n, s, c, flag, u)| mixed_key(*n, s.clone(), *c, *flag, *u))?;
    }

    #[test]
    fn derived_keys_render_injectively(
        values in prop::collection::vec((nasty(), nasty()), 1..40),
    ) {
        let queries: Vec<Query> = values
            .into_iter()
            .map(|(lang, id)| Query { lang, id })
            .collect();
        assert_injective(&queries, Query::cache_key)?;
    }

    #[test]
    fn escaped_globs_match_only_themselves(s in nasty(), t in nasty(), prefix in nasty()) {
        prop_assert!(glob_match(&escape_glob(&s), &s));
        prop_assert_eq!(glob_match(&escape_glob(&s), &t), s == t);
        let under = format!("{}*", escape_glob(&prefix));
        let below = format!("{prefix}{t}");
        prop_assert!(glob_match(&under, &below), "{:?} vs {:?}", under, below);
        prop_assert_eq!(glob_match(&under, &t), t.starts_with(&prefix));
    }

    #[test]
    fn derived_patterns_match_exactly_their_keys(
        keys in prop::collection::vec((nasty(), nasty()), 1..30),
        lang in nasty(),
        id in nasty(),
    ) {
        let by_lang = Query::pattern().lang(lang.as_str()).build();
        let by_id = Query::pattern().id(id.as_str()).build();
        let both = Query::pattern().lang(lang.as_str()).id(id.as_str()).build();
        let mut keys = keys;
        keys.push((lang.clone(), id.clone()));
        keys.push((lang.clone(), format!("{id}:x")));
        keys.push((format!("{lang}:x"), id.clone()));
        for (l, i) in keys {
            let key = Query { lang: l.clone(), id: i.clone() }.cache_key();
            prop_assert_eq!(glob_match(&by_lang, &key), l == lang, "{} vs {}", by_lang, key);
            prop_assert_eq!(glob_match(&by_id, &key), i == id, "{} vs {}", by_id, key);
            prop_assert_eq!(glob_match(&both, &key), l == lang && i == id);
        }
    }

    #[test]
    fn invalidation_patterns_match_exactly_their_keys(
        keys in prop::collection::vec((nasty(), nasty()), 1..30),
        a in nasty(),
    ) {
        // What `#[invalidate("pair:{a}:*")]` renders.
        let pattern = format!("pair:{}:*", render(a.as_str()));
        let mut keys = keys;
        keys.push((a.clone(), "x".into()));
        keys.push((format!("{a}:"), String::new()));
        for (ka, kb) in keys {
            let key = pair_key(ka.clone(), kb);
            prop_assert_eq!(glob_match(&pattern, &key), ka == a, "{} vs {}", pattern, key);
        }
    }
}

// ---------------------------------------------------------------- Redis

/// Glob patterns of every shape: classes, ranges, negation, escapes,
/// unterminated classes, stars.
fn glob_pattern() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("*"),
        Just("?"),
        Just("["),
        Just("]"),
        Just("[^"),
        Just("-"),
        Just("\\"),
        Just("a"),
        Just("b"),
        Just(":"),
        Just("%"),
        Just("é"),
        Just("[a-c]"),
        Just("[c-a]"),
        Just("[\\]]"),
    ]
    .prop_map(str::to_owned);
    prop::collection::vec(piece, 0..7).prop_map(|v| v.concat())
}

fn key_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a"),
        Just("b"),
        Just("c"),
        Just(":"),
        Just("*"),
        Just("?"),
        Just("["),
        Just("]"),
        Just("\\"),
        Just("-"),
        Just("^"),
        Just("%"),
        Just("é"),
    ]
    .prop_map(str::to_owned);
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

/// What `SCAN MATCH pattern` returns among `keys` on a real server.
fn scan_match(conn: &mut redis::Connection, pattern: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query(conn)
            .unwrap();
        found.extend(keys);
        cursor = next;
        if cursor == 0 {
            return found;
        }
    }
}

#[test]
fn glob_match_agrees_with_redis_scan_match() {
    let server = shared_server();
    let conn = std::cell::RefCell::new(server.conn());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(60));
    let compared = std::cell::Cell::new(0u64);
    runner
        .run(
            &(
                prop::collection::vec(key_text(), 1..40),
                prop::collection::vec(glob_pattern(), 1..8),
                prop::collection::vec(nasty(), 1..8),
            ),
            |(keys, patterns, values)| {
                let mut keys: HashSet<String> = keys.into_iter().collect();
                // The empty key matches differently in Redis: always try it.
                keys.insert(String::new());
                let conn = &mut *conn.borrow_mut();
                let _: () = redis::cmd("FLUSHDB").query(conn).unwrap();
                for k in &keys {
                    let _: () = redis::cmd("SET").arg(k).arg(1).query(conn).unwrap();
                }
                // Patterns cachekit builds: escaped keys and prefixes, derived
                // patterns; and arbitrary globs.
                let mut all: Vec<String> = patterns;
                for k in keys.iter().take(4) {
                    all.push(escape_glob(k));
                    all.push(format!("{}*", escape_glob(k)));
                }
                for v in &values {
                    all.push(Query::pattern().lang(v.as_str()).build());
                    all.push(format!("pair:{}:*", render(v.as_str())));
                }
                for pattern in &all {
                    let expected: HashSet<String> = keys
                        .iter()
                        .filter(|k| glob_match(pattern, k))
                        .cloned()
                        .collect();
                    let redis = scan_match(conn, pattern);
                    prop_assert_eq!(&expected, &redis, "pattern {:?}", pattern);
                    compared.set(compared.get() + 1);
                }
                Ok(())
            },
        )
        .unwrap();
    note(format!(
        "glob_match agreed with SCAN MATCH on {} patterns",
        compared.get()
    ));
}
