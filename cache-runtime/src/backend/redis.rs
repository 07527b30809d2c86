//! One Redis server, through one shared auto-reconnecting multiplexed
//! connection (`redis::aio::ConnectionManager`).
//!
//! The connection is created lazily, so a backend can be built while Redis is
//! down; commands then fail fast and the manager keeps reconnecting. The
//! connection's driver lives on the tokio runtime that created it; when that
//! runtime shuts down (a `#[tokio::test]` ending, say) the backend notices
//! and opens a new connection on the caller's runtime.
//!
//! Multi-key writes that must be atomic (a value and the sets that list it)
//! run as Lua scripts; batches are pipelined.
//!
//! The commands on one key (and the scripts, the pattern scan, the event
//! subscriber) are written once here, generic over the connection, and
//! shared with the cluster backend (`backend::cluster`), where the `redis`
//! crate routes each to its key's slot.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, ServerErrorKind};

use super::{Backend, BoxFuture, Event, EventStream, KeyTtl, Swap, Write, decode_event};
use crate::codec::now_ms;
use crate::config::RedisUrl;
use crate::error::{Error, Result};
use crate::per_thread;

/// Keys per `SCAN` step and per `UNLINK` of a pattern deletion.
pub(crate) const SCAN_COUNT: usize = 1_000;

/// Lua scripts shared by the Redis and cluster backends.
pub(crate) mod scripts {
    use redis::Script;
    use std::sync::LazyLock;

    /// KEYS: value key, then member sets. ARGV: value, ttl ms, expiry score, now ms.
    pub(crate) static WRITE_WITH_SETS: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[4])
  redis.call('ZADD', KEYS[i], ARGV[3], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1",
        )
    });

    /// One member set of a write, on its own (a cluster writes each set in
    /// its own slot, after the value). KEYS: set. ARGV: member, ttl ms,
    /// expiry score, now ms.
    pub(crate) static ADD_MEMBER: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1",
        )
    });

    /// KEYS: counter. ARGV: by, ttl ms (0: none).
    pub(crate) static INCR: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v",
        )
    });

    /// KEYS: key. ARGV: expected, action (set|keep|del|exp), value or ttl, ttl.
    pub(crate) static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
elseif ARGV[2] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
elseif ARGV[2] == 'del' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1",
        )
    });

    /// KEYS: set. ARGV: now ms.
    pub(crate) static MEMBERS: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)",
        )
    });
}

pub(crate) fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// The invocation of the compare-and-swap script.
pub(crate) fn cas_invocation<'s>(
    key: &str,
    expected: &[u8],
    swap: &Swap,
) -> redis::ScriptInvocation<'s> {
    let mut inv = scripts::COMPARE_AND_SWAP.prepare_invoke();
    inv.key(key).arg(expected);
    match swap {
        Swap::Set(value, ttl) => inv.arg("set").arg(value.as_ref()).arg(millis(*ttl)),
        Swap::SetKeepTtl(value) => inv.arg("keep").arg(value.as_ref()).arg(0),
        Swap::Delete => inv.arg("del").arg(0).arg(0),
        Swap::Expire(ttl) => inv.arg("exp").arg(millis(*ttl)).arg(0),
    };
    inv
}

pub(crate) fn ttl_from_pttl(pttl: i64) -> KeyTtl {
    match pttl {
        -2 => KeyTtl::Missing,
        -1 => KeyTtl::Persistent,
        ms => KeyTtl::Expires(Duration::from_millis(ms.max(0) as u64)),
    }
}

/// The commands of [`Backend`] that touch one key (or, for `MGET` and
/// `UNLINK`, keys the `redis` crate splits per slot on a cluster), over any
/// connection: the Redis backend's `ConnectionManager` or the cluster's
/// `ClusterConnection`.
pub(crate) mod ops {
    use std::time::Duration;

    use bytes::Bytes;
    use redis::aio::ConnectionLike;

    use super::{cas_invocation, millis, scripts, ttl_from_pttl};
    use crate::backend::{Event, KeyTtl, Swap, encode_event};
    use crate::codec::now_ms;
    use crate::error::Result;

    pub(crate) async fn get<C: ConnectionLike>(conn: &mut C, key: &str) -> Result<Option<Bytes>> {
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await?;
        Ok(value.map(Bytes::from))
    }

    pub(crate) async fn get_with_ttl<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
    ) -> Result<Option<(Bytes, KeyTtl)>> {
        let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query_async(conn)
            .await?;
        Ok(value.map(|v| (Bytes::from(v), ttl_from_pttl(pttl))))
    }

    pub(crate) async fn get_many<C: ConnectionLike>(
        conn: &mut C,
        keys: &[String],
    ) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query_async(conn).await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    pub(crate) async fn set<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        Ok(redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(conn)
            .await?)
    }

    pub(crate) async fn set_nx<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(conn)
            .await?;
        Ok(reply.is_some())
    }

    pub(crate) async fn compare_and_swap<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
        expected: &[u8],
        swap: &Swap,
    ) -> Result<bool> {
        let swapped: i64 = cas_invocation(key, expected, swap)
            .invoke_async(conn)
            .await?;
        Ok(swapped == 1)
    }

    pub(crate) async fn delete<C: ConnectionLike>(conn: &mut C, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        Ok(redis::cmd("UNLINK").arg(keys).query_async(conn).await?)
    }

    pub(crate) async fn exists<C: ConnectionLike>(conn: &mut C, key: &str) -> Result<bool> {
        Ok(redis::cmd("EXISTS").arg(key).query_async(conn).await?)
    }

    pub(crate) async fn expire<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
        ttl: Duration,
    ) -> Result<bool> {
        Ok(redis::cmd("PEXPIRE")
            .arg(key)
            .arg(millis(ttl))
            .query_async(conn)
            .await?)
    }

    pub(crate) async fn ttl<C: ConnectionLike>(conn: &mut C, key: &str) -> Result<KeyTtl> {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
        Ok(ttl_from_pttl(pttl))
    }

    pub(crate) async fn incr<C: ConnectionLike>(
        conn: &mut C,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        Ok(scripts::INCR
            .key(key)
            .arg(by)
            .arg(ttl.map_or(0, millis))
            .invoke_async(conn)
            .await?)
    }

    pub(crate) async fn members<C: ConnectionLike>(conn: &mut C, set: &str) -> Result<Vec<String>> {
        Ok(scripts::MEMBERS
            .key(set)
            .arg(now_ms())
            .invoke_async(conn)
            .await?)
    }

    pub(crate) async fn remove_members<C: ConnectionLike>(
        conn: &mut C,
        set: &str,
        members: &[String],
    ) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        Ok(redis::cmd("ZREM")
            .arg(set)
            .arg(members)
            .query_async(conn)
            .await?)
    }

    pub(crate) async fn publish<C: ConnectionLike>(
        conn: &mut C,
        channel: &str,
        sender: u64,
        event: &Event,
    ) -> Result<()> {
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(encode_event(sender, event))
            .query_async(conn)
            .await?)
    }
}

/// Builds a client for `url`, with a CA file for TLS if given.
pub(crate) fn client(url: &RedisUrl, tls_ca: Option<&std::path::Path>) -> Result<Client> {
    url.validate()?;
    #[cfg(feature = "tls")]
    install_crypto_provider();
    match tls_ca {
        #[cfg(feature = "tls")]
        Some(path) if url.is_tls() => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "cannot read the TLS CA file {}: {e}",
                    path.display()
                ))
            })?;
            Client::build_with_tls(
                url.expose(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| Error::Config(format!("TLS setup for {url} failed: {:?}", e.kind())))
        }
        _ => {
            Client::open(url.expose()).map_err(|e| Error::Config(format!("{url}: {:?}", e.kind())))
        }
    }
}

#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    // rustls needs a process-wide provider when more than one could be
    // compiled in; ignore the error when one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connection tuning shared by the Redis and cluster backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// A value that belongs to the tokio runtime it was created on, and knows
/// when that runtime is gone.
pub(crate) struct OnRuntime<T> {
    pub(crate) value: T,
    alive: Arc<AtomicBool>,
}

impl<T> OnRuntime<T> {
    /// Wraps `value`, created on the current runtime.
    pub(crate) fn new(value: T) -> Self {
        OnRuntime {
            value,
            alive: runtime_sentinel(),
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// How many runtimes that had a sentinel have shut down.
static RUNTIMES_ENDED: AtomicU64 = AtomicU64::new(0);

/// How many runtimes that had a sentinel have shut down: a copy of
/// something a sentinel guards is good while this has not moved.
pub(crate) fn runtimes_ended() -> u64 {
    RUNTIMES_ENDED.load(Ordering::Acquire)
}

/// A flag that turns false when the current tokio runtime shuts down.
pub(crate) fn runtime_sentinel() -> Arc<AtomicBool> {
    struct ClearOnDrop(Arc<AtomicBool>);
    impl Drop for ClearOnDrop {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
            RUNTIMES_ENDED.fetch_add(1, Ordering::AcqRel);
        }
    }
    let alive = Arc::new(AtomicBool::new(true));
    let guard = ClearOnDrop(alive.clone());
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
        }
        Err(_) => drop(guard),
    }
    alive
}

thread_local! {
    /// A thread's copy of a backend's connection handle, stamped with the
    /// backend's random sender id and [`runtimes_ended`]. A copy of a
    /// backend that was dropped lives until the thread next talks to Redis
    /// (through any backend) or ends; worker threads end with their runtime.
    static LOCAL_CONN: per_thread::Slot<ConnectionManager> = const { std::cell::RefCell::new(None) };
}

/// One Redis server.
pub struct RedisBackend {
    url: RedisUrl,
    client: Client,
    tuning: Tuning,
    conn: RwLock<OnRuntime<ConnectionManager>>,
    sender: u64,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisBackend {
    /// A backend for `url` that connects lazily. Must be called within a
    /// tokio runtime.
    ///
    /// Commands are not timed out here: `timeout` is the bound that
    /// [`Resilient`](crate::resilience::Resilient) applies around this
    /// backend (as `init` wraps it), to each operation, retries and
    /// reconnection included.
    pub fn new(
        url: &RedisUrl,
        tls_ca: Option<&std::path::Path>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let client = client(url, tls_ca)?;
        let tuning = Tuning {
            timeout,
            connect_timeout,
        };
        let conn = RwLock::new(OnRuntime::new(Self::manager(&client, tuning)?));
        Ok(RedisBackend {
            url: url.clone(),
            client,
            tuning,
            conn,
            sender: fastrand::u64(..),
        })
    }

    fn manager(client: &Client, tuning: Tuning) -> Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(tuning.connect_timeout))
            // No response timeout: `Resilient` bounds every operation by
            // `tuning.timeout` already (retries and reconnection included),
            // and a second timer per command cost about 1,000 instructions
            // of each hit (benches/hit.rs, callgrind).
            .set_response_timeout(None)
            // Few, quick reconnection attempts per request: a refused or
            // failing handshake (a bad certificate, a wrong password) then
            // surfaces within the operation's timeout, and the resilience
            // layer (backoff, circuit breaker) paces the next attempts.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(50));
        ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(Error::from)
    }

    /// The URL, password redacted by its `Display`.
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// The connection handle (this thread's copy when it is current).
    fn conn(&self) -> Result<ConnectionManager> {
        // Good while no runtime has ended (the connection's driver may have
        // run on it).
        let stamp = (self.sender, runtimes_ended());
        if let Some(conn) = per_thread::get(&LOCAL_CONN, stamp) {
            return Ok(conn);
        }
        let conn = self.shared_conn()?;
        per_thread::put(&LOCAL_CONN, stamp, conn.clone());
        Ok(conn)
    }

    /// The shared connection; a new one if the runtime of the old one is gone.
    fn shared_conn(&self) -> Result<ConnectionManager> {
        {
            let guard = self.conn.read().expect("connection lock");
            if guard.is_alive() {
                return Ok(guard.value.clone());
            }
        }
        let mut guard = self.conn.write().expect("connection lock");
        if !guard.is_alive() {
            tracing::debug!(url = %self.url, "the runtime of the Redis connection is gone; reconnecting");
            *guard = OnRuntime::new(Self::manager(&self.client, self.tuning)?);
        }
        Ok(guard.value.clone())
    }

    /// Runs a pipeline, loading scripts once if the server lost them.
    async fn pipeline(&self, pipe: &redis::Pipeline, scripts: &[&Script]) -> Result<()> {
        let mut conn = self.conn()?;
        match pipe.exec_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                for script in scripts {
                    script.prepare_invoke().load_async(&mut conn).await?;
                }
                Ok(pipe.exec_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }
}

/// Adds the commands of one [`Write`] to a pipeline, atomically when it has
/// member sets.
pub(crate) fn add_write(pipe: &mut redis::Pipeline, w: &Write) {
    if w.member_of.is_empty() {
        add_set(pipe, w);
    } else {
        let ttl = millis(w.ttl);
        let script = &*scripts::WRITE_WITH_SETS;
        let now = now_ms();
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1 + w.member_of.len())
            .arg(&w.key);
        for set in &w.member_of {
            cmd.arg(set);
        }
        cmd.arg(w.value.as_ref())
            .arg(ttl)
            .arg(now + ttl)
            .arg(now)
            .ignore();
    }
}

/// Adds the value of one [`Write`] to a pipeline, without its member sets.
pub(crate) fn add_set(pipe: &mut redis::Pipeline, w: &Write) {
    pipe.cmd("SET")
        .arg(&w.key)
        .arg(w.value.as_ref())
        .arg("PX")
        .arg(millis(w.ttl))
        .ignore();
}

/// Where an event subscriber may connect, asked before each attempt: the
/// one server of a Redis backend, the live nodes of a cluster.
pub(crate) type Candidates = Arc<dyn Fn() -> BoxFuture<'static, Vec<Client>> + Send + Sync>;

/// Subscribes to `channel` on one of `candidates`, forwarding events until
/// the receiver is dropped; when the subscription cannot be made or is lost,
/// moves on to the next candidate, with backoff, announcing each
/// (re)subscription with [`Event::Resync`]. Messages sent by `own` are
/// skipped.
pub(crate) fn spawn_subscriber(
    candidates: Candidates,
    channel: String,
    own: u64,
    connect_timeout: Duration,
) -> EventStream {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0usize;
        while !tx.is_closed() {
            let clients = candidates().await;
            let Some(client) = clients.get(attempt % clients.len().max(1)).cloned() else {
                tracing::debug!(channel, "no node to subscribe to cachekit events yet");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            };
            let node = client.get_connection_info().addr().to_string();
            let connected = tokio::time::timeout(connect_timeout, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match connected {
                Ok(Ok(mut pubsub)) => {
                    backoff = Duration::from_millis(50);
                    tracing::debug!(channel, node, "subscribed to cachekit events");
                    if tx.send(Event::Resync).is_err() {
                        return;
                    }
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                let Some(message) = message else { break };
                                let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else { continue };
                                match decode_event(text) {
                                    Some((sender, _)) if sender == own => {}
                                    Some((_, event)) => {
                                        if tx.send(event).is_err() {
                                            return;
                                        }
                                    }
                                    None => tracing::debug!(channel, "ignored a malformed cachekit event"),
                                }
                            }
                            () = tx.closed() => return,
                        }
                    }
                    // Lost: the next attempt goes to the next candidate.
                    attempt = attempt.wrapping_add(1);
                    tracing::debug!(
                        channel,
                        node,
                        "cachekit event subscription lost; resubscribing"
                    );
                }
                Ok(Err(e)) => {
                    attempt = attempt.wrapping_add(1);
                    tracing::debug!(channel, node, error = %e, "cannot subscribe to cachekit events yet");
                }
                Err(_) => {
                    attempt = attempt.wrapping_add(1);
                    tracing::debug!(channel, node, "subscribing to cachekit events timed out");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
    rx
}

impl super::DirectGet for RedisBackend {
    async fn get_direct<'a>(&'a self, key: &'a str) -> Result<Option<Bytes>> {
        ops::get(&mut self.conn()?, key).await
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(super::DirectGet::get_direct(self, key))
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        Box::pin(async move { ops::get_with_ttl(&mut self.conn()?, key).await })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move { ops::get_many(&mut self.conn()?, keys).await })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match writes {
                [] => Ok(()),
                [w] if w.member_of.is_empty() => {
                    ops::set(&mut self.conn()?, &w.key, &w.value, w.ttl).await
                }
                _ => {
                    let mut pipe = redis::pipe();
                    for w in writes {
                        add_write(&mut pipe, w);
                    }
                    self.pipeline(&pipe, &[&*scripts::WRITE_WITH_SETS]).await
                }
            }
        })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::set_nx(&mut self.conn()?, key, &value, ttl).await })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(
            async move { ops::compare_and_swap(&mut self.conn()?, key, expected, &swap).await },
        )
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { ops::delete(&mut self.conn()?, keys).await })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::exists(&mut self.conn()?, key).await })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::expire(&mut self.conn()?, key, ttl).await })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move { ops::ttl(&mut self.conn()?, key).await })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { ops::incr(&mut self.conn()?, key, by, ttl).await })
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { ops::members(&mut self.conn()?, set).await })
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { ops::remove_members(&mut self.conn()?, set, members).await })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            scan_delete(&mut conn, pattern, "redis", self.tuning.timeout).await
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { ops::publish(&mut self.conn()?, channel, self.sender, event).await })
    }

    fn subscribe(&self, channel: &str) -> Option<EventStream> {
        let client = self.client.clone();
        Some(spawn_subscriber(
            Arc::new(move || {
                let client = client.clone();
                Box::pin(async move { vec![client] })
            }),
            channel.to_owned(),
            self.sender,
            self.tuning.connect_timeout,
        ))
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(redis::cmd("PING").query_async(&mut self.conn()?).await?) })
    }
}

/// `SCAN` + `UNLINK` in batches on one node until the cursor returns to 0.
pub(crate) async fn scan_delete<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    pattern: &str,
    node: &str,
    step_timeout: Duration,
) -> Result<u64> {
    // The whole scan may take many round trips; each one is bounded, so a
    // frozen server fails the invalidation instead of hanging it.
    async fn step<T: redis::FromRedisValue, C: redis::aio::ConnectionLike>(
        conn: &mut C,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, cmd.query_async(conn)).await {
            Ok(reply) => Ok(reply?),
            Err(_) => Err(Error::Timeout {
                op: "scan",
                after: timeout,
            }),
        }
    }
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    let mut scanned_batches = 0u64;
    loop {
        let scan = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .clone();
        let (next, keys): (u64, Vec<Vec<u8>>) = step(conn, &scan, step_timeout).await?;
        if !keys.is_empty() {
            let n: u64 = step(conn, redis::cmd("UNLINK").arg(&keys), step_timeout).await?;
            deleted += n;
        }
        scanned_batches += 1;
        if scanned_batches.is_multiple_of(100) {
            tracing::debug!(
                pattern,
                node,
                deleted,
                scanned_batches,
                "pattern invalidation progress"
            );
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(deleted)
}
