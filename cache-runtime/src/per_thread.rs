//! Per-thread copies of shared values, good while the stamp they were taken
//! under is unchanged: reading one writes no cache line shared with the
//! other cores (a lock's reader count would, on every call).

use std::cell::RefCell;
use std::thread::LocalKey;

/// What a copy was taken under: counters that almost never move.
pub(crate) type Stamp = (u64, u64);

/// A thread's slot for one copy.
pub(crate) type Slot<T> = RefCell<Option<(Stamp, T)>>;

/// The copy in `slot`, if it was taken under `stamp`.
pub(crate) fn get<T: Clone>(slot: &'static LocalKey<Slot<T>>, stamp: Stamp) -> Option<T> {
    slot.try_with(|slot| match &*slot.borrow() {
        Some((taken, value)) if *taken == stamp => Some(value.clone()),
        _ => None,
    })
    .ok()
    .flatten()
}

/// Keeps `value` as this thread's copy, taken under `stamp`.
pub(crate) fn put<T>(slot: &'static LocalKey<Slot<T>>, stamp: Stamp, value: T) {
    let _ = slot.try_with(|slot| *slot.borrow_mut() = Some((stamp, value)));
}
