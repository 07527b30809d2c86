//! Stampede control: one computation per key at a time.
//!
//! In one process, [`Flights`] lets the first caller that misses a key lead
//! and the others follow: followers wait for the leader's encoded entry and
//! decode it, so no value type needs `Clone`. Tables are sharded by key, so
//! misses on different keys never wait for each other. A leader that is
//! dropped mid-computation (its caller was cancelled) releases its followers,
//! and one of them leads instead.
//!
//! Across processes, a lease ([`Lease`]) is a Redis key set with `SET NX PX`
//! to a random token, renewed while its holder computes and released by a
//! compare-and-delete: only the holder can release it, and a holder that dies
//! simply lets it expire.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::backend::{Backend, Swap};
use crate::error::Result;

const SHARDS: usize = 64;

/// What a leader ended with.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Running,
    /// The entry it stored (or would have stored, if the store failed).
    Stored(Bytes),
    /// Nothing cacheable (an `Err`, or a skipped `None`): followers compute
    /// on their own.
    Uncached,
}

type Shard = Mutex<HashMap<String, watch::Receiver<Outcome>>>;

/// The in-process single-flight table.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Shard]>,
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
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
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
    pub(crate) fn join(&self, key: &str) -> Joined<'_> {
        let shard = self.shard(key);
        let mut table = shard.lock().expect("flight table");
        if let Some(rx) = table.get(key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(Outcome::Running);
        table.insert(key.to_owned(), rx);
        Joined::Leader(Leader {
            shard,
            ended: &self.ended,
            key: key.to_owned(),
            tx,
        })
    }

    /// Leads the flight of `key` if none is under way.
    pub(crate) fn try_lead(&self, key: &str) -> Option<Leader<'_>> {
        match self.join(key) {
            Joined::Leader(leader) => Some(leader),
            Joined::Follower(_) => None,
        }
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
        backend: &dyn Backend,
        key: String,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let token = Bytes::from(format!("{:032x}", fastrand::u128(..)));
        Ok(backend
            .set_nx(&key, token.clone(), ttl)
            .await?
            .then_some(Lease { key, token, ttl }))
    }

    /// Extends the lease by its TTL. `false` if it was lost.
    pub(crate) async fn renew(&self, backend: &dyn Backend) -> Result<bool> {
        backend
            .compare_and_swap(&self.key, &self.token, Swap::Expire(self.ttl))
            .await
    }

    /// Releases the lease if it is still ours.
    pub(crate) async fn release(&self, backend: &dyn Backend) -> Result<bool> {
        backend
            .compare_and_swap(&self.key, &self.token, Swap::Delete)
            .await
    }

    /// Runs `work` while renewing the lease every third of its TTL.
    pub(crate) async fn hold<F: std::future::Future>(
        &self,
        backend: &dyn Backend,
        work: F,
    ) -> F::Output {
        let mut work = std::pin::pin!(work);
        let every = (self.ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(every) => {
                    match self.renew(backend).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(lease = %self.key, "lease lost while computing; another process may compute too"),
                        Err(e) => tracing::debug!(lease = %self.key, error = %e, "lease renewal failed"),
                    }
                }
            }
        }
    }
}

/// Releases a lease from a destructor: on the current runtime if there is one.
pub(crate) fn release_in_background(backend: Arc<dyn Backend>, lease: Lease) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = lease.release(&*backend).await {
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
        let Joined::Leader(leader) = flights.join("a") else {
            panic!("first caller leads")
        };
        let Joined::Follower(rx) = flights.join("a") else {
            panic!("second caller follows")
        };
        assert!(
            matches!(flights.join("b"), Joined::Leader(_)),
            "other keys lead at once"
        );
        leader.finish(Outcome::Stored(Bytes::from_static(b"1")));
        assert!(matches!(follow(rx).await, Some(Outcome::Stored(_))));
        assert!(
            matches!(flights.join("a"), Joined::Leader(_)),
            "finished flights are gone"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers() {
        let flights = Flights::default();
        let leader = flights.try_lead("a").unwrap();
        let Joined::Follower(rx) = flights.join("a") else {
            panic!()
        };
        drop(leader);
        assert!(follow(rx).await.is_none());
        assert!(flights.try_lead("a").is_some());
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
