//! The Redis protocol as cachekit speaks it: the commands of each [`Store`]
//! primitive, the Lua scripts that make multi-key writes atomic, and the
//! pattern scan, written once over any connection and shared by the Redis
//! and cluster stores (on a cluster the `redis` crate routes each command
//! to its key's slot).
//!
//! [`Store`]: super::Store

use std::time::Duration;

use redis::Client;

use super::{KeyTtl, Swap, Write};
use crate::clock::{millis, system_ms};
use crate::config::RedisUrl;
use crate::error::{Error, Result};

/// Keys per `SCAN` step and per `UNLINK` of a pattern deletion.
pub(crate) const SCAN_COUNT: usize = 1_000;

/// Lua scripts shared by the Redis and cluster stores.
pub(crate) mod scripts {
    use redis::Script;
    use std::sync::LazyLock;

    /// A value and the member sets that list it, written if a condition
    /// holds. KEYS: the value's key, then the sets. ARGV: the condition
    /// (`any`, `absent`, `equal`), the expected value (for `equal`), the
    /// value, its ttl ms, its expiry score, now ms. Returns 1 if written.
    pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
if ARGV[1] == 'absent' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif ARGV[1] == 'equal' then
  if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
end
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[6])
  redis.call('ZADD', KEYS[i], ARGV[5], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
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

    /// KEYS: key. ARGV: expected, action (keep|del|exp), value or ttl.
    pub(crate) static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'keep' then
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

/// When a [`scripts::WRITE`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition<'a> {
    Always,
    Absent,
    Equal(&'a [u8]),
}

/// The arguments (ARGV) of [`scripts::WRITE`] for one write.
struct WriteArgs<'a> {
    w: &'a Write,
    condition: Condition<'a>,
}

impl redis::ToRedisArgs for WriteArgs<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let (name, expected): (&[u8], &[u8]) = match self.condition {
            Condition::Always => (b"any", b""),
            Condition::Absent => (b"absent", b""),
            Condition::Equal(expected) => (b"equal", expected),
        };
        let ttl = millis(self.w.ttl);
        let now = system_ms();
        out.write_arg(name);
        out.write_arg(expected);
        out.write_arg(&self.w.value);
        out.write_arg_fmt(ttl);
        out.write_arg_fmt(now + ttl);
        out.write_arg_fmt(now);
    }
}

/// The invocation of [`scripts::WRITE`] for `w`, listing it in `sets`
/// (all of `w.member_of` on one Redis; none on a cluster, which lists it
/// after, slot by slot).
pub(crate) fn write_invocation<'s>(
    w: &Write,
    condition: Condition<'_>,
    sets: &[String],
) -> redis::ScriptInvocation<'s> {
    let mut inv = scripts::WRITE.prepare_invoke();
    inv.key(&w.key).key(sets).arg(WriteArgs { w, condition });
    inv
}

/// The invocation of the compare-and-swap script for swaps that write no
/// value ([`Swap::Set`] is a conditional [`scripts::WRITE`]).
pub(crate) fn cas_invocation<'s>(
    key: &str,
    expected: &[u8],
    swap: &Swap,
) -> redis::ScriptInvocation<'s> {
    let mut inv = scripts::COMPARE_AND_SWAP.prepare_invoke();
    inv.key(key).arg(expected);
    match swap {
        Swap::SetKeepTtl(value) => inv.arg("keep").arg(value.as_ref()),
        Swap::Delete => inv.arg("del").arg(0),
        Swap::Expire(ttl) => inv.arg("exp").arg(millis(*ttl)),
        Swap::Set { .. } => unreachable!("a Set swap is a conditional write"),
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

/// The commands of [`Store`](super::Store) that touch one key (or, for `MGET` and
/// `UNLINK`, keys the `redis` crate splits per slot on a cluster), over any
/// connection: the Redis backend's `ConnectionManager` or the cluster's
/// `ClusterConnection`.
pub(crate) mod ops {
    use std::time::Duration;

    use bytes::Bytes;
    use redis::aio::ConnectionLike;

    use super::{Condition, cas_invocation, scripts, ttl_from_pttl, write_invocation};
    use crate::clock::{millis, system_ms};
    use crate::error::Result;
    use crate::store::{KeyTtl, Swap, Write};

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

    /// Writes `w` (without its member sets) if `condition` holds.
    pub(crate) async fn write_if<C: ConnectionLike>(
        conn: &mut C,
        w: &Write,
        condition: Condition<'_>,
        sets: &[String],
    ) -> Result<bool> {
        if sets.is_empty() && condition == Condition::Absent {
            let reply: Option<String> = redis::cmd("SET")
                .arg(&w.key)
                .arg(w.value.as_ref())
                .arg("NX")
                .arg("PX")
                .arg(millis(w.ttl))
                .query_async(conn)
                .await?;
            return Ok(reply.is_some());
        }
        let written: i64 = write_invocation(w, condition, sets)
            .invoke_async(conn)
            .await?;
        Ok(written == 1)
    }

    /// A compare-and-swap that writes no value.
    pub(crate) async fn swap<C: ConnectionLike>(
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
            .arg(system_ms())
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

/// Connection tuning shared by the Redis and cluster stores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// Adds the commands of one [`Write`] to a pipeline: a `SET`, or the
/// write script when it has member sets (atomic with them on one Redis).
pub(crate) fn add_write(pipe: &mut redis::Pipeline, w: &Write, sets: &[String]) {
    if sets.is_empty() {
        pipe.cmd("SET")
            .arg(&w.key)
            .arg(w.value.as_ref())
            .arg("PX")
            .arg(millis(w.ttl))
            .ignore();
    } else {
        pipe.cmd("EVALSHA")
            .arg(scripts::WRITE.get_hash())
            .arg(1 + sets.len())
            .arg(&w.key)
            .arg(sets)
            .arg(WriteArgs {
                w,
                condition: Condition::Always,
            })
            .ignore();
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
