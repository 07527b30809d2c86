//! Stampede control: one computation per key at a time, in a process.
//!
//! [`Flights`] lets the first caller that misses a key lead and the others
//! follow: followers wait for the leader's value and clone it. Tables are
//! sharded by key, so misses on different keys never wait for each other.
//! A leader that is dropped mid-computation (its caller was cancelled)
//! releases its followers, and one of them leads instead. Background
//! refreshes take a key of their own ([`Flights::refreshing`]), released by
//! a guard however the refresh ends; sync functions have a blocking table
//! ([`Flights::join_sync`]) whose leaders release their followers when they
//! panic.
//!
//! Across processes, leases are markers in the shared store (`engine`) and
//! locks are [`Lease`]s: a key set with `SET NX PX` to a random token,
//! renewed while held and released by a compare-and-delete.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::Result;
use crate::stack::Stack;
use crate::store::{Store, Swap, Write};

const SHARDS: usize = 64;

/// A value handed from a leader to its followers.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// What a leader ended with.
#[derive(Clone)]
pub(crate) enum Outcome {
    Running,
    /// Its value (stored, or served as the last good one).
    Value(Shared),
    /// Nothing to share (an `Err`): followers compute on their own.
    Uncached,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Running => "Running",
            Outcome::Value(_) => "Value",
            Outcome::Uncached => "Uncached",
        })
    }
}

/// A flight under way: where its outcome arrives, and the tag keys its
/// entry is listed under (so that a tag invalidation can detach it).
#[derive(Debug)]
struct Flight {
    rx: watch::Receiver<Outcome>,
    tags: Arc<[String]>,
}

type Shard = Mutex<HashMap<String, Flight>>;

/// A sync flight: its value once done (`None`: nothing to share), and the
/// condition its followers wait on.
type SyncFlight = Arc<(Mutex<Option<Option<Shared>>>, Condvar)>;

/// The in-process single-flight table.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Shard]>,
    refreshing: Mutex<HashSet<String>>,
    sync: Mutex<HashMap<String, SyncFlight>>,
    /// How many flights have ended. A caller that read a miss and then
    /// leads must read again only if a flight ended in between: otherwise
    /// no leader of this process can have stored the key since its read.
    ended: AtomicU64,
    hasher: RandomState,
}

pub(crate) enum Joined<'a> {
    Leader(Leader<'a>),
    Follower(watch::Receiver<Outcome>),
}

/// The right and duty to compute a key and publish the outcome.
pub(crate) struct Leader<'a> {
    shard: &'a Shard,
    ended: &'a AtomicU64,
    key: String,
    tx: watch::Sender<Outcome>,
}

impl Leader<'_> {
    /// Hands the outcome to the followers and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        let _ = self.tx.send(outcome);
        // `Drop` removes the flight from the table.
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut shard = self.shard.lock().expect("flight table");
        // Counted before the flight leaves the table (and after the leader
        // stored its entry): whoever joins after this finds the count moved.
        self.ended.fetch_add(1, Ordering::AcqRel);
        if shard
            .get(&self.key)
            .is_some_and(|f| f.rx.same_channel(&self.tx.subscribe()))
        {
            shard.remove(&self.key);
        }
        // Dropping `tx` wakes followers still waiting on a running flight:
        // they see the channel closed and start over.
    }
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            refreshing: Mutex::new(HashSet::new()),
            sync: Mutex::new(HashMap::new()),
            ended: AtomicU64::new(0),
            hasher: RandomState::new(),
        }
    }
}

impl Flights {
    fn shard(&self, key: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// How many flights have ended so far: read it before looking a key up,
    /// compare after leading its flight.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::Acquire)
    }

    /// Leads the flight of `key`, or follows the one under way.
    pub(crate) fn join(&self, key: &str, tags: &[String]) -> Joined<'_> {
        let shard = self.shard(key);
        let mut table = shard.lock().expect("flight table");
        if let Some(flight) = table.get(key) {
            return Joined::Follower(flight.rx.clone());
        }
        let (tx, rx) = watch::channel(Outcome::Running);
        table.insert(
            key.to_owned(),
            Flight {
                rx,
                tags: tags.into(),
            },
        );
        Joined::Leader(Leader {
            shard,
            ended: &self.ended,
            key: key.to_owned(),
            tx,
        })
    }

    /// Leads the flight of `key` if none is under way.
    #[cfg(test)]
    pub(crate) fn try_lead(&self, key: &str) -> Option<Leader<'_>> {
        match self.join(key, &[]) {
            Joined::Leader(leader) => Some(leader),
            Joined::Follower(_) => None,
        }
    }

    /// Detaches the flights an invalidation names, so that a caller who
    /// comes after it starts a flight of its own instead of following a
    /// leader that read the source before the write. Their leaders still
    /// answer the followers that came before (they read before the
    /// invalidation returned), and their stores are fenced.
    pub(crate) fn detach(&self, named: Named<'_>) {
        for shard in &*self.shards {
            shard
                .lock()
                .expect("flight table")
                .retain(|key, flight| !named.covers(key, &flight.tags));
        }
        self.sync
            .lock()
            .expect("sync flights")
            .retain(|key, _| !named.covers(key, &[]));
    }

    /// The right to refresh `key` in the background, unless a refresh of
    /// it is under way.
    pub(crate) fn refreshing(&self, stack: &Arc<Stack>, key: &str) -> Option<Refreshing> {
        let mut set = self.refreshing.lock().expect("refresh table");
        set.insert(key.to_owned()).then(|| Refreshing {
            stack: stack.clone(),
            key: key.to_owned(),
        })
    }

    /// Leads the sync flight of `key`, or waits for its leader (blocking
    /// the thread) and gets what it shares.
    pub(crate) fn join_sync(&self, key: &str) -> SyncJoined<'_> {
        let flight = {
            let mut table = self.sync.lock().expect("sync flights");
            match table.get(key) {
                Some(flight) => flight.clone(),
                None => {
                    let flight: SyncFlight = Arc::new((Mutex::new(None), Condvar::new()));
                    table.insert(key.to_owned(), flight.clone());
                    return SyncJoined::Leader(SyncLeader {
                        flights: self,
                        key: key.to_owned(),
                        flight,
                        finished: false,
                    });
                }
            }
        };
        let (done, ready) = &*flight;
        let mut done = done.lock().expect("sync flight");
        while done.is_none() {
            done = ready.wait(done).expect("sync flight");
        }
        SyncJoined::Followed(done.clone().flatten())
    }
}

/// What an invalidation names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Named<'a> {
    Keys(&'a [String]),
    Pattern(&'a str),
    /// A tag, by its store key.
    Tag(&'a str),
}

impl Named<'_> {
    fn covers(&self, key: &str, tags: &[String]) -> bool {
        match self {
            Named::Keys(keys) => keys.iter().any(|k| k == key),
            Named::Pattern(pattern) => crate::key::glob_match(pattern, key),
            Named::Tag(tag) => tags.iter().any(|t| t == tag),
        }
    }
}

/// A background refresh's hold on its key.
pub(crate) struct Refreshing {
    stack: Arc<Stack>,
    key: String,
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.stack
            .flights
            .refreshing
            .lock()
            .expect("refresh table")
            .remove(&self.key);
    }
}

/// What joining a sync flight gave.
pub(crate) enum SyncJoined<'a> {
    Leader(SyncLeader<'a>),
    /// The leader finished: its value, if it shared one.
    Followed(Option<Shared>),
}

/// The leader of a sync flight. Dropping it unfinished (a panic) releases
/// the followers with nothing.
pub(crate) struct SyncLeader<'a> {
    flights: &'a Flights,
    key: String,
    flight: SyncFlight,
    finished: bool,
}

impl SyncLeader<'_> {
    /// Ends the flight, sharing `value` with the followers.
    pub(crate) fn finish(mut self, value: Option<Shared>) {
        self.end(value);
    }

    fn end(&mut self, value: Option<Shared>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.flights
            .sync
            .lock()
            .expect("sync flights")
            .remove(&self.key);
        let (done, ready) = &*self.flight;
        *done.lock().expect("sync flight") = Some(value);
        ready.notify_all();
    }
}

impl Drop for SyncLeader<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// Waits for a leader. `None` if it was dropped before finishing.
pub(crate) async fn follow(mut rx: watch::Receiver<Outcome>) -> Option<Outcome> {
    match rx.wait_for(|o| !matches!(o, Outcome::Running)).await {
        Ok(outcome) => Some(outcome.clone()),
        Err(_) => None,
    }
}

/// A lease on a key of a shared store.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) key: String,
    pub(crate) token: Bytes,
    pub(crate) ttl: Duration,
}

impl Lease {
    /// Tries once to take the lease.
    pub(crate) async fn acquire(
        store: &dyn Store,
        key: String,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let token = Bytes::from(format!("{:032x}", fastrand::u128(..)));
        let write = Write::new(key.clone(), token.clone(), ttl);
        Ok(store
            .set_nx(&write)
            .await?
            .then_some(Lease { key, token, ttl }))
    }

    /// Extends the lease by its TTL. `false` if it was lost.
    pub(crate) async fn renew(&self, store: &dyn Store) -> Result<bool> {
        store
            .compare_and_swap(&self.key, &self.token, Swap::Expire(self.ttl))
            .await
    }

    /// Releases the lease if it is still ours.
    pub(crate) async fn release(&self, store: &dyn Store) -> Result<bool> {
        store
            .compare_and_swap(&self.key, &self.token, Swap::Delete)
            .await
    }
}

/// Releases a lease from a destructor: on the current runtime if there is one.
pub(crate) fn release_in_background(store: Arc<dyn Store>, lease: Lease) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = lease.release(&*store).await {
                tracing::debug!(lease = %lease.key, error = %e, "lease release failed; it expires by itself");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_per_key() {
        let flights = Flights::default();
        let Joined::Leader(leader) = flights.join("a", &[]) else {
            panic!("first caller leads")
        };
        let Joined::Follower(rx) = flights.join("a", &[]) else {
            panic!("second caller follows")
        };
        assert!(
            matches!(flights.join("b", &[]), Joined::Leader(_)),
            "other keys lead at once"
        );
        leader.finish(Outcome::Value(Arc::new(1u8)));
        assert!(matches!(follow(rx).await, Some(Outcome::Value(_))));
        assert!(
            matches!(flights.join("a", &[]), Joined::Leader(_)),
            "finished flights are gone"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers() {
        let flights = Flights::default();
        let leader = flights.try_lead("a").unwrap();
        let Joined::Follower(rx) = flights.join("a", &[]) else {
            panic!()
        };
        drop(leader);
        assert!(follow(rx).await.is_none());
        assert!(flights.try_lead("a").is_some());
    }

    #[tokio::test]
    async fn an_invalidation_detaches_the_flights_it_names() {
        let flights = Flights::default();
        let Joined::Leader(a) = flights.join("user:1", &["#tag:t".into()]) else {
            panic!()
        };
        let Joined::Follower(before) = flights.join("user:1", &[]) else {
            panic!()
        };
        flights.detach(Named::Pattern("user:*"));
        // A caller after the invalidation leads a flight of its own...
        let Joined::Leader(b) = flights.join("user:1", &[]) else {
            panic!("followed a flight that started before the invalidation")
        };
        // ... while the old leader still answers those who came before.
        a.finish(Outcome::Value(Arc::new(1u8)));
        assert!(matches!(follow(before).await, Some(Outcome::Value(_))));
        // The old leader's end leaves the new flight in the table.
        assert!(matches!(flights.join("user:1", &[]), Joined::Follower(_)));
        drop(b);
        let Joined::Leader(_tagged) = flights.join("k", &["#tag:t".into()]) else {
            panic!()
        };
        flights.detach(Named::Tag("#tag:t"));
        assert!(matches!(flights.join("k", &[]), Joined::Leader(_)));
    }

    #[test]
    fn a_panicking_sync_leader_releases_its_followers() {
        let flights = Arc::new(Flights::default());
        let SyncJoined::Leader(leader) = flights.join_sync("k") else {
            panic!("first caller leads")
        };
        let follower = {
            let flights = flights.clone();
            std::thread::spawn(move || matches!(flights.join_sync("k"), SyncJoined::Followed(None)))
        };
        std::thread::sleep(Duration::from_millis(20));
        // The leader unwinds without finishing.
        drop(leader);
        assert!(
            follower.join().unwrap(),
            "the follower got nothing and goes on"
        );
        assert!(matches!(flights.join_sync("k"), SyncJoined::Leader(_)));
    }

    #[test]
    fn ended_flights_are_counted_before_they_leave_the_table() {
        let flights = Flights::default();
        let before = flights.ended();
        let leader = flights.try_lead("a").unwrap();
        assert_eq!(flights.ended(), before, "a running flight has not ended");
        leader.finish(Outcome::Uncached);
        let after = flights.ended();
        assert_eq!(after, before + 1, "a finished flight counts");
        // A caller that joins once the flight is gone sees the count moved.
        let again = flights.try_lead("a").expect("the flight is gone");
        assert!(flights.ended() > before);
        drop(again);
        assert_eq!(flights.ended(), after + 1, "a dropped leader counts too");
    }
}
