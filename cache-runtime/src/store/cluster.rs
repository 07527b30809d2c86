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
//! slot of its own. Each operation of the [`Store`] trait maps to the
//! cluster as follows:
//!
//! | operation | keys | on a cluster |
//! |---|---|---|
//! | `get`, `set_nx` and `compare_and_swap` without member sets (`update`, leases, locks), `incr` (counters, namespace generations), `expire`, `ttl`, `members` | one | one request to the key's primary; atomic as on one Redis |
//! | `write` of plain values (`set`, `set_many`, cached results) | one per value | one pipeline per slot, all slots at once |
//! | `write`, `set_nx` or `compare_and_swap` of an entry with tags or indexes | the value and one sorted set per tag or index, in different slots | the value first, then each set (a script on the set's own slot) |
//! | `get_many` | many | per primary, one read-only script that reads that node's keys across their slots (Redis 7; one `MGET` per slot, pipelined, before 7 or where scripts are refused), all primaries at once, reassembled in order |
//! | `delete` (also of a tag's entries) | many | per primary, one pipeline of one `UNLINK` per slot, all primaries at once |
//! | `delete_matching` (pattern invalidation, `Cache::clear`) | a glob | `SCAN` on every primary of the client's slot map, each batch `UNLINK`ed per slot |
//!
//! What this costs: an entry with tags or indexes is written in two round
//! trips (the value, then its sets, concurrently), and is not atomic as a
//! whole. Readers allow for it: an index read checks every member against
//! the entry, which lists its indexes, so it never returns an entry whose
//! write is under way; a tag invalidation removes the members it read from
//! the set before deleting their entries, so a write racing it is either
//! deleted or stays listed for the next invalidation, never a live entry
//! listed nowhere. If the sets cannot be written, the value is taken back.
//! A `set_many` of N keys is up to N requests, spread over the primaries
//! and pipelined on each node's connection; a `get_many` is one request
//! per primary. A pattern invalidation
//! costs one `SCAN` pass per primary, whatever the pattern.
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
//! # A connection that stops answering, or misses a failover
//!
//! The `redis` crate's cluster connection (1.8, and 2.0-rc) can wedge for
//! good when a node dies under concurrent load: its slot refresh waits for
//! a lock that an in-flight request was granted but is never polled again
//! while the refresh runs, so every later request waits until it times out.
//! The backend watches for that signature (three requests in a row without
//! a reply, and no reply of any kind, not even an error, for longer than the
//! operation timeout) and replaces the connection with a fresh one from the
//! seed nodes, at most once per two timeouts. A cluster that is merely slow
//! or down costs a reconnection per such window, nothing more.
//!
//! After a failover the client keeps serving the moved slots through the
//! promoted replica without refreshing its slot map, so a request sent to
//! every primary (`PING` for `health()`, the pattern scan) still asks the
//! dead one. Such a request that cannot reach a node is retried once on a
//! fresh connection, whose slot map is read anew.
//!
//! Replication to the replicas is asynchronous: a write acknowledged by a
//! primary that dies before passing it on is lost in the failover. For a
//! cache that means a miss (an entry recomputed), or an invalidation undone
//! (the entry is back until its TTL), never an error.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Client, Cmd, RedisFuture, Value};

use super::liveness::PerRuntime;
use super::protocol::{self, Condition, Tuning, ops, scan_delete, scripts};
use super::{BoxFuture, KeyTtl, Store, Swap, Write};
use crate::clock::{millis, system_ms as now_ms};
use crate::config::RedisUrl;
use crate::error::{Error, Result};

/// Retries of one request inside the cluster client (redirections,
/// reconnections, `TRYAGAIN`), all within the operation's timeout.
const CLIENT_RETRIES: u32 = 6;

/// Requests in a row that got no reply (timed out, or abandoned by the
/// caller's timeout) before the connection may be judged wedged (see the
/// module docs).
const WEDGE_TIMEOUTS: u32 = 3;

/// Reads the keys in `ARGV`, all served by the node it runs on, whatever
/// their slots: one command for a node's share of a `get_many`, where
/// Redis Cluster allows `MGET` only within one slot (and 100 keys fall in
/// about 100 slots). Redis 7's `allow-cross-slot-keys` flag permits it; the
/// keys are not declared (a command's declared keys must share a slot), so
/// a key the node does not serve (a stale slot map) is an error, never a
/// wrong answer. Read-only: `no-writes`.
const GET_ACROSS_SLOTS: &str = "#!lua flags=allow-cross-slot-keys,no-writes
local out = {}
for i, key in ipairs(ARGV) do out[i] = redis.call('GET', key) end
return out";

/// Keys per script call: a node runs a script to its end before anything
/// else, so a batch of many thousands is split.
const SCRIPT_KEYS: usize = 256;

/// Groups of a batch's positions, each with how many replies answer it.
type Answered = Vec<(Vec<usize>, usize)>;

/// Adapts a per-slot `add(pipe, positions) -> replies` for
/// [`ClusterStore::per_node`].
fn each_slot(
    add: impl Fn(&mut redis::Pipeline, &[usize]) -> usize,
) -> impl Fn(&mut redis::Pipeline, &[(u16, usize)]) -> Answered {
    move |pipe, keys| {
        keys.chunk_by(|a, b| a.0 == b.0)
            .map(|slot| {
                let positions = positions(slot);
                let n = add(pipe, &positions);
                (positions, n)
            })
            .collect()
    }
}

/// The batch positions of `(slot, position)` pairs.
fn positions(keys: &[(u16, usize)]) -> Vec<usize> {
    keys.iter().map(|&(_, i)| i).collect()
}

/// A Redis Cluster.
pub(crate) struct ClusterStore {
    shared: Arc<Shared>,
}

/// What the backend and its event subscriber share.
pub(crate) struct Shared {
    seeds: Vec<RedisUrl>,
    tls_ca: Option<PathBuf>,
    client: ClusterClient,
    tuning: Tuning,
    conns: PerRuntime<ClusterConnection>,
    watch: Watch,
    /// Which primary serves each slot, for batches grouped by node.
    slots: std::sync::RwLock<Option<SlotMap>>,
    /// Until when (`now_ms()`) reads across slots take one `MGET` per slot,
    /// after a server refused [`GET_ACROSS_SLOTS`].
    scripts_off_until: AtomicU64,
}

/// The primary of every slot range, read with `CLUSTER SLOTS`.
#[derive(Debug)]
struct SlotMap {
    /// `(first slot, last slot, primary address)`, sorted.
    ranges: Vec<(u16, u16, String)>,
    read_at: std::time::Instant,
}

impl SlotMap {
    /// How long a map is trusted before it is read again.
    const FRESH_FOR: Duration = Duration::from_secs(5);

    fn node(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|(_, last, _)| *last < slot);
        self.ranges
            .get(i)
            .filter(|(first, _, _)| *first <= slot)
            .map(|(_, _, node)| node.as_str())
    }
}

/// The slot of a key, as the cluster computes it (hash tags included).
pub(crate) fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

/// Keys grouped for a batch: per node, a slot to route by, and its keys'
/// slots and positions in the batch, sorted by slot (in batch order within
/// a slot).
type ByNode = Vec<(u16, Vec<(u16, usize)>)>;

/// What the wedge detection watches: replies, and requests without one.
#[derive(Debug, Default)]
struct Watch {
    /// `now_ms()` of the last reply (a value or an error: anything but a
    /// timeout), or of the last replacement.
    last_reply: AtomicU64,
    /// Requests since then that got no reply.
    timeouts: AtomicU32,
    /// `now_ms()` of the last replacement.
    replaced_at: AtomicU64,
}

impl fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterStore")
            .field("seeds", &self.shared.seeds)
            .finish()
    }
}

impl ClusterStore {
    /// A store for the cluster reached through `seeds`, connecting lazily.
    pub(crate) fn new(
        seeds: &[RedisUrl],
        tls_ca: Option<&std::path::Path>,
        tuning: Tuning,
    ) -> Result<Self> {
        let Tuning {
            timeout,
            connect_timeout,
        } = tuning;
        if seeds.is_empty() {
            return Err(Error::Config(
                "a cluster needs at least one node URL".into(),
            ));
        }
        for url in seeds {
            url.validate()?;
        }
        #[cfg(feature = "tls")]
        protocol::install_crypto_provider();
        let builder = ClusterClientBuilder::new(seeds.iter().map(RedisUrl::expose))
            .connection_timeout(connect_timeout)
            .response_timeout(timeout)
            .retries(CLIENT_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(200);
        #[cfg(feature = "tls")]
        let builder = match tls_ca {
            Some(path) if seeds[0].is_tls() => builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(read_ca(path)?),
            }),
            _ => builder,
        };
        let client = builder.build().map_err(|e| {
            // The client's own messages name no secret ("Cannot use
            // different password among initial nodes").
            Error::Config(format!("Redis Cluster seed nodes: {e}"))
        })?;
        Ok(ClusterStore {
            shared: Arc::new(Shared {
                seeds: seeds.to_vec(),
                tls_ca: tls_ca.map(PathBuf::from),
                client,
                tuning,
                conns: PerRuntime::default(),
                slots: std::sync::RwLock::new(None),
                scripts_off_until: AtomicU64::new(0),
                watch: Watch {
                    last_reply: AtomicU64::new(now_ms()),
                    timeouts: AtomicU32::new(0),
                    replaced_at: AtomicU64::new(0),
                },
            }),
        })
    }

    fn connection(client: &ClusterClient, tuning: Tuning) -> ClusterConnection {
        client.get_pending_async_connection_with_config(
            ClusterConfig::new()
                .set_connection_timeout(tuning.connect_timeout)
                .set_response_timeout(tuning.timeout),
        )
    }

    /// Where the event bus may listen, and the primaries to track.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Publishes a message on `channel`. A classic `PUBLISH` is broadcast to
    /// every node of the cluster, so any node will do: a random one, not
    /// the channel's slot (which would make one primary the hot spot, and a
    /// single point of failure, of every invalidation message).
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(message);
        self.call(move |mut conn| async move {
            conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                .await?;
            Ok(())
        })
        .await
    }

    /// Runs `request` on the shared connection, watching for a reply.
    fn call<'a, T, F, Fut>(
        &'a self,
        request: F,
    ) -> impl std::future::Future<Output = Result<T>> + 'a
    where
        T: 'a,
        F: FnOnce(ClusterConnection) -> Fut + 'a,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        self.shared.call(request)
    }

    /// The keys of a batch grouped by the primary that serves them, from a
    /// fresh slot map; `None` if the map cannot be read.
    async fn by_node(&self, keys: &[String]) -> Option<ByNode> {
        let stale = self
            .shared
            .slots
            .read()
            .expect("slot map")
            .as_ref()
            .is_none_or(|m| m.read_at.elapsed() > SlotMap::FRESH_FOR);
        if stale {
            let map = self.read_slot_map().await.ok()?;
            *self.shared.slots.write().expect("slot map") = Some(map);
        }
        let guard = self.shared.slots.read().expect("slot map");
        let map = guard.as_ref()?;
        // Per node: its address, a slot to route by, its keys.
        type Node<'m> = (&'m str, u16, Vec<(u16, usize)>);
        let mut nodes: Vec<Node<'_>> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = key_slot(key);
            let node = map.node(slot)?;
            let at = match nodes.iter().position(|(n, _, _)| *n == node) {
                Some(at) => at,
                None => {
                    nodes.push((node, slot, Vec::new()));
                    nodes.len() - 1
                }
            };
            nodes[at].2.push((slot, i));
        }
        Some(
            nodes
                .into_iter()
                .map(|(_, route, mut keys)| {
                    // Stable: a slot's keys stay in batch order.
                    keys.sort_by_key(|&(slot, _)| slot);
                    (route, keys)
                })
                .collect(),
        )
    }

    async fn read_slot_map(&self) -> Result<SlotMap> {
        let reply = self
            .call(|mut conn| async move {
                Ok(conn
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?)
            })
            .await?;
        let bad = || Error::Backend("unexpected CLUSTER SLOTS reply".into());
        let Value::Array(ranges) = reply else {
            return Err(bad());
        };
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(bad());
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad());
            };
            let host = match primary.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => return Err(bad()),
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                return Err(bad());
            };
            out.push((*first as u16, *last as u16, format!("{host}:{port}")));
        }
        out.sort();
        Ok(SlotMap {
            ranges: out,
            read_at: std::time::Instant::now(),
        })
    }

    /// Runs a batch with each node's slots in one pipelined round trip, all
    /// nodes at once. `add(pipe, keys)` adds the commands for one node's
    /// keys (their slots and positions in the batch, sorted by slot) and returns
    /// the groups its replies answer: positions, and how many replies (see
    /// [`each_slot`]). Returns each group's positions and replies; `None`
    /// when the batch must take the client's own per-slot path instead (no
    /// slot map, or a node answered `MOVED`: the map is read again next
    /// time).
    async fn per_node(
        &self,
        keys: &[String],
        add: impl Fn(&mut redis::Pipeline, &[(u16, usize)]) -> Answered,
    ) -> Option<Vec<(Vec<usize>, Vec<Value>)>> {
        match self.try_per_node(keys, add).await? {
            Ok(replies) => Some(replies),
            Err(e) => {
                self.forget_slot_map(&e);
                None
            }
        }
    }

    /// A per-node batch failed: its slot map may be stale.
    fn forget_slot_map(&self, e: &Error) {
        tracing::debug!(error = %e, "a per-node batch failed; using per-slot requests");
        *self.shared.slots.write().expect("slot map") = None;
    }

    /// [`ClusterStore::per_node`], with the failure returned; `None` if
    /// there is no slot map.
    async fn try_per_node(
        &self,
        keys: &[String],
        add: impl Fn(&mut redis::Pipeline, &[(u16, usize)]) -> Answered,
    ) -> Option<Result<Vec<(Vec<usize>, Vec<Value>)>>> {
        let groups = self.by_node(keys).await?;
        let add = &add;
        let replies = self
            .call(|conn| async move {
                try_join_all(groups.into_iter().map(|(route, keys)| {
                    let mut conn = conn.clone();
                    let mut pipe = redis::pipe();
                    let answered = add(&mut pipe, &keys);
                    async move {
                        let node = SingleNodeRoutingInfo::SpecificNode(
                            redis::cluster_routing::Route::new(
                                route,
                                redis::cluster_routing::SlotAddr::Master,
                            ),
                        );
                        let total = answered.iter().map(|(_, n)| n).sum();
                        // A command's error comes back as a value in its
                        // place: the batch fails with it (a stale map's
                        // `MOVED`, a refused script, a full server).
                        let mut replies = conn
                            .route_pipeline(pipe, 0, total, node)
                            .await?
                            .into_iter()
                            .map(|reply| match reply {
                                Value::ServerError(e) => {
                                    Err(Error::from(redis::RedisError::from(e)))
                                }
                                reply => Ok(reply),
                            })
                            .collect::<Result<Vec<_>>>()?
                            .into_iter();
                        Ok::<_, Error>(
                            answered
                                .into_iter()
                                .map(|(positions, n)| {
                                    (positions, replies.by_ref().take(n).collect())
                                })
                                .collect::<Vec<_>>(),
                        )
                    }
                }))
                .await
            })
            .await;
        Some(replies.map(|per_node| per_node.into_iter().flatten().collect()))
    }

    /// Reads many keys with one script per node (see [`GET_ACROSS_SLOTS`]),
    /// or with one `MGET` per slot where scripts are refused; `None` when
    /// the client's per-slot path must serve.
    async fn get_per_node(&self, keys: &[String]) -> Option<Result<Vec<Option<Bytes>>>> {
        let names = |positions: &[usize]| positions.iter().map(|&i| &keys[i]).collect::<Vec<_>>();
        let replies = if self.shared.scripts_off_until.load(Ordering::Relaxed) <= now_ms() {
            let by_script = |pipe: &mut redis::Pipeline, node_keys: &[(u16, usize)]| {
                node_keys
                    .chunks(SCRIPT_KEYS)
                    .map(|chunk| {
                        let positions = positions(chunk);
                        pipe.cmd("EVAL")
                            .arg(GET_ACROSS_SLOTS)
                            .arg(0)
                            .arg(names(&positions));
                        (positions, 1)
                    })
                    .collect()
            };
            match self.try_per_node(keys, by_script).await? {
                Ok(replies) => Some(replies),
                // Not a refusal of the script: a key not on the node the
                // map says (a stale map), a timeout, a lost node. The
                // client's per-slot path retries and redirects.
                Err(e)
                    if matches!(e, Error::Timeout { .. } | Error::Unavailable(_))
                        || e.to_string().contains("non local key") =>
                {
                    self.forget_slot_map(&e);
                    return None;
                }
                // Refused: a server before 7.0 (no script flags), an ACL
                // without `EVAL`, scripting disabled, a busy script. One
                // `MGET` per slot for a while.
                Err(e) => {
                    tracing::debug!(error = %e, "cross-slot reads refused; one MGET per slot for a minute");
                    self.shared
                        .scripts_off_until
                        .store(now_ms() + 60_000, Ordering::Relaxed);
                    None
                }
            }
        } else {
            None
        };
        let replies = match replies {
            Some(replies) => replies,
            None => {
                let mget = each_slot(|pipe, positions| {
                    pipe.cmd("MGET").arg(names(positions));
                    1
                });
                self.per_node(keys, mget).await?
            }
        };
        let mut out = vec![None; keys.len()];
        for (positions, mut reply) in replies {
            let values: Vec<Option<Vec<u8>>> =
                match redis::FromRedisValue::from_redis_value(reply.pop().unwrap_or(Value::Nil)) {
                    Ok(values) => values,
                    Err(e) => return Some(Err(Error::Backend(format!("MGET reply: {e}")))),
                };
            for (i, value) in positions.into_iter().zip(values) {
                out[i] = value.map(Bytes::from);
            }
        }
        Some(Ok(out))
    }

    /// Writes values through the client's per-slot routing (one pipeline
    /// per slot), then their member sets.
    async fn write_per_slot(&self, writes: &[Write]) -> Result<()> {
        self.call(move |conn| async move {
            // The values first, one pipeline per slot.
            match writes {
                [] => return Ok(()),
                [w] => {
                    ops::write_if(&mut conn.clone(), w, Condition::Always, &[]).await?;
                }
                _ => {
                    let mut by_slot: HashMap<Slot, redis::Pipeline> = HashMap::new();
                    for w in writes {
                        let pipe = by_slot
                            .entry(Slot::for_key(&w.key))
                            .or_insert_with(redis::pipe);
                        protocol::add_write(pipe, w, &[]);
                    }
                    try_join_all(by_slot.into_values().map(|pipe| {
                        let mut conn = conn.clone();
                        async move { Ok::<_, Error>(pipe.exec_async(&mut conn).await?) }
                    }))
                    .await?;
                }
            }
            list(&conn, writes.iter()).await
        })
        .await
    }

    /// Runs a request that needs every node of the client's slot map (a
    /// fan-out). If one of them cannot be reached, the map may be stale:
    /// after a failover the client keeps serving the moved slots through
    /// the promoted replica without refreshing its map, so a fan-out still
    /// asks the dead primary. Then it retries once on a fresh connection.
    async fn fan_out<T, F, Fut>(&self, request: F) -> Result<T>
    where
        F: Fn(ClusterConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match self.shared.call(&request).await {
            Err(Error::Unavailable(_)) => {
                self.shared
                    .replace("a node of the slot map cannot be reached");
                self.shared.call(&request).await
            }
            other => other,
        }
    }
}

impl Shared {
    /// The connection of the calling runtime.
    fn conn(&self) -> Result<ClusterConnection> {
        self.conns
            .get(|| Ok(ClusterStore::connection(&self.client, self.tuning)))
    }

    /// Counts a request that got no reply, and replaces the connection if it
    /// looks wedged: several such requests in a row, and no reply at all
    /// for longer than one operation's timeout.
    fn unanswered(&self) {
        let timeouts = self.watch.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        let silent_ms = now_ms().saturating_sub(self.watch.last_reply.load(Ordering::Relaxed));
        if timeouts >= WEDGE_TIMEOUTS
            && silent_ms > millis(self.tuning.timeout)
            // The connection's driver is spawned on the current runtime.
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.replace(&format!(
                "{timeouts} requests without a reply, none for {silent_ms} ms"
            ));
        }
    }

    /// The least time between two replacements of the connection.
    fn replace_gap_ms(&self) -> u64 {
        2 * millis(self.tuning.timeout)
    }

    /// Replaces the connection by a fresh one from the seed nodes (with a
    /// fresh slot map), unless it was replaced less than a gap ago.
    fn replace(&self, why: &str) {
        let now = now_ms();
        let last = self.watch.replaced_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.replace_gap_ms()
            || self
                .watch
                .replaced_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::warn!(why, "replacing the Redis Cluster connection");
        let fresh = ClusterStore::connection(&self.client, self.tuning);
        if self.conns.replace(fresh).is_err() {
            return;
        }
        self.watch.last_reply.store(now, Ordering::Relaxed);
        self.watch.timeouts.store(0, Ordering::Relaxed);
    }

    /// Runs `request` on the shared connection, watching for a reply:
    /// anything but a timeout is one, and a request abandoned by its
    /// caller (the operation's timeout) is not.
    async fn call<T, F, Fut>(&self, request: F) -> Result<T>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        struct Unanswered<'a>(Option<&'a Shared>);
        impl Drop for Unanswered<'_> {
            fn drop(&mut self) {
                if let Some(shared) = self.0 {
                    shared.unanswered();
                }
            }
        }
        let conn = self.conn()?;
        let mut unanswered = Unanswered(Some(self));
        let outcome = request(conn).await;
        if !matches!(outcome, Err(Error::Timeout { .. })) {
            unanswered.0 = None;
            self.watch.last_reply.store(now_ms(), Ordering::Relaxed);
            self.watch.timeouts.store(0, Ordering::Relaxed);
        }
        outcome
    }

    /// Clients for the nodes a routing reaches, from the slot map: the
    /// primaries, whose keys the event bus tracks.
    pub(crate) async fn node_clients(&self, which: MultipleNodeRoutingInfo) -> Result<Vec<Client>> {
        let mut addresses = tokio::time::timeout(
            self.tuning.connect_timeout,
            self.call(|mut conn| async move { nodes(&mut conn, which).await }),
        )
        .await
        .map_err(|_| Error::Timeout {
            op: "cluster nodes",
            after: self.tuning.connect_timeout,
        })??;
        addresses.sort();
        let template = &self.seeds[0];
        addresses
            .iter()
            .map(|(host, port)| {
                protocol::client(&at_address(template, host, *port), self.tls_ca.as_deref())
            })
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

impl Store for ClusterStore {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.call(move |mut conn| async move { ops::get(&mut conn, key).await }))
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        // One key: the pipeline goes to its slot.
        Box::pin(self.call(move |mut conn| async move { ops::get_with_ttl(&mut conn, key).await }))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            if keys.len() > 1
                && let Some(read) = self.get_per_node(keys).await
            {
                return read;
            }
            // The client splits a multi-slot MGET per slot and reassembles it.
            self.call(move |mut conn| async move { ops::get_many(&mut conn, keys).await })
                .await
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if writes.len() > 1 {
                let keys: Vec<String> = writes.iter().map(|w| w.key.clone()).collect();
                let written = self
                    .per_node(
                        &keys,
                        each_slot(|pipe, positions| {
                            for &i in positions {
                                pipe.cmd("SET")
                                    .arg(&writes[i].key)
                                    .arg(writes[i].value.as_ref())
                                    .arg("PX")
                                    .arg(millis(writes[i].ttl));
                            }
                            positions.len()
                        }),
                    )
                    .await;
                if written.is_some() {
                    return self
                        .call(move |conn| async move { list(&conn, writes.iter()).await })
                        .await;
                }
            }
            self.write_per_slot(writes).await
        })
    }
    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.call(move |conn| async move {
            if !ops::write_if(&mut conn.clone(), write, Condition::Absent, &[]).await? {
                return Ok(false);
            }
            list(&conn, std::iter::once(write)).await?;
            Ok(true)
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.call(move |conn| async move {
            let Swap::Set {
                value,
                ttl,
                member_of,
            } = swap
            else {
                return ops::swap(&mut conn.clone(), key, expected, &swap).await;
            };
            let w = Write {
                key: key.to_owned(),
                value,
                ttl,
                member_of,
            };
            if !ops::write_if(&mut conn.clone(), &w, Condition::Equal(expected), &[]).await? {
                return Ok(false);
            }
            list(&conn, std::iter::once(&w)).await?;
            Ok(true)
        }))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            if keys.len() > 1
                && let Some(replies) = self
                    .per_node(
                        keys,
                        each_slot(|pipe, positions| {
                            pipe.cmd("UNLINK")
                                .arg(positions.iter().map(|&i| &keys[i]).collect::<Vec<_>>());
                            1
                        }),
                    )
                    .await
            {
                let mut deleted = 0;
                for (_, replies) in replies {
                    for reply in replies {
                        deleted += <u64 as redis::FromRedisValue>::from_redis_value(reply)
                            .map_err(|e| Error::Backend(format!("UNLINK reply: {e}")))?;
                    }
                }
                return Ok(deleted);
            }
            // The client splits a multi-slot UNLINK per slot and sums the counts.
            self.call(move |mut conn| async move { ops::delete(&mut conn, keys).await })
                .await
        })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.call(move |mut conn| async move { ops::expire(&mut conn, key, ttl).await }))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(self.call(move |mut conn| async move { ops::ttl(&mut conn, key).await }))
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.call(move |mut conn| async move { ops::incr(&mut conn, key, by, ttl).await }))
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.call(move |mut conn| async move { ops::members(&mut conn, set).await }))
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.call(move |mut conn| async move {
            ops::remove_members(&mut conn, set, members).await
        }))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.fan_out(move |conn| async move {
            let primaries = nodes(&mut conn.clone(), MultipleNodeRoutingInfo::AllMasters).await?;
            let deleted = try_join_all(primaries.into_iter().map(|(host, port)| {
                let label = format!("{host}:{port}");
                let mut node = OnNode {
                    conn: conn.clone(),
                    host,
                    port,
                };
                let timeout = self.shared.tuning.timeout;
                async move { scan_delete(&mut node, pattern, &label, timeout).await }
            }))
            .await?;
            Ok(deleted.into_iter().sum())
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        // Routed to every primary: the cluster answers when all of them do.
        Box::pin(self.fan_out(|mut conn| async move {
            Ok(redis::cmd("PING").query_async(&mut conn).await?)
        }))
    }
}

/// Lists written values in their member sets, each set in its own slot,
/// after the values: in this order a tag invalidation running meanwhile
/// either sees an entry listed (and deletes it) or leaves it listed for the
/// next one; the other order could leave a live entry listed nowhere. A
/// reader of an index checks each member against the entry, so it never
/// returns one whose write is under way. If the sets cannot be written, the
/// values are taken back: an entry its tags do not list would escape their
/// invalidation.
async fn list<'w>(
    conn: &ClusterConnection,
    writes: impl Iterator<Item = &'w Write> + Clone,
) -> Result<()> {
    let now = now_ms();
    let listed = try_join_all(writes.clone().flat_map(|w| {
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
    .await;
    if let Err(e) = listed {
        let unlisted: Vec<String> = writes
            .filter(|w| !w.member_of.is_empty())
            .map(|w| w.key.clone())
            .collect();
        let _ = ops::delete(&mut conn.clone(), &unlisted).await;
        return Err(e);
    }
    Ok(())
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
