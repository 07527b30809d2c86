//! Connections and the tokio runtime that drives them.
//!
//! A `redis` connection's driver is a task on the runtime that created it.
//! If that runtime shuts down (a `#[tokio::test]` ending), or stays alive
//! but is no longer driven (a setup runtime kept beside a sync wrapper that
//! calls from another runtime), every command on the connection waits until
//! it times out. So each store keeps one connection per runtime that calls
//! it ([`PerRuntime`]): a caller always uses a connection its own runtime
//! drives, and a runtime's connection goes when the runtime does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::runtime::{Handle, Id};

use crate::error::{Error, Result};

/// How many runtimes that had a sentinel have shut down.
static RUNTIMES_ENDED: AtomicU64 = AtomicU64::new(0);

/// How many runtimes that had a sentinel have shut down: a copy of
/// something a sentinel guards is good while this has not moved.
pub(crate) fn runtimes_ended() -> u64 {
    RUNTIMES_ENDED.load(Ordering::Acquire)
}

/// A flag that turns false when the runtime of `handle` shuts down.
pub(crate) fn sentinel(handle: &Handle) -> Arc<AtomicBool> {
    struct ClearOnDrop(Arc<AtomicBool>);
    impl Drop for ClearOnDrop {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
            RUNTIMES_ENDED.fetch_add(1, Ordering::AcqRel);
        }
    }
    let alive = Arc::new(AtomicBool::new(true));
    let guard = ClearOnDrop(alive.clone());
    handle.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    alive
}

/// The current runtime, or an error that says a store needs one.
pub(crate) fn current() -> Result<Handle> {
    Handle::try_current().map_err(|_| {
        Error::Unavailable("a Redis store must be used from within a tokio runtime".into())
    })
}

struct Slot<T> {
    runtime: Id,
    alive: Arc<AtomicBool>,
    value: T,
}

/// One value (a connection) per tokio runtime, made on first use from that
/// runtime and dropped once it shuts down.
pub(crate) struct PerRuntime<T> {
    slots: RwLock<Vec<Slot<T>>>,
}

impl<T> Default for PerRuntime<T> {
    fn default() -> Self {
        PerRuntime {
            slots: RwLock::new(Vec::new()),
        }
    }
}

impl<T: Clone> PerRuntime<T> {
    /// The value of the current runtime, made by `make` if it has none.
    pub(crate) fn get(&self, make: impl FnOnce() -> Result<T>) -> Result<T> {
        let handle = current()?;
        let id = handle.id();
        {
            let slots = self.slots.read().expect("per-runtime lock");
            if let Some(slot) = slots
                .iter()
                .find(|s| s.runtime == id && s.alive.load(Ordering::Acquire))
            {
                return Ok(slot.value.clone());
            }
        }
        let mut slots = self.slots.write().expect("per-runtime lock");
        slots.retain(|s| s.alive.load(Ordering::Acquire));
        if let Some(slot) = slots.iter().find(|s| s.runtime == id) {
            return Ok(slot.value.clone());
        }
        let value = make()?;
        slots.push(Slot {
            runtime: id,
            alive: sentinel(&handle),
            value: value.clone(),
        });
        Ok(value)
    }

    /// Replaces the current runtime's value (a connection judged broken).
    pub(crate) fn replace(&self, value: T) -> Result<()> {
        let id = current()?.id();
        let mut slots = self.slots.write().expect("per-runtime lock");
        if let Some(slot) = slots.iter_mut().find(|s| s.runtime == id) {
            slot.value = value;
        }
        Ok(())
    }

    /// Every live runtime's value.
    #[cfg(test)]
    pub(crate) fn all(&self) -> Vec<T> {
        self.slots
            .read()
            .expect("per-runtime lock")
            .iter()
            .filter(|s| s.alive.load(Ordering::Acquire))
            .map(|s| s.value.clone())
            .collect()
    }

    /// Drops every value (the store shuts down).
    pub(crate) fn clear(&self) {
        self.slots.write().expect("per-runtime lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_runtime_gets_its_own_value_and_loses_it_when_it_ends() {
        let per = PerRuntime::<u32>::default();
        let made = std::sync::atomic::AtomicU32::new(0);
        let make = || Ok(made.fetch_add(1, Ordering::SeqCst));
        let a = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(a.block_on(async { per.get(make).unwrap() }), 0);
        assert_eq!(a.block_on(async { per.get(make).unwrap() }), 0);
        // Runtime `a` is alive but not driven now: `b` never uses its value.
        assert_eq!(b.block_on(async { per.get(make).unwrap() }), 1);
        drop(a);
        assert_eq!(per.all(), vec![1]);
        assert!(per.get(make).is_err(), "outside a runtime");
    }
}
