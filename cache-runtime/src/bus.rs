//! The event bus: how a process hears that what it holds in process (tier
//! copies, process-scope entries, namespace generations) has changed.
//!
//! On Redis, one dedicated RESP3 connection per primary does two things:
//!
//! * server-assisted client-side caching, `CLIENT TRACKING ON BCAST` on the
//!   key prefix: a write to a tracked key by ANY client (another cachekit
//!   process, `redis-cli`, a Python service) pushes an invalidation within
//!   milliseconds, and the process drops its copies of that key;
//! * cachekit's own events over pub/sub, for what tracking cannot see:
//!   process-scope entries (never in Redis), pattern and tag invalidations
//!   of them, and namespace generations (announced, so that processes need
//!   not wait for a tracked read).
//!
//! The listener runs on a thread of its own with its own small runtime, so
//! that it keeps listening whatever the application's runtimes do. When a
//! connection is lost it reports [`Event::Deaf`] (in-process copies stop
//! serving), reconnects with backoff, and reports [`Event::Hearing`] once
//! tracking is on again (copies start empty). It never lets a copy serve
//! from a period when it could not hear. A heartbeat `PING` each second
//! catches a connection that died silently.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::store::BoxFuture;
use crate::store::cluster::ClusterStore;
use crate::store::redis::RedisStore;

/// What changed, or whether the process can hear about changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// These store keys were invalidated (by cachekit, here or in another
    /// process).
    Keys(Vec<String>),
    /// These store keys were written or deleted by some client (a tracking
    /// message: the client may be this process, writing its own entries).
    Tracked(Vec<String>),
    /// Every key matching this store pattern was deleted.
    Pattern(String),
    /// The entries recorded under this tag were invalidated.
    Tag(String),
    /// The namespace's generation changed.
    Generation { namespace: String, generation: u64 },
    /// Every key may have changed (`FLUSHALL`, or a connection that
    /// reconnected after missing messages).
    Flush,
    /// The process hears about changes (again): in-process copies start
    /// empty and may serve.
    Hearing,
    /// The process cannot hear about changes: in-process copies must not
    /// serve.
    Deaf,
}

/// Encodes an event as a pub/sub message from `sender`.
pub(crate) fn encode(sender: u64, event: &Event) -> Option<String> {
    let mut out = format!("{sender:016x}\n");
    match event {
        Event::Keys(keys) => {
            out.push('k');
            for key in keys {
                out.push('\n');
                out.push_str(key);
            }
        }
        Event::Pattern(pattern) => {
            out.push_str("p\n");
            out.push_str(pattern);
        }
        Event::Tag(tag) => {
            out.push_str("t\n");
            out.push_str(tag);
        }
        Event::Generation {
            namespace,
            generation,
        } => out.push_str(&format!("g\n{namespace}\n{generation}")),
        Event::Tracked(_) | Event::Flush | Event::Hearing | Event::Deaf => return None,
    }
    Some(out)
}

/// Decodes a pub/sub message: its sender and event.
pub(crate) fn decode(message: &str) -> Option<(u64, Event)> {
    let (sender, rest) = message.split_once('\n')?;
    let sender = u64::from_str_radix(sender, 16).ok()?;
    let mut lines = rest.split('\n');
    let event = match lines.next()? {
        "k" => Event::Keys(lines.map(str::to_owned).collect()),
        "p" => Event::Pattern(lines.next()?.to_owned()),
        "t" => Event::Tag(lines.next()?.to_owned()),
        "g" => Event::Generation {
            namespace: lines.next()?.to_owned(),
            generation: lines.next()?.parse().ok()?,
        },
        _ => return None,
    };
    Some((sender, event))
}

/// Where the bus connects: one Redis, or the primaries of a cluster.
#[derive(Clone)]
pub(crate) enum Nodes {
    Redis(Arc<RedisStore>),
    Cluster(Arc<ClusterStore>),
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nodes::Redis(_) => f.write_str("Redis"),
            Nodes::Cluster(_) => f.write_str("Cluster"),
        }
    }
}

impl Nodes {
    /// Clients for the nodes whose keys to track.
    async fn tracked(&self) -> Result<Vec<Client>> {
        match self {
            Nodes::Redis(store) => Ok(vec![store.client().clone()]),
            Nodes::Cluster(store) => {
                store
                    .shared()
                    .node_clients(redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters)
                    .await
            }
        }
    }
}

/// A RESP3 client for the node of `client`, same address and credentials.
fn resp3(client: &Client) -> Result<Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings))
        .map_err(|e| Error::Config(format!("event bus: {:?}", e.kind())))
}

/// The bus of a Redis or cluster store.
#[derive(Debug)]
pub(crate) struct Bus {
    nodes: Nodes,
    channel: String,
    /// The key prefix tracked (every key when empty).
    prefix: String,
    /// Our id in messages, to skip our own.
    sender: u64,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Bus {
    pub(crate) fn new(
        nodes: Nodes,
        channel: String,
        prefix: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Self {
        Bus {
            nodes,
            channel,
            prefix,
            sender: fastrand::u64(..),
            connect_timeout,
            timeout,
        }
    }

    /// Tells the other processes about `event`.
    pub(crate) fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(message) = encode(self.sender, event) else {
                return Ok(());
            };
            let sent = tokio::time::timeout(self.timeout, async {
                match &self.nodes {
                    Nodes::Redis(store) => store.publish(&self.channel, &message).await,
                    Nodes::Cluster(store) => store.publish(&self.channel, &message).await,
                }
            })
            .await;
            sent.unwrap_or(Err(Error::Timeout {
                op: "publish",
                after: self.timeout,
            }))
        })
    }

    /// Starts listening on a thread of its own; `on_event` gets every event,
    /// starting with [`Event::Hearing`] once the process hears. Dropping the
    /// returned handle stops the listener.
    pub(crate) fn listen(
        self: &Arc<Self>,
        on_event: impl Fn(Event) + Send + Sync + 'static,
    ) -> Result<Listener> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bus = self.clone();
        let thread = std::thread::Builder::new()
            .name("cachekit-bus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cachekit's event bus cannot start its runtime; in-process copies stay off");
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = bus.run(&on_event) => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| Error::Config(format!("cannot start the event bus thread: {e}")))?;
        Ok(Listener {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Listens, session after session, until stopped.
    async fn run(&self, on_event: &(impl Fn(Event) + Send + Sync)) {
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.session(on_event).await {
                Ok(()) => {
                    backoff = Duration::from_millis(20);
                    tracing::debug!(channel = %self.channel, "cachekit event bus lost its connection; reconnecting");
                }
                Err(e) => {
                    tracing::debug!(channel = %self.channel, error = %e, "cachekit event bus cannot listen yet");
                }
            }
            on_event(Event::Deaf);
            tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One session: connect to every tracked node, turn tracking on,
    /// subscribe, then forward pushes until a connection is lost.
    async fn session(&self, on_event: &(impl Fn(Event) + Send + Sync)) -> Result<()> {
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let nodes = tokio::time::timeout(self.connect_timeout, self.nodes.tracked())
            .await
            .map_err(|_| Error::Timeout {
                op: "bus nodes",
                after: self.connect_timeout,
            })??;
        let mut conns: Vec<MultiplexedConnection> = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.timeout.max(self.connect_timeout)))
                .set_push_sender(push_tx.clone());
            let mut conn = resp3(node)?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Named, so that operators (and tests) can tell it apart.
            let () = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("cachekit-bus")
                .query_async(&mut conn)
                .await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("BCAST");
            if !self.prefix.is_empty() {
                tracking.arg("PREFIX").arg(&self.prefix);
            }
            let () = tracking.query_async(&mut conn).await?;
            if i == 0 {
                conn.subscribe(&self.channel).await?;
            }
            conns.push(conn);
        }
        drop(push_tx);
        tracing::debug!(channel = %self.channel, nodes = conns.len(), "cachekit event bus hears");
        on_event(Event::Hearing);
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        beat.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return Ok(()) };
                    if !self.forward(push, on_event) {
                        return Ok(());
                    }
                }
                _ = beat.tick() => {
                    for conn in &mut conns {
                        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(conn).await;
                        if pong.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Hands one push to `on_event`. Returns `false` if the connection is
    /// gone.
    fn forward(&self, push: PushInfo, on_event: &impl Fn(Event)) -> bool {
        match push.kind {
            PushKind::Disconnection => return false,
            PushKind::Invalidate => match push.data.into_iter().next() {
                Some(Value::Array(keys)) => {
                    let keys: Vec<String> = keys
                        .into_iter()
                        .filter_map(|k| match k {
                            Value::BulkString(b) => String::from_utf8(b).ok(),
                            Value::SimpleString(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                    on_event(Event::Tracked(keys));
                }
                // A null: the server flushed (FLUSHALL/FLUSHDB).
                _ => on_event(Event::Flush),
            },
            PushKind::Message => {
                let payload = push.data.into_iter().nth(1);
                let text = match &payload {
                    Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
                    _ => None,
                };
                match text.and_then(decode) {
                    Some((sender, _)) if sender == self.sender => {}
                    Some((_, event)) => on_event(event),
                    None => {
                        tracing::debug!(channel = %self.channel, "ignored a malformed cachekit event")
                    }
                }
            }
            _ => {}
        }
        true
    }
}

/// A running listener. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The thread ends at its next poll; it is not joined here, since a
        // drop may run on a runtime thread that must not block.
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        for event in [
            Event::Keys(vec!["a:1".into(), "b:2".into()]),
            Event::Pattern("user:*".into()),
            Event::Tag("org:1".into()),
            Event::Generation {
                namespace: "heroes".into(),
                generation: 3,
            },
        ] {
            let message = encode(42, &event).unwrap();
            assert_eq!(decode(&message), Some((42, event)));
        }
        assert_eq!(encode(1, &Event::Hearing), None);
        assert_eq!(decode("garbage"), None);
    }
}
