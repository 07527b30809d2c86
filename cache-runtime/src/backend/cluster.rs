//! Redis Cluster (or Valkey Cluster), through the `redis` crate's
//! `cluster-async` client: one shared `ClusterConnection` that keeps a
//! multiplexed connection per node, follows `MOVED` and `ASK` redirections,
//! refreshes its slot map when the topology changes (a failover, a
//! resharding) and reconnects by itself.
//!
//! The connection is created lazily, as for one Redis: `init` succeeds with
//! every node down, commands fail fast until the cluster answers, and the
//! client keeps reconnecting to the seed nodes. When the tokio runtime that
//! drives the connection shuts down, the next call opens a new one on its
//! own runtime. TLS (`rediss://`), the user and the password come from the
//! seed URLs, which must agree on them.
//!
//! # Key layout on a cluster
//!
//! The keys are those of one Redis (see `key`): cachekit adds no hash tag.
//! Each key hashes on its whole name, so entries, counters, locks, tag and
//! index sets spread evenly over the 16384 slots, and cachekit makes no hot
//! slot of its own. Each operation of the [`Backend`] trait maps to the
//! cluster as follows:
//!
//! | operation | keys | on a cluster |
//! |---|---|---|
//! | `get`, `set_nx`, `compare_and_swap` (`update`, leases, locks), `incr` (counters, namespace generations), `expire`, `ttl`, `members` | one | one request to the key's primary; atomic as on one Redis |
//! | `write` of plain values (`set`, `set_many`, cached results) | one per value | one pipeline per slot, all slots at once |
//! | `write` of an entry with tags or indexes | the value and one sorted set per tag or index, in different slots | each set first (a script on the set's own slot), then the value |
//! | `get_many`, `delete` (also of a tag's entries) | many | `MGET`/`UNLINK` split per slot by the `redis` crate, sent in parallel, reassembled in order |
//! | `delete_matching` (pattern invalidation, `Cache::clear`) | a glob | `SCAN` on every primary of the client's slot map, each batch `UNLINK`ed per slot |
//! | `publish`, `subscribe` | a channel | `PUBLISH` reaches every node over the cluster bus; the subscriber listens on one node and moves to another when it dies ([`Event::Resync`]) |
//!
//! What this costs: an entry with tags or indexes is written in as many
//! round trips as it has sets plus one (concurrent for the sets), and is
//! not atomic as a whole. Readers allow for it: an index read checks every
//! member against the entry, which lists its indexes, so a set written
//! before a value that failed only names a missing key, pruned on read; a
//! tag invalidation deletes whatever its set names. A `get_many` or
//! `set_many` of N keys is up to N requests, spread over the primaries and
//! pipelined on each node's connection. A pattern invalidation costs one
//! `SCAN` pass per primary, whatever the pattern.
//!
//! What it gains: every primary takes its share of the keys and of the
//! traffic, and a slot moves (resharding, failover) without cachekit
//! noticing. A hash tag, a `{...}` in a key, would make Redis hash only the
//! braces' content: rendered placeholder values, namespaces, prefixes and
//! index keys never contain braces, but a key you write yourself can (a
//! `Cache` key such as `{user:7}:cart`, or `{{user:7}}` in a template). All
//! keys with one tag live in one slot on one primary: one request for their
//! `get_many`, but a hot slot that no resharding can split.
//!
//! Replication to the replicas is asynchronous: a write acknowledged by a
//! primary that dies before passing it on is lost in the failover. For a
//! cache that means a miss (an entry recomputed), or an invalidation undone
//! (the entry is back until its TTL), never an error.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Client, Cmd, RedisFuture, Value};

use super::redis::{Candidates, spawn_subscriber};
use super::redis::{OnRuntime, Tuning, add_set, client, millis, ops, scan_delete, scripts};
use super::{Backend, BoxFuture, Event, EventStream, KeyTtl, Swap, Write};
use crate::codec::now_ms;
use crate::config::RedisUrl;
use crate::error::{Error, Result};

/// Retries of one request inside the cluster client (redirections,
/// reconnections, `TRYAGAIN`), all within the operation's timeout.
const CLIENT_RETRIES: u32 = 6;

/// A Redis Cluster.
pub struct ClusterBackend {
    shared: Arc<Shared>,
    sender: u64,
}

/// What the backend and its event subscriber share.
struct Shared {
    seeds: Vec<RedisUrl>,
    tls_ca: Option<PathBuf>,
    client: ClusterClient,
    tuning: Tuning,
    conn: RwLock<OnRuntime<ClusterConnection>>,
}

impl fmt::Debug for ClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBackend")
            .field("seeds", &self.shared.seeds)
            .finish()
    }
}

impl ClusterBackend {
    /// A backend for the cluster reached through `seeds`, connecting
    /// lazily. Must be called within a tokio runtime.
    pub fn new(
        seeds: &[RedisUrl],
        tls_ca: Option<&std::path::Path>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self> {
        if seeds.is_empty() {
            return Err(Error::Config(
                "a cluster needs at least one node URL".into(),
            ));
        }
        for url in seeds {
            url.validate()?;
        }
        #[cfg(feature = "tls")]
        super::redis::install_crypto_provider();
        let mut builder = ClusterClientBuilder::new(seeds.iter().map(RedisUrl::expose))
            .connection_timeout(connect_timeout)
            .response_timeout(timeout)
            .retries(CLIENT_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(200);
        #[cfg(feature = "tls")]
        if let Some(path) = tls_ca
            && seeds[0].is_tls()
        {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(read_ca(path)?),
            });
        }
        let client = builder.build().map_err(|e| {
            // The client's own messages name no secret ("Cannot use
            // different password among initial nodes").
            Error::Config(format!("Redis Cluster seed nodes: {e}"))
        })?;
        let tuning = Tuning {
            timeout,
            connect_timeout,
        };
        let conn = RwLock::new(OnRuntime::new(Self::connection(&client, tuning)));
        Ok(ClusterBackend {
            shared: Arc::new(Shared {
                seeds: seeds.to_vec(),
                tls_ca: tls_ca.map(PathBuf::from),
                client,
                tuning,
                conn,
            }),
            sender: fastrand::u64(..),
        })
    }

    fn connection(client: &ClusterClient, tuning: Tuning) -> ClusterConnection {
        client.get_pending_async_connection_with_config(
            ClusterConfig::new()
                .set_connection_timeout(tuning.connect_timeout)
                .set_response_timeout(tuning.timeout),
        )
    }

    /// The seed URLs, passwords redacted by their `Display`.
    pub fn seeds(&self) -> &[RedisUrl] {
        &self.shared.seeds
    }

    fn conn(&self) -> ClusterConnection {
        self.shared.conn()
    }

    /// The primaries of the client's slot map, as `(host, port)`.
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        nodes(&mut self.conn(), MultipleNodeRoutingInfo::AllMasters).await
    }
}

impl Shared {
    /// The shared connection; a new one if the runtime of the old one is gone.
    fn conn(&self) -> ClusterConnection {
        {
            let guard = self.conn.read().expect("connection lock");
            if guard.is_alive() {
                return guard.value.clone();
            }
        }
        let mut guard = self.conn.write().expect("connection lock");
        if !guard.is_alive() {
            tracing::debug!("the runtime of the Redis Cluster connection is gone; reconnecting");
            *guard = OnRuntime::new(ClusterBackend::connection(&self.client, self.tuning));
        }
        guard.value.clone()
    }

    /// Where the event subscriber may listen: every node of the client's
    /// slot map, then the seeds (when the cluster cannot be asked).
    async fn subscriber_candidates(&self) -> Vec<Client> {
        let mut addresses = tokio::time::timeout(
            self.tuning.connect_timeout,
            nodes(&mut self.conn(), MultipleNodeRoutingInfo::AllNodes),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        addresses.sort();
        let template = &self.seeds[0];
        let mut urls: Vec<RedisUrl> = addresses
            .iter()
            .map(|(host, port)| at_address(template, host, *port))
            .collect();
        for seed in &self.seeds {
            if !urls.contains(seed) {
                urls.push(seed.clone());
            }
        }
        urls.iter()
            .filter_map(|url| client(url, self.tls_ca.as_deref()).ok())
            .collect()
    }
}

#[cfg(feature = "tls")]
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the TLS CA file {}: {e}",
            path.display()
        ))
    })
}

/// The nodes a multi-node routing reaches, from the client's slot map, as
/// `(host, port)`. Every one of them must answer a `PING`.
async fn nodes(
    conn: &mut ClusterConnection,
    which: MultipleNodeRoutingInfo,
) -> Result<Vec<(String, u16)>> {
    let reply = conn
        .route_command(redis::cmd("PING"), RoutingInfo::MultiNode((which, None)))
        .await?;
    let Value::Map(replies) = reply else {
        return Err(Error::Backend(format!(
            "unexpected reply to a PING of every node: {reply:?}"
        )));
    };
    replies
        .into_iter()
        .map(|(address, reply)| {
            if let Value::ServerError(e) = reply {
                return Err(Error::from(redis::RedisError::from(e)));
            }
            let address = match &address {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Value::SimpleString(s) => s.clone(),
                other => {
                    return Err(Error::Backend(format!("unexpected node address {other:?}")));
                }
            };
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                .ok_or_else(|| Error::Backend(format!("unexpected node address `{address}`")))?;
            Ok((host, port))
        })
        .collect()
}

/// `url` with its host and port replaced: scheme, user, password and
/// options kept.
fn at_address(url: &RedisUrl, host: &str, port: u16) -> RedisUrl {
    let url = url.expose();
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    RedisUrl::new(&format!(
        "{}{userinfo}{host}:{port}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    ))
}

/// The cluster connection with `SCAN` sent to one node: what `scan_delete`
/// walks. Everything else (the `UNLINK` of a batch) is routed by key, split
/// per slot by the client.
struct OnNode {
    conn: ClusterConnection,
    host: String,
    port: u16,
}

impl ConnectionLike for OnNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let is_scan = matches!(
            cmd.args_iter().next(),
            Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SCAN")
        );
        if is_scan {
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: self.host.clone(),
                port: self.port,
            });
            Box::pin(self.conn.route_command(cmd.clone(), node))
        } else {
            self.conn.req_packed_command(cmd)
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Backend for ClusterBackend {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { ops::get(&mut self.conn(), key).await })
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        // One key: the pipeline goes to its slot.
        Box::pin(async move { ops::get_with_ttl(&mut self.conn(), key).await })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        // The client splits a multi-slot MGET per slot and reassembles it.
        Box::pin(async move { ops::get_many(&mut self.conn(), keys).await })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let conn = &self.conn();
            // The member sets first, each in its own slot: a reader that
            // finds a member checks it against the entry, so a set never
            // needs to wait for its value, while a value listed nowhere
            // could escape a tag invalidation.
            let now = now_ms();
            try_join_all(writes.iter().flat_map(|w| {
                w.member_of.iter().map(move |set| {
                    let mut conn = conn.clone();
                    async move {
                        let ttl = millis(w.ttl);
                        let _: i64 = scripts::ADD_MEMBER
                            .key(set)
                            .arg(&w.key)
                            .arg(ttl)
                            .arg(now + ttl)
                            .arg(now)
                            .invoke_async(&mut conn)
                            .await?;
                        Ok::<_, Error>(())
                    }
                })
            }))
            .await?;
            match writes {
                [] => Ok(()),
                [w] => ops::set(&mut conn.clone(), &w.key, &w.value, w.ttl).await,
                _ => {
                    let mut by_slot: HashMap<Slot, redis::Pipeline> = HashMap::new();
                    for w in writes {
                        add_set(
                            by_slot
                                .entry(Slot::for_key(&w.key))
                                .or_insert_with(redis::pipe),
                            w,
                        );
                    }
                    try_join_all(by_slot.into_values().map(|pipe| {
                        let mut conn = conn.clone();
                        async move { Ok::<_, Error>(pipe.exec_async(&mut conn).await?) }
                    }))
                    .await?;
                    Ok(())
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
        Box::pin(async move { ops::set_nx(&mut self.conn(), key, &value, ttl).await })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::compare_and_swap(&mut self.conn(), key, expected, &swap).await })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        // The client splits a multi-slot UNLINK per slot and sums the counts.
        Box::pin(async move { ops::delete(&mut self.conn(), keys).await })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::exists(&mut self.conn(), key).await })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { ops::expire(&mut self.conn(), key, ttl).await })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move { ops::ttl(&mut self.conn(), key).await })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { ops::incr(&mut self.conn(), key, by, ttl).await })
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { ops::members(&mut self.conn(), set).await })
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { ops::remove_members(&mut self.conn(), set, members).await })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let primaries = self.primaries().await?;
            let conn = self.conn();
            let deleted = try_join_all(primaries.into_iter().map(|(host, port)| {
                let label = format!("{host}:{port}");
                let mut node = OnNode {
                    conn: conn.clone(),
                    host,
                    port,
                };
                async move { scan_delete(&mut node, pattern, &label).await }
            }))
            .await?;
            Ok(deleted.into_iter().sum())
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        // A classic PUBLISH is broadcast to every node of the cluster.
        Box::pin(async move { ops::publish(&mut self.conn(), channel, self.sender, event).await })
    }

    fn subscribe(&self, channel: &str) -> Option<EventStream> {
        let shared = self.shared.clone();
        let candidates: Candidates = Arc::new(move || {
            let shared = shared.clone();
            Box::pin(async move { shared.subscriber_candidates().await })
        });
        Some(spawn_subscriber(
            candidates,
            channel.to_owned(),
            self.sender,
            self.shared.tuning.connect_timeout,
        ))
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        // Routed to every primary: the cluster answers when all of them do.
        Box::pin(async move { Ok(redis::cmd("PING").query_async(&mut self.conn()).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_scheme_credentials_and_options() {
        let at = |url: &str, host: &str, port| at_address(&RedisUrl::new(url), host, port);
        assert_eq!(
            at("redis://127.0.0.1:7000", "10.0.0.2", 7001).expose(),
            "redis://10.0.0.2:7001"
        );
        assert_eq!(
            at(
                "rediss://user:pw@seed.example:6380/0?protocol=resp3",
                "n2",
                6390
            )
            .expose(),
            "rediss://user:pw@n2:6390/0?protocol=resp3"
        );
        assert_eq!(
            at("redis://:p@h", "::1", 7000).expose(),
            "redis://:p@[::1]:7000"
        );
    }
}
