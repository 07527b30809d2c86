//! One Redis server, through auto-reconnecting multiplexed connections
//! (`redis::aio::ConnectionManager`), one per tokio runtime that calls the
//! store (see `liveness`).
//!
//! Connections are created lazily, so a store can be built while Redis is
//! down; commands then fail and the manager keeps reconnecting. Commands
//! are not timed out here: the resilience layer bounds each operation,
//! retries and reconnection included (a second timer per command cost about
//! 1,000 instructions of each hit). Multi-key writes that must be atomic (a
//! value and the sets that list it) run as Lua scripts; batches are
//! pipelined.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, ServerErrorKind};

use super::liveness::{PerRuntime, runtimes_ended};
use super::protocol::{self, Condition, Tuning, ops, scripts};
use super::{BoxFuture, KeyTtl, Store, Swap, Write};
use crate::config::RedisUrl;
use crate::error::{Error, Result};
use crate::per_thread;

/// What a thread's copy of a connection was taken under: the store, the
/// runtime, and how many runtimes had ended.
type ConnStamp = (u64, tokio::runtime::Id, u64);

thread_local! {
    /// A thread's copy of a store's connection handle for the runtime it
    /// runs. A copy of a store that was dropped lives until the thread next
    /// talks to Redis (through any store) or ends.
    static LOCAL_CONN: per_thread::Slot<ConnStamp, ConnectionManager> = const { std::cell::RefCell::new(None) };
}

/// One Redis server.
pub(crate) struct RedisStore {
    url: RedisUrl,
    client: Client,
    tuning: Tuning,
    conns: PerRuntime<ConnectionManager>,
    id: u64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    /// A store for `url`, connecting lazily.
    pub(crate) fn new(
        url: &RedisUrl,
        tls_ca: Option<&std::path::Path>,
        tuning: Tuning,
    ) -> Result<Self> {
        Ok(RedisStore {
            url: url.clone(),
            client: protocol::client(url, tls_ca)?,
            tuning,
            conns: PerRuntime::default(),
            id: fastrand::u64(..),
        })
    }

    /// The client, for the event bus's own connection.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn manager(&self) -> Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.tuning.connect_timeout))
            .set_response_timeout(None)
            // Few, quick reconnection attempts per request: a refused or
            // failing handshake (a bad certificate, a wrong password) then
            // surfaces within the operation's timeout, and the resilience
            // layer (backoff, circuit breaker) paces the next attempts.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(50));
        ConnectionManager::new_lazy_with_config(self.client.clone(), config).map_err(Error::from)
    }

    /// The connection of the calling runtime (this thread's copy when it is
    /// current).
    fn conn(&self) -> Result<ConnectionManager> {
        let runtime = super::liveness::current()?.id();
        let stamp = (self.id, runtime, runtimes_ended());
        if let Some(conn) = per_thread::get(&LOCAL_CONN, &stamp) {
            return Ok(conn);
        }
        let conn = self.conns.get(|| self.manager())?;
        per_thread::put(&LOCAL_CONN, stamp, conn.clone());
        Ok(conn)
    }

    /// Drops every connection; the next operation reconnects (a fault
    /// injected by `testing`).
    pub(crate) fn drop_connections(&self) {
        self.conns.clear();
        let _ = LOCAL_CONN.try_with(|slot| slot.borrow_mut().take());
    }

    /// Publishes a message on `channel`.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(&mut self.conn()?)
            .await?)
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

impl Store for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { ops::get(&mut self.conn()?, key).await })
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
                [w] => ops::write_if(&mut self.conn()?, w, Condition::Always, &w.member_of)
                    .await
                    .map(drop),
                _ => {
                    let mut pipe = redis::pipe();
                    for w in writes {
                        protocol::add_write(&mut pipe, w, &w.member_of);
                    }
                    self.pipeline(&pipe, &[&*scripts::WRITE]).await
                }
            }
        })
    }

    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            ops::write_if(
                &mut self.conn()?,
                write,
                Condition::Absent,
                &write.member_of,
            )
            .await
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            match swap {
                Swap::Set {
                    value,
                    ttl,
                    member_of,
                } => {
                    let w = Write {
                        key: key.to_owned(),
                        value,
                        ttl,
                        member_of,
                    };
                    ops::write_if(&mut conn, &w, Condition::Equal(expected), &w.member_of).await
                }
                swap => ops::swap(&mut conn, key, expected, &swap).await,
            }
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { ops::delete(&mut self.conn()?, keys).await })
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
            protocol::scan_delete(&mut conn, pattern, "redis", self.tuning.timeout).await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(redis::cmd("PING").query_async(&mut self.conn()?).await?) })
    }
}
