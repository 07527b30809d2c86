//! Bad and hostile data, on the embedded store and a real `redis-server`:
//! entries overwritten with garbage, another type's JSON, huge values, other
//! framings and another Redis type; keys, placeholder values and index values
//! with glob characters, separators, newlines, spaces, unicode and 10 kB
//! lengths; namespaces that prefix each other.
//!
//! Nothing crashes, nothing is widened, and every case is a miss (the cached
//! function computes and overwrites the entry) or a clear `cachekit::Error`.
//! On the embedded store nobody else can write raw bytes, so the garbage
//! cases there are what the public API can produce: another type's JSON and
//! huge values.
//!
//! Each test runs its cases on both stores, replacing the global cache, so
//! the tests run one at a time (a lock).

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cachekit::__private::{HASHED_KEY_HEAD, MAX_KEY_LEN};
use cachekit::{Cache, Config, Error, cached, invalidate};
use common::{RedisServer, run, shared_server};
use serde::{Deserialize, Serialize};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Computations per function, for miss counting.
static COMPUTED: Mutex<Option<HashMap<&'static str, u64>>> = Mutex::new(None);

fn bump(what: &'static str) {
    *COMPUTED
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(what)
        .or_default() += 1;
}

fn computed(what: &'static str) -> u64 {
    COMPUTED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(what).copied())
        .unwrap_or(0)
}

/// A store the cases run on.
#[derive(Clone, Copy)]
enum Store {
    Memory,
    Redis(&'static RedisServer),
}

impl Store {
    fn all() -> [Store; 2] {
        [Store::Memory, Store::Redis(shared_server())]
    }

    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// Installs a fresh cache on this store (Redis: emptied first).
    async fn install(self) {
        let config = match self {
            Store::Memory => Config::memory(),
            Store::Redis(server) => {
                let _: () = server.cmd(&["FLUSHALL"]);
                // Huge values take a while to move; the bound stays finite.
                Config::redis(&server.url()).timeout(Duration::from_secs(5))
            }
        };
        cachekit::init(config).await.unwrap();
    }

    /// Writes raw bytes as another client would (Redis only).
    fn poke(self, key: &str, value: &[u8]) {
        if let Store::Redis(server) = self {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query(&mut server.conn())
                .unwrap();
        }
    }

    /// Every key on the store (Redis only; empty on memory).
    fn keys(self) -> Vec<String> {
        match self {
            Store::Memory => Vec::new(),
            Store::Redis(server) => server.cmd(&["KEYS", "*"]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
    tags: Vec<String>,
}

fn item_value(id: u64) -> Item {
    Item {
        id,
        name: format!("item {id}"),
        tags: vec!["a".into(), "b".into()],
    }
}

#[cached(ttl = 60, key = "item:{id}")]
async fn item(id: u64) -> Item {
    bump("item");
    item_value(id)
}

/// Another function over the same keys, with another type.
#[cached(ttl = 60, key = "item:{id}")]
async fn item_as_numbers(id: u64) -> Vec<u32> {
    bump("item_as_numbers");
    vec![id as u32; 3]
}

#[cached(ttl = 60, key = "big:{id}")]
async fn big(id: u64) -> String {
    bump("big");
    big_value(id)
}

fn big_value(id: u64) -> String {
    let mut s = format!("{id}:");
    s.push_str(&"x".repeat(20 * 1024 * 1024));
    s
}

#[cached(ttl = 60, key = "name:{name}")]
async fn by_name(name: String) -> String {
    bump("by_name");
    format!("value of {name:?}")
}

#[invalidate("name:{name}")]
async fn drop_name(name: String) -> Result<(), String> {
    let _ = name;
    Ok(())
}

#[cached(ttl = 60, key = "pair:{a}:{b}")]
async fn pair(a: String, b: String) -> (String, String) {
    bump("pair");
    (a, b)
}

#[cached(ttl = 60, key = "tagged:{id}", tags = ["t:{tag}"])]
async fn tagged(id: String, tag: String) -> String {
    bump("tagged");
    format!("{id}/{tag}")
}

/// Strings that break naive key layouts.
fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "*",
        "?",
        "[a-z]",
        "[^a]",
        "\\",
        "\\*",
        "a*b",
        "**",
        ":",
        "a:b",
        "a%3Ab",
        "%",
        "%25",
        "%none",
        "%empty",
        "%s",
        "%h",
        "%h00",
        ",",
        "a,b",
        "#",
        "#gen",
        "#idx:user:x",
        "{tag}",
        "{",
        "}",
        " ",
        "a b",
        "\n",
        "\r\n",
        "\t",
        "\0",
        "\u{7f}",
        "héllo",
        "日本語",
        "🦀",
        "\u{202E}rtl",
        "zero\u{200B}width",
        "e\u{301}",
        "\u{e9}",
        "null",
        "\"quoted\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("k".repeat(10 * 1024));
    v.push(format!("{}b", "k".repeat(10 * 1024 - 1)));
    v.push("*".repeat(10 * 1024));
    v.push("é".repeat(5 * 1024));
    v.push(":".repeat(10 * 1024));
    // Around the hashing limit.
    for len in [
        MAX_KEY_LEN - 6,
        MAX_KEY_LEN - 5,
        MAX_KEY_LEN - 4,
        MAX_KEY_LEN,
    ] {
        v.push("m".repeat(len));
    }
    v
}

// ---------------------------------------------------------------- garbage

/// Raw entries another client could write (Redis only).
fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    let mut nested = "[".repeat(100_000);
    nested.push_str(&"]".repeat(100_000));
    vec![
        ("empty", Vec::new()),
        ("not JSON", b"{not json".to_vec()),
        ("binary", vec![0, 0xFF, 0xFE, 0x80, 0x01]),
        ("another type's JSON", b"[1,2,3]".to_vec()),
        ("a JSON string", b"\"item\"".to_vec()),
        ("null", b"null".to_vec()),
        ("an object missing fields", br#"{"id":1}"#.to_vec()),
        (
            "wrong field types",
            br#"{"id":"1","name":2,"tags":{}}"#.to_vec(),
        ),
        (
            "a huge number",
            br#"{"id":1e999,"name":"x","tags":[]}"#.to_vec(),
        ),
        ("deep nesting", nested.into_bytes()),
        (
            "invalid UTF-8 in a string",
            b"{\"id\":1,\"name\":\"\xFF\",\"tags\":[]}".to_vec(),
        ),
        // Other framings: our magic with another version, unknown flags, a
        // signature without a secret, compression without the feature,
        // truncated metadata; and other libraries' formats.
        ("framing v9", b"\xFFC\x09\x00{}".to_vec()),
        ("unknown flags", b"\xFFC\x01\x80{}".to_vec()),
        ("signed, no secret here", {
            let mut v = b"\xFFC\x01\x20{}".to_vec();
            v.extend_from_slice(&[0u8; 32]);
            v
        }),
        (
            "compressed, no lz4 here",
            b"\xFFC\x01\x04\x05\x00\x00\x00garbage".to_vec(),
        ),
        ("MessagePack flag", b"\xFFC\x01\x01\x81\xA2id\x01".to_vec()),
        ("truncated times", b"\xFFC\x01\x08\x01\x02".to_vec()),
        (
            "truncated indexes",
            b"\xFFC\x01\x10\xFF\xFF\x05\x00ab".to_vec(),
        ),
        ("magic only", b"\xFFC".to_vec()),
        ("gzip", b"\x1F\x8B\x08\x00\x00\x00\x00\x00".to_vec()),
        ("pickle", b"\x80\x04\x95\x05\x00\x00\x00".to_vec()),
        (
            "an envelope of another library",
            br#"{"v":1,"data":{"id":1,"name":"x","tags":[]}}"#.to_vec(),
        ),
        ("20 MB of garbage", vec![b'#'; 20 * 1024 * 1024]),
        ("20 MB of another type", {
            let mut v = b"\"".to_vec();
            v.extend(std::iter::repeat_n(b'z', 20 * 1024 * 1024));
            v.push(b'"');
            v
        }),
    ]
}

#[test]
fn garbage_entries_are_misses_and_get_overwritten() {
    run(async {
        let _serial = SERIAL.lock().await;
        let store = Store::Redis(shared_server());
        store.install().await;
        static RAW: Cache = Cache::new("raw", Duration::from_secs(60));
        for (n, (what, bytes)) in garbage().into_iter().enumerate() {
            let id = 1_000 + n as u64;
            let key = format!("item:{id}");
            store.poke(&key, &bytes);
            let before = computed("item");
            assert_eq!(item(id).await, item_value(id), "{what}");
            assert_eq!(computed("item") - before, 1, "{what}: a miss");
            assert_eq!(item(id).await, item_value(id), "{what}");
            assert_eq!(
                computed("item") - before,
                1,
                "{what}: overwritten, then a hit"
            );

            // The explicit API: absent, or a clear error, never a panic.
            let ns_key = format!("raw:{id}");
            store.poke(&ns_key, &bytes);
            let id_s = id.to_string();
            assert_eq!(RAW.get::<Item>(&id_s).await.unwrap(), None, "{what}");
            let many: Vec<Option<Item>> = RAW.get_many(&[id_s.as_str()]).await.unwrap();
            assert_eq!(many, vec![None], "{what}");
            assert!(RAW.exists(&id_s).await.unwrap(), "{what}");
            match RAW.update(&id_s, serde_json::json!({"x": 1})).await {
                // Garbage, or JSON that is not an object.
                Err(Error::Codec(_)) => {}
                // An object of another shape is merged (it is JSON).
                Ok(true)
                    if matches!(
                        what,
                        "an object missing fields"
                            | "wrong field types"
                            | "an envelope of another library"
                    ) => {}
                other => panic!("{what}: update gave {other:?}"),
            }
            match RAW.increment(&id_s, 1).await {
                Err(Error::Backend(msg)) => assert!(msg.contains("integer"), "{what}: {msg}"),
                Ok(_) if what == "empty" => {}
                other => panic!("{what}: increment gave {other:?}"),
            }
            assert!(RAW.delete(&id_s).await.unwrap());
        }
        // Stats saw the decode failures.
        assert!(cachekit::stats().decode_failures >= 20);
    });
}

#[test]
fn entries_of_another_redis_type_fail_open() {
    run(async {
        let _serial = SERIAL.lock().await;
        let Store::Redis(server) = Store::Redis(shared_server()) else {
            unreachable!()
        };
        Store::Redis(server).install().await;
        let _: i64 = server.cmd(&["RPUSH", "item:7", "a", "b"]);
        let _: i64 = server.cmd(&["HSET", "raw:h", "f", "v"]);
        let before = computed("item");
        for _ in 0..3 {
            assert_eq!(item(7).await, item_value(7));
        }
        assert_eq!(
            computed("item") - before,
            3,
            "computes while the key is a list"
        );
        static RAW: Cache = Cache::new("raw", Duration::from_secs(60));
        let err = RAW.get::<String>("h").await.unwrap_err();
        assert!(
            matches!(&err, Error::Backend(m) if m.contains("WRONGTYPE")),
            "{err:?}"
        );
        assert!(RAW.update("h", serde_json::json!({})).await.is_err());
        // Refusals are not outages: the circuit stays closed.
        assert_eq!(
            cachekit::health().await.circuit,
            Some(cachekit::CircuitState::Closed)
        );
        // `set` replaces whatever was there.
        RAW.set("h", &"now a string").await.unwrap();
        assert_eq!(
            RAW.get::<String>("h").await.unwrap().as_deref(),
            Some("now a string")
        );
    });
}

#[test]
fn another_types_json_and_huge_values_on_both_stores() {
    run(async {
        let _serial = SERIAL.lock().await;
        for store in Store::all() {
            let name = store.name();
            store.install().await;
            // Two functions with different types over the same keys: each
            // reads the other's entry as a miss, never as a wrong value.
            let (a0, b0) = (computed("item"), computed("item_as_numbers"));
            for round in 0..3 {
                assert_eq!(item(5).await, item_value(5), "{name} round {round}");
                assert_eq!(item_as_numbers(5).await, vec![5; 3], "{name}");
            }
            assert_eq!(computed("item") - a0, 3, "{name}");
            assert_eq!(computed("item_as_numbers") - b0, 3, "{name}");

            // A 20 MB value is stored and served.
            let before = computed("big");
            assert_eq!(big(1).await.len(), big_value(1).len());
            assert_eq!(big(1).await, big_value(1), "{name}");
            assert_eq!(computed("big") - before, 1, "{name}: the second call hits");
            // And read as another type: absent.
            static BIG: Cache = Cache::new("big", Duration::from_secs(60));
            BIG.set("v", &big_value(2)).await.unwrap();
            assert_eq!(BIG.get::<Item>("v").await.unwrap(), None, "{name}");
            assert_eq!(BIG.get::<String>("v").await.unwrap(), Some(big_value(2)));
            assert!(matches!(
                BIG.update("v", serde_json::json!({"a": 1})).await,
                Err(Error::Codec(_))
            ));
            assert!(BIG.delete("v").await.unwrap());
        }
    });
}

// ---------------------------------------------------------------- keys

#[test]
fn hostile_placeholder_values_are_injective_and_never_widen() {
    run(async {
        let _serial = SERIAL.lock().await;
        for store in Store::all() {
            let name = store.name();
            store.install().await;
            let values = hostile_strings();
            let before = computed("by_name");
            for v in &values {
                assert_eq!(by_name(v.clone()).await, format!("value of {v:?}"));
            }
            assert_eq!(
                computed("by_name") - before,
                values.len() as u64,
                "{name}: each value computed once"
            );
            // Every value has its own entry: a collision would serve another
            // value's result, or skip a computation.
            for v in &values {
                assert_eq!(by_name(v.clone()).await, format!("value of {v:?}"));
            }
            assert_eq!(computed("by_name") - before, values.len() as u64, "{name}");
            if let Store::Redis(_) = store {
                let keys: Vec<String> = store
                    .keys()
                    .into_iter()
                    .filter(|k| k.starts_with("name:"))
                    .collect();
                assert_eq!(keys.len(), values.len(), "one store key per value");
                for k in &keys {
                    let value_part = &k["name:".len()..];
                    assert!(
                        !value_part.contains(['*', '?', '[', ']', '\\', ' ', '\n', '{', '}']),
                        "{k:?} holds a raw metacharacter"
                    );
                    assert!(
                        k.len() <= "name:".len() + MAX_KEY_LEN,
                        "long keys are hashed"
                    );
                }
            }
            // Invalidating a value deletes its entry only, whatever it holds.
            for target in [
                "*",
                "?",
                "[a-z]",
                "\\",
                "**",
                "%",
                "k".repeat(10 * 1024).as_str(),
            ] {
                drop_name(target.to_owned()).await.unwrap();
                let before = computed("by_name");
                for v in &values {
                    assert_eq!(by_name(v.clone()).await, format!("value of {v:?}"));
                }
                assert_eq!(
                    computed("by_name") - before,
                    1,
                    "{name}: invalidating {:?} recomputed exactly one entry",
                    &target[..target.len().min(16)]
                );
            }
            // Separators in values never make two argument lists collide.
            let pairs = [
                ("a:b", "c"),
                ("a", "b:c"),
                ("a%3Ab", "c"),
                ("", ":"),
                (":", ""),
                ("a,b", ","),
                ("", ""),
            ];
            let before = computed("pair");
            for (a, b) in pairs {
                assert_eq!(pair(a.into(), b.into()).await, (a.into(), b.into()));
            }
            for (a, b) in pairs {
                assert_eq!(pair(a.into(), b.into()).await, (a.into(), b.into()));
            }
            assert_eq!(computed("pair") - before, pairs.len() as u64, "{name}");
            // Tags with hostile values: invalidating one tag drops its own
            // entries only.
            for (i, tag) in ["*", "t", "[t]", "t:*", "\n"].iter().enumerate() {
                tagged(format!("{i}"), tag.to_string()).await;
            }
            assert_eq!(cachekit::invalidate_tag("t:*").await.unwrap(), 0, "{name}");
            let rendered_star = cachekit::__private::escape("*");
            assert_eq!(
                cachekit::invalidate_tag(&format!("t:{rendered_star}"))
                    .await
                    .unwrap(),
                1,
                "{name}"
            );
            let before = computed("tagged");
            for (i, tag) in ["*", "t", "[t]", "t:*", "\n"].iter().enumerate() {
                tagged(format!("{i}"), tag.to_string()).await;
            }
            assert_eq!(computed("tagged") - before, 1, "{name}: only `*`'s entry");
        }
    });
}

#[test]
fn hostile_keys_through_the_cache_api() {
    run(async {
        let _serial = SERIAL.lock().await;
        static KEYS: Cache = Cache::new("keys", Duration::from_secs(60));
        static OTHER: Cache = Cache::new("keys-other", Duration::from_secs(60));
        for store in Store::all() {
            let name = store.name();
            store.install().await;
            OTHER.set("*", &"other namespace").await.unwrap();
            let mut stored = Vec::new();
            for (i, key) in hostile_strings().iter().enumerate() {
                match KEYS.set(key, &i).await {
                    Ok(()) => stored.push((key.clone(), i)),
                    // Empty keys and control characters are refused, clearly.
                    Err(Error::InvalidInput(msg)) => {
                        assert!(key.is_empty() || key.chars().any(char::is_control), "{msg}");
                        assert!(matches!(
                            KEYS.get::<usize>(key).await,
                            Err(Error::InvalidInput(_))
                        ));
                    }
                    Err(e) => panic!("{name}: {key:?}: {e}"),
                }
            }
            assert!(stored.len() >= 40, "{name}");
            for (key, i) in &stored {
                assert_eq!(
                    KEYS.get::<usize>(key).await.unwrap(),
                    Some(*i),
                    "{name}: {key:?}"
                );
            }
            let keys: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
            let many: Vec<Option<usize>> = KEYS.get_many(&keys).await.unwrap();
            assert_eq!(
                many,
                stored.iter().map(|(_, i)| Some(*i)).collect::<Vec<_>>()
            );
            // Deleting `*` deletes the key `*`, nothing else.
            assert!(KEYS.delete("*").await.unwrap());
            assert_eq!(KEYS.get::<usize>("*").await.unwrap(), None);
            let a_star_b = stored.iter().find(|(k, _)| k == "a*b").unwrap().1;
            assert_eq!(KEYS.get::<usize>("a*b").await.unwrap(), Some(a_star_b));
            assert_eq!(
                OTHER.get::<String>("*").await.unwrap().as_deref(),
                Some("other namespace")
            );
            // A short key cannot pose as the hashed form of a long one.
            let long = "l".repeat(MAX_KEY_LEN + 100);
            KEYS.set(&long, &"the long key's").await.unwrap();
            let posing = hashed_form(&long);
            assert!(posing.len() < MAX_KEY_LEN);
            assert_eq!(
                KEYS.get::<String>(&posing).await.unwrap(),
                None,
                "{name}: a key spelling the hash of another reads its own entry"
            );
            KEYS.set(&posing, &"the short key's").await.unwrap();
            assert_eq!(
                KEYS.get::<String>(&long).await.unwrap().as_deref(),
                Some("the long key's"),
                "{name}"
            );
            // Index names and values with separators and globs stay apart.
            KEYS.set_indexed("i1", &1, &[("a:b", "c")]).await.unwrap();
            KEYS.set_indexed("i2", &2, &[("a", "b:c")]).await.unwrap();
            KEYS.set_indexed("i3", &3, &[("a", "*")]).await.unwrap();
            KEYS.set_indexed("i4", &4, &[("a", &"v".repeat(10 * 1024))])
                .await
                .unwrap();
            assert_eq!(KEYS.get_by_index::<i32>("a:b", "c").await.unwrap(), vec![1]);
            assert_eq!(KEYS.get_by_index::<i32>("a", "b:c").await.unwrap(), vec![2]);
            assert_eq!(KEYS.get_by_index::<i32>("a", "*").await.unwrap(), vec![3]);
            assert_eq!(
                KEYS.get_by_index::<i32>("a", "?").await.unwrap(),
                Vec::<i32>::new()
            );
            assert_eq!(
                KEYS.get_by_index::<i32>("a", &"v".repeat(10 * 1024))
                    .await
                    .unwrap(),
                vec![4]
            );
            // Reading an index as another type skips its entries, and
            // leaves them listed.
            KEYS.set_indexed("obj", &serde_json::json!({"a": 1}), &[("kind", "obj")])
                .await
                .unwrap();
            assert_eq!(
                KEYS.get_by_index::<i32>("kind", "obj").await.unwrap(),
                Vec::<i32>::new()
            );
            assert_eq!(
                KEYS.keys_by_index("kind", "obj").await.unwrap(),
                vec!["obj".to_owned()],
                "{name}: still listed"
            );
            assert_eq!(
                KEYS.get_by_index::<serde_json::Value>("kind", "obj")
                    .await
                    .unwrap(),
                vec![serde_json::json!({"a": 1})]
            );
            // A huge index value is hashed like a long key: it works, and
            // stays apart from its neighbours.
            let huge = "v".repeat(70 * 1024);
            KEYS.set_indexed("i5", &5, &[("a", &huge)]).await.unwrap();
            assert_eq!(KEYS.keys_by_index("a", &huge).await.unwrap(), ["i5"]);
            assert!(
                KEYS.keys_by_index("a", &huge[1..])
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Clearing the namespace leaves the other one.
            assert!(KEYS.clear().await.unwrap() >= stored.len() as u64 - 1);
            assert_eq!(KEYS.get::<usize>("a*b").await.unwrap(), None);
            assert_eq!(
                OTHER.get::<String>("*").await.unwrap().as_deref(),
                Some("other namespace"),
                "{name}"
            );
        }
    });
}

/// What a long key is stored as, per the documented layout: its first
/// `HASHED_KEY_HEAD` bytes, `%h`, and the SHA-256 of the whole key.
fn hashed_form(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("{}%h{hex}", &key[..HASHED_KEY_HEAD])
}

// ---------------------------------------------------------------- namespaces

#[test]
fn namespaces_that_prefix_each_other_stay_apart() {
    run(async {
        let _serial = SERIAL.lock().await;
        const NAMES: [&str; 7] = [
            "s", "sign", "signup", "sign-up", "sign.up", "sign_up", "signups",
        ];
        let caches: Vec<Cache> = NAMES
            .iter()
            .map(|ns| Cache::new(ns, Duration::from_secs(60)))
            .collect();
        for store in Store::all() {
            let name = store.name();
            store.install().await;
            let fill = || async {
                for (i, c) in caches.iter().enumerate() {
                    c.set("k", &i).await.unwrap();
                    c.set("up:k", &i).await.unwrap();
                    c.set_indexed("x", &i, &[("user", "ada")]).await.unwrap();
                }
            };
            fill().await;
            let check_all_but = |gone: usize| {
                let caches = &caches;
                async move {
                    for (i, c) in caches.iter().enumerate() {
                        let expect = (i != gone).then_some(i);
                        assert_eq!(
                            c.get::<usize>("k").await.unwrap(),
                            expect,
                            "{name} {}",
                            NAMES[i]
                        );
                        assert_eq!(c.get::<usize>("up:k").await.unwrap(), expect);
                        assert_eq!(
                            c.get_by_index::<usize>("user", "ada").await.unwrap(),
                            expect.into_iter().collect::<Vec<_>>(),
                            "{name} {}",
                            NAMES[i]
                        );
                    }
                }
            };
            check_all_but(usize::MAX).await;
            for gone in 0..NAMES.len() {
                fill().await;
                // `sign` cleared: `signup`, `sign-up`, ... untouched.
                assert_eq!(
                    caches[gone].clear().await.unwrap(),
                    4,
                    "{name} {}",
                    NAMES[gone]
                );
                check_all_but(gone).await;
            }
            for (gone, ns) in NAMES.iter().enumerate() {
                fill().await;
                cachekit::invalidate_namespace(ns).await.unwrap();
                check_all_but(gone).await;
            }
        }
    });
}
