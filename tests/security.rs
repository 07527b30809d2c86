//! Security, against real servers: TLS with certificate checks, ACL users
//! with limited rights, value integrity on a shared (and so poisonable)
//! Redis, and no secret in any output.
//!
//! Certificates are made at test time with the `openssl` CLI. Every log line
//! of the process is captured (a `tracing` subscriber at TRACE level) and
//! searched for the secrets the tests use.
//!
//! The tests of this binary replace the global cache, so they run one at a
//! time (a lock).

mod common;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use cachekit::__private::{Envelope, Format, Meta};
use cachekit::{BreakerPolicy, Cache, CircuitState, Config, Error, Secret, cached};
use common::pki::Ca;
use common::{RedisServer, run};
use serde::{Deserialize, Serialize};

/// The password of the ACL user the tests create.
const PASSWORD: &str = "S1gnupPassw0rd-7c1e";
/// A password the server does not know.
const WRONG_PASSWORD: &str = "WR0NGSECRET-a93f";
/// The integrity key of the app.
const INTEGRITY_SECRET: &str = "integrity-S3CRET-5b7d0e";
/// Every secret: none may appear in any output.
const SECRETS: [&str; 3] = [PASSWORD, WRONG_PASSWORD, INTEGRITY_SECRET];

const TIMEOUT: Duration = Duration::from_millis(300);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static COMPUTED: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------- logs

/// Everything every `tracing` subscriber call wrote, as text.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber for the whole process (the runtime
/// logs from background tasks too), at TRACE, with span fields.
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// Asserts that no secret appears in `what` (any text shown to someone).
fn assert_no_secret(context: &str, what: &str) {
    for secret in SECRETS {
        assert!(
            !what.contains(secret),
            "{context}: a secret appears in {what:?}"
        );
    }
}

fn assert_no_secret_logged() {
    let logs = logs();
    for secret in SECRETS {
        assert!(!logs.contains(secret), "a secret appears in the logs");
    }
}

/// Starts a test: one at a time, logs captured.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    capture_logs();
    SERIAL.lock().await
}

// ---------------------------------------------------------------- cached functions

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u64,
    owner: String,
}

#[cached(ttl = 60, key = "acct:{id}")]
async fn account(id: u64) -> Account {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    Account {
        id,
        owner: "ada".into(),
    }
}

#[cached(ttl = 60, key = "session:{user}")]
async fn session_of(user: String) -> String {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    format!("computed for {user}")
}

fn computed() -> u64 {
    COMPUTED.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------- TLS

#[test]
fn tls_with_a_trusted_ca_serves_the_cache() {
    run(async {
        let _serial = serial().await;
        let ca = Ca::new("cachekit test CA");
        let cert = ca.server_cert("server", "IP:127.0.0.1,DNS:localhost");
        let server = RedisServer::start_tls(&cert.cert, &cert.key);
        assert!(server.url().starts_with("rediss://"));
        cachekit::init(
            Config::redis(&server.url())
                .tls_ca_file(&ca.cert)
                .timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();

        let health = cachekit::health().await;
        assert!(health.reachable, "TLS connection: {health:?}");

        static TLS: Cache = Cache::new("tls", Duration::from_secs(60));
        TLS.set("k", &"over TLS").await.unwrap();
        assert_eq!(
            TLS.get::<String>("k").await.unwrap().as_deref(),
            Some("over TLS")
        );
        let before = computed();
        assert_eq!(account(41).await.id, 41);
        assert_eq!(account(41).await.id, 41);
        assert_eq!(computed() - before, 1, "the second call is a hit over TLS");
        assert_no_secret_logged();
    });
}

#[test]
fn tls_servers_whose_certificate_does_not_verify_are_refused() {
    run(async {
        let _serial = serial().await;
        let ca = Ca::new("cachekit test CA");
        let rogue = Ca::new("some other CA");
        let signed_by_rogue = rogue.server_cert("rogue", "IP:127.0.0.1,DNS:localhost");
        let wrong_name = ca.server_cert("elsewhere", "DNS:elsewhere.example");
        let trusted = ca.server_cert("server", "IP:127.0.0.1");
        let cases: Vec<(&str, RedisServer, Option<&std::path::Path>)> = vec![
            (
                "signed by an unknown CA",
                RedisServer::start_tls(&signed_by_rogue.cert, &signed_by_rogue.key),
                Some(&ca.cert),
            ),
            (
                "issued for another name",
                RedisServer::start_tls(&wrong_name.cert, &wrong_name.key),
                Some(&ca.cert),
            ),
            (
                "signed by a CA the system does not trust",
                RedisServer::start_tls(&trusted.cert, &trusted.key),
                None,
            ),
        ];
        for (what, server, ca_file) in &cases {
            let mut config = Config::redis(&server.url())
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT);
            if let Some(ca_file) = ca_file {
                config = config.tls_ca_file(ca_file);
            }
            cachekit::init(config)
                .await
                .expect("init succeeds; the connection is refused later");
            // Cached functions fail open: every call computes, correctly.
            let before = computed();
            for _ in 0..3 {
                assert_eq!(account(42).await, account_value(42), "{what}");
            }
            assert_eq!(computed() - before, 3, "{what}: nothing was cached");
            // The explicit API says why.
            static REFUSED: Cache = Cache::new("refused", Duration::from_secs(60));
            let err = REFUSED
                .get::<String>("k")
                .await
                .expect_err("a server that does not verify is refused");
            assert!(err.is_transient(), "{what}: {err:?}");
            let health = cachekit::health().await;
            assert!(!health.reachable, "{what}: {health:?}");
            let why = health.error.clone().unwrap_or_default();
            // `health()` asks the server even while the circuit is open, so
            // it names the real cause.
            assert!(
                why.to_lowercase().contains("certificate"),
                "{what}: health names the certificate: {why} / {err}"
            );
        }

        // A plain-text client on a TLS port: an error, never a hang.
        let plain = format!("redis://127.0.0.1:{}", cases[2].1.port);
        cachekit::init(
            Config::redis(&plain)
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT),
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        static PLAIN: Cache = Cache::new("plain", Duration::from_secs(60));
        assert!(PLAIN.get::<String>("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3), "never hangs");
        assert_eq!(account(43).await, account_value(43));
        assert_no_secret_logged();
    });
}

fn account_value(id: u64) -> Account {
    Account {
        id,
        owner: "ada".into(),
    }
}

// ---------------------------------------------------------------- ACL

/// A server with the user `signup-user`, restricted to the keys of the
/// `signup` namespace (and cachekit's event channel).
fn server_with_signup_user() -> RedisServer {
    let server = RedisServer::start();
    let _: () = server.cmd(&[
        "ACL",
        "SETUSER",
        "signup-user",
        "on",
        &format!(">{PASSWORD}"),
        "resetkeys",
        "~signup:*",
        "~signup#*",
        "resetchannels",
        "&#events",
        "+@all",
    ]);
    server
}

fn user_url(server: &RedisServer, password: &str) -> String {
    format!("redis://signup-user:{password}@127.0.0.1:{}", server.port)
}

#[test]
fn an_acl_user_reaches_its_namespace_and_nothing_else() {
    run(async {
        let _serial = serial().await;
        let server = server_with_signup_user();
        // Data of another part of the app, written by a privileged client.
        let _: () = server.cmd(&["SET", "session:alice", r#"{"token":"t0p-s3cret"}"#]);
        cachekit::init(
            Config::redis(&user_url(&server, PASSWORD))
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT),
        )
        .await
        .unwrap();
        assert!(cachekit::health().await.reachable);

        // Its own namespace: every operation works.
        static SIGNUP: Cache = Cache::new("signup", Duration::from_secs(60));
        let state = serde_json::json!({"email": "ada@example.com", "step": 1});
        SIGNUP.set("s1", &state).await.unwrap();
        assert_eq!(
            SIGNUP.get::<serde_json::Value>("s1").await.unwrap(),
            Some(state)
        );
        assert!(
            SIGNUP
                .update("s1", serde_json::json!({"step": 2}))
                .await
                .unwrap()
        );
        assert_eq!(SIGNUP.increment("attempts:ada", 1).await.unwrap(), 1);
        SIGNUP
            .set_indexed("s2", &"indexed", &[("user", "ada")])
            .await
            .unwrap();
        assert_eq!(
            SIGNUP.keys_by_index("user", "ada").await.unwrap(),
            vec!["s2".to_owned()]
        );
        assert!(SIGNUP.delete("s2").await.unwrap());
        assert!(SIGNUP.ttl("s1").await.unwrap().is_some());

        // Another namespace: a clear backend error, and nothing read.
        static SESSION: Cache = Cache::new("session", Duration::from_secs(60));
        let err = SESSION
            .get::<serde_json::Value>("alice")
            .await
            .expect_err("session:* is off limits");
        assert!(matches!(err, Error::Backend(_)), "{err:?}");
        assert!(
            err.to_string().contains("NOPERM") || err.to_string().contains("permission"),
            "{err}"
        );
        assert!(matches!(
            SESSION.set("alice", &"overwritten").await,
            Err(Error::Backend(_))
        ));
        // A pattern invalidation over keys it may not touch fails, and
        // deletes nothing.
        assert!(matches!(
            cachekit::invalidate("session:*").await,
            Err(Error::Backend(_))
        ));
        let raw: String = server.cmd(&["GET", "session:alice"]);
        assert_eq!(raw, r#"{"token":"t0p-s3cret"}"#, "untouched");

        // Cached functions on denied keys compute, correctly, every time.
        let before = computed();
        for _ in 0..20 {
            assert_eq!(session_of("alice".into()).await, "computed for alice");
        }
        assert_eq!(computed() - before, 20);
        // Refusals prove the server is up: the circuit stays closed and the
        // allowed namespace keeps working.
        assert_eq!(cachekit::health().await.circuit, Some(CircuitState::Closed));
        SIGNUP.set("s3", &3).await.unwrap();
        assert_eq!(SIGNUP.get::<u32>("s3").await.unwrap(), Some(3));
        assert!(SIGNUP.clear().await.unwrap() >= 2);
        let exists: i64 = server.cmd(&["EXISTS", "session:alice"]);
        assert_eq!(exists, 1, "clearing signup leaves session alone");
        assert_no_secret_logged();
    });
}

// ---------------------------------------------------------------- secrets

#[test]
fn no_secret_in_config_errors_health_or_logs() {
    run(async {
        let _serial = serial().await;
        let server = server_with_signup_user();

        // Debug and Display of the configuration and its URL.
        let config = Config::redis(&user_url(&server, WRONG_PASSWORD))
            .integrity_secret(INTEGRITY_SECRET)
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // Keep the circuit closed, so that each error shows its cause.
            .breaker(BreakerPolicy {
                failure_threshold: 1_000,
                ..BreakerPolicy::default()
            });
        assert_no_secret("Config Debug", &format!("{config:?} {config:#?}"));
        if let cachekit::BackendConfig::Redis(url) = config.backend() {
            assert_no_secret("RedisUrl", &format!("{url} {url:?} {}", url.redacted()));
            assert!(url.to_string().contains("signup-user:***@"), "{url}");
        }
        assert_no_secret("Secret", &format!("{:?}", Secret::new(INTEGRITY_SECRET)));

        // Malformed URLs with passwords: the error names the URL, redacted.
        for url in [
            format!("redis://u:{WRONG_PASSWORD}@host:notaport"),
            format!("redis://u:{WRONG_PASSWORD}@"),
            format!("http://u:{WRONG_PASSWORD}@host"),
            format!("redis://:{WRONG_PASSWORD}@host:1/notadb"),
            format!("redis://u:pa/{WRONG_PASSWORD}@host"),
            format!("redis://u:pa?{WRONG_PASSWORD}@host"),
            format!("redis://u:pa#{WRONG_PASSWORD}@host"),
            format!("redis://{WRONG_PASSWORD}@host:x"),
        ] {
            let from_env = Config::from_lookup(|name| (name == "REDIS_URL").then(|| url.clone()));
            let err = from_env.expect_err("malformed");
            assert_no_secret("from_env error", &format!("{err} {err:?}"));
            let config = Config::redis(&url);
            assert_no_secret("Config Debug", &format!("{config:?}"));
            if let Err(err) = config.validate() {
                assert_no_secret("validate error", &format!("{err} {err:?}"));
            }
            if let Err(err) = cachekit::init(config).await {
                assert_no_secret("init error", &format!("{err} {err:?}"));
            }
        }

        // A wrong password: init succeeds, every error and health say why
        // without the password.
        cachekit::init(config).await.unwrap();
        let shown = format!("{:?}", cachekit::current_config().unwrap());
        assert_no_secret("current_config", &shown);
        let health = cachekit::health().await;
        assert!(!health.reachable);
        assert_no_secret("health", &format!("{health:?}"));
        let why = health.error.unwrap_or_default();
        assert!(
            why.contains("WRONGPASS") || why.contains("uthentication"),
            "health says why: {why}"
        );
        static ANY: Cache = Cache::new("signup", Duration::from_secs(60));
        let err = ANY.get::<String>("k").await.unwrap_err();
        assert_no_secret("Cache error", &format!("{err} {err:?}"));
        let before = computed();
        assert_eq!(account(44).await, account_value(44), "fails open");
        assert_eq!(computed() - before, 1);
        let err = cachekit::invalidate("acct:*").await.unwrap_err();
        assert_no_secret("invalidate error", &format!("{err} {err:?}"));
        let err = cachekit::lock("job", Duration::from_secs(1))
            .await
            .map(drop)
            .unwrap_err();
        assert_no_secret("lock error", &format!("{err} {err:?}"));

        // The right password, with integrity on: values are signed and the
        // secret never shows.
        cachekit::init(
            Config::redis(&user_url(&server, PASSWORD))
                .integrity_secret(INTEGRITY_SECRET)
                .timeout(TIMEOUT),
        )
        .await
        .unwrap();
        ANY.set("k", &"v").await.unwrap();
        assert_eq!(ANY.get::<String>("k").await.unwrap().as_deref(), Some("v"));
        let health = cachekit::health().await;
        assert!(health.reachable);
        assert_no_secret("health", &format!("{health:?}"));
        assert_no_secret("stats", &format!("{:?}", cachekit::stats()));

        // The logs were captured (the failures above were logged), and hold
        // no secret.
        let logs = logs();
        assert!(
            logs.contains("cache") && logs.contains("WARN"),
            "the capture works: {} bytes of logs",
            logs.len()
        );
        assert_no_secret_logged();
        let _ = std::io::stderr().flush();
    });
}

// ---------------------------------------------------------------- integrity

#[test]
fn values_written_or_copied_by_others_are_rejected() {
    run(async {
        let _serial = serial().await;
        let server = RedisServer::start();
        cachekit::init(
            Config::redis(&server.url())
                .integrity_secret(INTEGRITY_SECRET)
                .timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap();

        // Signed values serve as usual.
        let before = computed();
        assert_eq!(account(1).await, account_value(1));
        assert_eq!(account(1).await, account_value(1));
        assert_eq!(computed() - before, 1);
        let signed: Vec<u8> = server.cmd(&["GET", "acct:1"]);
        assert_eq!(&signed[..2], b"\xFFC", "a signed envelope");

        let poisoned = |owner: &str, id: u64| {
            serde_json::to_string(&Account {
                id,
                owner: owner.into(),
            })
            .unwrap()
        };
        // Written by another party: plain JSON of the right shape.
        let _: () = server.cmd(&["SET", "acct:2", &poisoned("mallory", 2)]);
        // Signed with another key.
        let other = Envelope::new(Some(Secret::new("another party's secret key")));
        let forged = other
            .encode("acct:3", &account_value(3), Format::JSON, &Meta::NONE)
            .unwrap();
        set_raw(&server, "acct:3", &forged);
        // Copied from another key (a valid signature, for `acct:1`).
        set_raw(&server, "acct:4", &signed);
        // Tampered: one byte of the payload changed.
        let mut tampered = signed.clone();
        let at = tampered.len() - 40;
        tampered[at] ^= 0x01;
        set_raw(&server, "acct:1", &tampered);

        let before = computed();
        for id in 1..=4 {
            assert_eq!(account(id).await, account_value(id), "acct:{id}");
        }
        assert_eq!(computed() - before, 4, "each poisoned entry was a miss");
        for id in 1..=4 {
            let raw: Vec<u8> = server.cmd(&["GET", &format!("acct:{id}")]);
            assert_eq!(&raw[..2], b"\xFFC", "acct:{id} overwritten, signed");
        }
        let before = computed();
        for id in 1..=4 {
            assert_eq!(account(id).await, account_value(id));
        }
        assert_eq!(computed() - before, 0, "the rewritten entries serve");

        // The Cache API: forged and copied entries read as absent.
        static SIGNED: Cache = Cache::new("signed", Duration::from_secs(60));
        SIGNED
            .set("alice", &serde_json::json!({"role": "user"}))
            .await
            .unwrap();
        let _: () = server.cmd(&["SET", "signed:bob", r#"{"role":"admin"}"#]);
        let alice: Vec<u8> = server.cmd(&["GET", "signed:alice"]);
        set_raw(&server, "signed:carol", &alice);
        assert_eq!(
            SIGNED.get::<serde_json::Value>("alice").await.unwrap(),
            Some(serde_json::json!({"role": "user"}))
        );
        assert_eq!(SIGNED.get::<serde_json::Value>("bob").await.unwrap(), None);
        assert_eq!(
            SIGNED.get::<serde_json::Value>("carol").await.unwrap(),
            None
        );
        let many: Vec<Option<serde_json::Value>> =
            SIGNED.get_many(&["alice", "bob", "carol"]).await.unwrap();
        assert_eq!(many.iter().filter(|v| v.is_some()).count(), 1);
        // `update` refuses to merge into a forged entry.
        assert!(matches!(
            SIGNED.update("bob", serde_json::json!({"x": 1})).await,
            Err(Error::Codec(_))
        ));
        let bob: String = server.cmd(&["GET", "signed:bob"]);
        assert_eq!(bob, r#"{"role":"admin"}"#, "not rewritten by the merge");

        // An index entry pointing at a copy is never returned.
        SIGNED
            .set_indexed("dave", &"dave's", &[("team", "blue")])
            .await
            .unwrap();
        let dave: Vec<u8> = server.cmd(&["GET", "signed:dave"]);
        set_raw(&server, "signed:eve", &dave);
        let _: i64 = server.cmd(&[
            "ZADD",
            "signed#idx:team:blue",
            "99999999999999",
            "signed:eve",
        ]);
        assert_eq!(
            SIGNED.keys_by_index("team", "blue").await.unwrap(),
            vec!["dave".to_owned()]
        );
        assert_no_secret_logged();
    });
}

fn set_raw(server: &RedisServer, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut server.conn())
        .unwrap();
}
