//! A real local Redis Cluster: 3 primaries and 3 replicas of
//! `redis-server --cluster-enabled yes`, joined with
//! `redis-cli --cluster create ... --cluster-replicas 1`.
//!
//! Each node is a [`RedisServer`] (so it runs under the same supervisor and
//! dies with the test process), on a free port whose cluster bus port
//! (port + 10000) is free too. [`RedisCluster::start`] returns once every
//! node reports `cluster_state:ok`, knows all six nodes and has all 16384
//! slots covered, and every replica is in sync with its primary.
//!
//! A test that needs a cluster fails loudly when `redis-server` or
//! `redis-cli` is missing.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{RedisServer, free_port, redis_server_binary};

/// The `redis-cli` binary: `$REDIS_CLI`, or the one on `PATH`.
pub fn redis_cli_binary() -> String {
    let binary = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
    match Command::new(&binary).arg("--version").output() {
        Ok(out) if out.status.success() => binary,
        _ => panic!(
            "the cluster tests need `{binary}` (to join the nodes with `redis-cli --cluster create`): \
             it was not found or does not run. Install it (Debian/Ubuntu: `apt-get install redis-tools`) \
             or set REDIS_CLI to its path. `bash .ci/run` installs it when missing."
        ),
    }
}

/// One node as the cluster describes it (`CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Flagged `fail` (or `fail?`) by the node asked.
    pub failed: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// How many slots it serves.
    pub slots: u32,
}

/// A running cluster of six nodes.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    pub node_timeout: Duration,
}

impl RedisCluster {
    /// A cluster whose nodes declare a silent peer failed after 5 s.
    pub fn start() -> RedisCluster {
        Self::start_with_node_timeout(Duration::from_secs(5))
    }

    /// A cluster with the given `cluster-node-timeout` (how long a silent
    /// node takes to be declared failed, and so how quick a failover is).
    pub fn start_with_node_timeout(node_timeout: Duration) -> RedisCluster {
        Self::start_with(node_timeout, None)
    }

    /// A cluster whose nodes require `password` (`requirepass`, and
    /// `masterauth` for their replication); [`RedisCluster::urls`] carry it.
    pub fn start_with_password(password: &str) -> RedisCluster {
        Self::start_with(Duration::from_secs(5), Some(password))
    }

    fn start_with(node_timeout: Duration, password: Option<&str>) -> RedisCluster {
        redis_server_binary();
        redis_cli_binary();
        let started = Instant::now();
        let nodes = (0..6)
            .map(|_| {
                let mut last_error = String::new();
                for _ in 0..5 {
                    match start_node(cluster_ports(1)[0], node_timeout, password) {
                        Ok(node) => return node,
                        Err(e) => last_error = e,
                    }
                }
                panic!("could not start a cluster node: {last_error}")
            })
            .collect();
        Self::join(nodes, node_timeout, password, started)
    }

    /// A cluster on these six ports (from [`cluster_ports`]).
    pub fn start_on(ports: &[u16], node_timeout: Duration) -> RedisCluster {
        assert_eq!(ports.len(), 6, "3 primaries and 3 replicas");
        redis_server_binary();
        redis_cli_binary();
        let started = Instant::now();
        let nodes = ports
            .iter()
            .map(|&port| {
                start_node(port, node_timeout, None).unwrap_or_else(|e| {
                    panic!("could not start a cluster node on port {port}: {e}")
                })
            })
            .collect();
        Self::join(nodes, node_timeout, None, started)
    }

    /// Joins six fresh nodes into a cluster and waits until it is healthy.
    fn join(
        nodes: Vec<RedisServer>,
        node_timeout: Duration,
        password: Option<&str>,
        started: Instant,
    ) -> RedisCluster {
        let cli = redis_cli_binary();
        let auth: Vec<&str> = match password {
            Some(password) => vec!["-a", password, "--no-auth-warning"],
            None => Vec::new(),
        };
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(&cli)
            .args(&auth)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cli}: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            node_timeout,
        };
        let created = started.elapsed();
        cluster.wait_healthy(Duration::from_secs(30));
        super::note(format!(
            "redis cluster on ports {:?} ready in {} ms (joined in {} ms)",
            cluster.nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
            started.elapsed().as_millis(),
            created.as_millis(),
        ));
        cluster
    }

    /// The node URLs, for `Config::cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The nodes still running.
    pub fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// The node on `port`, to kill it.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// `CLUSTER NODES` as seen by the node on `port`.
    pub fn topology_seen_by(&self, port: u16) -> Vec<NodeInfo> {
        let text: String = self.node(port).cmd(&["CLUSTER", "NODES"]);
        parse_cluster_nodes(&text)
    }

    /// The topology as seen by the first live node.
    pub fn topology(&self) -> Vec<NodeInfo> {
        let port = self.live().next().expect("a live node").port;
        self.topology_seen_by(port)
    }

    /// The primaries serving slots, healthy, as seen by the first live node.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.topology()
            .into_iter()
            .filter(|n| n.primary && !n.failed && n.slots > 0)
            .map(|n| self.node(n.port))
            .collect()
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.live().next().expect("a live node").port;
        let slot: i64 = self.node(port).cmd(&["CLUSTER", "KEYSLOT", key]);
        slot as u16
    }

    /// The port of the primary serving `slot`, as seen by the first live node.
    pub fn primary_port_of_slot(&self, slot: u16) -> u16 {
        let port = self.live().next().expect("a live node").port;
        let ranges: redis::Value = self.node(port).cmd(&["CLUSTER", "SLOTS"]);
        for (start, end, primary_port) in slot_ranges(&ranges) {
            if (start..=end).contains(&slot) {
                return primary_port;
            }
        }
        panic!("slot {slot} is not served")
    }

    /// The slot ranges the primary on `port` serves, as seen by the first
    /// live node.
    pub fn slots_of(&self, port: u16) -> Vec<std::ops::RangeInclusive<u16>> {
        let seen_by = self.live().next().expect("a live node").port;
        let ranges: redis::Value = self.node(seen_by).cmd(&["CLUSTER", "SLOTS"]);
        slot_ranges(&ranges)
            .into_iter()
            .filter(|&(_, _, primary)| primary == port)
            .map(|(start, end, _)| start..=end)
            .collect()
    }

    /// Number of keys on each healthy primary, by port (`DBSIZE`).
    pub fn keys_per_primary(&self) -> HashMap<u16, i64> {
        self.primaries()
            .into_iter()
            .map(|n| (n.port, n.cmd::<i64>(&["DBSIZE"])))
            .collect()
    }

    /// Keys matching `pattern` on the node on `port` (`SCAN`, that node only).
    pub fn scan_node(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut conn = self.node(port).conn();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .expect("SCAN");
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return keys;
            }
        }
    }

    /// Waits until every live node reports `cluster_state:ok` with all
    /// slots covered and agrees on the primaries, and every replica is in
    /// sync. Panics after `within`.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.health() {
                Ok(()) => return,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy within {within:?}: {last}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn health(&self) -> Result<(), String> {
        let live: Vec<&RedisServer> = self.live().collect();
        let mut views = Vec::new();
        for node in &live {
            let info: String = node
                .try_cmd(&["CLUSTER", "INFO"])
                .map_err(|e| format!("{}: {e}", node.port))?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            if field("cluster_state") != "ok" || field("cluster_slots_ok") != "16384" {
                return Err(format!("node {} reports: {}", node.port, info.trim()));
            }
            let topology = parse_cluster_nodes(
                &node
                    .try_cmd::<String>(&["CLUSTER", "NODES"])
                    .map_err(|e| format!("{}: {e}", node.port))?,
            );
            let mut primaries: Vec<u16> = topology
                .iter()
                .filter(|n| n.primary && !n.failed && n.slots > 0)
                .map(|n| n.port)
                .collect();
            primaries.sort_unstable();
            views.push(primaries);
            let role: String = node
                .try_cmd(&["INFO", "replication"])
                .map_err(|e| format!("{}: {e}", node.port))?;
            if role.contains("role:slave") && !role.contains("master_link_status:up") {
                return Err(format!("replica {} is not in sync yet", node.port));
            }
        }
        if views.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("nodes disagree on the primaries: {views:?}"));
        }
        if views.first().is_none_or(|p| p.len() != 3) {
            return Err(format!("expected 3 primaries serving slots: {views:?}"));
        }
        Ok(())
    }
}

/// `n` free ports whose cluster bus ports (port + 10000) are free too.
pub fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if port <= 55_535
            && !ports.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            ports.push(port);
        }
    }
    ports
}

fn start_node(
    port: u16,
    node_timeout: Duration,
    password: Option<&str>,
) -> Result<RedisServer, String> {
    let config_file = format!(
        "nodes-{}-{port}-{}.conf",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let timeout = node_timeout.as_millis().to_string();
    let extra = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &config_file,
        "--cluster-node-timeout",
        &timeout,
        // Replicas sync at once (the default waits 5 s for more of them).
        "--repl-diskless-sync-delay",
        "0",
    ];
    let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Some(password) = password {
        for arg in ["--requirepass", password, "--masterauth", password] {
            extra.push(arg.to_owned());
        }
    }
    RedisServer::spawn(port, &extra, false)
}

/// Parses `CLUSTER NODES`.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let address = fields[1].split('@').next()?;
            let port = address.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => {
                        b.parse::<u32>().unwrap_or(0) + 1 - a.parse::<u32>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum();
            Some(NodeInfo {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains(&"master"),
                failed: flags.contains(&"fail") || flags.contains(&"fail?"),
                primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// `(first slot, last slot, primary port)` of each range of `CLUSTER SLOTS`.
fn slot_ranges(value: &redis::Value) -> Vec<(u16, u16, u16)> {
    let redis::Value::Array(ranges) = value else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let redis::Value::Array(parts) = range else {
                return None;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => Some(*i as u16),
                _ => None,
            };
            let redis::Value::Array(primary) = parts.get(2)? else {
                return None;
            };
            Some((
                int(parts.first()?)?,
                int(parts.get(1)?)?,
                int(primary.get(1)?)?,
            ))
        })
        .collect()
}

/// The slot of a key, as Redis Cluster computes it (CRC16-XMODEM of the
/// key, or of its hash tag, modulo 16384).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// One id per slot: the first `i` for which `key(i)` falls in each of the
/// 16384 slots.
pub fn one_id_per_slot(key: impl Fn(u64) -> String) -> Vec<u64> {
    let mut ids = vec![None; 16384];
    let mut left = ids.len();
    let mut i = 0u64;
    while left > 0 {
        let s = usize::from(key_slot(&key(i)));
        if ids[s].is_none() {
            ids[s] = Some(i);
            left -= 1;
        }
        i += 1;
    }
    ids.into_iter().map(|id| id.expect("filled")).collect()
}

/// The cluster shared by the tests of one binary (they use distinct keys).
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}
