//! Property tests of keys and patterns (proptest):
//!
//! * rendering is injective over arbitrary argument values: strings, pairs
//!   and triples through templates, `Option`s (nested), `Vec`s, derived
//!   key types, and mixed scalars; and over nested values (`Vec`s of `Vec`s
//!   of `Option`s, tuples of them, a derived key holding them and a derived
//!   key inside a `Vec` or an `Option`), each generated with its near
//!   collisions: the same elements grouped otherwise, empty against
//!   nested-empty, `""` against absent;
//! * escaping makes a pattern match exactly the keys it should: a glob-
//!   escaped string matches only itself, a derived pattern matches exactly
//!   the keys with those field values, a prefix pattern exactly the keys
//!   under it;
//! * `key::glob_match` agrees with a real redis-server's `SCAN MATCH`, on
//!   the patterns cachekit builds and on arbitrary glob patterns, and a
//!   nested value's rendering (markers included) matches only itself there.
//!
//! `cache-runtime`'s `key::tests::parse_back` parses renderings of
//! arbitrary nestings back to their value; these properties check the same
//! through the keys the macros render.
//!
//! The template parser's properties are unit tests of `cache-macros`
//! (`template::tests::properties`), and a fuzz target (`fuzz/`).

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use cachekit::__private::{escape_glob, glob_match, render};
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

/// Rows of optional cells: the nested shape of issue 12.
type Groups = Vec<Vec<Option<String>>>;
/// Rows of numbers.
type Numbers = Vec<Vec<u64>>;

#[cached(key = "nums:{a}")]
async fn nums(a: Numbers) -> u8 {
    0
}

#[cached(key = "groups:{a}")]
async fn groups(a: Groups) -> u8 {
    0
}

#[cached(key = "tuple:{t}")]
async fn tupled(t: (Numbers, Groups)) -> u8 {
    0
}

#[cached(key = "maybe:{a}")]
async fn maybe_groups(a: Option<Groups>) -> u8 {
    0
}

/// No template: nested arguments in the default key.
#[cached]
async fn unkeyed_nested(a: Groups, t: (Numbers, String)) -> u8 {
    0
}

/// A derived key holding nested values and a tuple.
#[derive(Debug, Clone, PartialEq, Eq, Hash, CacheKey)]
#[cache_key("shelf:{groups}:{pair}")]
struct Shelf {
    groups: Groups,
    pair: (String, Option<u64>),
}

/// Derived keys nested: in a `Vec`, and in an `Option`.
#[cached(key = "shelves:{a}:{b}")]
async fn shelves(a: Vec<Shelf>, b: Option<Shelf>) -> u8 {
    0
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
        Just("%("),
        Just("%)"),
        Just("%_"),
        Just("%."),
        Just("("),
        Just(")"),
        Just("_"),
        Just("."),
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

/// Every way to cut `flat` into consecutive groups, each as is, with an
/// empty group in front and with one behind; and `[]`, `[[]]`, `[[], []]`:
/// values with the same elements, grouped otherwise.
fn regroupings<T: Clone>(flat: &[T]) -> Vec<Vec<Vec<T>>> {
    let mut out = vec![vec![], vec![vec![]], vec![vec![], vec![]]];
    if flat.is_empty() {
        return out;
    }
    for cuts in 0..1u32 << (flat.len() - 1) {
        let mut grouped = vec![vec![flat[0].clone()]];
        for (i, x) in flat.iter().enumerate().skip(1) {
            if cuts & (1 << (i - 1)) != 0 {
                grouped.push(Vec::new());
            }
            grouped.last_mut().expect("one group").push(x.clone());
        }
        let mut front = grouped.clone();
        front.insert(0, Vec::new());
        let mut back = grouped.clone();
        back.push(Vec::new());
        out.extend([grouped, front, back]);
    }
    out
}

/// `cells` and its near collisions: `""` and absent swapped, every present
/// cell joined into one with `,`, and a cell spelling the rendering of all.
fn cell_variants(cells: &[Option<String>]) -> Vec<Vec<Option<String>>> {
    let swapped = cells
        .iter()
        .map(|c| match c.as_deref() {
            None => Some(String::new()),
            Some("") => None,
            Some(s) => Some(s.to_owned()),
        })
        .collect();
    let joined: Vec<String> = cells.iter().flatten().cloned().collect();
    vec![
        cells.to_vec(),
        swapped,
        vec![Some(joined.join(","))],
        vec![Some(render(&cells.to_vec()))],
    ]
}

/// Every regrouping of every variant of `cells`.
fn groups_near(cells: &[Option<String>]) -> Vec<Groups> {
    cell_variants(cells)
        .iter()
        .flat_map(|v| regroupings(v))
        .collect()
}

fn cell() -> impl Strategy<Value = Option<String>> {
    prop::option::of(nasty())
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
        for marker in ["%none", "%s", "%snone", "%e", "%empty", "none", "", "%(", "%)", "%_", "%."] {
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
    fn nested_lists_render_injectively(
        flats in prop::collection::vec(
            prop::collection::vec(prop_oneof![0..13u64, any::<u64>()], 0..5),
            1..6,
        ),
    ) {
        let values: Vec<Numbers> = flats.iter().flat_map(|f| regroupings(f)).collect();
        assert_injective(&values, |a| nums_key(a.clone()))?;
    }

    #[test]
    fn nested_options_render_injectively(
        flats in prop::collection::vec(prop::collection::vec(cell(), 0..5), 1..4),
    ) {
        let values: Vec<Groups> = flats.iter().flat_map(|f| groups_near(f)).collect();
        assert_injective(&values, |a| groups_key(a.clone()))?;
        let maybe: Vec<Option<Groups>> = std::iter::once(None)
            .chain(values.iter().cloned().map(Some))
            .collect();
        assert_injective(&maybe, |a| maybe_groups_key(a.clone()))?;
    }

    #[test]
    fn tuples_of_nested_values_render_injectively(
        numbers in prop::collection::vec(0..13u64, 0..4),
        cells in prop::collection::vec(cell(), 0..4),
        texts in prop::collection::vec(nasty(), 1..4),
    ) {
        let nums = regroupings(&numbers);
        let groups = groups_near(&cells);
        let pairs: Vec<(Numbers, Groups)> = nums
            .iter()
            .flat_map(|n| groups.iter().map(move |g| (n.clone(), g.clone())))
            .collect();
        assert_injective(&pairs, |t| tupled_key(t.clone()))?;
        let unkeyed: Vec<(Groups, (Numbers, String))> = pairs
            .iter()
            .flat_map(|(n, g)| texts.iter().map(move |t| (g.clone(), (n.clone(), t.clone()))))
            .collect();
        assert_injective(&unkeyed, |(a, t)| unkeyed_nested_key(a.clone(), t.clone()))?;
    }

    #[test]
    fn derived_keys_holding_nested_values_render_injectively(
        cells in prop::collection::vec(cell(), 0..4),
        texts in prop::collection::vec(nasty(), 1..3),
        numbers in prop::collection::vec(prop::option::of(0..3u64), 1..3),
    ) {
        // `(text, n)` and its neighbours: the text with the number joined
        // in, a separator moved across.
        let mut pairs = Vec::new();
        for text in &texts {
            for n in &numbers {
                pairs.push((text.clone(), *n));
                if let Some(n) = n {
                    pairs.push((format!("{text},{n}"), None));
                    pairs.push((format!("{text}%.{n}"), None));
                }
            }
        }
        let shelves_alone: Vec<Shelf> = groups_near(&cells)
            .into_iter()
            .flat_map(|groups| {
                pairs.iter().map(move |pair| Shelf { groups: groups.clone(), pair: pair.clone() })
            })
            .collect();
        assert_injective(&shelves_alone, Shelf::cache_key)?;
        // Nested in a `Vec`: the same groups on one shelf or spread over
        // several; and in an `Option`.
        let mut nested: Vec<(Vec<Shelf>, Option<Shelf>)> = Vec::new();
        for groups in regroupings(&cells) {
            let pair = pairs[0].clone();
            let one = Shelf { groups: groups.clone(), pair: pair.clone() };
            let spread: Vec<Shelf> = groups
                .iter()
                .map(|g| Shelf { groups: vec![g.clone()], pair: pair.clone() })
                .collect();
            nested.push((vec![one.clone()], None));
            nested.push((spread.clone(), Some(one.clone())));
            nested.push((vec![], Some(one)));
            nested.push((spread, None));
        }
        for s in shelves_alone.iter().take(40) {
            nested.push((vec![s.clone()], Some(s.clone())));
            nested.push((vec![s.clone(), s.clone()], None));
        }
        assert_injective(&nested, |(a, b)| shelves_key(a.clone(), b.clone()))?;
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

// ---------------------------------------------------- issue 12, by name

#[test]
fn regrouped_elements_never_share_a_key() {
    assert_eq!(nums_key(vec![vec![1, 2]]), "nums:%(%(1,2%)%)");
    assert_eq!(nums_key(vec![vec![1], vec![2]]), "nums:%(%(1%),%(2%)%)");
}

#[test]
fn empty_and_nested_empty_never_share_a_key() {
    assert_eq!(nums_key(vec![]), "nums:%(%)");
    assert_eq!(nums_key(vec![vec![]]), "nums:%(%(%)%)");
}

#[test]
fn an_empty_string_is_an_element() {
    assert_ne!(
        vecs_key(vec![String::new()], vec![]),
        vecs_key(vec![], vec![])
    );
    assert_eq!(vecs_key(vec![String::new()], vec![]), "vec:%(%_%):%(%)");
}

#[test]
fn an_absent_element_is_an_element() {
    assert_ne!(vecs_key(vec![], vec![None]), vecs_key(vec![], vec![]));
    assert_eq!(vecs_key(vec![], vec![None]), "vec:%(%):%(%none%)");
}

#[test]
fn some_empty_is_not_none() {
    assert_ne!(maybe_groups_key(Some(vec![])), maybe_groups_key(None));
    assert_eq!(maybe_groups_key(Some(vec![])), "maybe:%(%)");
    assert_eq!(maybe_groups_key(None), "maybe:%none");
}

#[test]
fn top_level_scalars_render_as_before() {
    assert_eq!(one_key("x:y".into()), "one:x%3Ay");
    assert_eq!(
        mixed_key(7, "a".into(), 'c', true, None),
        "mixed:7:a:c:true:%none"
    );
    assert_eq!(
        mixed_key(7, "a".into(), 'c', true, Some(3)),
        "mixed:7:a:c:true:3"
    );
    let q = Query {
        lang: "e:n".into(),
        id: "7".into(),
    };
    assert_eq!(q.cache_key(), "q:e%3An:7");
    let shelf = Shelf {
        groups: vec![vec![Some("a".into()), None]],
        pair: ("x:y".into(), Some(1)),
    };
    assert_eq!(shelf.cache_key(), "shelf:%(%(a,%none%)%):%(x%3Ay,1%)");
    // Nested, a derived key's own text is escaped, its `:` written `%.`.
    assert_eq!(
        shelves_key(vec![shelf.clone()], None),
        "shelves:%(shelf%.%(%(a,%none%)%)%.%(x%3Ay,1%)%):%none"
    );
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
                // Nested values, markers and all, are literal: each key
                // below is matched by its own text alone.
                let mut nested = Vec::new();
                for v in &values {
                    let groups: Groups =
                        vec![vec![Some(v.clone()), None], vec![Some(String::new())]];
                    let shelf = Shelf {
                        groups: groups.clone(),
                        pair: (v.clone(), None),
                    };
                    for key in [groups_key(groups), shelves_key(vec![shelf], None)] {
                        let _: () = redis::cmd("SET").arg(&key).arg(1).query(conn).unwrap();
                        all.push(key.clone());
                        all.push(format!("{key}*"));
                        keys.insert(key.clone());
                        nested.push(key);
                    }
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
                for key in &nested {
                    prop_assert_eq!(scan_match(conn, key), HashSet::from([key.clone()]));
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
