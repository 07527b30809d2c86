//! Configuration: which store serves, and how cachekit behaves around it.
//!
//! `Config::memory()`, `Config::redis(url)` and `Config::cluster(&[urls])`
//! pick the store; builder methods adjust the rest. `Config::from_env()`
//! reads the variables a twelve-factor deployment sets. Secrets (the Redis
//! password, the integrity key) never appear in `Debug`, `Display`, errors
//! or logs.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::key;
use crate::store::Store;

/// Which store serves the cache.
#[derive(Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// The embedded in-memory store (the default when `REDIS_URL` is unset).
    Memory,
    /// One Redis server (`redis://` or `rediss://`).
    Redis(RedisUrl),
    /// A Redis Cluster, reached through any of these seed nodes.
    Cluster(Vec<RedisUrl>),
    /// A store of your own ([`Config::store`]), treated as shared: behind
    /// the resilience layer, with no in-process tier (nothing tells this
    /// process what other clients change in it).
    Custom(Arc<dyn Store>),
}

impl PartialEq for BackendConfig {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BackendConfig::Memory, BackendConfig::Memory) => true,
            (BackendConfig::Redis(a), BackendConfig::Redis(b)) => a == b,
            (BackendConfig::Cluster(a), BackendConfig::Cluster(b)) => a == b,
            (BackendConfig::Custom(a), BackendConfig::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendConfig::Memory => f.write_str("Memory"),
            BackendConfig::Redis(url) => f.debug_tuple("Redis").field(url).finish(),
            BackendConfig::Cluster(urls) => f.debug_tuple("Cluster").field(urls).finish(),
            BackendConfig::Custom(store) => f.debug_tuple("Custom").field(&store.name()).finish(),
        }
    }
}

/// A Redis URL whose password is never shown.
///
/// `Debug` and `Display` print the URL with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Arc<str>);

impl RedisUrl {
    /// Wraps a URL. It is validated when the backend starts (`init`) or by
    /// [`RedisUrl::validate`].
    pub fn new(url: &str) -> Self {
        RedisUrl(Arc::from(url.trim()))
    }

    /// The URL as given, password included. Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the URL's scheme and form, naming the problem (never the
    /// password) on error.
    pub fn validate(&self) -> Result<()> {
        let url = self.expose();
        let rest = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
            .or_else(|| url.strip_prefix("valkey://"))
            .or_else(|| url.strip_prefix("valkeys://"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "`{}` is not a Redis URL: expected redis://[user:password@]host[:port][/db] or rediss://...",
                    self
                ))
            })?;
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            return Err(Error::Config(format!("`{self}` has no host")));
        }
        if url.starts_with("rediss") && cfg!(not(feature = "tls")) {
            return Err(Error::Config(format!(
                "`{self}` needs TLS, but cachekit was built without its `tls` feature"
            )));
        }
        redis::IntoConnectionInfo::into_connection_info(url)
            .map(|_| ())
            .map_err(|e| {
                Error::Config(format!(
                    "`{self}` is not a valid Redis URL ({:?})",
                    e.kind()
                ))
            })
    }

    /// Whether this URL asks for TLS.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://") || self.0.starts_with("valkeys://")
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Replaces the password of a `scheme://user:password@host` URL by `***`.
pub(crate) fn redact(url: &str) -> String {
    // Without a scheme (a malformed URL), the user info starts at once.
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    // The last `@` anywhere ends the user info: a password may hold an
    // unencoded `/`, `?` or `#`, and hiding too much of a malformed URL is
    // better than showing its password.
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.find(':') {
        Some(colon) => &userinfo[..colon],
        // `redis://password@host` is read by redis-rs as a password-only URL.
        None if !userinfo.is_empty() => "",
        None => return url.to_owned(),
    };
    format!("{}{}:***@{}", &url[..scheme_end], user, &rest[at + 1..])
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A secret value (the integrity key): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Secret(Arc::from(bytes.as_ref()))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Retries of transient failures (connection errors and timeouts) with
/// exponential backoff and full jitter. All retries of one operation stay
/// within the operation's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retries).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// The circuit breaker: after `failure_threshold` consecutive failures the
/// circuit opens and calls skip the backend (one fast failure each) for
/// `open_for`; then one probe call decides whether it closes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            open_for: Duration::from_secs(1),
        }
    }
}

/// The bounded in-process tier in front of a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTierConfig {
    /// Keep every cached function's entries in the tier (not only those
    /// marked `local = true`).
    pub all: bool,
    /// Upper bound of the tier, in bytes of heap: keys, values and about
    /// 350 bytes of bookkeeping per entry.
    pub max_bytes: u64,
    /// Longest time an entry stays in the tier, whatever its TTL.
    pub max_ttl: Duration,
}

impl Default for LocalTierConfig {
    fn default() -> Self {
        LocalTierConfig {
            all: false,
            max_bytes: 64 * 1024 * 1024,
            max_ttl: Duration::from_secs(60),
        }
    }
}

/// How cachekit is set up. Build one with [`Config::memory`],
/// [`Config::redis`], [`Config::cluster`] or [`Config::from_env`], adjust
/// it with the builder methods, and install it with `cachekit::init`.
#[derive(Clone)]
pub struct Config {
    pub(crate) backend: BackendConfig,
    pub(crate) enabled: bool,
    pub(crate) default_ttl: Duration,
    pub(crate) key_prefix: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: BreakerPolicy,
    pub(crate) local: LocalTierConfig,
    pub(crate) memory_max_bytes: u64,
    pub(crate) integrity: Option<Secret>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) lease_ttl: Duration,
    pub(crate) fail_safe_throttle: Duration,
    pub(crate) jitter: u8,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("backend", &self.backend)
            .field("enabled", &self.enabled)
            .field("default_ttl", &self.default_ttl)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("local", &self.local)
            .field("memory_max_bytes", &self.memory_max_bytes)
            .field("integrity", &self.integrity.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("lease_ttl", &self.lease_ttl)
            .field("fail_safe_throttle", &self.fail_safe_throttle)
            .field("jitter", &self.jitter)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::memory()
    }
}

/// Default TTL of entries whose TTL is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Default bound of one backend operation, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default length of a lease: the lock of `lock = true`, and the marker a
/// computation holds at its key (renewed while it runs).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

impl Config {
    fn with_backend(backend: BackendConfig) -> Self {
        Config {
            backend,
            enabled: true,
            default_ttl: DEFAULT_TTL,
            key_prefix: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            local: LocalTierConfig::default(),
            memory_max_bytes: 256 * 1024 * 1024,
            integrity: None,
            tls_ca: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            fail_safe_throttle: crate::engine::DEFAULT_FAIL_SAFE_THROTTLE,
            jitter: 0,
        }
    }

    /// The embedded in-memory store: no server, one process.
    pub fn memory() -> Self {
        Config::with_backend(BackendConfig::Memory)
    }

    /// One Redis server: `redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS. The URL is checked by `init`.
    pub fn redis(url: &str) -> Self {
        Config::with_backend(BackendConfig::Redis(RedisUrl::new(url)))
    }

    /// A Redis Cluster, reached through these seed nodes.
    pub fn cluster<S: AsRef<str>>(urls: &[S]) -> Self {
        Config::with_backend(BackendConfig::Cluster(
            urls.iter().map(|u| RedisUrl::new(u.as_ref())).collect(),
        ))
    }

    /// A store of your own: anything that implements [`Store`] and passes
    /// its conformance suite (`cachekit::store::conformance`).
    pub fn store(store: impl Store) -> Self {
        Config::with_backend(BackendConfig::Custom(Arc::new(store)))
    }

    /// Reads the environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `REDIS_URL` | `redis://` or `rediss://` URL, with user and password | unset: in-memory store |
    /// | `REDIS_CLUSTER_NODES` | comma-separated node URLs of a Redis Cluster | unset |
    /// | `CACHE_ENABLED` | `true`/`false` (`1`/`0`, `yes`/`no`, `on`/`off`); disabled means every call computes | `true` |
    /// | `CACHE_DEFAULT_TTL` | seconds, or `90s`, `5m`, `1h`, `1d` | `300` |
    /// | `CACHE_KEY_PREFIX` | prefix of every key, e.g. `myapp` gives `myapp:user:7` | none |
    /// | `REDIS_SOCKET_TIMEOUT` | bound of one operation: seconds (`0.5`) or `500ms` | `0.5` |
    /// | `CACHE_LOCAL_TIER` | `true` keeps every cached function's hot entries in process | `false` |
    ///
    /// A malformed value is an [`Error::Config`] that names the variable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any source of variables (tests, files).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = if let Some(nodes) = get("REDIS_CLUSTER_NODES") {
            let urls: Vec<&str> = nodes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let config = Config::cluster(&urls);
            if let BackendConfig::Cluster(urls) = &config.backend {
                for url in urls {
                    url.validate()
                        .map_err(|e| Error::Config(format!("REDIS_CLUSTER_NODES: {e}")))?;
                }
            }
            config
        } else if let Some(url) = get("REDIS_URL") {
            let config = Config::redis(&url);
            if let BackendConfig::Redis(url) = &config.backend {
                url.validate()
                    .map_err(|e| Error::Config(format!("REDIS_URL: {e}")))?;
            }
            config
        } else {
            Config::memory()
        };
        if let Some(v) = get("CACHE_ENABLED") {
            config.enabled = parse_bool(&v).ok_or_else(|| {
                Error::Config(format!(
                    "CACHE_ENABLED=`{v}` is not a boolean (use true or false)"
                ))
            })?;
        }
        if let Some(v) = get("CACHE_DEFAULT_TTL") {
            config.default_ttl = parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                Error::Config(format!(
                    "CACHE_DEFAULT_TTL=`{v}` is not a positive duration (seconds, or 90s, 5m, 1h)"
                ))
            })?;
        }
        if let Some(v) = get("CACHE_KEY_PREFIX") {
            key::validate_prefix(&v)
                .map_err(|e| Error::Config(format!("CACHE_KEY_PREFIX: {e}")))?;
            config.key_prefix = Some(v.trim().to_owned());
        }
        if let Some(v) = get("REDIS_SOCKET_TIMEOUT") {
            config.timeout = parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "REDIS_SOCKET_TIMEOUT=`{v}` is not a positive duration (seconds such as 0.5, or 500ms)"
                    ))
                })?;
        }
        if let Some(v) = get("CACHE_LOCAL_TIER") {
            config.local.all = parse_bool(&v).ok_or_else(|| {
                Error::Config(format!(
                    "CACHE_LOCAL_TIER=`{v}` is not a boolean (use true or false)"
                ))
            })?;
        }
        Ok(config)
    }

    /// Turns caching on or off. Off, every cached call (`#[cached]`,
    /// `get_or_compute`) computes and stores nothing. The explicit `Cache`
    /// API is a store you asked for and keeps working.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// TTL of entries whose TTL is not given (`#[cached]` without `ttl`).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// A prefix for every key, e.g. `myapp` stores `user:7` as `myapp:user:7`.
    /// Checked by `init`: letters, digits and `_ . - : /`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// Bound of one backend operation, retries included (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound of one connection attempt (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of transient failures.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The circuit breaker.
    pub fn breaker(mut self, breaker: BreakerPolicy) -> Self {
        self.breaker = breaker;
        self
    }

    /// The in-process tier (used by `#[cached(local = true)]`, and by every
    /// cached function when `all` is set).
    pub fn local_tier(mut self, local: LocalTierConfig) -> Self {
        self.local = local;
        self
    }

    /// Upper bound of the embedded in-memory store, in bytes of heap: keys,
    /// values and about 350 bytes of bookkeeping per entry (default 256 MiB).
    pub fn memory_max_bytes(mut self, bytes: u64) -> Self {
        self.memory_max_bytes = bytes;
        self
    }

    /// Signs every stored value with HMAC-SHA256 over its key and bytes.
    /// A value that does not carry a valid signature for its key (written by
    /// another party, or copied from another key) reads as a miss.
    pub fn integrity_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.integrity = Some(Secret::new(secret));
        self
    }

    /// A PEM file of CA certificates that signs the server's certificate
    /// (`rediss://`), instead of the system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// The length of a lease (default 5 s): the cross-process lock of
    /// `lock = true`, and the marker a computation holds at its key while it
    /// runs (renewed every third of it).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// After a fail-safe activation, how long the last good value is reused
    /// before the source is tried again, unless a function says otherwise
    /// (default 30 s).
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = throttle;
        self
    }

    /// Takes up to `percent` of each TTL off at random, so that entries
    /// written together do not expire together, unless a function says
    /// otherwise (default 0). At most 100.
    pub fn jitter(mut self, percent: u8) -> Self {
        self.jitter = percent;
        self
    }

    /// The store this configuration selects.
    pub fn backend(&self) -> &BackendConfig {
        &self.backend
    }

    /// Whether caching is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The default TTL.
    pub fn get_default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// The key prefix, if any.
    pub fn get_key_prefix(&self) -> Option<&str> {
        self.key_prefix.as_deref()
    }

    /// The operation timeout.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks everything that can be checked without connecting.
    pub fn validate(&self) -> Result<()> {
        match &self.backend {
            BackendConfig::Memory => {}
            BackendConfig::Redis(url) => url.validate()?,
            BackendConfig::Custom(_) => {}
            BackendConfig::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(Error::Config(
                        "a cluster needs at least one node URL".into(),
                    ));
                }
                for url in urls {
                    url.validate()?;
                }
            }
        }
        if let Some(prefix) = &self.key_prefix {
            key::validate_prefix(prefix).map_err(|e| Error::Config(format!("key prefix: {e}")))?;
        }
        if self.default_ttl.is_zero() {
            return Err(Error::Config("the default TTL must be positive".into()));
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(Error::Config(
                "the breaker's failure threshold must be at least 1".into(),
            ));
        }
        if let Some(secret) = &self.integrity
            && secret.expose().len() < 16
        {
            return Err(Error::Config(
                "the integrity secret must be at least 16 bytes".into(),
            ));
        }
        if self.lease_ttl < Duration::from_millis(10) {
            return Err(Error::Config("a lease must last at least 10 ms".into()));
        }
        if self.jitter > 100 {
            return Err(Error::Config("jitter is a percentage: at most 100".into()));
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `5`, `0.5` (seconds) or a number with a unit: `250ms`, `1.5s`,
/// `90s`, `5m`, `1h`, `1d`. The same parser checks the macros' durations at
/// compile time.
pub fn parse_duration(v: &str) -> Option<Duration> {
    crate::duration::parse(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://user:hunter2@localhost:6379/0"),
            "redis://user:***@localhost:6379/0"
        );
        assert_eq!(redact("rediss://:hunter2@h"), "rediss://:***@h");
        assert_eq!(redact("redis://hunter2@h"), "redis://:***@h");
        assert_eq!(redact("redis://localhost:6379"), "redis://localhost:6379");
        // Malformed URLs: unencoded separators in the password, no scheme.
        assert_eq!(redact("redis://u:pa/ss@h"), "redis://u:***@h");
        assert_eq!(redact("redis://u:pa?ss#x@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("u:hunter2@h"), "u:***@h");
        assert_eq!(redact("localhost:6379"), "localhost:6379");
        let url = RedisUrl::new("redis://u:s3cr3t@h:1");
        assert!(!format!("{url:?} {url}").contains("s3cr3t"));
        let config = Config::redis("redis://u:s3cr3t@h:1").integrity_secret("0123456789abcdefXYZ");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }

    #[test]
    fn reads_the_environment() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.backend, BackendConfig::Memory);
        let c = Config::from_lookup(env(&[
            ("REDIS_URL", "redis://:pw@127.0.0.1:6380/2"),
            ("CACHE_ENABLED", "off"),
            ("CACHE_DEFAULT_TTL", "5m"),
            ("CACHE_KEY_PREFIX", "app"),
            ("REDIS_SOCKET_TIMEOUT", "0.25"),
        ]))
        .unwrap();
        assert!(matches!(c.backend, BackendConfig::Redis(_)));
        assert!(!c.enabled);
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.key_prefix.as_deref(), Some("app"));
        assert_eq!(c.timeout, Duration::from_millis(250));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (var, value) in [
            ("REDIS_URL", "http://x"),
            ("CACHE_ENABLED", "maybe"),
            ("CACHE_DEFAULT_TTL", "0"),
            ("CACHE_DEFAULT_TTL", "soon"),
            ("CACHE_KEY_PREFIX", "a*b"),
            ("REDIS_SOCKET_TIMEOUT", "-1"),
            ("REDIS_CLUSTER_NODES", "redis://a:1,nope"),
        ] {
            let err = Config::from_lookup(env(&[(var, value)])).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{var}: {err}");
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}
